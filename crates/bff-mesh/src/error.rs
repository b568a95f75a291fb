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

    /// Whether the downstream may succeed on another attempt (the request may not have been processed, or
    /// the failure is transient).
    pub fn is_transient(self) -> bool {
        match self {
            Self::Connect | Self::Reset | Self::Timeout | Self::NoEndpoint => true,
            Self::Status(s) => matches!(s.as_u16(), 502..=504),
            _ => false,
        }
    }
}

/// A failed downstream call: its kind, the service, and a message for logs (never sent to clients).
#[derive(Clone, Debug)]
pub struct MeshError {
    kind: ErrorKind,
    service: Arc<str>,
    detail: Arc<str>,
}

impl MeshError {
    pub fn new(kind: ErrorKind, service: impl Into<Arc<str>>, detail: impl fmt::Display) -> Self {
        Self {
            kind,
            service: service.into(),
            detail: detail.to_string().into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
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

impl std::error::Error for MeshError {}
