//! Traces exported by OTLP/HTTP with protobuf bodies: spans are queued without blocking (a full queue drops
//! them and counts), batched by a background task, and posted to `<endpoint>/v1/traces`. A collector that
//! is down costs dropped spans, never a slower request.
//!
//! The protobuf messages are the few of `opentelemetry/proto/trace/v1` a span needs, encoded by hand: a
//! varint, a tag and a length are all it takes, and no code generator or protobuf runtime joins the build.

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

/// A span as decoded from an export request (the test receiver's view).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedSpan {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub name: String,
    pub kind: u64,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub attributes: Vec<(String, String)>,
    pub status_code: u64,
    pub service: String,
}

/// An OTLP request that [`decode_request`] cannot read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("unsupported wire type {0}")]
    WireType(u64),
}

/// Decodes an `ExportTraceServiceRequest` (the subset [`encode_request`] writes, and what any OTLP
/// exporter writes for those fields); unknown fields are skipped.
pub fn decode_request(buf: &[u8]) -> Result<Vec<DecodedSpan>, DecodeError> {
    let mut spans = Vec::new();
    for (f, v) in fields(buf)? {
        if f != 1 {
            continue;
        }
        let rs = v.bytes()?;
        let mut service = String::new();
        for (f, v) in fields(rs)? {
            match f {
                1 => {
                    for (f, kv) in fields(v.bytes()?)? {
                        if f == 1 {
                            let (k, val) = decode_kv(kv.bytes()?)?;
                            if k == "service.name" {
                                service = val;
                            }
                        }
                    }
                }
                2 => {
                    for (f, sp) in fields(v.bytes()?)? {
                        if f == 2 {
                            let mut s = decode_span(sp.bytes()?)?;
                            s.service = service.clone();
                            spans.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(spans)
}

fn decode_span(buf: &[u8]) -> Result<DecodedSpan, DecodeError> {
    let mut s = DecodedSpan::default();
    for (f, v) in fields(buf)? {
        match f {
            1 => s.trace_id = v.bytes()?.to_vec(),
            2 => s.span_id = v.bytes()?.to_vec(),
            4 => s.parent_span_id = v.bytes()?.to_vec(),
            5 => s.name = String::from_utf8_lossy(v.bytes()?).into_owned(),
            6 => s.kind = v.int()?,
            7 => s.start_nanos = v.int()?,
            8 => s.end_nanos = v.int()?,
            9 => s.attributes.push(decode_kv(v.bytes()?)?),
            15 => {
                for (f, c) in fields(v.bytes()?)? {
                    if f == 3 {
                        s.status_code = c.int()?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

fn decode_kv(buf: &[u8]) -> Result<(String, String), DecodeError> {
    let (mut k, mut val) = (String::new(), String::new());
    for (f, v) in fields(buf)? {
        match f {
            1 => k = String::from_utf8_lossy(v.bytes()?).into_owned(),
            2 => {
                for (f, a) in fields(v.bytes()?)? {
                    val = match f {
                        1 => String::from_utf8_lossy(a.bytes()?).into_owned(),
                        2 => (a.int()? != 0).to_string(),
                        3 => (a.int()? as i64).to_string(),
                        _ => continue,
                    };
                }
            }
            _ => {}
        }
    }
    Ok((k, val))
}

enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    fn bytes(&self) -> Result<&'a [u8], DecodeError> {
        match self {
            Self::Bytes(b) => Ok(b),
            Self::Int(_) => Err(DecodeError::Malformed("expected a length-delimited field")),
        }
    }
    fn int(&self) -> Result<u64, DecodeError> {
        match self {
            Self::Int(v) => Ok(*v),
            Self::Bytes(_) => Err(DecodeError::Malformed("expected a number")),
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(DecodeError::Malformed("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Malformed("varint too long"))
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let field = (key >> 3) as u32;
        let value = match key & 7 {
            0 => Field::Int(read_varint(buf, &mut pos)?),
            1 => {
                let b = buf
                    .get(pos..pos + 8)
                    .ok_or(DecodeError::Malformed("truncated fixed64"))?;
                pos += 8;
                Field::Int(u64::from_le_bytes(
                    b.try_into()
                        .map_err(|_| DecodeError::Malformed("fixed64"))?,
                ))
            }
            2 => {
                let len = read_varint(buf, &mut pos)? as usize;
                let b = buf
                    .get(pos..pos + len)
                    .ok_or(DecodeError::Malformed("truncated field"))?;
                pos += len;
                Field::Bytes(b)
            }
            5 => {
                pos += 4;
                Field::Int(0)
            }
            w => return Err(DecodeError::WireType(w)),
        };
        out.push((field, value));
    }
    Ok(out)
}

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
