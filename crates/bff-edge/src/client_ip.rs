//! Who the client is: the peer address, or, behind trusted proxies, the rightmost untrusted hop of
//! `x-forwarded-for`. A client cannot choose its own address by sending the header.

use http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

/// `trusted_proxies`: CIDRs whose `x-forwarded-for` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `::1`); invalid entries were refused by config validation.
    pub fn new(cidrs: &[String]) -> Self {
        Self(
            cidrs
                .iter()
                .filter_map(|c| {
                    let (ip, len) = c
                        .split_once('/')
                        .map_or((c.as_str(), None), |(i, l)| (i, Some(l)));
                    let ip: IpAddr = ip.parse().ok()?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    let len = len.map_or(Some(max), |l| l.parse().ok())?;
                    Some((ip, len))
                })
                .collect(),
        )
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| match (canonical(*net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            _ => false,
        })
    }

    /// The client's address: walking `x-forwarded-for` from the right while the hop is trusted, the first
    /// untrusted address; the peer itself when it is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            client = *hop;
            if !self.contains(*hop) {
                break;
            }
        }
        client
    }

    /// The `x-forwarded-for` to send downstream: the chain we believe, with the peer appended.
    pub fn forwarded_for(&self, peer: IpAddr, headers: &HeaderMap) -> Option<HeaderValue> {
        let peer = canonical(peer);
        let mut prior = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        let value = if self.contains(peer) && prior.peek().is_some() {
            let mut chain = String::with_capacity(64);
            for p in prior {
                chain.push_str(p);
                chain.push_str(", ");
            }
            use std::fmt::Write;
            let _ = write!(chain, "{peer}");
            chain
        } else {
            peer.to_string()
        };
        // From the String without a copy.
        HeaderValue::try_from(value).ok()
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(net: &[u8], addr: &[u8], len: u8) -> bool {
    let full = (len / 8) as usize;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        m
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into()]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.client_ip(peer, &h("1.2.3.4")), peer);
        assert_eq!(t.forwarded_for(peer, &h("1.2.3.4")).unwrap(), "203.0.113.9");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into(), "::1".into()]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        // spoofed, real client, inner proxy
        let xff = h("6.6.6.6, 198.51.100.7, 10.9.9.9");
        assert_eq!(
            t.client_ip(peer, &xff),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.forwarded_for(peer, &xff).unwrap(),
            "6.6.6.6, 198.51.100.7, 10.9.9.9, 10.1.2.3"
        );
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn prefixes_match_bitwise() {
        let t = TrustedProxies::new(&["192.168.4.0/22".into()]);
        assert!(t.contains("192.168.7.255".parse().unwrap()));
        assert!(!t.contains("192.168.8.0".parse().unwrap()));
    }
}

/// The client's address as the edge decided it, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);
