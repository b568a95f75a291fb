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
    let svc = ServiceConfig {
        retry: Some(RetryConfig::default()),
        circuit_breaker: Some(CircuitBreakerConfig::default()),
        outlier_detection: Some(OutlierDetectionConfig::default()),
        health_check: Some(HealthCheckConfig::default()),
        tls: Some(TlsConfig::default()),
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
            (_, "fields") => continue,
            ("", _) => k.clone(),
            _ => format!("{table}.{k}"),
        };
        keys(v, &sub, out);
    }
}

#[test]
fn every_config_key_is_in_the_reference() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/config-reference.md"
    ))
    .unwrap();
    let value = serde_json::to_value(everything()).unwrap();
    let mut all = Vec::new();
    keys(&value, "", &mut all);
    let mut missing = Vec::new();
    for (table, key) in &all {
        if table.is_empty() {
            continue; // top-level tables are headings themselves
        }
        let heading = format!("## `[{table}]`");
        let Some(start) = doc.find(&heading) else {
            missing.push(format!("heading {heading}"));
            continue;
        };
        let section = &doc[start + heading.len()..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
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
