//! A web BFF with one hand-written aggregation: the account page needs the user's profile (required) and
//! their recent orders (optional: the page renders without them).
//!
//! Run with: `cargo run -p web-bff -- --config examples/web-bff/bff.toml` (set `USERS_ADDR` and
//! `ORDERS_ADDR`, e.g. to the demo services that `bff demo` prints, and `WEB_ORIGIN` to the origin serving
//! `web/index.html`, the frontend that calls this BFF from the browser).

use bff::prelude::*;

#[derive(Deserialize)]
struct User {
    profile: Profile,
}

#[derive(Deserialize, Serialize)]
struct Profile {
    name: String,
    email: String,
}

#[derive(Deserialize, Serialize)]
struct Order {
    id: String,
    status: String,
}

/// `GET /api/account/{id}`: profile and orders fetched concurrently through the embedded mesh.
pub async fn account(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
    let users = mesh.service("users");
    let orders = mesh.service("orders");
    let (user, orders) = tokio::join!(
        // `path!` encodes the id as one segment: `1%3Fadmin=true` calls `/users/1%3Fadmin%3Dtrue`.
        users.get(path!("/users/{}", id)).send_json::<User>(),
        orders
            .get("/orders")
            .query(&[("userId", &id)])
            .send_json::<Vec<Order>>(),
    );
    let user = user?; // required: its failure is the response (502/503/504 as JSON)
    let mut partial = Partial::new(); // optional: `null`, `_errors`, `x-bff-partial`, as declared routes do
    let orders = partial.optional("orders", orders);
    Ok(partial
        .json(json!({ "name": user.profile.name, "email": user.profile.email, "orders": orders })))
}

/// The BFF: routes of this crate on an app built from `config`.
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    Ok(App::new(config)?.route("/api/account/{id}", get(account)))
}
