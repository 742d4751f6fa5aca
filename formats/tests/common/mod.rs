//! Shared by the corpus conformance tests: finds `../shared/corpus` and reads
//! its manifest. The corpus is public sample data kept outside the repository
//! (see `fixtures/README.md`); a missing corpus fails the test rather than
//! skipping it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// The corpus directory: `$CLEARWAY_CORPUS_DIR`, else `../shared/corpus`
/// beside the workspace.
pub fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CLEARWAY_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = workspace.join("../shared/corpus");
    assert!(dir.join("manifest.json").is_file(), "corpus not found at {} (set CLEARWAY_CORPUS_DIR)", dir.display());
    dir
}

/// Every manifest entry, in manifest order.
pub fn manifest() -> Vec<Value> {
    let path = corpus_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).expect("read manifest.json");
    match serde_json::from_str::<Value>(&text).expect("parse manifest.json") {
        Value::Array(v) => v,
        _ => panic!("manifest.json is not an array"),
    }
}

/// Manifest entries of one format (`x12`, `hl7v2`, `fhir`, `ncpdp`).
pub fn entries(format: &str) -> Vec<Value> {
    manifest().into_iter().filter(|e| e["format"] == format).collect()
}

/// The bytes of a corpus file named as in the manifest (`x12/...`).
pub fn read(file: &str) -> Vec<u8> {
    let path = corpus_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A file of `$CLEARWAY_CODESETS_DIR`, where `scripts/fetch-codesets.py`
/// puts the public code-set releases (a missing one fails the test).
pub fn codeset_file(name: &str) -> Vec<u8> {
    let dir = std::env::var("CLEARWAY_CODESETS_DIR")
        .expect("CLEARWAY_CODESETS_DIR: run scripts/test, or scripts/fetch-codesets.py DIR and set it to DIR");
    let path = PathBuf::from(dir).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ICD-10-PCS code list (`icd_10_pcs.csv`) as a release in force from
/// `effective`: for sizing the tables (no package ships the CMS order file).
pub fn pcs_release(effective: time::Date) -> clearway_formats::edits::codesets::Release {
    use clearway_formats::edits::codesets::{CodeSystem, Release, ReleaseCode};
    let text = String::from_utf8(codeset_file("icd_10_pcs.csv")).expect("ASCII");
    let codes: Vec<ReleaseCode> = text
        .lines()
        .filter_map(|l| l.split(',').next())
        .map(|c| c.trim_matches('"').to_string())
        .filter(|c| c.len() == 7)
        .map(|code| ReleaseCode { code, billable: true, from: None, to: None })
        .collect();
    assert_eq!(codes.len(), 78_638);
    Release { system: CodeSystem::Icd10Pcs, label: "icd_10_pcs.csv".into(), effective, codes }
}
