//! `bff record` and `bff mock`, black-box: the web example's routes recorded against stub services,
//! then served from fixtures with no service running.

use bff_testkit::{Stub, process::Proc};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn bff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bff"));
    c.env_remove("BFF_CONFIG").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("BFF__") {
            c.env_remove(k);
        }
    }
    // The example's listeners on port 0, its CORS origin set; no service address anywhere.
    c.env("BFF__BFF__LISTEN", "127.0.0.1:0")
        .env("BFF__BFF__ADMIN_LISTEN", "127.0.0.1:0")
        .env("WEB_ORIGIN", "http://localhost:3000")
        .env_remove("USERS_ADDR")
        .env_remove("ORDERS_ADDR");
    c
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web-bff")
}

/// Starts `bff ARGS` and waits for its `listening on` line: its public and admin URLs.
fn start(cmd: &mut Command) -> (Proc, String, String) {
    let mut child = Proc::spawn(cmd.stdout(Stdio::piped()));
    let (url, admin) = child.listening();
    (child, url, admin)
}

fn stop(mut child: Proc) {
    child.sigterm();
    assert_eq!(child.wait_within().code(), Some(0));
}

async fn get(url: &str) -> (u16, Value) {
    let res = reqwest::Client::builder()
        .no_proxy()
        .timeout(bff_testkit::REQUEST_DEADLINE)
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_serves_the_web_examples_routes_from_its_fixtures_with_no_service_running() {
    let dir = example();
    let (child, url, admin) = start(
        bff()
            .args(["mock", "--config"])
            .arg(dir.join("bff.toml"))
            .arg("--fixtures")
            .arg(dir.join("fixtures")),
    );
    let (status, body) = get(&format!("{url}/api/home/42")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Alan Turing");
    assert_eq!(body["user"]["email"], "alan@example.com");
    assert_eq!(body["orders"][0]["id"], "o-42-1");
    assert_eq!(body["orders"].as_array().unwrap().len(), 3);
    // Another user: answered by the fixtures of the same backends.
    let (status, other) = get(&format!("{url}/api/home/7")).await;
    assert_eq!(status, 200);
    assert_eq!(other, body);
    // Ready, although no service was ever reached.
    assert_eq!(get(&format!("{admin}/readyz")).await.0, 200);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stores_redacted_fixtures_that_mock_then_serves_alike() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-record");
    let _ = std::fs::remove_dir_all(&out);
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .header("set-cookie", "sid=do-not-store")
        .json(json!({"id": "5", "profile": {"name": "Grace", "email": "grace@example.com"}}));
    orders
        .on("/orders")
        .json(json!([{"id": "o-5-1", "status": "shipped"}]));
    let config = example().join("bff.toml");

    let (child, url, _) = start(
        bff()
            .env("USERS_ADDR", users.endpoint())
            .env("ORDERS_ADDR", orders.endpoint())
            .args(["record", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    let (status, live) = get(&format!("{url}/api/home/5")).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["user"]["name"], "Grace");
    stop(child);

    let user_files: Vec<PathBuf> = std::fs::read_dir(out.join("services/users"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(user_files.len(), 1);
    let text = std::fs::read_to_string(&user_files[0]).unwrap();
    assert!(text.contains("\"set-cookie\": \"[redacted]\""), "{text}");
    assert!(!text.contains("do-not-store"), "{text}");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("schemas/get-api-home-user_id.user.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema["required"], json!(["email", "name"]));

    let calls = users.requests().len() + orders.requests().len();
    let (child, url, _) = start(
        bff()
            .args(["mock", "--config"])
            .arg(&config)
            .arg("--fixtures")
            .arg(&out),
    );
    let (status, mocked) = get(&format!("{url}/api/home/5")).await;
    assert_eq!(status, 200);
    assert_eq!(mocked, live);
    assert_eq!(users.requests().len() + orders.requests().len(), calls);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_without_fixtures_answers_from_each_backends_response_schema() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mock-response-schema");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("schemas/user.json"),
        r#"{"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "examples": ["Grace Hopper"]},
                           "id": {"type": "integer", "examples": [7]}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("bff.toml"),
        r#"
[services.users]
endpoints = ["127.0.0.1:1"]

[[routes]]
path = "/profile/{id}"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
select = "$.profile"
response_schema = "schemas/user.json"
"#,
    )
    .unwrap();
    let (child, url, _admin) = start(bff().args(["mock", "--config"]).arg(dir.join("bff.toml")));
    let (status, body) = get(&format!("{url}/profile/3")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], json!({"name": "Grace Hopper", "id": 7}));
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
