//! The web frontend of this BFF (web/index.html), written with its typed client, in a real browser: the
//! BFF's OpenAPI document (its account route described by its types) passes openapi-spec-validator; the
//! client made of it (`bff_openapi::typescript`, what `bff client` writes) and web/index.ts compile with
//! `tsc --strict` (tests/ts); the page, served from another origin, renders the account through the BFF
//! in headless Chromium. The tools: `$BFF_OPENAPI_SPEC_VALIDATOR` and `$BFF_TSC`, else as scripts/test
//! installs them.

use axum::{
    Router,
    extract::Path as UrlPath,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use bff_testkit::{TestBff, process::OutputWithin};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tsc() -> Command {
    match std::env::var_os("BFF_TSC") {
        Some(p) => Command::new(p),
        None => Command::new(root().join("tests/ts/node_modules/.bin/tsc")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_renders_the_account_with_the_generated_client() {
    let demo = bff_testkit::demo::start().await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-bff-client");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The page's own origin: a static server on another port, for index.html and js/*.js.
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page.local_addr().unwrap());
    let js = dir.join("js");
    let html = include_str!("../web/index.html");
    tokio::spawn(async move {
        let app = Router::new()
            .route("/", get(move || async move { axum::response::Html(html) }))
            .route(
                "/js/{file}",
                get(move |UrlPath(file): UrlPath<String>| {
                    let js = js.clone();
                    async move {
                        match std::fs::read(js.join(file.replace(['/', '\\'], ""))) {
                            Ok(body) => {
                                ([(header::CONTENT_TYPE, "text/javascript")], body).into_response()
                            }
                            Err(_) => StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                }),
            );
        let _ = axum::serve(page, app).await;
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
    let app = web_bff::app(config.validate().unwrap_or_else(|e| panic!("{e}"))).unwrap();
    let bff = TestBff::start_app(app).await;

    // The document the BFF serves: the account route typed by its Rust types.
    let doc = bff.admin_json("/admin/openapi.json").await;
    let account = &doc["paths"]["/api/account/{id}"]["get"];
    assert_eq!(
        account["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AccountPage",
        "{doc:#}"
    );
    assert!(account["responses"]["502"].is_object(), "{account:#}");
    let schema = &doc["components"]["schemas"]["AccountPage"];
    assert_eq!(
        schema["required"],
        serde_json::json!(["name", "email"]),
        "{schema:#}"
    );
    let file = dir.join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let program = std::env::var_os("BFF_OPENAPI_SPEC_VALIDATOR")
        .unwrap_or_else(|| "openapi-spec-validator".into());
    let out = Command::new(&program)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{program:?}: {e}; pip install openapi-spec-validator (scripts/test does) or set BFF_OPENAPI_SPEC_VALIDATOR"));
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The client, and the page's script compiled with it.
    std::fs::write(
        dir.join("client.ts"),
        bff_openapi::typescript(&doc).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("index.ts"), include_str!("../web/index.ts")).unwrap();
    let out = tsc()
        .current_dir(&dir)
        .args(["--strict", "--target", "es2022", "--lib", "es2022,dom"])
        .args(["--module", "es2022", "--moduleResolution", "bundler"])
        .args(["--outDir", "js", "index.ts"])
        .output()
        .unwrap_or_else(|e| {
            panic!("tsc: {e}; run `npm ci` in tests/ts (scripts/test does) or set BFF_TSC")
        });
    assert!(
        out.status.success(),
        "tsc --strict: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("js/client.js").exists() && dir.join("js/index.js").exists());

    let url = format!("{origin}/?bff=http://{}&user=42", bff.addr());
    let dom = tokio::task::spawn_blocking(move || {
        let profile =
            std::env::temp_dir().join(format!("bff-web-client-chromium-{}", std::process::id()));
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
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url)
            .output_within(std::time::Duration::from_secs(120));
        let _ = std::fs::remove_dir_all(&profile);
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(
        dom.contains(r#"<h2 id="name">Alan Turing</h2>"#),
        "the profile rendered by the typed client:\n{dom}"
    );
    assert!(dom.contains("alan@example.com"), "{dom}");
    assert!(
        dom.contains(r#"<li class="order">o-42-1: shipped</li>"#),
        "the orders rendered: {dom}"
    );
    assert!(dom.contains("up to date"), "{dom}");
}
