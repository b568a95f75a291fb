//! What an attempt came to, as one type: the call path's policies (retry, hedging, breaker, outlier
//! detection, load balancing), its span and `bff_upstream_requests_total` all read the same [`Outcome`],
//! classified here and nowhere else.
//!
//! A call refused before any attempt (no endpoint, circuit open, `max_in_flight`) is a [`Failed`] too,
//! of a kind that the metrics count as `fast_fail`.

use crate::{ErrorKind, MeshError, Response, error::Cause};
use bff_telemetry::metrics::Outcome as Measured;
use std::{borrow::Cow, sync::Arc};

/// What became of one attempt: a response, whatever its status, or why there is none.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Response),
    Failed(Failed),
}

impl From<Result<Response, Failed>> for Outcome {
    fn from(r: Result<Response, Failed>) -> Self {
        match r {
            Ok(res) => Self::Response(res),
            Err(failed) => Self::Failed(failed),
        }
    }
}

impl Outcome {
    /// A failure of the endpoint: no response, or a 5xx (a 4xx is the caller's, a success for the
    /// endpoint). The breaker, outlier detection, the endpoint's failure count, the request's attempt
    /// counts, hedging and the span agree on it.
    pub(crate) fn is_failure(&self) -> bool {
        match self {
            Self::Response(res) => res.status.is_server_error(),
            Self::Failed(_) => true,
        }
    }

    /// How `bff_upstream_requests_total{outcome}` counts it.
    pub(crate) fn measured(&self) -> Measured {
        match self {
            Self::Response(res) if res.status.is_server_error() => Measured::Status5xx,
            Self::Response(res) if res.status.is_client_error() => Measured::Status4xx,
            Self::Response(_) => Measured::Success,
            Self::Failed(f) => f.measured(),
        }
    }

    /// Why the next attempt is made, as its span says (`bff.retry_reason`).
    pub(crate) fn retry_reason(&self) -> &'static str {
        match self {
            Self::Response(_) => "upstream_status",
            Self::Failed(f) => f.kind.code(),
        }
    }

    /// The call's result when this attempt is its last: a failure names the endpoint it went to.
    pub(crate) fn into_result(
        self,
        service: &Arc<str>,
        endpoint: &str,
    ) -> Result<Response, MeshError> {
        match self {
            Self::Response(res) => Ok(res),
            Self::Failed(f) => Err(f.into_error(service, Some(endpoint))),
        }
    }
}

/// An attempt's outcome and the endpoint it went to (`endpoints[endpoint]` of the call's set).
#[derive(Debug)]
pub(crate) struct Attempted {
    pub(crate) endpoint: usize,
    pub(crate) outcome: Outcome,
}

/// Why an attempt failed, or a call was refused: its kind, what the mesh was doing, and the error below
/// (hyper's, rustls's, I/O), kept whole as the [`MeshError`]'s source.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) kind: ErrorKind,
    pub(crate) detail: Cow<'static, str>,
    pub(crate) cause: Option<Cause>,
}

impl Failed {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            cause: None,
        }
    }

    #[cold]
    pub(crate) fn caused_by(
        kind: ErrorKind,
        detail: &'static str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            detail: detail.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// How `bff_upstream_requests_total{outcome}` counts it: a refusal without touching the network is
    /// `fast_fail`.
    pub(crate) fn measured(&self) -> Measured {
        match self.kind {
            ErrorKind::Connect => Measured::ConnectError,
            ErrorKind::Timeout => Measured::Timeout,
            ErrorKind::Deadline => Measured::DeadlineExceeded,
            ErrorKind::Decode => Measured::MalformedResponse,
            ErrorKind::NoEndpoint | ErrorKind::CircuitOpen | ErrorKind::Overloaded => {
                Measured::FastFail
            }
            _ => Measured::Reset,
        }
    }

    /// The error the caller receives; `endpoint` is where the attempt went, when it went somewhere.
    #[cold]
    #[inline(never)]
    pub(crate) fn into_error(self, service: &Arc<str>, endpoint: Option<&str>) -> MeshError {
        let e = match endpoint {
            Some(addr) => MeshError::new(
                self.kind,
                service.clone(),
                format_args!("{} ({addr})", self.detail),
            ),
            None => MeshError::new(self.kind, service.clone(), &self.detail),
        };
        e.with_cause(self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};

    fn response(status: u16) -> Outcome {
        Outcome::Response(Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Default::default(),
        })
    }

    /// One classification: what the metrics call a 5xx or an error is what every policy calls a failure,
    /// and every refusal before an attempt is a fast failure.
    #[test]
    fn failures_and_metric_outcomes_agree() {
        for (outcome, measured, failure) in [
            (response(200), Measured::Success, false),
            (response(404), Measured::Status4xx, false),
            (response(429), Measured::Status4xx, false),
            (response(503), Measured::Status5xx, true),
            (
                Outcome::Failed(Failed::new(ErrorKind::Connect, "x")),
                Measured::ConnectError,
                true,
            ),
            (
                Outcome::Failed(Failed::new(ErrorKind::Timeout, "x")),
                Measured::Timeout,
                true,
            ),
            (
                Outcome::Failed(Failed::new(ErrorKind::Deadline, "x")),
                Measured::DeadlineExceeded,
                true,
            ),
            (
                Outcome::Failed(Failed::new(ErrorKind::Decode, "x")),
                Measured::MalformedResponse,
                true,
            ),
            (
                Outcome::Failed(Failed::new(ErrorKind::Reset, "x")),
                Measured::Reset,
                true,
            ),
        ] {
            assert_eq!(outcome.measured(), measured, "{outcome:?}");
            assert_eq!(outcome.is_failure(), failure, "{outcome:?}");
        }
        for kind in [
            ErrorKind::NoEndpoint,
            ErrorKind::CircuitOpen,
            ErrorKind::Overloaded,
        ] {
            assert_eq!(Failed::new(kind, "x").measured(), Measured::FastFail);
        }
    }

    #[test]
    fn a_last_failure_names_its_endpoint_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Outcome::Failed(Failed::caused_by(ErrorKind::Connect, "connecting", io))
            .into_result(&Arc::from("users"), "10.0.0.1:80")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert!(e.to_string().contains("connecting (10.0.0.1:80)"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
