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
pub async fn account(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Json<Value>> {
    let users = mesh.service("users");
    let orders = mesh.service("orders");
    let (user, orders) = tokio::join!(
        users.get(format!("/users/{id}")).send_json::<User>(),
        orders
            .get("/orders")
            .query(&[("userId", &id)])
            .send_json::<Vec<Order>>(),
    );
    let user = user?; // required: its failure is the response (502/503/504 as JSON)
    let mut page = json!({ "name": user.profile.name, "email": user.profile.email });
    match orders {
        Ok(orders) => page["orders"] = json!(orders),
        Err(e) => {
            // optional: degrade, and say so the way declarative routes do
            page["orders"] = Value::Null;
            page["_errors"] = json!([{ "backend": "orders", "error": e.kind().code() }]);
        }
    }
    Ok(Json(page))
}

/// The BFF: routes of this crate on an app built from `config`.
pub fn app(config: bff::config::Config) -> Result<App, bff::StartError> {
    Ok(App::new(config)?.route("/api/account/{id}", get(account)))
}
