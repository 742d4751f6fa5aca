//! Where imported code-set releases are kept, on any backend: the release
//! (its compact form, no descriptions) as a write-once blob named by its
//! SHA-256, and one state item per release (`code_sets` table, partition
//! `releases`, sort key `<system>/<effective date>`) that points at it.
//!
//! An import writes the blob first and the item last, so a release exists
//! only once all of it is durable; importing the same file again finds the
//! same item and changes nothing. A new file for the same system and
//! effective date (a corrected release) replaces the item. Readers list the
//! items, compare their digests with what they hold, and load what changed.

use crate::ids::BlobKey;
use crate::ports::{BlobStore, Condition, Key, StateStore, Table, WriteOp};
use crate::{ErrorKind, PortError, PortResult};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const PARTITION: &str = "releases";

/// The largest stored release read back (a full ICD-10-CM year is about
/// 1.3 MB in the compact form).
pub const MAX_RELEASE_BYTES: u64 = 64 * 1024 * 1024;

/// What is known of a stored release without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// `icd10cm`, `icd10pcs`, `hcpcs`, `pos`.
    pub system: String,
    /// First date of service it applies to (`YYYY-MM-DD`).
    pub effective: String,
    /// The file it was read from.
    pub label: String,
    pub codes: usize,
    /// SHA-256 of the stored form.
    pub sha256: String,
    pub blob: String,
    /// When it was imported (RFC 3339).
    pub imported_at: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// A new release (or a new version of one) is stored.
    New,
    /// The same release was already stored: nothing changed.
    Unchanged,
}

/// Stored code-set releases.
#[derive(Clone)]
pub struct CodeSetStore {
    blobs: Arc<dyn BlobStore>,
    state: Arc<dyn StateStore>,
}

impl std::fmt::Debug for CodeSetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeSetStore").finish_non_exhaustive()
    }
}

fn key(system: &str, effective: &str) -> Key {
    Key::new(Table::CodeSets, PARTITION, format!("{system}/{effective}"))
}

impl CodeSetStore {
    pub fn new(blobs: Arc<dyn BlobStore>, state: Arc<dyn StateStore>) -> Self {
        CodeSetStore { blobs, state }
    }

    /// Stores one release (`stored` is its compact form); idempotent.
    pub async fn import(
        &self,
        system: &str,
        effective: &str,
        label: &str,
        codes: usize,
        stored: Bytes,
        imported_at: &str,
    ) -> PortResult<Imported> {
        let sha256 = crate::crypto::sha256_hex(&stored);
        let item_key = key(system, effective);
        let existing = self.state.get(&item_key).await?;
        let previous: Option<ReleaseInfo> = existing.as_ref().and_then(|i| serde_json::from_slice(&i.value).ok());
        if previous.as_ref().is_some_and(|p| p.sha256 == sha256) {
            return Ok(Imported::Unchanged);
        }
        let blob = BlobKey::parse(&format!("codesets/{system}/{sha256}"))
            .ok_or_else(|| PortError::new(ErrorKind::InvalidInput, "code system name is not a safe key"))?;
        match self.blobs.put(&blob, stored).await {
            Ok(()) => {}
            // The same content stored by an earlier import that did not
            // finish (or another process): it is complete, keep going.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let info = ReleaseInfo {
            system: system.to_string(),
            effective: effective.to_string(),
            label: label.to_string(),
            codes,
            sha256,
            blob: blob.to_string(),
            imported_at: imported_at.to_string(),
        };
        let value = serde_json::to_vec(&info).map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode", e))?;
        let condition = match &existing {
            Some(i) => Condition::Version(i.version),
            None => Condition::NotExists,
        };
        self.state
            .write(vec![WriteOp::Put {
                key: item_key,
                value: Bytes::from(value),
                expires_at: None,
                condition,
                owner: None,
            }])
            .await?;
        Ok(Imported::New)
    }

    /// Every stored release, ordered by system and effective date.
    pub async fn list(&self) -> PortResult<Vec<ReleaseInfo>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::CodeSets, PARTITION, after.as_deref(), 100).await?;
            if page.is_empty() {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
            for (_, item) in page {
                let info: ReleaseInfo = serde_json::from_slice(&item.value)
                    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode code-set release", e))?;
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The stored form of a release.
    pub async fn read(&self, info: &ReleaseInfo) -> PortResult<Bytes> {
        let blob = BlobKey::parse(&info.blob)
            .ok_or_else(|| PortError::new(ErrorKind::Internal, "stored code-set release has a bad blob key"))?;
        let bytes = self.blobs.get(&blob, MAX_RELEASE_BYTES).await?;
        if crate::crypto::sha256_hex(&bytes) != info.sha256 {
            return Err(PortError::new(ErrorKind::Internal, "stored code-set release does not match its digest"));
        }
        Ok(bytes)
    }
}
