//! Typed configuration of a BFF: the `bff.toml` schema (CONTRACT section 2), loading from TOML, YAML or JSON
//! with `BFF__SECTION__KEY` environment overrides and `${VAR}` expansion, and validation that reports every
//! error with its file, line and key path.
#![forbid(unsafe_code)]

mod env_file;
mod features;
mod load;
mod locate;
mod redact;
mod schema;
mod units;
mod validate;
mod values;

pub use self::{
    env_file::env_with_file,
    features::Feature,
    load::{ConfigError, ConfigErrors, Format, Loader, Origin, Source},
    redact::{REDACTED, redact_url},
    schema::*,
    units::{ByteSize, Duration},
    validate::{DiscoveryUrl, PathTemplate, Placeholder, Segment, route_params},
    values::{ForwardHeader, HashKey, HedgeAfter, HttpMethod, JwtAlgorithm, RateLimitKey, RetryOn},
};
