//! **bff**: Backends-for-Frontends with the API gateway and the service-mesh sidecar compiled into the same
//! process. Write plain axum handlers (or declare aggregations in `bff.toml`); every request passes the
//! embedded gateway, every downstream call the embedded mesh.
//!
//! ```no_run
//! use bff::prelude::*;
//!
//! async fn home(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
//!     let users = mesh.service("users");
//!     let orders = mesh.service("orders");
//!     let (user, orders) = tokio::join!(
//!         // `path!` percent-encodes each value as one segment: an id of `1?admin=true` stays an id.
//!         users.get(path!("/users/{}", id)).send_json::<Value>(),
//!         orders.get("/orders").query(&[("userId", &id)]).send_json::<Value>(),
//!     );
//!     let mut partial = Partial::new(); // optional parts: `null`, `_errors`, `x-bff-partial: true`
//!     let orders = partial.optional("orders", orders);
//!     Ok(partial.json(json!({ "user": user?, "orders": orders })))
//! }
//!
//! fn main() -> Result<(), bff::StartError> {
//!     bff::init_tracing();
//!     // On one CPU the current-thread runtime, else one worker a CPU (or `#[tokio::main]`, as you like).
//!     bff::runtime().block_on(async {
//!         bff::App::from_args()?.route("/api/home/{id}", get(home)).serve().await
//!     })
//! }
//! ```
#![forbid(unsafe_code)]

mod admin;
mod app;
mod conn;
mod drain;
#[doc(hidden)]
pub mod fuzzing;
mod partial;
mod runtime;
mod server;

// The public API, as a table of contents: what a BFF is built from, then the parts by concern. Each item
// is listed by name (no crate is re-exported whole), so that what the framework's crates share among
// themselves stays theirs. docs/public-api.txt lists the surface; scripts/public-api --check holds the
// code to it.

/// Building and running a BFF.
pub use self::{
    app::{App, StartError, config_path_from_args},
    runtime::runtime,
    server::{ReloadError, ReloadHandle, Server, ShutdownHandle},
};

/// What handlers use: the mesh (downstream calls), errors as the contract's JSON, partial responses,
/// the request's identity.
pub use self::partial::{Partial, PartialError};
pub use bff_config::AuthKind;
pub use bff_edge::{BffError, Claims, ClientIp, Policy, Result};
pub use bff_mesh::{Cache, CallContext, DownstreamPath, ErrorKind, Mesh, MeshError, path};
/// The browser session of a request (`auth = "session"`): claims, `sub()`, `access_token()`.
#[cfg(feature = "session")]
pub use bff_session::Session;

/// Browser sessions (the OAuth 2.0 BFF pattern): the endpoints, the store, the provider.
#[cfg(feature = "session")]
pub mod session {
    pub use bff_session::{OidcError, Session, SessionError, Sessions};
}

/// axum, which handlers and routers are written with (the version bff serves them with).
pub use axum;

/// The typed configuration: the `bff.toml` schema, loading with its overrides, validation.
pub mod config {
    pub use bff_config::{
        ApiKeysConfig, AuthConfig, AuthKind, BackendConfig, BffConfig, BffName, ByteSize,
        CacheConfig, CacheControl, Cidr, CircuitBreakerConfig, ClientAuth, Config, ConfigError,
        ConfigErrors, CookieName, CorsConfig, CorsOrigin, CsrfHeader, DiscoveryUrl, Duration,
        EdgeConfig, Feature, FeatureMissing, Format, ForwardHeader, HashKey, HealthCheckConfig,
        HedgeAfter, HmacSecret, HostPort, HttpMethod, HttpUrl, InvalidValue, JsonPath,
        JwtAlgorithm, JwtConfig, ListenerTlsConfig, LoadBalancer, Loader, MIN_HMAC_SECRET, Origin,
        OtlpEndpoint, OutlierDetectionConfig, PathTemplate, Placeholder, Protocol, REDACTED,
        RateLimitConfig, RateLimitKey, RedisUrl, ResponseSchema, RetryConfig, RetryOn, RouteConfig,
        SECRET_SHOWN, SameSite, Secret, Segment, ServiceConfig, SessionConfig, SessionKey,
        SessionStore, Source, TelemetryConfig, TlsConfig, TokenMode, Validated, env_with_file,
        is_local_path, redact_url,
    };
}

/// The embedded sidecar: services, calls and their failures, discovery of your own.
pub mod mesh {
    #[cfg(feature = "tls")]
    pub use bff_mesh::TlsError;
    pub use bff_mesh::{
        BreakerState, Cache, CallContext, CallStats, DEADLINE_HEADER, DownstreamPath,
        EndpointSnapshot, ErrorKind, ErrorSource, Exchange, HealthChecks, IntoPath, Mesh,
        MeshBuildError, MeshError, MeshRejection, PathError, RequestBuilder, Resolve, Response,
        Service, ServiceClient, ServiceError, ServiceSnapshot, Tap, TokenError, TokenFuture,
        TokenSource, Update, encode_value, path,
    };
}

/// The embedded gateway's parts, for routes and layers of your own.
pub mod edge {
    #[cfg(feature = "jwt")]
    pub use bff_edge::auth::{FetchError, JwksError, JwtAuth, JwtError, Refused};
    pub use bff_edge::{
        BffError, Claims, ClientIp, Cors, CorsDecision, Edge, EdgeLayer, EdgePolicy, Gate,
        PartialBackends, Policy, PolicyLayer, PolicyService, RateLimitError, RateLimitStore,
        RateLimitStores, RateLimiter, Result, RoutePolicy, SessionFuture, SessionGate,
        TrustedProxies,
        auth::{ApiKeyError, ApiKeys},
    };
}

/// Declarative aggregation (`[[routes]]` with backends), compiled.
pub mod aggregate {
    pub use bff_aggregate::{Plan, PlanError, PlanProblem, Selector, SelectorError, Step};
}

/// Request ids, trace context, metrics and span export.
pub mod telemetry {
    pub use bff_telemetry::{
        ErrorChain, Metrics, REQUEST_ID, RouteMetrics, ServiceMetrics, SessionMetrics, Span,
        SpanKind, TRACEPARENT, TRACESTATE, TraceContext, Tracer, TracerError, request_id,
    };
}

/// What handlers usually need.
pub mod prelude {
    pub use crate::{
        App, AuthKind, BffError, Claims, Mesh, MeshError, Partial, Policy, Result, path,
    };
    pub use axum::{
        Json, Router,
        extract::{Path, Query, State},
        response::{IntoResponse, Response},
        routing::{delete, get, patch, post, put},
    };
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json, value::RawValue};
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
