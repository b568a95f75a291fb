//! golden-minimal: a Backend-for-Frontend built with `bff`. Its one handler calls the users service
//! through the embedded mesh; the embedded gateway in front of it sets the deadline, sheds load and turns
//! every failure into a JSON error.
//!
//! `app` is the whole BFF: `main.rs` serves it, the tests and `examples/dev.rs` start it against stubs.

use bff::prelude::*;

#[derive(Deserialize)]
struct User {
    profile: Profile,
}

#[derive(Deserialize)]
struct Profile {
    name: String,
}

/// `GET /api/hello/{user_id}`: a greeting with the user's name from the users service.
pub async fn hello(mesh: Mesh, Path(user_id): Path<String>) -> bff::Result<Json<Value>> {
    // `path!` percent-encodes the id as one segment: `42%3Fadmin=true` calls `/users/42%3Fadmin%3Dtrue`,
    // never `/users/42?admin=true`.
    let user: User = mesh
        .service("users")
        .get(path!("/users/{}", user_id))
        .send_json()
        .await?; // a failure is the response: 502, 503 or 504 as JSON
    Ok(Json(
        json!({ "message": format!("Hello, {}!", user.profile.name) }),
    ))
}

/// The BFF: the routes of this crate on an app built from `config`.
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    Ok(App::new(config)?.route("/api/hello/{user_id}", get(hello)))
}
