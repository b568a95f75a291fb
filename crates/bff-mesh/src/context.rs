use bff_telemetry::TraceContext;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

/// `x-bff-deadline-ms`: the milliseconds left of the request's deadline, sent on every downstream call.
pub const DEADLINE_HEADER: HeaderName = HeaderName::from_static("x-bff-deadline-ms");

/// What a downstream call inherits from the request that made it.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub request_id: HeaderValue,
    pub trace: TraceContext,
    /// When the whole request must be answered; no downstream attempt outlives it.
    pub deadline: Option<Instant>,
    /// Client headers the route allows to pass to its backends (already filtered).
    pub forward: HeaderMap,
    /// `x-forwarded-for` to send downstream: the trusted chain with the client's address appended.
    pub forwarded_for: Option<HeaderValue>,
    /// `x-forwarded-proto` to send downstream: the scheme the client used.
    pub forwarded_proto: Option<HeaderValue>,
    /// Where the spans of downstream attempts go (when traces are exported).
    pub tracer: Option<bff_telemetry::Tracer>,
    /// Downstream attempts made for this request (shared by every copy of the context): the access log's
    /// summary.
    pub stats: std::sync::Arc<CallStats>,
    /// The session's `authorization` value (`Bearer <access token>`), for the services with
    /// `token = "user"`; set by the session check of a request that has a session, `None` otherwise.
    pub user_token: Option<HeaderValue>,
}

/// The BFF's own token for the services with `token = "client"` (the session crate's client-credentials
/// cache): the mesh asks it for the `authorization` value before each such call.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// `Bearer <token>`, marked sensitive; fetched again when the cached one is about to expire.
    fn token(&self) -> TokenFuture<'_>;
}

/// The future of [`TokenSource::token`]; its error says why no token could be had (never a secret).
pub type TokenFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HeaderValue, TokenError>> + Send + 'a>,
>;

/// Why a [`TokenSource`] had no token: what went wrong is its source (never the token itself).
#[derive(Debug, thiserror::Error)]
#[error("no client token")]
pub struct TokenError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl TokenError {
    /// An error with `cause` as its source.
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(cause.into())
    }
}

/// Counts of a request's downstream attempts.
#[derive(Debug, Default)]
pub struct CallStats {
    pub attempts: std::sync::atomic::AtomicU32,
    pub failures: std::sync::atomic::AtomicU32,
}

impl CallContext {
    /// A context for calls made outside any request (background work, tests): a fresh trace, no deadline.
    pub fn detached() -> Self {
        Self {
            request_id: bff_telemetry::request_id(&HeaderMap::new()),
            trace: TraceContext::from_headers(&HeaderMap::new()),
            deadline: None,
            forward: HeaderMap::new(),
            forwarded_for: None,
            forwarded_proto: None,
            tracer: None,
            stats: Default::default(),
            user_token: None,
        }
    }

    /// The same context with a deadline no later than `deadline`.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self
    }
}
