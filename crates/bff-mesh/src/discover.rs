//! Discovery: where a service's endpoints come from when they are not static. The built-in sources of
//! `discovery` URLs; other sources plug in through [`crate::Resolve`]. Each source runs as a task
//! that hands complete endpoint sets to its service's endpoints (as [`crate::Service::set_endpoints`]:
//! endpoints that remain keep their state and pooled connections; calls in flight to a removed one
//! finish). The task belongs to its service: started once by [`crate::Mesh::start_tasks`], kept by a
//! reload that keeps the service, and ended when the service is dropped (it holds the endpoints, never the
//! service). Every source keeps the last good set
//! when it fails, because a discovery outage must not become a service outage: the endpoints that served a
//! second ago almost always still do, and health checks and outlier detection take care of those that died.
//!
//! - `file://path`: the file is read every second and applied when its content changes; a broken file is
//!   refused whole.
//! - `dns://host:port` (A and AAAA) and `dns+srv://name` (SRV, targets resolved): resolved again when the
//!   answer's TTL runs out, bounded to [1 s, 60 s]: the floor so that a TTL of 0
//!   does not turn into a query loop, the ceiling so that a long TTL does not keep traffic on an instance
//!   that left hours ago. The resolver's cache is cleared before each resolution, so the TTL we honour is
//!   the only one. An empty answer counts as a failure: DNS that suddenly has no address for a service is
//!   far more often a broken zone than a deliberate shutdown.
//! - `etcd://host:port/prefix`: every key under the prefix is an endpoint, read through etcd's JSON
//!   gateway (no gRPC stack, no `protoc` to build). A get, then a watch from the revision after it, so that no change between the two is lost; each change is applied at once. On any
//!   error (etcd down, watch cancelled by compaction) the source reconnects with a capped, jittered backoff
//!   and starts again with a get. An empty prefix is applied: etcd is consistent, so no keys means no
//!   instance registered.
//!
//! Failures are logged once per outage (and the recovery once), not once per retry. `dns` and `etcd` are
//! cargo features of the framework; `file://` is always there.

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "etcd")]
mod etcd;

use crate::endpoint::Endpoints;
use bff_config::DiscoveryUrl;
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::task::JoinHandle;

#[cfg(feature = "dns")]
pub(crate) use self::dns::{DnsQuery, DnsTarget};

/// A `discovery` URL of `[services.NAME]`. A scheme whose feature is not compiled in never gets here:
/// [`DiscoveryUrl::parse`] refuses it, naming the feature, and `bff check` reports that.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Discovery {
    /// `file://path`: a JSON array of `"host:port"` (or `{"address": "host:port", ...}`), watched.
    File(PathBuf),
    /// `dns://` or `dns+srv://`.
    #[cfg(feature = "dns")]
    Dns(DnsTarget),
    /// `etcd://host:port[,...]/prefix`.
    #[cfg(feature = "etcd")]
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl Discovery {
    /// The source of a `discovery` URL the config parsed (a `file://` path already resolved against the
    /// config file's folder by the loader).
    pub(crate) fn new(url: DiscoveryUrl) -> Result<Self, bff_config::InvalidValue> {
        Ok(match url {
            DiscoveryUrl::File(path) => Self::File(PathBuf::from(path)),
            #[cfg(feature = "dns")]
            DiscoveryUrl::Dns {
                host,
                port,
                nameservers,
            } => Self::Dns(DnsTarget {
                query: DnsQuery::Host { host, port },
                nameservers,
            }),
            #[cfg(feature = "dns")]
            DiscoveryUrl::DnsSrv { name, nameservers } => Self::Dns(DnsTarget {
                query: DnsQuery::Srv { name },
                nameservers,
            }),
            #[cfg(feature = "etcd")]
            DiscoveryUrl::Etcd { endpoints, prefix } => Self::Etcd { endpoints, prefix },
            #[allow(unreachable_patterns)]
            other => {
                return Err(format!("{other:?}: this build cannot discover with it").into());
            }
        })
    }

    pub(crate) fn spawn(self, service: Arc<Endpoints>) -> JoinHandle<()> {
        match self {
            Self::File(path) => tokio::spawn(watch_file(path, service)),
            #[cfg(feature = "dns")]
            Self::Dns(target) => tokio::spawn(dns::watch(target, service)),
            #[cfg(feature = "etcd")]
            Self::Etcd { endpoints, prefix } => {
                tokio::spawn(etcd::watch(endpoints, prefix, service))
            }
        }
    }
}

/// Reads the file every second; applies it when its content changes and parses.
async fn watch_file(path: PathBuf, service: Arc<Endpoints>) {
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
            Err(e) => Err(DiscoveryError::Read(path.clone(), e)),
        };
        let applied = result.and_then(|(bytes, eps)| {
            service.set_endpoints(&eps)?;
            Ok(bytes)
        });
        match applied {
            Ok(bytes) => {
                last = Some(bytes);
                last_error = None;
            }
            Err(e) => {
                service.discovery_failed();
                let e = bff_telemetry::ErrorChain(&e).to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(service = %service.name(), error = %e, "discovery file refused; keeping the last good endpoints");
                    last_error = Some(e);
                }
            }
        }
    }
}

/// `["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 2, "zone": "a"}]`.
pub(crate) fn parse_endpoints(bytes: &[u8]) -> Result<Vec<String>, DiscoveryError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(DiscoveryError::NotJson)?;
    let items = v
        .as_array()
        .ok_or(DiscoveryError::Shape("expected a JSON array of endpoints"))?;
    items.iter().map(endpoint_of).collect()
}

/// Endpoints that discovery found and cannot use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("{0}")]
    Shape(&'static str),
    #[error("{0:?} is not host:port")]
    NotHostPort(String),
    #[error(transparent)]
    Service(#[from] crate::ServiceError),
}

/// One endpoint: `"host:port"` or `{"address": "host:port", ...}`.
fn endpoint_of(item: &serde_json::Value) -> Result<String, DiscoveryError> {
    let addr = match item {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(o) => {
            o.get("address")
                .and_then(|a| a.as_str())
                .ok_or(DiscoveryError::Shape(
                    "an endpoint object needs \"address\"",
                ))?
        }
        _ => {
            return Err(DiscoveryError::Shape(
                "an endpoint is \"host:port\" or an object",
            ));
        }
    };
    check_host_port(addr)
}

/// A discovered `host:port`, checked by the parser of the config's `endpoints`.
fn check_host_port(addr: &str) -> Result<String, DiscoveryError> {
    addr.parse::<bff_config::HostPort>()
        .map(|_| addr.to_string())
        .map_err(|_| DiscoveryError::NotHostPort(addr.to_string()))
}

/// Logs the first failure of an outage and the recovery, not every retry in between.
#[cfg_attr(not(any(feature = "dns", feature = "etcd")), allow(dead_code))]
struct Outage {
    endpoints: Arc<Endpoints>,
    source: &'static str,
    down: bool,
}

#[cfg_attr(not(any(feature = "dns", feature = "etcd")), allow(dead_code))]
impl Outage {
    fn new(endpoints: &Arc<Endpoints>, source: &'static str) -> Self {
        Self {
            endpoints: endpoints.clone(),
            source,
            down: false,
        }
    }

    /// Counted every time (`bff_discovery_failures_total`), logged at the first of an outage.
    fn failed(&mut self, error: &str) {
        self.endpoints.discovery_failed();
        let service = self.endpoints.name();
        if self.down {
            tracing::debug!(
                service,
                source = self.source,
                error,
                "discovery still failing"
            );
        } else {
            tracing::warn!(
                service,
                source = self.source,
                error,
                "discovery failed; keeping the last good endpoints"
            );
            self.down = true;
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.down) {
            let service = self.endpoints.name();
            tracing::info!(service, source = self.source, "discovery recovered");
        }
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

    /// The mesh takes the config's parsed URL as it is: no second parser.
    fn parse(url: &str) -> Result<Discovery, bff_config::InvalidValue> {
        Discovery::new(url.parse::<DiscoveryUrl>()?)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("file:///etc/bff/eps.json").unwrap(),
            Discovery::File("/etc/bff/eps.json".into())
        );
        #[cfg(feature = "dns")]
        assert_eq!(
            parse("dns://users.test:8080?nameserver=127.0.0.1:5353").unwrap(),
            Discovery::Dns(DnsTarget {
                query: DnsQuery::Host {
                    host: "users.test".into(),
                    port: 8080
                },
                nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            })
        );
        #[cfg(feature = "dns")]
        assert_eq!(
            parse("dns+srv://_http._tcp.users.test").unwrap(),
            Discovery::Dns(DnsTarget {
                query: DnsQuery::Srv {
                    name: "_http._tcp.users.test".into()
                },
                nameservers: vec![],
            })
        );
        #[cfg(feature = "etcd")]
        assert_eq!(
            parse("etcd://127.0.0.1:2379/services/users/").unwrap(),
            Discovery::Etcd {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: "/services/users/".into()
            }
        );
        assert!(parse("zk://x").is_err());
    }
}
