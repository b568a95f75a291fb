//! The BFF as a security perimeter, black-box over loopback: connections that send nothing or too little
//! are closed within the header timeout, idle HTTP/2 connections after the idle timeout; HTTP/2 gets the
//! header limits of HTTP/1; a client that does not read its response is cut after the write timeout and
//! counts against `max_concurrency` until then; a client that goes away mid-request leaves nothing in
//! flight; a panicking handler answers 500 and nothing else; the admin
//! listener refuses rebound hosts, browser pages and POSTs without its token.

use bff::prelude::*;
use bff_testkit::{Stub, TestBff};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

/// Far longer than any configured timeout here: a wait that reaches it means the server never acted.
const OUTER: Duration = Duration::from_secs(20);

/// A response body far larger than what the kernel buffers on loopback (send buffer at most 4 MiB, the
/// receive buffer of a client that never reads stays at its initial size).
const BIG: usize = 32 << 20;

/// An app with `[edge]` settings and no services; the access log off.
fn app(bff_extra: &str, edge: &str) -> App {
    let text = format!(
        "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{bff_extra}\n[telemetry]\naccess_log = false\n[edge]\n{edge}\n"
    );
    let config = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(&text, bff::config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    App::new(config).unwrap()
}

/// `/small` answers "ok"; `/big` tells `started` and answers [`BIG`] bytes.
fn with_routes(app: App, started: Arc<Notify>) -> App {
    let big = Bytes::from(vec![b'x'; BIG]);
    app.route("/small", get(|| async { "ok" })).route(
        "/big",
        get(move || {
            let (big, started) = (big.clone(), started.clone());
            async move {
                started.notify_one();
                big
            }
        }),
    )
}

/// Waits until `/metrics` has this line (gauges follow tasks that end on their own).
async fn wait_for_metric(bff: &TestBff, line: &str) {
    let line = format!("\n{line}\n");
    tokio::time::timeout(OUTER, async {
        while !bff.admin_text("/metrics").await.contains(&line) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never seen in /metrics: {line}"));
}

/// `f`, which the server must let finish within [`OUTER`].
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(OUTER, f)
        .await
        .expect("the server answers within OUTER")
}

/// Waits until the server closes the connection (EOF or reset), reading whatever it sends.
async fn closed_by_server(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(OUTER, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_within_the_header_timeout() {
    let bff = TestBff::start_app(app("", "header_timeout = \"300ms\"")).await;
    let silent = TcpStream::connect(bff.addr()).await.unwrap();
    closed_by_server(silent).await;
    assert_eq!(bff.get("/nope").await.status(), 404, "others are served");
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed_within_the_header_timeout() {
    let bff = TestBff::start_app(app("", "header_timeout = \"300ms\"")).await;
    let mut partial = TcpStream::connect(bff.addr()).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_by_server(partial).await;
}

/// An h2c (prior knowledge) connection to the BFF and the task driving it, which ends when the server
/// closes the connection.
async fn h2c(
    bff: &TestBff,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(bff.addr()).await.unwrap();
    let (send, conn) = within(hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(stream),
    ))
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

fn h2_get(bff: &TestBff, path: &str) -> http::request::Builder {
    http::Request::get(bff.url(path)).version(http::Version::HTTP_2)
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is long: only the idle timeout can close the connection here.
    let edge = "header_timeout = \"60s\"\nidle_timeout = \"300ms\"";
    let bff = TestBff::start_app(with_routes(app("", edge), Arc::default())).await;
    let (mut send, conn) = h2c(&bff).await;
    let res = within(send.send_request(h2_get(&bff, "/small").body(Empty::new()).unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    // No stream open from now on.
    tokio::time::timeout(OUTER, conn)
        .await
        .expect("the server closes the idle HTTP/2 connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_h2c_request_with_too_many_headers_is_431() {
    let edge = "max_headers = 20\nmax_header_bytes = \"8KiB\"";
    let bff = TestBff::start_app(with_routes(app("", edge), Arc::default())).await;
    let (mut send, _conn) = h2c(&bff).await;
    let mut req = h2_get(&bff, "/small");
    for i in 0..150 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let res = within(send.send_request(req.body(Empty::new()).unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    // A head over max_header_bytes (8 KiB here; hyper's own default is 16 KiB), sent as
    // SETTINGS_MAX_HEADER_LIST_SIZE: 431 from HTTP/2 itself.
    let big = h2_get(&bff, "/small")
        .header("x-big", "a".repeat(12_000))
        .body(Empty::new())
        .unwrap();
    assert_eq!(within(send.send_request(big)).await.unwrap().status(), 431);
    // Within the limits, the same connection is served.
    let res = within(send.send_request(h2_get(&bff, "/small").body(Empty::new()).unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Sends `GET path` on a raw connection and reads nothing.
async fn slow_reader(bff: &TestBff, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(bff.addr()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_after_the_write_timeout() {
    let started = Arc::new(Notify::new());
    let edge = "write_timeout = \"300ms\"";
    let bff = TestBff::start_app(with_routes(app("", edge), started.clone())).await;
    let mut slow = slow_reader(&bff, "/big").await;
    within(started.notified()).await;
    // The response is in flight until the server gives up on writing it.
    wait_for_metric(&bff, "bff_inflight_requests 0").await;
    // What the kernel had buffered still arrives, then the end: never the whole body.
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 20];
    tokio::time::timeout(OUTER, async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await
    .expect("the connection was closed");
    assert!(
        got < BIG,
        "the connection was cut before the body was written: got {got} bytes"
    );
}

#[tokio::test]
async fn an_h2c_client_that_keeps_its_window_closed_is_cut_after_the_write_timeout() {
    let started = Arc::new(Notify::new());
    let edge = "write_timeout = \"300ms\"";
    let bff = TestBff::start_app(with_routes(app("", edge), started.clone())).await;
    let (mut send, conn) = h2c(&bff).await;
    let res = within(send.send_request(h2_get(&bff, "/big").body(Empty::new()).unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The body is not read: the stream's window (hyper's client: 2 MiB) stays closed once it is full, while
    // the socket itself stays readable and writable (pings are answered).
    let body = res.into_body();
    tokio::time::timeout(OUTER, conn)
        .await
        .expect("the server cuts the connection of a stalled stream")
        .ok();
    drop(body);
    wait_for_metric(&bff, "bff_inflight_requests 0").await;
}

#[tokio::test]
async fn a_slow_reader_counts_against_max_concurrency_until_it_is_gone() {
    let started = Arc::new(Notify::new());
    let edge = "max_concurrency = 1\nwrite_timeout = \"60s\"";
    let bff = TestBff::start_app(with_routes(app("", edge), started.clone())).await;
    let slow = slow_reader(&bff, "/big").await;
    within(started.notified()).await;
    // The handler is done, its body is not written out: the only permit is still held.
    let shed = bff.get("/small").await;
    assert_eq!(shed.status(), 503);
    assert_eq!(
        shed.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    drop(slow);
    // The client went away: its response is dropped and the permit released.
    tokio::time::timeout(OUTER, async {
        while bff.get("/small").await.status() != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the permit is released once the slow reader is gone");
}

/// A client that goes away while its handler waits on a downstream call: the request's future is
/// dropped with everything it held, and `bff_inflight_requests` is back at 0.
#[tokio::test]
async fn a_client_gone_mid_request_leaves_nothing_in_flight() {
    let stub = Stub::start().await;
    stub.on("/slow").hang();
    let services = format!(
        "[services.users]\nendpoints = [\"{}\"]\ntimeout = \"60s\"\n",
        stub.endpoint()
    );
    let app = app(&services, "request_timeout = \"60s\"").route(
        "/wait",
        get(|mesh: Mesh| async move {
            let _ = mesh.service("users").get(bff::path!("/slow")).send().await;
            "answered"
        }),
    );
    let bff = TestBff::start_app(app).await;
    let client = slow_reader(&bff, "/wait").await;
    tokio::time::timeout(OUTER, async {
        while stub.hits("/slow") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the handler called the service");
    wait_for_metric(&bff, "bff_inflight_requests 1").await;
    drop(client);
    wait_for_metric(&bff, "bff_inflight_requests 0").await;
}

async fn boom() -> &'static str {
    panic!("secret detail 42 of a handler");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
    let app = app("", "max_concurrency = 1")
        .route("/boom", get(boom))
        .route("/small", get(|| async { "ok" }));
    let bff = TestBff::start_app(app).await;
    let res = bff
        .client()
        .get(bff.url("/boom"))
        .header("x-request-id", "rid-panic")
        .send()
        .await
        .expect("an answer, not a closed connection");
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "rid-panic");
    let text = res.text().await.unwrap();
    assert!(!text.contains("secret"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert_eq!(body["error"]["request_id"], "rid-panic");
    // The only permit and the in-flight gauge were released.
    assert_eq!(bff.get("/small").await.text().await.unwrap(), "ok");
    wait_for_metric(&bff, "bff_handler_panics_total 1").await;
    wait_for_metric(&bff, "bff_inflight_requests 0").await;
}

/// A request on the admin listener with these headers.
async fn admin(
    bff: &TestBff,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = bff.client().request(method, bff.admin_url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_listener_answers_only_its_own_hosts() {
    let bff = TestBff::start_app(app("admin_hosts = [\"bff-admin.internal\"]", "")).await;
    let port = bff.admin_addr().port();
    // What a page of a rebound name (evil.example resolving to 127.0.0.1) sends.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        "localhost.evil.example".into(),
    ] {
        let (status, body) =
            admin(&bff, http::Method::GET, "/admin/config", &[("host", &host)]).await;
        assert_eq!(status, 421, "{host}");
        assert_eq!(body["error"]["code"], "misdirected_request");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "10.1.2.3:9901".into(),
        "BFF-admin.internal:9901".into(),
    ] {
        let (status, _) = admin(&bff, http::Method::GET, "/healthz", &[("host", &host)]).await;
        assert_eq!(status, 200, "{host}");
    }
}

#[tokio::test]
async fn the_admin_listener_refuses_posts_from_browser_pages() {
    let bff = TestBff::start_app(app("", "")).await;
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[("origin", "null"), ("content-type", "text/plain")][..],
    ] {
        let (status, body) = admin(&bff, http::Method::POST, "/admin/reload", headers).await;
        assert_eq!(status, 403, "{headers:?}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // Without them (curl, scripts), a BFF on loopback without a token takes the POST: 409 here because it
    // was not started from a file.
    let (status, _) = admin(&bff, http::Method::POST, "/admin/reload", &[]).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_configured_admin_token_is_required_for_posts_only() {
    let token = "0123456789abcdef-admin";
    let bff = TestBff::start_app(app(&format!("admin_token = \"{token}\""), "")).await;
    let reload = |headers: &'static [(&'static str, &'static str)]| {
        admin(&bff, http::Method::POST, "/admin/reload", headers)
    };
    assert_eq!(reload(&[]).await.0, 401);
    assert_eq!(
        reload(&[("authorization", "Bearer wrong-token-0123456")])
            .await
            .0,
        401
    );
    assert_eq!(
        reload(&[("authorization", "Basic 0123456789abcdef-admin")])
            .await
            .0,
        401
    );
    let (status, body) = reload(&[("authorization", "Bearer 0123456789abcdef-admin")]).await;
    assert_eq!(status, 409, "the token lets the POST through: {body}");
    // Reads stay open to probes and scrapers; the token never shows.
    let config = bff.admin_json("/admin/config").await;
    assert_eq!(config["config"]["bff"]["admin_token"], "<redacted>");
    assert!(!config.to_string().contains(token));
    assert_eq!(admin(&bff, http::Method::GET, "/healthz", &[]).await.0, 200);
}
