//! The BFF against stub services: what it answers and what it asks the services for.

use bff_testkit::{Stubs, TestBff};
use serde_json::{Value, json};

/// A stub for each service of the BFF's own `bff.toml` (whatever services it has).
async fn services() -> Stubs {
    Stubs::start(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml")).await
}

/// Starts the BFF from its own `bff.toml`, every service on its stub and the listeners on free ports.
async fn start(services: &Stubs) -> TestBff {
    let config = services.config().validate().unwrap_or_else(|e| panic!("{e}"));
    TestBff::start_app(golden_minimal::app(config).unwrap()).await
}

#[tokio::test]
async fn hello_greets_the_user_by_name() {
    let services = services().await;
    let users = &services["users"];
    users
        .on("/users/42")
        .json(json!({"id": "42", "profile": {"name": "Ada Lovelace", "email": "ada@example.com"}}));
    let bff = start(&services).await;
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
    let services = services().await;
    let users = &services["users"];
    users.on("/users/42").status(500);
    let bff = start(&services).await;
    let res = bff.get("/api/hello/42").await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_failed");
}

#[tokio::test]
async fn an_id_is_one_path_segment_downstream() {
    let services = services().await;
    let users = &services["users"];
    users
        .on("/users/42%3Fadmin%3Dtrue")
        .json(json!({"profile": {"name": "Ada"}}));
    let bff = start(&services).await;
    let res = bff.get("/api/hello/42%3Fadmin=true").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        users.requests()[0].uri,
        "/users/42%3Fadmin%3Dtrue",
        "no query"
    );
}

/// `/readyz` (what Kubernetes' readiness probe asks) is 503 until the users service, required, has passed
/// a health check (`[services.users.health_check]`), then 200.
#[tokio::test]
async fn readiness_follows_the_users_service() {
    let services = services().await;
    let users = &services["users"];
    users.on("/healthz").status(503);
    let bff = start(&services).await;
    let readyz = || async {
        let url = bff.admin_url("/readyz");
        bff.client().get(url).send().await.unwrap().status()
    };
    assert_eq!(readyz().await, 503, "no probe has passed");

    users.on("/healthz").status(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while readyz().await != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
