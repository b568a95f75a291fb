//! What downstream services see of a call through the embedded mesh.

use bff_e2e::config;
use bff_testkit::{Stub, TestBff};
use serde_json::json;

const ROUTE: &str = r#"
[[routes]]
path = "/api/p/{id}"
timeout = "1500ms"
forward_headers = ["accept-language"]

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
"#;

#[tokio::test]
async fn downstream_sees_request_id_child_trace_and_deadline_but_no_secrets() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"ok": true}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = bff
        .client()
        .get(bff.url("/api/p/1"))
        .header("x-request-id", "req-abc-1")
        .header("traceparent", parent)
        .header("tracestate", "vendor=x")
        .header("authorization", "Bearer secret-token")
        .header("cookie", "session=secret")
        .header("connection", "x-private")
        .header("x-private", "do-not-pass")
        .header("accept-language", "de-CH")
        .header("x-other", "not listed")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-abc-1");

    let reqs = users.requests();
    assert_eq!(reqs.len(), 1);
    let h = &reqs[0].headers;
    assert_eq!(h["x-request-id"], "req-abc-1");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert_ne!(
        &tp[36..52],
        "00f067aa0ba902b7",
        "a child span, not the client's"
    );
    assert_eq!(h["tracestate"], "vendor=x");
    let left: u64 = h["x-bff-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(left > 0 && left <= 1500, "deadline left: {left}");
    assert_eq!(h["accept-language"], "de-CH", "listed in forward_headers");
    for never in ["authorization", "cookie", "x-private", "x-other"] {
        assert!(!h.contains_key(never), "{never} must not reach the service");
    }
    assert_eq!(h["user-agent"], "e2e-bff");
}

#[tokio::test]
async fn a_new_trace_and_request_id_are_started_when_the_client_has_none() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let res = bff.get("/api/p/1").await;
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    let h = &users.requests()[0].headers;
    assert_eq!(h["x-request-id"], rid.as_str());
    assert_eq!(h["traceparent"].len(), 55);
}

#[tokio::test]
async fn h2c_services_are_called_over_http2() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"via": "h2"}));
    let cfg = config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    )
    .replace(
        "[services.users]\n",
        "[services.users]\nprotocol = \"h2c\"\n",
    );
    let bff = TestBff::start(&cfg).await;
    let res = bff.get("/api/p/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["user"]["via"],
        "h2"
    );
    assert_eq!(users.requests()[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn connections_to_a_service_are_pooled() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(bff.get("/api/p/1").await.status(), 200);
    }
    assert_eq!(users.requests().len(), 5);
    assert_eq!(users.requests()[0].version, http::Version::HTTP_11);
    assert_eq!(
        users.connections(),
        1,
        "five sequential calls share one keep-alive connection"
    );
}

#[tokio::test]
async fn the_public_listener_speaks_h2c() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"n": 1}));
    let bff = TestBff::start(&config(
        &users.endpoint(),
        &users.endpoint(),
        &users.endpoint(),
        ROUTE,
    ))
    .await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = client
        .get(bff.url("/api/p/1").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["user"]["n"],
        1
    );
}

/// An h2c service that refuses requests as a server going away does: it counts every stream it sees
/// (method and path), and answers `{"n": <stream number>}`.
mod refusing {
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Clone, Copy)]
    pub(crate) enum Refuse {
        /// Resets the first stream of all with `REFUSED_STREAM`.
        FirstStream,
        /// On its first connection, answers the first request's HEADERS with a GOAWAY whose last
        /// stream id is 0 (no stream processed) and closes the connection.
        FirstConnection,
        /// Its first connection sends its SETTINGS, then nothing more: no answer, no PING ACK, no
        /// FIN, as a peer that vanished behind a firewall.
        SilentFirstConnection,
    }

    pub(crate) struct Server {
        pub(crate) addr: String,
        /// `METHOD PATH` of every stream the server received, refused ones included.
        pub(crate) streams: Arc<Mutex<Vec<String>>>,
        pub(crate) connections: Arc<Mutex<usize>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub(crate) async fn start(refuse: Refuse) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (s, c) = (streams.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut c = c.lock().unwrap();
                    *c += 1;
                    *c
                };
                let streams = s.clone();
                tokio::spawn(async move {
                    if n == 1 && matches!(refuse, Refuse::FirstConnection) {
                        go_away_at_first_headers(socket, &streams).await;
                    } else if n == 1 && matches!(refuse, Refuse::SilentFirstConnection) {
                        silent(socket).await;
                    } else {
                        serve(socket, refuse, streams).await;
                    }
                });
            }
        });
        Server {
            addr,
            streams,
            connections,
            task,
        }
    }

    async fn serve(socket: TcpStream, refuse: Refuse, streams: Arc<Mutex<Vec<String>>>) {
        let Ok(mut conn) = h2::server::handshake(socket).await else {
            return;
        };
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            let n = {
                let mut s = streams.lock().unwrap();
                s.push(format!("{} {}", req.method(), req.uri().path()));
                s.len()
            };
            if n == 1 && matches!(refuse, Refuse::FirstStream) {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                continue;
            }
            let head = http::Response::builder()
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            if let Ok(mut body) = respond.send_response(head, false) {
                let _ = body.send_data(Bytes::from(format!("{{\"n\":{n}}}")), true);
            }
        }
    }

    /// Sends the server's SETTINGS, then only reads, until the client closes the connection.
    async fn silent(mut socket: TcpStream) {
        let _ = socket.write_all(&[0u8, 0, 0, 0x4, 0, 0, 0, 0, 0]).await;
        let mut buf = [0u8; 4096];
        while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    }

    /// Reads frames up to the first HEADERS, then writes the server's SETTINGS and a GOAWAY(last stream
    /// 0, NO_ERROR) and closes: a server that stopped taking streams just as the request was sent.
    async fn go_away_at_first_headers(mut socket: TcpStream, streams: &Mutex<Vec<String>>) {
        let mut preface = [0u8; 24];
        if socket.read_exact(&mut preface).await.is_err() {
            return;
        }
        loop {
            let mut head = [0u8; 9];
            if socket.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if socket.read_exact(&mut payload).await.is_err() {
                return;
            }
            if head[3] == 0x1 {
                streams.lock().unwrap().push("refused by GOAWAY".into());
                break;
            }
        }
        let settings = [0u8, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let go_away = [0u8, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let _ = socket.write_all(&settings).await;
        let _ = socket.write_all(&go_away).await;
        let _ = socket.flush().await;
        // Closes once the client has seen it and gone (or after a while).
        let mut rest = [0u8; 1024];
        let wait = async { while socket.read(&mut rest).await.is_ok_and(|n| n > 0) {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
    }
}

/// A POST backend over h2c with a retry policy that never repeats a POST: only the resend of a request
/// the service provably did not process lets the call succeed.
const H2_POST_ROUTE: &str = r#"
[[routes]]
path = "/api/p/{id}"

[[routes.backends]]
name = "user"
service = "users"
method = "POST"
path = "/users/{id}"
"#;

fn h2c_config(addr: &str) -> String {
    hair_trigger(
        config(addr, addr, addr, H2_POST_ROUTE).replace(
            "[services.users]\n",
            "[services.users]\nprotocol = \"h2c\"\n",
        ),
        "max_attempts = 3\non = [\"reset\"]\nbackoff = \"1ms\"",
    )
}

/// `cfg` (of [`config`]) with `retry` as the keys of `users`' retry policy, a breaker of `users` that
/// opens after one failure, and outlier detection that ejects after one: a resend counted as a failure
/// would fail the next call.
fn hair_trigger(cfg: String, retry: &str) -> String {
    cfg.replace(
        "[services.orders]\n",
        &format!(
            "[services.users.retry]\n{retry}\n\n[services.users.circuit_breaker]\nmin_requests = 1\n\
             failure_rate = 0.01\n\n[services.users.outlier_detection]\nconsecutive_failures = 1\n\n\
             [services.orders]\n"
        ),
    )
}

#[tokio::test]
async fn a_stream_the_service_refuses_is_sent_again_at_once_whatever_its_method() {
    let users = refusing::start(refusing::Refuse::FirstStream).await;
    let bff = TestBff::start(&h2c_config(&users.addr)).await;
    let res = bff.get("/api/p/7").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["user"]["n"],
        2
    );
    assert_eq!(
        *users.streams.lock().unwrap(),
        ["POST /users/7", "POST /users/7"],
        "refused once, sent again once"
    );
    assert_eq!(resends(&bff).await, 1);
    // Not a failure of the endpoint: the breaker (open after one failure) and outlier detection
    // (ejecting after one) let the next call through.
    assert_eq!(bff.get("/api/p/8").await.status(), 200);
    assert_eq!(users.streams.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_request_above_the_last_stream_of_a_goaway_is_sent_again_on_a_new_connection() {
    let users = refusing::start(refusing::Refuse::FirstConnection).await;
    let bff = TestBff::start(&h2c_config(&users.addr)).await;
    let res = bff.get("/api/p/7").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["user"]["n"],
        2
    );
    assert_eq!(
        *users.streams.lock().unwrap(),
        ["refused by GOAWAY", "POST /users/7"]
    );
    assert_eq!(*users.connections.lock().unwrap(), 2);
    assert_eq!(bff.get("/api/p/8").await.status(), 200);
}

#[tokio::test]
async fn an_h2c_connection_that_stops_answering_is_closed_by_its_ping_and_replaced() {
    let users = refusing::start(refusing::Refuse::SilentFirstConnection).await;
    let cfg = config(&users.addr, &users.addr, &users.addr, ROUTE).replace(
        "[services.users]\n",
        "[services.users]\nprotocol = \"h2c\"\n",
    );
    let bff = TestBff::start(&cfg).await;
    // Every call times out on the silent connection (the service's 2 s timeout) until the PING sent
    // after 10 s without a frame goes unanswered for 5 s and closes it; the next call opens a new one.
    // Without the PING the calls would time out on it for ever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut failed = 0;
    loop {
        let res = bff.get("/api/p/7").await;
        if res.status() == 200 {
            break;
        }
        // 504: timed out on the silent connection; 502: in flight when the PING closed it and sent
        // again on a new connection that failed too (the GET is sent again once).
        assert!(
            matches!(res.status().as_u16(), 502 | 504),
            "a call on the silent connection fails: {}",
            res.status()
        );
        failed += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "still failing after 60 s: the silent connection was never closed"
        );
    }
    assert!(failed > 0, "the first call went to the silent connection");
    assert_eq!(*users.connections.lock().unwrap(), 2);
}

/// A GET and a POST backend of a service whose breaker opens after one failure and whose outlier
/// detection ejects after one, and whose retry policy never repeats a POST (and repeats nothing for a
/// GET, `max_attempts = 1`): only the resend of a request whose connection closed lets a call succeed.
fn closing_config(addr: &str) -> String {
    let cfg = config(
        addr,
        addr,
        addr,
        r#"
[[routes]]
path = "/api/get/{id}"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"

[[routes]]
path = "/api/post/{id}"
method = "POST"

[[routes.backends]]
name = "user"
service = "users"
method = "POST"
path = "/users/{id}"
"#,
    );
    hair_trigger(cfg, "max_attempts = 1")
}

#[tokio::test]
async fn an_idempotent_request_on_a_kept_connection_the_service_closed_is_sent_again_once() {
    let users = bff_e2e::h1::Server::start(bff_e2e::h1::Close::SecondRequest { of_first: 1 }).await;
    let bff = TestBff::start(&closing_config(&users.addr)).await;
    assert_eq!(bff.get("/api/get/1").await.status(), 200);
    // On the kept connection, which the service closes without an answer; then on a new one.
    let res = bff.get("/api/get/2").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["user"]["n"],
        3
    );
    assert_eq!(
        *users.requests.lock().unwrap(),
        ["GET /users/1", "GET /users/2", "GET /users/2"]
    );
    assert_eq!(*users.connections.lock().unwrap(), 2);
    assert_eq!(resends(&bff).await, 1);
    // Not a failure of the endpoint: the breaker and outlier detection let the next call through.
    assert_eq!(bff.get("/api/get/3").await.status(), 200);
}

/// `bff_upstream_resends_total` of the service `users`.
async fn resends(bff: &TestBff) -> u64 {
    bff_e2e::service_counter(bff, "bff_upstream_resends_total", "users").await
}

#[tokio::test]
async fn a_post_on_a_kept_connection_the_service_closed_is_not_sent_again() {
    let users = bff_e2e::h1::Server::start(bff_e2e::h1::Close::SecondRequest { of_first: 1 }).await;
    let bff = TestBff::start(&closing_config(&users.addr)).await;
    let post = |path: &'static str| bff.client().post(bff.url(path)).send();
    assert_eq!(post("/api/post/1").await.unwrap().status(), 200);
    // The service may have processed it: a 502, and the POST went out once.
    let res = post("/api/post/2").await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        *users.requests.lock().unwrap(),
        ["POST /users/1", "POST /users/2"]
    );
    assert_eq!(resends(&bff).await, 0);
}

#[tokio::test]
async fn the_request_sent_again_goes_on_a_new_connection_not_another_closing_one() {
    let users = bff_e2e::h1::Server::start(bff_e2e::h1::Close::SecondRequest { of_first: 2 }).await;
    let bff = TestBff::start(&closing_config(&users.addr)).await;
    // Two calls at once: two kept connections, both of which the service closes at their next request.
    let (one, two) = tokio::join!(bff.get("/api/get/1"), bff.get("/api/get/2"));
    assert_eq!((one.status().as_u16(), two.status().as_u16()), (200, 200));
    assert_eq!(*users.connections.lock().unwrap(), 2);
    // The next call meets one of them closing; sent again through the pool it would meet the other.
    let res = bff.get("/api/get/3").await;
    assert_eq!(res.status(), 200);
    assert_eq!(*users.connections.lock().unwrap(), 3);
    let requests = users.requests.lock().unwrap().clone();
    assert_eq!(requests[2..], ["GET /users/3", "GET /users/3"]);
}
