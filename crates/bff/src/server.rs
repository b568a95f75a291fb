use crate::{App, StartError, conn};
use axum::{Router, body::Body, extract::ConnectInfo};
use bff_config::{ConfigErrors, Validated};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use std::{
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tower::ServiceExt;

/// A running BFF: its public and admin listeners, and what a reload swaps.
pub struct Server {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    handle: ShutdownHandle,
    reload: ReloadHandle,
    public_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    admin_stop: watch::Sender<bool>,
    reloader: JoinHandle<()>,
}

/// Starts the drain of a [`Server`] from anywhere (tests, signal handlers).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
    drain_delay: Duration,
}

impl ShutdownHandle {
    /// Begins the drain: `/readyz` turns 503 at once; after `bff.drain_delay` (while load balancers
    /// notice) the public listener stops accepting; in-flight requests finish within `shutdown_grace`.
    pub fn shutdown(&self) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let stop = self.stop.clone();
        let delay = self.drain_delay;
        if delay.is_zero() {
            stop.send_replace(true);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                stop.send_replace(true);
            });
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Asks the server to reload its config file (what `POST /admin/reload` and SIGHUP do). A server whose
/// config was not loaded from a file answers every reload with [`ReloadError::NotReloadable`].
#[derive(Clone, Debug)]
pub struct ReloadHandle(mpsc::Sender<ReloadRequest>);

impl ReloadHandle {
    /// Re-reads and validates the config; applies it when valid. `Ok(version)`, or every error; a refused
    /// config leaves the running one in place.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| ReloadError::Stopping)?;
        rx.await.map_err(|_| ReloadError::Stopping)?
    }
}

/// Why a reload was not applied; the running config stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("the server is stopping")]
    Stopping,
    #[error("{NOT_RELOADABLE}")]
    NotReloadable,
    /// The new config was refused: every error, as [`StartError`] tells it.
    #[error(transparent)]
    Refused(#[from] StartError),
}

/// Why a BFF built from an in-memory config cannot reload.
pub(crate) const NOT_RELOADABLE: &str = "this BFF was built from an in-memory config (App::from_toml, or a Config made in code or \
     loaded from a text), not from a file: there is no file to load again";

/// The routers being served; a reload swaps them, requests in flight keep the ones they started with.
pub(crate) struct Routers {
    public: RwLock<crate::app::PublicService>,
    admin: RwLock<Router>,
}

/// Whether the BFF is draining, and the config version; read by the admin endpoints.
#[derive(Clone, Debug)]
pub(crate) struct ServerState {
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) version: Arc<AtomicU64>,
    pub(crate) reload: Option<ReloadHandle>,
}

/// What lives as long as one config: health checks and JWKS refresh.
struct Generation {
    app: App,
    _health_checks: bff_mesh::HealthChecks,
    _jwks: Option<AbortOnDrop>,
    _sessions: Option<AbortOnDrop>,
}

impl Generation {
    fn start(app: App) -> Self {
        Self {
            _health_checks: app.mesh().start_tasks(),
            _jwks: app.jwt_refresher(),
            _sessions: app.session_warm_up(),
            app,
        }
    }
}

/// A background task that ends with the server.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a connection may send, and how long it may take, before the BFF gives up on it.
#[derive(Clone, Copy, Debug)]
struct ConnLimits {
    header_timeout: Duration,
    max_headers: usize,
    max_header_bytes: usize,
    write_timeout: Duration,
    idle_timeout: Duration,
}

impl ConnLimits {
    fn from_config(edge: &bff_config::EdgeConfig) -> Self {
        Self {
            header_timeout: edge.header_timeout.get(),
            max_headers: edge.max_headers,
            max_header_bytes: usize::try_from(edge.max_header_bytes.bytes())
                .unwrap_or(usize::MAX)
                .max(8192),
            write_timeout: edge.write_timeout.get(),
            idle_timeout: edge.idle_timeout.get(),
        }
    }
}

impl Server {
    pub(crate) async fn bind(app: App) -> Result<Self, StartError> {
        let cfg = app.config().clone();
        let draining = Arc::new(AtomicBool::new(false));
        let version = Arc::new(AtomicU64::new(1));
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let reload = ReloadHandle(reload_tx);
        let state = ServerState {
            draining: draining.clone(),
            version: version.clone(),
            reload: app.config().origin.is_some().then(|| reload.clone()),
        };
        let limits = ConnLimits::from_config(&cfg.edge);
        let tls = match &cfg.bff.tls {
            Some(t) => Some(listener_tls(t)?),
            None => None,
        };
        let built = app.build()?;
        let routers = Arc::new(Routers {
            public: RwLock::new(built.serve),
            admin: RwLock::new(built.admin.layer(axum::Extension(state.clone()))),
        });

        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::build(format!("cannot listen on {addr}"), e))
        };
        let public_listener = bind(cfg.bff.listen).await?;
        let admin_listener = bind(cfg.bff.admin_listen).await?;
        let public_addr = public_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let (stop, stop_rx) = watch::channel(false);
        let handle = ShutdownHandle {
            stop,
            draining,
            drain_delay: cfg.bff.drain_delay.get(),
        };
        let grace = cfg.bff.shutdown_grace.get();
        let r = routers.clone();
        let public_task = tokio::spawn(accept_loop(
            public_listener,
            move || {
                r.public
                    .read()
                    .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
            },
            stop_rx,
            grace,
            limits,
            tls,
        ));
        // The admin listener outlives the public one until the drain is over, so probes see it.
        let (admin_stop, admin_stop_rx) = watch::channel(false);
        let r = routers.clone();
        let admin_task = tokio::spawn(accept_loop(
            admin_listener,
            move || {
                r.admin
                    .read()
                    .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
            },
            admin_stop_rx,
            Duration::from_millis(100),
            // The admin listener has the default limits, whatever `[edge]` says.
            ConnLimits::from_config(&bff_config::EdgeConfig::default()),
            None,
        ));
        let reloader = tokio::spawn(reload_loop(
            Generation::start(app),
            routers,
            state,
            reload_rx,
        ));
        Ok(Self {
            public_addr,
            admin_addr,
            handle,
            reload,
            public_task,
            admin_task,
            admin_stop,
            reloader,
        })
    }

    /// The public listener's address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// Waits until a [`ShutdownHandle`] starts the drain and the drain is over.
    pub async fn run(self) {
        let _ = self.public_task.await;
        self.admin_stop.send_replace(true);
        let _ = self.admin_task.await;
        self.reloader.abort();
    }

    /// Serves until SIGTERM or Ctrl-C, then drains; SIGHUP reloads the config file.
    pub async fn run_until_signal(self) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            handle.shutdown();
        });
        // Listening for SIGHUP starts now, not when a spawned task first runs.
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be handled: reload with POST /admin/reload")
            }
            Ok(mut hup) => {
                let reload = self.reload.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        match reload.reload().await {
                            Ok(v) => tracing::info!(version = v, "config reloaded (SIGHUP)"),
                            Err(e) => {
                                tracing::error!("config refused, the running one stays:\n{e}")
                            }
                        }
                    }
                });
            }
        }
        self.run().await;
        tracing::info!("stopped");
    }
}

/// A request to reload: where its outcome goes.
type ReloadRequest = oneshot::Sender<Result<u64, ReloadError>>;

/// Applies reloads one at a time: read the file (async I/O), load and validate it, build everything, then
/// swap. A config watched with `bff.watch_config` is read every second and loaded when its content
/// differs from the text last loaded (applied or refused): the text compared is the one that was loaded,
/// never a second read, so a write that lands after a load is picked up by the next check.
async fn reload_loop(
    mut current: Generation,
    routers: Arc<Routers>,
    state: ServerState,
    mut requests: mpsc::Receiver<ReloadRequest>,
) {
    let mut loaded: Option<Arc<str>> = current
        .app
        .config()
        .origin
        .as_ref()
        .map(|o| o.text().into());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let origin = current.app.config().origin.clone();
        let watch = current.app.config().bff.watch_config && origin.is_some();
        let reply = tokio::select! {
            r = requests.recv() => match r {
                Some(reply) => Some(reply),
                None => return,
            },
            _ = tick.tick(), if watch => None,
        };
        let Some(origin) = origin else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ReloadError::NotReloadable));
            }
            continue;
        };
        let text = match tokio::fs::read_to_string(origin.path()).await {
            Ok(text) => text,
            Err(e) => {
                let errors = ConfigErrors::unreadable(origin.path(), &e);
                match reply {
                    Some(reply) => {
                        tracing::error!("config refused, the running one stays:\n{errors}");
                        let _ = reply.send(Err(StartError::Config(errors).into()));
                    }
                    // Between the removal and the creation of an atomically replaced file: next check.
                    None => tracing::debug!("watched config unreadable: {errors}"),
                }
                continue;
            }
        };
        if reply.is_none() && loaded.as_deref() == Some(text.as_str()) {
            continue;
        }
        let result = origin
            .load_text(text.as_str())
            .map_err(StartError::from)
            .and_then(|config| swap(&current, &routers, &state, config));
        loaded = Some(text.into());
        let outcome = match result {
            Ok(app) => {
                current = Generation::start(app);
                let v = state.version.fetch_add(1, Ordering::SeqCst) + 1;
                current
                    .app
                    .mesh()
                    .metrics()
                    .reloads
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(version = v, "config applied");
                Ok(v)
            }
            Err(e) => {
                tracing::error!("config refused, the running one stays:\n{e}");
                Err(e.into())
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Builds the app of `config` and swaps its routers in. Returns only once both are swapped: a lock
/// poisoned by a panic elsewhere is taken over (its value is replaced whole), never skipped.
fn swap(
    current: &Generation,
    routers: &Routers,
    state: &ServerState,
    config: Validated,
) -> Result<App, StartError> {
    let old = &current.app.config().bff;
    if config.bff.listen != old.listen || config.bff.admin_listen != old.admin_listen {
        tracing::warn!("bff.listen and bff.admin_listen take effect at the next start");
    }
    let app = current.app.reconfigure(config)?;
    let built = app.build()?;
    let admin = built.admin.layer(axum::Extension(state.clone()));
    replace(&routers.public, built.serve);
    replace(&routers.admin, admin);
    Ok(app)
}

/// Replaces the value behind a lock, poisoned or not.
fn replace<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(PoisonError::into_inner) = value;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn accept_loop<S>(
    listener: TcpListener,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
    tls: Option<ListenerTls>,
) where
    S: tower::Service<
            http::Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let drain = crate::drain::Drain::default();
    // The certificate follows its files for as long as the listener accepts.
    #[cfg(feature = "tls")]
    let watch_cert = tls
        .as_ref()
        .map(|t| AbortOnDrop(tokio::spawn(t.cert.clone().watch())));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // A peer that stops answering pings is gone; an idle one is closed by `conn::drive`.
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.write_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                // Everything from here to the first complete request head has the header timeout.
                let head_deadline = tokio::time::Instant::now() + limits.header_timeout;
                let timeouts = conn::Timeouts {
                    head_deadline,
                    header: limits.header_timeout,
                    idle: limits.idle_timeout,
                    write: limits.write_timeout,
                };
                let _ = stream.set_nodelay(true);
                let activity = Arc::new(conn::Activity::default());
                let https = tls.is_some();
                let service = {
                    let (current, activity) = (current.clone(), activity.clone());
                    hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let open = activity.start();
                        let http2 = req.version() == http::Version::HTTP_2;
                        let mut req = req.map(Body::new);
                        req.extensions_mut().insert(ConnectInfo(peer));
                        if https {
                            // `x-forwarded-proto: https` downstream (the edge reads it).
                            req.extensions_mut().insert(http::uri::Scheme::HTTPS);
                        }
                        // HTTP/1 heads are counted by hyper; HTTP/2 ones here.
                        let refused = (req.headers().len() > limits.max_headers).then(too_many_headers);
                        // Each request takes the routers of the config current when it starts.
                        let service = current();
                        async move {
                            let res = match refused {
                                Some(res) => res,
                                None => service.oneshot(req).await?,
                            };
                            Ok::<_, std::convert::Infallible>(res.map(|b| conn::ConnBody::new(b, open, http2)))
                        }
                    })
                };
                let (builder, ticket) = (builder.clone(), drain.enter());
                #[cfg(feature = "tls")]
                let tls = tls.as_ref().map(|t| t.acceptor.clone());
                #[cfg(not(feature = "tls"))]
                let tls: Option<std::convert::Infallible> = tls.as_ref().map(|t| match *t {});
                tokio::spawn(async move {
                    let out = match tls {
                        None => {
                            let io = conn::TimedIo::new(stream, limits.write_timeout);
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                            conn::drive(ticket.watch(conn), activity, timeouts).await
                        }
                        #[cfg(not(feature = "tls"))]
                        Some(never) => match never {},
                        #[cfg(feature = "tls")]
                        Some(acceptor) => {
                            // The handshake is within the header timeout too: a client that stalls it is dropped.
                            let tls = match tokio::time::timeout_at(head_deadline, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => tls,
                                _ => return,
                            };
                            let io = conn::TimedIo::new(tls, limits.write_timeout);
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                            conn::drive(ticket.watch(conn), activity, timeouts).await
                        }
                    };
                    match out {
                        Some(Err(e)) => tracing::debug!(error = %e, %peer, "connection ended with an error"),
                        None => tracing::debug!(%peer, "connection closed: no complete request head in time, or idle"),
                        Some(Ok(())) => {}
                    }
                });
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    #[cfg(feature = "tls")]
    drop(watch_cert);
    if tokio::time::timeout(grace, drain.shutdown()).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace elapsed with requests still in flight"
        );
    }
}

/// 431 for a request with more than `edge.max_headers` headers (HTTP/2; hyper refuses HTTP/1 ones).
fn too_many_headers() -> axum::response::Response {
    let body = r#"{"error":{"code":"headers_too_large","message":"too many request headers"}}"#;
    http::Response::builder()
        .status(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Without the `tls` feature the public listener is cleartext (the validator refuses `[bff.tls]`, and
/// [`listener_tls`] too): there is no value of this type.
#[cfg(not(feature = "tls"))]
pub(crate) enum ListenerTls {}

#[cfg(not(feature = "tls"))]
pub(crate) fn listener_tls(_: &bff_config::ListenerTlsConfig) -> Result<ListenerTls, StartError> {
    Err(StartError::build(
        None,
        bff_config::Feature::Tls.missing(bff_config::ListenerTlsConfig::NEEDS),
    ))
}

/// The public listener's TLS: the acceptor, and its certificate that follows the files.
#[cfg(feature = "tls")]
pub(crate) struct ListenerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    cert: Arc<ListenerCert>,
}

/// The public listener's TLS acceptor (rustls with ring; HTTP/2 and HTTP/1.1 by ALPN).
#[cfg(feature = "tls")]
pub(crate) fn listener_tls(cfg: &bff_config::ListenerTlsConfig) -> Result<ListenerTls, StartError> {
    // (Paths as the loader resolved them, against the config file's folder.)
    let path = std::path::PathBuf::from;
    let cert = Arc::new(
        ListenerCert::new(path(&cfg.cert), path(&cfg.key))
            .map_err(|e| StartError::build(None, e))?,
    );
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::build("bff.tls".to_string(), e))?
    .with_no_client_auth()
    .with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ListenerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert,
    })
}

/// The public listener's certificate and key, read again when their files change (checked every
/// second): new connections get a rotated certificate without a restart, open ones keep theirs. Files
/// caught half-written (a key that does not match the certificate, a truncated PEM) are tried again at
/// the next check while the current certificate is served.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct ListenerCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

/// The public listener's certificate or key that cannot be used.
#[cfg(feature = "tls")]
#[derive(Debug, thiserror::Error)]
enum ListenerCertError {
    #[error("{key}: {}", path.display())]
    File {
        key: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("bff.tls.cert: {}: no certificate in it", .0.display())]
    NoCertificate(std::path::PathBuf),
}

/// When each file last changed, and its size.
#[cfg(feature = "tls")]
type Stamp = [Option<(std::time::SystemTime, u64)>; 2];

#[cfg(feature = "tls")]
impl ListenerCert {
    fn new(cert: std::path::PathBuf, key: std::path::PathBuf) -> Result<Self, ListenerCertError> {
        let current = RwLock::new(Arc::new(Self::load(&cert, &key)?));
        Ok(Self { cert, key, current })
    }

    fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<rustls::sign::CertifiedKey, ListenerCertError> {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let file = |key: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |e: rustls_pki_types::pem::Error| ListenerCertError::File {
                key,
                path,
                source: Box::new(e),
            }
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(file("bff.tls.cert", cert))?;
        if chain.is_empty() {
            return Err(ListenerCertError::NoCertificate(cert.to_path_buf()));
        }
        let der = PrivateKeyDer::from_pem_file(key).map_err(file("bff.tls.key", key))?;
        rustls::sign::CertifiedKey::from_der(chain, der, &rustls::crypto::ring::default_provider())
            .map_err(|e| ListenerCertError::File {
                key: "bff.tls.key",
                path: key.to_path_buf(),
                source: Box::new(e),
            })
    }

    fn stamp(&self) -> Stamp {
        [&self.cert, &self.key].map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
    }

    /// Follows the files until dropped (aborted with the listener).
    async fn watch(self: Arc<Self>) {
        let mut stamp = self.stamp();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = self.stamp();
            if now == stamp {
                continue;
            }
            match Self::load(&self.cert, &self.key) {
                Ok(key) => {
                    if let Ok(mut c) = self.current.write() {
                        *c = Arc::new(key);
                    }
                    stamp = now;
                    tracing::info!(cert = %self.cert.display(), "public listener certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %bff_telemetry::ErrorChain(&e), "public listener certificate files changed but cannot be used yet")
                }
            }
        }
    }
}

#[cfg(feature = "tls")]
impl rustls::server::ResolvesServerCert for ListenerCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(match self.current.read() {
            Ok(c) => c.clone(),
            Err(e) => e.into_inner().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tls")]
    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/tls"
        ))
        .join(name)
    }

    #[test]
    fn a_poisoned_lock_is_still_swapped() {
        let lock = Arc::new(RwLock::new(1));
        let held = lock.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.write();
            panic!("poisons the lock");
        })
        .join();
        assert!(lock.is_poisoned());
        replace(&lock, 2);
        assert_eq!(*lock.read().unwrap_or_else(PoisonError::into_inner), 2);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn listener_certificate_errors_name_the_key_and_the_file() {
        let missing = ListenerCert::new(fixture("nope.pem"), fixture("server.key"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("bff.tls.cert: ") && missing.contains("nope.pem"),
            "{missing}"
        );
        let mismatched = ListenerCert::new(fixture("server2.pem"), fixture("server.key"))
            .unwrap_err()
            .to_string();
        assert!(mismatched.starts_with("bff.tls.key: "), "{mismatched}");
        let not_a_cert = ListenerCert::new(fixture("server.key"), fixture("server.key"))
            .unwrap_err()
            .to_string();
        assert!(not_a_cert.starts_with("bff.tls.cert: "), "{not_a_cert}");
        assert!(ListenerCert::new(fixture("server.pem"), fixture("server.key")).is_ok());
    }
}
