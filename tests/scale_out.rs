//! Scale-out against the real engines, each started on loopback ports the test picks and killed at the end:
//! etcd and DNS (dnsmasq) discovery under a steady load (removing an endpoint fails no request; the source
//! going away keeps the last good endpoints; etcd coming back is picked up again), and a rate limit shared
//! through Redis by two BFF instances (with the local fallback when Redis dies, and the return to Redis).
//!
//! The engines are Debian packages that `scripts/test` installs (etcd-server, dnsmasq-base, redis-server):
//! a missing one fails its test with the package's name; nothing is skipped.

use bff_e2e::discovery_failures;
use bff_testkit::{Stub, TestBff};
use serde_json::json;
use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

// ---- engines ----

/// A program found on the PATH (or in the sbin folders, where Debian puts dnsmasq), or a failed test that
/// says which package to install.
fn binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: install Debian's {package} package (scripts/test installs it)"
            )
        })
}

/// A running engine; dropping it kills it (SIGKILL) and removes its folder.
struct Engine {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
}

impl Engine {
    /// Starts `program args` with its output in `dir/NAME.log`.
    fn start(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Self {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("engine log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("engine log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name,
            child: Some(child),
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Waits until the engine accepts TCP connections on `port`; fails with its log when it exits first.
    async fn wait_tcp(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} within 15 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it now (the folder stays until the drop: a restart can reuse it).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary folder, removed when dropped (after the engines using it: declare it first).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bff-scale-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for TCP (and UDP, for DNS) now.
fn free_port(udp_too: bool) -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = tcp.local_addr().expect("port").port();
        if !udp_too || UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

// ---- load ----

/// Four clients sending requests back to back, counting what fails.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(bff: &TestBff, path: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..4)
            .map(|_| {
                let (c, url, stop, ok, failures) = (
                    bff.client().clone(),
                    bff.url(path),
                    stop.clone(),
                    ok.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                failures.lock().unwrap().push(format!("{status} {body}"));
                            }
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Stops the clients; panics when a request failed.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap();
        let ok = self.ok.load(Ordering::SeqCst);
        assert!(
            failures.is_empty(),
            "{} failed requests ({ok} served), the first: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        ok
    }
}

async fn wait_ready(bff: &TestBff) {
    for _ in 0..100 {
        let r = bff.client().get(bff.admin_url("/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the BFF never became ready: discovery gave no endpoint");
}

/// Waits until `stub` is out of `service`'s endpoints and gets no request on `/x` for 300 ms; how long
/// it took.
async fn until_idle(bff: &TestBff, service: &str, stub: &Stub, within: Duration) -> Duration {
    let start = Instant::now();
    // First out of the service's endpoints (a quiet moment of a stalled load is not a removal), then no
    // request for it in a window of 300 ms (those already sent to it have landed).
    while endpoints_of(bff, service).await.contains(&stub.endpoint()) {
        assert!(
            start.elapsed() < within,
            "{} is still an endpoint of {service} {within:?} after its removal",
            stub.endpoint()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while start.elapsed() < within {
        let before = stub.hits("/x");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stub.hits("/x") == before {
            return start.elapsed();
        }
    }
    panic!(
        "{} still gets traffic {within:?} after its removal",
        stub.endpoint()
    );
}

/// How long a change of discovery may take to show in the traffic: far above what it takes (about a
/// second, printed by the tests), for a loaded machine.
const WITHIN: Duration = Duration::from_secs(30);

/// Waits until `stub` gets requests on `/x` again.
async fn until_busy(stub: &Stub, within: Duration) -> Duration {
    let start = Instant::now();
    let before = stub.hits("/x");
    while start.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stub.hits("/x") > before {
            return start.elapsed();
        }
    }
    panic!("{} gets no traffic after {within:?}", stub.endpoint());
}

async fn endpoints_of(bff: &TestBff, service: &str) -> Vec<String> {
    let services: serde_json::Value = bff.admin_json("/admin/services").await;
    let s = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("no service {service} in {services}"));
    let mut eps: Vec<String> = s["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    eps.sort();
    eps
}

fn sorted<const N: usize>(v: [String; N]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

async fn stub_answering_its_address(addr: SocketAddr) -> Stub {
    let s = Stub::start_on(addr).await;
    s.on("/x").json(json!(s.endpoint()));
    s
}

fn route(services: &[&str]) -> String {
    let mut r = "[[routes]]\npath = \"/r\"\n".to_string();
    for s in services {
        r.push_str(&format!(
            "[[routes.backends]]\nname = \"{s}\"\nservice = \"{s}\"\npath = \"/x\"\n"
        ));
    }
    r
}

// ---- etcd ----

fn start_etcd(dir: &Path, client: u16, peer: u16) -> Engine {
    let etcd = binary("etcd", "etcd-server");
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let args = [
        "--name=bff-test".to_string(),
        format!("--data-dir={}", dir.join("etcd-data").display()),
        format!("--listen-client-urls={c}"),
        format!("--advertise-client-urls={c}"),
        format!("--listen-peer-urls={p}"),
        format!("--initial-advertise-peer-urls={p}"),
        format!("--initial-cluster=bff-test={p}"),
        "--log-level=warn".to_string(),
    ];
    Engine::start("etcd", &etcd, &args, dir)
}

/// Writes keys through etcd's JSON gateway, the API the BFF's etcd discovery reads.
struct Etcd {
    http: reqwest::Client,
    base: String,
}

impl Etcd {
    fn new(addr: &str) -> Self {
        Self {
            // Each call within 5 s: the retries below go on until their deadline.
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base: format!("http://{addr}/v3/kv"),
        }
    }

    async fn call(&self, op: &str, body: serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // etcd answers on its port a moment before it has a leader: retry that, with a deadline.
            match self
                .http
                .post(format!("{}/{op}", self.base))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                other if Instant::now() > deadline => panic!("etcd {op}: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn put(&self, key: &str, value: &str) {
        self.call("put", json!({"key": b64(key), "value": b64(value)}))
            .await;
    }

    async fn delete(&self, key: &str) {
        self.call("deleterange", json!({"key": b64(key)})).await;
    }
}

fn b64(s: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_discovery_removes_an_endpoint_without_a_failed_request_and_survives_etcd() {
    let dir = TempDir::new("etcd");
    let (client_port, peer_port) = (free_port(false), free_port(false));
    let mut etcd = start_etcd(&dir.0, client_port, peer_port);
    etcd.wait_tcp(client_port).await;

    let a = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let b = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let etcd_url = format!("127.0.0.1:{client_port}");
    let kv = Etcd::new(&etcd_url);
    kv.put("/bff-test/users/a", &a.endpoint()).await;
    kv.put(
        "/bff-test/users/b",
        &json!({"address": b.endpoint(), "zone": "b"}).to_string(),
    )
    .await;
    // A key outside the prefix is not an endpoint.
    kv.put("/bff-test/other/c", "127.0.0.1:1").await;

    let bff = TestBff::start(&format!(
        "[services.users]\ndiscovery = \"etcd://{etcd_url}/bff-test/users/\"\nload_balancer = \"round_robin\"\n{}",
        route(&["users"])
    ))
    .await;
    wait_ready(&bff).await;
    assert_eq!(
        endpoints_of(&bff, "users").await,
        sorted([a.endpoint(), b.endpoint()])
    );

    let load = Load::start(&bff, "/r");
    until_busy(&b, WITHIN).await;
    kv.delete("/bff-test/users/b").await;
    let took = until_idle(&bff, "users", &b, WITHIN).await;
    eprintln!("etcd: the deleted endpoint got no traffic after {took:?}");
    assert_eq!(endpoints_of(&bff, "users").await, [a.endpoint()]);

    // etcd goes away: the failure is seen (counted), and the last good set keeps serving.
    let failures = discovery_failures(&bff, "users").await;
    etcd.kill();
    let seen =
        bff_testkit::eventually(|| async { discovery_failures(&bff, "users").await > failures })
            .await;
    assert!(
        seen,
        "the lost etcd is counted in bff_discovery_failures_total"
    );
    assert_eq!(endpoints_of(&bff, "users").await, [a.endpoint()]);

    // etcd comes back (same data): the BFF reconnects, reads again and follows new changes.
    let mut etcd = start_etcd(&dir.0, client_port, peer_port);
    etcd.wait_tcp(client_port).await;
    kv.put("/bff-test/users/b", &b.endpoint()).await;
    let took = until_busy(&b, WITHIN).await;
    eprintln!("etcd: after a restart, the re-added endpoint got traffic after {took:?}");
    let served = load.finish().await;
    eprintln!("etcd: {served} requests served, none failed");
    assert_eq!(
        endpoints_of(&bff, "users").await,
        sorted([a.endpoint(), b.endpoint()])
    );
}

// ---- DNS ----

/// dnsmasq answering from `hosts` (re-read on SIGHUP) with a TTL of 1 s, authoritative for `.test`.
fn start_dnsmasq(dir: &Path, port: u16, hosts: &Path, srv: &[String]) -> Engine {
    let dnsmasq = binary("dnsmasq", "dnsmasq-base");
    let mut args = vec![
        "--no-daemon".to_string(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".to_string(),
        "--bind-interfaces".to_string(),
        "--no-resolv".to_string(),
        "--no-hosts".to_string(),
        format!("--addn-hosts={}", hosts.display()),
        "--local-ttl=1".to_string(),
        "--local=/test/".to_string(),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        "--log-facility=-".to_string(),
    ];
    args.extend(srv.iter().map(|s| format!("--srv-host={s}")));
    Engine::start("dnsmasq", &dnsmasq, &args, dir)
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_removes_an_endpoint_without_a_failed_request_and_survives_the_resolver() {
    let dir = TempDir::new("dns");
    // users: two addresses of one name, on one port (127.0.0.1 and 127.0.0.2).
    let a = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let port = a.addr().port();
    let b = stub_answering_its_address(SocketAddr::from(([127, 0, 0, 2], port))).await;
    // orders: SRV records to two targets on their own ports.
    let c = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let d = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;

    let hosts = dir.0.join("hosts");
    let all = "127.0.0.1 users.test\n127.0.0.2 users.test\n127.0.0.1 c.orders.test\n127.0.0.1 d.orders.test\n";
    write_atomically(&hosts, all);
    let dns_port = free_port(true);
    let srv = [
        format!(
            "_http._tcp.orders.test,c.orders.test,{},0,10",
            c.addr().port()
        ),
        format!(
            "_http._tcp.orders.test,d.orders.test,{},0,10",
            d.addr().port()
        ),
    ];
    let mut dnsmasq = start_dnsmasq(&dir.0, dns_port, &hosts, &srv);
    dnsmasq.wait_tcp(dns_port).await;

    let ns = format!("nameserver=127.0.0.1:{dns_port}");
    let bff = TestBff::start(&format!(
        r#"
[services.users]
discovery = "dns://users.test:{port}?{ns}"
load_balancer = "round_robin"
[services.orders]
discovery = "dns+srv://_http._tcp.orders.test?{ns}"
load_balancer = "round_robin"
{}"#,
        route(&["users", "orders"])
    ))
    .await;
    wait_ready(&bff).await;
    assert_eq!(
        endpoints_of(&bff, "users").await,
        sorted([a.endpoint(), b.endpoint()])
    );
    assert_eq!(
        endpoints_of(&bff, "orders").await,
        sorted([c.endpoint(), d.endpoint()])
    );

    let load = Load::start(&bff, "/r");
    until_busy(&b, WITHIN).await;
    until_busy(&d, WITHIN).await;
    // 127.0.0.2 leaves users.test; d.orders.test stops resolving (its SRV record stays).
    write_atomically(&hosts, "127.0.0.1 users.test\n127.0.0.1 c.orders.test\n");
    let hup = Command::new("kill")
        .args(["-HUP", &dnsmasq.pid().to_string()])
        .status()
        .expect("kill -HUP (procps)");
    assert!(hup.success());
    let took = until_idle(&bff, "users", &b, WITHIN).await;
    eprintln!("dns: the removed A record's endpoint got no traffic after {took:?}");
    until_idle(&bff, "orders", &d, WITHIN).await;
    assert_eq!(endpoints_of(&bff, "users").await, [a.endpoint()]);
    assert_eq!(endpoints_of(&bff, "orders").await, [c.endpoint()]);

    // 127.0.0.2 comes back: it gets traffic within one TTL (1 s here) and a refresh.
    write_atomically(
        &hosts,
        "127.0.0.1 users.test\n127.0.0.2 users.test\n127.0.0.1 c.orders.test\n",
    );
    let hup = Command::new("kill")
        .args(["-HUP", &dnsmasq.pid().to_string()])
        .status()
        .expect("kill -HUP (procps)");
    assert!(hup.success());
    let took = until_busy(&b, WITHIN).await;
    eprintln!("dns: the added A record's endpoint got traffic after {took:?}");
    assert_eq!(
        endpoints_of(&bff, "users").await,
        sorted([a.endpoint(), b.endpoint()])
    );

    // The nameserver goes away: resolutions fail (counted), the last good sets keep serving.
    let failures = [
        discovery_failures(&bff, "users").await,
        discovery_failures(&bff, "orders").await,
    ];
    dnsmasq.kill();
    let seen = bff_testkit::eventually(|| async {
        discovery_failures(&bff, "users").await > failures[0]
            && discovery_failures(&bff, "orders").await > failures[1]
    })
    .await;
    assert!(
        seen,
        "failed resolutions are counted in bff_discovery_failures_total"
    );
    let served = load.finish().await;
    eprintln!("dns: {served} requests served, none failed");
    assert_eq!(
        endpoints_of(&bff, "users").await,
        sorted([a.endpoint(), b.endpoint()])
    );
    assert_eq!(endpoints_of(&bff, "orders").await, [c.endpoint()]);
}

// ---- Redis ----

fn start_redis(dir: &Path, port: u16) -> Engine {
    let redis = binary("redis-server", "redis-server");
    let args = [
        "--port".to_string(),
        port.to_string(),
        "--bind".to_string(),
        "127.0.0.1".to_string(),
        "--save".to_string(),
        String::new(),
        "--appendonly".to_string(),
        "no".to_string(),
        "--dir".to_string(),
        dir.display().to_string(),
    ];
    Engine::start("redis", &redis, &args, dir)
}

/// One Redis command over a fresh connection (RESP, as `redis-cli` sends it); the reply as text.
async fn redis_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command += &format!("${}\r\n{a}\r\n", a.len());
    }
    conn.write_all(command.as_bytes()).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |r: &[u8]| -> bool {
        let text = String::from_utf8_lossy(r);
        let Some((head, rest)) = text.split_once("\r\n") else {
            return false;
        };
        match head.strip_prefix('$').map(str::parse::<usize>) {
            Some(Ok(len)) => rest.len() >= len + 2,
            _ => true,
        }
    };
    while !complete(&reply) {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no reply within 5 s"))??;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Waits until Redis answers PING on `port` (a listener that is not this Redis does not count).
async fn wait_redis(redis: &mut Engine, port: u16) {
    redis.wait_tcp(port).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match redis_command(port, &["PING"]).await {
            Ok(reply) if reply.starts_with("+PONG") => return,
            other => assert!(
                Instant::now() < deadline,
                "redis on {port} does not answer PING: {other:?}\n{}",
                redis.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis's `connected_clients` (this query's own connection included).
async fn redis_clients(port: u16) -> usize {
    let info = redis_command(port, &["INFO", "clients"])
        .await
        .expect("INFO clients");
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connected_clients in {info}"))
}

async fn fallbacks(bff: &TestBff) -> u64 {
    let text = bff.admin_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix("bff_rate_limit_store_fallbacks_total "))
        .unwrap_or_else(|| panic!("no bff_rate_limit_store_fallbacks_total in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until a check of `bff` is decided by Redis, not by its local bucket: one request on the bucket
/// `key` (header `x-client`), then one a second (the store asks Redis again once a second after a failure),
/// for up to 10 s.
async fn decided_by_redis(bff: &TestBff, key: &str, redis: &Engine) {
    let started = Instant::now();
    for attempt in 0.. {
        let before = fallbacks(bff).await;
        let status = bff
            .client()
            .get(bff.url("/r"))
            .header("x-client", format!("{key}-{attempt}"))
            .send()
            .await
            .expect("request to the BFF")
            .status();
        assert_eq!(status, 200, "a fresh bucket admits");
        if fallbacks(bff).await == before {
            return;
        }
        eprintln!("redis: {key}: check {attempt} was decided locally; asking again");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the BFF never decided a check through Redis:\n{}",
            redis.log()
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

/// Sends `n` requests, alternating between the instances; the statuses.
async fn burst(bffs: &[&TestBff], n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let bff = bffs[i % bffs.len()];
        let r = bff.get("/r").await;
        if r.status() == 429 {
            assert!(
                r.headers().contains_key("retry-after"),
                "429 with retry-after"
            );
        }
        statuses.push(r.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_store_shares_the_limit_between_instances_and_falls_back_when_redis_dies() {
    let dir = TempDir::new("redis");
    let port = free_port(false);
    let mut redis = start_redis(&dir.0, port);
    wait_redis(&mut redis, port).await;

    let users = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let cfg = format!(
        r#"
[edge.rate_limit]
per_second = 1
burst = 5
key = "header:x-client"
store = "redis://127.0.0.1:{port}"
[services.users]
endpoints = ["{}"]
{}"#,
        users.endpoint(),
        route(&["users"])
    );
    let one = TestBff::start(&cfg).await;
    let two = TestBff::start(&cfg).await;
    // Each instance connects (and loads its script) at start, not at its first request.
    let started = Instant::now();
    while redis_clients(port).await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the BFFs did not connect to Redis at start: {} clients\n{}",
            redis_clients(port).await,
            redis.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each instance decides a check through Redis (on a key of its own: the burst's bucket stays full).
    for (n, bff) in [&one, &two].into_iter().enumerate() {
        decided_by_redis(bff, &format!("warm-{n}"), &redis).await;
    }

    // Together they admit one burst (a token may come back while the requests are sent), not two. Without
    // `x-client` the bucket is the client IP's, the same for both.
    let (f1, f2) = (fallbacks(&one).await, fallbacks(&two).await);
    let started = Instant::now();
    let statuses = burst(&[&one, &two], 10).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    eprintln!(
        "redis: two instances admitted {admitted} of 10 in {:?}: {statuses:?}",
        started.elapsed()
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let local = fallbacks(&one).await + fallbacks(&two).await - f1 - f2;
    assert!(
        (5..=6).contains(&admitted) && local == 0,
        "{statuses:?}, checks decided locally: {local}, redis log:\n{}",
        redis.log()
    );

    // Redis dies: every request is still answered, by each instance's local bucket (5 each).
    redis.kill();
    let started = Instant::now();
    let statuses = burst(&[&one, &two], 14).await;
    let took = started.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    eprintln!("redis: down, the local buckets admitted {admitted} of 14 in {took:?}: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "no 5xx without Redis: {statuses:?}"
    );
    assert!((10..=12).contains(&admitted), "{statuses:?}");
    assert!(
        took < Duration::from_secs(2),
        "no waiting on a dead Redis: {took:?}"
    );
    let (f1, f2) = (fallbacks(&one).await, fallbacks(&two).await);
    eprintln!("redis: fallbacks counted {f1} + {f2}");
    assert!(f1 > 0 && f2 > 0, "{f1} {f2}");

    // Redis comes back: within a few probes (one a second) the checks go to Redis again.
    let mut redis = start_redis(&dir.0, port);
    wait_redis(&mut redis, port).await;
    let started = Instant::now();
    let mut steady = 0;
    let mut last = fallbacks(&one).await;
    while steady < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the BFF never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = one.get("/r").await;
        let now = fallbacks(&one).await;
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    eprintln!("redis: back to Redis within {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_admit_the_rate_together() {
    let dir = TempDir::new("redis-rate");
    let port = free_port(false);
    let mut redis = start_redis(&dir.0, port);
    wait_redis(&mut redis, port).await;
    let users = stub_answering_its_address("127.0.0.1:0".parse().unwrap()).await;
    let rate = 20u32;
    let cfg = format!(
        r#"
[edge.rate_limit]
per_second = {rate}
burst = 1
store = "redis://127.0.0.1:{port}"
[services.users]
endpoints = ["{}"]
{}"#,
        users.endpoint(),
        route(&["users"])
    );
    let one = TestBff::start(&cfg).await;
    let two = TestBff::start(&cfg).await;
    // Four clients, two on each instance, far above the rate, for three seconds.
    let started = Instant::now();
    let window = Duration::from_secs(3);
    let clients: Vec<_> = [&one, &two, &one, &two]
        .iter()
        .map(|bff| {
            let (c, url) = (bff.client().clone(), bff.url("/r"));
            tokio::spawn(async move {
                let (mut ok, mut limited) = (0u32, 0u32);
                while started.elapsed() < window {
                    match c.get(&url).send().await.map(|r| r.status().as_u16()) {
                        Ok(200) => ok += 1,
                        Ok(429) => limited += 1,
                        other => panic!("only 200 and 429 are expected: {other:?}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0u32, 0u32);
    for c in clients {
        let (o, l) = c.await.unwrap();
        ok += o;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = f64::from(rate) * elapsed + 1.0;
    eprintln!(
        "redis: two instances admitted {ok} in {elapsed:.2} s at {rate}/s (expected {expected:.0}), {limited} limited"
    );
    assert!(limited > ok, "the clients pushed well above the rate");
    // Never above the one shared rate (two instances each at the rate would admit twice it). Below it
    // only by what stalls of a loaded machine cost: a token refilled while no request is waiting is lost
    // with `burst = 1`, so the lower bound is loose.
    assert!(
        f64::from(ok) <= expected * 1.10,
        "admitted {ok}, above the shared rate ({expected:.0})"
    );
    assert!(
        f64::from(ok) >= expected * 0.6,
        "admitted {ok}, far below the rate ({expected:.0})"
    );
    assert_eq!(fallbacks(&one).await + fallbacks(&two).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_routes_limit_with_a_redis_store_keeps_its_buckets_in_redis() {
    use bff::prelude::get;
    let dir = TempDir::new("redis-rust-route");
    let port = free_port(false);
    let mut redis = start_redis(&dir.0, port);
    wait_redis(&mut redis, port).await;
    let mut config = bff::config::Loader::new()
        .with_env(std::collections::HashMap::new())
        .load_str("[bff]\nname = \"rust-limits\"\n", bff::config::Format::Toml)
        .unwrap()
        .into_config();
    config.bff.listen = ([127, 0, 0, 1], 0).into();
    config.bff.admin_listen = ([127, 0, 0, 1], 0).into();
    let limit = bff::config::RateLimitConfig::new(1, 5)
        .key(bff::config::RateLimitKey::header(
            http::HeaderName::from_static("x-client"),
        ))
        .store(format!("redis://127.0.0.1:{port}").parse().unwrap());
    let app = bff::App::new(config).unwrap().route_with(
        "/limited",
        bff::Policy::new().rate_limit_with(limit),
        get(|| async { "ok" }),
    );
    let bff = TestBff::start_app(app).await;
    // A check decided through Redis leaves its bucket there; one decided locally (Redis not reached yet)
    // counts a fallback, and the store asks Redis again a second later.
    let started = Instant::now();
    for attempt in 0.. {
        let client = format!("rust-route-{attempt}");
        let before = fallbacks(&bff).await;
        let status = bff
            .client()
            .get(bff.url("/limited"))
            .header("x-client", &client)
            .send()
            .await
            .expect("request to the BFF")
            .status();
        assert_eq!(status, 200, "a fresh bucket admits");
        if fallbacks(&bff).await == before {
            let keys = redis_command(port, &["KEYS", "bff:rl:*"]).await.unwrap();
            assert!(keys.contains(&client), "{client} not in Redis: {keys}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the Rust route never decided a check through Redis:\n{}",
            redis.log()
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}
