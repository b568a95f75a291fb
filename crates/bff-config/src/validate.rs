//! Validation of a typed [`Config`]: every value and reference checked, every error returned with its key
//! path. Also the parser of downstream path templates, shared with the aggregation engine.

use crate::{Config, LoadBalancer, RouteConfig};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

/// A downstream path template such as `/orders?userId={user_id}` or `/recommendations/{user.category}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Placeholder(Placeholder),
}

/// `{name}` or `{backend.json.path}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// The text between the braces.
    pub raw: String,
    /// The first name: a route parameter or a backend.
    pub head: String,
    /// The rest as a JSONPath (`$.json.path`), or `$` when there is none.
    pub json_path: String,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?
                + open;
            let raw = rest[open + 1..close].trim();
            if raw.is_empty() {
                return Err(format!("empty placeholder `{{}}` in {template:?}"));
            }
            let split = raw.find(['.', '[']).unwrap_or(raw.len());
            let head = &raw[..split];
            let tail = &raw[split..];
            if !is_name(head) {
                return Err(format!("invalid placeholder `{{{raw}}}` in {template:?}"));
            }
            let json_path = format!("${tail}");
            if !tail.is_empty() {
                jsonpath_rust::parser::parse_json_path(&json_path)
                    .map_err(|e| format!("invalid placeholder `{{{raw}}}`: {}", one_line(&e)))?;
            }
            segments.push(Segment::Placeholder(Placeholder {
                raw: raw.to_string(),
                head: head.to_string(),
                json_path,
            }));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched `}}` in {template:?}"));
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        Ok(Self { segments })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p),
            Segment::Literal(_) => None,
        })
    }
}

/// Multi-line parser messages folded into one line.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The parameter names of a route path (`/a/{id}/{*rest}` -> `id`, `rest`).
pub fn route_params(path: &str) -> Result<Vec<String>, String> {
    let mut params = Vec::new();
    for seg in path.split('/') {
        if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = inner.strip_prefix('*').unwrap_or(inner);
            if !is_name(name) {
                return Err(format!("invalid path parameter `{seg}`"));
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("path parameter `{name}` appears twice"));
            }
            params.push(name.to_string());
        } else if seg.contains(['{', '}']) {
            return Err(format!(
                "a path parameter must be a whole segment, like `/users/{{id}}`, not `{seg}`"
            ));
        }
    }
    Ok(params)
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

type Errors = Vec<(String, String)>;

pub(crate) fn validate(config: &Config) -> Errors {
    let mut errors = Errors::new();
    let mut err = |key: String, msg: String| errors.push((key, msg));

    let b = &config.bff;
    if b.name.trim().is_empty() {
        err("bff.name".into(), "must not be empty".into());
    } else if http::HeaderValue::from_str(&b.name).is_err() {
        // The mesh sends it as user-agent.
        err(
            "bff.name".into(),
            format!(
                "{:?} has control characters; it is sent as user-agent",
                b.name
            ),
        );
    }
    let listen = check_addr(&b.listen)
        .map_err(|e| err("bff.listen".into(), e))
        .ok();
    let admin = check_addr(&b.admin_listen)
        .map_err(|e| err("bff.admin_listen".into(), e))
        .ok();
    if let (Some(l), Some(a)) = (listen, admin)
        && l == a
        && l.port() != 0
    {
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
        None if admin.is_some_and(|a| !a.ip().is_loopback()) => err(
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
        err("bff.tls".into(), m);
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
            err("edge.auth.jwt".into(), m);
        }
        if jwt.algorithms.iter().any(|a| a.is_hmac()) && jwt.secret.is_none() {
            err(
                "edge.auth.jwt.secret".into(),
                "HS256/HS384/HS512 need a secret".into(),
            );
        }
        if let Err(m) = jwt.require_compiled_jwks_url() {
            err("edge.auth.jwt.jwks_url".into(), m);
        }
        if jwt.jwks_file.is_none() && jwt.jwks_url.is_none() {
            err("edge.auth.jwt".into(), "needs jwks_file or jwks_url".into());
        }
    }
    if let Some(rl) = &e.rate_limit {
        check_rate_limit("edge.rate_limit", rl, &mut err);
    }

    for (name, svc) in &config.services {
        let key = |k: &str| format!("services.{name}.{k}");
        if let Some(tls) = &svc.tls
            && let Err(m) = tls.require_compiled()
        {
            err(key("tls"), m);
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
        if let Some(hc) = &svc.health_check {
            if !hc.path.starts_with('/') {
                err(key("health_check.path"), "must start with `/`".into());
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
    let method = route.method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        err(
            key("method"),
            format!("{:?} is not one of {}", route.method, METHODS.join(", ")),
        );
    }
    let params = if !route.path.starts_with('/') {
        err(key("path"), "must start with `/`".into());
        Vec::new()
    } else {
        route_params(&route.path).unwrap_or_else(|m| {
            err(key("path"), m);
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
                err(key("auth"), m);
            } else if config.edge.auth.jwt.is_none() {
                err(key("auth"), "auth = \"jwt\" needs [edge.auth.jwt]".into());
            }
        }
        crate::AuthKind::ApiKey if config.edge.auth.api_keys.is_none() => err(
            key("auth"),
            "auth = \"api_key\" needs [edge.auth.api_keys]".into(),
        ),
        _ => {}
    }
    if route.backends.is_empty() {
        err(key("backends"), "a route needs at least one backend".into());
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
        if !METHODS.contains(&b.method.to_ascii_uppercase().as_str()) {
            err(
                bkey("method"),
                format!("{:?} is not one of {}", b.method, METHODS.join(", ")),
            );
        }
        if b.select.is_some() && b.fields.is_some() {
            err(
                bkey("fields"),
                "set either `select` or `fields`, not both".into(),
            );
        }
        if let Some(sel) = &b.select
            && let Err(e) = jsonpath_rust::parser::parse_json_path(sel)
        {
            err(
                bkey("select"),
                format!("invalid JSONPath {sel:?}: {}", one_line(&e)),
            );
        }
        for (f, path) in b.fields.iter().flatten() {
            if let Err(e) = jsonpath_rust::parser::parse_json_path(path) {
                err(
                    format!("routes[{i}].backends[{j}].fields.{f}"),
                    format!("invalid JSONPath {path:?}: {}", one_line(&e)),
                );
            }
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
        if !b.path.starts_with('/') {
            err(bkey("path"), "must start with `/`".into());
        }
        match PathTemplate::parse(&b.path) {
            Err(m) => err(bkey("path"), m),
            Ok(t) => {
                for p in t.placeholders() {
                    let is_param = params.contains(&p.head) && p.json_path == "$";
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

impl crate::RateLimitConfig {
    /// Checks a limit built in code (a Rust route's `Policy`) as a config file's is checked: every
    /// problem, each with the key it concerns under `prefix`.
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        check_rate_limit(prefix, self, &mut |key: String, msg: String| {
            problems.push(format!("{key}: {msg}"))
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
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

/// A `discovery` URL of `[services.NAME]`, parsed. Validation and the mesh use this one parser, so that
/// what `bff check` accepts is what the mesh runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryUrl {
    /// `dns://host:port[?nameserver=IP[:PORT]]`: every A and AAAA record of `host`, each an endpoint on
    /// `port`.
    Dns {
        host: String,
        port: u16,
        /// Empty: the system's resolver configuration (`/etc/resolv.conf`).
        nameservers: Vec<SocketAddr>,
    },
    /// `dns+srv://_service._proto.name[?nameserver=...]`: every SRV record, its target resolved (A/AAAA)
    /// and paired with its port.
    DnsSrv {
        name: String,
        nameservers: Vec<SocketAddr>,
    },
    /// `file://path`: a watched JSON file (relative paths from the config file's folder).
    File(String),
    /// `etcd://host:port[,host:port...]/prefix`: every key under the prefix (which starts with `/`).
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl DiscoveryUrl {
    /// Parses a `discovery` URL, and refuses one whose source this binary was built without (naming the
    /// cargo feature).
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = Self::parse_syntax(url)?;
        if let Some(f) = parsed.feature() {
            f.require(&format!(
                "{:?} ({}:// discovery)",
                crate::redact_url(url),
                f.name()
            ))?;
        }
        Ok(parsed)
    }

    /// The cargo feature that implements this source, if it is optional.
    pub fn feature(&self) -> Option<crate::Feature> {
        match self {
            Self::Dns { .. } | Self::DnsSrv { .. } => Some(crate::Feature::Dns),
            Self::Etcd { .. } => Some(crate::Feature::Etcd),
            Self::File(_) => None,
        }
    }

    fn parse_syntax(url: &str) -> Result<Self, String> {
        // Errors show the URL without its credentials.
        let shown = crate::redact_url(url);
        if let Some(rest) = url.strip_prefix("dns+srv://") {
            let (name, nameservers) = dns_query(url, rest)?;
            if name.contains(':') {
                return Err(format!(
                    "{shown:?}: dns+srv:// takes a name without a port (the SRV records give the ports), \
                     e.g. dns+srv://_http._tcp.users.example"
                ));
            }
            check_dns_name(url, name)?;
            return Ok(Self::DnsSrv {
                name: name.to_string(),
                nameservers,
            });
        }
        if let Some(rest) = url.strip_prefix("dns://") {
            let (hostport, nameservers) = dns_query(url, rest)?;
            let Some((host, port)) = hostport.rsplit_once(':') else {
                return Err(format!(
                    "{shown:?} needs a port: dns://host:port (e.g. dns://users.example:8080)"
                ));
            };
            check_dns_name(url, host)?;
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{shown:?}: the port must be 1-65535")),
            };
            return Ok(Self::Dns {
                host: host.to_string(),
                port,
                nameservers,
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(format!(
                    "{shown:?} needs a path: file://path/to/endpoints.json"
                ));
            }
            return Ok(Self::File(path.to_string()));
        }
        if let Some(rest) = url.strip_prefix("etcd://") {
            let form = "etcd://host:port[,host:port...]/prefix";
            let Some(slash) = rest.find('/') else {
                return Err(format!("{shown:?} needs a key prefix: {form}"));
            };
            let (hosts, prefix) = rest.split_at(slash);
            if prefix.len() < 2 {
                return Err(format!(
                    "{shown:?}: the key prefix after the address must not be empty ({form})"
                ));
            }
            if prefix.contains(['?', '#']) {
                return Err(format!("{shown:?}: an etcd URL takes no query ({form})"));
            }
            let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
            for e in &endpoints {
                e.parse::<crate::HostPort>()
                    .map_err(|m| format!("{shown:?}: {m} ({form})"))?;
            }
            return Ok(Self::Etcd {
                endpoints,
                prefix: prefix.to_string(),
            });
        }
        Err(format!(
            "{shown:?} is not dns://host:port, dns+srv://name, file://path or etcd://host:port/prefix"
        ))
    }
}

impl std::str::FromStr for DiscoveryUrl {
    type Err = String;
    fn from_str(url: &str) -> Result<Self, String> {
        Self::parse(url)
    }
}

impl std::fmt::Display for DiscoveryUrl {
    /// The URL as written (normalised), without credentials or query values shown in full.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nameservers = |f: &mut std::fmt::Formatter<'_>, ns: &[SocketAddr]| {
            for (i, n) in ns.iter().enumerate() {
                f.write_str(if i == 0 { "?nameserver=" } else { "," })?;
                write!(f, "{n}")?;
            }
            Ok(())
        };
        match self {
            Self::Dns {
                host,
                port,
                nameservers: ns,
            } => {
                write!(f, "dns://{host}:{port}")?;
                nameservers(f, ns)
            }
            Self::DnsSrv {
                name,
                nameservers: ns,
            } => {
                write!(f, "dns+srv://{name}")?;
                nameservers(f, ns)
            }
            Self::File(path) => write!(f, "file://{path}"),
            Self::Etcd { endpoints, prefix } => {
                write!(f, "etcd://{}{prefix}", endpoints.join(","))
            }
        }
    }
}

from_str_serde!(
    DiscoveryUrl,
    "a URL such as \"dns://users.internal:8080\" or \"file://endpoints.json\""
);

/// Splits `?nameserver=IP[:PORT]` (repeated, or comma-separated) off a DNS discovery URL.
fn dns_query<'a>(url: &str, rest: &'a str) -> Result<(&'a str, Vec<SocketAddr>), String> {
    let shown = crate::redact_url(url);
    let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut nameservers = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some(("nameserver", value)) = pair.split_once('=') else {
            return Err(format!(
                "{shown:?}: unknown query {pair:?}; the only one is nameserver=IP[:PORT]"
            ));
        };
        for ns in value.split(',') {
            let addr = ns
                .parse::<SocketAddr>()
                .or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    format!(
                        "{shown:?}: nameserver {ns:?} is not an IP address with an optional port \
                         (\"127.0.0.1:5353\", \"10.0.0.2\", \"[::1]:53\")"
                    )
                })?;
            nameservers.push(addr);
        }
    }
    Ok((target, nameservers))
}

fn check_dns_name(url: &str, name: &str) -> Result<(), String> {
    let shown = crate::redact_url(url);
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{shown:?}: {name:?} is not a DNS name"))
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

fn check_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an address like \"127.0.0.1:8080\" or \"[::1]:8080\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = PathTemplate::parse("/orders?userId={user_id}&c={user.profile.cat}").unwrap();
        assert_eq!(t.segments.len(), 4);
        let ps: Vec<_> = t.placeholders().collect();
        assert_eq!(ps[0].head, "user_id");
        assert_eq!(ps[0].json_path, "$");
        assert_eq!(ps[1].head, "user");
        assert_eq!(ps[1].json_path, "$.profile.cat");
        assert!(PathTemplate::parse("/a/{b").is_err());
        assert!(PathTemplate::parse("/a/{}").is_err());
        assert!(PathTemplate::parse("/a/b}").is_err());
    }

    #[test]
    fn discovery_urls() {
        assert_eq!(
            DiscoveryUrl::parse_syntax("dns://users.test:8080?nameserver=127.0.0.1:5353").unwrap(),
            DiscoveryUrl::Dns {
                host: "users.test".into(),
                port: 8080,
                nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax(
                "dns+srv://_http._tcp.users.test.?nameserver=10.0.0.2,[::1]:53"
            )
            .unwrap(),
            DiscoveryUrl::DnsSrv {
                name: "_http._tcp.users.test.".into(),
                nameservers: vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()],
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax("etcd://10.0.0.5:2379,10.0.0.6:2379/services/users/")
                .unwrap(),
            DiscoveryUrl::Etcd {
                endpoints: vec!["10.0.0.5:2379".into(), "10.0.0.6:2379".into()],
                prefix: "/services/users/".into(),
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax("file://eps.json").unwrap(),
            DiscoveryUrl::File("eps.json".into())
        );
        for (bad, says) in [
            ("dns://users.test", "needs a port"),
            ("dns://users.test:0", "port must be"),
            ("dns://users..test:80", "not a DNS name"),
            (
                "dns://users.test:80?nameserver=dns.local",
                "is not an IP address",
            ),
            ("dns://users.test:80?ns=10.0.0.1", "unknown query"),
            ("dns+srv://users.test:80", "without a port"),
            ("etcd://10.0.0.5:2379", "needs a key prefix"),
            ("etcd://10.0.0.5:2379/", "must not be empty"),
            ("etcd://10.0.0.5/x", "not host:port"),
            ("file://", "needs a path"),
            ("zk://x", "is not dns://"),
        ] {
            let e = DiscoveryUrl::parse_syntax(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_source_compiled_out_is_refused_naming_its_feature() {
        for (url, feature) in [
            ("etcd://127.0.0.1:2379/services/users/", "etcd"),
            ("dns://users.test:8080", "dns"),
            ("dns+srv://_http._tcp.users.test", "dns"),
        ] {
            let f = DiscoveryUrl::parse_syntax(url).unwrap().feature().unwrap();
            assert_eq!(f.name(), feature);
            match DiscoveryUrl::parse(url) {
                Ok(_) => assert!(f.enabled(), "{url} accepted without its feature"),
                Err(e) => {
                    assert!(!f.enabled(), "{url}: {e}");
                    assert!(e.contains(&format!("needs the `{feature}` feature")), "{e}");
                }
            }
        }
        assert!(
            DiscoveryUrl::parse("file://eps.json")
                .unwrap()
                .feature()
                .is_none()
        );
    }

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
        let route = crate::AuthKind::Jwt.require_compiled().unwrap_err();
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

    #[test]
    fn params() {
        assert_eq!(route_params("/a/{id}/{*rest}").unwrap(), ["id", "rest"]);
        assert!(route_params("/a/x{id}").is_err());
        assert!(route_params("/a/{id}/{id}").is_err());
    }
}
