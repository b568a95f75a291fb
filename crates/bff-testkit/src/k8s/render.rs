//! `bff k8s render`: the ConfigMap of a project, rendered from its `bff.toml` with the cluster's
//! differences (`k8s/cluster.toml`) over it, and `bff k8s diff`: which keys a ConfigMap has that its
//! rendering has not, one line each.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};
use toml::{Table, Value};

/// Where a project keeps what the ConfigMap is rendered from, relative to its folder.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project's folder; the other paths are relative to it (and shown so in messages).
    pub dir: PathBuf,
    /// The config as the project runs it locally: `bff.toml`.
    pub config: PathBuf,
    /// The cluster's differences: `k8s/cluster.toml`.
    pub cluster: PathBuf,
    /// The rendered ConfigMap: `k8s/configmap.yaml`.
    pub configmap: PathBuf,
}

impl Project {
    /// The layout `bff new` makes: `bff.toml`, `k8s/cluster.toml`, `k8s/configmap.yaml` in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            config: "bff.toml".into(),
            cluster: "k8s/cluster.toml".into(),
            configmap: "k8s/configmap.yaml".into(),
        }
    }

    fn read(&self, rel: &Path) -> Result<String, Vec<String>> {
        std::fs::read_to_string(self.dir.join(rel))
            .map_err(|e| vec![format!("{}: cannot read it: {e}", rel.display())])
    }

    /// The ConfigMap: `metadata.name` is `bff.name`; `data` holds the cluster's `bff.toml` (the
    /// project's with the cluster file's keys over it) and the files that config reads by a relative
    /// path (`jwks_file`, `keys_file`, each `response_schema`), each under its file name, as the
    /// Deployment mounts them next to `bff.toml`. Errors name the file and the key, one a line.
    pub fn render(&self) -> Result<String, Vec<String>> {
        let config_name = self.config.display().to_string();
        let cluster_name = self.cluster.display().to_string();
        let project = parse(&config_name, &self.read(&self.config)?)?;
        let cluster = parse(&cluster_name, &self.read(&self.cluster)?)?;
        let merged = overlay(project, &cluster, &config_name, &cluster_name)?;
        let name = match merged.get("bff").and_then(|b| b.get("name")) {
            Some(Value::String(n)) if is_k8s_name(n) => n.clone(),
            other => {
                return Err(vec![format!(
                    "{config_name}: bff.name: {other:?} cannot name the ConfigMap: letters, digits and '-'"
                )]);
            }
        };
        let mut files = Vec::new();
        let mut errors = Vec::new();
        let fixed = FILE_KEYS
            .iter()
            .filter_map(|key| match lookup(&merged, key) {
                Some(Value::String(path)) => Some((key.join("."), path.clone())),
                _ => None,
            });
        for (key, path) in fixed.chain(response_schemas(&merged)) {
            if Path::new(&path).is_absolute() {
                continue; // mounted by the deployment itself
            }
            if path.contains('/') || path.contains('\\') {
                errors.push(format!(
                    "{config_name}: {key}: {path:?}: the ConfigMap mounts its files next to bff.toml: give a file name there, or in {cluster_name} an absolute path you mount yourself"
                ));
                continue;
            }
            if files.iter().any(|(f, _)| *f == path) {
                continue; // one file, read by several keys
            }
            let dir = self.config.parent().unwrap_or(Path::new(""));
            match self.read(&dir.join(&path)) {
                Ok(text) => files.push((path, text)),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut out = format!(
            "# {name}: the files the BFF reads, mounted at /etc/bff. Rendered by `bff k8s render` from\n\
             # {config_name} and {cluster_name} (the cluster's differences): edit those and render again, never\n\
             # this file; `bff k8s diff` names the keys where it differs from its rendering.\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\ndata:\n"
        );
        let mut toml =
            format!("# Rendered by `bff k8s render` from {config_name} and {cluster_name}.\n");
        write_table(&mut toml, &merged, &mut Vec::new());
        block(&mut out, "bff.toml", &toml);
        for (key, text) in &files {
            block(&mut out, key, text);
        }
        Ok(out)
    }

    /// What differs between the ConfigMap on disk and its rendering, one line each (empty: none).
    pub fn diff(&self) -> Result<Vec<String>, Vec<String>> {
        let rendered = self.render()?;
        let current = self.read(&self.configmap)?;
        Ok(diff(
            &self.configmap.display().to_string(),
            &current,
            &rendered,
        ))
    }
}

/// The keys of a config that name a file it reads.
const FILE_KEYS: [&[&str]; 2] = [
    &["edge", "auth", "jwt", "jwks_file"],
    &["edge", "auth", "api_keys", "keys_file"],
];

/// Each backend's `response_schema` (`routes[i].backends[j].response_schema`, a file the config reads).
fn response_schemas(config: &Table) -> Vec<(String, String)> {
    let tables = |v: Option<&Value>| -> Vec<Table> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_table).cloned().collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (i, route) in tables(config.get("routes")).iter().enumerate() {
        for (j, backend) in tables(route.get("backends")).iter().enumerate() {
            if let Some(Value::String(path)) = backend.get("response_schema") {
                out.push((
                    format!("routes[{i}].backends[{j}].response_schema"),
                    path.clone(),
                ));
            }
        }
    }
    out
}

fn parse(name: &str, text: &str) -> Result<Table, Vec<String>> {
    text.parse::<Table>()
        .map_err(|e| vec![format!("{name}: {}", e.to_string().trim_end())])
}

/// A name the ConfigMap can carry as a plain YAML word. Kubernetes wants lowercase letters, digits and
/// '-'; a name `bff new` accepts beyond that (`shop_web`) is the Deployment's too, so it is kept.
fn is_k8s_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn lookup<'t>(table: &'t Table, path: &[&str]) -> Option<&'t Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = table;
    for p in parents {
        cur = cur.get(*p)?.as_table()?;
    }
    cur.get(*last)
}

/// `project` with `cluster`'s keys over it: tables merge, any other value replaces. A service's
/// `discovery` or `endpoints` replaces both of the project's; every service must get one of them from
/// the cluster file (else the cluster would call the project's local address), and the cluster file
/// names no service the project lacks and no routes.
fn overlay(
    mut project: Table,
    cluster: &Table,
    config_name: &str,
    cluster_name: &str,
) -> Result<Table, Vec<String>> {
    let mut errors = Vec::new();
    if cluster.contains_key("routes") {
        errors.push(format!(
            "{cluster_name}: routes: the routes are {config_name}'s; this file changes keys of tables (bff, edge, services.NAME, ...)"
        ));
    }
    let services = project
        .get("services")
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();
    let cluster_services = cluster
        .get("services")
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();
    for name in cluster_services.keys() {
        if !services.contains_key(name) {
            errors.push(format!(
                "{cluster_name}: services.{name}: {config_name} has no such service"
            ));
        }
    }
    for name in services.keys() {
        let addressed = cluster_services
            .get(name)
            .and_then(Value::as_table)
            .is_some_and(|s| s.contains_key("discovery") || s.contains_key("endpoints"));
        if !addressed {
            errors.push(format!(
                "{cluster_name}: services.{name}: no discovery or endpoints: the cluster would call {config_name}'s local address (add [services.{name}] discovery = \"dns://{name}.default.svc.cluster.local:8080\", or endpoints = [\"{name}.default.svc.cluster.local:8080\"] without bff's dns feature)"
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(Value::Table(project_services)) = project.get_mut("services") {
        for (name, over) in &cluster_services {
            if let (Some(Value::Table(service)), Some(over)) =
                (project_services.get_mut(name), over.as_table())
                && (over.contains_key("discovery") || over.contains_key("endpoints"))
            {
                service.remove("discovery");
                service.remove("endpoints");
            }
        }
    }
    merge(&mut project, cluster);
    Ok(project)
}

fn merge(into: &mut Table, over: &Table) {
    for (key, value) in over {
        match (into.get_mut(key), value) {
            (Some(Value::Table(mine)), Value::Table(theirs)) => merge(mine, theirs),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `key: |` and `text` indented under it, as a ConfigMap's `data` entry.
fn block(out: &mut String, key: &str, text: &str) {
    let _ = writeln!(out, "  {key}: |");
    for line in text.trim_end_matches('\n').lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// A table as TOML, in an order that does not depend on how it was parsed: its plain keys sorted,
/// then its tables, then its arrays of tables.
fn write_table(out: &mut String, table: &Table, path: &mut Vec<String>) {
    let keys: BTreeSet<&String> = table.keys().collect();
    let is_tables =
        |v: &Value| matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_table));
    for key in &keys {
        let value = &table[key.as_str()];
        if !value.is_table() && !is_tables(value) {
            let _ = writeln!(out, "{} = {}", toml_key(key), inline(value));
        }
    }
    for key in &keys {
        if let Value::Table(sub) = &table[key.as_str()] {
            path.push(toml_key(key));
            let plain = sub.values().any(|v| !v.is_table() && !is_tables(v));
            if plain || sub.is_empty() {
                let _ = writeln!(out, "\n[{}]", path.join("."));
            }
            write_table(out, sub, path);
            path.pop();
        }
    }
    for key in &keys {
        let value = &table[key.as_str()];
        if let (true, Value::Array(items)) = (is_tables(value), value) {
            path.push(toml_key(key));
            for item in items.iter().filter_map(Value::as_table) {
                let _ = writeln!(out, "\n[[{}]]", path.join("."));
                write_table(out, item, path);
            }
            path.pop();
        }
    }
}

fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        quote(key)
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value on one line (arrays and tables inline).
fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => {
            let s = f.to_string();
            if s.contains(['.', 'e', 'E', 'n', 'i']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect();
            if items.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}

/// One line for each key whose value differs between the ConfigMap `current` (named `name`) and
/// `rendered`, in its `bff.toml` and its other files; a whole table or route present on one side only
/// is one line. When no key differs but the texts do, one line says so.
pub fn diff(name: &str, current: &str, rendered: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let data = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(": |"))
            .filter(|k| !k.starts_with(' '))
            .map(str::to_string)
            .collect()
    };
    let (have, want) = (data(current), data(rendered));
    for key in &want {
        if !have.contains(key) {
            lines.push(format!("{name}: data.{key}: absent; the rendering has it"));
        }
    }
    for key in &have {
        if !want.contains(key) {
            lines.push(format!(
                "{name}: data.{key}: the rendering has no such file"
            ));
        }
    }
    for key in want.iter().filter(|k| have.contains(k)) {
        let (a, b) = (
            super::configmap_file(current, key),
            super::configmap_file(rendered, key),
        );
        if key == "bff.toml" {
            match (a.parse::<Table>(), b.parse::<Table>()) {
                (Ok(a), Ok(b)) => {
                    diff_tables(name, &a, &b, &mut String::from("bff.toml:"), &mut lines)
                }
                (Err(e), _) => lines.push(format!(
                    "{name}: bff.toml: not TOML: {}",
                    e.to_string().lines().next().unwrap_or_default()
                )),
                (_, Err(_)) => {}
            }
        } else if a != b {
            lines.push(format!(
                "{name}: data.{key}: differs from the project's {key}"
            ));
        }
    }
    if lines.is_empty() && current != rendered {
        lines.push(format!(
            "{name}: the same keys, but comments or layout differ from the rendering"
        ));
    }
    lines
}

fn diff_tables(name: &str, have: &Table, want: &Table, path: &mut String, lines: &mut Vec<String>) {
    let keys: BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    for key in keys {
        let len = path.len();
        if !path.ends_with(':') {
            path.push('.');
        } else {
            path.push(' ');
        }
        path.push_str(key);
        diff_values(name, have.get(key), want.get(key), path, lines);
        path.truncate(len);
    }
}

fn diff_values(
    name: &str,
    have: Option<&Value>,
    want: Option<&Value>,
    path: &mut String,
    lines: &mut Vec<String>,
) {
    match (have, want) {
        (Some(Value::Table(a)), Some(Value::Table(b))) => diff_tables(name, a, b, path, lines),
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.iter().chain(b).all(Value::is_table) && a != b =>
        {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                diff_values(name, a.get(i), b.get(i), path, lines);
                path.truncate(len);
            }
        }
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => lines.push(format!(
            "{name}: {path}: {} here, {} rendered",
            short(a),
            short(b)
        )),
        (None, Some(b)) => lines.push(format!("{name}: {path}: absent, {} rendered", short(b))),
        (Some(a), None) => lines.push(format!(
            "{name}: {path}: {} here, absent rendered",
            short(a)
        )),
        (None, None) => {}
    }
}

/// A value on one line, a table as `{...}` (its keys are what differs).
fn short(value: &Value) -> String {
    match value {
        Value::Table(_) => "a table".into(),
        Value::Array(a) if a.iter().all(Value::is_table) && !a.is_empty() => {
            format!("{} tables", a.len())
        }
        v => {
            let s = inline(v);
            if s.len() > 80 {
                format!("{}...", &s[..s.floor_char_boundary(77)])
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = r#"# local
[bff]
name = "shop"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"

[edge.auth.api_keys]
keys_file = "keys.txt"

[services.users]
endpoints = ["${USERS_ADDR:-127.0.0.1:9001}"]
timeout = "500ms"

[services.users.health_check]

[[routes]]
path = "/u/{id}"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
fields = { name = "$.name", "odd key" = 1.0 }
"#;

    const CLUSTER: &str = r#"
[bff]
listen = "0.0.0.0:8080"
admin_listen = "0.0.0.0:9901"
admin_token = "${BFF_ADMIN_TOKEN}"

[services.users]
discovery = "dns://users.default.svc.cluster.local:8080"
"#;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let dir =
                std::env::temp_dir().join(format!("bff-k8s-render-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("k8s")).unwrap();
            for (path, text) in files {
                std::fs::write(dir.join(path), text).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn project(name: &str, config: &str, cluster: &str) -> (Dir, Project) {
        let dir = Dir::new(
            name,
            &[
                ("bff.toml", config),
                ("k8s/cluster.toml", cluster),
                ("keys.txt", "key-1\nkey-2\n"),
            ],
        );
        let project = Project::at(&dir.0);
        (dir, project)
    }

    #[test]
    fn the_cluster_file_is_laid_over_the_project() {
        let (_dir, p) = project("over", PROJECT, CLUSTER);
        let out = p.render().unwrap_or_else(|e| panic!("{e:?}"));
        assert!(out.contains("metadata:\n  name: shop\n"), "{out}");
        let toml: Table = super::super::configmap_file(&out, "bff.toml")
            .parse()
            .unwrap();
        let want: Table = PROJECT.parse().unwrap();
        assert_eq!(toml["routes"], want["routes"], "routes kept as they are");
        assert_eq!(toml["bff"]["name"].as_str(), Some("shop"));
        assert_eq!(toml["bff"]["listen"].as_str(), Some("0.0.0.0:8080"));
        assert_eq!(
            toml["bff"]["admin_token"].as_str(),
            Some("${BFF_ADMIN_TOKEN}"),
            "variables are the cluster's to read"
        );
        let users = toml["services"]["users"].as_table().unwrap();
        assert_eq!(users.get("endpoints"), None, "discovery replaces endpoints");
        assert_eq!(users["timeout"].as_str(), Some("500ms"));
        assert_eq!(users["health_check"], Value::Table(Table::new()));
        assert_eq!(
            super::super::configmap_file(&out, "keys.txt"),
            "key-1\nkey-2\n"
        );
        // Rendering twice gives the same text, and a fresh rendering has no difference.
        assert_eq!(p.render().unwrap(), out);
        std::fs::write(p.dir.join(&p.configmap), &out).unwrap();
        assert_eq!(p.diff().unwrap(), Vec::<String>::new());
    }

    /// A backend's `response_schema` is read by the BFF at load: the ConfigMap carries it (once for two
    /// backends naming it), and a path into a folder is refused by key, as for the other files.
    #[test]
    fn response_schema_files_go_into_the_configmap() {
        let config = PROJECT.replace("fields = {", "response_schema = \"user.json\"\nfields = {");
        let config = format!(
            "{config}\n[[routes]]\npath = \"/v/{{id}}\"\n\n[[routes.backends]]\nname = \"user\"\nservice = \"users\"\npath = \"/users/{{id}}\"\nresponse_schema = \"user.json\"\n"
        );
        let (dir, p) = project("schemas", &config, CLUSTER);
        std::fs::write(dir.0.join("user.json"), "{\"type\": \"object\"}\n").unwrap();
        let out = p.render().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            super::super::configmap_file(&out, "user.json"),
            "{\"type\": \"object\"}\n"
        );
        assert_eq!(out.matches("\n  user.json: |").count(), 1, "{out}");

        let nested = config.replacen("\"user.json\"", "\"schemas/user.json\"", 1);
        let (dir, p) = project("nested-schema", &nested, CLUSTER);
        std::fs::write(dir.0.join("user.json"), "{}").unwrap();
        let errors = p.render().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "bff.toml: routes[0].backends[0].response_schema: \"schemas/user.json\": the ConfigMap mounts its files next to bff.toml"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_service_without_its_cluster_address_is_refused_by_name() {
        let config =
            format!("{PROJECT}\n[services.reviews]\nendpoints = [\"${{REVIEWS_ADDR}}\"]\n");
        let (_dir, p) = project("unaddressed", &config, CLUSTER);
        let errors = p.render().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("k8s/cluster.toml: services.reviews: no discovery or endpoints"),
            "{errors:?}"
        );
        let cluster = format!("{CLUSTER}\n[services.ratings]\nendpoints = [\"r:1\"]\n[[routes]]\n");
        let (_dir, p) = project("unknown", PROJECT, &cluster);
        let errors = p.render().unwrap_err();
        assert_eq!(
            errors,
            [
                "k8s/cluster.toml: routes: the routes are bff.toml's; this file changes keys of tables (bff, edge, services.NAME, ...)",
                "k8s/cluster.toml: services.ratings: bff.toml has no such service",
            ]
        );
    }

    #[test]
    fn a_drifted_configmap_names_each_key_on_one_line() {
        let (_dir, p) = project("drift", PROJECT, CLUSTER);
        let old = p.render().unwrap();
        // The project grows a service and a route, and one timeout changes; the ConfigMap is not
        // rendered again.
        let grown = format!(
            "{}\n[services.reviews]\nendpoints = [\"${{REVIEWS_ADDR}}\"]\n\n[[routes]]\npath = \"/r\"\n\n[[routes.backends]]\nname = \"r\"\nservice = \"reviews\"\npath = \"/r\"\n",
            PROJECT.replace("\"500ms\"", "\"300ms\"")
        );
        std::fs::write(p.dir.join("bff.toml"), grown).unwrap();
        std::fs::write(
            p.dir.join("k8s/cluster.toml"),
            format!("{CLUSTER}\n[services.reviews]\ndiscovery = \"dns://reviews.default.svc.cluster.local:8080\"\n"),
        )
        .unwrap();
        std::fs::write(p.dir.join("keys.txt"), "key-3\n").unwrap();
        std::fs::write(p.dir.join(&p.configmap), &old).unwrap();
        assert_eq!(
            p.diff().unwrap(),
            [
                "k8s/configmap.yaml: bff.toml: routes[1]: absent, a table rendered",
                "k8s/configmap.yaml: bff.toml: services.reviews: absent, a table rendered",
                "k8s/configmap.yaml: bff.toml: services.users.timeout: \"500ms\" here, \"300ms\" rendered",
                "k8s/configmap.yaml: data.keys.txt: differs from the project's keys.txt",
            ]
        );
    }

    #[test]
    fn values_are_written_back_as_they_were_read() {
        let text = "a = 1.0\nb = -0.5\nc = 1e300\nd = \"q\\\"\\\\\\n\\u0001\"\ne = [1, [\"x\"], { y = true }]\n\"odd key\" = 2024-01-01T00:00:00Z\n[t]\n[u.v]\nw = []\n";
        let table: Table = text.parse().unwrap();
        let mut out = String::new();
        write_table(&mut out, &table, &mut Vec::new());
        assert_eq!(out.parse::<Table>().unwrap(), table, "{out}");
    }
}
