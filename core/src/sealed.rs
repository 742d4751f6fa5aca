//! Encryption at rest for the state store: every value is sealed
//! (AES-256-GCM) before it reaches a backend and opened after it comes
//! back, with the item's table, partition and sort key as associated data
//! (a value cannot be moved to another key unnoticed).
//!
//! Transaction records, acknowledgements (a 277CA names the patient), claim
//! summaries, coverage and payments all carry PHI; sealing at this one
//! boundary covers them on every backend, and a backend never sees
//! plaintext. Keys cannot be sealed (they are looked up), so a key that
//! would hold an identifier (a patient control number, a member id) holds
//! its [`Sealer::index_token`] instead: a keyed hash, stable for lookups,
//! meaningless without the master key.
//!
//! Both keys are derived from the master key (HMAC-SHA256 with distinct
//! labels), so there is nothing more to store or rotate separately.

use crate::crypto::Key;
use crate::error::{ErrorKind, PortError, PortResult};
use crate::ports::{Commit, IntakeJournal, Item, Key as ItemKey, Ports, StateStore, Table, WriteOp};
use async_trait::async_trait;
use aws_lc_rs::hmac;
use bytes::Bytes;
use std::sync::Arc;

/// Seals values and computes index tokens.
#[derive(Clone)]
pub struct Sealer {
    value_key: Key,
    index_key: hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

pub(crate) fn derive(master: &Key, label: &str) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, master.expose_bytes());
    let tag = hmac::sign(&k, label.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn aad(key: &ItemKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.pk.len() + key.sk.len() + 24);
    v.extend_from_slice(key.table.name().as_bytes());
    v.push(0);
    v.extend_from_slice(key.pk.as_bytes());
    v.push(0);
    v.extend_from_slice(key.sk.as_bytes());
    v
}

impl Sealer {
    pub fn new(master: &Key) -> Self {
        Sealer {
            value_key: Key::from_bytes(derive(master, "clearway/state-values/v1")),
            index_key: hmac::Key::new(hmac::HMAC_SHA256, &derive(master, "clearway/state-index/v1")),
        }
    }

    /// A stable, opaque stand-in for an identifier used in a key (32 hex
    /// digits of HMAC-SHA256).
    pub fn index_token(&self, identifier: &str) -> String {
        let tag = hmac::sign(&self.index_key, identifier.as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }

    fn seal(&self, key: &ItemKey, value: &[u8]) -> PortResult<Bytes> {
        self.value_key.seal(value, &aad(key)).map(Bytes::from)
    }

    fn open(&self, key: &ItemKey, mut item: Item) -> PortResult<Item> {
        let plain = self
            .value_key
            .open(&item.value, &aad(key))
            .map_err(|_| PortError::new(ErrorKind::Internal, "open sealed state value (wrong master key?)"))?;
        item.value = Bytes::from(plain);
        Ok(item)
    }

    fn seal_ops(&self, ops: Vec<WriteOp>) -> PortResult<Vec<WriteOp>> {
        ops.into_iter()
            .map(|op| match op {
                WriteOp::Put { key, value, expires_at, condition } => {
                    let value = self.seal(&key, &value)?;
                    Ok(WriteOp::Put { key, value, expires_at, condition })
                }
                other => Ok(other),
            })
            .collect()
    }

    /// The same ports with the state store and the intake journal sealing
    /// values.
    pub fn seal_ports(&self, ports: Ports) -> Ports {
        Ports {
            state: Arc::new(SealedState { inner: ports.state, sealer: self.clone() }),
            journal: Arc::new(SealedJournal { inner: ports.journal, sealer: self.clone() }),
            ..ports
        }
    }
}

/// A [`StateStore`] that seals values on the way in and opens them on the
/// way out.
pub struct SealedState {
    inner: Arc<dyn StateStore>,
    sealer: Sealer,
}

impl std::fmt::Debug for SealedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedState")
    }
}

#[async_trait]
impl StateStore for SealedState {
    async fn get(&self, key: &ItemKey) -> PortResult<Option<Item>> {
        match self.inner.get(key).await? {
            Some(item) => self.sealer.open(key, item).map(Some),
            None => Ok(None),
        }
    }

    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        self.inner.write(self.sealer.seal_ops(ops)?).await
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<(String, Item)>> {
        let page = self.inner.query(table, pk, after, limit).await?;
        page.into_iter()
            .map(|(sk, item)| {
                let key = ItemKey::new(table, pk, sk.clone());
                self.sealer.open(&key, item).map(|i| (sk, i))
            })
            .collect()
    }
}

/// An [`IntakeJournal`] whose state writes are sealed.
pub struct SealedJournal {
    inner: Arc<dyn IntakeJournal>,
    sealer: Sealer,
}

impl std::fmt::Debug for SealedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedJournal")
    }
}

#[async_trait]
impl IntakeJournal for SealedJournal {
    async fn commit(&self, mut commit: Commit) -> PortResult<()> {
        commit.writes = self.sealer.seal_ops(std::mem::take(&mut commit.writes))?;
        self.inner.commit(commit).await
    }
}
