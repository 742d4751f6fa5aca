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

use crate::error::{PortError, PortResult};
use crate::ports::{
    BlobStore, Commit, Condition, IntakeJournal, Key, MAX_WRITE_OPS, StateStore, Table, WorkQueue, WriteOp,
};
use async_trait::async_trait;
use std::sync::Arc;

/// The partition of outbox entries (sort key: `<created ms, 13 digits>-<n>`).
const OUTBOX: &str = "outbox";

/// An [`IntakeJournal`] over any blob store, state store and queue.
#[derive(Clone)]
pub struct OutboxJournal {
    blobs: Arc<dyn BlobStore>,
    state: Arc<dyn StateStore>,
    queue: Arc<dyn WorkQueue>,
}

impl std::fmt::Debug for OutboxJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxJournal").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl OutboxJournal {
    pub fn new(blobs: Arc<dyn BlobStore>, state: Arc<dyn StateStore>, queue: Arc<dyn WorkQueue>) -> Self {
        OutboxJournal { blobs, state, queue }
    }

    /// Sends the pointers of outbox entries older than `older_than_ms`
    /// (commits that stopped before their send) and removes the entries;
    /// returns how many were sent.
    pub async fn sweep(&self, older_than_ms: i64) -> PortResult<usize> {
        let horizon = now_ms() - older_than_ms;
        let mut sent = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::Counters, OUTBOX, after.as_deref(), 100).await?;
            if page.is_empty() {
                return Ok(sent);
            }
            after = page.last().map(|(k, _)| k.clone());
            for (sk, item) in page {
                let created = sk.get(..13).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
                if created > horizon {
                    return Ok(sent);
                }
                self.queue.send(std::slice::from_ref(&item.value)).await?;
                let key = Key::new(Table::Counters, OUTBOX, &sk);
                self.state.write(vec![WriteOp::Delete { key, condition: Condition::None }]).await?;
                sent += 1;
            }
        }
    }
}

#[async_trait]
impl IntakeJournal for OutboxJournal {
    async fn commit(&self, commit: Commit) -> PortResult<()> {
        if commit.writes.len() >= MAX_WRITE_OPS {
            return Err(PortError::invalid_input("journal commit: at most 99 writes (one is the outbox entry)"));
        }
        let mut stored_blob = false;
        if let Some((key, bytes)) = &commit.blob {
            match self.blobs.put(key, bytes.clone()).await {
                Ok(()) => stored_blob = true,
                // A retried commit: the payload is already there (and may
                // belong to a commit that succeeded: never removed here).
                Err(e) if e.kind() == crate::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let entry = Key::new(Table::Counters, OUTBOX, format!("{:013}-{}", now_ms(), uuid::Uuid::now_v7().simple()));
        let mut writes = commit.writes.clone();
        writes.push(WriteOp::Put {
            key: entry.clone(),
            value: commit.pointer.clone(),
            expires_at: None,
            condition: Condition::NotExists,
        });
        if let Err(e) = self.state.write(writes).await {
            if e.kind() == crate::ErrorKind::PreconditionFailed
                && stored_blob
                && let Some((key, _)) = &commit.blob
            {
                // Nothing of a refused commit stays behind.
                self.blobs.delete(key).await?;
            }
            return Err(e);
        }
        // Durable from here on: a failed send is the sweeper's to finish.
        match self.queue.send(std::slice::from_ref(&commit.pointer)).await {
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
