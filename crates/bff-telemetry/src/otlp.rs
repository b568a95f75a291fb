//! Traces exported by OTLP/HTTP with protobuf bodies: spans are queued without blocking (a full queue drops
//! them and counts), batched by a background task, and posted to `<endpoint>/v1/traces`. A collector that
//! is down costs dropped spans, never a slower request.
//!
//! The protobuf messages are the few of `opentelemetry/proto/trace/v1` a span needs, encoded by hand: a
//! varint, a tag and a length are all it takes, and no code generator or protobuf runtime joins the build.
//! opentelemetry-proto's prost types would bring 34 crates, 12 of them new to Cargo.lock (opentelemetry_sdk,
//! prost and its derive, a second rand), 28 s of CPU to build; the encoding runs in the exporter's batch
//! task, off the request's path (docs/performance.md, "Hand-written or a crate: the decisions").

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::mpsc;

/// `SpanKind` of OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A finished span.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: bool,
}

/// Where spans go. Cheap to clone; `record` never blocks.
#[derive(Clone, Debug)]
pub struct Tracer {
    tx: mpsc::Sender<Span>,
    pub dropped: Arc<AtomicU64>,
    pub exported: Arc<AtomicU64>,
}

const QUEUE: usize = 8192;
const BATCH: usize = 512;

/// An `otlp_endpoint` the exporter cannot send to. The endpoint is not in the message: it may hold
/// credentials (the caller names it, redacted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TracerError {
    #[error("only http:// is supported")]
    Scheme,
}

impl Tracer {
    /// Starts the exporter task (call within a tokio runtime). `endpoint` is the collector's base URL,
    /// e.g. `http://127.0.0.1:4318`.
    /// `dropped` and `exported` count spans (the metrics registry's counters).
    ///
    /// `traces` is the URL spans are posted to (`bff_config::OtlpEndpoint::traces`, parsed at load).
    pub fn start(
        traces: &Uri,
        service_name: &str,
        dropped: Arc<AtomicU64>,
        exported: Arc<AtomicU64>,
    ) -> Result<Self, TracerError> {
        let uri = traces.clone();
        // The endpoint is not repeated in errors: it may hold credentials (the caller names it,
        // redacted).
        if uri.scheme_str() != Some("http") {
            return Err(TracerError::Scheme);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let tracer = Self {
            tx,
            dropped,
            exported,
        };
        tokio::spawn(export(
            rx,
            uri,
            service_name.to_string(),
            tracer.dropped.clone(),
            tracer.exported.clone(),
        ));
        Ok(tracer)
    }

    /// Queues a span; a full queue drops it (and counts).
    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn export(
    mut rx: mpsc::Receiver<Span>,
    uri: Uri,
    service: String,
    dropped: Arc<AtomicU64>,
    exported: Arc<AtomicU64>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for a first span, then gather what comes within a second (or a full batch).
        match rx.recv().await {
            Some(s) => batch.push(s),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = encode_request(&service, &batch);
        batch.clear();
        let req = Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else { continue };
        let sent = tokio::time::timeout(Duration::from_secs(5), client.request(req)).await;
        match sent {
            Ok(Ok(res)) if res.status().is_success() => {
                exported.fetch_add(n, Ordering::Relaxed);
            }
            _ => {
                dropped.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(spans = n, "trace export failed; spans dropped");
            }
        }
    }
}

// --- protobuf encoding ---

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes_field(out, field, &inner);
}

fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    message(out, field, |kv| {
        bytes_field(kv, 1, key.as_bytes());
        message(kv, 2, |any| match value {
            Value::Str(s) => bytes_field(any, 1, s.as_bytes()),
            Value::Bool(b) => {
                tag(any, 2, 0);
                varint(any, u64::from(*b));
            }
            Value::Int(i) => {
                tag(any, 3, 0);
                varint(any, *i as u64);
            }
        });
    });
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An `ExportTraceServiceRequest` with one resource (`service.name`) and one scope.
pub fn encode_request(service: &str, spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 * spans.len() + 64);
    message(&mut out, 1, |rs| {
        message(rs, 1, |res| {
            key_value(res, 1, "service.name", &Value::Str(service.to_string()))
        });
        message(rs, 2, |ss| {
            message(ss, 1, |scope| {
                bytes_field(scope, 1, b"bff");
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for s in spans {
                message(ss, 2, |sp| {
                    bytes_field(sp, 1, &s.trace_id);
                    bytes_field(sp, 2, &s.span_id);
                    if let Some(p) = s.parent_span_id {
                        bytes_field(sp, 4, &p);
                    }
                    bytes_field(sp, 5, s.name.as_bytes());
                    tag(sp, 6, 0);
                    varint(sp, s.kind as u64);
                    tag(sp, 7, 1);
                    sp.extend_from_slice(&nanos(s.start).to_le_bytes());
                    tag(sp, 8, 1);
                    sp.extend_from_slice(&nanos(s.end).to_le_bytes());
                    for (k, v) in &s.attributes {
                        key_value(sp, 9, k, v);
                    }
                    message(sp, 15, |st| {
                        tag(st, 3, 0);
                        varint(st, if s.error { 2 } else { 1 });
                    });
                });
            }
        });
    });
    out
}

#[cfg(any(test, feature = "testkit"))]
mod decode;
#[cfg(any(test, feature = "testkit"))]
pub use self::decode::{DecodeError, DecodedSpan, decode_request};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_trip() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let span = Span {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            name: "GET /api/home/{id}".into(),
            kind: SpanKind::Server,
            start,
            end: start + Duration::from_millis(5),
            attributes: vec![
                ("http.response.status_code", Value::Int(200)),
                ("bff.partial", Value::Bool(false)),
            ],
            error: false,
        };
        let decoded = decode_request(&encode_request("web-bff", &[span])).unwrap();
        assert_eq!(decoded.len(), 1);
        let d = &decoded[0];
        assert_eq!(d.trace_id, vec![7; 16]);
        assert_eq!(d.parent_span_id, vec![2; 8]);
        assert_eq!(d.name, "GET /api/home/{id}");
        assert_eq!(d.kind, 2);
        assert_eq!(d.end_nanos - d.start_nanos, 5_000_000);
        assert_eq!(d.service, "web-bff");
        assert!(
            d.attributes
                .contains(&("http.response.status_code".into(), "200".into()))
        );
        assert!(
            d.attributes
                .contains(&("bff.partial".into(), "false".into()))
        );
        assert_eq!(d.status_code, 1);
    }
}
