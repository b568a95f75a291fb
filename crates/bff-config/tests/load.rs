use bff_config::{ConfigErrors, Format, Loader};
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(text: &str, format: Format) -> ConfigErrors {
    Loader::new()
        .with_env(env(&[]))
        .load_str(text, format)
        .expect_err("config should be refused")
}

/// The errors left once those naming a cargo feature this build lacks are dropped: `cargo test -p
/// bff-config` builds it without `jwt` and `otlp`, which adds an error on `[edge.auth.jwt]` and
/// `otlp_endpoint` (tested in the crate's unit tests), and the workspace with them.
fn without_feature_errors(mut errs: ConfigErrors) -> ConfigErrors {
    errs.0
        .retain(|e| !e.message.contains("which this binary was built without"));
    errs
}

const GOOD: &str = r#"
[bff]
name = "web-bff"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[services.users]
endpoints = ["127.0.0.1:9001"]
timeout = "800ms"

[[routes]]
path = "/api/home/{user_id}"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{user_id}"
select = "$.profile"

[[routes.backends]]
name = "recs"
service = "users"
path = "/recs/{user.category}"
depends_on = ["user"]
"#;

#[test]
fn a_good_config_loads_with_defaults() {
    let c = Loader::new()
        .with_env(env(&[]))
        .load_str(GOOD, Format::Toml)
        .unwrap();
    assert_eq!(c.bff.name, "web-bff");
    assert_eq!(c.services["users"].timeout.get().as_millis(), 800);
    assert_eq!(c.services["users"].connect_timeout.get().as_millis(), 200);
    assert_eq!(c.edge.max_concurrency, 1024);
    assert_eq!(c.routes[0].backends.len(), 2);
    assert!(c.routes[0].backends[0].required);
}

#[test]
fn every_error_is_reported_with_line_and_key() {
    let bad = r#"
[bff]
name = "web-bff"
listen = "nowhere"
colour = "blue"

[services.users]
endpoints = ["127.0.0.1:9001"]
timeout = "fast"

[[routes]]
path = "/api/home/{user_id}"

[[routes.backends]]
name = "user"
service = "userz"
path = "/users/{user_id}"
select = "$.[["

[[routes.backends]]
name = "recs"
service = "users"
path = "/recs/{nope}"
depends_on = ["recs2"]

[[routes.backends]]
name = "recs2"
service = "users"
path = "/recs"
depends_on = ["recs"]
"#;
    let errs = errors(bad, Format::Toml);
    let text = errs.to_string();
    println!("{text}");
    let find = |key: &str| {
        errs.0
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key} in:\n{text}"))
    };
    assert_eq!(find("bff.listen").line, Some(4));
    assert_eq!(find("bff.colour").line, Some(5));
    assert!(find("bff.colour").message.contains("unknown field"));
    assert_eq!(find("services.users.timeout").line, Some(9));
    assert!(
        find("services.users.timeout")
            .message
            .contains("invalid duration")
    );
    assert_eq!(find("routes[0].backends[0].service").line, Some(16));
    assert!(
        find("routes[0].backends[0].service")
            .message
            .contains("unknown service")
    );
    assert_eq!(find("routes[0].backends[0].select").line, Some(18));
    assert_eq!(find("routes[0].backends[1].path").line, Some(23));
    assert!(
        find("routes[0].backends[1].path")
            .message
            .contains("unknown placeholder {nope}")
    );
    assert!(find("routes[0].backends").message.contains("cycle"));
    assert!(text.starts_with("7 config errors"), "{text}");
    assert!(text.contains("<inline>:4: bff.listen:"), "{text}");
}

#[test]
fn missing_required_keys_are_named_once() {
    let errs = errors(
        "[services.s]\nendpoints=[\"a:1\"]\n[[routes]]\npath = \"/x\"\n[[routes.backends]]\nname = \"b\"\npath = 5\n",
        Format::Toml,
    );
    let text = errs.to_string();
    assert!(text.contains("missing required key `service`"), "{text}");
    assert!(text.contains("routes[0].backends[0].path"), "{text}");
    assert_eq!(errs.0.len(), 2, "{text}");
}

#[test]
fn syntax_errors_name_the_line() {
    let errs = errors("[bff]\nname = \"x\"\nlisten = \n", Format::Toml);
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].line, Some(3), "{errs}");
}

#[test]
fn environment_overrides_a_key() {
    let c = Loader::new()
        .with_env(env(&[
            ("BFF__SERVICES__USERS__TIMEOUT", "2s"),
            ("BFF__EDGE__MAX_CONCURRENCY", "7"),
        ]))
        .load_str(GOOD, Format::Toml)
        .unwrap();
    assert_eq!(c.services["users"].timeout.get().as_secs(), 2);
    assert_eq!(c.edge.max_concurrency, 7);
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let errs = Loader::new()
        .with_env(env(&[("BFF__SERVICES__USERS__TIMEOUT", "soon")]))
        .load_str(GOOD, Format::Toml)
        .unwrap_err();
    assert_eq!(
        errs.0[0].file, "environment BFF__SERVICES__USERS__TIMEOUT",
        "{errs}"
    );
}

/// What a test harness does with a project's file: read the services it names without their variables,
/// then replace their endpoints (an unset `${VAR}` there is never read) and drop their discovery.
#[test]
fn set_values_replace_keys_before_variables_are_read() {
    let text = r#"
[services.users]
discovery = "dns://users.default.svc.cluster.local:8080"
[services.reviews]
endpoints = ["${REVIEWS_ADDR}"]
"#;
    let loader = Loader::new().with_env(env(&[]));
    let source = bff_config::Source::inline(text, Format::Toml);
    let raw = loader.raw(&source).unwrap();
    let mut names: Vec<&String> = raw["services"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["reviews", "users"]);
    assert!(loader.load(&source).is_err(), "REVIEWS_ADDR is not set");

    let mut loader = loader.with_value(&["bff", "listen"], "127.0.0.1:0".into());
    for name in names {
        loader = loader
            .with_value(
                &["services", name, "endpoints"],
                serde_json::json!(["127.0.0.1:7001"]),
            )
            .with_value(&["services", name, "discovery"], serde_json::Value::Null);
    }
    let c = loader.load(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.bff.listen.to_string(), "127.0.0.1:0");
    for name in ["users", "reviews"] {
        let endpoints: Vec<&str> = c.services[name]
            .endpoints
            .iter()
            .map(|e| e.as_str())
            .collect();
        assert_eq!(endpoints, ["127.0.0.1:7001"], "{name}");
        assert_eq!(c.services[name].discovery, None, "{name}");
    }
}

#[test]
fn env_vars_are_expanded_in_strings() {
    let text = GOOD.replace("\"web-bff\"", "\"${APP}-bff\"");
    let c = Loader::new()
        .with_env(env(&[("APP", "shop")]))
        .load_str(&text, Format::Toml)
        .unwrap();
    assert_eq!(c.bff.name, "shop-bff");
    let errs = Loader::new()
        .with_env(env(&[]))
        .load_str(&text, Format::Toml)
        .unwrap_err();
    assert!(
        errs.to_string()
            .contains("environment variable APP is not set"),
        "{errs}"
    );
    assert_eq!(errs.0[0].line, Some(3));
}

#[test]
fn a_variable_with_a_default_falls_back_when_unset_or_empty() {
    let text = GOOD.replace("\"web-bff\"", "\"${APP:-web}-bff\"");
    let name = |vars: &[(&str, &str)]| {
        Loader::new()
            .with_env(env(vars))
            .load_str(&text, Format::Toml)
            .unwrap()
            .bff
            .name
            .clone()
    };
    assert_eq!(name(&[]), "web-bff");
    assert_eq!(name(&[("APP", "")]), "web-bff");
    assert_eq!(name(&[("APP", "shop")]), "shop-bff");
    // A default may be empty, and may hold what a value may (here a port's colon).
    let text = GOOD.replace("\"127.0.0.1:9001\"", "\"${USERS_ADDR:-127.0.0.1:9101}\"");
    let c = Loader::new()
        .with_env(env(&[]))
        .load_str(&text, Format::Toml)
        .unwrap();
    assert_eq!(c.services["users"].endpoints[0].as_str(), "127.0.0.1:9101");
}

#[test]
fn yaml_and_json_load_and_locate() {
    let yaml = "bff:\n  name: y\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nservices:\n  users:\n    endpoints: [\"127.0.0.1:1\"]\n    timeout: nope\n";
    let errs = errors(yaml, Format::Yaml);
    assert_eq!(errs.0[0].key, "services.users.timeout");
    assert_eq!(errs.0[0].line, Some(8), "{errs}");
    let json = r#"{"bff": {"name": "j", "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0"},
 "services": {"users": {"endpoints": ["127.0.0.1:1"]}}}"#;
    let c = Loader::new()
        .with_env(env(&[]))
        .load_str(json, Format::Json)
        .unwrap();
    assert_eq!(c.bff.name, "j");
}

#[test]
fn policy_values_are_checked() {
    let errs = errors(
        r#"
[edge.cors]
allow_origins = ["*", "null"]
allow_credentials = true
[edge.auth.jwt]
jwks_file = "k.json"
algorithms = ["none"]
[services.s]
endpoints = ["nohost", "h:99999"]
load_balancer = "random"
[services.s.retry]
on = ["sometimes"]
"#,
        Format::Toml,
    );
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "edge.cors.allow_origins[0]",
        "edge.cors.allow_origins[1]",
        "edge.auth.jwt.algorithms[0]",
        "services.s.endpoints[0]",
        "services.s.endpoints[1]",
        "services.s.load_balancer",
        "services.s.retry.on[0]",
    ] {
        assert!(keys.contains(&k), "missing {k} in {errs}");
    }
}

#[test]
fn an_unset_variable_is_one_error_not_two() {
    let text = GOOD.replace("\"127.0.0.1:9001\"", "\"${USERS_ADDR}\"");
    let errs = Loader::new()
        .with_env(env(&[]))
        .load_str(&text, Format::Toml)
        .unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert!(
        errs.0[0].message.contains("USERS_ADDR is not set"),
        "{errs}"
    );
}

/// Values that used to pass `bff check` and then ran differently (or not at all): each is refused at load,
/// with its line and key, by the one parser its consumer uses too.
const DRIFT: &str = r#"[edge.auth.jwt]
jwks_file = "k.json"
algorithms = ["HS256"]
secret = "${JWT_SECRET}"
[edge.rate_limit]
key = "user_id"
[services.s]
endpoints = ["h:1"]
timeout = "1s"
hedge_after = "2s"
[services.s.retry]
on = ["reset", "+503", "503", "0503"]
[services.t]
endpoints = ["h:1"]
hedge_after = "p100"
[[routes]]
path = "/a"
forward_headers = ["accept-language", "content-length", "Host", "expect", "te", "upgrade", "connection", "keep-alive", "trailer", "transfer-encoding", "proxy-authorization"]
[[routes.backends]]
name = "b"
service = "s"
path = "/b"
"#;

#[test]
fn drifting_values_are_refused_with_line_and_key() {
    let errs = Loader::new()
        .with_env(env(&[("JWT_SECRET", "")]))
        .load_str(DRIFT, Format::Toml)
        .map_err(without_feature_errors)
        .unwrap_err();
    let found: Vec<(Option<usize>, &str)> =
        errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    let mut want = vec![
        (Some(4), "edge.auth.jwt.secret".to_string()),
        (Some(6), "edge.rate_limit.key".into()),
        (Some(10), "services.s.hedge_after".into()),
        (Some(12), "services.s.retry.on[1]".into()),
        (Some(12), "services.s.retry.on[3]".into()),
        (Some(15), "services.t.hedge_after".into()),
    ];
    for i in 1..=10 {
        want.push((Some(18), format!("routes[0].forward_headers[{i}]")));
    }
    for (line, key) in &want {
        assert!(
            found.contains(&(*line, key.as_str())),
            "missing line {line:?} key {key} in {errs}"
        );
    }
    assert_eq!(errs.0.len(), want.len(), "{errs}");
    let text = errs.to_string();
    for says in [
        "secret: is empty",
        "\"user_id\" is not client_ip, jwt_sub, header:NAME or header:NAME+client_ip",
        "2s is not less than timeout (1s)",
        "\"+503\" is not connect_error",
        "\"p100\" is not a percentile",
        "content-length is a hop-by-hop or framing header",
        "host is a hop-by-hop or framing header",
    ] {
        assert!(text.contains(says), "missing `{says}` in {text}");
    }
}

#[test]
fn a_short_hmac_secret_is_refused_without_being_shown() {
    let secret = "correct-horse-battery";
    let errs = Loader::new()
        .with_env(env(&[("JWT_SECRET", secret)]))
        .load_str(
            "[edge.auth.jwt]\njwks_file = \"k.json\"\nalgorithms = [\"HS256\"]\nsecret = \"${JWT_SECRET}\"\n",
            Format::Toml,
        )
        .map_err(without_feature_errors)
        .unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].key, "edge.auth.jwt.secret");
    assert_eq!(errs.0[0].line, Some(4));
    let text = errs.to_string();
    assert!(
        text.contains("is 21 bytes long") && text.contains("at least 32"),
        "{text}"
    );
    assert!(!text.contains(secret), "the secret leaked: {text}");
    let long = "x".repeat(32);
    assert!(
        Loader::new()
            .with_env(env(&[("JWT_SECRET", &long)]))
            .load_str(
                "[edge.auth.jwt]\njwks_file = \"k.json\"\nalgorithms = [\"HS256\"]\nsecret = \"${JWT_SECRET}\"\n",
                Format::Toml,
            )
            .map_err(without_feature_errors)
            .err()
            .is_none_or(|e| e.0.is_empty())
    );
}

#[test]
fn a_config_from_a_file_remembers_it_and_one_from_a_text_does_not() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("origin");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bff.toml");
    std::fs::write(&path, GOOD).unwrap();
    let loader = Loader::new().with_env(env(&[("UNUSED_TOKEN", "hunter2")]));
    let config = loader.load_file(&path).unwrap();
    let origin = config.origin.as_ref().expect("loaded from a file");
    assert_eq!(origin.path(), path);
    assert_eq!(origin.text(), GOOD);
    let again = origin
        .load_text(GOOD.replace("web-bff", "web-bff-2"))
        .unwrap();
    assert_eq!(again.bff.name, "web-bff-2");
    assert_eq!(again.origin.as_ref().unwrap().path(), path);
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "Debug shows no environment"
    );
    assert!(
        loader
            .load_str(GOOD, Format::Toml)
            .unwrap()
            .origin
            .is_none()
    );
}

#[test]
fn a_bad_hash_key_is_refused_with_its_line() {
    let errs = errors(
        "[services.s]\nendpoints = [\"h:1\"]\nload_balancer = \"ring_hash\"\nhash_key = \"cookie:session\"\n",
        Format::Toml,
    );
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].key, "services.s.hash_key");
    assert_eq!(errs.0[0].line, Some(4));
    assert!(
        errs.0[0]
            .message
            .contains("is not header:NAME or param:NAME"),
        "{errs}"
    );
}

#[test]
fn an_unknown_retry_method_is_refused_not_dropped() {
    let errs = errors(
        "[services.s]\nendpoints = [\"h:1\"]\n[services.s.retry]\nmethods = [\"post\", \"GTE\"]\n",
        Format::Toml,
    );
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].key, "services.s.retry.methods[1]");
    assert_eq!(errs.0[0].line, Some(4));
}

/// Values the consumers parse with the `http` crate are checked with it: before, `bff check` passed them
/// (a CORS origin dropped, an OTLP URL the exporter refuses at start) or failed without a line.
#[test]
fn values_the_consumers_parse_with_http_are_checked_with_it() {
    let errs = errors(
        r#"[bff]
name = "web\u0001bff"
[edge.cors]
allow_origins = ["https://a\u0007b.example"]
[edge.auth.jwt]
jwks_url = "http://[::1"
[services.s]
endpoints = ["a<b:80"]
[telemetry]
otlp_endpoint = "http://[::1"
"#,
        Format::Toml,
    );
    // (Built without the `otlp` or `jwt` feature, their tables have an error more that names it.)
    let errs = without_feature_errors(errs);
    let found: Vec<(Option<usize>, &str)> =
        errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        found,
        [
            (Some(2), "bff.name"),
            (Some(4), "edge.cors.allow_origins[0]"),
            (Some(6), "edge.auth.jwt.jwks_url"),
            (Some(8), "services.s.endpoints[0]"),
            (Some(10), "telemetry.otlp_endpoint"),
        ],
        "{errs}"
    );
}

#[test]
fn a_json_number_out_of_range_is_an_error_not_a_panic() {
    let json = r#"{"bff": {"name": "j", "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0"},
 "edge": {"max_concurrency": 1e400},
 "services": {"users": {"endpoints": ["127.0.0.1:1"], "retry": {"budget_ratio": 0.25}}}}"#;
    let errs = errors(json, Format::Json);
    let e = errs
        .0
        .iter()
        .find(|e| e.key == "edge.max_concurrency")
        .unwrap_or_else(|| panic!("{errs}"));
    assert_eq!(e.line, Some(2), "{errs}");
    assert!(e.message.contains("is out of range"), "{errs}");
    // A float that fits is a number like any other.
    assert!(
        !errs.0.iter().any(|e| e.key.contains("budget_ratio")),
        "{errs}"
    );
}

/// Configs the config fuzzer (fuzz/fuzz_targets/config.rs) found passing `bff check` and then crashing the
/// process are refused, with line and key (their inputs are seeds in fuzz/corpus/config).
#[test]
fn configs_that_crashed_the_fuzzer_are_refused_with_line_and_key() {
    let cases = [(
        // tokio's interval panics on a zero period: the probe loop died at its first tick.
        "[services.s]\nendpoints = [\"127.0.0.1:1\"]\n[services.s.health_check]\ninterval = \"0s\"\ntimeout = \"0s\"\n",
        4,
        "services.s.health_check.interval",
        "must be greater than 0",
    )];
    for (text, line, key, message) in cases {
        let errs = Loader::new()
            .with_env(env(&[]))
            .load_str(text, Format::Toml)
            .unwrap_err();
        assert!(
            errs.0
                .iter()
                .any(|e| e.line == Some(line) && e.key == key && e.message.contains(message)),
            "{key} at line {line}: {errs}"
        );
    }
}

/// A backend path with text no URI can hold (here a space, as the config fuzzer wrote it) passed `bff
/// check`, and then every request of the route failed with 500: refused with its line and key.
#[test]
fn a_backend_path_no_uri_can_hold_is_refused_with_its_line() {
    let text = "[services.s]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/r/{id}\"\n[[routes.backends]]\nname = \"b\"\nservice = \"s\"\npath = \"/users/{id}max attempts\"\n";
    let errs = Loader::new()
        .with_env(env(&[]))
        .load_str(text, Format::Toml)
        .unwrap_err();
    assert!(
        errs.0.iter().any(|e| e.line == Some(8)
            && e.key == "routes[0].backends[0].path"
            && e.message.contains("is not a URI path")),
        "{errs}"
    );
    // Placeholders, queries and encoded text are fine.
    let good = text.replace("{id}max attempts", "{id}?q=a%20b&id={id}");
    Loader::new()
        .with_env(env(&[]))
        .load_str(&good, Format::Toml)
        .unwrap();
}

#[test]
fn cache_and_coalescing_keys_load_and_bad_ones_are_refused_with_line_and_key() {
    let good = r#"
[services.s]
endpoints = ["127.0.0.1:1"]
coalesce = true
[services.s.cache]
ttl = "5s"
stale_while_revalidate = "1m"
stale_if_error = "5m"
max_entries = 10
max_bytes = "1MiB"
respect_cache_control = false
shared = true
[[routes]]
path = "/a"
etag = true
cache_control = "private, max-age=10"
[[routes.backends]]
name = "b"
service = "s"
path = "/b"
coalesce = true
[routes.backends.cache]
ttl = "2s"
"#;
    let c = Loader::new()
        .with_env(env(&[]))
        .load_str(good, Format::Toml)
        .unwrap();
    let s = &c.services["s"];
    let cache = s.cache.as_ref().unwrap();
    assert!(s.coalesce);
    assert_eq!(cache.ttl.get(), std::time::Duration::from_secs(5));
    assert_eq!(
        cache.stale_while_revalidate.get(),
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        cache.stale_if_error.get(),
        std::time::Duration::from_secs(300)
    );
    assert_eq!(cache.max_entries, 10);
    assert_eq!(cache.max_bytes.bytes(), 1 << 20);
    assert!(!cache.respect_cache_control && cache.shared);
    let r = &c.routes[0];
    assert!(r.etag);
    assert_eq!(
        r.cache_control.as_ref().unwrap().value(),
        "private, max-age=10"
    );
    assert!(r.backends[0].coalesce);
    assert_eq!(
        r.backends[0].cache.as_ref().unwrap().ttl.get(),
        std::time::Duration::from_secs(2)
    );

    let bad = r#"
[services.s]
endpoints = ["127.0.0.1:1"]
[services.s.cache]
ttl = "0s"
max_entries = 0
[services.t]
endpoints = ["127.0.0.1:1"]
[services.t.cache]
max_bytes = "100B"
[[routes]]
method = "POST"
path = "/a"
etag = true
cache_control = "a\u0001b"
[[routes.backends]]
name = "b"
service = "s"
method = "POST"
path = "/b"
coalesce = true
[routes.backends.cache]
shared = true
"#;
    let errs = errors(bad, Format::Toml);
    let found: Vec<(Option<usize>, &str)> =
        errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    let want = [
        (Some(5), "services.s.cache.ttl"),
        (Some(6), "services.s.cache.max_entries"),
        (Some(10), "services.t.cache.max_bytes"),
        (Some(14), "routes[0].etag"),
        (Some(15), "routes[0].cache_control"),
        (Some(21), "routes[0].backends[0].coalesce"),
        (Some(22), "routes[0].backends[0].cache"),
    ];
    for (line, key) in want {
        assert!(
            found.contains(&(line, key)),
            "missing line {line:?} key {key} in {errs}"
        );
    }
    assert_eq!(errs.0.len(), want.len(), "{errs}");
    let text = errs.to_string();
    assert!(
        text.contains("only GET calls are coalesced and cached, not POST"),
        "{text}"
    );
}

/// A service's `timeout`, `connect_timeout` and `pool_idle_timeout` of zero are refused, each with its
/// line and key.
#[test]
fn zero_service_durations_are_refused_with_line_and_key() {
    let text = "[services.s]\nendpoints = [\"127.0.0.1:1\"]\ntimeout = \"0s\"\nconnect_timeout = \"0ms\"\npool_idle_timeout = \"0s\"\n";
    let errs = Loader::new()
        .with_env(env(&[]))
        .load_str(text, Format::Toml)
        .unwrap_err();
    for (line, key) in [
        (3, "services.s.timeout"),
        (4, "services.s.connect_timeout"),
        (5, "services.s.pool_idle_timeout"),
    ] {
        assert!(
            errs.0.iter().any(|e| e.line == Some(line)
                && e.key == key
                && e.message.contains("must be greater than 0")),
            "{key} at line {line}: {errs}"
        );
    }
}
