//! Request identity (`x-request-id`) and W3C trace context (`traceparent`, `tracestate`): continued from the
//! client or started, and a child span for every downstream call.
#![forbid(unsafe_code)]

mod request_id;
mod trace;

pub use self::{
    request_id::{REQUEST_ID, request_id},
    trace::{TRACEPARENT, TRACESTATE, TraceContext},
};
