//! Encryption at rest for the state store: every value is sealed
//! (AES-256-GCM) before it reaches a backend and opened after it comes
//! back, with the item's table, partition and sort key as associated data
//! (a value cannot be moved to another key unnoticed).
//!
//! Transaction records, acknowledgements (a 277CA names the patient), claim
//! summaries, coverage, payments and pharmacy transactions all carry PHI;
//! sealing at this one boundary covers them on every backend, and a backend
//! never sees plaintext. Keys cannot be sealed (they are looked up), so a
//! key that would hold an identifier (a patient control number, a member
//! id) holds its [`Sealer::index_token`] instead: a keyed hash, stable for
//! lookups, meaningless without the root key.
//!
//! A value that belongs to a partner is sealed under that partner's keys
//! ([`crate::keys`]), so that shredding them erases it:
//! `CWP ‖ n ‖ partner (n bytes) ‖ envelope (CW2)`. Whose it is: the
//! [`WriteOp::Put`] `owner`, else the partner its partition names in a
//! table partitioned by partner ([`partition_owner`]). Everything else
//! (partner records and key versions, counters, dedupe keys, queues,
//! markers) is sealed with the state key: `CW1 ‖ nonce ‖ ciphertext ‖ tag`.
//! A partner-sealed value whose key version is gone (a shred) reads as
//! absent: it has been erased. One table is stored as written
//! ([`stored_plain`]): audit events staged with an intake, which name ids
//! and tokens only and are kept in clear in the audit log anyway.
//!
//! The state key and the index key are derived from the root key
//! (HMAC-SHA256 with distinct labels), so there is nothing more to store.

use crate::crypto::Key;
use crate::error::{ErrorKind, PortError, PortResult};
use crate::ids::PartnerId;
use crate::keys::{KeyRing, PartnerKeys, object_version};
use crate::ports::{
    Commit, Condition, IntakeJournal, Item, Key as ItemKey, Ports, ScanPage, StateStore, Table, WriteOp,
};
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

pub(crate) fn aad(key: &ItemKey) -> Vec<u8> {
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
        let plain = self.value_key.open(&item.value, &aad(key)).map_err(|_| unreadable())?;
        item.value = Bytes::from(plain);
        Ok(item)
    }
}

/// Tables whose values are stored as written, not sealed: audit events
/// staged with an intake (ids and tokens only, never PHI, and kept in clear
/// in the audit log they move to, whose hash tree protects them), so an
/// accepted submission does not pay for sealing its event. Their values
/// are JSON objects; one sealed before this (starting with the sealed
/// header, never `{`) is still opened.
pub fn stored_plain(table: Table) -> bool {
    matches!(table, Table::AuditStaged)
}

/// The header of a value sealed under its partner's keys.
pub const OWNED_MAGIC: &[u8; 3] = b"CWP";

/// The partner a key's partition names, in the tables partitioned by
/// partner: transaction records and acknowledgement feeds (`<partner>`),
/// dead letters (`<partner>`, not the operators' `*` index) and pharmacy
/// transactions (`tx/<partner>`).
pub fn partition_owner(key: &ItemKey) -> Option<PartnerId> {
    let pk = match key.table {
        Table::Transactions | Table::AckFeed | Table::DeadLetters => key.pk.as_str(),
        Table::Pharmacy => key.pk.strip_prefix("tx/")?,
        _ => return None,
    };
    PartnerId::new(pk).ok()
}

/// The partner a partner-sealed value names and its envelope; `None` for a
/// value sealed with the state key.
pub fn owned_value(value: &[u8]) -> Option<(PartnerId, &[u8])> {
    let rest = value.strip_prefix(OWNED_MAGIC)?;
    let (&n, rest) = rest.split_first()?;
    let (owner, envelope) = rest.split_at_checked(usize::from(n))?;
    Some((PartnerId::new(std::str::from_utf8(owner).ok()?).ok()?, envelope))
}

fn owned(owner: &PartnerId, envelope: &[u8]) -> Bytes {
    let id = owner.as_str().as_bytes();
    let mut out = Vec::with_capacity(OWNED_MAGIC.len() + 1 + id.len() + envelope.len());
    out.extend_from_slice(OWNED_MAGIC);
    out.push(id.len() as u8); // a partner id is at most 64 bytes
    out.extend_from_slice(id);
    out.extend_from_slice(envelope);
    Bytes::from(out)
}

/// Tables whose values may belong to a partner, with where to look for a
/// partner's: its own partition, or (for indexes keyed by something else)
/// a scan of the whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Partition(Table, String),
    Scan(Table),
}

/// Every place a partner's sealed records can be, in the order a census or
/// a re-wrap walks them.
pub fn record_sources(partner: &PartnerId) -> Vec<Source> {
    vec![
        Source::Partition(Table::Transactions, partner.to_string()),
        Source::Partition(Table::AckFeed, partner.to_string()),
        Source::Partition(Table::DeadLetters, partner.to_string()),
        Source::Partition(Table::Pharmacy, format!("tx/{partner}")),
        Source::Scan(Table::Acks),
        Source::Scan(Table::Claims),
        Source::Scan(Table::Payments),
        Source::Scan(Table::Coverage),
        Source::Scan(Table::Pharmacy),
    ]
}

/// A stored record as the backend holds it (value sealed).
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub key: ItemKey,
    pub item: Item,
}

/// How a stored record is sealed, as seen by a census or re-wrap of one
/// partner.
#[derive(Debug)]
pub enum Sealing {
    /// Under the partner's keys: the envelope (its version names the KEK).
    Partner(Vec<u8>),
    /// The partner's, but still under the state key (written before state
    /// records were sealed under partner keys); holds the plaintext.
    StateKey(Vec<u8>),
    /// Not this partner's.
    Other,
}

/// A [`StateStore`] that seals values on the way in and opens them on the
/// way out: a partner's under its keys, the rest under the state key.
pub struct SealedState {
    inner: Arc<dyn StateStore>,
    sealer: Sealer,
    /// Partner keys; `None` for the store the key ring itself reads
    /// (partner records and key versions are under the state key).
    ring: Option<KeyRing>,
}

impl std::fmt::Debug for SealedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedState")
    }
}

/// The ports of a process with everything sealed, the sealed state store
/// itself (for key maintenance) and partner management, sharing one key
/// ring.
#[derive(Debug)]
pub struct SealedStore {
    pub ports: Ports,
    pub records: Arc<SealedState>,
    pub partners: crate::partners::Partners,
}

impl SealedStore {
    /// Seals `raw` with keys derived from `root`; `kms` wraps the key
    /// versions of partners given a KMS key.
    pub fn new(root: &Key, raw: Ports, kms: Option<Arc<dyn crate::keys::KeyService>>) -> Self {
        let sealer = Sealer::new(root);
        let keys_state: Arc<dyn StateStore> =
            Arc::new(SealedState { inner: raw.state.clone(), sealer: sealer.clone(), ring: None });
        let mut ring = KeyRing::new(root.clone(), keys_state);
        if let Some(kms) = kms {
            ring = ring.with_key_service(kms);
        }
        let records =
            Arc::new(SealedState { inner: raw.state.clone(), sealer: sealer.clone(), ring: Some(ring.clone()) });
        let ports = Ports {
            state: records.clone(),
            journal: Arc::new(SealedJournal { inner: raw.journal.clone(), records: records.clone() }),
            ..raw
        };
        let partners = crate::partners::Partners::new(root.clone(), ports.state.clone()).with_key_ring(ring);
        SealedStore { ports, records, partners }
    }
}

fn unreadable() -> PortError {
    PortError::new(ErrorKind::Internal, "open sealed state value (wrong root key, or tampered with)")
}

impl SealedState {
    async fn seal_value(&self, key: &ItemKey, value: &[u8], owner: Option<PartnerId>) -> PortResult<Bytes> {
        if let (Some(ring), Some(owner)) = (&self.ring, owner.or_else(|| partition_owner(key))) {
            match ring.keys(&owner).await {
                Ok(keys) => return Ok(owned(&owner, &keys.seal(owner.as_str(), value, &aad(key))?)),
                // A name that is no partner (none reaches here in service)
                // has no keys: the state key.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.sealer.seal(key, value)
    }

    async fn seal_ops(&self, ops: Vec<WriteOp>) -> PortResult<Vec<WriteOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                WriteOp::Put { key, value, expires_at, condition, owner } if !stored_plain(key.table) => {
                    let value = self.seal_value(&key, &value, owner).await?;
                    WriteOp::Put { key, value, expires_at, condition, owner: None }
                }
                other => other,
            });
        }
        Ok(out)
    }

    /// The plaintext of a stored item; `None` once its partner's keys (or
    /// the version it names) are destroyed: erased.
    async fn open(&self, key: &ItemKey, mut item: Item) -> PortResult<Option<Item>> {
        if stored_plain(key.table) && item.value.first() == Some(&b'{') {
            return Ok(Some(item));
        }
        let Some((owner, envelope)) = owned_value(&item.value) else {
            return self.sealer.open(key, item).map(Some);
        };
        let ring = self.ring.as_ref().ok_or_else(unreadable)?;
        let version = object_version(envelope).ok_or_else(unreadable)?;
        let keys = match ring.keys_for(&owner, Some(version)).await {
            Ok(keys) => keys,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !keys.has(version) {
            return Ok(None);
        }
        let plain = keys.open(owner.as_str(), envelope, &aad(key)).map_err(|_| unreadable())?;
        item.value = Bytes::from(plain);
        Ok(Some(item))
    }

    // ------------------------------------------------- key maintenance --

    /// A page of the records in `source`, as stored, after `after`; the
    /// cursor of the next page, `None` at the end.
    pub async fn records_page(
        &self,
        source: &Source,
        after: Option<&str>,
    ) -> PortResult<(Vec<RawRecord>, Option<String>)> {
        const PAGE: usize = 200;
        match source {
            Source::Partition(table, pk) => {
                let page = self.inner.query(*table, pk, after, PAGE).await?;
                let next = page.last().map(|(sk, _)| sk.clone());
                let records =
                    page.into_iter().map(|(sk, item)| RawRecord { key: ItemKey::new(*table, pk, sk), item }).collect();
                Ok((records, next))
            }
            Source::Scan(table) => {
                // Partitions that name a partner are walked as partitions.
                let ScanPage { items, next } = self.inner.scan(*table, after, PAGE).await?;
                let records = items
                    .into_iter()
                    .filter(|(key, _)| partition_owner(key).is_none())
                    .map(|(key, item)| RawRecord { key, item })
                    .collect();
                Ok((records, next))
            }
        }
    }

    /// Whether a stored record is `partner`'s and how it is sealed. A value
    /// still under the state key is the partner's if its partition names
    /// the partner or (indexes, acknowledgement records) its `partner`
    /// field does.
    pub fn sealing(&self, partner: &PartnerId, record: &RawRecord) -> PortResult<Sealing> {
        if let Some((owner, envelope)) = owned_value(&record.item.value) {
            return Ok(if &owner == partner { Sealing::Partner(envelope.to_vec()) } else { Sealing::Other });
        }
        let by_partition = partition_owner(&record.key);
        if by_partition.as_ref().is_some_and(|p| p != partner) {
            return Ok(Sealing::Other);
        }
        let plain = self.sealer.value_key.open(&record.item.value, &aad(&record.key)).map_err(|_| unreadable())?;
        let named = || {
            serde_json::from_slice::<serde_json::Value>(&plain)
                .ok()
                .and_then(|v| v.get("partner").and_then(|p| p.as_str()).map(|p| p == partner.as_str()))
                .unwrap_or(false)
        };
        Ok(if by_partition.is_some() || named() { Sealing::StateKey(plain) } else { Sealing::Other })
    }

    /// `plaintext` sealed as `partner`'s record at `key` under its active
    /// version.
    pub fn seal_for(
        &self,
        keys: &PartnerKeys,
        partner: &PartnerId,
        key: &ItemKey,
        plaintext: &[u8],
    ) -> PortResult<Bytes> {
        Ok(owned(partner, &keys.seal(partner.as_str(), plaintext, &aad(key))?))
    }

    /// An envelope re-wrapped onto the active version, or `None` when it is
    /// there already.
    pub fn rewrap_for(
        &self,
        keys: &PartnerKeys,
        partner: &PartnerId,
        key: &ItemKey,
        envelope: &[u8],
    ) -> PortResult<Option<Bytes>> {
        Ok(keys.rewrap(partner.as_str(), envelope, &aad(key))?.map(|e| owned(partner, &e)))
    }

    /// Whether an envelope of `partner`'s at `key` opens with `keys`.
    pub fn opens(&self, keys: &PartnerKeys, partner: &PartnerId, key: &ItemKey, envelope: &[u8]) -> bool {
        keys.open(partner.as_str(), envelope, &aad(key)).is_ok()
    }

    /// Replaces a stored record's value if nothing changed it since it was
    /// read (its expiry kept); `false` if something did.
    pub async fn replace(&self, record: &RawRecord, value: Bytes) -> PortResult<bool> {
        let put = WriteOp::Put {
            key: record.key.clone(),
            value,
            expires_at: record.item.expires_at,
            condition: Condition::Version(record.item.version),
            owner: None,
        };
        match self.inner.write(vec![put]).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl StateStore for SealedState {
    async fn get(&self, key: &ItemKey) -> PortResult<Option<Item>> {
        match self.inner.get(key).await? {
            Some(item) => self.open(key, item).await,
            None => Ok(None),
        }
    }

    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        self.inner.write(self.seal_ops(ops).await?).await
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<(String, Item)>> {
        // Erased items are left out; a page is only empty at the end.
        let mut after = after.map(str::to_string);
        loop {
            let page = self.inner.query(table, pk, after.as_deref(), limit).await?;
            let full = page.len() >= limit.clamp(1, crate::ports::MAX_QUERY_LIMIT);
            let last = page.last().map(|(sk, _)| sk.clone());
            let mut out = Vec::with_capacity(page.len());
            for (sk, item) in page {
                let key = ItemKey::new(table, pk, sk.clone());
                if let Some(item) = self.open(&key, item).await? {
                    out.push((sk, item));
                }
            }
            if !out.is_empty() || !full {
                return Ok(out);
            }
            after = last;
        }
    }

    async fn scan(&self, table: Table, after: Option<&str>, limit: usize) -> PortResult<ScanPage> {
        let page = self.inner.scan(table, after, limit).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for (key, item) in page.items {
            if let Some(item) = self.open(&key, item).await? {
                items.push((key, item));
            }
        }
        Ok(ScanPage { items, next: page.next })
    }
}

/// An [`IntakeJournal`] whose state writes are sealed like the state
/// store's.
pub struct SealedJournal {
    inner: Arc<dyn IntakeJournal>,
    records: Arc<SealedState>,
}

impl std::fmt::Debug for SealedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedJournal")
    }
}

#[async_trait]
impl IntakeJournal for SealedJournal {
    async fn commit(&self, mut commit: Commit) -> PortResult<()> {
        commit.writes = self.records.seal_ops(std::mem::take(&mut commit.writes)).await?;
        self.inner.commit(commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_audit_events_are_the_only_values_stored_as_written() {
        assert!(stored_plain(Table::AuditStaged));
        for t in crate::ports::Table::ALL.iter().copied().filter(|t| *t != Table::AuditStaged) {
            assert!(!stored_plain(t), "{t:?} holds values that may be PHI: sealed");
        }
    }

    #[test]
    fn a_partners_partition_names_its_owner_and_nothing_else_does() {
        let owner = |t, pk: &str| partition_owner(&ItemKey::new(t, pk, "x")).map(|p| p.to_string());
        assert_eq!(owner(Table::Transactions, "acme"), Some("acme".into()));
        assert_eq!(owner(Table::AckFeed, "acme"), Some("acme".into()));
        assert_eq!(owner(Table::DeadLetters, "acme"), Some("acme".into()));
        assert_eq!(owner(Table::DeadLetters, "*"), None, "the operators' index is no partner's");
        assert_eq!(owner(Table::Pharmacy, "tx/acme"), Some("acme".into()));
        assert_eq!(owner(Table::Pharmacy, "claim/0123"), None);
        assert_eq!(owner(Table::Claims, "acme"), None, "indexes name their owner when written");
        assert_eq!(owner(Table::Partners, "partner"), None);
    }

    #[test]
    fn an_owned_value_names_its_partner_and_a_malformed_one_names_none() {
        let p = PartnerId::new("acme.east").unwrap();
        let v = owned(&p, b"CW2-envelope");
        assert_eq!(owned_value(&v), Some((p, &b"CW2-envelope"[..])));
        assert_eq!(owned_value(b"CW1..."), None);
        assert_eq!(owned_value(b"CWP"), None);
        assert_eq!(owned_value(b"CWP\x09acme"), None, "shorter than it says");
        assert_eq!(owned_value(b"CWP\x01*rest"), None, "not a partner id");
    }
}
