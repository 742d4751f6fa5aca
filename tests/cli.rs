//! The `clearway` command's contract: exit codes, the `--json` report shape,
//! acknowledgements and deterministic generators.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn clearway(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clearway"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn corpus(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus").join(name)
}

fn generate(kind: &str, count: &str) -> Vec<u8> {
    let out = clearway(&["gen", kind, "--count", count, "--seed", "11"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn generators_are_deterministic_and_valid() {
    for kind in ["837p", "837i", "270", "276", "834", "hl7-adt"] {
        let a = generate(kind, "12");
        assert_eq!(a, generate(kind, "12"), "{kind} is deterministic");
        let out = clearway(&["validate", "-"], Some(&a));
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn validate_json_has_the_documented_shape() {
    let out = clearway(&["validate", "--json", "-"], Some(&generate("837p", "3")));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "x12");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["interchanges"].as_array().unwrap().len(), 1);
    let set = &v["transaction_sets"][0];
    for field in ["type", "implementation", "control_number", "accepted", "claims"] {
        assert!(!set[field].is_null(), "transaction set lacks {field}");
    }
    let claim = &set["claims"][0];
    assert!(claim["patient_control_number"].is_string() && claim["total_charge"].is_string());
    assert!(v["issues"].as_array().unwrap().is_empty());
}

#[test]
fn rejected_input_exits_1_with_coded_issues() {
    let bad = String::from_utf8(generate("837p", "2")).unwrap().replace("SE*", "SE*1");
    let out = clearway(&["validate", "--json", "-"], Some(bad.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let issue = &v["issues"][0];
    for field in ["severity", "code", "segment", "position", "loop", "element", "message"] {
        assert!(issue.get(field).is_some(), "issue lacks {field}");
    }
    assert_eq!(issue["code"], "IK5:4");
}

#[test]
fn ncpdp_d0_is_recognised_and_checked() {
    let sample = std::fs::read(corpus("ncpdp/b1-request-cosyte-person-code.ncpdp")).unwrap();
    let out = clearway(&["validate", "--json", "-"], Some(&sample));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "ncpdp");
    let codes: Vec<&str> = v["issues"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["NCPDP:16", "NCPDP:PP"], "no pricing segment, a prescription number that is not numeric");
    let good =
        clearway_formats::ncpdp::synth::request(&clearway_formats::ncpdp::synth::Request::b1("610020", "P", "1"));
    let out = clearway(&["validate", "-"], Some(&good));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ncpdp: ACCEPTED"));
    let paid = std::fs::read(corpus("ncpdp/b1-response-cosyte-paid-dur.ncpdp")).unwrap();
    let out = clearway(&["validate", "--json", "-"], Some(&paid));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["transmissions"][0]["outcomes"][0]["status"], "P", "{v}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(clearway(&["validate", "/nonexistent/file"], None).status.code(), Some(2));
    assert_eq!(clearway(&["validate"], None).status.code(), Some(2));
    assert_eq!(clearway(&["validate", "-"], Some(b"hello world")).status.code(), Some(2));
}

#[test]
fn acknowledgements_for_each_kind() {
    let claims = generate("837p", "3");
    let at = "2024-01-15T12:00:00Z";
    for (kind, expect) in [("ta1", "TA1*"), ("999", "AK9*A*1*1*1"), ("277ca", "STC*A2:20*")] {
        let out = clearway(&["ack", "--kind", kind, "--time", at, "-"], Some(&claims));
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("ISA*") && text.contains(expect), "{kind}: {text}");
        // Deterministic: the same input and time give the same bytes.
        let again = clearway(&["ack", "--kind", kind, "--time", at, "-"], Some(&claims));
        assert_eq!(text.as_bytes(), again.stdout);
    }
    let adt = generate("hl7-adt", "2");
    let out = clearway(&["ack", "--kind", "hl7", "--time", at, "-"], Some(&adt));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("MSA|").count(), 2, "{text}");
    let claim = br#"{"resourceType":"Claim","status":"active"}"#;
    let out = clearway(&["ack", "--kind", "fhir", "--time", at, "-"], Some(claim));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
}
