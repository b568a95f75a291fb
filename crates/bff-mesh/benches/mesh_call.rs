//! One downstream call through the mesh vs a bare pooled hyper client, to the same in-process HTTP/1.1
//! server on loopback. The difference of the two is what the mesh adds per call (balancer, deadline,
//! headers, classification, policies).
//!
//! Run with: `cargo bench -p bff-mesh --bench mesh_call`

use bff_config::{Format, Loader};
use bff_mesh::Mesh;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use std::{collections::HashMap, convert::Infallible, net::SocketAddr};
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"id":"7","profile":{"name":"Ada","favoriteCategory":"books"}}"#;

async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn mesh(addr: SocketAddr, extra: &str) -> Mesh {
    let text = format!("[services.s]\nendpoints = [\"{addr}\"]\n{extra}\n");
    let config = Loader::new()
        .with_env(HashMap::new())
        .load_str(&text, Format::Toml)
        .unwrap();
    Mesh::from_config(&config).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(server());
    let uri: hyper::Uri = format!("http://{addr}/users/7").parse().unwrap();
    let bare: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let plain = mesh(addr, "load_balancer = \"round_robin\"");
    let policies = mesh(
        addr,
        r#"load_balancer = "p2c_ewma"
[services.s.retry]
[services.s.circuit_breaker]
[services.s.outlier_detection]"#,
    );

    let mut g = c.benchmark_group("downstream_call");
    g.bench_function("bare_hyper_client", |b| {
        b.to_async(&rt).iter(|| async {
            let res = bare
                .request(Request::get(uri.clone()).body(Full::default()).unwrap())
                .await
                .unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        })
    });
    g.bench_function("mesh_round_robin", |b| {
        b.to_async(&rt).iter(|| async {
            plain
                .service("s")
                .get("/users/7")
                .send()
                .await
                .unwrap()
                .body
        })
    });
    g.bench_function("mesh_p2c_retry_breaker_outlier", |b| {
        b.to_async(&rt).iter(|| async {
            policies
                .service("s")
                .get("/users/7")
                .send()
                .await
                .unwrap()
                .body
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
