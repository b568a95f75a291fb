//! Request identity (`x-request-id`), W3C trace context (`traceparent`, `tracestate`: continued from the
//! client or started, a child span for every downstream call), and lock-free metrics in the Prometheus text
//! format.
#![forbid(unsafe_code)]

mod chain;
pub mod metrics;
pub mod otlp;
mod request_id;
mod trace;

pub use self::{
    chain::ErrorChain,
    metrics::{Metrics, RouteMetrics, ServiceMetrics, SessionMetrics},
    otlp::{Span, SpanKind, Tracer, TracerError},
    request_id::{REQUEST_ID, request_id},
    trace::{TRACEPARENT, TRACESTATE, TraceContext},
};
