//! `etcd://host:port[,...]/prefix` discovery through etcd's JSON gateway (`/v3/kv/range`, `/v3/watch`),
//! which every etcd since 3.4 serves on its client port. The gateway speaks HTTP/1.1 and JSON, so this
//! source needs no gRPC stack and no `protoc` at build time: the framework's own pooled HTTP client and
//! serde_json do the work (docs/getting-started.md, "Features").
//!
//! A session is a get of every key under the prefix, then a watch from the revision after it, so that no
//! change between the two is lost. The watch is one long response of JSON objects, one per event batch.

use super::{DiscoveryError, Outage, check_host_port, endpoint_of};
use crate::endpoint::Endpoints;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use bytes::{Buf, Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::Deserialize;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// etcd reconnects after this, doubling (with jitter) up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Connecting to etcd, reading the prefix and creating the watch must each finish within this.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A watch response is a stream of small objects; one larger than this is not etcd talking.
const MAX_MESSAGE: usize = 16 << 20;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Get + watch, again and again: a session ends with an error, the next one starts after a backoff,
/// on the next of the URL's endpoints.
pub(super) async fn watch(endpoints: Vec<String>, prefix: String, service: Arc<Endpoints>) {
    let client = client();
    let mut outage = Outage::new(&service, "etcd");
    let mut backoff = MIN_BACKOFF;
    let mut next = 0;
    loop {
        let endpoint = &endpoints[next % endpoints.len()];
        let gw = Gateway {
            client: &client,
            endpoint,
        };
        let e = session(&gw, &prefix, &service, &mut outage, &mut backoff).await;
        outage.failed(&e);
        next += 1;
        // Full jitter over the upper half, so that many BFFs do not reconnect in step.
        let wait = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(TIMEOUT));
    // A watch is idle for as long as nothing changes: TCP keep-alive finds a member that went away
    // without closing the connection (the gateway sends nothing on an idle watch).
    connector.set_keepalive(Some(Duration::from_secs(5)));
    connector.set_keepalive_interval(Some(Duration::from_secs(3)));
    connector.set_keepalive_retries(Some(3));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

struct Gateway<'a> {
    client: &'a HttpClient,
    endpoint: &'a str,
}

impl Gateway<'_> {
    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let req = Request::post(format!("http://{}{path}", self.endpoint))
            .header(header::CONTENT_TYPE, "application/json")
            // A member cut off from the cluster's leader must not serve a watch that never fires
            // (gRPC metadata `hasleader`, as the gateway forwards it).
            .header("grpc-metadata-hasleader", "true")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("etcd {path}: {e}"))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("etcd {} {path}: {}", self.endpoint, error_chain(&e)))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = read_limited(resp.into_body(), 4096)
                .await
                .unwrap_or_default();
            return Err(format!(
                "etcd {} {path}: {status}: {}",
                self.endpoint,
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(resp)
    }
}

/// One session: reads every key under the prefix, applies them, then applies each watched change.
/// Returns why it ended.
async fn session(
    gw: &Gateway<'_>,
    prefix: &str,
    service: &Endpoints,
    outage: &mut Outage,
    backoff: &mut Duration,
) -> String {
    let within = |what: &str| format!("etcd {what}: no answer within {TIMEOUT:?}");
    let key = B64.encode(prefix);
    let range_end = B64.encode(prefix_end(prefix.as_bytes()));
    let range = serde_json::json!({ "key": key, "range_end": range_end });
    let got = tokio::time::timeout(TIMEOUT, async {
        let resp = gw.post("/v3/kv/range", range).await?;
        let body = read_limited(resp.into_body(), MAX_MESSAGE)
            .await
            .map_err(|e| format!("etcd: reading the response: {}", error_chain(&*e)))?;
        serde_json::from_slice::<RangeResponse>(&body)
            .map_err(|e| format!("etcd get {prefix}: not a range response: {e}"))
    })
    .await;
    let got = match got {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return e,
        Err(_) => return within("get"),
    };
    let mut keys = Keys::new(service);
    for kv in &got.kvs {
        keys.put(&kv.key, &kv.value);
    }
    if let Err(e) = keys.apply() {
        return error_chain(&e);
    }
    outage.recovered();
    *backoff = MIN_BACKOFF;

    let create = serde_json::json!({ "create_request": {
        "key": key,
        "range_end": range_end,
        "start_revision": got.header.revision + 1,
    }});
    let resp = match tokio::time::timeout(TIMEOUT, gw.post("/v3/watch", create)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return e,
        Err(_) => return within("watch"),
    };
    let mut stream = Messages::new(resp.into_body());
    loop {
        let msg = match stream.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return "etcd closed the watch".to_string(),
            Err(e) => return format!("etcd watch {prefix}: {e}"),
        };
        let result = match msg {
            WatchMessage::Result(r) => r,
            WatchMessage::Error(e) => {
                return format!("etcd watch {prefix}: {}", e.message.unwrap_or_default());
            }
        };
        if result.canceled {
            // Compaction passed our revision (or etcd cancelled the watch): start over with a get.
            return format!(
                "etcd cancelled the watch (compact revision {}): {}",
                result.compact_revision,
                result.cancel_reason.unwrap_or_default()
            );
        }
        if result.events.is_empty() {
            continue;
        }
        for ev in &result.events {
            match ev.kind {
                EventType::Put => keys.put(&ev.kv.key, &ev.kv.value),
                EventType::Delete => keys.delete(&ev.kv.key),
            }
        }
        if let Err(e) = keys.apply() {
            return error_chain(&e);
        }
    }
}

/// The end of a prefix range: the prefix with its last byte below 0xff incremented (etcd's
/// `clientv3.GetPrefixRangeEnd`); all 0xff (or empty) means "to the end of the keyspace".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The causes of a client error, joined: hyper-util's `Display` says only "client error (Connect)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The body, at most `max` bytes; the error says what went wrong (too large, or the transport's error).
async fn read_limited(
    body: hyper::body::Incoming,
    max: usize,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    http_body_util::Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
}

/// The JSON objects of a watch response, as they arrive (the gateway writes one per line, but nothing
/// here depends on the delimiter).
struct Messages {
    body: hyper::body::Incoming,
    buf: BytesMut,
}

impl Messages {
    fn new(body: hyper::body::Incoming) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<WatchMessage>, String> {
        loop {
            if let Some(msg) = self.parse()? {
                return Ok(Some(msg));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(error_chain(&e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                    if self.buf.len() > MAX_MESSAGE {
                        return Err(format!("a message larger than {MAX_MESSAGE} bytes"));
                    }
                }
            }
        }
    }

    /// The first complete object of the buffer, removed from it; `None` while it is incomplete.
    fn parse(&mut self) -> Result<Option<WatchMessage>, String> {
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        self.buf.advance(start);
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<WatchMessage>();
        match it.next() {
            Some(Ok(msg)) => {
                let used = it.byte_offset();
                self.buf.advance(used);
                Ok(Some(msg))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(format!("not a watch response: {e}")),
            None => Ok(None),
        }
    }
}

// ---- the gateway's JSON (proto3's JSON mapping: int64 as strings, bytes as base64, defaults omitted) ----

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize, Default)]
struct KeyValue {
    #[serde(default, deserialize_with = "base64")]
    key: Vec<u8>,
    #[serde(default, deserialize_with = "base64")]
    value: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WatchMessage {
    Result(WatchResult),
    Error(GatewayError),
}

#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: EventType,
    #[serde(default)]
    kv: KeyValue,
}

#[derive(Deserialize, Default)]
enum EventType {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn base64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    B64.decode(s).map_err(serde::de::Error::custom)
}

/// The keys under a prefix and their endpoints. A key whose value is not an endpoint is left out (and
/// logged): one bad registration must not take the others' away.
struct Keys<'a> {
    service: &'a Endpoints,
    keys: BTreeMap<Vec<u8>, String>,
}

impl<'a> Keys<'a> {
    fn new(service: &'a Endpoints) -> Self {
        Self {
            service,
            keys: BTreeMap::new(),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        match value_endpoint(value) {
            Ok(addr) => {
                self.keys.insert(key.to_vec(), addr);
            }
            Err(e) => {
                tracing::warn!(service = %self.service.name(), key = %String::from_utf8_lossy(key), error = %bff_telemetry::ErrorChain(&e), "etcd key ignored: its value is not an endpoint");
                self.keys.remove(key);
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    fn apply(&self) -> Result<(), crate::ServiceError> {
        let mut addrs: Vec<String> = self.keys.values().cloned().collect();
        addrs.sort();
        addrs.dedup();
        self.service.set_endpoints(&addrs)
    }
}

/// `host:port`, or JSON: `"host:port"` or `{"address": "host:port", ...}`.
fn value_endpoint(value: &[u8]) -> Result<String, DiscoveryError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| DiscoveryError::Shape("not UTF-8"))?
        .trim();
    if text.starts_with(['{', '"']) {
        let v: serde_json::Value = serde_json::from_str(text).map_err(DiscoveryError::NotJson)?;
        endpoint_of(&v)
    } else {
        check_host_port(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(value_endpoint(b"10.0.0.1:80\n").unwrap(), "10.0.0.1:80");
        assert_eq!(
            value_endpoint(br#"{"address": "users-1.internal:8080", "zone": "a"}"#).unwrap(),
            "users-1.internal:8080"
        );
        assert_eq!(value_endpoint(br#""10.0.0.1:80""#).unwrap(), "10.0.0.1:80");
        assert!(value_endpoint(b"10.0.0.1").is_err());
        assert!(value_endpoint(br#"{"addr": "10.0.0.1:80"}"#).is_err());
        assert!(value_endpoint(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn gateway_json() {
        let r: RangeResponse = serde_json::from_str(
            r#"{"header":{"cluster_id":"1","revision":"42"},"kvs":[{"key":"L2EvMQ==","value":"MTAuMC4wLjE6ODA=","mod_revision":"3"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(r.header.revision, 42);
        assert_eq!(r.kvs[0].key, b"/a/1");
        assert_eq!(r.kvs[0].value, b"10.0.0.1:80");
        // An empty prefix: no kvs at all.
        let r: RangeResponse = serde_json::from_str(r#"{"header":{"revision":"7"}}"#).unwrap();
        assert!(r.kvs.is_empty());
        let w: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"revision":"43"},"events":[{"kv":{"key":"L2EvMQ==","value":"eA=="}},{"type":"DELETE","kv":{"key":"L2EvMg=="}}]}}"#,
        )
        .unwrap();
        let WatchMessage::Result(w) = w else { panic!() };
        assert!(matches!(w.events[0].kind, EventType::Put));
        assert!(matches!(w.events[1].kind, EventType::Delete));
        assert!(w.events[1].kv.value.is_empty());
        let c: WatchMessage = serde_json::from_str(
            r#"{"result":{"canceled":true,"compact_revision":"40","cancel_reason":"mvcc: required revision has been compacted"}}"#,
        )
        .unwrap();
        let WatchMessage::Result(c) = c else { panic!() };
        assert!(c.canceled && c.compact_revision == 40);
    }
}
