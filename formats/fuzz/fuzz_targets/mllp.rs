//! Fuzz target: the same harness the property tests drive (`clearway_formats::hl7::fuzz_mllp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clearway_formats::hl7::fuzz_mllp(data);
});
