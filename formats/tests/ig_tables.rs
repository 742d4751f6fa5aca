//! The hand-written implementation-guide tables (270/271 005010X279A1, 276
//! 005010X212, 837 Dental 005010X224A2) checked against the public corpus,
//! a synthetic dental claim, and deliberately broken variants.
//!
//! Every transaction set in a corpus file whose ST01/ST03 (else GS08) has a
//! table is fed ST..SE to the SNIP 1-2 validator. Sets are expected to
//! validate clean, except where the sample itself breaks a rule: those cases
//! assert the exact error instead (`corpus_npi_check_digit_violations`).

mod common;

use clearway_formats::x12::codes::{ElementCode, SegmentCode};
use clearway_formats::x12::spec::tables;
use clearway_formats::x12::validate::{Options, SegmentError, SetValidator, valid_npi};
use clearway_formats::x12::{Delimiters, Segment, SegmentReader};

/// One validated transaction set.
struct SetResult {
    st01: String,
    st03: String,
    errors: Vec<SegmentError>,
}

/// Validates every set of an interchange that has a table (ST03, else GS08).
fn validate(bytes: &[u8]) -> Vec<SetResult> {
    let mut reader = SegmentReader::new(bytes);
    let mut results = Vec::new();
    let mut gs08 = String::new();
    let mut open: Option<(SetValidator<'static>, String, String)> = None;
    while let Some(seg) = reader.next_segment().expect("readable interchange") {
        if seg.is("GS") {
            gs08 = seg.str(8).to_string();
            continue;
        }
        if seg.is("ST") {
            let st01 = seg.str(1).to_string();
            let st03 = match seg.str(3) {
                "" => gs08.clone(),
                v => v.to_string(),
            };
            open = tables().find(&st01, &st03).map(|spec| (SetValidator::new(spec, Options::default()), st01, st03));
        }
        if let Some((validator, _, _)) = open.as_mut() {
            validator.segment(&seg);
        }
        if let Some((validator, st01, st03)) = open.take_if(|_| seg.is("SE")) {
            let (errors, dropped) = validator.finish();
            assert_eq!(dropped, 0, "errors were dropped");
            results.push(SetResult { st01, st03, errors });
        }
    }
    results
}

fn validate_corpus(file: &str) -> Vec<SetResult> {
    let sets = validate(&common::read(file));
    assert!(!sets.is_empty(), "{file}: no transaction set with an implementation-guide table");
    sets
}

/// Validates one set given as segments (ST..SE) with the default delimiters.
fn run(segments: &[&str]) -> Vec<SegmentError> {
    let d = Delimiters::default();
    let st = Segment::new(segments[0].as_bytes(), d);
    let spec = tables().find(st.str(1), st.str(3)).unwrap_or_else(|| panic!("no table for {}", segments[0]));
    let mut v = SetValidator::new(spec, Options::default());
    for s in segments {
        v.segment(&Segment::new(s.as_bytes(), d));
    }
    v.finish().0
}

/// An IK4: (IK401 element, component, IK402 reference, IK403).
type Ik4 = (u8, Option<u8>, String, ElementCode);
/// An IK3 with its IK4s: (IK301, IK302, IK303, IK304, IK4s).
type Ik3 = (String, u32, String, SegmentCode, Vec<Ik4>);

/// The errors as comparable tuples. Identical IK4s are collapsed: when a
/// segment's qualifier (element 1) matches none of its siblings, the walker
/// reports the bad qualifier while placing the segment and again when it
/// checks the element.
fn summary(errors: &[SegmentError]) -> Vec<Ik3> {
    errors
        .iter()
        .map(|e| {
            let mut elements: Vec<Ik4> = e
                .elements
                .iter()
                .map(|x| (x.position.element, x.position.component, x.reference.clone().unwrap_or_default(), x.code))
                .collect();
            elements.dedup();
            (e.segment.clone(), e.position, e.loop_id.clone().unwrap_or_default(), e.code, elements)
        })
        .collect()
}

fn ik3(
    segment: &str,
    position: u32,
    loop_id: &str,
    code: SegmentCode,
    elements: &[(u8, Option<u8>, &str, ElementCode)],
) -> Ik3 {
    (
        segment.to_string(),
        position,
        loop_id.to_string(),
        code,
        elements.iter().map(|&(e, c, r, x)| (e, c, r.to_string(), x)).collect(),
    )
}

/// NM109 fails the NPI check: IK304 8 with IK403 I12 on NM109 (element 67).
// ------------------------------------------------------------------ tables

#[test]
fn hand_written_tables_load_and_are_found() {
    let t = tables();
    for (st01, implementation, gs01) in [
        ("270", "005010X279A1", "HS"),
        ("271", "005010X279A1", "HB"),
        ("276", "005010X212", "HR"),
        ("837", "005010X224A2", "HC"),
        ("837", "005010X224A3", "HC"),
    ] {
        let spec = t.find(st01, implementation).unwrap_or_else(|| panic!("no table for {st01} {implementation}"));
        assert_eq!(&*spec.functional_id, gs01);
        assert_eq!(&*spec.segments[0].id, "ST");
        assert_eq!(spec.segments.last().map(|s| &*s.id), Some("SE"), "{st01} {implementation}: SE closes the set");
    }
    // The dental table must not capture professional or institutional claims.
    for other in ["005010X222A1", "005010X223A2"] {
        let spec = t.find("837", other).expect("837P/837I table");
        assert!(!spec.implementations.iter().any(|i| i.contains("X224")));
    }
}

// ------------------------------------------------------------------ corpus

const CLEAN_CORPUS: &[&str] = &[
    "x12/270-lfh-subscriber-benefit-check.x12",
    "x12/270-lfh-dependent-benefit-check.x12",
    "x12/270-lfh-demo-single-line.x12",
    "x12/271-lfh-subscriber-benefit-check.x12",
    "x12/271-lfh-dependent-benefit-check.x12",
    // SE02 (4323) differs from ST02 (4321): an envelope finding (IK5 3) for
    // the set-level checks, not something the guide table decides.
    "x12/271-lfh-subscriber-benefit-check-error.x12",
];

#[test]
fn clean_corpus_sets_validate_without_errors() {
    for file in CLEAN_CORPUS {
        for set in validate_corpus(file) {
            assert!(set.errors.is_empty(), "{file} ({} {}): {:#?}", set.st01, set.st03, set.errors);
        }
    }
}

/// These samples identify providers with NM108 = XX and an NM109 that fails
/// the NPI check digit (1234567891, 1666666661, a nine-digit 166666666…).
/// The TR3 states NM109 as an identifier of 2-80 characters, and so does
/// pyx12: SNIP 1-2 finds nothing. The check digit is an edit of the
/// receiver's (the claim edits for an 837, the fast path's AAA or STC for a
/// 270/276), never a 999 error.
#[test]
fn corpus_npi_check_digit_failures_are_not_syntax_errors() {
    for file in [
        "x12/271-herophilus-eligible.x12",
        "x12/276-lfh-claim-level-status.x12",
        "x12/276-lfh-provider-level-status.x12",
        "x12/276-lfh-claim-level-status-ncpdp.x12",
    ] {
        let sets = validate_corpus(file);
        assert_eq!(sets.len(), 1, "{file}");
        assert_eq!(summary(&sets[0].errors), Vec::<Ik3>::new(), "{file}");
    }
    assert!(!valid_npi(b"1234567891") && !valid_npi(b"1666666661") && !valid_npi(b"166666666"));
}

// ------------------------------------------------------------------ 270

const INQUIRY: &[&str] = &[
    "ST*270*1234*005010X279A1",
    "BHT*0022*13*10001234*20060501*1319",
    "HL*1**20*1",
    "NM1*PR*2*ABC COMPANY*****PI*842610001",
    "HL*2*1*21*1",
    "NM1*1P*2*BONE AND JOINT CLINIC*****SV*2000035",
    "HL*3*2*22*0",
    "TRN*1*93175-012547*9877281234",
    "NM1*IL*1*SMITH*ROBERT****MI*11122333301",
    "DMG*D8*19430519",
    "DTP*291*D8*20060501",
    "EQ*30^35^AL",
    "SE*13*1234",
];

#[test]
fn inquiry_with_repeating_service_types_is_clean() {
    let errors = run(INQUIRY);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn inquiry_without_subscriber_name_is_caught() {
    let segs: Vec<&str> = INQUIRY.iter().copied().filter(|s| !s.starts_with("NM1*IL")).collect();
    let got = summary(&run(&segs));
    // 2100C is required and entered only through NM1*IL: the subscriber's
    // DMG, DTP and EQ have no home in 2000C (IK304 2), and closing 2000C
    // reports the missing NM1 in 2100C (IK304 3).
    let expected = vec![
        ik3("DMG", 9, "2000C", SegmentCode::Unexpected, &[]),
        ik3("DTP", 10, "2000C", SegmentCode::Unexpected, &[]),
        ik3("EQ", 11, "2000C", SegmentCode::Unexpected, &[]),
        ik3("NM1", 12, "2100C", SegmentCode::RequiredMissing, &[]),
    ];
    assert_eq!(got, expected);
}

#[test]
fn inquiry_with_unknown_service_type_is_caught() {
    let mut segs = INQUIRY.to_vec();
    segs[11] = "EQ*30^Q9";
    let errors = run(&segs);
    assert_eq!(
        summary(&errors),
        vec![ik3("EQ", 12, "2110C", SegmentCode::ElementErrors, &[(1, None, "1365", ElementCode::InvalidCode)])]
    );
    // The bad value is the second repetition of EQ01.
    assert_eq!(errors[0].elements[0].position.repetition, Some(2));
}

// ------------------------------------------------------------------ 276

const STATUS_REQUEST: &[&str] = &[
    "ST*276*0001*005010X212",
    "BHT*0010*13*ABC276XXX*20050915*1425",
    "HL*1**20*1",
    "NM1*PR*2*ABC INSURANCE*****PI*12345",
    "HL*2*1*21*1",
    "NM1*41*2*XYZ SERVICE*****46*X67E",
    "HL*3*2*19*1",
    "NM1*1P*2*HOME HOSPITAL PHARMACY*****XX*1234567893",
    "HL*4*3*22*0",
    "DMG*D8*19301210*M",
    "NM1*IL*1*SMITH*FRED****MI*123456789A",
    "TRN*1*ABCXYZ1",
    "REF*XZ*7654321",
    "AMT*T3*85.00",
    "DTP*472*D8*20060301",
    "SVC*N4:00002143380*85.00*****1",
    "DTP*472*D8*20060301",
    "SE*18*0001",
];

#[test]
fn status_request_is_clean() {
    let errors = run(STATUS_REQUEST);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn status_request_errors_are_caught() {
    // AMT01 must be T3 (claim submitted charges).
    let mut segs = STATUS_REQUEST.to_vec();
    segs[13] = "AMT*T4*85.00";
    assert_eq!(
        summary(&run(&segs)),
        vec![ik3("AMT", 14, "2200D", SegmentCode::ElementErrors, &[(1, None, "522", ElementCode::InvalidCode)])]
    );

    // A REF qualifier the 2200D does not define.
    let mut segs = STATUS_REQUEST.to_vec();
    segs[12] = "REF*ZZ*7654321";
    assert_eq!(
        summary(&run(&segs)),
        vec![ik3("REF", 13, "2200D", SegmentCode::ElementErrors, &[(1, None, "128", ElementCode::InvalidCode)])]
    );

    // The service line date (DTP*472) is required in 2210D.
    let segs: Vec<&str> =
        STATUS_REQUEST.iter().copied().enumerate().filter(|(i, _)| *i != 16).map(|(_, s)| s).collect();
    assert_eq!(summary(&run(&segs)), vec![ik3("DTP", 17, "2210D", SegmentCode::RequiredMissing, &[])]);
}

// ------------------------------------------------------------------ 837D

/// A synthetic dental claim (invented people and identifiers; the NPIs carry
/// valid check digits): dependent patient, two missing teeth reported in DN2,
/// a diagnosis, a rendering dentist, and four lines covering a tooth with
/// surfaces, oral cavity designations with diagnosis pointers, and an
/// initial-placement crown.
const DENTAL_CLAIM: &str = "\
ISA*00*          *00*          *ZZ*SUBMITTERID    *ZZ*RECEIVERID     *240315*1200*^*00501*000000101*0*T*:~
GS*HC*SUBMITTERID*RECEIVERID*20240315*1200*101*X*005010X224A2~
ST*837*0001*005010X224A2~
BHT*0019*00*DENT0001*20240315*1200*CH~
NM1*41*2*BRIGHT SMILES DENTAL*****46*BSD12345~
PER*IC*FRONT DESK*TE*5555550100~
NM1*40*2*EXAMPLE DENTAL PLAN*****46*EDP00001~
HL*1**20*1~
PRV*BI*PXC*1223G0001X~
NM1*85*2*BRIGHT SMILES DENTAL*****XX*1234567893~
N3*100 MAIN STREET~
N4*SPRINGFIELD*IL*62701~
REF*EI*371234567~
HL*2*1*22*1~
SBR*P**GRP100*EXAMPLE GROUP*****CI~
NM1*IL*1*DOE*JOHN****MI*MEM123456~
N3*200 OAK AVENUE~
N4*SPRINGFIELD*IL*62704~
DMG*D8*19800101*M~
NM1*PR*2*EXAMPLE DENTAL PLAN*****PI*EDP00001~
HL*3*2*23*0~
PAT*19~
NM1*QC*1*DOE*JANE~
N3*200 OAK AVENUE~
N4*SPRINGFIELD*IL*62704~
DMG*D8*20120615*F~
CLM*PCN0001*1595***11:B:1*Y*A*Y*Y~
DTP*472*D8*20240310~
DN2*1*M****JP~
DN2*16*M****JP~
HI*ABK:K0262*ABF:K0251~
NM1*82*1*SMITH*ALICE****XX*1987654328~
PRV*PE*PXC*1223G0001X~
LX*1~
SV3*AD:D0120*65****1~
DTP*472*D8*20240310~
LX*2~
SV3*AD:D2392*180****1*****1~
TOO*JP*30*M:O:D~
DTP*472*D8*20240310~
LX*3~
SV3*AD:D4341*200**10:20**2*****1:2~
DTP*472*D8*20240310~
LX*4~
SV3*AD:D2740*1150***I*1~
TOO*JP*8~
DTP*472*D8*20240310~
SE*46*0001~
GE*1*101~
IEA*1*000000101~
";

/// The synthetic claim with one substitution, validated through the reader.
fn dental(replace: &str, with: &str) -> Vec<SegmentError> {
    assert!(DENTAL_CLAIM.contains(replace), "{replace}");
    let text = DENTAL_CLAIM.replacen(replace, with, 1);
    let mut sets = validate(text.as_bytes());
    assert_eq!(sets.len(), 1);
    let set = sets.remove(0);
    assert_eq!(set.st01, "837");
    assert!(set.st03.starts_with("005010X224A"), "{}", set.st03);
    set.errors
}

#[test]
fn synthetic_npis_are_valid() {
    for npi in ["1234567893", "1987654328"] {
        assert!(valid_npi(npi.as_bytes()), "{npi}");
    }
}

#[test]
fn synthetic_dental_claim_is_clean() {
    let errors = dental("", "");
    assert!(errors.is_empty(), "{errors:#?}");
    // The same claim under the A3 errata is validated by the same table.
    let errors = dental("005010X224A2~\nST*837*0001*005010X224A2", "005010X224A3~\nST*837*0001*005010X224A3");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn dental_service_without_procedure_code_is_caught() {
    let errors = dental("SV3*AD:D0120*65", "SV3*AD*65");
    assert_eq!(
        summary(&errors),
        vec![ik3("SV3", 33, "2400", SegmentCode::ElementErrors, &[(1, Some(2), "234", ElementCode::RequiredMissing)])]
    );
    assert!(
        matches!(
            &errors[0].contexts[..],
            [clearway_formats::x12::validate::Context::BusinessUnit { name, .. }] if name == "CLM01"
        ),
        "{errors:#?}"
    );
}

#[test]
fn dental_tooth_and_cavity_codes_are_checked() {
    // Tooth surface X does not exist (TOO03-2).
    assert_eq!(
        summary(&dental("TOO*JP*30*M:O:D", "TOO*JP*30*M:X:D")),
        vec![ik3("TOO", 37, "2400", SegmentCode::ElementErrors, &[(3, Some(2), "1369", ElementCode::InvalidCode)])]
    );
    // Oral cavity designation 50 does not exist (SV304-2).
    assert_eq!(
        summary(&dental("*200**10:20**2", "*200**10:50**2")),
        vec![ik3("SV3", 40, "2400", SegmentCode::ElementErrors, &[(4, Some(2), "1361", ElementCode::InvalidCode)])]
    );
    // Tooth status must be E (to be extracted) or M (missing), and DN206 is
    // the required JP (Universal National Tooth Designation System).
    assert_eq!(
        summary(&dental("DN2*1*M****JP", "DN2*1*X")),
        vec![ik3(
            "DN2",
            27,
            "2300",
            SegmentCode::ElementErrors,
            &[(2, None, "1368", ElementCode::InvalidCode), (6, None, "1270", ElementCode::RequiredMissing)]
        )]
    );
    // SV306 (procedure count) is required.
    assert_eq!(
        summary(&dental("SV3*AD:D2740*1150***I*1", "SV3*AD:D2740*1150***I")),
        vec![ik3("SV3", 43, "2400", SegmentCode::ElementErrors, &[(6, None, "380", ElementCode::RequiredMissing)])]
    );
}

#[test]
fn dental_line_without_service_is_caught() {
    // A service line is entered through LX and needs its SV3.
    let errors = dental("SV3*AD:D0120*65****1~\n", "");
    assert_eq!(summary(&errors), vec![ik3("SV3", 34, "2400", SegmentCode::RequiredMissing, &[])]);
}
