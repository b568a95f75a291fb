//! What stands between a GET call and its service when the service (or the backend, or the call) asks
//! for it: the cache, then coalescing. A call that asks for neither never comes here.

use crate::{
    Cache, CallContext, ErrorKind, MeshError, Response,
    cache::{Entry, Lookup},
    coalesce::{self, CallKey, Landed, Lead, Seat},
    request::Prepared,
};
use bff_telemetry::metrics::CacheResult;
use http::{HeaderMap, Method, StatusCode, header};
use std::sync::Arc;
use tokio::time::Instant;

/// How a call is shielded: coalesced with identical calls in flight, and cached when it has a cache (a
/// cache miss is always coalesced: one call fills the entry).
#[derive(Clone, Debug)]
pub(crate) struct Shield {
    pub(crate) cache: Option<Cache>,
}

impl Shield {
    /// The shield of a call that asks for a cache or coalescing; `None` (straight to the service) for
    /// anything but a bodiless GET, and for a conditional or range request, whose answer is the caller's.
    pub(crate) fn of(
        method: &Method,
        body: bool,
        own: &HeaderMap,
        forward: &HeaderMap,
        cache: Option<Cache>,
    ) -> Option<Self> {
        let conditional = |h: &HeaderMap| {
            [
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_MATCH,
                header::IF_UNMODIFIED_SINCE,
                header::IF_RANGE,
                header::RANGE,
            ]
            .iter()
            .any(|n| h.contains_key(n))
        };
        (method == Method::GET && !body && !conditional(own) && !conditional(forward))
            .then_some(Self { cache })
    }
}

/// Sends a shielded call: from the cache when it has a usable entry, else through a shared call.
pub(crate) async fn send(call: &Prepared, shield: &Shield) -> Result<Response, MeshError> {
    let service = &call.service;
    let key = |principal| {
        CallKey::new(
            service.shared_name().clone(),
            call.pq.clone(),
            &call.ctx.forward,
            &call.own,
            principal,
        )
    };
    // A call is shared only by callers with the same principal, even when the cache's entries are
    // shared by all (`shared = true`).
    let flight_key = key(true);
    let cache_key = match &shield.cache {
        Some(c) if c.0.shared => key(false),
        _ => flight_key.clone(),
    };
    let wall_start = call
        .ctx
        .tracer
        .as_ref()
        .map(|_| std::time::SystemTime::now());
    let mut stale = None;
    if let Some(cache) = &shield.cache {
        cache.register(service.caches());
        match cache.lookup(&cache_key, Instant::now()) {
            Lookup::Fresh(res) => {
                record(call, Some(CacheResult::Hit), false, wall_start);
                return Ok(res);
            }
            Lookup::Stale(entry) => {
                if entry.start_refresh() {
                    refresh_in_background(call, cache, flight_key, cache_key, entry.clone());
                }
                record(call, Some(CacheResult::Stale), false, wall_start);
                return Ok(entry.response.clone());
            }
            Lookup::Refresh(entry) => stale = Some(entry),
            Lookup::Miss => {}
        }
    }
    let scope = shield.cache.as_ref().map_or(0, Cache::id);
    let mut again = false;
    loop {
        let (slot, coalesced) = match service.flights().join(service, flight_key.clone(), scope) {
            Seat::Follow(slot) => {
                // Counted on joining: the shared call may still be on its way.
                service.count_coalesced();
                (slot, true)
            }
            Seat::Lead(lead, slot) => {
                let (cache, key) = (shield.cache.clone(), cache_key.clone());
                tokio::spawn(fly(call.clone(), cache, key, stale.clone(), lead, false));
                (slot, false)
            }
        };
        let Landed {
            result: out,
            served,
        } = coalesce::wait(slot, call.ctx.deadline, service.shared_name()).await;
        // The shared call ran under its first caller's deadline: a caller that joined it and still has
        // time when that deadline passed makes the call again (once), under its own.
        if coalesced
            && !again
            && out.as_ref().is_err_and(|e| e.kind() == ErrorKind::Deadline)
            && call.ctx.deadline.is_none_or(|d| Instant::now() < d)
        {
            again = true;
            continue;
        }
        let served = served.or(shield.cache.as_ref().map(|_| CacheResult::Miss));
        record(call, served, coalesced, wall_start);
        return out;
    }
}

/// One refresh of a stale entry, in the background, unless a call for its key is already in flight.
fn refresh_in_background(
    call: &Prepared,
    cache: &Cache,
    flight_key: CallKey,
    key: CallKey,
    entry: Arc<Entry>,
) {
    let service = &call.service;
    match service.flights().join(service, flight_key, cache.id()) {
        Seat::Follow(_) => entry.refresh_failed(),
        Seat::Lead(lead, _) => {
            let mut call = call.clone();
            // Not bound to the request that found the entry stale (its deadline, its access-log counts):
            // each attempt has the service's timeout.
            call.ctx = Arc::new(CallContext {
                deadline: None,
                stats: Default::default(),
                ..(*call.ctx).clone()
            });
            tracing::debug!(service = %service.name(), "refreshing a stale entry in the background");
            tokio::spawn(fly(call, Some(cache.clone()), key, Some(entry), lead, true));
        }
    }
}

/// The shared call: revalidates a stored entry with `If-None-Match` when it has an ETag, stores what may
/// be stored, serves the stale entry when the service fails within `stale_if_error`, and hands the
/// outcome to every caller.
async fn fly(
    mut call: Prepared,
    cache: Option<Cache>,
    key: CallKey,
    stale: Option<Arc<Entry>>,
    lead: Lead,
    background: bool,
) {
    call.shield = None;
    if cache.is_some()
        && let Some(etag) = stale.as_ref().and_then(|e| e.etag.clone())
    {
        call.own.insert(header::IF_NONE_MATCH, etag);
    }
    let out = call.run().await;
    let now = Instant::now();
    let (out, served) = match (&cache, stale.as_deref(), out) {
        (None, _, out) => (out, None),
        (Some(c), Some(entry), Ok(res)) if res.status == StatusCode::NOT_MODIFIED => (
            Ok(c.revalidated(&key, entry, &res, now)),
            Some(CacheResult::Revalidated),
        ),
        (Some(c), _, Ok(res)) if !res.status.is_server_error() => {
            c.store(&key, &res, now);
            (Ok(res), Some(CacheResult::Miss))
        }
        // A failure or a 5xx: the stale entry stands in for it within stale_if_error.
        (Some(_), entry, out) => match entry.filter(|e| e.usable_on_error(now)) {
            Some(e) => (Ok(e.response.clone()), Some(CacheResult::Stale)),
            None => (out, Some(CacheResult::Miss)),
        },
    };
    if background && let Some(e) = &stale {
        let refreshed = matches!(served, Some(CacheResult::Miss | CacheResult::Revalidated))
            && out.as_ref().is_ok_and(|r| r.status.is_success());
        if !refreshed {
            e.refresh_failed();
        }
    }
    lead.land(Arc::new(Landed {
        result: out,
        served,
    }));
}

/// The metrics, the log line and (traces exported) the span of a shielded call.
fn record(
    call: &Prepared,
    served: Option<CacheResult>,
    coalesced: bool,
    wall_start: Option<std::time::SystemTime>,
) {
    if let Some(s) = served {
        call.service.count_cache(s);
    }
    tracing::debug!(
        service = %call.service.name(),
        cache = served.map(CacheResult::name),
        coalesced,
        "shielded call"
    );
    if let Some(start) = wall_start {
        span(call, served, coalesced, start);
    }
}

#[cold]
#[inline(never)]
fn span(
    call: &Prepared,
    served: Option<CacheResult>,
    coalesced: bool,
    start: std::time::SystemTime,
) {
    let Some(tracer) = &call.ctx.tracer else {
        return;
    };
    let mut attributes = vec![
        ("bff.service", call.service.name().to_string().into()),
        ("http.request.method", call.method.as_str().into()),
        ("bff.coalesced", coalesced.into()),
    ];
    if let Some(s) = served {
        attributes.push(("bff.cache", s.name().into()));
    }
    let (_, span_id) = call.ctx.trace.child_traceparent();
    tracer.record(bff_telemetry::Span {
        trace_id: call.ctx.trace.trace_id,
        span_id,
        parent_span_id: Some(call.ctx.trace.span_id),
        name: format!("{} {} (shielded)", call.method, call.service.name()),
        kind: bff_telemetry::SpanKind::Client,
        start,
        end: std::time::SystemTime::now(),
        attributes,
        error: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_bodiless_unconditional_gets_are_shielded() {
        let none = HeaderMap::new();
        let with = |name: header::HeaderName| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h
        };
        assert!(Shield::of(&Method::GET, false, &none, &none, None).is_some());
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            assert!(Shield::of(&m, false, &none, &none, None).is_none(), "{m}");
        }
        assert!(Shield::of(&Method::GET, true, &none, &none, None).is_none());
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::RANGE,
        ] {
            let h = with(name.clone());
            assert!(
                Shield::of(&Method::GET, false, &h, &none, None).is_none(),
                "own {name}"
            );
            assert!(
                Shield::of(&Method::GET, false, &none, &h, None).is_none(),
                "forwarded {name}"
            );
        }
        let other = with(header::ACCEPT_LANGUAGE);
        assert!(Shield::of(&Method::GET, false, &other, &other, None).is_some());
    }
}
