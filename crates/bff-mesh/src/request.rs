use crate::{
    DEADLINE_HEADER, ErrorKind, MeshError, ServiceClient, classify::Failure, endpoint::Endpoint,
    headers::strip_hop_by_hop, service::HashKey,
};
use bff_telemetry::{REQUEST_ID, TRACEPARENT, TRACESTATE};
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri,
    header::{CONTENT_TYPE, USER_AGENT},
    uri::PathAndQuery,
};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Serialize, de::DeserializeOwned};
use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};
use tokio::time::Instant;

/// A downstream call being built: `mesh.service("users").get("/users/1").query(&q).send_json::<T>()`.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: ServiceClient,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout: Option<Duration>,
    hash_key: Option<u64>,
    error: Option<String>,
}

/// A downstream response, its body read whole (bounded by the service's `max_response`).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self, service: &str) -> Result<T, MeshError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| MeshError::new(ErrorKind::Decode, service, e))
    }
}

impl RequestBuilder {
    pub(crate) fn new(client: ServiceClient, method: Method, path: String) -> Self {
        Self {
            client,
            method,
            path,
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            hash_key: None,
            error: None,
        }
    }

    /// Adds a header. Hop-by-hop headers are dropped when the request is sent.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.error = Some("invalid header name or value".into()),
        }
        self
    }

    /// Appends a query string built from `query` (a struct or a list of pairs).
    pub fn query<T: Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(q) if q.is_empty() => {}
            Ok(q) => {
                self.path
                    .push(if self.path.contains('?') { '&' } else { '?' });
                self.path.push_str(&q);
            }
            Err(e) => self.error = Some(format!("query: {e}")),
        }
        self
    }

    /// A JSON body (and `content-type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(b) => {
                self.body = Some(b.into());
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(e) => self.error = Some(format!("json body: {e}")),
        }
        self
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A timeout for this call, shorter than the service's own.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The key `ring_hash` balances on (e.g. a user id), when the service uses it.
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.hash_key = Some(crate::balancer::hash_bytes(key.as_ref()));
        self
    }

    /// Sends the request and returns the response whatever its status.
    ///
    /// On the way: the service's concurrency cap, then for each attempt the deadline, the balancer (over
    /// healthy, non-ejected endpoints, another one on a retry), the circuit breaker, the attempt with its
    /// timeout; its outcome feeds the endpoint's latency estimate, outlier detection and the breaker; a
    /// retryable failure is retried after a backoff while the retry budget and the deadline allow.
    pub async fn send(self) -> Result<Response, MeshError> {
        let service = match &self.client.service {
            Ok(s) => s.clone(),
            Err(name) => {
                return Err(MeshError::new(
                    ErrorKind::UnknownService,
                    name.clone(),
                    "no such service",
                ));
            }
        };
        let name = service.name.clone();
        let fail =
            |kind, detail: &dyn std::fmt::Display| MeshError::new(kind, name.clone(), detail);
        if let Some(e) = &self.error {
            return Err(fail(ErrorKind::InvalidRequest, e));
        }
        let ctx = self.client.ctx.clone();
        let pq: PathAndQuery = self.path.parse().map_err(|e| {
            fail(
                ErrorKind::InvalidRequest,
                &format_args!("path {:?}: {e}", self.path),
            )
        })?;

        let mut headers = ctx.forward.clone();
        let mut own = self.headers;
        strip_hop_by_hop(&mut own);
        for (k, v) in own.drain() {
            if let Some(k) = k {
                headers.insert(k, v);
            }
        }
        headers.insert(REQUEST_ID, ctx.request_id.clone());
        if let Some(ts) = &ctx.trace.tracestate {
            headers.insert(TRACESTATE, ts.clone());
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, service.user_agent.clone());
        }
        let key = self.hash_key.or_else(|| match &service.hash_key {
            Some(HashKey::Header(h)) => headers
                .get(h)
                .map(|v| crate::balancer::hash_bytes(v.as_bytes())),
            _ => None,
        });
        let body = self.body.unwrap_or_default();
        let method = self.method;

        if service.in_flight.load(Ordering::Relaxed) >= service.max_in_flight {
            return Err(fail(ErrorKind::Overloaded, &"max_in_flight reached"));
        }
        let _in_flight = Counted::enter(&service.in_flight);
        if let Some(r) = &service.retry {
            r.budget.deposit();
        }
        let retry = service
            .retry
            .as_ref()
            .filter(|r| r.allows(&method, body.len()));
        let max_attempts = retry.map_or(1, |r| r.max_attempts);
        let mut tried: Vec<usize> = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The attempt gets the service's timeout, capped by what is left of the request's deadline.
            let now = Instant::now();
            let mut budget = self
                .timeout
                .map_or(service.timeout, |t| t.min(service.timeout));
            let mut capped_by_deadline = false;
            if let Some(deadline) = ctx.deadline {
                let left = deadline.saturating_duration_since(now);
                if left < Duration::from_millis(1) {
                    return Err(fail(
                        ErrorKind::Deadline,
                        &"no time left before the deadline",
                    ));
                }
                if left <= budget {
                    budget = left;
                    capped_by_deadline = true;
                }
            }
            let Some(i) = service.balancer.pick(&service.endpoints, &tried, key) else {
                return Err(fail(ErrorKind::NoEndpoint, &"no healthy endpoint"));
            };
            // The breaker's fast failures never reach an endpoint, so they never count toward ejection.
            let admission = match &service.breaker {
                Some(b) => match b.admit() {
                    Some(a) => Some(a),
                    None => return Err(fail(ErrorKind::CircuitOpen, &"circuit open")),
                },
                None => None,
            };
            let endpoint = &service.endpoints[i];
            tried.push(i);

            let uri = Uri::builder()
                .scheme("http")
                .authority(endpoint.authority.clone())
                .path_and_query(pq.clone())
                .build()
                .map_err(|e| fail(ErrorKind::InvalidRequest, &e))?;
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = headers.clone();
            let h = req.headers_mut();
            h.insert(TRACEPARENT, ctx.trace.child_traceparent().0);
            if let Some(deadline) = ctx.deadline {
                let ms = deadline.saturating_duration_since(now).as_millis();
                h.insert(
                    DEADLINE_HEADER,
                    HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
                );
            }

            let outcome = {
                let _guard = InFlight::enter(endpoint);
                let max = service.max_response;
                let call = async {
                    let res = service
                        .client
                        .request(req)
                        .await
                        .map_err(|e| classify(&e))?;
                    let (parts, body) = res.into_parts();
                    let body = Limited::new(body, max).collect().await.map_err(|e| {
                        if e.downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some()
                        {
                            (
                                ErrorKind::Decode,
                                format!("response larger than {max} bytes"),
                            )
                        } else {
                            (ErrorKind::Reset, format!("reading the body: {e}"))
                        }
                    })?;
                    Ok::<_, (ErrorKind, String)>(Response {
                        status: parts.status,
                        headers: parts.headers,
                        body: body.to_bytes(),
                    })
                };
                match tokio::time::timeout(budget, call).await {
                    Ok(r) => r,
                    Err(_) if capped_by_deadline => Err((
                        ErrorKind::Deadline,
                        format!("deadline reached after {budget:?}"),
                    )),
                    Err(_) => Err((ErrorKind::Timeout, format!("no response within {budget:?}"))),
                }
            };

            // One classification feeds every policy.
            let done = Instant::now();
            endpoint.observe(done.saturating_duration_since(now), done);
            let endpoint_failed = match &outcome {
                Ok(res) => Failure::of_status(res.status).is_some(),
                Err(_) => true,
            };
            if endpoint_failed {
                endpoint.failures.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(o) = &service.outlier {
                o.record(&service.endpoints, i, endpoint_failed, done);
            }
            if let (Some(b), Some(a)) = (&service.breaker, admission) {
                b.record(a, !endpoint_failed);
            }

            let wait = retry.and_then(|r| {
                let retryable = match &outcome {
                    Ok(res) => r.retries_status(res.status.as_u16()),
                    Err((kind, _)) => Failure::of_error(*kind).is_some_and(|f| r.retries(f)),
                };
                if !retryable || attempt >= max_attempts {
                    return None;
                }
                // A downstream's retry-after (on 503 and 429) replaces the backoff when it fits.
                let wait = match &outcome {
                    Ok(res) if matches!(res.status.as_u16(), 429 | 503) => {
                        retry_after(&res.headers)
                    }
                    _ => None,
                }
                .unwrap_or_else(|| r.backoff(attempt));
                let fits = ctx.deadline.is_none_or(|d| {
                    d.saturating_duration_since(done) > wait + Duration::from_millis(1)
                });
                (fits && r.budget.withdraw()).then_some(wait)
            });
            match (wait, outcome) {
                (Some(wait), _) => {
                    service.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(service = %name, attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                (None, Ok(res)) => return Ok(res),
                (None, Err((kind, detail))) => {
                    return Err(fail(kind, &format_args!("{detail} ({})", endpoint.addr)));
                }
            }
        }
    }

    /// Sends the request; a non-2xx status is an error ([`ErrorKind::Status`]).
    pub async fn send_ok(self) -> Result<Response, MeshError> {
        let name = self.service_name();
        let res = self.send().await?;
        if res.status.is_success() {
            Ok(res)
        } else {
            Err(MeshError::new(
                ErrorKind::Status(res.status),
                name,
                format_args!("status {}", res.status),
            ))
        }
    }

    /// Sends the request and parses a 2xx JSON body into `T`.
    pub async fn send_json<T: DeserializeOwned>(self) -> Result<T, MeshError> {
        let name = self.service_name();
        self.send_ok().await?.json(&name)
    }

    fn service_name(&self) -> String {
        match &self.client.service {
            Ok(s) => s.name.to_string(),
            Err(n) => n.to_string(),
        }
    }
}

/// `retry-after` in seconds (the HTTP-date form is not honoured).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// Counts a call in flight on a service for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request in flight on an endpoint for as long as it lives.
struct InFlight<'a>(&'a Endpoint);

impl<'a> InFlight<'a> {
    fn enter(e: &'a Endpoint) -> Self {
        e.in_flight.fetch_add(1, Ordering::Relaxed);
        e.requests.fetch_add(1, Ordering::Relaxed);
        Self(e)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which kind of failure a client error is.
fn classify(e: &hyper_util::client::legacy::Error) -> (ErrorKind, String) {
    if e.is_connect() {
        return (ErrorKind::Connect, format!("{e:?}"));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_status() || h.is_parse_too_large())
        {
            return (ErrorKind::Decode, format!("malformed HTTP response: {h}"));
        }
        source = s.source();
    }
    (ErrorKind::Reset, format!("{e:?}"))
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
