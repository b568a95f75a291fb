//! `dns://host:port` and `dns+srv://name` discovery (the `dns` feature), with hickory's resolver.

use super::Outage;
use crate::endpoint::Endpoints;
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

/// DNS answers are resolved again after their TTL, but never sooner than this...
pub(crate) const DNS_MIN_REFRESH: Duration = Duration::from_secs(1);
/// ...and never later than this.
pub(crate) const DNS_MAX_REFRESH: Duration = Duration::from_secs(60);
/// A failed resolution is retried after 1 s, doubling up to this.
const DNS_MAX_RETRY: Duration = Duration::from_secs(30);

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

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
struct ResolverError {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, ResolverError> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| ResolverError {
            what: "cannot read the system's resolver configuration",
            source: e.into(),
        })?
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
    builder.build().map_err(|e| ResolverError {
        what: "cannot build the resolver",
        source: e.into(),
    })
}

/// Resolves again when the TTL runs out (bounded); on failure keeps the set and retries with a backoff.
pub(super) async fn watch(target: DnsTarget, service: Arc<Endpoints>) {
    let mut outage = Outage::new(&service, "dns");
    let mut retry = DNS_MIN_REFRESH;
    // Built on first use and kept; a failure to build it (unreadable resolv.conf) is retried like any.
    let mut built = None;
    loop {
        let result = match &built {
            Some(r) => resolve(r, &target.query).await,
            None => match resolver(&target.nameservers) {
                Ok(r) => resolve(built.insert(r), &target.query).await,
                Err(e) => Err(bff_telemetry::ErrorChain(&e).to_string()),
            },
        };
        let wait = match result.and_then(|(addrs, ttl)| {
            service
                .set_endpoints(&addrs)
                .map_err(|e| bff_telemetry::ErrorChain(&e).to_string())?;
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
