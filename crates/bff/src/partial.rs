use axum::{
    Json,
    response::{IntoResponse, Response},
};
use bff_edge::{BffError, PartialBackends};
use bff_mesh::MeshError;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value};

/// `x-bff-partial`, as declarative routes send it.
const PARTIAL_HEADER: HeaderName = HeaderName::from_static("x-bff-partial");

/// A response with optional parts, the way declarative routes make one: a failed optional backend is
/// `null`, and the response is still 200, with `x-bff-partial: true` and an `_errors` entry per failure
/// (`{"backend": "orders", "error": "timeout"}`, plus `"status"` when the service answered with an error
/// status). The route counts it in `bff_partial_responses_total{route,backend}`.
///
/// ```no_run
/// use bff::prelude::*;
///
/// async fn home(mesh: Mesh, Path(id): Path<String>) -> bff::Result<Response> {
///     let (user, orders) = tokio::join!(
///         mesh.service("users").get(path!("/users/{}", id)).send_json::<Value>(),
///         mesh.service("orders").get("/orders").query(&[("userId", &id)]).send_json::<Value>(),
///     );
///     let mut partial = Partial::new();
///     let orders = partial.optional("orders", orders); // `None` when it failed
///     Ok(partial.json(json!({ "user": user?, "orders": orders })))
/// }
/// ```
/// An `_errors` entry of a partial response, as a type: what [`Partial`] writes for each failed part
/// (`{"backend": "orders", "error": "timeout"}`, with `id` for an item and `status` when the service
/// answered with an error status). A Rust route's response type names it for its document (the `openapi`
/// feature derives its schema, the `PartialError` of the document).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartialError {
    /// The failed part's name (its key in the response).
    pub backend: String,
    /// Which item failed, for a list fetched item by item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub id: Option<Value>,
    /// `timeout`, `upstream_status`, `connect_error`, `circuit_open`, ...
    pub error: String,
    /// The service's status, when it answered with an error status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Partial {
    errors: Vec<Value>,
    backends: Vec<&'static str>,
}

impl Partial {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of an optional backend, or `None` (`null` in the body) with its `_errors` entry when it
    /// failed. `backend` names it in `_errors` and in the metric.
    pub fn optional<T>(
        &mut self,
        backend: &'static str,
        result: Result<T, MeshError>,
    ) -> Option<T> {
        result.map_err(|e| self.failed(backend, None, &e)).ok()
    }

    /// Like [`optional`](Self::optional), for one item of a list fetched from the same backend: its
    /// `_errors` entry also says which item failed (`"id": id`).
    pub fn optional_item<T>(
        &mut self,
        backend: &'static str,
        id: impl Into<Value>,
        result: Result<T, MeshError>,
    ) -> Option<T> {
        result
            .map_err(|e| self.failed(backend, Some(id.into()), &e))
            .ok()
    }

    /// Whether a part failed.
    pub fn is_partial(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `body` (a JSON object) as a 200 response; when a part failed, with `_errors` in it, the
    /// `x-bff-partial: true` header and the route's metric counted.
    pub fn json(mut self, body: impl Serialize) -> Response {
        let errors = std::mem::take(&mut self.errors);
        if errors.is_empty() {
            return Json(body).into_response();
        }
        let mut body = match serde_json::to_value(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return not_an_object(),
            Err(e) => {
                tracing::error!(error = %e, "Partial::json: the body is not JSON");
                return BffError::internal().into_response();
            }
        };
        body.insert("_errors".into(), Value::Array(errors));
        let mut res = Json(body).into_response();
        res.headers_mut()
            .insert(PARTIAL_HEADER, HeaderValue::from_static("true"));
        res.extensions_mut()
            .insert(PartialBackends(std::mem::take(&mut self.backends)));
        res
    }

    /// The `_errors` entry of a failed backend, as a declarative route writes it.
    fn failed(&mut self, backend: &'static str, id: Option<Value>, e: &MeshError) {
        tracing::debug!(backend, error = %e, "optional backend failed");
        let mut entry = Map::new();
        entry.insert("backend".into(), backend.into());
        if let Some(id) = id {
            entry.insert("id".into(), id);
        }
        entry.insert("error".into(), e.kind().code().into());
        if let Some(status) = e.status() {
            entry.insert("status".into(), status.as_u16().into());
        }
        self.errors.push(Value::Object(entry));
        if !self.backends.contains(&backend) {
            self.backends.push(backend);
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.errors.is_empty() {
            // A failure recorded but never answered: the handler returned something else than `json`.
            let errors = Value::Array(std::mem::take(&mut self.errors));
            tracing::warn!(
                %errors,
                "a Partial with failed parts was dropped without `Partial::json`: the response does not say so"
            );
        }
    }
}

#[cold]
fn not_an_object() -> Response {
    tracing::error!("Partial::json needs a JSON object to add `_errors` to");
    BffError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_mesh::ErrorKind;
    use http::StatusCode;

    fn failure(kind: ErrorKind) -> Result<u32, MeshError> {
        Err(MeshError::new(kind, "svc", "detail"))
    }

    async fn body(res: Response) -> Value {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn nothing_failed_is_the_plain_body() {
        let mut partial = Partial::new();
        assert_eq!(partial.optional("a", Ok::<_, MeshError>(1)), Some(1));
        assert!(!partial.is_partial());
        let res = partial.json(serde_json::json!({"a": 1}));
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("x-bff-partial").is_none());
        assert!(res.extensions().get::<PartialBackends>().is_none());
        assert_eq!(body(res).await, serde_json::json!({"a": 1}));
    }

    #[tokio::test]
    async fn failures_are_null_with_entries_header_and_backends() {
        let mut partial = Partial::new();
        let a = partial.optional("a", failure(ErrorKind::Timeout));
        let b = partial.optional(
            "b",
            failure(ErrorKind::Status(StatusCode::SERVICE_UNAVAILABLE)),
        );
        let c = partial.optional_item("c", "7", failure(ErrorKind::Reset));
        let c2 = partial.optional_item("c", 8, failure(ErrorKind::Reset));
        assert!(partial.is_partial());
        let res = partial.json(serde_json::json!({"a": a, "b": b, "c": [c, c2]}));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-bff-partial"], "true");
        assert_eq!(
            res.extensions().get::<PartialBackends>(),
            Some(&PartialBackends(vec!["a", "b", "c"])),
            "each backend once per response"
        );
        assert_eq!(
            body(res).await,
            serde_json::json!({
                "a": null, "b": null, "c": [null, null],
                "_errors": [
                    {"backend": "a", "error": "timeout"},
                    {"backend": "b", "error": "upstream_status", "status": 503},
                    {"backend": "c", "id": "7", "error": "reset"},
                    {"backend": "c", "id": 8, "error": "reset"},
                ]
            })
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_an_internal_error() {
        let mut partial = Partial::new();
        partial.optional("a", failure(ErrorKind::Timeout));
        let res = partial.json([1, 2]);
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
