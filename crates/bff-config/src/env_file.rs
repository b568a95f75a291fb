//! `.env` files for `bff check --env-file` and `bff run --env-file`: the variables a config's `${VAR}`s and
//! `BFF__...` overrides read, written down beside the project instead of exported in a shell.

use crate::{ConfigError, ConfigErrors};
use std::{collections::HashMap, path::Path};

/// Environment variables by name.
type Vars = HashMap<String, String>;

/// Reads `KEY=VALUE` lines (`#` comments, blank lines and a leading `export ` allowed; a value in matching
/// single or double quotes is taken without them, as written) on top of the process's environment: the
/// file's values win. Every malformed line is an error naming the file and line.
pub fn env_with_file(path: &Path) -> Result<Vars, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            key: String::new(),
            message: format!("cannot read the env file: {e}"),
        }])
    })?;
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.extend(parse(&path.display().to_string(), &text)?);
    Ok(env)
}

fn parse(file: &str, text: &str) -> Result<Vec<(String, String)>, ConfigErrors> {
    let mut vars = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let valid_name = |k: &str| {
            k.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        match line.split_once('=') {
            Some((key, value)) if valid_name(key.trim()) => {
                let value = value.trim();
                let unquoted = [('"', '"'), ('\'', '\'')]
                    .iter()
                    .find_map(|(a, b)| value.strip_prefix(*a)?.strip_suffix(*b))
                    .unwrap_or(value);
                vars.push((key.trim().to_string(), unquoted.to_string()));
            }
            _ => errors.push(ConfigError {
                file: file.to_string(),
                line: Some(i + 1),
                key: String::new(),
                // The line itself is not shown: it may hold a secret.
                message: "not a KEY=VALUE line (KEY: letters, digits and _)".to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_export_and_quotes() {
        let vars = parse(
            ".env",
            "# local services\nUSERS_ADDR=127.0.0.1:9001\n\nexport ORDERS_ADDR = 127.0.0.1:9002\nSECRET=\"a b=c\"\nQ='x'\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            [
                ("USERS_ADDR".to_string(), "127.0.0.1:9001".to_string()),
                ("ORDERS_ADDR".into(), "127.0.0.1:9002".into()),
                ("SECRET".into(), "a b=c".into()),
                ("Q".into(), "x".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_an_error_with_its_line_and_without_its_text() {
        let errs = parse(".env", "OK=1\nthis is secret\n1BAD=2\n").unwrap_err();
        let lines: Vec<_> = errs.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(2), Some(3)]);
        assert!(!errs.to_string().contains("secret"), "{errs}");
    }
}
