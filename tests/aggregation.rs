//! Declarative aggregation over real loopback stubs: merge, JSONPath, dependencies, concurrency, partial
//! responses, required failures.

use bff_e2e::config;
use bff_testkit::{Rendezvous, Stub, TestBff};
use serde_json::{Value, json};
use std::time::Duration;

const HOME: &str = r#"
[[routes]]
path = "/api/home/{user_id}"
timeout = "1s"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{user_id}"
select = "$.profile"

[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders?userId={user_id}"
select = "$[*].id"
required = false

[[routes.backends]]
name = "card"
service = "users"
path = "/users/{user_id}"
fields = { name = "$.profile.name", avatar = "$.profile.avatar.small" }
required = false

[[routes.backends]]
name = "recommendations"
service = "catalog"
path = "/recommendations/{user.favoriteCategory}"
select = "$.items[*].sku"
depends_on = ["user"]
required = false
"#;

struct World {
    users: Stub,
    orders: Stub,
    catalog: Stub,
    bff: TestBff,
}

async fn world(routes: &str) -> World {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    let catalog = Stub::start().await;
    users.on("/users/7").json(json!({
        "id": "7",
        "profile": {"name": "Ada", "favoriteCategory": "books & more", "avatar": {"small": "s.png", "large": "l.png"}},
        "internal": "not for clients"
    }));
    orders
        .on("/orders")
        .json(json!([{"id": "o1", "total": 5}, {"id": "o2", "total": 7}]));
    catalog
        .on("/recommendations/books%20%26%20more")
        .json(json!({"items": [{"sku": "b1"}, {"sku": "b2"}]}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &orders.endpoint(),
        &catalog.endpoint(),
        routes,
    ))
    .await;
    World {
        users,
        orders,
        catalog,
        bff,
    }
}

#[tokio::test]
async fn merges_with_jsonpath_fields_and_a_dependent_backend() {
    let w = world(HOME).await;
    let res = w.bff.get("/api/home/7").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-bff-partial").is_none());
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "user": {"name": "Ada", "favoriteCategory": "books & more", "avatar": {"small": "s.png", "large": "l.png"}},
            "orders": ["o1", "o2"],
            "card": {"name": "Ada", "avatar": "s.png"},
            "recommendations": ["b1", "b2"],
        })
    );
    // The dependent backend's placeholder was percent-encoded from the first backend's selected value.
    assert_eq!(w.catalog.hits("/recommendations/books%20%26%20more"), 1);
    assert_eq!(w.orders.requests()[0].uri, "/orders?userId=7");
}

#[tokio::test]
async fn independent_backends_run_concurrently() {
    // Each stub answers only when all three independent calls are in flight at once: a sequential
    // fan-out would never complete them and the route would time out.
    let rv = Rendezvous::new(3);
    let routes = r#"
[[routes]]
path = "/api/fan/{id}"
timeout = "3s"
[[routes.backends]]
name = "a"
service = "users"
path = "/a"
[[routes.backends]]
name = "b"
service = "catalog"
path = "/b"
[[routes.backends]]
name = "c"
service = "users"
path = "/c"
"#;
    let w = world(routes).await;
    w.users.on("/a").rendezvous(&rv).json(json!(1));
    w.catalog.on("/b").rendezvous(&rv).json(json!(2));
    w.users.on("/c").rendezvous(&rv).json(json!(3));
    let res = w.bff.get("/api/fan/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"a": 1, "b": 2, "c": 3})
    );
    assert_eq!(rv.arrived(), 3);
}

async fn partial_with(program: impl FnOnce(&Stub), expect_code: &str) {
    let w = world(HOME).await;
    program(&w.orders);
    let res = w.bff.get("/api/home/7").await;
    assert_eq!(
        res.status(),
        200,
        "optional failure ({expect_code}) must not fail the route"
    );
    assert_eq!(res.headers()["x-bff-partial"], "true");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["orders"], Value::Null);
    assert_eq!(body["user"]["name"], "Ada");
    assert_eq!(body["recommendations"], json!(["b1", "b2"]));
    let errors = body["_errors"].as_array().expect("_errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["backend"], "orders");
    assert_eq!(errors[0]["error"], expect_code, "{body}");
}

#[tokio::test]
async fn optional_backend_500_gives_a_partial_response() {
    partial_with(
        |s| {
            s.on("/orders").status(500).body("stack trace at 10.1.2.3");
        },
        "upstream_status",
    )
    .await;
}

#[tokio::test]
async fn optional_backend_timeout_gives_a_partial_response() {
    partial_with(
        |s| {
            s.on("/orders")
                .delay(Duration::from_secs(3))
                .json(json!([]));
        },
        "timeout",
    )
    .await;
}

#[tokio::test]
async fn optional_backend_hang_gives_a_partial_response() {
    partial_with(
        |s| {
            s.on("/orders").hang();
        },
        "timeout",
    )
    .await;
}

#[tokio::test]
async fn optional_backend_reset_gives_a_partial_response() {
    partial_with(
        |s| {
            s.on("/orders").reset();
        },
        "reset",
    )
    .await;
}

#[tokio::test]
async fn optional_backend_malformed_json_gives_a_partial_response() {
    partial_with(
        |s| {
            s.on("/orders").malformed_json();
        },
        "malformed_response",
    )
    .await;
}

#[tokio::test]
async fn a_failed_dependency_fails_its_dependents() {
    let w = world(HOME).await;
    w.catalog
        .on("/recommendations/books%20%26%20more")
        .status(503);
    let body: Value = w.bff.get("/api/home/7").await.json().await.unwrap();
    assert_eq!(body["recommendations"], Value::Null);
    assert_eq!(body["_errors"][0]["error"], "upstream_status");
    assert_eq!(body["_errors"][0]["status"], 503);
}

async fn required_failure(program: impl FnOnce(&Stub), status: u16, code: &str) {
    let w = world(HOME).await;
    program(&w.users);
    let res = w.bff.get("/api/home/7").await;
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/json");
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], code, "{text}");
    assert_eq!(body["error"]["request_id"], rid.as_str());
    for leak in ["127.0.0.1", &w.users.endpoint(), "secret-stack", "/users/7"] {
        assert!(!text.contains(leak), "{leak} leaked into {text}");
    }
}

#[tokio::test]
async fn required_backend_500_is_502_without_leaks() {
    required_failure(
        |s| {
            s.on("/users/7")
                .status(500)
                .body("secret-stack at 127.0.0.1");
        },
        502,
        "upstream_failed",
    )
    .await;
}

#[tokio::test]
async fn required_backend_reset_is_502() {
    required_failure(
        |s| {
            s.on("/users/7").reset();
        },
        502,
        "upstream_failed",
    )
    .await;
}

#[tokio::test]
async fn required_backend_past_the_route_deadline_is_504() {
    // users' own timeout is 2s; the route's deadline (1s) cuts it first.
    required_failure(
        |s| {
            s.on("/users/7")
                .delay(Duration::from_secs(4))
                .json(json!({}));
        },
        504,
        "deadline_exceeded",
    )
    .await;
}

#[tokio::test]
async fn required_backend_unreachable_is_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{port}");
    let bff = TestBff::start(&config(&dead, &dead, &dead, HOME)).await;
    let res = bff.get("/api/home/7").await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&dead), "{text}");
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let w = world(HOME).await;
    let res = w.bff.get("/nope").await;
    assert_eq!(res.status(), 404);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let res = w
        .bff
        .client()
        .post(w.bff.url("/api/home/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    assert_eq!(w.users.requests().len(), 0);
}

#[tokio::test]
async fn path_parameters_are_percent_encoded_downstream() {
    let w = world(HOME).await;
    w.users
        .on("/users/a%20b%3F%23%26c")
        .json(json!({"profile": {}}));
    // Decoded by the router to `a b?#&c`, encoded again for the downstream path: it can add no query,
    // fragment or segment there.
    let res = w.bff.get("/api/home/a%20b%3F%23%26c").await;
    assert_eq!(res.status(), 200);
    assert_eq!(w.users.hits("/users/a%20b%3F%23%26c"), 2);
    // An encoded slash is refused at the edge before any routing.
    let res = w.bff.get("/api/home/..%2F..%2Fadmin").await;
    assert_eq!(res.status(), 400);
    assert_eq!(w.users.hits("/users/a%20b%3F%23%26c"), 2);
    assert_eq!(w.users.requests().len(), 2);
}

/// A backend whose placeholder reads `favoriteCategory` from the user backend.
const DEPENDENT: &str = r#"
[[routes]]
path = "/api/recs/{user_id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{user_id}"
[[routes.backends]]
name = "recommendations"
service = "catalog"
path = "/recommendations/{user.favoriteCategory}/items?c={user.favoriteCategory}"
depends_on = ["user"]
required = false
"#;

#[tokio::test]
async fn a_downstream_value_is_one_segment_never_a_dot_segment() {
    let w = world(DEPENDENT).await;
    w.catalog.on("/recommendations/a.b/items").json(json!([]));
    for (user, category, sent) in [
        (
            "3",
            "../../admin?x=1#f",
            "/recommendations/..%2F..%2Fadmin%3Fx%3D1%23f/items?c=..%2F..%2Fadmin%3Fx%3D1%23f",
        ),
        ("4", "a&b=c", "/recommendations/a%26b%3Dc/items?c=a%26b%3Dc"),
        ("6", "a.b", "/recommendations/a.b/items?c=a.b"),
    ] {
        w.users
            .on(&format!("/users/{user}"))
            .json(json!({"favoriteCategory": category}));
        let res = w.bff.get(&format!("/api/recs/{user}")).await;
        assert_eq!(res.status(), 200, "{category}");
        let got = w.catalog.requests().last().unwrap().uri.clone();
        assert_eq!(got, sent, "{category}");
    }
    // `..` and `.` would make a dot segment (`/recommendations/../items` is `/items` to a server that
    // removes them, and so is `%2E%2E` to one that decodes first); an empty value would make
    // `/recommendations//items`. The backend fails, and nothing is sent.
    let before = w.catalog.requests().len();
    for (user, category) in [("1", ".."), ("2", "."), ("5", "")] {
        w.users
            .on(&format!("/users/{user}"))
            .json(json!({"favoriteCategory": category}));
        let res = w.bff.get(&format!("/api/recs/{user}")).await;
        assert_eq!(res.status(), 200, "{category:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["_errors"][0]["error"], "unresolved_placeholder",
            "{category:?}"
        );
    }
    assert_eq!(
        w.catalog.requests().len(),
        before,
        "{:?}",
        w.catalog.requests()
    );
}

#[tokio::test]
async fn headers_the_client_names_in_connection_are_not_forwarded() {
    let w = world(
        r#"
[[routes]]
path = "/api/t/{id}"
forward_headers = ["x-tenant", "accept-language", "x-other"]
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
"#,
    )
    .await;
    let res = w
        .bff
        .client()
        .get(w.bff.url("/api/t/7"))
        .header("connection", "x-tenant, X-Other")
        .header("x-tenant", "evil")
        .header("x-other", "1")
        .header("accept-language", "de")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = &w.users.requests()[0].headers;
    assert!(!sent.contains_key("x-tenant"), "{sent:?}");
    assert!(!sent.contains_key("x-other"), "{sent:?}");
    assert_eq!(sent["accept-language"], "de");
    // Without `Connection`, the listed header goes through.
    let res = w
        .bff
        .client()
        .get(w.bff.url("/api/t/7"))
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(w.users.requests()[1].headers["x-tenant"], "acme");
}

#[tokio::test]
async fn json_numbers_pass_through_exactly() {
    let w = world(
        r#"
[[routes]]
path = "/api/num/{id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
fields = { big = "$.big", neg = "$.neg", dec = "$.dec", huge = "$.huge", small = "$.small" }
[[routes.backends]]
name = "item"
service = "catalog"
path = "/items/{user.big}?d={user.dec}"
depends_on = ["user"]
[[routes.backends]]
name = "whole"
service = "orders"
path = "/orders"
select = "$"
"#,
    )
    .await;
    let numbers = r#"{"big": 123456789012345678901234567890, "neg": -98765432109876543210, "dec": 0.1000000000000000055511151231257827, "huge": 1e400, "small": 1.5E-7}"#;
    w.users
        .on("/users/1")
        .header("content-type", "application/json")
        .body(numbers);
    w.orders
        .on("/orders")
        .header("content-type", "application/json")
        .body(r#"[18446744073709551616, 3.141592653589793238462643383279]"#);
    w.catalog
        .on("/items/123456789012345678901234567890")
        .json(json!({"ok": true}));
    let res = w.bff.get("/api/num/1").await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert_eq!(
        body,
        // Every digit kept; an exponent is written `e+400`, `e-7` (the same number).
        r#"{"user":{"big":123456789012345678901234567890,"dec":0.1000000000000000055511151231257827,"huge":1e+400,"neg":-98765432109876543210,"small":1.5e-7},"item":{"ok":true},"whole":[18446744073709551616,3.141592653589793238462643383279]}"#
    );
    // The placeholders took the numbers as written, too.
    assert_eq!(
        w.catalog.requests()[0].uri,
        "/items/123456789012345678901234567890?d=0.1000000000000000055511151231257827"
    );
}
