//! The seed corpora of the downstream-path and header-forwarding fuzzers (fuzz/corpus/placeholder_path,
//! fuzz/corpus/header_forwarding) run as ordinary tests, with the fuzz targets' property checks. The
//! fuzzers themselves run with `scripts/fuzz`.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

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
