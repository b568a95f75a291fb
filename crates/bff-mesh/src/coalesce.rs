//! Request coalescing: identical downstream GETs in flight at the same moment share one call.
//!
//! Identical means the same [`CallKey`]: service, path with query and every header the call carries but
//! those the mesh sets for each request. Keys are compared whole, never by a hash alone: two users' calls
//! that differ only in their `authorization` are two calls. The shared call runs in a task of its own, so
//! no caller going away cancels it for the others; each caller waits with its own deadline, and receives
//! the outcome (a failure too) as its own.

use crate::{ErrorKind, MeshError, Response};
use bff_telemetry::metrics::CacheResult;
use http::{HeaderMap, HeaderName, HeaderValue, header, uri::PathAndQuery};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::{sync::watch, time::Instant};

/// Everything a downstream GET's answer may depend on: the service, the path with its query, and the
/// headers sent but the ones the mesh sets for each request (request id, trace context, deadline,
/// `x-forwarded-for`/`-proto`, user-agent when it is the mesh's own).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CallKey {
    pub(crate) service: Arc<str>,
    pub(crate) pq: PathAndQuery,
    /// Sorted by name, then value.
    headers: Box<[(HeaderName, HeaderValue)]>,
}

/// Headers that say who is calling: part of every key but a shared cache's.
pub(crate) fn is_principal(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || name == header::PROXY_AUTHORIZATION
}

impl CallKey {
    /// The key of a call with the route's forwarded headers `forward` and the handler's own `own` (which
    /// replace forwarded ones of the same name, as on the wire). `principal = false` leaves out the
    /// headers that say who calls (a cache with `shared = true`).
    pub(crate) fn new(
        service: Arc<str>,
        pq: PathAndQuery,
        forward: &HeaderMap,
        own: &HeaderMap,
        principal: bool,
    ) -> Self {
        let mut headers: Vec<(HeaderName, HeaderValue)> =
            Vec::with_capacity(forward.len() + own.len());
        for (k, v) in forward {
            if !own.contains_key(k) && !crate::headers::is_never_forwarded(k) {
                headers.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in own {
            headers.push((k.clone(), v.clone()));
        }
        if !principal {
            headers.retain(|(k, _)| !is_principal(k));
        }
        headers.sort_by(|a, b| (a.0.as_str(), a.1.as_bytes()).cmp(&(b.0.as_str(), b.1.as_bytes())));
        Self {
            service,
            pq,
            headers: headers.into_boxed_slice(),
        }
    }

    /// Whether the call says who calls (a forwarded `authorization`, a cookie).
    pub(crate) fn has_principal(&self) -> bool {
        self.headers.iter().any(|(k, _)| is_principal(k))
    }

    /// About what the key takes in memory.
    pub(crate) fn bytes(&self) -> usize {
        64 + self.service.len()
            + self.pq.as_str().len()
            + self
                .headers
                .iter()
                .map(|(k, v)| 48 + k.as_str().len() + v.len())
                .sum::<usize>()
    }
}

/// The outcome of a shared call, as every caller receives it.
#[derive(Debug)]
pub(crate) struct Landed {
    pub(crate) result: Result<Response, MeshError>,
    /// How the cache served it, when a cache took part.
    pub(crate) served: Option<CacheResult>,
}

type Landing = Arc<Landed>;

type Slot = watch::Receiver<Option<Landing>>;

/// A shared call's key: the call's, always with its principal, and the cache it fills (its address; 0
/// without one), so that a caller never receives what another cache's rules made (a stale stand-in).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlightKey(CallKey, usize);

/// The shared calls in flight of one service.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightKey, Slot>>,
}

/// A caller's place in a shared call: it leads it (and must start it), or follows one in flight.
pub(crate) enum Seat {
    Lead(Lead, Slot),
    Follow(Slot),
}

/// The right, and the duty, to make the shared call of a key and hand its outcome to every caller.
/// Dropped without landing (the task panicked), the key is freed and the callers fail.
pub(crate) struct Lead {
    service: Arc<crate::Service>,
    key: Option<FlightKey>,
    tx: watch::Sender<Option<Landing>>,
}

impl Flights {
    /// Joins the call in flight for `key` made for the same cache (`scope`), or leads a new one.
    pub(crate) fn join(&self, service: &Arc<crate::Service>, key: CallKey, scope: usize) -> Seat {
        let key = FlightKey(key, scope);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(&key) {
            return Seat::Follow(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx.clone());
        Seat::Lead(
            Lead {
                service: service.clone(),
                key: Some(key),
                tx,
            },
            rx,
        )
    }
}

impl Lead {
    /// Hands the outcome to every caller; a caller arriving from now on starts a new call (or finds the
    /// response in the cache, stored before this).
    pub(crate) fn land(mut self, landing: Landing) {
        self.release();
        self.tx.send_replace(Some(landing));
    }

    fn release(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut map = self
            .service
            .flights()
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if map
            .get(&key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&key);
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.release();
    }
}

/// Waits for the shared call's outcome until `deadline` (the caller's own).
pub(crate) async fn wait(mut slot: Slot, deadline: Option<Instant>, service: &str) -> Landed {
    let landed = async {
        match slot.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        }
    };
    let landed = match deadline {
        None => landed.await,
        Some(d) => match tokio::time::timeout_at(d, landed).await {
            Ok(l) => l,
            Err(_) => {
                let e = MeshError::new(
                    ErrorKind::Deadline,
                    service,
                    "deadline reached waiting for a shared call",
                );
                return Landed {
                    result: Err(e),
                    served: None,
                };
            }
        },
    };
    match landed {
        Some(l) => Landed {
            result: l.result.clone(),
            served: l.served,
        },
        None => Landed {
            result: Err(MeshError::new(
                ErrorKind::Reset,
                service,
                "the shared call ended without an outcome",
            )),
            served: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        forward: &[(&'static str, &'static str)],
        own: &[(&'static str, &'static str)],
    ) -> CallKey {
        let map = |h: &[(&'static str, &'static str)]| {
            h.iter()
                .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
                .collect::<HeaderMap>()
        };
        CallKey::new(
            "svc".into(),
            PathAndQuery::from_static("/a?b=1"),
            &map(forward),
            &map(own),
            true,
        )
    }

    #[test]
    fn keys_are_the_headers_sent_in_any_order_and_differ_by_principal() {
        assert_eq!(
            key(
                &[("accept-language", "fr"), ("authorization", "Bearer a")],
                &[]
            ),
            key(
                &[("authorization", "Bearer a"), ("accept-language", "fr")],
                &[]
            )
        );
        assert_ne!(
            key(&[("authorization", "Bearer a")], &[]),
            key(&[("authorization", "Bearer b")], &[])
        );
        // The handler's own header replaces the forwarded one, as on the wire.
        assert_eq!(
            key(&[("x-v", "1")], &[("x-v", "2")]),
            key(&[], &[("x-v", "2")])
        );
        // Never-forwarded headers in a hand-made context are left out, as on the wire.
        assert_eq!(key(&[("connection", "close")], &[]), key(&[], &[]));
        let shared = |v| {
            let mut f = HeaderMap::new();
            f.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            CallKey::new(
                "svc".into(),
                PathAndQuery::from_static("/a"),
                &f,
                &HeaderMap::new(),
                false,
            )
        };
        assert_eq!(shared("Bearer a"), shared("Bearer b"));
        assert!(!shared("Bearer a").has_principal());
        assert!(key(&[("authorization", "Bearer a")], &[]).has_principal());
    }
}
