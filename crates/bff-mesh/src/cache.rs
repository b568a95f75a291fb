//! Response caching: downstream GET responses kept in memory (moka), bounded in entries and in bytes.
//!
//! What is stored: 2xx answers to GET calls without `Set-Cookie` nor `no-store`. The key is the call's
//! [`CallKey`] (service, path and query, the headers sent, so the principal too unless the cache is
//! `shared`). Freshness is judged on tokio's clock, so that paused-time tests drive it; moka's own expiry
//! (on the real clock) only drops entries nobody may use any more.

use crate::{
    Response,
    coalesce::{CallKey, is_principal},
};
use bff_config::CacheConfig;
use http::{HeaderMap, HeaderValue, header};
use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// A response cache: give it to a service (`[services.NAME.cache]`), a backend
/// (`[routes.backends.cache]`) or a call (`.cache(&cache)`). Cheap to clone: clones share the entries.
///
/// ```
/// # fn f(mesh: bff_mesh::Mesh) {
/// let cache = bff_mesh::Cache::new(&bff_config::CacheConfig {
///     ttl: bff_config::Duration::from_secs(10),
///     ..Default::default()
/// })
/// .unwrap();
/// let call = mesh.service("catalog").get("/products/42").cache(&cache);
/// # }
/// ```
#[derive(Clone)]
pub struct Cache(pub(crate) Arc<Store>);

pub(crate) struct Store {
    ttl: Duration,
    swr: Duration,
    sie: Duration,
    respect: bool,
    pub(crate) shared: bool,
    max_bytes: u64,
    entries: moka::sync::Cache<CallKey, Arc<Entry>>,
    /// Bytes held, by service.
    bytes: Mutex<Vec<(Arc<str>, Arc<AtomicI64>)>>,
    /// Whether a mesh's registry knows it (for purges and `bff_cache_bytes`).
    registered: AtomicBool,
}

/// A stored response and how long it may be used.
pub(crate) struct Entry {
    pub(crate) response: Response,
    fresh_until: Instant,
    /// Served stale (and refreshed in the background) until then.
    stale_until: Instant,
    /// Served stale when the refresh fails, until then.
    error_until: Instant,
    /// Revalidated with `If-None-Match` until then (an entry with an ETag).
    keep_until: Instant,
    pub(crate) etag: Option<HeaderValue>,
    /// Set by the one caller that starts a background refresh.
    refreshing: AtomicBool,
    /// What moka keeps it for (its clock).
    lifetime: Duration,
    bytes: i64,
    weight: u32,
    counter: Arc<AtomicI64>,
}

/// What the cache has for a key now.
pub(crate) enum Lookup {
    /// Fresh: served as it is.
    Fresh(Response),
    /// Stale within `stale_while_revalidate`: served, and refreshed in the background.
    Stale(Arc<Entry>),
    /// Too old to serve without asking the service: revalidated (`If-None-Match`), or served when the
    /// service fails within `stale_if_error`.
    Refresh(Arc<Entry>),
    Miss,
}

impl Entry {
    /// Whether it may stand in for a failed refresh at `now`.
    pub(crate) fn usable_on_error(&self, now: Instant) -> bool {
        now < self.error_until
    }

    /// The one caller that starts the background refresh gets `true`.
    pub(crate) fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// A failed background refresh: the next caller may try again.
    pub(crate) fn refresh_failed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

struct Lifetime;

impl moka::Expiry<CallKey, Arc<Entry>> for Lifetime {
    fn expire_after_create(
        &self,
        _: &CallKey,
        e: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(e.lifetime)
    }

    fn expire_after_update(
        &self,
        _: &CallKey,
        e: &Arc<Entry>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.lifetime)
    }
}

impl Cache {
    /// A cache with `config`'s times and bounds, checked as `bff check` checks a config's.
    pub fn new(config: &CacheConfig) -> Result<Self, bff_config::InvalidValue> {
        config.check("cache")?;
        let max_bytes = config.max_bytes.bytes();
        // Each entry weighs at least its share of max_bytes, so that the byte bound implies the entry bound.
        let min_weight = u32::try_from(max_bytes / config.max_entries.max(1)).unwrap_or(u32::MAX);
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_: &CallKey, e: &Arc<Entry>| e.weight.max(min_weight))
            .expire_after(Lifetime)
            .eviction_listener(|_, e: Arc<Entry>, _| {
                e.counter.fetch_sub(e.bytes, Ordering::Relaxed);
            })
            .build();
        Ok(Self(Arc::new(Store {
            ttl: config.ttl.get(),
            swr: config.stale_while_revalidate.get(),
            sie: config.stale_if_error.get(),
            respect: config.respect_cache_control,
            shared: config.shared,
            max_bytes,
            entries,
            bytes: Mutex::default(),
            registered: AtomicBool::new(false),
        })))
    }

    /// Which cache this is (its address), to keep the shared calls of two caches apart.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Responses stored now (after pending evictions are applied).
    pub fn entry_count(&self) -> u64 {
        self.0.entries.run_pending_tasks();
        self.0.entries.entry_count()
    }

    /// Bytes stored now, as `bff_cache_bytes` counts them (after pending evictions are applied).
    pub fn bytes(&self) -> u64 {
        self.0.entries.run_pending_tasks();
        let b = self.0.bytes.lock().unwrap_or_else(|e| e.into_inner());
        b.iter()
            .map(|(_, c)| c.load(Ordering::Relaxed).max(0) as u64)
            .sum()
    }

    /// Removes every entry, or those of `service`, or those whose path starts with `prefix`; returns how
    /// many were removed.
    pub fn purge(&self, service: Option<&str>, prefix: Option<&str>) -> u64 {
        let mut n = 0;
        for (k, _) in self.0.entries.iter() {
            if service.is_none_or(|s| *k.service == *s)
                && prefix.is_none_or(|p| k.pq.path().starts_with(p))
            {
                self.0.entries.invalidate(&*k);
                n += 1;
            }
        }
        self.0.entries.run_pending_tasks();
        n
    }

    pub(crate) fn lookup(&self, key: &CallKey, now: Instant) -> Lookup {
        let Some(e) = self.0.entries.get(key) else {
            return Lookup::Miss;
        };
        if now < e.fresh_until {
            Lookup::Fresh(e.response.clone())
        } else if now < e.stale_until {
            Lookup::Stale(e)
        } else if now < e.error_until || now < e.keep_until {
            Lookup::Refresh(e)
        } else {
            Lookup::Miss
        }
    }

    /// Stores `res` when it may be: a 2xx without `Set-Cookie` nor `no-store` (and, when the cache
    /// respects `Cache-Control`, not `private` in a shared entry, not `Vary: *`).
    pub(crate) fn store(&self, key: &CallKey, res: &Response, now: Instant) {
        if !res.status.is_success() {
            return;
        }
        if let Some(fresh) = self.freshness(key, &res.headers) {
            let etag = res.headers.get(header::ETAG).cloned();
            self.insert(key, res.clone(), etag, fresh, now);
        }
    }

    /// A `304 Not Modified` for `stale`: the stored response, fresh again (for what the 304 says, or the
    /// ttl). `None` when the 304's headers forbid storing it.
    pub(crate) fn revalidated(
        &self,
        key: &CallKey,
        stale: &Entry,
        not_modified: &Response,
        now: Instant,
    ) -> Response {
        let res = stale.response.clone();
        if let Some(fresh) = self.freshness(key, &not_modified.headers) {
            let etag = not_modified
                .headers
                .get(header::ETAG)
                .or(stale.etag.as_ref())
                .cloned();
            self.insert(key, res.clone(), etag, fresh, now);
        }
        res
    }

    fn insert(
        &self,
        key: &CallKey,
        response: Response,
        etag: Option<HeaderValue>,
        fresh: Duration,
        now: Instant,
    ) {
        let s = &*self.0;
        let bytes = key.bytes()
            + response.body.len()
            + response
                .headers
                .iter()
                .map(|(k, v)| 48 + k.as_str().len() + v.len())
                .sum::<usize>()
            + 256;
        if bytes as u64 > s.max_bytes {
            return;
        }
        let keep = s.swr.max(s.sie).max(if etag.is_some() {
            s.ttl
        } else {
            Duration::ZERO
        });
        let lifetime = fresh + keep;
        if lifetime.is_zero() {
            return;
        }
        let counter = self.counter(&key.service);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        counter.fetch_add(bytes, Ordering::Relaxed);
        let fresh_until = now + fresh;
        let entry = Entry {
            response,
            fresh_until,
            stale_until: fresh_until + s.swr,
            error_until: fresh_until + s.sie,
            keep_until: fresh_until + keep,
            etag,
            refreshing: AtomicBool::new(false),
            lifetime,
            bytes,
            weight: u32::try_from(bytes).unwrap_or(u32::MAX),
            counter,
        };
        s.entries.insert(key.clone(), Arc::new(entry));
    }

    /// The byte counter of `service` in this cache.
    fn counter(&self, service: &Arc<str>) -> Arc<AtomicI64> {
        let mut b = self.0.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = b.iter().find(|(s, _)| s == service) {
            return c.clone();
        }
        let c = Arc::new(AtomicI64::new(0));
        b.push((service.clone(), c.clone()));
        c
    }

    /// How long a response with `headers` is fresh, or `None` when it must not be stored.
    fn freshness(&self, key: &CallKey, headers: &HeaderMap) -> Option<Duration> {
        let s = &*self.0;
        if headers.contains_key(header::SET_COOKIE) {
            return None;
        }
        let cc = CacheControl::parse(headers);
        if cc.no_store {
            return None;
        }
        if !s.respect {
            return Some(s.ttl);
        }
        // `private`: for one user only; an entry may hold it only when its key has that user.
        if cc.private && (s.shared || !key.has_principal()) {
            return None;
        }
        for v in headers.get_all(header::VARY) {
            for name in v.to_str().unwrap_or("*").split(',').map(str::trim) {
                // The key has every header sent, so a Vary on one of them is already in it; but not on
                // those a shared key leaves out, nor on anything with `*`.
                let left_out = s.shared
                    && http::HeaderName::from_bytes(name.as_bytes())
                        .map_or(true, |n| is_principal(&n));
                if name == "*" || left_out {
                    return None;
                }
            }
        }
        if cc.no_cache {
            return Some(Duration::ZERO);
        }
        Some(cc.s_maxage.or(cc.max_age).unwrap_or(s.ttl))
    }

    /// Makes a registry know this cache (once).
    pub(crate) fn register(&self, registry: &CacheRegistry) {
        if !self.0.registered.swap(true, Ordering::AcqRel) {
            registry.add(self);
        }
    }
}

/// The directives of a response's `Cache-Control` that the cache honours.
#[derive(Debug, Default, PartialEq)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age: Option<Duration>,
    s_maxage: Option<Duration>,
}

impl CacheControl {
    fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for v in headers.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else {
                // Unreadable: the safe reading.
                cc.no_store = true;
                continue;
            };
            for d in v.split(',') {
                let (name, value) = match d.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (d.trim(), None),
                };
                let secs = || {
                    value
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs)
                };
                if name.eq_ignore_ascii_case("no-store") {
                    cc.no_store = true;
                } else if name.eq_ignore_ascii_case("no-cache") {
                    cc.no_cache = true;
                } else if name.eq_ignore_ascii_case("private") {
                    cc.private = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    // A max-age that is not a number: stale at once (RFC 9111 4.2.1).
                    cc.max_age = Some(secs().unwrap_or(Duration::ZERO));
                } else if name.eq_ignore_ascii_case("s-maxage") {
                    cc.s_maxage = Some(secs().unwrap_or(Duration::ZERO));
                }
            }
        }
        cc
    }
}

/// Every cache a mesh has used (services', backends', and those handlers pass to calls), for
/// `POST /admin/cache/purge` and `bff_cache_bytes`. Kept across reloads.
#[derive(Default)]
pub(crate) struct CacheRegistry(Mutex<Vec<Weak<Store>>>);

impl CacheRegistry {
    fn add(&self, cache: &Cache) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&cache.0));
    }

    /// The caches still alive.
    pub(crate) fn caches(&self) -> Vec<Cache> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter_map(|w| w.upgrade().map(Cache)).collect()
    }

    /// Bytes held by service, over every cache.
    pub(crate) fn bytes(&self) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for c in self.caches() {
            c.0.entries.run_pending_tasks();
            let b = c.0.bytes.lock().unwrap_or_else(|e| e.into_inner());
            for (s, n) in b.iter() {
                *out.entry(s.to_string()).or_default() += n.load(Ordering::Relaxed).max(0);
            }
        }
        out
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.0.ttl)
            .field("shared", &self.0.shared)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CacheRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheRegistry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{StatusCode, uri::PathAndQuery};

    fn config(toml_ttl: u64) -> CacheConfig {
        CacheConfig {
            ttl: bff_config::Duration::from_secs(toml_ttl),
            ..Default::default()
        }
    }

    fn key(path: &str, auth: Option<&'static str>, principal: bool) -> CallKey {
        let mut forward = HeaderMap::new();
        if let Some(a) = auth {
            forward.insert(header::AUTHORIZATION, HeaderValue::from_static(a));
        }
        CallKey::new(
            "svc".into(),
            PathAndQuery::try_from(path).unwrap(),
            &forward,
            &HeaderMap::new(),
            principal,
        )
    }

    fn ok(headers: &[(&'static str, &'static str)], body: &'static [u8]) -> Response {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_static(v));
        }
        Response {
            status: StatusCode::OK,
            headers: h,
            body: Bytes::from_static(body),
        }
    }

    fn state(c: &Cache, k: &CallKey) -> &'static str {
        match c.lookup(k, Instant::now()) {
            Lookup::Fresh(_) => "fresh",
            Lookup::Stale(_) => "stale",
            Lookup::Refresh(_) => "refresh",
            Lookup::Miss => "miss",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_while_revalidate_then_stale_if_error_then_gone() {
        let c = Cache::new(&CacheConfig {
            stale_while_revalidate: bff_config::Duration::from_secs(5),
            stale_if_error: bff_config::Duration::from_secs(20),
            ..config(10)
        })
        .unwrap();
        let k = key("/a", None, true);
        c.store(&k, &ok(&[], b"1"), Instant::now());
        assert_eq!(state(&c, &k), "fresh");
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(state(&c, &k), "fresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(state(&c, &k), "stale", "within stale_while_revalidate");
        tokio::time::advance(Duration::from_secs(5)).await;
        let Lookup::Refresh(e) = c.lookup(&k, Instant::now()) else {
            panic!("past stale_while_revalidate, within stale_if_error");
        };
        assert!(e.usable_on_error(Instant::now()));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(!e.usable_on_error(Instant::now()));
        assert_eq!(state(&c, &k), "miss", "past every window");
    }

    #[tokio::test(start_paused = true)]
    async fn one_background_refresh_per_stale_entry_until_it_fails() {
        let c = Cache::new(&CacheConfig {
            stale_while_revalidate: bff_config::Duration::from_secs(5),
            ..config(1)
        })
        .unwrap();
        let k = key("/a", None, true);
        c.store(&k, &ok(&[], b"1"), Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        let Lookup::Stale(e) = c.lookup(&k, Instant::now()) else {
            panic!("stale")
        };
        let Lookup::Stale(again) = c.lookup(&k, Instant::now()) else {
            panic!("stale")
        };
        assert!(e.start_refresh());
        assert!(!again.start_refresh(), "the same entry: one refresh");
        e.refresh_failed();
        assert!(
            again.start_refresh(),
            "after a failure the next caller tries"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_services_cache_control_decides_when_respected() {
        let respectful = Cache::new(&config(60)).unwrap();
        let deaf = Cache::new(&CacheConfig {
            respect_cache_control: false,
            ..config(60)
        })
        .unwrap();
        let k = key("/a", None, true);
        let short = ok(&[("cache-control", "max-age=1")], b"1");
        respectful.store(&k, &short, Instant::now());
        deaf.store(&k, &short, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(state(&respectful, &k), "miss", "max-age=1 replaces ttl");
        assert_eq!(state(&deaf, &k), "fresh", "ttl, whatever the service says");
        // s-maxage wins over max-age.
        respectful.store(
            &k,
            &ok(&[("cache-control", "max-age=1, s-maxage=30")], b"1"),
            Instant::now(),
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(state(&respectful, &k), "fresh");
        // `private`: only in an entry keyed on the caller.
        let private = ok(&[("cache-control", "private")], b"1");
        let anon = key("/p", None, true);
        let user = key("/p", Some("Bearer u"), true);
        respectful.store(&anon, &private, Instant::now());
        respectful.store(&user, &private, Instant::now());
        assert_eq!(state(&respectful, &anon), "miss", "no principal in the key");
        assert_eq!(state(&respectful, &user), "fresh");
        // `Vary: *` is never stored.
        let k = key("/v", None, true);
        respectful.store(&k, &ok(&[("vary", "*")], b"1"), Instant::now());
        assert_eq!(state(&respectful, &k), "miss");
    }

    #[tokio::test(start_paused = true)]
    async fn set_cookie_no_store_and_errors_are_never_stored() {
        for respect in [true, false] {
            let c = Cache::new(&CacheConfig {
                respect_cache_control: respect,
                ..config(60)
            })
            .unwrap();
            for (i, res) in [
                ok(&[("set-cookie", "a=b")], b"1"),
                ok(&[("cache-control", "public, no-store")], b"1"),
                Response {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    ..ok(&[], b"1")
                },
                Response {
                    status: StatusCode::NOT_FOUND,
                    ..ok(&[], b"1")
                },
            ]
            .iter()
            .enumerate()
            {
                let k = key(&format!("/{i}"), None, true);
                c.store(&k, res, Instant::now());
                assert_eq!(state(&c, &k), "miss", "{i} respect={respect}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_cache_leaves_the_principal_out_and_refuses_what_varies_on_it() {
        let c = Cache::new(&CacheConfig {
            shared: true,
            ..config(60)
        })
        .unwrap();
        let a = key("/a", Some("Bearer a"), false);
        let b = key("/a", Some("Bearer b"), false);
        c.store(&a, &ok(&[], b"1"), Instant::now());
        assert_eq!(state(&c, &b), "fresh", "one entry for every caller");
        let k = key("/v", Some("Bearer a"), false);
        for res in [
            ok(&[("vary", "Authorization")], b"1"),
            ok(&[("cache-control", "private")], b"1"),
        ] {
            c.store(&k, &res, Instant::now());
            assert_eq!(state(&c, &k), "miss");
        }
        // Not shared: two principals, two entries.
        let own = Cache::new(&config(60)).unwrap();
        own.store(
            &key("/a", Some("Bearer a"), true),
            &ok(&[], b"1"),
            Instant::now(),
        );
        assert_eq!(state(&own, &key("/a", Some("Bearer b"), true)), "miss");
    }

    #[tokio::test(start_paused = true)]
    async fn a_304_makes_the_entry_fresh_again_with_the_stored_body() {
        let c = Cache::new(&config(10)).unwrap();
        let k = key("/a", None, true);
        c.store(&k, &ok(&[("etag", "\"v1\"")], b"body"), Instant::now());
        tokio::time::advance(Duration::from_secs(11)).await;
        let Lookup::Refresh(e) = c.lookup(&k, Instant::now()) else {
            panic!("an entry with an ETag is kept to be revalidated");
        };
        assert_eq!(e.etag.as_ref().unwrap(), "\"v1\"");
        let not_modified = Response {
            status: StatusCode::NOT_MODIFIED,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let res = c.revalidated(&k, &e, &not_modified, Instant::now());
        assert_eq!(res.body, "body");
        assert_eq!(state(&c, &k), "fresh");
    }

    /// The bounds hold whichever binds: many small responses (entries), or few large ones (bytes).
    #[test]
    fn the_memory_bound_holds_under_100k_distinct_keys() {
        static SMALL: [u8; 100] = [b'x'; 100];
        static LARGE: [u8; 8192] = [b'x'; 8192];
        for (body, max_entries) in [(&SMALL[..], 1_000u64), (&LARGE[..], 100_000)] {
            let max_bytes = 1024 * 1024;
            let c = Cache::new(&CacheConfig {
                max_entries,
                max_bytes: bff_config::ByteSize(max_bytes),
                ..config(60)
            })
            .unwrap();
            let now = Instant::now();
            for i in 0..100_000 {
                let k = key(&format!("/items/{i}"), None, true);
                c.store(
                    &k,
                    &Response {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::from_static(body),
                    },
                    now,
                );
            }
            let (n, bytes) = (c.entry_count(), c.bytes());
            assert!(n > 0 && n <= max_entries, "{n} entries");
            assert!(bytes > 0 && bytes <= max_bytes, "{bytes} bytes");
        }
    }
}
