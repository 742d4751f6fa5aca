//! What the D.0 standard requires of a request, per transaction code, and
//! the reject codes (511-FB) that say what is wrong: the NCPDP answer to
//! bad input is a response with transaction status `R` and M/I ("missing
//! or invalid") codes, never an HTTP error.
//!
//! The full reject-code list is for NCPDP members. The codes used here are
//! the ones public sources name ([`REJECT_CODES`] gives each code's meaning
//! and source); where a field has no public code, its segment's M/I code or
//! `R8` (syntax error) is used.
//!
//! Field formats follow the D.0 data dictionary as payer sheets reprint it:
//! numeric fields are digits, dates CCYYMMDD, money is a signed numeric
//! with the sign overpunched on the last digit ([`overpunch_cents`]), an
//! NDC (product/service id qualifier `03`) has 11 digits.

use super::{Header, ReadError, RequestHeader, Segment, Transmission};

/// One reject code with what it means and where that is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectCode {
    pub code: &'static str,
    pub meaning: &'static str,
    pub source: &'static str,
}

const CARIN: &str = "HL7 CARIN RTPBC NamingSystem ncpdp-reject-code (USHIK copy)";
const V5: &str = "NCPDP 5.x reject list as reprinted in public state Medicaid manuals";

const fn rc(code: &'static str, meaning: &'static str, source: &'static str) -> RejectCode {
    RejectCode { code, meaning, source }
}

/// Every reject code Clearway itself answers with.
pub static REJECT_CODES: &[RejectCode] = &[
    rc("1", "M/I BIN Number", CARIN),
    rc("2", "M/I Version Number", V5),
    rc("3", "M/I Transaction Code", V5),
    rc("4", "M/I Processor Control Number", CARIN),
    rc("5", "M/I Service Provider Number", CARIN),
    rc("6", "M/I Group ID", CARIN),
    rc("7", "M/I Cardholder ID", CARIN),
    rc("8", "M/I Person Code", CARIN),
    rc("9", "M/I Date Of Birth", CARIN),
    rc("10", "M/I Patient Gender Code", CARIN),
    rc("11", "M/I Patient Relationship Code", V5),
    rc("15", "M/I Date Of Service", V5),
    rc("16", "M/I Prescription/Service Reference Number", V5),
    rc("17", "M/I Fill Number", V5),
    rc("19", "M/I Days Supply", CARIN),
    rc("21", "M/I Product/Service ID", CARIN),
    rc("22", "M/I Dispense As Written (DAW)/Product Selection Code", CARIN),
    rc("23", "M/I Ingredient Cost Submitted", V5),
    rc("25", "M/I Prescriber ID", CARIN),
    rc("28", "M/I Date Prescription Written", V5),
    rc("29", "M/I Number Refills Authorized", V5),
    rc("87", "Reversal Not Processed", V5),
    rc("92", "System Unavailable/Host Unavailable", CARIN),
    rc("99", "Host Processing Error", CARIN),
    rc("600", "Coverage Outside Submitted Date Of Transaction", CARIN),
    rc("CA", "M/I Patient First Name", CARIN),
    rc("CB", "M/I Patient Last Name", CARIN),
    rc("DC", "M/I Dispensing Fee Submitted", V5),
    rc("DQ", "M/I Usual And Customary Charge", V5),
    rc("DR", "M/I Prescriber Last Name", CARIN),
    rc("DU", "M/I Gross Amount Due", V5),
    rc("E1", "M/I Product/Service ID Qualifier", V5),
    rc("E7", "M/I Quantity Dispensed", V5),
    rc("N1", "No Patient Match Found", CARIN),
    rc("PB", "Invalid Transaction Count For This Transaction Code", V5),
    rc("PC", "M/I Claim Segment", V5),
    rc("PJ", "M/I Insurance Segment", CARIN),
    rc("PK", "M/I Patient Segment", CARIN),
    rc("PN", "M/I Prescriber Segment", CARIN),
    rc("PP", "M/I Pricing Segment", V5),
    rc("R8", "Syntax Error", CARIN),
];

/// The meaning of a reject code Clearway answers with.
pub fn reject_meaning(code: &str) -> Option<&'static str> {
    REJECT_CODES.iter().find(|r| r.code == code).map(|r| r.meaning)
}

/// A problem found in a request: the reject code and the transaction group
/// it is about (0: the transmission, every group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub code: &'static str,
    pub group: usize,
}

/// The transaction codes the switch path handles.
pub const TRANSACTION_CODES: [&str; 4] = ["E1", "B1", "B2", "B3"];

/// Reject codes for a transmission that could not be read.
pub fn read_rejects(e: &ReadError) -> Vec<&'static str> {
    match e {
        ReadError::NotD0 => vec!["2"],
        ReadError::BadHeader(what) if what.starts_with("BIN") => vec!["1"],
        ReadError::BadHeader(what) if what.starts_with("transaction count") => vec!["PB"],
        _ => vec!["R8"],
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Letters, digits, spaces and punctuation.
    Text,
    Digits,
    Date,
    /// Signed numeric, sign overpunched on the last character.
    Money,
    /// One of the listed values.
    Code(&'static [&'static str]),
}

/// A field's rule: segment, field id, maximum length, form, reject code.
struct Rule {
    seg: &'static str,
    id: &'static str,
    max: usize,
    form: Form,
    reject: &'static str,
}

const fn rule(seg: &'static str, id: &'static str, max: usize, form: Form, reject: &'static str) -> Rule {
    Rule { seg, id, max, form, reject }
}

/// Field formats of the request segments Clearway reads (D.0 data
/// dictionary widths as payer sheets reprint them).
static RULES: &[Rule] = &[
    rule("01", "C4", 8, Form::Date, "9"),
    rule("01", "C5", 1, Form::Code(&["0", "1", "2"]), "10"),
    rule("01", "CA", 12, Form::Text, "CA"),
    rule("01", "CB", 15, Form::Text, "CB"),
    rule("04", "C2", 20, Form::Text, "7"),
    rule("04", "C1", 15, Form::Text, "6"),
    rule("04", "C3", 3, Form::Digits, "8"),
    rule("04", "C6", 1, Form::Digits, "11"),
    rule("07", "D2", 12, Form::Digits, "16"),
    rule("07", "D3", 2, Form::Digits, "17"),
    rule("07", "E1", 2, Form::Digits, "E1"),
    rule("07", "D7", 19, Form::Text, "21"),
    rule("07", "E7", 10, Form::Digits, "E7"),
    rule("07", "D5", 3, Form::Digits, "19"),
    rule("07", "D8", 1, Form::Digits, "22"),
    rule("07", "DE", 8, Form::Date, "28"),
    rule("07", "DF", 2, Form::Digits, "29"),
    rule("11", "D9", 10, Form::Money, "23"),
    rule("11", "DC", 10, Form::Money, "DC"),
    rule("11", "DQ", 10, Form::Money, "DQ"),
    rule("11", "DU", 10, Form::Money, "DU"),
    rule("03", "DB", 15, Form::Text, "25"),
    rule("03", "DR", 15, Form::Text, "DR"),
];

/// A CCYYMMDD date that exists.
pub fn valid_date(v: &str) -> bool {
    parse_date(v).is_some()
}

/// A CCYYMMDD date (year 1900 on) as a date.
pub fn parse_date(v: &str) -> Option<time::Date> {
    if v.len() != 8 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month = time::Month::try_from(v[4..6].parse::<u8>().ok()?).ok()?;
    let year: i32 = v[..4].parse().ok()?;
    (year >= 1900).then_some(())?;
    time::Date::from_calendar_date(year, month, v[6..].parse().ok()?).ok()
}

/// A D.0 signed numeric (money with two implied decimals): digits whose
/// last character carries the sign — `{` and `A`–`I` for +0…+9, `}` and
/// `J`–`R` for −0…−9 (a plain last digit is read as positive). Returns
/// cents.
pub fn overpunch_cents(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let (&last, head) = b.split_last()?;
    if head.len() > 12 || !head.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (digit, negative) = match last {
        b'0'..=b'9' => (last - b'0', false),
        b'{' => (0, false),
        b'A'..=b'I' => (last - b'A' + 1, false),
        b'}' => (0, true),
        b'J'..=b'R' => (last - b'J' + 1, true),
        _ => return None,
    };
    let mut n: i64 = 0;
    for &c in head {
        n = n * 10 + i64::from(c - b'0');
    }
    n = n * 10 + i64::from(digit);
    Some(if negative { -n } else { n })
}

/// Writes cents as a D.0 signed numeric (sign overpunched).
pub fn overpunch(cents: i64) -> String {
    let digits = cents.unsigned_abs().to_string();
    let (head, last) = digits.split_at(digits.len() - 1);
    let d = last.as_bytes()[0] - b'0';
    let sign = match (cents < 0, d) {
        (false, 0) => '{',
        (false, d) => (b'A' + d - 1) as char,
        (true, 0) => '}',
        (true, d) => (b'J' + d - 1) as char,
    };
    format!("{head}{sign}")
}

fn form_ok(form: Form, v: &str) -> bool {
    match form {
        Form::Text => v.bytes().all(|b| (0x20..0x7F).contains(&b)),
        Form::Digits => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        Form::Date => valid_date(v),
        Form::Money => overpunch_cents(v).is_some(),
        Form::Code(list) => list.contains(&v),
    }
}

/// The request header, or `None` for a response.
pub fn request_header(t: &Transmission) -> Option<&RequestHeader> {
    match &t.header {
        Header::Request(h) => Some(h),
        Header::Response(_) => None,
    }
}

/// Segments of transaction group `g` (1-based) — with the transmission-level
/// ones for senders that put no 0x1D.
fn group_segments(t: &Transmission, g: usize) -> impl Iterator<Item = &Segment> {
    let flat = t.segments.iter().all(|s| s.group == 0);
    t.segments.iter().filter(move |s| s.group == g || (flat && g == 1))
}

/// Checks a request against the standard: header, the segments its
/// transaction code requires, and each field's format. Empty when it is
/// well formed.
pub fn validate(t: &Transmission) -> Vec<Reject> {
    let mut out = Vec::new();
    let Some(h) = request_header(t) else {
        return vec![Reject { code: "R8", group: 0 }];
    };
    let mut at = |code: &'static str, group: usize| {
        if !out.iter().any(|r: &Reject| r.code == code && r.group == group) {
            out.push(Reject { code, group });
        }
    };
    if h.version != "D0" {
        at("2", 0);
    }
    if !TRANSACTION_CODES.contains(&h.transaction_code.as_str()) {
        at("3", 0);
    }
    if h.provider_id.trim().is_empty() || !h.provider_id_qualifier.bytes().all(|b| b.is_ascii_digit()) {
        at("5", 0);
    }
    if !valid_date(&h.date_of_service) {
        at("15", 0);
    }
    let groups = t.groups();
    let count = usize::from(h.transaction_count);
    let most = if h.transaction_code == "E1" { 1 } else { 4 };
    if count > most || count != groups {
        at("PB", 0);
    }
    // Field formats, wherever they appear.
    for s in &t.segments {
        let g = s.group;
        for f in &s.fields {
            if let Some(r) = RULES.iter().find(|r| r.seg == s.id && r.id == f.id)
                && (f.value.len() > r.max || (!f.value.is_empty() && !form_ok(r.form, &f.value)))
            {
                at(r.reject, g);
            }
        }
        // A field id must be two printable characters.
        if s.fields.iter().any(|f| f.id.len() != 2) {
            at("R8", g);
        }
    }
    // What each transaction code requires.
    let insurance = t.segments.iter().find(|s| s.id == "04");
    let requires_insurance = matches!(h.transaction_code.as_str(), "E1" | "B1" | "B3");
    if requires_insurance {
        match insurance {
            None => at("PJ", 0),
            Some(s) if s.get("C2").is_none_or(|v| v.trim().is_empty()) => at("7", 0),
            _ => {}
        }
    }
    if matches!(h.transaction_code.as_str(), "B1" | "B2" | "B3") {
        for g in 1..=groups.min(4) {
            let claim = group_segments(t, g).find(|s| s.id == "07");
            let Some(claim) = claim else {
                at("PC", g);
                continue;
            };
            let missing = |id: &str| claim.get(id).is_none_or(|v| v.trim().is_empty());
            if missing("D2") {
                at("16", g);
            }
            if missing("D3") {
                at("17", g);
            }
            if missing("D7") {
                at("21", g);
            }
            if h.transaction_code != "B2" {
                if missing("E1") {
                    at("E1", g);
                }
                if missing("E7") || claim.get("E7").is_some_and(|v| v.bytes().all(|b| b == b'0')) {
                    at("E7", g);
                }
                if missing("D5") || claim.get("D5").is_some_and(|v| v.bytes().all(|b| b == b'0')) {
                    at("19", g);
                }
                match group_segments(t, g).find(|s| s.id == "11") {
                    None => at("PP", g),
                    Some(p) if p.get("DU").is_none() => at("DU", g),
                    _ => {}
                }
            }
            // An NDC has 11 digits.
            if claim.get("E1") == Some("03") && claim.get("D7").is_some_and(|v| !is_ndc(v)) {
                at("21", g);
            }
        }
    }
    out
}

/// An NDC in the 11-digit (5-4-2) form claims carry.
pub fn is_ndc(v: &str) -> bool {
    v.len() == 11 && v.bytes().all(|b| b.is_ascii_digit())
}

/// The identity of one pharmacy claim (what a reversal names): service
/// provider, prescription/service reference number, fill number and date
/// of service, joined. `None` when the group has no claim segment.
pub fn claim_identity(t: &Transmission, group: usize) -> Option<String> {
    let h = request_header(t)?;
    let claim = group_segments(t, group).find(|s| s.id == "07")?;
    let rx = claim.get("D2")?.trim_start_matches('0');
    let fill = claim.get("D3").unwrap_or("0").trim_start_matches('0');
    Some(format!("{}|{}|{}|{}|{}", h.provider_id_qualifier, h.provider_id, rx, fill, h.date_of_service))
}

/// The value of field `id` of segment `seg` in group `g`.
pub fn field<'a>(t: &'a Transmission, g: usize, seg: &str, id: &str) -> Option<&'a str> {
    group_segments(t, g).find(|s| s.id == seg).and_then(|s| s.get(id)).or_else(|| {
        // Transmission-level segments (patient, insurance) serve every group.
        t.segments.iter().find(|s| s.id == seg && s.group == 0).and_then(|s| s.get(id))
    })
}
