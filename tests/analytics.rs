//! The analytics export end to end: claims submitted over HTTP, processed
//! by the workers, exported by `clearway export`, read back by DataFusion
//! (`clearway report`), pyarrow and DuckDB (`scripts/analytics-crosscheck.py`),
//! counted independently from the submitted X12, free of the fixtures'
//! PHI, and exactly once across `kill -9`s of the exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;
use support::{Client, Scratch, Server};

fn gen_837p(count: usize, seed: u64) -> String {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, count, seed)
        .unwrap();
    String::from_utf8(v).unwrap()
}

/// The segments of an X12 text (terminator `~`, optional newlines).
fn segments(x12: &str) -> Vec<String> {
    x12.split('~').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The same interchange with the billing provider's NPI failing its check
/// digit (a claim edit: each claim rejected in the 277CA, the set accepted).
fn bad_npi(x12: &str) -> String {
    let segs: Vec<String> = segments(x12)
        .into_iter()
        .map(|s| {
            if s.starts_with("NM1*85*") {
                let mut e: Vec<String> = s.split('*').map(String::from).collect();
                let npi = e[9].clone();
                let last = npi.chars().last().unwrap().to_digit(10).unwrap();
                e[9] = format!("{}{}", &npi[..9], (last + 1) % 10);
                e.join("*")
            } else {
                s
            }
        })
        .collect();
    segs.join("~\n") + "~\n"
}

/// The same interchange with an unknown segment after the BHT (a 999
/// rejection with an IK3).
fn bad_syntax(x12: &str) -> String {
    let mut out = Vec::new();
    for s in segments(x12) {
        let bht = s.starts_with("BHT*");
        out.push(s);
        if bht {
            out.push("ZZZ*1".to_string());
        }
    }
    out.join("~\n") + "~\n"
}

/// Claims (CLM) and the sum of CLM02 of an interchange, counted from its
/// text.
fn clm(x12: &str) -> (usize, Decimal) {
    segments(x12)
        .iter()
        .filter(|s| s.starts_with("CLM*"))
        .fold((0, Decimal::ZERO), |(n, sum), s| (n + 1, sum + Decimal::from_str(s.split('*').nth(2).unwrap()).unwrap()))
}

/// The patient control number (CLM01) and charge (CLM02) of each claim of
/// an 837.
fn claim_keys(x12: &str) -> Vec<(String, String)> {
    segments(x12)
        .iter()
        .filter(|s| s.starts_with("CLM*"))
        .map(|s| {
            let e: Vec<&str> = s.split('*').collect();
            (e[1].to_string(), e[2].to_string())
        })
        .collect()
}

fn export(scratch: &Scratch, to: &std::path::Path) -> serde_json::Value {
    let out = scratch.run_ok(&["export", "--to", to.to_str().unwrap(), "--json"]);
    serde_json::from_str(out.trim()).unwrap()
}

fn report(scratch: &Scratch, dir: &std::path::Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["report", name, "--source", dir.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(scratch.run_ok(&args).trim()).unwrap()
}

fn crosscheck(dir: &std::path::Path, markers: &BTreeSet<String>) -> serde_json::Value {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let venv = std::path::Path::new(&target).join("venv/bin/python");
    let python = if venv.exists() { venv } else { std::path::PathBuf::from("python3") };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/analytics-crosscheck.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let text: Vec<&str> = markers.iter().map(String::as_str).collect();
    child.stdin.take().unwrap().write_all(text.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn exported_claims_agree_with_the_submitted_x12_in_every_reader_and_survive_kills() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[("CLEARWAY__ANALYTICS__EXPORT_EVERY_SECS", "0")]);
    let c = Client { addr: server.http, key };

    // Real-time requests first (their events are written off the request
    // path, moments later): four 270s and two 276s.
    let auth = format!("Bearer {}", c.key);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/edi-x12")];
    for (path, kind, n) in [
        ("/v1/eligibility", clearway_formats::x12::synth::Kind::Eligibility270, 4u64),
        ("/v1/claim-status", clearway_formats::x12::synth::Kind::Status276, 2),
    ] {
        for seed in 0..n {
            let mut body = Vec::new();
            clearway_formats::x12::synth::write(&mut body, kind, 1, 500 + seed).unwrap();
            let r = support::request(server.http, "POST", path, &headers, &body);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
        }
    }
    let realtime = 6;

    // Good files, one whose claims fail an edit, one the 999 rejects.
    let mut files: Vec<(String, bool)> = (0..8).map(|i| (gen_837p(3 + i % 4, 100 + i as u64), true)).collect();
    files.push((bad_npi(&gen_837p(2, 7)), true));
    files.push((bad_syntax(&gen_837p(4, 9)), false));
    // And an enrollment, for Tuva's eligibility.
    let mut enrollment = Vec::new();
    clearway_formats::x12::synth::write(&mut enrollment, clearway_formats::x12::synth::Kind::Enrollment834, 5, 3)
        .unwrap();
    let enrollment = String::from_utf8(enrollment).unwrap();
    let coverages = segments(&enrollment).iter().filter(|s| s.starts_with("HD*")).count();
    files.push((enrollment, true));
    // And an 835 paying the claims of the first file (10 each) and denying
    // none, for the reconciliation.
    let paid: Vec<(String, String)> = claim_keys(&files[0].0);
    let answers: Vec<(String, String, String)> =
        paid.iter().map(|(p, c)| (p.clone(), c.clone(), "10".into())).collect();
    let era = String::from_utf8(support::payer::remittance_of("1000000012", &answers)).unwrap();
    files.push((era, true));
    // And an 835 with adjustments at line and claim level and a denial, for
    // the remittance lines and the denials report (its claims answer none
    // of ours).
    files.push((adjusted_835(), true));
    // And an 835 paying one claim line by line (each line 80 % paid, 10 %
    // deductible, 10 % contractual), for the Tuva snapshot's final claims:
    // a claim whose patient control number and charge no other claim has.
    let keys: Vec<(String, String)> =
        files.iter().filter(|f| f.1 && f.0.contains("ST*837")).flat_map(|f| claim_keys(&f.0)).collect();
    let unique = |k: &(String, String)| keys.iter().filter(|x| *x == k).count() == 1 && !paid.contains(k);
    let (at, Paying { x12: paying, lines: paid_lines, claim: picked }) = files[1..8]
        .iter()
        .enumerate()
        .find_map(|(i, f)| paying_835(&f.0, &unique).map(|p| (i + 1, p)))
        .expect("a claim with a unique number and charge");
    files.push((paying, true));
    // Claims an 835 line answers: same patient control number and charge
    // (counted in every accepted 837, as a submitter's numbers may repeat).
    let answered_claims = files
        .iter()
        .filter(|f| f.1 && f.0.contains("ST*837"))
        .flat_map(|f| claim_keys(&f.0))
        .filter(|k| paid.contains(k) || *k == picked)
        .count();
    // Its file again under another ISA13 (a resubmission): the set is
    // accepted, its claims rejected as duplicates of claims already
    // submitted, and the snapshot pays the accepted original only.
    let resubmitted = with_isa13(&files[at].0, 777_000_001);
    files.push((resubmitted.clone(), true));
    let mut markers = BTreeSet::new();
    let (mut claims, mut charged) = (0usize, Decimal::ZERO);
    let mut ids = Vec::new();
    for (x12, set_accepted) in &files {
        markers.extend(support::phi_markers(x12));
        if *set_accepted {
            let (n, sum) = clm(x12);
            claims += n;
            charged += sum;
        }
        let r = c.submit("application/edi-x12", x12.as_bytes(), &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["transactionId"].as_str().unwrap().to_string();
        c.wait_terminal(&id);
        ids.push(id);
    }
    // HL7 v2 and FHIR: a corpus batch of two ADTs, an ADT without its PID
    // (answered with an error), another under an Idempotency-Key (sent again
    // below), a corpus FHIR Claim. What each HL7 row must
    // say, read independently: MSH-9 and MSH-10 from the payload, MSA-1 and
    // the ERR count from the ACK (MSA-2 names the message), the status.
    let batch = std::fs::read_to_string(support::corpus().join("hl7v2/adt-a04-pyhl7-batch-two-messages.hl7")).unwrap();
    let no_pid = "MSH|^~\\&|LAB|FAC|CW|CW|20261201120000||ADT^A01^ADT_A01|NOPID-0001|P|2.5.1\rEVN|A01|20261201120000\r";
    let claim = std::fs::read(support::corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let hl7_segments = |text: &str| -> Vec<Vec<String>> {
        text.split(['\r', '\n']).filter(|l| !l.is_empty()).map(|l| l.split('|').map(str::to_string).collect()).collect()
    };
    let mut expected_hl7: BTreeMap<String, (String, String, usize, String)> = BTreeMap::new();
    let keyed = no_pid.replace("NOPID-0001", "KEYED-0001");
    let mut others = vec![];
    for (ct, body, headers) in [
        ("application/hl7-v2", batch.as_bytes(), &[][..]),
        ("application/hl7-v2", no_pid.as_bytes(), &[]),
        ("application/hl7-v2", keyed.as_bytes(), &[("Idempotency-Key", "dup-key-1")]),
        ("application/fhir+json", &claim, &[]),
    ] {
        let r = c.submit(ct, body, headers);
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["transactionId"].as_str().unwrap().to_string();
        let status = c.wait_terminal(&id)["status"].as_str().unwrap().to_string();
        if ct == "application/hl7-v2" {
            let text = std::str::from_utf8(body).unwrap();
            for seg in hl7_segments(text) {
                if seg[0] == "MSH" {
                    expected_hl7.insert(seg[9].clone(), (seg[8].clone(), String::new(), 0, status.clone()));
                }
                if seg[0] == "PID" {
                    markers.extend(seg[5].split('^').take(2).filter(|n| n.len() >= 4).map(str::to_string));
                }
            }
            for a in c.get(&format!("/v1/transactions/{id}/acks")).json().as_array().unwrap() {
                let ack = c.get(&format!("/v1/transactions/{id}/acks/{}", a["id"].as_str().unwrap())).text();
                let segs = hl7_segments(&ack);
                let msa = segs.iter().find(|s| s[0] == "MSA").unwrap();
                let e = expected_hl7.get_mut(&msa[2]).unwrap();
                e.1 = msa[1].clone();
                e.2 = segs.iter().filter(|s| s[0] == "ERR").count();
            }
        }
        others.push(status);
    }
    assert_eq!(expected_hl7.len(), 4);
    // Duplicates, one per layer: the same Idempotency-Key, ISA13, MSH-10
    // and content again. Their events are written off the request path:
    // wait until the writer has them (with the six real-time ones).
    let again = c.submit("application/hl7-v2", keyed.as_bytes(), &[("Idempotency-Key", "dup-key-1")]);
    assert_eq!(again.status, 202, "a replay answers as the first did");
    for (ct, body) in [
        ("application/edi-x12", files[0].0.as_bytes()),
        ("application/hl7-v2", no_pid.as_bytes()),
        ("application/fhir+json", claim.as_slice()),
    ] {
        assert_eq!(c.submit(ct, body, &[]).status, 200);
    }
    let written = || {
        let m = support::request(server.http, "GET", "/metrics", &[], b"").text();
        m.lines()
            .find_map(|l| l.strip_prefix("clearway_realtime_events_total "))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap_or(0))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while written() < realtime as u64 + 4 {
        assert!(std::time::Instant::now() < deadline, "the duplicates' events were not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(matches!(expected_hl7["NOPID-0001"].1.as_str(), "AE" | "AR"), "{expected_hl7:?}");
    let rejected_claims = clm(&files[8].0).0 + clm(&resubmitted).0;
    let lines = files
        .iter()
        .filter(|f| f.1 && f.0.contains("ST*837"))
        .map(|f| segments(&f.0).iter().filter(|s| s.starts_with("LX*")).count())
        .sum::<usize>();

    // One export: every transaction once, every claim of the accepted sets.
    let dir = scratch.root.path().join("analytics");
    let first = export(&scratch, &dir);
    assert_eq!(first["events"], files.len() + others.len() + realtime + 4, "{first}");
    assert_eq!(first["rows"]["duplicate"], 4, "{first}");
    assert_eq!(
        (&first["rows"]["hl7_message"], &first["rows"]["fhir_request"]),
        (&serde_json::json!(4), &serde_json::json!(1))
    );
    assert_eq!(first["rows"]["rt_exchange"], realtime, "{first}");
    assert_eq!(first["rows"]["claim_line"], lines, "{first}");
    // Tuva: every professional line, every coverage span of the 834.
    assert_eq!(first["rows"]["tuva_medical_claim"], lines, "{first}");
    assert_eq!(first["rows"]["tuva_eligibility"], coverages, "{first}");
    assert_eq!(first["rows"]["claim"], claims, "{first}");
    assert_eq!(first["rows"]["transaction"], files.len() + others.len(), "{first}");
    assert_eq!(first["skippedUnreadable"], 0, "{first}");
    // A rerun has nothing to do.
    let again = export(&scratch, &dir);
    assert_eq!((again["events"].as_u64(), again["filesCreated"].as_u64()), (Some(0), Some(0)), "{again}");

    // A bounded re-export to a new destination writes the same files with
    // the same bytes and leaves that destination's watermark alone: its
    // first incremental run finds every file there. A period without
    // events writes nothing.
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) =
        (today.previous_day().unwrap().to_string(), today.next_day().unwrap().next_day().unwrap().to_string());
    let copy = scratch.root.path().join("analytics-copy");
    let args = ["export", "--from", &from, "--to", &to, "--to", copy.to_str().unwrap(), "--json"];
    let bounded: serde_json::Value = serde_json::from_str(scratch.run_ok(&args).trim()).unwrap();
    assert_eq!((&bounded["events"], &bounded["rows"]), (&first["events"], &first["rows"]), "{bounded}");
    let tree = |root: &std::path::Path| -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    };
    assert_eq!(tree(&copy.join("v1")), tree(&dir.join("v1")), "the same files, byte for byte");
    let after = export(&scratch, &copy);
    assert_eq!(
        (after["filesCreated"].as_u64(), after["filesExisting"].as_u64()),
        (Some(0), first["filesCreated"].as_u64()),
        "{after}"
    );
    let none = ["export", "--from", "2001-01-01", "--to", "2001-01-02", "--to", copy.to_str().unwrap(), "--json"];
    let none: serde_json::Value = serde_json::from_str(scratch.run_ok(&none).trim()).unwrap();
    assert_eq!((none["events"].as_u64(), none["filesCreated"].as_u64()), (Some(0), Some(0)), "{none}");
    let bad = scratch.run(&["export", "--from", "2001-01-02", "--to", "2001-01-01"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("empty period"));

    // DataFusion's reports agree with the X12.
    let fp = report(&scratch, &dir, "first_pass", &[]);
    let rows = fp.as_array().unwrap();
    let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("claims"), sum("rejected")), (claims as u64, rejected_claims as u64), "{fp}");
    let rec = report(&scratch, &dir, "reconciliation", &[]);
    let rec = rec.as_array().unwrap();
    let answered: u64 = rec.iter().map(|r| r["answered"].as_u64().unwrap()).sum();
    assert_eq!(answered, answered_claims as u64, "{rec:?}");
    assert!(answered_claims >= paid.len());
    assert_eq!(first["rows"]["remit_claim"], paid.len() + 3, "{first}");
    assert_eq!(
        (&first["rows"]["remit_line"], &first["rows"]["remit_adjustment"]),
        (&serde_json::json!(2 + paid_lines.len()), &serde_json::json!(5 + 2 * paid_lines.len())),
        "{first}"
    );
    let den = report(&scratch, &dir, "denials", &["--payer", "ACMEPAYER"]);
    let den: Vec<(String, String, u64, u64, u64, Decimal, u64)> = den
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            let n = |k: &str| r[k].as_u64().unwrap();
            let amount = Decimal::from_str(&r["amount"].to_string().replace('"', "")).unwrap();
            (
                s("group_code"),
                s("reason_code"),
                n("claims"),
                n("denied_claims"),
                n("adjustments"),
                amount,
                n("remitted_claims"),
            )
        })
        .collect();
    let row = |g: &str, c: &str, claims, denied, adjustments, amount: &str| {
        (g.to_string(), c.to_string(), claims, denied, adjustments, Decimal::from_str(amount).unwrap(), 2)
    };
    assert_eq!(
        den,
        vec![
            row("CO", "29", 1, 1, 1, "90.00"),
            row("CO", "45", 1, 0, 2, "30.00"),
            row("CO", "253", 1, 0, 1, "10.00"),
            row("PR", "1", 1, 0, 1, "10.00"),
        ]
    );
    let df_charged: Decimal =
        rows.iter().map(|r| Decimal::from_str(&r["charged"].to_string().replace('"', "")).unwrap()).sum();
    assert_eq!(df_charged, charged, "{fp}");
    let acc = report(&scratch, &dir, "acceptance", &["--partner", "acme"]);
    let acc = acc.as_array().unwrap();
    assert_eq!(acc.iter().map(|r| r["sets"].as_u64().unwrap()).sum::<u64>(), files.len() as u64);
    assert_eq!(acc.iter().map(|r| r["rejected"].as_u64().unwrap()).sum::<u64>(), 1);
    let rej = report(&scratch, &dir, "rejections", &[]);
    assert!(rej.as_array().unwrap().iter().any(|r| r["category"] == "A7"), "{rej}");
    let errs = report(&scratch, &dir, "ack_errors", &[]);
    assert!(errs.as_array().unwrap().iter().any(|r| r["segment"] == "ZZZ"), "{errs}");
    let core = report(&scratch, &dir, "core_conformance", &[]);
    let core = core.as_array().unwrap();
    assert_eq!(core.iter().map(|r| r["responses"].as_u64().unwrap()).sum::<u64>(), realtime as u64);
    assert!(core.iter().all(|r| r["conformant"] == true && r["within_20s"] == r["responses"]), "{core:?}");
    let aaa = report(&scratch, &dir, "aaa_errors", &[]);
    assert!(aaa.is_array(), "{aaa}");
    // An empty period is an empty report; an unknown report names the known ones.
    let empty = report(&scratch, &dir, "first_pass", &["--from", "2001-01-01", "--to", "2001-01-02"]);
    assert_eq!(empty, serde_json::json!([]));
    let unknown = scratch.run(&["report", "nope", "--source", dir.to_str().unwrap()]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("first_pass"));

    // Over HTTP, for operators and auditors, from the configured
    // destination (<data_dir>/analytics).
    let default = export(&scratch, &scratch.data().join("analytics"));
    assert_eq!(default["rows"]["claim"], claims, "{default}");
    let ops = scratch.partner("ops", true);
    let get = |key: &str, path: &str| {
        let auth = format!("Bearer {key}");
        support::request(server.http, "GET", path, &[("Authorization", auth.as_str())], b"")
    };
    let r = get(&ops, "/v1/reports/first_pass?from=2000-01-01");
    assert_eq!(r.status, 200, "{}", r.text());
    let total: u64 = r.json()["rows"].as_array().unwrap().iter().map(|x| x["claims"].as_u64().unwrap()).sum();
    assert_eq!(total, claims as u64);
    let r = get(&ops, "/v1/reports/nope");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("core_conformance"), "{}", r.text());
    assert_eq!(get(&ops, "/v1/reports/first_pass?from=yesterday").status, 400);
    assert_eq!(get(&c.key, "/v1/reports/first_pass").status, 403, "not for submitters");

    // pyarrow and DuckDB read the same rows, and no fixture PHI.
    let x = crosscheck(&dir, &markers);
    for (t, n) in first["rows"].as_object().unwrap() {
        assert_eq!(&x["pyarrow"][t], n, "{t}: {x}");
        assert_eq!(&x["duckdb"][t], n, "{t}: {x}");
    }
    assert_eq!(x["claim_distinct_duckdb"], claims, "{x}");
    assert_eq!(x["claim_rejected_duckdb"], rejected_claims, "{x}");
    assert_eq!(Decimal::from_str(x["claim_charge_sum_duckdb"].as_str().unwrap()).unwrap(), charged, "{x}");
    assert_eq!(x["line_distinct_duckdb"], first["rows"]["claim_line"], "{x}");
    let dups = report(&scratch, &dir, "duplicates", &[]);
    let layers: BTreeMap<String, u64> = dups
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r["layer"].as_str().unwrap(), r["format"].as_str().unwrap()),
                r["duplicates"].as_u64().unwrap(),
            )
        })
        .collect();
    let one = |k: &str| (k.to_string(), 1u64);
    assert_eq!(
        layers,
        BTreeMap::from([one("content/fhir"), one("idempotency-key/hl7"), one("interchange/x12"), one("message/hl7")]),
        "{dups}"
    );
    // Layer B: the export wrote today's Tuva snapshot, the submitted lines
    // with their adjudication where an 835 paid them line by line.
    let snap = &x["tuva_medical_claim_snapshot"];
    assert_eq!(
        (&snap["rows"], &snap["pyarrow_rows"]),
        (&first["rows"]["tuva_medical_claim"], &first["rows"]["tuva_medical_claim"]),
        "{x}"
    );
    assert_eq!(snap["paid_lines"], paid_lines.len(), "{x}");
    assert_eq!(snap["paid_files"], serde_json::json!([ids[at]]), "the original, not the rejected resubmission: {x}");
    let close = |v: &serde_json::Value, want: Decimal| {
        let got = v.as_f64().unwrap();
        let want = want.to_string().parse::<f64>().unwrap();
        assert!((got - want).abs() < 0.005, "{got} vs {want}: {x}");
    };
    close(&snap["paid_sum"], paid_lines.iter().map(|l| l.0).sum());
    close(&snap["deductible_sum"], paid_lines.iter().map(|l| l.1).sum());
    close(&snap["allowed_sum"], paid_lines.iter().map(|l| l.0 + l.1).sum());
    assert_eq!(x["tuva_eligibility_snapshot_rows"], first["rows"]["tuva_eligibility"], "{x}");
    assert_eq!(x["tuva_pharmacy_claim_snapshot_rows"], 0, "{x}");
    assert_eq!(first["tuvaSnapshot"]["adjudicatedLines"], paid_lines.len(), "{first}");
    assert!(again["tuvaSnapshot"].is_null(), "once a day: {again}");

    // The HL7 and FHIR rows say what was received and answered.
    let hl7: Vec<(String, (String, String, usize, String))> = x["hl7_message_rows_duckdb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let msh9 = format!("{}^{}", s("msh9_code"), s("msh9_trigger"));
            (s("msh10_control_id"), (msh9, s("msa1_ack_code"), r["err_count"].as_u64().unwrap() as usize, s("status")))
        })
        .collect();
    let expected: Vec<(String, (String, String, usize, String))> = expected_hl7
        .into_iter()
        .map(|(k, (msh9, msa, errs, status))| {
            (k, (msh9.split('^').take(2).collect::<Vec<_>>().join("^"), msa, errs, status))
        })
        .collect();
    assert_eq!(hl7, expected);
    let fhir = &x["fhir_request_rows_duckdb"][0];
    assert_eq!(
        (&fhir["resource_type"], &fhir["claims"], &fhir["answer_type"]),
        (&serde_json::json!("Claim"), &serde_json::json!(1), &serde_json::json!("ClaimResponse")),
        "{fhir}"
    );
    assert!(markers.len() > 20, "the fixtures carry PHI to look for");
    assert_eq!(x["phi_hits"], 0, "{x}");

    // A second destination, its exporter killed five times mid-run: it
    // ends with the same rows as the first, none twice, none missing.
    let dir2 = scratch.root.path().join("analytics-2");
    let mut landed = 0;
    for i in 0..5u64 {
        let mut child = scratch
            .command()
            .args(["export", "--to", dir2.to_str().unwrap(), "--data-dir"])
            .arg(scratch.data())
            .args(scratch.backend_args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(25 + 25 * i));
        if child.try_wait().unwrap().is_none() {
            landed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let last = export(&scratch, &dir2);
    let y = crosscheck(&dir2, &markers);
    for (t, n) in first["rows"].as_object().unwrap() {
        assert_eq!(&y["duckdb"][t], n, "{t} after {landed} kills mid-run: {y} {last}");
    }
    assert_eq!(y["claim_distinct_duckdb"], claims, "{y}");
    assert_eq!(y["line_distinct_duckdb"], first["rows"]["claim_line"], "{y}");
    eprintln!("{landed} of 5 kills landed while the exporter ran");
    server.stop();
}

/// The same export on the AWS backend (moto): the change feed in DynamoDB,
/// the files in S3 through the same `object_store` code, the reports read
/// back from S3 by DataFusion.
#[test]
fn the_export_writes_to_s3_and_reports_read_it_back_on_the_aws_backend() {
    let scratch = Scratch::aws();
    let endpoint = std::env::var("CLEARWAY_TEST_AWS_ENDPOINT").unwrap();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[("CLEARWAY__ANALYTICS__EXPORT_EVERY_SECS", "0")]);
    let c = Client { addr: server.http, key };
    let mut claims = 0;
    for i in 0..3 {
        let x12 = gen_837p(2 + i, 40 + i as u64);
        claims += clm(&x12).0;
        let r = c.submit("application/edi-x12", x12.as_bytes(), &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        c.wait_terminal_for(r.json()["transactionId"].as_str().unwrap(), Duration::from_secs(120));
    }
    let bucket = scratch.env_value("CLEARWAY__BACKEND__BUCKET");
    let dest = format!("s3://{bucket}/analytics");
    let with_s3 = |args: &[&str]| {
        let out = scratch
            .command()
            .args(args)
            .args(["--data-dir", scratch.data().to_str().unwrap(), "--backend", "aws"])
            .env("CLEARWAY__ANALYTICS__S3_ENDPOINT", &endpoint)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = with_s3(&["export", "--to", &dest, "--json"]);
    assert_eq!((first["events"].as_u64(), first["rows"]["claim"].as_u64()), (Some(3), Some(claims as u64)), "{first}");
    let again = with_s3(&["export", "--to", &dest, "--json"]);
    assert_eq!(again["events"], 0, "{again}");
    let fp = with_s3(&["report", "first_pass", "--source", &dest, "--format", "json"]);
    let total: u64 = fp.as_array().unwrap().iter().map(|r| r["claims"].as_u64().unwrap()).sum();
    assert_eq!(total, claims as u64, "{fp}");
    let files = scratch.aws_raw_contents();
    let keys: Vec<&String> = files.iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.contains("analytics/v1/claim/received_date=")), "{keys:?}");
    server.stop();
}

/// An 835 from payer `ACMEPAYER`: one claim paid with line adjustments
/// (CO 45 twice, CO 253, PR 1), one denied at claim level (CO 29).
fn adjusted_835() -> String {
    let body = [
        "ST*835*0001",
        "BPR*I*150.00*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20261205",
        "TRN*1*12345678902*1512345678",
        "N1*PR*ACME HEALTH*XV*ACMEPAYER",
        "N3*1 PAYER WAY",
        "N4*SPRINGFIELD*IL*62701",
        "PER*BL*PAYER DESK*TE*5555550199",
        "N1*PE*CLINIC*XX*1000000012",
        "REF*TJ*123456789",
        "LX*1",
        "CLP*ADJ1*1*200.00*150.00*10.00*12*PAYERICNA*11*1",
        "NM1*QC*1*TESTLAST*PATA****MI*MA",
        "SVC*HC:99213*120.00*100.00**1",
        "DTM*472*20261101",
        "CAS*CO*45*10.00",
        "CAS*PR*1*10.00",
        "REF*6R*L1",
        "SVC*HC:85025*80.00*50.00**1",
        "DTM*472*20261101",
        "CAS*CO*45*20.00**253*10.00",
        "CLP*DENY1*4*90.00*0.00**12*PAYERICNB*11*1",
        "CAS*CO*29*90.00",
        "NM1*QC*1*TESTLAST*PATB****MI*MB",
    ];
    let mut all = vec![
        "ISA*00*          *00*          *ZZ*ACMEPAYER      *ZZ*CLEARWAY       *261205*0900*^*00501*000000778*0*T*:"
            .to_string(),
        "GS*HP*ACMEPAYER*CLEARWAY*20261205*0900*778*X*005010X221A1".into(),
    ];
    all.extend(body.iter().map(|s| s.to_string()));
    all.push(format!("SE*{}*0001", body.len() + 1));
    all.push("GE*1*778".into());
    all.push("IEA*1*000000778".into());
    all.iter().map(|s| format!("{s}~\n")).collect()
}

/// An 835 from payer `OTHERPAYER` paying the first claim of `x12` that
/// `pick` accepts (by patient control number and charge) line by line:
/// each line 80 % paid, 10 % deductible (PR 1), the rest contractual
/// (CO 45). Returns it, each line's (paid, deductible) and the claim's
/// (patient control number, charge).
fn paying_835(x12: &str, pick: &dyn Fn(&(String, String)) -> bool) -> Option<Paying> {
    let analysis = clearway_formats::x12::analyze(x12.as_bytes(), &Default::default());
    let claim = analysis.documents().find_map(|d| match d {
        clearway_formats::x12::Document::Claim(c)
            if pick(&(c.patient_control_number.expose().clone(), c.total_charge.to_string())) =>
        {
            Some(c.clone())
        }
        _ => None,
    })?;
    let pcn = claim.patient_control_number.expose().clone();
    let mut lines = Vec::new();
    let mut body = vec![];
    for l in &claim.service_lines {
        let paid = (l.charge * Decimal::new(8, 1)).round_dp(2);
        let deductible = (l.charge * Decimal::new(1, 1)).round_dp(2);
        let co = l.charge - paid - deductible;
        body.push(format!("SVC*HC:{}*{}*{paid}**1", l.procedure_code, l.charge));
        body.push("DTM*472*20261101".to_string());
        body.push(format!("CAS*PR*1*{deductible}"));
        body.push(format!("CAS*CO*45*{co}"));
        lines.push((paid, deductible));
    }
    let total: Decimal = lines.iter().map(|l| l.0).sum();
    let deductible: Decimal = lines.iter().map(|l| l.1).sum();
    let mut set = vec![
        "ST*835*0001".to_string(),
        format!("BPR*I*{total}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20261206"),
        "TRN*1*12345678903*1512345678".into(),
        "N1*PR*OTHER HEALTH*XV*OTHERPAYER".into(),
        "N3*1 PAYER WAY".into(),
        "N4*SPRINGFIELD*IL*62701".into(),
        "PER*BL*PAYER DESK*TE*5555550199".into(),
        "N1*PE*CLINIC*XX*1000000012".into(),
        "REF*TJ*123456789".into(),
        "LX*1".into(),
        format!("CLP*{pcn}*1*{}*{total}*{deductible}*12*PAYERICNP*11*1", claim.total_charge),
        "NM1*QC*1*TESTLAST*PATP****MI*MP".into(),
    ];
    set.extend(body);
    let mut all = vec![
        "ISA*00*          *00*          *ZZ*OTHERPAYER     *ZZ*CLEARWAY       *261206*0900*^*00501*000000779*0*T*:"
            .to_string(),
        "GS*HP*OTHERPAYER*CLEARWAY*20261206*0900*779*X*005010X221A1".into(),
    ];
    let n = set.len() + 1;
    all.extend(set);
    all.push(format!("SE*{n}*0001"));
    all.push("GE*1*779".into());
    all.push("IEA*1*000000779".into());
    Some(Paying {
        x12: all.iter().map(|s| format!("{s}~\n")).collect(),
        lines,
        claim: (pcn, claim.total_charge.to_string()),
    })
}

/// An 835 paying one claim, what it pays each line (paid, deductible) and
/// the claim (patient control number, charge).
struct Paying {
    x12: String,
    lines: Vec<(Decimal, Decimal)>,
    claim: (String, String),
}

/// An interchange with another ISA13 (and IEA02).
fn with_isa13(x12: &str, control: u32) -> String {
    let isa = x12.split('~').next().unwrap();
    let old = isa.split('*').nth(13).unwrap();
    x12.replacen(&format!("*{old}*"), &format!("*{control:09}*"), 1)
        .replace(&format!("IEA*1*{old}"), &format!("IEA*1*{control:09}"))
}
