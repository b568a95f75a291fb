//! mTLS to a service: a TLS stub that requires client certificates accepts the BFF and refuses a client
//! without one; rotating the BFF's certificate files is picked up without a restart.

use bff_testkit::{Stub, TestBff};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde_json::json;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls")).join(name)
}

/// The log of this test binary (WARN and above), captured from the first call on.
fn logs() -> bff_testkit::CapturedLog {
    static LOG: std::sync::OnceLock<bff_testkit::CapturedLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| bff_testkit::CapturedLog::install(tracing::Level::WARN))
        .clone()
}

fn der(name: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(fixture(name))
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_client_certificate_and_rotation_without_restart() {
    let stub = Stub::start_tls(
        &fixture("server.pem"),
        &fixture("server.key"),
        Some(&fixture("ca.pem")),
    )
    .await;
    stub.on("/users/1").json(json!({"name": "Ada"}));
    // The BFF's certificate files live in a folder the test rotates.
    let dir = std::env::temp_dir().join(format!("bff-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("client.pem"), dir.join("bff.pem")).unwrap();
    std::fs::copy(fixture("client.key"), dir.join("bff.key")).unwrap();
    let cfg = format!(
        r#"
[bff]
name = "web-bff"
[telemetry]
access_log = false
[services.users]
endpoints = ["{ep}"]
[services.users.tls]
ca = "{ca}"
cert = "{dir}/bff.pem"
key = "{dir}/bff.key"
server_name = "users.internal"
[[routes]]
path = "/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
"#,
        ep = stub.endpoint(),
        ca = fixture("ca.pem").display(),
        dir = dir.display()
    );
    let bff = TestBff::start(&cfg).await;
    let res = bff.get("/u/1").await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        stub.requests()[0].client_cert.as_deref(),
        Some(der("client.pem").as_slice())
    );

    // A client without a certificate is refused by the same service.
    let bare = TestBff::start(&cfg.replace(
        &format!(
            "cert = \"{}/bff.pem\"\nkey = \"{}/bff.key\"\n",
            dir.display(),
            dir.display()
        ),
        "",
    ))
    .await;
    assert_eq!(bare.get("/u/1").await.status(), 502);
    // TLS 1.3: the client may see the refusal before the stub has counted it.
    let refused = bff_testkit::eventually(|| async { stub.refused_handshakes() >= 1 }).await;
    assert!(
        refused,
        "the stub refused the handshake without a client certificate"
    );
    assert_eq!(stub.requests().len(), 1);

    // Rotation: new files, picked up by new connections without a restart.
    std::fs::copy(fixture("client2.key"), dir.join("bff.key")).unwrap();
    std::fs::copy(fixture("client2.pem"), dir.join("bff.pem")).unwrap();
    let rotated = der("client2.pem");
    let seen = bff_testkit::eventually(|| async {
        assert_eq!(bff.get("/u/1").await.status(), 200);
        stub.requests().last().and_then(|r| r.client_cert.clone()) == Some(rotated.clone())
    })
    .await;
    assert!(seen, "the rotated certificate is presented");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_speaks_tls_when_configured() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let cfg = format!(
        r#"
[bff.tls]
cert = "{cert}"
key = "{key}"
[services.users]
endpoints = ["{ep}"]
[[routes]]
path = "/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
"#,
        cert = fixture("server.pem").display(),
        key = fixture("server.key").display(),
        ep = users.endpoint()
    );
    let bff = TestBff::start(&cfg).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_all_versions()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let url = format!("https://127.0.0.1:{}/u/1", bff.addr().port());
    let res = tokio::time::timeout(
        bff_testkit::REQUEST_DEADLINE,
        client.get(url.parse().unwrap()),
    )
    .await
    .expect("an answer within the deadline")
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2, "ALPN chose HTTP/2");
    // The service learns that the client came over TLS.
    assert_eq!(users.requests()[0].headers["x-forwarded-proto"], "https");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["user"]["name"],
        "Ada"
    );
    // Cleartext on a TLS listener gets no HTTP answer.
    assert!(
        bff.client()
            .get(format!("http://127.0.0.1:{}/u/1", bff.addr().port()))
            .send()
            .await
            .is_err()
    );
}

/// The certificate the public listener presents to a new connection.
async fn presented(port: u16) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let handshake =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp);
    let tls = tokio::time::timeout(bff_testkit::REQUEST_DEADLINE, handshake)
        .await
        .expect("the handshake ends within the deadline")
        .expect("the handshake succeeds");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_a_rotated_certificate_without_restart() {
    let dir = std::env::temp_dir().join(format!("bff-listener-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("server.pem"), dir.join("tls.pem")).unwrap();
    std::fs::copy(fixture("server.key"), dir.join("tls.key")).unwrap();
    let cfg = format!(
        "[bff.tls]\ncert = \"{dir}/tls.pem\"\nkey = \"{dir}/tls.key\"\n",
        dir = dir.display()
    );
    let bff = TestBff::start(&cfg).await;
    let port = bff.addr().port();
    assert_eq!(presented(port).await, der("server.pem"));

    // Half-rotated (the new certificate, still the old key): the old pair keeps being served. Checked
    // once the listener has tried the new files and refused them (its warning names the key file).
    let log = logs();
    std::fs::copy(fixture("server2.pem"), dir.join("tls.pem")).unwrap();
    let key_file = dir.join("tls.key").display().to_string();
    let refused = bff_testkit::eventually(|| {
        let seen = log
            .text()
            .lines()
            .any(|l| l.contains("cannot be used yet") && l.contains(&key_file));
        async move { seen }
    })
    .await;
    assert!(refused, "the listener tried the half-rotated files");
    assert_eq!(
        presented(port).await,
        der("server.pem"),
        "a certificate without its key is not used"
    );

    // The key follows: new connections get the rotated certificate.
    std::fs::copy(fixture("server2.key"), dir.join("tls.key")).unwrap();
    let rotated = der("server2.pem");
    let seen = bff_testkit::eventually(|| async { presented(port).await == rotated }).await;
    assert!(seen, "the rotated certificate is presented");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TLS service whose idle timer closes a kept connection as a GET goes out on it, without TLS's
/// `close_notify` (the client reads an unexpected end of file, not an incomplete message): the GET is
/// sent again on a new connection and answered.
#[tokio::test]
async fn a_get_on_a_kept_tls_connection_the_service_closed_is_sent_again() {
    use bff_e2e::h1::{Close, Server};
    let users = Server::start_tls(
        Close::SecondRequest { of_first: 1 },
        &fixture("server.pem"),
        &fixture("server.key"),
    )
    .await;
    let cfg = format!(
        r#"
[telemetry]
access_log = false
[services.users]
endpoints = ["{ep}"]
[services.users.tls]
ca = "{ca}"
server_name = "users.internal"
[[routes]]
path = "/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
"#,
        ep = users.addr,
        ca = fixture("ca.pem").display(),
    );
    let bff = TestBff::start(&cfg).await;
    assert_eq!(bff.get("/u/1").await.status(), 200);
    let res = bff.get("/u/2").await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        *users.requests.lock().unwrap(),
        ["GET /users/1", "GET /users/2", "GET /users/2"]
    );
    assert_eq!(*users.connections.lock().unwrap(), 2);
}
