//! Addresses and URLs of the config, parsed once at load: CIDRs (`trusted_proxies`), CORS origins,
//! `host:port` endpoints, the Redis store URL, the JWKS URL and the OTLP collector. Each has one parser,
//! whose message becomes the config error of its key (file:line:key), and the consumers take the parsed
//! form: none of them parses the text again.

use http::{HeaderValue, Uri, uri::Authority};
use std::{fmt, net::IpAddr, str::FromStr};

/// A CIDR of `edge.trusted_proxies`: `10.0.0.0/8`, `2001:db8::/32`, or one address (`::1`). An
/// IPv4-mapped IPv6 CIDR (`::ffff:10.0.0.0/104`) is kept in its IPv4 form (`10.0.0.0/8`), and
/// [`Cidr::contains`] compares addresses in that form, so matching never depends on how an address is
/// written, and cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// The network, in canonical form (IPv4 for a mapped one).
    pub fn network(self) -> IpAddr {
        self.net
    }

    /// The prefix length, in bits of [`Cidr::network`]'s family.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// Whether `ip` is in this network; IPv4-mapped IPv6 addresses compare as IPv4.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self.net, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            // A short IPv6 prefix (`::/0`) covers the mapped addresses too.
            (IpAddr::V6(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.to_ipv6_mapped().octets(), self.len)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) in their IPv4 form.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the first `len` bits agree (`len` is at most the address's bits: [`Cidr`] refuses more).
fn prefix_eq(net: &[u8], addr: &[u8], len: u8) -> bool {
    let len = usize::from(len).min(net.len() * 8);
    let full = len / 8;
    let rest = len % 8;
    if net[..full] != addr[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    net[full] & mask == addr[full] & mask
}

impl FromStr for Cidr {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        let (ip, len) = s.split_once('/').map_or((s, None), |(i, l)| (i, Some(l)));
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        // An IPv4-mapped IPv6 CIDR (`::ffff:10.0.0.0/104`) means its IPv4 form (`10.0.0.0/8`): its
        // prefix must cover the 96 bits of the mapping.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(l) if l <= max && (mapped.is_none() || l >= 96) => l,
                _ if mapped.is_some() => {
                    return Err(format!(
                        "{s:?}: an IPv4-mapped address needs a prefix length of 96-128 (or write the IPv4 form)"
                    ).into());
                }
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}").into()),
            },
        };
        Ok(match mapped {
            Some(v4) => Self {
                net: IpAddr::V4(v4),
                len: len - 96,
            },
            None => Self { net: ip, len },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

from_str_serde!(Cidr, "a CIDR such as \"10.0.0.0/8\" or an IP address");

/// An entry of `[edge.cors] allow_origins`: `"*"` or one exact origin (`scheme://host[:port]`), kept as the
/// header value it is compared with. `null` is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CorsOrigin {
    /// `"*"`: any origin (never with credentials).
    Any,
    /// One origin, as browsers send it in `Origin`.
    Exact(HeaderValue),
}

impl FromStr for CorsOrigin {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        if s == "*" {
            return Ok(Self::Any);
        }
        if s == "null" {
            return Err("the `null` origin can never be allowed".into());
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| format!("{s:?} is not an origin like \"https://app.example.com\""))?;
        let value = HeaderValue::from_str(s).ok();
        match value {
            Some(v) if !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']) => {
                Ok(Self::Exact(v))
            }
            _ => Err(format!("{s:?} is not an origin: scheme://host[:port], no path").into()),
        }
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            // Parsed from a `str`: always visible ASCII.
            Self::Exact(v) => f.write_str(v.to_str().unwrap_or_default()),
        }
    }
}

from_str_serde!(
    CorsOrigin,
    "an origin such as \"https://app.example.com\" or \"*\""
);

/// A `host:port` of `[services.NAME] endpoints` (and of an `etcd://` URL): the authority the mesh
/// connects to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort(Authority);

impl HostPort {
    pub fn authority(&self) -> &Authority {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for HostPort {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
            return Err(format!("{s:?} is not host:port").into());
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{s:?}: port must be 1-65535").into()),
        }
        s.parse::<Authority>()
            .map(Self)
            .map_err(|_| format!("{s:?} is not host:port").into())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

from_str_serde!(HostPort, "an address such as \"users:8080\"");

/// The shared rate-limit store (`store = "redis://..."`): `redis://[[user]:password@]host[:port][/db]`, the
/// form the Redis client accepts. `Debug`, `Display` and serde show it without its credentials; the
/// client gets [`RedisUrl::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The whole URL, credentials included: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = crate::InvalidValue;

    fn from_str(url: &str) -> Result<Self, crate::InvalidValue> {
        // Errors show the URL without its credentials.
        let shown = crate::redact_url(url);
        if url.starts_with("rediss://") {
            return Err(format!(
                "{shown:?}: TLS to Redis (rediss://) is not supported in this build; use redis://"
            )
            .into());
        }
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            format!("{shown:?} is not a redis:// URL (redis://[[user]:password@]host[:port][/db])")
        })?;
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
                None => ("", None),
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        if host.is_empty() || host.contains([' ', '?', '#', '[', ']']) {
            return Err(format!(
                "{shown:?} has no host (redis://[[user]:password@]host[:port][/db])"
            )
            .into());
        }
        if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
            return Err(format!("{shown:?}: the port must be 1-65535").into());
        }
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("{shown:?}: the database after `/` must be a number").into());
        }
        crate::Feature::Redis.require("a shared rate limit store")?;
        Ok(Self(url.to_string()))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact_url(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", crate::redact_url(&self.0))
    }
}

from_str_serde!(RedisUrl, "a URL such as \"redis://127.0.0.1:6379\"");

/// An `http://` or `https://` URL with a host (`[edge.auth.jwt] jwks_url`), parsed as the client that
/// fetches it uses it. `Display` and serde show it without credentials or query values.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    uri: Uri,
}

impl HttpUrl {
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }
}

impl FromStr for HttpUrl {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        match s.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Ok(Self {
                    text: s.to_string(),
                    uri,
                })
            }
            _ => Err(format!(
                "{:?} is not an http:// or https:// URL",
                crate::redact_url(s)
            )
            .into()),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact_url(&self.text))
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({:?})", crate::redact_url(&self.text))
    }
}

from_str_serde!(
    HttpUrl,
    "a URL such as \"https://idp.example.com/jwks.json\""
);

/// `[telemetry] otlp_endpoint`: the `http://` base URL of an OTLP/HTTP collector; spans are posted to
/// [`OtlpEndpoint::traces`] (`BASE/v1/traces`).
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    text: String,
    traces: Uri,
}

impl OtlpEndpoint {
    /// `BASE/v1/traces`, where spans are posted.
    pub fn traces(&self) -> &Uri {
        &self.traces
    }
}

impl FromStr for OtlpEndpoint {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        let traces = format!("{}/v1/traces", s.trim_end_matches('/'));
        let ok = s
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(' '));
        match traces.parse::<Uri>() {
            Ok(traces) if ok && traces.host().is_some() => {
                crate::Feature::Otlp.require("exporting spans (otlp_endpoint)")?;
                Ok(Self {
                    text: s.to_string(),
                    traces,
                })
            }
            _ => Err(format!(
                "{:?} is not an http:// URL of an OTLP/HTTP collector (e.g. \"http://127.0.0.1:4318\")",
                crate::redact_url(s)
            ).into()),
        }
    }
}

impl fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact_url(&self.text))
    }
}

impl fmt::Debug for OtlpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtlpEndpoint({:?})", crate::redact_url(&self.text))
    }
}

from_str_serde!(OtlpEndpoint, "a URL such as \"http://127.0.0.1:4318\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalised_so_matching_cannot_fail() {
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        let one: Cidr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "10.0.0.1/32");
        assert!(one.contains("10.0.0.1".parse().unwrap()));
        assert!(one.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!one.contains("10.0.0.2".parse().unwrap()));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains("10.1.1.1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "::ffff:10.0.0.0/95",
            "10.0.0.0/x",
            "host",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!("*".parse::<CorsOrigin>(), Ok(CorsOrigin::Any));
        assert_eq!(
            "https://app.example.com"
                .parse::<CorsOrigin>()
                .unwrap()
                .to_string(),
            "https://app.example.com"
        );
        for bad in [
            "null",
            "app.example.com",
            "https://",
            "https://a/b",
            "https://a b",
        ] {
            assert!(bad.parse::<CorsOrigin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://redis",
            "redis://:pw@redis:6380/2",
            "redis://user:pw@[::1]:6379",
        ] {
            let parsed = ok.parse::<RedisUrl>();
            if crate::Feature::Redis.enabled() {
                assert!(parsed.is_ok(), "{ok}");
            } else {
                assert!(parsed.unwrap_err().0.contains("`redis` feature"), "{ok}");
            }
        }
        for bad in [
            "redis://",
            "redis://:pw@",
            "redis://h:0",
            "redis://h:6379/x",
            "rediss://h",
            "http://h",
        ] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad}");
        }
        let url = RedisUrl("redis://:hunter2@redis:6380/2".into());
        assert!(!format!("{url} {url:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&url).unwrap().contains("hunter2"));
        assert_eq!(url.expose(), "redis://:hunter2@redis:6380/2");
    }

    #[test]
    fn urls() {
        let u: HttpUrl = "https://idp.test/jwks.json?token=abc".parse().unwrap();
        assert!(u.is_https());
        assert!(!u.to_string().contains("abc"));
        for bad in ["ftp://x", "idp.test/jwks", "https://", "https:///x"] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad}");
        }
        if crate::Feature::Otlp.enabled() {
            let o: OtlpEndpoint = "http://127.0.0.1:4318/".parse().unwrap();
            assert_eq!(o.traces().to_string(), "http://127.0.0.1:4318/v1/traces");
        }
        for bad in ["https://c:4318", "c:4318", "http://", "http://a b"] {
            assert!(bad.parse::<OtlpEndpoint>().is_err(), "{bad}");
        }
        assert!("users:8080".parse::<HostPort>().is_ok());
        for bad in ["users", "users:0", ":80", "a/b:80", "u@h:80"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }
}
