//! The property the `config` fuzz target checks (fuzz/fuzz_targets/config.rs), shared with the test that runs
//! its seed corpus (crates/bff/tests/fuzz_seeds.rs). Not part of the API.

use crate::App;
use axum::{body::Body, extract::ConnectInfo};
use bff_config::{Format, Loader, Source};
use std::{collections::HashMap, net::SocketAddr, path::Path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// The HMAC secret `${JWT_SECRET}` expands to (38 bytes).
pub const JWT_SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

/// An HS256 token signed with [`JWT_SECRET`]: `iss` `https://id.example.com`, `aud` `web`, `sub` `user-1`,
/// valid until 2100. Sent with the request, so that a config trusting that secret authenticates it.
pub const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIiwiYXVkIjoid2ViIiwic3ViIjoidXNlci0xIiwiZXhwIjo0MTAyNDQ0ODAwLCJuYmYiOjAsImlhdCI6MH0.SIhbw-ikt9tSec68tmiPDdYQ4UrRt9Ym2fov2ieekF0";

/// The environment the config is loaded with: `${STUB}` is the address of a downstream that answers every
/// request with a JSON object, `${JWT_SECRET}` [`JWT_SECRET`], `${ADMIN_TOKEN}` a token long enough.
fn env(stub: SocketAddr) -> HashMap<String, String> {
    [
        ("STUB", stub.to_string()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("ADMIN_TOKEN", "fuzz-admin-token-0123456789".to_string()),
        ("EMPTY", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A downstream on `127.0.0.1:0` answering every request (whatever its method or path) with one JSON object,
/// then closing the connection.
async fn stub() -> SocketAddr {
    const BODY: &str = r#"{"id":"1","name":"n","items":[{"id":1,"tags":["a"]},{"id":2}],"nested":{"a":{"b":[1,2,3]}},"n":1.5e3,"ok":true,"none":null}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fuzz stub");
    let addr = listener.local_addr().expect("the stub's address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = conn.write_all(res.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// The path of a request to a route template: `{name}` is `1`, `{*name}` is `a/b`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| {
            if s.starts_with("{*") {
                "a/b"
            } else if s.starts_with('{') {
                "1"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Loads `data` as a TOML config (relative files from `dir`, the environment of [`env`]) and, when it
/// passes what `bff check` checks (load and validation, building the app and its routers), starts what
/// `bff run` starts besides its listeners (the listener's TLS, health checks, discovery, the JWKS refresh)
/// and serves in-process one request to each config route (the first 8: its method, a JSON body, a bearer
/// token [`JWT`], an API key, an `Origin`, an `x-forwarded-for` chain, from an IPv4-mapped IPv6 peer), or
/// to `/` when there is none; none may be answered 500. Then it lets the background work run for 10 s and
/// asks the admin router for `/readyz`, `/admin/services`, `/admin/config` and `/metrics`. Returns why the
/// config did not pass, if it did not. Panics (the fuzzer's crash) when a step panics or a request gets
/// 500; errors are expected.
///
/// Run it on a current-thread runtime with paused time (`start_paused`), so that every timeout of the
/// config (request deadline, connect timeout, probes, discovery) passes at once instead of in real time.
pub async fn check_config(data: &[u8], dir: &Path) -> Result<(), crate::StartError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| crate::StartError::build("the config's text".to_string(), e))?;
    let stub = stub().await;
    let source = Source {
        name: "fuzz.toml".into(),
        text: text.into(),
        format: Format::Toml,
        dir: Some(dir.to_path_buf()),
        path: None,
    };
    let config = Loader::new().with_env(env(stub)).load(&source)?;
    // A request to each config route (the first 8), or to `/`.
    let mut requests: Vec<(String, String)> = config
        .routes
        .iter()
        .take(8)
        .map(|r| (r.method.method().as_str().to_string(), concrete(&r.path)))
        .collect();
    if requests.is_empty() {
        requests.push(("GET".into(), "/".into()));
    }
    let app = App::new(config)?;
    let built = app.build()?;
    if let Some(tls) = &app.config().bff.tls {
        crate::server::listener_tls(tls)?;
    }
    let _tasks = app.mesh().start_tasks();
    let _jwks = app.jwt_refresher();

    for (method, path) in &requests {
        // A route path no request can have (the validator let it through): nothing to serve.
        let Ok(mut req) = http::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header("authorization", format!("Bearer {JWT}"))
            .header("x-api-key", "fuzz-api-key-0123456789")
            .header("origin", "https://app.example.com")
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.2, ::ffff:10.0.0.3")
            .header("x-client", "c1")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"a":1}"#))
        else {
            continue;
        };
        let peer: SocketAddr = "[::ffff:10.0.0.1]:40000".parse().expect("a socket address");
        req.extensions_mut().insert(ConnectInfo(peer));
        let res = built.public.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await;
        // A config that passed the check never makes the BFF fail on its own (500): errors are the
        // request's (4xx) or the services' (502, 503, 504).
        assert_ne!(
            status,
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: {body:?}"
        );
    }
    // Probes, discovery and refreshes run for a while (at once, on paused time).
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let state = crate::server::ServerState {
        draining: Default::default(),
        version: Default::default(),
        reload: None,
    };
    let admin = built.admin.layer(axum::Extension(state));
    for path in ["/readyz", "/admin/services", "/admin/config", "/metrics"] {
        let req = http::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .expect("a request");
        let res = admin.clone().oneshot(req).await.expect("infallible");
        let _ = axum::body::to_bytes(res.into_body(), usize::MAX).await;
    }
    Ok(())
}
