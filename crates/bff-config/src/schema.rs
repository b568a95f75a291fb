//! The configuration schema: one struct a table of `bff.toml`. Unknown keys are errors everywhere.
//!
//! The doc comment of every field is its entry in the config reference (docs/config-reference.md), which a
//! test checks against these types.

use crate::{
    discovery::DiscoveryUrl,
    net::{Cidr, CorsOrigin, HostPort, HttpUrl, OtlpEndpoint, RedisUrl},
    secret::{HmacSecret, Secret},
    template::{JsonPath, PathTemplate},
    units::{ByteSize, Duration},
    values::{
        BffName, ForwardHeader, HashKey, HedgeAfter, HttpMethod, JwtAlgorithm, RateLimitKey,
        RetryOn,
    },
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole configuration of one BFF.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity and listeners of this BFF.
    #[serde(default)]
    pub bff: BffConfig,
    /// The embedded gateway: limits, CORS, auth, rate limits.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// Downstream services reached through the embedded mesh, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Declarative aggregation routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Access log, traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Browser sessions: the BFF as an OpenID Connect client, tokens kept server-side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::SessionConfig>,
    /// The folder of the config file. The loader has already resolved the relative file paths of the
    /// config (keys, JWKS, certificates, `file://` discovery) against it: consumers use them as they are.
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
    /// The file this config was loaded from, and the loader that read it (with its environment), so that
    /// a running BFF can load it again: `POST /admin/reload`, SIGHUP and `bff.watch_config` work for every
    /// BFF whose config came from a file, however it was built. `None` for a config made in code or from
    /// an in-memory text.
    #[serde(skip)]
    pub origin: Option<crate::Origin>,
}

/// `[bff]`: identity and listeners.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct BffConfig {
    /// Identity: metrics label, trace service.name, user-agent sent downstream.
    pub name: BffName,
    /// Public listener (north-south), `host:port`. Port 0 picks a free port.
    #[serde(deserialize_with = "socket_addr")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub listen: std::net::SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/admin/*`); never the public port.
    #[serde(deserialize_with = "socket_addr")]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub admin_listen: std::net::SocketAddr,
    /// Bearer token that `POST /admin/*` requires (`authorization: Bearer <token>`); a secret, usually
    /// `"${BFF_ADMIN_TOKEN}"`, at least 16 characters. Required when `admin_listen` is not a loopback address.
    pub admin_token: Option<Secret>,
    /// Host names the admin listener answers besides IP literals and `localhost` (DNS-rebinding guard);
    /// any other `Host` gets 421.
    pub admin_hosts: Vec<String>,
    /// On SIGTERM or Ctrl-C: stop accepting, finish in-flight requests within this time, then exit 0.
    pub shutdown_grace: Duration,
    /// On SIGTERM, `/readyz` is 503 at once but the listener keeps accepting this long, so that load
    /// balancers notice before connections are refused (match the Kubernetes preStop sleep).
    pub drain_delay: Duration,
    /// Reload the config when its file changes (checked every second).
    pub watch_config: bool,
    /// TLS on the public listener (HTTP/1.1 and HTTP/2 by ALPN); without it, cleartext (HTTP/1.1 and h2c).
    pub tls: Option<ListenerTlsConfig>,
}

/// `[bff.tls]`: the public listener's certificate.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTlsConfig {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
}

impl Default for BffConfig {
    fn default() -> Self {
        Self {
            name: BffName::default(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9901)),
            admin_token: None,
            admin_hosts: Vec::new(),
            shutdown_grace: Duration::from_secs(20),
            drain_delay: Duration::from_secs(0),
            watch_config: false,
            tls: None,
        }
    }
}

/// `[telemetry]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// One JSON line per request on stdout.
    pub access_log: bool,
    /// OTLP/HTTP collector that traces are exported to.
    pub otlp_endpoint: Option<OtlpEndpoint>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            access_log: true,
            otlp_endpoint: None,
        }
    }
}

/// `[edge]`: the embedded gateway.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Whole-request deadline; propagated downstream as `x-bff-deadline-ms`. Exceeded: 504.
    pub request_timeout: Duration,
    /// Largest request body accepted; larger: 413.
    pub max_body: ByteSize,
    /// Requests in flight at once; beyond: 503 at once (load shedding), never queued.
    pub max_concurrency: usize,
    /// CIDRs whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Time a client has to send a request's headers; slower connections are closed (slowloris).
    pub header_timeout: Duration,
    /// Most headers in a request; more: 431.
    pub max_headers: usize,
    /// Most bytes of a request's head (request line and headers); more: 431. At least 8KiB.
    pub max_header_bytes: ByteSize,
    /// A response that makes no progress for this long (a client that does not read it) has its
    /// connection closed; also the time an HTTP/2 client has to answer a keep-alive ping.
    pub write_timeout: Duration,
    /// A connection with no request in flight is closed after this long (between once and twice this
    /// time); HTTP/2 connections are pinged at this interval.
    pub idle_timeout: Duration,
    /// Cross-origin resource sharing.
    pub cors: Option<CorsConfig>,
    /// Authentication schemes that routes refer to with `auth = "..."`.
    pub auth: AuthConfig,
    /// Token-bucket rate limit for every route.
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            max_body: ByteSize::mib(1),
            max_concurrency: 1024,
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: ByteSize::kib(32),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            cors: None,
            auth: AuthConfig::default(),
            rate_limit: None,
        }
    }
}

/// `[edge.cors]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins allowed; `"*"` only without credentials.
    pub allow_origins: Vec<CorsOrigin>,
    /// Whether browsers may send credentials (cookies, authorization).
    pub allow_credentials: bool,
}

/// `[edge.auth]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// JWT bearer tokens, for routes with `auth = "jwt"`.
    pub jwt: Option<JwtConfig>,
    /// API keys in the `x-api-key` header, for routes with `auth = "api_key"`.
    pub api_keys: Option<ApiKeysConfig>,
}

/// `[edge.auth.jwt]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Required `iss` claim.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// JWKS file with the verification keys.
    pub jwks_file: Option<String>,
    /// JWKS URL (`http://` or `https://`), refreshed in the background.
    pub jwks_url: Option<HttpUrl>,
    /// CA bundle (PEM) verifying an `https://` `jwks_url`; without it, the system's CA certificates.
    pub jwks_ca: Option<String>,
    /// Allowed algorithms; `none` can never be enabled.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Option<Duration>,
    /// Shared secret for HS256/HS384/HS512 (only then are they accepted).
    /// At least 32 bytes (after `${VAR}` expansion); never shown.
    pub secret: Option<HmacSecret>,
    /// How often `jwks_url` is fetched again.
    pub jwks_refresh: Option<Duration>,
}

/// `[edge.auth.api_keys]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// File with one key a line (or `sha256:HEX`).
    pub keys_file: String,
}

/// `[edge.rate_limit]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests a second per key.
    pub per_second: u32,
    /// Bucket size: requests allowed in a burst.
    pub burst: u32,
    /// What a bucket is keyed on: `client_ip`, `jwt_sub` or `header:NAME`.
    pub key: RateLimitKey,
    /// Shared store across instances (`redis://...`); without it, per instance.
    pub store: Option<RedisUrl>,
}

impl RateLimitConfig {
    /// A limit of `per_second` requests a second per key with bursts of `burst`, keyed by client IP, in
    /// this process; [`key`](Self::key) and [`store`](Self::store) change that. The values are typed: a
    /// bad key or store URL cannot be written (it does not parse), and zero rates are refused, naming the
    /// key, when the app is built.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            ..Self::default()
        }
    }

    /// What a bucket is keyed on, e.g. `RateLimitKey::header(HeaderName::from_static("x-client"))`:
    ///
    /// ```
    /// use bff_config::{RateLimitConfig, RateLimitKey};
    /// let limit = RateLimitConfig::new(10, 20)
    ///     .key(RateLimitKey::header(http::HeaderName::from_static("x-client")));
    /// assert_eq!(limit.key.to_string(), "header:x-client");
    /// ```
    ///
    /// A key is a [`RateLimitKey`], never a string read later: a typo is a compile error (or, written
    /// as text, a parse error naming it), not a silent `client_ip`.
    ///
    /// ```compile_fail
    /// let limit = bff_config::RateLimitConfig::new(10, 20).key("user_id");
    /// ```
    #[must_use]
    pub fn key(mut self, key: RateLimitKey) -> Self {
        self.key = key;
        self
    }

    /// Buckets shared by every instance, in Redis.
    #[must_use]
    pub fn store(mut self, store: RedisUrl) -> Self {
        self.store = Some(store);
        self
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
            key: RateLimitKey::ClientIp,
            store: None,
        }
    }
}

/// Load-balancing algorithm of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    RoundRobin,
    LeastRequest,
    #[default]
    P2cEwma,
    RingHash,
}

/// Protocol spoken to a service's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// `[services.NAME]`: one downstream service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Static endpoints, `host:port`.
    pub endpoints: Vec<HostPort>,
    /// Dynamic discovery (`dns://`, `dns+srv://`, `file://`, `etcd://`), instead of `endpoints`.
    pub discovery: Option<DiscoveryUrl>,
    /// `round_robin`, `least_request`, `p2c_ewma` or `ring_hash`.
    pub load_balancer: LoadBalancer,
    /// Key hashed by `ring_hash`: `header:NAME` or `param:NAME`.
    pub hash_key: Option<HashKey>,
    /// `http1` or `h2c`.
    pub protocol: Protocol,
    /// Per-attempt timeout (the request's deadline caps it).
    pub timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long a kept-alive connection to this service may stay idle in the pool before it is closed.
    /// A margin shorter than the service's own idle timeout, the service does not close one as a
    /// request goes out on it.
    pub pool_idle_timeout: Duration,
    /// Largest response body read from this service; larger: a decode failure.
    pub max_response: ByteSize,
    /// Whether `/readyz` waits for a healthy endpoint of this service.
    pub required: bool,
    /// Calls in flight to this service at once; beyond: an immediate 503 (`service_overloaded`).
    pub max_in_flight: usize,
    /// Retry policy.
    pub retry: Option<RetryConfig>,
    /// Circuit breaker.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Hedging: `"p95"` (any `pNN` from p50) or a duration; a slow idempotent call gets a second attempt to
    /// another endpoint after that long, and the first good answer wins.
    pub hedge_after: Option<HedgeAfter>,
    /// Outlier detection (ejection of failing endpoints).
    pub outlier_detection: Option<OutlierDetectionConfig>,
    /// Active health checks.
    pub health_check: Option<HealthCheckConfig>,
    /// mTLS to this service.
    pub tls: Option<TlsConfig>,
    /// Identical GET calls in flight at the same moment share one downstream call.
    pub coalesce: bool,
    /// Responses kept in memory (GET, 2xx) and served instead of calling the service.
    pub cache: Option<CacheConfig>,
    /// The service's own OpenAPI document (YAML or JSON, relative to the config's folder): `bff check`
    /// verifies each declarative backend of this service against it (method and path, `select` and
    /// `fields` in the 200 response's schema).
    pub openapi: Option<String>,
    /// The token attached to this service's calls: `user` (the session's access token) or `client` (the
    /// BFF's own client-credentials token); absent: none.
    pub token: Option<crate::TokenMode>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            discovery: None,
            load_balancer: LoadBalancer::default(),
            hash_key: None,
            protocol: Protocol::default(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(200),
            pool_idle_timeout: Duration::from_secs(90),
            max_response: ByteSize::mib(8),
            required: true,
            max_in_flight: 10_000,
            retry: None,
            circuit_breaker: None,
            hedge_after: None,
            outlier_detection: None,
            health_check: None,
            tls: None,
            coalesce: false,
            cache: None,
            openapi: None,
            token: None,
        }
    }
}

/// `[services.NAME.cache]` and `[routes.backends.cache]`: an in-memory cache of downstream responses,
/// bounded in entries and in bytes.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a stored response is fresh (unless the service's `Cache-Control` says otherwise).
    pub ttl: Duration,
    /// After `ttl`, a stale response is still served this long while one background call refreshes it.
    pub stale_while_revalidate: Duration,
    /// After `ttl`, a stale response is served this long when the refresh fails.
    pub stale_if_error: Duration,
    /// Most responses kept.
    pub max_entries: u64,
    /// Most bytes kept (bodies, headers and keys).
    pub max_bytes: ByteSize,
    /// Honour the service's `Cache-Control` (`private`, `max-age`, `s-maxage`, `no-cache`) and `Vary`.
    pub respect_cache_control: bool,
    /// One entry for every caller: the key leaves out the principal (`authorization`, `cookie`).
    pub shared: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            stale_while_revalidate: Duration::from_secs(0),
            stale_if_error: Duration::from_secs(0),
            max_entries: 10_000,
            max_bytes: ByteSize::mib(64),
            respect_cache_control: true,
            shared: false,
        }
    }
}

/// `[services.NAME.retry]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Failures retried: `connect_error`, `reset`, `timeout`, or status codes such as `"503"`.
    pub on: Vec<RetryOn>,
    /// First backoff; exponential with jitter.
    pub backoff: Duration,
    /// Cap of the backoff.
    pub max_backoff: Duration,
    /// Retries never exceed this share of requests (plus `min_per_second`).
    pub budget_ratio: f64,
    /// Retries a second always allowed by the budget.
    pub min_per_second: u32,
    /// Methods retried; by default the idempotent ones.
    pub methods: Option<Vec<HttpMethod>>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            on: vec![
                RetryOn::ConnectError,
                RetryOn::Reset,
                RetryOn::Status(502),
                RetryOn::Status(503),
                RetryOn::Status(504),
            ],
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            budget_ratio: 0.2,
            min_per_second: 10,
            methods: None,
        }
    }
}

/// `[services.NAME.circuit_breaker]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Failure rate over `window` that opens the breaker.
    pub failure_rate: f64,
    /// Requests in the window before the rate counts.
    pub min_requests: u32,
    /// Sliding window of the failure rate.
    pub window: Duration,
    /// How long the breaker stays open before half-open probes.
    pub open_for: Duration,
    /// Probes admitted while half-open.
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// `[services.NAME.outlier_detection]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetectionConfig {
    /// Consecutive failures that eject an endpoint.
    pub consecutive_failures: u32,
    /// Ejection time, multiplied by the times ejected.
    pub base_ejection: Duration,
    /// Most endpoints ejected at once, in percent.
    pub max_ejected_percent: u32,
}

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

/// `[services.NAME.health_check]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path probed with GET.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Failed probes that mark an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes that mark it healthy again.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

/// `[services.NAME.tls]`: mTLS.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle (PEM) that verifies the service.
    pub ca: String,
    /// Client certificate (PEM).
    pub cert: Option<String>,
    /// Client private key (PEM).
    pub key: Option<String>,
    /// Name verified in the service's certificate.
    pub server_name: Option<String>,
}

/// Authentication a route requires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    None,
    Jwt,
    ApiKey,
    /// A browser session (`[session]`) and the CSRF header.
    Session,
}

/// `[[routes]]`: a declarative aggregation route.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: HttpMethod,
    /// Path template; `{name}` captures a segment.
    pub path: String,
    /// `none`, `jwt`, `api_key` or `session`.
    #[serde(default)]
    pub auth: AuthKind,
    /// Deadline of this route (caps `edge.request_timeout`).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Client headers passed to this route's backends (none by default); hop-by-hop and framing headers
    /// (`connection`, `content-length`, `host`, `expect`, `te`, `upgrade`, `proxy-*`, ...) are refused.
    #[serde(default)]
    pub forward_headers: Vec<ForwardHeader>,
    /// A rate limit for this route, in addition to `[edge.rate_limit]`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Largest request body of this route (instead of `edge.max_body`).
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// A strong `ETag` of the response body; a matching `If-None-Match` gets `304 Not Modified`.
    #[serde(default)]
    pub etag: bool,
    /// `Cache-Control` of this route's successful responses (e.g. `"private, max-age=10"`).
    #[serde(default)]
    pub cache_control: Option<crate::CacheControl>,
    /// The backends whose results are merged into the response.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

/// A listener address, `IP:PORT` (`"127.0.0.1:8080"`, `"[::1]:8080"`), parsed once at load.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{s:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""
        ))
    })
}

fn default_method() -> HttpMethod {
    HttpMethod::GET
}

fn default_true() -> bool {
    true
}

/// `[[routes.backends]]`: one downstream call of an aggregation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Key of this backend in the merged response.
    pub name: String,
    /// Service called (a key of `[services]`).
    pub service: String,
    /// HTTP method of the call.
    #[serde(default = "default_method")]
    pub method: HttpMethod,
    /// Downstream path; `{param}` from the route, `{backend.json.path}` from an earlier backend.
    pub path: PathTemplate,
    /// JSONPath applied to the response; absent: the whole body.
    #[serde(default)]
    pub select: Option<JsonPath>,
    /// An object built from several JSONPaths, instead of `select`.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, JsonPath>>,
    /// Whether the route fails when this backend fails (else the response is partial).
    #[serde(default = "default_true")]
    pub required: bool,
    /// Backends that must finish before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Identical calls in flight at the same moment share one downstream call (GET only).
    #[serde(default)]
    pub coalesce: bool,
    /// A cache of this backend's responses (GET only), instead of the service's.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// JSON Schema file (relative to the config's folder) of this backend's selected value: the type of
    /// its key in the route's response in the OpenAPI document (`bff openapi`) and the typed client
    /// (`bff client`); absent, any JSON value. Read and checked at load.
    #[serde(default)]
    pub response_schema: Option<crate::ResponseSchema>,
}

impl Config {
    /// Resolves every relative file path of the config (`[bff.tls]`, JWKS file and CA, API keys file,
    /// services' TLS files, `file://` discovery) against `dir`, the config file's folder. The loader does
    /// it once, so that no consumer joins paths again; a config made in code keeps its paths as written
    /// (relative to the working directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        let resolve = |p: &mut String| {
            if !p.is_empty() && std::path::Path::new(p.as_str()).is_relative() {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        };
        if let Some(tls) = &mut self.bff.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        if let Some(jwt) = &mut self.edge.auth.jwt {
            jwt.jwks_file.iter_mut().for_each(resolve);
            jwt.jwks_ca.iter_mut().for_each(resolve);
        }
        if let Some(keys) = &mut self.edge.auth.api_keys {
            resolve(&mut keys.keys_file);
        }
        for svc in self.services.values_mut() {
            if let Some(tls) = &mut svc.tls {
                resolve(&mut tls.ca);
                tls.cert.iter_mut().for_each(resolve);
                tls.key.iter_mut().for_each(resolve);
            }
            if let Some(DiscoveryUrl::File(p)) = &mut svc.discovery {
                resolve(p);
            }
            svc.openapi.iter_mut().for_each(resolve);
        }
        for b in self.routes.iter_mut().flat_map(|r| r.backends.iter_mut()) {
            if let Some(s) = &mut b.response_schema {
                s.resolve(dir);
            }
        }
        if let Some(session) = &mut self.session {
            session.key_file.iter_mut().for_each(resolve);
        }
    }
}
