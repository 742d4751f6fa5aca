//! Claim edits through the service: the 999 accepts what SNIP 1-2 accepts,
//! the 277CA rejects the claims an edit rejects (and they are not routed),
//! code sets imported while the service runs are picked up without a
//! restart, imports are all or nothing, edits are configured per payer,
//! and duplicates are rejected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::{Client, Scratch, Server};

/// One 837P claim. `npi`: the billing provider's; `dx`: the principal
/// diagnosis; `dos`: CCYYMMDD.
fn claim_837(isa13: u32, pcn: &str, npi: &str, dx: &str, dos: &str) -> Vec<u8> {
    let segments = [
        format!(
            "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*CLEARWAY       *240115*1200*^*00501*{isa13:09}*0*T*:"
        ),
        "GS*HC*SUBMITTER*CLEARWAY*20240115*1200*1*X*005010X222A1".into(),
        "ST*837*0001*005010X222A1".into(),
        "BHT*0019*00*REF1*20240115*1200*CH".into(),
        "NM1*41*2*SUBMITTER*****46*SUB1".into(),
        "PER*IC*DESK*TE*5555550100".into(),
        "NM1*40*2*CLEARWAY*****46*CLEARWAY".into(),
        "HL*1**20*1".into(),
        format!("NM1*85*2*CLINIC*****XX*{npi}"),
        "N3*1 MAIN ST".into(),
        "N4*SPRINGFIELD*IL*627010001".into(),
        "REF*EI*123456789".into(),
        "HL*2*1*22*0".into(),
        "SBR*P*18*******CI".into(),
        "NM1*IL*1*TESTLAST*PAT****MI*M1".into(),
        "N3*2 MAIN ST".into(),
        "N4*SPRINGFIELD*IL*62701".into(),
        "DMG*D8*19800101*F".into(),
        "NM1*PR*2*PLAN*****PI*ACME01".into(),
        format!("CLM*{pcn}*100***11:B:1*Y*A*Y*Y"),
        format!("HI*ABK:{dx}"),
        "LX*1".into(),
        "SV1*HC:99213*100*UN*1***1".into(),
        format!("DTP*472*D8*{dos}"),
        "SE*23*0001".into(),
        "GE*1*1".into(),
        format!("IEA*1*{isa13:09}"),
    ];
    segments.iter().map(|s| format!("{s}~\n")).collect::<String>().into_bytes()
}

const GOOD_NPI: &str = "1234567893";
const BAD_NPI: &str = "1234567890";

/// Submits and waits: the transaction record.
fn run(c: &Client, body: &[u8]) -> serde_json::Value {
    let r = c.submit("application/edi-x12", body, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    let mut t = c.wait_terminal(&id);
    t["id"] = serde_json::Value::String(id);
    t
}

/// The body of a transaction's ack of `kind`.
fn ack(c: &Client, t: &serde_json::Value, kind: &str) -> String {
    let id = t["id"].as_str().unwrap();
    let acks = c.get(&format!("/v1/transactions/{id}/acks")).json();
    let a = acks.as_array().unwrap().iter().find(|a| a["kind"] == kind).unwrap_or_else(|| panic!("no {kind}: {acks}"));
    c.get(&format!("/v1/transactions/{id}/acks/{}", a["id"].as_str().unwrap())).text()
}

/// Accepted and on its way to the payer: waiting for its batch
/// (`queued`), in one (`batched`), or sent (`routed`).
fn on_its_way(status: &str) -> bool {
    matches!(status, "queued" | "batched" | "routed")
}

fn claim_status(t: &serde_json::Value) -> (String, Option<String>) {
    let c = &t["claims"][0];
    (
        c["status"].as_str().unwrap().to_string(),
        c["statusCode"].as_str().or(c["status_code"].as_str()).map(str::to_string),
    )
}

fn codesets(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    let data = scratch.data().display().to_string();
    let mut all = vec!["codesets"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", &data]);
    all.extend_from_slice(scratch.backend_args());
    scratch.command().args(&all).output().unwrap()
}

fn codeset_file(name: &str) -> String {
    let dir = std::env::var("CLEARWAY_CODESETS_DIR")
        .expect("CLEARWAY_CODESETS_DIR: run scripts/test, or scripts/fetch-codesets.py DIR and set it to DIR");
    std::path::Path::new(&dir).join(name).display().to_string()
}

fn code_sets_are_imported_all_or_nothing_and_picked_up_by_running_workers(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[("CLEARWAY__EDITS__CODESET_REFRESH_SECS", "1")]);
    let c = Client { addr: server.http, key };
    // "E11" is an ICD-10-CM category, not a billable code. With no release
    // in force on 2026-06-01, the edit cannot judge it: accepted.
    let t = run(&c, &claim_837(1, "PCN-A", GOOD_NPI, "E11", "20260601"));
    assert!(on_its_way(&claim_status(&t).0), "{t}");

    // A file with a bad row refuses the whole command: nothing is stored.
    let bad = scratch.root.path().join("icd10cm_order_2026.txt");
    std::fs::write(&bad, "00001 A00     0 Cholera\n00002 A000    1 Cholera due to\n00003 a.0     7 bad\n").unwrap();
    let out = codesets(&scratch, &["import", &codeset_file("icd10c-tabular-April-1-2026.xml"), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("nothing was imported"), "{err}");
    let list = codesets(&scratch, &["list"]);
    assert!(list.status.success() && list.stdout.is_empty(), "{}", String::from_utf8_lossy(&list.stdout));

    // The real FY2026 (April update) release; again: nothing changes.
    let out = codesets(&scratch, &["import", &codeset_file("icd10c-tabular-April-1-2026.xml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("icd10cm\t2026-04-01"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let again = codesets(&scratch, &["import", &codeset_file("icd10c-tabular-April-1-2026.xml")]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already imported"));
    let list = String::from_utf8(codesets(&scratch, &["list"]).stdout).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");

    // The running workers pick it up (refresh every second here; within a
    // minute by default).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 2;
    let t = loop {
        let t = run(&c, &claim_837(n, &format!("PCN-B{n}"), GOOD_NPI, "E11", "20260601"));
        if claim_status(&t).0 == "rejected" {
            break t;
        }
        assert!(Instant::now() < deadline, "the import was not picked up: {t}");
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(claim_status(&t), ("rejected".to_string(), Some("A7:254".to_string())), "{t}");
    assert!(ack(&c, &t, "999").contains("AK9*A*1*1*1"), "the set is accepted");
    let ca = ack(&c, &t, "277ca");
    assert!(ca.contains("STC*A7:254*") && ca.contains("*U*100"), "{ca}");
    // A billable code of the same release goes through.
    let t = run(&c, &claim_837(500, "PCN-C", GOOD_NPI, "E11A", "20260601"));
    assert!(on_its_way(&claim_status(&t).0), "{t}");
}

fn invalid_npis_reject_the_claim_not_the_set_edits_are_configured_per_payer_and_duplicates_rejected(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key: key.clone() };
    let t = run(&c, &claim_837(1, "PCN-1", BAD_NPI, "E119", "20240301"));
    assert_eq!(t["status"], "accepted", "the set passes SNIP 1-2: {t}");
    assert_eq!(claim_status(&t), ("rejected".to_string(), Some("A7:562:85".to_string())), "{t}");
    assert!(ack(&c, &t, "999").contains("AK9*A*1*1*1"));
    assert!(ack(&c, &t, "277ca").contains("STC*A7:562:85*"));
    let issues = t["issues"].to_string();
    assert!(issues.contains("edit:npi.billing") && !issues.contains(BAD_NPI), "{issues}");

    // A valid claim, then the same claim in another interchange: A3:54.
    let first = run(&c, &claim_837(2, "PCN-2", GOOD_NPI, "E119", "20240301"));
    assert!(on_its_way(&claim_status(&first).0), "{first}");
    let dup = run(&c, &claim_837(3, "PCN-2", GOOD_NPI, "E119", "20240301"));
    assert_eq!(claim_status(&dup), ("rejected".to_string(), Some("A3:54".to_string())), "{dup}");
    let other_day = run(&c, &claim_837(4, "PCN-2", GOOD_NPI, "E119", "20240302"));
    assert!(on_its_way(&claim_status(&other_day).0), "a different date of service is another claim");
    assert_eq!(server.stop(), Some(0));

    // The payer turns the NPI edit off: the same claim is accepted.
    scratch.write_config("[payers.ACME01.edits]\n\"npi.billing\" = \"off\"\n");
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let t = run(&c, &claim_837(5, "PCN-5", BAD_NPI, "E119", "20240301"));
    assert!(on_its_way(&claim_status(&t).0), "{t}");
    // A bad configuration is refused with every problem.
    scratch.write_config("[edits]\n\"npi.nope\" = \"warn\"\n\"npi.billing\" = \"maybe\"\n");
    let out = scratch
        .command()
        .args(["serve", "--data-dir", &scratch.data().display().to_string(), "--config"])
        .arg(scratch.config())
        .args(scratch.backend_args())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("edits.npi.nope") && err.contains("edits.npi.billing"), "{err}");
}

crate::on_both_backends!(
    code_sets_are_imported_all_or_nothing_and_picked_up_by_running_workers,
    invalid_npis_reject_the_claim_not_the_set_edits_are_configured_per_payer_and_duplicates_rejected,
);

#[test]
fn the_edit_catalog_is_listed() {
    let out = Scratch::new().command().args(["edits", "list"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("npi.billing\t5\treject\tA7:562:85"), "{text}");
    assert_eq!(text.lines().count(), clearway_core::edits::CATALOG.len() + 1);
}
