//! Operator commands and process roles over real processes: the master key
//! file, `partners list|revoke`, `dlq show|replay` from the command line,
//! and intake and workers split into two processes on one store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::{Client, Scratch, Server};

fn clearway(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    scratch.run(args)
}

fn gen_837p(seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, 1, seed).unwrap();
    v
}

#[test]
fn root_key_is_owner_only_and_partners_are_listed_and_revoked() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let root = scratch.security().root_key_file;
    assert!(!root.starts_with(scratch.data()), "the root key is kept outside the data directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the root key is readable by its owner only");
    }
    assert!(!scratch.data().join("master.key").exists());
    let out = clearway(&scratch, &["partners", "list", "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().iter().any(|p| p["id"] == "acme"), "{list}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key), "keys are never listed");

    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    assert_eq!(c.get("/v1/acks").status, 200);
    assert!(clearway(&scratch, &["partners", "revoke", "--id", "acme"]).status.success());
    // A revocation takes effect within the partner cache's few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get("/v1/acks").status != 401 {
        assert!(Instant::now() < deadline, "the revoked key still works");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dead_letters_are_shown_and_replayed_from_the_command_line() {
    dead_letters_from_the_command_line(Scratch::new());
}

/// On AWS the replayed pointer must leave with the command: the service's
/// sweeper is set not to look for 10 minutes (regression: the command used
/// to exit with the pointer still in the outbox sender).
#[test]
fn dead_letters_are_shown_and_replayed_from_the_command_line_on_aws() {
    dead_letters_from_the_command_line(Scratch::aws());
}

/// Routes the corpus FHIR claim (payer "2"; its illustrative billing NPI
/// edit turned off) to `url`. A FHIR claim is delivered while it is
/// processed, so a payer that is down fails the transaction (X12 claims
/// go in batches, whose delivery is retried on its own).
fn fhir_claim_to(scratch: &Scratch, url: &str) {
    scratch.write_config(&format!("[edits]\n\"npi.billing\" = \"off\"\n\n[payers.2]\nurl = \"{url}\"\n"));
}

fn dead_letters_from_the_command_line(scratch: Scratch) {
    let key = scratch.partner("acme", false);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/claims", l.local_addr().unwrap());
        drop(l);
        url
    };
    let env = [
        // The corpus FHIR claim: see `fhir_claim_to`.
        ("CLEARWAY__WORKERS__MAX_ATTEMPTS", "1"),
        ("CLEARWAY__BACKEND__OUTBOX_SWEEP_AFTER_SECS", "600"),
    ];
    fhir_claim_to(&scratch, &closed);
    let server = Server::start(&scratch, None, &env);
    let c = Client { addr: server.http, key };
    let body = std::fs::read(support::corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let id = c.submit("application/fhir+json", &body, &[]).json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "dead_lettered");

    let show = clearway(&scratch, &["dlq", "show", &id]);
    assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["transactionId"], id.as_str());
    assert!(shown["reason"].as_str().unwrap().contains("payer"), "{shown}");
    assert_eq!(shown["payers"], serde_json::json!(["2"]), "{shown}");
    let by_payer = |payer: &str| {
        let out = clearway(&scratch, &["dlq", "list", "--json", "--payer", payer]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().len()
    };
    assert_eq!((by_payer("2"), by_payer("OTHER")), (1, 0), "listed by the payer its claim names");
    assert!(
        String::from_utf8_lossy(&clearway(&scratch, &["dlq", "replay", "--payer", "OTHER"]).stdout).is_empty(),
        "another payer's filter replays nothing"
    );
    let blank = clearway(&scratch, &["dlq", "replay", "--payer", " "]);
    assert!(!blank.status.success() && blank.stdout.is_empty(), "a blank payer (an unset variable) replays nothing");
    let other = "01a23360-af3e-7003-a3e5-a411114b8974";
    assert_eq!(clearway(&scratch, &["dlq", "show", other]).status.code(), Some(1), "not dead-lettered: exit 1");

    let dry = clearway(&scratch, &["dlq", "replay", &id, "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would replay"), "{}", String::from_utf8_lossy(&dry.stdout));
    assert_eq!(c.wait_terminal(&id)["status"], "dead_lettered", "a dry run changes nothing");
    let replay = clearway(&scratch, &["dlq", "replay", "--partner", "acme"]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert!(String::from_utf8_lossy(&replay.stdout).contains(&format!("{id}\tacme\treplayed")));
    // The running service picks the replayed transaction up; the payer is
    // still down, so it is dead-lettered again: a new dead letter.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let again = clearway(&scratch, &["dlq", "show", &id]);
        if again.status.success() {
            let d: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
            if d["deadLetteredAt"] != shown["deadLetteredAt"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the replay was not processed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn intake_and_workers_run_as_separate_processes() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let intake = Server::start_with(&scratch, None, &[], &["--role", "intake"]);
    let c = Client { addr: intake.http, key };
    let id = c.submit("application/edi-x12", &gen_837p(3), &[]).json()["transactionId"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.get(&format!("/v1/transactions/{id}")).json()["status"],
        "received",
        "no worker in the intake process"
    );
    let worker = Server::start_with(&scratch, None, &[], &["--role", "worker"]);
    assert_eq!(support::request(worker.http, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(support::request(worker.http, "GET", "/v1/acks", &[], b"").status, 404, "a worker serves no intake API");
    let t = c.wait_terminal(&id);
    assert_eq!(t["status"], "accepted", "{t}");
    assert_eq!(c.ack_kinds(&id), vec!["277ca".to_string(), "999".to_string()]);
    // A `serve` of every role next to them is refused: it would write feed
    // entries that the intake's feed readers cannot see coming.
    let out = scratch.run(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("another `clearway serve` is using the data directory"), "{err}");
    drop((intake, worker));
    // Once they are gone, it starts.
    let all = Server::start(&scratch, None, &[]);
    assert_eq!(support::request(all.http, "GET", "/healthz", &[], b"").status, 200);
}

/// A transaction that takes longer than its lease keeps it: the lease is
/// extended while the worker waits on a slow payer, so no second worker
/// receives the message and the payer gets the claim once.
#[test]
fn long_work_keeps_its_lease() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let payer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/claims", payer.local_addr().unwrap());
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for s in payer.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some(h) = text.find("\r\n\r\n") else { continue };
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= h + 4 + len {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                // Three leases' worth of waiting.
                std::thread::sleep(Duration::from_millis(3500));
                let _ = s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            });
        }
    });
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let env = [("CLEARWAY__WORKERS__LEASE_SECS", "1")];
    fhir_claim_to(&scratch, &url);
    let server = Server::start(&scratch, None, &env);
    let c = Client { addr: server.http, key };
    let body = std::fs::read(support::corpus().join("fhir/claim-r4-professional.json")).unwrap();
    let id = c.submit("application/fhir+json", &body, &[]).json()["transactionId"].as_str().unwrap().to_string();
    let t = c.wait_terminal(&id);
    assert_eq!(t["status"], "accepted", "{t}");
    assert_eq!(t["attempts"], 1, "delivered once: {t}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the payer got the claim once");
}
