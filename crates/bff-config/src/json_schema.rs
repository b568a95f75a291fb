//! The JSON Schema of `bff.toml` (the `schema` feature: the `bff` command has it, a BFF binary does not
//! compile it), generated from the config types: every table and key with its doc comment as
//! description, its default, and `additionalProperties: false` where unknown keys are errors. Values
//! written as strings (durations, sizes, URLs, header names, ...) are strings with a pattern or a
//! description of their form; the loader's parsers stay the judge (`bff check`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

/// The schema of [`Config`](crate::Config) (draft-07, which Taplo / Even Better TOML read).
pub fn config_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut root = generator.root_schema_for::<crate::Config>();
    root.insert("title".into(), "bff.toml".into());
    root.insert("$id".into(), "https://bff.dev/config.schema.json".into());
    root.to_value()
}

/// A string value of the config: its name, what it looks like, and a pattern when one says it exactly.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:literal $(, pattern = $pattern:literal)? $(, or_integer = $int:literal)?) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                #[allow(unused_mut)]
                let mut s = json_schema!({
                    "type": "string",
                    "description": $description,
                });
                $( s.insert("pattern".into(), $pattern.into()); )?
                $(
                    let _ = $int;
                    s.insert("type".into(), serde_json::json!(["string", "integer"]));
                )?
                s
            }
        }
    };
}

string_schema!(
    crate::SessionStore,
    "SessionStore",
    "\"memory\" or a redis:// URL (sessions shared by every instance naming it)."
);
string_schema!(
    crate::SessionKey,
    "SessionKey",
    "32 random bytes in base64 (e.g. `openssl rand -base64 32`); usually \"${SESSION_KEY}\"."
);
string_schema!(
    crate::CookieName,
    "CookieName",
    "A cookie name (RFC 6265 token), e.g. \"__Host-bff\".",
    pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
);
string_schema!(
    crate::CsrfHeader,
    "CsrfHeader",
    "A header name, e.g. \"x-csrf\".",
    pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
);
string_schema!(
    crate::BffName,
    "BffName",
    "The BFF's name: metrics label, trace service.name and user-agent downstream (a header value: no control characters)."
);
string_schema!(
    crate::ResponseSchema,
    "ResponseSchema",
    "A JSON Schema file (JSON), relative to the config's folder, e.g. \"schemas/user.json\"."
);
string_schema!(
    crate::Duration,
    "Duration",
    "A duration: a number and a unit (us, ms, s, m, h), e.g. \"250ms\", \"1.5s\", \"2m\".",
    pattern = r"^\s*[0-9]+(\.[0-9]+)?\s*(us|µs|ms|s|m|h)\s*$"
);
string_schema!(
    crate::ByteSize,
    "ByteSize",
    "A size: bytes as an integer, or a number and a unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. \"64KiB\", \"1MiB\".",
    pattern = r"^\s*[0-9]+\s*(B|KB|kB|KiB|MB|MiB|GB|GiB)?\s*$",
    or_integer = true
);
string_schema!(
    crate::RetryOn,
    "RetryOn",
    "connect_error, reset, timeout, or a 4xx/5xx status written as three digits (\"503\").",
    pattern = r"^(connect_error|reset|timeout|[45][0-9][0-9])$",
    or_integer = true
);
string_schema!(
    crate::HedgeAfter,
    "HedgeAfter",
    "A percentile of recent latencies from \"p50\" to \"p99.9\", or a duration greater than 0 (\"50ms\").",
    pattern = r"^(p[0-9.]+|\s*[0-9]+(\.[0-9]+)?\s*(us|µs|ms|s|m|h)\s*)$"
);
string_schema!(
    crate::RateLimitKey,
    "RateLimitKey",
    "client_ip, jwt_sub, header:NAME or header:NAME+client_ip.",
    pattern = r"^(client_ip|jwt_sub|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+(\+client_ip)?)$"
);
string_schema!(
    crate::HashKey,
    "HashKey",
    "header:NAME (a header of the downstream request) or param:NAME (a route parameter).",
    pattern = r"^(header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|param:[A-Za-z0-9_-]+)$"
);
string_schema!(
    crate::HttpMethod,
    "HttpMethod",
    "GET, HEAD, OPTIONS, PUT, DELETE, POST, PATCH or TRACE (any case).",
    pattern = r"^(?i:GET|HEAD|OPTIONS|PUT|DELETE|POST|PATCH|TRACE)$"
);
string_schema!(
    crate::CacheControl,
    "CacheControl",
    "A Cache-Control header value, e.g. \"private, max-age=10\".",
    pattern = r"\S"
);
string_schema!(
    crate::ForwardHeader,
    "ForwardHeader",
    "A header name; hop-by-hop and framing headers (connection, content-length, host, expect, te, upgrade, proxy-*, ...) are refused.",
    pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
);
string_schema!(
    crate::Cidr,
    "Cidr",
    "An IP address or CIDR (\"10.0.0.0/8\", \"2001:db8::/32\", \"::1\"); an IPv4-mapped one (\"::ffff:10.0.0.0/104\") means its IPv4 form.",
    pattern = r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"
);
string_schema!(
    crate::CorsOrigin,
    "CorsOrigin",
    "An exact origin, scheme://host[:port] without a path (\"https://app.example.com\"), or \"*\"; \"null\" is refused.",
    pattern = r"^(\*|https?://[^/?# ]+)$"
);
string_schema!(
    crate::HostPort,
    "HostPort",
    "host:port, e.g. \"users.internal:8080\" or \"10.0.0.5:80\".",
    pattern = r"^[^/ @?#]+:[0-9]{1,5}$"
);
string_schema!(
    crate::RedisUrl,
    "RedisUrl",
    "redis://[[user]:password@]host[:port][/db]",
    pattern = r"^redis://"
);
string_schema!(
    crate::HttpUrl,
    "HttpUrl",
    "An http:// or https:// URL with a host.",
    pattern = r"^https?://[^/]+"
);
string_schema!(
    crate::OtlpEndpoint,
    "OtlpEndpoint",
    "The http:// base URL of an OTLP/HTTP collector, e.g. \"http://127.0.0.1:4318\" (spans go to BASE/v1/traces).",
    pattern = r"^http://[^/ ]+"
);
string_schema!(
    crate::Secret,
    "Secret",
    "A secret, usually \"${VARIABLE}\" from the environment; never shown (logs, errors, /admin/config)."
);
string_schema!(
    crate::HmacSecret,
    "HmacSecret",
    "The HS256/HS384/HS512 shared secret, at least 32 bytes after ${VAR} expansion; never shown."
);
string_schema!(
    crate::DiscoveryUrl,
    "DiscoveryUrl",
    "dns://host:port, dns+srv://_service._proto.name (both with an optional ?nameserver=IP[:PORT]), file://path or etcd://host:port[,host:port...]/prefix.",
    pattern = r"^(dns|dns\+srv|file|etcd)://"
);
string_schema!(
    crate::PathTemplate,
    "PathTemplate",
    "A downstream path starting with /; {param} is a route parameter, {backend.json.path} a value of a backend in depends_on.",
    pattern = r"^/"
);
string_schema!(
    crate::JsonPath,
    "JsonPath",
    "A JSONPath (RFC 9535), e.g. \"$.profile.name\" or \"$.items[*].id\".",
    pattern = r"^\$"
);

impl JsonSchema for crate::JwtAlgorithm {
    fn schema_name() -> Cow<'static, str> {
        "JwtAlgorithm".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let all: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
        json_schema!({
            "type": "string",
            "enum": all,
            "description": "A JWT signature algorithm; `none` can never be enabled.",
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_refuses_unknown_keys_and_typed_strings_are_strings() {
        let s = super::config_schema();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(s["additionalProperties"], false);
        let defs = s["definitions"].as_object().unwrap();
        assert_eq!(defs["Duration"]["type"], "string");
        assert!(defs["Duration"]["pattern"].is_string());
        assert_eq!(defs["EdgeConfig"]["additionalProperties"], false);
        assert_eq!(
            defs["EdgeConfig"]["properties"]["request_timeout"]["default"],
            "15s"
        );
    }
}
