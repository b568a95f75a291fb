//! The config fuzzer's seed corpus (fuzz/corpus/config) runs as an ordinary test, through the fuzz
//! target's check: load, validate, build, one request. The fuzzer itself runs with `scripts/fuzz config`.
//! The seeds use every section, so the test needs every optional part of bff (`--features full`, as the
//! fuzz target has it, and as `cargo test --workspace` builds bff).
#![cfg(all(
    feature = "tls",
    feature = "jwt",
    feature = "redis",
    feature = "otlp",
    feature = "dns",
    feature = "etcd"
))]

#[path = "../../../fuzz/seeds.rs"]
mod seeds;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Every seed, on paused time as in the fuzz target; a panic anywhere (a spawned task's too, which tokio
/// would swallow and libFuzzer's hook turns into a crash) fails the test. Seeds named `*.toml` are valid
/// configs that must pass the check (so that the corpus exercises the request, not only the loader); the
/// others are inputs the fuzzer found, kept as regressions.
#[test]
fn config_seeds() {
    let panicked = Arc::new(AtomicBool::new(false));
    let default = std::panic::take_hook();
    let flag = panicked.clone();
    std::panic::set_hook(Box::new(move |info| {
        flag.store(true, Ordering::SeqCst);
        default(info);
    }));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut refused = Vec::new();
    for (path, data) in seeds::corpus("config") {
        eprintln!("{}", path.display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let checked = rt.block_on(bff::fuzzing::check_config(&data, &dir));
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
        assert!(
            !panicked.load(Ordering::SeqCst),
            "{} panicked",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "toml")
            && let Err(e) = checked
        {
            refused.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(
        refused.is_empty(),
        "seeds that do not pass bff check:\n{}",
        refused.join("\n")
    );
}
