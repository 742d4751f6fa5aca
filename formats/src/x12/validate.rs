//! SNIP levels 1 and 2: a transaction set checked against its implementation
//! guide, one segment at a time.
//!
//! The validator walks the guide's loop tree as segments arrive (the classic
//! X12 loop-detection walk: a segment is matched among the children of the
//! current loop at or after the current position, then among the children of
//! each enclosing loop; a loop is entered through its first segment). Memory
//! is proportional to the loop depth, not to the size of the set, so a
//! two-gigabyte claim file is checked in constant space.
//!
//! Each problem becomes a [`SegmentError`] (an IK3 with its IK4s) carrying the
//! standard codes, the segment position (ST = 1), the loop id, the element
//! position and reference number, and a message naming the element but never
//! its value. Errors inside a claim carry the claim's CLM01 as business-unit
//! context (the 999's CTX), and errors caused by a situational rule carry the
//! triggering segment.

use super::codes::{ElementCode, SegmentCode};
use super::reader::{ElementFlags, Segment};
use super::spec::{Child, Codes, DataType, ElementKind, ElementSpec, SegmentSpec, Spec, Usage, seg_key, tables};
use clearway_core::Sensitive;
use serde::Serialize;

/// Position of an element inside a segment: IK401 (C030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ElementPosition {
    /// 1-based element position.
    pub element: u8,
    /// 1-based component position inside a composite.
    pub component: Option<u8>,
    /// 1-based repetition of a repeating element.
    pub repetition: Option<u16>,
}

impl ElementPosition {
    pub fn element(element: u8) -> Self {
        ElementPosition { element, component: None, repetition: None }
    }
}

impl std::fmt::Display for ElementPosition {
    /// `element[:component[:repetition]]`, the form used in reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.element)?;
        match (self.component, self.repetition) {
            (None, None) => Ok(()),
            (c, None) => write!(f, ":{}", c.unwrap_or(0)),
            (c, Some(r)) => write!(f, ":{}:{}", c.map(|c| c.to_string()).unwrap_or_default(), r),
        }
    }
}

/// One element problem: an IK4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementError {
    pub position: ElementPosition,
    /// IK402, the data element reference number (`66`), when known.
    pub reference: Option<String>,
    pub code: ElementCode,
    /// IK404, a copy of the bad value for the acknowledgement. It is PHI:
    /// it goes into the 999 and nowhere else.
    #[serde(skip)]
    pub copy: Option<Sensitive<String>>,
    /// Names the element and the problem; never contains the value.
    pub message: String,
}

/// Why a CTX segment accompanies an IK3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Context {
    /// CTX*CLM01:<patient control number>: the claim the error is in.
    BusinessUnit {
        name: String,
        #[serde(skip)]
        value: Sensitive<String>,
    },
    /// CTX*SITUATIONAL TRIGGER: the segment whose content made the
    /// situational requirement apply.
    SituationalTrigger { segment: String, position: u32, loop_id: Option<String>, element: Option<ElementPosition> },
}

/// One segment problem: an IK3 with its IK4s and CTXs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentError {
    /// IK301.
    pub segment: String,
    /// IK302, position in the transaction set, ST = 1.
    pub position: u32,
    /// IK303, the loop the segment is (or was expected) in.
    pub loop_id: Option<String>,
    /// IK304.
    pub code: SegmentCode,
    pub elements: Vec<ElementError>,
    pub contexts: Vec<Context>,
    /// Names the segment and the problem; never contains values.
    pub message: String,
}

/// Validator options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop recording errors for a set after this many (they are still counted).
    pub max_errors_per_set: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_errors_per_set: 1000 }
    }
}

/// An open loop iteration.
#[derive(Debug, Default)]
struct Frame {
    loop_index: usize,
    rank: u16,
    counts: Vec<u32>,
}

/// The HL04 promise of the previous HL, checked when the next HL arrives.
#[derive(Debug)]
struct PendingHl {
    id: Box<[u8]>,
    has_children: bool,
    position: u32,
    loop_id: Option<String>,
}

/// 837 situational rules.
#[derive(Debug, Default)]
struct ClaimRules {
    /// SBR at this position said the subscriber is the patient (SBR02 = 18).
    subscriber_is_patient: Option<u32>,
}

/// Validates one transaction set, segment by segment.
#[derive(Debug)]
pub struct SetValidator<'s> {
    spec: &'s Spec,
    frames: Vec<Frame>,
    depth: usize,
    position: u32,
    errors: Vec<SegmentError>,
    dropped: usize,
    options: Options,
    last_hl: Option<u64>,
    pending_hl: Option<PendingHl>,
    /// HL01s of the open hierarchy path, root first.
    hl_path: Vec<Box<[u8]>>,
    business_unit: Option<Sensitive<String>>,
    claim_rules: Option<ClaimRules>,
    /// The guide's node for the last segment, when it was placed.
    last: Option<&'s SegmentSpec>,
}

impl<'s> SetValidator<'s> {
    /// Starts a set; feed it every segment from ST to SE.
    pub fn new(spec: &'s Spec, options: Options) -> Self {
        let mut v = SetValidator {
            spec,
            frames: Vec::new(),
            depth: 0,
            position: 0,
            errors: Vec::new(),
            dropped: 0,
            options,
            last_hl: None,
            pending_hl: None,
            hl_path: Vec::new(),
            business_unit: None,
            claim_rules: (&*spec.transaction == "837").then(ClaimRules::default),
            last: None,
        };
        v.push_frame(0);
        v
    }

    pub fn spec(&self) -> &'s Spec {
        self.spec
    }

    /// Segments seen so far (the position of the last one).
    pub fn position(&self) -> u32 {
        self.position
    }

    /// The guide's node for the last segment checked (`None` when it was
    /// not placed in the guide): its name, loop and elements.
    pub fn last_segment(&self) -> Option<&'s SegmentSpec> {
        self.last
    }

    /// True when no error has been recorded so far.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.dropped == 0
    }

    /// Checks one segment; returns the id of the loop it was placed in.
    pub fn segment(&mut self, seg: &Segment<'_>) -> Option<&'s str> {
        self.position += 1;
        let key = seg_key(seg.id());
        match self.locate(key, seg) {
            Some((level, child, qualified)) => {
                self.close_to(level + 1);
                let spec = self.spec;
                let frame = &mut self.frames[level];
                let lp = &spec.loops[frame.loop_index];
                frame.counts[child] += 1;
                let count = frame.counts[child];
                frame.rank = lp.ranks[child];
                let (seg_spec, entered) = match lp.children[child] {
                    Child::Segment(s) => (&spec.segments[s], None),
                    Child::Loop(l) => (spec.lead(Child::Loop(l)), Some(l)),
                };
                let loop_id = &*spec.loops[seg_spec.loop_index].id;
                self.last = Some(seg_spec);
                if let Some(l) = entered {
                    if count > spec.loops[l].max_repeat {
                        self.push(seg, SegmentCode::LoopOverMax, Some(loop_id), "loop occurs over maximum times");
                    }
                    self.push_frame(l);
                    self.frames[self.depth - 1].counts[0] = 1;
                } else if count > seg_spec.max_use {
                    self.push(seg, SegmentCode::OverMaxUse, Some(loop_id), "segment exceeds maximum use");
                }
                if seg_spec.usage == Usage::NotUsed || (entered.is_some_and(|l| spec.loops[l].usage == Usage::NotUsed))
                {
                    self.push(
                        seg,
                        SegmentCode::NotUsedPresent,
                        Some(loop_id),
                        "segment is not used in this implementation",
                    );
                }
                if seg.is("CLM") {
                    self.business_unit = Some(Sensitive::new(String::from_utf8_lossy(seg.element(1)).into_owned()));
                }
                let mut element_errors = Vec::new();
                if !qualified {
                    element_errors.push(qualifier_error(seg_spec));
                }
                check_elements(seg, seg_spec, &mut element_errors);
                if seg.is("HL") {
                    self.check_hl(seg, seg_spec, loop_id, &mut element_errors);
                }
                if seg.is("DTP") {
                    check_dtp(seg, seg_spec, &mut element_errors);
                }
                // One report per element position and code.
                if element_errors.len() > 1 {
                    let mut seen = std::collections::HashSet::new();
                    element_errors.retain(|e| seen.insert((e.position, e.code)));
                }
                if !element_errors.is_empty() {
                    let syntax_trigger = element_errors.iter().any(|e| e.code == ElementCode::ConditionalMissing);
                    let mut err = self.segment_error(
                        seg,
                        SegmentCode::ElementErrors,
                        Some(loop_id),
                        "segment has data element errors",
                    );
                    err.elements = element_errors;
                    if syntax_trigger {
                        err.contexts.push(Context::SituationalTrigger {
                            segment: seg_spec.id.to_string(),
                            position: self.position,
                            loop_id: Some(loop_id.to_string()),
                            element: None,
                        });
                    }
                    self.record(err);
                }
                self.claim_rules_on_segment(seg, loop_id);
                Some(loop_id)
            }
            None => {
                self.last = None;
                let code = self.unmatched_code(key);
                let msg = match code {
                    SegmentCode::NotInSequence => "segment is not in proper sequence",
                    SegmentCode::Unexpected => "segment is not expected here",
                    SegmentCode::NotInTransactionSet => "segment is not defined in this transaction set",
                    _ => "unrecognized segment id",
                };
                let loop_id = self.current_loop_id();
                self.push(seg, code, loop_id, msg);
                None
            }
        }
    }

    /// Ends the set: closes open loops (reporting required segments that
    /// never came) and returns the errors, plus how many were not recorded.
    pub fn finish(mut self) -> (Vec<SegmentError>, usize) {
        self.close_to(0);
        if let Some(p) = self.pending_hl.take().filter(|p| p.has_children) {
            self.record(SegmentError {
                segment: "HL".into(),
                position: p.position,
                loop_id: p.loop_id,
                code: SegmentCode::ElementErrors,
                elements: vec![ElementError {
                    position: ElementPosition::element(4),
                    reference: Some("736".into()),
                    code: ElementCode::PatternMismatch,
                    copy: None,
                    message: "HL04 says a child level follows but none does".into(),
                }],
                contexts: vec![],
                message: "segment has data element errors".into(),
            });
        }
        (self.errors, self.dropped)
    }

    fn current_loop_id(&self) -> Option<&'s str> {
        let l = self.frames.get(self.depth.checked_sub(1)?)?.loop_index;
        (l != 0).then(|| &*self.spec.loops[l].id)
    }

    /// Finds (frame level, child slot, qualifier matched) for a segment.
    fn locate(&self, key: u32, seg: &Segment<'_>) -> Option<(usize, usize, bool)> {
        let spec = self.spec;
        let mut fallback = None;
        for level in (0..self.depth).rev() {
            let frame = &self.frames[level];
            let lp = &spec.loops[frame.loop_index];
            for &c in lp.candidates(key) {
                let c = usize::from(c);
                // A loop's own first segment starts a new iteration one level up.
                if c == 0 && frame.counts[0] > 0 {
                    continue;
                }
                if lp.ranks[c] < frame.rank {
                    continue;
                }
                let lead = spec.lead(lp.children[c]);
                match lead.qualifier() {
                    Some((pos, codes)) => {
                        let value =
                            if lead.qualifier_is_composite() { seg.component(pos, 1) } else { seg.element(pos) };
                        if codes.contains(value) {
                            return Some((level, c, true));
                        }
                        if fallback.is_none() && (lead.id.as_ref() != "HL") {
                            fallback = Some((level, c, false));
                        }
                    }
                    None => return Some((level, c, true)),
                }
            }
        }
        fallback
    }

    fn unmatched_code(&self, key: u32) -> SegmentCode {
        let in_stack = (0..self.depth).any(|l| !self.spec.loops[self.frames[l].loop_index].candidates(key).is_empty());
        if in_stack {
            SegmentCode::NotInSequence
        } else if self.spec.has_segment(key) {
            SegmentCode::Unexpected
        } else if tables().is_known_segment(key) {
            SegmentCode::NotInTransactionSet
        } else {
            SegmentCode::Unrecognized
        }
    }

    fn push_frame(&mut self, loop_index: usize) {
        let n = self.spec.loops[loop_index].children.len();
        if self.frames.len() == self.depth {
            self.frames.push(Frame::default());
        }
        let f = &mut self.frames[self.depth];
        f.loop_index = loop_index;
        f.rank = 0;
        f.counts.clear();
        f.counts.resize(n, 0);
        self.depth += 1;
    }

    /// Closes frames until `depth` remain, checking required children.
    fn close_to(&mut self, depth: usize) {
        while self.depth > depth {
            self.depth -= 1;
            let spec = self.spec;
            let li = self.frames[self.depth].loop_index;
            let lp = &spec.loops[li];
            for &i in &lp.required {
                let i = usize::from(i);
                if self.frames[self.depth].counts[i] > 0 {
                    continue;
                }
                let child = lp.children[i];
                let (lead, loop_id) = match child {
                    Child::Segment(s) => (&spec.segments[s], &*lp.id),
                    Child::Loop(l) => (spec.lead(child), &*spec.loops[l].id),
                };
                let err = SegmentError {
                    segment: lead.id.to_string(),
                    position: self.position,
                    loop_id: (!loop_id.is_empty()).then(|| loop_id.to_string()),
                    code: SegmentCode::RequiredMissing,
                    elements: vec![],
                    contexts: self.business_context(),
                    message: format!("{} ({}) is required but missing", lead.id, lead.name),
                };
                self.record(err);
            }
            let closing = &*lp.id;
            if closing == "2300" {
                self.business_unit = None;
            }
            if closing == "2000B"
                && let Some(r) = self.claim_rules.as_mut()
            {
                r.subscriber_is_patient = None;
            }
        }
    }

    fn claim_rules_on_segment(&mut self, seg: &Segment<'_>, loop_id: &str) {
        let position = self.position;
        let Some(rules) = self.claim_rules.as_mut() else {
            return;
        };
        match (seg.id(), loop_id) {
            (b"SBR", "2000B") => {
                rules.subscriber_is_patient = (seg.element(2) == b"18").then_some(position);
            }
            (b"HL", "2000C") => {
                if let Some(sbr) = rules.subscriber_is_patient {
                    let mut err = self.segment_error(
                        seg,
                        SegmentCode::SituationalNotUsedPresent,
                        Some("2000C"),
                        "patient level is not used when the subscriber is the patient",
                    );
                    err.contexts.push(Context::SituationalTrigger {
                        segment: "SBR".into(),
                        position: sbr,
                        loop_id: Some("2000B".into()),
                        element: Some(ElementPosition::element(2)),
                    });
                    self.record(err);
                }
            }
            _ => {}
        }
    }

    fn check_hl(&mut self, seg: &Segment<'_>, spec: &SegmentSpec, loop_id: &str, errors: &mut Vec<ElementError>) {
        let id = seg.element(1);
        let parent = seg.element(2);
        // HL01 starts at 1 and increases by one.
        let n = parse_u64(id);
        let expected = self.last_hl.map_or(1, |l| l + 1);
        if n != Some(expected) {
            errors.push(hl_error(spec, 1, "HL01 does not continue the hierarchical id sequence"));
        }
        if let Some(n) = n {
            self.last_hl = Some(n);
        }
        // HL02 names an HL on the current path: X12 hierarchies are sent
        // depth first, so the parent is the nearest open ancestor.
        if parent.is_empty() {
            self.hl_path.clear();
        } else {
            while self.hl_path.last().is_some_and(|p| &**p != parent) {
                self.hl_path.pop();
            }
            if self.hl_path.is_empty() {
                errors.push(hl_error(spec, 2, "HL02 does not name an enclosing hierarchical level"));
            }
        }
        if self.hl_path.len() < 64 {
            self.hl_path.push(id.into());
        }
        // HL04 of the previous HL promised (or denied) this child.
        if let Some(p) = self.pending_hl.take() {
            let is_child = parent == &*p.id;
            if p.has_children != is_child {
                self.record(SegmentError {
                    segment: "HL".into(),
                    position: p.position,
                    loop_id: p.loop_id,
                    code: SegmentCode::ElementErrors,
                    elements: vec![hl_error(
                        spec,
                        4,
                        if p.has_children {
                            "HL04 says a child level follows but none does"
                        } else {
                            "HL04 says no child level follows but one does"
                        },
                    )],
                    contexts: vec![],
                    message: "segment has data element errors".into(),
                });
            }
        }
        let hl04 = seg.element(4);
        if !hl04.is_empty() {
            self.pending_hl = Some(PendingHl {
                id: id.into(),
                has_children: hl04 == b"1",
                position: self.position,
                loop_id: Some(loop_id.to_string()),
            });
        }
    }

    fn business_context(&self) -> Vec<Context> {
        match &self.business_unit {
            Some(v) => vec![Context::BusinessUnit { name: "CLM01".into(), value: v.clone() }],
            None => vec![],
        }
    }

    fn segment_error(
        &self,
        seg: &Segment<'_>,
        code: SegmentCode,
        loop_id: Option<&str>,
        message: &str,
    ) -> SegmentError {
        let id = String::from_utf8_lossy(seg.id());
        SegmentError {
            segment: id.chars().take(3).collect(),
            position: self.position,
            loop_id: loop_id.map(str::to_string),
            code,
            elements: vec![],
            contexts: self.business_context(),
            message: message.to_string(),
        }
    }

    fn push(&mut self, seg: &Segment<'_>, code: SegmentCode, loop_id: Option<&str>, message: &str) {
        let e = self.segment_error(seg, code, loop_id, message);
        self.record(e);
    }

    fn record(&mut self, e: SegmentError) {
        if self.errors.len() < self.options.max_errors_per_set {
            self.errors.push(e);
        } else {
            self.dropped += 1;
        }
    }
}

/// The error for a segment whose qualifier matched no node: an invalid code
/// at the qualifier (HL03, or element 1 or its first component).
fn qualifier_error(spec: &SegmentSpec) -> ElementError {
    let pick = spec.qualifier().map_or(1, |q| q.0 as u8);
    let e = spec.elements.iter().find(|e| e.seq == pick);
    match e.map(|e| &e.kind) {
        Some(ElementKind::Composite(parts)) => element_error(
            spec,
            ElementPosition { element: pick, component: Some(1), repetition: None },
            parts.first(),
            ElementCode::InvalidCode,
            None,
        ),
        _ => element_error(spec, ElementPosition::element(pick), e, ElementCode::InvalidCode, None),
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |a, &b| a * 10 + u64::from(b - b'0')))
}

fn hl_error(spec: &SegmentSpec, element: u8, message: &str) -> ElementError {
    ElementError {
        position: ElementPosition::element(element),
        reference: spec.elements.iter().find(|e| e.seq == element).map(|e| e.reference.to_string()),
        code: ElementCode::PatternMismatch,
        copy: None,
        message: message.to_string(),
    }
}

fn element_error(
    seg: &SegmentSpec,
    position: ElementPosition,
    spec: Option<&ElementSpec>,
    code: ElementCode,
    copy: Option<&[u8]>,
) -> ElementError {
    let label = match position.component {
        Some(c) => format!("{}{:02}-{:02}", seg.id, position.element, c),
        None => format!("{}{:02}", seg.id, position.element),
    };
    let message = match spec {
        Some(s) if !s.name.is_empty() => format!("{label} ({}): {}", s.name, code.description().to_lowercase()),
        _ => format!("{label}: {}", code.description().to_lowercase()),
    };
    ElementError {
        position,
        reference: spec.map(|s| s.reference.to_string()),
        code,
        copy: copy.and_then(ack_copy),
        message,
    }
}

/// The IK404 copy of a bad value: at most 99 characters, and only when it
/// can be carried without breaking the acknowledgement (no control
/// characters; delimiters are stripped by the 999 builder).
fn ack_copy(v: &[u8]) -> Option<Sensitive<String>> {
    if v.is_empty() {
        return None;
    }
    // Printable ASCII only: the 999 itself must stay valid X12.
    let s: String = v.iter().filter(|b| (0x20..0x7F).contains(*b)).take(99).map(|&b| b as char).collect();
    (!s.is_empty()).then(|| Sensitive::new(s))
}

/// Element-level checks of one segment against its guide entry.
fn check_elements(seg: &Segment<'_>, spec: &SegmentSpec, out: &mut Vec<ElementError>) {
    let d = seg.delimiters();
    let present = seg.present_mask();
    let count = seg.element_count();
    for e in &spec.elements {
        let n = usize::from(e.seq);
        if n > count {
            if e.usage == Usage::Required {
                out.push(element_error(
                    spec,
                    ElementPosition::element(e.seq),
                    Some(e),
                    ElementCode::RequiredMissing,
                    None,
                ));
            }
            continue;
        }
        check_element(seg.element(n), seg.flags(n), e, spec, e.seq, d.repetition, d.component, out);
    }
    // Values where the guide defines no element.
    let extra = present & !spec.element_mask();
    if extra != 0 || count >= 64 {
        for n in 1..=count {
            let defined = n < 64 && spec.element_mask() & (1 << n) != 0;
            if !defined && !seg.element(n).is_empty() {
                out.push(element_error(
                    spec,
                    ElementPosition::element(n.min(255) as u8),
                    None,
                    ElementCode::TooMany,
                    None,
                ));
            }
        }
    }
    for rule in &spec.syntax {
        check_syntax(rule.kind, &rule.elements, present, spec, out);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_element(
    value: &[u8],
    flags: ElementFlags,
    e: &ElementSpec,
    seg: &SegmentSpec,
    n: u8,
    rep_sep: Option<u8>,
    comp_sep: u8,
    out: &mut Vec<ElementError>,
) {
    if value.is_empty() {
        if e.usage == Usage::Required {
            out.push(element_error(seg, ElementPosition::element(n), Some(e), ElementCode::RequiredMissing, None));
        }
        return;
    }
    if e.usage == Usage::NotUsed {
        out.push(element_error(seg, ElementPosition::element(n), Some(e), ElementCode::NotUsedPresent, None));
        return;
    }
    let repeats = e.max_repeat > 1;
    let split_repetitions = repeats && flags.repetition;
    let mut reps = 0u32;
    let mut rest = Some(value);
    while let Some(v) = rest {
        let (this, next) = match rep_sep.filter(|_| split_repetitions).and_then(|s| v.iter().position(|&b| b == s)) {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        rest = next;
        reps += 1;
        let repetition = repeats.then_some(reps.min(u32::from(u16::MAX)) as u16);
        if reps > e.max_repeat {
            out.push(element_error(
                seg,
                ElementPosition { element: n, component: None, repetition },
                Some(e),
                ElementCode::TooManyRepetitions,
                None,
            ));
            break;
        }
        match &e.kind {
            ElementKind::Simple { .. } => {
                if flags.component && this.contains(&comp_sep) {
                    out.push(element_error(
                        seg,
                        ElementPosition { element: n, component: None, repetition },
                        Some(e),
                        ElementCode::TooManyComponents,
                        None,
                    ));
                } else if let Some(code) = check_simple(this, e, flags.unprintable) {
                    out.push(element_error(
                        seg,
                        ElementPosition { element: n, component: None, repetition },
                        Some(e),
                        code,
                        Some(this),
                    ));
                }
            }
            ElementKind::Composite(parts) => {
                let mut c = 0usize;
                for comp in this.split(|&b| b == comp_sep) {
                    c += 1;
                    let pos = ElementPosition { element: n, component: Some(c.min(255) as u8), repetition };
                    let Some(p) = parts.iter().find(|p| usize::from(p.seq) == c) else {
                        if !comp.is_empty() {
                            out.push(element_error(seg, pos, Some(e), ElementCode::TooManyComponents, None));
                        }
                        continue;
                    };
                    if comp.is_empty() {
                        if p.usage == Usage::Required {
                            out.push(element_error(seg, pos, Some(p), ElementCode::RequiredMissing, None));
                        }
                    } else if p.usage == Usage::NotUsed {
                        out.push(element_error(seg, pos, Some(p), ElementCode::NotUsedPresent, None));
                    } else if let Some(code) = check_simple(comp, p, flags.unprintable) {
                        out.push(element_error(seg, pos, Some(p), code, Some(comp)));
                    }
                }
                for p in parts.iter().filter(|p| usize::from(p.seq) > c && p.usage == Usage::Required) {
                    out.push(element_error(
                        seg,
                        ElementPosition { element: n, component: Some(p.seq), repetition },
                        Some(p),
                        ElementCode::RequiredMissing,
                        None,
                    ));
                }
            }
        }
    }
}

fn trim_end_spaces(v: &[u8]) -> &[u8] {
    let n = v.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &v[..n]
}

/// Type, length and code checks of one non-empty simple value;
/// `unprintable` says whether the indexer saw a byte outside printable
/// ASCII (if not, the character scan is skipped).
fn check_simple(v: &[u8], e: &ElementSpec, unprintable: bool) -> Option<ElementCode> {
    let ElementKind::Simple { ty, min, max, codes, digits } = &e.kind else {
        return None;
    };
    let len = match ty {
        DataType::N(_) => {
            let d = v.strip_prefix(b"-").unwrap_or(v);
            if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
                return Some(ElementCode::InvalidCharacter);
            }
            d.len()
        }
        DataType::R => {
            let d = v.strip_prefix(b"-").unwrap_or(v);
            let (mut digits, mut dots) = (0usize, 0usize);
            for &b in d {
                if b.is_ascii_digit() {
                    digits += 1;
                } else if b == b'.' {
                    dots += 1;
                } else {
                    return Some(ElementCode::InvalidCharacter);
                }
            }
            if dots > 1 || digits == 0 {
                return Some(ElementCode::InvalidCharacter);
            }
            digits
        }
        DataType::Dt => {
            return (!valid_dt(v, *max)).then_some(ElementCode::InvalidDate);
        }
        DataType::Tm => {
            return (!valid_tm(v)).then_some(ElementCode::InvalidTime);
        }
        DataType::An | DataType::Id => {
            // Trailing spaces after a code are padding, not part of the code.
            let v = if *ty == DataType::Id { trim_end_spaces(v) } else { v };
            if unprintable && !v.iter().all(|&b| (0x20..0x7F).contains(&b)) {
                return Some(ElementCode::InvalidCharacter);
            }
            v.len()
        }
        DataType::B => v.len(),
    };
    if len < usize::from(*min) {
        return Some(ElementCode::TooShort);
    }
    if len > usize::from(*max) {
        return Some(ElementCode::TooLong);
    }
    let v = if *ty == DataType::Id { trim_end_spaces(v) } else { v };
    if *ty == DataType::Id && !codes.contains(v) {
        return Some(ElementCode::InvalidCode);
    }
    if !matches!(codes, Codes::Any) && *ty != DataType::Id && !codes.contains(v) {
        return Some(ElementCode::InvalidCode);
    }
    if let Some(n) = digits
        && (v.len() != usize::from(*n) || !v.iter().all(u8::is_ascii_digit))
    {
        return Some(ElementCode::PatternMismatch);
    }
    None
}

fn check_syntax(kind: u8, elements: &[u8], present: u64, seg: &SegmentSpec, out: &mut Vec<ElementError>) {
    let has = |e: u8| e < 64 && present & (1u64 << e) != 0;
    let spec_of = |e: u8| seg.elements.iter().find(|s| s.seq == e);
    let mut missing = |e: u8, code: ElementCode| {
        out.push(element_error(seg, ElementPosition::element(e), spec_of(e), code, None));
    };
    let Some((&first, rest)) = elements.split_first() else {
        return;
    };
    match kind {
        b'P' if elements.iter().any(|&e| has(e)) => {
            for &e in elements.iter().filter(|&&e| !has(e)) {
                missing(e, ElementCode::ConditionalMissing);
            }
        }
        b'R' if !elements.iter().any(|&e| has(e)) => {
            missing(first, ElementCode::ConditionalMissing);
        }
        b'E' => {
            if let Some(&second) = elements.iter().filter(|&&e| has(e)).nth(1) {
                missing(second, ElementCode::ExclusionViolated);
            }
        }
        b'C' if has(first) => {
            for &e in rest.iter().filter(|&&e| !has(e)) {
                missing(e, ElementCode::ConditionalMissing);
            }
        }
        b'L' => {
            if has(first)
                && !rest.iter().any(|&e| has(e))
                && let Some(&e) = rest.first()
            {
                missing(e, ElementCode::ConditionalMissing);
            }
        }
        _ => {}
    }
}

/// DTP03 must be a real date (D8) or an ordered range of real dates (RD8).
fn check_dtp(seg: &Segment<'_>, spec: &SegmentSpec, out: &mut Vec<ElementError>) {
    let v = seg.element(3);
    if v.is_empty() {
        return;
    }
    let ok = match seg.element(2) {
        b"D8" => valid_dt(v, 8),
        b"RD8" => match v.split(|&b| b == b'-').collect::<Vec<_>>()[..] {
            [a, b] => valid_dt(a, 8) && valid_dt(b, 8) && a <= b,
            _ => false,
        },
        _ => true,
    };
    if !ok {
        let e = spec.elements.iter().find(|e| e.seq == 3);
        out.push(element_error(spec, ElementPosition::element(3), e, ElementCode::InvalidDate, Some(v)));
    }
}

/// The NPI Luhn check (with the 80840 prefix), ten digits.
pub fn valid_npi(npi: &[u8]) -> bool {
    if npi.len() != 10 || !npi.iter().all(u8::is_ascii_digit) {
        return false;
    }
    npi_check_digit(&npi[..9]) == Some(npi[9] - b'0')
}

/// The check digit for the first nine digits of an NPI.
pub fn npi_check_digit(first9: &[u8]) -> Option<u8> {
    if first9.len() != 9 || !first9.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 24 is the Luhn contribution of the 80840 prefix.
    let mut sum = 24u32;
    for (i, &b) in first9.iter().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    Some(((10 - (sum % 10)) % 10) as u8)
}

/// A real Gregorian date between 1900 and 2099.
pub fn valid_date(year: i32, month: u32, day: u32) -> bool {
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

fn digits(s: &[u8]) -> u32 {
    s.iter().fold(0, |a, &b| a * 10 + u32::from(b - b'0'))
}

/// DT: CCYYMMDD, or YYMMDD where the guide allows six characters.
pub fn valid_dt(v: &[u8], max: u16) -> bool {
    if !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match v.len() {
        8 => valid_date(digits(&v[..4]) as i32, digits(&v[4..6]), digits(&v[6..8])),
        6 if max == 6 => valid_date(2000 + digits(&v[..2]) as i32, digits(&v[2..4]), digits(&v[4..6])),
        _ => false,
    }
}

/// TM: HHMM, HHMMSS, HHMMSSD or HHMMSSDD.
pub fn valid_tm(v: &[u8]) -> bool {
    if !matches!(v.len(), 4 | 6 | 7 | 8) || !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    digits(&v[..2]) < 24 && digits(&v[2..4]) < 60 && (v.len() < 6 || digits(&v[4..6]) < 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x12::Delimiters;

    fn run(spec: &Spec, segments: &[&str]) -> Vec<SegmentError> {
        let mut v = SetValidator::new(spec, Options::default());
        for s in segments {
            v.segment(&Segment::new(s.as_bytes(), Delimiters::default()));
        }
        v.finish().0
    }

    fn p837() -> &'static Spec {
        tables().find("837", "005010X222A1").unwrap()
    }

    const CLEAN: &[&str] = &[
        "ST*837*0001*005010X222A1",
        "BHT*0019*00*0123*20240101*1200*CH",
        "NM1*41*2*SUBMITTER*****46*S1",
        "PER*IC*JANE*TE*5555551212",
        "NM1*40*2*RECEIVER*****46*R1",
        "HL*1**20*1",
        "NM1*85*2*BILLING CLINIC*****XX*1234567893",
        "N3*1 MAIN ST",
        "N4*CITY*NY*12345",
        "REF*EI*123456789",
        "HL*2*1*22*0",
        "SBR*P*18*******CI",
        "NM1*IL*1*DOE*JOHN****MI*M1",
        "NM1*PR*2*PAYER*****PI*P1",
        "CLM*PCN1*100***11:B:1*Y*A*Y*Y",
        "HI*ABK:J020",
        "LX*1",
        "SV1*HC:99213*100*UN*1***1",
        "DTP*472*D8*20240101",
        "SE*19*0001",
    ];

    #[test]
    fn clean_claim_has_no_errors() {
        let errors = run(p837(), CLEAN);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn missing_required_segment_is_reported_in_its_loop() {
        let mut segs = CLEAN.to_vec();
        segs.retain(|s| !s.starts_with("N3"));
        let errors = run(p837(), &segs);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].segment, "N3");
        assert_eq!(errors[0].code, SegmentCode::RequiredMissing);
        assert_eq!(errors[0].loop_id.as_deref(), Some("2010AA"));
    }

    #[test]
    fn element_errors_carry_position_reference_and_claim_context() {
        let mut segs = CLEAN.to_vec();
        segs[14] = "CLM*PCN1*1X0***11:B:1*Y*A*Y*Y";
        let errors = run(p837(), &segs);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!((e.segment.as_str(), e.position, e.code), ("CLM", 15, SegmentCode::ElementErrors));
        assert_eq!(e.elements[0].position, ElementPosition::element(2));
        assert_eq!(e.elements[0].reference.as_deref(), Some("782"));
        assert_eq!(e.elements[0].code, ElementCode::InvalidCharacter);
        assert!(!e.elements[0].message.contains("1X0"));
        assert!(matches!(&e.contexts[0], Context::BusinessUnit { value, .. } if value.expose() == "PCN1"));
    }

    #[test]
    fn bad_code_is_found_and_an_npi_check_digit_is_not_syntax() {
        let mut segs = CLEAN.to_vec();
        segs[6] = "NM1*85*2*BILLING CLINIC*****XX*1234567890";
        segs[11] = "SBR*Q*18*******CI";
        let errors = run(p837(), &segs);
        let codes: Vec<_> =
            errors.iter().flat_map(|e| e.elements.iter().map(|x| (e.segment.clone(), x.code))).collect();
        assert!(codes.contains(&("SBR".into(), ElementCode::InvalidCode)), "{codes:?}");
        // NM109 is an identifier of the stated length at SNIP 1-2; its check
        // digit is the claim edit npi.billing (277CA), not a 999 error.
        assert!(!codes.iter().any(|(s, _)| s == "NM1"), "{codes:?}");
    }

    #[test]
    fn replacement_claim_without_ref_f8_is_left_to_the_claim_edits() {
        // The claim edit frequency.payer_claim_number rejects that one
        // claim in the 277CA; the set is not rejected for it.
        let mut segs = CLEAN.to_vec();
        segs[14] = "CLM*PCN1*100***11:B:7*Y*A*Y*Y";
        let errors = run(p837(), &segs);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn unknown_and_misplaced_segments() {
        let mut segs = CLEAN.to_vec();
        segs.insert(3, "NM*41");
        segs.insert(17, "BHT*0019*00*1*20240101*1200*CH");
        let errors = run(p837(), &segs);
        let got: Vec<_> = errors.iter().map(|e| (e.segment.as_str(), e.code)).collect();
        assert!(got.contains(&("NM", SegmentCode::Unrecognized)), "{got:?}");
        assert!(got.contains(&("BHT", SegmentCode::NotInSequence)), "{got:?}");
    }

    #[test]
    fn hl_parent_must_be_the_enclosing_level() {
        let mut segs = CLEAN.to_vec();
        segs[10] = "HL*2*3*22*0";
        let errors = run(p837(), &segs);
        assert!(
            errors.iter().any(|e| e.segment == "HL" && e.elements.iter().any(|x| x.position.element == 2)),
            "{errors:#?}"
        );
    }

    #[test]
    fn npi_check_digit() {
        assert!(valid_npi(b"1234567893"));
        assert!(!valid_npi(b"1234567890"));
        assert!(!valid_npi(b"123456789"));
    }

    #[test]
    fn dates_and_times() {
        assert!(valid_dt(b"20240229", 8));
        assert!(!valid_dt(b"20230229", 8));
        assert!(!valid_dt(b"20241301", 8));
        assert!(valid_dt(b"240101", 6));
        assert!(valid_tm(b"2359"));
        assert!(!valid_tm(b"2460"));
        assert!(valid_tm(b"12000099"));
    }
}
