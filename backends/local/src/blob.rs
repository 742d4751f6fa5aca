//! [`BlobStore`] on the embedded database plus local files.
//!
//! Objects up to [`INLINE_MAX_BYTES`] live in the database; larger ones in
//! files under `<data-dir>/blobs/`. A large object's file is written and
//! fsync'd (with its directory) before the database row that names it is
//! committed, and the row is what makes the object exist: a crash between
//! the two leaves an unreferenced file, which [`SqliteBlobStore::sweep`]
//! removes, never a row without its bytes.

use crate::db::{Db, db_err};
use async_trait::async_trait;
use bytes::Bytes;
use clearway_core::ports::{BlobStore, MAX_BLOB_BYTES};
use clearway_core::{BlobKey, ErrorKind, PortError, PortResult};
use rusqlite::{OptionalExtension, params};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Objects up to this size are stored inline in the database.
pub const INLINE_MAX_BYTES: usize = 256 * 1024;

/// Blob storage.
#[derive(Debug, Clone)]
pub struct SqliteBlobStore {
    db: Db,
    dir: PathBuf,
}

fn io(op: &'static str) -> impl Fn(std::io::Error) -> PortError {
    move |e| PortError::with_cause(ErrorKind::Unavailable, op, e)
}

impl SqliteBlobStore {
    pub fn new(db: Db, data_dir: &std::path::Path) -> PortResult<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(&dir).map_err(io("create blob directory"))?;
        Ok(SqliteBlobStore { db, dir })
    }

    /// Removes blob files no row refers to that are older than `min_age`
    /// (left by a crash between writing a file and committing its row).
    /// Returns how many were removed.
    pub async fn sweep(&self, min_age: Duration) -> PortResult<usize> {
        let referenced: std::collections::HashSet<String> = self
            .db
            .read(|conn| {
                let mut s =
                    conn.prepare("SELECT file FROM blobs WHERE file IS NOT NULL").map_err(db_err("blob sweep"))?;
                let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(db_err("blob sweep"))?;
                rows.collect::<Result<_, _>>().map_err(db_err("blob sweep"))
            })
            .await?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for entry in std::fs::read_dir(&dir).map_err(io("blob sweep"))? {
                let entry = entry.map_err(io("blob sweep"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|a| a >= min_age);
                if old && !referenced.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "blob sweep", e))?
    }
}

impl SqliteBlobStore {
    /// Stores a large payload's bytes in a new file (durably) and returns
    /// its name; small payloads return `None` and go inline.
    pub(crate) async fn prepare(&self, bytes: &Bytes) -> PortResult<Option<String>> {
        if bytes.len() <= INLINE_MAX_BYTES {
            return Ok(None);
        }
        let name = uuid::Uuid::now_v7().simple().to_string();
        let (dir, file, data) = (self.dir.clone(), name.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || write_durable(&dir, &file, &data))
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "blob put", e))?
            .map_err(io("blob put: write file"))?;
        Ok(Some(name))
    }

    /// Removes a prepared file whose row was never committed.
    pub(crate) fn discard(&self, file: &str) {
        let _ = std::fs::remove_file(self.dir.join(file));
    }
}

/// Inserts the blob row inside the caller's transaction: the bytes inline,
/// or the name of a prepared file.
pub(crate) fn insert(conn: &rusqlite::Connection, key: &str, bytes: &Bytes, file: Option<&str>) -> PortResult<()> {
    let size = bytes.len() as i64;
    let n = match file {
        None => conn
            .prepare_cached("INSERT INTO blobs (key, data, size) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING")
            .and_then(|mut s| s.execute(params![key, bytes.as_ref(), size])),
        Some(f) => conn
            .prepare_cached("INSERT INTO blobs (key, file, size) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING")
            .and_then(|mut s| s.execute(params![key, f, size])),
    }
    .map_err(db_err("blob put"))?;
    if n == 0 { Err(PortError::already_exists("blob put")) } else { Ok(()) }
}

/// Writes a file and makes it and its directory entry durable.
fn write_durable(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for SqliteBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        if bytes.len() as u64 > MAX_BLOB_BYTES {
            return Err(PortError::invalid_input("blob put: object too large"));
        }
        let key = key.as_str().to_string();
        let size = bytes.len() as i64;
        if bytes.len() <= INLINE_MAX_BYTES {
            return self
                .db
                .write(move |conn| {
                    let n = conn
                        .prepare_cached(
                            "INSERT INTO blobs (key, data, size) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING",
                        )
                        .and_then(|mut s| s.execute(params![key, bytes.as_ref(), size]))
                        .map_err(db_err("blob put"))?;
                    if n == 0 { Err(PortError::already_exists("blob put")) } else { Ok(()) }
                })
                .await;
        }
        // Large: file first (durable), then the row that makes it exist.
        let name = uuid::Uuid::now_v7().simple().to_string();
        let dir = self.dir.clone();
        let file = name.clone();
        tokio::task::spawn_blocking(move || write_durable(&dir, &file, &bytes))
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Internal, "blob put", e))?
            .map_err(io("blob put: write file"))?;
        let file = name.clone();
        let result = self
            .db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "INSERT INTO blobs (key, file, size) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![key, file, size]))
                    .map_err(db_err("blob put"))?;
                if n == 0 { Err(PortError::already_exists("blob put")) } else { Ok(()) }
            })
            .await;
        if result.is_err() {
            let _ = std::fs::remove_file(self.dir.join(&name));
        }
        result
    }

    async fn get(&self, key: &BlobKey, max_bytes: u64) -> PortResult<Bytes> {
        let k = key.as_str().to_string();
        let row: Option<(Option<Vec<u8>>, Option<String>, i64)> = self
            .db
            .read(move |conn| {
                conn.prepare_cached("SELECT data, file, size FROM blobs WHERE key = ?1")
                    .and_then(|mut s| s.query_row(params![k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                    .map_err(db_err("blob get"))
            })
            .await?;
        let Some((data, file, size)) = row else {
            return Err(PortError::not_found("blob get"));
        };
        if size as u64 > max_bytes {
            return Err(PortError::invalid_input("blob get: object larger than the caller's bound"));
        }
        match (data, file) {
            (Some(d), _) => Ok(Bytes::from(d)),
            (None, Some(f)) => {
                let path = self.dir.join(f);
                let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "blob get", e))?
                    .map_err(io("blob get: read file"))?;
                Ok(Bytes::from(bytes))
            }
            (None, None) => Err(PortError::new(ErrorKind::Internal, "blob get: row without data")),
        }
    }

    async fn delete(&self, key: &BlobKey) -> PortResult<()> {
        let k = key.as_str().to_string();
        let file: Option<String> = self
            .db
            .write(move |conn| {
                let file: Option<Option<String>> = conn
                    .prepare_cached("SELECT file FROM blobs WHERE key = ?1")
                    .and_then(|mut s| s.query_row(params![k], |r| r.get(0)).optional())
                    .map_err(db_err("blob delete"))?;
                conn.prepare_cached("DELETE FROM blobs WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![k]))
                    .map_err(db_err("blob delete"))?;
                Ok(file.flatten())
            })
            .await?;
        if let Some(f) = file {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        Ok(())
    }

    async fn list(&self, prefix: &str, after: Option<&BlobKey>, limit: usize) -> PortResult<Vec<BlobKey>> {
        clearway_core::ports::check_list_limit(limit)?;
        let (prefix, after) = (prefix.to_string(), after.map(|a| a.as_str().to_string()).unwrap_or_default());
        let keys: Vec<String> = self
            .db
            .read(move |conn| {
                // `substr` rather than LIKE: `_` and `%` are key characters.
                let mut s = conn
                    .prepare_cached(
                        "SELECT key FROM blobs WHERE key >= ?1 AND key > ?2 AND substr(key, 1, length(?1)) = ?1 \
                         ORDER BY key LIMIT ?3",
                    )
                    .map_err(db_err("blob list"))?;
                let rows = s
                    .query_map(params![prefix, after, limit as i64], |r| r.get::<_, String>(0))
                    .map_err(db_err("blob list"))?;
                rows.collect::<Result<_, _>>().map_err(db_err("blob list"))
            })
            .await?;
        // Every stored key was a BlobKey; one that is not would end a
        // caller's paging early, so it is an error, not skipped.
        keys.iter()
            .map(|k| BlobKey::parse(k).ok_or_else(|| PortError::new(ErrorKind::Internal, "blob list: stored key")))
            .collect()
    }

    async fn replace(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        if bytes.len() as u64 > MAX_BLOB_BYTES {
            return Err(PortError::invalid_input("blob replace: object too large"));
        }
        // A large object goes to a new file first (durable); the row is
        // then switched to it in one transaction. The old file is left to
        // the sweep (a reader that read the old row may still be opening
        // it). A crash at any point leaves at most an unreferenced file,
        // never a row without its bytes.
        let file = self.prepare(&bytes).await?;
        let (k, new_file) = (key.as_str().to_string(), file.clone());
        let size = bytes.len() as i64;
        let result = self
            .db
            .write(move |conn| {
                let data = if new_file.is_none() { Some(bytes.as_ref()) } else { None };
                let n = conn
                    .prepare_cached("UPDATE blobs SET data = ?2, file = ?3, size = ?4 WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![k, data, new_file, size]))
                    .map_err(db_err("blob replace"))?;
                if n == 0 { Err(PortError::not_found("blob replace")) } else { Ok(()) }
            })
            .await;
        if result.is_err()
            && let Some(f) = &file
        {
            self.discard(f);
        }
        result
    }

    async fn exists(&self, key: &BlobKey) -> PortResult<bool> {
        let k = key.as_str().to_string();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT 1 FROM blobs WHERE key = ?1")
                    .and_then(|mut s| s.query_row(params![k], |_| Ok(())).optional())
                    .map(|r| r.is_some())
                    .map_err(db_err("blob exists"))
            })
            .await
    }
}
