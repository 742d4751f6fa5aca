//! Processing one transaction: fetch, decrypt, parse and validate, route
//! claims, store what the transaction said (claims, coverage, payments),
//! build and store acknowledgements, publish them, and record the outcome.
//!
//! Everything is idempotent under redelivery: acknowledgement ids, control
//! numbers and timestamps are derived from the transaction (never from the
//! clock at processing time), so a second run produces byte-identical
//! acknowledgements under the same ids; claim deliveries are marked as done
//! and are idempotent at the destination; state writes are puts of the same
//! values.

use crate::edits::{Editor, Judged};
use crate::route::Router;
use bytes::Bytes;
use clearway_core::changes::{ChangeEvent, ChangeKind};
use clearway_core::config::Config;
use clearway_core::feed;
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Event, Key, MAX_EVENT_BATCH, MAX_WRITE_OPS, Ports, Table, WriteOp};
use clearway_core::records::{
    AckRecord, ClaimRecord, Format, IssueRecord, MAX_CONTROLS_INDEXED, Pointer, Status, TransactionRecord, control_key,
    control_partition, effect_key, timestamp,
};
use clearway_core::telemetry;
use clearway_core::{Claim, ErrorKind, PartnerId, PortError, PortResult, TransactionId};
use clearway_formats::report::Issue;
use clearway_formats::x12::batch::{ClaimFragment, SubmitterInfo};
use clearway_formats::x12::build::{self, ClaimAck, ClaimDecision, Controls, Source};
use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
use clearway_formats::{fhir, hl7};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use time::{OffsetDateTime, PrimitiveDateTime};
use tracing::Instrument;

/// Largest payload a worker reads (the intake bound is lower).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 30;
/// Largest payload whose payers a dead letter lists (see
/// [`clearway_core::records::DeadLetter::payers`]).
const MAX_PAYERS_READ_BYTES: u64 = 64 << 20;
/// Most D.0 transactions in one NCPDP batch file.
pub const MAX_BATCH_DETAILS: usize = 100_000;
/// Claims listed in a transaction record (the rest are counted).
const LISTED_CLAIMS: usize = 1000;
/// Issues listed in a transaction record.
const LISTED_ISSUES: usize = 500;

/// What went wrong processing (retried, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Port(#[from] PortError),
    #[error("claim routing: {0}")]
    Route(#[from] crate::route::RouteError),
    #[error("the queue message is not a Clearway pointer")]
    BadPointer,
    #[error("the payload cannot be decrypted")]
    Decrypt,
}

impl ProcessError {
    /// The reason recorded with a dead letter (no PHI).
    pub fn reason(&self) -> String {
        match self {
            ProcessError::Port(e) => clearway_core::error::chain(e),
            other => other.to_string(),
        }
    }

    /// Our own rate limit said "not yet": not the transaction's fault, so it
    /// does not count towards dead-lettering.
    pub fn is_throttled(&self) -> bool {
        matches!(self, ProcessError::Route(crate::route::RouteError::Throttled))
    }

    /// Clearway's own backend was unavailable, timed out or throttled (an
    /// AWS outage, say): not the transaction's fault either. Such failures
    /// back off and retry without being dead-lettered; on SQS the queue's
    /// redrive policy is the backstop for an outage longer than the
    /// retries.
    pub fn is_backend_outage(&self) -> bool {
        matches!(self, ProcessError::Port(e) if e.is_retryable())
    }
}

/// The processing context.
#[derive(Clone)]
pub struct Processor {
    pub ports: Ports,
    pub partners: Arc<Partners>,
    pub config: Arc<Config>,
    pub router: Arc<Router>,
    /// Claim edits (code sets in force, duplicates).
    pub editor: Editor,
    pub feed: Arc<tokio::sync::Notify>,
    /// Told of every member whose coverage an 834 changed (payer id, member
    /// id), once the change is durable: the fast path drops its cached
    /// answers for them.
    pub coverage_changed: Option<CoverageHook>,
    /// The pharmacy switch path, for the D.0 transactions of NCPDP batch
    /// files.
    pub pharmacy: Arc<clearway_fastpath::FastPath>,
}

/// A claim to deliver: its index among the transaction's claims, its id
/// and its document.
type Delivery = (usize, String, Vec<u8>);

/// See [`Processor::coverage_changed`].
pub type CoverageHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").finish_non_exhaustive()
    }
}

fn encode<T: serde::Serialize>(v: &T) -> PortResult<Bytes> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode record", e))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> PortResult<T> {
    serde_json::from_slice(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode record", e))
}

/// An acknowledgement to store and publish.
struct Ack {
    kind: &'static str,
    content_type: &'static str,
    body: String,
}

/// A claim to decide and route.
struct ClaimWork {
    claim: Claim,
    /// Rejected (the 277CA decision, including an unroutable payer), or to route.
    decision: ClaimDecision,
    /// Its own segments and its submitter, for the payer's 837 batch (X12
    /// claims only).
    fragment: Option<(ClaimFragment, Arc<SubmitterInfo>)>,
}

/// What a format's processing produced.
#[derive(Default)]
struct Outcome {
    accepted: bool,
    claims: Vec<ClaimWork>,
    acks: Vec<Ack>,
    issues: Vec<Issue>,
    documents: usize,
    /// Extra state writes (coverage, payments).
    writes: Vec<WriteOp>,
    /// Members whose coverage the writes change (payer id, member id).
    members: Vec<(String, String)>,
    /// Control numbers the console finds the transaction by (kind, value).
    controls: Vec<(&'static str, String)>,
}

impl Processor {
    /// The pointers in a queue message body: one pointer, or a JSON array
    /// of them (the AWS outbox packs several per message).
    pub fn pointers(body: &[u8]) -> Result<Vec<Pointer>, ProcessError> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(body).map_err(|_| ProcessError::BadPointer),
            _ => serde_json::from_slice(body).map(|p| vec![p]).map_err(|_| ProcessError::BadPointer),
        }
    }

    /// Processes the transaction a pointer names (a no-op when it is
    /// finished or was never committed). `attempt` is the delivery count.
    /// Returns `Ok` when the outcome is durable and the message may be
    /// acked.
    pub async fn process_pointer(&self, ptr: &Pointer, attempt: u32) -> Result<(), ProcessError> {
        let key = TransactionRecord::key(&ptr.partner, &ptr.transaction);
        let Some(item) = self.ports.state.get(&key).await? else {
            // The record does not exist (never committed): nothing to do.
            tracing::warn!(transaction_id = %ptr.transaction, "pointer to a missing transaction dropped");
            return Ok(());
        };
        let record: TransactionRecord = decode(&item.value)?;
        let version = item.version;
        if record.status.is_terminal() {
            return Ok(());
        }
        // The queue hop's consumer span, a child of the intake's (the
        // pointer's trace context, or the record's for older pointers).
        let queued_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64 - record.received_at_ms;
        let span = tracing::info_span!(
            "process",
            otel.kind = "consumer",
            messaging.operation.type = "process",
            messaging.destination.name = "work",
            transaction_id = %record.id,
            partner = %record.partner,
            format = record.format.as_str(),
            attempt,
            since_received_ms = queued_ms.max(0),
            otel.status_code = tracing::field::Empty,
        );
        telemetry::set_parent(&span, ptr.traceparent.as_deref().or(record.traceparent.as_deref()));
        let done = self.process_record(key, record, version, attempt).instrument(span.clone()).await;
        if done.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        done
    }

    /// Processes a non-terminal transaction record at `version`.
    async fn process_record(
        &self,
        key: Key,
        mut record: TransactionRecord,
        mut version: u64,
        attempt: u32,
    ) -> Result<(), ProcessError> {
        if record.status != Status::Processing || record.attempts != attempt {
            record.status = Status::Processing;
            record.attempts = attempt;
            record.updated_at = timestamp(OffsetDateTime::now_utc());
            self.ports
                .state
                .write(vec![WriteOp::Put {
                    key: key.clone(),
                    value: encode(&record)?,
                    expires_at: None,
                    condition: Condition::Version(version),
                    owner: None,
                }])
                .await?;
            version += 1;
        }

        let read = tracing::info_span!("read payload");
        let sealed = self.ports.blobs.get(&record.blob_key, MAX_PAYLOAD_BYTES).instrument(read.clone()).await?;
        let aad = clearway_core::keys::payload_aad(&record.id, &record.partner);
        let payload = match self.partners.open(&record.partner, &sealed, aad.as_bytes()).instrument(read).await {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::InvalidInput => return Err(ProcessError::Decrypt),
            Err(e) => return Err(e.into()),
        };

        let received = OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.received_at_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let at = PrimitiveDateTime::new(received.date(), received.time());
        let (id, format) = (record.id.clone(), record.format);
        let routed = record.destinations.len();
        let clearinghouse =
            (self.config.workers.clearinghouse_name.clone(), self.config.workers.clearinghouse_id.clone());
        let router = self.router.clone();
        let partners = self.partners.clone();
        let claims = ClaimJudge {
            editor: self.editor.clone(),
            rt: tokio::runtime::Handle::current(),
            partner: record.partner.clone(),
            transaction: id.clone(),
            received,
        };
        let mut outcome = if format == Format::Ncpdp {
            self.ncpdp_batch(&record, &payload).await?
        } else {
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| match format {
                    Format::X12 => x12(&payload, &id, at, &clearinghouse, &claims, &router, &partners),
                    Format::Hl7 => Ok(hl7_messages(&payload, &id, received)),
                    Format::Fhir => fhir_resource(&payload, &id, received, &claims, routed),
                    Format::Ncpdp => Err(PortError::new(ErrorKind::Internal, "an NCPDP batch is processed apart")),
                })
            })
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "process payload", e))??
        };

        // Route the claims that were accepted, skipping those already done.
        let route = tracing::info_span!("route claims", claims = outcome.claims.len());
        let (claim_records, mut writes) = self.route_claims(&record, &mut outcome).instrument(route).await?;

        // Route markers, coverage and payments, the claim index, then the
        // acks and their feed entries: all idempotent puts, written in as
        // few commits as the batch limit allows. The acks go in the last
        // one, with their feed cursors minted just before it: a stamp in
        // flight holds every feed reader back, so it covers that write
        // only, not the ones before.
        let store = tracing::info_span!("store outcome", acks = outcome.acks.len());
        let acks = async {
            let mut acks = self.ack_records(&record, &outcome).await?;
            writes.extend(last_write_wins(std::mem::take(&mut outcome.writes)));
            writes.extend(self.claim_index_writes(&record, &claim_records)?);
            // Each claim's payer too: an operator lists a payer's transactions.
            outcome.controls.extend(claim_records.iter().filter_map(|c| c.payer_id.clone()).map(|p| ("payer", p)));
            writes.extend(control_index_writes(&record, &outcome.controls)?);
            let room = MAX_WRITE_OPS.saturating_sub(2 * acks.len());
            let tail = writes.split_off(writes.len().saturating_sub(room));
            for chunk in writes.chunks(MAX_WRITE_OPS) {
                self.ports.state.write(chunk.to_vec()).await?;
            }
            let stamp = feed::clock().stamp();
            let mut last = tail;
            for (ack, earlier) in &mut acks {
                ack.feed_cursor = Some(ack.feed_cursor_of(self.ports.state.as_ref(), earlier.as_ref(), &stamp).await?);
                last.extend(ack.feed_ops()?);
            }
            let last: Vec<Vec<WriteOp>> = last.chunks(MAX_WRITE_OPS).map(<[WriteOp]>::to_vec).collect();
            feed::write_stamped(self.ports.state.clone(), last, stamp).await?;
            Ok::<_, ProcessError>(acks)
        }
        .instrument(store)
        .await?;
        let acks: Vec<AckRecord> = acks.into_iter().map(|(a, _)| a).collect();
        metrics::counter!("clearway_acks_total").increment(acks.len() as u64);
        if let Some(hook) = &self.coverage_changed {
            for (payer, member) in &outcome.members {
                hook(payer, member);
            }
        }

        record.status = if outcome.accepted { Status::Accepted } else { Status::Rejected };
        record.claim_count = claim_records.len();
        record.claims = claim_records.into_iter().take(LISTED_CLAIMS).collect();
        record.issues = outcome.issues.iter().take(LISTED_ISSUES).map(issue_record).collect();
        record.ack_ids = acks.iter().map(|a| a.id.clone()).collect();
        record.documents = outcome.documents;
        record.failure = None;
        record.updated_at = timestamp(OffsetDateTime::now_utc());
        // Published before the record turns terminal: a crash between the
        // two republishes on redelivery (events carry stable ids), whereas
        // the other order would lose the events, since a terminal record
        // is never processed again.
        self.publish(&record.partner, &acks).instrument(tracing::info_span!("publish acks")).await?;
        // The change feed's event goes in the same atomic write as the
        // terminal record: analytics sees the transaction once, and only
        // once it is done.
        let change = ChangeEvent {
            v: clearway_core::changes::EVENT_VERSION,
            kind: ChangeKind::Processed,
            partner: record.partner.clone(),
            transaction: record.id.clone(),
            at_ms: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            received_at_ms: record.received_at_ms,
            status: record.status.as_str().into(),
            attempts: record.attempts,
            ack_ids: record.ack_ids.clone(),
            reason: None,
            realtime: None,
            duplicate: None,
            payer_batch: None,
            payer_answer: None,
        };
        self.ports
            .state
            .write(vec![
                WriteOp::Put {
                    key,
                    value: encode(&record)?,
                    expires_at: None,
                    condition: Condition::Version(version),
                    owner: None,
                },
                WriteOp::Put {
                    key: change.key(),
                    value: encode(&change)?,
                    expires_at: None,
                    condition: Condition::None,
                    owner: None,
                },
            ])
            .await?;
        self.feed.notify_waiters();
        metrics::counter!("clearway_transactions_processed_total", "format" => record.format.as_str(), "status" => record.status.as_str())
            .increment(1);
        let latency_ms = (OffsetDateTime::now_utc() - received).whole_milliseconds().max(0) as f64;
        metrics::histogram!("clearway_transaction_latency_seconds", "format" => record.format.as_str())
            .record(latency_ms / 1000.0);
        Ok(())
    }

    /// An NCPDP Batch Standard file: each detail's D.0 transaction through
    /// the switch path (each recorded under an id derived from the batch's
    /// and its position, so a redelivery answers from the records instead
    /// of deciding again), answered with a response batch; a file that is
    /// not a sound batch is answered with an error batch (transmission type
    /// `E`, the reason in its trailer).
    async fn ncpdp_batch(&self, record: &TransactionRecord, payload: &[u8]) -> Result<Outcome, ProcessError> {
        use clearway_formats::ncpdp::batch::{self, BatchHeader};
        let now = OffsetDateTime::now_utc();
        let stamp = (
            format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day()),
            format!("{:02}{:02}", now.hour(), now.minute()),
        );
        let ours = self.config.workers.clearinghouse_id.clone();
        let mut outcome = Outcome {
            accepted: true,
            claims: Vec::new(),
            acks: Vec::new(),
            issues: Vec::new(),
            documents: 0,
            writes: Vec::new(),
            members: Vec::new(),
            controls: Vec::new(),
        };
        let body = match batch::read_batch(payload, MAX_BATCH_DETAILS) {
            Ok(b) => {
                let mut details = Vec::with_capacity(b.details.len());
                for (n, d) in b.details.iter().enumerate() {
                    let id = record.id.derived(n as u64 + 1);
                    let reply = self.pharmacy.pharmacy_recorded(&record.partner, &id, d.transmission, now).await?;
                    details.push((d.reference.clone(), reply.response));
                }
                outcome.documents = details.len();
                let header = BatchHeader {
                    transmission_type: "R".into(),
                    sender_id: ours,
                    creation_date: stamp.0,
                    creation_time: stamp.1,
                    receiver_id: b.header.sender_id.clone(),
                    ..b.header.clone()
                };
                batch::write_batch(&header, &details, "")
            }
            Err(e) => {
                outcome.accepted = false;
                outcome.issues.push(Issue::error("NCPDP:batch".into(), e.to_string()));
                let header = BatchHeader {
                    transmission_type: "E".into(),
                    sender_id: ours,
                    batch_number: String::new(),
                    creation_date: stamp.0,
                    creation_time: stamp.1,
                    file_type: "P".into(),
                    version: "12".into(),
                    receiver_id: String::new(),
                };
                batch::write_batch(&header, &[], &e.to_string())
            }
        };
        outcome.acks.push(Ack {
            kind: "ncpdp-batch",
            content_type: "application/vnd.ncpdp.batch",
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        Ok(outcome)
    }

    async fn route_claims(
        &self,
        record: &TransactionRecord,
        outcome: &mut Outcome,
    ) -> Result<(Vec<ClaimRecord>, Vec<WriteOp>), ProcessError> {
        // Claims routed on an earlier delivery of this message.
        let mut done: HashSet<String> = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.ports.state.query(Table::Effects, record.id.as_str(), after.as_deref(), 1000).await?;
            if page.is_empty() {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
            done.extend(page.into_iter().map(|(k, _)| k));
        }
        let mut records = Vec::with_capacity(outcome.claims.len());
        let mut batched: Vec<crate::payers::Pending> = Vec::new();
        // Claims still to deliver, per payer in first-seen order: (index
        // into `records`, claim id, document).
        let mut pending: Vec<(String, Vec<Delivery>)> = Vec::new();
        for (n, w) in outcome.claims.iter().enumerate() {
            let claim_id = format!("{}-{}", record.id, n + 1);
            let payer = w.claim.payer_id.clone().unwrap_or_else(|| "UNKNOWN".into());
            let mut rec = ClaimRecord {
                id: claim_id.clone(),
                patient_control_number: w.claim.patient_control_number.clone(),
                payer_id: w.claim.payer_id.clone(),
                total_charge: w.claim.total_charge.to_string(),
                status: "accepted".into(),
                status_code: None,
                destination: None,
            };
            match &w.decision {
                ClaimDecision::Rejected(_) => {
                    rec.status = "rejected".into();
                    rec.status_code = w.decision.status().map(|s| s.to_string());
                }
                ClaimDecision::Accepted if w.fragment.is_some() => {
                    // To the payer's next 837 batch.
                    let payer = self.router.canonical_payer(&payer);
                    let Some((fragment, submitter)) = &w.fragment else { continue };
                    rec.status = "queued".into();
                    rec.destination = Some(format!("batch:{payer}"));
                    batched.push(crate::payers::Pending {
                        claim_id: claim_id.clone(),
                        transaction: record.id.to_string(),
                        partner: record.partner.to_string(),
                        payer: payer.clone(),
                        group: format!("{}|{}", fragment.implementation, fragment.bht06),
                        pcn_token: self.partners.index_token(w.claim.patient_control_number.expose()),
                        key_token: self.partners.index_token(&clearway_formats::x12::batch::correlation_key(
                            w.claim.patient_control_number.expose(),
                            fragment.billing_id(),
                            &w.claim.total_charge.to_string(),
                        )),
                        total_charge: w.claim.total_charge.to_string(),
                        received_at: record.received_at.clone(),
                        fragment: fragment.clone(),
                        submitter: submitter.as_ref().clone(),
                    });
                }
                ClaimDecision::Accepted => {
                    if done.contains(&format!("route:{claim_id}")) {
                        rec.status = "routed".into();
                    } else {
                        let doc = serde_json::json!({
                            "claimId": claim_id,
                            "transactionId": record.id,
                            "partner": record.partner,
                            "claim": w.claim,
                        });
                        let body = serde_json::to_vec(&doc)
                            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode claim", e))?;
                        let at = records.len();
                        match pending.iter_mut().find(|(p, _)| *p == payer) {
                            Some((_, items)) => items.push((at, claim_id.clone(), body)),
                            None => pending.push((payer, vec![(at, claim_id.clone(), body)])),
                        }
                    }
                }
            }
            records.push(rec);
        }
        self.queue_for_batches(record, &batched).await?;
        // Deliver per payer, in bounded batches. The route markers are
        // written with the acks (one commit); a crash before that makes a
        // redelivery deliver again, which the destinations absorb (the
        // outbox file exists; HTTP carries the claim id as Idempotency-Key).
        const DELIVERY_BATCH: usize = 50;
        let mut markers = Vec::new();
        for (payer, items) in pending {
            for batch in items.chunks(DELIVERY_BATCH) {
                let docs: Vec<(String, Vec<u8>)> = batch.iter().map(|(_, id, b)| (id.clone(), b.clone())).collect();
                let destinations = self.router.deliver_many(&payer, &docs).await?;
                for ((at, claim_id, _), destination) in batch.iter().zip(destinations) {
                    let rec = &mut records[*at];
                    rec.status = "routed".into();
                    rec.destination = Some(destination.clone());
                    markers.push(WriteOp::Put {
                        key: effect_key(&record.id, &format!("route:{claim_id}")),
                        value: Bytes::from(destination),
                        expires_at: None,
                        condition: Condition::None,
                        owner: None,
                    });
                }
            }
        }
        Ok((records, markers))
    }

    /// Queues accepted X12 claims for their payers' batches, each only if
    /// it is in no batch yet (a redelivery after the batcher took it must
    /// not queue it again).
    async fn queue_for_batches(&self, record: &TransactionRecord, claims: &[crate::payers::Pending]) -> PortResult<()> {
        use crate::payers::RoundTrip;
        let mut payers: Vec<&str> = claims.iter().map(|c| c.payer.as_str()).collect();
        payers.sort_unstable();
        payers.dedup();
        if !payers.is_empty() {
            self.ports.state.write(payers.iter().map(|p| RoundTrip::payer_index_op(p)).collect()).await?;
        }
        for chunk in claims.chunks(MAX_WRITE_OPS / 2) {
            let mut ops = Vec::with_capacity(chunk.len() * 2);
            for c in chunk {
                ops.extend(RoundTrip::pending_ops(c, record.received_at_ms)?);
            }
            match self.ports.state.write(ops).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    for c in chunk {
                        match self.ports.state.write(RoundTrip::pending_ops(c, record.received_at_ms)?).await {
                            Ok(()) => {}
                            // Already in a batch.
                            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The claim index by patient control number, for claim-status lookups.
    fn claim_index_writes(&self, record: &TransactionRecord, claims: &[ClaimRecord]) -> PortResult<Vec<WriteOp>> {
        let mut ops = Vec::with_capacity(claims.len());
        for c in claims {
            let value = serde_json::json!({
                "claim": c,
                "transactionId": record.id,
                "partner": record.partner,
                "receivedAt": record.received_at,
            });
            ops.push(WriteOp::Put {
                key: Key::new(Table::Claims, self.partners.pcn_partition(c.patient_control_number.expose()), &c.id),
                value: encode(&value)?,
                expires_at: None,
                condition: Condition::None,
                owner: Some(record.partner.clone()),
            });
        }
        Ok(ops)
    }

    /// The acknowledgement records to write (bodies sealed, feed cursors
    /// not yet set), each with the record an earlier attempt stored under
    /// its id.
    async fn ack_records(
        &self,
        record: &TransactionRecord,
        outcome: &Outcome,
    ) -> PortResult<Vec<(AckRecord, Option<AckRecord>)>> {
        // A redelivery (or a dead-letter replay, which starts the attempt
        // count again) finds the acks of the first attempt that stored
        // them: it keeps their creation time and rewrites their feed
        // entries in place instead of adding new ones.
        let mut at = OffsetDateTime::now_utc();
        let mut earlier_first = None;
        if let Some(first) = outcome.acks.first()
            && let Some(item) =
                self.ports.state.get(&AckRecord::key(&record.id, &format!("{}-{}-1", record.id, first.kind))).await?
            && let Ok(earlier) = decode::<AckRecord>(&item.value)
            && let Ok(t) = OffsetDateTime::parse(&earlier.created_at, &time::format_description::well_known::Rfc3339)
        {
            at = t;
            earlier_first = Some(earlier);
        }
        let created = timestamp(at);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut records = Vec::with_capacity(outcome.acks.len());
        for a in &outcome.acks {
            let n = counts.entry(a.kind).or_insert(0);
            *n += 1;
            let id = format!("{}-{}-{}", record.id, a.kind, n);
            let earlier = match &earlier_first {
                None => None,
                Some(e) if e.id == id => Some(e.clone()),
                Some(_) => self
                    .ports
                    .state
                    .get(&AckRecord::key(&record.id, &id))
                    .await?
                    .and_then(|i| decode::<AckRecord>(&i.value).ok()),
            };
            let mut ack = AckRecord {
                id: id.clone(),
                transaction: record.id.clone(),
                partner: record.partner.clone(),
                kind: a.kind.to_string(),
                content_type: a.content_type.to_string(),
                created_at: created.clone(),
                body: a.body.clone(),
                body_blob: None,
                body_chunks: None,
                body_sealed: None,
                feed_cursor: None,
            };
            self.partners.seal_ack(self.ports.blobs.as_ref(), &mut ack).await?;
            records.push((ack, earlier));
        }
        Ok(records)
    }

    async fn publish(&self, partner: &PartnerId, acks: &[AckRecord]) -> PortResult<()> {
        publish_acks(self.ports.notifier.as_ref(), partner, acks).await
    }

    /// Moves a transaction that keeps failing to the dead-letter store.
    pub async fn dead_letter_pointer(&self, ptr: &Pointer, attempts: u32, reason: &str) -> PortResult<()> {
        let key = TransactionRecord::key(&ptr.partner, &ptr.transaction);
        let now = OffsetDateTime::now_utc();
        let found = self.ports.state.get(&key).await?;
        let record = match &found {
            Some(item) => Some(decode::<TransactionRecord>(&item.value)?),
            None => None,
        };
        let payers = match &record {
            Some(r) => self.payers_named(r).await,
            None => Vec::new(),
        };
        let dead = clearway_core::records::DeadLetter {
            transaction: ptr.transaction.clone(),
            partner: ptr.partner.clone(),
            reason: reason.chars().take(500).collect(),
            attempts,
            dead_lettered_at: timestamp(now),
            dead_lettered_at_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
            payers,
        };
        let mut ops = vec![
            WriteOp::Put {
                key: clearway_core::records::DeadLetter::key(&ptr.partner, &ptr.transaction),
                value: encode(&dead)?,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            },
            WriteOp::Put {
                key: clearway_core::records::DeadLetter::index_key(&ptr.transaction),
                value: encode(&dead)?,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            },
        ];
        if let (Some(item), Some(mut record)) = (found, record) {
            record.status = Status::DeadLettered;
            record.failure = Some(dead.reason.clone());
            record.attempts = attempts;
            record.updated_at = timestamp(now);
            let change = ChangeEvent {
                v: clearway_core::changes::EVENT_VERSION,
                kind: ChangeKind::DeadLettered,
                partner: record.partner.clone(),
                transaction: record.id.clone(),
                at_ms: dead.dead_lettered_at_ms,
                received_at_ms: record.received_at_ms,
                status: record.status.as_str().into(),
                attempts,
                ack_ids: Vec::new(),
                reason: Some(dead.reason.clone()),
                realtime: None,
                duplicate: None,
                payer_batch: None,
                payer_answer: None,
            };
            ops.push(WriteOp::Put {
                key,
                value: encode(&record)?,
                expires_at: None,
                condition: Condition::Version(item.version),
                owner: None,
            });
            ops.push(WriteOp::Put {
                key: change.key(),
                value: encode(&change)?,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            });
        }
        self.ports.state.write(ops).await?;
        metrics::counter!("clearway_dead_letters_total", "kind" => "transaction").increment(1);
        tracing::warn!(transaction_id = %ptr.transaction, partner = %ptr.partner, attempts, "transaction dead-lettered");
        Ok(())
    }

    /// The payers a transaction's claims name, best effort (see
    /// [`clearway_core::records::DeadLetter::payers`]): a payload that
    /// cannot be read names none.
    async fn payers_named(&self, record: &TransactionRecord) -> Vec<String> {
        // Not for a payload so large that reading it again may be what kept
        // failing.
        if !matches!(record.format, Format::X12 | Format::Fhir) || record.size_bytes > MAX_PAYERS_READ_BYTES {
            return Vec::new();
        }
        let payload = {
            let Ok(sealed) = self.ports.blobs.get(&record.blob_key, MAX_PAYERS_READ_BYTES * 2).await else {
                return Vec::new();
            };
            let aad = clearway_core::keys::payload_aad(&record.id, &record.partner);
            let Ok(payload) = self.partners.open(&record.partner, &sealed, aad.as_bytes()).await else {
                return Vec::new();
            };
            payload
        };
        let format = record.format;
        tokio::task::spawn_blocking(move || payers_in(format, &payload)).await.unwrap_or_default()
    }
}

/// Publishes acknowledgement events for one partner (ids, kinds and
/// transaction ids only).
pub async fn publish_acks(
    notifier: &dyn clearway_core::ports::Notifier,
    partner: &PartnerId,
    acks: &[AckRecord],
) -> PortResult<()> {
    let events: Vec<Event> = acks
        .iter()
        .map(|a| Event {
            id: a.id.clone(),
            attributes: BTreeMap::from([
                ("partner".to_string(), partner.to_string()),
                ("kind".to_string(), a.kind.clone()),
                ("transaction".to_string(), a.transaction.to_string()),
            ]),
            body: Bytes::from(
                serde_json::json!({ "ackId": a.id, "kind": a.kind, "transactionId": a.transaction, "createdAt": a.created_at })
                    .to_string(),
            ),
        })
        .collect();
    for chunk in events.chunks(MAX_EVENT_BATCH) {
        notifier.publish(chunk).await?;
    }
    Ok(())
}

/// Keeps only the last write to each key, in order: one interchange may
/// carry the same member (or payment) twice, and a state-store batch may
/// not write one key twice.
/// The control-number index entries of a transaction (each distinct
/// number once, at most [`MAX_CONTROLS_INDEXED`]): idempotent puts. They
/// hold no PHI (control numbers, payer ids, the transaction's id), so they
/// are not sealed under the partner's keys; once the partner is shredded
/// they point at records nobody can read, and the search skips those.
fn control_index_writes(record: &TransactionRecord, controls: &[(&'static str, String)]) -> PortResult<Vec<WriteOp>> {
    // The partner is in the sort key; the value does not name it, so the
    // entry stays out of the partner's records (it holds nothing of the
    // partner's to re-seal or shred).
    let value = encode(&serde_json::json!({ "transactionId": record.id, "receivedAt": record.received_at }))?;
    let mut seen = HashSet::new();
    Ok(controls
        .iter()
        .filter_map(|(kind, v)| control_partition(kind, v))
        .filter(|p| seen.insert(p.clone()))
        .take(MAX_CONTROLS_INDEXED)
        .map(|partition| WriteOp::Put {
            key: control_key(partition, &record.partner, &record.id),
            value: value.clone(),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        })
        .collect())
}

/// The distinct payer ids an X12 or FHIR payload's claims name, at most
/// [`clearway_core::records::MAX_DEAD_LETTER_PAYERS`].
fn payers_in(format: Format, payload: &[u8]) -> Vec<String> {
    let mut payers = std::collections::BTreeSet::new();
    match format {
        Format::X12 => {
            for set in analyze(payload, &AnalyzeOptions::default()).sets() {
                for doc in &set.documents {
                    if let Document::Claim(c) = doc {
                        payers.extend(c.payer_id.clone());
                    }
                }
            }
        }
        Format::Fhir => match fhir::read_resource(payload, &fhir::Limits::default()) {
            Ok(fhir::FhirDocument::Claim(c)) => payers.extend(c.claim.and_then(|c| c.payer_id)),
            Ok(fhir::FhirDocument::Bundle(b)) => {
                payers.extend(b.claims().filter_map(|(_, c)| c.claim.as_ref().and_then(|c| c.payer_id.clone())));
            }
            _ => {}
        },
        Format::Hl7 | Format::Ncpdp => {}
    }
    payers.into_iter().take(clearway_core::records::MAX_DEAD_LETTER_PAYERS).collect()
}

fn last_write_wins(writes: Vec<WriteOp>) -> Vec<WriteOp> {
    let key_of = |op: &WriteOp| match op {
        WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => {
            (key.table, key.pk.clone(), key.sk.clone())
        }
    };
    let mut last: HashMap<(Table, String, String), usize> = HashMap::new();
    for (i, op) in writes.iter().enumerate() {
        last.insert(key_of(op), i);
    }
    writes.into_iter().enumerate().filter(|(i, op)| last.get(&key_of(op)) == Some(i)).map(|(_, op)| op).collect()
}

fn issue_record(i: &Issue) -> IssueRecord {
    IssueRecord {
        severity: format!("{:?}", i.severity).to_lowercase(),
        code: i.code.clone(),
        segment: i.segment.clone(),
        position: i.position,
        loop_id: i.loop_id.clone(),
        element: i.element.clone(),
        message: i.message.clone(),
    }
}

/// Control numbers for the `n`th acknowledgement of a kind, from the
/// transaction id: the same on every run.
fn controls(id: &TransactionId, kind: &str, n: usize) -> Controls {
    Controls::derived(format!("{id}|{kind}|{n}").as_bytes())
}

/// Judges the claims of one transaction (see [`Editor::judge_all`]).
struct ClaimJudge {
    editor: Editor,
    rt: tokio::runtime::Handle,
    partner: PartnerId,
    transaction: TransactionId,
    received: OffsetDateTime,
}

impl ClaimJudge {
    /// Claims numbered from `first` (1-based, the claim ids' suffixes):
    /// their decisions; their findings become the transaction's issues.
    fn judge(
        &self,
        first: usize,
        claims: &[&Claim],
        set: Option<&str>,
        out: &mut Outcome,
    ) -> PortResult<Vec<ClaimDecision>> {
        let ids: Vec<(String, &Claim)> =
            claims.iter().enumerate().map(|(i, c)| (format!("{}-{}", self.transaction, first + i), *c)).collect();
        let judged = self.editor.judge_all(&self.rt, &self.partner, &ids, self.received)?;
        Ok(judged
            .into_iter()
            .enumerate()
            .map(|(i, Judged { decision, findings })| {
                out.issues.extend(findings.iter().map(|f| clearway_formats::report::edit_issue(f, first + i, set)));
                decision
            })
            .collect())
    }
}

fn x12(
    payload: &[u8],
    id: &TransactionId,
    at: PrimitiveDateTime,
    clearinghouse: &(String, String),
    judge: &ClaimJudge,
    router: &Router,
    partners: &Partners,
) -> PortResult<Outcome> {
    let analysis = tracing::info_span!("validate", bytes = payload.len())
        .in_scope(|| analyze(payload, &AnalyzeOptions::default()));
    let mut out = Outcome::default();
    if let Some(f) = &analysis.totals.fatal {
        out.issues.push(clearway_formats::report::fatal_issue(f));
    }
    let source = Source { name: clearinghouse.0.clone(), id: clearinghouse.1.clone() };
    let mut any_accepted_set = false;
    // Each accepted 837 claim's own segments, for its payer's batch.
    let has_837 = analysis.sets().any(|s| s.report.header.id == "837" && s.report.accepted());
    let mut fragments: HashMap<SetIndex, SetClaims> = if has_837 {
        clearway_formats::x12::batch::claim_fragments(payload)
            .into_iter()
            .map(|f| ((f.interchange, f.group, f.set), (Arc::new(f.submitter), f.claims)))
            .collect()
    } else {
        HashMap::new()
    };
    for (i, ic) in analysis.interchanges.iter().enumerate() {
        out.issues.extend(clearway_formats::report::interchange_issues(&ic.report));
        let report = &ic.report;
        out.controls.push(("isa13", report.control_number.clone()));
        if report.isa.ack_requested() || !report.findings.is_empty() {
            out.acks.push(Ack {
                kind: "ta1",
                content_type: "application/edi-x12",
                body: String::from_utf8_lossy(&build::ta1(report, controls(id, "ta1", i), at)).into_owned(),
            });
        }
        if let Some(ack) = build::ack999(ic, controls(id, "999", i), at) {
            out.acks.push(Ack {
                kind: "999",
                content_type: "application/edi-x12",
                body: String::from_utf8_lossy(&ack).into_owned(),
            });
        }
        for (g, group) in ic.groups.iter().enumerate() {
            out.issues.extend(clearway_formats::report::group_issues(&group.report, Some(&report.control_number)));
            out.controls.push(("gs06", group.report.header.control_number.clone()));
            for (s, set) in group.sets.iter().enumerate() {
                out.issues.extend(clearway_formats::report::set_issues(&set.report, Some(&report.control_number)));
                out.controls.push(("st02", set.report.header.control_number.clone()));
                out.controls.extend(set.report.context.reference.clone().map(|r| ("bht03", r)));
                out.documents += set.documents.len();
                let accepted = report.accepted() && set.report.accepted();
                any_accepted_set |= accepted;
                if !accepted {
                    continue;
                }
                let in_set: Vec<&Claim> = set
                    .documents
                    .iter()
                    .filter_map(|d| match d {
                        Document::Claim(c) => Some(c.as_ref()),
                        _ => None,
                    })
                    .collect();
                let set_id = Some(set.report.header.control_number.as_str());
                let decisions = tracing::info_span!("claim edits", claims = in_set.len())
                    .in_scope(|| judge.judge(out.claims.len() + 1, &in_set, set_id, &mut out))?;
                // The set's fragments, when they line up with its claims.
                let mut own = fragments
                    .remove(&(i, g, s))
                    .filter(|(_, f)| f.len() == in_set.len())
                    .map(|(info, f)| f.into_iter().map(move |c| c.map(|c| (c, info.clone()))));
                let claims: Vec<ClaimWork> = in_set
                    .into_iter()
                    .zip(decisions)
                    .map(|(c, decision)| ClaimWork {
                        claim: c.clone(),
                        decision,
                        fragment: own.as_mut().and_then(Iterator::next).flatten(),
                    })
                    .collect();
                for doc in &set.documents {
                    if let Document::Remittance(r) = doc {
                        out.controls.extend(r.trace_number.clone().map(|t| ("trn02", t)));
                    }
                    match doc {
                        Document::Claim(_) => {}
                        Document::Enrollment(e) => {
                            // Coverage is kept under the payer id the fast
                            // path is asked with (an alias maps an 834's
                            // insurer id to it).
                            let payer = router.canonical_payer(e.payer_id.as_deref().unwrap_or("UNKNOWN"));
                            out.writes.extend(coverage_writes(e, &payer, Some(&judge.partner), partners));
                            out.members.extend(enrolled_members(e, &payer));
                        }
                        Document::Remittance(r) => {
                            out.writes.extend(payment_writes(r, id.as_str(), &judge.partner, partners, 0))
                        }
                        _ => {}
                    }
                }
                if set.report.header.id == "837" {
                    let acks: Vec<ClaimAck<'_>> = claims
                        .iter()
                        .enumerate()
                        .map(|(n, w)| ClaimAck {
                            claim: &w.claim,
                            decision: w.decision.clone(),
                            clearinghouse_trace: format!("{}-{}", short(id), out.claims.len() + n + 1),
                        })
                        .collect();
                    let reference = format!("{}{:04}", short(id), out.acks.len());
                    let ack = build::ack277ca(&build::Ack277Ca {
                        interchange: &report.isa,
                        group: &group.report.header,
                        set: &set.report,
                        claims: &acks,
                        source: &source,
                        reference: &reference,
                        received: at.date(),
                        controls: controls(id, "277ca", out.acks.len()),
                        at,
                    });
                    out.acks.push(Ack {
                        kind: "277ca",
                        content_type: "application/edi-x12",
                        body: String::from_utf8_lossy(&ack).into_owned(),
                    });
                }
                out.claims.extend(claims);
            }
        }
    }
    out.accepted = analysis.totals.fatal.is_none() && any_accepted_set;
    Ok(out)
}

/// A transaction set's place in the input: interchange, group, set.
type SetIndex = (usize, usize, usize);
/// A set's submitter and each claim's own segments.
type SetClaims = (Arc<SubmitterInfo>, Vec<Option<ClaimFragment>>);

/// The last 12 hex digits of a transaction id (a short, stable reference).
fn short(id: &TransactionId) -> String {
    let s: String = id.as_str().chars().filter(char::is_ascii_hexdigit).collect();
    s[s.len().saturating_sub(12)..].to_uppercase()
}

/// The (payer id, member id) of every member an enrollment changes.
pub fn enrolled_members(e: &clearway_core::Enrollment, payer: &str) -> Vec<(String, String)> {
    e.members
        .iter()
        .filter_map(|m| m.member_id.expose().clone().or_else(|| m.subscriber_id.expose().clone()))
        .map(|member| (payer.to_string(), member))
        .collect()
}

/// The coverage records of an enrollment, under `payer` (the canonical
/// payer id), keyed by each member id's index token; sealed under the keys
/// of `owner`, the partner that sent the 834 (`None` for an operator's
/// import: the state key).
pub fn coverage_writes(
    e: &clearway_core::Enrollment,
    payer: &str,
    owner: Option<&PartnerId>,
    partners: &Partners,
) -> Vec<WriteOp> {
    e.members
        .iter()
        .filter_map(|m| {
            let member = m.member_id.expose().clone().or_else(|| m.subscriber_id.expose().clone())?;
            let value = serde_json::to_vec(&serde_json::json!({ "payerId": payer, "member": m })).ok()?;
            Some(WriteOp::Put {
                key: Key::new(Table::Coverage, payer, partners.member_key(&member)),
                value: Bytes::from(value),
                expires_at: None,
                condition: Condition::None,
                owner: owner.cloned(),
            })
        })
        .collect()
}

/// The payment records of a remittance, keyed by where it came from
/// (`source`: a transaction id, or a payer file), sealed under the keys of
/// `owner` (the partner that sent the 835, or the one a payer's 835 is
/// forwarded to). Its claims are numbered from `first`, the position of
/// its first claim in its transaction set (a set read in chunks numbers
/// each chunk's claims on from the last).
pub fn payment_writes(
    r: &clearway_core::Remittance,
    id: &str,
    owner: &PartnerId,
    partners: &Partners,
    first: usize,
) -> Vec<WriteOp> {
    r.claims
        .iter()
        .enumerate()
        .map(|(n, c)| (first + n, c))
        .filter_map(|(n, c)| {
            // The claim's payment as claim status reads it: its service lines
            // and adjustments stay in the stored 835 (they would grow each
            // item with the claim's lines).
            let summary;
            let c = if c.lines.is_empty() && c.adjustments.is_empty() {
                c
            } else {
                summary = clearway_core::ClaimPayment { lines: vec![], adjustments: vec![], ..c.clone() };
                &summary
            };
            let value = serde_json::to_vec(&serde_json::json!({
                "payment": c,
                "paymentDate": r.payment_date,
                "traceNumber": r.trace_number,
                "payerId": r.payer_id,
                "transactionId": id,
            }))
            .ok()?;
            Some(WriteOp::Put {
                key: Key::new(
                    Table::Payments,
                    partners.pcn_partition(c.patient_control_number.expose()),
                    format!("{id}-{n}"),
                ),
                value: Bytes::from(value),
                expires_at: None,
                condition: Condition::None,
                owner: Some(owner.clone()),
            })
        })
        .collect()
}

fn hl7_messages(payload: &[u8], id: &TransactionId, received: OffsetDateTime) -> Outcome {
    let mut out = Outcome::default();
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        received.year(),
        u8::from(received.month()),
        received.day(),
        received.hour(),
        received.minute(),
        received.second()
    );
    let simple: String = id.as_str().chars().filter(|c| *c != '-').collect();
    let control = |n: usize| format!("a{n:02}{}", &simple[simple.len().saturating_sub(17)..]);
    match hl7::split(payload, &hl7::Limits::default()) {
        Ok(batch) => {
            let mut all_ok = batch.message_count() > 0;
            for (n, m) in batch.messages().enumerate() {
                out.documents += 1;
                let issues = hl7::validate(m);
                let code = hl7::AckCode::for_issues(&issues, false);
                all_ok &= code == hl7::AckCode::ApplicationAccept;
                let ctl = control(n);
                let ack = hl7::build_ack(
                    m,
                    &hl7::AckSpec { code, control_id: &ctl, timestamp: &stamp, text: None, issues: &issues },
                );
                out.acks.push(Ack { kind: "hl7", content_type: "application/hl7-v2", body: ack });
                out.issues.extend(clearway_formats::report::hl7_issues(m.control_id().as_deref(), &issues));
            }
            out.accepted = all_ok;
        }
        Err(e) => {
            let issue = hl7::Hl7Issue::segment(
                hl7::Severity::Error,
                hl7::validate::SEGMENT_SEQUENCE_ERROR,
                "MSH",
                1,
                e.to_string(),
            );
            let ctl = control(0);
            let ack = hl7::build_ack_for_unparseable(
                payload,
                &hl7::AckSpec {
                    code: hl7::AckCode::ApplicationReject,
                    control_id: &ctl,
                    timestamp: &stamp,
                    text: None,
                    issues: std::slice::from_ref(&issue),
                },
            );
            out.acks.push(Ack { kind: "hl7", content_type: "application/hl7-v2", body: ack });
            out.issues.extend(clearway_formats::report::hl7_issues(None, &[issue]));
            out.accepted = false;
        }
    }
    out
}

fn fhir_resource(
    payload: &[u8],
    id: &TransactionId,
    received: OffsetDateTime,
    judge: &ClaimJudge,
    routed: usize,
) -> PortResult<Outcome> {
    let mut out = Outcome::default();
    let json_ack =
        |v: serde_json::Value| Ack { kind: "fhir", content_type: "application/fhir+json", body: v.to_string() };
    match fhir::read_resource(payload, &fhir::Limits::default()) {
        Err(e) => {
            let issue = e.to_issue();
            out.issues.extend(clearway_formats::report::fhir_issues(&[&issue]));
            out.acks.push(json_ack(fhir::operation_outcome(&[issue])));
        }
        Ok(doc) => {
            let found: Vec<&fhir::OutcomeIssue> = doc.issues();
            out.issues.extend(clearway_formats::report::fhir_issues(&found));
            match &doc {
                fhir::FhirDocument::Claim(c) if c.claim.is_some() => {
                    let Some(claim) = c.claim.clone() else { return Ok(out) };
                    let decision = judge.judge(1, &[&claim], None, &mut out)?.remove(0);
                    let outcome = if decision == ClaimDecision::Accepted {
                        fhir::ResponseOutcome::Queued
                    } else {
                        fhir::ResponseOutcome::Error
                    };
                    let response = fhir::ClaimResponseSpec::for_claim(c, format!("{id}-1"), received, outcome)
                        .map(|s| fhir::claim_response(&s));
                    out.acks.push(json_ack(match response {
                        Some(Ok(v)) => v,
                        _ => doc.operation_outcome(),
                    }));
                    out.documents = 1;
                    out.claims.push(ClaimWork { claim, decision, fragment: None });
                    out.accepted = true;
                }
                fhir::FhirDocument::Bundle(b) if b.processable => {
                    let mut entries = Vec::new();
                    let all: Vec<_> = b.claims().collect();
                    let mapped: Vec<&Claim> = all.iter().filter_map(|(_, c)| c.claim.as_ref()).collect();
                    let mut decisions = judge.judge(out.claims.len() + 1, &mapped, None, &mut out)?.into_iter();
                    for (i, c) in all {
                        out.documents += 1;
                        match &c.claim {
                            Some(claim) => {
                                let decision = decisions.next().unwrap_or(ClaimDecision::Accepted);
                                let outcome =
                                    if decision == ClaimDecision::Accepted { fhir::ResponseOutcome::Queued } else { fhir::ResponseOutcome::Error };
                                let r = fhir::ClaimResponseSpec::for_claim(c, format!("{id}-{i}"), received, outcome)
                                    .and_then(|s| fhir::claim_response(&s).ok())
                                    .unwrap_or_else(|| fhir::operation_outcome(&c.issues));
                                entries.push(serde_json::json!({ "resource": r, "response": { "status": "202 Accepted" } }));
                                out.claims.push(ClaimWork { claim: claim.clone(), decision, fragment: None });
                            }
                            None => entries.push(serde_json::json!({ "resource": fhir::operation_outcome(&c.issues), "response": { "status": "400 Bad Request" } })),
                        }
                    }
                    for (_, r) in b.eligibility_requests() {
                        out.documents += 1;
                        entries.push(serde_json::json!({ "resource": fhir::operation_outcome(&r.issues), "response": { "status": "200 OK" } }));
                    }
                    out.acks.push(json_ack(serde_json::json!({ "resourceType": "Bundle", "id": format!("{id}-bundle"), "type": "batch-response", "entry": entries })));
                    out.accepted = true;
                }
                fhir::FhirDocument::Other { .. } if routed > 0 => {
                    // Not processed here, delivered by the routes that took
                    // it at intake.
                    out.accepted = true;
                    out.documents = 1;
                    out.acks.push(json_ack(fhir::operation_outcome(&[fhir::OutcomeIssue::new(
                        fhir::Severity::Information,
                        fhir::IssueType::Informational,
                        "",
                        format!("accepted for delivery to {routed} destination(s); see the transaction's deliveries"),
                    )])));
                }
                other => {
                    out.accepted = other.is_processable();
                    out.documents = usize::from(other.is_processable());
                    out.acks.push(json_ack(other.operation_outcome()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: a redelivery reused the first attempt's creation time as
    // the feed cursor even when that attempt's feed entry was never written
    // (its write failed after the ack record's), so the entry appeared
    // late, behind a cursor readers had passed. Now an entry already in the
    // feed is rewritten in place and a missing one gets a fresh cursor.
    #[tokio::test]
    async fn a_rewritten_ack_keeps_its_feed_entry_or_gets_a_fresh_cursor() {
        use clearway_core::ports::StateStore;
        let state = clearway_local::MemStateStore::default();
        let partner = PartnerId::new("acme").unwrap();
        let ack = |created: &str| AckRecord {
            id: "t1-999-1".into(),
            transaction: TransactionId::new(),
            partner: partner.clone(),
            kind: "999".into(),
            content_type: "application/edi-x12".into(),
            created_at: created.into(),
            body: String::new(),
            body_blob: None,
            body_chunks: None,
            body_sealed: None,
            feed_cursor: None,
        };
        let stamp = feed::clock().stamp();
        let fresh = stamp.cursor("t1-999-1");
        // Written long ago, before cursors were kept; its entry is missing.
        let old = ack("2026-01-01T00:00:00Z");
        let now = ack("2026-12-07T00:00:00Z");
        assert_eq!(now.feed_cursor_of(&state, None, &stamp).await.unwrap(), fresh, "a first write");
        assert_eq!(now.feed_cursor_of(&state, Some(&old), &stamp).await.unwrap(), fresh, "entry missing");
        // Its entry is in the feed: rewritten in place.
        let mut with_entry = old.clone();
        with_entry.feed_cursor = Some(old.legacy_cursor());
        state.write(with_entry.feed_ops().unwrap()).await.unwrap();
        assert_eq!(now.feed_cursor_of(&state, Some(&old), &stamp).await.unwrap(), old.legacy_cursor());
        // A kept cursor is used when its entry exists.
        let mut kept = old.clone();
        let earlier = clearway_core::records::FeedEntry::cursor(1_790_000_000_000, "t1-999-1");
        kept.feed_cursor = Some(earlier.clone());
        assert_eq!(now.feed_cursor_of(&state, Some(&kept), &stamp).await.unwrap(), fresh, "its entry is missing");
        state.write(kept.feed_ops().unwrap()).await.unwrap();
        assert_eq!(now.feed_cursor_of(&state, Some(&kept), &stamp).await.unwrap(), earlier, "its entry is there");
    }

    // Regression: an 834 naming one member in two transaction sets failed
    // every attempt with "two operations on one key" and was dead-lettered.
    #[test]
    fn repeated_keys_keep_the_last_write() {
        let put = |sk: &str, v: &'static str| WriteOp::Put {
            key: Key::new(Table::Coverage, "P", sk),
            value: Bytes::from_static(v.as_bytes()),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        };
        let out = last_write_wins(vec![put("a", "1"), put("b", "2"), put("a", "3")]);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], WriteOp::Put { key, .. } if key.sk == "b"));
        assert!(matches!(&out[1], WriteOp::Put { value, .. } if &value[..] == b"3"));
    }
}
