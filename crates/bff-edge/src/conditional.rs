//! Conditional responses to the frontend: a route's strong `ETag` (a hash of the body it answers) and
//! `304 Not Modified` when the request's `If-None-Match` names it; the route's `Cache-Control`.
//!
//! Only successful responses get either: an error or a partial response (`x-bff-partial`) is never
//! given the route's freshness (a partial one gets `no-store`, so that a degraded answer is not kept).

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use sha2::{Digest, Sha256};

/// `x-bff-partial`: an optional backend failed.
const PARTIAL_HEADER: HeaderName = HeaderName::from_static("x-bff-partial");

/// What a route adds to its successful responses: `etag = true` and `cache_control = "..."`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditional {
    pub etag: bool,
    pub cache_control: Option<HeaderValue>,
}

/// What a request needs from [`Conditional::apply`]: whether to tag the response, and the tags the client
/// already has.
#[derive(Debug)]
pub struct Pending {
    etag: bool,
    if_none_match: Option<HeaderValue>,
}

impl Conditional {
    pub fn is_off(&self) -> bool {
        !self.etag && self.cache_control.is_none()
    }

    /// `None` when the route adds nothing (nothing is kept of the request then).
    pub fn request<B>(&self, req: &Request<B>) -> Option<Pending> {
        if self.is_off() {
            return None;
        }
        let etag = self.etag && (req.method() == Method::GET || req.method() == Method::HEAD);
        Some(Pending {
            etag,
            if_none_match: etag
                .then(|| req.headers().get(header::IF_NONE_MATCH).cloned())
                .flatten(),
        })
    }

    /// The route's response with its `Cache-Control` and `ETag`, or `304 Not Modified`.
    pub async fn apply(&self, pending: Pending, res: Response) -> Response {
        if !res.status().is_success() {
            return res;
        }
        let (mut parts, body) = res.into_parts();
        if parts.headers.contains_key(PARTIAL_HEADER) {
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Response::from_parts(parts, body);
        }
        // A handler's own Cache-Control wins.
        if let Some(cc) = &self.cache_control
            && !parts.headers.contains_key(header::CACHE_CONTROL)
        {
            parts.headers.insert(header::CACHE_CONTROL, cc.clone());
        }
        if !pending.etag || parts.status != StatusCode::OK {
            return Response::from_parts(parts, body);
        }
        let (tag, body) = match parts.headers.get(header::ETAG) {
            // A handler's own ETag is the one compared.
            Some(tag) => (tag.clone(), body),
            None => {
                let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                    return crate::BffError::internal().into_response();
                };
                let tag = strong_etag(&bytes);
                parts.headers.insert(header::ETAG, tag.clone());
                (tag, Body::from(bytes))
            }
        };
        if pending
            .if_none_match
            .as_ref()
            .is_some_and(|inm| matches(inm, &tag))
        {
            parts.status = StatusCode::NOT_MODIFIED;
            for h in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
                parts.headers.remove(h);
            }
            return Response::from_parts(parts, Body::empty());
        }
        Response::from_parts(parts, body)
    }
}

/// A strong entity tag of `body`: the first 128 bits of its SHA-256, in hex.
pub fn strong_etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    HeaderValue::from_str(&tag).expect("hex is a valid header value")
}

/// Whether `If-None-Match` names `tag` (`*`, or a list; compared weakly, as RFC 9110 13.1.2 says).
fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let opaque = |t: &str| {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_string()
    };
    let Ok(tag) = tag.to_str() else { return false };
    let tag = opaque(tag);
    list.trim() == "*" || list.split(',').any(|t| opaque(t) == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_in_a_list() {
        let tag = HeaderValue::from_static("\"abc\"");
        for (inm, want) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
            ("", false),
        ] {
            assert_eq!(matches(&HeaderValue::from_static(inm), &tag), want, "{inm}");
        }
    }

    #[test]
    fn the_strong_etag_depends_on_every_byte() {
        let a = strong_etag(b"{\"a\":1}");
        assert_eq!(a, strong_etag(b"{\"a\":1}"));
        assert_ne!(a, strong_etag(b"{\"a\":2}"));
        assert_eq!(a.len(), 34);
        assert!(!a.to_str().unwrap().starts_with("W/"));
    }
}
