//! Loading: file text -> `config` crate (file + `BFF__...` environment) -> `${VAR}` expansion -> typed
//! [`Config`] -> validation. Every error found on the way is kept, located and reported together.

use crate::{Config, Validated, locate::Locator, validate};
use serde_json::Value;
use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// The format of a config text, chosen by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// `.toml`, `.yaml`/`.yml`, `.json`; anything else is read as TOML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            Some("json") => Self::Json,
            _ => Self::Toml,
        }
    }

    fn to_config(self) -> config::FileFormat {
        match self {
            Self::Toml => config::FileFormat::Toml,
            Self::Yaml => config::FileFormat::Yaml,
            Self::Json => config::FileFormat::Json,
        }
    }
}

/// A config text and where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// Shown in errors: the file's path, or a name such as `<inline>`.
    pub name: String,
    pub text: String,
    pub format: Format,
    /// The folder relative paths in the config are read from (the file's own folder).
    pub dir: Option<std::path::PathBuf>,
    /// The file the text was read from; a config loaded from it remembers it ([`Config::origin`]).
    pub path: Option<PathBuf>,
}

impl Source {
    pub fn file(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::unreadable(path, &e))?;
        Ok(Self::file_text(path, text))
    }

    /// The text of the file at `path`, already read (e.g. with async I/O).
    pub fn file_text(path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        let path = path.as_ref();
        Self {
            name: path.display().to_string(),
            text: text.into(),
            format: Format::from_path(path),
            dir: path.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".").to_path_buf()
                } else {
                    p.to_path_buf()
                }
            }),
            path: Some(path.to_path_buf()),
        }
    }

    pub fn inline(text: impl Into<String>, format: Format) -> Self {
        Self {
            name: "<inline>".into(),
            text: text.into(),
            format,
            dir: None,
            path: None,
        }
    }
}

impl ConfigErrors {
    /// The error of a config file that cannot be read.
    pub fn unreadable(path: &Path, e: &std::io::Error) -> Self {
        Self(vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    }
}

/// Where a config came from: its file, the loader that read it, and the text it was loaded from (see
/// [`Config::origin`]). Made only by [`Loader::load`].
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    path: PathBuf,
    loader: Loader,
    text: Arc<str>,
}

impl Origin {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text the config was loaded from: what a watcher compares the file with, so that a write
    /// made after the load is never mistaken for the loaded content.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Loads the file's new text as the first load did: same loader, same environment source.
    pub fn load_text(&self, text: impl Into<String>) -> Result<Validated, ConfigErrors> {
        self.loader.load(&Source::file_text(&self.path, text))
    }
}

impl Config {
    /// An error about `key` (e.g. `routes[0].path`) found after loading, located as the loader locates
    /// its own: the file and line the config was loaded from (`<config>` and no line for a config made
    /// in code or from a text).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let (file, line) = match &self.origin {
            Some(origin) => {
                let source = Source::file_text(&origin.path, &*origin.text);
                let line = Locator::new(&source).line_of(key);
                (source.name, line)
            }
            None => ("<config>".to_string(), None),
        };
        ConfigError {
            file,
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Debug for Origin {
    // The loader's injected environment may hold secrets: only the path is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One configuration error: where (file, line, key path) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment` for an error in a `BFF__...` variable.
    pub file: String,
    /// 1-based line, when the key was found in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `services.users.timeout` or `routes[0].backends[1].select`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error of a config, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} config error{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads configs. The environment is the process's own unless one is injected (tests).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Loader {
    env: Option<HashMap<String, String>>,
    /// Keys set over the file and the environment (tests), by path.
    values: Vec<(Vec<String>, Value)>,
}

impl fmt::Debug for Loader {
    // An injected environment may hold secrets: only whether there is one is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("injected_env", &self.env.is_some())
            .finish()
    }
}

const ENV_PREFIX: &str = "BFF__";

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `env` instead of the process environment, for `BFF__...` overrides and `${VAR}`.
    #[must_use]
    pub fn with_env(mut self, env: HashMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Sets the key at `path` (e.g. `["services", "users", "endpoints"]`) to `value` over the file and
    /// the environment, before `${VAR}` expansion and validation; `Value::Null` removes the key. A test
    /// harness points services at its stubs this way whatever the file says: a `${VAR}` in a replaced
    /// value is never read.
    #[must_use]
    pub fn with_value(mut self, path: &[&str], value: Value) -> Self {
        self.values
            .push((path.iter().map(|p| p.to_string()).collect(), value));
        self
    }

    fn env_var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    fn env_overrides(&self) -> HashMap<String, String> {
        let all: Vec<(String, String)> = match &self.env {
            Some(env) => env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars().collect(),
        };
        all.into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect()
    }

    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Validated, ConfigErrors> {
        self.load(&Source::file(path)?)
    }

    pub fn load_str(&self, text: &str, format: Format) -> Result<Validated, ConfigErrors> {
        self.load(&Source::inline(text, format))
    }

    /// The file merged with its `BFF__...` environment overrides and [`Loader::with_value`]'s keys, as a
    /// tree, before `${VAR}` expansion and validation: what a tool reads to see which services a config
    /// names without needing their variables set.
    pub fn raw(&self, source: &Source) -> Result<Value, ConfigErrors> {
        let env = self.env_overrides();
        let env_keys = env_keys(&env);
        let locator = Locator::new(source);
        let mut report = Report {
            source,
            locator: &locator,
            env_keys: &env_keys,
            errors: Vec::new(),
        };
        match self.merged(source, env, &mut report) {
            Some(value) if report.errors.is_empty() => Ok(value),
            _ => Err(ConfigErrors(report.errors)),
        }
    }

    /// The file, its environment overrides and the set keys, merged; `None` (with errors in `report`)
    /// when the text cannot be read as a tree.
    fn merged(
        &self,
        source: &Source,
        env: HashMap<String, String>,
        report: &mut Report<'_>,
    ) -> Option<Value> {
        if let Some(err) = report.locator.syntax_error() {
            report.errors.push(err);
            return None;
        }
        // serde_json keeps numbers' text (arbitrary_precision): a JSON number no i64, u64 or finite f64
        // holds (`1e400`) would get past the JSON parser, and the config crate panics on it.
        if matches!(source.format, Format::Json)
            && let Ok(json) = serde_json::from_str::<Value>(&source.text)
        {
            let mut path = Vec::new();
            out_of_range_numbers(&json, &mut path, report);
            if !report.errors.is_empty() {
                return None;
            }
        }

        let built = config::Config::builder()
            .add_source(config::File::from_str(
                &source.text,
                source.format.to_config(),
            ))
            .add_source(
                config::Environment::with_prefix("BFF")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env.into_iter().collect())),
            )
            .build()
            .and_then(|c| c.try_deserialize::<Value>());
        let mut value = match built {
            Ok(v) => v,
            Err(e) => {
                report.push("", e.to_string());
                return None;
            }
        };
        if value.is_null() {
            value = Value::Object(Default::default());
        }
        for (path, set) in &self.values {
            set_path(&mut value, path, set.clone());
        }
        Some(value)
    }

    /// Loads and validates a config: every error with its file, line and key, or the [`Validated`]
    /// config.
    pub fn load(&self, source: &Source) -> Result<Validated, ConfigErrors> {
        let env = self.env_overrides();
        let env_keys = env_keys(&env);
        let locator = Locator::new(source);
        let mut report = Report {
            source,
            locator: &locator,
            env_keys: &env_keys,
            errors: Vec::new(),
        };
        let Some(mut value) = self.merged(source, env, &mut report) else {
            return Err(ConfigErrors(report.errors));
        };

        let mut path = Vec::new();
        self.expand_vars(&mut value, &mut path, &mut report);
        // A key whose variable is unset was reported once; validation must not report it again.
        let unset: Vec<String> = report.errors.iter().map(|e| e.key.clone()).collect();
        let (mut config, mut poisoned) = deserialize_all(value, &unset, &mut report);
        poisoned.extend(unset);
        if let Some(config) = &mut config {
            // Before the paths are resolved: relative to the config's folder.
            for (key, message) in crate::response_schema::load_all(config, source.dir.as_deref()) {
                report.push(&key, message);
            }
        }
        if let Some(config) = &config {
            // A value refused above was removed (its default applies): validation must neither report
            // it again nor report what its removal leaves behind in the tables that hold it (`needs
            // endpoints` after a bad endpoint).
            for (key, message) in validate::validate(config) {
                if !poisoned.iter().any(|p| related(&key, p)) {
                    report.push(&key, message);
                }
            }
        }
        report
            .errors
            .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.key.clone()));
        report.errors.dedup();
        match config {
            Some(mut config) if report.errors.is_empty() => {
                if let Some(dir) = &source.dir {
                    config.resolve_paths(dir);
                }
                config.base_dir = source.dir.clone();
                config.origin = source.path.clone().map(|path| Origin {
                    path,
                    loader: self.clone(),
                    text: source.text.as_str().into(),
                });
                Ok(Validated::checked(config))
            }
            _ => Err(ConfigErrors(report.errors)),
        }
    }

    /// Replaces `${NAME}` in every string with the variable's value, `${NAME:-default}` with the default
    /// when it is unset or empty; `$${` is a literal `${`.
    fn expand_vars(&self, value: &mut Value, path: &mut Vec<String>, report: &mut Report<'_>) {
        match value {
            Value::String(s) if s.contains("${") => {
                let mut out = String::with_capacity(s.len());
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    if rest[..i].ends_with('$') {
                        out.push_str(&rest[..i - 1]);
                        out.push_str("${");
                        rest = &rest[i + 2..];
                        continue;
                    }
                    out.push_str(&rest[..i]);
                    let Some(end) = rest[i..].find('}') else {
                        report.push(&join(path), format!("unclosed ${{ in {s:?}"));
                        return;
                    };
                    // `${NAME:-default}`: the default when NAME is unset or empty (as in POSIX shells).
                    let (name, default) = match rest[i + 2..i + end].split_once(":-") {
                        Some((name, default)) => (name, Some(default)),
                        None => (&rest[i + 2..i + end], None),
                    };
                    match (self.env_var(name), default) {
                        (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => report.push(
                            &join(path),
                            format!(
                                "environment variable {name} is not set (give a default with ${{{name}:-VALUE}})"
                            ),
                        ),
                    }
                    rest = &rest[i + end + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(format!("[{i}]"));
                    self.expand_vars(item, path, report);
                    path.pop();
                }
            }
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    path.push(k.clone());
                    self.expand_vars(v, path, report);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The config key of each `BFF__...` variable (`services.users.timeout`), to name the variable in errors.
fn env_keys(env: &HashMap<String, String>) -> HashMap<String, String> {
    env.keys()
        .map(|k| {
            (
                k[ENV_PREFIX.len()..].to_lowercase().replace("__", "."),
                k.clone(),
            )
        })
        .collect()
}

/// Sets `path` in `value` to `set`, making the tables on the way; `Null` removes the key.
fn set_path(value: &mut Value, path: &[String], set: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for p in parents {
        let Value::Object(map) = cur else { return };
        cur = map
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    let Value::Object(map) = cur else { return };
    if set.is_null() {
        map.remove(last);
    } else {
        map.insert(last.clone(), set);
    }
}

/// Reports every number that is not an i64, a u64 or a finite f64.
fn out_of_range_numbers(value: &Value, path: &mut Vec<String>, report: &mut Report<'_>) {
    match value {
        Value::Number(n)
            if n.as_i64().is_none() && n.as_u64().is_none() && n.as_f64().is_none() =>
        {
            report.push(&join(path), format!("number {n} is out of range"));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                out_of_range_numbers(item, path, report);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                out_of_range_numbers(v, path, report);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Whether a validation error at `key` concerns a refused value at `poisoned`: the same key, a key
/// inside it, or the table holding it (`services.s` for `services.s.endpoints[0]`: "needs endpoints").
fn related(key: &str, poisoned: &str) -> bool {
    let inside = key
        .strip_prefix(poisoned)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
    let field = poisoned.trim_end_matches(|c: char| c.is_ascii_digit() || c == '[' || c == ']');
    let table = field.rsplit_once('.').map_or("", |(t, _)| t);
    inside || key == table
}

/// Joins path parts: `["routes", "[0]", "path"]` -> `routes[0].path`.
fn join(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        if !out.is_empty() && !p.starts_with('[') {
            out.push('.');
        }
        out.push_str(p);
    }
    out
}

struct Report<'a> {
    source: &'a Source,
    locator: &'a Locator,
    env_keys: &'a HashMap<String, String>,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn push(&mut self, key: &str, message: String) {
        // An environment override is named by its variable, not by a line of the file.
        let from_env = self
            .env_keys
            .iter()
            .filter(|(path, _)| key == path.as_str() || key.starts_with(&format!("{path}.")))
            .map(|(_, var)| var.clone())
            .next();
        let error = match from_env {
            Some(var) => ConfigError {
                file: format!("environment {var}"),
                line: None,
                key: key.to_string(),
                message,
            },
            None => ConfigError {
                file: self.source.name.clone(),
                line: self.locator.line_of(key),
                key: key.to_string(),
                message,
            },
        };
        self.errors.push(error);
    }
}

/// Deserializes into [`Config`], collecting every error: after each one the offending key is removed (so its
/// default applies) or a missing required key is filled with a placeholder, and deserialization runs again.
/// Returns the paths whose values were replaced, so that validation does not report them twice.
fn deserialize_all(
    mut value: Value,
    reported: &[String],
    report: &mut Report<'_>,
) -> (Option<Config>, Vec<String>) {
    let mut poisoned: Vec<String> = Vec::new();
    // Array items removed so far, by the array's key: later errors in that array are reported with the
    // index the item has in the file, not its index after the removals.
    let mut removed: HashMap<String, Vec<usize>> = HashMap::new();
    for _ in 0..256 {
        let err = match serde_path_to_error::deserialize::<_, Config>(&value) {
            Ok(config) => return (Some(config), poisoned),
            Err(e) => e,
        };
        let segments: Vec<String> = err
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
                serde_path_to_error::Segment::Map { key } => key.clone(),
                serde_path_to_error::Segment::Enum { variant } => variant.clone(),
                serde_path_to_error::Segment::Unknown => "?".into(),
            })
            .collect();
        let message = err.inner().to_string();
        let in_file = in_file_path(&segments, &removed);
        let key = join(&in_file);
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let mut full = in_file.clone();
            full.push(field.to_string());
            let full_key = join(&full);
            if !poisoned.contains(&full_key) {
                report.push(&key, format!("missing required key `{field}`"));
            }
            poisoned.push(full_key);
            match lookup_mut(&mut value, &segments) {
                Some(Value::Object(map)) if !map.contains_key(field) => {
                    // A filler that parses (a path must start with `/`), so that the rest is checked.
                    let filler = if field == "path" { "/" } else { "" };
                    map.insert(field.to_string(), Value::String(filler.into()));
                }
                _ => return (None, poisoned),
            }
            continue;
        }
        // (A key whose `${VAR}` is unset, or refused before, was reported already.)
        if !reported.contains(&key) && !poisoned.contains(&key) {
            report.push(&key, tidy(&message));
        }
        poisoned.push(key.clone());
        let Some((last, parent)) = segments.split_last() else {
            return (None, poisoned);
        };
        match lookup_mut(&mut value, parent) {
            Some(Value::Object(map)) => {
                if map.remove(last).is_none() {
                    return (None, poisoned);
                }
            }
            Some(Value::Array(items)) => {
                let index = last.trim_matches(['[', ']']).parse::<usize>().ok();
                match index {
                    Some(i) if i < items.len() => {
                        items.remove(i);
                        let (original, array) = in_file.split_last().unwrap_or((last, &[]));
                        let original = original.trim_matches(['[', ']']).parse().unwrap_or(i);
                        let gone = removed.entry(join(array)).or_default();
                        gone.push(original);
                        gone.sort_unstable();
                    }
                    _ => return (None, poisoned),
                }
            }
            _ => return (None, poisoned),
        }
    }
    (None, poisoned)
}

/// A path with the indexes of the current value mapped back to the file's, given the items removed.
fn in_file_path(segments: &[String], removed: &HashMap<String, Vec<usize>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    for s in segments {
        let index = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok());
        match index {
            Some(mut i) => {
                for gone in removed.get(&join(&out)).into_iter().flatten() {
                    if *gone <= i {
                        i += 1;
                    }
                }
                out.push(format!("[{i}]"));
            }
            None => out.push(s.clone()),
        }
    }
    out
}

/// serde's messages name Rust types; say it in config words.
fn tidy(message: &str) -> String {
    message
        .replace("u32", "a non-negative integer")
        .replace("u64", "a non-negative integer")
        .replace("usize", "a non-negative integer")
        .replace("f64", "a number")
}

fn lookup_mut<'v>(value: &'v mut Value, segments: &[String]) -> Option<&'v mut Value> {
    let mut cur = value;
    for s in segments {
        cur = if let Some(i) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            cur.as_array_mut()?.get_mut(i.parse::<usize>().ok()?)?
        } else {
            cur.as_object_mut()?.get_mut(s)?
        };
    }
    Some(cur)
}
