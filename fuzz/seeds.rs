//! The seed corpus of a fuzz target (`fuzz/corpus/<target>`), for the tests that run every seed through
//! the target's property check as an ordinary test (`crates/*/tests/fuzz_seeds.rs` include this file).

use std::path::{Path, PathBuf};

/// Every seed of `target`, sorted by file name, with its bytes; panics when there is none.
pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    // Every crate that includes this sits at crates/NAME.
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
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}
