//! Test tools for BFFs: [`Stub`], a programmable downstream on port 0 (status, latency, body, malformed
//! JSON, connection reset, hang; records every request), [`Rendezvous`] to prove concurrency without
//! timing, [`TestBff`] to start a BFF from an inline config, [`Stubs`] to start a project's own config
//! with every service on a stub, the [`k8s`] manifests' rendering and checks, the [`demo`] services, the
//! [`fixtures`] that `bff record` stores and [`Replay`] answers from, and a real OpenID Provider with a
//! browser-less login ([`oidc`]), and child processes whose every wait is bounded ([`process`]).
#![forbid(unsafe_code)]

pub mod demo;
pub mod fixtures;
mod harness;
pub mod k8s;
mod logs;
pub mod oidc;
mod otlp;
pub mod process;
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

/// How long a request of the testkit's own HTTP clients ([`TestBff::client`], [`oidc::Browser`], the
/// [`oidc::Provider`]'s test endpoints) may take in all: far above any answer a test waits for, so that
/// a peer that never answers fails its test with the call named instead of hanging the test run.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// An HTTP client for tests: no proxy, no redirect followed, every request within [`REQUEST_DEADLINE`],
/// and no connection reused after 4 s idle (the OP of [`oidc`] runs on Node.js, which closes idle
/// connections after 5 s: a request sent on one as it closes would fail a correct test).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_DEADLINE)
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .build()
        .expect("an HTTP client")
}

/// Whether `check` turns true within [`REQUEST_DEADLINE`], asked every 50 ms: for a change that lands
/// asynchronously (a reload, a rotated key, spans exported) on a machine that may be loaded, where a
/// bound of a few seconds would fail a correct build. The test asserts the result with its own message.
/// On real time only: on tokio's paused time the clock jumps whenever the runtime waits for I/O.
#[must_use = "assert the result: a condition that never held is a failure"]
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
