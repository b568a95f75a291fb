//! Metrics in the Prometheus text format, lock-free on the hot path: every label set a request can touch
//! (route, service) is registered when the BFF is built and handed out as an `Arc` of atomics, so recording
//! is a few relaxed atomic adds; statuses and outcomes index fixed arrays. Label values are route templates
//! and service names, never raw paths or client input.
//!
//! Encoded by hand rather than by prometheus-client, not for speed: recording a request costs the same
//! with its pre-resolved counter and histogram (17.2 ns against 17.9 ns), but its encoder writes
//! OpenMetrics only (`# EOF`, `_total` added to counter names), which would change the text that scrapers
//! and dashboards read, and it adds 3 crates to the build (docs/performance.md, "Hand-written or a crate:
//! the decisions").

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The metrics of one route (its template, and method).
#[derive(Debug)]
pub struct RouteMetrics {
    route: Arc<str>,
    method: String,
    /// Responses by status code, 100..=599.
    statuses: Box<[AtomicU64]>,
    pub duration: Histogram,
    pub rate_limited: AtomicU64,
    /// Partial responses, by the backend that failed.
    partial: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
}

impl RouteMetrics {
    fn new(route: &str, method: &str) -> Self {
        Self {
            route: route.into(),
            method: method.to_string(),
            statuses: (100..600).map(|_| AtomicU64::new(0)).collect(),
            duration: Histogram::default(),
            rate_limited: AtomicU64::new(0),
            partial: RwLock::new(BTreeMap::new()),
        }
    }

    /// The route template (its label).
    pub fn template(&self) -> Arc<str> {
        self.route.clone()
    }

    /// The method label: `GET`, ..., or `*` for a route whose methods are not known.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// A response of this route.
    pub fn record(&self, status: u16, elapsed: Duration) {
        if let Some(c) = status
            .checked_sub(100)
            .and_then(|i| self.statuses.get(i as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(elapsed);
    }

    /// Registers a backend whose failures make partial responses (at build time).
    pub fn partial_counter(&self, backend: &str) -> Arc<AtomicU64> {
        let Ok(mut p) = self.partial.write() else {
            return Arc::default();
        };
        p.entry(backend.to_string()).or_default().clone()
    }

    /// Counts a partial response caused by `backend`, registering it on its first failure: a Rust route's
    /// optional backends are known only when one fails. `backend` is a name from the code, never client
    /// input (it is a label).
    pub fn count_partial(&self, backend: &str) {
        if let Ok(p) = self.partial.read()
            && let Some(c) = p.get(backend)
        {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.partial_counter(backend)
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The outcome of a downstream attempt, as `bff_upstream_requests_total{outcome}` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Status4xx,
    Status5xx,
    ConnectError,
    Reset,
    Timeout,
    DeadlineExceeded,
    MalformedResponse,
    /// Refused without touching the network (no endpoint, circuit open, `max_in_flight`).
    FastFail,
}

impl Outcome {
    /// Every outcome, in the order `/metrics` lists them.
    pub const ALL: [Self; 9] = [
        Self::Success,
        Self::Status4xx,
        Self::Status5xx,
        Self::ConnectError,
        Self::Reset,
        Self::Timeout,
        Self::DeadlineExceeded,
        Self::MalformedResponse,
        Self::FastFail,
    ];

    /// Its `outcome` label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::ConnectError => "connect_error",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::MalformedResponse => "malformed_response",
            Self::FastFail => "fast_fail",
        }
    }
}

/// How a cached call was served, as `bff_cache_requests_total{result}` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// A fresh entry answered.
    Hit,
    /// No usable entry: the service answered (and the entry was stored when it could be).
    Miss,
    /// A stale entry answered (stale-while-revalidate, or stale-if-error).
    Stale,
    /// A stale entry was revalidated (`304 Not Modified`) and answered.
    Revalidated,
}

impl CacheResult {
    /// Every result, in the order `/metrics` lists them.
    pub const ALL: [Self; 4] = [Self::Hit, Self::Miss, Self::Stale, Self::Revalidated];

    /// Its `result` label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
        }
    }
}

/// The metrics of one downstream service.
#[derive(Debug)]
pub struct ServiceMetrics {
    service: String,
    /// By [`Outcome`], as its discriminant.
    outcomes: [AtomicU64; Outcome::ALL.len()],
    pub duration: Histogram,
    pub retries: AtomicU64,
    pub retries_refused: AtomicU64,
    pub hedges: AtomicU64,
    /// Cached calls, by [`CacheResult`], as its discriminant.
    cache: [AtomicU64; CacheResult::ALL.len()],
    /// Calls that joined an identical call in flight instead of making their own.
    pub coalesced: AtomicU64,
    /// Discovery attempts that failed (a file refused, a DNS or etcd error): the last good endpoints
    /// stayed.
    pub discovery_failures: AtomicU64,
    /// Requests sent again at once, within their attempt: refused unprocessed by the service, or on a
    /// connection that closed before an answer.
    pub resends: AtomicU64,
}

impl ServiceMetrics {
    fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            outcomes: Default::default(),
            duration: Histogram::default(),
            retries: AtomicU64::new(0),
            retries_refused: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            cache: Default::default(),
            coalesced: AtomicU64::new(0),
            discovery_failures: AtomicU64::new(0),
            resends: AtomicU64::new(0),
        }
    }

    /// An attempt's outcome and latency.
    pub fn record(&self, outcome: Outcome, elapsed: Option<Duration>) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(e) = elapsed {
            self.duration.observe(e);
        }
    }

    /// How a cached call was served.
    pub fn record_cache(&self, result: CacheResult) {
        self.cache[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Cached calls served so far as `result`.
    pub fn cache_count(&self, result: CacheResult) -> u64 {
        self.cache[result as usize].load(Ordering::Relaxed)
    }
}

/// Gauges read when scraped (breaker states, ejections) are written by the caller into the same text.
#[derive(Debug)]
pub struct Metrics {
    routes: RwLock<Vec<Arc<RouteMetrics>>>,
    services: RwLock<BTreeMap<String, Arc<ServiceMetrics>>>,
    pub inflight: AtomicI64,
    pub shed: AtomicU64,
    /// Requests whose handler panicked (answered 500).
    pub handler_panics: AtomicU64,
    /// Responses to requests that matched no route (404, 405, preflights, refused paths).
    pub unmatched: Arc<RouteMetrics>,
    pub reloads: AtomicU64,
    /// Spans not exported: queue full or collector unreachable.
    pub spans_dropped: Arc<AtomicU64>,
    pub spans_exported: Arc<AtomicU64>,
    /// Rate-limit checks a local bucket decided because the shared store (Redis) failed.
    pub rate_limit_store_fallbacks: Arc<AtomicU64>,
    /// Browser sessions (`[session]`): shown once sessions are configured.
    pub sessions: Arc<SessionMetrics>,
}

/// The metrics of browser sessions.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    /// Set when `[session]` is configured: the series are rendered from then on.
    pub enabled: std::sync::atomic::AtomicBool,
    /// Sessions this instance created and has not seen end (its own view of a shared store).
    pub active: AtomicI64,
    /// Refreshes of access tokens that succeeded.
    pub refresh_ok: AtomicU64,
    /// Refreshes refused by the provider (the session ended).
    pub refresh_failed: AtomicU64,
    /// Refreshes that could not reach the provider (the session kept).
    pub refresh_error: AtomicU64,
    /// Session requests refused for a missing CSRF header or a foreign `Origin`.
    pub csrf_rejected: AtomicU64,
}

impl SessionMetrics {
    fn render(&self, out: &mut String) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        single(
            out,
            "bff_sessions_active",
            "gauge",
            "Browser sessions created by this instance and not ended (this instance's view).",
            self.active.load(Ordering::Relaxed).max(0),
        );
        header(
            out,
            "bff_session_refresh_total",
            "counter",
            "Access token refreshes, by outcome (ok, failed: refused and the session ended, error: provider unreachable).",
        );
        for (outcome, c) in [
            ("ok", &self.refresh_ok),
            ("failed", &self.refresh_failed),
            ("error", &self.refresh_error),
        ] {
            let _ = writeln!(
                out,
                "bff_session_refresh_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        single(
            out,
            "bff_csrf_rejected_total",
            "counter",
            "Session requests refused for a missing CSRF header or a foreign Origin.",
            self.csrf_rejected.load(Ordering::Relaxed),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            routes: RwLock::default(),
            services: RwLock::default(),
            inflight: AtomicI64::new(0),
            shed: AtomicU64::new(0),
            handler_panics: AtomicU64::new(0),
            unmatched: Arc::new(RouteMetrics::new("unmatched", "*")),
            reloads: AtomicU64::new(0),
            spans_dropped: Arc::default(),
            spans_exported: Arc::default(),
            rate_limit_store_fallbacks: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// The metrics of a route, registered once when routes are built.
    pub fn route(&self, route: &str, method: &str) -> Arc<RouteMetrics> {
        let Ok(mut routes) = self.routes.write() else {
            return Arc::new(RouteMetrics::new(route, method));
        };
        if let Some(r) = routes
            .iter()
            .find(|r| &*r.route == route && r.method == method)
        {
            return r.clone();
        }
        let r = Arc::new(RouteMetrics::new(route, method));
        routes.push(r.clone());
        r
    }

    /// The metrics of a service, registered once when the mesh is built.
    pub fn service(&self, service: &str) -> Arc<ServiceMetrics> {
        let Ok(mut services) = self.services.write() else {
            return Arc::new(ServiceMetrics::new(service));
        };
        services
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(ServiceMetrics::new(service)))
            .clone()
    }

    /// Everything recorded, in the Prometheus text format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let routes: Vec<Arc<RouteMetrics>> = self
            .routes
            .read()
            .map(|r| {
                r.iter()
                    .cloned()
                    .chain(std::iter::once(self.unmatched.clone()))
                    .collect()
            })
            .unwrap_or_default();
        header(
            out,
            "bff_requests_total",
            "counter",
            "Requests answered, by route template, method and status.",
        );
        for r in &routes {
            for (i, c) in r.statuses.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "bff_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                        esc(&r.route),
                        esc(&r.method),
                        i + 100
                    );
                }
            }
        }
        header(
            out,
            "bff_request_duration_seconds",
            "histogram",
            "Time to answer a request, by route template.",
        );
        for r in &routes {
            r.duration.render(
                out,
                "bff_request_duration_seconds",
                &format!("route=\"{}\",method=\"{}\"", esc(&r.route), esc(&r.method)),
            );
        }
        header(
            out,
            "bff_rate_limited_total",
            "counter",
            "Requests refused with 429, by route template.",
        );
        for r in &routes {
            let _ = writeln!(
                out,
                "bff_rate_limited_total{{route=\"{}\"}} {}",
                esc(&r.route),
                r.rate_limited.load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "bff_partial_responses_total",
            "counter",
            "Responses missing an optional backend, by route and backend.",
        );
        for r in &routes {
            if let Ok(p) = r.partial.read() {
                for (backend, c) in p.iter() {
                    let _ = writeln!(
                        out,
                        "bff_partial_responses_total{{route=\"{}\",backend=\"{}\"}} {}",
                        esc(&r.route),
                        esc(backend),
                        c.load(Ordering::Relaxed)
                    );
                }
            }
        }
        let services: Vec<Arc<ServiceMetrics>> = self
            .services
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        header(
            out,
            "bff_upstream_requests_total",
            "counter",
            "Downstream attempts, by service and outcome.",
        );
        for s in &services {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "bff_upstream_requests_total{{service=\"{}\",outcome=\"{}\"}} {}",
                    esc(&s.service),
                    outcome.name(),
                    s.outcomes[outcome as usize].load(Ordering::Relaxed)
                );
            }
        }
        header(
            out,
            "bff_upstream_request_duration_seconds",
            "histogram",
            "Time of a downstream attempt, by service.",
        );
        for s in &services {
            s.duration.render(
                out,
                "bff_upstream_request_duration_seconds",
                &format!("service=\"{}\"", esc(&s.service)),
            );
        }
        for (name, help, get) in [
            (
                "bff_upstream_retries_total",
                "Retries sent, by service.",
                (|s: &ServiceMetrics| &s.retries) as fn(&ServiceMetrics) -> &AtomicU64,
            ),
            (
                "bff_upstream_retries_refused_total",
                "Retries not sent because the retry budget was spent, by service.",
                |s| &s.retries_refused,
            ),
            (
                "bff_upstream_hedges_total",
                "Hedged attempts sent, by service.",
                |s| &s.hedges,
            ),
            (
                "bff_coalesced_requests_total",
                "Calls that shared an identical call in flight instead of making their own, by service.",
                |s| &s.coalesced,
            ),
            (
                "bff_discovery_failures_total",
                "Discovery attempts that failed (the last good endpoints stayed), by service.",
                |s| &s.discovery_failures,
            ),
            (
                "bff_upstream_resends_total",
                "Requests sent again at once within their attempt (refused unprocessed by the service, or their connection closed before an answer), by service.",
                |s| &s.resends,
            ),
        ] {
            header(out, name, "counter", help);
            for s in &services {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\"}} {}",
                    esc(&s.service),
                    get(s).load(Ordering::Relaxed)
                );
            }
        }
        header(
            out,
            "bff_cache_requests_total",
            "counter",
            "Cached calls, by service and how they were served (hit, miss, stale, revalidated).",
        );
        for s in &services {
            for result in CacheResult::ALL {
                let _ = writeln!(
                    out,
                    "bff_cache_requests_total{{service=\"{}\",result=\"{}\"}} {}",
                    esc(&s.service),
                    result.name(),
                    s.cache_count(result)
                );
            }
        }
        single(
            out,
            "bff_inflight_requests",
            "gauge",
            "Requests being served now.",
            self.inflight.load(Ordering::Relaxed),
        );
        single(
            out,
            "bff_shed_total",
            "counter",
            "Requests refused with 503 because max_concurrency was reached.",
            self.shed.load(Ordering::Relaxed),
        );
        single(
            out,
            "bff_handler_panics_total",
            "counter",
            "Requests whose handler panicked, answered 500.",
            self.handler_panics.load(Ordering::Relaxed),
        );
        single(
            out,
            "bff_config_reloads_total",
            "counter",
            "Configurations applied after the first.",
            self.reloads.load(Ordering::Relaxed),
        );
        for (name, help, c) in [
            (
                "bff_trace_spans_exported_total",
                "Spans accepted by the OTLP collector.",
                &self.spans_exported,
            ),
            (
                "bff_trace_spans_dropped_total",
                "Spans dropped: queue full or collector unreachable.",
                &self.spans_dropped,
            ),
            (
                "bff_rate_limit_store_fallbacks_total",
                "Rate-limit checks decided by the local bucket because the shared store failed.",
                &self.rate_limit_store_fallbacks,
            ),
        ] {
            single(out, name, "counter", help, c.load(Ordering::Relaxed));
        }
        self.sessions.render(out);
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric of one sample without labels: its `# HELP` and `# TYPE` lines, then its value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value escaped for the text format.
pub fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        let r = m.route("/api/home/{id}", "GET");
        r.record(200, Duration::from_millis(3));
        r.record(200, Duration::from_millis(30));
        r.record(502, Duration::from_millis(300));
        let s = m.service("users");
        s.record(Outcome::Success, Some(Duration::from_millis(2)));
        s.record(Outcome::FastFail, None);
        s.retries.fetch_add(1, Ordering::Relaxed);
        s.record_cache(CacheResult::Stale);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                "bff_requests_total{route=\"/api/home/{id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "{out}"
        );
        assert!(out.contains(
            "bff_requests_total{route=\"/api/home/{id}\",method=\"GET\",status=\"502\"} 1"
        ));
        assert!(out.contains("bff_request_duration_seconds_bucket{route=\"/api/home/{id}\",method=\"GET\",le=\"0.005\"} 1"));
        assert!(out.contains(
            "bff_request_duration_seconds_count{route=\"/api/home/{id}\",method=\"GET\"} 3"
        ));
        assert!(
            out.contains("bff_upstream_requests_total{service=\"users\",outcome=\"success\"} 1")
        );
        assert!(out.contains("bff_upstream_retries_total{service=\"users\"} 1"));
        assert!(out.contains("bff_cache_requests_total{service=\"users\",result=\"stale\"} 1"));
        assert!(out.contains("bff_cache_requests_total{service=\"users\",result=\"hit\"} 0"));
        assert_eq!(
            m.route("/api/home/{id}", "GET")
                .duration
                .count
                .load(Ordering::Relaxed),
            3,
            "registered once"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
