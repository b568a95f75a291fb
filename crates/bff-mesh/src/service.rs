use crate::{CallContext, RequestBuilder};
use bff_config::{Protocol, ServiceConfig};
use bytes::Bytes;
use http::{HeaderValue, Method, uri::Authority};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One downstream service: its endpoints, its balancer and its connection pool.
#[derive(Debug)]
pub struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    pub(crate) client: HttpClient,
    pub(crate) timeout: Duration,
    pub(crate) max_response: usize,
    pub(crate) user_agent: HeaderValue,
    protocol: Protocol,
}

/// One address of a service, with its live counters.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: Arc<str>,
    pub(crate) authority: Authority,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl Service {
    pub(crate) fn new(
        name: &str,
        cfg: &ServiceConfig,
        user_agent: HeaderValue,
    ) -> Result<Self, String> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|addr| {
                let authority: Authority = addr
                    .parse()
                    .map_err(|e| format!("service {name}: endpoint {addr:?}: {e}"))?;
                Ok(Endpoint {
                    addr: addr.as_str().into(),
                    authority,
                    in_flight: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
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
        Ok(Self {
            name: name.into(),
            endpoints,
            next: AtomicUsize::new(0),
            client: builder.build(connector),
            timeout: cfg.timeout.get(),
            max_response: usize::try_from(cfg.max_response.bytes()).unwrap_or(usize::MAX),
            user_agent,
            protocol: cfg.protocol,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Round robin over the endpoints.
    pub(crate) fn pick(&self) -> Option<&Endpoint> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some(&self.endpoints[i])
    }

    /// What `/admin/services` shows of this service.
    pub fn snapshot(&self) -> ServiceSnapshot {
        ServiceSnapshot {
            name: self.name.to_string(),
            protocol: match self.protocol {
                Protocol::Http1 => "http1",
                Protocol::H2c => "h2c",
            },
            load_balancer: "round_robin",
            endpoints: self
                .endpoints
                .iter()
                .map(|e| EndpointSnapshot {
                    address: e.addr.to_string(),
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    requests: e.requests.load(Ordering::Relaxed),
                    failures: e.failures.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// A service's state as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub protocol: &'static str,
    pub load_balancer: &'static str,
    pub endpoints: Vec<EndpointSnapshot>,
}

/// An endpoint's state as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointSnapshot {
    pub address: String,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
}

/// A handle to call one service within the current request's context.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    pub(crate) service: Result<Arc<Service>, Arc<str>>,
    pub(crate) ctx: Arc<CallContext>,
}

impl ServiceClient {
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path.into())
    }
    pub fn get(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::GET, path)
    }
    pub fn post(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::POST, path)
    }
    pub fn put(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PUT, path)
    }
    pub fn patch(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }
    pub fn delete(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }
}
