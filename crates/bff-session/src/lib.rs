//! Browser sessions: the OAuth 2.0 BFF pattern (IETF "OAuth 2.0 for Browser-Based Applications", its
//! backend-for-frontend architecture). The BFF is a confidential OpenID Connect client: `GET /bff/login`
//! sends the browser to the provider (code flow, PKCE S256, state, nonce), `GET /bff/callback` exchanges
//! the code and verifies the ID token, and the browser gets an opaque `HttpOnly` cookie; tokens stay in
//! the [store](store). Session requests need the CSRF header (and an allowed `Origin`); the mesh attaches
//! the session's access token to the services with `token = "user"`, refreshed first when it expires
//! within `refresh_before` (one refresh a session at a time), and the BFF's own client-credentials token
//! to those with `token = "client"`. `GET /bff/user`, `POST /bff/logout` and `POST
//! /bff/backchannel-logout` complete it.
//!
//! The edge and the mesh know nothing of OpenID Connect: the edge calls [`SessionGate`] for routes with
//! `auth = "session"`, the mesh asks a [`TokenSource`] for the client token and reads the user's from the
//! request's [`CallContext`].
#![forbid(unsafe_code)]

mod flight;
mod oidc;
mod store;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts, OptionalFromRequestParts, Query, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use bff_config::{CorsConfig, CorsOrigin, SessionConfig, SessionStore};
use bff_edge::{BffError, SessionFuture, SessionGate};
use bff_mesh::{CallContext, TokenError, TokenFuture, TokenSource};
use bff_telemetry::SessionMetrics;
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use store::{LoginRecord, SessionData, Store};

pub use oidc::OidcError;

/// How long a login may take, from `/bff/login` to the callback.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// How long the id of a logout token without `exp` is remembered (one with `exp` is until then).
const LOGOUT_JTI_TTL: Duration = Duration::from_secs(3600);
/// Claims of an ID token about the token and the login, not the user: a refreshed ID token's do not
/// replace the login's (a refresh is not a new authentication: `acr`, `amr`, `auth_time` stay).
const PROTOCOL_CLAIMS: [&str; 22] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "sid",
    "auth_time",
    "azp",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "s_hash",
    "cnf",
    "sub_jwk",
    "typ",
    "events",
    "_claim_names",
    "_claim_sources",
];

/// A refresh lock in a shared store outlives a crashed holder by at most this.
const REFRESH_LOCK: Duration = Duration::from_secs(10);

/// Why sessions could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("session: {0}")]
pub struct SessionError(String);

/// The browser sessions of a BFF: its provider, store and endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    cfg: SessionConfig,
    provider: Arc<oidc::Provider>,
    /// Shared with the sessions a reload makes when the store's keys are unchanged.
    store: Arc<Store>,
    redirect_uri: String,
    post_logout_uri: String,
    allowed_origins: Vec<HeaderValue>,
    login_cookie: String,
    metrics: Arc<SessionMetrics>,
    refreshes: flight::Flights<Result<Arc<SessionData>, Refresh>>,
    client_tokens: Arc<ClientTokens>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("issuer", &self.0.provider)
            .field("store", &self.0.cfg.store)
            .finish_non_exhaustive()
    }
}

/// A refresh that did not give a fresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refresh {
    /// The provider refused it, or the session is gone: the session is over.
    Ended,
    /// The provider could not be reached: the session stays, this request fails.
    Unavailable,
    /// The store could not be reached: the session stays, this request fails (503).
    Store,
}

/// Milliseconds since the epoch, on tokio's clock (so that tests on paused time move it): the wall clock
/// read once, then advanced by tokio's monotonic time.
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<(u64, std::time::Instant)> = OnceLock::new();
    let (unix, at) = *BASE.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (unix, std::time::Instant::now())
    });
    let now = tokio::time::Instant::now().into_std();
    // Signed, floored to the millisecond: tokio's paused clock may start before `at`.
    let nanos = match now.checked_duration_since(at) {
        Some(after) => after.as_nanos() as i128,
        None => -(at.duration_since(now).as_nanos() as i128),
    };
    (unix as i128 + nanos.div_euclid(1_000_000)).max(0) as u64
}

/// Seconds since the epoch, by the wall clock (the provider's tokens are stamped with it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 256 random bits, base64url (43 characters): session ids, state, nonce, PKCE verifiers.
pub(crate) fn random_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random number generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, hex: what the store keys a session id, a login id, a `sid` or a `sub` by.
pub(crate) fn digest(value: &str) -> String {
    let hash = sha2::Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Equality in time independent of where the values differ.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers, when it looks like one of our ids.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn provider_unavailable(e: &OidcError) -> BffError {
    tracing::warn!(error = %e, "OpenID Provider unavailable");
    BffError::new(
        StatusCode::BAD_GATEWAY,
        "provider_unavailable",
        "the OpenID Provider cannot be reached",
    )
}

fn store_failed(e: &store::StoreError) -> BffError {
    tracing::warn!(error = %e, "session store failed");
    store_unavailable()
}

/// 503 `session_store_unavailable`: this request fails, the BFF and its other routes go on.
fn store_unavailable() -> BffError {
    BffError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "session_store_unavailable",
        "the session store cannot be reached",
    )
}

fn login_failed(why: &str) -> BffError {
    tracing::info!(reason = why, "login refused");
    BffError::new(StatusCode::BAD_REQUEST, "login_failed", "the login failed")
}

impl Sessions {
    /// Sessions of `cfg`; `cors` adds its exact origins to those allowed in `Origin` (besides
    /// `public_url`'s). Nothing is fetched here: [`Sessions::warm_up`] fetches the discovery document.
    pub fn new(
        cfg: &SessionConfig,
        cors: Option<&CorsConfig>,
        metrics: Arc<SessionMetrics>,
    ) -> Result<Self, SessionError> {
        Self::reusing(cfg, cors, metrics, None)
    }

    /// Like [`Sessions::new`], keeping the store of `previous` (its sessions and logins in progress)
    /// when `store`, `store_key`, `client_id` and `issuer` are unchanged: a reload that changes other
    /// keys (claims, timeouts, the CSRF header...) signs nobody out.
    pub fn reusing(
        cfg: &SessionConfig,
        cors: Option<&CorsConfig>,
        metrics: Arc<SessionMetrics>,
        previous: Option<&Sessions>,
    ) -> Result<Self, SessionError> {
        let provider = Arc::new(oidc::Provider::new(cfg).map_err(|e| SessionError(e.to_string()))?);
        let kept = previous
            .filter(|p| {
                let old = &p.0.cfg;
                old.store == cfg.store
                    && old.store_key == cfg.store_key
                    && old.client_id == cfg.client_id
                    && old.issuer == cfg.issuer
            })
            .map(|p| p.0.store.clone());
        let store = match kept {
            Some(store) => store,
            None => Arc::new(Self::store(cfg)?),
        };
        let uri = cfg.public_url.uri();
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map_or("", |a| a.as_str())
        );
        let mut allowed_origins = vec![
            HeaderValue::from_str(&origin)
                .map_err(|_| SessionError("session.public_url is not an origin".into()))?,
        ];
        for o in cors.map(|c| c.allow_origins.as_slice()).unwrap_or_default() {
            if let CorsOrigin::Exact(v) = o {
                allowed_origins.push(v.clone());
            }
        }
        let login_cookie = format!("{}-login", cfg.cookie_name);
        metrics.enabled.store(true, Ordering::Relaxed);
        let client_tokens = Arc::new(ClientTokens {
            provider: provider.clone(),
            margin_ms: cfg.refresh_before.get().as_millis() as u64,
            cached: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(()),
        });
        Ok(Self(Arc::new(Inner {
            redirect_uri: format!("{origin}{}", cfg.redirect_path),
            post_logout_uri: format!("{origin}{}", cfg.post_logout_redirect),
            cfg: cfg.clone(),
            provider,
            store,
            allowed_origins,
            login_cookie,
            metrics,
            refreshes: flight::Flights::default(),
            client_tokens,
        })))
    }

    /// A new store of `cfg`.
    fn store(cfg: &SessionConfig) -> Result<Store, SessionError> {
        Ok(match &cfg.store {
            SessionStore::Memory => Store::memory(),
            #[cfg(feature = "redis")]
            SessionStore::Redis(url) => {
                let key = cfg.store_key.as_ref().ok_or_else(|| {
                    SessionError("session.store_key is required with a Redis store".into())
                })?;
                Store::redis(
                    url.expose(),
                    key.expose(),
                    format!("bff:session:{}:", cfg.client_id),
                )
                .map_err(|e| SessionError(e.to_string()))?
            }
            #[cfg(not(feature = "redis"))]
            SessionStore::Redis(_) => {
                return Err(SessionError(
                    bff_config::Feature::Redis
                        .missing("a Redis session store")
                        .to_string(),
                ));
            }
        })
    }

    /// The config these sessions were made from (a reload keeps them when it is unchanged).
    pub fn config(&self) -> &SessionConfig {
        &self.0.cfg
    }

    /// Fetches the provider's discovery document until it answers, then its JWKS: run at start, in the
    /// background (requests that need the provider meanwhile fetch it themselves).
    pub async fn warm_up(self) {
        self.0.provider.warm_up().await;
    }

    /// The BFF's own client-credentials token, for the mesh's services with `token = "client"`.
    pub fn client_tokens(&self) -> Arc<dyn TokenSource> {
        self.0.client_tokens.clone()
    }

    /// The endpoints, for the public listener: `/bff/login`, the callback (`redirect_path`),
    /// `/bff/user`, `/bff/logout`, `/bff/backchannel-logout`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/bff/login", get(login))
            .route(&self.0.cfg.redirect_path, get(callback))
            .route("/bff/user", get(user))
            .route("/bff/logout", post(logout))
            .route("/bff/backchannel-logout", post(backchannel_logout))
            .with_state(self.clone())
    }

    /// The CSRF check: the header with the value `1`, and an allowed `Origin` when there is one.
    fn check_csrf(&self, headers: &HeaderMap) -> Result<(), BffError> {
        let header_ok = headers
            .get(self.0.cfg.csrf_header.name())
            .is_some_and(|v| v.as_bytes() == b"1");
        let origin_ok = headers
            .get(header::ORIGIN)
            .is_none_or(|o| self.0.allowed_origins.iter().any(|a| a == o));
        if header_ok && origin_ok {
            return Ok(());
        }
        self.0.metrics.csrf_rejected.fetch_add(1, Ordering::Relaxed);
        Err(BffError::new(
            StatusCode::UNAUTHORIZED,
            "csrf",
            if header_ok {
                "the request's Origin is not allowed"
            } else {
                "the CSRF header is missing"
            },
        ))
    }

    fn idle_ms(&self) -> u64 {
        self.0.cfg.idle_timeout.get().as_millis() as u64
    }

    fn absolute_ms(&self) -> u64 {
        self.0.cfg.absolute_timeout.get().as_millis() as u64
    }

    /// When a session ends unless used again (ms since the epoch).
    fn ends_at(&self, data: &SessionData) -> u64 {
        (data.last_seen + self.idle_ms()).min(data.created_at + self.absolute_ms())
    }

    async fn save(&self, key: &str, data: &SessionData) -> Result<(), store::StoreError> {
        let now = now_ms();
        let ttl = self.ends_at(data).saturating_sub(now).max(1);
        let swept = self.0.store.put(key, data, ttl, now).await?;
        if swept > 0 {
            self.0
                .metrics
                .active
                .fetch_sub(swept as i64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn end(&self, key: &str) -> Result<Option<SessionData>, store::StoreError> {
        let data = self.0.store.get(key).await.ok().flatten();
        if self.0.store.delete(key).await? {
            self.0.metrics.active.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(data)
    }

    /// The session of the request's cookie, used now (the idle window slides), or `None` when there is
    /// none or it has timed out (then it is ended). Returns its store key with it.
    async fn current(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Arc<SessionData>)>, BffError> {
        let Some(id) = cookie(headers, self.0.cfg.cookie_name.as_str()) else {
            return Ok(None);
        };
        let key = digest(id);
        self.load(&key).await.map(|d| d.map(|d| (key, d)))
    }

    /// The session of the request's cookie, or 401 `unauthenticated`: with a cookie that names no session
    /// (it ended, timed out, was logged out elsewhere, or was never one), the 401 clears it.
    async fn required(&self, headers: &HeaderMap) -> Result<(String, Arc<SessionData>), BffError> {
        match self.current(headers).await? {
            Some(found) => Ok(found),
            None => Err(self.unauthenticated(headers)),
        }
    }

    /// 401 `unauthenticated`, clearing the session cookie when the request has one.
    fn unauthenticated(&self, headers: &HeaderMap) -> BffError {
        let name = self.0.cfg.cookie_name.as_str();
        let has_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k == name));
        let err = BffError::unauthenticated();
        if has_cookie {
            err.with_header(header::SET_COOKIE, self.set_cookie(name, "", Some(0)))
        } else {
            err
        }
    }

    async fn load(&self, key: &str) -> Result<Option<Arc<SessionData>>, BffError> {
        let Some(mut data) = self.0.store.get(key).await.map_err(|e| store_failed(&e))? else {
            return Ok(None);
        };
        let now = now_ms();
        if now >= self.ends_at(&data) {
            self.end(key).await.map_err(|e| store_failed(&e))?;
            return Ok(None);
        }
        // Written back when the window moved by a 64th of it (not on every request).
        if now - data.last_seen >= (self.idle_ms() / 64).max(1) {
            data.last_seen = now;
            self.save(key, &data).await.map_err(|e| store_failed(&e))?;
        }
        Ok(Some(Arc::new(data)))
    }

    fn needs_refresh(&self, data: &SessionData, now: u64) -> bool {
        let margin = self.0.cfg.refresh_before.get().as_millis() as u64;
        data.access_expires_at
            .is_some_and(|exp| exp <= now + margin)
    }

    /// The session with an access token that does not expire within `refresh_before`: refreshed when
    /// needed, once a session however many requests ask at the same moment.
    async fn fresh(&self, key: &str, data: Arc<SessionData>) -> Result<Arc<SessionData>, BffError> {
        let now = now_ms();
        if !self.needs_refresh(&data, now) {
            return Ok(data);
        }
        if data.refresh_token.is_none() {
            // Nothing to refresh with: usable until it expires, then the session is over.
            if data.access_expires_at.is_some_and(|exp| exp <= now) {
                self.end(key).await.map_err(|e| store_failed(&e))?;
                return Err(BffError::unauthenticated());
            }
            return Ok(data);
        }
        let this = self.clone();
        let k = key.to_string();
        let outcome = self
            .0
            .refreshes
            .run(key, move || async move { this.refresh(&k).await })
            .await
            .unwrap_or(Err(Refresh::Unavailable));
        match outcome {
            Ok(data) => Ok(data),
            Err(Refresh::Ended) => Err(BffError::unauthenticated()),
            Err(Refresh::Store) => Err(store_unavailable()),
            Err(Refresh::Unavailable) if data.access_expires_at.is_some_and(|e| e > now) => {
                Ok(data)
            }
            Err(Refresh::Unavailable) => Err(BffError::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                "the OpenID Provider cannot be reached",
            )),
        }
    }

    /// One refresh of the session `key`: under the store's lock when instances share it (another
    /// instance's refresh is waited for and used), read again first so that a refresh that just landed
    /// is not made twice (a rotated refresh token would be refused the second time).
    async fn refresh(&self, key: &str) -> Result<Arc<SessionData>, Refresh> {
        let lock_ms = REFRESH_LOCK.as_millis() as u64;
        let deadline = tokio::time::Instant::now() + REFRESH_LOCK;
        loop {
            let locked = self.0.store.lock(key, lock_ms).await.map_err(|e| {
                tracing::warn!(error = %e, "session store failed");
                Refresh::Store
            })?;
            let current = self.0.store.get(key).await.map_err(|e| {
                tracing::warn!(error = %e, "session store failed");
                Refresh::Store
            })?;
            let Some(current) = current else {
                if locked {
                    self.0.store.unlock(key).await;
                }
                return Err(Refresh::Ended);
            };
            if !self.needs_refresh(&current, now_ms()) {
                if locked {
                    self.0.store.unlock(key).await;
                }
                return Ok(Arc::new(current));
            }
            if locked {
                let out = self.refresh_now(key, current).await;
                self.0.store.unlock(key).await;
                return out;
            }
            // Another instance is refreshing it: wait for its result.
            if tokio::time::Instant::now() >= deadline || !self.0.store.is_shared() {
                return Err(Refresh::Unavailable);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn refresh_now(
        &self,
        key: &str,
        mut data: SessionData,
    ) -> Result<Arc<SessionData>, Refresh> {
        let m = &self.0.metrics;
        let Some(refresh_token) = data.refresh_token.clone() else {
            return Err(Refresh::Ended);
        };
        let refreshed = match self.0.provider.refresh(&refresh_token).await {
            Ok(tokens) => match &tokens.id_token {
                None => Ok((tokens, None)),
                Some(id) => self
                    .0
                    .provider
                    .verify_refreshed_id_token(id, &data.sub)
                    .await
                    .map(|claims| (tokens, Some(claims))),
            },
            Err(e) => Err(e),
        };
        match refreshed {
            Ok((tokens, claims)) => {
                let now = now_ms();
                // The user's claims as the provider says them now (a changed name, a role taken away):
                // a refreshed ID token with claims about the user replaces the login's; one with only
                // the protocol's (some providers say the user's only at login) keeps them. The
                // protocol's and the login's own claims stay the login's, `sid` with them (the
                // back-channel index).
                let user = |name: &String| !PROTOCOL_CLAIMS.contains(&name.as_str());
                if let Some(claims) = claims.filter(|c| c.keys().any(user)) {
                    data.claims.retain(|name, _| !user(name));
                    data.claims
                        .extend(claims.into_iter().filter(|(name, _)| user(name)));
                }
                data.access_token = tokens.access_token;
                data.access_expires_at = tokens.expires_in.map(|s| now + s * 1000);
                if let Some(rt) = tokens.refresh_token {
                    data.refresh_token = Some(rt);
                }
                if let Some(id) = tokens.id_token {
                    data.id_token = id;
                }
                if let Err(e) = self.save(key, &data).await {
                    tracing::warn!(error = %e, "session store failed");
                    return Err(Refresh::Store);
                }
                m.refresh_ok.fetch_add(1, Ordering::Relaxed);
                Ok(Arc::new(data))
            }
            Err(OidcError::Refused { status, code, .. }) => {
                tracing::info!(%status, code = %code, "refresh refused: the session ends");
                m.refresh_failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.end(key).await;
                Err(Refresh::Ended)
            }
            Err(OidcError::Invalid(why)) => {
                tracing::info!(reason = %why, "refreshed ID token refused: the session ends");
                m.refresh_failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.end(key).await;
                Err(Refresh::Ended)
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh failed");
                m.refresh_error.fetch_add(1, Ordering::Relaxed);
                Err(Refresh::Unavailable)
            }
        }
    }

    /// What a request with a session carries: the [`Session`] for handlers, the access token in the
    /// mesh's context for the services with `token = "user"`.
    fn attach(&self, parts: &mut Parts, data: &SessionData) -> Result<(), BffError> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", data.access_token))
            .map_err(|_| BffError::internal())?;
        bearer.set_sensitive(true);
        if let Some(ctx) = parts.extensions.get::<Arc<CallContext>>() {
            let mut ctx = CallContext::clone(ctx);
            ctx.user_token = Some(bearer);
            parts.extensions.insert(Arc::new(ctx));
        }
        parts.extensions.insert(Session(Arc::new(SessionView {
            claims: data.claims.clone(),
            sub: data.sub.clone(),
            access_token: data.access_token.clone(),
            expires_at: self.ends_at(data) / 1000,
        })));
        Ok(())
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let same_site = if name == self.0.login_cookie {
            // The callback is a navigation from the provider's site: a Strict cookie would not come back.
            "Lax"
        } else {
            self.0.cfg.same_site.as_str()
        };
        let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        let mut v = HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }
}

impl SessionGate for Sessions {
    fn authenticate<'a>(&'a self, parts: &'a mut Parts) -> SessionFuture<'a> {
        Box::pin(async move {
            self.check_csrf(&parts.headers)?;
            let (key, data) = self.required(&parts.headers).await?;
            let data = match self.fresh(&key, data).await {
                Ok(data) => data,
                // The session just ended (a refused refresh, an expired token): its cookie goes too.
                Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
                    return Err(self.unauthenticated(&parts.headers));
                }
                Err(e) => return Err(e),
            };
            self.attach(parts, &data)
        })
    }
}

/// The session of the request, for handlers of routes with `auth = "session"` (`session: Session`; on
/// other routes `Option<Session>` is `None`). Without one the rejection is the JSON 401.
///
/// ```no_run
/// # use bff_session::Session;
/// # use bff_mesh::Mesh;
/// async fn me(session: Session, mesh: Mesh) -> bff_edge::Result<String> {
///     // Services with `token = "user"` get the access token by themselves; for a call of your own:
///     let _ = mesh.service("legacy").get("/me")
///         .header("authorization", format!("Bearer {}", session.access_token()));
///     Ok(session.sub().to_string())
/// }
/// ```
#[derive(Clone)]
pub struct Session(Arc<SessionView>);

struct SessionView {
    claims: Map<String, Value>,
    sub: String,
    access_token: String,
    expires_at: u64,
}

impl Session {
    /// The ID token's claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// The user's `sub`.
    pub fn sub(&self) -> &str {
        &self.0.sub
    }

    /// The access token (already refreshed when it was about to expire), for calls the mesh does not
    /// make with `token = "user"`. Never log it.
    pub fn access_token(&self) -> &str {
        &self.0.access_token
    }

    /// When the session ends unless used again (seconds since the epoch).
    pub fn expires_at(&self) -> u64 {
        self.0.expires_at
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.0.sub)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = BffError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(BffError::unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = BffError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

/// The BFF's own client-credentials token: cached until `refresh_before` ahead of its expiry, fetched by
/// one caller at a time.
struct ClientTokens {
    provider: Arc<oidc::Provider>,
    margin_ms: u64,
    cached: RwLock<Option<(HeaderValue, u64)>>,
    fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClientTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTokens")
    }
}

impl ClientTokens {
    fn cached(&self) -> Option<HeaderValue> {
        let now = now_ms();
        self.cached
            .read()
            .ok()?
            .as_ref()
            .filter(|(_, exp)| now + self.margin_ms < *exp)
            .map(|(v, _)| v.clone())
    }
}

impl TokenSource for ClientTokens {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            if let Some(v) = self.cached() {
                return Ok(v);
            }
            let _one = self.fetch.lock().await;
            if let Some(v) = self.cached() {
                return Ok(v);
            }
            let tokens = self
                .provider
                .client_credentials()
                .await
                .map_err(TokenError::new)?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", tokens.access_token))
                .map_err(|_| TokenError::new("the client token is not a header value"))?;
            v.set_sensitive(true);
            let expires = now_ms() + tokens.expires_in.unwrap_or(300) * 1000;
            if let Ok(mut c) = self.cached.write() {
                *c = Some((v.clone(), expires));
            }
            Ok(v)
        })
    }
}

// The endpoints.

async fn login(
    State(s): State<Sessions>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, BffError> {
    let return_url = q.get("returnUrl").map_or("/", String::as_str);
    // A local path, in visible ASCII (it becomes the callback's `Location`).
    if return_url.len() > 2048
        || !bff_config::is_local_path(return_url)
        || !return_url.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(BffError::bad_request(
            "returnUrl must be a local path starting with one `/`",
        ));
    }
    let doc =
        s.0.provider
            .discovery()
            .await
            .map_err(|e| provider_unavailable(&e))?;
    let verifier = random_id();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let record = LoginRecord {
        state: random_id(),
        nonce: random_id(),
        verifier,
        return_url: return_url.to_string(),
    };
    let scope = s.0.cfg.scopes.join(" ");
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", s.0.cfg.client_id.as_str()),
        ("redirect_uri", s.0.redirect_uri.as_str()),
        ("scope", scope.as_str()),
        ("state", record.state.as_str()),
        ("nonce", record.nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .map_err(|_| BffError::internal())?;
    let sep = if doc.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{query}", doc.authorization_endpoint);
    let login_id = random_id();
    let now = now_ms();
    s.0.store
        .put_login(
            &digest(&login_id),
            &record,
            LOGIN_TTL.as_millis() as u64,
            now,
        )
        .await
        .map_err(|e| store_failed(&e))?;
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| BffError::internal())?,
    );
    h.append(
        header::SET_COOKIE,
        s.set_cookie(&s.0.login_cookie, &login_id, Some(LOGIN_TTL.as_secs())),
    );
    no_store(&mut res);
    Ok(res)
}

async fn callback(
    State(s): State<Sessions>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, BffError> {
    let Some(login_id) = cookie(&headers, &s.0.login_cookie) else {
        return Err(BffError::bad_request(
            "no login in progress in this browser: start again at /bff/login",
        ));
    };
    let record = s
        .0
        .store
        .take_login(&digest(login_id), now_ms())
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| {
            BffError::bad_request("the login expired or was completed: start again at /bff/login")
        })?;
    if q.contains_key("error") {
        return Err(login_failed("the provider answered with an error"));
    }
    let state = q.get("state").map_or("", String::as_str);
    if !constant_eq(state.as_bytes(), record.state.as_bytes()) {
        return Err(login_failed("state mismatch"));
    }
    if let Some(iss) = q.get("iss") {
        let doc =
            s.0.provider
                .discovery()
                .await
                .map_err(|e| provider_unavailable(&e))?;
        if iss.trim_end_matches('/') != doc.issuer.trim_end_matches('/') {
            return Err(login_failed("iss mismatch"));
        }
    }
    let code = q
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| login_failed("no code"))?;
    let tokens = match s
        .0
        .provider
        .exchange_code(code, &s.0.redirect_uri, &record.verifier)
        .await
    {
        Ok(t) => t,
        Err(OidcError::Refused { status, code, .. }) => {
            tracing::info!(%status, code = %code, "code exchange refused");
            return Err(login_failed("code exchange refused"));
        }
        Err(e) => return Err(provider_unavailable(&e)),
    };
    let id_token = tokens
        .id_token
        .clone()
        .ok_or_else(|| login_failed("no ID token"))?;
    let claims = match s.0.provider.verify_id_token(&id_token, &record.nonce).await {
        Ok(c) => c,
        Err(OidcError::Invalid(why)) => {
            tracing::info!(reason = %why, "ID token refused");
            return Err(login_failed("ID token refused"));
        }
        Err(e) => return Err(provider_unavailable(&e)),
    };
    // A session the browser had before is ended: the id is new at every login (no fixation).
    if let Some(old) = cookie(&headers, s.0.cfg.cookie_name.as_str()) {
        s.end(&digest(old)).await.map_err(|e| store_failed(&e))?;
    }
    let now = now_ms();
    let data = SessionData {
        sub: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        sid: claims.get("sid").and_then(Value::as_str).map(String::from),
        claims,
        id_token,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        access_expires_at: tokens.expires_in.map(|e| now + e * 1000),
        created_at: now,
        last_seen: now,
    };
    let id = random_id();
    s.save(&digest(&id), &data)
        .await
        .map_err(|e| store_failed(&e))?;
    s.0.metrics.active.fetch_add(1, Ordering::Relaxed);
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&record.return_url).map_err(|_| BffError::internal())?,
    );
    h.append(
        header::SET_COOKIE,
        s.set_cookie(s.0.cfg.cookie_name.as_str(), &id, None),
    );
    h.append(
        header::SET_COOKIE,
        s.set_cookie(&s.0.login_cookie, "", Some(0)),
    );
    no_store(&mut res);
    Ok(res)
}

async fn user(State(s): State<Sessions>, headers: HeaderMap) -> Result<Response, BffError> {
    s.check_csrf(&headers)?;
    let (_, data) = s.required(&headers).await?;
    let claims: Map<String, Value> =
        s.0.cfg
            .user_claims
            .iter()
            .filter_map(|c| data.claims.get(c).map(|v| (c.clone(), v.clone())))
            .collect();
    let mut res = axum::Json(json!({
        "claims": claims,
        "expires_at": s.ends_at(&data) / 1000,
    }))
    .into_response();
    no_store(&mut res);
    Ok(res)
}

async fn logout(State(s): State<Sessions>, headers: HeaderMap) -> Result<Response, BffError> {
    s.check_csrf(&headers)?;
    let (key, data) = s.required(&headers).await?;
    s.end(&key).await.map_err(|e| store_failed(&e))?;
    if let Some(rt) = &data.refresh_token {
        s.0.provider.revoke(rt).await;
    }
    let end_session_url = match s.0.provider.discovery().await {
        Ok(doc) => doc.end_session_endpoint.as_ref().and_then(|e| {
            let q = serde_urlencoded::to_string([
                ("id_token_hint", data.id_token.as_str()),
                ("post_logout_redirect_uri", s.0.post_logout_uri.as_str()),
                ("client_id", s.0.cfg.client_id.as_str()),
            ])
            .ok()?;
            let sep = if e.contains('?') { '&' } else { '?' };
            Some(format!("{e}{sep}{q}"))
        }),
        Err(_) => None,
    };
    let mut res = axum::Json(json!({ "end_session_url": end_session_url })).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        s.set_cookie(s.0.cfg.cookie_name.as_str(), "", Some(0)),
    );
    no_store(&mut res);
    Ok(res)
}

async fn backchannel_logout(State(s): State<Sessions>, body: Bytes) -> Result<Response, BffError> {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| BffError::bad_request("a form with logout_token is expected"))?;
    let token = form
        .get("logout_token")
        .ok_or_else(|| BffError::bad_request("a form with logout_token is expected"))?;
    let oidc::LogoutToken { sid, sub, jti, exp } =
        match s.0.provider.verify_logout_token(token).await {
            Ok(t) => t,
            Err(OidcError::Invalid(why)) => {
                tracing::info!(reason = %why, "logout token refused");
                return Err(BffError::bad_request("invalid logout token"));
            }
            Err(e) => return Err(provider_unavailable(&e)),
        };
    // A token is accepted once (Back-Channel Logout 1.0, section 2.6): its jti is remembered, in the store
    // (so by every instance sharing it), for as long as the token is accepted (exp and the leeway).
    let now = now_ms();
    let until_ms = match exp {
        Some(exp) => (exp + oidc::LEEWAY) * 1000,
        None => now + LOGOUT_JTI_TTL.as_millis() as u64,
    };
    let fresh =
        s.0.store
            .remember_jti(&digest(&jti), until_ms.saturating_sub(now).max(1000), now)
            .await
            .map_err(|e| store_failed(&e))?;
    if !fresh {
        tracing::info!("logout token replayed");
        return Err(BffError::bad_request("logout token already used"));
    }
    let keys = match (&sid, &sub) {
        (Some(sid), _) => s.0.store.find(false, sid).await,
        (None, Some(sub)) => s.0.store.find(true, sub).await,
        (None, None) => Ok(Vec::new()),
    }
    .map_err(|e| store_failed(&e))?;
    let mut ended = 0;
    for key in keys {
        // With both, only the sessions of that sub (a sid is the provider's, but be strict).
        if let (Some(_), Some(sub)) = (&sid, &sub)
            && let Ok(Some(d)) = s.0.store.get(&key).await
            && d.sub != *sub
        {
            continue;
        }
        if s.end(&key).await.map_err(|e| store_failed(&e))?.is_some() {
            ended += 1;
        }
    }
    tracing::info!(sessions = ended, "back-channel logout");
    let mut res = StatusCode::OK.into_response();
    no_store(&mut res);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(extra: &str) -> Sessions {
        let text = format!(
            "[session]\nissuer = \"http://127.0.0.1:1\"\nclient_id = \"web\"\nclient_secret = \"s\"\npublic_url = \"https://app.test\"\n{extra}"
        );
        let config = bff_config::Loader::new()
            .with_env(Default::default())
            .load_str(&text, bff_config::Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"));
        Sessions::new(
            config.session.as_ref().unwrap(),
            None,
            Arc::new(SessionMetrics::default()),
        )
        .unwrap()
    }

    fn data(now: u64) -> SessionData {
        SessionData {
            sub: "u1".into(),
            sid: Some("sid1".into()),
            claims: Map::new(),
            id_token: "idt".into(),
            access_token: "at".into(),
            refresh_token: None,
            access_expires_at: None,
            created_at: now,
            last_seen: now,
        }
    }

    /// Idle timeout, sliding: a session used every 8 minutes lives on (10 minutes idle); one left for 11
    /// minutes is gone, and removed from the store.
    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_slides_with_use() {
        let s = sessions("idle_timeout = \"10m\"");
        s.save("k", &data(now_ms())).await.unwrap();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(8 * 60)).await;
            assert!(s.load("k").await.unwrap().is_some());
        }
        tokio::time::advance(Duration::from_secs(11 * 60)).await;
        assert!(s.load("k").await.unwrap().is_none());
        assert!(s.0.store.get("k").await.unwrap().is_none());
        assert!(s.0.store.find(false, "sid1").await.unwrap().is_empty());
    }

    /// Absolute timeout: used every 10 minutes, the session still ends 1 hour after login.
    #[tokio::test(start_paused = true)]
    async fn the_absolute_timeout_ends_a_session_in_use() {
        let s = sessions("idle_timeout = \"30m\"\nabsolute_timeout = \"1h\"");
        s.save("k", &data(now_ms())).await.unwrap();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(10 * 60)).await;
            assert!(s.load("k").await.unwrap().is_some());
        }
        tokio::time::advance(Duration::from_secs(10 * 60)).await;
        assert!(s.load("k").await.unwrap().is_none());
    }

    fn request(headers: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[tokio::test]
    async fn csrf_needs_the_header_and_an_allowed_origin() {
        let s = sessions("csrf_header = \"x-app-csrf\"");
        assert!(s.check_csrf(&request(&[("x-app-csrf", "1")])).is_ok());
        assert!(
            s.check_csrf(&request(&[
                ("x-app-csrf", "1"),
                ("origin", "https://app.test")
            ]))
            .is_ok()
        );
        for bad in [
            request(&[]),
            request(&[("x-csrf", "1")]),
            request(&[("x-app-csrf", "0")]),
            request(&[("x-app-csrf", "1"), ("origin", "https://evil.test")]),
            request(&[("x-app-csrf", "1"), ("origin", "null")]),
        ] {
            let e = s.check_csrf(&bad).unwrap_err();
            assert_eq!((e.status().as_u16(), e.code()), (401, "csrf"), "{bad:?}");
        }
        assert_eq!(s.0.metrics.csrf_rejected.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn cookies_are_read_by_name_and_shape() {
        let id = random_id();
        let h = request(&[("cookie", &format!("a=b; __Host-bff={id}; c=d"))]);
        assert_eq!(cookie(&h, "__Host-bff"), Some(id.as_str()));
        let h = request(&[("cookie", "__Host-bff=short")]);
        assert_eq!(cookie(&h, "__Host-bff"), None);
        assert_eq!(digest("abc").len(), 64);
        assert!(constant_eq(b"abc", b"abc") && !constant_eq(b"abc", b"abd"));
    }
}
