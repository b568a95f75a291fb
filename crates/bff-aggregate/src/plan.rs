use crate::Selector;
use axum::response::{IntoResponse, Response};
use bff_config::{Config, RouteConfig, Segment};
use bff_edge::BffError;
use bff_mesh::{CallContext, ErrorKind, Mesh, MeshError};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

/// Everything but the unreserved characters of RFC 3986 is percent-encoded when a value is put into a
/// downstream path or query, so a parameter can never add a segment, a query or a fragment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `x-bff-partial`.
pub(crate) const PARTIAL_HEADER: HeaderName = HeaderName::from_static("x-bff-partial");

/// A declarative route compiled once: the backends in config order with their dependencies resolved to
/// indexes, path templates split, JSONPaths parsed.
#[derive(Debug)]
pub struct Plan {
    pub method: Method,
    pub path: String,
    forward_headers: Vec<HeaderName>,
    backends: Vec<Backend>,
}

#[derive(Debug)]
struct Backend {
    name: Arc<str>,
    service: String,
    method: Method,
    path: Vec<Part>,
    shape: Shape,
    required: bool,
    deps: Vec<usize>,
    /// Partial responses this backend caused (`bff_partial_responses_total`).
    partials: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// A dependent reads this backend's value through a placeholder: keep it as a tree.
    read_by_dependents: bool,
    /// `coalesce = true`.
    coalesce: bool,
    /// `[routes.backends.cache]`: this backend's own cache.
    cache: Option<bff_mesh::Cache>,
}

#[derive(Debug)]
enum Part {
    Literal(String),
    Param(String),
    /// A value from an earlier backend's (selected) result.
    Backend(usize, Selector),
}

#[derive(Debug)]
enum Shape {
    Whole,
    Select(Selector),
    Fields(Vec<(String, Selector)>),
}

/// A route that cannot be compiled (only for configs that skipped validation): the route, and why.
#[derive(Debug, thiserror::Error)]
#[error("route {route}")]
pub struct PlanError {
    route: String,
    #[source]
    source: PlanProblem,
}

/// What is wrong with a route that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanProblem {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("unknown backend {0}")]
    UnknownBackend(String),
    /// A backend's cache out of bounds (a config made in code).
    #[error("cache")]
    Cache(#[source] bff_config::InvalidValue),
}

/// A backend's downstream path being built from its template: literals as they are, placeholder values
/// percent-encoded ([`COMPONENT`]), so that a value is always exactly one segment (or one query value).
///
/// Encoding alone keeps `/`, `?`, `#` and `%` out, but `.` is unreserved: a value `..` (from a route
/// parameter or a downstream's JSON) would make the segment `..`, which servers and proxies that remove
/// dot segments resolve to the parent (`/recommendations/..` is `/`). Writing it `%2E%2E` is not enough:
/// many servers (nginx, this BFF's own edge) decode `%2E` before they remove dot segments. So a path
/// segment that values make `.` or `..`, or leave empty (`/users//orders` is another resource on servers
/// that merge slashes), refuses the call. Public for the fuzz target only.
#[doc(hidden)]
pub struct DownstreamPath {
    out: String,
    /// Where the current path segment starts in `out`.
    segment: usize,
    /// A value went into the current segment.
    valued: bool,
    /// Past the `?`: values are query values from here on.
    query: bool,
    /// Values made a segment empty, `.` or `..`.
    refused: bool,
}

impl DownstreamPath {
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            out: String::with_capacity(n),
            segment: 0,
            valued: false,
            query: false,
            refused: false,
        }
    }

    /// Template text, copied as it is.
    pub fn literal(&mut self, l: &str) {
        if self.query {
            self.out.push_str(l);
            return;
        }
        let mut rest = l;
        while let Some(at) = rest.find(['/', '?', '#']) {
            self.out.push_str(&rest[..at]);
            self.end_segment();
            let delim = rest.as_bytes()[at];
            self.out.push(delim as char);
            self.segment = self.out.len();
            rest = &rest[at + 1..];
            if delim != b'/' {
                self.query = true;
                self.out.push_str(rest);
                return;
            }
        }
        self.out.push_str(rest);
    }

    /// A placeholder's value: percent-encoded, whatever it holds.
    pub fn value(&mut self, v: &str) {
        self.out.extend(utf8_percent_encode(v, COMPONENT));
        self.valued = true;
    }

    /// The path, or `None` when values made a path segment empty, `.` or `..`.
    #[must_use]
    pub fn finish(mut self) -> Option<String> {
        if !self.query {
            self.end_segment();
        }
        (!self.refused).then_some(self.out)
    }

    fn end_segment(&mut self) {
        if std::mem::take(&mut self.valued) && matches!(&self.out[self.segment..], "" | "." | "..")
        {
            self.refused = true;
        }
    }
}

/// The properties the fuzzer (`fuzz/fuzz_targets/downstream_path.rs`) and the seed-corpus test check on
/// any input. The input, split on NUL, alternates template text and placeholder values (`/r/`, `..`,
/// `/x?c=`, `a&b`). Then: a value is exactly one segment: the path part, split on `/` and percent-decoded,
/// has the template's segments with the values in place (so no value added or removed a segment, a query
/// or a fragment); the path is refused exactly when values made a segment empty, `.` or `..` (so no
/// segment a value is in is a dot segment, sent or decoded); in the query, a value adds no `&`, `=`, `+`,
/// `#`.
#[doc(hidden)]
pub fn check_path_properties(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let parts: Vec<&str> = input.split('\0').collect();
    // The template's text is the config author's (validated elsewhere): no `%` of its own here, so that
    // decoding what was sent gives back the template's text.
    if parts.iter().step_by(2).any(|l| l.contains('%')) {
        return;
    }
    let mut path = DownstreamPath::with_capacity(64);
    // What the template means: its path segments, each with whether a value is in it.
    let mut want: Vec<(String, bool)> = vec![(String::new(), false)];
    let mut query_literal = String::new();
    let mut in_query = false;
    for (n, part) in parts.iter().enumerate() {
        let value = n % 2 == 1;
        if value {
            path.value(part);
        } else {
            path.literal(part);
        }
        if in_query {
            if !value {
                query_literal.push_str(part);
            }
            continue;
        }
        if value {
            let last = want.last_mut().expect("a segment");
            last.0.push_str(part);
            last.1 = true;
            continue;
        }
        let mut rest = *part;
        while let Some(at) = rest.find(['/', '?', '#']) {
            want.last_mut().expect("a segment").0.push_str(&rest[..at]);
            if rest.as_bytes()[at] == b'/' {
                want.push((String::new(), false));
                rest = &rest[at + 1..];
            } else {
                in_query = true;
                query_literal.push_str(&rest[at..]);
                rest = "";
            }
        }
        want.last_mut().expect("a segment").0.push_str(rest);
    }
    let refused = want
        .iter()
        .any(|(seg, valued)| *valued && matches!(seg.as_str(), "" | "." | ".."));
    let Some(out) = path.finish() else {
        assert!(
            refused,
            "{input:?}: refused, yet no valued segment is empty, . or .."
        );
        return;
    };
    assert!(
        !refused,
        "{input:?} -> {out:?}: an empty or dot segment was sent"
    );
    let (path_part, query) = match out.find(['?', '#']) {
        Some(at) => out.split_at(at),
        None => (out.as_str(), ""),
    };
    let sent: Vec<&str> = path_part.split('/').collect();
    assert_eq!(sent.len(), want.len(), "{input:?} -> {out:?}: segments");
    for (raw, (seg, valued)) in sent.iter().zip(&want) {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .expect("UTF-8 in, UTF-8 out");
        assert_eq!(&decoded, seg, "{input:?} -> {out:?}");
        if *valued {
            assert!(
                decoded != "." && decoded != "..",
                "{input:?} -> {out:?}: dot segment"
            );
        }
    }
    for c in ['&', '=', '+', '#', '?'] {
        assert_eq!(
            query.matches(c).count(),
            query_literal.matches(c).count(),
            "{input:?} -> {out:?}: a value added {c:?} to the query"
        );
    }
    assert!(
        !out.bytes().any(|b| b.is_ascii_control() || b == b' ')
            || parts
                .iter()
                .step_by(2)
                .any(|l| l.bytes().any(|b| b.is_ascii_control() || b == b' ')),
        "{input:?} -> {out:?}: a value put a space or control character in the path"
    );
}

/// A placeholder without a usable value: the backend fails (a 502 when it is required).
fn unresolved(b: &Backend) -> Failure {
    Failure {
        code: "unresolved_placeholder",
        status: None,
        error: BffError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            format!("backend {} has no value for its path", b.name),
        ),
    }
}

/// What a backend produced: a value (selected, or needed by a dependent), or the body itself when it
/// passes through whole and untouched (validated, never parsed into a tree nor serialised again).
#[derive(Debug)]
enum Selected {
    Value(Value),
    Raw(Bytes),
}

type Outcome = Result<Selected, Failure>;

/// Why one backend produced no value.
#[derive(Debug)]
struct Failure {
    code: &'static str,
    status: Option<u16>,
    error: BffError,
}

impl From<MeshError> for Failure {
    fn from(e: MeshError) -> Self {
        Self {
            code: e.kind().code(),
            status: e.status().map(|s| s.as_u16()),
            error: e.into(),
        }
    }
}

impl Plan {
    pub fn compile(route: &RouteConfig, config: &Config) -> Result<Self, PlanError> {
        let err = |source: PlanProblem| PlanError {
            route: format!("{} {}", route.method, route.path),
            source,
        };
        let index = |name: &str| route.backends.iter().position(|b| b.name == name);
        let mut backends = Vec::with_capacity(route.backends.len());
        for b in &route.backends {
            if !config.services.contains_key(&b.service) {
                return Err(err(PlanProblem::UnknownService(b.service.clone())));
            }
            // The path, its placeholders' JSONPaths and the selectors were parsed at load.
            let mut path = Vec::new();
            for seg in &b.path.segments {
                path.push(match seg {
                    Segment::Literal(l) => Part::Literal(l.clone()),
                    Segment::Placeholder(p) => match index(&p.head) {
                        Some(i) if b.depends_on.contains(&p.head) => {
                            Part::Backend(i, Selector::from_config(&p.json_path))
                        }
                        _ => Part::Param(p.head.clone()),
                    },
                });
            }
            let shape = match (&b.select, &b.fields) {
                (Some(s), _) => Shape::Select(Selector::from_config(s)),
                (None, Some(fields)) => Shape::Fields(
                    fields
                        .iter()
                        .map(|(k, p)| (k.clone(), Selector::from_config(p)))
                        .collect(),
                ),
                (None, None) => Shape::Whole,
            };
            let deps = b
                .depends_on
                .iter()
                .map(|d| index(d).ok_or_else(|| err(PlanProblem::UnknownBackend(d.clone()))))
                .collect::<Result<_, _>>()?;
            backends.push(Backend {
                name: b.name.as_str().into(),
                service: b.service.clone(),
                method: b.method.method().clone(),
                path,
                shape,
                required: b.required,
                deps,
                partials: None,
                read_by_dependents: false,
                coalesce: b.coalesce,
                cache: b
                    .cache
                    .as_ref()
                    .map(bff_mesh::Cache::new)
                    .transpose()
                    .map_err(|e| err(PlanProblem::Cache(e)))?,
            });
        }
        let read: Vec<usize> = backends
            .iter()
            .flat_map(|b| b.path.iter())
            .filter_map(|p| match p {
                Part::Backend(i, _) => Some(*i),
                _ => None,
            })
            .collect();
        for i in read {
            backends[i].read_by_dependents = true;
        }
        Ok(Self {
            method: route.method.method().clone(),
            path: route.path.clone(),
            forward_headers: route
                .forward_headers
                .iter()
                .map(|h| h.name().clone())
                .collect(),
            backends,
        })
    }

    /// Counts the partial responses of each optional backend in the route's metrics.
    #[must_use]
    pub fn with_metrics(mut self, metrics: &bff_telemetry::RouteMetrics) -> Self {
        for b in &mut self.backends {
            if !b.required {
                b.partials = Some(metrics.partial_counter(&b.name));
            }
        }
        self
    }

    /// Runs the plan: every backend starts as soon as the backends it depends on have finished, so
    /// independent backends run concurrently and the latency is that of the slowest chain.
    pub async fn execute(
        &self,
        mesh: &Mesh,
        params: &[(String, String)],
        headers: &HeaderMap,
    ) -> Response {
        // The route's deadline is already in the context (the route's policy set it). Forwarded headers
        // need a context of their own; without them the request's is used as it is.
        let forwarding;
        let mesh = if self.forward_headers.is_empty() {
            mesh
        } else {
            let mut ctx: CallContext = mesh.context().clone();
            bff_mesh::forward_client_headers(&self.forward_headers, headers, &mut ctx.forward);
            forwarding = mesh.with_context(Arc::new(ctx));
            &forwarding
        };

        let n = self.backends.len();
        let mut results: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        let mut started = vec![false; n];
        let mut running = Running::with_capacity(n);
        loop {
            // Start (or fail) every backend whose dependencies are all done.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if started[i] || !self.backends[i].deps.iter().all(|d| results[*d].is_some()) {
                        continue;
                    }
                    started[i] = true;
                    progressed = true;
                    let b = &self.backends[i];
                    if let Some(d) = b.deps.iter().find(|d| matches!(results[**d], Some(Err(_)))) {
                        let failure = Failure {
                            code: "dependency_failed",
                            status: None,
                            error: BffError::new(
                                StatusCode::BAD_GATEWAY,
                                "upstream_failed",
                                format!(
                                    "backend {} needs {}, which failed",
                                    b.name, self.backends[*d].name
                                ),
                            ),
                        };
                        if b.required {
                            return failure.error.into_response();
                        }
                        results[i] = Some(Err(failure));
                        continue;
                    }
                    match self.path_of(b, params, &results) {
                        Ok(path) => running.push(call(mesh, i, b, path, params)),
                        Err(failure) => {
                            if b.required {
                                return failure.error.into_response();
                            }
                            results[i] = Some(Err(failure));
                        }
                    }
                }
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            if let Err(f) = &result {
                let b = &self.backends[i];
                tracing::debug!(backend = %b.name, service = %b.service, code = f.code, "backend failed");
                if b.required {
                    return f.error.clone().into_response();
                }
            }
            results[i] = Some(result);
        }
        self.merge(results)
    }

    fn path_of(
        &self,
        b: &Backend,
        params: &[(String, String)],
        results: &[Option<Outcome>],
    ) -> Result<String, Failure> {
        let mut out = DownstreamPath::with_capacity(64);
        for part in &b.path {
            match part {
                Part::Literal(l) => out.literal(l),
                Part::Param(p) => {
                    let v = params
                        .iter()
                        .find(|(k, _)| k == p)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default();
                    out.value(v);
                }
                Part::Backend(i, sel) => {
                    let value = match &results[*i] {
                        Some(Ok(Selected::Value(v))) => sel.apply(v),
                        _ => Value::Null,
                    };
                    match value {
                        Value::String(s) => out.value(&s),
                        v @ (Value::Number(_) | Value::Bool(_)) => out.value(&v.to_string()),
                        _ => return Err(unresolved(b)),
                    }
                }
            }
        }
        out.finish().ok_or_else(|| unresolved(b))
    }

    /// Writes the merged object straight into the response body, in config order.
    fn merge(&self, results: Vec<Option<Outcome>>) -> Response {
        let mut out = Vec::with_capacity(1024);
        let mut errors = Vec::new();
        out.push(b'{');
        for (n, (b, r)) in self.backends.iter().zip(results).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, &*b.name);
            out.push(b':');
            match r {
                Some(Ok(Selected::Raw(bytes))) => out.extend_from_slice(&bytes),
                Some(Ok(Selected::Value(v))) => {
                    let _ = serde_json::to_writer(&mut out, &v);
                }
                Some(Err(f)) => {
                    if let Some(c) = &b.partials {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut e = Map::new();
                    e.insert("backend".into(), Value::String(b.name.to_string()));
                    e.insert("error".into(), Value::String(f.code.into()));
                    if let Some(s) = f.status {
                        e.insert("status".into(), Value::from(s));
                    }
                    errors.push(Value::Object(e));
                    out.extend_from_slice(b"null");
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        let partial = !errors.is_empty();
        if partial {
            out.extend_from_slice(b",\"_errors\":");
            let _ = serde_json::to_writer(&mut out, &errors);
        }
        out.push(b'}');
        let mut res = (StatusCode::OK, Bytes::from(out)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if partial {
            h.insert(PARTIAL_HEADER, HeaderValue::from_static("true"));
        }
        res
    }
}

/// The backend calls in flight of one request, polled in place each time the request's task is woken.
///
/// Not `FuturesUnordered`: whenever it has polled every future it holds without one finishing, it wakes
/// its task again (so as not to starve others) and returns `Pending`. A route runs two to four calls, so
/// that is most of its polls: each such wake sends the request to the back of the runtime's queue once
/// more for nothing (in `scripts/bench`, about two extra polls of the connection's task a request, and a
/// longer tail under load). Polling the few calls that were not woken costs less than that.
struct Running<F> {
    slots: Vec<Option<Pin<Box<F>>>>,
}

impl<F: Future> Running<F> {
    fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, call: F) {
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(Box::pin(call)),
            None => self.slots.push(Some(Box::pin(call))),
        }
    }

    /// The output of the next call to finish; `None` when none is running.
    fn next(&mut self) -> impl Future<Output = Option<F::Output>> + '_ {
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let mut running = false;
        for slot in &mut self.slots {
            if let Some(call) = slot {
                if let Poll::Ready(out) = call.as_mut().poll(cx) {
                    *slot = None;
                    return Poll::Ready(Some(out));
                }
                running = true;
            }
        }
        if running {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}

async fn call(
    mesh: &Mesh,
    i: usize,
    b: &Backend,
    path: String,
    params: &[(String, String)],
) -> (usize, Outcome) {
    let result = async {
        let client = mesh.service(&b.service);
        let mut req = client.request(b.method.clone(), path);
        // A ring_hash service keyed on a route parameter gets that parameter as its key.
        if let Some((_, v)) = client
            .hashes_on_param()
            .and_then(|p| params.iter().find(|(k, _)| k == p))
        {
            req = req.hash_key(v);
        }
        if b.coalesce {
            req = req.coalesce();
        }
        if let Some(c) = &b.cache {
            req = req.cache(c);
        }
        let res = req.send_ok().await?;
        if matches!(b.shape, Shape::Whole) && !b.read_by_dependents {
            // Passes through: check it is JSON without building a tree.
            serde_json::from_slice::<serde::de::IgnoredAny>(&res.body)
                .map_err(|e| MeshError::new(ErrorKind::Decode, b.service.as_str(), e))?;
            return Ok(Selected::Raw(trim_json(res.body)));
        }
        let body: Value = res.json(&b.service)?;
        Ok(Selected::Value(match &b.shape {
            Shape::Whole => body,
            Shape::Select(s) => s.apply_owned(body),
            Shape::Fields(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, s)| (k.clone(), s.apply(&body)))
                    .collect(),
            ),
        }))
    }
    .await
    .map_err(|e: MeshError| Failure::from(e));
    (i, result)
}

/// The body without surrounding whitespace (it is embedded as a value).
fn trim_json(body: Bytes) -> Bytes {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    body.slice(start..end)
}

#[cfg(test)]
mod tests {
    use super::{DownstreamPath, Running};

    fn path(parts: &[(&str, bool)]) -> Option<String> {
        let mut p = DownstreamPath::with_capacity(16);
        for (text, value) in parts {
            if *value {
                p.value(text);
            } else {
                p.literal(text);
            }
        }
        p.finish()
    }

    #[test]
    fn a_value_is_always_one_segment_and_never_a_dot_segment() {
        for (parts, want) in [
            (&[("/r/", false), ("..", true)][..], None),
            (&[("/r/", false), (".", true), ("/x", false)], None),
            (&[("/r/", false), (".", true), (".", true)], None),
            (&[("/r/.", false), (".", true)], None),
            (&[("/r/", false), ("%2E%2E", true)], Some("/r/%252E%252E")),
            (&[("/r/", false), ("...", true)], Some("/r/...")),
            (&[("/r/", false), ("a.b", true)], Some("/r/a.b")),
            (
                &[("/r/", false), ("../a/b?c#d%e f", true)],
                Some("/r/..%2Fa%2Fb%3Fc%23d%25e%20f"),
            ),
            (&[("/r/", false), ("", true), ("/x", false)], None),
            (&[("/r/", false), ("", true)], None),
            // In the query, a value is a query value: `&`, `=`, `+` encoded; dots are harmless there.
            (
                &[("/r?u=", false), ("..&a=b+c", true)],
                Some("/r?u=..%26a%3Db%2Bc"),
            ),
            (&[("/r?u=", false), ("", true)], Some("/r?u=")),
            // The template's own text is the config author's.
            (&[("/a/../b/", false), ("x", true)], Some("/a/../b/x")),
        ] {
            assert_eq!(path(parts).as_deref(), want, "{parts:?}");
        }
    }

    use std::{
        future::Future,
        pin::pin,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Poll, Wake, Waker},
    };
    use tokio::sync::oneshot;

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn running_calls_do_not_wake_the_task_when_none_finished() {
        let (tx1, rx1) = oneshot::channel::<u32>();
        let (tx2, rx2) = oneshot::channel::<u32>();
        let mut running = Running::with_capacity(2);
        running.push(rx1);
        running.push(rx2);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        {
            let mut next = pin!(running.next());
            assert!(next.as_mut().poll(&mut cx).is_pending());
            assert!(next.as_mut().poll(&mut cx).is_pending());
        }
        // Nothing finished, so nothing asked for another poll (FuturesUnordered would have).
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        // The second call finishes: one wake, and it comes out first.
        tx2.send(2).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let mut next = pin!(running.next());
        assert!(matches!(
            next.as_mut().poll(&mut cx),
            Poll::Ready(Some(Ok(2)))
        ));
        drop(tx1);
    }

    #[tokio::test]
    async fn running_yields_each_output_once_then_none() {
        let mut running = Running::with_capacity(3);
        let mut senders = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel::<usize>();
            running.push(rx);
            senders.push(tx);
        }
        for (i, tx) in senders.into_iter().enumerate().rev() {
            tx.send(i).unwrap();
        }
        let mut outputs = Vec::new();
        while let Some(out) = running.next().await {
            outputs.push(out.unwrap());
            // A slot that is free again is reused.
            assert!(running.slots.len() <= 3);
        }
        outputs.sort_unstable();
        assert_eq!(outputs, [0, 1, 2]);
        assert!(running.next().await.is_none());
    }
}
