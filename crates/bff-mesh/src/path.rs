//! Downstream paths built from a template and values, each value percent-encoded so that it stays one
//! path segment: `path!("/users/{}/orders", id)`.
//!
//! A route parameter arrives decoded (`/api/account/1%3Fadmin=true` gives the id `1?admin=true`), so pasting
//! it into a path with `format!` lets the client add a query (`?`), cut the path (`#`), add segments (`/`)
//! or climb (`..`). Here every byte of a value outside RFC 3986's unreserved set is percent-encoded, and a
//! segment made by values that would read `.` or `..` is sent as `%2E` or `%2E%2E`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt::{self, Write};

/// What a value may keep as it is: RFC 3986's unreserved characters. Everything else is percent-encoded,
/// so a value can never add a segment, a query or a fragment.
pub const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends `value` to `out` percent-encoded as (part of) one path segment or query value.
///
/// The encoding of [`path!`](crate::path!): everything outside RFC 3986's unreserved characters. It does
/// not know where the segment starts, so a whole segment of `.` or `..` is the caller's to escape (as
/// [`DownstreamPath::from_template`] does).
pub fn encode_value(out: &mut String, value: &str) {
    out.extend(utf8_percent_encode(value, VALUE));
}

/// A downstream path (and query), ready to be sent: a constant, or built by [`path!`](crate::path!) from a
/// template and values. A template that does not fit its values is kept as an error, which the call
/// reports ([`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest): a 500 JSON error) without
/// sending anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownstreamPath(Result<String, PathError>);

/// Why a path could not be built from its template and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The template has a different number of `{}` than values were given.
    Values { placeholders: usize, values: usize },
    /// A `{` or `}` that is not part of `{}` (a named placeholder such as `{id}`, say).
    Brace { at: usize },
    /// A value would leave a path segment empty (`/users/` instead of `/users/{id}`): another resource.
    EmptySegment { value: usize },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Values {
                placeholders,
                values,
            } => write!(
                f,
                "the path template has {placeholders} {{}} but {values} values were given"
            ),
            Self::Brace { at } => write!(
                f,
                "the path template has a lone brace at byte {at}: values go in {{}}, in order"
            ),
            Self::EmptySegment { value } => write!(
                f,
                "value {value} of the path is empty and would leave an empty segment"
            ),
        }
    }
}

impl std::error::Error for PathError {}

impl DownstreamPath {
    /// `template` with each `{}` replaced by the next value, percent-encoded (see the module's doc). What
    /// [`path!`](crate::path!) calls after checking the template at build time; call it directly only for
    /// a template that is not a literal.
    pub fn from_template(template: &str, values: &[&dyn fmt::Display]) -> Self {
        Self(build(template, values))
    }

    /// A path sent exactly as given: already percent-encoded, e.g. a link that a service returned. Never
    /// put a client's value in it.
    pub fn verbatim(path: impl Into<String>) -> Self {
        Self(Ok(path.into()))
    }

    /// The path, or why it could not be built.
    pub fn as_result(&self) -> Result<&str, &PathError> {
        self.0.as_ref().map(String::as_str)
    }

    pub(crate) fn into_result(self) -> Result<String, PathError> {
        self.0
    }
}

/// What the verbs of a [`ServiceClient`](crate::ServiceClient) take as a path: a constant, or a path built
/// by [`path!`](crate::path!). A `String` is refused, since one made with `format!` carries a client's
/// `?`, `#`, `/` or `..` into the call.
#[diagnostic::on_unimplemented(
    message = "a downstream path is a constant or built with `path!`, not a `{Self}`",
    label = "a value pasted into this path could add `/`, `?`, `#` or `..` to the call",
    note = "write `path!(\"/users/{{}}\", id)`: each value is percent-encoded as one segment",
    note = "an already encoded path (a link a service sent) goes in as `DownstreamPath::verbatim(link)`"
)]
pub trait IntoPath {
    fn into_path(self) -> DownstreamPath;
}

impl IntoPath for &'static str {
    fn into_path(self) -> DownstreamPath {
        DownstreamPath::verbatim(self)
    }
}

impl IntoPath for DownstreamPath {
    fn into_path(self) -> DownstreamPath {
        self
    }
}

/// Builds a downstream path from a template and values: each `{}` takes the next value (any `Display`),
/// percent-encoded so that it stays inside its segment. The number of `{}` is checked against the values
/// when the handler is compiled; a named placeholder (`{id}`) does not compile either.
///
/// ```
/// use bff_mesh::{path, DownstreamPath};
/// let id = "1?admin=true";
/// assert_eq!(path!("/users/{}/orders", id).as_result(), Ok("/users/1%3Fadmin%3Dtrue/orders"));
/// assert_eq!(path!("/items/{}", "..").as_result(), Ok("/items/%2E%2E"));
/// ```
///
/// ```compile_fail
/// let id = "1";
/// let _ = bff_mesh::path!("/users/{}/orders/{}", id); // two `{}`, one value
/// ```
///
/// ```compile_fail
/// let id = "1";
/// let _ = bff_mesh::path!("/users/{id}"); // values are arguments, not names
/// ```
#[macro_export]
macro_rules! path {
    ($template:literal $(, $value:expr)* $(,)?) => {{
        const _: () = $crate::__check_template($template, <[&str]>::len(&[$(stringify!($value)),*]));
        $crate::DownstreamPath::from_template(
            $template,
            &[$(&$value as &dyn ::core::fmt::Display),*],
        )
    }};
}

/// The build-time check of [`path!`](crate::path!): the template's `{}` match the values, and it has no
/// other brace.
#[doc(hidden)]
pub const fn __check_template(template: &str, values: usize) {
    match placeholders(template) {
        Ok(n) if n == values => {}
        Ok(n) if n > values => panic!("path!: the template has more {{}} than values"),
        Ok(_) => panic!("path!: more values than {{}} in the template"),
        Err(_) => {
            panic!("path!: a brace that is not {{}} (values go in {{}}, in order, as arguments)")
        }
    }
}

/// The number of `{}` in a template, or the byte offset of a brace that is not part of one.
const fn placeholders(template: &str) -> Result<usize, usize> {
    let b = template.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'{' if i + 1 < b.len() && b[i + 1] == b'}' => {
                n += 1;
                i += 2;
                continue;
            }
            b'{' | b'}' => return Err(i),
            _ => {}
        }
        i += 1;
    }
    Ok(n)
}

fn build(template: &str, values: &[&dyn fmt::Display]) -> Result<String, PathError> {
    match placeholders(template) {
        Ok(n) if n == values.len() => {}
        Ok(n) => {
            return Err(PathError::Values {
                placeholders: n,
                values: values.len(),
            });
        }
        Err(at) => return Err(PathError::Brace { at }),
    }
    let mut out = String::with_capacity(template.len() + 16 * values.len());
    // The current segment: where it starts in `out`, and whether a value is in it. Past a `?` the values
    // are in the query, where neither an empty value nor dots mean anything special.
    let mut segment = 0;
    let mut valued = false;
    let mut in_query = false;
    let mut rest = template;
    let mut values = values.iter().enumerate();
    loop {
        let (literal, more) = match rest.find("{}") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        for c in literal.chars() {
            if !in_query && matches!(c, '/' | '?' | '#') {
                end_segment(&mut out, segment, valued);
                valued = false;
                in_query = c != '/';
                out.push(c);
                segment = out.len();
            } else {
                out.push(c);
            }
        }
        let Some(more) = more else { break };
        let (i, value) = values.next().expect("counted above");
        let start = out.len();
        let _ = write!(Encode(&mut out), "{value}");
        if !in_query && out.len() == start && out.len() == segment && more_is_segment_end(more) {
            return Err(PathError::EmptySegment { value: i });
        }
        valued = true;
        rest = more;
    }
    if !in_query {
        end_segment(&mut out, segment, valued);
    }
    Ok(out)
}

/// Whether the template text after a placeholder ends its segment right away.
fn more_is_segment_end(more: &str) -> bool {
    matches!(more.bytes().next(), None | Some(b'/' | b'?' | b'#'))
}

/// A segment that values made read `.` or `..`: its dots are encoded, so that it is not a dot segment.
fn end_segment(out: &mut String, segment: usize, valued: bool) {
    if valued && matches!(&out[segment..], "." | "..") {
        let dots = out.len() - segment;
        out.truncate(segment);
        for _ in 0..dots {
            out.push_str("%2E");
        }
    }
}

/// Writes what it is given percent-encoded as a path value.
struct Encode<'a>(&'a mut String);

impl Write for Encode<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        encode_value(self.0, s);
        Ok(())
    }
}

/// The properties the fuzzer and the seed-corpus test check: whatever the values, the built path split on
/// `/` has exactly the template's segments, each value's segment decodes to the value, and no segment made
/// by a value is `.` or `..` as sent.
///
/// The input is the template and the values separated by NUL bytes; `{}` that are not followed by a value
/// get the empty value (so a count mismatch is exercised as well).
#[doc(hidden)]
pub fn check_properties(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = input.split('\0');
    // The template: its own `?` and `#` would start a query or a fragment, outside this property.
    let template: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '?' | '#' | '%'))
        .collect();
    let values: Vec<&str> = parts.collect();
    let refs: Vec<&dyn fmt::Display> = values.iter().map(|v| v as &dyn fmt::Display).collect();
    let built = DownstreamPath::from_template(&template, &refs);
    let out = match (placeholders(&template), built.as_result()) {
        (Ok(n), Ok(out)) => {
            assert_eq!(
                n,
                values.len(),
                "{template:?} {values:?}: built with a wrong count"
            );
            out
        }
        (Ok(n), Err(PathError::Values { .. })) => {
            assert_ne!(n, values.len(), "{template:?} {values:?}");
            return;
        }
        (Ok(_), Err(PathError::EmptySegment { value })) => {
            assert!(values[*value].is_empty(), "{template:?} {values:?}");
            return;
        }
        (Err(_), Err(PathError::Brace { .. })) => return,
        (p, r) => panic!("{template:?} {values:?}: {p:?} but {r:?}"),
    };
    let template_segments: Vec<&str> = template.split('/').collect();
    let sent: Vec<&str> = out.split('/').collect();
    assert_eq!(
        sent.len(),
        template_segments.len(),
        "{template:?} {values:?} -> {out:?}: the values changed the segments"
    );
    let mut values = values.iter();
    for (tpl, seg) in template_segments.iter().zip(&sent) {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .expect("the encoding of UTF-8 values and a template decodes to UTF-8");
        // The segment as the template would make it with these values, unencoded.
        let mut want = String::new();
        let mut pieces = tpl.split("{}");
        want.push_str(pieces.next().unwrap_or_default());
        let mut valued = false;
        for piece in pieces {
            want.push_str(values.next().expect("counted"));
            want.push_str(piece);
            valued = true;
        }
        assert_eq!(decoded, want, "{template:?} -> {out:?}: segment {seg:?}");
        if valued {
            assert!(
                *seg != "." && *seg != "..",
                "{template:?} -> {out:?}: a value made a dot segment"
            );
            assert!(
                seg.bytes().all(|b| b.is_ascii_alphanumeric()
                    || b"-._~%".contains(&b)
                    || tpl.as_bytes().contains(&b)),
                "{template:?} -> {out:?}: {seg:?} is not encoded"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(template: &str, values: &[&dyn fmt::Display]) -> Result<String, PathError> {
        DownstreamPath::from_template(template, values).0
    }

    #[test]
    fn each_value_is_one_encoded_segment() {
        for (value, want) in [
            ("42", "/users/42/orders"),
            ("1?admin=true", "/users/1%3Fadmin%3Dtrue/orders"),
            ("1#frag", "/users/1%23frag/orders"),
            ("a/b", "/users/a%2Fb/orders"),
            ("..", "/users/%2E%2E/orders"),
            (".", "/users/%2E/orders"),
            ("...", "/users/.../orders"),
            ("a.b-c_d~e", "/users/a.b-c_d~e/orders"),
            ("100%", "/users/100%25/orders"),
            ("a b+c&d", "/users/a%20b%2Bc%26d/orders"),
            ("é", "/users/%C3%A9/orders"),
            ("\\", "/users/%5C/orders"),
        ] {
            assert_eq!(
                built("/users/{}/orders", &[&value]).as_deref(),
                Ok(want),
                "{value:?}"
            );
        }
    }

    #[test]
    fn values_are_any_display_and_may_share_a_segment() {
        assert_eq!(
            built("/v{}/items/{}.json", &[&2, &"a/b"]).as_deref(),
            Ok("/v2/items/a%2Fb.json")
        );
        // Two values that together would read `..` are still not a dot segment.
        assert_eq!(built("/x/{}{}", &[&".", &"."]).as_deref(), Ok("/x/%2E%2E"));
        assert_eq!(built("/x/.{}", &[&"."]).as_deref(), Ok("/x/%2E%2E"));
        // A dot segment of the template itself is the developer's and kept.
        assert_eq!(built("/a/../{}", &[&"b"]).as_deref(), Ok("/a/../b"));
    }

    #[test]
    fn values_in_the_query_are_encoded_and_may_be_empty() {
        assert_eq!(
            built("/search/{}?q={}&page=1", &[&"a b", &"x&y=z#"]).as_deref(),
            Ok("/search/a%20b?q=x%26y%3Dz%23&page=1")
        );
        assert_eq!(built("/search?q={}", &[&""]).as_deref(), Ok("/search?q="));
        assert_eq!(
            built("/search?q={}", &[&".."]).as_deref(),
            Ok("/search?q=..")
        );
    }

    #[test]
    fn a_template_that_does_not_fit_its_values_is_an_error() {
        assert_eq!(
            built("/users/{}/orders/{}", &[&"1"]),
            Err(PathError::Values {
                placeholders: 2,
                values: 1
            })
        );
        assert_eq!(
            built("/users", &[&"1"]),
            Err(PathError::Values {
                placeholders: 0,
                values: 1
            })
        );
        assert_eq!(built("/users/{id}", &[]), Err(PathError::Brace { at: 7 }));
        assert_eq!(built("/users/}", &[]), Err(PathError::Brace { at: 7 }));
        // An empty value that would be a whole segment: `/users/` is another resource.
        assert_eq!(
            built("/users/{}", &[&""]),
            Err(PathError::EmptySegment { value: 0 })
        );
        assert_eq!(
            built("/users/{}/orders", &[&""]),
            Err(PathError::EmptySegment { value: 0 })
        );
        // Part of a segment, an empty value is fine.
        assert_eq!(built("/v{}/x", &[&""]).as_deref(), Ok("/v/x"));
    }

    #[test]
    fn the_macro_checks_and_builds() {
        let id = String::from("7/8");
        let n = 3;
        assert_eq!(
            crate::path!("/users/{}/orders/{}", id, n).as_result(),
            Ok("/users/7%2F8/orders/3")
        );
        assert_eq!(crate::path!("/users").as_result(), Ok("/users"));
        assert_eq!(
            crate::path!("/u/{}", &id,).as_result(),
            Ok("/u/7%2F8"),
            "a reference and a trailing comma"
        );
    }

    #[test]
    fn template_check_counts_placeholders() {
        assert_eq!(placeholders("/a/{}/b/{}"), Ok(2));
        assert_eq!(placeholders("/a"), Ok(0));
        assert_eq!(placeholders("/a/{"), Err(3));
        assert_eq!(placeholders("/a/{x}"), Err(3));
        assert_eq!(placeholders("{}{}"), Ok(2));
    }

    #[test]
    fn properties_hold_on_random_templates_and_values() {
        // A small alphabet where the interesting characters are frequent; NUL separates the values.
        const PIECES: [&str; 14] = [
            "{}", "/", ".", "..", "a", "%", "?", "#", "{", "}", "é", " ", "\0", "~",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let mut input = String::new();
            for _ in 0..rng.usize(0..12) {
                input.push_str(PIECES[rng.usize(..PIECES.len())]);
            }
            check_properties(input.as_bytes());
        }
    }

    #[test]
    fn properties_hold_on_tricky_inputs() {
        for input in [
            "/users/{}\0..",
            "/users/{}/x\0a/b",
            "/{}{}\0.\0.",
            "/{}\0",
            "{}\0/",
            "/a/{}\0%2F",
            "/a/{x}\0b",
            "/a/{}/{}\0b",
            "/.{}\0.",
            "\0",
            "",
        ] {
            check_properties(input.as_bytes());
        }
    }
}
