//! The clearinghouse round trip: accepted claims wait per payer, leave as
//! 837 batches under the clearinghouse's envelope (outbox directory,
//! HTTPS or SFTP), and the payer's TA1, 999, 277CA and 835 come back to
//! the submitters whose claims they answer.
//!
//! Everything is a step that is durable before the next begins, so a
//! crash at any point resumes without losing or doubling anything:
//!
//! 1. **Pending.** A worker writes each accepted claim (its own segments,
//!    sealed at rest like every state value) under `pending/<payer>`,
//!    with the transaction record, only if the claim is not in a batch
//!    already (its lineage item does not exist).
//! 2. **Assembly.** The batcher closes a batch by count, bytes or age: it
//!    allocates the payer's next ISA13 and writes the batch record in one
//!    conditional write, then moves claims from pending into the batch
//!    (delete pending + put member + put lineage, conditionally, so a
//!    claim joins exactly one batch). Two claims with one patient control
//!    number never share a batch, so the payer's 277CA correlates by
//!    (BHT03, CLM01) without guessing.
//! 3. **Built.** The 837 is built from the members, must pass our own
//!    validator, is sealed and stored; only then are its claims `routed`.
//! 4. **Delivered.** The sender uploads it under a temporary name and
//!    renames it (SFTP; an interrupted upload resumes), POSTs it with the
//!    batch id as `Idempotency-Key` (HTTPS) or renames it into the outbox
//!    directory; a batch already at the payer is recognised by its name.
//!    Then the batch is marked delivered.
//! 5. **Answers.** Payer files are stored (sealed) and recorded before the
//!    payer's copy is removed; then applied: verdicts per claim, a 277CA
//!    per submitter transaction, 835s to the submitter that the payee is
//!    enrolled to (or whose claims it pays). What matches nothing goes to
//!    the operator's attention list with its reason.

pub mod pgp;
pub mod sftp;

use crate::process::{payment_writes, publish_acks};
use crate::route::Router;
use bytes::Bytes;
use clearway_core::changes::{self, ChangeEvent, ChangeKind};
use clearway_core::config::{Config, Destination, PayerConfig};
use clearway_core::feed;
use clearway_core::partners::Partners;
use clearway_core::ports::{Condition, Key, MAX_QUERY_LIMIT, Ports, Table, WriteOp};
pub(crate) use clearway_core::records::now_ms;
use clearway_core::records::{AckRecord, ClaimRecord, Lineage, TransactionRecord, timestamp};
use clearway_core::roundtrip::{
    self, Attention, PayerFile, PayerFileReader, attention_key, file_key, oversize_key, seen_key, unapplied_key,
};
use clearway_core::{BlobKey, ErrorKind, PartnerId, PortError, PortResult, Sensitive, TransactionId};
use clearway_formats::x12::batch::{
    self, Ack277Answer, ClaimFragment, Forward277, Outbound837, Parties, PayerAnswer, RemitAnswer, SubmitterInfo,
};
use clearway_formats::x12::build::{Controls, Envelope};
use clearway_formats::x12::views::remittance_chunks;
use clearway_formats::x12::{AnalyzeOptions, analyze, analyze_from};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Largest payer file read.
pub use clearway_core::roundtrip::MAX_PAYER_FILE_BYTES;
/// A batch left in assembly this long by a process that died is finished
/// by another.
const ASSEMBLY_TAKEOVER_MS: i64 = 30_000;
/// How long a process that took a payer file to apply holds it; one that
/// died holding it is taken over after this.
const APPLY_LEASE_MS: i64 = 30_000;
/// Claims moved into a batch per state write (three writes each).
const MOVE_CHUNK: usize = 33;
/// Claim payments of a payer's 835 read and written at a time.
const PAYMENTS_PER_CHUNK: usize = 1000;

fn encode<T: Serialize>(v: &T) -> PortResult<Bytes> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode record", e))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> PortResult<T> {
    serde_json::from_slice(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode record", e))
}

fn put(key: Key, value: Bytes, condition: Condition) -> WriteOp {
    WriteOp::Put { key, value, expires_at: None, condition, owner: None }
}

/// Milliseconds of an RFC 3339 time (0 when unreadable).
fn ms_of(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// The change-feed event of a batch step (`delivered`, `ta1`, `999`) and
/// the marker that it was written once.
fn batch_event_ops(
    batch: &BatchRecord,
    step: &str,
    delivery: Option<&str>,
    verdict: Option<&str>,
) -> PortResult<[WriteOp; 2]> {
    let at =
        if step == "delivered" { batch.delivered_at.as_deref().map(ms_of).unwrap_or_else(now_ms) } else { now_ms() };
    let partner = PartnerId::new(changes::CLEARINGHOUSE)
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "partner id", e))?;
    let mut e = ChangeEvent::plain(ChangeKind::PayerBatch, partner, TransactionId::new(), at, batch.created_at_ms);
    e.status = step.to_string();
    e.attempts = batch.attempts;
    e.payer_batch = Some(Box::new(changes::PayerBatch {
        batch: batch.id.clone(),
        payer: batch.payer.clone(),
        control: batch.control,
        step: step.to_string(),
        claims: batch.claims as u64,
        bytes: batch.bytes as u64,
        created_at_ms: batch.created_at_ms,
        delivered_at_ms: batch.delivered_at.as_deref().map(ms_of),
        delivery: delivery.map(str::to_string),
        attempts: batch.attempts,
        verdict: verdict.map(str::to_string),
    }));
    Ok([
        // Once per batch (its creation tells it from a later batch with the
        // same ISA13), step and verdict: the same file applied again adds
        // nothing; a payer's different verdict is its own row.
        put(
            changes::payer_event_seen_key(&format!(
                "batch/{}/{}/{step}/{}",
                batch.id,
                batch.created_at_ms,
                verdict.unwrap_or_default()
            )),
            Bytes::from_static(b"{}"),
            Condition::NotExists,
        ),
        put(e.key(), encode(&e)?, Condition::None),
    ])
}

/// Writes `ops` with the change-feed event ops `event` (a marker written
/// only if absent, and the event): if the marker exists (the step was
/// recorded before, and the file is being applied again), `ops` alone.
async fn write_with_event(
    state: &dyn clearway_core::ports::StateStore,
    ops: Vec<WriteOp>,
    event: [WriteOp; 2],
) -> PortResult<()> {
    let mut all = ops.clone();
    all.extend(event);
    match state.write(all).await {
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => state.write(ops).await,
        other => other,
    }
}

/// Most transactions a payer batch's span links to.
const MAX_SPAN_LINKS: usize = 32;

/// A claim waiting for its batch (`pending/<payer>`), and later a member
/// of one (`members/<payer>/<ISA13>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub claim_id: String,
    pub transaction: String,
    pub partner: String,
    pub payer: String,
    /// Claims batch together only within one group: `<ST03>|<BHT06>`.
    pub group: String,
    /// Index token of the patient control number.
    pub pcn_token: String,
    /// Index token of the claim's correlation key (patient control number,
    /// billing provider, charge; see [`batch::correlation_key`]): unique
    /// within a batch.
    #[serde(default)]
    pub key_token: String,
    pub total_charge: String,
    pub received_at: String,
    pub fragment: ClaimFragment,
    pub submitter: SubmitterInfo,
}

impl Pending {
    /// `pending/<payer>`, sort key `<received ms>-<claim id>`.
    pub fn key(payer: &str, received_ms: i64, claim_id: &str) -> Key {
        Key::new(Table::Batches, format!("pending/{payer}"), format!("{received_ms:013}-{claim_id}"))
    }
}

/// The payers that have (or had) claims pending.
fn payer_index(payer: &str) -> Key {
    Key::new(Table::Batches, "pending-payers", payer)
}

/// An outbound batch (`batch/<payer>`, sort key the 9-digit ISA13).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub id: String,
    pub payer: String,
    pub control: u32,
    pub group: String,
    /// `assembling`, `ready`, `delivered`, `invalid` (failed our own
    /// validation; held for an operator).
    pub state: String,
    pub created_at_ms: i64,
    /// The envelope's date and time (RFC 3339), fixed at creation so a
    /// rebuild after a crash gives the same bytes.
    pub at: String,
    pub claims: usize,
    pub bytes: usize,
    pub blob: Option<String>,
    /// The file name at the payer.
    pub name: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    /// What the payer said about the interchange and its group.
    pub ta1: Option<String>,
    pub ack999: Option<String>,
}

impl BatchRecord {
    pub fn key(payer: &str, control: u32) -> Key {
        Key::new(Table::Batches, format!("batch/{payer}"), format!("{control:09}"))
    }
    fn members(payer: &str, control: u32) -> String {
        format!("members/{payer}/{control:09}")
    }
}

fn open_key(payer: &str, control: u32) -> Key {
    Key::new(Table::Batches, "open", format!("{payer}/{control:09}"))
}
fn undelivered_key(payer: &str, control: u32) -> Key {
    Key::new(Table::Batches, "undelivered", format!("{payer}/{control:09}"))
}
fn isa_counter(payer: &str) -> Key {
    Key::new(Table::Counters, "isa13", payer)
}

/// The round trip's running parts.
pub struct RoundTrip {
    pub ports: Ports,
    pub partners: Arc<Partners>,
    pub config: Arc<Config>,
    pub router: Arc<Router>,
    pub feed: Arc<tokio::sync::Notify>,
    http: clearway_fastpath::http::PayerClients,
    /// When each payer was last polled for answers.
    polled: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for RoundTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundTrip").finish_non_exhaustive()
    }
}

/// Why a delivery or a poll failed (the batch or file stays for the next
/// round).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Sftp(#[from] sftp::SftpError),
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

fn parse_at(s: &str) -> PrimitiveDateTime {
    let t =
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    PrimitiveDateTime::new(t.date(), t.time())
}

impl RoundTrip {
    pub fn new(
        ports: Ports,
        partners: Arc<Partners>,
        config: Arc<Config>,
        router: Arc<Router>,
        feed: Arc<tokio::sync::Notify>,
    ) -> Self {
        let base = || reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        // The payers' TLS files were checked at start-up (`check_keys`).
        let http = clearway_fastpath::http::PayerClients::new_or_failing(base, &config);
        RoundTrip { ports, partners, config, router, feed, http, polled: std::sync::Mutex::new(HashMap::new()) }
    }

    /// Checks every payer's OpenPGP key and TLS files (at start-up: one
    /// that cannot be used stops `serve` with the payer and the reason).
    pub fn check_keys(config: &Config) -> Result<(), String> {
        clearway_fastpath::http::check_payer_tls(config)?;
        for p in config.payers.values() {
            if let Some(path) = &p.pgp_public_key_file {
                pgp::Recipient::load(path).map_err(|e| format!("payers.{}.pgp_public_key_file: {e}", p.id))?;
            }
        }
        Ok(())
    }

    /// Runs the batcher, the sender, the poller and the applier until
    /// `shutdown`; a step under way always finishes first.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %clearway_core::error::chain(&e), "payer round trip step failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        })
    }

    /// One round of every step.
    pub async fn run_once(&self) -> PortResult<()> {
        self.assemble_due().await?;
        self.send_ready().await?;
        self.send_payer_acks().await?;
        self.poll_due().await?;
        self.apply_stored().await?;
        Ok(())
    }

    // ------------------------------------------------------------ pending --

    /// The writes that queue one accepted claim for its payer's next batch
    /// (a check that it is in no batch yet, the pending item). Written
    /// together; `PreconditionFailed` means the claim is batched already.
    pub fn pending_ops(p: &Pending, received_ms: i64) -> PortResult<Vec<WriteOp>> {
        Ok(vec![
            WriteOp::Check { key: Lineage::key(&p.transaction, &p.claim_id), condition: Condition::NotExists },
            put(Pending::key(&p.payer, received_ms, &p.claim_id), encode(p)?, Condition::None),
        ])
    }

    /// The write that lists a payer among those with pending claims.
    pub fn payer_index_op(payer: &str) -> WriteOp {
        put(payer_index(payer), Bytes::from_static(b"{}"), Condition::None)
    }

    // ----------------------------------------------------------- assembly --

    async fn query_all(
        &self,
        table: Table,
        pk: &str,
        max: usize,
    ) -> PortResult<Vec<(String, clearway_core::ports::Item)>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        while out.len() < max {
            let page =
                self.ports.state.query(table, pk, after.as_deref(), MAX_QUERY_LIMIT.min(max - out.len())).await?;
            let full = page.len() == MAX_QUERY_LIMIT.min(max - out.len());
            after = page.last().map(|(k, _)| k.clone());
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Closes the batches that are due and finishes those a dead process
    /// left in assembly. Returns how many batches were built.
    pub async fn assemble_due(&self) -> PortResult<usize> {
        let mut built = 0;
        for (sk, item) in self.query_all(Table::Batches, "open", 10_000).await? {
            let Some((payer, control)) = sk.rsplit_once('/') else { continue };
            let Ok(control) = control.parse::<u32>() else { continue };
            let Some(rec) = self.ports.state.get(&BatchRecord::key(payer, control)).await? else { continue };
            let batch: BatchRecord = decode(&rec.value)?;
            let _ = item;
            if batch.state == "assembling" && now_ms() - batch.created_at_ms > ASSEMBLY_TAKEOVER_MS {
                self.finish(batch, rec.version).await?;
                built += 1;
            }
        }
        for (payer, _) in self.query_all(Table::Batches, "pending-payers", 100_000).await? {
            while self.close_one(&payer).await? {
                built += 1;
            }
        }
        Ok(built)
    }

    /// Closes one batch for `payer` if one is due; true when it did.
    async fn close_one(&self, payer: &str) -> PortResult<bool> {
        let settings = self.config.payer(payer);
        let ic = &settings.interchange;
        let pending = self.query_all(Table::Batches, &format!("pending/{payer}"), ic.batch_max_claims * 2).await?;
        let Some((first_sk, first)) = pending.first() else { return Ok(false) };
        let oldest_ms: i64 = first_sk.get(..13).and_then(|t| t.parse().ok()).unwrap_or(0);
        let aged = now_ms() - oldest_ms >= ic.batch_window.as_millis() as i64;
        // Not due by age, and too few claims or bytes to fill a batch even
        // before grouping: nothing to decode (this runs twice a second).
        let stored_bytes: usize = pending.iter().map(|(_, i)| i.value.len()).sum();
        if !aged && pending.len() < ic.batch_max_claims && stored_bytes <= ic.batch_max_bytes {
            return Ok(false);
        }
        let first: Pending = decode(&first.value)?;
        // The claims of the oldest claim's group, at most one per patient
        // control number, up to the limits.
        let mut chosen: Vec<(String, u64, Pending)> = Vec::new();
        let mut tokens = std::collections::HashSet::new();
        let mut bytes = 0usize;
        let mut full = false;
        for (sk, item) in &pending {
            let p: Pending = decode(&item.value)?;
            if p.group != first.group || tokens.contains(&p.key_token) {
                continue;
            }
            if chosen.len() >= ic.batch_max_claims || bytes + p.fragment.len() > ic.batch_max_bytes {
                full = true;
                break;
            }
            bytes += p.fragment.len();
            tokens.insert(p.key_token.clone());
            chosen.push((sk.clone(), item.version, p));
        }
        let due = full || chosen.len() >= ic.batch_max_claims || aged;
        if !due || chosen.is_empty() {
            return Ok(false);
        }
        // The next ISA13 and the batch record, in one conditional write.
        let counter = self.ports.state.get(&isa_counter(payer)).await?;
        let (last, cond) = match &counter {
            Some(i) => (decode::<u32>(&i.value)?, Condition::Version(i.version)),
            None => (0, Condition::NotExists),
        };
        let control = last % 999_999_999 + 1;
        let at = OffsetDateTime::now_utc();
        let batch = BatchRecord {
            id: format!("{payer}/{control:09}"),
            payer: payer.to_string(),
            control,
            group: first.group.clone(),
            state: "assembling".into(),
            created_at_ms: now_ms(),
            at: timestamp(at),
            claims: 0,
            bytes: 0,
            blob: None,
            name: format!("CW_{payer}_{control:09}.x12"),
            attempts: 0,
            last_error: None,
            delivered_at: None,
            ta1: None,
            ack999: None,
        };
        match self
            .ports
            .state
            .write(vec![
                put(isa_counter(payer), encode(&control)?, cond),
                // A control number comes back after 999,999,999: the old
                // batch record is replaced.
                put(BatchRecord::key(payer, control), encode(&batch)?, Condition::None),
                put(open_key(payer, control), Bytes::from_static(b"{}"), Condition::None),
            ])
            .await
        {
            Ok(()) => {}
            // Another batcher took this number: look again next round.
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => return Ok(false),
            Err(e) => return Err(e),
        }
        // Move the chosen claims into the batch.
        let members = BatchRecord::members(payer, control);
        let mut position = 0usize;
        for chunk in chosen.chunks(MOVE_CHUNK) {
            let ops = |items: &[(String, u64, Pending)], from: usize| -> PortResult<Vec<WriteOp>> {
                let mut ops = Vec::with_capacity(items.len() * 3);
                for (n, (sk, version, p)) in items.iter().enumerate() {
                    ops.push(WriteOp::Delete {
                        key: Key::new(Table::Batches, format!("pending/{payer}"), sk),
                        condition: Condition::Version(*version),
                    });
                    ops.push(put(
                        Key::new(Table::Batches, members.clone(), format!("{:06}", from + n)),
                        encode(p)?,
                        Condition::NotExists,
                    ));
                    let lineage = Lineage {
                        batch: batch.id.clone(),
                        payer: payer.to_string(),
                        interchange: None,
                        set: None,
                        position: None,
                        status: "batched".into(),
                        payer_status: None,
                        payer_claim_control_number: None,
                        updated_at: batch.at.clone(),
                        reply_to: Some(reply_to(&p.submitter)),
                    };
                    ops.push(put(Lineage::key(&p.transaction, &p.claim_id), encode(&lineage)?, Condition::NotExists));
                }
                Ok(ops)
            };
            match self.ports.state.write(ops(chunk, position)?).await {
                Ok(()) => position += chunk.len(),
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    // Some of these were taken meanwhile: one at a time.
                    for one in chunk.chunks(1) {
                        match self.ports.state.write(ops(one, position)?).await {
                            Ok(()) => position += 1,
                            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let item = self.ports.state.get(&BatchRecord::key(payer, control)).await?;
        let version = item.map_or(1, |i| i.version);
        self.finish(batch, version).await?;
        Ok(true)
    }

    /// Builds, validates, seals and stores a batch from its members, then
    /// marks its claims routed and the batch ready to send.
    async fn finish(&self, mut batch: BatchRecord, version: u64) -> PortResult<()> {
        let members: Vec<Pending> = self
            .query_all(Table::Batches, &BatchRecord::members(&batch.payer, batch.control), 200_000)
            .await?
            .into_iter()
            .map(|(_, i)| decode(&i.value))
            .collect::<PortResult<_>>()?;
        let payer_cfg = self.config.payer(&batch.payer);
        let sender = &self.config.routing.sender;
        let env = Envelope {
            sender_qualifier: sender.isa_qualifier.clone(),
            sender_id: sender.isa_id.clone(),
            receiver_qualifier: payer_cfg.interchange.isa_qualifier.clone(),
            receiver_id: payer_cfg.interchange.isa_id.clone(),
            group_sender: sender.gs_id.clone(),
            group_receiver: payer_cfg.interchange.gs_id.clone(),
            usage: payer_cfg.interchange.usage.clone(),
            delimiters: batch::OUT,
        };
        let bht03 = format!("{:09}", batch.control);
        let fragments: Vec<&ClaimFragment> = members.iter().map(|m| &m.fragment).collect();
        let traces: Vec<&str> = members.iter().map(|m| m.claim_id.as_str()).collect();
        let receiver_name = payer_cfg.name.clone().unwrap_or_else(|| batch.payer.clone());
        let at = parse_at(&batch.at);
        let started = std::time::Instant::now();
        let built = batch::build_837(&Outbound837 {
            envelope: &env,
            parties: Parties {
                submitter_name: &sender.name,
                submitter_id: &sender.etin,
                contact_name: &sender.contact_name,
                contact_qualifier: &sender.contact_qualifier,
                contact: &sender.contact,
                receiver_name: &receiver_name,
                receiver_id: &payer_cfg.interchange.isa_id,
            },
            ack_requested: payer_cfg.interchange.ack_requested,
            control: batch.control,
            bht03: &bht03,
            at,
            claims: &fragments,
            traces: &traces,
        });
        metrics::histogram!("clearway_batch_build_seconds").record(started.elapsed().as_secs_f64());
        batch.claims = members.len();
        batch.bytes = built.bytes.len();
        let analysis = analyze(&built.bytes, &AnalyzeOptions::default());
        let now = timestamp(OffsetDateTime::now_utc());
        if !analysis.accepted() || members.is_empty() {
            let reasons: Vec<String> = analysis
                .sets()
                .flat_map(|s| clearway_formats::report::set_issues(&s.report, None))
                .take(5)
                .map(|i| format!("{} {}", i.code, i.segment.unwrap_or_default()))
                .collect();
            batch.state = "invalid".into();
            self.ports
                .state
                .write(vec![
                    put(BatchRecord::key(&batch.payer, batch.control), encode(&batch)?, Condition::Version(version)),
                    WriteOp::Delete { key: open_key(&batch.payer, batch.control), condition: Condition::None },
                    put(
                        attention_key(&format!("{:013}-batch-{}", now_ms(), batch.id.replace('/', "-"))),
                        encode(&Attention {
                            payer: batch.payer.clone(),
                            file: None,
                            batch: Some(batch.id.clone()),
                            reason: format!("outbound batch fails our validator: {}", reasons.join("; ")),
                            at: now.clone(),
                        })?,
                        Condition::None,
                    ),
                ])
                .await?;
            metrics::counter!("clearway_batches_total", "outcome" => "invalid").increment(1);
            return Ok(());
        }
        let blob = BlobKey::parse(&format!("batches/{}/{:09}", batch.payer, batch.control))
            .ok_or_else(|| PortError::new(ErrorKind::InvalidInput, "batch blob key"))?;
        // Encrypted to the payer's OpenPGP key once, here: the stored file
        // is what goes out, so a resumed upload continues the same bytes.
        let file = match &payer_cfg.pgp_public_key_file {
            Some(path) => {
                let encrypted = pgp::Recipient::load(path).and_then(|r| r.encrypt(&built.bytes)).map_err(|e| {
                    PortError::with_cause(ErrorKind::Internal, "encrypt the batch to the payer's key", e)
                })?;
                if !batch.name.ends_with(".pgp") {
                    batch.name.push_str(".pgp");
                }
                encrypted
            }
            None => built.bytes,
        };
        let sealed = self.partners.batch_key().seal(&file, batch.id.as_bytes())?;
        match self.ports.blobs.put(&blob, Bytes::from(sealed)).await {
            Ok(()) => {}
            // Stored by an earlier attempt that stopped before the record.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // The claims are routed: their lineage says where.
        let mut ops = Vec::with_capacity(members.len());
        for (m, (st02, position)) in members.iter().zip(&built.placed) {
            let lineage = Lineage {
                batch: batch.id.clone(),
                payer: batch.payer.clone(),
                interchange: Some(format!("{:09}", batch.control)),
                set: Some(st02.clone()),
                position: Some(*position),
                status: "routed".into(),
                payer_status: None,
                payer_claim_control_number: None,
                updated_at: now.clone(),
                reply_to: Some(reply_to(&m.submitter)),
            };
            ops.push(put(Lineage::key(&m.transaction, &m.claim_id), encode(&lineage)?, Condition::None));
        }
        for chunk in ops.chunks(100) {
            self.ports.state.write(chunk.to_vec()).await?;
        }
        batch.state = "ready".into();
        batch.blob = Some(blob.to_string());
        self.ports
            .state
            .write(vec![
                put(BatchRecord::key(&batch.payer, batch.control), encode(&batch)?, Condition::Version(version)),
                WriteOp::Delete { key: open_key(&batch.payer, batch.control), condition: Condition::None },
                put(undelivered_key(&batch.payer, batch.control), Bytes::from_static(b"{}"), Condition::None),
            ])
            .await?;
        metrics::counter!("clearway_batches_total", "outcome" => "built").increment(1);
        metrics::counter!("clearway_batched_claims_total").increment(members.len() as u64);
        tracing::info!(batch = %batch.id, claims = batch.claims, bytes = batch.bytes, "payer batch built");
        Ok(())
    }

    // ------------------------------------------------------------- sending --

    /// Delivers every batch that is ready, in order per payer; a payer
    /// whose breaker is open or whose delivery fails keeps its batches for
    /// the next round.
    pub async fn send_ready(&self) -> PortResult<usize> {
        let mut sent = 0;
        let mut blocked = std::collections::HashSet::new();
        for (sk, _) in self.query_all(Table::Batches, "undelivered", 100_000).await? {
            let Some((payer, control)) = sk.rsplit_once('/') else { continue };
            let Ok(control) = control.parse::<u32>() else { continue };
            if blocked.contains(payer) {
                continue;
            }
            let Some(item) = self.ports.state.get(&BatchRecord::key(payer, control)).await? else { continue };
            let mut batch: BatchRecord = decode(&item.value)?;
            if batch.state != "ready" {
                continue;
            }
            // Backoff after failures: 2^attempts seconds, at most 5 minutes.
            if batch.attempts > 0 {
                let wait_ms = 1000i64 << batch.attempts.min(8);
                let last = batch
                    .last_error
                    .as_deref()
                    .and_then(|e| e.split_once('@'))
                    .and_then(|(_, t)| t.parse::<i64>().ok())
                    .unwrap_or(0);
                if now_ms() - last < wait_ms.min(300_000) {
                    blocked.insert(payer.to_string());
                    continue;
                }
            }
            if self.router.admit_batch(payer).is_err() {
                blocked.insert(payer.to_string());
                continue;
            }
            // A batch holds claims of many transactions: its spans are a
            // trace of their own, found by the batch id.
            let span = tracing::info_span!(
                "payer batch send",
                otel.kind = "client",
                payer = %payer,
                batch = %batch.id,
                claims = batch.claims,
                bytes = batch.bytes,
                outcome = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            if clearway_core::telemetry::is_exported(&span) {
                self.link_transactions(&span, payer, control).await;
            }
            let result = self.deliver(&batch).instrument(span.clone()).await;
            match &result {
                Ok(how) => span.record("outcome", *how),
                Err(_) => span.record("outcome", "failed").record("otel.status_code", "ERROR"),
            };
            let ok = result.is_ok();
            self.router.report(payer, ok);
            match result {
                Ok(how) => {
                    batch.state = "delivered".into();
                    batch.delivered_at = Some(timestamp(OffsetDateTime::now_utc()));
                    batch.last_error = None;
                    let ops = vec![
                        put(BatchRecord::key(payer, control), encode(&batch)?, Condition::Version(item.version)),
                        WriteOp::Delete { key: undelivered_key(payer, control), condition: Condition::None },
                    ];
                    let event = batch_event_ops(&batch, "delivered", Some(how), None)?;
                    write_with_event(self.ports.state.as_ref(), ops, event).await?;
                    metrics::counter!("clearway_batch_deliveries_total", "outcome" => how).increment(1);
                    sent += 1;
                }
                Err(e) => {
                    batch.attempts += 1;
                    batch.last_error = Some(format!("{e}@{}", now_ms()));
                    tracing::warn!(batch = %batch.id, error = %e, attempts = batch.attempts, "payer batch delivery failed");
                    metrics::counter!("clearway_batch_deliveries_total", "outcome" => "failed").increment(1);
                    self.ports
                        .state
                        .write(vec![put(
                            BatchRecord::key(payer, control),
                            encode(&batch)?,
                            Condition::Version(item.version),
                        )])
                        .await?;
                    blocked.insert(payer.to_string());
                }
            }
        }
        Ok(sent)
    }

    /// Links a batch's span to the traces of the transactions whose claims
    /// it carries (the first [`MAX_SPAN_LINKS`] of them): what a reader
    /// could read fails quietly, a span is not worth a failed delivery.
    async fn link_transactions(&self, span: &tracing::Span, payer: &str, control: u32) {
        let Ok(members) = self
            .ports
            .state
            .query(Table::Batches, &BatchRecord::members(payer, control), None, MAX_SPAN_LINKS * 4)
            .await
        else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for (_, item) in members {
            let Ok(m) = decode::<Pending>(&item.value) else { continue };
            if seen.len() >= MAX_SPAN_LINKS || !seen.insert(m.transaction.clone()) {
                continue;
            }
            let (Ok(partner), Some(id)) = (PartnerId::new(&m.partner), TransactionId::parse(&m.transaction)) else {
                continue;
            };
            if let Ok(Some(item)) = self.ports.state.get(&TransactionRecord::key(&partner, &id)).await
                && let Ok(r) = decode::<TransactionRecord>(&item.value)
                && let Some(tp) = &r.traceparent
            {
                clearway_core::telemetry::add_link(span, tp);
            }
        }
    }

    /// Sends the acknowledgements owed to payers (a TA1 or 999 for a file
    /// of theirs with errors), like batches: whole, once, retried.
    pub async fn send_payer_acks(&self) -> PortResult<usize> {
        let mut sent = 0;
        for (sk, item) in self.query_all(Table::Batches, "acks-out", 10_000).await? {
            let Some((payer, _)) = sk.split_once('/') else { continue };
            let out: PayerAck = decode(&item.value)?;
            if self.router.admit_poll(payer).is_err() {
                continue;
            }
            let Some(key) = BlobKey::parse(&out.blob) else { continue };
            let sealed = self.ports.blobs.get(&key, clearway_core::ports::MAX_BLOB_BYTES).await?;
            let bytes = self.partners.batch_key().open(&sealed, out.name.as_bytes())?;
            match self.deliver_file(payer, &out.name, &out.name, bytes).await {
                Ok(_) => {
                    self.router.report(payer, true);
                    self.ports
                        .state
                        .write(vec![WriteOp::Delete {
                            key: Key::new(Table::Batches, "acks-out", &sk),
                            condition: Condition::Version(item.version),
                        }])
                        .await?;
                    metrics::counter!("clearway_payer_acks_sent_total").increment(1);
                    sent += 1;
                }
                Err(e) => {
                    self.router.report(payer, false);
                    tracing::warn!(payer = %payer, error = %e, "sending an acknowledgement to the payer failed; retried");
                }
            }
        }
        Ok(sent)
    }

    async fn batch_bytes(&self, batch: &BatchRecord) -> Result<Vec<u8>, TransportError> {
        let key = batch
            .blob
            .as_deref()
            .and_then(BlobKey::parse)
            .ok_or_else(|| TransportError::Other("batch has no blob".into()))?;
        let sealed = self.ports.blobs.get(&key, clearway_core::ports::MAX_BLOB_BYTES).await?;
        Ok(self.partners.batch_key().open(&sealed, batch.id.as_bytes())?)
    }

    /// Sends one batch; returns how (`sent`, or `present` when the payer
    /// already had it).
    async fn deliver(&self, batch: &BatchRecord) -> Result<&'static str, TransportError> {
        let bytes = self.batch_bytes(batch).await?;
        self.deliver_file(&batch.payer, &batch.name, &batch.id.replace('/', "-"), bytes).await
    }

    /// Sends one file to a payer by its transport; `present` when the
    /// payer already had it (same name, or the same idempotency key).
    async fn deliver_file(
        &self,
        payer: &str,
        name: &str,
        idempotency_key: &str,
        bytes: Vec<u8>,
    ) -> Result<&'static str, TransportError> {
        let settings = self.config.payer(payer);
        match &settings.destination {
            Destination::Outbox => {
                let dir = self.config.routing.outbox_dir.join(payer);
                let name = name.to_string();
                let wrote = tokio::task::spawn_blocking(move || crate::route::write_whole(&dir, &name, &bytes))
                    .await
                    .map_err(|e| TransportError::Other(e.to_string()))?
                    .map_err(|e| TransportError::Other(format!("outbox write: {}", e.kind())))?;
                Ok(if wrote { "sent" } else { "present" })
            }
            Destination::Http(url) => {
                let mut req = self.http.get(&settings.id).post(url);
                if let Some(tp) = clearway_core::telemetry::traceparent(&tracing::Span::current(), None) {
                    req = req.header(clearway_core::telemetry::TRACEPARENT, tp);
                }
                let resp = req
                    .timeout(settings.timeout.max(Duration::from_secs(30)))
                    .header("content-type", "application/edi-x12")
                    .header("idempotency-key", idempotency_key)
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| {
                        TransportError::Other(if e.is_timeout() {
                            "payer timed out".into()
                        } else {
                            "payer unreachable".into()
                        })
                    })?;
                let status = resp.status();
                if status.is_success() {
                    Ok("sent")
                } else if status == reqwest::StatusCode::CONFLICT {
                    Ok("present")
                } else {
                    Err(TransportError::Other(format!("payer answered {}", status.as_u16())))
                }
            }
            Destination::Sftp(cfg) => {
                let s = sftp::Sftp::connect(cfg, settings.timeout.max(Duration::from_secs(10))).await.inspect_err(|e| {
                    if matches!(e, sftp::SftpError::HostKeyMismatch { .. }) {
                        metrics::counter!("clearway_sftp_host_key_mismatches_total").increment(1);
                        tracing::error!(payer = %payer, error = %e, "refused the payer's SFTP server: host key mismatch");
                    }
                })?;
                let uploaded = s.upload(name, &bytes).await;
                s.close().await;
                Ok(if uploaded? { "sent" } else { "present" })
            }
        }
    }

    // ------------------------------------------------------------- polling --

    /// Fetches the answer files of every payer whose poll interval has
    /// passed.
    pub async fn poll_due(&self) -> PortResult<usize> {
        let mut fetched = 0;
        let payers: Vec<PayerConfig> = self.config.payers.values().cloned().collect();
        for p in payers {
            {
                let mut polled = self.polled.lock().unwrap_or_else(|e| e.into_inner());
                if polled.get(&p.id).is_some_and(|t| t.elapsed() < p.interchange.poll) {
                    continue;
                }
                polled.insert(p.id.clone(), std::time::Instant::now());
            }
            let span =
                tracing::info_span!("payer poll", otel.kind = "client", payer = %p.id, files = tracing::field::Empty);
            match self.poll(&p).instrument(span.clone()).await.inspect(|n| {
                span.record("files", n);
            }) {
                Ok(n) => fetched += n,
                Err(e) => {
                    tracing::warn!(payer = %p.id, error = %e, "polling the payer for answers failed");
                    metrics::counter!("clearway_payer_polls_total", "outcome" => "failed").increment(1);
                }
            }
        }
        Ok(fetched)
    }

    /// Polls one payer now.
    pub async fn poll(&self, p: &PayerConfig) -> Result<usize, TransportError> {
        let mut n = 0;
        match &p.destination {
            Destination::Sftp(cfg) => {
                if self.router.admit_poll(&p.id).is_err() {
                    return Ok(0);
                }
                let s = match sftp::Sftp::connect(cfg, p.timeout.max(Duration::from_secs(10))).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.router.report(&p.id, false);
                        if matches!(e, sftp::SftpError::HostKeyMismatch { .. }) {
                            metrics::counter!("clearway_sftp_host_key_mismatches_total").increment(1);
                            tracing::error!(payer = %p.id, error = %e, "refused the payer's SFTP server: host key mismatch");
                        }
                        return Err(e.into());
                    }
                };
                self.router.report(&p.id, true);
                for (name, size) in s.list().await? {
                    if size > MAX_PAYER_FILE_BYTES {
                        self.leave_oversize(&p.id, &name, size).await?;
                        continue;
                    }
                    if self.ports.state.get(&seen_key(&p.id, &name, size)).await?.is_some() {
                        let _ = s.remove(&name).await;
                        continue;
                    }
                    let file = s.open_download(&name).await?;
                    if self.fetch(&p.id, &name, file).await?.is_none() {
                        // It grew past the bound since it was listed.
                        self.leave_oversize(&p.id, &name, MAX_PAYER_FILE_BYTES + 1).await?;
                        continue;
                    }
                    // Removed from the payer's server only once stored.
                    if let Err(e) = s.remove(&name).await {
                        tracing::warn!(payer = %p.id, error = %e, "could not remove a fetched payer file; it is skipped by name and size");
                    }
                    n += 1;
                }
                s.close().await;
            }
            Destination::Outbox => {
                let dir = self.config.routing.outbox_dir.join(&p.id).join("from-payer");
                let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                for name in names {
                    let path = dir.join(&name);
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if size > MAX_PAYER_FILE_BYTES {
                        self.leave_oversize(&p.id, &name, size).await?;
                        continue;
                    }
                    let file =
                        tokio::fs::File::open(&path).await.map_err(|e| TransportError::Other(e.kind().to_string()))?;
                    if self.fetch(&p.id, &name, file).await?.is_none() {
                        self.leave_oversize(&p.id, &name, MAX_PAYER_FILE_BYTES + 1).await?;
                        continue;
                    }
                    let _ = tokio::fs::remove_file(&path).await;
                    n += 1;
                }
            }
            // Answers come by POST (`/v1/payer-files`).
            Destination::Http(_) => {}
        }
        metrics::counter!("clearway_payer_files_total", "outcome" => "fetched").increment(n as u64);
        Ok(n)
    }

    /// A payer file over [`MAX_PAYER_FILE_BYTES`]: not read, left where it
    /// is (it is the payer's), the operator told once on the attention
    /// list; the payer's other files are fetched as usual.
    async fn leave_oversize(&self, payer: &str, name: &str, size: u64) -> PortResult<()> {
        let marker = oversize_key(payer, name);
        if self.ports.state.get(&marker).await?.is_some() {
            return Ok(());
        }
        let attention = Attention {
            payer: payer.to_string(),
            file: None,
            batch: None,
            reason: format!(
                "payer file {name} is over the {MAX_PAYER_FILE_BYTES}-byte bound ({size} bytes): not read, left where the payer put it"
            ),
            at: timestamp(OffsetDateTime::now_utc()),
        };
        self.ports
            .state
            .write(vec![
                put(marker, Bytes::from_static(b"{}"), Condition::None),
                put(attention_key(&format!("{:013}-{payer}-oversize", now_ms())), encode(&attention)?, Condition::None),
            ])
            .await?;
        metrics::counter!("clearway_payer_files_total", "outcome" => "too_large").increment(1);
        tracing::error!(payer = %payer, size_bytes = size, "a payer file over the size bound is left unread");
        Ok(())
    }

    /// Stores a payer file as it is read from the payer (a chunk at a time,
    /// whatever its size); its SHA-256, or `None` if it is over
    /// [`MAX_PAYER_FILE_BYTES`] (nothing kept). What was written of a file
    /// that could not be read whole is removed.
    async fn fetch(
        &self,
        payer: &str,
        name: &str,
        mut input: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<Option<String>, TransportError> {
        use tokio::io::AsyncReadExt;
        let mut writer = roundtrip::payer_file_writer(&self.ports, &self.partners, payer)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match input.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    writer.discard().await;
                    return Err(TransportError::Other(format!("reading payer file: {}", e.kind())));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.write(&buf[..n]).await {
                writer.discard().await;
                return match e.kind() {
                    ErrorKind::InvalidInput => Ok(None),
                    _ => Err(e.into()),
                };
            }
        }
        Ok(Some(roundtrip::finish_payer_file(&self.ports, payer, name, writer).await?))
    }

    /// The envelope of what we forward to a submitter: from the ids it
    /// addressed us by, to its own (the partner id when unknown).
    fn envelope_to(&self, r: Option<&clearway_core::records::ReplyTo>, partner: &str) -> Envelope {
        let ours = &self.config.routing.sender;
        let or = |v: Option<&String>, d: &str| v.filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| d.to_string());
        let partner15: String = partner.chars().take(15).collect();
        let isa_id = or(r.map(|r| &r.isa_id), &partner15);
        Envelope {
            sender_qualifier: or(r.map(|r| &r.our_isa_qualifier), &ours.isa_qualifier),
            sender_id: or(r.map(|r| &r.our_isa_id), &ours.isa_id),
            receiver_qualifier: or(r.map(|r| &r.isa_qualifier), "ZZ"),
            group_sender: or(r.map(|r| &r.our_gs_id), &ours.gs_id),
            group_receiver: or(r.map(|r| &r.gs_id), &isa_id),
            receiver_id: isa_id,
            usage: if r.is_some_and(|r| r.usage == "T") { "T".into() } else { "P".into() },
            delimiters: batch::OUT,
        }
    }

    // ------------------------------------------------------------ applying --

    /// Applies every stored payer file not applied yet.
    pub async fn apply_stored(&self) -> PortResult<usize> {
        let mut applied = 0;
        for (sk, _) in self.query_all(Table::Batches, "unapplied", 10_000).await? {
            let Some((payer, sha)) = sk.rsplit_once('/') else { continue };
            let key = file_key(payer, sha);
            let Some(item) = self.ports.state.get(&key).await? else { continue };
            let mut file: PayerFile = decode(&item.value)?;
            // Taken with a conditional write, so two worker processes never
            // apply one file at once (one that died holding it is taken
            // over after APPLY_LEASE_MS).
            if file.applying_since_ms.is_some_and(|t| now_ms() - t < APPLY_LEASE_MS) {
                continue;
            }
            file.applying_since_ms = Some(now_ms());
            match self.ports.state.write(vec![put(key.clone(), encode(&file)?, Condition::Version(item.version))]).await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => continue,
                Err(e) => return Err(e),
            }
            // Renewed while it is applied (an 835 of a million claims takes
            // about a minute), so that no other process takes it over.
            let lease = Lease::hold(
                self.ports.state.clone(),
                key,
                file.clone(),
                item.version + 1,
                Duration::from_millis(APPLY_LEASE_MS as u64 / 3),
                Duration::from_millis(APPLY_LEASE_MS as u64),
            );
            file.applying_since_ms = None;
            let span = tracing::info_span!("payer file apply", payer = %payer, file = %sha);
            self.apply(file, lease).instrument(span).await?;
            applied += 1;
        }
        Ok(applied)
    }

    async fn apply(&self, mut file: PayerFile, lease: Lease) -> PortResult<()> {
        let started = std::time::Instant::now();
        // Read twice, a chunk at a time (the verdicts, then the answers),
        // never held whole.
        let mut for_acks = PayerFileReader::open(&self.ports, &self.partners, &file).await?;
        let mut for_answers = PayerFileReader::open(&self.ports, &self.partners, &file).await?;
        let mut problems: Vec<String> = Vec::new();
        let payer = file.payer.clone();
        let sha = file.sha256.clone();
        let (answers, owed) = match tokio::task::spawn_blocking(move || {
            let owed = acks_owed(&mut for_acks, &sha);
            let answers = batch::read_answers(&mut for_answers);
            (owed, for_acks.take_error().or_else(|| for_answers.take_error()), answers)
        })
        .await
        {
            // The store failed under the reader: the file stays unapplied
            // and is tried again (it is not the payer's fault).
            Ok((_, Some(e), _)) => return Err(e),
            Ok((owed, None, Ok(a))) => (a, owed),
            Ok((owed, None, Err(e))) => {
                problems.push(format!("unreadable: {e}"));
                (vec![], owed)
            }
            Err(e) => return Err(PortError::with_cause(ErrorKind::Internal, "read payer file", e)),
        };
        // What the standard asks us to tell the payer about its file.
        let mut ack_ops = Vec::new();
        for (n, (kind, body)) in owed.iter().enumerate() {
            let name = format!("CW_ACK_{}_{}_{n}.x12", &file.sha256[..12], kind);
            let blob = BlobKey::parse(&format!("payer-acks/{}/{name}", file.payer))
                .ok_or_else(|| PortError::new(ErrorKind::InvalidInput, "payer ack blob key"))?;
            match self.ports.blobs.put(&blob, Bytes::from(self.partners.batch_key().seal(body, name.as_bytes())?)).await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            ack_ops.push(put(
                Key::new(Table::Batches, "acks-out", format!("{}/{name}", file.payer)),
                encode(&PayerAck { name: name.clone(), blob: blob.to_string() })?,
                Condition::None,
            ));
            problems.push(format!("the file has errors: a {kind} goes back to the payer ({name})"));
        }
        if !ack_ops.is_empty() {
            self.ports.state.write(ack_ops).await?;
        }
        let short = &file.sha256[..12];
        for (n, a) in answers.iter().enumerate() {
            if lease.lost() {
                return Err(PortError::new(ErrorKind::Unavailable, "lost the hold on a payer file being applied"));
            }
            let tag = format!("{short}-{n}");
            let result = match a {
                PayerAnswer::Ta1(t) => {
                    file.answers.push("ta1".into());
                    self.apply_envelope(&payer, &t.control, format!("TA1:{}:{}", t.code, t.note), t.code != "A").await
                }
                PayerAnswer::Ack999(a) => {
                    file.answers.push("999".into());
                    let rejected = a.group_code == "R" || a.sets.iter().any(|(_, c)| c == "R");
                    self.apply_envelope(&payer, &a.group_control, format!("999:{}", a.group_code), rejected).await
                }
                PayerAnswer::Ack277(r) => {
                    file.answers.push("277ca".into());
                    self.apply_277(&payer, r, &tag).await
                }
                PayerAnswer::Remit(r) => {
                    file.answers.push("835".into());
                    self.apply_835(&file, r, &tag).await
                }
                PayerAnswer::Other(kind, _) => {
                    file.answers.push(kind.clone());
                    Ok(vec![format!("a {kind} transaction set is not a payer answer Clearway applies")])
                }
            };
            problems.extend(result?);
        }
        let now = timestamp(OffsetDateTime::now_utc());
        let mut ops = vec![WriteOp::Delete { key: unapplied_key(&payer, &file.sha256), condition: Condition::None }];
        for (n, reason) in problems.iter().enumerate() {
            ops.push(put(
                attention_key(&format!("{:013}-{}-{short}-{n}", now_ms(), payer)),
                encode(&Attention {
                    payer: payer.clone(),
                    file: Some(file.sha256.clone()),
                    batch: None,
                    reason: reason.clone(),
                    at: now.clone(),
                })?,
                Condition::None,
            ));
        }
        file.state = if problems.is_empty() { "applied".into() } else { "attention".into() };
        let version = lease.release().await?;
        ops.push(put(file_key(&payer, &file.sha256), encode(&file)?, Condition::Version(version)));
        for chunk in ops.chunks(100) {
            self.ports.state.write(chunk.to_vec()).await?;
        }
        self.feed.notify_waiters();
        metrics::counter!("clearway_payer_files_total", "outcome" => if problems.is_empty() { "applied" } else { "attention" }).increment(1);
        metrics::histogram!("clearway_payer_file_apply_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// A TA1 or 999 about one of our interchanges: recorded on the batch;
    /// a rejection marks its claims and asks an operator (the batch must
    /// be fixed and resent; the submitters' claims are not theirs to fix).
    async fn apply_envelope(
        &self,
        payer: &str,
        control: &str,
        verdict: String,
        rejected: bool,
    ) -> PortResult<Vec<String>> {
        let Ok(n) = control.trim().parse::<u32>() else {
            return Ok(vec![format!("{verdict} names control number {control:?}, which is not ours")]);
        };
        let key = BatchRecord::key(payer, n);
        let Some(item) = self.ports.state.get(&key).await? else {
            return Ok(vec![format!("{verdict} answers interchange {n:09}, which was never sent to {payer}")]);
        };
        let mut b: BatchRecord = decode(&item.value)?;
        let step = if verdict.starts_with("TA1") {
            b.ta1 = Some(verdict.clone());
            "ta1"
        } else {
            b.ack999 = Some(verdict.clone());
            "999"
        };
        let event = batch_event_ops(&b, step, None, Some(&verdict))?;
        let ops = vec![put(key, encode(&b)?, Condition::Version(item.version))];
        write_with_event(self.ports.state.as_ref(), ops, event).await?;
        if !rejected {
            return Ok(vec![]);
        }
        let members = self.query_all(Table::Batches, &BatchRecord::members(payer, n), 200_000).await?;
        let mut ops = Vec::new();
        for (_, m) in members {
            let m: Pending = decode(&m.value)?;
            ops.push(self.lineage_update(&m, "payer_rejected", Some(verdict.clone()), None).await?);
        }
        for chunk in ops.chunks(100) {
            self.ports.state.write(chunk.to_vec()).await?;
        }
        Ok(vec![format!("payer refused batch {}: {verdict}", b.id)])
    }

    async fn lineage_update(
        &self,
        m: &Pending,
        status: &str,
        payer_status: Option<String>,
        icn: Option<String>,
    ) -> PortResult<WriteOp> {
        let key = Lineage::key(&m.transaction, &m.claim_id);
        let mut l: Lineage = match self.ports.state.get(&key).await? {
            Some(i) => decode(&i.value)?,
            None => Lineage {
                batch: String::new(),
                payer: m.payer.clone(),
                interchange: None,
                set: None,
                position: None,
                status: String::new(),
                payer_status: None,
                payer_claim_control_number: None,
                updated_at: String::new(),
                reply_to: Some(reply_to(&m.submitter)),
            },
        };
        l.status = status.to_string();
        l.payer_status = payer_status;
        if icn.is_some() {
            l.payer_claim_control_number = icn;
        }
        l.updated_at = timestamp(OffsetDateTime::now_utc());
        Ok(put(key, encode(&l)?, Condition::None))
    }

    /// Finds each claim of a payer's 277CA among the claims of the batch
    /// it answers: by our REF*D9 when the payer returns it; else by patient
    /// control number, billing provider and charge (unique within a
    /// batch); else by patient control number when only one claim of the
    /// batch has it. (provider, claim) → member index.
    fn locate_in_batch(&self, members: &[Pending], r: &Ack277Answer) -> HashMap<(usize, usize), usize> {
        let by_key: HashMap<&str, usize> = members.iter().enumerate().map(|(i, m)| (m.key_token.as_str(), i)).collect();
        let mut by_pcn: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, m) in members.iter().enumerate() {
            by_pcn.entry(m.pcn_token.as_str()).or_default().push(i);
        }
        let by_trace: HashMap<&str, usize> =
            members.iter().enumerate().map(|(i, m)| (m.claim_id.as_str(), i)).collect();
        let mut out = HashMap::new();
        for (p, provider) in r.providers.iter().enumerate() {
            for (c, claim) in provider.claims.iter().enumerate() {
                let charge = claim.charge.map(|c| c.to_string()).unwrap_or_default();
                let key = self.partners.index_token(&batch::correlation_key(
                    &claim.patient_control_number,
                    &provider.provider_id,
                    &charge,
                ));
                let pcn = self.partners.index_token(&claim.patient_control_number);
                let found = claim
                    .clearinghouse_trace
                    .as_deref()
                    .and_then(|t| by_trace.get(t))
                    .or_else(|| by_key.get(key.as_str()))
                    .or_else(|| by_pcn.get(pcn.as_str()).filter(|v| v.len() == 1).map(|v| &v[0]));
                if let Some(&m) = found {
                    out.insert((p, c), m);
                }
            }
        }
        out
    }

    /// The recorded claims (claim index) with this patient control number
    /// for this payer (or one of its aliases).
    async fn claims_for_payer(&self, payer: &str, pcn: &str) -> PortResult<Vec<IndexedClaim>> {
        let canonical = self.config.canonical_payer(payer);
        let partition = self.partners.pcn_partition(pcn);
        let mut out = Vec::new();
        for (_, item) in self.ports.state.query(Table::Claims, &partition, None, 100).await? {
            let Ok(v) = decode::<serde_json::Value>(&item.value) else { continue };
            let claim_payer = v["claim"]["payer_id"].as_str().unwrap_or_default();
            let (Some(partner), Some(transaction), Some(claim_id)) =
                (v["partner"].as_str(), v["transactionId"].as_str(), v["claim"]["id"].as_str())
            else {
                continue;
            };
            if self.config.canonical_payer(claim_payer) == canonical {
                out.push(IndexedClaim {
                    partner: partner.to_string(),
                    transaction: transaction.to_string(),
                    claim_id: claim_id.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Finds the claims of a 277 that names no batch of ours (an
    /// unsolicited 277) through the claim index: the one claim routed to
    /// this payer with that patient control number (and, when the payer
    /// returns it, our REF*D9). Returns the members found and
    /// (provider, claim) → member index; a claim with no such single match
    /// is left out (the caller reports it).
    async fn locate_by_claim_index(
        &self,
        payer: &str,
        r: &Ack277Answer,
    ) -> PortResult<(Vec<Pending>, HashMap<(usize, usize), usize>)> {
        let mut members: Vec<Pending> = Vec::new();
        let mut located = HashMap::new();
        let mut batches: HashMap<String, Vec<Pending>> = HashMap::new();
        for (p, provider) in r.providers.iter().enumerate() {
            for (c, claim) in provider.claims.iter().enumerate() {
                let candidates: Vec<IndexedClaim> = self
                    .claims_for_payer(payer, &claim.patient_control_number)
                    .await?
                    .into_iter()
                    .filter(|c| claim.clearinghouse_trace.as_deref().is_none_or(|trace| trace == c.claim_id))
                    .collect();
                let [IndexedClaim { transaction: txn, claim_id, .. }] = candidates.as_slice() else { continue };
                let Some(item) = self.ports.state.get(&Lineage::key(txn, claim_id)).await? else { continue };
                let lineage: Lineage = decode(&item.value)?;
                if !batches.contains_key(&lineage.batch) {
                    let found: Vec<Pending> = self
                        .query_all(Table::Batches, &format!("members/{}", lineage.batch), 200_000)
                        .await?
                        .into_iter()
                        .map(|(_, i)| decode(&i.value))
                        .collect::<PortResult<_>>()?;
                    batches.insert(lineage.batch.clone(), found);
                }
                let Some(member) = batches.get(&lineage.batch).and_then(|b| b.iter().find(|m| &m.claim_id == claim_id))
                else {
                    continue;
                };
                let at = match members.iter().position(|m| m.claim_id == member.claim_id) {
                    Some(i) => i,
                    None => {
                        members.push(member.clone());
                        members.len() - 1
                    }
                };
                located.insert((p, c), at);
            }
        }
        Ok((members, located))
    }

    /// A payer's 277CA: each claim's verdict recorded, and a 277CA per
    /// submitter transaction published to that submitter.
    async fn apply_277(&self, payer: &str, r: &Ack277Answer, tag: &str) -> PortResult<Vec<String>> {
        // The batch its 2200B names; a 277 that names none of ours (an
        // unsolicited 277) is matched claim by claim through the claim
        // index instead.
        let batch_members: Vec<Pending> = match r.batch_reference.trim().parse::<u32>() {
            Ok(control) => self
                .query_all(Table::Batches, &BatchRecord::members(payer, control), 200_000)
                .await?
                .into_iter()
                .map(|(_, i)| decode(&i.value))
                .collect::<PortResult<_>>()?,
            Err(_) => Vec::new(),
        };
        let by_batch = !batch_members.is_empty();
        let (members, located) = if by_batch {
            let located = self.locate_in_batch(&batch_members, r);
            (batch_members, located)
        } else {
            self.locate_by_claim_index(payer, r).await?
        };
        let scope = if by_batch {
            format!("batch {payer}/{}", r.batch_reference.trim())
        } else {
            format!("the claims routed to {payer} (2200B names no batch of ours)")
        };
        let mut problems = Vec::new();
        // (member, provider, claim) per submitter transaction.
        let mut per_txn: BTreeMap<&str, Vec<(usize, usize, usize)>> = BTreeMap::new();
        let mut ops = Vec::new();
        for (p, provider) in r.providers.iter().enumerate() {
            for (c, claim) in provider.claims.iter().enumerate() {
                let Some(&m) = located.get(&(p, c)) else {
                    problems.push(format!("277CA claim {} of provider {} matches none of {scope}", c + 1, p + 1));
                    continue;
                };
                let member = &members[m];
                let rejected = ["A3", "A6", "A7", "A8"].iter().any(|s| claim.status.starts_with(s));
                let status = if rejected { "payer_rejected" } else { "payer_accepted" };
                ops.push(
                    self.lineage_update(
                        member,
                        status,
                        Some(claim.status.clone()),
                        claim.payer_claim_control_number.clone(),
                    )
                    .await?,
                );
                // The claim index (claim status inquiries) follows the payer.
                let rec = ClaimRecord {
                    id: member.claim_id.clone(),
                    patient_control_number: Sensitive::new(claim.patient_control_number.clone()),
                    payer_id: Some(member.payer.clone()),
                    total_charge: member.total_charge.clone(),
                    status: if rejected { "rejected".into() } else { "routed".into() },
                    status_code: rejected.then(|| claim.status.clone()),
                    destination: Some(format!("batch:{payer}")),
                };
                ops.push(WriteOp::Put {
                    key: Key::new(
                        Table::Claims,
                        self.partners.pcn_partition(&claim.patient_control_number),
                        &member.claim_id,
                    ),
                    value: encode(&serde_json::json!({
                        "claim": rec,
                        "transactionId": member.transaction,
                        "partner": member.partner,
                        "receivedAt": member.received_at,
                    }))?,
                    expires_at: None,
                    condition: Condition::None,
                    owner: PartnerId::new(&member.partner).ok(),
                });
                per_txn.entry(member.transaction.as_str()).or_default().push((m, p, c));
            }
        }
        // One 277CA per submitter transaction, with only its claims.
        let now = OffsetDateTime::now_utc();
        let at = PrimitiveDateTime::new(now.date(), now.time());
        let mut published: Vec<ForwardedAnswer> = Vec::new();
        for (txn, claims) in &per_txn {
            let first = &members[claims[0].0];
            let mut by_provider: Vec<(usize, Vec<usize>)> = Vec::new();
            for &(_, p, c) in claims {
                match by_provider.iter_mut().find(|(x, _)| *x == p) {
                    Some((_, v)) => v.push(c),
                    None => by_provider.push((p, vec![c])),
                }
            }
            let s = &first.submitter;
            let env = self.envelope_to(Some(&reply_to(s)), &first.partner);
            let ack_id = format!("{txn}-277ca-payer-{tag}");
            let controls = Controls::derived(ack_id.as_bytes());
            let body = batch::forward_277ca(&Forward277 {
                envelope: &env,
                control: controls.interchange,
                at,
                reference: &format!("P{}", &tag.replace('-', "")[..12.min(tag.len())]),
                payer: r,
                submitter: s,
                claims: &by_provider,
            });
            let Some(transaction) = TransactionId::parse(txn) else { continue };
            let partner = PartnerId::new(&first.partner)
                .map_err(|e| PortError::with_cause(ErrorKind::Internal, "partner id", e))?;
            // The claims in the order the forwarded 277CA has them.
            let mut answered = Vec::with_capacity(claims.len());
            for (p, cs) in &by_provider {
                for c in cs {
                    if let Some(&(m, _, _)) = claims.iter().find(|(_, p2, c2)| p2 == p && c2 == c) {
                        answered.push(members[m].claim_id.clone());
                    }
                }
            }
            published.push(ForwardedAnswer {
                partner: partner.clone(),
                ack: AckRecord {
                    id: ack_id,
                    transaction,
                    partner,
                    kind: "277ca".into(),
                    content_type: "application/edi-x12".into(),
                    created_at: timestamp(now),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    body_blob: None,
                    body_chunks: None,
                    body_sealed: None,
                    feed_cursor: None,
                },
                facts: changes::PayerAnswer {
                    payer: payer.to_string(),
                    answer: "277ca".into(),
                    batch: by_batch.then(|| format!("{payer}/{}", r.batch_reference.trim())),
                    claims: answered,
                },
                received_ms: Some(ms_of(&first.received_at)),
            });
        }
        self.store_and_publish(ops, published).await?;
        metrics::counter!("clearway_payer_claim_answers_total", "kind" => "277ca")
            .increment(per_txn.values().map(|v| v.len() as u64).sum());
        Ok(problems)
    }

    /// Writes the state changes, then each acknowledgement (its record and
    /// feed entry) together with its change-feed event (the payer's answer
    /// reaching the submitter's transaction, received at `received_ms`),
    /// then publishes the acknowledgements.
    async fn store_and_publish(&self, ops: Vec<WriteOp>, acks: Vec<ForwardedAnswer>) -> PortResult<()> {
        for chunk in ops.chunks(100) {
            self.ports.state.write(chunk.to_vec()).await?;
        }
        let mut stored = Vec::with_capacity(acks.len());
        for ForwardedAnswer { partner, mut ack, facts, received_ms } in acks {
            // A re-application rewrites the same feed entry.
            let stamp = feed::clock().stamp();
            let earlier = self
                .ports
                .state
                .get(&AckRecord::key(&ack.transaction, &ack.id))
                .await?
                .and_then(|item| decode::<AckRecord>(&item.value).ok());
            if let Some(old) = &earlier {
                ack.created_at = old.created_at.clone();
            }
            ack.feed_cursor = Some(ack.feed_cursor_of(self.ports.state.as_ref(), earlier.as_ref(), &stamp).await?);
            self.partners.seal_ack(self.ports.blobs.as_ref(), &mut ack).await?;
            let at = ms_of(&ack.created_at);
            let mut e = ChangeEvent::plain(
                ChangeKind::PayerAnswer,
                partner.clone(),
                ack.transaction.clone(),
                at,
                received_ms.unwrap_or(at),
            );
            e.status = facts.answer.clone();
            e.ack_ids = vec![ack.id.clone()];
            e.payer_answer = Some(Box::new(facts));
            let event = [
                put(
                    changes::payer_event_seen_key(&format!("answer/{}", ack.id)),
                    Bytes::from_static(b"{}"),
                    Condition::NotExists,
                ),
                put(e.key(), encode(&e)?, Condition::None),
            ];
            // In a task of its own with its stamp (see `feed::write_stamped`).
            let (state, ops) = (self.ports.state.clone(), ack.feed_ops()?);
            tokio::spawn(async move {
                let written = write_with_event(state.as_ref(), ops, event).await;
                drop(stamp);
                written
            })
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "payer answer write", e))??;
            // A re-application wrote the body afresh: the earlier chunks
            // are no longer pointed to.
            if let Some(old) = earlier
                && let (Some(prefix), Some(chunks)) = (&old.body_blob, old.body_chunks)
                && ack.body_blob.as_ref() != Some(prefix)
            {
                clearway_core::chunked::delete(self.ports.blobs.as_ref(), prefix, chunks).await;
            }
            stored.push((partner, ack));
        }
        let mut by_partner: BTreeMap<PartnerId, Vec<AckRecord>> = BTreeMap::new();
        for (p, a) in stored {
            by_partner.entry(p).or_default().push(a);
        }
        for (p, acks) in by_partner {
            publish_acks(self.ports.notifier.as_ref(), &p, &acks).await?;
        }
        Ok(())
    }

    /// A payer's 835 transaction set: to the partner the payee is enrolled
    /// to, or else the one partner whose claims it pays; its payments
    /// reach claim status.
    async fn apply_835(&self, file: &PayerFile, r: &RemitAnswer, tag: &str) -> PortResult<Vec<String>> {
        let payer = file.payer.as_str();
        let payee = format!("{}:{}", r.payee_qualifier, r.payee_id);
        let enrolled = self.config.routing.era_payees.get(&payee).cloned();
        // Who recorded the claims it pays: partner → one of its
        // transactions (a map, not a list: an 835 of 100,000 claims whose
        // numbers recur would otherwise hold millions of pairs). The claim
        // numbers are read from the file again, a thousand at a time.
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<String>>(2);
            let mut input = self.remit_input(file, r).await?;
            let remit = r.first();
            let reading = tokio::task::spawn_blocking(move || {
                let (mut open, mut pcns) = (true, Vec::with_capacity(PAYMENTS_PER_CHUNK));
                let read = batch::remittance_claim_numbers(&mut input, &remit, |pcn| {
                    pcns.push(pcn);
                    if open && pcns.len() == PAYMENTS_PER_CHUNK {
                        // A closed channel: the lookups failed; the rest is skipped.
                        open = tx.blocking_send(std::mem::take(&mut pcns)).is_ok();
                    }
                    if !open {
                        pcns.clear();
                    }
                });
                if open && !pcns.is_empty() {
                    let _ = tx.blocking_send(pcns);
                }
                (read, input.take_error())
            });
            let mut looked = Ok(());
            while let Some(pcns) = rx.recv().await {
                if looked.is_err() {
                    continue;
                }
                for pcn in &pcns {
                    match self.claims_for_payer(payer, pcn).await {
                        Ok(claims) => {
                            for c in claims {
                                owners.entry(c.partner).or_insert(c.transaction);
                            }
                        }
                        Err(e) => {
                            looked = Err(e);
                            rx.close();
                            break;
                        }
                    }
                }
            }
            match reading.await {
                Ok((_, Some(e))) => return Err(e),
                // It was read once already (`read_answers`): not expected.
                Ok((Err(e), None)) => return Ok(vec![format!("835 {tag}: its claims could not be read: {e}")]),
                Ok((Ok(()), None)) => {}
                Err(e) => return Err(PortError::with_cause(ErrorKind::Internal, "read an 835's claims", e)),
            }
            looked?;
        }
        let partner = match enrolled {
            Some(p) => p,
            None => {
                let partners: Vec<&str> = owners.keys().map(String::as_str).collect();
                match partners.as_slice() {
                    [one] => one.to_string(),
                    [] => {
                        return Ok(vec![format!(
                            "835 {tag}: payee {} is enrolled to no partner and pays no claim we routed",
                            r.payee_qualifier
                        )]);
                    }
                    _ => {
                        return Ok(vec![format!(
                            "835 {tag}: payee {} is enrolled to no partner and pays claims of {} partners",
                            r.payee_qualifier,
                            partners.len()
                        )]);
                    }
                }
            }
        };
        let Some(txn) = owners.get(&partner).cloned() else {
            return Ok(vec![format!(
                "835 {tag}: the enrolled partner has no claim this 835 pays, so it has no transaction to file it under"
            )]);
        };
        // Addressed as the submitter addressed us with the claim.
        let reply = match TransactionId::parse(&txn) {
            Some(_) => self
                .ports
                .state
                .query(Table::Batches, &Lineage::partition(&txn), None, 1)
                .await?
                .into_iter()
                .find_map(|(_, i)| decode::<Lineage>(&i.value).ok().and_then(|l| l.reply_to)),
            None => None,
        };
        let env = self.envelope_to(reply.as_ref(), &partner);
        let ack_id = format!("{txn}-835-payer-{tag}");
        let controls = Controls::derived(ack_id.as_bytes());
        let now = OffsetDateTime::now_utc();
        let at = PrimitiveDateTime::new(now.date(), now.time());
        let (Some(transaction), Ok(partner_id)) = (TransactionId::parse(&txn), PartnerId::new(&partner)) else {
            return Ok(vec![format!("835 {tag}: recorded claim has an unreadable transaction or partner id")]);
        };
        // Payments, as an 835 a submitter sent would record them (sealed
        // under that partner's keys): the forwarded set is read and written
        // [`PAYMENTS_PER_CHUNK`] claims at a time, never parsed whole.
        let source = format!("payer-{payer}-{tag}");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<WriteOp>>(2);
        let mut written = Ok(());
        let reading = {
            let mut input = self.remit_input(file, r).await?;
            let (env, remit, source, partner_id, partners) =
                (env.clone(), r.first(), source.clone(), partner_id.clone(), self.partners.clone());
            tokio::task::spawn_blocking(move || {
                let mut open = true;
                let forwarded = batch::forward_835(&env, controls.interchange, at, &remit, &mut input);
                let read = remittance_chunks(forwarded, PAYMENTS_PER_CHUNK, |rem, first| {
                    // A closed channel: the writer failed; the rest is skipped.
                    open =
                        open && tx.blocking_send(payment_writes(rem, &source, &partner_id, &partners, first)).is_ok();
                });
                (read, input.take_error())
            })
        };
        while let Some(ops) = rx.recv().await {
            if written.is_ok() {
                for chunk in ops.chunks(100) {
                    if let Err(e) = self.ports.state.write(chunk.to_vec()).await {
                        written = Err(e);
                        rx.close();
                        break;
                    }
                }
            }
        }
        // Awaited whatever happened, so no reader outlives the apply; a
        // reader that failed leaves the file unapplied (retried), never
        // applied with some of its payments missing.
        let read = reading.await;
        written?;
        match read {
            Ok((_, Some(e))) => return Err(e),
            Ok((Ok(()), None)) => {}
            // The 835 was read once already (`read_answers`): not expected.
            Ok((Err(e), None)) => return Ok(vec![format!("835 {tag}: its payments could not be read: {e}")]),
            Err(e) => return Err(PortError::with_cause(ErrorKind::Internal, "read an 835's payments", e)),
        }
        // The forwarded 835 itself, written to the blob store in chunks as
        // it is built (sealed under the submitter's keys).
        let body = match self.forward_body(file, &env, controls.interchange, at, r, &partner_id, &ack_id).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Ok(vec![format!("835 {tag}: it could not be forwarded: {e}")]),
            Err(e) => return Err(e),
        };
        let ack = AckRecord {
            id: ack_id,
            transaction,
            partner: partner_id.clone(),
            kind: "835".into(),
            content_type: "application/edi-x12".into(),
            created_at: timestamp(now),
            body: String::new(),
            body_blob: Some(body.prefix.clone()),
            body_chunks: Some(body.chunks),
            body_sealed: None,
            feed_cursor: None,
        };
        let facts =
            changes::PayerAnswer { payer: payer.to_string(), answer: "835".into(), batch: None, claims: vec![] };
        let key = AckRecord::key(&ack.transaction, &ack.id);
        if let Err(e) = self
            .store_and_publish(vec![], vec![ForwardedAnswer { partner: partner_id, ack, facts, received_ms: None }])
            .await
        {
            // The chunks go only if no record points to them (the record
            // may have been written before the failure: publishing, say).
            let pointed = match self.ports.state.get(&key).await {
                Ok(Some(item)) => {
                    decode::<AckRecord>(&item.value).map_or(true, |a| a.body_blob == Some(body.prefix.clone()))
                }
                Ok(None) => false,
                Err(_) => true,
            };
            if !pointed {
                clearway_core::chunked::delete(self.ports.blobs.as_ref(), &body.prefix, body.chunks).await;
            }
            return Err(e);
        }
        metrics::counter!("clearway_payer_claim_answers_total", "kind" => "835").increment(r.claims as u64);
        Ok(vec![])
    }

    /// The 835 at `r` of `file` as the first set of a stream: its
    /// interchange's ISA, then the file from its ST (the sets before it
    /// are not read again: a file of a thousand 835s is read about twice,
    /// not a thousand times). Read it with [`RemitAnswer::first`].
    async fn remit_input(&self, file: &PayerFile, r: &RemitAnswer) -> PortResult<RemitInput> {
        Ok(RemitInput {
            isa: std::io::Cursor::new(r.isa.clone()),
            file: PayerFileReader::open_at(&self.ports, &self.partners, file, r.offset).await?,
        })
    }

    /// Writes the 835 at `r` of `file`, re-enveloped for the submitter, as
    /// an acknowledgement body in chunks; the inner error is the file's
    /// (not expected: it was read once already), the outer the store's.
    #[allow(clippy::too_many_arguments)]
    async fn forward_body(
        &self,
        file: &PayerFile,
        env: &Envelope,
        control: u32,
        at: PrimitiveDateTime,
        r: &RemitAnswer,
        partner: &PartnerId,
        ack_id: &str,
    ) -> PortResult<Result<clearway_core::chunked::Chunked, String>> {
        let mut writer = self.partners.ack_body_writer(self.ports.blobs.clone(), partner, ack_id)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let mut input = self.remit_input(file, r).await?;
        let (env, remit) = (env.clone(), r.first());
        let building = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut forwarded = batch::forward_835(&env, control, at, &remit, &mut input);
            // Sent on in pieces of 256 KiB; a closed channel: the writer failed.
            let result = loop {
                let mut piece = Vec::with_capacity(256 * 1024);
                match (&mut forwarded).take(256 * 1024).read_to_end(&mut piece) {
                    Ok(0) => break Ok(()),
                    Ok(_) if tx.blocking_send(piece).is_err() => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e.to_string()),
                }
            };
            drop(forwarded);
            (result, input.take_error())
        });
        let mut wrote = Ok(());
        while let Some(piece) = rx.recv().await {
            if wrote.is_ok()
                && let Err(e) = writer.write(&piece).await
            {
                wrote = Err(e);
                rx.close();
            }
        }
        let built = building.await;
        let outcome = match (wrote, built) {
            (Err(e), _) | (Ok(()), Ok((_, Some(e)))) => Err(e),
            (Ok(()), Ok((Err(e), None))) => Ok(Err(e)),
            (Ok(()), Ok((Ok(()), None))) => return Ok(Ok(writer.finish().await?)),
            (Ok(()), Err(e)) => Err(PortError::with_cause(ErrorKind::Internal, "forward an 835", e)),
        };
        writer.discard().await;
        outcome
    }
}

/// See [`RoundTrip::remit_input`].
#[derive(Debug)]
struct RemitInput {
    isa: std::io::Cursor<Vec<u8>>,
    file: PayerFileReader,
}

impl RemitInput {
    fn take_error(&mut self) -> Option<PortError> {
        self.file.take_error()
    }
}

impl std::io::Read for RemitInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.isa.read(buf)? {
            0 => self.file.read(buf),
            n => Ok(n),
        }
    }
}

/// A payer file taken to apply: its record's `applying_since_ms` is
/// renewed every `every` (with a version condition) until released or
/// dropped, so that a long apply is not taken over by another process. A
/// renewal that fails is tried again until the hold would have run out;
/// one refused because the record changed (another process took the file)
/// loses the hold, and the apply stops.
struct Lease {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    version: Arc<std::sync::atomic::AtomicU64>,
    lost: Arc<std::sync::atomic::AtomicBool>,
}

impl Lease {
    /// Holds the lease on `file` (its record at `key`, at `version`) for
    /// `hold` from each renewal.
    fn hold(
        state: Arc<dyn clearway_core::ports::StateStore>,
        key: Key,
        mut file: PayerFile,
        version: u64,
        every: Duration,
        hold: Duration,
    ) -> Lease {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let (stop, version, lost) =
            (CancellationToken::new(), Arc::new(AtomicU64::new(version)), Arc::new(AtomicBool::new(false)));
        let task = {
            let (stop, version, lost) = (stop.clone(), version.clone(), lost.clone());
            tokio::spawn(async move {
                let (mut renewed, mut wait) = (tokio::time::Instant::now(), every);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    file.applying_since_ms = Some(now_ms());
                    let (v, Ok(value)) = (version.load(Ordering::SeqCst), encode(&file)) else { return };
                    match state.write(vec![put(key.clone(), value, Condition::Version(v))]).await {
                        Ok(()) => {
                            version.store(v + 1, Ordering::SeqCst);
                            (renewed, wait) = (tokio::time::Instant::now(), every);
                        }
                        Err(e) if e.kind() != ErrorKind::PreconditionFailed && renewed.elapsed() + every / 4 < hold => {
                            tracing::warn!(error = %e, "could not renew the hold on a payer file being applied; trying again");
                            wait = every / 4;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "lost the hold on a payer file being applied; it is left to whoever took it");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Lease { stop, task, version, lost }
    }

    /// Whether the hold was lost (the apply must stop: another process
    /// may be applying the file).
    fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops renewing (a renewal under way finishes first) and says the
    /// record's version now; an error if the hold was lost.
    async fn release(mut self) -> PortResult<u64> {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        if self.lost() {
            return Err(PortError::new(ErrorKind::Unavailable, "lost the hold on a payer file being applied"));
        }
        Ok(self.version.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A payer's answer re-enveloped for a submitter, to store and publish.
struct ForwardedAnswer {
    partner: PartnerId,
    ack: AckRecord,
    facts: changes::PayerAnswer,
    /// The rows' receipt time (Unix ms): a 277CA's claims were received
    /// with the submitter's transaction; `None` for an 835, received when
    /// the payer's answer was (its acknowledgement's time).
    received_ms: Option<i64>,
}

/// A claim as the claim index records it.
#[derive(Debug)]
struct IndexedClaim {
    partner: String,
    transaction: String,
    claim_id: String,
}

/// An acknowledgement owed to a payer (`acks-out`, `<payer>/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PayerAck {
    name: String,
    blob: String,
}

/// The TA1s and 999s a payer file calls for: a TA1 for an interchange with
/// envelope errors (when its ISA can be answered at all), a 999 for a
/// group with a set in error. None for a clean file.
fn acks_owed(input: impl std::io::Read, sha: &str) -> Vec<(&'static str, Vec<u8>)> {
    // The verdicts only: an 835's claims are not read here.
    let analysis = analyze_from(input, &AnalyzeOptions { skip_documents: true, ..AnalyzeOptions::default() });
    let now = OffsetDateTime::now_utc();
    let at = PrimitiveDateTime::new(now.date(), now.time());
    let mut out = Vec::new();
    for (i, ic) in analysis.interchanges.iter().enumerate() {
        let controls = Controls::derived(format!("{sha}|{i}").as_bytes());
        if !ic.report.findings.is_empty() {
            out.push(("TA1", clearway_formats::x12::build::ta1(&ic.report, controls, at)));
        }
        let bad_set =
            ic.groups.iter().any(|g| g.sets.iter().any(|s| !s.report.accepted()) || !g.report.findings.is_empty());
        if bad_set && let Some(ack) = clearway_formats::x12::build::ack999(ic, controls, at) {
            out.push(("999", ack));
        }
    }
    out
}

fn reply_to(s: &SubmitterInfo) -> clearway_core::records::ReplyTo {
    clearway_core::records::ReplyTo {
        isa_qualifier: s.isa_qualifier.clone(),
        isa_id: s.isa_id.clone(),
        gs_id: s.gs_id.clone(),
        our_isa_qualifier: s.our_isa_qualifier.clone(),
        our_isa_id: s.our_isa_id.clone(),
        our_gs_id: s.our_gs_id.clone(),
        usage: s.usage.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearway_core::ports::StateStore;

    fn batch() -> BatchRecord {
        BatchRecord {
            id: "ACME01/000000007".into(),
            payer: "ACME01".into(),
            control: 7,
            group: String::new(),
            state: "delivered".into(),
            created_at_ms: 1_000,
            at: String::new(),
            claims: 3,
            bytes: 900,
            blob: None,
            name: "CW_ACME01_000000007.x12".into(),
            attempts: 0,
            last_error: None,
            delivered_at: Some("2026-12-01T00:00:00Z".into()),
            ta1: None,
            ack999: None,
        }
    }

    /// The hold on a payer file being applied is renewed while it is held
    /// (another process sees a fresh `applyingSinceMs`), and the version it
    /// ends at is the record's, so the apply's last write lands.
    #[tokio::test]
    async fn a_long_apply_keeps_its_hold_on_the_file() {
        let state: Arc<dyn StateStore> = Arc::new(clearway_local::MemStateStore::default());
        let file = PayerFile {
            payer: "ACME01".into(),
            sha256: "ab".repeat(32),
            name: "era.835".into(),
            size_bytes: 10,
            blob: "payer-files/ACME01/x".into(),
            chunks: Some(1),
            chunk_bytes: None,
            state: "stored".into(),
            received_at: String::new(),
            answers: vec![],
            applying_since_ms: Some(1),
        };
        let key = file_key("ACME01", &file.sha256);
        state.write(vec![put(key.clone(), encode(&file).unwrap(), Condition::None)]).await.unwrap();
        let hold = |at| {
            Lease::hold(
                state.clone(),
                key.clone(),
                file.clone(),
                at,
                Duration::from_millis(20),
                Duration::from_secs(30),
            )
        };
        let at = state.get(&key).await.unwrap().unwrap().version;
        let lease = hold(at);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let held = state.get(&key).await.unwrap().unwrap();
        let renewed: PayerFile = decode(&held.value).unwrap();
        assert!(renewed.applying_since_ms.unwrap() > 1, "renewed");
        assert!(held.version > at, "renewed more than once");
        assert!(!lease.lost());
        let version = lease.release().await.unwrap();
        assert_eq!(version, state.get(&key).await.unwrap().unwrap().version);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(version, state.get(&key).await.unwrap().unwrap().version, "no renewal once released");
        let done = PayerFile { state: "applied".into(), applying_since_ms: None, ..file.clone() };
        state.write(vec![put(key.clone(), encode(&done).unwrap(), Condition::Version(version))]).await.unwrap();

        // Another process took the file (its record changed under the
        // hold): the hold is lost, and the apply is told.
        let lease = hold(state.get(&key).await.unwrap().unwrap().version);
        state.write(vec![put(key.clone(), encode(&file).unwrap(), Condition::None)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(lease.lost());
        assert_eq!(lease.release().await.unwrap_err().kind(), ErrorKind::Unavailable);
    }

    async fn pending(state: &dyn StateStore) -> Vec<(String, clearway_core::ports::Item)> {
        state.query(Table::Changes, changes::PENDING, None, 100).await.unwrap()
    }

    /// A payer file applied again (after a crash) records its 999 on the
    /// batch again; once the first event was sealed (its pending entry
    /// gone), an event with a fresh key would be a second row: the
    /// once-only marker keeps it out, and the batch is still written. A
    /// different verdict is a new event.
    #[tokio::test]
    async fn a_batch_step_reaches_the_feed_once_when_recorded_again() {
        let state = clearway_local::MemStateStore::default();
        let mut b = batch();
        b.ack999 = Some("999:A".into());
        let write = |b: &BatchRecord| {
            let ops = vec![put(BatchRecord::key(&b.payer, b.control), encode(b).unwrap(), Condition::None)];
            (ops, batch_event_ops(b, "999", None, b.ack999.as_deref()).unwrap())
        };
        let (ops, event) = write(&b);
        write_with_event(&state, ops, event).await.unwrap();
        let first = pending(&state).await;
        assert_eq!(first.len(), 1);
        // Sealed: the exporter deletes the pending event.
        let delete = first
            .iter()
            .map(|(sk, _)| WriteOp::Delete { key: changes::pending_key(sk), condition: Condition::None })
            .collect();
        state.write(delete).await.unwrap();
        b.attempts = 1;
        let (ops, event) = write(&b);
        write_with_event(&state, ops, event).await.unwrap();
        assert!(pending(&state).await.is_empty(), "no second event");
        let stored: BatchRecord =
            decode(&state.get(&BatchRecord::key("ACME01", 7)).await.unwrap().unwrap().value).unwrap();
        assert_eq!(stored.attempts, 1, "the batch is written all the same");
        // A different verdict (the payer sent another 999) is its own event,
        // and so is another step of the same batch.
        b.ack999 = Some("999:E".into());
        let (ops, event) = write(&b);
        write_with_event(&state, ops, event).await.unwrap();
        assert_eq!(pending(&state).await.len(), 1, "a new verdict");
        let (ops, event) = (vec![], batch_event_ops(&b, "ta1", None, Some("TA1:A:000")).unwrap());
        write_with_event(&state, ops, event).await.unwrap();
        assert_eq!(pending(&state).await.len(), 2);
    }
}
