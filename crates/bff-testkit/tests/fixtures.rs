//! `Recorder` and `Replay`: a BFF's downstream exchanges stored as fixtures (credentials redacted, a
//! schema inferred per backend), then replayed with no service running.

use bff_testkit::{Recorder, Replay, Stub, TestBff};
use serde_json::{Value, json};
use std::{path::PathBuf, sync::Arc};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(users: &str, orders: &str) -> bff::config::Validated {
    let text = format!(
        r#"
[services.users]
endpoints = ["{users}"]
[services.orders]
endpoints = ["{orders}"]
[[routes]]
path = "/home/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
select = "$.profile"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders?userId={{id}}&api_key=s3cr3t"
required = false
"#
    );
    bff::config::Loader::new()
        .with_env(Default::default())
        .with_value(&["bff", "listen"], "127.0.0.1:0".into())
        .with_value(&["bff", "admin_listen"], "127.0.0.1:0".into())
        .with_value(&["telemetry", "access_log"], false.into())
        .load_str(&text, bff::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn recorded_exchanges_are_redacted_and_replayed_with_no_service_running() {
    let dir = fresh_dir("record-replay");
    let users = Stub::start().await;
    let orders = Stub::start().await;
    for (id, name, extra) in [
        ("1", "Ada", json!({"nick": "ada"})),
        ("2", "Grace", json!({})),
    ] {
        let mut profile = json!({"name": name, "age": 36});
        profile
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        users
            .on(&format!("/users/{id}"))
            .header("set-cookie", "session=abc")
            .header("x-internal-trace", "t-1")
            .header("cache-control", "max-age=5")
            .json(json!({"id": id, "profile": profile}));
    }
    orders
        .on("/orders")
        .json(json!([{"id": "o1", "total": 9.5}]));

    let app = bff::App::new(config(&users.endpoint(), &orders.endpoint())).unwrap();
    let recorder = Recorder::new(&dir, app.config(), &[]).unwrap();
    let bff = TestBff::start_app(app.with_tap(Arc::new(recorder)).unwrap()).await;
    let mut live = Vec::new();
    for id in ["1", "2"] {
        let res = bff.get(&format!("/home/{id}")).await;
        assert_eq!(res.status(), 200);
        live.push(res.json::<Value>().await.unwrap());
    }
    bff.shutdown().await;

    // One file per distinct call, the credentials of the query and of the headers redacted, only the
    // headers that matter kept.
    let user_files = files(&dir.join("services/users"));
    assert_eq!(user_files.len(), 2, "{user_files:?}");
    let f = read(&user_files[0]);
    assert_eq!(f["service"], "users");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["status"], 200);
    assert_eq!(f["headers"]["set-cookie"], "[redacted]");
    assert_eq!(f["headers"]["cache-control"], "max-age=5");
    assert!(f["headers"].get("x-internal-trace").is_none(), "{f}");
    assert!(f["headers"].get("date").is_none(), "{f}");
    let order_files = files(&dir.join("services/orders"));
    assert_eq!(order_files.len(), 2);
    let o = read(&order_files[0]);
    assert_eq!(o["path"], "/orders");
    assert!(
        o["query"]
            .as_str()
            .unwrap()
            .ends_with("&api_key=[redacted]"),
        "{o}"
    );
    let all = std::fs::read_to_string(&order_files[0]).unwrap()
        + &std::fs::read_to_string(&user_files[0]).unwrap();
    assert!(!all.contains("s3cr3t") && !all.contains("abc"), "{all}");

    // The schema of the selected value, merged across samples: `nick` is in one profile only.
    let schema = read(&dir.join("schemas/get-home-id.user.json"));
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["age", "name"]));
    assert_eq!(schema["properties"]["nick"]["type"], "string");
    assert_eq!(schema["properties"]["age"]["type"], "integer");
    let orders_schema = read(&dir.join("schemas/get-home-id.orders.json"));
    assert_eq!(
        orders_schema["items"]["properties"]["total"]["type"],
        "number"
    );

    // Replayed: the same answers, and the services never hear of it.
    let calls = users.requests().len() + orders.requests().len();
    let app = bff::App::new(config(&users.endpoint(), &orders.endpoint())).unwrap();
    let replay = Replay::load(&dir, app.config()).unwrap();
    let bff = TestBff::start_app(replay.install(app).unwrap()).await;
    for (id, expected) in ["1", "2"].iter().zip(&live) {
        let res = bff.get(&format!("/home/{id}")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap(), *expected);
    }
    // An id never recorded: answered by a fixture of the same backend.
    let other = bff.get("/home/77").await.json::<Value>().await.unwrap();
    assert_eq!(other["user"]["name"], "Ada");
    assert_eq!(users.requests().len() + orders.requests().len(), calls);
    // Ready although nothing was ever reached.
    assert_eq!(
        reqwest::get(bff.admin_url("/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_backend_without_fixtures_is_answered_from_its_schema() {
    let dir = fresh_dir("schema-only");
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("schemas/get-home-id.user.json"),
        r#"{"type": "object", "properties": {"name": {"type": "string", "examples": ["Ada"]}}}"#,
    )
    .unwrap();
    let app = bff::App::new(config("127.0.0.1:1", "127.0.0.1:1")).unwrap();
    let replay = Replay::load(&dir, app.config()).unwrap();
    let bff = TestBff::start_app(replay.install(app).unwrap()).await;
    let res = bff.get("/home/5").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"], json!({"name": "Ada"}));
    // The optional backend has neither fixture nor schema: a 404 from the mock, a partial response.
    assert_eq!(body["orders"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_response_schema_is_preferred_to_the_folders_schema() {
    let dir = fresh_dir("declared-schema");
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("schemas/get-home-id.user.json"),
        r#"{"type": "object", "properties": {"name": {"type": "string", "examples": ["from the folder"]}}}"#,
    )
    .unwrap();
    let mut cfg = config("127.0.0.1:1", "127.0.0.1:1").into_config();
    cfg.routes[0].backends[0].response_schema = Some(bff::config::ResponseSchema::value(json!({
        "type": "object",
        "properties": {"name": {"type": "string", "examples": ["declared"]}}
    })));
    let app = bff::App::new(cfg).unwrap();
    let replay = Replay::load(&dir, app.config()).unwrap();
    let bff = TestBff::start_app(replay.install(app).unwrap()).await;
    let body: Value = bff.get("/home/5").await.json().await.unwrap();
    assert_eq!(body["user"], json!({"name": "declared"}));
    // With no folder at all, the declared schema still answers.
    let mut cfg = config("127.0.0.1:1", "127.0.0.1:1").into_config();
    cfg.routes[0].backends[0].response_schema = Some(bff::config::ResponseSchema::value(
        json!({"type": "object", "properties": {"name": {"type": "string", "examples": ["declared"]}}}),
    ));
    let app = bff::App::new(cfg).unwrap();
    let replay = Replay::empty(app.config());
    let bff = TestBff::start_app(replay.install(app).unwrap()).await;
    let body: Value = bff.get("/home/5").await.json().await.unwrap();
    assert_eq!(body["user"], json!({"name": "declared"}));
}
