//! Partners, their API keys and their data keys, over the state store.
//!
//! API keys are shown once, when created, and stored only as SHA-256
//! hashes. Each partner's payloads are sealed under its key-encryption keys
//! ([`crate::keys`]). Lookups are cached for a few
//! seconds, so a revocation takes effect within [`CACHE_TTL`].

use crate::Sensitive;
use crate::access::{Principal, Role};
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
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// An API key's public id: the first 12 hex digits of its SHA-256.
pub fn credential_id(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// The public id of a presented key (valid or not): what audit events name.
pub fn key_id(api_key: &str) -> String {
    credential_id(&crypto::api_key_hash(api_key))
}

/// Why the root key could not be loaded (names files, never key bytes).
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    #[error("security.master_key: expected 64 hex digits")]
    BadSecret,
    #[error("root key file {0}: expected 64 hex digits")]
    BadFile(std::path::PathBuf),
    #[error("root key file {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "the root key is inside the data directory: move it out with `mv {legacy} {file}` \
         (or set security.allow_root_key_in_data_dir = true, for development only)"
    )]
    InDataDir { legacy: std::path::PathBuf, file: std::path::PathBuf },
    #[error(
        "a copy of the root key is also inside the data directory ({0}): delete it once the root key file is kept safe"
    )]
    CopyInDataDir(std::path::PathBuf),
    #[error("{file} and {legacy} hold different root keys: keep the one the data was sealed with")]
    TwoKeys { file: std::path::PathBuf, legacy: std::path::PathBuf },
    #[error(
        "no root key at {0}, but the data directory holds data: a new key could not open it \
         (restore the key file, or set security.root_key_file / security.master_key)"
    )]
    MissingForData(std::path::PathBuf),
    #[error("security.root_key_file {0} is inside the data directory")]
    FileInDataDir(std::path::PathBuf),
    #[error("generate root key")]
    Generate,
}

/// Loads the root key of the key hierarchy ([`crate::keys`]): the secret
/// from configuration if given, else the root key file, created (mode 0600)
/// with a new random key on first start. Returns the key and, when it is
/// kept inside the data directory by explicit permission, a warning to print.
///
/// A root key found inside the data directory (`master.key`, where keys
/// were kept before) is refused unless allowed, with the command that moves
/// it out. No key is made when `existing_data` says the store already holds
/// data (sealed with a key that must be somewhere).
pub fn load_root_key(
    security: &crate::config::SecurityConfig,
    data_dir: &Path,
    existing_data: bool,
) -> Result<(Key, Option<&'static str>), RootKeyError> {
    if let Some(hex) = &security.master_key {
        return Ok((Key::from_hex(hex.expose()).ok_or(RootKeyError::BadSecret)?, None));
    }
    const WARNING: &str = "the root key is inside the data directory (security.allow_root_key_in_data_dir): \
                           a copy of the data directory is a copy of its key; for development only";
    let allowed = security.allow_root_key_in_data_dir;
    let file = &security.root_key_file;
    let legacy = data_dir.join("master.key");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| RootKeyError::Io { path, source }
    };
    let read = |path: &Path| -> Result<Key, RootKeyError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Key::from_hex(&text).ok_or_else(|| RootKeyError::BadFile(path.to_path_buf()))
    };
    let in_data_dir = crate::config::inside(file, data_dir);
    let warning = (allowed && in_data_dir).then_some(WARNING);
    if file.exists() {
        let key = read(file)?;
        if legacy.exists() && legacy != *file {
            if read(&legacy)?.to_hex() != key.to_hex() {
                return Err(RootKeyError::TwoKeys { file: file.clone(), legacy });
            }
            if !allowed {
                return Err(RootKeyError::CopyInDataDir(legacy));
            }
        }
        return Ok((key, warning));
    }
    if legacy.exists() {
        if allowed {
            return Ok((read(&legacy)?, Some(WARNING)));
        }
        return Err(RootKeyError::InDataDir { legacy, file: file.clone() });
    }
    if in_data_dir && !allowed {
        return Err(RootKeyError::FileInDataDir(file.clone()));
    }
    if existing_data {
        return Err(RootKeyError::MissingForData(file.clone()));
    }
    create_root_key(file).map(|k| (k, warning))
}

/// Writes a new random root key to `file` atomically: a temporary file
/// (mode 0600) written and fsync'd, then hard-linked into place, so a
/// crash never leaves an empty key file and of two processes starting at
/// once, the second reads the key the first made.
fn create_root_key(file: &Path) -> Result<Key, RootKeyError> {
    let key = Key::generate().map_err(|_| RootKeyError::Generate)?;
    match create_secret_file(file, key.to_hex().as_bytes()) {
        Ok(true) => Ok(key),
        // Another process made it first: that one is the key.
        Ok(false) => {
            let text = std::fs::read_to_string(file)
                .map_err(|source| RootKeyError::Io { path: file.to_path_buf(), source })?;
            Key::from_hex(&text).ok_or_else(|| RootKeyError::BadFile(file.to_path_buf()))
        }
        Err((path, source)) => Err(RootKeyError::Io { path, source }),
    }
}

/// Creates `file` holding `contents`, readable by its owner only, at once
/// or not at all: written to a temporary file (mode 0600) and fsync'd,
/// hard-linked into place (never overwriting), the directory fsync'd.
/// `Ok(false)` when the file exists already; an error names the path.
pub fn create_secret_file(file: &Path, contents: &[u8]) -> Result<bool, (std::path::PathBuf, std::io::Error)> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| (path, e)
    };
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(at(parent))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    };
    write().map_err(at(&tmp))?;
    let linked = std::fs::hard_link(&tmp, file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(at(file)(e)),
    }
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(at(parent))?;
    Ok(true)
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

/// What an API key authenticates: its principal, or no one.
type Authenticated = Option<Arc<Principal>>;

/// An API key as `keys list` shows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Credential {
    /// Its public id: 12 hex digits of its SHA-256.
    pub id: String,
    pub principal: String,
    pub role: Role,
    pub created_at: String,
    pub revoked: bool,
    pub phi_view: bool,
    pub break_glass: bool,
    pub label: Option<String>,
}

/// What a new credential may do (`keys add`).
#[derive(Debug, Clone, Default)]
pub struct NewCredential {
    pub phi_view: bool,
    pub break_glass: bool,
    pub label: Option<String>,
}

struct Cached<T> {
    value: T,
    at: Instant,
}

/// Partner management and authentication.
/// Keyed-hash tokens of identifiers (see [`Partners::analytics_tokenizer`]).
#[derive(Clone)]
pub struct Tokenizer(aws_lc_rs::hmac::Key);

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer")
    }
}

impl Tokenizer {
    /// 32 hex digits of HMAC-SHA256 over the identifier as submitted,
    /// trimmed and upper-cased (identifiers in X12 are case-insensitive in
    /// practice; a member id keyed `abc1` and `ABC1` is one member).
    pub fn token(&self, identifier: &str) -> String {
        let norm = identifier.trim().to_ascii_uppercase();
        hex::encode(&aws_lc_rs::hmac::sign(&self.0, norm.as_bytes()).as_ref()[..16])
    }
}

pub struct Partners {
    master: Key,
    sealer: crate::sealed::Sealer,
    state: Arc<dyn StateStore>,
    by_key: Mutex<HashMap<[u8; 32], Cached<Authenticated>>>,
    keys: crate::keys::KeyRing,
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
            keys: crate::keys::KeyRing::new(master.clone(), state.clone()),
            master,
            state,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    /// With a key-management service (AWS KMS) for partners whose key
    /// versions it wraps.
    pub fn with_key_service(mut self, kms: Arc<dyn crate::keys::KeyService>) -> Self {
        self.keys = self.keys.with_key_service(kms);
        self
    }

    /// With the key ring the sealed state store uses (one cache for both:
    /// see [`crate::sealed::SealedStore`]).
    pub fn with_key_ring(mut self, ring: crate::keys::KeyRing) -> Self {
        self.keys = ring;
        self
    }

    /// The opaque stand-in for an identifier (patient control number,
    /// member id) where it would otherwise appear in a state-store key.
    pub fn index_token(&self, identifier: &str) -> String {
        self.sealer.index_token(identifier)
    }

    /// The analytics export's tokenizer for one tenant: its own key (derived
    /// from the root key and the tenant, unlike the index tokens of the
    /// state store's keys), so tokens join within a tenant's rows and not
    /// across tenants, and an index token never equals an exported one.
    pub fn analytics_tokenizer(&self, tenant: &PartnerId) -> Tokenizer {
        let key = crate::sealed::derive(&self.master, &format!("clearway/analytics-token/v1/{tenant}"));
        Tokenizer(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key))
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
        let wrapped_key = self.keys.new_first_version(id)?;
        let now = timestamp(time::OffsetDateTime::now_utc());
        let record = PartnerRecord {
            id: id.clone(),
            name: name.map(str::to_string),
            wrapped_key,
            operator,
            revoked: false,
            created_at: now.clone(),
            webhook_url: None,
            webhook_secret: None,
            cert_sha256: vec![],
            shredded_at: None,
            kms_key_id: None,
        };
        let api_key = crypto::new_api_key()?;
        let role = if operator { Role::Operator } else { Role::Submitter };
        let key_record = ApiKeyRecord { role: Some(role), ..ApiKeyRecord::new(id.clone(), now) };
        self.state
            .write(vec![
                WriteOp::Put {
                    key: PartnerRecord::key(id),
                    value: json(&record)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                    owner: None,
                },
                WriteOp::Put {
                    key: ApiKeyRecord::key(&crypto::api_key_hash(api_key.expose())),
                    value: json(&key_record)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                    owner: None,
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

    /// Revokes a partner: its keys stop authenticating (at once in this
    /// process, within the cache TTL in others).
    pub async fn revoke(&self, id: &PartnerId) -> PortResult<()> {
        let (mut record, version) = self.get(id).await?.ok_or_else(|| PortError::not_found("revoke partner"))?;
        record.revoked = true;
        self.state
            .write(vec![WriteOp::Put {
                key: PartnerRecord::key(id),
                value: json(&record)?,
                expires_at: None,
                condition: Condition::Version(version),
                owner: None,
            }])
            .await?;
        self.forget_cached();
        Ok(())
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
                owner: None,
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
                    owner: None,
                },
                WriteOp::Put {
                    key: CertIndex::key(&fp),
                    value: json(&index)?,
                    expires_at: None,
                    condition: Condition::NotExists,
                    owner: None,
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
                    owner: None,
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

    /// Who an API key authenticates, if the key is valid and not revoked
    /// (and, for a partner's key, the partner not revoked).
    pub async fn authenticate(&self, api_key: &str) -> PortResult<Option<Arc<Principal>>> {
        let digest = crypto::api_key_digest(api_key);
        if let Ok(cache) = self.by_key.lock()
            && let Some(c) = cache.get(&digest).filter(|c| c.at.elapsed() < CACHE_TTL)
        {
            return Ok(c.value.clone());
        }
        let hash = hex::encode(digest);
        let found = match self.state.get(&ApiKeyRecord::key(&hash)).await? {
            Some(item) => {
                let k: ApiKeyRecord = parse(&item.value)?;
                self.principal(&hash, k).await?.map(Arc::new)
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

    /// The principal of a stored key: a submitter's (or a key from before
    /// roles) needs its partner record, not revoked.
    async fn principal(&self, hash: &str, k: ApiKeyRecord) -> PortResult<Option<Principal>> {
        if k.revoked {
            return Ok(None);
        }
        let partner = match k.role {
            Some(Role::Auditor | Role::Admin) => None,
            Some(Role::Operator) => self.get(&k.partner).await?.map(|(r, _)| Arc::new(r)),
            Some(Role::Submitter) | None => match self.get(&k.partner).await?.map(|(r, _)| r) {
                Some(r) if !r.revoked => Some(Arc::new(r)),
                _ => return Ok(None),
            },
        };
        if partner.as_ref().is_some_and(|p| p.revoked) {
            return Ok(None);
        }
        let role = k.role.unwrap_or(if partner.as_ref().is_some_and(|p| p.operator) {
            Role::Operator
        } else {
            Role::Submitter
        });
        Ok(Some(Principal {
            id: k.partner.to_string(),
            role,
            partner,
            credential: credential_id(hash),
            phi_view: k.phi_view,
            break_glass: k.break_glass,
        }))
    }

    /// Issues a new API key: a submitter's for an existing partner, or an
    /// operator's, auditor's or admin's for a named person or service.
    /// Returns its public id and the key (shown once).
    pub async fn add_key(
        &self,
        principal: &PartnerId,
        role: Role,
        grants: NewCredential,
    ) -> PortResult<(String, Sensitive<String>)> {
        if role == Role::Submitter {
            let p = self.get(principal).await?.ok_or_else(|| PortError::not_found("add key: no such partner"))?;
            if p.0.revoked {
                return Err(PortError::invalid_input("add key: the partner is revoked"));
            }
        }
        if (grants.phi_view || grants.break_glass) && role != Role::Operator {
            return Err(PortError::invalid_input("add key: phi_view and break_glass are for operators"));
        }
        let now = timestamp(time::OffsetDateTime::now_utc());
        let record = ApiKeyRecord {
            role: Some(role),
            phi_view: grants.phi_view,
            break_glass: grants.break_glass,
            label: grants.label,
            ..ApiKeyRecord::new(principal.clone(), now)
        };
        let api_key = crypto::new_api_key()?;
        let hash = crypto::api_key_hash(api_key.expose());
        self.state
            .write(vec![WriteOp::Put {
                key: ApiKeyRecord::key(&hash),
                value: json(&record)?,
                expires_at: None,
                condition: Condition::NotExists,
                owner: None,
            }])
            .await?;
        Ok((credential_id(&hash), api_key))
    }

    /// Every stored API key: its hash, record and version.
    async fn stored_keys(&self) -> PortResult<Vec<(String, ApiKeyRecord, u64)>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::Partners, "apikey", after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (hash, item) in page {
                out.push((hash, parse(&item.value)?, item.version));
            }
        }
        Ok(out)
    }

    /// Every API key (never the keys themselves), by holder.
    pub async fn list_keys(&self) -> PortResult<Vec<Credential>> {
        let mut out = Vec::new();
        for (hash, k, _) in self.stored_keys().await? {
            let role = match k.role {
                Some(r) => r,
                None => match self.get(&k.partner).await? {
                    Some((p, _)) if p.operator => Role::Operator,
                    _ => Role::Submitter,
                },
            };
            out.push(Credential {
                id: credential_id(&hash),
                principal: k.partner.to_string(),
                role,
                created_at: k.created_at,
                revoked: k.revoked,
                phi_view: k.phi_view,
                break_glass: k.break_glass,
                label: k.label,
            });
        }
        out.sort_by(|a, b| (&a.principal, &a.created_at, &a.id).cmp(&(&b.principal, &b.created_at, &b.id)));
        Ok(out)
    }

    /// Revokes one API key by its public id: at once in this process,
    /// within [`CACHE_TTL`] in others on the same backend.
    pub async fn revoke_key(&self, id: &str) -> PortResult<Credential> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PortError::invalid_input("a key id is 12 hex digits"));
        }
        let Some((hash, mut k, version)) = self.stored_keys().await?.into_iter().find(|(h, _, _)| h.starts_with(&id))
        else {
            return Err(PortError::not_found("revoke key"));
        };
        k.revoked = true;
        self.state
            .write(vec![WriteOp::Put {
                key: ApiKeyRecord::key(&hash),
                value: json(&k)?,
                expires_at: None,
                condition: Condition::Version(version),
                owner: None,
            }])
            .await?;
        self.forget_cached();
        self.list_keys().await?.into_iter().find(|c| c.id == id).ok_or_else(|| PortError::not_found("revoke key"))
    }

    /// The partners' key-encryption keys: rotation, destruction, shredding.
    pub fn keys(&self) -> &crate::keys::KeyRing {
        &self.keys
    }

    /// Seals a partner's payload (an envelope under its active key
    /// version, see [`crate::keys`]).
    pub async fn seal(&self, id: &PartnerId, plaintext: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        self.keys.seal(id, plaintext, aad).await
    }

    /// Opens what [`Partners::seal`] sealed (or a payload stored before
    /// envelopes); fails once the partner's keys are shredded.
    pub async fn open(&self, id: &PartnerId, sealed: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        self.keys.open(id, sealed, aad).await
    }
}

/// Acknowledgements are sealed under their partner's keys like payloads:
/// in the record, or in the blob store when too large for it.
impl Partners {
    /// Seals the body of `ack` before its record is written: into the
    /// record (`body_sealed`), or, when larger than [`INLINE_ACK_BYTES`],
    /// into the blob store (durable when this returns, before the record
    /// that points to it is written; a blob left by an earlier attempt is
    /// kept). Sealing a sealed acknowledgement changes nothing.
    pub async fn seal_ack(&self, blobs: &dyn BlobStore, ack: &mut AckRecord) -> PortResult<()> {
        if ack.body_blob.is_some() || self.seal_ack_inline(ack).await? {
            return Ok(());
        }
        let sealed = self.seal(&ack.partner, ack.body.as_bytes(), ack_aad(ack).as_bytes()).await?;
        let key = BlobKey::for_ack(&ack.partner, &ack.id);
        match blobs.put(&key, Bytes::from(sealed)).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        ack.body = String::new();
        ack.body_blob = Some(key);
        Ok(())
    }

    /// How the chunks of a partner's acknowledgement bodies are sealed
    /// (see [`Partners::ack_body_writer`]).
    pub fn ack_sealing(&self, partner: &PartnerId) -> crate::chunked::ChunkSealing {
        crate::chunked::ChunkSealing::Partner(self.keys.clone(), partner.clone())
    }

    /// A writer of an acknowledgement's body built as it goes (an 835
    /// forwarded from a payer's, of any size), sealed under the partner's
    /// keys; set the record's `body_blob` and `body_chunks` from what
    /// [`crate::chunked::ChunkWriter::finish`] says.
    pub fn ack_body_writer(
        &self,
        blobs: Arc<dyn BlobStore>,
        partner: &PartnerId,
        ack_id: &str,
    ) -> PortResult<crate::chunked::ChunkWriter> {
        Ok(crate::chunked::ChunkWriter::new(
            blobs,
            self.ack_sealing(partner),
            crate::chunked::fresh_prefix(BlobKey::for_ack(partner, ack_id).as_str())?,
            MAX_ACK_BYTES,
        ))
    }

    /// Seals the body of `ack` into its record if it fits there
    /// ([`INLINE_ACK_BYTES`]); returns whether it is sealed.
    pub async fn seal_ack_inline(&self, ack: &mut AckRecord) -> PortResult<bool> {
        if ack.body_sealed.is_some() {
            return Ok(true);
        }
        if ack.body.len() > INLINE_ACK_BYTES {
            return Ok(false);
        }
        let sealed = self.seal(&ack.partner, ack.body.as_bytes(), ack_aad(ack).as_bytes()).await?;
        ack.body_sealed = Some(hex::encode(sealed));
        ack.body = String::new();
        Ok(true)
    }

    /// The text of an acknowledgement, from its record or the blob store.
    pub async fn ack_body(&self, blobs: &dyn BlobStore, ack: &AckRecord) -> PortResult<String> {
        let plain = if let (Some(prefix), Some(chunks)) = (&ack.body_blob, ack.body_chunks) {
            crate::chunked::read_all(blobs, &self.ack_sealing(&ack.partner), prefix, chunks, MAX_ACK_BYTES).await?
        } else if let Some(key) = &ack.body_blob {
            let sealed = blobs.get(key, MAX_ACK_BYTES).await?;
            self.open(&ack.partner, &sealed, ack_aad(ack).as_bytes()).await?
        } else if let Some(hexed) = &ack.body_sealed {
            let sealed =
                hex::decode(hexed).map_err(|_| PortError::new(ErrorKind::Internal, "sealed acknowledgement"))?;
            self.open(&ack.partner, &sealed, ack_aad(ack).as_bytes()).await?
        } else {
            return Ok(ack.body.clone());
        };
        String::from_utf8(plain).map_err(|_| PortError::new(ErrorKind::Internal, "acknowledgement is not text"))
    }
}

fn ack_aad(ack: &AckRecord) -> String {
    crate::keys::ack_aad(&ack.id, &ack.partner)
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
