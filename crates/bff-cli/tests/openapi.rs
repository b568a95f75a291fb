//! The frontend's contract of the demo's BFFs (`bff demo`), black-box: their OpenAPI documents
//! (`GET /admin/openapi.json`, `bff openapi`) pass a real OpenAPI 3.1 validator (PyPI
//! `openapi-spec-validator`), schemathesis (PyPI) finds no response of theirs that violates them, and the
//! TypeScript clients `bff client` makes of them compile with `tsc --strict` (npm `typescript`, pinned in
//! tests/ts). scripts/test installs the tools: the Python ones in a venv under the target folder
//! (`$BFF_OPENAPI_SPEC_VALIDATOR`, `$BFF_SCHEMATHESIS`), TypeScript with `npm ci` in tests/ts (`$BFF_TSC`).

use bff_testkit::process::{OutputWithin, Proc, found, output_within};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

fn bff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bff"));
    c.env("RUST_LOG", "warn");
    c
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh folder under the target's temp dir.
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("contract-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a tool from `$VAR`, else on PATH, saying how to install it when it is missing.
fn tool(
    var: &str,
    name: &str,
    install: &str,
    args: &[&std::ffi::OsStr],
    dir: &Path,
) -> std::process::Output {
    let program = std::env::var_os(var).unwrap_or_else(|| name.into());
    let mut cmd = Command::new(&program);
    cmd.env("NO_COLOR", "1").current_dir(dir).args(args);
    assert!(
        found(&program),
        "{}: not found; {install} (scripts/test does) or set {var}",
        program.to_string_lossy()
    );
    // schemathesis has a timeout a request, none in all.
    output_within(&mut cmd, Duration::from_secs(600))
}

fn tsc() -> Command {
    match std::env::var_os("BFF_TSC") {
        Some(p) => Command::new(p),
        None => {
            let local = root().join("tests/ts/node_modules/.bin/tsc");
            assert!(
                local.exists(),
                "{}: missing; run `npm ci` in tests/ts (scripts/test does) or set BFF_TSC",
                local.display()
            );
            Command::new(local)
        }
    }
}

/// `tsc --strict --noEmit` of `file` in `dir`: ES2022 modules resolved as a bundler does, the DOM's types.
fn tsc_strict(dir: &Path, file: &str) -> std::process::Output {
    tsc()
        .current_dir(dir)
        .args([
            "--strict",
            "--noEmit",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
        ])
        .args(["--module", "es2022", "--moduleResolution", "bundler", file])
        .output_within(Duration::from_secs(300))
}

/// `bff demo` on port 0: the demo services, a web BFF and a mobile BFF; killed when dropped.
struct Demo {
    _child: Proc,
    web: String,
    web_admin: String,
    mobile: String,
    mobile_admin: String,
}

impl Demo {
    fn start() -> Self {
        let mut child = Proc::spawn(
            bff()
                .env("RUST_LOG", "error")
                .args([
                    "demo",
                    "--web-listen",
                    "127.0.0.1:0",
                    "--web-admin",
                    "127.0.0.1:0",
                ])
                .args([
                    "--mobile-listen",
                    "127.0.0.1:0",
                    "--mobile-admin",
                    "127.0.0.1:0",
                ])
                .stdout(Stdio::piped()),
        );
        let lines = child.stdout_until(|l| l.starts_with("mobile BFF"));
        let addrs = |prefix: &str| -> (String, String) {
            let line = lines
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line: {lines:#?}"));
            let urls: Vec<&str> = line
                .split_whitespace()
                .filter(|w| w.starts_with("http://"))
                .collect();
            (urls[0].to_string(), urls[1].to_string())
        };
        let (web, web_admin) = addrs("web BFF");
        let (mobile, mobile_admin) = addrs("mobile BFF");
        Self {
            _child: child,
            web,
            web_admin,
            mobile,
            mobile_admin,
        }
    }

    /// The document a BFF of the demo serves, saved in `dir`.
    fn document(admin: &str, dir: &Path, name: &str) -> (PathBuf, Value) {
        let url = format!("{admin}/admin/openapi.json");
        let text = http_get(&url);
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, &text).unwrap();
        (file, doc)
    }
}

fn http_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(bff_testkit::REQUEST_DEADLINE)
            .build()
            .unwrap();
        client.get(url).send().await.unwrap().text().await.unwrap()
    })
}

fn validate(file: &Path) -> std::process::Output {
    tool(
        "BFF_OPENAPI_SPEC_VALIDATOR",
        "openapi-spec-validator",
        "pip install openapi-spec-validator",
        &[file.as_os_str()],
        Path::new("."),
    )
}

/// The demo's documents, served and printed, pass openapi-spec-validator (which refuses a broken one:
/// it is not a no-op), and are the typed ones: each backend's value from its response schema.
#[test]
fn the_demo_documents_pass_an_openapi_validator() {
    let dir = folder("validator");
    let demo = Demo::start();
    let (web, web_doc) = Demo::document(&demo.web_admin, &dir, "web");
    let (mobile, mobile_doc) = Demo::document(&demo.mobile_admin, &dir, "mobile");
    let home = &web_doc["paths"]["/api/home/{user_id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        home["properties"]["user"]["$ref"],
        "#/components/schemas/Profile"
    );
    assert_eq!(
        web_doc["components"]["schemas"]["Orders"]["items"]["$ref"],
        "#/components/schemas/Orders_Order"
    );
    assert!(mobile_doc["paths"]["/m/home/{user_id}"]["get"].is_object());

    // `bff openapi` prints the document of a config (here the mobile example's, declarative routes).
    let printed = bff()
        .args(["openapi", "--config"])
        .arg(root().join("examples/mobile-bff/bff.toml"))
        .envs([
            ("USERS_ADDR", "127.0.0.1:1"),
            ("ORDERS_ADDR", "127.0.0.1:2"),
            ("CATALOG_ADDR", "127.0.0.1:3"),
        ])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let example = dir.join("mobile-example.json");
    std::fs::write(&example, &printed.stdout).unwrap();
    let doc: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        doc["paths"]["/m/orders/{user_id}"]["get"]["security"],
        serde_json::json!([{"apiKey": []}])
    );

    for file in [&web, &mobile, &example] {
        let out = validate(file);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A parameter of the path left out: the validator sees it.
    let mut broken = web_doc.clone();
    broken["paths"]["/api/home/{user_id}"]["get"]["parameters"] = Value::Array(Vec::new());
    let file = dir.join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    assert!(!validate(&file).status.success());
}

/// schemathesis, with every check but `not_a_server_error` (a 502 is the documented answer when the
/// users service does not know an id, as it does not know most of those generated), finds no response
/// of either demo BFF that its own document does not describe: statuses, content types, headers and
/// bodies. The document is the one the BFF serves, with an example id on its path parameter (`42`, a
/// user the demo knows), so that 200 answers are among those checked: a document whose 200 schema is
/// wrong fails. Forty examples an operation keep it short (`--max-time` would fuzz until it is spent).
#[test]
fn schemathesis_finds_no_response_outside_the_demo_documents() {
    let dir = folder("schemathesis");
    let demo = Demo::start();
    let run = |document: &Path, public: &str| {
        let args = [
            "run".as_ref(),
            document.as_os_str(),
            "--url".as_ref(),
            public.as_ref(),
            "--exclude-checks".as_ref(),
            "not_a_server_error".as_ref(),
            "--max-examples".as_ref(),
            "40".as_ref(),
            "--seed".as_ref(),
            "1".as_ref(),
            "--workers".as_ref(),
            "1".as_ref(),
            "--request-timeout".as_ref(),
            "5".as_ref(),
            "--no-color".as_ref(),
        ];
        let out = tool(
            "BFF_SCHEMATHESIS",
            "schemathesis",
            "pip install schemathesis",
            &args,
            &dir,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success() && stdout.contains("No issues found"),
            stdout,
        )
    };
    for (name, admin, public, route, typed) in [
        (
            "web",
            &demo.web_admin,
            &demo.web,
            "/api/home/{user_id}",
            "Profile",
        ),
        (
            "mobile",
            &demo.mobile_admin,
            &demo.mobile,
            "/m/home/{user_id}",
            "Me",
        ),
    ] {
        let (_, mut doc) = Demo::document(admin, &dir, name);
        doc["paths"][route]["get"]["parameters"][0]["example"] = "42".into();
        let file = dir.join(format!("{name}-example.json"));
        std::fs::write(&file, doc.to_string()).unwrap();
        let (passed, stdout) = run(&file, public);
        assert!(passed, "{name}: schemathesis:\n{stdout}");
        assert!(stdout.contains("Tested: 1"), "{name}: {stdout}");

        // The same document with a string of the 200 answer declared an integer.
        let schema = &mut doc["components"]["schemas"][typed]["properties"]["name"];
        assert_eq!(schema["type"], "string", "{name}");
        schema["type"] = "integer".into();
        let wrong = dir.join(format!("{name}-wrong.json"));
        std::fs::write(&wrong, doc.to_string()).unwrap();
        let (passed, stdout) = run(&wrong, public);
        assert!(
            !passed && stdout.contains("Response violates schema"),
            "{name}: a wrong 200 schema went unnoticed:\n{stdout}"
        );
    }
}

/// The clients of the demo's BFFs compile with `tsc --strict`, and their types are the documents':
/// code using them as the documents say compiles, code that does not (a missing parameter, a field the
/// schema does not have, an error status the route never answers) does not.
#[test]
fn the_typescript_clients_compile_with_tsc_strict() {
    let dir = folder("tsc");
    let demo = Demo::start();
    for (name, admin) in [("web", &demo.web_admin), ("mobile", &demo.mobile_admin)] {
        let (doc, _) = Demo::document(admin, &dir, name);
        let out = bff()
            .args(["client", "--lang", "typescript", "--openapi"])
            .arg(&doc)
            .arg("--out")
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    drop(demo);
    // `--config`: the declarative routes of a config, untyped where it names no schema.
    let out = bff()
        .args(["client", "--config"])
        .arg(root().join("crates/bff-cli/demo/mobile.toml"))
        .arg("--out")
        .arg(dir.join("from-config"))
        .envs([
            ("DEMO_USERS", "127.0.0.1:1"),
            ("DEMO_ORDERS", "127.0.0.1:2"),
            ("DEMO_CATALOG", "127.0.0.1:3"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bff()
        .args(["client", "--lang", "go", "--openapi", "none.json", "--out"])
        .arg(dir.join("go"))
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("the one language is typescript"),
        "{out:?}"
    );

    let uses = r#"
import { createClient as web, type Profile, type PartialError } from "./web/client.js";
import { createClient as mobile } from "./mobile/client.js";
import { createClient as untyped } from "./from-config/client.js";

export async function home(): Promise<string> {
  const api = web({ baseUrl: "http://127.0.0.1:8080", headers: { "accept-language": "en" } });
  const r = await api.getApiHomeByUserId({ user_id: "42", "accept-language": "fr" });
  if (!r.ok) {
    switch (r.status) {
      case 502: return `upstream ${r.error.code}`;
      case 504: return "late";
      case "unexpected": return r.error.message;
      default: return String(r.status);
    }
  }
  const user: Profile = r.data.user;
  const category: "books" | "music" | "garden" = user.favoriteCategory;
  const firstOrder: number | undefined = r.data.orders?.[0]?.total.amount;
  const skus: string[] = (r.data.recommendations ?? []).map((i) => i.sku);
  const failed: PartialError[] = r.data._errors ?? [];
  return `${user.name} ${category} ${firstOrder} ${skus.join()} ${failed.map((e) => e.backend)} ${r.partial}`;
}

export async function phone(): Promise<string> {
  const api = mobile({ baseUrl: "" });
  const r = await api.getMHomeByUserId({ user_id: "42" });
  if (r.ok) {
    const ids: string[] | null = r.data.order_ids;
    return `${r.data.me.name} ${r.data.me.avatar} ${ids?.length} ${r.data.picks?.join()}`;
  }
  return r.status === "unexpected" ? "?" : r.error.code;
}

export async function plain(): Promise<unknown> {
  const r = await untyped({ baseUrl: "" }).getMHomeByUserId({ user_id: "1" });
  return r.ok ? r.data.me : r.error;
}
"#;
    std::fs::write(dir.join("uses.ts"), uses).unwrap();
    let compile = |file: &str| tsc_strict(&dir, file);
    let out = compile("uses.ts");
    assert!(
        out.status.success(),
        "tsc --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (wrong, error) in [
        (
            "api.getApiHomeByUserId({ user_id: \"42\", \"accept-language\": \"fr\" })",
            "api.getApiHomeByUserId({})",
        ),
        ("user.favoriteCategory;", "user.nickname;"),
        ("case 504: return \"late\";", "case 418: return \"teapot\";"),
    ] {
        std::fs::write(dir.join("wrong.ts"), uses.replace(wrong, error)).unwrap();
        let out = compile("wrong.ts");
        assert!(
            !out.status.success(),
            "{error}: compiled, the client's types say nothing of it"
        );
    }
}

/// A BFF with browser sessions: its document (`bff openapi`) describes the endpoints its frontend uses
/// and passes the validator; its client (`bff client`) has `getBffLoginUrl` (a URL to navigate to, not a
/// call), `getBffUser` typed by `user_claims` and `postBffLogout` with the end-session URL, both sending
/// the configured CSRF header with the cookie, and `tsc --strict` refuses their misuse.
#[test]
fn a_session_bffs_document_and_client_have_login_user_and_logout() {
    let dir = folder("session");
    let config = dir.join("bff.toml");
    std::fs::write(
        &config,
        r#"
[session]
issuer = "https://id.example.com"
client_id = "web"
client_secret = "a-secret-of-the-test"
public_url = "https://app.example.com"
csrf_header = "x-app-csrf"
user_claims = ["sub", "name"]

[services.orders]
endpoints = ["127.0.0.1:1"]
token = "user"

[[routes]]
path = "/api/orders"
auth = "session"
[[routes.backends]]
name = "orders"
service = "orders"
path = "/orders"
"#,
    )
    .unwrap();
    let printed = bff()
        .args(["openapi", "--config"])
        .arg(&config)
        .output_within(Duration::from_secs(60));
    assert!(printed.status.success(), "{printed:?}");
    let doc: Value = serde_json::from_slice(&printed.stdout).unwrap();
    for (path, method) in [
        ("/bff/login", "get"),
        ("/bff/user", "get"),
        ("/bff/logout", "post"),
        ("/api/orders", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{path}: {doc}");
    }
    assert!(
        doc["paths"]["/bff/callback"].is_null(),
        "the provider's, not the frontend's"
    );
    let file = dir.join("openapi.json");
    std::fs::write(&file, &printed.stdout).unwrap();
    let out = validate(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let out = bff()
        .args(["client", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.join("client"))
        .output_within(Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    let client = std::fs::read_to_string(dir.join("client/client.ts")).unwrap();
    assert!(client.contains(r#""x-app-csrf": "1""#), "{client}");

    let uses = r#"
import { createClient, type SessionUser } from "./client/client.js";

const api = createClient({ baseUrl: "" });

export function signIn(): string {
  return api.getBffLoginUrl({ returnUrl: "/orders" });
}

export async function me(): Promise<string> {
  const r = await api.getBffUser();
  if (!r.ok) return r.status === 401 ? "signed out" : String(r.status);
  const user: SessionUser = r.data;
  const at: number = user.expires_at;
  return `${String(user.claims.sub)} ${String(user.claims.name)} ${at}`;
}

export async function signOut(): Promise<string | null> {
  const r = await api.postBffLogout();
  return r.ok ? r.data.end_session_url : null;
}
"#;
    let compile = |text: &str| {
        std::fs::write(dir.join("uses.ts"), text).unwrap();
        tsc_strict(&dir, "uses.ts")
    };
    let out = compile(uses);
    assert!(
        out.status.success(),
        "tsc --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (right, wrong) in [
        ("{ returnUrl: \"/orders\" }", "{ returnUrl: 7 }"),
        ("String(user.claims.name)", "String(user.claims.password)"),
        ("r.data.end_session_url", "r.data.end_session"),
        ("api.getBffLoginUrl(", "api.getBffLogin("),
    ] {
        let out = compile(&uses.replace(right, wrong));
        assert!(
            !out.status.success(),
            "{wrong}: compiled, the client's types say nothing of it"
        );
    }
}
