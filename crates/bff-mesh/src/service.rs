#[cfg(feature = "tls")]
use crate::tls::TlsFiles;
use crate::{
    CallContext, IntoPath, RequestBuilder, ServiceError,
    balancer::Balancer,
    breaker::{BreakerState, CircuitBreaker},
    discover::Discovery,
    endpoint::{EndpointSet, OutlierPolicy},
    health::HealthCheck,
    hedge::Hedge,
    retry::RetryPolicy,
};
use bff_config::{Protocol, ServiceConfig};
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

/// Where `ring_hash` finds a request's key: a header of the downstream request, or a route parameter
/// (declarative routes set it on the request).
pub(crate) use bff_config::HashKey;

/// One downstream service: its endpoints, balancer, policies and connection pool.
#[derive(Debug)]
pub struct Service {
    pub(crate) name: Arc<str>,
    endpoints: std::sync::RwLock<Arc<EndpointSet>>,
    pub(crate) balancer: Balancer,
    client: std::sync::RwLock<HttpClient>,
    /// `http` or `https` (mTLS).
    pub(crate) scheme: http::uri::Scheme,
    tls: Option<TlsFiles>,
    pub(crate) timeout: Duration,
    pub(crate) max_response: usize,
    pub(crate) user_agent: HeaderValue,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) outlier: Option<OutlierPolicy>,
    health: Option<HealthCheck>,
    discovery: Option<Discovery>,
    pub(crate) hash_key: Option<HashKey>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: usize,
    pub(crate) hedge: Option<Hedge>,
    /// Its attempts, retries and hedges, counted once: `/metrics` and the snapshot read the same.
    pub(crate) metrics: Arc<bff_telemetry::ServiceMetrics>,
    /// `coalesce = true`: every GET is coalesced.
    pub(crate) coalesce: bool,
    /// `[services.NAME.cache]`.
    pub(crate) cache: Option<crate::Cache>,
    /// Shared calls in flight (coalescing and cache fills).
    pub(crate) flights: crate::coalesce::Flights,
    /// Where the caches its calls use are registered (the mesh's, kept across reloads).
    pub(crate) caches: Arc<crate::cache::CacheRegistry>,
    /// The config it was built from: a reload keeps the service when it is unchanged.
    pub(crate) config: ServiceConfig,
    required: bool,
    protocol: Protocol,
    /// What `bff record` / `bff mock` put between this service and the network ([`crate::Tap`]).
    pub(crate) tap: Option<Arc<dyn crate::Tap>>,
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
        let client = build_client(cfg, tls.as_ref())?;
        Ok(Self {
            name: name.into(),
            balancer: Balancer::new(cfg.load_balancer),
            endpoints: std::sync::RwLock::new(Arc::new(endpoints)),
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

    /// The endpoints now (a snapshot: a call keeps the set it started with).
    pub(crate) fn endpoints(&self) -> Arc<EndpointSet> {
        self.endpoints.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Replaces the endpoints (discovery). Endpoints that remain keep their state and connections; calls
    /// in flight to a removed one finish.
    ///
    /// Discovered addresses are parsed by the config's own parser ([`bff_config::HostPort`]): what a discovery source
    /// may hand over is exactly what `endpoints` accepts.
    pub fn set_endpoints(&self, addrs: &[String]) -> Result<(), ServiceError> {
        let current = self.endpoints();
        let parsed = addrs
            .iter()
            .map(|a| {
                a.parse::<bff_config::HostPort>()
                    .map_err(|e| ServiceError::Endpoint {
                        addr: a.clone(),
                        source: e,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = EndpointSet::build(&parsed, Some(&current));
        if next.list.len() != current.list.len()
            || next
                .list
                .iter()
                .zip(&current.list)
                .any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            tracing::info!(service = %self.name, endpoints = ?addrs, "endpoints changed");
            if let Ok(mut e) = self.endpoints.write() {
                *e = Arc::new(next);
            }
        }
        Ok(())
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

    /// Sends one request with the current client (a certificate rotation swaps it; calls in flight keep
    /// theirs), without cloning it.
    pub(crate) fn request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match self.client.read() {
            Ok(c) => c.request(req),
            Err(e) => e.into_inner().request(req),
        }
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
            match build_client(&self.config, Some(&files)) {
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

    /// Its background tasks: discovery, then health checks.
    pub(crate) fn start_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .discovery
            .clone()
            .map(|d| d.spawn(self.clone()))
            .into_iter()
            .collect();
        tasks.extend(
            self.health
                .as_ref()
                .map(|h| h.spawn(self))
                .unwrap_or_default(),
        );
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
            circuit: self
                .breaker
                .as_ref()
                .map_or(BreakerState::Closed, |b| b.state()),
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

/// The pooled client of a service: HTTP/1.1 keep-alive or h2c, or TLS with the service's certificates.
fn build_client(cfg: &ServiceConfig, tls: Option<&TlsFiles>) -> Result<HttpClient, ServiceError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(cfg.connect_timeout.get()));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90));
    if cfg.protocol == Protocol::H2c {
        builder.http2_only(true);
    }
    let Some(files) = tls else {
        return Ok(HttpClient::Plain(builder.build(connector)));
    };
    tls_client(&builder, connector, cfg, files)
}

#[cfg(not(feature = "tls"))]
fn tls_client(
    _: &hyper_util::client::legacy::Builder,
    _: HttpConnector,
    _: &ServiceConfig,
    files: &TlsFiles,
) -> Result<HttpClient, ServiceError> {
    match *files {}
}

/// The pooled client of a service with `[services.NAME.tls]`.
#[cfg(feature = "tls")]
fn tls_client(
    builder: &hyper_util::client::legacy::Builder,
    mut connector: HttpConnector,
    cfg: &ServiceConfig,
    files: &TlsFiles,
) -> Result<HttpClient, ServiceError> {
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
    Ok(HttpClient::Tls(builder.build(https)))
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
    pub(crate) service: Result<Arc<Service>, Arc<str>>,
    pub(crate) ctx: Arc<CallContext>,
    /// The BFF's own token source, for a service with `token = "client"`.
    pub(crate) tokens: Option<Arc<dyn crate::TokenSource>>,
}

impl ServiceClient {
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
            Ok(s) => match &s.hash_key {
                Some(HashKey::Param(p)) => Some(p),
                _ => None,
            },
            Err(_) => None,
        }
    }
}
