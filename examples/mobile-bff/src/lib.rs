//! A mobile BFF over the same demo services as `examples/web-bff`, shaped for a phone. Where a web page
//! gets whole objects, the feed gets what one screen shows, and summaries computed in Rust (an order
//! count, how many are on their way, the first picks) that no JSONPath selection can express. Its
//! policies are the mobile ones, in `bff.toml`: API keys, per-key rate limits, a short deadline, a small
//! body limit, hedged profile calls, a breaker on orders.
//!
//! Run with: `cargo run -p mobile-bff -- --config examples/mobile-bff/bff.toml` (set `USERS_ADDR`,
//! `ORDERS_ADDR` and `CATALOG_ADDR`, e.g. to the demo services that `bff demo` prints).

use bff::prelude::*;
use std::time::Duration;

/// How many picks the feed shows: one row of a phone screen.
pub const PICKS: usize = 2;

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
    small: String,
}

#[derive(Deserialize)]
struct Order {
    status: String,
}

#[derive(Deserialize)]
struct Recommendations {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    sku: String,
}

/// The orders line of the feed: "3 orders, 1 on its way".
#[derive(Serialize)]
struct OrdersSummary {
    count: usize,
    on_the_way: usize,
}

/// `GET /m/feed/{id}`: name, small avatar, an orders summary and the first picks of the user's favourite
/// category. The profile is required; orders and picks are optional (`null`, an `_errors` entry and
/// `x-bff-partial: true` when they fail). Picks wait for the profile while orders run alongside.
pub async fn feed(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
    let (users, orders, catalog) = (
        mesh.service("users"),
        mesh.service("orders"),
        mesh.service("catalog"),
    );
    let profile_then_picks = async {
        // `path!` encodes each value as one segment: an id or a category can never add a query or a segment.
        let user: User = users.get(path!("/users/{}", id)).send_json().await?;
        let picks = catalog
            .get(path!("/recommendations/{}", user.profile.favorite_category))
            .send_json::<Recommendations>()
            .await
            .map(|r| {
                r.items
                    .into_iter()
                    .take(PICKS)
                    .map(|i| i.sku)
                    .collect::<Vec<_>>()
            });
        Ok::<_, MeshError>((user.profile, picks))
    };
    let summary = async {
        let list: Vec<Order> = orders
            .get("/orders")
            .query(&[("userId", &id)])
            .send_json()
            .await?;
        Ok::<_, MeshError>(OrdersSummary {
            count: list.len(),
            on_the_way: list.iter().filter(|o| o.status == "shipped").count(),
        })
    };
    let (head, summary) = tokio::join!(profile_then_picks, summary);
    let (profile, picks) = head?;

    let mut partial = Partial::new();
    let summary = partial.optional("orders", summary);
    let picks = partial.optional("picks", picks);
    Ok(partial.json(json!({
        "name": profile.name,
        "avatar": profile.avatar.small,
        "orders": summary,
        "picks": picks,
    })))
}

/// The BFF: the feed on an app built from `config` (whose `[[routes]]` join it). Like the declared
/// routes, it needs an app key; and it answers within half a second or not at all, since a feed that
/// comes later than that is scrolled past.
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    let policy = Policy::new()
        .auth(AuthKind::ApiKey)
        .timeout(Duration::from_millis(500));
    Ok(App::new(config)?.route_with("/m/feed/{id}", policy, get(feed)))
}
