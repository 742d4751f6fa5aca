//! What Clearway keeps in the [`StateStore`](crate::ports::StateStore): the
//! records, where each lives ([`Key`]s), and the queue pointer. Shared by
//! intake, workers, the fast path and the command line so that every
//! process reads and writes the same shapes.
//!
//! Records hold identifiers and statuses, not payloads: the payload stays
//! encrypted in the blob store. Where a record holds business identifiers
//! that are PHI (a claim's patient control number), the field is
//! [`Sensitive`].

use crate::Sensitive;
use crate::ids::{BlobKey, PartnerId, TransactionId};
use crate::ports::{Key, Table};
use serde::{Deserialize, Serialize};

/// Input format of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    X12,
    Hl7,
    Fhir,
    /// An NCPDP Batch Standard file of D.0 transactions (real-time D.0
    /// goes to the switch path and is not a transaction record).
    Ncpdp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::X12 => "x12",
            Format::Hl7 => "hl7",
            Format::Fhir => "fhir",
            Format::Ncpdp => "ncpdp",
        }
    }
}

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Durable and queued.
    Received,
    /// A worker has it.
    Processing,
    /// Processed; acknowledged as accepted (possibly with some claims rejected).
    Accepted,
    /// Processed; rejected (syntax or envelope errors).
    Rejected,
    /// Failed processing repeatedly; waiting in the dead-letter store.
    DeadLettered,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Accepted | Status::Rejected | Status::DeadLettered)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Processing => "processing",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::DeadLettered => "dead_lettered",
        }
    }
}

/// The status of one claim of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// Stable id: `<transaction>-<n>`.
    pub id: String,
    pub patient_control_number: Sensitive<String>,
    pub payer_id: Option<String>,
    pub total_charge: String,
    /// `accepted`, `rejected` or `routed`.
    pub status: String,
    /// 277CA STC category and status code when rejected (`A7:400`).
    pub status_code: Option<String>,
    /// Where the claim was routed.
    pub destination: Option<String>,
}

/// One issue found while processing (no PHI: codes and positions only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRecord {
    pub severity: String,
    pub code: String,
    pub segment: Option<String>,
    pub position: Option<u32>,
    #[serde(rename = "loop")]
    pub loop_id: Option<String>,
    pub element: Option<String>,
    pub message: String,
}

/// A transaction record (Table::Transactions, pk = partner, sk = id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRecord {
    pub id: TransactionId,
    pub partner: PartnerId,
    pub format: Format,
    pub content_type: String,
    pub received_at: String,
    pub received_at_ms: i64,
    pub status: Status,
    pub blob_key: BlobKey,
    pub size_bytes: u64,
    /// How it arrived: `http` or `mllp`.
    pub channel: String,
    pub attempts: u32,
    #[serde(default)]
    pub claims: Vec<ClaimRecord>,
    /// Count of claims when there are more than the record lists.
    #[serde(default)]
    pub claim_count: usize,
    #[serde(default)]
    pub issues: Vec<IssueRecord>,
    #[serde(default)]
    pub ack_ids: Vec<String>,
    #[serde(default)]
    pub documents: usize,
    /// Why it was dead-lettered.
    pub failure: Option<String>,
    pub updated_at: String,
    /// The systems its messages were routed to at intake (`[[routes]]`),
    /// each destination once; their delivery states are in
    /// [`Table::Deliveries`](crate::ports::Table::Deliveries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// The W3C trace context of its intake (the caller's `traceparent`, or
    /// the intake span's when spans are exported): later stages (replay,
    /// deliveries) continue the trace, and the console shows its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl TransactionRecord {
    pub fn key(partner: &PartnerId, id: &TransactionId) -> Key {
        Key::new(Table::Transactions, partner.as_str(), id.as_str())
    }
}

/// The control numbers a transaction is found by in the console: kind,
/// what it is. They name envelopes and batches, never a patient.
pub const CONTROL_KINDS: &[(&str, &str)] = &[
    ("isa13", "ISA13 interchange control number"),
    ("gs06", "GS06 group control number"),
    ("st02", "ST02 transaction set control number"),
    ("bht03", "BHT03 originator's reference"),
    ("trn02", "TRN02 check or EFT trace number (835)"),
    ("payer", "Payer id (transactions with a claim for it)"),
];

/// Most control numbers indexed per transaction (a file of thousands of
/// sets is found by its ISA13 and first sets).
pub const MAX_CONTROLS_INDEXED: usize = 500;

/// The partition of a control number in the index (`Table::Claims`), or
/// `None` for an unknown kind or a value no X12 element holds.
pub fn control_partition(kind: &str, value: &str) -> Option<String> {
    let value = value.trim();
    let ok = CONTROL_KINDS.iter().any(|(k, _)| *k == kind)
        && !value.is_empty()
        && value.len() <= 80
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    ok.then(|| format!("ctl/{kind}/{value}"))
}

/// One control number's index entry: sort key `<transaction>/<partner>`,
/// so a partition lists its transactions in the order they were received
/// (ids are UUIDv7).
pub fn control_key(partition: String, partner: &PartnerId, id: &TransactionId) -> Key {
    Key::new(Table::Claims, partition, format!("{id}/{partner}"))
}

/// How far a partner's webhook has delivered its acknowledgement feed (the
/// last feed cursor delivered, as text).
pub fn webhook_cursor_key(partner: &PartnerId) -> Key {
    Key::new(Table::Counters, "webhook-cursor", partner.as_str())
}

/// How a partner's webhook deliveries go (`Table::Counters`,
/// `webhook-status`): written when an attempt fails and when one succeeds
/// after failures, so an operator sees the attempts behind an
/// acknowledgement still waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// Failed attempts in a row (0 once one succeeded).
    pub failures: u32,
    /// The last failed attempt: when, and why (a status code or
    /// "unreachable": never the payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due, after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The first success after failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<String>,
}

pub fn webhook_status_key(partner: &PartnerId) -> Key {
    Key::new(Table::Counters, "webhook-status", partner.as_str())
}

/// Attempts kept per acknowledgement (the count of all is kept too).
pub const WEBHOOK_ATTEMPTS_KEPT: usize = 20;
/// How long an acknowledgement's attempts are kept.
pub const WEBHOOK_ATTEMPTS_TTL_SECS: i64 = 90 * 86_400;

/// Each webhook attempt at delivering one acknowledgement
/// (Table::Counters, partition `webhook-attempts/<transaction>`, sort key
/// the acknowledgement id), written by the deliverer as it tries, so an
/// operator sees every try on the transaction's timeline: when, how long,
/// and the status code or "unreachable" (never the payload). The last
/// [`WEBHOOK_ATTEMPTS_KEPT`] and the count of all; it names no partner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempts {
    pub total: u32,
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    pub at: String,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl WebhookAttempts {
    pub fn partition(transaction: &TransactionId) -> String {
        format!("webhook-attempts/{transaction}")
    }
    pub fn key(transaction: &TransactionId, ack_id: &str) -> Key {
        Key::new(Table::Counters, Self::partition(transaction), ack_id)
    }
    /// Adds one, dropping the oldest beyond [`WEBHOOK_ATTEMPTS_KEPT`].
    pub fn push(&mut self, attempt: WebhookAttempt) {
        self.total = self.total.saturating_add(1);
        self.attempts.push(attempt);
        let over = self.attempts.len().saturating_sub(WEBHOOK_ATTEMPTS_KEPT);
        self.attempts.drain(..over);
    }
}

/// The queue pointer: what a worker needs to find a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub transaction: TransactionId,
    pub partner: PartnerId,
    /// The W3C trace context of the intake that queued it
    /// ([`crate::telemetry`]): the worker's spans continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A stored acknowledgement (Table::Acks, pk = transaction, sk = ack id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckRecord {
    /// Stable id: `<transaction>-<kind>-<n>`; the same on every redelivery.
    pub id: String,
    pub transaction: TransactionId,
    pub partner: PartnerId,
    /// `ta1`, `999`, `277ca`, `hl7`, `fhir`.
    pub kind: String,
    pub content_type: String,
    pub created_at: String,
    /// The acknowledgement itself (X12, ER7 or JSON text) until
    /// `Partners::seal_ack` seals it into `body_sealed` or `body_blob`;
    /// stored records written before that keep it here. Read it with
    /// `Partners::ack_body`.
    pub body: String,
    /// Where an acknowledgement larger than [`INLINE_ACK_BYTES`] is kept,
    /// sealed like a payload under the partner's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_blob: Option<BlobKey>,
    /// A body written in chunks as it was built (an 835 forwarded from a
    /// payer's, of any size): `body_blob` is then the prefix of this many
    /// chunks ([`crate::chunked`]), sealed under the partner's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_chunks: Option<u32>,
    /// A smaller acknowledgement sealed under the partner's keys (hex of
    /// the envelope), so shredding the partner's keys erases it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sealed: Option<String>,
    /// The cursor of its feed entry, minted by [`crate::feed::FeedClock`]
    /// when it was first written (records written before cursors were
    /// kept have `None`: their cursor is [`AckRecord::legacy_cursor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_cursor: Option<String>,
}

/// Largest acknowledgement kept in its record. A larger one (the 277CA of
/// an 837 with thousands of claims) goes to the blob store, so that no
/// record outgrows [`crate::ports::MAX_ITEM_BYTES`].
pub const INLINE_ACK_BYTES: usize = 64 * 1024;
/// Largest acknowledgement read back from the blob store.
pub const MAX_ACK_BYTES: u64 = 512 * 1024 * 1024;

/// A record as the JSON bytes the state store keeps.
pub fn encode_json<T: Serialize>(v: &T) -> crate::PortResult<bytes::Bytes> {
    serde_json::to_vec(v)
        .map(bytes::Bytes::from)
        .map_err(|e| crate::PortError::with_cause(crate::ErrorKind::Internal, "encode record", e))
}

/// A record from the JSON bytes the state store keeps.
pub fn decode_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> crate::PortResult<T> {
    serde_json::from_slice(b).map_err(|e| crate::PortError::with_cause(crate::ErrorKind::Internal, "decode record", e))
}

impl AckRecord {
    /// The ack record and its feed entry, as state writes. The record
    /// must carry its [`feed_cursor`](AckRecord::feed_cursor), from a
    /// stamp that lives until these writes return, or from the record
    /// already written ([`AckRecord::feed_cursor_of`]).
    #[cfg(feature = "crypto")]
    pub fn feed_ops(&self) -> crate::PortResult<Vec<crate::ports::WriteOp>> {
        use crate::ports::{Condition, WriteOp};
        let cursor = self.feed_cursor.clone().ok_or_else(|| {
            crate::PortError::new(crate::ErrorKind::Internal, "acknowledgement without a feed cursor")
        })?;
        let entry = FeedEntry {
            cursor: cursor.clone(),
            ack_id: self.id.clone(),
            transaction: self.transaction.clone(),
            kind: self.kind.clone(),
            created_at: self.created_at.clone(),
        };
        Ok(vec![
            WriteOp::Put {
                key: AckRecord::key(&self.transaction, &self.id),
                value: encode_json(self)?,
                expires_at: None,
                condition: Condition::None,
                owner: Some(self.partner.clone()),
            },
            WriteOp::Put {
                key: FeedEntry::key(&self.partner, &cursor),
                value: encode_json(&entry)?,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            },
        ])
    }

    pub fn key(transaction: &TransactionId, id: &str) -> Key {
        Key::new(Table::Acks, transaction.as_str(), id)
    }

    /// The cursor a record written before cursors were kept has: its
    /// creation time.
    pub fn legacy_cursor(&self) -> String {
        let created_ms = time::OffsetDateTime::parse(&self.created_at, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0);
        FeedEntry::cursor(created_ms, &self.id)
    }

    /// The cursor to write this acknowledgement's feed entry under, given
    /// the record `earlier` already stored under its id (a redelivery, a
    /// replay, a payer file applied again): the earlier entry's cursor when
    /// that entry is in the feed (it is rewritten in place, never added
    /// twice); otherwise a cursor of `stamp`, which must live until the
    /// entry is written. An entry written late under an old cursor could
    /// be passed over by a reader already beyond it.
    #[cfg(feature = "crypto")]
    pub async fn feed_cursor_of(
        &self,
        state: &dyn crate::ports::StateStore,
        earlier: Option<&AckRecord>,
        stamp: &crate::feed::FeedStamp,
    ) -> crate::PortResult<String> {
        if let Some(e) = earlier {
            let cursor = e.feed_cursor.clone().unwrap_or_else(|| e.legacy_cursor());
            if state.get(&FeedEntry::key(&self.partner, &cursor)).await?.is_some() {
                return Ok(cursor);
            }
        }
        Ok(stamp.cursor(&self.id))
    }
}

/// An entry of a partner's acknowledgement feed (Table::AckFeed, pk =
/// partner, sk = cursor). The cursor sorts by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEntry {
    pub cursor: String,
    pub ack_id: String,
    pub transaction: TransactionId,
    pub kind: String,
    pub created_at: String,
}

impl FeedEntry {
    /// `<created ms, 13 digits>-<ack id>`.
    pub fn cursor(created_ms: i64, ack_id: &str) -> String {
        format!("{created_ms:013}-{ack_id}")
    }
    pub fn key(partner: &PartnerId, cursor: &str) -> Key {
        Key::new(Table::AckFeed, partner.as_str(), cursor)
    }
}

/// A dead letter (Table::DeadLetters, pk = partner, sk = transaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub transaction: TransactionId,
    pub partner: PartnerId,
    pub reason: String,
    pub attempts: u32,
    pub dead_lettered_at: String,
    pub dead_lettered_at_ms: i64,
    /// The payers its claims name (2010BB NM109 / `Claim.insurer`), at most
    /// [`MAX_DEAD_LETTER_PAYERS`], so an operator can replay a payer's
    /// dead letters; empty when the payload could not be read or names none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payers: Vec<String>,
}

/// Most payers a dead letter lists.
pub const MAX_DEAD_LETTER_PAYERS: usize = 20;

impl DeadLetter {
    pub fn key(partner: &PartnerId, id: &TransactionId) -> Key {
        Key::new(Table::DeadLetters, partner.as_str(), id.as_str())
    }
    /// All partners' dead letters are also indexed under one partition so an
    /// operator can list them without knowing the partners.
    pub fn index_key(id: &TransactionId) -> Key {
        Key::new(Table::DeadLetters, "*", id.as_str())
    }
    /// Whether its claims name `payer` (ids compared without case); an
    /// empty `payer` selects every dead letter.
    pub fn names_payer(&self, payer: &str) -> bool {
        let payer = payer.trim();
        payer.is_empty() || self.payers.iter().any(|p| p.eq_ignore_ascii_case(payer))
    }
    /// How the API and the command line show it (no PHI).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "transactionId": self.transaction,
            "partner": self.partner,
            "reason": self.reason,
            "attempts": self.attempts,
            "deadLetteredAt": self.dead_lettered_at,
            "payers": self.payers,
        })
    }
}

/// What a dedupe key remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DedupeRecord {
    pub transaction: TransactionId,
    /// For idempotency keys: SHA-256 of the request body.
    pub request_hash: Option<String>,
    /// For idempotency keys: the response first given.
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    /// For HL7 MSH-10: the ACK first given.
    pub ack: Option<String>,
}

/// The kinds of dedupe key.
#[derive(Debug, Clone, Copy)]
pub enum DedupeKind<'a> {
    Idempotency(&'a str),
    /// Sender, receiver, ISA13.
    Interchange(&'a str, &'a str, &'a str),
    /// Sending application, facility, MSH-10.
    Message(&'a str, &'a str, &'a str),
    ContentHash(&'a str),
}

/// The state key of a dedupe entry. Values are hashed into the key when
/// they could be long or hold unexpected characters.
pub fn dedupe_key(partner: &PartnerId, kind: DedupeKind<'_>) -> Key {
    let sk = match kind {
        DedupeKind::Idempotency(k) => format!("idem:{k}"),
        DedupeKind::Interchange(s, r, c) => format!("isa:{s}|{r}|{c}"),
        DedupeKind::Message(a, f, m) => format!("msh:{a}|{f}|{m}"),
        DedupeKind::ContentHash(h) => format!("hash:{h}"),
    };
    Key::new(Table::Dedupe, partner.as_str(), sk)
}

/// Partner record (Table::Partners, pk = "partner", sk = id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerRecord {
    pub id: PartnerId,
    pub name: Option<String>,
    /// Version 0 of the partner's key-encryption key, wrapped by the root
    /// key (hex); empty once destroyed (see `keys`).
    pub wrapped_key: String,
    /// May read dead letters and replay them.
    #[serde(default)]
    pub operator: bool,
    #[serde(default)]
    pub revoked: bool,
    pub created_at: String,
    /// Webhook URL for acknowledgement events.
    pub webhook_url: Option<String>,
    /// The webhook signing secret, wrapped by the master key (hex).
    pub webhook_secret: Option<String>,
    /// SHA-256 fingerprints (hex) of the client certificates bound to this
    /// partner: at most two, so a new one can be bound before the old is
    /// removed. A bound partner must present one of them over TLS with its
    /// API key; an MLLP-over-TLS connection presenting one is this partner's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sha256: Vec<String>,
    /// When every key of this partner was destroyed (`clearway keys
    /// shred`): its payloads and stored acknowledgements cannot be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shredded_at: Option<String>,
    /// The AWS KMS key that wraps this partner's key versions from the
    /// first made with it on (`clearway keys rotate --kms-key-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl PartnerRecord {
    pub fn key(id: &PartnerId) -> Key {
        Key::new(Table::Partners, "partner", id.as_str())
    }
}

/// An API key (Table::Partners, pk = "apikey", sk = SHA-256 of the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Whose key: a submitter's partner, or the person or service an
    /// operator, auditor or admin key was issued to.
    pub partner: PartnerId,
    pub created_at: String,
    /// `None` in keys made before roles: the partner's `operator` flag says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// May read PHI bodies (operators).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub phi_view: bool,
    /// May declare break-glass (operators).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// A note for people: who holds it, what for. No secrets, no PHI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl ApiKeyRecord {
    /// A key of `partner` made at `created_at`, with no role, grant or label.
    pub fn new(partner: PartnerId, created_at: String) -> Self {
        ApiKeyRecord {
            partner,
            created_at,
            role: None,
            revoked: false,
            phi_view: false,
            break_glass: false,
            label: None,
        }
    }
    pub fn key(hash: &str) -> Key {
        Key::new(Table::Partners, "apikey", hash)
    }
}

/// Marks a side effect as done (Table::Effects, pk = transaction).
pub fn effect_key(transaction: &TransactionId, what: &str) -> Key {
    Key::new(Table::Effects, transaction.as_str(), what)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 UTC timestamp for records.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Where a routed claim went and what the payer said about it
/// (Table::Batches, pk = `lineage/<transaction>`, sk = claim id): the
/// lineage submitter transaction → claim → payer batch → payer answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// `<payer>/<ISA13>`.
    pub batch: String,
    pub payer: String,
    /// ISA13 (= GS06) of the outbound interchange, ST02 and the claim's
    /// position among the set's claims; absent while the batch is built.
    pub interchange: Option<String>,
    pub set: Option<String>,
    pub position: Option<u32>,
    /// `batched` (taken into a batch), `routed` (its batch is durable),
    /// `payer_accepted`, `payer_rejected`.
    pub status: String,
    /// The payer's 277CA STC (`A2:20`, `A7:562:85`), or `TA1:R:…` /
    /// `999:R` when the payer refused the whole file.
    pub payer_status: Option<String>,
    /// The payer's claim control number (277CA REF*1K, 835 CLP07).
    pub payer_claim_control_number: Option<String>,
    pub updated_at: String,
    /// How the submitter addressed us, to address what we forward to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

/// A submitter's interchange addressing: ISA05/06 and GS02 (theirs),
/// ISA07/08 and GS03 (ours, as they wrote them), ISA15.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyTo {
    pub isa_qualifier: String,
    pub isa_id: String,
    pub gs_id: String,
    pub our_isa_qualifier: String,
    pub our_isa_id: String,
    pub our_gs_id: String,
    pub usage: String,
}

impl Lineage {
    pub fn key(transaction: &str, claim_id: &str) -> Key {
        Key::new(Table::Batches, format!("lineage/{transaction}"), claim_id)
    }
    pub fn partition(transaction: &str) -> String {
        format!("lineage/{transaction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_attempts_keep_the_last_ones_and_count_all() {
        let mut a = WebhookAttempts::default();
        for n in 0..(WEBHOOK_ATTEMPTS_KEPT as u64 + 5) {
            a.push(WebhookAttempt { at: n.to_string(), delivered: false, error: None, duration_ms: n });
        }
        assert_eq!(a.total as usize, WEBHOOK_ATTEMPTS_KEPT + 5);
        assert_eq!(a.attempts.len(), WEBHOOK_ATTEMPTS_KEPT);
        assert_eq!(a.attempts[0].duration_ms, 5, "the oldest dropped");
    }
}
