//! The clearinghouse round trip in X12, pure: taking each claim's own
//! segments out of a submitter's 837, re-enveloping claims of many
//! submitters as one 837 for a payer, reading what the payer sends back
//! (TA1, 999, 277CA, 835) and re-expressing a payer's 277CA for one
//! submitter.
//!
//! Fragments and everything built from them use one fixed set of
//! delimiters ([`OUT`]): `*` elements, `:` components, `^` repetitions,
//! `~` segments. A submitter whose data holds one of those characters (it
//! used other delimiters) cannot be re-delimited without changing its
//! data; such a claim gets no fragment and the caller says so.

use super::build::{Envelope, Writer, ccyymmdd, hhmm};
use super::isa::Delimiters;
use super::reader::{Segment, SegmentReader};
use rust_decimal::Decimal;
use std::collections::HashMap;
use time::PrimitiveDateTime;

/// The delimiters of everything this module writes.
pub const OUT: Delimiters = Delimiters { element: b'*', component: b':', repetition: Some(b'^'), segment: b'~' };

/// Most claims in one outbound transaction set (the TR3's recommended
/// limit on CLM segments per ST/SE).
pub const MAX_CLAIMS_PER_SET: usize = 5000;

/// One claim's segments, in [`OUT`] delimiters, each segment ending `~`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimFragment {
    /// ST03 of the 837 it came from (`005010X222A1`, …).
    pub implementation: String,
    /// BHT06: `CH` (chargeable) or `RP` (reporting).
    pub bht06: String,
    /// Loop 2000A without its HL: PRV, CUR, 2010AA, 2010AB, 2010AC.
    pub billing: String,
    /// Loop 2000B without its HL: SBR, PAT, 2010BA, 2010BB.
    pub subscriber: String,
    /// Loop 2000C without its HL (PAT, 2010CA), when the patient is not
    /// the subscriber.
    pub patient: Option<String>,
    /// Loop 2300 and its 2400 lines.
    pub claim: String,
}

impl ClaimFragment {
    /// Bytes this claim adds to a batch (HL segments aside).
    pub fn len(&self) -> usize {
        self.billing.len() + self.subscriber.len() + self.patient.as_ref().map_or(0, String::len) + self.claim.len()
    }

    pub fn is_empty(&self) -> bool {
        self.claim.is_empty()
    }

    /// The billing provider's identifier (2010AA NM109: the NPI).
    pub fn billing_id(&self) -> &str {
        self.billing
            .split_terminator('~')
            .find(|s| s.starts_with("NM1*85*"))
            .and_then(|s| s.split('*').nth(9))
            .unwrap_or_default()
    }
}

/// What tells one claim of a batch from another in the payer's answers
/// when the payer does not return our REF*D9: the patient control number,
/// the billing provider's identifier and the total charge (277CA 2200D
/// TRN02, 2100C NM109, STC04). Two claims alike in all three never share
/// a batch.
pub fn correlation_key(patient_control_number: &str, billing_id: &str, charge: &str) -> String {
    let charge =
        charge.trim().parse::<Decimal>().map_or_else(|_| charge.trim().to_string(), |d| d.normalize().to_string());
    format!("{}|{}|{charge}", patient_control_number.trim(), billing_id.trim())
}

/// Who sent an 837 and how to answer them: what a forwarded 277CA needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmitterInfo {
    /// ISA05/ISA06 and GS02 of the submitter's interchange.
    pub isa_qualifier: String,
    pub isa_id: String,
    pub gs_id: String,
    /// ISA07/ISA08 and GS03 the submitter addressed (us).
    pub our_isa_qualifier: String,
    pub our_isa_id: String,
    pub our_gs_id: String,
    pub usage: String,
    /// 1000A NM103 and NM109.
    pub name: String,
    pub id: String,
    /// BHT03 of the submitter's transaction set.
    pub bht03: String,
}

/// The claims of one 837 transaction set, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFragments {
    /// Interchange, group and set index in the input (0-based), as the
    /// analyzer numbers them.
    pub interchange: usize,
    pub group: usize,
    pub set: usize,
    pub submitter: SubmitterInfo,
    /// One entry per CLM, `None` for a claim whose data cannot be
    /// re-delimited.
    pub claims: Vec<Option<ClaimFragment>>,
}

/// Re-delimits one segment into `out` in [`OUT`] delimiters; false when
/// its data holds one of them.
fn push_segment(seg: &Segment<'_>, out: &mut String) -> bool {
    let mut bytes = Vec::with_capacity(seg.raw().len() + 1);
    if !redelimit(seg, &mut bytes) {
        return false;
    }
    // Every byte is printable ASCII.
    out.push_str(std::str::from_utf8(&bytes).unwrap_or_default());
    true
}

/// Appends `seg` to `out` in [`OUT`] delimiters; `false` (and nothing
/// appended) when its data holds one of them or a byte that is not
/// printable ASCII.
fn redelimit(seg: &Segment<'_>, out: &mut Vec<u8>) -> bool {
    let d = seg.delimiters();
    let start = out.len();
    for &b in seg.raw() {
        let mapped = if b == d.element {
            OUT.element
        } else if b == d.component {
            OUT.component
        } else if Some(b) == d.repetition {
            b'^'
        } else if OUT.is_delimiter(b) || !(0x20..0x7F).contains(&b) {
            out.truncate(start);
            return false;
        } else {
            b
        };
        out.push(mapped);
    }
    out.push(OUT.segment);
    true
}

fn text(seg: &Segment<'_>, n: usize) -> String {
    String::from_utf8_lossy(seg.element(n)).trim().to_string()
}

/// Where the extractor is within an 837.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Header,
    Billing,
    Subscriber,
    Patient,
    Claim,
}

/// Takes every claim of every 837 set in `payload` out with its provider,
/// subscriber and patient loops. Reads the same envelopes the analyzer
/// does; a set cut short by the end of the input keeps the claims it
/// completed.
pub fn claim_fragments(payload: &[u8]) -> Vec<SetFragments> {
    let mut out = Vec::new();
    let mut reader = SegmentReader::new(payload);
    let (mut ic, mut group, mut set) = (None::<usize>, 0usize, 0usize);
    let mut info = SubmitterInfo::default();
    let mut current: Option<SetFragments> = None;
    let (mut implementation, mut bht06) = (String::new(), String::new());
    let mut at = At::Header;
    let (mut billing, mut subscriber, mut patient, mut claim) = (String::new(), String::new(), None::<String>, None);
    // Whether a segment of the billing provider, subscriber, patient or
    // claim loop could not be re-delimited: such a claim gets no fragment
    // (a loop missing a segment must never go to a payer).
    let (mut billing_bad, mut subscriber_bad, mut patient_bad, mut broken) = (false, false, false, false);
    let finish = |current: &mut Option<SetFragments>,
                  claim: &mut Option<String>,
                  broken: &mut bool,
                  f: (&str, &str, &str, &str, &Option<String>)| {
        if let (Some(set), Some(c)) = (current.as_mut(), claim.take()) {
            set.claims.push((!*broken).then(|| ClaimFragment {
                implementation: f.0.to_string(),
                bht06: f.1.to_string(),
                billing: f.2.to_string(),
                subscriber: f.3.to_string(),
                patient: f.4.clone(),
                claim: c,
            }));
        }
        *broken = false;
    };
    // The claim under way ends (at an HL, a CLM or the SE).
    macro_rules! end_claim {
        () => {{
            broken |= billing_bad || subscriber_bad || patient_bad;
            finish(&mut current, &mut claim, &mut broken, (&implementation, &bht06, &billing, &subscriber, &patient));
        }};
    }
    while let Ok(Some(seg)) = reader.next_segment() {
        match seg.id() {
            b"ISA" => {
                ic = Some(ic.map_or(0, |i| i + 1));
                group = 0;
                set = 0;
                if let Some(isa) = seg.isa {
                    info.isa_qualifier = isa.sender_qualifier().to_string();
                    info.isa_id = isa.sender_id().to_string();
                    info.our_isa_qualifier = isa.receiver_qualifier().to_string();
                    info.our_isa_id = isa.receiver_id().to_string();
                    info.usage = isa.usage().to_string();
                }
            }
            b"GS" => {
                info.gs_id = text(&seg, 2);
                info.our_gs_id = text(&seg, 3);
            }
            b"GE" => {
                group += 1;
                set = 0;
            }
            b"ST" => {
                current = (seg.element(1) == b"837").then(|| SetFragments {
                    interchange: ic.unwrap_or(0),
                    group,
                    set,
                    submitter: info.clone(),
                    claims: Vec::new(),
                });
                implementation = text(&seg, 3);
                at = At::Header;
                claim = None;
                (billing_bad, subscriber_bad, patient_bad, broken) = (false, false, false, false);
            }
            b"SE" => {
                end_claim!();
                out.extend(current.take());
                set += 1;
            }
            _ if current.is_none() => {}
            b"BHT" => {
                bht06 = text(&seg, 6);
                if let Some(c) = current.as_mut() {
                    c.submitter.bht03 = text(&seg, 3);
                }
            }
            b"NM1" if at == At::Header && seg.element(1) == b"41" => {
                if let Some(c) = current.as_mut() {
                    c.submitter.name = text(&seg, 3);
                    c.submitter.id = text(&seg, 9);
                }
            }
            b"HL" => {
                end_claim!();
                match seg.element(3) {
                    b"20" => {
                        at = At::Billing;
                        billing.clear();
                        billing_bad = false;
                    }
                    b"22" => {
                        at = At::Subscriber;
                        subscriber.clear();
                        patient = None;
                        (subscriber_bad, patient_bad) = (false, false);
                    }
                    _ => {
                        at = At::Patient;
                        patient = Some(String::new());
                        patient_bad = false;
                    }
                }
            }
            b"CLM" => {
                end_claim!();
                at = At::Claim;
                let mut c = String::with_capacity(1024);
                broken |= !push_segment(&seg, &mut c);
                claim = Some(c);
            }
            _ => match at {
                At::Header => {}
                At::Billing => billing_bad |= !push_segment(&seg, &mut billing),
                At::Subscriber => subscriber_bad |= !push_segment(&seg, &mut subscriber),
                At::Patient => patient_bad |= !patient.as_mut().is_none_or(|p| push_segment(&seg, p)),
                At::Claim => broken |= !claim.as_mut().is_none_or(|c| push_segment(&seg, c)),
            },
        }
    }
    out
}

/// Segments in a fragment string.
fn segments_in(s: &str) -> u32 {
    memchr::memchr_iter(OUT.segment, s.as_bytes()).count() as u32
}

/// The submitter (1000A: the clearinghouse) and receiver (1000B: the
/// payer) of an outbound 837.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties<'a> {
    pub submitter_name: &'a str,
    /// ETIN (NM109, qualifier 46).
    pub submitter_id: &'a str,
    pub contact_name: &'a str,
    /// PER: `EM` e-mail, `TE` telephone.
    pub contact_qualifier: &'a str,
    pub contact: &'a str,
    pub receiver_name: &'a str,
    pub receiver_id: &'a str,
}

/// One outbound 837 interchange.
#[derive(Debug)]
pub struct Outbound837<'a> {
    /// Sender: the clearinghouse; receiver: the payer. Delimiters are
    /// [`OUT`] whatever the envelope says.
    pub envelope: &'a Envelope,
    pub parties: Parties<'a>,
    /// ISA14: ask the payer for a TA1.
    pub ack_requested: bool,
    /// ISA13 and GS06 (and the ST02 counts from 1).
    pub control: u32,
    /// BHT03: the payer's 277CA returns it in 2200B TRN02.
    pub bht03: &'a str,
    pub at: PrimitiveDateTime,
    /// The claims, all of one implementation guide and BHT06.
    pub claims: &'a [&'a ClaimFragment],
    /// Per claim, the clearinghouse's trace number written as its 2300
    /// REF*D9 (replacing one an earlier intermediary wrote); empty: none.
    pub traces: &'a [&'a str],
}

/// A built batch: its bytes and, for each claim given, where it went.
#[derive(Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// For each input claim: (ST02, 1-based position among the set's
    /// claims). Claims are grouped under their billing provider, so the
    /// order differs from the input's.
    pub placed: Vec<(String, u32)>,
}

/// Writes the claims as one interchange, one group, and sets of at most
/// [`MAX_CLAIMS_PER_SET`] claims, each claim under its billing provider's
/// HL (identical 2000A loops share one), with a subscriber HL (and a
/// patient HL) per claim.
pub fn build_837(b: &Outbound837<'_>) -> Built {
    let mut env = b.envelope.clone();
    env.delimiters = OUT;
    let mut w = Writer::new(OUT);
    let isa_start = 0;
    w.isa(&env, b.control, b.at);
    if b.ack_requested {
        w.set_byte(isa_start + 100, b'1');
    }
    let implementation = b.claims.first().map_or("005010X222A1", |c| c.implementation.as_str());
    let bht06 = b.claims.first().map_or("CH", |c| c.bht06.as_str());
    w.gs("HC", &env, b.control, b.at, implementation);
    let mut placed = vec![(String::new(), 0); b.claims.len()];
    let (date, time) = (ccyymmdd(b.at.date()), hhmm(b.at));
    let indices: Vec<usize> = (0..b.claims.len()).collect();
    for (n, chunk) in indices.chunks(MAX_CLAIMS_PER_SET).enumerate() {
        let st02 = format!("{:04}", n + 1);
        w.st("837", &st02, implementation);
        w.seg("BHT", &["0019", "00", b.bht03, &date, &time, bht06]);
        let p = &b.parties;
        w.seg("NM1", &["41", "2", p.submitter_name, "", "", "", "", "46", p.submitter_id]);
        w.seg("PER", &["IC", p.contact_name, p.contact_qualifier, p.contact]);
        w.seg("NM1", &["40", "2", p.receiver_name, "", "", "", "", "46", p.receiver_id]);
        // Billing providers in first-seen order, each with its claims.
        let mut providers: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for &i in chunk {
            let billing = b.claims[i].billing.as_str();
            match seen.get(billing) {
                Some(&at) => providers[at].1.push(i),
                None => {
                    seen.insert(billing, providers.len());
                    providers.push((billing, vec![i]));
                }
            }
        }
        let mut hl = 0u32;
        let mut position = 0u32;
        for (billing, claims) in providers {
            hl += 1;
            let parent = hl.to_string();
            w.seg("HL", &[&parent, "", "20", "1"]);
            w.raw(billing.as_bytes(), segments_in(billing));
            for i in claims {
                let c = b.claims[i];
                hl += 1;
                let sub = hl.to_string();
                w.seg("HL", &[&sub, &parent, "22", if c.patient.is_some() { "1" } else { "0" }]);
                w.raw(c.subscriber.as_bytes(), segments_in(&c.subscriber));
                if let Some(p) = &c.patient {
                    hl += 1;
                    w.seg("HL", &[&hl.to_string(), &sub, "23", "0"]);
                    w.raw(p.as_bytes(), segments_in(p));
                }
                match b.traces.get(i).filter(|t| !t.is_empty()) {
                    Some(trace) => {
                        let (claim, n) = with_trace(&c.claim, trace);
                        w.raw(claim.as_bytes(), n);
                    }
                    None => w.raw(c.claim.as_bytes(), segments_in(&c.claim)),
                }
                position += 1;
                placed[i] = (st02.clone(), position);
            }
        }
        w.se(&st02);
    }
    w.ge(b.control);
    w.iea(b.control);
    Built { bytes: w.into_bytes(), placed }
}

/// Loop 2300 with `REF*D9*<trace>` in its place: after CLM and the DTP,
/// CL1, DN1, DN2, PWK, CN1, AMT and REF segments that precede it (REF*EA,
/// P4 and 1J follow it), any earlier REF*D9 dropped. Returns the loop and
/// its segment count.
fn with_trace(claim: &str, trace: &str) -> (String, u32) {
    let mut out = String::with_capacity(claim.len() + trace.len() + 8);
    let mut placed = false;
    let mut n = 0;
    for (i, seg) in claim.split_terminator('~').enumerate() {
        let id = seg.split('*').next().unwrap_or_default();
        if id == "REF" && seg.starts_with("REF*D9*") {
            continue;
        }
        let before = i == 0
            || matches!(id, "DTP" | "CL1" | "DN1" | "DN2" | "PWK" | "CN1" | "AMT")
            || (id == "REF" && !["REF*EA*", "REF*P4*", "REF*1J*"].iter().any(|q| seg.starts_with(q)));
        if !placed && !before {
            out.push_str("REF*D9*");
            out.push_str(trace);
            out.push('~');
            n += 1;
            placed = true;
        }
        out.push_str(seg);
        out.push('~');
        n += 1;
    }
    if !placed {
        out.push_str("REF*D9*");
        out.push_str(trace);
        out.push('~');
        n += 1;
    }
    (out, n)
}

// ------------------------------------------------------------ from payers --

/// A TA1 from the payer: the fate of one of our interchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ta1Answer {
    /// TA101: our ISA13.
    pub control: String,
    /// TA104: `A`, `E` or `R`.
    pub code: String,
    /// TA105 note code.
    pub note: String,
}

/// A 999 from the payer: the fate of one of our groups and its sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack999Answer {
    /// AK102: our GS06.
    pub group_control: String,
    /// AK901.
    pub group_code: String,
    /// (AK202 our ST02, IK501).
    pub sets: Vec<(String, String)>,
}

/// One claim in a payer's 277CA (loop 2200D).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAnswer {
    /// 2200D TRN02: the patient control number (837 CLM01).
    pub patient_control_number: String,
    /// First STC01 as `category:code[:entity]`.
    pub status: String,
    /// STC04: total claim charge.
    pub charge: Option<Decimal>,
    /// REF*1K.
    pub payer_claim_control_number: Option<String>,
    /// REF*D9, when the payer returns our trace number.
    pub clearinghouse_trace: Option<String>,
    /// The 2000D loop without its HL (NM1*QC, TRN, STC, REF, DTP and the
    /// 2220D lines), in [`OUT`] delimiters.
    pub segments: String,
}

/// One billing provider in a payer's 277CA (loop 2000C) and its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// 2100C NM109.
    pub provider_id: String,
    /// The 2000C loop without its HL (NM1*85, TRN, STC, QTY, AMT).
    pub segments: String,
    pub claims: Vec<ClaimAnswer>,
}

/// A payer's 277CA (one transaction set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack277Answer {
    /// 2100A NM101 (`PR` payer, `AY` clearinghouse), NM103 and NM109.
    pub source_entity: String,
    pub source_name: String,
    pub source_id: String,
    /// Loop 2000A without its HL (2100A NM1 and PER, 2200A TRN and DTP).
    pub source_segments: String,
    /// 2200B TRN02: the BHT03 of our 837.
    pub batch_reference: String,
    /// 2200B STC segment, as sent.
    pub batch_status: Option<String>,
    pub providers: Vec<ProviderAnswer>,
}

/// A payer's 835 transaction set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemitAnswer {
    /// TRN02 (check or EFT trace) and TRN03 (payer identifier).
    pub trace: String,
    pub payer_id: String,
    /// 1000B N103 (`XX` NPI, `FI` TIN, `XV`) and N104.
    pub payee_qualifier: String,
    pub payee_id: String,
    /// How many claims it pays (CLP segments).
    pub claims: usize,
    /// Byte offset of its ST in the file, and the ISA of its interchange
    /// (with its terminator): read `isa` then the file from `offset` to
    /// read this set again as the first of its stream, without reading
    /// the sets before it (see [`RemitAnswer::first`]).
    pub offset: u64,
    pub isa: Vec<u8>,
    /// Its place among the file's transaction sets (0 for the first ST,
    /// whatever its kind): the set is not kept, but read again from the
    /// file when needed ([`remittance_claim_numbers`], [`forward_835`]),
    /// so that an 835 of any size is never held in memory.
    pub set: usize,
    pub implementation: String,
}

impl RemitAnswer {
    /// This set as the first of its stream: for a stream that is `isa`
    /// then the file from `offset`.
    pub fn first(&self) -> RemitAnswer {
        RemitAnswer { set: 0, ..self.clone() }
    }
}

/// One answer found in a payer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayerAnswer {
    Ta1(Ta1Answer),
    Ack999(Ack999Answer),
    Ack277(Box<Ack277Answer>),
    Remit(Box<RemitAnswer>),
    /// A set of another kind (an 837 sent our way, a 277 of another guide
    /// …): ST01 and ST02.
    Other(String, String),
}

/// Why a payer file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("not an X12 interchange: {0}")]
    Unreadable(String),
    #[error("data holds one of the delimiters Clearway writes; cannot be re-delimited")]
    Delimiters,
}

#[derive(Default)]
struct Reading277 {
    answer: Option<Ack277Answer>,
    /// 0 header, 1 2000A, 2 2000B, 3 2000C, 4 2000D.
    level: u8,
}

/// Reads every answer in a payer file. Reads segment by segment; what it
/// keeps is each answer's own data (a 277CA's segments; of an 835, only
/// its header and where it is: see [`RemitAnswer::set`]).
pub fn read_answers<R: std::io::Read>(input: R) -> Result<Vec<PayerAnswer>, AnswerError> {
    let mut out = Vec::new();
    let mut reader = SegmentReader::new(input);
    // Sets begun so far; a scratch copy of an 835's segment, to check that
    // it can be re-delimited.
    let (mut sets, mut scratch) = (0usize, Vec::new());
    // The ISA of the interchange being read, with its terminator.
    let mut isa = Vec::new();
    let mut kind: Option<String> = None;
    let mut st02 = String::new();
    let mut ack999: Option<Ack999Answer> = None;
    let mut r277 = Reading277::default();
    let mut remit: Option<RemitAnswer> = None;
    let mut seen_isa = false;
    loop {
        let seg = match reader.next_segment() {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(e) => return Err(AnswerError::Unreadable(e.to_string())),
        };
        match seg.id() {
            b"ISA" => {
                seen_isa = true;
                isa.clear();
                isa.extend_from_slice(seg.raw());
                isa.push(seg.delimiters().segment);
            }
            b"TA1" => out.push(PayerAnswer::Ta1(Ta1Answer {
                control: text(&seg, 1),
                code: text(&seg, 4),
                note: text(&seg, 5),
            })),
            b"ST" => {
                let k = text(&seg, 1);
                st02 = text(&seg, 2);
                match k.as_str() {
                    "999" => {
                        ack999 =
                            Some(Ack999Answer { group_control: String::new(), group_code: String::new(), sets: vec![] })
                    }
                    "277" => r277 = Reading277 { answer: None, level: 0 },
                    "835" => {
                        scratch.clear();
                        if !redelimit(&seg, &mut scratch) {
                            return Err(AnswerError::Delimiters);
                        }
                        remit = Some(RemitAnswer {
                            trace: String::new(),
                            payer_id: String::new(),
                            payee_qualifier: String::new(),
                            payee_id: String::new(),
                            claims: 0,
                            offset: seg.offset,
                            isa: isa.clone(),
                            set: sets,
                            implementation: text(&seg, 3),
                        });
                    }
                    _ => {}
                }
                sets += 1;
                kind = Some(k);
            }
            b"SE" => {
                match kind.as_deref() {
                    Some("999") => out.extend(ack999.take().map(PayerAnswer::Ack999)),
                    Some("277") => match r277.answer.take() {
                        Some(a) => out.push(PayerAnswer::Ack277(Box::new(a))),
                        None => out.push(PayerAnswer::Other("277".into(), st02.clone())),
                    },
                    Some("835") => {
                        if let Some(r) = remit.take() {
                            scratch.clear();
                            if !redelimit(&seg, &mut scratch) {
                                return Err(AnswerError::Delimiters);
                            }
                            out.push(PayerAnswer::Remit(Box::new(r)));
                        }
                    }
                    Some(other) => out.push(PayerAnswer::Other(other.to_string(), st02.clone())),
                    None => {}
                }
                kind = None;
            }
            _ => match kind.as_deref() {
                Some("999") => {
                    let Some(a) = ack999.as_mut() else { continue };
                    match seg.id() {
                        b"AK1" => a.group_control = text(&seg, 2),
                        b"AK2" => a.sets.push((text(&seg, 2), String::new())),
                        b"IK5" => {
                            if let Some(last) = a.sets.last_mut() {
                                last.1 = text(&seg, 1);
                            }
                        }
                        b"AK9" => a.group_code = text(&seg, 1),
                        _ => {}
                    }
                }
                Some("277") => read_277(&seg, &mut r277)?,
                Some("835") => {
                    let Some(r) = remit.as_mut() else { continue };
                    scratch.clear();
                    if !redelimit(&seg, &mut scratch) {
                        return Err(AnswerError::Delimiters);
                    }
                    match seg.id() {
                        b"TRN" => {
                            r.trace = text(&seg, 2);
                            r.payer_id = text(&seg, 3);
                        }
                        b"N1" if seg.element(1) == b"PE" => {
                            r.payee_qualifier = text(&seg, 3);
                            r.payee_id = text(&seg, 4);
                        }
                        b"CLP" => r.claims += 1,
                        _ => {}
                    }
                }
                _ => {}
            },
        }
    }
    if !seen_isa {
        return Err(AnswerError::Unreadable("no ISA segment".into()));
    }
    Ok(out)
}

fn read_277(seg: &Segment<'_>, r: &mut Reading277) -> Result<(), AnswerError> {
    if seg.is("BHT") {
        r.answer = Some(Ack277Answer {
            source_entity: String::new(),
            source_name: String::new(),
            source_id: String::new(),
            source_segments: String::new(),
            batch_reference: String::new(),
            batch_status: None,
            providers: vec![],
        });
        return Ok(());
    }
    let Some(a) = r.answer.as_mut() else { return Ok(()) };
    if seg.is("HL") {
        r.level = match seg.element(3) {
            b"20" => 1,
            b"21" => 2,
            b"19" => {
                a.providers.push(ProviderAnswer {
                    provider_id: String::new(),
                    segments: String::new(),
                    claims: vec![],
                });
                3
            }
            _ => {
                if let Some(p) = a.providers.last_mut() {
                    p.claims.push(ClaimAnswer {
                        patient_control_number: String::new(),
                        status: String::new(),
                        charge: None,
                        payer_claim_control_number: None,
                        clearinghouse_trace: None,
                        segments: String::new(),
                    });
                }
                4
            }
        };
        return Ok(());
    }
    let ok = match r.level {
        1 => {
            if seg.is("NM1") {
                a.source_entity = text(seg, 1);
                a.source_name = text(seg, 3);
                a.source_id = text(seg, 9);
            }
            push_segment(seg, &mut a.source_segments)
        }
        2 => {
            if seg.is("TRN") {
                a.batch_reference = text(seg, 2);
            } else if seg.is("STC") && a.batch_status.is_none() {
                let mut s = String::new();
                if !push_segment(seg, &mut s) {
                    return Err(AnswerError::Delimiters);
                }
                a.batch_status = Some(s);
            }
            true
        }
        3 => a.providers.last_mut().is_none_or(|p| {
            if seg.is("NM1") && p.provider_id.is_empty() {
                p.provider_id = text(seg, 9);
            }
            push_segment(seg, &mut p.segments)
        }),
        4 => match a.providers.last_mut().and_then(|p| p.claims.last_mut()) {
            Some(c) => {
                let in_line = c.segments.contains("~SVC*");
                if !in_line {
                    match seg.id() {
                        b"TRN" => c.patient_control_number = text(seg, 2),
                        b"STC" if c.status.is_empty() => {
                            let d = seg.delimiters();
                            c.status = String::from_utf8_lossy(seg.element(1))
                                .split(d.component as char)
                                .collect::<Vec<_>>()
                                .join(":");
                            c.charge = std::str::from_utf8(seg.element(4)).ok().and_then(|v| v.parse().ok());
                        }
                        b"REF" if seg.element(1) == b"1K" => c.payer_claim_control_number = Some(text(seg, 2)),
                        b"REF" if seg.element(1) == b"D9" => c.clearinghouse_trace = Some(text(seg, 2)),
                        _ => {}
                    }
                }
                push_segment(seg, &mut c.segments)
            }
            None => true,
        },
        _ => true,
    };
    if ok { Ok(()) } else { Err(AnswerError::Delimiters) }
}

/// A payer's 277CA re-expressed for one submitter transaction.
#[derive(Debug)]
pub struct Forward277<'a> {
    /// Sender: the clearinghouse; receiver: the submitter.
    pub envelope: &'a Envelope,
    pub control: u32,
    pub at: PrimitiveDateTime,
    /// BHT03 of this 277CA.
    pub reference: &'a str,
    pub payer: &'a Ack277Answer,
    /// The submitter (2100B) and its BHT03 (2200B TRN02).
    pub submitter: &'a SubmitterInfo,
    /// Per billing provider of the payer's 277CA (index into
    /// `payer.providers`), the indices of this submitter's claims.
    pub claims: &'a [(usize, Vec<usize>)],
}

/// Builds the 277CA a submitter gets for its share of a payer's 277CA:
/// the payer stays the information source (2100A), the submitter is the
/// information receiver (2100B) with its own BHT03 in 2200B, and each of
/// its claims keeps the payer's 2200D/2220D verbatim. Batch counts and
/// amounts (2200B QTY/AMT) are the submitter's own.
pub fn forward_277ca(f: &Forward277<'_>) -> Vec<u8> {
    let mut env = f.envelope.clone();
    env.delimiters = OUT;
    let mut w = Writer::new(OUT);
    w.isa(&env, f.control, f.at);
    w.gs("HN", &env, f.control, f.at, "005010X214");
    w.st("277", "0001", "005010X214");
    let (date, time) = (ccyymmdd(f.at.date()), hhmm(f.at));
    w.seg("BHT", &["0085", "08", f.reference, &date, &time, "TH"]);
    w.seg("HL", &["1", "", "20", "1"]);
    w.raw(f.payer.source_segments.as_bytes(), segments_in(&f.payer.source_segments));
    w.seg("HL", &["2", "1", "21", "1"]);
    let s = f.submitter;
    let name = if s.name.is_empty() { "SUBMITTER" } else { s.name.as_str() };
    let id = if s.id.is_empty() { s.isa_id.as_str() } else { s.id.as_str() };
    w.seg("NM1", &["41", "2", name, "", "", "", "", "46", id]);
    w.seg("TRN", &["2", &s.bht03]);
    let (mut accepted, mut rejected) = ((0u32, Decimal::ZERO), (0u32, Decimal::ZERO));
    for (p, claims) in f.claims {
        for &c in claims {
            if let Some(claim) = f.payer.providers.get(*p).and_then(|p| p.claims.get(c)) {
                let slot = if claim.status.starts_with("A7") || claim.status.starts_with("A8") {
                    &mut rejected
                } else {
                    &mut accepted
                };
                slot.0 += 1;
                slot.1 += claim.charge.unwrap_or_default();
            }
        }
    }
    match &f.payer.batch_status {
        Some(stc) => w.raw(stc.as_bytes(), 1),
        None => {
            let stc = w.comp(&["A1", "19", "PR"]);
            w.seg("STC", &[&stc, &date, "WQ"]);
        }
    }
    if accepted.0 > 0 {
        w.seg("QTY", &["90", &accepted.0.to_string()]);
    }
    if rejected.0 > 0 {
        w.seg("QTY", &["AA", &rejected.0.to_string()]);
    }
    if accepted.0 > 0 {
        w.seg("AMT", &["YU", &accepted.1.normalize().to_string()]);
    }
    if rejected.0 > 0 {
        w.seg("AMT", &["YY", &rejected.1.normalize().to_string()]);
    }
    let mut hl = 2u32;
    for (p, claims) in f.claims {
        let Some(provider) = f.payer.providers.get(*p) else { continue };
        hl += 1;
        let parent = hl.to_string();
        w.seg("HL", &[&parent, "2", "19", "1"]);
        w.raw(provider.segments.as_bytes(), segments_in(&provider.segments));
        for &c in claims {
            let Some(claim) = provider.claims.get(c) else { continue };
            hl += 1;
            w.seg("HL", &[&hl.to_string(), &parent, "PT"]);
            w.raw(claim.segments.as_bytes(), segments_in(&claim.segments));
        }
    }
    w.se("0001");
    w.ge(f.control);
    w.iea(f.control);
    w.into_bytes()
}

/// The CLP01 of every claim the 835 at `remit.set` of `input` pays, in
/// order, given to `each` one at a time (nothing is kept).
pub fn remittance_claim_numbers<R: std::io::Read>(
    input: R,
    remit: &RemitAnswer,
    mut each: impl FnMut(String),
) -> Result<(), AnswerError> {
    let mut reader = SegmentReader::new(input);
    let (mut sets, mut inside) = (0usize, false);
    loop {
        let seg = match reader.next_segment() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return Err(AnswerError::Unreadable(e.to_string())),
        };
        match seg.id() {
            b"ST" => {
                inside = sets == remit.set;
                sets += 1;
            }
            b"SE" if inside => return Ok(()),
            b"CLP" if inside => each(text(&seg, 1)),
            _ => {}
        }
    }
}

/// An 835 transaction set of a payer's (`remit.set` of `input`),
/// re-enveloped for one submitter, as a reader: the set is copied
/// segment by segment as it is read, so an 835 of any size is forwarded
/// in the memory of a few segments.
pub fn forward_835<R: std::io::Read>(
    envelope: &Envelope,
    control: u32,
    at: PrimitiveDateTime,
    remit: &RemitAnswer,
    input: R,
) -> Forward835<R> {
    let mut env = envelope.clone();
    env.delimiters = OUT;
    let mut w = Writer::new(OUT);
    w.isa(&env, control, at);
    w.gs("HP", &env, control, at, if remit.implementation.is_empty() { "005010X221A1" } else { &remit.implementation });
    let head = w.len();
    w.raw_set(b"");
    w.ge(control);
    w.iea(control);
    let mut out = w.into_bytes();
    let tail = out.split_off(head);
    Forward835 {
        reader: SegmentReader::new(input),
        set: remit.set,
        sets: 0,
        inside: false,
        out,
        pos: 0,
        tail: Some(tail),
    }
}

/// See [`forward_835`].
#[derive(Debug)]
pub struct Forward835<R> {
    reader: SegmentReader<R>,
    set: usize,
    sets: usize,
    inside: bool,
    out: Vec<u8>,
    pos: usize,
    /// GE and IEA, written once the set has ended.
    tail: Option<Vec<u8>>,
}

impl<R: std::io::Read> std::io::Read for Forward835<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            let Some(tail) = self.tail.as_ref() else { return Ok(0) };
            while self.out.len() < 64 * 1024 {
                let seg = self.reader.next_segment().map_err(|e| std::io::Error::other(e.to_string()))?;
                let Some(seg) = seg else {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the 835 set is not there"));
                };
                if seg.is("ST") {
                    self.inside = self.sets == self.set;
                    self.sets += 1;
                }
                if !self.inside {
                    continue;
                }
                if !redelimit(&seg, &mut self.out) {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, AnswerError::Delimiters));
                }
                if seg.is("SE") {
                    self.out.extend_from_slice(tail);
                    self.tail = None;
                    break;
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
