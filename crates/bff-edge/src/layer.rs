use crate::policy::RouteTag;
use crate::{BffError, BoxFuture, error::ErrorResponse};
use crate::{
    client_ip::{ClientIp, TrustedProxies},
    cors::{Cors, CorsDecision},
    path::{self, BadPath},
};
use axum::extract::ConnectInfo;
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bff_config::EdgeConfig;
use bff_mesh::CallContext;
use bff_telemetry::Metrics;
use bff_telemetry::{REQUEST_ID, TraceContext, request_id};
use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Request, header};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tower::{Layer, Service};

/// The edge policies of `[edge]` that every request passes.
#[derive(Clone, Debug)]
pub struct EdgePolicy {
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub cors: Option<Cors>,
    pub trusted_proxies: TrustedProxies,
    /// One JSON line a request on stdout.
    pub access_log: bool,
    /// Where spans go, when traces are exported.
    pub tracer: Option<bff_telemetry::Tracer>,
    /// The mesh that handlers extract (`mesh: Mesh`), put on every request here rather than by a layer
    /// on every route (each layer of a route boxes its future once more).
    pub mesh: Option<bff_mesh::Mesh>,
}

impl EdgePolicy {
    pub fn from_config(edge: &EdgeConfig) -> Self {
        Self {
            request_timeout: edge.request_timeout.get(),
            max_concurrency: edge.max_concurrency,
            cors: edge.cors.as_ref().map(Cors::new),
            trusted_proxies: TrustedProxies::new(&edge.trusted_proxies),
            access_log: true,
            tracer: None,
            mesh: None,
        }
    }
}

/// Installs the [`Edge`] service in front of a router.
#[derive(Clone, Debug)]
pub struct EdgeLayer(Arc<EdgeShared>);

/// What every request of an edge shares.
#[derive(Debug)]
struct EdgeShared {
    policy: EdgePolicy,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl EdgeLayer {
    pub fn new(policy: EdgePolicy, metrics: Arc<Metrics>) -> Self {
        let permits = Arc::new(Semaphore::new(
            policy.max_concurrency.min(Semaphore::MAX_PERMITS),
        ));
        Self(Arc::new(EdgeShared {
            policy,
            permits,
            metrics,
        }))
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.0.policy.max_concurrency - self.0.permits.available_permits()
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The edge of every public request. [`Edge::call`] runs these steps in this order, each a function of
/// its own:
///
/// 1. `AccessLog::start`: the request id (kept when valid, else generated) and what the access log
///    says of the request;
/// 2. `EdgeLayer::admit`: load shedding (`max_concurrency`, 503 at once), the permit held by an
///    `InFlight` guard until the response body is written out or dropped;
/// 3. `normalize_path`: one path for routing and auth (400 for a path that cannot be normalised);
/// 4. `EdgeLayer::cors`: CORS (403 for an origin not allowed, 204 for a preflight);
/// 5. `EdgeLayer::context`: the client address (trusted proxies), the trace context (continued or
///    started) and the request's deadline (`request_timeout`), handed to handlers and the mesh in a
///    [`CallContext`];
/// 6. `route`: the router (rate limits, authentication and body limits are its routes'
///    [`PolicyLayer`](crate::PolicyLayer)), under the deadline (504), a panic answered 500;
/// 7. `EdgeLayer::done`: every [`BffError`] rendered once with the request id, the headers every
///    response carries, metrics of unmatched requests, the access log line and the server span.
#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

impl<S> Service<Request<Body>> for Edge<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let start = Instant::now();
        let edge = self.layer.clone();
        let mut log = AccessLog::start(&req, &edge.0.policy);
        let refuse =
            |no: Refusal, log: &AccessLog| ready(edge.done(no.into_response(), log, None, start));
        let permit = match edge.admit() {
            Ok(permit) => permit,
            Err(no) => return refuse(no, &log),
        };
        if let Err(no) = normalize_path(&mut req) {
            return refuse(no, &log);
        }
        let cors = match edge.cors(&req) {
            Ok(cors) => cors,
            Err(no) => return refuse(no, &log),
        };
        let deadline = start + edge.0.policy.request_timeout;
        edge.context(&mut req, &mut log, deadline);
        let inner = crate::take_ready(&mut self.inner);
        // Counted in flight from here until the response body is written out or dropped, whatever happens
        // in between (a panic, the client going away).
        let held = InFlight::new(edge, permit);
        let routed = route(inner, req, deadline);
        Box::pin(async move {
            let res = match routed.await {
                Routed::Answered(res) => res,
                Routed::Panicked => held.layer.panicked(&log),
                Routed::TimedOut => BffError::deadline_exceeded().into_response(),
            };
            let res = held.layer.done(res, &log, cors, start);
            Ok(res.map(|body| Body::new(HeldBody::new(body, held))))
        })
    }
}

impl AccessLog {
    /// Step 1: the request id, and what the access log says of the request (the path is only copied
    /// when something will print it).
    fn start(req: &Request<Body>, policy: &EdgePolicy) -> Self {
        let logged = policy.access_log || policy.tracer.is_some();
        Self {
            method: req.method().clone(),
            path: if logged {
                req.uri().path().to_string()
            } else {
                String::new()
            },
            request_id: request_id(req.headers()),
            trace_id: None,
            client: None,
            span: None,
            stats: Arc::default(),
        }
    }
}

impl EdgeLayer {
    /// Step 2, load shedding: a `max_concurrency` permit, or 503 at once (`bff_shed_total`).
    fn admit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.0.permits.clone().try_acquire_owned().map_err(|_| {
            tracing::debug!("shedding load: max_concurrency reached");
            self.0.metrics.shed.fetch_add(1, Ordering::Relaxed);
            Refusal::Error(BffError::overloaded())
        })
    }

    /// Step 4, CORS: the headers an allowed cross-origin response gets, or the answer itself (403 for an
    /// origin not allowed, 204 for a preflight).
    fn cors(&self, req: &Request<Body>) -> Result<Option<HeaderMap>, Refusal> {
        match self
            .0
            .policy
            .cors
            .as_ref()
            .map(|c| c.decide(req.method(), req.headers()))
        {
            None | Some(CorsDecision::NotCors) => Ok(None),
            Some(CorsDecision::Allowed(headers)) => Ok(Some(headers)),
            Some(CorsDecision::Refused) => Err(Refusal::Error(BffError::new(
                http::StatusCode::FORBIDDEN,
                "forbidden",
                "origin not allowed",
            ))),
            Some(CorsDecision::Preflight(headers)) => Err(Refusal::Preflight(headers)),
        }
    }

    /// Step 5: the client address, the trace context and the deadline, in the request's extensions
    /// (a [`CallContext`], [`ClientIp`], the mesh) and in the access log.
    fn context(&self, req: &mut Request<Body>, log: &mut AccessLog, deadline: Instant) {
        let policy = &self.0.policy;
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let client = policy.trusted_proxies.client_ip(peer, req.headers());
        let trace = TraceContext::from_headers(req.headers());
        if policy.access_log || policy.tracer.is_some() {
            log.trace_id = Some(trace.trace_id_hex());
            log.client = Some(client);
            log.span = policy
                .tracer
                .as_ref()
                .map(|_| (trace.clone(), std::time::SystemTime::now()));
        }
        let ctx = CallContext {
            request_id: log.request_id.clone(),
            trace,
            deadline: Some(deadline),
            forward: HeaderMap::new(),
            forwarded_for: policy.trusted_proxies.forwarded_for(peer, req.headers()),
            // The public listener marks the requests that came over TLS with the `https` scheme.
            forwarded_proto: Some(HeaderValue::from_static(
                if req.extensions().get::<http::uri::Scheme>() == Some(&http::uri::Scheme::HTTPS) {
                    "https"
                } else {
                    "http"
                },
            )),
            tracer: policy.tracer.clone(),
            stats: log.stats.clone(),
            user_token: None,
        };
        req.extensions_mut().insert(Arc::new(ctx));
        req.extensions_mut().insert(ClientIp(client));
        if let Some(mesh) = &policy.mesh {
            req.extensions_mut().insert(mesh.clone());
        }
    }
}

/// Step 3: one path, normalised before routing and auth; 400 for one that cannot be.
fn normalize_path(req: &mut Request<Body>) -> Result<(), Refusal> {
    match path::normalize(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => Ok(()),
        Ok(Cow::Owned(normalized)) => {
            let pq = match req.uri().query() {
                Some(q) => format!("{normalized}?{q}"),
                None => normalized,
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(
                pq.parse()
                    .map_err(|_| Refusal::Error(BffError::bad_request("invalid path")))?,
            );
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
            Ok(())
        }
        Err(BadPath(why)) => Err(Refusal::Error(BffError::bad_request(why))),
    }
}

/// A request the edge answers itself, before routing.
#[derive(Debug)]
enum Refusal {
    Error(BffError),
    /// A CORS preflight: 204 with these headers.
    Preflight(HeaderMap),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Error(e) => e.into_response(),
            Self::Preflight(headers) => {
                let mut res = http::StatusCode::NO_CONTENT.into_response();
                res.headers_mut().extend(headers);
                res
            }
        }
    }
}

/// How the router's part of a request ended.
enum Routed {
    Answered(Response),
    /// The handler panicked (where the route was called, or while its future was polled).
    Panicked,
    /// The request's deadline passed first.
    TimedOut,
}

/// Step 6: the router, under the request's deadline. A panic in a handler answers its own request and
/// nothing else: caught where the route is called (routers run handlers' synchronous parts there) and
/// where its future is polled.
fn route<S>(mut inner: S, req: Request<Body>, deadline: Instant) -> impl Future<Output = Routed>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let route = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req)));
    async move {
        let Ok(route) = route else {
            return Routed::Panicked;
        };
        match tokio::time::timeout_at(deadline, AssertUnwindSafe(route).catch_unwind()).await {
            Ok(Ok(Ok(res))) => Routed::Answered(res),
            Ok(Ok(Err(never))) => match never {},
            Ok(Err(_panic)) => Routed::Panicked,
            Err(_) => Routed::TimedOut,
        }
    }
}

/// A request counted in flight (`bff_inflight_requests`) and holding its `max_concurrency` permit.
#[derive(Debug)]
struct InFlight {
    /// The request's edge (its clone, taken anyway), which the end of the request uses too.
    layer: EdgeLayer,
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    fn new(layer: EdgeLayer, permit: OwnedSemaphorePermit) -> Self {
        layer.0.metrics.inflight.fetch_add(1, Ordering::Relaxed);
        Self {
            layer,
            _permit: permit,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.layer
            .0
            .metrics
            .inflight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until the server has written it out (asked for its
/// end) or dropped it: a client that reads slowly keeps its permit, so slow readers count against
/// `max_concurrency`. Its end is announced only when asked for after its data, so that the server polls
/// it once more after taking the last bytes (HTTP/1 after writing them down to its buffer, HTTP/2 once
/// they fit the flow-control window) instead of dropping it while they wait.
struct HeldBody {
    body: Body,
    held: Option<InFlight>,
    /// Whether data has gone out: from then on, the end is reported by `poll_frame` only.
    started: bool,
}

impl HeldBody {
    fn new(body: Body, held: InFlight) -> Self {
        Self {
            body,
            held: Some(held),
            started: false,
        }
    }
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(_)) => this.started = true,
            // Written out (or failed): the request is over.
            None | Some(Err(_)) => this.held = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        !self.started && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl EdgeLayer {
    /// The answer to a request whose handler panicked: a 500 without the panic's message (the panic hook
    /// printed it), logged and counted in `bff_handler_panics_total`.
    #[cold]
    fn panicked(&self, log: &AccessLog) -> Response {
        self.0
            .metrics
            .handler_panics
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            request_id = log.request_id.to_str().unwrap_or_default(),
            method = %log.method,
            "a handler panicked; answered 500"
        );
        BffError::internal().into_response()
    }
}

/// What the access log says of a request.
#[derive(Clone, Debug)]
struct AccessLog {
    method: http::Method,
    path: String,
    request_id: HeaderValue,
    trace_id: Option<String>,
    client: Option<IpAddr>,
    /// The request's server span, when traces are exported.
    span: Option<(TraceContext, std::time::SystemTime)>,
    /// Its downstream attempts, counted by the mesh.
    stats: Arc<bff_mesh::CallStats>,
}

impl EdgeLayer {
    /// The end of every request: the JSON error rendering and common headers, metrics of requests that no
    /// route answered, the access log line.
    fn done(
        &self,
        res: Response,
        log: &AccessLog,
        cors: Option<HeaderMap>,
        start: Instant,
    ) -> Response {
        let res = finish(res, &log.request_id, cors);
        let elapsed = start.elapsed();
        let route = res.extensions().get::<RouteTag>().map(|t| t.0.clone());
        if route.is_none() {
            self.0
                .metrics
                .unmatched
                .record(res.status().as_u16(), elapsed);
        }
        if self.0.policy.access_log {
            write_access_log(log, route.as_deref(), res.status().as_u16(), elapsed);
        }
        if let (Some(tracer), Some((trace, started))) = (&self.0.policy.tracer, &log.span) {
            let status = res.status().as_u16();
            let route = route.as_deref().unwrap_or("unmatched");
            let mut attributes = vec![
                ("http.request.method", log.method.as_str().into()),
                ("http.route", route.into()),
                ("url.path", log.path.clone().into()),
                ("http.response.status_code", i64::from(status).into()),
                (
                    "bff.partial",
                    res.headers().contains_key("x-bff-partial").into(),
                ),
            ];
            if let Some(c) = log.client {
                attributes.push(("client.address", c.to_string().into()));
            }
            tracer.record(bff_telemetry::Span {
                trace_id: trace.trace_id,
                span_id: trace.span_id,
                parent_span_id: trace.parent_span_id,
                name: format!("{} {route}", log.method),
                kind: bff_telemetry::SpanKind::Server,
                start: *started,
                end: std::time::SystemTime::now(),
                attributes,
                error: status >= 500,
            });
        }
        res
    }
}

/// One JSON line on stdout.
fn write_access_log(log: &AccessLog, route: Option<&str>, status: u16, elapsed: Duration) {
    use std::io::Write;
    let line = serde_json::json!({
        "time": rfc3339(std::time::SystemTime::now()),
        "request_id": log.request_id.to_str().unwrap_or_default(),
        "trace_id": log.trace_id,
        "client": log.client.map(|c| c.to_string()),
        "method": log.method.as_str(),
        "path": log.path,
        "route": route,
        "status": status,
        "duration_ms": (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "downstream": {
            "attempts": log.stats.attempts.load(Ordering::Relaxed),
            "failed": log.stats.failures.load(Ordering::Relaxed),
        },
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// `2026-11-28T00:10:15.123Z`.
///
/// By hand rather than with the `time` crate, which takes as long (312 ns against 298 ns: `cargo bench -p
/// bff-edge --bench kept_crates`) and is compiled only with the `jwt` feature: every other build would gain
/// 6 crates for these lines (docs/performance.md, "Hand-written or a crate: the decisions").
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn ready(res: Response) -> BoxFuture {
    Box::pin(std::future::ready(Ok(res)))
}

/// Renders a [`BffError`] response with the request id, and stamps the headers every response carries.
/// Any other response is the handler's own, whatever its status (a 413 included: the route's policy
/// checks the body limit itself, and lifts axum's, so an extractor never answers one of its own).
fn finish(mut res: Response, rid: &HeaderValue, cors: Option<HeaderMap>) -> Response {
    if let Some(ErrorResponse(err)) = res.extensions_mut().remove::<ErrorResponse>() {
        if err.status().is_server_error() && std::error::Error::source(&err).is_some() {
            log_failure(&err, rid);
        }
        res.headers_mut().remove(header::CONTENT_LENGTH);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        *res.body_mut() = Body::from(err.body(Some(rid)));
    }
    let h = res.headers_mut();
    h.insert(REQUEST_ID, rid.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(cors) = cors {
        for (k, v) in cors {
            if let Some(k) = k {
                h.append(k, v);
            }
        }
    }
    res
}

/// A 5xx the BFF answers for a failure below it, logged with its cause (the downstream failure and the
/// error under that: refused connection, TLS alert, reset); the client's body says none of that. Its own
/// refusals (load shedding, the deadline) have no cause and are not logged here: counted instead.
#[cold]
#[inline(never)]
fn log_failure(err: &BffError, rid: &HeaderValue) {
    tracing::warn!(
        request_id = rid.to_str().unwrap_or_default(),
        status = err.status().as_u16(),
        error = %bff_telemetry::ErrorChain(err),
        "request failed"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_764_288_615_123);
        assert_eq!(super::rfc3339(t), "2025-11-28T00:10:15.123Z");
        assert_eq!(
            super::rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    use super::*;
    use axum::{Router, routing::get};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn policy(timeout_ms: u64, max: usize) -> EdgePolicy {
        EdgePolicy {
            request_timeout: Duration::from_millis(timeout_ms),
            max_concurrency: max,
            cors: None,
            trusted_proxies: TrustedProxies::default(),
            access_log: false,
            tracer: None,
            mesh: None,
        }
    }

    async fn json(res: Response) -> serde_json::Value {
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_gives_504_with_request_id() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .layer(EdgeLayer::new(policy(100, 10), Arc::new(Metrics::new())));
        let req = Request::get("/slow")
            .header("x-request-id", "rid-7")
            .body(Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 504);
        assert_eq!(res.headers()["x-request-id"], "rid-7");
        let v = json(res).await;
        assert_eq!(v["error"]["code"], "deadline_exceeded");
        assert_eq!(v["error"]["request_id"], "rid-7");
    }

    #[tokio::test]
    async fn the_permit_is_held_until_the_response_body_is_read() {
        let edge = EdgeLayer::new(policy(10_000, 1), Arc::new(Metrics::new()));
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; 1 << 20] }))
            .layer(edge.clone());
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let first = app.clone().oneshot(get("/big")).await.unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(edge.in_flight(), 1, "answered, its body not written yet");
        let second = app.clone().oneshot(get("/big")).await.unwrap();
        assert_eq!(second.status(), 503);
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1 << 20);
        assert_eq!(edge.in_flight(), 0);
        let third = app.clone().oneshot(get("/big")).await.unwrap();
        assert_eq!(third.status(), 200);
        // A body dropped unread (the client went away) releases it too.
        drop(third);
        assert_eq!(edge.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panic_is_a_500_and_releases_the_permit() {
        async fn boom() -> &'static str {
            panic!("do not show this")
        }
        let metrics = Arc::new(Metrics::new());
        let edge = EdgeLayer::new(policy(10_000, 1), metrics.clone());
        let app = Router::new().route("/boom", get(boom)).layer(edge.clone());
        let req = Request::get("/boom")
            .header("x-request-id", "rid-9")
            .body(Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 500);
        let v = json(res).await;
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(v["error"]["request_id"], "rid-9");
        assert!(!v.to_string().contains("do not show"));
        assert_eq!(edge.in_flight(), 0);
        assert_eq!(metrics.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.handler_panics.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn sheds_load_beyond_max_concurrency() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let app = Router::new()
            .route(
                "/hold",
                get(move || {
                    let rx = rx.clone();
                    async move {
                        if let Some(rx) = rx.lock().await.take() {
                            let _ = rx.await;
                        }
                        "done"
                    }
                }),
            )
            .layer(EdgeLayer::new(policy(10_000, 1), Arc::new(Metrics::new())));
        let first = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/hold").body(Body::empty()).unwrap()),
        );
        tokio::task::yield_now().await;
        // Wait until the first request holds the only permit.
        let mut second = None;
        for _ in 0..100 {
            let res = app
                .clone()
                .oneshot(Request::get("/hold").body(Body::empty()).unwrap())
                .await
                .unwrap();
            if res.status() == 503 {
                second = Some(res);
                break;
            }
            tokio::task::yield_now().await;
        }
        let second = second.expect("a second request is shed while the first holds the permit");
        assert_eq!(second.headers()["retry-after"], "1");
        assert_eq!(json(second).await["error"]["code"], "overloaded");
        tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
    }

    fn edge(policy: EdgePolicy) -> EdgeLayer {
        EdgeLayer::new(policy, Arc::new(Metrics::new()))
    }

    fn request(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn step_request_id_is_kept_when_valid_else_made() {
        let p = policy(1000, 1);
        let mut req = request("/a");
        req.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("rid-1"));
        assert_eq!(AccessLog::start(&req, &p).request_id, "rid-1");
        let made = AccessLog::start(&request("/a"), &p).request_id;
        assert!(!made.is_empty());
        // The path is copied only for an access log or a trace.
        assert_eq!(AccessLog::start(&request("/a"), &p).path, "");
        let logged = EdgePolicy {
            access_log: true,
            ..p
        };
        assert_eq!(AccessLog::start(&request("/a"), &logged).path, "/a");
    }

    #[test]
    fn step_admit_sheds_beyond_max_concurrency_and_counts() {
        let edge = edge(policy(1000, 1));
        let permit = edge.admit().expect("the first is admitted");
        let shed = edge
            .admit()
            .expect_err("the second is shed")
            .into_response();
        assert_eq!(shed.status(), 503);
        assert_eq!(shed.headers()["retry-after"], "1");
        assert_eq!(edge.0.metrics.shed.load(Ordering::Relaxed), 1);
        drop(permit);
        assert!(edge.admit().is_ok());
    }

    #[test]
    fn step_normalize_path_rewrites_keeping_the_query_or_refuses() {
        let mut req = request("/a//b/./c?x=1");
        normalize_path(&mut req).unwrap();
        assert_eq!(req.uri(), "/a/b/c?x=1");
        let mut plain = request("/a/b");
        normalize_path(&mut plain).unwrap();
        assert_eq!(plain.uri(), "/a/b");
        let mut bad = request("/a%2fb");
        let res = normalize_path(&mut bad)
            .expect_err("refused")
            .into_response();
        assert_eq!(res.status(), 400);
    }

    #[test]
    fn step_cors_allows_refuses_and_answers_preflights() {
        let cors = Cors::new(&bff_config::CorsConfig {
            allow_origins: vec!["https://app.example".parse().unwrap()],
            allow_credentials: false,
        });
        let edge = edge(EdgePolicy {
            cors: Some(cors),
            ..policy(1000, 1)
        });
        assert!(edge.cors(&request("/a")).unwrap().is_none(), "not CORS");
        let from = |origin: &'static str, method: http::Method| {
            let mut req = request("/a");
            *req.method_mut() = method;
            req.headers_mut()
                .insert(header::ORIGIN, HeaderValue::from_static(origin));
            req.headers_mut().insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("GET"),
            );
            req
        };
        let allowed = edge.cors(&from("https://app.example", http::Method::GET));
        assert!(allowed.unwrap().is_some());
        let refused = edge.cors(&from("https://evil.example", http::Method::GET));
        assert_eq!(refused.expect_err("refused").into_response().status(), 403);
        let preflight = edge.cors(&from("https://app.example", http::Method::OPTIONS));
        assert_eq!(
            preflight.expect_err("answered").into_response().status(),
            204
        );
    }

    #[tokio::test(start_paused = true)]
    async fn step_context_gives_handlers_the_client_the_trace_and_the_deadline() {
        let edge = edge(policy(1000, 1));
        let mut req = request("/a");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        let mut log = AccessLog::start(&req, &edge.0.policy);
        let deadline = Instant::now() + Duration::from_secs(1);
        edge.context(&mut req, &mut log, deadline);
        let ctx = req
            .extensions()
            .get::<Arc<CallContext>>()
            .expect("a context");
        assert_eq!(ctx.deadline, Some(deadline));
        assert_eq!(ctx.request_id, log.request_id);
        assert_eq!(ctx.forwarded_proto.as_ref().unwrap(), "http");
        assert_eq!(
            req.extensions().get::<ClientIp>().map(|c| c.0),
            Some(IpAddr::from([10, 0, 0, 7]))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn step_route_answers_times_out_or_catches_a_panic() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/boom", get(boom));
        let deadline = Instant::now() + Duration::from_secs(1);
        let run = |path: &str| route(app.clone(), request(path), deadline);
        assert!(matches!(run("/ok").await, Routed::Answered(r) if r.status() == 200));
        assert!(matches!(run("/slow").await, Routed::TimedOut));
        assert!(matches!(run("/boom").await, Routed::Panicked));
    }

    #[tokio::test]
    async fn step_finish_renders_a_bff_error_once_with_the_request_id() {
        let rid = HeaderValue::from_static("rid-3");
        let res = finish(BffError::not_found().into_response(), &rid, None);
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["x-request-id"], "rid-3");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let v = json(res).await;
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["request_id"], "rid-3");
        // Without the edge, the error's body renders itself (without a request id).
        let alone = json(BffError::not_found().into_response()).await;
        assert_eq!(alone["error"]["code"], "not_found");
        assert!(alone["error"].get("request_id").is_none());
    }

    #[tokio::test]
    async fn step_finish_keeps_a_handlers_own_413() {
        let own = (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "text/plain")],
            "upload quota exceeded",
        )
            .into_response();
        let res = finish(own, &HeaderValue::from_static("rid-4"), None);
        assert_eq!(res.status(), 413);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/plain");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"upload quota exceeded");
    }
}
