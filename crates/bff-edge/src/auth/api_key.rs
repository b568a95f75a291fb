//! API keys in the `x-api-key` header, from a file of keys or `sha256:HEX` digests. Only digests are kept
//! in memory, and every comparison takes the same time whatever the key.

use sha2::{Digest, Sha256};
use std::path::Path;

/// An API keys file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    #[error("api keys file {}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("line {line}: sha256: needs 64 hex digits")]
    BadDigest { line: usize },
    #[error("no keys")]
    Empty,
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Reads `path`: one key a line, or `sha256:` and 64 hex digits; blank lines and `#` comments skipped.
    pub fn load(path: &Path) -> Result<Self, ApiKeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| ApiKeyError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Self::parse(&text).map_err(|e| ApiKeyError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        let mut digests = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let digest = match line.strip_prefix("sha256:") {
                Some(hex) => decode_hex(hex).ok_or(ApiKeyError::BadDigest { line: n + 1 })?,
                None => Sha256::digest(line.as_bytes()).into(),
            };
            digests.push(digest);
        }
        if digests.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        Ok(Self { digests })
    }

    /// Whether `presented` is one of the keys; constant time in the key's content.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        let mut found = 0u8;
        for k in &self.digests {
            let diff = k
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found |= u8::from(diff == 0);
        }
        found == 1
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_keys() {
        // sha256("hashed-key")
        let hashed: String = Sha256::digest(b"hashed-key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let keys =
            ApiKeys::parse(&format!("# mobile app\nplain-key\n\nsha256:{hashed}\n")).unwrap();
        assert!(keys.verify(b"plain-key"));
        assert!(keys.verify(b"hashed-key"));
        assert!(!keys.verify(b"plain-ke"));
        assert!(!keys.verify(b""));
        assert!(
            !keys.verify(hashed.as_bytes()),
            "the digest itself is not a key"
        );
        assert!(ApiKeys::parse("sha256:abc").is_err());
        assert!(ApiKeys::parse("# nothing\n").is_err());
    }
}
