//! The change feed: what workers record for analytics, in the state store
//! so that both backends carry it.
//!
//! A producer writes one [`ChangeEvent`] under [`pending_key`] **in the same
//! atomic write** as the effect it describes (a transaction turning
//! terminal, a transaction dead-lettered), so the feed holds an event if and
//! only if the effect is durable. Pending events have no order. The
//! exporter (`clearway-analytics`) turns them into a sequence:
//!
//! 1. it reads the pending events and writes them, numbered from the
//!    head's next sequence number, as the chunks of batch `N` under a fresh
//!    attempt id ([`chunk_key`]);
//! 2. one atomic write moves the [`Head`] from `N` to `N + 1` (compare and
//!    set on its version) and puts batch `N`'s [`Manifest`], which names the
//!    attempt whose chunks count (chunks of a losing or crashed attempt are
//!    never read);
//! 3. it deletes the batch's pending events; until that is done the head
//!    says so ([`Head::cleaning`]) and no new batch is sealed, so an event
//!    is in exactly one batch.
//!
//! Sealed batches never change. Each export destination keeps its own
//! watermark ([`watermark_key`]): the next batch it has not written.
//! Events name immutable things (the stored payload, acknowledgement ids)
//! and carry the facts that could change later (the status), so exporting a
//! batch twice writes the same rows.

use crate::ids::{PartnerId, TransactionId};
use crate::ports::{Key, Table};
use serde::{Deserialize, Serialize};

/// Version of the event shape.
pub const EVENT_VERSION: u32 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A transaction was processed: accepted or rejected, its
    /// acknowledgements stored.
    Processed,
    /// A transaction was moved to the dead-letter store.
    DeadLettered,
    /// A real-time request (270, 276) was answered by the fast path; the
    /// event's `transaction` is the request's own id (no transaction
    /// record exists) and [`ChangeEvent::realtime`] holds the exchange.
    RealTime,
    /// A submission was answered as a duplicate of an earlier transaction
    /// and not processed again; the event's `transaction` is a fresh id of
    /// the duplicate submission (no transaction record exists) and
    /// [`ChangeEvent::duplicate`] says which layer caught it and which
    /// transaction it repeats.
    Duplicate,
    /// An outbound payer batch was delivered, or the payer's TA1 or 999
    /// about it was applied: [`ChangeEvent::payer_batch`]. A batch is the
    /// clearinghouse's own, so the event's partner is [`CLEARINGHOUSE`]
    /// and its `transaction` a fresh id.
    PayerBatch,
    /// A payer's 277CA or 835, re-enveloped for a submitter, was stored as
    /// an acknowledgement of the submitter's transaction (`transaction`,
    /// `ack_ids`): [`ChangeEvent::payer_answer`].
    PayerAnswer,
}

/// The partner of [`ChangeKind::PayerBatch`] events.
pub const CLEARINGHOUSE: &str = "_clearinghouse";

/// One change, as a producer records it. No PHI: ids, codes and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub v: u32,
    pub kind: ChangeKind,
    pub partner: PartnerId,
    pub transaction: TransactionId,
    /// When the effect happened (Unix ms).
    pub at_ms: i64,
    /// When the transaction was received (Unix ms); its rows' partition.
    pub received_at_ms: i64,
    /// The transaction's status after the change (`accepted`, `rejected`,
    /// `dead_lettered`).
    pub status: String,
    /// The processing attempt that made the change.
    pub attempts: u32,
    /// The acknowledgements stored with it (immutable records).
    #[serde(default)]
    pub ack_ids: Vec<String>,
    /// Why a transaction was dead-lettered (no PHI: an error's kind and
    /// context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A real-time exchange's facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<Box<RealTime>>,
    /// A duplicate submission's facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Box<Duplicate>>,
    /// An outbound batch's facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_batch: Option<Box<PayerBatch>>,
    /// A payer answer's facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_answer: Option<Box<PayerAnswer>>,
}

impl ChangeEvent {
    /// An event with no facts of a kind's own (`realtime`, `duplicate`,
    /// ... all `None`).
    pub fn plain(
        kind: ChangeKind,
        partner: PartnerId,
        transaction: TransactionId,
        at_ms: i64,
        received_at_ms: i64,
    ) -> Self {
        ChangeEvent {
            v: EVENT_VERSION,
            kind,
            partner,
            transaction,
            at_ms,
            received_at_ms,
            status: String::new(),
            attempts: 0,
            ack_ids: Vec::new(),
            reason: None,
            realtime: None,
            duplicate: None,
            payer_batch: None,
            payer_answer: None,
        }
    }
}

/// An outbound payer batch, when delivered or answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerBatch {
    /// `<payer>/<ISA13>`.
    pub batch: String,
    pub payer: String,
    /// ISA13.
    pub control: u32,
    /// `delivered`, `ta1` or `999`.
    pub step: String,
    pub claims: u64,
    pub bytes: u64,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    /// How the delivery went: `sent`, or `present` (the payer had it
    /// already, after a crash); `None` for an answer.
    pub delivery: Option<String>,
    pub attempts: u32,
    /// The payer's verdict: `TA1:<TA104>:<TA105>`, `999:<AK901>`.
    pub verdict: Option<String>,
}

/// A payer's answer forwarded to a submitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerAnswer {
    pub payer: String,
    /// `277ca` or `835`.
    pub answer: String,
    /// The batch it answers (a 277CA that names one of ours).
    pub batch: Option<String>,
    /// For a 277CA: the ids of the claims it answers, in the order of its
    /// claim loops (2200D).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
}

/// The marker that a payer answer's or batch step's event was written
/// once (an answer file applied again after a crash writes no second one).
pub fn payer_event_seen_key(id: &str) -> Key {
    Key::new(Table::Changes, "payer-seen", id)
}

/// A submission answered as a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The layer that caught it: `idempotency-key` (the same key again),
    /// `interchange` (ISA13 again from the same sender), `message` (MSH-10
    /// again from the same application and facility), `content` (the same
    /// bytes again).
    pub layer: String,
    /// The transaction it repeats.
    pub original: TransactionId,
    /// `x12`, `hl7`, `fhir`, `ncpdp`.
    pub format: String,
    /// `http` or `mllp`.
    pub channel: String,
    pub size_bytes: u64,
}

/// One real-time exchange, as CAQH CORE asks an entity to capture, log,
/// match and report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealTime {
    /// `270`, `276` or `270-fhir`.
    pub txn: String,
    /// From the request's receipt to the answer's (µs).
    pub latency_us: i64,
    /// Where the answer came from: `cache`, `memo`, `payer`, `stale`,
    /// `fallback` (AAA 42 when the payer could not answer), `none` (the
    /// request was rejected before a lookup).
    pub served: String,
    /// The slowest payer call the answer waited for (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<i64>,
    pub ids: CoreIds,
    /// The answer's AAA codes, `<loop>:<AAA03>`.
    #[serde(default)]
    pub aaa: Vec<String>,
}

/// A request's control numbers and trace (Phase I CORE 156: ISA06, ISA08,
/// ISA13, GS02, GS03, GS06, ST02, TRN02 and, if sent, BHT03), and its payer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreIds {
    pub isa06: Option<String>,
    pub isa08: Option<String>,
    pub isa13: Option<String>,
    pub gs02: Option<String>,
    pub gs03: Option<String>,
    pub gs06: Option<String>,
    pub st01: Option<String>,
    pub st02: Option<String>,
    pub bht03: Option<String>,
    pub trn02: Option<String>,
    /// NM109 of the first NM1*PR (loop 2100A).
    pub payer_id: Option<String>,
}

impl ChangeEvent {
    /// The event's pending key: one per transaction and kind, so a
    /// producer that repeats a write repeats the same event.
    pub fn key(&self) -> Key {
        let at = self.at_ms.max(0);
        match (self.kind, self.ack_ids.first()) {
            // A transaction may get several payer answers in one
            // millisecond (a 277CA and an 835): each its own event.
            (ChangeKind::PayerAnswer, Some(ack)) => {
                pending_key(&format!("{at:013}-{}-{}-{ack}", self.transaction, self.kind.as_str()))
            }
            _ => pending_key(&format!("{at:013}-{}-{}", self.transaction, self.kind.as_str())),
        }
    }
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Processed => "processed",
            ChangeKind::DeadLettered => "dead_lettered",
            ChangeKind::RealTime => "realtime",
            ChangeKind::Duplicate => "duplicate",
            ChangeKind::PayerBatch => "payer_batch",
            ChangeKind::PayerAnswer => "payer_answer",
        }
    }
}

/// Partition of the events waiting to be sequenced.
pub const PENDING: &str = "pending";

/// A pending event's key.
pub fn pending_key(sk: &str) -> Key {
    Key::new(Table::Changes, PENDING, sk)
}

/// The sequence head.
pub fn head_key() -> Key {
    Key::new(Table::Changes, "head", "head")
}

/// Partition of batch `n`: its manifest and its chunks.
pub fn batch_partition(n: u64) -> String {
    format!("batch/{n:020}")
}

/// Batch `n`'s manifest.
pub fn manifest_key(n: u64) -> Key {
    Key::new(Table::Changes, batch_partition(n), "manifest")
}

/// Chunk `i` of batch `n` as written by attempt `attempt`.
pub fn chunk_key(n: u64, attempt: &str, i: u32) -> Key {
    Key::new(Table::Changes, batch_partition(n), format!("chunk/{attempt}/{i:06}"))
}

/// An export destination's watermark (`destination` is a stable id of the
/// destination, not its address).
pub fn watermark_key(destination: &str) -> Key {
    Key::new(Table::Changes, "watermark", destination)
}

/// The sequence head (one item).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The next batch to seal.
    pub next_batch: u64,
    /// The sequence number of the next event.
    pub next_seq: u64,
    /// A sealed batch whose pending events may not all be deleted yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaning: Option<u64>,
}

/// A sealed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub batch: u64,
    /// The attempt whose chunks hold the batch.
    pub attempt: String,
    pub chunks: u32,
    /// Sequence numbers of its first and last events.
    pub first_seq: u64,
    pub last_seq: u64,
    pub sealed_at_ms: i64,
}

/// A chunk of a sealed batch: events with their sequence numbers and
/// pending keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub events: Vec<Sequenced>,
}

/// An event with its place in the sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced {
    pub seq: u64,
    /// Its pending key's sort key (deleted once the batch is sealed).
    pub pending: String,
    pub event: ChangeEvent,
}

/// A destination's watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The next batch this destination has not written.
    pub next_batch: u64,
    /// Rows written so far, per table.
    #[serde(default)]
    pub rows: std::collections::BTreeMap<String, u64>,
    pub updated_at_ms: i64,
}
