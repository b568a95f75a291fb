//! {{project-name}}: the BFF of a mobile app. The home card is declared in `bff.toml` (`GET /m/home/{user_id}`:
//! a few fields picked out of three services with `select` and `fields`); the batch of user cards for a
//! list screen is one Rust handler (`POST /m/cards`) that fetches them concurrently through the embedded
//! mesh. The embedded gateway in front of both checks API keys, applies per-app rate limits and keeps
//! deadlines and bodies small (`[edge]`, `[edge.auth.api_keys]`, `[edge.rate_limit]`).
//!
//! `app` is the whole BFF: `main.rs` serves it, the tests and `examples/dev.rs` start it against stubs.

use bff::{axum::extract::rejection::JsonRejection, prelude::*};

/// The most cards a batch asks for: one screen of a list, and a bound on the fan-out.
pub const MAX_CARDS: usize = 20;

/// The body of `POST /m/cards`.
#[derive(Deserialize)]
pub struct CardsRequest {
    pub ids: Vec<String>,
}

#[derive(Deserialize)]
struct User {
    profile: Profile,
}

#[derive(Deserialize)]
struct Profile {
    name: String,
    avatar: Avatar,
}

#[derive(Deserialize)]
struct Avatar {
    small: String,
}

/// What a list row shows of a user, and nothing more.
#[derive(Serialize)]
struct Card {
    id: String,
    name: String,
    avatar: String,
}

/// `POST /m/cards` with `{"ids": ["1", "2"]}`: the users' cards in the order asked, fetched concurrently.
///
/// A card that cannot be fetched is `null` with an `_errors` entry (its id, why) and `x-bff-partial: true`:
/// one missing row never blanks the list.
pub async fn cards(
    mesh: Mesh,
    body: Result<Json<CardsRequest>, JsonRejection>,
) -> bff::Result<Response> {
    let Json(request) = body.map_err(|e| BffError::bad_request(e.body_text()))?;
    if request.ids.len() > MAX_CARDS {
        return Err(BffError::bad_request(format!("at most {MAX_CARDS} ids")));
    }
    let users = mesh.service("users");
    // All started at once (each call ends by the route's deadline), answered in the order asked.
    // `path!` percent-encodes the id as one segment: an id can never add a segment or a query.
    let calls: Vec<_> = request
        .ids
        .iter()
        .map(|id| tokio::spawn(users.get(path!("/users/{}", id)).send_json::<User>()))
        .collect();
    let mut partial = Partial::new();
    let mut cards = Vec::with_capacity(calls.len());
    for (id, call) in request.ids.into_iter().zip(calls) {
        let user = call.await.map_err(|_| BffError::internal())?;
        let card = partial
            .optional_item("users", id.as_str(), user)
            .map(|user| Card {
                id,
                name: user.profile.name,
                avatar: user.profile.avatar.small,
            });
        cards.push(card);
    }
    Ok(partial.json(json!({ "cards": cards })))
}

/// The BFF: the routes of this crate on an app built from `config` (whose `[[routes]]` join them).
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    // An app key, like every route of this BFF, and a body no larger than a full batch needs.
    let apps_only = Policy::new().auth(AuthKind::ApiKey).max_body(4 * 1024);
    Ok(App::new(config)?.route_with("/m/cards", apps_only, post(cards)))
}
