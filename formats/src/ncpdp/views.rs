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
    /// Segment ids present, in order (`01`, `04`, `07`, …).
    pub segments: Vec<String>,
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
    pub segments: Vec<String>,
}

fn get(t: &Transmission, seg: &str, field: &str) -> Option<String> {
    t.segment(seg, 1).and_then(|s| s.get(field)).map(str::to_string)
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
        segments: t.segments.iter().map(|s| s.id.clone()).collect(),
    })
}
