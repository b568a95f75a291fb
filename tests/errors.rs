//! Errors keep their causes: a downstream failure is logged with the error under it, all the way down to
//! the TLS library's own message, while the client gets only the contract's JSON error.

use bff_testkit::{CapturedLog, Stub, TestBff};

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.pem");

/// A service configured for TLS whose endpoint speaks plain HTTP: the handshake fails. The client gets a
/// 502 that names neither the address nor the cause; the log line of the failure carries the cause down
/// to rustls's own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_tls_failure_is_logged_with_its_cause() {
    let logs = CapturedLog::install(tracing::Level::WARN);
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

/// No function of the crates returns its error as a bare `String` (`Result<_, String>`): an error is a
/// type that says what failed and keeps its cause as its `source()` (issue #21). The same check as
/// `grep -rE 'Result<[^>]*, String>' crates/*/src`, so that a new one fails here instead of in a review.
#[test]
fn no_crate_returns_a_string_as_its_error() {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("Result<") {
                let after = &rest[at + "Result<".len()..];
                let inner = &after[..after.find('>').unwrap_or(after.len())];
                if inner.ends_with(", String") {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
                rest = after;
            }
        }
    }
    assert!(found.is_empty(), "errors as strings:\n{}", found.join("\n"));
}
