use axum::response::{IntoResponse, Response};
use bff_mesh::MeshError;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use std::{borrow::Cow, sync::Arc};

/// `Result<T, BffError>`: what handlers return.
pub type Result<T, E = BffError> = std::result::Result<T, E>;

/// Every failure the BFF answers for itself, as the JSON error of CONTRACT section 3:
/// `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
///
/// Downstream failures convert with `?` ([`From<MeshError>`]): a timeout becomes 504, a service without
/// endpoints 503, any other failure 502. No downstream address or body ever reaches the client: the
/// failure is kept as the error's [`source`](std::error::Error::source), and the edge logs it (with its
/// causes) when it answers a 5xx.
#[derive(Clone, Debug)]
pub struct BffError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    /// Headers of the response besides the JSON error's own (rare: boxed, so that errors stay small).
    headers: Option<Box<http::HeaderMap>>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BffError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            headers: None,
            cause: None,
        }
    }

    /// This error, caused by `cause`: logged with the response, never sent to the client.
    #[must_use]
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "authentication required",
        )
    }
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "not allowed")
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no route for this path")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )
    }
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body too large",
        )
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        )
        .retry_after(retry_after_secs)
    }
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight",
        )
        .retry_after(1)
    }
    pub fn deadline_exceeded() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "the request's deadline was exceeded",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// Adds `retry-after` (seconds) to the response.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds a header to the response (appended: `set-cookie` may come several times).
    #[must_use]
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .append(name, value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body, with the request id when it is known.
    pub fn body(&self, request_id: Option<&HeaderValue>) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                code: &self.code,
                message: &self.message,
                request_id: request_id.and_then(|v| v.to_str().ok()),
            },
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for BffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for BffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl From<MeshError> for BffError {
    fn from(e: MeshError) -> Self {
        let kind = e.kind();
        let code = match kind.http_status() {
            StatusCode::GATEWAY_TIMEOUT if kind == bff_mesh::ErrorKind::Timeout => {
                "upstream_timeout"
            }
            StatusCode::GATEWAY_TIMEOUT => "deadline_exceeded",
            StatusCode::SERVICE_UNAVAILABLE => kind.code(),
            StatusCode::BAD_GATEWAY => "upstream_failed",
            _ => "internal",
        };
        Self::new(kind.http_status(), code, e.public_message()).with_source(e)
    }
}

/// The response carries the error itself as an extension, and a body that renders it only if it is ever
/// read: the edge layer takes the error and renders the body once, with the request id (the unread body
/// is dropped); without the edge layer, the body renders itself, without one.
impl IntoResponse for BffError {
    fn into_response(self) -> Response {
        let err = Arc::new(self);
        let mut res = Response::new(axum::body::Body::new(ErrorBody(Some(err.clone()))));
        *res.status_mut() = err.status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = err.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(extra) = &err.headers {
            for (name, value) in extra.iter() {
                h.append(name, value.clone());
            }
        }
        res.extensions_mut().insert(ErrorResponse(err));
        res
    }
}

/// The error a response answers, for the edge to render (`finish`).
#[derive(Clone, Debug)]
pub(crate) struct ErrorResponse(pub(crate) Arc<BffError>);

/// The JSON body of a [`BffError`], rendered when first polled.
struct ErrorBody(Option<Arc<BffError>>);

impl http_body::Body for ErrorBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.0
                .take()
                .map(|err| Ok(http_body::Frame::data(err.body(None)))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_mesh::ErrorKind;

    #[test]
    fn mesh_errors_map_to_statuses_without_leaking() {
        let cases = [
            (ErrorKind::Timeout, 504, "upstream_timeout"),
            (ErrorKind::Deadline, 504, "deadline_exceeded"),
            (ErrorKind::NoEndpoint, 503, "no_healthy_endpoint"),
            (ErrorKind::Connect, 502, "upstream_failed"),
            (ErrorKind::Reset, 502, "upstream_failed"),
            (
                ErrorKind::Status(StatusCode::INTERNAL_SERVER_ERROR),
                502,
                "upstream_failed",
            ),
            (ErrorKind::Decode, 502, "upstream_failed"),
            (ErrorKind::UnknownService, 500, "internal"),
        ];
        for (kind, status, code) in cases {
            let e: BffError =
                MeshError::new(kind, "users", "10.0.0.7:8080 said: secret stack").into();
            assert_eq!(e.status().as_u16(), status, "{kind:?}");
            assert_eq!(e.code(), code, "{kind:?}");
            let cause = std::error::Error::source(&e).expect("the mesh error is kept");
            assert!(cause.to_string().contains("secret stack"), "{cause}");
            let body = String::from_utf8(e.body(None).to_vec()).unwrap();
            assert!(
                !body.contains("10.0.0.7") && !body.contains("secret"),
                "{body}"
            );
        }
    }

    #[test]
    fn body_has_the_contract_shape() {
        let e = BffError::not_found();
        let v: serde_json::Value =
            serde_json::from_slice(&e.body(Some(&HeaderValue::from_static("rid-1")))).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["request_id"], "rid-1");
        assert!(v["error"]["message"].is_string());
    }
}
