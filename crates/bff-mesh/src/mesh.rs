use crate::{CallContext, MeshBuildError, Service, ServiceClient, ServiceSnapshot, Tap};
use bff_config::Config;
use bff_telemetry::Metrics;
use std::{collections::HashMap, fmt, sync::Arc};

/// The embedded sidecar: every configured service, and the context of the request being served.
///
/// Cheap to clone. In a handler, take it as an extractor; each call it makes carries the request's
/// deadline, request id and trace:
///
/// ```no_run
/// # async fn f(mesh: bff_mesh::Mesh) -> Result<(), bff_mesh::MeshError> {
/// #[derive(serde::Deserialize)]
/// struct User { name: String }
/// # let id = "42";
/// let user: User = mesh.service("users").get(bff_mesh::path!("/users/{}", id)).send_json().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mesh {
    services: Arc<HashMap<String, Arc<Service>>>,
    ctx: Arc<CallContext>,
    metrics: Arc<Metrics>,
    /// Every cache its calls have used, kept across reloads.
    caches: Arc<crate::cache::CacheRegistry>,
    /// Installed on every service ([`Mesh::with_tap`]), and on those a reload builds.
    tap: Option<Arc<dyn Tap>>,
    /// The BFF's own token, for the services with `token = "client"`.
    tokens: Option<Arc<dyn crate::TokenSource>>,
}

impl Mesh {
    /// Builds every `[services.*]` of a validated config. Calls made through it have no request context
    /// until [`Mesh::with_context`] gives one.
    pub fn from_config(config: &Config) -> Result<Self, MeshBuildError> {
        Self::with_metrics(config, Arc::new(Metrics::new()))
    }

    /// Like [`Mesh::from_config`], recording into `metrics`.
    pub fn with_metrics(config: &Config, metrics: Arc<Metrics>) -> Result<Self, MeshBuildError> {
        Self::reusing(config, metrics, None)
    }

    /// Builds the services of `config`, keeping those of `previous` whose config and identity are
    /// unchanged, with their connection pools and their breaker, outlier and health state.
    pub fn reusing(
        config: &Config,
        metrics: Arc<Metrics>,
        previous: Option<&Mesh>,
    ) -> Result<Self, MeshBuildError> {
        Self::build(
            config,
            metrics,
            previous,
            previous.and_then(|p| p.tap.clone()),
        )
    }

    /// Like [`Mesh::with_metrics`], with `tap` on every service: it sees every downstream call and may
    /// answer it instead of the network (`bff record`, `bff mock`). A reload keeps it.
    pub fn with_tap(
        config: &Config,
        metrics: Arc<Metrics>,
        tap: Arc<dyn Tap>,
    ) -> Result<Self, MeshBuildError> {
        Self::build(config, metrics, None, Some(tap))
    }

    fn build(
        config: &Config,
        metrics: Arc<Metrics>,
        previous: Option<&Mesh>,
        tap: Option<Arc<dyn Tap>>,
    ) -> Result<Self, MeshBuildError> {
        // Parsed at load (`BffName`): sent as it is.
        let user_agent = config.bff.name.header_value().clone();
        let caches = previous.map(|p| p.caches.clone()).unwrap_or_default();
        let mut services = HashMap::new();
        for (name, cfg) in &config.services {
            let kept = previous
                .and_then(|p| p.services.get(name))
                .filter(|s| s.is_built_from(cfg, &user_agent))
                .cloned();
            let svc = match kept {
                Some(s) => s,
                None => {
                    let mut svc = Service::new(
                        name,
                        cfg,
                        user_agent.clone(),
                        metrics.service(name),
                        caches.clone(),
                    )
                    .map_err(|source| MeshBuildError::Service {
                        service: name.clone(),
                        source,
                    })?;
                    svc.set_tap(tap.clone());
                    Arc::new(svc)
                }
            };
            services.insert(name.clone(), svc);
        }
        Ok(Self {
            services: Arc::new(services),
            ctx: Arc::new(CallContext::detached()),
            metrics,
            caches,
            tap,
            tokens: previous.and_then(|p| p.tokens.clone()),
        })
    }

    /// Where the services with `token = "client"` get the BFF's own token from (the session crate's
    /// client-credentials cache).
    pub fn set_token_source(&mut self, source: Arc<dyn crate::TokenSource>) {
        self.tokens = Some(source);
    }

    /// This mesh, for calls made on behalf of the request that `ctx` describes.
    #[must_use]
    pub fn with_context(&self, ctx: Arc<CallContext>) -> Self {
        Self {
            services: self.services.clone(),
            ctx,
            metrics: self.metrics.clone(),
            caches: self.caches.clone(),
            tap: self.tap.clone(),
            tokens: self.tokens.clone(),
        }
    }

    /// Removes cached responses from every cache this mesh's calls have used: all of them, those of
    /// `service`, or those whose downstream path starts with `prefix` (both: those of the service with the
    /// prefix). Returns how many were removed (`POST /admin/cache/purge`).
    pub fn purge_cache(&self, service: Option<&str>, prefix: Option<&str>) -> u64 {
        self.caches
            .caches()
            .iter()
            .map(|c| c.purge(service, prefix))
            .sum()
    }

    pub fn context(&self) -> &CallContext {
        &self.ctx
    }

    /// A client of the named service. An unknown name fails when the call is sent.
    pub fn service(&self, name: &str) -> ServiceClient {
        let service = self.services.get(name).cloned();
        let tokens = match &service {
            Some(s) if s.takes_client_token() => self.tokens.clone(),
            _ => None,
        };
        ServiceClient::new(service.ok_or_else(|| name.into()), self.ctx.clone(), tokens)
    }

    pub(crate) fn service_arc(&self, name: &str) -> Option<Arc<Service>> {
        self.services.get(name).cloned()
    }

    /// The metrics registry this mesh records into (shared with the rest of the BFF).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The breaker state and ejected endpoints of every service, as Prometheus gauges.
    pub fn render_gauges(&self, out: &mut String) {
        use bff_telemetry::metrics::{esc, header};
        use std::fmt::Write;
        let snapshot = self.snapshot();
        header(
            out,
            "bff_circuit_state",
            "gauge",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        );
        for s in &snapshot {
            let _ = writeln!(
                out,
                "bff_circuit_state{{service=\"{}\"}} {}",
                esc(&s.name),
                s.circuit.as_gauge()
            );
        }
        header(
            out,
            "bff_endpoint_ejected",
            "gauge",
            "1 while an endpoint is ejected by outlier detection.",
        );
        header(
            out,
            "bff_endpoint_healthy",
            "gauge",
            "1 while an endpoint passes its health checks.",
        );
        header(
            out,
            "bff_cache_bytes",
            "gauge",
            "Bytes of responses cached, by service.",
        );
        let mut bytes = self.caches.bytes();
        for (name, s) in self.services.iter() {
            if s.has_cache() {
                bytes.entry(name.clone()).or_default();
            }
        }
        for (name, n) in &bytes {
            let _ = writeln!(out, "bff_cache_bytes{{service=\"{}\"}} {n}", esc(name));
        }
        for s in &snapshot {
            for e in &s.endpoints {
                let labels = format!(
                    "service=\"{}\",endpoint=\"{}\"",
                    esc(&s.name),
                    esc(&e.address)
                );
                let _ = writeln!(
                    out,
                    "bff_endpoint_ejected{{{labels}}} {}",
                    u8::from(e.ejected_for_ms.is_some())
                );
                let _ = writeln!(
                    out,
                    "bff_endpoint_healthy{{{labels}}} {}",
                    u8::from(e.healthy)
                );
            }
        }
    }

    /// Starts the background work of every service: its discovery, which runs as long as the service
    /// (unless it runs already: a reload keeps it with the service), and the work of this config, active
    /// health checks and the watch of TLS files, which runs until the returned guard is dropped.
    pub fn start_tasks(&self) -> HealthChecks {
        if self.answers_all() {
            return HealthChecks(Vec::new());
        }
        for s in self.services.values() {
            s.start_discovery();
        }
        HealthChecks(
            self.services
                .values()
                .flat_map(|s| s.start_tasks())
                .collect(),
        )
    }

    /// Ready when every required service is ready ([`Service::is_ready`]: an available endpoint, one that
    /// has answered when the service has a health check).
    pub fn is_ready(&self) -> bool {
        self.answers_all()
            || self
                .services
                .values()
                .all(|s| !s.is_required() || s.is_ready())
    }

    /// Whether its tap answers every call (a mock): no endpoint is ever called.
    fn answers_all(&self) -> bool {
        self.tap.as_ref().is_some_and(|t| t.answers_all())
    }

    /// Every service's state, sorted by name (for `/admin/services`).
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        let mut all: Vec<_> = self.services.values().map(|s| s.snapshot()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// The running health checks (and TLS file watches) of a mesh; dropping it stops them. Discovery is not
/// theirs: each service owns its own, dropped with it.
#[derive(Debug)]
pub struct HealthChecks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
