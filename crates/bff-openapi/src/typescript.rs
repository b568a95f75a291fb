//! A typed TypeScript client from an OpenAPI 3.1 document (the one [`document`](crate::document) makes, or
//! any of the same form): one file, no runtime dependency (the platform's `fetch`), one function per
//! operation with typed path, query and header parameters, a typed result from the response's JSON Schema,
//! the BFF's errors as a discriminated union, the partial form, and the CSRF header and
//! `credentials: "include"` on the operations that authenticate with a cookie.
//!
//! Errors are values, not exceptions: each function resolves to `{ok: true, data, partial, ...}` or
//! `{ok: false, status, error, ...}` where `status` is one of the statuses the document lists for the
//! operation (a literal type, so a `switch` on it is checked), or `"unexpected"` for a response the
//! document does not describe. Only a network failure (fetch's own) rejects the promise.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Why a document cannot be turned into a client.
#[derive(Debug)]
pub struct ClientError(String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const RUNTIME: &str = r#"
/** Where and how the client calls the BFF. */
export interface ClientOptions {
  /** The BFF's origin (and prefix), e.g. "https://app.example.com"; "" for the page's own origin. */
  baseUrl: string;
  /** Headers sent with every request (e.g. accept-language). */
  headers?: Record<string, string>;
  /** The bearer token (JWT) of operations that need one; a function is called before each request. */
  bearer?: string | (() => string | undefined | Promise<string | undefined>);
  /** The API key of operations that need one (sent as `x-api-key`). */
  apiKey?: string;
  /** `credentials` of every request; default: "include" for operations that authenticate with a cookie
   * (and whenever `withCredentials` is true), else the platform's default. */
  credentials?: RequestCredentials;
  /** Send cookies cross-origin on every operation (a BFF whose CORS allows credentials). */
  withCredentials?: boolean;
  /** The fetch to call (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

/** The JSON error of the BFF: `{"error": {"code", "message", "request_id"}}`. */
export interface ApiError {
  code: string;
  message: string;
  request_id?: string;
}

/** A successful answer: its data, and whether it is partial (`x-bff-partial: true`: an optional part
 * failed, its key is null and `data._errors` says why). */
export interface Ok<T> {
  ok: true;
  status: number;
  data: T;
  partial: boolean;
  response: Response;
}

/** An error the document lists for the operation, with the BFF's JSON error. */
export interface Failed<S extends number> {
  ok: false;
  status: S;
  error: ApiError;
  response: Response;
}

/** A response the document does not describe (another status, or a body that is not the JSON error). */
export interface Unexpected {
  ok: false;
  status: "unexpected";
  error: ApiError;
  response: Response;
}

export type Result<T, S extends number> = Ok<T> | Failed<S> | Unexpected;

/** How an operation is called (generated). */
interface Operation {
  method: string;
  path: string;
  path_params: readonly string[];
  query: readonly string[];
  headers: readonly string[];
  fixed_headers: Readonly<Record<string, string>>;
  bearer: boolean;
  api_key: boolean;
  cookie: boolean;
  body: boolean;
  statuses: readonly number[];
}

/** Per call: an abort signal, more headers. */
export interface CallOptions {
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** The URL of an operation with its path and query parameters. */
function urlOf(options: ClientOptions, op: Operation, params: Record<string, unknown>): string {
  let path = op.path;
  for (const name of op.path_params) {
    path = path.replace(`{${name}}`, encodeURIComponent(String(params[name])));
  }
  const query = new URLSearchParams();
  for (const name of op.query) {
    const value = params[name];
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(name, String(v));
  }
  const search = query.toString();
  return `${options.baseUrl}${path}${search === "" ? "" : "?" + search}`;
}

async function call<T, S extends number>(
  options: ClientOptions,
  op: Operation,
  params: Record<string, unknown>,
  body: unknown,
  call_options: CallOptions | undefined,
): Promise<Result<T, S>> {
  const headers: Record<string, string> = { accept: "application/json", ...options.headers };
  for (const name of op.headers) {
    const value = params[name];
    if (value !== undefined && value !== null) headers[name] = String(value);
  }
  Object.assign(headers, op.fixed_headers, call_options?.headers);
  if (op.bearer && options.bearer !== undefined) {
    const token = typeof options.bearer === "function" ? await options.bearer() : options.bearer;
    if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
  }
  if (op.api_key && options.apiKey !== undefined) headers["x-api-key"] = options.apiKey;
  const init: RequestInit = { method: op.method, headers };
  if (op.body && body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const credentials =
    options.credentials ?? (op.cookie || options.withCredentials ? "include" : undefined);
  if (credentials !== undefined) init.credentials = credentials;
  if (call_options?.signal !== undefined) init.signal = call_options.signal;
  const f = options.fetch ?? globalThis.fetch;
  const response = await f(urlOf(options, op, params), init);
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (response.status >= 200 && response.status < 300) {
    return {
      ok: true,
      status: response.status,
      data: json as T,
      partial: response.headers.get("x-bff-partial") === "true",
      response,
    };
  }
  const error = errorOf(json);
  if (error !== undefined && op.statuses.includes(response.status)) {
    return { ok: false, status: response.status as S, error, response };
  }
  return {
    ok: false,
    status: "unexpected",
    error: error ?? { code: "unexpected_response", message: `HTTP ${response.status}` },
    response,
  };
}

function errorOf(json: unknown): ApiError | undefined {
  if (typeof json !== "object" || json === null || !("error" in json)) return undefined;
  const e = (json as { error: unknown }).error;
  if (typeof e !== "object" || e === null) return undefined;
  const { code, message, request_id } = e as Record<string, unknown>;
  if (typeof code !== "string" || typeof message !== "string") return undefined;
  return typeof request_id === "string" ? { code, message, request_id } : { code, message };
}
"#;

/// The client of `doc` (an OpenAPI 3.x document) as one TypeScript file.
pub fn typescript(doc: &Value) -> Result<String, ClientError> {
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.") {
        return Err(ClientError(format!(
            "not an OpenAPI 3 document (openapi = {:?})",
            doc["openapi"]
        )));
    }
    let paths = doc["paths"]
        .as_object()
        .ok_or_else(|| ClientError("the document has no paths".into()))?;
    let cx = Cx { doc };
    let title = doc["info"]["title"].as_str().unwrap_or("the BFF");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// A typed client of {title}, generated by `bff client --lang typescript` from its OpenAPI document.\n\
         // Do not edit: generate it again when the routes change. No dependency: the platform's fetch."
    );
    out.push_str(RUNTIME);

    let schemes = doc["components"]["securitySchemes"].as_object();
    let mut types = String::new();
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            if let Some(d) = schema["description"].as_str() {
                let _ = writeln!(types, "\n/** {} */", comment(d));
            } else {
                types.push('\n');
            }
            let _ = writeln!(
                types,
                "export type {} = {};",
                type_name(name),
                cx.ts(schema, 0, 0)
            );
        }
    }
    out.push_str(&types);

    let mut functions = String::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        let shared_params = item.get("parameters");
        for method in METHODS {
            let Some(op) = item.get(method).and_then(Value::as_object) else {
                continue;
            };
            let id = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(ident)
                .unwrap_or_else(|| ident(&format!("{method}{}", path.replace('/', "_"))));
            let pascal = {
                let mut c = id.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            };
            let mut spec = OpSpec::default();
            let mut param_fields = Vec::new();
            let params = shared_params
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
            for p in params {
                let p = cx.resolve(p);
                let (Some(name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
                    continue;
                };
                let required = p["required"].as_bool().unwrap_or(place == "path");
                // A required header with one possible value (the CSRF header): sent by the client.
                if place == "header"
                    && required
                    && let Some([fixed]) = p["schema"]["enum"].as_array().map(Vec::as_slice)
                    && let Some(fixed) = fixed.as_str()
                {
                    spec.fixed_headers
                        .push((name.to_ascii_lowercase(), fixed.to_string()));
                    continue;
                }
                match place {
                    "path" => spec.path_params.push(name.to_string()),
                    "query" => spec.query.push(name.to_string()),
                    "header" => spec.headers.push(name.to_ascii_lowercase()),
                    _ => continue,
                }
                let doc = p["description"]
                    .as_str()
                    .map(|d| format!("  /** {} */\n", comment(d)))
                    .unwrap_or_default();
                param_fields.push(format!(
                    "{doc}  {}{}: {};",
                    key(name),
                    if required { "" } else { "?" },
                    cx.ts(&p["schema"], 1, 0)
                ));
            }
            let security = op.get("security").or(doc.get("security"));
            for requirement in security.and_then(Value::as_array).into_iter().flatten() {
                for name in requirement.as_object().into_iter().flat_map(|m| m.keys()) {
                    let Some(s) = schemes.and_then(|s| s.get(name)) else {
                        continue;
                    };
                    match (s["type"].as_str(), s["in"].as_str(), s["scheme"].as_str()) {
                        (Some("http"), _, Some(scheme))
                            if scheme.eq_ignore_ascii_case("bearer") =>
                        {
                            spec.bearer = true
                        }
                        (Some("apiKey"), Some("header"), _) => spec.api_key = true,
                        (Some("apiKey"), Some("cookie"), _) => spec.cookie = true,
                        _ => {}
                    }
                }
            }
            let body_schema = op
                .get("requestBody")
                .map(|b| cx.resolve(b))
                .and_then(|b| b["content"]["application/json"].get("schema").cloned());
            spec.body = body_schema.is_some();
            let responses = op.get("responses").and_then(Value::as_object);
            let mut data = None;
            for (status, response) in responses.into_iter().flatten() {
                let response = cx.resolve(response);
                match status.parse::<u16>() {
                    Ok(s @ 200..=299) if data.is_none() => {
                        data = Some(
                            match response["content"]["application/json"].get("schema") {
                                Some(schema) => cx.ts(schema, 0, 0),
                                None if s == 204 => "undefined".into(),
                                None => "unknown".into(),
                            },
                        );
                    }
                    Ok(300..=399) => spec.redirects = true,
                    Ok(s) if s >= 400 => spec.statuses.push(s),
                    _ => {}
                }
            }
            let summary = op
                .get("summary")
                .or(op.get("description"))
                .and_then(Value::as_str)
                .map(|s| format!("{} {path}: {}", method.to_ascii_uppercase(), comment(s)))
                .unwrap_or_else(|| format!("{} {path}", method.to_ascii_uppercase()));
            let params_interface = format!(
                "\n/** The parameters of {pascal}. */\nexport interface {pascal}Params {{\n{}{}}}\n",
                param_fields.join("\n"),
                if param_fields.is_empty() { "" } else { "\n" }
            );
            // A page the browser goes to (only a redirect for an answer, e.g. `/bff/login`): its URL,
            // for `location.assign`, not a call.
            // Only when a navigation can send all it needs: no header, no credential but the cookie.
            let navigation = spec.headers.is_empty()
                && spec.fixed_headers.is_empty()
                && !spec.bearer
                && !spec.api_key;
            if data.is_none() && spec.redirects && method == "get" && navigation {
                out.push_str(&params_interface);
                let params_optional =
                    spec.path_params.is_empty() && !param_fields.iter().any(|f| !f.contains("?:"));
                let _ = write!(
                    functions,
                    "    /** {summary} The URL to navigate to (`location.assign(...)`). */\n    {id}Url(params: {pascal}Params{}): string {{\n      return urlOf(client, {}, params as unknown as Record<string, unknown>);\n    }},\n",
                    if params_optional { " = {}" } else { "" },
                    spec.literal(&method.to_ascii_uppercase(), path),
                );
                continue;
            }
            let data = data.unwrap_or_else(|| "unknown".into());
            let statuses = if spec.statuses.is_empty() {
                "never".to_string()
            } else {
                spec.statuses
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            out.push_str(&params_interface);
            let _ = writeln!(out, "export type {pascal}Data = {data};");
            let _ = writeln!(
                out,
                "export type {pascal}Result = Result<{pascal}Data, {statuses}>;"
            );
            let body_param = match &body_schema {
                Some(s) => format!(", body: {}", cx.ts(s, 1, 0)),
                None => String::new(),
            };
            let params_optional =
                spec.path_params.is_empty() && !param_fields.iter().any(|f| !f.contains("?:"));
            let _ = write!(
                functions,
                "    /** {summary} */\n    {id}(params: {pascal}Params{}{body_param}, options?: CallOptions): Promise<{pascal}Result> {{\n      return call<{pascal}Data, {statuses}>(client, {}, params as unknown as Record<string, unknown>, {}, options);\n    }},\n",
                if params_optional && body_schema.is_none() {
                    " = {}"
                } else {
                    ""
                },
                spec.literal(&method.to_ascii_uppercase(), path),
                if body_schema.is_some() {
                    "body"
                } else {
                    "undefined"
                },
            );
        }
    }
    let _ = write!(
        out,
        "\n/** The client: one function per route. */\nexport function createClient(client: ClientOptions) {{\n  return {{\n{functions}  }};\n}}\n\nexport type Client = ReturnType<typeof createClient>;\n"
    );
    Ok(out)
}

#[derive(Default)]
struct OpSpec {
    path_params: Vec<String>,
    query: Vec<String>,
    headers: Vec<String>,
    fixed_headers: Vec<(String, String)>,
    bearer: bool,
    api_key: bool,
    cookie: bool,
    body: bool,
    statuses: Vec<u16>,
    /// A 3xx among its responses.
    redirects: bool,
}

impl OpSpec {
    fn literal(&self, method: &str, path: &str) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| js_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fixed = self
            .fixed_headers
            .iter()
            .map(|(k, v)| format!(" {}: {} ", js_string(k), js_string(v)))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{{ method: {}, path: {}, path_params: [{}], query: [{}], headers: [{}], fixed_headers: {{{fixed}}}, bearer: {}, api_key: {}, cookie: {}, body: {}, statuses: [{}] }}",
            js_string(method),
            js_string(path),
            list(&self.path_params),
            list(&self.query),
            list(&self.headers),
            self.bearer,
            self.api_key,
            self.cookie,
            self.body,
            self.statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

struct Cx<'a> {
    doc: &'a Value,
}

/// Deeper than this, a schema is `unknown` (a `$ref` cycle through inlined pointers).
const MAX_DEPTH: usize = 32;

impl Cx<'_> {
    /// A `$ref`'d object (parameter, response, request body) as the object it names.
    fn resolve(&self, v: &Value) -> Value {
        let mut v = v.clone();
        for _ in 0..MAX_DEPTH {
            match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
                Some(pointer) => match self.doc.pointer(pointer) {
                    Some(target) => v = target.clone(),
                    None => return Value::Null,
                },
                None => return v,
            }
        }
        Value::Null
    }

    /// The TypeScript type of a JSON Schema; `indent` is the nesting level of the object types written
    /// over several lines.
    fn ts(&self, schema: &Value, indent: usize, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return "unknown".into();
        }
        let m = match schema {
            Value::Bool(false) => return "never".into(),
            Value::Object(m) => m,
            _ => return "unknown".into(),
        };
        let mut parts: Vec<String> = Vec::new();
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            parts.push(self.reference(r, indent, depth));
        }
        if let Some(c) = m.get("const") {
            parts.push(literal(c));
        } else if let Some(e) = m.get("enum").and_then(Value::as_array) {
            parts.push(if e.is_empty() {
                "never".into()
            } else {
                union(e.iter().map(literal).collect())
            });
        } else {
            let types: Vec<&str> = match m.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let mut alternatives: Vec<String> = types
                .iter()
                .map(|t| match *t {
                    "string" => "string".to_string(),
                    "number" | "integer" => "number".into(),
                    "boolean" => "boolean".into(),
                    "null" => "null".into(),
                    "array" => self.array(m, indent, depth),
                    "object" => self.object(m, indent, depth),
                    _ => "unknown".into(),
                })
                .collect();
            if types.is_empty() {
                if m.contains_key("properties") || m.contains_key("additionalProperties") {
                    alternatives.push(self.object(m, indent, depth));
                } else if m.contains_key("items") || m.contains_key("prefixItems") {
                    alternatives.push(self.array(m, indent, depth));
                }
            }
            if !alternatives.is_empty() {
                parts.push(union(alternatives));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = m.get(key).and_then(Value::as_array) {
                parts.push(union(
                    list.iter().map(|s| self.ts(s, indent, depth + 1)).collect(),
                ));
            }
        }
        if let Some(list) = m.get("allOf").and_then(Value::as_array) {
            parts.extend(list.iter().map(|s| self.ts(s, indent, depth + 1)));
        }
        let mut t = match parts.len() {
            0 => "unknown".to_string(),
            1 => parts.remove(0),
            _ => parts
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" & "),
        };
        if m.get("nullable").and_then(Value::as_bool) == Some(true) && t != "unknown" {
            t = format!("{t} | null");
        }
        t
    }

    fn reference(&self, r: &str, indent: usize, depth: usize) -> String {
        if let Some(name) = r.strip_prefix("#/components/schemas/")
            && !name.contains('/')
            && self.doc["components"]["schemas"].get(name).is_some()
        {
            return type_name(&name.replace("~1", "/").replace("~0", "~"));
        }
        match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
            Some(target) => self.ts(target, indent, depth + 1),
            None => "unknown".into(),
        }
    }

    fn array(&self, m: &Map<String, Value>, indent: usize, depth: usize) -> String {
        let items = m.get("items");
        if let Some(prefix) = m.get("prefixItems").and_then(Value::as_array) {
            let mut elems: Vec<String> = prefix
                .iter()
                .map(|s| self.ts(s, indent, depth + 1))
                .collect();
            match items {
                Some(Value::Bool(false)) => {}
                Some(s) => elems.push(format!("...Array<{}>", self.ts(s, indent, depth + 1))),
                None => elems.push("...unknown[]".into()),
            }
            return format!("[{}]", elems.join(", "));
        }
        match items {
            Some(s) => format!("Array<{}>", self.ts(s, indent, depth + 1)),
            None => "unknown[]".into(),
        }
    }

    fn object(&self, m: &Map<String, Value>, indent: usize, depth: usize) -> String {
        let required: Vec<&str> = m
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let pad = "  ".repeat(indent + 1);
        let mut lines = Vec::new();
        let properties = m.get("properties").and_then(Value::as_object);
        for (name, schema) in properties.into_iter().flatten() {
            if let Some(d) = schema.get("description").and_then(Value::as_str) {
                lines.push(format!("{pad}/** {} */", comment(d)));
            }
            lines.push(format!(
                "{pad}{}{}: {};",
                key(name),
                if required.contains(&name.as_str()) {
                    ""
                } else {
                    "?"
                },
                self.ts(schema, indent + 1, depth + 1)
            ));
        }
        match m.get("additionalProperties") {
            Some(Value::Bool(false)) => {}
            None if properties.is_some_and(|p| !p.is_empty()) => {}
            Some(s @ Value::Object(_)) if properties.is_none_or(Map::is_empty) => lines.push(
                format!("{pad}[key: string]: {};", self.ts(s, indent + 1, depth + 1)),
            ),
            _ => lines.push(format!("{pad}[key: string]: unknown;")),
        }
        if lines.is_empty() {
            return "Record<string, never>".into();
        }
        format!("{{\n{}\n{}}}", lines.join("\n"), "  ".repeat(indent))
    }
}

fn union(mut alternatives: Vec<String>) -> String {
    alternatives.dedup();
    if alternatives.iter().any(|a| a == "unknown") {
        return "unknown".into();
    }
    match alternatives.len() {
        0 => "never".into(),
        1 => alternatives.remove(0),
        _ => alternatives
            .iter()
            .map(|a| {
                if a.contains(" | ") || a.contains(" & ") {
                    format!("({a})")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

/// A JSON value as a literal type (strings, numbers, booleans, null); any other is `unknown`.
fn literal(v: &Value) -> String {
    match v {
        Value::String(_) | Value::Bool(_) | Value::Null => v.to_string(),
        Value::Number(n) => {
            let text = n.to_string();
            // A literal type is a plain decimal: `1e3` and `1.0` are written as numbers.
            if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                text
            } else {
                "number".into()
            }
        }
        _ => "unknown".into(),
    }
}

/// A property name: as it is when it is an identifier, else a string literal.
fn key(name: &str) -> String {
    if is_ident(name) {
        name.to_string()
    } else {
        js_string(name)
    }
}

fn js_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The names the client declares, and JavaScript's own that a type must not shadow.
const TAKEN: [&str; 16] = [
    "ApiError",
    "CallOptions",
    "Client",
    "ClientOptions",
    "Failed",
    "Ok",
    "Operation",
    "Result",
    "Unexpected",
    "Error",
    "Response",
    "Request",
    "Record",
    "Array",
    "Object",
    "Promise",
];

/// The TypeScript name of a schema of `components.schemas`: `Error` is `ErrorSchema`, as is any name
/// the client or JavaScript declares.
fn type_name(name: &str) -> String {
    let name = ident(name);
    if TAKEN.contains(&name.as_str()) {
        format!("{name}Schema")
    } else {
        name
    }
}

/// A type or function name from a schema or operation name.
fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Text safe inside a `/** */` comment, on one line.
fn comment(s: &str) -> String {
    s.replace("*/", "* /").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(schema: Value) -> String {
        let doc = json!({"components": {"schemas": {"User": {"type": "object"}, "Error": {}}}});
        Cx { doc: &doc }.ts(&schema, 0, 0)
    }

    #[test]
    fn json_schema_to_typescript() {
        assert_eq!(ts(json!({})), "unknown");
        assert_eq!(
            ts(json!({"$ref": "#/components/schemas/Error"})),
            "ErrorSchema"
        );
        assert_eq!(ts(json!({"type": "integer"})), "number");
        assert_eq!(ts(json!({"type": ["string", "null"]})), "string | null");
        assert_eq!(ts(json!({"enum": ["a", 1, null]})), "\"a\" | 1 | null");
        assert_eq!(ts(json!({"const": "x"})), "\"x\"");
        assert_eq!(
            ts(json!({"type": "array", "items": {"$ref": "#/components/schemas/User"}})),
            "Array<User>"
        );
        assert_eq!(
            ts(json!({"anyOf": [{"$ref": "#/components/schemas/User"}, {"type": "null"}]})),
            "User | null"
        );
        assert_eq!(
            ts(
                json!({"type": "object", "properties": {"a-b": {"type": "string"}, "c": {"type": "boolean"}}, "required": ["c"], "additionalProperties": false})
            ),
            "{\n  \"a-b\"?: string;\n  c: boolean;\n}"
        );
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "{\n  [key: string]: number;\n}"
        );
        assert_eq!(
            ts(json!({"type": "object"})),
            "{\n  [key: string]: unknown;\n}"
        );
        assert_eq!(
            ts(json!({"prefixItems": [{"type": "string"}], "items": false})),
            "[string]"
        );
        assert_eq!(
            ts(json!({"type": "string", "nullable": true})),
            "string | null"
        );
        // A pointer below a component is inlined; a cycle ends as `unknown`.
        let doc = json!({"components": {"schemas": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node/properties/next"}}}}}});
        let t = Cx { doc: &doc }.ts(
            &json!({"$ref": "#/components/schemas/Node/properties/next"}),
            0,
            0,
        );
        assert_eq!(t, "unknown");
    }

    /// A cookie-authenticated operation (CONTRACT section 6's `auth = "session"`) sends its CSRF header
    /// by itself and `credentials: "include"`; the header is not a parameter the caller gives.
    #[test]
    fn a_cookie_operation_sends_its_csrf_header_and_credentials() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/api/orders": {"get": {
                "operationId": "getApiOrders",
                "security": [{"session": []}],
                "parameters": [{"name": "x-csrf", "in": "header", "required": true, "schema": {"type": "string", "enum": ["1"]}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}},
                              "401": {"description": "no"}},
            }}},
            "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "__Host-bff"}},
                           "schemas": {"Error": {"type": "object"}}},
        });
        let out = typescript(&doc).unwrap();
        assert!(out.contains(r#"fixed_headers: { "x-csrf": "1" }"#), "{out}");
        assert!(out.contains("export type ErrorSchema = "), "{out}");
        assert!(out.contains("cookie: true"), "{out}");
        assert!(
            out.contains("export interface GetApiOrdersParams {\n}"),
            "{out}"
        );
        assert!(
            out.contains("export type GetApiOrdersData = Array<string>;"),
            "{out}"
        );
        assert!(
            out.contains("export type GetApiOrdersResult = Result<GetApiOrdersData, 401>;"),
            "{out}"
        );
        assert!(
            out.contains("getApiOrders(params: GetApiOrdersParams = {}, options?: CallOptions)"),
            "{out}"
        );
    }

    #[test]
    fn not_openapi_is_refused() {
        assert!(typescript(&json!({"swagger": "2.0"})).is_err());
    }
}
