//! The audit log over the state-store port: the same suite on the
//! in-memory store and on DynamoDB (the local AWS-protocol server):
//! concurrent appends from two writers (two processes) interleave without
//! a fork, checkpoints, proofs that verify, search, a full verification,
//! and tampering caught. Checkpoints also go to an S3 bucket under Object
//! Lock in COMPLIANCE mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clearway_aws::audit::{S3CheckpointArchive, StoreAuditLog};
use clearway_core::audit::{AuditActor, AuditEvent, AuditQuery, LogSigner, verify_inclusion, verify_log};
use clearway_core::ports::StateStore;
use common::{config, unique};
use std::sync::Arc;

fn event(i: usize) -> AuditEvent {
    let actor = AuditActor {
        principal: format!("p{}", i % 3),
        kind: "partner".into(),
        role: "submitter".into(),
        credential: None,
        auth: "api_key".into(),
    };
    let mut e = AuditEvent::new("rest", "GET /v1/acks", "R", actor);
    e.tenant = Some(format!("t{}", i % 2));
    e
}

/// The suite: `state` is a store of the log's own.
async fn suite(state: Arc<dyn StateStore>, events: usize) {
    let signer = LogSigner::from_seed("test.example/audit", &[7; 32]).unwrap();
    // Two writers on one store, as two processes would be.
    let (a, b) = (StoreAuditLog::new(state.clone()), StoreAuditLog::new(state.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..events {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { log.append(event(i).to_leaf()).await.unwrap() });
    }
    let mut seqs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seqs.push(r.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..events as u64).collect::<Vec<_>>(), "every event once, no gap, no fork");
    assert_eq!(a.size().await.unwrap(), events as u64);

    let first = a.checkpoint(&signer, None).await.unwrap();
    assert_eq!(first.size, events as u64);
    assert_eq!(b.checkpoint(&signer, None).await.unwrap(), first, "one checkpoint per size");
    assert_eq!(b.latest_checkpoint().await.unwrap().as_deref(), Some(first.note.as_str()));
    for i in 0..5 {
        b.append(event(events + i).to_leaf()).await.unwrap();
    }
    let second = b.checkpoint(&signer, None).await.unwrap();
    assert_eq!(second.size, events as u64 + 5);

    // Proofs verify against the signed roots.
    let found = a.search(&AuditQuery { tenant: Some("t1".into()), ..Default::default() }, 1000).await.unwrap();
    assert_eq!(found.events.len(), (events + 5) / 2);
    assert!(found.events.iter().all(|(_, e)| e.tenant.as_deref() == Some("t1")));
    for (index, e) in found.events.iter().filter(|(i, _)| *i < first.size) {
        let proof = a.inclusion_proof(*index, first.size).await.unwrap();
        verify_inclusion(&e.to_leaf(), *index, first.size, &first.root, &proof).unwrap();
    }
    let proof = a.consistency_proof(first.size, second.size).await.unwrap();
    clearway_core::audit::verify_consistency(first.size, &first.root, second.size, &second.root, &proof).unwrap();
    let paged = a.search(&AuditQuery::default(), 7).await.unwrap();
    assert_eq!((paged.events.len(), paged.next), (7, Some(6)));

    // The whole log verifies; an edited event does not.
    let snapshot = a.snapshot().await.unwrap();
    let report = verify_log(&snapshot, &signer.verifier(), &[]).unwrap();
    assert_eq!((report.size, report.unanchored), (second.size, 0));
    let victim = clearway_core::ports::Key::new(clearway_core::ports::Table::Audit, "leaf", format!("{:020}", 3));
    let stored = state.get(&victim).await.unwrap().unwrap().value;
    let mut edited = event(3);
    edited.tenant = Some("someone-else".into());
    state
        .write(vec![clearway_core::ports::WriteOp::Put {
            key: victim,
            value: edited.to_leaf().into(),
            expires_at: None,
            condition: clearway_core::ports::Condition::None,
            owner: None,
        }])
        .await
        .unwrap();
    let tampered = a.snapshot().await.unwrap();
    assert!(verify_log(&tampered, &signer.verifier(), &[]).is_err(), "an edited event is caught");
    // Put back, it verifies again; then the newest event deleted (below
    // the head's size): caught too.
    let original = clearway_core::ports::Key::new(clearway_core::ports::Table::Audit, "leaf", format!("{:020}", 3));
    state
        .write(vec![clearway_core::ports::WriteOp::Put {
            key: original,
            value: stored,
            expires_at: None,
            condition: clearway_core::ports::Condition::None,
            owner: None,
        }])
        .await
        .unwrap();
    verify_log(&a.snapshot().await.unwrap(), &signer.verifier(), &[]).unwrap();
    let newest = second.size - 1;
    let key = clearway_core::ports::Key::new(clearway_core::ports::Table::Audit, "leaf", format!("{newest:020}"));
    state
        .write(vec![clearway_core::ports::WriteOp::Delete { key, condition: clearway_core::ports::Condition::None }])
        .await
        .unwrap();
    let cut = a.snapshot().await.unwrap();
    assert!(verify_log(&cut, &signer.verifier(), &[]).is_err(), "a deleted event is caught");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_over_the_in_memory_store() {
    suite(Arc::new(clearway_local::MemStateStore::default()), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_over_dynamodb() {
    let c = config().await;
    let table = clearway_aws::DynamoStateStore::new(&c, &unique("clearway-audit"), 1);
    table.ensure_table().await.unwrap();
    suite(Arc::new(table), 120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_locked_in_s3_in_compliance_mode() {
    let c = config().await;
    let bucket = unique("clearway-audit-checkpoints");
    let archive = S3CheckpointArchive::new(&c, &bucket);
    archive.ensure_bucket(true, 2190).await.unwrap();
    archive.ensure_bucket(true, 2190).await.unwrap();
    let signer = LogSigner::from_seed("test.example/audit", &[9; 32]).unwrap();
    let checkpoint = signer.sign(3, &[1; 32]);
    archive.put(&checkpoint).await.unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&c).force_path_style(true).build());
    let key = S3CheckpointArchive::object_key(3);
    let body = s3.get_object().bucket(&bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(body.into_bytes().as_ref(), checkpoint.note.as_bytes());
    // The object's lock, as S3 reports it on the object itself.
    let head = s3.head_object().bucket(&bucket).key(&key).send().await.unwrap();
    assert_eq!(head.object_lock_mode(), Some(&aws_sdk_s3::types::ObjectLockMode::Compliance));
    let until = head.object_lock_retain_until_date().expect("a retention date").secs();
    let years = (until - time::OffsetDateTime::now_utc().unix_timestamp()) as f64 / (365.0 * 86_400.0);
    assert!((5.9..6.1).contains(&years), "retained {years:.2} years");
    let versions = s3.list_object_versions().bucket(&bucket).send().await.unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_string();
    let deleted = s3.delete_object().bucket(&bucket).key(&key).version_id(version).send().await;
    assert!(deleted.is_err(), "a locked checkpoint cannot be deleted");
}

/// Regression: a full batch of 30 that crosses a multiple of 2^15 needs
/// more than 100 writes (its nodes); the writer now commits what fits and
/// keeps the rest for the next transaction. And an event too large for
/// one item is refused on its own, not with its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_a_transactions_limits() {
    let state: Arc<dyn StateStore> = Arc::new(clearway_local::MemStateStore::default());
    let log = StoreAuditLog::new(state);
    let leaf = event(0).to_leaf();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (log, leaf) = (log.clone(), leaf.clone());
        tasks.spawn(async move {
            for _ in 0..520 {
                log.append(leaf.clone()).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(log.size().await.unwrap(), 64 * 520, "past 2^15 = 32,768 with full batches");
    let too_big = vec![b'x'; clearway_aws::audit::MAX_EVENT_BYTES + 1];
    let refused = log.append(too_big).await.unwrap_err();
    assert_eq!(refused.kind(), clearway_core::ErrorKind::InvalidInput);
    let signer = LogSigner::from_seed("test.example/audit", &[1; 32]).unwrap();
    log.checkpoint(&signer, None).await.unwrap();
    let report = verify_log(&log.snapshot().await.unwrap(), &signer.verifier(), &[]).unwrap();
    assert_eq!(report.size, 64 * 520);
}
