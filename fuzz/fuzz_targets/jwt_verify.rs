//! Fuzzes JWT parsing and verification (header, algorithm choice, key lookup, signature, claims) with the
//! test JWKS: no input may panic, none may be accepted.
//! Run with: `scripts/fuzz jwt_verify 600`
#![no_main]

use bff_edge::auth::{JwtAuth, check_jwt_properties};
use std::sync::OnceLock;

fn auth() -> &'static JwtAuth {
    static AUTH: OnceLock<JwtAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jwt");
        let cfg = bff_config::JwtConfig {
            issuer: Some("https://id.example.com".into()),
            audiences: vec!["web".into()],
            jwks_file: Some(dir.join("jwks.json").to_string_lossy().into_owned()),
            algorithms: vec![
                bff_config::JwtAlgorithm::RS256,
                bff_config::JwtAlgorithm::ES256,
                bff_config::JwtAlgorithm::EdDSA,
            ],
            ..Default::default()
        };
        JwtAuth::new(&cfg).expect("fixture JWKS")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check_jwt_properties(auth(), data);
});
