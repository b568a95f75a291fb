//! `[[routes.backends]] response_schema = "schemas/user.json"`: the JSON Schema of a backend's selected
//! value, which the OpenAPI document and the typed client of the BFF describe its response with. The file
//! is read and checked when the config is loaded (a JSON object or boolean, every `type` a JSON Schema
//! type, every `$ref` a pointer that resolves within the file), so that a broken schema is a config error
//! with file, line and key, never a broken document at run time.

use serde_json::Value;
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// A JSON Schema file: its path as written (resolved against the config's folder by the loader) and, once
/// the config was loaded, its content.
#[derive(Clone, PartialEq)]
pub struct ResponseSchema {
    path: String,
    schema: Option<Arc<Value>>,
}

impl ResponseSchema {
    /// A schema file to be read when the config is validated ([`Config::validate`](crate::Config::validate)
    /// or the loader).
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            schema: None,
        }
    }

    /// A schema given as a value (a config made in code): nothing is read.
    pub fn value(schema: Value) -> Self {
        Self {
            path: String::new(),
            schema: Some(Arc::new(schema)),
        }
    }

    /// The file, as resolved by the loader (empty for a schema given as a value).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema, once loaded (always, in a [`Validated`](crate::Validated) config).
    pub fn schema(&self) -> Option<&Value> {
        self.schema.as_deref()
    }

    pub(crate) fn resolve(&mut self, dir: &Path) {
        if !self.path.is_empty() && Path::new(&self.path).is_relative() {
            self.path = dir.join(&self.path).to_string_lossy().into_owned();
        }
    }

    /// Reads and checks the file (relative paths against `dir`), unless it is loaded already.
    fn load(&mut self, dir: Option<&Path>) -> Result<(), crate::InvalidValue> {
        if self.schema.is_some() {
            return Ok(());
        }
        let file: PathBuf = match dir {
            Some(d) if Path::new(&self.path).is_relative() => d.join(&self.path),
            _ => PathBuf::from(&self.path),
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not JSON at line {} column {}: {e}",
                file.display(),
                e.line(),
                e.column()
            )
        })?;
        check(&value).map_err(|m| format!("{}: {m}", file.display()))?;
        self.schema = Some(Arc::new(value));
        Ok(())
    }
}

impl fmt::Debug for ResponseSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseSchema({:?})", self.path)
    }
}

impl<'de> serde::Deserialize<'de> for ResponseSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        if path.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "the path of a JSON Schema file, e.g. \"schemas/user.json\"",
            ));
        }
        Ok(Self::file(path))
    }
}

/// Serialized as its path (`/admin/config`, `bff k8s render`).
impl serde::Serialize for ResponseSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path)
    }
}

const TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];

/// What the document and the client rely on: a schema (object or boolean), `type` names JSON Schema
/// knows, and `$ref`s that point into this file and resolve there.
pub(crate) fn check(root: &Value) -> Result<(), crate::InvalidValue> {
    if !root.is_object() && !root.is_boolean() {
        return Err("a JSON Schema is an object (or true/false)".into());
    }
    let mut problems = Vec::new();
    walk(root, root, "#", &mut problems);
    match problems.into_iter().next() {
        None => Ok(()),
        Some(p) => Err(p.into()),
    }
}

fn walk(root: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (k.as_str(), child) {
                    // Values, not schemas: nothing in them is a keyword.
                    ("const" | "default" | "enum" | "examples", _) => continue,
                    ("type", Value::String(t)) if !TYPES.contains(&t.as_str()) => problems.push(
                        format!("{here}: {t:?} is not a JSON Schema type ({TYPES:?})"),
                    ),
                    ("type", Value::Array(ts)) => {
                        for t in ts {
                            if !t.as_str().is_some_and(|t| TYPES.contains(&t)) {
                                problems.push(format!("{here}: {t} is not a JSON Schema type"));
                            }
                        }
                    }
                    ("type", Value::String(_)) => {}
                    ("type", other) => problems.push(format!("{here}: {other} is not a type name")),
                    ("$ref", Value::String(r)) => match r.strip_prefix('#') {
                        Some(pointer) if root.pointer(&decode(pointer)).is_some() => {}
                        Some(_) => problems.push(format!("{here}: {r:?} resolves to nothing")),
                        None => problems.push(format!(
                            "{here}: {r:?} is not within this file (a $ref starting with #)"
                        )),
                    },
                    (
                        "properties" | "$defs" | "definitions" | "patternProperties",
                        Value::Object(m),
                    ) => {
                        for (name, s) in m {
                            walk(root, s, &format!("{here}/{name}"), problems);
                        }
                    }
                    _ => walk(root, child, &here, problems),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(root, item, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// A JSON pointer from a URI fragment (`%25` and the like decoded; `~0`/`~1` kept for `pointer`).
fn decode(fragment: &str) -> String {
    let mut out = String::with_capacity(fragment.len());
    let bytes = fragment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = fragment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b as char);
            i += 3;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Reads every `response_schema` of `config` not read yet; the errors with their keys.
pub(crate) fn load_all(config: &mut crate::Config, dir: Option<&Path>) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (i, route) in config.routes.iter_mut().enumerate() {
        for (j, b) in route.backends.iter_mut().enumerate() {
            if let Some(s) = &mut b.response_schema
                && let Err(m) = s.load(dir)
            {
                errors.push((format!("routes[{i}].backends[{j}].response_schema"), m.0));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refs_and_types_are_checked() {
        assert!(check(&json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": ["string", "null"]}}})).is_ok());
        assert!(check(&json!(true)).is_ok());
        assert!(check(&json!([1])).is_err());
        let e = check(&json!({"properties": {"a": {"$ref": "#/$defs/B"}}})).unwrap_err();
        let e = e.0;
        assert!(
            e.contains("#/properties/a/$ref") && e.contains("resolves to nothing"),
            "{e}"
        );
        let e = check(&json!({"$ref": "other.json#/x"})).unwrap_err().0;
        assert!(e.contains("not within this file"), "{e}");
        let e = check(&json!({"items": {"type": "str"}})).unwrap_err().0;
        assert!(e.contains("#/items/type") && e.contains("\"str\""), "{e}");
        // A property named `type` is a schema, not a keyword; an enum's values are data.
        assert!(
            check(&json!({"properties": {"type": {"enum": ["x"]}}, "enum": [{"type": 1}]})).is_ok()
        );
        assert!(check(&json!({"$ref": "#/$defs/a%20b", "$defs": {"a b": {}}})).is_ok());
    }
}
