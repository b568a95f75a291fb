//! The mobile BFF over the demo services (`bff_testkit::demo`, the ones `examples/web-bff` and `bff demo`
//! put BFFs in front of), and over stubs where a failure is needed.

use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::{collections::HashMap, net::SocketAddr};

/// The app key of `api-keys.txt`.
const API_KEY: &str = "mobile-example-key";

async fn start(users: String, orders: String, catalog: String) -> TestBff {
    let env = HashMap::from([
        ("USERS_ADDR".to_string(), users),
        ("ORDERS_ADDR".to_string(), orders),
        ("CATALOG_ADDR".to_string(), catalog),
    ]);
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    TestBff::start_app(
        mobile_bff::app(config.validate().unwrap_or_else(|e| panic!("{e}"))).unwrap(),
    )
    .await
}

async fn over_demo(demo: &bff_testkit::demo::DemoServices) -> TestBff {
    let addr = |a: SocketAddr| a.to_string();
    start(addr(demo.users), addr(demo.orders), addr(demo.catalog)).await
}

async fn get(bff: &TestBff, path: &str) -> reqwest::Response {
    bff.client()
        .get(bff.url(path))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_feed_summarises_the_demo_services_for_one_screen() {
    let demo = bff_testkit::demo::start().await;
    let bff = over_demo(&demo).await;
    let res = get(&bff, "/m/feed/42").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-bff-partial").is_none());
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({
            "name": "Alan Turing",
            "avatar": "https://cdn.example.com/avatars/42-64.png",
            "orders": {"count": 3, "on_the_way": 1},
            "picks": ["books-1", "books-2"]
        })
    );
}

#[tokio::test]
async fn the_declared_orders_route_keeps_only_the_ids() {
    let demo = bff_testkit::demo::start().await;
    let bff = over_demo(&demo).await;
    let res = get(&bff, "/m/orders/7").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"ids": ["o-7-1", "o-7-2", "o-7-3"]})
    );
}

#[tokio::test]
async fn an_unknown_user_is_a_json_error() {
    let demo = bff_testkit::demo::start().await;
    let bff = over_demo(&demo).await;
    let res = get(&bff, "/m/feed/0").await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_failed");
    // The id is one segment downstream (`/users/1%3Fadmin%3Dtrue`, no such user), not user 1 with a query.
    let res = get(&bff, "/m/feed/1%3Fadmin=true").await;
    assert_eq!(res.status(), 502);
}

#[tokio::test]
async fn failing_orders_and_catalog_leave_a_partial_feed() {
    let demo = bff_testkit::demo::start().await;
    let orders = Stub::start().await;
    let catalog = Stub::start().await;
    orders.on("/orders").reset();
    catalog.on("/recommendations/books").status(500);
    let bff = start(
        demo.users.to_string(),
        orders.endpoint(),
        catalog.endpoint(),
    )
    .await;
    let res = get(&bff, "/m/feed/42").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-bff-partial"], "true");
    let feed: Value = res.json().await.unwrap();
    assert_eq!(feed["name"], "Alan Turing");
    assert_eq!(feed["orders"], Value::Null);
    assert_eq!(feed["picks"], Value::Null);
    assert_eq!(
        feed["_errors"],
        json!([
            {"backend": "orders", "error": "reset"},
            {"backend": "picks", "error": "upstream_status", "status": 500}
        ])
    );
}

#[tokio::test]
async fn the_app_key_is_checked_before_any_call() {
    let demo = bff_testkit::demo::start().await;
    let users = Stub::start().await;
    let bff = start(
        users.endpoint(),
        demo.orders.to_string(),
        demo.catalog.to_string(),
    )
    .await;
    for path in ["/m/feed/42", "/m/orders/42"] {
        let res = bff.get(path).await;
        assert_eq!(res.status(), 401, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    assert!(users.requests().is_empty());
}

/// The BFF's OpenAPI document (`GET /admin/openapi.json`): the declared route and the Rust feed, both
/// behind the app key, pass openapi-spec-validator (`$BFF_OPENAPI_SPEC_VALIDATOR`, else on PATH; scripts/test
/// installs it).
#[tokio::test]
async fn its_openapi_document_passes_a_validator() {
    let demo = bff_testkit::demo::start().await;
    let bff = over_demo(&demo).await;
    let doc = bff.admin_json("/admin/openapi.json").await;
    for (path, route) in [
        ("/m/orders/{user_id}", "declarative"),
        ("/m/feed/{id}", "rust"),
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["x-bff-route"], route, "{doc:#}");
        assert_eq!(op["security"], json!([{"apiKey": []}]), "{path}");
        assert!(op["responses"]["429"].is_object(), "{path}: rate limited");
    }
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mobile-bff-openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let program = std::env::var_os("BFF_OPENAPI_SPEC_VALIDATOR")
        .unwrap_or_else(|| "openapi-spec-validator".into());
    let out = std::process::Command::new(&program)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{program:?}: {e}; pip install openapi-spec-validator (scripts/test does) or set BFF_OPENAPI_SPEC_VALIDATOR"));
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
