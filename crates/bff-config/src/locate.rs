//! Finds the line of a key path in the config text, so that errors name it.
//!
//! TOML is parsed with spans (`toml::de::DeTable`), exact. YAML and JSON are scanned: each key of the path
//! is looked for after the line of its parent, which is right for the configs people write.

use crate::load::{ConfigError, Format, Source};
use std::collections::HashMap;
use toml::de::{DeTable, DeValue};

pub(crate) struct Locator {
    format: Format,
    text: String,
    /// TOML: key path -> byte offset of its key.
    spans: HashMap<String, usize>,
    syntax: Option<ConfigError>,
}

impl Locator {
    pub(crate) fn new(source: &Source) -> Self {
        let mut locator = Self {
            format: source.format,
            text: source.text.clone(),
            spans: HashMap::new(),
            syntax: None,
        };
        if source.format == Format::Toml {
            match DeTable::parse(&source.text) {
                Ok(table) => walk_table(table.get_ref(), "", &mut locator.spans),
                Err(e) => {
                    locator.syntax = Some(ConfigError {
                        file: source.name.clone(),
                        line: e.span().map(|s| locator.line_at(s.start)),
                        key: String::new(),
                        message: format!("invalid TOML: {}", e.message()),
                    })
                }
            }
        }
        locator
    }

    pub(crate) fn syntax_error(&self) -> Option<ConfigError> {
        self.syntax.clone()
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line of `key`, or of its nearest ancestor found in the text.
    pub(crate) fn line_of(&self, key: &str) -> Option<usize> {
        if key.is_empty() {
            return None;
        }
        match self.format {
            Format::Toml => {
                let mut k = key;
                loop {
                    if let Some(off) = self.spans.get(k) {
                        return Some(self.line_at(*off));
                    }
                    k = parent(k)?;
                }
            }
            Format::Yaml | Format::Json => self.scan(key),
        }
    }

    fn scan(&self, key: &str) -> Option<usize> {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut from = 0;
        let mut found = None;
        for part in split_path(key) {
            let Part::Key(name) = part else { continue };
            let yaml = format!("{name}:");
            let json = format!("\"{name}\"");
            let hit = lines[from..].iter().position(|l| {
                let t = l.trim_start().trim_start_matches("- ");
                t.starts_with(&yaml) || t.starts_with(&json)
            });
            match hit {
                Some(i) => {
                    from += i;
                    found = Some(from + 1);
                }
                None => break,
            }
        }
        found
    }
}

enum Part<'a> {
    Key(&'a str),
    Index,
}

fn split_path(key: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    for piece in key.split('.') {
        let (name, rest) = piece.split_once('[').map_or((piece, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            parts.push(Part::Key(name));
        }
        for _ in rest.matches(']') {
            parts.push(Part::Index);
        }
    }
    parts
}

fn parent(key: &str) -> Option<&str> {
    let cut = key.rfind(['.', '['])?;
    Some(&key[..cut])
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut HashMap<String, usize>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.entry(path.clone()).or_insert(k.span().start);
        walk_value(v.get_ref(), &path, k.span().start, out);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    path: &str,
    key_offset: usize,
    out: &mut HashMap<String, usize>,
) {
    match value {
        DeValue::Table(t) => walk_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                // An array of tables (`[[routes]]`) has one header per element; an inline array sits on
                // the key's line unless its items say otherwise.
                let offset = if item.span().start > key_offset {
                    item.span().start
                } else {
                    key_offset
                };
                out.entry(item_path.clone()).or_insert(offset);
                walk_value(item.get_ref(), &item_path, offset, out);
            }
        }
        _ => {}
    }
}
