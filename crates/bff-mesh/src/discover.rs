//! Discovery: where a service's endpoints come from when they are not static. Each source runs as a task
//! that hands complete endpoint sets to [`Service::set_endpoints`]; a source that fails keeps the last good
//! set (and says so once in the log).

use crate::Service;
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::task::JoinHandle;

/// A `discovery` URL of `[services.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Discovery {
    /// `file://path`: a JSON array of `"host:port"` (or `{"address": "host:port", ...}`), watched.
    File(PathBuf),
}

impl Discovery {
    /// Parses a `discovery` URL; relative file paths are read from `base` (the config file's folder).
    pub(crate) fn parse(url: &str, base: Option<&std::path::Path>) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file://") {
            let p = PathBuf::from(path);
            let p = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            };
            return Ok(Self::File(p));
        }
        Err(format!("discovery {url:?} is not supported in this build"))
    }

    pub(crate) fn spawn(self, service: Arc<Service>) -> JoinHandle<()> {
        match self {
            Self::File(path) => tokio::spawn(watch_file(path, service)),
        }
    }
}

/// Reads the file every second; applies it when its content changes and parses.
async fn watch_file(path: PathBuf, service: Arc<Service>) {
    let mut last: Option<Vec<u8>> = None;
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let read = tokio::fs::read(&path).await;
        let result = match read {
            Ok(bytes) if last.as_ref() == Some(&bytes) => continue,
            Ok(bytes) => parse_endpoints(&bytes).map(|eps| (bytes, eps)),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        match result.and_then(|(bytes, eps)| service.set_endpoints(&eps).map(|()| bytes)) {
            Ok(bytes) => {
                last = Some(bytes);
                last_error = None;
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(service = %service.name(), error = %e, "discovery file refused; keeping the last good endpoints");
                    last_error = Some(e);
                }
            }
        }
    }
}

/// `["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 2, "zone": "a"}]`.
pub(crate) fn parse_endpoints(bytes: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.as_array().ok_or("expected a JSON array of endpoints")?;
    items
        .iter()
        .map(|item| {
            let addr = match item {
                serde_json::Value::String(s) => s.as_str(),
                serde_json::Value::Object(o) => o
                    .get("address")
                    .and_then(|a| a.as_str())
                    .ok_or("an endpoint object needs \"address\"")?,
                _ => return Err("an endpoint is \"host:port\" or an object".to_string()),
            };
            match addr.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                    Ok(addr.to_string())
                }
                _ => Err(format!("{addr:?} is not host:port")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_files() {
        assert_eq!(
            parse_endpoints(
                br#"["10.0.0.1:80", {"address": "10.0.0.2:81", "weight": 2, "zone": "a"}]"#
            )
            .unwrap(),
            ["10.0.0.1:80", "10.0.0.2:81"]
        );
        assert!(parse_endpoints(b"[\"nope\"]").is_err());
        assert!(parse_endpoints(b"{").is_err());
        assert!(parse_endpoints(b"{}").is_err());
        assert_eq!(parse_endpoints(b"[]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn urls() {
        assert_eq!(
            Discovery::parse("file://eps.json", Some(std::path::Path::new("/etc/bff"))).unwrap(),
            Discovery::File("/etc/bff/eps.json".into())
        );
        assert!(Discovery::parse("zk://x", None).is_err());
    }
}
