//! Test tools for BFFs: [`Stub`], a programmable downstream on port 0 (status, latency, body, malformed
//! JSON, connection reset, hang; records every request), [`Rendezvous`] to prove concurrency without
//! timing, [`TestBff`] to start a BFF from an inline config, [`Stubs`] to start a project's own config
//! with every service on a stub, the [`k8s`] manifests' rendering and checks, the [`demo`] services, the
//! [`fixtures`] that `bff record` stores and [`Replay`] answers from, and a real OpenID Provider with a
//! browser-less login ([`oidc`]).
#![forbid(unsafe_code)]

pub mod demo;
pub mod fixtures;
mod harness;
pub mod k8s;
mod logs;
pub mod oidc;
mod otlp;
mod schema;
mod stub;
mod stubs;

pub use self::{
    fixtures::{Recorder, Replay},
    harness::TestBff,
    logs::CapturedLog,
    otlp::{DecodedSpan, OtlpReceiver},
    schema::{Infer, example as schema_example},
    stub::{Recorded, Rendezvous, RouteBuilder, Stub},
    stubs::Stubs,
};
