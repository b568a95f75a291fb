//! Token-bucket rate limits keyed by client IP, JWT subject or a header (`[edge.rate_limit]` and per
//! route). [`RateLimitStore`] is where the buckets live: in this process ([`LocalStore`], GCRA through
//! governor, idle keys evicted so memory stays bounded), or in Redis ([`RedisStore`], `store =
//! "redis://..."`) so that every instance of a BFF draws from the same buckets: with N instances behind a
//! load balancer, a per-instance limit would let a client through N times over.
//!
//! The Redis store takes one round trip per check: an atomic Lua script runs GCRA on Redis's own clock
//! (instances' clocks never need to agree) and keeps each bucket in one key whose TTL ends when the bucket
//! is full again, so idle keys disappear by themselves. A rate limit protects the services; it must never
//! become their outage: when Redis fails or is slow, the check is decided by the limiter's local bucket
//! (same quota, per instance), counted in `bff_rate_limit_store_fallbacks_total`, logged once per outage,
//! and Redis is asked again by one request a second until it answers.

use crate::{auth::Claims, client_ip::ClientIp};
use bff_config::{RateLimitConfig, RateLimitKey, RedisUrl};
use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use http::request::Parts;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
use self::redis_store::RedisServer;
#[cfg(feature = "redis")]
pub use self::redis_store::{REDIS_TIMEOUT, RedisStore};
#[cfg(feature = "redis")]
use std::{collections::HashMap, sync::Mutex};
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

/// What the limiters of one BFF share: a connection per store URL, and the counter of checks decided by a
/// local bucket because the shared store failed (`bff_rate_limit_store_fallbacks_total`).
#[derive(Clone, Default)]
pub struct RateLimitStores {
    #[cfg(feature = "redis")]
    redis: Arc<Mutex<HashMap<String, Arc<RedisServer>>>>,
    fallbacks: Arc<AtomicU64>,
}

impl std::fmt::Debug for RateLimitStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitStores")
            .field("fallbacks", &self.fallbacks.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RateLimitStores {
    /// `fallbacks` counts the checks a local bucket decided because the shared store failed.
    pub fn new(fallbacks: Arc<AtomicU64>) -> Self {
        Self {
            #[cfg(feature = "redis")]
            redis: Arc::default(),
            fallbacks,
        }
    }

    /// The store of a limit: shared when the config names one, else in this process.
    fn store(&self, cfg: &RateLimitConfig) -> Result<Arc<dyn RateLimitStore>, RateLimitError> {
        let Some(url) = &cfg.store else {
            return Ok(Arc::new(LocalStore::new(cfg.per_second, cfg.burst)));
        };
        self.shared(url, cfg)
    }

    #[cfg(feature = "redis")]
    fn shared(
        &self,
        url: &RedisUrl,
        cfg: &RateLimitConfig,
    ) -> Result<Arc<dyn RateLimitStore>, RateLimitError> {
        let server = {
            let mut servers = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            match servers.get(url.expose()) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(RedisServer::new(url, self.fallbacks.clone())?);
                    servers.insert(url.expose().to_string(), s.clone());
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let warm = s.clone();
                        rt.spawn(async move { warm.warm_up().await });
                    }
                    s
                }
            }
        };
        Ok(Arc::new(RedisStore::new(server, cfg.per_second, cfg.burst)))
    }

    /// Without the `redis` feature the validator refuses a `store` (naming the feature); a config built
    /// by hand that names one gets the same message here.
    #[cfg(not(feature = "redis"))]
    fn shared(
        &self,
        _url: &RedisUrl,
        _cfg: &RateLimitConfig,
    ) -> Result<Arc<dyn RateLimitStore>, RateLimitError> {
        Err(bff_config::Feature::Redis
            .missing("a rate limit `store`")
            .into())
    }
}

/// A rate limit whose store cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The Redis client refused the store's URL (shown without its credentials).
    #[cfg(feature = "redis")]
    #[error("rate limit store {store}")]
    Store {
        store: String,
        #[source]
        source: redis::RedisError,
    },
    /// A `store` in a binary without the `redis` feature.
    #[error(transparent)]
    Feature(#[from] bff_config::FeatureMissing),
}

/// What a bucket is keyed on: the config's own type ([`RateLimitKey`]), parsed once at load (an unknown
/// key is a config error with its line, never a silent `client_ip`).
///
/// `Header(name)`: a request header; the client IP when it is absent. The client chooses the header's
/// value, so it chooses its bucket: a fresh value is a fresh bucket, and sending another client's value
/// drains that client's bucket. `HeaderAndClientIp(name)`: a bucket per header value *and* client
/// address: sending another client's value reaches no bucket but the sender's own address's.
pub type LimitKey = RateLimitKey;

/// The bucket of a client address: an IPv4 address (an IPv4-mapped one in IPv4 form) as it is, an IPv6
/// address by its /64, the smallest network a single subscriber is usually given: a client with a /64
/// has 2^64 addresses to spread its requests over.
pub fn ip_bucket(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let net = std::net::Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1));
                format!("{net}/64")
            }
        },
    }
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
    /// A limit as configured: its buckets in `cfg.store` (through `stores`, which shares connections), or
    /// in this process. Fails only on a store URL the Redis client refuses.
    pub fn from_config(
        cfg: &RateLimitConfig,
        scope: &str,
        stores: &RateLimitStores,
    ) -> Result<Self, RateLimitError> {
        Self::with_store(cfg, scope, stores.store(cfg)?)
    }

    /// The key is parsed by the config's own parser: an unknown key is an error, never a silent
    /// `client_ip`.
    fn with_store(
        cfg: &RateLimitConfig,
        scope: &str,
        store: Arc<dyn RateLimitStore>,
    ) -> Result<Self, RateLimitError> {
        Ok(Self {
            key: cfg.key.clone(),
            store,
            scope: scope.into(),
        })
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
                .map_or_else(|| "unknown".to_string(), |c| ip_bucket(c.0))
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
            // The address last: a value holding `|` cannot reach another address's bucket.
            LimitKey::HeaderAndClientIp(h) => {
                match parts.headers.get(h).and_then(|v| v.to_str().ok()) {
                    Some(v) => format!("h:{v}|{}", ip()),
                    None => ip(),
                }
            }
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

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_the_local_bucket_and_counts_it() {
        let fallbacks = Arc::new(AtomicU64::new(0));
        let stores = RateLimitStores::new(fallbacks.clone());
        let cfg = RateLimitConfig {
            per_second: 1,
            burst: 2,
            // Nothing listens on port 1: connections are refused at once.
            store: Some("redis://127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        let store = stores.store(&cfg).unwrap();
        let _same_server = stores.store(&cfg).unwrap();
        assert_eq!(
            stores.redis.lock().unwrap().len(),
            1,
            "one connection a URL"
        );
        assert!(store.check("k").await.is_ok());
        assert!(store.check("k").await.is_ok());
        let wait = store.check("k").await.unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(fallbacks.load(Ordering::Relaxed), 3);
    }

    /// A store URL is a `RedisUrl`: one this binary cannot use cannot even be made (the config's
    /// parser refuses it, naming the feature); nothing is left for the limiter to parse.
    #[cfg(not(feature = "redis"))]
    #[test]
    fn a_store_without_the_redis_feature_is_an_error_naming_it() {
        let e = "redis://127.0.0.1:6379".parse::<RedisUrl>().unwrap_err();
        assert!(e.0.contains("needs the `redis` feature"), "{e}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_bad_store_url_is_an_error_not_a_panic() {
        assert!("redis://[::1".parse::<RedisUrl>().is_err());
    }

    fn parts(ip: &str, header: Option<&str>) -> Parts {
        let mut req = http::Request::builder();
        if let Some(v) = header {
            req = req.header("x-tenant", v);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(ClientIp(ip.parse().unwrap()));
        parts
    }

    #[test]
    fn ipv6_clients_share_the_bucket_of_their_64() {
        let l = RateLimiter::with_store(
            &RateLimitConfig::default(),
            "edge",
            Arc::new(LocalStore::new(1, 1)),
        )
        .unwrap();
        let key = |ip| l.key_of(&parts(ip, None));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), "edge|2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }

    #[test]
    fn a_header_and_client_ip_key_is_both() {
        assert!("header:x-tenant+client_ip".parse::<LimitKey>().is_ok());
        assert!("header:+client_ip".parse::<LimitKey>().is_err());
        assert!("header:x tenant".parse::<LimitKey>().is_err());
        assert!("client_ip+jwt_sub".parse::<LimitKey>().is_err());
        let cfg = RateLimitConfig {
            key: RateLimitKey::header_and_client_ip(http::HeaderName::from_static("x-tenant")),
            ..Default::default()
        };
        let l = RateLimiter::with_store(&cfg, "r", Arc::new(LocalStore::new(1, 1))).unwrap();
        let key = |ip, h| l.key_of(&parts(ip, h));
        assert_eq!(key("192.0.2.1", Some("a")), "r|h:a|192.0.2.1");
        assert_ne!(key("192.0.2.1", Some("a")), key("192.0.2.2", Some("a")));
        assert_ne!(key("192.0.2.1", Some("a")), key("192.0.2.1", Some("b")));
        // A value with `|` in it still ends in the sender's own address.
        assert!(key("192.0.2.1", Some("a|192.0.2.2")).ends_with("|192.0.2.1"));
        assert_eq!(key("192.0.2.1", None), "r|192.0.2.1");
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

    /// `per_second = 2` from TOML (default 50): after the burst of one, the wait is about half a second
    /// (at 50 a second it would be 20 ms).
    #[tokio::test]
    async fn per_second_is_the_refill_rate() {
        let config = bff_config::Loader::new()
            .with_env(Default::default())
            .load_str(
                "[edge.rate_limit]\nper_second = 2\nburst = 1\n",
                bff_config::Format::Toml,
            )
            .unwrap();
        let stores = RateLimitStores::new(Arc::new(AtomicU64::new(0)));
        let limit =
            RateLimiter::from_config(config.edge.rate_limit.as_ref().unwrap(), "t", &stores)
                .unwrap();
        let (parts, ()) = http::Request::new(()).into_parts();
        assert!(limit.check(&parts).await.is_ok());
        let wait = limit.check(&parts).await.unwrap_err();
        assert!(
            wait > Duration::from_millis(100) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
