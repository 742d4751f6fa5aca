//! One test per edit: it fires on the claim that breaks its rule and stays
//! quiet on the claim that keeps it.

use super::codesets::{CodeSets, CodeSystem, Release, ReleaseCode};
use super::*;
use crate::x12::build::LINE_INFORMATION;
use crate::x12::{AnalyzeOptions, Document, analyze};
use clearway_core::{ClinicalCode, Person, ProviderRef, Sensitive};
use time::macros::date;

const RECEIVED: Date = date!(2024 - 06 - 01);

/// An 837P claim read from text: billing provider, rendering at the claim
/// level, an ordering provider on line 2, two diagnoses, two lines.
const P837: &str = "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*CLEARWAY       *240115*1200*^*00501*000000001*0*T*:~\
GS*HC*SUBMITTER*CLEARWAY*20240115*1200*1*X*005010X222A1~\
ST*837*0001*005010X222A1~\
BHT*0019*00*REF1*20240115*1200*CH~\
NM1*41*2*SUBMITTER*****46*SUB1~\
PER*IC*DESK*TE*5555550100~\
NM1*40*2*CLEARWAY*****46*CLEARWAY~\
HL*1**20*1~\
NM1*85*2*CLINIC*****XX*1234567893~\
N3*1 MAIN ST~\
N4*SPRINGFIELD*IL*627010001~\
REF*EI*123456789~\
HL*2*1*22*0~\
SBR*P*18*******CI~\
NM1*IL*1*TESTLAST*PAT****MI*M1~\
N3*2 MAIN ST~\
N4*SPRINGFIELD*IL*62701~\
DMG*D8*19800101*F~\
NM1*PR*2*PLAN*****PI*ACME01~\
CLM*PCN1*150***11:B:1*Y*A*Y*Y~\
HI*ABK:E119*ABF:I10~\
NM1*82*1*DOC*ANNA****XX*1234567893~\
LX*1~\
SV1*HC:99213*100*UN*1***1:2~\
DTP*472*D8*20240301~\
LX*2~\
SV1*HC:A4253*50*UN*1***1~\
DTP*472*D8*20240301~\
REF*6R*LINE2~\
NM1*DK*1*ORDER*OLIVE****XX*1234567893~\
SE*29*0001~\
GE*1*1~\
IEA*1*000000001~";

fn claim() -> Claim {
    let a = analyze(P837.as_bytes(), &AnalyzeOptions::default());
    assert!(a.accepted(), "the base claim passes SNIP 1-2");
    match a.documents().next() {
        Some(Document::Claim(c)) => (**c).clone(),
        other => panic!("{other:?}"),
    }
}

fn codes() -> CodeSets {
    let icd = |effective, codes: &[(&str, bool)]| Release {
        system: CodeSystem::Icd10Cm,
        label: "test".into(),
        effective,
        codes: codes
            .iter()
            .map(|(c, b)| ReleaseCode { code: (*c).into(), billable: *b, from: None, to: None })
            .collect(),
    };
    let hcpcs = Release {
        system: CodeSystem::Hcpcs,
        label: "test".into(),
        effective: date!(2024 - 01 - 01),
        codes: vec![
            ReleaseCode { code: "A4253".into(), billable: true, from: Some(date!(2000 - 01 - 01)), to: None },
            ReleaseCode {
                code: "G0001".into(),
                billable: true,
                from: Some(date!(2000 - 01 - 01)),
                to: Some(date!(2012 - 12 - 31)),
            },
        ],
    };
    let pcs = Release {
        system: CodeSystem::Icd10Pcs,
        label: "test".into(),
        effective: date!(2023 - 10 - 01),
        codes: vec![ReleaseCode { code: "0DTJ4ZZ".into(), billable: true, from: None, to: None }],
    };
    CodeSets::new(&[
        icd(date!(2023 - 10 - 01), &[("E119", true), ("I10", true), ("E11", false), ("R05", true)]),
        hcpcs,
        pcs,
    ])
}

fn run_with(c: &Claim, policy: &Policy) -> Vec<Finding> {
    let codes = codes();
    check(c, &Context { received: RECEIVED, codes: &codes, policy })
}

fn run(c: &Claim) -> Vec<Finding> {
    run_with(c, &Policy::default())
}

fn ids(f: &[Finding]) -> Vec<(&str, Option<u32>)> {
    f.iter().map(|f| (f.edit, f.line)).collect()
}

#[test]
fn the_base_claim_passes_every_edit() {
    let c = claim();
    assert_eq!(run(&c), vec![]);
    assert_eq!(decide(&run(&c)), ClaimDecision::Accepted);
    assert_eq!(c.providers.len(), 3, "{:?}", c.providers);
}

#[test]
fn balance_claim_total() {
    let mut c = claim();
    c.total_charge += Decimal::ONE;
    assert_eq!(ids(&run(&c)), [("balance.claim_total", None)]);
    assert_eq!(decide(&run(&c)).status(), Some(Stc::new("A7", "400", None)));
}

#[test]
fn npi_edits_name_the_entity_of_each_loop() {
    let bad = "1234567890";
    let text = P837.replace("NM1*82*1*DOC*ANNA****XX*1234567893", &format!("NM1*82*1*DOC*ANNA****XX*{bad}"));
    let a = analyze(text.as_bytes(), &AnalyzeOptions::default());
    assert!(a.accepted(), "an NPI's check digit is not SNIP 1-2");
    let Some(Document::Claim(c)) = a.documents().next() else { panic!() };
    assert_eq!(ids(&run(c)), [("npi.rendering", None)]);
    assert_eq!(decide(&run(c)).status(), Some(Stc::new("A7", "562", Some("82"))));

    for (role, id, entity) in [
        (ProviderRole::Billing, "npi.billing", "85"),
        (ProviderRole::Referring, "npi.referring", "DN"),
        (ProviderRole::ServiceFacility, "npi.service_facility", "77"),
        (ProviderRole::Supervising, "npi.supervising", "DQ"),
        (ProviderRole::Attending, "npi.attending", "71"),
        (ProviderRole::Operating, "npi.operating", "72"),
        (ProviderRole::OtherOperating, "npi.other_operating", "73"),
        (ProviderRole::PurchasedService, "npi.purchased_service", "QB"),
        (ProviderRole::AssistantSurgeon, "npi.assistant_surgeon", "73"),
    ] {
        let mut c = claim();
        c.providers.push(ProviderRef { role, npi: Some(bad.into()), line: None });
        let f = run(&c);
        assert_eq!(f.len(), 1, "{role:?}: {f:?}");
        assert_eq!((f[0].edit, f[0].stc), (id, Stc::new("A7", "562", Some(entity))), "{role:?}");
    }
    // A line-level provider rejects its line (2220D); the claim says A3:247.
    let mut c = claim();
    c.providers.iter_mut().find(|p| p.role == ProviderRole::Ordering).unwrap().npi = Some("123456789".into());
    assert_eq!(ids(&run(&c)), [("npi.ordering", Some(2))]);
    match decide(&run(&c)) {
        ClaimDecision::Rejected(r) => {
            assert!(r.claim.is_empty());
            assert_eq!(r.lines, vec![(2, vec![Stc::new("A7", "562", Some("DK"))])]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&run(&c)).status(), Some(LINE_INFORMATION));
    // Missing billing NPI.
    let mut c = claim();
    c.billing_provider_npi = None;
    c.providers.retain(|p| p.role != ProviderRole::Billing);
    assert_eq!(ids(&run(&c)), [("npi.billing", None)]);
}

#[test]
fn turning_an_edit_off_or_to_a_warning() {
    let mut c = claim();
    c.providers[0].npi = Some("1234567890".into());
    let off = Policy::default().with([("npi.billing", Severity::Off)]);
    assert_eq!(run_with(&c, &off), vec![]);
    let warn = Policy::default().with([("npi.billing", Severity::Warn)]);
    let f = run_with(&c, &warn);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warn);
    assert_eq!(decide(&f), ClaimDecision::Accepted, "warnings do not stop the claim");
}

#[test]
fn diagnosis_pointers() {
    let mut c = claim();
    c.service_lines[0].diagnosis_pointers = vec![1, 3];
    assert_eq!(ids(&run(&c)), [("dx.pointer", Some(1))]);
    c.service_lines[0].diagnosis_pointers = vec![2, 1];
    assert_eq!(run(&c), vec![]);
}

#[test]
fn icd10cm_valid_and_billable_on_the_date_of_service() {
    let set = |c: &mut Claim, q: &str, code: &str| {
        let mut d = c.diagnoses.expose().clone();
        d.push(ClinicalCode { qualifier: q.into(), code: code.into(), date: None });
        c.diagnoses = Sensitive::new(d);
    };
    let mut c = claim();
    c.diagnoses = Sensitive::new(vec![
        ClinicalCode { qualifier: "ABK".into(), code: "E11".into(), date: None },
        ClinicalCode { qualifier: "ABF".into(), code: "I10".into(), date: None },
    ]);
    let f = run(&c);
    assert_eq!(ids(&f), [("icd10cm.principal", None)]);
    assert!(f[0].message.contains("category"), "{}", f[0].message);
    let mut c = claim();
    set(&mut c, "ABF", "Z9999");
    assert_eq!(ids(&run(&c)), [("icd10cm.other", None)]);
    let mut c = claim();
    set(&mut c, "ABJ", "Q000");
    set(&mut c, "APR", "R05");
    assert_eq!(ids(&run(&c)), [("icd10cm.admitting", None)]);
    let mut c = claim();
    set(&mut c, "APR", "Q000");
    assert_eq!(ids(&run(&c)), [("icd10cm.reason_for_visit", None)]);
    // Before the only loaded release: no release in force, the edit stays quiet.
    let mut c = claim();
    set(&mut c, "ABF", "Z9999");
    for l in &mut c.service_lines {
        l.service_date = Some(DateRange::day(date!(2023 - 09 - 30)));
    }
    assert_eq!(run(&c), vec![]);
}

#[test]
fn icd10pcs_on_institutional_claims() {
    let mut c = claim();
    c.kind = ClaimKind::Institutional;
    c.facility_code = Some("11".into());
    c.statement_dates = Some(DateRange::day(date!(2024 - 03 - 01)));
    c.procedures = Sensitive::new(vec![
        ClinicalCode { qualifier: "BBR".into(), code: "0DTJ4ZZ".into(), date: Some(date!(2024 - 03 - 01)) },
        ClinicalCode { qualifier: "BBQ".into(), code: "0DTJ4ZX".into(), date: None },
    ]);
    assert_eq!(ids(&run(&c)), [("icd10pcs.other", None)]);
    c.procedures = Sensitive::new(vec![ClinicalCode { qualifier: "BBR".into(), code: "XXXXXXX".into(), date: None }]);
    assert_eq!(ids(&run(&c)), [("icd10pcs.principal", None)]);
}

#[test]
fn hcpcs_valid_on_the_line_date() {
    let mut c = claim();
    c.service_lines[1].procedure_code = "G0001".into();
    assert_eq!(ids(&run(&c)), [("hcpcs.valid", Some(2))]);
    c.service_lines[1].service_date = Some(DateRange::day(date!(2012 - 12 - 31)));
    assert_eq!(run(&c), vec![], "valid up to its termination date");
}

#[test]
fn procedure_codes_have_their_form() {
    let mut c = claim();
    c.service_lines[0].procedure_code = "9921".into();
    assert_eq!(ids(&run(&c)), [("procedure.form", Some(1))]);
    for ok in ["99213", "0001U", "3008F", "0042T"] {
        c.service_lines[0].procedure_code = ok.into();
        assert_eq!(run(&c), vec![], "{ok}");
    }
    c.service_lines[0].procedure_qualifier = Some("AD".into());
    c.service_lines[0].procedure_code = "D012".into();
    assert_eq!(ids(&run(&c)), [("procedure.form", Some(1))]);
    c.service_lines[0].procedure_code = "D0120".into();
    assert_eq!(run(&c), vec![]);
}

#[test]
fn place_of_service_in_force() {
    let mut c = claim();
    c.facility_code = Some("30".into());
    assert_eq!(ids(&run(&c)), [("pos.valid", None)]);
    let mut c = claim();
    c.service_lines[1].place_of_service = Some("10".into());
    c.service_lines[1].service_date = Some(DateRange::day(date!(2021 - 12 - 31)));
    assert_eq!(ids(&run(&c)), [("pos.valid", Some(2))], "POS 10 begins 2022-01-01");
    c.service_lines[1].service_date = Some(DateRange::day(date!(2022 - 01 - 01)));
    assert_eq!(run(&c), vec![]);
}

#[test]
fn dates_of_service() {
    let mut c = claim();
    c.service_lines[0].service_date = Some(DateRange::day(date!(2024 - 06 - 02)));
    assert_eq!(ids(&run(&c)), [("date.future", Some(1))]);
    let mut c = claim();
    c.patient.birth_date = Sensitive::new(Some(date!(2024 - 03 - 02)));
    let f = run(&c);
    assert_eq!(ids(&f), [("date.before_birth", Some(1)), ("date.before_birth", Some(2))]);
    assert_eq!(f[0].stc, Stc::new("A7", "158", Some("QC")));
    c.subscriber = c.patient.clone();
    assert_eq!(run(&c)[0].stc.entity, Some("IL"), "the subscriber is the patient");
    let mut c = claim();
    c.kind = ClaimKind::Institutional;
    c.statement_dates = Some(DateRange { from: date!(2024 - 03 - 02), to: date!(2024 - 03 - 05) });
    assert_eq!(ids(&run(&c)), [("date.statement_period", Some(1)), ("date.statement_period", Some(2))]);
    c.statement_dates = Some(DateRange { from: date!(2024 - 03 - 01), to: date!(2024 - 06 - 05) });
    assert_eq!(ids(&run(&c)), [("date.future", None)]);
    let _ = Person::default();
}

#[test]
fn replacement_claims_carry_the_payer_claim_number() {
    let mut c = claim();
    c.frequency_code = Some("7".into());
    assert_eq!(ids(&run(&c)), [("frequency.payer_claim_number", None)]);
    assert_eq!(decide(&run(&c)).status(), Some(Stc::new("A6", "464", None)));
    c.payer_claim_control_number = Some("PAYER123".into());
    assert_eq!(run(&c), vec![]);
}

#[test]
fn edits_decided_by_the_workers_come_from_the_catalog() {
    let p = Policy::default();
    let f = finding(&p, "duplicate.claim", Some(3), "dup").unwrap();
    assert_eq!((f.stc, f.line), (Stc::new("A3", "54", None), None), "claim level");
    let f = finding(&p, "payer.unknown", None, "unknown").unwrap();
    assert_eq!(f.stc, Stc::new("A3", "116", Some("PR")));
    assert!(finding(&p.clone().with([("duplicate.claim", Severity::Off)]), "duplicate.claim", None, "").is_none());
}

#[test]
fn many_claim_statuses_are_three_to_an_stc() {
    let mut c = claim();
    c.total_charge += Decimal::ONE;
    c.frequency_code = Some("8".into());
    c.facility_code = Some("30".into());
    c.providers[0].npi = Some("1234567890".into());
    let d = decide(&run(&c));
    let ClaimDecision::Rejected(r) = &d else { panic!() };
    assert_eq!(r.claim.len(), 4, "{r:?}");
    let message = r.message.clone().unwrap();
    assert!(!message.contains("PCN1") && !message.contains("1234567890"), "no values in messages: {message}");
}

#[test]
fn every_catalog_edit_is_exercised_here() {
    // Keeps this file in step with the catalog: each id appears in a test.
    let me = include_str!("tests.rs");
    for e in CATALOG {
        assert!(me.contains(&format!("\"{}\"", e.id)), "no test names {}", e.id);
    }
}
