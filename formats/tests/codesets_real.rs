//! The code-set readers on real public releases (CDC/CMS ICD-10-CM order
//! file and tabular XML, three fiscal years), put in
//! `CLEARWAY_CODESETS_DIR` by `scripts/fetch-codesets.py` (which
//! `scripts/test` runs): what they read, the dates they are in force, and
//! the memory the lookup tables take.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clearway_formats::edits::codesets::{CodeSets, CodeSystem, Lookup, Release, read_release};
use std::collections::HashSet;
use time::macros::date;

mod common;

fn file(name: &str) -> (String, Vec<u8>) {
    (name.to_string(), common::codeset_file(name))
}

fn release(name: &str) -> Release {
    let (name, bytes) = file(name);
    read_release(&name, &bytes, None, None).unwrap()
}

fn billable(r: &Release) -> HashSet<&str> {
    r.codes.iter().filter(|c| c.billable).map(|c| c.code.as_str()).collect()
}

#[test]
fn the_fy2021_order_file_reads_whole() {
    let r = release("icd10cm-order-Jan-2021.txt");
    assert_eq!((r.system, r.effective), (CodeSystem::Icd10Cm, date!(2021 - 01 - 01)));
    // 95,358 rows: 72,621 valid for HIPAA transactions, 22,737 headers.
    assert_eq!(r.codes.len(), 95_358);
    assert_eq!(billable(&r).len(), 72_621);
    let cs = CodeSets::new(&[r]);
    let on = date!(2021 - 03 - 01);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "A000", on), Lookup::Valid);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "A00", on), Lookup::NotBillable);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "U07.1", on), Lookup::Valid, "COVID-19, April 2020");
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "J12.82", on), Lookup::Valid, "the January 2021 update");
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E11.A", on), Lookup::Invalid, "new in FY2026");
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "A000", date!(2020 - 12 - 31)), Lookup::NoRelease);
}

/// The seventh-character expansion of the tabular XML gives exactly the
/// order file's billable codes of the same fiscal year (FY2021, both with
/// the January 2021 update), including the S06 exception the XML states
/// only in a note.
#[test]
fn the_tabular_xml_and_the_order_file_of_one_year_agree() {
    let xml = release("icd10cm_tabular_2021.xml");
    assert_eq!(xml.effective, date!(2020 - 10 - 01), "FY2021 from the name");
    let order = release("icd10cm-order-Jan-2021.txt");
    let (x, o) = (billable(&xml), billable(&order));
    let only_xml: Vec<&&str> = x.difference(&o).collect();
    let only_order: Vec<&&str> = o.difference(&x).collect();
    assert!(only_xml.is_empty(), "billable in the XML, not in the order file: {only_xml:?}");
    assert!(only_order.is_empty(), "billable in the order file, not in the XML: {only_order:?}");
    assert!(x.contains("J1282") && x.contains("S061X7A") && !x.contains("S061X7D"));
}

#[test]
fn three_fiscal_years_are_each_in_force_on_their_dates() {
    let cs = CodeSets::new(&[
        release("icd10cm-order-Jan-2021.txt"),
        release("icd10cm-tabular-April-2025.xml"),
        release("icd10c-tabular-April-1-2026.xml"),
    ]);
    // E11.A (type 2 diabetes without complications in remission) is new in
    // FY2026 (1 October 2025); the loaded FY2026 file is the April update.
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E11A", date!(2026 - 05 - 01)), Lookup::Valid);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E11A", date!(2025 - 05 - 01)), Lookup::Invalid);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E119", date!(2025 - 05 - 01)), Lookup::Valid);
    // Between the April 2025 file's fiscal year end and the April 2026 file
    // no release is loaded: nothing is judged.
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E119", date!(2025 - 12 - 01)), Lookup::NoRelease);
    assert_eq!(cs.lookup(CodeSystem::Icd10Cm, "E119", date!(2023 - 06 - 01)), Lookup::NoRelease);
}

#[test]
fn a_release_survives_its_stored_form() {
    let r = release("icd10c-tabular-April-1-2026.xml");
    let stored = r.encode();
    assert!(stored.len() < 2 * 1024 * 1024, "{} bytes stored", stored.len());
    let back = Release::decode(&stored).unwrap();
    assert_eq!((back.system, back.effective, back.codes.len()), (r.system, r.effective, r.codes.len()));
    assert_eq!(billable(&back), billable(&r));
}

#[test]
fn a_damaged_file_is_refused_with_every_bad_row() {
    let (name, bytes) = file("icd10cm-order-Jan-2021.txt");
    let mut text = String::from_utf8(bytes).unwrap();
    // Break rows 10 and 20,000 and add a stray line at the end.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[9].replace_range(14..15, "X");
    lines[19_999].replace_range(6..13, "a.b    ");
    lines.push("not a row".into());
    text = lines.join("\n");
    match read_release(&name, text.as_bytes(), None, None) {
        Err(clearway_formats::edits::codesets::ReadError::Rows { rows, count }) => {
            assert_eq!(count, 3);
            assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [10, 20_000, 95_359]);
        }
        other => panic!("{:?}", other.map(|r| r.codes.len())),
    }
}
