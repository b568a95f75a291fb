//! The JSON Schema of `bff.toml`, black-box: `bff schema` prints what docs/config.schema.json holds
//! (`BFF_UPDATE_GOLDEN=1` rewrites it), the config reference documents exactly the keys the schema has,
//! and a project made by `bff new` carries the schema its `bff.toml` points its editor to.

use serde_json::Value;
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

fn bff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bff"));
    c.env("RUST_LOG", "warn");
    c
}

fn docs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name)
}

fn printed_schema() -> String {
    let out = bff().arg("schema").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_published_schema_is_the_generated_one() {
    let printed = printed_schema();
    let published = docs("config.schema.json");
    if std::env::var_os("BFF_UPDATE_GOLDEN").is_some() {
        fs::write(&published, &printed).unwrap();
    }
    let want = fs::read_to_string(&published).unwrap_or_default();
    assert!(
        want == printed,
        "docs/config.schema.json differs from `bff schema`: after a change to the config types, \
         BFF_UPDATE_GOLDEN=1 cargo test -p bff-cli --test schema, then review git diff docs/config.schema.json"
    );
    let schema: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    // Durations, sizes and the typed strings are strings with their form.
    let defs = &schema["definitions"];
    for (name, example) in [
        ("Duration", "250ms"),
        ("ByteSize", "64KiB"),
        ("RateLimitKey", "header:x-client"),
        ("HedgeAfter", "p95"),
        ("Cidr", "10.0.0.0/8"),
    ] {
        assert!(
            defs[name]["type"] == "string"
                || defs[name]["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&"string".into())),
            "{name}: {}",
            defs[name]
        );
        assert!(defs[name]["pattern"].is_string(), "{name}");
        assert!(defs[name]["description"].is_string(), "{name}");
        let _ = example;
    }
}

/// (table, key) for every key the schema has, tables named as the reference's headings name them:
/// `bff.tls`, `services.NAME.retry`, `[routes]`, `[routes.backends]`.
fn schema_keys(schema: &Value) -> BTreeSet<(String, String)> {
    fn resolve<'a>(schema: &'a Value, v: &'a Value) -> &'a Value {
        if let Some(r) = v["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            return &schema["definitions"][name];
        }
        for combo in ["allOf", "anyOf"] {
            if let Some(items) = v[combo].as_array() {
                for item in items {
                    let target = resolve(schema, item);
                    if target.get("properties").is_some()
                        || target
                            .get("additionalProperties")
                            .is_some_and(Value::is_object)
                        || target.get("items").is_some()
                    {
                        return target;
                    }
                }
            }
        }
        v
    }
    fn walk(schema: &Value, v: &Value, table: &str, out: &mut BTreeSet<(String, String)>) {
        let v = resolve(schema, v);
        let Some(props) = v["properties"].as_object() else {
            return;
        };
        for (key, sub) in props {
            out.insert((table.to_string(), key.clone()));
            let sub = resolve(schema, sub);
            let name = match (table, key.as_str()) {
                ("", "services") => {
                    walk(schema, &sub["additionalProperties"], "services.NAME", out);
                    continue;
                }
                ("", "routes") => {
                    walk(schema, &sub["items"], "[routes]", out);
                    continue;
                }
                // A route's limit has the keys of `[edge.rate_limit]`, where the reference lists them.
                ("[routes]", "rate_limit") => {
                    assert_eq!(sub["properties"], {
                        let edge = resolve(schema, &schema["properties"]["edge"]);
                        resolve(schema, &edge["properties"]["rate_limit"])["properties"].clone()
                    });
                    continue;
                }
                ("[routes]", "backends") => {
                    walk(schema, &sub["items"], "[routes.backends]", out);
                    continue;
                }
                // A backend's cache, under its own heading `[routes.backends.cache]`.
                ("[routes.backends]", "cache") => "routes.backends.cache".to_string(),
                ("", _) => key.clone(),
                _ => format!("{table}.{key}"),
            };
            walk(schema, sub, &name, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(schema, schema, "", &mut out);
    out
}

/// (table, key) for every row of a key table in docs/config-reference.md: the rows under a
/// "## `[table]`" heading, before any "###" subsection.
fn reference_keys(doc: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut table: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            table = h
                .trim()
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .map(|h| match h.trim_start_matches('[').trim_end_matches(']') {
                    "routes" => "[routes]".to_string(),
                    "routes.backends" => "[routes.backends]".to_string(),
                    t => t.to_string(),
                });
        } else if line.starts_with("### ") {
            table = None;
        } else if let (Some(t), Some(rest)) = (&table, line.strip_prefix("| `")) {
            let key = rest.split('`').next().unwrap_or_default();
            out.insert((t.clone(), key.to_string()));
        }
    }
    out
}

#[test]
fn the_reference_and_the_schema_name_the_same_keys() {
    let schema: Value = serde_json::from_str(&printed_schema()).unwrap();
    let in_schema = schema_keys(&schema);
    // Top-level tables are headings of their own in the reference.
    let in_schema: BTreeSet<_> = in_schema
        .into_iter()
        .filter(|(table, _)| !table.is_empty())
        .collect();
    let doc = fs::read_to_string(docs("config-reference.md")).unwrap();
    let in_reference = reference_keys(&doc);
    assert!(in_schema.len() > 60, "walked {} keys", in_schema.len());
    let undocumented: Vec<_> = in_schema.difference(&in_reference).collect();
    let unknown: Vec<_> = in_reference.difference(&in_schema).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "in the schema, not in docs/config-reference.md: {undocumented:?}\n\
         in docs/config-reference.md, not in the schema: {unknown:?}"
    );
}

/// `bff new` writes bff.schema.json next to bff.toml, whose first line, `#:schema ./bff.schema.json`, points
/// Taplo / Even Better TOML to it.
#[test]
fn a_new_project_points_its_editor_at_the_schema() {
    let dir = std::env::temp_dir().join(format!("bff-schema-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let schema = printed_schema();
    for template in ["minimal", "web", "mobile"] {
        let name = format!("schema-{template}");
        let out = bff()
            .args(["new", &name, "--template", template, "--path"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let project = dir.join(&name);
        let toml = fs::read_to_string(project.join("bff.toml")).unwrap();
        let directive = toml.lines().next().unwrap();
        let target = directive
            .strip_prefix("#:schema ")
            .unwrap_or_else(|| panic!("{template}: bff.toml starts with {directive:?}"));
        let written = fs::read_to_string(project.join(target.trim())).unwrap();
        assert_eq!(written.trim_end(), schema.trim_end(), "{template}");
    }
    fs::remove_dir_all(&dir).unwrap();
}
