//! Config values written as strings and parsed once, at load, into types that cannot hold a bad value:
//! `retry.on` entries and methods, `hedge_after`, JWT algorithms, rate-limit keys, `hash_key` and forwarded header names. Their consumers (the mesh,
//! the edge, the aggregation engine) take these types as they are and never parse the string again, so
//! what `bff check` accepts is exactly what runs.

use http::HeaderName;
use std::{fmt, str::FromStr};

/// `[bff] name`: the BFF's identity (metrics label, trace `service.name`) and the `user-agent` of its
/// downstream calls, so a non-empty valid header value, kept as one: the mesh sends it as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BffName(http::HeaderValue);

impl BffName {
    pub fn as_str(&self) -> &str {
        // Made from a `str` by `from_str`: visible ASCII or obs-text that is valid UTF-8.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// As the `user-agent` header of downstream calls.
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.0
    }
}

impl Default for BffName {
    fn default() -> Self {
        Self(http::HeaderValue::from_static("bff"))
    }
}

impl FromStr for BffName {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        http::HeaderValue::from_str(s)
            .map(Self)
            .map_err(|_| format!("{s:?} has control characters; it is sent as user-agent").into())
    }
}

impl fmt::Display for BffName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for BffName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for BffName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

from_str_serde!(BffName, "a name such as \"web-bff\"");

/// A failure a service's calls are retried on (`[services.NAME.retry] on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `connect_error`: the TCP (or TLS) connection could not be made.
    ConnectError,
    /// `reset`: the connection broke before a response.
    Reset,
    /// `timeout`: the attempt's timeout elapsed.
    Timeout,
    /// A response status from 400 to 599, written as three digits (`"503"`).
    Status(u16),
}

impl FromStr for RetryOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "connect_error" => Ok(Self::ConnectError),
            "reset" => Ok(Self::Reset),
            "timeout" => Ok(Self::Timeout),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|code| {
                    s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) && (400..600).contains(code)
                })
                .map(Self::Status)
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not connect_error, reset, timeout or a 4xx/5xx status such as \"503\""
                    )
                }),
        }
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectError => f.write_str("connect_error"),
            Self::Reset => f.write_str("reset"),
            Self::Timeout => f.write_str("timeout"),
            Self::Status(code) => write!(f, "{code}"),
        }
    }
}

from_str_serde!(
    RetryOn,
    "connect_error, reset, timeout or a status such as \"503\"",
    visit_u64
);

/// When a slow call gets a hedged second attempt (`[services.NAME] hedge_after`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeAfter {
    /// A fixed delay, greater than zero (`"50ms"`).
    Fixed(std::time::Duration),
    /// A percentile of the service's recent latencies, from 50 to below 100 (`"p95"`, `"p99.9"`).
    Percentile(f64),
}

impl HedgeAfter {
    /// The percentile as a quantile (`p95` -> 0.95), `None` for a fixed delay.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Self::Percentile(p) => Some(p / 100.0),
            Self::Fixed(_) => None,
        }
    }
}

impl FromStr for HedgeAfter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a percentile from \"p50\" to \"p99.9\" nor a duration");
        if let Some(p) = s.strip_prefix('p') {
            let ok = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            return match p.parse::<f64>() {
                Ok(p) if ok && (50.0..100.0).contains(&p) => Ok(Self::Percentile(p)),
                _ => Err(bad()),
            };
        }
        match s.parse::<crate::Duration>() {
            Ok(d) if !d.get().is_zero() => Ok(Self::Fixed(d.get())),
            Ok(_) => Err(format!("{s:?}: a hedging delay must be greater than 0")),
            Err(_) => Err(bad()),
        }
    }
}

impl fmt::Display for HedgeAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => write!(f, "{}", crate::Duration(*d)),
            Self::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

from_str_serde!(
    HedgeAfter,
    "a percentile such as \"p95\" or a duration such as \"50ms\""
);

/// What a rate-limit bucket is keyed on (`key` of `[edge.rate_limit]` and of a route's `rate_limit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// `client_ip`: the client's address (after `edge.trusted_proxies`).
    #[default]
    ClientIp,
    /// `jwt_sub`: the verified token's `sub` (the client's address without one).
    JwtSub,
    /// `header:NAME`: the value of a request header (the client chooses it, and so its bucket).
    Header(HeaderName),
    /// `header:NAME+client_ip`: the header's value and the client's address together.
    HeaderAndClientIp(HeaderName),
}

impl FromStr for RateLimitKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client_ip" => Ok(Self::ClientIp),
            "jwt_sub" => Ok(Self::JwtSub),
            _ => {
                let header = |h: &str| HeaderName::from_bytes(h.as_bytes()).ok();
                s.strip_prefix("header:")
                    .and_then(|h| match h.strip_suffix("+client_ip") {
                        Some(h) => header(h).map(Self::HeaderAndClientIp),
                        None => header(h).map(Self::Header),
                    })
                    .ok_or_else(|| {
                        format!(
                            "{s:?} is not client_ip, jwt_sub, header:NAME or header:NAME+client_ip"
                        )
                    })
            }
        }
    }
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientIp => f.write_str("client_ip"),
            Self::JwtSub => f.write_str("jwt_sub"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::HeaderAndClientIp(h) => write!(f, "header:{h}+client_ip"),
        }
    }
}

from_str_serde!(
    RateLimitKey,
    "client_ip, jwt_sub, header:NAME or header:NAME+client_ip"
);

impl RateLimitKey {
    /// `header:NAME`: a bucket per value of the request header `name`, e.g.
    /// `RateLimitKey::header(HeaderName::from_static("x-client"))`.
    pub fn header(name: HeaderName) -> Self {
        Self::Header(name)
    }

    /// `header:NAME+client_ip`: a bucket per value of the header and client address together.
    pub fn header_and_client_ip(name: HeaderName) -> Self {
        Self::HeaderAndClientIp(name)
    }
}

/// An HTTP method named in the config (`[[routes]] method`, a backend's `method`, `[services.NAME.retry]
/// methods`), in upper case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpMethod(http::Method);

impl HttpMethod {
    pub const GET: Self = Self(http::Method::GET);
    pub const POST: Self = Self(http::Method::POST);
    pub const PUT: Self = Self(http::Method::PUT);
    pub const PATCH: Self = Self(http::Method::PATCH);
    pub const DELETE: Self = Self(http::Method::DELETE);
    pub const HEAD: Self = Self(http::Method::HEAD);
    pub const OPTIONS: Self = Self(http::Method::OPTIONS);

    pub fn method(&self) -> &http::Method {
        &self.0
    }
}

impl PartialEq<&str> for HttpMethod {
    fn eq(&self, other: &&str) -> bool {
        self.0.as_str() == *other
    }
}

impl FromStr for HttpMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KNOWN: [&str; 8] = [
            "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH", "TRACE",
        ];
        let upper = s.to_ascii_uppercase();
        match upper.parse::<http::Method>() {
            Ok(m) if KNOWN.contains(&upper.as_str()) => Ok(Self(m)),
            _ => Err(format!("{s:?} is not one of {}", KNOWN.join(", "))),
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

from_str_serde!(HttpMethod, "an HTTP method such as \"GET\"");

/// A JWT signature algorithm allowed by `[edge.auth.jwt] algorithms`; `none` is not one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl JwtAlgorithm {
    pub const ALL: [Self; 12] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
        Self::HS256,
        Self::HS384,
        Self::HS512,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    /// HS256/HS384/HS512: checked against the shared `secret`.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown or forbidden algorithm {s:?} (allowed: {})",
                    all.join(", ")
                )
            })
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

from_str_serde!(JwtAlgorithm, "a JWT algorithm such as \"RS256\"");

/// Where `ring_hash` finds a request's key (`[services.NAME] hash_key`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// `header:NAME`: a header of the downstream request.
    Header(HeaderName),
    /// `param:NAME`: a route parameter of a declarative route.
    Param(String),
}

impl FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(h) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(h.as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("{s:?}: {h:?} is not a header name"));
        }
        match s.strip_prefix("param:") {
            Some(p)
                if !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok(Self::Param(p.to_string()))
            }
            Some(p) => Err(format!("{s:?}: {p:?} is not a parameter name")),
            None => Err(format!("{s:?} is not header:NAME or param:NAME")),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Param(p) => write!(f, "param:{p}"),
        }
    }
}

from_str_serde!(HashKey, "header:NAME or param:NAME");

/// A client header a route passes to its backends (`forward_headers`): a valid header name (kept in lower
/// case) that is neither hop-by-hop nor framing, since those describe the client's connection and
/// message, not the downstream call's (a forwarded `content-length` or `host` would corrupt the call).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForwardHeader(HeaderName);

/// Whether a header never goes downstream, whoever set it: the hop-by-hop ones (RFC 9110 section
/// 7.6.1: `connection`, `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`, `http2-settings`,
/// every `proxy-*`) and those that frame or address the request (`content-length`, `host`, `expect`).
/// The one list: the config refuses them in `forward_headers`, the mesh strips them from every
/// downstream request.
pub fn is_never_forwarded(name: &HeaderName) -> bool {
    use http::header;
    matches!(
        *name,
        header::CONNECTION
            | header::TE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::UPGRADE
            | header::CONTENT_LENGTH
            | header::HOST
            | header::EXPECT
    ) || matches!(name.as_str(), "keep-alive" | "http2-settings")
        || name.as_str().starts_with("proxy-")
}

impl ForwardHeader {
    pub fn name(&self) -> &HeaderName {
        &self.0
    }
}

impl FromStr for ForwardHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| format!("{s:?} is not a header name"))?;
        if is_never_forwarded(&name) {
            return Err(format!(
                "{name} is a hop-by-hop or framing header: it belongs to the client's connection and is never forwarded"
            ));
        }
        if name == http::header::COOKIE {
            return Err(
                "cookie is never forwarded: the client's cookies (its session cookie among them) are the BFF's, not the services'; a service that needs the user's identity gets a token (`token = \"user\"`)".into(),
            );
        }
        Ok(Self(name))
    }
}

impl fmt::Display for ForwardHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

from_str_serde!(ForwardHeader, "a header name such as \"accept-language\"");

/// A route's `cache_control`: the `Cache-Control` header value of its successful responses (any valid,
/// non-empty header value: the directives are the frontend's to read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheControl(http::HeaderValue);

impl CacheControl {
    pub fn value(&self) -> &http::HeaderValue {
        &self.0
    }
}

impl FromStr for CacheControl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match http::HeaderValue::from_str(s.trim()) {
            Ok(v) if !v.is_empty() => Ok(Self(v)),
            _ => Err(format!(
                "{s:?} is not a header value (e.g. \"private, max-age=10\")"
            )),
        }
    }
}

impl fmt::Display for CacheControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built from a &str: always visible ASCII or obs-text that came from UTF-8.
        f.write_str(&String::from_utf8_lossy(self.0.as_bytes()))
    }
}

from_str_serde!(
    CacheControl,
    "a Cache-Control value such as \"private, max-age=10\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let cc: CacheControl = " private, max-age=10 ".parse().unwrap();
        assert_eq!(cc.value(), "private, max-age=10");
        assert_eq!(cc.to_string(), "private, max-age=10");
        for bad in ["", "  ", "a\u{1}b", "a\nb"] {
            assert!(bad.parse::<CacheControl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_on() {
        assert_eq!("reset".parse::<RetryOn>(), Ok(RetryOn::Reset));
        assert_eq!("503".parse::<RetryOn>(), Ok(RetryOn::Status(503)));
        for bad in [
            "sometimes",
            "+503",
            "0503",
            "5xx",
            "200",
            "600",
            "Reset",
            "",
        ] {
            assert!(bad.parse::<RetryOn>().is_err(), "{bad}");
        }
        assert_eq!(RetryOn::Status(429).to_string(), "429");
        let from_int: Vec<RetryOn> =
            serde_json::from_value(serde_json::json!([503, "reset"])).unwrap();
        assert_eq!(from_int, [RetryOn::Status(503), RetryOn::Reset]);
        assert!(serde_json::from_value::<RetryOn>(serde_json::json!(200)).is_err());
    }

    #[test]
    fn hedge_after() {
        assert_eq!(
            "p95".parse::<HedgeAfter>(),
            Ok(HedgeAfter::Percentile(95.0))
        );
        let q = "p99.9".parse::<HedgeAfter>().unwrap().quantile().unwrap();
        assert!((q - 0.999).abs() < 1e-9, "{q}");
        assert_eq!(
            "20ms".parse::<HedgeAfter>(),
            Ok(HedgeAfter::Fixed(std::time::Duration::from_millis(20)))
        );
        for bad in [
            "p100", "p49", "p", "p5e1", "pNaN", "p-60", "0ms", "soon", "",
        ] {
            assert!(bad.parse::<HedgeAfter>().is_err(), "{bad}");
        }
        for s in ["p95", "p99.9", "20ms", "2s"] {
            assert_eq!(s.parse::<HedgeAfter>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rate_limit_keys() {
        assert_eq!("jwt_sub".parse::<RateLimitKey>(), Ok(RateLimitKey::JwtSub));
        assert_eq!(
            "header:X-Client"
                .parse::<RateLimitKey>()
                .unwrap()
                .to_string(),
            "header:x-client"
        );
        for bad in [
            "user",
            "header:",
            "header:a b",
            "cookie:session",
            "Client_IP",
        ] {
            assert!(bad.parse::<RateLimitKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn jwt_algorithms() {
        for a in JwtAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<JwtAlgorithm>(), Ok(a));
        }
        for bad in ["none", "None", "rs256", "HS1"] {
            assert!(bad.parse::<JwtAlgorithm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!("post".parse::<HttpMethod>().unwrap().to_string(), "POST");
        assert!("GTE".parse::<HttpMethod>().is_err());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(
            "param:user_id".parse::<HashKey>(),
            Ok(HashKey::Param("user_id".into()))
        );
        assert_eq!(
            "header:X-User".parse::<HashKey>().unwrap().to_string(),
            "header:x-user"
        );
        for bad in [
            "cookie:x",
            "header:",
            "header:a b",
            "param:",
            "param:a/b",
            "user",
        ] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forward_headers() {
        assert_eq!(
            "Accept-Language"
                .parse::<ForwardHeader>()
                .unwrap()
                .to_string(),
            "accept-language"
        );
        for bad in [
            "content-length",
            "Host",
            "expect",
            "TE",
            "transfer-encoding",
            "upgrade",
            "connection",
            "keep-alive",
            "trailer",
            "proxy-authorization",
            "Proxy-Connection",
            "a b",
            "",
        ] {
            assert!(bad.parse::<ForwardHeader>().is_err(), "{bad}");
        }
    }
}
