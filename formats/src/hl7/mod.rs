//! HL7 v2: parsing, validation, acknowledgements and MLLP framing.
//!
//! HL7 v2 arrives over MLLP connections and in batch files from systems that
//! interpret the standard loosely, and it is full of PHI. This module is
//! built around those two facts:
//!
//! - [`parse`] reads messages and streams zero-copy: a [`Message`] borrows
//!   the input and locates fields lazily, so the intake can parse, route
//!   and acknowledge at memory speed without copying patient data. It
//!   tolerates the common framing variants (CR/LF/CRLF, BOM, custom or
//!   three-character encoding characters) and rejects structural ambiguity
//!   with positioned, value-free errors. Escape sequences are decoded only
//!   when a value is read as text.
//! - [`validate`](mod@validate) checks required segments and fields per
//!   message type and reports [`Hl7Issue`]s carrying HL7 table 0357 codes.
//! - [`ack`] turns a message and its issues into the ACK the sender expects
//!   (and reads received ACKs).
//! - [`views`] reads the few facts routing needs from ADT, ORU, ORM, SIU and
//!   DFT messages, with person identifiers wrapped in
//!   [`clearway_core::Sensitive`].
//! - [`mllp`] is the frame codec, pure and bounded.
//! - `gen` ([`write_adt`]) writes deterministic synthetic ADT messages for
//!   benchmarks. (The module is `r#gen`: `gen` is reserved in edition 2024.)
//!
//! Nothing here performs I/O, reads a clock or panics on input.

#![warn(missing_docs)]

pub mod ack;
pub mod r#gen;
pub mod mllp;
pub mod parse;
pub mod validate;
pub mod viewer;
pub mod views;

#[cfg(test)]
mod proptests;

pub use ack::{AckCode, AckSpec, AckView, build_ack, build_ack_for_unparseable, parse_error_issue};
pub use r#gen::write_adt;
pub use mllp::{Frame, MllpError, decode_frame, encode_frame};
pub use parse::{
    AckCondition, AckMode, Batch, BatchError, BatchGroup, Component, Delimiters, Field, Limits, Message, MessageKind,
    MessageType, ParseError, Path, Repetition, Segment, SegmentId, Value, Version, split,
};
pub use validate::{Hl7Issue, Severity, validate};
pub use views::{AdtView, DftView, OrmView, OruView, PatientId, SiuView};

/// Fuzz entry point: parses `data` as a single message and as a stream and
/// exercises every accessor, view, the validator and both ACK builders,
/// asserting the crate's invariants. Panics only when an invariant is
/// broken. Driven by proptest in CI and usable from `cargo fuzz`.
#[doc(hidden)]
pub fn fuzz_hl7(data: &[u8]) {
    let limits = Limits { max_message_bytes: 1 << 20, max_segments: 1000, max_messages: 100 };
    match Message::parse_with(data, &limits) {
        Ok(m) => exercise(&m, &limits),
        Err(e) => {
            let issue = parse_error_issue(&e);
            assert!(matches!(issue.code, 100 | 207));
            let issues = [issue];
            let ack = build_ack_for_unparseable(
                data,
                &AckSpec {
                    code: AckCode::ApplicationReject,
                    control_id: "FUZZ",
                    timestamp: "20240101000000",
                    text: Some("rejected"),
                    issues: &issues,
                },
            );
            check_ack(&ack, AckCode::ApplicationReject, None);
        }
    }
    // The console's viewer: bounded, masked means the value is absent.
    let options = crate::x12::viewer::ViewOptions { reveal: false, max_segments: 200, interchange_notes: false };
    let masked = viewer::view(data, options);
    let clear = viewer::view(data, crate::x12::viewer::ViewOptions { reveal: true, ..options });
    assert!(masked.segments.len() <= 200 && masked.total_segments == clear.total_segments);
    for (m, c) in masked.segments.iter().zip(&clear.segments) {
        for (a, b) in m.elements.iter().zip(&c.elements) {
            if let (crate::x12::viewer::Shown::Masked(n), crate::x12::viewer::Shown::Clear(t)) = (&a.value, &b.value) {
                assert_eq!(*n, t.chars().count());
            }
        }
    }
    match split(data, &limits) {
        Ok(batch) => {
            assert!(batch.message_count() <= limits.max_messages);
            let _ = batch.verify();
            let _ = batch.declared_batch_count();
            for g in &batch.groups {
                let _ = g.declared_message_count();
                for s in g.header.iter().chain(g.trailer.iter()) {
                    for f in s.fields() {
                        let _ = f.decode();
                    }
                }
            }
            for m in batch.messages() {
                exercise(m, &limits);
            }
        }
        Err(e) => {
            let code = e.hl7_error_code();
            assert!(matches!(code, 100 | 207));
            let _ = e.to_string();
        }
    }
}

/// Reads everything there is to read of a parsed message.
fn exercise(m: &Message<'_>, limits: &Limits) {
    assert!(m.segment_count() >= 1 && m.segment_count() <= limits.max_segments);
    assert!(m.raw().len() <= limits.max_message_bytes);
    assert!(m.raw().starts_with(b"MSH"));
    let d = *m.delimiters();
    assert_eq!(Delimiters::from_header(m.msh().raw()).map(|(d, _)| d), Ok(d));
    for seg in m.segments() {
        let _ = (seg.id(), seg.segment_id(), seg.field(0));
        for field in seg.fields() {
            check_value(field.value());
            for rep in field.repetitions() {
                check_value(rep.value());
                for comp in rep.components() {
                    check_value(comp.value());
                    for sub in comp.subcomponents() {
                        check_value(sub);
                    }
                }
            }
        }
    }
    for path in ["MSH-9.2", "PID-3(2).4.1", "OBX(2)-5", "MSH-1", "MSH-2", "PID-3.1.2"] {
        if let Some(v) = m.get(path) {
            check_value(v);
        }
    }
    let _ = (
        m.message_type(),
        m.kind(),
        m.control_id(),
        m.processing_id(),
        m.version(),
        m.parsed_version(),
        m.accept_ack_type(),
        m.application_ack_type(),
        m.ack_mode(),
        m.sending_application(),
        m.sending_facility(),
        m.receiving_application(),
        m.receiving_facility(),
        m.timestamp(),
        m.encoding_characters(),
        format!("{m:?}"),
    );
    let _ = (
        AdtView::read(m),
        OruView::read(m),
        OrmView::read(m),
        SiuView::read(m),
        DftView::read(m),
        AckView::read(m).map(|a| a.ack_code()),
    );
    let issues = validate(m);
    for i in &issues {
        assert!(matches!(i.code, 100..=103 | 200..=203 | 207));
        assert!(i.segment.len() == 3);
    }
    let code = AckCode::for_issues(&issues, m.ack_mode().is_enhanced());
    let ack = build_ack(
        m,
        &AckSpec {
            code,
            control_id: "FUZZ|^~\\&",
            timestamp: "20240101000000",
            text: Some("text with | and \r"),
            issues: &issues,
        },
    );
    check_ack(&ack, code, Some(m));
}

/// A value's accessors are consistent and decoding never grows it beyond
/// what lossy UTF-8 replacement allows.
fn check_value(v: Value<'_>) {
    let decoded = v.decode();
    assert!(decoded.len() <= v.raw().len().saturating_mul(3));
    let _ = (v.as_str(), v.is_null(), v.is_valued());
}

/// An ACK we built parses, carries the intended MSA-1, echoes MSH-10, and
/// contains no control characters besides the CR terminators.
fn check_ack(ack: &str, code: AckCode, original: Option<&Message<'_>>) {
    assert!(!ack.bytes().any(|b| b.is_ascii_control() && b != b'\r'), "ACK contains control characters");
    let parsed = match Message::parse(ack.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("built ACK does not parse: {e}"),
    };
    let view = AckView::read(&parsed);
    assert_eq!(view.as_ref().and_then(AckView::ack_code), Some(code));
    if let Some(m) = original {
        assert_eq!(parsed.delimiters(), m.delimiters());
        let sent = m.msh().field(10).map(|f| f.raw()).unwrap_or_default();
        let echoed = parsed.get("MSA-2").map(|v| v.raw()).unwrap_or_default();
        if std::str::from_utf8(sent).is_ok() && !sent.iter().any(u8::is_ascii_control) {
            assert_eq!(echoed, sent, "MSA-2 must echo MSH-10");
        }
    }
}

/// Fuzz entry point for the MLLP codec: decodes `data` frame by frame with
/// a few limits, asserting that `consumed` and `payload` stay within the
/// buffer, that decoding always makes progress, and that re-encoding a
/// decoded payload decodes to the same payload.
#[doc(hidden)]
pub fn fuzz_mllp(data: &[u8]) {
    for max in [0, 16, 1024, data.len()] {
        let mut rest = data;
        loop {
            match decode_frame(rest, max) {
                Ok(None) => break,
                Ok(Some(f)) => {
                    assert!(f.consumed <= rest.len());
                    assert!(f.consumed >= 3);
                    assert!(f.payload.start >= 1 && f.payload.start <= f.payload.end);
                    assert!(f.payload.end + 2 == f.consumed);
                    assert!(f.payload.len() <= max);
                    let payload = rest.get(f.payload.clone()).unwrap_or_default();
                    assert!(!payload.contains(&mllp::START) && !payload.contains(&mllp::END[0]));
                    let mut again = Vec::new();
                    encode_frame(payload, &mut again);
                    let back = decode_frame(&again, max.max(payload.len()));
                    assert_eq!(back, Ok(Some(Frame { payload: 1..1 + payload.len(), consumed: payload.len() + 3 })));
                    rest = rest.get(f.consumed..).unwrap_or_default();
                }
                Err(MllpError::BytesBeforeStart { skip }) => {
                    assert!(skip > 0 && skip <= rest.len());
                    rest = rest.get(skip..).unwrap_or_default();
                }
                Err(_) => break,
            }
        }
    }
}

/// The body without what senders put before the first segment: a UTF-8
/// byte-order mark, whitespace and a stray MLLP start block. Intake reads
/// messages after it, and so must everything that finds a message again by
/// its position in a stored body.
pub fn trim_leading(body: &[u8]) -> &[u8] {
    let b = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = b.iter().position(|c| !c.is_ascii_whitespace() && *c != 0x0B).unwrap_or(b.len());
    &b[start..]
}
