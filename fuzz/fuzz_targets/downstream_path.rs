//! Fuzzes the downstream path builder of `path!`: whatever the values, the built path has exactly the
//! template's segments, each value percent-encoded inside its own.
//! Run with: `scripts/fuzz downstream_path 600`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bff_mesh::check_path_properties(data);
});
