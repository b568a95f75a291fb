//! Secrets of the config (`bff.admin_token`, `[edge.auth.jwt] secret`): values that `Debug`, `Display`
//! and serde never show, so that they cannot reach a log line, an error, a trace or `GET /admin/config`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// What a secret is shown as.
pub const SECRET_SHOWN: &str = "[redacted]";

/// A secret value. `Debug`, `Display` and `Serialize` print `[redacted]`; only [`Secret::expose`] gives
/// the value, to the code that uses it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: for the code that checks or signs with it, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_SHOWN)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_SHOWN)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SECRET_SHOWN)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Shortest HS256/HS384/HS512 secret accepted (RFC 7518 section 3.2: at least the hash's size).
pub const MIN_HMAC_SECRET: usize = 32;

/// The shared secret of HS256/HS384/HS512 (`[edge.auth.jwt] secret`): a [`Secret`] of at least 32 bytes,
/// checked after `${VAR}` expansion (an empty variable is refused, never an empty key anyone can sign
/// with). The messages never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacSecret(Secret);

impl HmacSecret {
    /// The secret, if it is long enough.
    pub fn new(value: impl Into<String>) -> Result<Self, crate::InvalidValue> {
        let value = value.into();
        if value.is_empty() {
            return Err(
                "is empty (a `${VAR}` set to an empty string?); an HMAC secret needs at least 32 bytes"
                    .into(),
            );
        }
        if value.len() < MIN_HMAC_SECRET {
            return Err(format!(
                "is {} bytes long; an HMAC secret needs at least {MIN_HMAC_SECRET} bytes (256 bits) so that it cannot be guessed",
                value.len()
            ).into());
        }
        Ok(Self(Secret(value)))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }
}

impl FromStr for HmacSecret {
    type Err = crate::InvalidValue;
    fn from_str(s: &str) -> Result<Self, crate::InvalidValue> {
        Self::new(s)
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_SHOWN)
    }
}

impl Serialize for HmacSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HmacSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_shown() {
        let s = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s}"), SECRET_SHOWN);
        assert_eq!(format!("{s:?}"), SECRET_SHOWN);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2-hunter2-hunter2");
        let h = HmacSecret::new("k".repeat(32)).unwrap();
        assert_eq!(format!("{h:?}"), SECRET_SHOWN);
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn a_short_hmac_secret_is_refused_without_showing_it() {
        let e = HmacSecret::new("short-secret").unwrap_err();
        assert!(e.0.contains("12 bytes long"), "{e}");
        assert!(!e.0.contains("short-secret"), "{e}");
        assert!(HmacSecret::new("").unwrap_err().0.contains("is empty"));
        assert!(HmacSecret::new("k".repeat(32)).is_ok());
    }
}
