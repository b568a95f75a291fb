//! A web BFF with one hand-written aggregation: the account page needs the user's profile (required) and
//! their recent orders (optional: the page renders without them).
//!
//! The route is described by its types (utoipa's `#[utoipa::path]`, registered with `routes!`), so its
//! OpenAPI document (`GET /admin/openapi.json`) and the typed client made of it (`bff client --openapi`)
//! follow the code: web/index.ts renders the page with that client.
//!
//! Run with: `cargo run -p web-bff -- --config examples/web-bff/bff.toml` (set `USERS_ADDR` and
//! `ORDERS_ADDR`, e.g. to the demo services that `bff demo` prints, and `WEB_ORIGIN` to the origin serving
//! `web/index.html`, the frontend that calls this BFF from the browser).

use bff::{axum, prelude::*}; // `routes!` names `axum`: the version bff serves with

#[derive(Deserialize)]
struct User {
    profile: Profile,
}

#[derive(Deserialize, Serialize)]
struct Profile {
    name: String,
    email: String,
}

/// An order as the account page lists it.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: String,
    pub status: String,
}

/// `GET /api/account/{id}`: what the account page shows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountPage {
    pub name: String,
    pub email: String,
    /// The recent orders; null when the orders service failed (the response is then partial).
    pub orders: Option<Vec<Order>>,
    /// The parts that failed, when the response is partial (`x-bff-partial: true`).
    #[serde(rename = "_errors", skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<bff::PartialError>>,
}

/// `GET /api/account/{id}`: profile and orders fetched concurrently through the embedded mesh.
#[utoipa::path(
    get,
    path = "/api/account/{id}",
    params(("id" = String, Path, description = "The user's id.")),
    responses((
        status = 200,
        description = "The account page: the profile, and the orders unless they failed.",
        body = AccountPage,
        headers(("x-bff-partial" = String, description = "`true` when the orders failed.")),
    )),
)]
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
    Ok(partial.json(AccountPage {
        name: user.profile.name,
        email: user.profile.email,
        orders,
        errors: None, // `Partial::json` adds them
    }))
}

/// The BFF: routes of this crate on an app built from `config`.
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    Ok(App::new(config)?.routes(Policy::new(), utoipa_axum::routes!(account)))
}
