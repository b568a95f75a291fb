//! Documented config keys proven live: each test sets a key to a value other than its default and asserts
//! what only that value gives, so that a BFF ignoring the key fails it. tests/config_keys.toml maps every key
//! of docs/config-reference.md to the tests that prove it (crates/bff-config/tests/reference.rs checks it).

use bff::prelude::*;
use bff_testkit::{Stub, TestBff};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const JWT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt");
const SECRET: &str = "a-shared-hmac-secret-of-32-bytes-or-more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({"sub": sub, "iss": "https://id.example.com", "aud": "web", "exp": exp})
}

/// A token signed with the test RSA key (`kid` k1 of fixtures/jwt/jwks.json) and `alg`.
fn rsa_token(alg: Algorithm, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some("k1".into());
    let pem = std::fs::read(format!("{JWT}/rsa.pem")).unwrap();
    encode(&h, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn hs256_token(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

/// `[services.svc]` over `endpoints` with `service_extra`, then `rest` (routes and other tables). A route
/// `GET /r/{id}` -> `GET /x/{id}` is there unless `rest` has routes of its own.
fn config(endpoints: &[String], service_extra: &str, rest: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let route = if rest.contains("[[routes]]") {
        ""
    } else {
        "[[routes]]\npath = \"/r/{id}\"\n[[routes.backends]]\nname = \"x\"\nservice = \"svc\"\npath = \"/x/{id}\"\n"
    };
    format!(
        "[services.svc]\nendpoints = [{}]\n{service_extra}\n{rest}\n{route}",
        eps.join(", ")
    )
}

async fn status_with(bff: &TestBff, path: &str, header: (&str, &str)) -> u16 {
    bff.client()
        .get(bff.url(path))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn error_code(res: reqwest::Response) -> Value {
    res.json::<Value>().await.unwrap()["error"]["code"].clone()
}

/// `edge.request_timeout = "300ms"` (default 15 s): the downstream is told at most 300 ms are left, and
/// the client gets 504 `deadline_exceeded` although the service's own timeout is 20 s.
#[tokio::test]
async fn request_timeout_is_the_whole_requests_deadline() {
    let stub = Stub::start().await;
    stub.on("/x/1").hang();
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "timeout = \"20s\"",
        "[edge]\nrequest_timeout = \"300ms\"",
    ))
    .await;
    let res = bff.get("/r/1").await;
    assert_eq!(res.status(), 504);
    assert_eq!(error_code(res).await, "deadline_exceeded");
    let left: u64 = stub.requests()[0].headers["x-bff-deadline-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 300, "deadline sent downstream: {left} ms");
}

/// `edge.max_header_bytes = "8KiB"` (default 32 KiB): a 12 KiB head is refused with 431, a 4 KiB one
/// served.
#[tokio::test]
async fn max_header_bytes_refuses_a_head_over_it() {
    let stub = Stub::start().await;
    stub.on("/x/1").json(json!(1));
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "",
        "[edge]\nmax_header_bytes = \"8KiB\"",
    ))
    .await;
    let head = |n: usize| {
        format!(
            "GET /r/1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(n)
        )
    };
    let addr = bff.addr();
    let status = |req: String| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out)[9..12].to_string()
    };
    assert_eq!(status(head(4 * 1024)).await, "200");
    assert_eq!(status(head(12 * 1024)).await, "431");
    assert_eq!(stub.hits("/x/1"), 1);
}

/// A JWT route under `[edge.auth.jwt]` with `jwt_extra`.
async fn jwt_bff(stub: &Stub, jwt_extra: &str, edge_extra: &str) -> TestBff {
    TestBff::start(&config(
        &[stub.endpoint()],
        "",
        &format!(
            r#"
[edge]
{edge_extra}
[edge.auth.jwt]
issuer = "https://id.example.com"
audiences = ["web"]
jwks_file = "{JWT}/jwks.json"
{jwt_extra}
[[routes]]
path = "/r/{{id}}"
auth = "jwt"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{{id}}"
"#
        ),
    ))
    .await
}

async fn stub_ok() -> Stub {
    let stub = Stub::start().await;
    stub.on("/x/1").json(json!(1));
    stub
}

async fn bearer(bff: &TestBff, token: &str) -> u16 {
    status_with(bff, "/r/1", ("authorization", &format!("Bearer {token}"))).await
}

/// `algorithms = ["RS384"]`: an RS384 token of the JWKS key passes, an RS256 one of the same key does not.
#[tokio::test]
async fn jwt_algorithms_is_an_allow_list() {
    let stub = stub_ok().await;
    let bff = jwt_bff(&stub, "algorithms = [\"RS384\"]", "").await;
    let c = claims("u", now() + 600);
    assert_eq!(bearer(&bff, &rsa_token(Algorithm::RS384, &c)).await, 200);
    assert_eq!(bearer(&bff, &rsa_token(Algorithm::RS256, &c)).await, 401);
    assert_eq!(stub.hits("/x/1"), 1);
}

/// `leeway = "300s"`: a token expired two minutes ago passes (without it, refused: tests/edge.rs
/// every_bad_jwt_is_401_and_reaches_nothing, "expired").
#[tokio::test]
async fn jwt_leeway_tolerates_that_much_clock_skew() {
    let stub = stub_ok().await;
    let bff = jwt_bff(&stub, "algorithms = [\"RS256\"]\nleeway = \"300s\"", "").await;
    let expired = claims("u", now() - 120);
    assert_eq!(
        bearer(&bff, &rsa_token(Algorithm::RS256, &expired)).await,
        200
    );
    let long_expired = claims("u", now() - 900);
    assert_eq!(
        bearer(&bff, &rsa_token(Algorithm::RS256, &long_expired)).await,
        401
    );
}

/// `secret`: an HS256 token signed with it passes; one signed with another secret does not.
#[tokio::test]
async fn jwt_secret_verifies_hmac_tokens() {
    let stub = stub_ok().await;
    let bff = jwt_bff(
        &stub,
        &format!("algorithms = [\"HS256\"]\nsecret = \"{SECRET}\""),
        "",
    )
    .await;
    let c = claims("u", now() + 600);
    assert_eq!(bearer(&bff, &hs256_token(SECRET, &c)).await, 200);
    let other = "another-hmac-secret-also-32-bytes-long!";
    assert_eq!(bearer(&bff, &hs256_token(other, &c)).await, 401);
    assert_eq!(stub.hits("/x/1"), 1);
}

/// `key = "jwt_sub"`: one bucket per token subject, so a second user from the same address is not
/// limited by the first (with the default `client_ip` key it would be).
#[tokio::test]
async fn a_jwt_sub_rate_limit_has_a_bucket_per_subject() {
    let stub = stub_ok().await;
    let bff = jwt_bff(
        &stub,
        &format!("algorithms = [\"HS256\"]\nsecret = \"{SECRET}\""),
        "[edge.rate_limit]\nper_second = 1\nburst = 1\nkey = \"jwt_sub\"",
    )
    .await;
    let ada = hs256_token(SECRET, &claims("ada", now() + 600));
    let bob = hs256_token(SECRET, &claims("bob", now() + 600));
    assert_eq!(bearer(&bff, &ada).await, 200);
    assert_eq!(bearer(&bff, &ada).await, 429);
    assert_eq!(bearer(&bff, &bob).await, 200);
}

/// A listening port whose accept queue is full: a connect to it gets no answer (the SYN is dropped), so
/// only a timeout ends it. The returned streams keep the queue full.
async fn unanswered_port() -> (
    std::net::SocketAddr,
    Vec<TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // With a backlog of 0 one connection fits; the next connects are left unanswered.
    while let Ok(Ok(s)) =
        tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
    {
        held.push(s);
    }
    (addr, held, listener)
}

/// `connect_timeout = "10s"` (default 200 ms): a connect that gets no answer is still waiting when the
/// attempt's 500 ms timeout ends it (504 timeout), instead of failing as a connect error (502) at 200 ms.
#[tokio::test]
async fn connect_timeout_bounds_the_connect_only() {
    let (addr, _held, _listener) = unanswered_port().await;
    let bff = TestBff::start(&config(
        &[addr.to_string()],
        "connect_timeout = \"10s\"\ntimeout = \"500ms\"",
        "",
    ))
    .await;
    let res = bff.get("/r/1").await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 504, "{body}");

    let bff = TestBff::start(&config(
        &[addr.to_string()],
        "connect_timeout = \"100ms\"\ntimeout = \"10s\"",
        "",
    ))
    .await;
    let res = bff.get("/r/1").await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 502, "a connect error: {body}");
}

/// `pool_idle_timeout = "200ms"` (default 90 s): the BFF closes its kept connection to the service once
/// it has been idle that long (with the default the service sees no close within the minute), and the
/// next call opens a new one.
#[tokio::test]
async fn pool_idle_timeout_closes_an_idle_kept_connection() {
    use bff_e2e::h1::{Close, Server};
    let svc = Server::start(Close::Never).await;
    let bff = TestBff::start(&config(
        std::slice::from_ref(&svc.addr),
        "pool_idle_timeout = \"200ms\"",
        "",
    ))
    .await;
    assert_eq!(bff.get("/r/1").await.status(), 200);
    assert!(
        svc.closed_by_client_within(1, Duration::from_secs(60))
            .await,
        "the idle connection was not closed within 60 s"
    );
    assert_eq!(bff.get("/r/2").await.status(), 200);
    assert_eq!(*svc.connections.lock().unwrap(), 2);
    assert_eq!(*svc.requests.lock().unwrap(), ["GET /x/1", "GET /x/2"]);
}

/// `timeout = "3s"` (default 1 s): an answer that takes 1.5 s is waited for (with the default it would
/// time out: 504).
#[tokio::test]
async fn the_service_timeout_is_each_attempts_timeout() {
    let stub = Stub::start().await;
    stub.on("/x/1")
        .delay(Duration::from_millis(1500))
        .json(json!("late"));
    let bff = TestBff::start(&config(&[stub.endpoint()], "timeout = \"3s\"", "")).await;
    assert_eq!(bff.get("/r/1").await.status(), 200);
}

/// `max_response = "1KiB"` (default 8 MiB): a 2 KiB body is a malformed response (502), a 512 B one is
/// served.
#[tokio::test]
async fn max_response_refuses_a_larger_body() {
    let stub = Stub::start().await;
    stub.on("/x/small").json(json!("a".repeat(512)));
    stub.on("/x/big").json(json!("a".repeat(2048)));
    let bff = TestBff::start(&config(&[stub.endpoint()], "max_response = \"1KiB\"", "")).await;
    assert_eq!(bff.get("/r/small").await.status(), 200);
    assert_eq!(bff.get("/r/big").await.status(), 502);
}

/// A port with nothing listening.
fn closed_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// `required = false`: a service with a health check and nothing listening does not hold `/readyz` back
/// (a required one does: tests/observability.rs
/// readiness_waits_for_a_service_that_answered_and_unreached_endpoints_are_unknown).
#[tokio::test]
async fn a_service_not_required_does_not_hold_readiness_back() {
    let stub = stub_ok().await;
    let text = config(
        &[stub.endpoint()],
        "",
        &format!(
            "[services.down]\nendpoints = [\"{}\"]\nrequired = false\n[services.down.health_check]\ninterval = \"1h\"",
            closed_port()
        ),
    );
    let bff = TestBff::start(&text).await;
    let ready = bff
        .client()
        .get(bff.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The same service required: not ready.
    let bff = TestBff::start(&text.replace("required = false", "required = true")).await;
    let ready = bff
        .client()
        .get(bff.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

/// `hedge_after = "p50"`: once latencies are known, an attempt slower than the median is hedged to the
/// other endpoint, so a hanging endpoint costs no request (without hedging, those started there would time
/// out after 2 s: 504).
#[tokio::test]
async fn hedge_after_a_percentile_hedges_once_latencies_are_known() {
    let hanging = Stub::start().await;
    let fast = Stub::start().await;
    for s in [&hanging, &fast] {
        s.on("/x/warm").json(json!("warm"));
    }
    hanging.on("/x/1").hang();
    fast.on("/x/1").json(json!("fast"));
    let bff = TestBff::start(&config(
        &[hanging.endpoint(), fast.endpoint()],
        "load_balancer = \"round_robin\"\ntimeout = \"2s\"\nhedge_after = \"p50\"",
        "",
    ))
    .await;
    // 20 latencies make the percentile known.
    for _ in 0..30 {
        assert_eq!(bff.get("/r/warm").await.status(), 200);
    }
    for _ in 0..6 {
        let res = bff.get("/r/1").await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    // Round robin sends a first attempt (or a hedge) there at least every other request.
    assert!(hanging.hits("/x/1") >= 1);
}

/// `hash_key = "header:x-user"` with `ring_hash`: each user's requests stay on one endpoint, and the users
/// spread over the endpoints.
#[tokio::test]
async fn a_header_hash_key_keeps_each_user_on_one_endpoint() {
    let stubs = [
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    ];
    for s in &stubs {
        s.on("/x/1").json(json!(s.endpoint()));
    }
    let eps: Vec<String> = stubs.iter().map(Stub::endpoint).collect();
    let bff = TestBff::start(&config(
        &eps,
        "load_balancer = \"ring_hash\"\nhash_key = \"header:x-user\"",
        "[[routes]]\npath = \"/r/{id}\"\nforward_headers = [\"x-user\"]\n[[routes.backends]]\nname = \"x\"\nservice = \"svc\"\npath = \"/x/{id}\"",
    ))
    .await;
    let mut owners = std::collections::BTreeSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let res = bff
                .client()
                .get(bff.url("/r/1"))
                .header("x-user", &user)
                .send()
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap();
            seen.insert(body["x"].as_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "{user} stays on one endpoint: {seen:?}");
        owners.extend(seen);
    }
    assert!(owners.len() >= 2, "users spread: {owners:?}");
}

/// `least_request`: with a call hanging on the fast endpoint, every call goes to the slow but idle one
/// (by requests in flight; `p2c_ewma`, the default, would stay on the fast one, `round_robin` alternate).
#[tokio::test]
async fn least_request_picks_the_endpoint_with_fewer_calls_in_flight() {
    let slow = Stub::start().await;
    let fast = Stub::start().await;
    slow.on("/x/1")
        .delay(Duration::from_millis(100))
        .json(json!("slow"));
    fast.on("/x/1").json(json!("fast"));
    slow.on("/x/h").json(json!("slow"));
    fast.on("/x/h").hang();
    let bff = Arc::new(
        TestBff::start(&config(
            &[slow.endpoint(), fast.endpoint()],
            "load_balancer = \"least_request\"\ntimeout = \"30s\"",
            "[edge]\nrequest_timeout = \"30s\"",
        ))
        .await,
    );
    // Both endpoints answer once, so that their latencies are known.
    for _ in 0..50 {
        if slow.hits("/x/1") > 0 && fast.hits("/x/1") > 0 {
            break;
        }
        bff.get("/r/1").await;
    }
    assert!(slow.hits("/x/1") > 0 && fast.hits("/x/1") > 0);
    // A call that hangs on the fast endpoint (those landing on the slow one are answered).
    let mut hanging = Vec::new();
    let deadline = tokio::time::Instant::now() + bff_testkit::REQUEST_DEADLINE;
    while fast.hits("/x/h") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no call reached the fast endpoint"
        );
        let bff = bff.clone();
        hanging.push(tokio::spawn(async move { bff.get("/r/h").await.status() }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = slow.hits("/x/1");
    for _ in 0..10 {
        assert_eq!(bff.get("/r/1").await.status(), 200);
    }
    assert_eq!(slow.hits("/x/1") - before, 10, "all to the idle endpoint");
    for h in hanging {
        h.abort();
    }
}

fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls")).join(name)
}

/// `server_name` is the name verified in the service's certificate (issued for `users.internal` and
/// 127.0.0.1): right, served; wrong, refused, although the address it is called at is in the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_name_is_the_name_verified() {
    let stub = Stub::start_tls(&tls_fixture("server.pem"), &tls_fixture("server.key"), None).await;
    stub.on("/x/1").json(json!(1));
    let with = |name: &str| {
        config(
            &[stub.endpoint()],
            &format!(
                "[services.svc.tls]\nca = \"{}\"\nserver_name = \"{name}\"",
                tls_fixture("ca.pem").display()
            ),
            "",
        )
    };
    let bff = TestBff::start(&with("users.internal")).await;
    assert_eq!(bff.get("/r/1").await.status(), 200);
    let bff = TestBff::start(&with("other.internal")).await;
    assert_eq!(bff.get("/r/1").await.status(), 502);
    assert_eq!(stub.hits("/x/1"), 1);
}

/// `max_attempts = 4` (default 3) against an endpoint that always fails, with budget to spare: exactly
/// four calls.
#[tokio::test]
async fn max_attempts_is_the_number_of_calls() {
    let stub = Stub::start().await;
    stub.on("/x/1").status(503);
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "[services.svc.retry]\nmax_attempts = 4\non = [\"503\"]\nbackoff = \"1ms\"\nmax_backoff = \"2ms\"\nmin_per_second = 100",
        "",
    ))
    .await;
    assert_eq!(bff.get("/r/1").await.status(), 502);
    assert_eq!(stub.hits("/x/1"), 4);
}

/// `budget_ratio = 0.5` (default 0.2), no minimum: ten requests earn five retries.
#[tokio::test]
async fn budget_ratio_is_the_share_of_requests_retries_may_add() {
    let stub = stub_ok().await;
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "[services.svc.retry]\nbudget_ratio = 0.5\nmin_per_second = 0",
        "",
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(bff.get("/r/1").await.status(), 200);
    }
    let services: Value = bff.admin_json("/admin/services").await;
    assert_eq!(services[0]["retry_budget_remaining"], 5, "{services}");
}

/// The endpoint's `healthy` in `/admin/services`.
async fn healthy(bff: &TestBff) -> bool {
    bff.admin_json("/admin/services").await[0]["endpoints"][0]["healthy"] == true
}

/// `health_check.path = "/ready"`: that path is probed (and `/healthz`, failing here, never is).
#[tokio::test]
async fn health_checks_probe_the_configured_path() {
    let stub = stub_ok().await;
    stub.on("/ready").json(json!("ok"));
    stub.on("/healthz").status(500);
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "[services.svc.health_check]\npath = \"/ready\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 1",
        "",
    ))
    .await;
    // (A timeout a probe delayed by a loaded machine still meets: the endpoint stays in.)
    stub.wait_for_hits("/ready", 3).await;
    assert_eq!(stub.hits("/healthz"), 0);
    assert!(healthy(&bff).await);
}

/// `health_check.timeout = "50ms"` (default 1 s): a probe answered in 300 ms fails, so the endpoint is
/// taken out.
#[tokio::test]
async fn a_probe_slower_than_the_health_check_timeout_fails() {
    let stub = stub_ok().await;
    stub.on("/healthz")
        .delay(Duration::from_millis(300))
        .json(json!("ok"));
    let bff = TestBff::start(&config(
        &[stub.endpoint()],
        "[services.svc.health_check]\ninterval = \"1s\"\ntimeout = \"50ms\"\nunhealthy_threshold = 1",
        "",
    ))
    .await;
    let out = bff_testkit::eventually(|| async { !healthy(&bff).await }).await;
    assert!(out, "the slow probe timed out");
}

/// A route's `rate_limit` limits that route only; `max_body` is that route's body limit; `{*rest}`
/// captures the rest of the path.
#[tokio::test]
async fn route_rate_limit_max_body_and_catch_all_paths() {
    let stub = Stub::start().await;
    for p in ["/x/1", "/x/up", "/f/a%2Fb%2Fc"] {
        stub.on(p).json(json!(p));
    }
    let routes = r#"
[[routes]]
path = "/limited/{id}"
rate_limit = { per_second = 1, burst = 2 }
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{id}"

[[routes]]
path = "/free/{id}"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{id}"

[[routes]]
method = "POST"
path = "/small"
max_body = "16B"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/up"

[[routes]]
method = "POST"
path = "/large"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/up"

[[routes]]
path = "/files/{*rest}"
[[routes.backends]]
name = "x"
service = "svc"
path = "/f/{rest}"
"#;
    let bff = TestBff::start(&config(&[stub.endpoint()], "", routes)).await;
    let mut limited = Vec::new();
    for _ in 0..3 {
        limited.push(bff.get("/limited/1").await.status().as_u16());
    }
    assert_eq!(limited, [200, 200, 429]);
    for _ in 0..3 {
        assert_eq!(bff.get("/free/1").await.status(), 200);
    }

    let post = |path: &str| bff.client().post(bff.url(path)).body("x".repeat(32)).send();
    assert_eq!(post("/small").await.unwrap().status(), 413);
    assert_eq!(post("/large").await.unwrap().status(), 200);
    assert_eq!(stub.hits("/x/up"), 1);

    let res = bff.get("/files/a/b/c").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["x"], "/f/a%2Fb%2Fc");
}

/// `shutdown_grace = "2s"` (default 20 s), on paused time: a drain with a request that never finishes
/// ends two seconds after it began.
#[tokio::test(start_paused = true)]
async fn shutdown_grace_bounds_the_drain() {
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let app = App::from_toml(
        "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n[edge]\nrequest_timeout = \"1h\"\n[telemetry]\naccess_log = false\n",
    )
    .unwrap()
    .route(
        "/stuck",
        get(move || {
            let s = s.clone();
            async move {
                s.notify_one();
                std::future::pending::<()>().await;
            }
        }),
    );
    let server = app.bind().await.unwrap();
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    client
        .write_all(b"GET /stuck HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;
    let handle = server.shutdown_handle();
    let t0 = tokio::time::Instant::now();
    handle.shutdown();
    server.run().await;
    let drained = t0.elapsed();
    assert!(
        drained >= Duration::from_secs(2) && drained < Duration::from_secs(3),
        "the drain took {drained:?}"
    );
}
