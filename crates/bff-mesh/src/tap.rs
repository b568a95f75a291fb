//! A [`Tap`] on the mesh's services: what `bff record` installs to see every downstream exchange, and what
//! `bff mock` (and the testkit's replay) installs to answer calls in-process instead of the network.
//!
//! A mesh without a tap pays one branch per call: no allocation, no lookup.

use crate::{MeshError, Response, request::Prepared};
use bytes::Bytes;
use http::Method;
use std::sync::Arc;

/// One downstream call as a [`Tap`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Exchange<'a> {
    /// The service's name (its key in `[services]`).
    pub service: &'a str,
    pub method: &'a Method,
    /// The path and query sent (percent-encoded, as on the wire).
    pub path_and_query: &'a str,
    /// The request body (empty when it has none).
    pub body: &'a Bytes,
}

impl Exchange<'_> {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(p, _)| p)
    }

    /// The query (without `?`), when there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// Sees, and may answer, the downstream calls of every service of a mesh ([`Mesh::with_tap`](crate::Mesh::with_tap)).
///
/// A call goes to the tap first: [`Tap::respond`] may answer it (the network, the cache, retries and
/// the breaker are then not involved); otherwise it is sent as usual and [`Tap::observe`] sees the
/// response the caller gets. Both run on the caller's task: keep them short.
pub trait Tap: std::fmt::Debug + Send + Sync + 'static {
    /// An answer instead of the network's; `None` sends the call.
    fn respond(&self, call: &Exchange<'_>) -> Option<Response> {
        let _ = call;
        None
    }

    /// A response the service gave (errors without a response are not shown).
    fn observe(&self, call: &Exchange<'_>, response: &Response) {
        let _ = (call, response);
    }

    /// Whether it answers every call itself (a mock): the mesh then starts no discovery nor health
    /// check, and says ready with no endpoint reached.
    fn answers_all(&self) -> bool {
        false
    }
}

/// A call through the service's tap.
pub(crate) async fn dispatch(call: &Prepared, tap: &Arc<dyn Tap>) -> Result<Response, MeshError> {
    let body = call.body();
    let exchange = Exchange {
        service: call.service.name(),
        method: &call.method,
        path_and_query: call.pq.as_str(),
        body: &body,
    };
    if let Some(res) = tap.respond(&exchange) {
        return Ok(res);
    }
    let out = call.untapped().await;
    if let Ok(res) = &out {
        tap.observe(&exchange, res);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mesh, Response};
    use http::{HeaderMap, StatusCode};
    use std::sync::Mutex;

    /// Answers `/users/*` itself and lets the rest go to the network; remembers what it saw.
    #[derive(Debug, Default)]
    struct Answering {
        seen: Mutex<Vec<String>>,
        all: bool,
    }

    impl Tap for Answering {
        fn respond(&self, call: &Exchange<'_>) -> Option<Response> {
            self.seen.lock().unwrap().push(format!(
                "{} {} {} q={:?} body={}",
                call.service,
                call.method,
                call.path(),
                call.query(),
                call.body.len()
            ));
            (self.all || call.path().starts_with("/users/")).then(|| Response {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(br#"{"name":"Ada"}"#),
            })
        }

        fn answers_all(&self) -> bool {
            self.all
        }
    }

    fn config() -> bff_config::Config {
        // Nothing listens on port 1, and the health check can never pass: only the tap can answer.
        let text = "[services.users]\nendpoints = [\"127.0.0.1:1\"]\nconnect_timeout = \"50ms\"\n\
                    [services.users.health_check]\npath = \"/healthz\"\n";
        bff_config::Loader::new()
            .with_env(Default::default())
            .load_str(text, bff_config::Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_config()
    }

    #[tokio::test]
    async fn a_tap_answers_calls_instead_of_the_network() {
        let tap = Arc::new(Answering::default());
        let mesh = Mesh::with_tap(&config(), Default::default(), tap.clone()).unwrap();
        let users = mesh.service("users");
        #[derive(serde::Deserialize)]
        struct User {
            name: String,
        }
        let user: User = users
            .get(crate::path!("/users/{}", "4 2"))
            .query(&[("v", "1")])
            .send_json()
            .await
            .unwrap();
        assert_eq!(user.name, "Ada");
        // Not answered by the tap: the network's error.
        let err = users.get("/other").send().await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Connect, "{err}");
        assert_eq!(
            *tap.seen.lock().unwrap(),
            [
                "users GET /users/4%202 q=Some(\"v=1\") body=0",
                "users GET /other q=None body=0"
            ]
        );
        // A partial tap leaves readiness to the endpoints (none reached here).
        assert!(!mesh.is_ready());
    }

    #[tokio::test]
    async fn a_mesh_whose_tap_answers_all_is_ready_and_probes_nothing() {
        let tap = Arc::new(Answering {
            all: true,
            ..Default::default()
        });
        let mesh = Mesh::with_tap(&config(), Default::default(), tap).unwrap();
        assert!(mesh.is_ready());
        let tasks = mesh.start_tasks();
        assert_eq!(format!("{tasks:?}"), "HealthChecks([])");
        // A reload keeps the tap.
        let reloaded = Mesh::reusing(&config(), mesh.metrics().clone(), Some(&mesh)).unwrap();
        assert!(reloaded.is_ready());
        let res = reloaded.service("users").get("/x").send().await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
    }
}
