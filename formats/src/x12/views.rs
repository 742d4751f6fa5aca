//! Typed views: the business documents inside transaction sets.
//!
//! Each view is a small state machine over a set's segments that relies on
//! segment ids, qualifiers and HL level codes only, not on the validator's
//! loop resolution, so documents are still read from sets that fail
//! validation (a rejected claim still needs its CLM01 in the 277CA).
//!
//! Requests (837 claims, 270, 276, 834, 835) become the format-neutral types
//! of `clearway-core`; responses and acknowledgements (271, 277, 277CA, 999,
//! TA1) have read views defined here.

use super::reader::Segment;
use clearway_core::{
    Adjustment, Claim, ClaimKind, ClaimPayment, ClaimStatusRequest, ClinicalCode, Coverage, DateRange,
    EligibilityRequest, Enrollment, MaintenanceType, Member, Person, ProviderRef, ProviderRole, Remittance, Sensitive,
    ServiceLine, ServicePayment, SourceFormat,
};
use rust_decimal::Decimal;
use serde::Serialize;
use time::{Date, Month};

/// A business document read from a transaction set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "document", rename_all = "snake_case")]
pub enum Document {
    Claim(Box<Claim>),
    EligibilityRequest(Box<EligibilityRequest>),
    ClaimStatusRequest(Box<ClaimStatusRequest>),
    Enrollment(Box<Enrollment>),
    Remittance(Box<Remittance>),
    EligibilityResponse(Box<EligibilityResponse>),
    ClaimStatusResponse(Box<ClaimStatusResponse>),
    ImplementationAck(Box<Ack999>),
}

// ---------------------------------------------------------------- helpers --

fn text(v: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(v);
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parses an X12 R/N value.
pub fn decimal(v: &[u8]) -> Option<Decimal> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Parses CCYYMMDD.
pub fn date8(v: &[u8]) -> Option<Date> {
    if v.len() != 8 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |s: &[u8]| s.iter().fold(0u32, |a, &b| a * 10 + u32::from(b - b'0'));
    let month = Month::try_from(n(&v[4..6]) as u8).ok()?;
    Date::from_calendar_date(n(&v[..4]) as i32, month, n(&v[6..8]) as u8).ok()
}

/// A DTP/DMG date value by its format qualifier (D8 or RD8).
pub fn date_range(format: &[u8], v: &[u8]) -> Option<DateRange> {
    match format {
        b"D8" => date8(v).map(DateRange::day),
        b"RD8" => {
            let i = memchr::memchr(b'-', v)?;
            Some(DateRange { from: date8(&v[..i])?, to: date8(&v[i + 1..])? })
        }
        _ => None,
    }
}

fn person(nm1: &Segment<'_>) -> Person {
    Person {
        last_name: Sensitive::new(nm1.str(3).trim().to_string()),
        first_name: Sensitive::new(text(nm1.element(4))),
        middle_name: Sensitive::new(text(nm1.element(5))),
        birth_date: Sensitive::new(None),
        gender: None,
    }
}

fn demographics(p: &mut Person, dmg: &Segment<'_>) {
    if dmg.element(1) == b"D8" {
        p.birth_date = Sensitive::new(date8(dmg.element(2)));
    }
    p.gender = text(dmg.element(3));
}

/// The claim kind an 837 implementation guide implies.
pub fn claim_kind(implementation: &str) -> ClaimKind {
    if implementation.contains("X223") {
        ClaimKind::Institutional
    } else if implementation.contains("X224") {
        ClaimKind::Dental
    } else {
        ClaimKind::Professional
    }
}

// ------------------------------------------------------------- dispatcher --

/// The view for one transaction set, chosen by ST01 and the guide.
#[derive(Debug)]
pub enum SetView {
    Claims(Box<ClaimView>),
    Eligibility(Box<EligibilityView>),
    Status(Box<StatusView>),
    Enrollment(Box<EnrollmentView>),
    Remittance(Box<RemittanceView>),
    EligibilityResponse(Box<EligibilityResponseView>),
    StatusResponse(Box<StatusResponseView>),
    Ack(Box<AckView>),
    /// Sets we only envelope-check.
    Other(Box<super::analyze::SetContext>),
}

impl SetView {
    pub fn new(st01: &str, implementation: &str) -> Self {
        match st01 {
            "837" => SetView::Claims(Box::new(ClaimView::new(implementation))),
            "270" => SetView::Eligibility(Box::default()),
            "276" => SetView::Status(Box::default()),
            "834" => SetView::Enrollment(Box::default()),
            "835" => SetView::Remittance(Box::default()),
            "271" => SetView::EligibilityResponse(Box::default()),
            "277" => SetView::StatusResponse(Box::default()),
            "999" | "997" => SetView::Ack(Box::default()),
            _ => SetView::Other(Box::default()),
        }
    }

    /// Feeds one segment of the set (ST first, SE last).
    pub fn segment(&mut self, seg: &Segment<'_>) {
        // The set context (BHT and the submitter/receiver names) is common.
        let ctx = self.context_mut();
        match seg.id() {
            b"BHT" => {
                ctx.reference = text(seg.element(3));
                ctx.created_date = text(seg.element(4));
            }
            b"NM1" if seg.element(1) == b"41" && ctx.submitter_name.is_none() => {
                ctx.submitter_name = text(seg.element(3));
                ctx.submitter_id = text(seg.element(9));
            }
            b"NM1" if seg.element(1) == b"40" && ctx.receiver_name.is_none() => {
                ctx.receiver_name = text(seg.element(3));
                ctx.receiver_id = text(seg.element(9));
            }
            _ => {}
        }
        match self {
            SetView::Claims(v) => v.segment(seg),
            SetView::Eligibility(v) => v.segment(seg),
            SetView::Status(v) => v.segment(seg),
            SetView::Enrollment(v) => v.segment(seg),
            SetView::Remittance(v) => v.segment(seg),
            SetView::EligibilityResponse(v) => v.segment(seg),
            SetView::StatusResponse(v) => v.segment(seg),
            SetView::Ack(v) => v.segment(seg),
            SetView::Other(_) => {}
        }
    }

    /// Completes the last document at the end of the set.
    pub fn finish(&mut self) {
        match self {
            SetView::Claims(v) => v.flush(),
            SetView::Eligibility(v) => v.flush(),
            SetView::Status(v) => v.flush(),
            SetView::Enrollment(v) => v.finish(),
            SetView::Remittance(v) => v.finish(),
            SetView::EligibilityResponse(v) => v.flush(),
            SetView::StatusResponse(v) => v.flush(),
            SetView::Ack(v) => v.finish(),
            SetView::Other(_) => {}
        }
    }

    /// Documents completed so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Document> {
        let out = match self {
            SetView::Claims(v) => &mut v.out,
            SetView::Eligibility(v) => &mut v.out,
            SetView::Status(v) => &mut v.out,
            SetView::Enrollment(v) => &mut v.out,
            SetView::Remittance(v) => &mut v.out,
            SetView::EligibilityResponse(v) => &mut v.out,
            SetView::StatusResponse(v) => &mut v.out,
            SetView::Ack(v) => &mut v.out,
            SetView::Other(c) => &mut c.no_documents,
        };
        out.drain(..)
    }

    pub fn context(&self) -> &super::analyze::SetContext {
        match self {
            SetView::Claims(v) => &v.ctx,
            SetView::Eligibility(v) => &v.ctx,
            SetView::Status(v) => &v.ctx,
            SetView::Enrollment(v) => &v.ctx,
            SetView::Remittance(v) => &v.ctx,
            SetView::EligibilityResponse(v) => &v.ctx,
            SetView::StatusResponse(v) => &v.ctx,
            SetView::Ack(v) => &v.ctx,
            SetView::Other(c) => c,
        }
    }

    fn context_mut(&mut self) -> &mut super::analyze::SetContext {
        match self {
            SetView::Claims(v) => &mut v.ctx,
            SetView::Eligibility(v) => &mut v.ctx,
            SetView::Status(v) => &mut v.ctx,
            SetView::Enrollment(v) => &mut v.ctx,
            SetView::Remittance(v) => &mut v.ctx,
            SetView::EligibilityResponse(v) => &mut v.ctx,
            SetView::StatusResponse(v) => &mut v.ctx,
            SetView::Ack(v) => &mut v.ctx,
            SetView::Other(c) => c,
        }
    }
}

// -------------------------------------------------------------------- 837 --

/// Reads claims from an 837P, 837I or 837D.
#[derive(Debug)]
pub struct ClaimView {
    kind: ClaimKind,
    implementation: String,
    ctx: super::analyze::SetContext,
    level: Vec<u8>,
    billing_npi: Option<String>,
    billing_name: Option<String>,
    member_id: Option<String>,
    subscriber: Person,
    subscriber_is_patient: bool,
    payer_id: Option<String>,
    payer_name: Option<String>,
    patient: Option<Person>,
    /// Which NM1 the next DMG belongs to.
    last_person: u8,
    claim: Option<Claim>,
    claim_dates: Option<DateRange>,
    /// Inside a claim's other-payer loops (2320-2330x: from SBR to LX),
    /// whose NM1s name the other payer's view of the providers.
    other_payer: bool,
    out: Vec<Document>,
}

impl ClaimView {
    fn new(implementation: &str) -> Self {
        ClaimView {
            kind: claim_kind(implementation),
            implementation: implementation.to_string(),
            ctx: Default::default(),
            level: vec![],
            billing_npi: None,
            billing_name: None,
            member_id: None,
            subscriber: Person::default(),
            subscriber_is_patient: true,
            payer_id: None,
            payer_name: None,
            patient: None,
            last_person: 0,
            claim: None,
            claim_dates: None,
            other_payer: false,
            out: vec![],
        }
    }

    fn flush(&mut self) {
        if let Some(mut c) = self.claim.take() {
            if let Some(d) = self.claim_dates.take() {
                for l in c.service_lines.iter_mut().filter(|l| l.service_date.is_none()) {
                    l.service_date = Some(d);
                }
            }
            self.out.push(Document::Claim(Box::new(c)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"HL" => {
                self.flush();
                self.level = seg.element(3).to_vec();
                match self.level.as_slice() {
                    b"20" => {
                        self.billing_npi = None;
                        self.billing_name = None;
                    }
                    b"22" => {
                        self.member_id = None;
                        self.subscriber = Person::default();
                        self.payer_id = None;
                        self.payer_name = None;
                        self.patient = None;
                    }
                    b"23" => self.patient = Some(Person::default()),
                    _ => {}
                }
            }
            b"SBR" if self.claim.is_some() => self.other_payer = true,
            b"SBR" => self.subscriber_is_patient = seg.element(2) == b"18",
            b"NM1" if self.claim.is_some() => {
                self.last_person = 0;
                if self.other_payer {
                    return;
                }
                let kind = self.kind;
                if let Some(c) = self.claim.as_mut()
                    && let Some(role) = ProviderRole::from_entity(kind, seg.element(1))
                {
                    let npi = (seg.element(8) == b"XX").then(|| text(seg.element(9))).flatten();
                    let line = c.service_lines.last().map(|l| l.line_number);
                    c.providers.push(ProviderRef { role, npi, line });
                }
            }
            b"NM1" => match seg.element(1) {
                b"85" => {
                    self.billing_name = text(seg.element(3));
                    self.billing_npi = (seg.element(8) == b"XX").then(|| text(seg.element(9))).flatten();
                }
                b"IL" => {
                    self.subscriber = person(seg);
                    self.member_id = text(seg.element(9));
                    self.last_person = 1;
                }
                b"PR" => {
                    self.payer_name = text(seg.element(3));
                    self.payer_id = text(seg.element(9));
                }
                b"QC" => {
                    self.patient = Some(person(seg));
                    self.last_person = 2;
                }
                _ => self.last_person = 0,
            },
            b"DMG" => match self.last_person {
                1 => demographics(&mut self.subscriber, seg),
                2 => {
                    if let Some(p) = self.patient.as_mut() {
                        demographics(p, seg);
                    }
                }
                _ => {}
            },
            b"CLM" => {
                self.flush();
                let patient = if self.level == b"23" {
                    self.patient.clone().unwrap_or_default()
                } else {
                    self.subscriber.clone()
                };
                self.claim = Some(Claim {
                    source: SourceFormat::X12,
                    kind: self.kind,
                    implementation: Some(self.implementation.clone()),
                    patient_control_number: Sensitive::new(seg.str(1).to_string()),
                    total_charge: decimal(seg.element(2)).unwrap_or_default(),
                    facility_code: text(seg.component(5, 1)),
                    frequency_code: text(seg.component(5, 3)),
                    billing_provider_npi: self.billing_npi.clone(),
                    billing_provider_name: self.billing_name.clone(),
                    payer_id: self.payer_id.clone(),
                    payer_name: self.payer_name.clone(),
                    subscriber_member_id: Sensitive::new(self.member_id.clone()),
                    subscriber: self.subscriber.clone(),
                    patient,
                    diagnoses: Sensitive::new(vec![]),
                    procedures: Sensitive::new(vec![]),
                    service_lines: vec![],
                    providers: vec![ProviderRef {
                        role: ProviderRole::Billing,
                        npi: self.billing_npi.clone(),
                        line: None,
                    }],
                    payer_claim_control_number: None,
                    statement_dates: None,
                });
                self.other_payer = false;
            }
            b"HI" => {
                if let Some(c) = self.claim.as_mut() {
                    let comp = seg.delimiters().component;
                    for el in seg.elements() {
                        let mut parts = el.split(|&b| b == comp);
                        let (Some(q), Some(code)) = (parts.next(), parts.next().and_then(text)) else {
                            continue;
                        };
                        let diagnosis = matches!(
                            q,
                            b"ABK" | b"ABF" | b"ABJ" | b"ABN" | b"APR" | b"BK" | b"BF" | b"BJ" | b"BN" | b"PR"
                        );
                        let procedure = matches!(q, b"BBR" | b"BBQ" | b"BR" | b"BQ");
                        if !diagnosis && !procedure {
                            continue;
                        }
                        let date = match (parts.next(), parts.next()) {
                            (Some(b"D8"), Some(d)) => date8(d),
                            _ => None,
                        };
                        let value = ClinicalCode { qualifier: String::from_utf8_lossy(q).into_owned(), code, date };
                        let list = if diagnosis { &mut c.diagnoses } else { &mut c.procedures };
                        let mut codes = std::mem::take(list).into_inner();
                        codes.push(value);
                        *list = Sensitive::new(codes);
                    }
                }
            }
            b"REF" => {
                if let Some(c) = self.claim.as_mut() {
                    match (c.service_lines.last_mut(), seg.element(1)) {
                        (None, b"F8") if !self.other_payer => c.payer_claim_control_number = text(seg.element(2)),
                        (Some(line), b"6R") => line.control_number = text(seg.element(2)),
                        _ => {}
                    }
                }
            }
            b"LX" => {
                if let Some(c) = self.claim.as_mut() {
                    let n = seg.str(1).parse().unwrap_or(c.service_lines.len() as u32 + 1);
                    c.service_lines.push(ServiceLine {
                        line_number: n,
                        procedure_code: String::new(),
                        procedure_qualifier: None,
                        modifiers: vec![],
                        revenue_code: None,
                        charge: Decimal::ZERO,
                        units: None,
                        unit_basis: None,
                        service_date: None,
                        diagnosis_pointers: vec![],
                        place_of_service: None,
                        control_number: None,
                    });
                }
                self.other_payer = false;
            }
            b"SV1" | b"SV2" | b"SV3" => {
                let Some(line) = self.claim.as_mut().and_then(|c| c.service_lines.last_mut()) else {
                    return;
                };
                let comp = seg.delimiters().component;
                let pointers = |el: &[u8]| -> Vec<u8> {
                    el.split(|&b| b == comp).filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok()).collect()
                };
                let (proc_el, charge, basis, units) = match seg.id() {
                    b"SV1" => {
                        line.place_of_service = text(seg.element(5));
                        line.diagnosis_pointers = pointers(seg.element(7));
                        (1, 2, Some(3), Some(4))
                    }
                    b"SV2" => {
                        line.revenue_code = text(seg.element(1));
                        (2, 3, Some(4), Some(5))
                    }
                    _ => {
                        line.place_of_service = text(seg.element(3));
                        line.diagnosis_pointers = pointers(seg.element(11));
                        (1, 2, None, Some(6))
                    }
                };
                let proc = seg.element(proc_el);
                let mut parts = proc.split(|&b| b == comp);
                line.procedure_qualifier = parts.next().and_then(text);
                line.procedure_code = parts.next().and_then(text).unwrap_or_default();
                line.modifiers = parts.take(4).filter_map(text).collect();
                line.charge = decimal(seg.element(charge)).unwrap_or_default();
                line.unit_basis = basis.and_then(|b| text(seg.element(b)));
                line.units = units.and_then(|u| decimal(seg.element(u)));
            }
            b"DTP" => {
                let q = seg.element(1);
                let d = date_range(seg.element(2), seg.element(3));
                if let Some(c) = self.claim.as_mut() {
                    match c.service_lines.last_mut() {
                        Some(line) if q == b"472" => line.service_date = d,
                        None if !self.other_payer && matches!(q, b"472" | b"434") => {
                            if q == b"434" {
                                c.statement_dates = d;
                            }
                            self.claim_dates = d;
                        }
                        _ => {}
                    }
                }
            }
            b"SE" => self.flush(),
            _ => {}
        }
    }
}

// -------------------------------------------------------------------- 270 --

/// Reads eligibility inquiries from a 270: one per subscriber or dependent
/// asked about.
#[derive(Debug, Default)]
pub struct EligibilityView {
    ctx: super::analyze::SetContext,
    payer_id: Option<String>,
    payer_name: Option<String>,
    provider_npi: Option<String>,
    provider_name: Option<String>,
    provider_id: Option<(String, String)>,
    level: Vec<u8>,
    current: Option<EligibilityRequest>,
    /// The subscriber of the current 2000C, for dependents.
    subscriber: Option<(Person, Option<String>)>,
    current_has_children: bool,
    out: Vec<Document>,
}

impl EligibilityView {
    fn flush(&mut self) {
        if let Some(r) = self.current.take() {
            // A subscriber level with dependents and no benefit inquiry of its
            // own is only the path to the dependents.
            if r.dependent.is_some() || !r.service_types.is_empty() || !self.current_has_children {
                self.out.push(Document::EligibilityRequest(Box::new(r)));
            }
        }
    }

    fn blank(&self) -> EligibilityRequest {
        EligibilityRequest {
            source: SourceFormat::X12,
            trace_number: None,
            trace_originator: None,
            payer_id: self.payer_id.clone(),
            payer_name: self.payer_name.clone(),
            provider_npi: self.provider_npi.clone(),
            provider_name: self.provider_name.clone(),
            provider_id: self.provider_id.clone(),
            member_id: Sensitive::new(None),
            subscriber: Person::default(),
            dependent: None,
            service_types: vec![],
            date: None,
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"HL" => {
                self.flush();
                self.level = seg.element(3).to_vec();
                self.current_has_children = seg.element(4) == b"1";
                match self.level.as_slice() {
                    b"22" => {
                        self.subscriber = None;
                        self.current = Some(self.blank());
                    }
                    b"23" => {
                        let mut r = self.blank();
                        if let Some((p, id)) = &self.subscriber {
                            r.subscriber = p.clone();
                            r.member_id = Sensitive::new(id.clone());
                        }
                        r.dependent = Some(Person::default());
                        self.current = Some(r);
                    }
                    _ => {}
                }
            }
            b"NM1" => match (self.level.as_slice(), seg.element(1)) {
                (b"20", _) => {
                    self.payer_name = text(seg.element(3));
                    self.payer_id = text(seg.element(9));
                }
                (b"21", _) => {
                    self.provider_name = text(seg.element(3));
                    self.provider_npi = (seg.element(8) == b"XX").then(|| text(seg.element(9))).flatten();
                    self.provider_id = text(seg.element(8)).zip(text(seg.element(9)));
                }
                (b"22", _) => {
                    if let Some(r) = self.current.as_mut() {
                        r.subscriber = person(seg);
                        r.member_id = Sensitive::new(text(seg.element(9)));
                        self.subscriber = Some((r.subscriber.clone(), r.member_id.expose().clone()));
                    }
                }
                (b"23", _) => {
                    if let Some(r) = self.current.as_mut() {
                        r.dependent = Some(person(seg));
                    }
                }
                _ => {}
            },
            b"TRN" => {
                if let Some(r) = self.current.as_mut()
                    && r.trace_number.is_none()
                {
                    r.trace_number = text(seg.element(2));
                    r.trace_originator = text(seg.element(3));
                }
            }
            b"DMG" => {
                if let Some(r) = self.current.as_mut() {
                    match r.dependent.as_mut() {
                        Some(d) => demographics(d, seg),
                        None => {
                            demographics(&mut r.subscriber, seg);
                            if let Some(s) = self.subscriber.as_mut() {
                                s.0 = r.subscriber.clone();
                            }
                        }
                    }
                }
            }
            b"DTP" if seg.element(1) == b"291" => {
                if let Some(r) = self.current.as_mut() {
                    r.date = date_range(seg.element(2), seg.element(3));
                }
            }
            b"EQ" => {
                if let Some(r) = self.current.as_mut() {
                    for st in seg.repetitions(1) {
                        if let Some(t) = text(st)
                            && !r.service_types.contains(&t)
                        {
                            r.service_types.push(t);
                        }
                    }
                }
            }
            b"SE" => self.flush(),
            _ => {}
        }
    }
}

// -------------------------------------------------------------------- 276 --

/// Reads claim status inquiries from a 276: one per claim status tracking
/// number (TRN) asked about.
#[derive(Debug, Default)]
pub struct StatusView {
    ctx: super::analyze::SetContext,
    level: Vec<u8>,
    payer_id: Option<String>,
    payer_name: Option<String>,
    provider_npi: Option<String>,
    member_id: Option<String>,
    subscriber: Person,
    dependent: Option<Person>,
    current: Option<ClaimStatusRequest>,
    out: Vec<Document>,
}

impl StatusView {
    fn flush(&mut self) {
        if let Some(r) = self.current.take() {
            self.out.push(Document::ClaimStatusRequest(Box::new(r)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"HL" => {
                self.flush();
                self.level = seg.element(3).to_vec();
                match self.level.as_slice() {
                    b"22" => {
                        self.member_id = None;
                        self.subscriber = Person::default();
                        self.dependent = None;
                    }
                    b"23" => self.dependent = Some(Person::default()),
                    _ => {}
                }
            }
            b"NM1" => match seg.element(1) {
                b"PR" => {
                    self.payer_name = text(seg.element(3));
                    self.payer_id = text(seg.element(9));
                }
                b"1P" => {
                    self.provider_npi = (seg.element(8) == b"XX").then(|| text(seg.element(9))).flatten();
                }
                b"IL" => {
                    self.subscriber = person(seg);
                    self.member_id = text(seg.element(9));
                }
                b"QC" => self.dependent = Some(person(seg)),
                _ => {}
            },
            b"DMG" => match self.dependent.as_mut() {
                Some(d) => demographics(d, seg),
                None => demographics(&mut self.subscriber, seg),
            },
            b"TRN" => {
                self.flush();
                self.current = Some(ClaimStatusRequest {
                    source: SourceFormat::X12,
                    trace_number: text(seg.element(2)),
                    payer_id: self.payer_id.clone(),
                    payer_name: self.payer_name.clone(),
                    provider_npi: self.provider_npi.clone(),
                    member_id: Sensitive::new(self.member_id.clone()),
                    subscriber: self.subscriber.clone(),
                    dependent: self.dependent.clone(),
                    patient_control_number: Sensitive::new(None),
                    payer_claim_control_number: None,
                    total_charge: None,
                    service_date: None,
                });
            }
            b"REF" => {
                if let Some(r) = self.current.as_mut() {
                    match seg.element(1) {
                        b"1K" => r.payer_claim_control_number = text(seg.element(2)),
                        b"EJ" => r.patient_control_number = Sensitive::new(text(seg.element(2))),
                        _ => {}
                    }
                }
            }
            b"AMT" if seg.element(1) == b"T3" => {
                if let Some(r) = self.current.as_mut() {
                    r.total_charge = decimal(seg.element(2));
                }
            }
            b"DTP" if seg.element(1) == b"472" => {
                if let Some(r) = self.current.as_mut()
                    && r.service_date.is_none()
                {
                    r.service_date = date_range(seg.element(2), seg.element(3));
                }
            }
            b"SE" => self.flush(),
            _ => {}
        }
    }
}

// -------------------------------------------------------------------- 834 --

/// Reads an 834 into one [`Enrollment`] per transaction set.
#[derive(Debug, Default)]
pub struct EnrollmentView {
    ctx: super::analyze::SetContext,
    enrollment: Option<Enrollment>,
    member: Option<Member>,
    in_coverage: bool,
    out: Vec<Document>,
}

impl EnrollmentView {
    fn enrollment(&mut self) -> &mut Enrollment {
        self.enrollment.get_or_insert_with(|| Enrollment {
            source: SourceFormat::X12,
            sponsor_id: None,
            payer_id: None,
            members: vec![],
        })
    }

    fn end_member(&mut self) {
        if let Some(m) = self.member.take() {
            self.enrollment().members.push(m);
        }
        self.in_coverage = false;
    }

    fn finish(&mut self) {
        self.end_member();
        if let Some(e) = self.enrollment.take() {
            self.out.push(Document::Enrollment(Box::new(e)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"N1" if self.member.is_none() => match seg.element(1) {
                b"P5" => self.enrollment().sponsor_id = text(seg.element(4)),
                b"IN" => self.enrollment().payer_id = text(seg.element(4)),
                _ => {}
            },
            b"INS" => {
                self.end_member();
                self.member = Some(Member {
                    is_subscriber: seg.element(1) == b"Y",
                    relationship: text(seg.element(2)),
                    maintenance: match seg.element(3) {
                        b"001" => MaintenanceType::Change,
                        b"021" => MaintenanceType::Addition,
                        b"024" => MaintenanceType::Termination,
                        b"025" => MaintenanceType::Reinstatement,
                        b"030" => MaintenanceType::Audit,
                        _ => MaintenanceType::Other,
                    },
                    subscriber_id: Sensitive::new(None),
                    member_id: Sensitive::new(None),
                    person: Person::default(),
                    coverages: vec![],
                });
            }
            b"REF" if seg.element(1) == b"0F" => {
                if let Some(m) = self.member.as_mut() {
                    m.subscriber_id = Sensitive::new(text(seg.element(2)));
                }
            }
            b"NM1" if seg.element(1) == b"IL" => {
                if let Some(m) = self.member.as_mut() {
                    m.person = person(seg);
                    m.member_id = Sensitive::new(text(seg.element(9)));
                }
            }
            b"DMG" => {
                if let Some(m) = self.member.as_mut()
                    && m.person.birth_date.expose().is_none()
                {
                    demographics(&mut m.person, seg);
                }
            }
            b"HD" => {
                if let Some(m) = self.member.as_mut() {
                    self.in_coverage = true;
                    m.coverages.push(Coverage {
                        insurance_line: text(seg.element(3)),
                        plan: text(seg.element(4)),
                        coverage_level: text(seg.element(5)),
                        begin: None,
                        end: None,
                    });
                }
            }
            b"DTP" if self.in_coverage => {
                if let Some(c) = self.member.as_mut().and_then(|m| m.coverages.last_mut()) {
                    let d = date8(seg.element(3));
                    match seg.element(1) {
                        b"348" => c.begin = d,
                        b"349" => c.end = d,
                        _ => {}
                    }
                }
            }
            b"LS" | b"LE" | b"LX" => {}
            b"SE" => self.finish(),
            _ => {}
        }
    }
}

// -------------------------------------------------------------------- 835 --

/// Reads an 835 into a [`Remittance`] per transaction set.
#[derive(Debug, Default)]
pub struct RemittanceView {
    ctx: super::analyze::SetContext,
    remittance: Option<Remittance>,
    party: u8,
    /// Inside a service line (loop 2110) of the last claim: its CAS, DTM
    /// and REF belong to the line.
    in_line: bool,
    out: Vec<Document>,
}

/// The adjustments of a CAS segment: its group and up to six (reason,
/// amount, quantity) triplets.
fn adjustments(seg: &Segment<'_>) -> Vec<Adjustment> {
    let group = seg.str(1);
    (0..6)
        .map_while(|i| {
            let reason = text(seg.element(2 + 3 * i))?;
            Some(Adjustment {
                group: group.to_string(),
                reason,
                amount: decimal(seg.element(3 + 3 * i)).unwrap_or_default(),
                quantity: decimal(seg.element(4 + 3 * i)),
            })
        })
        .collect()
}

impl RemittanceView {
    /// The service line being read, if any.
    fn line(&mut self) -> Option<&mut ServicePayment> {
        if !self.in_line {
            return None;
        }
        self.remittance.as_mut()?.claims.last_mut()?.lines.last_mut()
    }

    fn remittance(&mut self) -> &mut Remittance {
        self.remittance.get_or_insert_with(|| Remittance {
            source: SourceFormat::X12,
            payment_amount: Decimal::ZERO,
            payment_date: None,
            trace_number: None,
            payer_id: None,
            payer_name: None,
            payee_npi: None,
            claims: vec![],
        })
    }

    fn finish(&mut self) {
        if let Some(r) = self.remittance.take() {
            self.out.push(Document::Remittance(Box::new(r)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"BPR" => {
                let r = self.remittance();
                r.payment_amount = decimal(seg.element(2)).unwrap_or_default();
                r.payment_date = date8(seg.element(16));
            }
            b"TRN" => {
                let r = self.remittance();
                if r.trace_number.is_none() {
                    r.trace_number = text(seg.element(2));
                }
            }
            b"N1" => match seg.element(1) {
                b"PR" => {
                    self.party = 1;
                    let r = self.remittance();
                    r.payer_name = text(seg.element(3));
                    if seg.element(2).is_empty() || seg.element(4).is_empty() {
                    } else {
                        r.payer_id = text(seg.element(4));
                    }
                }
                b"PE" => {
                    self.party = 2;
                    let r = self.remittance();
                    if seg.element(3) == b"XX" {
                        r.payee_npi = text(seg.element(4));
                    }
                }
                _ => self.party = 0,
            },
            b"REF" if self.party == 1 && seg.element(1) == b"2U" => {
                self.remittance().payer_id = text(seg.element(2));
            }
            b"CLP" => {
                self.party = 0;
                self.in_line = false;
                let claim = ClaimPayment {
                    patient_control_number: Sensitive::new(seg.str(1).to_string()),
                    status_code: seg.str(2).to_string(),
                    charge: decimal(seg.element(3)).unwrap_or_default(),
                    paid: decimal(seg.element(4)).unwrap_or_default(),
                    patient_responsibility: decimal(seg.element(5)),
                    payer_claim_control_number: text(seg.element(7)),
                    adjustments: vec![],
                    lines: vec![],
                };
                self.remittance().claims.push(claim);
            }
            b"SVC" => {
                let comp = seg.delimiters().component;
                let mut parts = seg.element(1).split(|&b| b == comp);
                let line = ServicePayment {
                    procedure_qualifier: parts.next().and_then(text),
                    procedure_code: parts.next().and_then(text).unwrap_or_default(),
                    modifiers: parts.take(4).filter_map(text).collect(),
                    original_procedure_code: seg.element(6).split(|&b| b == comp).nth(1).and_then(text),
                    charge: decimal(seg.element(2)).unwrap_or_default(),
                    paid: decimal(seg.element(3)).unwrap_or_default(),
                    revenue_code: text(seg.element(4)),
                    units_paid: decimal(seg.element(5)),
                    service_date: None,
                    control_number: None,
                    adjustments: vec![],
                };
                if let Some(claim) = self.remittance.as_mut().and_then(|r| r.claims.last_mut()) {
                    claim.lines.push(line);
                    self.in_line = true;
                }
            }
            b"CAS" => {
                let found = adjustments(seg);
                if let Some(line) = self.line() {
                    line.adjustments.extend(found);
                } else if let Some(claim) = self.remittance.as_mut().and_then(|r| r.claims.last_mut()) {
                    claim.adjustments.extend(found);
                }
            }
            b"DTM" => {
                let qualifier = seg.element(1);
                let d = date8(seg.element(2)).filter(|_| matches!(qualifier, b"472" | b"150" | b"151"));
                if let (Some(line), Some(d)) = (self.line(), d) {
                    let span = line.service_date.get_or_insert(DateRange::day(d));
                    match qualifier {
                        b"150" => span.from = d,
                        b"151" => span.to = d,
                        _ => *span = DateRange::day(d),
                    }
                    if span.to < span.from {
                        span.to = span.from;
                    }
                }
            }
            b"REF" if seg.element(1) == b"6R" => {
                if let Some(line) = self.line() {
                    line.control_number = text(seg.element(2));
                }
            }
            b"LX" | b"PLB" => self.in_line = false,
            b"SE" => {
                self.in_line = false;
                self.finish();
            }
            _ => {}
        }
    }
}

/// Reads the 835 transaction sets of an X12 stream in chunks of at most
/// `max_claims` claim payments: `each` is given a [`Remittance`] with its
/// set's header (payment, trace, payer, payee) and the next claims, and the
/// position of its first claim in the set. Memory is one chunk, whatever
/// the size of the file; the segments are read as they come (no
/// validation: callers that need the verdict run the validator).
pub fn remittance_chunks<R: std::io::Read>(
    input: R,
    max_claims: usize,
    mut each: impl FnMut(&Remittance, usize),
) -> Result<(), super::ReadError> {
    let max_claims = max_claims.max(1);
    let mut reader = super::SegmentReader::new(input);
    let mut view: Option<RemittanceView> = None;
    // Claims of the current set handed out so far.
    let mut handed = 0;
    // The rest of a set, at its SE, or when it ends without one (at the
    // next ST, GE, IEA or the end of the input), as the whole-set reader
    // keeps it.
    fn rest_of_set(view: &mut Option<RemittanceView>, handed: usize, each: &mut impl FnMut(&Remittance, usize)) {
        if let Some(r) = view.take().and_then(|mut v| v.remittance.take())
            && (!r.claims.is_empty() || handed == 0)
        {
            each(&r, handed);
        }
    }
    while let Some(seg) = reader.next_segment()? {
        if matches!(seg.id(), b"SE" | b"ST" | b"GE" | b"IEA") {
            rest_of_set(&mut view, handed, &mut each);
            handed = 0;
        }
        if seg.id() == b"ST" {
            view = (seg.element(1) == b"835").then(RemittanceView::default);
            continue;
        }
        let Some(v) = view.as_mut() else { continue };
        if seg.id() == b"CLP"
            && let Some(r) = v.remittance.as_mut()
            && r.claims.len() >= max_claims
        {
            each(r, handed);
            handed += r.claims.len();
            r.claims.clear();
        }
        v.segment(&seg);
    }
    rest_of_set(&mut view, handed, &mut each);
    Ok(())
}

// -------------------------------------------------------------------- 271 --

/// An AAA request validation: why a level of a 271 could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// HL03 level the AAA appeared at (`20` payer, `21` provider, `22`, `23`).
    pub level: String,
    /// AAA03 reject reason code (`72` invalid member id, ...).
    pub reason: String,
    /// AAA04 follow-up action code.
    pub action: Option<String>,
}

/// One EB eligibility or benefit segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Benefit {
    /// EB01 (`1` active coverage, `6` inactive, ...).
    pub code: String,
    pub coverage_level: Option<String>,
    pub service_types: Vec<String>,
    pub insurance_type: Option<String>,
    pub plan: Option<String>,
}

/// What a 271 says about one subscriber or dependent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EligibilityResponse {
    pub trace_numbers: Vec<String>,
    pub payer_id: Option<String>,
    pub member_id: Sensitive<Option<String>>,
    pub rejections: Vec<Rejection>,
    pub benefits: Vec<Benefit>,
}

/// Reads a 271.
#[derive(Debug, Default)]
pub struct EligibilityResponseView {
    ctx: super::analyze::SetContext,
    level: Vec<u8>,
    payer_id: Option<String>,
    /// AAAs at the payer or provider level apply to everyone below.
    upper_rejections: Vec<Rejection>,
    current: Option<EligibilityResponse>,
    out: Vec<Document>,
}

impl EligibilityResponseView {
    fn flush(&mut self) {
        if let Some(r) = self.current.take() {
            self.out.push(Document::EligibilityResponse(Box::new(r)));
        } else if !self.upper_rejections.is_empty() && self.out.is_empty() && self.level.is_empty() {
            // nothing below the rejected level
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"HL" => {
                self.flush();
                self.level = seg.element(3).to_vec();
                if matches!(self.level.as_slice(), b"22" | b"23") {
                    self.current = Some(EligibilityResponse {
                        trace_numbers: vec![],
                        payer_id: self.payer_id.clone(),
                        member_id: Sensitive::new(None),
                        rejections: self.upper_rejections.clone(),
                        benefits: vec![],
                    });
                }
            }
            b"NM1" => match (self.level.as_slice(), seg.element(1)) {
                (b"20", _) => self.payer_id = text(seg.element(9)),
                (b"22" | b"23", b"IL" | b"03") => {
                    if let Some(r) = self.current.as_mut()
                        && r.member_id.expose().is_none()
                    {
                        r.member_id = Sensitive::new(text(seg.element(9)));
                    }
                }
                _ => {}
            },
            b"TRN" => {
                if let (Some(r), Some(t)) = (self.current.as_mut(), text(seg.element(2))) {
                    r.trace_numbers.push(t);
                }
            }
            b"AAA" => {
                let rej = Rejection {
                    level: String::from_utf8_lossy(&self.level).into_owned(),
                    reason: seg.str(3).to_string(),
                    action: text(seg.element(4)),
                };
                match self.current.as_mut() {
                    Some(r) => r.rejections.push(rej),
                    None => self.upper_rejections.push(rej),
                }
            }
            b"EB" => {
                if let Some(r) = self.current.as_mut() {
                    r.benefits.push(Benefit {
                        code: seg.str(1).to_string(),
                        coverage_level: text(seg.element(2)),
                        service_types: seg.repetitions(3).filter_map(text).collect(),
                        insurance_type: text(seg.element(4)),
                        plan: text(seg.element(5)),
                    });
                }
            }
            b"SE" => {
                self.flush();
                if self.out.is_empty() && !self.upper_rejections.is_empty() {
                    self.out.push(Document::EligibilityResponse(Box::new(EligibilityResponse {
                        trace_numbers: vec![],
                        payer_id: self.payer_id.clone(),
                        member_id: Sensitive::new(None),
                        rejections: std::mem::take(&mut self.upper_rejections),
                        benefits: vec![],
                    })));
                }
            }
            _ => {}
        }
    }
}

// ------------------------------------------------------------ 277 / 277CA --

/// One STC status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// STC01-1 claim status category (`A2`, `A7`, `F1`, ...).
    pub category: String,
    /// STC01-2 claim status code.
    pub code: String,
    /// STC01-3 entity identifier.
    pub entity: Option<String>,
    /// STC03 action code (`WQ` accepted, `U` rejected in a 277CA).
    pub action: Option<String>,
    /// STC04 total claim charge.
    pub charge: Option<Decimal>,
    /// STC05 claim payment amount.
    pub paid: Option<Decimal>,
}

/// Status of one claim (or of a whole level) in a 277 or 277CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimStatusResponse {
    /// HL03 level (`PT` patient/claim in a 277CA; `22`/`23` in a 277; `20`/`21`/`19` for batch statuses).
    pub level: String,
    /// TRN02: the claim's patient control number (277CA) or the inquiry's trace (277).
    pub trace: Sensitive<Option<String>>,
    pub statuses: Vec<Status>,
    /// REF*1K payer claim control number.
    pub payer_claim_control_number: Option<String>,
    /// REF*D9 clearinghouse trace number.
    pub clearinghouse_trace: Option<String>,
    /// Service-line statuses (loop 2220): SVC01 procedure and its STCs.
    pub lines: Vec<LineStatus>,
}

/// The status of one service line of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineStatus {
    /// SVC01 composite as sent (qualifier and procedure code).
    pub procedure: String,
    pub statuses: Vec<Status>,
}

/// Reads a 277 (X212) or 277CA (X214).
#[derive(Debug, Default)]
pub struct StatusResponseView {
    ctx: super::analyze::SetContext,
    level: Vec<u8>,
    current: Option<ClaimStatusResponse>,
    out: Vec<Document>,
}

impl StatusResponseView {
    fn flush(&mut self) {
        if let Some(r) = self.current.take()
            && (!r.statuses.is_empty() || r.trace.expose().is_some())
        {
            self.out.push(Document::ClaimStatusResponse(Box::new(r)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        match seg.id() {
            b"HL" => {
                self.flush();
                self.level = seg.element(3).to_vec();
            }
            b"TRN" => {
                // A new TRN starts a new status report within the level (a
                // 277 may report several claims for one patient).
                self.flush();
                self.current = Some(ClaimStatusResponse {
                    level: String::from_utf8_lossy(&self.level).into_owned(),
                    trace: Sensitive::new(text(seg.element(2))),
                    statuses: vec![],
                    payer_claim_control_number: None,
                    clearinghouse_trace: None,
                    lines: vec![],
                });
            }
            b"STC" => {
                let d = seg.delimiters();
                let first = seg.element(1);
                let part = |i| text(super::reader::component(first, d.component, i));
                let status = Status {
                    category: part(1).unwrap_or_default(),
                    code: part(2).unwrap_or_default(),
                    entity: part(3),
                    action: text(seg.element(3)),
                    charge: decimal(seg.element(4)),
                    paid: decimal(seg.element(5)),
                };
                if let Some(r) = self.current.as_mut() {
                    match r.lines.last_mut() {
                        Some(line) => line.statuses.push(status),
                        None => r.statuses.push(status),
                    }
                }
            }
            b"REF" => {
                if let Some(r) = self.current.as_mut() {
                    match seg.element(1) {
                        b"1K" => r.payer_claim_control_number = text(seg.element(2)),
                        b"D9" => r.clearinghouse_trace = text(seg.element(2)),
                        _ => {}
                    }
                }
            }
            b"SVC" => {
                if let Some(r) = self.current.as_mut() {
                    r.lines.push(LineStatus { procedure: seg.str(1).to_string(), statuses: vec![] });
                }
            }
            b"SE" => self.flush(),
            _ => {}
        }
    }
}

// -------------------------------------------------------------- 999 / TA1 --

/// A TA1 interchange acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ta1 {
    /// TA101: ISA13 of the acknowledged interchange.
    pub control_number: String,
    pub date: String,
    pub time: String,
    /// TA104 A/E/R.
    pub ack_code: String,
    /// TA105 note code.
    pub note_code: String,
}

impl Ta1 {
    pub fn read(seg: &Segment<'_>) -> Self {
        Ta1 {
            control_number: seg.str(1).to_string(),
            date: seg.str(2).to_string(),
            time: seg.str(3).to_string(),
            ack_code: seg.str(4).to_string(),
            note_code: seg.str(5).to_string(),
        }
    }
}

/// An IK3 (or 997 AK3) as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckSegmentError {
    pub segment: String,
    pub position: String,
    pub loop_id: Option<String>,
    pub code: String,
    /// IK4s: (position, reference, code).
    pub elements: Vec<(String, String, String)>,
}

/// One acknowledged transaction set (AK2 .. IK5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckSet {
    pub id: String,
    pub control_number: String,
    pub implementation: Option<String>,
    /// IK501 / AK501.
    pub code: String,
    pub error_codes: Vec<String>,
    pub segment_errors: Vec<AckSegmentError>,
}

/// A 999 (or 997) as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack999 {
    /// AK101 functional identifier of the acknowledged group.
    pub functional_id: String,
    /// AK102 group control number.
    pub group_control_number: String,
    /// AK103.
    pub version: Option<String>,
    pub sets: Vec<AckSet>,
    /// AK901.
    pub code: String,
    /// AK902, AK903, AK904.
    pub included: Option<u32>,
    pub received: Option<u32>,
    pub accepted: Option<u32>,
    pub error_codes: Vec<String>,
}

/// Reads a 999 or 997.
#[derive(Debug, Default)]
pub struct AckView {
    ctx: super::analyze::SetContext,
    ack: Option<Ack999>,
    out: Vec<Document>,
}

impl AckView {
    fn finish(&mut self) {
        if let Some(a) = self.ack.take() {
            self.out.push(Document::ImplementationAck(Box::new(a)));
        }
    }

    fn segment(&mut self, seg: &Segment<'_>) {
        let list = |from: usize| (from..from + 5).filter_map(|i| text(seg.element(i))).collect::<Vec<_>>();
        match seg.id() {
            b"AK1" => {
                self.ack = Some(Ack999 {
                    functional_id: seg.str(1).to_string(),
                    group_control_number: seg.str(2).to_string(),
                    version: text(seg.element(3)),
                    sets: vec![],
                    code: String::new(),
                    included: None,
                    received: None,
                    accepted: None,
                    error_codes: vec![],
                })
            }
            b"AK2" => {
                if let Some(a) = self.ack.as_mut() {
                    a.sets.push(AckSet {
                        id: seg.str(1).to_string(),
                        control_number: seg.str(2).to_string(),
                        implementation: text(seg.element(3)),
                        code: String::new(),
                        error_codes: vec![],
                        segment_errors: vec![],
                    });
                }
            }
            b"IK3" | b"AK3" => {
                if let Some(s) = self.ack.as_mut().and_then(|a| a.sets.last_mut()) {
                    s.segment_errors.push(AckSegmentError {
                        segment: seg.str(1).to_string(),
                        position: seg.str(2).to_string(),
                        loop_id: text(seg.element(3)),
                        code: seg.str(4).to_string(),
                        elements: vec![],
                    });
                }
            }
            b"IK4" | b"AK4" => {
                if let Some(e) =
                    self.ack.as_mut().and_then(|a| a.sets.last_mut()).and_then(|s| s.segment_errors.last_mut())
                {
                    e.elements.push((seg.str(1).to_string(), seg.str(2).to_string(), seg.str(3).to_string()));
                }
            }
            b"IK5" | b"AK5" => {
                if let Some(s) = self.ack.as_mut().and_then(|a| a.sets.last_mut()) {
                    s.code = seg.str(1).to_string();
                    s.error_codes = list(2);
                }
            }
            b"AK9" => {
                if let Some(a) = self.ack.as_mut() {
                    a.code = seg.str(1).to_string();
                    a.included = seg.str(2).parse().ok();
                    a.received = seg.str(3).parse().ok();
                    a.accepted = seg.str(4).parse().ok();
                    a.error_codes = list(5);
                }
            }
            b"SE" => self.finish(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x12::Delimiters;

    fn feed(view: &mut SetView, segs: &[&str]) -> Vec<Document> {
        for s in segs {
            view.segment(&Segment::new(s.as_bytes(), Delimiters::default()));
        }
        view.finish();
        view.drain().collect()
    }

    /// An interchange of two 835 sets (7 and 2 claims) around a 277.
    fn two_835s() -> Vec<u8> {
        let set = |st: &str, claims: usize| {
            let mut segs = vec![
                format!("ST*835*{st}*005010X221A1"),
                "BPR*I*70.00*C*ACH*CCP*01*999*DA*123*1512345678**01*999*DA*456*20240110".to_string(),
                format!("TRN*1*TRACE{st}*1512345678"),
                "N1*PR*PAYER ONE".into(),
                "REF*2U*P1".into(),
                "N1*PE*CLINIC*XX*1234567893".into(),
                "LX*1".into(),
            ];
            for n in 0..claims {
                segs.push(format!("CLP*PCN{st}-{n}*1*10.00*{n}.00**12*ICN{n}"));
                segs.push("CAS*CO*45*1.00".into());
                segs.push(format!("SVC*HC:99213*10.00*{n}.00**1"));
                segs.push("DTM*472*20240102".into());
            }
            segs.push(format!("SE*{}*{st}", segs.len() + 1));
            segs.join("~") + "~"
        };
        format!(
            "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*^*00501*000000001*0*T*:~\
             GS*HP*S*R*20240101*1200*1*X*005010X221A1~{}{}ST*277*0003*005010X214~SE*2*0003~GE*3*1~IEA*1*000000001~",
            set("0001", 7),
            set("0002", 2)
        )
        .into_bytes()
    }

    #[test]
    fn an_835_is_read_in_chunks_of_claims_equal_to_the_whole() {
        for x12 in [two_835s(), without_an_se()] {
            chunks_equal_the_whole(&x12);
        }
    }

    /// [`two_835s`] with the second set's SE missing.
    fn without_an_se() -> Vec<u8> {
        let text = String::from_utf8(two_835s()).unwrap();
        text.split_inclusive('~')
            .filter(|s| !(s.starts_with("SE*") && s.ends_with("*0002~")))
            .collect::<String>()
            .into_bytes()
    }

    fn chunks_equal_the_whole(x12: &[u8]) {
        let whole: Vec<Remittance> = crate::x12::analyze(x12, &Default::default())
            .documents()
            .filter_map(|d| match d {
                Document::Remittance(r) => Some((**r).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(whole.iter().map(|r| r.claims.len()).collect::<Vec<_>>(), vec![7, 2]);
        for max in [1, 3, 7, 1000] {
            let mut got: Vec<Remittance> = Vec::new();
            remittance_chunks(x12, max, |r, first| {
                assert!(r.claims.len() <= max);
                match got.last_mut() {
                    Some(g) if g.trace_number == r.trace_number => {
                        assert_eq!(first, g.claims.len(), "numbered from where the last chunk ended");
                        g.claims.extend(r.claims.iter().cloned());
                    }
                    _ => {
                        assert_eq!(first, 0);
                        got.push(r.clone());
                    }
                }
            })
            .unwrap();
            assert_eq!(got, whole, "chunks of {max}");
        }
    }

    #[test]
    fn reads_remittance_lines_and_adjustments_at_both_levels() {
        let mut v = SetView::new("835", "005010X221A1");
        let docs = feed(
            &mut v,
            &[
                "ST*835*0001*005010X221A1",
                "BPR*I*150.00*C*ACH*CCP*01*999*DA*123*1512345678**01*999*DA*456*20240110",
                "TRN*1*TRACE1*1512345678",
                "N1*PR*PAYER ONE",
                "REF*2U*P1",
                "N1*PE*CLINIC*XX*1234567893",
                "LX*1",
                "CLP*PCN1*1*300.00*150.00*50.00*12*ICN1",
                "CAS*OA*23*10.00",
                "NM1*QC*1*DOE*JOHN****MI*M1",
                "DTM*232*20240101",
                "SVC*HC:99213:25:59*200.00*120.00**1",
                "DTM*472*20240102",
                "CAS*CO*45*30.00**1*50.00",
                "CAS*PR*2*0.00*1",
                "REF*6R*LINE-1",
                "SVC*NU:0450*100.00*30.00*0450*2*HC:99285",
                "DTM*036*20240110",
                "DTM*150*20240103",
                "DTM*151*20240105",
                "CAS*CO*97*70.00",
                "CLP*PCN2*4*80.00*0.00**12*ICN2",
                "CAS*CO*29*80.00",
                "SE*23*0001",
            ],
        );
        let [Document::Remittance(rm)] = docs.as_slice() else { panic!("{docs:?}") };
        assert_eq!(rm.payer_id.as_deref(), Some("P1"));
        let [c1, c2] = rm.claims.as_slice() else { panic!() };
        assert_eq!(
            c1.adjustments,
            vec![Adjustment { group: "OA".into(), reason: "23".into(), amount: Decimal::new(1000, 2), quantity: None }]
        );
        let [l1, l2] = c1.lines.as_slice() else { panic!("{:?}", c1.lines) };
        assert_eq!((l1.procedure_qualifier.as_deref(), l1.procedure_code.as_str()), (Some("HC"), "99213"));
        assert_eq!(l1.modifiers, vec!["25".to_string(), "59".to_string()]);
        assert_eq!(
            (l1.charge, l1.paid, l1.units_paid),
            (Decimal::new(20000, 2), Decimal::new(12000, 2), Some(Decimal::ONE))
        );
        let d = |d: u8| Date::from_calendar_date(2024, Month::January, d).unwrap();
        assert_eq!(l1.service_date, Some(DateRange::day(d(2))));
        assert_eq!(l1.control_number.as_deref(), Some("LINE-1"));
        // A CAS carries up to six triplets after its group; the group
        // applies to each of them, and an empty triplet ends the list.
        let got: Vec<(&str, &str, Decimal, Option<Decimal>)> =
            l1.adjustments.iter().map(|a| (a.group.as_str(), a.reason.as_str(), a.amount, a.quantity)).collect();
        assert_eq!(
            got,
            vec![
                ("CO", "45", Decimal::new(3000, 2), None),
                ("CO", "1", Decimal::new(5000, 2), None),
                ("PR", "2", Decimal::new(0, 2), Some(Decimal::ONE)),
            ]
        );
        assert_eq!(l2.revenue_code.as_deref(), Some("0450"));
        assert_eq!(
            (l1.original_procedure_code.as_deref(), l2.original_procedure_code.as_deref()),
            (None, Some("99285"))
        );
        assert_eq!(l2.units_paid, Some(Decimal::TWO));
        assert_eq!(l2.service_date, Some(DateRange { from: d(3), to: d(5) }));
        assert_eq!(l2.adjustments.len(), 1);
        // The second claim's CAS is its own, not the previous line's.
        assert!(c2.lines.is_empty());
        assert_eq!(c2.adjustments[0].reason, "29");
        assert_eq!(c2.status_code, "4");
    }

    #[test]
    fn reads_claims_with_lines_dates_and_patient() {
        let mut v = SetView::new("837", "005010X222A1");
        let docs = feed(
            &mut v,
            &[
                "ST*837*0001*005010X222A1",
                "BHT*0019*00*REF1*20240101*1200*CH",
                "NM1*41*2*SUBMITTER*****46*S1",
                "HL*1**20*1",
                "NM1*85*2*CLINIC*****XX*1234567893",
                "HL*2*1*22*1",
                "SBR*P********CI",
                "NM1*IL*1*DOE*JOHN****MI*M1",
                "DMG*D8*19700101*M",
                "NM1*PR*2*PAYER*****PI*P1",
                "HL*3*2*23*0",
                "PAT*19",
                "NM1*QC*1*DOE*JANE",
                "DMG*D8*20100101*F",
                "CLM*PCN1*150***11:B:1*Y*A*Y*Y",
                "HI*ABK:J020*ABF:R05",
                "LX*1",
                "SV1*HC:99213:25*100*UN*1***1",
                "DTP*472*D8*20240102",
                "LX*2",
                "SV1*HC:87880*50*UN*1***1",
                "DTP*472*RD8*20240103-20240104",
                "SE*22*0001",
            ],
        );
        assert_eq!(docs.len(), 1);
        let Document::Claim(c) = &docs[0] else { panic!("{docs:?}") };
        assert_eq!(c.patient_control_number.expose(), "PCN1");
        assert_eq!(c.total_charge, Decimal::new(150, 0));
        assert_eq!(c.billing_provider_npi.as_deref(), Some("1234567893"));
        assert_eq!(c.payer_id.as_deref(), Some("P1"));
        assert_eq!(c.subscriber_member_id.expose().as_deref(), Some("M1"));
        assert_eq!(c.patient.first_name.expose().as_deref(), Some("JANE"));
        let codes: Vec<&str> = c.diagnoses.expose().iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["J020", "R05"]);
        assert_eq!(c.service_lines.len(), 2);
        assert_eq!(c.service_lines[0].modifiers, vec!["25".to_string()]);
        assert_eq!(c.summary().line_charge_total, Decimal::new(150, 0));
        assert_eq!(v.context().reference.as_deref(), Some("REF1"));
        assert_eq!(v.context().submitter_id.as_deref(), Some("S1"));
    }

    #[test]
    fn reads_999() {
        let mut v = SetView::new("999", "005010X231A1");
        let docs = feed(
            &mut v,
            &[
                "ST*999*0001*005010X231A1",
                "AK1*HC*17*005010X222A1",
                "AK2*837*0001*005010X222A1",
                "IK3*NM1*5*2010AA*8",
                "IK4*9*67*I12",
                "IK5*R*5",
                "AK9*R*1*1*0",
                "SE*8*0001",
            ],
        );
        let Document::ImplementationAck(a) = &docs[0] else { panic!() };
        assert_eq!(a.code, "R");
        assert_eq!(a.sets[0].segment_errors[0].elements[0].2, "I12");
        assert_eq!(a.accepted, Some(0));
    }
}
