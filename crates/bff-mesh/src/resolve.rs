//! The discovery interface: a [`Resolve`] yields a stream of [`Update`]s (add, remove, reset, as
//! linkerd2-proxy's `Resolve` does) that the service applies without dropping in-flight requests or the
//! pooled connections of endpoints that remain. The built-in sources (`file://`, `dns://`, `dns+srv://`,
//! `etcd://`) are resolvers of this kind that send complete sets; [`Mesh::resolve_with`] plugs in others
//! (a service registry of your own, a test double).

use crate::{Mesh, Service};
use std::{future::Future, pin::Pin, sync::Arc};
use tokio::{sync::mpsc, task::JoinHandle};

/// A change of a service's endpoints (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// These endpoints are added (or kept).
    Add(Vec<String>),
    /// These endpoints are removed; calls in flight to them finish.
    Remove(Vec<String>),
    /// The endpoints are exactly these.
    Reset(Vec<String>),
}

/// A source of endpoint updates for one service.
pub trait Resolve: Send + 'static {
    /// Sends updates until the source ends or the receiver is dropped (the service went away).
    fn resolve(
        self: Box<Self>,
        updates: mpsc::Sender<Update>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl Service {
    /// Applies one update to the current endpoint set.
    pub fn apply(&self, update: Update) -> Result<(), crate::ServiceError> {
        let current: Vec<String> = self
            .endpoints()
            .list
            .iter()
            .map(|e| e.addr.to_string())
            .collect();
        let next = match update {
            Update::Reset(all) => all,
            Update::Add(add) => {
                let mut next = current;
                next.extend(add);
                dedup(next)
            }
            Update::Remove(remove) => current
                .into_iter()
                .filter(|a| !remove.contains(a))
                .collect(),
        };
        self.set_endpoints(&next)
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|a| seen.insert(a.clone()));
    v
}

impl Mesh {
    /// Feeds the service named `service` from `resolver` (on the current tokio runtime) until the
    /// resolver ends or the returned task is aborted. A bad update is logged and skipped.
    pub fn resolve_with(
        &self,
        service: &str,
        resolver: impl Resolve,
    ) -> Result<JoinHandle<()>, crate::ServiceError> {
        let svc: Arc<Service> = self
            .service_arc(service)
            .ok_or_else(|| crate::ServiceError::Unknown(service.to_string()))?;
        let (tx, mut rx) = mpsc::channel(64);
        let source = tokio::spawn(Box::new(resolver).resolve(tx));
        Ok(tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                if let Err(e) = svc.apply(update) {
                    tracing::error!(service = %svc.name(), error = %bff_telemetry::ErrorChain(&e), "endpoint update refused");
                }
            }
            let _ = source.await;
        }))
    }
}
