//! The circuit breaker of a service: closed -> open when the failure rate over a window reaches the
//! threshold; open fails fast; half-open admits a few probes that decide.

use bff_config::CircuitBreakerConfig;
use std::{sync::Mutex, time::Duration};
use tokio::time::Instant;

/// The breaker's state, as `bff_circuit_state` reports it: 0 closed, 1 open, 2 half-open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// What `admit` granted: a normal call, or one of the half-open probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    Probe,
}

/// Leave to make one call. Record its outcome; a permit dropped unrecorded (the call was cancelled: client
/// gone, deadline, a hedge that lost) gives its half-open probe slot back, so the breaker never waits
/// forever for a probe that will not report.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    admission: Admission,
    recorded: bool,
}

impl Permit<'_> {
    pub(crate) fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.record(self.admission, success);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded
            && self.admission == Admission::Probe
            && let Ok(mut s) = self.breaker.state.lock()
            && let State::HalfOpen { admitted, .. } = &mut *s
        {
            *admitted = admitted.saturating_sub(1);
        }
    }
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    failure_rate: f64,
    min_requests: u64,
    open_for: Duration,
    probes: u32,
    bucket_width: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Closed(Window),
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// Outcomes over the last `window`, in ten buckets.
#[derive(Debug)]
struct Window {
    buckets: [(u64, u64); 10],
    head: usize,
    head_start: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            buckets: [(0, 0); 10],
            head: 0,
            head_start: now,
        }
    }

    fn advance(&mut self, now: Instant, width: Duration) {
        let mut steps = 0;
        while now.saturating_duration_since(self.head_start) >= width && steps < 10 {
            self.head = (self.head + 1) % 10;
            self.buckets[self.head] = (0, 0);
            self.head_start += width;
            steps += 1;
        }
        if steps == 10 {
            self.head_start = now;
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.buckets
            .iter()
            .fold((0, 0), |(s, f), (bs, bf)| (s + bs, f + bf))
    }
}

impl CircuitBreaker {
    pub(crate) fn new(cfg: &CircuitBreakerConfig) -> Self {
        Self {
            failure_rate: cfg.failure_rate,
            min_requests: u64::from(cfg.min_requests.max(1)),
            open_for: cfg.open_for.get(),
            probes: cfg.half_open_probes.max(1),
            bucket_width: (cfg.window.get() / 10).max(Duration::from_millis(1)),
            state: Mutex::new(State::Closed(Window::new(Instant::now()))),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        let Ok(mut s) = self.state.lock() else {
            return BreakerState::Closed;
        };
        if let State::Open { until } = *s
            && Instant::now() >= until
        {
            *s = State::HalfOpen {
                admitted: 0,
                succeeded: 0,
            };
        }
        match *s {
            State::Closed(_) => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// May a call go to the network? `None`: the breaker is open (fail fast).
    pub(crate) fn admit(&self) -> Option<Permit<'_>> {
        let admission = self.admission()?;
        Some(Permit {
            breaker: self,
            admission,
            recorded: false,
        })
    }

    fn admission(&self) -> Option<Admission> {
        let Ok(mut s) = self.state.lock() else {
            return Some(Admission::Normal);
        };
        let now = Instant::now();
        match &mut *s {
            State::Closed(_) => Some(Admission::Normal),
            State::Open { until } if now < *until => None,
            State::Open { .. } => {
                *s = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                Some(Admission::Probe)
            }
            State::HalfOpen { admitted, .. } if *admitted < self.probes => {
                *admitted += 1;
                Some(Admission::Probe)
            }
            State::HalfOpen { .. } => None,
        }
    }

    /// The outcome of an admitted call.
    fn record(&self, admission: Admission, success: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        match &mut *s {
            State::Closed(w) => {
                w.advance(now, self.bucket_width);
                let b = &mut w.buckets[w.head];
                if success {
                    b.0 += 1
                } else {
                    b.1 += 1
                }
                let (ok, failed) = w.totals();
                let total = ok + failed;
                if total >= self.min_requests && failed as f64 >= self.failure_rate * total as f64 {
                    tracing::warn!(failed, total, "circuit breaker opened");
                    *s = State::Open {
                        until: now + self.open_for,
                    };
                }
            }
            State::HalfOpen { succeeded, .. } if admission == Admission::Probe => {
                if !success {
                    *s = State::Open {
                        until: now + self.open_for,
                    };
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.probes {
                        tracing::info!("circuit breaker closed");
                        *s = State::Closed(Window::new(now));
                    }
                }
            }
            // A call admitted before the breaker opened finishes late: it does not decide anything.
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bff_config::Duration as D;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(&CircuitBreakerConfig {
            failure_rate: 0.5,
            min_requests: 4,
            window: D::from_secs(10),
            open_for: D::from_secs(5),
            half_open_probes: 2,
        })
    }

    fn call(b: &CircuitBreaker, success: bool) -> bool {
        match b.admit() {
            Some(p) => {
                p.record(success);
                true
            }
            None => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_failure_rate_with_enough_requests() {
        let b = breaker();
        assert!(call(&b, false));
        assert!(call(&b, false));
        assert!(call(&b, false), "3 requests are fewer than min_requests");
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(call(&b, true));
        assert_eq!(b.state(), BreakerState::Open, "3 of 4 failed >= 50%");
        assert!(b.admit().is_none(), "open fails fast");
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_below_the_rate() {
        let b = breaker();
        for i in 0..20 {
            call(&b, i % 4 != 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = breaker();
        for _ in 0..3 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        call(&b, false);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "only 1 request in the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_close_it_on_success() {
        let b = breaker();
        for _ in 0..4 {
            call(&b, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p1 = b.admit().unwrap();
        let p2 = b.admit().unwrap();
        assert!(b.admit().is_none(), "only half_open_probes are admitted");
        p1.record(true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p2.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(call(&b, true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let b = breaker();
        for _ in 0..4 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let p = b.admit().unwrap();
        p.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(b.admit().is_none(), "open for another open_for");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_gives_its_slot_back() {
        let b = breaker();
        for _ in 0..4 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let p1 = b.admit().unwrap();
        let p2 = b.admit().unwrap();
        assert!(b.admit().is_none());
        drop(p1);
        let p3 = b.admit().expect("the dropped probe's slot is free again");
        p2.record(true);
        p3.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// A breaker from a `[services.s.circuit_breaker]` table of TOML.
    fn configured(table: &str) -> CircuitBreaker {
        let svc = crate::service_config(&format!("[services.s.circuit_breaker]\n{table}"));
        CircuitBreaker::new(svc.circuit_breaker.as_ref().unwrap())
    }

    /// `failure_rate = 0.25`: one failure in four opens it (the default 0.5 would keep it closed).
    #[tokio::test(start_paused = true)]
    async fn the_configured_failure_rate_opens_it() {
        let b = configured("failure_rate = 0.25\nmin_requests = 4");
        assert!(call(&b, false));
        for _ in 0..2 {
            assert!(call(&b, true));
        }
        assert_eq!(b.state(), BreakerState::Closed, "3 requests < min_requests");
        assert!(call(&b, true));
        assert_eq!(b.state(), BreakerState::Open, "1 of 4 failed >= 25%");
    }

    /// `window = "2s"`: failures 3 s old no longer count (inside the default 10 s window they would open
    /// it).
    #[tokio::test(start_paused = true)]
    async fn failures_leave_the_configured_window() {
        let b = configured("window = \"2s\"\nmin_requests = 4");
        for _ in 0..3 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Closed, "1 request in 2 s");
        for _ in 0..3 {
            call(&b, false);
        }
        assert_eq!(b.state(), BreakerState::Open, "4 failures in 2 s");
    }

    /// `open_for = "1s"`: half-open after one second, not the default five.
    #[tokio::test(start_paused = true)]
    async fn it_stays_open_for_the_configured_time() {
        let b = configured("min_requests = 1\nopen_for = \"1s\"");
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
}
