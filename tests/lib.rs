//! Shared pieces of the end-to-end tests: configs around testkit stubs.

/// A config with services `users`, `orders` and `catalog` at the given endpoints, and `routes` appended.
pub fn config(users: &str, orders: &str, catalog: &str, routes: &str) -> String {
    format!(
        r#"
[bff]
name = "e2e-bff"

[edge]
request_timeout = "5s"

[services.users]
endpoints = ["{users}"]
timeout = "2s"

[services.orders]
endpoints = ["{orders}"]
timeout = "300ms"

[services.catalog]
endpoints = ["{catalog}"]
timeout = "2s"

{routes}
"#
    )
}

/// `bff_discovery_failures_total` of `service` in the BFF's `/metrics`.
pub async fn discovery_failures(bff: &bff_testkit::TestBff, service: &str) -> u64 {
    service_counter(bff, "bff_discovery_failures_total", service).await
}

/// The counter `name` of `service` in the BFF's `/metrics`.
pub async fn service_counter(bff: &bff_testkit::TestBff, name: &str, service: &str) -> u64 {
    let text = bff.admin_text("/metrics").await;
    let prefix = format!("{name}{{service=\"{service}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

/// A raw HTTP/1.1 keep-alive service on `127.0.0.1:0` that shows what happens to its connections: how
/// many it accepted and how many the client closed, and every request it read. It answers each request
/// with `{"n": <request number>}`, except as [`Close`] says.
pub mod h1 {
    use std::sync::{Arc, Mutex};
    use tokio::io::{
        AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    };
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    /// When the service closes a connection itself.
    #[derive(Clone, Copy, PartialEq)]
    pub enum Close {
        /// Never: each connection lives as long as the client keeps it.
        Never,
        /// On each of its first `of_first` connections, it reads the second request and closes the
        /// connection without an answer: a server whose keep-alive timer fired as a request went out
        /// on the connection (Node.js and uvicorn close idle connections after 5 s). The first requests
        /// of those connections are answered once all of them have come, so that a client sending
        /// that many at once holds that many connections.
        SecondRequest { of_first: usize },
    }

    pub struct Server {
        pub addr: String,
        /// `METHOD PATH` of every request read, those closed on included.
        pub requests: Arc<Mutex<Vec<String>>>,
        /// Connections accepted so far.
        pub connections: Arc<Mutex<usize>>,
        /// Connections the client closed (the service read their end between two requests).
        pub closed_by_client: watch::Receiver<usize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        /// Over plain TCP.
        pub async fn start(close: Close) -> Self {
            Self::serving(close, None).await
        }

        /// Over TLS with the certificate chain and key of these PEM files. A connection it closes is
        /// closed without TLS's `close_notify`, as a server's idle timer does.
        pub async fn start_tls(
            close: Close,
            cert: &std::path::Path,
            key: &std::path::Path,
        ) -> Self {
            use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
            Self::serving(
                close,
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            )
            .await
        }

        async fn serving(close: Close, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(Mutex::new(0));
            let (closed_tx, closed_by_client) = watch::channel(0);
            let closed_tx = Arc::new(closed_tx);
            let (r, c) = (requests.clone(), connections.clone());
            let closing = match close {
                Close::Never => 0,
                Close::SecondRequest { of_first } => of_first,
            };
            let together = Arc::new(tokio::sync::Barrier::new(closing.max(1)));
            let task = tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let n = {
                        let mut c = c.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    let closes = (n <= closing).then(|| together.clone());
                    let closed = closed_tx.clone();
                    let requests = r.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let ended = match tls {
                            None => serve(socket, closes, requests).await,
                            Some(tls) => match tls.accept(socket).await {
                                Ok(socket) => serve(socket, closes, requests).await,
                                Err(_) => Ended::ByClient,
                            },
                        };
                        if ended == Ended::ByClient {
                            closed.send_modify(|n| *n += 1);
                        }
                    });
                }
            });
            Self {
                addr,
                requests,
                connections,
                closed_by_client,
                task,
            }
        }

        /// Waits until the client has closed `n` connections, within `within`; false when it has not.
        pub async fn closed_by_client_within(&self, n: usize, within: std::time::Duration) -> bool {
            let mut closed = self.closed_by_client.clone();
            tokio::time::timeout(within, closed.wait_for(|c| *c >= n))
                .await
                .is_ok()
        }
    }

    #[derive(PartialEq)]
    enum Ended {
        ByClient,
        ByService,
    }

    /// Serves one connection; `closes`: the barrier its first request waits at, for a connection that
    /// closes at its second.
    async fn serve(
        socket: impl AsyncRead + AsyncWrite + Unpin,
        closes: Option<Arc<tokio::sync::Barrier>>,
        requests: Arc<Mutex<Vec<String>>>,
    ) -> Ended {
        let mut socket = BufReader::new(socket);
        for on_this in 1.. {
            // The request line, the headers up to the empty line, and a body of content-length bytes.
            let mut line = String::new();
            if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                return Ended::ByClient;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if socket.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return Ended::ByClient;
                }
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if socket.read_exact(&mut body).await.is_err() {
                return Ended::ByClient;
            }
            let n = {
                let mut r = requests.lock().unwrap();
                let mut words = line.split_whitespace();
                r.push(format!(
                    "{} {}",
                    words.next().unwrap_or(""),
                    words.next().unwrap_or("")
                ));
                r.len()
            };
            match (&closes, on_this) {
                (Some(together), 1) => {
                    together.wait().await;
                }
                // Closed, the request read and never answered.
                (Some(_), 2) => return Ended::ByService,
                _ => {}
            }
            let body = format!("{{\"n\":{n}}}");
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(body.as_bytes()).await.is_err()
            {
                return Ended::ByClient;
            }
        }
        unreachable!("a connection serves requests until it ends")
    }
}
