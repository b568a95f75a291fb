//! Discovery: where a service's endpoints come from when they are not static. The built-in sources of
//! `discovery` URLs; other sources plug in through [`crate::Resolve`]. Each source runs as a task
//! that hands complete endpoint sets to [`Service::set_endpoints`] (endpoints that remain keep their state
//! and pooled connections; calls in flight to a removed one finish). Every source keeps the last good set
//! when it fails, because a discovery outage must not become a service outage: the endpoints that served a
//! second ago almost always still do, and health checks and outlier detection take care of those that died.
//!
//! - `file://path`: the file is read every second and applied when its content changes; a broken file is
//!   refused whole.
//! - `dns://host:port` (A and AAAA) and `dns+srv://name` (SRV, targets resolved): resolved again when the
//!   answer's TTL runs out, bounded to [`DNS_MIN_REFRESH`, `DNS_MAX_REFRESH`]: the floor so that a TTL of 0
//!   does not turn into a query loop, the ceiling so that a long TTL does not keep traffic on an instance
//!   that left hours ago. The resolver's cache is cleared before each resolution, so the TTL we honour is
//!   the only one. An empty answer counts as a failure: DNS that suddenly has no address for a service is
//!   far more often a broken zone than a deliberate shutdown.
//! - `etcd://host:port/prefix`: every key under the prefix is an endpoint. A get, then a watch from the
//!   revision after it, so that no change between the two is lost; each change is applied at once. On any
//!   error (etcd down, watch cancelled by compaction) the source reconnects with a capped, jittered backoff
//!   and starts again with a get. An empty prefix is applied: etcd is consistent, so no keys means no
//!   instance registered.
//!
//! Failures are logged once per outage (and the recovery once), not once per retry.

use crate::Service;
use bff_config::DiscoveryUrl;
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// DNS answers are resolved again after their TTL, but never sooner than this...
pub(crate) const DNS_MIN_REFRESH: Duration = Duration::from_secs(1);
/// ...and never later than this.
pub(crate) const DNS_MAX_REFRESH: Duration = Duration::from_secs(60);
/// A failed resolution is retried after 1 s, doubling up to this.
const DNS_MAX_RETRY: Duration = Duration::from_secs(30);
/// etcd reconnects after this, doubling (with jitter) up to [`ETCD_MAX_BACKOFF`].
const ETCD_MIN_BACKOFF: Duration = Duration::from_millis(200);
const ETCD_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Connecting to etcd and reading the prefix must finish within this.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// A `discovery` URL of `[services.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Discovery {
    /// `file://path`: a JSON array of `"host:port"` (or `{"address": "host:port", ...}`), watched.
    File(PathBuf),
    /// `dns://` or `dns+srv://`.
    Dns(DnsTarget),
    /// `etcd://host:port[,...]/prefix`.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

/// What to resolve, and with which nameservers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DnsTarget {
    pub(crate) query: DnsQuery,
    /// Empty: the system's configuration (`/etc/resolv.conf`).
    pub(crate) nameservers: Vec<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DnsQuery {
    /// A and AAAA records of `host`, each address an endpoint on `port`.
    Host { host: String, port: u16 },
    /// SRV records of `name`: the lowest priority's targets, resolved, on their ports.
    Srv { name: String },
}

impl Discovery {
    /// Parses a `discovery` URL; relative file paths are read from `base` (the config file's folder).
    pub(crate) fn parse(url: &str, base: Option<&std::path::Path>) -> Result<Self, String> {
        Ok(match DiscoveryUrl::parse(url)? {
            DiscoveryUrl::File(path) => {
                let p = PathBuf::from(path);
                Self::File(match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                })
            }
            DiscoveryUrl::Dns {
                host,
                port,
                nameservers,
            } => Self::Dns(DnsTarget {
                query: DnsQuery::Host { host, port },
                nameservers,
            }),
            DiscoveryUrl::DnsSrv { name, nameservers } => Self::Dns(DnsTarget {
                query: DnsQuery::Srv { name },
                nameservers,
            }),
            DiscoveryUrl::Etcd { endpoints, prefix } => Self::Etcd { endpoints, prefix },
        })
    }

    pub(crate) fn spawn(self, service: Arc<Service>) -> JoinHandle<()> {
        match self {
            Self::File(path) => tokio::spawn(watch_file(path, service)),
            Self::Dns(target) => tokio::spawn(watch_dns(target, service)),
            Self::Etcd { endpoints, prefix } => {
                tokio::spawn(watch_etcd(endpoints, prefix, service))
            }
        }
    }
}

/// Reads the file every second; applies it when its content changes and parses.
async fn watch_file(path: PathBuf, service: Arc<Service>) {
    let mut last: Option<Vec<u8>> = None;
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let read = tokio::fs::read(&path).await;
        let result = match read {
            Ok(bytes) if last.as_ref() == Some(&bytes) => continue,
            Ok(bytes) => parse_endpoints(&bytes).map(|eps| (bytes, eps)),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        match result.and_then(|(bytes, eps)| service.set_endpoints(&eps).map(|()| bytes)) {
            Ok(bytes) => {
                last = Some(bytes);
                last_error = None;
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(service = %service.name(), error = %e, "discovery file refused; keeping the last good endpoints");
                    last_error = Some(e);
                }
            }
        }
    }
}

/// `["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 2, "zone": "a"}]`.
pub(crate) fn parse_endpoints(bytes: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.as_array().ok_or("expected a JSON array of endpoints")?;
    items.iter().map(endpoint_of).collect()
}

/// One endpoint: `"host:port"` or `{"address": "host:port", ...}`.
fn endpoint_of(item: &serde_json::Value) -> Result<String, String> {
    let addr = match item {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(o) => o
            .get("address")
            .and_then(|a| a.as_str())
            .ok_or("an endpoint object needs \"address\"")?,
        _ => return Err("an endpoint is \"host:port\" or an object".to_string()),
    };
    check_host_port(addr)
}

fn check_host_port(addr: &str) -> Result<String, String> {
    match addr.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty()
                && p.parse::<u16>().is_ok_and(|p| p > 0)
                && addr.parse::<http::uri::Authority>().is_ok() =>
        {
            Ok(addr.to_string())
        }
        _ => Err(format!("{addr:?} is not host:port")),
    }
}

/// Logs the first failure of an outage and the recovery, not every retry in between.
struct Outage {
    service: Arc<str>,
    source: &'static str,
    down: bool,
}

impl Outage {
    fn new(service: &Service, source: &'static str) -> Self {
        Self {
            service: service.name.clone(),
            source,
            down: false,
        }
    }

    fn failed(&mut self, error: &str) {
        if self.down {
            tracing::debug!(service = %self.service, source = self.source, error, "discovery still failing");
        } else {
            tracing::warn!(service = %self.service, source = self.source, error, "discovery failed; keeping the last good endpoints");
            self.down = true;
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.down) {
            tracing::info!(service = %self.service, source = self.source, "discovery recovered");
        }
    }
}

// ---- DNS ----

fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
    } else {
        let servers = nameservers
            .iter()
            .map(|ns| {
                let mut udp = ConnectionConfig::udp();
                udp.port = ns.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = ns.port();
                NameServerConfig::new(ns.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    builder.build().map_err(|e| e.to_string())
}

/// Resolves again when the TTL runs out (bounded); on failure keeps the set and retries with a backoff.
async fn watch_dns(target: DnsTarget, service: Arc<Service>) {
    let mut outage = Outage::new(&service, "dns");
    let mut retry = DNS_MIN_REFRESH;
    // Built on first use and kept; a failure to build it (unreadable resolv.conf) is retried like any.
    let mut built = None;
    loop {
        let result = match &built {
            Some(r) => resolve(r, &target.query).await,
            None => match resolver(&target.nameservers) {
                Ok(r) => resolve(built.insert(r), &target.query).await,
                Err(e) => Err(e),
            },
        };
        let wait = match result.and_then(|(addrs, ttl)| {
            service.set_endpoints(&addrs)?;
            Ok(ttl)
        }) {
            Ok(ttl) => {
                outage.recovered();
                retry = DNS_MIN_REFRESH;
                ttl.clamp(DNS_MIN_REFRESH, DNS_MAX_REFRESH)
            }
            Err(e) => {
                outage.failed(&e);
                let wait = retry;
                retry = (retry * 2).min(DNS_MAX_RETRY);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The endpoints (sorted, so that a rotated answer is the same set) and the time they are valid for.
async fn resolve(
    resolver: &TokioResolver,
    query: &DnsQuery,
) -> Result<(Vec<String>, Duration), String> {
    resolver.clear_cache();
    let (mut addrs, valid_until) = match query {
        DnsQuery::Host { host, port } => {
            let ips = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| format!("{host}: {e}"))?;
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, *port)).collect();
            (addrs, ips.valid_until())
        }
        DnsQuery::Srv { name } => {
            let srv = resolver
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| format!("{name} SRV: {e}"))?;
            let records: Vec<_> = srv
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    // A target of "." says the service is not offered there.
                    RData::SRV(s) if !s.target.is_root() => Some(s.clone()),
                    _ => None,
                })
                .collect();
            let lowest = records.iter().map(|s| s.priority).min();
            let targets: Vec<_> = records
                .into_iter()
                .filter(|s| Some(s.priority) == lowest)
                .collect();
            let lookups = futures::future::join_all(
                targets.iter().map(|s| resolver.lookup_ip(s.target.clone())),
            )
            .await;
            let mut valid_until = srv.valid_until();
            let mut addrs = Vec::new();
            let mut errors = Vec::new();
            for (s, lookup) in targets.iter().zip(lookups) {
                match lookup {
                    Ok(ips) => {
                        valid_until = valid_until.min(ips.valid_until());
                        addrs.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, s.port)));
                    }
                    // A target that does not resolve is left out; the others still serve.
                    Err(e) => errors.push(format!("{}: {e}", s.target)),
                }
            }
            if addrs.is_empty() && !errors.is_empty() {
                return Err(format!(
                    "{name}: no SRV target resolved: {}",
                    errors.join("; ")
                ));
            }
            (addrs, valid_until)
        }
    };
    if addrs.is_empty() {
        return Err("the answer has no address".to_string());
    }
    addrs.sort();
    addrs.dedup();
    let ttl = valid_until.saturating_duration_since(Instant::now());
    Ok((addrs.iter().map(SocketAddr::to_string).collect(), ttl))
}

// ---- etcd ----

/// Get + watch, again and again: a session ends with an error, the next one starts after a backoff.
async fn watch_etcd(endpoints: Vec<String>, prefix: String, service: Arc<Service>) {
    let mut outage = Outage::new(&service, "etcd");
    let mut backoff = ETCD_MIN_BACKOFF;
    loop {
        let e = etcd_session(&endpoints, &prefix, &service, &mut outage, &mut backoff).await;
        outage.failed(&e);
        // Full jitter over the upper half, so that many BFFs do not reconnect in step.
        let wait = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(ETCD_MAX_BACKOFF);
    }
}

/// One connection: reads every key under the prefix, applies them, then applies each watched change. Returns
/// why it ended.
async fn etcd_session(
    endpoints: &[String],
    prefix: &str,
    service: &Service,
    outage: &mut Outage,
    backoff: &mut Duration,
) -> String {
    let options = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true)
        // A member cut off from the cluster's leader must not serve a watch that never fires.
        .with_require_leader(true);
    let within = |what: &str| format!("etcd {what}: no answer within {ETCD_TIMEOUT:?}");
    let mut client =
        match tokio::time::timeout(ETCD_TIMEOUT, Client::connect(endpoints, Some(options))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return format!("etcd connect: {e}"),
            Err(_) => return within("connect"),
        };
    let get = client.get(prefix, Some(GetOptions::new().with_prefix()));
    let resp = match tokio::time::timeout(ETCD_TIMEOUT, get).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return format!("etcd get {prefix}: {e}"),
        Err(_) => return within("get"),
    };
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut keys = EtcdKeys::new(service);
    for kv in resp.kvs() {
        keys.put(kv.key(), kv.value());
    }
    if let Err(e) = keys.apply() {
        return e;
    }
    outage.recovered();
    *backoff = ETCD_MIN_BACKOFF;

    let watch = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream =
        match tokio::time::timeout(ETCD_TIMEOUT, client.watch(prefix, Some(watch))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return format!("etcd watch {prefix}: {e}"),
            Err(_) => return within("watch"),
        };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "etcd closed the watch".to_string(),
            Err(e) => return format!("etcd watch {prefix}: {e}"),
        };
        if resp.canceled() {
            // Compaction passed our revision (or etcd cancelled the watch): start over with a get.
            return format!(
                "etcd cancelled the watch (compact revision {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            );
        }
        if resp.events().is_empty() {
            continue;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            match ev.event_type() {
                EventType::Put => keys.put(kv.key(), kv.value()),
                EventType::Delete => keys.delete(kv.key()),
            }
        }
        if let Err(e) = keys.apply() {
            return e;
        }
    }
}

/// The keys under a prefix and their endpoints. A key whose value is not an endpoint is left out (and
/// logged): one bad registration must not take the others' away.
struct EtcdKeys<'a> {
    service: &'a Service,
    keys: BTreeMap<Vec<u8>, String>,
}

impl<'a> EtcdKeys<'a> {
    fn new(service: &'a Service) -> Self {
        Self {
            service,
            keys: BTreeMap::new(),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        match etcd_value(value) {
            Ok(addr) => {
                self.keys.insert(key.to_vec(), addr);
            }
            Err(e) => {
                tracing::warn!(service = %self.service.name(), key = %String::from_utf8_lossy(key), error = %e, "etcd key ignored: its value is not an endpoint");
                self.keys.remove(key);
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    fn apply(&self) -> Result<(), String> {
        let mut addrs: Vec<String> = self.keys.values().cloned().collect();
        addrs.sort();
        addrs.dedup();
        self.service.set_endpoints(&addrs)
    }
}

/// `host:port`, or JSON: `"host:port"` or `{"address": "host:port", ...}`.
fn etcd_value(value: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(value)
        .map_err(|_| "not UTF-8".to_string())?
        .trim();
    if text.starts_with(['{', '"']) {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        endpoint_of(&v)
    } else {
        check_host_port(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_files() {
        assert_eq!(
            parse_endpoints(
                br#"["10.0.0.1:80", {"address": "10.0.0.2:81", "weight": 2, "zone": "a"}]"#
            )
            .unwrap(),
            ["10.0.0.1:80", "10.0.0.2:81"]
        );
        assert!(parse_endpoints(b"[\"nope\"]").is_err());
        assert!(parse_endpoints(b"[\"a b:80\"]").is_err());
        assert!(parse_endpoints(b"{").is_err());
        assert!(parse_endpoints(b"{}").is_err());
        assert_eq!(parse_endpoints(b"[]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn etcd_values() {
        assert_eq!(etcd_value(b"10.0.0.1:80\n").unwrap(), "10.0.0.1:80");
        assert_eq!(
            etcd_value(br#"{"address": "users-1.internal:8080", "zone": "a"}"#).unwrap(),
            "users-1.internal:8080"
        );
        assert_eq!(etcd_value(br#""10.0.0.1:80""#).unwrap(), "10.0.0.1:80");
        assert!(etcd_value(b"10.0.0.1").is_err());
        assert!(etcd_value(br#"{"addr": "10.0.0.1:80"}"#).is_err());
        assert!(etcd_value(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            Discovery::parse("file://eps.json", Some(std::path::Path::new("/etc/bff"))).unwrap(),
            Discovery::File("/etc/bff/eps.json".into())
        );
        assert_eq!(
            Discovery::parse("dns://users.test:8080?nameserver=127.0.0.1:5353", None).unwrap(),
            Discovery::Dns(DnsTarget {
                query: DnsQuery::Host {
                    host: "users.test".into(),
                    port: 8080
                },
                nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            })
        );
        assert_eq!(
            Discovery::parse("dns+srv://_http._tcp.users.test", None).unwrap(),
            Discovery::Dns(DnsTarget {
                query: DnsQuery::Srv {
                    name: "_http._tcp.users.test".into()
                },
                nameservers: vec![],
            })
        );
        assert_eq!(
            Discovery::parse("etcd://127.0.0.1:2379/services/users/", None).unwrap(),
            Discovery::Etcd {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: "/services/users/".into()
            }
        );
        assert!(Discovery::parse("zk://x", None).is_err());
    }
}
