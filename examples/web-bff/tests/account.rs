use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::collections::HashMap;

async fn start(users: &Stub, orders: &Stub) -> TestBff {
    let env: HashMap<String, String> = [
        ("USERS_ADDR", users.endpoint()),
        ("ORDERS_ADDR", orders.endpoint()),
        ("WEB_ORIGIN", "http://localhost:3000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap();
    config.bff.listen = "127.0.0.1:0".into();
    config.bff.admin_listen = "127.0.0.1:0".into();
    config.telemetry.access_log = false;
    TestBff::start_app(web_bff::app(config).unwrap()).await
}

#[tokio::test]
async fn account_page_merges_profile_and_orders() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com", "extra": 1}}));
    orders
        .on("/orders")
        .json(json!([{"id": "o1", "status": "shipped", "total": 3}]));
    let bff = start(&users, &orders).await;
    let body: Value = bff.get("/api/account/5").await.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "Grace", "email": "g@example.com", "orders": [{"id": "o1", "status": "shipped"}]})
    );
    assert_eq!(orders.requests()[0].uri, "/orders?userId=5");
}

#[tokio::test]
async fn orders_failing_degrades_the_page() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/5")
        .json(json!({"profile": {"name": "Grace", "email": "g@example.com"}}));
    orders.on("/orders").reset();
    let bff = start(&users, &orders).await;
    let body: Value = bff.get("/api/account/5").await.json().await.unwrap();
    assert_eq!(body["orders"], Value::Null);
    assert_eq!(body["_errors"][0]["error"], "reset");
}

#[tokio::test]
async fn users_failing_is_a_json_error() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/5").status(404);
    let bff = start(&users, &orders).await;
    let res = bff.get("/api/account/5").await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_failed"
    );
}
