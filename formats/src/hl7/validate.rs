//! Required-segment and required-field checks per message type.
//!
//! Parsing ([`crate::hl7::parse`]) only establishes structure. This module
//! decides whether a message is one Clearway will accept, and explains why
//! not in the vocabulary of the acknowledgement that will carry the answer:
//! every finding is an [`Hl7Issue`] with an HL7 table 0357 error code and the
//! location (segment, occurrence, field, component) that ERR-2 or ERR-1
//! report. Messages describe the rule, never the value, because values are
//! PHI.
//!
//! What is checked:
//! - MSH: MSH-9 (message code and trigger), MSH-10, MSH-11 (`P`, `T` or
//!   `D`, else 202), MSH-12 (2.1 to 2.8.x, else 203) are errors when missing.
//!   MSH-7 is required by the standard but only a **warning** here: test
//!   feeds and some interface engines omit it, it plays no part in routing
//!   or acknowledging, and rejecting a clinical message for it would cost
//!   more than it protects. MSH-15/16 outside table 0155 are warnings (the
//!   acknowledgement logic treats them as `AL`).
//! - Message types and events (200/201): every message type is taken (VXU,
//!   MDM, RDE, OML, MFN, local Z types…: framing and MSH checked, routing
//!   decides where it goes); a message code that is not three letters or
//!   digits is 200. The types with a view here must carry one of their
//!   events: ADT A01-A62 (except A19), ORU^R01, ORM^O01, SIU^S12-S26,
//!   DFT^P03/P11, BAR^P01/P02/P05/P06/P10/P12, ACK (any trigger).
//! - Required segments per type and event (100 when missing), e.g. EVN, PID,
//!   PV1 for most ADT events, MRG for merges, OBR for ORU, ORC for ORM, SCH
//!   for SIU (RGS only a warning: commonly omitted), EVN, PID, FT1 for DFT,
//!   MSA for ACK. Presence only: this is not a full message-structure
//!   grammar, so segment order and group cardinality are not checked.
//! - Required fields of the segments present (101): EVN-2, PID-3, PID-5,
//!   PV1-2, ORC-1, OBR-4, OBX-3, OBX-11, OBX-2 when OBX-5 is valued, SCH-1
//!   or SCH-2, FT1-4, FT1-6, FT1-7, MRG-1, MSA-1, MSA-2.
//! - Data types and tables: MSH-7, EVN-2 and PID-7 must be HL7 date/times
//!   (102, warning); MSA-1 must be in table 0008 (103, error); PV1-2 in
//!   table 0004 and OBX-11 in table 0085 (103, warning).
//! - Segment ids must be three upper-case letters or digits (100).

use crate::hl7::parse::{Message, MessageKind, MessageType, Segment, Version, is_valid_segment_id};
use serde::Serialize;

/// Table 0357: message accepted.
pub const MESSAGE_ACCEPTED: u16 = 0;
/// Table 0357: segment sequence error (also: required segment missing).
pub const SEGMENT_SEQUENCE_ERROR: u16 = 100;
/// Table 0357: required field missing.
pub const REQUIRED_FIELD_MISSING: u16 = 101;
/// Table 0357: data type error.
pub const DATA_TYPE_ERROR: u16 = 102;
/// Table 0357: table value not found.
pub const TABLE_VALUE_NOT_FOUND: u16 = 103;
/// Table 0357: unsupported message type.
pub const UNSUPPORTED_MESSAGE_TYPE: u16 = 200;
/// Table 0357: unsupported event code.
pub const UNSUPPORTED_EVENT_CODE: u16 = 201;
/// Table 0357: unsupported processing id.
pub const UNSUPPORTED_PROCESSING_ID: u16 = 202;
/// Table 0357: unsupported version id.
pub const UNSUPPORTED_VERSION_ID: u16 = 203;
/// Table 0357: application internal error.
pub const APPLICATION_INTERNAL_ERROR: u16 = 207;

/// How bad an issue is (ERR-4: `E` or `W`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// The message is not acceptable as it is (ERR-4 `E`).
    Error,
    /// Worth reporting, not a reason to refuse the message (ERR-4 `W`).
    Warning,
}

impl Severity {
    /// The ERR-4 code (table 0516).
    pub fn code(self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
        }
    }
}

/// One finding about a message, located as ERR-2 locates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Hl7Issue {
    /// Error or warning.
    pub severity: Severity,
    /// HL7 table 0357 code (100, 101, 102, 103, 200, 201, 202, 203, 207).
    pub code: u16,
    /// Segment id; `???` when the segment's own id is malformed.
    pub segment: String,
    /// 1-based occurrence of that segment id in the message (for a
    /// malformed id: the segment's position in the message).
    pub segment_sequence: usize,
    /// 1-based field number, when the issue is about a field.
    pub field: Option<usize>,
    /// 1-based component number, when the issue is about a component.
    pub component: Option<usize>,
    /// What is wrong; never contains a value from the message.
    pub message: String,
}

impl Hl7Issue {
    /// An issue about a whole segment.
    pub fn segment(
        severity: Severity,
        code: u16,
        segment: &str,
        segment_sequence: usize,
        message: impl Into<String>,
    ) -> Hl7Issue {
        Hl7Issue {
            severity,
            code,
            segment: segment.to_string(),
            segment_sequence,
            field: None,
            component: None,
            message: message.into(),
        }
    }

    /// An issue about a field (and optionally one of its components).
    pub fn field(
        severity: Severity,
        code: u16,
        segment: &str,
        segment_sequence: usize,
        field: usize,
        component: Option<usize>,
        message: impl Into<String>,
    ) -> Hl7Issue {
        Hl7Issue {
            severity,
            code,
            segment: segment.to_string(),
            segment_sequence,
            field: Some(field),
            component,
            message: message.into(),
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any issue is an error.
pub fn has_errors(issues: &[Hl7Issue]) -> bool {
    issues.iter().any(Hl7Issue::is_error)
}

/// Checks a message against the rules listed in the module documentation.
/// Issues come in message order: MSH first, then segment by segment, then
/// missing segments.
pub fn validate(msg: &Message<'_>) -> Vec<Hl7Issue> {
    let t = msg.message_type();
    let kind = MessageKind::from_code(&t.code);
    let mut v = Validator { issues: Vec::new() };
    v.msh(msg, &t, kind);
    v.segments(msg);
    v.required_segments(msg, &t, kind);
    v.issues
}

struct Validator {
    issues: Vec<Hl7Issue>,
}

/// The segments a message type and event require, `None` when the event is
/// not supported.
fn required_segments(kind: MessageKind, trigger: &str) -> Option<&'static [&'static str]> {
    const ADT: &[&str] = &["EVN", "PID", "PV1"];
    const ADT_MERGE: &[&str] = &["EVN", "PID", "MRG"];
    let number = |prefix: char| -> Option<u8> {
        let digits = trigger.strip_prefix(prefix)?;
        if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    match kind {
        MessageKind::Adt => match number('A')? {
            18 | 30 | 34..=36 | 39..=51 => Some(ADT_MERGE),
            20 => Some(&["EVN", "NPU"]),
            24 | 37 | 60 => Some(&["EVN", "PID"]),
            19 => None,
            1..=62 => Some(ADT),
            _ => None,
        },
        MessageKind::Oru => (trigger == "R01").then_some(&["OBR"][..]),
        MessageKind::Orm => (trigger == "O01").then_some(&["ORC"][..]),
        MessageKind::Siu => matches!(number('S')?, 12..=26).then_some(&["SCH"][..]),
        MessageKind::Dft => matches!(trigger, "P03" | "P11").then_some(&["EVN", "PID", "FT1"][..]),
        MessageKind::Bar => match trigger {
            "P01" | "P02" | "P05" | "P06" => Some(&["EVN", "PID"]),
            "P10" | "P12" => Some(&["EVN", "PID", "PV1"]),
            _ => None,
        },
        MessageKind::Ack => Some(&["MSA"]),
        MessageKind::Other => None,
    }
}

/// Whether a component-1 value is an HL7 date/time (DTM/TS):
/// `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`, with plausible ranges.
pub fn is_hl7_datetime(s: &[u8]) -> bool {
    let (body, tz) = match s.iter().position(|b| matches!(b, b'+' | b'-')) {
        Some(i) => (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
        None => (s, None),
    };
    if let Some(tz) = tz
        && !(tz.len() == 4 && tz.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    let (digits, fraction) = match body.iter().position(|b| *b == b'.') {
        Some(i) => (body.get(..i).unwrap_or_default(), body.get(i + 1..)),
        None => (body, None),
    };
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if let Some(f) = fraction
        && (digits.len() != 14 || f.is_empty() || f.len() > 4 || !f.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    let part = |range: std::ops::Range<usize>| -> Option<u32> {
        let d = digits.get(range)?;
        Some(d.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')))
    };
    let in_range = |range, lo, hi| part(range).is_none_or(|v| (lo..=hi).contains(&v));
    in_range(4..6, 1, 12)
        && in_range(6..8, 1, 31)
        && in_range(8..10, 0, 23)
        && in_range(10..12, 0, 59)
        && in_range(12..14, 0, 60)
}

impl Validator {
    fn push(&mut self, issue: Hl7Issue) {
        self.issues.push(issue);
    }

    fn missing_field(&mut self, seg: &str, seq: usize, field: usize, what: &str) {
        self.push(Hl7Issue::field(
            Severity::Error,
            REQUIRED_FIELD_MISSING,
            seg,
            seq,
            field,
            None,
            format!("required field {seg}-{field} ({what}) is missing"),
        ));
    }

    /// Reports field `field` of `seg` when it holds no data.
    fn require(&mut self, seg: &Segment<'_>, seq: usize, field: usize, what: &str) {
        if !seg.field(field).is_some_and(|f| f.is_valued()) {
            self.missing_field(seg.id(), seq, field, what);
        }
    }

    /// Warns when component 1 of `field` is valued but not a date/time.
    fn datetime(&mut self, seg: &Segment<'_>, seq: usize, field: usize, what: &str) {
        let Some(c) = seg.field(field).and_then(|f| f.component(1)) else {
            return;
        };
        if c.is_valued() && !is_hl7_datetime(c.raw()) {
            self.push(Hl7Issue::field(
                Severity::Warning,
                DATA_TYPE_ERROR,
                seg.id(),
                seq,
                field,
                None,
                format!("{}-{field} ({what}) is not a valid HL7 date/time", seg.id()),
            ));
        }
    }

    /// Reports component 1 of `field` when valued but not in `table`.
    #[allow(clippy::too_many_arguments)]
    fn table(
        &mut self,
        seg: &Segment<'_>,
        seq: usize,
        field: usize,
        table: &[&str],
        table_id: &str,
        severity: Severity,
    ) {
        let Some(c) = seg.field(field).and_then(|f| f.component(1)) else {
            return;
        };
        // Padding is tolerated: `| AL|` reads as `AL`, `| |` as empty.
        let code = c.raw().trim_ascii();
        if c.is_valued() && !code.is_empty() && !table.iter().any(|t| t.as_bytes() == code) {
            self.push(Hl7Issue::field(
                severity,
                TABLE_VALUE_NOT_FOUND,
                seg.id(),
                seq,
                field,
                None,
                format!("{}-{field} is not a value of HL7 table {table_id}", seg.id()),
            ));
        }
    }

    fn msh(&mut self, msg: &Message<'_>, t: &MessageType<'_>, kind: MessageKind) {
        let msh = msg.msh();
        if msh.field(7).is_none_or(|f| !f.is_valued()) {
            self.push(Hl7Issue::field(
                Severity::Warning,
                REQUIRED_FIELD_MISSING,
                "MSH",
                1,
                7,
                None,
                "MSH-7 (date/time of message) is missing",
            ));
        } else {
            self.datetime(&msh, 1, 7, "date/time of message");
        }
        if t.code.is_empty() {
            self.push(Hl7Issue::field(
                Severity::Error,
                REQUIRED_FIELD_MISSING,
                "MSH",
                1,
                9,
                Some(1),
                "required field MSH-9.1 (message code) is missing",
            ));
        } else if kind == MessageKind::Other
            && !(t.code.len() == 3 && t.code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        {
            // Any message type is taken, but it must look like one (three
            // letters or digits, table 0076 and its local Z types).
            self.push(Hl7Issue::field(
                Severity::Error,
                UNSUPPORTED_MESSAGE_TYPE,
                "MSH",
                1,
                9,
                Some(1),
                "not a message type (three letters or digits)",
            ));
        } else if t.trigger.is_empty() && kind != MessageKind::Ack {
            self.push(Hl7Issue::field(
                Severity::Error,
                REQUIRED_FIELD_MISSING,
                "MSH",
                1,
                9,
                Some(2),
                "required field MSH-9.2 (trigger event) is missing",
            ));
        } else if kind != MessageKind::Other && required_segments(kind, &t.trigger).is_none() {
            // A type without a view here (VXU, MDM, RDE, OML, …) is taken:
            // its framing and MSH are checked, routing decides where it
            // goes. A known type with an event it does not have is not.
            self.push(Hl7Issue::field(
                Severity::Error,
                UNSUPPORTED_EVENT_CODE,
                "MSH",
                1,
                9,
                Some(2),
                "unsupported event code for this message type",
            ));
        }
        if msg.control_id().is_none() {
            self.missing_field("MSH", 1, 10, "message control id");
        }
        match msg.processing_id().as_deref() {
            None => self.missing_field("MSH", 1, 11, "processing id"),
            Some("P" | "T" | "D") => {}
            Some(_) => self.push(Hl7Issue::field(
                Severity::Error,
                UNSUPPORTED_PROCESSING_ID,
                "MSH",
                1,
                11,
                Some(1),
                "unsupported processing id (expected P, T or D)",
            )),
        }
        match msg.version() {
            None => self.missing_field("MSH", 1, 12, "version id"),
            Some(v) => {
                let supported = Version::parse(&v).is_some_and(|v| v.major == 2 && (1..=8).contains(&v.minor));
                if !supported {
                    self.push(Hl7Issue::field(
                        Severity::Error,
                        UNSUPPORTED_VERSION_ID,
                        "MSH",
                        1,
                        12,
                        Some(1),
                        "unsupported version id (expected 2.1 to 2.8.x)",
                    ));
                }
            }
        }
        const TABLE_0155: &[&str] = &["AL", "NE", "ER", "SU"];
        self.table(&msh, 1, 15, TABLE_0155, "0155", Severity::Warning);
        self.table(&msh, 1, 16, TABLE_0155, "0155", Severity::Warning);
    }

    fn segments(&mut self, msg: &Message<'_>) {
        // Occurrence counters; a message has few distinct segment ids, so a
        // linear scan beats hashing.
        let mut seen: Vec<(&[u8], usize)> = Vec::with_capacity(16);
        for seg in msg.segments().skip(1) {
            let id = seg.id_bytes();
            if !is_valid_segment_id(id) {
                self.push(Hl7Issue::segment(
                    Severity::Error,
                    SEGMENT_SEQUENCE_ERROR,
                    "???",
                    seg.position(),
                    "segment id is not three upper-case letters or digits",
                ));
                continue;
            }
            let seq = match seen.iter_mut().find(|(s, _)| *s == id) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((id, 1));
                    1
                }
            };
            self.segment(&seg, seq);
        }
    }

    fn segment(&mut self, seg: &Segment<'_>, seq: usize) {
        match seg.id_bytes() {
            b"EVN" => {
                self.require(seg, seq, 2, "recorded date/time");
                self.datetime(seg, seq, 2, "recorded date/time");
            }
            b"PID" => {
                self.require(seg, seq, 3, "patient identifier list");
                self.require(seg, seq, 5, "patient name");
                self.datetime(seg, seq, 7, "date/time of birth");
            }
            b"PV1" => {
                self.require(seg, seq, 2, "patient class");
                const TABLE_0004: &[&str] = &["B", "C", "E", "I", "N", "O", "P", "R", "U"];
                self.table(seg, seq, 2, TABLE_0004, "0004", Severity::Warning);
            }
            b"MRG" => self.require(seg, seq, 1, "prior patient identifier list"),
            b"ORC" => self.require(seg, seq, 1, "order control"),
            b"OBR" => self.require(seg, seq, 4, "universal service identifier"),
            b"OBX" => {
                self.require(seg, seq, 3, "observation identifier");
                self.require(seg, seq, 11, "observation result status");
                if seg.field(5).is_some_and(|f| f.is_valued()) {
                    self.require(seg, seq, 2, "value type, required when OBX-5 is valued");
                }
                const TABLE_0085: &[&str] =
                    &["A", "B", "C", "D", "F", "I", "N", "O", "P", "R", "S", "U", "V", "W", "X"];
                self.table(seg, seq, 11, TABLE_0085, "0085", Severity::Warning);
            }
            b"SCH" => {
                let valued = |n| seg.field(n).is_some_and(|f| f.is_valued());
                if !valued(1) && !valued(2) {
                    self.missing_field("SCH", seq, 1, "placer or filler appointment id (SCH-1 or SCH-2)");
                }
            }
            b"FT1" => {
                self.require(seg, seq, 4, "transaction date");
                self.require(seg, seq, 6, "transaction type");
                self.require(seg, seq, 7, "transaction code");
            }
            b"MSA" => {
                self.require(seg, seq, 1, "acknowledgment code");
                self.require(seg, seq, 2, "message control id");
                const TABLE_0008: &[&str] = &["AA", "AE", "AR", "CA", "CE", "CR"];
                self.table(seg, seq, 1, TABLE_0008, "0008", Severity::Error);
            }
            _ => {}
        }
    }

    fn required_segments(&mut self, msg: &Message<'_>, t: &MessageType<'_>, kind: MessageKind) {
        let Some(required) = required_segments(kind, &t.trigger) else {
            return;
        };
        for id in required {
            if msg.segment(id).is_none() {
                self.push(Hl7Issue::segment(
                    Severity::Error,
                    SEGMENT_SEQUENCE_ERROR,
                    id,
                    1,
                    format!("required segment {id} is missing"),
                ));
            }
        }
        if kind == MessageKind::Siu && msg.segment("RGS").is_none() {
            self.push(Hl7Issue::segment(
                Severity::Warning,
                SEGMENT_SEQUENCE_ERROR,
                "RGS",
                1,
                "required segment RGS is missing",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(s: &str) -> Vec<Hl7Issue> {
        match Message::parse(s.as_bytes()) {
            Ok(m) => validate(&m),
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn codes(v: &[Hl7Issue]) -> Vec<(u16, &str, Option<usize>, Severity)> {
        v.iter().map(|i| (i.code, i.segment.as_str(), i.field, i.severity)).collect()
    }

    const GOOD_ADT: &str = "MSH|^~\\&|A|B|C|D|20240101120000||ADT^A01^ADT_A01|1|P|2.5.1\rEVN|A01|20240101120000\rPID|1||123^^^H^MR||DOE^JANE||19800101\rPV1|1|I\r";

    #[test]
    fn clean_adt_has_no_issues() {
        assert_eq!(issues(GOOD_ADT), []);
    }

    #[test]
    fn reports_missing_segments_and_fields() {
        let v = issues("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.3\rPID|1||||\r");
        assert_eq!(
            codes(&v),
            [
                (101, "PID", Some(3), Severity::Error),
                (101, "PID", Some(5), Severity::Error),
                (100, "EVN", None, Severity::Error),
                (100, "PV1", None, Severity::Error),
            ]
        );
        assert!(v[0].message.contains("PID-3"));
    }

    #[test]
    fn any_well_formed_message_type_is_taken() {
        // Types without a view here, and local Z types: no 200 and no 201.
        for t in ["VXU^V04", "MDM^T02", "RDE^O11", "OML^O21", "MFN^M02", "ZPI^Z01", "QBP^Q11"] {
            let v = issues(&format!("MSH|^~\\&|A|B|C|D|20240101||{t}|1|P|2.5.1\r"));
            assert!(!codes(&v).iter().any(|c| matches!(c.0, 200 | 201)), "{t}: {:?}", codes(&v));
        }
        // A known type with an event it does not have is still refused.
        let v = issues("MSH|^~\\&|A|B|C|D|20240101||ADT^A99|1|P|2.5.1\r");
        assert!(codes(&v).iter().any(|c| c.0 == 201), "{:?}", codes(&v));
    }

    #[test]
    fn checks_msh_fields() {
        let v = issues("MSH|^~\\&|A|B|C|D|||Z9^Z01|||3.0\r");
        assert_eq!(
            codes(&v),
            [
                (101, "MSH", Some(7), Severity::Warning),
                (200, "MSH", Some(9), Severity::Error),
                (101, "MSH", Some(10), Severity::Error),
                (101, "MSH", Some(11), Severity::Error),
                (203, "MSH", Some(12), Severity::Error),
            ]
        );
        let v = issues("MSH|^~\\&|A|B|C|D|2024||ADT^A99|1|X|2.5|||XX\r");
        assert_eq!(
            codes(&v),
            [
                (201, "MSH", Some(9), Severity::Error),
                (202, "MSH", Some(11), Severity::Error),
                (103, "MSH", Some(15), Severity::Warning),
            ]
        );
        let v = issues("MSH|^~\\&|A|B|C|D|2024||ADT|1|P|2.5\r");
        assert_eq!(codes(&v), [(101, "MSH", Some(9), Severity::Error)]);
        assert_eq!(v[0].component, Some(2));
    }

    #[test]
    fn checks_event_support_per_type() {
        for (t, ok) in [
            ("ORU^R01", true),
            ("ORU^R30", false),
            ("SIU^S12", true),
            ("SIU^S26", true),
            ("SIU^S27", false),
            ("ADT^A19", false),
            ("ADT^A62", true),
            ("ADT^A63", false),
            ("ADT^A1", false),
            ("DFT^P03", true),
            ("BAR^P01", true),
            ("BAR^P03", false),
            ("ACK^", true),
            ("ACK^A01^ACK", true),
        ] {
            let v = issues(&format!("MSH|^~\\&|A|B|C|D|2024||{t}|1|P|2.5\r"));
            assert_eq!(!v.iter().any(|i| i.code == 201), ok, "{t}");
        }
    }

    #[test]
    fn required_segments_per_type() {
        let missing = |t: &str| -> Vec<String> {
            issues(&format!("MSH|^~\\&|A|B|C|D|2024||{t}|1|P|2.5\r"))
                .into_iter()
                .filter(|i| i.code == 100)
                .map(|i| i.segment)
                .collect()
        };
        assert_eq!(missing("ADT^A08"), ["EVN", "PID", "PV1"]);
        assert_eq!(missing("ADT^A40"), ["EVN", "PID", "MRG"]);
        assert_eq!(missing("ORU^R01"), ["OBR"]);
        assert_eq!(missing("ORM^O01"), ["ORC"]);
        assert_eq!(missing("SIU^S12"), ["SCH", "RGS"]);
        assert_eq!(missing("DFT^P03"), ["EVN", "PID", "FT1"]);
        assert_eq!(missing("BAR^P01"), ["EVN", "PID"]);
        assert_eq!(missing("ACK^A01^ACK"), ["MSA"]);
    }

    #[test]
    fn checks_segment_fields_and_tables() {
        let v = issues(
            "MSH|^~\\&|A|B|C|D|2024||ACK^A01^ACK|1|P|2.5\rMSA|XX|\rOBX|1||3^x||5||||||Q\rFT1|1\rSCH|||\rORC\rOBR|1\rbad line\rPV1|1|Z\rPID|1||1||N||196203520\r",
        );
        let got: Vec<String> = v
            .iter()
            .map(|i| format!("{}:{}:{}:{:?}:{:?}", i.code, i.segment, i.segment_sequence, i.field, i.severity))
            .collect();
        assert_eq!(
            got,
            [
                "101:MSA:1:Some(2):Error",
                "103:MSA:1:Some(1):Error",
                "101:OBX:1:Some(2):Error",
                "103:OBX:1:Some(11):Warning",
                "101:FT1:1:Some(4):Error",
                "101:FT1:1:Some(6):Error",
                "101:FT1:1:Some(7):Error",
                "101:SCH:1:Some(1):Error",
                "101:ORC:1:Some(1):Error",
                "101:OBR:1:Some(4):Error",
                "100:???:8:None:Error",
                "103:PV1:1:Some(2):Warning",
                "102:PID:1:Some(7):Warning",
            ]
        );
    }

    #[test]
    fn issue_messages_never_contain_values() {
        let v = issues("MSH|^~\\&|A|B|C|D|SECRETDATE||SECRET^X|1|SECRETP|SECRETV|||SECRET\rPID|1||||\rSECRET LINE\r");
        assert!(!v.is_empty());
        for i in &v {
            assert!(!i.message.contains("SECRET"), "{i:?}");
            assert!(!i.segment.contains("SECRET"), "{i:?}");
        }
    }

    #[test]
    fn datetime_shapes() {
        for ok in [
            "2024",
            "202401",
            "20240131",
            "2024013123",
            "202401312359",
            "20240131235960",
            "20220204235415.772-0600",
            "198908181126+0215",
            "20240131235959.1234",
        ] {
            assert!(is_hl7_datetime(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "196203520",
            "20241301",
            "20240132",
            "2024013124",
            "20240131.5",
            "2024+01",
            "2024-0600x",
            "20240131235959.12345",
            "abcd",
            "20240131235959.",
        ] {
            assert!(!is_hl7_datetime(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn serializes_issues() {
        let i = Hl7Issue::field(Severity::Error, 101, "PID", 1, 3, None, "m");
        let json = serde_json::to_string(&i).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"severity":"Error","code":101,"segment":"PID","segment_sequence":1,"field":3,"component":null,"message":"m"}"#
        );
    }
}
