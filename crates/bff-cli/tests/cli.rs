//! The `bff` binary, black-box: check, run, drain on SIGTERM, demo.

use bff_testkit::{
    Stub,
    process::{OutputWithin, Proc, listening},
};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

fn bff() -> Command {
    scrubbed(Command::new(env!("CARGO_BIN_EXE_bff")))
}

/// `c` without the environment of the test run that would change what `bff` reads (`BFF_CONFIG`,
/// `BFF__...` overrides), logging at warn.
fn scrubbed(mut c: Command) -> Command {
    c.env_remove("BFF_CONFIG").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("BFF__") {
            c.env_remove(k);
        }
    }
    c
}

/// `bff check --config PATH`, run to its end.
fn check(path: &Path) -> std::process::Output {
    bff()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bff-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn good_config(users: &str) -> String {
    format!(
        r#"[bff]
name = "cli-bff"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "5s"

[services.users]
endpoints = ["{users}"]

[[routes]]
path = "/api/u/{{id}}"

[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
select = "$.name"
"#
    )
}

const BAD: &str = r#"[bff]
name = "cli-bff"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
speed = "fast"

[services.users]
endpoints = ["127.0.0.1:1"]
timeout = "soon"

[[routes]]
path = "/api/u/{id}"

[[routes.backends]]
name = "user"
service = "nope"
path = "/users/{uid}"
"#;

#[test]
fn check_accepts_a_valid_config() {
    let path = write_config("good.toml", &good_config("127.0.0.1:9"));
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 services, 1 routes)"));
}

#[test]
fn check_names_file_line_and_key_of_every_error() {
    let path = write_config("bad.toml", BAD);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for want in [
        format!("{file}:5: bff.speed: unknown field `speed`"),
        format!("{file}:9: services.users.timeout: invalid duration \"soon\""),
        format!("{file}:16: routes[0].backends[0].service: unknown service \"nope\""),
        format!("{file}:17: routes[0].backends[0].path: unknown placeholder {{uid}}"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
    assert!(err.starts_with("4 config errors"), "{err}");
}

#[test]
fn check_refuses_an_admin_listener_off_loopback_without_a_token() {
    let text = good_config("127.0.0.1:9").replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:9901\"",
    );
    let path = write_config("admin-open.toml", &text);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:1: bff.admin_token: required", path.display());
    assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    // With a token, from the environment as a secret would be, the same listener is fine; the token is
    // never printed.
    let token = "s3cret-admin-token-0123456789";
    let with_token = text.replace(
        "shutdown_grace",
        "admin_token = \"${BFF_ADMIN_TOKEN}\"\nshutdown_grace",
    );
    let path = write_config("admin-token.toml", &with_token);
    let out = bff()
        .args(["check", "--config"])
        .arg(&path)
        .env("BFF_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(token) && !stderr.contains(token));
    // A short one is refused, and not echoed either.
    let out = bff()
        .args(["check", "--config"])
        .arg(&path)
        .env("BFF_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bff.admin_token: must be at least 16 characters") && !err.contains("short\""),
        "{err}"
    );
}

#[test]
fn check_reads_bff_config_and_env_overrides() {
    let path = write_config("env.toml", &good_config("127.0.0.1:9"));
    let out = bff()
        .arg("check")
        .env("BFF_CONFIG", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = bff()
        .arg("check")
        .env("BFF_CONFIG", &path)
        .env("BFF__SERVICES__USERS__TIMEOUT", "whenever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "environment BFF__SERVICES__USERS__TIMEOUT: services.users.timeout: invalid duration"
        ),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_config_with_the_same_errors_as_check() {
    let path = write_config("bad-run.toml", BAD);
    let check = check(&path);
    // Bounded: a regression that accepted the config would serve for ever.
    let run = bff()
        .args(["run", "--config"])
        .arg(&path)
        .output_within(Duration::from_secs(60));
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(run.stdout.is_empty(), "nothing was served");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(bff_testkit::REQUEST_DEADLINE)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_config_routes_and_drains_in_flight_requests_on_sigterm() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .delay(Duration::from_millis(600))
        .json(json!({"name": "Ada"}));
    let path = write_config("run.toml", &good_config(&users.endpoint()));
    let mut child = Proc::spawn(
        bff()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped()),
    );
    let (url, admin) = child.listening();
    assert_eq!(
        client()
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let in_flight =
        tokio::spawn(async move { client().get(format!("{url}/api/u/1")).send().await });
    // SIGTERM once the request is with the downstream.
    users.wait_for_hits("/users/1", 1).await;
    child.sigterm();
    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request finishes during the drain");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"user": "Ada"}));
    let status = tokio::task::spawn_blocking(move || child.wait_within())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_its_printed_curls_with_merged_json_from_three_services() {
    let mut child = Proc::spawn(
        bff()
            .args([
                "demo",
                "--web-listen",
                "127.0.0.1:0",
                "--web-admin",
                "127.0.0.1:0",
                "--mobile-listen",
                "127.0.0.1:0",
                "--mobile-admin",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped()),
    );
    let lines = child.stdout_until(|l| l.contains("Ctrl-C stops all"));
    let curls: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("curl -s "))
        .collect();
    assert_eq!(curls.len(), 4, "{lines:?}");

    let web: Value = client()
        .get(curls[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(web["user"]["name"], "Alan Turing", "users: {web}");
    assert_eq!(web["orders"].as_array().unwrap().len(), 3, "orders: {web}");
    assert_eq!(
        web["recommendations"][0]["sku"], "books-1",
        "catalog, after users: {web}"
    );

    let mobile: Value = client()
        .get(curls[1])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        mobile,
        json!({
            "me": {"name": "Alan Turing", "avatar": "https://cdn.example.com/avatars/42-64.png", "category": "books"},
            "order_ids": ["o-42-1", "o-42-2", "o-42-3"],
            "picks": ["books-1", "books-2", "books-3", "books-4"],
        })
    );
    let services: Value = client()
        .get(curls[2])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services.as_array().unwrap().len(), 3);
    assert_eq!(client().get(curls[3]).send().await.unwrap().status(), 200);

    child.sigterm();
    let status = tokio::task::spawn_blocking(move || child.wait_within())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_is_one_json_line_per_request_on_stdout() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let path = write_config("access.toml", &good_config(&users.endpoint()));
    let mut child = Proc::spawn(
        bff()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped()),
    );
    let lines = child.stdout_lines();
    let (url, _) = listening(&lines.next_line());
    let res = client()
        .get(format!("{url}/api/u/1"))
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let line = lines.next_line();
    let entry: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["request_id"], "log-me-1");
    assert_eq!(entry["route"], "/api/u/{id}");
    assert_eq!(entry["path"], "/api/u/1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["downstream"]["attempts"], 1);
    assert_eq!(entry["downstream"]["failed"], 0);
    assert!(entry["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(entry["trace_id"].as_str().unwrap().len(), 32);
    child.sigterm();
}

/// `access_log = false`: requests are served and stdout gets no line for them. Read after the process
/// has exited (SIGTERM), so the whole of stdout is there; the same requests with the log on give a line
/// each (the_access_log_is_one_json_line_per_request_on_stdout).
#[tokio::test]
async fn access_log_false_writes_no_line_while_requests_are_served() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let text = format!(
        "{}\n[telemetry]\naccess_log = false\n",
        good_config(&users.endpoint())
    );
    let path = write_config("no-access-log.toml", &text);
    let mut child = Proc::spawn(
        bff()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped()),
    );
    let lines = child.stdout_lines();
    let (url, _) = listening(&lines.next_line());
    for _ in 0..3 {
        let res = client().get(format!("{url}/api/u/1")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(users.hits("/users/1"), 3);
    child.sigterm();
    assert!(child.wait_within().success());
    // It exited: its stdout is closed and the lines end.
    let rest = lines.rest();
    assert!(
        rest.iter().all(|l| !l.contains("/api/u/1")),
        "no access log line: {rest:?}"
    );
}

/// A config with the `/api/u/{id}` route, and with `/api/v2/{id}` too when `second` (the change a reload
/// must apply); `bff_extra` goes into `[bff]`.
fn reload_config(users: &str, bff_extra: &str, second: bool) -> String {
    let mut text = good_config(users).replacen(
        "shutdown_grace = \"5s\"\n",
        &format!("shutdown_grace = \"5s\"\n{bff_extra}\n"),
        1,
    );
    text.push_str("\n[telemetry]\naccess_log = false\n");
    if second {
        text.push_str(
            r#"
[[routes]]
path = "/api/v2/{id}"

[[routes.backends]]
name = "v2"
service = "users"
path = "/users/{id}"
select = "$.name"
"#,
        );
    }
    text
}

/// `bff run --config path`, started; its public and admin URLs.
struct Running {
    proc: Proc,
    url: String,
    admin: String,
}

impl Running {
    fn start(path: &Path) -> Self {
        Self::spawn(bff().args(["run", "--config"]).arg(path))
    }

    /// `bff run` allowed one CPU (`taskset -c 0`, as a container's cpuset would), where it runs on
    /// tokio's current-thread scheduler.
    fn start_on_one_cpu(path: &Path) -> Self {
        let mut cmd = scrubbed(Command::new("taskset"));
        cmd.args(["-c", "0", env!("CARGO_BIN_EXE_bff"), "run", "--config"])
            .arg(path)
            .env_remove("TOKIO_WORKER_THREADS");
        Self::spawn(&mut cmd)
    }

    fn spawn(cmd: &mut Command) -> Self {
        let mut proc = Proc::spawn(cmd.stdout(Stdio::piped()));
        let (url, admin) = proc.listening();
        Self { url, admin, proc }
    }

    async fn status(&self, path: &str) -> u16 {
        client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls `path` until it answers 200, for at most 20 seconds.
    async fn wait_for_200(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.status(path).await != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never answered 200"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reload(&self) -> (u16, Value) {
        let res = client()
            .post(format!("{}/admin/reload", self.admin))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.proc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// The file of a `bff run` under reload tests: `reload_config` over a users stub that answers, with
/// `bff_extra` in `[bff]`.
struct Reloadable {
    users: Stub,
    path: PathBuf,
    bff_extra: &'static str,
}

impl Reloadable {
    /// Writes the first version (without `/api/v2/{id}`) and starts `bff run` on it.
    async fn start(name: &str, bff_extra: &'static str) -> (Self, Running) {
        let users = Stub::start().await;
        users.on("/users/1").json(json!({"name": "Ada"}));
        let path = write_config(name, &reload_config(&users.endpoint(), bff_extra, false));
        let bff = Running::start(&path);
        let file = Self {
            users,
            path,
            bff_extra,
        };
        (file, bff)
    }

    /// The config, with the second route when `second`.
    fn text(&self, second: bool) -> String {
        reload_config(&self.users.endpoint(), self.bff_extra, second)
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_its_file_on_post_admin_reload_and_refuses_a_broken_one() {
    let (file, bff) = Reloadable::start("reload-post.toml", "").await;
    assert_eq!(bff.status("/api/u/1").await, 200);
    assert_eq!(bff.status("/api/v2/1").await, 404);

    file.write(&file.text(true));
    let (status, body) = bff.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "applied", "version": 2}));
    assert_eq!(bff.status("/api/v2/1").await, 200, "the new route serves");

    let broken = file
        .text(false)
        .replace("select = \"$.name\"", "select = \"$[\"");
    file.write(&broken);
    let (status, body) = bff.reload().await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("select"))
        .unwrap()
        + 1;
    let want = format!(
        "{}:{line}: routes[0].backends[0].select",
        file.path.display()
    );
    assert!(message.contains(&want), "want `{want}` in: {message}");
    assert_eq!(
        bff.status("/api/u/1").await,
        200,
        "the old config keeps serving"
    );
    assert_eq!(
        bff.status("/api/v2/1").await,
        200,
        "the old config keeps serving"
    );
    bff.proc.sigterm();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_its_file_on_sighup() {
    let (file, bff) = Reloadable::start("reload-hup.toml", "").await;
    assert_eq!(bff.status("/api/v2/1").await, 404);
    file.write(&file.text(true));
    // Sent again until it lands: a signal that arrives before the reload handler listens is ignored
    // (never the default exit), but not delivered to the handler either.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        bff.signal("HUP");
        if bff.status("/api/v2/1").await == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let config: Value = client()
        .get(format!("{}/admin/config", bff.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(config["version"].as_u64().unwrap() >= 2, "{config}");
    bff.proc.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let mut bff = bff;
        bff.proc.wait_within()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "SIGHUP did not end the process");
}

/// On one CPU `bff run` drives everything from one thread: the routes, the file watcher's reload, the
/// admin listener and the drain on SIGTERM must all still happen. The service is called over h2c, as
/// the benchmark's A does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_one_cpu_serves_reloads_and_drains() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let config = |second| {
        reload_config(&users.endpoint(), "watch_config = true", second).replacen(
            "[services.users]\n",
            "[services.users]\nprotocol = \"h2c\"\n",
            1,
        )
    };
    let path = write_config("one-cpu.toml", &config(false));
    let bff = Running::start_on_one_cpu(&path);
    assert_eq!(bff.status("/api/u/1").await, 200);
    assert_eq!(users.requests()[0].version, reqwest::Version::HTTP_2);
    assert_eq!(bff.status("/api/v2/1").await, 404);
    std::fs::write(&path, config(true)).unwrap();
    bff.wait_for_200("/api/v2/1").await;
    let (status, body) = bff.reload().await;
    assert_eq!(status, 200, "{body}");
    bff.proc.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let mut bff = bff;
        bff.proc.wait_within()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_a_watched_file() {
    let (file, bff) = Reloadable::start("reload-watch.toml", "watch_config = true").await;
    assert_eq!(bff.status("/api/v2/1").await, 404);
    file.write(&file.text(true));
    bff.wait_for_200("/api/v2/1").await;
    bff.proc.sigterm();
}

#[test]
fn check_refuses_drifting_values_with_file_line_and_key() {
    let text = r#"[edge.auth.jwt]
jwks_file = "k.json"
algorithms = ["HS256"]
secret = "${JWT_SECRET}"
[edge.rate_limit]
key = "user_id"
[services.users]
endpoints = ["127.0.0.1:9"]
timeout = "1s"
hedge_after = "1s"
pool_idle_timeout = "0s"
[services.users.retry]
on = ["reset", "+503"]
[[routes]]
path = "/api/u/{id}"
forward_headers = ["content-length", "host"]
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{id}"
"#;
    let path = write_config("drift.toml", text);
    let file = path.display().to_string();
    let out = bff()
        .args(["check", "--config"])
        .arg(&path)
        .env("JWT_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!("{file}:4: edge.auth.jwt.secret: is empty"),
        format!("{file}:6: edge.rate_limit.key: \"user_id\" is not client_ip"),
        format!("{file}:10: services.users.hedge_after: 1s is not less than timeout"),
        format!("{file}:11: services.users.pool_idle_timeout: must be greater than 0"),
        format!("{file}:13: services.users.retry.on[1]: \"+503\" is not"),
        format!("{file}:16: routes[0].forward_headers[0]: content-length is a hop-by-hop"),
        format!("{file}:16: routes[0].forward_headers[1]: host is a hop-by-hop"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }

    let short = "0123456789abcdef";
    let out = bff()
        .args(["check", "--config"])
        .arg(&path)
        .env("JWT_SECRET", short)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{file}:4: edge.auth.jwt.secret: is 16 bytes long")),
        "{err}"
    );
    assert!(!err.contains(short), "the secret is never printed: {err}");
}

#[test]
fn check_accepts_ipv4_mapped_trusted_proxies_and_names_bad_prefixes() {
    let good = good_config("127.0.0.1:9").replace(
        "[services.users]",
        "[edge]\ntrusted_proxies = [\"::ffff:10.0.0.1\", \"::ffff:10.0.0.0/104\"]\n\n[services.users]",
    );
    let path = write_config("mapped.toml", &good);
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = good_config("127.0.0.1:9").replace(
        "[services.users]",
        "[edge]\ntrusted_proxies = [\n  \"::ffff:10.0.0.0/80\",\n  \"10.0.0.0/33\",\n]\n\n[services.users]",
    );
    let path = write_config("mapped-bad.toml", &bad);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for want in [
        format!(
            "{file}:9: edge.trusted_proxies[0]: \"::ffff:10.0.0.0/80\": an IPv4-mapped address needs a prefix length of 96-128"
        ),
        format!("{file}:10: edge.trusted_proxies[1]: \"10.0.0.0/33\": prefix length must be 0-32"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_reach_neither_admin_config_nor_the_log() {
    let idp = Stub::start().await;
    idp.on("/jwks").status(500);
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let cfg = good_config(&users.endpoint()).replace(
        "[services.users]",
        &format!(
            "[edge.rate_limit]\nstore = \"redis://:p@ssSECRET1@127.0.0.1:1\"\n\n\
             [edge.auth.jwt]\njwks_url = \"http://{}/jwks?access_token=SECRET2\"\n\
             jwks_refresh = \"1h\"\n\n[services.users]",
            idp.endpoint()
        ),
    );
    let path = write_config("secrets.toml", &cfg);
    let mut child = Proc::spawn(
        bff()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (url, admin) = child.listening();
    let shown = client()
        .get(format!("{admin}/admin/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("redis://<redacted>@127.0.0.1:1"), "{shown}");
    assert!(shown.contains("/jwks?access_token=<redacted>"), "{shown}");
    // A request meets the unreachable store (logged with the store's name) and falls back.
    let res = client().get(format!("{url}/api/u/1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The log, until both lines that name a URL were written.
    let (mut jwks, mut store) = (false, false);
    let log = child
        .stderr_until(|line| {
            jwks |= line.contains("cannot refresh the JWKS");
            store |= line.contains("rate limit store unreachable");
            jwks && store
        })
        .join("\n");
    assert!(!log.contains("SECRET"), "{log}");
    assert!(log.contains("access_token=<redacted>"), "{log}");
    child.sigterm();
}

#[test]
fn check_accepts_a_header_and_client_ip_rate_limit_key_and_names_a_bad_one() {
    let with_key = |key: &str| {
        good_config("127.0.0.1:9").replace(
            "[services.users]",
            &format!("[edge.rate_limit]\nkey = \"{key}\"\n\n[services.users]"),
        )
    };
    let path = write_config("rl-key.toml", &with_key("header:x-tenant+client_ip"));
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = write_config("rl-key-bad.toml", &with_key("header:x tenant+client_ip"));
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:8: edge.rate_limit.key: \"header:x tenant+client_ip\" is not client_ip, jwt_sub, header:NAME or header:NAME+client_ip",
        path.display()
    );
    assert!(err.contains(&want), "missing `{want}` in:\n{err}");
}

/// `bff run` with a cached, coalesced service: the second request is answered from the cache, a reload
/// that leaves the service unchanged keeps its entries, and `POST /admin/cache/purge` empties them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_caches_keeps_the_cache_across_a_reload_and_purges_it() {
    let users = Stub::start().await;
    users.on("/users/1").json(json!({"name": "Ada"}));
    let endpoints = format!("endpoints = [\"{}\"]\n", users.endpoint());
    let cached = format!("{endpoints}coalesce = true\n\n[services.users.cache]\nttl = \"1h\"\n");
    let text =
        |second| reload_config(&users.endpoint(), "", second).replacen(&endpoints, &cached, 1);
    let path = write_config("cache.toml", &text(false));
    let bff = Running::start(&path);
    for _ in 0..2 {
        assert_eq!(bff.status("/api/u/1").await, 200);
    }
    assert_eq!(
        users.hits("/users/1"),
        1,
        "the second answered from the cache"
    );

    std::fs::write(&path, text(true)).unwrap();
    let (status, body) = bff.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bff.status("/api/v2/1").await, 200, "the reload applied");
    assert_eq!(
        users.hits("/users/1"),
        1,
        "the unchanged service kept its cache"
    );

    let res = client()
        .post(format!("{}/admin/cache/purge?service=users", bff.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"purged": 1}));
    assert_eq!(bff.status("/api/u/1").await, 200);
    assert_eq!(users.hits("/users/1"), 2);
    let metrics = client()
        .get(format!("{}/metrics", bff.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "bff_cache_requests_total{service=\"users\",result=\"hit\"} 2",
        "bff_cache_requests_total{service=\"users\",result=\"miss\"} 2",
    ] {
        assert!(metrics.contains(want), "missing {want} in {metrics}");
    }
}
