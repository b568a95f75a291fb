//! `discovery` URLs of `[services.NAME]` (`dns://`, `dns+srv://`, `file://`, `etcd://`), parsed once at load.

use std::net::{IpAddr, SocketAddr};

/// A `discovery` URL of `[services.NAME]`, parsed. Validation and the mesh use this one parser, so that
/// what `bff check` accepts is what the mesh runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryUrl {
    /// `dns://host:port[?nameserver=IP[:PORT]]`: every A and AAAA record of `host`, each an endpoint on
    /// `port`.
    Dns {
        host: String,
        port: u16,
        /// Empty: the system's resolver configuration (`/etc/resolv.conf`).
        nameservers: Vec<SocketAddr>,
    },
    /// `dns+srv://_service._proto.name[?nameserver=...]`: every SRV record, its target resolved (A/AAAA)
    /// and paired with its port.
    DnsSrv {
        name: String,
        nameservers: Vec<SocketAddr>,
    },
    /// `file://path`: a watched JSON file (relative paths from the config file's folder).
    File(String),
    /// `etcd://host:port[,host:port...]/prefix`: every key under the prefix (which starts with `/`).
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl DiscoveryUrl {
    /// Parses a `discovery` URL, and refuses one whose source this binary was built without (naming the
    /// cargo feature).
    pub fn parse(url: &str) -> Result<Self, crate::InvalidValue> {
        let parsed = Self::parse_syntax(url)?;
        if let Some(f) = parsed.feature() {
            f.require(&format!(
                "{:?} ({}:// discovery)",
                crate::redact_url(url),
                f.name()
            ))?;
        }
        Ok(parsed)
    }

    /// The cargo feature that implements this source, if it is optional.
    pub fn feature(&self) -> Option<crate::Feature> {
        match self {
            Self::Dns { .. } | Self::DnsSrv { .. } => Some(crate::Feature::Dns),
            Self::Etcd { .. } => Some(crate::Feature::Etcd),
            Self::File(_) => None,
        }
    }

    fn parse_syntax(url: &str) -> Result<Self, crate::InvalidValue> {
        // Errors show the URL without its credentials.
        let shown = crate::redact_url(url);
        if let Some(rest) = url.strip_prefix("dns+srv://") {
            let (name, nameservers) = dns_query(url, rest)?;
            if name.contains(':') {
                return Err(format!(
                    "{shown:?}: dns+srv:// takes a name without a port (the SRV records give the ports), \
                     e.g. dns+srv://_http._tcp.users.example"
                ).into());
            }
            check_dns_name(url, name)?;
            return Ok(Self::DnsSrv {
                name: name.to_string(),
                nameservers,
            });
        }
        if let Some(rest) = url.strip_prefix("dns://") {
            let (hostport, nameservers) = dns_query(url, rest)?;
            let Some((host, port)) = hostport.rsplit_once(':') else {
                return Err(format!(
                    "{shown:?} needs a port: dns://host:port (e.g. dns://users.example:8080)"
                )
                .into());
            };
            check_dns_name(url, host)?;
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{shown:?}: the port must be 1-65535").into()),
            };
            return Ok(Self::Dns {
                host: host.to_string(),
                port,
                nameservers,
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(
                    format!("{shown:?} needs a path: file://path/to/endpoints.json").into(),
                );
            }
            return Ok(Self::File(path.to_string()));
        }
        if let Some(rest) = url.strip_prefix("etcd://") {
            let form = "etcd://host:port[,host:port...]/prefix";
            let Some(slash) = rest.find('/') else {
                return Err(format!("{shown:?} needs a key prefix: {form}").into());
            };
            let (hosts, prefix) = rest.split_at(slash);
            if prefix.len() < 2 {
                return Err(format!(
                    "{shown:?}: the key prefix after the address must not be empty ({form})"
                )
                .into());
            }
            if prefix.contains(['?', '#']) {
                return Err(format!("{shown:?}: an etcd URL takes no query ({form})").into());
            }
            let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
            for e in &endpoints {
                e.parse::<crate::HostPort>()
                    .map_err(|m| format!("{shown:?}: {m} ({form})"))?;
            }
            return Ok(Self::Etcd {
                endpoints,
                prefix: prefix.to_string(),
            });
        }
        Err(format!(
            "{shown:?} is not dns://host:port, dns+srv://name, file://path or etcd://host:port/prefix"
        ).into())
    }
}

impl std::str::FromStr for DiscoveryUrl {
    type Err = crate::InvalidValue;
    fn from_str(url: &str) -> Result<Self, crate::InvalidValue> {
        Self::parse(url)
    }
}

impl std::fmt::Display for DiscoveryUrl {
    /// The URL as written (normalised), without credentials or query values shown in full.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nameservers = |f: &mut std::fmt::Formatter<'_>, ns: &[SocketAddr]| {
            for (i, n) in ns.iter().enumerate() {
                f.write_str(if i == 0 { "?nameserver=" } else { "," })?;
                write!(f, "{n}")?;
            }
            Ok(())
        };
        match self {
            Self::Dns {
                host,
                port,
                nameservers: ns,
            } => {
                write!(f, "dns://{host}:{port}")?;
                nameservers(f, ns)
            }
            Self::DnsSrv {
                name,
                nameservers: ns,
            } => {
                write!(f, "dns+srv://{name}")?;
                nameservers(f, ns)
            }
            Self::File(path) => write!(f, "file://{path}"),
            Self::Etcd { endpoints, prefix } => {
                write!(f, "etcd://{}{prefix}", endpoints.join(","))
            }
        }
    }
}

from_str_serde!(
    DiscoveryUrl,
    "a URL such as \"dns://users.internal:8080\" or \"file://endpoints.json\""
);

/// Splits `?nameserver=IP[:PORT]` (repeated, or comma-separated) off a DNS discovery URL.
fn dns_query<'a>(
    url: &str,
    rest: &'a str,
) -> Result<(&'a str, Vec<SocketAddr>), crate::InvalidValue> {
    let shown = crate::redact_url(url);
    let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut nameservers = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some(("nameserver", value)) = pair.split_once('=') else {
            return Err(format!(
                "{shown:?}: unknown query {pair:?}; the only one is nameserver=IP[:PORT]"
            )
            .into());
        };
        for ns in value.split(',') {
            let addr = ns
                .parse::<SocketAddr>()
                .or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    format!(
                        "{shown:?}: nameserver {ns:?} is not an IP address with an optional port \
                         (\"127.0.0.1:5353\", \"10.0.0.2\", \"[::1]:53\")"
                    )
                })?;
            nameservers.push(addr);
        }
    }
    Ok((target, nameservers))
}

fn check_dns_name(url: &str, name: &str) -> Result<(), crate::InvalidValue> {
    let shown = crate::redact_url(url);
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{shown:?}: {name:?} is not a DNS name").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls() {
        assert_eq!(
            DiscoveryUrl::parse_syntax("dns://users.test:8080?nameserver=127.0.0.1:5353").unwrap(),
            DiscoveryUrl::Dns {
                host: "users.test".into(),
                port: 8080,
                nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax(
                "dns+srv://_http._tcp.users.test.?nameserver=10.0.0.2,[::1]:53"
            )
            .unwrap(),
            DiscoveryUrl::DnsSrv {
                name: "_http._tcp.users.test.".into(),
                nameservers: vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()],
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax("etcd://10.0.0.5:2379,10.0.0.6:2379/services/users/")
                .unwrap(),
            DiscoveryUrl::Etcd {
                endpoints: vec!["10.0.0.5:2379".into(), "10.0.0.6:2379".into()],
                prefix: "/services/users/".into(),
            }
        );
        assert_eq!(
            DiscoveryUrl::parse_syntax("file://eps.json").unwrap(),
            DiscoveryUrl::File("eps.json".into())
        );
        for (bad, says) in [
            ("dns://users.test", "needs a port"),
            ("dns://users.test:0", "port must be"),
            ("dns://users..test:80", "not a DNS name"),
            (
                "dns://users.test:80?nameserver=dns.local",
                "is not an IP address",
            ),
            ("dns://users.test:80?ns=10.0.0.1", "unknown query"),
            ("dns+srv://users.test:80", "without a port"),
            ("etcd://10.0.0.5:2379", "needs a key prefix"),
            ("etcd://10.0.0.5:2379/", "must not be empty"),
            ("etcd://10.0.0.5/x", "not host:port"),
            ("file://", "needs a path"),
            ("zk://x", "is not dns://"),
        ] {
            let e = DiscoveryUrl::parse_syntax(bad).unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_source_compiled_out_is_refused_naming_its_feature() {
        for (url, feature) in [
            ("etcd://127.0.0.1:2379/services/users/", "etcd"),
            ("dns://users.test:8080", "dns"),
            ("dns+srv://_http._tcp.users.test", "dns"),
        ] {
            let f = DiscoveryUrl::parse_syntax(url).unwrap().feature().unwrap();
            assert_eq!(f.name(), feature);
            match DiscoveryUrl::parse(url) {
                Ok(_) => assert!(f.enabled(), "{url} accepted without its feature"),
                Err(e) => {
                    assert!(!f.enabled(), "{url}: {e}");
                    assert!(
                        e.0.contains(&format!("needs the `{feature}` feature")),
                        "{e}"
                    );
                }
            }
        }
        assert!(
            DiscoveryUrl::parse("file://eps.json")
                .unwrap()
                .feature()
                .is_none()
        );
    }
}
