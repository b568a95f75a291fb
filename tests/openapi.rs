//! The OpenAPI document of a running BFF (`GET /admin/openapi.json`, CONTRACT section 8): declarative
//! routes with their parameters, auth, rate limits, ETag, merged response typed by `response_schema`
//! files, the partial form and the error statuses; Rust routes as registered; and the config errors of a
//! broken schema file.

use bff::{App, AuthKind, Policy, config::Loader, prelude::get};
use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A fresh folder under the target's temp dir for one test's files.
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("openapi-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    dir
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

fn routes(users: &str) -> String {
    format!(
        r#"
[bff]
name = "openapi-e2e"

[edge.auth.api_keys]
keys_file = "{keys}"

[edge.rate_limit]
per_second = 1000
burst = 1000

[services.users]
endpoints = ["{users}"]

[[routes]]
path = "/api/home/{{user_id}}"
auth = "api_key"
etag = true
forward_headers = ["accept-language"]

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{user_id}}"
select = "$.profile"
response_schema = "schemas/profile.json"

[[routes.backends]]
name = "tags"
service = "users"
path = "/tags/{{user_id}}"
select = "$[*].name"
required = false

[[routes]]
method = "POST"
path = "/api/ping"

[[routes.backends]]
name = "pong"
service = "users"
path = "/ping"
fields = {{ ok = "$.ok", all = "$..ok" }}
"#,
        keys = fixture("api-keys.txt"),
    )
}

const PROFILE: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "avatar": {"$ref": "#/$defs/avatar"}
  },
  "required": ["name"],
  "$defs": {"avatar": {"type": ["string", "null"]}}
}"##;

#[tokio::test]
async fn the_document_describes_declarative_and_rust_routes() {
    let users = Stub::start().await;
    let dir = folder("document");
    std::fs::write(dir.join("bff.toml"), routes(&users.addr().to_string())).unwrap();
    std::fs::write(dir.join("schemas/profile.json"), PROFILE).unwrap();
    let mut config = Loader::new()
        .with_env(Default::default())
        .load_file(dir.join("bff.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    config.telemetry.access_log = false;
    let app = App::new(config)
        .unwrap()
        .route("/api/account/{id}", get(|| async { "{}" }))
        .route_with(
            "/api/me",
            Policy::new().auth(AuthKind::ApiKey).rate_limit(1, 1),
            get(|| async { "{}" }).post(|| async { "{}" }),
        );
    let expected = app.openapi();
    let bff = TestBff::start_app(app).await;
    let res = bff
        .client()
        .get(bff.admin_url("/admin/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc, expected, "the admin listener serves App::openapi()");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "openapi-e2e");

    let home = &doc["paths"]["/api/home/{user_id}"]["get"];
    assert_eq!(home["operationId"], "getApiHomeByUserId");
    assert_eq!(home["security"], json!([{"apiKey": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"],
        json!({"type": "apiKey", "in": "header", "name": "x-api-key"})
    );
    let params: Vec<(&str, &str, bool)> = home["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["in"].as_str().unwrap(),
                p["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("user_id", "path", true),
            ("accept-language", "header", false),
            ("if-none-match", "header", false),
        ]
    );
    let statuses: Vec<&str> = home["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        statuses,
        [
            "200", "304", "400", "401", "404", "413", "429", "431", "500", "502", "503", "504"
        ]
    );
    assert_eq!(
        home["responses"]["401"]["$ref"],
        "#/components/responses/Unauthenticated"
    );
    let ok = &home["responses"]["200"];
    assert_eq!(
        ok["headers"]["x-bff-partial"]["schema"],
        json!({"type": "string", "enum": ["true"]})
    );
    assert!(ok["headers"]["etag"].is_object(), "{ok}");
    // One key per backend: the required one typed by its file, the optional one nullable (an array: its
    // path is not singular), and `_errors`.
    assert_eq!(
        ok["content"]["application/json"]["schema"],
        json!({
            "type": "object",
            "properties": {
                "user": {"$ref": "#/components/schemas/Profile"},
                "tags": {"anyOf": [{"type": "array"}, {"type": "null"}]},
                "_errors": {
                    "type": "array",
                    "description": "The optional backends that failed (their keys are null); present only then, with `x-bff-partial: true`.",
                    "items": {"$ref": "#/components/schemas/PartialError"},
                },
            },
            "required": ["user", "tags"],
            "additionalProperties": false,
        })
    );
    // The schema file, its `$defs` as components of their own.
    assert_eq!(
        doc["components"]["schemas"]["Profile"],
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "avatar": {"$ref": "#/components/schemas/Profile_Avatar"}},
            "required": ["name"],
        })
    );
    assert_eq!(
        doc["components"]["schemas"]["Profile_Avatar"],
        json!({"type": ["string", "null"]})
    );
    let error = &doc["components"]["responses"]["RateLimited"];
    assert_eq!(
        error["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert_eq!(error["headers"]["retry-after"]["required"], true);

    // A route without optional backends has no partial form; `fields` give an object.
    let ping = &doc["paths"]["/api/ping"]["post"];
    assert!(ping.get("security").is_none());
    let schema = &ping["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"],
        json!({"pong": {"type": "object", "properties": {"all": {"type": "array"}, "ok": {}}, "required": ["all", "ok"]}})
    );
    assert!(ping["responses"]["200"].get("headers").is_none());
    assert!(ping["responses"].get("401").is_none());

    // Rust routes: each method, its path parameters, its policy's auth and limit.
    let account = &doc["paths"]["/api/account/{id}"]["get"];
    assert_eq!(account["x-bff-route"], "rust");
    assert_eq!(account["parameters"][0]["name"], "id");
    assert!(account.get("security").is_none());
    let me = &doc["paths"]["/api/me"];
    for method in ["get", "post"] {
        assert_eq!(me[method]["security"], json!([{"apiKey": []}]), "{method}");
        assert!(me[method]["responses"]["429"].is_object(), "{method}");
    }
    bff.shutdown().await;
}

/// A missing, malformed or dangling schema file is a config error naming the file, line and key.
#[test]
fn a_broken_response_schema_is_a_config_error_with_file_line_and_key() {
    let dir = folder("broken");
    let config = routes("127.0.0.1:1");
    let line = config
        .lines()
        .position(|l| l.starts_with("response_schema"))
        .unwrap()
        + 1;
    std::fs::write(dir.join("bff.toml"), &config).unwrap();
    let load = || {
        Loader::new()
            .with_env(Default::default())
            .load_file(dir.join("bff.toml"))
            .map(drop)
            .unwrap_err()
            .to_string()
    };
    let at = format!("bff.toml:{line}: routes[0].backends[0].response_schema");
    let e = load();
    assert!(e.contains(&at) && e.contains("cannot read"), "{e}");
    std::fs::write(
        dir.join("schemas/profile.json"),
        "{\"type\": \"object\",\n}",
    )
    .unwrap();
    let e = load();
    assert!(e.contains(&at) && e.contains("not JSON at line 2"), "{e}");
    std::fs::write(
        dir.join("schemas/profile.json"),
        r##"{"properties": {"a": {"$ref": "#/$defs/missing"}}}"##,
    )
    .unwrap();
    let e = load();
    assert!(
        e.contains(&at) && e.contains("#/properties/a/$ref") && e.contains("resolves to nothing"),
        "{e}"
    );
    std::fs::write(dir.join("schemas/profile.json"), PROFILE).unwrap();
    let loaded = Loader::new()
        .with_env(Default::default())
        .load_file(dir.join("bff.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let schema = loaded.routes[0].backends[0]
        .response_schema
        .as_ref()
        .unwrap();
    assert_eq!(schema.schema().unwrap()["required"], json!(["name"]));
    assert!(Path::new(schema.path()).is_absolute(), "{}", schema.path());
}

/// A reload builds the document again: a schema file changed on disk and a route added appear in
/// `/admin/openapi.json`; a schema file broken since is refused with the rest of the config, and the
/// document stays the last good one.
#[tokio::test]
async fn a_reload_rebuilds_the_document() {
    let dir = folder("reload");
    let route = |path: &str| {
        format!(
            "\n[[routes]]\npath = \"{path}\"\n\n[[routes.backends]]\nname = \"count\"\nservice = \"users\"\npath = \"/count\"\nresponse_schema = \"schemas/count.json\"\n"
        )
    };
    let head = "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[services.users]\nendpoints = [\"127.0.0.1:1\"]\n";
    std::fs::write(dir.join("bff.toml"), format!("{head}{}", route("/a"))).unwrap();
    std::fs::write(dir.join("schemas/count.json"), r#"{"type": "string"}"#).unwrap();
    let bff = TestBff::start_app(App::from_config(dir.join("bff.toml")).unwrap()).await;
    let doc = bff.admin_json("/admin/openapi.json").await;
    assert_eq!(doc["components"]["schemas"]["Count"]["type"], "string");
    assert!(doc["paths"]["/b"].is_null());

    std::fs::write(dir.join("schemas/count.json"), r#"{"type": "integer"}"#).unwrap();
    std::fs::write(
        dir.join("bff.toml"),
        format!("{head}{}{}", route("/a"), route("/b")),
    )
    .unwrap();
    let reload = |bff: &TestBff| bff.client().post(bff.admin_url("/admin/reload")).send();
    assert_eq!(reload(&bff).await.unwrap().status(), 200);
    let doc = bff.admin_json("/admin/openapi.json").await;
    assert_eq!(doc["components"]["schemas"]["Count"]["type"], "integer");
    assert_eq!(doc["paths"]["/b"]["get"]["operationId"], "getB");

    std::fs::write(dir.join("schemas/count.json"), r#"{"type": "int"}"#).unwrap();
    let res = reload(&bff).await.unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("routes[0].backends[0].response_schema") && message.contains("\"int\""),
        "{message}"
    );
    assert_eq!(bff.admin_json("/admin/openapi.json").await, doc);
    bff.shutdown().await;
}
