use jsonpath_rust::{
    parser::{
        model::{JpQuery, Segment, Selector as JpSelector},
        parse_json_path,
    },
    query::js_path_process,
};
use serde_json::Value;

/// A JSONPath compiled once at config load.
///
/// A singular path (names and indexes only, e.g. `$.profile`, `$.items[0].id`) gives that value or `null`,
/// walked directly without the query engine; any other path (wildcards, filters, slices, `..`) gives the
/// array of its matches (RFC 9535 through jsonpath-rust).
/// A selector that is not valid JSONPath.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSONPath {path:?}")]
pub struct SelectorError {
    path: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

#[derive(Clone, Debug)]
pub enum Selector {
    Singular(Vec<Step>),
    Query(JpQuery),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Key(String),
    Index(i64),
}

impl Selector {
    pub fn parse(path: &str) -> Result<Self, SelectorError> {
        let query = parse_json_path(path).map_err(|e| SelectorError {
            path: path.to_string(),
            source: Box::new(e),
        })?;
        Ok(Self::compile(query))
    }

    /// The selector of a JSONPath the config compiled at load (no second parse).
    pub fn from_config(path: &bff_config::JsonPath) -> Self {
        Self::compile(path.query().clone())
    }

    fn compile(query: JpQuery) -> Self {
        let mut steps = Vec::with_capacity(query.segments.len());
        for seg in &query.segments {
            match seg {
                Segment::Selector(JpSelector::Name(n)) => steps.push(Step::Key(n.clone())),
                Segment::Selector(JpSelector::Index(i)) => steps.push(Step::Index(*i)),
                _ => return Self::Query(query),
            }
        }
        Self::Singular(steps)
    }

    /// The selected value, by the rule above.
    pub fn apply(&self, value: &Value) -> Value {
        match self {
            Self::Singular(steps) => {
                let mut cur = value;
                for step in steps {
                    let next = match (step, cur) {
                        (Step::Key(k), Value::Object(m)) => m.get(k),
                        (Step::Index(i), Value::Array(a)) => {
                            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                            usize::try_from(idx).ok().and_then(|i| a.get(i))
                        }
                        _ => None,
                    };
                    match next {
                        Some(v) => cur = v,
                        None => return Value::Null,
                    }
                }
                cur.clone()
            }
            Self::Query(q) => match js_path_process(q, value) {
                Ok(refs) => Value::Array(refs.into_iter().map(|r| r.val.clone()).collect()),
                Err(_) => Value::Array(Vec::new()),
            },
        }
    }

    /// Like [`Selector::apply`], taking ownership to avoid copying the selected value.
    pub fn apply_owned(&self, value: Value) -> Value {
        match self {
            Self::Singular(steps) => {
                let mut cur = value;
                for step in steps {
                    cur = match (step, cur) {
                        (Step::Key(k), Value::Object(mut m)) => m.remove(k).unwrap_or(Value::Null),
                        (Step::Index(i), Value::Array(mut a)) => {
                            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                            match usize::try_from(idx) {
                                Ok(i) if i < a.len() => a.swap_remove(i),
                                _ => Value::Null,
                            }
                        }
                        _ => Value::Null,
                    };
                }
                cur
            }
            Self::Query(_) => self.apply(&value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn singular_paths_give_a_value_or_null() {
        let v = json!({"profile": {"name": "Ada", "tags": ["a", "b"]}, "items": [{"id": 1}, {"id": 2}]});
        for (path, want) in [
            ("$.profile.name", json!("Ada")),
            ("$['profile']['name']", json!("Ada")),
            ("$.items[1].id", json!(2)),
            ("$.items[-1].id", json!(2)),
            ("$.profile.tags[0]", json!("a")),
            ("$.missing", Value::Null),
            ("$.items[9]", Value::Null),
            ("$", v.clone()),
        ] {
            let s = Selector::parse(path).unwrap();
            assert!(
                matches!(s, Selector::Singular(_)),
                "{path} should be singular"
            );
            assert_eq!(s.apply(&v), want, "{path}");
            assert_eq!(s.apply_owned(v.clone()), want, "{path} (owned)");
        }
    }

    #[test]
    fn other_paths_give_arrays() {
        let v = json!({"items": [{"id": 1, "p": 5}, {"id": 2, "p": 50}]});
        for (path, want) in [
            ("$.items[*].id", json!([1, 2])),
            ("$.items[?@.p > 10].id", json!([2])),
            ("$..id", json!([1, 2])),
            ("$.items[0:1].id", json!([1])),
            ("$.nothing[*]", json!([])),
        ] {
            let s = Selector::parse(path).unwrap();
            assert!(matches!(s, Selector::Query(_)), "{path} should be a query");
            assert_eq!(s.apply(&v), want, "{path}");
        }
        assert!(Selector::parse("$.[[").is_err());
    }
}
