//! The embedded sidecar against misbehaving stubs: retries, budgets, breakers, ejection, balancing,
//! health checks.

use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::time::Duration;

/// A BFF with service `svc` over `endpoints`, its extra keys, and route `GET /r/{id}` -> `METHOD /x/{id}`.
fn config(endpoints: &[&Stub], service_extra: &str, method: &str) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|s| format!("\"{}\"", s.endpoint()))
        .collect();
    format!(
        r#"
[edge]
request_timeout = "5s"

[services.svc]
endpoints = [{}]
timeout = "1s"
{service_extra}

[[routes]]
path = "/r/{{id}}"

[[routes.backends]]
name = "x"
service = "svc"
method = "{method}"
path = "/x/{{id}}"
"#,
        eps.join(", ")
    )
}

#[tokio::test]
async fn a_retry_lands_on_the_healthy_endpoint() {
    let bad = Stub::start().await;
    let good = Stub::start().await;
    bad.on("/x/1").status(503);
    good.on("/x/1").json(json!("ok"));
    let extra = r#"load_balancer = "round_robin"
[services.svc.retry]
max_attempts = 2
on = ["503"]
backoff = "1ms"
max_backoff = "5ms""#;
    let bff = TestBff::start(&config(&[&bad, &good], extra, "GET")).await;
    let mut ok = 0;
    for _ in 0..20 {
        if bff.get("/r/1").await.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 20,
        "every request succeeds, on the second endpoint when the first fails"
    );
    assert!(
        bad.hits("/x/1") >= 5,
        "the failing endpoint was tried: {}",
        bad.hits("/x/1")
    );
    assert_eq!(good.hits("/x/1"), 20);
}

#[tokio::test]
async fn the_retry_budget_bounds_downstream_attempts() {
    let bad = Stub::start().await;
    bad.on("/x/1").status(503);
    let extra = r#"[services.svc.retry]
max_attempts = 3
on = ["503"]
backoff = "1ms"
max_backoff = "2ms"
budget_ratio = 0.2
min_per_second = 1"#;
    let bff = TestBff::start(&config(&[&bad], extra, "GET")).await;
    for _ in 0..100 {
        assert_eq!(bff.get("/r/1").await.status(), 502);
    }
    // 100 requests deposit 20 retries; min_per_second x the 10 s window adds 10.
    let attempts = bad.hits("/x/1");
    assert!(attempts <= 120 + 10, "attempts {attempts}");
    assert!(
        attempts > 100,
        "retries happened while the budget allowed: {attempts}"
    );
    let services: Value = bff.admin_json("/admin/services").await;
    assert_eq!(services[0]["retry_budget_remaining"], 0, "{services}");
}

#[tokio::test]
async fn post_is_attempted_once() {
    let bad = Stub::start().await;
    bad.on("/x/1").status(503);
    let extra = r#"[services.svc.retry]
max_attempts = 3
on = ["503", "reset"]
backoff = "1ms""#;
    let bff = TestBff::start(&config(&[&bad], extra, "POST")).await;
    assert_eq!(bff.get("/r/1").await.status(), 502);
    assert_eq!(bad.hits("/x/1"), 1, "a POST is never retried by default");
}

#[tokio::test]
async fn an_open_breaker_fails_fast_then_recovers() {
    let stub = Stub::start().await;
    stub.on("/x/1").status(500);
    let extra = r#"[services.svc.circuit_breaker]
failure_rate = 0.5
min_requests = 5
window = "10s"
open_for = "2s"
half_open_probes = 1"#;
    // (`open_for` long enough that the 20 requests below all meet the open breaker on a loaded machine.)
    let bff = TestBff::start(&config(&[&stub], extra, "GET")).await;
    for _ in 0..5 {
        assert_eq!(bff.get("/r/1").await.status(), 502);
    }
    assert_eq!(stub.hits("/x/1"), 5);
    for _ in 0..20 {
        let res = bff.get("/r/1").await;
        assert_eq!(res.status(), 503);
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "circuit_open"
        );
    }
    assert_eq!(stub.hits("/x/1"), 5, "open: the network is not touched");
    let services: Value = bff.admin_json("/admin/services").await;
    assert_eq!(services[0]["circuit"], "open");

    stub.on("/x/1").status(200).json(json!("back"));
    let recovered =
        bff_testkit::eventually(|| async { bff.get("/r/1").await.status() == 200 }).await;
    assert!(
        recovered,
        "after open_for a probe succeeds and the breaker closes"
    );
    assert_eq!(bff.get("/r/1").await.status(), 200);
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_while_the_others_serve_everything() {
    let a = Stub::start().await;
    let b = Stub::start().await;
    let bad = Stub::start().await;
    for s in [&a, &b] {
        s.on("/x/1").json(json!("ok"));
    }
    bad.on("/x/1").status(500);
    let extra = r#"load_balancer = "round_robin"
[services.svc.outlier_detection]
consecutive_failures = 3
base_ejection = "30s"
max_ejected_percent = 50"#;
    let bff = TestBff::start(&config(&[&a, &b, &bad], extra, "GET")).await;
    for _ in 0..9 {
        bff.get("/r/1").await;
    }
    assert_eq!(bad.hits("/x/1"), 3, "three consecutive failures eject it");
    for _ in 0..30 {
        assert_eq!(bff.get("/r/1").await.status(), 200);
    }
    assert_eq!(bad.hits("/x/1"), 3, "no traffic once ejected");
    assert_eq!(a.hits("/x/1") + b.hits("/x/1"), 36);
    let services: Value = bff.admin_json("/admin/services").await;
    let ejected: Vec<&Value> = services[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["ejected_for_ms"].is_null())
        .collect();
    assert_eq!(ejected.len(), 1);
    assert_eq!(ejected[0]["address"], bad.endpoint().as_str());
}

#[tokio::test]
async fn p2c_ewma_avoids_the_slow_endpoint() {
    let fast = Stub::start().await;
    let slow = Stub::start().await;
    fast.on("/x/1")
        .delay(Duration::from_millis(20))
        .json(json!("fast"));
    slow.on("/x/1")
        .delay(Duration::from_millis(200))
        .json(json!("slow"));
    let bff = TestBff::start(&config(
        &[&fast, &slow],
        r#"load_balancer = "p2c_ewma""#,
        "GET",
    ))
    .await;
    for _ in 0..100 {
        assert_eq!(bff.get("/r/1").await.status(), 200);
    }
    let slow_share = slow.hits("/x/1") as f64 / 100.0;
    assert!(slow_share < 0.2, "the 10x slower endpoint got {slow_share}");
}

#[tokio::test]
async fn ring_hash_keeps_a_key_on_one_endpoint_and_moves_few_when_one_goes() {
    let stubs = [
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    ];
    for s in &stubs {
        for id in 0..60 {
            s.on(&format!("/x/{id}")).json(json!(s.endpoint()));
        }
    }
    let extra = r#"load_balancer = "ring_hash"
hash_key = "param:id""#;
    let all: Vec<&Stub> = stubs.iter().collect();
    let owners = |bff: TestBff| async move {
        let mut owners = Vec::new();
        for id in 0..60 {
            let first: Value = bff.get(&format!("/r/{id}")).await.json().await.unwrap();
            for _ in 0..2 {
                let again: Value = bff.get(&format!("/r/{id}")).await.json().await.unwrap();
                assert_eq!(again, first, "key {id} sticks to one endpoint");
            }
            owners.push(first["x"].as_str().unwrap().to_string());
        }
        owners
    };
    let before = owners(TestBff::start(&config(&all, extra, "GET")).await).await;
    let removed = stubs[2].endpoint();
    let after = owners(TestBff::start(&config(&all[..2], extra, "GET")).await).await;
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            moved += 1;
            assert_eq!(*b, removed, "only keys of the removed endpoint move");
        }
    }
    assert!(
        moved > 5 && moved < 40,
        "about 1/3 of 60 keys move: {moved}"
    );
}

#[tokio::test]
async fn health_checks_take_endpoints_out_and_readyz_follows() {
    let stub = Stub::start().await;
    stub.on("/x/1").json(json!("ok"));
    stub.on("/healthz").status(500);
    let extra = r#"[services.svc.health_check]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
unhealthy_threshold = 2
healthy_threshold = 1"#;
    let bff = TestBff::start(&config(&[&stub], extra, "GET")).await;
    let readyz = |bff: &TestBff| {
        let url = bff.admin_url("/readyz");
        let c = bff.client().clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    // Wait for the probes to take the endpoint out (readyz alone says 503 from the start: no probe has
    // passed yet).
    let out = bff_testkit::eventually(|| async {
        let v: Value = bff.admin_json("/admin/services").await;
        v[0]["endpoints"][0]["healthy"] == false
    })
    .await;
    assert!(out, "two failed probes take the endpoint out");
    assert_eq!(
        readyz(&bff).await,
        503,
        "readyz is 503 while the required service has no healthy endpoint"
    );
    let res = bff.get("/r/1").await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "no_healthy_endpoint"
    );
    let hits = stub.hits("/x/1");
    assert_eq!(hits, 0, "an unhealthy endpoint gets no traffic");

    stub.on("/healthz").status(200);
    let back = bff_testkit::eventually(|| async { readyz(&bff).await == 200 }).await;
    assert!(back, "a passing probe brings the endpoint back");
    assert_eq!(bff.get("/r/1").await.status(), 200);
}

#[tokio::test]
async fn max_in_flight_fails_fast() {
    let stub = Stub::start().await;
    stub.on("/x/1").hang();
    let bff = TestBff::start(&config(&[&stub], "max_in_flight = 1", "GET")).await;
    let url = bff.url("/r/1");
    let c = bff.client().clone();
    let first = tokio::spawn(async move { c.get(url).send().await });
    stub.wait_for_hits("/x/1", 1).await;
    let res = bff.get("/r/1").await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "service_overloaded"
    );
    assert_eq!(stub.hits("/x/1"), 1);
    first.abort();
}

#[tokio::test]
async fn a_slow_attempt_is_hedged_to_another_endpoint() {
    let hanging = Stub::start().await;
    let fast = Stub::start().await;
    hanging.on("/x/1").hang();
    fast.on("/x/1").json(json!("fast"));
    // No retries: without the hedge, every request that starts on the hanging endpoint would time out.
    let extra = r#"load_balancer = "round_robin"
hedge_after = "30ms""#;
    let bff = TestBff::start(&config(&[&hanging, &fast], extra, "GET")).await;
    for _ in 0..10 {
        let res = bff.get("/r/1").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["x"], "fast");
    }
    // Round robin sends first attempts to the hanging endpoint (the hedge takes the next turn).
    let stuck = hanging.hits("/x/1");
    assert!(stuck >= 5, "{stuck}");
    let services: Value = bff.admin_json("/admin/services").await;
    assert_eq!(
        services[0]["hedges"], stuck as u64,
        "one hedge for each stuck attempt: {services}"
    );
}

#[tokio::test]
async fn a_post_is_never_hedged() {
    let hanging = Stub::start().await;
    let fast = Stub::start().await;
    hanging.on("/x/1").hang();
    fast.on("/x/1").json(json!("fast"));
    let extra = r#"load_balancer = "round_robin"
timeout = "200ms"
hedge_after = "20ms""#;
    let cfg = config(&[&hanging, &fast], extra, "POST").replace("timeout = \"1s\"\n", "");
    let bff = TestBff::start(&cfg).await;
    let mut failed = 0;
    for _ in 0..4 {
        if bff.get("/r/1").await.status() != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 2, "the POSTs sent to the hanging endpoint time out");
    assert_eq!(
        hanging.hits("/x/1") + fast.hits("/x/1"),
        4,
        "one attempt each"
    );
}
