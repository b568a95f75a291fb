//! The seed corpus of the `downstream_path` fuzz target (fuzz/corpus/downstream_path) runs as an ordinary
//! test, with the same property checks as the fuzz target, so CI exercises it on every change. The fuzzer
//! itself runs with `scripts/fuzz downstream_path`.

use std::path::Path;

#[test]
fn downstream_path_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/downstream_path");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for path in files {
        eprintln!("{}", path.display());
        bff_mesh::check_path_properties(&std::fs::read(&path).unwrap());
    }
}
