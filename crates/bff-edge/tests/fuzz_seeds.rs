//! The fuzzers' seed corpora (fuzz/corpus/*) run as ordinary tests, with the same property checks as the
//! fuzz targets, so CI exercises them on every change. The fuzzers themselves run with `scripts/fuzz`.

#[cfg(feature = "jwt")]
use bff_edge::auth::{JwtAuth, check_jwt_properties};
#[path = "../../../fuzz/seeds.rs"]
mod seeds;

use seeds::corpus;

#[test]
fn path_normalize_seeds() {
    for (path, data) in corpus("path_normalize") {
        eprintln!("{}", path.display());
        bff_edge::path::check_properties(&data);
    }
}

#[cfg(feature = "jwt")]
#[test]
fn jwt_verify_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jwt");
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
    let auth = JwtAuth::new(&cfg).unwrap();
    for (path, data) in corpus("jwt_verify") {
        eprintln!("{}", path.display());
        check_jwt_properties(&auth, &data);
    }
}
