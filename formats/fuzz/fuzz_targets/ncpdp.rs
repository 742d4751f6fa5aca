//! Fuzz target: the same harness the property tests drive (`clearway_formats::ncpdp::fuzz_ncpdp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clearway_formats::ncpdp::fuzz_ncpdp(data);
});
