//! The web frontend of this BFF in a real browser: web/index.html, served from another origin, calls the
//! BFF cross-origin; headless Chromium (Debian's chromium, which scripts/test installs) renders the
//! aggregated data, which proves CORS and the contract end to end. The screenshot is saved to
//! `$CARGO_TARGET_TMPDIR/web-bff.png`.

use axum::{Router, response::Html, routing::get};
use bff_testkit::TestBff;
use std::{collections::HashMap, process::Command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_renders_the_account_through_its_bff() {
    let demo = bff_testkit::demo::start().await;
    // The page's own origin: a static server on another port.
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page.local_addr().unwrap());
    let html = include_str!("../web/index.html");
    tokio::spawn(async move {
        let _ = axum::serve(
            page,
            Router::new().route("/", get(move || async move { Html(html) })),
        )
        .await;
    });

    let env: HashMap<String, String> = [
        ("USERS_ADDR", demo.users.to_string()),
        ("ORDERS_ADDR", demo.orders.to_string()),
        ("WEB_ORIGIN", origin.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut config = bff::config::Loader::new()
        .with_env(env)
        .load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml"))
        .unwrap()
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    config.telemetry.access_log = false;
    let bff = TestBff::start_app(
        web_bff::app(config.validate().unwrap_or_else(|e| panic!("{e}"))).unwrap(),
    )
    .await;

    let url = format!("{origin}/?bff=http://{}&user=42", bff.addr());
    let shot = concat!(env!("CARGO_TARGET_TMPDIR"), "/web-bff.png");
    let dom = tokio::task::spawn_blocking(move || {
        let profile = std::env::temp_dir().join(format!("bff-web-chromium-{}", std::process::id()));
        let run = |extra: &str| {
            Command::new("chromium")
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
                    "--window-size=900,700",
                    extra,
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(&url)
                .output()
                .expect("chromium (Debian's package; scripts/test installs it)")
        };
        let dom = String::from_utf8_lossy(&run("--dump-dom").stdout).into_owned();
        run(&format!("--screenshot={shot}"));
        let _ = std::fs::remove_dir_all(&profile);
        dom
    })
    .await
    .unwrap();
    assert!(
        dom.contains(r#"<h2 id="name">Alan Turing</h2>"#),
        "the profile rendered:\n{dom}"
    );
    assert!(dom.contains("alan@example.com"), "{dom}");
    assert!(
        dom.contains(r#"<li class="order">o-42-1: shipped</li>"#),
        "the orders rendered: {dom}"
    );
    assert!(dom.contains("up to date"), "{dom}");
    assert!(std::path::Path::new(shot).exists());
}
