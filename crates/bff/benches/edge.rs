//! The framework's per-request cost without the network: the edge stack (request id, trace context, load
//! shedding, body limit, deadline, error rendering) and the router, against a bare axum router serving the
//! same handler; and route matching in a table of 50 routes.
//!
//! Run with: `cargo bench -p bff --bench edge`

use axum::{Router, body::Body, routing::get};
use bff::App;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

async fn hello() -> &'static str {
    "{\"ok\":true}"
}

fn routes(mut r: Router) -> Router {
    for i in 0..50 {
        r = r.route(&format!("/api/v1/section{i}/{{id}}/items"), get(hello));
    }
    r
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = Router::new().route("/api/hello/{id}", get(hello));
    // The access log is off, as in the whole-process benchmark: its line on stdout is a syscall.
    let framework = App::from_toml("[bff]\nname = \"bench\"\n[telemetry]\naccess_log = false\n")
        .unwrap()
        .route("/api/hello/{id}", get(hello))
        .into_router()
        .unwrap();
    let table = routes(Router::new());

    let req = |path: &str| {
        Request::get(path)
            .header("x-request-id", "bench-1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap()
    };
    let mut g = c.benchmark_group("request");
    g.bench_function("bare_axum_router", |b| {
        b.to_async(&rt)
            .iter(|| bare.clone().oneshot(req("/api/hello/7")))
    });
    g.bench_function("bff_edge_and_router", |b| {
        b.to_async(&rt)
            .iter(|| framework.clone().oneshot(req("/api/hello/7")))
    });
    g.bench_function("bff_404_json_error", |b| {
        b.to_async(&rt)
            .iter(|| framework.clone().oneshot(req("/nowhere")))
    });
    g.bench_function("route_match_50_routes_last", |b| {
        b.to_async(&rt)
            .iter(|| table.clone().oneshot(req("/api/v1/section49/7/items")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
