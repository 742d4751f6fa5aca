//! The payer over SFTP, against a real OpenSSH server: batches arrive in
//! the payer's inbound directory whole (uploaded under a temporary name,
//! then renamed), answers are fetched from its outbound directory and
//! removed only once stored; a server that is down delays batches without
//! losing them and its breaker opens and closes; a kill -9 in the middle
//! of an upload leaves the batch delivered once and whole; a host key
//! that does not match the pinned one is refused and reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_formats::x12::build::{self, ClaimAck, ClaimDecision, Controls, Source};
use clearway_formats::x12::synth::{self, Kind};
use clearway_formats::x12::{AnalyzeOptions, analyze};
use std::path::Path;
use std::time::{Duration, Instant};
use support::sshd::Sshd;
use support::{Client, Scratch, Server};
use time::macros::datetime;

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Synthetic 837Ps whose claims all go to ACME01 (other payers' claims
/// are dropped by renaming them to ACME01).
fn claims_for_acme(count: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    synth::write(&mut v, Kind::Professional837, count, seed).unwrap();
    let mut text = String::from_utf8(v).unwrap();
    for id in ["BEX02", "GMU03", "SMC04"] {
        text = text.replace(&format!("*PI*{id}~"), "*PI*ACME01~");
    }
    text.into_bytes()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

fn traces(x12: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(x12)
        .split('~')
        .filter_map(|s| s.trim().strip_prefix("REF*D9*").map(str::to_string))
        .collect()
}

/// The payer puts an answer in its outbound directory the way payers do:
/// under a hidden name, then renamed.
fn payer_sends(sshd: &Sshd, name: &str, bytes: &[u8]) {
    let tmp = sshd.path("outbound").join(format!(".{name}"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, sshd.path("outbound").join(name)).unwrap();
}

fn payer_277ca(batch: &[u8]) -> Vec<u8> {
    let analysis = analyze(batch, &AnalyzeOptions::default());
    let ic = &analysis.interchanges[0];
    let set = &ic.groups[0].sets[0];
    let claims = build::claims_of(set);
    let acks: Vec<ClaimAck<'_>> = claims
        .iter()
        .zip(traces(batch))
        .map(|(c, t)| ClaimAck { claim: c, decision: ClaimDecision::Accepted, clearinghouse_trace: t })
        .collect();
    build::ack277ca(&build::Ack277Ca {
        interchange: &ic.report.isa,
        group: &ic.groups[0].report.header,
        set: &set.report,
        claims: &acks,
        source: &Source { name: "ACME HEALTH".into(), id: "ACMEPAYER".into() },
        reference: "PAYER0001",
        received: datetime!(2026-12-02 09:00).date(),
        controls: Controls { interchange: 41, group: 41, first_set: 1 },
        at: datetime!(2026-12-02 09:00),
    })
}

fn config(sshd: &Sshd, host_key: Option<&str>) -> String {
    format!(
        "[routing]\nbatch_window_secs = 1\n\n[payers.ACME01]\ndestination = \"sftp\"\nisa_id = \"ACMEPAYER\"\npoll_secs = 1\n\
         failure_threshold = 2\ncooldown_secs = 1\ntimeout_ms = 3000\n\n{}",
        sshd.payer_table("ACME01", host_key)
    )
}

#[test]
fn batches_go_up_and_answers_come_down_over_sftp() {
    let mut sshd = Sshd::start();
    let scratch = Scratch::new();
    scratch.write_config(&config(&sshd, None));
    let key = scratch.partner("acme", false);
    let ops = scratch.partner("ops", true);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let op = Client { addr: server.http, key: ops };

    let r = c.submit("application/edi-x12", &claims_for_acme(3, 7), &[]);
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "accepted");
    let inbound = sshd.path("inbound");
    let first = wait_for("the batch at the payer", 30, || {
        let f = files(&inbound);
        (f.len() == 1 && !f[0].0.ends_with(".part")).then(|| f[0].clone())
    });
    assert_eq!(first.0, "CW_ACME01_000000001.x12");
    assert!(analyze(&first.1, &AnalyzeOptions::default()).accepted());
    assert_eq!(traces(&first.1).len(), 3);

    // The payer answers; the answer is fetched, removed, and forwarded.
    payer_sends(&sshd, "ack-0001.277", &payer_277ca(&first.1));
    wait_for("the answer fetched and removed", 30, || files(&sshd.path("outbound")).is_empty().then_some(()));
    let t = wait_for("payer verdicts", 30, || {
        let t = c.get(&format!("/v1/transactions/{id}")).json();
        t["claims"].as_array().unwrap().iter().all(|c| c["status"] == "payer_accepted").then_some(t)
    });
    assert_eq!(t["claims"][0]["batch"]["interchange"], "000000001", "{t}");
    assert!(c.ack_kinds(&id).iter().filter(|k| *k == "277ca").count() == 2, "ours and the payer's");
    // Later the payer's 999 and an 835 paying the first claim.
    let analysis = analyze(&first.1, &AnalyzeOptions::default());
    let ack999 = build::ack999(
        &analysis.interchanges[0],
        Controls { interchange: 42, group: 42, first_set: 1 },
        datetime!(2026-12-02 09:00),
    )
    .unwrap();
    payer_sends(&sshd, "ack-0001.999", &ack999);
    let text = String::from_utf8_lossy(&first.1).to_string();
    let clm: Vec<&str> = text.split('~').find(|s| s.starts_with("CLM*")).unwrap().split('*').collect();
    let npi = text.split('~').find(|s| s.starts_with("NM1*85*")).unwrap().rsplit('*').next().unwrap().to_string();
    let charge: u32 = clm[2].split('.').next().unwrap().parse().unwrap();
    payer_sends(&sshd, "era-0001.835", &support::payer::remittance(&npi, clm[1], charge, 1));
    let era = wait_for("the 835 forwarded", 30, || {
        let feed = c.get("/v1/acks?wait=0&limit=500").json();
        feed["acks"].as_array().unwrap().iter().find(|a| a["kind"] == "835").cloned()
    });
    assert!(era["id"].as_str().unwrap().contains("-835-payer-"), "{era}");
    // Stored payer files are applied in no set order: the 835 may be
    // forwarded before the 999 is applied.
    wait_for("the payer's 999 on the batch", 30, || {
        let b = op.get("/v1/batches?payer=ACME01").json();
        (b["batches"][0]["ack999"] == "999:A").then_some(())
    });

    // The payer's server goes down: the next batch waits, the breaker
    // opens; back up, the batch arrives, once.
    sshd.stop();
    let r = c.submit("application/edi-x12", &claims_for_acme(2, 8), &[]);
    let id2 = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id2)["status"], "accepted");
    let failed = wait_for("failed deliveries recorded", 30, || {
        let b = op.get("/v1/batches?payer=ACME01").json();
        let b2 = b["batches"].as_array().unwrap().iter().find(|b| b["control"] == 2).cloned()?;
        (b2["attempts"].as_u64().unwrap_or(0) >= 2).then_some(b2)
    });
    assert_eq!(failed["state"], "ready", "{failed}");
    assert!(failed["lastError"].as_str().unwrap().contains("connect"), "{failed}");
    let metrics = support::request(server.http, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("clearway_payer_breaker_open{payer=\"ACME01\"} 1"), "the breaker opened");
    sshd.restart();
    let second = wait_for("the second batch after the server came back", 60, || {
        files(&inbound).into_iter().find(|(n, _)| n == "CW_ACME01_000000002.x12")
    });
    assert_eq!(traces(&second.1).len(), 2);
    wait_for("the breaker closed", 30, || {
        let m = support::request(server.http, "GET", "/metrics", &[], b"").text();
        m.contains("clearway_payer_breaker_open{payer=\"ACME01\"} 0").then_some(())
    });
    assert_eq!(
        files(&inbound).len(),
        2,
        "each batch once: {:?}",
        files(&inbound).iter().map(|f| &f.0).collect::<Vec<_>>()
    );
}

/// A TCP proxy passing client-to-server bytes at about `bytes_per_sec`
/// (a slow link), so an upload takes long enough to be interrupted.
fn slow_proxy(upstream: u16, bytes_per_sec: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / bytes_per_sec as f64));
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// kill -9 while a large batch is uploading over a slow link: after a
/// restart the upload resumes and the batch is delivered whole, once.
#[test]
fn a_kill_during_an_upload_delivers_the_batch_once_and_whole() {
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    // One large batch (4,000 claims, a few MB) over a link of 1 MB/s.
    let proxy = slow_proxy(sshd.port, 1 << 20);
    let cfg = config(&sshd, None)
        .replace("batch_window_secs = 1", "batch_window_secs = 3")
        .replace("timeout_ms = 3000", "timeout_ms = 30000")
        .replace(&format!("port = {}", sshd.port), &format!("port = {proxy}"));
    scratch.write_config(&cfg);
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key: key.clone() };
    let mut ids = Vec::new();
    for seed in 0..4 {
        let r = c.submit("application/edi-x12", &claims_for_acme(1000, 100 + seed), &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push(r.json()["transactionId"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(c.wait_terminal_for(id, Duration::from_secs(120))["status"], "accepted");
    }
    let inbound = sshd.path("inbound");
    // Kill once the temporary file holds part of the batch.
    wait_for("an upload under way", 60, || {
        files(&inbound).iter().any(|(n, b)| n.ends_with(".part") && b.len() > 100_000).then_some(())
    });
    server.kill();
    let server = Server::start(&scratch, None, &[]);
    let all = wait_for("every claim at the payer", 120, || {
        let f = files(&inbound);
        let n: usize = f.iter().filter(|(n, _)| !n.ends_with(".part")).map(|(_, b)| traces(b).len()).sum();
        (n >= 4000).then_some(f)
    });
    let mut seen = std::collections::HashSet::new();
    for (name, bytes) in &all {
        assert!(!name.ends_with(".part"), "no temporary file left: {name}");
        assert!(analyze(bytes, &AnalyzeOptions::default()).accepted(), "{name} is whole and valid");
        for t in traces(bytes) {
            assert!(seen.insert(t.clone()), "{t} delivered twice");
        }
    }
    assert_eq!(seen.len(), 4000);
    let metrics = support::request(server.http, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("clearway_sftp_uploads_resumed_total 1"), "the upload resumed where it stopped");
    drop(server);
}

/// A server presenting another host key is refused, and the refusal is
/// reported; nothing is uploaded.
#[test]
fn a_host_key_that_does_not_match_is_refused() {
    let sshd = Sshd::start();
    let scratch = Scratch::new();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    scratch.write_config(&config(&sshd, Some(other)));
    let key = scratch.partner("acme", false);
    let ops = scratch.partner("ops", true);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let op = Client { addr: server.http, key: ops };
    let r = c.submit("application/edi-x12", &claims_for_acme(1, 9), &[]);
    let id = r.json()["transactionId"].as_str().unwrap().to_string();
    assert_eq!(c.wait_terminal(&id)["status"], "accepted");
    let b = wait_for("a refused delivery", 30, || {
        let b = op.get("/v1/batches?payer=ACME01").json();
        let b = b["batches"].as_array().unwrap().first().cloned()?;
        (b["attempts"].as_u64().unwrap_or(0) >= 1).then_some(b)
    });
    assert!(b["lastError"].as_str().unwrap().contains("host key does not match"), "{b}");
    assert!(files(&sshd.path("inbound")).is_empty(), "nothing uploaded");
    let metrics = support::request(server.http, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("clearway_sftp_host_key_mismatches_total"), "reported in the metrics");
    drop(server);
    assert!(scratch.logs().contains("host key"), "reported in the log");
}
