//! [`IntakeJournal`] on the embedded database: the payload, the state
//! writes and the queue pointer of an accepted transaction in one database
//! transaction, so a transaction is either stored, recorded and queued, or
//! not present at all.

use crate::blob::SqliteBlobStore;
use crate::db::Db;
use crate::queue::SqliteWorkQueue;
use async_trait::async_trait;
use clearway_core::PortResult;
use clearway_core::ports::{Commit, IntakeJournal, check_send_batch, check_write_batch};

/// The atomic intake commit.
#[derive(Debug, Clone)]
pub struct SqliteIntakeJournal {
    db: Db,
    queue: SqliteWorkQueue,
    blobs: SqliteBlobStore,
}

impl SqliteIntakeJournal {
    pub fn new(db: Db, queue: SqliteWorkQueue, blobs: SqliteBlobStore) -> Self {
        SqliteIntakeJournal { db, queue, blobs }
    }
}

#[async_trait]
impl IntakeJournal for SqliteIntakeJournal {
    async fn commit(&self, commit: Commit) -> PortResult<()> {
        check_write_batch(&commit.writes)?;
        check_send_batch(std::slice::from_ref(&commit.pointer))?;
        // A large payload's file is written (durably) before the
        // transaction that names it; if the transaction does not commit, the
        // file is removed (or, after a crash, swept).
        let file = match &commit.blob {
            Some((_, bytes)) => self.blobs.prepare(bytes).await?,
            None => None,
        };
        let name = file.clone();
        let result = self
            .db
            .write(move |conn| {
                crate::state::apply(conn, &commit.writes)?;
                if let Some((key, bytes)) = &commit.blob {
                    crate::blob::insert(conn, key.as_str(), bytes, name.as_deref())?;
                }
                crate::queue::insert(conn, std::slice::from_ref(&commit.pointer))
            })
            .await;
        match result {
            Ok(()) => {
                self.queue.wake();
                Ok(())
            }
            Err(e) => {
                if let Some(f) = file {
                    self.blobs.discard(&f);
                }
                Err(e)
            }
        }
    }
}
