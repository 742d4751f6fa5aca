//! End to end over real TCP: the `clearway` binary serving, the public
//! corpus submitted over HTTP, dedupe, partner isolation, problem answers,
//! dead letters and replay, graceful shutdown, and no PHI in the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::x12::analyze::{AnalyzeOptions, analyze};
use std::time::{Duration, Instant};
use support::{Client, Lane, Scratch, Server, corpus, hl7_field, manifest, request};

fn gen_837p(count: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, count, seed)
        .unwrap();
    v
}

fn content_type(format: &str) -> &'static str {
    match format {
        "x12" => "application/edi-x12",
        "hl7v2" => "application/hl7-v2",
        "fhir" => "application/fhir+json",
        _ => "application/octet-stream",
    }
}

/// What the pipeline must produce for an X12 file, from the formats crate's
/// own analysis: the ack kinds (TA1 when asked for or when the envelope has
/// findings, a 999 per interchange with groups, a 277CA per accepted 837
/// set) and whether anything in it was accepted.
fn expected_x12(body: &[u8]) -> (Vec<String>, bool) {
    let a = analyze(body, &AnalyzeOptions::default());
    let mut kinds = Vec::new();
    let mut any = false;
    for ic in &a.interchanges {
        if ic.report.isa.ack_requested() || !ic.report.findings.is_empty() {
            kinds.push("ta1".to_string());
        }
        // A 999 for an accepted interchange with a group to acknowledge
        // (acknowledgements themselves are never acknowledged).
        if ic.report.accepted()
            && ic.groups.iter().any(|g| g.report.header.functional_id != "FA" && g.report.header.acknowledgeable())
        {
            kinds.push("999".to_string());
        }
        for g in &ic.groups {
            for s in &g.sets {
                let ok = ic.report.accepted() && s.report.accepted();
                any |= ok;
                if ok && s.report.header.id == "837" {
                    kinds.push("277ca".to_string());
                }
            }
        }
    }
    kinds.sort();
    (kinds, a.totals.fatal.is_none() && any)
}

fn every_corpus_file_reaches_a_terminal_status_with_the_right_acks(scratch: Scratch) {
    let entries: Vec<_> = manifest().into_iter().filter(|e| e["format"] != "ncpdp").collect();
    // One partner per file: corpus files reuse control numbers, which the
    // per-partner dedupe would (rightly) refuse as duplicates.
    let keys: Vec<String> = (0..entries.len()).map(|i| scratch.partner(&format!("corpus{i}"), false)).collect();
    let server = Server::start(&scratch, None, &[]);
    let mut submitted = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let file = e["file"].as_str().unwrap();
        let format = e["format"].as_str().unwrap();
        let body = std::fs::read(corpus().join(file)).unwrap();
        let c = Client { addr: server.http, key: keys[i].clone() };
        let r = c.submit(content_type(format), &body, &[]);
        match r.status {
            202 => {
                assert!(r.header("location").unwrap().starts_with("/v1/transactions/"), "{file}");
                submitted.push((i, file, format, body, r.json()["transactionId"].as_str().unwrap().to_string()));
            }
            400 => {
                // Refused at the door: only input whose envelope is broken.
                let p = r.json();
                assert_eq!(r.header("content-type"), Some("application/problem+json"), "{file}");
                assert_eq!(p["status"], 400, "{file}");
                match format {
                    // Nothing in it would have been accepted.
                    "x12" => assert!(!expected_x12(&body).1, "{file}: {p}"),
                    "hl7v2" => assert!(
                        hl7_field(&body, "MSH", 0).is_none()
                            || e["edge_case"].as_str().unwrap().contains("nested")
                            || e["edge_case"].as_str().unwrap().contains("no MSH"),
                        "{file}: {p}"
                    ),
                    _ => panic!("{file} refused: {p}"),
                }
            }
            422 if format == "fhir" => {
                // A resource Clearway does not process and no route takes
                // (none are configured here): an OperationOutcome at the door.
                let v = r.json();
                assert_eq!(r.header("content-type"), Some("application/fhir+json"), "{file}");
                assert_eq!(v["issue"][0]["code"], "not-supported", "{file}: {v}");
                let kind = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["resourceType"].clone();
                assert!(!["Claim", "CoverageEligibilityRequest", "Bundle"].contains(&kind.as_str().unwrap()), "{file}");
            }
            s => panic!("{file}: unexpected {s}: {}", r.text()),
        }
    }
    assert!(submitted.len() >= 100, "most of the corpus is accepted for processing ({})", submitted.len());
    for (i, file, format, body, id) in &submitted {
        let c = Client { addr: server.http, key: keys[*i].clone() };
        let t = c.wait_terminal(id);
        let status = t["status"].as_str().unwrap();
        assert_ne!(status, "dead_lettered", "{file}: {t}");
        let kinds = c.ack_kinds(id);
        match *format {
            "x12" => {
                let (expected, accepted) = expected_x12(body);
                assert_eq!(kinds, expected, "{file}");
                assert_eq!(status, if accepted { "accepted" } else { "rejected" }, "{file}");
            }
            "hl7v2" => {
                assert!(!kinds.is_empty() && kinds.iter().all(|k| k == "hl7"), "{file}: {kinds:?}");
                let acks = c.get(&format!("/v1/transactions/{id}/acks")).json();
                let mut all_aa = true;
                for a in acks.as_array().unwrap() {
                    let raw = c.get(&format!("/v1/transactions/{id}/acks/{}", a["id"].as_str().unwrap()));
                    assert_eq!(raw.status, 200);
                    assert!(raw.header("content-type").unwrap().starts_with("application/hl7-v2"), "{file}");
                    let code = hl7_field(&raw.body, "MSA", 1).unwrap();
                    assert!(["AA", "AE", "AR"].contains(&code.as_str()), "{file}: {code}");
                    if code != "AA" {
                        all_aa = false;
                        assert!(hl7_field(&raw.body, "ERR", 0).is_some(), "{file}: AE/AR carries ERR");
                    }
                }
                assert_eq!(status == "accepted", all_aa, "{file}");
            }
            "fhir" => {
                assert_eq!(kinds, vec!["fhir".to_string()], "{file}");
                let acks = c.get(&format!("/v1/transactions/{id}/acks")).json();
                let raw = c.get(&format!("/v1/transactions/{id}/acks/{}", acks[0]["id"].as_str().unwrap()));
                let v = raw.json();
                let rt = v["resourceType"].as_str().unwrap();
                assert!(["ClaimResponse", "OperationOutcome", "Bundle"].contains(&rt), "{file}: {rt}");
                if file.contains("/claim-") {
                    assert_eq!(rt, "ClaimResponse", "{file}");
                    assert_eq!(status, "accepted", "{file}");
                }
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(server.stop(), Some(0), "clean exit on SIGTERM");
}

fn ncpdp_and_unknown_media_get_problem_answers(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[("CLEARWAY__SERVER__MAX_BODY_BYTES", "100000")]);
    let c = Client { addr: server.http, key };
    for e in manifest().into_iter().filter(|e| e["format"] == "ncpdp") {
        let body = std::fs::read(corpus().join(e["file"].as_str().unwrap())).unwrap();
        let r = c.submit("application/octet-stream", &body, &[]);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["type"], "https://clearway.dev/problems/invalid-input");
    }
    let r = c.submit("image/png", b"\x89PNG", &[]);
    assert_eq!(r.status, 415);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    // Over the bound, declared or not.
    let big = vec![b'x'; 100_001];
    let r = c.submit("application/edi-x12", &big, &[]);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["maxBytes"], 100_000);
    // A broken ISA: 400 with the TA1.
    let r = c.submit("application/edi-x12", b"ISA*00*bad~GS*HC~", &[]);
    assert_eq!(r.status, 400);
    let bad = gen_837p(1, 9);
    let mut broken = bad.clone();
    broken[50] = b'#'; // inside ISA06: the fixed widths no longer hold
    let r = c.submit("application/edi-x12", &broken[..104], &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    // JSON that is not JSON.
    let r = c.submit("application/fhir+json", b"{\"resourceType\": ", &[]);
    assert_eq!(r.status, 400);
    // Authentication.
    let r = request(server.http, "POST", "/v1/transactions", &[("Content-Type", "application/edi-x12")], &bad);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let wrong = Client { addr: server.http, key: "cw_not_a_key".into() };
    assert_eq!(wrong.submit("application/edi-x12", &bad, &[]).status, 401);
    // Unknown routes are problems too.
    assert_eq!(c.get("/v1/nothing").status, 404);
    assert_eq!(c.get("/v1/transactions/not-an-id").status, 404);
}

fn dedupe_layers_and_partner_isolation(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let other = scratch.partner("globex", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let g = Client { addr: server.http, key: other };

    // Idempotency-Key: replay returns the original answer; another body is 422.
    let a = gen_837p(2, 101);
    let first = c.submit("application/edi-x12", &a, &[("Idempotency-Key", "order-1")]);
    assert_eq!(first.status, 202);
    let again = c.submit("application/edi-x12", &a, &[("Idempotency-Key", "order-1")]);
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    let other_body = gen_837p(2, 102);
    assert_eq!(c.submit("application/edi-x12", &other_body, &[("Idempotency-Key", "order-1")]).status, 422);
    let id = first.json()["transactionId"].as_str().unwrap().to_string();

    // ISA13 again from the same sender/receiver, different content: not
    // processed again; the answer points to the original; the original's
    // acks gain a TA1 with TA105 025.
    let same_isa = gen_837p(3, 101);
    assert_ne!(same_isa, a);
    let dup = c.submit("application/edi-x12", &same_isa, &[]);
    assert_eq!(dup.status, 200, "{}", dup.text());
    let v = dup.json();
    assert_eq!(v["duplicate"], "duplicate-interchange");
    assert_eq!(v["transactionId"], id.as_str());
    assert!(v["ta1"].as_str().unwrap().contains("*R*025~"), "{v}");
    c.wait_terminal(&id);
    let acks = c.get(&format!("/v1/transactions/{id}/acks")).json();
    let ta1 = acks.as_array().unwrap().iter().find(|a| a["kind"] == "ta1").expect("a TA1 on the original");
    let raw = c.get(&format!("/v1/transactions/{id}/acks/{}", ta1["id"].as_str().unwrap()));
    assert!(raw.text().contains("*R*025~"));

    // The other partner may send the same interchange (dedupe is per
    // partner) and cannot see the first partner's transaction.
    assert_eq!(g.submit("application/edi-x12", &a, &[]).status, 202);
    assert_eq!(g.get(&format!("/v1/transactions/{id}")).status, 404);
    assert_eq!(g.get(&format!("/v1/transactions/{id}/acks")).status, 404);
    let feed = g.get("/v1/acks?wait=0").json();
    assert!(feed["acks"].as_array().unwrap().iter().all(|a| a["transactionId"] != id.as_str()));

    // Identical FHIR content: the original id comes back.
    let claim = std::fs::read(corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let f1 = c.submit("application/fhir+json", &claim, &[]);
    assert_eq!(f1.status, 202);
    let f2 = c.submit("application/fhir+json", &claim, &[]);
    assert_eq!(f2.status, 200);
    assert_eq!(f2.json()["duplicate"], "duplicate-content");
    assert_eq!(f2.json()["transactionId"], f1.json()["transactionId"]);

    // MSH-10 again from the same application and facility (a corpus pair
    // that really does this): the original ACK is replayed.
    let m1 = std::fs::read(corpus().join("hl7v2/adt-a01-herophilus-patient1.hl7")).unwrap();
    let m2 = std::fs::read(corpus().join("hl7v2/adt-a01-herophilus-patient1-update-dup-control-id.hl7")).unwrap();
    let h1 = c.submit("application/hl7-v2", &m1, &[]);
    assert_eq!(h1.status, 202);
    let h2 = c.submit("application/hl7-v2", &m2, &[]);
    assert_eq!(h2.status, 200, "{}", h2.text());
    assert_eq!(h2.json()["duplicate"], "duplicate-message");
    assert_eq!(h2.json()["transactionId"], h1.json()["transactionId"]);
}

fn poison_goes_to_dead_letters_and_replay_works(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let op = scratch.partner("ops", true);
    // The corpus FHIR claim (payer "2", its illustrative billing NPI edit
    // off) goes to an HTTP endpoint that is not there yet. A FHIR claim is
    // delivered while it is processed, so a payer that is down fails the
    // transaction (X12 claims go in batches, whose delivery is retried on
    // its own).
    let payer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let payer_addr = payer.local_addr().unwrap();
    drop(payer);
    let url = format!("http://{payer_addr}/claims");
    let env = [
        ("CLEARWAY__WORKERS__MAX_ATTEMPTS", "3"),
        ("CLEARWAY__WORKERS__BACKOFF_BASE_MS", "50"),
        ("CLEARWAY__WORKERS__BACKOFF_MAX_MS", "200"),
    ];
    scratch.write_config(&format!("[edits]\n\"npi.billing\" = \"off\"\n\n[payers.2]\nurl = \"{url}\"\n"));
    let server = Server::start(&scratch, None, &env);
    let c = Client { addr: server.http, key };
    let ops = Client { addr: server.http, key: op };
    let poison = std::fs::read(corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let fine: Vec<Vec<u8>> = (1..6).map(|seed| gen_837p(1, seed)).collect();
    let pid = c.submit("application/fhir+json", &poison, &[]).json()["transactionId"].as_str().unwrap().to_string();
    let fine_ids: Vec<String> = fine
        .iter()
        .map(|b| c.submit("application/edi-x12", b, &[]).json()["transactionId"].as_str().unwrap().to_string())
        .collect();
    // Other traffic keeps flowing.
    for id in &fine_ids {
        assert_eq!(c.wait_terminal(id)["status"], "accepted");
    }
    let t = c.wait_terminal(&pid);
    assert_eq!(t["status"], "dead_lettered", "{t}");
    assert_eq!(t["attempts"], 3);
    // Only an operator key lists dead letters.
    assert_eq!(c.get("/v1/dead-letters").status, 403);
    let list = ops.get("/v1/dead-letters").json();
    let dl = list["deadLetters"].as_array().unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["transactionId"], pid.as_str());
    assert!(dl[0]["reason"].as_str().unwrap().contains("payer"), "{}", dl[0]);
    assert_eq!(dl[0]["payers"], serde_json::json!(["2"]), "the payer its claim names: {}", dl[0]);
    assert_eq!(ops.get("/v1/dead-letters?payer=2").json()["deadLetters"].as_array().unwrap().len(), 1);
    assert!(ops.get("/v1/dead-letters?payer=OTHER").json()["deadLetters"].as_array().unwrap().is_empty());
    assert_eq!(ops.get("/v1/dead-letters?payer=").status, 400, "a blank payer does not select them all");
    // The command line sees it too (the store is shared).
    let out = scratch
        .command()
        .args(["dlq", "list", "--json", "--data-dir"])
        .arg(scratch.data())
        .args(scratch.backend_args())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&pid));
    let dry = ops.post(&format!("/v1/dead-letters/{pid}/replay?dryRun=true"));
    assert_eq!(dry.status, 202);
    assert_eq!(dry.json()["replayed"], false);

    // The payer comes up; replay; the claim is delivered once.
    let payer = std::net::TcpListener::bind(payer_addr).unwrap();
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for s in payer.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read the head and the body (Content-Length).
            loop {
                let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(h) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= h + 4 + len {
                        let key = text
                            .lines()
                            .find_map(|l| {
                                l.to_lowercase().strip_prefix("idempotency-key:").map(|v| v.trim().to_string())
                            })
                            .unwrap_or_default();
                        seen.lock().unwrap().push(key);
                        break;
                    }
                }
            }
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let r = ops.post(&format!("/v1/dead-letters/{pid}/replay"));
    assert_eq!(r.status, 202, "{}", r.text());
    let t = c.wait_terminal(&pid);
    assert_eq!(t["status"], "accepted", "{t}");
    assert_eq!(t["claims"][0]["status"], "routed");
    assert_eq!(t["claims"][0]["destination"], "http:201");
    assert_eq!(*hits.lock().unwrap(), vec![format!("{pid}-1")]);
    assert!(ops.get("/v1/dead-letters").json()["deadLetters"].as_array().unwrap().is_empty());
    // It is no longer a dead letter.
    assert_eq!(ops.post(&format!("/v1/dead-letters/{pid}/replay")).status, 404);
}

fn ack_feed_long_poll_and_health(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    assert_eq!(request(server.http, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(server.http, "GET", "/readyz", &[], b"").status, 200);
    let spec = request(server.http, "GET", "/openapi.json", &[], b"").json();
    for path in ["/v1/transactions", "/v1/transactions/{id}", "/v1/acks", "/v1/dead-letters"] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    // A long poll started before the submission returns its acks.
    let addr = server.http;
    let k = c.key.clone();
    let poll = std::thread::spawn(move || Client { addr, key: k }.get("/v1/acks?wait=20"));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let id =
        c.submit("application/edi-x12", &gen_837p(2, 7), &[]).json()["transactionId"].as_str().unwrap().to_string();
    let got = poll.join().unwrap().json();
    assert!(started.elapsed() < Duration::from_secs(15), "the poll was woken");
    let acks = got["acks"].as_array().unwrap();
    assert!(acks.iter().any(|a| a["transactionId"] == id.as_str()), "{got}");
    // Paging from the cursor returns nothing new.
    let next = got["next"].as_str().unwrap();
    let later = c.get(&format!("/v1/acks?after={next}&wait=0")).json();
    assert!(later["acks"].as_array().unwrap().iter().all(|a| a["transactionId"] != id.as_str()));
    // A method nobody knows is answered and counted as `other`: a client
    // cannot make up label values.
    for _ in 0..2 {
        assert!(request(server.http, "BREW", "/healthz", &[], b"").status >= 400);
    }
    let metrics = request(server.http, "GET", "/metrics", &[], b"").text();
    for name in
        ["clearway_intake_accepted_total", "clearway_http_requests_total", "clearway_transactions_processed_total"]
    {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    // Requests are counted by route template, method and status.
    let count = |labels: &[&str]| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("clearway_http_requests_total{") && labels.iter().all(|x| l.contains(x)))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert!(count(&["route=\"/readyz\"", "method=\"GET\"", "status=\"200\""]) >= 1, "{metrics}");
    assert_eq!(count(&["method=\"other\"", "status=\"405\""]), 2, "{metrics}");
    assert_eq!(count(&["method=\"BREW\""]), 0, "{metrics}");
    assert!(count(&["route=\"/v1/transactions\"", "method=\"POST\"", "status=\"202\""]) >= 1, "{metrics}");
}

fn no_phi_in_logs_or_metrics(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, Some("acme"), &[]);
    let c = Client { addr: server.http, key };
    const MARKER: &str = "ZZPHIMARKERZZ";
    // The marker as a patient name in X12, HL7 and FHIR, valid and invalid.
    let x12 = String::from_utf8(gen_837p(1, 55)).unwrap();
    let last = x12
        .split("NM1*QC*1*")
        .nth(1)
        .or_else(|| x12.split("NM1*IL*1*").nth(1))
        .unwrap()
        .split('*')
        .next()
        .unwrap()
        .to_string();
    let marked = x12.replace(&last, MARKER);
    let broken = marked.replacen("CLM*", &format!("CLM*{MARKER}*x*"), 1);
    let mut ids = Vec::new();
    for body in [marked.as_bytes(), broken.as_bytes()] {
        ids.push(c.submit("application/edi-x12", body, &[]).json()["transactionId"].as_str().unwrap().to_string());
    }
    let hl7 = format!(
        "MSH|^~\\&|APP|FAC|RCV|RFAC|20240101120000||ADT^A01|M1|P|2.5.1\rPID|1||123^^^H^MR||{MARKER}^PAT||1980XX01|Z\r"
    );
    ids.push(c.submit("application/hl7-v2", hl7.as_bytes(), &[]).json()["transactionId"].as_str().unwrap().to_string());
    let fhir = std::fs::read_to_string(corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let fhir = fhir.replacen("\"status\": \"active\"", &format!("\"status\": \"{MARKER}\""), 1);
    ids.push(
        c.submit("application/fhir+json", fhir.as_bytes(), &[]).json()["transactionId"].as_str().unwrap().to_string(),
    );
    // Over MLLP too.
    let mut s = support::connect(server.mllp.unwrap()).unwrap();
    std::io::Write::write_all(&mut s, &support::frame(hl7.replace("M1", "M2").as_bytes())).unwrap();
    support::read_frame(&mut s).unwrap();
    for id in &ids {
        c.wait_terminal(id);
    }
    let metrics = request(server.http, "GET", "/metrics", &[], b"").text();
    drop(server);
    let logs = scratch.logs();
    assert!(logs.contains("transaction_id="), "debug logs were written");
    assert!(!logs.contains(MARKER), "PHI marker found in the logs");
    assert!(!metrics.contains(MARKER), "PHI marker found in the metrics");
    // Not at rest in the store either: payloads and state are encrypted.
    let needle = MARKER.as_bytes();
    let stored: Vec<(String, Vec<u8>)> = match scratch.lane() {
        Lane::Local => ["clearway.db", "clearway.db-wal"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(scratch.data().join(f)).unwrap_or_default()))
            .collect(),
        Lane::Aws => scratch.aws_raw_contents(),
    };
    assert!(stored.iter().any(|(_, b)| !b.is_empty()), "something was stored");
    for (name, bytes) in &stored {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "PHI marker in plaintext in {name}");
    }
}

fn graceful_shutdown_finishes_work_and_restart_resumes(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key: key.clone() };
    let ids: Vec<String> = (0..200)
        .map(|i| {
            let r = c.submit("application/edi-x12", &gen_837p(3, 1000 + i), &[]);
            assert_eq!(r.status, 202);
            r.json()["transactionId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(server.stop(), Some(0));
    // Whatever was not processed before the stop is processed after restart.
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    for id in &ids {
        let t = c.wait_terminal(id);
        assert_eq!(t["status"], "accepted");
        assert_eq!(c.ack_kinds(id), vec!["277ca".to_string(), "999".to_string()]);
    }
}

/// Every test above, on the embedded backend and on the AWS backend (the
/// local AWS-protocol server `scripts/test` starts).
/// Regression: the 277CA of an 837 with a few thousand claims was larger
/// than a state record may be, so the transaction was dead-lettered with
/// "item too large" and its submitter got no acknowledgements. A large
/// acknowledgement now goes to the blob store, sealed, and reads back
/// whole through the API.
fn a_large_837_gets_its_whole_277ca(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let claims = 4000;
    let resp = c.submit("application/edi-x12", &gen_837p(claims, 11), &[]);
    assert_eq!(resp.status, 202, "{}", resp.text());
    let id = resp.json()["transactionId"].as_str().unwrap().to_string();
    // 4,000 claims, each recorded for the duplicate edit: on moto that is
    // 40 transactional writes of 100 items, which it checks one by one.
    let t = c.wait_terminal_for(&id, Duration::from_secs(180));
    assert_eq!(t["status"], "accepted", "{t}");
    let acks = c.get(&format!("/v1/transactions/{id}/acks")).json();
    let ca = acks.as_array().unwrap().iter().find(|a| a["kind"] == "277ca").expect("a 277CA").clone();
    let body = c.get(&format!("/v1/transactions/{id}/acks/{}", ca["id"].as_str().unwrap())).text();
    assert!(body.len() > 64 * 1024, "large enough to leave its record: {} bytes", body.len());
    let analysis = analyze(body.as_bytes(), &AnalyzeOptions::default());
    assert!(analysis.accepted(), "the 277CA is a sound interchange");
    let stc = body.split('~').filter(|s| s.trim_start().starts_with("STC*")).count();
    assert!(stc >= claims, "{stc} STC segments for {claims} claims");
}

crate::on_both_backends!(
    every_corpus_file_reaches_a_terminal_status_with_the_right_acks,
    ncpdp_and_unknown_media_get_problem_answers,
    dedupe_layers_and_partner_isolation,
    poison_goes_to_dead_letters_and_replay_works,
    ack_feed_long_poll_and_health,
    no_phi_in_logs_or_metrics,
    graceful_shutdown_finishes_work_and_restart_resumes,
    a_large_837_gets_its_whole_277ca
);
