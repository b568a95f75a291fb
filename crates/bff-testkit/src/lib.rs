//! Test tools for BFFs: [`Stub`], a programmable downstream on port 0 (status, latency, body, malformed
//! JSON, connection reset, hang; records every request), [`Rendezvous`] to prove concurrency without
//! timing, [`TestBff`] to start a BFF from an inline config, and the [`demo`] services.
#![forbid(unsafe_code)]

pub mod demo;
mod harness;
pub mod k8s;
mod otlp;
mod stub;

pub use self::{
    harness::TestBff,
    otlp::{DecodedSpan, OtlpReceiver},
    stub::{Recorded, Rendezvous, RouteBuilder, Stub},
};
