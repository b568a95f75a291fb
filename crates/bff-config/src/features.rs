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
        }
    }

    /// `Ok` when compiled in, else the error that says how to get it.
    pub fn require(self, what: &str) -> Result<(), String> {
        if self.enabled() {
            Ok(())
        } else {
            Err(self.missing(what))
        }
    }

    /// The error for a config that needs this feature where it is not compiled in.
    pub fn missing(self, what: &str) -> String {
        let name = self.name();
        format!(
            "{what} needs the `{name}` feature of bff, which this binary was built without: \
             in Cargo.toml, bff = {{ ..., features = [\"{name}\"] }} (the `bff` command has every feature)"
        )
    }
}

impl crate::AuthKind {
    /// `Ok` when this binary can enforce it, else the error naming the feature (`auth = "jwt"` without
    /// `jwt`): the validator puts it on a route's `auth`, and a Rust route's `Policy` gets it at build.
    pub fn require_compiled(self) -> Result<(), String> {
        match self {
            Self::Jwt => Feature::Jwt.require("auth = \"jwt\""),
            Self::None | Self::ApiKey => Ok(()),
        }
    }
}

impl crate::JwtConfig {
    /// `Ok` when this binary verifies JWTs, else the error naming the `jwt` feature: the validator puts it
    /// on `[edge.auth.jwt]`, and an app built from a config made by hand gets it at build.
    pub fn require_compiled(&self) -> Result<(), String> {
        Feature::Jwt.require("JWT authentication ([edge.auth.jwt])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_names_itself_and_how_to_enable_it() {
        let m = Feature::Etcd.missing("etcd:// discovery");
        assert!(
            m.starts_with("etcd:// discovery needs the `etcd` feature of bff"),
            "{m}"
        );
        assert!(m.contains(r#"features = ["etcd"]"#), "{m}");
        assert_eq!(Feature::Redis.require("x").is_ok(), cfg!(feature = "redis"));
    }
}
