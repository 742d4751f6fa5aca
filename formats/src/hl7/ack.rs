//! HL7 acknowledgements (ACK): building them, and reading them.
//!
//! The acknowledgement is the whole reliability contract of HL7 v2 over
//! MLLP: the sender retransmits until it sees an ACK whose MSA-2 equals the
//! MSH-10 it sent. So the builder copies that control id byte for byte (it
//! is written with the same encoding characters as the input, so no
//! re-escaping is needed), swaps sender and receiver, echoes processing id
//! and version, and picks the MSH-9 and ERR layout the sender's version
//! understands:
//!
//! - MSH-9 is `ACK^<trigger>^ACK` from v2.4, `ACK^<trigger>` for v2.3.x and
//!   plain `ACK` before;
//! - from v2.5, each issue is an ERR with ERR-2 (location
//!   `segment^sequence^field^repetition^component`), ERR-3 (`code^text^HL70357`)
//!   and ERR-4 (severity `E`/`W`); before v2.5 ERR-1 carries
//!   `segment^sequence^field^code&text&HL70357`.
//!
//! Everything the builder writes itself (timestamp, control id, texts) is
//! escaped; values copied from the input have control characters escaped so
//! that the ACK can always be framed. Segments end with CR. The clock is the
//! caller's: the timestamp is passed in.
//!
//! When the input cannot be parsed at all, [`build_ack_for_unparseable`]
//! extracts what it can of the MSH line and still produces a well-formed
//! reject, so the sender stops retrying.

use crate::hl7::parse::{
    Delimiters, Lines, Message, ParseError, SegmentId, Version, encode_escapes, nth_piece, strip_bom,
};
use crate::hl7::validate::{Hl7Issue, Severity};
use memchr::memchr2;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// MSA-1 acknowledgement codes (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AckCode {
    /// `AA`: application accept (original mode) / application acknowledgement accept.
    ApplicationAccept,
    /// `AE`: application error.
    ApplicationError,
    /// `AR`: application reject.
    ApplicationReject,
    /// `CA`: commit accept (enhanced mode).
    CommitAccept,
    /// `CE`: commit error.
    CommitError,
    /// `CR`: commit reject.
    CommitReject,
}

impl AckCode {
    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::ApplicationAccept => "AA",
            AckCode::ApplicationError => "AE",
            AckCode::ApplicationReject => "AR",
            AckCode::CommitAccept => "CA",
            AckCode::CommitError => "CE",
            AckCode::CommitReject => "CR",
        }
    }

    /// Reads a two-letter code.
    pub fn parse(s: &str) -> Option<AckCode> {
        Some(match s {
            "AA" => AckCode::ApplicationAccept,
            "AE" => AckCode::ApplicationError,
            "AR" => AckCode::ApplicationReject,
            "CA" => AckCode::CommitAccept,
            "CE" => AckCode::CommitError,
            "CR" => AckCode::CommitReject,
            _ => return None,
        })
    }

    /// Whether this is a commit (enhanced-mode accept) acknowledgement.
    pub fn is_commit(self) -> bool {
        matches!(self, AckCode::CommitAccept | AckCode::CommitError | AckCode::CommitReject)
    }

    /// The code for a set of issues: reject when the message type, event,
    /// processing id or version is not supported (200-203), error when
    /// there is any other error, accept otherwise (warnings do not count).
    /// `commit` selects CA/CE/CR instead of AA/AE/AR.
    pub fn for_issues(issues: &[Hl7Issue], commit: bool) -> AckCode {
        let errors = issues.iter().filter(|i| i.severity == Severity::Error);
        let mut error = false;
        for i in errors {
            if (200..=203).contains(&i.code) {
                return if commit { AckCode::CommitReject } else { AckCode::ApplicationReject };
            }
            error = true;
        }
        match (error, commit) {
            (false, false) => AckCode::ApplicationAccept,
            (false, true) => AckCode::CommitAccept,
            (true, false) => AckCode::ApplicationError,
            (true, true) => AckCode::CommitError,
        }
    }
}

/// What to acknowledge with.
#[derive(Debug, Clone, Copy)]
pub struct AckSpec<'s> {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the ACK itself.
    pub control_id: &'s str,
    /// MSH-7 of the ACK, an HL7 date/time supplied by the caller.
    pub timestamp: &'s str,
    /// MSA-3 text message, if any.
    pub text: Option<&'s str>,
    /// One ERR segment each.
    pub issues: &'s [Hl7Issue],
}

/// The parts of the received MSH the ACK echoes, as text ready to write
/// with `delims`.
struct Header<'a> {
    delims: Delimiters,
    sending_application: Cow<'a, str>,
    sending_facility: Cow<'a, str>,
    receiving_application: Cow<'a, str>,
    receiving_facility: Cow<'a, str>,
    trigger: Cow<'a, str>,
    control_id: Cow<'a, str>,
    processing_id: Cow<'a, str>,
    version_field: Cow<'a, str>,
    version: Option<Version>,
}

/// Raw input bytes as text safe to copy into a field written with the same
/// delimiters: invalid UTF-8 replaced, control characters escaped (or
/// replaced with a space when there is no escape character).
fn copy_raw<'a>(raw: &'a [u8], d: &Delimiters) -> Cow<'a, str> {
    let text = String::from_utf8_lossy(raw);
    if !text.bytes().any(|b| b.is_ascii_control()) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii_control() => match d.escape.map(char::from) {
                Some(e) => {
                    let _ = write!(out, "{e}X{b:02X}{e}");
                }
                None => out.push(' '),
            },
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Builds the acknowledgement of a parsed message. See the module
/// documentation for the layout.
pub fn build_ack(msg: &Message<'_>, spec: &AckSpec<'_>) -> String {
    let d = *msg.delimiters();
    let msh = msg.msh();
    let raw = |n: usize| msh.field(n).map(|f| copy_raw(f.raw(), &d)).unwrap_or_default();
    let trigger = msh.field(9).and_then(|f| f.component(2)).map(|c| copy_raw(c.raw(), &d)).unwrap_or_default();
    let header = Header {
        delims: d,
        sending_application: raw(3),
        sending_facility: raw(4),
        receiving_application: raw(5),
        receiving_facility: raw(6),
        trigger,
        control_id: raw(10),
        processing_id: raw(11),
        version_field: raw(12),
        version: msg.parsed_version(),
    };
    write_ack(&header, spec)
}

/// How many lines [`build_ack_for_unparseable`] looks through for an MSH.
const MSH_SEARCH_LINES: usize = 16;

/// Builds a reject for input that could not be parsed, from whatever the
/// first MSH line (within the first 16 lines) yields: its delimiters when valid (else `|^~\&`), sender,
/// receiver, trigger, MSH-10, MSH-11 (else `P`) and MSH-12 (else `2.5.1`).
///
/// `spec.issues` would typically be the parse error as one issue, from
/// [`parse_error_issue`]; `spec.code` would be AR (or CR).
pub fn build_ack_for_unparseable(input: &[u8], spec: &AckSpec<'_>) -> String {
    let mut rest = strip_bom(input);
    while let [b, tail @ ..] = rest {
        if b.is_ascii_whitespace() || *b == 0x0B {
            rest = tail;
        } else {
            break;
        }
    }
    // The first MSH among the first few lines (a rejected batch starts with
    // FHS/BHS), else the first line.
    let first_line = match memchr2(b'\r', b'\n', rest) {
        Some(n) => rest.get(..n).unwrap_or_default(),
        None => rest,
    };
    let line = Lines::new(rest)
        .take(MSH_SEARCH_LINES)
        .filter_map(|r| rest.get(r))
        .find(|l| l.starts_with(b"MSH"))
        .unwrap_or(first_line);
    let is_msh = line.starts_with(b"MSH");
    let parsed = if is_msh { Delimiters::from_header(line).ok().map(|(d, _)| d) } else { None };
    // With the input's own delimiters, fields are copied as they are; with
    // the defaults they are unescaped text and must be escaped.
    let (d, copy) = match parsed {
        Some(d) => (d, true),
        None => (Delimiters::default(), false),
    };
    let field_sep = match line.get(3) {
        Some(b) if is_msh && b.is_ascii_punctuation() => *b,
        _ => d.field,
    };
    let field = |n: usize| -> Cow<'_, str> {
        if !is_msh || n < 3 {
            return Cow::Borrowed("");
        }
        let Some(v) = nth_piece(line, field_sep, n - 1) else {
            return Cow::Borrowed("");
        };
        if copy {
            copy_raw(v, &d)
        } else {
            // Unescaped text under default delimiters: control characters
            // cannot be escaped without an escape sequence we trust, so
            // they become spaces.
            let text = String::from_utf8_lossy(v).replace(|c: char| c.is_control(), " ");
            Cow::Owned(encode_escapes(&text, &d))
        }
    };
    let trigger: Cow<'_, str> = if copy {
        nth_piece(line, field_sep, 8)
            .and_then(|f| nth_piece(f, d.repetition, 0))
            .and_then(|r| nth_piece(r, d.component, 1))
            .map(|c| copy_raw(c, &d))
            .unwrap_or_default()
    } else {
        Cow::Borrowed("")
    };
    let version_text = if copy {
        nth_piece(line, field_sep, 11)
            .and_then(|f| nth_piece(f, d.component, 0))
            .and_then(|v| std::str::from_utf8(v).ok())
    } else {
        None
    };
    let (version, version_field) = match version_text.and_then(Version::parse) {
        Some(v) => (Some(v), field(12)),
        None => (Some(Version::V2_5_1), Cow::Borrowed("2.5.1")),
    };
    let processing_id = match field(11) {
        p if p.is_empty() => Cow::Borrowed("P"),
        p => p,
    };
    let header = Header {
        delims: d,
        sending_application: field(3),
        sending_facility: field(4),
        receiving_application: field(5),
        receiving_facility: field(6),
        trigger,
        control_id: field(10),
        processing_id,
        version_field,
        version,
    };
    write_ack(&header, spec)
}

/// A parse error as an issue for an ACK: code 100 or 207 (see
/// [`ParseError::hl7_error_code`]), located at MSH, with the error's
/// (value-free) description.
pub fn parse_error_issue(error: &ParseError) -> Hl7Issue {
    let (segment, sequence) = match error {
        ParseError::UnexpectedHeader { id, segment } => (*id, *segment),
        _ => (SegmentId::from_bytes(b"MSH"), 1),
    };
    Hl7Issue::segment(Severity::Error, error.hl7_error_code(), segment.as_str(), sequence, error.to_string())
}

fn write_ack(h: &Header<'_>, spec: &AckSpec<'_>) -> String {
    let d = &h.delims;
    let f = char::from(d.field);
    let c = char::from(d.component);
    let esc = |s: &str| encode_escapes(s, d);
    let v24 = h.version.is_some_and(|v| v >= Version::V2_4);
    let v23 = h.version.is_some_and(|v| v >= Version::V2_3);
    let v25 = h.version.is_some_and(|v| v >= Version::V2_5);
    let message_type = if v24 {
        format!("ACK{c}{}{c}ACK", h.trigger)
    } else if v23 && !h.trigger.is_empty() {
        format!("ACK{c}{}", h.trigger)
    } else {
        "ACK".to_string()
    };
    let mut out = String::with_capacity(256 + 96 * spec.issues.len());
    let _ = write!(
        out,
        "MSH{f}{enc}{f}{ra}{f}{rf}{f}{sa}{f}{sf}{f}{ts}{f}{f}{message_type}{f}{id}{f}{p}{f}{v}\r",
        enc = d.encoding_characters(),
        ra = h.receiving_application,
        rf = h.receiving_facility,
        sa = h.sending_application,
        sf = h.sending_facility,
        ts = esc(spec.timestamp),
        id = esc(spec.control_id),
        p = h.processing_id,
        v = h.version_field,
    );
    let _ = write!(out, "MSA{f}{}{f}{}", spec.code.as_str(), h.control_id);
    if let Some(text) = spec.text {
        let _ = write!(out, "{f}{}", esc(text));
    }
    out.push('\r');
    for issue in spec.issues {
        let seg = esc(&issue.segment);
        let text = esc(&issue.message);
        let field = issue.field.map(|n| n.to_string()).unwrap_or_default();
        if v25 {
            // ERR-2 location: segment^sequence^field^repetition^component.
            let mut location = format!("{seg}{c}{}", issue.segment_sequence);
            if issue.field.is_some() {
                let _ = write!(location, "{c}{field}{c}1");
                if let Some(comp) = issue.component {
                    let _ = write!(location, "{c}{comp}");
                }
            }
            let _ = write!(
                out,
                "ERR{f}{f}{location}{f}{code}{c}{text}{c}HL70357{f}{sev}\r",
                code = issue.code,
                sev = issue.severity.code(),
            );
        } else {
            // ERR-1 (ELD): segment^sequence^field^code&text&HL70357.
            let code = match d.subcomponent.map(char::from) {
                Some(s) => format!("{}{s}{text}{s}HL70357", issue.code),
                None => issue.code.to_string(),
            };
            let _ = write!(out, "ERR{f}{seg}{c}{seq}{c}{field}{c}{code}\r", seq = issue.segment_sequence,);
        }
    }
    out
}

/// The acknowledgement-specific fields of a received ACK.
#[derive(Clone, PartialEq, Eq)]
pub struct AckView<'a> {
    /// MSA-1 as received.
    pub code: Cow<'a, str>,
    /// MSA-2: the control id of the message being acknowledged (raw).
    pub acknowledged_control_id: Cow<'a, str>,
    /// MSA-3 text message, decoded.
    pub text: Option<Cow<'a, str>>,
    /// The number of ERR segments.
    pub error_count: usize,
}

impl std::fmt::Debug for AckView<'_> {
    /// Omits the MSA-3 text: a peer may put anything there, PHI included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckView")
            .field("code", &self.code)
            .field("acknowledged_control_id", &self.acknowledged_control_id)
            .field("text_len", &self.text.as_ref().map(|t| t.len()))
            .field("error_count", &self.error_count)
            .finish()
    }
}

impl<'a> AckView<'a> {
    /// Reads the MSA of a message; `None` when it has none.
    pub fn read(msg: &Message<'a>) -> Option<AckView<'a>> {
        let msa = msg.segment("MSA")?;
        let get = |n| msa.field(n).map(|f| f.as_str()).unwrap_or_default();
        Some(AckView {
            code: get(1),
            acknowledged_control_id: get(2),
            text: msa.field(3).filter(|f| f.is_valued()).map(|f| f.decode()),
            error_count: msg.count("ERR"),
        })
    }

    /// MSA-1 as a known code.
    pub fn ack_code(&self) -> Option<AckCode> {
        AckCode::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::validate::validate;

    fn parse(s: &[u8]) -> Message<'_> {
        match Message::parse(s) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn spec<'s>(code: AckCode, issues: &'s [Hl7Issue]) -> AckSpec<'s> {
        AckSpec { code, control_id: "ACK1", timestamp: "20240102030405", text: None, issues }
    }

    const ADT251: &[u8] = b"MSH|^~\\&|SAPP|SFAC|RAPP|RFAC|20240101||ADT^A01^ADT_A01|CTRL-9|P|2.5.1\rEVN|A01|20240101\r";

    #[test]
    fn original_mode_accept() {
        let m = parse(ADT251);
        let ack = build_ack(&m, &spec(AckCode::ApplicationAccept, &[]));
        assert_eq!(ack, "MSH|^~\\&|RAPP|RFAC|SAPP|SFAC|20240102030405||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|CTRL-9\r");
        let back = parse(ack.as_bytes());
        let view = AckView::read(&back).unwrap_or_else(|| panic!("no MSA"));
        assert_eq!(view.ack_code(), Some(AckCode::ApplicationAccept));
        assert_eq!(view.acknowledged_control_id, "CTRL-9");
        let shown = format!("{view:?}");
        assert!(shown.contains("CTRL-9") && shown.contains("AA"), "{shown}");
        assert_eq!(validate(&back), []);
    }

    #[test]
    fn msh9_follows_version() {
        for (v, t) in [
            ("2.5.1", "ACK^A01^ACK"),
            ("2.4", "ACK^A01^ACK"),
            ("2.3.1", "ACK^A01"),
            ("2.3", "ACK^A01"),
            ("2.2", "ACK"),
            ("", "ACK"),
            ("junk", "ACK"),
        ] {
            let input = format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|{v}\r");
            let ack = build_ack(&parse(input.as_bytes()), &spec(AckCode::ApplicationAccept, &[]));
            let back = parse(ack.as_bytes());
            assert_eq!(back.get("MSH-9").map(|v| v.decode().into_owned()).as_deref(), Some(t), "{v}");
            assert_eq!(back.version().unwrap_or_default(), v);
        }
    }

    #[test]
    fn errors_layout_v25_and_older() {
        let issues = [
            Hl7Issue::field(Severity::Error, 101, "PID", 1, 3, None, "required field PID-3 is missing"),
            Hl7Issue::field(Severity::Warning, 102, "MSH", 1, 9, Some(2), "bad ^ thing"),
            Hl7Issue::segment(Severity::Error, 100, "PV1", 1, "required segment PV1 is missing"),
        ];
        let ack = build_ack(&parse(ADT251), &spec(AckCode::ApplicationError, &issues));
        let segs: Vec<&str> = ack.split('\r').collect();
        assert_eq!(segs[2], "ERR||PID^1^3^1|101^required field PID-3 is missing^HL70357|E");
        assert_eq!(segs[3], "ERR||MSH^1^9^1^2|102^bad \\S\\ thing^HL70357|W");
        assert_eq!(segs[4], "ERR||PV1^1|100^required segment PV1 is missing^HL70357|E");

        let old = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.3\r";
        let ack = build_ack(&parse(old), &spec(AckCode::ApplicationError, &issues));
        let segs: Vec<&str> = ack.split('\r').collect();
        assert_eq!(segs[2], "ERR|PID^1^3^101&required field PID-3 is missing&HL70357");
        assert_eq!(segs[4], "ERR|PV1^1^^100&required segment PV1 is missing&HL70357");
    }

    #[test]
    fn keeps_the_senders_encoding_characters() {
        let m = parse(b"MSH#*@$%#A#B#C#D#1##ADT*A04#X*Y#T#2.4\r");
        let issues = [Hl7Issue::field(Severity::Error, 101, "PID", 1, 3, None, "a#b*c")];
        let ack = build_ack(&m, &AckSpec { text: Some("x#y"), ..spec(AckCode::ApplicationError, &issues) });
        assert!(ack.starts_with("MSH#*@$%#C#D#A#B#20240102030405##ACK*A04*ACK#ACK1#T#2.4\r"), "{ack}");
        assert!(ack.contains("\rMSA#AE#X*Y#x$F$y\r"), "{ack}");
        let back = parse(ack.as_bytes());
        assert_eq!(back.get("MSA-3").map(|v| v.decode().into_owned()).as_deref(), Some("x#y"));
        assert_eq!(back.get("MSA-2").map(|v| v.raw()), Some(&b"X*Y"[..]));
    }

    #[test]
    fn no_escape_character_means_sanitised_text() {
        let m = parse(b"MSH|^~}|A|B|C|D|1||BAR^P01|X|P|2.4\r");
        let ack = build_ack(&m, &AckSpec { text: Some("a|b^c"), ..spec(AckCode::ApplicationAccept, &[]) });
        assert!(ack.starts_with("MSH|^~}|C|D|A|B|"), "{ack}");
        assert!(ack.contains("\rMSA|AA|X|a b c\r"), "{ack}");
    }

    #[test]
    fn control_characters_in_copied_fields_are_escaped() {
        let m = parse(b"MSH|^~\\&|A\x0B\x1C|B|C|D|1||ADT^A01|X\x01|P|2.5\r");
        let ack = build_ack(&m, &spec(AckCode::ApplicationAccept, &[]));
        assert!(!ack.bytes().any(|b| b.is_ascii_control() && b != b'\r'), "{ack:?}");
        assert!(ack.contains("MSA|AA|X\\X01\\\r"), "{ack:?}");
    }

    #[test]
    fn unparseable_input_gets_a_reject() {
        let input = b"\x0BMSH|^~\\&|SAPP|SFAC|RAPP|RFAC|2024||ADT^A01|C-1|T|2.3\rPID|1\rMSH|^~\\&|again\r";
        let err = match Message::parse(input) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        };
        let issues = [parse_error_issue(&err)];
        let ack = build_ack_for_unparseable(input, &spec(AckCode::ApplicationReject, &issues));
        let back = parse(ack.as_bytes());
        assert_eq!(back.get("MSA-1").map(|v| v.as_str().into_owned()).as_deref(), Some("AR"));
        assert_eq!(back.get("MSA-2").map(|v| v.as_str().into_owned()).as_deref(), Some("C-1"));
        assert_eq!(back.get("MSH-3").map(|v| v.as_str().into_owned()).as_deref(), Some("RAPP"));
        assert_eq!(back.get("MSH-9").map(|v| v.as_str().into_owned()).as_deref(), Some("ACK^A01"));
        assert_eq!(back.get("MSH-11").map(|v| v.as_str().into_owned()).as_deref(), Some("T"));
        assert_eq!(back.get("ERR-1.4.1").map(|v| v.as_str().into_owned()).as_deref(), Some("100"));

        // Garbage delimiters: defaults, escaped copies, a 2.5.1 reject with code 100.
        let input = b"MSH|^^^^|SA^PP|F|R|RF|1||ADT^A01|ID^1|P|2.4\r";
        let Err(err) = Message::parse(input) else { panic!("expected an error") };
        let issues = [parse_error_issue(&err)];
        let ack = build_ack_for_unparseable(input, &spec(AckCode::ApplicationReject, &issues));
        let back = parse(ack.as_bytes());
        assert_eq!(back.get("MSH-3").map(|v| v.decode().into_owned()).as_deref(), Some("R"));
        assert_eq!(back.get("MSH-5").map(|v| v.decode().into_owned()).as_deref(), Some("SA^PP"));
        assert_eq!(back.get("MSA-2").map(|v| v.decode().into_owned()).as_deref(), Some("ID^1"));
        assert_eq!(back.version().as_deref(), Some("2.5.1"));
        assert_eq!(back.get("ERR-3.1").map(|v| v.as_str().into_owned()).as_deref(), Some("100"));

        // A rejected batch: the first MSH after the envelope is used.
        let input = b"BHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|S|F|R|RF|1||ADT^A04|M-7|P|2.5\r";
        let ack = build_ack_for_unparseable(input, &spec(AckCode::ApplicationReject, &[]));
        let back = parse(ack.as_bytes());
        assert_eq!(back.get("MSA-2").map(|v| v.as_str().into_owned()).as_deref(), Some("M-7"));

        // Not HL7 at all.
        let ack = build_ack_for_unparseable(b"\xFF\x00hello", &spec(AckCode::ApplicationReject, &[]));
        let back = parse(ack.as_bytes());
        assert_eq!(back.get("MSH-9").map(|v| v.as_str().into_owned()).as_deref(), Some("ACK^^ACK"));
        assert_eq!(back.get("MSA-2").map(|v| v.is_empty()), Some(true));
    }

    #[test]
    fn limits_map_to_207() {
        let e = ParseError::TooManySegments { limit: 1 };
        assert_eq!(parse_error_issue(&e).code, 207);
        assert_eq!(parse_error_issue(&ParseError::NotMessageHeader).code, 100);
    }

    #[test]
    fn ack_code_for_issues() {
        let err = |code| Hl7Issue::segment(Severity::Error, code, "MSH", 1, "x");
        let warn = Hl7Issue::segment(Severity::Warning, 102, "MSH", 1, "x");
        assert_eq!(AckCode::for_issues(&[], false), AckCode::ApplicationAccept);
        assert_eq!(AckCode::for_issues(std::slice::from_ref(&warn), true), AckCode::CommitAccept);
        assert_eq!(AckCode::for_issues(&[err(101)], false), AckCode::ApplicationError);
        assert_eq!(AckCode::for_issues(&[err(101), err(203)], false), AckCode::ApplicationReject);
        assert_eq!(AckCode::for_issues(&[err(200)], true), AckCode::CommitReject);
        assert_eq!(AckCode::for_issues(&[err(100)], true), AckCode::CommitError);
        for c in ["AA", "AE", "AR", "CA", "CE", "CR"] {
            assert_eq!(AckCode::parse(c).map(AckCode::as_str), Some(c));
        }
    }
}
