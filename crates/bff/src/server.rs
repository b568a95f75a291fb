use crate::{App, StartError};
use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tower::ServiceExt;

/// A running BFF: its public and admin listeners.
pub struct Server {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    handle: ShutdownHandle,
    public_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    admin_stop: watch::Sender<bool>,
    _health_checks: bff_mesh::HealthChecks,
    _jwks: Option<AbortOnDrop>,
}

/// A background task that ends with the server.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a connection may send before the BFF gives up on it.
#[derive(Clone, Copy, Debug)]
struct ConnLimits {
    header_timeout: Duration,
    max_headers: usize,
    max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Starts the drain of a [`Server`] from anywhere (tests, signal handlers).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Begins the drain: `/readyz` turns 503, the public listener stops accepting, in-flight requests
    /// finish within `shutdown_grace`.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl Server {
    pub(crate) async fn bind(app: App) -> Result<Self, StartError> {
        let listen = app.config().bff.listen.clone();
        let admin_listen = app.config().bff.admin_listen.clone();
        let grace = app.config().bff.shutdown_grace.get();
        let draining = Arc::new(AtomicBool::new(false));
        let health_checks = app.mesh().start_health_checks();
        let limits = ConnLimits {
            header_timeout: app.config().edge.header_timeout.get(),
            max_headers: app.config().edge.max_headers,
            max_header_bytes: usize::try_from(app.config().edge.max_header_bytes.bytes())
                .unwrap_or(usize::MAX)
                .max(8192),
        };
        let jwks = app.jwt_refresher();
        let (public, admin, _config) = app.build()?;
        let admin = admin.layer(axum::Extension(Draining(draining.clone())));

        let bind = |addr: String| async move {
            TcpListener::bind(&addr).await.map_err(|e| {
                StartError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ))
            })
        };
        let public_listener = bind(listen).await?;
        let admin_listener = bind(admin_listen).await?;
        let public_addr = public_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let (stop, stop_rx) = watch::channel(false);
        let handle = ShutdownHandle { stop, draining };
        let public_task =
            tokio::spawn(accept_loop(public_listener, public, stop_rx, grace, limits));
        // The admin listener outlives the public one until the drain is over, so probes see it.
        let (admin_stop, admin_stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(accept_loop(
            admin_listener,
            admin,
            admin_stop_rx,
            Duration::from_millis(100),
            ConnLimits::default(),
        ));
        Ok(Self {
            public_addr,
            admin_addr,
            handle,
            public_task,
            admin_task,
            admin_stop,
            _health_checks: health_checks,
            _jwks: jwks,
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

    /// Waits until a [`ShutdownHandle`] starts the drain and the drain is over.
    pub async fn run(self) {
        let _ = self.public_task.await;
        self.admin_stop.send_replace(true);
        let _ = self.admin_task.await;
    }

    /// Serves until SIGTERM or Ctrl-C, then drains.
    pub async fn run_until_signal(self) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            handle.shutdown();
        });
        self.run().await;
        tracing::info!("stopped");
    }
}

/// Whether the BFF is draining; read by `/readyz`.
#[derive(Clone, Debug)]
pub(crate) struct Draining(pub(crate) Arc<AtomicBool>);

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

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
) {
    let graceful = GracefulShutdown::new();
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
        .max_concurrent_streams(256);
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
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req)
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace elapsed with requests still in flight"
        );
    }
}
