//! What one route demands of a request, after routing: authentication, rate limits, a body limit and a
//! deadline of its own. Declarative routes take theirs from `[[routes]]`; Rust routes from a [`Policy`].

#[cfg(feature = "jwt")]
use crate::auth::JwtAuth;
use crate::{BffError, BoxFuture, auth::ApiKeys, rate_limit::RateLimiter};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bff_config::{AuthKind, RateLimitConfig};
use bff_mesh::CallContext;
use bff_telemetry::RouteMetrics;
use http::{Request, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use std::{
    convert::Infallible,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Instant;
use tower::{Layer, Service};

/// A route's policy, as a Rust route declares it: `App::route_with(path, Policy::new().auth(AuthKind::Jwt), get(h))`.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Policy {
    pub auth: AuthKind,
    /// A limit of this route, on top of `[edge.rate_limit]`, with buckets of its own: keyed by client IP
    /// unless it says otherwise, shared between instances when it names a Redis `store`.
    pub rate_limit: Option<RateLimitConfig>,
    pub timeout: Option<Duration>,
    pub max_body: Option<u64>,
    /// A strong `ETag` of each 200 body; `If-None-Match` naming it gets `304 Not Modified`.
    pub etag: bool,
    /// `Cache-Control` of the route's successful responses (unless the handler sets its own).
    pub cache_control: Option<http::HeaderValue>,
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn auth(mut self, auth: AuthKind) -> Self {
        self.auth = auth;
        self
    }
    /// A limit of this route keyed by client IP, in this process.
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_limit = Some(RateLimitConfig::new(per_second, burst));
        self
    }
    /// A limit of this route as a declarative route's `rate_limit` table gives it, with the config's
    /// own types: `RateLimitConfig::new(10, 20).key(RateLimitKey::header(HeaderName::from_static("x-client")))`,
    /// `.store("redis://...".parse()?)` to share it between instances. A key or store URL that does not
    /// parse cannot be written; zero rates are refused, naming the key, when the app is built.
    pub fn rate_limit_with(mut self, limit: RateLimitConfig) -> Self {
        self.rate_limit = Some(limit);
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }
    /// As a declarative route's `etag = true`.
    pub fn etag(mut self) -> Self {
        self.etag = true;
        self
    }
    /// As a declarative route's `cache_control`: `Policy::new().cache_control(HeaderValue::from_static("private, max-age=10"))`.
    pub fn cache_control(mut self, value: http::HeaderValue) -> Self {
        self.cache_control = Some(value);
        self
    }
}

/// The authenticators of a BFF, shared by every route.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    #[cfg(feature = "jwt")]
    pub jwt: Option<Arc<JwtAuth>>,
    pub api_keys: Option<Arc<ApiKeys>>,
    /// Browser sessions (`[session]`), for routes with `auth = "session"`.
    pub session: Option<Arc<dyn crate::auth::SessionGate>>,
}

/// A route's policy, compiled: what [`PolicyLayer`] enforces.
#[derive(Clone, Debug)]
pub struct RoutePolicy {
    pub auth: AuthKind,
    pub limits: Vec<RateLimiter>,
    pub timeout: Option<Duration>,
    pub max_body: u64,
    /// The route's `ETag` and `Cache-Control`.
    pub conditional: crate::Conditional,
}

impl RoutePolicy {
    /// No authentication, rate limit nor deadline of its own: only the body limit applies.
    fn is_plain(&self) -> bool {
        self.auth == AuthKind::None && self.limits.is_empty() && self.timeout.is_none()
    }
}

/// Cheap to clone (one `Arc`): every request clones it.
#[derive(Clone, Debug)]
pub struct PolicyLayer(Arc<PolicyShared>);

/// What every request of a route shares.
#[derive(Debug)]
struct PolicyShared {
    policy: RoutePolicy,
    gate: Arc<Gate>,
    /// One a method the route serves (labelled by it); the first also counts any other method.
    metrics: Box<[Arc<RouteMetrics>]>,
}

impl PolicyLayer {
    pub fn new(policy: RoutePolicy, gate: Arc<Gate>, metrics: Arc<RouteMetrics>) -> Self {
        Self::by_method(policy, gate, vec![metrics])
    }

    /// A layer over a route serving several methods: each request is counted in the metrics labelled
    /// with its method (HEAD in GET's, as axum serves HEAD with the GET handler), any other in the first.
    ///
    /// # Panics
    /// When `metrics` is empty.
    pub fn by_method(
        policy: RoutePolicy,
        gate: Arc<Gate>,
        metrics: Vec<Arc<RouteMetrics>>,
    ) -> Self {
        assert!(!metrics.is_empty(), "a route has metrics");
        Self(Arc::new(PolicyShared {
            policy,
            gate,
            metrics: metrics.into_boxed_slice(),
        }))
    }

    /// Which of the route's metrics count a request of `method` (an index into `metrics`).
    fn metrics_of(&self, method: &http::Method) -> usize {
        if self.0.metrics.len() == 1 {
            return 0;
        }
        let method = if method == http::Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        self.0
            .metrics
            .iter()
            .position(|m| m.method() == method)
            .unwrap_or(0)
    }
}

/// The route template that answered, in the response's extensions (for the access log).
#[derive(Clone, Debug)]
pub(crate) struct RouteTag(pub Arc<str>);

/// The optional backends whose failure made a Rust route's response partial, in the response's
/// extensions (`bff::Partial` puts them there): the route counts each in `bff_partial_responses_total`,
/// as a declarative route counts its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialBackends(pub Vec<&'static str>);

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Enforces a [`RoutePolicy`]: limits keyed before authentication, authentication, limits keyed on the
/// identity, the body limit, then the route's deadline; records the route's metrics.
#[derive(Clone, Debug)]
pub struct PolicyService<S> {
    inner: S,
    layer: PolicyLayer,
}

impl<S> Service<Request<Body>> for PolicyService<S>
where
    S: Service<Request<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut inner = crate::take_ready(&mut self.inner);
        let layer = self.layer.clone();
        let start = Instant::now();
        let metrics = layer.metrics_of(req.method());
        // The route's ETag and Cache-Control (nothing kept of the request when it has neither).
        let conditional = layer.0.policy.conditional.request(&req);
        // Two futures, so that a route with nothing to check does not carry the checks' state.
        if layer.0.policy.is_plain() && req.body().is_end_stream() {
            let route = inner.call(req);
            Box::pin(async move {
                let res = match route.await {
                    Ok(res) => res.into_response(),
                    Err(never) => match never {},
                };
                let res = match conditional {
                    None => res,
                    Some(c) => layer.0.policy.conditional.apply(c, res).await,
                };
                Ok(layer.record(res, start, metrics))
            })
        } else {
            Box::pin(async move {
                let res = enforce(&layer.0.policy, &layer.0.gate, inner, req).await;
                let res = match conditional {
                    None => res,
                    Some(c) => layer.0.policy.conditional.apply(c, res).await,
                };
                Ok(layer.record(res, start, metrics))
            })
        }
    }
}

impl PolicyLayer {
    /// The route's metrics, and its tag on the response (for the access log).
    fn record(&self, mut res: Response, start: Instant, metrics: usize) -> Response {
        let metrics = &self.0.metrics[metrics];
        let status = res.status().as_u16();
        if status == 429 {
            metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        metrics.record(status, start.elapsed());
        if let Some(partial) = res.extensions().get::<PartialBackends>() {
            for backend in &partial.0 {
                metrics.count_partial(backend);
            }
        }
        res.extensions_mut().insert(RouteTag(metrics.template()));
        res
    }
}

/// The policy's checks in order, then the route.
async fn enforce<S>(policy: &RoutePolicy, gate: &Gate, mut inner: S, req: Request<Body>) -> Response
where
    S: Service<Request<Body>, Error = Infallible>,
    S::Response: IntoResponse,
{
    let (mut parts, body) = req.into_parts();
    if let Err(res) = check_limits(policy, &parts, false).await {
        return res;
    }
    if let Err(e) = authenticate(policy, gate, &mut parts).await {
        return e.into_response();
    }
    if let Err(res) = check_limits(policy, &parts, true).await {
        return res;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > policy.max_body) {
        return BffError::payload_too_large().into_response();
    }
    let body = if body.is_end_stream() || declared.is_some() {
        body
    } else {
        // Chunked: read up to the limit before the route runs, so that an oversized body is a 413 before
        // any downstream call, whatever the handler does with it.
        let max = usize::try_from(policy.max_body).unwrap_or(usize::MAX);
        match Limited::new(body, max).collect().await {
            Ok(b) => Body::from(b.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return BffError::payload_too_large().into_response();
            }
            Err(_) => {
                return BffError::bad_request("the request body could not be read").into_response();
            }
        }
    };
    let mut req = Request::from_parts(parts, body);
    if !req.body().is_end_stream() {
        req = lift_body_limit(req);
    }
    let Some(timeout) = policy.timeout else {
        return match inner.call(req).await {
            Ok(res) => res.into_response(),
            Err(never) => match never {},
        };
    };
    let deadline = Instant::now() + timeout;
    let ctx = req.extensions().get::<Arc<CallContext>>().cloned();
    let deadline = ctx
        .as_ref()
        .and_then(|c| c.deadline)
        .map_or(deadline, |d| d.min(deadline));
    if let Some(ctx) = ctx {
        req.extensions_mut()
            .insert(Arc::new(ctx.as_ref().clone().with_deadline(deadline)));
    }
    match tokio::time::timeout_at(deadline, inner.call(req)).await {
        Ok(Ok(res)) => res.into_response(),
        Ok(Err(never)) => match never {},
        Err(_) => BffError::deadline_exceeded().into_response(),
    }
}

/// The body is within the route's `max_body` (declared and checked, or read whole above): extractors read
/// it without axum's own default limit (2 MB), so that a route may take more, and a 413 is only ever the
/// policy's (a [`BffError`]) or the handler's own.
fn lift_body_limit(req: Request<Body>) -> Request<Body> {
    use futures::FutureExt;
    // `DefaultBodyLimit` sets its private extension through its layer only; its inner service hands the
    // request back, and answers at once.
    let mut stamp = axum::extract::DefaultBodyLimit::disable().layer(tower::service_fn(
        |req: Request<Body>| std::future::ready(Ok::<_, Infallible>(req)),
    ));
    match stamp.call(req).now_or_never() {
        Some(Ok(req)) => req,
        Some(Err(never)) => match never {},
        None => unreachable!("a ready future"),
    }
}

/// The limits keyed before (`after_auth = false`) or after authentication; 429 with `retry-after`.
async fn check_limits(
    policy: &RoutePolicy,
    parts: &http::request::Parts,
    after_auth: bool,
) -> Result<(), Response> {
    for l in policy
        .limits
        .iter()
        .filter(|l| l.after_auth() == after_auth)
    {
        if let Err(wait) = l.check(parts).await {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(BffError::rate_limited(secs).into_response());
        }
    }
    Ok(())
}

async fn authenticate(
    policy: &RoutePolicy,
    gate: &Gate,
    parts: &mut http::request::Parts,
) -> Result<(), BffError> {
    match policy.auth {
        AuthKind::None => Ok(()),
        // Without the `jwt` feature the app refuses to build a route with `auth = "jwt"`.
        #[cfg(not(feature = "jwt"))]
        AuthKind::Jwt => Err(BffError::internal()),
        #[cfg(feature = "jwt")]
        AuthKind::Jwt => {
            let jwt = gate.jwt.as_ref().ok_or_else(BffError::internal)?;
            let token = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or_else(BffError::unauthenticated)?;
            let claims = jwt.verify(token).await.map_err(|e| {
                tracing::debug!(reason = %e, "JWT refused");
                BffError::unauthenticated()
            })?;
            parts.extensions.insert(claims);
            Ok(())
        }
        AuthKind::Session => {
            let sessions = gate.session.as_ref().ok_or_else(BffError::internal)?;
            sessions.authenticate(parts).await
        }
        AuthKind::ApiKey => {
            let keys = gate.api_keys.as_ref().ok_or_else(BffError::internal)?;
            let ok = parts
                .headers
                .get("x-api-key")
                .is_some_and(|k| keys.verify(k.as_bytes()));
            if ok {
                Ok(())
            } else {
                Err(BffError::unauthenticated())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, routing::post};
    use bytes::Bytes;
    use tower::ServiceExt;

    fn limited(max_body: u64) -> Router {
        let metrics = bff_telemetry::Metrics::new();
        let policy = RoutePolicy {
            auth: AuthKind::None,
            limits: Vec::new(),
            timeout: None,
            max_body,
            conditional: Default::default(),
        };
        let layer = PolicyLayer::new(policy, Arc::default(), metrics.route("/up", "POST"));
        Router::new().route(
            "/up",
            post(|body: Bytes| async move { body.len().to_string() }).layer(layer),
        )
    }

    fn upload(len: usize, declared: bool) -> Request<Body> {
        let body = Bytes::from(vec![b'x'; len]);
        let mut req = Request::post("/up");
        if declared {
            req = req.header(header::CONTENT_LENGTH, len);
        } else {
            let chunks = futures::stream::iter([Ok::<_, Infallible>(body.clone())]);
            return req.body(Body::from_stream(chunks)).unwrap();
        }
        req.body(Body::from(body)).unwrap()
    }

    /// The route's `max_body` is the limit, above axum's own default (2 MB) too: a 3 MB body within a
    /// 4 MB limit reaches the handler's extractor, declared or chunked; one over it is the policy's 413.
    #[tokio::test]
    async fn the_routes_body_limit_is_the_only_one() {
        let app = limited(4 << 20);
        for declared in [true, false] {
            let res = app
                .clone()
                .oneshot(upload(3 << 20, declared))
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "declared: {declared}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, (3 << 20).to_string());
            let res = app
                .clone()
                .oneshot(upload(5 << 20, declared))
                .await
                .unwrap();
            assert_eq!(res.status(), 413, "declared: {declared}");
            assert!(
                res.extensions()
                    .get::<crate::error::ErrorResponse>()
                    .is_some()
            );
        }
    }
}
