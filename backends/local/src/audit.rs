//! The audit log on the embedded backend: a database file of its own
//! (`audit.db`), apart from the data's, written by the same group-commit
//! writer (one fsync per batch; an event is durable when `append`
//! returns). It keeps each event, the hash of every perfect subtree (see
//! [`clearway_core::audit`]) and the signed checkpoints, which are also
//! appended to a plain file (`audit-checkpoints.log`, fsync'd) that an
//! auditor can copy.

use crate::db::{Db, db_err};
use clearway_core::audit::{
    AuditError, AuditEvent, AuditPage, AuditQuery, Checkpoint, CompactRange, Hash, LogReader, LogSigner, MAX_SCAN,
    Nodes, leaf_hash,
};
use clearway_core::{ErrorKind, PortError, PortResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leaves (
    seq INTEGER PRIMARY KEY,
    event BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
";

/// The audit database's file in a data directory.
pub fn audit_db_path(dir: &Path) -> PathBuf {
    dir.join("audit.db")
}

/// The file every checkpoint is appended to.
pub fn checkpoints_path(dir: &Path) -> PathBuf {
    dir.join("audit-checkpoints.log")
}

/// The audit log of one data directory.
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    db: Db,
    /// The right edge as of the last append this process made; checked
    /// against the stored size by every append (a batch whose commit
    /// failed, or another process's appends, make it stale).
    edge: Arc<Mutex<Option<CompactRange>>>,
    checkpoints: PathBuf,
}

/// Stored nodes read through a connection.
struct ConnNodes<'a>(&'a Connection);

impl Nodes for ConnNodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        let hash: Option<Vec<u8>> = self
            .0
            .prepare_cached("SELECT hash FROM nodes WHERE level = ?1 AND idx = ?2")
            .and_then(|mut s| s.query_row(params![level, index as i64], |r| r.get(0)).optional())
            .map_err(|e| AuditError::Log(format!("read node: {e}")))?;
        hash.and_then(|h| h.try_into().ok()).ok_or(AuditError::MissingNode { level, index })
    }
}

fn size_of(conn: &Connection) -> PortResult<u64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM leaves")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(db_err("audit size"))
}

fn audit_err(e: AuditError) -> PortError {
    PortError::with_cause(ErrorKind::Internal, "audit log", e)
}

impl SqliteAuditLog {
    /// Opens (creating if needed) the audit log of the data directory
    /// `dir`.
    pub fn open(dir: &Path) -> PortResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "create data directory", e))?;
        Ok(SqliteAuditLog {
            db: Db::open_file(&audit_db_path(dir), SCHEMA)?,
            edge: Arc::new(Mutex::new(None)),
            checkpoints: checkpoints_path(dir),
        })
    }

    /// The right edge in step with the stored log, inside the writer.
    fn edge_in(conn: &Connection, cached: &mut Option<CompactRange>) -> PortResult<CompactRange> {
        let size = size_of(conn)?;
        match cached.take() {
            Some(edge) if edge.size() == size => Ok(edge),
            _ => CompactRange::load(&ConnNodes(conn), size).map_err(audit_err),
        }
    }

    /// Appends an event (its leaf bytes); returns its sequence number once
    /// it is durable.
    pub async fn append(&self, event: Vec<u8>) -> PortResult<u64> {
        let edge = self.edge.clone();
        self.db
            .write(move |conn| {
                let mut cached = edge.lock().map_err(|_| PortError::new(ErrorKind::Internal, "audit edge"))?;
                let mut range = Self::edge_in(conn, &mut cached)?;
                let seq = range.size();
                conn.prepare_cached("INSERT INTO leaves (seq, event) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![seq as i64, event]))
                    .map_err(db_err("audit append"))?;
                for (level, index, hash) in range.push(leaf_hash(&event)) {
                    conn.prepare_cached("INSERT INTO nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![level, index as i64, hash.as_slice()]))
                        .map_err(db_err("audit append"))?;
                }
                *cached = Some(range);
                Ok(seq)
            })
            .await
    }

    /// Signs a checkpoint of the log as it stands, stores it, and appends it
    /// to the checkpoints file (fsync'd) before returning it. A log never
    /// signs two checkpoints of one size.
    pub async fn checkpoint(&self, signer: Arc<LogSigner>) -> PortResult<Checkpoint> {
        let edge = self.edge.clone();
        let c = self
            .db
            .write(move |conn| {
                let mut cached = edge.lock().map_err(|_| PortError::new(ErrorKind::Internal, "audit edge"))?;
                let range = Self::edge_in(conn, &mut cached)?;
                let existing: Option<String> = conn
                    .prepare_cached("SELECT note FROM checkpoints WHERE size = ?1")
                    .and_then(|mut s| s.query_row(params![range.size() as i64], |r| r.get(0)).optional())
                    .map_err(db_err("audit checkpoint"))?;
                let c = match existing {
                    Some(note) => Checkpoint::open(&note, &signer.verifier()).map_err(audit_err)?,
                    None => {
                        let c = signer.sign(range.size(), &range.root());
                        conn.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")
                            .and_then(|mut s| s.execute(params![c.size as i64, c.note]))
                            .map_err(db_err("audit checkpoint"))?;
                        c
                    }
                };
                *cached = Some(range);
                Ok(c)
            })
            .await?;
        let path = self.checkpoints.clone();
        let note = c.note.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            f.write_all(note.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .await
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "audit checkpoint file", e))?
        .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "audit checkpoint file", e))?;
        Ok(c)
    }

    /// The newest checkpoint's signed note, if any.
    pub async fn latest_checkpoint(&self) -> PortResult<Option<String>> {
        self.db
            .read(|conn| {
                conn.prepare_cached("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                    .map_err(db_err("audit checkpoint"))
            })
            .await
    }

    /// The note of the checkpoint of `size` events, if one was signed.
    pub async fn checkpoint_note(&self, size: u64) -> PortResult<Option<String>> {
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT note FROM checkpoints WHERE size = ?1")
                    .and_then(|mut s| s.query_row([size as i64], |r| r.get(0)).optional())
                    .map_err(db_err("audit checkpoint"))
            })
            .await
    }

    /// Events matching `query`, oldest first, at most `limit`. Reads the log
    /// in order from `query.after` (no index: a search of a large log
    /// should name a recent `after`).
    pub async fn search(&self, query: AuditQuery, limit: usize) -> PortResult<AuditPage> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT seq, event FROM leaves WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                    .map_err(db_err("audit search"))?;
                let start = query.after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
                let rows = stmt
                    .query_map(params![start, MAX_SCAN as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                    .map_err(db_err("audit search"))?;
                let mut page = AuditPage::default();
                let mut read = 0;
                for row in rows {
                    let (seq, bytes) = row.map_err(db_err("audit search"))?;
                    read += 1;
                    let event: AuditEvent = clearway_core::records::decode_json(&bytes)?;
                    if query.matches(seq as u64, &event) {
                        page.events.push((seq as u64, event));
                    }
                    if page.events.len() >= limit || read >= MAX_SCAN {
                        page.next = Some(seq as u64);
                        break;
                    }
                }
                Ok(page)
            })
            .await
    }

    /// The inclusion proof of event `index` in the tree of `size` events.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> PortResult<Vec<Hash>> {
        self.db
            .read(move |conn| {
                if size > size_of(conn)? || index >= size {
                    return Err(PortError::invalid_input("inclusion proof: index or size out of range"));
                }
                clearway_core::audit::inclusion_proof(&ConnNodes(conn), size, index).map_err(audit_err)
            })
            .await
    }

    /// The consistency proof between the trees of `old` and `new` events.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> PortResult<Vec<Hash>> {
        self.db
            .read(move |conn| {
                if new > size_of(conn)? || old > new {
                    return Err(PortError::invalid_input("consistency proof: sizes out of range"));
                }
                clearway_core::audit::consistency_proof(&ConnNodes(conn), old, new).map_err(audit_err)
            })
            .await
    }

    /// How many events the log holds.
    pub async fn size(&self) -> PortResult<u64> {
        self.db.read(size_of).await
    }
}

/// The audit log as a service writes to it: events appended durably, and a
/// checkpoint signed at least every 60 s or every 10,000 events (the
/// service's checkpointer, `clearway::commands::audit::run_checkpoints`), and
/// once more on shutdown.
#[derive(Debug)]
pub struct AuditService {
    log: SqliteAuditLog,
    signer: Arc<LogSigner>,
}

impl AuditService {
    pub fn new(log: SqliteAuditLog, signer: Arc<LogSigner>) -> Self {
        AuditService { log, signer }
    }

    /// Signs a checkpoint of the log as it stands (see
    /// [`SqliteAuditLog::checkpoint`]).
    pub async fn checkpoint(&self) -> PortResult<Checkpoint> {
        self.log.checkpoint(self.signer.clone()).await
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> clearway_core::audit::VerifierKey {
        self.signer.verifier()
    }
}

#[async_trait::async_trait]
impl clearway_core::audit::AuditSink for AuditService {
    async fn append(&self, event: &clearway_core::audit::AuditEvent) -> PortResult<u64> {
        let seq = self.log.append(event.to_leaf()).await?;
        metrics::counter!("clearway_audit_events_total").increment(1);
        Ok(seq)
    }

    async fn latest_checkpoint(&self) -> PortResult<Option<String>> {
        self.log.latest_checkpoint().await
    }

    async fn size(&self) -> PortResult<u64> {
        self.log.size().await
    }

    async fn checkpoint(&self) -> PortResult<String> {
        let c = AuditService::checkpoint(self).await?;
        metrics::counter!("clearway_audit_checkpoints_total").increment(1);
        Ok(c.note)
    }

    async fn checkpoint_note(&self, size: u64) -> PortResult<Option<String>> {
        self.log.checkpoint_note(size).await
    }

    async fn search(&self, query: &AuditQuery, limit: usize) -> PortResult<AuditPage> {
        self.log.search(query.clone(), limit).await
    }

    async fn inclusion_proof(&self, index: u64, size: u64) -> PortResult<Vec<Hash>> {
        self.log.inclusion_proof(index, size).await
    }

    async fn consistency_proof(&self, old: u64, new: u64) -> PortResult<Vec<Hash>> {
        self.log.consistency_proof(old, new).await
    }
}

/// A read failure as the verifier reports it.
fn read_err(what: &'static str) -> impl Fn(rusqlite::Error) -> AuditError + Copy {
    move |e| AuditError::Log(format!("read {what}: {e}"))
}

/// A read-only view of an audit database for offline verification
/// (`clearway audit verify`).
#[derive(Debug)]
pub struct AuditFile {
    conn: Connection,
}

impl AuditFile {
    pub fn open(dir: &Path) -> PortResult<Self> {
        let path = audit_db_path(dir);
        if !path.exists() {
            return Err(PortError::not_found("audit log"));
        }
        let conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err("open audit log"))?;
        Ok(AuditFile { conn })
    }
}

impl Nodes for AuditFile {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        ConnNodes(&self.conn).node(level, index)
    }
}

impl LogReader for AuditFile {
    fn size(&self) -> Result<u64, AuditError> {
        size_of(&self.conn).map_err(|e| AuditError::Log(e.to_string()))
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, AuditError> {
        let read = read_err("events");
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, event FROM leaves WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
            .map_err(read)?;
        let rows = stmt
            .query_map(params![from as i64, limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(read)?;
        let mut out = Vec::new();
        for (n, row) in rows.enumerate() {
            let (seq, event) = row.map_err(read)?;
            // A gap in the sequence is a deleted event.
            if seq as u64 != from + n as u64 {
                return Err(AuditError::Log(format!("event {} is missing", from + n as u64)));
            }
            out.push(event);
        }
        Ok(out)
    }

    fn nodes_at(&self, level: u8, from: u64, limit: usize) -> Result<Vec<Hash>, AuditError> {
        let read = read_err("nodes");
        let mut stmt = self
            .conn
            .prepare_cached("SELECT idx, hash FROM nodes WHERE level = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3")
            .map_err(read)?;
        let rows = stmt
            .query_map(params![level, from as i64, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(read)?;
        let mut out = Vec::with_capacity(limit);
        for row in rows {
            let (idx, hash) = row.map_err(read)?;
            match (idx as u64 == from + out.len() as u64, Hash::try_from(hash)) {
                (true, Ok(h)) => out.push(h),
                _ => break,
            }
        }
        Ok(out)
    }

    fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        let read = read_err("checkpoints");
        let mut stmt = self.conn.prepare("SELECT note FROM checkpoints ORDER BY size").map_err(read)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }
}
