//! The seed corpus of the `downstream_path` fuzz target (fuzz/corpus/downstream_path) runs as an ordinary
//! test, with the same property checks as the fuzz target, so CI exercises it on every change. The fuzzer
//! itself runs with `scripts/fuzz downstream_path`.

#[path = "../../../fuzz/seeds.rs"]
mod seeds;

use seeds::corpus;

#[test]
fn downstream_path_seeds() {
    for (path, data) in corpus("downstream_path") {
        eprintln!("{}", path.display());
        bff_mesh::check_path_properties(&data);
    }
}
