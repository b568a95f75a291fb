use crate::{admin, server::Server};
use axum::{
    Router,
    extract::{Path, rejection::PathRejection},
    response::IntoResponse,
    routing::{MethodFilter, MethodRouter},
};
use bff_aggregate::Plan;
use bff_config::{AuthKind, Feature, JwtConfig, RouteConfig};
use bff_config::{Config, ConfigErrors, Loader, Source, Validated};
#[cfg(feature = "jwt")]
use bff_edge::auth::JwtAuth;
use bff_edge::{
    BffError, EdgeLayer, EdgePolicy, Gate, Policy, PolicyLayer, RateLimitStores, RateLimiter,
    RoutePolicy, auth::ApiKeys,
};
use bff_mesh::Mesh;
use http::HeaderMap;
use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc};

/// A BFF: its config, its mesh, and its routes (Rust handlers and declarative ones in one router).
///
/// ```no_run
/// # use bff::prelude::*;
/// # async fn home() -> &'static str { "" }
/// # async fn run() -> Result<(), bff::StartError> {
/// bff::App::from_config("bff.toml")?
///     .route("/api/home/{id}", get(home))
///     .serve()
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct App {
    config: Arc<Validated>,
    mesh: Mesh,
    rust_routes: Vec<RustRoute>,
    merged: Vec<Router>,
    gate: Arc<Gate>,
    /// `[edge.rate_limit]`, one limiter shared by every route.
    global_limit: Option<RateLimiter>,
    /// Connections to shared rate-limit stores, one per URL for every limiter of this config.
    limit_stores: RateLimitStores,
    /// Browser sessions (`[session]`): their endpoints, store and provider.
    #[cfg(feature = "session")]
    sessions: Option<bff_session::Sessions>,
}

/// A Rust handler as registered, kept so that a reload can rebuild its route with the new policies.
#[derive(Clone)]
struct RustRoute {
    path: String,
    policy: Policy,
    method_router: MethodRouter,
    /// Its operations as described by the handlers' types (a path item), and the schemas they name.
    described: Option<
        Arc<(
            serde_json::Value,
            serde_json::Map<String, serde_json::Value>,
        )>,
    >,
}

/// What [`App::build`] makes: the public and admin routers.
pub(crate) struct Built {
    pub(crate) public: Router,
    /// What `public` falls back to for every request: the edge in front of the routes. The server calls
    /// it directly, without the outer router's lookup and boxed fallback.
    pub(crate) serve: PublicService,
    pub(crate) admin: Router,
}

/// The public listener's service: the edge in front of the routes.
pub(crate) type PublicService = bff_edge::Edge<Router>;

/// Why a BFF could not start. It is the error a binary's `main` ends with, so its `Display` (and `Debug`,
/// so that `main() -> Result<(), StartError>` prints it readably) tells the whole story: every config
/// error with file, line and key, or what could not be built followed by its causes. Its
/// [`source`](std::error::Error::source) is the typed cause, for code that looks into it.
#[non_exhaustive]
pub enum StartError {
    /// The config was refused.
    Config(ConfigErrors),
    /// Part of a valid config could not be built: `what` says which (`route GET /x`, `bff.tls`...).
    Build {
        what: Option<String>,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    Io(std::io::Error),
}

impl StartError {
    /// `source` stopped the build of `what`.
    pub(crate) fn build(
        what: impl Into<Option<String>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Build {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Refusals of the app's own, found while its routes are put together.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("unsupported method {0}")]
    Method(String),
    #[cfg(feature = "session")]
    #[error("{0} is an endpoint of [session]")]
    SessionEndpoint(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Build {
                what: Some(what),
                source,
            } => write!(f, "{what}: {}", bff_telemetry::ErrorChain(&**source)),
            Self::Build { what: None, source } => {
                write!(f, "{}", bff_telemetry::ErrorChain(&**source))
            }
            Self::Io(e) => write!(f, "{}", bff_telemetry::ErrorChain(e)),
        }
    }
}

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Build { source, .. } => Some(&**source),
            Self::Io(e) => Some(e),
        }
    }
}

impl From<ConfigErrors> for StartError {
    fn from(e: ConfigErrors) -> Self {
        Self::Config(e)
    }
}

/// (A [`Validated`] config given to [`App::new`] cannot fail to be one.)
impl From<std::convert::Infallible> for StartError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The config file a BFF binary uses: `--config FILE` (or `--config=FILE`), else `$BFF_CONFIG`, else
/// `./bff.toml`.
pub fn config_path_from_args() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--config" {
            if let Some(p) = args.next() {
                return p.into();
            }
        } else if let Some(p) = a.strip_prefix("--config=") {
            return p.into();
        }
    }
    std::env::var_os("BFF_CONFIG").map_or_else(|| "bff.toml".into(), PathBuf::from)
}

impl App {
    /// Loads and validates a config file (TOML, YAML or JSON by extension, `BFF__...` overrides).
    pub fn from_config(path: impl Into<PathBuf>) -> Result<Self, StartError> {
        Self::new(Loader::new().load(&Source::file(path.into())?)?)
    }

    /// The same app on a new config: routes rebuilt with the new policies, services whose config did not
    /// change kept as they are (connection pools, breaker and outlier state, health).
    pub(crate) fn reconfigure(&self, config: Validated) -> Result<Self, StartError> {
        let mesh = Mesh::reusing(&config, self.mesh.metrics().clone(), Some(&self.mesh))
            .map_err(|e| StartError::build(None, e))?;
        let mut app = Self::with_mesh(config, mesh, Some(self))?;
        app.rust_routes = self.rust_routes.clone();
        app.merged = self.merged.clone();
        Ok(app)
    }

    /// The same app with `tap` on every service of its mesh: it sees every downstream call, Rust
    /// handlers' and declarative routes' alike, and may answer it instead of the network (`bff record`
    /// stores the exchanges, `bff mock` and the testkit's replay answer from fixtures). A reload keeps it.
    /// Call it before serving: the services are built again.
    pub fn with_tap(mut self, tap: Arc<dyn bff_mesh::Tap>) -> Result<Self, StartError> {
        self.mesh = Mesh::with_tap(&self.config, self.mesh.metrics().clone(), tap)
            .map_err(|e| StartError::build(None, e))?;
        Ok(self)
    }

    /// The config file this app was loaded from, if any: the one a reload loads again. Every app whose
    /// config came from a file has it, however it was built ([`App::from_config`], or a `Config` from
    /// [`Loader::load_file`] given to [`App::new`]).
    pub fn source(&self) -> Option<&std::path::Path> {
        self.config.origin.as_ref().map(|o| o.path())
    }

    /// Like [`App::from_config`], with the file named by `--config`, `$BFF_CONFIG` or `./bff.toml`.
    pub fn from_args() -> Result<Self, StartError> {
        Self::from_config(config_path_from_args())
    }

    /// A BFF from a TOML text (tests, embedded configs).
    pub fn from_toml(text: &str) -> Result<Self, StartError> {
        Self::new(Loader::new().load_str(text, bff_config::Format::Toml)?)
    }

    /// A BFF from a validated config: a [`Validated`] from the [`Loader`] (the usual way), or a
    /// [`Config`] made or changed in code, which is validated here, its errors returned as
    /// [`StartError::Config`] with their keys: a config nobody checked never runs.
    ///
    /// A config that [`Loader`] read from a file remembers it ([`Config::origin`]): `POST /admin/reload`,
    /// SIGHUP and `bff.watch_config` load that file again (also after `into_config()` and changes made in
    /// code: the reload loads the file as it is). A config from a text or made in code cannot be
    /// reloaded: `POST /admin/reload` answers 409 saying so.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), bff::StartError> {
    /// let loaded = bff::config::Loader::new().load_file("bff.toml")?; // Validated
    /// let app = bff::App::new(loaded)?;
    /// let mut config = bff::config::Loader::new().load_file("bff.toml")?.into_config();
    /// config.edge.max_concurrency = 0;
    /// assert!(matches!(bff::App::new(config), Err(bff::StartError::Config(_))));
    /// # Ok(()) }
    /// ```
    pub fn new<C>(config: C) -> Result<Self, StartError>
    where
        C: TryInto<Validated>,
        StartError: From<C::Error>,
    {
        let config: Validated = config.try_into()?;
        let metrics = Arc::new(bff_telemetry::Metrics::new());
        let mesh = Mesh::with_metrics(&config, metrics).map_err(|e| StartError::build(None, e))?;
        Self::with_mesh(config, mesh, None)
    }

    #[cfg_attr(not(feature = "session"), allow(unused_mut, unused_variables))]
    fn with_mesh(
        config: Validated,
        mut mesh: Mesh,
        previous: Option<&App>,
    ) -> Result<Self, StartError> {
        // Without the `session` feature, refused as the validator refuses it (a config built by hand).
        if let Some(session) = &config.session {
            session
                .require_compiled()
                .map_err(|e| StartError::build(None, e))?;
        }
        // Sessions are kept across a reload that leaves `[session]` (and the CORS origins) unchanged, and
        // their store (with its sessions) across one that leaves the store's keys unchanged.
        #[cfg(feature = "session")]
        let sessions = match &config.session {
            None => None,
            Some(cfg) => {
                let kept = previous
                    .and_then(|p| p.sessions.clone())
                    .filter(|s| s.config() == cfg)
                    .filter(|_| previous.is_some_and(|p| p.config.edge.cors == config.edge.cors));
                let sessions = match kept {
                    Some(s) => s,
                    // A new config keeps the store (and its sessions) when its keys are unchanged.
                    None => bff_session::Sessions::reusing(
                        cfg,
                        config.edge.cors.as_ref(),
                        mesh.metrics().sessions.clone(),
                        previous.and_then(|p| p.sessions.as_ref()),
                    )
                    .map_err(|e| StartError::build(None, e))?,
                };
                mesh.set_token_source(sessions.client_tokens());
                Some(sessions)
            }
        };
        let auth = &config.edge.auth;
        // Without the `jwt` feature, refused as the validator refuses it (a config built by hand).
        if !cfg!(feature = "jwt") && auth.jwt.is_some() {
            return Err(StartError::build(
                None,
                Feature::Jwt.missing(JwtConfig::NEEDS),
            ));
        }
        let gate = Gate {
            #[cfg(feature = "jwt")]
            jwt: match &auth.jwt {
                Some(j) => Some(Arc::new(
                    JwtAuth::new(j).map_err(|e| StartError::build(None, e))?,
                )),
                None => None,
            },
            api_keys: match &auth.api_keys {
                Some(k) => Some(Arc::new(
                    ApiKeys::load(std::path::Path::new(&k.keys_file))
                        .map_err(|e| StartError::build(None, e))?,
                )),
                None => None,
            },
            #[cfg(feature = "session")]
            session: sessions
                .clone()
                .map(|s| Arc::new(s) as Arc<dyn bff_edge::SessionGate>),
            #[cfg(not(feature = "session"))]
            session: None,
        };
        let limit_stores = RateLimitStores::new(mesh.metrics().rate_limit_store_fallbacks.clone());
        let global_limit = match &config.edge.rate_limit {
            Some(rl) => Some(
                RateLimiter::from_config(rl, "edge", &limit_stores)
                    .map_err(|e| StartError::build(None, e))?,
            ),
            None => None,
        };
        Ok(Self {
            config: Arc::new(config),
            mesh,
            rust_routes: Vec::new(),
            merged: Vec::new(),
            gate: Arc::new(gate),
            global_limit,
            limit_stores,
            #[cfg(feature = "session")]
            sessions,
        })
    }

    /// Starts fetching the OpenID Provider's discovery document (retried until it answers), when the
    /// BFF has sessions.
    pub(crate) fn session_warm_up(&self) -> Option<crate::server::AbortOnDrop> {
        #[cfg(feature = "session")]
        if let Some(s) = &self.sessions {
            return Some(crate::server::AbortOnDrop(tokio::spawn(
                s.clone().warm_up(),
            )));
        }
        None
    }

    /// The compiled policy of a route: `[edge.rate_limit]` plus the route's own limit, its auth, deadline
    /// and body limit.
    fn route_policy(
        &self,
        auth: AuthKind,
        limit: Option<RateLimiter>,
        timeout: Option<std::time::Duration>,
        max_body: Option<u64>,
        conditional: bff_edge::Conditional,
    ) -> RoutePolicy {
        RoutePolicy {
            auth,
            limits: self.global_limit.iter().cloned().chain(limit).collect(),
            timeout,
            max_body: max_body.unwrap_or(self.config.edge.max_body.bytes()),
            conditional,
        }
    }

    /// Starts fetching the JWKS URL (first now, then every `jwks_refresh`), when there is one.
    #[cfg(feature = "jwt")]
    pub(crate) fn jwt_refresher(&self) -> Option<crate::server::AbortOnDrop> {
        let jwt = self.gate.jwt.clone().filter(|j| j.has_url())?;
        Some(crate::server::AbortOnDrop(tokio::spawn(jwt.run_refresh())))
    }

    /// Without the `jwt` feature there is no JWKS to fetch.
    #[cfg(not(feature = "jwt"))]
    pub(crate) fn jwt_refresher(&self) -> Option<crate::server::AbortOnDrop> {
        None
    }

    fn policy_layer(&self, policy: RoutePolicy, route: &str, method: &str) -> PolicyLayer {
        self.policy_layer_by_method(policy, route, &[method])
    }

    /// A route's layer with metrics labelled by each of its methods (`*` when they are not known).
    fn policy_layer_by_method(
        &self,
        policy: RoutePolicy,
        route: &str,
        methods: &[&str],
    ) -> PolicyLayer {
        let metrics = self.mesh.metrics();
        let by_method = if methods.is_empty() {
            vec![metrics.route(route, "*")]
        } else {
            methods.iter().map(|m| metrics.route(route, m)).collect()
        };
        PolicyLayer::by_method(policy, self.gate.clone(), by_method)
    }

    /// Registers a Rust handler (an axum [`MethodRouter`], e.g. `get(home)`).
    #[must_use]
    pub fn route(self, path: &str, method_router: MethodRouter) -> Self {
        self.route_with(path, Policy::new(), method_router)
    }

    /// Registers a Rust handler with its own policy: authentication, a rate limit on top of
    /// `[edge.rate_limit]`, a deadline, a body limit.
    ///
    /// ```no_run
    /// # use bff::prelude::*;
    /// # async fn me(claims: bff::Claims) -> String { claims.sub().unwrap_or_default().to_string() }
    /// # fn f(app: bff::App) -> bff::App {
    /// use bff::{AuthKind, Policy};
    /// app.route_with("/api/me", Policy::new().auth(AuthKind::Jwt).rate_limit(10, 20), get(me))
    /// # }
    /// ```
    pub fn route_with(mut self, path: &str, policy: Policy, method_router: MethodRouter) -> Self {
        self.rust_routes.push(RustRoute {
            path: path.to_string(),
            policy,
            method_router,
            described: None,
        });
        self
    }

    /// Registers handlers described by their types (utoipa's `#[utoipa::path]`, collected by
    /// `utoipa_axum::routes!`) with a policy: the path and methods come from the description, so the
    /// OpenAPI document ([`openapi`](Self::openapi)) cannot drift from what is served; their parameters,
    /// request bodies and responses are the handlers' types, with the policy's auth and the BFF's error
    /// statuses around them.
    ///
    /// The shape of it (`utoipa_axum::routes!` is the user's dependency, not this crate's, so the
    /// compiled copy of this example is `examples/web-bff/src/lib.rs`, built and tested by `scripts/test`):
    ///
    /// ```text
    /// #[derive(serde::Serialize, utoipa::ToSchema)]
    /// struct Account { name: String }
    ///
    /// #[utoipa::path(get, path = "/api/account/{id}", params(("id" = String, Path)),
    ///     responses((status = 200, body = Account)))]
    /// async fn account(Path(id): Path<String>) -> Json<Account> { Json(Account { name: id }) }
    ///
    /// app.routes(Policy::new(), utoipa_axum::routes!(account))
    /// ```
    #[cfg(feature = "openapi")]
    pub fn routes(
        mut self,
        policy: Policy,
        (schemas, paths, method_router): (
            Vec<(
                String,
                utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
            )>,
            utoipa::openapi::path::Paths,
            MethodRouter,
        ),
    ) -> Self {
        let schemas: serde_json::Map<String, serde_json::Value> = schemas
            .into_iter()
            .filter_map(|(name, s)| Some((name, serde_json::to_value(s).ok()?)))
            .collect();
        for (path, item) in paths.paths {
            let item = serde_json::to_value(item).unwrap_or_default();
            let path = if path.is_empty() { "/".into() } else { path };
            self.rust_routes.push(RustRoute {
                path,
                policy: policy.clone(),
                method_router: method_router.clone(),
                described: Some(Arc::new((item, schemas.clone()))),
            });
        }
        self
    }

    fn rust_layer(
        &self,
        path: &str,
        policy: &Policy,
        methods: &[&str],
    ) -> Result<PolicyLayer, StartError> {
        // `auth = "jwt"` in a build without the `jwt` feature: the validator's message for a config route.
        auth_compiled(policy.auth).map_err(|e| StartError::build(format!("route {path}"), e))?;
        // Checked like a config file's limit; a Redis store is shared with the config's routes.
        let limit = policy
            .rate_limit
            .as_ref()
            .map(|cfg| {
                let what = || format!("route {path}");
                cfg.check("rate_limit")
                    .map_err(|e| StartError::build(what(), e))?;
                RateLimiter::from_config(cfg, path, &self.limit_stores)
                    .map_err(|e| StartError::build(what(), e))
            })
            .transpose()?;
        let conditional = bff_edge::Conditional {
            etag: policy.etag,
            cache_control: policy.cache_control.clone(),
        };
        let compiled = self.route_policy(
            policy.auth,
            limit,
            policy.timeout,
            policy.max_body,
            conditional,
        );
        Ok(self.policy_layer_by_method(compiled, path, methods))
    }

    /// Merges an axum router of Rust handlers.
    #[must_use]
    /// Merges an axum router of Rust handlers; its routes get the default route policy.
    pub fn merge(mut self, router: Router) -> Self {
        self.merged.push(router);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mesh, for calls made outside a request (startup checks, background tasks).
    pub fn mesh(&self) -> Mesh {
        self.mesh.clone()
    }

    /// The OpenAPI 3.1 document of the public routes (CONTRACT section 8): the declarative routes of the
    /// config and the Rust routes registered with [`route`](Self::route) and
    /// [`route_with`](Self::route_with) (routers given to [`merge`](Self::merge) are not listed). What
    /// `GET /admin/openapi.json` serves and `bff openapi` prints; `bff client` makes a typed TypeScript
    /// client of it.
    pub fn openapi(&self) -> serde_json::Value {
        let rust: Vec<bff_openapi::RustRoute> = self
            .rust_routes
            .iter()
            .map(|r| bff_openapi::RustRoute {
                path: r.path.clone(),
                methods: methods_of(&r.method_router)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                auth: r.policy.auth,
                rate_limited: r.policy.rate_limit.is_some(),
                etag: r.policy.etag,
                described: r.described.as_ref().map(|d| d.0.clone()),
                schemas: r
                    .described
                    .as_ref()
                    .map(|d| d.1.clone())
                    .unwrap_or_default(),
            })
            .collect();
        bff_openapi::document(&self.config, &rust)
    }

    /// The public router with the whole edge stack: what the public listener serves. Useful to drive a
    /// BFF in tests with `tower::ServiceExt::oneshot`.
    pub fn into_router(self) -> Result<Router, StartError> {
        Ok(self.build()?.public)
    }

    pub(crate) fn build(&self) -> Result<Built, StartError> {
        let mut router = Router::new();
        for r in &self.rust_routes {
            let layer = self.rust_layer(&r.path, &r.policy, &methods_of(&r.method_router))?;
            router = router.route(&r.path, r.method_router.clone().layer(layer));
        }
        for m in &self.merged {
            let layer = self.rust_layer("merged", &Policy::new(), &[])?;
            router = router.merge(m.clone().route_layer(layer));
        }
        #[cfg(feature = "session")]
        if let Some(s) = &self.sessions {
            let endpoints = s.config().endpoints();
            if let Some(r) = self
                .rust_routes
                .iter()
                .find(|r| endpoints.contains(&r.path.as_str()))
            {
                return Err(StartError::build(
                    format!("route {}", r.path),
                    RouteError::SessionEndpoint(r.path.clone()),
                ));
            }
            let layer = self.rust_layer("/bff/*", &Policy::new(), &[])?;
            router = router.merge(s.router().route_layer(layer));
        }
        let config = self.config.clone();
        let mut by_path: BTreeMap<&str, Vec<(Plan, &RouteConfig)>> = BTreeMap::new();
        for route in &config.routes {
            let plan = Plan::compile(route, &config).map_err(|e| StartError::build(None, e))?;
            by_path
                .entry(route.path.as_str())
                .or_default()
                .push((plan, route));
        }
        let mut routes_info = Vec::new();
        for (path, plans) in by_path {
            if let Some(rust) = self.rust_routes.iter().find(|r| same_shape(&r.path, path)) {
                let index = config.routes.iter().position(|r| r.path == path);
                let key = format!("routes[{}].path", index.unwrap_or_default());
                let message = format!(
                    "{path} is also a Rust route ({:?}, registered in code): one path, one route",
                    rust.path
                );
                return Err(StartError::Config(bff_config::ConfigErrors(vec![
                    config.error_at(&key, message),
                ])));
            }
            let mut method_router = MethodRouter::new();
            for (plan, route) in plans {
                routes_info.push(admin::RouteInfo::declarative(&plan, &self.config));
                let filter = MethodFilter::try_from(plan.method.clone()).map_err(|_| {
                    StartError::build(None, RouteError::Method(plan.method.to_string()))
                })?;
                let method = route.method.method().as_str();
                let route_metrics = self.mesh.metrics().route(&route.path, method);
                let plan = Arc::new(plan.with_metrics(&route_metrics));
                let scope = format!("{method} {}", route.path);
                auth_compiled(route.auth)
                    .map_err(|e| StartError::build(format!("route {scope}"), e))?;
                let limit = match &route.rate_limit {
                    Some(rl) => Some(
                        RateLimiter::from_config(rl, &scope, &self.limit_stores)
                            .map_err(|e| StartError::build(None, e))?,
                    ),
                    None => None,
                };
                let conditional = bff_edge::Conditional {
                    etag: route.etag,
                    cache_control: route.cache_control.as_ref().map(|c| c.value().clone()),
                };
                let policy = self.route_policy(
                    route.auth,
                    limit,
                    route.timeout.map(|t| t.get()),
                    route.max_body.map(|b| b.bytes()),
                    conditional,
                );
                let layer = self.policy_layer(policy, &route.path, method);
                let single = MethodRouter::new().on(
                    filter,
                    move |mesh: Mesh,
                          params: Result<Path<Vec<(String, String)>>, PathRejection>,
                          headers: HeaderMap| {
                        let plan = plan.clone();
                        async move {
                            let params = match params {
                                Ok(Path(p)) => p,
                                Err(PathRejection::MissingPathParams(_)) => Vec::new(),
                                Err(_) => {
                                    return BffError::bad_request("invalid path parameter")
                                        .into_response();
                                }
                            };
                            plan.execute(&mesh, &params, &headers).await
                        }
                    },
                );
                method_router = method_router.merge(single.layer(layer));
            }
            router = router.route(path, method_router);
        }
        for r in &self.rust_routes {
            let methods = methods_of(&r.method_router);
            if methods.is_empty() {
                routes_info.push(admin::RouteInfo::rust(&r.path, "*"));
            }
            for method in methods {
                routes_info.push(admin::RouteInfo::rust(&r.path, method));
            }
        }
        let metrics = self.mesh.metrics();
        let tracer = match &self.config.telemetry.otlp_endpoint {
            Some(_) if !bff_config::Feature::Otlp.enabled() => {
                return Err(StartError::build(
                    None,
                    bff_config::Feature::Otlp.missing("telemetry.otlp_endpoint"),
                ));
            }
            Some(endpoint) if tokio::runtime::Handle::try_current().is_ok() => Some(
                bff_telemetry::Tracer::start(
                    endpoint.traces(),
                    &self.config.bff.name,
                    metrics.spans_dropped.clone(),
                    metrics.spans_exported.clone(),
                )
                .map_err(|e| StartError::build(format!("telemetry.otlp_endpoint {endpoint}"), e))?,
            ),
            _ => None,
        };
        let edge_policy = EdgePolicy {
            access_log: self.config.telemetry.access_log,
            tracer,
            mesh: Some(self.mesh.clone()),
            ..EdgePolicy::from_config(&self.config.edge)
        };
        let edge = EdgeLayer::new(edge_policy, self.mesh.metrics().clone());
        let routes = router
            .fallback(|| async { BffError::not_found() })
            .method_not_allowed_fallback(|| async { BffError::method_not_allowed() });
        // The edge wraps the router from outside: it runs before routing (so the normalised path is the
        // routed one) and for every request, matched or not.
        let serve = tower::Layer::layer(&edge, routes);
        let public = Router::new().fallback_service(serve.clone());
        let openapi = bytes::Bytes::from(self.openapi().to_string());
        let admin = admin::router(self.mesh.clone(), self.config.clone(), routes_info, openapi);
        Ok(Built {
            public,
            serve,
            admin,
        })
    }

    /// Binds the public and admin listeners and starts serving; see [`Server`].
    pub async fn bind(self) -> Result<Server, StartError> {
        Server::bind(self).await
    }

    /// Serves until SIGTERM or Ctrl-C, then drains: stops accepting, finishes in-flight requests within
    /// `bff.shutdown_grace`, and returns.
    pub async fn serve(self) -> Result<(), StartError> {
        let server = self.bind().await?;
        tracing::info!(public = %server.local_addr(), admin = %server.admin_addr(), "bff listening");
        server.run_until_signal().await;
        Ok(())
    }
}

/// The methods a Rust route serves, for its metrics and the admin API (HEAD goes with GET, as axum
/// serves it). axum's `MethodRouter` has no public list of them; it keeps them as the `Allow` value of its
/// 405 answers, which its `Debug` shows (`allow_header: Bytes(b"GET,HEAD")`): read there, without calling
/// the route. Empty when they cannot be known (`any()`, a router with a fallback only, another axum): the
/// route is then labelled `*`, as before. `methods_of_a_method_router` pins the format.
fn methods_of(router: &MethodRouter) -> Vec<&'static str> {
    const METHODS: [&str; 8] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    let debug = format!("{router:?}");
    let Some(allow) = debug
        .rsplit_once("allow_header: Bytes(b\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(allow, _)| allow)
    else {
        return Vec::new();
    };
    let listed: Vec<&str> = allow.split(',').collect();
    METHODS.into_iter().filter(|m| listed.contains(m)).collect()
}

/// Whether two route paths are the same but for the names of their parameters.
fn same_shape(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        p.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    norm(a) == norm(b)
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.config.bff.name)
            .finish_non_exhaustive()
    }
}

/// `auth = "jwt"` in a build without the `jwt` feature: refused with the validator's message.
fn auth_compiled(auth: AuthKind) -> Result<(), bff_config::FeatureMissing> {
    if auth == AuthKind::Jwt && !cfg!(feature = "jwt") {
        Err(Feature::Jwt.missing(AuthKind::JWT_NEEDS))
    } else if auth == AuthKind::Session && !cfg!(feature = "session") {
        Err(Feature::Session.missing(bff_config::SessionConfig::NEEDS))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[bff]\nname = \"t\"\n";

    /// `App::new` takes a `Validated` config; a `Config` made or changed in code is validated there, and
    /// its errors come back with their keys: a config nobody checked never runs (it used to be built as
    /// it was, here with no request ever admitted).
    #[test]
    fn a_config_changed_in_code_is_validated_by_app_new() {
        let mut config = Loader::new()
            .with_env(Default::default())
            .load_str(CONFIG, bff_config::Format::Toml)
            .unwrap()
            .into_config();
        config.edge.max_concurrency = 0;
        config.bff.shutdown_grace = bff_config::Duration::from_secs(0);
        let Err(StartError::Config(errs)) = App::new(config.clone()) else {
            panic!("an invalid config was accepted");
        };
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["bff.shutdown_grace", "edge.max_concurrency"],
            "{errs}"
        );
        config.edge.max_concurrency = 8;
        config.bff.shutdown_grace = bff_config::Duration::from_secs(1);
        let validated = config.validate().unwrap();
        assert_eq!(
            App::new(validated).unwrap().config().edge.max_concurrency,
            8
        );
    }

    /// A Rust route with `auth = "jwt"` and a config with `[edge.auth.jwt]` made by hand (never validated)
    /// are refused at build, naming the `jwt` feature as the validator does, in a build without it; and
    /// built with it. (`cargo test -p bff` builds it without, the workspace with.)
    #[tokio::test]
    async fn jwt_without_its_feature_is_refused_at_build_with_the_validators_message() {
        let route = App::from_toml(CONFIG)
            .unwrap()
            .route_with(
                "/me",
                Policy::new().auth(AuthKind::Jwt),
                axum::routing::get(|| async { "" }),
            )
            .into_router();
        // The validator's message for a route's `auth`.
        let m = Feature::Jwt.missing(AuthKind::JWT_NEEDS).to_string();
        assert!(
            m.starts_with("auth = \"jwt\" needs the `jwt` feature"),
            "{m}"
        );
        if cfg!(feature = "jwt") {
            assert!(route.is_ok(), "{:?}", route.err());
        } else {
            assert_eq!(route.unwrap_err().to_string(), format!("route /me: {m}"));
        }

        let mut config = Loader::new()
            .with_env(Default::default())
            .load_str(CONFIG, bff_config::Format::Toml)
            .unwrap()
            .into_config();
        let jwt = bff_config::JwtConfig {
            jwks_file: Some("no-such-jwks.json".into()),
            ..Default::default()
        };
        config.edge.auth.jwt = Some(jwt);
        let built = App::new(config).map(drop).unwrap_err().to_string();
        if cfg!(feature = "jwt") {
            // Built, then stopped by the missing JWKS file: the verifier is compiled in.
            assert!(built.contains("no-such-jwks.json"), "{built}");
        } else {
            // Refused by the validation `App::new` runs, naming the key and the feature.
            assert!(
                built.contains(&format!(
                    "edge.auth.jwt: {}",
                    Feature::Jwt.missing(JwtConfig::NEEDS)
                )),
                "{built}"
            );
        }
    }

    /// `[bff.tls]` and `[services.NAME.tls]` in a config made by hand are refused, naming the `tls`
    /// feature, in a build without it (never served in cleartext); with it, their files are read.
    #[tokio::test]
    async fn tls_without_its_feature_is_refused_never_skipped() {
        let load = || {
            Loader::new()
                .with_env(Default::default())
                .load_str(
                    "[bff]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
                    bff_config::Format::Toml,
                )
                .unwrap()
                .into_config()
        };
        let mut config = load();
        config.bff.tls = Some(bff_config::ListenerTlsConfig {
            cert: "no-such-cert.pem".into(),
            key: "no-such-key.pem".into(),
        });
        // Without the feature, `App::new`'s validation refuses it; with it, the files are read at bind.
        let bound = match App::new(config) {
            Ok(app) => app.bind().await.map(drop),
            Err(e) => Err(e),
        };
        let err = bound.unwrap_err().to_string();
        if cfg!(feature = "tls") {
            assert!(err.contains("no-such-cert.pem"), "{err}");
        } else {
            let m = Feature::Tls
                .missing(bff_config::ListenerTlsConfig::NEEDS)
                .to_string();
            assert!(m.contains("needs the `tls` feature"), "{m}");
            assert!(err.contains(&format!("bff.tls: {m}")), "{err}");
        }

        let mut config = load();
        let svc = bff_config::ServiceConfig {
            endpoints: vec!["127.0.0.1:1".parse().unwrap()],
            tls: Some(bff_config::TlsConfig {
                ca: "no-such-ca.pem".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        config.services.insert("s".into(), svc);
        let err = App::new(config).map(drop).unwrap_err().to_string();
        if cfg!(feature = "tls") {
            assert!(err.contains("no-such-ca.pem"), "{err}");
        } else {
            let m = Feature::Tls.missing(bff_config::TlsConfig::NEEDS);
            assert!(err.contains(&format!("services.s.tls: {m}")), "{err}");
        }
    }

    /// axum's format this reads: a change there fails here, not silently back to `*`.
    #[test]
    fn methods_of_a_method_router() {
        use axum::routing::{any, get, post};
        async fn h() {}
        assert_eq!(methods_of(&get(h)), ["GET"]);
        assert_eq!(methods_of(&get(h).post(h)), ["GET", "POST"]);
        assert_eq!(methods_of(&post(h).merge(get(h))), ["GET", "POST"]);
        assert_eq!(
            methods_of(&get(h).layer(tower::layer::util::Identity::new())),
            ["GET"]
        );
        assert!(methods_of(&any(h)).is_empty());
        assert!(methods_of(&MethodRouter::new()).is_empty());
    }
}
