//! Acknowledgement and response builders: TA1, 999 (X231A1, with CTX),
//! 277CA (X214), 271 (X279A1) and 277 (X212).
//!
//! Every builder writes a complete interchange: a padded, fixed-width ISA
//! addressed back to the sender (sender and receiver swapped), GS/GE and
//! ST/SE with correct counts, in the partner's own delimiters. Control
//! numbers and timestamps are supplied by the caller, so the same input and
//! the same numbers always produce the same bytes: that is what makes
//! acknowledgements idempotent under redelivery.

use super::analyze::{GroupHeader, Interchange, InterchangeReport, SetReport, TransactionSet};
use super::codes::AckCode;
use super::isa::{Delimiters, IsaHeader};
use super::validate::{Context, ElementPosition};
use clearway_core::{Claim, ClaimStatusRequest, DateRange, EligibilityRequest, Person, ServiceLine};
use rust_decimal::Decimal;
use time::{Date, PrimitiveDateTime};

/// Who we are and how to address the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// ISA05/ISA06 of the response (our qualifier and id).
    pub sender_qualifier: String,
    pub sender_id: String,
    /// ISA07/ISA08 of the response (the partner).
    pub receiver_qualifier: String,
    pub receiver_id: String,
    /// GS02/GS03 of the response.
    pub group_sender: String,
    pub group_receiver: String,
    /// ISA15: `P` or `T`, normally echoed from the input.
    pub usage: String,
    pub delimiters: Delimiters,
}

impl Envelope {
    /// The reply envelope for an interchange: sender and receiver swapped,
    /// same delimiters and usage indicator.
    pub fn reply_to(isa: &IsaHeader, group: Option<&GroupHeader>) -> Self {
        let mut d = if isa.delimiters.usable() { isa.delimiters } else { Delimiters::default() };
        if d.repetition.is_none() {
            // 5010 output always carries a repetition separator.
            d.repetition = [b'^', b'!', b'{', b'}', b'|', b'\\'].into_iter().find(|&c| !d.is_delimiter(c));
        }
        // The partner's ids are echoed; what cannot be echoed validly (a
        // broken qualifier, unprintable bytes) is replaced, so the reply is
        // always a well-formed interchange.
        let qualifier = |q: &str| {
            if q.len() == 2 && q.bytes().all(|b| b.is_ascii_alphanumeric()) { q.to_string() } else { "ZZ".into() }
        };
        let id = |s: &str, max: usize| -> String {
            let v: String = s
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control() && !d.is_delimiter(*c as u8))
                .take(max)
                .collect();
            if v.trim().is_empty() { "UNKNOWN".into() } else { v.trim().to_string() }
        };
        Envelope {
            sender_qualifier: qualifier(isa.receiver_qualifier()),
            sender_id: id(isa.receiver_id(), 15),
            receiver_qualifier: qualifier(isa.sender_qualifier()),
            receiver_id: id(isa.sender_id(), 15),
            group_sender: id(group.map_or_else(|| isa.receiver_id(), |g| g.receiver.as_str()), 15),
            group_receiver: id(group.map_or_else(|| isa.sender_id(), |g| g.sender.as_str()), 15),
            usage: if isa.usage() == "P" { "P".into() } else { "T".into() },
            delimiters: d,
        }
    }
}

/// Writes `v` as element data: X12's character sets are ASCII, so anything
/// else, and any delimiter inside data, becomes a space.
fn clean_into(d: Delimiters, v: &str, out: &mut Vec<u8>) {
    let bad = |b: u8| d.is_delimiter(b) || !(0x20..0x7F).contains(&b);
    if !v.bytes().any(bad) {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.extend(v.bytes().map(|b| if bad(b) { b' ' } else { b }));
}

/// One segment onto `out`, its empty trailing elements dropped.
fn put_seg(d: Delimiters, out: &mut Vec<u8>, id: &str, elements: &[&str]) {
    let last = elements.iter().rposition(|e| !e.is_empty()).map_or(0, |i| i + 1);
    out.extend_from_slice(id.as_bytes());
    for e in &elements[..last] {
        out.push(d.element);
        clean_into(d, e, out);
    }
    out.push(d.segment);
}

/// Control numbers for one outgoing interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    /// ISA13/IEA02 (1..=999_999_999).
    pub interchange: u32,
    /// GS06/GE02.
    pub group: u32,
    /// ST02 of the first set; later sets count up from it.
    pub first_set: u32,
}

impl Controls {
    /// Control numbers derived from a key (e.g. a transaction id or the
    /// input's bytes): the same key always gives the same numbers, so an
    /// acknowledgement rebuilt after a redelivery is byte-identical.
    pub fn derived(key: &[u8]) -> Self {
        // FNV-1a, 64-bit.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Controls {
            interchange: 1 + (h % 999_999_999) as u32,
            group: 1 + ((h >> 17) % 999_999_999) as u32,
            first_set: 1,
        }
    }
}

/// An element for [`Writer::seg_els`].
#[derive(Debug, Clone, Copy)]
pub enum El<'a> {
    Val(&'a str),
    Comp(&'a [&'a str]),
}

/// Writes segments with the partner's delimiters, sanitising values so a
/// delimiter inside data can never break the structure.
#[derive(Debug)]
pub struct Writer {
    d: Delimiters,
    out: Vec<u8>,
    set_segments: u32,
    sets: u32,
    groups: u32,
}

impl Writer {
    pub fn new(d: Delimiters) -> Self {
        Writer { d, out: Vec::with_capacity(1024), set_segments: 0, sets: 0, groups: 0 }
    }

    fn clean(&self, v: &str, out: &mut Vec<u8>) {
        clean_into(self.d, v, out);
    }

    /// Writes a segment; empty trailing elements are dropped. Elements are
    /// written as given except that delimiters and control characters in
    /// them become spaces. Use [`Writer::comp`] to build composites.
    pub fn seg(&mut self, id: &str, elements: &[&str]) {
        put_seg(self.d, &mut self.out, id, elements);
        self.set_segments += 1;
    }

    /// Writes a segment whose first element is a composite of `parts`
    /// (STC's C043) and whose other elements are plain values.
    pub fn seg_composite_first(&mut self, id: &str, parts: &[&str], rest: &[&str]) {
        let mut elements = Vec::with_capacity(rest.len() + 1);
        elements.push(El::Comp(parts));
        elements.extend(rest.iter().map(|r| El::Val(r)));
        self.seg_els(id, &elements);
    }

    /// Writes a segment of plain values and composites (each sanitised);
    /// empty trailing elements are dropped.
    pub fn seg_els(&mut self, id: &str, elements: &[El<'_>]) {
        let cleaned: Vec<String> = elements
            .iter()
            .map(|e| match e {
                El::Comp(parts) => self.comp(parts),
                El::Val(v) => {
                    let mut out = Vec::new();
                    self.clean(v, &mut out);
                    String::from_utf8_lossy(&out).into_owned()
                }
            })
            .collect();
        let last = cleaned.iter().rposition(|e| !e.is_empty()).map_or(0, |i| i + 1);
        let mut line = id.as_bytes().to_vec();
        for e in &cleaned[..last] {
            line.push(self.d.element);
            line.extend_from_slice(e.as_bytes());
        }
        line.push(self.d.segment);
        self.out.extend_from_slice(&line);
        self.set_segments += 1;
    }

    /// A composite value: sanitised parts joined by the component separator.
    pub fn comp(&self, parts: &[&str]) -> String {
        let last = parts.iter().rposition(|e| !e.is_empty()).map_or(0, |i| i + 1);
        let mut v = Vec::new();
        for (i, p) in parts[..last].iter().enumerate() {
            if i > 0 {
                v.push(self.d.component);
            }
            self.clean(p, &mut v);
        }
        String::from_utf8_lossy(&v).into_owned()
    }

    /// ISA, padded to its fixed width.
    pub fn isa(&mut self, env: &Envelope, control: u32, at: PrimitiveDateTime) {
        // Written in place (this runs for every real-time answer): each
        // value cut or padded with spaces to its width in characters.
        fn pad(out: &mut Vec<u8>, s: &str, w: usize) {
            let mut n = 0;
            for c in s.chars().take(w) {
                out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                n += 1;
            }
            out.resize(out.len() + (w - n), b' ');
        }
        fn digits(out: &mut Vec<u8>, v: u32, w: u32) {
            out.extend_from_slice(Digits::default().push(v, w).as_bytes());
        }
        let d = self.d;
        let e = d.element;
        let out = &mut self.out;
        out.extend_from_slice(b"ISA");
        for (value, width) in [
            ("00", 2),
            ("", 10),
            ("00", 2),
            ("", 10),
            (env.sender_qualifier.as_str(), 2),
            (env.sender_id.as_str(), 15),
            (env.receiver_qualifier.as_str(), 2),
            (env.receiver_id.as_str(), 15),
        ] {
            out.push(e);
            pad(out, value, width);
        }
        out.push(e);
        digits(out, at.year().rem_euclid(100) as u32, 2);
        digits(out, u32::from(u8::from(at.month())), 2);
        digits(out, u32::from(at.day()), 2);
        out.push(e);
        digits(out, u32::from(at.hour()), 2);
        digits(out, u32::from(at.minute()), 2);
        out.push(e);
        out.push(d.repetition.unwrap_or(b'^'));
        out.push(e);
        out.extend_from_slice(b"00501");
        out.push(e);
        digits(out, control % 1_000_000_000, 9);
        out.push(e);
        out.push(b'0');
        out.push(e);
        pad(out, &env.usage, 1);
        out.push(e);
        out.push(d.component);
        out.push(d.segment);
        self.groups = 0;
    }

    pub fn gs(&mut self, functional_id: &str, env: &Envelope, control: u32, at: PrimitiveDateTime, version: &str) {
        let (date, time) = (ccyymmdd(at.date()), hhmm(at));
        let ctl = Digits::default().push(control, control.checked_ilog10().unwrap_or(0) + 1);
        self.seg("GS", &[functional_id, &env.group_sender, &env.group_receiver, &date, &time, &ctl, "X", version]);
        self.groups += 1;
        self.sets = 0;
    }

    pub fn st(&mut self, id: &str, control: &str, implementation: &str) {
        self.set_segments = 0;
        self.seg("ST", &[id, control, implementation]);
        self.sets += 1;
    }

    pub fn se(&mut self, control: &str) {
        let n = (self.set_segments + 1).to_string();
        self.seg("SE", &[&n, control]);
    }

    pub fn ge(&mut self, control: u32) {
        let (n, c) = (self.sets.to_string(), control.to_string());
        self.seg("GE", &[&n, &c]);
    }

    pub fn iea(&mut self, control: u32) {
        let (n, c) = (self.groups.to_string(), format!("{:09}", control % 1_000_000_000));
        self.seg("IEA", &[&n, &c]);
    }

    /// Appends segments already written in this writer's delimiters
    /// (`segments` of them, for SE's count).
    pub fn raw(&mut self, bytes: &[u8], segments: u32) {
        self.out.extend_from_slice(bytes);
        self.set_segments += segments;
    }

    /// Appends a whole transaction set (ST to SE) written elsewhere.
    pub fn raw_set(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.sets += 1;
    }

    /// Overwrites one byte already written (ISA14, say).
    pub fn set_byte(&mut self, at: usize, b: u8) {
        if let Some(x) = self.out.get_mut(at) {
            *x = b;
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// CCYYMMDD.
/// A date or time as X12 digits, kept on the stack: every real-time answer
/// writes a few of them.
#[derive(Clone, Copy, Default)]
pub struct Digits {
    buf: [u8; 12],
    len: usize,
}

impl Digits {
    fn push(mut self, v: u32, width: u32) -> Self {
        for i in (0..width).rev() {
            self.buf[self.len] = b'0' + (v / 10u32.pow(i) % 10) as u8;
            self.len += 1;
        }
        self
    }
}

impl std::ops::Deref for Digits {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Display for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// CCYYMMDD. A year outside 0-9999 is written as `{:04}` writes it.
pub fn ccyymmdd(d: Date) -> Digits {
    let (month, day) = (u32::from(u8::from(d.month())), u32::from(d.day()));
    match u32::try_from(d.year()) {
        Ok(y) if y <= 9999 => Digits::default().push(y, 4).push(month, 2).push(day, 2),
        _ => {
            let text = format!("{:04}{month:02}{day:02}", d.year());
            let mut out = Digits::default();
            out.len = text.len().min(out.buf.len());
            out.buf[..out.len].copy_from_slice(&text.as_bytes()[..out.len]);
            out
        }
    }
}

pub fn hhmm(t: PrimitiveDateTime) -> Digits {
    Digits::default().push(u32::from(t.hour()), 2).push(u32::from(t.minute()), 2)
}

fn range(r: DateRange) -> (&'static str, String) {
    if r.from == r.to {
        ("D8", ccyymmdd(r.from).to_string())
    } else {
        ("RD8", format!("{}-{}", ccyymmdd(r.from), ccyymmdd(r.to)))
    }
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

fn pos(p: &ElementPosition) -> String {
    match (p.component, p.repetition) {
        (None, None) => p.element.to_string(),
        (c, None) => format!("{}:{}", p.element, c.unwrap_or(0)),
        (c, Some(r)) => format!("{}:{}:{}", p.element, c.map(|c| c.to_string()).unwrap_or_default(), r),
    }
}

// -------------------------------------------------------------------- TA1 --

/// A TA1 for one received interchange, in its own interchange.
pub fn ta1(report: &InterchangeReport, controls: Controls, at: PrimitiveDateTime) -> Vec<u8> {
    let env = Envelope::reply_to(&report.isa, None);
    let mut w = Writer::new(env.delimiters);
    w.isa(&env, controls.interchange, at);
    let code = match report.ack {
        AckCode::Accepted => "A",
        AckCode::AcceptedWithErrors | AckCode::Partial => "E",
        AckCode::Rejected => "R",
    };
    let isa = &report.isa;
    let ctl = format!("{:0>9}", isa.control_number().chars().take(9).collect::<String>());
    let note = report.note_code();
    w.seg("TA1", &[&ctl, isa.date(), isa.time(), code, note.code()]);
    w.iea(controls.interchange);
    w.into_bytes()
}

/// A TA1 reporting a duplicate interchange (TA105 = 025).
pub fn ta1_duplicate(isa: &IsaHeader, controls: Controls, at: PrimitiveDateTime) -> Vec<u8> {
    let report = InterchangeReport {
        isa: isa.clone(),
        control_number: isa.control_number().to_string(),
        sender_id: isa.sender_id().to_string(),
        receiver_id: isa.receiver_id().to_string(),
        findings: vec![super::analyze::IsaFindingReport {
            code: super::codes::Ta105::Duplicate,
            segment: "ISA",
            element: Some(13),
            message: "duplicate interchange control number".into(),
        }],
        group_count: 0,
        ack: AckCode::Rejected,
        ta1s: vec![],
        offset: 0,
    };
    ta1(&report, controls, at)
}

// -------------------------------------------------------------------- 999 --

/// The 999 for one interchange: one 999 transaction set per received
/// functional group, in one FA group. `None` when the interchange has no
/// group to acknowledge (none at all, or only acknowledgements).
pub fn ack999(interchange: &Interchange, controls: Controls, at: PrimitiveDateTime) -> Option<Vec<u8>> {
    // A rejected interchange is answered by its TA1 alone.
    if !interchange.report.accepted() {
        return None;
    }
    // Acknowledgements are never acknowledged: FA groups (999/997) are skipped.
    let groups: Vec<_> = interchange
        .groups
        .iter()
        .filter(|g| g.report.header.functional_id != "FA" && g.report.header.acknowledgeable())
        .collect();
    if groups.is_empty() {
        return None;
    }
    let first_group = groups.first().map(|g| &g.report.header);
    let env = Envelope::reply_to(&interchange.report.isa, first_group);
    let mut w = Writer::new(env.delimiters);
    w.isa(&env, controls.interchange, at);
    w.gs("FA", &env, controls.group, at, "005010X231A1");
    for (i, g) in groups.iter().enumerate() {
        let ctl = format!("{:04}", controls.first_set.wrapping_add(i as u32));
        w.st("999", &ctl, "005010X231A1");
        let h = &g.report.header;
        w.seg("AK1", &[&h.functional_id, &h.control_number, &h.version]);
        // A set whose ST cannot be echoed is counted in AK9 but has no AK2.
        for s in g.sets.iter().filter(|s| s.report.header.acknowledgeable()) {
            write_ak2(&mut w, &s.report);
        }
        let r = &g.report;
        let included = r.declared_sets.unwrap_or(r.received_sets).to_string();
        let (received, accepted) = (r.received_sets.to_string(), r.accepted_sets.to_string());
        let mut ak9 = vec![r.ack.code(), &included, &received, &accepted];
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code.code()).take(5).collect();
        ak9.extend(codes);
        w.seg("AK9", &ak9);
        w.se(&ctl);
    }
    w.ge(controls.group);
    w.iea(controls.interchange);
    Some(w.into_bytes())
}

fn write_ak2(w: &mut Writer, r: &SetReport) {
    let st03 = r.header.implementation.as_deref().unwrap_or("");
    w.seg("AK2", &[&r.header.id, &r.header.control_number, st03]);
    for e in &r.segment_errors {
        let position = e.position.to_string();
        // IK301 must be a 2-3 character id; an unreadable one is sent as ???.
        let id_ok = (2..=3).contains(&e.segment.len()) && e.segment.bytes().all(|b| b.is_ascii_alphanumeric());
        let segment = if id_ok { e.segment.as_str() } else { "???" };
        w.seg("IK3", &[segment, &position, loop_code(e.loop_id.as_deref()), e.code.code()]);
        write_ctx(w, &e.contexts);
        for el in &e.elements {
            let copy = el.copy.as_ref().map(|c| c.expose().as_str()).unwrap_or("");
            let p = pos_composite(w, &el.position);
            let copy = w.comp(&[copy]);
            // IK402 is numeric: a composite as a whole has no reference number.
            let reference = el.reference.as_deref().filter(|r| r.bytes().all(|b| b.is_ascii_digit())).unwrap_or("");
            raw_seg(w, &join(w, &["IK4", &p, reference, el.code.code(), &copy]));
        }
    }
    let mut ik5 = vec![r.ack.code()];
    let mut codes: Vec<&str> = r.findings.iter().map(|f| f.code.code()).collect();
    codes.dedup();
    ik5.extend(codes.into_iter().take(5));
    w.seg("IK5", &ik5);
}

/// IK401 / CTX05 (C030): element[:component[:repetition]] in the
/// writer's component separator.
fn pos_composite(w: &Writer, p: &ElementPosition) -> String {
    let sep = w.d.component as char;
    match (p.component, p.repetition) {
        (None, None) => p.element.to_string(),
        (c, None) => format!("{}{sep}{}", p.element, c.unwrap_or(0)),
        (c, Some(r)) => format!("{}{sep}{}{sep}{}", p.element, c.map(|c| c.to_string()).unwrap_or_default(), r),
    }
}

/// IK303/CTX04 (element 447, at most four characters): the guide's loop
/// number without its letter suffix (`2010AA` -> `2010`).
fn loop_code(loop_id: Option<&str>) -> &str {
    let id = loop_id.unwrap_or("");
    id.get(..4).unwrap_or(id)
}

fn write_ctx(w: &mut Writer, contexts: &[Context]) {
    // The guide orders segment-context CTXs before the business-unit CTX.
    let mut ordered: Vec<&Context> =
        contexts.iter().filter(|c| matches!(c, Context::SituationalTrigger { .. })).collect();
    ordered.extend(contexts.iter().filter(|c| matches!(c, Context::BusinessUnit { .. })));
    for c in ordered {
        match c {
            Context::SituationalTrigger { segment, position, loop_id, element } => {
                let p = position.to_string();
                let at = element.map(|e| pos_composite(w, &e)).unwrap_or_default();
                let seg_id = w.comp(&[segment]);
                let lp = w.comp(&[loop_code(loop_id.as_deref())]);
                raw_seg(w, &join(w, &["CTX", "SITUATIONAL TRIGGER", &seg_id, &p, &lp, &at]));
            }
            Context::BusinessUnit { value, .. } if w.comp(&[value.expose()]).trim().is_empty() => {}
            Context::BusinessUnit { name, value } => {
                let v = w.comp(&[name, value.expose()]);
                raw_seg(w, &join(w, &["CTX", &v]));
            }
        }
    }
}

// ------------------------------------------------------------------ 277CA --

pub use clearway_core::edits::Stc;

/// What happened to one claim, for its 277CA entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// STC A2:20 (accepted for processing), action WQ.
    Accepted,
    /// Rejected (action U): the reasons at the claim level (2200D) and on
    /// the service lines that caused it (2220D).
    Rejected(Rejection),
}

/// Why a claim was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rejection {
    /// Claim-level statuses (A3 returned as unprocessable, A6 missing
    /// information, A7 invalid information, A8 relational error), three to
    /// an STC segment (STC01, STC10, STC11). Empty when only lines are at
    /// fault: the claim then says A3:247 (line information).
    pub claim: Vec<Stc>,
    /// Per service line (LX01): the statuses of that line, at most three
    /// (its one 2220D STC).
    pub lines: Vec<(u32, Vec<Stc>)>,
    /// A short explanation without PHI (STC12 of the first claim-level STC).
    pub message: Option<String>,
}

/// The claim-level status of a claim rejected only for its lines (CMS
/// CEDI: "A3:247 … the rejection is at the line level").
pub const LINE_INFORMATION: Stc = Stc::new("A3", "247", None);

impl ClaimDecision {
    /// A rejection with one claim-level status.
    pub fn rejected(stc: Stc) -> Self {
        ClaimDecision::Rejected(Rejection { claim: vec![stc], lines: vec![], message: None })
    }

    /// The first status a rejection reports at the claim level
    /// (`A7:562:85`), `None` when accepted.
    pub fn status(&self) -> Option<Stc> {
        match self {
            ClaimDecision::Accepted => None,
            ClaimDecision::Rejected(r) => Some(r.claim.first().copied().unwrap_or(LINE_INFORMATION)),
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, ClaimDecision::Accepted)
    }
}

/// One claim of a 277CA with its decision and our trace number for it.
#[derive(Debug, Clone)]
pub struct ClaimAck<'a> {
    pub claim: &'a Claim,
    pub decision: ClaimDecision,
    /// REF*D9: our identifier for the claim, quoted back in status inquiries.
    pub clearinghouse_trace: String,
}

/// Who is acknowledging (the 2100A information source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// NM109 with qualifier 46 (electronic transmitter id).
    pub id: String,
}

/// A 277CA for the claims of one 837 transaction set.
pub struct Ack277Ca<'a> {
    pub interchange: &'a IsaHeader,
    pub group: &'a GroupHeader,
    pub set: &'a SetReport,
    pub claims: &'a [ClaimAck<'a>],
    pub source: &'a Source,
    /// Our reference for this 277CA (BHT03) and the batch trace (2200A TRN02).
    pub reference: &'a str,
    pub received: Date,
    pub controls: Controls,
    pub at: PrimitiveDateTime,
}

impl std::fmt::Debug for Ack277Ca<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack277Ca").field("claims", &self.claims.len()).finish_non_exhaustive()
    }
}

/// Builds the 277CA.
pub fn ack277ca(a: &Ack277Ca<'_>) -> Vec<u8> {
    let env = Envelope::reply_to(a.interchange, Some(a.group));
    let mut w = Writer::new(env.delimiters);
    let today = ccyymmdd(a.at.date());
    w.isa(&env, a.controls.interchange, a.at);
    w.gs("HN", &env, a.controls.group, a.at, "005010X214");
    let ctl = format!("{:04}", a.controls.first_set);
    w.st("277", &ctl, "005010X214");
    w.seg("BHT", &["0085", "08", a.reference, &today, &hhmm(a.at), "TH"]);
    w.seg("HL", &["1", "", "20", "1"]);
    w.seg("NM1", &["AY", "2", &a.source.name, "", "", "", "", "46", &a.source.id]);
    w.seg("TRN", &["1", a.reference]);
    w.seg("DTP", &["050", "D8", &ccyymmdd(a.received)]);
    w.seg("DTP", &["009", "D8", &today]);

    let totals = |claims: &[&ClaimAck<'_>]| {
        let acc: Vec<_> = claims.iter().filter(|c| c.decision == ClaimDecision::Accepted).collect();
        let acc_amt: Decimal = acc.iter().map(|c| c.claim.total_charge).sum();
        let all_amt: Decimal = claims.iter().map(|c| c.claim.total_charge).sum();
        (acc.len(), claims.len() - acc.len(), acc_amt, all_amt - acc_amt, all_amt)
    };
    let all: Vec<&ClaimAck<'_>> = a.claims.iter().collect();
    let (n_acc, n_rej, amt_acc, amt_rej, amt_all) = totals(&all);
    let ctx = &a.set.context;
    w.seg("HL", &["2", "1", "21", if all.is_empty() { "0" } else { "1" }]);
    w.seg(
        "NM1",
        &[
            "41",
            "2",
            ctx.submitter_name.as_deref().unwrap_or("UNKNOWN"),
            "",
            "",
            "",
            "",
            "46",
            ctx.submitter_id.as_deref().unwrap_or("UNKNOWN"),
        ],
    );
    w.seg("TRN", &["2", ctx.reference.as_deref().unwrap_or(&a.set.header.control_number)]);
    w.seg_composite_first("STC", &["A1", "19"], &[&today, "WQ", &money(amt_all)]);
    if n_acc > 0 {
        w.seg("QTY", &["90", &n_acc.to_string()]);
    }
    if n_rej > 0 {
        w.seg("QTY", &["AA", &n_rej.to_string()]);
    }
    if n_acc > 0 {
        w.seg("AMT", &["YU", &money(amt_acc)]);
    }
    if n_rej > 0 {
        w.seg("AMT", &["YY", &money(amt_rej)]);
    }

    // Billing providers in order of first appearance.
    let mut providers: Vec<(Option<&str>, Option<&str>)> = vec![];
    for c in &all {
        let key = (c.claim.billing_provider_npi.as_deref(), c.claim.billing_provider_name.as_deref());
        if !providers.contains(&key) {
            providers.push(key);
        }
    }
    let mut hl = 2u32;
    for (npi, name) in providers {
        hl += 1;
        let provider_hl = hl;
        let claims: Vec<&ClaimAck<'_>> = all
            .iter()
            .copied()
            .filter(|c| {
                (c.claim.billing_provider_npi.as_deref(), c.claim.billing_provider_name.as_deref()) == (npi, name)
            })
            .collect();
        let (n_acc, n_rej, amt_acc, amt_rej, amt_all) = totals(&claims);
        w.seg("HL", &[&provider_hl.to_string(), "2", "19", "1"]);
        w.seg("NM1", &["85", "2", name.unwrap_or("UNKNOWN"), "", "", "", "", "XX", npi.unwrap_or("")]);
        w.seg("TRN", &["1", npi.unwrap_or("0")]);
        // STC02 (effective date) is not used at the provider level.
        w.seg_composite_first("STC", &["A1", "19"], &["", "WQ", &money(amt_all)]);
        if n_acc > 0 {
            w.seg("QTY", &["QA", &n_acc.to_string()]);
        }
        if n_rej > 0 {
            w.seg("QTY", &["QC", &n_rej.to_string()]);
        }
        if n_acc > 0 {
            w.seg("AMT", &["YU", &money(amt_acc)]);
        }
        if n_rej > 0 {
            w.seg("AMT", &["YY", &money(amt_rej)]);
        }
        for c in claims {
            hl += 1;
            let (hl_s, parent) = (hl.to_string(), provider_hl.to_string());
            w.seg("HL", &[&hl_s, &parent, "PT"]);
            let p: &Person = &c.claim.patient;
            let member = c.claim.subscriber_member_id.expose().as_deref().unwrap_or("UNKNOWN");
            w.seg(
                "NM1",
                &[
                    "QC",
                    "1",
                    p.last_name.expose(),
                    p.first_name.expose().as_deref().unwrap_or(""),
                    p.middle_name.expose().as_deref().unwrap_or(""),
                    "",
                    "",
                    "MI",
                    member,
                ],
            );
            w.seg("TRN", &["2", c.claim.patient_control_number.expose()]);
            let charge = money(c.claim.total_charge);
            match &c.decision {
                ClaimDecision::Accepted => {
                    w.seg_composite_first("STC", &["A2", "20"], &[&today, "WQ", &charge]);
                }
                ClaimDecision::Rejected(r) => {
                    let claim_level = if r.claim.is_empty() { &[LINE_INFORMATION][..] } else { &r.claim[..] };
                    for (i, chunk) in claim_level.chunks(3).enumerate() {
                        let message = if i == 0 { r.message.as_deref().unwrap_or("") } else { "" };
                        stc_segment(&mut w, chunk, &today, &charge, message);
                    }
                }
            }
            w.seg("REF", &["D9", &c.clearinghouse_trace]);
            if let Some(d) = c.claim.summary().service_dates.or(c.claim.statement_dates) {
                let (fmt, v) = range(d);
                w.seg("DTP", &["472", fmt, &v]);
            }
            if let ClaimDecision::Rejected(r) = &c.decision {
                for (number, stcs) in &r.lines {
                    if let Some(line) = c.claim.service_lines.iter().find(|l| l.line_number == *number) {
                        service_line_status(&mut w, line, stcs, &today);
                    }
                }
            }
        }
    }
    w.se(&ctl);
    w.ge(a.controls.group);
    w.iea(a.controls.interchange);
    w.into_bytes()
}

/// An STC of a rejected claim: up to three statuses (STC01, STC10, STC11),
/// action U, the claim's charge, and a message (STC12) when given.
fn stc_segment(w: &mut Writer, stcs: &[Stc], today: &str, charge: &str, message: &str) {
    let parts: Vec<[&str; 3]> = stcs.iter().map(|s| [s.category, s.status, s.entity.unwrap_or("")]).collect();
    let comp = |i: usize| parts.get(i).map_or(El::Val(""), |p| El::Comp(&p[..]));
    let e = El::Val("");
    w.seg_els(
        "STC",
        &[comp(0), El::Val(today), El::Val("U"), El::Val(charge), e, e, e, e, e, comp(1), comp(2), El::Val(message)],
    );
}

/// Loop 2220D for a line that caused its claim's rejection: SVC (the
/// procedure, or the revenue code of an institutional line without one),
/// one STC (action U), REF*FJ (the line item control number) and DTP*472.
fn service_line_status(w: &mut Writer, line: &ServiceLine, stcs: &[Stc], today: &str) {
    let qualifier = match line.procedure_qualifier.as_deref() {
        Some(q @ ("AD" | "ER" | "HC" | "HP" | "IV" | "WK")) if !line.procedure_code.is_empty() => q,
        _ => "",
    };
    let (q, code) = match (qualifier, line.revenue_code.as_deref()) {
        ("", Some(rev)) => ("NU", rev),
        ("", None) => ("HC", line.procedure_code.as_str()),
        (q, _) => (q, line.procedure_code.as_str()),
    };
    let mods: Vec<&str> = line.modifiers.iter().take(4).map(String::as_str).collect();
    let mut proc = vec![q, code];
    proc.extend(mods);
    let units = line.units.map(money).unwrap_or_default();
    let revenue = if q == "NU" { "" } else { line.revenue_code.as_deref().unwrap_or("") };
    let charge = money(line.charge);
    w.seg_els(
        "SVC",
        &[El::Comp(&proc), El::Val(&charge), El::Val(""), El::Val(revenue), El::Val(""), El::Val(""), El::Val(&units)],
    );
    stc_segment(w, &stcs[..stcs.len().min(3)], today, "", "");
    if let Some(n) = &line.control_number {
        w.seg("REF", &["FJ", n]);
    }
    if let Some(d) = line.service_date {
        let (fmt, v) = range(d);
        w.seg("DTP", &["472", fmt, &v]);
    }
}

// -------------------------------------------------------------------- 271 --

/// The answer to one eligibility inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EligibilityOutcome {
    /// EB*1: active coverage.
    Active { plan: Option<String>, begin: Option<Date>, end: Option<Date>, insurance_type: Option<String> },
    /// EB*6: inactive coverage.
    Inactive { plan: Option<String>, end: Option<Date> },
    /// AAA at the subscriber (or dependent) level: `72` invalid member id,
    /// `73` invalid name, `75` subscriber not found, `58` invalid birth date...
    SubscriberRejected { reason: &'static str, action: &'static str },
    /// AAA at the payer level: `42` unable to respond now, `80` no response
    /// received, `79` invalid participant identification.
    PayerRejected { reason: &'static str, action: &'static str },
}

/// One inquiry and its answer.
#[derive(Debug, Clone)]
pub struct EligibilityAnswer<'a> {
    pub request: &'a EligibilityRequest,
    pub outcome: EligibilityOutcome,
}

/// A 271 answering the inquiries of one 270 set.
pub struct Response271<'a> {
    pub interchange: &'a IsaHeader,
    pub group: &'a GroupHeader,
    /// BHT03 of the 270, echoed.
    pub reference: &'a str,
    pub answers: &'a [EligibilityAnswer<'a>],
    pub controls: Controls,
    pub at: PrimitiveDateTime,
}

impl std::fmt::Debug for Response271<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response271").field("answers", &self.answers.len()).finish_non_exhaustive()
    }
}

fn nm1_person(w: &mut Writer, entity: &str, p: &Person, id: Option<&str>) {
    w.seg(
        "NM1",
        &[
            entity,
            "1",
            p.last_name.expose(),
            p.first_name.expose().as_deref().unwrap_or(""),
            p.middle_name.expose().as_deref().unwrap_or(""),
            "",
            "",
            if id.is_some() { "MI" } else { "" },
            id.unwrap_or(""),
        ],
    );
}

fn dmg(w: &mut Writer, p: &Person) {
    if let Some(d) = p.birth_date.expose() {
        w.seg("DMG", &["D8", &ccyymmdd(*d), p.gender.as_deref().unwrap_or("")]);
    }
}

/// Builds the 271.
pub fn response271(r: &Response271<'_>) -> Vec<u8> {
    let env = Envelope::reply_to(r.interchange, Some(r.group));
    let body = Body271::new(&env, r.answers);
    body.response(&env, r.reference, |n| r.answers[n].request.trace_number.as_deref(), r.controls, r.at)
}

/// The segments of a 271 between its BHT and its SE, with each TRN02 left
/// as a hole. They depend only on the answers and the delimiters — not on
/// control numbers, times, the BHT reference or trace numbers — so a
/// real-time service asked the same thing again can keep them and write
/// each new 271 around them ([`Body271::response`]), byte for byte what
/// [`response271`] writes.
#[derive(Debug, Clone)]
pub struct Body271 {
    delimiters: Delimiters,
    bytes: Vec<u8>,
    holes: Vec<Hole>,
    segments: u32,
}

/// Where a TRN segment goes in a [`Body271`], and for which answer.
#[derive(Debug, Clone)]
struct Hole {
    at: usize,
    answer: usize,
    originator: Option<String>,
}

impl Body271 {
    /// The body answering `answers`, in the delimiters of `env`.
    pub fn new(env: &Envelope, answers: &[EligibilityAnswer<'_>]) -> Body271 {
        let mut w = Writer::new(env.delimiters);
        let mut holes = Vec::new();
        let mut hl = 0u32;
        // Group answers by payer then provider, in order.
        let same_source = |a: usize, b: usize| {
            let (a, b) = (answers[a].request, answers[b].request);
            a.payer_id == b.payer_id && a.provider_npi == b.provider_npi
        };
        for (i, j) in runs(answers.len(), same_source) {
            let first = answers[i].request;
            hl += 1;
            let payer_hl = hl;
            payer_level(&mut w, payer_hl, first.payer_name.as_deref(), first.payer_id.as_deref());
            let payer_reject = answers[i..j].iter().find_map(|a| match a.outcome {
                EligibilityOutcome::PayerRejected { reason, action } => Some((reason, action)),
                _ => None,
            });
            if let Some((reason, action)) = payer_reject {
                w.seg("AAA", &["Y", "", reason, action]);
            }
            hl += 1;
            let provider_hl = hl;
            w.seg("HL", &[&provider_hl.to_string(), &payer_hl.to_string(), "21", "1"]);
            // The information receiver as the 270 named it (NPI, or its
            // other identifier).
            let (qualifier, id) = receiver_id(first);
            w.seg(
                "NM1",
                &["1P", "2", first.provider_name.as_deref().unwrap_or("PROVIDER"), "", "", "", "", qualifier, id],
            );
            // An NPI that fails its check digit is answered here, at the
            // information receiver (AAA03 43: invalid/missing provider
            // identification), not with a 999.
            if qualifier == "XX" && !id.is_empty() && !super::validate::valid_npi(id.as_bytes()) {
                w.seg("AAA", &["N", "", "43", "C"]);
            }
            for (n, a) in answers.iter().enumerate().take(j).skip(i) {
                let q = a.request;
                hl += 1;
                let sub_hl = hl;
                let has_dependent = q.dependent.is_some();
                w.seg(
                    "HL",
                    &[&sub_hl.to_string(), &provider_hl.to_string(), "22", if has_dependent { "1" } else { "0" }],
                );
                // TRN02 differs from request to request: a hole, filled when
                // the 271 is written.
                let mut trace = |w: &mut Writer| {
                    if q.trace_number.is_some() {
                        holes.push(Hole { at: w.out.len(), answer: n, originator: q.trace_originator.clone() });
                        w.set_segments += 1;
                    }
                };
                if !has_dependent {
                    trace(&mut w);
                }
                nm1_person(&mut w, "IL", &q.subscriber, q.member_id.expose().as_deref().or(Some("")));
                let target_is_subscriber = !has_dependent;
                // A rejection about the subscriber (their id, name, not found)
                // goes in 2100C even when a dependent was asked about: 2100D's
                // AAA takes only patient-level reasons.
                let subscriber_reason = |r: &str| !DEPENDENT_AAA_REASONS.contains(&r);
                if let EligibilityOutcome::SubscriberRejected { reason, action } = a.outcome
                    && (target_is_subscriber || subscriber_reason(reason))
                {
                    w.seg("AAA", &["N", "", reason, action]);
                }
                dmg(&mut w, &q.subscriber);
                if target_is_subscriber {
                    write_benefits(&mut w, a);
                }
                if let Some(dep) = &q.dependent {
                    hl += 1;
                    w.seg("HL", &[&hl.to_string(), &sub_hl.to_string(), "23", "0"]);
                    trace(&mut w);
                    w.seg(
                        "NM1",
                        &["03", "1", dep.last_name.expose(), dep.first_name.expose().as_deref().unwrap_or("")],
                    );
                    if let EligibilityOutcome::SubscriberRejected { reason, action } = a.outcome
                        && !subscriber_reason(reason)
                    {
                        w.seg("AAA", &["N", "", reason, action]);
                    }
                    dmg(&mut w, dep);
                    write_benefits(&mut w, a);
                }
            }
        }
        Body271 { delimiters: env.delimiters, bytes: w.out, holes, segments: w.set_segments }
    }

    /// The whole 271: envelope, BHT, this body with the trace number of
    /// answer `n` as `trace(n)`, trailers. `env` is the envelope the body
    /// was made for; the whole 271 is written in the body's delimiters.
    pub fn response<'t>(
        &self,
        env: &Envelope,
        reference: &str,
        trace: impl Fn(usize) -> Option<&'t str>,
        controls: Controls,
        at: PrimitiveDateTime,
    ) -> Vec<u8> {
        debug_assert_eq!(env.delimiters, self.delimiters);
        let mut w = Writer::new(self.delimiters);
        w.out.reserve(self.bytes.len() + 256);
        w.isa(env, controls.interchange, at);
        w.gs("HB", env, controls.group, at, "005010X279A1");
        let ctl = format!("{:04}", controls.first_set);
        w.st("271", &ctl, "005010X279A1");
        w.seg("BHT", &["0022", "11", reference, &ccyymmdd(at.date()), &hhmm(at)]);
        let mut from = 0;
        for h in &self.holes {
            w.out.extend_from_slice(&self.bytes[from..h.at]);
            put_seg(
                self.delimiters,
                &mut w.out,
                "TRN",
                &["2", trace(h.answer).unwrap_or(""), h.originator.as_deref().unwrap_or("")],
            );
            from = h.at;
        }
        w.out.extend_from_slice(&self.bytes[from..]);
        w.set_segments += self.segments;
        w.se(&ctl);
        w.ge(controls.group);
        w.iea(controls.interchange);
        w.into_bytes()
    }
}

/// The runs of consecutive indices in `0..n` that `same` puts together,
/// as (start, end): the 271 and the 277 answer by payer and provider, in
/// the order asked.
fn runs(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && same(i, j) {
            j += 1;
        }
        out.push((i, j));
        i = j;
    }
    out
}

/// The information source level (2000A/2100A) of a 271 or 277: its HL and
/// the payer's NM1.
fn payer_level(w: &mut Writer, hl: u32, name: Option<&str>, id: Option<&str>) {
    w.seg("HL", &[&hl.to_string(), "", "20", "1"]);
    w.seg("NM1", &["PR", "2", name.unwrap_or("PAYER"), "", "", "", "", "PI", id.unwrap_or("UNKNOWN")]);
}

/// AAA03 codes allowed in 271 loop 2100D (dependent request validation).
const DEPENDENT_AAA_REASONS: &[&str] = &[
    "15", "35", "42", "43", "45", "47", "48", "49", "51", "52", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "67", "68", "71", "77",
];

fn write_benefits(w: &mut Writer, a: &EligibilityAnswer<'_>) {
    let types: Vec<&str> = if a.request.service_types.is_empty() {
        vec!["30"]
    } else {
        a.request.service_types.iter().map(String::as_str).collect()
    };
    let rep = w.d.repetition.unwrap_or(b'^') as char;
    let joined = types.iter().filter(|t| !t.is_empty()).copied().collect::<Vec<_>>().join(&rep.to_string());
    match &a.outcome {
        EligibilityOutcome::Active { plan, begin, end, insurance_type } => {
            if let Some(b) = begin {
                let dates = match end {
                    Some(e) => ("RD8", format!("{}-{}", ccyymmdd(*b), ccyymmdd(*e))),
                    None => ("D8", ccyymmdd(*b).to_string()),
                };
                w.seg("DTP", &["346", dates.0, &dates.1]);
            }
            // The service-type repetitions are joined with the repetition
            // separator, which `seg` would sanitise: write them raw.
            let eb = format!(
                "EB{e}1{e}IND{e}{joined}{e}{}{e}{}",
                insurance_type.as_deref().unwrap_or(""),
                plan.as_deref().map(|p| clean_plain(p, w.d)).unwrap_or_default(),
                e = w.d.element as char
            );
            raw_seg(w, eb.trim_end_matches(w.d.element as char));
        }
        EligibilityOutcome::Inactive { plan, end } => {
            if let Some(e) = end {
                w.seg("DTP", &["347", "D8", &ccyymmdd(*e)]);
            }
            let eb = format!(
                "EB{e}6{e}IND{e}{joined}{e}{e}{}",
                plan.as_deref().map(|p| clean_plain(p, w.d)).unwrap_or_default(),
                e = w.d.element as char
            );
            raw_seg(w, eb.trim_end_matches(w.d.element as char));
        }
        _ => {}
    }
}

fn clean_plain(v: &str, d: Delimiters) -> String {
    v.chars().map(|c| if c.is_ascii() && d.is_delimiter(c as u8) || c.is_control() { ' ' } else { c }).collect()
}

/// Joins already-sanitised elements, dropping empty trailing ones.
fn join(w: &Writer, parts: &[&str]) -> String {
    let last = parts.iter().rposition(|e| !e.is_empty()).map_or(0, |i| i + 1);
    parts[..last].join(&(w.d.element as char).to_string())
}

fn raw_seg(w: &mut Writer, s: &str) {
    w.out.extend_from_slice(s.as_bytes());
    w.out.push(w.d.segment);
    w.set_segments += 1;
}

/// NM108/NM109 of the information receiver of an inquiry: its NPI, else
/// the identifier it was sent with.
fn receiver_id(r: &EligibilityRequest) -> (&str, &str) {
    match (&r.provider_npi, &r.provider_id) {
        (Some(npi), _) => ("XX", npi.as_str()),
        (None, Some((q, id))) => (q.as_str(), id.as_str()),
        (None, None) => ("XX", ""),
    }
}

// ------------------------------------------------- 270 / 276 (out) --

/// The envelope, BHT and payer level (2000A/2100A) of an inquiry we send:
/// `set` is (GS01, ST01, guide, BHT01); returns the writer and ST02.
fn inquiry_head(
    env: &Envelope,
    controls: Controls,
    at: PrimitiveDateTime,
    set: (&str, &str, &str, &str),
    reference: &str,
    payer: (Option<&str>, Option<&str>),
) -> (Writer, String) {
    let (fid, st01, guide, bht01) = set;
    let mut w = Writer::new(env.delimiters);
    w.isa(env, controls.interchange, at);
    w.gs(fid, env, controls.group, at, guide);
    let ctl = format!("{:04}", controls.first_set);
    w.st(st01, &ctl, guide);
    w.seg("BHT", &[bht01, "13", reference, &ccyymmdd(at.date()), &hhmm(at)]);
    w.seg("HL", &["1", "", "20", "1"]);
    w.seg("NM1", &["PR", "2", payer.0.unwrap_or("PAYER"), "", "", "", "", "PI", payer.1.unwrap_or("UNKNOWN")]);
    (w, ctl)
}

/// SE, GE and IEA of an inquiry we send.
fn inquiry_tail(mut w: Writer, ctl: &str, controls: Controls) -> Vec<u8> {
    w.se(ctl);
    w.ge(controls.group);
    w.iea(controls.interchange);
    w.into_bytes()
}

/// A 270 carrying one inquiry, to forward to a payer (the fast path's
/// `http` connector). `env` is ours toward the payer; `reference` is BHT03.
pub fn request270(
    r: &EligibilityRequest,
    env: &Envelope,
    reference: &str,
    controls: Controls,
    at: PrimitiveDateTime,
) -> Vec<u8> {
    let (mut w, ctl) = inquiry_head(
        env,
        controls,
        at,
        ("HS", "270", "005010X279A1", "0022"),
        reference,
        (r.payer_name.as_deref(), r.payer_id.as_deref()),
    );
    w.seg("HL", &["2", "1", "21", "1"]);
    let (qualifier, id) = receiver_id(r);
    w.seg("NM1", &["1P", "2", r.provider_name.as_deref().unwrap_or("PROVIDER"), "", "", "", "", qualifier, id]);
    w.seg("HL", &["3", "2", "22", if r.dependent.is_some() { "1" } else { "0" }]);
    w.seg(
        "TRN",
        &["1", r.trace_number.as_deref().unwrap_or("0"), r.trace_originator.as_deref().unwrap_or("9CLEARWAY0")],
    );
    nm1_person(&mut w, "IL", &r.subscriber, Some(r.member_id.expose().as_deref().unwrap_or("UNKNOWN")));
    dmg(&mut w, &r.subscriber);
    // The date and service types belong to the patient's level: the
    // dependent's when there is one.
    if let Some(d) = &r.dependent {
        w.seg("HL", &["4", "3", "23", "0"]);
        nm1_person(&mut w, "03", d, None);
        dmg(&mut w, d);
    }
    if let Some(d) = r.date {
        let (fmt, v) = range(d);
        w.seg("DTP", &["291", fmt, &v]);
    }
    if r.service_types.is_empty() {
        w.seg("EQ", &["30"]);
    }
    for t in &r.service_types {
        w.seg("EQ", &[t]);
    }
    inquiry_tail(w, &ctl, controls)
}

/// A 276 carrying one inquiry, to forward to a payer (the fast path's
/// `http` connector). `env` is ours toward the payer; `receiver` is our
/// name and id as the information receiver (2100B); `reference` is BHT03.
pub fn request276(
    r: &ClaimStatusRequest,
    env: &Envelope,
    receiver: (&str, &str),
    reference: &str,
    controls: Controls,
    at: PrimitiveDateTime,
) -> Vec<u8> {
    let (mut w, ctl) = inquiry_head(
        env,
        controls,
        at,
        ("HR", "276", "005010X212", "0010"),
        reference,
        (r.payer_name.as_deref(), r.payer_id.as_deref()),
    );
    w.seg("HL", &["2", "1", "21", "1"]);
    w.seg("NM1", &["41", "2", receiver.0, "", "", "", "", "46", receiver.1]);
    w.seg("HL", &["3", "2", "19", "1"]);
    w.seg("NM1", &["1P", "2", "PROVIDER", "", "", "", "", "XX", r.provider_npi.as_deref().unwrap_or("")]);
    // The claim sits at the patient's level: the subscriber's (with the
    // subscriber's DMG), or the dependent's below it.
    w.seg("HL", &["4", "3", "22", if r.dependent.is_some() { "1" } else { "0" }]);
    if r.dependent.is_none() {
        dmg(&mut w, &r.subscriber);
    }
    nm1_person(&mut w, "IL", &r.subscriber, Some(r.member_id.expose().as_deref().unwrap_or("UNKNOWN")));
    if let Some(d) = &r.dependent {
        w.seg("HL", &["5", "4", "23"]);
        dmg(&mut w, d);
        nm1_person(&mut w, "QC", d, None);
    }
    w.seg("TRN", &["1", r.trace_number.as_deref().unwrap_or("0")]);
    if let Some(n) = r.payer_claim_control_number.as_deref() {
        w.seg("REF", &["1K", n]);
    }
    if let Some(pcn) = r.patient_control_number.expose() {
        w.seg("REF", &["EJ", pcn]);
    }
    if let Some(c) = r.total_charge {
        w.seg("AMT", &["T3", &money(c)]);
    }
    if let Some(d) = r.service_date {
        let (fmt, v) = range(d);
        w.seg("DTP", &["472", fmt, &v]);
    }
    inquiry_tail(w, &ctl, controls)
}

// -------------------------------------------------------------------- 277 --

/// What is known of a claim asked about in a 276.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStatusAnswer<'a> {
    pub request: &'a ClaimStatusRequest,
    /// STC01 category (`A1`, `P1`, `F1`, `F2`, `A7`, `D0`...).
    pub category: &'a str,
    /// STC01 status code.
    pub status: &'a str,
    pub entity: Option<&'a str>,
    pub effective: Date,
    pub charge: Option<Decimal>,
    pub paid: Option<Decimal>,
    pub adjudicated: Option<Date>,
    pub payer_claim_control_number: Option<String>,
}

/// A 277 answering the inquiries of one 276 set.
pub struct Response277<'a> {
    pub interchange: &'a IsaHeader,
    pub group: &'a GroupHeader,
    /// BHT03 of the 276.
    pub reference: &'a str,
    pub receiver_name: &'a str,
    pub receiver_id: &'a str,
    pub answers: &'a [ClaimStatusAnswer<'a>],
    pub controls: Controls,
    pub at: PrimitiveDateTime,
}

impl std::fmt::Debug for Response277<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response277").field("answers", &self.answers.len()).finish_non_exhaustive()
    }
}

/// Builds the 277.
pub fn response277(r: &Response277<'_>) -> Vec<u8> {
    let env = Envelope::reply_to(r.interchange, Some(r.group));
    let mut w = Writer::new(env.delimiters);
    w.isa(&env, r.controls.interchange, r.at);
    w.gs("HN", &env, r.controls.group, r.at, "005010X212");
    let ctl = format!("{:04}", r.controls.first_set);
    w.st("277", &ctl, "005010X212");
    w.seg("BHT", &["0010", "08", r.reference, &ccyymmdd(r.at.date()), &hhmm(r.at), "DG"]);
    let mut hl = 0u32;
    let same_source = |a: usize, b: usize| {
        let (a, b) = (r.answers[a].request, r.answers[b].request);
        a.payer_id == b.payer_id && a.provider_npi == b.provider_npi
    };
    for (i, j) in runs(r.answers.len(), same_source) {
        let first = r.answers[i].request;
        hl += 1;
        let payer_hl = hl;
        payer_level(&mut w, payer_hl, first.payer_name.as_deref(), first.payer_id.as_deref());
        hl += 1;
        let receiver_hl = hl;
        w.seg("HL", &[&receiver_hl.to_string(), &payer_hl.to_string(), "21", "1"]);
        w.seg("NM1", &["41", "2", r.receiver_name, "", "", "", "", "46", r.receiver_id]);
        hl += 1;
        let provider_hl = hl;
        w.seg("HL", &[&provider_hl.to_string(), &receiver_hl.to_string(), "19", "1"]);
        let npi = first.provider_npi.as_deref().unwrap_or("");
        w.seg("NM1", &["1P", "2", "PROVIDER", "", "", "", "", "XX", npi]);
        // A provider NPI that fails its check digit: the 2200C status for
        // the provider (X12 RFI 2328: E0 error on submitted request data,
        // 562 entity's NPI, 1P provider). The claims are still answered.
        if !npi.is_empty() && !super::validate::valid_npi(npi.as_bytes()) {
            w.seg("TRN", &["1", npi]);
            w.seg_composite_first("STC", &["E0", "562", "1P"], &[&ccyymmdd(r.at.date())]);
        }
        for a in &r.answers[i..j] {
            let q = a.request;
            hl += 1;
            let sub_hl = hl;
            let dep = q.dependent.as_ref();
            w.seg("HL", &[&sub_hl.to_string(), &provider_hl.to_string(), "22", if dep.is_some() { "1" } else { "0" }]);
            nm1_person(&mut w, "IL", &q.subscriber, Some(q.member_id.expose().as_deref().unwrap_or("UNKNOWN")));
            if let Some(d) = dep {
                hl += 1;
                w.seg("HL", &[&hl.to_string(), &sub_hl.to_string(), "23"]);
                nm1_person(&mut w, "QC", d, None);
            }
            w.seg("TRN", &["2", q.trace_number.as_deref().unwrap_or("0")]);
            let charge = a.charge.or(q.total_charge).map(money).unwrap_or_else(|| "0".into());
            let paid = a.paid.map(money).unwrap_or_else(|| "0".into());
            let adjudicated = a.adjudicated.map(ccyymmdd).unwrap_or_default();
            w.seg_composite_first(
                "STC",
                &[a.category, a.status, a.entity.unwrap_or("")],
                &[&ccyymmdd(a.effective), "", &charge, &paid, &adjudicated],
            );
            if let Some(n) = a.payer_claim_control_number.as_deref().or(q.payer_claim_control_number.as_deref()) {
                w.seg("REF", &["1K", n]);
            }
            if let Some(pcn) = q.patient_control_number.expose() {
                w.seg("REF", &["EJ", pcn]);
            }
            if let Some(d) = q.service_date {
                let (fmt, v) = range(d);
                w.seg("DTP", &["472", fmt, &v]);
            }
        }
    }
    w.se(&ctl);
    w.ge(r.controls.group);
    w.iea(r.controls.interchange);
    w.into_bytes()
}

/// A TransactionSet's claims, for callers building a 277CA.
pub fn claims_of(set: &TransactionSet) -> Vec<&Claim> {
    set.documents
        .iter()
        .filter_map(|d| match d {
            super::views::Document::Claim(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect()
}

/// `ElementPosition` as the 999 writes it (exposed for reports).
pub fn element_position(p: &ElementPosition) -> String {
    pos(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isa_of(env: &Envelope, control: u32) -> String {
        let mut w = Writer::new(env.delimiters);
        let at = PrimitiveDateTime::new(
            time::macros::date!(2024 - 03 - 07),
            time::Time::from_hms(9, 5, 0).unwrap_or(time::Time::MIDNIGHT),
        );
        w.isa(env, control, at);
        String::from_utf8_lossy(&w.into_bytes()).into_owned()
    }

    proptest::proptest! {
        /// Dates, times and GS06 written as digits on the stack read as
        /// `format!` writes them.
        #[test]
        fn digits_are_what_format_writes(day in -365_000i32..=5_373_484, minute in 0u32..1440, control in proptest::num::u32::ANY) {
            let d = Date::from_julian_day(day).unwrap_or(Date::MIN);
            proptest::prop_assert_eq!(&*ccyymmdd(d), format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()));
            let t = PrimitiveDateTime::new(d, time::Time::from_hms((minute / 60) as u8, (minute % 60) as u8, 0).unwrap_or(time::Time::MIDNIGHT));
            proptest::prop_assert_eq!(&*hhmm(t), format!("{:02}{:02}", t.hour(), t.minute()));
            let mut w = Writer::new(Delimiters::default());
            let env = Envelope {
                sender_qualifier: "ZZ".into(),
                sender_id: "A".into(),
                receiver_qualifier: "ZZ".into(),
                receiver_id: "B".into(),
                group_sender: "A".into(),
                group_receiver: "B".into(),
                usage: "T".into(),
                delimiters: Delimiters::default(),
            };
            w.gs("HB", &env, control, t, "005010X279A1");
            let gs = String::from_utf8(w.into_bytes()).unwrap_or_default();
            let expected = control.to_string();
            proptest::prop_assert_eq!(gs.split('*').nth(6), Some(expected.as_str()));
        }
    }

    #[test]
    fn isa_is_written_to_its_fixed_width() {
        let mut env = Envelope {
            sender_qualifier: "ZZ".into(),
            sender_id: "CLEARWAY".into(),
            receiver_qualifier: "30".into(),
            receiver_id: "A-RECEIVER-ID-LONGER-THAN-15".into(),
            group_sender: String::new(),
            group_receiver: String::new(),
            usage: "P".into(),
            delimiters: Delimiters::default(),
        };
        let isa = isa_of(&env, 1_234_567_891);
        assert_eq!(
            isa,
            "ISA*00*          *00*          *ZZ*CLEARWAY       *30*A-RECEIVER-ID-L*240307*0905*^*00501*234567891*0*P*:~"
        );
        assert_eq!(isa.len(), crate::x12::isa::ISA_LEN);
        env.sender_qualifier = "Z".into();
        env.usage = String::new();
        let isa = isa_of(&env, 7);
        assert!(isa.starts_with("ISA*00*          *00*          *Z *CLEARWAY       *"), "{isa}");
        assert!(isa.ends_with("*000000007*0* *:~"), "{isa}");
        assert_eq!(isa.len(), crate::x12::isa::ISA_LEN);
    }
}
