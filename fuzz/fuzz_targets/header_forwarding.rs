//! Fuzzes header forwarding: no forwarded header is hop-by-hop, framing, or named in the client's
//! `Connection`. Run with: `scripts/fuzz header_forwarding 600`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bff_mesh::check_forwarding_properties(data);
});
