use crate::{
    CallContext, DEADLINE_HEADER, ErrorKind, MeshError, Service, ServiceClient,
    breaker::Permit,
    endpoint::{Endpoint, EndpointSet},
    headers::strip_hop_by_hop,
    hedge::Hedge,
    outcome::{Attempted, Failed, Outcome},
    service::HashKey,
    shield::Shield,
};
use bff_telemetry::{REQUEST_ID, TRACEPARENT, TRACESTATE};
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode,
    header::{CONTENT_TYPE, USER_AGENT},
    uri::PathAndQuery,
};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Serialize, de::DeserializeOwned};
use smallvec::SmallVec;
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::time::Instant;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

/// A downstream call being built: `mesh.service("users").get(path!("/users/{}", id)).query(&q).send_json::<T>()`.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: ServiceClient,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout: Option<Duration>,
    hash_key: Option<u64>,
    coalesce: bool,
    cache: Option<crate::Cache>,
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
    /// A call to `path`, or one that fails when sent because its path could not be built.
    pub(crate) fn new(
        client: ServiceClient,
        method: Method,
        path: Result<String, crate::PathError>,
    ) -> Self {
        let (path, error) = match path {
            Ok(p) => (p, None),
            Err(e) => (String::new(), Some(format!("path: {e}"))),
        };
        Self {
            client,
            method,
            path,
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            hash_key: None,
            coalesce: false,
            cache: None,
            error,
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

    /// Shares the call with identical GETs in flight at the same moment (same service, path and query,
    /// headers and principal): one downstream call, its outcome handed to each caller. As
    /// `coalesce = true` on the service or backend.
    pub fn coalesce(mut self) -> Self {
        self.coalesce = true;
        self
    }

    /// Answers a GET from `cache` when it holds a usable response, and stores what the service answers
    /// (instead of the service's own `[services.NAME.cache]`).
    pub fn cache(mut self, cache: &crate::Cache) -> Self {
        self.cache = Some(cache.clone());
        self
    }

    /// Sends the request and returns the response whatever its status.
    ///
    /// On the way: the service's concurrency cap, then for each attempt the deadline, the balancer (over
    /// healthy, non-ejected endpoints, another one on a retry), the circuit breaker, the attempt with its
    /// timeout; its outcome feeds the endpoint's latency estimate, outlier detection and the breaker; a
    /// retryable failure is retried after a backoff while the retry budget and the deadline allow.
    pub async fn send(self) -> Result<Response, MeshError> {
        self.prepared().await?.dispatch().await
    }

    /// Sends the request; a non-2xx status is an error ([`ErrorKind::Status`]).
    pub async fn send_ok(self) -> Result<Response, MeshError> {
        let call = self.prepared().await?;
        let res = call.dispatch().await?;
        call.check_status(res)
    }

    /// Sends the request and parses a 2xx JSON body into `T`.
    pub async fn send_json<T: DeserializeOwned>(self) -> Result<T, MeshError> {
        let call = self.prepared().await?;
        let res = call.dispatch().await?;
        call.check_status(res)?.json(call.service.name())
    }

    /// The call prepared, with the BFF's own token attached for a service with `token = "client"`.
    async fn prepared(mut self) -> Result<Prepared, MeshError> {
        let tokens = self.client.take_tokens();
        let mut call = self.prepare()?;
        if let Some(source) = tokens {
            call.client_token(&*source).await?;
        }
        Ok(call)
    }

    /// Everything about the call that can be decided before the first attempt (no await here, so that
    /// the futures of `send*` stay small).
    fn prepare(self) -> Result<Prepared, MeshError> {
        let (service, ctx) = self.client.into_parts();
        let service = match service {
            Ok(s) => s,
            Err(name) => {
                return Err(MeshError::new(
                    ErrorKind::UnknownService,
                    name,
                    "no such service",
                ));
            }
        };
        if let Some(e) = &self.error {
            return Err(MeshError::new(
                ErrorKind::InvalidRequest,
                service.shared_name().clone(),
                e,
            ));
        }
        let pq: PathAndQuery = match self.path.parse() {
            Ok(pq) => pq,
            Err(e) => {
                return Err(MeshError::new(
                    ErrorKind::InvalidRequest,
                    service.shared_name().clone(),
                    format_args!("path {:?}: {e}", self.path),
                ));
            }
        };
        let mut own = self.headers;
        if !own.is_empty() {
            strip_hop_by_hop(&mut own);
        }
        // `token = "user"`: the session's access token, when the request has a session.
        if let Some(token) = &ctx.user_token
            && service.takes_user_token()
        {
            own.insert(http::header::AUTHORIZATION, token.clone());
        }
        let key = self.hash_key.or_else(|| match service.hash_key() {
            Some(HashKey::Header(h)) => own
                .get(h)
                .or_else(|| ctx.forward.get(h))
                .map(|v| crate::balancer::hash_bytes(v.as_bytes())),
            _ => None,
        });
        let shield = service.shield(
            &self.method,
            self.body.is_some(),
            &own,
            &ctx.forward,
            self.cache,
            self.coalesce,
        );
        Ok(Prepared {
            service,
            ctx,
            method: self.method,
            pq,
            own,
            body: self.body.unwrap_or_default(),
            timeout: self.timeout,
            key,
            shield,
        })
    }
}

/// A call ready to be sent: what every attempt of it shares.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) service: Arc<Service>,
    pub(crate) ctx: Arc<CallContext>,
    pub(crate) method: Method,
    pub(crate) pq: PathAndQuery,
    /// The handler's own headers, hop-by-hop ones removed; they replace forwarded ones of the same name.
    pub(crate) own: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
    /// The `ring_hash` key.
    key: Option<u64>,
    /// The cache and coalescing in front of the service, when the call asks for them.
    pub(crate) shield: Option<Shield>,
}

impl Prepared {
    /// `token = "client"`: the BFF's own token, from its source (cached there; fetched when it expires).
    #[inline(never)]
    async fn client_token(&mut self, source: &dyn crate::TokenSource) -> Result<(), MeshError> {
        match source.token().await {
            Ok(token) => {
                self.own.insert(http::header::AUTHORIZATION, token);
                Ok(())
            }
            Err(why) => Err(self.fail(
                ErrorKind::Connect,
                format_args!("{}", bff_telemetry::ErrorChain(&why)),
            )),
        }
    }

    /// The call, through the service's tap when it has one (`bff record`, `bff mock`).
    async fn dispatch(&self) -> Result<Response, MeshError> {
        match self.service.tap() {
            None => self.untapped().await,
            // Boxed: only a recording or mocking BFF pays for the tap's state.
            Some(tap) => Box::pin(crate::tap::dispatch(self, tap)).await,
        }
    }

    /// The request body (empty when it has none).
    pub(crate) fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// The call, through its shield when it has one.
    pub(crate) async fn untapped(&self) -> Result<Response, MeshError> {
        match &self.shield {
            None => self.run().await,
            // Boxed: the shield's state would grow every call's future.
            Some(shield) => Box::pin(crate::shield::send(self, shield)).await,
        }
    }

    #[cold]
    #[inline(never)]
    fn fail(&self, kind: ErrorKind, detail: impl std::fmt::Display) -> MeshError {
        MeshError::new(kind, self.service.shared_name().clone(), detail)
    }

    /// A non-2xx status is an error ([`ErrorKind::Status`]).
    fn check_status(&self, res: Response) -> Result<Response, MeshError> {
        if res.status.is_success() {
            Ok(res)
        } else {
            Err(self.fail(
                ErrorKind::Status(res.status),
                format_args!("status {}", res.status),
            ))
        }
    }

    /// The backoff before the next attempt when `outcome` is retryable and the attempts, the deadline
    /// and the retry budget allow one.
    #[inline(never)]
    fn retry_wait(
        &self,
        r: &crate::retry::RetryPolicy,
        outcome: &Outcome,
        attempt: u32,
        max_attempts: u32,
    ) -> Option<Duration> {
        let retryable = match outcome {
            Outcome::Response(res) => r.retries_status(res.status.as_u16()),
            Outcome::Failed(failed) => r.retries_error(failed.kind),
        };
        if !retryable || attempt >= max_attempts {
            return None;
        }
        // A downstream's retry-after (on 503 and 429) replaces the backoff when it fits.
        let wait = match outcome {
            Outcome::Response(res) if matches!(res.status.as_u16(), 429 | 503) => {
                retry_after(&res.headers)
            }
            _ => None,
        }
        .unwrap_or_else(|| r.backoff(attempt));
        let fits = self.ctx.deadline.is_none_or(|d| {
            d.saturating_duration_since(Instant::now()) > wait + Duration::from_millis(1)
        });
        if !fits {
            return None;
        }
        if r.budget.withdraw() {
            Some(wait)
        } else {
            self.service.count_retry_refused();
            None
        }
    }

    /// The attempts, retries and hedges of the call.
    pub(crate) async fn run(&self) -> Result<Response, MeshError> {
        let service = &*self.service;
        let Some(_in_flight) = service.enter() else {
            return Err(refused(
                service,
                ErrorKind::Overloaded,
                "max_in_flight reached",
            ));
        };
        let retry = service.retry();
        if let Some(r) = retry {
            r.budget.deposit();
        }
        // Retries and hedges send the request again: one rule says whether it may be.
        let repeatable = crate::retry::may_repeat(retry, &self.method, self.body.len());
        let retry = retry.filter(|_| repeatable);
        let max_attempts = retry.map_or(1, |r| r.max_attempts);
        let hedge = service.hedge().filter(|_| repeatable);
        let set = service.endpoints();
        let call = Call {
            call: self,
            service,
            set: &set,
        };
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        let mut attempt = 0;
        let mut retry_reason: Option<&'static str> = None;
        loop {
            attempt += 1;
            let Some(budget) = call.budget(Instant::now()) else {
                return Err(self.fail(ErrorKind::Deadline, "no time left before the deadline"));
            };
            let Some(endpoint) = service.pick(&set, &tried, self.key) else {
                return Err(refused(
                    service,
                    ErrorKind::NoEndpoint,
                    "no healthy endpoint",
                ));
            };
            // The breaker's fast failures never reach an endpoint, so they never count toward ejection.
            let Ok(permit) = service.admit() else {
                return Err(refused(service, ErrorKind::CircuitOpen, "circuit open"));
            };
            tried.push(endpoint);
            let pick = Pick {
                endpoint,
                permit,
                budget,
            };
            let first = Try::first(attempt, retry_reason);

            let done = match hedge.and_then(|h| h.delay().map(|d| (h, d))) {
                None => Attempted {
                    endpoint,
                    outcome: call.attempt(pick, first).await,
                },
                // Boxed: the race of two attempts would double the size of every call's future.
                Some((h, delay)) => Box::pin(call.hedged(h, delay, pick, first, &mut tried)).await,
            };

            // Out of line: most calls have no retry policy, or succeed.
            match retry.and_then(|r| self.retry_wait(r, &done.outcome, attempt, max_attempts)) {
                Some(wait) => {
                    retry_reason = Some(done.outcome.retry_reason());
                    service.count_retry();
                    tracing::debug!(service = %service.name(), attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                None => {
                    return done
                        .outcome
                        .into_result(service.shared_name(), &set.list[done.endpoint].addr);
                }
            }
        }
    }
}

/// A call refused before any attempt: counted as a fast failure.
#[cold]
#[inline(never)]
fn refused(service: &Service, kind: ErrorKind, detail: &'static str) -> MeshError {
    service.refuse(Failed::new(kind, detail))
}

/// Which try of a call an attempt is, as its span says: its number, why the one before failed (a
/// retry), and whether it is a hedge (a second attempt racing the first).
#[derive(Clone, Copy, Debug)]
struct Try {
    number: u32,
    retry_reason: Option<&'static str>,
    hedge: bool,
}

impl Try {
    fn first(number: u32, retry_reason: Option<&'static str>) -> Self {
        Self {
            number,
            retry_reason,
            hedge: false,
        }
    }
}

/// The time an attempt may take: the service's timeout (or the request's shorter one), capped by what is
/// left of the deadline; `capped` says the deadline is what limits it.
#[derive(Clone, Copy, Debug)]
struct Budget {
    time: Duration,
    capped: bool,
}

/// What an attempt may go ahead with: its endpoint (`endpoints[endpoint]` of the call's set), the
/// breaker's leave and its time.
struct Pick<'a> {
    endpoint: usize,
    permit: Option<Permit<'a>>,
    budget: Budget,
}

/// One call on the endpoint set it started with.
struct Call<'a> {
    call: &'a Prepared,
    service: &'a Service,
    set: &'a EndpointSet,
}

impl<'a> Call<'a> {
    fn budget(&self, now: Instant) -> Option<Budget> {
        let mut time = self.service.timeout(self.call.timeout);
        let mut capped = false;
        if let Some(deadline) = self.call.ctx.deadline {
            let left = deadline.saturating_duration_since(now);
            if left < Duration::from_millis(1) {
                return None;
            }
            if left <= time {
                time = left;
                capped = true;
            }
        }
        Some(Budget { time, capped })
    }

    /// The first attempt, and after `delay` without an answer a second one on another endpoint; the
    /// first good outcome wins.
    async fn hedged(
        &self,
        h: &Hedge,
        delay: Duration,
        first: Pick<'a>,
        attempt: Try,
        tried: &mut SmallVec<[usize; 4]>,
    ) -> Attempted {
        let i = first.endpoint;
        let first = self.attempt(first, attempt);
        tokio::pin!(first);
        tokio::select! {
            outcome = &mut first => Attempted { endpoint: i, outcome },
            _ = tokio::time::sleep(delay) => {
                match self.hedge(h, tried) {
                    None => Attempted { endpoint: i, outcome: first.await },
                    Some(second) => {
                        tracing::debug!(service = %self.service.name(), ?delay, "hedging");
                        let j = second.endpoint;
                        let hedge = Try { hedge: true, ..attempt };
                        let second = self.attempt(second, hedge);
                        tokio::pin!(second);
                        first_good((i, first), (j, second)).await
                    }
                }
            }
        }
    }

    /// A hedge: another endpoint, the breaker's leave and the budget's; `None` when one of them says no.
    fn hedge(&self, h: &Hedge, tried: &mut SmallVec<[usize; 4]>) -> Option<Pick<'a>> {
        let svc = self.service;
        let endpoint = svc
            .pick(self.set, tried, self.call.key)
            .filter(|j| !tried.contains(j))?;
        let permit = svc.admit().ok()?;
        let budget = self.budget(Instant::now())?;
        let paid = match svc.retry() {
            Some(r) => r.budget.withdraw(),
            None => h.own_budget.withdraw(),
        };
        if !paid {
            return None;
        }
        tried.push(endpoint);
        svc.count_hedge();
        Some(Pick {
            endpoint,
            permit,
            budget,
        })
    }

    /// The headers of one attempt, built in one map sized for them: the forwarded client headers, the
    /// handler's own, then the mesh's (request id, forwarding, trace, deadline).
    fn headers(&self, start: Instant, span: Option<[u8; 8]>) -> (HeaderMap, [u8; 8]) {
        let call = self.call;
        let ctx = &*call.ctx;
        let mut h = HeaderMap::with_capacity(ctx.forward.len() + call.own.len() + 9);
        for (k, v) in &ctx.forward {
            // `forward` was filtered when it was filled; a context built by hand is held to it too.
            if !call.own.contains_key(k) && !crate::headers::is_never_forwarded(k) {
                h.append(k.clone(), v.clone());
            }
        }
        for (k, v) in &call.own {
            h.append(k.clone(), v.clone());
        }
        h.insert(REQUEST_ID, ctx.request_id.clone());
        if let Some(xff) = &ctx.forwarded_for {
            h.insert(X_FORWARDED_FOR, xff.clone());
        }
        if let Some(proto) = &ctx.forwarded_proto {
            h.insert(X_FORWARDED_PROTO, proto.clone());
        }
        if let Some(ts) = &ctx.trace.tracestate {
            h.insert(TRACESTATE, ts.clone());
        }
        // Ours unless the client's (forwarded) or the handler's is there.
        if (ctx.forward.is_empty() && call.own.is_empty()) || !h.contains_key(USER_AGENT) {
            h.insert(USER_AGENT, self.service.user_agent().clone());
        }
        let (traceparent, span_id) = match span {
            None => ctx.trace.child_traceparent(),
            Some(span) => (ctx.trace.child_traceparent_of(&span), span),
        };
        h.insert(TRACEPARENT, traceparent);
        if let Some(deadline) = ctx.deadline {
            let ms = deadline.saturating_duration_since(start).as_millis();
            h.insert(
                DEADLINE_HEADER,
                decimal(u64::try_from(ms).unwrap_or(u64::MAX)),
            );
        }
        (h, span_id)
    }

    /// One attempt, then its bookkeeping: latency, outlier detection, breaker. `attempt` is the
    /// attempt's number and, for a retry, why the one before failed.
    ///
    /// The future keeps only the wait; building the request, the bookkeeping and the span are functions
    /// of their own (the span and the timeout's error cold, off the common path).
    async fn attempt(&self, pick: Pick<'a>, attempt: Try) -> Outcome {
        let Pick {
            endpoint: i,
            permit,
            budget,
        } = pick;
        let endpoint = &self.set.list[i];
        let start = Instant::now();
        let (req, span_id) = match self.request(endpoint, start, None) {
            Ok(r) => r,
            Err(failed) => return Outcome::Failed(failed),
        };
        let wall_start = self
            .call
            .ctx
            .tracer
            .as_ref()
            .map(|_| std::time::SystemTime::now());
        let outcome = {
            let _guard = InFlight::enter(endpoint);
            // Sent now; boxed, so that the exchange's state (response head, body being read) is not
            // copied up through every future that awaits this one.
            let call = Box::pin(self.exchange(endpoint, req, span_id));
            match tokio::time::timeout_at(start + budget.time, call).await {
                Ok(r) => r,
                Err(_) => Outcome::Failed(timed_out(budget)),
            }
        };
        self.settle(i, permit, &outcome, start);
        if let Some(wall_start) = wall_start {
            self.span(i, &outcome, attempt, span_id, wall_start);
        }
        outcome
    }

    /// Sends an attempt's request and reads the response. Within the attempt's time, the request is
    /// sent again at once when the service did not answer it because of how connections work, not
    /// because it failed; the breaker, outlier detection and the retry budget never see these:
    /// - a request that the service refused without processing it, at most [`MAX_RESENDS`] times, any
    ///   method: an HTTP/2 stream above the last stream id of a graceful GOAWAY (a server closing a
    ///   connection after so many requests, as nginx does every 1,000 by default) or reset with
    ///   `REFUSED_STREAM` (RFC 9113 section 8.7 says it was not processed);
    /// - an idempotent request (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) on a connection that closed
    ///   before a whole response head, once, on a new connection: above all a kept-alive HTTP/1.1
    ///   connection that the service closed as the request went out (Node.js closes idle ones after
    ///   5 s, uvicorn after 5 s, gunicorn after 2 s, and the pool keeps them `pool_idle_timeout`, 90 s by
    ///   default), or an h2c connection that broke, as RFC 9110 section 9.2.2 allows. Another method is
    ///   not sent again: the service may have processed it; a `[retry]` policy that names it decides.
    ///
    /// A request sent again carries the deadline left at that moment.
    async fn exchange(
        &self,
        endpoint: &Endpoint,
        mut req: Request<Full<Bytes>>,
        span_id: [u8; 8],
    ) -> Outcome {
        let svc = self.service;
        let mut resent = 0;
        let mut closed_resent = false;
        loop {
            let sent = if closed_resent {
                svc.request_on_a_new_connection(req)
            } else {
                svc.request(req)
            };
            match exchange_once(sent, svc.max_response()).await {
                Exchanged::Done(outcome) => return outcome,
                Exchanged::Unprocessed(failed) if resent < MAX_RESENDS => {
                    resent += 1;
                    svc.count_resend();
                    tracing::debug!(service = %svc.name(), resent, error = %failed.detail, "sending again a request the service refused unprocessed");
                    req = match self.request(endpoint, Instant::now(), Some(span_id)) {
                        Ok((req, _)) => req,
                        Err(failed) => return Outcome::Failed(failed),
                    };
                }
                Exchanged::Unprocessed(failed) => return Outcome::Failed(failed),
                Exchanged::Closed(failed) if !closed_resent && self.call.method.is_idempotent() => {
                    closed_resent = true;
                    svc.count_resend();
                    tracing::debug!(service = %svc.name(), error = %failed.detail, "sending again an idempotent request whose connection closed before an answer");
                    req = match self.request(endpoint, Instant::now(), Some(span_id)) {
                        Ok((req, _)) => req,
                        Err(failed) => return Outcome::Failed(failed),
                    };
                }
                Exchanged::Closed(failed) => return Outcome::Failed(failed),
            }
        }
    }

    /// The request of an attempt on `endpoint`, and the span id its `traceparent` names: a new one, or
    /// `span` again when the attempt sends its request once more.
    #[inline(never)]
    fn request(
        &self,
        endpoint: &Endpoint,
        start: Instant,
        span: Option<[u8; 8]>,
    ) -> Result<(Request<Full<Bytes>>, [u8; 8]), Failed> {
        let uri = self
            .service
            .uri(endpoint, self.call.pq.clone())
            .map_err(|e| Failed::caused_by(ErrorKind::InvalidRequest, "building the uri", e))?;
        let (headers, span_id) = self.headers(start, span);
        let mut req = Request::new(Full::new(self.call.body.clone()));
        *req.method_mut() = self.call.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok((req, span_id))
    }

    /// An attempt's outcome, classified once ([`Outcome`]), fed to every policy: the service's (latency
    /// estimate, failure count, metrics, hedging, outlier detection), the request's attempt counts and
    /// the breaker.
    #[inline(never)]
    fn settle(&self, i: usize, permit: Option<Permit<'_>>, outcome: &Outcome, start: Instant) {
        self.service.settle(self.set, i, outcome, start);
        let failed = outcome.is_failure();
        let stats = &self.call.ctx.stats;
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        if failed {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(permit) = permit {
            permit.record(!failed);
        }
    }

    /// The client span of an attempt (traces exported).
    #[cold]
    #[inline(never)]
    fn span(
        &self,
        i: usize,
        outcome: &Outcome,
        attempt: Try,
        span_id: [u8; 8],
        wall_start: std::time::SystemTime,
    ) {
        let Some(tracer) = &self.call.ctx.tracer else {
            return;
        };
        let svc = self.service;
        let mut attributes = vec![
            ("bff.service", svc.name().to_string().into()),
            ("server.address", self.set.list[i].addr.to_string().into()),
            ("http.request.method", self.call.method.as_str().into()),
            ("bff.attempt", i64::from(attempt.number).into()),
            ("bff.hedge", attempt.hedge.into()),
        ];
        if let Some(r) = attempt.retry_reason {
            attributes.push(("bff.retry_reason", r.into()));
        }
        if let Some(state) = svc.circuit() {
            attributes.push(("bff.circuit", format!("{state:?}").to_lowercase().into()));
        }
        match outcome {
            Outcome::Response(res) => attributes.push((
                "http.response.status_code",
                i64::from(res.status.as_u16()).into(),
            )),
            Outcome::Failed(failed) => attributes.push(("error.type", failed.kind.code().into())),
        }
        tracer.record(bff_telemetry::Span {
            trace_id: self.call.ctx.trace.trace_id,
            span_id,
            parent_span_id: Some(self.call.ctx.trace.span_id),
            name: format!("{} {}", self.call.method, svc.name()),
            kind: bff_telemetry::SpanKind::Client,
            start: wall_start,
            end: std::time::SystemTime::now(),
            attributes,
            error: outcome.is_failure(),
        });
    }
}

/// `n` in decimal as a header value, in one allocation (`HeaderValue::from(u64)` takes two).
fn decimal(mut n: u64) -> HeaderValue {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).expect("digits are a valid header value")
}

/// The error of an attempt that ran out of time: its own timeout, or the request's deadline when that
/// is what limited it.
#[cold]
#[inline(never)]
fn timed_out(budget: Budget) -> Failed {
    if budget.capped {
        Failed::new(
            ErrorKind::Deadline,
            format!("deadline reached after {:?}", budget.time),
        )
    } else {
        Failed::new(
            ErrorKind::Timeout,
            format!("no response within {:?}", budget.time),
        )
    }
}

/// How many times an attempt sends its request again when the service refused it unprocessed.
const MAX_RESENDS: u32 = 3;

/// What one request on the wire came to: an outcome, a refusal by the service before it processed the
/// request (which may be sent again), or a connection that closed before any answer (an idempotent
/// request may be sent again).
enum Exchanged {
    Done(Outcome),
    Unprocessed(Failed),
    Closed(Failed),
}

/// One request and response on the wire: the head, then the body read whole (at most `max` bytes).
async fn exchange_once(res: hyper_util::client::legacy::ResponseFuture, max: usize) -> Exchanged {
    let res = match res.await {
        Ok(res) => res,
        Err(e) if unprocessed(&e) => {
            return Exchanged::Unprocessed(Failed::caused_by(
                ErrorKind::Reset,
                "the service refused the request unprocessed",
                e,
            ));
        }
        Err(e) if closed_before_answer(&e) => {
            return Exchanged::Closed(Failed::caused_by(
                ErrorKind::Reset,
                "the connection closed before an answer",
                e,
            ));
        }
        Err(e) => return Exchanged::Done(Outcome::Failed(classify(e))),
    };
    let (parts, body) = res.into_parts();
    Exchanged::Done(match Limited::new(body, max).collect().await {
        Ok(body) => Outcome::Response(Response {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        }),
        Err(e) => Outcome::Failed(body_failed(e, max)),
    })
}

/// Whether the service refused the request before processing it (RFC 9113 section 8.7): its HTTP/2
/// stream was above the last stream id of a GOAWAY without error, or was reset with `REFUSED_STREAM`.
#[cold]
fn unprocessed(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && ((h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR))
                    || (h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)));
        }
        source = s.source();
    }
    false
}

/// Whether the connection closed before a whole response head: it ended (an incomplete message, or a
/// TLS connection's end without `close_notify`), was reset or aborted, or broke as the request was
/// written.
#[cold]
pub fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if e.is_connect() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Why reading a response's body failed: too large, or the connection broke.
#[cold]
fn body_failed(e: Box<dyn std::error::Error + Send + Sync>, max: usize) -> Failed {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        Failed::new(
            ErrorKind::Decode,
            format!("response larger than {max} bytes"),
        )
    } else {
        Failed {
            kind: ErrorKind::Reset,
            detail: "reading the body".into(),
            cause: Some(Arc::from(e)),
        }
    }
}

/// The first good outcome of two racing attempts; a failure only when both failed (the later one then).
async fn first_good<A, B>(
    a: (usize, std::pin::Pin<&mut A>),
    b: (usize, std::pin::Pin<&mut B>),
) -> Attempted
where
    A: std::future::Future<Output = Outcome>,
    B: std::future::Future<Output = Outcome>,
{
    let (i, mut fa) = a;
    let (j, mut fb) = b;
    let (endpoint, outcome) = tokio::select! {
        out = &mut fa => if out.is_failure() { (j, fb.await) } else { (i, out) },
        out = &mut fb => if out.is_failure() { (i, fa.await) } else { (j, out) },
    };
    Attempted { endpoint, outcome }
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

/// Which kind of failure a client error is; the error itself is kept as the cause (its chain carries
/// the I/O, TLS or HTTP error that hyper-util's own message leaves out).
#[cold]
fn classify(e: hyper_util::client::legacy::Error) -> Failed {
    if e.is_connect() {
        return Failed::caused_by(ErrorKind::Connect, "connecting", e);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_status() || h.is_parse_too_large())
        {
            return Failed::caused_by(ErrorKind::Decode, "malformed HTTP response", e);
        }
        source = s.source();
    }
    Failed::caused_by(ErrorKind::Reset, "exchanging the request", e)
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_header_values() {
        for n in [0, 7, 10, 999, 1000, 123_456_789, u64::MAX] {
            assert_eq!(decimal(n), HeaderValue::from(n), "{n}");
        }
    }
}
