//! The key hierarchy for payloads, stored acknowledgements and partners' state
//! records ([`crate::sealed`]):
//!
//! ```text
//! root key (a file outside the data directory, or a secret)
//!   └─ per-partner key-encryption keys (KEKs), versions 0, 1, 2, …
//!        └─ a fresh data key (DEK) per object, wrapped by the partner's active KEK
//!             └─ the object (AES-256-GCM; associated data names partner and record)
//! ```
//!
//! An object sealed here is an *envelope*:
//! `CW2 ‖ alg ‖ kek_version (u32, big-endian) ‖ wrapped DEK (60 B) ‖ nonce ‖
//! ciphertext ‖ tag`. Objects written before envelopes (`CW1 ‖ nonce ‖
//! ciphertext ‖ tag`) were sealed directly with the partner's first key,
//! which is version 0 here, so they stay readable.
//!
//! - **Rotation** adds a version and makes it active for new writes; every
//!   version still opens what it wrapped.
//! - **Re-wrap** rewrites only an object's header: its DEK unwrapped with
//!   the old version and wrapped with the active one (a `CW1` object gets a
//!   header whose DEK is the version-0 key). The payload bytes never change.
//! - **Destroying** a version nothing uses any more removes it; **shredding**
//!   a partner removes every version, so its objects cannot be opened by
//!   anyone, while other partners' objects are untouched.
//!
//! Version 0 is stored wrapped in the partner record (where the data key
//! has always been); later versions are records of their own
//! (`kek/<partner>`, one per version), each wrapped by the root key with
//! the partner and version as associated data. Processes cache a partner's
//! versions for [`CACHE_TTL`](crate::partners::CACHE_TTL), so a rotation or
//! a shred reaches every process within that time.

use crate::crypto::{Key, MAGIC as LEGACY_MAGIC, SEALED_OVERHEAD_BYTES};
use crate::error::{ErrorKind, PortError, PortResult};
use crate::ids::{BlobKey, PartnerId};
use crate::ports::{BlobStore, Condition, Key as ItemKey, MAX_BLOB_BYTES, StateStore, Table, WriteOp};
use crate::records::now_ms;
use crate::records::{AckRecord, FeedEntry, PartnerRecord};
use crate::sealed::{SealedState, Sealing, record_sources};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The header of an envelope (format 2).
pub const ENVELOPE_MAGIC: &[u8; 3] = b"CW2";
/// AES-256-GCM for both the DEK wrap and the object.
const ALG_AES_256_GCM: u8 = 1;
/// A DEK wrapped by a KEK: nonce, 32 key bytes, tag.
const WRAPPED_DEK_BYTES: usize = SEALED_OVERHEAD_BYTES + 32;
/// Everything before the object's own nonce.
pub const ENVELOPE_HEADER_BYTES: usize = ENVELOPE_MAGIC.len() + 1 + 4 + WRAPPED_DEK_BYTES;

/// The KEK version an object names: its header's for an envelope, 0 for a
/// legacy `CW1` object, `None` for anything else.
pub fn object_version(sealed: &[u8]) -> Option<u32> {
    if sealed.starts_with(LEGACY_MAGIC) {
        return Some(0);
    }
    if sealed.len() < ENVELOPE_HEADER_BYTES + SEALED_OVERHEAD_BYTES
        || !sealed.starts_with(ENVELOPE_MAGIC)
        || sealed[3] != ALG_AES_256_GCM
    {
        return None;
    }
    Some(u32::from_be_bytes([sealed[4], sealed[5], sealed[6], sealed[7]]))
}

fn dek_aad(partner: &str, version: u32) -> Vec<u8> {
    format!("dek|{partner}|{version}").into_bytes()
}

fn kek_aad(partner: &str, version: u32) -> Vec<u8> {
    format!("kek|{partner}|{version}").into_bytes()
}

fn unreadable() -> PortError {
    PortError::new(ErrorKind::InvalidInput, "open sealed payload")
}

fn header(version: u32, dek: &Key, kek: &Key, partner: &str) -> PortResult<Vec<u8>> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.push(ALG_AES_256_GCM);
    out.extend_from_slice(&version.to_be_bytes());
    kek.seal_into(dek.expose_bytes(), &dek_aad(partner, version), &mut out)?;
    Ok(out)
}

/// Seals `plaintext` for `partner` under KEK `version`: a new DEK, wrapped.
pub fn seal_envelope(kek: &Key, version: u32, partner: &str, plaintext: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
    let dek = Key::generate()?;
    let mut out = header(version, &dek, kek, partner)?;
    out.reserve(SEALED_OVERHEAD_BYTES + plaintext.len());
    dek.seal_into(plaintext, aad, &mut out)?;
    Ok(out)
}

/// The DEK of an object and where its own ciphertext starts.
fn object_dek<'a>(keys: &PartnerKeys, partner: &str, sealed: &'a [u8]) -> PortResult<(Key, &'a [u8])> {
    let version = object_version(sealed).ok_or_else(unreadable)?;
    let kek = keys.versions.get(&version).ok_or_else(unreadable)?;
    if version == 0 && sealed.starts_with(LEGACY_MAGIC) {
        return Ok((kek.clone(), &sealed[LEGACY_MAGIC.len()..]));
    }
    let wrapped = &sealed[8..ENVELOPE_HEADER_BYTES];
    let raw = kek.open_raw(wrapped, &dek_aad(partner, version)).map_err(|_| unreadable())?;
    let bytes: [u8; 32] = raw.try_into().map_err(|_| unreadable())?;
    Ok((Key::from_bytes(bytes), &sealed[ENVELOPE_HEADER_BYTES..]))
}

/// One partner's KEKs, by version. The highest is active.
#[derive(Clone, Default)]
pub struct PartnerKeys {
    versions: BTreeMap<u32, Key>,
}

impl std::fmt::Debug for PartnerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerKeys").field("versions", &self.versions.keys().collect::<Vec<_>>()).finish()
    }
}

impl PartnerKeys {
    /// Keys given by version (the key ring loads them from the store).
    pub fn from_versions(versions: impl IntoIterator<Item = (u32, Key)>) -> Self {
        PartnerKeys { versions: versions.into_iter().collect() }
    }

    /// The version new objects are sealed under, if any key is left.
    pub fn active(&self) -> Option<u32> {
        self.versions.keys().next_back().copied()
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.versions.keys().copied()
    }

    /// Whether `version` is still there (not destroyed or shredded).
    pub fn has(&self, version: u32) -> bool {
        self.versions.contains_key(&version)
    }

    /// Seals under the active version.
    pub fn seal(&self, partner: &str, plaintext: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        let (version, kek) = self
            .versions
            .iter()
            .next_back()
            .ok_or_else(|| PortError::new(ErrorKind::Unavailable, "the partner's keys have been destroyed"))?;
        seal_envelope(kek, *version, partner, plaintext, aad)
    }

    /// Opens an envelope (or a legacy object). A destroyed version, another
    /// partner's object, tampering or wrong associated data fail with
    /// `InvalidInput`.
    pub fn open(&self, partner: &str, sealed: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        let (dek, body) = object_dek(self, partner, sealed)?;
        dek.open_raw(body, aad).map_err(|_| unreadable())
    }

    /// The object with its DEK re-wrapped under the active version, or
    /// `None` when it is there already. An envelope keeps its ciphertext
    /// (only the header is opened and rewritten); a legacy `CW1` object,
    /// sealed directly with version 0, is opened with `aad` and sealed
    /// afresh under a new DEK, so no object carries version 0 itself.
    pub fn rewrap(&self, partner: &str, sealed: &[u8], aad: &[u8]) -> PortResult<Option<Vec<u8>>> {
        let active = self.active().ok_or_else(unreadable)?;
        let version = object_version(sealed).ok_or_else(unreadable)?;
        if sealed.starts_with(LEGACY_MAGIC) {
            let plain = self.open(partner, sealed, aad)?;
            return self.seal(partner, &plain, aad).map(Some);
        }
        if version == active {
            return Ok(None);
        }
        let (dek, body) = object_dek(self, partner, sealed)?;
        let mut out = header(active, &dek, &self.versions[&active], partner)?;
        out.extend_from_slice(body);
        Ok(Some(out))
    }
}

/// A stored KEK version (≥ 1; version 0 is in the partner record).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KekRecord {
    pub version: u32,
    /// The KEK wrapped by the root key (hex).
    pub wrapped: String,
    /// When the version was made (Unix milliseconds).
    pub created_ms: i64,
    /// The KMS key that wrapped it (with the partner and version as
    /// encryption context); `None`: the root key wrapped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl KekRecord {
    pub fn partition(partner: &PartnerId) -> String {
        format!("kek/{partner}")
    }

    pub fn key(partner: &PartnerId, version: u32) -> ItemKey {
        ItemKey::new(Table::Partners, Self::partition(partner), format!("{version:010}"))
    }
}

/// What an operator sees of one version (never key material).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: u32,
    pub active: bool,
    /// When it was made, if known (version 0: with the partner).
    pub created_ms: Option<i64>,
    /// The KMS key that wraps it; `None`: the root key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

fn json<T: serde::Serialize>(v: &T) -> PortResult<bytes::Bytes> {
    serde_json::to_vec(v)
        .map(bytes::Bytes::from)
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode key record", e))
}

fn parse<T: serde::de::DeserializeOwned>(b: &[u8]) -> PortResult<T> {
    serde_json::from_slice(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode key record", e))
}

/// The root key and every partner's KEKs, cached per process.
///
/// Clones share one cache (the sealed state store and partner management
/// use the same ring, so a rotation or shred forgets keys for both).
#[derive(Clone)]
pub struct KeyRing {
    root: Key,
    state: Arc<dyn StateStore>,
    kms: Option<Arc<dyn KeyService>>,
    cache: Arc<Mutex<KeyCache>>,
}

/// Each partner's keys with when they were loaded.
type KeyCache = HashMap<PartnerId, (Instant, Arc<PartnerKeys>)>;

/// A key-management service holding keys of its own that never leave it
/// (AWS KMS). A partner given such a key has its key versions wrapped by
/// it instead of the root key, so that deleting that one key erases the
/// partner's data for good, whatever copies of the store remain.
#[async_trait::async_trait]
pub trait KeyService: Send + Sync + 'static {
    /// Encrypts a KEK under `key_id` (an id, ARN or alias) with `context`
    /// bound to it; returns the ciphertext and the key's ARN (an alias can
    /// be repointed or removed; the ARN names the key that wrapped it).
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &[(&str, String)],
    ) -> PortResult<(Vec<u8>, String)>;
    /// Decrypts what [`KeyService::encrypt`] made, with the same context.
    async fn decrypt(&self, key_id: &str, ciphertext: &[u8], context: &[(&str, String)]) -> PortResult<Vec<u8>>;
    /// Schedules the key's deletion after `days` (7 to 30); it is unusable
    /// from now on.
    async fn schedule_deletion(&self, key_id: &str, days: u32) -> PortResult<()>;
}

/// What binds a KMS-wrapped KEK to its partner and version.
fn kms_context(partner: &PartnerId, version: u32) -> [(&'static str, String); 2] {
    [("clearway:partner", partner.to_string()), ("clearway:kek-version", version.to_string())]
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

impl KeyRing {
    /// `state` is the (sealed) state store the partner records live in.
    pub fn new(root: Key, state: Arc<dyn StateStore>) -> Self {
        KeyRing { root, state, kms: None, cache: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// With a key-management service for partners that have a key there.
    pub fn with_key_service(mut self, kms: Arc<dyn KeyService>) -> Self {
        self.kms = Some(kms);
        self
    }

    fn kms(&self) -> PortResult<&dyn KeyService> {
        self.kms.as_deref().ok_or_else(|| {
            PortError::new(ErrorKind::Unavailable, "this partner's keys are wrapped by AWS KMS: use the AWS backend")
        })
    }

    /// Version 0 wrapped for a new partner record.
    pub fn new_first_version(&self, partner: &PartnerId) -> PortResult<String> {
        Ok(hex::encode(self.root.wrap(&Key::generate()?, partner.as_str())?))
    }

    /// The partner's KEKs (from cache if fresh).
    pub async fn keys(&self, partner: &PartnerId) -> PortResult<Arc<PartnerKeys>> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, keys)) = cache.get(partner)
            && at.elapsed() < crate::partners::CACHE_TTL
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(self.load(partner).await?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(partner.clone(), (Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// The partner's KEKs, reloaded if the cached ones lack `version` (a
    /// rotation in another process within the cache TTL); whether that
    /// version is there is then up to the caller.
    pub async fn keys_for(&self, partner: &PartnerId, version: Option<u32>) -> PortResult<Arc<PartnerKeys>> {
        let keys = self.keys(partner).await?;
        match version {
            Some(v) if !keys.has(v) => {
                self.forget(partner);
                self.keys(partner).await
            }
            _ => Ok(keys),
        }
    }

    /// Drops this process's cached KEKs of a partner.
    pub fn forget(&self, partner: &PartnerId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(partner);
        }
    }

    async fn partner_record(&self, partner: &PartnerId) -> PortResult<(PartnerRecord, u64)> {
        let item =
            self.state.get(&PartnerRecord::key(partner)).await?.ok_or_else(|| PortError::not_found("partner keys"))?;
        Ok((parse(&item.value)?, item.version))
    }

    async fn stored_versions(&self, partner: &PartnerId) -> PortResult<Vec<(KekRecord, u64)>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page =
                self.state.query(Table::Partners, &KekRecord::partition(partner), after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, item) in page {
                out.push((parse::<KekRecord>(&item.value)?, item.version));
            }
        }
        Ok(out)
    }

    async fn load(&self, partner: &PartnerId) -> PortResult<PartnerKeys> {
        let (record, _) = self.partner_record(partner).await?;
        let mut keys = PartnerKeys::default();
        // A key that does not unwrap is the store's or the root key's
        // fault, not the object's: `Internal`, never "cannot decrypt".
        let bad = || PortError::new(ErrorKind::Internal, "unwrap partner key (wrong root key?)");
        if !record.wrapped_key.is_empty() {
            let wrapped = hex::decode(&record.wrapped_key).map_err(|_| bad())?;
            keys.versions.insert(0, self.root.unwrap_key(&wrapped, partner.as_str()).map_err(|_| bad())?);
        }
        for (kek, _) in self.stored_versions(partner).await? {
            let wrapped = hex::decode(&kek.wrapped).map_err(|_| bad())?;
            let raw = match &kek.kms_key_id {
                Some(id) => self.kms()?.decrypt(id, &wrapped, &kms_context(partner, kek.version)).await?,
                None => self.root.open(&wrapped, &kek_aad(partner.as_str(), kek.version)).map_err(|_| bad())?,
            };
            let bytes: [u8; 32] = raw.try_into().map_err(|_| bad())?;
            keys.versions.insert(kek.version, Key::from_bytes(bytes));
        }
        Ok(keys)
    }

    /// Seals for `partner` under its active version.
    pub async fn seal(&self, partner: &PartnerId, plaintext: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        self.keys(partner).await?.seal(partner.as_str(), plaintext, aad)
    }

    /// Opens a partner's object.
    pub async fn open(&self, partner: &PartnerId, sealed: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        self.keys_for(partner, object_version(sealed)).await?.open(partner.as_str(), sealed, aad)
    }

    /// The partner's versions, oldest first.
    pub async fn versions(&self, partner: &PartnerId) -> PortResult<Vec<VersionInfo>> {
        let (record, _) = self.partner_record(partner).await?;
        let mut out = Vec::new();
        if !record.wrapped_key.is_empty() {
            out.push(VersionInfo { version: 0, active: false, created_ms: None, kms_key_id: None });
        }
        for (kek, _) in self.stored_versions(partner).await? {
            out.push(VersionInfo {
                version: kek.version,
                active: false,
                created_ms: Some(kek.created_ms),
                kms_key_id: kek.kms_key_id,
            });
        }
        if let Some(last) = out.last_mut() {
            last.active = true;
        }
        Ok(out)
    }

    /// Makes a new version active for new writes and returns it. Every
    /// process seals with it within the cache TTL; until then objects may
    /// still be sealed under the previous version, which stays readable.
    ///
    /// With `kms_key_id`, the partner's key versions from this one on are
    /// wrapped by that KMS key instead of the root key (the partner record
    /// keeps it for later rotations).
    pub async fn rotate(&self, partner: &PartnerId, kms_key_id: Option<&str>) -> PortResult<u32> {
        let (mut record, rv) = self.partner_record(partner).await?;
        if record.shredded_at.is_some() {
            return Err(PortError::invalid_input("the partner's keys have been shredded"));
        }
        let current = self.versions(partner).await?.last().map_or(0, |v| v.version);
        let version = current + 1;
        let kek = Key::generate()?;
        let kms_key_id = kms_key_id.map(str::to_string).or_else(|| record.kms_key_id.clone());
        let (wrapped, wrapped_by) = match &kms_key_id {
            Some(id) => {
                let (ct, arn) = self.kms()?.encrypt(id, kek.expose_bytes(), &kms_context(partner, version)).await?;
                (ct, Some(arn))
            }
            None => (self.root.seal(kek.expose_bytes(), &kek_aad(partner.as_str(), version))?, None),
        };
        let kek_record =
            KekRecord { version, wrapped: hex::encode(wrapped), created_ms: now_ms(), kms_key_id: wrapped_by };
        let mut ops = vec![WriteOp::Put {
            key: KekRecord::key(partner, version),
            value: json(&kek_record)?,
            expires_at: None,
            condition: Condition::NotExists,
            owner: None,
        }];
        if record.kms_key_id != kms_key_id {
            record.kms_key_id = kms_key_id;
            ops.push(WriteOp::Put {
                key: PartnerRecord::key(partner),
                value: json(&record)?,
                expires_at: None,
                condition: Condition::Version(rv),
                owner: None,
            });
        }
        self.state.write(ops).await.map_err(|e| {
            if e.kind() == ErrorKind::PreconditionFailed {
                PortError::new(ErrorKind::PreconditionFailed, "another rotation made this version first")
            } else {
                e
            }
        })?;
        self.forget(partner);
        Ok(version)
    }

    /// Destroys one version that is not the active one. The caller has
    /// checked that no object names it any more.
    pub async fn destroy(&self, partner: &PartnerId, version: u32) -> PortResult<()> {
        let versions = self.versions(partner).await?;
        let v = versions.iter().find(|v| v.version == version).ok_or_else(|| PortError::not_found("key version"))?;
        if v.active {
            return Err(PortError::invalid_input("the active version cannot be destroyed: rotate first"));
        }
        if version == 0 {
            let (mut record, rv) = self.partner_record(partner).await?;
            record.wrapped_key = String::new();
            self.put_partner(record, rv).await?;
        } else {
            self.state
                .write(vec![WriteOp::Delete { key: KekRecord::key(partner, version), condition: Condition::None }])
                .await?;
        }
        self.forget(partner);
        Ok(())
    }

    /// Destroys every version of a partner's keys and revokes the partner:
    /// its objects cannot be opened again. Irreversible.
    pub async fn shred(&self, partner: &PartnerId) -> PortResult<()> {
        let (mut record, rv) = self.partner_record(partner).await?;
        record.wrapped_key = String::new();
        record.webhook_secret = None;
        record.revoked = true;
        record.shredded_at = Some(crate::records::timestamp(time::OffsetDateTime::now_utc()));
        // The record first (version 0 and the revocation), then the other
        // versions; a shred cut short is finished by running it again.
        let mut ops = vec![WriteOp::Put {
            key: PartnerRecord::key(partner),
            value: json(&record)?,
            expires_at: None,
            condition: Condition::Version(rv),
            owner: None,
        }];
        ops.extend(
            self.stored_versions(partner)
                .await?
                .into_iter()
                .map(|(k, _)| WriteOp::Delete { key: KekRecord::key(partner, k.version), condition: Condition::None }),
        );
        for chunk in ops.chunks(crate::ports::MAX_WRITE_OPS) {
            self.state.write(chunk.to_vec()).await?;
        }
        self.forget(partner);
        Ok(())
    }

    /// The KMS keys (ARNs) that wrap a partner's stored versions.
    pub async fn kms_keys(&self, partner: &PartnerId) -> PortResult<Vec<String>> {
        let mut keys: Vec<String> =
            self.stored_versions(partner).await?.into_iter().filter_map(|(k, _)| k.kms_key_id).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Schedules the deletion of a partner's KMS key (after a shred).
    pub async fn schedule_kms_deletion(&self, kms_key_id: &str, days: u32) -> PortResult<()> {
        self.kms()?.schedule_deletion(kms_key_id, days).await
    }

    async fn put_partner(&self, record: PartnerRecord, version: u64) -> PortResult<()> {
        self.state
            .write(vec![WriteOp::Put {
                key: PartnerRecord::key(&record.id),
                value: json(&record)?,
                expires_at: None,
                condition: Condition::Version(version),
                owner: None,
            }])
            .await
    }
}

// ------------------------------------------------------------ stored objects --

/// The associated data of a stored payload.
pub fn payload_aad(transaction: &impl std::fmt::Display, partner: &PartnerId) -> String {
    format!("{transaction}|{partner}")
}

/// The associated data of an acknowledgement stored as an object.
pub fn ack_aad(ack_id: &str, partner: &PartnerId) -> String {
    format!("ack|{ack_id}|{partner}")
}

/// Where a partner's objects live in the blob store: payloads
/// (`raw/<partner>/…`) and large acknowledgements (`acks/<partner>/…`).
/// Smaller acknowledgements are sealed in their records and found through
/// the partner's acknowledgement feed.
pub fn partner_prefixes(partner: &PartnerId) -> [String; 2] {
    [format!("raw/{partner}/"), format!("acks/{partner}/")]
}

/// The associated data an object was sealed with, from its key.
pub(crate) fn object_aad(key: &BlobKey, partner: &PartnerId) -> Option<String> {
    let rest = key.as_str();
    if let Some(r) = rest.strip_prefix(&format!("raw/{partner}/")) {
        return r.rsplit_once('/').map(|(_, tx)| payload_aad(&tx, partner));
    }
    rest.strip_prefix(&format!("acks/{partner}/")).map(|id| ack_aad(id, partner))
}

/// How many of a partner's objects name each key version, and how many
/// fail to open (when asked to try).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Census {
    /// Payloads, acknowledgements and state records under the partner's
    /// keys.
    pub objects: u64,
    /// Of those, state records (transaction records, claim and payment
    /// index entries, coverage, pharmacy transactions, dead letters,
    /// acknowledgement records and feed entries).
    pub records: u64,
    pub by_version: BTreeMap<u32, u64>,
    /// Acknowledgement bodies and state records of the partner stored
    /// before they were sealed under partner keys (under the state key); a
    /// re-wrap or a shred seals them.
    pub unsealed: u64,
    /// Objects that do not open (verified only).
    pub unreadable: u64,
    pub verified: bool,
}

impl Census {
    fn count(&mut self, sealed: &[u8], opens: impl FnOnce() -> bool) {
        self.objects += 1;
        if let Some(v) = object_version(sealed) {
            *self.by_version.entry(v).or_default() += 1;
        }
        if self.verified {
            self.unreadable += u64::from(!opens());
        }
    }
}

/// Counts a partner's objects by key version; with `verify`, opens each
/// one too (the decrypt check after a shred or before destroying a
/// version).
pub async fn census(
    ring: &KeyRing,
    blobs: &dyn BlobStore,
    records: &SealedState,
    partner: &PartnerId,
    verify: bool,
) -> PortResult<Census> {
    let state: &dyn StateStore = records;
    ring.forget(partner);
    let keys = if verify { ring.keys(partner).await.ok() } else { None };
    let keys = keys.as_deref();
    let mut c = Census { verified: verify, ..Census::default() };
    for prefix in partner_prefixes(partner) {
        let mut after: Option<BlobKey> = None;
        loop {
            let page = blobs.list(&prefix, after.as_ref(), 500).await?;
            let Some(last) = page.last().cloned() else { break };
            for key in &page {
                let bytes = blobs.get(key, MAX_BLOB_BYTES).await?;
                let aad = object_aad(key, partner);
                c.count(&bytes, || {
                    keys.zip(aad).is_some_and(|(k, aad)| k.open(partner.as_str(), &bytes, aad.as_bytes()).is_ok())
                });
            }
            after = Some(last);
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = partner_acks(state, partner, after.as_deref()).await?;
        let Some(last) = page.last().map(|a| a.cursor.clone()) else { break };
        after = Some(last);
        for a in page {
            match &a.sealed {
                Some(sealed) => c.count(sealed, || {
                    keys.is_some_and(|k| {
                        k.open(partner.as_str(), sealed, ack_aad(&a.ack.id, partner).as_bytes()).is_ok()
                    })
                }),
                None => c.unsealed += 1,
            }
        }
    }
    for source in record_sources(partner) {
        let mut after: Option<String> = None;
        loop {
            let (page, next) = records.records_page(&source, after.as_deref()).await?;
            for r in &page {
                match records.sealing(partner, r)? {
                    Sealing::Partner(envelope) => {
                        c.records += 1;
                        c.count(&envelope, || keys.is_some_and(|k| records.opens(k, partner, &r.key, &envelope)));
                    }
                    Sealing::StateKey(_) => c.unsealed += 1,
                    Sealing::Other => {}
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    Ok(c)
}

/// An acknowledgement record of a partner whose body is in the record.
struct StoredAck {
    /// Its entry in the partner's feed.
    cursor: String,
    /// The record's version, for a conditional rewrite.
    version: u64,
    ack: AckRecord,
    /// The sealed body; `None` for a body stored before sealing.
    sealed: Option<Vec<u8>>,
}

/// A page of a partner's acknowledgements whose body is in the record,
/// found through the partner's feed (which lists every one), after the
/// feed cursor `after`. Empty at the end. A record whose body is in the
/// blob store is skipped (counted there).
async fn partner_acks(state: &dyn StateStore, partner: &PartnerId, after: Option<&str>) -> PortResult<Vec<StoredAck>> {
    let mut out = Vec::new();
    let mut after = after.map(str::to_string);
    loop {
        let page = state.query(Table::AckFeed, partner.as_str(), after.as_deref(), 200).await?;
        let Some((last, _)) = page.last() else { return Ok(out) };
        after = Some(last.clone());
        for (cursor, item) in page {
            let entry: FeedEntry = parse(&item.value)?;
            let Some(record) = state.get(&AckRecord::key(&entry.transaction, &entry.ack_id)).await? else { continue };
            let ack: AckRecord = parse(&record.value)?;
            let sealed = match &ack.body_sealed {
                Some(hexed) => Some(
                    hex::decode(hexed).map_err(|_| PortError::new(ErrorKind::Internal, "sealed acknowledgement"))?,
                ),
                None if ack.body_blob.is_some() => continue,
                None => None,
            };
            out.push(StoredAck { cursor, version: record.version, ack, sealed });
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
}

/// Rewrites an acknowledgement record with its body sealed (afresh or
/// re-wrapped) if nothing changed it since it was read; `false` if
/// something did (it was then sealed under the active version by its
/// writer).
async fn rewrite_ack(state: &dyn StateStore, mut a: StoredAck, sealed: Vec<u8>) -> PortResult<bool> {
    a.ack.body_sealed = Some(hex::encode(sealed));
    a.ack.body = String::new();
    let put = WriteOp::Put {
        key: AckRecord::key(&a.ack.transaction, &a.ack.id),
        value: json(&a.ack)?,
        expires_at: None,
        condition: Condition::Version(a.version),
        owner: Some(a.ack.partner.clone()),
    };
    match state.write(vec![put]).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(false),
        Err(e) => Err(e),
    }
}

/// Seals, under the active version, every acknowledgement body and state
/// record of a partner stored before they were sealed under partner keys
/// (a shred does this first, so that none stays readable). Returns how
/// many.
pub async fn seal_unsealed(ring: &KeyRing, records: &SealedState, partner: &PartnerId) -> PortResult<u64> {
    ring.forget(partner);
    let keys = ring.keys(partner).await?;
    let state: &dyn StateStore = records;
    let mut sealed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = partner_acks(state, partner, after.as_deref()).await?;
        let Some(last) = page.last().map(|a| a.cursor.clone()) else { break };
        after = Some(last);
        for a in page.into_iter().filter(|a| a.sealed.is_none()) {
            let body = keys.seal(partner.as_str(), a.ack.body.as_bytes(), ack_aad(&a.ack.id, partner).as_bytes())?;
            sealed += u64::from(rewrite_ack(state, a, body).await?);
        }
    }
    for source in record_sources(partner) {
        let mut after: Option<String> = None;
        loop {
            let (page, next) = records.records_page(&source, after.as_deref()).await?;
            for r in &page {
                if let Sealing::StateKey(plain) = records.sealing(partner, r)? {
                    let value = records.seal_for(&keys, partner, &r.key, &plain)?;
                    sealed += u64::from(records.replace(r, value).await?);
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    Ok(sealed)
}

/// Where an interrupted re-wrap resumes (`Counters`, `rewrap/<partner>`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewrapCursor {
    /// The version the run was moving objects onto.
    target: u32,
    /// 0 and 1: the blob prefixes; 2: acknowledgements sealed in their
    /// records; 3 on: the state records of each of [`record_sources`].
    prefix: usize,
    after: String,
}

/// The cursor stage of acknowledgements sealed in their records (after the
/// two blob prefixes).
const ACK_STAGE: usize = 2;
/// The cursor stage of the first of [`record_sources`].
const RECORD_STAGE: usize = 3;

fn cursor_key(partner: &PartnerId) -> ItemKey {
    ItemKey::new(Table::Counters, "rewrap", partner.as_str())
}

/// The version an unfinished re-wrap of a partner was moving objects
/// onto, if one was interrupted or is running.
pub async fn rewrap_in_progress(state: &dyn StateStore, partner: &PartnerId) -> PortResult<Option<u32>> {
    Ok(state
        .get(&cursor_key(partner))
        .await?
        .and_then(|item| parse::<RewrapCursor>(&item.value).ok())
        .map(|c| c.target))
}

/// What a re-wrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewrapReport {
    pub target_version: u32,
    pub examined: u64,
    pub rewrapped: u64,
    /// Objects that do not open (reported, left as they are).
    pub failed: u64,
    /// Whether the run continued where an interrupted one stopped.
    pub resumed: bool,
}

/// A re-wrap in progress: its keys (reloaded every page, so a rotation
/// stops it within one page), pace and report.
struct Rewrap<'a> {
    ring: &'a KeyRing,
    state: &'a dyn StateStore,
    partner: &'a PartnerId,
    keys: Arc<PartnerKeys>,
    pace: Option<std::time::Duration>,
    next_at: tokio::time::Instant,
    report: RewrapReport,
}

impl Rewrap<'_> {
    /// Before each page: the keys afresh, and still the same target.
    async fn refresh(&mut self) -> PortResult<()> {
        self.ring.forget(self.partner);
        self.keys = self.ring.keys(self.partner).await?;
        if self.keys.active() != Some(self.report.target_version) {
            return Err(PortError::new(
                ErrorKind::PreconditionFailed,
                "the active key version changed during the re-wrap: run it again",
            ));
        }
        Ok(())
    }

    async fn pace(&mut self) {
        if let Some(p) = self.pace {
            tokio::time::sleep_until(self.next_at).await;
            self.next_at = tokio::time::Instant::now().max(self.next_at) + p;
        }
        self.report.examined += 1;
    }

    async fn save(&self, prefix: usize, after: &str) -> PortResult<()> {
        let cursor = RewrapCursor { target: self.report.target_version, prefix, after: after.to_string() };
        self.state
            .write(vec![WriteOp::Put {
                key: cursor_key(self.partner),
                value: json(&cursor)?,
                expires_at: None,
                condition: Condition::None,
                owner: None,
            }])
            .await
    }
}

/// Re-wraps every object of a partner onto its active version, at most
/// `max_per_second` objects a second (0: no limit): payloads and
/// acknowledgements in the blob store, then acknowledgements sealed in
/// their records (sealing any stored before sealing). An envelope's
/// ciphertext is not touched; a legacy `CW1` object is sealed afresh.
///
/// Safe to interrupt at any point (each object is replaced atomically, each
/// record rewritten with a version condition) and idempotent (an object on
/// the active version is left alone); a cursor saved after every page lets
/// the next run skip what was done, unless the active version changed in
/// between. A rotation during the run stops it within a page.
pub async fn rewrap(
    ring: &KeyRing,
    blobs: &dyn BlobStore,
    records: &SealedState,
    partner: &PartnerId,
    max_per_second: u32,
) -> PortResult<RewrapReport> {
    let state: &dyn StateStore = records;
    ring.forget(partner);
    let keys = ring.keys(partner).await?;
    let target = keys.active().ok_or_else(|| PortError::invalid_input("the partner has no keys"))?;
    let saved: Option<RewrapCursor> = match state.get(&cursor_key(partner)).await? {
        Some(item) => parse::<RewrapCursor>(&item.value).ok().filter(|c| c.target == target),
        None => None,
    };
    let mut run = Rewrap {
        ring,
        state,
        partner,
        keys,
        pace: (max_per_second > 0).then(|| std::time::Duration::from_secs(1) / max_per_second),
        next_at: tokio::time::Instant::now(),
        report: RewrapReport { target_version: target, resumed: saved.is_some(), ..RewrapReport::default() },
    };
    let (first, resume_after) = saved.map_or((0, None), |c| (c.prefix, Some(c.after)));
    for (n, prefix) in partner_prefixes(partner).iter().enumerate().skip(first) {
        let mut after = if n == first { resume_after.as_deref().and_then(BlobKey::parse) } else { None };
        loop {
            let page = blobs.list(prefix, after.as_ref(), 100).await?;
            let Some(last) = page.last().cloned() else { break };
            run.refresh().await?;
            for key in &page {
                run.pace().await;
                let bytes = blobs.get(key, MAX_BLOB_BYTES).await?;
                let Some(aad) = object_aad(key, partner) else {
                    run.report.failed += 1;
                    continue;
                };
                match run.keys.rewrap(partner.as_str(), &bytes, aad.as_bytes()) {
                    Ok(None) => {}
                    Ok(Some(new)) => {
                        blobs.replace(key, bytes::Bytes::from(new)).await?;
                        run.report.rewrapped += 1;
                    }
                    Err(_) => run.report.failed += 1,
                }
            }
            run.save(n, last.as_str()).await?;
            after = Some(last);
        }
    }
    if first <= ACK_STAGE {
        let mut after = if first == ACK_STAGE { resume_after.clone() } else { None };
        loop {
            let page = partner_acks(state, partner, after.as_deref()).await?;
            let Some(last) = page.last().map(|a| a.cursor.clone()) else { break };
            run.refresh().await?;
            for a in page {
                run.pace().await;
                let aad = ack_aad(&a.ack.id, partner);
                let new = match &a.sealed {
                    Some(sealed) => run.keys.rewrap(partner.as_str(), sealed, aad.as_bytes()),
                    None => run.keys.seal(partner.as_str(), a.ack.body.as_bytes(), aad.as_bytes()).map(Some),
                };
                match new {
                    Ok(None) => {}
                    Ok(Some(new)) => run.report.rewrapped += u64::from(rewrite_ack(state, a, new).await?),
                    Err(_) => run.report.failed += 1,
                }
            }
            run.save(ACK_STAGE, &last).await?;
            after = Some(last);
        }
    }
    for (n, source) in record_sources(partner).iter().enumerate() {
        let stage = RECORD_STAGE + n;
        if stage < first {
            continue;
        }
        let mut after = if stage == first { resume_after.clone() } else { None };
        loop {
            let (page, next) = records.records_page(source, after.as_deref()).await?;
            if !page.is_empty() {
                run.refresh().await?;
            }
            for r in &page {
                let new = match records.sealing(partner, r) {
                    Ok(Sealing::Partner(envelope)) => {
                        run.pace().await;
                        records.rewrap_for(&run.keys, partner, &r.key, &envelope)
                    }
                    Ok(Sealing::StateKey(plain)) => {
                        run.pace().await;
                        records.seal_for(&run.keys, partner, &r.key, &plain).map(Some)
                    }
                    Ok(Sealing::Other) => continue,
                    Err(e) => Err(e),
                };
                match new {
                    Ok(None) => {}
                    Ok(Some(value)) => run.report.rewrapped += u64::from(records.replace(r, value).await?),
                    Err(_) => run.report.failed += 1,
                }
            }
            let Some(n) = next else { break };
            run.save(stage, &n).await?;
            after = Some(n);
        }
    }
    state.write(vec![WriteOp::Delete { key: cursor_key(partner), condition: Condition::None }]).await?;
    Ok(run.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(versions: &[u32]) -> PartnerKeys {
        PartnerKeys { versions: versions.iter().map(|v| (*v, Key::generate().unwrap())).collect() }
    }

    #[test]
    fn envelopes_name_their_version_and_open_after_rotation_and_rewrap() {
        let mut k = keys(&[0]);
        let legacy = k.versions[&0].seal(b"legacy", b"aad").unwrap();
        let v0 = k.seal("a", b"zero", b"aad").unwrap();
        assert_eq!(object_version(&legacy), Some(0));
        assert_eq!(object_version(&v0), Some(0));
        assert!(v0.starts_with(ENVELOPE_MAGIC));
        k.versions.insert(1, Key::generate().unwrap());
        let v1 = k.seal("a", b"one", b"aad").unwrap();
        assert_eq!(object_version(&v1), Some(1));
        assert_eq!(k.open("a", &legacy, b"aad").unwrap(), b"legacy");
        assert_eq!(k.open("a", &v0, b"aad").unwrap(), b"zero");
        // Re-wrap moves the two old objects onto version 1: the envelope
        // keeps its ciphertext, the legacy object is sealed afresh; the new
        // one is left alone.
        let legacy2 = k.rewrap("a", &legacy, b"aad").unwrap().unwrap();
        let v0b = k.rewrap("a", &v0, b"aad").unwrap().unwrap();
        assert!(k.rewrap("a", &v1, b"aad").unwrap().is_none());
        assert_eq!(&v0b[ENVELOPE_HEADER_BYTES..], &v0[ENVELOPE_HEADER_BYTES..], "an envelope keeps its ciphertext");
        assert_eq!(object_version(&legacy2), Some(1));
        assert!(k.rewrap("a", &legacy, b"other").is_err(), "a legacy object is opened to be sealed afresh");
        k.versions.remove(&0);
        assert_eq!(k.open("a", &legacy2, b"aad").unwrap(), b"legacy");
        assert_eq!(k.open("a", &v0b, b"aad").unwrap(), b"zero");
        assert!(k.open("a", &v0, b"aad").is_err(), "version 0 is gone");
    }

    #[test]
    fn another_partner_or_record_or_a_changed_header_does_not_open() {
        let a = keys(&[0, 1]);
        let sealed = a.seal("a", b"phi", b"tx1").unwrap();
        assert!(a.open("a", &sealed, b"tx2").is_err(), "other record");
        assert!(a.open("b", &sealed, b"tx1").is_err(), "other partner name");
        let b = keys(&[0, 1]);
        assert!(b.open("b", &sealed, b"tx1").is_err(), "other partner's keys");
        let mut changed = sealed.clone();
        changed[7] = 0; // names version 0
        assert!(a.open("a", &changed, b"tx1").is_err());
        assert!(a.open("a", b"CW2", b"tx1").is_err());
        assert!(a.open("a", b"", b"tx1").is_err());
        assert!(keys(&[]).seal("a", b"x", b"y").is_err(), "no key left: nothing sealed");
    }
}
