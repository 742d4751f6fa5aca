//! Crash test: `kill -9` the server repeatedly during a load of more than
//! 20,000 transactions. Every transaction that got a 202 exists exactly
//! once and is processed exactly once in effect (each routed claim in
//! exactly one delivered payer batch, one set of acks, one feed entry per
//! ack); nothing that did not get a
//! 202 is half-present; and a client that retries with its Idempotency-Key
//! after a crash ends up with exactly one transaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clearway_core::PartnerId;
use clearway_core::ports::{StateStore, Table};
use clearway_core::records::{AckRecord, FeedEntry, Status, TransactionRecord};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Client, Conn, Scratch, Server};

/// How hard a lane is loaded.
struct Plan {
    clients: usize,
    rounds: usize,
    per_round: usize,
    /// At least this many 202s over the run.
    min_accepted: usize,
    /// Server settings for the lane.
    env: &'static [(&'static str, &'static str)],
}

/// The embedded backend: more than 20,000 transactions over six kills.
const LOCAL: Plan = Plan {
    clients: 16,
    rounds: 6,
    per_round: 3_500,
    min_accepted: 20_000,
    env: &[("CLEARWAY__ROUTING__BATCH_WINDOW_SECS", "1")],
};

/// The AWS backend against moto. EMULATOR LIMIT: moto answers a few hundred
/// calls per second and each transaction takes about a dozen, so the load
/// is smaller (the kills, the outbox sweeper's recovery and the checks are
/// the same). Short leases so work a killed worker held comes back soon.
const AWS: Plan = Plan {
    clients: 8,
    rounds: 3,
    per_round: 250,
    min_accepted: 700,
    env: &[("CLEARWAY__WORKERS__LEASE_SECS", "10"), ("CLEARWAY__ROUTING__BATCH_WINDOW_SECS", "1")],
};

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Accepted(String),
    /// No answer (the server died mid-request): may or may not exist.
    Unknown,
}

fn body(seq: usize) -> Vec<u8> {
    let mut v = Vec::new();
    clearway_formats::x12::synth::write(
        &mut v,
        clearway_formats::x12::synth::Kind::Professional837,
        1,
        10_000 + seq as u64,
    )
    .unwrap();
    v
}

/// Submits `seq`s from `next` until `stop`; records what each got.
fn load(
    addr: std::net::SocketAddr,
    key: &str,
    next: &AtomicUsize,
    limit: usize,
    stop: &AtomicBool,
    seen: &Mutex<BTreeMap<usize, Seen>>,
) {
    let auth = format!("Bearer {key}");
    let mut conn = match Conn::open(addr) {
        Ok(c) => c,
        Err(_) => return,
    };
    while !stop.load(Ordering::Relaxed) {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= limit {
            return;
        }
        let idem = format!("tx-{seq}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/edi-x12"),
            ("Idempotency-Key", idem.as_str()),
        ];
        match conn.send("POST", "/v1/transactions", &headers, &body(seq)) {
            Ok(r) if r.status == 202 => {
                let id = r.json()["transactionId"].as_str().unwrap().to_string();
                seen.lock().unwrap().insert(seq, Seen::Accepted(id));
            }
            Ok(r) if r.status == 429 || r.status == 503 => {
                // Refused: nothing stored; the seq is simply not used.
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
            Err(_) => {
                seen.lock().unwrap().insert(seq, Seen::Unknown);
                return;
            }
        }
    }
}

#[test]
fn kill_9_during_load_loses_and_duplicates_nothing() {
    crash(Scratch::new(), &LOCAL);
}

/// The same on the AWS backend: a kill between the outbox commit's steps
/// leaves an outbox entry that the sweeper sends after restart.
#[test]
fn kill_9_during_load_loses_and_duplicates_nothing_on_aws() {
    crash(Scratch::aws(), &AWS);
}

fn crash(scratch: Scratch, plan: &Plan) {
    let (clients_n, rounds, per_round) = (plan.clients, plan.rounds, plan.per_round);
    let key = scratch.partner("acme", false);
    let seen: Arc<Mutex<BTreeMap<usize, Seen>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let next = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let server = Server::start(&scratch, None, plan.env);
        let stop = Arc::new(AtomicBool::new(false));
        let limit = (round + 1) * per_round + 1_000; // never reached: the kill comes first
        let clients: Vec<_> = (0..clients_n)
            .map(|_| {
                let (next, stop, seen, key, addr) =
                    (next.clone(), stop.clone(), seen.clone(), key.clone(), server.http);
                std::thread::spawn(move || load(addr, &key, &next, limit, &stop, &seen))
            })
            .collect();
        // Kill once this round's share has been sent, with the load running.
        let target = (round + 1) * per_round;
        let deadline = Instant::now() + Duration::from_secs(300);
        while next.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "load too slow");
            std::thread::sleep(Duration::from_millis(5));
        }
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        // Seqs handed out but never sent are not part of the load.
        let sent = next.load(Ordering::Relaxed);
        next.store(sent.max(target), Ordering::Relaxed);
    }
    let seen = seen.lock().unwrap().clone();
    let accepted: HashMap<usize, String> = seen
        .iter()
        .filter_map(|(s, v)| if let Seen::Accepted(id) = v { Some((*s, id.clone())) } else { None })
        .collect();
    let unknown: Vec<usize> = seen.iter().filter(|(_, v)| **v == Seen::Unknown).map(|(s, _)| *s).collect();
    eprintln!(
        "crash test: {} accepted with a 202, {} unanswered at a kill, over {rounds} kills",
        accepted.len(),
        unknown.len()
    );
    assert!(accepted.len() >= plan.min_accepted, "only {} accepted", accepted.len());
    assert!(unknown.len() >= rounds - 1, "the kills landed mid-request at least sometimes");

    // Restart and drain: everything accepted reaches its end.
    let server = Server::start(&scratch, None, plan.env);
    let client = Client { addr: server.http, key: key.clone() };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut pending: Vec<&String> = accepted.values().collect();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} transactions never finished", pending.len());
        pending.retain(|id| {
            let r = client.get(&format!("/v1/transactions/{id}"));
            assert_eq!(r.status, 200, "accepted transaction {id} is missing");
            !matches!(r.json()["status"].as_str(), Some("accepted" | "rejected" | "dead_lettered"))
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let anything committed-but-unanswered drain too, and every claim
    // reach a delivered batch, then stop cleanly.
    std::thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(600);
    while !batches_drained(&scratch) {
        assert!(Instant::now() < deadline, "claims still waiting for a batch or batches undelivered");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.stop(), Some(0));

    // Inspect the store directly.
    let records = store_records(&scratch);
    let ids: HashSet<&String> = accepted.values().collect();
    assert_eq!(ids.len(), accepted.len(), "every 202 names a different transaction");
    let by_id: HashMap<String, &TransactionRecord> = records.0.iter().map(|r| (r.id.to_string(), r)).collect();
    for id in &ids {
        let r = by_id.get(*id).unwrap_or_else(|| panic!("202 {id} not in the store"));
        assert_eq!(r.status, Status::Accepted, "{id}");
    }
    // Nothing half-present: every stored record has its payload and is
    // finished; the extra ones can only be answers lost in a crash.
    assert!(records.0.len() <= accepted.len() + unknown.len());
    eprintln!(
        "crash test: {} stored ({} committed whose answer was lost)",
        records.0.len(),
        records.0.len() - accepted.len()
    );
    for r in &records.0 {
        assert!(r.status.is_terminal(), "{} left in {:?}", r.id, r.status);
        assert!(records.1.contains(&r.id.to_string()), "{} has no payload", r.id);
    }
    // Exactly once in effect: each routed claim in one delivered batch
    // (its id is the claim's REF*D9), nothing else in any; each batch a
    // valid interchange; one 999 and one 277CA per transaction; one feed
    // entry per ack.
    let outbox = scratch.data().join("outbox");
    let mut files: HashMap<String, usize> = HashMap::new();
    let mut batches = 0;
    for payer in std::fs::read_dir(&outbox).unwrap() {
        for f in std::fs::read_dir(payer.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !f.file_type().unwrap().is_file() {
                continue; // a temporary write cut off by a kill
            }
            let bytes = std::fs::read(f.path()).unwrap();
            let analysis = clearway_formats::x12::analyze(&bytes, &clearway_formats::x12::AnalyzeOptions::default());
            assert!(analysis.accepted(), "{name} is not a valid interchange");
            batches += 1;
            for seg in String::from_utf8(bytes).unwrap().split('~') {
                if let Some(claim) = seg.strip_prefix("REF*D9*") {
                    *files.entry(claim.to_string()).or_default() += 1;
                }
            }
        }
    }
    eprintln!("crash test: {} claims in {batches} payer batches", files.values().sum::<usize>());
    // The load's synthetic claims number their patient control numbers per
    // interchange, so now and then two of the 20,000 agree on number, payer,
    // total and date: the second is rejected as a duplicate (A3:54) and not
    // routed. A redelivery after a kill must never find its own claim a
    // duplicate: duplicates stay rare.
    let mut duplicates = 0;
    for r in &records.0 {
        let claim = &r.claims[0];
        if claim.status == "rejected" {
            assert_eq!(claim.status_code.as_deref(), Some("A3:54"), "{}: only duplicates are rejected", r.id);
            assert_eq!(files.remove(&format!("{}-1", r.id)), None, "{}: a rejected claim is not routed", r.id);
            duplicates += 1;
        } else {
            assert_eq!(files.remove(&format!("{}-1", r.id)), Some(1), "{}: in one batch, once", r.id);
        }
        let mut kinds: Vec<&str> = r.ack_ids.iter().map(|a| a.rsplit('-').nth(1).unwrap()).collect();
        kinds.sort();
        assert_eq!(kinds, vec!["277ca", "999"], "{}", r.id);
    }
    assert!(duplicates * 200 < records.0.len(), "{duplicates} duplicates of {} claims", records.0.len());
    assert!(files.is_empty(), "batched claims of unknown transactions: {:?}", files.keys().take(3).collect::<Vec<_>>());
    let mut per_ack: HashMap<&str, usize> = HashMap::new();
    for f in &records.2 {
        *per_ack.entry(f.ack_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_ack.len(), records.0.len() * 2);
    assert!(per_ack.values().all(|n| *n == 1), "a feed entry was written twice");
    assert_eq!(records.3, records.0.len() * 2, "ack records");

    // A client retrying its unanswered requests with the same key ends up
    // with exactly one transaction each.
    let server = Server::start(&scratch, None, &[]);
    let client = Client { addr: server.http, key };
    for seq in &unknown {
        let idem = format!("tx-{seq}");
        let r = client.submit("application/edi-x12", &body(*seq), &[("Idempotency-Key", idem.as_str())]);
        assert!(r.status == 202 || r.status == 200, "{}", r.text());
        let id = r.json()["transactionId"].as_str().unwrap().to_string();
        if r.header("idempotent-replayed").is_some() {
            assert!(by_id.contains_key(&id), "a replay names the stored transaction");
        } else {
            assert!(!by_id.contains_key(&id));
        }
    }
    assert_eq!(server.stop(), Some(0));
    let after = store_records(&scratch);
    assert_eq!(after.0.len(), accepted.len() + unknown.len(), "one transaction per submission, no more");
}

/// No claim waits for a batch, no batch is being assembled or waits to be
/// delivered.
fn batches_drained(scratch: &Scratch) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ports = scratch.ports().await;
        for (payer, _) in ports.state.query(Table::Batches, "pending-payers", None, 1000).await.unwrap() {
            if !ports.state.query(Table::Batches, &format!("pending/{payer}"), None, 1).await.unwrap().is_empty() {
                return false;
            }
        }
        for pk in ["open", "undelivered"] {
            if !ports.state.query(Table::Batches, pk, None, 1).await.unwrap().is_empty() {
                return false;
            }
        }
        true
    })
}

/// (transaction records, blob keys' transaction ids, feed entries, ack count)
fn store_records(scratch: &Scratch) -> (Vec<TransactionRecord>, HashSet<String>, Vec<FeedEntry>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ports = scratch.ports().await;
        let partner = PartnerId::new("acme").unwrap();
        let records: Vec<TransactionRecord> = all(&ports.state, Table::Transactions, partner.as_str())
            .await
            .into_iter()
            .map(|v| serde_json::from_slice(&v).unwrap())
            .collect();
        let mut blobs = HashSet::new();
        let mut acks = 0;
        for r in &records {
            if ports.blobs.exists(&r.blob_key).await.unwrap() {
                blobs.insert(r.id.to_string());
            }
            acks += all(&ports.state, Table::Acks, r.id.as_str())
                .await
                .into_iter()
                .filter(|v| serde_json::from_slice::<AckRecord>(v).is_ok())
                .count();
        }
        let feed = all(&ports.state, Table::AckFeed, partner.as_str())
            .await
            .into_iter()
            .map(|v| serde_json::from_slice(&v).unwrap())
            .collect();
        (records, blobs, feed, acks)
    })
}

async fn all(state: &Arc<dyn StateStore>, table: Table, pk: &str) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state.query(table, pk, after.as_deref(), 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page.into_iter().map(|(_, i)| i.value));
    }
}
