//! Typed configuration of a BFF: the `bff.toml` schema (CONTRACT section 2), loading from TOML, YAML or JSON
//! with `BFF__SECTION__KEY` environment overrides and `${VAR}` expansion, and validation that reports every
//! error with its file, line and key path.
#![forbid(unsafe_code)]

/// Deserializes a value through its `FromStr` (the error message becomes the config error of its key).
macro_rules! from_str_serde {
    ($ty:ty, $expecting:literal $(, $int:ident)?) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    $(
                    fn $int<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                    )?
                }
                d.deserialize_any(V)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

mod discovery;
mod env_file;
mod features;
#[cfg(feature = "schema")]
mod json_schema;
mod load;
mod locate;
mod net;
mod redact;
mod response_schema;
mod schema;
mod secret;
mod session;
mod template;
mod units;
mod validate;
mod validated;
mod values;

#[cfg(feature = "schema")]
pub use self::json_schema::config_schema;
pub use self::{
    discovery::DiscoveryUrl,
    env_file::env_with_file,
    features::{Feature, FeatureMissing, InvalidValue},
    load::{ConfigError, ConfigErrors, Format, Loader, Origin, Source},
    net::{Cidr, CorsOrigin, HostPort, HttpUrl, OtlpEndpoint, RedisUrl, canonical_ip},
    redact::{REDACTED, redact_url},
    response_schema::ResponseSchema,
    schema::*,
    secret::{HmacSecret, MIN_HMAC_SECRET, SECRET_SHOWN, Secret},
    session::{
        ClientAuth, CookieName, CsrfHeader, SameSite, SessionConfig, SessionKey, SessionStore,
        TokenMode, is_local_path,
    },
    template::{JsonPath, PathTemplate, Placeholder, Segment, route_params},
    units::{ByteSize, Duration},
    validated::Validated,
    values::{
        BffName, CacheControl, ForwardHeader, HashKey, HedgeAfter, HttpMethod, JwtAlgorithm,
        RateLimitKey, RetryOn, is_never_forwarded,
    },
};
