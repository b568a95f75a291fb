//! golden-web-oidc: the BFF of a web frontend whose users sign in: browser sessions, the OAuth 2.0 BFF
//! pattern (`[session]` in `bff.toml`, the framework's docs/sessions.md). The BFF signs users in at the
//! OpenID Provider (`/bff/login`, `/bff/callback`), keeps their tokens server-side behind an `HttpOnly`
//! cookie, answers `/bff/user` and `/bff/logout`, and calls the orders service with the user's access
//! token on `/api/orders` (declared in `bff.toml`). This crate adds the page that uses all of it.
//!
//! `app` is the whole BFF: `main.rs` serves it, the tests and `examples/dev.rs` start it.

use bff::{axum::http::header, prelude::*};

/// `GET /`: the page (static/index.html, compiled into the binary). It is served by the BFF itself so that
/// the page, `/bff/*` and the API share one origin: the session cookie goes along with every `fetch`
/// (`SameSite=Strict`) and no CORS is involved.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing else may frame it or run scripts from elsewhere on it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        include_str!("../static/index.html"),
    )
        .into_response()
}

/// `GET /api/me`: the signed-in user, from Rust. The `Session` extractor gives the session's claims,
/// `sub()` and, for a call the mesh does not make itself, `access_token()`; the route's policy
/// (`AuthKind::Session`) has already required the session and the CSRF header.
pub async fn me(session: bff::Session) -> Json<Value> {
    Json(json!({
        "sub": session.sub(),
        "name": session.claims().get("name"),
    }))
}

/// The BFF: the page and `/api/me` on an app built from `config` (whose `[session]` adds `/bff/*` and
/// whose `[[routes]]` add the API).
pub fn app(config: bff::config::Validated) -> Result<App, bff::StartError> {
    let signed_in = Policy::new().auth(AuthKind::Session);
    Ok(App::new(config)?
        .route("/", get(page))
        .route_with("/api/me", signed_in, get(me)))
}
