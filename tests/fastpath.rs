//! The fast path over real TCP: an 834 through the async path feeds
//! `/v1/eligibility`; an 837 through the async path feeds
//! `/v1/claim-status`; bad requests get standard answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, analyze};
use support::{Client, Scratch, Server, request};

fn gen_x12(kind: Kind, count: usize, seed: u64) -> String {
    let mut v = Vec::new();
    synth::write(&mut v, kind, count, seed).unwrap();
    String::from_utf8(v).unwrap()
}

fn post(c: &Client, path: &str, content_type: &str, body: &[u8]) -> support::Response {
    let auth = format!("Bearer {}", c.key);
    request(c.addr, "POST", path, &[("Authorization", auth.as_str()), ("Content-Type", content_type)], body)
}

fn segments(x12: &[u8], id: &str) -> Vec<String> {
    String::from_utf8_lossy(x12)
        .split('~')
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with(&format!("{id}*")))
        .collect()
}

#[test]
fn eligibility_from_enrolment_and_claim_status_from_claims() {
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    // The 834 names the insurer by its tax id; the 270 by its payer id.
    scratch.write_config("[payers.ACME01]\naliases = [\"987654321\"]\n");
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };

    // Before any enrolment: subscriber not found.
    let inquiry = gen_x12(Kind::Eligibility270, 1, 3);
    let r = post(&c, "/v1/eligibility", "application/edi-x12", inquiry.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/edi-x12"));
    assert!(analyze(&r.body, &AnalyzeOptions::default()).accepted(), "a valid 271: {}", r.text());
    assert!(segments(&r.body, "AAA").iter().any(|s| s.ends_with("*75*C")), "{}", r.text());

    // The 834 goes through the async path; its members become coverage,
    // and the cached "not found" is dropped for them.
    let enrolment = gen_x12(Kind::Enrollment834, 2, 3);
    let id = c.submit("application/edi-x12", enrolment.as_bytes(), &[]).json()["transactionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "accepted");
    let r = post(&c, "/v1/eligibility", "application/edi-x12", inquiry.as_bytes());
    assert_eq!(r.status, 200);
    let eb = segments(&r.body, "EB");
    assert!(eb.iter().any(|s| s.starts_with("EB*1*") && s.contains("GOLD PLAN")), "active coverage: {}", r.text());
    let trn = segments(&r.body, "TRN");
    assert!(trn.iter().any(|s| s.contains("631892356520")), "the inquiry's trace is echoed: {trn:?}");

    // A member nobody enrolled.
    let stranger = inquiry.replace("M0068060533", "M9999999999");
    let r = post(&c, "/v1/eligibility", "application/edi-x12", stranger.as_bytes());
    assert!(segments(&r.body, "AAA").iter().any(|s| s.ends_with("*75*C")), "{}", r.text());

    // Claims submitted through the async path answer 276s. (Seed 5: a
    // seed of its own, so the interchange control number differs from the
    // 834's and the 837 is not a duplicate interchange.) Its first claim is
    // for payer SMC04, its second for ACME01; the 276 asks ACME01 about
    // both, so only the second is found.
    let claims = gen_x12(Kind::Professional837, 2, 5);
    let id =
        c.submit("application/edi-x12", claims.as_bytes(), &[]).json()["transactionId"].as_str().unwrap().to_string();
    c.wait_terminal(&id);
    let status = gen_x12(Kind::Status276, 2, 3);
    let r = post(&c, "/v1/claim-status", "application/edi-x12", status.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(analyze(&r.body, &AnalyzeOptions::default()).accepted(), "a valid 277: {}", r.text());
    let stc = segments(&r.body, "STC");
    assert_eq!(stc.len(), 2, "{}", r.text());
    assert!(stc[0].starts_with("STC*D0:35*"), "another payer's claim is not found: {stc:?}");
    assert!(stc[1].starts_with("STC*A1:20*"), "received and forwarded: {stc:?}");

    // Another partner learns nothing of clinic's claims.
    let other = Client { addr: server.http, key: scratch.partner("other", false) };
    // (The partner cache may take a moment to see the new key.)
    let r = post(&other, "/v1/claim-status", "application/edi-x12", status.as_bytes());
    if r.status == 200 {
        assert!(segments(&r.body, "STC").iter().all(|s| s.starts_with("STC*D0:35*")), "{}", r.text());
    }

    // Bad requests get standard answers.
    assert_eq!(post(&c, "/v1/eligibility", "text/html", b"<html>").status, 415);
    let junk = post(&c, "/v1/eligibility", "application/edi-x12", b"hello");
    assert_eq!(junk.status, 400);
    assert_eq!(junk.header("content-type"), Some("application/problem+json"));
    let mut broken = inquiry.clone().into_bytes();
    broken.truncate(200);
    let r = post(&c, "/v1/eligibility", "application/edi-x12", &broken);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["ta1"].as_str().is_some_and(|t| t.contains("TA1*")), "the TA1 says why: {}", r.text());
    let wrong_kind = post(&c, "/v1/eligibility", "application/edi-x12", status.as_bytes());
    assert_eq!(wrong_kind.status, 400);
    assert_eq!(
        request(server.http, "POST", "/v1/eligibility", &[("Content-Type", "application/edi-x12")], b"x").status,
        401
    );
}

/// Every 270 and 276 in the shared corpus gets a valid 271 or 277 (or,
/// for one the validator rejects, the 999 that says why), and every FHIR
/// CoverageEligibilityRequest a CoverageEligibilityResponse.
#[test]
fn corpus_inquiries_get_valid_answers() {
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let mut seen = 0;
    for entry in support::manifest() {
        let kind = entry["transaction_type"].as_str().unwrap_or("");
        let file = support::corpus().join(entry["file"].as_str().unwrap());
        let body = std::fs::read(&file).unwrap();
        let (path, answer_st, content_type) = if kind.starts_with("270") {
            ("/v1/eligibility", "ST*271*", "application/edi-x12")
        } else if kind.starts_with("276") {
            ("/v1/claim-status", "ST*277*", "application/edi-x12")
        } else if kind.contains("CoverageEligibilityRequest") {
            ("/v1/eligibility", "", "application/fhir+json")
        } else {
            continue;
        };
        seen += 1;
        let r = post(&c, path, content_type, &body);
        if content_type == "application/fhir+json" {
            assert_eq!(r.status, 200, "{}: {}", file.display(), r.text());
            let v = r.json();
            assert_eq!(v["resourceType"], "CoverageEligibilityResponse", "{}", file.display());
            assert_eq!(v["outcome"], "error", "nobody is enrolled: {v}");
            let code = &v["error"][0]["code"]["coding"][0]["code"];
            assert!(code == "75" || code == "72", "not found or invalid member id: {v}");
            continue;
        }
        let accepted = analyze(&body, &AnalyzeOptions::default()).accepted();
        if accepted {
            assert_eq!(r.status, 200, "{}: {}", file.display(), r.text());
            assert!(analyze(&r.body, &AnalyzeOptions::default()).accepted(), "{}: {}", file.display(), r.text());
            assert!(r.text().contains(answer_st), "{}: {}", file.display(), r.text());
        } else {
            assert_eq!(r.status, 400, "{}: {}", file.display(), r.text());
            let v = r.json();
            assert!(v.get("999").is_some() || v.get("ta1").is_some(), "{}: {v}", file.display());
        }
    }
    assert!(seen >= 8, "the corpus has 270s, 276s and CoverageEligibilityRequests ({seen} found)");
}

#[test]
fn coverage_import_from_csv_and_834() {
    use std::process::Command;
    let scratch = Scratch::new();
    let key = scratch.partner("clinic", false);
    let data = scratch.data().display().to_string();
    let csv = scratch.root.path().join("members.csv");
    std::fs::write(
        &csv,
        "payer_id,member_id,last_name,first_name,birth_date,plan,begin,end\nACME01,M0068060533,EXAMPLAR,ALEX,1975-10-17,CSV PLAN,2024-01-01,\n",
    )
    .unwrap();
    let out = Command::new(support::BIN).args(["coverage", "import", "--data-dir", &data]).arg(&csv).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // Bad rows are reported by line and nothing is imported.
    std::fs::write(
        &csv,
        "payer_id,member_id,last_name,first_name,birth_date,plan,begin,end\nACME01,,X,Y,1975-13-45,P,2024-01-01,\n",
    )
    .unwrap();
    let out = Command::new(support::BIN).args(["coverage", "import", "--data-dir", &data]).arg(&csv).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));

    // An 834, its insurer id mapped to the payer by an alias.
    scratch.write_config("[payers.ACME01]\naliases = [\"987654321\"]\n");
    let e834 = scratch.root.path().join("members.834");
    std::fs::write(&e834, gen_x12(Kind::Enrollment834, 3, 9)).unwrap();
    let out = Command::new(support::BIN)
        .args(["coverage", "import", "--data-dir", &data, "--config"])
        .arg(scratch.config())
        .arg(&e834)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");

    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let r = post(&c, "/v1/eligibility", "application/edi-x12", gen_x12(Kind::Eligibility270, 1, 3).as_bytes());
    assert!(segments(&r.body, "EB").iter().any(|s| s.starts_with("EB*1*") && s.contains("CSV PLAN")), "{}", r.text());
    let r = post(&c, "/v1/eligibility", "application/edi-x12", gen_x12(Kind::Eligibility270, 3, 9).as_bytes());
    let eb = segments(&r.body, "EB");
    assert_eq!(eb.iter().filter(|s| s.starts_with("EB*1*")).count(), 3, "the 834's members are covered: {}", r.text());
}
