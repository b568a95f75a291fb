//! One address of a service and what the mesh knows of it: load (in flight, peak EWMA latency), active
//! health, and outlier ejection.

use crate::ServiceError;
use bff_config::{HostPort, OutlierDetectionConfig};
use http::uri::Authority;
use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// The endpoints of a service at one moment. Discovery replaces the whole set; endpoints that remain are
/// the same `Arc`s, with their load, latency, health and ejection state.
#[derive(Debug, Default)]
pub(crate) struct EndpointSet {
    pub(crate) list: Vec<Arc<Endpoint>>,
    /// The `ring_hash` ring over `list`.
    pub(crate) ring: Vec<(u64, usize)>,
}

impl EndpointSet {
    /// A set of `addrs` (parsed: the config's, or discovered ones that [`HostPort`]'s parser accepted),
    /// reusing the endpoints of `previous` with the same address.
    pub(crate) fn build(addrs: &[HostPort], previous: Option<&EndpointSet>) -> Self {
        let mut list = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let addr_str = addr.as_str();
            if list.iter().any(|e: &Arc<Endpoint>| &*e.addr == addr_str) {
                continue;
            }
            let kept = previous
                .and_then(|p| p.list.iter().find(|e| &*e.addr == addr_str))
                .cloned();
            list.push(
                kept.unwrap_or_else(|| Arc::new(Endpoint::new(addr_str, addr.authority().clone()))),
            );
        }
        let ring = crate::balancer::ring(list.iter().map(|e| &*e.addr));
        Self { list, ring }
    }
}

/// A service's endpoints now, shared by the service (its calls read them) and its discovery (which
/// replaces them): discovery holds this, never the service, so that dropping the service ends it.
#[derive(Debug)]
pub(crate) struct Endpoints {
    service: Arc<str>,
    current: RwLock<Arc<EndpointSet>>,
    metrics: Arc<bff_telemetry::ServiceMetrics>,
}

impl Endpoints {
    pub(crate) fn new(
        service: Arc<str>,
        set: EndpointSet,
        metrics: Arc<bff_telemetry::ServiceMetrics>,
    ) -> Self {
        Self {
            service,
            current: RwLock::new(Arc::new(set)),
            metrics,
        }
    }

    /// A discovery attempt failed: counted in `bff_discovery_failures_total`.
    pub(crate) fn discovery_failed(&self) {
        self.metrics
            .discovery_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The service's name (discovery's log lines).
    pub(crate) fn name(&self) -> &str {
        &self.service
    }

    /// The endpoints now (a snapshot: a call keeps the set it started with).
    pub(crate) fn current(&self) -> Arc<EndpointSet> {
        self.current.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Replaces the endpoints. Endpoints that remain keep their state and connections; calls in flight to
    /// a removed one finish. Addresses are parsed by the config's own parser ([`HostPort`]).
    pub(crate) fn set_endpoints(&self, addrs: &[String]) -> Result<(), ServiceError> {
        let current = self.current();
        let parsed = addrs
            .iter()
            .map(|a| {
                a.parse::<HostPort>().map_err(|e| ServiceError::Endpoint {
                    addr: a.clone(),
                    source: e,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = EndpointSet::build(&parsed, Some(&current));
        if next.list.len() != current.list.len()
            || next
                .list
                .iter()
                .zip(&current.list)
                .any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            tracing::info!(service = %self.service, endpoints = ?addrs, "endpoints changed");
            if let Ok(mut e) = self.current.write() {
                *e = Arc::new(next);
            }
        }
        Ok(())
    }
}

/// The latency assumed of an endpoint before it has answered (as linkerd's default RTT).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast the EWMA forgets: the weight of an observation after `DECAY` is 1/e.
const DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: Arc<str>,
    pub(crate) authority: Authority,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ewma: Mutex<PeakEwma>,
    /// Set by active health checks; true until a check says otherwise.
    pub(crate) healthy: AtomicBool,
    /// Consecutive probe results: passes (positive) or failures (negative).
    probes: std::sync::atomic::AtomicI32,
    pub(crate) outlier: Mutex<Outlier>,
    /// Set on the first ejection, so that endpoints never ejected are checked without a lock.
    ever_ejected: AtomicBool,
    /// Set by the first passing health probe or call: until then nobody knows whether anything listens
    /// there (readiness and the admin page say so).
    reached: AtomicBool,
}

impl Endpoint {
    pub(crate) fn new(addr: &str, authority: Authority) -> Self {
        Self {
            addr: addr.into(),
            authority,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ewma: Mutex::new(PeakEwma::new(Instant::now())),
            healthy: AtomicBool::new(true),
            probes: std::sync::atomic::AtomicI32::new(0),
            outlier: Mutex::new(Outlier::default()),
            ever_ejected: AtomicBool::new(false),
            reached: AtomicBool::new(false),
        }
    }

    /// A health probe's result: `unhealthy_threshold` failures in a row take the endpoint out,
    /// `healthy_threshold` passes bring it back.
    pub(crate) fn health_result(
        &self,
        ok: bool,
        cfg: &bff_config::HealthCheckConfig,
        service: &str,
    ) {
        let run = if ok {
            self.probes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.max(0) + 1))
                .unwrap_or(0)
                .max(0)
                + 1
        } else {
            self.probes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.min(0) - 1))
                .unwrap_or(0)
                .min(0)
                - 1
        };
        if ok {
            self.mark_reached();
        }
        let healthy = self.healthy.load(Ordering::Relaxed);
        if healthy && -run >= cfg.unhealthy_threshold.max(1) as i32 {
            tracing::warn!(%service, endpoint = %self.addr, "endpoint unhealthy");
            self.healthy.store(false, Ordering::Relaxed);
        } else if !healthy && run >= cfg.healthy_threshold.max(1) as i32 {
            tracing::info!(%service, endpoint = %self.addr, "endpoint healthy again");
            self.healthy.store(true, Ordering::Relaxed);
        }
    }

    /// A probe passed or a call succeeded. One relaxed load on the call path once it is set.
    #[inline]
    pub(crate) fn mark_reached(&self) {
        if !self.reached.load(Ordering::Relaxed) {
            self.reached.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a probe ever passed or a call ever succeeded here.
    pub(crate) fn was_reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        // The common case, never ejected, takes no lock.
        if !self.ever_ejected.load(Ordering::Relaxed) {
            return false;
        }
        self.outlier
            .lock()
            .map(|o| o.ejected_until.is_some_and(|u| u > now))
            .unwrap_or(false)
    }

    /// Healthy and not ejected: may receive traffic.
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected(now)
    }

    /// Peak-EWMA latency weighted by the requests in flight: what p2c compares.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let rtt = self.ewma.lock().map(|e| e.estimate(now)).unwrap_or(0.0);
        rtt * (self.in_flight.load(Ordering::Relaxed) + 1) as f64
    }

    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        if let Ok(mut e) = self.ewma.lock() {
            e.observe(rtt, now);
        }
    }

    pub(crate) fn ewma_ms(&self, now: Instant) -> f64 {
        self.ewma
            .lock()
            .map(|e| e.estimate(now) / 1e6)
            .unwrap_or(0.0)
    }
}

/// Peak EWMA of the round-trip time (linkerd2-proxy, Finagle): a slower observation replaces the estimate
/// at once; faster ones pull it down with a weight that grows with the time since the last one; an idle
/// endpoint's estimate decays so that it gets probed again.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    rtt_ns: f64,
    stamp: Instant,
}

impl PeakEwma {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            rtt_ns: DEFAULT_RTT.as_nanos() as f64,
            stamp: now,
        }
    }

    fn decay(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        (-elapsed / DECAY.as_nanos() as f64).exp()
    }

    pub(crate) fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.rtt_ns {
            self.rtt_ns = rtt;
        } else {
            let w = self.decay(now);
            self.rtt_ns = self.rtt_ns * w + rtt * (1.0 - w);
        }
        self.stamp = now;
    }

    /// The estimate now, decayed by the time since the last observation.
    pub(crate) fn estimate(&self, now: Instant) -> f64 {
        self.rtt_ns * self.decay(now)
    }
}

/// Consecutive failures and ejections of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Outlier {
    consecutive: u32,
    times_ejected: u32,
    pub(crate) ejected_until: Option<Instant>,
}

/// Outlier detection of a service (`[services.NAME.outlier_detection]`).
#[derive(Debug)]
pub(crate) struct OutlierPolicy {
    consecutive_failures: u32,
    base_ejection: Duration,
    max_ejected_percent: u32,
}

impl OutlierPolicy {
    pub(crate) fn new(cfg: &OutlierDetectionConfig) -> Self {
        Self {
            consecutive_failures: cfg.consecutive_failures.max(1),
            base_ejection: cfg.base_ejection.get(),
            max_ejected_percent: cfg.max_ejected_percent.min(100),
        }
    }

    /// Records an attempt's outcome on `endpoints[i]`; ejects it after enough consecutive failures, for
    /// `base_ejection` x times ejected (at most 10x), unless that would eject more than
    /// `max_ejected_percent` of the endpoints or the last available one.
    pub(crate) fn record(&self, endpoints: &[Arc<Endpoint>], i: usize, failed: bool, now: Instant) {
        let ep = &endpoints[i];
        let trip = {
            let Ok(mut o) = ep.outlier.lock() else { return };
            if !failed {
                o.consecutive = 0;
                return;
            }
            o.consecutive += 1;
            o.consecutive >= self.consecutive_failures && o.ejected_until.is_none_or(|u| u <= now)
        };
        if !trip {
            return;
        }
        let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
        let available = endpoints.iter().filter(|e| e.is_available(now)).count();
        let allowed = (ejected + 1) * 100 <= self.max_ejected_percent as usize * endpoints.len();
        if !allowed || available <= 1 {
            return;
        }
        if let Ok(mut o) = ep.outlier.lock() {
            o.times_ejected += 1;
            let factor = o.times_ejected.min(10);
            o.ejected_until = Some(now + self.base_ejection * factor);
            ep.ever_ejected.store(true, Ordering::Relaxed);
            o.consecutive = 0;
            tracing::warn!(endpoint = %ep.addr, for_ = ?self.base_ejection * factor, "endpoint ejected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> Vec<Arc<Endpoint>> {
        let addrs: Vec<HostPort> = (0..n)
            .map(|i| format!("127.0.0.1:{}", 9000 + i).parse().unwrap())
            .collect();
        EndpointSet::build(&addrs, None).list
    }

    fn policy(pct: u32) -> OutlierPolicy {
        OutlierPolicy::new(&OutlierDetectionConfig {
            consecutive_failures: 3,
            base_ejection: bff_config::Duration::from_secs(30),
            max_ejected_percent: pct,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn ejects_after_consecutive_failures_and_returns() {
        let e = eps(3);
        let p = policy(50);
        let now = Instant::now();
        p.record(&e, 0, true, now);
        p.record(&e, 0, true, now);
        p.record(&e, 0, false, now);
        p.record(&e, 0, true, now);
        p.record(&e, 0, true, now);
        assert!(!e[0].is_ejected(now), "a success resets the count");
        p.record(&e, 0, true, now);
        assert!(e[0].is_ejected(now));
        tokio::time::advance(Duration::from_secs(30)).await;
        let later = Instant::now();
        assert!(!e[0].is_ejected(later), "back after base_ejection");
        // The second ejection lasts twice as long.
        for _ in 0..3 {
            p.record(&e, 0, true, later);
        }
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(e[0].is_ejected(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!e[0].is_ejected(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_percent_nor_the_last_endpoint() {
        let e = eps(3);
        let p = policy(50);
        let now = Instant::now();
        for i in 0..3 {
            for _ in 0..3 {
                p.record(&e, i, true, now);
            }
        }
        let ejected = e.iter().filter(|x| x.is_ejected(now)).count();
        assert_eq!(ejected, 1, "50% of 3 allows one");

        let e = eps(2);
        let p = policy(100);
        for i in 0..2 {
            for _ in 0..3 {
                p.record(&e, i, true, now);
            }
        }
        assert_eq!(
            e.iter().filter(|x| x.is_ejected(now)).count(),
            1,
            "never the last one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_takes_peaks_at_once_and_decays() {
        let start = Instant::now();
        let mut e = PeakEwma::new(start);
        e.observe(Duration::from_millis(100), start);
        assert!(
            (e.estimate(start) - 100e6).abs() < 1.0,
            "a peak replaces the estimate"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        let decayed = e.estimate(now);
        assert!(
            (decayed - 100e6 / std::f64::consts::E).abs() < 1e3,
            "idle decay after DECAY: {decayed}"
        );
        e.observe(Duration::from_millis(10), now);
        let est = e.estimate(now);
        assert!(
            est < 100e6 && est > 10e6,
            "a faster observation pulls it down: {est}"
        );
    }

    fn configured(service_extra: &str) -> bff_config::ServiceConfig {
        crate::service_config(service_extra)
    }

    /// `base_ejection = "2s"`: back after two seconds (the default is 30), four after a second ejection.
    #[tokio::test(start_paused = true)]
    async fn an_ejection_lasts_the_configured_base_ejection() {
        let svc = configured(
            "[services.s.outlier_detection]\nconsecutive_failures = 1\nbase_ejection = \"2s\"",
        );
        let p = OutlierPolicy::new(svc.outlier_detection.as_ref().unwrap());
        let e = eps(3);
        p.record(&e, 0, true, Instant::now());
        assert!(e[0].is_ejected(Instant::now()));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(e[0].is_ejected(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!e[0].is_ejected(Instant::now()), "back after 2 s");
        p.record(&e, 0, true, Instant::now());
        tokio::time::advance(Duration::from_millis(3999)).await;
        assert!(
            e[0].is_ejected(Instant::now()),
            "the second one lasts 2 x 2 s"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!e[0].is_ejected(Instant::now()));
    }

    /// `max_ejected_percent = 75`: three of four endpoints may be out at once (the default 50 allows
    /// two).
    #[tokio::test(start_paused = true)]
    async fn the_configured_max_ejected_percent_bounds_ejections() {
        let svc = configured(
            "[services.s.outlier_detection]\nconsecutive_failures = 1\nmax_ejected_percent = 75",
        );
        let p = OutlierPolicy::new(svc.outlier_detection.as_ref().unwrap());
        let e = eps(4);
        let now = Instant::now();
        for i in 0..4 {
            p.record(&e, i, true, now);
        }
        assert_eq!(e.iter().filter(|x| x.is_ejected(now)).count(), 3);
    }

    /// `unhealthy_threshold = 4`, `healthy_threshold = 3` (defaults 3 and 2): the fourth failed probe in
    /// a row takes the endpoint out, the third passed one brings it back.
    #[test]
    fn health_thresholds_come_from_the_config() {
        let svc =
            configured("[services.s.health_check]\nunhealthy_threshold = 4\nhealthy_threshold = 3");
        let cfg = svc.health_check.as_ref().unwrap();
        let e = &eps(1)[0];
        let healthy = || e.healthy.load(Ordering::Relaxed);
        for _ in 0..3 {
            e.health_result(false, cfg, "s");
        }
        assert!(healthy(), "three failures are fewer than 4");
        e.health_result(false, cfg, "s");
        assert!(!healthy());
        for _ in 0..2 {
            e.health_result(true, cfg, "s");
        }
        assert!(!healthy(), "two passes are fewer than 3");
        e.health_result(true, cfg, "s");
        assert!(healthy());
    }
}
