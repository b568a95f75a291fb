//! The seed corpora of the downstream-path and header-forwarding fuzzers (fuzz/corpus/placeholder_path,
//! fuzz/corpus/header_forwarding) run as ordinary tests, with the fuzz targets' property checks. The
//! fuzzers themselves run with `scripts/fuzz`.

#[path = "../../../fuzz/seeds.rs"]
mod seeds;

use seeds::corpus;

#[test]
fn placeholder_path_seeds() {
    for (path, data) in corpus("placeholder_path") {
        eprintln!("{}", path.display());
        bff_aggregate::check_path_properties(&data);
    }
}

#[test]
fn header_forwarding_seeds() {
    for (path, data) in corpus("header_forwarding") {
        eprintln!("{}", path.display());
        bff_mesh::check_forwarding_properties(&data);
    }
}
