//! FHIR R4 `Claim`: validation (cardinality, required elements, value sets,
//! primitive syntax, the business rules intake needs) and mapping to the
//! format-neutral [`clearway_core::Claim`].

use super::codes::{CLAIM_TYPE_SYSTEM, ClaimUse, FinancialStatus, claim_kind_from_code};
use super::common::{
    check_domain_resource, coverage_facts, first_profile, patient_of, payer_of, provider_npi_and_name, resolve_checked,
    subscriber_and_dependent,
};
use super::json::{field, index};
use super::model::{
    DOMAIN_RESOURCE_ELEMENTS, DOMAIN_RESOURCE_PRIMITIVES, Identifier, InConcept, InPeriod, Obj, Reader, Reference,
    check_object_structure, check_unknown_elements,
};
use super::outcome::{IssueType, Issues, OutcomeIssue};
use super::primitives::FhirDate;
use super::resolve::{Resolution, Resolver};
use super::{DocCtx, Limits};
use clearway_core::{
    Claim, ClaimKind, ClinicalCode, DateRange, ProviderRef, ProviderRole, Sensitive, ServiceLine, SourceFormat,
};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashSet;

/// What a Claim says about itself, read even when it cannot be mapped:
/// enough to route it and to answer it with a ClaimResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimHeader {
    /// `Claim.id`, when valid.
    pub id: Option<String>,
    /// The first `Claim.identifier` with a value (the patient control number).
    pub identifier: Sensitive<Option<Identifier>>,
    pub status: Option<FinancialStatus>,
    /// The `Claim.type` code from the claim-type code system, as written.
    pub claim_type: Option<String>,
    /// `claim_type` when it is one Clearway processes.
    pub kind: Option<ClaimKind>,
    pub claim_use: Option<ClaimUse>,
    /// `Claim.patient` as written (`Patient/1`, `#patient-1`, ...). The
    /// display and identifier of a patient reference are PHI.
    pub patient: Sensitive<Option<Reference>>,
    pub insurer: Option<Reference>,
    pub provider: Option<Reference>,
    /// `Claim.created` as written (a valid dateTime).
    pub created: Option<String>,
    /// Number of `Claim.item` (also when above the limit).
    pub item_count: usize,
    /// Number of `Claim.insurance`.
    pub insurance_count: usize,
    /// `Claim.total.value`.
    pub total: Option<Decimal>,
}

/// A Claim read from FHIR: its header, the mapped [`Claim`] and the findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimDoc {
    pub header: ClaimHeader,
    /// `Some` exactly when `issues` holds no `error` or `fatal` issue.
    pub claim: Option<Claim>,
    /// Findings about this Claim, with expressions from the submission's
    /// root (`Claim.item[0]` or `Bundle.entry[2].resource.item[0]`).
    pub issues: Vec<OutcomeIssue>,
}

const CLAIM_ELEMENTS: &[&str] = &[
    "identifier",
    "status",
    "type",
    "subType",
    "use",
    "patient",
    "billablePeriod",
    "created",
    "enterer",
    "insurer",
    "provider",
    "priority",
    "fundsReserve",
    "related",
    "prescription",
    "originalPrescription",
    "payee",
    "referral",
    "facility",
    "careTeam",
    "supportingInfo",
    "diagnosis",
    "procedure",
    "insurance",
    "accident",
    "item",
    "total",
];
const CLAIM_PRIMITIVES: &[&str] = &["status", "use", "created"];

const ITEM_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "sequence",
    "careTeamSequence",
    "diagnosisSequence",
    "procedureSequence",
    "informationSequence",
    "revenue",
    "category",
    "productOrService",
    "modifier",
    "programCode",
    "servicedDate",
    "servicedPeriod",
    "locationCodeableConcept",
    "locationAddress",
    "locationReference",
    "quantity",
    "unitPrice",
    "factor",
    "net",
    "udi",
    "bodySite",
    "subSite",
    "encounter",
    "detail",
];
const ITEM_PRIMITIVES: &[&str] = &[
    "sequence",
    "careTeamSequence",
    "diagnosisSequence",
    "procedureSequence",
    "informationSequence",
    "servicedDate",
    "factor",
];
const DETAIL_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "sequence",
    "revenue",
    "category",
    "productOrService",
    "modifier",
    "programCode",
    "quantity",
    "unitPrice",
    "factor",
    "net",
    "udi",
    "subDetail",
];
const INSURANCE_ELEMENTS: &[&str] = &[
    "id",
    "extension",
    "modifierExtension",
    "sequence",
    "focal",
    "identifier",
    "coverage",
    "businessArrangement",
    "preAuthRef",
    "claimResponse",
];

/// Code systems whose codes are CMS place-of-service codes.
fn is_place_of_service_system(system: &str) -> bool {
    let s = system.to_ascii_lowercase();
    s.contains("place-of-service")
        || s.contains("place_of_service")
        || s == "http://terminology.hl7.org/codesystem/ex-serviceplace"
}

/// Code systems of the UB-04 type of bill.
fn is_bill_type_system(system: &str) -> bool {
    let s = system.to_ascii_lowercase();
    s.contains("billtype") || s.contains("typeofbill")
}

/// Reports when more than one element of a choice `name[x]` is present.
pub(crate) fn check_choice(o: &Obj, variants: &[&str], path: &str, issues: &mut Issues) {
    if variants.iter().filter(|v| o.contains_key(**v)).count() > 1 {
        issues.error(IssueType::Structure, path, "more than one type is given for a choice element ([x])");
    }
}

/// A service line as read, before it becomes a [`ServiceLine`].
#[derive(Debug, Default)]
struct LineFacts {
    sequence: Option<u32>,
    code: Option<String>,
    system: Option<String>,
    modifiers: Vec<String>,
    revenue: Option<String>,
    charge: Option<Decimal>,
    units: Option<Decimal>,
    unit_basis: Option<String>,
    service_date: Option<DateRange>,
    place_of_service: Option<String>,
}

/// Money of a line: `net`, else `unitPrice × quantity × factor`, else the sum
/// of its parts. `Err` when the arithmetic overflows.
fn line_amount(
    net: Option<Decimal>,
    unit_price: Option<Decimal>,
    quantity: Option<Decimal>,
    factor: Option<Decimal>,
    parts: Option<Decimal>,
) -> Result<Option<Decimal>, ()> {
    if net.is_some() {
        return Ok(net);
    }
    if let Some(p) = unit_price {
        let q = quantity.unwrap_or(Decimal::ONE);
        let f = factor.unwrap_or(Decimal::ONE);
        return p.checked_mul(q).and_then(|x| x.checked_mul(f)).map(Some).ok_or(());
    }
    Ok(parts)
}

fn checked_sum(values: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    values.into_iter().try_fold(Decimal::ZERO, |acc, v| acc.checked_add(v))
}

/// A date range from `servicedDate` / `servicedPeriod`, when precise to the day.
fn range_of(date: Option<FhirDate>, period: Option<InPeriod>) -> Option<DateRange> {
    if let Some(d) = date {
        return d.day().map(DateRange::day);
    }
    let p = period?;
    match (p.start.and_then(FhirDate::day), p.end.and_then(FhirDate::day)) {
        (Some(s), Some(e)) => Some(DateRange { from: s, to: e }),
        (Some(d), None) | (None, Some(d)) => Some(DateRange::day(d)),
        (None, None) => None,
    }
}

/// Reads the money, quantity and factor of an item, detail or subDetail and
/// returns its amount; `parts` is the sum of its children's amounts.
fn read_amounts(
    r: &mut Reader<'_>,
    o: &Obj,
    path: &str,
    parts: Option<Decimal>,
    check_net: bool,
) -> (Option<Decimal>, Option<Decimal>, Option<String>) {
    let quantity = r.quantity(o, "quantity", &field(path, "quantity"));
    let unit_price = r.money(o, "unitPrice", &field(path, "unitPrice")).and_then(|m| m.value);
    let factor = r.decimal(o, "factor", &field(path, "factor"), false);
    let net = r.money(o, "net", &field(path, "net")).and_then(|m| m.value);
    let qty_value = quantity.and_then(|q| q.value);
    let amount = match line_amount(net, unit_price, qty_value, factor, parts) {
        Ok(a) => a,
        Err(()) => {
            r.issues.error(IssueType::Value, path, "quantity × unitPrice × factor is out of the supported range");
            None
        }
    };
    if check_net
        && let (Some(n), Ok(Some(computed))) = (net, line_amount(None, unit_price, qty_value, factor, None))
        && n != computed
    {
        r.issues.warning(IssueType::BusinessRule, field(path, "net"), "net differs from quantity × unitPrice × factor");
    }
    let unit_basis = quantity.map(|q| if q.code == Some("min") { "MJ" } else { "UN" }.to_owned());
    (amount, qty_value, unit_basis)
}

/// Reads `detail` or `subDetail` lines (same shape) and returns the sum of
/// their amounts, `None` when none has an amount.
fn read_details(r: &mut Reader<'_>, o: &Obj, name: &str, path: &str) -> Option<Decimal> {
    let dpath = field(path, name);
    let mut amounts = Vec::new();
    for (i, d) in r.array(o, name, &dpath, false).iter().enumerate() {
        let p = index(&dpath, i);
        let Some(d) = r.item_object(d, &p) else {
            continue;
        };
        check_unknown_elements(d, &p, DETAIL_ELEMENTS, &["sequence", "factor"], r.issues);
        r.positive_int(d, "sequence", &field(&p, "sequence"), true);
        r.concept(d, "revenue", &field(&p, "revenue"), false);
        r.concept(d, "category", &field(&p, "category"), false);
        r.concept(d, "productOrService", &field(&p, "productOrService"), true);
        read_concept_list(r, d, "modifier", &p);
        read_concept_list(r, d, "programCode", &p);
        read_reference_list(r, d, "udi", &p);
        let parts = if name == "detail" {
            read_details(r, d, "subDetail", &p)
        } else {
            if d.contains_key("subDetail") {
                r.issues.warning(
                    IssueType::Structure,
                    field(&p, "subDetail"),
                    "unknown element: not defined for this resource in R4; ignored",
                );
            }
            None
        };
        if let (Some(a), _, _) = read_amounts(r, d, &p, parts, false) {
            amounts.push(a);
        }
    }
    if amounts.is_empty() { None } else { checked_sum(amounts) }
}

fn read_concept_list<'v>(r: &mut Reader<'_>, o: &'v Obj, name: &str, path: &str) -> Vec<InConcept<'v>> {
    let lpath = field(path, name);
    r.array(o, name, &lpath, false)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| r.concept_item(v, &index(&lpath, i)))
        .collect()
}

fn read_reference_list(r: &mut Reader<'_>, o: &Obj, name: &str, path: &str) {
    let lpath = field(path, name);
    for (i, v) in r.array(o, name, &lpath, false).iter().enumerate() {
        r.reference_item(v, &index(&lpath, i));
    }
}

/// `positiveInt` list (`careTeamSequence`, ...), returning the values.
fn read_sequence_list(r: &mut Reader<'_>, o: &Obj, name: &str, path: &str) -> Vec<u32> {
    let lpath = field(path, name);
    r.array(o, name, &lpath, false)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| r.checked_positive_int(v, &index(&lpath, i)))
        .collect()
}

/// Reads a backbone list whose items need a `sequence`; returns the
/// sequences and calls `each` for every item object.
fn read_sequenced<'v>(
    r: &mut Reader<'_>,
    o: &'v Obj,
    name: &str,
    root: &str,
    mut each: impl FnMut(&mut Reader<'_>, &'v Obj, &str),
) -> HashSet<u32> {
    let lpath = field(root, name);
    let mut seqs = HashSet::new();
    for (i, v) in r.array(o, name, &lpath, false).iter().enumerate() {
        let p = index(&lpath, i);
        let Some(e) = r.item_object(v, &p) else {
            continue;
        };
        if let Some(s) = r.positive_int(e, "sequence", &field(&p, "sequence"), true)
            && !seqs.insert(s)
        {
            r.issues.error(IssueType::Duplicate, field(&p, "sequence"), "sequence repeats within the list");
        }
        each(r, e, &p);
    }
    seqs
}

pub(crate) fn read_claim(o: &Obj, root: &str, ctx: &DocCtx<'_>) -> ClaimDoc {
    let limits: &Limits = ctx.limits;
    let mut issues = Issues::new(limits.max_issues);
    check_object_structure(o, root, &mut issues);
    let mut known = DOMAIN_RESOURCE_ELEMENTS.to_vec();
    known.extend_from_slice(CLAIM_ELEMENTS);
    let mut primitives = DOMAIN_RESOURCE_PRIMITIVES.to_vec();
    primitives.extend_from_slice(CLAIM_PRIMITIVES);
    check_unknown_elements(o, root, &known, &primitives, &mut issues);
    check_domain_resource(o, root, &mut issues);
    let resolver = Resolver::new(o, root, ctx.bundle, ctx.full_url);
    let p = |name: &str| field(root, name);

    let mut r = Reader { issues: &mut issues };
    let mut header = ClaimHeader {
        id: o.get("id").and_then(Value::as_str).filter(|s| super::primitives::is_id(s)).map(str::to_owned),
        ..ClaimHeader::default()
    };

    // identifier 0..*
    let ipath = p("identifier");
    let mut first_identifier = None;
    for (i, v) in r.array(o, "identifier", &ipath, false).iter().enumerate() {
        let ip = index(&ipath, i);
        if let Some(io) = r.item_object(v, &ip)
            && let Some(id) = r.identifier_body(io, &ip)
            && first_identifier.is_none()
        {
            first_identifier = Some(id);
        }
    }
    header.identifier = Sensitive::new(first_identifier.clone());

    header.status =
        r.code(o, "status", &p("status"), true, Some(FinancialStatus::CODES)).and_then(FinancialStatus::from_code);

    // type 1..1: the claim-type coding decides the line of business.
    if let Some(cc) = r.concept(o, "type", &p("type"), true) {
        let code = cc.code_where(|s| s.is_empty() || s == CLAIM_TYPE_SYSTEM);
        header.claim_type = code.map(str::to_owned);
        header.kind = code.and_then(claim_kind_from_code);
        if header.kind.is_none() {
            r.issues.error(
                IssueType::NotSupported,
                p("type"),
                "Claim.type has no coding from the claim-type code system that Clearway processes (professional, institutional, oral, pharmacy, vision)",
            );
        }
    }
    let sub_type = r.concept(o, "subType", &p("subType"), false);
    header.claim_use = r.code(o, "use", &p("use"), true, Some(ClaimUse::CODES)).and_then(ClaimUse::from_code);
    let patient = r.reference(o, "patient", &p("patient"), true);
    header.patient = Sensitive::new(patient.clone());
    r.period(o, "billablePeriod", &p("billablePeriod"), false);
    header.created = r
        .date_time(o, "created", &p("created"), true)
        .and_then(|_| o.get("created").and_then(Value::as_str).map(str::to_owned));
    r.reference(o, "enterer", &p("enterer"), false);
    header.insurer = r.reference(o, "insurer", &p("insurer"), false);
    header.provider = r.reference(o, "provider", &p("provider"), true);
    r.concept(o, "priority", &p("priority"), true);
    r.concept(o, "fundsReserve", &p("fundsReserve"), false);
    let rel_path = p("related");
    for (i, v) in r.array(o, "related", &rel_path, false).iter().enumerate() {
        let rp = index(&rel_path, i);
        if let Some(rel) = r.item_object(v, &rp) {
            r.reference(rel, "claim", &field(&rp, "claim"), false);
            r.concept(rel, "relationship", &field(&rp, "relationship"), false);
            r.identifier(rel, "reference", &field(&rp, "reference"), false);
        }
    }
    r.reference(o, "prescription", &p("prescription"), false);
    r.reference(o, "originalPrescription", &p("originalPrescription"), false);
    if let Some(payee) = r.object(o, "payee", &p("payee"), false) {
        let pp = p("payee");
        r.concept(payee, "type", &field(&pp, "type"), true);
        r.reference(payee, "party", &field(&pp, "party"), false);
    }
    r.reference(o, "referral", &p("referral"), false);
    let facility = r.reference(o, "facility", &p("facility"), false);

    let care_team = read_sequenced(&mut r, o, "careTeam", root, |r, e, ep| {
        r.reference(e, "provider", &field(ep, "provider"), true);
        r.boolean(e, "responsible", &field(ep, "responsible"), false);
        r.concept(e, "role", &field(ep, "role"), false);
        r.concept(e, "qualification", &field(ep, "qualification"), false);
    });
    let information = read_sequenced(&mut r, o, "supportingInfo", root, |r, e, ep| {
        r.concept(e, "category", &field(ep, "category"), true);
        r.concept(e, "code", &field(ep, "code"), false);
        check_choice(e, &["timingDate", "timingPeriod"], &field(ep, "timing"), r.issues);
        r.date(e, "timingDate", &field(ep, "timingDate"), false);
        r.period(e, "timingPeriod", &field(ep, "timingPeriod"), false);
        check_choice(
            e,
            &["valueBoolean", "valueString", "valueQuantity", "valueAttachment", "valueReference"],
            &field(ep, "value"),
            r.issues,
        );
        r.string(e, "valueString", &field(ep, "valueString"), false);
        r.boolean(e, "valueBoolean", &field(ep, "valueBoolean"), false);
        r.quantity(e, "valueQuantity", &field(ep, "valueQuantity"));
        r.reference(e, "valueReference", &field(ep, "valueReference"), false);
        r.concept(e, "reason", &field(ep, "reason"), false);
    });

    // Diagnoses, in sequence order for mapping.
    let mut diagnoses: Vec<(u32, Option<String>)> = Vec::new();
    let diagnosis_seqs = read_sequenced(&mut r, o, "diagnosis", root, |r, e, ep| {
        const X: &[&str] = &["diagnosisCodeableConcept", "diagnosisReference"];
        check_choice(e, X, &field(ep, "diagnosis"), r.issues);
        if !X.iter().any(|k| e.contains_key(*k)) {
            r.issues.error(IssueType::Required, field(ep, "diagnosis"), "required element is missing");
        }
        let code =
            if let Some(cc) = r.concept(e, "diagnosisCodeableConcept", &field(ep, "diagnosisCodeableConcept"), false) {
                cc.code_where(|s| s.to_ascii_lowercase().contains("icd-10"))
                    .or_else(|| cc.first().and_then(|c| c.code))
                    .map(str::to_owned)
            } else if let Some(rf) = r.reference(e, "diagnosisReference", &field(ep, "diagnosisReference"), false) {
                resolve_checked(&resolver, &rf, &field(ep, "diagnosisReference"), &["Condition"], r.issues).and_then(
                    |(cond, _)| {
                        cond.get("code")?
                            .get("coding")?
                            .as_array()?
                            .iter()
                            .find_map(|c| c.get("code").and_then(Value::as_str))
                            .map(str::to_owned)
                    },
                )
            } else {
                None
            };
        read_concept_list(r, e, "type", ep);
        r.concept(e, "onAdmission", &field(ep, "onAdmission"), false);
        r.concept(e, "packageCode", &field(ep, "packageCode"), false);
        let seq = e.get("sequence").and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok());
        diagnoses.push((seq.unwrap_or(u32::MAX), code));
    });
    let procedure_seqs = read_sequenced(&mut r, o, "procedure", root, |r, e, ep| {
        const X: &[&str] = &["procedureCodeableConcept", "procedureReference"];
        check_choice(e, X, &field(ep, "procedure"), r.issues);
        if !X.iter().any(|k| e.contains_key(*k)) {
            r.issues.error(IssueType::Required, field(ep, "procedure"), "required element is missing");
        }
        read_concept_list(r, e, "type", ep);
        r.date_time(e, "date", &field(ep, "date"), false);
        r.concept(e, "procedureCodeableConcept", &field(ep, "procedureCodeableConcept"), false);
        r.reference(e, "procedureReference", &field(ep, "procedureReference"), false);
        read_reference_list(r, e, "udi", ep);
    });

    // insurance 1..*
    let ins_path = p("insurance");
    let insurance = r.array(o, "insurance", &ins_path, true);
    header.insurance_count = insurance.len();
    let mut focal_coverage: Option<(Reference, String)> = None;
    let mut first_coverage: Option<(Reference, String)> = None;
    let mut focal_count = 0;
    let mut insurance_seqs = HashSet::new();
    for (i, v) in insurance.iter().enumerate() {
        let ip = index(&ins_path, i);
        let Some(ins) = r.item_object(v, &ip) else {
            continue;
        };
        check_unknown_elements(
            ins,
            &ip,
            INSURANCE_ELEMENTS,
            &["sequence", "focal", "businessArrangement", "preAuthRef"],
            r.issues,
        );
        if let Some(s) = r.positive_int(ins, "sequence", &field(&ip, "sequence"), true)
            && !insurance_seqs.insert(s)
        {
            r.issues.error(IssueType::Duplicate, field(&ip, "sequence"), "sequence repeats within the list");
        }
        let focal = r.boolean(ins, "focal", &field(&ip, "focal"), true);
        r.identifier(ins, "identifier", &field(&ip, "identifier"), false);
        let cpath = field(&ip, "coverage");
        let coverage = r.reference(ins, "coverage", &cpath, true);
        r.string(ins, "businessArrangement", &field(&ip, "businessArrangement"), false);
        let pa = field(&ip, "preAuthRef");
        for (j, v) in r.array(ins, "preAuthRef", &pa, false).iter().enumerate() {
            r.checked_string(v, &index(&pa, j));
        }
        r.reference(ins, "claimResponse", &field(&ip, "claimResponse"), false);
        if let Some(c) = coverage {
            if focal == Some(true) {
                focal_count += 1;
                if focal_coverage.is_none() {
                    focal_coverage = Some((c.clone(), cpath.clone()));
                }
            }
            if first_coverage.is_none() {
                first_coverage = Some((c, cpath));
            }
        }
    }
    if !insurance.is_empty() {
        match focal_count {
            0 => r.issues.warning(
                IssueType::BusinessRule,
                &ins_path,
                "no insurance is marked focal; the first is used for adjudication",
            ),
            1 => {}
            _ => r.issues.warning(
                IssueType::BusinessRule,
                &ins_path,
                "more than one insurance is marked focal; the first focal one is used",
            ),
        }
    }

    if let Some(acc) = r.object(o, "accident", &p("accident"), false) {
        let ap = p("accident");
        r.date(acc, "date", &field(&ap, "date"), true);
        r.concept(acc, "type", &field(&ap, "type"), false);
        check_choice(acc, &["locationAddress", "locationReference"], &field(&ap, "location"), r.issues);
        r.reference(acc, "locationReference", &field(&ap, "locationReference"), false);
    }

    // item 0..*, bounded.
    let item_path = p("item");
    let items = r.array(o, "item", &item_path, false);
    header.item_count = items.len();
    let mut lines: Vec<LineFacts> = Vec::new();
    if items.len() > limits.max_claim_items {
        r.issues.error(IssueType::TooLong, &item_path, "Claim has more items than Clearway accepts in one claim");
    } else {
        let mut seqs = HashSet::new();
        for (i, v) in items.iter().enumerate() {
            let ip = index(&item_path, i);
            let Some(it) = r.item_object(v, &ip) else {
                continue;
            };
            check_unknown_elements(it, &ip, ITEM_ELEMENTS, ITEM_PRIMITIVES, r.issues);
            if it.contains_key("modifierExtension") {
                r.issues.error(
                    IssueType::NotSupported,
                    field(&ip, "modifierExtension"),
                    "modifier extensions are not understood by Clearway; the resource cannot be processed safely",
                );
            }
            let mut line = LineFacts {
                sequence: r.positive_int(it, "sequence", &field(&ip, "sequence"), true),
                ..LineFacts::default()
            };
            if let Some(s) = line.sequence
                && !seqs.insert(s)
            {
                r.issues.error(IssueType::Duplicate, field(&ip, "sequence"), "sequence repeats within the list");
            }
            for (name, defined) in [
                ("careTeamSequence", &care_team),
                ("diagnosisSequence", &diagnosis_seqs),
                ("procedureSequence", &procedure_seqs),
                ("informationSequence", &information),
            ] {
                let refs = read_sequence_list(&mut r, it, name, &ip);
                if refs.iter().any(|s| !defined.contains(s)) {
                    r.issues.error(
                        IssueType::BusinessRule,
                        field(&ip, name),
                        "refers to a sequence that the claim does not define",
                    );
                }
            }
            line.revenue = r
                .concept(it, "revenue", &field(&ip, "revenue"), false)
                .and_then(|c| c.first())
                .and_then(|c| c.code)
                .map(str::to_owned);
            r.concept(it, "category", &field(&ip, "category"), false);
            if let Some(c) =
                r.concept(it, "productOrService", &field(&ip, "productOrService"), true).and_then(|cc| cc.first())
            {
                line.code = c.code.map(str::to_owned);
                line.system = c.system.map(str::to_owned);
            }
            line.modifiers = read_concept_list(&mut r, it, "modifier", &ip)
                .iter()
                .filter_map(|c| c.first().and_then(|c| c.code).map(str::to_owned))
                .collect();
            read_concept_list(&mut r, it, "programCode", &ip);
            check_choice(it, &["servicedDate", "servicedPeriod"], &field(&ip, "serviced"), r.issues);
            let sd = r.date(it, "servicedDate", &field(&ip, "servicedDate"), false);
            let sp = r.period(it, "servicedPeriod", &field(&ip, "servicedPeriod"), false);
            line.service_date = range_of(sd, sp);
            if line.service_date.is_none() && (sd.is_some() || sp.is_some()) {
                r.issues.info(
                    IssueType::Informational,
                    field(&ip, "serviced"),
                    "service date is not precise to the day; not mapped",
                );
            }
            check_choice(
                it,
                &["locationCodeableConcept", "locationAddress", "locationReference"],
                &field(&ip, "location"),
                r.issues,
            );
            line.place_of_service = r
                .concept(it, "locationCodeableConcept", &field(&ip, "locationCodeableConcept"), false)
                .and_then(|cc| cc.code_where(is_place_of_service_system))
                .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned);
            r.reference(it, "locationReference", &field(&ip, "locationReference"), false);
            read_reference_list(&mut r, it, "udi", &ip);
            r.concept(it, "bodySite", &field(&ip, "bodySite"), false);
            read_concept_list(&mut r, it, "subSite", &ip);
            read_reference_list(&mut r, it, "encounter", &ip);
            let parts = read_details(&mut r, it, "detail", &ip);
            let (amount, units, unit_basis) = read_amounts(&mut r, it, &ip, parts, true);
            if amount.is_none() {
                r.issues.warning(
                    IssueType::Incomplete,
                    &ip,
                    "item has no net, unitPrice or priced detail; its charge is taken as zero",
                );
            }
            line.charge = amount;
            line.units = units;
            line.unit_basis = unit_basis;
            lines.push(line);
        }
    }

    let total_path = p("total");
    header.total = r.money(o, "total", &total_path).and_then(|m| m.value);

    // Rules for processing.
    if items.is_empty() && header.total.is_none() {
        r.issues.error(IssueType::BusinessRule, root, "a claim for processing needs at least one item or a total");
    }
    let line_sum = checked_sum(lines.iter().filter_map(|l| l.charge));
    if line_sum.is_none() {
        r.issues.error(IssueType::Value, &item_path, "sum of item charges is out of the supported range");
    }
    if let (Some(total), Some(sum)) = (header.total, line_sum)
        && !lines.is_empty()
        && total != sum
    {
        r.issues.warning(IssueType::BusinessRule, &total_path, "total differs from the sum of the item charges");
    }
    let pcn = first_identifier.as_ref().map(|i| i.value.clone()).or_else(|| header.id.clone());
    if pcn.is_none() {
        r.issues.error(
            IssueType::BusinessRule,
            field(root, "identifier"),
            "the claim has neither an identifier nor an id to serve as its patient control number",
        );
    }

    // Resolution and mapping of referenced data.
    let (patient_person, patient_path) = patient_of(&mut r, &resolver, patient.as_ref(), &p("patient"));
    let (billing_npi, provider_name) = match &header.provider {
        Some(pr) => provider_npi_and_name(pr, &p("provider"), &resolver, r.issues),
        None => (None, None),
    };
    let (payer_id, payer_name) = match &header.insurer {
        Some(ins) => payer_of(ins, &p("insurer"), &resolver, r.issues),
        None => (None, None),
    };
    let coverage = focal_coverage.or(first_coverage).and_then(|(c, cpath)| {
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
    let facility_pos = facility.as_ref().and_then(|f| {
        let (loc, _) = resolve_checked(&resolver, f, &p("facility"), &["Location"], r.issues)?;
        loc.get("type")?.as_array()?.iter().find_map(|cc| {
            cc.get("coding")?.as_array()?.iter().find_map(|c| {
                let sys = c.get("system").and_then(Value::as_str)?;
                let code = c.get("code").and_then(Value::as_str)?;
                (is_place_of_service_system(sys) && code.len() == 2).then(|| code.to_owned())
            })
        })
    });

    let ok = !r.issues.has_errors();
    let issues_out;
    let claim = if ok {
        let (Some(kind), Some(pcn)) = (header.kind, pcn) else {
            // Unreachable when there are no errors; mapped defensively.
            issues_out = issues.into_vec();
            return ClaimDoc { header, claim: None, issues: issues_out };
        };
        // Institutional: CLM05-1/-3 come from the type of bill.
        let bill_type = sub_type
            .as_ref()
            .and_then(|cc| cc.code_where(is_bill_type_system))
            .map(|c| c.strip_prefix('0').filter(|_| c.len() == 4).unwrap_or(c))
            .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
        let (mut facility_code, mut frequency_code) = (None, None);
        if kind == ClaimKind::Institutional
            && let Some(b) = bill_type
        {
            facility_code = Some(b[..2].to_owned());
            frequency_code = Some(b[2..].to_owned());
        }
        if facility_code.is_none() {
            facility_code = lines.iter().find_map(|l| l.place_of_service.clone()).or(facility_pos);
        }
        diagnoses.sort_by_key(|(s, _)| *s);
        let service_lines = lines
            .into_iter()
            .map(|l| ServiceLine {
                line_number: l.sequence.unwrap_or_default(),
                procedure_code: l.code.unwrap_or_default(),
                procedure_qualifier: l.system,
                modifiers: l.modifiers,
                revenue_code: l.revenue,
                charge: l.charge.unwrap_or_default(),
                units: l.units,
                unit_basis: l.unit_basis,
                service_date: l.service_date,
                diagnosis_pointers: vec![],
                place_of_service: l.place_of_service,
                control_number: None,
            })
            .collect();
        let member_id = coverage.as_ref().and_then(|f| f.member_id.clone());
        let (subscriber, _dependent) = subscriber_and_dependent(&patient_person, coverage);
        Some(Claim {
            source: SourceFormat::Fhir,
            kind,
            implementation: first_profile(o),
            patient_control_number: Sensitive::new(pcn),
            total_charge: header.total.or(line_sum).unwrap_or_default(),
            facility_code,
            frequency_code,
            billing_provider_npi: billing_npi.clone(),
            billing_provider_name: provider_name,
            payer_id,
            payer_name,
            subscriber_member_id: Sensitive::new(member_id),
            subscriber,
            patient: patient_person,
            diagnoses: Sensitive::new(
                diagnoses
                    .into_iter()
                    .filter_map(|(_, c)| c)
                    .enumerate()
                    .map(|(i, code)| ClinicalCode {
                        qualifier: if i == 0 { "ABK" } else { "ABF" }.to_owned(),
                        code: code.replace('.', ""),
                        date: None,
                    })
                    .collect(),
            ),
            procedures: Sensitive::new(vec![]),
            service_lines,
            providers: vec![ProviderRef { role: ProviderRole::Billing, npi: billing_npi, line: None }],
            payer_claim_control_number: None,
            statement_dates: None,
        })
    } else {
        None
    };
    ClaimDoc { header, claim, issues: issues.into_vec() }
}
