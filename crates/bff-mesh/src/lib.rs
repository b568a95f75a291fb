//! The embedded sidecar: a [`Mesh`] of downstream [`Service`]s built from `[services.*]`, each with its
//! endpoints, balancer and pooled connections, called by handlers and by the aggregation engine. Every call
//! carries the request's [`CallContext`]: deadline, request id and trace.
#![forbid(unsafe_code)]

mod balancer;
mod breaker;
mod cache;
mod coalesce;
mod context;
mod discover;
mod endpoint;
mod error;
mod extract;
mod headers;
mod health;
mod hedge;
mod mesh;
mod outcome;
mod path;
mod request;
mod resolve;
mod retry;
mod service;
mod shield;
mod tap;
#[cfg(feature = "tls")]
mod tls;

/// A service's config as the loader makes it from TOML (tests): `[services.s]` with one endpoint, then
/// `extra` (keys of the service table, or its sub-tables as `[services.s.retry]`).
#[cfg(test)]
pub(crate) fn service_config(extra: &str) -> bff_config::ServiceConfig {
    let text = format!("[services.s]\nendpoints = [\"127.0.0.1:1\"]\n{extra}\n");
    let config = bff_config::Loader::new()
        .with_env(Default::default())
        .load_str(&text, bff_config::Format::Toml)
        .unwrap_or_else(|e| panic!("{e}"));
    config.services["s"].clone()
}

#[cfg(feature = "tls")]
pub use self::tls::TlsError;

#[doc(hidden)]
pub use self::path::{__check_template, check_properties as check_path_properties};
/// Whether a client's call failed on a connection that closed before a whole response head: for the
/// other bff crates' own clients (the session's provider client), which resend on the same rule.
#[doc(hidden)]
pub use self::request::closed_before_answer as __closed_before_answer;
/// The retry budget, for its benchmark against tower's `TpsBudget` (benches/retry_budget.rs) only.
#[doc(hidden)]
pub use self::retry::RetryBudget as __RetryBudget;
pub use self::{
    breaker::BreakerState,
    cache::Cache,
    context::{CallContext, CallStats, DEADLINE_HEADER, TokenError, TokenFuture, TokenSource},
    error::{ErrorKind, ErrorSource, MeshBuildError, MeshError, ServiceError},
    extract::MeshRejection,
    headers::{
        check_forwarding_properties, forward_client_headers, is_hop_by_hop, is_never_forwarded,
        may_forward, strip_hop_by_hop,
    },
    mesh::{HealthChecks, Mesh},
    path::{DownstreamPath, IntoPath, PathError, VALUE as PATH_VALUE, encode_value},
    request::{RequestBuilder, Response},
    resolve::{Resolve, Update},
    service::{EndpointSnapshot, Service, ServiceClient, ServiceSnapshot},
    tap::{Exchange, Tap},
};
