//! Faults on the AWS backend: the AWS endpoint stops, then throttles, in
//! the middle of work, then comes back. Intake answers `503` with
//! `Retry-After` while it cannot make a submission durable (never a `202`
//! it cannot honour, never a hang or a 500); work already accepted is
//! finished after recovery, by itself, once each, without dead letters;
//! clients retrying with their Idempotency-Key end with one transaction
//! each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_core::ports::Table;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::faults::{FaultProxy, Mode};
use support::{Client, Scratch, Server};

fn body(seq: u64) -> Vec<u8> {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, 1, 50_000 + seq)
        .unwrap();
    v
}

#[test]
fn endpoint_down_or_throttling_gets_503_retry_after_and_everything_recovers() {
    let scratch = Scratch::aws();
    let key = scratch.partner("acme", false);
    let endpoint = std::env::var("CLEARWAY_TEST_AWS_ENDPOINT").unwrap();
    let upstream = endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream);
    let url = proxy.url();
    let env = [("AWS_ENDPOINT_URL", url.as_str()), ("CLEARWAY__WORKERS__LEASE_SECS", "10")];
    let server = Server::start(&scratch, None, &env);
    let c = Client { addr: server.http, key };
    let submit = |seq: u64| {
        let idem = format!("fault-{seq}");
        let started = Instant::now();
        let r = c.submit("application/edi-x12", &body(seq), &[("Idempotency-Key", idem.as_str())]);
        assert!(started.elapsed() < Duration::from_secs(60), "an answer within the SDK's bounded retries");
        r
    };
    let mut ids: HashMap<u64, String> = HashMap::new();
    let mut refused = Vec::new();

    // Work in progress when the endpoint goes away.
    for seq in 0..15 {
        let r = submit(seq);
        assert_eq!(r.status, 202, "{}", r.text());
        ids.insert(seq, r.json()["transactionId"].as_str().unwrap().to_string());
    }
    for (mode, seqs) in [(Mode::Down, 100..106), (Mode::Throttle, 200..206)] {
        proxy.set(mode);
        for seq in seqs {
            let r = submit(seq);
            assert_eq!(r.status, 503, "{mode:?}: {}", r.text());
            let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!(retry >= 1);
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            assert_eq!(r.json()["status"], 503);
            refused.push(seq);
        }
        // Reads say "unavailable" too, not 500.
        let r = c.get(&format!("/v1/transactions/{}", ids[&0]));
        assert_eq!(r.status, 503, "{mode:?}: {}", r.text());
    }
    // The endpoint comes back: nothing to restart.
    proxy.set(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(60);
    for seq in refused.iter().copied().chain(300..305) {
        loop {
            let r = submit(seq);
            if r.status == 202 {
                ids.insert(seq, r.json()["transactionId"].as_str().unwrap().to_string());
                break;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(Instant::now() < deadline, "intake did not recover");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    for (seq, id) in &ids {
        let t = c.wait_terminal(id);
        assert_eq!(t["status"], "accepted", "{seq}: {t}");
        assert_eq!(c.ack_kinds(id), vec!["277ca".to_string(), "999".to_string()], "{seq}: acks once");
    }
    let logs = scratch.logs();
    assert!(logs.contains("backing off") || logs.contains("retrying later"), "workers met the outage");
    assert_eq!(server.stop(), Some(0));

    // One stored transaction per idempotency key; none dead-lettered.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (stored, dead) = rt.block_on(async {
        let ports = scratch.ports().await;
        let stored = ports.state.query(Table::Transactions, "acme", None, 1000).await.unwrap();
        let dead = ports.state.query(Table::DeadLetters, "acme", None, 1000).await.unwrap();
        (stored.len(), dead.len())
    });
    assert_eq!(stored, ids.len(), "one transaction per submission");
    assert_eq!(dead, 0, "an outage is not poison");
}
