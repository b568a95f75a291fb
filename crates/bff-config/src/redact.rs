//! Credentials out of URLs before they are shown: `GET /admin/config`, log lines, errors.

use std::borrow::Cow;

/// What replaces a hidden part.
pub const REDACTED: &str = "<redacted>";

/// `url` with its credentials hidden: the user-info (`redis://user:pass@host` ->
/// `redis://<redacted>@host`), every query value (`?access_token=x&a` -> `?access_token=<redacted>&<redacted>`)
/// and the fragment. Text without `://` is returned as it is.
///
/// The user-info ends at the *last* `@` before the path, so a password with an `@` in it is hidden whole;
/// the authority ends only at `/` (not at `?` or `#`), so a password holding those is hidden whole too.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end..];
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let (userinfo, host_start) = match rest[..authority_len].rfind('@') {
        Some(at) => (true, scheme_end + at),
        None => (false, scheme_end),
    };
    let after_host = &url[host_start..];
    // The query and fragment start after the authority (a `?` in a hidden password is not one).
    let authority_rest = scheme_end + authority_len - host_start;
    let tail_at = after_host[..authority_rest].find(['?', '#']).or_else(|| {
        after_host[authority_rest..]
            .find(['?', '#'])
            .map(|i| i + authority_rest)
    });
    if !userinfo && tail_at.is_none() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(&url[..scheme_end]);
    if userinfo {
        out.push_str(REDACTED);
    }
    let Some(tail_at) = tail_at else {
        out.push_str(after_host);
        return Cow::Owned(out);
    };
    out.push_str(&after_host[..tail_at]);
    let tail = &after_host[tail_at..];
    let (query, fragment) = match tail.find('#') {
        Some(h) => (&tail[..h], Some(&tail[h + 1..])),
        None => (tail, None),
    };
    if let Some(q) = query.strip_prefix('?') {
        out.push('?');
        for (n, pair) in q.split('&').enumerate() {
            if n > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                None if pair.is_empty() => {}
                None => out.push_str(REDACTED),
            }
        }
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(REDACTED);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_userinfo_query_values_and_fragments() {
        for (url, shown) in [
            ("http://idp/jwks.json", "http://idp/jwks.json"),
            ("127.0.0.1:6379", "127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "redis://user:pw@127.0.0.1:6379",
                "redis://<redacted>@127.0.0.1:6379",
            ),
            // A password with `@`, `?`, `#` in it is hidden whole.
            (
                "redis://:p@ss@10.0.0.1:6379/1",
                "redis://<redacted>@10.0.0.1:6379/1",
            ),
            ("redis://:p?s#s@10.0.0.1", "redis://<redacted>@10.0.0.1"),
            (
                "https://idp/jwks?access_token=SECRET&v=2",
                "https://idp/jwks?access_token=<redacted>&v=<redacted>",
            ),
            ("https://idp?SECRET", "https://idp?<redacted>"),
            ("https://idp/x#SECRET", "https://idp/x#<redacted>"),
            (
                "https://u:SECRET@idp/x?t=SECRET#SECRET",
                "https://<redacted>@idp/x?t=<redacted>#<redacted>",
            ),
            // An `@` in the path or query is not user-info.
            ("https://idp/a@b?m=x@y", "https://idp/a@b?m=<redacted>"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
