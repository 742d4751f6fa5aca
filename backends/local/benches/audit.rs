//! The audit log's figures (issue 19), release build, one run:
//!
//! - durable appends per second with 64 concurrent writers (each event
//!   fsync'd in a group commit before its append returns), events shaped
//!   like an HTTP read's;
//! - `verify_log` over the whole log (default 1,000,000 events: every leaf
//!   and node recomputed, the checkpoints checked), from the database file.
//!
//! `cargo bench -p clearway-local --bench audit` (env `BENCH_AUDIT_EVENTS`,
//! `BENCH_AUDIT_WRITERS`). Prints one JSON line.

use clearway_core::audit::{AuditActor, AuditEntity, AuditEvent, LogSigner, verify_log};
use clearway_local::{AuditFile, SqliteAuditLog};
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn event(n: u64) -> Vec<u8> {
    let actor = AuditActor {
        principal: format!("partner-{}", n % 50),
        kind: "partner".into(),
        role: "submitter".into(),
        credential: Some(format!("key-{:08x}", n % 997)),
        auth: "api_key".into(),
    };
    let mut e = AuditEvent::new("rest", "transactions.read", "R", actor);
    e.status = Some("200".into());
    e.source = Some("10.0.0.7".into());
    e.purpose = Some("HPAYMT".into());
    e.tenant = Some(format!("partner-{}", n % 50));
    e.entity.push(AuditEntity { kind: "transaction".into(), id: uuid::Uuid::now_v7().to_string() });
    e.request_id = Some(format!("{n:016x}"));
    e.to_leaf()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` lists benches: nothing to list.
    }
    let total = env("BENCH_AUDIT_EVENTS", 1_000_000);
    let writers = env("BENCH_AUDIT_WRITERS", 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let log = SqliteAuditLog::open(dir.path()).expect("open");
    let seed = LogSigner::generate_seed().expect("seed");
    let signer = Arc::new(LogSigner::from_seed("bench.example/audit", &seed).expect("signer"));
    let started = Instant::now();
    let event_bytes = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let log = log.clone();
            let signer = signer.clone();
            tasks.spawn(async move {
                let mut bytes = 0u64;
                let mut n = w;
                while n < total {
                    let e = event(n);
                    bytes += e.len() as u64;
                    log.append(e).await.expect("append");
                    // A checkpoint every 10,000 events, as the service will.
                    if n % 10_000 == 0 {
                        log.checkpoint(signer.clone()).await.expect("checkpoint");
                    }
                    n += writers;
                }
                bytes
            });
        }
        let mut bytes = 0;
        while let Some(b) = tasks.join_next().await {
            bytes += b.expect("writer");
        }
        log.checkpoint(signer.clone()).await.expect("final checkpoint");
        bytes
    });
    let append_secs = started.elapsed().as_secs_f64();
    drop(log);
    let file = AuditFile::open(dir.path()).expect("file");
    let key = signer.verifier();
    let started = Instant::now();
    let report = verify_log(&file, &key, &[]).expect("verifies");
    let verify_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.size, total);
    println!(
        "{}",
        serde_json::json!({
            "bench": "audit",
            "events": total,
            "writers": writers,
            "mean_event_bytes": event_bytes / total.max(1),
            "append_secs": (append_secs * 100.0).round() / 100.0,
            "durable_appends_per_sec": (total as f64 / append_secs).round(),
            "verify_secs": (verify_secs * 100.0).round() / 100.0,
            "verify_events_per_sec": (total as f64 / verify_secs).round(),
            "checkpoints": report.checkpoints,
        })
    );
}
