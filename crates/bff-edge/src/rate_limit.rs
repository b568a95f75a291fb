//! Token-bucket rate limits keyed by client IP, JWT subject or a header (`[edge.rate_limit]` and per
//! route). [`RateLimitStore`] is where the buckets live: in this process ([`LocalStore`], GCRA through
//! governor, idle keys evicted so memory stays bounded), or in a shared store across instances.

use crate::{auth::Claims, client_ip::ClientIp};
use bff_config::RateLimitConfig;
use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use http::{HeaderName, request::Parts};
use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Where buckets live. A check is async so that a shared store can ask over the network.
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// Takes one token for `key`; `Err(wait)` when the bucket is empty, with the time until one is back.
    fn check<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>>;
}

/// Buckets in this process.
pub struct LocalStore {
    gcra: Gcra<String, DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("keys", &self.gcra.len())
            .finish()
    }
}

/// Idle keys are swept every this many checks.
const SWEEP_EVERY: u64 = 4096;

impl LocalStore {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota =
            Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            gcra: Gcra::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Keys held now (full buckets are forgotten on the next sweep).
    pub fn len(&self) -> usize {
        self.gcra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gcra.is_empty()
    }

    fn check_now(&self, key: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.gcra.retain_recent();
            self.gcra.shrink_to_fit();
        }
        self.gcra
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl RateLimitStore for LocalStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>> {
        Box::pin(std::future::ready(self.check_now(key)))
    }
}

/// What a bucket is keyed on.
#[derive(Clone, Debug)]
pub enum LimitKey {
    ClientIp,
    /// The JWT subject (after authentication); the client IP when there is none.
    JwtSub,
    /// A request header; the client IP when it is absent.
    Header(HeaderName),
}

/// One rate limit: its key and its store.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    pub key: LimitKey,
    pub store: Arc<dyn RateLimitStore>,
    /// Prefix of the store's keys, so limits sharing a store keep separate buckets.
    pub scope: Arc<str>,
}

impl RateLimiter {
    pub fn from_config(cfg: &RateLimitConfig, scope: &str) -> Self {
        let key = match cfg.key.as_str() {
            "jwt_sub" => LimitKey::JwtSub,
            k => match k
                .strip_prefix("header:")
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            {
                Some(h) => LimitKey::Header(h),
                None => LimitKey::ClientIp,
            },
        };
        Self {
            key,
            store: Arc::new(LocalStore::new(cfg.per_second, cfg.burst)),
            scope: scope.into(),
        }
    }

    /// Whether this limit needs the verified identity (runs after authentication).
    pub fn after_auth(&self) -> bool {
        matches!(self.key, LimitKey::JwtSub)
    }

    /// The bucket key of a request.
    pub fn key_of(&self, parts: &Parts) -> String {
        let ip = || {
            parts
                .extensions
                .get::<ClientIp>()
                .map_or_else(|| "unknown".to_string(), |c| c.0.to_string())
        };
        let k = match &self.key {
            LimitKey::ClientIp => ip(),
            LimitKey::JwtSub => match parts.extensions.get::<Claims>().and_then(|c| c.sub()) {
                Some(sub) => format!("sub:{sub}"),
                None => ip(),
            },
            LimitKey::Header(h) => match parts.headers.get(h).and_then(|v| v.to_str().ok()) {
                Some(v) => format!("h:{v}"),
                None => ip(),
            },
        };
        format!("{}|{k}", self.scope)
    }

    pub async fn check(&self, parts: &Parts) -> Result<(), Duration> {
        let key = self.key_of(parts);
        self.store.check(&key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let s = LocalStore::new(1, 3);
        for _ in 0..3 {
            assert!(s.check_now("a").is_ok());
        }
        let wait = s.check_now("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(s.check_now("b").is_ok(), "keys have their own buckets");
    }

    #[test]
    fn idle_keys_are_evicted() {
        let s = LocalStore::new(1_000_000, 1);
        for i in 0..SWEEP_EVERY * 2 {
            let _ = s.check_now(&format!("k{i}"));
        }
        // A bucket refills within a microsecond at this rate: swept keys are gone.
        assert!(s.len() < SWEEP_EVERY as usize, "{} keys held", s.len());
    }
}
