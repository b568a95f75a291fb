//! golden-web: the BFF of the web frontend. The home page is one Rust handler, for signed-in users,
//! that fans out to three services through the embedded mesh and degrades when an optional one fails; the
//! public catalog route is declared in `bff.toml`. The embedded gateway in front of both sets deadlines,
//! sheds load, answers CORS for the web origin and verifies JWTs (`[edge.cors]`, `[edge.auth.jwt]`).
//!
//! `app` is the whole BFF: `main.rs` serves it, the tests and `examples/dev.rs` start it against stubs.

use bff::prelude::*;

#[derive(Deserialize)]
struct User {
    profile: Profile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    name: String,
    avatar: Avatar,
    favorite_category: String,
}

#[derive(Deserialize)]
struct Avatar {
    large: String,
}

#[derive(Deserialize, Serialize)]
struct Order {
    id: String,
    status: String,
    total: Value,
}

#[derive(Deserialize)]
struct Recommendations {
    items: Vec<Value>,
}

/// `GET /api/home`: everything the signed-in user's home page shows, in one round trip from the browser.
/// The user is the subject of the verified token, never a parameter the browser could change.
///
/// The profile is required (no page without it). Orders and recommendations are optional: when one
/// fails, its key is `null`, `_errors` says why and `x-bff-partial: true` is set, as declarative routes
/// do. Recommendations need the profile's favourite category, so they run after it while the orders run
/// alongside both: the page takes the longer of the two chains, not the sum of three calls.
pub async fn home(mesh: Mesh, claims: Claims) -> bff::Result<Response> {
    let user_id = claims.sub().ok_or_else(BffError::unauthenticated)?;
    let (users, orders, catalog) = (
        mesh.service("users"),
        mesh.service("orders"),
        mesh.service("catalog"),
    );
    let profile_then_picks = async {
        // `path!` percent-encodes each value as one segment: no value can add a segment or a query.
        let user: User = users.get(path!("/users/{}", user_id)).send_json().await?;
        let picks = catalog
            .get(path!("/recommendations/{}", user.profile.favorite_category))
            .send_json::<Recommendations>()
            .await;
        Ok::<_, MeshError>((user.profile, picks))
    };
    let recent_orders = orders
        .get("/orders")
        .query(&[("userId", user_id)])
        .send_json::<Vec<Order>>();
    let (head, recent_orders) = tokio::join!(profile_then_picks, recent_orders);
    let (profile, picks) = head?; // required: its failure is the response (502/503/504 as JSON)

    let mut partial = Partial::new(); // optional parts: `null`, an `_errors` entry, `x-bff-partial`
    let orders = partial.optional("orders", recent_orders);
    let picks = partial.optional("recommendations", picks.map(|r| r.items));
    Ok(partial.json(json!({
        "user": { "name": profile.name, "avatar": profile.avatar.large },
        "orders": orders,
        "recommendations": picks,
    })))
}

/// The BFF: the routes of this crate on an app built from `config` (whose `[[routes]]` join them).
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    let signed_in = Policy::new().auth(AuthKind::Jwt);
    Ok(App::new(config)?.route_with("/api/home", signed_in, get(home)))
}
