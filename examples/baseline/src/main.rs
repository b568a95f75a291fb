//! Run with: `cargo run --release -p baseline -- --listen 127.0.0.1:8090 --users 127.0.0.1:9001
//! --orders 127.0.0.1:9002 --catalog 127.0.0.1:9003` (or `BASELINE_LISTEN`, `USERS_ADDR`, `ORDERS_ADDR`,
//! `CATALOG_ADDR`); `GET /readyz` answers 200 once it listens. `scripts/bench` runs it as variant C.
//!
//! The floor of the benchmark: a hand-written BFF with axum and a pooled hyper client doing the same
//! fan-out as the bench BFFs (`GET /api/home/{id}`: user and orders concurrently, and the
//! recommendations of the user's favourite category as soon as the user is in), with no policies: no timeouts, retries, limits,
//! request ids or trace headers. What `bff` costs is measured against this.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// Everything but RFC 3986 unreserved characters is encoded: a value never adds a segment or a query.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Parser)]
#[command(about = "Hand-written baseline BFF (the benchmark floor)")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// `host:port` of the users service.
    #[arg(long, env = "USERS_ADDR")]
    users: String,
    /// `host:port` of the orders service.
    #[arg(long, env = "ORDERS_ADDR")]
    orders: String,
    /// `host:port` of the catalog service.
    #[arg(long, env = "CATALOG_ADDR")]
    catalog: String,
}

/// The pooled keep-alive client (HTTP/1.1) and the three upstream addresses.
#[derive(Clone)]
struct Upstreams {
    client: Client<HttpConnector, Empty<Bytes>>,
    users: Arc<str>,
    orders: Arc<str>,
    catalog: Arc<str>,
}

impl Upstreams {
    /// GET a 2xx JSON body; the error is a short code, as in the `_errors` of `bff`.
    async fn get_json(&self, url: String) -> Result<Value, &'static str> {
        let uri = Uri::try_from(url).map_err(|_| "invalid_request")?;
        let res = self.client.get(uri).await.map_err(|_| "connect_error")?;
        if !res.status().is_success() {
            return Err("upstream_status");
        }
        let body = res.into_body().collect().await.map_err(|_| "reset")?;
        serde_json::from_slice(&body.to_bytes()).map_err(|_| "malformed_response")
    }
}

/// `GET /api/home/{id}`: `{user, orders, recommendations}` like the declarative route of variant A.
async fn home(State(up): State<Upstreams>, Path(id): Path<String>) -> Response {
    let id = utf8_percent_encode(&id, VALUE).to_string();
    // The recommendations depend on the user only: they start as soon as the user is in, while the
    // orders may still be on their way (as the declarative route's dependency graph does).
    let user_then_recommendations = async {
        let mut user = up
            .get_json(format!("http://{}/users/{id}", up.users))
            .await?;
        let user = user.get_mut("profile").map_or(Value::Null, Value::take);
        let recommendations = match user.get("favoriteCategory").and_then(Value::as_str) {
            Some(category) => {
                let category = utf8_percent_encode(category, VALUE);
                up.get_json(format!("http://{}/recommendations/{category}", up.catalog))
                    .await
            }
            None => Err("unresolved_placeholder"),
        };
        Ok::<_, &'static str>((user, recommendations))
    };
    let (user, orders) = tokio::join!(
        user_then_recommendations,
        up.get_json(format!("http://{}/orders?userId={id}", up.orders)),
    );
    let (user, recommendations) = match user {
        Ok(pair) => pair,
        Err(code) => {
            let error = json!({ "error": { "code": "upstream_failed", "message": code } });
            return (StatusCode::BAD_GATEWAY, Json(error)).into_response();
        }
    };
    let mut errors = Vec::new();
    let orders = match orders {
        Ok(Value::Array(list)) => list
            .into_iter()
            .filter_map(|mut order| order.get_mut("id").map(Value::take))
            .collect(),
        Ok(_) => Value::Array(Vec::new()),
        Err(code) => {
            errors.push(json!({ "backend": "orders", "error": code }));
            Value::Null
        }
    };
    let recommendations = recommendations.unwrap_or_else(|code| {
        errors.push(json!({ "backend": "recommendations", "error": code }));
        Value::Null
    });
    let mut page = json!({ "user": user, "orders": orders, "recommendations": recommendations });
    if errors.is_empty() {
        Json(page).into_response()
    } else {
        page["_errors"] = Value::Array(errors);
        ([("x-bff-partial", "true")], Json(page)).into_response()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let upstreams = Upstreams {
        client,
        users: args.users.into(),
        orders: args.orders.into(),
        catalog: args.catalog.into(),
    };
    let app = Router::new()
        .route("/api/home/{id}", get(home))
        .route("/readyz", get(|| async { "ready" }))
        .with_state(upstreams);
    let listener = TcpListener::bind(&args.listen).await?;
    println!("baseline: listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
