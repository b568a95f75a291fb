//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/` (a page), `/admin/services`,
//! `/admin/routes`, `/admin/config`, `POST /admin/reload`.

use crate::server::ServerState;
use axum::{Extension, Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use bff_aggregate::Plan;
use bff_config::Config;
use bff_mesh::Mesh;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::{Arc, atomic::Ordering};

/// A route as `/admin/routes` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RouteInfo {
    method: String,
    path: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Value>,
}

impl RouteInfo {
    pub(crate) fn declarative(plan: &Plan, config: &Config) -> Self {
        let route = config
            .routes
            .iter()
            .find(|r| r.path == plan.path && r.method.eq_ignore_ascii_case(plan.method.as_str()));
        Self {
            method: plan.method.to_string(),
            path: plan.path.clone(),
            kind: "declarative",
            policy: route.map(|r| {
                json!({
                    "auth": r.auth,
                    "timeout": r.timeout.unwrap_or(config.edge.request_timeout),
                    "forward_headers": r.forward_headers,
                    "backends": r.backends.iter().map(|b| json!({
                        "name": b.name, "service": b.service, "path": b.path,
                        "required": b.required, "depends_on": b.depends_on,
                    })).collect::<Vec<_>>(),
                })
            }),
        }
    }

    pub(crate) fn rust(path: &str) -> Self {
        Self {
            method: "*".into(),
            path: path.into(),
            kind: "rust",
            policy: None,
        }
    }
}

pub(crate) fn router(mesh: Mesh, config: Arc<Config>, routes: Vec<RouteInfo>) -> Router {
    let redacted = redact(serde_json::to_value(&*config).unwrap_or(Value::Null));
    let routes = Arc::new(routes);
    let ready_mesh = mesh.clone();
    Router::new()
        .route("/admin/", get(page))
        .route("/admin", get(page))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(move |Extension(state): Extension<ServerState>| async move {
                if state.draining.load(Ordering::SeqCst) {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({"status": "draining"})),
                    );
                }
                if ready_mesh.is_ready() {
                    return (StatusCode::OK, Json(json!({"status": "ready"})));
                }
                let unavailable: Vec<String> = ready_mesh
                    .snapshot()
                    .into_iter()
                    .filter(|s| s.required && !s.available)
                    .map(|s| s.name)
                    .collect();
                let body = json!({"status": "not_ready", "unavailable": unavailable});
                (StatusCode::SERVICE_UNAVAILABLE, Json(body))
            }),
        )
        .route(
            "/metrics",
            get({
                let mesh = mesh.clone();
                move || async move {
                    let mut out = String::with_capacity(16 * 1024);
                    mesh.metrics().render(&mut out);
                    mesh.render_gauges(&mut out);
                    let ct = "text/plain; version=0.0.4; charset=utf-8";
                    ([(http::header::CONTENT_TYPE, ct)], out)
                }
            }),
        )
        .route(
            "/admin/services",
            get(move || async move { Json(mesh.snapshot()) }),
        )
        .route(
            "/admin/routes",
            get(move || async move { Json(routes.as_ref().clone()) }),
        )
        .route(
            "/admin/config",
            get(move |Extension(state): Extension<ServerState>| async move {
                let version = state.version.load(Ordering::SeqCst);
                Json(json!({"version": version, "config": redacted}))
            }),
        )
        .route(
            "/admin/reload",
            axum::routing::post(|Extension(state): Extension<ServerState>| async move {
                let Some(reload) = state.reload else {
                    let body = json!({"error": {"code": "not_reloadable", "message": "this BFF was not started from a config file"}});
                    return (StatusCode::CONFLICT, Json(body));
                };
                match reload.reload().await {
                    Ok(version) => (StatusCode::OK, Json(json!({"status": "applied", "version": version}))),
                    Err(errors) => {
                        let body = json!({"error": {"code": "config_refused", "message": errors}});
                        (StatusCode::UNPROCESSABLE_ENTITY, Json(body))
                    }
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"code": "not_found", "message": "no such admin endpoint"}})),
            )
                .into_response()
        })
}

/// The admin page: services, endpoints, breaker states and live rates, from the JSON and metrics endpoints;
/// no external asset.
async fn page() -> impl IntoResponse {
    (
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("admin.html"),
    )
}

/// Hides credentials: the user-info part of URLs, and keys that name secrets.
fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let secret = ["secret", "password", "token"]
                        .iter()
                        .any(|s| k.contains(s));
                    let v = if secret && !v.is_null() {
                        Value::String("<redacted>".into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        Value::String(s) => match (s.find("://"), s.find('@')) {
            (Some(i), Some(at)) if at > i => {
                Value::String(format!("{}<redacted>{}", &s[..i + 3], &s[at..]))
            }
            _ => Value::String(s),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        let v = redact(
            json!({"store": "redis://user:pw@127.0.0.1:6379", "secret": "x", "name": "web"}),
        );
        assert_eq!(v["store"], "redis://<redacted>@127.0.0.1:6379");
        assert_eq!(v["secret"], "<redacted>");
        assert_eq!(v["name"], "web");
    }
}
