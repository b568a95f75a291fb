//! Retries: which failures, how long to wait, and a budget that keeps retries a bounded share of traffic.

use crate::ErrorKind;
use bff_config::{RetryConfig, RetryOn};
use http::Method;
use std::{
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// Requests with a larger body are never retried (the body would have to be kept for every attempt).
pub(crate) const MAX_RETRY_BODY: usize = 64 * 1024;

/// The one idempotency rule: whether a call may be sent more than once, retried or hedged. Its body must
/// be small enough to keep for another attempt, and its method one the retry policy lists (`methods`) or,
/// without a list (or a policy), an idempotent one.
pub(crate) fn may_repeat(policy: Option<&RetryPolicy>, method: &Method, body_len: usize) -> bool {
    body_len <= MAX_RETRY_BODY
        && match policy.and_then(|p| p.methods.as_ref()) {
            Some(listed) => listed.contains(method),
            None => is_idempotent(method),
        }
}

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 section 9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A service's retry policy, compiled from `[services.NAME.retry]`.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) max_attempts: u32,
    on_connect: bool,
    on_reset: bool,
    on_timeout: bool,
    on_status: Vec<u16>,
    backoff: Duration,
    max_backoff: Duration,
    methods: Option<Vec<Method>>,
    pub(crate) budget: RetryBudget,
}

impl RetryPolicy {
    pub(crate) fn new(cfg: &RetryConfig) -> Self {
        let has = |on: RetryOn| cfg.on.contains(&on);
        Self {
            max_attempts: cfg.max_attempts.max(1),
            on_connect: has(RetryOn::ConnectError),
            on_reset: has(RetryOn::Reset),
            on_timeout: has(RetryOn::Timeout),
            on_status: cfg
                .on
                .iter()
                .filter_map(|on| match on {
                    RetryOn::Status(code) => Some(*code),
                    _ => None,
                })
                .collect(),
            backoff: cfg.backoff.get(),
            max_backoff: cfg.max_backoff.get(),
            methods: cfg
                .methods
                .as_ref()
                .map(|ms| ms.iter().map(|m| m.method().clone()).collect()),
            budget: RetryBudget::new(
                Duration::from_secs(10),
                cfg.min_per_second,
                cfg.budget_ratio,
            ),
        }
    }

    /// Whether a request may be retried at all: idempotent methods (or those `methods` lists), small bodies.
    #[cfg(test)]
    fn allows(&self, method: &Method, body_len: usize) -> bool {
        may_repeat(Some(self), method, body_len)
    }

    /// Whether the policy retries an attempt that failed with `kind`: one that
    /// [`ErrorKind::is_retryable`] says may succeed on another attempt, and that `on` lists.
    pub(crate) fn retries_error(&self, kind: ErrorKind) -> bool {
        kind.is_retryable()
            && match kind {
                ErrorKind::Connect => self.on_connect,
                ErrorKind::Reset => self.on_reset,
                ErrorKind::Timeout => self.on_timeout,
                _ => false,
            }
    }

    /// Whether a response with this status is retried (`on` may list 4xx such as 429 too).
    pub(crate) fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }

    /// Exponential backoff with full jitter: uniform in `[0, min(max_backoff, backoff * 2^(retry-1))]`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self.backoff.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_backoff);
        cap.mul_f64(fastrand::f64())
    }
}

/// A retry budget with Finagle's and linkerd's semantics (as `tower::retry::budget::TpsBudget`): every
/// request deposits, every retry withdraws, deposits expire after `ttl`, and `min_per_second` retries are
/// always allowed. With `ratio = 0.2`, retries stay within 20% of requests (plus the minimum).
///
/// Kept rather than `TpsBudget` itself, not for speed (a deposit 97 ns against 92 ns, a deposit and a
/// withdrawal 170 against 211 ns: `cargo bench -p bff-mesh --bench retry_budget`): `TpsBudget` reads
/// `std::time::Instant`, so its expiry cannot be tested on paused tokio time; it shows no balance (the
/// admin API's `retry_budget_remaining`); and it rounds the inverse of the ratio to an integer (0.3 would
/// allow 33%, 0.4 50%). docs/performance.md, "Hand-written or a crate: the decisions".
#[derive(Debug)]
pub struct RetryBudget {
    generation: Mutex<(usize, Instant)>,
    /// When the current slot began, in nanoseconds since `base` (the lock-free fast path of `expire`).
    base: Instant,
    generation_ns: AtomicU64,
    slots: Box<[AtomicI64]>,
    current: AtomicI64,
    slot_width: Duration,
    reserve: i64,
    deposit: i64,
    withdraw: i64,
}

impl RetryBudget {
    pub fn new(ttl: Duration, min_per_second: u32, ratio: f64) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        // Integer accounting: a request deposits 1000, a retry withdraws 1000 / ratio.
        let (deposit, withdraw) = if ratio <= 0.0 {
            (0, 1)
        } else {
            (1000, (1000.0 / ratio) as i64)
        };
        let reserve = i64::from(min_per_second)
            .saturating_mul(ttl.as_secs() as i64)
            .saturating_mul(withdraw);
        Self {
            generation: Mutex::new((0, Instant::now())),
            base: Instant::now(),
            generation_ns: AtomicU64::new(0),
            slots: (0..10).map(|_| AtomicI64::new(0)).collect(),
            current: AtomicI64::new(0),
            slot_width: ttl / 10,
            reserve,
            deposit,
            withdraw,
        }
    }

    /// Moves the window forward: deposits older than the ttl expire.
    fn expire(&self) {
        // Within the current slot (nearly always) nothing expires: checked without the lock.
        let now = Instant::now();
        let since = now.saturating_duration_since(self.base).as_nanos() as u64;
        if since.saturating_sub(self.generation_ns.load(Ordering::Relaxed))
            < self.slot_width.as_nanos() as u64
        {
            return;
        }
        let Ok(mut slot) = self.generation.lock() else {
            return;
        };
        let mut elapsed = now.saturating_duration_since(slot.1);
        if elapsed < self.slot_width {
            return;
        }
        let committed = self.current.swap(0, Ordering::SeqCst);
        self.slots[slot.0].store(committed, Ordering::SeqCst);
        let mut idx = (slot.0 + 1) % self.slots.len();
        while elapsed > self.slot_width {
            self.slots[idx].store(0, Ordering::SeqCst);
            elapsed -= self.slot_width;
            idx = (idx + 1) % self.slots.len();
        }
        *slot = (idx, now);
        self.generation_ns.store(since, Ordering::Relaxed);
    }

    fn sum(&self) -> i64 {
        let windowed: i64 = self.slots.iter().map(|s| s.load(Ordering::SeqCst)).sum();
        self.current.load(Ordering::SeqCst) + windowed + self.reserve
    }

    /// A request was made.
    pub fn deposit(&self) {
        self.expire();
        self.current.fetch_add(self.deposit, Ordering::SeqCst);
    }

    /// Asks for one retry; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.expire();
        if self.sum() >= self.withdraw {
            self.current.fetch_sub(self.withdraw, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    /// Retries the budget would allow now.
    pub(crate) fn remaining(&self) -> u64 {
        self.expire();
        u64::try_from(self.sum() / self.withdraw.max(1)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_allows_the_ratio_plus_the_minimum() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
        assert!(!b.withdraw(), "nothing deposited, no minimum");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "10 requests allow 2 retries at 20%");
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_ttl() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.remaining(), 5, "still inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.remaining(), 0, "expired after the ttl");
    }

    #[tokio::test(start_paused = true)]
    async fn min_per_second_is_always_available() {
        let b = RetryBudget::new(Duration::from_secs(10), 1, 0.2);
        // 1 retry a second over a 10 s window: 10 retries without any request.
        for _ in 0..10 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
    }

    fn policy(on: &[&str], methods: Option<Vec<&str>>) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            on: on.iter().map(|s| s.parse().unwrap()).collect(),
            methods: methods.map(|m| m.into_iter().map(|m| m.parse().unwrap()).collect()),
            backoff: bff_config::Duration::from_millis(20),
            max_backoff: bff_config::Duration::from_millis(200),
            ..RetryConfig::default()
        })
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_cap() {
        let p = policy(&["reset"], None);
        for retry in 1..8u32 {
            let cap = Duration::from_millis((20u64 << (retry - 1)).min(200));
            for _ in 0..200 {
                let d = p.backoff(retry);
                assert!(d <= cap, "retry {retry}: {d:?} > {cap:?}");
            }
        }
        // Full jitter spreads: some early backoffs are short.
        assert!((0..200).any(|_| p.backoff(1) < Duration::from_millis(5)));
    }

    /// Retries and hedges share the rule: without a policy (a service that only hedges), the idempotent
    /// methods and small bodies; with one, its `methods` when it lists them.
    #[test]
    fn one_rule_for_every_repeat() {
        assert!(may_repeat(None, &Method::GET, 0));
        assert!(may_repeat(None, &Method::DELETE, MAX_RETRY_BODY));
        assert!(!may_repeat(None, &Method::POST, 0));
        assert!(!may_repeat(None, &Method::GET, MAX_RETRY_BODY + 1));
        let listed = policy(&["reset"], Some(vec!["POST"]));
        assert!(may_repeat(Some(&listed), &Method::POST, 0));
        assert!(!may_repeat(Some(&listed), &Method::GET, 0));
        let default = policy(&["reset"], None);
        assert!(may_repeat(Some(&default), &Method::PUT, 0));
        assert!(!may_repeat(Some(&default), &Method::PATCH, 0));
    }

    #[test]
    fn only_idempotent_small_requests_are_retried_by_default() {
        let p = policy(&["reset", "503"], None);
        assert!(p.allows(&Method::GET, 0));
        assert!(p.allows(&Method::PUT, 10));
        assert!(!p.allows(&Method::POST, 0));
        assert!(!p.allows(&Method::PATCH, 0));
        assert!(!p.allows(&Method::GET, MAX_RETRY_BODY + 1));
        let p = policy(&["reset"], Some(vec!["POST"]));
        assert!(p.allows(&Method::POST, 0));
        assert!(!p.allows(&Method::GET, 0));
    }

    #[test]
    fn conditions_follow_on() {
        let p = policy(&["reset", "503"], None);
        assert!(p.retries_error(ErrorKind::Reset));
        assert!(p.retries_status(503));
        assert!(!p.retries_status(500));
        assert!(!p.retries_error(ErrorKind::Connect));
        assert!(!p.retries_error(ErrorKind::Timeout));
        let p = policy(&["429"], None);
        assert!(p.retries_status(429));
        assert!(!p.retries_status(503));
    }

    /// `backoff` and `max_backoff` from TOML, away from the defaults (20 ms, 200 ms) on both sides: a
    /// 300 ms first backoff spreads over [0, 300 ms] (past the default cap), and no backoff passes the
    /// 400 ms cap (the default cap after four doublings would allow 200 ms, the uncapped 2.4 s).
    #[test]
    fn backoff_and_max_backoff_come_from_the_config() {
        let svc = crate::service_config(
            "[services.s.retry]\nbackoff = \"300ms\"\nmax_backoff = \"400ms\"",
        );
        let p = RetryPolicy::new(svc.retry.as_ref().unwrap());
        let first: Vec<Duration> = (0..200).map(|_| p.backoff(1)).collect();
        assert!(first.iter().all(|d| *d <= Duration::from_millis(300)));
        assert!(
            first.iter().any(|d| *d > Duration::from_millis(200)),
            "the first backoff reaches past the default cap"
        );
        let later: Vec<Duration> = (0..200).map(|_| p.backoff(4)).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(
            later.iter().any(|d| *d > Duration::from_millis(300)),
            "capped at max_backoff, not at backoff"
        );
    }
}
