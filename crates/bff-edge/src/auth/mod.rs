//! Authentication a route requires (`auth = "jwt"` or `"api_key"`), and the verified identity handlers
//! read through the [`Claims`] extractor. JWT verification is the `jwt` feature; [`Claims`] is always
//! here, so that a handler's signature compiles either way (without the feature no request has claims).

mod api_key;
#[cfg(feature = "jwt")]
mod jwt;

pub use self::api_key::{ApiKeyError, ApiKeys};
#[cfg(feature = "jwt")]
pub use self::jwt::{FetchError, JwksError, JwtAuth, JwtError, Refused};

use crate::BffError;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde_json::{Map, Value};

/// The future of [`SessionGate::authenticate`].
pub type SessionFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BffError>> + Send + 'a>>;

/// Browser sessions as the edge sees them (`auth = "session"`): the `bff-session` crate implements it, so
/// the edge knows nothing of OpenID Connect. [`authenticate`](Self::authenticate) checks the request (the
/// CSRF header and `Origin`, then the session cookie) and, when it passes, puts what handlers and the mesh
/// need into the request's extensions; a refusal is the JSON 401 it returns, before any downstream call.
pub trait SessionGate: Send + Sync + std::fmt::Debug {
    fn authenticate<'a>(&'a self, parts: &'a mut Parts) -> SessionFuture<'a>;
}

/// What the fuzzer and the seed-corpus test check on any token: no panic, and nothing but a token signed by
/// a known key with valid claims is accepted (the corpus holds no such token).
#[cfg(feature = "jwt")]
#[doc(hidden)]
pub fn check_jwt_properties(auth: &JwtAuth, data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = auth.verify_known(token) {
        panic!("a fuzzed token was accepted: {claims:?}");
    }
}

/// The verified claims of the request's JWT. A handler of a route with `auth = "jwt"` takes `claims:
/// Claims`; on other routes `Option<Claims>` is `None` (and on every route of a build without the `jwt`
/// feature, which refuses `auth = "jwt"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// The `sub` claim.
    pub fn sub(&self) -> Option<&str> {
        self.0.get("sub").and_then(Value::as_str)
    }

    pub fn get(&self, claim: &str) -> Option<&Value> {
        self.0.get(claim)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = BffError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .ok_or_else(BffError::unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = BffError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Claims>().cloned())
    }
}
