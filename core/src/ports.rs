//! The four ports: every external effect Clearway has goes through one of
//! these narrow traits, each with one conformance suite
//! ([`crate::conformance`]) that every implementation passes — the in-memory
//! fakes, the embedded backend and the AWS backend alike.
//!
//! Limits are modelled on the AWS services behind the AWS backend (S3, SQS,
//! SNS, DynamoDB) so that code written against the embedded backend never
//! relies on something AWS cannot do.
//!
//! A fifth capability, [`IntakeJournal`], commits an accepted transaction
//! (its record, dedupe keys and queue pointer) as one unit: atomically on
//! the embedded backend, with the outbox pattern on AWS.

use crate::error::PortResult;
use crate::ids::{BlobKey, PartnerId};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest object a [`BlobStore`] accepts (the intake bound is lower).
pub const MAX_BLOB_BYTES: u64 = 1 << 30;

/// Write-once storage of raw (encrypted) payloads. Modelled on S3.
///
/// - `put` is **write-once**: if the key exists the call fails with
///   `AlreadyExists` and the stored object is unchanged (S3 `If-None-Match:
///   *`). When `put` returns `Ok`, the object is durable.
/// - `get` returns the whole object, or `NotFound`; an object larger than
///   `max_bytes` is refused with `InvalidInput` rather than read.
/// - Keys never carry PHI (see [`BlobKey`]).
/// - `list` and `replace` exist for key re-wrap (`clearway keys rewrap`),
///   which rewrites an object's header and nothing else.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()>;
    async fn get(&self, key: &BlobKey, max_bytes: u64) -> PortResult<Bytes>;
    async fn exists(&self, key: &BlobKey) -> PortResult<bool>;
    /// Removes an object; removing a missing key succeeds. Used to clean up
    /// after a commit that did not happen. Keys are never reused.
    async fn delete(&self, key: &BlobKey) -> PortResult<()>;
    /// Keys that start with `prefix`, in byte order, after `after` (not
    /// included), at most `limit` (1 to [`MAX_LIST_KEYS`]).
    async fn list(&self, prefix: &str, after: Option<&BlobKey>, limit: usize) -> PortResult<Vec<BlobKey>>;
    /// Overwrites an existing object. Atomic: a reader sees the old bytes
    /// or the new, never a mix and never nothing, also after a crash at any
    /// point; durable when it returns. A missing key is `NotFound`.
    async fn replace(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()>;
}

/// Most keys one [`BlobStore::list`] call returns (the S3 page size).
pub const MAX_LIST_KEYS: usize = 1000;

/// Refuses a [`BlobStore::list`] limit outside 1 to [`MAX_LIST_KEYS`].
pub fn check_list_limit(limit: usize) -> PortResult<()> {
    if (1..=MAX_LIST_KEYS).contains(&limit) {
        Ok(())
    } else {
        Err(crate::PortError::invalid_input("blob list: limit must be 1 to 1000"))
    }
}

/// Most messages per send, receive or ack call (SQS batch limit).
pub const MAX_QUEUE_BATCH: usize = 10;
/// Largest message body (SQS limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Longest lease (SQS maximum visibility timeout, 12 hours).
pub const MAX_LEASE: Duration = Duration::from_secs(12 * 60 * 60);
/// Longest receive wait (SQS long polling).
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// A lease on a received message; valid until the lease expires or the
/// message is received again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A received message.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// Stable id of the message (the same on every delivery).
    pub id: String,
    pub receipt: Receipt,
    pub body: Bytes,
    /// 1 on the first delivery, incremented on each redelivery.
    pub attempt: u32,
}

/// Counts for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting to be received.
    pub visible: u64,
    /// Messages received and leased, not yet acked.
    pub in_flight: u64,
}

/// At-least-once work queue of pointers. Modelled on SQS.
///
/// - `send` takes 1..=[`MAX_QUEUE_BATCH`] bodies of at most
///   [`MAX_MESSAGE_BYTES`]; when it returns, every message is durable.
/// - `receive` returns up to `max` (1..=10) messages, each leased for
///   `lease`; it waits up to `wait` (≤ 20 s) for at least one.
/// - A message whose lease expires without `ack` is delivered again with
///   `attempt` incremented, and its old receipt stops working.
/// - `extend` sets a received message's lease to `lease` from now; `release`
///   makes it visible again at once (its attempt count still grows when it is
///   received again).
/// - `ack` deletes 1..=10 messages; acking an already deleted message
///   succeeds (idempotent). Acking with a stale receipt (the lease expired
///   and the message was received again) may or may not delete the message
///   — SQS promises neither ("the message might not be deleted") — and may
///   succeed or fail with `PreconditionFailed`. Callers ack only once the
///   work is durably done, so either outcome is safe: the other delivery
///   finds the work done. The embedded backend and the fakes leave the
///   message alone.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn send(&self, bodies: &[Bytes]) -> PortResult<()>;
    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> PortResult<Vec<QueueMessage>>;
    async fn extend(&self, receipt: &Receipt, lease: Duration) -> PortResult<()>;
    /// [`WorkQueue::extend`] for up to [`MAX_QUEUE_BATCH`] receipts at once
    /// (one call on SQS); stale receipts are skipped, not errors.
    async fn extend_many(&self, receipts: &[Receipt], lease: Duration) -> PortResult<()> {
        for r in receipts {
            match self.extend(r, lease).await {
                Ok(()) => {}
                Err(e) if e.kind() == crate::ErrorKind::PreconditionFailed => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    async fn release(&self, receipt: &Receipt) -> PortResult<()>;
    async fn ack(&self, receipts: &[Receipt]) -> PortResult<()>;
    async fn depth(&self) -> PortResult<QueueDepth>;
}

/// Largest event body (SNS limit).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most events per publish call (SNS batch limit).
pub const MAX_EVENT_BATCH: usize = 10;

/// Something subscribers want to know about: an acknowledgement produced, a
/// transaction settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable id: publishing the same event twice uses the same id, so
    /// subscribers can drop duplicates.
    pub id: String,
    /// Attributes for subscriber-side filtering (partner, kind). Values never
    /// carry PHI.
    pub attributes: BTreeMap<String, String>,
    /// JSON body (at most [`MAX_EVENT_BYTES`]).
    pub body: Bytes,
}

/// Publishes events to subscribers. Modelled on SNS: at-least-once, no
/// ordering guarantee, 1..=10 events per call; when `publish` returns the
/// events are accepted for delivery.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn publish(&self, events: &[Event]) -> PortResult<()>;
}

/// Logical tables of the state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Transaction records, partitioned by partner.
    Transactions,
    /// Dedupe keys (idempotency keys, ISA13, MSH-10, content hashes).
    Dedupe,
    /// Per-claim status, partitioned by transaction.
    Claims,
    /// Stored acknowledgements, partitioned by transaction.
    Acks,
    /// Each partner's acknowledgement feed, in order.
    AckFeed,
    /// Dead-lettered work, partitioned by partner.
    DeadLetters,
    /// Routing and side-effect markers (one per claim routed).
    Effects,
    /// Partners and their API keys.
    Partners,
    /// Coverage from 834 enrollments, partitioned by payer.
    Coverage,
    /// Payments from 835 remittances, partitioned by partner.
    Payments,
    /// Sequence counters.
    Counters,
    /// Imported code-set releases (ICD-10-CM/PCS, HCPCS, place of service):
    /// one item per release pointing at its blob.
    CodeSets,
    /// The payer round trip: claims waiting for a batch, outbound batches
    /// and their members, claim lineage, payer files and answers.
    Batches,
    /// Pharmacy (NCPDP D.0) transactions on the switch path: each
    /// transmission with its response, and the claim index reversals use.
    Pharmacy,
    /// Deliveries to subscribed systems: each destination's queue and dead
    /// letters, each message's delivery status, the deliverers' leases and
    /// published queue depths.
    Deliveries,
    /// The audit log where it is kept in a state store of its own (the AWS
    /// backend's audit table): events, subtree hashes, checkpoints.
    Audit,
    /// Audit events committed in the same write as an intake, waiting to
    /// be moved into the audit log (the embedded backend's `audit.db`).
    /// Write-only: the embedded store appends each put to its group
    /// commit's one row of staged events (values are JSON lines), which
    /// only the audit log's mover reads; they are not read back by key.
    AuditStaged,
    /// The change feed analytics exports from: events waiting to be
    /// sequenced, sealed batches, the sequence head and each export
    /// destination's watermark (see [`crate::changes`]).
    Changes,
}

impl Table {
    pub const ALL: [Table; 18] = [
        Table::Transactions,
        Table::Dedupe,
        Table::Claims,
        Table::Acks,
        Table::AckFeed,
        Table::DeadLetters,
        Table::Effects,
        Table::Partners,
        Table::Coverage,
        Table::Payments,
        Table::Counters,
        Table::CodeSets,
        Table::Batches,
        Table::Pharmacy,
        Table::Deliveries,
        Table::Audit,
        Table::AuditStaged,
        Table::Changes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Dedupe => "dedupe",
            Table::Claims => "claims",
            Table::Acks => "acks",
            Table::AckFeed => "ack_feed",
            Table::DeadLetters => "dead_letters",
            Table::Effects => "effects",
            Table::Partners => "partners",
            Table::Coverage => "coverage",
            Table::Payments => "payments",
            Table::Counters => "counters",
            Table::CodeSets => "code_sets",
            Table::Batches => "batches",
            Table::Pharmacy => "pharmacy",
            Table::Deliveries => "deliveries",
            Table::Audit => "audit",
            Table::AuditStaged => "audit_staged",
            Table::Changes => "changes",
        }
    }
}

/// The address of an item: table, partition key, sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub table: Table,
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(table: Table, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key { table, pk: pk.into(), sk: sk.into() }
    }
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// JSON value.
    pub value: Bytes,
    /// Starts at 1 and grows by one on every put.
    pub version: u64,
    /// Unix seconds after which the item is treated as absent.
    pub expires_at: Option<i64>,
}

/// The condition a write must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    None,
    /// No live item at the key (expired items count as absent).
    NotExists,
    /// The item exists with exactly this version.
    Version(u64),
}

impl Condition {
    /// Whether the condition holds for an item at `current` version
    /// (`None`: no live item). Every backend decides with this.
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            Condition::None => true,
            Condition::NotExists => current.is_none(),
            Condition::Version(v) => current == Some(v),
        }
    }
}

/// One write of a [`StateStore::write`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        key: Key,
        value: Bytes,
        expires_at: Option<i64>,
        condition: Condition,
        /// The partner whose keys seal the value at rest, so that shredding
        /// that partner's keys makes it unreadable (see
        /// [`crate::sealed`]). `None`: the partner the key's partition names
        /// in a table partitioned by partner, otherwise the deployment's
        /// state key. Backends store values as given and ignore it.
        owner: Option<PartnerId>,
    },
    Delete {
        key: Key,
        condition: Condition,
    },
    /// Checks a condition without writing.
    Check {
        key: Key,
        condition: Condition,
    },
}

/// Most writes per batch (DynamoDB TransactWriteItems limit).
pub const MAX_WRITE_OPS: usize = 100;
/// Largest item value (DynamoDB item limit, minus room for keys).
pub const MAX_ITEM_BYTES: usize = 390 * 1024;
/// Most items per query page.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// Keyed state with conditional writes. Modelled on DynamoDB.
///
/// - `get` returns the live item or `None`; an item past its `expires_at` is
///   absent, whether or not the backend has removed it yet.
/// - `write` applies 1..=[`MAX_WRITE_OPS`] operations **atomically**: all of
///   them or none. If any condition fails the call returns
///   `PreconditionFailed` and nothing is written. Two ops on one key in one
///   batch are `InvalidInput`. When it returns `Ok`, the writes are durable.
/// - `query` returns live items of one partition with sort key greater than
///   `after` (or from the start), in ascending sort-key order, at most
///   `limit` (≤ [`MAX_QUERY_LIMIT`]).
/// - `scan` walks every live item of one table, a page at a time, in an
///   order of the backend's choosing: each item once over a whole walk in
///   which nothing is written. A page may hold fewer than `limit` items (or
///   none) before the end; the end is a page whose `next` is `None`. It is
///   for maintenance passes over all partitions (key re-wraps, censuses),
///   never for a request path.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    async fn get(&self, key: &Key) -> PortResult<Option<Item>>;
    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()>;
    async fn query(&self, table: Table, pk: &str, after: Option<&str>, limit: usize)
    -> PortResult<Vec<(String, Item)>>;
    async fn scan(&self, table: Table, after: Option<&str>, limit: usize) -> PortResult<ScanPage>;
}

/// One page of a [`StateStore::scan`].
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Each item with its partition and sort key.
    pub items: Vec<(Key, Item)>,
    /// Where the next page starts (opaque to callers); `None` at the end.
    pub next: Option<String>,
}

/// The scan cursor of the embedded backends: the last partition and sort
/// key returned (a NUL cannot occur in either).
pub fn scan_cursor(pk: &str, sk: &str) -> String {
    format!("{pk}\0{sk}")
}

/// The partition and sort key a [`scan_cursor`] names.
pub fn parse_scan_cursor(cursor: &str) -> Option<(&str, &str)> {
    cursor.split_once('\0')
}

/// An accepted transaction, ready to commit: its (encrypted) payload, the
/// state writes that record it (transaction record, dedupe keys,
/// idempotency record) and the pointer to queue.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The payload to store; `None` when re-queueing a stored transaction
    /// (a dead-letter replay).
    pub blob: Option<(BlobKey, Bytes)>,
    pub writes: Vec<WriteOp>,
    pub pointer: Bytes,
}

/// Commits accepted transactions so that a transaction is either stored,
/// recorded *and* queued, or not present at all.
///
/// The embedded backend does it in one database transaction (a payload too
/// large to live in the database is written to a file first, and the row
/// that makes it exist is part of the transaction). The AWS backend cannot
/// span S3, DynamoDB and SQS, so it stores the payload, then writes the
/// record (conditionally, in state `received`), then sends the pointer; a
/// sweeper re-sends pointers for records left in `received` too long (the
/// outbox pattern), and workers are idempotent, so a crash between the
/// steps neither loses nor duplicates work.
///
/// `PreconditionFailed` means a condition in `writes` failed (a duplicate):
/// no state was written and nothing was queued; the payload object is not
/// left behind (removed if it had been stored).
#[async_trait]
pub trait IntakeJournal: Send + Sync + 'static {
    async fn commit(&self, commit: Commit) -> PortResult<()>;
}

/// The ports a process works with, cloneable and cheap to pass around.
#[derive(Clone)]
pub struct Ports {
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub notifier: Arc<dyn Notifier>,
    pub state: Arc<dyn StateStore>,
    pub journal: Arc<dyn IntakeJournal>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Checks a write batch against the documented limits (shared by every
/// implementation so they refuse the same things).
pub fn check_write_batch(ops: &[WriteOp]) -> PortResult<()> {
    use crate::error::PortError;
    if ops.is_empty() || ops.len() > MAX_WRITE_OPS {
        return Err(PortError::invalid_input("state write: 1 to 100 operations"));
    }
    let mut keys = std::collections::HashSet::new();
    for op in ops {
        let key = match op {
            WriteOp::Put { key, value, .. } => {
                if value.len() > MAX_ITEM_BYTES {
                    return Err(PortError::invalid_input("state write: item too large"));
                }
                key
            }
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => key,
        };
        if !keys.insert(key) {
            return Err(PortError::invalid_input("state write: two operations on one key"));
        }
    }
    Ok(())
}

/// Checks a send batch against the documented limits.
pub fn check_send_batch(bodies: &[Bytes]) -> PortResult<()> {
    use crate::error::PortError;
    if bodies.is_empty() || bodies.len() > MAX_QUEUE_BATCH {
        return Err(PortError::invalid_input("queue send: 1 to 10 messages"));
    }
    if bodies.iter().any(|b| b.len() > MAX_MESSAGE_BYTES) {
        return Err(PortError::invalid_input("queue send: message too large"));
    }
    Ok(())
}

/// Checks a publish batch against the documented limits.
pub fn check_publish_batch(events: &[Event]) -> PortResult<()> {
    use crate::error::PortError;
    if events.is_empty() || events.len() > MAX_EVENT_BATCH {
        return Err(PortError::invalid_input("publish: 1 to 10 events"));
    }
    if events.iter().any(|e| e.body.len() > MAX_EVENT_BYTES) {
        return Err(PortError::invalid_input("publish: event too large"));
    }
    Ok(())
}
