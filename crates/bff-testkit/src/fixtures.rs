//! Fixtures of downstream exchanges: what `bff record` stores ([`Recorder`]), what `bff mock` and tests
//! answer from ([`Replay`]), and the JSON Schema inferred per backend (docs/mocking.md).
//!
//! Layout of a fixtures folder:
//!
//! - `services/SERVICE/NAME.json`: one file per distinct call (method, path and query); a later
//!   recording of the same call replaces it, so that recording again changes only what changed.
//! - `schemas/ROUTE.BACKEND.json`: the JSON Schema of a declarative backend's selected value, inferred
//!   from every 2xx JSON response of the folder's fixtures; what `response_schema` can point to.
//!
//! A fixture file (keys in this order, two-space indentation):
//!
//! ```json
//! {
//!   "service": "users",
//!   "method": "GET",
//!   "path": "/users/42",
//!   "query": "fields=name",
//!   "status": 200,
//!   "headers": { "content-type": "application/json" },
//!   "body": { "profile": { "name": "Ada" } }
//! }
//! ```
//!
//! `query` is absent without one; `body` is the JSON body, or `body_text` when the body is not JSON.

use bff::{
    aggregate::{Selector, Step},
    config::Config,
    mesh::{Exchange, Response, Tap},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::Mutex,
};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Headers and query parameters whose values are credentials, always redacted (lower case).
pub const CREDENTIALS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "api_key",
    "x-auth-token",
    "x-csrf-token",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "client_secret",
    "password",
    "secret",
    "signature",
    "sig",
];

/// Response headers a fixture keeps (besides credentials, kept redacted): those that change what a
/// client or the BFF does with the response.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "expires",
    "vary",
    "location",
    "retry-after",
    "link",
];

/// A fixtures folder that cannot be read or written.
#[derive(Debug)]
pub struct FixtureError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for FixtureError {}

/// What is wrong with a fixture file's content (the key, and how).
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidFixture(pub String);

impl fmt::Display for InvalidFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidFixture {}

fn fail(path: &Path, message: impl fmt::Display) -> FixtureError {
    FixtureError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// One recorded downstream exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Fixture {
    pub service: String,
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The query as sent, credentials redacted.
    pub query: Option<String>,
    pub status: u16,
    /// The response headers kept, by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// The body: JSON, or text when it is not JSON.
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Json(Value),
    Text(String),
}

impl Fixture {
    /// The file name of this exchange in `services/SERVICE/`: readable and stable (the same call always
    /// has the same name), distinct calls distinct names.
    pub fn file_name(&self) -> String {
        let key = self.key();
        let mut name: String = format!("{}{}", self.method.to_ascii_lowercase(), key_tail(&key))
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.truncate(80);
        format!("{name}-{:08x}.json", fnv1a(key.as_bytes()) as u32)
    }

    /// `METHOD path?query`.
    fn key(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }

    /// The fixture as its file says it, keys in a fixed order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("service".into(), self.service.clone().into());
        m.insert("method".into(), self.method.clone().into());
        m.insert("path".into(), self.path.clone().into());
        if let Some(q) = &self.query {
            m.insert("query".into(), q.clone().into());
        }
        m.insert("status".into(), self.status.into());
        m.insert(
            "headers".into(),
            Value::Object(
                self.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            ),
        );
        match &self.body {
            Body::Json(v) => m.insert("body".into(), v.clone()),
            Body::Text(t) => m.insert("body_text".into(), t.clone().into()),
        };
        Value::Object(m)
    }

    /// A fixture file's content.
    pub fn from_json(v: &Value) -> Result<Self, InvalidFixture> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| InvalidFixture(format!("`{k}` is missing or not a string")))
        };
        let status = v
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| StatusCode::from_u16(*s).is_ok())
            .ok_or_else(|| InvalidFixture("`status` is missing or not an HTTP status".into()))?;
        let headers = match v.get("headers") {
            None => BTreeMap::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => Ok((k.to_ascii_lowercase(), s.to_string())),
                    None => Err(InvalidFixture(format!("headers.{k} is not a string"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(InvalidFixture("`headers` is not an object".into())),
        };
        let body = match (v.get("body"), v.get("body_text")) {
            (Some(b), _) => Body::Json(b.clone()),
            (None, Some(Value::String(t))) => Body::Text(t.clone()),
            _ => Body::Text(String::new()),
        };
        let path = s("path")?;
        if !path.starts_with('/') {
            return Err(InvalidFixture("`path` must start with `/`".into()));
        }
        Ok(Self {
            service: s("service")?,
            method: s("method")?.to_ascii_uppercase(),
            path,
            query: v.get("query").and_then(Value::as_str).map(str::to_string),
            status,
            headers,
            body,
        })
    }

    /// The exchange as the mesh hands it to its caller.
    pub fn response(&self) -> Response {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            if v == REDACTED {
                continue;
            }
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                headers.insert(k, v);
            }
        }
        let body = match &self.body {
            Body::Json(v) => {
                headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            Body::Text(t) => Bytes::from(t.clone()),
        };
        Response {
            status: StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK),
            headers,
            body,
        }
    }
}

/// The part of a key after the method, for file names: `GET /users/42` -> `_users_42`.
fn key_tail(key: &str) -> &str {
    key.split_once(' ').map_or("", |(_, t)| t)
}

/// FNV-1a: a hash that is the same on every machine and every Rust version (file names).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads every fixture under `dir/services/` (sorted by file path: the same folder always gives the same
/// order). A missing folder has none.
pub fn read_dir(dir: &Path) -> Result<Vec<Fixture>, FixtureError> {
    let root = dir.join("services");
    let mut files = Vec::new();
    if root.exists() {
        collect_json(&root, &mut files)?;
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| fail(f, e))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| fail(f, e))?;
            Fixture::from_json(&v).map_err(|e| fail(f, e))
        })
        .collect()
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FixtureError> {
    for entry in std::fs::read_dir(dir).map_err(|e| fail(dir, e))? {
        let path = entry.map_err(|e| fail(dir, e))?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// `value` as pretty JSON with a final newline (the files' format).
fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// A declarative backend of a config, as fixtures see it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// `routes[I].backends[J]`.
    pub key: String,
    pub name: String,
    pub service: String,
    pub method: String,
    /// The downstream path template, as written.
    pub path: String,
    template: Template,
    /// The template with the credentials of its query redacted, as the fixtures of its calls have it.
    redacted: Template,
    /// `select`, or each of `fields`.
    selection: Selection,
    /// `schemas/FILE` of the inferred schema.
    pub schema_file: String,
    /// The backend's own `response_schema` (read by the config's loader), which a replay prefers to
    /// `schemas/FILE`.
    pub response_schema: Option<Value>,
}

#[derive(Clone, Debug)]
enum Selection {
    Whole,
    Select(Selector),
    Fields(Vec<(String, Selector)>),
}

impl Selection {
    fn apply(&self, body: &Value) -> Value {
        match self {
            Self::Whole => body.clone(),
            Self::Select(s) => s.apply(body),
            Self::Fields(f) => Value::Object(
                f.iter()
                    .map(|(name, s)| (name.clone(), s.apply(body)))
                    .collect(),
            ),
        }
    }

    /// A body whose selection is `selected` (as near as the paths allow: wildcards and filters cannot
    /// be inverted, their value is left out).
    fn body_for(&self, selected: Value) -> Value {
        match self {
            Self::Whole => selected,
            Self::Select(s) => {
                let mut body = Value::Null;
                if !place(&mut body, s, selected.clone()) {
                    return selected;
                }
                body
            }
            Self::Fields(fields) => {
                let mut body = Value::Null;
                for (name, s) in fields {
                    let v = selected.get(name).cloned().unwrap_or(Value::Null);
                    place(&mut body, s, v);
                }
                body
            }
        }
    }
}

/// Puts `value` where `selector` finds it in `body`, building the objects and arrays on the way.
fn place(body: &mut Value, selector: &Selector, value: Value) -> bool {
    let Selector::Singular(steps) = selector else {
        return false;
    };
    let mut cur = body;
    for step in steps {
        cur = match step {
            Step::Key(k) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                match cur {
                    Value::Object(m) => m.entry(k.clone()).or_insert(Value::Null),
                    _ => return false,
                }
            }
            Step::Index(i) => {
                let Ok(i) = usize::try_from(*i) else {
                    return false;
                };
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                match cur {
                    Value::Array(a) => {
                        while a.len() <= i {
                            a.push(Value::Null);
                        }
                        &mut a[i]
                    }
                    _ => return false,
                }
            }
        };
    }
    *cur = value;
    true
}

/// Every declarative backend of `config`.
pub fn backends(config: &Config) -> Vec<Backend> {
    backends_redacting(config, &secret_names(&[]))
}

/// Every declarative backend of `config`, matching fixtures redacted of `secrets`.
fn backends_redacting(config: &Config, secrets: &[String]) -> Vec<Backend> {
    let mut out = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let route_slug = slug(&format!("{} {}", route.method, route.path));
        for (j, b) in route.backends.iter().enumerate() {
            let selection = match (&b.select, &b.fields) {
                (Some(s), _) => Selection::Select(Selector::from_config(s)),
                (None, Some(f)) => Selection::Fields(
                    f.iter()
                        .map(|(k, p)| (k.clone(), Selector::from_config(p)))
                        .collect(),
                ),
                (None, None) => Selection::Whole,
            };
            out.push(Backend {
                key: format!("routes[{i}].backends[{j}]"),
                name: b.name.clone(),
                service: b.service.clone(),
                method: b.method.to_string().to_ascii_uppercase(),
                path: b.path.to_string(),
                template: Template::of(&b.path),
                redacted: Template::of(&b.path).redacted(secrets),
                selection,
                schema_file: format!("{route_slug}.{}.json", slug(&b.name)),
                response_schema: b.response_schema.as_ref().and_then(|s| s.schema()).cloned(),
            });
        }
    }
    out
}

/// The backends' own `response_schema`s, by index.
fn declared_schemas(backends: &[Backend]) -> BTreeMap<usize, Value> {
    backends
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i, b.response_schema.clone()?)))
        .collect()
}

/// `GET /api/home/{id}` -> `get-api-home-id`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

impl Backend {
    /// Whether a call is one of this backend's.
    pub fn matches(&self, service: &str, method: &str, path_and_query: &str) -> bool {
        self.service == service
            && self.method.eq_ignore_ascii_case(method)
            && (self.template.matches(path_and_query) || self.redacted.matches(path_and_query))
    }

    /// The selected value of a response body.
    pub fn select(&self, body: &Value) -> Value {
        self.selection.apply(body)
    }
}

/// A backend's path template as literal pieces and holes (a hole matches one or more characters of a
/// path segment, or of a query value).
#[derive(Clone, Debug)]
struct Template(Vec<Option<String>>);

impl Template {
    fn of(t: &bff::config::PathTemplate) -> Self {
        Self(
            t.segments
                .iter()
                .map(|s| match s {
                    bff::config::Segment::Literal(l) => Some(l.clone()),
                    bff::config::Segment::Placeholder(_) => None,
                })
                .collect(),
        )
    }

    /// The template with the values of credential query parameters that it writes out replaced by
    /// `[redacted]` (`?api_key=abc&id={id}` -> `?api_key=[redacted]&id={id}`).
    fn redacted(mut self, secrets: &[String]) -> Self {
        let mut in_query = false;
        let mut after_hole = false;
        let n = self.0.len();
        for i in 0..n {
            let next_is_hole = i + 1 < n && self.0[i + 1].is_none();
            let Some(lit) = &mut self.0[i] else {
                after_hole = true;
                continue;
            };
            let (head, query) = match (in_query, lit.find('?')) {
                (true, _) => (String::new(), lit.clone()),
                (false, Some(q)) => (lit[..=q].to_string(), lit[q + 1..].to_string()),
                (false, None) => {
                    after_hole = false;
                    continue;
                }
            };
            let first_is_tail = in_query && after_hole;
            in_query = true;
            let pairs: Vec<&str> = query.split('&').collect();
            let last = pairs.len() - 1;
            let redacted: Vec<String> = pairs
                .iter()
                .enumerate()
                .map(|(k, pair)| match pair.split_once('=') {
                    Some((name, _))
                        if !((k == 0 && first_is_tail) || (k == last && next_is_hole))
                            && is_secret(name, secrets) =>
                    {
                        format!("{name}={REDACTED}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            *lit = format!("{head}{}", redacted.join("&"));
            after_hole = false;
        }
        self
    }

    fn matches(&self, pq: &str) -> bool {
        fn go(parts: &[Option<String>], s: &str) -> bool {
            match parts.split_first() {
                None => s.is_empty(),
                Some((Some(lit), rest)) => {
                    s.strip_prefix(lit.as_str()).is_some_and(|s| go(rest, s))
                }
                Some((None, rest)) => {
                    // One or more characters that a value fills: never a `/`, `?` or `&`.
                    let end = s.find(['/', '?', '&']).unwrap_or(s.len());
                    (1..=end).any(|n| go(rest, &s[n..]))
                }
            }
        }
        // A template without a query matches the path whatever the query (`/users/{id}` is the
        // resource of `/users/1?v=2` too).
        let has_query = self.0.iter().flatten().any(|l| l.contains('?'));
        let pq = if has_query {
            pq
        } else {
            pq.split('?').next().unwrap_or(pq)
        };
        go(&self.0, pq)
    }
}

/// The credential names redacted (lower case): [`CREDENTIALS`] and `extra`.
fn secret_names(extra: &[String]) -> Vec<String> {
    CREDENTIALS
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().map(|s| s.to_ascii_lowercase()))
        .collect()
}

/// A query with the values of credential parameters replaced by `[redacted]`.
fn redact_query(query: &str, secrets: &[String]) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret(k, secrets) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret(name: &str, secrets: &[String]) -> bool {
    let decoded = percent_decode(name);
    secrets.iter().any(|s| s.eq_ignore_ascii_case(&decoded))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fixture of an exchange: the query and the credential headers redacted, only the headers that
/// matter kept.
pub fn fixture_of(call: &Exchange<'_>, response: &Response, secrets: &[String]) -> Fixture {
    let mut headers = BTreeMap::new();
    for (k, v) in &response.headers {
        let name = k.as_str();
        if is_secret(name, secrets) {
            headers.insert(name.to_string(), REDACTED.to_string());
        } else if KEPT_HEADERS.contains(&name)
            && let Ok(v) = v.to_str()
        {
            headers.insert(name.to_string(), v.to_string());
        }
    }
    let body = match serde_json::from_slice::<Value>(&response.body) {
        Ok(v) => Body::Json(v),
        Err(_) => Body::Text(String::from_utf8_lossy(&response.body).into_owned()),
    };
    Fixture {
        service: call.service.to_string(),
        method: call.method.as_str().to_string(),
        path: call.path().to_string(),
        query: call.query().map(|q| redact_query(q, secrets)),
        status: response.status.as_u16(),
        headers,
        body,
    }
}

/// Stores every downstream exchange under a folder and infers each backend's schema (`bff record`).
///
/// Install it with [`bff::App::with_tap`]. Fixtures already in the folder count toward the schemas: a
/// second recording adds to the first.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    backends: Vec<Backend>,
    secrets: Vec<String>,
    state: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    /// Fixtures by file path.
    fixtures: BTreeMap<PathBuf, Fixture>,
    /// Each backend's schema, from the fixtures above.
    schemas: BTreeMap<usize, crate::schema::Infer>,
    errors: u64,
}

impl Recorder {
    /// A recorder writing into `dir` for the backends of `config`; `redact` names more headers and query
    /// parameters whose values are credentials.
    pub fn new(
        dir: impl Into<PathBuf>,
        config: &Config,
        redact: &[String],
    ) -> Result<Self, FixtureError> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("services")).map_err(|e| fail(&dir, e))?;
        std::fs::create_dir_all(dir.join("schemas")).map_err(|e| fail(&dir, e))?;
        let secrets = secret_names(redact);
        let recorder = Self {
            backends: backends_redacting(config, &secrets),
            secrets,
            state: Mutex::new(Recorded::default()),
            dir,
        };
        let existing = read_dir(&recorder.dir)?;
        {
            let mut state = recorder.state.lock().unwrap_or_else(|e| e.into_inner());
            for f in existing {
                let path = recorder.fixture_path(&f);
                state.fixtures.insert(path, f);
            }
            recorder.infer(&mut state);
        }
        Ok(recorder)
    }

    /// The folder written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fixture_path(&self, f: &Fixture) -> PathBuf {
        self.dir
            .join("services")
            .join(slug_service(&f.service))
            .join(f.file_name())
    }

    /// Every backend's schema from every fixture (recomputed: a replaced fixture's old body no longer
    /// counts).
    fn infer(&self, state: &mut Recorded) {
        state.schemas.clear();
        for f in state.fixtures.values() {
            let Body::Json(body) = &f.body else { continue };
            if !(200..300).contains(&f.status) {
                continue;
            }
            let pq = match &f.query {
                Some(q) => format!("{}?{q}", f.path),
                None => f.path.clone(),
            };
            for (i, b) in self.backends.iter().enumerate() {
                if b.matches(&f.service, &f.method, &pq) {
                    state.schemas.entry(i).or_default().add(&b.select(body));
                }
            }
        }
    }

    /// Writes what changed with `fixture`: its file, and the schemas of its backends.
    fn record(&self, fixture: Fixture) -> Result<(), FixtureError> {
        let path = self.fixture_path(&fixture);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.fixtures.get(&path) == Some(&fixture) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
        }
        std::fs::write(&path, pretty(&fixture.to_json())).map_err(|e| fail(&path, e))?;
        let pq = match &fixture.query {
            Some(q) => format!("{}?{q}", fixture.path),
            None => fixture.path.clone(),
        };
        let touched: Vec<usize> = (0..self.backends.len())
            .filter(|i| self.backends[*i].matches(&fixture.service, &fixture.method, &pq))
            .collect();
        state.fixtures.insert(path, fixture);
        if touched.is_empty() {
            return Ok(());
        }
        self.infer(&mut state);
        for i in touched {
            let Some(schema) = state.schemas.get(&i) else {
                continue;
            };
            let b = &self.backends[i];
            let file = self.dir.join("schemas").join(&b.schema_file);
            let text = pretty(&schema.to_schema(&format!(
                "{} ({}): the selected value of {} {} on {}, inferred by bff record",
                b.key, b.name, b.method, b.path, b.service
            )));
            let old = std::fs::read_to_string(&file).ok();
            if old.as_deref() != Some(text.as_str()) {
                std::fs::write(&file, text).map_err(|e| fail(&file, e))?;
                if old.is_none() {
                    tracing::info!(
                        backend = %b.key,
                        schema = %file.display(),
                        "bff record: schema inferred (response_schema can point to it)"
                    );
                }
            }
        }
        Ok(())
    }

    /// Exchanges that could not be written (logged each time).
    pub fn errors(&self) -> u64 {
        self.state.lock().map(|s| s.errors).unwrap_or_default()
    }
}

/// A service name as a folder name.
fn slug_service(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Tap for Recorder {
    fn observe(&self, call: &Exchange<'_>, response: &Response) {
        let fixture = fixture_of(call, response, &self.secrets);
        if let Err(e) = self.record(fixture) {
            tracing::error!(error = %e, "bff record: the exchange was not stored");
            if let Ok(mut s) = self.state.lock() {
                s.errors += 1;
            }
        }
    }
}

/// Answers every downstream call from fixtures, or from an example of the backend's schema (`bff mock`,
/// and tests: [`Replay::install`]).
///
/// A call is answered by, in order: the fixture of the same method, path and query; one of the same
/// method and path (any query); one of another call of the same declarative backend (`/users/7` is
/// answered by the fixture of `/users/42` when a backend's path is `/users/{id}`); an example built from
/// the backend's `response_schema`, else its schema in `schemas/` of the folder, placed where its `select`/`fields` take it from.
/// Otherwise: `404` with a JSON error naming the call.
#[derive(Debug)]
pub struct Replay {
    fixtures: Vec<Fixture>,
    backends: Vec<Backend>,
    /// Each backend's schema (by index in `backends`), when there is one.
    schemas: BTreeMap<usize, Value>,
}

impl Replay {
    /// The fixtures and schemas of `dir` for the backends of `config`.
    pub fn load(dir: impl AsRef<Path>, config: &Config) -> Result<Self, FixtureError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(fail(dir, "no such folder"));
        }
        let backends = backends(config);
        let mut schemas = declared_schemas(&backends);
        for (i, b) in backends.iter().enumerate() {
            let file = dir.join("schemas").join(&b.schema_file);
            if schemas.contains_key(&i) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&file) {
                let v: Value = serde_json::from_str(&text).map_err(|e| fail(&file, e))?;
                schemas.insert(i, v);
            }
        }
        Ok(Self {
            fixtures: read_dir(dir)?,
            backends,
            schemas,
        })
    }

    /// No fixture: every call is answered from the backends' `response_schema`, or 404.
    pub fn empty(config: &Config) -> Self {
        let backends = backends(config);
        Self {
            fixtures: Vec::new(),
            schemas: declared_schemas(&backends),
            backends,
        }
    }

    /// The fixtures read.
    pub fn fixtures(&self) -> &[Fixture] {
        &self.fixtures
    }

    /// `app` with its mesh answered by this replay (no downstream call leaves the process).
    pub fn install(self, app: bff::App) -> Result<bff::App, bff::StartError> {
        app.with_tap(std::sync::Arc::new(self))
    }

    /// The response to a call.
    pub fn answer(&self, service: &str, method: &str, path_and_query: &str) -> Response {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let same = |f: &&Fixture| {
            f.service == service && f.method.eq_ignore_ascii_case(method) && f.path == path
        };
        if let Some(f) = self
            .fixtures
            .iter()
            .filter(same)
            .find(|f| f.query.as_deref() == query)
            .or_else(|| self.fixtures.iter().find(same))
        {
            return f.response();
        }
        for (i, b) in self.backends.iter().enumerate() {
            if !b.matches(service, method, path_and_query) {
                continue;
            }
            if let Some(f) = self.fixtures.iter().find(|f| {
                let pq = match &f.query {
                    Some(q) => format!("{}?{q}", f.path),
                    None => f.path.clone(),
                };
                b.matches(&f.service, &f.method, &pq)
            }) {
                return f.response();
            }
            if let Some(schema) = self.schemas.get(&i) {
                let body = b.selection.body_for(crate::schema::example(schema));
                return json_response(StatusCode::OK, &body);
            }
        }
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {
                "code": "no_fixture",
                "message": format!("bff mock: no fixture nor schema for {method} {path_and_query} of service {service:?}"),
            }}),
        )
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response {
        status,
        headers,
        body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    }
}

impl Tap for Replay {
    fn respond(&self, call: &Exchange<'_>) -> Option<Response> {
        Some(self.answer(call.service, call.method.as_str(), call.path_and_query))
    }

    fn answers_all(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        bff::config::Loader::new()
            .with_env(Default::default())
            .load_str(text, bff::config::Format::Toml)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_config()
    }

    const CONFIG: &str = r#"
        [services.users]
        endpoints = ["127.0.0.1:1"]
        [services.orders]
        endpoints = ["127.0.0.1:1"]
        [[routes]]
        path = "/home/{id}"
        [[routes.backends]]
        name = "user"
        service = "users"
        path = "/users/{id}"
        select = "$.profile"
        [[routes.backends]]
        name = "orders"
        service = "orders"
        path = "/orders?userId={id}"
        fields = { first = "$.items[0].id", count = "$.total" }
    "#;

    #[test]
    fn templates_match_calls_of_their_backend_only() {
        let b = backends(&config(CONFIG));
        assert!(b[0].matches("users", "GET", "/users/42"));
        assert!(b[0].matches("users", "get", "/users/a%2Fb"));
        assert!(!b[0].matches("users", "GET", "/users/42/orders"));
        assert!(!b[0].matches("users", "GET", "/users/"));
        assert!(!b[0].matches("users", "POST", "/users/42"));
        assert!(!b[0].matches("orders", "GET", "/users/42"));
        assert!(b[1].matches("orders", "GET", "/orders?userId=7"));
        assert!(!b[1].matches("orders", "GET", "/orders?userId=7&x=1"));
        assert!(b[0].matches("users", "GET", "/users/42?v=1"));
        let t = |text: &str| {
            let t = Template::of(&text.parse().unwrap()).redacted(&secret_names(&[]));
            t.0.iter()
                .map(|p| p.as_deref().unwrap_or("{}"))
                .collect::<String>()
        };
        assert_eq!(t("/o?api_key=abc&id={id}"), "/o?api_key=[redacted]&id={}");
        assert_eq!(t("/o?id={id}&token=t&x=1"), "/o?id={}&token=[redacted]&x=1");
        assert_eq!(t("/o/{id}?token={t}"), "/o/{}?token={}");
        assert_eq!(t("/token=1/{id}"), "/token=1/{}");
        assert_eq!(b[0].schema_file, "get-home-id.user.json");
    }

    #[test]
    fn queries_are_redacted_by_name() {
        let secrets = secret_names(&["X-Tenant-Key".into()]);
        assert_eq!(
            redact_query(
                "a=1&api_key=s3cr3t&x-tenant-key=k&access%5Ftoken=t",
                &secrets
            ),
            "a=1&api_key=[redacted]&x-tenant-key=[redacted]&access%5Ftoken=[redacted]"
        );
    }

    #[test]
    fn a_selection_is_inverted_into_a_body() {
        let b = backends(&config(CONFIG));
        let body = b[0].selection.body_for(json!({"name": "Ada"}));
        assert_eq!(body, json!({"profile": {"name": "Ada"}}));
        assert_eq!(b[0].select(&body), json!({"name": "Ada"}));
        let selected = json!({"first": "o1", "count": 3});
        let body = b[1].selection.body_for(selected.clone());
        assert_eq!(b[1].select(&body), selected);
    }

    #[test]
    fn fixtures_round_trip_and_have_stable_names() {
        let f = Fixture {
            service: "users".into(),
            method: "GET".into(),
            path: "/users/42".into(),
            query: Some("a=1".into()),
            status: 200,
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            body: Body::Json(json!({"b": 1, "a": [true, null]})),
        };
        assert_eq!(Fixture::from_json(&f.to_json()).unwrap(), f);
        assert_eq!(f.file_name(), f.clone().file_name());
        assert!(
            f.file_name().starts_with("get_users_42_a_1-"),
            "{}",
            f.file_name()
        );
        let other = Fixture {
            query: Some("a=2".into()),
            ..f.clone()
        };
        assert_ne!(f.file_name(), other.file_name());
    }

    #[test]
    fn replay_prefers_the_exact_call_then_the_path_then_the_backend() {
        let fixture = |path: &str, query: Option<&str>, name: &str| Fixture {
            service: "users".into(),
            method: "GET".into(),
            path: path.into(),
            query: query.map(str::to_string),
            status: 200,
            headers: BTreeMap::new(),
            body: Body::Json(json!({"profile": {"name": name}})),
        };
        let replay = Replay {
            fixtures: vec![
                fixture("/users/1", Some("v=1"), "one-v1"),
                fixture("/users/1", Some("v=2"), "one-v2"),
            ],
            backends: backends(&config(CONFIG)),
            schemas: BTreeMap::new(),
        };
        let body = |pq: &str| {
            let r = replay.answer("users", "GET", pq);
            (
                r.status.as_u16(),
                serde_json::from_slice::<Value>(&r.body).unwrap(),
            )
        };
        assert_eq!(body("/users/1?v=2").1["profile"]["name"], "one-v2");
        assert_eq!(body("/users/1").1["profile"]["name"], "one-v1");
        assert_eq!(body("/users/9").1["profile"]["name"], "one-v1");
        let (status, err) = body("/nothing");
        assert_eq!(status, 404);
        assert_eq!(err["error"]["code"], "no_fixture");
    }

    #[test]
    fn replay_answers_from_a_schema_when_no_fixture_matches() {
        let mut schemas = BTreeMap::new();
        schemas.insert(
            0,
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        );
        let replay = Replay {
            fixtures: Vec::new(),
            backends: backends(&config(CONFIG)),
            schemas,
        };
        let r = replay.answer("users", "GET", "/users/5");
        assert_eq!(r.status, 200);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(body["profile"]["name"].is_string(), "{body}");
    }
}
