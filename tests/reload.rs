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
    let mut changed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body: Value = bff.get("/api/u/1").await.json().await.unwrap();
        if body["user"] == "ada@example.com" {
            changed = true;
            break;
        }
    }
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
            "drain_delay = \"600ms\"\nshutdown_grace = \"5s\"",
        ),
    );
    let app = App::from_config(&path).unwrap();
    let server = app.bind().await.unwrap();
    let (addr, admin) = (server.local_addr(), server.admin_addr());
    let handle = server.shutdown_handle();
    let run = tokio::spawn(server.run());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
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
    let probe = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(probe.get(&ready).send().await.unwrap().status(), 200);

    let tally = Arc::new(Tally::default());
    let draining = Arc::new(AtomicBool::new(false));
    let served_while_draining = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Three clients on keep-alive connections, three opening a fresh connection for every request.
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let builder = reqwest::Client::builder().no_proxy();
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
