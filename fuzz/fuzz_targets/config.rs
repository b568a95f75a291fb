//! Fuzzes whole configs: no config that passes `bff check` (load, validate, build) crashes the process on
//! its first request, and no config text crashes the check itself (`bff::fuzzing::check_config`: every
//! section, `trusted_proxies`, `${VAR}` and backend placeholders, selectors). A panic anywhere, a spawned
//! task's included, aborts (libFuzzer's panic hook). Run with: `scripts/fuzz config 600`
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The folder relative files of a config are read from: the test fixtures (JWKS, certificates).
static DIR: LazyLock<PathBuf> =
    LazyLock::new(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Paused time: every timeout of the config passes at once, so a request waits on nothing real.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let _ = rt.block_on(bff::fuzzing::check_config(data, &DIR));
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
});
