//! Fuzz target: the same harness the property tests drive (`clearway_formats::fhir::fuzz_fhir`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clearway_formats::fhir::fuzz_fhir(data);
});
