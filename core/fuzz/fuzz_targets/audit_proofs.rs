//! Fuzz target: the audit log's proof verifiers and checkpoint parsers
//! (`clearway_core::audit::fuzz_proofs`) on arbitrary input: malformed,
//! bent and over-long proofs are refused, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clearway_core::audit::fuzz_proofs(data);
});
