//! [`Notifier`] on the embedded database: events are appended to a durable
//! log (`events`) that local subscribers read in order. On one machine the
//! log is the topic; the webhook dispatcher and the acknowledgement feed
//! read from the state store, so nothing depends on a subscriber being up.

use crate::db::{Db, db_err, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::ports::{Event, Notifier, check_publish_batch};
use clearway_core::{PortError, PortResult};
use rusqlite::params;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The event log.
#[derive(Debug, Clone)]
pub struct SqliteNotifier {
    db: Db,
    published: Arc<Notify>,
}

/// An event with its place in the log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event: Event,
    pub published_at_ms: i64,
}

impl SqliteNotifier {
    pub fn new(db: Db) -> Self {
        SqliteNotifier { db, published: Arc::new(Notify::new()) }
    }

    /// Events after `seq`, oldest first.
    pub async fn after(&self, seq: i64, limit: usize) -> PortResult<Vec<LoggedEvent>> {
        let limit = limit.clamp(1, 1000) as i64;
        self.db
            .read(move |conn| {
                let mut s = conn
                    .prepare_cached("SELECT seq, id, attributes, body, published_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                    .map_err(db_err("events read"))?;
                let rows = s
                    .query_map(params![seq, limit], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?, r.get::<_, i64>(4)?))
                    })
                    .map_err(db_err("events read"))?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, id, attrs, body, at) = row.map_err(db_err("events read"))?;
                    out.push(LoggedEvent {
                        seq,
                        event: Event { id, attributes: decode_attributes(&attrs), body: Bytes::from(body) },
                        published_at_ms: at,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Resolves when something is published after this call starts.
    pub async fn wait(&self) {
        self.published.notified().await;
    }

    /// Drops events older than `max_age_ms`.
    pub async fn prune(&self, max_age_ms: i64) -> PortResult<usize> {
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM events WHERE published_at < ?1")
                    .and_then(|mut s| s.execute(params![now_ms() - max_age_ms]))
                    .map_err(db_err("events prune"))
            })
            .await
    }
}

/// Attributes are stored as `key=value` lines (values never hold PHI or
/// line breaks; anything else is dropped).
fn encode_attributes(a: &BTreeMap<String, String>) -> String {
    a.iter().filter(|(k, v)| !k.contains(['=', '\n']) && !v.contains('\n')).map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn decode_attributes(s: &str) -> BTreeMap<String, String> {
    s.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[async_trait]
impl Notifier for SqliteNotifier {
    async fn publish(&self, events: &[Event]) -> PortResult<()> {
        check_publish_batch(events)?;
        if events.iter().any(|e| e.id.is_empty()) {
            return Err(PortError::invalid_input("publish: event without id"));
        }
        let rows: Vec<(String, String, Bytes)> =
            events.iter().map(|e| (e.id.clone(), encode_attributes(&e.attributes), e.body.clone())).collect();
        self.db
            .write(move |conn| {
                let now = now_ms();
                let mut s = conn
                    .prepare_cached("INSERT INTO events (id, attributes, body, published_at) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(db_err("publish"))?;
                for (id, attrs, body) in rows {
                    s.execute(params![id, attrs, body.as_ref(), now]).map_err(db_err("publish"))?;
                }
                Ok(())
            })
            .await?;
        self.published.notify_waiters();
        Ok(())
    }
}
