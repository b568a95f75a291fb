//! Browser sessions (CONTRACT section 6, issue #17) against a real, certified OpenID Provider: panva's
//! `oidc-provider` (tests/oidc/op.js, through `bff_testkit::oidc`), with the logins made by
//! `bff_testkit::oidc::Browser` (every redirect followed by hand, the OP's own login and consent forms
//! filled in).

use base64::Engine as _;
use bff_testkit::{
    CapturedLog, Stub, TestBff,
    oidc::{Browser, Front, OidcClient, Provider, ProviderOptions, Session},
};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

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
    let http = bff_testkit::http_client();
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

// ---- a BFF in session mode in front of the OP ----

/// Everything a session test needs: the OP, the BFF's public address (a [`Front`]), the BFF, the API stub
/// (service `orders`, `token = "user"`, behind the route `/api/orders` with `auth = "session"`).
struct Setup {
    op: Provider,
    front: Front,
    bff: TestBff,
    api: Stub,
}

/// The BFF's config: `[session]` for `op` reached at `public_url`, with `session_extra` lines added to it.
fn session_config(
    op: &Provider,
    client: &OidcClient,
    public_url: &str,
    session_extra: &str,
    api: &Stub,
) -> String {
    format!(
        r#"
[bff]
name = "session-bff"

[session]
issuer = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
public_url = "{public_url}"
scopes = ["openid", "profile", "email", "offline_access"]
{session_extra}

[services.orders]
endpoints = ["{api}"]
token = "user"

[[routes]]
path = "/api/orders"
auth = "session"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders"
"#,
        issuer = op.issuer(),
        id = client.id,
        secret = client.secret,
        api = api.endpoint(),
    )
}

async fn setup_with(options: ProviderOptions, session_extra: &str) -> Setup {
    let op = Provider::start_with(options).await;
    let front = Front::start().await;
    let client = op.register_bff(&[&front.url()]).await;
    let api = Stub::start().await;
    api.on("/orders").json(json!([{"id": "o1"}]));
    let bff = TestBff::start(&session_config(
        &op,
        &client,
        &front.url(),
        session_extra,
        &api,
    ))
    .await;
    front.forward_to(bff.addr());
    Setup {
        op,
        front,
        bff,
        api,
    }
}

async fn setup() -> Setup {
    setup_with(ProviderOptions::default(), "").await
}

/// [`setup_with`] an OP whose access tokens live 5 s: a session's token is always due for a refresh
/// (`refresh_before` is 30 s).
async fn setup_expiring(session_extra: &str) -> Setup {
    setup_with(
        ProviderOptions {
            access_token_ttl: Some(5),
            ..ProviderOptions::default()
        },
        session_extra,
    )
    .await
}

impl Setup {
    async fn login(&self, user: &str) -> Session {
        Browser::new().login(&self.front.url(), "/", user).await
    }

    /// A request to the BFF (through its public address) with `headers`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .bff
            .client()
            .request(method, format!("{}{path}", self.front.url()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request to the BFF")
    }

    /// `GET path` with the session's cookie and the CSRF header.
    async fn get(&self, session: &Session, path: &str) -> reqwest::Response {
        self.send(
            Method::GET,
            path,
            &[("cookie", &session.cookie_header()), ("x-csrf", "1")],
        )
        .await
    }

    /// The `authorization` headers the API stub received.
    fn bearer_tokens(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .filter_map(|r| r.headers.get("authorization"))
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// The JSON error code of a BFF error response.
async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("a JSON error");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The document a running session BFF serves (`/admin/openapi.json`) describes `/bff/user` and
/// `/bff/logout` as they answer: the claims `user_claims` lets out and `expires_at`, then the OP's
/// end-session URL; every member the schema requires is there, none it does not name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_describes_user_and_logout_as_they_answer() {
    let s = setup().await;
    let doc = s.bff.admin_json("/admin/openapi.json").await;
    let session = s.login("alice").await;
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    let user: Value = s.get(&session, "/bff/user").await.json().await.unwrap();
    let schema = &doc["components"]["schemas"]["SessionUser"];
    assert_eq!(keys(&user), keys(&schema["properties"]), "{user}");
    assert_eq!(schema["required"], json!(["claims", "expires_at"]));
    assert!(user["expires_at"].is_u64(), "{user}");
    let allowed = keys(&schema["properties"]["claims"]["properties"]);
    assert!(!keys(&user["claims"]).is_empty(), "{user}");
    for claim in keys(&user["claims"]) {
        assert!(
            allowed.contains(&claim),
            "{claim} is not in the document: {allowed:?}"
        );
    }

    let out = s
        .send(
            Method::POST,
            "/bff/logout",
            &[("cookie", &session.cookie_header()), ("x-csrf", "1")],
        )
        .await;
    assert_eq!(out.status(), 200);
    let body: Value = out.json().await.unwrap();
    let schema = &doc["paths"]["/bff/logout"]["post"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(keys(&body), keys(&schema["properties"]), "{body}");
    assert!(body["end_session_url"].is_string(), "{body}");
}

/// A login through the OP's pages: the callback sets the session cookie with the contract's attributes
/// (`__Host-` prefix, `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/`, no `Domain`) and redirects to the
/// `returnUrl`; `/bff/user` shows the ID token's claims; the API's stub receives the access token as a
/// bearer token and never the cookie; a second login gets another session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_sets_a_host_cookie_and_the_api_gets_the_token_and_never_the_cookie() {
    let s = setup().await;
    let session = Browser::new()
        .login(&s.front.url(), "/orders?page=2", "alice")
        .await;
    assert_eq!(session.location, "/orders?page=2");
    let attributes: Vec<String> = session
        .set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == want),
            "{want} in {}",
            session.set_cookie
        );
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "no Domain: {}",
        session.set_cookie
    );
    assert!(
        session.value.len() >= 22,
        "an opaque random id: {}",
        session.value
    );

    let user = s.get(&session, "/bff/user").await;
    assert_eq!(user.status(), 200);
    let user: Value = user.json().await.unwrap();
    assert_eq!(user["claims"]["sub"], "alice", "{user}");
    assert_eq!(user["claims"]["name"], "User alice", "{user}");
    assert_eq!(user["claims"]["email"], "alice@example.test", "{user}");
    assert!(!user["expires_at"].is_null(), "{user}");
    let text = user.to_string();
    assert!(!text.contains("token"), "no token in /bff/user: {text}");

    let api = s.get(&session, "/api/orders").await;
    assert_eq!(api.status(), 200);
    assert_eq!(
        api.json::<Value>().await.unwrap(),
        json!({"orders": [{"id": "o1"}]})
    );
    let seen = s.api.requests();
    assert_eq!(seen.len(), 1);
    let bearer = seen[0].headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    assert!(!token.is_empty() && !token.contains(&session.value));
    assert!(
        seen[0].headers.get("cookie").is_none(),
        "the cookie never goes downstream"
    );
    assert!(seen[0].headers.get("x-csrf").is_none());

    let again = s.login("alice").await;
    assert_ne!(again.value, session.value, "a new session id at each login");
    assert_eq!(s.op.grants("authorization_code").await, 2);
}

/// `cookie_name` and `same_site = "lax"` change the cookie: name and `SameSite=Lax`, the other
/// attributes as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_name_and_same_site_lax_are_applied() {
    let s = setup_with(
        ProviderOptions::default(),
        "cookie_name = \"__Host-app\"\nsame_site = \"lax\"",
    )
    .await;
    let session = Browser::new()
        .login_with_cookie(&s.front.url(), "/", "bob", "__Host-app")
        .await;
    let lower = session.set_cookie.to_ascii_lowercase();
    assert!(
        lower.contains("samesite=lax") && lower.contains("httponly") && lower.contains("secure"),
        "{lower}"
    );
    let user = s.get(&session, "/bff/user").await;
    assert_eq!(user.status(), 200);
}

/// `returnUrl` must be a local path: an absolute URL, a scheme-relative `//host`, a backslash that
/// browsers read as `//`, a `javascript:` URL or a relative path are refused (400) without sending the
/// browser anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_are_refused_at_login() {
    let s = setup().await;
    for bad in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "http:/evil.example",
    ] {
        let mut url = reqwest::Url::parse(&format!("{}/bff/login", s.front.url())).unwrap();
        url.query_pairs_mut().append_pair("returnUrl", bad);
        let resp = s.bff.client().get(url).send().await.unwrap();
        assert_eq!(resp.status(), 400, "returnUrl={bad:?}");
        assert!(
            resp.headers().get("location").is_none(),
            "returnUrl={bad:?}"
        );
        assert_eq!(error_code(resp).await, "bad_request", "returnUrl={bad:?}");
    }
    // A local path is fine.
    let ok = s
        .send(Method::GET, "/bff/login?returnUrl=%2Fa%2Fb%3Fc%3D1", &[])
        .await;
    assert_eq!(ok.status(), 302);
    let to = ok.headers()["location"].to_str().unwrap();
    assert!(to.starts_with(s.op.issuer()), "{to}");
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "response_type=code",
    ] {
        assert!(to.contains(param), "{param} in {to}");
    }
}

/// Whether a callback answer logged anyone in: a 4xx, no session cookie with a value.
async fn assert_refused(resp: reqwest::Response, what: &str) {
    let status = resp.status();
    let sets_session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("__Host-bff=") && !v.starts_with("__Host-bff=;"));
    assert!(status.is_client_error(), "{what}: {status}");
    assert!(!sets_session, "{what}: a session cookie was set");
}

/// The callback refuses what an attacker could change: a forged `state`, a replayed callback, an ID
/// token whose `nonce` is not the login's (the authorization request's `nonce` changed on its way to the
/// OP), and a code bound to another PKCE challenge (the OP refuses the BFF's verifier). No session in
/// any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_state_nonce_or_pkce_challenge_is_refused() {
    let s = setup().await;
    let login = format!("{}/bff/login?returnUrl=%2F", s.front.url());

    let browser = Browser::new();
    let authorized = browser.authorize(&login, "alice").await;
    let forged = authorized.with_param("state", "forged-state");
    assert_refused(browser.callback(&forged).await, "a forged state").await;
    // The code was not exchanged: the OP saw no token request.
    assert_eq!(s.op.grants("authorization_code").await, 0);
    assert_eq!(s.op.grant_errors("authorization_code").await, 0);

    let browser = Browser::new();
    let authorized = browser
        .authorize_with(&login, "alice", |url| {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "nonce" {
                        "attacker-nonce".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        })
        .await;
    assert_refused(
        browser.callback(&authorized.callback).await,
        "another nonce",
    )
    .await;

    let browser = Browser::new();
    let other_challenge = b64url(&sha2::Sha256::digest(
        "the attacker's verifier, 43 characters long",
    ));
    let authorized = browser
        .authorize_with(&login, "alice", |url| {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "code_challenge" {
                        other_challenge.clone()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        })
        .await;
    let before = s.op.grant_errors("authorization_code").await;
    assert_refused(
        browser.callback(&authorized.callback).await,
        "another PKCE challenge",
    )
    .await;
    assert_eq!(
        s.op.grant_errors("authorization_code").await,
        before + 1,
        "the OP refused the exchange (the verifier does not match)"
    );

    // A good callback logs in once; the same callback again is refused.
    let browser = Browser::new();
    let authorized = browser.authorize(&login, "alice").await;
    let first = browser.callback(&authorized.callback).await;
    assert_eq!(first.status(), 302);
    assert_refused(
        browser.callback(&authorized.callback).await,
        "a replayed callback",
    )
    .await;
}

/// Session requests without the CSRF header (or with another value, or with a foreign `Origin`) get
/// 401 `csrf` and make no downstream call; `/bff/user` and `/bff/logout` need it too (a logout without it
/// leaves the session alive). Without a session: 401 `unauthenticated`. The rejections are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_csrf_header_is_401_and_no_downstream_call() {
    let s = setup().await;
    let session = s.login("alice").await;
    let cookie = session.cookie_header();
    let refused: [&[(&str, &str)]; 3] = [
        &[("cookie", &cookie)],
        &[("cookie", &cookie), ("x-csrf", "0")],
        &[
            ("cookie", &cookie),
            ("x-csrf", "1"),
            ("origin", "https://evil.example"),
        ],
    ];
    for headers in refused {
        let resp = s.send(Method::GET, "/api/orders", headers).await;
        assert_eq!(resp.status(), 401, "{headers:?}");
        assert_eq!(error_code(resp).await, "csrf", "{headers:?}");
    }
    let user = s
        .send(Method::GET, "/bff/user", &[("cookie", &cookie)])
        .await;
    assert_eq!(user.status(), 401);
    let logout = s
        .send(Method::POST, "/bff/logout", &[("cookie", &cookie)])
        .await;
    assert_eq!(logout.status(), 401);
    assert_eq!(
        s.api.requests().len(),
        0,
        "no downstream call without the CSRF header"
    );

    let anonymous = s.send(Method::GET, "/api/orders", &[("x-csrf", "1")]).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(error_code(anonymous).await, "unauthenticated");
    assert_eq!(s.api.requests().len(), 0);

    // The same session with the header: the logout above did not end it.
    let ok = s.get(&session, "/api/orders").await;
    assert_eq!(ok.status(), 200);
    let same_origin = s
        .send(
            Method::GET,
            "/api/orders",
            &[
                ("cookie", &cookie),
                ("x-csrf", "1"),
                ("origin", &s.front.url()),
            ],
        )
        .await;
    assert_eq!(same_origin.status(), 200, "the BFF's own origin is allowed");
    assert_eq!(s.api.requests().len(), 2);
    let metrics = s.bff.admin_text("/metrics").await;
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("bff_csrf_rejected_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        rejected >= 5.0,
        "bff_csrf_rejected_total counts them:\n{metrics}"
    );
}

/// An access token that expires within `refresh_before` (30 s; the OP issues 5 s tokens at login) is
/// refreshed before the downstream call, once for 20 concurrent requests: the OP sees one refresh grant
/// (with rotation, a second use of the refresh token would revoke the whole grant), every request gets
/// 200 and the API sees the same new token in all 20. The new token (one hour) needs no refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_access_token_is_refreshed_once_under_20_concurrent_requests() {
    let s = setup_expiring("").await;
    let session = s.login("alice").await;
    s.op.set_ttl("AccessToken", 3600).await;
    let calls = (0..20).map(|_| s.get(&session, "/api/orders"));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(
        s.op.grants("refresh_token").await,
        1,
        "{}",
        s.op.stats().await
    );
    assert_eq!(s.op.grant_errors("refresh_token").await, 0);
    let tokens = s.bearer_tokens();
    assert_eq!(tokens.len(), 20);
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "one refreshed token for all: {tokens:?}"
    );

    let later = s.get(&session, "/api/orders").await;
    assert_eq!(later.status(), 200);
    assert_eq!(
        s.op.grants("refresh_token").await,
        1,
        "a fresh token is not refreshed"
    );
    let metrics = s.bff.admin_text("/metrics").await;
    assert!(metrics.contains("bff_session_refresh_total"), "{metrics}");
}

/// The user's name changes at the OP: the next refresh's ID token carries it, and `/bff/user` shows it
/// (the refresh made by a session route; `/bff/user` alone never refreshes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_changed_at_the_op_shows_after_the_next_refresh() {
    let s = setup_expiring("").await;
    let session = s.login("alice").await;
    let claims = |v: Value| v["claims"].clone();
    let user: Value = s.get(&session, "/bff/user").await.json().await.unwrap();
    assert_eq!(claims(user)["name"], "User alice");
    s.op.set_claims("alice", json!({"name": "Alice Renamed"}))
        .await;
    assert_eq!(s.get(&session, "/api/orders").await.status(), 200);
    assert_eq!(s.op.grants("refresh_token").await, 1);
    let user: Value = s.get(&session, "/bff/user").await.json().await.unwrap();
    assert_eq!(claims(user.clone())["name"], "Alice Renamed", "{user}");
    assert_eq!(claims(user)["sub"], "alice");
}

/// The OP revokes the grant (access and refresh tokens): the next request that needs a refresh is
/// refused by the OP, which ends the session: 401, no downstream call, and 401 for `/bff/user` after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_ends_the_session() {
    let s = setup_expiring("").await;
    let session = s.login("alice").await;
    assert_eq!(s.op.revoke("alice").await, 1);
    let resp = s.get(&session, "/api/orders").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(resp).await, "unauthenticated");
    assert_eq!(
        s.op.grant_errors("refresh_token").await,
        1,
        "the OP refused the refresh"
    );
    assert_eq!(s.api.requests().len(), 0);
    assert_eq!(s.get(&session, "/bff/user").await.status(), 401);
    assert_eq!(
        s.op.grant_errors("refresh_token").await,
        1,
        "an ended session is not refreshed again"
    );
}

/// `POST /bff/logout`: 200 with the OP's end-session URL, the cookie cleared, the refresh token
/// revoked at the OP, the session gone (`/bff/user` 401 with the old cookie).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_revokes_the_refresh_token_and_clears_the_cookie() {
    let s = setup().await;
    let session = s.login("alice").await;
    let cookie = session.cookie_header();
    let resp = s
        .send(
            Method::POST,
            "/bff/logout",
            &[("cookie", &cookie), ("x-csrf", "1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let cleared = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-bff="))
        .expect("the cookie is cleared")
        .to_ascii_lowercase();
    assert!(
        cleared.contains("max-age=0") || cleared.contains("expires=thu, 01 jan 1970"),
        "{cleared}"
    );
    let body: Value = resp.json().await.unwrap();
    let end = body["end_session_url"].as_str().expect("end_session_url");
    assert!(
        end.starts_with(&format!("{}/session/end", s.op.issuer())),
        "{end}"
    );
    assert_eq!(s.op.requests("POST", "/token/revocation", 200).await, 1);
    assert_eq!(s.get(&session, "/bff/user").await.status(), 401);
}

// ---- back-channel logout across instances sharing Redis ----

/// A program found on the PATH, or a failed test that names the package to install.
fn binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: Debian's {package} (scripts/test installs it)")
        })
}

/// redis-server on a free loopback port, killed (and its folder removed) when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir =
            std::env::temp_dir().join(format!("bff-sessions-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(binary("redis-server", "redis-server"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let mut redis = Self { child, port, dir };
        for _ in 0..300 {
            if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 16];
                if conn.write_all(b"PING\r\n").await.is_ok()
                    && tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                        .await
                        .is_ok_and(|r| r.is_ok_and(|n| buf[..n].starts_with(b"+PONG")))
                {
                    return redis;
                }
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited: {status}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        redis.child.kill().ok();
        panic!("redis-server did not answer on {port}")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A logout token signed by a key that is not the OP's.
fn forged_logout_token(issuer: &str, sid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": issuer, "aud": "web-bff", "iat": now, "exp": now + 120, "jti": "forged",
        "sub": "alice", "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt/rsa.pem")).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// Two instances share sessions through Redis (encrypted with the same `store_key`): a login on B is
/// a session on A. Forged logout tokens (another key's signature, `alg: none`, the OP's token for another
/// client) are refused with 400 and end nothing. The OP's real back-channel logout, sent to A, ends the
/// session on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_the_session_on_two_instances_sharing_redis() {
    let redis = Redis::start().await;
    let op = Provider::start().await;
    let (front_a, front_b) = (Front::start().await, Front::start().await);
    let client = op.register_bff(&[&front_a.url(), &front_b.url()]).await;
    op.register_client(json!({
        "client_id": "another-app",
        "client_secret": "another-app-secret-0123456789",
        "redirect_uris": ["http://127.0.0.1:9/cb"],
    }))
    .await;
    let api = Stub::start().await;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let extra = format!(
        "store = \"redis://127.0.0.1:{}/0\"\nstore_key = \"{key}\"",
        redis.port
    );
    let a = TestBff::start(&session_config(&op, &client, &front_a.url(), &extra, &api)).await;
    let b = TestBff::start(&session_config(&op, &client, &front_b.url(), &extra, &api)).await;
    front_a.forward_to(a.addr());
    front_b.forward_to(b.addr());

    let session = Browser::new().login(&front_b.url(), "/", "alice").await;
    let user = |bff: &TestBff| {
        bff.client()
            .get(bff.url("/bff/user"))
            .header("cookie", session.cookie_header())
            .header("x-csrf", "1")
            .send()
    };
    assert_eq!(
        user(&a).await.unwrap().status(),
        200,
        "B's session is a session on A"
    );
    let logins = op.sessions("alice").await;
    assert_eq!(logins.len(), 1);
    let sid = logins[0]["sid"].as_str().unwrap().to_owned();

    let post = |token: String| {
        a.client()
            .post(a.url("/bff/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("logout_token", token)]))
            .send()
    };
    let unsigned = {
        let header = b64url(br#"{"alg":"none","typ":"logout+jwt"}"#);
        let claims = jwt_claims(&forged_logout_token(op.issuer(), &sid));
        format!("{header}.{}.", b64url(claims.to_string().as_bytes()))
    };
    let for_another_client = op.logout_token("another-app", "alice", Some(&sid)).await;
    for (what, token) in [
        ("another key", forged_logout_token(op.issuer(), &sid)),
        ("alg none", unsigned),
        ("another audience", for_another_client),
        ("not a JWT", "not-a-jwt".to_owned()),
    ] {
        let resp = post(token).await.unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        assert_eq!(
            user(&b).await.unwrap().status(),
            200,
            "{what}: the session is alive"
        );
    }

    let (sent, errors) = op.backchannel_logout("alice").await;
    assert_eq!(
        (sent, errors),
        (1, vec![]),
        "A accepted the OP's logout token"
    );
    assert_eq!(user(&a).await.unwrap().status(), 401);
    assert_eq!(
        user(&b).await.unwrap().status(),
        401,
        "ended on the other instance too"
    );
    drop(redis);
}

// ---- what the logs never show ----

/// A login, an API call with a refresh, a logout and an invalid callback with the log captured at
/// DEBUG: the access token, the code, the cookie's value, the client secret and the store key appear
/// nowhere in it, nor in `/admin/config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_code_or_cookie_value_in_the_log() {
    // Everything logged in this test process (every test's BFF), at DEBUG.
    let logs = CapturedLog::install(tracing::Level::DEBUG);
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let s = setup_expiring(&format!("store_key = \"{key}\"")).await;
    let browser = Browser::new();
    let login = format!("{}/bff/login?returnUrl=%2F", s.front.url());
    let authorized = browser.authorize(&login, "alice").await;
    let code = authorized.param("code").unwrap();
    let resp = browser.callback(&authorized.callback).await;
    assert_eq!(resp.status(), 302);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-bff="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let session = Session {
        name: "__Host-bff".into(),
        value: cookie.clone(),
        set_cookie: String::new(),
        location: "/".into(),
    };
    assert_eq!(s.get(&session, "/api/orders").await.status(), 200);
    assert_eq!(s.op.grants("refresh_token").await, 1);
    let token = s.bearer_tokens()[0]
        .trim_start_matches("Bearer ")
        .to_owned();
    // A bad callback (the code again) and a logout.
    let _ = browser.callback(&authorized.callback).await;
    let logout = s
        .send(
            Method::POST,
            "/bff/logout",
            &[("cookie", &session.cookie_header()), ("x-csrf", "1")],
        )
        .await;
    assert_eq!(logout.status(), 200);

    let config = s.bff.admin_json("/admin/config").await.to_string();
    let text = logs.text();
    assert!(text.len() > 100, "the log was captured: {text}");
    for (what, secret) in [
        ("access token", token.as_str()),
        ("code", code.as_str()),
        ("cookie value", cookie.as_str()),
        ("client secret", "web-bff-test-secret-0123456789"),
        ("store key", key.as_str()),
    ] {
        assert!(!text.contains(secret), "the {what} is in the log:\n{text}");
        assert!(
            !config.contains(secret),
            "the {what} is in /admin/config: {config}"
        );
    }
}

// ---- a real browser ----

/// Headless Chromium (Debian's, which scripts/test installs) through the whole flow, driven by
/// `tests/browser/session.mjs` (npm puppeteer-core, pinned; no browser download): the web template's page
/// (`bff-templates/web-oidc/static/index.html`, served by the BFF at `/`) shows "Signed out"; "Log in"
/// goes to `/bff/login`, Chromium follows to the OP, signs in on the OP's own login page, consents on its
/// consent page and lands back on the page, which shows `/bff/user`; "Call the API" reaches the stub with
/// the bearer token and without the cookie; "Log out" posts `/bff/logout` and follows the OP's
/// end-session URL (the OP's own confirmation page, then its redirect back to the page); the page shows
/// "Signed out" again and the old cookie gets 401. No request of the browser fails on the way.
///
/// The page is served over plain `http://127.0.0.1`: Chromium treats loopback as a secure context and
/// keeps the `Secure`, `__Host-` cookie (checked here: it is the cookie Chromium holds, `HttpOnly`, and
/// `document.cookie` does not show it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_on_the_op_calls_the_api_and_signs_out() {
    chromium_flow(ProviderOptions::default()).await;
}

/// The same flow with the OP on another site (`localhost` while the page is on `127.0.0.1`), as a real
/// provider is: the provider's redirect to `/bff/callback` is a cross-site navigation, which a
/// `SameSite=Strict` cookie does not come back with (the login in progress is bound to the browser by
/// a `Lax` cookie), and the page's own calls still carry the `Strict` session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_the_op_on_another_site() {
    chromium_flow(ProviderOptions {
        host: Some("localhost".into()),
        ..ProviderOptions::default()
    })
    .await;
}

async fn chromium_flow(options: ProviderOptions) {
    let op = Provider::start_with(options).await;
    let front = Front::start().await;
    let client = op.register_bff(&[&front.url()]).await;
    let api = Stub::start().await;
    api.on("/orders").json(json!([{"id": "o1"}]));
    let mut config = bff::config::Loader::new()
        .with_env(Default::default())
        .load_str(
            &session_config(&op, &client, &front.url(), "", &api),
            bff::config::Format::Toml,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    config.telemetry.access_log = false;
    let page = include_str!("../bff-templates/web-oidc/static/index.html");
    let app = bff::App::new(config).unwrap().route(
        "/",
        bff::axum::routing::get(move || async move { bff::axum::response::Html(page) }),
    );
    let bff = TestBff::start_app(app).await;
    front.forward_to(bff.addr());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/session.mjs");
    let modules = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/node_modules");
    if !std::path::Path::new(modules).is_dir() {
        let status = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--prefix",
                concat!(env!("CARGO_MANIFEST_DIR"), "/browser"),
            ])
            .status()
            .expect("npm (Node.js)");
        assert!(status.success(), "npm ci --prefix tests/browser");
    }
    let args = json!({
        "url": format!("{}/", front.url()),
        "user": "alice",
        "chromium": binary("chromium", "chromium").display().to_string(),
    });
    // session.mjs bounds each step; this bounds the browser's start and end too (killed on drop).
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(script)
            .arg(args.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node and chromium did not finish the login within 180 s")
    .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success() && report["error"].is_null(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert!(
        steps[1].starts_with(op.issuer()),
        "the OP's own login page: {steps:?}"
    );
    assert!(
        steps[2].starts_with(op.issuer()),
        "the OP's own consent page: {steps:?}"
    );
    assert_eq!(
        steps[3],
        format!("{}/", front.url()),
        "back on the page: {steps:?}"
    );
    // Logout: the OP's end-session page (its own confirmation), then back to the page.
    assert!(
        steps[4].starts_with(&format!("{}/session/end?", op.issuer())),
        "{steps:?}"
    );
    assert_eq!(report["steps"][5]["name"], "OP logout page", "{steps:?}");
    assert_eq!(
        steps[6],
        format!("{}/", front.url()),
        "post_logout_redirect: {steps:?}"
    );
    assert_eq!(
        report["failed"],
        json!([]),
        "every request and navigation answered"
    );
    assert_eq!(report["before"], "Signed out");
    assert_eq!(report["signed_in"], "Signed in as User alice");
    assert_eq!(report["user"]["claims"]["email"], "alice@example.test");
    assert_eq!(report["after_logout"], "Signed out");

    let cookie = &report["cookie"];
    assert_eq!(cookie["name"], "__Host-bff", "{report:#}");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/");
    assert_eq!(
        report["document_cookie"], "",
        "no script sees the session cookie"
    );

    assert_eq!(report["api_status"], 200, "{report:#}");
    let seen = api.requests();
    assert_eq!(seen.len(), 1);
    let bearer = seen[0].headers["authorization"].to_str().unwrap();
    assert!(
        bearer.starts_with("Bearer ") && bearer.len() > 20,
        "{bearer}"
    );
    assert!(
        seen[0].headers.get("cookie").is_none(),
        "the stub never sees the cookie"
    );

    // The session Chromium held is over.
    let old = bff
        .client()
        .get(bff.url("/bff/user"))
        .header(
            "cookie",
            format!("__Host-bff={}", cookie["value"].as_str().unwrap()),
        )
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
}

// ---- the BFF's own client authentication and token ----

/// `client_auth = "private_key_jwt"`: the BFF authenticates at the OP's token endpoint with a JWT signed
/// by `key_file`; the OP has the client's public key (JWKS) and no secret. The code exchange and a refresh
/// work, and the OP counted them as this client's grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_authenticates_the_code_exchange_and_the_refresh() {
    let op = Provider::start_with(ProviderOptions {
        access_token_ttl: Some(5),
        ..ProviderOptions::default()
    })
    .await;
    let front = Front::start().await;
    let jwks: Value = serde_json::from_str(include_str!("fixtures/jwt/jwks.json")).unwrap();
    op.register_client(json!({
        "client_id": "web-bff-jwt",
        "jwks": jwks,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "redirect_uris": [format!("{}/bff/callback", front.url())],
    }))
    .await;
    let api = Stub::start().await;
    api.on("/orders").json(json!([]));
    let bff = TestBff::start(&format!(
        r#"
[session]
issuer = "{issuer}"
client_id = "web-bff-jwt"
client_auth = "private_key_jwt"
key_file = "{key}"
public_url = "{public_url}"

[services.orders]
endpoints = ["{api}"]
token = "user"

[[routes]]
path = "/api/orders"
auth = "session"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders"
"#,
        issuer = op.issuer(),
        key = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt/rsa.pem"),
        public_url = front.url(),
        api = api.endpoint(),
    ))
    .await;
    front.forward_to(bff.addr());

    let session = Browser::new().login(&front.url(), "/", "carol").await;
    assert_eq!(op.grants("authorization_code").await, 1);
    let resp = bff
        .client()
        .get(bff.url("/api/orders"))
        .header("cookie", session.cookie_header())
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        op.grants("refresh_token").await,
        1,
        "a 5 s token is refreshed"
    );
    assert_eq!(op.grant_errors("refresh_token").await, 0);
}

/// A service with `token = "client"` gets the BFF's own client-credentials token from the OP, on a
/// route without any session, fetched once and reused while it is valid; a service without `token` gets
/// no `authorization` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_client_is_the_bffs_own_client_credentials_token_fetched_once() {
    let op = Provider::start().await;
    let front = Front::start().await;
    let client = op.register_bff(&[&front.url()]).await;
    let (partner, plain) = (Stub::start().await, Stub::start().await);
    partner.on("/rates").json(json!({"eur": 1}));
    plain.on("/news").json(json!([]));
    let bff = TestBff::start(&format!(
        r#"
[session]
issuer = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
public_url = "{public_url}"

[services.partner]
endpoints = ["{partner}"]
token = "client"

[services.plain]
endpoints = ["{plain}"]

[[routes]]
path = "/api/rates"
[[routes.backends]]
name = "rates"
service = "partner"
path = "/rates"
[[routes.backends]]
name = "news"
service = "plain"
path = "/news"
"#,
        issuer = op.issuer(),
        id = client.id,
        secret = client.secret,
        public_url = front.url(),
        partner = partner.endpoint(),
        plain = plain.endpoint(),
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(bff.get("/api/rates").await.status(), 200);
    }
    let tokens: Vec<String> = partner
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens[0].starts_with("Bearer ") && tokens.iter().all(|t| *t == tokens[0]),
        "{tokens:?}"
    );
    assert_eq!(
        op.grants("client_credentials").await,
        1,
        "fetched once, then cached"
    );
    assert!(
        plain
            .requests()
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
}

/// A logout token with `sub` and no `sid` (a client registered without
/// `backchannel_logout_session_required`): every session of that user ends, another user's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_by_sub_ends_every_session_of_that_user_only() {
    let op = Provider::start().await;
    let front = Front::start().await;
    let client = op.register_bff(&[&front.url()]).await;
    // The same client, but the OP's logout tokens carry no sid.
    op.register_client(json!({
        "client_id": client.id,
        "client_secret": client.secret,
        "redirect_uris": [format!("{}/bff/callback", front.url())],
        "backchannel_logout_uri": format!("{}/bff/backchannel-logout", front.url()),
        "backchannel_logout_session_required": false,
    }))
    .await;
    let api = Stub::start().await;
    let bff = TestBff::start(&session_config(&op, &client, &front.url(), "", &api)).await;
    front.forward_to(bff.addr());

    let alice_1 = Browser::new().login(&front.url(), "/", "alice").await;
    let alice_2 = Browser::new().login(&front.url(), "/", "alice").await;
    let bob = Browser::new().login(&front.url(), "/", "bob").await;
    let status = |session: &Session| {
        bff.client()
            .get(bff.url("/bff/user"))
            .header("cookie", session.cookie_header())
            .header("x-csrf", "1")
            .send()
    };
    for s in [&alice_1, &alice_2, &bob] {
        assert_eq!(status(s).await.unwrap().status(), 200);
    }
    let token = op.logout_token(&client.id, "alice", None).await;
    assert!(jwt_claims(&token)["sid"].is_null(), "a sub-only token");
    let resp = bff
        .client()
        .post(bff.url("/bff/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("logout_token", token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(status(&alice_1).await.unwrap().status(), 401);
    assert_eq!(status(&alice_2).await.unwrap().status(), 401);
    assert_eq!(
        status(&bob).await.unwrap().status(),
        200,
        "another user's session stays"
    );
}
