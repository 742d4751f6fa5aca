//! Accepting a submission durably: classify and precheck it, find
//! duplicates, encrypt it, and commit payload + record + dedupe keys +
//! queue pointer through the [`IntakeJournal`] — and only then answer.
//!
//! Shared by the HTTP and MLLP intakes.

use crate::Services;
use bytes::Bytes;
use clearway_core::crypto;
use clearway_core::feed;
use clearway_core::ports::{Commit, Condition, Key, WriteOp};
use clearway_core::records::{
    AckRecord, DedupeKind, DedupeRecord, Format, Pointer, Status, TransactionRecord, dedupe_key, timestamp,
};
use clearway_core::systems::{self, OnError, QueueEntry};
use clearway_core::telemetry;
use clearway_core::{BlobKey, ErrorKind, PartnerId, PortError, TransactionId};
use clearway_formats::hl7;
use clearway_formats::x12::build::{self, Controls};
use clearway_formats::x12::isa::{IsaError, parse_isa};
use time::OffsetDateTime;
use tracing::Instrument;

/// How a submission arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Http,
    Mllp,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Http => "http",
            Channel::Mllp => "mllp",
        }
    }
}

/// A submission to accept.
pub struct Submission {
    pub partner: PartnerId,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub channel: Channel,
    /// The caller's W3C `traceparent` (`None` when absent or not valid: a
    /// new trace starts).
    pub traceparent: Option<String>,
    /// The request's audit event, to stage in the intake's commit (given
    /// the new transaction's id; `None` from it: nothing to stage).
    pub audit: Option<AuditStage>,
}

/// Builds the write that stages a request's audit event with its intake.
pub type AuditStage = Box<dyn FnOnce(&TransactionId) -> Option<WriteOp> + Send + Sync>;

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("partner", &self.partner)
            .field("bytes", &self.body.len())
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Why a submission is refused at the door (nothing was stored).
#[derive(Debug)]
pub enum Refusal {
    /// 400: the body is not what it claims to be, or its envelope is broken.
    BadRequest { title: &'static str, detail: String, ta1: Option<String> },
    /// 415.
    UnsupportedMediaType(String),
    /// 503 or 429: try again later.
    Unavailable { retry_after_secs: u64, throttled: bool },
    /// 409: the same idempotency key is being processed.
    IdempotencyInFlight,
    /// 422: the idempotency key was used with a different body.
    IdempotencyMismatch,
    /// 422: a FHIR resource Clearway does not process itself and that no
    /// route delivers anywhere (nothing was stored).
    NoRoute { resource: String },
}

/// What happened to an accepted-or-known submission.
#[derive(Debug)]
pub enum Outcome {
    /// Stored and queued now.
    Accepted {
        record: Box<TransactionRecord>,
        hl7_ack: Option<String>,
        /// Whether the request's audit event was committed with it.
        staged_audit: bool,
    },
    /// The same idempotency key and body were seen: the first answer again.
    Replayed { status: u16, body: String },
    /// A duplicate of an earlier transaction, not processed again.
    Duplicate { reason: DuplicateReason, original: TransactionId, status: Option<Status>, ack: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateReason {
    /// Same ISA13 for the same sender and receiver within the window.
    Interchange,
    /// Same MSH-10 for the same sending application and facility.
    Message,
    /// Same content within the window.
    Content,
}

impl DuplicateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateReason::Interchange => "duplicate-interchange",
            DuplicateReason::Message => "duplicate-message",
            DuplicateReason::Content => "duplicate-content",
        }
    }
}

/// What the precheck learned about a body.
struct Prechecked {
    /// ISA sender, receiver, ISA13 (first interchange) and the header.
    interchange: Option<(String, String, String, Box<clearway_formats::x12::IsaHeader>)>,
    /// Sending application, facility, MSH-10 (single message only).
    message: Option<(String, String, String)>,
    /// The HL7 ACK to answer with on MLLP, built after acceptance.
    hl7: bool,
    /// A FHIR resource's type and id.
    fhir: Option<(String, String)>,
}

fn strip(body: &[u8]) -> &[u8] {
    hl7::trim_leading(body)
}

/// The sniffed format; an NCPDP batch file (STX 00) counts as NCPDP.
fn sniffed(body: &[u8]) -> Option<clearway_formats::detect::Format> {
    if clearway_formats::ncpdp::batch::is_batch(body) {
        return Some(clearway_formats::detect::Format::Ncpdp);
    }
    clearway_formats::detect::sniff(body)
}

/// Media types we accept, and what they mean.
fn classify(content_type: Option<&str>, body: &[u8]) -> Result<Format, Refusal> {
    let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/edi-x12") | Some("application/x12") => Ok(Format::X12),
        Some("application/hl7-v2") | Some("x-application/hl7-v2+er7") | Some("application/hl7-v2+er7") => {
            Ok(Format::Hl7)
        }
        Some("application/fhir+json") | Some("application/json") => Ok(Format::Fhir),
        Some("application/vnd.ncpdp.batch") => Ok(Format::Ncpdp),
        None | Some("text/plain") | Some("application/octet-stream") | Some("") => match sniffed(body) {
            Some(clearway_formats::detect::Format::X12) => Ok(Format::X12),
            Some(clearway_formats::detect::Format::Hl7v2) => Ok(Format::Hl7),
            Some(clearway_formats::detect::Format::Fhir) => Ok(Format::Fhir),
            Some(clearway_formats::detect::Format::Ncpdp) if clearway_formats::ncpdp::batch::is_batch(body) => {
                Ok(Format::Ncpdp)
            }
            Some(clearway_formats::detect::Format::Ncpdp) => Err(Refusal::BadRequest {
                title: "NCPDP D.0 goes to the pharmacy switch path",
                detail: "send one D.0 transmission to POST /v1/pharmacy (real time), or an NCPDP Batch Standard file"
                    .into(),
                ta1: None,
            }),
            None => Err(Refusal::BadRequest {
                title: "Unrecognized content",
                detail: "the body is not X12, HL7 v2, FHIR JSON or NCPDP D.0".into(),
                ta1: None,
            }),
        },
        Some(other) => Err(Refusal::UnsupportedMediaType(other.chars().take(100).collect())),
    }
}

/// The cheap envelope check at the door.
fn precheck(format: Format, body: &[u8], now: OffsetDateTime) -> Result<Prechecked, Refusal> {
    let b = strip(body);
    match format {
        Format::X12 => {
            if !b.starts_with(b"ISA") {
                return Err(Refusal::BadRequest {
                    title: "Invalid X12 envelope",
                    detail: "the body does not start with an ISA segment".into(),
                    ta1: None,
                });
            }
            let h = parse_isa(&b[..b.len().min(clearway_formats::x12::isa::ISA_MAX_SCAN)]).map_err(|e| {
                Refusal::BadRequest {
                    title: "Invalid X12 envelope",
                    detail: match e {
                        IsaError::Truncated => "the ISA segment is truncated".into(),
                        other => other.to_string(),
                    },
                    ta1: None,
                }
            })?;
            if h.is_fatal() {
                let first = h.findings.iter().find(|f| f.code.rejects());
                let detail =
                    first.map_or_else(|| "invalid ISA".to_string(), |f| format!("TA105 {}: {}", f.code, f.message));
                let ta1 = ta1_for(&h, None, body, now);
                return Err(Refusal::BadRequest { title: "Invalid X12 envelope", detail, ta1: Some(ta1) });
            }
            let (s, r, c) = (h.sender_id().to_string(), h.receiver_id().to_string(), h.control_number().to_string());
            Ok(Prechecked { interchange: Some((s, r, c, Box::new(h))), message: None, hl7: false, fhir: None })
        }
        Format::Hl7 => {
            let batch = hl7::split(b, &hl7::Limits::default()).map_err(|e| Refusal::BadRequest {
                title: "Invalid HL7 v2 message",
                detail: e.to_string(),
                ta1: None,
            })?;
            if batch.message_count() == 0 {
                return Err(Refusal::BadRequest {
                    title: "Invalid HL7 v2 message",
                    detail: "no MSH segment".into(),
                    ta1: None,
                });
            }
            let message = if batch.message_count() == 1 {
                batch.messages().next().and_then(|m| {
                    let id = m.control_id()?.into_owned();
                    (!id.is_empty()).then(|| {
                        let app = m.sending_application().map(|v| v.into_owned()).unwrap_or_default();
                        let fac = m.sending_facility().map(|v| v.into_owned()).unwrap_or_default();
                        (app, fac, id)
                    })
                })
            } else {
                None
            };
            Ok(Prechecked { interchange: None, message, hl7: true, fhir: None })
        }
        Format::Ncpdp => {
            // The whole file is checked by the worker (a broken one is
            // answered with an error batch); here only that it is one.
            if !clearway_formats::ncpdp::batch::is_batch(body) {
                return Err(Refusal::BadRequest {
                    title: "Invalid NCPDP batch file",
                    detail: "an NCPDP Batch Standard file starts with its transmission header record (STX 00)".into(),
                    ta1: None,
                });
            }
            Ok(Prechecked { interchange: None, message: None, hl7: false, fhir: None })
        }
        Format::Fhir => {
            let v: serde_json::Value = serde_json::from_slice(b).map_err(|e| Refusal::BadRequest {
                title: "Invalid JSON",
                detail: format!("malformed JSON at line {} column {}", e.line(), e.column()),
                ta1: None,
            })?;
            let Some(kind) = v.get("resourceType").and_then(serde_json::Value::as_str) else {
                return Err(Refusal::BadRequest {
                    title: "Invalid FHIR resource",
                    detail: "the JSON object has no resourceType".into(),
                    ta1: None,
                });
            };
            // A resource type is a name (R4: an upper-case letter, then
            // letters and digits); anything else is not FHIR, and must not
            // reach a URL or a message.
            let is_type = kind.len() <= 64
                && kind.starts_with(|c: char| c.is_ascii_uppercase())
                && kind.bytes().all(|b| b.is_ascii_alphanumeric());
            if !is_type {
                return Err(Refusal::BadRequest {
                    title: "Invalid FHIR resource",
                    detail: "resourceType is not a FHIR resource type name".into(),
                    ta1: None,
                });
            }
            // The id is for `clearway routes test` only: kept when it is a
            // FHIR id (letters, digits, '-', '.'; at most 64).
            let id = v.get("id").and_then(serde_json::Value::as_str).unwrap_or_default();
            let id = if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
                id.to_string()
            } else {
                String::new()
            };
            let kind = kind.to_string();
            Ok(Prechecked { interchange: None, message: None, hl7: false, fhir: Some((kind, id)) })
        }
    }
}

/// A TA1 for an interchange header (rejecting with its first finding, or
/// with `note` when given).
fn ta1_for(
    h: &clearway_formats::x12::IsaHeader,
    note: Option<clearway_formats::x12::codes::Ta105>,
    body: &[u8],
    now: OffsetDateTime,
) -> String {
    let at = time::PrimitiveDateTime::new(now.date(), now.time());
    let controls = Controls::derived(crypto::sha256_hex(body).as_bytes());
    let bytes = match note {
        Some(clearway_formats::x12::codes::Ta105::Duplicate) => build::ta1_duplicate(h, controls, at),
        _ => {
            let report = clearway_formats::x12::analyze::InterchangeReport {
                isa: h.clone(),
                control_number: h.control_number().to_string(),
                sender_id: h.sender_id().to_string(),
                receiver_id: h.receiver_id().to_string(),
                findings: h.findings.iter().map(Into::into).collect(),
                group_count: 0,
                ack: clearway_formats::x12::codes::AckCode::Rejected,
                ta1s: vec![],
                offset: 0,
            };
            build::ta1(&report, controls, at)
        }
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn unavailable(e: &PortError) -> Refusal {
    let throttled = e.kind() == ErrorKind::Throttled;
    Refusal::Unavailable { retry_after_secs: if throttled { 2 } else { 5 }, throttled }
}

fn encode<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

/// The HL7 ACK sent on MLLP at intake: original mode AA/AE/AR (the
/// application acknowledgement), enhanced mode CA/CE/CR (the commit
/// acknowledgement; the application acknowledgement follows through the
/// acknowledgement feed).
pub fn intake_hl7_ack(body: &[u8], transaction: &TransactionId, received: OffsetDateTime) -> String {
    let stamp = hl7_timestamp(received);
    let control = hl7_ack_control(transaction, "c");
    let b = strip(body);
    match hl7::split(b, &hl7::Limits::default()) {
        Ok(batch) => match batch.messages().next() {
            Some(m) => {
                let issues = hl7::validate(m);
                let enhanced = !matches!(m.ack_mode(), hl7::AckMode::Original);
                let code = hl7::AckCode::for_issues(&issues, enhanced);
                hl7::build_ack(
                    m,
                    &hl7::AckSpec { code, control_id: &control, timestamp: &stamp, text: None, issues: &issues },
                )
            }
            None => unparseable_ack(b, &control, &stamp, "no message found"),
        },
        Err(e) => unparseable_ack(b, &control, &stamp, &e.to_string()),
    }
}

/// The AR for a frame refused before storage (no transaction exists).
pub fn refusal_hl7_ack(body: &[u8], why: &str, now: OffsetDateTime) -> String {
    let control = format!("r{}", crypto::sha256_hex(body).get(..19).unwrap_or_default());
    unparseable_ack(strip(body), &control, &hl7_timestamp(now), why)
}

fn unparseable_ack(b: &[u8], control: &str, stamp: &str, why: &str) -> String {
    let issue =
        hl7::Hl7Issue::segment(hl7::Severity::Error, hl7::validate::SEGMENT_SEQUENCE_ERROR, "MSH", 1, why.to_string());
    hl7::build_ack_for_unparseable(
        b,
        &hl7::AckSpec {
            code: hl7::AckCode::ApplicationReject,
            control_id: control,
            timestamp: stamp,
            text: None,
            issues: &[issue],
        },
    )
}

/// `YYYYMMDDHHMMSS` in UTC.
pub fn hl7_timestamp(t: OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// A deterministic ACK control id (MSH-10, at most 20 characters).
pub fn hl7_ack_control(transaction: &TransactionId, kind: &str) -> String {
    let simple: String = transaction.as_str().chars().filter(|c| *c != '-').collect();
    format!("{kind}{}", &simple[simple.len().saturating_sub(19)..])
}

/// Accepts a submission.
pub async fn accept(svc: &Services, sub: Submission) -> Result<Outcome, Refusal> {
    let span = tracing::info_span!(
        "intake",
        otel.kind = "server",
        partner = %sub.partner,
        channel = sub.channel.as_str(),
        bytes = sub.body.len(),
        transaction_id = tracing::field::Empty,
        format = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    telemetry::set_parent(&span, sub.traceparent.as_deref());
    let answer = accept_in(svc, sub).instrument(span.clone()).await;
    span.record(
        "outcome",
        match &answer {
            Ok(Outcome::Accepted { .. }) => "accepted",
            Ok(Outcome::Replayed { .. }) => "replayed",
            Ok(Outcome::Duplicate { reason, .. }) => reason.as_str(),
            Err(Refusal::BadRequest { .. }) => "bad-request",
            Err(Refusal::UnsupportedMediaType(_)) => "unsupported-media-type",
            Err(Refusal::Unavailable { throttled: true, .. }) => "throttled",
            Err(Refusal::Unavailable { .. }) => "unavailable",
            Err(Refusal::IdempotencyInFlight) => "idempotency-in-flight",
            Err(Refusal::IdempotencyMismatch) => "idempotency-mismatch",
            Err(Refusal::NoRoute { .. }) => "no-route",
        },
    );
    answer
}

async fn accept_in(svc: &Services, mut sub: Submission) -> Result<Outcome, Refusal> {
    let now = OffsetDateTime::now_utc();
    let format = classify(sub.content_type.as_deref(), &sub.body)?;
    tracing::Span::current().record("format", format.as_str());
    let checked = match precheck(format, &sub.body, now) {
        Ok(c) => c,
        // On MLLP an HL7 message that cannot be parsed is still stored and
        // answered AR (the sender must get an ACK, and nothing is lost).
        Err(_) if sub.channel == Channel::Mllp && format == Format::Hl7 => {
            Prechecked { interchange: None, message: None, hl7: true, fhir: None }
        }
        Err(r) => return Err(r),
    };
    if let Some(throttled) = svc.backpressure().await {
        return Err(throttled);
    }
    let routed = route(svc, format, &checked, &sub)?;
    if let Some(r) = &routed {
        svc.destinations_have_room(r).await?;
    }
    let body_hash = crypto::sha256_hex(&sub.body);

    // An idempotency key being processed right now: 409.
    let _inflight = match &sub.idempotency_key {
        Some(k) => Some(svc.idempotency_guard(&sub.partner, k).ok_or(Refusal::IdempotencyInFlight)?),
        None => None,
    };

    let partner = &sub.partner;
    let idem_key = sub.idempotency_key.as_deref().map(|k| dedupe_key(partner, DedupeKind::Idempotency(k)));
    let isa_key =
        checked.interchange.as_ref().map(|(s, r, c, _)| dedupe_key(partner, DedupeKind::Interchange(s, r, c)));
    let msh_key = checked.message.as_ref().map(|(a, f, m)| dedupe_key(partner, DedupeKind::Message(a, f, m)));
    let hash_key = dedupe_key(partner, DedupeKind::ContentHash(&body_hash));

    // Duplicates are not looked up first: the commit's conditions
    // (`NotExists` on every dedupe key) find them race-free, and only then
    // is the original looked up. The common case costs no reads.

    let id = TransactionId::new();
    tracing::Span::current().record("transaction_id", id.as_str());
    let traceparent = telemetry::traceparent(&tracing::Span::current(), sub.traceparent.as_deref());
    let blob_key = BlobKey::for_transaction(partner, now.date(), &id);
    let aad = clearway_core::keys::payload_aad(&id, partner);
    let sealed = svc
        .partners
        .seal(partner, &sub.body, aad.as_bytes())
        .instrument(tracing::info_span!("seal"))
        .await
        .map_err(|e| unavailable(&e))?;
    let received_at = timestamp(now);
    let record = TransactionRecord {
        id: id.clone(),
        partner: partner.clone(),
        format,
        content_type: sub.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
        received_at: received_at.clone(),
        received_at_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        status: Status::Received,
        blob_key: blob_key.clone(),
        size_bytes: sub.body.len() as u64,
        channel: sub.channel.as_str().to_string(),
        attempts: 0,
        claims: vec![],
        claim_count: 0,
        issues: vec![],
        ack_ids: vec![],
        documents: 0,
        failure: None,
        updated_at: received_at.clone(),
        destinations: routed.as_ref().map(|r| r.iter().map(|d| d.destination.clone()).collect()).unwrap_or_default(),
        traceparent: traceparent.clone(),
    };
    let hl7_ack = checked.hl7.then(|| intake_hl7_ack(&sub.body, &id, now));
    let accepted_body =
        serde_json::json!({ "transactionId": id, "status": "ACCEPTED", "receivedAt": received_at }).to_string();
    let d = &svc.config.dedupe;
    let until = |w: std::time::Duration| Some(now.unix_timestamp() + w.as_secs() as i64);
    let dedupe = |ack: Option<String>| DedupeRecord {
        transaction: id.clone(),
        request_hash: None,
        response_status: None,
        response_body: None,
        ack,
    };
    let mut writes = vec![WriteOp::Put {
        key: TransactionRecord::key(partner, &id),
        value: encode(&record),
        expires_at: None,
        condition: Condition::NotExists,
        owner: None,
    }];
    // Identical content has an identical ISA13 or MSH-10, so for an
    // interchange or a single HL7 message the control-number key already
    // catches it (and answers with the standard duplicate response); the
    // content hash is the key only for what has no control number. (It
    // is also the most expensive key to store: random, so it dirties a
    // fresh B-tree page per submission.)
    if isa_key.is_none() && msh_key.is_none() {
        writes.push(WriteOp::Put {
            key: hash_key.clone(),
            value: encode(&dedupe(None)),
            expires_at: until(d.content_window),
            condition: Condition::NotExists,
            owner: None,
        });
    }
    if let Some(k) = &isa_key {
        writes.push(WriteOp::Put {
            key: k.clone(),
            value: encode(&dedupe(None)),
            expires_at: until(d.interchange_window),
            condition: Condition::NotExists,
            owner: None,
        });
    }
    if let Some(k) = &msh_key {
        writes.push(WriteOp::Put {
            key: k.clone(),
            value: encode(&dedupe(hl7_ack.clone())),
            expires_at: until(d.message_window),
            condition: Condition::NotExists,
            owner: None,
        });
    }
    if let Some(k) = &idem_key {
        let rec = DedupeRecord {
            transaction: id.clone(),
            request_hash: Some(body_hash.clone()),
            response_status: Some(202),
            response_body: Some(accepted_body.clone()),
            ack: None,
        };
        writes.push(WriteOp::Put {
            key: k.clone(),
            value: encode(&rec),
            expires_at: until(d.idempotency_window),
            condition: Condition::NotExists,
            owner: None,
        });
    }
    if let Some(routed) = &routed {
        let now_us = (now.unix_timestamp_nanos() / 1_000) as u64;
        for d in routed {
            // A batch file's messages in entries of at most
            // MESSAGES_PER_ENTRY, queued in order.
            for chunk in d.messages.chunks(MESSAGES_PER_ENTRY) {
                let entry = QueueEntry {
                    transaction: id.to_string(),
                    partner: partner.to_string(),
                    blob_key: blob_key.to_string(),
                    messages: chunk.to_vec(),
                    control_id: d.control_id.clone(),
                    label: d.label.clone(),
                    format: format.as_str().to_string(),
                    route: d.route.clone(),
                    on_error: d.on_error,
                    on_reject: d.on_reject,
                    queued_at_ms: record.received_at_ms,
                    reason: None,
                    attempts: 0,
                    acknowledged: 0,
                    dead_lettered: 0,
                    traceparent: traceparent.clone(),
                };
                writes.push(WriteOp::Put {
                    key: systems::queue_key(&d.destination, &systems::next_seq(now_us, id.as_str())),
                    value: encode(&entry),
                    expires_at: None,
                    condition: Condition::NotExists,
                    owner: None,
                });
            }
        }
        if writes.len() > clearway_core::ports::MAX_WRITE_OPS {
            return Err(Refusal::BadRequest {
                title: "Too many messages to route in one submission",
                detail: format!(
                    "the routes send this file's messages to more queue entries than one commit holds ({} writes, at most {}); send it in smaller batches",
                    writes.len(),
                    clearway_core::ports::MAX_WRITE_OPS
                ),
                ta1: None,
            });
        }
    }
    // The request's audit event in this same commit, if there is room for
    // it (otherwise the audit layer appends it after the answer).
    let staged = if writes.len() < clearway_core::ports::MAX_WRITE_OPS {
        sub.audit.take().and_then(|stage| stage(&id))
    } else {
        None
    };
    let staged_audit = staged.is_some();
    writes.extend(staged);
    // The commit stores the payload and queues its pointer: the queue
    // hop's producer span, whose context the pointer carries.
    let send = tracing::info_span!("send work", otel.kind = "producer", messaging.operation.type = "send", messaging.destination.name = "work");
    let pointer = encode(&Pointer {
        transaction: id.clone(),
        partner: partner.clone(),
        traceparent: telemetry::traceparent(&send, traceparent.as_deref()),
    });
    let committed = svc
        .ports
        .journal
        .commit(Commit { blob: Some((blob_key, Bytes::from(sealed))), writes, pointer })
        .instrument(send)
        .await;
    match committed {
        Ok(()) => {
            if let Some(routed) = &routed {
                for d in routed {
                    metrics::counter!("clearway_destination_enqueued_total", "destination" => d.destination.clone())
                        .increment(d.messages.len() as u64);
                }
                svc.note_enqueued(routed);
                svc.deliveries.notify_waiters();
            }
            metrics::counter!("clearway_intake_accepted_total", "format" => format.as_str(), "channel" => sub.channel.as_str()).increment(1);
            metrics::counter!("clearway_intake_bytes_total", "format" => format.as_str())
                .increment(sub.body.len() as u64);
            Ok(Outcome::Accepted { record: Box::new(record), hl7_ack, staged_audit })
        }
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
            // A dedupe key exists: answer as the duplicate it is.
            let found =
                find_duplicate(svc, &sub, &checked, &idem_key, &isa_key, &msh_key, &hash_key, &body_hash, now).await?;
            match found {
                Some((layer, original, o)) => {
                    let duplicate = clearway_core::changes::Duplicate {
                        layer: layer.into(),
                        original,
                        format: format.as_str().into(),
                        channel: sub.channel.as_str().into(),
                        size_bytes: sub.body.len() as u64,
                    };
                    svc.realtime.duplicate(&sub.partner, duplicate, now);
                    Ok(o)
                }
                None => Err(Refusal::Unavailable { retry_after_secs: 1, throttled: false }),
            }
        }
        Err(e) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), partner = %partner, "intake commit failed");
            Err(unavailable(&e))
        }
    }
}

/// One destination a submission goes to.
#[derive(Debug)]
pub struct Routed {
    pub destination: String,
    pub route: String,
    pub on_error: OnError,
    pub on_reject: OnError,
    pub messages: Vec<u32>,
    pub control_id: String,
    pub label: String,
}

/// Most messages of one batch file in one queue entry (its list of
/// positions stays far below a state item's size limit).
const MESSAGES_PER_ENTRY: usize = 10_000;

/// FHIR resource types Clearway processes itself (with or without a route).
const PROCESSED_RESOURCES: [&str; 3] = ["Claim", "CoverageEligibilityRequest", "Bundle"];

/// What routing reads in one message of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingFacts {
    /// Position in the payload (HL7 batch files hold several).
    pub index: u32,
    pub format: Format,
    /// HL7: MSH-9.1, MSH-9.2, MSH-4.1, MSH-10. FHIR: the resource type
    /// and id (in `code` and `control`).
    pub code: String,
    pub trigger: String,
    pub facility: String,
    pub control: String,
    /// Whether intake accepts it (HL7: no validation errors, so AA/CA);
    /// only accepted messages are routed.
    pub accepted: bool,
}

impl RoutingFacts {
    pub fn facts<'a>(&'a self, partner: &'a str) -> systems::Facts<'a> {
        match self.format {
            Format::Fhir => systems::Facts::Fhir { partner, resource: &self.code },
            _ => systems::Facts::Hl7 { partner, code: &self.code, trigger: &self.trigger, facility: &self.facility },
        }
    }
}

/// The messages of an HL7 v2 or FHIR body as routing sees them (empty for
/// other formats or an unreadable body).
pub fn routing_facts(format: Format, body: &[u8]) -> Vec<RoutingFacts> {
    let b = strip(body);
    match format {
        Format::Hl7 => {
            let Ok(batch) = hl7::split(b, &hl7::Limits::default()) else { return vec![] };
            batch
                .messages()
                .enumerate()
                .map(|(i, m)| {
                    let t = m.message_type();
                    RoutingFacts {
                        index: i as u32,
                        format,
                        code: t.code.into_owned(),
                        trigger: t.trigger.into_owned(),
                        facility: m.get("MSH-4.1").map(|v| v.decode().into_owned()).unwrap_or_default(),
                        control: m.control_id().map(|c| c.chars().take(64).collect()).unwrap_or_default(),
                        accepted: hl7::AckCode::for_issues(&hl7::validate(m), false) == hl7::AckCode::ApplicationAccept,
                    }
                })
                .collect()
        }
        Format::Fhir => match precheck(Format::Fhir, body, OffsetDateTime::UNIX_EPOCH) {
            Ok(Prechecked { fhir: Some((kind, id)), .. }) => vec![fhir_facts(kind, id)],
            _ => vec![],
        },
        _ => vec![],
    }
}

/// A FHIR resource as routing sees it (type and id, from the precheck).
fn fhir_facts(kind: String, id: String) -> RoutingFacts {
    RoutingFacts {
        index: 0,
        format: Format::Fhir,
        code: kind,
        trigger: String::new(),
        facility: String::new(),
        control: id,
        accepted: true,
    }
}

/// Whether Clearway processes a FHIR resource type itself (with or without
/// a route).
pub fn processed_resource(kind: &str) -> bool {
    PROCESSED_RESOURCES.contains(&kind)
}

/// Where the routes send a submission (`None`: nowhere, or no routes are
/// configured). HL7 v2: each message the intake accepts (AA: no errors)
/// is routed on its own type, trigger and sending facility. FHIR: the
/// resource's type; a type Clearway does not process and that no route
/// takes is refused.
fn route(
    svc: &Services,
    format: Format,
    checked: &Prechecked,
    sub: &Submission,
) -> Result<Option<Vec<Routed>>, Refusal> {
    let systems = &svc.config.systems;
    if systems.routes.is_empty() && format != Format::Fhir {
        return Ok(None);
    }
    if !matches!(format, Format::Hl7 | Format::Fhir) {
        return Ok(None);
    }
    let partner = sub.partner.as_str();
    let mut out: Vec<Routed> = Vec::new();
    // FHIR: the precheck already read the resource's type and id.
    let all = match &checked.fhir {
        Some((kind, id)) => vec![fhir_facts(kind.clone(), id.clone())],
        None => routing_facts(format, &sub.body),
    };
    for m in all.iter().filter(|m| m.accepted) {
        let facts = m.facts(partner);
        for s in systems.select(&facts) {
            match out.iter_mut().find(|r| r.destination == s.destination) {
                Some(r) => r.messages.push(m.index),
                None => out.push(Routed {
                    destination: s.destination.to_string(),
                    route: s.route.to_string(),
                    on_error: s.on_error,
                    on_reject: s.on_reject,
                    messages: vec![m.index],
                    // MSH-10; never a FHIR resource's id (client-assigned
                    // ids are often record numbers).
                    control_id: if format == Format::Hl7 { m.control.clone() } else { String::new() },
                    label: facts.label(),
                }),
            }
        }
    }
    if let Some(m) = all.first().filter(|m| format == Format::Fhir && out.is_empty() && !processed_resource(&m.code)) {
        return Err(Refusal::NoRoute { resource: m.code.clone() });
    }
    Ok((!out.is_empty()).then_some(out))
}

#[allow(clippy::too_many_arguments)]
async fn find_duplicate(
    svc: &Services,
    sub: &Submission,
    checked: &Prechecked,
    idem_key: &Option<Key>,
    isa_key: &Option<Key>,
    msh_key: &Option<Key>,
    hash_key: &Key,
    body_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<(&'static str, TransactionId, Outcome)>, Refusal> {
    let state = &svc.ports.state;
    let get = |k: Key| async move {
        state.get(&k).await.map_err(|e| unavailable(&e)).map(|i| i.and_then(|i| decode::<DedupeRecord>(&i.value)))
    };
    if let Some(k) = idem_key
        && let Some(r) = get(k.clone()).await?
    {
        if r.request_hash.as_deref() != Some(body_hash) {
            return Err(Refusal::IdempotencyMismatch);
        }
        metrics::counter!("clearway_intake_duplicates_total", "reason" => "idempotency-key").increment(1);
        let body = r.response_body.unwrap_or_else(|| serde_json::json!({ "transactionId": r.transaction }).to_string());
        let replayed = Outcome::Replayed { status: r.response_status.unwrap_or(202), body };
        return Ok(Some(("idempotency-key", r.transaction, replayed)));
    }
    let status_of = |id: TransactionId| async move {
        state
            .get(&TransactionRecord::key(&sub.partner, &id))
            .await
            .ok()
            .flatten()
            .and_then(|i| decode::<TransactionRecord>(&i.value))
            .map(|r| r.status)
    };
    if let (Some(k), Some((_, _, _, h))) = (isa_key, &checked.interchange)
        && let Some(r) = get(k.clone()).await?
    {
        metrics::counter!("clearway_intake_duplicates_total", "reason" => "interchange").increment(1);
        let ta1 = ta1_for(h, Some(clearway_formats::x12::codes::Ta105::Duplicate), &sub.body, now);
        record_duplicate_ta1(svc, &sub.partner, &r.transaction, &ta1, body_hash, now).await;
        let status = status_of(r.transaction.clone()).await;
        let original = r.transaction.clone();
        let reason = DuplicateReason::Interchange;
        return Ok(Some((
            "interchange",
            original,
            Outcome::Duplicate { reason, original: r.transaction, status, ack: Some(ta1) },
        )));
    }
    if let Some(k) = msh_key
        && let Some(r) = get(k.clone()).await?
    {
        metrics::counter!("clearway_intake_duplicates_total", "reason" => "message").increment(1);
        let status = status_of(r.transaction.clone()).await;
        let original = r.transaction.clone();
        let reason = DuplicateReason::Message;
        return Ok(Some((
            "message",
            original,
            Outcome::Duplicate { reason, original: r.transaction, status, ack: r.ack },
        )));
    }
    if let Some(r) = get(hash_key.clone()).await? {
        metrics::counter!("clearway_intake_duplicates_total", "reason" => "content").increment(1);
        let status = status_of(r.transaction.clone()).await;
        let ack = if checked.hl7 { hl7_ack_of(svc, hash_key).await } else { None };
        let original = r.transaction.clone();
        let reason = DuplicateReason::Content;
        return Ok(Some(("content", original, Outcome::Duplicate { reason, original: r.transaction, status, ack })));
    }
    Ok(None)
}

async fn hl7_ack_of(svc: &Services, key: &Key) -> Option<String> {
    svc.ports.state.get(key).await.ok().flatten().and_then(|i| decode::<DedupeRecord>(&i.value)).and_then(|r| r.ack)
}

/// Stores the TA1 (TA105 025) answering a duplicate interchange as an
/// acknowledgement of the original transaction, so the partner's feed has
/// it. Its id is derived from the duplicate's content: resubmitting the same
/// duplicate does not add another.
async fn record_duplicate_ta1(
    svc: &Services,
    partner: &PartnerId,
    original: &TransactionId,
    ta1: &str,
    body_hash: &str,
    now: OffsetDateTime,
) {
    let id = format!("{original}-ta1-dup-{}", &body_hash[..12]);
    let mut ack = AckRecord {
        id: id.clone(),
        transaction: original.clone(),
        partner: partner.clone(),
        kind: "ta1".into(),
        content_type: "application/edi-x12".into(),
        created_at: timestamp(now),
        body: ta1.to_string(),
        body_blob: None,
        body_chunks: None,
        body_sealed: None,
        feed_cursor: None,
    };
    let stamp = feed::clock().stamp();
    ack.feed_cursor = Some(stamp.cursor(&id));
    if let Err(e) = svc.partners.seal_ack_inline(&mut ack).await {
        tracing::warn!(error = %clearway_core::error::chain(&e), "could not record duplicate TA1");
        return;
    }
    let mut writes = match ack.feed_ops() {
        Ok(w) => w,
        Err(e) => return tracing::warn!(error = %clearway_core::error::chain(&e), "could not record duplicate TA1"),
    };
    // Written once: a second duplicate of the same interchange finds it.
    if let Some(WriteOp::Put { condition, .. }) = writes.first_mut() {
        *condition = Condition::NotExists;
    }
    match feed::write_stamped(svc.ports.state.clone(), vec![writes], stamp).await {
        Ok(()) => svc.feed.notify_waiters(),
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
        Err(e) => tracing::warn!(error = %clearway_core::error::chain(&e), "could not record duplicate TA1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_media_type_and_sniffing() {
        assert_eq!(classify(Some("application/edi-x12"), b"").ok(), Some(Format::X12));
        assert_eq!(classify(Some("application/fhir+json; charset=utf-8"), b"").ok(), Some(Format::Fhir));
        assert_eq!(classify(Some("text/plain"), b"MSH|^~\\&|").ok(), Some(Format::Hl7));
        assert_eq!(classify(None, b"  {\"a\":1}").ok(), Some(Format::Fhir));
        assert!(matches!(classify(Some("image/png"), b""), Err(Refusal::UnsupportedMediaType(_))));
        assert!(matches!(classify(Some("application/octet-stream"), b"hello"), Err(Refusal::BadRequest { .. })));
    }

    #[test]
    fn broken_isa_is_refused_with_a_ta1() {
        let body = b"ISA*00*x*00*y*ZZ*S*ZZ*R*240101*1200*^*00501*000000001*0*T*:~GS*HC~";
        match precheck(Format::X12, body, OffsetDateTime::now_utc()) {
            Err(Refusal::BadRequest { ta1: Some(t), .. }) => {
                assert!(t.contains("TA1*000000001*240101*1200*R*011"), "{t}")
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a broken ISA was accepted"),
        }
        assert!(matches!(
            precheck(Format::X12, b"GS*HC", OffsetDateTime::now_utc()),
            Err(Refusal::BadRequest { ta1: None, .. })
        ));
    }

    #[test]
    fn hl7_and_json_prechecks() {
        let now = OffsetDateTime::now_utc();
        assert!(precheck(Format::Hl7, b"PID|1", now).is_err());
        assert!(precheck(Format::Fhir, b"{\"resourceType\":\"Claim\"", now).is_err());
        assert!(precheck(Format::Fhir, b"[1]", now).is_err());
        assert!(precheck(Format::Fhir, b"{\"resourceType\":\"Claim\"}", now).is_ok());
    }

    #[test]
    fn ack_controls_are_deterministic_and_short() {
        let t = TransactionId::new();
        assert_eq!(hl7_ack_control(&t, "c"), hl7_ack_control(&t, "c"));
        assert!(hl7_ack_control(&t, "c").len() <= 20);
    }
}
