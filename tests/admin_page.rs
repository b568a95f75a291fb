//! The admin page, loaded in headless Chromium (Debian's chromium, which scripts/test installs): it shows
//! the services of the running BFF. The screenshot is saved to
//! `$CARGO_TARGET_TMPDIR/admin-page.png` (under the target folder, wherever that is).

use bff_testkit::process::{OutputWithin, found};
use bff_testkit::{Stub, TestBff};
use serde_json::json;
use std::{process::Command, time::Duration};

fn chromium(args: &[String]) -> std::process::Output {
    assert!(
        found("chromium".as_ref()),
        "chromium (Debian's package; scripts/test installs it)"
    );
    let profile = std::env::temp_dir().join(format!(
        "bff-chromium-{}-{}",
        std::process::id(),
        args.len()
    ));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output_within(Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(profile);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_the_services_in_a_browser() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"n": 1}));
    let cfg = format!(
        r#"
[telemetry]
access_log = false
[services.users]
endpoints = ["{u}"]
[services.orders-api]
endpoints = ["{u}"]
[services.orders-api.circuit_breaker]
[[routes]]
path = "/api/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
"#,
        u = users.endpoint()
    );
    // A Rust route serving GET only: the page labels it GET (it said `*`).
    let mut config = bff::config::Loader::new()
        .with_env(Default::default())
        .load_str(&cfg, bff::config::Format::Toml)
        .unwrap()
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    let app = bff::App::new(config)
        .unwrap()
        .route("/api/hello", bff::prelude::get(|| async { "hello" }));
    let bff = TestBff::start_app(app).await;
    for _ in 0..3 {
        assert_eq!(bff.get("/api/u/1").await.status(), 200);
    }
    assert_eq!(bff.get("/api/hello").await.status(), 200);
    let url = bff.admin_url("/admin/");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || chromium(&["--dump-dom".into(), url])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains(r#"data-name="users""#),
        "users missing from the rendered page:\n{dom}"
    );
    assert!(dom.contains(r#"data-name="orders-api""#), "{dom}");
    assert!(
        dom.contains(&users.endpoint()),
        "the endpoint is listed: {dom}"
    );
    assert!(
        dom.contains("/api/u/{id}"),
        "the route's rates are listed: {dom}"
    );
    assert!(
        dom.contains("<td>/api/hello</td><td>GET</td>"),
        "the Rust route is labelled GET: {dom}"
    );
    assert!(
        dom.contains(r#"<span id="error"></span>"#),
        "no error shown: {dom}"
    );
    assert!(dom.contains(r#"<span id="ready">ready</span>"#), "{dom}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    let out = tokio::task::spawn_blocking({
        let arg = format!("--screenshot={}", shot.display());
        move || chromium(&[arg, url])
    })
    .await
    .unwrap();
    assert!(
        shot.exists(),
        "screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
