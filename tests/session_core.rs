//! Browser sessions (the OAuth 2.0 BFF pattern) against a scripted OpenID Provider: an axum server on
//! loopback with a discovery document, the JWKS of the test RSA key (fixtures/jwt), a token endpoint that
//! checks client authentication and the PKCE verifier, counts refreshes and can hold one, a revocation
//! endpoint. The "browser" is a client without a cookie jar: each test carries cookies by hand, so what
//! the BFF sets is what the test reads. The real-provider tests (npm oidc-provider, Chromium) are
//! tests/sessions.rs.

use base64::Engine as _;
use bff::axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use bff_testkit::{Stub, TestBff};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, encode};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::watch;

const JWT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/jwt");
const SECRET: &str = "web-client-secret";
const BACKCHANNEL: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Makes each logout token's `jti` unique.
static JTI: AtomicUsize = AtomicUsize::new(0);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value, pem: &str) -> String {
    sign_as(claims, pem, "k1")
}

fn sign_as(claims: &Value, pem: &str, kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let pem = std::fs::read(format!("{JWT}/{pem}")).unwrap();
    encode(&h, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

// ---- the log of the whole test binary, captured to be searched for secrets ----

#[derive(Clone)]
struct Captured;

static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.get_or_init(Mutex::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of every level, of every test of this binary, kept in memory.
fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| Captured)
            .with_ansi(false)
            .try_init();
    });
}

fn captured() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Mutex::default).lock().unwrap()).into_owned()
}

// ---- the OpenID Provider ----

/// What the provider issued and saw.
#[derive(Default)]
struct OpState {
    /// code -> (nonce, PKCE challenge, sub, sid)
    codes: HashMap<String, (String, String, String, String)>,
    /// Refresh tokens that are still valid.
    refresh_tokens: HashSet<String>,
    revoked: Vec<String>,
    issued: usize,
    refreshes: usize,
    client_credentials: usize,
    /// Each token request's client authentication: "basic:ID:SECRET" or "jwt:ISS".
    client_auth: Vec<String>,
    /// Lifetime of the access tokens of a code exchange and of a refresh.
    first_expires_in: u64,
    refreshed_expires_in: u64,
    /// The nonce the next ID token carries instead of the login's.
    wrong_nonce: bool,
    /// The ID token refresh responses carry, if any: (sub, key that signs it).
    refresh_id_token: Option<(String, String)>,
    /// More claims of that ID token (a changed `name`...).
    refresh_claims: serde_json::Map<String, Value>,
}

/// Serves `app` on kept-alive connections that answer their first request only: the next one closes
/// the connection without an answer (hyper closes a connection whose service fails).
async fn serve_one_request_a_connection(listener: tokio::net::TcpListener, app: Router) {
    use hyper::service::Service as _;
    while let Ok((stream, _)) = listener.accept().await {
        let app = hyper_util::service::TowerToHyperService::new(app.clone());
        let served = Arc::new(AtomicUsize::new(0));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (app, first) = (app.clone(), served.fetch_add(1, Ordering::SeqCst) == 0);
                async move {
                    if !first {
                        return Err("a kept connection, closing");
                    }
                    app.call(req).await.map_err(|never| match never {})
                }
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Clone)]
struct Op {
    addr: SocketAddr,
    state: Arc<Mutex<OpState>>,
    /// While false, refresh grants wait.
    release: Arc<watch::Sender<bool>>,
    refresh_arrived: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
    /// The JWKS served (fixtures/jwt/jwks.json at start), and how often it was fetched.
    jwks: Arc<Mutex<String>>,
    jwks_hits: Arc<AtomicUsize>,
}

impl Op {
    async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(addr: SocketAddr) -> Self {
        Self::serve(addr, false).await
    }

    /// An OP that keeps connections alive but answers one request on each: a second request on a kept
    /// connection closes it unanswered, as a server closing an idle connection at that moment does.
    async fn start_closing_kept_connections() -> Self {
        Self::serve("127.0.0.1:0".parse().unwrap(), true).await
    }

    async fn serve(addr: SocketAddr, one_request_a_connection: bool) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let op = Op {
            addr,
            state: Arc::new(Mutex::new(OpState {
                first_expires_in: 3600,
                refreshed_expires_in: 3600,
                ..Default::default()
            })),
            release: Arc::new(watch::channel(true).0),
            refresh_arrived: Arc::default(),
            discovery_hits: Arc::default(),
            jwks: Arc::new(Mutex::new(
                std::fs::read_to_string(format!("{JWT}/jwks.json")).unwrap(),
            )),
            jwks_hits: Arc::default(),
        };
        let issuer = op.issuer();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/session/end"),
            "revocation_endpoint": format!("{issuer}/revoke"),
        });
        let hits = op.discovery_hits.clone();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let d = discovery.clone();
                    async move { Json(d) }
                }),
            )
            .route(
                "/jwks",
                get(|State(op): State<Op>| async move {
                    op.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    let j = op.jwks.lock().unwrap().clone();
                    ([("content-type", "application/json")], j)
                }),
            )
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .with_state(op.clone());
        if one_request_a_connection {
            tokio::spawn(serve_one_request_a_connection(listener, app));
        } else {
            tokio::spawn(async move { bff::axum::serve(listener, app).await.unwrap() });
        }
        op
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the provider does when the user signs in: a code for the login's nonce and challenge.
    fn authorize(&self, login: &HashMap<String, String>, sub: &str, sid: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.issued += 1;
        let code = format!("code-{}", s.issued);
        s.codes.insert(
            code.clone(),
            (
                login["nonce"].clone(),
                login["code_challenge"].clone(),
                sub.into(),
                sid.into(),
            ),
        );
        code
    }

    fn id_token(&self, sub: &str, sid: &str, nonce: &str) -> String {
        sign(
            &json!({
                "iss": self.issuer(), "aud": "web", "sub": sub, "sid": sid, "nonce": nonce,
                "iat": now(), "exp": now() + 3600,
                "name": format!("name of {sub}"), "email": format!("{sub}@example.com"),
            }),
            "rsa.pem",
        )
    }

    fn logout_token(&self, claims: Value, pem: &str) -> String {
        self.logout_token_as(claims, pem, "k1")
    }

    fn logout_token_as(&self, claims: Value, pem: &str, kid: &str) -> String {
        let mut base = json!({
            "iss": self.issuer(), "aud": "web", "iat": now(), "exp": now() + 120,
            "jti": format!("j{}-{}", now(), JTI.fetch_add(1, Ordering::SeqCst)),
            "events": { BACKCHANNEL: {} },
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        sign_as(&base, pem, kid)
    }

    fn with<T>(&self, f: impl FnOnce(&mut OpState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn client_of(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    token_url: &str,
) -> Option<String> {
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let pair = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let pair = String::from_utf8(pair).ok()?;
        let (id, secret) = pair.split_once(':')?;
        return (id == "web" && secret == SECRET).then(|| format!("basic:{id}:{secret}"));
    }
    let assertion = form.get("client_assertion")?;
    let pem = std::fs::read(format!("{JWT}/rsa.pub.pem")).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[token_url]);
    v.set_issuer(&["web"]);
    let data =
        jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_rsa_pem(&pem).unwrap(), &v)
            .ok()?;
    (data.claims["sub"] == "web" && form.get("client_id").map(String::as_str) == Some("web"))
        .then(|| "jwt:web".to_string())
}

fn oauth_error(code: &str) -> bff::axum::response::Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": code }))).into_response()
}

async fn token(
    State(op): State<Op>,
    headers: HeaderMap,
    body: Bytes,
) -> bff::axum::response::Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token_url = format!("{}/token", op.issuer());
    let Some(client) = client_of(&headers, &form, &token_url) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    };
    op.with(|s| s.client_auth.push(client));
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((nonce, challenge, sub, sid)) =
                op.with(|s| s.codes.remove(form.get("code").map_or("", String::as_str)))
            else {
                return oauth_error("invalid_grant");
            };
            let verifier = form.get("code_verifier").map_or("", String::as_str);
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return oauth_error("invalid_grant");
            }
            let (n, expires_in, wrong_nonce) = op.with(|s| {
                s.issued += 1;
                (s.issued, s.first_expires_in, s.wrong_nonce)
            });
            let nonce = if wrong_nonce {
                "another-nonce".into()
            } else {
                nonce
            };
            let rt = format!("rt-{sub}-{n}");
            op.with(|s| s.refresh_tokens.insert(rt.clone()));
            Json(json!({
                "access_token": format!("at-{sub}-{n}"),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": rt,
                "id_token": op.id_token(&sub, &sid, &nonce),
            }))
            .into_response()
        }
        Some("refresh_token") => {
            op.refresh_arrived.fetch_add(1, Ordering::SeqCst);
            let mut release = op.release.subscribe();
            let _ = release.wait_for(|r| *r).await;
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            // Rotation: the refresh token is used once.
            if !op.with(|s| s.refresh_tokens.remove(&rt)) {
                return oauth_error("invalid_grant");
            }
            let (n, expires_in) = op.with(|s| {
                s.refreshes += 1;
                s.issued += 1;
                (s.issued, s.refreshed_expires_in)
            });
            let new_rt = format!("{rt}-r{n}");
            op.with(|s| s.refresh_tokens.insert(new_rt.clone()));
            let mut body = json!({
                "access_token": format!("at-refreshed-{n}"),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": new_rt,
            });
            if let Some((sub, pem)) = op.with(|s| s.refresh_id_token.clone()) {
                let mut claims = json!({
                    "iss": op.issuer(), "aud": "web", "sub": sub, "sid": "sid-refreshed",
                    "iat": now(), "exp": now() + 3600,
                });
                for (k, v) in op.with(|s| s.refresh_claims.clone()) {
                    claims[k] = v;
                }
                body["id_token"] = sign(&claims, &pem).into();
            }
            Json(body).into_response()
        }
        Some("client_credentials") => {
            let mut release = op.release.subscribe();
            let _ = release.wait_for(|r| *r).await;
            let n = op.with(|s| {
                s.client_credentials += 1;
                s.client_credentials
            });
            Json(json!({
                "access_token": format!("client-at-{n}"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
            .into_response()
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

async fn revoke(State(op): State<Op>, body: Bytes) -> StatusCode {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let t = form.get("token").cloned().unwrap_or_default();
    op.with(|s| {
        s.refresh_tokens.remove(&t);
        s.revoked.push(t);
    });
    StatusCode::OK
}

// ---- the BFF and the browser ----

struct Setup {
    op: Op,
    api: Stub,
    partner: Stub,
    plain: Stub,
    bff: TestBff,
}

/// A BFF with sessions at `op`, `extra` keys in `[session]`, and routes calling three services: `api`
/// (token = "user"), `partner` (token = "client"), `plain` (none).
async fn setup(extra: &str) -> Setup {
    setup_with_op(Op::start().await, extra).await
}

/// [`setup`] with this provider.
async fn setup_with_op(op: Op, extra: &str) -> Setup {
    capture_logs();
    let (api, partner, plain) = (
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    );
    for s in [&api, &partner, &plain] {
        s.on("/orders").json(json!([1, 2]));
    }
    let bff = TestBff::start(&config(&op.issuer(), &api, &partner, &plain, extra, "")).await;
    Setup {
        op,
        api,
        partner,
        plain,
        bff,
    }
}

fn config(
    issuer: &str,
    api: &Stub,
    partner: &Stub,
    plain: &Stub,
    extra: &str,
    top: &str,
) -> String {
    format!(
        r#"
{top}
[session]
issuer = "{issuer}"
client_id = "web"
client_secret = "{SECRET}"
public_url = "https://app.test"
{extra}

[services.api]
endpoints = ["{api}"]
token = "user"

[services.partner]
endpoints = ["{partner}"]
token = "client"

[services.plain]
endpoints = ["{plain}"]

[[routes]]
path = "/api/orders"
auth = "session"
forward_headers = ["x-app-trace"]
[[routes.backends]]
name = "orders"
service = "api"
path = "/orders"

[[routes]]
path = "/api/all"
auth = "session"
[[routes.backends]]
name = "user"
service = "api"
path = "/orders"
[[routes.backends]]
name = "partner"
service = "partner"
path = "/orders"
[[routes.backends]]
name = "plain"
service = "plain"
path = "/orders"

[[routes]]
path = "/api/public"
[[routes.backends]]
name = "partner"
service = "partner"
path = "/orders"
"#,
        api = api.endpoint(),
        partner = partner.endpoint(),
        plain = plain.endpoint(),
    )
}

/// `name=value` of the response's `Set-Cookie` for `name`, and the whole header.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<(String, String)> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| {
            let pair = c.split(';').next().unwrap().to_string();
            (pair, c.to_string())
        })
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(q).unwrap()
}

/// A signed-in browser: its session cookie (`name=value`).
struct Browser {
    cookie: String,
}

/// `GET /bff/login`, the provider's sign-in as `sub` with session `sid`, then the callback: the session
/// cookie. `cookie_name` and `callback` as configured.
async fn sign_in(s: &Setup, sub: &str, sid: &str, cookie_name: &str, callback: &str) -> Browser {
    let res = s.bff.get("/bff/login?returnUrl=/app/home").await;
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let login = query_of(&location);
    let (login_cookie, _) = set_cookie(&res, &format!("{cookie_name}-login")).unwrap();
    let code = s.op.authorize(&login, sub, sid);
    let res = s
        .bff
        .client()
        .get(
            s.bff
                .url(&format!("{callback}?code={code}&state={}", login["state"])),
        )
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    assert_eq!(res.headers()["location"], "/app/home");
    let (cookie, _) = set_cookie(&res, cookie_name).unwrap();
    Browser { cookie }
}

impl Browser {
    async fn get(&self, bff: &TestBff, path: &str) -> reqwest::Response {
        bff.client()
            .get(bff.url(path))
            .header("cookie", format!("theme=dark; {}", self.cookie))
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap()
    }
}

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A back-channel logout request's body.
fn form_body(token: &str) -> String {
    serde_urlencoded::to_string([("logout_token", token)]).unwrap()
}

// ---- the tests ----

/// Login: a 302 to the provider's authorization endpoint with the code flow, PKCE S256, state, nonce,
/// the configured scopes and the redirect URI built from public_url and redirect_path; the callback
/// exchanges the code as a confidential client (client_secret_basic), sets the cookie (the configured
/// name and SameSite, Secure, HttpOnly, Path=/, no Domain, no token in it) and redirects to returnUrl;
/// GET /bff/user returns the allow-listed claims.
#[tokio::test]
async fn login_sets_a_host_cookie_and_user_returns_the_allowed_claims() {
    let s = setup(
        r#"cookie_name = "__Host-app"
same_site = "lax"
redirect_path = "/auth/cb"
scopes = ["openid", "email", "offline_access"]
user_claims = ["sub", "email"]"#,
    )
    .await;
    let res = s.bff.get("/bff/login?returnUrl=/app/home%3Fx%3D1").await;
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/authorize?", s.op.issuer())),
        "{location}"
    );
    let login = query_of(&location);
    assert_eq!(login["response_type"], "code");
    assert_eq!(login["client_id"], "web");
    assert_eq!(login["redirect_uri"], "https://app.test/auth/cb");
    assert_eq!(login["scope"], "openid email offline_access");
    assert_eq!(login["code_challenge_method"], "S256");
    assert_eq!(login["code_challenge"].len(), 43);
    assert!(login["state"].len() >= 43 && login["nonce"].len() >= 43);
    let (login_cookie, attrs) = set_cookie(&res, "__Host-app-login").unwrap();
    assert!(attrs.contains("HttpOnly") && attrs.contains("Secure") && attrs.contains("Path=/"));

    let code = s.op.authorize(&login, "alice", "sid-a");
    let res = s
        .bff
        .client()
        .get(
            s.bff
                .url(&format!("/auth/cb?code={code}&state={}", login["state"])),
        )
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "/app/home?x=1");
    let (cookie, attrs) = set_cookie(&res, "__Host-app").unwrap();
    let parts: Vec<&str> = attrs.split(';').map(str::trim).collect();
    for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(parts.contains(&a), "{attrs}");
    }
    assert!(!attrs.to_ascii_lowercase().contains("domain"), "{attrs}");
    let value = cookie.split_once('=').unwrap().1;
    assert_eq!(value.len(), 43);
    assert!(!value.contains("at-"));
    // The login cookie is cleared.
    let (_, cleared) = set_cookie(&res, "__Host-app-login").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        s.op.with(|o| o.client_auth[0].clone()),
        format!("basic:web:{SECRET}")
    );

    let browser = Browser { cookie };
    let res = browser.get(&s.bff, "/bff/user").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["claims"],
        json!({"sub": "alice", "email": "alice@example.com"})
    );
    assert!(body["expires_at"].as_u64().unwrap() > now());
}

/// The callback refuses a wrong state, an ID token with another nonce, a code whose PKCE verifier does
/// not match (the provider refuses the exchange), a login completed twice, and a callback without the
/// login cookie: 400 with the JSON error, no session cookie.
#[tokio::test]
async fn the_callback_refuses_a_wrong_state_nonce_or_verifier() {
    let s = setup("").await;
    async fn login(s: &Setup) -> (HashMap<String, String>, String) {
        let res = s.bff.get("/bff/login").await;
        let location = res.headers()["location"].to_str().unwrap().to_string();
        (
            query_of(&location),
            set_cookie(&res, "__Host-bff-login").unwrap().0,
        )
    }
    let callback = |cookie: Option<String>, query: String| {
        let bff = &s.bff;
        async move {
            let mut req = bff.client().get(bff.url(&format!("/bff/callback?{query}")));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send().await.unwrap()
        }
    };
    let refused = |res: reqwest::Response| async move {
        assert!(set_cookie(&res, "__Host-bff").is_none());
        error_code(res).await
    };

    // Wrong state.
    let (q, c) = login(&s).await;
    let code = s.op.authorize(&q, "u", "s");
    let res = callback(Some(c), format!("code={code}&state=forged")).await;
    assert_eq!(refused(res).await, (400, "login_failed".into()));

    // Another nonce in the ID token.
    let (q, c) = login(&s).await;
    let code = s.op.authorize(&q, "u", "s");
    s.op.with(|o| o.wrong_nonce = true);
    let res = callback(Some(c), format!("code={code}&state={}", q["state"])).await;
    assert_eq!(refused(res).await, (400, "login_failed".into()));
    s.op.with(|o| o.wrong_nonce = false);

    // A code issued for another challenge: the verifier does not match, the provider refuses.
    let (mut q, c) = login(&s).await;
    let state = q["state"].clone();
    q.insert("code_challenge".into(), "A".repeat(43));
    let code = s.op.authorize(&q, "u", "s");
    let res = callback(Some(c), format!("code={code}&state={state}")).await;
    assert_eq!(refused(res).await, (400, "login_failed".into()));

    // A good login works once; the same callback again is refused, as is one without the login cookie.
    let (q, c) = login(&s).await;
    let code = s.op.authorize(&q, "u", "s");
    let query = format!("code={code}&state={}", q["state"]);
    let ok = callback(Some(c.clone()), query.clone()).await;
    assert_eq!(ok.status(), 302);
    assert!(set_cookie(&ok, "__Host-bff").is_some());
    assert_eq!(refused(callback(Some(c), query.clone()).await).await.0, 400);
    assert_eq!(refused(callback(None, query).await).await.0, 400);
}

/// returnUrl must be a local path: absolute URLs, protocol-relative ones, backslashes and control
/// characters are refused with the JSON 400, without a redirect.
#[tokio::test]
async fn open_redirects_are_refused() {
    let s = setup("").await;
    for bad in [
        "https://evil.test/",
        "//evil.test",
        "/%5Cevil.test",
        "%2F%2Fevil.test",
        "javascript:alert(1)",
        "evil",
        "/a%0d%0aSet-Cookie:x=y",
        "/a%20b",
        "/%C3%BC",
    ] {
        let res = s.bff.get(&format!("/bff/login?returnUrl={bad}")).await;
        assert!(res.headers().get("location").is_none(), "{bad}");
        assert_eq!(error_code(res).await, (400, "bad_request".into()), "{bad}");
    }
    assert_eq!(s.bff.get("/bff/login?returnUrl=/ok").await.status(), 302);
}

/// Session routes, /bff/user and /bff/logout need the configured CSRF header with the value 1 and an
/// allowed Origin: without them 401 `csrf` and no downstream call; without a session 401
/// `unauthenticated`. With both, the downstream call carries the user's token and none of the client's
/// cookies; bff_csrf_rejected_total counts the refusals.
#[tokio::test]
async fn session_requests_need_the_csrf_header_before_any_downstream_call() {
    let s = setup(r#"csrf_header = "x-app-csrf""#).await;
    let b = sign_in(&s, "alice", "sid-a", "__Host-bff", "/bff/callback").await;
    let send = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let bff = &s.bff;
        async move {
            let mut req = bff.client().get(bff.url(path));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.unwrap()
        }
    };
    let cookie = ("cookie", format!("theme=dark; {}", b.cookie));
    let csrf = ("x-app-csrf", "1".to_string());
    for (path, headers) in [
        ("/api/orders", vec![cookie.clone()]),
        // The default header name is not the configured one.
        ("/api/orders", vec![cookie.clone(), ("x-csrf", "1".into())]),
        (
            "/api/orders",
            vec![cookie.clone(), ("x-app-csrf", "true".into())],
        ),
        (
            "/api/orders",
            vec![
                cookie.clone(),
                csrf.clone(),
                ("origin", "https://evil.test".into()),
            ],
        ),
        ("/bff/user", vec![cookie.clone()]),
    ] {
        let res = send(path, headers.clone()).await;
        assert_eq!(
            error_code(res).await,
            (401, "csrf".into()),
            "{path} {headers:?}"
        );
    }
    let res = send("/api/orders", vec![csrf.clone()]).await;
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
    let forged = ("cookie", format!("__Host-bff={}", "A".repeat(43)));
    let res = send("/api/orders", vec![csrf.clone(), forged]).await;
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
    assert!(
        s.api.requests().is_empty(),
        "a refused request reached the service"
    );

    let res = send(
        "/api/orders",
        vec![
            cookie.clone(),
            csrf.clone(),
            ("origin", "https://app.test".into()),
            ("x-app-trace", "t1".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let seen = &s.api.requests()[0];
    assert_eq!(seen.headers["authorization"], "Bearer at-alice-2");
    assert!(seen.headers.get("cookie").is_none());
    assert_eq!(seen.headers["x-app-trace"], "t1");
    let metrics = s.bff.admin_text("/metrics").await;
    assert!(metrics.contains("bff_csrf_rejected_total 5"), "{metrics}");
    assert!(metrics.contains("bff_sessions_active 1"), "{metrics}");
}

/// token = "user" gets the session's access token, token = "client" the BFF's client-credentials token
/// (fetched once, by one of 10 concurrent calls, then cached, with or without a session), a service
/// without `token` nothing; none of them the client's cookie.
#[tokio::test]
async fn each_service_gets_the_token_its_mode_names_and_never_the_cookie() {
    let s = setup("").await;
    // 10 concurrent calls before the BFF has a client token: one fetch, held by the provider until the 10
    // are in flight, shared by all.
    s.op.release.send_replace(false);
    let public: Vec<_> = (0..10)
        .map(|_| {
            let req = s.bff.client().get(s.bff.url("/api/public"));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s
        .bff
        .admin_text("/metrics")
        .await
        .contains("bff_inflight_requests 10")
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.op.release.send_replace(true);
    for t in public {
        assert_eq!(t.await.unwrap(), 200);
    }
    let b = sign_in(&s, "bob", "sid-b", "__Host-bff", "/bff/callback").await;
    for _ in 0..2 {
        assert_eq!(b.get(&s.bff, "/api/all").await.status(), 200);
    }
    let auth = |stub: &Stub| -> Vec<Option<String>> {
        stub.requests()
            .iter()
            .map(|r| {
                assert!(r.headers.get("cookie").is_none());
                r.headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string())
            })
            .collect()
    };
    assert_eq!(auth(&s.api), vec![Some("Bearer at-bob-2".to_string()); 2]);
    assert_eq!(
        auth(&s.partner),
        vec![Some("Bearer client-at-1".to_string()); 12]
    );
    assert_eq!(auth(&s.plain), vec![None, None]);
    assert_eq!(s.op.with(|o| o.client_credentials), 1);
}

/// An access token expiring within refresh_before is refreshed before the downstream call, once for 20
/// concurrent requests of the session (the provider holds the refresh until the 20 are in flight; its
/// refresh tokens are single-use, so a second refresh would fail and end the session), and every call
/// carries the new token.
#[tokio::test]
async fn an_expiring_token_is_refreshed_once_for_20_concurrent_requests() {
    let s = setup(r#"refresh_before = "5m""#).await;
    s.op.with(|o| {
        o.first_expires_in = 120;
        o.refreshed_expires_in = 3600;
    });
    let b = sign_in(&s, "carol", "sid-c", "__Host-bff", "/bff/callback").await;
    s.op.release.send_replace(false);
    let b = Arc::new(b);
    let all: Vec<_> = (0..20)
        .map(|_| {
            let client = s.bff.client().clone();
            let url = s.bff.url("/api/orders");
            let cookie = b.cookie.clone();
            tokio::spawn(async move {
                client
                    .get(url)
                    .header("cookie", cookie)
                    .header("x-csrf", "1")
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // The 20 requests are in flight (the BFF counts them), the refresh is held at the provider.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = s.bff.admin_text("/metrics").await;
        if metrics.contains("bff_inflight_requests 20")
            && s.op.refresh_arrived.load(Ordering::SeqCst) >= 1
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.op.release.send_replace(true);
    for t in all {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s.op.with(|o| o.refreshes), 1);
    assert_eq!(s.op.refresh_arrived.load(Ordering::SeqCst), 1);
    let tokens: HashSet<String> = s
        .api
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(
        tokens
            .iter()
            .next()
            .unwrap()
            .starts_with("Bearer at-refreshed-")
    );
    // Fresh now: no more refreshes.
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    assert_eq!(s.op.with(|o| o.refreshes), 1);
    let metrics = s.bff.admin_text("/metrics").await;
    assert!(
        metrics.contains("bff_session_refresh_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

/// A refresh the provider refuses (the refresh token was revoked) ends the session: 401, no downstream
/// call, and the session is gone for the next request too.
#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let s = setup(r#"refresh_before = "5m""#).await;
    s.op.with(|o| o.first_expires_in = 60);
    let b = sign_in(&s, "dave", "sid-d", "__Host-bff", "/bff/callback").await;
    s.op.with(|o| o.refresh_tokens.clear());
    let res = b.get(&s.bff, "/api/orders").await;
    assert_cleared(&res, "__Host-bff");
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
    let res = b.get(&s.bff, "/bff/user").await;
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
    assert!(s.api.requests().is_empty());
    let metrics = s.bff.admin_text("/metrics").await;
    assert!(
        metrics.contains("bff_session_refresh_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("bff_sessions_active 0"), "{metrics}");
}

/// The response clears cookie `name`: same name, empty, `Path=/`, `Secure`, `HttpOnly`, `Max-Age=0`.
fn assert_cleared(res: &reqwest::Response, name: &str) {
    let (pair, attrs) = set_cookie(res, name).unwrap_or_else(|| panic!("no set-cookie {name}"));
    assert_eq!(pair, format!("{name}="));
    let parts: Vec<&str> = attrs.split(';').map(str::trim).collect();
    for a in ["Path=/", "Secure", "HttpOnly", "Max-Age=0"] {
        assert!(parts.contains(&a), "{attrs}");
    }
}

/// A cookie that names no session (logged out elsewhere, or forged, in our ids' shape or not) gets the
/// 401 `unauthenticated` and a `Set-Cookie` that clears it, on a session route and on /bff/user and
/// /bff/logout, with no downstream call; a request without the cookie gets the 401 and no `Set-Cookie`.
#[tokio::test]
async fn a_cookie_that_names_no_session_is_cleared() {
    let s = setup("").await;
    let b = sign_in(&s, "hana", "sid-h", "__Host-bff", "/bff/callback").await;
    let res = s
        .bff
        .client()
        .post(s.bff.url("/bff/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(
            &s.op.logout_token(json!({"sid": "sid-h"}), "rsa.pem"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let forged = Browser {
        cookie: format!("__Host-bff={}", "A".repeat(43)),
    };
    let garbage = Browser {
        cookie: "__Host-bff=garbage".into(),
    };
    for browser in [&b, &forged, &garbage] {
        for path in ["/api/orders", "/bff/user"] {
            let res = browser.get(&s.bff, path).await;
            assert_cleared(&res, "__Host-bff");
            assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
        }
        let res = s
            .bff
            .client()
            .post(s.bff.url("/bff/logout"))
            .header("cookie", &browser.cookie)
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_cleared(&res, "__Host-bff");
        assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
    }
    assert!(s.api.requests().is_empty());
    let res = s
        .bff
        .client()
        .get(s.bff.url("/api/orders"))
        .header("cookie", "theme=dark")
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("set-cookie").is_none());
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
}

/// A refresh response's ID token is verified as at login and must name the session's `sub` (OpenID
/// Connect Core 12.2): one of the same `sub` is taken; one of another `sub`, or signed by another key, ends
/// the session (401, no downstream call, the session gone).
#[tokio::test]
async fn a_refreshed_id_token_must_verify_and_name_the_same_sub() {
    let s = setup(r#"refresh_before = "5m""#).await;
    s.op.with(|o| {
        o.first_expires_in = 60;
        o.refreshed_expires_in = 60;
        o.refresh_id_token = Some(("lee".into(), "rsa.pem".into()));
    });
    let b = sign_in(&s, "lee", "sid-l", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    assert_eq!(s.op.with(|o| o.refreshes), 1);
    for (sub, pem) in [("mallory", "rsa.pem"), ("lee", "other.pem")] {
        let b = sign_in(&s, "lee", "sid-l", "__Host-bff", "/bff/callback").await;
        s.op.with(|o| o.refresh_id_token = Some((sub.into(), pem.into())));
        let calls = s.api.requests().len();
        let res = b.get(&s.bff, "/api/orders").await;
        assert_eq!(
            error_code(res).await,
            (401, "unauthenticated".into()),
            "{sub} {pem}"
        );
        assert_eq!(s.api.requests().len(), calls);
        let res = b.get(&s.bff, "/bff/user").await;
        assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
        s.op.with(|o| o.refresh_id_token = Some(("lee".into(), "rsa.pem".into())));
    }
}

/// A refreshed ID token's user claims replace the login's: a name changed at the provider shows in
/// `/bff/user` after the next refresh, and a claim it no longer sends (`email`) is gone; its protocol
/// claims do not (`sid` stays the login's, so the back-channel logout of that `sid` still ends the
/// session).
#[tokio::test]
async fn a_refreshed_id_token_updates_the_users_claims() {
    let s = setup(
        r#"refresh_before = "5m"
user_claims = ["sub", "name", "email", "sid"]"#,
    )
    .await;
    s.op.with(|o| {
        o.first_expires_in = 60;
        o.refreshed_expires_in = 3600;
        o.refresh_id_token = Some(("lee".into(), "rsa.pem".into()));
        o.refresh_claims = serde_json::Map::from_iter([("name".into(), json!("Lee Renamed"))]);
    });
    let b = sign_in(&s, "lee", "sid-l", "__Host-bff", "/bff/callback").await;
    let user: Value = b.get(&s.bff, "/bff/user").await.json().await.unwrap();
    assert_eq!(user["claims"]["name"], "name of lee", "{user}");
    assert_eq!(user["claims"]["email"], "lee@example.com", "{user}");
    // A session route refreshes the token that expires within refresh_before.
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    let user: Value = b.get(&s.bff, "/bff/user").await.json().await.unwrap();
    assert_eq!(
        user["claims"],
        json!({"sub": "lee", "name": "Lee Renamed", "sid": "sid-l"}),
        "{user}"
    );
    assert_eq!(s.op.with(|o| o.refreshes), 1);
}

/// A provider that closes kept-alive connections as requests arrive on them (a keep-alive timeout met at
/// that moment; under load a client may not have seen the close yet): its GETs are sent again on a new
/// connection, and the token endpoint and revocation are always called on a new one (a code or a
/// rotating refresh token cannot be sent twice). Login, refresh and logout all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_closing_kept_connections_fails_no_login_refresh_or_logout() {
    let op = Op::start_closing_kept_connections().await;
    let s = setup_with_op(op, r#"refresh_before = "5m""#).await;
    s.op.with(|o| o.first_expires_in = 60);
    let b = sign_in(&s, "kai", "sid-k", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    assert_eq!(s.op.with(|o| o.refreshes), 1, "the token was refreshed");
    let res = s
        .bff
        .client()
        .post(s.bff.url("/bff/logout"))
        .header("cookie", &b.cookie)
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        s.op.with(|o| o.revoked.len()),
        1,
        "the refresh token was revoked"
    );
}

/// Logout ends the session, revokes its refresh token at the provider, clears the cookie and returns the
/// provider's end-session URL with the ID token hint and public_url + post_logout_redirect.
#[tokio::test]
async fn logout_revokes_clears_and_returns_the_end_session_url() {
    let s = setup(r#"post_logout_redirect = "/bye""#).await;
    let b = sign_in(&s, "erin", "sid-e", "__Host-bff", "/bff/callback").await;
    let logout = |csrf: bool| {
        let mut req = s
            .bff
            .client()
            .post(s.bff.url("/bff/logout"))
            .header("cookie", &b.cookie);
        if csrf {
            req = req.header("x-csrf", "1");
        }
        req.send()
    };
    assert_eq!(
        error_code(logout(false).await.unwrap()).await,
        (401, "csrf".into())
    );
    let res = logout(true).await.unwrap();
    assert_eq!(res.status(), 200);
    let (_, cleared) = set_cookie(&res, "__Host-bff").unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure"),
        "{cleared}"
    );
    let body: Value = res.json().await.unwrap();
    let url = body["end_session_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/session/end?", s.op.issuer())),
        "{url}"
    );
    let q = query_of(url);
    assert_eq!(q["post_logout_redirect_uri"], "https://app.test/bye");
    assert_eq!(q["id_token_hint"].split('.').count(), 3);
    assert_eq!(
        s.op.with(|o| o.revoked.clone()),
        vec!["rt-erin-2".to_string()]
    );
    let res = b.get(&s.bff, "/bff/user").await;
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));
}

/// A verified back-channel logout token ends the sessions of its sid (and only those); a token without
/// the logout event, with a nonce, for another audience, signed by another key or without sid and sub
/// is refused with 400.
#[tokio::test]
async fn backchannel_logout_ends_the_sessions_of_its_sid_and_refuses_invalid_tokens() {
    let s = setup("").await;
    let a = sign_in(&s, "frank", "sid-1", "__Host-bff", "/bff/callback").await;
    let b = sign_in(&s, "frank", "sid-2", "__Host-bff", "/bff/callback").await;
    let post = |token: String| {
        s.bff
            .client()
            .post(s.bff.url("/bff/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&token))
            .send()
    };
    for bad in [
        s.op.logout_token(json!({"sid": "sid-2", "events": {}}), "rsa.pem"),
        s.op.logout_token(json!({"sid": "sid-2", "nonce": "n"}), "rsa.pem"),
        s.op.logout_token(json!({"sid": "sid-2", "aud": "other"}), "rsa.pem"),
        s.op.logout_token(json!({"sid": "sid-2"}), "other.pem"),
        s.op.logout_token(json!({"iat": null, "sid": "sid-2"}), "rsa.pem"),
        s.op.logout_token(json!({"jti": null, "sid": "sid-2"}), "rsa.pem"),
        s.op.logout_token(json!({}), "rsa.pem"),
        "not-a-jwt".to_string(),
    ] {
        let res = post(bad).await.unwrap();
        assert_eq!(res.status(), 400);
    }
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 200);
    let res = post(s.op.logout_token(json!({"sid": "sid-2"}), "rsa.pem"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 401);
    assert_eq!(a.get(&s.bff, "/bff/user").await.status(), 200);
    // By sub: every session of the subject.
    let c = sign_in(&s, "frank", "sid-3", "__Host-bff", "/bff/callback").await;
    let res = post(s.op.logout_token(json!({"sub": "frank"}), "rsa.pem"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(a.get(&s.bff, "/bff/user").await.status(), 401);
    assert_eq!(c.get(&s.bff, "/bff/user").await.status(), 401);
}

/// A logout token is accepted once: the same token posted again (its `jti` already accepted) is a 400
/// until it expires, and ends nothing; a new token for the same `sid` is accepted.
#[tokio::test]
async fn a_replayed_logout_token_is_refused() {
    let s = setup("").await;
    let post = |token: String| {
        s.bff
            .client()
            .post(s.bff.url("/bff/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&token))
            .send()
    };
    let token = s.op.logout_token(json!({"sub": "kim"}), "rsa.pem");
    let first = sign_in(&s, "kim", "sid-k1", "__Host-bff", "/bff/callback").await;
    assert_eq!(post(token.clone()).await.unwrap().status(), 200);
    assert_eq!(first.get(&s.bff, "/bff/user").await.status(), 401);
    // Kim logs in again: a replay of the first token must not end the new session.
    let second = sign_in(&s, "kim", "sid-k2", "__Host-bff", "/bff/callback").await;
    let res = post(token).await.unwrap();
    assert_eq!(error_code(res).await, (400, "bad_request".into()));
    assert_eq!(second.get(&s.bff, "/bff/user").await.status(), 200);
    let res = post(s.op.logout_token(json!({"sub": "kim"}), "rsa.pem"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(second.get(&s.bff, "/bff/user").await.status(), 401);
}

/// A key the provider rotated in after the BFF fetched its JWKS is picked up: a token naming the unknown
/// `kid` makes the BFF fetch the JWKS again and verifies; a second unknown `kid` within 10 s is refused
/// without another fetch.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_on_its_first_unknown_kid() {
    let s = setup("").await;
    let b = sign_in(&s, "lee", "sid-l", "__Host-bff", "/bff/callback").await;
    // Fetched once at start (by the warm-up or the first verification, whichever came first).
    let fetched = s.op.jwks_hits.load(Ordering::SeqCst);
    assert_eq!(fetched, 1);
    *s.op.jwks.lock().unwrap() =
        std::fs::read_to_string(format!("{JWT}/jwks-rotated.json")).unwrap();
    let post = |token: String| {
        s.bff
            .client()
            .post(s.bff.url("/bff/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&token))
            .send()
    };
    let rotated =
        s.op.logout_token_as(json!({"sid": "sid-l"}), "other.pem", "k2");
    assert_eq!(post(rotated).await.unwrap().status(), 200);
    assert_eq!(s.op.jwks_hits.load(Ordering::SeqCst), fetched + 1);
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 401);
    let unknown =
        s.op.logout_token_as(json!({"sid": "sid-l"}), "other.pem", "k9");
    assert_eq!(post(unknown).await.unwrap().status(), 400);
    assert_eq!(s.op.jwks_hits.load(Ordering::SeqCst), fetched + 1);
}

/// client_auth = "private_key_jwt": the token endpoint gets a client assertion signed with key_file (the
/// provider verifies it with the public key), never a Basic header.
#[tokio::test]
async fn private_key_jwt_signs_a_client_assertion_with_the_key_file() {
    let s = setup(&format!(
        "client_auth = \"private_key_jwt\"\nkey_file = \"{JWT}/rsa.pem\""
    ))
    .await;
    let b = sign_in(&s, "gina", "sid-g", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 200);
    assert_eq!(
        s.op.with(|o| o.client_auth.clone()),
        vec!["jwt:web".to_string()]
    );
}

/// Tokens, codes, cookie values, the client secret and the store key never reach the log (every level,
/// every test of this binary), /admin/config or an error body.
#[tokio::test]
async fn no_secret_reaches_the_log_admin_config_or_an_error() {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let s = setup(&format!("store_key = \"{key}\"\nrefresh_before = \"5m\"")).await;
    s.op.with(|o| o.first_expires_in = 60);
    let b = sign_in(&s, "hank", "sid-h", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/api/all").await.status(), 200);
    let config = s.bff.admin_text("/admin/config").await;
    assert!(
        !config.contains(SECRET) && !config.contains(&key),
        "{config}"
    );
    let res = b.get(&s.bff, "/bff/callback?code=code-x&state=y").await;
    let body = res.text().await.unwrap();
    let cookie_value = b.cookie.split_once('=').unwrap().1.to_string();
    let log = captured();
    assert!(
        log.contains("login refused") || log.contains("bff"),
        "the log was not captured"
    );
    for secret in [
        SECRET.to_string(),
        key.clone(),
        cookie_value.clone(),
        "at-hank".into(),
        "rt-hank".into(),
        "at-refreshed".into(),
        "client-at-".into(),
        "code-".into(),
        "eyJ".into(),
    ] {
        assert!(!log.contains(&secret), "{secret:?} is in the log");
        assert!(!body.contains(&secret), "{secret:?} is in {body}");
    }
}

/// A Rust handler of a route with `auth = "session"` reads the `Session` (claims, sub, access token) and
/// its mesh calls to a `token = "user"` service carry the token; without a session the extractor's
/// rejection is the JSON 401 (on a route without session auth), and a Rust route cannot take a session
/// endpoint's path.
#[tokio::test]
async fn a_rust_handler_gets_the_session_and_its_calls_carry_the_token() {
    use bff::prelude::*;
    capture_logs();
    let op = Op::start().await;
    let (api, partner, plain) = (
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    );
    api.on("/orders").json(json!([7]));
    let toml = config(
        &op.issuer(),
        &api,
        &partner,
        &plain,
        "",
        "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[telemetry]\naccess_log = false",
    );
    async fn me(session: bff::Session, mesh: Mesh) -> bff::Result<Json<Value>> {
        let orders: Value = mesh.service("api").get("/orders").send_json().await?;
        Ok(Json(json!({
            "sub": session.sub(),
            "name": session.claims()["name"],
            "token": session.access_token().starts_with("at-"),
            "orders": orders,
        })))
    }
    let app = bff::App::from_toml(&toml)
        .unwrap()
        .route_with("/me", Policy::new().auth(AuthKind::Session), get(me))
        .route("/open", get(me));
    let bff = TestBff::start_app(app).await;
    let s = Setup {
        op,
        api,
        partner,
        plain,
        bff,
    };
    let b = sign_in(&s, "jo", "sid-j", "__Host-bff", "/bff/callback").await;
    let res = b.get(&s.bff, "/me").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sub": "jo", "name": "name of jo", "token": true, "orders": [7]})
    );
    assert_eq!(
        s.api.requests()[0].headers["authorization"],
        "Bearer at-jo-2"
    );
    let res = s.bff.get("/open").await;
    assert_eq!(error_code(res).await, (401, "unauthenticated".into()));

    let taken = bff::App::from_toml(&toml)
        .unwrap()
        .route("/bff/user", get(|| async { "mine" }))
        .into_router()
        .unwrap_err()
        .to_string();
    assert!(
        taken.contains("/bff/user is an endpoint of [session]"),
        "{taken}"
    );
}

/// The discovery document is fetched at start, in the background, and retried until the provider
/// answers: a login while it is down is a 502 `provider_unavailable`; once it is up the BFF fetches the
/// document without any request asking, and logins use the cached one.
#[tokio::test]
async fn discovery_is_retried_at_start_until_the_provider_answers() {
    capture_logs();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (api, partner, plain) = (
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    );
    let bff = TestBff::start(&config(&issuer, &api, &partner, &plain, "", "")).await;
    let res = bff.get("/bff/login").await;
    assert_eq!(error_code(res).await, (502, "provider_unavailable".into()));
    let op = Op::start_on(([127, 0, 0, 1], port).into()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while op.discovery_hits.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery not retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(bff.get("/bff/login").await.status(), 302);
    }
    assert_eq!(op.discovery_hits.load(Ordering::SeqCst), 1);
}

/// A reload keeps the sessions: one that leaves [session] as it is, and one that changes keys other
/// than the store's (user_claims: the next /bff/user follows it); a new store_key makes a new store.
#[tokio::test]
async fn a_reload_keeps_the_sessions_unless_the_store_changes() {
    capture_logs();
    let op = Op::start().await;
    let (api, partner, plain) = (
        Stub::start().await,
        Stub::start().await,
        Stub::start().await,
    );
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("session-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bff.toml");
    let top = "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[telemetry]\naccess_log = false";
    let write = |extra: &str, more: &str| {
        let text = config(&op.issuer(), &api, &partner, &plain, extra, top) + more;
        std::fs::write(&path, text).unwrap();
    };
    write("", "");
    let bff = TestBff::start_app(bff::App::from_config(&path).unwrap()).await;
    let s = Setup {
        op: op.clone(),
        api: Stub::start().await,
        partner: Stub::start().await,
        plain: Stub::start().await,
        bff,
    };
    let reload = || async {
        let res = s
            .bff
            .client()
            .post(s.bff.admin_url("/admin/reload"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    };
    let b = sign_in(&s, "max", "sid-m", "__Host-bff", "/bff/callback").await;
    let claims = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["claims"].clone()
    };
    write(
        "",
        "\n[services.extra]\nendpoints = [\"127.0.0.1:1\"]\nrequired = false\n",
    );
    reload().await;
    let all = json!({"sub": "max", "name": "name of max", "email": "max@example.com"});
    assert_eq!(claims(b.get(&s.bff, "/bff/user").await).await, all);
    write("user_claims = [\"sub\"]", "");
    reload().await;
    assert_eq!(
        claims(b.get(&s.bff, "/bff/user").await).await,
        json!({"sub": "max"})
    );
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    write(&format!("store_key = \"{key}\""), "");
    reload().await;
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 401);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- shared sessions in Redis ----

struct Redis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `[session]` keys of a store in `redis`, sealed under a key of 32 `byte`s.
fn redis_store(redis: &Redis, byte: u8) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    format!(
        "store = \"redis://127.0.0.1:{}\"\nstore_key = \"{key}\"",
        redis.port
    )
}

impl Setup {
    /// A second instance of the BFF with the same provider and services, `extra` keys in `[session]`.
    async fn another(&self, extra: &str) -> TestBff {
        TestBff::start(&config(
            &self.op.issuer(),
            &self.api,
            &self.partner,
            &self.plain,
            extra,
            "",
        ))
        .await
    }
}

async fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    start_redis_on(port).await
}

/// A Redis on `port` (a new, empty one where a stopped one listened).
async fn start_redis_on(port: u16) -> Redis {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("session-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = std::process::Command::new("redis-server")
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
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test installs it)");
    let redis = Redis { child, dir, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while redis_command(port, &["PING"]).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis
}

async fn redis_command(port: u16, args: &[&str]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut command = String::new();
    // The command, then QUIT: Redis answers both and closes the connection.
    for args in [args, &["QUIT"]] {
        command += &format!("*{}\r\n", args.len());
        for a in args {
            command += &format!("${}\r\n{a}\r\n", a.len());
        }
    }
    conn.write_all(command.as_bytes()).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut reply))
        .await
        .map_err(|_| std::io::Error::other("no reply"))??;
    Ok(reply)
}

/// The store unavailable degrades the requests that need it, never the process: with Redis stopped, a
/// session route, /bff/user, /bff/login and /bff/callback answer 503 `session_store_unavailable` (each
/// Redis operation is bounded: a connection attempt per request, no retries within it), and a route
/// without sessions is served (with the session cookie too); once Redis is back, logins and sessions
/// work again.
#[tokio::test]
async fn a_stopped_redis_store_fails_session_requests_with_503_and_only_those() {
    let redis = start_redis().await;
    let port = redis.port;
    let s = setup(&redis_store(&redis, 7)).await;
    let b = sign_in(&s, "gina", "sid-g", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    // A login in progress, its callback arriving while Redis is down.
    let res = s.bff.get("/bff/login?returnUrl=/app/home").await;
    let login = query_of(res.headers()["location"].to_str().unwrap());
    let (login_cookie, _) = set_cookie(&res, "__Host-bff-login").unwrap();
    let code = s.op.authorize(&login, "gina", "sid-g2");

    drop(redis);
    let unavailable = (503, "session_store_unavailable".to_string());
    for path in ["/api/orders", "/bff/user"] {
        assert_eq!(
            error_code(b.get(&s.bff, path).await).await,
            unavailable,
            "{path}"
        );
    }
    let res = s.bff.get("/bff/login?returnUrl=/app/home").await;
    assert_eq!(error_code(res).await, unavailable);
    let res = s
        .bff
        .client()
        .get(s.bff.url(&format!(
            "/bff/callback?code={code}&state={}",
            login["state"]
        )))
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, unavailable);
    // Other routes are served, with or without the session cookie.
    assert_eq!(b.get(&s.bff, "/api/public").await.status(), 200);
    assert_eq!(s.bff.get("/api/public").await.status(), 200);
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 503);

    // Redis back (empty: the old session is gone), a new login works.
    let _redis = start_redis_on(port).await;
    let b = sign_in(&s, "gina", "sid-g3", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&s.bff, "/api/orders").await.status(), 200);
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 200);
}

/// Two instances sharing a Redis store: a session made on one is served by the other; the store holds
/// no token in clear (AES-256-GCM under store_key); a back-channel logout received by one instance ends
/// the session on both.
#[tokio::test]
async fn instances_sharing_redis_share_sessions_encrypted_and_logout_ends_them_everywhere() {
    let redis = start_redis().await;
    let extra = redis_store(&redis, 7);
    let s = setup(&extra).await;
    let other = s.another(&extra).await;
    let b = sign_in(&s, "ivy", "sid-i", "__Host-bff", "/bff/callback").await;
    assert_eq!(b.get(&other, "/api/orders").await.status(), 200);
    assert_eq!(
        s.api.requests()[0].headers["authorization"],
        "Bearer at-ivy-2"
    );
    let keys = redis_command(redis.port, &["KEYS", "*"]).await.unwrap();
    let keys = String::from_utf8_lossy(&keys).into_owned();
    let session_key = keys
        .lines()
        .find(|l| l.starts_with("bff:session:web:s:"))
        .unwrap_or_else(|| panic!("{keys}"))
        .to_string();
    let raw = redis_command(redis.port, &["GET", &session_key])
        .await
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        !raw.contains("at-ivy") && !raw.contains("rt-ivy") && !raw.contains("ivy@"),
        "{raw}"
    );
    let cookie_value = b.cookie.split_once('=').unwrap().1;
    assert!(!keys.contains(cookie_value));

    let token = s.op.logout_token(json!({"sid": "sid-i"}), "rsa.pem");
    let backchannel = |bff: &TestBff| {
        bff.client()
            .post(bff.url("/bff/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&token))
            .send()
    };
    assert_eq!(backchannel(&other).await.unwrap().status(), 200);
    assert_eq!(b.get(&s.bff, "/bff/user").await.status(), 401);
    assert_eq!(b.get(&other, "/bff/user").await.status(), 401);
    // The token's jti is remembered in Redis: the other instance refuses it too.
    assert_eq!(backchannel(&s.bff).await.unwrap().status(), 400);
}

/// Two instances sharing Redis refresh an expiring token once between them: 10 concurrent requests on
/// each, the provider holding the refresh grant until all 20 are in flight; the instance without the
/// store's lock waits for the other's result instead of refreshing (a second refresh with the rotated
/// token would be refused and end the session).
#[tokio::test]
async fn two_instances_sharing_redis_refresh_a_session_once() {
    let redis = start_redis().await;
    let extra = format!("{}\nrefresh_before = \"5m\"", redis_store(&redis, 9));
    let s = setup(&extra).await;
    let other = s.another(&extra).await;
    s.op.with(|o| o.first_expires_in = 60);
    let b = sign_in(&s, "kim", "sid-k", "__Host-bff", "/bff/callback").await;
    s.op.release.send_replace(false);
    let mut all = Vec::new();
    for bff in [&s.bff, &other] {
        for _ in 0..10 {
            let req = bff
                .client()
                .get(bff.url("/api/orders"))
                .header("cookie", &b.cookie)
                .header("x-csrf", "1");
            all.push(tokio::spawn(
                async move { req.send().await.unwrap().status() },
            ));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (m1, m2) = (
            s.bff.admin_text("/metrics").await,
            other.admin_text("/metrics").await,
        );
        if m1.contains("bff_inflight_requests 10")
            && m2.contains("bff_inflight_requests 10")
            && s.op.refresh_arrived.load(Ordering::SeqCst) >= 1
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m1}\n{m2}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.op.release.send_replace(true);
    for t in all {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s.op.refresh_arrived.load(Ordering::SeqCst), 1);
    let tokens: HashSet<String> = s
        .api
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
}
