//! Load balancers over a service's available endpoints (healthy, not ejected).

use crate::endpoint::EndpointSet;
use bff_config::LoadBalancer;
use std::{
    hash::{Hash, Hasher},
    sync::atomic::{AtomicUsize, Ordering},
};
use tokio::time::Instant;

/// Virtual nodes per endpoint on the hash ring.
const RING_REPLICAS: usize = 160;

#[derive(Debug)]
pub(crate) enum Balancer {
    RoundRobin(AtomicUsize),
    /// Power of two choices on requests in flight (Envoy's least_request).
    LeastRequest,
    /// Power of two choices on peak-EWMA latency x requests in flight (linkerd, Finagle).
    P2cEwma,
    /// Consistent hashing (ketama-style ring): a key sticks to an endpoint; removing one of N endpoints moves
    /// about 1/N of the keys.
    RingHash,
}

pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    // SipHash with fixed keys: stable within a build, spread well.
    let mut h = std::hash::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

impl Balancer {
    pub(crate) fn new(kind: LoadBalancer) -> Self {
        match kind {
            LoadBalancer::RoundRobin => Self::RoundRobin(AtomicUsize::new(0)),
            LoadBalancer::LeastRequest => Self::LeastRequest,
            LoadBalancer::P2cEwma => Self::P2cEwma,
            LoadBalancer::RingHash => Self::RingHash,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin(_) => "round_robin",
            Self::LeastRequest => "least_request",
            Self::P2cEwma => "p2c_ewma",
            Self::RingHash => "ring_hash",
        }
    }

    /// Picks an endpoint among the available ones, avoiding `exclude` (those already tried) when another is
    /// available. `key` is the hash key for `ring_hash`.
    pub(crate) fn pick(
        &self,
        set: &EndpointSet,
        exclude: &[usize],
        key: Option<u64>,
    ) -> Option<usize> {
        let endpoints = &set.list;
        let now = Instant::now();
        let ok = |i: usize| endpoints[i].is_available(now);
        let fresh = |i: usize| ok(i) && !exclude.contains(&i);
        let n = endpoints.len();
        let any_fresh = (0..n).any(fresh);
        let eligible = |i: usize| if any_fresh { fresh(i) } else { ok(i) };
        match self {
            Self::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            Self::LeastRequest => p2c(n, eligible, |i| {
                endpoints[i].in_flight.load(Ordering::Relaxed) as f64
            }),
            Self::P2cEwma => p2c(n, eligible, |i| endpoints[i].cost(now)),
            Self::RingHash => {
                let ring = &set.ring;
                let Some(key) = key else {
                    return p2c(n, eligible, |i| endpoints[i].cost(now));
                };
                if ring.is_empty() {
                    return None;
                }
                let start = ring.partition_point(|(h, _)| *h < key);
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()].1)
                    .find(|&i| eligible(i))
            }
        }
    }
}

/// Two distinct random candidates; the one of lower cost wins.
fn p2c(n: usize, eligible: impl Fn(usize) -> bool, cost: impl Fn(usize) -> f64) -> Option<usize> {
    // Without collecting: count the eligible, draw two distinct ranks, find them.
    let len = (0..n).filter(|&i| eligible(i)).count();
    let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k);
    match len {
        0 => None,
        1 => nth(0),
        len => {
            let a = fastrand::usize(..len);
            let mut b = fastrand::usize(..len - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth(a)?, nth(b)?);
            Some(if cost(b) < cost(a) { b } else { a })
        }
    }
}

/// The hash ring: `RING_REPLICAS` points per endpoint, sorted.
pub(crate) fn ring<'a>(addrs: impl Iterator<Item = &'a str>) -> Vec<(u64, usize)> {
    let mut ring = Vec::new();
    for (i, addr) in addrs.enumerate() {
        for r in 0..RING_REPLICAS {
            ring.push((hash_bytes(format!("{addr}#{r}").as_bytes()), i));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> EndpointSet {
        let addrs: Vec<bff_config::HostPort> = (0..n)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        EndpointSet::build(&addrs, None)
    }

    #[tokio::test]
    async fn round_robin_cycles_and_skips_unavailable() {
        let e = eps(3);
        let b = Balancer::new(LoadBalancer::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| b.pick(&e, &[], None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        e.list[1].healthy.store(false, Ordering::Relaxed);
        assert!((0..10).all(|_| b.pick(&e, &[], None) != Some(1)));
        for x in &e.list {
            x.healthy.store(false, Ordering::Relaxed);
        }
        assert_eq!(b.pick(&e, &[], None), None);
    }

    #[tokio::test]
    async fn a_retry_avoids_the_endpoint_already_tried() {
        let e = eps(2);
        let b = Balancer::new(LoadBalancer::P2cEwma);
        assert!((0..50).all(|_| b.pick(&e, &[0], None) == Some(1)));
        // With nothing else available, the tried one is used again.
        e.list[1].healthy.store(false, Ordering::Relaxed);
        assert_eq!(b.pick(&e, &[0], None), Some(0));
    }

    #[tokio::test]
    async fn least_request_prefers_the_idle_endpoint() {
        let e = eps(2);
        e.list[0].in_flight.store(5, Ordering::Relaxed);
        let b = Balancer::new(LoadBalancer::LeastRequest);
        assert!((0..50).all(|_| b.pick(&e, &[], None) == Some(1)));
    }

    #[test]
    fn ring_hash_keeps_keys_and_moves_about_one_in_n() {
        let addrs: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:80")).collect();
        let owner = |ring: &[(u64, usize)], names: &[&String], key: u64| {
            let i = ring.partition_point(|(h, _)| *h < key) % ring.len();
            names[ring[i].1].clone()
        };
        let all: Vec<&String> = addrs.iter().collect();
        let full = ring(all.iter().map(|s| s.as_str()));
        let fewer: Vec<&String> = addrs.iter().take(4).collect();
        let reduced = ring(fewer.iter().map(|s| s.as_str()));
        let keys: Vec<u64> = (0..10_000)
            .map(|k| hash_bytes(format!("user-{k}").as_bytes()))
            .collect();
        let mut moved = 0;
        for &k in &keys {
            let before = owner(&full, &all, k);
            assert_eq!(before, owner(&full, &all, k), "a key stays on one endpoint");
            if before != owner(&reduced, &fewer, k) {
                moved += 1;
            }
        }
        // Only the removed endpoint's keys (about 1/5) move.
        let share = moved as f64 / keys.len() as f64;
        assert!((0.12..0.28).contains(&share), "moved {share}");
    }
}
