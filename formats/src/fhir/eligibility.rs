//! FHIR R4 `CoverageEligibilityRequest`: validation and mapping to the
//! format-neutral [`clearway_core::EligibilityRequest`] (what an X12 270 also
//! becomes).

use super::DocCtx;
use super::claim::check_choice;
use super::codes::{EligibilityPurpose, FinancialStatus};
use super::common::{
    check_domain_resource, coverage_facts, patient_of, payer_of, provider_npi_and_name, subscriber_and_dependent,
};
use super::json::{field, index};
use super::model::{
    DOMAIN_RESOURCE_ELEMENTS, DOMAIN_RESOURCE_PRIMITIVES, Identifier, Obj, Reader, Reference, check_object_structure,
    check_unknown_elements,
};
use super::outcome::{IssueType, Issues, OutcomeIssue};
use super::primitives::{FhirDate, is_id};
use super::resolve::{Resolution, Resolver};
use clearway_core::{DateRange, EligibilityRequest, Sensitive, SourceFormat};
use serde_json::Value;
use std::collections::HashSet;

/// What a CoverageEligibilityRequest says about itself, read even when it
/// cannot be mapped: enough to answer it with a CoverageEligibilityResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EligibilityHeader {
    pub id: Option<String>,
    /// The first `identifier` with a value.
    pub identifier: Option<Identifier>,
    pub status: Option<FinancialStatus>,
    /// `purpose`, the codes in the value set, in order.
    pub purposes: Vec<EligibilityPurpose>,
    /// `patient` as written; display and identifier are PHI.
    pub patient: Sensitive<Option<Reference>>,
    pub insurer: Option<Reference>,
    pub provider: Option<Reference>,
    /// `created` as written (a valid dateTime).
    pub created: Option<String>,
    /// `servicedDate` / `servicedPeriod`, when given and precise to the day.
    pub serviced: Option<DateRange>,
    pub item_count: usize,
    pub insurance_count: usize,
}

/// A CoverageEligibilityRequest read from FHIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityDoc {
    pub header: EligibilityHeader,
    /// `Some` exactly when `issues` holds no `error` or `fatal` issue.
    pub request: Option<EligibilityRequest>,
    pub issues: Vec<OutcomeIssue>,
}

const CER_ELEMENTS: &[&str] = &[
    "identifier",
    "status",
    "priority",
    "purpose",
    "patient",
    "servicedDate",
    "servicedPeriod",
    "created",
    "enterer",
    "provider",
    "insurer",
    "facility",
    "supportingInfo",
    "insurance",
    "item",
];
const CER_PRIMITIVES: &[&str] = &["status", "purpose", "servicedDate", "created"];

/// Code systems whose codes are X12 service type codes (EQ01). R4's example
/// benefit-category codes are the X12 service type codes.
fn is_service_type_system(system: &str) -> bool {
    system.is_empty()
        || system == "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
        || system.to_ascii_lowercase().contains("service-type")
        || system == "https://codesystem.x12.org/005010/1365"
}

pub(crate) fn read_eligibility(o: &Obj, root: &str, ctx: &DocCtx<'_>) -> EligibilityDoc {
    let mut issues = Issues::new(ctx.limits.max_issues);
    check_object_structure(o, root, &mut issues);
    let mut known = DOMAIN_RESOURCE_ELEMENTS.to_vec();
    known.extend_from_slice(CER_ELEMENTS);
    let mut primitives = DOMAIN_RESOURCE_PRIMITIVES.to_vec();
    primitives.extend_from_slice(CER_PRIMITIVES);
    check_unknown_elements(o, root, &known, &primitives, &mut issues);
    check_domain_resource(o, root, &mut issues);
    let resolver = Resolver::new(o, root, ctx.bundle, ctx.full_url);
    let p = |name: &str| field(root, name);
    let mut r = Reader { issues: &mut issues };
    let mut header = EligibilityHeader {
        id: o.get("id").and_then(Value::as_str).filter(|s| is_id(s)).map(str::to_owned),
        ..EligibilityHeader::default()
    };

    let ipath = p("identifier");
    for (i, v) in r.array(o, "identifier", &ipath, false).iter().enumerate() {
        let ip = index(&ipath, i);
        if let Some(io) = r.item_object(v, &ip)
            && let Some(id) = r.identifier_body(io, &ip)
            && header.identifier.is_none()
        {
            header.identifier = Some(id);
        }
    }
    header.status =
        r.code(o, "status", &p("status"), true, Some(FinancialStatus::CODES)).and_then(FinancialStatus::from_code);
    r.concept(o, "priority", &p("priority"), false);

    // purpose 1..*
    let ppath = p("purpose");
    for (i, v) in r.array(o, "purpose", &ppath, true).iter().enumerate() {
        let pp = index(&ppath, i);
        if let Some(code) = r.checked_code(v, &pp, Some(EligibilityPurpose::CODES))
            && let Some(purpose) = EligibilityPurpose::from_code(code)
        {
            if header.purposes.contains(&purpose) {
                r.issues.warning(IssueType::Duplicate, &pp, "purpose is repeated");
            } else {
                header.purposes.push(purpose);
            }
        }
    }

    let patient = r.reference(o, "patient", &p("patient"), true);
    header.patient = Sensitive::new(patient.clone());
    check_choice(o, &["servicedDate", "servicedPeriod"], &p("serviced"), r.issues);
    let served_date = r.date(o, "servicedDate", &p("servicedDate"), false);
    let served_period = r.period(o, "servicedPeriod", &p("servicedPeriod"), false);
    let created = r.date_time(o, "created", &p("created"), true);
    header.created = created.and(o.get("created").and_then(Value::as_str).map(str::to_owned));
    r.reference(o, "enterer", &p("enterer"), false);
    header.provider = r.reference(o, "provider", &p("provider"), false);
    header.insurer = r.reference(o, "insurer", &p("insurer"), true);
    r.reference(o, "facility", &p("facility"), false);

    let spath = p("supportingInfo");
    let mut info_seqs = HashSet::new();
    for (i, v) in r.array(o, "supportingInfo", &spath, false).iter().enumerate() {
        let sp = index(&spath, i);
        let Some(si) = r.item_object(v, &sp) else {
            continue;
        };
        if let Some(s) = r.positive_int(si, "sequence", &field(&sp, "sequence"), true) {
            info_seqs.insert(s);
        }
        r.reference(si, "information", &field(&sp, "information"), true);
        r.boolean(si, "appliesToAll", &field(&sp, "appliesToAll"), false);
    }

    // insurance 0..*
    let ins_path = p("insurance");
    let insurance = r.array(o, "insurance", &ins_path, false);
    header.insurance_count = insurance.len();
    let mut focal: Option<(Reference, String)> = None;
    let mut first: Option<(Reference, String)> = None;
    for (i, v) in insurance.iter().enumerate() {
        let ip = index(&ins_path, i);
        let Some(ins) = r.item_object(v, &ip) else {
            continue;
        };
        let is_focal = r.boolean(ins, "focal", &field(&ip, "focal"), false);
        let cpath = field(&ip, "coverage");
        let coverage = r.reference(ins, "coverage", &cpath, true);
        r.string(ins, "businessArrangement", &field(&ip, "businessArrangement"), false);
        if let Some(c) = coverage {
            if is_focal == Some(true) && focal.is_none() {
                focal = Some((c.clone(), cpath.clone()));
            }
            if first.is_none() {
                first = Some((c, cpath));
            }
        }
    }

    // item 0..*, bounded like Claim items.
    let item_path = p("item");
    let items = r.array(o, "item", &item_path, false);
    header.item_count = items.len();
    let mut service_types: Vec<String> = Vec::new();
    if items.len() > ctx.limits.max_claim_items {
        r.issues.error(IssueType::TooLong, &item_path, "request has more items than Clearway accepts");
    } else {
        for (i, v) in items.iter().enumerate() {
            let ip = index(&item_path, i);
            let Some(it) = r.item_object(v, &ip) else {
                continue;
            };
            let sis = field(&ip, "supportingInfoSequence");
            let mut bad_ref = false;
            for (j, s) in r.array(it, "supportingInfoSequence", &sis, false).iter().enumerate() {
                if let Some(s) = r.checked_positive_int(s, &index(&sis, j)) {
                    bad_ref |= !info_seqs.contains(&s);
                }
            }
            if bad_ref {
                r.issues.error(
                    IssueType::BusinessRule,
                    &sis,
                    "refers to a supportingInfo sequence that the request does not define",
                );
            }
            if let Some(cc) = r.concept(it, "category", &field(&ip, "category"), false) {
                match cc.code_where(is_service_type_system) {
                    Some(code) => {
                        if !service_types.iter().any(|s| s == code) {
                            service_types.push(code.to_owned());
                        }
                    }
                    None => r.issues.info(
                        IssueType::Informational,
                        field(&ip, "category"),
                        "category has no X12 service type code; not mapped",
                    ),
                }
            }
            r.concept(it, "productOrService", &field(&ip, "productOrService"), false);
            let mpath = field(&ip, "modifier");
            for (j, m) in r.array(it, "modifier", &mpath, false).iter().enumerate() {
                r.concept_item(m, &index(&mpath, j));
            }
            r.reference(it, "provider", &field(&ip, "provider"), false);
            r.quantity(it, "quantity", &field(&ip, "quantity"));
            r.money(it, "unitPrice", &field(&ip, "unitPrice"));
            r.reference(it, "facility", &field(&ip, "facility"), false);
            let dpath = field(&ip, "diagnosis");
            for (j, d) in r.array(it, "diagnosis", &dpath, false).iter().enumerate() {
                let dp = index(&dpath, j);
                if let Some(d) = r.item_object(d, &dp) {
                    check_choice(
                        d,
                        &["diagnosisCodeableConcept", "diagnosisReference"],
                        &field(&dp, "diagnosis"),
                        r.issues,
                    );
                    r.concept(d, "diagnosisCodeableConcept", &field(&dp, "diagnosisCodeableConcept"), false);
                    r.reference(d, "diagnosisReference", &field(&dp, "diagnosisReference"), false);
                }
            }
            let detail = field(&ip, "detail");
            for (j, d) in r.array(it, "detail", &detail, false).iter().enumerate() {
                r.reference_item(d, &index(&detail, j));
            }
        }
    }

    let (patient_person, patient_path) = patient_of(&mut r, &resolver, patient.as_ref(), &p("patient"));
    let (provider_npi, provider_name) = match &header.provider {
        Some(pr) => provider_npi_and_name(pr, &p("provider"), &resolver, r.issues),
        None => (None, None),
    };
    let (payer_id, payer_name) = match &header.insurer {
        Some(ins) => payer_of(ins, &p("insurer"), &resolver, r.issues),
        None => (None, None),
    };
    let coverage = focal.or(first).and_then(|(c, cpath)| {
        let facts = coverage_facts(&c, &cpath, patient_path.as_deref(), &resolver, r.issues);
        if facts.is_none() && matches!(resolver.resolve(&c), Resolution::External | Resolution::NoLiteral) {
            r.issues.info(
                IssueType::Informational,
                &cpath,
                "the focal Coverage is not in the submission; the member id is not mapped",
            );
        }
        facts
    });

    header.serviced = match (served_date, served_period) {
        (Some(d), _) => d.day().map(DateRange::day),
        (None, Some(pd)) => match (pd.start.and_then(FhirDate::day), pd.end.and_then(FhirDate::day)) {
            (Some(s), Some(e)) => Some(DateRange { from: s, to: e }),
            (Some(d), None) | (None, Some(d)) => Some(DateRange::day(d)),
            (None, None) => None,
        },
        (None, None) => None,
    };
    let date = header.serviced.or_else(|| created.and_then(FhirDate::day).map(DateRange::day));

    let request = if r.issues.has_errors() {
        None
    } else {
        let member_id = coverage.as_ref().and_then(|f| f.member_id.clone());
        let (subscriber, dependent) = subscriber_and_dependent(&patient_person, coverage);
        if service_types.is_empty() {
            service_types.push("30".to_owned());
        }
        Some(EligibilityRequest {
            source: SourceFormat::Fhir,
            trace_number: header.identifier.as_ref().map(|i| i.value.clone()).or_else(|| header.id.clone()),
            trace_originator: None,
            payer_id,
            payer_name,
            provider_id: provider_npi.clone().map(|n| ("XX".to_string(), n)),
            provider_npi,
            provider_name,
            member_id: Sensitive::new(member_id),
            subscriber,
            dependent,
            service_types,
            date,
        })
    };
    EligibilityDoc { header, request, issues: issues.into_vec() }
}
