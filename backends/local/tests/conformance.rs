//! The shared port conformance suites against the embedded backend.

use clearway_core::conformance;
use clearway_local::Local;
use std::sync::Arc;
use std::time::Duration;

fn open() -> (tempfile::TempDir, Local) {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Local::open(dir.path()).expect("open");
    (dir, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_store_conformance() {
    let (_d, l) = open();
    conformance::blob_store(Arc::new(l.blobs.clone())).await;
    // Large objects take the file path; the same contract holds.
    let key = clearway_core::BlobKey::parse("raw/big/object").expect("key");
    let big = bytes::Bytes::from(vec![3u8; 1_000_000]);
    use clearway_core::ports::BlobStore;
    l.blobs.put(&key, big.clone()).await.expect("put big");
    assert_eq!(l.blobs.get(&key, 2_000_000).await.expect("get big"), big);
    assert_eq!(l.blobs.put(&key, big).await.map_err(|e| e.kind()), Err(clearway_core::ErrorKind::AlreadyExists));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_conformance() {
    let (_d, l) = open();
    conformance::work_queue(Arc::new(l.queue.clone()), Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_store_conformance() {
    let (_d, l) = open();
    conformance::state_store(Arc::new(l.state.clone())).await;
}

/// The sealing decorator (encryption at rest) keeps every contract, and
/// the backend underneath never sees a plaintext value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_state_and_journal_conformance() {
    use clearway_core::ports::{Key, StateStore, Table};
    let (_d, l) = open();
    let master = clearway_core::crypto::Key::generate().expect("key");
    let sealer = clearway_core::sealed::Sealer::new(&master);
    let ports = clearway_core::sealed::SealedStore::new(&master, l.ports(), None).ports;
    conformance::state_store(ports.state.clone()).await;
    conformance::intake_journal(ports.journal.clone(), ports.state.clone(), ports.queue.clone(), ports.blobs.clone())
        .await;
    let key = Key::new(Table::Coverage, "P", sealer.index_token("MEMBER123"));
    ports
        .state
        .write(vec![clearway_core::ports::WriteOp::Put {
            key: key.clone(),
            value: bytes::Bytes::from_static(b"{\"name\":\"PLAINTEXT\"}"),
            expires_at: None,
            condition: clearway_core::ports::Condition::None,
            owner: None,
        }])
        .await
        .expect("write");
    let raw = l.state.get(&key).await.expect("get").expect("present");
    assert!(!raw.value.windows(9).any(|w| w == b"PLAINTEXT"), "the backend holds ciphertext");
    assert!(!key.sk.contains("MEMBER123"));
    let opened = ports.state.get(&key).await.expect("get").expect("present");
    assert_eq!(&opened.value[..], b"{\"name\":\"PLAINTEXT\"}");
    // A value moved to another key does not open.
    let other = Key::new(Table::Coverage, "P", "other");
    l.state
        .write(vec![clearway_core::ports::WriteOp::Put {
            key: other.clone(),
            value: raw.value,
            expires_at: None,
            condition: clearway_core::ports::Condition::None,
            owner: None,
        }])
        .await
        .expect("raw write");
    assert!(ports.state.get(&other).await.is_err());
}

/// Every value written through it belongs to one partner.
struct OwnedBy(Arc<dyn clearway_core::ports::StateStore>, clearway_core::PartnerId);

#[async_trait::async_trait]
impl clearway_core::ports::StateStore for OwnedBy {
    async fn get(
        &self,
        key: &clearway_core::ports::Key,
    ) -> clearway_core::PortResult<Option<clearway_core::ports::Item>> {
        self.0.get(key).await
    }
    async fn write(&self, ops: Vec<clearway_core::ports::WriteOp>) -> clearway_core::PortResult<()> {
        use clearway_core::ports::WriteOp;
        let owned = ops
            .into_iter()
            .map(|op| match op {
                WriteOp::Put { key, value, expires_at, condition, .. } => {
                    WriteOp::Put { key, value, expires_at, condition, owner: Some(self.1.clone()) }
                }
                other => other,
            })
            .collect();
        self.0.write(owned).await
    }
    async fn query(
        &self,
        table: clearway_core::ports::Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> clearway_core::PortResult<Vec<(String, clearway_core::ports::Item)>> {
        self.0.query(table, pk, after, limit).await
    }
    async fn scan(
        &self,
        table: clearway_core::ports::Table,
        after: Option<&str>,
        limit: usize,
    ) -> clearway_core::PortResult<clearway_core::ports::ScanPage> {
        self.0.scan(table, after, limit).await
    }
}

/// Values sealed under a partner's keys keep every contract too; the
/// backend holds `CWP` envelopes naming the partner; after a shred they
/// read as absent (erased) while another partner's, in the same
/// partition, still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_sealed_state_conformance_and_shred() {
    use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
    let (_d, l) = open();
    let master = clearway_core::crypto::Key::generate().expect("key");
    let sealed = clearway_core::sealed::SealedStore::new(&master, l.ports(), None);
    let (a, b) = (clearway_core::PartnerId::new("alpha").unwrap(), clearway_core::PartnerId::new("bravo").unwrap());
    sealed.partners.add(&a, None, false).await.expect("add");
    sealed.partners.add(&b, None, false).await.expect("add");
    conformance::state_store(Arc::new(OwnedBy(sealed.ports.state.clone(), a.clone()))).await;

    let put = |sk: &str, owner: &clearway_core::PartnerId| WriteOp::Put {
        key: Key::new(Table::Claims, "pcn:shared", sk),
        value: bytes::Bytes::from(format!("{{\"note\":\"PLAINTEXT {sk}\"}}")),
        expires_at: None,
        condition: Condition::None,
        owner: Some(owner.clone()),
    };
    sealed.ports.state.write(vec![put("a1", &a), put("b1", &b)]).await.expect("write");
    // Inferred from the partition: a transaction record of bravo's.
    let tx = Key::new(Table::Transactions, "bravo", "tx1");
    sealed
        .ports
        .state
        .write(vec![WriteOp::Put {
            key: tx.clone(),
            value: bytes::Bytes::from_static(b"{}"),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        }])
        .await
        .expect("write");
    for (key, owner) in [(Key::new(Table::Claims, "pcn:shared", "a1"), "alpha"), (tx.clone(), "bravo")] {
        let raw = l.state.get(&key).await.expect("get").expect("present");
        let header = [b"CWP".as_slice(), &[owner.len() as u8], owner.as_bytes()].concat();
        assert!(raw.value.starts_with(&header), "{key:?}");
        assert!(!raw.value.windows(9).any(|w| w == b"PLAINTEXT"));
    }
    sealed.partners.keys().shred(&a).await.expect("shred");
    assert!(sealed.ports.state.get(&Key::new(Table::Claims, "pcn:shared", "a1")).await.expect("get").is_none());
    let left = sealed.ports.state.query(Table::Claims, "pcn:shared", None, 10).await.expect("query");
    assert_eq!(left.iter().map(|(sk, _)| sk.as_str()).collect::<Vec<_>>(), ["b1"]);
    assert!(sealed.ports.state.get(&tx).await.expect("get").is_some());
    // A shredded partner's records cannot be written any more.
    let refused = sealed.ports.state.write(vec![put("a2", &a)]).await;
    assert_eq!(refused.map_err(|e| e.kind()), Err(clearway_core::ErrorKind::Unavailable));
}

/// A record sealed under a version another process made moments ago is
/// read, not taken for erased: keys cached without that version are
/// reloaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_rotated_elsewhere_is_loaded_not_taken_for_erased() {
    use clearway_core::ports::{Condition, Key, Table, WriteOp};
    let (_d, l) = open();
    let master = clearway_core::crypto::Key::generate().expect("key");
    let here = clearway_core::sealed::SealedStore::new(&master, l.ports(), None);
    let elsewhere = clearway_core::sealed::SealedStore::new(&master, l.ports(), None);
    let a = clearway_core::PartnerId::new("alpha").unwrap();
    here.partners.add(&a, None, false).await.expect("add");
    let key = Key::new(Table::Transactions, "alpha", "tx1");
    let put = |v: &'static [u8]| WriteOp::Put {
        key: key.clone(),
        value: bytes::Bytes::from_static(v),
        expires_at: None,
        condition: Condition::None,
        owner: None,
    };
    here.ports.state.write(vec![put(b"{\"v\":0}")]).await.expect("write");
    assert!(here.ports.state.get(&key).await.expect("get").is_some(), "version 0 cached here");
    assert_eq!(elsewhere.partners.keys().rotate(&a, None).await.expect("rotate"), 1);
    elsewhere.ports.state.write(vec![put(b"{\"v\":1}")]).await.expect("write");
    let read = here.ports.state.get(&key).await.expect("get").expect("not erased");
    assert_eq!(&read.value[..], b"{\"v\":1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_conformance() {
    let (_d, l) = open();
    let n = l.notifier.clone();
    conformance::notifier(Arc::new(l.notifier.clone()), move || {
        let n = n.clone();
        async move { n.after(0, 1000).await.expect("read events").into_iter().map(|e| e.event).collect() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_journal_conformance() {
    let (_d, l) = open();
    conformance::intake_journal(
        Arc::new(l.journal.clone()),
        Arc::new(l.state.clone()),
        Arc::new(l.queue.clone()),
        Arc::new(l.blobs.clone()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
    let (_d, l) = open();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let s = l.state.clone();
        tasks.push(tokio::spawn(async move {
            s.write(vec![WriteOp::Put {
                key: Key::new(Table::Counters, "group", format!("{i:05}")),
                value: bytes::Bytes::from_static(b"1"),
                expires_at: None,
                condition: Condition::NotExists,
                owner: None,
            }])
            .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("write");
    }
    let commits = l.db.stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    let jobs = l.db.stats.jobs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(jobs, 2000);
    assert!(commits < 1000, "2000 concurrent writes took {commits} commits: group commit is not batching");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen() {
    use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let l = Local::open(dir.path()).expect("open");
        l.state
            .write(vec![WriteOp::Put {
                key: Key::new(Table::Transactions, "p", "t"),
                value: bytes::Bytes::from_static(b"kept"),
                expires_at: None,
                condition: Condition::NotExists,
                owner: None,
            }])
            .await
            .expect("write");
    }
    let l = Local::open(dir.path()).expect("reopen");
    let got = l.state.get(&Key::new(Table::Transactions, "p", "t")).await.expect("get");
    assert_eq!(got.map(|i| i.value), Some(bytes::Bytes::from_static(b"kept")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_blob_files_are_swept() {
    let (d, l) = open();
    std::fs::write(d.path().join("blobs").join("orphan"), b"x").expect("write orphan");
    assert_eq!(l.blobs.sweep(Duration::ZERO).await.expect("sweep"), 1);
}

// The in-memory fakes run the very same suites.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_blob_store_conformance() {
    conformance::blob_store(Arc::new(clearway_local::MemBlobStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_work_queue_conformance() {
    conformance::work_queue(Arc::new(clearway_local::MemWorkQueue::default()), Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_state_store_conformance() {
    conformance::state_store(Arc::new(clearway_local::MemStateStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_notifier_conformance() {
    let n = clearway_local::MemNotifier::default();
    let seen = n.clone();
    conformance::notifier(Arc::new(n), move || {
        let seen = seen.clone();
        async move { seen.published() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_intake_journal_conformance() {
    let m = clearway_local::Mem::new();
    conformance::intake_journal(
        Arc::new(m.journal.clone()),
        Arc::new(m.state.clone()),
        Arc::new(m.queue.clone()),
        Arc::new(m.blobs.clone()),
    )
    .await;
}

// The outbox journal (the AWS backend's) over the fakes: the same
// contract, and nothing lost or doubled when the send fails.

/// The journal suite over the fakes, with the outbox sending inline or
/// through its batched sender.
async fn outbox_journal_on_fakes(batched: bool) {
    use clearway_core::outbox::OutboxJournal;
    let m = clearway_local::Mem::new();
    let (blobs, state, queue) = (Arc::new(m.blobs.clone()), Arc::new(m.state.clone()), Arc::new(m.queue.clone()));
    let journal = if batched {
        OutboxJournal::batched(blobs.clone(), state.clone(), queue.clone())
    } else {
        OutboxJournal::new(blobs.clone(), state.clone(), queue.clone())
    };
    conformance::intake_journal(Arc::new(journal), state, queue, blobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_journal_conformance() {
    outbox_journal_on_fakes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_outbox_journal_conformance() {
    outbox_journal_on_fakes(true).await;
}

/// A queue whose sends fail while `failing` is set (a crash or an outage
/// between the state write and the send), counted in `calls` when they
/// succeed, each taking `delay` (a network round trip, as to SQS: what
/// commits pile up behind).
struct FailingSends {
    inner: clearway_local::MemWorkQueue,
    failing: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
    delay: Duration,
}

impl FailingSends {
    fn new(inner: clearway_local::MemWorkQueue, failing: bool, delay: Duration) -> Self {
        FailingSends { inner, failing: failing.into(), calls: Default::default(), delay }
    }
}

#[async_trait::async_trait]
impl clearway_core::ports::WorkQueue for FailingSends {
    async fn send(&self, bodies: &[bytes::Bytes]) -> clearway_core::PortResult<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(clearway_core::PortError::new(clearway_core::ErrorKind::Unavailable, "queue send"));
        }
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.inner.send(bodies).await
    }
    async fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> clearway_core::PortResult<Vec<clearway_core::ports::QueueMessage>> {
        self.inner.receive(max, lease, wait).await
    }
    async fn extend(&self, r: &clearway_core::ports::Receipt, lease: Duration) -> clearway_core::PortResult<()> {
        self.inner.extend(r, lease).await
    }
    async fn release(&self, r: &clearway_core::ports::Receipt) -> clearway_core::PortResult<()> {
        self.inner.release(r).await
    }
    async fn ack(&self, r: &[clearway_core::ports::Receipt]) -> clearway_core::PortResult<()> {
        self.inner.ack(r).await
    }
    async fn depth(&self) -> clearway_core::PortResult<clearway_core::ports::QueueDepth> {
        self.inner.depth().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_sweeper_sends_what_a_failed_send_left_exactly_once() {
    use clearway_core::ports::{Commit, Condition, IntakeJournal, Key, StateStore, Table, WorkQueue, WriteOp};
    let m = clearway_local::Mem::new();
    let queue = Arc::new(FailingSends::new(m.queue.clone(), true, Duration::ZERO));
    let journal =
        clearway_core::outbox::OutboxJournal::new(Arc::new(m.blobs.clone()), Arc::new(m.state.clone()), queue.clone());
    let record = Key::new(Table::Transactions, "p", "tx-1");
    let commit = Commit {
        blob: Some((clearway_core::BlobKey::parse("raw/p/tx-1").expect("key"), bytes::Bytes::from_static(b"payload"))),
        writes: vec![WriteOp::Put {
            key: record.clone(),
            value: bytes::Bytes::from_static(b"received"),
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        }],
        pointer: bytes::Bytes::from_static(b"pointer-1"),
    };
    // The send fails after the record is durable: the commit still holds.
    journal.commit(commit.clone()).await.expect("durable despite the failed send");
    assert!(m.state.get(&record).await.expect("get").is_some(), "the record is stored");
    assert!(m.queue.receive(10, Duration::from_secs(5), Duration::from_millis(200)).await.expect("receive").is_empty());
    // A retry of the same commit (a client retry) is a duplicate, not a second transaction.
    let again = journal.commit(commit).await;
    assert_eq!(again.map_err(|e| e.kind()), Err(clearway_core::ErrorKind::PreconditionFailed));
    // The outage ends; the sweeper sends the pointer once.
    queue.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(journal.sweep(0).await.expect("sweep"), 1);
    assert_eq!(journal.sweep(0).await.expect("sweep again"), 0, "the entry is gone");
    let got = m.queue.receive(10, Duration::from_secs(5), Duration::from_millis(200)).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"pointer-1");
    assert!(
        m.queue.receive(10, Duration::from_secs(5), Duration::from_millis(200)).await.expect("receive").is_empty(),
        "sent once"
    );
}

/// Concurrent commits through the batched journal: every pointer is sent
/// exactly once, packed several to a message (JSON arrays the workers
/// read), in far fewer send calls than commits; the sweeper has nothing
/// left to send; with sends failing, the sweeper packs what it resends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_outbox_packs_concurrent_commits_and_loses_none() {
    use clearway_core::ports::{Commit, Condition, IntakeJournal, Key, Table, WorkQueue, WriteOp};
    let m = clearway_local::Mem::new();
    let queue = Arc::new(FailingSends::new(m.queue.clone(), false, Duration::from_millis(5)));
    let journal = Arc::new(clearway_core::outbox::OutboxJournal::batched(
        Arc::new(m.blobs.clone()),
        Arc::new(m.state.clone()),
        queue.clone(),
    ));
    let commit = |n: usize| Commit {
        blob: None,
        writes: vec![WriteOp::Put {
            key: Key::new(Table::Transactions, "p", format!("tx-{n:04}")),
            value: bytes::Bytes::from_static(b"received"),
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        }],
        pointer: bytes::Bytes::from(format!("{{\"n\":{n}}}")),
    };
    let mut tasks = Vec::new();
    for n in 0..400 {
        let (j, c) = (journal.clone(), commit(n));
        tasks.push(tokio::spawn(async move { j.commit(c).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("commit");
    }
    // A flush returns once everything committed before it is sent (its
    // outbox entry removed): nothing is left for a sweep.
    journal.flush().await;
    assert_eq!(journal.sweep(0).await.expect("sweep"), 0, "flushed: no outbox entry left");
    // Read everything back.
    let mut seen = Vec::new();
    let mut messages = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 400 && std::time::Instant::now() < deadline {
        for msg in m.queue.receive(10, Duration::from_secs(30), Duration::from_millis(200)).await.expect("receive") {
            messages += 1;
            let v: serde_json::Value = serde_json::from_slice(&msg.body).expect("JSON");
            match v {
                serde_json::Value::Array(a) => seen.extend(a.into_iter().map(|p| p["n"].as_u64().expect("n"))),
                p => seen.push(p["n"].as_u64().expect("n")),
            }
            m.queue.ack(&[msg.receipt]).await.expect("ack");
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..400).collect::<Vec<u64>>(), "every pointer once");
    let calls = queue.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(messages < 400 && calls < 100, "packed: {messages} messages in {calls} send calls for 400 commits");
    assert_eq!(journal.sweep(0).await.expect("sweep"), 0, "no outbox entry left behind");

    // Sends failing: the commits hold; the sweeper sends them packed.
    queue.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    for n in 400..425 {
        journal.commit(commit(n)).await.expect("durable");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = queue.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(journal.sweep(0).await.expect("sweep"), 25);
    assert_eq!(queue.calls.load(std::sync::atomic::Ordering::SeqCst) - before, 1, "one send call for 25 pointers");
    let got = m.queue.receive(10, Duration::from_secs(30), Duration::from_millis(200)).await.expect("receive");
    assert_eq!(got.len(), 3, "25 pointers in messages of up to 10");
}
