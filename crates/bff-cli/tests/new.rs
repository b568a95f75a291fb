//! `bff new`, black-box: every template renders exactly its golden copy (`BFF_UPDATE_GOLDEN=1` rewrites
//! them), every refusal is one line on stderr and writes nothing, and one generated project builds and
//! passes its own `cargo test` against this checkout, the way a new user runs it.

use bff_testkit::process::{OutputWithin, Proc, found};
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

/// The templates, and `web-oidc`: `--template web --auth oidc` (its golden copy is
/// bff-templates/golden/web-oidc, its overlay folder bff-templates/web-oidc).
const TEMPLATES: [&str; 4] = ["minimal", "web", "mobile", "web-oidc"];

/// What the golden copies say instead of this checkout's absolute path: the checkout's root seen from
/// `bff-templates/golden/<template>/`.
const GOLDEN_FRAMEWORK_PATH: &str = "../../..";

fn bff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bff"));
    c.env("RUST_LOG", "warn");
    c
}

/// This checkout, as `bff new` writes it: absolute and canonical.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh temporary folder, removed when the test passes (kept to look into when it fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bff-new-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("left for inspection: {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Every file under `dir` by its `/`-separated relative path.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
                let text =
                    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.insert(rel.replace('\\', "/"), text);
            }
        }
    }
    let mut files = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut files);
    }
    files
}

fn new_project(name: &str, template: &str, parent: &Path) -> Output {
    let variant: &[&str] = match template {
        "web-oidc" => &["--template", "web", "--auth", "oidc"],
        _ => &["--template", template],
    };
    let out = bff()
        .args(["new", name])
        .args(variant)
        .arg("--path")
        .arg(parent)
        .arg("--framework-path")
        .arg(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bff new {name} --template {template}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first line where two texts differ, to point at it rather than print both files.
fn first_difference(want: &str, got: &str) -> String {
    let (mut w, mut g) = (want.lines(), got.lines());
    for n in 1.. {
        match (w.next(), g.next()) {
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return "differs in line endings".into(),
            (a, b) => return format!("line {n}: golden {a:?}, rendered {b:?}"),
        }
    }
    unreachable!()
}

#[test]
fn every_template_renders_its_golden_copy() {
    let scratch = Scratch::new("golden");
    let root = workspace();
    let update = std::env::var_os("BFF_UPDATE_GOLDEN").is_some();
    for template in TEMPLATES {
        let name = format!("golden-{template}");
        let out = new_project(&name, template, &scratch.0);
        let project = scratch.0.join(&name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        for next in [
            format!("cd {}", project.display()),
            "cargo test".into(),
            "cargo run --example dev".into(),
        ] {
            assert!(stdout.contains(&next), "no `{next}` in:\n{stdout}");
        }

        // The template's ConfigMap is its bff.toml and k8s/cluster.toml rendered (the update rewrites it).
        let diff = bff()
            .args(["k8s", "diff"])
            .current_dir(&project)
            .output()
            .unwrap();
        if update && !diff.status.success() {
            let out = bff()
                .args(["k8s", "render"])
                .current_dir(&project)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let configmap = fs::read_to_string(project.join("k8s/configmap.yaml")).unwrap();
            fs::write(
                root.join("bff-templates")
                    .join(template)
                    .join("k8s/configmap.yaml"),
                configmap.replace(&name, "{{project-name}}"),
            )
            .unwrap();
        } else {
            assert!(
                diff.status.success(),
                "{template}: bff-templates/{template}/k8s/configmap.yaml is not rendered from its bff.toml and k8s/cluster.toml (BFF_UPDATE_GOLDEN=1 renders it):\n{}{}",
                String::from_utf8_lossy(&diff.stdout),
                String::from_utf8_lossy(&diff.stderr)
            );
        }

        let mut rendered = tree(&project);
        // Not a template file: the framework's lock, copied so the first build uses its versions.
        let lock = rendered.remove("Cargo.lock").expect("Cargo.lock copied");
        assert_eq!(lock, fs::read_to_string(root.join("Cargo.lock")).unwrap());
        let rendered: BTreeMap<String, String> = rendered
            .into_iter()
            .map(|(path, text)| {
                let text = text.replace(root.to_str().unwrap(), GOLDEN_FRAMEWORK_PATH);
                (path, text)
            })
            .collect();

        let golden_dir = root.join("bff-templates/golden").join(template);
        if update {
            let _ = fs::remove_dir_all(&golden_dir);
            for (path, text) in &rendered {
                let dest = golden_dir.join(path);
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                fs::write(dest, text).unwrap();
            }
            eprintln!("rewrote {}", golden_dir.display());
            continue;
        }
        let golden = tree(&golden_dir);
        let hint = "after a template change: BFF_UPDATE_GOLDEN=1 cargo test -p bff-cli --test new, then review git diff bff-templates/golden";
        assert_eq!(
            golden.keys().collect::<Vec<_>>(),
            rendered.keys().collect::<Vec<_>>(),
            "{template}: the files differ from bff-templates/golden/{template} ({hint})"
        );
        for (path, want) in &golden {
            let got = &rendered[path];
            assert!(
                want == got,
                "{template}: {path} differs from its golden copy: {} ({hint})",
                first_difference(want, got)
            );
        }
    }
}

/// A fresh project checks clean with no environment at all (its `${X_ADDR:-...}` have defaults), and
/// `--env-file` is read on top of the environment: a bad value there is reported with its key.
#[test]
fn a_fresh_project_checks_clean_with_no_environment() {
    let scratch = Scratch::new("check");
    for template in TEMPLATES {
        let name = format!("fresh-{template}");
        new_project(&name, template, &scratch.0);
        let project = scratch.0.join(&name);
        let check = |extra: &[&str]| {
            let mut c = bff();
            c.arg("check").args(extra).current_dir(&project);
            for var in [
                "USERS_ADDR",
                "ORDERS_ADDR",
                "CATALOG_ADDR",
                "BFF_CONFIG",
                "OIDC_ISSUER",
                "OIDC_CLIENT_ID",
                "OIDC_CLIENT_SECRET",
                "PUBLIC_URL",
            ] {
                c.env_remove(var);
            }
            c.output().unwrap()
        };
        let out = check(&["--config", "bff.toml"]);
        assert!(
            out.status.success(),
            "bff check in a fresh {template} project: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The session template has no users service: its first is orders.
        let first = if template == "web-oidc" {
            "orders"
        } else {
            "users"
        };
        let var = format!("{}_ADDR", first.to_ascii_uppercase());
        fs::write(project.join(".env"), format!("# mine\n{var}=nohost\n")).unwrap();
        let out = check(&["--config", "bff.toml", "--env-file", ".env"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("services.{first}.endpoints[0]")),
            "{template}: {stderr}"
        );
        fs::write(
            project.join(".env"),
            "USERS_ADDR=127.0.0.1:7001\nnot a line\n",
        )
        .unwrap();
        let out = check(&["--env-file", ".env"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(".env:2: not a KEY=VALUE line"), "{stderr}");
    }
}

/// `bff k8s diff` in a fresh project says nothing and exits 0; after an edit of bff.toml it names each
/// differing key on its own line and exits 1, until `bff k8s render`; a service without its cluster
/// address is refused by name, and nothing is written.
#[test]
fn bff_k8s_names_each_drifted_key_and_refuses_a_service_without_its_cluster_address() {
    let scratch = Scratch::new("k8s");
    new_project("shop", "mobile", &scratch.0);
    let project = scratch.0.join("shop");
    let k8s = |args: &[&str]| {
        bff()
            .arg("k8s")
            .args(args)
            .current_dir(&project)
            .output()
            .unwrap()
    };
    let out = k8s(&["diff"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");

    let config = fs::read_to_string(project.join("bff.toml")).unwrap();
    let edited = config.replacen("timeout = \"300ms\"", "timeout = \"250ms\"", 1)
        + "\n[services.reviews]\nendpoints = [\"${REVIEWS_ADDR}\"]\n";
    fs::write(project.join("bff.toml"), edited).unwrap();
    let before = fs::read_to_string(project.join("k8s/configmap.yaml")).unwrap();
    let out = k8s(&["render"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .starts_with("bff k8s: k8s/cluster.toml: services.reviews: no discovery or endpoints"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(project.join("k8s/configmap.yaml")).unwrap(),
        before,
        "nothing written"
    );

    let mut cluster = fs::read_to_string(project.join("k8s/cluster.toml")).unwrap();
    cluster.push_str(
        "\n[services.reviews]\ndiscovery = \"dns://reviews.default.svc.cluster.local:8080\"\n",
    );
    fs::write(project.join("k8s/cluster.toml"), cluster).unwrap();
    let out = k8s(&["diff"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "k8s/configmap.yaml: bff.toml: services.reviews: absent, a table rendered\n\
         k8s/configmap.yaml: bff.toml: services.users.timeout: \"300ms\" here, \"250ms\" rendered\n"
    );
    assert!(k8s(&["render"]).status.success());
    let out = k8s(&["diff"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_project_inside_another_git_repository_is_created_with_a_warning() {
    let scratch = Scratch::new("in-repo");
    let out = new_project("alone", "minimal", &scratch.0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let repo = scratch.0.join("monorepo");
    fs::create_dir_all(repo.join(".git")).unwrap();
    fs::create_dir_all(repo.join("apps")).unwrap();
    let out = new_project("inside", "minimal", &repo.join("apps"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("bff new: warning: ")
            && stderr.contains(&format!(
                "inside the git repository {}",
                repo.canonicalize().unwrap().display()
            )),
        "{stderr}"
    );
    assert!(repo.join("apps/inside/Cargo.toml").is_file());
}

#[test]
fn refusals_are_one_line_on_stderr_and_write_nothing() {
    let scratch = Scratch::new("refusals");
    let taken = scratch.0.join("taken");
    fs::create_dir(&taken).unwrap();
    fs::write(taken.join("notes.txt"), "mine").unwrap();
    let nowhere = scratch.0.join("no-such-checkout");
    let not_framework = scratch.0.join("taken");

    let cases: [(&[&str], Option<&Path>, &str); 7] = [
        (
            &["1bad"],
            None,
            "\"1bad\" is not a valid crate name: it must start with a letter",
        ),
        (
            &["has space"],
            None,
            "\"has space\" is not a valid crate name: ' ' is not allowed",
        ),
        (
            &["fn"],
            None,
            "\"fn\" is not a valid crate name: it is a Rust keyword",
        ),
        (&["taken"], None, "taken exists and is not empty"),
        (
            &["fresh", "--template", "desktop"],
            None,
            "unknown template \"desktop\": choose minimal, web, mobile",
        ),
        (&["fresh"], Some(&nowhere), "framework checkout"),
        (
            &["fresh"],
            Some(&not_framework),
            "is not a checkout of the bff framework",
        ),
    ];
    for (args, framework, want) in cases {
        let out = bff()
            .arg("new")
            .args(args)
            .arg("--path")
            .arg(&scratch.0)
            .arg("--framework-path")
            .arg(framework.map_or_else(workspace, Path::to_path_buf))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: printed on stdout");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        assert!(
            stderr.starts_with("bff new: ") && stderr.contains(want),
            "{args:?}: want `{want}` in: {stderr}"
        );
    }

    let left: Vec<String> = tree(&scratch.0).into_keys().collect();
    assert_eq!(left, ["taken/notes.txt"], "nothing was written");
    assert_eq!(fs::read_to_string(taken.join("notes.txt")).unwrap(), "mine");
}

/// The builds of CI: every generated project, grown the way docs/guide.md says ("Grow a generated
/// project": a service and a route in bff.toml, the service's cluster address in k8s/cluster.toml, `bff
/// k8s render`), compiles and passes its own tests, which nobody touched: they stub whatever services
/// bff.toml has, and its ConfigMap is rendered, not copied. The manifests pass kubernetes-validate. One
/// build per template: the fresh project's tests are the same tests. It builds in the workspace's target
/// folder (`--offline`: every crate it needs is in the checkout's lock file, which `bff new` copies), so
/// the framework's crates already compiled are reused.
#[test]
fn a_generated_project_grows_a_service_and_a_route_and_passes_its_own_tests() {
    let scratch = Scratch::new("build");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    for template in TEMPLATES {
        let name = format!("ci-{template}");
        // An existing empty folder is a fine place for a project.
        fs::create_dir(scratch.0.join(&name)).unwrap();
        new_project(&name, template, &scratch.0);
        let project = scratch.0.join(&name);
        grow(&project, template);

        let started = Instant::now();
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["test", "--offline"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_TERM_COLOR", "never")
            .output_within(Duration::from_secs(30 * 60));
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "cargo test in the generated {template} project failed after {took:?}:\n{stdout}\n{stderr}"
        );
        eprintln!("generated {template} project: cargo test took {took:?}");
        for suite in ["Running tests/api.rs", "Running tests/deploy.rs"] {
            assert!(
                stderr.contains(suite),
                "{template}: {suite} did not run:\n{stderr}"
            );
        }
        assert!(!stdout.contains("FAILED") && stdout.contains("test result: ok"));

        // The binary that build made (its `main.rs` loads the file, then `app(config)`) reloads its file.
        reloads_its_file(
            &target.join(format!("debug/{name}")),
            &project.join("bff.toml"),
        );
    }
}

/// The code blocks of docs/guide.md's "Grow a generated project", in order: the services (bff.toml), their
/// cluster addresses (k8s/cluster.toml), the declared page (bff.toml), the page in Rust (src/lib.rs).
fn guide_blocks() -> Vec<String> {
    let guide = fs::read_to_string(workspace().join("docs/guide.md")).unwrap();
    let section = guide
        .split("\n## Grow a generated project\n")
        .nth(1)
        .expect("docs/guide.md has the section")
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<String> = section
        .split("\n```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').unwrap().1.to_string() + "\n")
        .collect();
    assert!(blocks.len() >= 4, "{blocks:?}");
    blocks
}

/// Grows a fresh project the way docs/guide.md says ("Grow a generated project"), then `bff k8s render`;
/// the rendered manifests pass kubernetes-validate. `web`: the guide's services and its page in Rust
/// (handler appended to src/lib.rs, registered in `app()`: the guide's code compiles); `mobile`: the
/// guide's services and its declared page; `minimal` (no catalog for the page): a service read from
/// `${REVIEWS_ADDR}` with no default (the tests must never need it) and a declared route on it. Each
/// service gets its cluster address in k8s/cluster.toml, as the file's own services have theirs.
fn grow(project: &Path, template: &str) {
    let append = |file: &str, text: &str| {
        let path = project.join(file);
        let mut all = fs::read_to_string(&path).unwrap();
        all.push('\n');
        all.push_str(text);
        fs::write(path, all).unwrap();
    };
    let guide = guide_blocks();
    let dns = fs::read_to_string(project.join("k8s/cluster.toml"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("discovery = \"dns://"));
    let route = match template {
        "web" | "mobile" => {
            append("bff.toml", &guide[0]);
            assert!(dns, "{template}: the guide's cluster addresses are dns://");
            append("k8s/cluster.toml", &guide[1]);
            if template == "web" {
                append("src/lib.rs", &guide[3]);
                let lib = fs::read_to_string(project.join("src/lib.rs")).unwrap();
                let registered = lib.replace(
                    "get(home)))",
                    "get(home)).route(\"/api/products/{id}\", get(product_page)))",
                );
                assert_ne!(
                    lib, registered,
                    "web: app() registers home as the guide expects"
                );
                fs::write(project.join("src/lib.rs"), registered).unwrap();
            } else {
                append("bff.toml", &guide[2]);
            }
            "/api/products/{id}"
        }
        _ => {
            append(
                "bff.toml",
                r#"[services.reviews]
endpoints = ["${REVIEWS_ADDR}"]
timeout = "300ms"
required = false

[services.reviews.health_check]
path = "/healthz"

[[routes]]
path = "/api/reviews/{sku}"

[[routes.backends]]
name = "reviews"
service = "reviews"
path = "/reviews/{sku}"
"#,
            );
            append(
                "k8s/cluster.toml",
                if dns {
                    "[services.reviews]\ndiscovery = \"dns://reviews.default.svc.cluster.local:8080\"\n"
                } else {
                    "[services.reviews]\nendpoints = [\"reviews.default.svc.cluster.local:8080\"]\n"
                },
            );
            "/api/reviews/{sku}"
        }
    };
    let out = bff()
        .args(["k8s", "render"])
        .current_dir(project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{template}: bff k8s render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let configmap = fs::read_to_string(project.join("k8s/configmap.yaml")).unwrap();
    assert!(
        configmap.contains("reviews.default.svc.cluster.local:8080"),
        "{template}: {configmap}"
    );
    if template != "web" {
        assert!(
            configmap.contains(&format!("path = \"{route}\"")),
            "{template}: {configmap}"
        );
    }
    kubernetes_validate(&project.join("k8s"));
}

/// Runs kubernetes-validate (PyPI; `$BFF_KUBERNETES_VALIDATE`, else on PATH) on every manifest of `dir`.
fn kubernetes_validate(dir: &Path) {
    let program =
        std::env::var_os("BFF_KUBERNETES_VALIDATE").unwrap_or_else(|| "kubernetes-validate".into());
    let mut manifests: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 4, "{manifests:?}");
    let mut validate = Command::new(&program);
    validate.arg("--strict").args(&manifests);
    assert!(
        found(&program),
        "{}: not found; install kubernetes-validate (scripts/test does: pip install kubernetes-validate) or set BFF_KUBERNETES_VALIDATE",
        program.to_string_lossy()
    );
    let out = validate.output_within(Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.matches(" passed ").count() == manifests.len(),
        "kubernetes-validate refuses {}:\n{stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a generated project's binary on `config` (its `${..._ADDR}` set, its listeners on port 0 by
/// `BFF__` overrides, which a reload sees again), changes the file and asks for a reload.
fn reloads_its_file(binary: &Path, config: &Path) {
    let mut child = Proc::spawn(
        Command::new(binary)
            .arg("--config")
            .arg(config)
            .env("USERS_ADDR", "127.0.0.1:9")
            .env("ORDERS_ADDR", "127.0.0.1:9")
            .env("CATALOG_ADDR", "127.0.0.1:9")
            .env("REVIEWS_ADDR", "127.0.0.1:9")
            .env("INVENTORY_ADDR", "127.0.0.1:9")
            .env("BFF__BFF__LISTEN", "127.0.0.1:0")
            .env("BFF__BFF__ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let admin_of = |line: &str| {
        let line = strip_ansi(line);
        line.split("admin=")
            .nth(1)
            .filter(|_| line.contains("listening"))
            .map(|rest| {
                rest.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .next()
                    .unwrap()
                    .to_string()
            })
    };
    let lines = child.stderr_until(|l| admin_of(l).is_some());
    let admin = admin_of(lines.last().unwrap()).unwrap();

    let name = binary.file_name().unwrap().to_str().unwrap();
    let text = fs::read_to_string(config).unwrap();
    let line = format!("name = \"{name}\"");
    assert!(text.contains(&line), "{text}");
    fs::write(
        config,
        text.replace(&line, &format!("name = \"{name}-reloaded\"")),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(bff_testkit::REQUEST_DEADLINE)
            .build()
            .unwrap();
        let res = client
            .post(format!("http://{admin}/admin/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], "applied", "{body}");
        let config: serde_json::Value = client
            .get(format!("http://{admin}/admin/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(config["config"]["bff"]["name"], format!("{name}-reloaded"));
    });
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The image a user ships builds as CI builds: the `minimal` project's Dockerfile runs exactly the build
/// command this test runs on the rendered project (`--offline` aside, as every CI build here), and that
/// build needs nothing but cargo: no protoc, no optional part of the framework (its dependency tree has
/// no etcd, DNS resolver or Redis client).
#[test]
fn the_minimal_project_builds_as_its_dockerfile_says_with_no_optional_part() {
    let scratch = Scratch::new("docker");
    new_project("ci-minimal", "minimal", &scratch.0);
    let project = scratch.0.join("ci-minimal");
    let dockerfile = fs::read_to_string(project.join("Dockerfile")).unwrap();
    let build: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().split("&&").next())
        .map(|l| l.trim_end_matches('\\').trim())
        .filter(|l| l.starts_with("cargo build"))
        .collect();
    assert_eq!(
        build,
        ["cargo build --release --bin ci-minimal"],
        "the Dockerfile's build command"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let cargo = || {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        c.current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_TERM_COLOR", "never");
        c
    };

    let tree = cargo()
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none"])
        .output_within(Duration::from_secs(300));
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.contains("bff v"), "cargo tree:\n{tree}");
    for optional in [
        "hickory",
        "redis",
        "etcd",
        "prost",
        "tonic",
        "protoc",
        "jsonwebtoken",
        "rsa v",
        "p256",
        "ed25519",
        "rustls",
        "ring v",
    ] {
        assert!(
            !tree.lines().any(|l| l.contains(optional)),
            "{optional} is in the minimal project's dependencies:\n{tree}"
        );
    }

    let started = Instant::now();
    let out = cargo()
        .args(build[0].split_whitespace().skip(1))
        .arg("--offline")
        .output_within(Duration::from_secs(30 * 60));
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        build[0],
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("minimal project: {} took {:?}", build[0], started.elapsed());

    // Built without the `etcd` feature, the binary refuses a config that needs it, naming the feature,
    // the file, the line and the key, and exits 1: never a silent no-op.
    let config = fs::read_to_string(project.join("bff.toml")).unwrap();
    let endpoints = config
        .lines()
        .find(|l| l.starts_with("endpoints = "))
        .expect("bff.toml has endpoints");
    let etcd = config.replace(
        endpoints,
        r#"discovery = "etcd://127.0.0.1:2379/services/users/""#,
    );
    let line = etcd
        .lines()
        .position(|l| l.starts_with("discovery = "))
        .unwrap()
        + 1;
    fs::write(project.join("etcd.toml"), etcd).unwrap();
    let out = Command::new(target.join("release/ci-minimal"))
        .args(["--config", "etcd.toml"])
        .current_dir(&project)
        .env("RUST_LOG", "warn")
        .output_within(Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("etcd.toml:{line}: services.users.discovery"))
            && stderr.contains("needs the `etcd` feature of bff"),
        "{stderr}"
    );
}
