//! `[session]`: browser sessions, the OAuth 2.0 BFF pattern (CONTRACT section 6). The BFF is a
//! confidential OpenID Connect client; the browser holds an opaque `HttpOnly` cookie; tokens stay in a
//! server-side store. Each value is parsed once here into its type.

use crate::{HttpUrl, RedisUrl, units::Duration};
use http::HeaderName;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// `[session]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The OpenID Provider; its endpoints come from `ISSUER/.well-known/openid-configuration`.
    pub issuer: HttpUrl,
    /// This BFF's client id at the OpenID Provider.
    pub client_id: String,
    /// The client secret (`client_secret_basic`); a secret, usually `"${OIDC_CLIENT_SECRET}"`, never shown.
    #[serde(default)]
    pub client_secret: Option<crate::Secret>,
    /// How the BFF authenticates at the token endpoint: `client_secret_basic` or `private_key_jwt`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The private key (PEM, RSA) that signs the `private_key_jwt` client assertions.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Scopes asked for at login (`openid` is required).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Path of the login callback on the public listener; the redirect URI is `public_url` + this.
    #[serde(default = "default_redirect_path")]
    pub redirect_path: String,
    /// The URL the browser reaches the BFF at (`https://app.example.com`): redirect URIs are built from it,
    /// and its origin is allowed in `Origin`.
    pub public_url: HttpUrl,
    /// Name of the session cookie (`Secure; HttpOnly; Path=/`, no `Domain`).
    #[serde(default = "default_cookie_name")]
    pub cookie_name: CookieName,
    /// `SameSite` of the session cookie: `strict` or `lax`.
    #[serde(default)]
    pub same_site: SameSite,
    /// A session unused this long ends (sliding).
    #[serde(default = "default_idle")]
    pub idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    #[serde(default = "default_absolute")]
    pub absolute_timeout: Duration,
    /// An access token that expires sooner than this is refreshed before the downstream call.
    #[serde(default = "default_refresh_before")]
    pub refresh_before: Duration,
    /// Where sessions live: `"memory"` (this instance) or `"redis://host:6379/0"` (shared by instances).
    #[serde(default)]
    pub store: SessionStore,
    /// The key that encrypts sessions at rest in the store (AES-256-GCM): 32 bytes, base64; never shown.
    /// Required with a Redis store.
    #[serde(default)]
    pub store_key: Option<SessionKey>,
    /// The header a session request must carry with the value `1` (CSRF protection).
    #[serde(default = "default_csrf_header")]
    pub csrf_header: CsrfHeader,
    /// The ID token claims `GET /bff/user` returns.
    #[serde(default = "default_user_claims")]
    pub user_claims: Vec<String>,
    /// Where the OpenID Provider sends the browser after logout (a local path, joined to `public_url`).
    #[serde(default = "default_post_logout")]
    pub post_logout_redirect: String,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_redirect_path() -> String {
    "/bff/callback".into()
}
fn default_cookie_name() -> CookieName {
    CookieName("__Host-bff".into())
}
fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_absolute() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_refresh_before() -> Duration {
    Duration::from_secs(30)
}
fn default_csrf_header() -> CsrfHeader {
    CsrfHeader(HeaderName::from_static("x-csrf"))
}
fn default_user_claims() -> Vec<String> {
    ["sub", "name", "email"].map(String::from).to_vec()
}
fn default_post_logout() -> String {
    "/".into()
}

impl SessionConfig {
    /// A session config with the defaults of every optional key.
    pub fn new(issuer: HttpUrl, client_id: impl Into<String>, public_url: HttpUrl) -> Self {
        Self {
            issuer,
            client_id: client_id.into(),
            client_secret: None,
            client_auth: ClientAuth::default(),
            key_file: None,
            scopes: default_scopes(),
            redirect_path: default_redirect_path(),
            public_url,
            cookie_name: default_cookie_name(),
            same_site: SameSite::default(),
            idle_timeout: default_idle(),
            absolute_timeout: default_absolute(),
            refresh_before: default_refresh_before(),
            store: SessionStore::default(),
            store_key: None,
            csrf_header: default_csrf_header(),
            user_claims: default_user_claims(),
            post_logout_redirect: default_post_logout(),
        }
    }

    pub const NEEDS: &str = "browser sessions ([session])";

    /// The paths of the session endpoints on the public listener (no route may take them).
    pub fn endpoints(&self) -> [&str; 5] {
        [
            "/bff/login",
            self.redirect_path.as_str(),
            "/bff/user",
            "/bff/logout",
            "/bff/backchannel-logout",
        ]
    }

    /// `Ok` when this binary has sessions (the `session` feature), else the error naming it.
    pub fn require_compiled(&self) -> Result<(), crate::FeatureMissing> {
        crate::Feature::Session.require(Self::NEEDS)
    }
}

/// `client_auth`: how the BFF authenticates at the OpenID Provider's token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with `client_id` and `client_secret`.
    #[default]
    ClientSecretBasic,
    /// A JWT signed with `key_file` (RFC 7523).
    PrivateKeyJwt,
}

/// `same_site` of the session cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    #[default]
    Strict,
    Lax,
}

impl SameSite {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
        }
    }
}

/// `[services.NAME] token`: which token the mesh attaches (`authorization: Bearer ...`) to this
/// service's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenMode {
    /// The session's access token (calls made for a request with a session).
    User,
    /// The BFF's own client-credentials token.
    Client,
}

/// `store`: `"memory"` or a `redis://` URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SessionStore {
    /// In this process.
    #[default]
    Memory,
    /// In Redis, shared by every instance that names it.
    Redis(RedisUrl),
}

impl FromStr for SessionStore {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        if s == "memory" {
            return Ok(Self::Memory);
        }
        if s.starts_with("redis://") {
            crate::Feature::Redis.require("a Redis session store")?;
            return s.parse().map(Self::Redis);
        }
        Err(format!(
            "{:?} is neither \"memory\" nor a redis:// URL",
            crate::redact_url(s)
        )
        .into())
    }
}

impl fmt::Display for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => write!(f, "{url}"),
        }
    }
}

from_str_serde!(
    SessionStore,
    "\"memory\" or a URL such as \"redis://127.0.0.1:6379\""
);

/// `store_key`: 32 bytes, base64 (standard or URL-safe, padded or not). `Debug`, `Display` and serde
/// never show it; errors name its length, never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// The key itself: for the cipher only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for SessionKey {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        use base64::Engine as _;
        let t = s.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| {
                format!(
                    "is not base64 ({} characters); store_key is 32 random bytes in base64 (e.g. `openssl rand -base64 32`)",
                    s.len()
                )
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "is {} bytes long once decoded; store_key must be 32 bytes (e.g. `openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(Self(key))
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::SECRET_SHOWN)
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::SECRET_SHOWN)
    }
}

from_str_serde!(SessionKey, "32 bytes in base64");

/// `cookie_name`: a cookie name (an RFC 6265 token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieName(String);

impl CookieName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CookieName {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if s.is_empty() || !s.chars().all(token) {
            return Err(
                format!("{s:?} is not a cookie name (letters, digits, `-`, `_`...)").into(),
            );
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for CookieName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

from_str_serde!(CookieName, "a cookie name such as \"__Host-bff\"");

/// `csrf_header`: a header name, kept in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrfHeader(HeaderName);

impl CsrfHeader {
    pub fn name(&self) -> &HeaderName {
        &self.0
    }
}

impl FromStr for CsrfHeader {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        let name = HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| format!("{s:?} is not a header name"))?;
        if crate::is_never_forwarded(&name) || name == http::header::COOKIE {
            return Err(format!("{name} cannot be the CSRF header").into());
        }
        Ok(Self(name))
    }
}

impl fmt::Display for CsrfHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

from_str_serde!(CsrfHeader, "a header name such as \"x-csrf\"");

/// Whether `path` is a local path a redirect may go to: one leading `/`, no `//` or `/\` (a
/// protocol-relative URL), no backslash, no scheme, no control character.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control())
}

/// The checks of `[session]` that need several keys (the validator adds the file and line).
pub(crate) fn check(s: &SessionConfig, err: &mut impl FnMut(String, String)) {
    let key = |k: &str| format!("session.{k}");
    if let Err(m) = s.require_compiled() {
        err("session".into(), m.to_string());
    }
    if s.client_id.is_empty() {
        err(key("client_id"), "must not be empty".into());
    }
    match s.client_auth {
        ClientAuth::ClientSecretBasic if s.client_secret.as_ref().is_none_or(|c| c.is_empty()) => {
            err(
                key("client_secret"),
                "client_secret_basic needs a client_secret (e.g. \"${OIDC_CLIENT_SECRET}\")".into(),
            )
        }
        ClientAuth::PrivateKeyJwt if s.key_file.is_none() => err(
            key("key_file"),
            "private_key_jwt needs key_file (a PEM private key)".into(),
        ),
        _ => {}
    }
    if !s.scopes.iter().any(|x| x == "openid") {
        err(key("scopes"), "must include \"openid\"".into());
    }
    if !is_local_path(&s.redirect_path) || s.redirect_path.contains('?') {
        err(
            key("redirect_path"),
            "must be a path starting with one `/`, without a query".into(),
        );
    }
    if !is_local_path(&s.post_logout_redirect) {
        err(
            key("post_logout_redirect"),
            "must be a local path starting with one `/`".into(),
        );
    }
    if !s.public_url.uri().path().trim_end_matches('/').is_empty()
        || s.public_url.uri().query().is_some()
    {
        err(
            key("public_url"),
            "must be an origin with no path (https://app.example.com)".into(),
        );
    }
    // The session cookie is `Secure`: browsers keep it over https, and over http only on loopback (a
    // secure context).
    let loopback = matches!(
        s.public_url.uri().host(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    if !s.public_url.is_https() && !loopback {
        err(
            key("public_url"),
            "must be https:// (the session cookie is Secure; http:// only on localhost or 127.0.0.1)"
                .into(),
        );
    }
    if s.idle_timeout.get().is_zero() {
        err(key("idle_timeout"), "must be greater than 0".into());
    }
    if s.absolute_timeout < s.idle_timeout {
        err(
            key("absolute_timeout"),
            "must be at least idle_timeout".into(),
        );
    }
    if matches!(s.store, SessionStore::Redis(_)) && s.store_key.is_none() {
        err(
            key("store_key"),
            "a Redis store needs store_key (32 bytes, base64): sessions are encrypted at rest"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `user_claims` are released by an OpenID Provider only for their standard scopes
    /// (OpenID Connect Core 5.4: `name` with `profile`, `email` with `email`): the default scopes ask for
    /// them.
    #[test]
    fn the_default_scopes_release_the_default_user_claims() {
        let scopes = default_scopes();
        for (claim, scope) in [("name", "profile"), ("email", "email")] {
            if default_user_claims().iter().any(|c| c == claim) {
                assert!(scopes.iter().any(|s| s == scope), "{claim} needs {scope}");
            }
        }
        assert_eq!(scopes[0], "openid");
    }

    #[test]
    fn a_store_key_is_32_bytes_of_base64_and_never_shown() {
        let k: SessionKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
            .parse()
            .unwrap();
        assert_eq!(k.expose()[31], 31);
        assert_eq!(format!("{k} {k:?}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"[redacted]\"");
        let short = "c2hvcnQta2V5".parse::<SessionKey>().unwrap_err().0;
        assert!(short.contains("9 bytes long"), "{short}");
        assert!(!short.contains("c2hvcnQta2V5"), "{short}");
        let bad = "not base64!!".parse::<SessionKey>().unwrap_err().0;
        assert!(!bad.contains("not base64!!"), "{bad}");
    }

    fn errors(text: &str) -> Vec<(Option<usize>, String, String)> {
        let loaded = crate::Loader::new()
            .with_env(Default::default())
            .load_str(text, crate::Format::Toml);
        loaded
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
            .into_iter()
            // (Without the `session` feature, [session] has an error of its own.)
            .filter(|e| e.key != "session" || crate::Feature::Session.enabled())
            .map(|e| (e.line, e.key, e.message))
            .collect()
    }

    fn keys(errors: &[(Option<usize>, String, String)]) -> Vec<(Option<usize>, &str)> {
        errors.iter().map(|(l, k, _)| (*l, k.as_str())).collect()
    }

    const ROUTE: &str = "[services.s]\nendpoints = [\"h:1\"]\ntoken = \"client\"\n[[routes]]\npath = \"/bff/user\"\nauth = \"session\"\n[[routes.backends]]\nname = \"b\"\nservice = \"s\"\npath = \"/b\"\n";

    /// `auth = "session"` and `token` need [session]; with it, a route may not take a session endpoint;
    /// each error names its line and key.
    #[test]
    fn session_keys_are_checked_with_line_and_key() {
        let without = errors(ROUTE);
        assert_eq!(
            keys(&without),
            [(Some(3), "services.s.token"), (Some(6), "routes[0].auth")],
            "{without:?}"
        );
        assert!(without[0].2.contains("needs [session]"), "{without:?}");
        let with = errors(&format!(
            "[session]\nissuer = \"https://id.test\"\nclient_id = \"web\"\npublic_url = \"https://app.test/app\"\nabsolute_timeout = \"1m\"\n{ROUTE}"
        ));
        assert_eq!(
            keys(&with),
            [
                (Some(1), "session.client_secret"),
                (Some(4), "session.public_url"),
                (Some(5), "session.absolute_timeout"),
                (Some(10), "routes[0].path"),
            ],
            "{with:?}"
        );
        let http = errors(
            "[session]\nissuer = \"https://id.test\"\nclient_id = \"web\"\nclient_secret = \"s\"\npublic_url = \"http://app.test\"\n",
        );
        assert_eq!(keys(&http), [(Some(5), "session.public_url")], "{http:?}");
        assert!(http[0].2.contains("must be https://"), "{http:?}");
        for local in [
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            let ok = errors(&format!(
                "[session]\nissuer = \"https://id.test\"\nclient_id = \"web\"\nclient_secret = \"s\"\npublic_url = \"{local}\"\n"
            ));
            assert!(ok.is_empty(), "{local}: {ok:?}");
        }
        let pkjwt = errors(
            "[session]\nissuer = \"https://id.test\"\nclient_id = \"web\"\npublic_url = \"https://app.test\"\nclient_auth = \"private_key_jwt\"\nscopes = [\"profile\"]\nredirect_path = \"//evil\"\n",
        );
        assert_eq!(
            keys(&pkjwt),
            [
                (Some(1), "session.key_file"),
                (Some(6), "session.scopes"),
                (Some(7), "session.redirect_path"),
            ],
            "{pkjwt:?}"
        );
    }

    /// A store_key of the wrong length is refused naming the key and its length, never its value; a
    /// Redis store needs one; `cookie` cannot be forwarded.
    #[test]
    fn a_bad_store_key_or_a_forwarded_cookie_is_refused() {
        let base = "[session]\nissuer = \"https://id.test\"\nclient_id = \"web\"\nclient_secret = \"s\"\npublic_url = \"https://app.test\"\n";
        let short = errors(&format!("{base}store_key = \"c2hvcnQta2V5\"\n"));
        assert_eq!(keys(&short), [(Some(6), "session.store_key")], "{short:?}");
        assert!(short[0].2.contains("9 bytes long"), "{short:?}");
        assert!(!short[0].2.contains("c2hvcnQta2V5"), "{short:?}");
        if crate::Feature::Redis.enabled() {
            let redis = errors(&format!("{base}store = \"redis://127.0.0.1:6379\"\n"));
            assert_eq!(keys(&redis), [(Some(1), "session.store_key")], "{redis:?}");
        }
        let cookie = errors(
            "[services.s]\nendpoints = [\"h:1\"]\n[[routes]]\npath = \"/a\"\nforward_headers = [\"Cookie\"]\n[[routes.backends]]\nname = \"b\"\nservice = \"s\"\npath = \"/b\"\n",
        );
        assert_eq!(cookie.len(), 1, "{cookie:?}");
        assert_eq!(cookie[0].0, Some(5), "{cookie:?}");
        assert!(
            cookie[0].1.starts_with("routes[0].forward_headers"),
            "{cookie:?}"
        );
        assert!(
            cookie[0].2.contains("cookie is never forwarded"),
            "{cookie:?}"
        );
    }

    #[test]
    fn local_paths() {
        for ok in ["/", "/a/b?x=1#y", "/a//b"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "evil.com",
            "/a\nb",
            "/a\\b",
            "javascript:alert(1)",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
