//! A real OpenID Provider for browser-session tests, and a browser-less login through it.
//!
//! [`Provider`] runs `tests/oidc/op.js`: panva's certified `oidc-provider` (npm, pinned by
//! `tests/oidc/package-lock.json`) on `127.0.0.1:0`, with PKCE required, its own development login and
//! consent pages, revocation, back-channel and RP-initiated logout, client credentials, refresh tokens
//! (rotated on use) for every code grant, and test-only endpoints to count grants, change token lifetimes,
//! revoke an account's grants, change an account's claims and send back-channel logout tokens. It needs `node` on `PATH` and runs
//! `npm ci --prefix tests/oidc` once when `tests/oidc/node_modules` is missing. The process is killed when
//! the `Provider` is dropped, and exits by itself when the test process dies (it watches its stdin).
//!
//! [`Front`] is a TCP forwarder on `127.0.0.1:0` that stands for the BFF's public address: a BFF's
//! `[session] public_url` must be known before the BFF is configured, and a test BFF listens on port 0.
//!
//! [`Browser`] logs in the way a browser would, without one: it follows every redirect itself (so each
//! hop is visible and can be tampered with), keeps the cookies of each origin, and fills in the OP's
//! login form (any login name) and consent form.
//!
//! ```no_run
//! # async fn t() {
//! use bff_testkit::oidc::{Browser, Front, Provider};
//! let op = Provider::start().await;
//! let front = Front::start().await;
//! let client = op.register_bff(&[&front.url()]).await;
//! let bff = bff_testkit::TestBff::start(&format!(r#"
//!     [session]
//!     issuer = "{}"
//!     client_id = "{}"
//!     client_secret = "{}"
//!     public_url = "{}"
//! "#, op.issuer(), client.id, client.secret, front.url())).await;
//! front.forward_to(bff.addr());
//! let session = Browser::new().login(&front.url(), "/", "alice").await;
//! let user = bff.client().get(bff.url("/bff/user"))
//!     .header("cookie", session.cookie_header())
//!     .header("x-csrf", "1")
//!     .send().await.unwrap();
//! # }
//! ```

use reqwest::{Method, StatusCode, Url, header};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream};

/// `tests/oidc` of this repository.
fn op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// Runs `npm ci` in `tests/oidc` once per process when its `node_modules` is missing.
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = op_dir();
        if dir.join("node_modules/oidc-provider").is_dir() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("npm (Node.js) is needed for the OpenID Provider: {e}"));
        assert!(status.success(), "npm ci --prefix {} failed", dir.display());
    });
}

/// Settings of a [`Provider`]; every field has a default.
#[derive(Clone, Debug, Default)]
pub struct ProviderOptions {
    /// Lifetime of access tokens in seconds (default 60); [`Provider::set_ttl`] changes it later.
    pub access_token_ttl: Option<u64>,
    /// Lifetime of ID tokens in seconds (default 300).
    pub id_token_ttl: Option<u64>,
    /// Lifetime of refresh tokens in seconds (default one day).
    pub refresh_token_ttl: Option<u64>,
    /// Clients registered at start, as oidc-provider's client metadata (see `tests/oidc/op.js` for the
    /// defaults filled in). Clients can also be registered later: [`Provider::register_bff`].
    pub clients: Vec<Value>,
    /// The host name of the issuer URL: `127.0.0.1` by default; `localhost` makes the OP another site
    /// than a BFF on `127.0.0.1` (for browsers' `SameSite` rules), as a real provider is. It always
    /// listens on `127.0.0.1`.
    pub host: Option<String>,
    /// `true`: the ID token carries only `sub` and the protocol claims, `name` and `email` only in userinfo
    /// (the spec's strict reading); `false` (default): the ID token carries them.
    pub conform_id_token_claims: bool,
}

/// A client of the [`Provider`]: its id and secret.
#[derive(Clone, Debug)]
pub struct OidcClient {
    pub id: String,
    pub secret: String,
}

/// `oidc-provider` on `127.0.0.1:0` (see the [module](self) docs); killed on drop.
pub struct Provider {
    child: Child,
    // Held open: the OP exits when its stdin closes.
    _stdin: ChildStdin,
    issuer: String,
    http: reqwest::Client,
}

impl Provider {
    /// Starts the OP with the default options and no client.
    pub async fn start() -> Self {
        Self::start_with(ProviderOptions::default()).await
    }

    /// Starts the OP and waits until it listens.
    pub async fn start_with(options: ProviderOptions) -> Self {
        ensure_installed();
        let mut ttl = serde_json::Map::new();
        for (kind, secs) in [
            ("AccessToken", options.access_token_ttl),
            ("IdToken", options.id_token_ttl),
            ("RefreshToken", options.refresh_token_ttl),
        ] {
            if let Some(secs) = secs {
                ttl.insert(kind.into(), secs.into());
            }
        }
        let config = json!({
            "port": 0,
            "host": options.host,
            "ttl": ttl,
            "clients": options.clients,
            "conform_id_token_claims": options.conform_id_token_claims,
        });
        let config = config.to_string();
        let mut failures = Vec::new();
        for start in 1..=STARTS {
            match start_once(&config).await {
                Ok((child, stdin, issuer)) => {
                    if !failures.is_empty() {
                        // Past the test harness's capture: a passing test's log shows it too.
                        let _ = writeln!(
                            std::io::stderr(),
                            "the OP started on try {start}; before:\n{}",
                            failures.join("\n")
                        );
                    }
                    return Self {
                        child,
                        _stdin: stdin,
                        issuer,
                        http: crate::http_client(),
                    };
                }
                Err(StartFailed(why)) => failures.push(why),
            }
        }
        panic!(
            "the OP did not start in {STARTS} tries:\n{}",
            failures.join("\n")
        )
    }

    /// `http://127.0.0.1:PORT`, the `iss` of its tokens and the base of its discovery document.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn test_url(&self, path: &str) -> String {
        format!("{}/__test/{path}", self.issuer)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, self.test_url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the OP's test endpoint");
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON from the OP's test endpoint");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Registers (or replaces) a client from oidc-provider's client metadata; `op.js` fills in the
    /// defaults (code flow, `client_secret_basic` or `private_key_jwt` with `jwks`, refresh and client
    /// credentials grants).
    pub async fn register_client(&self, metadata: Value) {
        self.call(Method::POST, "clients", Some(metadata)).await;
    }

    /// Registers the confidential client `web-bff` for BFFs reached at `public_urls`: redirect URI
    /// `URL/bff/callback` and post-logout redirect `URL/` for each, back-channel logout to the first one's
    /// `/bff/backchannel-logout` (with `sid` required).
    pub async fn register_bff(&self, public_urls: &[&str]) -> OidcClient {
        let client = OidcClient {
            id: "web-bff".into(),
            secret: "web-bff-test-secret-0123456789".into(),
        };
        let first = public_urls.first().expect("at least one public URL");
        self.register_client(json!({
            "client_id": client.id,
            "client_secret": client.secret,
            "redirect_uris": public_urls.iter().map(|u| format!("{u}/bff/callback")).collect::<Vec<_>>(),
            "post_logout_redirect_uris": public_urls.iter().map(|u| format!("{u}/")).collect::<Vec<_>>(),
            "backchannel_logout_uri": format!("{first}/bff/backchannel-logout"),
            "backchannel_logout_session_required": true,
        }))
        .await;
        client
    }

    /// What the OP counted: `{"grants": {grant_type: n}, "grant_errors": {...}, "requests":
    /// {"METHOD /path STATUS": n}, "backchannel": {"success": n, "error": n}}`.
    pub async fn stats(&self) -> Value {
        self.call(Method::GET, "stats", None).await
    }

    /// How many token requests of `grant_type` succeeded (`authorization_code`, `refresh_token`,
    /// `client_credentials`).
    pub async fn grants(&self, grant_type: &str) -> u64 {
        self.stats().await["grants"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }

    /// How many token requests of `grant_type` failed.
    pub async fn grant_errors(&self, grant_type: &str) -> u64 {
        self.stats().await["grant_errors"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }

    /// How many requests `METHOD /path` got `status` (e.g. `("POST", "/token/revocation", 200)`).
    pub async fn requests(&self, method: &str, path: &str, status: u16) -> u64 {
        self.stats().await["requests"][format!("{method} {path} {status}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// Changes the lifetime of the tokens issued from now on (`kind`: `AccessToken`, `IdToken`,
    /// `RefreshToken`, `ClientCredentials`...).
    pub async fn set_ttl(&self, kind: &str, secs: u64) {
        self.call(Method::POST, "ttl", Some(json!({ kind: secs })))
            .await;
    }

    /// Changes the claims of the account `sub` in the tokens issued from now on (`{"name": "..."}`), as
    /// a change of the user's profile at the OP would.
    pub async fn set_claims(&self, sub: &str, claims: Value) {
        self.call(
            Method::POST,
            "claims",
            Some(json!({ "sub": sub, "claims": claims })),
        )
        .await;
    }

    /// The logins of an account: `[{"client_id", "sid", "grant_id"}]`.
    pub async fn sessions(&self, sub: &str) -> Vec<Value> {
        let url = format!("sessions?sub={sub}");
        match self.call(Method::GET, &url, None).await {
            Value::Array(list) => list,
            other => panic!("sessions: {other}"),
        }
    }

    /// Revokes every grant of the account `sub` (its access and refresh tokens); returns how many.
    pub async fn revoke(&self, sub: &str) -> u64 {
        self.call(Method::POST, "revoke", Some(json!({ "sub": sub })))
            .await["revoked"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The OP sends its back-channel logout token for each login of `sub` to the client's
    /// `backchannel_logout_uri`, as when the user logs out at the OP; returns how many were accepted
    /// (answered 200 or 204) and the errors of the others.
    pub async fn backchannel_logout(&self, sub: &str) -> (u64, Vec<String>) {
        let out = self
            .call(
                Method::POST,
                "backchannel-logout",
                Some(json!({ "sub": sub })),
            )
            .await;
        let errors = out["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (out["sent"].as_u64().unwrap_or(0), errors)
    }

    /// A logout token signed by the OP for `client_id`, `sub` and `sid`, not sent anywhere.
    pub async fn logout_token(&self, client_id: &str, sub: &str, sid: Option<&str>) -> String {
        let out = self
            .call(
                Method::POST,
                "logout-token",
                Some(json!({ "client_id": client_id, "sub": sub, "sid": sid })),
            )
            .await;
        out["logout_token"]
            .as_str()
            .expect("logout_token")
            .to_owned()
    }
}

/// How long one start of the OP may take to print its ready line; it takes about a second, and three on
/// a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Starts of the OP tried before a test fails: one that hangs before it listens is killed, and the
/// next try's report says what it was waiting for.
const STARTS: u32 = 3;

/// Why a start of the OP failed: how it ended or what it hung in, and its stderr.
struct StartFailed(String);

/// One start of `op.js`: the process, its stdin (held open) and its issuer; or why it failed, with
/// its stderr and, when it hung, the state of each of its threads.
async fn start_once(config: &str) -> Result<(Child, ChildStdin, String), StartFailed> {
    let mut child = Command::new("node")
        .arg(op_dir().join("op.js"))
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node (Node.js) is needed for the OpenID Provider: {e}"));
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    // Its stderr is read to the end (a full pipe would block it); the last lines are kept for a report.
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() == 40 {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    let stderr_tail = || {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    };
    let line = match tokio::time::timeout(READY_WITHIN, rx).await {
        Ok(Ok(Ok(line))) if !line.is_empty() => line,
        Ok(read) => {
            let _ = child.kill();
            let status = child.wait();
            return Err(StartFailed(format!(
                "the OP exited ({status:?}) before its ready line ({read:?}); its stderr:\n{}",
                stderr_tail()
            )));
        }
        Err(_) => {
            let threads = threads_of(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartFailed(format!(
                "the OP printed no ready line within {READY_WITHIN:?}; its threads (state, wchan, \
                 system call number):\n  {}\nits stderr:\n{}",
                threads.join("\n  "),
                stderr_tail()
            )));
        }
    };
    let issuer = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|ready| Some(ready["issuer"].as_str()?.to_owned()));
    match issuer {
        Some(issuer) => Ok((child, stdin, issuer)),
        None => {
            let _ = child.kill();
            let status = child.wait();
            Err(StartFailed(format!(
                "the OP printed {line:?} ({status:?}); its stderr:\n{}",
                stderr_tail()
            )))
        }
    }
}

/// Each thread of process `pid`: its name and state, the kernel function it sleeps in and the system
/// call it is in, from `/proc` (Linux).
fn threads_of(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![format!("no /proc/{pid}/task")];
    };
    tasks
        .flatten()
        .map(|task| {
            let read = |file: &str| {
                std::fs::read_to_string(task.path().join(file))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|e| format!("({file}: {e})"))
            };
            let stat = read("stat");
            // pid (comm) state ...: the name may hold spaces, the state follows its closing parenthesis.
            let name_state = stat
                .find('(')
                .zip(stat.rfind(')'))
                .map_or(stat.clone(), |(a, b)| {
                    format!(
                        "{} {}",
                        &stat[a..=b],
                        stat[b + 1..].split_whitespace().next().unwrap_or("")
                    )
                });
            format!(
                "{} {name_state} wchan={} syscall={}",
                task.file_name().to_string_lossy(),
                read("wchan"),
                read("syscall").split_whitespace().next().unwrap_or("")
            )
        })
        .collect()
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder on `127.0.0.1:0`, the public address of a BFF that is not started yet (see the
/// [module](self) docs). Connections accepted before [`Front::forward_to`] wait for it. Stops when dropped.
pub struct Front {
    addr: SocketAddr,
    target: tokio::sync::watch::Sender<Option<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (target, rx) = tokio::sync::watch::channel(None::<SocketAddr>);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(to) = rx.wait_for(Option::is_some).await.map(|t| t.expect("set")) else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, target, task }
    }

    /// `http://127.0.0.1:PORT`, for `[session] public_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends every connection, from now on and waiting ones, to `to`.
    pub fn forward_to(&self, to: SocketAddr) {
        self.target.send_replace(Some(to));
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A logged-in session: the BFF's session cookie.
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie's name (`__Host-bff` by default).
    pub name: String,
    /// The cookie's value (the opaque session id).
    pub value: String,
    /// The whole `Set-Cookie` header the BFF sent at the callback (attributes included).
    pub set_cookie: String,
    /// Where the callback sent the browser (the `returnUrl`).
    pub location: String,
}

impl Session {
    /// `NAME=VALUE`, for a `Cookie` header.
    pub fn cookie_header(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

/// The OP's answer to a login, stopped before the BFF's callback: see [`Browser::authorize`].
#[derive(Clone, Debug)]
pub struct Authorized {
    /// The redirect URI with `code`, `state` (and `iss`) as the OP sent it.
    pub callback: Url,
}

impl Authorized {
    /// The callback URL with the query parameter `name` replaced by `value`.
    pub fn with_param(&self, name: &str, value: &str) -> Url {
        let mut url = self.callback.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == name {
                    value.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url
    }

    /// The value of the query parameter `name` of the callback URL.
    pub fn param(&self, name: &str) -> Option<String> {
        self.callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// One request a [`Browser`] made: method, URL and status.
#[derive(Clone, Debug)]
pub struct Hop {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
}

/// A browser-less browser for logins (see the [module](self) docs). Cookies are kept per host and port,
/// by name (paths are ignored: the OP's cookies are read on the paths it sets them for).
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    hops: Arc<Mutex<Vec<Hop>>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

fn authority(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: crate::http_client(),
            jar: Arc::default(),
            hops: Arc::default(),
        }
    }

    /// Every request made so far.
    pub fn hops(&self) -> Vec<Hop> {
        self.hops.lock().expect("hops").clone()
    }

    /// The cookie `name` this browser holds for `url`'s host and port.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).expect("url");
        self.jar
            .lock()
            .expect("jar")
            .get(&authority(&url))
            .and_then(|c| c.get(name).cloned())
    }

    /// Sends one request with this browser's cookies for its origin and stores the cookies it sets; no
    /// redirect is followed.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        form: Option<&[(&str, &str)]>,
    ) -> reqwest::Response {
        let key = authority(url);
        let cookies = self
            .jar
            .lock()
            .expect("jar")
            .get(&key)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let mut req = self.http.request(method.clone(), url.clone());
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies);
        }
        if let Some(form) = form {
            let body = form
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            req = req
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        {
            let mut jar = self.jar.lock().expect("jar");
            let site = jar.entry(key).or_default();
            for set in resp.headers().get_all(header::SET_COOKIE) {
                let Ok(set) = set.to_str() else { continue };
                let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let attrs = attrs.to_ascii_lowercase();
                let gone =
                    attrs.contains("max-age=0") || attrs.contains("expires=thu, 01 jan 1970");
                if gone || value.is_empty() {
                    site.remove(name.trim());
                } else {
                    site.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
        }
        self.hops.lock().expect("hops").push(Hop {
            method,
            url: url.clone(),
            status: resp.status(),
        });
        resp
    }

    /// `GET login_url` (the BFF's `/bff/login?returnUrl=...`), then through the OP: its redirect to the
    /// authorization endpoint, the login form (as `user`, any password), the consent form, up to the OP's
    /// redirect back to the BFF's callback, which is returned, not followed.
    pub async fn authorize(&self, login_url: &str, user: &str) -> Authorized {
        self.authorize_with(login_url, user, |_| {}).await
    }

    /// As [`Browser::authorize`], with `tamper` applied to the authorization request URL the BFF sent
    /// the browser to (to change its `nonce`, `code_challenge`...).
    pub async fn authorize_with(
        &self,
        login_url: &str,
        user: &str,
        tamper: impl FnOnce(&mut Url),
    ) -> Authorized {
        let login_url = Url::parse(login_url).expect("login URL");
        let resp = self.request(Method::GET, &login_url, None).await;
        assert!(
            resp.status().is_redirection(),
            "GET {login_url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        let mut url = location(&login_url, &resp);
        let op = authority(&url);
        tamper(&mut url);
        let mut method = Method::GET;
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..20 {
            if authority(&url) != op {
                // Away from the OP: back at the BFF's callback.
                return Authorized { callback: url };
            }
            let fields: Option<Vec<(&str, &str)>> = form
                .as_ref()
                .map(|f| f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
            let resp = self.request(method.clone(), &url, fields.as_deref()).await;
            let status = resp.status();
            if status.is_redirection() {
                url = location(&url, &resp);
                method = Method::GET;
                form = None;
                continue;
            }
            let page = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "{method} {url}: {status}: {page}");
            // The OP's own interaction pages: a login form or a consent form.
            let action = form_action(&page)
                .unwrap_or_else(|| panic!("{url}: no form in the OP's page: {page}"));
            let prompt = hidden_value(&page, "prompt").unwrap_or_default();
            let mut fields = vec![("prompt".to_owned(), prompt.clone())];
            if prompt == "login" {
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any password".into()));
            }
            url = url.join(&action).expect("form action");
            method = Method::POST;
            form = Some(fields);
        }
        panic!("no way back to the BFF after 20 hops: {:#?}", self.hops())
    }

    /// `GET` the callback URL (as the OP sent it, or tampered with) at the BFF; the raw answer.
    pub async fn callback(&self, callback: &Url) -> reqwest::Response {
        self.request(Method::GET, callback, None).await
    }

    /// The whole login: `GET {bff}/bff/login?returnUrl={return_url}`, the OP's pages as `user`, the
    /// callback; panics unless the callback sets the session cookie and redirects.
    pub async fn login(&self, bff: &str, return_url: &str, user: &str) -> Session {
        self.login_with_cookie(bff, return_url, user, "__Host-bff")
            .await
    }

    /// As [`Browser::login`], for a BFF whose `cookie_name` is `cookie_name`.
    pub async fn login_with_cookie(
        &self,
        bff: &str,
        return_url: &str,
        user: &str,
        cookie_name: &str,
    ) -> Session {
        let login = format!("{bff}/bff/login?returnUrl={}", encode(return_url));
        let authorized = self.authorize(&login, user).await;
        let resp = self.callback(&authorized.callback).await;
        let status = resp.status();
        let set_cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{cookie_name}=")))
            .map(str::to_owned);
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (Some(set_cookie), Some(location), true) =
            (set_cookie, location, status.is_redirection())
        else {
            let body = resp.text().await.unwrap_or_default();
            panic!("the callback did not log in: {status} {body}");
        };
        let value = set_cookie
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .map(|(_, v)| v.to_owned())
            .expect("cookie value");
        Session {
            name: cookie_name.to_owned(),
            value,
            set_cookie,
            location,
        }
    }
}

fn location(base: &Url, resp: &reqwest::Response) -> Url {
    let to = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{base}: {} without Location", resp.status()));
    base.join(to).expect("Location")
}

fn encode(s: &str) -> String {
    url_encode(s)
}

/// `application/x-www-form-urlencoded` / query value encoding.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `action` of the first `<form>` of an HTML page (entities `&amp;` undone).
fn form_action(page: &str) -> Option<String> {
    let form = &page[page.find("<form")?..];
    let rest = &form[form.find("action=\"")? + "action=\"".len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// The value of the hidden input `name` of an HTML page.
fn hidden_value(page: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let rest = &page[page.find(&needle)? + needle.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_from_the_ops_pages() {
        let page = r#"<form autocomplete="off" action="/interaction/abc?x=1&amp;y=2" method="post">
  <input type="hidden" name="prompt" value="login"/>"#;
        assert_eq!(
            form_action(page).as_deref(),
            Some("/interaction/abc?x=1&y=2")
        );
        assert_eq!(hidden_value(page, "prompt").as_deref(), Some("login"));
        assert_eq!(url_encode("/a b?c=d&é"), "%2Fa%20b%3Fc%3Dd%26%C3%A9");
    }
}
