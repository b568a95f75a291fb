//! `bff check`'s contract checks: every declarative backend of a service with `openapi = "FILE"` is
//! checked against that document. Its method and path must be an operation of the document (path
//! templates match whatever their parameters are named), and the names of its `select` and `fields`
//! JSONPaths must be properties of that operation's 200 (else first 2xx) JSON response schema, `$ref`s
//! within the document followed. Paths with filters, slices or `..` are checked up to them.

use bff::config::{Config, ConfigError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Every mismatch between the config's backends and their services' documents, as config errors
/// (file, line and key of the backend).
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut docs: BTreeMap<&str, Option<(String, Value)>> = BTreeMap::new();
    for (name, svc) in &config.services {
        let Some(file) = &svc.openapi else { continue };
        let doc = match read(file) {
            Ok(doc) => Some((file.clone(), doc)),
            Err(e) => {
                errors.push(config.error_at(
                    &format!("services.{name}.openapi"),
                    bff::telemetry::ErrorChain(&e).to_string(),
                ));
                None
            }
        };
        docs.insert(name, doc);
    }
    for (i, route) in config.routes.iter().enumerate() {
        for (j, b) in route.backends.iter().enumerate() {
            let Some(Some((file, doc))) = docs.get(b.service.as_str()) else {
                continue;
            };
            let key = format!("routes[{i}].backends[{j}]");
            let method = b.method.to_string().to_ascii_uppercase();
            let template = b.path.to_string();
            let path = template.split('?').next().unwrap_or_default();
            let Some((doc_path, item)) = find_path(doc, path) else {
                errors.push(config.error_at(
                    &format!("{key}.path"),
                    format!("{method} {path} is not in {file}"),
                ));
                continue;
            };
            let Some(op) = item.get(method.to_ascii_lowercase()) else {
                errors.push(config.error_at(
                    &format!("{key}.method"),
                    format!(
                        "{method} {path}: {file} has {doc_path} but no {method} operation on it"
                    ),
                ));
                continue;
            };
            let Some((status, schema)) = response_schema(doc, op) else {
                continue;
            };
            let mut paths = Vec::new();
            if let Some(s) = &b.select {
                paths.push((format!("{key}.select"), s.as_str().to_string()));
            }
            for (field, p) in b.fields.iter().flatten() {
                paths.push((format!("{key}.fields.{field}"), p.as_str().to_string()));
            }
            for (k, p) in paths {
                if let Err(missing) = walk(doc, schema, &p) {
                    errors.push(config.error_at(
                        &k,
                        format!(
                            "{p}: {missing} in the {status} response of {method} {doc_path} in {file}"
                        ),
                    ));
                }
            }
        }
    }
    errors
}

/// A service's OpenAPI document that cannot be used; the parser's error is the source.
#[derive(Debug, thiserror::Error)]
enum SpecError {
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not JSON")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file} is not YAML")]
    Yaml {
        file: String,
        #[source]
        source: yaml_rust2::ScanError,
    },
    #[error("{0} is empty")]
    Empty(String),
    #[error("{0} has no `paths`: not an OpenAPI document")]
    NoPaths(String),
}

/// A document, YAML or JSON (by its extension; YAML, a superset of JSON, otherwise).
fn read(file: &str) -> Result<Value, SpecError> {
    let text = std::fs::read_to_string(file).map_err(|source| SpecError::Read {
        file: file.into(),
        source,
    })?;
    let doc = if file.ends_with(".json") {
        serde_json::from_str(&text).map_err(|source| SpecError::Json {
            file: file.into(),
            source,
        })?
    } else {
        let mut docs =
            yaml_rust2::YamlLoader::load_from_str(&text).map_err(|source| SpecError::Yaml {
                file: file.into(),
                source,
            })?;
        if docs.is_empty() {
            return Err(SpecError::Empty(file.into()));
        }
        yaml_to_json(docs.swap_remove(0))
    };
    if !doc.get("paths").is_some_and(Value::is_object) {
        return Err(SpecError::NoPaths(file.into()));
    }
    Ok(doc)
}

fn yaml_to_json(y: yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(r), Value::Number),
        Yaml::Integer(i) => i.into(),
        Yaml::String(s) => s.into(),
        Yaml::Boolean(b) => b.into(),
        Yaml::Array(a) => a.into_iter().map(yaml_to_json).collect(),
        Yaml::Hash(h) => Value::Object(
            h.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// The document's path item that `path` (a backend's template, its query cut) is: same segments, a
/// `{param}` of either side matching a parameter of the other or, on the document's side, any value.
fn find_path<'a>(doc: &'a Value, path: &str) -> Option<(&'a str, &'a Value)> {
    let ours: Vec<&str> = path.split('/').collect();
    let is_param = |s: &str| s.starts_with('{') && s.ends_with('}');
    let matches = |theirs: &str| {
        let theirs: Vec<&str> = theirs.split('/').collect();
        theirs.len() == ours.len()
            && theirs.iter().zip(&ours).all(|(t, o)| {
                if is_param(t) {
                    !o.is_empty()
                } else {
                    !o.contains('{') && t == o
                }
            })
    };
    let paths = doc.get("paths")?.as_object()?;
    // A literal path of the document wins over a templated one (`/users/me` over `/users/{id}`).
    let mut found: Vec<(&str, &Value)> = paths
        .iter()
        .filter(|(p, _)| matches(p))
        .map(|(p, v)| (p.as_str(), v))
        .collect();
    found.sort_by_key(|(p, _)| p.matches('{').count());
    found.into_iter().next()
}

/// The JSON schema of an operation's 200 response (else its first 2xx, then `2XX`), and that status.
fn response_schema<'a>(doc: &'a Value, op: &'a Value) -> Option<(String, &'a Value)> {
    let responses = deref(doc, op.get("responses")?)?.as_object()?;
    let (status, response) = responses
        .get_key_value("200")
        .or_else(|| responses.iter().find(|(s, _)| s.starts_with('2')))?;
    let content = deref(doc, response)?.get("content")?.as_object()?;
    let media = content
        .iter()
        .find(|(t, _)| t.contains("json"))
        .or_else(|| content.iter().next())?
        .1;
    Some((status.clone(), media.get("schema")?))
}

/// `v`, or what its `$ref` (within the document) points to, followed a few times.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = doc.pointer(r.strip_prefix('#')?)?,
            None => return Some(v),
        }
    }
    None
}

/// One step of a JSONPath.
enum Step {
    Name(String),
    /// `[0]`, `[*]`, `.*`: an item of an array (or, for `*`, any member).
    Item,
}

/// The steps of a JSONPath's leading names and indexes; `None` where the rest cannot be checked
/// (filters, slices, `..`, unions).
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let Some(mut rest) = path.strip_prefix('$') else {
        return out;
    };
    loop {
        if rest.is_empty() || rest.starts_with("..") {
            return out;
        }
        if let Some(r) = rest.strip_prefix(".*") {
            out.push(Step::Item);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(Step::Name(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return out };
            let inner = r[..end].trim();
            if inner == "*" || inner.parse::<i64>().is_ok() {
                out.push(Step::Item);
            } else if let Some(name) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                out.push(Step::Name(name.to_string()));
            } else {
                return out;
            }
            rest = &r[end + 1..];
        } else {
            return out;
        }
    }
}

/// Where a JSONPath leaves a response schema.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
struct Missing(String);

/// Follows `path` through `schema`: `Err` says where it leaves the schema.
fn walk(doc: &Value, schema: &Value, path: &str) -> Result<(), Missing> {
    let mut at = "$".to_string();
    let mut cur = deref(doc, schema).ok_or_else(|| Missing("an unresolvable $ref".into()))?;
    for step in steps(path) {
        let next = match &step {
            Step::Name(n) => property(doc, cur, n),
            Step::Item => item(doc, cur),
        };
        match next {
            Some(Some(s)) => cur = s,
            // The schema allows anything there: nothing more to check.
            Some(None) => return Ok(()),
            None => {
                return Err(Missing(match step {
                    Step::Name(n) => format!("no property {n:?} at {at}"),
                    Step::Item => format!("{at} is not an array"),
                }));
            }
        }
        match step {
            Step::Name(n) => {
                at.push('.');
                at.push_str(&n);
            }
            Step::Item => at.push_str("[*]"),
        }
    }
    Ok(())
}

/// The schema of property `name` of `schema`: `Some(None)` when the schema does not constrain it
/// (no `type`/`properties`, or `additionalProperties` allows it), `None` when it has no such property.
fn property<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> Option<Option<&'a Value>> {
    let s = deref(doc, schema)?;
    if let Some(p) = s.get("properties").and_then(|p| p.get(name)) {
        return Some(deref(doc, p));
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(found) = property(doc, part, name) {
                return Some(found);
            }
        }
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(extra @ Value::Object(_)) => Some(deref(doc, extra)),
        _ if unconstrained(s) => Some(None),
        _ => None,
    }
}

/// The schema of an item of `schema` (an array).
fn item<'a>(doc: &'a Value, schema: &'a Value) -> Option<Option<&'a Value>> {
    let s = deref(doc, schema)?;
    if let Some(items) = s.get("items") {
        return Some(deref(doc, items));
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(found) = item(doc, part) {
                return Some(found);
            }
        }
    }
    unconstrained(s).then_some(None)
}

/// A schema that says nothing of its members' shape (no `type`, `properties`, `items` nor
/// composition): anything goes.
fn unconstrained(s: &Value) -> bool {
    ["type", "properties", "items", "allOf", "oneOf", "anyOf"]
        .iter()
        .all(|k| s.get(k).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/users/{user_id}": {"get": {"responses": {"200": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/User"}}}}}}},
                "/users/me": {"get": {"responses": {"200": {"content": {"application/json": {
                    "schema": {"type": "string"}}}}}}}
            },
            "components": {"schemas": {
                "User": {"type": "object", "properties": {
                    "profile": {"$ref": "#/components/schemas/Profile"},
                    "tags": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}}},
                    "extra": {}
                }},
                "Profile": {"allOf": [{"type": "object", "properties": {"name": {"type": "string"}}}]}
            }}
        })
    }

    #[test]
    fn templates_match_whatever_their_parameters_are_called() {
        let d = doc();
        assert_eq!(find_path(&d, "/users/{id}").unwrap().0, "/users/{user_id}");
        assert_eq!(find_path(&d, "/users/me").unwrap().0, "/users/me");
        assert_eq!(find_path(&d, "/users/42").unwrap().0, "/users/{user_id}");
        assert!(find_path(&d, "/users/{id}/orders").is_none());
        assert!(find_path(&d, "/orders").is_none());
    }

    #[test]
    fn json_paths_are_followed_through_refs_and_compositions() {
        let d = doc();
        let op = &d["paths"]["/users/{user_id}"]["get"];
        let (status, schema) = response_schema(&d, op).unwrap();
        assert_eq!(status, "200");
        assert_eq!(walk(&d, schema, "$.profile.name"), Ok(()));
        assert_eq!(walk(&d, schema, "$['profile']"), Ok(()));
        assert_eq!(walk(&d, schema, "$.tags[0].id"), Ok(()));
        assert_eq!(walk(&d, schema, "$.tags[*].id"), Ok(()));
        assert_eq!(walk(&d, schema, "$.extra.anything.at.all"), Ok(()));
        assert_eq!(walk(&d, schema, "$.tags[?@.id]"), Ok(()));
        assert_eq!(
            walk(&d, schema, "$.profile.nick"),
            Err(Missing("no property \"nick\" at $.profile".into()))
        );
        assert_eq!(
            walk(&d, schema, "$.profile[0]"),
            Err(Missing("$.profile is not an array".into()))
        );
    }

    #[test]
    fn yaml_documents_become_json_with_string_status_keys() {
        let text =
            "paths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n";
        let y = yaml_rust2::YamlLoader::load_from_str(text)
            .unwrap()
            .remove(0);
        let v = yaml_to_json(y);
        assert!(
            v["paths"]["/a"]["get"]["responses"]["200"].is_object(),
            "{v}"
        );
    }
}
