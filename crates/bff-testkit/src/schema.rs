//! JSON Schema inferred from sample values (`bff record`), and an example value built from a schema
//! (`bff mock` when no fixture answers a call).

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What the samples seen so far say about a value: the types it had, and for objects and arrays what
/// their members had.
#[derive(Clone, Debug, Default)]
pub struct Infer {
    null: bool,
    boolean: bool,
    integer: bool,
    number: bool,
    string: bool,
    /// Objects seen, and per property: in how many of them it was present, and its values.
    objects: u64,
    properties: BTreeMap<String, (u64, Infer)>,
    /// Arrays seen, and their items (all arrays' items together).
    arrays: bool,
    items: Option<Box<Infer>>,
}

impl Infer {
    /// Adds a sample.
    pub fn add(&mut self, value: &Value) {
        match value {
            Value::Null => self.null = true,
            Value::Bool(_) => self.boolean = true,
            Value::Number(n) => {
                if n.is_i64() || n.is_u64() {
                    self.integer = true;
                } else {
                    self.number = true;
                }
            }
            Value::String(_) => self.string = true,
            Value::Array(a) => {
                self.arrays = true;
                let items = self.items.get_or_insert_with(Default::default);
                for v in a {
                    items.add(v);
                }
            }
            Value::Object(m) => {
                self.objects += 1;
                for (k, v) in m {
                    let p = self.properties.entry(k.clone()).or_default();
                    p.0 += 1;
                    p.1.add(v);
                }
            }
        }
    }

    /// The schema of the samples as a JSON Schema (2020-12) document titled `title`.
    pub fn to_schema(&self, title: &str) -> Value {
        let mut doc = Map::new();
        doc.insert(
            "$schema".into(),
            "https://json-schema.org/draft/2020-12/schema".into(),
        );
        doc.insert("title".into(), title.into());
        if let Value::Object(m) = self.schema() {
            doc.extend(m);
        }
        Value::Object(doc)
    }

    /// The schema: `type` (one name, or the list when the samples had several), the properties of
    /// objects (`required`: those present in every object seen), the items of arrays. A value never
    /// seen (the items of arrays that were all empty) has the empty schema: anything.
    fn schema(&self) -> Value {
        let mut types = Vec::new();
        let mut m = Map::new();
        if self.objects > 0 {
            types.push("object");
            m.insert(
                "properties".into(),
                Value::Object(
                    self.properties
                        .iter()
                        .map(|(k, (_, p))| (k.clone(), p.schema()))
                        .collect(),
                ),
            );
            let required: Vec<Value> = self
                .properties
                .iter()
                .filter(|(_, (n, _))| *n == self.objects)
                .map(|(k, _)| k.clone().into())
                .collect();
            if !required.is_empty() {
                m.insert("required".into(), Value::Array(required));
            }
        }
        if self.arrays {
            types.push("array");
            if let Some(items) = self.items.as_deref().filter(|i| !i.is_empty()) {
                m.insert("items".into(), items.schema());
            }
        }
        if self.string {
            types.push("string");
        }
        match (self.number, self.integer) {
            (true, _) => types.push("number"),
            (false, true) => types.push("integer"),
            _ => {}
        }
        if self.boolean {
            types.push("boolean");
        }
        if self.null {
            types.push("null");
        }
        match types.as_slice() {
            [] => {}
            [one] => {
                m.insert("type".into(), (*one).into());
            }
            many => {
                m.insert("type".into(), json!(many));
            }
        }
        // `type` first, for the eye.
        let mut out = Map::new();
        if let Some(t) = m.remove("type") {
            out.insert("type".into(), t);
        }
        out.extend(m);
        Value::Object(out)
    }

    fn is_empty(&self) -> bool {
        !(self.null
            || self.boolean
            || self.integer
            || self.number
            || self.string
            || self.arrays
            || self.objects > 0)
    }
}

/// A value that `schema` accepts, for a mock response: the schema's own `examples`, `example`, `const`,
/// `default` or first `enum` value when it has one, else one built from its type (every property of an
/// object, one item of an array, `"string"` or a value of the string's `format`, `0`, `true`). `$ref`s
/// within the document are followed.
pub fn example(schema: &Value) -> Value {
    build(schema, schema, 0)
}

fn build(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    let Value::Object(s) = schema else {
        return Value::Null;
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        return match resolve(root, r) {
            Some(target) => build(target, root, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(Value::Array(e)) = s.get("examples")
        && let Some(v) = e.first()
    {
        return v.clone();
    }
    for key in ["example", "const", "default"] {
        if let Some(v) = s.get(key) {
            return v.clone();
        }
    }
    if let Some(Value::Array(e)) = s.get("enum")
        && let Some(v) = e.first()
    {
        return v.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alts)) = s.get(key)
            && let Some(first) = alts
                .iter()
                .find(|a| a.get("type") != Some(&json!("null")))
                .or(alts.first())
        {
            return build(first, root, depth + 1);
        }
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        let mut merged = Map::new();
        for part in all {
            match build(part, root, depth + 1) {
                Value::Object(m) => merged.extend(m),
                other if merged.is_empty() => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => return Value::Null,
    };
    match ty {
        "object" => Value::Object(
            s.get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, p)| (k.clone(), build(p, root, depth + 1)))
                .collect(),
        ),
        "array" => match s.get("items") {
            Some(items) if items.is_object() => Value::Array(vec![build(items, root, depth + 1)]),
            _ => Value::Array(Vec::new()),
        },
        "string" => match s.get("format").and_then(Value::as_str) {
            Some("date-time") => "2024-01-01T00:00:00Z".into(),
            Some("date") => "2024-01-01".into(),
            Some("email") => "user@example.com".into(),
            Some("uuid") => "00000000-0000-4000-8000-000000000000".into(),
            Some("uri" | "url") => "https://example.com/".into(),
            _ => "string".into(),
        },
        "integer" => s.get("minimum").cloned().unwrap_or_else(|| 0.into()),
        "number" => s.get("minimum").cloned().unwrap_or_else(|| json!(0.0)),
        "boolean" => true.into(),
        _ => Value::Null,
    }
}

/// The target of a local `$ref` (`#/components/schemas/User`, `#/$defs/x`), JSON Pointer escapes
/// (`~1`, `~0`) undone.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_means_present_in_every_sample_and_types_merge() {
        let mut i = Infer::default();
        i.add(&json!({"id": 1, "name": "Ada", "tags": ["a"], "score": 1}));
        i.add(&json!({"id": 2, "tags": [], "score": 1.5, "nick": null}));
        let s = i.to_schema("t");
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["id", "score", "tags"]));
        assert_eq!(s["properties"]["id"]["type"], "integer");
        assert_eq!(s["properties"]["score"]["type"], "number");
        assert_eq!(s["properties"]["name"]["type"], "string");
        assert_eq!(s["properties"]["nick"]["type"], "null");
        assert_eq!(s["properties"]["tags"]["items"]["type"], "string");
        let mut mixed = Infer::default();
        mixed.add(&json!("x"));
        mixed.add(&json!(null));
        assert_eq!(mixed.to_schema("t")["type"], json!(["string", "null"]));
    }

    #[test]
    fn examples_follow_refs_and_types() {
        let doc = json!({
            "$defs": {"User": {"type": "object", "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string", "format": "email"},
                "role": {"enum": ["admin", "user"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "nick": {"type": ["null", "string"]}
            }}},
            "$ref": "#/$defs/User"
        });
        assert_eq!(
            example(&doc),
            json!({"id": 0, "email": "user@example.com", "role": "admin", "tags": ["string"], "nick": "string"})
        );
    }

    #[test]
    fn an_inferred_schema_gives_back_a_value_of_its_shape() {
        let mut i = Infer::default();
        let sample = json!({"id": 7, "items": [{"sku": "a", "qty": 2}], "ok": true});
        i.add(&sample);
        let e = example(&i.to_schema("t"));
        assert_eq!(
            e,
            json!({"id": 0, "items": [{"qty": 0, "sku": "string"}], "ok": true})
        );
    }
}
