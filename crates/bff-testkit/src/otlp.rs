//! An OTLP/HTTP trace receiver on `127.0.0.1:0` that decodes the protobuf export requests it gets, for
//! tests of trace export.

use axum::{Router, body::Bytes, extract::State, routing::post};
pub use bff_telemetry::otlp::DecodedSpan;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tokio::{net::TcpListener, task::JoinHandle};

pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<DecodedSpan>>>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<DecodedSpan>>> = Arc::default();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(spans): State<Arc<Mutex<Vec<DecodedSpan>>>>, body: Bytes| async move {
                        match bff_telemetry::otlp::decode_request(&body) {
                            Ok(decoded) => {
                                spans.lock().expect("receiver lock").extend(decoded);
                                (http::StatusCode::OK, "")
                            }
                            Err(_) => (http::StatusCode::BAD_REQUEST, "not an OTLP export request"),
                        }
                    },
                ),
            )
            .with_state(spans.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, spans, task }
    }

    /// `http://127.0.0.1:PORT`, for `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<DecodedSpan> {
        self.spans.lock().expect("receiver lock").clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
