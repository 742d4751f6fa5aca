//! [`IntakeJournal`] on the embedded database: the state writes and the
//! queue pointer of an accepted transaction in one database transaction,
//! so a transaction is either recorded and queued or not present at all.

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
}

impl SqliteIntakeJournal {
    pub fn new(db: Db, queue: SqliteWorkQueue) -> Self {
        SqliteIntakeJournal { db, queue }
    }
}

#[async_trait]
impl IntakeJournal for SqliteIntakeJournal {
    async fn commit(&self, commit: Commit) -> PortResult<()> {
        check_write_batch(&commit.writes)?;
        check_send_batch(std::slice::from_ref(&commit.pointer))?;
        self.db
            .write(move |conn| {
                crate::state::apply(conn, &commit.writes)?;
                crate::queue::insert(conn, std::slice::from_ref(&commit.pointer))
            })
            .await?;
        self.queue.wake();
        Ok(())
    }
}
