//! Typed views of the segments D.0 requests and responses carry, by the
//! standard's field ids. Values are as sent (money still overpunched); a
//! view never fails: a field that is absent is `None`.

use super::{Header, Transmission};

/// What a B1/B2/B3/E1 request says (the first transaction group's claim
/// level; the transmission-level patient and insurance segments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub transaction_code: String,
    pub bin: String,
    pub pcn: String,
    pub service_provider_id: String,
    pub date_of_service: String,
    /// AM01 patient: C4 date of birth, C5 gender code.
    pub date_of_birth: Option<String>,
    pub gender: Option<String>,
    /// AM04 insurance: C2 cardholder id, C1 group id, C3 person code.
    pub cardholder_id: Option<String>,
    pub group_id: Option<String>,
    pub person_code: Option<String>,
    /// AM07 claim: D2 prescription/service reference number, D3 fill
    /// number, E1 product/service id qualifier, D7 product/service id (NDC),
    /// E7 quantity dispensed, D5 days' supply.
    pub prescription_number: Option<String>,
    pub fill_number: Option<String>,
    pub product_id_qualifier: Option<String>,
    pub product_id: Option<String>,
    pub quantity: Option<String>,
    pub days_supply: Option<String>,
    /// AM03 prescriber: EZ qualifier, DB prescriber id.
    pub prescriber_id_qualifier: Option<String>,
    pub prescriber_id: Option<String>,
    /// AM11 pricing, in cents: D9 ingredient cost submitted, DC dispensing
    /// fee submitted, DQ usual and customary charge, DU gross amount due.
    pub pricing: Pricing,
    /// AM08 DUR/PPS: one per 7E occurrence (E4 reason for service, E5
    /// professional service, E6 result of service).
    pub dur: Vec<Dur>,
    /// AM05 COB/other payments: 4C count, then per other payer 5C coverage
    /// type, 6C id qualifier, 7C id, E8 date; DV amounts paid; 6E reject
    /// codes.
    pub cob: Vec<OtherPayer>,
    /// AM10 compound: EF dosage form, EG dispensing unit, and per
    /// ingredient RE qualifier, TE product id, ED quantity, EE drug cost
    /// (cents).
    pub compound: Option<Compound>,
    /// AM13 clinical: WE qualifier and DO code per diagnosis.
    pub diagnoses: Vec<(Option<String>, String)>,
    /// Segment ids present, in order (`01`, `04`, `07`, …).
    pub segments: Vec<String>,
}

/// Money of a pricing segment, in cents (signed overpunch read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    pub ingredient_cost: Option<i64>,
    pub dispensing_fee: Option<i64>,
    pub usual_and_customary: Option<i64>,
    pub gross_amount_due: Option<i64>,
}

/// One DUR/PPS occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dur {
    pub reason: Option<String>,
    pub professional_service: Option<String>,
    pub result: Option<String>,
}

/// One other payer of a COB segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherPayer {
    pub coverage_type: Option<String>,
    pub id_qualifier: Option<String>,
    pub id: Option<String>,
    pub date: Option<String>,
    /// DV: other payer amounts paid, in cents.
    pub amounts_paid: Vec<i64>,
    /// 6E: the other payer's reject codes.
    pub reject_codes: Vec<String>,
}

/// A compound's ingredients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compound {
    pub dosage_form: Option<String>,
    pub dispensing_unit: Option<String>,
    pub ingredients: Vec<Ingredient>,
}

/// One ingredient of a compound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingredient {
    /// RE: product id qualifier.
    pub qualifier: Option<String>,
    /// TE: product id.
    pub product_id: Option<String>,
    /// ED: quantity.
    pub quantity: Option<String>,
    /// EE: drug cost, in cents.
    pub cost: Option<i64>,
}

/// What a response says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub transaction_code: String,
    /// Header response status: `A` or `R`.
    pub header_status: String,
    /// AM21 AN: transaction response status (`P` paid, `C` captured, `D`
    /// duplicate of paid, `R` rejected, `A` approved, …).
    pub status: Option<String>,
    /// AM21 F3: authorization number.
    pub authorization: Option<String>,
    /// AM21 FB (repeating): reject codes.
    pub reject_codes: Vec<String>,
    /// AM20 F4: message.
    pub message: Option<String>,
    /// AM24 DUR: E4 reason for service codes.
    pub dur_reasons: Vec<String>,
    /// AM23 pricing, in cents: F5 patient pay amount, F6 ingredient cost
    /// paid, F7 dispensing fee paid, F9 total amount paid.
    pub patient_pay: Option<i64>,
    pub ingredient_cost_paid: Option<i64>,
    pub dispensing_fee_paid: Option<i64>,
    pub total_paid: Option<i64>,
    /// AM22 claim: D2 prescription/service reference number.
    pub prescription_number: Option<String>,
    /// AM25 insurance: C1 group id.
    pub group_id: Option<String>,
    pub segments: Vec<String>,
}

fn get(t: &Transmission, seg: &str, field: &str) -> Option<String> {
    t.segment(seg, 1).and_then(|s| s.get(field)).map(str::to_string)
}

fn money(t: &Transmission, seg: &str, field: &str) -> Option<i64> {
    t.segment(seg, 1).and_then(|s| s.get(field)).and_then(super::validate::overpunch_cents)
}

/// The fields of segment `seg` (first group) in order, split into
/// occurrences: a new occurrence starts at each `start` field.
fn occurrences<'a>(t: &'a Transmission, seg: &str, start: &str) -> Vec<Vec<(&'a str, &'a str)>> {
    let mut out: Vec<Vec<(&str, &str)>> = Vec::new();
    if let Some(s) = t.segment(seg, 1) {
        for f in &s.fields {
            if f.id == start || out.is_empty() {
                out.push(Vec::new());
            }
            if let Some(last) = out.last_mut() {
                last.push((f.id.as_str(), f.value.as_str()));
            }
        }
    }
    out
}

fn first(o: &[(&str, &str)], id: &str) -> Option<String> {
    o.iter().find(|(k, _)| *k == id).map(|(_, v)| v.to_string())
}

/// The request view; `None` for a response.
pub fn request(t: &Transmission) -> Option<Request> {
    let Header::Request(h) = &t.header else { return None };
    Some(Request {
        transaction_code: h.transaction_code.clone(),
        bin: h.bin.clone(),
        pcn: h.pcn.clone(),
        service_provider_id: h.provider_id.clone(),
        date_of_service: h.date_of_service.clone(),
        date_of_birth: get(t, "01", "C4"),
        gender: get(t, "01", "C5"),
        cardholder_id: get(t, "04", "C2"),
        group_id: get(t, "04", "C1"),
        person_code: get(t, "04", "C3"),
        prescription_number: get(t, "07", "D2"),
        fill_number: get(t, "07", "D3"),
        product_id_qualifier: get(t, "07", "E1"),
        product_id: get(t, "07", "D7"),
        quantity: get(t, "07", "E7"),
        days_supply: get(t, "07", "D5"),
        prescriber_id_qualifier: get(t, "03", "EZ"),
        prescriber_id: get(t, "03", "DB"),
        pricing: Pricing {
            ingredient_cost: money(t, "11", "D9"),
            dispensing_fee: money(t, "11", "DC"),
            usual_and_customary: money(t, "11", "DQ"),
            gross_amount_due: money(t, "11", "DU"),
        },
        dur: occurrences(t, "08", "7E")
            .iter()
            .filter(|o| o.iter().any(|(k, _)| matches!(*k, "E4" | "E5" | "E6")))
            .map(|o| Dur { reason: first(o, "E4"), professional_service: first(o, "E5"), result: first(o, "E6") })
            .collect(),
        cob: occurrences(t, "05", "5C")
            .iter()
            .filter(|o| o.iter().any(|(k, _)| *k == "5C"))
            .map(|o| OtherPayer {
                coverage_type: first(o, "5C"),
                id_qualifier: first(o, "6C"),
                id: first(o, "7C"),
                date: first(o, "E8"),
                amounts_paid: o
                    .iter()
                    .filter(|(k, _)| *k == "DV")
                    .filter_map(|(_, v)| super::validate::overpunch_cents(v))
                    .collect(),
                reject_codes: o.iter().filter(|(k, _)| *k == "6E").map(|(_, v)| v.to_string()).collect(),
            })
            .collect(),
        compound: t.segment("10", 1).map(|s| Compound {
            dosage_form: s.get("EF").map(str::to_string),
            dispensing_unit: s.get("EG").map(str::to_string),
            ingredients: occurrences(t, "10", "RE")
                .iter()
                .filter(|o| o.iter().any(|(k, _)| *k == "RE"))
                .map(|o| Ingredient {
                    qualifier: first(o, "RE"),
                    product_id: first(o, "TE"),
                    quantity: first(o, "ED"),
                    cost: first(o, "EE").and_then(|v| super::validate::overpunch_cents(&v)),
                })
                .collect(),
        }),
        diagnoses: occurrences(t, "13", "WE")
            .iter()
            .filter_map(|o| first(o, "DO").map(|code| (first(o, "WE"), code)))
            .collect(),
        segments: t.segments.iter().map(|s| s.id.clone()).collect(),
    })
}

/// The response view; `None` for a request.
pub fn response(t: &Transmission) -> Option<Response> {
    let Header::Response(h) = &t.header else { return None };
    let status = t.segment("21", 1);
    Some(Response {
        transaction_code: h.transaction_code.clone(),
        header_status: h.status.clone(),
        status: status.and_then(|s| s.get("AN")).map(str::to_string),
        authorization: status.and_then(|s| s.get("F3")).map(str::to_string),
        reject_codes: status.map(|s| s.all("FB").map(str::to_string).collect()).unwrap_or_default(),
        message: get(t, "20", "F4"),
        dur_reasons: t.segment("24", 1).map(|s| s.all("E4").map(str::to_string).collect()).unwrap_or_default(),
        patient_pay: money(t, "23", "F5"),
        ingredient_cost_paid: money(t, "23", "F6"),
        dispensing_fee_paid: money(t, "23", "F7"),
        total_paid: money(t, "23", "F9"),
        prescription_number: get(t, "22", "D2"),
        group_id: get(t, "25", "C1"),
        segments: t.segments.iter().map(|s| s.id.clone()).collect(),
    })
}
