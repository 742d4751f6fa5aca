//! Partners, their API keys and their data keys, over the state store.
//!
//! API keys are shown once, when created, and stored only as SHA-256
//! hashes. Each partner's data key is stored wrapped by the master key and
//! unwrapped into memory on first use. Lookups are cached for a few
//! seconds, so a revocation takes effect within [`CACHE_TTL`].

use crate::Sensitive;
use crate::crypto::{self, Key};
use crate::error::{ErrorKind, PortError, PortResult};
use crate::ids::BlobKey;
use crate::ids::PartnerId;
use crate::ports::{BlobStore, Condition, StateStore, Table, WriteOp};
use crate::records::{AckRecord, ApiKeyRecord, INLINE_ACK_BYTES, MAX_ACK_BYTES, PartnerRecord, timestamp};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an authenticated key or a partner record is trusted from cache.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Loads the master key: from configuration if given (64 hex digits), else
/// from `<data_dir>/master.key`, creating that file (mode 0600) with a new
/// random key on first start.
pub fn load_master_key(data_dir: &Path, configured: Option<&Sensitive<String>>) -> PortResult<Key> {
    if let Some(hex) = configured {
        return Key::from_hex(hex.expose())
            .ok_or_else(|| PortError::invalid_input("master key: expected 64 hex digits"));
    }
    let path = data_dir.join("master.key");
    let io = |e: std::io::Error| PortError::with_cause(ErrorKind::Unavailable, "master key file", e);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Key::from_hex(&text).ok_or_else(|| PortError::invalid_input("master key file: expected 64 hex digits"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let key = Key::generate()?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(io)?;
            use std::io::Write;
            f.write_all(key.to_hex().as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// A client certificate's fingerprint → its partner (`cert/<sha256>`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CertIndex {
    partner: PartnerId,
}

impl CertIndex {
    fn key(fingerprint: &str) -> crate::ports::Key {
        crate::ports::Key::new(crate::ports::Table::Partners, "cert", fingerprint)
    }
}

/// A SHA-256 fingerprint as 64 lower-case hex digits, from hex with or
/// without colons (OpenSSL prints `AB:CD:…`) and an optional `SHA256:` or
/// `sha256 Fingerprint=` prefix.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.rsplit_once('=').map_or(s, |(_, v)| v);
    let s = s.strip_prefix("SHA256:").or_else(|| s.strip_prefix("sha256:")).unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn json<T: serde::Serialize>(v: &T) -> PortResult<Bytes> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode record", e))
}

fn parse<T: serde::de::DeserializeOwned>(b: &[u8]) -> PortResult<T> {
    serde_json::from_slice(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode record", e))
}

/// What an API key authenticates: its partner, or no one.
type Authenticated = Option<Arc<PartnerRecord>>;

struct Cached<T> {
    value: T,
    at: Instant,
}

/// Partner management and authentication.
pub struct Partners {
    master: Key,
    sealer: crate::sealed::Sealer,
    state: Arc<dyn StateStore>,
    by_key: Mutex<HashMap<[u8; 32], Cached<Authenticated>>>,
    data_keys: Mutex<HashMap<PartnerId, Key>>,
}

impl std::fmt::Debug for Partners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partners").finish_non_exhaustive()
    }
}

impl Partners {
    pub fn new(master: Key, state: Arc<dyn StateStore>) -> Self {
        Partners {
            sealer: crate::sealed::Sealer::new(&master),
            master,
            state,
            by_key: Mutex::new(HashMap::new()),
            data_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The opaque stand-in for an identifier (patient control number,
    /// member id) where it would otherwise appear in a state-store key.
    pub fn index_token(&self, identifier: &str) -> String {
        self.sealer.index_token(identifier)
    }

    /// The key that seals outbound batches and payer files in the blob
    /// store (they hold claims of many partners).
    pub fn batch_key(&self) -> Key {
        Key::from_bytes(crate::sealed::derive(&self.master, "clearway/payer-files/v1"))
    }

    /// The partition of the claim and payment indexes for a patient control
    /// number: its index token, never the number itself.
    pub fn pcn_partition(&self, pcn: &str) -> String {
        format!("pcn:{}", self.index_token(pcn))
    }

    /// The sort key of a coverage record (partition: the payer id): the
    /// member id's index token.
    pub fn member_key(&self, member_id: &str) -> String {
        self.index_token(member_id)
    }

    /// Creates a partner and its first API key; returns the key (shown once).
    pub async fn add(&self, id: &PartnerId, name: Option<&str>, operator: bool) -> PortResult<Sensitive<String>> {
        let data_key = Key::generate()?;
        let wrapped = self.master.wrap(&data_key, id.as_str())?;
        let now = timestamp(time::OffsetDateTime::now_utc());
        let record = PartnerRecord {
            id: id.clone(),
            name: name.map(str::to_string),
            wrapped_key: hex::encode(wrapped),
            operator,
            revoked: false,
            created_at: now.clone(),
            webhook_url: None,
            webhook_secret: None,
            cert_sha256: vec![],
        };
        let api_key = crypto::new_api_key()?;
        let key_record = ApiKeyRecord { partner: id.clone(), created_at: now };
        self.state
            .write(vec![
                WriteOp::Put {
                    key: PartnerRecord::key(id),
                    value: json(&record)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                },
                WriteOp::Put {
                    key: ApiKeyRecord::key(&crypto::api_key_hash(api_key.expose())),
                    value: json(&key_record)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                },
            ])
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::PreconditionFailed { PortError::already_exists("add partner") } else { e }
            })?;
        Ok(api_key)
    }

    /// Every partner, by id.
    pub async fn list(&self) -> PortResult<Vec<PartnerRecord>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::Partners, "partner", after.as_deref(), 1000).await?;
            if page.is_empty() {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
            for (_, item) in page {
                out.push(parse::<PartnerRecord>(&item.value)?);
            }
        }
        Ok(out)
    }

    /// The partner record, if any.
    pub async fn get(&self, id: &PartnerId) -> PortResult<Option<(PartnerRecord, u64)>> {
        match self.state.get(&PartnerRecord::key(id)).await? {
            Some(item) => Ok(Some((parse(&item.value)?, item.version))),
            None => Ok(None),
        }
    }

    /// Revokes a partner: its keys stop authenticating (within the cache TTL).
    pub async fn revoke(&self, id: &PartnerId) -> PortResult<()> {
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("revoke partner"))?;
        record.revoked = true;
        self.state
            .write(vec![WriteOp::Put {
                key: PartnerRecord::key(id),
                value: json(&record)?,
                expires_at: None,
                condition: Condition::Version(version),
            }])
            .await
    }

    /// Sets the partner's webhook URL and signing secret — the one given,
    /// or a new random one — and returns the secret.
    pub async fn set_webhook(
        &self,
        id: &PartnerId,
        url: &str,
        secret: Option<Sensitive<String>>,
    ) -> PortResult<Sensitive<String>> {
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("set webhook"))?;
        let secret = match secret {
            Some(s) => s,
            None => crypto::new_api_key()?,
        };
        let wrapped = self.master.seal(secret.expose().as_bytes(), format!("webhook|{id}").as_bytes())?;
        record.webhook_url = Some(url.to_string());
        record.webhook_secret = Some(hex::encode(wrapped));
        self.put_record(record, version).await?;
        Ok(secret)
    }

    /// Removes the partner's webhook.
    pub async fn clear_webhook(&self, id: &PartnerId) -> PortResult<()> {
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("clear webhook"))?;
        record.webhook_url = None;
        record.webhook_secret = None;
        self.put_record(record, version).await
    }

    async fn put_record(&self, record: PartnerRecord, version: u64) -> PortResult<()> {
        let key = PartnerRecord::key(&record.id);
        self.state
            .write(vec![WriteOp::Put {
                key,
                value: json(&record)?,
                expires_at: None,
                condition: Condition::Version(version),
            }])
            .await
    }

    /// Binds a client certificate (its SHA-256 fingerprint: hex, or
    /// OpenSSL's colon-separated form) to a partner, in a free slot of two.
    /// A fingerprint bound to another partner is refused.
    pub async fn bind_certificate(&self, id: &PartnerId, fingerprint: &str) -> PortResult<String> {
        let fp =
            normalize_fingerprint(fingerprint).ok_or_else(|| PortError::invalid_input("certificate fingerprint"))?;
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("bind certificate"))?;
        if record.cert_sha256.contains(&fp) {
            return Ok(fp);
        }
        if record.cert_sha256.len() >= 2 {
            return Err(PortError::invalid_input("two certificates are bound already: unbind one first"));
        }
        record.cert_sha256.push(fp.clone());
        let index = CertIndex { partner: id.clone() };
        self.state
            .write(vec![
                WriteOp::Put {
                    key: PartnerRecord::key(id),
                    value: json(&record)?,
                    expires_at: None,
                    condition: Condition::Version(version),
                },
                WriteOp::Put {
                    key: CertIndex::key(&fp),
                    value: json(&index)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                },
            ])
            .await?;
        self.forget_cached();
        Ok(fp)
    }

    /// Unbinds a client certificate from a partner.
    pub async fn unbind_certificate(&self, id: &PartnerId, fingerprint: &str) -> PortResult<()> {
        let fp =
            normalize_fingerprint(fingerprint).ok_or_else(|| PortError::invalid_input("certificate fingerprint"))?;
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("unbind certificate"))?;
        if !record.cert_sha256.contains(&fp) {
            return Err(PortError::not_found("unbind certificate"));
        }
        record.cert_sha256.retain(|f| *f != fp);
        self.state
            .write(vec![
                WriteOp::Put {
                    key: PartnerRecord::key(id),
                    value: json(&record)?,
                    expires_at: None,
                    condition: Condition::Version(version),
                },
                WriteOp::Delete { key: CertIndex::key(&fp), condition: Condition::None },
            ])
            .await?;
        self.forget_cached();
        Ok(())
    }

    /// The partner a client certificate is bound to (not revoked).
    pub async fn by_certificate(&self, fingerprint: &str) -> PortResult<Option<Arc<PartnerRecord>>> {
        let Some(item) = self.state.get(&CertIndex::key(fingerprint)).await? else { return Ok(None) };
        let index: CertIndex = parse(&item.value)?;
        Ok(self
            .get(&index.partner)
            .await?
            .map(|(r, _)| r)
            .filter(|r| !r.revoked && r.cert_sha256.iter().any(|f| f == fingerprint))
            .map(Arc::new))
    }

    /// Drops this process's cache of authenticated keys (a binding changed).
    fn forget_cached(&self) {
        if let Ok(mut cache) = self.by_key.lock() {
            cache.clear();
        }
    }

    /// The webhook signing secret of a partner record.
    pub fn webhook_secret(&self, record: &PartnerRecord) -> PortResult<Option<Sensitive<Vec<u8>>>> {
        let Some(hexed) = &record.webhook_secret else { return Ok(None) };
        let sealed = hex::decode(hexed).map_err(|_| PortError::invalid_input("webhook secret"))?;
        let secret = self.master.open(&sealed, format!("webhook|{}", record.id).as_bytes())?;
        Ok(Some(Sensitive::new(secret)))
    }

    /// The partner an API key belongs to, if the key is valid and the
    /// partner not revoked.
    pub async fn authenticate(&self, api_key: &str) -> PortResult<Option<Arc<PartnerRecord>>> {
        let digest = crypto::api_key_digest(api_key);
        if let Ok(cache) = self.by_key.lock()
            && let Some(c) = cache.get(&digest).filter(|c| c.at.elapsed() < CACHE_TTL)
        {
            return Ok(c.value.clone());
        }
        let found = match self.state.get(&ApiKeyRecord::key(&hex::encode(digest))).await? {
            Some(item) => {
                let k: ApiKeyRecord = parse(&item.value)?;
                self.get(&k.partner).await?.map(|(r, _)| r).filter(|r| !r.revoked).map(Arc::new)
            }
            None => None,
        };
        if let Ok(mut cache) = self.by_key.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(digest, Cached { value: found.clone(), at: Instant::now() });
        }
        Ok(found)
    }

    /// The partner's data key (unwrapped once, then cached).
    pub async fn data_key(&self, id: &PartnerId) -> PortResult<Key> {
        if let Some(k) = self.data_keys.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(k);
        }
        let (record, _) = self.get(id).await?.ok_or_else(|| PortError::not_found("partner data key"))?;
        let wrapped = hex::decode(&record.wrapped_key).map_err(|_| PortError::invalid_input("partner data key"))?;
        let key = self.master.unwrap_key(&wrapped, id.as_str())?;
        if let Ok(mut m) = self.data_keys.lock() {
            m.insert(id.clone(), key.clone());
        }
        Ok(key)
    }
}

/// Acknowledgements too large for their records, sealed with the partner's
/// data key like payloads.
impl Partners {
    /// Moves the body of `ack` to the blob store when it is larger than
    /// [`INLINE_ACK_BYTES`]; the blob is durable when this returns, before
    /// the record that points to it is written. A blob left by an earlier
    /// attempt is kept.
    pub async fn store_large_ack(&self, blobs: &dyn BlobStore, ack: &mut AckRecord) -> PortResult<()> {
        if ack.body.len() <= INLINE_ACK_BYTES {
            return Ok(());
        }
        let key = BlobKey::for_ack(&ack.partner, &ack.id);
        let sealed = self.data_key(&ack.partner).await?.seal(ack.body.as_bytes(), ack_aad(ack).as_bytes())?;
        match blobs.put(&key, Bytes::from(sealed)).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        ack.body = String::new();
        ack.body_blob = Some(key);
        Ok(())
    }

    /// The text of an acknowledgement, from its record or the blob store.
    pub async fn ack_body(&self, blobs: &dyn BlobStore, ack: &AckRecord) -> PortResult<String> {
        let Some(key) = &ack.body_blob else { return Ok(ack.body.clone()) };
        let sealed = blobs.get(key, MAX_ACK_BYTES).await?;
        let plain = self.data_key(&ack.partner).await?.open(&sealed, ack_aad(ack).as_bytes())?;
        String::from_utf8(plain).map_err(|_| PortError::new(ErrorKind::Internal, "acknowledgement is not text"))
    }
}

fn ack_aad(ack: &AckRecord) -> String {
    format!("ack|{}|{}", ack.id, ack.partner)
}

#[cfg(test)]
mod tests {
    use super::normalize_fingerprint;

    #[test]
    fn fingerprints_in_the_forms_people_paste_them() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(normalize_fingerprint(&hex).as_deref(), Some(hex.as_str()));
        assert_eq!(normalize_fingerprint(&colons).as_deref(), Some(hex.as_str()));
        assert_eq!(normalize_fingerprint(&format!("sha256 Fingerprint={colons}")).as_deref(), Some(hex.as_str()));
        assert_eq!(normalize_fingerprint(&format!("SHA256:{hex}")).as_deref(), Some(hex.as_str()));
        assert_eq!(normalize_fingerprint("abcd"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }
}
