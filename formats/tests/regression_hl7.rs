//! One test per HL7 bug found by the fuzzers.

/// cargo-fuzz found it: an MSH whose encoding characters are invalid (a
/// space) made the unparseable-message ACK copy a tab from the input.
#[test]
fn unparseable_ack_has_no_control_characters() {
    clearway_formats::hl7::fuzz_hl7(b" MSH! MSH!{\t");
    clearway_formats::hl7::fuzz_hl7(b"MSH! MSH!{\t|x\x01y");
}
