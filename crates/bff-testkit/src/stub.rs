use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::Value;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// A programmable downstream service on `127.0.0.1:0`. Unprogrammed paths answer 404.
///
/// ```no_run
/// # async fn t() {
/// let users = bff_testkit::Stub::start().await;
/// users.on("/users/1").json(serde_json::json!({"name": "Ada"}));
/// users.on("/slow").delay(std::time::Duration::from_secs(2)).json(serde_json::json!({}));
/// users.on("/boom").status(500);
/// users.on("/gone").reset();
/// # }
/// ```
pub struct Stub {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    connections: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    routes: Mutex<HashMap<String, Behavior>>,
    requests: Mutex<Vec<Recorded>>,
}

#[derive(Clone, Debug)]
struct Behavior {
    status: StatusCode,
    body: Bytes,
    headers: HeaderMap,
    delay: Option<Duration>,
    fault: Option<Fault>,
    rendezvous: Option<Rendezvous>,
    recorded: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::new(),
            headers: HeaderMap::new(),
            delay: None,
            fault: None,
            rendezvous: None,
            recorded: true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Reset,
    Hang,
}

/// A request the stub received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub version: http::Version,
    /// The client certificate (DER) of a TLS connection that presented one.
    pub client_cert: Option<Vec<u8>>,
    /// Path and query, as received.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Holds every request that joins it until `n` of them are waiting at once, then releases them all.
/// A route that only answers when N requests are in flight together proves they were sent concurrently.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    n: usize,
    arrived: Arc<watch::Sender<usize>>,
}

impl Rendezvous {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            arrived: Arc::new(watch::channel(0).0),
        }
    }

    /// Joins as one of the `n`: a test that makes itself the last one releases the requests held (e.g.
    /// `Rendezvous::new(2)` holds a response until the test says so, or until a second request arrives).
    pub async fn join(&self) {
        self.arrived.send_modify(|c| *c += 1);
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|c| *c >= self.n).await;
    }

    /// How many requests have arrived so far.
    pub fn arrived(&self) -> usize {
        *self.arrived.borrow()
    }
}

/// Programs one path of a [`Stub`]; every call updates the route at once.
pub struct RouteBuilder<'a> {
    stub: &'a Stub,
    path: String,
}

impl RouteBuilder<'_> {
    fn update(self, f: impl FnOnce(&mut Behavior)) -> Self {
        {
            let mut routes = self.stub.state.routes.lock().expect("stub lock");
            f(routes.entry(self.path.clone()).or_default());
        }
        self
    }

    pub fn status(self, status: u16) -> Self {
        self.update(|b| b.status = StatusCode::from_u16(status).expect("valid status"))
    }

    /// A JSON body (and its content type).
    pub fn json(self, body: Value) -> Self {
        self.update(|b| {
            b.body = serde_json::to_vec(&body).expect("json").into();
            b.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        })
    }

    pub fn body(self, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        self.update(|b| b.body = body)
    }

    pub fn header(self, name: &'static str, value: &'static str) -> Self {
        self.update(|b| {
            b.headers.insert(name, HeaderValue::from_static(value));
        })
    }

    /// Answers after `delay`.
    pub fn delay(self, delay: Duration) -> Self {
        self.update(|b| b.delay = Some(delay))
    }

    /// A body that claims to be JSON and is not.
    pub fn malformed_json(self) -> Self {
        self.update(|b| {
            b.body = Bytes::from_static(b"{\"truncated\": [1, 2");
            b.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        })
    }

    /// Resets the connection (TCP RST) instead of answering.
    pub fn reset(self) -> Self {
        self.update(|b| b.fault = Some(Fault::Reset))
    }

    /// Never answers.
    pub fn hang(self) -> Self {
        self.update(|b| b.fault = Some(Fault::Hang))
    }

    /// Answers without recording the request (not in [`Stub::requests`], [`Stub::hits`]): for health
    /// probes, which come and go on their own clock while a test counts the calls its requests made.
    pub fn unrecorded(self) -> Self {
        self.update(|b| b.recorded = false)
    }

    /// Answers only once the rendezvous is complete.
    pub fn rendezvous(self, r: &Rendezvous) -> Self {
        let r = r.clone();
        self.update(|b| b.rendezvous = Some(r))
    }
}

impl Stub {
    /// Starts a stub on `127.0.0.1:0`, speaking HTTP/1.1 and h2c.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a stub on `addr`: DNS discovery tests put several stubs on one port of `127.0.0.1`,
    /// `127.0.0.2`, ... (the name's addresses share the port). Panics when `addr` is taken.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind stub on {addr}: {e}"));
        let addr = listener.local_addr().expect("stub addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Closing with linger 0 sends a RST: that is how `reset()` resets.
                let _ = stream.set_zero_linger();
                st.connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let st = st.clone();
                let service = hyper::service::service_fn(move |req| handle(st.clone(), None, req));
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// A stub speaking TLS with `cert`/`key` (PEM files); with `client_ca`, it requires a client certificate
    /// signed by that CA and refuses the handshake without one.
    pub async fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Self {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocols");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).expect("ca") {
                    roots.add(c.expect("ca")).expect("ca");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (acceptor, st, builder) = (acceptor.clone(), st.clone(), builder.clone());
                tokio::spawn(async move {
                    // A refused handshake (no or bad client certificate) is counted, not served.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        st.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    let service = hyper::service::service_fn(move |req| {
                        handle(st.clone(), cert.clone(), req)
                    });
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// TLS handshakes the stub refused.
    pub fn refused_handshakes(&self) -> usize {
        self.state.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as a service endpoint in a config.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Programs the answer to `path` (matched without the query string).
    pub fn on(&self, path: &str) -> RouteBuilder<'_> {
        RouteBuilder {
            stub: self,
            path: path.to_string(),
        }
    }

    /// Whether `path` has been programmed.
    pub(crate) fn programmed(&self, path: &str) -> bool {
        self.state
            .routes
            .lock()
            .expect("stub lock")
            .contains_key(path)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("stub lock").clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests received on `path` (without the query string).
    pub fn hits(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.uri.split('?').next() == Some(path))
            .count()
    }

    /// Waits until `path` was requested at least `n` times; panics when that takes over
    /// [`REQUEST_DEADLINE`](crate::REQUEST_DEADLINE) (a request that never reaches the stub fails the
    /// test instead of hanging it). On real time only: on tokio's paused time the clock jumps whenever
    /// the runtime waits for I/O.
    pub async fn wait_for_hits(&self, path: &str, n: usize) {
        let reached = crate::eventually(|| async { self.hits(path) >= n }).await;
        assert!(
            reached,
            "{path} was requested {} times, not {n}",
            self.hits(path)
        );
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct StubReset;

impl std::fmt::Display for StubReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset by the stub")
    }
}

impl std::error::Error for StubReset {}

async fn handle(
    state: Arc<State>,
    client_cert: Option<Vec<u8>>,
    req: http::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, StubReset> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/".into(), |p| p.to_string());
    let path = parts.uri.path().to_string();
    let behavior = state.routes.lock().expect("stub lock").get(&path).cloned();
    if behavior.as_ref().is_none_or(|b| b.recorded) {
        state.requests.lock().expect("stub lock").push(Recorded {
            method: parts.method,
            version: parts.version,
            client_cert,
            uri,
            headers: parts.headers,
            body,
        });
    }
    let Some(b) = behavior else {
        let mut res = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"no such stub route\"}",
        )));
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    };
    if let Some(r) = &b.rendezvous {
        r.join().await;
    }
    if let Some(d) = b.delay {
        tokio::time::sleep(d).await;
    }
    match b.fault {
        Some(Fault::Reset) => return Err(StubReset),
        Some(Fault::Hang) => std::future::pending::<()>().await,
        None => {}
    }
    let mut res = Response::new(Full::new(b.body));
    *res.status_mut() = b.status;
    *res.headers_mut() = b.headers;
    Ok(res)
}
