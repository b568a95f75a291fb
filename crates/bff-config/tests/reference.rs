//! docs/config-reference.md documents every key of the config types: a field added to the schema without
//! its row in the reference fails here.

use bff_config::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// A config with every optional table present, so that serialization shows every key.
fn everything() -> Config {
    let mut c = Config::default();
    c.edge.cors = Some(CorsConfig::default());
    c.edge.auth.jwt = Some(JwtConfig::default());
    c.edge.auth.api_keys = Some(ApiKeysConfig::default());
    c.edge.rate_limit = Some(RateLimitConfig::default());
    let mut session = SessionConfig::new(
        "https://id.example.com".parse().unwrap(),
        "web",
        "https://app.example.com".parse().unwrap(),
    );
    session.client_secret = Some(Secret::new("s"));
    session.key_file = Some("k.pem".into());
    session.store_key = Some(SessionKey::new([0; 32]));
    c.session = Some(session);
    let svc = ServiceConfig {
        retry: Some(RetryConfig::default()),
        circuit_breaker: Some(CircuitBreakerConfig::default()),
        outlier_detection: Some(OutlierDetectionConfig::default()),
        health_check: Some(HealthCheckConfig::default()),
        tls: Some(TlsConfig::default()),
        cache: Some(CacheConfig::default()),
        token: Some(TokenMode::User),
        ..ServiceConfig::default()
    };
    c.services.insert("NAME".into(), svc);
    let text = r#"
[[routes]]
path = "/x"
[[routes.backends]]
name = "b"
service = "NAME"
path = "/y"
"#;
    let mut with_route: Config = Loader::new()
        .with_env(Default::default())
        .load_str(
            &format!("[services.NAME]\nendpoints = [\"a:1\"]\n{text}"),
            Format::Toml,
        )
        .unwrap()
        .into_config();
    with_route.routes[0].backends[0].fields = Some(BTreeMap::new());
    with_route.routes[0].backends[0].cache = Some(CacheConfig::default());
    c.routes = with_route.routes;
    c
}

/// (table heading, key) for every key.
fn keys(v: &Value, table: &str, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        out.push((table.to_string(), k.clone()));
        let sub = match (table, k.as_str()) {
            ("", "services") => {
                for (name, svc) in v.as_object().unwrap() {
                    keys(svc, &format!("services.{name}"), out);
                }
                continue;
            }
            ("", "routes") => {
                keys(&v[0], "[routes]", out);
                continue;
            }
            ("[routes]", "backends") => {
                keys(&v[0], "[routes.backends]", out);
                continue;
            }
            ("[routes.backends]", "cache") => "routes.backends.cache".to_string(),
            (_, "fields") => continue,
            ("", _) => k.clone(),
            _ => format!("{table}.{k}"),
        };
        keys(v, &sub, out);
    }
}

/// The checkout's root.
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> String {
    std::fs::read_to_string(root().join("docs/config-reference.md")).unwrap()
}

/// The section of `table` (`bff`, `services.NAME.retry`, `[routes]` for `[[routes]]`): the text after its
/// heading up to the next heading of its level.
fn section<'a>(doc: &'a str, table: &str) -> Option<&'a str> {
    let heading = format!("## `[{table}]`");
    let start = doc.find(&heading)?;
    let section = &doc[start + heading.len()..];
    Some(&section[..section.find("\n## ").unwrap_or(section.len())])
}

/// Every key the reference documents, as `table.key` (`routes.backends.select` for a key of
/// `[[routes.backends]]`): the rows of each section's key table.
fn reference_keys(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in doc.lines() {
        let Some(table) = line
            .strip_prefix("## `[")
            .and_then(|l| l.strip_suffix("]`"))
        else {
            continue;
        };
        let name = table.trim_start_matches('[').trim_end_matches(']');
        for row in section(doc, table).unwrap().lines() {
            let Some(key) = row.strip_prefix("| `").and_then(|r| r.split_once("` |")) else {
                continue;
            };
            let key = key.0;
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                out.push(format!("{name}.{key}"));
            }
        }
    }
    out
}

#[test]
fn every_config_key_is_in_the_reference() {
    let doc = reference();
    let value = serde_json::to_value(everything()).unwrap();
    let mut all = Vec::new();
    keys(&value, "", &mut all);
    let mut missing = Vec::new();
    for (table, key) in &all {
        if table.is_empty() {
            continue; // top-level tables are headings themselves
        }
        let Some(section) = section(&doc, table) else {
            missing.push(format!("heading ## `[{table}]`"));
            continue;
        };
        if !section.contains(&format!("\n| `{key}` |")) {
            missing.push(format!("{table}.{key}"));
        }
    }
    assert!(all.len() > 60, "walked {} keys", all.len());
    assert!(
        missing.is_empty(),
        "not documented in docs/config-reference.md: {missing:?}"
    );
}

/// tests/config_keys.toml maps every key of the reference to the tests that prove it live (a value other
/// than the default, asserted so that ignoring the key fails); each `FILE::FUNCTION` must exist, and each
/// entry must be a key of the reference. A key without a test needs `{ untestable = "why" }`.
#[test]
fn every_key_of_the_reference_has_a_test() {
    let doc = reference();
    let keys = reference_keys(&doc);
    assert!(keys.len() > 90, "read {} keys: {keys:?}", keys.len());
    let inventory: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("tests/config_keys.toml")).unwrap())
            .unwrap();
    let mut problems = Vec::new();
    for key in &keys {
        match inventory.get(key) {
            None => problems.push(format!("{key}: no entry")),
            Some(toml::Value::Table(t)) => {
                let why = t.get("untestable").and_then(toml::Value::as_str);
                if why.is_none_or(str::is_empty) {
                    problems.push(format!("{key}: a table needs `untestable = \"why\"`"));
                }
            }
            Some(toml::Value::Array(tests)) if !tests.is_empty() => {
                for test in tests {
                    let Some((file, name)) = test.as_str().and_then(|t| t.split_once("::")) else {
                        problems.push(format!("{key}: {test:?} is not FILE::FUNCTION"));
                        continue;
                    };
                    let Ok(text) = std::fs::read_to_string(root().join(file)) else {
                        problems.push(format!("{key}: no file {file}"));
                        continue;
                    };
                    let defined = [format!("fn {name}("), format!("fn {name}<")]
                        .iter()
                        .any(|f| text.contains(f.as_str()));
                    if !defined {
                        problems.push(format!("{key}: {file} has no fn {name}"));
                    }
                }
            }
            Some(other) => {
                problems.push(format!("{key}: {other:?} is neither tests nor untestable"))
            }
        }
    }
    for entry in inventory.keys() {
        if !keys.contains(entry) {
            problems.push(format!("{entry}: not a key of docs/config-reference.md"));
        }
    }
    assert!(
        problems.is_empty(),
        "tests/config_keys.toml:\n{}",
        problems.join("\n")
    );
}
