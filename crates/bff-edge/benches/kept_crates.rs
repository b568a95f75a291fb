//! Hand-written edge code against the crate it could be, both doing the same work
//! (docs/performance.md, "Hand-written or a crate: the decisions"):
//!
//! - CORS: the edge's `Cors::decide` and the headers added to the response, against tower-http's
//!   `CorsLayer` configured alike (the exact origin, the methods, the exposed headers, the request's
//!   headers mirrored on a preflight, max-age 600), around a service that answers an empty response.
//! - The access log's RFC 3339 timestamp (`2026-11-28T00:10:15.123Z`) against the `time` crate's
//!   formatter with the same format.
//!
//! Run with: `cargo bench -p bff-edge --bench kept_crates`

use bff_config::CorsConfig;
use bff_edge::{Cors, CorsDecision};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use std::{convert::Infallible, hint::black_box, time::Duration};
use tower::{Layer, Service};
use tower_http::cors::{AllowHeaders, CorsLayer};

const ORIGIN: &str = "https://app.example";

fn request(preflight: bool) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut()
        .insert(header::ORIGIN, HeaderValue::from_static(ORIGIN));
    if preflight {
        *req.method_mut() = Method::OPTIONS;
        req.headers_mut().insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        req.headers_mut().insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type"),
        );
    }
    req
}

/// What the edge does: decide, then answer the preflight or add the headers to the handler's response.
fn ours(cors: &Cors, req: Request<()>) -> Response<()> {
    let mut res = Response::new(());
    let add = match cors.decide(req.method(), req.headers()) {
        CorsDecision::Allowed(h) | CorsDecision::Preflight(h) => h,
        CorsDecision::NotCors | CorsDecision::Refused => HeaderMap::new(),
    };
    let headers = res.headers_mut();
    for (k, v) in add {
        if let Some(k) = k {
            headers.append(k, v);
        }
    }
    res
}

fn cors(c: &mut Criterion) {
    let ours_cors = Cors::new(&CorsConfig {
        allow_origins: vec![ORIGIN.parse().unwrap()],
        allow_credentials: false,
    });
    let mut theirs = CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-bff-partial"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600))
        .layer(tower::service_fn(|_req: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(())))
        }));
    let mut g = c.benchmark_group("cors");
    for (name, preflight) in [("allowed_get", false), ("preflight", true)] {
        g.bench_function(format!("{name}/ours"), |b| {
            b.iter_batched(
                || request(preflight),
                |req| ours(&ours_cors, req),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}/tower_http_cors_layer"), |b| {
            b.iter_batched(
                || request(preflight),
                |req| {
                    theirs
                        .call(req)
                        .now_or_never()
                        .expect("ready at once")
                        .expect("infallible")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn rfc3339(c: &mut Criterion) {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let with_time = |t: std::time::SystemTime| {
        time::OffsetDateTime::from(t)
            .format(&format)
            .expect("formats")
    };
    let t = std::time::UNIX_EPOCH + Duration::from_millis(1_795_000_215_123);
    assert_eq!(bff_edge::__rfc3339(t), with_time(t), "the same text");
    let mut g = c.benchmark_group("rfc3339");
    g.bench_function("ours", |b| b.iter(|| bff_edge::__rfc3339(black_box(t))));
    g.bench_function("time_crate", |b| b.iter(|| with_time(black_box(t))));
    g.finish();
}

criterion_group!(benches, cors, rfc3339);
criterion_main!(benches);
