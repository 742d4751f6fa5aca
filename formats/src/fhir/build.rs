//! Builders of the FHIR R4 responses Clearway sends: ClaimResponse and
//! CoverageEligibilityResponse (OperationOutcome is in `outcome`).
//!
//! The caller supplies ids, timestamps and references; nothing here reads a
//! clock. A builder checks what it is given against R4 (id syntax, non-empty
//! strings, code syntax, required elements, years 1..9999, amounts that JSON
//! output carries exactly) and returns a [`BuildError`] naming the element
//! instead of emitting an invalid resource.

use super::claim::ClaimDoc;
use super::codes::{CLAIM_TYPE_SYSTEM, ClaimUse, EligibilityPurpose, ResponseOutcome, claim_type_code};
use super::eligibility::EligibilityDoc;
use super::json::{field, index};
use super::model::{Coding, Identifier, Reference};
use super::outcome::OutcomeIssue;
use super::primitives::{is_code, is_currency, is_fhir_string, is_id, is_uri};
use clearway_core::{ClaimKind, DateRange};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::str::FromStr;
use time::{Date, OffsetDateTime};

/// `ClaimResponse.item.adjudication.category` and `.total.category` codes.
pub const ADJUDICATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adjudication";
/// R4's example adjudication error codes (`a001` missing identifier, `a002`
/// missing creation date).
pub const ADJUDICATION_ERROR_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adjudication-error";
/// X12 reject reason codes (AAA03, code source 901), as Da Vinci PAS uses them.
pub const X12_REJECT_REASON_SYSTEM: &str = "https://codesystem.x12.org/005010/901";
/// OperationOutcome issue types, used as error codes for validation rejections.
pub const ISSUE_TYPE_SYSTEM: &str = "http://hl7.org/fhir/issue-type";
/// Benefit categories; R4's example codes are X12 service type codes.
pub const BENEFIT_CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory";
/// Benefit types (`benefit`, `deductible`, `copay`, ...).
pub const BENEFIT_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/benefit-type";

/// A response could not be built as valid R4 from what was supplied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build {element}: {reason}")]
pub struct BuildError {
    /// The element of the response (`ClaimResponse.item[0].adjudication`).
    pub element: String,
    pub reason: &'static str,
}

fn err<T>(element: impl Into<String>, reason: &'static str) -> Result<T, BuildError> {
    Err(BuildError { element: element.into(), reason })
}

/// One adjudication of an item (`ClaimResponse.item.adjudication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjudication {
    /// Usually from [`ADJUDICATION_SYSTEM`] (`submitted`, `eligible`, `benefit`, ...).
    pub category: Coding,
    pub reason: Option<Coding>,
    pub amount: Option<Decimal>,
    /// A non-monetary value (a percentage for `eligpercent`).
    pub value: Option<Decimal>,
}

impl Adjudication {
    /// An amount in a category of [`ADJUDICATION_SYSTEM`].
    pub fn amount(category: &str, amount: Decimal) -> Self {
        Adjudication {
            category: Coding::new(ADJUDICATION_SYSTEM, category),
            reason: None,
            amount: Some(amount),
            value: None,
        }
    }
}

/// `ClaimResponse.item`: the adjudication of one claim item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAdjudication {
    /// The `Claim.item.sequence` adjudicated.
    pub item_sequence: u32,
    /// At least one (R4 1..*).
    pub adjudication: Vec<Adjudication>,
}

/// `ClaimResponse.total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjudicationTotal {
    pub category: Coding,
    pub amount: Decimal,
}

/// `ClaimResponse.error`: why a claim (or one of its items) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingError {
    pub item_sequence: Option<u32>,
    pub detail_sequence: Option<u32>,
    pub sub_detail_sequence: Option<u32>,
    pub code: Coding,
}

impl ProcessingError {
    /// A validation finding as an error coded with its issue type
    /// (system [`ISSUE_TYPE_SYSTEM`]). The finding's diagnostics are not
    /// carried: the OperationOutcome is the place for them.
    pub fn from_issue(issue: &OutcomeIssue) -> Self {
        ProcessingError {
            item_sequence: None,
            detail_sequence: None,
            sub_detail_sequence: None,
            code: Coding::new(ISSUE_TYPE_SYSTEM, issue.code.as_str()),
        }
    }
}

/// Everything a ClaimResponse says; see [`claim_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimResponseSpec {
    /// `ClaimResponse.id` (FHIR id syntax).
    pub id: String,
    pub identifier: Option<Identifier>,
    pub created: OffsetDateTime,
    /// Echoes `Claim.type`.
    pub kind: ClaimKind,
    /// Echoes `Claim.use`.
    pub claim_use: ClaimUse,
    pub patient: Reference,
    pub insurer: Reference,
    /// The provider the response is for (`Claim.provider`).
    pub requestor: Option<Reference>,
    /// The Claim answered.
    pub request: Option<Reference>,
    pub outcome: ResponseOutcome,
    pub disposition: Option<String>,
    pub pre_auth_ref: Option<String>,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    pub items: Vec<ItemAdjudication>,
    pub totals: Vec<AdjudicationTotal>,
    pub errors: Vec<ProcessingError>,
}

/// A Reference usable outside the submission it came from: a local
/// (`#contained`) reference means nothing in another resource, so only its
/// identifier and display are kept.
fn external_reference(r: &Reference, type_: &str, fallback_display: &str) -> Reference {
    if r.reference.as_deref().is_some_and(|s| s.starts_with('#')) {
        let mut out = Reference {
            reference: None,
            type_: Some(type_.to_owned()),
            identifier: r.identifier.clone(),
            display: r.display.clone(),
        };
        if out.identifier.is_none() && out.display.is_none() {
            out.display = Some(fallback_display.to_owned());
        }
        out
    } else {
        r.clone()
    }
}

/// The request answered: `Type/id`, else a logical reference by identifier.
fn request_reference(type_: &str, id: Option<&str>, identifier: Option<&Identifier>) -> Option<Reference> {
    match (id, identifier) {
        (Some(id), _) => Some(Reference::literal(format!("{type_}/{id}"))),
        (None, Some(i)) => Some(Reference::logical(Some(type_), i.clone())),
        (None, None) => None,
    }
}

impl ClaimResponseSpec {
    /// A response to `doc` that echoes its type, use, patient, insurer and
    /// provider. With outcome `error`, the claim's error findings become
    /// `error[]` entries. `None` when the claim lacks what a ClaimResponse
    /// requires (a processable type, use, patient and insurer); answer such a
    /// claim with an OperationOutcome instead.
    pub fn for_claim(
        doc: &ClaimDoc,
        id: impl Into<String>,
        created: OffsetDateTime,
        outcome: ResponseOutcome,
    ) -> Option<Self> {
        let h = &doc.header;
        let patient = h.patient.expose().as_ref()?;
        let errors = if outcome == ResponseOutcome::Error {
            doc.issues.iter().filter(|i| i.severity.blocks_processing()).map(ProcessingError::from_issue).collect()
        } else {
            Vec::new()
        };
        Some(ClaimResponseSpec {
            id: id.into(),
            identifier: None,
            created,
            kind: h.kind?,
            claim_use: h.claim_use?,
            patient: external_reference(patient, "Patient", "patient of the submitted claim"),
            insurer: external_reference(h.insurer.as_ref()?, "Organization", "insurer of the submitted claim"),
            requestor: h
                .provider
                .as_ref()
                .map(|p| external_reference(p, "Organization", "provider of the submitted claim")),
            request: request_reference("Claim", h.id.as_deref(), h.identifier.expose().as_ref()),
            outcome,
            disposition: None,
            pre_auth_ref: None,
            currency: "USD".to_owned(),
            items: Vec::new(),
            totals: Vec::new(),
            errors,
        })
    }
}

/// Reject reasons of an eligibility response, as X12 AAA03 codes
/// ([`X12_REJECT_REASON_SYSTEM`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EligibilityRejectReason {
    /// 15: required application data missing.
    RequiredDataMissing,
    /// 42: unable to respond at current time.
    UnableToRespondNow,
    /// 43: invalid/missing provider identification.
    InvalidProvider,
    /// 58: invalid/missing date of birth.
    InvalidBirthDate,
    /// 65: invalid/missing patient name.
    InvalidPatientName,
    /// 67: patient not found.
    PatientNotFound,
    /// 72: invalid/missing subscriber/insured id.
    InvalidMemberId,
    /// 73: invalid/missing subscriber/insured name.
    InvalidSubscriberName,
    /// 75: subscriber/insured not found.
    SubscriberNotFound,
}

impl EligibilityRejectReason {
    pub fn x12_code(self) -> &'static str {
        match self {
            EligibilityRejectReason::RequiredDataMissing => "15",
            EligibilityRejectReason::UnableToRespondNow => "42",
            EligibilityRejectReason::InvalidProvider => "43",
            EligibilityRejectReason::InvalidBirthDate => "58",
            EligibilityRejectReason::InvalidPatientName => "65",
            EligibilityRejectReason::PatientNotFound => "67",
            EligibilityRejectReason::InvalidMemberId => "72",
            EligibilityRejectReason::InvalidSubscriberName => "73",
            EligibilityRejectReason::SubscriberNotFound => "75",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            EligibilityRejectReason::RequiredDataMissing => "Required Application Data Missing",
            EligibilityRejectReason::UnableToRespondNow => "Unable to Respond at Current Time",
            EligibilityRejectReason::InvalidProvider => "Invalid/Missing Provider Identification",
            EligibilityRejectReason::InvalidBirthDate => "Invalid/Missing Date-of-Birth",
            EligibilityRejectReason::InvalidPatientName => "Invalid/Missing Patient Name",
            EligibilityRejectReason::PatientNotFound => "Patient Not Found",
            EligibilityRejectReason::InvalidMemberId => "Invalid/Missing Subscriber/Insured ID",
            EligibilityRejectReason::InvalidSubscriberName => "Invalid/Missing Subscriber/Insured Name",
            EligibilityRejectReason::SubscriberNotFound => "Subscriber/Insured Not Found",
        }
    }

    pub fn coding(self) -> Coding {
        Coding::new(X12_REJECT_REASON_SYSTEM, self.x12_code()).with_display(self.display())
    }
}

/// A benefit amount (`allowed[x]` / `used[x]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenefitValue {
    Money(Decimal),
    /// 0 ..= 2^31-1.
    UnsignedInt(u32),
    Text(String),
}

/// `CoverageEligibilityResponse.insurance.item.benefit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Benefit {
    /// Usually from [`BENEFIT_TYPE_SYSTEM`].
    pub benefit_type: Coding,
    pub allowed: Option<BenefitValue>,
    pub used: Option<BenefitValue>,
}

/// `CoverageEligibilityResponse.insurance.item`, identified by category
/// (ces-1: a category or a product, not both; Clearway answers by category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitItem {
    /// Usually from [`BENEFIT_CATEGORY_SYSTEM`] (the X12 service type).
    pub category: Coding,
    pub excluded: Option<bool>,
    pub name: Option<String>,
    /// `in` / `out` (benefit-network).
    pub network: Option<Coding>,
    /// `individual` / `family` (benefit-unit).
    pub unit: Option<Coding>,
    /// `annual` / `day` / `lifetime` (benefit-term).
    pub term: Option<Coding>,
    pub benefits: Vec<Benefit>,
    pub authorization_required: Option<bool>,
}

impl BenefitItem {
    /// An item for an X12 service type code (`30`, `69`, ...).
    pub fn service_type(code: &str) -> Self {
        BenefitItem {
            category: Coding::new(BENEFIT_CATEGORY_SYSTEM, code),
            excluded: None,
            name: None,
            network: None,
            unit: None,
            term: None,
            benefits: Vec::new(),
            authorization_required: None,
        }
    }
}

/// `CoverageEligibilityResponse.insurance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsuranceSpec {
    pub coverage: Reference,
    pub inforce: Option<bool>,
    /// `benefitPeriod` start and optional end.
    pub benefit_period: Option<(Date, Option<Date>)>,
    /// Benefits, when the coverage is in force and benefits were asked for.
    pub items: Vec<BenefitItem>,
}

/// Everything a CoverageEligibilityResponse says; see
/// [`coverage_eligibility_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityResponseSpec {
    pub id: String,
    pub identifier: Option<Identifier>,
    pub created: OffsetDateTime,
    /// At least one; echoes the request's purposes.
    pub purposes: Vec<EligibilityPurpose>,
    pub patient: Reference,
    pub serviced: Option<DateRange>,
    pub requestor: Option<Reference>,
    /// The CoverageEligibilityRequest answered (R4 1..1).
    pub request: Reference,
    pub outcome: ResponseOutcome,
    pub disposition: Option<String>,
    pub insurer: Reference,
    pub insurance: Vec<InsuranceSpec>,
    pub pre_auth_ref: Option<String>,
    /// ISO 4217 currency of money benefits.
    pub currency: String,
    /// `error[].code`: why the request could not be answered (member not
    /// found, invalid member id: see [`EligibilityRejectReason`]).
    pub errors: Vec<Coding>,
}

impl EligibilityResponseSpec {
    /// A response to `doc` echoing its purposes, patient, insurer, provider
    /// and serviced date. `None` when the request lacks what a response
    /// requires (purpose, patient, insurer, and an id or identifier).
    pub fn for_request(
        doc: &EligibilityDoc,
        id: impl Into<String>,
        created: OffsetDateTime,
        outcome: ResponseOutcome,
    ) -> Option<Self> {
        let h = &doc.header;
        if h.purposes.is_empty() {
            return None;
        }
        Some(EligibilityResponseSpec {
            id: id.into(),
            identifier: None,
            created,
            purposes: h.purposes.clone(),
            patient: external_reference(h.patient.expose().as_ref()?, "Patient", "patient of the submitted request"),
            serviced: h.serviced,
            requestor: h
                .provider
                .as_ref()
                .map(|p| external_reference(p, "Organization", "provider of the submitted request")),
            request: request_reference("CoverageEligibilityRequest", h.id.as_deref(), h.identifier.as_ref())?,
            outcome,
            disposition: None,
            insurer: external_reference(h.insurer.as_ref()?, "Organization", "insurer of the submitted request"),
            insurance: Vec::new(),
            pre_auth_ref: None,
            currency: "USD".to_owned(),
            errors: Vec::new(),
        })
    }
}

// ---- checked JSON pieces ----

fn string_value(s: &str, element: &str) -> Result<Value, BuildError> {
    if is_fhir_string(s) {
        Ok(Value::String(s.to_owned()))
    } else {
        err(element, "string must be non-empty without control characters")
    }
}

fn date_time_value(t: OffsetDateTime, element: &str) -> Result<Value, BuildError> {
    let year = t.year();
    if !(1..=9999).contains(&year) {
        return err(element, "year must be 1 to 9999");
    }
    let (oh, om, os) = t.offset().as_hms();
    let minutes = i32::from(oh) * 60 + i32::from(om);
    if os != 0 || !(-(13 * 60 + 59)..=14 * 60).contains(&minutes) {
        return err(element, "time zone offset must be whole minutes within -13:59 to +14:00");
    }
    let zone = if minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.abs();
        format!("{sign}{:02}:{:02}", m / 60, m % 60)
    };
    Ok(Value::String(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )))
}

fn date_value(d: Date, element: &str) -> Result<Value, BuildError> {
    let year = d.year();
    if !(1..=9999).contains(&year) {
        return err(element, "year must be 1 to 9999");
    }
    Ok(Value::String(format!("{year:04}-{:02}-{:02}", u8::from(d.month()), d.day())))
}

/// A decimal as a JSON number, refused when the number would not read back
/// as the same decimal (more digits than a double carries).
fn decimal_value(d: Decimal, element: &str) -> Result<Value, BuildError> {
    let f = f64::try_from(d).ok();
    let exact = f.is_some_and(|f| Decimal::from_str(&f.to_string()).ok() == Some(d.normalize()));
    match (f.and_then(serde_json::Number::from_f64), exact) {
        (Some(n), true) => {
            // Whole numbers are written without a fraction.
            if d.normalize().scale() == 0
                && let Ok(i) = i64::try_from(d.normalize())
            {
                return Ok(Value::Number(i.into()));
            }
            Ok(Value::Number(n))
        }
        _ => err(element, "amount has more significant digits than can be written exactly"),
    }
}

fn money_value(d: Decimal, currency: &str, element: &str) -> Result<Value, BuildError> {
    Ok(json!({
        "value": decimal_value(d, &field(element, "value"))?,
        "currency": currency,
    }))
}

fn positive_value(n: u32, element: &str) -> Result<Value, BuildError> {
    if n == 0 || n > i32::MAX as u32 {
        return err(element, "positiveInt must be 1 to 2147483647");
    }
    Ok(Value::Number(n.into()))
}

fn coding_value(c: &Coding, element: &str) -> Result<Value, BuildError> {
    if !is_code(&c.code) {
        return err(field(element, "code"), "code must be non-empty without stray whitespace");
    }
    if let Some(s) = &c.system
        && !is_uri(s)
    {
        return err(field(element, "system"), "system must be a uri");
    }
    if let Some(d) = &c.display {
        string_value(d, &field(element, "display"))?;
    }
    serde_json::to_value(c).or_else(|_| err(element, "not serializable"))
}

fn concept_value(c: &Coding, element: &str) -> Result<Value, BuildError> {
    Ok(json!({ "coding": [coding_value(c, &index(&field(element, "coding"), 0))?] }))
}

fn identifier_value(i: &Identifier, element: &str) -> Result<Value, BuildError> {
    string_value(&i.value, &field(element, "value"))?;
    if let Some(s) = &i.system
        && !is_uri(s)
    {
        return err(field(element, "system"), "system must be a uri");
    }
    serde_json::to_value(i).or_else(|_| err(element, "not serializable"))
}

fn reference_value(r: &Reference, element: &str) -> Result<Value, BuildError> {
    if r.reference.is_none() && r.identifier.is_none() && r.display.is_none() {
        return err(element, "reference needs a reference, identifier or display");
    }
    if let Some(s) = &r.reference {
        string_value(s, &field(element, "reference"))?;
        if s.starts_with('#') {
            return err(field(element, "reference"), "a local reference has no contained target in the response");
        }
    }
    if let Some(t) = &r.type_
        && !is_uri(t)
    {
        return err(field(element, "type"), "type must be a uri");
    }
    if let Some(i) = &r.identifier {
        identifier_value(i, &field(element, "identifier"))?;
    }
    if let Some(d) = &r.display {
        string_value(d, &field(element, "display"))?;
    }
    serde_json::to_value(r).or_else(|_| err(element, "not serializable"))
}

fn put(o: &mut Map<String, Value>, k: &str, v: Value) {
    o.insert(k.to_owned(), v);
}

/// Elements shared by both responses, in the order they are checked.
#[allow(clippy::too_many_arguments)]
fn response_common(
    o: &mut Map<String, Value>,
    rt: &str,
    id: &str,
    identifier: Option<&Identifier>,
    created: OffsetDateTime,
    patient: &Reference,
    insurer: &Reference,
    requestor: Option<&Reference>,
    outcome: ResponseOutcome,
    disposition: Option<&str>,
    pre_auth_ref: Option<&str>,
    currency: &str,
) -> Result<(), BuildError> {
    put(o, "resourceType", json!(rt));
    if !is_id(id) {
        return err(field(rt, "id"), "id must be 1 to 64 letters, digits, '-' or '.'");
    }
    if !is_currency(currency) {
        return err(field(rt, "currency"), "currency must be three upper-case letters");
    }
    put(o, "id", json!(id));
    if let Some(i) = identifier {
        put(o, "identifier", json!([identifier_value(i, &index(&field(rt, "identifier"), 0))?]));
    }
    put(o, "status", json!("active"));
    put(o, "patient", reference_value(patient, &field(rt, "patient"))?);
    put(o, "created", date_time_value(created, &field(rt, "created"))?);
    put(o, "insurer", reference_value(insurer, &field(rt, "insurer"))?);
    if let Some(r) = requestor {
        put(o, "requestor", reference_value(r, &field(rt, "requestor"))?);
    }
    put(o, "outcome", json!(outcome.as_str()));
    if let Some(d) = disposition {
        put(o, "disposition", string_value(d, &field(rt, "disposition"))?);
    }
    if let Some(p) = pre_auth_ref {
        put(o, "preAuthRef", string_value(p, &field(rt, "preAuthRef"))?);
    }
    Ok(())
}

/// A ClaimResponse (R4): resourceType, id, status `active`, type, use,
/// patient, created, insurer and outcome always; identifier, requestor,
/// request, disposition, preAuthRef, item adjudications, totals and errors
/// when given.
pub fn claim_response(spec: &ClaimResponseSpec) -> Result<Value, BuildError> {
    const RT: &str = "ClaimResponse";
    let mut o = Map::new();
    response_common(
        &mut o,
        RT,
        &spec.id,
        spec.identifier.as_ref(),
        spec.created,
        &spec.patient,
        &spec.insurer,
        spec.requestor.as_ref(),
        spec.outcome,
        spec.disposition.as_deref(),
        spec.pre_auth_ref.as_deref(),
        &spec.currency,
    )?;
    put(
        &mut o,
        "type",
        concept_value(&Coding::new(CLAIM_TYPE_SYSTEM, claim_type_code(spec.kind)), "ClaimResponse.type")?,
    );
    put(&mut o, "use", json!(spec.claim_use.as_str()));
    if let Some(r) = &spec.request {
        put(&mut o, "request", reference_value(r, "ClaimResponse.request")?);
    }
    let cur = spec.currency.as_str();
    if !spec.items.is_empty() {
        let mut items = Vec::with_capacity(spec.items.len());
        for (i, it) in spec.items.iter().enumerate() {
            let ip = index("ClaimResponse.item", i);
            let ap = field(&ip, "adjudication");
            if it.adjudication.is_empty() {
                return err(ap, "an item needs at least one adjudication");
            }
            let mut adj = Vec::with_capacity(it.adjudication.len());
            for (j, a) in it.adjudication.iter().enumerate() {
                adj.push(adjudication_value(a, cur, &index(&ap, j))?);
            }
            items.push(json!({
                "itemSequence": positive_value(it.item_sequence, &field(&ip, "itemSequence"))?,
                "adjudication": adj,
            }));
        }
        put(&mut o, "item", Value::Array(items));
    }
    if !spec.totals.is_empty() {
        let mut totals = Vec::with_capacity(spec.totals.len());
        for (i, t) in spec.totals.iter().enumerate() {
            let tp = index("ClaimResponse.total", i);
            totals.push(json!({
                "category": concept_value(&t.category, &field(&tp, "category"))?,
                "amount": money_value(t.amount, cur, &field(&tp, "amount"))?,
            }));
        }
        put(&mut o, "total", Value::Array(totals));
    }
    if !spec.errors.is_empty() {
        let mut errors = Vec::with_capacity(spec.errors.len());
        for (i, e) in spec.errors.iter().enumerate() {
            let ep = index("ClaimResponse.error", i);
            let mut eo = Map::new();
            for (k, v) in [
                ("itemSequence", e.item_sequence),
                ("detailSequence", e.detail_sequence),
                ("subDetailSequence", e.sub_detail_sequence),
            ] {
                if let Some(n) = v {
                    put(&mut eo, k, positive_value(n, &field(&ep, k))?);
                }
            }
            put(&mut eo, "code", concept_value(&e.code, &field(&ep, "code"))?);
            errors.push(Value::Object(eo));
        }
        put(&mut o, "error", Value::Array(errors));
    }
    Ok(Value::Object(o))
}

fn adjudication_value(a: &Adjudication, currency: &str, element: &str) -> Result<Value, BuildError> {
    let mut o = Map::new();
    put(&mut o, "category", concept_value(&a.category, &field(element, "category"))?);
    if let Some(r) = &a.reason {
        put(&mut o, "reason", concept_value(r, &field(element, "reason"))?);
    }
    if let Some(m) = a.amount {
        put(&mut o, "amount", money_value(m, currency, &field(element, "amount"))?);
    }
    if let Some(v) = a.value {
        put(&mut o, "value", decimal_value(v, &field(element, "value"))?);
    }
    Ok(Value::Object(o))
}

fn benefit_value(
    o: &mut Map<String, Value>,
    prefix: &str,
    v: &BenefitValue,
    currency: &str,
    element: &str,
) -> Result<(), BuildError> {
    match v {
        BenefitValue::Money(m) => {
            let k = format!("{prefix}Money");
            let value = money_value(*m, currency, &field(element, &k))?;
            o.insert(k, value);
        }
        BenefitValue::UnsignedInt(n) => {
            let k = format!("{prefix}UnsignedInt");
            if *n > i32::MAX as u32 {
                return err(field(element, &k), "unsignedInt must be at most 2147483647");
            }
            o.insert(k, json!(n));
        }
        BenefitValue::Text(s) => {
            let k = format!("{prefix}String");
            let value = string_value(s, &field(element, &k))?;
            o.insert(k, value);
        }
    }
    Ok(())
}

/// A CoverageEligibilityResponse (R4): resourceType, id, status `active`,
/// purpose, patient, created, request, outcome and insurer always;
/// identifier, serviced, requestor, disposition, insurance (coverage,
/// inforce, benefitPeriod, items with category and benefits), preAuthRef
/// and error codes when given.
pub fn coverage_eligibility_response(spec: &EligibilityResponseSpec) -> Result<Value, BuildError> {
    const RT: &str = "CoverageEligibilityResponse";
    let mut o = Map::new();
    response_common(
        &mut o,
        RT,
        &spec.id,
        spec.identifier.as_ref(),
        spec.created,
        &spec.patient,
        &spec.insurer,
        spec.requestor.as_ref(),
        spec.outcome,
        spec.disposition.as_deref(),
        spec.pre_auth_ref.as_deref(),
        &spec.currency,
    )?;
    if spec.purposes.is_empty() {
        return err("CoverageEligibilityResponse.purpose", "at least one purpose is required");
    }
    let mut purposes: Vec<&str> = Vec::new();
    for p in &spec.purposes {
        if !purposes.contains(&p.as_str()) {
            purposes.push(p.as_str());
        }
    }
    put(&mut o, "purpose", json!(purposes));
    if let Some(s) = spec.serviced {
        if s.from == s.to {
            put(&mut o, "servicedDate", date_value(s.from, "CoverageEligibilityResponse.servicedDate")?);
        } else {
            if s.to < s.from {
                return err("CoverageEligibilityResponse.servicedPeriod", "period ends before it starts");
            }
            put(
                &mut o,
                "servicedPeriod",
                json!({
                    "start": date_value(s.from, "CoverageEligibilityResponse.servicedPeriod.start")?,
                    "end": date_value(s.to, "CoverageEligibilityResponse.servicedPeriod.end")?,
                }),
            );
        }
    }
    put(&mut o, "request", reference_value(&spec.request, "CoverageEligibilityResponse.request")?);
    let cur = spec.currency.as_str();
    if !spec.insurance.is_empty() {
        let mut out = Vec::with_capacity(spec.insurance.len());
        for (i, ins) in spec.insurance.iter().enumerate() {
            let ip = index("CoverageEligibilityResponse.insurance", i);
            let mut io = Map::new();
            put(&mut io, "coverage", reference_value(&ins.coverage, &field(&ip, "coverage"))?);
            if let Some(b) = ins.inforce {
                put(&mut io, "inforce", json!(b));
            }
            if let Some((start, end)) = ins.benefit_period {
                let bp = field(&ip, "benefitPeriod");
                let mut po = Map::new();
                put(&mut po, "start", date_value(start, &field(&bp, "start"))?);
                if let Some(e) = end {
                    if e < start {
                        return err(bp, "period ends before it starts");
                    }
                    put(&mut po, "end", date_value(e, &field(&bp, "end"))?);
                }
                put(&mut io, "benefitPeriod", Value::Object(po));
            }
            if !ins.items.is_empty() {
                let mut items = Vec::with_capacity(ins.items.len());
                for (j, it) in ins.items.iter().enumerate() {
                    items.push(benefit_item_value(it, cur, &index(&field(&ip, "item"), j))?);
                }
                put(&mut io, "item", Value::Array(items));
            }
            out.push(Value::Object(io));
        }
        put(&mut o, "insurance", Value::Array(out));
    }
    if !spec.errors.is_empty() {
        let mut errors = Vec::with_capacity(spec.errors.len());
        for (i, c) in spec.errors.iter().enumerate() {
            let ep = index("CoverageEligibilityResponse.error", i);
            errors.push(json!({ "code": concept_value(c, &field(&ep, "code"))? }));
        }
        put(&mut o, "error", Value::Array(errors));
    }
    Ok(Value::Object(o))
}

fn benefit_item_value(it: &BenefitItem, currency: &str, element: &str) -> Result<Value, BuildError> {
    let mut o = Map::new();
    put(&mut o, "category", concept_value(&it.category, &field(element, "category"))?);
    if let Some(b) = it.excluded {
        put(&mut o, "excluded", json!(b));
    }
    if let Some(n) = &it.name {
        put(&mut o, "name", string_value(n, &field(element, "name"))?);
    }
    for (k, c) in [("network", &it.network), ("unit", &it.unit), ("term", &it.term)] {
        if let Some(c) = c {
            put(&mut o, k, concept_value(c, &field(element, k))?);
        }
    }
    if !it.benefits.is_empty() {
        let mut benefits = Vec::with_capacity(it.benefits.len());
        for (i, b) in it.benefits.iter().enumerate() {
            let bp = index(&field(element, "benefit"), i);
            let mut bo = Map::new();
            put(&mut bo, "type", concept_value(&b.benefit_type, &field(&bp, "type"))?);
            if let Some(v) = &b.allowed {
                benefit_value(&mut bo, "allowed", v, currency, &bp)?;
            }
            if let Some(v) = &b.used {
                benefit_value(&mut bo, "used", v, currency, &bp)?;
            }
            benefits.push(Value::Object(bo));
        }
        put(&mut o, "benefit", Value::Array(benefits));
    }
    if let Some(b) = it.authorization_required {
        put(&mut o, "authorizationRequired", json!(b));
    }
    Ok(Value::Object(o))
}
