//! The validated config: a [`Config`] that passed every check, as a type. Only the loader
//! ([`Loader::load`](crate::Loader::load) and friends) and [`Config::validate`] make one, so a function that
//! takes a [`Validated`] (as `bff::App` does) cannot be handed a config nobody checked.

use crate::{Config, ConfigError, ConfigErrors};
use std::ops::Deref;

/// A config that passed validation: every value parsed into its type at load, and the checks that need
/// the whole config (references between sections, `depends_on` cycles, placeholders naming real backends,
/// values that depend on each other) passed. Read it through `Deref` (`validated.services`); to change it,
/// take the [`Config`] out ([`Validated::into_config`]) and validate it again.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated(Config);

impl Validated {
    /// Made by the loader, which has just validated it with lines and keys.
    pub(crate) fn checked(config: Config) -> Self {
        Self(config)
    }

    pub fn config(&self) -> &Config {
        &self.0
    }

    /// The config, to change it (then [`Config::validate`] it again, or give it to `bff::App::new`,
    /// which does).
    pub fn into_config(self) -> Config {
        self.0
    }
}

impl Deref for Validated {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

/// Serialized as the config it is (`GET /admin/config`, redacted there).
impl serde::Serialize for Validated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl AsRef<Config> for Validated {
    fn as_ref(&self) -> &Config {
        &self.0
    }
}

impl Config {
    /// Checks a config made or changed in code as the loader checks a file: every error, with its key
    /// (the file is the one the config came from, without lines: the config may differ from it now).
    pub fn validate(mut self) -> Result<Validated, ConfigErrors> {
        let mut errors = crate::validate::validate(&self);
        let dir = self.base_dir.clone();
        errors.extend(crate::response_schema::load_all(&mut self, dir.as_deref()));
        if errors.is_empty() {
            return Ok(Validated(self));
        }
        let file = self.origin.as_ref().map_or_else(
            || "<config>".to_string(),
            |o| o.path().display().to_string(),
        );
        Err(ConfigErrors(
            errors
                .into_iter()
                .map(|(key, message)| ConfigError {
                    file: file.clone(),
                    line: None,
                    key,
                    message,
                })
                .collect(),
        ))
    }
}

impl TryFrom<Config> for Validated {
    type Error = ConfigErrors;
    fn try_from(config: Config) -> Result<Self, ConfigErrors> {
        config.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_made_in_code_is_validated_with_its_keys() {
        let mut config = Config::default();
        config.edge.max_concurrency = 0;
        config.routes.push(crate::RouteConfig {
            method: crate::HttpMethod::GET,
            path: "/a".into(),
            auth: crate::AuthKind::None,
            timeout: None,
            forward_headers: Vec::new(),
            rate_limit: None,
            max_body: None,
            etag: false,
            cache_control: None,
            backends: vec![crate::BackendConfig {
                name: "b".into(),
                service: "nowhere".into(),
                method: crate::HttpMethod::GET,
                path: "/b".parse().unwrap(),
                select: None,
                fields: None,
                required: true,
                depends_on: Vec::new(),
                coalesce: false,
                cache: None,
                response_schema: None,
            }],
        });
        let errs = config.validate().unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["edge.max_concurrency", "routes[0].backends[0].service"],
            "{errs}"
        );
        assert!(
            errs.0
                .iter()
                .all(|e| e.file == "<config>" && e.line.is_none())
        );
        let ok = Config::default().validate().unwrap();
        assert_eq!(ok.bff.name, "bff");
        assert_eq!(ok.into_config(), Config::default());
    }
}
