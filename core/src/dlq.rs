//! Dead letters: listing and replay, shared by the command line
//! (`clearway dlq`) and the operator HTTP endpoints.
//!
//! A replay puts the transaction back in state `received` and re-queues its
//! pointer in one intake-journal commit, so a replay is never half done.

use crate::error::{PortError, PortResult};
use crate::ids::{PartnerId, TransactionId};
use crate::ports::{Commit, Condition, Ports, StateStore, Table, WriteOp};
use crate::records::{DeadLetter, Pointer, Status, TransactionRecord, timestamp};
use crate::records::{decode_json, encode_json};
use std::sync::Arc;

/// Dead letters, oldest first, optionally for one partner, naming one payer
/// ([`DeadLetter::names_payer`]) and since a time: up to `limit` of those
/// selected.
pub async fn list(
    state: &Arc<dyn StateStore>,
    partner: Option<&PartnerId>,
    payer: Option<&str>,
    since_ms: Option<i64>,
    limit: usize,
) -> PortResult<Vec<DeadLetter>> {
    let pk = partner.map_or("*", |p| p.as_str());
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < limit {
        let page = state.query(Table::DeadLetters, pk, after.as_deref(), 1000).await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        for (_, item) in page {
            let d: DeadLetter = decode_json(&item.value)?;
            if since_ms.is_none_or(|s| d.dead_lettered_at_ms >= s) && payer.is_none_or(|p| d.names_payer(p)) {
                out.push(d);
            }
        }
    }
    out.sort_by_key(|d| d.dead_lettered_at_ms);
    out.truncate(limit);
    Ok(out)
}

/// One dead letter by transaction id.
pub async fn get(state: &Arc<dyn StateStore>, id: &TransactionId) -> PortResult<Option<DeadLetter>> {
    match state.get(&DeadLetter::index_key(id)).await? {
        Some(item) => Ok(Some(decode_json(&item.value)?)),
        None => Ok(None),
    }
}

/// Re-queues a dead-lettered transaction (unless `dry_run`). Returns the
/// dead letter replayed.
pub async fn replay(ports: &Ports, id: &TransactionId, dry_run: bool) -> PortResult<DeadLetter> {
    let dead = get(&ports.state, id).await?.ok_or_else(|| PortError::not_found("replay dead letter"))?;
    let key = TransactionRecord::key(&dead.partner, id);
    let item = ports.state.get(&key).await?.ok_or_else(|| PortError::not_found("replay: transaction record"))?;
    let mut record: TransactionRecord = decode_json(&item.value)?;
    if record.status != Status::DeadLettered {
        return Err(PortError::precondition_failed("replay: transaction is not dead-lettered"));
    }
    if dry_run {
        return Ok(dead);
    }
    record.status = Status::Received;
    record.attempts = 0;
    record.failure = None;
    record.updated_at = timestamp(time::OffsetDateTime::now_utc());
    // The replayed work continues the transaction's own trace.
    let pointer = encode_json(&Pointer {
        transaction: id.clone(),
        partner: dead.partner.clone(),
        traceparent: record.traceparent.clone(),
    })?;
    ports
        .journal
        .commit(Commit {
            blob: None,
            writes: vec![
                WriteOp::Put {
                    key,
                    value: encode_json(&record)?,
                    expires_at: None,
                    condition: Condition::Version(item.version),
                    owner: None,
                },
                WriteOp::Delete { key: DeadLetter::key(&dead.partner, id), condition: Condition::None },
                WriteOp::Delete { key: DeadLetter::index_key(id), condition: Condition::None },
            ],
            pointer,
        })
        .await?;
    Ok(dead)
}
