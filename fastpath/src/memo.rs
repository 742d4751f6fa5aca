//! A memo of analysed real-time 270s.
//!
//! A front desk asks about the same member again and again, and two such
//! 270s differ only in their control fields: the envelope's control
//! numbers, dates and times, the BHT reference and the trace numbers.
//! Analysing the whole interchange again (SNIP 1-2, the 270 view) gives the
//! same result every time, so the result is kept, keyed by the request's
//! bytes with those fields emptied ([`split`]). On a hit only the control
//! fields are checked ([`Fields::plausible`]): by rules stricter than the
//! analyser's, so that a value the analyser might refuse is never let
//! through; a field that fails them sends the request down the full path.
//! The answer itself still comes from the eligibility cache, with its TTL
//! and invalidation; only the analysis is remembered.
//!
//! The body of the last 271 an entry answered is kept with it
//! ([`Answered`]): a later request whose inquiries the cache answers with
//! the same outcomes gets that body, with its own envelope, BHT and trace
//! numbers written around it.
//!
//! `the_memo_answers_as_the_full_analysis_does` (`tests/fastpath.rs`)
//! checks that a request answered from the memo gets the same bytes as the
//! full path gives, over generated control fields.

use clearway_core::EligibilityRequest;
use clearway_formats::x12::IsaHeader;
use clearway_formats::x12::analyze::GroupHeader;
use clearway_formats::x12::build::{Body271, EligibilityOutcome, Envelope};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an analysis is remembered without being used.
const IDLE_FOR: Duration = Duration::from_secs(600);
/// Most memory the memo holds, counted as the key's bytes five times over
/// (the key, about as much again twice in the analysed inquiries and
/// envelope, and twice in the body of the last 271) plus a fixed share per
/// entry.
pub const MAX_MEMO_BYTES: u64 = 64 * 1024 * 1024;

/// The fixed ISA layout: where each element separator stands.
const ISA_SEPARATORS: [usize; 16] = [3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103];

/// The control fields of one 270, as sent.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    isa09: &'a [u8],
    isa10: &'a [u8],
    isa13: &'a [u8],
    gs04: &'a [u8],
    gs05: &'a [u8],
    gs06: &'a [u8],
    st02: &'a [u8],
    bht03: &'a [u8],
    bht04: &'a [u8],
    bht05: &'a [u8],
    se02: &'a [u8],
    ge02: &'a [u8],
    iea02: &'a [u8],
    trn02: Vec<&'a [u8]>,
}

/// Splits a request into its bytes with the control fields emptied (the
/// memo key) and the control fields. `None` when the request is not laid
/// out as one plain interchange with one group and one set (such a
/// request takes the full path, which says what is wrong with it).
pub fn split(body: &[u8]) -> Option<(Vec<u8>, Fields<'_>)> {
    if body.len() < 106 || !body.starts_with(b"ISA") {
        return None;
    }
    let elem = body[3];
    if ISA_SEPARATORS.iter().any(|&i| body[i] != elem) {
        return None;
    }
    let term = body[105];
    if term == elem || term.is_ascii_alphanumeric() {
        return None;
    }
    let mut f = Fields { isa09: &body[70..76], isa10: &body[77..81], isa13: &body[90..99], ..Fields::default() };
    let mut key = Vec::with_capacity(body.len());
    key.extend_from_slice(&body[..70]);
    key.extend_from_slice(&body[76..77]);
    key.extend_from_slice(&body[81..90]);
    key.extend_from_slice(&body[99..106]);
    let mut rest = &body[106..];
    let mut ended = false;
    let mut seen = [false; 6];
    while !rest.is_empty() {
        let (seg, tail, terminated) = match memchr::memchr(term, rest) {
            Some(i) => (&rest[..i], &rest[i + 1..], true),
            None => (rest, &[][..], false),
        };
        let trimmed = seg.trim_ascii_start();
        if ended {
            if !trimmed.is_empty() {
                return None;
            }
            rest = tail;
            continue;
        }
        let id = trimmed.split(|b| *b == elem).next().unwrap_or_default();
        // The control elements of the segment, and for a segment that must
        // appear once, its slot in `seen`.
        let (masked, once): (&[usize], Option<usize>) = match id {
            b"GS" => (&[4, 5, 6], Some(0)),
            b"ST" => (&[2], Some(1)),
            b"BHT" => (&[3, 4, 5], Some(2)),
            b"SE" => (&[2], Some(3)),
            b"GE" => (&[2], Some(4)),
            b"IEA" => (&[2], Some(5)),
            b"TRN" => (&[2], None),
            b"ISA" => return None,
            _ => (&[], None),
        };
        if masked.is_empty() {
            key.extend_from_slice(seg);
        } else {
            if let Some(slot) = once {
                if seen[slot] {
                    return None;
                }
                seen[slot] = true;
            }
            // The whitespace before the segment id is kept as it was.
            key.extend_from_slice(&seg[..seg.len() - trimmed.len()]);
            for (i, value) in trimmed.split(|b| *b == elem).enumerate() {
                if i > 0 {
                    key.push(elem);
                }
                if !masked.contains(&i) {
                    key.extend_from_slice(value);
                    continue;
                }
                match (id, i) {
                    (b"GS", 4) => f.gs04 = value,
                    (b"GS", 5) => f.gs05 = value,
                    (b"GS", 6) => f.gs06 = value,
                    (b"ST", _) => f.st02 = value,
                    (b"SE", _) => f.se02 = value,
                    (b"GE", _) => f.ge02 = value,
                    (b"IEA", _) => {
                        f.iea02 = value;
                        ended = true;
                    }
                    (b"BHT", 3) => f.bht03 = value,
                    (b"BHT", 4) => f.bht04 = value,
                    (b"BHT", 5) => f.bht05 = value,
                    _ => f.trn02.push(value),
                }
            }
        }
        if terminated {
            key.push(term);
        }
        rest = tail;
    }
    seen.iter().all(|s| *s).then_some((key, f))
}

fn digits(v: &[u8], len: usize) -> Option<u32> {
    (v.len() == len && v.iter().all(u8::is_ascii_digit))
        .then(|| v.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

fn alphanumeric(v: &[u8], min: usize, max: usize) -> bool {
    (min..=max).contains(&v.len()) && v.iter().all(u8::is_ascii_alphanumeric)
}

/// A calendar date (February 29th only in a leap year).
fn date(year: u32, month: u32, day: u32) -> bool {
    let (Ok(year), Ok(month), Ok(day)) = (i32::try_from(year), u8::try_from(month), u8::try_from(day)) else {
        return false;
    };
    time::Month::try_from(month).is_ok_and(|m| time::Date::from_calendar_date(year, m, day).is_ok())
}

fn ccyymmdd(v: &[u8]) -> bool {
    digits(v, 8).is_some_and(|n| n / 10_000 >= 1900 && date(n / 10_000, n / 100 % 100, n % 100))
}

/// HHMM or HHMMSS.
fn time(v: &[u8]) -> bool {
    match v.len() {
        4 => digits(v, 4).is_some_and(|n| n / 100 < 24 && n % 100 < 60),
        6 => digits(v, 6).is_some_and(|n| n / 10_000 < 24 && n / 100 % 100 < 60 && n % 100 < 60),
        _ => false,
    }
}

impl Fields<'_> {
    /// Whether the control fields are sound by rules at least as strict as
    /// the analyser's: plain digits of the right length, real dates and
    /// times, letters and digits only in the references, and the trailer
    /// control numbers equal to the headers'. Anything else takes the full
    /// path.
    pub fn plausible(&self) -> bool {
        // ISA09 is YYMMDD; February 29th is left to the full path, which
        // knows its own reading of the century (2001 has no February 29th).
        digits(self.isa09, 6).is_some_and(|n| date(2001, n / 100 % 100, n % 100))
            && digits(self.isa10, 4).is_some_and(|n| n / 100 < 24 && n % 100 < 60)
            && digits(self.isa13, 9).is_some()
            && self.iea02 == self.isa13
            && ccyymmdd(self.gs04)
            && time(self.gs05)
            && (1..=9).contains(&self.gs06.len())
            && self.gs06.iter().all(u8::is_ascii_digit)
            && self.gs06[0] != b'0'
            && self.ge02 == self.gs06
            && (4..=9).contains(&self.st02.len())
            && self.st02.iter().all(u8::is_ascii_digit)
            && self.se02 == self.st02
            && alphanumeric(self.bht03, 1, 50)
            && ccyymmdd(self.bht04)
            && time(self.bht05)
            && self.trn02.iter().all(|t| alphanumeric(t, 1, 50))
    }

    /// BHT03, echoed in the 271.
    pub fn reference(&self) -> &str {
        std::str::from_utf8(self.bht03).unwrap_or("0")
    }
}

/// What the full path learnt from a 270.
#[derive(Debug)]
pub struct Entry {
    /// The envelope of the 271, from the 270's ISA and GS (it reads none
    /// of their control fields).
    pub envelope: Envelope,
    requests: Vec<EligibilityRequest>,
    /// For each request, which TRN02 of the set its trace number is.
    traces: Vec<Option<usize>>,
    /// For each request, the canonical payer and its cache key without
    /// the date ([`crate::FastPath`] builds both).
    pub keys: Vec<(String, String)>,
    /// The body of the last 271 answered, and the outcomes it says.
    last: Mutex<Option<Arc<Answered>>>,
}

/// A 271 body ([`Body271`]) and the outcomes it was written from: it
/// answers a later request only while the cache gives the same outcomes.
#[derive(Debug)]
pub struct Answered {
    pub outcomes: Vec<EligibilityOutcome>,
    pub body: Body271,
}

impl Entry {
    /// `None` when a request's trace number cannot be told apart from
    /// another TRN02 of the set (two TRNs with one value).
    pub fn new(
        isa: &IsaHeader,
        group: &GroupHeader,
        requests: Vec<EligibilityRequest>,
        keys: Vec<(String, String)>,
        fields: &Fields<'_>,
    ) -> Option<Entry> {
        let mut traces = Vec::with_capacity(requests.len());
        for r in &requests {
            let Some(t) = r.trace_number.as_deref() else {
                traces.push(None);
                continue;
            };
            let mut at = fields.trn02.iter().enumerate().filter(|(_, v)| **v == t.as_bytes()).map(|(i, _)| i);
            let (Some(i), None) = (at.next(), at.next()) else { return None };
            traces.push(Some(i));
        }
        let envelope = Envelope::reply_to(isa, Some(group));
        Some(Entry { envelope, requests, traces, keys, last: Mutex::new(None) })
    }

    /// The requests as first analysed (their trace numbers are the first
    /// request's: see [`Entry::requests`] and [`Entry::trace`]).
    pub fn analysed(&self) -> &[EligibilityRequest] {
        &self.requests
    }

    /// The trace number of request `n` in the 270 whose control fields
    /// are `fields`: what [`Entry::requests`] gives it.
    pub fn trace<'a>(&'a self, fields: &'a Fields<'_>, n: usize) -> Option<&'a str> {
        let new = self.traces[n].and_then(|i| fields.trn02.get(i)).and_then(|v| std::str::from_utf8(v).ok());
        new.or(self.requests[n].trace_number.as_deref())
    }

    /// The last 271 body, when it was written from these outcomes.
    pub fn answered(&self, outcomes: &[EligibilityOutcome]) -> Option<Arc<Answered>> {
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()?;
        (last.outcomes == outcomes).then_some(last)
    }

    /// Keeps a 271 body for the next request.
    pub fn keep(&self, answered: Arc<Answered>) {
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(answered);
    }

    /// The requests of this 270 with the trace numbers of `fields`.
    pub fn requests(&self, fields: &Fields<'_>) -> Vec<EligibilityRequest> {
        self.requests
            .iter()
            .zip(&self.traces)
            .map(|(r, t)| {
                let mut r = r.clone();
                if let Some(v) = t.and_then(|i| fields.trn02.get(i)) {
                    r.trace_number = Some(String::from_utf8_lossy(v).into_owned());
                }
                r
            })
            .collect()
    }
}

/// The memo: masked request bytes to what their analysis gave.
pub struct Memo {
    cache: moka::sync::Cache<Vec<u8>, Arc<Entry>>,
    hits: AtomicU64,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").field("entries", &self.cache.entry_count()).finish()
    }
}

impl Memo {
    /// A memo holding at most `max_bytes` (see [`MAX_MEMO_BYTES`]).
    pub fn new(max_bytes: u64) -> Memo {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Vec<u8>, _: &Arc<Entry>| u32::try_from(key.len() * 5 + 1024).unwrap_or(u32::MAX))
            .time_to_idle(IDLE_FOR)
            .build();
        Memo { cache, hits: AtomicU64::new(0) }
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<Entry>> {
        let found = self.cache.get(key);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Requests answered from the memo so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn insert(&self, key: Vec<u8>, entry: Entry) {
        self.cache.insert(key, Arc::new(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"ISA*00*          *00*          *ZZ*CLEARWAYGEN    *ZZ*CLEARWAYHUB    *240115*1200*^*00501*100000009*0*T*:~GS*HS*CLEARWAYGEN*CLEARWAYHUB*20240115*1200*1*X*005010X279A1~ST*270*0001*005010X279A1~BHT*0022*13*000000009*20240115*1200~HL*1**20*1~NM1*PR*2*ACME HEALTH PLAN*****PI*ACME01~HL*2*1*21*1~NM1*1P*2*SYNTHETIC CLINIC*****XX*1000000012~HL*3*2*22*0~TRN*1*477891077985*9CLEARWAY0~NM1*IL*1*TESTLAST*JAMIE****MI*M3683389182~DMG*D8*19431114*F~DTP*291*D8*20240115~EQ*30~SE*13*0001~GE*1*1~IEA*1*100000009~";

    fn replace(body: &[u8], from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(body.to_vec()).unwrap().replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn control_fields_are_found_and_emptied() {
        let (key, f) = split(BODY).unwrap();
        assert_eq!(f.isa13, b"100000009");
        assert_eq!(f.iea02, b"100000009");
        assert_eq!(f.gs06, b"1");
        assert_eq!(f.st02, b"0001");
        assert_eq!(f.bht03, b"000000009");
        assert_eq!(f.trn02, vec![&b"477891077985"[..]]);
        assert!(f.plausible());
        let key = String::from_utf8(key).unwrap();
        assert!(key.contains("BHT*0022*13***~HL*1**20*1~"), "{key}");
        assert!(key.contains("TRN*1**9CLEARWAY0~"), "{key}");
        assert!(key.ends_with("IEA*1*~"), "{key}");
        assert!(!key.contains("100000009"));
    }

    #[test]
    fn fresh_control_numbers_share_the_key_and_other_changes_do_not() {
        let (key, _) = split(BODY).unwrap();
        let fresh = replace(&replace(&replace(BODY, "477891077985", "X1"), "*0001*", "*7777*"), "*0001~", "*7777~");
        let (same, f) = split(&fresh).unwrap();
        assert_eq!(key, same);
        assert!(f.plausible());
        let other_member = replace(BODY, "M3683389182", "M3683389183");
        assert_ne!(split(&other_member).unwrap().0, key);
        let other_date = replace(BODY, "DTP*291*D8*20240115", "DTP*291*D8*20240116");
        assert_ne!(split(&other_date).unwrap().0, key);
    }

    #[test]
    fn doubtful_fields_take_the_full_path() {
        for (from, to) in [
            ("*0001~", "*0002~"),                       // SE02 differs from ST02
            ("IEA*1*100000009", "IEA*1*100000008"),     // IEA02 differs from ISA13
            ("*20240115*1200*1*", "*20240230*1200*1*"), // GS04 not a date
            ("*20240115*1200~", "*20240115*2400~"),     // BHT05 not a time
            ("477891077985", "4778 91077985"),          // TRN02 with a space
            ("*240115*1200*", "*240229*1200*"),         // ISA09 on February 29th
        ] {
            let body = replace(BODY, from, to);
            assert!(!split(&body).unwrap().1.plausible(), "{to}");
        }
        // Two interchanges, two sets, trailing data: not split at all.
        assert!(split(&[BODY, BODY].concat()).is_none());
        assert!(split(&replace(BODY, "SE*13*0001~", "SE*13*0001~ST*270*0002~")).is_none());
        assert!(split(&[BODY, b"X"].concat()).is_none());
        assert!(split(&BODY[..100]).is_none());
    }
}
