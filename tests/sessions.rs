//! Browser sessions (CONTRACT section 6, issue #17) against a real, certified OpenID Provider: panva's
//! `oidc-provider` (tests/oidc/op.js, through `bff_testkit::oidc`), with the logins made by
//! `bff_testkit::oidc::Browser` (every redirect followed by hand, the OP's own login and consent forms
//! filled in).

use base64::Engine as _;
use bff_testkit::{
    Stub,
    oidc::{Browser, Provider, ProviderOptions},
};
use serde_json::Value;
use sha2::Digest as _;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form_body(pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// The claims of a JWT, unverified (the test reads what the OP put in).
fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The harness itself, with no BFF: the OP serves discovery, runs the code flow with PKCE through its own
/// login and consent pages, issues an ID token with the profile claims and a refresh token, rotates the
/// refresh token (a second use is refused) and counts each grant; a code exchange without the PKCE
/// verifier is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openid_provider_serves_the_code_flow_with_pkce_and_rotates_refresh_tokens() {
    let op = Provider::start_with(ProviderOptions {
        access_token_ttl: Some(5),
        ..ProviderOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", op.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], op.issuer());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(discovery["backchannel_logout_supported"], true);
    for endpoint in [
        "revocation_endpoint",
        "end_session_endpoint",
        "token_endpoint",
        "jwks_uri",
    ] {
        assert!(discovery[endpoint].is_string(), "{endpoint}: {discovery}");
    }

    // A stand-in for the BFF's /bff/login: a redirect to the authorization endpoint.
    let app = Stub::start().await;
    let redirect_uri = format!("http://{}/cb", app.addr());
    op.register_client(serde_json::json!({
        "client_id": "app",
        "client_secret": "app-secret-0123456789",
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [format!("http://{}/bye", app.addr())],
        // With a back-channel logout URI that needs the session, the ID token carries `sid`.
        "backchannel_logout_uri": format!("http://{}/logout", app.addr()),
    }))
    .await;
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let challenge = b64url(&sha2::Sha256::digest(verifier));
    let mut authorize =
        reqwest::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", "app")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", "the-state")
        .append_pair("nonce", "the-nonce")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let location: &'static str = Box::leak(authorize.to_string().into_boxed_str());
    app.on("/login").status(302).header("location", location);
    app.on("/logout").status(200);

    let browser = Browser::new();
    let authorized = browser
        .authorize(&format!("http://{}/login", app.addr()), "alice")
        .await;
    assert_eq!(authorized.callback.path(), "/cb");
    assert_eq!(authorized.param("state").as_deref(), Some("the-state"));
    assert_eq!(authorized.param("iss").as_deref(), Some(op.issuer()));
    let code = authorized.param("code").expect("a code");
    // The OP's own pages were used: its login form, then its consent form.
    let posts = browser
        .hops()
        .iter()
        .filter(|h| h.method == reqwest::Method::POST)
        .count();
    assert_eq!(posts, 2, "{:#?}", browser.hops());

    let token = |form: Vec<(&'static str, String)>| {
        http.post(discovery["token_endpoint"].as_str().unwrap())
            .basic_auth("app", Some("app-secret-0123456789"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&form))
            .send()
    };
    let without_verifier = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("redirect_uri", redirect_uri.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(without_verifier.status(), 400);
    let tokens: Value = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", redirect_uri.clone()),
        ("code_verifier", verifier.into()),
    ])
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["expires_in"], 5, "{tokens}");
    let id = jwt_claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["name"], "User alice");
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["nonce"], "the-nonce");
    assert!(id["sid"].is_string(), "{id}");
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    let refreshed = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(refreshed.status(), 200);
    let rotated = refreshed.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .expect("a rotated refresh token")
        .to_owned();
    let reused = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
    ])
    .await
    .unwrap();
    assert_eq!(reused.status(), 400, "a rotated refresh token is refused");

    assert_eq!(op.grants("authorization_code").await, 1);
    assert_eq!(op.grants("refresh_token").await, 1);
    assert_eq!(op.grant_errors("refresh_token").await, 1);
    let sessions = op.sessions("alice").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["sid"], id["sid"]);

    // The OP's back-channel logout reaches the client's URI on loopback with a logout token for the sid.
    assert_eq!(op.backchannel_logout("alice").await, (1, vec![]));
    let posted = app.requests();
    let logout = posted
        .iter()
        .find(|r| r.uri == "/logout")
        .expect("a logout POST");
    let body = String::from_utf8_lossy(&logout.body).into_owned();
    let logout_token = body
        .strip_prefix("logout_token=")
        .expect("a logout_token form");
    let claims = jwt_claims(logout_token);
    assert_eq!(claims["sid"], id["sid"], "{claims}");
    assert_eq!(claims["aud"], "app", "{claims}");
    assert!(
        claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(),
        "{claims}"
    );

    // RP-initiated logout on the OP's own page (its notices go to stderr: the OP outlives it).
    let mut end = reqwest::Url::parse(discovery["end_session_endpoint"].as_str().unwrap()).unwrap();
    end.query_pairs_mut()
        .append_pair("id_token_hint", tokens["id_token"].as_str().unwrap())
        .append_pair(
            "post_logout_redirect_uri",
            &format!("http://{}/bye", app.addr()),
        )
        .append_pair("client_id", "app");
    let page = browser.request(reqwest::Method::GET, &end, None).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let field = |name: &str| {
        let at = page
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {page}"))
            + name.len();
        page[at..].split('"').next().unwrap().to_owned()
    };
    let (action, xsrf) = (field("action=\""), field("name=\"xsrf\" value=\""));
    let confirm = browser
        .request(
            reqwest::Method::POST,
            &end.join(&action).unwrap(),
            Some(&[("xsrf", xsrf.as_str()), ("logout", "yes")]),
        )
        .await;
    assert!(confirm.status().is_redirection(), "{}", confirm.status());
    assert_eq!(
        confirm.headers()["location"],
        format!("http://{}/bye", app.addr()).as_str()
    );

    // Revoking the account's grants makes even the rotated refresh token useless.
    assert_eq!(op.revoke("alice").await, 1);
    let revoked = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", rotated),
    ])
    .await
    .unwrap();
    assert_eq!(revoked.status(), 400);
}
