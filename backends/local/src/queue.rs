//! [`WorkQueue`] on the embedded database: rows with a visible-at time and
//! a receive count, mirroring SQS visibility timeouts.

use crate::db::{Db, db_err, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::ports::{
    MAX_LEASE, MAX_QUEUE_BATCH, MAX_RECEIVE_WAIT, QueueDepth, QueueMessage, Receipt, WorkQueue, check_send_batch,
};
use clearway_core::{PortError, PortResult};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The work queue.
#[derive(Debug, Clone)]
pub struct SqliteWorkQueue {
    db: Db,
    /// Wakes receivers when messages are sent or released.
    ready: Arc<Notify>,
}

impl SqliteWorkQueue {
    pub fn new(db: Db) -> Self {
        SqliteWorkQueue { db, ready: Arc::new(Notify::new()) }
    }

    /// Wakes waiting receivers (after a commit that queued something).
    pub(crate) fn wake(&self) {
        self.ready.notify_waiters();
    }
}

/// Inserts messages inside the caller's transaction.
pub(crate) fn insert(conn: &Connection, bodies: &[Bytes]) -> PortResult<()> {
    let now = now_ms();
    let mut stmt = conn
        .prepare_cached("INSERT INTO queue (msg_id, body, visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?3)")
        .map_err(db_err("queue send"))?;
    for b in bodies {
        stmt.execute(params![uuid::Uuid::now_v7().to_string(), b.as_ref(), now]).map_err(db_err("queue send"))?;
    }
    Ok(())
}

/// A receipt: the row id and a fresh token.
fn receipt(id: i64) -> String {
    format!("{id}:{}", uuid::Uuid::now_v7().simple())
}

fn row_id(r: &Receipt) -> PortResult<i64> {
    r.0.split_once(':').and_then(|(id, _)| id.parse().ok()).ok_or_else(|| PortError::invalid_input("queue receipt"))
}

#[async_trait]
impl WorkQueue for SqliteWorkQueue {
    async fn send(&self, bodies: &[Bytes]) -> PortResult<()> {
        check_send_batch(bodies)?;
        let bodies = bodies.to_vec();
        self.db.write(move |conn| insert(conn, &bodies)).await?;
        self.wake();
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> PortResult<Vec<QueueMessage>> {
        if max == 0 || max > MAX_QUEUE_BATCH || lease > MAX_LEASE || wait > MAX_RECEIVE_WAIT {
            return Err(PortError::invalid_input("queue receive: max 1-10, lease up to 12 h, wait up to 20 s"));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a send between the
            // look and the wait is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lease_ms = lease.as_millis() as i64;
            let (got, next_visible) = self
                .db
                .write(move |conn| {
                    let now = now_ms();
                    let mut stmt = conn
                        .prepare_cached("SELECT id, msg_id, body, receive_count FROM queue WHERE visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2")
                        .map_err(db_err("queue receive"))?;
                    let rows: Vec<(i64, String, Vec<u8>, i64)> = stmt
                        .query_map(params![now, max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .map_err(db_err("queue receive"))?
                        .collect::<Result<_, _>>()
                        .map_err(db_err("queue receive"))?;
                    let mut out = Vec::with_capacity(rows.len());
                    let mut upd = conn
                        .prepare_cached("UPDATE queue SET visible_at = ?1, receive_count = receive_count + 1, receipt = ?2 WHERE id = ?3")
                        .map_err(db_err("queue receive"))?;
                    for (id, msg_id, body, count) in rows {
                        let r = receipt(id);
                        upd.execute(params![now + lease_ms, r, id]).map_err(db_err("queue receive"))?;
                        out.push(QueueMessage { id: msg_id, receipt: Receipt(r), body: Bytes::from(body), attempt: (count + 1) as u32 });
                    }
                    let next: Option<i64> = if out.is_empty() {
                        conn.prepare_cached("SELECT MIN(visible_at) FROM queue")
                            .and_then(|mut s| s.query_row([], |r| r.get(0)))
                            .optional()
                            .map_err(db_err("queue receive"))?
                            .flatten()
                    } else {
                        None
                    };
                    Ok((out, next))
                })
                .await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(vec![]);
            }
            // Sleep until woken, a lease expires, or the wait ends.
            let mut until = deadline;
            if let Some(v) = next_visible {
                let in_ms = (v - now_ms()).max(1) as u64;
                until = until.min(now + Duration::from_millis(in_ms));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn extend(&self, receipt: &Receipt, lease: Duration) -> PortResult<()> {
        if lease > MAX_LEASE {
            return Err(PortError::invalid_input("queue extend: lease up to 12 h"));
        }
        let id = row_id(receipt)?;
        let r = receipt.0.clone();
        let lease_ms = lease.as_millis() as i64;
        let n = self
            .db
            .write(move |conn| {
                let now = now_ms();
                conn.prepare_cached(
                    "UPDATE queue SET visible_at = ?1 WHERE id = ?2 AND receipt = ?3 AND visible_at > ?4",
                )
                .and_then(|mut s| s.execute(params![now + lease_ms, id, r, now]))
                .map_err(db_err("queue extend"))
            })
            .await?;
        if n == 0 {
            return Err(PortError::precondition_failed("queue extend: lease expired or message gone"));
        }
        Ok(())
    }

    async fn release(&self, receipt: &Receipt) -> PortResult<()> {
        let id = row_id(receipt)?;
        let r = receipt.0.clone();
        let n = self
            .db
            .write(move |conn| {
                let now = now_ms();
                conn.prepare_cached(
                    "UPDATE queue SET visible_at = ?1 WHERE id = ?2 AND receipt = ?3 AND visible_at > ?1",
                )
                .and_then(|mut s| s.execute(params![now, id, r]))
                .map_err(db_err("queue release"))
            })
            .await?;
        self.wake();
        if n == 0 {
            return Err(PortError::precondition_failed("queue release: lease expired or message gone"));
        }
        Ok(())
    }

    async fn ack(&self, receipts: &[Receipt]) -> PortResult<()> {
        if receipts.is_empty() || receipts.len() > MAX_QUEUE_BATCH {
            return Err(PortError::invalid_input("queue ack: 1 to 10 receipts"));
        }
        let ids: Vec<(i64, String)> =
            receipts.iter().map(|r| Ok((row_id(r)?, r.0.clone()))).collect::<PortResult<_>>()?;
        let stale = self
            .db
            .write(move |conn| {
                let mut stale = false;
                for (id, r) in ids {
                    let n = conn
                        .prepare_cached("DELETE FROM queue WHERE id = ?1 AND receipt = ?2")
                        .and_then(|mut s| s.execute(params![id, r]))
                        .map_err(db_err("queue ack"))?;
                    if n == 0 {
                        let exists: Option<i64> = conn
                            .prepare_cached("SELECT id FROM queue WHERE id = ?1")
                            .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
                            .map_err(db_err("queue ack"))?;
                        stale |= exists.is_some();
                    }
                }
                Ok(stale)
            })
            .await?;
        if stale {
            return Err(PortError::precondition_failed("queue ack: receipt is stale"));
        }
        Ok(())
    }

    async fn depth(&self) -> PortResult<QueueDepth> {
        self.db
            .read(|conn| {
                let now = now_ms();
                let (visible, in_flight): (i64, i64) = conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(visible_at <= ?1), 0), COALESCE(SUM(visible_at > ?1), 0) FROM queue",
                    )
                    .and_then(|mut s| s.query_row(params![now], |r| Ok((r.get(0)?, r.get(1)?))))
                    .map_err(db_err("queue depth"))?;
                Ok(QueueDepth { visible: visible as u64, in_flight: in_flight as u64 })
            })
            .await
    }
}
