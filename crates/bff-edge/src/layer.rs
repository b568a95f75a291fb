use crate::BffError;
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
use bff_telemetry::{REQUEST_ID, TraceContext, request_id};
use http::{HeaderMap, HeaderValue, Request, header};
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
use tokio::{sync::Semaphore, time::Instant};
use tower::{Layer, Service};

/// The edge policies of `[edge]` that every request passes.
#[derive(Clone, Debug)]
pub struct EdgePolicy {
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub cors: Option<Cors>,
    pub trusted_proxies: TrustedProxies,
}

impl EdgePolicy {
    pub fn from_config(edge: &EdgeConfig) -> Self {
        Self {
            request_timeout: edge.request_timeout.get(),
            max_concurrency: edge.max_concurrency,
            cors: edge.cors.as_ref().map(Cors::new),
            trusted_proxies: TrustedProxies::new(&edge.trusted_proxies),
        }
    }
}

/// Installs the [`Edge`] service in front of a router.
#[derive(Clone, Debug)]
pub struct EdgeLayer {
    policy: Arc<EdgePolicy>,
    permits: Arc<Semaphore>,
}

impl EdgeLayer {
    pub fn new(policy: EdgePolicy) -> Self {
        let permits = Arc::new(Semaphore::new(
            policy.max_concurrency.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            policy: Arc::new(policy),
            permits,
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.policy.max_concurrency - self.permits.available_permits()
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

/// The edge of every public request, in the order it runs:
/// request id (kept when valid, else generated) -> trace context (continued or started) -> load shedding
/// (`max_concurrency`, 503 at once) -> body limit (`max_body`, 413) -> the request's deadline
/// (`request_timeout`, 504), handed to the mesh through the [`CallContext`] -> the router; then every
/// [`BffError`] response is rendered with the request id, and `x-request-id` is set on every response.
#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

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
        let rid = request_id(req.headers());
        let policy = &self.layer.policy;

        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            tracing::debug!("shedding load: max_concurrency reached");
            return ready(finish(BffError::overloaded().into_response(), &rid, None));
        };

        // One path, normalised before routing and auth.
        match path::normalize(req.uri().path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normalized)) => {
                let pq = match req.uri().query() {
                    Some(q) => format!("{normalized}?{q}"),
                    None => normalized,
                };
                let mut parts = req.uri().clone().into_parts();
                match pq.parse() {
                    Ok(pq) => parts.path_and_query = Some(pq),
                    Err(_) => {
                        return ready(finish(
                            BffError::bad_request("invalid path").into_response(),
                            &rid,
                            None,
                        ));
                    }
                }
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
            Err(BadPath(why)) => {
                return ready(finish(
                    BffError::bad_request(why).into_response(),
                    &rid,
                    None,
                ));
            }
        }

        let cors_headers = match policy
            .cors
            .as_ref()
            .map(|c| c.decide(req.method(), req.headers()))
        {
            None | Some(CorsDecision::NotCors) => None,
            Some(CorsDecision::Refused) => {
                let e = BffError::new(
                    http::StatusCode::FORBIDDEN,
                    "forbidden",
                    "origin not allowed",
                );
                return ready(finish(e.into_response(), &rid, None));
            }
            Some(CorsDecision::Preflight(headers)) => {
                let mut res = http::StatusCode::NO_CONTENT.into_response();
                res.headers_mut().extend(headers);
                return ready(finish(res, &rid, None));
            }
            Some(CorsDecision::Allowed(headers)) => Some(headers),
        };

        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let client = policy.trusted_proxies.client_ip(peer, req.headers());
        let deadline = Instant::now() + policy.request_timeout;
        let ctx = CallContext {
            request_id: rid.clone(),
            trace: TraceContext::from_headers(req.headers()),
            deadline: Some(deadline),
            forward: HeaderMap::new(),
            forwarded_for: policy.trusted_proxies.forwarded_for(peer, req.headers()),
            forwarded_proto: Some(HeaderValue::from_static("http")),
        };
        req.extensions_mut().insert(Arc::new(ctx));
        req.extensions_mut().insert(ClientIp(client));

        // Take the service that was driven to readiness, leave a clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = match tokio::time::timeout_at(deadline, inner.call(req)).await {
                Ok(Ok(res)) => res,
                Err(_) => BffError::deadline_exceeded().into_response(),
            };
            drop(permit);
            Ok(finish(res, &rid, cors_headers))
        })
    }
}

fn ready(res: Response) -> BoxFuture {
    Box::pin(std::future::ready(Ok(res)))
}

/// Renders a [`BffError`] response with the request id, and stamps the headers every response carries.
fn finish(mut res: Response, rid: &HeaderValue, cors: Option<HeaderMap>) -> Response {
    let err = res.extensions_mut().remove::<BffError>().or_else(|| {
        // A body over the limit, found while an extractor read it: the JSON error too.
        (res.status() == http::StatusCode::PAYLOAD_TOO_LARGE).then(BffError::payload_too_large)
    });
    if let Some(err) = err {
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

#[cfg(test)]
mod tests {
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
            .layer(EdgeLayer::new(policy(100, 10)));
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
            .layer(EdgeLayer::new(policy(10_000, 1)));
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
}
