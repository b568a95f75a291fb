//! A decoder of OTLP export requests, for tests (the `testkit` feature): the receiver of
//! `bff-testkit` reads what the exporter sends with it.

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

/// Decodes an `ExportTraceServiceRequest` (the subset [`encode_request`](super::encode_request) writes, and what any OTLP
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
