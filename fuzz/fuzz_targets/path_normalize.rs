//! Fuzzes the path normaliser that runs before routing and auth.
//! Run with: `scripts/fuzz path_normalize 600`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bff_edge::path::check_properties(data);
});
