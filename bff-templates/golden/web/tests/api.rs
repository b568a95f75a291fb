//! The BFF against stub services: what the home page and the catalog route answer, what they ask the
//! services for, how the page degrades, and what the gateway in front of them lets through (JWT, CORS).
//! Tokens are signed with the dev key of tests/keys/; the BFF under test trusts that key whatever
//! bff.toml trusts.

use bff_testkit::{Stubs, TestBff};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

const BFF_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bff.toml");

/// The identity the tests sign as: the dev key of tests/keys/, trusted by the BFF under test in place of
/// what `[edge.auth.jwt]` trusts in production.
const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "golden-web";

/// The web frontend's origin, as `[edge.cors]` lists it.
const WEB_ORIGIN: &str = "http://localhost:3000";

/// The BFF's own `bff.toml`: a stub for each of its services (whatever services it has), seeded with
/// what the pages read.
async fn services() -> Stubs {
    let services = Stubs::start(BFF_TOML).await;
    services["users"].on("/users/42").json(json!({
        "id": "42",
        "profile": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "avatar": {"small": "https://cdn.example.com/42-64.png", "large": "https://cdn.example.com/42-512.png"},
            "favoriteCategory": "books"
        }
    }));
    services["orders"].on("/orders").json(json!([
        {"id": "o-1", "status": "shipped", "total": {"amount": 1200, "currency": "EUR"}, "items": 2}
    ]));
    services["catalog"]
        .on("/recommendations/books")
        .json(json!({
            "category": "books",
            "items": [{"sku": "books-1", "title": "Notes", "price": {"amount": 999, "currency": "EUR"}}]
        }));
    services
}

/// The BFF from its own `bff.toml`, every service on its stub and the listeners on free ports.
async fn start(services: &Stubs) -> TestBff {
    let mut config = services.config();
    // Trust the tests' dev identity, whatever bff.toml trusts in production.
    if let Some(jwt) = config.edge.auth.jwt.as_mut() {
        jwt.issuer = Some(ISSUER.into());
        jwt.audiences = vec![AUDIENCE.into()];
        jwt.jwks_file =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/dev-jwks.json").into());
        jwt.jwks_url = None;
    }
    let config = config.validate().unwrap_or_else(|e| panic!("{e}"));
    TestBff::start_app(golden_web::app(config).unwrap()).await
}

/// A token signed with the dev key: user `sub`, valid for an hour, with `claims` added or replaced.
fn token_with(sub: &str, claims: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut all = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 3600,
    });
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bff-dev-1".into());
    let key = EncodingKey::from_rsa_pem(include_bytes!("keys/dev-private.pem")).unwrap();
    jsonwebtoken::encode(&header, &all, &key).unwrap()
}

fn token(sub: &str) -> String {
    token_with(sub, json!({}))
}

/// GET with a bearer token.
async fn get_as(bff: &TestBff, path: &str, token: &str) -> reqwest::Response {
    bff.client()
        .get(bff.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_home_page_merges_profile_orders_and_recommendations() {
    let services = services().await;
    let bff = start(&services).await;
    let res = get_as(&bff, "/api/home", &token("42")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-bff-partial").is_none());
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({
            "user": {"name": "Ada Lovelace", "avatar": "https://cdn.example.com/42-512.png"},
            "orders": [{"id": "o-1", "status": "shipped", "total": {"amount": 1200, "currency": "EUR"}}],
            "recommendations": [{"sku": "books-1", "title": "Notes", "price": {"amount": 999, "currency": "EUR"}}]
        })
    );
    assert_eq!(
        services["users"].requests()[0].uri,
        "/users/42",
        "the token's subject"
    );
    assert_eq!(services["orders"].requests()[0].uri, "/orders?userId=42");
    assert_eq!(
        services["catalog"].requests()[0].uri,
        "/recommendations/books",
        "recommendations follow the profile's favourite category"
    );
    let call = &services["users"].requests()[0];
    assert!(
        !call.headers.contains_key("authorization"),
        "the token stays at the edge"
    );
}

#[tokio::test]
async fn optional_parts_that_fail_leave_a_partial_page() {
    let services = services().await;
    services["orders"].on("/orders").reset();
    services["catalog"].on("/recommendations/books").status(503);
    let bff = start(&services).await;
    let res = get_as(&bff, "/api/home", &token("42")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-bff-partial"], "true");
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["user"]["name"], "Ada Lovelace");
    assert_eq!(page["orders"], Value::Null);
    assert_eq!(page["recommendations"], Value::Null);
    assert_eq!(
        page["_errors"],
        json!([
            {"backend": "orders", "error": "reset"},
            {"backend": "recommendations", "error": "upstream_status", "status": 503}
        ])
    );
}

#[tokio::test]
async fn no_profile_no_page() {
    let services = services().await;
    services["users"].on("/users/42").status(404);
    let bff = start(&services).await;
    let res = get_as(&bff, "/api/home", &token("42")).await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_failed");
    assert!(services["catalog"].requests().is_empty());
}

#[tokio::test]
async fn a_subject_is_one_path_segment_downstream() {
    let services = services().await;
    let bff = start(&services).await;
    get_as(&bff, "/api/home", &token("a/b?admin=1")).await;
    assert_eq!(
        services["users"].requests()[0].uri,
        "/users/a%2Fb%3Fadmin%3D1"
    );
}

#[tokio::test]
async fn the_home_page_needs_a_valid_token() {
    let services = services().await;
    let bff = start(&services).await;
    let res = bff.get("/api/home").await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (why, token) in [
        ("expired", token_with("42", json!({"exp": now - 600}))),
        (
            "another audience",
            token_with("42", json!({"aud": "another-bff"})),
        ),
        (
            "another issuer",
            token_with("42", json!({"iss": "https://evil.example.com"})),
        ),
        ("not a token", "not-a-token".to_string()),
    ] {
        let res = get_as(&bff, "/api/home", &token).await;
        assert_eq!(res.status(), 401, "{why}");
    }
    assert_eq!(services.calls(), 0, "no service was called");
}

#[tokio::test]
async fn the_catalog_route_is_public() {
    let services = services().await;
    let bff = start(&services).await;
    let res = bff.get("/api/catalog/books").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["items"][0]["sku"], "books-1");
}

#[tokio::test]
async fn browsers_may_call_from_the_web_origin_only() {
    let services = services().await;
    let bff = start(&services).await;
    let preflight = bff
        .client()
        .request(reqwest::Method::OPTIONS, bff.url("/api/home"))
        .header("origin", WEB_ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], WEB_ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");

    let res = bff
        .client()
        .get(bff.url("/api/home"))
        .header("origin", WEB_ORIGIN)
        .bearer_auth(token("42"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], WEB_ORIGIN);

    let foreign = bff
        .client()
        .get(bff.url("/api/catalog/books"))
        .header("origin", "https://elsewhere.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}
