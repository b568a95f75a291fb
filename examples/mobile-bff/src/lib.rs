//! A mobile BFF over the same demo services as `examples/web-bff`, shaped for a phone. Where a web page
//! gets whole objects, the feed gets what one screen shows, and summaries computed in Rust (an order
//! count, how many are on their way, the first picks) that no JSONPath selection can express. Its
//! policies are the mobile ones, in `bff.toml`: API keys, per-key rate limits, a short deadline, a small
//! body limit, hedged profile calls, a breaker on orders.
//!
//! Run with: `cargo run -p mobile-bff -- --config examples/mobile-bff/bff.toml` (set `USERS_ADDR`,
//! `ORDERS_ADDR` and `CATALOG_ADDR`, e.g. to the demo services that `bff demo` prints).

use bff::{
    axum::{
        http::HeaderValue,
        response::{IntoResponse, Response},
    },
    prelude::*,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
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
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        // Checked before it goes into a downstream path: axum decodes `%3F`, which would add a query.
        return Err(BffError::bad_request("invalid user id"));
    }
    let (users, orders, catalog) = (
        mesh.service("users"),
        mesh.service("orders"),
        mesh.service("catalog"),
    );
    let profile_then_picks = async {
        let user: User = users.get(format!("/users/{id}")).send_json().await?;
        let category = utf8_percent_encode(&user.profile.favorite_category, NON_ALPHANUMERIC);
        let picks = catalog
            .get(format!("/recommendations/{category}"))
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

    let mut errors = Vec::new();
    let mut feed = json!({
        "name": profile.name,
        "avatar": profile.avatar.small,
        "orders": optional("orders", summary, &mut errors),
        "picks": optional("picks", picks, &mut errors),
    });
    if errors.is_empty() {
        return Ok(Json(feed).into_response());
    }
    feed["_errors"] = Value::Array(errors);
    let mut res = Json(feed).into_response();
    res.headers_mut()
        .insert("x-bff-partial", HeaderValue::from_static("true"));
    Ok(res)
}

/// An optional part of the feed: its value, or `null` and an entry in `errors`.
fn optional<T: Serialize>(
    name: &str,
    result: Result<T, MeshError>,
    errors: &mut Vec<Value>,
) -> Value {
    match result {
        Ok(value) => json!(value),
        Err(e) => {
            errors.push(json!({ "backend": name, "error": e.kind().code() }));
            Value::Null
        }
    }
}

/// The BFF: the feed on an app built from `config` (whose `[[routes]]` join it). Like the declared
/// routes, it needs an app key; and it answers within half a second or not at all, since a feed that
/// comes later than that is scrolled past.
pub fn app(config: bff::config::Config) -> Result<App, bff::StartError> {
    let policy = Policy::new()
        .auth(AuthKind::ApiKey)
        .timeout(Duration::from_millis(500));
    Ok(App::new(config)?.route_with("/m/feed/{id}", policy, get(feed)))
}
