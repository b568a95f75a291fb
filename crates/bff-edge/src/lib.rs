//! The embedded gateway. The [`Edge`] layer every public request passes before routing (request id, load
//! shedding, path normalisation, CORS, client address, trace context, the request's deadline, JSON
//! errors); the [`PolicyLayer`] of each route after routing (rate limits, JWT or API-key authentication,
//! body limit, the route's deadline); and [`BffError`], the one error type whose responses are the JSON
//! errors of the contract.
#![forbid(unsafe_code)]

pub mod auth;
mod client_ip;
mod cors;
mod error;
mod layer;
pub mod path;
mod policy;
pub mod rate_limit;

#[cfg(feature = "redis")]
pub use self::rate_limit::RedisStore;
pub use self::{
    auth::Claims,
    client_ip::{ClientIp, TrustedProxies},
    cors::{Cors, CorsDecision},
    error::{BffError, Result},
    layer::{Edge, EdgeLayer, EdgePolicy},
    policy::{Gate, PartialBackends, Policy, PolicyLayer, PolicyService, RoutePolicy},
    rate_limit::{LocalStore, RateLimitError, RateLimitStore, RateLimitStores, RateLimiter},
};
