//! Rust handlers registered on an App built from config, calling services through the mesh extractor.

use bff::prelude::*;
use bff_e2e::config;
use bff_testkit::{Stub, TestBff};
use std::collections::HashMap;

async fn profile(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Json<Value>> {
    #[derive(Deserialize)]
    struct User {
        profile: Value,
    }
    let user: User = mesh
        .service("users")
        .get(format!("/users/{id}"))
        .send_json()
        .await?;
    let orders = mesh
        .service("orders")
        .get("/orders")
        .query(&[("userId", id.as_str())])
        .header("x-caller", "profile")
        .send_json::<Value>()
        .await
        .ok();
    Ok(Json(json!({ "profile": user.profile, "orders": orders })))
}

async fn create(mesh: Mesh, Json(body): Json<Value>) -> bff::Result<Json<Value>> {
    let res = mesh
        .service("orders")
        .post("/orders")
        .json(&body)
        .send_ok()
        .await?;
    Ok(Json(res.json("orders")?))
}

/// An app on the test config (users and orders at these stubs, no config routes), listening on port 0.
fn bare_app(users: &Stub, orders: &Stub) -> App {
    let cfg = config(&users.endpoint(), &orders.endpoint(), &users.endpoint(), "");
    let mut c = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(&cfg, bff::config::Format::Toml)
        .unwrap();
    c.bff.listen = "127.0.0.1:0".into();
    c.bff.admin_listen = "127.0.0.1:0".into();
    App::new(c).unwrap()
}

async fn app(users: &Stub, orders: &Stub) -> TestBff {
    let app = bare_app(users, orders)
        .route("/api/profile/{id}", get(profile))
        .route("/api/orders", post(create));
    TestBff::start_app(app).await
}

#[tokio::test]
async fn a_rust_handler_aggregates_through_the_mesh() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users
        .on("/users/9")
        .json(json!({"profile": {"name": "Grace"}}));
    orders.on("/orders").json(json!([{"id": 1}]));
    let bff = app(&users, &orders).await;
    let res = bff.get("/api/profile/9").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"profile": {"name": "Grace"}, "orders": [{"id": 1}]})
    );
    let o = &orders.requests()[0];
    assert_eq!(o.uri, "/orders?userId=9");
    assert_eq!(o.headers["x-caller"], "profile");
    assert!(o.headers.contains_key("x-bff-deadline-ms"));
}

#[tokio::test]
async fn a_downstream_failure_becomes_the_json_error() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/9").status(503).body("internal detail");
    let bff = app(&users, &orders).await;
    let res = bff.get("/api/profile/9").await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.unwrap();
    assert!(!text.contains("internal detail"));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["code"],
        "upstream_failed"
    );
}

#[tokio::test]
async fn a_json_body_is_sent_downstream() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    orders.on("/orders").status(201).json(json!({"id": "new"}));
    let bff = app(&users, &orders).await;
    let res = bff
        .client()
        .post(bff.url("/api/orders"))
        .json(&json!({"sku": "b1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"id": "new"}));
    let o = &orders.requests()[0];
    assert_eq!(o.method, "POST");
    assert_eq!(o.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&o.body).unwrap(),
        json!({"sku": "b1"})
    );
}

#[tokio::test]
async fn a_config_route_and_a_rust_route_of_the_same_path_are_refused() {
    let users = Stub::start().await;
    let routes = r#"
[[routes]]
path = "/api/profile/{user_id}"
[[routes.backends]]
name = "u"
service = "users"
path = "/users/{user_id}"
"#;
    let cfg = config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        routes,
    );
    let c = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(&cfg, bff::config::Format::Toml)
        .unwrap();
    let err = App::new(c)
        .unwrap()
        .route("/api/profile/{id}", get(profile))
        .into_router()
        .unwrap_err();
    assert!(err.to_string().contains("conflicts"), "{err}");
}

#[tokio::test]
async fn admin_listener_serves_health_and_readiness_only_there() {
    let users = Stub::start().await;
    let bff = app(&users, &users).await;
    let c = bff.client();
    assert_eq!(
        c.get(bff.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(bff.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let services = bff.admin_json("/admin/services").await;
    assert_eq!(services[0]["name"], "catalog");
    assert_eq!(
        c.get(bff.url("/healthz")).send().await.unwrap().status(),
        404,
        "admin is never on the public port"
    );
}

/// An app whose Rust route `/limited` has `policy`.
fn limited_app(users: &Stub, policy: Policy) -> App {
    bare_app(users, users).route_with("/limited", policy, get(|| async { "ok" }))
}

async fn status_as(bff: &TestBff, client: &str) -> u16 {
    bff.client()
        .get(bff.url("/limited"))
        .header("x-client", client)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rust_routes_rate_limit_takes_its_key_from_the_policy() {
    let users = Stub::start().await;
    let limit = bff::config::RateLimitConfig {
        per_second: 1,
        burst: 2,
        key: "header:x-client".into(),
        store: None,
    };
    let bff = TestBff::start_app(limited_app(&users, Policy::new().rate_limit_with(limit))).await;
    let a: Vec<u16> = futures::future::join_all((0..3).map(|_| status_as(&bff, "a"))).await;
    assert_eq!(a.iter().filter(|s| **s == 200).count(), 2, "{a:?}");
    assert_eq!(a.iter().filter(|s| **s == 429).count(), 1, "{a:?}");
    // Same address, another key: a bucket of its own (a client_ip limit would refuse it).
    assert_eq!(status_as(&bff, "b").await, 200);
    assert_eq!(status_as(&bff, "b").await, 200);
    assert_eq!(status_as(&bff, "b").await, 429);
}

#[tokio::test]
async fn a_rust_routes_bad_rate_limit_is_refused_at_build_with_its_key() {
    let users = Stub::start().await;
    let bad_key = bff::config::RateLimitConfig {
        key: "cookie:session".into(),
        ..Default::default()
    };
    let err = limited_app(&users, Policy::new().rate_limit_with(bad_key))
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("route /limited: rate_limit.key:") && err.contains("cookie:session"),
        "{err}"
    );
    let bad_store = bff::config::RateLimitConfig {
        store: Some("http://127.0.0.1:6379".into()),
        ..Default::default()
    };
    let err = limited_app(&users, Policy::new().rate_limit_with(bad_store))
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate_limit.store:"), "{err}");
}

#[derive(Serialize)]
struct RawHome {
    user: Value,
    orders: Box<RawValue>,
}

async fn raw_home(mesh: Mesh) -> bff::Result<Json<RawHome>> {
    let user = mesh.service("users").get("/users/1").send_json().await?;
    let orders = mesh.service("orders").get("/orders").send_json().await?;
    Ok(Json(RawHome { user, orders }))
}

#[tokio::test]
async fn a_raw_body_is_embedded_verbatim_and_a_broken_one_is_an_error() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    // Odd spacing and key order: a parse and a serialisation would not keep them.
    orders
        .on("/orders")
        .header("content-type", "application/json")
        .body(r#"{"z": 1,  "a": [2, 3]}"#);
    let bff = TestBff::start_app(bare_app(&users, &orders).route("/raw", get(raw_home))).await;
    let res = bff.get("/raw").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"user":{"name":"Ada"},"orders":{"z": 1,  "a": [2, 3]}}"#
    );
    // Not JSON: the call fails as a malformed response, a 502 JSON error; nothing half-written is sent.
    orders.on("/orders").malformed_json();
    let res = bff.get("/raw").await;
    assert_eq!(res.status(), 502);
    let error = res.json::<Value>().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_failed", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("malformed")),
        "{error}"
    );
}
