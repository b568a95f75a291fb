//! Who the client is: the peer address, or, behind trusted proxies, the rightmost untrusted hop of
//! `x-forwarded-for`. A client cannot choose its own address by sending the header.

use http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

/// `trusted_proxies`: CIDRs whose `x-forwarded-for` is believed.
///
/// IPv4-mapped IPv6 CIDRs (`::ffff:10.0.0.0/104`) are kept in their IPv4 form (`10.0.0.0/8`), and
/// addresses are compared in that form too, so a mapped proxy matches whichever way it is written.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `::1`). Config validation refuses invalid entries; one that gets here
    /// anyway (a prefix longer than the address) is left out rather than trusted.
    pub fn new(cidrs: &[String]) -> Self {
        Self(cidrs.iter().filter_map(|c| parse_cidr(c)).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| match (*net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            // A short IPv6 prefix (`::/0`) covers the mapped addresses too.
            (IpAddr::V6(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.to_ipv6_mapped().octets(), *len)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        })
    }

    /// The hops of `x-forwarded-for` we believe, nearest first: walking from the right while the hop
    /// before is a trusted proxy; the last one is the client. Empty when the peer is not trusted. Hops
    /// that are not IP addresses are skipped.
    fn believed(&self, peer: IpAddr, headers: &HeaderMap) -> Vec<IpAddr> {
        let mut chain = Vec::new();
        if !self.contains(peer) {
            return chain;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        for hop in hops.into_iter().rev() {
            let hop = canonical(hop);
            chain.push(hop);
            if !self.contains(hop) {
                break;
            }
        }
        chain
    }

    /// The client's address: walking `x-forwarded-for` from the right while the hop is trusted, the first
    /// untrusted address; the peer itself when it is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        self.believed(peer, headers)
            .last()
            .copied()
            .unwrap_or(canonical(peer))
    }

    /// The `x-forwarded-for` to send downstream: the chain we believe (the client and the trusted
    /// proxies after it, as in [`client_ip`](Self::client_ip)), with the peer appended. Hops to the left
    /// of the client are whatever the client sent and are dropped.
    pub fn forwarded_for(&self, peer: IpAddr, headers: &HeaderMap) -> Option<HeaderValue> {
        use std::fmt::Write;
        let peer = canonical(peer);
        let believed = self.believed(peer, headers);
        let mut chain = String::with_capacity(16 * (believed.len() + 1));
        for hop in believed.iter().rev() {
            let _ = write!(chain, "{hop}, ");
        }
        let _ = write!(chain, "{peer}");
        // From the String without a copy.
        HeaderValue::try_from(chain).ok()
    }
}

/// `addr` or `addr/len`, IPv4-mapped ones in IPv4 form; `None` when the prefix is longer than the address
/// (or shorter than the mapped range, for a mapped one).
fn parse_cidr(c: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = c.split_once('/').map_or((c, None), |(i, l)| (i, Some(l)));
    let ip: IpAddr = ip.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = match len {
        None => max,
        Some(l) => l.trim().parse().ok().filter(|l| *l <= max)?,
    };
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some((IpAddr::V4(v4), len.checked_sub(96)?)),
            None => Some((ip, len)),
        },
        IpAddr::V4(_) => Some((ip, len)),
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the first `len` bits agree; a `len` beyond the address compares the whole address (never
/// reached: [`parse_cidr`] refuses such prefixes).
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
        // The spoofed hop left of the client is not passed on.
        assert_eq!(
            t.forwarded_for(peer, &xff).unwrap(),
            "198.51.100.7, 10.9.9.9, 10.1.2.3"
        );
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_proxies_match_their_ipv4_form_and_never_panic() {
        let t = TrustedProxies::new(&[
            "::ffff:10.0.0.1".into(),
            "::ffff:192.168.0.0/112".into(),
            // Refused by validation; here left out, not trusted.
            "::ffff:172.16.0.0/80".into(),
            "10.0.0.0/33".into(),
            "::1/129".into(),
        ]);
        for (ip, trusted) in [
            ("10.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("10.0.0.2", false),
            ("192.168.7.7", true),
            ("::ffff:192.168.7.7", true),
            ("192.169.0.1", false),
            ("172.16.0.1", false),
            ("::1", false),
        ] {
            assert_eq!(t.contains(ip.parse().unwrap()), trusted, "{ip}");
        }
        let peer: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            t.client_ip(peer, &h("198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.forwarded_for(peer, &h("6.6.6.6, ::ffff:198.51.100.7"))
                .unwrap(),
            "198.51.100.7, 10.0.0.1"
        );
        let all = TrustedProxies::new(&["::/0".into()]);
        assert!(all.contains("10.1.1.1".parse().unwrap()));
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
