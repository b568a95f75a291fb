//! The BFF against a real OpenID Provider and stub services. The provider is the framework's test OP
//! (`bff_testkit::oidc`: the npm package oidc-provider, so Node.js is needed), with its own login and
//! consent pages; `bff_testkit::oidc::Browser` signs in through them the way a browser does. The BFF under
//! test reads its own `bff.toml`, with the provider, the client and the public URL from the environment.

use bff_testkit::{
    Stubs, TestBff,
    oidc::{Browser, Front, Provider, Session},
};
use serde_json::{Value, json};
use std::collections::HashMap;

const BFF_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml");

/// The provider, the BFF's public address, the stubbed services and the BFF.
struct Running {
    _op: Provider,
    front: Front,
    services: Stubs,
    _bff: TestBff,
}

async fn start() -> Running {
    let op = Provider::start().await;
    // The BFF's public URL (the redirect URIs are built from it) before the BFF listens on its free port.
    let front = Front::start().await;
    let client = op.register_bff(&[&front.url()]).await;
    let services = Stubs::start(BFF_TOML).await;
    services["orders"]
        .on("/orders")
        .json(json!([{"id": "o-1", "status": "shipped"}]));
    services["catalog"]
        .on("/recommendations/books")
        .json(json!({"items": [{"sku": "books-1", "title": "Notes"}]}));
    let env: HashMap<String, String> = [
        ("OIDC_ISSUER", op.issuer().to_owned()),
        ("OIDC_CLIENT_ID", client.id.clone()),
        ("OIDC_CLIENT_SECRET", client.secret.clone()),
        ("PUBLIC_URL", front.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = services
        .config_with_env(env)
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
    let bff = TestBff::start_app(golden_web_oidc::app(config).unwrap()).await;
    front.forward_to(bff.addr());
    Running {
        _op: op,
        front,
        services,
        _bff: bff,
    }
}

impl Running {
    async fn get(&self, path: &str, session: Option<&Session>, csrf: bool) -> reqwest::Response {
        let mut req = bff_testkit::http_client().get(format!("{}{path}", self.front.url()));
        if let Some(session) = session {
            req = req.header("cookie", session.cookie_header());
        }
        if csrf {
            req = req.header("x-csrf", "1");
        }
        req.send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_and_nobody_is_signed_in_without_a_session() {
    let bff = start().await;
    let page = bff.get("/", None, false).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/bff/login?returnUrl="));
    assert_eq!(bff.get("/bff/user", None, true).await.status(), 401);
    assert_eq!(bff.get("/api/orders", None, true).await.status(), 401);
    assert_eq!(bff.services.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_gets_their_orders_with_their_token() {
    let bff = start().await;
    let session = Browser::new().login(&bff.front.url(), "/", "ada").await;
    assert_eq!(session.location, "/");

    let user: Value = bff
        .get("/bff/user", Some(&session), true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["claims"]["sub"], "ada", "{user}");

    let orders = bff.get("/api/orders", Some(&session), true).await;
    assert_eq!(orders.status(), 200);
    assert_eq!(
        orders.json::<Value>().await.unwrap(),
        json!({"orders": [{"id": "o-1", "status": "shipped"}]})
    );
    let call = &bff.services["orders"].requests()[0];
    let auth = call.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("Bearer "), "the user's access token: {auth}");
    assert!(call.headers.get("cookie").is_none(), "never the cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_route_reads_the_session() {
    let bff = start().await;
    assert_eq!(bff.get("/api/me", None, true).await.status(), 401);
    let session = Browser::new().login(&bff.front.url(), "/", "ada").await;
    let me: Value = bff
        .get("/api/me", Some(&session), true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"sub": "ada", "name": "User ada"}));
    assert_eq!(bff.get("/api/me", Some(&session), false).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_csrf_header_no_service_is_called() {
    let bff = start().await;
    let session = Browser::new().login(&bff.front.url(), "/", "ada").await;
    let resp = bff.get("/api/orders", Some(&session), false).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(bff.services["orders"].requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session() {
    let bff = start().await;
    let session = Browser::new().login(&bff.front.url(), "/", "ada").await;
    let resp = bff_testkit::http_client()
        .post(format!("{}/bff/logout", bff.front.url()))
        .header("cookie", session.cookie_header())
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["end_session_url"].is_string(), "{body}");
    assert_eq!(bff.get("/bff/user", Some(&session), true).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_route_is_public_and_gets_no_token() {
    let bff = start().await;
    let resp = bff.get("/api/catalog/books", None, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"items": [{"sku": "books-1", "title": "Notes"}]})
    );
    let call = &bff.services["catalog"].requests()[0];
    assert!(call.headers.get("authorization").is_none());
}
