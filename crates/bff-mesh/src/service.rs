#[cfg(feature = "tls")]
use crate::tls::TlsFiles;
use crate::{
    CallContext, IntoPath, RequestBuilder, ServiceError,
    balancer::Balancer,
    breaker::{BreakerState, CircuitBreaker, Permit},
    discover::Discovery,
    endpoint::{Endpoint, EndpointSet, Endpoints, OutlierPolicy},
    health::HealthCheck,
    hedge::Hedge,
    outcome::{Failed, Outcome},
    retry::RetryPolicy,
    shield::Shield,
};
use bff_config::{Protocol, ServiceConfig};
use bff_telemetry::metrics::CacheResult;
use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::Full;
#[cfg(feature = "tls")]
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{task::JoinHandle, time::Instant};

/// A service's connection pool: plain TCP, or TLS (mTLS) for services with `[services.*.tls]`.
///
/// Two client types rather than one TLS-capable connector for all: hyper-util boxes each request's
/// future, connection setup included, and the TLS connector's makes that future (and its copy) larger
/// on every call of a plain service.
#[derive(Clone, Debug)]
pub(crate) enum HttpClient {
    Plain(Client<HttpConnector, Full<Bytes>>),
    #[cfg(feature = "tls")]
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// Without the `tls` feature no service has TLS (the validator refuses `[services.NAME.tls]`, and
/// [`Service::new`] too): there is no value of this type.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TlsFiles {}

impl HttpClient {
    pub(crate) fn request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Plain(c) => c.request(req),
            #[cfg(feature = "tls")]
            Self::Tls(c) => c.request(req),
        }
    }
}

/// A service's clients: the pooled one every call goes through, and one that keeps no connection, for
/// a request sent again because its kept connection closed before an answer (the pool's other idle
/// connections may be closing at that moment too).
#[derive(Debug)]
pub(crate) struct Clients {
    pooled: HttpClient,
    fresh: HttpClient,
}

impl Clients {
    /// Both clients of a service, over one connector: HTTP/1.1 keep-alive or h2c, or TLS with the
    /// service's certificates (read once for both).
    fn build(cfg: &ServiceConfig, tls: Option<&TlsFiles>) -> Result<Self, ServiceError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout.get()));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout.get());
        if cfg.protocol == Protocol::H2c {
            // One connection carries every call to an endpoint. A peer gone without a FIN or RST
            // would hold it open with every call timing out on it (a timed-out stream is reset, its
            // connection kept), so a PING goes out after H2_PING_INTERVAL without a frame received,
            // idle or not, and the connection is closed when the answer is H2_PING_TIMEOUT late: the
            // next call opens a new one.
            builder
                .http2_only(true)
                .http2_keep_alive_interval(H2_PING_INTERVAL)
                .http2_keep_alive_timeout(H2_PING_TIMEOUT)
                .http2_keep_alive_while_idle(true);
        }
        let mut unpooled = builder.clone();
        unpooled.pool_max_idle_per_host(0);
        match tls {
            None => Ok(Self {
                pooled: HttpClient::Plain(builder.build(connector.clone())),
                fresh: HttpClient::Plain(unpooled.build(connector)),
            }),
            Some(files) => tls_clients([&builder, &unpooled], connector, cfg, files),
        }
    }
}

/// Where `ring_hash` finds a request's key: a header of the downstream request, or a route parameter
/// (declarative routes set it on the request).
pub(crate) use bff_config::HashKey;

/// One downstream service: its endpoints, balancer, policies and connection pool.
///
/// Its state is private: the call path reads it through the methods of "the call path's view" below
/// (pick an endpoint, admit through the breaker, enter the concurrency cap, settle an attempt, count a
/// retry), the admin API through [`Service::snapshot`].
#[derive(Debug)]
pub struct Service {
    name: Arc<str>,
    /// Shared with its discovery task, which replaces them.
    endpoints: Arc<Endpoints>,
    balancer: Balancer,
    client: std::sync::RwLock<Clients>,
    /// `http` or `https` (mTLS).
    scheme: http::uri::Scheme,
    tls: Option<TlsFiles>,
    timeout: Duration,
    max_response: usize,
    user_agent: HeaderValue,
    retry: Option<RetryPolicy>,
    breaker: Option<CircuitBreaker>,
    outlier: Option<OutlierPolicy>,
    health: Option<HealthCheck>,
    discovery: Option<Discovery>,
    /// Its discovery task once started; aborted when the service is dropped.
    discovering: std::sync::Mutex<Option<AbortOnDrop>>,
    hash_key: Option<HashKey>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    hedge: Option<Hedge>,
    /// Its attempts, retries and hedges, counted once: `/metrics` and the snapshot read the same.
    metrics: Arc<bff_telemetry::ServiceMetrics>,
    /// `coalesce = true`: every GET is coalesced.
    coalesce: bool,
    /// `[services.NAME.cache]`.
    cache: Option<crate::Cache>,
    /// Shared calls in flight (coalescing and cache fills).
    flights: crate::coalesce::Flights,
    /// Where the caches its calls use are registered (the mesh's, kept across reloads).
    caches: Arc<crate::cache::CacheRegistry>,
    /// The config it was built from: a reload keeps the service when it is unchanged.
    config: ServiceConfig,
    required: bool,
    protocol: Protocol,
    /// What `bff record` / `bff mock` put between this service and the network ([`crate::Tap`]).
    tap: Option<Arc<dyn crate::Tap>>,
}

/// A task aborted when its owner is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Service {
    pub(crate) fn new(
        name: &str,
        cfg: &ServiceConfig,
        user_agent: HeaderValue,
        metrics: Arc<bff_telemetry::ServiceMetrics>,
        caches: Arc<crate::cache::CacheRegistry>,
    ) -> Result<Self, ServiceError> {
        let cache = match &cfg.cache {
            Some(c) => {
                let cache = crate::Cache::new(c).map_err(ServiceError::Cache)?;
                cache.register(&caches);
                Some(cache)
            }
            None => None,
        };
        let name: Arc<str> = name.into();
        let endpoints = EndpointSet::build(&cfg.endpoints, None);
        #[cfg(feature = "tls")]
        let tls = cfg.tls.as_ref().map(TlsFiles::new);
        #[cfg(not(feature = "tls"))]
        let tls: Option<TlsFiles> = match cfg.tls {
            Some(_) => {
                return Err(bff_config::Feature::Tls
                    .missing(bff_config::TlsConfig::NEEDS)
                    .into());
            }
            None => None,
        };
        let client = Clients::build(cfg, tls.as_ref())?;
        Ok(Self {
            endpoints: Arc::new(Endpoints::new(name.clone(), endpoints, metrics.clone())),
            name,
            balancer: Balancer::new(cfg.load_balancer),
            client: std::sync::RwLock::new(client),
            scheme: if tls.is_some() {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            tls,
            timeout: cfg.timeout.get(),
            max_response: usize::try_from(cfg.max_response.bytes()).unwrap_or(usize::MAX),
            user_agent,
            retry: cfg.retry.as_ref().map(RetryPolicy::new),
            breaker: cfg.circuit_breaker.as_ref().map(CircuitBreaker::new),
            outlier: cfg.outlier_detection.as_ref().map(OutlierPolicy::new),
            health: cfg.health_check.clone().map(|cfg| HealthCheck { cfg }),
            discovery: cfg
                .discovery
                .clone()
                .map(Discovery::new)
                .transpose()
                .map_err(ServiceError::Discovery)?,
            discovering: Default::default(),
            hash_key: cfg.hash_key.clone(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: cfg.max_in_flight,
            hedge: cfg.hedge_after.map(Hedge::new),
            metrics,
            coalesce: cfg.coalesce,
            cache,
            flights: Default::default(),
            caches,
            config: cfg.clone(),
            required: cfg.required,
            protocol: cfg.protocol,
            tap: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether at least one endpoint may receive traffic (healthy and not ejected).
    pub fn is_available(&self) -> bool {
        let now = Instant::now();
        self.endpoints().list.iter().any(|e| e.is_available(now))
    }

    /// Replaces the endpoints (discovery). Endpoints that remain keep their state and connections; calls
    /// in flight to a removed one finish.
    ///
    /// Discovered addresses are parsed by the config's own parser ([`bff_config::HostPort`]): what a discovery source
    /// may hand over is exactly what `endpoints` accepts.
    pub fn set_endpoints(&self, addrs: &[String]) -> Result<(), ServiceError> {
        self.endpoints.set_endpoints(addrs)
    }

    /// Whether this service lets `/readyz` say ready: an endpoint may receive traffic and, when the
    /// service has a health check, one of those has passed a probe or answered a call. Without a health
    /// check nothing would ever probe a BFF that gets no traffic until it is ready, so an available
    /// endpoint is enough there.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        let reached_needed = self.health.is_some();
        self.endpoints()
            .list
            .iter()
            .any(|e| e.is_available(now) && (!reached_needed || e.was_reached()))
    }

    /// Whether `/readyz` waits for this service.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Rebuilds the client when the TLS files changed, every second.
    #[cfg(feature = "tls")]
    async fn watch_tls(self: Arc<Self>, files: TlsFiles) {
        let mut stamp = files.stamp();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = files.stamp();
            if now == stamp {
                continue;
            }
            match Clients::build(&self.config, Some(&files)) {
                Ok(client) => {
                    if let Ok(mut c) = self.client.write() {
                        *c = client;
                    }
                    stamp = now;
                    tracing::info!(service = %self.name, "TLS certificates reloaded");
                }
                // Half-written files: try again at the next tick, keep the current client meanwhile.
                Err(e) => {
                    tracing::warn!(service = %self.name, error = %e, "TLS files changed but cannot be used yet")
                }
            }
        }
    }

    /// Starts its discovery unless it runs already: the task lives as long as the service (a reload that
    /// keeps the service keeps it), not as long as the [`crate::HealthChecks`] of one config.
    pub(crate) fn start_discovery(&self) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let mut task = self.discovering.lock().unwrap_or_else(|e| e.into_inner());
        if task.as_ref().is_none_or(|t| t.0.is_finished()) {
            *task = Some(AbortOnDrop(discovery.clone().spawn(self.endpoints.clone())));
        }
    }

    /// The tasks that live as long as one config: health checks, and the watch of its TLS files.
    pub(crate) fn start_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut tasks = self
            .health
            .as_ref()
            .map(|h| h.spawn(self))
            .unwrap_or_default();
        if let Some(files) = self.tls.clone() {
            #[cfg(feature = "tls")]
            tasks.push(tokio::spawn(self.clone().watch_tls(files)));
            #[cfg(not(feature = "tls"))]
            match files {}
        }
        tasks
    }

    /// What `/admin/services` shows of this service.
    pub fn snapshot(&self) -> ServiceSnapshot {
        let now = Instant::now();
        ServiceSnapshot {
            name: self.name.to_string(),
            protocol: match self.protocol {
                Protocol::Http1 => "http1",
                Protocol::H2c => "h2c",
            },
            load_balancer: self.balancer.name(),
            required: self.required,
            available: self.is_available(),
            circuit: self.circuit().unwrap_or(BreakerState::Closed),
            retry_budget_remaining: self.retry.as_ref().map(|r| r.budget.remaining()),
            retries: self.metrics.retries.load(Ordering::Relaxed),
            hedges: self.metrics.hedges.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            endpoints: self
                .endpoints()
                .list
                .iter()
                .map(|e| {
                    let ejected_until = e
                        .outlier
                        .lock()
                        .ok()
                        .and_then(|o| o.ejected_until)
                        .filter(|u| *u > now)
                        .map(|u| u.duration_since(now).as_millis() as u64);
                    EndpointSnapshot {
                        address: e.addr.to_string(),
                        healthy: e.healthy.load(Ordering::Relaxed),
                        reached: e.was_reached(),
                        ejected_for_ms: ejected_until,
                        ewma_ms: (e.ewma_ms(now) * 1000.0).round() / 1000.0,
                        in_flight: e.in_flight.load(Ordering::Relaxed),
                        requests: e.requests.load(Ordering::Relaxed),
                        failures: e.failures.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }
}

/// The call path's view of a service: what a call reads and what it records, nothing else.
impl Service {
    /// Installs the tap its calls go through (a mesh built with [`crate::Mesh::with_tap`]).
    pub(crate) fn set_tap(&mut self, tap: Option<Arc<dyn crate::Tap>>) {
        self.tap = tap;
    }

    /// What `bff record` / `bff mock` put between it and the network.
    pub(crate) fn tap(&self) -> Option<&Arc<dyn crate::Tap>> {
        self.tap.as_ref()
    }

    /// Its name, shared (errors, coalescing keys).
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The endpoints now (a snapshot: a call keeps the set it started with).
    pub(crate) fn endpoints(&self) -> Arc<EndpointSet> {
        self.endpoints.current()
    }

    /// Whether a reload may keep this service for `cfg`: built from the same config and identity.
    pub(crate) fn is_built_from(&self, cfg: &ServiceConfig, user_agent: &HeaderValue) -> bool {
        self.config == *cfg && self.user_agent == *user_agent
    }

    /// The `user-agent` it sends unless the client's or the handler's is there.
    pub(crate) fn user_agent(&self) -> &HeaderValue {
        &self.user_agent
    }

    /// `timeout`, or the call's own when shorter.
    pub(crate) fn timeout(&self, call: Option<Duration>) -> Duration {
        call.map_or(self.timeout, |t| t.min(self.timeout))
    }

    /// The largest response body it may send.
    pub(crate) fn max_response(&self) -> usize {
        self.max_response
    }

    /// `token = "user"`: its calls carry the session's access token.
    pub(crate) fn takes_user_token(&self) -> bool {
        self.config.token == Some(bff_config::TokenMode::User)
    }

    /// `token = "client"`: its calls carry the BFF's own token.
    pub(crate) fn takes_client_token(&self) -> bool {
        self.config.token == Some(bff_config::TokenMode::Client)
    }

    /// Where `ring_hash` finds a call's key.
    pub(crate) fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    pub(crate) fn retry(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }

    pub(crate) fn hedge(&self) -> Option<&Hedge> {
        self.hedge.as_ref()
    }

    /// The shield of a call that asks for a cache (`cache`, else the service's) or coalescing (`coalesce`,
    /// else the service's). Most calls have neither: nothing is cloned nor looked up for them.
    pub(crate) fn shield(
        &self,
        method: &Method,
        has_body: bool,
        own: &http::HeaderMap,
        forward: &http::HeaderMap,
        cache: Option<crate::Cache>,
        coalesce: bool,
    ) -> Option<Shield> {
        if cache.is_none() && self.cache.is_none() && !coalesce && !self.coalesce {
            return None;
        }
        let cache = cache.or_else(|| self.cache.clone());
        Shield::of(method, has_body, own, forward, cache)
    }

    /// Its shared calls in flight.
    pub(crate) fn flights(&self) -> &crate::coalesce::Flights {
        &self.flights
    }

    /// Where the caches its calls use are registered.
    pub(crate) fn caches(&self) -> &crate::cache::CacheRegistry {
        &self.caches
    }

    /// Whether it has a cache of its own (`bff_cache_bytes` lists it even empty).
    pub(crate) fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// A call's place under `max_in_flight`, held until dropped; `None` at the cap.
    pub(crate) fn enter(&self) -> Option<Counted<'_>> {
        (self.in_flight.load(Ordering::Relaxed) < self.max_in_flight)
            .then(|| Counted::enter(&self.in_flight))
    }

    /// An endpoint of `set` for an attempt, not one of `tried` when another may receive traffic.
    pub(crate) fn pick(
        &self,
        set: &EndpointSet,
        tried: &[usize],
        key: Option<u64>,
    ) -> Option<usize> {
        self.balancer.pick(set, tried, key)
    }

    /// The breaker's leave (`Ok(None)` without a breaker); `Err` when it is open.
    pub(crate) fn admit(&self) -> Result<Option<Permit<'_>>, ()> {
        match &self.breaker {
            Some(b) => b.admit().map(Some).ok_or(()),
            None => Ok(None),
        }
    }

    /// The breaker's state, when it has one (an attempt's span).
    pub(crate) fn circuit(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(CircuitBreaker::state)
    }

    /// The URI of a request to `endpoint`.
    pub(crate) fn uri<P>(&self, endpoint: &Endpoint, pq: P) -> Result<http::Uri, http::Error>
    where
        P: TryInto<http::uri::PathAndQuery>,
        P::Error: Into<http::Error>,
    {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(endpoint.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// Sends one request with the current client (a certificate rotation swaps it; calls in flight keep
    /// theirs), without cloning it.
    pub(crate) fn request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match self.client.read() {
            Ok(c) => c.pooled.request(req),
            Err(e) => e.into_inner().pooled.request(req),
        }
    }

    /// Sends one request on a new connection, which is closed after it.
    #[cold]
    pub(crate) fn request_on_a_new_connection(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match self.client.read() {
            Ok(c) => c.fresh.request(req),
            Err(e) => e.into_inner().fresh.request(req),
        }
    }

    /// A call refused before any attempt (`fast_fail`).
    #[cold]
    pub(crate) fn refuse(&self, failed: Failed) -> crate::MeshError {
        self.metrics.record(failed.measured(), None);
        failed.into_error(&self.name, None)
    }

    /// An attempt's outcome on `set.list[i]`, fed to the service's policies: the endpoint's latency
    /// estimate and failure count, the metrics, hedging's latency and outlier detection.
    pub(crate) fn settle(&self, set: &EndpointSet, i: usize, outcome: &Outcome, start: Instant) {
        let endpoint = &set.list[i];
        let done = Instant::now();
        let latency = done.saturating_duration_since(start);
        endpoint.observe(latency, done);
        let failed = outcome.is_failure();
        self.metrics.record(outcome.measured(), Some(latency));
        if failed {
            endpoint.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            endpoint.mark_reached();
            if let Some(h) = &self.hedge {
                h.observe(latency);
            }
        }
        if let Some(o) = &self.outlier {
            o.record(&set.list, i, failed, done);
        }
    }

    /// A retry is sent.
    pub(crate) fn count_retry(&self) {
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A retry the budget refused.
    pub(crate) fn count_retry_refused(&self) {
        self.metrics.retries_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request is sent again within its attempt.
    #[cold]
    pub(crate) fn count_resend(&self) {
        self.metrics.resends.fetch_add(1, Ordering::Relaxed);
    }

    /// A hedge is sent.
    pub(crate) fn count_hedge(&self) {
        self.metrics.hedges.fetch_add(1, Ordering::Relaxed);
    }

    /// A call joined an identical one in flight.
    pub(crate) fn count_coalesced(&self) {
        self.metrics.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// How a cached call was served.
    pub(crate) fn count_cache(&self, result: CacheResult) {
        self.metrics.record_cache(result);
    }
}

/// Counts a call in flight on a service for as long as it lives.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

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

/// How long an h2c connection may stay without a frame from the service before the mesh sends a PING.
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);
/// How late the PING's answer may be before the connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(not(feature = "tls"))]
fn tls_clients(
    _: [&hyper_util::client::legacy::Builder; 2],
    _: HttpConnector,
    _: &ServiceConfig,
    files: &TlsFiles,
) -> Result<Clients, ServiceError> {
    match *files {}
}

/// The clients of a service with `[services.NAME.tls]`, pooled and not, over one TLS connector.
#[cfg(feature = "tls")]
fn tls_clients(
    [pooled, unpooled]: [&hyper_util::client::legacy::Builder; 2],
    mut connector: HttpConnector,
    cfg: &ServiceConfig,
    files: &TlsFiles,
) -> Result<Clients, ServiceError> {
    connector.enforce_http(false);
    let b = HttpsConnectorBuilder::new()
        .with_tls_config(files.client_config()?)
        .https_only();
    let b = match files.server_name()? {
        Some(name) => b.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => b,
    };
    let https = if cfg.protocol == Protocol::H2c {
        b.enable_http2().wrap_connector(connector)
    } else {
        b.enable_http1().wrap_connector(connector)
    };
    Ok(Clients {
        pooled: HttpClient::Tls(pooled.build(https.clone())),
        fresh: HttpClient::Tls(unpooled.build(https)),
    })
}

/// A service's state as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub protocol: &'static str,
    pub load_balancer: &'static str,
    /// Whether `/readyz` waits for this service.
    pub required: bool,
    /// Whether an endpoint may receive traffic now.
    pub available: bool,
    /// `closed`, `open` or `half_open`.
    pub circuit: BreakerState,
    /// Retries the budget allows now (absent without a retry policy).
    pub retry_budget_remaining: Option<u64>,
    pub retries: u64,
    /// Hedged attempts sent.
    pub hedges: u64,
    pub in_flight: usize,
    pub endpoints: Vec<EndpointSnapshot>,
}

/// An endpoint's state as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointSnapshot {
    pub address: String,
    pub healthy: bool,
    /// A health probe passed or a call succeeded at least once; `false`: nobody knows yet whether
    /// anything listens there.
    pub reached: bool,
    /// Milliseconds of ejection left, when ejected.
    pub ejected_for_ms: Option<u64>,
    /// Peak-EWMA latency estimate.
    pub ewma_ms: f64,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
}

/// A handle to call one service within the current request's context.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    /// The service, or the unknown name asked for (the call fails when sent).
    service: Result<Arc<Service>, Arc<str>>,
    ctx: Arc<CallContext>,
    /// The BFF's own token source, for a service with `token = "client"`.
    tokens: Option<Arc<dyn crate::TokenSource>>,
}

impl ServiceClient {
    pub(crate) fn new(
        service: Result<Arc<Service>, Arc<str>>,
        ctx: Arc<CallContext>,
        tokens: Option<Arc<dyn crate::TokenSource>>,
    ) -> Self {
        Self {
            service,
            ctx,
            tokens,
        }
    }

    /// The token source of a service with `token = "client"`, taken for the call being sent.
    pub(crate) fn take_tokens(&mut self) -> Option<Arc<dyn crate::TokenSource>> {
        self.tokens.take()
    }

    /// The service (or the unknown name) and the context, for the call being prepared.
    pub(crate) fn into_parts(self) -> (Result<Arc<Service>, Arc<str>>, Arc<CallContext>) {
        (self.service, self.ctx)
    }

    /// A call with any method, its path sent exactly as given (already percent-encoded): the aggregation
    /// engine's entry, which encodes its own templates. Handlers use [`get`](Self::get), [`post`](Self::post),
    /// [`put`](Self::put), [`patch`](Self::patch), [`delete`](Self::delete) or [`method`](Self::method), with
    /// a constant path or [`path!`](crate::path!).
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, Ok(path.into()))
    }
    /// A call with any method (`HEAD`, `OPTIONS`, ...) to a constant path or one built with
    /// [`path!`](crate::path!).
    pub fn method(&self, method: Method, path: impl IntoPath) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path.into_path().into_result())
    }
    /// `GET` a constant path (`"/orders"`) or one built with [`path!`](crate::path!)
    /// (`path!("/users/{}", id)`), where each value is percent-encoded as one segment.
    pub fn get(&self, path: impl IntoPath) -> RequestBuilder {
        self.method(Method::GET, path)
    }
    pub fn post(&self, path: impl IntoPath) -> RequestBuilder {
        self.method(Method::POST, path)
    }
    pub fn put(&self, path: impl IntoPath) -> RequestBuilder {
        self.method(Method::PUT, path)
    }
    pub fn patch(&self, path: impl IntoPath) -> RequestBuilder {
        self.method(Method::PATCH, path)
    }
    pub fn delete(&self, path: impl IntoPath) -> RequestBuilder {
        self.method(Method::DELETE, path)
    }

    /// Whether the service has a `ring_hash` key taken from the route parameter `name`.
    pub fn hashes_on_param(&self) -> Option<&str> {
        match &self.service {
            Ok(s) => match s.hash_key() {
                Some(HashKey::Param(p)) => Some(p),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Mesh;
    use std::{sync::Arc, time::Duration};

    fn addresses(service: &super::Service) -> Vec<String> {
        service
            .endpoints()
            .list
            .iter()
            .map(|e| e.addr.to_string())
            .collect()
    }

    /// Discovery belongs to its service, not to the health checks of one config: dropping the
    /// [`crate::HealthChecks`] guard leaves it running (a reload that keeps the service keeps its
    /// discovery), and dropping the service ends it (the task holds the endpoints, never the service).
    #[tokio::test]
    async fn discovery_outlives_the_health_checks_and_ends_with_its_service() {
        let dir = std::env::temp_dir().join(format!(
            "bff-mesh-discovery-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.json");
        std::fs::write(&file, r#"["127.0.0.1:1"]"#).unwrap();
        let text = format!("[services.s]\ndiscovery = \"file://{}\"\n", file.display());
        let config = bff_config::Loader::new()
            .with_env(Default::default())
            .load_str(&text, bff_config::Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"));
        let mesh = Mesh::from_config(&config).unwrap();
        let service = mesh.service_arc("s").unwrap();
        drop(mesh.start_tasks());

        std::fs::write(&file, r#"["127.0.0.1:2"]"#).unwrap();
        // Up to 60 s (the file is read every second): a loaded machine is slow, not wrong.
        let mut seen = false;
        for _ in 0..1200 {
            if addresses(&service) == ["127.0.0.1:2"] {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            seen,
            "discovery still runs after the health checks' guard is dropped: {:?}",
            addresses(&service)
        );

        let endpoints = Arc::downgrade(&service.endpoints);
        drop((service, mesh));
        let mut ended = false;
        for _ in 0..100 {
            if endpoints.upgrade().is_none() {
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ended, "the discovery task ended with its service");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
