//! Tests across the FHIR module: mapping, each validation rule, reference
//! resolution in Bundles, builders, and properties over arbitrary input.
//!
//! Values in the fixtures below contain `CANARY` so tests can assert that no
//! finding ever echoes input.

use super::*;
use clearway_core::{ClaimKind, DateRange};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use time::macros::{date, datetime};

const NPI: &str = "1234567893";

fn base_claim() -> Value {
    json!({
        "resourceType": "Claim",
        "id": "c-1",
        "meta": {"profile": ["http://example.org/StructureDefinition/clearway-claim"]},
        "contained": [
            {"resourceType": "Patient", "id": "pat",
             "name": [{"use": "official", "family": "Canaryfamily", "given": ["Canarygiven", "Canarymiddle"]}],
             "gender": "male", "birthDate": "1980-05-06"},
            {"resourceType": "Coverage", "id": "cov", "status": "active",
             "subscriberId": "MEMBER-CANARY",
             "beneficiary": {"reference": "#pat"},
             "relationship": {"coding": [{"code": "self"}]},
             "payor": [{"reference": "#payer"}]},
            {"resourceType": "Organization", "id": "prov",
             "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": NPI}],
             "name": "Clinic"},
            {"resourceType": "Organization", "id": "payer", "name": "Payer Inc"}
        ],
        "identifier": [{"system": "http://example.org/claim", "value": "PCN-CANARY"}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "#pat"},
        "created": "2024-03-01T10:00:00Z",
        "insurer": {"reference": "#payer"},
        "provider": {"reference": "#prov"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [
            {"sequence": 2, "diagnosisCodeableConcept": {"coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}},
            {"sequence": 1, "diagnosisCodeableConcept": {"coding": [
                {"system": "http://example.org/local", "code": "LOCAL"},
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J02.0"}]}}
        ],
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "#cov"}}],
        "item": [
            {"sequence": 1, "diagnosisSequence": [1],
             "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
             "modifier": [{"coding": [{"code": "25"}]}],
             "servicedDate": "2024-02-28",
             "locationCodeableConcept": {"coding": [{
                 "system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
                 "code": "11"}]},
             "quantity": {"value": 1},
             "unitPrice": {"value": 100.00, "currency": "USD"},
             "net": {"value": 100.00, "currency": "USD"}},
            {"sequence": 2,
             "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
             "servicedPeriod": {"start": "2024-02-27", "end": "2024-02-28"},
             "quantity": {"value": 30, "system": "http://unitsofmeasure.org", "code": "min"},
             "unitPrice": {"value": 1.5, "currency": "USD"},
             "factor": 0.5}
        ],
        "total": {"value": 122.50, "currency": "USD"}
    })
}

fn base_request() -> Value {
    json!({
        "resourceType": "CoverageEligibilityRequest",
        "id": "e-1",
        "contained": [
            {"resourceType": "Patient", "id": "pat", "name": [{"family": "Canarychild"}], "gender": "female"},
            {"resourceType": "Patient", "id": "sub", "name": [{"family": "Canaryparent", "given": ["Pat"]}]},
            {"resourceType": "Coverage", "id": "cov", "status": "active",
             "identifier": [
                 {"system": "http://example.org/other", "value": "OTHER-CANARY"},
                 {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]},
                  "value": "MB-CANARY"}],
             "subscriber": {"reference": "#sub"},
             "beneficiary": {"reference": "#pat"},
             "relationship": {"coding": [{"code": "child"}]},
             "payor": [{"display": "Payer"}]}
        ],
        "identifier": [{"value": "TRACE-1"}],
        "status": "active",
        "purpose": ["validation", "benefits"],
        "patient": {"reference": "#pat"},
        "servicedPeriod": {"start": "2024-01-01", "end": "2024-01-31"},
        "created": "2024-01-15",
        "provider": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": NPI}, "display": "Dr Who"},
        "insurer": {"identifier": {"system": "http://example.org/payers", "value": "PAYER1"}},
        "insurance": [{"focal": true, "coverage": {"reference": "#cov"}}],
        "item": [
            {"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-benefitcategory", "code": "69"}]}},
            {"category": {"coding": [{"code": "30"}]}}
        ]
    })
}

fn read(v: &Value) -> FhirDocument {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    match read_resource(&bytes, &Limits::default()) {
        Ok(d) => d,
        Err(e) => panic!("not read: {e}"),
    }
}

fn claim_doc(v: &Value) -> ClaimDoc {
    match read(v) {
        FhirDocument::Claim(c) => c,
        other => panic!("expected a Claim, got {}", other.resource_type()),
    }
}

fn request_doc(v: &Value) -> EligibilityDoc {
    match read(v) {
        FhirDocument::CoverageEligibilityRequest(r) => r,
        other => panic!("expected a CER, got {}", other.resource_type()),
    }
}

fn bundle_doc(v: &Value) -> BundleDoc {
    match read(v) {
        FhirDocument::Bundle(b) => b,
        other => panic!("expected a Bundle, got {}", other.resource_type()),
    }
}

/// `v` with the element at JSON pointer `p` removed.
fn without(mut v: Value, p: &str) -> Value {
    let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => panic!("no parent at {p}"),
    }
    v
}

/// `v` with the element at JSON pointer `p` set to `new`.
fn with(mut v: Value, p: &str, new: Value) -> Value {
    let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last.to_owned(), new);
        }
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => a[i] = new,
            _ => panic!("bad index at {p}"),
        },
        _ => panic!("no parent at {p}"),
    }
    v
}

fn has_issue(issues: &[&OutcomeIssue], sev: Severity, code: IssueType, expr: &str) -> bool {
    issues.iter().any(|i| i.severity == sev && i.code == code && i.expression == expr)
}

fn assert_issue(doc: &FhirDocument, sev: Severity, code: IssueType, expr: &str) {
    let issues = doc.issues();
    assert!(has_issue(&issues, sev, code, expr), "expected {sev:?} {code:?} at {expr}; got {:#?}", issues);
}

fn no_canary(doc: &FhirDocument) {
    for i in doc.issues() {
        assert!(
            !i.diagnostics.contains("CANARY")
                && !i.diagnostics.to_ascii_lowercase().contains("canary")
                && !i.expression.to_ascii_lowercase().contains("canary"),
            "finding echoes input: {i:?}"
        );
    }
}

// ---------------------------------------------------------------- mapping

#[test]
fn base_claim_has_no_findings() {
    let doc = claim_doc(&base_claim());
    assert!(doc.issues.is_empty(), "{:#?}", doc.issues);
}

#[test]
fn maps_professional_claim_to_core() {
    let doc = claim_doc(&base_claim());
    let c = doc.claim.as_ref().unwrap_or_else(|| panic!("not mapped: {:?}", doc.issues));
    assert_eq!(c.source, clearway_core::SourceFormat::Fhir);
    assert_eq!(c.kind, ClaimKind::Professional);
    assert_eq!(c.implementation.as_deref(), Some("http://example.org/StructureDefinition/clearway-claim"));
    assert_eq!(c.patient_control_number.expose(), "PCN-CANARY");
    assert_eq!(c.total_charge, Decimal::from_str("122.5").unwrap_or_default());
    assert_eq!(c.facility_code.as_deref(), Some("11"));
    assert_eq!(c.frequency_code, None);
    assert_eq!(c.billing_provider_npi.as_deref(), Some(NPI));
    assert_eq!(c.payer_id.as_deref(), Some("payer"));
    assert_eq!(c.payer_name.as_deref(), Some("Payer Inc"));
    assert_eq!(c.subscriber_member_id.expose().as_deref(), Some("MEMBER-CANARY"));
    assert_eq!(c.patient.last_name.expose(), "Canaryfamily");
    assert_eq!(c.patient.first_name.expose().as_deref(), Some("Canarygiven"));
    assert_eq!(c.patient.middle_name.expose().as_deref(), Some("Canarymiddle"));
    assert_eq!(*c.patient.birth_date.expose(), Some(date!(1980 - 05 - 06)));
    assert_eq!(c.patient.gender.as_deref(), Some("M"));
    assert_eq!(c.subscriber, c.patient, "relationship self: subscriber is the patient");
    let codes: Vec<&str> = c.diagnoses.expose().iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["J020", "E119"], "ordered by sequence, ICD-10 preferred");
    assert_eq!(c.service_lines.len(), 2);
    let l1 = &c.service_lines[0];
    assert_eq!(l1.line_number, 1);
    assert_eq!(l1.procedure_code, "99213");
    assert_eq!(l1.procedure_qualifier.as_deref(), Some("http://www.ama-assn.org/go/cpt"));
    assert_eq!(l1.modifiers, ["25"]);
    assert_eq!(l1.charge, Decimal::from(100));
    assert_eq!(l1.units, Some(Decimal::ONE));
    assert_eq!(l1.unit_basis.as_deref(), Some("UN"));
    assert_eq!(l1.service_date, Some(DateRange::day(date!(2024 - 02 - 28))));
    let l2 = &c.service_lines[1];
    assert_eq!(l2.charge, Decimal::from_str("22.5").unwrap_or_default(), "1.5 × 30 × 0.5");
    assert_eq!(l2.units, Some(Decimal::from(30)));
    assert_eq!(l2.unit_basis.as_deref(), Some("MJ"), "UCUM min → minutes");
    assert_eq!(l2.service_date, Some(DateRange { from: date!(2024 - 02 - 27), to: date!(2024 - 02 - 28) }));
    let s = c.summary();
    assert_eq!(s.line_charge_total, c.total_charge);
}

#[test]
fn claim_header_is_read() {
    let doc = claim_doc(&base_claim());
    let h = &doc.header;
    assert_eq!(h.id.as_deref(), Some("c-1"));
    assert_eq!(h.status, Some(FinancialStatus::Active));
    assert_eq!(h.claim_type.as_deref(), Some("professional"));
    assert_eq!(h.claim_use, Some(ClaimUse::Claim));
    assert_eq!(h.patient.expose().as_ref().and_then(|r| r.reference.as_deref()), Some("#pat"));
    assert_eq!(h.item_count, 2);
    assert_eq!(h.insurance_count, 1);
    assert_eq!(h.created.as_deref(), Some("2024-03-01T10:00:00Z"));
}

#[test]
fn debug_output_hides_phi() {
    let doc = claim_doc(&base_claim());
    let shown = format!("{doc:?}");
    for phi in ["PCN-CANARY", "Canaryfamily", "MEMBER-CANARY", "1980"] {
        assert!(!shown.contains(phi), "{phi} in {shown}");
    }
}

#[test]
fn each_claim_type_code_maps_to_a_kind() {
    for (code, kind) in [
        ("professional", ClaimKind::Professional),
        ("institutional", ClaimKind::Institutional),
        ("oral", ClaimKind::Dental),
        ("pharmacy", ClaimKind::Pharmacy),
        ("vision", ClaimKind::Vision),
    ] {
        let v = with(base_claim(), "/type/coding/0/code", json!(code));
        let doc = claim_doc(&v);
        assert_eq!(doc.claim.map(|c| c.kind), Some(kind), "{code}");
    }
}

#[test]
fn unprocessed_claim_type_is_not_supported() {
    let v = with(base_claim(), "/type/coding/0/code", json!("workers-comp"));
    let doc = read(&v);
    assert_issue(&doc, Severity::Error, IssueType::NotSupported, "Claim.type");
    assert!(!doc.is_processable());
}

#[test]
fn claim_type_coding_from_another_system_is_ignored() {
    let v = with(base_claim(), "/type/coding/0/system", json!("http://example.org/types"));
    let doc = read(&v);
    assert_issue(&doc, Severity::Error, IssueType::NotSupported, "Claim.type");
}

#[test]
fn institutional_bill_type_gives_facility_and_frequency() {
    let mut v = with(base_claim(), "/type/coding/0/code", json!("institutional"));
    v = with(
        v,
        "/subType",
        json!({"coding": [{"system": "https://www.nubc.org/CodeSystem/TypeOfBill", "code": "0137"}]}),
    );
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.facility_code.as_deref(), Some("13"));
    assert_eq!(c.frequency_code.as_deref(), Some("7"));
}

#[test]
fn pcn_falls_back_to_id_then_is_required() {
    let v = without(base_claim(), "/identifier");
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.patient_control_number.expose(), "c-1");
    let v = without(v, "/id");
    let doc = read(&v);
    assert_issue(&doc, Severity::Error, IssueType::BusinessRule, "Claim.identifier");
}

#[test]
fn total_falls_back_to_sum_of_item_charges() {
    let v = without(base_claim(), "/total");
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.total_charge, Decimal::from_str("122.5").unwrap_or_default());
}

#[test]
fn item_charge_from_details_when_unpriced() {
    let mut v = without(base_claim(), "/total");
    v = without(v, "/item/0/net");
    v = without(v, "/item/0/unitPrice");
    v = with(
        v,
        "/item/0/detail",
        json!([
            {"sequence": 1, "productOrService": {"coding": [{"code": "a"}]}, "net": {"value": 20, "currency": "USD"}},
            {"sequence": 2, "productOrService": {"coding": [{"code": "b"}]}, "unitPrice": {"value": 5, "currency": "USD"}, "quantity": {"value": 3},
             "subDetail": [{"sequence": 1, "productOrService": {"coding": [{"code": "c"}]}, "net": {"value": 999, "currency": "USD"}}]}
        ]),
    );
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.service_lines[0].charge, Decimal::from(35), "20 + 5 × 3 (sub-details ignored when priced)");
}

#[test]
fn unpriced_item_is_zero_with_a_warning() {
    let mut v = without(base_claim(), "/item/0/net");
    v = without(v, "/item/0/unitPrice");
    let doc = read(&v);
    assert_issue(&doc, Severity::Warning, IssueType::Incomplete, "Claim.item[0]");
    assert_issue(&doc, Severity::Warning, IssueType::BusinessRule, "Claim.total");
}

#[test]
fn net_inconsistent_with_unit_price_is_warned() {
    let v = with(base_claim(), "/item/0/net/value", json!(90));
    let doc = read(&v);
    assert_issue(&doc, Severity::Warning, IssueType::BusinessRule, "Claim.item[0].net");
    assert!(doc.is_processable());
}

#[test]
fn amount_overflow_is_an_error_not_a_panic() {
    let mut v = without(base_claim(), "/item/1/factor");
    v = with(v, "/item/1/unitPrice/value", json!(7.0e27));
    v = with(v, "/item/1/quantity/value", json!(1.0e20));
    let doc = read(&v);
    assert_issue(&doc, Severity::Error, IssueType::Value, "Claim.item[1]");
}

#[test]
fn npi_from_reference_identifier_and_check_digit_warning() {
    let v = with(
        base_claim(),
        "/provider",
        json!({"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567890"}}),
    );
    let doc = read(&v);
    assert_issue(&doc, Severity::Warning, IssueType::Value, "Claim.provider.identifier.value");
    if let FhirDocument::Claim(c) = doc {
        assert_eq!(c.claim.and_then(|c| c.billing_provider_npi).as_deref(), Some("1234567890"));
    }
}

#[test]
fn npi_through_practitioner_role() {
    let mut v = base_claim();
    if let Some(Value::Array(c)) = v.get_mut("contained") {
        c.push(json!({"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "#doc"}}));
        c.push(json!({"resourceType": "Practitioner", "id": "doc",
                      "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1245319599"}]}));
    }
    v = with(v, "/provider", json!({"reference": "#role"}));
    v = with(v, "/payee", json!({"type": {"coding": [{"code": "provider"}]}, "party": {"reference": "#prov"}}));
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.billing_provider_npi.as_deref(), Some("1245319599"));
}

#[test]
fn payer_from_insurer_identifier_or_reference_id() {
    let v = with(base_claim(), "/insurer", json!({"identifier": {"value": "P-77"}, "display": "Named"}));
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.payer_id.as_deref(), Some("P-77"));
    assert_eq!(c.payer_name.as_deref(), Some("Named"));
    let mut v = with(base_claim(), "/insurer", json!({"reference": "Organization/2"}));
    v = with(v, "/contained/1/payor/0", json!({"reference": "Organization/2"}));
    v = without(v, "/contained/3");
    let doc = claim_doc(&v);
    let c = doc.claim.unwrap_or_else(|| panic!("not mapped: {:?}", doc.issues));
    assert_eq!(c.payer_id.as_deref(), Some("2"));
    assert_eq!(c.payer_name, None);
}

#[test]
fn member_id_prefers_member_number_identifier() {
    let mut v = without(base_claim(), "/contained/1/subscriberId");
    v = with(
        v,
        "/contained/1/identifier",
        json!([{"value": "FIRST"}, {"type": {"coding": [{"code": "MB"}]}, "value": "MB-1"}]),
    );
    let c = claim_doc(&v).claim.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.subscriber_member_id.expose().as_deref(), Some("MB-1"));
}

#[test]
fn non_focal_insurance_is_used_with_a_warning() {
    let v = with(base_claim(), "/insurance/0/focal", json!(false));
    let doc = read(&v);
    assert_issue(&doc, Severity::Warning, IssueType::BusinessRule, "Claim.insurance");
    if let FhirDocument::Claim(c) = doc {
        assert_eq!(c.claim.and_then(|c| c.subscriber_member_id.into_inner()).as_deref(), Some("MEMBER-CANARY"));
    }
}

#[test]
fn maps_eligibility_request_with_dependent() {
    let doc = request_doc(&base_request());
    assert!(doc.issues.is_empty(), "{:#?}", doc.issues);
    let r = doc.request.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(r.source, clearway_core::SourceFormat::Fhir);
    assert_eq!(r.trace_number.as_deref(), Some("TRACE-1"));
    assert_eq!(r.payer_id.as_deref(), Some("PAYER1"));
    assert_eq!(r.provider_npi.as_deref(), Some(NPI));
    assert_eq!(r.provider_name.as_deref(), Some("Dr Who"));
    assert_eq!(r.member_id.expose().as_deref(), Some("MB-CANARY"));
    assert_eq!(r.subscriber.last_name.expose(), "Canaryparent");
    assert_eq!(r.dependent.as_ref().map(|d| d.last_name.expose().as_str()), Some("Canarychild"));
    assert_eq!(r.service_types, ["69", "30"]);
    assert_eq!(r.date, Some(DateRange { from: date!(2024 - 01 - 01), to: date!(2024 - 01 - 31) }));
    assert_eq!(doc.header.purposes, [EligibilityPurpose::Validation, EligibilityPurpose::Benefits]);
}

#[test]
fn eligibility_defaults_service_type_and_date() {
    let mut v = without(base_request(), "/item");
    v = without(v, "/servicedPeriod");
    let r = request_doc(&v).request.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(r.service_types, ["30"]);
    assert_eq!(r.date, Some(DateRange::day(date!(2024 - 01 - 15))), "created");
}

#[test]
fn eligibility_subscriber_unknown_when_not_self_and_unresolvable() {
    let v = without(base_request(), "/contained/2/subscriber");
    let v = without(v, "/contained/1");
    let r = request_doc(&v).request.unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(r.subscriber.last_name.expose(), "");
    assert!(r.dependent.is_some());
}

// ---------------------------------------------------- validation, one per rule

macro_rules! rule {
    ($name:ident, $base:expr, $edit:expr, $sev:ident, $code:ident, $expr:literal) => {
        #[test]
        fn $name() {
            let edit: fn(Value) -> Value = $edit;
            let doc = read(&edit($base));
            assert_issue(&doc, Severity::$sev, IssueType::$code, $expr);
            no_canary(&doc);
            if Severity::$sev.blocks_processing() {
                assert!(!doc.is_processable(), "an error must block processing");
                if let FhirDocument::Claim(c) = &doc {
                    assert!(c.claim.is_none());
                }
                if let FhirDocument::CoverageEligibilityRequest(r) = &doc {
                    assert!(r.request.is_none());
                }
            }
        }
    };
}

// Claim: required elements.
rule!(claim_requires_status, base_claim(), |v| without(v, "/status"), Error, Required, "Claim.status");
rule!(claim_requires_type, base_claim(), |v| without(v, "/type"), Error, Required, "Claim.type");
rule!(claim_requires_use, base_claim(), |v| without(v, "/use"), Error, Required, "Claim.use");
rule!(claim_requires_patient, base_claim(), |v| without(v, "/patient"), Error, Required, "Claim.patient");
rule!(claim_requires_created, base_claim(), |v| without(v, "/created"), Error, Required, "Claim.created");
rule!(claim_requires_provider, base_claim(), |v| without(v, "/provider"), Error, Required, "Claim.provider");
rule!(claim_requires_priority, base_claim(), |v| without(v, "/priority"), Error, Required, "Claim.priority");
rule!(claim_requires_insurance, base_claim(), |v| without(v, "/insurance"), Error, Required, "Claim.insurance");
rule!(
    claim_requires_non_empty_insurance,
    base_claim(),
    |v| with(v, "/insurance", json!([])),
    Error,
    Required,
    "Claim.insurance"
);
rule!(
    insurance_requires_sequence,
    base_claim(),
    |v| without(v, "/insurance/0/sequence"),
    Error,
    Required,
    "Claim.insurance[0].sequence"
);
rule!(
    insurance_requires_focal,
    base_claim(),
    |v| without(v, "/insurance/0/focal"),
    Error,
    Required,
    "Claim.insurance[0].focal"
);
rule!(
    insurance_requires_coverage,
    base_claim(),
    |v| without(v, "/insurance/0/coverage"),
    Error,
    Required,
    "Claim.insurance[0].coverage"
);
rule!(
    claim_requires_item_or_total,
    base_claim(),
    |v| without(without(v, "/item"), "/total"),
    Error,
    BusinessRule,
    "Claim"
);
rule!(
    item_requires_sequence,
    base_claim(),
    |v| without(v, "/item/0/sequence"),
    Error,
    Required,
    "Claim.item[0].sequence"
);
rule!(
    item_requires_product_or_service,
    base_claim(),
    |v| without(v, "/item/1/productOrService"),
    Error,
    Required,
    "Claim.item[1].productOrService"
);
rule!(
    detail_requires_sequence,
    base_claim(),
    |v| with(v, "/item/0/detail", json!([{"productOrService": {"coding": [{"code": "x"}]}}])),
    Error,
    Required,
    "Claim.item[0].detail[0].sequence"
);
rule!(
    diagnosis_requires_a_diagnosis,
    base_claim(),
    |v| without(v, "/diagnosis/0/diagnosisCodeableConcept"),
    Error,
    Required,
    "Claim.diagnosis[0].diagnosis"
);
rule!(
    payee_requires_type,
    base_claim(),
    |v| with(v, "/payee", json!({"party": {"reference": "#prov"}})),
    Error,
    Required,
    "Claim.payee.type"
);
rule!(
    care_team_requires_provider,
    base_claim(),
    |v| with(v, "/careTeam", json!([{"sequence": 1}])),
    Error,
    Required,
    "Claim.careTeam[0].provider"
);
rule!(
    accident_requires_date,
    base_claim(),
    |v| with(v, "/accident", json!({"type": {"text": "x"}})),
    Error,
    Required,
    "Claim.accident.date"
);

// Claim: values.
rule!(
    claim_status_from_value_set,
    base_claim(),
    |v| with(v, "/status", json!("CANARY-status")),
    Error,
    CodeInvalid,
    "Claim.status"
);
rule!(
    claim_use_from_value_set,
    base_claim(),
    |v| with(v, "/use", json!("CANARY-use")),
    Error,
    CodeInvalid,
    "Claim.use"
);
rule!(claim_status_must_be_a_string, base_claim(), |v| with(v, "/status", json!(1)), Error, Structure, "Claim.status");
rule!(
    claim_created_is_a_date_time,
    base_claim(),
    |v| with(v, "/created", json!("2024-03-01T10:00:00")),
    Error,
    Value,
    "Claim.created"
);
rule!(
    claim_created_is_a_calendar_date,
    base_claim(),
    |v| with(v, "/created", json!("2023-02-29")),
    Error,
    Value,
    "Claim.created"
);
rule!(
    serviced_date_is_a_date,
    base_claim(),
    |v| with(v, "/item/0/servicedDate", json!("CANARY-date")),
    Error,
    Value,
    "Claim.item[0].servicedDate"
);
rule!(
    serviced_choice_is_exclusive,
    base_claim(),
    |v| with(v, "/item/0/servicedPeriod", json!({"start": "2024-01-01"})),
    Error,
    Structure,
    "Claim.item[0].serviced"
);
rule!(
    money_value_is_a_number,
    base_claim(),
    |v| with(v, "/item/0/net/value", json!("100.00")),
    Error,
    Structure,
    "Claim.item[0].net.value"
);
rule!(
    money_currency_is_iso,
    base_claim(),
    |v| with(v, "/total/currency", json!("usd")),
    Error,
    CodeInvalid,
    "Claim.total.currency"
);
rule!(
    factor_is_a_decimal,
    base_claim(),
    |v| with(v, "/item/1/factor", json!("0.5")),
    Error,
    Structure,
    "Claim.item[1].factor"
);
rule!(
    sequence_is_positive,
    base_claim(),
    |v| with(v, "/item/0/sequence", json!(0)),
    Error,
    Value,
    "Claim.item[0].sequence"
);
rule!(
    item_sequence_is_unique,
    base_claim(),
    |v| with(v, "/item/1/sequence", json!(1)),
    Error,
    Duplicate,
    "Claim.item[1].sequence"
);
rule!(
    item_diagnosis_sequence_must_exist,
    base_claim(),
    |v| with(v, "/item/0/diagnosisSequence", json!([7])),
    Error,
    BusinessRule,
    "Claim.item[0].diagnosisSequence"
);
rule!(
    repeating_element_must_be_array,
    base_claim(),
    |v| with(v, "/item", json!({"sequence": 1})),
    Error,
    Structure,
    "Claim.item"
);
rule!(
    single_element_must_not_be_array,
    base_claim(),
    |v| with(v, "/patient", json!([{"reference": "#pat"}])),
    Error,
    Structure,
    "Claim.patient"
);
rule!(
    empty_string_is_invalid,
    base_claim(),
    |v| with(v, "/identifier/0/system", json!("")),
    Error,
    Value,
    "Claim.identifier[0].system"
);
rule!(null_property_is_invalid, base_claim(), |v| with(v, "/subType", Value::Null), Error, Structure, "Claim.subType");
rule!(empty_object_is_invalid, base_claim(), |v| with(v, "/subType", json!({})), Error, Structure, "Claim.subType");
rule!(id_syntax, base_claim(), |v| with(v, "/id", json!("CANARY id with spaces")), Error, Value, "Claim.id");
rule!(
    unknown_top_level_element_is_a_warning,
    base_claim(),
    |v| with(v, "/bogusElement", json!("CANARY")),
    Warning,
    Structure,
    "Claim.bogusElement"
);
rule!(
    unknown_item_element_is_a_warning,
    base_claim(),
    |v| with(v, "/item/0/bogus", json!(1)),
    Warning,
    Structure,
    "Claim.item[0].bogus"
);
rule!(
    modifier_extension_is_not_supported,
    base_claim(),
    |v| with(v, "/modifierExtension", json!([{"url": "http://example.org/x", "valueBoolean": true}])),
    Error,
    NotSupported,
    "Claim.modifierExtension"
);
rule!(
    period_end_before_start,
    base_claim(),
    |v| with(v, "/item/1/servicedPeriod/end", json!("2024-02-01")),
    Error,
    Invariant,
    "Claim.item[1].servicedPeriod"
);
rule!(
    too_many_items,
    base_claim(),
    |v| {
        let item = v["item"][0].clone();
        with(v, "/item", Value::Array(vec![item; 1000]))
    },
    Error,
    TooLong,
    "Claim.item"
);

// Claim: references.
rule!(
    contained_must_be_an_array,
    base_claim(),
    |v| with(v, "/contained", json!({"resourceType": "Patient", "id": "pat"})),
    Error,
    Structure,
    "Claim.contained"
);
rule!(
    contained_reference_must_resolve,
    base_claim(),
    |v| with(v, "/patient/reference", json!("#nobody")),
    Error,
    NotFound,
    "Claim.patient.reference"
);
rule!(
    reference_target_type_is_checked,
    base_claim(),
    |v| with(v, "/patient/reference", json!("#prov")),
    Error,
    Invalid,
    "Claim.patient.reference"
);
rule!(
    contained_resource_must_be_referenced,
    base_claim(),
    |v| {
        let mut v = v;
        if let Some(Value::Array(c)) = v.get_mut("contained") {
            c.push(json!({"resourceType": "Patient", "id": "orphan"}));
        }
        v
    },
    Warning,
    Invariant,
    "Claim.contained[4]"
);

// CoverageEligibilityRequest.
rule!(
    cer_requires_status,
    base_request(),
    |v| without(v, "/status"),
    Error,
    Required,
    "CoverageEligibilityRequest.status"
);
rule!(
    cer_requires_purpose,
    base_request(),
    |v| without(v, "/purpose"),
    Error,
    Required,
    "CoverageEligibilityRequest.purpose"
);
rule!(
    cer_requires_non_empty_purpose,
    base_request(),
    |v| with(v, "/purpose", json!([])),
    Error,
    Required,
    "CoverageEligibilityRequest.purpose"
);
rule!(
    cer_requires_patient,
    base_request(),
    |v| without(v, "/patient"),
    Error,
    Required,
    "CoverageEligibilityRequest.patient"
);
rule!(
    cer_requires_created,
    base_request(),
    |v| without(v, "/created"),
    Error,
    Required,
    "CoverageEligibilityRequest.created"
);
rule!(
    cer_requires_insurer,
    base_request(),
    |v| without(v, "/insurer"),
    Error,
    Required,
    "CoverageEligibilityRequest.insurer"
);
rule!(
    cer_insurance_requires_coverage,
    base_request(),
    |v| without(v, "/insurance/0/coverage"),
    Error,
    Required,
    "CoverageEligibilityRequest.insurance[0].coverage"
);
rule!(
    cer_purpose_from_value_set,
    base_request(),
    |v| with(v, "/purpose/1", json!("CANARY-purpose")),
    Error,
    CodeInvalid,
    "CoverageEligibilityRequest.purpose[1]"
);
rule!(
    cer_status_from_value_set,
    base_request(),
    |v| with(v, "/status", json!("final")),
    Error,
    CodeInvalid,
    "CoverageEligibilityRequest.status"
);
rule!(
    cer_serviced_choice_is_exclusive,
    base_request(),
    |v| with(v, "/servicedDate", json!("2024-01-02")),
    Error,
    Structure,
    "CoverageEligibilityRequest.serviced"
);
rule!(
    cer_unknown_element_is_a_warning,
    base_request(),
    |v| with(v, "/use", json!("claim")),
    Warning,
    Structure,
    "CoverageEligibilityRequest.use"
);
rule!(
    cer_category_not_a_service_type_is_noted,
    base_request(),
    |v| with(v, "/item/1/category/coding/0/system", json!("http://example.org/cats")),
    Information,
    Informational,
    "CoverageEligibilityRequest.item[1].category"
);

#[test]
fn every_claim_status_and_use_code_is_accepted() {
    for s in FinancialStatus::CODES {
        let doc = claim_doc(&with(base_claim(), "/status", json!(s)));
        assert_eq!(doc.header.status.map(FinancialStatus::as_str), Some(*s));
        assert!(doc.claim.is_some(), "{s}");
    }
    for u in ClaimUse::CODES {
        let doc = claim_doc(&with(base_claim(), "/use", json!(u)));
        assert!(doc.claim.is_some(), "{u}");
    }
    for p in EligibilityPurpose::CODES {
        let doc = request_doc(&with(base_request(), "/purpose", json!([p])));
        assert!(doc.request.is_some(), "{p}");
    }
}

#[test]
fn primitive_extensions_are_known_elements() {
    let v = with(base_claim(), "/_status", json!({"extension": [{"url": "http://example.org/x", "valueString": "x"}]}));
    let doc = claim_doc(&v);
    assert!(doc.issues.is_empty(), "{:?}", doc.issues);
}

#[test]
fn findings_are_capped() {
    let mut v = base_claim();
    for i in 0..50 {
        v = with(v, &format!("/unknown{i}"), json!(1));
    }
    let limits = Limits { max_issues: 10, ..Limits::default() };
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    match read_resource(&bytes, &limits) {
        Ok(FhirDocument::Claim(c)) => {
            assert_eq!(c.issues.len(), 11);
            assert_eq!(c.issues[10].code, IssueType::TooCostly);
            assert!(c.claim.is_some(), "warnings only");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_values_are_never_echoed() {
    // Every value below is wrong and contains the canary.
    let mut v = base_claim();
    for (p, new) in [
        ("/status", json!("CANARY1")),
        ("/use", json!("CANARY2")),
        ("/created", json!("CANARY3")),
        ("/id", json!("CANARY 4")),
        ("/total/currency", json!("CANARY5")),
        ("/item/0/net/value", json!("CANARY6")),
        ("/item/0/servicedDate", json!("CANARY7")),
        ("/type/coding/0/code", json!("CANARY8")),
        ("/patient/reference", json!("#CANARY9")),
        ("/contained/0/gender", json!("CANARY10")),
        ("/contained/0/birthDate", json!("CANARY11")),
        ("/item/0/sequence", json!("CANARY12")),
    ] {
        v = with(v, p, new);
    }
    v = with(v, "/CANARY key", json!("CANARY13"));
    let doc = read(&v);
    assert!(doc.issues().len() >= 12, "{:#?}", doc.issues());
    no_canary(&doc);
    let oo = doc.operation_outcome().to_string();
    assert!(!oo.to_ascii_lowercase().contains("canary"), "{oo}");
}

#[test]
fn hostile_sizes_stay_linear() {
    // Many contained resources, each referenced, and many diagnoses pointing
    // at them: quadratic lookups would take minutes here.
    const N: usize = 60_000;
    let mut v = base_claim();
    let contained: Vec<Value> = (0..N)
        .map(|i| json!({"resourceType": "Condition", "id": format!("c{i}"), "code": {"coding": [{"code": "X"}]}}))
        .collect();
    let diagnoses: Vec<Value> =
        (0..N).map(|i| json!({"sequence": i + 10, "diagnosisReference": {"reference": format!("#c{i}")}})).collect();
    if let Some(Value::Array(c)) = v.get_mut("contained") {
        c.extend(contained);
    }
    if let Some(Value::Array(d)) = v.get_mut("diagnosis") {
        d.extend(diagnoses);
    }
    let started = std::time::Instant::now();
    let doc = claim_doc(&v);
    assert!(doc.issues.is_empty(), "{:?}", doc.issues.first());
    assert_eq!(doc.claim.map(|c| c.diagnoses.expose().len()), Some(N + 2));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

// ---------------------------------------------------------------- envelope

#[test]
fn read_errors_have_positions_and_no_content() {
    let limits = Limits::default();
    assert!(matches!(
        read_resource(b"{\"resourceType\": \"Claim\",\n \"id\": CANARY}", &limits),
        Err(FhirError::MalformedJson { line: 2, .. })
    ));
    assert!(matches!(read_resource(b"{\"resourceType\": \"Claim\"", &limits), Err(FhirError::TruncatedJson { .. })));
    assert!(matches!(
        read_resource(b"{\"resourceType\": \"Claim\", \"id\": \"a\", \"id\": \"b\"}", &limits),
        Err(FhirError::DuplicateKey { line: 1, .. })
    ));
    assert_eq!(read_resource(b"[1]", &limits), Err(FhirError::NotAnObject));
    assert_eq!(read_resource(b"{\"id\": \"x\"}", &limits), Err(FhirError::MissingResourceType));
    assert_eq!(read_resource(b"{\"resourceType\": \"CANARY type\"}", &limits), Err(FhirError::InvalidResourceType));
    assert_eq!(read_resource(b"{\"resourceType\": 7}", &limits), Err(FhirError::InvalidResourceType));
    let small = Limits { max_input_bytes: 10, ..limits };
    assert_eq!(
        read_resource(b"{\"resourceType\": \"Claim\"}", &small),
        Err(FhirError::TooLarge { size: 25, limit: 10 })
    );
    let e = read_resource(b"{\"resourceType\": \"Claim\", \"x\": CANARY}", &limits)
        .err()
        .map(|e| (e.to_string(), e.to_issue()));
    let (shown, issue) = e.unwrap_or_else(|| panic!("expected an error"));
    assert!(!shown.contains("CANARY"));
    assert_eq!(issue.severity, Severity::Fatal);
    assert_eq!(issue.code, IssueType::Structure);
}

#[test]
fn byte_order_mark_is_skipped() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(serde_json::to_vec(&base_claim()).unwrap_or_default());
    assert!(matches!(read_resource(&bytes, &Limits::default()), Ok(FhirDocument::Claim(_))));
}

#[test]
fn other_resources_are_read_not_processed() {
    let doc = read(&json!({"resourceType": "ClaimResponse", "id": "x", "status": "active"}));
    assert_eq!(doc, FhirDocument::Other { resource_type: "ClaimResponse".into() });
    assert!(!doc.is_processable());
    assert_eq!(doc.operation_outcome()["issue"][0]["code"], "not-supported");
}

// ------------------------------------------------------------------ bundles

const PAT_URL: &str = "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a01";
const CLAIM_URL: &str = "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a02";

fn base_bundle() -> Value {
    let mut claim = base_claim();
    claim = without(claim, "/contained");
    claim = with(claim, "/patient", json!({"reference": PAT_URL}));
    claim = with(claim, "/insurer", json!({"reference": "Organization/payer1"}));
    claim = with(claim, "/provider", json!({"reference": "http://example.org/fhir/Practitioner/pr1"}));
    claim = with(claim, "/insurance/0/coverage", json!({"reference": "Coverage/cov1"}));
    let mut request = without(base_request(), "/contained");
    request = with(request, "/patient", json!({"reference": PAT_URL}));
    request = with(request, "/insurance/0/coverage", json!({"reference": "Coverage/cov1"}));
    json!({
        "resourceType": "Bundle",
        "id": "b-1",
        "type": "transaction",
        "entry": [
            {"fullUrl": CLAIM_URL, "resource": claim, "request": {"method": "POST", "url": "Claim"}},
            {"fullUrl": PAT_URL,
             "resource": {"resourceType": "Patient", "id": "p1",
                          "name": [{"family": "Canarybundle", "given": ["B"]}], "birthDate": "1990-01-02"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a03",
             "resource": {"resourceType": "Coverage", "id": "cov1", "status": "active",
                          "subscriberId": "BUNDLE-MEMBER", "beneficiary": {"reference": PAT_URL},
                          "subscriber": {"reference": PAT_URL}, "payor": [{"reference": "Organization/payer1"}]},
             "request": {"method": "PUT", "url": "Coverage/cov1"}},
            {"fullUrl": "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a04",
             "resource": {"resourceType": "Organization", "id": "payer1", "name": "Payer One"},
             "request": {"method": "PUT", "url": "Organization/payer1"}},
            {"fullUrl": "http://example.org/fhir/Practitioner/pr1",
             "resource": {"resourceType": "Practitioner", "id": "pr1",
                          "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": NPI}]},
             "request": {"method": "PUT", "url": "Practitioner/pr1"}},
            {"fullUrl": "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a05", "resource": request,
             "request": {"method": "POST", "url": "CoverageEligibilityRequest"}}
        ]
    })
}

#[test]
fn transaction_bundle_resolves_references_among_entries() {
    let b = bundle_doc(&base_bundle());
    let all: Vec<_> = b.all_issues().collect();
    assert!(all.is_empty(), "{all:#?}");
    assert!(b.processable);
    assert_eq!(b.bundle_type, Some(BundleType::Transaction));
    assert_eq!(b.entries.len(), 6);
    assert_eq!(b.entries[1].resource_type.as_deref(), Some("Patient"));
    assert_eq!(b.entries[0].request.as_ref().and_then(|r| r.method), Some(HttpVerb::Post));
    let claims: Vec<_> = b.claims().collect();
    assert_eq!(claims.len(), 1);
    let (idx, doc) = claims[0];
    assert_eq!(idx, 0);
    let c = doc.claim.as_ref().unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(c.patient.last_name.expose(), "Canarybundle", "by fullUrl (urn:uuid)");
    assert_eq!(c.subscriber_member_id.expose().as_deref(), Some("BUNDLE-MEMBER"), "by Type/id");
    assert_eq!(c.subscriber, c.patient, "subscriber reference names the patient entry");
    assert_eq!(c.payer_id.as_deref(), Some("payer1"));
    assert_eq!(c.payer_name.as_deref(), Some("Payer One"));
    assert_eq!(c.billing_provider_npi.as_deref(), Some(NPI), "by absolute fullUrl");
    let reqs: Vec<_> = b.eligibility_requests().collect();
    assert_eq!(reqs.len(), 1);
    let r = reqs[0].1.request.as_ref().unwrap_or_else(|| panic!("not mapped"));
    assert_eq!(r.member_id.expose().as_deref(), Some("BUNDLE-MEMBER"));
    assert!(r.dependent.is_none());
    assert!(read(&base_bundle()).is_processable());
}

#[test]
fn bundle_entry_findings_use_full_paths() {
    let v = without(base_bundle(), "/entry/0/resource/status");
    let doc = read(&v);
    assert_issue(&doc, Severity::Error, IssueType::Required, "Bundle.entry[0].resource.status");
    assert!(!doc.is_processable());
}

#[test]
fn relative_reference_resolves_against_restful_base() {
    let mut v = with(base_bundle(), "/entry/0/fullUrl", json!("http://example.org/fhir/Claim/c-1"));
    // Two Coverage/cov1: only the one on the claim's server base is meant.
    v = with(v, "/entry/2/fullUrl", json!("http://example.org/fhir/Coverage/cov1"));
    if let Some(Value::Array(e)) = v.get_mut("entry") {
        e.push(json!({"fullUrl": "http://elsewhere.org/fhir/Coverage/cov1",
                      "resource": {"resourceType": "Coverage", "id": "cov1", "subscriberId": "WRONG"},
                      "request": {"method": "PUT", "url": "Coverage/cov1"}}));
    }
    let b = bundle_doc(&v);
    let c = b.claims().next().and_then(|(_, d)| d.claim.clone());
    assert_eq!(c.and_then(|c| c.subscriber_member_id.into_inner()).as_deref(), Some("BUNDLE-MEMBER"));
    // The CER entry has a urn fullUrl: Type/id is ambiguous for it.
    let doc = FhirDocument::Bundle(b);
    assert_issue(
        &doc,
        Severity::Error,
        IssueType::MultipleMatches,
        "Bundle.entry[5].resource.insurance[0].coverage.reference",
    );
}

#[test]
fn unresolved_urn_reference_is_not_found() {
    let v = with(
        base_bundle(),
        "/entry/0/resource/patient/reference",
        json!("urn:uuid:00000000-0000-0000-0000-000000000000"),
    );
    assert_issue(&read(&v), Severity::Error, IssueType::NotFound, "Bundle.entry[0].resource.patient.reference");
}

#[test]
fn reference_to_wrong_type_in_bundle_is_invalid() {
    let v = with(base_bundle(), "/entry/0/resource/insurance/0/coverage/reference", json!(PAT_URL));
    assert_issue(
        &read(&v),
        Severity::Error,
        IssueType::Invalid,
        "Bundle.entry[0].resource.insurance[0].coverage.reference",
    );
}

#[test]
fn contained_resources_resolve_inside_an_entry() {
    let mut v = base_bundle();
    v = with(v, "/entry/0/resource", base_claim());
    let b = bundle_doc(&v);
    let c = b.claims().next().and_then(|(_, d)| d.claim.clone());
    assert_eq!(c.map(|c| c.patient.last_name.into_inner()).as_deref(), Some("Canaryfamily"));
}

rule!(bundle_requires_type, base_bundle(), |v| without(v, "/type"), Error, Required, "Bundle.type");
rule!(
    bundle_type_from_value_set,
    base_bundle(),
    |v| with(v, "/type", json!("CANARY-type")),
    Error,
    CodeInvalid,
    "Bundle.type"
);
rule!(
    transaction_entry_requires_request,
    base_bundle(),
    |v| without(v, "/entry/1/request"),
    Error,
    Required,
    "Bundle.entry[1].request"
);
rule!(
    transaction_entry_requires_method,
    base_bundle(),
    |v| without(v, "/entry/1/request/method"),
    Error,
    Required,
    "Bundle.entry[1].request.method"
);
rule!(
    transaction_entry_requires_url,
    base_bundle(),
    |v| without(v, "/entry/1/request/url"),
    Error,
    Required,
    "Bundle.entry[1].request.url"
);
rule!(
    entry_method_from_value_set,
    base_bundle(),
    |v| with(v, "/entry/1/request/method", json!("FETCH")),
    Error,
    CodeInvalid,
    "Bundle.entry[1].request.method"
);
rule!(
    batch_entry_requires_request,
    base_bundle(),
    |v| without(with(v, "/type", json!("batch")), "/entry/2/request"),
    Error,
    Required,
    "Bundle.entry[2].request"
);
rule!(
    collection_forbids_request,
    base_bundle(),
    |v| with(v, "/type", json!("collection")),
    Error,
    Invariant,
    "Bundle.entry[0].request"
);
rule!(
    searchset_is_not_intake,
    base_bundle(),
    |v| with(v, "/type", json!("searchset")),
    Error,
    NotSupported,
    "Bundle.type"
);
rule!(message_is_not_intake, base_bundle(), |v| with(v, "/type", json!("message")), Error, NotSupported, "Bundle.type");
rule!(
    claim_entry_must_be_posted,
    base_bundle(),
    |v| with(v, "/entry/0/request/method", json!("DELETE")),
    Error,
    NotSupported,
    "Bundle.entry[0].request.method"
);
rule!(
    full_urls_are_unique,
    base_bundle(),
    |v| with(v, "/entry/3/fullUrl", json!(PAT_URL)),
    Error,
    Duplicate,
    "Bundle.entry[3].fullUrl"
);
rule!(
    full_url_is_not_versioned,
    base_bundle(),
    |v| with(v, "/entry/4/fullUrl", json!("http://example.org/fhir/Practitioner/pr1/_history/2")),
    Error,
    Invariant,
    "Bundle.entry[4].fullUrl"
);
rule!(
    entry_needs_content,
    base_bundle(),
    |v| with(v, "/entry/1", json!({"fullUrl": "urn:uuid:8f2b5a43-5d4f-4a0e-9d33-6f3a3c0e1a09"})),
    Error,
    Required,
    "Bundle.entry[1]"
);
rule!(total_only_for_searches, base_bundle(), |v| with(v, "/total", json!(6)), Error, Invariant, "Bundle.total");
rule!(
    bundle_without_claims_is_not_processed,
    base_bundle(),
    |v| with(
        v,
        "/entry",
        json!([{"fullUrl": PAT_URL, "resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}}])
    ),
    Error,
    NotSupported,
    "Bundle.entry"
);

#[test]
fn non_intake_bundle_entries_are_listed_not_mapped() {
    let b = bundle_doc(&with(base_bundle(), "/type", json!("searchset")));
    assert!(!b.processable);
    assert_eq!(b.entries.len(), 6);
    assert!(b.entries.iter().all(|e| e.content == EntryContent::NotProcessed));
    assert_eq!(b.claims().count(), 0);
}

#[test]
fn too_many_entries_is_fatal_and_bounded() {
    let limits = Limits { max_bundle_entries: 3, ..Limits::default() };
    let bytes = serde_json::to_vec(&base_bundle()).unwrap_or_default();
    match read_resource(&bytes, &limits) {
        Ok(FhirDocument::Bundle(b)) => {
            assert!(!b.processable);
            assert!(b.entries.is_empty());
            assert!(b.issues.iter().any(|i| i.severity == Severity::Fatal
                && i.code == IssueType::TooLong
                && i.expression == "Bundle.entry"));
        }
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------------- builders

/// The elements R4 requires (min cardinality 1) of each built resource, plus
/// the JSON rules (no empty values) checked by reading it back.
fn assert_valid_r4(v: &Value) {
    let rt = v["resourceType"].as_str().unwrap_or_default();
    let required: &[&str] = match rt {
        "ClaimResponse" => &["status", "type", "use", "patient", "created", "insurer", "outcome"],
        "CoverageEligibilityResponse" => &["status", "purpose", "patient", "created", "request", "outcome", "insurer"],
        "OperationOutcome" => &["issue"],
        other => panic!("unexpected resourceType {other}"),
    };
    for k in required {
        assert!(v.get(*k).is_some_and(|x| !x.is_null()), "{rt}.{k} missing in {v}");
    }
    if let Some(id) = v.get("id") {
        assert!(id.as_str().is_some_and(primitives::is_id), "{rt}.id");
    }
    let mut issues = outcome::Issues::new(100);
    model::check_json_structure(v, rt, &mut issues);
    let found = issues.into_vec();
    assert!(found.is_empty(), "{found:#?}");
    if rt == "OperationOutcome" {
        for i in v["issue"].as_array().into_iter().flatten() {
            assert!(i["severity"].is_string() && i["code"].is_string(), "{i}");
        }
    } else {
        assert!(v["created"].as_str().and_then(primitives::parse_date_time).is_some());
        assert_eq!(v["status"], "active");
        assert!(ResponseOutcome::from_code(v["outcome"].as_str().unwrap_or_default()).is_some());
    }
    if rt == "ClaimResponse" {
        assert!(ClaimUse::from_code(v["use"].as_str().unwrap_or_default()).is_some());
        for it in v["item"].as_array().into_iter().flatten() {
            assert!(it["itemSequence"].as_u64().is_some_and(|s| s > 0));
            assert!(it["adjudication"].as_array().is_some_and(|a| !a.is_empty()));
        }
        for e in v["error"].as_array().into_iter().flatten() {
            assert!(e["code"]["coding"][0]["code"].is_string());
        }
    }
    if rt == "CoverageEligibilityResponse" {
        assert!(v["purpose"].as_array().is_some_and(|p| !p.is_empty()));
        for ins in v["insurance"].as_array().into_iter().flatten() {
            assert!(ins["coverage"].is_object());
            for it in ins["item"].as_array().into_iter().flatten() {
                assert!(it["category"].is_object(), "ces-1");
            }
        }
    }
}

fn created() -> time::OffsetDateTime {
    datetime!(2024-03-02 08:30:05 -07:00)
}

fn response_spec() -> ClaimResponseSpec {
    let doc = claim_doc(&base_claim());
    ClaimResponseSpec::for_claim(&doc, "cr-1", created(), ResponseOutcome::Complete)
        .unwrap_or_else(|| panic!("no spec"))
}

#[test]
fn claim_response_has_required_fields_and_echoes_the_claim() {
    let v = claim_response(&response_spec()).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_r4(&v);
    assert_eq!(v["resourceType"], "ClaimResponse");
    assert_eq!(v["id"], "cr-1");
    assert_eq!(v["type"]["coding"][0]["code"], "professional");
    assert_eq!(v["type"]["coding"][0]["system"], CLAIM_TYPE_SYSTEM);
    assert_eq!(v["use"], "claim");
    assert_eq!(v["created"], "2024-03-02T08:30:05-07:00");
    assert_eq!(v["outcome"], "complete");
    assert_eq!(v["request"]["reference"], "Claim/c-1");
    // Contained references mean nothing outside the claim.
    assert!(v["patient"].get("reference").is_none());
    assert_eq!(v["patient"]["type"], "Patient");
    assert!(v["patient"]["display"].is_string());
    assert!(v["insurer"].get("reference").is_none());
}

#[test]
fn claim_response_with_adjudication_totals_and_errors() {
    let mut spec = response_spec();
    spec.outcome = ResponseOutcome::Partial;
    spec.identifier = Some(Identifier { system: Some("http://example.org/cr".into()), value: "R1".into() });
    spec.disposition = Some("Processed".into());
    spec.items = vec![ItemAdjudication {
        item_sequence: 1,
        adjudication: vec![
            Adjudication::amount("submitted", Decimal::new(10000, 2)),
            Adjudication {
                category: Coding::new(ADJUDICATION_SYSTEM, "eligpercent"),
                reason: Some(Coding::new("http://terminology.hl7.org/CodeSystem/adjudication-reason", "ar002")),
                amount: None,
                value: Some(Decimal::new(80, 0)),
            },
        ],
    }];
    spec.totals = vec![AdjudicationTotal {
        category: Coding::new(ADJUDICATION_SYSTEM, "benefit"),
        amount: Decimal::new(9047, 2),
    }];
    spec.errors = vec![ProcessingError {
        item_sequence: Some(2),
        detail_sequence: None,
        sub_detail_sequence: None,
        code: Coding::new(ADJUDICATION_ERROR_SYSTEM, "a001"),
    }];
    let v = claim_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_r4(&v);
    assert_eq!(v["item"][0]["adjudication"][0]["amount"], json!({"value": 100, "currency": "USD"}));
    assert_eq!(v["item"][0]["adjudication"][1]["value"], json!(80));
    assert_eq!(v["total"][0]["amount"]["value"], json!(90.47));
    assert_eq!(v["error"][0]["itemSequence"], 2);
    assert_eq!(v["error"][0]["code"]["coding"][0]["code"], "a001");
    assert_eq!(v["identifier"][0]["value"], "R1");
}

#[test]
fn rejected_claim_response_lists_its_errors() {
    let doc = claim_doc(&with(base_claim(), "/created", json!("bad")));
    let spec = ClaimResponseSpec::for_claim(&doc, "cr-2", created(), ResponseOutcome::Error)
        .unwrap_or_else(|| panic!("no spec"));
    let v = claim_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_r4(&v);
    assert_eq!(v["outcome"], "error");
    assert_eq!(v["error"][0]["code"]["coding"][0]["system"], ISSUE_TYPE_SYSTEM);
    assert_eq!(v["error"][0]["code"]["coding"][0]["code"], "value");
}

#[test]
fn for_claim_needs_type_use_patient_and_insurer() {
    for p in ["/type", "/use", "/patient", "/insurer"] {
        let doc = claim_doc(&without(base_claim(), p));
        assert!(ClaimResponseSpec::for_claim(&doc, "x", created(), ResponseOutcome::Error).is_none(), "{p}");
    }
}

#[test]
fn builder_refuses_invalid_input() {
    let check = |spec: ClaimResponseSpec, element: &str| match claim_response(&spec) {
        Err(e) => assert_eq!(e.element, element, "{e}"),
        Ok(v) => panic!("built {v}"),
    };
    let mut s = response_spec();
    s.id = "has space".into();
    check(s, "ClaimResponse.id");
    let mut s = response_spec();
    s.patient = Reference::literal("#local");
    check(s, "ClaimResponse.patient.reference");
    let mut s = response_spec();
    s.insurer = Reference::default();
    check(s, "ClaimResponse.insurer");
    let mut s = response_spec();
    s.items = vec![ItemAdjudication { item_sequence: 1, adjudication: vec![] }];
    check(s, "ClaimResponse.item[0].adjudication");
    let mut s = response_spec();
    s.items = vec![ItemAdjudication {
        item_sequence: 0,
        adjudication: vec![Adjudication::amount("submitted", Decimal::ONE)],
    }];
    check(s, "ClaimResponse.item[0].itemSequence");
    let mut s = response_spec();
    s.totals = vec![AdjudicationTotal {
        category: Coding::new(ADJUDICATION_SYSTEM, "submitted"),
        amount: Decimal::from_str("1234567890.1234567890123").unwrap_or_default(),
    }];
    check(s, "ClaimResponse.total[0].amount.value");
    let mut s = response_spec();
    s.disposition = Some("   ".into());
    check(s, "ClaimResponse.disposition");
    let mut s = response_spec();
    s.errors = vec![ProcessingError {
        item_sequence: None,
        detail_sequence: None,
        sub_detail_sequence: None,
        code: Coding::new("x", " bad"),
    }];
    check(s, "ClaimResponse.error[0].code.coding[0].code");
    let mut s = response_spec();
    s.currency = "usd".into();
    check(s, "ClaimResponse.currency");
    let mut s = response_spec();
    s.created = datetime!(0000-01-01 00:00 UTC);
    check(s, "ClaimResponse.created");
}

#[test]
fn date_times_are_written_in_fhir_syntax() {
    let mut s = response_spec();
    s.created = datetime!(2024-12-31 23:59:59.999 UTC);
    let v = claim_response(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["created"], "2024-12-31T23:59:59Z");
    s.created = datetime!(2024-01-01 00:00 +05:30);
    let v = claim_response(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["created"], "2024-01-01T00:00:00+05:30");
}

fn eligibility_spec() -> EligibilityResponseSpec {
    let doc = request_doc(&base_request());
    EligibilityResponseSpec::for_request(&doc, "er-1", created(), ResponseOutcome::Complete)
        .unwrap_or_else(|| panic!("no spec"))
}

#[test]
fn eligibility_response_with_benefits() {
    let mut s = eligibility_spec();
    s.insurance = vec![InsuranceSpec {
        coverage: Reference::literal("Coverage/9876B1"),
        inforce: Some(true),
        benefit_period: Some((date!(2024 - 01 - 01), Some(date!(2024 - 12 - 31)))),
        items: vec![BenefitItem {
            network: Some(Coding::new("http://terminology.hl7.org/CodeSystem/benefit-network", "in")),
            benefits: vec![
                Benefit {
                    benefit_type: Coding::new(BENEFIT_TYPE_SYSTEM, "benefit"),
                    allowed: Some(BenefitValue::Money(Decimal::new(50000, 2))),
                    used: Some(BenefitValue::Money(Decimal::new(12525, 2))),
                },
                Benefit {
                    benefit_type: Coding::new(BENEFIT_TYPE_SYSTEM, "visit"),
                    allowed: Some(BenefitValue::UnsignedInt(20)),
                    used: Some(BenefitValue::Text("unlimited".into())),
                },
            ],
            ..BenefitItem::service_type("30")
        }],
    }];
    let v = coverage_eligibility_response(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_r4(&v);
    assert_eq!(v["purpose"], json!(["validation", "benefits"]));
    assert_eq!(v["request"]["reference"], "CoverageEligibilityRequest/e-1");
    assert_eq!(v["servicedPeriod"], json!({"start": "2024-01-01", "end": "2024-01-31"}));
    let item = &v["insurance"][0]["item"][0];
    assert_eq!(item["category"]["coding"][0]["code"], "30");
    assert_eq!(item["benefit"][0]["allowedMoney"], json!({"value": 500, "currency": "USD"}));
    assert_eq!(item["benefit"][0]["usedMoney"]["value"], json!(125.25));
    assert_eq!(item["benefit"][1]["allowedUnsignedInt"], 20);
    assert_eq!(item["benefit"][1]["usedString"], "unlimited");
    assert_eq!(v["insurance"][0]["benefitPeriod"]["end"], "2024-12-31");
    assert_eq!(v["requestor"]["identifier"]["value"], NPI);
}

#[test]
fn eligibility_error_response_carries_reject_codes() {
    let mut s = eligibility_spec();
    s.outcome = ResponseOutcome::Error;
    s.errors =
        vec![EligibilityRejectReason::SubscriberNotFound.coding(), EligibilityRejectReason::InvalidMemberId.coding()];
    let v = coverage_eligibility_response(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_valid_r4(&v);
    assert_eq!(v["error"][0]["code"]["coding"][0]["system"], X12_REJECT_REASON_SYSTEM);
    assert_eq!(v["error"][0]["code"]["coding"][0]["code"], "75");
    assert_eq!(v["error"][1]["code"]["coding"][0]["code"], "72");
    assert!(v.get("insurance").is_none());
}

#[test]
fn eligibility_builder_refuses_invalid_input() {
    let mut s = eligibility_spec();
    s.purposes.clear();
    assert_eq!(
        coverage_eligibility_response(&s).err().map(|e| e.element),
        Some("CoverageEligibilityResponse.purpose".to_owned())
    );
    let mut s = eligibility_spec();
    s.insurance = vec![InsuranceSpec {
        coverage: Reference::literal("Coverage/1"),
        inforce: None,
        benefit_period: Some((date!(2024 - 02 - 01), Some(date!(2024 - 01 - 01)))),
        items: vec![],
    }];
    assert_eq!(
        coverage_eligibility_response(&s).err().map(|e| e.element),
        Some("CoverageEligibilityResponse.insurance[0].benefitPeriod".to_owned())
    );
    let mut s = eligibility_spec();
    s.insurance = vec![InsuranceSpec {
        coverage: Reference::literal("Coverage/1"),
        inforce: Some(true),
        benefit_period: None,
        items: vec![BenefitItem {
            benefits: vec![Benefit {
                benefit_type: Coding::new(BENEFIT_TYPE_SYSTEM, "visit"),
                allowed: Some(BenefitValue::UnsignedInt(u32::MAX)),
                used: None,
            }],
            ..BenefitItem::service_type("30")
        }],
    }];
    assert!(coverage_eligibility_response(&s).is_err());
}

#[test]
fn for_request_echoes_only_a_stated_serviced_date() {
    let s = eligibility_spec();
    assert_eq!(s.serviced, Some(DateRange { from: date!(2024 - 01 - 01), to: date!(2024 - 01 - 31) }));
    let doc = request_doc(&without(base_request(), "/servicedPeriod"));
    assert_eq!(doc.header.serviced, None);
    let s = EligibilityResponseSpec::for_request(&doc, "x", created(), ResponseOutcome::Complete)
        .unwrap_or_else(|| panic!("no spec"));
    assert_eq!(s.serviced, None, "the mapped date falls back to created; the echo must not");
    let v = coverage_eligibility_response(&s).unwrap_or_else(|e| panic!("{e}"));
    assert!(v.get("servicedDate").is_none() && v.get("servicedPeriod").is_none());
}

#[test]
fn for_request_needs_a_request_reference() {
    let v = without(without(base_request(), "/id"), "/identifier");
    let doc = request_doc(&v);
    assert!(EligibilityResponseSpec::for_request(&doc, "x", created(), ResponseOutcome::Complete).is_none());
    let v = without(base_request(), "/id");
    let doc = request_doc(&v);
    let s = EligibilityResponseSpec::for_request(&doc, "x", created(), ResponseOutcome::Complete)
        .unwrap_or_else(|| panic!("no spec"));
    assert_eq!(s.request.identifier.map(|i| i.value).as_deref(), Some("TRACE-1"));
}

#[test]
fn operation_outcome_of_a_document() {
    let doc = read(&without(base_claim(), "/status"));
    let oo = doc.operation_outcome();
    assert_valid_r4(&oo);
    assert_eq!(oo["issue"][0]["expression"], json!(["Claim.status"]));
    assert_eq!(oo["issue"][0]["code"], "required");
    let ok = read(&base_claim()).operation_outcome();
    assert_valid_r4(&ok);
    assert_eq!(ok["issue"][0]["diagnostics"], "all ok");
}

// --------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &[
        "resourceType",
        "id",
        "status",
        "type",
        "use",
        "patient",
        "created",
        "provider",
        "insurer",
        "priority",
        "insurance",
        "sequence",
        "focal",
        "coverage",
        "item",
        "productOrService",
        "net",
        "unitPrice",
        "quantity",
        "factor",
        "value",
        "currency",
        "total",
        "coding",
        "code",
        "system",
        "reference",
        "identifier",
        "contained",
        "entry",
        "fullUrl",
        "resource",
        "request",
        "method",
        "url",
        "purpose",
        "servicedDate",
        "servicedPeriod",
        "start",
        "end",
        "detail",
        "subDetail",
        "diagnosis",
        "diagnosisCodeableConcept",
        "diagnosisReference",
        "subscriberId",
        "subscriber",
        "relationship",
        "name",
        "family",
        "given",
        "birthDate",
        "gender",
        "category",
        "modifier",
        "locationCodeableConcept",
        "subType",
        "careTeam",
        "payee",
        "accident",
        "date",
        "meta",
        "profile",
        "modifierExtension",
        "extension",
        "_status",
        "display",
        "text",
        "div",
        "practitioner",
        "organization",
        "supportingInfo",
        "information",
        "search",
        "response",
    ];
    const STRINGS: &[&str] = &[
        "Claim",
        "CoverageEligibilityRequest",
        "Bundle",
        "Patient",
        "Coverage",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Condition",
        "active",
        "claim",
        "professional",
        "institutional",
        "oral",
        "transaction",
        "batch",
        "collection",
        "searchset",
        "POST",
        "PUT",
        "GET",
        "USD",
        "self",
        "validation",
        "benefits",
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "#pat",
        "#p",
        "Patient/1",
        "Coverage/c",
        "urn:uuid:1",
        "urn:uuid:2",
        "http://hl7.org/fhir/sid/us-npi",
        "http://terminology.hl7.org/CodeSystem/claim-type",
        "1234567893",
        "male",
        "min",
        "CANARY-VALUE!",
        "",
        " ",
        "\u{0}",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (0u32..5).prop_map(|i| json!(i)),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            prop::sample::select(STRINGS).prop_map(|s| json!(s)),
            "\\PC{0,12}".prop_map(Value::String),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(NAMES).prop_map(str::to_owned),
            1 => "\\PC{0,8}",
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 96, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..7).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every JSON pointer in `v`.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    pointers(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    pointers(c, p, out);
                }
            }
            _ => {}
        }
    }

    /// Replaces one element of a valid document with arbitrary JSON.
    fn mutated(base: Value) -> impl Strategy<Value = Value> {
        let mut ps = Vec::new();
        pointers(&base, String::new(), &mut ps);
        (prop::sample::select(ps), arb_json(), any::<bool>()).prop_map(move |(p, new, remove)| {
            let mut v = base.clone();
            let (parent, last) = p.rsplit_once('/').unwrap_or(("", &p));
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    let last = last.replace("~1", "/").replace("~0", "~");
                    if remove {
                        m.remove(&last);
                    } else {
                        m.insert(last, new);
                    }
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < a.len()
                    {
                        if remove {
                            a.remove(i);
                        } else {
                            a[i] = new;
                        }
                    }
                }
                _ => {}
            }
            v
        })
    }

    /// What must hold for any input that reads.
    fn check(bytes: &[u8]) {
        fuzz_fhir(bytes);
        let Ok(doc) = read_resource(bytes, &Limits::default()) else {
            return;
        };
        for i in doc.issues() {
            assert!(!i.diagnostics.contains("CANARY") && !i.expression.contains("CANARY-VALUE"), "{i:?}");
        }
        let created = datetime!(2024-01-01 0:00 UTC);
        let check_claim = |c: &ClaimDoc| {
            assert_eq!(c.claim.is_some(), !has_errors(&c.issues), "{:?}", c.issues);
            if let Some(claim) = &c.claim {
                assert!(claim.service_lines.len() <= Limits::default().max_claim_items);
            }
            for outcome in [ResponseOutcome::Complete, ResponseOutcome::Error] {
                if let Some(spec) = ClaimResponseSpec::for_claim(c, "r", created, outcome)
                    && let Ok(v) = claim_response(&spec)
                {
                    assert_valid_r4(&v);
                }
            }
        };
        let check_request = |r: &EligibilityDoc| {
            assert_eq!(r.request.is_some(), !has_errors(&r.issues));
            if let Some(spec) = EligibilityResponseSpec::for_request(r, "e", created, ResponseOutcome::Complete)
                && let Ok(v) = coverage_eligibility_response(&spec)
            {
                assert_valid_r4(&v);
            }
        };
        match &doc {
            FhirDocument::Claim(c) => check_claim(c),
            FhirDocument::CoverageEligibilityRequest(r) => check_request(r),
            FhirDocument::Bundle(b) => {
                b.claims().for_each(|(_, c)| check_claim(c));
                b.eligibility_requests().for_each(|(_, r)| check_request(r));
                if !b.processable {
                    assert!(b.claims().next().is_none() || b.issues.iter().any(|i| i.severity.blocks_processing()));
                }
            }
            FhirDocument::Other { .. } => {}
        }
        assert_valid_r4(&doc.operation_outcome());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            check(&serde_json::to_vec(&v).unwrap_or_default());
        }

        #[test]
        fn arbitrary_resources_never_panic(
            rt in prop::sample::select(&["Claim", "CoverageEligibilityRequest", "Bundle"][..]),
            body in prop::collection::btree_map(key(), arb_json(), 0..12),
        ) {
            let mut m: serde_json::Map<String, Value> = body.into_iter().collect();
            m.insert("resourceType".into(), json!(rt));
            check(&serde_json::to_vec(&Value::Object(m)).unwrap_or_default());
        }

        #[test]
        fn mutated_claims_never_panic(v in mutated(base_claim())) {
            check(&serde_json::to_vec(&v).unwrap_or_default());
        }

        #[test]
        fn mutated_requests_never_panic(v in mutated(base_request())) {
            check(&serde_json::to_vec(&v).unwrap_or_default());
        }

        #[test]
        fn mutated_bundles_never_panic(v in mutated(base_bundle())) {
            check(&serde_json::to_vec(&v).unwrap_or_default());
        }

        #[test]
        fn damaged_text_never_panics(cut in 0usize..2000, byte in any::<u8>(), at in 0usize..2000) {
            let mut text = serde_json::to_vec(&base_bundle()).unwrap_or_default();
            if !text.is_empty() {
                let at = at % text.len();
                text[at] = byte;
                text.truncate(text.len() - cut % text.len());
            }
            check(&text);
        }
    }
}
