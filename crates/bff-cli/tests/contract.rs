//! `bff check` against the services' OpenAPI documents (`[services.NAME] openapi = "FILE"`): a backend
//! whose method, path or selected fields the document does not have is a config error with file:line.

use std::{path::PathBuf, process::Command};

fn bff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bff"));
    c.env_remove("BFF_CONFIG").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("BFF__") {
            c.env_remove(k);
        }
    }
    c
}

const SPEC: &str = r##"openapi: 3.1.0
info: {title: users, version: "1"}
paths:
  /users/{user_id}:
    get:
      parameters:
        - {name: user_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: a user
          content:
            application/json:
              schema: {$ref: "#/components/schemas/User"}
  /users/{user_id}/orders:
    get:
      responses:
        "200":
          description: orders
          content:
            application/json:
              schema:
                type: array
                items: {type: object, properties: {id: {type: string}}}
components:
  schemas:
    User:
      type: object
      properties:
        id: {type: string}
        profile:
          type: object
          properties:
            name: {type: string}
            email: {type: string}
"##;

/// A folder with `bff.toml` (services.users.openapi = "specs/users.yaml") and that spec; the config's
/// routes are `routes`.
fn project(name: &str, routes: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("contract-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("specs")).unwrap();
    std::fs::write(dir.join("specs/users.yaml"), SPEC).unwrap();
    let config = format!(
        "[services.users]\nendpoints = [\"127.0.0.1:1\"]\nopenapi = \"specs/users.yaml\"\n\n{routes}"
    );
    std::fs::write(dir.join("bff.toml"), config).unwrap();
    dir.join("bff.toml")
}

/// The 1-based line of the first line of `path`'s file that contains `text`.
fn line_of(path: &PathBuf, text: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(text))
        .unwrap()
        + 1
}

fn check(path: &PathBuf) -> (Option<i32>, String, String) {
    let out = bff()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_backends_that_the_services_openapi_document_has() {
    let path = project(
        "ok",
        r#"[[routes]]
path = "/home/{id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
select = "$.profile"
[[routes.backends]]
name = "orders"
service = "users"
path = "/users/{id}/orders?limit=3"
fields = { first = "$[0].id" }
"#,
    );
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(": ok (1 services, 1 routes)"), "{stdout}");
}

#[test]
fn check_reports_a_backend_path_missing_from_the_services_openapi_document() {
    let path = project(
        "missing",
        r#"[[routes]]
path = "/home/{id}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
select = "$.profile.nickname"
[[routes.backends]]
name = "prefs"
service = "users"
path = "/users/{id}/preferences"
[[routes.backends]]
name = "delete"
service = "users"
method = "DELETE"
path = "/users/{id}"
"#,
    );
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let file = path.display().to_string();
    let missing = format!(
        "{file}:{}: routes[0].backends[1].path: GET /users/{{id}}/preferences is not in ",
        line_of(&path, "/preferences")
    );
    assert!(stderr.contains(&missing), "{missing}\n{stderr}");
    assert!(stderr.contains("specs/users.yaml"), "{stderr}");
    let select = format!(
        "{file}:{}: routes[0].backends[0].select: $.profile.nickname: no property \"nickname\" at $.profile in the 200 response of GET /users/{{user_id}}",
        line_of(&path, "nickname")
    );
    assert!(stderr.contains(&select), "{select}\n{stderr}");
    let method = format!(
        "{file}:{}: routes[0].backends[2].method: DELETE /users/{{id}}: ",
        line_of(&path, "DELETE")
    );
    assert!(stderr.contains(&method), "{method}\n{stderr}");
    assert!(stderr.starts_with("3 config errors:"), "{stderr}");
}

#[test]
fn check_names_an_unreadable_openapi_document() {
    let path = project(
        "unreadable",
        "[[routes]]\npath = \"/x\"\n[[routes.backends]]\nname = \"u\"\nservice = \"users\"\npath = \"/users/1\"\n",
    );
    std::fs::write(
        path.parent().unwrap().join("specs/users.yaml"),
        "just: text\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1));
    let expected = format!("{}:3: services.users.openapi: ", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("has no `paths`"), "{stderr}");
}
