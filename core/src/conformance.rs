//! The shared conformance suites: one per port, run by every implementation
//! (in-memory fakes, the embedded backend, the AWS backend against a local
//! AWS-protocol server). A fake that diverges from a real backend fails the
//! same suite the real backend passes.
//!
//! Each suite is an async function that panics with a description of the
//! first contract violation. Backends call them from their own tests with a
//! fresh, empty instance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::error::ErrorKind;
use crate::ids::BlobKey;
use crate::ports::*;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn kind<T: std::fmt::Debug>(r: &crate::error::PortResult<T>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

async fn listing_and_replacement(store: &dyn BlobStore) {
    let prefix = format!("raw/{}/", unique("list"));
    let mut keys: Vec<BlobKey> =
        (0..5).map(|i| BlobKey::parse(&format!("{prefix}2024-01-0{i}/t{i}")).unwrap()).collect();
    for k in keys.iter().rev() {
        store.put(k, Bytes::from(k.as_str().to_string())).await.unwrap();
    }
    // A key that shares the prefix's start but not the prefix, and one under
    // another prefix: neither is listed.
    let near = BlobKey::parse(&format!("{}x/y", prefix.trim_end_matches('/'))).unwrap();
    store.put(&near, Bytes::from_static(b"near")).await.unwrap();
    keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut listed = Vec::new();
    let mut after: Option<BlobKey> = None;
    loop {
        let page = store.list(&prefix, after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2, "a page holds at most the limit");
        let Some(last) = page.last().cloned() else { break };
        listed.extend(page);
        after = Some(last);
    }
    assert_eq!(listed, keys, "every key under the prefix once, in order");
    assert!(store.list(&prefix, None, 0).await.is_err(), "a limit of 0 is refused");

    let small = Bytes::from_static(b"replaced");
    store.replace(&keys[0], small.clone()).await.unwrap();
    assert_eq!(store.get(&keys[0], 1 << 20).await.unwrap(), small, "replace overwrites");
    let large = Bytes::from(vec![9u8; 300 * 1024]);
    store.replace(&keys[1], large.clone()).await.unwrap();
    assert_eq!(store.get(&keys[1], 1 << 20).await.unwrap(), large, "replace with a large object");
    store.replace(&keys[1], small.clone()).await.unwrap();
    assert_eq!(store.get(&keys[1], 1 << 20).await.unwrap(), small, "and back to a small one");
    let missing = BlobKey::parse(&format!("{prefix}missing")).unwrap();
    assert_eq!(kind(&store.replace(&missing, small).await), Some(ErrorKind::NotFound), "replace needs an object");
    assert!(!store.exists(&missing).await.unwrap(), "a refused replace creates nothing");
}

/// [`BlobStore`]: write-once puts, bounded reads, existence, listing by
/// prefix and atomic replacement.
pub async fn blob_store(store: Arc<dyn BlobStore>) {
    listing_and_replacement(store.as_ref()).await;
    let key = BlobKey::parse(&format!("raw/conformance/{}", unique("b"))).unwrap();
    assert!(!store.exists(&key).await.unwrap(), "a new key does not exist");
    assert_eq!(kind(&store.get(&key, 1024).await), Some(ErrorKind::NotFound), "get of a missing key is NotFound");

    let body = Bytes::from(vec![7u8; 100_000]);
    store.put(&key, body.clone()).await.unwrap();
    assert!(store.exists(&key).await.unwrap());
    assert_eq!(store.get(&key, 200_000).await.unwrap(), body, "get returns what was put");

    let again = store.put(&key, Bytes::from_static(b"other")).await;
    assert_eq!(kind(&again), Some(ErrorKind::AlreadyExists), "second put is AlreadyExists");
    assert_eq!(store.get(&key, 200_000).await.unwrap(), body, "the first object is unchanged");

    assert_eq!(
        kind(&store.get(&key, 10).await),
        Some(ErrorKind::InvalidInput),
        "a read bigger than max_bytes is refused"
    );

    // Concurrent puts of one key: exactly one wins.
    let key2 = BlobKey::parse(&format!("raw/conformance/{}", unique("c"))).unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (s, k) = (store.clone(), key2.clone());
        tasks.push(tokio::spawn(async move { s.put(&k, Bytes::from(vec![i; 64])).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent put succeeds");

    let empty = BlobKey::parse(&format!("raw/conformance/{}", unique("e"))).unwrap();
    store.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(store.get(&empty, 0).await.unwrap().len(), 0, "empty objects are stored");

    store.delete(&empty).await.unwrap();
    assert!(!store.exists(&empty).await.unwrap(), "deleted");
    store.delete(&empty).await.unwrap(); // deleting a missing key succeeds
}

async fn receive_one(queue: &dyn WorkQueue, lease: Duration) -> QueueMessage {
    for _ in 0..50 {
        let mut got = queue.receive(1, lease, Duration::from_millis(200)).await.unwrap();
        if let Some(m) = got.pop() {
            return m;
        }
    }
    panic!("no message received");
}

/// [`WorkQueue`]: leases, redelivery with attempt counts, stale receipts,
/// extension, release, batch limits and long polling. `lease` should be
/// short (a second or two): the suite waits for leases to expire.
pub async fn work_queue(queue: Arc<dyn WorkQueue>, lease: Duration) {
    // Limits.
    let eleven: Vec<Bytes> = (0..11).map(|i| Bytes::from(format!("m{i}"))).collect();
    assert_eq!(kind(&queue.send(&eleven).await), Some(ErrorKind::InvalidInput), "more than 10 per send is refused");
    assert_eq!(kind(&queue.send(&[]).await), Some(ErrorKind::InvalidInput), "an empty send is refused");
    let big = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]);
    assert_eq!(kind(&queue.send(&[big]).await), Some(ErrorKind::InvalidInput), "an oversized message is refused");

    // Empty queue: receive waits and returns nothing.
    let started = std::time::Instant::now();
    let none = queue.receive(10, lease, Duration::from_millis(300)).await.unwrap();
    assert!(none.is_empty(), "nothing to receive");
    assert!(started.elapsed() >= Duration::from_millis(200), "receive waited for messages");

    // Send a batch, receive at most `max`, ack.
    let bodies: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("batch-{i}"))).collect();
    queue.send(&bodies).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..20 {
        let batch = queue.receive(3, lease * 5, Duration::from_millis(200)).await.unwrap();
        assert!(batch.len() <= 3, "receive returns at most max");
        got.extend(batch);
        if got.len() == 5 {
            break;
        }
    }
    let mut seen: Vec<Bytes> = got.iter().map(|m| m.body.clone()).collect();
    seen.sort();
    assert_eq!(seen, bodies, "every sent message is received once");
    assert!(got.iter().all(|m| m.attempt == 1), "first delivery has attempt 1");
    let receipts: Vec<Receipt> = got.iter().map(|m| m.receipt.clone()).collect();
    queue.ack(&receipts).await.unwrap();
    queue.ack(&receipts).await.unwrap(); // idempotent
    assert!(queue.receive(10, lease, Duration::from_millis(200)).await.unwrap().is_empty(), "acked messages are gone");

    // Lease expiry: redelivery with attempt 2, stale receipt refused.
    queue.send(&[Bytes::from_static(b"redeliver")]).await.unwrap();
    let first = receive_one(queue.as_ref(), lease).await;
    assert!(
        queue.receive(10, lease, Duration::from_millis(100)).await.unwrap().is_empty(),
        "a leased message is invisible"
    );
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let second = receive_one(queue.as_ref(), lease * 5).await;
    assert_eq!(second.id, first.id, "the same message is redelivered");
    assert_eq!(second.body, first.body);
    assert_eq!(second.attempt, 2, "redelivery increments attempt");
    // A stale receipt may or may not delete the redelivered message (see
    // the contract); what it must not do is leave the queue inconsistent:
    // either the message is gone for good, or it is still leased to the
    // second delivery, whose receipt releases it for a third.
    let _ = queue.ack(std::slice::from_ref(&first.receipt)).await;
    match queue.release(&second.receipt).await {
        Ok(()) => {
            let third = receive_one(queue.as_ref(), lease * 5).await;
            assert_eq!(third.id, first.id, "the message is the same one");
            assert_eq!(third.attempt, 3);
            queue.ack(std::slice::from_ref(&third.receipt)).await.unwrap();
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "release of a deleted message: {e:?}");
            assert!(
                queue.receive(10, lease, Duration::from_millis(300)).await.unwrap().is_empty(),
                "a deleted message does not come back"
            );
        }
    }

    // Extension keeps a message invisible past its first lease.
    queue.send(&[Bytes::from_static(b"extend")]).await.unwrap();
    let m = receive_one(queue.as_ref(), lease).await;
    queue.extend(&m.receipt, lease * 4).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(queue.receive(10, lease, Duration::from_millis(100)).await.unwrap().is_empty(), "an extended lease holds");
    queue.ack(&[m.receipt]).await.unwrap();

    // Batched extension: every receipt's lease holds.
    queue.send(&[Bytes::from_static(b"extend-a"), Bytes::from_static(b"extend-b")]).await.unwrap();
    let mut both = Vec::new();
    let deadline = tokio::time::Instant::now() + lease * 10;
    while both.len() < 2 && tokio::time::Instant::now() < deadline {
        both.extend(queue.receive(2, lease, Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(both.len(), 2, "both received");
    let receipts: Vec<Receipt> = both.iter().map(|m| m.receipt.clone()).collect();
    queue.extend_many(&receipts, lease * 4).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(queue.receive(10, lease, Duration::from_millis(100)).await.unwrap().is_empty(), "extended leases hold");
    queue.ack(&receipts).await.unwrap();

    // Release makes it visible at once, and counts as a delivery.
    queue.send(&[Bytes::from_static(b"release")]).await.unwrap();
    let m = receive_one(queue.as_ref(), lease * 10).await;
    queue.release(&m.receipt).await.unwrap();
    let again = receive_one(queue.as_ref(), lease * 10).await;
    assert_eq!(again.id, m.id);
    assert_eq!(again.attempt, 2, "a released message is delivered again with attempt 2");
    queue.ack(&[again.receipt]).await.unwrap();

    // Long poll: a message sent during the wait is returned.
    let q2 = queue.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q2.send(&[Bytes::from_static(b"late")]).await.unwrap();
    });
    let mut late = Vec::new();
    for _ in 0..5 {
        late = queue.receive(1, lease * 5, Duration::from_secs(2)).await.unwrap();
        if !late.is_empty() {
            break;
        }
    }
    sender.await.unwrap();
    assert_eq!(late.len(), 1, "long poll returns a message sent while waiting");
    queue.ack(&[late[0].receipt.clone()]).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.visible, 0, "nothing left");
}

/// [`Notifier`]: limits, and published events reach `observe` (a way to
/// read what subscribers received, supplied by the backend's test) with
/// their ids, attributes and bodies.
pub async fn notifier<F, Fut>(notifier: Arc<dyn Notifier>, observe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Event>>,
{
    let ev = |i: usize| Event {
        id: unique(&format!("ev{i}")),
        attributes: BTreeMap::from([("partner".into(), "conformance".into()), ("kind".into(), "999".into())]),
        body: Bytes::from(format!("{{\"n\":{i}}}")),
    };
    let eleven: Vec<Event> = (0..11).map(ev).collect();
    assert_eq!(
        kind(&notifier.publish(&eleven).await),
        Some(ErrorKind::InvalidInput),
        "more than 10 events are refused"
    );
    let mut big = ev(0);
    big.body = Bytes::from(vec![b' '; MAX_EVENT_BYTES + 1]);
    assert_eq!(kind(&notifier.publish(&[big]).await), Some(ErrorKind::InvalidInput), "an oversized event is refused");
    let events: Vec<Event> = (0..3).map(ev).collect();
    notifier.publish(&events).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        got = observe().await;
        if events.iter().all(|e| got.iter().any(|g| g.id == e.id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for e in &events {
        let g = got.iter().find(|g| g.id == e.id).unwrap_or_else(|| panic!("event {} was not delivered", e.id));
        assert_eq!(g.body, e.body, "body delivered unchanged");
        assert_eq!(g.attributes.get("partner"), e.attributes.get("partner"), "attributes delivered");
        assert_eq!(g.attributes.get("kind"), e.attributes.get("kind"));
    }
}

fn put(key: &Key, value: &str, condition: Condition) -> WriteOp {
    WriteOp::Put { key: key.clone(), value: Bytes::from(value.to_string()), expires_at: None, condition, owner: None }
}

/// [`StateStore`]: conditional writes, atomic batches, expiry on read,
/// ordered partition queries, limits, and concurrent conditional writers.
pub async fn state_store(store: Arc<dyn StateStore>) {
    state_store_sequential(store.clone()).await;
    state_store_races(store).await;
}

/// [`state_store`] without the concurrent-writers check, for an emulator
/// that does not serialise conditional writes (moto); the backend's test
/// must say so where it calls this.
pub async fn state_store_sequential(store: Arc<dyn StateStore>) {
    state_store_scan(store.as_ref()).await;
    let pk = unique("p");
    let k = Key::new(Table::Transactions, &pk, "a");
    assert!(store.get(&k).await.unwrap().is_none(), "missing key reads as None");

    store.write(vec![put(&k, "v1", Condition::NotExists)]).await.unwrap();
    let item = store.get(&k).await.unwrap().unwrap();
    assert_eq!((item.value.as_ref(), item.version), (&b"v1"[..], 1), "first version is 1");
    assert_eq!(
        kind(&store.write(vec![put(&k, "v2", Condition::NotExists)]).await),
        Some(ErrorKind::PreconditionFailed),
        "NotExists on an existing key fails"
    );
    assert_eq!(
        kind(&store.write(vec![put(&k, "v2", Condition::Version(7))]).await),
        Some(ErrorKind::PreconditionFailed),
        "a wrong version fails"
    );
    store.write(vec![put(&k, "v2", Condition::Version(1))]).await.unwrap();
    let item = store.get(&k).await.unwrap().unwrap();
    assert_eq!((item.value.as_ref(), item.version), (&b"v2"[..], 2), "version grows by one");
    store.write(vec![put(&k, "v3", Condition::None)]).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().version, 3);

    // Atomicity: a failing condition anywhere leaves everything unwritten.
    let k2 = Key::new(Table::Transactions, &pk, "b");
    let k3 = Key::new(Table::Dedupe, &pk, "c");
    let r = store
        .write(vec![
            put(&k2, "x", Condition::NotExists),
            put(&k3, "y", Condition::None),
            WriteOp::Check { key: k.clone(), condition: Condition::Version(1) },
        ])
        .await;
    assert_eq!(kind(&r), Some(ErrorKind::PreconditionFailed));
    assert!(
        store.get(&k2).await.unwrap().is_none() && store.get(&k3).await.unwrap().is_none(),
        "a failed batch writes nothing"
    );
    store
        .write(vec![
            put(&k2, "x", Condition::NotExists),
            put(&k3, "y", Condition::None),
            WriteOp::Check { key: k.clone(), condition: Condition::Version(3) },
        ])
        .await
        .unwrap();
    assert!(
        store.get(&k2).await.unwrap().is_some() && store.get(&k3).await.unwrap().is_some(),
        "a passing batch writes everything"
    );

    // Delete with condition.
    assert_eq!(
        kind(&store.write(vec![WriteOp::Delete { key: k3.clone(), condition: Condition::Version(9) }]).await),
        Some(ErrorKind::PreconditionFailed)
    );
    store.write(vec![WriteOp::Delete { key: k3.clone(), condition: Condition::None }]).await.unwrap();
    assert!(store.get(&k3).await.unwrap().is_none(), "deleted");

    // Expiry: an expired item is absent on read and for NotExists.
    let past = time::OffsetDateTime::now_utc().unix_timestamp() - 10;
    let future = past + 3600;
    let ke = Key::new(Table::Dedupe, &pk, "expired");
    store
        .write(vec![WriteOp::Put {
            key: ke.clone(),
            value: Bytes::from_static(b"old"),
            expires_at: Some(past),
            condition: Condition::None,
            owner: None,
        }])
        .await
        .unwrap();
    assert!(store.get(&ke).await.unwrap().is_none(), "an expired item reads as absent");
    store.write(vec![put(&ke, "new", Condition::NotExists)]).await.unwrap();
    assert_eq!(
        store.get(&ke).await.unwrap().unwrap().value.as_ref(),
        b"new",
        "NotExists succeeds over an expired item"
    );
    let kf = Key::new(Table::Dedupe, &pk, "fresh");
    store
        .write(vec![WriteOp::Put {
            key: kf.clone(),
            value: Bytes::from_static(b"f"),
            expires_at: Some(future),
            condition: Condition::None,
            owner: None,
        }])
        .await
        .unwrap();
    assert_eq!(store.get(&kf).await.unwrap().unwrap().expires_at, Some(future));

    // Query: ordered, paged, partition- and table-isolated, live items only.
    let qp = unique("q");
    let mut ops = Vec::new();
    for i in (0..25).rev() {
        ops.push(put(&Key::new(Table::AckFeed, &qp, format!("{i:04}")), &i.to_string(), Condition::None));
    }
    ops.push(WriteOp::Put {
        key: Key::new(Table::AckFeed, &qp, "0010x"),
        value: Bytes::from_static(b"gone"),
        expires_at: Some(past),
        condition: Condition::None,
        owner: None,
    });
    ops.push(put(&Key::new(Table::AckFeed, unique("other"), "0000"), "other", Condition::None));
    ops.push(put(&Key::new(Table::Acks, &qp, "0000"), "other table", Condition::None));
    store.write(ops).await.unwrap();
    let page1 = store.query(Table::AckFeed, &qp, None, 10).await.unwrap();
    let keys: Vec<String> = page1.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, (0..10).map(|i| format!("{i:04}")).collect::<Vec<_>>(), "first page in sort-key order");
    let page2 = store.query(Table::AckFeed, &qp, Some("0009"), 100).await.unwrap();
    assert_eq!(page2.len(), 15, "the rest after the cursor, without the expired item");
    assert_eq!(page2[0].0, "0010");
    assert!(store.query(Table::AckFeed, &qp, Some("0024"), 10).await.unwrap().is_empty());
    // An empty cursor is the start (`?after=` from a client).
    let from_empty = store.query(Table::AckFeed, &qp, Some(""), 10).await.unwrap();
    assert_eq!(from_empty.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys, "after \"\" is the first page");

    // Limits.
    let many: Vec<WriteOp> =
        (0..101).map(|i| put(&Key::new(Table::Counters, &pk, i.to_string()), "x", Condition::None)).collect();
    assert_eq!(kind(&store.write(many).await), Some(ErrorKind::InvalidInput), "more than 100 ops are refused");
    assert_eq!(kind(&store.write(vec![]).await), Some(ErrorKind::InvalidInput), "an empty batch is refused");
    let dup = vec![put(&k2, "a", Condition::None), put(&k2, "b", Condition::None)];
    assert_eq!(kind(&store.write(dup).await), Some(ErrorKind::InvalidInput), "two ops on one key are refused");
}

/// Concurrent conditional writers on one key: exactly one `NotExists` wins.
pub async fn state_store_races(store: Arc<dyn StateStore>) {
    let pk = unique("race");
    let race = Key::new(Table::Dedupe, &pk, "race");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, k) = (store.clone(), race.clone());
        tasks.push(tokio::spawn(async move { s.write(vec![put(&k, &i.to_string(), Condition::NotExists)]).await }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent NotExists write succeeds");
}

/// [`IntakeJournal`]: a commit makes its payload, writes and pointer
/// visible together; a commit whose condition fails leaves nothing.
pub async fn intake_journal(
    journal: Arc<dyn IntakeJournal>,
    state: Arc<dyn StateStore>,
    queue: Arc<dyn WorkQueue>,
    blobs: Arc<dyn BlobStore>,
) {
    let pk = unique("j");
    // Small and large payloads.
    for (n, size) in [(0usize, 1000usize), (1, 600_000)] {
        let key = BlobKey::parse(&format!("raw/conformance/{pk}-{n}")).unwrap();
        let record = Key::new(Table::Transactions, &pk, format!("tx-{n}"));
        journal
            .commit(Commit {
                blob: Some((key.clone(), Bytes::from(vec![1u8; size]))),
                writes: vec![put(&record, "received", Condition::NotExists)],
                pointer: Bytes::from(format!("p{n}")),
            })
            .await
            .unwrap();
        assert_eq!(blobs.get(&key, 1 << 20).await.unwrap().len(), size, "the payload is stored ({size} bytes)");
        assert!(state.get(&record).await.unwrap().is_some(), "the record is written");
        let m = receive_one(queue.as_ref(), Duration::from_secs(30)).await;
        assert_eq!(m.body, Bytes::from(format!("p{n}")), "the pointer is queued");
        queue.ack(&[m.receipt]).await.unwrap();
    }

    let record = Key::new(Table::Transactions, &pk, "tx");
    let dedupe = Key::new(Table::Dedupe, &pk, "hash");
    let pointer = Bytes::from(format!("{{\"tx\":\"{pk}\"}}"));
    journal
        .commit(Commit {
            blob: Some((BlobKey::parse(&format!("raw/conformance/{pk}")).unwrap(), Bytes::from_static(b"payload"))),
            writes: vec![put(&record, "received", Condition::NotExists), put(&dedupe, "tx", Condition::NotExists)],
            pointer: pointer.clone(),
        })
        .await
        .unwrap();
    assert!(
        state.get(&record).await.unwrap().is_some() && state.get(&dedupe).await.unwrap().is_some(),
        "writes are visible"
    );
    let m = receive_one(queue.as_ref(), Duration::from_secs(30)).await;
    assert_eq!(m.body, pointer, "the pointer is queued");
    queue.ack(&[m.receipt]).await.unwrap();

    for size in [100usize, 600_000] {
        let dup_key = BlobKey::parse(&format!("raw/conformance/{pk}-dup-{size}")).unwrap();
        let tx2 = Key::new(Table::Transactions, &pk, format!("tx2-{size}"));
        let dup = journal
            .commit(Commit {
                blob: Some((dup_key.clone(), Bytes::from(vec![2u8; size]))),
                writes: vec![put(&tx2, "received", Condition::NotExists), put(&dedupe, "tx2", Condition::NotExists)],
                pointer: Bytes::from_static(b"duplicate"),
            })
            .await;
        assert_eq!(kind(&dup), Some(ErrorKind::PreconditionFailed), "a duplicate is refused");
        assert!(state.get(&tx2).await.unwrap().is_none(), "nothing of a refused commit is written");
        assert!(!blobs.exists(&dup_key).await.unwrap(), "a refused commit leaves no payload");
    }
    assert!(
        queue.receive(10, Duration::from_secs(30), Duration::from_millis(300)).await.unwrap().is_empty(),
        "nothing of a refused commit is queued"
    );

    // Without a payload: writes and pointer only (a replay).
    journal
        .commit(Commit {
            blob: None,
            writes: vec![put(&record, "received again", Condition::Version(1))],
            pointer: Bytes::from_static(b"replay"),
        })
        .await
        .unwrap();
    assert_eq!(state.get(&record).await.unwrap().unwrap().version, 2);
    let m = receive_one(queue.as_ref(), Duration::from_secs(30)).await;
    assert_eq!(m.body, Bytes::from_static(b"replay"));
    queue.ack(&[m.receipt]).await.unwrap();
}

/// `scan`: every live item of the table once, across partitions and
/// pages, nothing of another table, expired items left out.
async fn state_store_scan(store: &dyn StateStore) {
    let prefix = unique("scan");
    let mut want = std::collections::BTreeSet::new();
    let mut ops = Vec::new();
    for p in 0..3 {
        for s in 0..4 {
            let key = Key::new(Table::Effects, format!("{prefix}-{p}"), format!("{s:02}"));
            want.insert((key.pk.clone(), key.sk.clone()));
            ops.push(put(&key, "x", Condition::None));
        }
    }
    let expired = Key::new(Table::Effects, format!("{prefix}-0"), "99");
    ops.push(WriteOp::Put {
        key: expired,
        value: Bytes::from_static(b"old"),
        expires_at: Some(1),
        condition: Condition::None,
        owner: None,
    });
    ops.push(put(&Key::new(Table::Claims, format!("{prefix}-0"), "00"), "other table", Condition::None));
    store.write(ops).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100_000 {
        let page = store.scan(Table::Effects, after.as_deref(), 5).await.unwrap();
        assert!(page.items.len() <= 5, "a page holds at most the limit");
        for (key, item) in page.items {
            assert_eq!(key.table, Table::Effects);
            if key.pk.starts_with(&prefix) {
                assert_eq!(item.value.as_ref(), b"x", "expired items are left out");
                seen.push((key.pk, key.sk));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let unique_seen: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique_seen.len(), seen.len(), "each item once");
    assert_eq!(unique_seen, want, "every live item of the table");
    assert_eq!(
        kind(&store.scan(Table::Effects, Some("no cursor"), 5).await.map(|_| ())),
        Some(ErrorKind::InvalidInput),
        "a cursor the backend did not make is refused"
    );
}
