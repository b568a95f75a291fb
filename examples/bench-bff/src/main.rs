//! Run with: `USERS_ADDR=127.0.0.1:9001 ORDERS_ADDR=127.0.0.1:9002 CATALOG_ADDR=127.0.0.1:9003
//! BFF_LISTEN=127.0.0.1:8080 BFF_ADMIN=127.0.0.1:9901 cargo run --release -p bench-bff -- --config
//! bench/b.toml`. `scripts/bench` runs it as variant B.
//!
//! The benchmark's aggregation written as a Rust handler on the `bff` framework, so every request still
//! passes the embedded edge and every call the embedded mesh. `GET /api/home/{id}`: user and orders
//! concurrently, and the recommendations of the user's favourite category as soon as the user is in
//! (while the orders may still be on their way), merged like the declarative
//! route of variant A (`bench/a.toml`).

use bff::{
    axum::response::{IntoResponse, Response},
    prelude::*,
};

/// `GET /api/home/{id}`: `{user, orders, recommendations}`; orders and recommendations are optional.
async fn home(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
    let users = mesh.service("users");
    let catalog = mesh.service("catalog");
    // The recommendations depend on the user only: they start as soon as the user is in, while the
    // orders may still be on their way (as the declarative route's dependency graph does).
    let user_then_recommendations = async {
        let mut user = users
            .get(path!("/users/{}", id))
            .send_json::<Value>()
            .await?;
        let user = user.get_mut("profile").map_or(Value::Null, Value::take);
        let recommendations = match user["favoriteCategory"].as_str() {
            Some(category) => catalog
                .get(path!("/recommendations/{}", category))
                .send_json::<Value>()
                .await
                .map_err(|e| e.kind().code()),
            None => Err("unresolved_placeholder"),
        };
        Ok::<_, MeshError>((user, recommendations))
    };
    let orders = mesh
        .service("orders")
        .get("/orders")
        .query(&[("userId", &id)])
        .send_json::<Value>();
    let (user, orders) = tokio::join!(user_then_recommendations, orders);
    // required: its failure is the response (502/503/504 as JSON)
    let (user, recommendations) = user?;
    let mut errors = Vec::new();
    let orders = match orders {
        Ok(Value::Array(list)) => list
            .into_iter()
            .filter_map(|mut order| order.get_mut("id").map(Value::take))
            .collect(),
        Ok(_) => Value::Array(Vec::new()),
        Err(e) => {
            errors.push(json!({ "backend": "orders", "error": e.kind().code() }));
            Value::Null
        }
    };
    let recommendations = recommendations.unwrap_or_else(|code| {
        errors.push(json!({ "backend": "recommendations", "error": code }));
        Value::Null
    });
    let mut page = json!({ "user": user, "orders": orders, "recommendations": recommendations });
    Ok(if errors.is_empty() {
        Json(page).into_response()
    } else {
        page["_errors"] = Value::Array(errors);
        ([("x-bff-partial", "true")], Json(page)).into_response()
    })
}

/// The allocator the `bff` binary uses too (A): a BFF allocates and frees many small buffers a request.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), bff::StartError> {
    bff::init_tracing();
    // The runtime `bff run` (A) uses: current-thread on one CPU.
    bff::runtime().block_on(async {
        bff::App::from_args()?
            .route("/api/home/{id}", get(home))
            .serve()
            .await
    })
}
