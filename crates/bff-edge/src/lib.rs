//! The embedded gateway. The [`Edge`] layer every public request passes before routing (request id, load
//! shedding, path normalisation, CORS, client address, trace context, the request's deadline, JSON
//! errors); the [`PolicyLayer`] of each route after routing (rate limits, JWT or API-key authentication,
//! body limit, the route's deadline); and [`BffError`], the one error type whose responses are the JSON
//! errors of the contract.
#![forbid(unsafe_code)]

pub mod auth;
mod client_ip;
mod conditional;
mod cors;
mod error;
mod layer;
pub mod path;
mod policy;
pub mod rate_limit;

/// The access log's timestamp, for its benchmark against the `time` crate (benches/kept_crates.rs) only.
#[doc(hidden)]
pub use self::layer::rfc3339 as __rfc3339;
#[cfg(feature = "redis")]
pub use self::rate_limit::RedisStore;
/// The future of the edge's and the routes' services: boxed once each, answering with a response.
type BoxFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>
            + Send,
    >,
>;

/// The service that `poll_ready` drove to readiness, for this call; a clone of it stays for the next
/// (tower's rule for services that are cloned per call).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

pub use self::{
    auth::{Claims, SessionFuture, SessionGate},
    client_ip::{ClientIp, TrustedProxies},
    conditional::{Conditional, strong_etag},
    cors::{Cors, CorsDecision},
    error::{BffError, Result},
    layer::{Edge, EdgeLayer, EdgePolicy},
    policy::{Gate, PartialBackends, Policy, PolicyLayer, PolicyService, RoutePolicy},
    rate_limit::{LocalStore, RateLimitError, RateLimitStore, RateLimitStores, RateLimiter},
};
