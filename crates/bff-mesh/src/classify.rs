//! The one response classifier: what counts as a failure of an attempt, for retries, the circuit breaker,
//! outlier detection, load balancing and metrics alike.

use crate::ErrorKind;
use http::StatusCode;

/// A failed attempt, as every policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Reset,
    Timeout,
    /// A 5xx answer.
    Status(u16),
}

impl Failure {
    /// The failure an attempt's error is, or `None` when the error says nothing about the endpoint
    /// (the request's own deadline, a bad request, a body that failed to decode).
    pub(crate) fn of_error(kind: ErrorKind) -> Option<Self> {
        match kind {
            ErrorKind::Connect => Some(Self::Connect),
            ErrorKind::Reset => Some(Self::Reset),
            ErrorKind::Timeout => Some(Self::Timeout),
            _ => None,
        }
    }

    /// The failure a response is: a 5xx; anything else (4xx included) is a success of the endpoint.
    pub(crate) fn of_status(status: StatusCode) -> Option<Self> {
        status
            .is_server_error()
            .then_some(Self::Status(status.as_u16()))
    }
}
