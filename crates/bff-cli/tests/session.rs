//! Browser sessions through the shipped binary (`bff run`): the `session` feature is in the `bff` command,
//! a `[session]` config is served, and the perimeter holds before any OpenID Provider exchange: the CSRF
//! header and the session are required on an `auth = "session"` route, `/bff/login` refuses an open
//! redirect and sends the browser to the provider with PKCE S256, state and nonce behind a `__Host-`
//! login cookie. The whole flow against a real provider is in tests/sessions.rs (the Rust API) and the
//! `--auth oidc` template's own tests.

use bff_testkit::{Stub, process::Proc};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_run_serves_session_routes_behind_csrf_and_a_pkce_login() {
    let op = Stub::start().await;
    let issuer = format!("http://{}", op.addr());
    op.on("/.well-known/openid-configuration").json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
    }));
    op.on("/jwks").json(json!({"keys": []}));
    let api = Stub::start().await;
    api.on("/orders").json(json!([1]));

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bff-run-session");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bff.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[bff]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[session]
issuer = "{issuer}"
client_id = "web"
client_secret = "${{OIDC_SECRET}}"
public_url = "https://app.test"

[services.api]
endpoints = ["{api}"]
token = "user"

[[routes]]
path = "/api/orders"
auth = "session"
[[routes.backends]]
name = "orders"
service = "api"
path = "/orders"
"#,
            api = api.addr()
        ),
    )
    .unwrap();

    let mut child = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_bff"))
            .args(["run", "--config"])
            .arg(&config)
            .env("OIDC_SECRET", "a-client-secret-for-the-test")
            .env("RUST_LOG", "warn")
            .env_remove("BFF_CONFIG")
            .stdout(Stdio::piped()),
    );
    let (url, _) = child.listening();
    let http = bff_testkit::http_client();

    // No CSRF header, then no session: 401 with the contract's codes, and no downstream call.
    let res = http.get(format!("{url}/api/orders")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf", "{body}");
    let res = http
        .get(format!("{url}/api/orders"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert_eq!(api.hits("/orders"), 0);

    // An open redirect is refused; a local returnUrl goes to the provider with PKCE, state and nonce.
    let res = http
        .get(format!("{url}/bff/login?returnUrl=//evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .get(format!("{url}/bff/login?returnUrl=/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    for part in [
        "response_type=code",
        "client_id=web",
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-bff-login="), "{cookie}");
    for attribute in ["Path=/", "Secure", "HttpOnly"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");

    child.sigterm();
    assert_eq!(child.wait_within().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
