//! Hedging: when an attempt is slow, a second one goes to another endpoint and the first good answer wins.

use crate::retry::RetryBudget;
use bff_config::HedgeAfter;
use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

#[derive(Debug)]
pub(crate) struct Hedge {
    after: HedgeAfter,
    latencies: LatencyHistogram,
    /// Hedges are paid from the retry budget; a service without retries gets a budget of its own.
    pub(crate) own_budget: RetryBudget,
}

impl Hedge {
    pub(crate) fn new(after: HedgeAfter) -> Self {
        Self {
            after,
            latencies: LatencyHistogram::default(),
            own_budget: RetryBudget::new(Duration::from_secs(10), 10, 0.2),
        }
    }

    /// How long to wait before hedging; `None` while too few latencies are known for a quantile.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.after {
            HedgeAfter::Fixed(d) => Some(d),
            HedgeAfter::Percentile(p) => self.latencies.quantile(p / 100.0),
        }
    }

    pub(crate) fn observe(&self, latency: Duration) {
        self.latencies.observe(latency);
    }
}

const BUCKETS: usize = 128;
/// Observations kept before the counts are halved, so the histogram follows recent latencies.
const HALVE_AT: u32 = 4096;

/// Latencies in log-spaced buckets (4 a power of two, from 1 us), lock-free.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU32; BUCKETS],
    total: AtomicU32,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            total: AtomicU32::new(0),
        }
    }
}

impl LatencyHistogram {
    fn index(d: Duration) -> usize {
        let us = d.as_micros().max(1) as f64;
        ((us.log2() * 4.0) as usize).min(BUCKETS - 1)
    }

    fn upper_bound(i: usize) -> Duration {
        Duration::from_micros(2f64.powf((i + 1) as f64 / 4.0).ceil() as u64)
    }

    pub(crate) fn observe(&self, d: Duration) {
        self.buckets[Self::index(d)].fetch_add(1, Ordering::Relaxed);
        if self.total.fetch_add(1, Ordering::Relaxed) + 1 >= HALVE_AT {
            for b in &self.buckets {
                b.store(b.load(Ordering::Relaxed) / 2, Ordering::Relaxed);
            }
            self.total.store(HALVE_AT / 2, Ordering::Relaxed);
        }
    }

    /// The latency below which `q` of the observations fall (the upper bound of its bucket).
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u32> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().map(|c| u64::from(*c)).sum();
        if total < 20 {
            return None;
        }
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0u64;
        for (i, c) in counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= target {
                return Some(Self::upper_bound(i));
            }
        }
        Some(Self::upper_bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_the_observations() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.95), None, "too few observations");
        for _ in 0..90 {
            h.observe(Duration::from_millis(1));
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(100));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!(
            p50 >= Duration::from_millis(1) && p50 < Duration::from_micros(1300),
            "{p50:?}"
        );
        assert!(
            p95 >= Duration::from_millis(100) && p95 < Duration::from_millis(125),
            "{p95:?}"
        );
    }

    #[test]
    fn old_observations_fade() {
        let h = LatencyHistogram::default();
        for _ in 0..HALVE_AT {
            h.observe(Duration::from_millis(100));
        }
        for _ in 0..HALVE_AT * 4 {
            h.observe(Duration::from_millis(1));
        }
        assert!(h.quantile(0.95).unwrap() < Duration::from_millis(2));
    }
}
