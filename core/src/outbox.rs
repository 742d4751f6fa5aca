//! The outbox pattern: an [`IntakeJournal`] for backends that cannot commit
//! a payload, state writes and a queue pointer in one transaction (AWS:
//! S3, DynamoDB and SQS).
//!
//! A commit
//! 1. stores the payload (write-once),
//! 2. writes the state (the transaction record, dedupe keys, …) together
//!    with an **outbox entry** holding the pointer, in one conditional
//!    batch — if a condition fails, nothing is written and the payload is
//!    removed,
//! 3. sends the pointer, then deletes the outbox entry.
//!
//! Once step 2 succeeds the transaction is durable and the commit returns
//! `Ok` (a `202` may be given): if the send in step 3 fails, or the process
//! dies before it, the entry stays and [`OutboxJournal::sweep`] sends it
//! later. A pointer may so be sent twice (the send succeeded, the entry's
//! delete did not); workers are idempotent, so that is harmless.
//!
//! [`OutboxJournal::batched`] does step 3 in a background sender: the
//! pointers of concurrent commits are packed, up to
//! [`POINTERS_PER_MESSAGE`] per queue message (a JSON array of pointers,
//! which workers read as well as a single one) and up to ten messages per
//! send call, and their outbox entries deleted in one write. At load that
//! is one send call per hundred transactions instead of one each.

use crate::error::{PortError, PortResult};
use crate::ports::{
    BlobStore, Commit, Condition, IntakeJournal, Key, MAX_WRITE_OPS, StateStore, Table, WorkQueue, WriteOp,
};
use crate::records::now_ms;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// Pointers packed into one queue message by the batched sender.
pub const POINTERS_PER_MESSAGE: usize = 10;
/// Pointers per send call: ten messages (the SQS batch limit) of ten.
const FLUSH_POINTERS: usize = POINTERS_PER_MESSAGE * crate::ports::MAX_QUEUE_BATCH;
/// Commits waiting for the batched sender before commits wait for it
/// (backpressure).
const SENDER_QUEUE: usize = 4096;

/// A durable commit's pointer waiting to be sent, with its outbox entry.
struct Outgoing {
    pointer: Bytes,
    entry: Key,
}

/// What the batched sender is handed.
enum ToSender {
    Pointer(Outgoing),
    /// Answered once everything handed over before it has been sent (or
    /// has failed to send and been left to the sweeper).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The partition of outbox entries (sort key: `<created ms, 13 digits>-<n>`).
const OUTBOX: &str = "outbox";

/// An [`IntakeJournal`] over any blob store, state store and queue.
#[derive(Clone)]
pub struct OutboxJournal {
    blobs: Arc<dyn BlobStore>,
    state: Arc<dyn StateStore>,
    queue: Arc<dyn WorkQueue>,
    sender: Option<tokio::sync::mpsc::Sender<ToSender>>,
}

impl std::fmt::Debug for OutboxJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxJournal").finish_non_exhaustive()
    }
}

impl OutboxJournal {
    /// A journal whose commits send their own pointer before returning.
    pub fn new(blobs: Arc<dyn BlobStore>, state: Arc<dyn StateStore>, queue: Arc<dyn WorkQueue>) -> Self {
        OutboxJournal { blobs, state, queue, sender: None }
    }

    /// A journal whose commits return once durable and leave the send to a
    /// background sender (spawned on the current Tokio runtime) that packs
    /// concurrent commits' pointers together.
    pub fn batched(blobs: Arc<dyn BlobStore>, state: Arc<dyn StateStore>, queue: Arc<dyn WorkQueue>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(SENDER_QUEUE);
        tokio::spawn(send_packed(rx, queue.clone(), state.clone()));
        OutboxJournal { blobs, state, queue, sender: Some(tx) }
    }

    /// Waits until the batched sender has sent every pointer committed
    /// before the call (for a graceful shutdown: what it still held would
    /// otherwise wait for the next sweep). Immediate when unbatched.
    pub async fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if sender.send(ToSender::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends the pointers of outbox entries older than `older_than_ms`
    /// (commits that stopped before their send) and removes the entries;
    /// returns how many were sent.
    pub async fn sweep(&self, older_than_ms: i64) -> PortResult<usize> {
        let horizon = now_ms() - older_than_ms;
        let mut sent = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::Counters, OUTBOX, after.as_deref(), FLUSH_POINTERS).await?;
            let Some((last, _)) = page.last() else { return Ok(sent) };
            after = Some(last.clone());
            let old: Vec<Outgoing> = page
                .into_iter()
                .take_while(|(sk, _)| sk.get(..13).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0) <= horizon)
                .map(|(sk, item)| Outgoing { pointer: item.value, entry: Key::new(Table::Counters, OUTBOX, &sk) })
                .collect();
            let full = old.len() == FLUSH_POINTERS;
            if !old.is_empty() {
                self.queue.send(&pack(&old)).await?;
                delete_entries(self.state.as_ref(), &old).await?;
                sent += old.len();
            }
            if !full {
                return Ok(sent);
            }
        }
    }
}

/// Queue message bodies for pointers: a lone pointer as itself, else JSON
/// arrays of up to [`POINTERS_PER_MESSAGE`].
fn pack(batch: &[Outgoing]) -> Vec<Bytes> {
    batch
        .chunks(POINTERS_PER_MESSAGE)
        .map(|chunk| {
            if let [one] = chunk {
                return one.pointer.clone();
            }
            let mut body = Vec::with_capacity(chunk.iter().map(|o| o.pointer.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (n, o) in chunk.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&o.pointer);
            }
            body.push(b']');
            Bytes::from(body)
        })
        .collect()
}

async fn delete_entries(state: &dyn StateStore, sent: &[Outgoing]) -> PortResult<()> {
    for chunk in sent.chunks(MAX_WRITE_OPS) {
        let ops = chunk.iter().map(|o| WriteOp::Delete { key: o.entry.clone(), condition: Condition::None }).collect();
        state.write(ops).await?;
    }
    Ok(())
}

/// The batched sender: whatever commits have queued since the last send
/// goes out in one send call (up to a hundred pointers), so batches grow
/// with load and a lone commit is not held back.
async fn send_packed(
    mut rx: tokio::sync::mpsc::Receiver<ToSender>,
    queue: Arc<dyn WorkQueue>,
    state: Arc<dyn StateStore>,
) {
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                ToSender::Pointer(o) => batch.push(o),
                // Everything before the flush is in this batch.
                ToSender::Flush(done) => {
                    flushes.push(done);
                    break;
                }
            }
            if batch.len() < FLUSH_POINTERS {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            match queue.send(&pack(&batch)).await {
                Ok(()) => {
                    if let Err(e) = delete_entries(state.as_ref(), &batch).await {
                        tracing::debug!(error = %crate::error::chain(&e), "outbox entries not removed; the sweeper will resend them");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), pointers = batch.len(), "pointers not sent; the outbox sweeper will send them");
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[async_trait]
impl IntakeJournal for OutboxJournal {
    async fn commit(&self, commit: Commit) -> PortResult<()> {
        let Commit { blob, mut writes, pointer } = commit;
        if writes.len() >= MAX_WRITE_OPS {
            return Err(PortError::invalid_input("journal commit: at most 99 writes (one is the outbox entry)"));
        }
        let mut stored_blob = false;
        if let Some((key, bytes)) = &blob {
            match self.blobs.put(key, bytes.clone()).await {
                Ok(()) => stored_blob = true,
                // A retried commit: the payload is already there (and may
                // belong to a commit that succeeded: never removed here).
                Err(e) if e.kind() == crate::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let entry = Key::new(Table::Counters, OUTBOX, format!("{:013}-{}", now_ms(), uuid::Uuid::now_v7().simple()));
        writes.push(WriteOp::Put {
            key: entry.clone(),
            value: pointer.clone(),
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        });
        if let Err(e) = self.state.write(writes).await {
            if e.kind() == crate::ErrorKind::PreconditionFailed
                && stored_blob
                && let Some((key, _)) = &blob
            {
                // Nothing of a refused commit stays behind.
                self.blobs.delete(key).await?;
            }
            return Err(e);
        }
        // Durable from here on: a failed send is the sweeper's to finish.
        if let Some(sender) = &self.sender {
            if sender.send(ToSender::Pointer(Outgoing { pointer, entry })).await.is_err() {
                tracing::warn!("the pointer sender has stopped; the outbox sweeper will send the pointer");
            }
            return Ok(());
        }
        match self.queue.send(std::slice::from_ref(&pointer)).await {
            Ok(()) => {
                let _ = self.state.write(vec![WriteOp::Delete { key: entry, condition: Condition::None }]).await;
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "pointer not sent; the outbox sweeper will send it");
            }
        }
        Ok(())
    }
}
