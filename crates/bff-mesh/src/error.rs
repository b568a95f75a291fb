use http::StatusCode;
use std::{fmt, sync::Arc};

/// What went wrong on a downstream call. One place decides what each kind means: its code, the status the
/// BFF answers with, and whether a retry may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The handler named a service that is not configured.
    UnknownService,
    /// The service has no endpoint to send to (none configured, healthy or not ejected).
    NoEndpoint,
    /// The service's circuit breaker is open: failed fast, without touching the network.
    CircuitOpen,
    /// The service's `max_in_flight` calls are already in flight: failed fast.
    Overloaded,
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// The attempt took longer than the service's `timeout`.
    Timeout,
    /// The request's deadline passed (or left no time for the call).
    Deadline,
    /// The connection was reset or closed before a whole response arrived.
    Reset,
    /// The service answered with a non-success status.
    Status(StatusCode),
    /// The response body was not what was expected (not JSON, wrong shape, too large).
    Decode,
    /// The request could not be built (bad path, header or body).
    InvalidRequest,
}

impl ErrorKind {
    /// The stable code: in `_errors` of partial responses, error bodies, metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownService => "unknown_service",
            Self::NoEndpoint => "no_healthy_endpoint",
            Self::CircuitOpen => "circuit_open",
            Self::Overloaded => "service_overloaded",
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Deadline => "deadline_exceeded",
            Self::Reset => "reset",
            Self::Status(_) => "upstream_status",
            Self::Decode => "malformed_response",
            Self::InvalidRequest => "invalid_request",
        }
    }

    /// The status the BFF answers with when this failure decides the response.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Timeout | Self::Deadline => StatusCode::GATEWAY_TIMEOUT,
            Self::NoEndpoint | Self::CircuitOpen | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UnknownService | Self::InvalidRequest => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Connect | Self::Reset | Self::Status(_) | Self::Decode => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether another attempt may succeed where this one failed: the request may not have reached the
    /// service (connect error), or the failure says nothing about the request itself (reset, timeout).
    ///
    /// The one rule of the call path: a retry policy retries these kinds when its `on` lists them, and
    /// the statuses it lists; nothing else is retried. A status is not retryable by kind (`on` decides
    /// which), nor a failure before any attempt (no endpoint, circuit open, overloaded, deadline).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Connect | Self::Reset | Self::Timeout)
    }

    /// Who caused a failure of this kind.
    pub fn source(self) -> ErrorSource {
        match self {
            Self::Connect | Self::Timeout | Self::Reset | Self::Status(_) | Self::Decode => {
                ErrorSource::Downstream
            }
            Self::UnknownService | Self::InvalidRequest => ErrorSource::Caller,
            Self::NoEndpoint | Self::CircuitOpen | Self::Overloaded | Self::Deadline => {
                ErrorSource::Mesh
            }
        }
    }
}

/// Who caused a failed call (pingora's `ErrorSource`, in the mesh's terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The called service, or the network to it (pingora's `Upstream`).
    Downstream,
    /// The handler's request: an unknown service, a path or body that could not be built (pingora's
    /// `Downstream`, the side that asked).
    Caller,
    /// The mesh's own policies: no endpoint, the breaker, `max_in_flight`, the deadline (pingora's
    /// `Internal`).
    Mesh,
}

/// The cause below a [`MeshError`]: hyper's, rustls's or an I/O error, kept whole.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A failed downstream call: its kind (with its [`ErrorSource`] and whether a retry may help), the
/// service, what the mesh was doing and the error below it (its [`source`](std::error::Error::source)).
/// None of it is sent to clients: [`MeshError::public_message`] is.
#[derive(Clone, Debug)]
pub struct MeshError {
    kind: ErrorKind,
    service: Arc<str>,
    detail: Arc<str>,
    cause: Option<Cause>,
}

impl MeshError {
    pub fn new(kind: ErrorKind, service: impl Into<Arc<str>>, detail: impl fmt::Display) -> Self {
        Self {
            kind,
            service: service.into(),
            detail: detail.to_string().into(),
            cause: None,
        }
    }

    /// This error, caused by `cause` (kept as its [`source`](std::error::Error::source)).
    #[must_use]
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    pub(crate) fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.cause = cause;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Who caused it: the service, the caller or the mesh.
    pub fn error_source(&self) -> ErrorSource {
        self.kind.source()
    }

    /// Whether another attempt may succeed ([`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The downstream's status, for [`ErrorKind::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            ErrorKind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// What a client may be told: the service and the kind, no address, no body.
    pub fn public_message(&self) -> String {
        match self.kind {
            ErrorKind::Status(s) => format!("service {} answered {}", self.service, s.as_u16()),
            ErrorKind::Timeout => format!("service {} timed out", self.service),
            ErrorKind::Deadline => "the request's deadline was exceeded".into(),
            ErrorKind::NoEndpoint => format!("service {} has no healthy endpoint", self.service),
            ErrorKind::CircuitOpen => format!("service {} is failing: circuit open", self.service),
            ErrorKind::Overloaded => {
                format!("service {} has too many calls in flight", self.service)
            }
            ErrorKind::Connect => format!("service {} is unreachable", self.service),
            ErrorKind::Reset => format!("service {} closed the connection", self.service),
            ErrorKind::Decode => format!("service {} sent a malformed response", self.service),
            ErrorKind::UnknownService | ErrorKind::InvalidRequest => "internal error".into(),
        }
    }
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calling {}: {}",
            self.kind.code(),
            self.service,
            self.detail
        )
    }
}

impl std::error::Error for MeshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_source_and_not_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt message");
        let e = MeshError::new(ErrorKind::Connect, "users", "tls handshake").with_source(io);
        assert_eq!(e.to_string(), "connect_error calling users: tls handshake");
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "corrupt message");
        assert!(!e.public_message().contains("corrupt"));
    }

    #[test]
    fn retryable_kinds_and_who_caused_them() {
        assert!(ErrorKind::Connect.is_retryable());
        assert!(ErrorKind::Reset.is_retryable());
        assert!(ErrorKind::Timeout.is_retryable());
        for k in [
            ErrorKind::Deadline,
            ErrorKind::NoEndpoint,
            ErrorKind::CircuitOpen,
            ErrorKind::Status(StatusCode::BAD_GATEWAY),
            ErrorKind::Decode,
            ErrorKind::InvalidRequest,
        ] {
            assert!(!k.is_retryable(), "{k:?}");
        }
        assert_eq!(ErrorKind::Connect.source(), ErrorSource::Downstream);
        assert_eq!(ErrorKind::UnknownService.source(), ErrorSource::Caller);
        assert_eq!(ErrorKind::CircuitOpen.source(), ErrorSource::Mesh);
    }
}

/// The services of a config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshBuildError {
    /// One service could not be built.
    #[error("service {service}")]
    Service {
        service: String,
        #[source]
        source: ServiceError,
    },
}

/// A service's config, or a new set of its endpoints, that the mesh cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// An endpoint is not `host:port`.
    #[error("endpoint {addr:?}")]
    Endpoint {
        addr: String,
        #[source]
        source: bff_config::InvalidValue,
    },
    /// Its config needs a part of the framework this binary was built without.
    #[error(transparent)]
    Feature(#[from] bff_config::FeatureMissing),
    /// Its `[services.NAME.tls]` files could not be used.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Its `discovery` URL.
    #[error("discovery")]
    Discovery(#[source] bff_config::InvalidValue),
    /// Its `[services.NAME.cache]` is out of bounds (a config made in code).
    #[error("cache")]
    Cache(#[source] bff_config::InvalidValue),
    /// [`crate::Mesh::resolve_with`] named a service that is not configured.
    #[error("no service {0:?}")]
    Unknown(String),
}
