//! Test tools for BFFs: [`Stub`], a programmable downstream on port 0 (status, latency, body, malformed
//! JSON, connection reset, hang; records every request), [`Rendezvous`] to prove concurrency without
//! timing, [`TestBff`] to start a BFF from an inline config, [`Stubs`] to start a project's own config
//! with every service on a stub, the [`k8s`] manifests' rendering and checks, and the [`demo`] services.
#![forbid(unsafe_code)]

pub mod demo;
mod harness;
pub mod k8s;
mod otlp;
mod stub;
mod stubs;

pub use self::{
    harness::TestBff,
    otlp::{DecodedSpan, OtlpReceiver},
    stub::{Recorded, Rendezvous, RouteBuilder, Stub},
    stubs::Stubs,
};
