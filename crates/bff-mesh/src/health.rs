//! Active health checks: each endpoint of a service with `[services.NAME.health_check]` is probed with
//! `GET path` every `interval`; `unhealthy_threshold` failures in a row take it out of rotation,
//! `healthy_threshold` successes bring it back.

use crate::{Service, endpoint::Endpoint};
use bff_config::HealthCheckConfig;
use bytes::Bytes;
use http::{Request, header::USER_AGENT};
use http_body_util::Full;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    pub(crate) cfg: HealthCheckConfig,
}

impl HealthCheck {
    /// One task for the service: every `interval`, all its current endpoints are probed concurrently.
    pub(crate) fn spawn(&self, service: &Arc<Service>) -> Vec<JoinHandle<()>> {
        let service = service.clone();
        let cfg = self.cfg.clone();
        vec![tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.interval.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let set = service.endpoints();
                let probes = set.list.iter().map(|ep| async {
                    let ok = probe(&service, ep, &cfg).await;
                    ep.health_result(ok, &cfg, service.name());
                });
                futures::future::join_all(probes).await;
            }
        })]
    }
}

async fn probe(service: &Service, ep: &Endpoint, cfg: &HealthCheckConfig) -> bool {
    let Ok(uri) = service.uri(ep, cfg.path.as_str()) else {
        return false;
    };
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    req.headers_mut()
        .insert(USER_AGENT, service.user_agent().clone());
    match tokio::time::timeout(cfg.timeout.get(), service.request(req)).await {
        Ok(Ok(res)) => res.status().is_success(),
        _ => false,
    }
}
