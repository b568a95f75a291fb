//! The OpenID Provider as this confidential client sees it: its discovery document (fetched once, retried
//! until it answers), its JWKS (fetched again when a token names an unknown `kid`, at most every 10 s),
//! the token endpoint (code exchange, refresh, client credentials) with `client_secret_basic` or
//! `private_key_jwt`, revocation, and the verification of ID tokens and logout tokens.
//!
//! Nothing here logs a token, a code or a secret: errors name what failed (an endpoint without its query,
//! a status, the provider's `error` code), never a value.

use bff_config::{ClientAuth, SessionConfig};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::{
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};
use tokio::{sync::OnceCell, time::Instant};

/// The most bytes read of a provider's answer.
const MAX_BODY: usize = 1 << 20;
/// Each call to the provider.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Unknown `kid`s fetch the JWKS again at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp`, `iat` and `nbf`.
pub(crate) const LEEWAY: u64 = 60;
/// The event of a back-channel logout token.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What can go wrong talking to the provider or checking what it signed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered something unreadable.
    #[error("OpenID Provider {endpoint}: {why}")]
    Unreachable { endpoint: String, why: String },
    /// The provider refused the request (`invalid_grant`, ...): its `error` code and status.
    #[error("OpenID Provider {endpoint} refused: {status} {code}")]
    Refused {
        endpoint: String,
        status: StatusCode,
        code: String,
    },
    /// A token that does not verify.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Setting up the client failed (key file, scheme).
    #[error("{0}")]
    Setup(String),
}

impl OidcError {
    fn unreachable(endpoint: &Uri, why: impl std::fmt::Display) -> Self {
        Self::Unreachable {
            endpoint: shown(endpoint),
            why: why.to_string(),
        }
    }
}

/// An endpoint as errors show it: no query (it may hold a hint or a token), no credentials.
fn shown(uri: &Uri) -> String {
    let mut s = String::new();
    if let Some(scheme) = uri.scheme_str() {
        s.push_str(scheme);
        s.push_str("://");
    }
    if let Some(host) = uri.host() {
        s.push_str(host);
    }
    if let Some(port) = uri.port_u16() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(uri.path());
    s
}

/// The provider's discovery document: what this client uses of it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) jwks_uri: String,
    #[serde(default)]
    pub(crate) end_session_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) revocation_endpoint: Option<String>,
}

/// A token endpoint's answer.
#[derive(Clone, Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    #[serde(default)]
    pub(crate) id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What a verified logout token names.
#[derive(Debug)]
pub(crate) struct LogoutToken {
    pub(crate) sid: Option<String>,
    pub(crate) sub: Option<String>,
    /// Its id: a second token with it is a replay.
    pub(crate) jti: String,
    /// When it expires (seconds since the epoch), if it says.
    pub(crate) exp: Option<u64>,
}

enum HttpClient {
    Http(Client<HttpConnector, Full<Bytes>>),
    #[cfg(feature = "tls")]
    Https(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl HttpClient {
    async fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Http(c) => c.request(req).await,
            #[cfg(feature = "tls")]
            Self::Https(c) => c.request(req).await,
        }
    }
}

/// An idle connection to the provider is not used again after this: below the keep-alive timeout of
/// common servers (Node.js and Apache close idle connections after 5 s), so that a call does not meet a
/// connection the provider is closing at that moment.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// The same GET again (`Request` is not `Clone`).
fn again(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(Full::new(Bytes::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// The provider, shared by every request.
pub(crate) struct Provider {
    issuer: String,
    client_id: String,
    auth: Auth,
    /// GETs (discovery, JWKS): pooled connections, idle for at most [`POOL_IDLE`].
    http: HttpClient,
    /// POSTs (the token endpoint, revocation): a new connection each, never one that may be closing
    /// (a code exchange or a rotating refresh cannot be sent twice).
    fresh: HttpClient,
    discovery: OnceCell<Arc<Discovery>>,
    jwks: RwLock<Option<Arc<JwkSet>>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    jwks_fetch: tokio::sync::Mutex<()>,
}

enum Auth {
    Basic(String),
    PrivateKeyJwt(Box<EncodingKey>),
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    pub(crate) fn new(cfg: &SessionConfig) -> Result<Self, OidcError> {
        use base64::Engine as _;
        let issuer = cfg.issuer.to_string().trim_end_matches('/').to_string();
        let auth = match cfg.client_auth {
            ClientAuth::ClientSecretBasic => {
                // RFC 6749 section 2.3.1: both form-urlencoded, then Basic.
                let enc = |s: &str| {
                    serde_urlencoded::to_string([("", s)])
                        .map(|e| e[1..].to_string())
                        .unwrap_or_default()
                };
                let secret = cfg.client_secret.as_ref().map(|s| s.expose()).unwrap_or("");
                let pair = format!("{}:{}", enc(&cfg.client_id), enc(secret));
                Auth::Basic(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            ClientAuth::PrivateKeyJwt => {
                let path = cfg.key_file.as_deref().unwrap_or_default();
                let pem = std::fs::read(path)
                    .map_err(|e| OidcError::Setup(format!("session.key_file {path}: {e}")))?;
                let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                    OidcError::Setup(format!(
                        "session.key_file {path}: not an RSA private key in PEM ({e})"
                    ))
                })?;
                Auth::PrivateKeyJwt(Box::new(key))
            }
        };
        let mut pooled = Client::builder(TokioExecutor::new());
        pooled
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new());
        let mut unpooled = Client::builder(TokioExecutor::new());
        unpooled.pool_max_idle_per_host(0);
        let (http, fresh) = if cfg.issuer.is_https() {
            #[cfg(feature = "tls")]
            {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| OidcError::Setup(format!("session.issuer: TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http1()
                    .build();
                (
                    HttpClient::Https(pooled.build(https.clone())),
                    HttpClient::Https(unpooled.build(https)),
                )
            }
            #[cfg(not(feature = "tls"))]
            {
                return Err(OidcError::Setup(
                    bff_config::Feature::Tls
                        .missing("an https:// session.issuer")
                        .to_string(),
                ));
            }
        } else {
            (
                HttpClient::Http(pooled.build_http()),
                HttpClient::Http(unpooled.build_http()),
            )
        };
        Ok(Self {
            issuer,
            client_id: cfg.client_id.clone(),
            auth,
            http,
            fresh,
            discovery: OnceCell::new(),
            jwks: RwLock::new(None),
            last_jwks_fetch: Mutex::new(None),
            jwks_fetch: tokio::sync::Mutex::new(()),
        })
    }

    /// One call to the provider: status and body (bounded), within [`CALL_TIMEOUT`].
    async fn call(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), OidcError> {
        let uri = req.uri().clone();
        let fut = async {
            let res = if req.method() == Method::GET {
                let retry = again(&req);
                match self.http.request(req).await {
                    // A kept connection the provider closed as the GET went out: the GET once more,
                    // on a new connection (the pool's other idle ones may be closing too). Never a
                    // POST: the provider may have processed it.
                    Err(e) if bff_mesh::__closed_before_answer(&e) => {
                        self.fresh.request(retry).await
                    }
                    res => res,
                }
            } else {
                self.fresh.request(req).await
            }
            .map_err(|e| OidcError::unreachable(&uri, bff_telemetry::ErrorChain(&e)))?;
            let status = res.status();
            let body = Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| OidcError::unreachable(&uri, e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| OidcError::unreachable(&uri, "timed out"))?
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| OidcError::Setup(format!("not a URL: {url:?}")))?;
        let req = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| OidcError::unreachable(&uri, e))?;
        let (status, body) = self.call(req).await?;
        if !status.is_success() {
            return Err(OidcError::unreachable(
                &uri,
                format_args!("status {status}"),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| OidcError::unreachable(&uri, format_args!("not the JSON expected: {e}")))
    }

    /// The discovery document, fetched on first use and kept.
    pub(crate) async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let doc: Discovery = self.get_json(&url).await?;
                if doc.issuer.trim_end_matches('/') != self.issuer {
                    return Err(OidcError::Setup(format!(
                        "the discovery document of {} names another issuer ({:?})",
                        self.issuer, doc.issuer
                    )));
                }
                Ok(Arc::new(doc))
            })
            .await
            .cloned()
    }

    /// Fetches the discovery document until it answers (first at once, then with a backoff up to 30 s),
    /// and the JWKS once: what the BFF runs at start.
    pub(crate) async fn warm_up(&self) {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.discovery().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "OpenID Provider discovery failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        if let Err(e) = self.fetch_jwks(false).await {
            tracing::warn!(error = %e, "OpenID Provider JWKS fetch failed");
        }
    }

    /// Fetches the JWKS; a fetch for an unknown `kid` is the one [`REFETCH_EVERY`] limits (so that a key
    /// rotated in just after start is picked up at once, and tokens with made-up kids cost one fetch in
    /// 10 s).
    async fn fetch_jwks(&self, for_unknown_kid: bool) -> Result<Arc<JwkSet>, OidcError> {
        let _one = self.jwks_fetch.lock().await;
        // The start's fetch and a first verification may race: one fetch serves both.
        if !for_unknown_kid && let Some(set) = self.jwks.read().ok().and_then(|j| j.clone()) {
            return Ok(set);
        }
        let doc = self.discovery().await?;
        if for_unknown_kid && let Ok(mut last) = self.last_jwks_fetch.lock() {
            *last = Some(Instant::now());
        }
        let set: JwkSet = self.get_json(&doc.jwks_uri).await?;
        let set = Arc::new(set);
        if let Ok(mut jwks) = self.jwks.write() {
            *jwks = Some(set.clone());
        }
        Ok(set)
    }

    /// The key of `kid` (or the only key when the token names none), fetching the JWKS again for an
    /// unknown one when the last fetch is older than [`REFETCH_EVERY`].
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
        let cached = self.jwks.read().ok().and_then(|j| j.clone());
        if let Some(set) = &cached
            && let Some(key) = pick(set, kid, alg)
        {
            return key;
        }
        let due = self
            .last_jwks_fetch
            .lock()
            .map(|l| l.is_none_or(|t| t.elapsed() >= REFETCH_EVERY))
            .unwrap_or(false);
        if !due && cached.is_some() {
            return Err(OidcError::Invalid("unknown signing key".into()));
        }
        let set = self.fetch_jwks(cached.is_some()).await?;
        pick(&set, kid, alg)
            .unwrap_or_else(|| Err(OidcError::Invalid("unknown signing key".into())))
    }

    /// Verifies a JWT the provider signed: an asymmetric algorithm, a key of its JWKS, `iss` the issuer,
    /// `aud` this client; `exp` when `require_exp`.
    async fn verify(
        &self,
        token: &str,
        require_exp: bool,
    ) -> Result<Map<String, Value>, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Invalid(format!("header: {e}")))?;
        let alg = header.alg;
        if !matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(OidcError::Invalid(format!(
                "algorithm {alg:?} is not allowed"
            )));
        }
        let key = self.key_for(header.kid.as_deref(), alg).await?;
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = LEEWAY;
        v.validate_exp = require_exp;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer, &format!("{}/", self.issuer)]);
        v.set_audience(&[&self.client_id]);
        let mut required = vec!["iss", "aud"];
        if require_exp {
            required.push("exp");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let claims = data.claims;
        // Several audiences: the authorized party must be this client (OpenID Connect Core 3.1.3.7).
        if claims.get("aud").is_some_and(Value::is_array)
            && claims
                .get("azp")
                .is_some_and(|azp| azp.as_str() != Some(&self.client_id))
        {
            return Err(OidcError::Invalid("azp is another client".into()));
        }
        Ok(claims)
    }

    /// An ID token: signature, `iss`, `aud`, `exp`, `sub`, and the login's `nonce`.
    pub(crate) async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let claims = self.verify(token, true).await?;
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if crate::constant_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(OidcError::Invalid("nonce mismatch".into())),
        }
        if claims.get("sub").and_then(Value::as_str).is_none() {
            return Err(OidcError::Invalid("no sub".into()));
        }
        Ok(claims)
    }

    /// An ID token of a refresh response (OpenID Connect Core 12.2): verified as at login (signature,
    /// `iss`, `aud`, `exp`; a refresh has no nonce to compare), and its `sub` must be the session's.
    pub(crate) async fn verify_refreshed_id_token(
        &self,
        token: &str,
        sub: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let claims = self.verify(token, true).await?;
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(OidcError::Invalid(
                "the refreshed ID token names another sub".into(),
            ));
        }
        Ok(claims)
    }

    /// A back-channel logout token (OpenID Connect Back-Channel Logout 1.0, section 2.6): signature,
    /// `iss`, `aud`, `iat`, `jti`, the logout event, no `nonce`, and a `sid` or a `sub`.
    pub(crate) async fn verify_logout_token(&self, token: &str) -> Result<LogoutToken, OidcError> {
        let claims = self.verify(token, false).await?;
        if claims.get("iat").and_then(Value::as_u64).is_none() {
            return Err(OidcError::Invalid("no iat".into()));
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64)
            && exp + LEEWAY < crate::unix_now()
        {
            return Err(OidcError::Invalid("expired".into()));
        }
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_EVENT));
        if !event.is_some_and(Value::is_object) {
            return Err(OidcError::Invalid("no back-channel logout event".into()));
        }
        if claims.contains_key("nonce") {
            return Err(OidcError::Invalid("a logout token has no nonce".into()));
        }
        let sid = claims.get("sid").and_then(Value::as_str).map(String::from);
        let sub = claims.get("sub").and_then(Value::as_str).map(String::from);
        if sid.is_none() && sub.is_none() {
            return Err(OidcError::Invalid("neither sid nor sub".into()));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or_else(|| OidcError::Invalid("no jti".into()))?
            .to_string();
        Ok(LogoutToken {
            sid,
            sub,
            jti,
            exp: claims.get("exp").and_then(Value::as_u64),
        })
    }

    /// A form POST to the token or revocation endpoint, authenticated as this client.
    async fn post_form(
        &self,
        endpoint: &str,
        form: &mut Vec<(&'static str, String)>,
    ) -> Result<(StatusCode, Bytes, Uri), OidcError> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| OidcError::Setup(format!("not a URL: {endpoint:?}")))?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        match &self.auth {
            Auth::Basic(value) => {
                let mut v = http::HeaderValue::from_str(value)
                    .map_err(|_| OidcError::Setup("client credentials are not a header".into()))?;
                v.set_sensitive(true);
                req = req.header(header::AUTHORIZATION, v);
            }
            Auth::PrivateKeyJwt(key) => {
                let now = crate::unix_now();
                let claims = serde_json::json!({
                    "iss": self.client_id,
                    "sub": self.client_id,
                    "aud": endpoint,
                    "jti": crate::random_id(),
                    "iat": now,
                    "exp": now + 60,
                });
                let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
                    .map_err(|e| OidcError::Setup(format!("client assertion: {e}")))?;
                form.push(("client_id", self.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", jwt));
            }
        }
        let body = serde_urlencoded::to_string(&*form)
            .map_err(|e| OidcError::Setup(format!("form: {e}")))?;
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| OidcError::unreachable(&uri, e))?;
        let (status, body) = self.call(req).await?;
        Ok((status, body, uri))
    }

    /// A grant at the token endpoint.
    async fn grant(
        &self,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse, OidcError> {
        let doc = self.discovery().await?;
        let (status, body, uri) = self.post_form(&doc.token_endpoint, &mut form).await?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: String,
            }
            let code = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_default();
            // The provider's code when it is a plain word; nothing else of its body.
            let code = if code.len() <= 64
                && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                code
            } else {
                String::new()
            };
            return Err(OidcError::Refused {
                endpoint: shown(&uri),
                status,
                code,
            });
        }
        serde_json::from_slice(&body).map_err(|_| {
            OidcError::unreachable(&uri, "the token response is not the JSON expected")
        })
    }

    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, OidcError> {
        self.grant(vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("redirect_uri", redirect_uri.into()),
            ("code_verifier", verifier.into()),
        ])
        .await
    }

    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, OidcError> {
        self.grant(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh_token.into()),
        ])
        .await
    }

    pub(crate) async fn client_credentials(&self) -> Result<TokenResponse, OidcError> {
        self.grant(vec![("grant_type", "client_credentials".into())])
            .await
    }

    /// Revokes a refresh token (RFC 7009) when the provider has a revocation endpoint; failures are
    /// logged and otherwise ignored (the session is gone from the store either way).
    pub(crate) async fn revoke(&self, refresh_token: &str) {
        let Ok(doc) = self.discovery().await else {
            return;
        };
        let Some(endpoint) = &doc.revocation_endpoint else {
            return;
        };
        let mut form = vec![
            ("token", refresh_token.to_string()),
            ("token_type_hint", "refresh_token".into()),
        ];
        match self.post_form(endpoint, &mut form).await {
            Ok((status, _, _)) if status.is_success() => {}
            Ok((status, _, uri)) => {
                tracing::warn!(endpoint = %shown(&uri), %status, "refresh token revocation refused")
            }
            Err(e) => tracing::warn!(error = %e, "refresh token revocation failed"),
        }
    }
}

/// The key of `kid` in `set` usable with `alg` (an asymmetric key of its family).
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, OidcError>> {
    let usable =
        |jwk: &&jsonwebtoken::jwk::Jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_));
    let jwk = match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid))?,
        None => {
            let mut keys = set.keys.iter().filter(usable);
            let only = keys.next()?;
            if keys.next().is_some() {
                return Some(Err(OidcError::Invalid(
                    "no kid, and the JWKS has several keys".into(),
                )));
            }
            only
        }
    };
    Some(
        DecodingKey::from_jwk(jwk)
            .map_err(|e| OidcError::Invalid(format!("JWKS key: {e}")))
            .and_then(|key| {
                if key.family() == alg.family() {
                    Ok(key)
                } else {
                    Err(OidcError::Invalid(format!(
                        "algorithm {alg:?} does not match the key"
                    )))
                }
            }),
    )
}
