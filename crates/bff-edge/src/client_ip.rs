//! Who the client is: the peer address, or, behind trusted proxies, the rightmost untrusted hop of
//! `x-forwarded-for`. A client cannot choose its own address by sending the header.

use bff_config::{Cidr, canonical_ip as canonical};
use http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

/// `trusted_proxies`: CIDRs whose `x-forwarded-for` is believed.
///
/// The config's [`Cidr`]s, parsed once at load: IPv4-mapped IPv6 CIDRs (`::ffff:10.0.0.0/104`) are kept
/// in their IPv4 form (`10.0.0.0/8`), and addresses are compared in that form too, so a mapped proxy
/// matches whichever way it is written, and matching cannot fail.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(cidrs: &[Cidr]) -> Self {
        Self(cidrs.to_vec())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(cidrs: &[&str]) -> TrustedProxies {
        let cidrs: Vec<Cidr> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        TrustedProxies::new(&cidrs)
    }

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        m
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.client_ip(peer, &h("1.2.3.4")), peer);
        assert_eq!(t.forwarded_for(peer, &h("1.2.3.4")).unwrap(), "203.0.113.9");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "::1"]);
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
        let t = trusted(&["::ffff:10.0.0.1", "::ffff:192.168.0.0/112"]);
        // Refused by the config's parser: they cannot reach the matcher.
        for bad in ["::ffff:172.16.0.0/80", "10.0.0.0/33", "::1/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        for (ip, trusted) in [
            ("10.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("10.0.0.2", false),
            ("192.168.7.7", true),
            ("::ffff:192.168.7.7", true),
            ("192.169.0.1", false),
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
        let all = trusted(&["::/0"]);
        assert!(all.contains("10.1.1.1".parse().unwrap()));
    }

    #[test]
    fn prefixes_match_bitwise() {
        let t = trusted(&["192.168.4.0/22"]);
        assert!(t.contains("192.168.7.255".parse().unwrap()));
        assert!(!t.contains("192.168.8.0".parse().unwrap()));
    }
}

/// The client's address as the edge decided it, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);
