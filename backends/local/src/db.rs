//! The embedded database: SQLite in WAL mode with `synchronous=FULL`, one
//! writer thread doing **group commit**, and a pool of read connections.
//!
//! Every write is a job sent to the writer. The writer takes all jobs that
//! are waiting (up to a batch bound), runs each inside its own savepoint in
//! one transaction, commits once — one fsync of the WAL for the whole batch
//! — and only then answers each job. A job whose own work fails (a failed
//! condition) is rolled back to its savepoint without affecting the others.
//! So under load, durability costs one fsync per batch, not per request, and
//! nothing is acknowledged before it is on disk.

use clearway_core::{ErrorKind, PortError, PortResult};
use rusqlite::{Connection, OpenFlags, params};
use std::any::Any;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the writer before senders wait (backpressure).
const QUEUE_CAPACITY: usize = 8192;
/// Most jobs in one transaction.
const MAX_BATCH: usize = 2048;
/// Read connections.
const READERS: usize = 4;

type Output = Box<dyn Any + Send>;
type Work = Box<dyn FnOnce(&Connection) -> PortResult<Output> + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<PortResult<Output>>,
}

/// Values staged by the jobs of one group commit ([`stage`]), stored by
/// the writer as one row of `staged_groups` in that commit: the audit
/// events of a group of intakes cost one row, not one row each, and reach
/// the audit log's mover in memory once durable (or from the table, after
/// a restart or in another process).
#[derive(Debug, Clone)]
pub struct StagedGroup {
    /// The row's id: groups are numbered in commit order (one writer at a
    /// time holds the database's write lock).
    pub id: i64,
    /// The staged values, in the order they were staged.
    pub values: Vec<Vec<u8>>,
}

/// Staged groups handed over in memory before the mover reads the table.
const STAGED_CHANNEL_GROUPS: usize = 4096;

type StagedTx = Arc<Mutex<Option<mpsc::Sender<StagedGroup>>>>;

thread_local! {
    /// What the writer's current group has staged so far.
    static GROUP: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Stages `value` in the group commit of the job running now: stored with
/// the group's other staged values in the same transaction, dropped if the
/// job fails. Only inside a job on the writer thread ([`Db::write`]).
/// Values are lines: no `\n` in them.
pub(crate) fn stage(value: Vec<u8>) {
    debug_assert_eq!(std::thread::current().name(), Some(WRITER_THREAD), "staged outside a database job");
    GROUP.with(|g| g.borrow_mut().push(value));
}

/// The writer thread's name.
const WRITER_THREAD: &str = "clearway-db-writer";

fn group_len() -> usize {
    GROUP.with(|g| g.borrow().len())
}

fn group_truncate(len: usize) {
    GROUP.with(|g| g.borrow_mut().truncate(len));
}

fn group_take() -> Vec<Vec<u8>> {
    GROUP.with(|g| std::mem::take(&mut *g.borrow_mut()))
}

/// The values of a stored group (`staged_groups.values`).
pub fn split_group(joined: &[u8]) -> Vec<Vec<u8>> {
    joined.split(|&b| b == b'\n').filter(|v| !v.is_empty()).map(<[u8]>::to_vec).collect()
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub commits: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    schema: &'static str,
    pub stats: Arc<Stats>,
    /// Where the writer hands staged groups once durable, if anyone listens.
    staged: StagedTx,
    /// The checkpointer thread stops when the last clone is dropped.
    _alive: Arc<()>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish_non_exhaustive()
    }
}

fn sqlite(op: &'static str) -> impl Fn(rusqlite::Error) -> PortError {
    move |e| {
        let kind = match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                ErrorKind::Unavailable
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        PortError::with_cause(kind, op, e)
    }
}

pub(crate) fn db_err(op: &'static str) -> impl Fn(rusqlite::Error) -> PortError {
    sqlite(op)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (visible_at, id);
CREATE TABLE IF NOT EXISTS blobs (
    key TEXT PRIMARY KEY,
    data BLOB,
    file TEXT,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    attributes TEXT NOT NULL,
    body BLOB NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS staged_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staged BLOB NOT NULL
);
";

fn open_conn(path: &Path, write: bool, schema: &str) -> PortResult<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite("open database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite("open database"))?;
    if write {
        // WAL: readers never block the writer; FULL: every commit is
        // fsync'd before it returns.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite("set journal mode"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite("set synchronous"))?;
        // Checkpoints run on their own thread (see `checkpointer`); the
        // writer only checkpoints itself if the WAL grows far beyond that.
        conn.pragma_update(None, "wal_autocheckpoint", 65_536).map_err(sqlite("set checkpoint"))?;
        // Savepoints' statement journals stay in memory, not temp files.
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(sqlite("set temp store"))?;
        // Deleted and overwritten content is zeroed where the page is being
        // written anyway (no extra I/O): a destroyed key leaves no copy in
        // the database file once its pages are checkpointed.
        conn.pragma_update(None, "secure_delete", "FAST").map_err(sqlite("set secure delete"))?;
        conn.execute_batch(schema).map_err(sqlite("create schema"))?;
    }
    // The writer keeps a large page cache. A reader's cache is discarded
    // whenever the database has changed since its last read — under load,
    // on nearly every read — and discarding costs in proportion to its
    // size, so readers keep a small one (their pages come back from the
    // OS cache).
    let cache_kib = if write { -16_000 } else { -1_024 };
    conn.pragma_update(None, "cache_size", cache_kib).map_err(sqlite("set cache"))?;
    Ok(conn)
}

impl Db {
    /// Opens (creating if needed) `dir/clearway.db`.
    pub fn open(dir: &Path) -> PortResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "create data directory", e))?;
        Self::open_file(&dir.join("clearway.db"), SCHEMA)
    }

    /// Opens (creating if needed) the database at `path` with `schema`
    /// (idempotent statements), with the same writer, readers and
    /// checkpointer: the audit log keeps a database of its own this way.
    pub fn open_file(path: &Path, schema: &'static str) -> PortResult<Self> {
        let path = path.to_path_buf();
        let writer = open_conn(&path, true, schema)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_conn(&path, false, schema)?);
        }
        let (tx, rx) = mpsc::channel::<Job>(QUEUE_CAPACITY);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let staged: StagedTx = Arc::new(Mutex::new(None));
        let to_mover = staged.clone();
        std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer_loop(writer, rx, s, to_mover))
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "start database writer", e))?;
        let alive = Arc::new(());
        let checkpoint_conn = open_conn(&path, true, schema)?;
        let watch = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("clearway-db-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_conn, watch))
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "start database checkpointer", e))?;
        Ok(Db { tx, readers: Arc::new(Mutex::new(readers)), path, schema, stats, staged, _alive: alive })
    }

    /// Staged groups as the writer commits them, from now on (replacing
    /// an earlier listener). Handed over at most [`STAGED_CHANNEL_GROUPS`]
    /// ahead of the reader; beyond that a group is only in the table.
    pub fn staged_groups(&self) -> mpsc::Receiver<StagedGroup> {
        let (tx, rx) = mpsc::channel(STAGED_CHANNEL_GROUPS);
        if let Ok(mut slot) = self.staged.lock() {
            *slot = Some(tx);
        }
        rx
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rebuilds the database file (`VACUUM`: free pages, which may still
    /// hold deleted content such as a destroyed key, are not copied), then
    /// copies the write-ahead log into it and truncates the log. Returns
    /// whether the log could be truncated: not while another process keeps
    /// reading (a busy service); the service truncates it when it stops.
    /// Takes as long as copying the database.
    pub async fn purge_deleted(&self) -> PortResult<bool> {
        let conn = open_conn(&self.path, true, self.schema)?;
        tokio::task::spawn_blocking(move || {
            conn.execute_batch("VACUUM").map_err(sqlite("vacuum"))?;
            // A reader's snapshot or another checkpoint makes it busy for a
            // moment: try for a few seconds.
            for _ in 0..25 {
                let (busy, _, _): (i64, i64, i64) = conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(sqlite("checkpoint"))?;
                if busy == 0 {
                    return Ok(true);
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(false)
        })
        .await
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "checkpoint", e))?
    }

    /// Runs `work` in the writer's next group commit; returns its result once
    /// the transaction is durable. An error from `work` rolls back only its
    /// own changes.
    pub async fn write<T, F>(&self, work: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> PortResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job { work: Box::new(move |c| work(c).map(|v| Box::new(v) as Output)), reply };
        self.tx.send(job).await.map_err(|_| PortError::new(ErrorKind::Unavailable, "database writer stopped"))?;
        let out = rx.await.map_err(|_| PortError::new(ErrorKind::Unavailable, "database writer stopped"))??;
        out.downcast::<T>().map(|b| *b).map_err(|_| PortError::new(ErrorKind::Internal, "database writer result"))
    }

    /// Runs `work` on a read connection from the pool.
    ///
    /// Reads run inline on the calling thread: in WAL mode a reader never
    /// waits for the writer, and a point read from the page cache takes
    /// microseconds — far less than a hop to a blocking thread and back,
    /// which dominated the intake's profile.
    pub async fn read<T, F>(&self, work: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> PortResult<T> + Send + 'static,
    {
        let conn = self.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, false, self.schema)?,
        };
        let out = work(&conn);
        if let Ok(mut r) = self.readers.lock()
            && r.len() < READERS * 4
        {
            r.push(conn);
        }
        out
    }
}

/// Copies the WAL back into the database file every
/// [`CHECKPOINT_INTERVAL`] (PASSIVE: never blocks the writer or readers),
/// so the writer's commits do not pay for it.
fn checkpointer(conn: Connection, alive: std::sync::Weak<()>) {
    loop {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if alive.upgrade().is_none() {
            // Last handle gone: a final, truncating checkpoint, then stop.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "wal checkpoint failed");
        }
    }
}

/// How often the WAL is checkpointed.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, stats: Arc<Stats>, staged: StagedTx) {
    use std::sync::atomic::Ordering;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut results: Vec<(oneshot::Sender<PortResult<Output>>, PortResult<Output>)> =
            Vec::with_capacity(batch.len());
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite("begin"));
        if let Err(e) = began {
            for j in batch.drain(..) {
                let _ = j.reply.send(Err(PortError::new(e.kind(), "begin")));
            }
            continue;
        }
        group_truncate(0);
        for job in batch.drain(..) {
            let mark = group_len();
            let out = match conn.prepare_cached("SAVEPOINT job").and_then(|mut s| s.execute([])) {
                Ok(_) => {
                    // A panic in a job must not take the writer (and every
                    // later write) down with it.
                    let work = job.work;
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&conn)))
                        .unwrap_or_else(|_| Err(PortError::new(ErrorKind::Internal, "database job panicked")));
                    let end = if out.is_ok() {
                        conn.prepare_cached("RELEASE job").and_then(|mut s| s.execute([])).map(|_| ())
                    } else {
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    };
                    match end {
                        Ok(()) => out,
                        Err(e) => Err(sqlite("end savepoint")(e)),
                    }
                }
                Err(e) => Err(sqlite("savepoint")(e)),
            };
            if out.is_err() {
                // Rolled back: what it staged goes too.
                group_truncate(mark);
            }
            results.push((job.reply, out));
        }
        // The group's staged values, one row in the same transaction.
        let values = group_take();
        let group = if values.is_empty() {
            Ok(None)
        } else {
            conn.prepare_cached("INSERT INTO staged_groups (staged) VALUES (?1)")
                .and_then(|mut s| s.execute(params![values.join(&b'\n')]))
                .map(|_| Some(StagedGroup { id: conn.last_insert_rowid(), values }))
        };
        let committed = match group {
            Ok(group) => conn.execute_batch("COMMIT").map(|()| group),
            Err(e) => Err(e),
        };
        match committed {
            Ok(group) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.jobs.fetch_add(results.len() as u64, Ordering::Relaxed);
                // Handed over before the jobs are answered, so a mover that
                // is asked to move after an answer has it.
                if let Some(group) = group
                    && let Ok(slot) = staged.lock()
                    && let Some(tx) = slot.as_ref()
                {
                    // Full or gone: the mover reads the table instead.
                    let _ = tx.try_send(group);
                }
                for (reply, out) in results {
                    let _ = reply.send(out);
                }
            }
            Err(e) => {
                let err = sqlite("commit")(e);
                tracing::error!(error = %clearway_core::error::chain(&err), "database commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                for (reply, _) in results {
                    let _ = reply.send(Err(PortError::new(err.kind(), "commit")));
                }
            }
        }
    }
}

pub use clearway_core::records::now_ms;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
