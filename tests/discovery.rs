//! Dynamic discovery under a steady load: removing an endpoint fails no request; a broken source keeps the
//! last good endpoints.

use bff_testkit::{Stub, TestBff};
use serde_json::json;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_discovery_removes_an_endpoint_without_a_failed_request() {
    let a = Stub::start().await;
    let b = Stub::start().await;
    for s in [&a, &b] {
        s.on("/x").json(json!(s.endpoint()));
    }
    let dir = std::env::temp_dir().join(format!("bff-disc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let eps = dir.join("users.json");
    std::fs::write(
        &eps,
        json!([a.endpoint(), {"address": b.endpoint(), "zone": "b"}]).to_string(),
    )
    .unwrap();
    let cfg = format!(
        r#"
[telemetry]
access_log = false
[services.users]
discovery = "file://{}"
load_balancer = "round_robin"
[[routes]]
path = "/r"
[[routes.backends]]
name = "x"
service = "users"
path = "/x"
"#,
        eps.display()
    );
    let bff = TestBff::start(&cfg).await;
    let ready = bff.admin_url("/readyz");
    let up = bff_testkit::eventually(|| async {
        bff.client().get(&ready).send().await.unwrap().status() == 200
    })
    .await;
    assert!(up, "ready once the file gave endpoints");

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (c, url, stop, failed, ok) = (
                bff.client().clone(),
                bff.url("/r"),
                stop.clone(),
                failed.clone(),
                ok.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    // Both endpoints serve.
    b.wait_for_hits("/x", 1).await;

    std::fs::write(&eps, json!([a.endpoint()]).to_string()).unwrap();
    // Out of the endpoints first (a quiet moment of a stalled load is not a removal), then no traffic
    // once the calls already sent to it have landed.
    let only_a = bff_testkit::eventually(|| async {
        let services: serde_json::Value = bff.admin_json("/admin/services").await;
        services[0]["endpoints"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert!(only_a, "the removed endpoint left the service");
    let removed = bff_testkit::eventually(|| async {
        let before = b.hits("/x");
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.hits("/x") == before
    })
    .await;
    assert!(removed, "the removed endpoint gets no more traffic");

    // An added endpoint gets traffic (the file is read every second; the bound is loose for a loaded
    // machine).
    let c = Stub::start().await;
    c.on("/x").json(json!(c.endpoint()));
    std::fs::write(&eps, json!([a.endpoint(), c.endpoint()]).to_string()).unwrap();
    c.wait_for_hits("/x", 1).await;
    std::fs::write(&eps, json!([a.endpoint()]).to_string()).unwrap();
    let only_a = bff_testkit::eventually(|| async {
        let services: serde_json::Value = bff.admin_json("/admin/services").await;
        services[0]["endpoints"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert!(only_a, "the endpoint removed again is gone");

    // A broken file is refused (counted): the last good set keeps serving.
    let failures = bff_e2e::discovery_failures(&bff, "users").await;
    std::fs::write(&eps, "[not json").unwrap();
    let refused = bff_testkit::eventually(|| async {
        bff_e2e::discovery_failures(&bff, "users").await > failures
    })
    .await;
    assert!(
        refused,
        "the broken file is counted in bff_discovery_failures_total"
    );
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no failed request ({} served)",
        ok.load(Ordering::SeqCst)
    );
    let services: serde_json::Value = bff.admin_json("/admin/services").await;
    let endpoints = services[0]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["address"], a.endpoint().as_str());
    let _ = std::fs::remove_dir_all(&dir);
}
