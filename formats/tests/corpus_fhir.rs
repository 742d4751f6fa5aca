//! FHIR R4 conformance against the shared corpus.
//!
//! For every manifest entry with `"format": "fhir"`, the facts in its
//! `computed` object are checked against what `clearway_formats::fhir` reads.
//! Every computed key must be handled here: an unknown key fails the test, so
//! a new fact in the manifest cannot be silently ignored. Resources Clearway
//! reads but does not process (ClaimResponse, CoverageEligibilityResponse,
//! ExplanationOfBenefit) come back as `FhirDocument::Other`; their facts
//! (outcome, totals, ...) are not exposed by the reader and are checked
//! against the raw JSON, which at least pins the corpus file to its manifest.
//!
//! The official R4 Claim and CoverageEligibilityRequest examples must read
//! with no error and no warning (information notes, e.g. "the referenced
//! Patient is not in the submission", are expected: the examples reference
//! resources that live on a server).
//!
//! Snapshots of responses built from corpus documents are in
//! `tests/snapshots/`.

mod common;

use clearway_formats::fhir::{
    Adjudication, AdjudicationTotal, Benefit, BenefitItem, BenefitValue, BundleDoc, ClaimResponseSpec, Coding,
    EligibilityRejectReason, EligibilityResponseSpec, FhirDocument, FhirError, InsuranceSpec, IssueType,
    ItemAdjudication, Limits, ResponseOutcome, Severity, claim_response, coverage_eligibility_response, fuzz_fhir,
    read_resource,
};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;
use time::macros::{date, datetime};

/// A manifest number or numeric string as a decimal (`125.0`, `"1340.57"`).
fn decimal(v: &Value) -> Decimal {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("not a number: {other}"),
    };
    Decimal::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_owned())
        .collect()
}

fn read_file(file: &str) -> (Vec<u8>, FhirDocument) {
    let bytes = common::read(file);
    let doc = read_resource(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{file}: not read: {e}"));
    (bytes, doc)
}

/// Errors and warnings of a document, as `severity code expression`.
fn findings(doc: &FhirDocument, at_least: Severity) -> Vec<String> {
    doc.issues()
        .into_iter()
        .filter(|i| i.severity <= at_least)
        .map(|i| format!("{} {} {}", i.severity.as_str(), i.code.as_str(), i.expression))
        .collect()
}

fn check_claim(file: &str, doc: &FhirDocument, computed: &BTreeMap<String, Value>) {
    let FhirDocument::Claim(c) = doc else {
        panic!("{file}: not read as a Claim");
    };
    let found = findings(doc, Severity::Warning);
    assert!(found.is_empty(), "{file}: official example has findings {found:?}");
    let claim = c.claim.as_ref().unwrap_or_else(|| panic!("{file}: not mapped: {:?}", c.issues));
    let h = &c.header;
    for (k, v) in computed {
        match k.as_str() {
            "resourceType" => assert_eq!(v, "Claim"),
            "id" => assert_eq!(h.id.as_deref(), v.as_str(), "{file}: id"),
            "type" => {
                let codes = strings(v);
                assert_eq!(h.claim_type.as_ref().map(|t| vec![t.clone()]), Some(codes), "{file}: type");
            }
            "use" => assert_eq!(h.claim_use.map(|u| u.as_str()), v.as_str(), "{file}: use"),
            "patient" => assert_eq!(
                h.patient.expose().as_ref().and_then(|r| r.reference.as_deref()),
                v.as_str(),
                "{file}: patient"
            ),
            "items" => {
                assert_eq!(Some(h.item_count as u64), v.as_u64(), "{file}: items");
                assert_eq!(Some(claim.service_lines.len() as u64), v.as_u64(), "{file}: lines");
            }
            "insurance" => assert_eq!(Some(h.insurance_count as u64), v.as_u64(), "{file}: insurance"),
            "total" => {
                assert_eq!(h.total, Some(decimal(v)), "{file}: total");
                assert_eq!(claim.total_charge, decimal(v), "{file}: total_charge");
            }
            "sum_item_net" => {
                assert_eq!(claim.summary().line_charge_total, decimal(v), "{file}: sum of item net");
                if !computed.contains_key("total") {
                    assert_eq!(claim.total_charge, decimal(v), "{file}: total_charge from items");
                }
            }
            other => panic!("{file}: computed fact {other} is not checked"),
        }
    }
}

fn check_request(file: &str, doc: &FhirDocument, computed: &BTreeMap<String, Value>) {
    let FhirDocument::CoverageEligibilityRequest(r) = doc else {
        panic!("{file}: not read as a CoverageEligibilityRequest");
    };
    let found = findings(doc, Severity::Warning);
    assert!(found.is_empty(), "{file}: official example has findings {found:?}");
    let request = r.request.as_ref().unwrap_or_else(|| panic!("{file}: not mapped: {:?}", r.issues));
    assert!(!request.service_types.is_empty());
    let h = &r.header;
    for (k, v) in computed {
        match k.as_str() {
            "resourceType" => assert_eq!(v, "CoverageEligibilityRequest"),
            "id" => assert_eq!(h.id.as_deref(), v.as_str(), "{file}: id"),
            "purpose" => assert_eq!(
                h.purposes.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>(),
                strings(v),
                "{file}: purpose"
            ),
            "patient" => assert_eq!(
                h.patient.expose().as_ref().and_then(|r| r.reference.as_deref()),
                v.as_str(),
                "{file}: patient"
            ),
            "insurance" => assert_eq!(Some(h.insurance_count as u64), v.as_u64(), "{file}: insurance"),
            "items" => assert_eq!(Some(h.item_count as u64), v.as_u64(), "{file}: items"),
            other => panic!("{file}: computed fact {other} is not checked"),
        }
    }
}

fn check_bundle(file: &str, doc: &FhirDocument, computed: &BTreeMap<String, Value>) {
    let FhirDocument::Bundle(b) = doc else {
        panic!("{file}: not read as a Bundle");
    };
    for (k, v) in computed {
        match k.as_str() {
            "resourceType" => assert_eq!(v, "Bundle"),
            "id" => assert_eq!(b.id.as_deref(), v.as_str(), "{file}: id"),
            "type" => assert_eq!(b.bundle_type.map(|t| t.as_str()), v.as_str(), "{file}: type"),
            "entries" => assert_eq!(Some(b.entries.len() as u64), v.as_u64(), "{file}: entries"),
            "entry_types" => assert_eq!(entry_types(b), entry_types_of(v), "{file}: entry types"),
            "total" => assert_eq!(b.total.map(u64::from), v.as_u64(), "{file}: total"),
            other => panic!("{file}: computed fact {other} is not checked"),
        }
    }
    // None of the corpus Bundles is intake: a searchset, and batches of
    // administrative resources converted from HL7 v2. Each envelope is
    // otherwise clean: exactly one finding says why it is not processed.
    assert!(!b.processable, "{file}: processable");
    assert!(!doc.is_processable());
    let found = findings(doc, Severity::Warning);
    let expected = if b.bundle_type.map(|t| t.as_str()) == Some("searchset") {
        "error not-supported Bundle.type"
    } else {
        "error not-supported Bundle.entry"
    };
    assert_eq!(found, [expected], "{file}");
}

fn entry_types(b: &BundleDoc) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in &b.entries {
        *out.entry(e.resource_type.clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

fn entry_types_of(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("entry_types is not an object"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or_default()))
        .collect()
}

/// Resources read but not processed: facts checked against the raw JSON.
fn check_other(file: &str, raw: &Value, doc: &FhirDocument, computed: &BTreeMap<String, Value>) {
    let rt = raw["resourceType"].as_str().unwrap_or_default();
    assert_eq!(doc, &FhirDocument::Other { resource_type: rt.to_owned() }, "{file}");
    assert!(!doc.is_processable());
    assert_eq!(doc.operation_outcome()["issue"][0]["code"], "not-supported");
    for (k, v) in computed {
        match k.as_str() {
            "resourceType" => assert_eq!(v.as_str(), Some(rt)),
            "id" | "outcome" => assert_eq!(&raw[k], v, "{file}: {k}"),
            "purpose" => assert_eq!(strings(&raw["purpose"]), strings(v), "{file}: purpose"),
            "insurance" => assert_eq!(
                raw["insurance"].as_array().map_or(0, Vec::len) as u64,
                v.as_u64().unwrap_or(u64::MAX),
                "{file}: insurance"
            ),
            "error_codes" => {
                let codes: Vec<String> = raw["error"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["code"]["coding"][0]["code"].as_str().map(str::to_owned))
                    .collect();
                assert_eq!(codes, strings(v), "{file}: error codes");
            }
            "total" => {
                let totals: Vec<(String, Decimal)> = raw["total"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let cat = t["category"]["coding"][0]["code"].as_str().unwrap_or_default();
                        (cat.to_owned(), decimal(&t["amount"]["value"]))
                    })
                    .collect();
                let expected: Vec<(String, Decimal)> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| (p[0].as_str().unwrap_or_default().to_owned(), decimal(&p[1])))
                    .collect();
                assert_eq!(totals, expected, "{file}: totals");
            }
            "payment" => assert_eq!(decimal(&raw["payment"]["amount"]["value"]), decimal(v), "{file}: payment"),
            other => panic!("{file}: computed fact {other} is not checked"),
        }
    }
}

#[test]
fn every_fhir_manifest_entry_matches_its_computed_facts() {
    let entries = common::entries("fhir");
    assert!(!entries.is_empty(), "no fhir entries in the manifest");
    let mut kinds = BTreeMap::<String, usize>::new();
    for e in &entries {
        let file = e["file"].as_str().unwrap_or_else(|| panic!("entry without file: {e}"));
        let computed: BTreeMap<String, Value> = e["computed"]
            .as_object()
            .unwrap_or_else(|| panic!("{file}: no computed facts"))
            .clone()
            .into_iter()
            .collect();
        let (bytes, doc) = read_file(file);
        assert_eq!(Some(bytes.len() as u64), e["bytes"].as_u64(), "{file}: size differs from manifest");
        let raw: Value = serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!(doc.resource_type(), raw["resourceType"].as_str().unwrap_or_default());
        match &doc {
            FhirDocument::Claim(_) => check_claim(file, &doc, &computed),
            FhirDocument::CoverageEligibilityRequest(_) => check_request(file, &doc, &computed),
            FhirDocument::Bundle(_) => check_bundle(file, &doc, &computed),
            FhirDocument::Other { .. } => check_other(file, &raw, &doc, &computed),
        }
        *kinds.entry(doc.resource_type().to_owned()).or_default() += 1;
    }
    // The corpus covers each kind of document the reader distinguishes.
    for k in ["Claim", "CoverageEligibilityRequest", "Bundle", "ClaimResponse"] {
        assert!(kinds.contains_key(k), "no {k} in the corpus: {kinds:?}");
    }
}

#[test]
fn corpus_files_survive_fuzzing_and_truncation() {
    for e in common::entries("fhir") {
        let file = e["file"].as_str().unwrap_or_default();
        let bytes = common::read(file);
        fuzz_fhir(&bytes);
        let end = bytes.trim_ascii_end().len();
        for cut in [1, 2, end / 3, end / 2, end - 1] {
            let r = read_resource(&bytes[..cut.min(bytes.len())], &Limits::default());
            assert!(
                matches!(r, Err(FhirError::TruncatedJson { .. } | FhirError::MalformedJson { .. })),
                "{file} cut at {cut}: {r:?}"
            );
        }
        let small = Limits { max_input_bytes: bytes.len() - 1, ..Limits::default() };
        assert!(matches!(read_resource(&bytes, &small), Err(FhirError::TooLarge { .. })));
    }
}

#[test]
fn every_corpus_outcome_names_only_codes_and_paths() {
    // Diagnostics are this crate's sentences: none may quote a string value
    // of the input.
    for e in common::entries("fhir") {
        let file = e["file"].as_str().unwrap_or_default();
        let (bytes, doc) = read_file(file);
        let raw: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let mut values = Vec::new();
        collect_strings(&raw, &mut values);
        for i in doc.issues() {
            for v in &values {
                if v.len() >= 4 {
                    assert!(!i.diagnostics.contains(v.as_str()), "{file}: {i:?} quotes input");
                }
            }
        }
    }
}

/// String values of the input, except resource type names (structure, not data).
fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|c| collect_strings(c, out)),
        Value::Object(m) => m.iter().filter(|(k, _)| *k != "resourceType").for_each(|(_, c)| collect_strings(c, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------- snapshots

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn claim_doc(file: &str) -> clearway_formats::fhir::ClaimDoc {
    match read_file(file).1 {
        FhirDocument::Claim(c) => c,
        other => panic!("{file}: {}", other.resource_type()),
    }
}

fn request_doc(file: &str) -> clearway_formats::fhir::EligibilityDoc {
    match read_file(file).1 {
        FhirDocument::CoverageEligibilityRequest(r) => r,
        other => panic!("{file}: {}", other.resource_type()),
    }
}

#[test]
fn snapshot_claim_response_adjudicated() {
    let doc = claim_doc("fhir/claim-r4-professional.json");
    let claim = doc.claim.clone().unwrap_or_else(|| panic!("not mapped"));
    let mut spec = ClaimResponseSpec::for_claim(
        &doc,
        "cr-860150",
        datetime!(2014-08-17 09:00:00 -05:00),
        ResponseOutcome::Complete,
    )
    .unwrap_or_else(|| panic!("no spec"));
    spec.disposition = Some("Claim settled as per contract.".into());
    spec.items = claim
        .service_lines
        .iter()
        .map(|l| ItemAdjudication {
            item_sequence: l.line_number,
            adjudication: vec![
                Adjudication::amount("submitted", l.charge),
                Adjudication::amount("benefit", l.charge * Decimal::new(8, 1)),
            ],
        })
        .collect();
    spec.totals = vec![
        AdjudicationTotal {
            category: Coding::new(clearway_formats::fhir::ADJUDICATION_SYSTEM, "submitted"),
            amount: claim.total_charge,
        },
        AdjudicationTotal {
            category: Coding::new(clearway_formats::fhir::ADJUDICATION_SYSTEM, "benefit"),
            amount: claim.total_charge * Decimal::new(8, 1),
        },
    ];
    let v = claim_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("claim_response_professional", pretty(&v));
}

#[test]
fn snapshot_claim_response_queued_for_contained_patient() {
    let doc = claim_doc("fhir/claim-r4-cms1500-medical.json");
    let spec =
        ClaimResponseSpec::for_claim(&doc, "cr-med-00050", datetime!(2015-10-16 12:00:00 UTC), ResponseOutcome::Queued)
            .unwrap_or_else(|| panic!("no spec"));
    let v = claim_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("claim_response_cms1500_queued", pretty(&v));
}

#[test]
fn snapshot_eligibility_response_with_benefits() {
    let doc = request_doc("fhir/coverageeligibilityrequest-r4-example-2.json");
    let mut spec = EligibilityResponseSpec::for_request(
        &doc,
        "er-52346",
        datetime!(2014-08-16 10:00:00 UTC),
        ResponseOutcome::Complete,
    )
    .unwrap_or_else(|| panic!("no spec"));
    spec.disposition = Some("Policy is currently in-force.".into());
    let categories = doc.request.as_ref().map(|r| r.service_types.clone()).unwrap_or_default();
    spec.insurance = vec![InsuranceSpec {
        coverage: clearway_formats::fhir::Reference::literal("Coverage/9876B1"),
        inforce: Some(true),
        benefit_period: Some((date!(2014 - 01 - 01), Some(date!(2014 - 12 - 31)))),
        items: categories
            .iter()
            .map(|c| BenefitItem {
                network: Some(Coding::new("http://terminology.hl7.org/CodeSystem/benefit-network", "in")),
                unit: Some(Coding::new("http://terminology.hl7.org/CodeSystem/benefit-unit", "individual")),
                term: Some(Coding::new("http://terminology.hl7.org/CodeSystem/benefit-term", "annual")),
                benefits: vec![Benefit {
                    benefit_type: Coding::new(clearway_formats::fhir::BENEFIT_TYPE_SYSTEM, "benefit"),
                    allowed: Some(BenefitValue::Money(Decimal::new(1_000_000, 2))),
                    used: Some(BenefitValue::Money(Decimal::new(250_050, 2))),
                }],
                ..BenefitItem::service_type(c)
            })
            .collect(),
    }];
    let v = coverage_eligibility_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("eligibility_response_benefits", pretty(&v));
}

#[test]
fn snapshot_eligibility_response_member_not_found() {
    let doc = request_doc("fhir/coverageeligibilityrequest-r4-example.json");
    let mut spec = EligibilityResponseSpec::for_request(
        &doc,
        "er-52345",
        datetime!(2014-08-16 10:00:00 UTC),
        ResponseOutcome::Error,
    )
    .unwrap_or_else(|| panic!("no spec"));
    spec.errors = vec![EligibilityRejectReason::SubscriberNotFound.coding()];
    let v = coverage_eligibility_response(&spec).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("eligibility_response_not_found", pretty(&v));
}

#[test]
fn snapshot_operation_outcomes() {
    let (_, searchset) = read_file("fhir/bundle-r4-searchset-example.json");
    insta::assert_snapshot!("outcome_searchset", pretty(&searchset.operation_outcome()));
    let (_, claim) = read_file("fhir/claim-r4-professional.json");
    let notes = claim.operation_outcome();
    assert!(
        notes["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["severity"] == "information" && i["code"] == IssueType::Informational.as_str())
    );
    insta::assert_snapshot!("outcome_professional_claim", pretty(&notes));
}
