//! The one response classifier: what counts as a failure of an attempt, for the circuit breaker,
//! outlier detection, load balancing and metrics alike. Whether a failure may be retried is
//! [`ErrorKind::is_retryable`](crate::ErrorKind::is_retryable), with the statuses a retry policy lists.

use http::StatusCode;

/// Whether a response is a failure of the endpoint: a 5xx; anything else (4xx included) is a success.
pub(crate) fn is_failure_status(status: StatusCode) -> bool {
    status.is_server_error()
}
