//! golden-mobile: the BFF of a mobile app. The home card is declared in `bff.toml` (`GET /m/home/{user_id}`:
//! a few fields picked out of three services with `select` and `fields`); the batch of user cards for a
//! list screen is one Rust handler (`POST /m/cards`) that fetches them concurrently through the embedded
//! mesh. The embedded gateway in front of both checks API keys, applies per-app rate limits and keeps
//! deadlines and bodies small (`[edge]`, `[edge.auth.api_keys]`, `[edge.rate_limit]`).
//!
//! `app` is the whole BFF: `main.rs` serves it, the tests and `examples/dev.rs` start it against stubs.

use bff::{
    axum::{
        extract::rejection::JsonRejection,
        http::HeaderValue,
        response::{IntoResponse, Response},
    },
    prelude::*,
};
use tokio::task::JoinSet;

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
/// A card that cannot be fetched is `null` with an `_errors` entry and `x-bff-partial: true`: one missing
/// row never blanks the list.
pub async fn cards(
    mesh: Mesh,
    body: Result<Json<CardsRequest>, JsonRejection>,
) -> bff::Result<Response> {
    let Json(request) = body.map_err(|e| BffError::bad_request(e.body_text()))?;
    if request.ids.len() > MAX_CARDS {
        return Err(BffError::bad_request(format!("at most {MAX_CARDS} ids")));
    }
    for user_id in &request.ids {
        id(user_id)?;
    }
    let users = mesh.service("users");
    let mut calls = JoinSet::new();
    for (i, user_id) in request.ids.iter().enumerate() {
        let call = users.get(format!("/users/{user_id}"));
        calls.spawn(async move { (i, call.send_json::<User>().await) });
    }
    let mut cards = vec![Value::Null; request.ids.len()];
    let mut errors = Vec::new();
    while let Some(done) = calls.join_next().await {
        let (i, result) = done.map_err(|_| BffError::internal())?;
        match result {
            Ok(user) => {
                cards[i] = json!(Card {
                    id: request.ids[i].clone(),
                    name: user.profile.name,
                    avatar: user.profile.avatar.small,
                });
            }
            Err(e) => errors.push((i, json!({ "id": request.ids[i], "error": e.kind().code() }))),
        }
    }
    if errors.is_empty() {
        return Ok(Json(json!({ "cards": cards })).into_response());
    }
    errors.sort_by_key(|(i, _)| *i); // in the order asked, not the order they failed
    let errors: Vec<Value> = errors.into_iter().map(|(_, e)| e).collect();
    let mut res = Json(json!({ "cards": cards, "_errors": errors })).into_response();
    res.headers_mut()
        .insert("x-bff-partial", HeaderValue::from_static("true"));
    Ok(res)
}

/// An id checked before it goes into a downstream path: an unchecked value could add path segments or a
/// query to the call.
fn id(raw: &str) -> bff::Result<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw)
    } else {
        Err(BffError::bad_request("invalid id"))
    }
}

/// The BFF: the routes of this crate on an app built from `config` (whose `[[routes]]` join them).
pub fn app(config: bff::config::Config) -> Result<App, bff::StartError> {
    // An app key, like every route of this BFF, and a body no larger than a full batch needs.
    let apps_only = Policy::new().auth(AuthKind::ApiKey).max_body(4 * 1024);
    Ok(App::new(config)?.route_with("/m/cards", apps_only, post(cards)))
}
