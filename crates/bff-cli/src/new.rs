//! `bff new NAME`: how a frontend team meets the framework. It renders one of the project templates of
//! `bff-templates/` (embedded in this binary by build.rs, so it works outside this repository) into a new
//! folder: a Cargo project that builds, runs, passes its own tests and carries its Dockerfile and
//! Kubernetes manifests.
//!
//! Templates use cargo-generate's placeholder names (`{{project-name}}`, `{{crate_name}}`, plus
//! `{{framework-path}}` declared in each template's `cargo-generate.toml`), so the same folders work with
//! cargo-generate where users have it. Substituting three names needs no template engine: the renderer
//! below refuses any other `{{...}}`, and a test renders every template.
//!
//! Every refusal (bad name, non-empty folder, unknown template, no framework checkout) happens before the
//! first write and is one line on stderr.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// The checkout this binary was built from: the default framework the project depends on.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// What `bff new` was asked for.
pub(crate) struct Args {
    pub(crate) name: String,
    pub(crate) template: String,
    /// `--auth oidc`: browser sessions (`[session]`, a page that signs in); web template only.
    pub(crate) auth: Option<String>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) framework_path: Option<PathBuf>,
}

/// Why nothing was created; its `Display` is the one line printed.
#[derive(Debug)]
pub(crate) struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(message.into()))
}

pub(crate) fn run(args: &Args) -> ExitCode {
    match create(args) {
        Ok(dir) => {
            let cd = shell_word(&dir.display().to_string());
            println!(
                "Created {name} from the {template} template in {dir}.\n\
                 \n\
                 Next:\n  \
                 cd {cd}\n  \
                 cargo test                # builds it (a few minutes the first time) and tests it against stubs\n  \
                 cargo run --example dev   # serves it on http://127.0.0.1:8080 in front of stub services\n\
                 \n\
                 Then read {readme}: run it against your services, build its image, deploy it.",
                name = args.name,
                template = match &args.auth {
                    Some(auth) => format!("{} (--auth {auth})", args.template),
                    None => args.template.clone(),
                },
                dir = dir.display(),
                readme = dir.join("README.md").display(),
            );
            if let Some(repo) = enclosing_git_repo(&dir) {
                eprintln!(
                    "bff new: warning: {} is inside the git repository {}; a BFF is usually a repository of \
                     its own (`bff new NAME --path DIR` creates it elsewhere)",
                    dir.display(),
                    repo.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bff new: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The git work tree that holds `dir` (a folder above it with `.git`), if any.
fn enclosing_git_repo(dir: &std::path::Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    dir.parent()?
        .ancestors()
        .find(|a| a.join(".git").exists())
        .map(std::path::Path::to_path_buf)
}

/// Validates everything, renders in memory, then writes; returns the project's folder.
pub(crate) fn create(args: &Args) -> Result<PathBuf, Refused> {
    check_name(&args.name)?;
    let files = template_files(&args.template, args.auth.as_deref())?;
    let framework = framework(args.framework_path.as_deref())?;
    let dir = match &args.path {
        Some(parent) => parent.join(&args.name),
        None => PathBuf::from(&args.name),
    };
    check_target(&dir)?;

    let framework_str = framework.to_str().ok_or_else(|| {
        Refused(format!(
            "the framework path {} is not UTF-8",
            framework.display()
        ))
    })?;
    // Every template uses it inside a double-quoted TOML or JSON string: escape for both.
    let framework_str = framework_str.replace('\\', "\\\\").replace('"', "\\\"");
    let crate_name = args.name.replace('-', "_");
    let vars = [
        ("project-name", args.name.as_str()),
        ("crate_name", crate_name.as_str()),
        ("framework-path", framework_str.as_str()),
    ];
    let mut rendered = Vec::with_capacity(files.len());
    for (path, text) in &files {
        let text = render(text, &vars)
            .map_err(|e| Refused(format!("template {} is broken: {path}: {e}", args.template)))?;
        rendered.push((*path, text));
    }
    // What bff.toml's `#:schema bff.schema.json` directive points to: editors (Taplo / Even Better TOML)
    // complete and check the file with it.
    rendered.push(("bff.schema.json", crate::schema_text()));

    let existed = dir.exists();
    write_all(&dir, &rendered, &framework).inspect_err(|_| {
        // Leave nothing half-written behind.
        if existed {
            for (path, _) in &rendered {
                let _ = fs::remove_file(dir.join(path));
            }
            let _ = fs::remove_file(dir.join("Cargo.lock"));
        } else {
            let _ = fs::remove_dir_all(&dir);
        }
    })?;
    Ok(dir)
}

fn write_all(dir: &Path, files: &[(&str, String)], framework: &Path) -> Result<(), Refused> {
    let io =
        |path: &Path, e: std::io::Error| Refused(format!("cannot write {}: {e}", path.display()));
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    // The framework's lock file: the project's first build uses the versions the framework is tested
    // with (and works offline when they are already downloaded). Cargo trims what the project does not use.
    let lock = framework.join("Cargo.lock");
    if lock.is_file() {
        let dest = dir.join("Cargo.lock");
        fs::copy(&lock, &dest).map_err(|e| io(&dest, e))?;
    }
    Ok(())
}

/// A variant of a template chosen by an option (`--auth oidc`): the folder `overlay` of bff-templates/
/// holds the files it adds or replaces; the base template's files in `drops` are not rendered.
struct Variant {
    template: &'static str,
    auth: &'static str,
    overlay: &'static str,
    drops: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[Variant {
    template: "web",
    auth: "oidc",
    overlay: "web-oidc",
    // The JWT dev identity of the web template: a session-mode BFF has no bearer-token routes.
    drops: &[
        "jwks.json",
        "tests/keys/dev-jwks.json",
        "tests/keys/dev-private.pem",
    ],
}];

/// The files of an embedded template folder.
fn embedded_files(name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    embedded::TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, files)| *files)
}

/// The files of a template.
fn template(name: &str) -> Result<&'static [(&'static str, &'static str)], Refused> {
    match embedded_files(name).filter(|_| names().contains(&name)) {
        Some(files) => Ok(files),
        None => refuse(format!(
            "unknown template {name:?}: choose {}",
            names().join(", ")
        )),
    }
}

/// The files of a template with the variant `auth` chooses (none: the template as it is), sorted by path.
fn template_files(
    name: &str,
    auth: Option<&str>,
) -> Result<Vec<(&'static str, &'static str)>, Refused> {
    let base = template(name)?;
    let Some(auth) = auth else {
        return Ok(base.to_vec());
    };
    let Some(variant) = VARIANTS.iter().find(|v| v.auth == auth) else {
        let known: Vec<&str> = VARIANTS.iter().map(|v| v.auth).collect();
        return refuse(format!(
            "unknown --auth {auth:?}: choose {}",
            known.join(", ")
        ));
    };
    if variant.template != name {
        return refuse(format!(
            "--auth {auth} is for the {} template, not {name}",
            variant.template
        ));
    }
    let overlay = embedded_files(variant.overlay).unwrap_or_default();
    let mut files: Vec<(&str, &str)> = base
        .iter()
        .filter(|(path, _)| {
            !variant.drops.contains(path) && !overlay.iter().any(|(p, _)| p == path)
        })
        .copied()
        .chain(overlay.iter().copied())
        .collect();
    files.sort_by_key(|(path, _)| *path);
    Ok(files)
}

/// The names of the templates `--template` takes (the variants' overlay folders are not templates).
pub(crate) fn names() -> Vec<&'static str> {
    embedded::TEMPLATES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !VARIANTS.iter().any(|v| v.overlay == *n))
        .collect()
}

/// The framework checkout the project depends on by path, absolute so the project can live anywhere.
fn framework(given: Option<&Path>) -> Result<PathBuf, Refused> {
    let (path, hint) = match given {
        Some(p) => (p.to_path_buf(), ""),
        None => (
            PathBuf::from(BUILT_FROM),
            " (the checkout this bff was built from); pass --framework-path",
        ),
    };
    let abs = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            return refuse(format!("framework checkout {}: {e}{hint}", path.display()));
        }
    };
    for krate in ["bff", "bff-testkit"] {
        if !abs.join("crates").join(krate).join("Cargo.toml").is_file() {
            return refuse(format!(
                "{} is not a checkout of the bff framework (no crates/{krate}/Cargo.toml){hint}",
                abs.display()
            ));
        }
    }
    Ok(abs)
}

/// The project's folder may be new or empty, never anything else.
fn check_target(dir: &Path) -> Result<(), Refused> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return refuse(format!("{} exists and is not a folder", dir.display()));
    }
    let mut entries =
        fs::read_dir(dir).map_err(|e| Refused(format!("cannot read {}: {e}", dir.display())))?;
    if entries.next().is_some() {
        return refuse(format!(
            "{} exists and is not empty: choose another NAME or --path",
            dir.display()
        ));
    }
    Ok(())
}

/// Rust keywords: a crate name is also an identifier in `use NAME::...`.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names cargo itself refuses (artifact folders, the standard library, Windows devices).
const RESERVED: &[&str] = &[
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "con",
    "prn",
    "aux",
    "nul",
    "com1",
    "com2",
    "com3",
    "com4",
    "com5",
    "com6",
    "com7",
    "com8",
    "com9",
    "lpt1",
    "lpt2",
    "lpt3",
    "lpt4",
    "lpt5",
    "lpt6",
    "lpt7",
    "lpt8",
    "lpt9",
];

/// Crates the generated projects depend on: a project of the same name could not name them.
const DEPENDENCIES: &[&str] = &[
    "bff",
    "bff_testkit",
    "tokio",
    "serde",
    "serde_json",
    "reqwest",
    "jsonwebtoken",
    "percent_encoding",
];

/// NAME becomes the package name, the binary's name and (with `_` for `-`) the library's name.
pub(crate) fn check_name(name: &str) -> Result<(), Refused> {
    let bad = |why: &str| refuse(format!("{name:?} is not a valid crate name: {why}"));
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if !first.is_ascii_alphabetic() {
        return bad("it must start with a letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return bad(&format!(
            "{c:?} is not allowed (use letters, digits, '-' and '_')"
        ));
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    let ident = name.replace('-', "_").to_ascii_lowercase();
    if KEYWORDS.contains(&ident.as_str()) {
        return bad("it is a Rust keyword");
    }
    if RESERVED.contains(&ident.as_str()) {
        return bad("cargo reserves it");
    }
    if DEPENDENCIES.contains(&ident.as_str()) {
        return bad("the project depends on a crate of that name");
    }
    Ok(())
}

/// A template that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error("a `{{{{` without its `}}}}`")]
    Unclosed,
    #[error("unknown placeholder `{0}`")]
    Unknown(String),
}

/// Replaces each `{{ name }}` by its value; any other `{{...}}` is an error, so a template never ships a
/// placeholder that cargo-generate and `bff new` would render differently.
pub(crate) fn render(text: &str, vars: &[(&str, &str)]) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RenderError::Unclosed)?;
        let key = after[..end].trim();
        let (_, value) = vars
            .iter()
            .find(|(k, _)| *k == key)
            .ok_or_else(|| RenderError::Unknown(key.to_string()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A path as one word of a shell command line.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./+,:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_three_names_and_refuses_others() {
        let vars = [("project-name", "shop-web"), ("crate_name", "shop_web")];
        assert_eq!(
            render(
                "name = \"{{project-name}}\" use {{ crate_name }}::app;",
                &vars
            )
            .unwrap(),
            "name = \"shop-web\" use shop_web::app;"
        );
        assert!(
            render("{{authors}}", &vars)
                .unwrap_err()
                .to_string()
                .contains("authors")
        );
        assert!(render("x {{project-name", &vars).is_err());
        assert_eq!(render("{single} }}", &vars).unwrap(), "{single} }}");
    }

    #[test]
    fn every_embedded_template_renders() {
        let vars = [
            ("project-name", "p"),
            ("crate_name", "p"),
            ("framework-path", "/f"),
        ];
        assert_eq!(names(), ["minimal", "web", "mobile"]);
        for (name, files) in embedded::TEMPLATES {
            for want in [
                "Cargo.toml",
                "src/main.rs",
                "src/lib.rs",
                "bff.toml",
                "Dockerfile",
            ] {
                assert!(files.iter().any(|(p, _)| *p == want), "{name}: no {want}");
            }
            for (path, text) in *files {
                render(text, &vars).unwrap_or_else(|e| panic!("{name}/{path}: {e}"));
            }
        }
    }

    #[test]
    fn auth_oidc_lays_the_session_files_over_the_web_template() {
        let files = template_files("web", Some("oidc")).unwrap();
        let file = |path: &str| {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, text)| *text)
        };
        assert!(file("bff.toml").unwrap().contains("\n[session]\n"));
        assert!(file("static/index.html").unwrap().contains("x-csrf"));
        assert!(
            file("tests/deploy.rs").is_some(),
            "the web template's other files stay"
        );
        for dropped in ["jwks.json", "tests/keys/dev-private.pem"] {
            assert!(file(dropped).is_none(), "{dropped}");
        }
        let mut paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        paths.dedup();
        assert_eq!(paths.len(), files.len(), "each path once");
        assert!(
            template_files("web", None)
                .unwrap()
                .iter()
                .all(|(p, _)| *p != "static/index.html")
        );

        let refused = |template, auth| {
            template_files(template, Some(auth))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("web", "saml"),
            "unknown --auth \"saml\": choose oidc"
        );
        assert_eq!(
            refused("minimal", "oidc"),
            "--auth oidc is for the web template, not minimal"
        );
        assert!(
            template("web-oidc").is_err(),
            "an overlay is not a template"
        );
    }

    #[test]
    fn names_follow_cargo_rules() {
        for ok in ["shop-web", "mobile_bff", "a", "Web2"] {
            check_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("1bad", "start with a letter"),
            ("-x", "start with a letter"),
            ("has space", "' ' is not allowed"),
            ("café", "'é' is not allowed"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("test", "reserves"),
            ("bff", "depends on"),
            ("bff-testkit", "depends on"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("./shop-web"), "./shop-web");
        assert_eq!(shell_word("/tmp/my apps/x"), "'/tmp/my apps/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
