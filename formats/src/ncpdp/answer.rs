//! Building D.0 responses, and the pharmacy claim edits the `local`
//! connector answers with.
//!
//! A response echoes the request's version, transaction code, count,
//! service provider and date of service; its header response status is `A`
//! when the transmission was processed (each transaction then has its own
//! status) and `R` when the transmission itself was rejected. Each
//! transaction group carries a message segment (AM20) when there is a
//! message, and a response status segment (AM21: 112-AN transaction
//! response status, 503-F3 authorization number, 510-FA reject count and
//! up to five 511-FB reject codes).

use super::validate::{field, overpunch_cents, request_header, valid_date};
use super::{Header, ResponseHeader, SegmentSpec, Transmission};
use clearway_core::edits::{PHARMACY, Policy, Severity};

/// Transaction response statuses (112-AN) Clearway answers with.
pub mod status {
    pub const PAID: &str = "P";
    pub const CAPTURED: &str = "C";
    pub const APPROVED: &str = "A";
    pub const REJECTED: &str = "R";
    pub const DUPLICATE_OF_PAID: &str = "D";
    pub const DUPLICATE_OF_CAPTURE: &str = "Q";
    pub const DUPLICATE_OF_APPROVED: &str = "S";
}

/// The duplicate status for a transaction answered before with `status`
/// (paid → duplicate of paid, captured → duplicate of capture, approved →
/// duplicate of approved).
pub fn duplicate_of(status: &str) -> Option<&'static str> {
    match status {
        "P" | "D" => Some(status::DUPLICATE_OF_PAID),
        "C" | "Q" => Some(status::DUPLICATE_OF_CAPTURE),
        "A" | "S" => Some(status::DUPLICATE_OF_APPROVED),
        _ => None,
    }
}

/// What one transaction (group) is answered.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// 112-AN.
    pub status: String,
    pub rejects: Vec<String>,
    /// 504-F4 (no PHI: codes and ids only).
    pub message: Option<String>,
    /// 503-F3.
    pub authorization: Option<String>,
}

impl Outcome {
    pub fn rejected<I: IntoIterator<Item = S>, S: Into<String>>(codes: I) -> Self {
        Outcome {
            status: status::REJECTED.into(),
            rejects: codes.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn with_status(status: &str) -> Self {
        Outcome { status: status.into(), ..Default::default() }
    }
}

/// The response header that answers a request header (fields echoed).
fn echo(t: Option<&Transmission>, raw: &[u8], code_fallback: &str, accepted: bool) -> ResponseHeader {
    let status = if accepted { "A" } else { "R" }.to_string();
    if let Some(h) = t.and_then(request_header) {
        return ResponseHeader {
            version: "D0".into(),
            transaction_code: h.transaction_code.clone(),
            transaction_count: h.transaction_count,
            status,
            provider_id_qualifier: h.provider_id_qualifier.clone(),
            provider_id: h.provider_id.clone(),
            // A date that is not one would not read back as part of the
            // header (the reader takes eight digits there, or none).
            date_of_service: Some(h.date_of_service.clone()).filter(|d| d.bytes().all(|b| b.is_ascii_digit())),
        };
    }
    // Unreadable: echo what sits where a request header puts it.
    let at = |from: usize, to: usize| raw.get(from..to.min(raw.len())).map(super::clean).unwrap_or_default();
    let code = at(8, 10);
    ResponseHeader {
        version: "D0".into(),
        transaction_code: if code.trim().len() == 2 { code } else { code_fallback.into() },
        transaction_count: 1,
        status,
        // A qualifier is two digits; anything else is not echoed.
        provider_id_qualifier: Some(at(21, 23)).filter(|q| q.bytes().all(|b| b.is_ascii_digit())).unwrap_or_default(),
        provider_id: at(23, 38).trim_end().to_string(),
        date_of_service: Some(at(38, 46)).filter(|d| valid_date(d)),
    }
}

/// The response to a request: one outcome per transaction group.
pub fn respond(request: &Transmission, outcomes: &[Outcome]) -> Transmission {
    build(echo(Some(request), &[], "B1", true), outcomes)
}

/// The response that rejects a whole transmission (it could not be read, or
/// its header is wrong): header status `R`, one group with the codes.
pub fn reject_transmission(request: Option<&Transmission>, raw: &[u8], codes: &[&str]) -> Transmission {
    let mut h = echo(request, raw, "B1", false);
    h.transaction_count = 1;
    build(h, &[Outcome::rejected(codes.iter().copied())])
}

/// A segment to write, owned: its id and its fields.
type OwnedSegment = (&'static str, Vec<(&'static str, String)>);

fn build(header: ResponseHeader, outcomes: &[Outcome]) -> Transmission {
    let mut header = header;
    header.transaction_count = outcomes.len().clamp(1, 4) as u8;
    let groups: Vec<Vec<OwnedSegment>> = outcomes
        .iter()
        .take(4)
        .map(|o| {
            let mut segs: Vec<OwnedSegment> = Vec::new();
            if let Some(m) = &o.message {
                segs.push(("20", vec![("F4", m.chars().take(200).collect())]));
            }
            let mut f = vec![("AN", o.status.clone())];
            if let Some(a) = &o.authorization {
                f.push(("F3", a.clone()));
            }
            if !o.rejects.is_empty() {
                f.push(("FA", o.rejects.len().min(5).to_string()));
                f.extend(o.rejects.iter().take(5).map(|r| ("FB", r.clone())));
            }
            segs.push(("21", f));
            segs
        })
        .collect();
    let fields: Vec<Vec<Vec<(&str, &str)>>> = groups
        .iter()
        .map(|g| g.iter().map(|(_, f)| f.iter().map(|(k, v)| (*k, v.as_str())).collect()).collect())
        .collect();
    let specs: Vec<Vec<SegmentSpec<'_>>> = groups
        .iter()
        .zip(&fields)
        .map(|(g, f)| g.iter().zip(f).map(|((id, _), f)| (*id, f.as_slice())).collect())
        .collect();
    Transmission::response(&header, &[], &specs)
}

/// The outcome of every group of a response (its AM21 and AM20), and its
/// header status.
pub fn outcomes(response: &Transmission) -> Option<(String, Vec<Outcome>)> {
    let Header::Response(h) = &response.header else { return None };
    let groups = response.groups();
    let out = (1..=groups)
        .map(|g| {
            let st = response.segments.iter().find(|s| s.id == "21" && (s.group == g || (groups == 1 && s.group == 0)));
            Outcome {
                status: st.and_then(|s| s.get("AN")).unwrap_or("").to_string(),
                rejects: st.map(|s| s.all("FB").map(str::to_string).collect()).unwrap_or_default(),
                message: None,
                authorization: st.and_then(|s| s.get("F3")).map(str::to_string),
            }
        })
        .collect();
    Some((h.status.clone(), out))
}

/// Runs the pharmacy edits on group `g` of a well-formed B1/B3: the
/// reject codes of the edits set to `reject` that fire, and the ids of
/// those set to `warn` that fire.
pub fn pharmacy_edits(
    t: &Transmission,
    g: usize,
    today: time::Date,
    policy: &Policy,
) -> (Vec<String>, Vec<&'static str>) {
    let (mut rejects, mut warnings) = (Vec::new(), Vec::new());
    let Some(h) = request_header(t) else { return (rejects, warnings) };
    let date = super::validate::parse_date;
    for e in PHARMACY {
        let fired: Option<&str> = match e.id {
            "ncpdp.npi.pharmacy" => (h.provider_id_qualifier == "01"
                && !crate::x12::validate::valid_npi(h.provider_id.as_bytes()))
            .then_some(e.reject),
            "ncpdp.npi.prescriber" => (field(t, g, "03", "EZ") == Some("01")
                && field(t, g, "03", "DB").is_some_and(|v| !crate::x12::validate::valid_npi(v.as_bytes())))
            .then_some(e.reject),
            "ncpdp.dates" => {
                let dos = date(&h.date_of_service);
                let written = field(t, g, "07", "DE").and_then(date);
                let tomorrow = today.next_day().unwrap_or(today);
                if written.is_some_and(|w| w > tomorrow) {
                    Some("28")
                } else if dos.is_some_and(|d| d > tomorrow || written.is_some_and(|w| d < w)) {
                    Some(e.reject)
                } else {
                    None
                }
            }
            "ncpdp.days_supply" => {
                field(t, g, "07", "D5").and_then(|v| v.parse::<u32>().ok()).filter(|d| *d > 365).map(|_| e.reject)
            }
            // 9999999.999: three implied decimals.
            "ncpdp.quantity" => field(t, g, "07", "E7")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|q| *q > 100_000_000)
                .map(|_| e.reject),
            _ => None,
        };
        let Some(code) = fired else { continue };
        match policy.severity_of(e.id) {
            Severity::Reject => {
                if !rejects.iter().any(|r| r == code) {
                    rejects.push(code.to_string());
                }
            }
            Severity::Warn => warnings.push(e.id),
            Severity::Off => {}
        }
    }
    (rejects, warnings)
}

/// The gross amount due (430-DU) of group `g` in cents, when present.
pub fn gross_amount_due_cents(t: &Transmission, g: usize) -> Option<i64> {
    field(t, g, "11", "DU").and_then(overpunch_cents)
}
