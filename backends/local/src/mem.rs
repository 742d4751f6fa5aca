//! In-memory fakes of the four ports and the intake journal, for fast unit
//! tests of the services above them. Nothing is durable: a fake is only
//! fit for tests, and it earns that by passing the same conformance suites
//! ([`clearway_core::conformance`]) as the embedded and AWS backends —
//! leases expire and redeliver with a growing attempt count, stale
//! receipts are ignored, writes are atomic and conditional, expired items
//! read as absent.

use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::ports::{
    BlobStore, Commit, Event, IntakeJournal, Item, Key, MAX_QUERY_LIMIT, MAX_QUEUE_BATCH, MAX_RECEIVE_WAIT, Notifier,
    Ports, QueueDepth, QueueMessage, Receipt, ScanPage, StateStore, Table, WorkQueue, WriteOp, check_publish_batch,
    check_send_batch, check_write_batch, parse_scan_cursor, scan_cursor,
};
use clearway_core::{BlobKey, ErrorKind, PortError, PortResult};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> PortResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| PortError::new(ErrorKind::Internal, "in-memory store poisoned"))
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

// ------------------------------------------------------------------ blobs --

/// Write-once objects in a map.
#[derive(Debug, Clone, Default)]
pub struct MemBlobStore {
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
}

#[async_trait]
impl BlobStore for MemBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        if bytes.len() as u64 > clearway_core::ports::MAX_BLOB_BYTES {
            return Err(PortError::invalid_input("blob put: object too large"));
        }
        let mut objects = lock(&self.objects)?;
        if objects.contains_key(key.as_str()) {
            return Err(PortError::new(ErrorKind::AlreadyExists, "blob put: key exists"));
        }
        objects.insert(key.as_str().to_string(), bytes);
        Ok(())
    }

    async fn get(&self, key: &BlobKey, max_bytes: u64) -> PortResult<Bytes> {
        let objects = lock(&self.objects)?;
        let b = objects.get(key.as_str()).ok_or_else(|| PortError::new(ErrorKind::NotFound, "blob get"))?;
        if b.len() as u64 > max_bytes {
            return Err(PortError::invalid_input("blob get: object larger than the bound"));
        }
        Ok(b.clone())
    }

    async fn exists(&self, key: &BlobKey) -> PortResult<bool> {
        Ok(lock(&self.objects)?.contains_key(key.as_str()))
    }

    async fn delete(&self, key: &BlobKey) -> PortResult<()> {
        lock(&self.objects)?.remove(key.as_str());
        Ok(())
    }

    async fn list(&self, prefix: &str, after: Option<&BlobKey>, limit: usize) -> PortResult<Vec<BlobKey>> {
        clearway_core::ports::check_list_limit(limit)?;
        let objects = lock(&self.objects)?;
        let mut keys: Vec<&String> =
            objects.keys().filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a.as_str())).collect();
        keys.sort();
        Ok(keys.into_iter().take(limit).filter_map(|k| BlobKey::parse(k)).collect())
    }

    async fn replace(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        let mut objects = lock(&self.objects)?;
        match objects.get_mut(key.as_str()) {
            Some(b) => {
                *b = bytes;
                Ok(())
            }
            None => Err(PortError::not_found("blob replace")),
        }
    }
}

// ------------------------------------------------------------------ queue --

#[derive(Debug)]
struct Message {
    body: Bytes,
    visible_at: Instant,
    /// The receipt of the current lease, if any.
    receipt: Option<String>,
    attempt: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    /// By id; ids sort in send order.
    messages: BTreeMap<u64, Message>,
    next_id: u64,
    next_receipt: u64,
}

/// A visibility-timeout queue in a map, with SQS's semantics.
#[derive(Debug, Clone, Default)]
pub struct MemWorkQueue {
    state: Arc<Mutex<QueueState>>,
    sent: Arc<tokio::sync::Notify>,
}

fn parse_receipt(r: &Receipt) -> Option<u64> {
    r.0.split_once(':').and_then(|(id, _)| id.parse().ok())
}

impl MemWorkQueue {
    fn take_visible(&self, max: usize, lease: Duration) -> PortResult<Vec<QueueMessage>> {
        let mut st = lock(&self.state)?;
        let now = Instant::now();
        let mut out = Vec::new();
        let QueueState { messages, next_receipt, .. } = &mut *st;
        for (id, m) in messages.iter_mut() {
            if out.len() == max {
                break;
            }
            if m.visible_at > now {
                continue;
            }
            *next_receipt += 1;
            let receipt = format!("{id}:{next_receipt}");
            m.receipt = Some(receipt.clone());
            m.attempt += 1;
            m.visible_at = now + lease;
            out.push(QueueMessage {
                id: id.to_string(),
                receipt: Receipt(receipt),
                body: m.body.clone(),
                attempt: m.attempt,
            });
        }
        Ok(out)
    }

    /// Applies `f` to the message leased under `receipt`, if the lease is
    /// still the current one.
    fn with_lease(&self, receipt: &Receipt, f: impl FnOnce(&mut Message)) -> PortResult<bool> {
        let Some(id) = parse_receipt(receipt) else { return Err(PortError::invalid_input("queue: malformed receipt")) };
        let mut st = lock(&self.state)?;
        match st.messages.get_mut(&id) {
            Some(m) if m.receipt.as_deref() == Some(receipt.0.as_str()) => {
                f(m);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl WorkQueue for MemWorkQueue {
    async fn send(&self, bodies: &[Bytes]) -> PortResult<()> {
        check_send_batch(bodies)?;
        {
            let mut st = lock(&self.state)?;
            let now = Instant::now();
            for b in bodies {
                st.next_id += 1;
                let id = st.next_id;
                st.messages.insert(id, Message { body: b.clone(), visible_at: now, receipt: None, attempt: 0 });
            }
        }
        self.sent.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> PortResult<Vec<QueueMessage>> {
        if max == 0 || max > MAX_QUEUE_BATCH {
            return Err(PortError::invalid_input("queue receive: 1 to 10 messages"));
        }
        let deadline = Instant::now() + wait.min(MAX_RECEIVE_WAIT);
        loop {
            // Registered before looking, so a send in between is not missed.
            let sent = self.sent.notified();
            let got = self.take_visible(max, lease)?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Leases expire without a send: look again at least every 50 ms.
            let nap = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(nap, sent).await;
        }
    }

    async fn extend(&self, receipt: &Receipt, lease: Duration) -> PortResult<()> {
        let applied = self.with_lease(receipt, |m| m.visible_at = Instant::now() + lease)?;
        if applied { Ok(()) } else { Err(PortError::precondition_failed("queue extend: stale receipt")) }
    }

    async fn release(&self, receipt: &Receipt) -> PortResult<()> {
        let applied = self.with_lease(receipt, |m| m.visible_at = Instant::now())?;
        if applied {
            self.sent.notify_waiters();
            Ok(())
        } else {
            Err(PortError::precondition_failed("queue release: stale receipt"))
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> PortResult<()> {
        if receipts.is_empty() || receipts.len() > MAX_QUEUE_BATCH {
            return Err(PortError::invalid_input("queue ack: 1 to 10 receipts"));
        }
        let mut st = lock(&self.state)?;
        for r in receipts {
            let Some(id) = parse_receipt(r) else { continue };
            if st.messages.get(&id).is_some_and(|m| m.receipt.as_deref() == Some(r.0.as_str())) {
                st.messages.remove(&id);
            }
        }
        Ok(())
    }

    async fn depth(&self) -> PortResult<QueueDepth> {
        let st = lock(&self.state)?;
        let now = Instant::now();
        let visible = st.messages.values().filter(|m| m.visible_at <= now).count() as u64;
        Ok(QueueDepth { visible, in_flight: st.messages.len() as u64 - visible })
    }
}

// --------------------------------------------------------------- notifier --

/// Keeps every published event in order, for tests to read.
#[derive(Debug, Clone, Default)]
pub struct MemNotifier {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemNotifier {
    /// Everything published so far.
    pub fn published(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for MemNotifier {
    async fn publish(&self, events: &[Event]) -> PortResult<()> {
        check_publish_batch(events)?;
        lock(&self.events)?.extend(events.iter().cloned());
        Ok(())
    }
}

// ------------------------------------------------------------------ state --

type Partition = BTreeMap<String, Item>;

/// Items in ordered maps, one per (table, partition).
#[derive(Debug, Clone, Default)]
pub struct MemStateStore {
    items: Arc<Mutex<HashMap<(Table, String), Partition>>>,
}

fn live(item: &Item, now: i64) -> bool {
    item.expires_at.is_none_or(|e| e > now)
}

impl MemStateStore {
    fn apply(&self, ops: &[WriteOp]) -> PortResult<()> {
        let now = now_secs();
        let mut items = lock(&self.items)?;
        let current = |items: &HashMap<(Table, String), Partition>, key: &Key| {
            items
                .get(&(key.table, key.pk.clone()))
                .and_then(|p| p.get(&key.sk))
                .filter(|i| live(i, now))
                .map(|i| i.version)
        };
        let mut versions = Vec::with_capacity(ops.len());
        for op in ops {
            let (WriteOp::Put { key, condition, .. }
            | WriteOp::Delete { key, condition }
            | WriteOp::Check { key, condition }) = op;
            let cur = current(&items, key);
            if !condition.holds(cur) {
                return Err(PortError::precondition_failed("state write"));
            }
            versions.push(cur);
        }
        for (op, cur) in ops.iter().zip(versions) {
            match op {
                WriteOp::Put { key, value, expires_at, .. } => {
                    let item =
                        Item { value: value.clone(), version: cur.map_or(1, |v| v + 1), expires_at: *expires_at };
                    items.entry((key.table, key.pk.clone())).or_default().insert(key.sk.clone(), item);
                }
                WriteOp::Delete { key, .. } => {
                    if let Some(p) = items.get_mut(&(key.table, key.pk.clone())) {
                        p.remove(&key.sk);
                    }
                }
                WriteOp::Check { .. } => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StateStore for MemStateStore {
    async fn get(&self, key: &Key) -> PortResult<Option<Item>> {
        let now = now_secs();
        Ok(lock(&self.items)?
            .get(&(key.table, key.pk.clone()))
            .and_then(|p| p.get(&key.sk))
            .filter(|i| live(i, now))
            .cloned())
    }

    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        check_write_batch(&ops)?;
        self.apply(&ops)
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<(String, Item)>> {
        use std::ops::Bound;
        let limit = limit.clamp(1, MAX_QUERY_LIMIT);
        let now = now_secs();
        let items = lock(&self.items)?;
        let Some(p) = items.get(&(table, pk.to_string())) else { return Ok(Vec::new()) };
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        Ok(p.range((lower, Bound::Unbounded))
            .filter(|(_, i)| live(i, now))
            .take(limit)
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect())
    }

    async fn scan(&self, table: Table, after: Option<&str>, limit: usize) -> PortResult<ScanPage> {
        let limit = limit.clamp(1, MAX_QUERY_LIMIT);
        let after = match after.map(parse_scan_cursor) {
            Some(Some((pk, sk))) => Some((pk.to_string(), sk.to_string())),
            Some(None) => return Err(PortError::invalid_input("state scan: not a scan cursor")),
            None => None,
        };
        let now = now_secs();
        let items = lock(&self.items)?;
        let mut all: Vec<(&String, &String, &Item)> = items
            .iter()
            .filter(|((t, _), _)| *t == table)
            .flat_map(|((_, pk), p)| p.iter().map(move |(sk, i)| (pk, sk, i)))
            .filter(|(pk, sk, _)| after.as_ref().is_none_or(|(apk, ask)| (*pk, *sk) > (apk, ask)))
            .collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all.truncate(limit);
        let next = (all.len() == limit).then(|| all.last().map(|(pk, sk, _)| scan_cursor(pk, sk))).flatten();
        Ok(ScanPage {
            items: all
                .into_iter()
                .filter(|(_, _, i)| live(i, now))
                .map(|(pk, sk, i)| (Key::new(table, pk.as_str(), sk.as_str()), i.clone()))
                .collect(),
            next,
        })
    }
}

// ---------------------------------------------------------------- journal --

/// Commits under one lock over the state map, so a commit is all or
/// nothing, as the embedded backend's single transaction is.
#[derive(Debug, Clone)]
pub struct MemIntakeJournal {
    blobs: MemBlobStore,
    state: MemStateStore,
    queue: MemWorkQueue,
    commit: Arc<tokio::sync::Mutex<()>>,
}

#[async_trait]
impl IntakeJournal for MemIntakeJournal {
    async fn commit(&self, commit: Commit) -> PortResult<()> {
        check_write_batch(&commit.writes)?;
        let _one_at_a_time = self.commit.lock().await;
        if let Some((key, bytes)) = &commit.blob {
            self.blobs.put(key, bytes.clone()).await?;
        }
        if let Err(e) = self.state.apply(&commit.writes) {
            if let Some((key, _)) = &commit.blob {
                self.blobs.delete(key).await?;
            }
            return Err(e);
        }
        self.queue.send(std::slice::from_ref(&commit.pointer)).await
    }
}

/// A complete set of in-memory ports.
#[derive(Debug, Clone)]
pub struct Mem {
    pub blobs: MemBlobStore,
    pub queue: MemWorkQueue,
    pub notifier: MemNotifier,
    pub state: MemStateStore,
    pub journal: MemIntakeJournal,
}

impl Default for Mem {
    fn default() -> Self {
        Mem::new()
    }
}

impl Mem {
    pub fn new() -> Self {
        let (blobs, state, queue) = (MemBlobStore::default(), MemStateStore::default(), MemWorkQueue::default());
        let journal = MemIntakeJournal {
            blobs: blobs.clone(),
            state: state.clone(),
            queue: queue.clone(),
            commit: Arc::new(tokio::sync::Mutex::new(())),
        };
        Mem { blobs, queue, notifier: MemNotifier::default(), state, journal }
    }

    /// The ports as trait objects.
    pub fn ports(&self) -> Ports {
        Ports {
            blobs: Arc::new(self.blobs.clone()),
            queue: Arc::new(self.queue.clone()),
            notifier: Arc::new(self.notifier.clone()),
            state: Arc::new(self.state.clone()),
            journal: Arc::new(self.journal.clone()),
        }
    }
}
