//! Fuzzes the downstream path builder of declarative aggregation: whatever the placeholder values (route
//! parameters, earlier backends' JSON), each stays exactly one segment (or one query value), never a dot
//! segment. Run with: `scripts/fuzz placeholder_path 600`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bff_aggregate::check_path_properties(data);
});
