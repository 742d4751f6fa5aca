//! Sequencing the change feed into sealed batches (see
//! [`clearway_core::changes`] for the protocol) and reading them back.

use clearway_core::changes::{
    Chunk, Head, Manifest, PENDING, Sequenced, batch_partition, chunk_key, head_key, manifest_key, pending_key,
};
use clearway_core::ports::{Condition, MAX_QUERY_LIMIT, MAX_WRITE_OPS, StateStore, Table, WriteOp};
use clearway_core::records::now_ms;
use clearway_core::records::{decode_json, encode_json};
use clearway_core::{ErrorKind, PortError, PortResult};

/// Most events in one sealed batch.
pub const MAX_BATCH_EVENTS: usize = 20_000;
/// Most bytes of events in one chunk item (under the state store's item
/// limit).
const CHUNK_BYTES: usize = 300 * 1024;

/// The sequence head and its version.
pub async fn head(state: &dyn StateStore) -> PortResult<(Head, Option<u64>)> {
    Ok(match state.get(&head_key()).await? {
        Some(item) => (decode_json(&item.value)?, Some(item.version)),
        None => (Head::default(), None),
    })
}

fn cas(version: Option<u64>) -> Condition {
    match version {
        Some(v) => Condition::Version(v),
        None => Condition::NotExists,
    }
}

/// Where a seal may be interrupted (crash tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealStep {
    /// After the chunks, before the head moves.
    ChunksWritten,
    /// After the head moved, before the pending events are deleted.
    HeadMoved,
}

/// Seals the pending events (at most [`MAX_BATCH_EVENTS`]) into the next
/// batch. Returns its manifest, or `None` when nothing was pending.
/// `retain_until`: when the batch's items expire (Unix seconds).
pub async fn seal(
    state: &dyn StateStore,
    retain_until: Option<i64>,
    stop_at: Option<SealStep>,
) -> PortResult<Option<Manifest>> {
    let (mut head, mut version) = head(state).await?;
    if let Some(n) = head.cleaning {
        finish_cleaning(state, &head, version, n).await?;
        (head, version) = self::head(state).await?;
        if head.cleaning.is_some() {
            return Err(PortError::new(ErrorKind::PreconditionFailed, "another exporter is sealing"));
        }
    }
    // The pending events, in key order.
    let mut pending: Vec<(String, clearway_core::changes::ChangeEvent)> = Vec::new();
    let mut after: Option<String> = None;
    while pending.len() < MAX_BATCH_EVENTS {
        let limit = (MAX_BATCH_EVENTS - pending.len()).min(MAX_QUERY_LIMIT);
        let page = state.query(Table::Changes, PENDING, after.as_deref(), limit).await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        for (sk, item) in page {
            pending.push((sk, decode_json(&item.value)?));
        }
    }
    if pending.is_empty() {
        return Ok(None);
    }
    let n = head.next_batch;
    let attempt = attempt_id();
    let first_seq = head.next_seq;
    let mut chunks: Vec<Chunk> = vec![Chunk { events: Vec::new() }];
    let mut bytes = 0usize;
    for (i, (sk, event)) in pending.into_iter().enumerate() {
        let s = Sequenced { seq: first_seq + i as u64, pending: sk, event };
        let size = serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0);
        if bytes + size > CHUNK_BYTES && chunks.last().is_some_and(|c| !c.events.is_empty()) {
            chunks.push(Chunk { events: Vec::new() });
            bytes = 0;
        }
        bytes += size;
        if let Some(c) = chunks.last_mut() {
            c.events.push(s);
        }
    }
    let count: u64 = chunks.iter().map(|c| c.events.len() as u64).sum();
    let mut ops = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        ops.push(WriteOp::Put {
            key: chunk_key(n, &attempt, i as u32),
            value: encode_json(chunk)?,
            expires_at: retain_until,
            condition: Condition::NotExists,
            owner: None,
        });
    }
    // Chunks are written in groups small enough for one write each (a
    // chunk is up to 300 KB; a write of many could exceed DynamoDB's 4 MB).
    for group in ops.chunks(8) {
        state.write(group.to_vec()).await?;
    }
    if stop_at == Some(SealStep::ChunksWritten) {
        return Err(PortError::new(ErrorKind::Unavailable, "stopped after the chunks (test)"));
    }
    let manifest = Manifest {
        batch: n,
        attempt,
        chunks: chunks.len() as u32,
        first_seq,
        last_seq: first_seq + count - 1,
        sealed_at_ms: now_ms(),
    };
    let next = Head { next_batch: n + 1, next_seq: first_seq + count, cleaning: Some(n) };
    state
        .write(vec![
            WriteOp::Put {
                key: head_key(),
                value: encode_json(&next)?,
                expires_at: None,
                condition: cas(version),
                owner: None,
            },
            WriteOp::Put {
                key: manifest_key(n),
                value: encode_json(&manifest)?,
                expires_at: retain_until,
                condition: Condition::NotExists,
                owner: None,
            },
        ])
        .await?;
    if stop_at == Some(SealStep::HeadMoved) {
        return Err(PortError::new(ErrorKind::Unavailable, "stopped after the head moved (test)"));
    }
    // Clean now (the next seal would otherwise do it first). Losing the
    // head's race here is harmless: whoever won cleaned too.
    let (h, v) = self::head(state).await?;
    if h.cleaning == Some(n) {
        match finish_cleaning(state, &h, v, n).await {
            Err(e) if e.kind() != ErrorKind::PreconditionFailed => return Err(e),
            _ => {}
        }
    }
    Ok(Some(manifest))
}

/// Deletes sealed batch `n`'s pending events and clears the head's
/// `cleaning` mark (compare-and-set on the head's version).
async fn finish_cleaning(state: &dyn StateStore, head: &Head, version: Option<u64>, n: u64) -> PortResult<()> {
    clean(state, n).await?;
    let mut done = head.clone();
    done.cleaning = None;
    state
        .write(vec![WriteOp::Put {
            key: head_key(),
            value: encode_json(&done)?,
            expires_at: None,
            condition: cas(version),
            owner: None,
        }])
        .await
}

/// Deletes the pending events of sealed batch `n` (idempotent).
async fn clean(state: &dyn StateStore, n: u64) -> PortResult<()> {
    let Some(events) = read_batch(state, n).await? else { return Ok(()) };
    let keys: Vec<_> = events.iter().map(|e| pending_key(&e.pending)).collect();
    for group in keys.chunks(MAX_WRITE_OPS) {
        let ops = group.iter().map(|k| WriteOp::Delete { key: k.clone(), condition: Condition::None }).collect();
        state.write(ops).await?;
    }
    Ok(())
}

/// Batch `n`'s manifest, if sealed.
pub async fn manifest(state: &dyn StateStore, n: u64) -> PortResult<Option<Manifest>> {
    match state.get(&manifest_key(n)).await? {
        Some(item) => Ok(Some(decode_json(&item.value)?)),
        None => Ok(None),
    }
}

/// The events of sealed batch `n` in sequence order (`None`: not sealed,
/// or expired).
pub async fn read_batch(state: &dyn StateStore, n: u64) -> PortResult<Option<Vec<Sequenced>>> {
    let Some(m) = manifest(state, n).await? else { return Ok(None) };
    let mut out = Vec::new();
    let prefix = format!("chunk/{}/", m.attempt);
    let mut after = Some(prefix.clone());
    let pk = batch_partition(n);
    loop {
        let page = state.query(Table::Changes, &pk, after.as_deref(), MAX_QUERY_LIMIT).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut done = false;
        for (sk, item) in page {
            if !sk.starts_with(&prefix) {
                done = true;
                break;
            }
            let chunk: Chunk = decode_json(&item.value)?;
            out.extend(chunk.events);
        }
        if done {
            break;
        }
    }
    out.sort_by_key(|e| e.seq);
    let expected = (m.last_seq - m.first_seq + 1) as usize;
    if out.len() != expected {
        tracing::error!(batch = n, readable = out.len(), expected, "a sealed batch is incomplete");
        return Err(PortError::new(ErrorKind::Internal, "a sealed batch is incomplete"));
    }
    Ok(Some(out))
}

/// A fresh attempt id.
fn attempt_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clearway_core::changes::{ChangeEvent, ChangeKind, EVENT_VERSION};
    use clearway_core::{PartnerId, TransactionId};
    use clearway_local::mem::MemStateStore;

    async fn produce(state: &dyn StateStore, n: usize) {
        for i in 0..n {
            let e = ChangeEvent {
                v: EVENT_VERSION,
                kind: ChangeKind::Processed,
                partner: PartnerId::new("acme").unwrap(),
                transaction: TransactionId::new(),
                at_ms: 1_700_000_000_000 + i as i64,
                received_at_ms: 1_700_000_000_000,
                status: "accepted".into(),
                attempts: 1,
                ack_ids: vec![],
                reason: None,
                realtime: None,
                duplicate: None,
                payer_batch: None,
                payer_answer: None,
            };
            let op = WriteOp::Put {
                key: e.key(),
                value: encode_json(&e).unwrap(),
                expires_at: None,
                condition: Condition::None,
                owner: None,
            };
            state.write(vec![op]).await.unwrap();
        }
    }

    /// Every sealed event's transaction, over every batch.
    async fn sealed(state: &dyn StateStore) -> Vec<String> {
        let (h, _) = head(state).await.unwrap();
        let mut out = Vec::new();
        for n in 0..h.next_batch {
            for s in read_batch(state, n).await.unwrap().unwrap() {
                out.push(s.event.transaction.to_string());
            }
        }
        out
    }

    #[tokio::test]
    async fn an_interrupted_seal_loses_and_repeats_nothing() {
        let state = MemStateStore::default();
        produce(&state, 1500).await;
        // Stopped after its chunks: they are never read, the next seal
        // takes the same events.
        assert!(seal(&state, None, Some(SealStep::ChunksWritten)).await.is_err());
        assert_eq!(head(&state).await.unwrap().0.next_batch, 0);
        // Stopped after the head moved: the batch stands, its pending
        // events are cleaned before the next batch is sealed.
        assert!(seal(&state, None, Some(SealStep::HeadMoved)).await.is_err());
        produce(&state, 700).await;
        let m = seal(&state, None, None).await.unwrap().unwrap();
        assert_eq!((m.batch, m.first_seq, m.last_seq), (1, 1500, 2199));
        assert!(seal(&state, None, None).await.unwrap().is_none(), "nothing pending");
        let all = sealed(&state).await;
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((all.len(), unique.len()), (2200, 2200));
        let left = state.query(Table::Changes, PENDING, None, 10).await.unwrap();
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn batches_hold_at_most_their_bound_and_chunks_fit_an_item() {
        let state = MemStateStore::default();
        produce(&state, MAX_BATCH_EVENTS + 10).await;
        let a = seal(&state, None, None).await.unwrap().unwrap();
        let b = seal(&state, None, None).await.unwrap().unwrap();
        assert_eq!(a.last_seq - a.first_seq + 1, MAX_BATCH_EVENTS as u64);
        assert_eq!(b.last_seq - b.first_seq + 1, 10);
        assert!(a.chunks > 1, "a large batch spans chunks");
        assert_eq!(sealed(&state).await.len(), MAX_BATCH_EVENTS + 10);
    }
}
