//! Clearway's embedded backend: everything under one data directory on one
//! machine, no account, no network.
//!
//! The four ports and the intake journal share one SQLite database
//! (`<data-dir>/clearway.db`, WAL, `synchronous=FULL`) with a single writer
//! thread doing group commit ([`db`]); payloads over 256 KiB go to files
//! under `<data-dir>/blobs/`. SQLite was chosen over redb because it is the
//! most proven embedded store (its WAL and crash recovery are tested far
//! beyond anything younger), the bundled build needs only a C compiler,
//! and SQL makes the queue's visibility-timeout semantics a few statements.
//!
//! [`mem`] holds in-memory fakes of the same ports for unit tests; they
//! pass the same conformance suites.

pub mod audit;
pub mod blob;
pub mod db;
pub mod journal;
pub mod mem;
pub mod notify;
pub mod queue;
pub mod state;

pub use audit::{AuditFile, AuditService, SqliteAuditLog};
pub use blob::SqliteBlobStore;
pub use db::Db;
pub use journal::SqliteIntakeJournal;
pub use mem::{Mem, MemBlobStore, MemIntakeJournal, MemNotifier, MemStateStore, MemWorkQueue};
pub use notify::SqliteNotifier;
pub use queue::SqliteWorkQueue;
pub use state::SqliteStateStore;

use clearway_core::PortResult;
use clearway_core::ports::Ports;
use std::path::Path;
use std::sync::Arc;

/// Every port of the embedded backend, over one data directory.
#[derive(Debug, Clone)]
pub struct Local {
    pub db: Db,
    pub blobs: SqliteBlobStore,
    pub queue: SqliteWorkQueue,
    pub notifier: SqliteNotifier,
    pub state: SqliteStateStore,
    pub journal: SqliteIntakeJournal,
}

impl Local {
    /// Opens (creating if needed) the backend in `data_dir`.
    pub fn open(data_dir: &Path) -> PortResult<Self> {
        let db = Db::open(data_dir)?;
        let queue = SqliteWorkQueue::new(db.clone());
        let blobs = SqliteBlobStore::new(db.clone(), data_dir)?;
        Ok(Local {
            notifier: SqliteNotifier::new(db.clone()),
            state: SqliteStateStore::new(db.clone()),
            journal: SqliteIntakeJournal::new(db.clone(), queue.clone(), blobs.clone()),
            blobs,
            queue,
            db,
        })
    }

    /// The ports as trait objects.
    pub fn ports(&self) -> Ports {
        Ports {
            blobs: Arc::new(self.blobs.clone()),
            queue: Arc::new(self.queue.clone()),
            notifier: Arc::new(self.notifier.clone()),
            state: Arc::new(self.state.clone()),
            journal: Arc::new(self.journal.clone()),
        }
    }
}
