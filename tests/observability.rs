//! Metrics as operators read them: the Prometheus text format checked by `promtool`, and scraped by a real
//! Prometheus server (both from Debian's prometheus package, which scripts/test installs).

use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

const ROUTES: &str = r#"
[telemetry]
access_log = false

[services.users]
endpoints = ["USERS"]
[services.users.retry]
on = ["503"]
backoff = "1ms"
[services.users.circuit_breaker]

[[routes]]
path = "/api/u/{id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
[[routes.backends]]
name = "extra"
service = "users"
path = "/extra"
required = false
"#;

async fn traffic() -> (Stub, TestBff) {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"n": 1}));
    users.on("/extra").status(503);
    let bff = TestBff::start(&ROUTES.replace("USERS", &users.endpoint())).await;
    for _ in 0..5 {
        assert_eq!(bff.get("/api/u/1").await.status(), 200);
    }
    assert_eq!(bff.get("/nowhere").await.status(), 404);
    (users, bff)
}

#[tokio::test]
async fn metrics_have_the_contract_names_and_pass_promtool() {
    let (_users, bff) = traffic().await;
    let res = bff
        .client()
        .get(bff.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    for want in [
        r#"bff_requests_total{route="/api/u/{id}",method="GET",status="200"} 5"#,
        r#"bff_requests_total{route="unmatched",method="*",status="404"} 1"#,
        r#"bff_request_duration_seconds_count{route="/api/u/{id}",method="GET"} 5"#,
        r#"bff_upstream_requests_total{service="users",outcome="success"} 5"#,
        r#"bff_upstream_requests_total{service="users",outcome="status_5xx"} 15"#,
        r#"bff_upstream_retries_total{service="users"} 10"#,
        r#"bff_partial_responses_total{route="/api/u/{id}",backend="extra"} 5"#,
        // 15 failed attempts of 20 open the breaker (failure_rate 0.5, min_requests 20).
        r#"bff_circuit_state{service="users"} 1"#,
        "bff_upstream_request_duration_seconds_bucket{service=\"users\",le=\"+Inf\"} 20",
        "bff_inflight_requests 0",
        "bff_rate_limited_total{route=\"/api/u/{id}\"} 0",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    assert!(text.contains(&format!(
        "bff_endpoint_ejected{{service=\"users\",endpoint=\"{}\"}} 0",
        _users.endpoint()
    )));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the Prometheus server when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_admin_listener() {
    let (_users, bff) = traffic().await;
    let dir = std::env::temp_dir().join(format!("bff-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bff\n    static_configs:\n      - targets: ['{}']\n",
            bff.admin_addr()
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)"),
    );
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=up%7Bjob%3D%22bff%22%7D");
    let mut up = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(res) = bff.client().get(&query).send().await else {
            continue;
        };
        let Ok(v) = res.json::<Value>().await else {
            continue;
        };
        if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
            up = Some(value.to_string());
            if value == "1" {
                break;
            }
        }
    }
    assert_eq!(
        up.as_deref(),
        Some("1"),
        "Prometheus scraped /metrics (target up)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_of_a_three_backend_aggregation_reaches_an_otlp_receiver() {
    let receiver = bff_testkit::OtlpReceiver::start().await;
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"cat": "books"}));
    users.on("/orders").json(json!([1]));
    users.on("/recs/books").json(json!(["b1"]));
    let cfg = format!(
        r#"
[bff]
name = "traced-bff"
[telemetry]
access_log = false
otlp_endpoint = "{otlp}"
[services.users]
endpoints = ["{u}"]
[[routes]]
path = "/api/home/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
[[routes.backends]]
name = "orders"
service = "users"
path = "/orders"
[[routes.backends]]
name = "recs"
service = "users"
path = "/recs/{{user.cat}}"
depends_on = ["user"]
"#,
        otlp = receiver.endpoint(),
        u = users.endpoint()
    );
    let bff = TestBff::start(&cfg).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = bff
        .client()
        .get(bff.url("/api/home/1"))
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Asserted below, with the spans in the message.
    let _ = bff_testkit::eventually(|| async { receiver.spans().len() >= 4 }).await;
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        4,
        "one server span and three client spans: {spans:#?}"
    );
    let trace: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&parent[3 + 2 * i..5 + 2 * i], 16).unwrap())
        .collect();
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "one trace, continued from the client"
    );
    let server = spans.iter().find(|s| s.kind == 2).expect("a server span");
    assert_eq!(server.name, "GET /api/home/{id}");
    assert_eq!(
        server.parent_span_id,
        vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(server.service, "traced-bff");
    assert!(
        server
            .attributes
            .contains(&("http.response.status_code".into(), "200".into()))
    );
    let clients: Vec<_> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(clients.len(), 3);
    for c in &clients {
        assert_eq!(
            c.parent_span_id, server.span_id,
            "each downstream attempt is a child of the request"
        );
        assert!(
            c.attributes
                .contains(&("bff.service".into(), "users".into()))
        );
        assert!(c.attributes.contains(&("bff.attempt".into(), "1".into())));
    }
    // The span ids sent downstream in traceparent are the client spans' ids.
    let sent: Vec<String> = users
        .requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap()[36..52].to_string())
        .collect();
    for c in &clients {
        let hex: String = c.span_id.iter().map(|b| format!("{b:02x}")).collect();
        assert!(sent.contains(&hex), "{hex} not in {sent:?}");
    }
    let metrics = bff.admin_text("/metrics").await;
    assert!(
        metrics.contains("bff_trace_spans_exported_total 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn spans_are_dropped_and_counted_when_the_collector_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let users = Stub::start().await;
    users.on("/users/1").json(json!({}));
    let cfg = format!(
        "[telemetry]\naccess_log = false\notlp_endpoint = \"http://127.0.0.1:{port}\"\n[services.users]\nendpoints = [\"{}\"]\n[[routes]]\npath = \"/u\"\n[[routes.backends]]\nname = \"u\"\nservice = \"users\"\npath = \"/users/1\"\n",
        users.endpoint()
    );
    let bff = TestBff::start(&cfg).await;
    for _ in 0..3 {
        assert_eq!(
            bff.get("/u").await.status(),
            200,
            "requests are not slowed or failed by a dead collector"
        );
    }
    let dropped = bff_testkit::eventually(|| async {
        bff.admin_text("/metrics")
            .await
            .contains("bff_trace_spans_dropped_total 6")
    })
    .await;
    assert!(
        dropped,
        "6 spans (3 requests, 3 attempts) counted as dropped"
    );
}

/// `/readyz` means something: a required service with a health check is not ready until one of its
/// endpoints has passed a probe (or answered a call), so nothing listening is never "ready"; the admin
/// API says an endpoint nobody has reached yet is unknown (`reached: false`), not healthy.
#[tokio::test]
async fn readiness_waits_for_a_service_that_answered_and_unreached_endpoints_are_unknown() {
    // A port with nothing listening: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let users = Stub::start().await;
    users.on("/healthz").json(json!({"ok": true}));
    let catalog = Stub::start().await;
    let config = |users_addr: &str| {
        format!(
            r#"
[telemetry]
access_log = false
[services.users]
endpoints = ["{users_addr}"]
[services.users.health_check]
path = "/healthz"
interval = "100ms"
timeout = "100ms"
unhealthy_threshold = 100
[services.catalog]
endpoints = ["{}"]
[[routes]]
path = "/items"
[[routes.backends]]
name = "items"
service = "catalog"
path = "/items"
required = false
"#,
            catalog.endpoint()
        )
    };
    let client = reqwest::Client::new();
    let services = |bff: &TestBff| {
        let url = bff.admin_url("/admin/services");
        let client = client.clone();
        async move {
            let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            v
        }
    };
    let endpoint = |v: &Value, service: &str| -> Value {
        let s = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap();
        s["endpoints"][0].clone()
    };

    // Nothing listens at the users endpoint: its probes fail (never enough to call it unhealthy here),
    // so it is "healthy" by count but was never reached, and the BFF is not ready (before readiness
    // looked at reachability, it was ready at once).
    let down = TestBff::start(&config(&closed.to_string())).await;
    let e = endpoint(&services(&down).await, "users");
    assert_eq!(
        (&e["healthy"], &e["reached"]),
        (&json!(true), &json!(false)),
        "{e}"
    );
    let ready = down.admin_url("/readyz");
    assert_eq!(client.get(&ready).send().await.unwrap().status(), 503);

    // A users endpoint that answers its probe: ready once the first probe passed, and reached.
    let up = TestBff::start(&config(&users.endpoint())).await;
    let ready = up.admin_url("/readyz");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(&ready).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(endpoint(&services(&up).await, "users")["reached"], true);
    // The catalog has no health check: available is enough for readiness, but it is unknown until a
    // call succeeds.
    assert_eq!(endpoint(&services(&up).await, "catalog")["reached"], false);
    catalog.on("/items").json(json!([1]));
    assert_eq!(up.get("/items").await.status(), 200);
    assert_eq!(endpoint(&services(&up).await, "catalog")["reached"], true);
}

/// The same BFF, not ready while nothing listens at its required service's address (its probes fail, never
/// enough to call the endpoint unhealthy: before readiness asked for a passed probe, it was ready at
/// once), turns ready once a service there answers its probe.
#[tokio::test]
async fn readiness_turns_200_once_the_service_that_was_down_answers() {
    // A port with nothing listening: bound, then released (a stub takes it below).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bff = TestBff::start(&format!(
        r#"
[telemetry]
access_log = false
[services.users]
endpoints = ["{port}"]
[services.users.health_check]
path = "/healthz"
interval = "50ms"
timeout = "50ms"
unhealthy_threshold = 1000
"#
    ))
    .await;
    let ready = bff.admin_url("/readyz");
    let status = || async { bff.client().get(&ready).send().await.unwrap().status() };
    assert_eq!(status().await, 503, "nothing answered: not ready");
    let v: Value = bff.admin_json("/admin/services").await;
    assert_eq!(
        v[0]["endpoints"][0]["healthy"], true,
        "healthy by count: {v}"
    );

    let users = Stub::start_on(port).await;
    users.on("/healthz").json(json!({"ok": true}));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status().await != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
