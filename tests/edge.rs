//! The embedded gateway against hostile input. Every refused request is checked twice: its status, and that
//! the downstream stub saw nothing.

use bff::prelude::*;
use bff_testkit::{Rendezvous, Stub, TestBff};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value, kid: Option<&str>, pem: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(String::from);
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIXTURES}/{pem}")).unwrap()).unwrap();
    encode(&h, &claims, &key).unwrap()
}

fn good_claims() -> Value {
    json!({"sub": "user-1", "iss": "https://id.example.com", "aud": "web", "exp": now() + 600, "nbf": now() - 10})
}

fn b64(v: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in v.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A BFF with a public route, a JWT route, an API-key route, a Rust route reading claims, and CORS.
async fn bff(stub: &Stub, edge_extra: &str) -> TestBff {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let keys = std::env::temp_dir().join(format!("bff-edge-keys-{}-{n}", std::process::id()));
    std::fs::write(&keys, "mobile-key-1\n").unwrap();
    let cfg = format!(
        r#"
[edge]
request_timeout = "3s"
max_body = "1KiB"
{edge_extra}

[edge.cors]
allow_origins = ["https://app.example.com"]
allow_credentials = true

[edge.auth.jwt]
issuer = "https://id.example.com"
audiences = ["web"]
jwks_file = "{FIXTURES}/jwks.json"
algorithms = ["RS256"]

[edge.auth.api_keys]
keys_file = "{keys}"

[services.svc]
endpoints = ["{ep}"]

[[routes]]
path = "/public/{{id}}"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{{id}}"

[[routes]]
path = "/private/{{id}}"
auth = "jwt"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{{id}}"

[[routes]]
path = "/mobile/{{id}}"
auth = "api_key"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{{id}}"

[[routes]]
method = "POST"
path = "/upload"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/up"
"#,
        keys = keys.display(),
        ep = stub.endpoint()
    );
    let mut config = bff::config::Loader::new()
        .with_env(HashMap::new())
        .load_str(&cfg, bff::config::Format::Toml)
        .unwrap()
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    let app = App::new(config).unwrap().route_with(
        "/me",
        Policy::new().auth(AuthKind::Jwt),
        get(|claims: Claims| async move { Json(json!({"sub": claims.sub()})) }),
    );
    TestBff::start_app(app).await
}

async fn stub() -> Stub {
    let s = Stub::start().await;
    for id in ["1", "up", "2"] {
        s.on(&format!("/x/{id}")).json(json!({"ok": id}));
    }
    s
}

async fn status_with_bearer(bff: &TestBff, path: &str, token: &str) -> u16 {
    bff.client()
        .get(bff.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_valid_jwt_passes_and_claims_reach_the_handler() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let t = token(good_claims(), Some("k1"), "rsa.pem");
    assert_eq!(status_with_bearer(&bff, "/private/1", &t).await, 200);
    assert_eq!(s.hits("/x/1"), 1);
    let res = bff
        .client()
        .get(bff.url("/me"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"sub": "user-1"}));
}

#[tokio::test]
async fn every_bad_jwt_is_401_and_reaches_nothing() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let claims = |patch: Value| {
        let mut c = good_claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = token(good_claims(), Some("k1"), "rsa.pem");
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[1] = b64(serde_json::to_vec(&claims(json!({"sub": "admin"})))
        .unwrap()
        .as_slice());
    let tampered = parts.join(".");
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&good_claims()).unwrap())
    );
    // HS256 signed with the RSA public key as the secret: the classic algorithm-confusion attack.
    let hs = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let secret = std::fs::read(format!("{FIXTURES}/rsa.pub.pem")).unwrap();
        encode(&h, &good_claims(), &EncodingKey::from_secret(&secret)).unwrap()
    };
    let cases = [
        (
            "expired",
            token(claims(json!({"exp": now() - 120})), Some("k1"), "rsa.pem"),
        ),
        (
            "not yet valid",
            token(claims(json!({"nbf": now() + 600})), Some("k1"), "rsa.pem"),
        ),
        (
            "wrong issuer",
            token(
                claims(json!({"iss": "https://evil.example.com"})),
                Some("k1"),
                "rsa.pem",
            ),
        ),
        (
            "wrong audience",
            token(claims(json!({"aud": "mobile"})), Some("k1"), "rsa.pem"),
        ),
        ("another key", token(good_claims(), Some("k1"), "other.pem")),
        ("unknown kid", token(good_claims(), Some("k9"), "rsa.pem")),
        ("alg none", none),
        ("hs256 with the public key", hs),
        ("tampered payload", tampered),
        ("garbage", "not.a.token".into()),
        ("empty", String::new()),
    ];
    for (what, t) in &cases {
        assert_eq!(
            status_with_bearer(&bff, "/private/1", t).await,
            401,
            "{what}"
        );
    }
    let res = bff.get("/private/1").await;
    assert_eq!(res.status(), 401, "missing");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert_eq!(s.requests().len(), 0, "no bad token reached the service");
}

#[tokio::test]
async fn api_keys_are_checked() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let c = bff.client();
    assert_eq!(
        c.get(bff.url("/mobile/1")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.get(bff.url("/mobile/1"))
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(s.requests().len(), 0);
    assert_eq!(
        c.get(bff.url("/mobile/1"))
            .header("x-api-key", "mobile-key-1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_bypass_the_rate_limit() {
    let s = stub().await;
    let bff = bff(
        &s,
        "[edge.rate_limit]\nper_second = 1\nburst = 2\nkey = \"client_ip\"",
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let res = bff
            .client()
            .get(bff.url("/public/1"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            retry_after = res.headers().get("retry-after").cloned();
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(s.hits("/x/1"), 2);
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let c = bff.client();
    let res = c
        .get(bff.url("/public/1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    assert!(res.headers().get_all("vary").iter().any(|v| v == "origin"));
    for foreign in ["https://evil.example.com", "null"] {
        let res = c
            .get(bff.url("/public/1"))
            .header("origin", foreign)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{foreign}");
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }
    let pre = c
        .request(reqwest::Method::OPTIONS, bff.url("/private/1"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-headers"],
        "authorization"
    );
    assert!(
        pre.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(
        s.hits("/x/1"),
        1,
        "only the allowed simple request reached the service"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_plain_and_chunked() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let c = bff.client();
    let res = c
        .post(bff.url("/upload"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "body_too_large"
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let res = c
        .post(bff.url("/upload"))
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "chunked");
    assert_eq!(s.requests().len(), 0);
    let ok = c
        .post(bff.url("/upload"))
        .body(vec![b'x'; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter(items)
}

/// Writes raw bytes to the BFF and returns what came back until the connection closed or 2 s passed.
async fn raw(bff: &TestBff, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(bff.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(resp: &str) -> Vec<u16> {
    resp.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| resp[i + 9..i + 12].parse().ok())
        .collect()
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let s = stub().await;
    let bff = bff(&s, "max_headers = 20").await;
    let mut req = String::from("GET /public/1 HTTP/1.1\r\nhost: x\r\n");
    for i in 0..30 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    assert_eq!(statuses(&raw(&bff, req.as_bytes()).await), [431]);
    let big = format!(
        "GET /public/1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_eq!(statuses(&raw(&bff, big.as_bytes()).await), [431]);
    assert_eq!(s.requests().len(), 0);
}

#[tokio::test]
async fn request_smuggling_never_reaches_the_service() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    let cl_te = b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /public/2 HTTP/1.1\r\nhost: x\r\n\r\n";
    // Transfer-Encoding wins over Content-Length (RFC 9112 6.3) and the connection is closed after the
    // answer: the bytes after the chunked body are never read as a second request.
    let out = raw(&bff, cl_te).await;
    let st = statuses(&out);
    assert!(st.len() <= 1, "{out}");
    assert!(
        st.is_empty() || st[0] == 400 || out.contains("connection: close"),
        "{out}"
    );
    let two_cl = b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcdeGET /public/2 HTTP/1.1\r\nhost: x\r\n\r\n";
    let out = raw(&bff, two_cl).await;
    let st = statuses(&out);
    assert!(st.is_empty() || st[0] == 400, "{out}");
    assert_eq!(s.hits("/x/2"), 0, "no smuggled second request downstream");
    assert!(s.hits("/x/up") <= 1, "the framed request at most once");
}

#[tokio::test]
async fn path_tricks_never_reach_a_private_route_without_auth() {
    let s = stub().await;
    let bff = bff(&s, "").await;
    for path in [
        "/public/../private/1",
        "/public/%2e%2e/private/1",
        "/public/%2E%2E/private/1",
        "/public/.%2e/private/1",
        "//private/1",
        "/public%2f..%2fprivate/1",
        "/public/..%2fprivate/1",
        "/private%2f1",
        "/public/..\\private/1",
        "/%70rivate/1",
    ] {
        let out = raw(
            &bff,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let st = statuses(&out);
        assert!(
            matches!(st.as_slice(), [400] | [401] | [404]),
            "{path}: {out}"
        );
    }
    assert_eq!(
        s.requests().len(),
        0,
        "{:?}",
        s.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
    );
    // The normalised public path still works.
    let out = raw(
        &bff,
        b"GET /x/../public//1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), [200], "{out}");
}

#[tokio::test]
async fn crlf_cannot_be_injected_into_a_downstream_request() {
    let s = stub().await;
    s.on("/x/a\r\nx-injected: yes").json(json!({}));
    let bff = bff(&s, "").await;
    let out = raw(
        &bff,
        b"GET /public/a%0d%0ax-injected:%20yes HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let st = statuses(&out);
    assert!(matches!(st.as_slice(), [200] | [400] | [502]), "{out}");
    for r in s.requests() {
        assert!(!r.headers.contains_key("x-injected"), "{r:?}");
        assert!(
            r.uri.contains("%0D%0A"),
            "the value stays encoded: {}",
            r.uri
        );
    }
}

#[tokio::test]
async fn load_shedding_is_immediate_while_admitted_requests_complete() {
    let s = Stub::start().await;
    // The two admitted requests are held by the stub until the test joins as the third.
    let gate = Rendezvous::new(3);
    s.on("/x/1").rendezvous(&gate).json(json!({"ok": 1}));
    let bff = bff(&s, "max_concurrency = 2").await;
    let url = bff.url("/public/1");
    let c = bff.client().clone();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(c.clone().get(url.clone()).send()))
        .collect();
    assert!(bff_testkit::eventually(|| async { gate.arrived() == 2 }).await);
    let shed = bff.get("/public/1").await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(
        shed.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    gate.join().await;
    for h in held {
        assert_eq!(
            h.await.unwrap().unwrap().status(),
            200,
            "admitted requests complete"
        );
    }
    assert_eq!(s.hits("/x/1"), 2);
}

#[tokio::test]
async fn slow_clients_are_cut_by_the_header_timeout_while_others_are_served() {
    let s = stub().await;
    let bff = bff(&s, "header_timeout = \"300ms\"").await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(bff.addr()).await.unwrap();
        c.write_all(b"GET /public/1 HTTP/1.1\r\n").await.unwrap();
        slow.push(c);
    }
    // Trickle a byte on each, every 50 ms, while normal requests go through.
    let trickle = tokio::spawn(async move {
        let mut closed = 0;
        for _ in 0..40 {
            closed = 0;
            for c in slow.iter_mut() {
                if c.write_all(b"x").await.is_err() {
                    closed += 1;
                    continue;
                }
                let mut buf = [0u8; 256];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await
                    && (n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"))
                {
                    closed += 1;
                }
            }
            if closed == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed
    });
    for _ in 0..10 {
        assert_eq!(bff.get("/public/1").await.status(), 200);
    }
    assert_eq!(
        trickle.await.unwrap(),
        20,
        "every slow connection was closed"
    );
}

#[tokio::test]
async fn jwks_url_keys_rotate_without_a_restart() {
    let idp = Stub::start().await;
    idp.on("/jwks.json")
        .body(std::fs::read(format!("{FIXTURES}/jwks.json")).unwrap());
    let s = stub().await;
    let jwks = format!(
        "jwks_url = \"http://{}/jwks.json\"\njwks_refresh = \"200ms\"",
        idp.endpoint()
    );
    let bff = jwks_url_bff(&jwks, &s).await;
    let k1 = token(good_claims(), Some("k1"), "rsa.pem");
    let ok = bff_testkit::eventually(|| async {
        status_with_bearer(&bff, "/private/1", &k1).await == 200
    })
    .await;
    assert!(ok, "keys fetched from the URL");
    let k2 = token(good_claims(), Some("k2"), "other.pem");
    assert_eq!(
        status_with_bearer(&bff, "/private/1", &k2).await,
        401,
        "k2 is not published yet"
    );
    idp.on("/jwks.json")
        .body(std::fs::read(format!("{FIXTURES}/jwks-rotated.json")).unwrap());
    let rotated = bff_testkit::eventually(|| async {
        status_with_bearer(&bff, "/private/1", &k2).await == 200
    })
    .await;
    assert!(rotated, "the new kid is picked up without a restart");
}

/// A BFF whose `/private/{id}` needs a JWT verified with keys from `jwks` (the `jwks_url` lines of
/// `[edge.auth.jwt]`).
async fn jwks_url_bff(jwks: &str, s: &Stub) -> TestBff {
    let cfg = format!(
        r#"
[edge.auth.jwt]
issuer = "https://id.example.com"
audiences = ["web"]
{jwks}
algorithms = ["RS256"]

[services.svc]
endpoints = ["{ep}"]

[[routes]]
path = "/private/{{id}}"
auth = "jwt"
[[routes.backends]]
name = "x"
service = "svc"
path = "/x/{{id}}"
"#,
        ep = s.endpoint()
    );
    TestBff::start(&cfg).await
}

/// The same with the keys fetched over HTTPS (an identity provider with the test PKI's server
/// certificate), verified by the `jwks_ca` file `ca` of the test PKI.
async fn https_jwks_bff(idp: &Stub, s: &Stub, ca: &str) -> TestBff {
    let jwks = format!(
        "jwks_url = \"https://{}/jwks.json\"\njwks_ca = \"{TLS}/{ca}\"",
        idp.endpoint()
    );
    jwks_url_bff(&jwks, s).await
}

const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

async fn https_idp() -> Stub {
    let idp = Stub::start_tls(
        std::path::Path::new(&format!("{TLS}/server.pem")),
        std::path::Path::new(&format!("{TLS}/server.key")),
        None,
    )
    .await;
    idp.on("/jwks.json")
        .body(std::fs::read(format!("{FIXTURES}/jwks.json")).unwrap());
    idp
}

#[tokio::test]
async fn jwks_url_over_https_is_verified_by_jwks_ca() {
    let idp = https_idp().await;
    let s = stub().await;
    let bff = https_jwks_bff(&idp, &s, "ca.pem").await;
    let k1 = token(good_claims(), Some("k1"), "rsa.pem");
    let fetched = bff_testkit::eventually(|| async {
        status_with_bearer(&bff, "/private/1", &k1).await == 200
    })
    .await;
    assert!(fetched, "keys fetched over HTTPS");
    assert!(idp.hits("/jwks.json") >= 1);

    // A CA that did not sign the provider's certificate: the keys are never fetched, tokens refused.
    let idp = https_idp().await;
    let untrusted = https_jwks_bff(&idp, &s, "client.pem").await;
    assert_eq!(status_with_bearer(&untrusted, "/private/1", &k1).await, 401);
    // The fetch was tried and its handshake failed (the event the assertion below needs).
    assert!(bff_testkit::eventually(|| async { idp.refused_handshakes() >= 1 }).await);
    assert_eq!(
        idp.hits("/jwks.json"),
        0,
        "no request after a failed handshake"
    );
}

/// The `x-forwarded-for` the service received for a request sent with `xff`.
async fn forwarded_for_sent(edge_extra: &str, xff: &str) -> String {
    let s = stub().await;
    let bff = bff(&s, edge_extra).await;
    let res = bff
        .client()
        .get(bff.url("/public/1"))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(res.status(), 200);
    let sent = &s.requests()[0].headers;
    assert_eq!(sent["x-forwarded-proto"], "http");
    sent["x-forwarded-for"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn forwarded_for_carries_only_the_believed_chain() {
    // Untrusted peer: only the peer, whatever the client claims.
    assert_eq!(forwarded_for_sent("", "6.6.6.6").await, "127.0.0.1");
    // Trusted peer (a proxy): the client it saw and the proxy; what the client put left of that is
    // dropped.
    assert_eq!(
        forwarded_for_sent(
            "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
            "6.6.6.6, 198.51.100.7, 10.1.1.1"
        )
        .await,
        "198.51.100.7, 10.1.1.1, 127.0.0.1"
    );
}

#[tokio::test]
async fn an_ipv4_mapped_trusted_proxy_matches_and_never_panics() {
    for proxies in ["[\"::ffff:127.0.0.1\"]", "[\"::ffff:127.0.0.0/120\"]"] {
        assert_eq!(
            forwarded_for_sent(
                &format!("trusted_proxies = {proxies}"),
                "6.6.6.6, 198.51.100.7"
            )
            .await,
            "198.51.100.7, 127.0.0.1",
            "{proxies}"
        );
    }
}

#[tokio::test]
async fn ipv6_clients_of_one_64_share_a_rate_limit_bucket() {
    let s = stub().await;
    // The test client is a trusted proxy, so x-forwarded-for says who the client is.
    let bff = bff(
        &s,
        "trusted_proxies = [\"127.0.0.1\"]\n[edge.rate_limit]\nper_second = 1\nburst = 1\nkey = \"client_ip\"",
    )
    .await;
    let status_from = |client: &'static str| {
        let req = bff
            .client()
            .get(bff.url("/public/1"))
            .header("x-forwarded-for", client);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_from("2001:db8:1:2::1").await, 200);
    // Another address of the same /64: the same bucket, already empty.
    assert_eq!(status_from("2001:db8:1:2:ffff::9").await, 429);
    // Another /64: a bucket of its own.
    assert_eq!(status_from("2001:db8:1:3::1").await, 200);
    assert_eq!(s.hits("/x/1"), 2);
}

#[tokio::test]
async fn a_header_and_client_ip_key_keeps_other_clients_out_of_a_bucket() {
    let s = stub().await;
    let bff = bff(
        &s,
        "trusted_proxies = [\"127.0.0.1\"]\n[edge.rate_limit]\nper_second = 1\nburst = 1\nkey = \"header:x-tenant+client_ip\"",
    )
    .await;
    let status_from = |client: &'static str, tenant: &'static str| {
        let req = bff
            .client()
            .get(bff.url("/public/1"))
            .header("x-forwarded-for", client)
            .header("x-tenant", tenant);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_from("192.0.2.1", "acme").await, 200);
    assert_eq!(status_from("192.0.2.1", "acme").await, 429);
    // The header is part of the key: another tenant from the same address has its own bucket.
    assert_eq!(status_from("192.0.2.1", "other").await, 200);
    // Another client sending the same tenant drains nothing of 192.0.2.1's bucket.
    assert_eq!(status_from("192.0.2.2", "acme").await, 200);
}
