use http::{HeaderMap, HeaderName, header};

/// Whether a header is hop-by-hop (RFC 9110 section 7.6.1): never forwarded across the BFF. The config's
/// list ([`bff_config::is_never_forwarded`]) without the framing headers.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    bff_config::is_never_forwarded(name)
        && !matches!(
            *name,
            header::CONTENT_LENGTH | header::HOST | header::EXPECT
        )
}

/// Whether a header never reaches a downstream, whoever set it (a client through `forward_headers`, a
/// handler through [`RequestBuilder::header`](crate::RequestBuilder::header)): the hop-by-hop ones and
/// those that frame or address the request (`content-length`, `host`, `expect`). The mesh writes the
/// request's framing and its `Host` itself; a client that chose them could smuggle a second request or
/// pick the downstream virtual host.
///
/// The config's own list ([`bff_config::is_never_forwarded`]), which `forward_headers` is checked
/// against at load: one list for both.
pub fn is_never_forwarded(name: &HeaderName) -> bool {
    bff_config::is_never_forwarded(name)
}

/// The one decision of what may be forwarded: `name` may go downstream from a request whose headers are
/// `headers` unless it is [never forwarded](is_never_forwarded) or that request's `Connection` names it
/// (such a header was meant for the hop to the BFF only, RFC 9110 section 7.6.1).
pub fn may_forward(name: &HeaderName, headers: &HeaderMap) -> bool {
    !is_never_forwarded(name) && !named_by_connection(name, headers)
}

fn named_by_connection(name: &HeaderName, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|n| {
            n.trim_ascii()
                .eq_ignore_ascii_case(name.as_str().as_bytes())
        })
}

/// Copies the headers named in `names` (a route's `forward_headers`) from a client's request into
/// `into`, every value of each, except those [`may_forward`] refuses.
pub fn forward_client_headers(names: &[HeaderName], from: &HeaderMap, into: &mut HeaderMap) {
    for name in names {
        if !may_forward(name, from) {
            continue;
        }
        for v in from.get_all(name) {
            into.append(name.clone(), v.clone());
        }
    }
}

/// Removes every header [`may_forward`] refuses: hop-by-hop and framing headers and every header that
/// `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let refused: Vec<HeaderName> = headers
        .keys()
        .filter(|n| !may_forward(n, headers))
        .cloned()
        .collect();
    for n in refused {
        headers.remove(n);
    }
}

/// The properties the fuzzer (`fuzz/fuzz_targets/header_forwarding.rs`) and the seed-corpus test check on
/// any input: the input's lines `name: value` are a client's headers, and every name in them plus the
/// framing ones is listed in `forward_headers`. Then nothing forwarded (nor left by
/// [`strip_hop_by_hop`]) is hop-by-hop, framing, or named in the client's `Connection`, checked against
/// a list of its own; and every other listed header is forwarded with all its values, in order.
#[doc(hidden)]
pub fn check_forwarding_properties(data: &[u8]) {
    const NEVER: [&str; 14] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "content-length",
        "host",
        "expect",
        "proxy-x",
        "http2-settings",
    ];
    let mut from = HeaderMap::new();
    let mut names: Vec<HeaderName> = NEVER.iter().map(|n| HeaderName::from_static(n)).collect();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if !names.contains(&name) {
            names.push(name.clone());
        }
        from.append(name, value);
    }
    // Named by `Connection`: every comma-separated token of every value, case-insensitively.
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();
    let refused = |n: &HeaderName| {
        NEVER.contains(&n.as_str())
            || n.as_str().starts_with("proxy-")
            || named.iter().any(|t| t == n.as_str())
    };
    let mut into = HeaderMap::new();
    forward_client_headers(&names, &from, &mut into);
    let mut stripped = from.clone();
    strip_hop_by_hop(&mut stripped);
    for out in [&into, &stripped] {
        for name in out.keys() {
            assert!(!refused(name), "{name} forwarded from {from:?}");
        }
        for name in from.keys() {
            if !refused(name) {
                assert!(
                    from.get_all(name).iter().eq(out.get_all(name).iter()),
                    "{name} not forwarded whole from {from:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// One list: what the config refuses in `forward_headers` is exactly what the mesh never forwards
    /// (the mesh used to let `http2-settings` through, which the config refused).
    #[test]
    fn the_config_and_the_mesh_refuse_the_same_headers() {
        for name in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
            "proxy-authorization",
            "proxy-x",
            "content-length",
            "host",
            "expect",
            "accept-language",
            "x-tenant",
            "authorization",
        ] {
            let h = HeaderName::from_static(name);
            let refused_by_config = name.parse::<bff_config::ForwardHeader>().is_err();
            assert_eq!(refused_by_config, is_never_forwarded(&h), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn strips_hop_by_hop_framing_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static(" X-Other "));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("proxy-foo", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("evil"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert("accept-language", HeaderValue::from_static("de"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept-language"));
    }

    #[test]
    fn forwards_only_listed_headers_the_client_did_not_mark_hop_by_hop() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("x-tenant"));
        from.insert("x-tenant", HeaderValue::from_static("evil"));
        from.insert(header::HOST, HeaderValue::from_static("internal"));
        from.insert("accept-language", HeaderValue::from_static("de"));
        from.append("accept-language", HeaderValue::from_static("fr"));
        from.insert("x-unlisted", HeaderValue::from_static("1"));
        let names =
            ["x-tenant", "host", "accept-language", "connection"].map(HeaderName::from_static);
        let mut into = HeaderMap::new();
        forward_client_headers(&names, &from, &mut into);
        assert_eq!(into.len(), 2);
        assert_eq!(into.get_all("accept-language").iter().count(), 2);
    }
}
