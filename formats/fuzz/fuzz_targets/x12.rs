//! Fuzz target: the same harness the property tests drive (`clearway_formats::x12::fuzz_x12`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clearway_formats::x12::fuzz_x12(data);
});
