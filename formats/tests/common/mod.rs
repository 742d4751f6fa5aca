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
