//! Where sessions live: in this process (the default) or in Redis, shared by every instance that names
//! it. Sessions are keyed by the SHA-256 of their id (the store never holds a cookie value), with an index
//! by the provider's `sid` and by `sub` so that a back-channel logout ends every session it names. In
//! Redis each value is encrypted with AES-256-GCM under `store_key`, its key as associated data (a value
//! copied under another key does not decrypt).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

/// A session: the provider's tokens and the ID token's claims. Its `Debug` shows no token.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SessionData {
    pub(crate) sub: String,
    #[serde(default)]
    pub(crate) sid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    pub(crate) id_token: String,
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    /// When the access token expires (ms since the epoch), if the provider said.
    #[serde(default)]
    pub(crate) access_expires_at: Option<u64>,
    /// Login (ms since the epoch): the absolute timeout counts from it.
    pub(crate) created_at: u64,
    /// Last use (ms since the epoch): the idle timeout counts from it.
    pub(crate) last_seen: u64,
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("sub", &self.sub)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

/// A login in progress, from `/bff/login` to the callback. Its `Debug` shows nothing of it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct LoginRecord {
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) verifier: String,
    pub(crate) return_url: String,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginRecord")
    }
}

/// Each Redis operation (a command or a pipeline, with the connection it may have to make first): a
/// store that does not answer within it fails the request with 503 `session_store_unavailable`.
#[cfg(feature = "redis")]
pub(crate) const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A store failure (Redis unreachable, a value that does not decrypt).
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub(crate) struct StoreError(pub(crate) String);

/// The store of a BFF's sessions.
pub(crate) enum Store {
    Memory(Box<Memory>),
    #[cfg(feature = "redis")]
    Redis(Box<RedisStore>),
}

impl Store {
    pub(crate) fn memory() -> Self {
        Self::Memory(Box::default())
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis(url: &str, key: &[u8; 32], prefix: String) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError(format!("{}: {e}", bff_config::redact_url(url))))?;
        Ok(Self::Redis(Box::new(RedisStore {
            client,
            conn: tokio::sync::OnceCell::new(),
            cipher: Cipher::new(key),
            prefix,
        })))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<SessionData>, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.get(key)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.get(&r.k("s", key))).await,
        }
    }

    /// Writes a session, and its index entries, for `ttl_ms`. Returns how many expired sessions the
    /// memory store dropped meanwhile (Redis expires its own, unseen).
    pub(crate) async fn put(
        &self,
        key: &str,
        data: &SessionData,
        ttl_ms: u64,
        now: u64,
    ) -> Result<usize, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.put(key, data, now + ttl_ms, now)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.put_session(key, data, ttl_ms)).await.map(|()| 0),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.delete(key)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.delete(key)).await,
        }
    }

    /// The keys of the sessions of `sid` (or, with `by_sub`, of the subject `sub`).
    pub(crate) async fn find(&self, by_sub: bool, id: &str) -> Result<Vec<String>, StoreError> {
        let index = if by_sub { "sub" } else { "sid" };
        match self {
            Self::Memory(m) => Ok(m.find(index, id)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.find(index, id)).await,
        }
    }

    pub(crate) async fn put_login(
        &self,
        key: &str,
        login: &LoginRecord,
        ttl_ms: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(m) => {
                m.put_login(key, login, now + ttl_ms, now);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.set(&r.k("login", key), login, ttl_ms)).await,
        }
    }

    /// The login record, removed (a login is completed once).
    pub(crate) async fn take_login(
        &self,
        key: &str,
        now: u64,
    ) -> Result<Option<LoginRecord>, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.take_login(key, now)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.take(&r.k("login", key))).await,
        }
    }

    /// Remembers a used back-channel logout token's id (its digest) for `ttl_ms`: `false` when it was
    /// remembered already (a replay). Atomic in Redis, so that instances sharing it accept a token once.
    pub(crate) async fn remember_jti(
        &self,
        key: &str,
        ttl_ms: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.remember_jti(key, now + ttl_ms, now)),
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.set_nx(&r.k("jti", key), ttl_ms)).await,
        }
    }

    /// A short lock of a session's refresh shared by the instances (always granted in memory: the
    /// instance's own single flight is the lock there).
    pub(crate) async fn lock(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        match self {
            Self::Memory(_) => {
                let _ = (key, ttl_ms);
                Ok(true)
            }
            #[cfg(feature = "redis")]
            Self::Redis(r) => bounded(r.lock(key, ttl_ms)).await,
        }
    }

    pub(crate) async fn unlock(&self, key: &str) {
        match self {
            Self::Memory(_) => {
                let _ = key;
            }
            #[cfg(feature = "redis")]
            Self::Redis(r) => {
                let _ = tokio::time::timeout(REDIS_TIMEOUT, r.unlock(key)).await;
            }
        }
    }

    /// Whether several instances share it (a refresh then waits for another instance's lock).
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, Self::Memory(_))
    }
}

/// A Redis operation, within [`REDIS_TIMEOUT`].
#[cfg(feature = "redis")]
async fn bounded<T>(
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(REDIS_TIMEOUT, op)
        .await
        .map_err(|_| StoreError("redis: no answer in time".into()))?
}

/// The in-process store: sessions with their expiry (ms), the indexes, the logins in progress.
#[derive(Default)]
pub(crate) struct Memory {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    sessions: HashMap<String, (Arc<SessionData>, u64)>,
    index: HashMap<(&'static str, String), HashSet<String>>,
    logins: HashMap<String, (LoginRecord, u64)>,
    /// Back-channel logout token ids already accepted, until they expire (ms).
    jtis: HashMap<String, u64>,
    /// The size (sessions and logins) at which the next write sweeps the expired ones.
    sweep_at: usize,
    /// The same for `jtis`.
    jti_sweep_at: usize,
}

impl Memory {
    fn get(&self, key: &str) -> Option<SessionData> {
        let inner = self.inner.lock().ok()?;
        inner.sessions.get(key).map(|(d, _)| (**d).clone())
    }

    /// Returns how many expired sessions were dropped on the way.
    fn put(&self, key: &str, data: &SessionData, expires: u64, now: u64) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        // Expired sessions and logins are dropped when the map has doubled since the last sweep (their
        // owners read them as gone already): the work is amortised over the writes.
        let mut swept = 0;
        let size = inner.sessions.len() + inner.logins.len();
        if size >= inner.sweep_at {
            let gone: Vec<String> = inner
                .sessions
                .iter()
                .filter(|(_, (_, exp))| *exp <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                swept += usize::from(remove(&mut inner, &k));
            }
            inner.logins.retain(|_, (_, exp)| *exp > now);
            inner.sweep_at = ((inner.sessions.len() + inner.logins.len()) * 2).max(1024);
        }
        if let Some(sid) = &data.sid {
            inner
                .index
                .entry(("sid", sid.clone()))
                .or_default()
                .insert(key.to_string());
        }
        inner
            .index
            .entry(("sub", data.sub.clone()))
            .or_default()
            .insert(key.to_string());
        inner
            .sessions
            .insert(key.to_string(), (Arc::new(data.clone()), expires));
        swept
    }

    fn delete(&self, key: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        remove(&mut inner, key)
    }

    fn find(&self, index: &'static str, id: &str) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .index
            .get(&(index, id.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn put_login(&self, key: &str, login: &LoginRecord, expires: u64, now: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            // Logins never completed expire here (a session write sweeps them too).
            if inner.logins.len() >= inner.sweep_at.max(1024) {
                inner.logins.retain(|_, (_, exp)| *exp > now);
            }
            inner
                .logins
                .insert(key.to_string(), (login.clone(), expires));
        }
    }

    fn remember_jti(&self, key: &str, expires: u64, now: u64) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.jtis.get(key).is_some_and(|exp| *exp > now) {
            return false;
        }
        // Expired ids are dropped once the map has doubled since the last sweep.
        if inner.jtis.len() >= inner.jti_sweep_at {
            inner.jtis.retain(|_, exp| *exp > now);
            inner.jti_sweep_at = (inner.jtis.len() * 2).max(1024);
        }
        inner.jtis.insert(key.to_string(), expires);
        true
    }

    fn take_login(&self, key: &str, now: u64) -> Option<LoginRecord> {
        let mut inner = self.inner.lock().ok()?;
        inner
            .logins
            .remove(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(l, _)| l)
    }
}

fn remove(inner: &mut MemoryInner, key: &str) -> bool {
    let Some((data, _)) = inner.sessions.remove(key) else {
        return false;
    };
    let mut unindex = |index: &'static str, id: &str| {
        let k = (index, id.to_string());
        if let Some(set) = inner.index.get_mut(&k) {
            set.remove(key);
            if set.is_empty() {
                inner.index.remove(&k);
            }
        }
    };
    if let Some(sid) = &data.sid {
        unindex("sid", sid);
    }
    unindex("sub", &data.sub);
    true
}

/// AES-256-GCM with a random 96-bit nonce a value: `nonce || ciphertext || tag`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Cipher {
    key: LessSafeKey,
    rng: ring::rand::SystemRandom,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Cipher {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    pub(crate) fn seal<T: Serialize>(&self, aad: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        use ring::rand::SecureRandom as _;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError("no randomness".into()))?;
        let mut buf = serde_json::to_vec(value).map_err(|e| StoreError(format!("encode: {e}")))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| StoreError("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub(crate) fn open<T: DeserializeOwned>(
        &self,
        aad: &str,
        sealed: &[u8],
    ) -> Result<T, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError("a stored value too short to decrypt".into()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StoreError("a stored value with a bad nonce".into()))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| {
                StoreError(
                    "a stored value does not decrypt (another store_key, or tampered)".into(),
                )
            })?;
        serde_json::from_slice(plain).map_err(|e| StoreError(format!("decode: {e}")))
    }
}

#[cfg(feature = "redis")]
pub(crate) struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    cipher: Cipher,
    /// `bff:session:CLIENT_ID:`: several BFFs may share a Redis.
    prefix: String,
}

#[cfg(feature = "redis")]
impl RedisStore {
    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        self.conn
            .get_or_try_init(|| async {
                // Made without waiting for Redis (a BFF starts, and serves its other routes, while it is
                // down); each attempt to (re)connect is short and not retried within a request: the next
                // request tries again.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT / 2))
                    .set_response_timeout(Some(REDIS_TIMEOUT / 2))
                    .set_number_of_retries(0);
                redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| StoreError(format!("redis: {e}")))
            })
            .await
            .cloned()
    }

    /// A command, sent once more when the connection had been refused before it was sent: the manager
    /// hands out its last connection attempt's failure once after Redis is back (that failure starts a
    /// new attempt, which the second try waits for), so the first request after an outage succeeds.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        let mut out = cmd.query_async(&mut c).await;
        if matches!(&out, Err(e) if e.is_connection_refusal()) {
            out = cmd.query_async(&mut c).await;
        }
        out.map_err(|e| StoreError(format!("redis: {e}")))
    }

    /// A pipeline, like [`RedisStore::query`].
    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        let mut out = pipe.query_async(&mut c).await;
        if matches!(&out, Err(e) if e.is_connection_refusal()) {
            out = pipe.query_async(&mut c).await;
        }
        out.map_err(|e| StoreError(format!("redis: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>, StoreError> {
        let v: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(k)).await?;
        v.map(|v| self.cipher.open(k, &v)).transpose()
    }

    async fn set<T: Serialize>(&self, k: &str, value: &T, ttl_ms: u64) -> Result<(), StoreError> {
        let sealed = self.cipher.seal(k, value)?;
        self.query(
            redis::cmd("SET")
                .arg(k)
                .arg(sealed)
                .arg("PX")
                .arg(ttl_ms.max(1)),
        )
        .await
    }

    async fn take<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>, StoreError> {
        let v: Option<Vec<u8>> = self.query(redis::cmd("GETDEL").arg(k)).await?;
        v.map(|v| self.cipher.open(k, &v)).transpose()
    }

    /// The index sets are keyed by a hash of the `sid` or `sub` (identifiers stay out of key names).
    fn index_key(&self, index: &str, id: &str) -> String {
        self.k(index, &crate::digest(id))
    }

    async fn put_session(
        &self,
        key: &str,
        data: &SessionData,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let k = self.k("s", key);
        let sealed = self.cipher.seal(&k, data)?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&k)
            .arg(sealed)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .ignore();
        let mut sets = vec![self.index_key("sub", &data.sub)];
        if let Some(sid) = &data.sid {
            sets.push(self.index_key("sid", sid));
        }
        for set in &sets {
            pipe.cmd("SADD").arg(set).arg(key).ignore();
            // An index outlives the sessions it names by at most a day; stale members are skipped.
            pipe.cmd("PEXPIRE")
                .arg(set)
                .arg(86_400_000u64.max(ttl_ms))
                .ignore();
        }
        self.query_pipe(&pipe).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let k = self.k("s", key);
        let data: Option<SessionData> = self.get(&k).await.unwrap_or(None);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&k);
        if let Some(data) = &data {
            pipe.cmd("SREM")
                .arg(self.index_key("sub", &data.sub))
                .arg(key)
                .ignore();
            if let Some(sid) = &data.sid {
                pipe.cmd("SREM")
                    .arg(self.index_key("sid", sid))
                    .arg(key)
                    .ignore();
            }
        }
        let (deleted,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(deleted > 0)
    }

    async fn find(&self, index: &str, id: &str) -> Result<Vec<String>, StoreError> {
        self.query(redis::cmd("SMEMBERS").arg(self.index_key(index, id)))
            .await
    }

    /// `SET k 1 NX PX ttl`: whether it was set (not there before).
    async fn set_nx(&self, k: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(k)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn lock(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.k("lock", key))
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn unlock(&self, key: &str) {
        let _: Result<(), _> = self.query(redis::cmd("DEL").arg(self.k("lock", key))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sub: &str, now: u64) -> SessionData {
        SessionData {
            sub: sub.into(),
            sid: Some(format!("sid-{sub}")),
            claims: Map::new(),
            id_token: String::new(),
            access_token: String::new(),
            refresh_token: None,
            access_expires_at: None,
            created_at: now,
            last_seen: now,
        }
    }

    /// Expired sessions do not pile up in memory: a write past the sweep size drops them (and their
    /// index entries) and says how many.
    #[test]
    fn the_memory_store_sweeps_expired_sessions() {
        let m = Memory::default();
        let mut swept = 0;
        for i in 0..1024 {
            swept += m.put(&format!("old{i}"), &session(&format!("u{i}"), 0), 10, 0);
        }
        assert_eq!(swept, 0);
        assert_eq!(m.put("new", &session("n", 100), 200, 100), 1024);
        assert_eq!(m.inner.lock().unwrap().sessions.len(), 1);
        assert!(m.find("sid", "sid-u1").is_empty());
        assert_eq!(m.find("sub", "n"), ["new".to_string()]);
    }

    /// A logout token's id is refused while remembered, accepted again once it expired; expired ids are
    /// swept.
    #[test]
    fn a_jti_is_remembered_until_it_expires() {
        let m = Memory::default();
        assert!(m.remember_jti("j", 100, 0));
        assert!(!m.remember_jti("j", 200, 99));
        assert!(m.remember_jti("other", 100, 50));
        assert!(m.remember_jti("j", 300, 100));
        for i in 0..1100 {
            m.remember_jti(&format!("old{i}"), 10, 0);
        }
        for i in 0..1000 {
            m.remember_jti(&format!("new{i}"), 30, 20);
        }
        let inner = m.inner.lock().unwrap();
        assert!(!inner.jtis.contains_key("old0"));
        assert!(inner.jtis.len() <= 1002, "{}", inner.jtis.len());
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_store_key() {
        let cipher = Cipher::new(&[7; 32]);
        let login = LoginRecord {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v-secret-verifier".into(),
            return_url: "/".into(),
        };
        let sealed = cipher.seal("k1", &login).unwrap();
        assert!(
            !sealed
                .windows(b"v-secret-verifier".len())
                .any(|w| w == b"v-secret-verifier")
        );
        let opened: LoginRecord = cipher.open("k1", &sealed).unwrap();
        assert_eq!(opened.verifier, "v-secret-verifier");
        assert!(cipher.open::<LoginRecord>("k2", &sealed).is_err());
        assert!(
            Cipher::new(&[8; 32])
                .open::<LoginRecord>("k1", &sealed)
                .is_err()
        );
    }
}
