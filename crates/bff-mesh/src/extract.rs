use crate::{CallContext, Mesh};
use axum_core::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};
use std::sync::Arc;

/// The mesh is missing from the request: the router was not built by the framework's `App`.
#[derive(Debug)]
pub struct MeshRejection;

impl IntoResponse for MeshRejection {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"error":{"code":"internal","message":"the mesh is not installed on this router"}}"#,
        )
            .into_response()
    }
}

/// Handlers take `mesh: Mesh` as an argument: the mesh, bound to this request's context.
impl<S: Send + Sync> FromRequestParts<S> for Mesh {
    type Rejection = MeshRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mesh = parts.extensions.get::<Mesh>().ok_or(MeshRejection)?;
        Ok(match parts.extensions.get::<Arc<CallContext>>() {
            Some(ctx) => mesh.with_context(ctx.clone()),
            None => mesh.clone(),
        })
    }
}
