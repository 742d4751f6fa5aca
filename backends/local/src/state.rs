//! [`StateStore`] on the embedded database.

use crate::db::{Db, db_err, now_secs};
use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::ports::{
    Condition, Item, Key, MAX_QUERY_LIMIT, ScanPage, StateStore, Table, WriteOp, check_write_batch, parse_scan_cursor,
    scan_cursor,
};
use clearway_core::{PortError, PortResult};
use rusqlite::{Connection, OptionalExtension, params};

/// Keyed state in the `state` table.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    db: Db,
}

impl SqliteStateStore {
    pub fn new(db: Db) -> Self {
        SqliteStateStore { db }
    }
}

/// The item in a row's `value, version, expires_at` columns, from column
/// `first`.
fn item_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Item> {
    Ok(Item {
        value: Bytes::from(r.get::<_, Vec<u8>>(first)?),
        version: r.get::<_, i64>(first + 1)? as u64,
        expires_at: r.get(first + 2)?,
    })
}

/// Current (version, live) of a key inside a transaction.
fn current(conn: &Connection, key: &Key, now: i64) -> PortResult<Option<u64>> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT version, expires_at FROM state WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .and_then(|mut s| {
            s.query_row(params![key.table.name(), key.pk, key.sk], |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })
        .map_err(db_err("state read"))?;
    Ok(match row {
        Some((v, exp)) if exp.is_none_or(|e| e > now) => Some(v as u64),
        _ => None,
    })
}

/// Applies a write batch inside the caller's transaction (used by the
/// state store and by the intake journal). Fails with `PreconditionFailed`
/// before writing anything if any condition fails.
pub(crate) fn apply(conn: &Connection, ops: &[WriteOp]) -> PortResult<()> {
    let now = now_secs();
    let mut versions = Vec::with_capacity(ops.len());
    for op in ops {
        let (key, condition) = match op {
            // An unconditional delete needs no version (the audit mover
            // deletes every event it moved this way), and an unconditional
            // put finds its version in its own statement: neither reads
            // the row first.
            WriteOp::Delete { condition: Condition::None, .. } | WriteOp::Put { condition: Condition::None, .. } => {
                versions.push(None);
                continue;
            }
            // Staged audit events are appended, never read by key.
            WriteOp::Put { key, .. } if key.table == Table::AuditStaged => {
                versions.push(None);
                continue;
            }
            WriteOp::Put { key, condition, .. }
            | WriteOp::Delete { key, condition }
            | WriteOp::Check { key, condition } => (key, *condition),
        };
        let cur = current(conn, key, now)?;
        if !condition.holds(cur) {
            return Err(PortError::precondition_failed("state write"));
        }
        versions.push(cur);
    }
    for (op, cur) in ops.iter().zip(versions) {
        match op {
            // An audit event staged with an intake joins its group commit's
            // one row of staged values (`crate::db::stage`); the audit
            // log's mover takes it from there.
            WriteOp::Put { key, value, condition, .. } if key.table == Table::AuditStaged => {
                debug_assert_eq!(*condition, Condition::None, "staged audit events are written unconditionally");
                crate::db::stage(value.to_vec());
            }
            WriteOp::Put { key, value, expires_at, condition: Condition::None, .. } => {
                // A live row's version goes up by one; an expired row's
                // starts again at 1, as for a row that was not there.
                conn.prepare_cached(
                    "INSERT INTO state (tbl, pk, sk, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, 1, ?5)
                     ON CONFLICT (tbl, pk, sk) DO UPDATE SET value = excluded.value,
                     version = CASE WHEN state.expires_at IS NOT NULL AND state.expires_at <= ?6 THEN 1
                                    ELSE state.version + 1 END,
                     expires_at = excluded.expires_at",
                )
                .and_then(|mut s| s.execute(params![key.table.name(), key.pk, key.sk, value.as_ref(), expires_at, now]))
                .map_err(db_err("state put"))?;
            }
            WriteOp::Put { key, value, expires_at, .. } => {
                let version = cur.map_or(1, |v| v + 1) as i64;
                conn.prepare_cached(
                    "INSERT INTO state (tbl, pk, sk, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tbl, pk, sk) DO UPDATE SET value = excluded.value, version = excluded.version,
                     expires_at = excluded.expires_at",
                )
                .and_then(|mut s| {
                    s.execute(params![key.table.name(), key.pk, key.sk, value.as_ref(), version, expires_at])
                })
                .map_err(db_err("state put"))?;
            }
            WriteOp::Delete { key, .. } => {
                conn.prepare_cached("DELETE FROM state WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
                    .and_then(|mut s| s.execute(params![key.table.name(), key.pk, key.sk]))
                    .map_err(db_err("state delete"))?;
            }
            WriteOp::Check { .. } => {}
        }
    }
    Ok(())
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn get(&self, key: &Key) -> PortResult<Option<Item>> {
        let key = key.clone();
        self.db
            .read(move |conn| {
                let row: Option<(Vec<u8>, i64, Option<i64>)> = conn
                    .prepare_cached(
                        "SELECT value, version, expires_at FROM state WHERE tbl = ?1 AND pk = ?2 AND sk = ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![key.table.name(), key.pk, key.sk], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()
                    })
                    .map_err(db_err("state get"))?;
                let now = now_secs();
                Ok(row.filter(|(_, _, exp)| exp.is_none_or(|e| e > now)).map(|(v, version, expires_at)| Item {
                    value: Bytes::from(v),
                    version: version as u64,
                    expires_at,
                }))
            })
            .await
    }

    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        check_write_batch(&ops)?;
        self.db.write(move |conn| apply(conn, &ops)).await
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<(String, Item)>> {
        let limit = limit.clamp(1, MAX_QUERY_LIMIT) as i64;
        let (pk, after) = (pk.to_string(), after.map(str::to_string));
        self.db
            .read(move |conn| {
                let now = now_secs();
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT sk, value, version, expires_at FROM state
                         WHERE tbl = ?1 AND pk = ?2 AND sk > ?3 AND (expires_at IS NULL OR expires_at > ?4)
                         ORDER BY sk LIMIT ?5",
                    )
                    .map_err(db_err("state query"))?;
                let rows = stmt
                    .query_map(params![table.name(), pk, after.unwrap_or_default(), now, limit], |r| {
                        Ok((r.get::<_, String>(0)?, item_at(r, 1)?))
                    })
                    .map_err(db_err("state query"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err("state query"))
            })
            .await
    }

    async fn scan(&self, table: Table, after: Option<&str>, limit: usize) -> PortResult<ScanPage> {
        let limit = limit.clamp(1, MAX_QUERY_LIMIT);
        let (pk, sk) = match after.map(parse_scan_cursor) {
            Some(Some((pk, sk))) => (pk.to_string(), sk.to_string()),
            Some(None) => return Err(PortError::invalid_input("state scan: not a scan cursor")),
            None => (String::new(), String::new()),
        };
        let first = after.is_none();
        let items = self
            .db
            .read(move |conn| {
                // In primary-key order, so the last row returned is where
                // the next page starts.
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT pk, sk, value, version, expires_at FROM state
                         WHERE tbl = ?1 AND (?2 OR pk > ?3 OR (pk = ?3 AND sk > ?4))
                         ORDER BY pk, sk LIMIT ?5",
                    )
                    .map_err(db_err("state scan"))?;
                let rows = stmt
                    .query_map(params![table.name(), first, pk, sk, limit as i64], |r| {
                        Ok((Key::new(table, r.get::<_, String>(0)?, r.get::<_, String>(1)?), item_at(r, 2)?))
                    })
                    .map_err(db_err("state scan"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err("state scan"))
            })
            .await?;
        // Expired rows count toward the page (so a page of them still
        // moves the cursor on) but are not returned.
        let next = (items.len() == limit).then(|| items.last().map(|(k, _)| scan_cursor(&k.pk, &k.sk))).flatten();
        let now = now_secs();
        let items = items.into_iter().filter(|(_, i)| i.expires_at.is_none_or(|e| e > now)).collect();
        Ok(ScanPage { items, next })
    }
}
