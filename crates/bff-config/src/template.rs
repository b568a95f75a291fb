//! Downstream path templates (`/orders?userId={user_id}`, `/recs/{user.category}`), route path parameters
//! and JSONPaths, parsed once at load and shared with the aggregation engine.

/// A downstream path template such as `/orders?userId={user_id}` or `/recommendations/{user.category}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Placeholder(Placeholder),
}

/// `{name}` or `{backend.json.path}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// The text between the braces.
    pub raw: String,
    /// The first name: a route parameter or a backend.
    pub head: String,
    /// The rest as a JSONPath (`$.json.path`), or `$` when there is none; compiled.
    pub json_path: crate::JsonPath,
}

impl PathTemplate {
    /// Parses a downstream path (`routes.backends.path`): it starts with `/`, its placeholders are
    /// closed, named, and their JSONPaths compile.
    pub fn parse(template: &str) -> Result<Self, crate::InvalidValue> {
        if !template.starts_with('/') {
            return Err(format!("{template:?} must start with `/`").into());
        }
        let mut segments = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?
                + open;
            let raw = rest[open + 1..close].trim();
            if raw.is_empty() {
                return Err(format!("empty placeholder `{{}}` in {template:?}").into());
            }
            let split = raw.find(['.', '[']).unwrap_or(raw.len());
            let head = &raw[..split];
            let tail = &raw[split..];
            if !is_name(head) {
                return Err(format!("invalid placeholder `{{{raw}}}` in {template:?}").into());
            }
            let json_path = crate::JsonPath::parse(&format!("${tail}"))
                .map_err(|e| format!("invalid placeholder `{{{raw}}}`: {e}"))?;
            segments.push(Segment::Placeholder(Placeholder {
                raw: raw.to_string(),
                head: head.to_string(),
                json_path,
            }));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched `}}` in {template:?}").into());
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        // Text no URI can hold (a space, a quote): every request would fail building it.
        let sample: String = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Placeholder(_) => "x",
            })
            .collect();
        if let Err(e) = sample.parse::<http::uri::PathAndQuery>() {
            return Err(format!("{template:?} is not a URI path: {e}").into());
        }
        Ok(Self { segments })
    }

    /// Whether a placeholder is a whole route parameter (`{id}`, no JSONPath after it).
    pub fn is_param(p: &Placeholder) -> bool {
        p.json_path.as_str() == "$"
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p),
            Segment::Literal(_) => None,
        })
    }
}

impl std::fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Literal(l) => f.write_str(l)?,
                Segment::Placeholder(p) => write!(f, "{{{}}}", p.raw)?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for PathTemplate {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        Self::parse(s)
    }
}

from_str_serde!(PathTemplate, "a path such as \"/users/{id}\"");

/// A JSONPath of the config (`select`, `fields`, a placeholder's path), compiled once at load.
#[derive(Clone, Debug)]
pub struct JsonPath {
    text: String,
    query: jsonpath_rust::parser::model::JpQuery,
}

impl JsonPath {
    pub fn parse(path: &str) -> Result<Self, crate::InvalidValue> {
        jsonpath_rust::parser::parse_json_path(path)
            .map(|query| Self {
                text: path.to_string(),
                query,
            })
            .map_err(|e| format!("invalid JSONPath {path:?}: {}", one_line(&e)).into())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The compiled query.
    pub fn query(&self) -> &jsonpath_rust::parser::model::JpQuery {
        &self.query
    }
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonPath {}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for JsonPath {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        Self::parse(s)
    }
}

from_str_serde!(JsonPath, "a JSONPath such as \"$.profile.name\"");

/// Multi-line parser messages folded into one line.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The parameter names of a route path (`/a/{id}/{*rest}` -> `id`, `rest`).
pub fn route_params(path: &str) -> Result<Vec<String>, crate::InvalidValue> {
    let mut params = Vec::new();
    for seg in path.split('/') {
        if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = inner.strip_prefix('*').unwrap_or(inner);
            if !is_name(name) {
                return Err(format!("invalid path parameter `{seg}`").into());
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("path parameter `{name}` appears twice").into());
            }
            params.push(name.to_string());
        } else if seg.contains(['{', '}']) {
            return Err(format!(
                "a path parameter must be a whole segment, like `/users/{{id}}`, not `{seg}`"
            )
            .into());
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = PathTemplate::parse("/orders?userId={user_id}&c={user.profile.cat}").unwrap();
        assert_eq!(t.segments.len(), 4);
        let ps: Vec<_> = t.placeholders().collect();
        assert_eq!(ps[0].head, "user_id");
        assert_eq!(ps[0].json_path.as_str(), "$");
        assert_eq!(ps[1].head, "user");
        assert_eq!(ps[1].json_path.as_str(), "$.profile.cat");
        assert!(PathTemplate::parse("/a/{b").is_err());
        assert!(PathTemplate::parse("/a/{}").is_err());
        assert!(PathTemplate::parse("/a/b}").is_err());
    }

    #[test]
    fn params() {
        assert_eq!(route_params("/a/{id}/{*rest}").unwrap(), ["id", "rest"]);
        assert!(route_params("/a/x{id}").is_err());
        assert!(route_params("/a/{id}/{id}").is_err());
    }
}
