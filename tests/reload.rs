//! Hot reload and drain under a steady load: no request lost, a broken config refused while the old one
//! serves, `/readyz` 503 during the drain.

use bff::App;
use bff_testkit::{Stub, TestBff};
use serde_json::{Value, json};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

fn config(users: &str, select: &str, extra: &str) -> String {
    format!(
        r#"
[bff]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra}

[telemetry]
access_log = false

[services.users]
endpoints = ["{users}"]

[[routes]]
path = "/api/u/{{id}}"
[[routes.backends]]
name = "user"
service = "users"
path = "/users/{{id}}"
select = "{select}"
"#
    )
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bff-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Four clients hammering a route until told to stop; counts what did not come back 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(bff: &TestBff, path: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..4)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (client, url) = (bff.client().clone(), bff.url(path));
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_a_broken_config_is_refused() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .json(json!({"name": "Ada", "email": "ada@example.com"}));
    let path = file("reload.toml", &config(&users.endpoint(), "$.name", ""));
    let bff = TestBff::start_app(App::from_config(&path).unwrap()).await;
    let load = Load::start(&bff, "/api/u/1");
    let admin = |p: &str| bff.admin_url(p);
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let select = if i % 2 == 0 { "$.email" } else { "$.name" };
        std::fs::write(&path, config(&users.endpoint(), select, "")).unwrap();
        let res = bff
            .client()
            .post(admin("/admin/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["version"], i + 2);
    }
    let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(
        body["user"], "ada@example.com",
        "the last config is the one serving"
    );

    std::fs::write(
        &path,
        "[bff]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n[services.users]\nendpoints = []\n",
    )
    .unwrap();
    let res = bff
        .client()
        .post(admin("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let v: Value = res.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("bogus") && msg.contains("reload.toml:3"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(
        failed, 0,
        "no request lost across 5 reloads and a refused one ({ok} served)"
    );
    assert!(ok > 20, "the load ran: {ok}");
    let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(
        body["user"], "ada@example.com",
        "the refused config changed nothing"
    );
    let cfg: Value = bff
        .client()
        .get(admin("/admin/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["version"], 6);
    let metrics = bff
        .client()
        .get(admin("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bff_config_reloads_total 5"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_is_reloaded_when_it_changes() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .json(json!({"name": "Ada", "email": "ada@example.com"}));
    let path = file(
        "watched.toml",
        &config(&users.endpoint(), "$.name", "watch_config = true"),
    );
    let bff = TestBff::start_app(App::from_config(&path).unwrap()).await;
    let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(body["user"], "Ada");
    std::fs::write(
        &path,
        config(&users.endpoint(), "$.email", "watch_config = true"),
    )
    .unwrap();
    let changed = bff_testkit::eventually(|| async {
        let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
        body["user"] == "ada@example.com"
    })
    .await;
    assert!(
        changed,
        "the file change was applied without a request to reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_turns_readyz_503_first_and_finishes_what_was_accepted() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .delay(Duration::from_millis(20))
        .json(json!({"name": "Ada"}));
    let path = file(
        "drain.toml",
        &config(
            &users.endpoint(),
            "$.name",
            "drain_delay = \"2s\"\nshutdown_grace = \"5s\"",
        ),
    );
    let app = App::from_config(&path).unwrap();
    let server = app.bind().await.unwrap();
    let (addr, admin) = (server.local_addr(), server.admin_addr());
    let handle = server.shutdown_handle();
    let run = tokio::spawn(server.run());
    let client = bff_testkit::http_client();
    let url = format!("http://{addr}/api/u/1");
    let ready = format!("http://{admin}/readyz");
    assert_eq!(client.get(&ready).send().await.unwrap().status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop, lost, served) = (
                client.clone(),
                url.clone(),
                stop.clone(),
                lost.clone(),
                served.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        // A response other than 200 is a request that was accepted and lost.
                        Ok(_) => {
                            lost.fetch_add(1, Ordering::SeqCst);
                        }
                        // A request that never got an answer was accepted and lost.
                        Err(e) if e.is_timeout() => {
                            lost.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        // Refused after the listener closed: never accepted; stop this client.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.shutdown();
    assert_eq!(
        client.get(&ready).send().await.unwrap().status(),
        503,
        "readyz turns 503 at once"
    );
    let before = served.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        served.load(Ordering::SeqCst) > before,
        "still serving during drain_delay"
    );
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "no accepted request was lost"
    );
}

/// How one request of the drain test ended.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    /// A full 200 response.
    answered: AtomicUsize,
    /// A response, but not a 200: a request accepted and failed.
    failed: AtomicUsize,
    /// No connection: the listener was closed. Ends that client.
    refused: AtomicUsize,
    /// The connection closed without a response (allowed only if the BFF never took the request: the
    /// downstream's count says).
    closed: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_answers_every_request_it_accepted_until_the_listener_closes() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .delay(Duration::from_millis(20))
        .json(json!({"name": "Ada"}));
    let path = file(
        "drain-load.toml",
        &config(
            &users.endpoint(),
            "$.name",
            "drain_delay = \"500ms\"\nshutdown_grace = \"5s\"",
        ),
    );
    let server = App::from_config(&path).unwrap().bind().await.unwrap();
    let (addr, admin) = (server.local_addr(), server.admin_addr());
    let handle = server.shutdown_handle();
    let run = tokio::spawn(server.run());
    let url = format!("http://{addr}/api/u/1");
    let ready = format!("http://{admin}/readyz");
    let probe = bff_testkit::http_client();
    assert_eq!(probe.get(&ready).send().await.unwrap().status(), 200);

    let tally = Arc::new(Tally::default());
    let draining = Arc::new(AtomicBool::new(false));
    let served_while_draining = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Three clients on keep-alive connections, three opening a fresh connection for every request.
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let builder = reqwest::Client::builder()
                .no_proxy()
                .timeout(bff_testkit::REQUEST_DEADLINE);
            let client = if i < 3 {
                builder.build().unwrap()
            } else {
                builder.pool_max_idle_per_host(0).build().unwrap()
            };
            let (url, tally) = (url.clone(), tally.clone());
            let (draining, served_while_draining) =
                (draining.clone(), served_while_draining.clone());
            tokio::spawn(async move {
                // Until the closed listener refuses this client; the deadline only bounds a hang.
                while tokio::time::Instant::now() < deadline {
                    tally.sent.fetch_add(1, Ordering::SeqCst);
                    let during = draining.load(Ordering::SeqCst);
                    match client.get(&url).send().await {
                        Ok(res) => {
                            let ok = res.status() == 200;
                            match res.json::<Value>().await {
                                Ok(body) if ok && body == json!({"user": "Ada"}) => {
                                    tally.answered.fetch_add(1, Ordering::SeqCst);
                                    if during {
                                        served_while_draining.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                _ => {
                                    tally.failed.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(e) if e.is_connect() => {
                            tally.refused.fetch_add(1, Ordering::SeqCst);
                            return true;
                        }
                        // A request that never got an answer: accepted and lost.
                        Err(e) if e.is_timeout() => {
                            tally.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            tally.closed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                false
            })
        })
        .collect();
    // Load is flowing before the drain starts.
    while tally.answered.load(Ordering::SeqCst) < 30 {
        assert!(tokio::time::Instant::now() < deadline, "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    draining.store(true, Ordering::SeqCst);
    handle.shutdown();
    assert_eq!(probe.get(&ready).send().await.unwrap().status(), 503);
    for c in clients {
        assert!(
            c.await.unwrap(),
            "every client ran until the listener refused it"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the drain ends")
        .unwrap();

    let get = |c: &AtomicUsize| c.load(Ordering::SeqCst);
    let (sent, answered, failed, refused, closed) = (
        get(&tally.sent),
        get(&tally.answered),
        get(&tally.failed),
        get(&tally.refused),
        get(&tally.closed),
    );
    let counts = format!(
        "sent {sent}, answered {answered}, failed {failed}, refused {refused}, closed {closed}"
    );
    eprintln!("drain under load: {counts}");
    assert_eq!(sent, answered + failed + refused + closed, "{counts}");
    assert_eq!(failed, 0, "an accepted request got no full 200: {counts}");
    assert_eq!(
        users.hits("/users/1"),
        answered,
        "every request the BFF accepted was answered ({counts})"
    );
    assert_eq!(refused, 6, "{counts}");
    assert!(
        get(&served_while_draining) > 0,
        "requests were served during drain_delay: {counts}"
    );
}

/// `POST /admin/reload`, answered.
async fn post_reload(bff: &TestBff) -> (u16, Value) {
    let res = bff
        .client()
        .post(bff.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Replaces the config file with a named pipe: a read of it waits until [`PipeWriter`] writes.
fn make_fifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Waits, within the request deadline, for `opened`: it ends once a writer's open of `fifo` has met a
/// reader (an open for writing waits for one). When no reader comes, the test opens `fifo` for reading
/// itself, so that the writer's thread ends, and fails.
async fn reader_came<T>(opened: impl std::future::Future<Output = T>, fifo: &std::path::Path) -> T {
    match tokio::time::timeout(bff_testkit::REQUEST_DEADLINE, opened).await {
        Ok(done) => done,
        Err(_) => {
            let _unblock = std::fs::File::open(fifo);
            panic!("nothing opened {} for reading", fifo.display());
        }
    }
}

/// The reload loop reads the file with async I/O: while a read waits (the file is a pipe nobody has
/// written yet), the runtime (here one thread) keeps serving. A blocking read would hold the only
/// thread: the admin listener could not answer, and the writer below would give up waiting for the
/// go-ahead and report it.
#[tokio::test(flavor = "current_thread")]
async fn a_reload_reads_the_file_without_blocking_the_runtime() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .json(json!({"name": "Ada", "email": "ada@example.com"}));
    let path = file("async-read.toml", &config(&users.endpoint(), "$.name", ""));
    let bff = TestBff::start_app(App::from_config(&path).unwrap()).await;
    make_fifo(&path);
    let next = config(&users.endpoint(), "$.email", "");
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let fifo = path.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // Opening for writing waits for the reader: the reload loop's read has begun.
        let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = opened_tx.send(());
        // A runtime blocked by the read never sends the go-ahead; the pipe is written anyway after a
        // long wait (so that the test ends), and the wait is reported.
        let blocked = go_rx.recv_timeout(Duration::from_secs(60)).is_err();
        pipe.write_all(next.as_bytes()).unwrap();
        blocked
    });
    let reload = tokio::spawn({
        let client = bff.client().clone();
        let url = bff.admin_url("/admin/reload");
        async move { client.post(url).send().await.unwrap().status().as_u16() }
    });
    reader_came(opened_rx, &path).await.unwrap();
    let health = bff.admin_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let _ = go_tx.send(());
    let blocked = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    assert!(
        !blocked,
        "the runtime was blocked while the reload read the file"
    );
    assert_eq!(reload.await.unwrap(), 200);
    let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(body["user"], "ada@example.com", "the text read was applied");
}

/// A write that lands while a reload is under way is applied by the next check of a watched file: the
/// loop remembers the text it loaded, not the file as it is after applying it (a second read then
/// would take the new write for the applied one, and never apply it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_landing_during_a_reload_is_applied_by_the_next_one() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .json(json!({"id": 1, "name": "Ada", "email": "ada@example.com"}));
    let watch = "watch_config = true";
    let path = file("landing.toml", &config(&users.endpoint(), "$.name", watch));
    let bff = TestBff::start_app(App::from_config(&path).unwrap()).await;
    // The next check reads a pipe: it gets the first text, and while it reads, the second text
    // replaces the file.
    let first = config(&users.endpoint(), "$.email", watch);
    let second = config(&users.endpoint(), "$.id", watch);
    let staged = path.with_extension("next");
    std::fs::write(&staged, &second).unwrap();
    make_fifo(&path);
    let fifo = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        // The watcher has the pipe open: the second text lands under the path now.
        std::fs::rename(&staged, &fifo).unwrap();
        pipe.write_all(first.as_bytes()).unwrap();
    });
    reader_came(writer, &path).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + bff_testkit::REQUEST_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
        if seen.last() != Some(&body["user"]) {
            seen.push(body["user"].clone());
        }
        if body["user"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.last(),
        Some(&json!(1)),
        "the second write was never applied: {seen:?}"
    );
    let cfg = bff.admin_json("/admin/config").await;
    assert_eq!(
        cfg["version"], 3,
        "both texts were applied, one after the other"
    );
}

/// A config that passes validation but cannot be built (its API keys file is missing) is refused:
/// the reply says so (422 with the reason), the version does not move, the running config keeps
/// serving. "applied" is said only once the new routers are swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_be_built_is_not_reported_applied() {
    let users = Stub::start().await;
    users
        .on("/users/1")
        .json(json!({"name": "Ada", "email": "ada@example.com"}));
    let path = file("unbuildable.toml", &config(&users.endpoint(), "$.name", ""));
    let bff = TestBff::start_app(App::from_config(&path).unwrap()).await;
    let unbuildable = config(&users.endpoint(), "$.email", "")
        + "\n[edge.auth.api_keys]\nkeys_file = \"no-such-keys.txt\"\n";
    std::fs::write(&path, unbuildable).unwrap();
    let (status, body) = post_reload(&bff).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-keys.txt"),
        "{body}"
    );
    assert_eq!(bff.admin_json("/admin/config").await["version"], 1);
    let served: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(served["user"], "Ada", "the running config keeps serving");
    std::fs::write(&path, config(&users.endpoint(), "$.email", "")).unwrap();
    let (status, body) = post_reload(&bff).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("applied")),
        "{body}"
    );
    assert_eq!(body["version"], 2);
    let served: Value = bff.get("/api/u/1").await.json().await.unwrap();
    assert_eq!(served["user"], "ada@example.com");
}
