//! The Redis store of rate limits (the `redis` feature).

use super::{LocalStore, RateLimitError, RateLimitStore};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

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
pub(super) struct RedisServer {
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
    pub(super) fn new(
        url: &bff_config::RedisUrl,
        fallbacks: Arc<AtomicU64>,
    ) -> Result<Self, RateLimitError> {
        // Logs and errors name the store without its credentials.
        let name = url.to_string();
        let client = redis::Client::open(url.expose()).map_err(|source| RateLimitError::Store {
            store: name.clone(),
            source,
        })?;
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

    async fn manager(&self) -> Result<ConnectionManager, StoreError> {
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
            .map_err(StoreError::Redis)
    }

    /// Connects and loads the script ahead of the first check, so the first requests neither pay the
    /// connection nor the script's upload; a Redis that is not there is logged now, not at the first request.
    pub(super) async fn warm_up(&self) {
        let loaded = async {
            let mut conn = self.manager().await?;
            self.script
                .load_async(&mut conn)
                .await
                .map_err(StoreError::Redis)
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 4, loaded).await {
            Ok(Ok(_)) => tracing::debug!(store = %self.name, "rate limit store connected"),
            Ok(Err(e)) => self.failed(&e),
            Err(_) => self.failed(&StoreError::Timeout(REDIS_TIMEOUT * 4)),
        }
    }

    fn failed(&self, error: &StoreError) {
        self.retry_at_ms.store(
            self.now_ms() + REDIS_RETRY.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(store = %self.name, error = %bff_telemetry::ErrorChain(error), "rate limit store unreachable; limiting with each instance's local buckets until it is back");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(store = %self.name, "rate limit store reachable again; limits are shared again");
        }
    }
}

/// Why a round trip to the store gave no answer.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("redis")]
    Redis(#[source] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Clears the probing flag however the probe ends (a client that goes away drops the check midway).
struct Probe<'a>(&'a AtomicBool);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl RedisStore {
    pub(super) fn new(server: Arc<RedisServer>, per_second: u32, burst: u32) -> Self {
        Self {
            server,
            local: LocalStore::new(per_second, burst),
            interval_us: (1_000_000 / u64::from(per_second.max(1))).max(1),
            burst: burst.max(1),
        }
    }

    /// One round trip: the script's answer, or why there is none.
    async fn ask(&self, key: &str) -> Result<Result<(), Duration>, StoreError> {
        let mut conn = self.server.manager().await?;
        let mut invocation = self.server.script.key(format!("bff:rl:{key}"));
        invocation.arg(self.interval_us).arg(self.burst);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(wait)) if wait <= 0 => Ok(Ok(())),
            Ok(Ok(wait)) => Ok(Err(Duration::from_micros(wait.unsigned_abs()))),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(REDIS_TIMEOUT)),
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
