//! JWT bearer tokens: keys from a JWKS file or URL (refreshed in the background, fetched again when an
//! unknown `kid` appears, at most every 10 s), issuer, audiences, `exp`/`nbf` with leeway. The algorithm
//! comes from the allow-list and the key, never from the token alone: `alg: none` does not parse, an
//! algorithm off the list is refused, an HMAC token is only checked against the configured secret (never
//! against a public key), and the key's family must match the algorithm.

use super::Claims;
use bff_config::{JwtAlgorithm, JwtConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
#[cfg(feature = "tls")]
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, ResponseFuture, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde_json::{Map, Value};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};
use tokio::time::Instant;

const REFETCH_EVERY: Duration = Duration::from_secs(10);

/// The client of `jwks_url`: plain HTTP, or HTTPS verified by `jwks_ca` or else the system's CA
/// certificates (as an identity provider's JWKS endpoint usually is).
enum JwksClient {
    Http(Client<HttpConnector, Empty<Bytes>>),
    #[cfg(feature = "tls")]
    Https(Client<HttpsConnector<HttpConnector>, Empty<Bytes>>),
}

/// The URL as errors and logs show it: credentials in its user-info or query hidden.
fn shown(url: &http::Uri) -> String {
    bff_config::redact_url(&url.to_string()).into_owned()
}

impl JwksClient {
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    fn new(url: &http::Uri, ca: Option<&Path>) -> Result<Self, JwtError> {
        let builder = Client::builder(TokioExecutor::new());
        match url.scheme_str() {
            Some("http") => Ok(Self::Http(builder.build_http())),
            #[cfg(not(feature = "tls"))]
            Some("https") => Err(bff_config::Feature::Tls
                .missing(JwtConfig::HTTPS_NEEDS)
                .into()),
            #[cfg(feature = "tls")]
            Some("https") => {
                let roots = ca_roots(ca)?;
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|source| JwtError::Tls {
                    url: shown(url),
                    source,
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let https = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(Self::Https(builder.build(https)))
            }
            _ => Err(JwtError::Scheme { url: shown(url) }),
        }
    }

    fn get(&self, url: http::Uri) -> ResponseFuture {
        match self {
            Self::Http(c) => c.get(url),
            #[cfg(feature = "tls")]
            Self::Https(c) => c.get(url),
        }
    }
}

/// The CA certificates that verify an `https://` `jwks_url`: the `jwks_ca` bundle, or the system's.
#[cfg(feature = "tls")]
fn ca_roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, JwtError> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| JwtError::Ca {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })?;
            for cert in certs {
                roots.add(cert).map_err(|e| JwtError::Ca {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })?;
            }
        }
        None => {
            // Unreadable or odd system certificates are skipped, as browsers and curl do.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(match ca {
            Some(path) => JwtError::EmptyCa(path.to_path_buf()),
            None => JwtError::NoSystemCa,
        });
    }
    Ok(roots)
}

#[derive(Clone)]
struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    /// The only key, for tokens without `kid` when the set has exactly one.
    single: Option<Arc<DecodingKey>>,
}

pub struct JwtAuth {
    issuer: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    secret: Option<DecodingKey>,
    keys: RwLock<Keys>,
    url: Option<(http::Uri, JwksClient)>,
    refresh: Duration,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. Only logged: the client is told no more than `unauthenticated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No key with the token's `kid`.
    UnknownKid(String),
    Invalid(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKid(k) => write!(f, "unknown kid {k:?}"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

/// The config's algorithm (parsed at load) as jsonwebtoken names it.
fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
    }
}

impl JwtAuth {
    /// Builds the verifier; a `jwks_file` is read now, a `jwks_url` on [`JwtAuth::refresh`]. (The loader
    /// resolved relative paths against the config file's folder; a config made in code has them from the
    /// working directory.)
    pub fn new(cfg: &JwtConfig) -> Result<Self, JwtError> {
        let mut algorithms: Vec<Algorithm> = cfg.algorithms.iter().map(|a| algorithm(*a)).collect();
        if algorithms.is_empty() {
            algorithms = vec![Algorithm::RS256, Algorithm::ES256];
        }
        let keys = match &cfg.jwks_file {
            Some(f) => {
                let path = Path::new(f);
                let text = std::fs::read_to_string(path).map_err(|e| JwtError::File {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })?;
                parse_jwks(&text).map_err(|e| JwtError::File {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })?
            }
            None => Keys {
                by_kid: HashMap::new(),
                single: None,
            },
        };
        let url = match &cfg.jwks_url {
            Some(u) => {
                let uri = u.uri().clone();
                let ca = cfg.jwks_ca.as_deref().map(Path::new);
                let client = JwksClient::new(&uri, ca)?;
                Some((uri, client))
            }
            None => None,
        };
        Ok(Self {
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            algorithms,
            leeway: cfg.leeway.map_or(0, |l| l.get().as_secs()),
            secret: cfg
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose())),
            keys: RwLock::new(keys),
            url,
            refresh: cfg
                .jwks_refresh
                .map_or(Duration::from_secs(300), |d| d.get()),
            last_fetch: Mutex::new(None),
        })
    }

    /// Whether keys come from a URL (and need [`JwtAuth::run_refresh`]).
    pub fn has_url(&self) -> bool {
        self.url.is_some()
    }

    /// Fetches the JWKS URL now; keeps the old keys when it fails.
    pub async fn refresh(&self) -> Result<(), JwtError> {
        let Some((url, client)) = &self.url else {
            return Ok(());
        };
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        let fetch = async {
            let res = client.get(url.clone()).await.map_err(FetchError::Request)?;
            if !res.status().is_success() {
                return Err(FetchError::Status(res.status()));
            }
            let body = Limited::new(res.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(FetchError::Body)?;
            Ok(parse_jwks(
                std::str::from_utf8(&body.to_bytes()).map_err(FetchError::Utf8)?,
            )?)
        };
        let keys = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| FetchError::Timeout)
            .and_then(|r| r)
            .map_err(|source| JwtError::Fetch {
                url: shown(url),
                source,
            })?;
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        Ok(())
    }

    /// Refreshes the JWKS URL every `jwks_refresh`, forever (spawn it).
    pub async fn run_refresh(self: Arc<Self>) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::error!(error = %bff_telemetry::ErrorChain(&e), "cannot refresh the JWKS; keeping the keys we have");
            }
            tokio::time::sleep(self.refresh).await;
        }
    }

    fn key_for(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        let keys = self.keys.read().ok()?;
        match kid {
            Some(k) => keys.by_kid.get(k).cloned(),
            None => keys.single.clone(),
        }
    }

    /// Verifies a compact JWT and returns its claims; an unknown `kid` makes it fetch the JWKS URL again
    /// (at most every 10 s) before giving up.
    pub async fn verify(&self, token: &str) -> Result<Claims, Refused> {
        match self.verify_known(token) {
            Err(Refused::UnknownKid(kid)) if self.url.is_some() => {
                let due = self
                    .last_fetch
                    .lock()
                    .map(|l| l.is_none_or(|t| t.elapsed() >= REFETCH_EVERY.min(self.refresh)))
                    .unwrap_or(false);
                if !due {
                    return Err(Refused::UnknownKid(kid));
                }
                // Boxed: the fetch is rare, and inline it would make every request's future larger.
                if let Err(e) = Box::pin(self.refresh()).await {
                    tracing::warn!(error = %bff_telemetry::ErrorChain(&e), "JWKS fetch for an unknown kid failed");
                }
                self.verify_known(token)
            }
            other => other,
        }
    }

    /// Verifies with the keys at hand, without any network: header, algorithm, key, signature, claims.
    pub fn verify_known(&self, token: &str) -> Result<Claims, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused::Invalid(format!("header: {e}")))?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(Refused::Invalid(format!(
                "algorithm {alg:?} is not allowed"
            )));
        }
        let key: Arc<DecodingKey> =
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                // HMAC only with the configured secret: a public key is never a shared secret.
                let secret = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| Refused::Invalid("no secret for HMAC".into()))?;
                Arc::new(secret.clone())
            } else {
                self.key_for(header.kid.as_deref())
                    .ok_or_else(|| Refused::UnknownKid(header.kid.clone().unwrap_or_default()))?
            };
        if key.family() != alg.family() {
            return Err(Refused::Invalid(format!(
                "algorithm {alg:?} does not match the key"
            )));
        }
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| Refused::Invalid(e.to_string()))?;
        Ok(Claims(data.claims))
    }
}

fn parse_jwks(text: &str) -> Result<Keys, JwksError> {
    let set: JwkSet = serde_json::from_str(text).map_err(JwksError::NotJwks)?;
    let mut by_kid = HashMap::new();
    let mut all = Vec::new();
    for jwk in &set.keys {
        // Symmetric keys in a JWKS are ignored: HMAC is only ever checked against the configured secret.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let key = Arc::new(key);
        if let Some(kid) = &jwk.common.key_id {
            by_kid.insert(kid.clone(), key.clone());
        }
        all.push(key);
    }
    if all.is_empty() {
        return Err(JwksError::NoKey);
    }
    let single = (all.len() == 1).then(|| all[0].clone());
    Ok(Keys { by_kid, single })
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// JWT authentication that cannot be set up, or a JWKS that could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// `jwks_file` cannot be read, or holds no usable key.
    #[error("jwks_file {}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: Cause,
    },
    #[error("jwks_url {url}: not an http:// or https:// URL")]
    Scheme { url: String },
    /// An `https://` `jwks_url` in a binary without the `tls` feature.
    #[error(transparent)]
    Feature(#[from] bff_config::FeatureMissing),
    /// `jwks_ca` cannot be read.
    #[error("jwks_ca {}", path.display())]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: Cause,
    },
    #[error("jwks_ca {}: no certificate in it", .0.display())]
    EmptyCa(std::path::PathBuf),
    #[error("no CA certificate on this system to verify it: set jwks_ca")]
    NoSystemCa,
    #[cfg(feature = "tls")]
    #[error("jwks_url {url}")]
    Tls {
        url: String,
        #[source]
        source: rustls::Error,
    },
    /// Fetching `jwks_url` failed; the keys in use are kept.
    #[error("jwks_url {url}")]
    Fetch {
        url: String,
        #[source]
        source: FetchError,
    },
}

/// Why fetching a JWKS failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("status {0}")]
    Status(http::StatusCode),
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("reading the body")]
    Body(#[source] Cause),
    #[error("not UTF-8")]
    Utf8(#[source] std::str::Utf8Error),
    #[error(transparent)]
    Keys(#[from] JwksError),
}

/// A JWKS document that gives no key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    #[error("not a JWKS")]
    NotJwks(#[source] serde_json::Error),
    #[error("no usable key")]
    NoKey,
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    fn with_url(url: &str, ca: Option<&str>) -> Result<JwtAuth, Box<dyn std::error::Error>> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tls");
        let cfg = JwtConfig {
            jwks_url: Some(url.parse()?),
            jwks_ca: ca.map(|c| fixtures.join(c).to_string_lossy().into_owned()),
            ..Default::default()
        };
        Ok(JwtAuth::new(&cfg)?)
    }

    /// The whole message of a refused setup, causes included.
    fn refused(url: &str, ca: Option<&str>) -> String {
        let e = with_url(url, ca).expect_err("refused");
        bff_telemetry::ErrorChain(&*e).to_string()
    }

    #[test]
    fn jwks_url_schemes_and_ca_errors_are_named() {
        assert!(with_url("http://idp.internal/jwks.json", None).is_ok());
        assert!(with_url("https://idp.internal/jwks.json", Some("ca.pem")).is_ok());
        let ftp = refused("ftp://idp.internal/jwks.json", None);
        assert!(ftp.contains("not an http:// or https:// URL"), "{ftp}");
        let missing = refused("https://idp.internal/jwks.json", Some("nope.pem"));
        assert!(
            missing.contains("jwks_ca") && missing.contains("nope.pem"),
            "{missing}"
        );
        let empty = refused("https://idp.internal/jwks.json", Some("gen.sh"));
        assert!(empty.contains("no certificate in it"), "{empty}");
    }
}
