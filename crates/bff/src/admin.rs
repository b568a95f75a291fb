//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/` (a page), `/admin/services`,
//! `/admin/routes`, `/admin/config`, `/admin/openapi.json`, `POST /admin/reload`, `POST /admin/cache/purge`.

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
            .find(|r| r.path == plan.path && r.method.method() == plan.method);
        Self {
            method: plan.method.to_string(),
            path: plan.path.clone(),
            kind: "declarative",
            policy: route.map(|r| {
                json!({
                    "auth": r.auth,
                    "timeout": r.timeout.unwrap_or(config.edge.request_timeout),
                    "forward_headers": r.forward_headers,
                    "etag": r.etag,
                    "cache_control": r.cache_control,
                    "backends": r.backends.iter().map(|b| json!({
                        "name": b.name, "service": b.service, "path": b.path,
                        "required": b.required, "depends_on": b.depends_on,
                        "coalesce": b.coalesce, "cache": b.cache,
                    })).collect::<Vec<_>>(),
                })
            }),
        }
    }

    pub(crate) fn rust(path: &str, method: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            kind: "rust",
            policy: None,
        }
    }
}

/// Who may use the admin listener: requests for a host it does not know (DNS rebinding) are refused, and
/// mutating ones (any method but GET, HEAD and OPTIONS) need the admin token and must not come from a
/// browser on another site.
#[derive(Debug)]
struct AdminGuard {
    token: Option<bff_config::Secret>,
    /// Whether `admin_listen` is a loopback address: only then may mutating requests go without a token.
    loopback: bool,
    hosts: Vec<String>,
}

impl AdminGuard {
    fn new(config: &Config) -> Self {
        let loopback = config.bff.admin_listen.ip().is_loopback();
        Self {
            token: config.bff.admin_token.clone().filter(|t| !t.is_empty()),
            loopback,
            hosts: config
                .bff
                .admin_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// `None` when the request may go on, else the refusal.
    fn check(&self, req: &axum::extract::Request) -> Option<axum::response::Response> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Some(refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "this host is not served by the admin listener (bff.admin_hosts)",
            ));
        }
        let method = req.method();
        if method == http::Method::GET
            || method == http::Method::HEAD
            || method == http::Method::OPTIONS
        {
            return None;
        }
        let h = req.headers();
        let cross_site = h.contains_key(http::header::ORIGIN)
            || h.get("sec-fetch-site")
                .is_some_and(|v| v != "same-origin" && v != "none");
        if cross_site {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the admin listener refuses requests sent by a browser page",
            ));
        }
        match &self.token {
            Some(token) => {
                let given = h
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim());
                if given.is_some_and(|g| same(g.as_bytes(), token.expose().as_bytes())) {
                    None
                } else {
                    let mut res = refuse(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "the admin token is required: authorization: Bearer <bff.admin_token>",
                    );
                    res.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    Some(res)
                }
            }
            None if self.loopback => None,
            None => Some(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "bff.admin_listen is not a loopback address and bff.admin_token is not set",
            )),
        }
    }

    /// IP literals, `localhost` and the names of `bff.admin_hosts`, with or without a port.
    fn host_allowed(&self, host: &str) -> bool {
        let name = if let Some(v6) = host.strip_prefix('[') {
            return v6
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            }
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| name.eq_ignore_ascii_case(h))
    }
}

/// Equal bytes, compared in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub(crate) fn router(
    mesh: Mesh,
    config: Arc<bff_config::Validated>,
    routes: Vec<RouteInfo>,
    openapi: bytes::Bytes,
) -> Router {
    let guard = Arc::new(AdminGuard::new(&config));
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
        .route("/admin/cache/purge", axum::routing::post(purge).with_state(mesh.clone()))
        .route(
            "/admin/services",
            get(move || async move { Json(mesh.snapshot()) }),
        )
        .route(
            "/admin/routes",
            get(move || async move { Json(routes.as_ref().clone()) }),
        )
        .route(
            "/admin/openapi.json",
            get(move || async move {
                ([(http::header::CONTENT_TYPE, "application/json")], openapi)
            }),
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
                    let body = json!({"error": {"code": "not_reloadable", "message": crate::server::NOT_RELOADABLE}});
                    return (StatusCode::CONFLICT, Json(body));
                };
                match reload.reload().await {
                    Ok(version) => (StatusCode::OK, Json(json!({"status": "applied", "version": version}))),
                    Err(errors) => {
                        let body = json!({"error": {"code": "config_refused", "message": errors.to_string()}});
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
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let refused = guard.check(&req);
                async move {
                    match refused {
                        Some(res) => res,
                        None => next.run(req).await,
                    }
                }
            },
        ))
}

/// `POST /admin/cache/purge[?service=NAME][&prefix=/path]`: the cached responses of every cache, of a
/// service, or whose downstream path starts with a prefix.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    service: Option<String>,
    prefix: Option<String>,
}

async fn purge(
    axum::extract::State(mesh): axum::extract::State<Mesh>,
    query: Result<axum::extract::Query<Purge>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    let Ok(axum::extract::Query(q)) = query else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the query takes service=NAME and prefix=/path",
        );
    };
    if let Some(s) = &q.service
        && mesh.snapshot().iter().all(|svc| &svc.name != s)
    {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no such service");
    }
    if q.prefix.as_ref().is_some_and(|p| !p.starts_with('/')) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "prefix is a downstream path starting with /",
        );
    }
    let purged = mesh.purge_cache(q.service.as_deref(), q.prefix.as_deref());
    tracing::info!(service = ?q.service, prefix = ?q.prefix, purged, "cache purged");
    Json(json!({"purged": purged})).into_response()
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

/// Hides credentials: the user-info, query values and fragment of URLs, and keys that name secrets.
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
        // Every URL-valued key (jwks_url, rate-limit stores, discovery, otlp_endpoint, ...): user-info,
        // query values and fragment hidden.
        Value::String(s) => match bff_config::redact_url(&s) {
            std::borrow::Cow::Borrowed(_) => Value::String(s),
            std::borrow::Cow::Owned(r) => Value::String(r),
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
        let v = redact(json!({
            "store": "redis://:p@ss@127.0.0.1:6379",
            "jwks_url": "https://idp/jwks?access_token=SECRET",
        }));
        assert_eq!(v["store"], "redis://<redacted>@127.0.0.1:6379");
        assert_eq!(v["jwks_url"], "https://idp/jwks?access_token=<redacted>");
    }
}
