//! The audit log on the AWS backend: the same RFC 6962 log as the embedded
//! one, kept in a DynamoDB table of its own (apart from the data), with
//! every signed checkpoint also written to an S3 bucket under Object Lock
//! in COMPLIANCE mode (nobody, not even the account's root, can delete or
//! shorten it before its retention ends).
//!
//! The log is written through the [`StateStore`] port ([`StoreAuditLog`]),
//! so it runs on any state store: the in-memory one in tests, DynamoDB in
//! production. Items (table `Audit`): `head` (the size, its version the
//! sequencer), `leaf/<seq>` (an event's bytes), `nodeNN/<index>` (perfect
//! subtree hashes), `checkpoint/<size>` (signed notes) and
//! `checkpoint-latest`. Appends are group-committed by one writer task per
//! process: up to [`MAX_BATCH`] events, their nodes and the new size in one
//! transaction conditioned on the size's version, so writers in several
//! processes interleave whole batches and never fork the log.

use clearway_core::audit::{
    AuditError, AuditEvent, AuditPage, AuditQuery, Checkpoint, CompactRange, Hash, LogReader, LogSigner, MAX_SCAN,
    Nodes, VerifierKey, leaf_hash, note_size,
};
use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
use clearway_core::{ErrorKind, PortError, PortResult};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most events waiting for one transaction.
pub const MAX_BATCH: usize = 30;
/// DynamoDB's limits on one transaction, with room to spare: items (the
/// head is one of them) and bytes.
const MAX_ITEMS: usize = 100;
const MAX_TRANSACTION_BYTES: usize = 3_500_000;
/// Largest event: DynamoDB items hold at most 400 KB.
pub const MAX_EVENT_BYTES: usize = 350_000;

fn head_key() -> Key {
    Key::new(Table::Audit, "head", "head")
}
fn leaf_key(seq: u64) -> Key {
    Key::new(Table::Audit, "leaf", format!("{seq:020}"))
}
fn node_key(level: u8, index: u64) -> Key {
    Key::new(Table::Audit, format!("node{level:02}"), format!("{index:020}"))
}
fn checkpoint_key(size: u64) -> Key {
    Key::new(Table::Audit, "checkpoint", format!("{size:020}"))
}
fn latest_key() -> Key {
    Key::new(Table::Audit, "checkpoint-latest", "latest")
}

fn put(key: Key, value: impl Into<bytes::Bytes>, condition: Condition) -> WriteOp {
    WriteOp::Put { key, value: value.into(), expires_at: None, condition, owner: None }
}

fn audit_err(e: AuditError) -> PortError {
    PortError::with_cause(ErrorKind::Internal, "audit log", e)
}

/// The size of the log and the version of its head (0: empty, no head).
async fn head(state: &dyn StateStore) -> PortResult<(u64, u64)> {
    match state.get(&head_key()).await? {
        Some(item) => {
            let size = std::str::from_utf8(&item.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| PortError::new(ErrorKind::Internal, "audit head"))?;
            Ok((size, item.version))
        }
        None => Ok((0, 0)),
    }
}

/// Runs `f` (a proof, a root, the right edge: computations whose node
/// positions depend only on sizes and indices) over stored nodes: once to
/// learn which nodes it reads, then again with them fetched.
async fn with_nodes<T>(state: &dyn StateStore, f: impl Fn(&Recorder<'_>) -> Result<T, AuditError>) -> PortResult<T> {
    let mut known: HashMap<(u8, u64), Hash> = HashMap::new();
    for _ in 0..4 {
        let missing = {
            let r = Recorder { known: &known, missing: std::cell::RefCell::new(Vec::new()) };
            let out = f(&r);
            let missing = r.missing.into_inner();
            if missing.is_empty() {
                return out.map_err(audit_err);
            }
            missing
        };
        for (level, index) in missing {
            let item = state.get(&node_key(level, index)).await?;
            let hash: Hash = item
                .and_then(|i| i.value.as_ref().try_into().ok())
                .ok_or_else(|| audit_err(AuditError::MissingNode { level, index }))?;
            known.insert((level, index), hash);
        }
    }
    Err(PortError::new(ErrorKind::Internal, "audit log: nodes"))
}

/// Nodes as far as they are known; the others are recorded as wanted.
struct Recorder<'a> {
    known: &'a HashMap<(u8, u64), Hash>,
    missing: std::cell::RefCell<Vec<(u8, u64)>>,
}

impl Nodes for Recorder<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        match self.known.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => {
                self.missing.borrow_mut().push((level, index));
                Ok([0; 32])
            }
        }
    }
}

struct Pending {
    leaf: Vec<u8>,
    done: oneshot::Sender<PortResult<u64>>,
}

/// The audit log over a state store (see the module docs).
#[derive(Clone)]
pub struct StoreAuditLog {
    state: Arc<dyn StateStore>,
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for StoreAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAuditLog").finish_non_exhaustive()
    }
}

impl StoreAuditLog {
    /// The log in `state` (a store of its own: DynamoDB's audit table), with
    /// its writer task (on the current Tokio runtime).
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(state.clone(), rx));
        StoreAuditLog { state, tx }
    }

    /// Appends an event's bytes; its index once durable. An event larger
    /// than [`MAX_EVENT_BYTES`] is refused (`InvalidInput`).
    pub async fn append(&self, leaf: Vec<u8>) -> PortResult<u64> {
        if leaf.len() > MAX_EVENT_BYTES {
            return Err(PortError::invalid_input("audit append: event larger than 350 KB"));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { leaf, done })
            .await
            .map_err(|_| PortError::new(ErrorKind::Unavailable, "audit append: writer stopped"))?;
        wait.await.map_err(|_| PortError::new(ErrorKind::Unavailable, "audit append: writer stopped"))?
    }

    pub async fn size(&self) -> PortResult<u64> {
        Ok(head(self.state.as_ref()).await?.0)
    }

    /// Signs a checkpoint of the log as it stands and stores it (a log
    /// never signs two checkpoints of one size: an existing one is
    /// returned).
    pub async fn checkpoint(
        &self,
        signer: &LogSigner,
        archive: Option<&S3CheckpointArchive>,
    ) -> PortResult<Checkpoint> {
        let state = self.state.as_ref();
        let (size, _) = head(state).await?;
        let c = match self.checkpoint_note(size).await? {
            Some(note) => Checkpoint::open(&note, &signer.verifier()).map_err(audit_err)?,
            None => {
                let root = with_nodes(state, |n| clearway_core::audit::root(n, size)).await?;
                let c = signer.sign(size, &root);
                match state
                    .write(vec![put(checkpoint_key(size), c.note.clone().into_bytes(), Condition::NotExists)])
                    .await
                {
                    Ok(()) => c,
                    // Another process signed this size meanwhile: the same root.
                    Err(e) if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists) => {
                        let note = self.checkpoint_note(size).await?.ok_or(e)?;
                        Checkpoint::open(&note, &signer.verifier()).map_err(audit_err)?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // Archived (locked) before it is served as the newest: a checkpoint
        // anyone was given is one the archive holds.
        if let Some(a) = archive {
            a.put(&c).await?;
        }
        // The newest, for GET /v1/audit/checkpoint: only ever moves forward.
        loop {
            let current = state.get(&latest_key()).await?;
            let (older, condition) = match &current {
                Some(item) => {
                    let note = String::from_utf8_lossy(&item.value).into_owned();
                    (note_size(&note).is_none_or(|s| s < c.size), Condition::Version(item.version))
                }
                None => (true, Condition::NotExists),
            };
            if !older {
                break;
            }
            match state.write(vec![put(latest_key(), c.note.clone().into_bytes(), condition)]).await {
                Ok(()) => break,
                Err(e) if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    pub async fn latest_checkpoint(&self) -> PortResult<Option<String>> {
        Ok(self.state.get(&latest_key()).await?.map(|i| String::from_utf8_lossy(&i.value).into_owned()))
    }

    pub async fn checkpoint_note(&self, size: u64) -> PortResult<Option<String>> {
        Ok(self.state.get(&checkpoint_key(size)).await?.map(|i| String::from_utf8_lossy(&i.value).into_owned()))
    }

    /// As [`clearway_core::audit::AuditSink::search`].
    pub async fn search(&self, query: &AuditQuery, limit: usize) -> PortResult<AuditPage> {
        let mut page = AuditPage::default();
        let mut after = query.after.map(|a| format!("{a:020}"));
        let mut read = 0;
        loop {
            let rows = self.state.query(Table::Audit, "leaf", after.as_deref(), 1000).await?;
            let Some((last, _)) = rows.last() else { return Ok(page) };
            after = Some(last.clone());
            for (sk, item) in rows {
                let seq: u64 = sk.parse().map_err(|_| PortError::new(ErrorKind::Internal, "audit leaf key"))?;
                read += 1;
                let event: AuditEvent = clearway_core::records::decode_json(&item.value)?;
                if query.matches(seq, &event) {
                    page.events.push((seq, event));
                }
                if page.events.len() >= limit || read >= MAX_SCAN {
                    page.next = Some(seq);
                    return Ok(page);
                }
            }
        }
    }

    pub async fn inclusion_proof(&self, index: u64, size: u64) -> PortResult<Vec<Hash>> {
        if size > self.size().await? || index >= size {
            return Err(PortError::invalid_input("inclusion proof: index or size out of range"));
        }
        with_nodes(self.state.as_ref(), |n| clearway_core::audit::inclusion_proof(n, size, index)).await
    }

    pub async fn consistency_proof(&self, old: u64, new: u64) -> PortResult<Vec<Hash>> {
        if new > self.size().await? || old > new {
            return Err(PortError::invalid_input("consistency proof: sizes out of range"));
        }
        with_nodes(self.state.as_ref(), |n| clearway_core::audit::consistency_proof(n, old, new)).await
    }

    /// Everything stored, read into memory for `clearway audit verify`:
    /// the size first, then exactly that many events (a missing one fails
    /// the verification), every node, and the checkpoints (those signed
    /// while this read, above a second read of the size, left out).
    pub async fn snapshot(&self) -> PortResult<Snapshot> {
        let state = self.state.as_ref();
        let mut snap = Snapshot { size: head(state).await?.0, ..Snapshot::default() };
        let mut after: Option<String> = None;
        'leaves: loop {
            let rows = state.query(Table::Audit, "leaf", after.as_deref(), 1000).await?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            for (sk, item) in rows {
                let seq: u64 = sk.parse().map_err(|_| PortError::new(ErrorKind::Internal, "audit leaf key"))?;
                if seq >= snap.size {
                    break 'leaves;
                }
                if seq != snap.events.len() as u64 {
                    // A gap: the events from here on are not where they belong.
                    break 'leaves;
                }
                snap.events.push(item.value.to_vec());
            }
        }
        for level in 0..64u8 {
            let rows = whole_partition(state, &format!("node{level:02}")).await?;
            if rows.is_empty() {
                break;
            }
            for (sk, item) in rows {
                let index: u64 = sk.parse().map_err(|_| PortError::new(ErrorKind::Internal, "audit node key"))?;
                if let Ok(h) = item.value.as_ref().try_into() {
                    snap.nodes.insert((level, index), h);
                }
            }
        }
        let notes: Vec<String> = whole_partition(state, "checkpoint")
            .await?
            .into_iter()
            .map(|(_, i)| String::from_utf8_lossy(&i.value).into_owned())
            .collect();
        let now = head(state).await?.0;
        snap.checkpoints =
            notes.into_iter().filter(|n| note_size(n).is_none_or(|s| s <= snap.size || s > now)).collect();
        Ok(snap)
    }
}

/// Every item of one partition of the audit table, in key order.
async fn whole_partition(state: &dyn StateStore, pk: &str) -> PortResult<Vec<(String, clearway_core::ports::Item)>> {
    let mut out: Vec<(String, clearway_core::ports::Item)> = Vec::new();
    loop {
        let rows = state.query(Table::Audit, pk, out.last().map(|(k, _)| k.as_str()), 1000).await?;
        if rows.is_empty() {
            return Ok(out);
        }
        out.extend(rows);
    }
}

/// The group-commit writer: batches of waiting appends, each one
/// transaction within DynamoDB's limits (what does not fit waits for the
/// next); on a conflict (another process appended) the right edge is read
/// again and the batch retried, on a throttle or a transaction conflict
/// after a backoff.
async fn writer(state: Arc<dyn StateStore>, mut rx: mpsc::Receiver<Pending>) {
    let mut edge: Option<(CompactRange, u64)> = None;
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        match commit(state.as_ref(), &mut edge, &batch).await {
            Ok((start, n)) => {
                for (i, p) in batch.drain(..n).enumerate() {
                    let _ = p.done.send(Ok(start + i as u64));
                }
            }
            Err(e) => {
                tracing::warn!(error = %clearway_core::error::chain(&e), "audit append failed");
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(PortError::new(e.kind(), "audit append")));
                }
            }
        }
    }
}

/// Commits as many of `batch`'s events as fit in one transaction (at
/// least one); returns the first one's index and how many.
async fn commit(
    state: &dyn StateStore,
    edge: &mut Option<(CompactRange, u64)>,
    batch: &[Pending],
) -> PortResult<(u64, usize)> {
    let mut last_error = None;
    for attempt in 0..16u32 {
        if attempt > 0 {
            // Jittered backoff: 5 ms, 10 ms, ... up to about 1 s.
            let base = 5u64 << attempt.min(8);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let jitter = u64::from(nanos.subsec_nanos()) % base;
            tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
        }
        let (mut range, version) = match edge.take() {
            Some(e) => e,
            None => {
                let (size, version) = head(state).await?;
                (with_nodes(state, |n| CompactRange::load(n, size)).await?, version)
            }
        };
        let start = range.size();
        let mut ops = Vec::with_capacity(batch.len() * 3 + 1);
        let (mut bytes, mut taken) = (0, 0);
        for p in batch {
            let mut trial = range.clone();
            let nodes = trial.push(leaf_hash(&p.leaf));
            let more_bytes = p.leaf.len() + nodes.len() * 64 + 64;
            // Room for this event, its nodes and the head.
            if taken > 0 && (ops.len() + 1 + nodes.len() + 1 > MAX_ITEMS || bytes + more_bytes > MAX_TRANSACTION_BYTES)
            {
                break;
            }
            ops.push(put(leaf_key(start + taken as u64), p.leaf.clone(), Condition::NotExists));
            for (level, index, hash) in nodes {
                ops.push(put(node_key(level, index), hash.to_vec(), Condition::None));
            }
            range = trial;
            bytes += more_bytes;
            taken += 1;
        }
        let condition = if version == 0 { Condition::NotExists } else { Condition::Version(version) };
        ops.push(put(head_key(), range.size().to_string().into_bytes(), condition));
        match state.write(ops).await {
            Ok(()) => {
                *edge = Some((range, version + 1));
                return Ok((start, taken));
            }
            // Another writer appended: read its edge and try again.
            Err(e) if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists) => {
                last_error = Some(e)
            }
            // Throttled, or a transaction that collided with another
            // (DynamoDB's TransactionConflict): the edge may be stale too.
            Err(e) if e.is_retryable() => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| PortError::new(ErrorKind::Unavailable, "audit append: too much contention")))
}

/// A whole log read into memory: what `clearway audit verify` checks.
#[derive(Debug, Default)]
pub struct Snapshot {
    size: u64,
    events: Vec<Vec<u8>>,
    nodes: HashMap<(u8, u64), Hash>,
    checkpoints: Vec<String>,
}

impl Nodes for Snapshot {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        self.nodes.get(&(level, index)).copied().ok_or(AuditError::MissingNode { level, index })
    }
}

impl LogReader for Snapshot {
    fn size(&self) -> Result<u64, AuditError> {
        Ok(self.size)
    }
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, AuditError> {
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(self.events.len());
        Ok(self.events[from..].iter().take(limit).cloned().collect())
    }
    fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        Ok(self.checkpoints.clone())
    }
}

/// Where checkpoints are kept beyond the log's reach: an S3 bucket with
/// Object Lock (COMPLIANCE mode, retention from the bucket's default, set
/// by Terraform: `audit_retention_days`).
#[derive(Debug, Clone)]
pub struct S3CheckpointArchive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3CheckpointArchive {
    pub fn new(sdk: &aws_config::SdkConfig, bucket: &str) -> Self {
        S3CheckpointArchive { client: crate::s3_client(sdk), bucket: bucket.to_string() }
    }

    /// The object a checkpoint of `size` events is kept as.
    pub fn object_key(size: u64) -> String {
        format!("checkpoints/{size:020}.note")
    }

    /// Writes a checkpoint; an object locked already stays as it is (the
    /// same size always has the same note).
    pub async fn put(&self, c: &Checkpoint) -> PortResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(Self::object_key(c.size))
            .content_type("text/plain; charset=utf-8")
            // Object Lock needs an integrity checksum on every put.
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(c.note.clone().into_bytes().into())
            .send()
            .await
            .map_err(|e| crate::sdk_err("audit checkpoint archive", e))?;
        Ok(())
    }

    /// Creates the bucket with Object Lock on and a default retention of
    /// `days` in COMPLIANCE mode (`compliance`) or GOVERNANCE mode
    /// (development and tests; Terraform makes production's, COMPLIANCE).
    pub async fn ensure_bucket(&self, compliance: bool, days: i32) -> PortResult<()> {
        use aws_sdk_s3::types::{
            DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
        };
        match self.client.create_bucket().bucket(&self.bucket).object_lock_enabled_for_bucket(true).send().await {
            Ok(_) => {}
            Err(e) => {
                let code = e.as_service_error().and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s));
                if !matches!(code, Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) {
                    return Err(crate::sdk_err("create audit bucket", e));
                }
            }
        }
        let rule = ObjectLockRule::builder()
            .default_retention(
                DefaultRetention::builder()
                    .mode(if compliance {
                        ObjectLockRetentionMode::Compliance
                    } else {
                        ObjectLockRetentionMode::Governance
                    })
                    .days(days)
                    .build(),
            )
            .build();
        let config =
            ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).rule(rule).build();
        self.client
            .put_object_lock_configuration()
            .bucket(&self.bucket)
            .object_lock_configuration(config)
            .send()
            .await
            .map_err(|e| crate::sdk_err("audit bucket object lock", e))?;
        Ok(())
    }
}

/// The audit log as a service on AWS writes to it: [`StoreAuditLog`], its
/// signing key, and the S3 archive every checkpoint also goes to.
#[derive(Debug)]
pub struct AwsAuditService {
    log: StoreAuditLog,
    signer: Arc<LogSigner>,
    archive: Option<S3CheckpointArchive>,
}

impl AwsAuditService {
    pub fn new(log: StoreAuditLog, signer: Arc<LogSigner>, archive: Option<S3CheckpointArchive>) -> Self {
        AwsAuditService { log, signer, archive }
    }

    pub fn verifier(&self) -> VerifierKey {
        self.signer.verifier()
    }

    pub fn log(&self) -> &StoreAuditLog {
        &self.log
    }
}

#[async_trait::async_trait]
impl clearway_core::audit::AuditSink for AwsAuditService {
    async fn append(&self, event: &AuditEvent) -> PortResult<u64> {
        let seq = self.log.append(event.to_leaf()).await?;
        metrics::counter!("clearway_audit_events_total").increment(1);
        Ok(seq)
    }
    async fn size(&self) -> PortResult<u64> {
        self.log.size().await
    }
    async fn latest_checkpoint(&self) -> PortResult<Option<String>> {
        self.log.latest_checkpoint().await
    }
    async fn checkpoint(&self) -> PortResult<String> {
        let c = self.log.checkpoint(&self.signer, self.archive.as_ref()).await?;
        metrics::counter!("clearway_audit_checkpoints_total").increment(1);
        Ok(c.note)
    }
    async fn checkpoint_note(&self, size: u64) -> PortResult<Option<String>> {
        self.log.checkpoint_note(size).await
    }
    async fn search(&self, query: &AuditQuery, limit: usize) -> PortResult<AuditPage> {
        self.log.search(query, limit).await
    }
    async fn inclusion_proof(&self, index: u64, size: u64) -> PortResult<Vec<Hash>> {
        self.log.inclusion_proof(index, size).await
    }
    async fn consistency_proof(&self, old: u64, new: u64) -> PortResult<Vec<Hash>> {
        self.log.consistency_proof(old, new).await
    }
}
