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
        .get(path!("/users/{}", id))
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
    app_with_routes(users, orders, "")
}

/// An app on the test config with these config `routes`, listening on port 0.
fn app_with_routes(users: &Stub, orders: &Stub, routes: &str) -> App {
    let cfg = config(
        &users.endpoint(),
        &orders.endpoint(),
        &users.endpoint(),
        routes,
    );
    let mut c = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(&cfg, bff::config::Format::Toml)
        .unwrap()
        .into_config();
    c.bff.listen = ([127, 0, 0, 1], 0).into();
    c.bff.admin_listen = ([127, 0, 0, 1], 0).into();
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
    // From a file, as a project loads its bff.toml: the error names the file, the route's line and key.
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("conflict-{}.toml", std::process::id()));
    std::fs::write(&file, &cfg).unwrap();
    let line = cfg
        .lines()
        .position(|l| l == "path = \"/api/profile/{user_id}\"")
        .unwrap()
        + 1;
    let c = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_file(&file)
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let err = App::new(c)
        .unwrap()
        .route("/api/profile/{id}", get(profile))
        .into_router()
        .unwrap_err();
    let want = format!(
        "{}:{line}: routes[0].path: /api/profile/{{user_id}} is also a Rust route (\"/api/profile/{{id}}\", registered in code)",
        file.display()
    );
    assert!(err.to_string().contains(&want), "{err}");
}

/// A Rust route is labelled with the methods its method router serves, in the metrics and the admin API
/// (it was `*`): a GET route's requests (HEAD with them) count as GET, a GET + POST route's by method.
#[tokio::test]
async fn rust_routes_are_labelled_with_their_methods() {
    let users = Stub::start().await;
    let app = bare_app(&users, &users)
        .route("/api/hello", get(|| async { "hello" }))
        .route(
            "/api/both",
            get(|| async { "got" }).post(|| async { "posted" }),
        );
    let bff = TestBff::start_app(app).await;
    assert_eq!(bff.get("/api/hello").await.status(), 200);
    let head = bff.client().head(bff.url("/api/hello")).send().await;
    assert_eq!(head.unwrap().status(), 200);
    assert_eq!(bff.get("/api/both").await.status(), 200);
    let post = bff.client().post(bff.url("/api/both")).send().await;
    assert_eq!(post.unwrap().status(), 200);

    let text = metrics(&bff).await;
    for want in [
        r#"bff_requests_total{route="/api/hello",method="GET",status="200"} 2"#,
        r#"bff_requests_total{route="/api/both",method="GET",status="200"} 1"#,
        r#"bff_requests_total{route="/api/both",method="POST",status="200"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == want), "no `{want}` in:\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.contains(r#"route="/api/"#) && l.contains(r#"method="*""#)),
        "{text}"
    );

    let routes = bff.admin_json("/admin/routes").await;
    let methods = |path: &str| -> Vec<String> {
        let list = routes
            .as_array()
            .or_else(|| routes["routes"].as_array())
            .expect("a list of routes");
        list.iter()
            .filter(|r| r["path"] == path)
            .map(|r| r["method"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(methods("/api/hello"), ["GET"], "{routes}");
    assert_eq!(methods("/api/both"), ["GET", "POST"], "{routes}");
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
    let limit = bff::config::RateLimitConfig::new(1, 2).key(bff::config::RateLimitKey::header(
        http::HeaderName::from_static("x-client"),
    ));
    let bff = TestBff::start_app(limited_app(&users, Policy::new().rate_limit_with(limit))).await;
    let a: Vec<u16> = futures::future::join_all((0..3).map(|_| status_as(&bff, "a"))).await;
    assert_eq!(a.iter().filter(|s| **s == 200).count(), 2, "{a:?}");
    assert_eq!(a.iter().filter(|s| **s == 429).count(), 1, "{a:?}");
    // Same address, another key: a bucket of its own (a client_ip limit would refuse it).
    assert_eq!(status_as(&bff, "b").await, 200);
    assert_eq!(status_as(&bff, "b").await, 200);
    assert_eq!(status_as(&bff, "b").await, 429);
}

/// The key and store of a Rust route's limit are the config's types: a bad key or store URL does not
/// parse (the message names what is wrong), so it cannot reach the app; a rate of zero is refused when the
/// app is built, naming the key.
#[tokio::test]
async fn a_rust_routes_bad_rate_limit_is_refused_at_build_with_its_key() {
    let users = Stub::start().await;
    let key = "cookie:session"
        .parse::<bff::config::RateLimitKey>()
        .unwrap_err();
    assert!(
        key.contains("cookie:session") && key.contains("header:NAME"),
        "{key}"
    );
    let store = "http://127.0.0.1:6379"
        .parse::<bff::config::RedisUrl>()
        .unwrap_err();
    assert!(store.0.contains("is not a redis:// URL"), "{store}");
    let zero = bff::config::RateLimitConfig::new(0, 5);
    let err = limited_app(&users, Policy::new().rate_limit_with(zero))
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("route /limited: rate_limit.per_second: must be at least 1"),
        "{err}"
    );
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

/// `/users/{id}/orders` of the users service, the id from the path or from `?v=`.
async fn orders_of(mesh: Mesh, id: String) -> bff::Result<Json<Value>> {
    let orders = mesh
        .service("users")
        .get(path!("/users/{}/orders", id))
        .send_json()
        .await?;
    Ok(Json(orders))
}

#[derive(Deserialize)]
struct V {
    v: String,
}

fn paths_app(users: &Stub) -> App {
    bare_app(users, users)
        .route(
            "/api/x/{id}",
            get(|mesh: Mesh, Path(id): Path<String>| orders_of(mesh, id)),
        )
        // The edge refuses an encoded `/` and resolves `..` in the request's own path, so those values
        // come in the query.
        .route(
            "/api/q",
            get(|mesh: Mesh, Query(q): Query<V>| orders_of(mesh, q.v)),
        )
        .route(
            "/api/two",
            get(|mesh: Mesh| async move {
                // A template that does not fit its values, built at run time.
                let path = bff::DownstreamPath::from_template("/users/{}/{}", &[&"1"]);
                mesh.service("users").get(path).send_ok().await?;
                Ok::<_, BffError>("sent")
            }),
        )
}

#[tokio::test]
async fn a_path_value_arrives_downstream_as_one_encoded_segment() {
    let users = Stub::start().await;
    let bff = TestBff::start_app(paths_app(&users)).await;
    for (url, downstream) in [
        ("/api/x/1%3Fadmin=true", "/users/1%3Fadmin%3Dtrue/orders"),
        ("/api/x/1%23frag", "/users/1%23frag/orders"),
        ("/api/x/a%20b", "/users/a%20b/orders"),
        ("/api/q?v=..", "/users/%2E%2E/orders"),
        ("/api/q?v=.", "/users/%2E/orders"),
        ("/api/q?v=a%2Fb", "/users/a%2Fb/orders"),
        ("/api/q?v=..%2F..%2Fadmin", "/users/..%2F..%2Fadmin/orders"),
    ] {
        users.on(downstream).json(json!({"for": url}));
        let res = bff.get(url).await;
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"for": url}));
        let sent = users.requests().pop().unwrap().uri;
        assert_eq!(sent, downstream, "{url}");
    }
}

#[tokio::test]
async fn a_path_that_cannot_be_built_is_a_500_and_no_call() {
    let users = Stub::start().await;
    let bff = TestBff::start_app(paths_app(&users)).await;
    // An empty value would call `/users//orders`; a template with two `{}` and one value, nothing sane.
    for url in ["/api/q?v=", "/api/two"] {
        let res = bff.get(url).await;
        assert_eq!(res.status(), 500, "{url}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal", "{url}: {body}");
    }
    assert!(users.requests().is_empty(), "no call went out");
}

/// The same page as the declarative route `/api/decl/{id}` below, as a Rust handler.
async fn partial_page(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
    let (user, orders) = tokio::join!(
        mesh.service("users")
            .get(path!("/users/{}", id))
            .send_json::<Value>(),
        mesh.service("orders")
            .get("/orders")
            .query(&[("userId", &id)])
            .send_json::<Value>(),
    );
    let mut partial = Partial::new();
    let orders = partial.optional("orders", orders);
    Ok(partial.json(json!({ "user": user?, "orders": orders })))
}

const DECLARED: &str = r#"
[[routes]]
path = "/api/decl/{id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders?userId={id}"
required = false
"#;

async fn metrics(bff: &TestBff) -> String {
    let res = bff.client().get(bff.admin_url("/metrics")).send().await;
    res.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn partial_responses_of_rust_and_declarative_routes_are_the_same() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/7").json(json!({"name": "Ada"}));
    let app = app_with_routes(&users, &orders, DECLARED).route("/api/rust/{id}", get(partial_page));
    let bff = TestBff::start_app(app).await;

    // Nothing failed: no header, no `_errors`, nothing counted.
    orders.on("/orders").json(json!([1]));
    for url in ["/api/rust/7", "/api/decl/7"] {
        let res = bff.get(url).await;
        assert_eq!(res.status(), 200, "{url}");
        assert!(res.headers().get("x-bff-partial").is_none(), "{url}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body,
            json!({"user": {"name": "Ada"}, "orders": [1]}),
            "{url}"
        );
    }
    assert!(
        !metrics(&bff)
            .await
            .contains(r#"route="/api/rust/{id}",backend="orders"} 1"#)
    );

    for (program, error) in [
        (
            Box::new(|s: &Stub| {
                s.on("/orders").status(503);
            }) as Box<dyn Fn(&Stub)>,
            json!({"backend": "orders", "error": "upstream_status", "status": 503}),
        ),
        (
            Box::new(|s: &Stub| {
                s.on("/orders").reset();
            }),
            json!({"backend": "orders", "error": "reset"}),
        ),
    ] {
        program(&orders);
        let mut answers = Vec::new();
        for url in ["/api/rust/7", "/api/decl/7"] {
            let res = bff.get(url).await;
            assert_eq!(res.status(), 200, "{url}");
            assert_eq!(res.headers()["x-bff-partial"], "true", "{url}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                body,
                json!({"user": {"name": "Ada"}, "orders": null, "_errors": [error]}),
                "{url}"
            );
            answers.push(body);
        }
        assert_eq!(answers[0], answers[1]);
    }
    let text = metrics(&bff).await;
    for route in ["/api/rust/{id}", "/api/decl/{id}"] {
        let want = format!(r#"bff_partial_responses_total{{route="{route}",backend="orders"}} 2"#);
        assert!(text.contains(&want), "missing {want} in:\n{text}");
    }
}

/// A handler that passes every client header on, as a naive forwarding helper would.
async fn pass_headers(mesh: Mesh, headers: http::HeaderMap) -> bff::Result<Json<Value>> {
    let mut req = mesh.service("users").get("/users/9");
    for (k, v) in &headers {
        req = req.header(k.clone(), v.clone());
    }
    Ok(Json(req.send_json().await?))
}

#[tokio::test]
async fn a_handler_cannot_pass_framing_host_or_connection_named_headers_downstream() {
    let users = Stub::start().await;
    let orders = Stub::start().await;
    users.on("/users/9").json(json!({"id": 9}));
    let bff =
        TestBff::start_app(bare_app(&users, &orders).route("/api/pass", get(pass_headers))).await;
    let res = bff
        .client()
        .get(bff.url("/api/pass"))
        .header("host", "internal.example")
        .header("connection", "x-tenant")
        .header("x-tenant", "evil")
        .header("expect", "100-continue")
        .header("accept-language", "de")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = &users.requests()[0].headers;
    // The mesh's own Host (the endpoint), not the client's.
    assert_eq!(sent["host"], users.endpoint(), "{sent:?}");
    assert!(!sent.contains_key("x-tenant"), "{sent:?}");
    assert!(!sent.contains_key("expect"), "{sent:?}");
    assert!(!sent.contains_key("connection"), "{sent:?}");
    assert_eq!(sent["accept-language"], "de");
}
