//! The whole of an X12 file, in one streaming pass: envelopes (ISA/GS/ST and
//! their trailers), SNIP 1-2 validation of each transaction set against its
//! guide, and the business documents in it (claims, eligibility and status
//! requests, enrollments, remittances, and the acknowledgements it carries).
//!
//! Results are pushed to a [`Sink`] as they complete, so a file of any size
//! is analysed in bounded memory: a set's documents are handed over when the
//! set ends and nothing of it is kept. [`analyze`] is the convenience form
//! that collects everything into an [`Analysis`] for inputs that fit in
//! memory (everything the intake accepts does).

use super::codes::{AckCode, GroupCode, SegmentCode, SetCode, Ta105};
use super::isa::{IsaFinding, IsaHeader};
use super::reader::{ReadError, Segment, SegmentReader};
use super::spec::tables;
use super::validate::{Options, SegmentError, SetValidator};
use super::views::{Document, SetView};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Read;

/// The GS functional group header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupHeader {
    /// GS01 functional identifier code (`HC`).
    pub functional_id: String,
    /// GS02 application sender's code.
    pub sender: String,
    /// GS03 application receiver's code.
    pub receiver: String,
    /// GS04 CCYYMMDD.
    pub date: String,
    /// GS05 HHMM[SS].
    pub time: String,
    /// GS06 group control number.
    pub control_number: String,
    /// GS08 version / release / industry identifier (`005010X222A1`).
    pub version: String,
}

impl GroupHeader {
    /// Whether the header can be echoed in a 999 AK1: GS01 present, GS06 a
    /// 1-9 digit number and GS08 present. A group that fails this is
    /// reported by the TA1 (TA105 024) instead.
    pub fn acknowledgeable(&self) -> bool {
        self.well_formed() && ack999_code("AK1", &self.functional_id)
    }

    /// GS01 two alphanumerics, GS06 a 1-9 digit number, GS08 present.
    pub fn well_formed(&self) -> bool {
        let printable = |s: &str| s.bytes().all(|b| (0x20..0x7F).contains(&b));
        self.functional_id.len() == 2
            && self.functional_id.bytes().all(|b| b.is_ascii_alphanumeric())
            && (1..=9).contains(&self.control_number.len())
            && self.control_number.bytes().all(|b| b.is_ascii_digit())
            && (1..=12).contains(&self.version.len())
            && printable(&self.version)
    }
}

/// The ST transaction set header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetHeader {
    /// ST01 (`837`).
    pub id: String,
    /// ST02.
    pub control_number: String,
    /// ST03, absent in some 005010 sets.
    pub implementation: Option<String>,
}

/// Organisations named at the top of a set, needed by the acknowledgements
/// (277CA). Organisation names and ids are not PHI.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SetContext {
    /// BHT03, the originator's reference; the 277CA echoes it.
    pub reference: Option<String>,
    /// BHT04 CCYYMMDD.
    pub created_date: Option<String>,
    pub submitter_name: Option<String>,
    pub submitter_id: Option<String>,
    pub receiver_name: Option<String>,
    pub receiver_id: Option<String>,
    #[serde(skip)]
    pub(crate) no_documents: Vec<super::views::Document>,
}

/// A transaction-set-level finding (IK502..IK506).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetFinding {
    pub code: SetCode,
    pub message: String,
}

/// A group-level finding (AK905..AK909).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupFinding {
    pub code: GroupCode,
    pub message: String,
}

/// Everything known about one transaction set when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub header: SetHeader,
    /// The implementation guide used: ST03, else GS08.
    pub implementation: String,
    /// Whether a guide for the set was found and SNIP 1-2 ran.
    pub validated: bool,
    /// Segments from ST to SE inclusive.
    pub segment_count: u32,
    /// Byte offset of the ST in the input.
    pub offset: u64,
    pub ack: AckCode,
    pub findings: Vec<SetFinding>,
    pub segment_errors: Vec<SegmentError>,
    /// Errors beyond the per-set cap, counted but not recorded.
    pub dropped_errors: usize,
    pub context: SetContext,
}

/// Whether `value` is in the X231A1 code list of element 1 of a 999
/// segment (AK101 functional identifiers, AK201 transaction set ids).
fn ack999_code(segment: &str, value: &str) -> bool {
    let t = tables();
    let Some(spec) = t.find("999", "005010X231A1") else { return false };
    spec.segments.iter().find(|s| &*s.id == segment).and_then(|s| s.elements.first()).is_some_and(|e| match &e.kind {
        super::spec::ElementKind::Simple { codes, .. } => codes.contains(value.as_bytes()),
        super::spec::ElementKind::Composite(_) => false,
    })
}

impl SetHeader {
    /// Whether the header can be echoed in a 999 AK2 (ST01 three characters,
    /// ST02 four to nine, ST03 at most 35, all printable).
    pub fn acknowledgeable(&self) -> bool {
        let printable = |s: &str| s.bytes().all(|b| (0x21..0x7F).contains(&b));
        ack999_code("AK2", &self.id)
            && (4..=9).contains(&self.control_number.len())
            && printable(&self.control_number)
            && self.implementation.as_ref().is_none_or(|i| i.len() <= 35 && printable(i))
    }
}

impl SetReport {
    pub fn accepted(&self) -> bool {
        matches!(self.ack, AckCode::Accepted | AckCode::AcceptedWithErrors)
    }
}

/// One functional group when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub header: GroupHeader,
    pub findings: Vec<GroupFinding>,
    /// GE01 as sent, when the trailer arrived.
    pub declared_sets: Option<u32>,
    pub received_sets: u32,
    pub accepted_sets: u32,
    pub ack: AckCode,
}

/// One interchange when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct InterchangeReport {
    #[serde(skip)]
    pub isa: IsaHeader,
    pub control_number: String,
    pub sender_id: String,
    pub receiver_id: String,
    pub findings: Vec<IsaFindingReport>,
    pub group_count: u32,
    /// TA104: A, E or R.
    pub ack: AckCode,
    /// TA1 segments the interchange carried (acknowledgements it reports).
    pub ta1s: Vec<super::views::Ta1>,
    pub offset: u64,
}

impl InterchangeReport {
    /// The TA105 to report: the first finding's code, or 000.
    pub fn note_code(&self) -> Ta105 {
        self.findings.first().map_or(Ta105::NoError, |f| f.code)
    }
    pub fn accepted(&self) -> bool {
        self.ack != AckCode::Rejected
    }
}

/// An interchange finding with its TA105.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsaFindingReport {
    pub code: Ta105,
    /// The segment involved (`ISA`, `IEA`, `GS`, ...).
    pub segment: &'static str,
    /// Element number (1-based) when one element is at fault.
    pub element: Option<u8>,
    pub message: String,
}

impl From<&IsaFinding> for IsaFindingReport {
    fn from(f: &IsaFinding) -> Self {
        IsaFindingReport {
            code: f.code,
            segment: "ISA",
            element: (f.element > 0).then_some(f.element),
            message: f.message.to_string(),
        }
    }
}

/// Receives results as the pass produces them.
pub trait Sink {
    fn interchange_start(&mut self, _isa: &IsaHeader) {}
    fn group_start(&mut self, _gs: &GroupHeader) {}
    fn set_start(&mut self, _st: &SetHeader) {}
    /// A business document of the current set (claims one by one as each ends).
    fn document(&mut self, _doc: Document) {}
    fn set_end(&mut self, _report: SetReport) {}
    fn group_end(&mut self, _report: GroupReport) {}
    fn interchange_end(&mut self, _report: InterchangeReport) {}
}

/// Analysis options.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub validation: Options,
    /// Skip reading business documents (claims, requests, ...): for callers
    /// that need only the verdict and the findings. The set context (BHT,
    /// submitter, receiver) is still read.
    pub skip_documents: bool,
}

/// Why the pass stopped before the end of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fatal {
    /// The TA105 that describes it.
    pub code: Ta105,
    pub offset: Option<u64>,
    pub message: String,
}

/// Totals of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub interchanges: u32,
    pub groups: u32,
    pub sets: u32,
    pub accepted_sets: u32,
    pub segments: u64,
    pub bytes: u64,
    /// Set when the input could not be read to its end.
    pub fatal: Option<Fatal>,
}

struct OpenSet<'s> {
    header: SetHeader,
    implementation: String,
    validator: Option<SetValidator<'s>>,
    view: SetView,
    count: u32,
    offset: u64,
    findings: Vec<SetFinding>,
}

struct OpenGroup {
    header: GroupHeader,
    findings: Vec<GroupFinding>,
    set_ids: HashSet<String>,
    received: u32,
    accepted: u32,
    supported_version: bool,
}

struct OpenInterchange {
    isa: IsaHeader,
    findings: Vec<IsaFindingReport>,
    groups: u32,
    group_ids: HashSet<String>,
    ta1s: Vec<super::views::Ta1>,
    offset: u64,
}

/// The envelope state machine.
struct Pass<'a, S: Sink> {
    sink: &'a mut S,
    options: &'a AnalyzeOptions,
    interchange: Option<OpenInterchange>,
    group: Option<OpenGroup>,
    set: Option<OpenSet<'static>>,
    seen_isa13: HashSet<(String, String, String)>,
    totals: Totals,
}

/// Analyses an X12 input, pushing results to `sink`.
pub fn analyze_into<R: Read, S: Sink>(input: R, options: &AnalyzeOptions, sink: &mut S) -> Totals {
    let mut reader = SegmentReader::new(input);
    let mut pass = Pass {
        sink,
        options,
        interchange: None,
        group: None,
        set: None,
        seen_isa13: HashSet::new(),
        totals: Totals::default(),
    };
    loop {
        match reader.next_segment() {
            Ok(Some(seg)) => {
                pass.totals.segments += 1;
                pass.segment(&seg);
            }
            Ok(None) => break,
            Err(e) => {
                let (code, message) = match &e {
                    ReadError::NoIsa { .. } => {
                        (Ta105::InvalidControlStructure, "input does not start with an ISA segment".to_string())
                    }
                    ReadError::BadIsa { source, .. } => (
                        match source {
                            super::isa::IsaError::BadDelimiters => Ta105::InvalidElementSeparator,
                            _ => Ta105::InvalidControlStructure,
                        },
                        e.to_string(),
                    ),
                    ReadError::SegmentTooLong { .. } => (Ta105::InvalidControlStructure, e.to_string()),
                    ReadError::Io(_) => (Ta105::PrematureEnd, e.to_string()),
                };
                let fatal = Fatal { code, offset: e.offset(), message };
                if let Some(ic) = pass.interchange.as_mut() {
                    ic.findings.push(IsaFindingReport {
                        code: fatal.code,
                        segment: "ISA",
                        element: None,
                        message: fatal.message.clone(),
                    });
                }
                pass.totals.fatal = Some(fatal);
                break;
            }
        }
    }
    pass.end_of_input(reader.bytes_read());
    pass.totals
}

impl<S: Sink> Pass<'_, S> {
    fn segment(&mut self, seg: &Segment<'_>) {
        if self.set.is_some() {
            match seg.id() {
                b"SE" => return self.end_set(Some(seg)),
                b"ST" | b"GE" | b"GS" | b"IEA" | b"ISA" => self.end_set(None),
                _ => {
                    self.in_set(seg);
                    return;
                }
            }
        }
        match seg.id() {
            b"ISA" => self.start_interchange(seg),
            b"IEA" => self.end_interchange(Some(seg)),
            b"TA1" if self.interchange.is_some() && self.group.is_none() => {
                if let Some(ic) = self.interchange.as_mut() {
                    ic.ta1s.push(super::views::Ta1::read(seg));
                }
            }
            b"GS" => self.start_group(seg),
            b"GE" => self.end_group(Some(seg)),
            b"ST" => self.start_set(seg),
            _ => self.interchange_finding(Ta105::InvalidControlStructure, "segment outside of a transaction set"),
        }
    }

    fn interchange_finding(&mut self, code: Ta105, message: &str) {
        if let Some(ic) = self.interchange.as_mut()
            && !ic.findings.iter().any(|f| f.code == code)
        {
            ic.findings.push(IsaFindingReport { code, segment: "ISA", element: None, message: message.to_string() });
        }
    }

    fn start_interchange(&mut self, seg: &Segment<'_>) {
        if self.interchange.is_some() {
            self.end_group(None);
            self.interchange_finding(Ta105::PrematureEnd, "interchange ended without an IEA");
            self.finish_interchange(None);
        }
        let Some(isa) = seg.isa.cloned() else { return };
        self.totals.interchanges += 1;
        let mut findings: Vec<IsaFindingReport> = isa.findings.iter().map(Into::into).collect();
        let key = (isa.sender_id().to_string(), isa.receiver_id().to_string(), isa.control_number().to_string());
        if !self.seen_isa13.insert(key) {
            findings.push(IsaFindingReport {
                code: Ta105::Duplicate,
                segment: "ISA",
                element: Some(13),
                message: "interchange control number already used in this input for this sender and receiver".into(),
            });
        }
        self.sink.interchange_start(&isa);
        self.interchange = Some(OpenInterchange {
            isa,
            findings,
            groups: 0,
            group_ids: HashSet::new(),
            ta1s: vec![],
            offset: seg.offset,
        });
    }

    fn end_interchange(&mut self, iea: Option<&Segment<'_>>) {
        self.end_group(None);
        if self.interchange.is_none() {
            return;
        }
        self.finish_interchange(iea);
    }

    fn finish_interchange(&mut self, iea: Option<&Segment<'_>>) {
        let Some(mut ic) = self.interchange.take() else {
            return;
        };
        match iea {
            Some(iea) => {
                let iea02 = iea.element(2);
                if iea02.len() != 9 || !iea02.iter().all(u8::is_ascii_digit) {
                    ic.findings.push(IsaFindingReport {
                        code: Ta105::InvalidControlNumber,
                        segment: "IEA",
                        element: Some(2),
                        message: "IEA02 is not a nine-digit control number".into(),
                    });
                } else if iea02 != ic.isa.control_number().as_bytes() {
                    ic.findings.push(IsaFindingReport {
                        code: Ta105::ControlNumberMismatch,
                        segment: "IEA",
                        element: Some(2),
                        message: "IEA02 does not equal ISA13".into(),
                    });
                }
                if iea.str(1).parse::<u32>().ok() != Some(ic.groups) {
                    ic.findings.push(IsaFindingReport {
                        code: Ta105::InvalidGroupCount,
                        segment: "IEA",
                        element: Some(1),
                        message: "IEA01 does not equal the number of functional groups".into(),
                    });
                }
            }
            None => {
                if !ic.findings.iter().any(|f| f.code == Ta105::PrematureEnd) {
                    ic.findings.push(IsaFindingReport {
                        code: Ta105::PrematureEnd,
                        segment: "IEA",
                        element: None,
                        message: "interchange ended without an IEA".into(),
                    });
                }
            }
        }
        let ack = if ic.findings.iter().any(|f| f.code.rejects()) {
            AckCode::Rejected
        } else if ic.findings.is_empty() {
            AckCode::Accepted
        } else {
            AckCode::AcceptedWithErrors
        };
        let report = InterchangeReport {
            control_number: ic.isa.control_number().to_string(),
            sender_id: ic.isa.sender_id().to_string(),
            receiver_id: ic.isa.receiver_id().to_string(),
            isa: ic.isa,
            findings: ic.findings,
            group_count: ic.groups,
            ack,
            ta1s: ic.ta1s,
            offset: ic.offset,
        };
        self.sink.interchange_end(report);
    }

    fn start_group(&mut self, seg: &Segment<'_>) {
        if self.interchange.is_none() {
            self.totals.fatal.get_or_insert(Fatal {
                code: Ta105::InvalidControlStructure,
                offset: Some(seg.offset),
                message: "GS outside of an interchange".into(),
            });
            return;
        }
        if self.group.is_some() {
            self.end_group(None);
        }
        self.totals.groups += 1;
        let header = GroupHeader {
            functional_id: seg.str(1).to_string(),
            sender: seg.str(2).to_string(),
            receiver: seg.str(3).to_string(),
            date: seg.str(4).to_string(),
            time: seg.str(5).to_string(),
            control_number: seg.str(6).to_string(),
            version: seg.str(8).to_string(),
        };
        let mut findings = vec![];
        let ctl = header.control_number.as_bytes();
        if ctl.is_empty() || ctl.len() > 9 || !ctl.iter().all(u8::is_ascii_digit) {
            findings.push(GroupFinding {
                code: GroupCode::ControlNumberSyntax,
                message: "GS06 is not a number of 1 to 9 digits".into(),
            });
        }
        let supported_version = header.version.starts_with("005010");
        if !supported_version {
            findings.push(GroupFinding {
                code: GroupCode::VersionNotSupported,
                message: "GS08 is not an 005010 version; only 005010 is processed".into(),
            });
        }
        if header.functional_id.is_empty() {
            findings.push(GroupFinding {
                code: GroupCode::NotSupported,
                message: "GS01 functional identifier is missing".into(),
            });
        }
        let bad_gs = !header.well_formed()
            || header.sender.is_empty()
            || header.receiver.is_empty()
            || !super::validate::valid_dt(seg.element(4), 8)
            || !super::validate::valid_tm(seg.element(5))
            || seg.element(7) != b"X";
        if let Some(ic) = self.interchange.as_mut() {
            ic.groups += 1;
            if !ic.group_ids.insert(header.control_number.clone()) {
                findings.push(GroupFinding {
                    code: GroupCode::ControlNumberNotUnique,
                    message: "GS06 is not unique within the interchange".into(),
                });
            }
        }
        if bad_gs {
            self.interchange_finding(
                Ta105::InvalidContent,
                "GS has a missing or invalid sender, receiver, date, time or agency code",
            );
        }
        self.sink.group_start(&header);
        self.group =
            Some(OpenGroup { header, findings, set_ids: HashSet::new(), received: 0, accepted: 0, supported_version });
    }

    fn end_group(&mut self, ge: Option<&Segment<'_>>) {
        let Some(mut g) = self.group.take() else {
            if ge.is_some() {
                self.interchange_finding(Ta105::InvalidControlStructure, "GE without a GS");
            }
            return;
        };
        let mut declared = None;
        match ge {
            Some(ge) => {
                declared = ge.str(1).parse::<u32>().ok();
                if declared != Some(g.received) {
                    g.findings.push(GroupFinding {
                        code: GroupCode::SetCountMismatch,
                        message: "GE01 does not equal the number of transaction sets".into(),
                    });
                }
                if ge.element(2) != g.header.control_number.as_bytes() {
                    g.findings.push(GroupFinding {
                        code: GroupCode::ControlNumberMismatch,
                        message: "GE02 does not equal GS06".into(),
                    });
                }
            }
            None => g.findings.push(GroupFinding {
                code: GroupCode::TrailerMissing,
                message: "functional group ended without a GE".into(),
            }),
        }
        let ack = if !g.findings.is_empty() || (g.accepted == 0 && g.received > 0) {
            AckCode::Rejected
        } else if g.accepted < g.received {
            AckCode::Partial
        } else {
            AckCode::Accepted
        };
        self.sink.group_end(GroupReport {
            header: g.header,
            findings: g.findings,
            declared_sets: declared,
            received_sets: g.received,
            accepted_sets: g.accepted,
            ack,
        });
    }

    fn start_set(&mut self, seg: &Segment<'_>) {
        let Some(group) = self.group.as_mut() else {
            self.interchange_finding(Ta105::InvalidControlStructure, "ST outside of a functional group");
            return;
        };
        let header = SetHeader {
            id: seg.str(1).to_string(),
            control_number: seg.str(2).to_string(),
            implementation: Some(seg.str(3).to_string()).filter(|s| !s.is_empty()),
        };
        let implementation = header.implementation.clone().unwrap_or_else(|| group.header.version.clone());
        let mut findings = vec![];
        let ctl = header.control_number.len();
        if !(4..=9).contains(&ctl) {
            findings.push(SetFinding {
                code: SetCode::InvalidControlNumber,
                message: "ST02 is not 4 to 9 characters".into(),
            });
        } else if !group.set_ids.insert(header.control_number.clone()) {
            findings.push(SetFinding {
                code: SetCode::ControlNumberNotUnique,
                message: "ST02 is not unique within the functional group".into(),
            });
        }
        if header
            .implementation
            .as_ref()
            .is_some_and(|i| !group.header.version.is_empty() && *i != group.header.version)
        {
            findings.push(SetFinding {
                code: SetCode::InvalidImplementationReference,
                message: "ST03 does not equal GS08".into(),
            });
        }
        let t = tables();
        let spec = if group.supported_version { t.find(&header.id, &implementation) } else { None };
        match spec {
            Some(s) if *s.functional_id != *group.header.functional_id => findings.push(SetFinding {
                code: SetCode::InvalidIdentifier,
                message: "ST01 does not belong in a group with this GS01".into(),
            }),
            Some(_) => {}
            None if !group.supported_version => findings.push(SetFinding {
                code: SetCode::NotSupported,
                message: "transaction set version is not supported".into(),
            }),
            None if t.specs.iter().any(|s| *s.transaction == *header.id) => findings.push(SetFinding {
                code: SetCode::ImplementationNotSupported,
                message: "implementation convention is not supported".into(),
            }),
            None => findings
                .push(SetFinding { code: SetCode::NotSupported, message: "transaction set is not supported".into() }),
        }
        let mut validator = spec.map(|s| SetValidator::new(s, self.options.validation.clone()));
        if let Some(v) = validator.as_mut() {
            v.segment(seg);
        }
        group.received += 1;
        self.totals.sets += 1;
        let mut view =
            if self.options.skip_documents { SetView::new("", "") } else { SetView::new(&header.id, &implementation) };
        view.segment(seg);
        self.sink.set_start(&header);
        self.set = Some(OpenSet { header, implementation, validator, view, count: 1, offset: seg.offset, findings });
    }

    fn in_set(&mut self, seg: &Segment<'_>) {
        let Some(set) = self.set.as_mut() else { return };
        set.count += 1;
        if let Some(v) = set.validator.as_mut() {
            v.segment(seg);
        }
        set.view.segment(seg);
        for doc in set.view.drain() {
            self.sink.document(doc);
        }
    }

    fn end_set(&mut self, se: Option<&Segment<'_>>) {
        let Some(mut set) = self.set.take() else {
            return;
        };
        match se {
            Some(se) => {
                set.count += 1;
                if let Some(v) = set.validator.as_mut() {
                    v.segment(se);
                }
                set.view.segment(se);
                if se.str(1).parse::<u32>().ok() != Some(set.count) {
                    set.findings.push(SetFinding {
                        code: SetCode::SegmentCountMismatch,
                        message: "SE01 does not equal the number of segments from ST to SE".into(),
                    });
                }
                if se.element(2) != set.header.control_number.as_bytes() {
                    set.findings.push(SetFinding {
                        code: SetCode::ControlNumberMismatch,
                        message: "SE02 does not equal ST02".into(),
                    });
                }
            }
            None => set.findings.push(SetFinding {
                code: SetCode::TrailerMissing,
                message: "transaction set ended without an SE".into(),
            }),
        }
        set.view.finish();
        for doc in set.view.drain() {
            self.sink.document(doc);
        }
        let validated = set.validator.is_some();
        let (segment_errors, dropped) = match set.validator {
            Some(v) => v.finish(),
            None => (vec![], 0),
        };
        // IK502: 5 for errors against the X12 standard's syntax, I5 for
        // errors against the implementation guide's narrower rules.
        let (standard, implementation) = segment_errors.iter().fold((false, false), |(s, i), e| {
            let imp = e.code.code().starts_with('I')
                || (e.code == SegmentCode::ElementErrors
                    && !e.elements.is_empty()
                    && e.elements.iter().all(|x| x.code.code().starts_with('I')));
            (s || !imp, i || imp)
        });
        if standard {
            set.findings
                .push(SetFinding { code: SetCode::SegmentsInError, message: "one or more segments in error".into() });
        }
        if implementation {
            set.findings.push(SetFinding {
                code: SetCode::ImplementationSegmentsInError,
                message: "one or more segments in error against the implementation guide".into(),
            });
        }
        let ack = if set.findings.is_empty() { AckCode::Accepted } else { AckCode::Rejected };
        if let Some(g) = self.group.as_mut()
            && ack == AckCode::Accepted
        {
            g.accepted += 1;
        }
        if ack == AckCode::Accepted {
            self.totals.accepted_sets += 1;
        }
        let context = set.view.context().clone();
        self.sink.set_end(SetReport {
            header: set.header,
            implementation: set.implementation,
            validated,
            segment_count: set.count,
            offset: set.offset,
            ack,
            findings: set.findings,
            segment_errors,
            dropped_errors: dropped,
            context,
        });
    }

    fn end_of_input(&mut self, bytes: u64) {
        self.totals.bytes = bytes;
        if self.set.is_some() {
            self.end_set(None);
        }
        if self.interchange.is_some() {
            self.end_group(None);
            self.finish_interchange(None);
        } else if self.group.is_some() {
            self.end_group(None);
        }
        if self.totals.interchanges == 0 && self.totals.fatal.is_none() {
            self.totals.fatal = Some(Fatal {
                code: Ta105::PrematureEnd,
                offset: Some(0),
                message: "input holds no interchange".into(),
            });
        }
    }
}

/// A transaction set with its documents.
#[derive(Debug, Clone, Serialize)]
pub struct TransactionSet {
    pub report: SetReport,
    pub documents: Vec<Document>,
}

/// A functional group with its sets.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub report: GroupReport,
    pub sets: Vec<TransactionSet>,
}

/// An interchange with its groups.
#[derive(Debug, Clone, Serialize)]
pub struct Interchange {
    pub report: InterchangeReport,
    pub groups: Vec<Group>,
}

/// Everything found in an input.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub interchanges: Vec<Interchange>,
    pub totals: Totals,
}

impl Analysis {
    /// True when the input was read to its end and every interchange, group
    /// and transaction set in it was accepted.
    pub fn accepted(&self) -> bool {
        self.totals.fatal.is_none()
            && !self.interchanges.is_empty()
            && self.interchanges.iter().all(|i| {
                i.report.accepted()
                    && i.groups
                        .iter()
                        .all(|g| g.report.ack == AckCode::Accepted && g.sets.iter().all(|s| s.report.accepted()))
            })
    }

    /// Every transaction set, in input order.
    pub fn sets(&self) -> impl Iterator<Item = &TransactionSet> {
        self.interchanges.iter().flat_map(|i| i.groups.iter().flat_map(|g| g.sets.iter()))
    }

    /// Every document, in input order.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.sets().flat_map(|s| s.documents.iter())
    }
}

/// Collects a pass into an [`Analysis`].
#[derive(Debug, Default)]
pub struct Collect {
    interchanges: Vec<Interchange>,
    groups: Vec<Group>,
    sets: Vec<TransactionSet>,
    documents: Vec<Document>,
}

impl Sink for Collect {
    fn document(&mut self, doc: Document) {
        self.documents.push(doc);
    }
    fn set_end(&mut self, report: SetReport) {
        self.sets.push(TransactionSet { report, documents: std::mem::take(&mut self.documents) });
    }
    fn group_end(&mut self, report: GroupReport) {
        self.groups.push(Group { report, sets: std::mem::take(&mut self.sets) });
    }
    fn interchange_end(&mut self, report: InterchangeReport) {
        self.interchanges.push(Interchange { report, groups: std::mem::take(&mut self.groups) });
    }
}

/// Analyses an input that fits in memory.
pub fn analyze(input: &[u8], options: &AnalyzeOptions) -> Analysis {
    analyze_from(input, options)
}

/// Analyses an input read as it comes (what is kept is the reports; with
/// `skip_documents`, memory does not grow with the claims).
pub fn analyze_from<R: Read>(input: R, options: &AnalyzeOptions) -> Analysis {
    let mut c = Collect::default();
    let totals = analyze_into(input, options, &mut c);
    // Sets or groups outside any interchange (a fatal read error mid-way)
    // are kept under a last, synthetic-free interchange list: they were
    // already reported through the fatal error.
    Analysis { interchanges: c.interchanges, totals }
}
