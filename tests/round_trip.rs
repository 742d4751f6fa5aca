//! The clearinghouse round trip through the service, with the payer
//! played by this test over the outbox directory (`<outbox>/<payer>/` out,
//! `<outbox>/<payer>/from-payer/` back): claims of two submitters leave in
//! batches that pass our validator, never two claims alike in patient
//! control number, billing provider and charge in one batch (the payer's
//! 277CA must tell them apart even without our REF*D9); the payer's 999 and 277CA come back as a
//! 277CA per submitter with only its own claims; the payer's 835 reaches
//! the submitter its payee is enrolled to and no other; answers that match
//! nothing go to the operator's attention list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::x12::build::{self, ClaimAck, ClaimDecision, Controls, Source, Stc};
use clearway_formats::x12::synth::npi;
use clearway_formats::x12::{AnalyzeOptions, analyze};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server};
use time::macros::datetime;

/// An 837P from `sender` with one billing provider (`npi`) and a claim
/// per (patient control number, charge), each with its own subscriber.
fn submission(sender: &str, isa13: u32, bht03: &str, npi: &str, claims: &[(&str, u32)]) -> Vec<u8> {
    let mut body = vec![
        "ST*837*0001*005010X222A1".to_string(),
        format!("BHT*0019*00*{bht03}*20261201*1200*CH"),
        format!("NM1*41*2*{sender}*****46*{sender}"),
        "PER*IC*DESK*TE*5555550100".into(),
        "NM1*40*2*CLEARWAY*****46*CLEARWAY".into(),
        "HL*1**20*1".into(),
        format!("NM1*85*2*CLINIC {sender}*****XX*{npi}"),
        "N3*1 MAIN ST".into(),
        "N4*SPRINGFIELD*IL*627010001".into(),
        "REF*EI*123456789".into(),
    ];
    for (n, (pcn, charge)) in claims.iter().enumerate() {
        body.extend([
            format!("HL*{}*1*22*0", n + 2),
            "SBR*P*18*******CI".into(),
            format!("NM1*IL*1*TESTLAST*PAT{n}****MI*M{n}"),
            "N3*2 MAIN ST".into(),
            "N4*SPRINGFIELD*IL*62701".into(),
            "DMG*D8*19800101*F".into(),
            "NM1*PR*2*ACME HEALTH*****PI*ACME01".into(),
            format!("CLM*{pcn}*{charge}***11:B:1*Y*A*Y*Y"),
            "HI*ABK:J020".into(),
            "LX*1".into(),
            format!("SV1*HC:99213*{charge}*UN*1***1"),
            "DTP*472*D8*20261130".into(),
        ]);
    }
    let count = body.len() + 1;
    body.push(format!("SE*{count}*0001"));
    let mut all = vec![
        format!(
            "ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*CLEARWAY       *261201*1200*^*00501*{isa13:09}*0*T*:"
        ),
        format!("GS*HC*{sender}*CLEARWAY*20261201*1200*{isa13}*X*005010X222A1"),
    ];
    all.extend(body);
    all.push("GE*1*".to_string() + &isa13.to_string());
    all.push(format!("IEA*1*{isa13:09}"));
    all.iter().map(|s| format!("{s}~\n")).collect::<String>().into_bytes()
}

fn submit(c: &Client, body: &[u8]) -> String {
    let r = c.submit("application/edi-x12", body, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "accepted");
    id
}

/// The payer's batch files (name, bytes).
fn batches(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .map(|(n, p)| (n, std::fs::read(p).unwrap()))
        .collect();
    out.sort();
    out
}

fn segments(x12: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(x12).split('~').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Waits until `f` gives `Some`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The payer's 999 and 277CA for one batch: the claim with patient
/// control number `reject` rejected (A7:562:85), the others accepted. The
/// 277CA echoes each claim's REF*D9, as a payer may.
fn payer_answers(batch: &[u8], reject: &str, control: u32, echo_trace: bool) -> (Vec<u8>, Vec<u8>) {
    let analysis = analyze(batch, &AnalyzeOptions::default());
    let ic = &analysis.interchanges[0];
    let set = &ic.groups[0].sets[0];
    let claims = build::claims_of(set);
    let traces: Vec<String> =
        segments(batch).into_iter().filter_map(|s| s.strip_prefix("REF*D9*").map(str::to_string)).collect();
    assert_eq!(traces.len(), claims.len(), "every claim carries our trace number");
    let acks: Vec<ClaimAck<'_>> = claims
        .iter()
        .zip(&traces)
        .map(|(c, t)| ClaimAck {
            claim: c,
            decision: if c.patient_control_number.expose() == reject {
                ClaimDecision::rejected(Stc::new("A7", "562", Some("85")))
            } else {
                ClaimDecision::Accepted
            },
            clearinghouse_trace: t.clone(),
        })
        .collect();
    let at = datetime!(2026-12-02 09:00);
    let controls = Controls { interchange: control, group: control, first_set: 1 };
    let ack999 = build::ack999(ic, controls, at).unwrap();
    let ack277 = build::ack277ca(&build::Ack277Ca {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        set: &set.report,
        claims: &acks,
        source: &Source { name: "ACME HEALTH".into(), id: "ACMEPAYER".into() },
        reference: "PAYER0001",
        received: at.date(),
        controls: Controls { interchange: control + 1, group: control + 1, first_set: 1 },
        at,
    });
    if echo_trace {
        return (ack999, ack277);
    }
    // A payer that does not return REF*D9 (HIPAA does not require it).
    let text: String =
        String::from_utf8(ack277).unwrap().split_inclusive('~').filter(|s| !s.starts_with("REF*D9*")).collect();
    let count = text
        .split('~')
        .filter(|s| !s.is_empty())
        .skip_while(|s| !s.starts_with("ST*"))
        .take_while(|s| !s.starts_with("SE*"))
        .count()
        + 1;
    let se = text.split('~').find(|s| s.starts_with("SE*")).unwrap().to_string();
    let fixed = text.replace(&se, &format!("SE*{count}*{}", se.rsplit('*').next().unwrap()));
    (ack999, fixed.into_bytes())
}

/// The bodies of a partner's feed acks of `kind` whose id contains `tag`.
fn feed_acks(c: &Client, kind: &str, tag: &str) -> Vec<String> {
    let feed = c.get("/v1/acks?wait=0&limit=500").json();
    feed["acks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["id"].as_str().unwrap_or_default().contains(tag))
        .map(|a| {
            let (t, id) = (a["transactionId"].as_str().unwrap(), a["id"].as_str().unwrap());
            c.get(&format!("/v1/transactions/{t}/acks/{id}")).text()
        })
        .collect()
}

fn outbox(scratch: &Scratch) -> PathBuf {
    scratch.data().join("outbox").join("ACME01")
}

fn claims_go_out_in_batches_and_answers_come_back_per_submitter(scratch: Scratch) {
    let (acme_npi, globex_npi) = (npi(1), npi(2));
    scratch.write_config(&format!(
        "[routing]\nbatch_window_secs = 1\nisa_id = \"CLEARWAYHUB\"\netin = \"CWETIN01\"\ncontact_email = \"edi@example.com\"\n\n\
         [payers.ACME01]\nname = \"ACME HEALTH\"\nisa_id = \"ACMEPAYER\"\nusage = \"T\"\npoll_secs = 1\n\n\
         [partners.acme]\nera_payees = [\"XX:{acme_npi}\"]\n"
    ));
    let acme = scratch.partner("acme", false);
    let globex = scratch.partner("globex", false);
    let server = Server::start(&scratch, None, &[]);
    let a = Client { addr: server.http, key: acme };
    let g = Client { addr: server.http, key: globex };
    // Both submitters use patient control number SHARED; globex's second
    // is alike acme's in billing provider and charge too.
    let ta = submit(&a, &submission("ACME", 11, "ACMEBATCH1", &acme_npi, &[("A1", 100), ("SHARED", 150)]));
    let tg = submit(&g, &submission("GLOBEX", 12, "GLOBEXB1", &globex_npi, &[("G1", 200), ("SHARED", 250)]));
    submit(&g, &submission("GLOBEX", 13, "GLOBEXB2", &acme_npi, &[("SHARED", 150)]));
    let t = a.get(&format!("/v1/transactions/{ta}")).json();
    assert!(t["claims"].as_array().unwrap().iter().all(|c| c["destination"] == "batch:ACME01"), "{t}");

    // Batches: every claim once, and claims alike in number, provider and
    // charge never together.
    let dir = outbox(&scratch);
    let files = wait_for("five claims in batches", || {
        let files = batches(&dir);
        let n: usize = files.iter().map(|(_, b)| segments(b).iter().filter(|s| s.starts_with("REF*D9*")).count()).sum();
        (n == 5).then_some(files)
    });
    let alike = files.iter().filter(|(_, b)| String::from_utf8_lossy(b).contains("CLM*SHARED*150*")).count();
    assert_eq!(alike, 2, "claims alike in number, provider and charge never share a batch");
    for (name, bytes) in &files {
        assert!(name.starts_with("CW_ACME01_") && name.ends_with(".x12"), "{name}");
        assert!(analyze(bytes, &AnalyzeOptions::default()).accepted(), "{name} passes our validator");
        let segs = segments(bytes);
        assert!(segs[0].contains("*ZZ*CLEARWAYHUB    *ZZ*ACMEPAYER      *"), "{}", segs[0]);
        assert!(segs[0].ends_with("*1*T*:"), "TA1 asked for, test usage: {}", segs[0]);
        assert!(segs.iter().any(|s| s == "NM1*41*2*CLEARWAY*****46*CWETIN01"), "{segs:?}");
        assert!(segs.iter().any(|s| s == "PER*IC*EDI SUPPORT*EM*edi@example.com"), "{segs:?}");
        assert!(segs.iter().any(|s| s == "NM1*40*2*ACME HEALTH*****46*ACMEPAYER"), "{segs:?}");
    }
    // Routed, with the batch recorded per claim.
    let t = wait_for("claims routed", || {
        let t = a.get(&format!("/v1/transactions/{ta}")).json();
        t["claims"].as_array().unwrap().iter().all(|c| c["status"] == "routed").then_some(t)
    });
    assert!(t["claims"][0]["batch"]["id"].as_str().unwrap().starts_with("ACME01/"), "{t}");
    assert_eq!(t["claims"][0]["batch"]["set"], "0001");

    // The payer answers each batch: G1 is rejected.
    let back = dir.join("from-payer");
    std::fs::create_dir_all(&back).unwrap();
    for (n, (name, bytes)) in files.iter().enumerate() {
        // The first answer comes without our REF*D9.
        let (ack999, ack277) = payer_answers(bytes, "G1", 500 + 10 * n as u32, n > 0);
        std::fs::write(back.join(format!("{name}.999")), ack999).unwrap();
        std::fs::write(back.join(format!("{name}.277")), ack277).unwrap();
    }
    // Each submitter gets the payer's verdicts on its own claims only.
    let mine = wait_for("acme's payer 277CAs", || {
        let v = feed_acks(&a, "277ca", "-277ca-payer-");
        (v.len() == files.iter().filter(|(_, b)| String::from_utf8_lossy(b).contains("NM1*85*2*CLINIC ACME")).count())
            .then_some(v)
    });
    let all_mine = mine.concat();
    assert!(all_mine.contains("TRN*2*ACMEBATCH1~"), "2200B names acme's own BHT03: {all_mine}");
    assert!(all_mine.contains("TRN*2*A1~") && all_mine.contains("TRN*2*SHARED~"), "{all_mine}");
    assert!(!all_mine.contains("TRN*2*G1~"), "no other submitter's claims: {all_mine}");
    assert!(!all_mine.contains("GLOBEX"), "{all_mine}");
    for body in &mine {
        assert!(analyze(body.as_bytes(), &AnalyzeOptions::default()).accepted(), "a valid 277CA: {body}");
        assert!(body.contains("*ZZ*ACME           *"), "addressed to acme: {body}");
    }
    let theirs = wait_for("globex's payer 277CA", || {
        let v = feed_acks(&g, "277ca", "-277ca-payer-");
        (!v.is_empty()).then_some(v.concat())
    });
    assert!(theirs.contains("STC*A7:562:85"), "{theirs}");
    assert!(!theirs.contains("TRN*2*A1~"), "{theirs}");
    // The verdicts are the claims' status.
    let t = wait_for("globex's verdicts", || {
        let t = g.get(&format!("/v1/transactions/{tg}")).json();
        t["claims"].as_array().unwrap().iter().all(|c| c["status"].as_str().unwrap().starts_with("payer_")).then_some(t)
    });
    let g1 = t["claims"].as_array().unwrap().iter().find(|c| c["patientControlNumber"] == "G1").unwrap();
    assert_eq!(g1["status"], "payer_rejected", "{t}");
    assert_eq!(g1["statusCode"], "A7:562:85", "{t}");
    let t = a.get(&format!("/v1/transactions/{ta}")).json();
    assert!(t["claims"].as_array().unwrap().iter().all(|c| c["status"] == "payer_accepted"), "{t}");

    // The 835 pays acme's A1: acme (enrolled for its NPI) gets it, globex
    // does not.
    std::fs::write(back.join("era-1.835"), support::payer::remittance(&acme_npi, "A1", 100, 80)).unwrap();
    let era = wait_for("acme's 835", || feed_acks(&a, "835", "-835-payer-").pop());
    assert!(era.contains("CLP*A1*1*100*80"), "{era}");
    assert!(analyze(era.as_bytes(), &AnalyzeOptions::default()).accepted(), "a valid 835: {era}");
    assert!(feed_acks(&g, "835", "").is_empty(), "globex gets no ERA");
    // And claim status says so: finalized, paid (F1:65).
    let inquiry = std::process::Command::new(support::BIN)
        .args(["gen", "276", "--count", "1", "--seed", "3"])
        .output()
        .unwrap()
        .stdout;
    let inquiry = String::from_utf8(inquiry).unwrap().replace("REF*EJ*PCN00000001~", "REF*EJ*A1~");
    let auth = format!("Bearer {}", a.key);
    let status = support::request(
        server.http,
        "POST",
        "/v1/claim-status",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/edi-x12")],
        inquiry.as_bytes(),
    );
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(status.text().contains("STC*F1:65"), "the payer's payment reaches claim status: {}", status.text());

    // The analytics export has the batches, the payer's verdicts per claim
    // and its 835.
    let analytics = scratch.root.path().join("analytics-rt");
    let exported = scratch.run_ok(&["export", "--to", analytics.to_str().unwrap(), "--json"]);
    let exported: serde_json::Value = serde_json::from_str(exported.trim()).unwrap();
    assert_eq!(exported["rows"]["payer_batch"], 2 * files.len(), "delivered and answered (999): {exported}");
    assert_eq!(exported["rows"]["remit_claim"], 1, "{exported}");
    assert_eq!(exported["rows"]["claim_route"], 5, "{exported}");
    let source = analytics.to_str().unwrap();
    let out = scratch.run_ok(&["report", "claim_turnaround", "--source", source, "--format", "json"]);
    let turnaround: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let stage = |s: &str| turnaround.as_array().unwrap().iter().find(|r| r["stage"] == s).cloned();
    let payer = stage("payer").expect("payer rows");
    assert_eq!(payer["claims"], 5, "every claim the payer answered: {turnaround}");
    assert!(payer["p50_ms"].as_f64().unwrap() > 0.0, "{turnaround}");
    let routed = stage("routed").unwrap_or_else(|| panic!("routed rows: {turnaround}"));
    assert_eq!(routed["claims"], 5, "every claim delivered: {turnaround}");
    assert!(routed["p50_ms"].as_f64().unwrap() <= payer["p50_ms"].as_f64().unwrap(), "{turnaround}");
    let out = scratch.run_ok(&["report", "reconciliation", "--source", source, "--format", "json"]);
    let rec: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let paid: f64 =
        rec.as_array().unwrap().iter().map(|r| r["paid"].to_string().trim_matches('"').parse::<f64>().unwrap()).sum();
    assert_eq!(paid, 80.0, "the payer's 835 reconciles acme's A1: {rec}");

    // An unsolicited 277 (naming no batch of ours in 2200B): its claims
    // are found through the claim index and forwarded again.
    let stray = String::from_utf8(files[0].1.clone()).unwrap();
    let (_, ack277) = payer_answers(stray.as_bytes(), "", 900, true);
    let ack277 = String::from_utf8(ack277).unwrap();
    let our_bht = segments(stray.as_bytes()).into_iter().find(|s| s.starts_with("BHT*")).unwrap();
    let ref_ = our_bht.split('*').nth(3).unwrap().to_string();
    let unsolicited = ack277.replace(&format!("TRN*2*{ref_}~"), "TRN*2*999999998~");
    let before = feed_acks(&a, "277ca", "-277ca-payer-").len() + feed_acks(&g, "277ca", "-277ca-payer-").len();
    std::fs::write(back.join("unsolicited.277"), &unsolicited).unwrap();
    wait_for("the unsolicited 277 forwarded", || {
        let now = feed_acks(&a, "277ca", "-277ca-payer-").len() + feed_acks(&g, "277ca", "-277ca-payer-").len();
        (now > before).then_some(())
    });
    // One whose claims are not ours: the operator's attention list.
    let mut foreign = unsolicited.clone();
    for (pcn, other) in [("A1", "NOPE1"), ("SHARED", "NOPE2"), ("G1", "NOPE3")] {
        foreign = foreign.replace(&format!("TRN*2*{pcn}~"), &format!("TRN*2*{other}~"));
    }
    let foreign: String = foreign.split_inclusive('~').filter(|s| !s.starts_with("REF*D9*")).collect();
    std::fs::write(back.join("foreign.277"), &foreign).unwrap();
    let op = Client { addr: server.http, key: scratch.partner("ops", true) };
    let attention = wait_for("attention", || {
        let r = op.get("/v1/payer-files/attention");
        (r.status == 200 && !r.json()["items"].as_array().unwrap().is_empty()).then(|| r.json())
    });
    assert!(attention.to_string().contains("names no batch of ours"), "{attention}");
    assert!(!attention.to_string().contains("NOPE"), "no claim data in reasons: {attention}");
    assert_eq!(a.get("/v1/payer-files/attention").status, 403, "operators only");

    // A payer file with errors: its 999 goes back to the payer, rejecting
    // the set, and the operator hears of it.
    let (_, good) = payer_answers(&files[0].1, "", 950, true);
    let good = String::from_utf8(good).unwrap();
    let se = good.split('~').find(|s| s.starts_with("SE*")).unwrap().to_string();
    std::fs::write(back.join("broken.277"), good.replace(&se, &se.replacen("SE*", "SE*9", 1))).unwrap();
    let ack = wait_for("a 999 for the payer", || {
        batches(&dir).into_iter().find(|(n, _)| n.starts_with("CW_ACK_") && n.contains("_999_"))
    });
    assert!(analyze(&ack.1, &AnalyzeOptions::default()).accepted(), "a valid 999");
    let text = String::from_utf8_lossy(&ack.1).to_string();
    assert!(text.contains("IK5*R") && text.contains("AK9*R"), "{text}");
    assert!(text.contains("*ZZ*ACMEPAYER      *"), "addressed to the payer: {text}");
    wait_for("the operator told", || {
        let v = op.get("/v1/payer-files/attention").json().to_string();
        v.contains("a 999 goes back to the payer").then_some(())
    });

    // An 835 longer than the chunk it is read in (1,000 claims): acme's
    // SHARED is paid by its 1,500th claim, and claim status says so. It is
    // the second payment of its file (the first pays no claim of ours),
    // read again from where it starts.
    let inquiry = inquiry.replace("REF*EJ*A1~", "REF*EJ*SHARED~");
    let ask = || {
        support::request(
            server.http,
            "POST",
            "/v1/claim-status",
            &[("Authorization", auth.as_str()), ("Content-Type", "application/edi-x12")],
            inquiry.as_bytes(),
        )
        .text()
    };
    assert!(!ask().contains("STC*F1:65"), "not paid yet");
    let mut claims: Vec<(String, String, String)> =
        (1..1500).map(|n| (format!("OTHER{n}"), "10".to_string(), "1".to_string())).collect();
    claims.push(("SHARED".into(), "150".into(), "120".into()));
    let first: Vec<(String, String, String)> =
        (1..50).map(|n| (format!("ELSE{n}"), "10".to_string(), "1".to_string())).collect();
    std::fs::write(back.join("era-2.835"), support::payer::remittance_sets(&acme_npi, &[&first, &claims])).unwrap();
    wait_for("the long 835's last payment in claim status", || ask().contains("STC*F1:65").then_some(()));
}

crate::on_both_backends!(claims_go_out_in_batches_and_answers_come_back_per_submitter);

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .output()
        .expect("gpg (Debian's gnupg)");
    assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A payer that wants `.pgp` files gets its batches encrypted to its
/// OpenPGP key (made and read back here by GnuPG); a key file that cannot
/// be used stops `serve` with the reason.
#[test]
fn batches_are_encrypted_to_the_payers_openpgp_key() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(home.path(), &["--quick-gen-key", "ACME Payer <edi@acme.example>", "default", "default", "never"]);
    let public = home.path().join("acme.asc");
    std::fs::write(&public, gpg(home.path(), &["--armor", "--export", "edi@acme.example"]).stdout).unwrap();

    let scratch = Scratch::new();
    scratch.write_config(&format!(
        "[routing]\nbatch_window_secs = 1\n\n[payers.ACME01]\npgp_public_key_file = \"{}\"\n",
        public.display()
    ));
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    submit(&c, &submission("ACME", 21, "ACMEPGP1", &npi(3), &[("P1", 100), ("P2", 200)]));
    let (name, encrypted) = wait_for("an encrypted batch", || batches(&outbox(&scratch)).into_iter().next());
    assert!(name.ends_with(".x12.pgp"), "{name}");
    assert!(!String::from_utf8_lossy(&encrypted).contains("CLM*"), "no claim in clear");
    let file = home.path().join("batch.pgp");
    std::fs::write(&file, &encrypted).unwrap();
    let clear = gpg(home.path(), &["--decrypt", file.to_str().unwrap()]).stdout;
    assert!(analyze(&clear, &AnalyzeOptions::default()).accepted(), "{}", String::from_utf8_lossy(&clear));
    assert!(String::from_utf8_lossy(&clear).contains("CLM*P1*100*"));
    drop(server);

    // A key file that is not a key: serve refuses to start, saying why.
    std::fs::write(&public, "not a key").unwrap();
    let out = scratch
        .command()
        .args(["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.data())
        .arg("--config")
        .arg(scratch.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("payers.ACME01.pgp_public_key_file"), "{err}");
}

/// A payer on HTTPS: batches are POSTed with the batch id as
/// `Idempotency-Key` (a `409` means the payer has it already), and the
/// payer POSTs its answers to `/v1/payer-files` with its own key; any other
/// key is refused.
#[test]
fn a_payer_on_https_gets_batches_by_post_and_posts_its_answers() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    // The payer's endpoint: records each POST (headers and body); the
    // second time a key is seen it answers 409.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x12", listener.local_addr().unwrap());
    // (idempotency key, content type, body) of each POST.
    type Posts = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;
    let got: Posts = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            let (head, body) = loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                let Some(h) = text.find("\r\n\r\n") else { continue };
                let len: usize = text
                    .lines()
                    .find_map(|l| l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                if raw.len() >= h + 4 + len {
                    break (text[..h].to_lowercase(), raw[h + 4..h + 4 + len].to_vec());
                }
            };
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()))
                    .unwrap_or_default()
            };
            let (key, ctype) = (header("idempotency-key"), header("content-type"));
            let mut all = seen.lock().unwrap();
            let again = all.iter().any(|(k, _, _)| *k == key);
            all.push((key, ctype, body));
            let status = if again { "409 Conflict" } else { "201 Created" };
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    let scratch = Scratch::new();
    scratch.write_config(&format!(
        "[routing]\nbatch_window_secs = 1\n\n[payers.ACME01]\ndestination = \"http\"\nurl = \"{url}\"\nisa_id = \"ACMEPAYER\"\npartner = \"acmepayer\"\n"
    ));
    let acme = scratch.partner("acme", false);
    let payer_key = scratch.partner("acmepayer", false);
    let server = Server::start(&scratch, None, &[]);
    let a = Client { addr: server.http, key: acme.clone() };
    let p = Client { addr: server.http, key: payer_key };
    let ta = submit(&a, &submission("ACME", 31, "ACMEHTTP1", &npi(4), &[("H1", 100), ("H2", 200)]));
    let (key, ctype, batch) = wait_for("the batch POSTed", || got.lock().unwrap().first().cloned());
    assert_eq!(key, "acme01-000000001", "the batch id (headers lowercased here)");
    assert_eq!(ctype, "application/edi-x12");
    assert!(analyze(&batch, &AnalyzeOptions::default()).accepted());
    wait_for("routed", || {
        let t = a.get(&format!("/v1/transactions/{ta}")).json();
        t["claims"].as_array().unwrap().iter().all(|c| c["status"] == "routed").then_some(())
    });
    // The payer answers by POST; the submitter gets its 277CA.
    let (_, ack277) = payer_answers(&batch, "H2", 600, true);
    let post = |c: &Client, body: &[u8]| {
        let auth = format!("Bearer {}", c.key);
        support::request(
            c.addr,
            "POST",
            "/v1/payer-files",
            &[("Authorization", auth.as_str()), ("Content-Type", "application/edi-x12"), ("X-File-Name", "ack.277")],
            body,
        )
    };
    assert_eq!(post(&a, &ack277).status, 403, "a submitter cannot post payer files");
    let r = post(&p, &ack277);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(post(&p, b"<html>").status, 202, "stored first, judged when applied (it becomes an attention item)");
    let fwd = wait_for("acme's payer 277CA", || feed_acks(&a, "277ca", "-277ca-payer-").pop());
    assert!(fwd.contains("TRN*2*ACMEBATCH1~") || fwd.contains("TRN*2*ACMEHTTP1~"), "{fwd}");
    assert!(fwd.contains("STC*A7:562:85"), "{fwd}");
    let t = a.get(&format!("/v1/transactions/{ta}")).json();
    let h2 = t["claims"].as_array().unwrap().iter().find(|c| c["patientControlNumber"] == "H2").unwrap().clone();
    assert_eq!(h2["status"], "payer_rejected", "{t}");
}

/// kill -9 while a payer's 277CA is being applied: after a restart it is
/// applied to the end, once — every claim has its verdict and each
/// submitter transaction has exactly one payer 277CA in its feed.
#[test]
fn a_kill_while_a_payer_answer_is_applied_applies_it_once() {
    let scratch = Scratch::new();
    scratch.write_config("[routing]\nbatch_window_secs = 2\n\n[payers.ACME01]\npoll_secs = 1\n");
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key: key.clone() };
    let mut txns = Vec::new();
    for n in 0..5u32 {
        let claims: Vec<(String, u32)> = (0..400).map(|i| (format!("K{n}X{i}"), 100 + i)).collect();
        let refs: Vec<(&str, u32)> = claims.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        txns.push(submit(&c, &submission("ACME", 40 + n, &format!("KILL{n}"), &npi(5), &refs)));
    }
    let dir = outbox(&scratch);
    let files = wait_for("2,000 claims in batches", || {
        let files = batches(&dir);
        let n: usize = files.iter().map(|(_, b)| segments(b).iter().filter(|s| s.starts_with("REF*D9*")).count()).sum();
        (n == 2000).then_some(files)
    });
    // Everything before the payer's answer, exported.
    let analytics = scratch.root.path().join("analytics-kill");
    let export = || -> serde_json::Value {
        let out = scratch.run_ok(&["export", "--to", analytics.to_str().unwrap(), "--json"]);
        serde_json::from_str(out.trim()).unwrap()
    };
    export();
    let back = dir.join("from-payer");
    std::fs::create_dir_all(&back).unwrap();
    let mut answer = Vec::new();
    for (n, (_, bytes)) in files.iter().enumerate() {
        answer.extend(payer_answers(bytes, "", 700 + n as u32 * 10, true).1);
    }
    std::fs::write(back.join(".answer.277"), &answer).unwrap();
    std::fs::rename(back.join(".answer.277"), back.join("answer.277")).unwrap();
    // Taken (stored): kill at once, while it is being applied or before
    // (a fixed delay after the file was taken sometimes landed after the
    // whole apply, which proved nothing about a kill mid-way).
    wait_for("the answer taken", || (!back.join("answer.277").exists()).then_some(()));
    server.kill();
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    for t in &txns {
        wait_for("every verdict", || {
            let r = c.get(&format!("/v1/transactions/{t}")).json();
            r["claims"].as_array().unwrap().iter().all(|c| c["status"] == "payer_accepted").then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = support::request(server.http, "GET", "/metrics", &[], b"").text();
    let reapplied = metrics.lines().any(|l| l.starts_with("clearway_payer_files_total{outcome=\"applied\"}"));
    assert!(reapplied, "the kill came before the answer was wholly applied: the restarted service finished it");
    // The analytics export after it: exactly one claim_ack row per claim
    // (the payer's one STC each), though the answer was applied again.
    let after = export();
    assert_eq!(after["rows"]["claim_ack"], 2000, "{after}");
    let feed = c.get("/v1/acks?wait=0&limit=1000").json();
    for t in &txns {
        let n = feed["acks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["transactionId"] == t.as_str() && a["id"].as_str().unwrap().contains("-277ca-payer-"))
            .count();
        assert!(n >= 1, "{t}: the payer's 277CA reached the feed");
        // One per payer 277CA set that named its claims, never a second
        // copy of one.
        let ids: std::collections::HashSet<&str> = feed["acks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["transactionId"] == t.as_str())
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            feed["acks"].as_array().unwrap().iter().filter(|a| a["transactionId"] == t.as_str()).count(),
            "no feed entry twice"
        );
    }
}

/// A payer file over the size bound (a sparse file: nothing is written)
/// is left where the payer put it and reported once; the payer's next
/// file is still read.
#[test]
fn a_payer_file_over_the_bound_is_left_and_reported_once() {
    let scratch = Scratch::new();
    scratch.write_config("[payers.ACME01]\nname = \"ACME HEALTH\"\npoll_secs = 1\n");
    let server = Server::start(&scratch, None, &[]);
    let back = outbox(&scratch).join("from-payer");
    std::fs::create_dir_all(&back).unwrap();
    let huge = back.join("a-huge.835");
    std::fs::File::create(&huge).unwrap().set_len(600 << 20).unwrap();
    std::fs::write(back.join("b-next.txt"), b"not X12 at all").unwrap();
    let op = Client { addr: server.http, key: scratch.partner("ops", true) };
    let items = || op.get("/v1/payer-files/attention").json()["items"].as_array().unwrap().clone();
    wait_for("both on the attention list", || {
        let items = items();
        let text = serde_json::Value::Array(items).to_string();
        (text.contains("a-huge.835 is over the") && text.contains("unreadable")).then_some(())
    });
    // Later polls neither read it nor report it again.
    std::thread::sleep(Duration::from_secs(3));
    let oversize = items().iter().filter(|i| i["reason"].as_str().unwrap_or_default().contains("over the")).count();
    assert_eq!(oversize, 1, "{:?}", items());
    assert!(huge.exists(), "left where the payer put it");
    assert!(!back.join("b-next.txt").exists(), "the next file was taken");
}
