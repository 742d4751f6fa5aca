//! The audit log on the embedded backend: a database file of its own
//! (`audit.db`), apart from the data's, written by the same kind of
//! group-commit writer (one fsync per batch; an event is durable when
//! `append` returns). Appends waiting while a batch commits go together
//! as one job of the next batch, so the writer does one savepoint and one
//! size check per batch, not per event. It keeps each event, the hash of
//! every perfect subtree of at least [`STORED_FROM_LEVEL`] levels (the
//! smaller ones are recomputed from at most 255 events when a proof or the
//! right edge needs them; see [`clearway_core::audit`]) and the signed
//! checkpoints, which are also appended to a plain file
//! (`audit-checkpoints.log`, fsync'd) that an auditor can copy.

use crate::db::{Db, StagedGroup, db_err};
use clearway_core::audit::STAGED_PARTITION;
use clearway_core::audit::{
    AuditError, AuditEvent, AuditPage, AuditQuery, Checkpoint, CompactRange, Hash, LogReader, LogSigner, MAX_SCAN,
    Nodes, leaf_hash,
};
use clearway_core::ports::{Condition, Key, MAX_QUERY_LIMIT, MAX_WRITE_OPS, StateStore, Table, WriteOp};
use clearway_core::{ErrorKind, PortError, PortResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The lowest level of the stored subtree hashes: a subtree of fewer than
/// 2^8 events is recomputed from its events when needed, so an append
/// writes its event and, once every 256 events, a few node rows.
pub const STORED_FROM_LEVEL: u8 = 8;

/// Most appends waiting for the writer before an append is refused
/// (`Unavailable`) rather than queued (backpressure).
const MAX_WAITING: usize = 16_384;

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
CREATE TABLE IF NOT EXISTS moved (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    keys TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS moved_groups (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
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
    waiting: Arc<Mutex<Waiting>>,
}

/// Appends waiting for the next batch.
#[derive(Debug, Default)]
struct Waiting {
    events: Vec<(Vec<u8>, oneshot::Sender<PortResult<u64>>)>,
    /// Whether a task is writing batches (it takes the waiting appends
    /// until none are left).
    writing: bool,
}

/// Marks the batch writer stopped however it ends, so that the next
/// append starts another (and, if it ended early, fails what waits).
struct WriterGuard {
    waiting: Arc<Mutex<Waiting>>,
    /// Cleared when the writer returns normally (it has already marked
    /// itself stopped, and an append made since then belongs to the next).
    armed: bool,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut w = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.writing = false;
        for (_, reply) in w.events.drain(..) {
            let _ = reply.send(Err(PortError::new(ErrorKind::Unavailable, "audit writer stopped")));
        }
    }
}

/// Stored nodes read through a connection.
struct ConnNodes<'a>(&'a Connection);

impl Nodes for ConnNodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        if level < STORED_FROM_LEVEL {
            return subtree_of_events(self.0, level, index);
        }
        let hash: Option<Vec<u8>> = self
            .0
            .prepare_cached("SELECT hash FROM nodes WHERE level = ?1 AND idx = ?2")
            .and_then(|mut s| s.query_row(params![level, index as i64], |r| r.get(0)).optional())
            .map_err(|e| AuditError::Log(format!("read node: {e}")))?;
        hash.and_then(|h| h.try_into().ok()).ok_or(AuditError::MissingNode { level, index })
    }
}

/// The hash of a subtree below [`STORED_FROM_LEVEL`], from its events.
fn subtree_of_events(conn: &Connection, level: u8, index: u64) -> Result<Hash, AuditError> {
    let first = index << level;
    let count = 1u64 << level;
    let mut stmt = conn
        .prepare_cached("SELECT seq, event FROM leaves WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
        .map_err(|e| AuditError::Log(format!("read events: {e}")))?;
    let rows = stmt
        .query_map(params![first as i64, count as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(|e| AuditError::Log(format!("read events: {e}")))?;
    let mut range = CompactRange::default();
    for (n, row) in rows.enumerate() {
        let (seq, event) = row.map_err(|e| AuditError::Log(format!("read events: {e}")))?;
        if seq as u64 != first + n as u64 {
            break;
        }
        range.push(leaf_hash(&event));
    }
    if range.size() != count {
        return Err(AuditError::MissingNode { level, index });
    }
    Ok(range.root())
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
            waiting: Arc::new(Mutex::new(Waiting::default())),
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
    /// it is durable. Appends made while a batch is being written wait and
    /// go together in the next one.
    pub async fn append(&self, event: Vec<u8>) -> PortResult<u64> {
        let (reply, rx) = oneshot::channel();
        let start = {
            let mut w = self.waiting.lock().map_err(|_| PortError::new(ErrorKind::Internal, "audit appends"))?;
            if w.events.len() >= MAX_WAITING {
                return Err(PortError::new(ErrorKind::Unavailable, "audit log backlog"));
            }
            w.events.push((event, reply));
            !std::mem::replace(&mut w.writing, true)
        };
        if start {
            // Its own task: a caller that goes away (a closed connection)
            // must not stop a batch that others wait for.
            tokio::spawn(self.clone().write_batches());
        }
        rx.await.map_err(|_| PortError::new(ErrorKind::Unavailable, "audit writer stopped"))?
    }

    /// Writes the waiting appends, a batch at a time, until none wait.
    async fn write_batches(self) {
        let mut guard = WriterGuard { waiting: self.waiting.clone(), armed: true };
        loop {
            let batch = {
                let mut w = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if w.events.is_empty() {
                    w.writing = false;
                    guard.armed = false;
                    return;
                }
                std::mem::take(&mut w.events)
            };
            let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let hashes: Vec<Hash> = events.iter().map(|e| leaf_hash(e)).collect();
            match self.write_events(events, hashes, None).await {
                Ok(first) => {
                    for (n, reply) in replies.into_iter().enumerate() {
                        let _ = reply.send(Ok(first + n as u64));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %clearway_core::error::chain(&e), "audit append failed");
                    for reply in replies {
                        let _ = reply.send(Err(PortError::new(e.kind(), "audit append")));
                    }
                }
            }
        }
    }

    /// Appends events staged in the data's store (their sort keys
    /// `moved`) in one durable write that also records those keys as the
    /// last batch moved: a mover that stops before deleting them from the
    /// data's store deletes them first next time, never appending them
    /// twice ([`SqliteAuditLog::last_moved`]). Returns the first one's
    /// sequence number.
    pub async fn append_moved(&self, events: Vec<Vec<u8>>, moved: Vec<String>) -> PortResult<u64> {
        let hashes: Vec<Hash> = events.iter().map(|e| leaf_hash(e)).collect();
        self.write_events(events, hashes, Some(Moved::Keys(moved))).await
    }

    /// Appends the events of the data's staged groups up to `upto` (see
    /// [`crate::db::StagedGroup`]) in one durable write that also records
    /// `upto`: a mover that stops before deleting those groups deletes them
    /// first next time, never appending them twice
    /// ([`SqliteAuditLog::moved_upto`]). Returns the first one's sequence
    /// number.
    pub async fn append_moved_groups(&self, events: Vec<Vec<u8>>, upto: i64) -> PortResult<u64> {
        let hashes: Vec<Hash> = events.iter().map(|e| leaf_hash(e)).collect();
        self.write_events(events, hashes, Some(Moved::Groups(upto))).await
    }

    /// The last staged group whose events are in the log (0: none).
    pub async fn moved_upto(&self) -> PortResult<i64> {
        Ok(self.marker::<i64>("SELECT upto FROM moved_groups WHERE id = 1").await?.unwrap_or(0))
    }

    /// The sort keys of the last batch [`SqliteAuditLog::append_moved`]
    /// wrote.
    pub async fn last_moved(&self) -> PortResult<Vec<String>> {
        let keys = self.marker::<String>("SELECT keys FROM moved WHERE id = 1").await?;
        Ok(keys.map(|k| k.split('\n').filter(|k| !k.is_empty()).map(str::to_string).collect()).unwrap_or_default())
    }

    /// The one value of a marker row (`sql` selects it), if it is there.
    async fn marker<T: rusqlite::types::FromSql + Send + 'static>(&self, sql: &'static str) -> PortResult<Option<T>> {
        self.db
            .read(move |conn| {
                conn.prepare_cached(sql)
                    .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                    .map_err(db_err("audit moved"))
            })
            .await
    }

    /// Stores events (with their leaf hashes) and the subtrees they
    /// complete in one write, with the keys of moved events if they are;
    /// returns the first one's sequence number.
    async fn write_events(&self, events: Vec<Vec<u8>>, hashes: Vec<Hash>, moved: Option<Moved>) -> PortResult<u64> {
        let edge = self.edge.clone();
        self.db
            .write(move |conn| {
                match &moved {
                    // Sort keys are event ids: no line breaks in them.
                    Some(Moved::Keys(keys)) => {
                        conn.prepare_cached("INSERT INTO moved (id, keys) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET keys = excluded.keys")
                            .and_then(|mut s| s.execute(params![keys.join("\n")]))
                            .map_err(db_err("audit moved"))?;
                    }
                    Some(Moved::Groups(upto)) => {
                        conn.prepare_cached("INSERT INTO moved_groups (id, upto) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET upto = excluded.upto")
                            .and_then(|mut s| s.execute(params![upto]))
                            .map_err(db_err("audit moved"))?;
                    }
                    None => {}
                }
                let mut cached = edge.lock().map_err(|_| PortError::new(ErrorKind::Internal, "audit edge"))?;
                let mut range = Self::edge_in(conn, &mut cached)?;
                let first = range.size();
                let mut leaf = conn
                    .prepare_cached("INSERT INTO leaves (seq, event) VALUES (?1, ?2)")
                    .map_err(db_err("audit append"))?;
                let mut node = conn
                    .prepare_cached("INSERT INTO nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
                    .map_err(db_err("audit append"))?;
                for (event, hash) in events.iter().zip(hashes) {
                    leaf.execute(params![range.size() as i64, event]).map_err(db_err("audit append"))?;
                    for (level, index, hash) in range.push(hash) {
                        if level >= STORED_FROM_LEVEL {
                            node.execute(params![level, index as i64, hash.as_slice()])
                                .map_err(db_err("audit append"))?;
                        }
                    }
                }
                // Only once the batch is in: a failed batch leaves the
                // cache empty, and the next one reloads the edge.
                *cached = Some(range);
                Ok(first)
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

/// What an append of moved events records as moved, with them.
enum Moved {
    /// The sort keys of staged rows (events staged before groups).
    Keys(Vec<String>),
    /// Every staged group up to this id.
    Groups(i64),
}

/// The audit log as a service writes to it: events appended durably, and a
/// checkpoint signed at least every 60 s or every 10,000 events (the
/// service's checkpointer, `clearway::commands::audit::run_checkpoints`), and
/// once more on shutdown. With [`AuditService::with_staging`] it also takes
/// the events intakes stage in the data's store and moves them into the log.
pub struct AuditService {
    log: SqliteAuditLog,
    signer: Arc<LogSigner>,
    staging: Option<Arc<Staging>>,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").field("log", &self.log).field("staging", &self.staging.is_some()).finish()
    }
}

/// Where staged events are and how they are moved.
struct Staging {
    /// The data's state store (sealed: it opens the staged values): events
    /// staged one row each before groups, drained first.
    state: Arc<dyn StateStore>,
    /// The data's database, whose writer stores each group commit's staged
    /// events as one row (`staged_groups`, [`crate::db::StagedGroup`]).
    db: Db,
    /// Taken by one mover at a time across the processes of a data
    /// directory (`audit-move.lock`).
    lock_file: PathBuf,
    /// One mover at a time in this process.
    moving: tokio::sync::Mutex<Moving>,
    /// No row staged before groups is left (then neither a move nor a
    /// direct append looks for one again).
    rows_done: std::sync::atomic::AtomicBool,
}

/// What a mover remembers between moves.
struct Moving {
    /// The last key of the last batch of rows this process moved and
    /// deleted (rows staged before groups).
    last_deleted: Option<String>,
    /// Groups handed over by the data's writer once durable.
    handed: tokio::sync::mpsc::Receiver<StagedGroup>,
    /// Groups handed over and not yet moved, by id.
    waiting: BTreeMap<i64, Vec<Vec<u8>>>,
    /// Groups up to this id are deleted from the data's database.
    deleted_upto: i64,
    /// The data's database was found replaced (logged once).
    marker_reset: bool,
}

/// Most staged events moved in one write to the log.
const MOVE_BATCH: usize = MAX_QUERY_LIMIT;
/// Most staged groups read from the data's database at once.
const GROUPS_READ: usize = 256;
/// Most groups handed over in memory and kept until moved.
const GROUPS_KEPT: usize = 4096;

impl AuditService {
    pub fn new(log: SqliteAuditLog, signer: Arc<LogSigner>) -> Self {
        AuditService { log, signer, staging: None }
    }

    /// Takes events staged with intakes in the data's store (`state`, over
    /// the database `db` in the data directory `dir`) and moves them into
    /// the log.
    pub fn with_staging(mut self, state: Arc<dyn StateStore>, db: &Db, dir: &Path) -> Self {
        self.staging = Some(Arc::new(Staging {
            state,
            db: db.clone(),
            lock_file: dir.join("audit-move.lock"),
            moving: tokio::sync::Mutex::new(Moving {
                last_deleted: None,
                handed: db.staged_groups(),
                waiting: BTreeMap::new(),
                deleted_upto: 0,
                marker_reset: false,
            }),
            rows_done: std::sync::atomic::AtomicBool::new(false),
        }));
        self
    }

    /// Signs a checkpoint of the log as it stands (see
    /// [`SqliteAuditLog::checkpoint`]), after moving what is staged.
    pub async fn checkpoint(&self) -> PortResult<Checkpoint> {
        self.move_staged().await?;
        self.log.checkpoint(self.signer.clone()).await
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> clearway_core::audit::VerifierKey {
        self.signer.verifier()
    }

    /// Moves every staged event into the log, a batch at a time: each
    /// batch appended durably with a record of what it moved
    /// ([`SqliteAuditLog::append_moved_groups`]), then deleted from the
    /// data's store. A batch appended but not deleted (the process stopped
    /// in between) is deleted first, so no event is appended twice or lost.
    pub async fn move_staged(&self) -> PortResult<usize> {
        let Some(st) = self.staging.clone() else { return Ok(0) };
        // In a task of its own: a caller that goes away (a request timed
        // out, a closed connection) must not stop a move between its append
        // and its delete while the next mover goes ahead.
        let log = self.log.clone();
        tokio::spawn(async move { move_batches(&log, &st).await })
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "audit move", e))?
    }
}

/// The moves of [`AuditService::move_staged`], one mover at a time.
async fn move_batches(log: &SqliteAuditLog, st: &Staging) -> PortResult<usize> {
    let mut m = st.moving.lock().await;
    let path = st.lock_file.clone();
    let _across_processes = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "audit move lock", e))?
    .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "audit move lock", e))?;
    let mut moved = 0;
    if !st.rows_done.load(std::sync::atomic::Ordering::Relaxed) {
        moved += move_rows(log, st, &mut m).await?;
    }
    moved += move_groups(log, st, &mut m).await?;
    Ok(moved)
}

/// Moves events staged one row each (before groups), until none is left.
async fn move_rows(log: &SqliteAuditLog, st: &Staging, m: &mut Moving) -> PortResult<usize> {
    let last = log.last_moved().await?;
    if last.last() != m.last_deleted.as_ref() && !last.is_empty() {
        delete_staged(&st.state, &last).await?;
        m.last_deleted = last.last().cloned();
    }
    let mut moved = 0;
    loop {
        let page = st.state.query(Table::AuditStaged, STAGED_PARTITION, None, MOVE_BATCH).await?;
        if page.is_empty() {
            st.rows_done.store(true, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        let n = page.len();
        let (keys, events): (Vec<String>, Vec<Vec<u8>>) =
            page.into_iter().map(|(sk, item)| (sk, item.value.to_vec())).unzip();
        log.append_moved(events, keys.clone()).await?;
        delete_staged(&st.state, &keys).await?;
        m.last_deleted = keys.last().cloned();
        moved += n;
        metrics::counter!("clearway_audit_events_total").increment(n as u64);
        if n < MOVE_BATCH {
            break;
        }
    }
    Ok(moved)
}

/// Moves the staged groups after the last one moved, in id (commit)
/// order: those handed over in memory while they follow on without a gap,
/// otherwise as read from the data's database.
async fn move_groups(log: &SqliteAuditLog, st: &Staging, m: &mut Moving) -> PortResult<usize> {
    let mut upto = log.moved_upto().await?;
    if upto > 0 && newest_group(&st.db).await? < upto {
        // The data's database has numbered fewer groups than audit.db has
        // moved: it was replaced or restored from a copy. Its groups are
        // moved again rather than deleted unmoved (an event may then be in
        // the log twice; none is lost).
        if !m.marker_reset {
            tracing::warn!(
                moved_upto = upto,
                "staged audit groups: the data's database is not the one audit.db has moved from; moving every group it holds"
            );
            m.marker_reset = true;
        }
        upto = 0;
        m.deleted_upto = 0;
    }
    if m.deleted_upto < upto {
        delete_groups(&st.db, upto).await?;
        m.deleted_upto = upto;
    }
    let mut moved = 0;
    loop {
        // Taken again before each batch: groups committed while the last
        // batch was written are in memory, so the table is read only for a
        // group that was not handed over.
        take_handed(m);
        m.waiting = m.waiting.split_off(&(upto + 1));
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut last = upto;
        while batch.len() < MOVE_BATCH
            && let Some(values) = m.waiting.remove(&(last + 1))
        {
            batch.extend(values);
            last += 1;
        }
        if last == upto {
            // The next group is not in memory (handed over too late, by
            // another process, or before this mover started): the table
            // has every group, in commit order.
            for (id, joined) in read_groups(&st.db, upto).await? {
                if batch.len() >= MOVE_BATCH {
                    break;
                }
                m.waiting.remove(&id);
                batch.extend(crate::db::split_group(&joined));
                last = id;
            }
        }
        if last == upto {
            break;
        }
        let n = batch.len();
        log.append_moved_groups(batch, last).await?;
        delete_groups(&st.db, last).await?;
        m.deleted_upto = last;
        upto = last;
        moved += n;
        metrics::counter!("clearway_audit_events_total").increment(n as u64);
    }
    Ok(moved)
}

/// Takes the groups the data's writer has handed over since the last call.
fn take_handed(m: &mut Moving) {
    while let Ok(g) = m.handed.try_recv() {
        if m.waiting.len() >= GROUPS_KEPT {
            // A mover this far behind reads the table instead.
            m.waiting.clear();
        }
        m.waiting.insert(g.id, g.values);
    }
}

/// The staged groups after `after`, oldest first (at most [`GROUPS_READ`]).
async fn read_groups(db: &Db, after: i64) -> PortResult<Vec<(i64, Vec<u8>)>> {
    db.read(move |conn| {
        let mut s = conn
            .prepare_cached("SELECT id, staged FROM staged_groups WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(db_err("staged groups"))?;
        let rows = s
            .query_map(params![after, GROUPS_READ as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(db_err("staged groups"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err("staged groups"))
    })
    .await
}

/// The highest group id the data's database has ever given (0: none).
async fn newest_group(db: &Db) -> PortResult<i64> {
    db.read(|conn| {
        conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'staged_groups'")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
            .map(Option::unwrap_or_default)
            .map_err(db_err("staged groups"))
    })
    .await
}

/// Deletes the staged groups up to `upto` (moved into the log).
async fn delete_groups(db: &Db, upto: i64) -> PortResult<()> {
    db.write(move |conn| {
        conn.prepare_cached("DELETE FROM staged_groups WHERE id <= ?1")
            .and_then(|mut s| s.execute(params![upto]))
            .map(|_| ())
            .map_err(db_err("staged groups"))
    })
    .await
}

/// Whether anything staged waits to be moved.
async fn anything_staged(st: &Staging) -> PortResult<bool> {
    let groups = st
        .db
        .read(|conn| {
            conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM staged_groups)")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, bool>(0)))
                .map_err(db_err("staged groups"))
        })
        .await?;
    Ok(groups
        || (!st.rows_done.load(std::sync::atomic::Ordering::Relaxed)
            && !st.state.query(Table::AuditStaged, STAGED_PARTITION, None, 1).await?.is_empty()))
}

/// Deletes staged events (idempotent), [`MAX_WRITE_OPS`] to a write, the
/// writes together in one group commit.
async fn delete_staged(state: &Arc<dyn StateStore>, keys: &[String]) -> PortResult<()> {
    let mut writes = tokio::task::JoinSet::new();
    for chunk in keys.chunks(MAX_WRITE_OPS) {
        let ops: Vec<WriteOp> = chunk
            .iter()
            .map(|sk| WriteOp::Delete {
                key: Key::new(Table::AuditStaged, STAGED_PARTITION, sk.clone()),
                condition: Condition::None,
            })
            .collect();
        let state = state.clone();
        writes.spawn(async move { state.write(ops).await });
    }
    while let Some(done) = writes.join_next().await {
        done.map_err(|e| PortError::with_cause(ErrorKind::Internal, "audit move", e))??;
    }
    Ok(())
}

#[async_trait::async_trait]
impl clearway_core::audit::AuditSink for AuditService {
    async fn append(&self, event: &clearway_core::audit::AuditEvent) -> PortResult<u64> {
        // Events staged before this one go first, so the log keeps the
        // order in which answers went out.
        // (Best effort: a move that fails is retried by the mover, and this
        // event is still recorded.)
        if let Some(st) = &self.staging
            && anything_staged(st).await?
            && let Err(e) = self.move_staged().await
        {
            tracing::warn!(error = %clearway_core::error::chain(&e), "moving staged audit events failed");
        }
        let seq = self.log.append(event.to_leaf()).await?;
        metrics::counter!("clearway_audit_events_total").increment(1);
        Ok(seq)
    }

    fn takes_staged(&self) -> bool {
        self.staging.is_some()
    }

    async fn move_staged(&self) -> PortResult<usize> {
        AuditService::move_staged(self).await
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
        self.move_staged().await?;
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

    fn stored_from_level(&self) -> u8 {
        STORED_FROM_LEVEL
    }

    fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        let read = read_err("checkpoints");
        let mut stmt = self.conn.prepare("SELECT note FROM checkpoints ORDER BY size").map_err(read)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearway_core::audit::{MemLog, verify_log};

    fn event(n: u64) -> Vec<u8> {
        format!("{{\"n\":{n}}}").into_bytes()
    }

    /// Concurrent appends, batched, across several stored blocks: every
    /// event gets its own consecutive number, and the proofs, roots and
    /// right edge built from the sparse nodes are those of the reference
    /// log that stores every node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_appends_and_sparse_nodes_give_the_reference_proofs() {
        const N: u64 = 1_000;
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open(dir.path()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..16 {
            let log = log.clone();
            tasks.spawn(async move {
                let mut got = Vec::new();
                let mut n = w;
                while n < N {
                    got.push((log.append(event(n)).await.unwrap(), n));
                    n += 16;
                }
                got
            });
        }
        let mut order = vec![u64::MAX; N as usize];
        while let Some(got) = tasks.join_next().await {
            for (seq, n) in got.unwrap() {
                assert_eq!(order[seq as usize], u64::MAX, "sequence number {seq} given twice");
                order[seq as usize] = n;
            }
        }
        assert_eq!(log.size().await.unwrap(), N);
        let mut reference = MemLog::default();
        for n in &order {
            reference.append(&event(*n));
        }
        for size in [1, 2, 255, 256, 257, 511, 512, 513, 700, 999, N] {
            for index in [0, size / 3, size / 2, size - 1] {
                let want = clearway_core::audit::inclusion_proof(&reference, size, index).unwrap();
                assert_eq!(log.inclusion_proof(index, size).await.unwrap(), want, "inclusion {index} in {size}");
            }
            if size < N {
                let want = clearway_core::audit::consistency_proof(&reference, size, N).unwrap();
                assert_eq!(log.consistency_proof(size, N).await.unwrap(), want, "consistency {size} to {N}");
            }
        }
        // A fresh handle loads the right edge from the sparse nodes and the
        // events, and its checkpoint names the reference root.
        let seed = LogSigner::generate_seed().unwrap();
        let signer = Arc::new(LogSigner::from_seed("test.example/audit", &seed).unwrap());
        let reopened = SqliteAuditLog::open(dir.path()).unwrap();
        let c = reopened.checkpoint(signer.clone()).await.unwrap();
        assert_eq!((c.size, c.root), (N, reference.root()));
        assert_eq!(reopened.append(event(N)).await.unwrap(), N);
        reference.append(&event(N));
        let c = reopened.checkpoint(signer.clone()).await.unwrap();
        assert_eq!((c.size, c.root), (N + 1, reference.root()));
        // Only subtrees of 256 events or more are stored.
        let stored: Vec<u8> = log
            .db
            .read(|conn| {
                let mut s = conn.prepare("SELECT DISTINCT level FROM nodes ORDER BY level").unwrap();
                let levels = s.query_map([], |r| r.get::<_, u8>(0)).unwrap().map(Result::unwrap).collect();
                Ok(levels)
            })
            .await
            .unwrap();
        assert_eq!(stored, vec![8, 9]);
        drop((log, reopened));
        let file = AuditFile::open(dir.path()).unwrap();
        let report = verify_log(&file, &signer.verifier(), &[]).unwrap();
        assert_eq!((report.size, report.checkpointed), (N + 1, N + 1));
    }

    /// An event changed after its 256-event block was stored is caught by
    /// the stored node even before a checkpoint covers it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_event_in_a_stored_block_is_caught_without_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open(dir.path()).unwrap();
        for n in 0..300 {
            log.append(event(n)).await.unwrap();
        }
        drop(log);
        let seed = LogSigner::generate_seed().unwrap();
        let key = LogSigner::from_seed("test.example/audit", &seed).unwrap().verifier();
        assert!(verify_log(&AuditFile::open(dir.path()).unwrap(), &key, &[]).is_ok());
        let conn = Connection::open(audit_db_path(dir.path())).unwrap();
        conn.execute("UPDATE leaves SET event = CAST('{\"n\":-1}' AS BLOB) WHERE seq = 100", []).unwrap();
        drop(conn);
        let found = verify_log(&AuditFile::open(dir.path()).unwrap(), &key, &[]).unwrap_err();
        assert!(found.to_string().contains("stored node (8, 0) differs"), "{found}");
    }
}

#[cfg(test)]
mod staging_tests {
    use super::*;
    use clearway_core::audit::{AuditActor, AuditSink, staged_write};

    fn event(n: u64) -> AuditEvent {
        let actor = AuditActor {
            principal: format!("partner-{n}"),
            kind: "partner".into(),
            role: "submitter".into(),
            credential: None,
            auth: "api_key".into(),
        };
        AuditEvent::new("rest", "POST /v1/transactions", "C", actor)
    }

    /// A data store and the key of a log that takes events staged in it.
    fn staging_in(dir: &Path) -> (Arc<dyn StateStore>, Db, [u8; 32], Arc<LogSigner>) {
        let local = crate::Local::open(dir).unwrap();
        let seed = LogSigner::generate_seed().unwrap();
        let signer = Arc::new(LogSigner::from_seed("test.example/audit", &seed).unwrap());
        (Arc::new(local.state.clone()), local.db.clone(), seed, signer)
    }

    /// Events staged and not yet moved: in groups, and in rows of the
    /// state table (staged before groups).
    async fn staged_count(state: &Arc<dyn StateStore>, db: &Db) -> usize {
        let in_groups: usize =
            read_groups(db, 0).await.unwrap().iter().map(|(_, g)| crate::db::split_group(g).len()).sum();
        in_groups + state.query(Table::AuditStaged, STAGED_PARTITION, None, MAX_QUERY_LIMIT).await.unwrap().len()
    }

    /// Stages `event` as a row of the state table, as intakes did before
    /// groups.
    async fn stage_as_row(db: &Db, event: &AuditEvent) {
        let (id, leaf) = (event.id.clone(), event.to_leaf());
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO state (tbl, pk, sk, value, version) VALUES ('audit_staged', ?1, ?2, ?3, 1)",
                params![STAGED_PARTITION, id, leaf],
            )
            .map(|_| ())
            .map_err(db_err("test"))
        })
        .await
        .unwrap();
    }

    /// Events staged in the data's store are moved into the log once each:
    /// also when a mover stopped after appending a batch and before
    /// deleting it, and across more than one batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staged_events_are_moved_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let (state, db, seed, signer) = staging_in(dir.path());
        let service = |signer: Arc<LogSigner>| {
            AuditService::new(SqliteAuditLog::open(dir.path()).unwrap(), signer).with_staging(
                state.clone(),
                &db,
                dir.path(),
            )
        };
        // Staged before groups existed: rows of their own, moved first.
        for n in 0..5 {
            stage_as_row(&db, &event(20_000 + n)).await;
        }
        let audit = service(signer.clone());
        assert!(audit.takes_staged());
        // 2,500 staged (more than two batches) from many writes at once,
        // so that group commits hold several, and one appended directly.
        let mut writes = tokio::task::JoinSet::new();
        for chunk in (0..2_500).collect::<Vec<u64>>().chunks(10) {
            let events: Vec<AuditEvent> = chunk.iter().map(|n| event(*n)).collect();
            let state = state.clone();
            writes.spawn(async move { state.write(events.iter().map(staged_write).collect()).await.unwrap() });
        }
        while writes.join_next().await.is_some() {}
        assert_eq!(staged_count(&state, &db).await, 2_505);
        // An event appended directly moves what is staged first.
        audit.append(&event(9_999)).await.unwrap();
        assert_eq!(AuditSink::size(&audit).await.unwrap(), 2_506);
        assert_eq!(staged_count(&state, &db).await, 0);
        let page = audit.search(&AuditQuery::default(), 10_000).await.unwrap();
        let mut seen: Vec<String> = page.events.iter().map(|(_, e)| e.id.clone()).collect();
        assert_eq!(seen.len(), 2_506);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 2_506, "each event once");

        // A mover that appended a batch and stopped before deleting it.
        let more: Vec<AuditEvent> = (0..10).map(event).collect();
        state.write(more.iter().map(staged_write).collect()).await.unwrap();
        let groups = read_groups(&db, 0).await.unwrap();
        assert_eq!(groups.len(), 1, "one write, one group");
        let leaves = crate::db::split_group(&groups[0].1);
        assert_eq!(leaves.len(), 10);
        audit.log.append_moved_groups(leaves, groups[0].0).await.unwrap();
        drop(audit);
        // The next mover (another process, after a restart: nothing handed
        // over in memory) deletes that group instead of appending it again,
        // and reads the groups staged since from the table.
        let later: Vec<AuditEvent> = (0..7).map(event).collect();
        state.write(later.iter().map(staged_write).collect()).await.unwrap();
        let audit = service(signer);
        assert_eq!(audit.move_staged().await.unwrap(), 7);
        assert_eq!(staged_count(&state, &db).await, 0);
        assert_eq!(AuditSink::size(&audit).await.unwrap(), 2_523);
        let c = AuditService::checkpoint(&audit).await.unwrap();
        assert_eq!(c.size, 2_523);
        drop(audit);
        let file = AuditFile::open(dir.path()).unwrap();
        assert_eq!(clearway_core::audit::verify_log(&file, &c_key(&seed), &[]).unwrap().size, 2_523);
    }

    /// A data directory whose database was replaced (restored from a copy)
    /// while audit.db was kept: its groups, numbered from 1 again, are
    /// moved, not taken as moved already and deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_of_a_replaced_data_database_are_moved_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (state, db, _, signer) = staging_in(dir.path());
        let log = SqliteAuditLog::open(dir.path()).unwrap();
        // audit.db says 1,000 groups were moved from the data's database.
        log.append_moved_groups(Vec::new(), 1_000).await.unwrap();
        let audit = AuditService::new(log, signer).with_staging(state.clone(), &db, dir.path());
        let events: Vec<AuditEvent> = (0..5).map(event).collect();
        state.write(events.iter().map(staged_write).collect()).await.unwrap();
        assert_eq!(audit.move_staged().await.unwrap(), 5);
        assert_eq!(AuditSink::size(&audit).await.unwrap(), 5);
        assert_eq!(staged_count(&state, &db).await, 0);
    }

    /// An intake whose write fails after staging its event (here: the job
    /// errs once its writes are applied) is rolled back with that event;
    /// the others of its group commit keep theirs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_stages_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (state, db, _, signer) = staging_in(dir.path());
        let audit = AuditService::new(SqliteAuditLog::open(dir.path()).unwrap(), signer).with_staging(
            state.clone(),
            &db,
            dir.path(),
        );
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..200u64 {
            let db = db.clone();
            writes.spawn(async move {
                let e = event(n);
                let ops = vec![staged_write(&e)];
                let written = db
                    .write(move |conn| {
                        crate::state::apply(conn, &ops)?;
                        if n % 2 == 1 {
                            Err(PortError::new(ErrorKind::Internal, "fails after staging"))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                (e.id, written.is_ok())
            });
        }
        let mut kept = Vec::new();
        while let Some(done) = writes.join_next().await {
            let (id, ok) = done.unwrap();
            if ok {
                kept.push(id);
            }
        }
        assert_eq!(kept.len(), 100);
        assert_eq!(audit.move_staged().await.unwrap(), 100);
        let page = audit.search(&AuditQuery::default(), 1_000).await.unwrap();
        let mut moved: Vec<String> = page.events.iter().map(|(_, e)| e.id.clone()).collect();
        moved.sort();
        kept.sort();
        assert_eq!(moved, kept, "exactly the events of the writes that succeeded");
    }

    /// Regression: a move dropped by its caller (a request that timed out)
    /// went on to append its batch after the next mover had read the batch
    /// as not yet moved: events appended twice. Moves now run in a task of
    /// their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_move_its_caller_drops_appends_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (state, db, _, signer) = staging_in(dir.path());
        let audit = AuditService::new(SqliteAuditLog::open(dir.path()).unwrap(), signer).with_staging(
            state.clone(),
            &db,
            dir.path(),
        );
        for _ in 0..30 {
            let events: Vec<AuditEvent> = (0..100).map(event).collect();
            state.write(events.iter().map(staged_write).collect()).await.unwrap();
        }
        for n in 0..200u64 {
            let _ = tokio::time::timeout(std::time::Duration::from_micros(n % 7 * 50), audit.move_staged()).await;
        }
        audit.move_staged().await.unwrap();
        let page = audit.search(&AuditQuery::default(), 10_000).await.unwrap();
        let mut ids: Vec<String> = page.events.iter().map(|(_, e)| e.id.clone()).collect();
        assert_eq!(ids.len(), 3_000);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3_000, "each event once");
    }

    /// Regression: the batch writer's guard, dropped after the writer had
    /// marked itself stopped, failed appends made in between ("audit writer
    /// stopped") though a new writer had taken them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_racing_the_writers_end_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open(dir.path()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..32u64 {
            let log = log.clone();
            tasks.spawn(async move {
                for n in 0..60u64 {
                    log.append(event(w * 1_000 + n).to_leaf()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(log.size().await.unwrap(), 32 * 60);
    }

    fn c_key(seed: &[u8; 32]) -> clearway_core::audit::VerifierKey {
        LogSigner::from_seed("test.example/audit", seed).unwrap().verifier()
    }
}
