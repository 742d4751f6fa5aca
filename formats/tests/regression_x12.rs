//! One test per bug found (most by the property tests), so none returns.
#![allow(clippy::unwrap_used)]

use clearway_formats::x12::build::{self, Controls};
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, analyze, fuzz_x12};
use time::macros::datetime;

fn sample() -> String {
    let mut out = vec![];
    synth::write(&mut out, Kind::Professional837, 1, 3).unwrap();
    String::from_utf8(out).unwrap()
}

fn ack(input: &[u8]) -> Option<String> {
    let a = analyze(input, &AnalyzeOptions::default());
    build::ack999(&a.interchanges[0], Controls::derived(b"r"), datetime!(2024-01-15 12:00))
        .map(|v| String::from_utf8(v).unwrap())
}

/// A segment id with multi-byte UTF-8 used to panic when truncated to three
/// characters for IK301.
#[test]
fn multibyte_segment_id_does_not_panic() {
    let input = sample().replace("N3*", "N\u{e9}1*");
    fuzz_x12(input.as_bytes());
}

/// The IK404 copy of a bad value used to carry non-ASCII bytes, making our
/// own 999 invalid.
#[test]
fn ik404_copy_is_printable_ascii() {
    let input = sample().replace("NM1*85*2*SYNTHETIC", "NM1*85*2*SYNTH\u{e9}TIC");
    let text = ack(input.as_bytes()).unwrap();
    assert!(text.is_ascii(), "{text}");
    fuzz_x12(input.as_bytes());
}

/// A GS without GS08 used to be echoed into an AK1 missing AK103.
#[test]
fn broken_gs_is_answered_by_ta1_not_999() {
    let input = sample().replace("*X*005010X222A1~", "*X~");
    let a = analyze(input.as_bytes(), &AnalyzeOptions::default());
    assert_eq!(a.interchanges[0].report.note_code().code(), "024");
    assert!(ack(input.as_bytes()).is_none());
}

/// "SITUATIONAL TRIGGER" (a code with a space) was split by the table
/// loader, so our own CTX segments failed validation.
#[test]
fn ctx_situational_trigger_validates() {
    // NM108 without NM109 breaks the NM1 paired rule P0809.
    let input: String = sample()
        .split('\n')
        .map(|l| {
            if l.starts_with("NM1*85*") {
                l.rsplit_once('*').map(|(a, _)| format!("{a}~")).unwrap()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = ack(input.as_bytes()).unwrap();
    assert!(text.contains("CTX*SITUATIONAL TRIGGER*NM1*"), "{text}");
    fuzz_x12(input.as_bytes());
}

/// A composite-level IK4 used to carry the composite id (C023) as IK402,
/// which must be numeric.
#[test]
fn composite_ik402_is_omitted() {
    let input = sample().replace("***11:B:1*Y", "*****Y");
    let text = ack(input.as_bytes()).unwrap();
    assert!(!text.contains("C023"), "{text}");
    fuzz_x12(input.as_bytes());
}

/// A 999 was built to acknowledge a 999: acknowledgements are not acknowledged.
#[test]
fn acknowledgements_are_not_acknowledged() {
    let input = sample();
    let first = ack(input.as_bytes()).unwrap();
    assert!(ack(first.as_bytes()).is_none());
}

/// A non-ASCII repetition separator (ISA11) used to be accepted and echoed
/// into our acknowledgements, making them invalid.
#[test]
fn non_ascii_delimiter_rejects_the_interchange() {
    let mut input = sample().into_bytes();
    input[82] = 0xEF;
    let a = analyze(&input, &AnalyzeOptions::default());
    assert!(!a.interchanges[0].report.accepted());
    assert!(ack(&input).is_none(), "a rejected interchange gets a TA1 only");
    fuzz_x12(&input);
}

/// An ST01 that is not a transaction set id (a mutated `83'`) used to be
/// echoed into AK201, which must be a code from the 999's list.
#[test]
fn unknown_st01_is_not_echoed_into_ak201() {
    let input = sample().replace("ST*837*", "ST*83'*");
    if let Some(text) = ack(input.as_bytes()) {
        assert!(!text.contains("AK2*83'"), "{text}");
    }
    fuzz_x12(input.as_bytes());
}

/// A GS01 that is not a functional identifier (a mutated `gC`) used to be
/// echoed into AK101.
#[test]
fn unknown_gs01_is_not_echoed_into_ak101() {
    let input = sample().replace("GS*HC*", "GS*gC*");
    assert!(ack(input.as_bytes()).is_none());
    fuzz_x12(input.as_bytes());
}
