//! What downstream services see of a call through the embedded mesh.

use bff_e2e::config;
use bff_testkit::{Stub, TestBff};
use serde_json::json;

const ROUTE: &str = r#"
[[routes]]
path = "/api/p/{id}"
timeout = "1500ms"
forward_headers = ["accept-language"]

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
"#;

#[tokio::test]
async fn downstream_sees_request_id_child_trace_and_deadline_but_no_secrets() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"ok": true}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = bff
        .client()
        .get(bff.url("/api/p/1"))
        .header("x-request-id", "req-abc-1")
        .header("traceparent", parent)
        .header("tracestate", "vendor=x")
        .header("authorization", "Bearer secret-token")
        .header("cookie", "session=secret")
        .header("connection", "x-private")
        .header("x-private", "do-not-pass")
        .header("accept-language", "de-CH")
        .header("x-other", "not listed")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-abc-1");

    let reqs = users.requests();
    assert_eq!(reqs.len(), 1);
    let h = &reqs[0].headers;
    assert_eq!(h["x-request-id"], "req-abc-1");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert_ne!(
        &tp[36..52],
        "00f067aa0ba902b7",
        "a child span, not the client's"
    );
    assert_eq!(h["tracestate"], "vendor=x");
    let left: u64 = h["x-bff-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(left > 0 && left <= 1500, "deadline left: {left}");
    assert_eq!(h["accept-language"], "de-CH", "listed in forward_headers");
    for never in ["authorization", "cookie", "x-private", "x-other"] {
        assert!(!h.contains_key(never), "{never} must not reach the service");
    }
    assert_eq!(h["user-agent"], "e2e-bff");
}

#[tokio::test]
async fn a_new_trace_and_request_id_are_started_when_the_client_has_none() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let res = bff.get("/api/p/1").await;
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    let h = &users.requests()[0].headers;
    assert_eq!(h["x-request-id"], rid.as_str());
    assert_eq!(h["traceparent"].len(), 55);
}

#[tokio::test]
async fn h2c_services_are_called_over_http2() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"via": "h2"}));
    let cfg = config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    )
    .replace(
        "[services.users]\n",
        "[services.users]\nprotocol = \"h2c\"\n",
    );
    let bff = TestBff::start(&cfg).await;
    let res = bff.get("/api/p/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["user"]["via"],
        "h2"
    );
    assert_eq!(users.requests()[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn connections_to_a_service_are_pooled() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(bff.get("/api/p/1").await.status(), 200);
    }
    assert_eq!(users.requests().len(), 5);
    assert_eq!(users.requests()[0].version, http::Version::HTTP_11);
    assert_eq!(
        users.connections(),
        1,
        "five sequential calls share one keep-alive connection"
    );
}

#[tokio::test]
async fn the_public_listener_speaks_h2c() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"n": 1}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = client
        .get(bff.url("/api/p/1").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["user"]["n"],
        1
    );
}
