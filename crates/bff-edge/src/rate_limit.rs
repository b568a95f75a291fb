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
use bff_config::RateLimitConfig;
use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use http::{HeaderName, request::Parts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::{
    collections::HashMap,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
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

/// A Redis check not answered within this is decided by the local bucket.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is asked again (by one request) after this.
const REDIS_RETRY: Duration = Duration::from_secs(1);

/// GCRA over one key: KEYS[1] holds the bucket's theoretical arrival time in microseconds of Redis's
/// clock; ARGV[1] is the emission interval (microseconds a token), ARGV[2] the burst. Returns 0 when a
/// token is taken, else the microseconds until one is back. The key expires when the bucket is full again.
/// Numbers are formatted with `%.0f` because Lua's default conversion keeps 14 digits only.
const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait > 0 then return wait end
local ttl_ms = math.floor((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return 0
";

/// Buckets in Redis, shared by every instance pointed at the same server; the local bucket decides while
/// Redis cannot.
pub struct RedisStore {
    server: Arc<RedisServer>,
    local: LocalStore,
    /// Microseconds a token.
    interval_us: u64,
    burst: u32,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.server.name)
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .finish()
    }
}

/// One Redis server as the limiters of a BFF see it: one multiplexed connection shared by all of them,
/// and whether it is in an outage.
struct RedisServer {
    /// The URL without credentials, for the log.
    name: String,
    client: redis::Client,
    /// Made on first use, inside the runtime; it reconnects by itself after a failure.
    manager: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
    down: AtomicBool,
    /// While down: Redis is asked again not before this many milliseconds after `epoch`...
    retry_at_ms: AtomicU64,
    /// ...and by one request at a time.
    probing: AtomicBool,
    epoch: Instant,
    fallbacks: Arc<AtomicU64>,
}

impl RedisServer {
    fn new(url: &str, fallbacks: Arc<AtomicU64>) -> Result<Self, String> {
        let name = match (url.find("://"), url.rfind('@')) {
            (Some(i), Some(at)) if at > i => format!("{}{}", &url[..i + 3], &url[at + 1..]),
            _ => url.to_string(),
        };
        let client =
            redis::Client::open(url).map_err(|e| format!("rate limit store {name}: {e}"))?;
        Ok(Self {
            name,
            client,
            manager: tokio::sync::OnceCell::new(),
            script: redis::Script::new(GCRA_SCRIPT),
            down: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            epoch: Instant::now(),
            fallbacks,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn manager(&self) -> Result<ConnectionManager, String> {
        self.manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    // One attempt per call: the store's own retry schedule decides when to try again.
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|e| e.to_string())
    }

    /// Connects and loads the script ahead of the first check, so the first requests neither pay the
    /// connection nor the script's upload; a Redis that is not there is logged now, not at the first request.
    async fn warm_up(&self) {
        let loaded = async {
            let mut conn = self.manager().await?;
            self.script
                .load_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 4, loaded).await {
            Ok(Ok(_)) => tracing::debug!(store = %self.name, "rate limit store connected"),
            Ok(Err(e)) => self.failed(&e),
            Err(_) => self.failed(&format!("no answer within {:?}", REDIS_TIMEOUT * 4)),
        }
    }

    fn failed(&self, error: &str) {
        self.retry_at_ms.store(
            self.now_ms() + REDIS_RETRY.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(store = %self.name, error, "rate limit store unreachable; limiting with each instance's local buckets until it is back");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(store = %self.name, "rate limit store reachable again; limits are shared again");
        }
    }
}

/// Clears the probing flag however the probe ends (a client that goes away drops the check midway).
struct Probe<'a>(&'a AtomicBool);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl RedisStore {
    fn new(server: Arc<RedisServer>, per_second: u32, burst: u32) -> Self {
        Self {
            server,
            local: LocalStore::new(per_second, burst),
            interval_us: (1_000_000 / u64::from(per_second.max(1))).max(1),
            burst: burst.max(1),
        }
    }

    /// One round trip: the script's answer, or why there is none.
    async fn ask(&self, key: &str) -> Result<Result<(), Duration>, String> {
        let mut conn = self.server.manager().await?;
        let mut invocation = self.server.script.key(format!("bff:rl:{key}"));
        invocation.arg(self.interval_us).arg(self.burst);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(wait)) if wait <= 0 => Ok(Ok(())),
            Ok(Ok(wait)) => Ok(Err(Duration::from_micros(wait.unsigned_abs()))),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
        }
    }

    fn fallback(&self, key: &str) -> Result<(), Duration> {
        self.server.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.local.check_now(key)
    }

    async fn check_key(&self, key: &str) -> Result<(), Duration> {
        let server = &*self.server;
        let _probe = if server.down.load(Ordering::Acquire) {
            // In an outage: one request a second finds out whether Redis is back; the others do not wait.
            if server.now_ms() < server.retry_at_ms.load(Ordering::Relaxed)
                || server.probing.swap(true, Ordering::AcqRel)
            {
                return self.fallback(key);
            }
            Some(Probe(&server.probing))
        } else {
            None
        };
        match self.ask(key).await {
            Ok(decision) => {
                server.recovered();
                decision
            }
            Err(e) => {
                server.failed(&e);
                self.fallback(key)
            }
        }
    }
}

impl RateLimitStore for RedisStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>> {
        Box::pin(self.check_key(key))
    }
}

/// What the limiters of one BFF share: a connection per store URL, and the counter of checks decided by a
/// local bucket because the shared store failed (`bff_rate_limit_store_fallbacks_total`).
#[derive(Clone, Default)]
pub struct RateLimitStores {
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
            redis: Arc::default(),
            fallbacks,
        }
    }

    /// The store of a limit: shared when the config names one, else in this process.
    fn store(&self, cfg: &RateLimitConfig) -> Result<Arc<dyn RateLimitStore>, String> {
        let Some(url) = cfg.store.as_deref() else {
            return Ok(Arc::new(LocalStore::new(cfg.per_second, cfg.burst)));
        };
        let server = {
            let mut servers = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            match servers.get(url) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(RedisServer::new(url, self.fallbacks.clone())?);
                    servers.insert(url.to_string(), s.clone());
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
    /// A limit as configured: its buckets in `cfg.store` (through `stores`, which shares connections), or
    /// in this process. Fails only on a store URL the Redis client refuses.
    pub fn from_config(
        cfg: &RateLimitConfig,
        scope: &str,
        stores: &RateLimitStores,
    ) -> Result<Self, String> {
        Ok(Self::with_store(cfg, scope, stores.store(cfg)?))
    }

    fn with_store(cfg: &RateLimitConfig, scope: &str, store: Arc<dyn RateLimitStore>) -> Self {
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
            store,
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

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_the_local_bucket_and_counts_it() {
        let fallbacks = Arc::new(AtomicU64::new(0));
        let stores = RateLimitStores::new(fallbacks.clone());
        let cfg = RateLimitConfig {
            per_second: 1,
            burst: 2,
            // Nothing listens on port 1: connections are refused at once.
            store: Some("redis://127.0.0.1:1".into()),
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

    #[test]
    fn a_bad_store_url_is_an_error_not_a_panic() {
        let cfg = RateLimitConfig {
            store: Some("redis://[::1".into()),
            ..Default::default()
        };
        assert!(RateLimiter::from_config(&cfg, "edge", &RateLimitStores::default()).is_err());
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
