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
//! #[tokio::main]
//! async fn main() -> Result<(), bff::StartError> {
//!     bff::init_tracing();
//!     bff::App::from_args()?.route("/api/home/{id}", get(home)).serve().await
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
mod server;

pub use self::{
    app::{App, StartError, config_path_from_args},
    partial::Partial,
    server::{ReloadError, ReloadHandle, Server, ShutdownHandle},
};
pub use axum;
pub use bff_aggregate as aggregate;
pub use bff_config as config;
pub use bff_config::AuthKind;
pub use bff_edge::{BffError, Claims, ClientIp, Policy, Result};
pub use bff_mesh as mesh;
pub use bff_mesh::{CallContext, DownstreamPath, ErrorKind, Mesh, MeshError, path};
pub use bff_telemetry as telemetry;

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
