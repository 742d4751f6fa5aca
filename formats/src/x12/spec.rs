//! Implementation-guide tables: the loop/segment/element structure of each
//! supported 005010 transaction, loaded from the `.ig` files in `formats/ig/`
//! (format described in `scripts/gen-ig-tables.py`).
//!
//! Tables are parsed once, on first use, into an index-based tree with
//! per-loop lookup tables so that the validator resolves a segment to its
//! node with a binary search instead of a scan.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Packs a segment id (2-3 bytes) into an integer key.
pub fn seg_key(id: &[u8]) -> u32 {
    if id.is_empty() || id.len() > 3 {
        return u32::MAX;
    }
    id.iter().fold(0u32, |k, &b| (k << 8) | u32::from(b))
}

/// R / S / N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Required,
    Situational,
    NotUsed,
}

/// X12 simple data element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// AN: string.
    An,
    /// ID: identifier from a code list.
    Id,
    /// Nn: integer with n implied decimals.
    N(u8),
    /// R: decimal number.
    R,
    /// DT: date, CCYYMMDD (or YYMMDD when max length is 6).
    Dt,
    /// TM: time, HHMM[SS[d..]].
    Tm,
    /// B: binary.
    B,
}

/// Allowed values of an ID element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codes {
    Any,
    /// Values from the guide.
    List(CodeList),
    /// A named external code set from `codes.ig`.
    External(usize),
}

/// A set of code values: those of up to eight bytes packed into integers
/// (a binary search over `u64`s, no string comparisons), longer ones kept
/// as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeList {
    packed: Vec<u64>,
    long: Vec<Box<str>>,
}

/// Packs up to eight bytes (length-tagged so `"1"` and `"01"` differ).
#[inline]
fn pack(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 7 {
        return None;
    }
    Some(v.iter().fold(v.len() as u64, |k, &b| (k << 8) | u64::from(b)))
}

impl CodeList {
    pub fn new(codes: impl IntoIterator<Item = String>) -> Self {
        let mut l = CodeList::default();
        for c in codes {
            match pack(c.as_bytes()) {
                Some(p) => l.packed.push(p),
                None => l.long.push(c.into()),
            }
        }
        l.packed.sort_unstable();
        l.packed.dedup();
        l.long.sort_unstable();
        l
    }

    #[inline]
    pub fn contains(&self, value: &[u8]) -> bool {
        match pack(value) {
            Some(p) => self.packed.binary_search(&p).is_ok(),
            None => self.long.iter().any(|c| c.as_bytes() == value),
        }
    }
}

impl Codes {
    #[inline]
    pub fn contains(&self, value: &[u8]) -> bool {
        match self {
            Codes::Any => true,
            Codes::List(list) => list.contains(value),
            Codes::External(i) => tables().codesets.get(*i).is_some_and(|set| set.contains(value)),
        }
    }
}

/// One element (or component) of a segment in the guide.
#[derive(Debug, Clone)]
pub struct ElementSpec {
    /// 1-based position in the segment (or composite).
    pub seq: u8,
    /// Data element reference number (`98`, `C023`).
    pub reference: Box<str>,
    pub usage: Usage,
    pub max_repeat: u32,
    pub name: Box<str>,
    pub kind: ElementKind,
}

#[derive(Debug, Clone)]
pub enum ElementKind {
    Simple {
        ty: DataType,
        min: u16,
        max: u16,
        codes: Codes,
        /// `[0-9]{n}`-style digit pattern from the guide.
        digits: Option<u16>,
    },
    Composite(Vec<ElementSpec>),
}

/// X12 relational condition between elements of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax {
    /// P paired, R required, E exclusion, C conditional, L list conditional.
    pub kind: u8,
    pub elements: Vec<u8>,
}

/// A segment node of the guide.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub id: Box<str>,
    pub key: u32,
    pub usage: Usage,
    pub max_use: u32,
    pub name: Box<str>,
    pub syntax: Vec<Syntax>,
    pub elements: Vec<ElementSpec>,
    /// The loop this segment belongs to (index into `Spec::loops`).
    pub loop_index: usize,
    /// Index into `elements` of the qualifier element, computed at load.
    qualifier_index: Option<usize>,
    /// Bit n set for each element position the guide defines.
    element_mask: u64,
}

impl SegmentSpec {
    /// Bit n set for each element position the guide defines.
    #[inline]
    pub fn element_mask(&self) -> u64 {
        self.element_mask
    }

    fn find_qualifier(&self) -> Option<usize> {
        let pick = if &*self.id == "HL" { 3 } else { 1 };
        let i = self.elements.iter().position(|e| usize::from(e.seq) == pick)?;
        let e = &self.elements[i];
        let simple = match &e.kind {
            ElementKind::Composite(c) => c.first()?,
            ElementKind::Simple { .. } => e,
        };
        let listed = matches!(&simple.kind, ElementKind::Simple { codes: Codes::List(_), .. });
        (listed && e.usage == Usage::Required && simple.usage == Usage::Required).then_some(i)
    }

    /// The element used to tell same-id siblings apart, and its codes:
    /// HL03 for HL, otherwise element 1 (or its first component) when it is
    /// a required element with a code list.
    /// Whether the qualifier is the first component of a composite.
    #[inline]
    pub(crate) fn qualifier_is_composite(&self) -> bool {
        self.qualifier_index
            .and_then(|i| self.elements.get(i))
            .is_some_and(|e| matches!(e.kind, ElementKind::Composite(_)))
    }

    #[inline]
    pub(crate) fn qualifier(&self) -> Option<(usize, &Codes)> {
        let e = self.elements.get(self.qualifier_index?)?;
        let pick = usize::from(e.seq);
        let simple = match &e.kind {
            ElementKind::Composite(c) => c.first()?,
            ElementKind::Simple { .. } => e,
        };
        match &simple.kind {
            ElementKind::Simple { codes: codes @ Codes::List(_), .. }
                if e.usage == Usage::Required && simple.usage == Usage::Required =>
            {
                Some((pick, codes))
            }
            _ => None,
        }
    }
}

/// A child slot of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Segment(usize),
    Loop(usize),
}

/// A loop node (index 0 is the transaction set itself).
#[derive(Debug, Clone)]
pub struct LoopSpec {
    pub id: Box<str>,
    pub name: Box<str>,
    pub usage: Usage,
    pub max_repeat: u32,
    pub parent: usize,
    pub children: Vec<Child>,
    /// Ordering rank of each child: consecutive siblings led by the same
    /// segment id share a rank and may appear in any order among themselves
    /// (they share one position in the base standard).
    pub ranks: Vec<u16>,
    /// Segment key -> child slots led by that segment, in order.
    pub(crate) index: Vec<(u32, Vec<u16>)>,
    /// Child slots with usage R, checked when an iteration closes.
    pub(crate) required: Vec<u16>,
}

impl LoopSpec {
    pub(crate) fn candidates(&self, key: u32) -> &[u16] {
        match self.index.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => &self.index[i].1,
            Err(_) => &[],
        }
    }
}

/// One transaction set implementation guide.
#[derive(Debug)]
pub struct Spec {
    /// ST01 (`837`).
    pub transaction: Box<str>,
    /// ST03/GS08 values this table validates (`005010X222A1`, ...).
    pub implementations: Vec<Box<str>>,
    /// GS01 functional identifier (`HC`).
    pub functional_id: Box<str>,
    pub name: Box<str>,
    pub loops: Vec<LoopSpec>,
    pub segments: Vec<SegmentSpec>,
}

impl Spec {
    /// The segment that leads child `c`.
    pub(crate) fn lead(&self, c: Child) -> &SegmentSpec {
        match c {
            Child::Segment(s) => &self.segments[s],
            Child::Loop(l) => match self.loops[l].children.first() {
                Some(&Child::Segment(s)) => &self.segments[s],
                // Tables are checked at load: every loop starts with a segment.
                _ => &self.segments[0],
            },
        }
    }

    /// True when the guide uses this segment id anywhere.
    pub fn has_segment(&self, key: u32) -> bool {
        self.segments.iter().any(|s| s.key == key)
    }
}

/// All loaded tables.
#[derive(Debug)]
pub struct Tables {
    pub specs: Vec<Spec>,
    codesets: Vec<CodeList>,
    /// Every segment id any guide uses.
    known_segments: Vec<u32>,
}

impl Tables {
    /// The guide for a transaction set, by ST01 and ST03 (or GS08).
    pub fn find(&self, st01: &str, implementation: &str) -> Option<&Spec> {
        self.specs.iter().find(|s| &*s.transaction == st01 && s.implementations.iter().any(|i| &**i == implementation))
    }

    pub fn is_known_segment(&self, key: u32) -> bool {
        self.known_segments.binary_search(&key).is_ok()
    }
}

const DATAELE: &str = include_str!("../../ig/dataele.ig");
const CODES: &str = include_str!("../../ig/codes.ig");
const GUIDES: &[(&str, &str)] = &[
    ("837p.ig", include_str!("../../ig/837p.ig")),
    ("837i.ig", include_str!("../../ig/837i.ig")),
    ("834.ig", include_str!("../../ig/834.ig")),
    ("835.ig", include_str!("../../ig/835.ig")),
    ("277.ig", include_str!("../../ig/277.ig")),
    ("277ca.ig", include_str!("../../ig/277ca.ig")),
    ("999.ig", include_str!("../../ig/999.ig")),
    ("270.ig", include_str!("../../ig/270.ig")),
    ("271.ig", include_str!("../../ig/271.ig")),
    ("276.ig", include_str!("../../ig/276.ig")),
    ("837d.ig", include_str!("../../ig/837d.ig")),
];

/// The tables, parsed on first use.
pub fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| match load(GUIDES) {
        Ok(t) => t,
        // The tables are compiled in and tested; a broken table is a build
        // defect, never an input problem.
        Err(e) => panic!("built-in implementation-guide table is invalid: {e}"),
    })
}

/// A problem in a table file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TableError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

type DataElements = HashMap<String, (DataType, u16, u16)>;
type CodeSets = (HashMap<String, usize>, Vec<CodeList>);

/// Parses a set of guide tables (with the built-in dictionary and code sets).
pub fn load(guides: &[(&str, &str)]) -> Result<Tables, TableError> {
    let dataele = parse_dataele(DATAELE)?;
    let (codeset_names, codesets) = parse_codes(CODES)?;
    let mut specs = Vec::new();
    for (file, text) in guides {
        specs.push(parse_guide(file, text, &dataele, &codeset_names)?);
    }
    let mut known: Vec<u32> = specs.iter().flat_map(|s| s.segments.iter().map(|g| g.key)).collect();
    known.sort_unstable();
    known.dedup();
    Ok(Tables { specs, codesets, known_segments: known })
}

fn err(file: &str, line: usize, message: impl Into<String>) -> TableError {
    TableError { file: file.to_string(), line, message: message.into() }
}

/// Splits a table line into tokens; a trailing `"..."` is one token.
fn tokens(line: &str) -> (Vec<&str>, &str) {
    let (head, name) = match line.find('"') {
        Some(i) => (&line[..i], line[i + 1..].trim_end().trim_end_matches('"')),
        None => (line, ""),
    };
    (head.split_whitespace().collect(), name)
}

fn parse_dataele(text: &str) -> Result<DataElements, TableError> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (t, _) = tokens(line);
        let [_, num, ty, min, max] = t[..] else {
            return Err(err("dataele.ig", n + 1, "expected D <num> <type> <min> <max>"));
        };
        let ty = parse_type(ty).ok_or_else(|| err("dataele.ig", n + 1, "unknown data type"))?;
        let min = min.parse().map_err(|_| err("dataele.ig", n + 1, "bad min"))?;
        let max = max.parse().map_err(|_| err("dataele.ig", n + 1, "bad max"))?;
        map.insert(num.to_string(), (ty, min, max));
    }
    Ok(map)
}

fn parse_type(s: &str) -> Option<DataType> {
    Some(match s {
        "AN" => DataType::An,
        "ID" => DataType::Id,
        "R" => DataType::R,
        "DT" => DataType::Dt,
        "TM" => DataType::Tm,
        "B" => DataType::B,
        "N" => DataType::N(0),
        _ if s.len() == 2 && s.starts_with('N') => DataType::N(s[1..].parse().ok()?),
        _ => return None,
    })
}

fn parse_codes(text: &str) -> Result<CodeSets, TableError> {
    let mut names = HashMap::new();
    let mut sets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        if it.next() != Some("K") {
            return Err(err("codes.ig", n + 1, "expected K <name> <codes...>"));
        }
        let name = it.next().ok_or_else(|| err("codes.ig", n + 1, "missing name"))?;
        names.insert(name.to_string(), sets.len());
        sets.push(CodeList::new(it.map(str::to_string)));
    }
    Ok((names, sets))
}

fn parse_usage(s: &str) -> Option<Usage> {
    match s {
        "R" => Some(Usage::Required),
        "S" => Some(Usage::Situational),
        "N" => Some(Usage::NotUsed),
        _ => None,
    }
}

fn parse_max(s: &str) -> Option<u32> {
    if s.starts_with('>') { Some(u32::MAX) } else { s.parse().ok() }
}

struct GuideParser<'a> {
    file: &'a str,
    dataele: &'a DataElements,
    codesets: &'a HashMap<String, usize>,
}

fn parse_guide(
    file: &str,
    text: &str,
    dataele: &DataElements,
    codesets: &HashMap<String, usize>,
) -> Result<Spec, TableError> {
    let p = GuideParser { file, dataele, codesets };
    let mut spec = Spec {
        transaction: "".into(),
        implementations: vec![],
        functional_id: "".into(),
        name: "".into(),
        loops: vec![LoopSpec {
            id: "".into(),
            name: "".into(),
            usage: Usage::Required,
            max_repeat: 1,
            parent: 0,
            children: vec![],
            ranks: vec![],
            index: vec![],
            required: vec![],
        }],
        segments: vec![],
    };
    // Stack of (indent, what): what = loop index or segment index / composite.
    enum Open {
        Loop(usize),
        Segment(usize),
        Composite(usize, usize),
    }
    let mut stack: Vec<(usize, Open)> = vec![];
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let (t, name) = tokens(raw.trim_start());
        let Some(&kind) = t.first() else { continue };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        match kind {
            "TX" => {
                let [_, st01, impls, gs01] = t[..] else {
                    return Err(err(file, line_no, "expected TX <st01> <impls> <gs01>"));
                };
                spec.transaction = st01.into();
                spec.implementations = impls.split(',').map(Into::into).collect();
                spec.functional_id = gs01.into();
                spec.name = name.into();
            }
            "L" => {
                let [_, id, usage, max] = t[..] else {
                    return Err(err(file, line_no, "expected L <id> <usage> <max>"));
                };
                let parent = match stack.last() {
                    Some((_, Open::Loop(l))) => *l,
                    None => 0,
                    _ => return Err(err(file, line_no, "loop inside a segment")),
                };
                let idx = spec.loops.len();
                spec.loops.push(LoopSpec {
                    id: id.into(),
                    name: name.into(),
                    usage: parse_usage(usage).ok_or_else(|| err(file, line_no, "bad usage"))?,
                    max_repeat: parse_max(max).ok_or_else(|| err(file, line_no, "bad repeat"))?,
                    parent,
                    children: vec![],
                    ranks: vec![],
                    index: vec![],
                    required: vec![],
                });
                spec.loops[parent].children.push(Child::Loop(idx));
                stack.push((indent, Open::Loop(idx)));
            }
            "S" => {
                let [_, id, usage, max] = t[..] else {
                    return Err(err(file, line_no, "expected S <id> <usage> <max>"));
                };
                let owner = match stack.last() {
                    Some((_, Open::Loop(l))) => *l,
                    None => 0,
                    _ => return Err(err(file, line_no, "segment inside a segment")),
                };
                let idx = spec.segments.len();
                spec.segments.push(SegmentSpec {
                    id: id.into(),
                    key: seg_key(id.as_bytes()),
                    usage: parse_usage(usage).ok_or_else(|| err(file, line_no, "bad usage"))?,
                    max_use: parse_max(max).ok_or_else(|| err(file, line_no, "bad max use"))?,
                    name: name.into(),
                    syntax: vec![],
                    elements: vec![],
                    loop_index: owner,
                    qualifier_index: None,
                    element_mask: 0,
                });
                spec.loops[owner].children.push(Child::Segment(idx));
                stack.push((indent, Open::Segment(idx)));
            }
            "Y" => {
                let Some((_, Open::Segment(s))) = stack.last() else {
                    return Err(err(file, line_no, "syntax rule outside a segment"));
                };
                let rule = t.get(1).copied().unwrap_or("");
                spec.segments[*s].syntax.push(parse_syntax(rule).ok_or_else(|| err(file, line_no, "bad syntax rule"))?);
            }
            "E" | "C" => {
                let element = p.element(&t, name, line_no)?;
                let is_composite = kind == "C";
                match stack.last() {
                    Some((_, Open::Segment(s))) => {
                        let s = *s;
                        spec.segments[s].elements.push(element);
                        if is_composite {
                            let ci = spec.segments[s].elements.len() - 1;
                            stack.push((indent, Open::Composite(s, ci)));
                        }
                    }
                    Some((_, Open::Composite(s, ci))) if !is_composite => {
                        if let ElementKind::Composite(parts) = &mut spec.segments[*s].elements[*ci].kind {
                            parts.push(element);
                        }
                    }
                    _ => return Err(err(file, line_no, "element outside a segment")),
                }
            }
            _ => return Err(err(file, line_no, "unknown line kind")),
        }
    }
    finish(file, &mut spec)?;
    Ok(spec)
}

impl GuideParser<'_> {
    fn element(&self, t: &[&str], name: &str, line: usize) -> Result<ElementSpec, TableError> {
        let file = self.file;
        let (Some(seq), Some(reference), Some(usage), Some(rep)) = (t.get(1), t.get(2), t.get(3), t.get(4)) else {
            return Err(err(file, line, "expected E|C <seq> <ref> <usage> <repeat>"));
        };
        let seq: u8 = seq.parse().map_err(|_| err(file, line, "bad seq"))?;
        let usage = parse_usage(usage).ok_or_else(|| err(file, line, "bad usage"))?;
        let max_repeat = parse_max(rep).ok_or_else(|| err(file, line, "bad repeat"))?;
        let kind = if t[0] == "C" {
            ElementKind::Composite(vec![])
        } else {
            let &(ty, min, max) = self
                .dataele
                .get(*reference)
                .ok_or_else(|| err(file, line, format!("unknown data element {reference}")))?;
            let mut codes = Codes::Any;
            let mut digits = None;
            for extra in &t[5..] {
                if let Some(list) = extra.strip_prefix('=') {
                    // A space inside a code is written %20 in the tables.
                    codes = Codes::List(CodeList::new(
                        list.split(',').filter(|c| !c.is_empty()).map(|c| c.replace("%20", " ")),
                    ));
                } else if let Some(set) = extra.strip_prefix('@') {
                    // Unknown external sets (e.g. code lists we do not ship)
                    // leave the element unchecked rather than rejecting all.
                    if let Some(&i) = self.codesets.get(set) {
                        codes = Codes::External(i);
                    }
                } else if let Some(re) = extra.strip_prefix('~') {
                    digits = re.strip_prefix("[0-9]{").and_then(|r| r.strip_suffix('}')).and_then(|n| n.parse().ok());
                }
            }
            ElementKind::Simple { ty, min, max, codes, digits }
        };
        Ok(ElementSpec { seq, reference: (*reference).into(), usage, max_repeat, name: name.into(), kind })
    }
}

fn parse_syntax(rule: &str) -> Option<Syntax> {
    let (&kind, digits) = rule.as_bytes().split_first()?;
    if !b"PRECL".contains(&kind) || digits.len() < 4 || digits.len() % 2 != 0 {
        return None;
    }
    let elements = digits.chunks(2).map(|c| std::str::from_utf8(c).ok()?.parse().ok()).collect::<Option<Vec<u8>>>()?;
    Some(Syntax { kind, elements })
}

/// Computes ranks and lookup indexes; checks every loop starts with a segment.
fn finish(file: &str, spec: &mut Spec) -> Result<(), TableError> {
    if spec.transaction.is_empty() {
        return Err(err(file, 0, "missing TX line"));
    }
    for seg in &mut spec.segments {
        seg.qualifier_index = seg.find_qualifier();
        seg.elements.sort_by_key(|e| e.seq);
        seg.element_mask = seg.elements.iter().filter(|e| e.seq < 64).fold(0, |m, e| m | (1u64 << e.seq));
        seg.qualifier_index = seg.find_qualifier();
    }
    for l in 0..spec.loops.len() {
        let children = spec.loops[l].children.clone();
        let required: Vec<u16> = children
            .iter()
            .enumerate()
            .filter(|(_, c)| match c {
                Child::Segment(s) => spec.segments[*s].usage == Usage::Required,
                Child::Loop(x) => spec.loops[*x].usage == Usage::Required,
            })
            .map(|(i, _)| i as u16)
            .collect();
        spec.loops[l].required = required;
        if l > 0 && !matches!(children.first(), Some(Child::Segment(_))) {
            return Err(err(file, 0, format!("loop {} does not start with a segment", spec.loops[l].id)));
        }
        let mut ranks = Vec::with_capacity(children.len());
        let mut index: Vec<(u32, Vec<u16>)> = Vec::new();
        let mut rank = 0u16;
        let mut prev_key = None;
        for (i, &c) in children.iter().enumerate() {
            let key = spec.lead(c).key;
            if prev_key.is_some_and(|k| k != key) {
                rank += 1;
            }
            prev_key = Some(key);
            ranks.push(rank);
            match index.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i as u16),
                None => index.push((key, vec![i as u16])),
            }
        }
        index.sort_by_key(|(k, _)| *k);
        spec.loops[l].ranks = ranks;
        spec.loops[l].index = index;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_tables_load() {
        let t = tables();
        let p = t.find("837", "005010X222A1").expect("837P");
        assert_eq!(&*p.functional_id, "HC");
        assert!(t.find("837", "005010X223A3").is_some());
        assert!(t.find("834", "005010X220A1").is_some());
        assert!(t.find("837", "004010X098A1").is_none());
        // 2010AA NM1 is qualified by NM101 = 85.
        let nm1 = p.segments.iter().find(|s| &*s.id == "NM1" && &*p.loops[s.loop_index].id == "2010AA").unwrap();
        let (pos, codes) = nm1.qualifier().unwrap();
        assert_eq!(pos, 1);
        assert!(codes.contains(b"85"));
        assert!(!codes.contains(b"87"));
        assert!(t.is_known_segment(seg_key(b"CLM")));
        assert!(!t.is_known_segment(seg_key(b"NM")));
    }

    #[test]
    fn every_guide_table_loads() {
        // `load` reports the file and line of a malformed table; `tables()`
        // would only panic.
        let t = load(GUIDES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.specs.len(), GUIDES.len());
        assert_eq!(tables().specs.len(), GUIDES.len());
        for (st01, implementation) in [
            ("270", "005010X279A1"),
            ("271", "005010X279A1"),
            ("276", "005010X212"),
            ("837", "005010X224A2"),
            ("837", "005010X224A3"),
        ] {
            let spec = t.find(st01, implementation);
            assert!(spec.is_some(), "{st01} {implementation}");
        }
    }

    #[test]
    fn same_id_siblings_share_a_rank() {
        let p = tables().find("837", "005010X222A1").unwrap();
        let l2300 = p.loops.iter().find(|l| &*l.id == "2300").unwrap();
        let dtp_ranks: Vec<u16> = l2300
            .children
            .iter()
            .zip(&l2300.ranks)
            .filter(|(c, _)| &*p.lead(**c).id == "DTP")
            .map(|(_, r)| *r)
            .collect();
        assert!(dtp_ranks.len() > 5);
        assert!(dtp_ranks.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn syntax_rules_parse() {
        assert_eq!(parse_syntax("P0809"), Some(Syntax { kind: b'P', elements: vec![8, 9] }));
        assert_eq!(parse_syntax("L010203").map(|s| s.elements), Some(vec![1, 2, 3]));
        assert_eq!(parse_syntax("X01"), None);
    }

    #[test]
    fn malformed_table_is_reported_with_its_line() {
        let e = load(&[("bad.ig", "TX 837 X HC \"x\"\nS NM1 Q 1 \"x\"\n")]).unwrap_err();
        assert_eq!(e.line, 2);
    }
}
