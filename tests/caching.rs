//! Caching, coalescing and conditional responses (issue #18), black-box over loopback: config routes as
//! `bff run` serves them, and Rust handlers calling `.coalesce()` and `.cache(&cache)`.

use bff::prelude::*;
use bff_testkit::{Rendezvous, Stub, TestBff};
use std::{collections::HashMap, future::Future, time::Duration};

/// A BFF with service `catalog` at `stub` (with `service` keys), and route `GET /p/{id}` (with `route`
/// keys) whose backend `p` (with `backend` keys) calls `/products/{id}`, forwarding `authorization`.
fn config(stub: &Stub, service: &str, route: &str, backend: &str) -> String {
    format!(
        r#"
[bff]
name = "cache-e2e"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[edge]
request_timeout = "20s"

[services.catalog]
endpoints = ["{}"]
timeout = "20s"
{service}

[[routes]]
path = "/p/{{id}}"
forward_headers = ["authorization"]
{route}

[[routes.backends]]
name = "p"
service = "catalog"
path = "/products/{{id}}"
{backend}
"#,
        stub.endpoint()
    )
}

fn app(toml: &str) -> App {
    let mut c = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(toml, bff::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_config();
    c.telemetry.access_log = false;
    App::new(c).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of one series of `/metrics` (0 when absent).
async fn metric(bff: &TestBff, series: &str) -> f64 {
    let text = bff.admin_text("/metrics").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Waits for an event, polling; a hang past 20 s is a failure that names it.
async fn until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    for _ in 0..4000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never happened: {what}");
}

const COALESCED: &str = "bff_coalesced_requests_total{service=\"catalog\"}";

fn cache_result(result: &str) -> String {
    format!("bff_cache_requests_total{{service=\"catalog\",result=\"{result}\"}}")
}

/// `path` from `n` clients at once.
fn many(bff: &TestBff, path: &str, n: usize) -> Vec<tokio::task::JoinHandle<reqwest::Response>> {
    (0..n)
        .map(|_| {
            let (c, url) = (bff.client().clone(), bff.url(path));
            tokio::spawn(async move { c.get(url).send().await.expect("response") })
        })
        .collect()
}

/// Holds the stub's answer until every caller has joined the shared call (or a second downstream call
/// arrived: coalescing failed), then releases it.
async fn release_when_all_joined(bff: &TestBff, gate: &Rendezvous, joined: f64) {
    until("every caller joined the shared call", || async {
        metric(bff, COALESCED).await >= joined || gate.arrived() >= 2
    })
    .await;
    gate.join().await;
}

async fn product(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Json<Value>> {
    let p = mesh
        .service("catalog")
        .get(path!("/products/{}", id))
        .coalesce()
        .send_json::<Value>()
        .await?;
    Ok(Json(json!({ "p": p })))
}

#[tokio::test]
async fn fifty_identical_requests_make_one_downstream_call() {
    // Coalescing asked by the service, by the backend, and by a Rust handler.
    for (service, backend, path) in [
        ("coalesce = true", "", "/p/1"),
        ("", "coalesce = true", "/p/1"),
        ("", "", "/h/1"),
    ] {
        let stub = Stub::start().await;
        let gate = Rendezvous::new(2);
        stub.on("/products/1")
            .json(json!({"id": 1}))
            .rendezvous(&gate);
        let app = app(&config(&stub, service, "", backend)).route("/h/{id}", get(product));
        let bff = TestBff::start_app(app).await;
        let calls = many(&bff, path, 50);
        release_when_all_joined(&bff, &gate, 49.0).await;
        for c in calls {
            let res = c.await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.json::<Value>().await.unwrap(), json!({"p": {"id": 1}}));
        }
        assert_eq!(stub.hits("/products/1"), 1, "{service}{backend}{path}");
        assert_eq!(metric(&bff, COALESCED).await, 49.0);
    }
}

#[tokio::test]
async fn the_first_caller_going_away_does_not_cancel_the_call_for_the_others() {
    let stub = Stub::start().await;
    let gate = Rendezvous::new(2);
    stub.on("/products/1")
        .json(json!({"id": 1}))
        .rendezvous(&gate);
    let bff = TestBff::start_app(app(&config(&stub, "coalesce = true", "", ""))).await;
    let first = many(&bff, "/p/1", 1).remove(0);
    until("the first call reached the service", || async {
        gate.arrived() == 1
    })
    .await;
    let others = many(&bff, "/p/1", 49);
    until("the others joined", || async {
        metric(&bff, COALESCED).await >= 49.0
    })
    .await;
    first.abort();
    until("the BFF saw the first client go", || async {
        metric(&bff, "bff_inflight_requests").await <= 49.0
    })
    .await;
    gate.join().await;
    for c in others {
        let res = c.await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"p": {"id": 1}}));
    }
    assert_eq!(stub.hits("/products/1"), 1);
}

#[tokio::test]
async fn a_failing_shared_call_fails_every_caller_and_is_counted_once() {
    let stub = Stub::start().await;
    let gate = Rendezvous::new(2);
    stub.on("/products/1").status(503).rendezvous(&gate);
    let service = r#"coalesce = true
[services.catalog.retry]
max_attempts = 2
[services.catalog.circuit_breaker]
min_requests = 1000"#;
    let bff = TestBff::start_app(app(&config(&stub, service, "", ""))).await;
    let calls = many(&bff, "/p/1", 50);
    release_when_all_joined(&bff, &gate, 49.0).await;
    for c in calls {
        let res = c.await.unwrap();
        assert_eq!(res.status(), 502);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_failed", "{body}");
    }
    // One call: its first attempt and one retry, each counted once by metrics and the breaker.
    assert_eq!(stub.hits("/products/1"), 2);
    assert_eq!(
        metric(&bff, "bff_upstream_retries_total{service=\"catalog\"}").await,
        1.0
    );
    let attempts = "bff_upstream_requests_total{service=\"catalog\",outcome=\"status_5xx\"}";
    assert_eq!(metric(&bff, attempts).await, 2.0);
    let services = bff.admin_json("/admin/services").await;
    assert_eq!(services[0]["endpoints"][0]["failures"], 2, "{services}");
}

#[tokio::test]
async fn different_principals_never_share_an_entry_unless_shared() {
    let stub = Stub::start().await;
    stub.on("/products/1").json(json!({"id": 1}));
    let service = "[services.catalog.cache]\nttl = \"1h\"";
    let bff = TestBff::start_app(app(&config(&stub, service, "", ""))).await;
    let get = |auth: &'static str| {
        let (c, url) = (bff.client().clone(), bff.url("/p/1"));
        async move {
            let res = c
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    for auth in ["Bearer a", "Bearer b", "Bearer a", "Bearer b"] {
        get(auth).await;
    }
    let sent: Vec<_> = stub
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(sent, ["Bearer a", "Bearer b"], "one call per principal");
    assert_eq!(metric(&bff, &cache_result("miss")).await, 2.0);
    assert_eq!(metric(&bff, &cache_result("hit")).await, 2.0);

    // `shared = true` on a backend's cache: one entry for both.
    let stub = Stub::start().await;
    stub.on("/products/1").json(json!({"id": 1}));
    let backend = "[routes.backends.cache]\nttl = \"1h\"\nshared = true";
    let bff = TestBff::start_app(app(&config(&stub, "", "", backend))).await;
    for auth in ["Bearer a", "Bearer b"] {
        let res = bff
            .client()
            .get(bff.url("/p/1"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(stub.hits("/products/1"), 1);
}

#[tokio::test]
async fn set_cookie_no_store_errors_and_posts_are_never_cached() {
    let stub = Stub::start().await;
    stub.on("/products/cookie")
        .json(json!(1))
        .header("set-cookie", "session=x");
    stub.on("/products/nostore")
        .json(json!(1))
        .header("cache-control", "no-store");
    stub.on("/products/boom").status(500);
    stub.on("/products/ok").json(json!(1));
    // Even a cache that ignores the service's Cache-Control never stores those.
    let service = "[services.catalog.cache]\nttl = \"1h\"\nrespect_cache_control = false";
    let cache = bff::Cache::new(&bff::config::CacheConfig::default()).unwrap();
    let app = app(&config(&stub, service, "", "")).route(
        "/post/{id}",
        get(move |mesh: Mesh, Path(id): Path<String>| {
            let cache = cache.clone();
            async move {
                let res = mesh
                    .service("catalog")
                    .post(path!("/products/{}", id))
                    .cache(&cache)
                    .send()
                    .await
                    .unwrap();
                res.status.as_u16().to_string()
            }
        }),
    );
    let bff = TestBff::start_app(app).await;
    for id in ["cookie", "nostore", "boom", "ok"] {
        for _ in 0..2 {
            bff.get(&format!("/p/{id}")).await;
        }
    }
    assert_eq!(stub.hits("/products/cookie"), 2);
    assert_eq!(stub.hits("/products/nostore"), 2);
    assert_eq!(stub.hits("/products/boom"), 2);
    assert_eq!(stub.hits("/products/ok"), 1, "the cache works");
    for _ in 0..2 {
        assert_eq!(bff.get("/post/ok").await.text().await.unwrap(), "200");
    }
    assert_eq!(
        stub.hits("/products/ok"),
        3,
        "a POST is never answered from a cache"
    );
}

/// The test config with a cache of these `keys` on the service, or on the route's backend.
fn with_cache(stub: &Stub, on_backend: bool, keys: &str) -> String {
    if on_backend {
        config(stub, "", "", &format!("[routes.backends.cache]\n{keys}"))
    } else {
        config(stub, &format!("[services.catalog.cache]\n{keys}"), "", "")
    }
}

/// Moves tokio's clock forward while the servers are idle (the tests' network needs it running).
async fn time_passes(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_makes_exactly_one_background_call() {
    // The cache of the service, then the backend's own.
    for on_backend in [false, true] {
        let stub = Stub::start().await;
        stub.on("/products/1").json(json!({"v": 1}));
        let bff = TestBff::start_app(app(&with_cache(
            &stub,
            on_backend,
            "ttl = \"2s\"\nstale_while_revalidate = \"1m\"",
        )))
        .await;
        assert_eq!(bff.get("/p/1").await.status(), 200);
        // The refresh is held until the stale answers are in (or a second refresh arrives: the bug).
        let gate = Rendezvous::new(2);
        stub.on("/products/1")
            .json(json!({"v": 2}))
            .rendezvous(&gate);
        time_passes(Duration::from_secs(3)).await;
        for c in many(&bff, "/p/1", 20) {
            let res = c.await.unwrap();
            assert_eq!(res.json::<Value>().await.unwrap(), json!({"p": {"v": 1}}));
        }
        assert_eq!(metric(&bff, &cache_result("stale")).await, 20.0);
        gate.join().await;
        until("the refreshed entry is served", || async {
            bff.get("/p/1").await.json::<Value>().await.unwrap() == json!({"p": {"v": 2}})
        })
        .await;
        assert_eq!(stub.hits("/products/1"), 2, "one background call");
    }
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_response_when_the_service_fails() {
    // The cache of the service, then the backend's own.
    for on_backend in [false, true] {
        let stub = Stub::start().await;
        stub.on("/products/1").json(json!({"v": 1}));
        let bff = TestBff::start_app(app(&with_cache(
            &stub,
            on_backend,
            "ttl = \"2s\"\nstale_if_error = \"5s\"",
        )))
        .await;
        assert_eq!(bff.get("/p/1").await.status(), 200);
        stub.on("/products/1").status(500);
        time_passes(Duration::from_secs(3)).await;
        let res = bff.get("/p/1").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"p": {"v": 1}}));
        assert_eq!(stub.hits("/products/1"), 2, "the service was asked");
        assert_eq!(metric(&bff, &cache_result("stale")).await, 1.0);
        // Past stale_if_error: the failure.
        time_passes(Duration::from_secs(5)).await;
        assert_eq!(bff.get("/p/1").await.status(), 502);
    }
}

#[tokio::test]
async fn an_entry_with_an_etag_is_revalidated_with_if_none_match() {
    // The cache of the service, then the backend's own.
    for on_backend in [false, true] {
        let stub = Stub::start().await;
        stub.on("/products/1")
            .json(json!({"v": 1}))
            .header("etag", "\"v1\"");
        let bff = TestBff::start_app(app(&with_cache(&stub, on_backend, "ttl = \"2s\""))).await;
        assert_eq!(bff.get("/p/1").await.status(), 200);
        stub.on("/products/1").status(304).body("");
        time_passes(Duration::from_secs(3)).await;
        let res = bff.get("/p/1").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"p": {"v": 1}}));
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        assert!(!sent[0].headers.contains_key("if-none-match"));
        assert_eq!(sent[1].headers["if-none-match"], "\"v1\"");
        assert_eq!(metric(&bff, &cache_result("revalidated")).await, 1.0);
        // Fresh again: no call.
        assert_eq!(bff.get("/p/1").await.status(), 200);
        assert_eq!(stub.hits("/products/1"), 2);
    }
}

#[tokio::test]
async fn the_service_max_age_replaces_the_ttl_unless_ignored() {
    // The cache of the service, then the backend's own.
    for on_backend in [false, true] {
        for (respect, hits) in [("", 2), ("respect_cache_control = false", 1)] {
            let stub = Stub::start().await;
            stub.on("/products/1")
                .json(json!(1))
                .header("cache-control", "max-age=1");
            let keys = format!("ttl = \"1h\"\n{respect}");
            let bff = TestBff::start_app(app(&with_cache(&stub, on_backend, &keys))).await;
            bff.get("/p/1").await;
            time_passes(Duration::from_secs(2)).await;
            bff.get("/p/1").await;
            assert_eq!(stub.hits("/products/1"), hits, "{respect}");
        }
    }
}

#[tokio::test]
async fn the_cache_stays_within_its_bounds_and_says_so() {
    // The cache of the service, then the backend's own.
    for on_backend in [false, true] {
        let stub = Stub::start().await;
        for i in 0..10 {
            stub.on(&format!("/products/{i}")).json(json!(i));
        }
        let bff = TestBff::start_app(app(&with_cache(
            &stub,
            on_backend,
            "ttl = \"1h\"\nmax_entries = 2\nmax_bytes = \"4KiB\"",
        )))
        .await;
        let bytes = "bff_cache_bytes{service=\"catalog\"}";
        assert_eq!(metric(&bff, bytes).await, 0.0);
        bff.get("/p/0").await;
        let one = metric(&bff, bytes).await;
        assert!(one > 0.0);
        for i in 1..10 {
            bff.get(&format!("/p/{i}")).await;
        }
        let all = metric(&bff, bytes).await;
        assert!(
            all <= 2.0 * one,
            "{all} bytes for at most two entries of {one}"
        );
    }
}

#[tokio::test]
async fn admin_purge_empties_all_a_service_or_a_prefix() {
    let stub = Stub::start().await;
    stub.on("/products/1").json(json!(1));
    let service = "[services.catalog.cache]\nttl = \"1h\"";
    let bff = TestBff::start_app(app(&config(&stub, service, "", ""))).await;
    let purge = |query: &str| {
        let req = bff
            .client()
            .post(bff.admin_url(&format!("/admin/cache/purge{query}")));
        async move { req.send().await.unwrap() }
    };
    bff.get("/p/1").await;
    bff.get("/p/1").await;
    assert_eq!(stub.hits("/products/1"), 1);
    for (query, purged) in [
        ("?prefix=/orders", 0),
        ("?service=catalog&prefix=/products/", 1),
        ("", 1),
        ("?service=catalog", 1),
    ] {
        let res = purge(query).await;
        assert_eq!(res.status(), 200, "{query}");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({ "purged": purged }),
            "{query}"
        );
        bff.get("/p/1").await;
    }
    assert_eq!(
        stub.hits("/products/1"),
        4,
        "one call after each purge that removed it"
    );
    for (query, status) in [
        ("?service=nope", 404),
        ("?prefix=products", 400),
        ("?x=1", 400),
    ] {
        assert_eq!(purge(query).await.status(), status, "{query}");
    }
    // A browser page cannot purge (the admin listener's rule for every POST).
    let res = bff
        .client()
        .post(bff.admin_url("/admin/cache/purge"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

async fn assert_conditional(bff: &TestBff, path: &str, stub: &Stub) {
    let res = bff.get(path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "private, max-age=10");
    let tag = res.headers()["etag"].clone();
    assert!(tag.to_str().unwrap().starts_with('"'), "strong: {tag:?}");
    let again = |inm: &'static str| {
        let req = bff.client().get(bff.url(path)).header("if-none-match", inm);
        async move { req.send().await.unwrap() }
    };
    let tag: &'static str = tag.to_str().unwrap().to_string().leak();
    let res = again(tag).await;
    assert_eq!(res.status(), 304, "{path}");
    assert_eq!(res.headers()["etag"], tag);
    assert_eq!(res.headers()["cache-control"], "private, max-age=10");
    assert!(res.bytes().await.unwrap().is_empty());
    assert_eq!(again("\"other\"").await.status(), 200);
    // A new body, a new tag.
    stub.on("/products/1").json(json!({"id": 2}));
    let res = again(tag).await;
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"], tag);
    // An error gets no ETag, and keeps its own `no-store`.
    stub.on("/products/1").status(500);
    let res = bff.get(path).await;
    assert_eq!(res.status(), 502);
    assert!(!res.headers().contains_key("etag"));
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn routes_answer_304_for_their_etag_and_send_their_cache_control() {
    let stub = Stub::start().await;
    stub.on("/products/1").json(json!({"id": 1}));
    let route = "etag = true\ncache_control = \"private, max-age=10\"";
    let backend = "coalesce = true";
    let bff = TestBff::start_app(app(&config(&stub, "", route, backend))).await;
    assert_conditional(&bff, "/p/1", &stub).await;
    let routes = bff.admin_json("/admin/routes").await;
    let policy = &routes[0]["policy"];
    assert_eq!(policy["etag"], true, "{routes}");
    assert_eq!(policy["cache_control"], "private, max-age=10");
    assert_eq!(policy["backends"][0]["coalesce"], true);
    assert_eq!(policy["backends"][0]["cache"], Value::Null);

    let stub = Stub::start().await;
    stub.on("/products/1").json(json!({"id": 1}));
    let policy = Policy::new()
        .etag()
        .cache_control(http::HeaderValue::from_static("private, max-age=10"));
    let app = app(&config(&stub, "", "", "")).route_with("/h/{id}", policy, get(product));
    let bff = TestBff::start_app(app).await;
    assert_conditional(&bff, "/h/1", &stub).await;
}

#[tokio::test]
async fn spans_say_hit_or_miss_and_the_metrics_pass_promtool() {
    let receiver = bff_testkit::OtlpReceiver::start().await;
    let stub = Stub::start().await;
    stub.on("/products/1").json(json!(1));
    let service = format!(
        "coalesce = true\n[services.catalog.cache]\nttl = \"1h\"\n[telemetry]\notlp_endpoint = \"{}\"",
        receiver.endpoint()
    );
    let bff = TestBff::start_app(app(&config(&stub, &service, "", ""))).await;
    for _ in 0..2 {
        assert_eq!(bff.get("/p/1").await.status(), 200);
    }
    // Two server spans, two shielded calls, one attempt.
    until("the spans reached the collector", || async {
        receiver.spans().len() >= 5
    })
    .await;
    let spans = receiver.spans();
    let shielded: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "GET catalog (shielded)")
        .collect();
    assert_eq!(shielded.len(), 2, "{spans:#?}");
    for (span, result) in shielded.iter().zip(["miss", "hit"]) {
        assert!(
            span.attributes
                .contains(&("bff.cache".into(), result.into())),
            "{span:?}"
        );
        assert!(
            span.attributes
                .contains(&("bff.coalesced".into(), "false".into()))
        );
    }

    let text = bff.admin_text("/metrics").await;
    for want in [
        "bff_cache_requests_total{service=\"catalog\",result=\"hit\"} 1",
        "bff_cache_requests_total{service=\"catalog\",result=\"miss\"} 1",
        "bff_cache_requests_total{service=\"catalog\",result=\"stale\"} 0",
        "bff_cache_requests_total{service=\"catalog\",result=\"revalidated\"} 0",
        "bff_coalesced_requests_total{service=\"catalog\"} 0",
        "bff_cache_bytes{service=\"catalog\"} ",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_caller_with_time_left_when_the_shared_calls_deadline_passes_calls_again() {
    let stub = Stub::start().await;
    let gate = Rendezvous::new(2);
    stub.on("/products/1")
        .json(json!({"id": 1}))
        .rendezvous(&gate);
    // The config route has a 1 s deadline; the Rust route the edge's 20 s.
    let app = app(&config(&stub, "coalesce = true", "timeout = \"1s\"", ""))
        .route("/h/{id}", get(product));
    let bff = TestBff::start_app(app).await;
    let short = many(&bff, "/p/1", 1).remove(0);
    until("the short call reached the service", || async {
        gate.arrived() == 1
    })
    .await;
    let long = many(&bff, "/h/1", 1).remove(0);
    let short = short.await.unwrap();
    assert_eq!(short.status(), 504);
    let long = long.await.unwrap();
    assert_eq!(long.status(), 200, "its own call, under its own deadline");
    assert_eq!(long.json::<Value>().await.unwrap(), json!({"p": {"id": 1}}));
    assert_eq!(stub.hits("/products/1"), 2);
    assert_eq!(
        metric(&bff, COALESCED).await,
        1.0,
        "the long call had joined the short one's"
    );
}

#[tokio::test]
async fn callers_with_different_principals_never_share_a_call_even_with_a_shared_cache() {
    let stub = Stub::start().await;
    let gate = Rendezvous::new(2);
    stub.on("/products/1").json(json!(1)).rendezvous(&gate);
    let backend = "coalesce = true\n[routes.backends.cache]\nshared = true";
    let bff = TestBff::start_app(app(&config(&stub, "", "", backend))).await;
    let calls: Vec<_> = ["Bearer a", "Bearer b"]
        .into_iter()
        .map(|auth| {
            let req = bff
                .client()
                .get(bff.url("/p/1"))
                .header("authorization", auth);
            tokio::spawn(async move { req.send().await.unwrap() })
        })
        .collect();
    until("two calls, or one shared", || async {
        gate.arrived() >= 2 || metric(&bff, COALESCED).await >= 1.0
    })
    .await;
    if gate.arrived() < 2 {
        gate.join().await;
    }
    for c in calls {
        assert_eq!(c.await.unwrap().status(), 200);
    }
    assert_eq!(metric(&bff, COALESCED).await, 0.0);
    assert_eq!(stub.hits("/products/1"), 2);
}
