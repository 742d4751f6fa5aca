//! An X12 file as a person reads it: each segment with its guide name, the
//! loop it sits in (id and name) and its depth in the loop tree; each
//! element with its position (`NM103`, `CLM05-1`) and name; the SNIP 1-2
//! errors the 999 reports (IK3 on the segment, IK4 on the element) pinned
//! where they are; claims numbered in file order.
//!
//! Values are **masked** unless the caller asks to reveal them: what a
//! person may see without a PHI grant is the structure, the codes (ID
//! elements, and any element whose values come from a code list or an
//! external code set), amounts and quantities, and the envelopes' control
//! elements. Free text and identifiers (AN), dates
//! (DT) and binary data are shown as their length only: names, member ids,
//! addresses, dates of birth and claim numbers never leave masked.
//!
//! Pure and bounded: at most `max_segments` segments are described (the
//! rest are counted), each segment is read with the reader's own bound, and
//! a file that cannot be read to its end says where it stopped.

use super::codes::SegmentCode;
use super::reader::{Segment, SegmentReader};
use super::spec::{Codes, DataType, ElementKind, ElementSpec, Spec, tables};
use super::validate::{Options, SegmentError, SetValidator};

/// What to show.
#[derive(Debug, Clone, Copy)]
pub struct ViewOptions {
    /// Show every value in clear (a person with a PHI grant who gave a
    /// reason). Otherwise values that can hold PHI are masked.
    pub reveal: bool,
    /// Most segments described.
    pub max_segments: usize,
    /// Pin the TA1's notes (the interchange checks, run again) on the
    /// envelope segments they are about.
    pub interchange_notes: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions { reveal: false, max_segments: 5_000, interchange_notes: false }
    }
}

/// An element's value as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Clear(String),
    /// Masked: its length in characters only.
    Masked(usize),
}

/// One element (or component) of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewElement {
    /// `NM103`, `CLM05-1`, `ISA13`.
    pub label: String,
    /// The guide's name for it, when known.
    pub name: Option<String>,
    pub value: Shown,
    /// The 999's IK4 for it: `IK403` code and what is wrong (never the value).
    pub error: Option<(String, String)>,
}

/// A segment's error as the 999 reports it (IK3), when not about one of its
/// elements only, or an interchange note as the TA1 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    /// `IK3` or `TA1`.
    pub source: &'static str,
    /// IK304, or TA105.
    pub code: String,
    pub message: String,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSegment {
    /// 1-based position in the file.
    pub index: usize,
    pub id: String,
    /// Position in its transaction set (ST = 1), as IK302 counts.
    pub position: Option<u32>,
    pub loop_id: Option<String>,
    pub loop_name: Option<String>,
    pub name: Option<String>,
    /// 0 interchange envelope, 1 group envelope, 2 set header and trailer,
    /// 3 and more: loops (2000A is 3, its child loops 4, …).
    pub depth: u8,
    pub elements: Vec<ViewElement>,
    pub errors: Vec<ViewError>,
    /// For a CLM: its ordinal among the file's claims (1-based).
    pub claim: Option<usize>,
}

/// A file described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewed {
    pub segments: Vec<ViewSegment>,
    /// Segments in the file (described or not).
    pub total_segments: usize,
    /// Whether segments were left out (over `max_segments`).
    pub truncated: bool,
    /// Why reading stopped before the end (no values in it).
    pub unreadable: Option<String>,
    /// Claims (CLM segments) in the file.
    pub claims: usize,
}

const ISA: &[&str] = &[
    "Authorization Information Qualifier",
    "Authorization Information",
    "Security Information Qualifier",
    "Security Information",
    "Interchange ID Qualifier",
    "Interchange Sender ID",
    "Interchange ID Qualifier",
    "Interchange Receiver ID",
    "Interchange Date",
    "Interchange Time",
    "Repetition Separator",
    "Interchange Control Version Number",
    "Interchange Control Number",
    "Acknowledgment Requested",
    "Interchange Usage Indicator",
    "Component Element Separator",
];
const GS: &[&str] = &[
    "Functional Identifier Code",
    "Application Sender's Code",
    "Application Receiver's Code",
    "Date",
    "Time",
    "Group Control Number",
    "Responsible Agency Code",
    "Version / Release / Industry Identifier Code",
];
const GE: &[&str] = &["Number of Transaction Sets Included", "Group Control Number"];
const IEA: &[&str] = &["Number of Included Functional Groups", "Interchange Control Number"];

/// The envelope segments' names and element names.
fn envelope(id: &[u8]) -> Option<(&'static str, &'static [&'static str], u8)> {
    match id {
        b"ISA" => Some(("Interchange Control Header", ISA, 0)),
        b"IEA" => Some(("Interchange Control Trailer", IEA, 0)),
        b"GS" => Some(("Functional Group Header", GS, 1)),
        b"GE" => Some(("Functional Group Trailer", GE, 1)),
        b"TA1" => Some(("Interchange Acknowledgment", &[], 1)),
        _ => None,
    }
}

/// Data element 116, Postal Code.
const POSTAL_CODE: &str = "116";

/// Whether an element's value is shown in clear without a PHI grant: a
/// code (an ID element, or any element whose values come from a code list
/// or an external code set, such as a place of service), a number or a
/// time.
fn clear_kind(spec: &ElementSpec) -> bool {
    // A postal code is typed as a code (ID) but identifies where a person
    // lives: masked like an address.
    if &*spec.reference == POSTAL_CODE {
        return false;
    }
    match &spec.kind {
        ElementKind::Simple { ty, codes, .. } => {
            matches!(ty, DataType::Id | DataType::N(_) | DataType::R | DataType::Tm) || !matches!(codes, Codes::Any)
        }
        ElementKind::Composite(_) => false,
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn shown(v: &[u8], clear: bool) -> Shown {
    if clear { Shown::Clear(text(v)) } else { Shown::Masked(String::from_utf8_lossy(v).chars().count()) }
}

/// The elements of a segment the guide describes (`specs`; empty: an
/// unknown segment, every value masked unless revealed).
fn elements(seg: &Segment<'_>, specs: &[ElementSpec], structural: bool, reveal: bool) -> Vec<ViewElement> {
    let id = text(seg.id());
    let component = seg.delimiters().component;
    let mut out = Vec::new();
    for n in 1..=seg.element_count() {
        let value = seg.element(n);
        if value.is_empty() {
            continue;
        }
        let spec = specs.iter().find(|e| usize::from(e.seq) == n);
        let label = format!("{id}{n:02}");
        match spec.map(|s| (&s.kind, s)) {
            Some((ElementKind::Composite(parts), s)) => {
                for (c, part) in value.split(|b| *b == component).enumerate() {
                    if part.is_empty() {
                        continue;
                    }
                    let p = parts.iter().find(|p| usize::from(p.seq) == c + 1);
                    let clear = reveal || structural || p.is_some_and(clear_kind);
                    out.push(ViewElement {
                        label: format!("{label}-{}", c + 1),
                        name: Some(p.map_or_else(|| s.name.to_string(), |p| p.name.to_string())),
                        value: shown(part, clear),
                        error: None,
                    });
                }
            }
            Some((ElementKind::Simple { .. }, s)) => out.push(ViewElement {
                label,
                name: Some(s.name.to_string()),
                value: shown(value, reveal || structural || clear_kind(s)),
                error: None,
            }),
            None => out.push(ViewElement { label, name: None, value: shown(value, reveal || structural), error: None }),
        }
    }
    out
}

/// The loop depth of a loop (the set itself is 0).
fn loop_depth(spec: &Spec, mut index: usize) -> u8 {
    let mut depth = 0;
    while index != 0 && depth < 20 {
        index = spec.loops[index].parent;
        depth += 1;
    }
    depth
}

/// Pins `error` (code, message) on the element labelled `label`; a
/// missing element is shown, empty, where it should be.
pub(crate) fn pin_element(seg: &mut ViewSegment, label: String, error: (String, String)) {
    match seg.elements.iter_mut().find(|x| x.label == label) {
        Some(x) => x.error = Some(error),
        None => {
            seg.elements.push(ViewElement { label, name: None, value: Shown::Clear(String::new()), error: Some(error) })
        }
    }
}

/// Pins a set's errors on its segments (`first` is the index in `out` of
/// its ST).
fn pin(out: &mut [ViewSegment], first: usize, errors: Vec<SegmentError>) {
    for e in errors {
        let at = first + e.position.saturating_sub(1) as usize;
        // An error after the last described segment (a required segment
        // that never came) sits on the set's trailer or last segment.
        let at = at.min(out.len().saturating_sub(1));
        let Some(seg) = out.get_mut(at) else { continue };
        let mut about_elements = false;
        for el in &e.elements {
            about_elements = true;
            let label = match el.position.component {
                Some(c) => format!("{}{:02}-{c}", e.segment, el.position.element),
                None => format!("{}{:02}", e.segment, el.position.element),
            };
            pin_element(seg, label, (el.code.code().to_string(), el.message.clone()));
        }
        if !about_elements || e.code != SegmentCode::ElementErrors {
            seg.errors.push(ViewError { source: "IK3", code: e.code.code().to_string(), message: e.message });
        }
    }
}

/// A segment no guide places (an envelope, or one outside any set).
fn outside_sets(index: usize, id: &[u8], name: Option<&str>, depth: u8, elements: Vec<ViewElement>) -> ViewSegment {
    ViewSegment {
        index,
        id: text(id),
        position: None,
        loop_id: None,
        loop_name: None,
        name: name.map(str::to_string),
        depth,
        elements,
        errors: vec![],
        claim: None,
    }
}

struct OpenSet<'s> {
    validator: Option<SetValidator<'s>>,
    first: usize,
    spec: Option<&'s Spec>,
}

/// Describes `payload` (see the module's documentation).
pub fn view(payload: &[u8], options: ViewOptions) -> Viewed {
    let mut out = Viewed::default();
    let mut reader = SegmentReader::new(payload);
    let mut version = String::new();
    let mut set: Option<OpenSet<'static>> = None;
    loop {
        let seg = match reader.next_segment() {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => {
                out.unreadable = Some(e.to_string());
                break;
            }
        };
        out.total_segments += 1;
        let keep = out.segments.len() < options.max_segments;
        out.truncated |= !keep;
        let id = seg.id();
        if id == b"CLM" {
            out.claims += 1;
        }
        if let Some((name, names, depth)) = envelope(id) {
            if id == b"GS" {
                version = text(seg.element(8));
            }
            if keep {
                let mut elements = elements(&seg, &[], true, true);
                for (e, n) in elements.iter_mut().zip(1..) {
                    e.name = names.get(n - 1).map(|s| s.to_string());
                }
                out.segments.push(outside_sets(out.total_segments, id, Some(name), depth, elements));
            }
            continue;
        }
        if id == b"ST" {
            let implementation =
                Some(text(seg.element(3))).filter(|s| !s.is_empty()).unwrap_or_else(|| version.clone());
            let spec = tables().find(seg.str(1), &implementation);
            set = Some(OpenSet {
                validator: spec.map(|s| SetValidator::new(s, Options::default())),
                first: out.segments.len(),
                spec,
            });
        }
        let Some(open) = set.as_mut() else {
            // Outside any set: described as it is.
            if keep {
                let elements = elements(&seg, &[], false, options.reveal);
                out.segments.push(outside_sets(out.total_segments, id, None, 2, elements));
            }
            continue;
        };
        let (mut position, mut placed) = (None, None);
        if let Some(v) = open.validator.as_mut() {
            v.segment(&seg);
            position = Some(v.position());
            placed = v.last_segment();
        }
        if keep {
            let structural = matches!(id, b"ST" | b"SE" | b"HL" | b"LX");
            let (loop_id, loop_name, depth) = match (placed, open.spec) {
                (Some(s), Some(spec)) if s.loop_index != 0 => {
                    let l = &spec.loops[s.loop_index];
                    (Some(l.id.to_string()), Some(l.name.to_string()), 2 + loop_depth(spec, s.loop_index))
                }
                _ => (None, None, 2),
            };
            out.segments.push(ViewSegment {
                index: out.total_segments,
                id: text(id),
                position,
                loop_id,
                loop_name,
                name: placed.map(|s| s.name.to_string()),
                depth,
                elements: elements(&seg, placed.map_or(&[], |s| &s.elements), structural, options.reveal),
                errors: vec![],
                claim: (id == b"CLM").then_some(out.claims),
            });
        }
        if id == b"SE"
            && let Some(open) = set.take()
            && let Some(v) = open.validator
        {
            let (errors, _) = v.finish();
            let end = out.segments.len();
            pin(&mut out.segments[..end], open.first, errors);
        }
    }
    // A set the file never closed: its errors so far.
    if let Some(open) = set.take()
        && let Some(v) = open.validator
    {
        let (errors, _) = v.finish();
        pin(&mut out.segments, open.first, errors);
    }
    if options.interchange_notes {
        pin_interchange_notes(payload, &mut out.segments);
    }
    out
}

/// Pins each interchange's findings (the TA1's note codes) on its envelope
/// segment: the n-th interchange's ISA, and its first GS, GE or IEA for a
/// finding about one of those.
fn pin_interchange_notes(payload: &[u8], segments: &mut [ViewSegment]) {
    let analysis = super::analyze(payload, &super::AnalyzeOptions::default());
    let starts: Vec<usize> = segments.iter().enumerate().filter(|(_, s)| s.id == "ISA").map(|(i, _)| i).collect();
    for (n, ic) in analysis.interchanges.iter().enumerate() {
        let Some(&start) = starts.get(n) else { break };
        let end = starts.get(n + 1).copied().unwrap_or(segments.len());
        for f in &ic.report.findings {
            let at = (start..end).find(|&i| segments[i].id == f.segment).unwrap_or(start);
            let seg = &mut segments[at];
            let code = f.code.code().to_string();
            match f.element {
                Some(e) => {
                    let label = format!("{}{e:02}", seg.id);
                    let error = Some((format!("TA1 {code}"), f.message.clone()));
                    match seg.elements.iter_mut().find(|x| x.label == label) {
                        Some(x) => x.error = error,
                        None => seg.errors.push(ViewError {
                            source: "TA1",
                            code,
                            message: format!("{label}: {}", f.message),
                        }),
                    }
                }
                None => seg.errors.push(ViewError { source: "TA1", code, message: f.message.clone() }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIM: &str = "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*RECEIVER       *240101*1200*^*00501*000000001*0*T*:~\
GS*HC*SUBMITTER*RECEIVER*20240101*1200*1*X*005010X222A1~\
ST*837*0001*005010X222A1~\
BHT*0019*00*REF123*20240101*1200*CH~\
NM1*41*2*SUBMITTER CLINIC*****46*S123~\
PER*IC*CONTACT NAME*TE*5555551234~\
NM1*40*2*RECEIVER PAYER*****46*R456~\
HL*1**20*1~\
NM1*85*2*BILLING PROVIDER*****XX*1234567893~\
N3*123 MAIN ST~\
N4*ANYTOWN*NY*12345~\
REF*EI*123456789~\
HL*2*1*22*0~\
SBR*P*18*******CI~\
NM1*IL*1*DOE*JANE****MI*MEMBER123~\
N3*1 ELM ST~\
N4*ANYTOWN*NY*12345~\
DMG*D8*19800101*F~\
NM1*PR*2*PAYER*****PI*PAYER1~\
CLM*PCN-1*100***11:B:1*Y*A*Y*Y~\
HI*ABK:J020~\
LX*1~\
SV1*HC:99213*100*UN*1***1~\
DTP*472*D8*20240101~\
SE*23*0001~\
GE*1*1~\
IEA*1*000000001~";

    fn element<'a>(v: &'a Viewed, label: &str) -> &'a ViewElement {
        v.segments.iter().flat_map(|s| &s.elements).find(|e| e.label == label).unwrap_or_else(|| panic!("{label}"))
    }

    #[test]
    fn the_ta1s_notes_sit_on_the_envelope() {
        let broken = CLAIM.replace("IEA*1*000000001~", "IEA*1*000000009~");
        let notes = |v: &Viewed| -> Vec<(String, String)> {
            v.segments
                .iter()
                .flat_map(|s| {
                    let id = s.id.clone();
                    s.errors
                        .iter()
                        .filter(|e| e.source == "TA1")
                        .map(move |e| (id.clone(), e.code.clone()))
                        .chain(s.elements.iter().filter_map(|e| {
                            e.error.clone().filter(|(c, _)| c.starts_with("TA1")).map(|(c, _)| (e.label.clone(), c))
                        }))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let v = view(broken.as_bytes(), ViewOptions { interchange_notes: true, ..ViewOptions::default() });
        let found = notes(&v);
        assert!(
            found.iter().any(|(at, code)| at.starts_with("IEA") && code.ends_with("001")),
            "TA105 001 (control numbers differ) on the IEA: {found:?}"
        );
        assert!(notes(&view(broken.as_bytes(), ViewOptions::default())).is_empty(), "only when asked");
        assert!(
            notes(&view(CLAIM.as_bytes(), ViewOptions { interchange_notes: true, ..ViewOptions::default() }))
                .is_empty()
        );
    }

    #[test]
    fn a_claim_is_described_with_its_loops_and_its_phi_masked() {
        let v = view(CLAIM.as_bytes(), ViewOptions::default());
        assert_eq!(v.total_segments, 27);
        assert_eq!(v.segments.len(), 27);
        assert_eq!(v.claims, 1);
        assert!(v.unreadable.is_none() && !v.truncated);
        // Names, member ids, addresses, dates of birth and claim numbers:
        // masked.
        assert_eq!(element(&v, "NM103").value, Shown::Masked("SUBMITTER CLINIC".len()));
        let member = v.segments.iter().find(|s| s.id == "NM1" && s.elements[0].value == Shown::Clear("IL".into()));
        let member = member.unwrap();
        assert_eq!(member.loop_id.as_deref(), Some("2010BA"));
        assert!(member.loop_name.as_deref().unwrap().contains("Subscriber"), "{:?}", member.loop_name);
        assert!(member.elements.iter().any(|e| e.label == "NM109" && e.value == Shown::Masked(9)));
        assert_eq!(element(&v, "DMG02").value, Shown::Masked(8));
        assert_eq!(element(&v, "CLM01").value, Shown::Masked(5));
        assert_eq!(element(&v, "N301").value, Shown::Masked("123 MAIN ST".len()));
        assert_eq!(element(&v, "N403").value, Shown::Masked(5), "a postal code is typed as a code but masked");
        assert_eq!(element(&v, "N402").value, Shown::Clear("NY".into()));
        // Codes, amounts and envelopes: clear.
        assert_eq!(element(&v, "CLM02").value, Shown::Clear("100".into()));
        assert_eq!(element(&v, "CLM05-1").value, Shown::Clear("11".into()));
        assert_eq!(element(&v, "ISA13").value, Shown::Clear("000000001".into()));
        assert_eq!(element(&v, "ST02").value, Shown::Clear("0001".into()));
        let clm = v.segments.iter().find(|s| s.id == "CLM").unwrap();
        assert_eq!((clm.loop_id.as_deref(), clm.claim, clm.position), (Some("2300"), Some(1), Some(18)));
        assert!(clm.name.as_deref().unwrap().contains("Claim"));
        assert!(clm.depth > member.depth - 1);
        // Nothing in the masked view is a PHI value.
        let all = format!("{v:?}");
        for phi in ["DOE", "JANE", "MEMBER123", "19800101", "1 ELM ST", "PCN-1"] {
            assert!(!all.contains(phi), "{phi} shown");
        }
        // Revealed: every value.
        let r = view(CLAIM.as_bytes(), ViewOptions { reveal: true, ..ViewOptions::default() });
        assert_eq!(element(&r, "DMG02").value, Shown::Clear("19800101".into()));
        assert_eq!(element(&r, "CLM01").value, Shown::Clear("PCN-1".into()));
    }

    #[test]
    fn the_999s_errors_sit_on_their_segment_and_element() {
        // DMG03 (gender) with a code not in its list, and SE01 miscounted.
        let bad = CLAIM.replace("DMG*D8*19800101*F~", "DMG*D8*19800101*Q~").replace("SE*23*0001", "SE*99*0001");
        let v = view(bad.as_bytes(), ViewOptions::default());
        let dmg = v.segments.iter().find(|s| s.id == "DMG").unwrap();
        let e = dmg.elements.iter().find(|e| e.label == "DMG03").unwrap();
        let (code, message) = e.error.clone().expect("IK4 on DMG03");
        assert_eq!(code, "7", "IK403 7: invalid code value");
        assert!(!message.contains('Q'), "never the value: {message}");
        assert!(dmg.errors.is_empty(), "an element error only: {:?}", dmg.errors);
        assert!(v.segments.iter().all(|s| s.id == "DMG" || s.elements.iter().all(|e| e.error.is_none())));
    }

    #[test]
    fn a_long_file_is_cut_and_counted_and_a_broken_one_says_so() {
        let v = view(CLAIM.as_bytes(), ViewOptions { reveal: false, max_segments: 5, interchange_notes: false });
        assert_eq!((v.segments.len(), v.total_segments, v.truncated), (5, 27, true));
        let broken = view(b"ISA*00*short~", ViewOptions::default());
        assert!(broken.unreadable.is_some(), "{broken:?}");
        assert!(view(b"", ViewOptions::default()).segments.is_empty());
    }
}
