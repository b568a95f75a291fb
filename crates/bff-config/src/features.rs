//! The optional parts of the framework (cargo features), as compiled into this binary. A config that needs
//! one the binary was built without is refused at load, by `bff check` too, with the feature to enable:
//! never accepted and then ignored.

/// An optional part of the framework: a cargo feature of the `bff` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `discovery = "etcd://..."`.
    Etcd,
    /// `discovery = "dns://..."` and `"dns+srv://..."`.
    Dns,
    /// `store = "redis://..."` on a rate limit.
    Redis,
    /// `[telemetry] otlp_endpoint`.
    Otlp,
    /// `[edge.auth.jwt]` and `auth = "jwt"` on a route.
    Jwt,
    /// `[bff.tls]`, `[services.NAME.tls]` and an `https://` `jwks_url`.
    Tls,
    /// `[session]`, `auth = "session"` and `token` on a service: browser sessions.
    Session,
}

impl Feature {
    /// The feature's name in `Cargo.toml`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Dns => "dns",
            Self::Redis => "redis",
            Self::Otlp => "otlp",
            Self::Jwt => "jwt",
            Self::Tls => "tls",
            Self::Session => "session",
        }
    }

    /// Whether this binary was built with it.
    pub const fn enabled(self) -> bool {
        match self {
            Self::Etcd => cfg!(feature = "etcd"),
            Self::Dns => cfg!(feature = "dns"),
            Self::Redis => cfg!(feature = "redis"),
            Self::Otlp => cfg!(feature = "otlp"),
            Self::Jwt => cfg!(feature = "jwt"),
            Self::Tls => cfg!(feature = "tls"),
            Self::Session => cfg!(feature = "session"),
        }
    }

    /// `Ok` when compiled in, else the error that says how to get it.
    pub fn require(self, what: &str) -> Result<(), FeatureMissing> {
        if self.enabled() {
            Ok(())
        } else {
            Err(self.missing(what))
        }
    }

    /// The error for a config that needs this feature where it is not compiled in.
    pub fn missing(self, what: &str) -> FeatureMissing {
        FeatureMissing {
            feature: self,
            what: what.to_string(),
        }
    }
}

/// A config needs a part of the framework (a cargo feature) that this binary was built without. Its
/// message says what needs it and how to enable it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs the `{name}` feature of bff, which this binary was built without: \
     in Cargo.toml, bff = {{ ..., features = [\"{name}\"] }} (the `bff` command has every feature)",
    name = feature.name()
)]
pub struct FeatureMissing {
    feature: Feature,
    what: String,
}

impl FeatureMissing {
    /// The feature to enable.
    pub fn feature(&self) -> Feature {
        self.feature
    }
}

/// A value of the config that cannot be used, and why, said to the person who wrote it (the validator
/// adds the file, line and key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<String> for InvalidValue {
    fn from(why: String) -> Self {
        Self(why)
    }
}

impl From<&str> for InvalidValue {
    fn from(why: &str) -> Self {
        Self(why.to_string())
    }
}

impl From<FeatureMissing> for InvalidValue {
    fn from(e: FeatureMissing) -> Self {
        Self(e.to_string())
    }
}

// What needs each feature, as the error names it. The validator refuses with `require_compiled`; the crate
// that implements a part refuses a config made by hand (never validated) with `Feature::missing(NEEDS)`
// under its own `cfg`, so that the part is never silently skipped whatever features bff-config has.

impl crate::AuthKind {
    /// What needs the `jwt` feature in a route's `auth`.
    pub const JWT_NEEDS: &str = "auth = \"jwt\"";

    /// `Ok` when this binary can enforce it, else the error naming the feature (`auth = "jwt"` without
    /// `jwt`).
    pub fn require_compiled(self) -> Result<(), FeatureMissing> {
        match self {
            Self::Jwt => Feature::Jwt.require(Self::JWT_NEEDS),
            Self::Session => Feature::Session.require(crate::SessionConfig::NEEDS),
            Self::None | Self::ApiKey => Ok(()),
        }
    }
}

impl crate::JwtConfig {
    pub const NEEDS: &str = "JWT authentication ([edge.auth.jwt])";
    /// What needs the `tls` feature in `jwks_url`.
    pub const HTTPS_NEEDS: &str = "an https:// jwks_url";

    /// `Ok` when this binary verifies JWTs, else the error naming the `jwt` feature.
    pub fn require_compiled(&self) -> Result<(), FeatureMissing> {
        Feature::Jwt.require(Self::NEEDS)
    }

    /// `Ok` unless `jwks_url` is `https://` in a binary without the `tls` feature.
    pub fn require_compiled_jwks_url(&self) -> Result<(), FeatureMissing> {
        match &self.jwks_url {
            Some(url) if url.is_https() => Feature::Tls.require(Self::HTTPS_NEEDS),
            _ => Ok(()),
        }
    }
}

impl crate::ListenerTlsConfig {
    pub const NEEDS: &str = "TLS on the public listener ([bff.tls])";

    /// `Ok` when this binary has TLS (the `tls` feature), else the error naming it.
    pub fn require_compiled(&self) -> Result<(), FeatureMissing> {
        Feature::Tls.require(Self::NEEDS)
    }
}

impl crate::TlsConfig {
    pub const NEEDS: &str = "mTLS to a service ([services.NAME.tls])";

    /// `Ok` when this binary has TLS (the `tls` feature), else the error naming it.
    pub fn require_compiled(&self) -> Result<(), FeatureMissing> {
        Feature::Tls.require(Self::NEEDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_names_itself_and_how_to_enable_it() {
        let m = Feature::Etcd.missing("etcd:// discovery").to_string();
        assert!(
            m.starts_with("etcd:// discovery needs the `etcd` feature of bff"),
            "{m}"
        );
        assert!(m.contains(r#"features = ["etcd"]"#), "{m}");
        assert_eq!(Feature::Redis.require("x").is_ok(), cfg!(feature = "redis"));
    }
}
