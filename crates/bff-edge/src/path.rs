//! Path normalisation, once, before routing and auth: the path that was authorised is the path that is
//! routed. Dot segments (also percent-encoded) are resolved, duplicate slashes collapsed; an encoded `/` or
//! `\`, a raw `\`, an encoded NUL or invalid UTF-8 is refused.

use std::borrow::Cow;

/// Why a path was refused (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// The normalised form of `path` (without query).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if !path.starts_with('/') {
        return Err(BadPath("the path must start with /"));
    }
    let bytes = path.as_bytes();
    let mut needs_work = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(BadPath("backslash in path")),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(BadPath("truncated percent-encoding"))?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(BadPath("invalid percent-encoding"))?;
                match v {
                    b'/' => return Err(BadPath("encoded / in path")),
                    b'\\' => return Err(BadPath("encoded \\ in path")),
                    0 => return Err(BadPath("encoded NUL in path")),
                    b'.' => needs_work = true,
                    _ => {}
                }
                i += 3;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => needs_work = true,
            b'.' if i > 0 && bytes[i - 1] == b'/' => needs_work = true,
            _ => {}
        }
        i += 1;
    }
    // The decoded path must be UTF-8 (routing decodes parameters).
    if percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .is_err()
    {
        return Err(BadPath("path is not valid UTF-8"));
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (n, seg) in segments.iter().enumerate() {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        match decoded.as_str() {
            "" if n != last => {}
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for seg in &out {
        normalized.push('/');
        normalized.push_str(seg);
    }
    // A trailing slash, or a path that resolved to its root, keeps its slash.
    let trailing = matches!(
        segments[last],
        "" | "." | ".." | "%2e" | "%2E" | "%2e%2e" | "%2E%2E" | ".%2e" | "%2e."
    );
    if normalized.is_empty() || (trailing && !normalized.ends_with('/')) {
        normalized.push('/');
    }
    Ok(Cow::Owned(normalized))
}

/// The properties the fuzzer and the seed-corpus test check on any input: no panic; a normalised path
/// starts with `/`, has no empty, `.` or `..` segment left, and normalises to itself.
#[doc(hidden)]
pub fn check_properties(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize(input) else { return };
    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    let inner = out.trim_end_matches('/');
    for seg in inner.split('/').skip(1) {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        assert!(
            !seg.is_empty() && decoded != "." && decoded != "..",
            "{input:?} -> {out:?}"
        );
    }
    assert_eq!(
        normalize(&out).expect("a normalised path is valid"),
        out,
        "{input:?} is not idempotent"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_dot_segments_and_duplicate_slashes() {
        for (input, want) in [
            ("/a/b", "/a/b"),
            ("/public/../private", "/private"),
            ("/public/%2e%2e/private", "/private"),
            ("/public/%2E%2E/private", "/private"),
            ("/public/.%2e/private", "/private"),
            ("//private", "/private"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b", "/a/b"),
            ("/../../x", "/x"),
            ("/a/b/..", "/a/"),
            ("/a/", "/a/"),
            ("/", "/"),
            ("/..", "/"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a/..b", "/a/..b"),
            ("/x/../public//1", "/public/1"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_encoded_separators_and_bad_bytes() {
        for bad in [
            "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00", "/a%zz", "/a%4", "/%ff%fe", "a/b",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn is_idempotent() {
        for p in ["/x/../y//z/./", "/%2e%2e/a", "/a/b/c/../../d"] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once);
        }
    }
}
