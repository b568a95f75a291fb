//! The demo downstream services (users, orders, catalog) that `bff demo` and the examples put BFFs in
//! front of. Small axum apps on `127.0.0.1:0` with data made up on the fly.

use axum::{
    Json, Router,
    extract::{Path, Query},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
};
use serde_json::{Value, json};
use std::{collections::HashMap, net::SocketAddr};
use tokio::{net::TcpListener, task::JoinHandle};

/// The three demo services, running until dropped.
pub struct DemoServices {
    pub users: SocketAddr,
    pub orders: SocketAddr,
    pub catalog: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DemoServices {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

const NAMES: [&str; 5] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
];
const CATEGORIES: [&str; 3] = ["books", "music", "garden"];

fn user(id: u64) -> Value {
    let name = NAMES[(id % NAMES.len() as u64) as usize];
    json!({
        "id": id.to_string(),
        "profile": {
            "name": name,
            "email": format!("{}@example.com", name.split(' ').next().unwrap_or("user").to_lowercase()),
            "avatar": {
                "small": format!("https://cdn.example.com/avatars/{id}-64.png"),
                "large": format!("https://cdn.example.com/avatars/{id}-512.png"),
            },
            "favoriteCategory": CATEGORIES[(id % 3) as usize],
        },
        "createdAt": "2024-03-01T10:00:00Z",
    })
}

fn users_app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<String>| async move {
                match id.parse::<u64>() {
                    Ok(id) if id > 0 => Json(user(id)).into_response(),
                    _ => (
                        StatusCode::NOT_FOUND,
                        Json(json!({"error": "no such user"})),
                    )
                        .into_response(),
                }
            }),
        )
}

fn orders_app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/orders",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let uid: u64 = q.get("userId").and_then(|u| u.parse().ok()).unwrap_or(0);
                let orders: Vec<Value> = (1..=3)
                    .map(|n| {
                        json!({
                            "id": format!("o-{uid}-{n}"),
                            "total": {"amount": 1000 * n + uid, "currency": "EUR"},
                            "status": if n == 1 { "shipped" } else { "delivered" },
                            "items": n,
                        })
                    })
                    .collect();
                Json(Value::Array(orders))
            }),
        )
}

fn catalog_app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/recommendations/{category}",
            get(|Path(category): Path<String>| async move {
                let items: Vec<Value> = (1..=4)
                    .map(|n| {
                        json!({
                            "sku": format!("{category}-{n}"),
                            "title": format!("{} pick #{n}", category),
                            "price": {"amount": 999 + n * 100, "currency": "EUR"},
                            "image": format!("https://cdn.example.com/{category}/{n}.jpg"),
                        })
                    })
                    .collect();
                Json(json!({"category": category, "items": items}))
            }),
        )
}

async fn serve(app: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind demo service");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// Starts users, orders and catalog on loopback ports picked by the OS.
pub async fn start() -> DemoServices {
    let (users, a) = serve(users_app()).await;
    let (orders, b) = serve(orders_app()).await;
    let (catalog, c) = serve(catalog_app()).await;
    DemoServices {
        users,
        orders,
        catalog,
        tasks: vec![a, b, c],
    }
}
