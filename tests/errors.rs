//! Errors keep their causes: a downstream failure is logged with the error under it, all the way down to
//! the TLS library's own message, while the client gets only the contract's JSON error.

use bff_testkit::{Stub, TestBff};
use std::{
    io::Write,
    sync::{Arc, Mutex},
};

/// Everything the process logs, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.pem");

/// A service configured for TLS whose endpoint speaks plain HTTP: the handshake fails. The client gets a
/// 502 that names neither the address nor the cause; the log line of the failure carries the cause down
/// to rustls's own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_tls_failure_is_logged_with_its_cause() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let plain = Stub::start().await;
    plain
        .on("/users/1")
        .json(serde_json::json!({"name": "Ada"}));
    let cfg = format!(
        r#"
[bff]
name = "web-bff"
[telemetry]
access_log = false
[services.users]
endpoints = ["{ep}"]
[services.users.tls]
ca = "{CA}"
server_name = "users.internal"
[[routes]]
path = "/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
"#,
        ep = plain.endpoint(),
    );
    let bff = TestBff::start(&cfg).await;
    let res = bff.get("/u/1").await;
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    assert!(
        !body.contains("corrupt") && !body.contains(&plain.endpoint()),
        "{body}"
    );

    // Written before the response was sent.
    let logs = logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("no failure logged:\n{logs}"));
    assert!(line.contains("connect_error calling users"), "{line}");
    // The cause under hyper-util's "client error (Connect)": the TLS library's own words.
    assert!(line.contains("received corrupt message"), "{line}");
}
