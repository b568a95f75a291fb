//! The BFF against stub services: what it answers and what it asks the services for.

use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Starts the BFF from its own `bff.toml`, with the users service on a stub and free ports.
async fn start(users: &Stub) -> TestBff {
    let env = HashMap::from([("USERS_ADDR".to_string(), users.endpoint())]);
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_config();
    config.bff.listen = "127.0.0.1:0".into();
    config.bff.admin_listen = "127.0.0.1:0".into();
    let config = config.validate().unwrap_or_else(|e| panic!("{e}"));
    TestBff::start_app({{crate_name}}::app(config).unwrap()).await
}

#[tokio::test]
async fn hello_greets_the_user_by_name() {
    let users = Stub::start().await;
    users
        .on("/users/42")
        .json(json!({"id": "42", "profile": {"name": "Ada Lovelace", "email": "ada@example.com"}}));
    let bff = start(&users).await;
    let res = bff.get("/api/hello/42").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Hello, Ada Lovelace!"})
    );
    let call = &users.requests()[0];
    assert_eq!(call.uri, "/users/42");
    assert!(call.headers.contains_key("x-request-id"));
    assert!(call.headers.contains_key("x-bff-deadline-ms"));
}

#[tokio::test]
async fn a_failing_users_service_is_a_json_error() {
    let users = Stub::start().await;
    users.on("/users/42").status(500);
    let bff = start(&users).await;
    let res = bff.get("/api/hello/42").await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_failed");
}

#[tokio::test]
async fn an_id_is_one_path_segment_downstream() {
    let users = Stub::start().await;
    users
        .on("/users/42%3Fadmin%3Dtrue")
        .json(json!({"profile": {"name": "Ada"}}));
    let bff = start(&users).await;
    let res = bff.get("/api/hello/42%3Fadmin=true").await;
    assert_eq!(res.status(), 200);
    assert_eq!(users.requests()[0].uri, "/users/42%3Fadmin%3Dtrue", "no query");
}

#[tokio::test]
async fn readiness_follows_the_users_service() {
    let users = Stub::start().await;
    let bff = start(&users).await;
    let res = bff
        .client()
        .get(bff.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
