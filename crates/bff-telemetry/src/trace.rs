use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context), passed through unchanged.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace a request belongs to and the span the BFF opened for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The client's span, when the trace was continued.
    pub parent_span_id: Option<[u8; 8]>,
    /// This BFF's span for the request.
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Continues the client's trace when its `traceparent` is valid, else starts a new, sampled one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let tracestate = headers.get(&TRACESTATE).filter(|v| v.len() <= 512).cloned();
        if let Some((trace_id, parent, flags)) =
            headers.get(&TRACEPARENT).and_then(|v| parse(v.as_bytes()))
        {
            return Self {
                trace_id,
                parent_span_id: Some(parent),
                span_id: new_span_id(),
                sampled: flags & 1 == 1,
                tracestate,
            };
        }
        Self {
            trace_id: new_trace_id(),
            parent_span_id: None,
            span_id: new_span_id(),
            sampled: true,
            tracestate: None,
        }
    }

    /// The `traceparent` of a child span of this one (one per downstream call), and the child's span id.
    pub fn child_traceparent(&self) -> (HeaderValue, [u8; 8]) {
        let span = new_span_id();
        (self.child_traceparent_of(&span), span)
    }

    /// The `traceparent` of the child span `span` of this one: the same header again, for a request sent
    /// once more as part of the same attempt.
    pub fn child_traceparent_of(&self, span: &[u8; 8]) -> HeaderValue {
        header(&self.trace_id, span, self.sampled)
    }

    /// This span's own `traceparent`.
    pub fn traceparent(&self) -> HeaderValue {
        header(&self.trace_id, &self.span_id, self.sampled)
    }

    pub fn trace_id_hex(&self) -> String {
        let mut buf = [0u8; 32];
        hex_into(&self.trace_id, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.traceparent().to_str().unwrap_or_default())
    }
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn new_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

fn header(trace: &[u8; 16], span: &[u8; 8], sampled: bool) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(trace, &mut buf[3..35]);
    hex_into(span, &mut buf[36..52]);
    if sampled {
        buf[54] = b'1';
    }
    HeaderValue::from_bytes(&buf).expect("ascii")
}

pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for i in 0..N {
        let hi = (s[2 * i] as char).to_digit(16)?;
        let lo = (s[2 * i + 1] as char).to_digit(16)?;
        if s[2 * i].is_ascii_uppercase() || s[2 * i + 1].is_ascii_uppercase() {
            return None;
        }
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids and version ff are invalid.
fn parse(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let version = unhex::<1>(&v[0..2])?[0];
    if version == 0xff
        || (version == 0 && v.len() != 55)
        || v[2] != b'-'
        || v[35] != b'-'
        || v[52] != b'-'
    {
        return None;
    }
    let trace = unhex::<16>(&v[3..35])?;
    let parent = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(TP));
        h.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        let (child, span) = t.child_traceparent();
        let child = child.to_str().unwrap();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(&child[36..52], "00f067aa0ba902b7");
        assert_ne!(span, t.span_id);
        assert_eq!(t.tracestate.unwrap(), "vendor=1");
    }

    #[test]
    fn starts_a_trace_on_invalid_input() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let mut h = HeaderMap::new();
            h.insert(TRACEPARENT, HeaderValue::from_str(bad).unwrap());
            let t = TraceContext::from_headers(&h);
            assert!(t.parent_span_id.is_none(), "{bad}");
            assert_ne!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn future_versions_may_append_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
            ),
        );
        assert!(TraceContext::from_headers(&h).parent_span_id.is_some());
    }
}
