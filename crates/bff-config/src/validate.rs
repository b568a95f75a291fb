//! Validation of what needs the whole [`Config`]: references between sections (routes to services,
//! `auth` to `[edge.auth]`, backends to backends), `depends_on` cycles, placeholders naming real parameters
//! and backends, and values that depend on each other. Every value was parsed into its type at load (one
//! parser a value: `values.rs`, `net.rs`, `template.rs`, `discovery.rs`); errors come back with their key
//! path.

use crate::{Config, LoadBalancer, PathTemplate, RouteConfig, route_params, template::is_name};
use std::collections::{BTreeMap, HashMap, HashSet};

type Errors = Vec<(String, String)>;

pub(crate) fn validate(config: &Config) -> Errors {
    let mut errors = Errors::new();
    let mut err = |key: String, msg: String| errors.push((key, msg));

    let b = &config.bff;
    if b.listen == b.admin_listen && b.listen.port() != 0 {
        err(
            "bff.admin_listen".into(),
            "must differ from bff.listen: the admin listener is never the public port".into(),
        );
    }
    match &b.admin_token {
        Some(t)
            if t.expose().chars().count() < 16 || t.expose().chars().any(char::is_whitespace) =>
        {
            err(
                "bff.admin_token".into(),
                "must be at least 16 characters without spaces (e.g. `openssl rand -hex 32`)"
                    .into(),
            )
        }
        None if !b.admin_listen.ip().is_loopback() => err(
            "bff.admin_token".into(),
            format!(
                "required: bff.admin_listen {:?} is not a loopback address, so POST /admin/* needs a bearer token (e.g. admin_token = \"${{BFF_ADMIN_TOKEN}}\" from a secret)",
                b.admin_listen
            ),
        ),
        _ => {}
    }
    for (i, host) in b.admin_hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ' ', '@', ':', '*']) {
            err(
                format!("bff.admin_hosts[{i}]"),
                format!("{host:?} is not a host name (no port, no wildcard)"),
            );
        }
    }
    if let Some(tls) = &b.tls
        && let Err(m) = tls.require_compiled()
    {
        err("bff.tls".into(), m.to_string());
    }
    if b.shutdown_grace.get().is_zero() {
        err("bff.shutdown_grace".into(), "must be greater than 0".into());
    }

    let e = &config.edge;
    if e.request_timeout.get().is_zero() {
        err(
            "edge.request_timeout".into(),
            "must be greater than 0".into(),
        );
    }
    if e.max_concurrency == 0 {
        err("edge.max_concurrency".into(), "must be at least 1".into());
    }
    if let Some(cors) = &e.cors
        && cors.allow_credentials
    {
        for (i, origin) in cors.allow_origins.iter().enumerate() {
            if *origin == crate::CorsOrigin::Any {
                err(
                    format!("edge.cors.allow_origins[{i}]"),
                    "\"*\" cannot be combined with allow_credentials = true".into(),
                );
            }
        }
    }
    if e.max_headers == 0 {
        err("edge.max_headers".into(), "must be at least 1".into());
    }
    if e.max_header_bytes.bytes() < 8192 {
        err(
            "edge.max_header_bytes".into(),
            "must be at least 8KiB".into(),
        );
    }
    if e.header_timeout.get().is_zero() {
        err(
            "edge.header_timeout".into(),
            "must be greater than 0".into(),
        );
    }
    if e.write_timeout.get().is_zero() {
        err("edge.write_timeout".into(), "must be greater than 0".into());
    }
    if e.idle_timeout.get().is_zero() {
        err("edge.idle_timeout".into(), "must be greater than 0".into());
    }
    if let Some(jwt) = &e.auth.jwt {
        if let Err(m) = jwt.require_compiled() {
            err("edge.auth.jwt".into(), m.to_string());
        }
        if jwt.algorithms.iter().any(|a| a.is_hmac()) && jwt.secret.is_none() {
            err(
                "edge.auth.jwt.secret".into(),
                "HS256/HS384/HS512 need a secret".into(),
            );
        }
        if let Err(m) = jwt.require_compiled_jwks_url() {
            err("edge.auth.jwt.jwks_url".into(), m.to_string());
        }
        if jwt.jwks_file.is_none() && jwt.jwks_url.is_none() {
            err("edge.auth.jwt".into(), "needs jwks_file or jwks_url".into());
        }
    }
    if let Some(rl) = &e.rate_limit {
        check_rate_limit("edge.rate_limit", rl, &mut err);
    }

    if let Some(session) = &config.session {
        crate::session::check(session, &mut err);
    }

    for (name, svc) in &config.services {
        let key = |k: &str| format!("services.{name}.{k}");
        if let Some(mode) = svc.token
            && config.session.is_none()
        {
            let mode = if mode == crate::TokenMode::User {
                "user"
            } else {
                "client"
            };
            err(
                key("token"),
                format!(
                    "token = \"{mode}\" needs [session] (the OpenID Provider the tokens come from)"
                ),
            );
        }
        if let Some(tls) = &svc.tls
            && let Err(m) = tls.require_compiled()
        {
            err(key("tls"), m.to_string());
        }
        if !is_name(name) {
            err(
                format!("services.{name}"),
                "a service name uses letters, digits, `_` and `-`".into(),
            );
        }
        match (&svc.discovery, svc.endpoints.is_empty()) {
            (None, true) => err(
                format!("services.{name}"),
                "needs `endpoints` or `discovery`".into(),
            ),
            (Some(_), false) => err(
                key("discovery"),
                "set either `endpoints` or `discovery`, not both".into(),
            ),
            _ => {}
        }
        if svc.load_balancer == LoadBalancer::RingHash && svc.hash_key.is_none() {
            err(
                key("hash_key"),
                "ring_hash needs a hash_key (header:NAME or param:NAME)".into(),
            );
        }
        if svc.max_in_flight == 0 {
            err(key("max_in_flight"), "must be at least 1".into());
        }
        if svc.timeout.get().is_zero() {
            err(key("timeout"), "must be greater than 0".into());
        }
        if svc.connect_timeout.get().is_zero() {
            err(key("connect_timeout"), "must be greater than 0".into());
        }
        if svc.pool_idle_timeout.get().is_zero() {
            err(key("pool_idle_timeout"), "must be greater than 0".into());
        }
        if let Some(r) = &svc.retry {
            if r.max_attempts == 0 {
                err(
                    key("retry.max_attempts"),
                    "must be at least 1 (the first attempt counts)".into(),
                );
            }
            if !(0.0..=1.0).contains(&r.budget_ratio) {
                err(key("retry.budget_ratio"), "must be between 0 and 1".into());
            }
            if r.max_backoff < r.backoff {
                err(
                    key("retry.max_backoff"),
                    "must not be less than backoff".into(),
                );
            }
        }
        if let Some(crate::HedgeAfter::Fixed(after)) = svc.hedge_after
            && after >= svc.timeout.get()
        {
            err(
                key("hedge_after"),
                format!(
                    "{} is not less than timeout ({}): the first attempt times out before a hedge is sent",
                    crate::Duration(after),
                    svc.timeout
                ),
            );
        }
        if let Some(cb) = &svc.circuit_breaker {
            if !(cb.failure_rate > 0.0 && cb.failure_rate <= 1.0) {
                err(
                    key("circuit_breaker.failure_rate"),
                    "must be in (0, 1]".into(),
                );
            }
            if cb.half_open_probes == 0 {
                err(
                    key("circuit_breaker.half_open_probes"),
                    "must be at least 1".into(),
                );
            }
        }
        if let Some(od) = &svc.outlier_detection {
            if od.max_ejected_percent > 100 {
                err(
                    key("outlier_detection.max_ejected_percent"),
                    "must be at most 100".into(),
                );
            }
            if od.consecutive_failures == 0 {
                err(
                    key("outlier_detection.consecutive_failures"),
                    "must be at least 1".into(),
                );
            }
        }
        if let Some(c) = &svc.cache {
            check_cache(&key("cache"), c, &mut err);
        }
        if let Some(hc) = &svc.health_check {
            if !hc.path.starts_with('/') {
                err(key("health_check.path"), "must start with `/`".into());
            }
            // A zero interval would make the probe loop panic (a tokio interval must be non-zero).
            if hc.interval.get().is_zero() {
                err(
                    key("health_check.interval"),
                    "must be greater than 0".into(),
                );
            }
            if hc.timeout > hc.interval {
                err(
                    key("health_check.timeout"),
                    "must not exceed interval".into(),
                );
            }
        }
    }

    let mut seen_routes = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        validate_route(config, i, route, &mut seen_routes, &mut err);
    }
    errors
}

fn validate_route(
    config: &Config,
    i: usize,
    route: &RouteConfig,
    seen: &mut HashMap<(String, String), usize>,
    err: &mut impl FnMut(String, String),
) {
    let key = |k: &str| format!("routes[{i}].{k}");
    let method = route.method.to_string();
    let params = if !route.path.starts_with('/') {
        err(key("path"), "must start with `/`".into());
        Vec::new()
    } else {
        route_params(&route.path).unwrap_or_else(|m| {
            err(key("path"), m.to_string());
            Vec::new()
        })
    };
    if let Some(first) = seen.insert((method.clone(), route.path.clone()), i) {
        err(
            key("path"),
            format!("{method} {} is already routes[{first}]", route.path),
        );
    }
    if let Some(rl) = &route.rate_limit {
        check_rate_limit(&format!("routes[{i}].rate_limit"), rl, err);
    }
    if let Some(t) = route.timeout
        && t.get().is_zero()
    {
        err(key("timeout"), "must be greater than 0".into());
    }
    match route.auth {
        crate::AuthKind::Jwt => {
            if let Err(m) = route.auth.require_compiled() {
                err(key("auth"), m.to_string());
            } else if config.edge.auth.jwt.is_none() {
                err(key("auth"), "auth = \"jwt\" needs [edge.auth.jwt]".into());
            }
        }
        crate::AuthKind::Session if config.session.is_none() => {
            err(key("auth"), "auth = \"session\" needs [session]".into())
        }
        crate::AuthKind::ApiKey if config.edge.auth.api_keys.is_none() => err(
            key("auth"),
            "auth = \"api_key\" needs [edge.auth.api_keys]".into(),
        ),
        _ => {}
    }
    if let Some(session) = &config.session
        && session.endpoints().contains(&route.path.as_str())
    {
        err(
            key("path"),
            format!("{} is an endpoint of [session]", route.path),
        );
    }
    if route.backends.is_empty() {
        err(key("backends"), "a route needs at least one backend".into());
    }
    if route.etag && !matches!(method.as_str(), "GET" | "HEAD") {
        err(
            key("etag"),
            format!("an ETag is for GET and HEAD routes, not {method}"),
        );
    }

    let names: BTreeMap<&str, usize> = route
        .backends
        .iter()
        .enumerate()
        .map(|(j, b)| (b.name.as_str(), j))
        .collect();
    let mut seen_names = HashSet::new();
    for (j, b) in route.backends.iter().enumerate() {
        let bkey = |k: &str| format!("routes[{i}].backends[{j}].{k}");
        if !is_name(&b.name) || b.name.starts_with('_') {
            err(
                bkey("name"),
                format!(
                    "{:?}: use letters, digits, `_` and `-`, not starting with `_`",
                    b.name
                ),
            );
        }
        if !seen_names.insert(b.name.as_str()) {
            err(
                bkey("name"),
                format!("backend {:?} appears twice in this route", b.name),
            );
        }
        if !config.services.contains_key(&b.service) {
            err(
                bkey("service"),
                format!(
                    "unknown service {:?} (no [services.{}])",
                    b.service, b.service
                ),
            );
        }
        if b.select.is_some() && b.fields.is_some() {
            err(
                bkey("fields"),
                "set either `select` or `fields`, not both".into(),
            );
        }
        for (d, dep) in b.depends_on.iter().enumerate() {
            if !names.contains_key(dep.as_str()) {
                err(
                    format!("routes[{i}].backends[{j}].depends_on[{d}]"),
                    format!("unknown backend {dep:?}"),
                );
            } else if dep == &b.name {
                err(
                    format!("routes[{i}].backends[{j}].depends_on[{d}]"),
                    "a backend cannot depend on itself".into(),
                );
            }
        }
        if let Some(c) = &b.cache {
            check_cache(&bkey("cache"), c, err);
        }
        for (on, what) in [(b.coalesce, "coalesce"), (b.cache.is_some(), "cache")] {
            if on && b.method != crate::HttpMethod::GET {
                err(
                    bkey(what),
                    format!("only GET calls are coalesced and cached, not {}", b.method),
                );
            }
        }
        for p in b.path.placeholders() {
            let is_param = params.contains(&p.head) && PathTemplate::is_param(p);
            let is_dep = b.depends_on.contains(&p.head);
            if !is_param && !is_dep {
                let hint = if names.contains_key(p.head.as_str()) {
                    format!("; add {:?} to depends_on", p.head)
                } else {
                    String::new()
                };
                err(
                    bkey("path"),
                    format!(
                        "unknown placeholder {{{}}}: not a parameter of {} nor a backend in depends_on{hint}",
                        p.raw, route.path
                    ),
                );
            }
        }
    }
    // Cycles in depends_on.
    if let Some(cycle) = find_cycle(route) {
        err(
            key("backends"),
            format!("depends_on forms a cycle: {}", cycle.join(" -> ")),
        );
    }
}

impl crate::CacheConfig {
    /// Checks a cache built in code (`bff_mesh::Cache::new`) as a config file's is checked.
    pub fn check(&self, prefix: &str) -> Result<(), crate::InvalidValue> {
        let mut problems = Vec::new();
        check_cache(prefix, self, &mut |key: String, msg: String| {
            problems.push(format!("{key}: {msg}"))
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; ").into())
        }
    }
}

/// A cache's bounds and times. Each entry weighs at least `max_bytes / max_entries` (so the byte bound
/// implies the entry bound), a weight that must fit the cache's 32 bits.
fn check_cache(prefix: &str, c: &crate::CacheConfig, err: &mut impl FnMut(String, String)) {
    let key = |k: &str| format!("{prefix}.{k}");
    if c.ttl.get().is_zero() {
        err(key("ttl"), "must be greater than 0".into());
    }
    if c.max_entries == 0 {
        err(key("max_entries"), "must be at least 1".into());
    }
    if c.max_bytes.bytes() < 1024 {
        err(key("max_bytes"), "must be at least 1KiB".into());
    } else if c.max_entries > 0 && c.max_bytes.bytes() / c.max_entries > u64::from(u32::MAX) {
        err(
            key("max_bytes"),
            format!(
                "{} for {} entries is over 4GiB an entry: raise max_entries",
                c.max_bytes, c.max_entries
            ),
        );
    }
}

impl crate::RateLimitConfig {
    /// Checks a limit built in code (a Rust route's `Policy`) as a config file's is checked: every
    /// problem, each with the key it concerns under `prefix`.
    pub fn check(&self, prefix: &str) -> Result<(), crate::InvalidValue> {
        let mut problems = Vec::new();
        check_rate_limit(prefix, self, &mut |key: String, msg: String| {
            problems.push(format!("{key}: {msg}"))
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; ").into())
        }
    }
}

fn check_rate_limit(
    prefix: &str,
    rl: &crate::RateLimitConfig,
    err: &mut impl FnMut(String, String),
) {
    if rl.per_second == 0 {
        err(format!("{prefix}.per_second"), "must be at least 1".into());
    }
    if rl.burst == 0 {
        err(format!("{prefix}.burst"), "must be at least 1".into());
    }
}

fn find_cycle(route: &RouteConfig) -> Option<Vec<String>> {
    let deps: HashMap<&str, &Vec<String>> = route
        .backends
        .iter()
        .map(|b| (b.name.as_str(), &b.depends_on))
        .collect();
    // 0 unvisited, 1 on the stack, 2 done
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn dfs<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a Vec<String>>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for d in deps.get(n).map(|v| v.as_slice()).unwrap_or_default() {
            let d = d.as_str();
            match state.get(d).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| *s == d).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(d.to_string());
                    return Some(cycle);
                }
                0 if deps.contains_key(d) => {
                    if let Some(c) = dfs(d, deps, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for b in &route.backends {
        if state.get(b.name.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = dfs(&b.name, &deps, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    /// `[edge.auth.jwt]` and `auth = "jwt"` need the `jwt` feature: refused with line and key, naming it,
    /// when built without it; accepted with it. (Passes both ways: `cargo test -p bff-config` builds it
    /// without, the workspace with.)
    #[test]
    fn jwt_compiled_out_is_refused_naming_its_feature_with_line_and_key() {
        let text = r#"[edge.auth.jwt]
jwks_file = "k.json"
[services.s]
endpoints = ["h:1"]
[[routes]]
path = "/me"
auth = "jwt"
[[routes.backends]]
name = "b"
service = "s"
path = "/b"
"#;
        let loaded = crate::Loader::new()
            .with_env(Default::default())
            .load_str(text, crate::Format::Toml);
        assert_eq!(crate::Feature::Jwt.name(), "jwt");
        if crate::Feature::Jwt.enabled() {
            assert!(loaded.is_ok(), "{}", loaded.unwrap_err());
            assert_eq!(crate::AuthKind::Jwt.require_compiled(), Ok(()));
            return;
        }
        let errs = loaded.unwrap_err();
        let found: Vec<(Option<usize>, &str)> =
            errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            [(Some(1), "edge.auth.jwt"), (Some(7), "routes[0].auth")],
            "{errs}"
        );
        for e in &errs.0 {
            assert!(e.message.contains("needs the `jwt` feature of bff"), "{e}");
            assert!(e.message.contains(r#"features = ["jwt"]"#), "{e}");
        }
        let route = crate::AuthKind::Jwt
            .require_compiled()
            .unwrap_err()
            .to_string();
        assert_eq!(route, errs.0[1].message);
        assert!(
            route.starts_with("auth = \"jwt\" needs the `jwt` feature"),
            "{route}"
        );
        assert_eq!(crate::AuthKind::ApiKey.require_compiled(), Ok(()));
    }

    /// `[bff.tls]`, `[services.NAME.tls]` and an `https://` `jwks_url` need the `tls` feature: refused with
    /// line and key, naming it, when built without it; accepted with it.
    #[test]
    fn tls_compiled_out_is_refused_naming_its_feature_with_line_and_key() {
        let text = r#"[bff]
name = "t"
[bff.tls]
cert = "c.pem"
key = "k.pem"
[edge.auth.jwt]
jwks_url = "https://idp.test/jwks.json"
[services.s]
endpoints = ["h:1"]
[services.s.tls]
ca = "ca.pem"
"#;
        let loaded = crate::Loader::new()
            .with_env(Default::default())
            .load_str(text, crate::Format::Toml);
        assert_eq!(crate::Feature::Tls.name(), "tls");
        // (Without the `jwt` feature, [edge.auth.jwt] has an error of its own.)
        let errs: Vec<crate::ConfigError> = loaded.err().map(|e| e.0).unwrap_or_default();
        let tls: Vec<_> = errs
            .iter()
            .filter(|e| e.message.contains("needs the `tls` feature of bff"))
            .collect();
        if crate::Feature::Tls.enabled() {
            assert!(tls.is_empty(), "{errs:?}");
            return;
        }
        let found: Vec<(Option<usize>, &str)> =
            tls.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (Some(3), "bff.tls"),
                (Some(7), "edge.auth.jwt.jwks_url"),
                (Some(10), "services.s.tls"),
            ],
            "{errs:?}"
        );
        assert!(
            tls[1].message.starts_with(crate::JwtConfig::HTTPS_NEEDS),
            "{:?}",
            tls[1]
        );
        let plain = crate::JwtConfig {
            jwks_url: Some("http://idp.test/jwks.json".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(plain.require_compiled_jwks_url(), Ok(()));
    }
}
