//! The tamper-evident audit trail's log: an append-only Merkle log as
//! RFC 6962 / RFC 9162 define it, with checkpoints signed in the C2SP
//! `tlog-checkpoint` / `signed-note` format (Ed25519).
//!
//! - **Hashing.** A leaf is `SHA-256(0x00 ‖ event)`, a node
//!   `SHA-256(0x01 ‖ left ‖ right)`; a tree of `n` leaves splits at the
//!   largest power of two below `n` (RFC 9162 §2.1.1). The prefixes keep a
//!   leaf from passing for a node.
//! - **Storage.** A log keeps each event and the hash of every *perfect*
//!   subtree once it is complete, addressed by `(level, index)`: the hash
//!   of leaves `[index·2^level, (index+1)·2^level)`. Any root, inclusion
//!   proof or consistency proof is then O(log n) stored hashes
//!   ([`Nodes`]); appending keeps only the right edge in memory
//!   ([`CompactRange`]).
//! - **Proofs** are built here ([`inclusion_proof`], [`consistency_proof`],
//!   RFC 9162 §2.1.3 and §2.1.4) and checked with the `ct-merkle` crate.
//! - **Checkpoints** ([`Checkpoint`]) name the log (its origin), its size
//!   and its root, signed by the log's key; a verifier that holds an
//!   earlier checkpoint checks that the log it is shown extends it
//!   (consistency), so a history rewritten even with the key is caught.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a log, a proof or a checkpoint does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the inclusion proof does not lead to the root")]
    Inclusion,
    #[error("the consistency proof does not join the two trees")]
    Consistency,
    #[error("the checkpoint's signature does not verify")]
    Signature,
    #[error("a stored node is missing ({level}, {index})")]
    MissingNode { level: u8, index: u64 },
    #[error("{0}")]
    Log(String),
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The hash of a leaf: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// The hash of an inner node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The root of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The hashes of complete (perfect) subtrees, as a log stores them.
pub trait Nodes {
    /// The hash of leaves `[index·2^level, (index+1)·2^level)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError>;
}

/// The Merkle tree hash of leaves `[start, end)` (`start < end`), from
/// perfect subtrees: `start` is aligned as RFC 9162's recursion leaves it.
fn subtree(nodes: &impl Nodes, start: u64, end: u64) -> Result<Hash, AuditError> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    Ok(node_hash(&subtree(nodes, start, start + k)?, &subtree(nodes, start + k, end)?))
}

/// The root of the first `size` leaves.
pub fn root(nodes: &impl Nodes, size: u64) -> Result<Hash, AuditError> {
    if size == 0 { Ok(empty_root()) } else { subtree(nodes, 0, size) }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1, `PATH`), leaf to root.
pub fn inclusion_proof(nodes: &impl Nodes, size: u64, index: u64) -> Result<Vec<Hash>, AuditError> {
    if index >= size {
        return Err(AuditError::Malformed("leaf index beyond the tree"));
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(nodes: &impl Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), AuditError> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m - start < k {
        path(nodes, m, start, start + k, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        path(nodes, m, start + k, end, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `old` and `new` leaves
/// (`0 < old ≤ new`; RFC 9162 §2.1.4.1, `PROOF`).
pub fn consistency_proof(nodes: &impl Nodes, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
    if old == 0 || old > new {
        return Err(AuditError::Malformed("consistency proof sizes"));
    }
    let mut out = Vec::new();
    if old < new {
        subproof(nodes, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    nodes: &impl Nodes,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), AuditError> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, out)?;
        out.push(subtree(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, out)?;
        out.push(subtree(nodes, start, start + k)?);
    }
    Ok(())
}

fn ct_root(root: &Hash, size: u64) -> ct_merkle::RootHash<sha2::Sha256> {
    ct_merkle::RootHash::new((*root).into(), size)
}

/// The largest tree a proof is checked against: far beyond any log, and
/// small enough that no size arithmetic overflows (`ct-merkle` counts
/// nodes as twice the leaves; a size near `u64::MAX` overflowed it — found
/// by the `fuzzed` tests).
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Checks that `leaf` (the event's bytes) is leaf `index` of the tree of
/// `size` leaves with root `root`. The root and size must come from a
/// verified [`Checkpoint`]: a root alone does not bind a size.
pub fn verify_inclusion(leaf: &[u8], index: u64, size: u64, root: &Hash, proof: &[Hash]) -> Result<(), AuditError> {
    if size > MAX_TREE_SIZE || index >= size {
        return Err(AuditError::Inclusion);
    }
    let proof = ct_merkle::InclusionProof::<sha2::Sha256>::try_from_bytes(proof.concat())
        .map_err(|_| AuditError::Malformed("inclusion proof"))?;
    ct_root(root, size).verify_inclusion(&leaf, index, &proof).map_err(|_| AuditError::Inclusion)
}

/// Checks that the tree of `new` leaves (root `new_root`) extends the tree
/// of `old` leaves (root `old_root`).
pub fn verify_consistency(
    old: u64,
    old_root: &Hash,
    new: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    if old > new || new > MAX_TREE_SIZE {
        return Err(AuditError::Consistency);
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root { Ok(()) } else { Err(AuditError::Consistency) };
    }
    if old == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() && *old_root == empty_root() { Ok(()) } else { Err(AuditError::Consistency) };
    }
    let proof = ct_merkle::ConsistencyProof::<sha2::Sha256>::try_from_bytes(proof.concat())
        .map_err(|_| AuditError::Malformed("consistency proof"))?;
    ct_root(new_root, new).verify_consistency(&ct_root(old_root, old), &proof).map_err(|_| AuditError::Consistency)
}

/// The right edge of a log: the perfect subtrees that cover its leaves,
/// largest first. Appending a leaf returns the subtrees it completes, which
/// the log stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    edge: Vec<(u8, Hash)>,
}

impl CompactRange {
    /// The right edge of a stored log of `size` leaves.
    pub fn load(nodes: &impl Nodes, size: u64) -> Result<Self, AuditError> {
        let mut edge = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                edge.push((level, nodes.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(CompactRange { size, edge })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (its hash); returns every perfect subtree completed,
    /// the leaf first: `(level, index, hash)`.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let mut done = vec![(0, self.size, leaf)];
        let (mut level, mut hash) = (0u8, leaf);
        while let Some(&(l, left)) = self.edge.last() {
            if l != level {
                break;
            }
            self.edge.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            done.push((level, self.size >> level, hash));
        }
        self.edge.push((level, hash));
        self.size += 1;
        done
    }

    /// The root of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.edge.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

// ------------------------------------------------------------------ events --

/// One audit event, shaped like a FHIR AuditEvent / IHE BALP record: who
/// (with role and credential), did what, to which entity, for which
/// tenant, why (purpose of use, break-glass), with what outcome, from
/// where, when. Patients appear only as index tokens; no PHI.
///
/// Its leaf in the log is its JSON ([`AuditEvent::to_leaf`]): fields in
/// this order, absent ones left out, so the bytes are stable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// UUIDv7.
    pub id: String,
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    pub recorded: String,
    /// `rest`, `mllp`, `core`, `admin` or `security`.
    pub category: String,
    /// What was done: `partners.add`, `keys.rotate`, `transactions.read`, …
    pub code: String,
    /// `C`, `R`, `U`, `D` or `E` (execute).
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The answer given (HTTP status, `AA`/`AE`/`AR`, an exit code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub actor: AuditActor,
    /// The client's address, or `cli` for a command on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// HL7 v3 PurposeOfUse code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The break-glass session this was done under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// The partner whose data it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<AuditEntity>,
    /// The patients the event concerns, as index tokens (a read of a
    /// transaction discloses every patient in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditActor {
    /// A partner id, an operator's account, a service.
    pub principal: String,
    /// `partner`, `user` or `service`.
    pub kind: String,
    /// `submitter`, `operator`, `auditor` or `admin`.
    pub role: String,
    /// The credential used (an API key's id, a certificate fingerprint);
    /// never the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// `api_key`, `mtls` or `host` (a command run on the host).
    pub auth: String,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntity {
    /// `transaction`, `ack`, `payload`, `dead_letter`, `partner`, `key`,
    /// `audit`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl AuditEvent {
    /// A new event recorded now.
    pub fn new(category: &str, code: &str, action: &str, actor: AuditActor) -> Self {
        // `2026-12-07T22:41:05.123Z`: humantime writes the digits directly,
        // a fraction of the cost of a format description (once per request).
        let recorded = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            recorded,
            category: category.into(),
            code: code.into(),
            action: action.into(),
            outcome: "success".into(),
            status: None,
            actor,
            source: None,
            purpose: None,
            break_glass: None,
            tenant: None,
            entity: Vec::new(),
            patients: Vec::new(),
            request_id: None,
        }
    }

    /// Its leaf bytes.
    pub fn to_leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The partition of [`crate::ports::Table::AuditStaged`] that holds staged
/// events.
pub const STAGED_PARTITION: &str = "events";

/// The write that stages `event` in the intake's own commit: durable, and
/// atomically so, exactly when the intake is. Its key is the event's id (a
/// UUIDv7, so staged events sort about in the order they were made; fresh,
/// so the write is unconditional and reads nothing first).
pub fn staged_write(event: &AuditEvent) -> crate::ports::WriteOp {
    crate::ports::WriteOp::Put {
        key: crate::ports::Key::new(crate::ports::Table::AuditStaged, STAGED_PARTITION, event.id.clone()),
        value: bytes::Bytes::from(event.to_leaf()),
        expires_at: None,
        condition: crate::ports::Condition::None,
        owner: None,
    }
}

/// Where a service's audit events go: durable when `append` returns, so an
/// answer is sent only after its event is recorded.
///
/// A sink may also take an event **staged** in the data's store, in the
/// same atomic write as the effect it records (an accepted submission's
/// [`staged_write`]): the event is then durable exactly when the effect
/// is, with no write of its own on the request's path, and the sink moves
/// it into the log soon after ([`AuditSink::move_staged`]). Whatever reads
/// the log (search, proofs, checkpoints, size) moves what is staged first,
/// so it sees every event whose answer went out.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Appends an event; returns its sequence number once durable.
    async fn append(&self, event: &AuditEvent) -> crate::PortResult<u64>;
    /// Whether this sink moves events staged with an intake into its log
    /// (if not, every event is appended).
    fn takes_staged(&self) -> bool {
        false
    }
    /// Moves staged events into the log; returns how many.
    async fn move_staged(&self) -> crate::PortResult<usize> {
        Ok(0)
    }
    /// The newest checkpoint's signed note, if any.
    async fn latest_checkpoint(&self) -> crate::PortResult<Option<String>>;
    /// How many events the log holds.
    async fn size(&self) -> crate::PortResult<u64>;
    /// Signs a checkpoint of the log as it stands now (after a break-glass
    /// event: it cannot then be cut off unnoticed); returns its note.
    async fn checkpoint(&self) -> crate::PortResult<String>;
    /// The note of the checkpoint of exactly `size` events, if one was
    /// signed.
    async fn checkpoint_note(&self, size: u64) -> crate::PortResult<Option<String>>;
    /// Events matching `query`, with their indices, oldest first: at most
    /// `limit`, from at most [`MAX_SCAN`] events read; `next` says where to
    /// go on from when it stopped before the end of the log.
    async fn search(&self, query: &AuditQuery, limit: usize) -> crate::PortResult<AuditPage>;
    /// The inclusion proof of event `index` in the tree of `size` events.
    async fn inclusion_proof(&self, index: u64, size: u64) -> crate::PortResult<Vec<Hash>>;
    /// The consistency proof between the trees of `old` and `new` events.
    async fn consistency_proof(&self, old: u64, new: u64) -> crate::PortResult<Vec<Hash>>;
}

/// Most events one search reads: its work is bounded whatever the filter.
pub const MAX_SCAN: usize = 100_000;

/// A page of search results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub events: Vec<(u64, AuditEvent)>,
    /// The last index read, when the search stopped before the end of the
    /// log (pass it as `after` to go on).
    pub next: Option<u64>,
}

/// What an auditor looks for (every field optional; all given must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The acting principal.
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub patient_token: Option<String>,
    pub purpose: Option<String>,
    /// A break-glass session id, or `any` for every event under one.
    pub break_glass: Option<String>,
    /// Recorded at or after (as [`instant`] writes it).
    pub from: Option<String>,
    /// Recorded before.
    pub to: Option<String>,
    /// Only events after this index.
    pub after: Option<u64>,
}

impl AuditQuery {
    /// Whether an event matches (what a store without an index does).
    pub fn matches(&self, index: u64, e: &AuditEvent) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        self.after.is_none_or(|a| index > a)
            && eq(&self.actor, Some(&e.actor.principal))
            && eq(&self.tenant, e.tenant.as_deref())
            && self.patient_token.as_deref().is_none_or(|t| e.patients.iter().any(|p| p == t))
            && eq(&self.purpose, e.purpose.as_deref())
            && match self.break_glass.as_deref() {
                None => true,
                Some("any") => e.break_glass.is_some(),
                Some(id) => e.break_glass.as_deref() == Some(id),
            }
            && self.from.as_deref().is_none_or(|f| e.recorded.as_str() >= f)
            && self.to.as_deref().is_none_or(|t| e.recorded.as_str() < t)
    }
}

/// An RFC 3339 time as events record it (UTC, milliseconds), so that
/// times compare as strings; `None` if it is not RFC 3339.
pub fn instant(rfc3339: &str) -> Option<String> {
    const MILLIS: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    t.to_offset(time::UtcOffset::UTC).format(MILLIS).ok()
}

/// The tree size a checkpoint note states (its second line), without
/// checking its signature.
pub fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

/// Hashes as base64, as proofs travel in JSON.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

/// Hashes from base64; `None` if one is not a 32-byte hash.
pub fn decode_hashes(encoded: &[String]) -> Option<Vec<Hash>> {
    encoded.iter().map(|s| B64.decode(s).ok().and_then(|b| b.try_into().ok())).collect()
}

// ------------------------------------------------------------ checkpoints --

/// A signed-note signature type: Ed25519.
const ED25519: u8 = 0x01;

/// The 4-byte key id of a signed-note key: `SHA-256(name ‖ 0x0A ‖ type ‖
/// public key)[:4]`.
fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[ED25519], public]);
    [h[0], h[1], h[2], h[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && name.chars().all(|c| c.is_ascii_graphic())
}

/// A log's signing key (Ed25519), from a 32-byte seed kept outside the
/// data directory.
pub struct LogSigner {
    name: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl LogSigner {
    /// `name` is the log's origin (a schemeless URL-like string, no `+`).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, AuditError> {
        if !valid_name(name) {
            return Err(AuditError::Malformed("log name"));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| AuditError::Malformed("signing key"))?;
        Ok(LogSigner { name: name.to_string(), pair })
    }

    /// A fresh 32-byte seed.
    pub fn generate_seed() -> Result<[u8; 32], AuditError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| AuditError::Log("random seed".into()))?;
        Ok(seed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key in the signed-note `vkey` form
    /// (`<name>+<key id hex>+<base64(0x01 ‖ public key)>`), what an auditor
    /// keeps to check checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        VerifierKey { name: self.name.clone(), id: key_id(&self.name, &public), public }
    }

    /// Signs a checkpoint of the tree of `size` leaves with root `root`.
    pub fn sign(&self, size: u64, root: &Hash) -> Checkpoint {
        let body = Checkpoint::body(&self.name, size, root);
        let sig = self.pair.sign(body.as_bytes());
        let id = self.verifier().id;
        let mut line = id.to_vec();
        line.extend_from_slice(sig.as_ref());
        Checkpoint {
            origin: self.name.clone(),
            size,
            root: *root,
            note: format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(line)),
        }
    }
}

/// Loads the log's signing key from `file` (two lines: the log's origin,
/// then the 32-byte Ed25519 seed in hex), making one with a fresh origin
/// (`clearway/audit/<8 hex digits>`) if there is none. Like the root key,
/// the file belongs outside the data directory.
pub fn load_or_create_signer(file: &std::path::Path) -> Result<LogSigner, AuditError> {
    let parse = signer_from_text;
    match std::fs::read_to_string(file) {
        Ok(text) => return parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AuditError::Log(format!("read {}: {e}", file.display()))),
    }
    let seed = LogSigner::generate_seed()?;
    let origin = format!("clearway/audit/{}", &hex::encode(sha256(&[&seed, b"origin"]))[..8]);
    let text = format!("{origin}\n{}\n", hex::encode(seed));
    crate::partners::create_secret_file(file, text.as_bytes())
        .map_err(|(path, e)| AuditError::Log(format!("create {}: {e}", path.display())))?;
    // Made here or by a process that raced us: the file is the key.
    let text = std::fs::read_to_string(file).map_err(|e| AuditError::Log(format!("read {}: {e}", file.display())))?;
    parse(&text)
}

/// A signer from an audit key file's contents: the origin line, then the
/// seed as 64 hex digits.
pub fn signer_from_text(text: &str) -> Result<LogSigner, AuditError> {
    let bad = || AuditError::Malformed("audit key (origin line, then 64 hex digits)");
    let mut lines = text.lines();
    let (Some(origin), Some(seed)) = (lines.next(), lines.next()) else { return Err(bad()) };
    let seed: [u8; 32] = hex::decode(seed.trim()).ok().and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
    LogSigner::from_seed(origin.trim(), &seed)
}

/// The public half of a log's key, as an auditor holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl VerifierKey {
    /// Parses `<name>+<key id hex>+<base64(0x01 ‖ public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, AuditError> {
        let bad = || AuditError::Malformed("verifier key");
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        let key = B64.decode(key).map_err(|_| bad())?;
        if !valid_name(name) || key.len() != 33 || key[0] != ED25519 {
            return Err(bad());
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let want = key_id(name, &public);
        if hex::encode(want) != id.to_ascii_lowercase() {
            return Err(bad());
        }
        Ok(VerifierKey { name: name.to_string(), id: want, public })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ED25519];
        key.extend_from_slice(&self.public);
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(key))
    }
}

/// A signed checkpoint: the log's origin, size and root, and the note as
/// signed (C2SP `tlog-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The whole signed note: body, blank line, signature lines.
    pub note: String,
}

impl Checkpoint {
    fn body(origin: &str, size: u64, root: &Hash) -> String {
        format!("{origin}\n{size}\n{}\n", B64.encode(root))
    }

    /// Parses a signed note and checks it is signed by `key` (other
    /// signature lines, e.g. cosigners', are ignored; one by `key` that does
    /// not verify rejects the note).
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, AuditError> {
        let bad = |what| AuditError::Malformed(what);
        let (body, sigs) = note.split_once("\n\n").ok_or(bad("checkpoint note"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(bad("checkpoint body"));
        };
        if origin != key.name {
            return Err(bad("checkpoint origin"));
        }
        let size: u64 = size.parse().map_err(|_| bad("checkpoint size"))?;
        if size.to_string() != body.lines().nth(1).unwrap_or_default() {
            return Err(bad("checkpoint size"));
        }
        let root: Hash = B64.decode(root).ok().and_then(|r| r.try_into().ok()).ok_or(bad("checkpoint root"))?;
        let mut signed = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else { return Err(bad("signature line")) };
            let (name, sig) = rest.split_once(' ').ok_or(bad("signature line"))?;
            let sig = B64.decode(sig).map_err(|_| bad("signature"))?;
            if name != key.name || sig.len() < 4 || sig[..4] != key.id {
                continue;
            }
            signature::UnparsedPublicKey::new(&signature::ED25519, &key.public)
                .verify(body.as_bytes(), &sig[4..])
                .map_err(|_| AuditError::Signature)?;
            signed = true;
        }
        if !signed {
            return Err(AuditError::Signature);
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, note: note.to_string() })
    }
}

// ------------------------------------------------------------ verification --

/// A stored log as a verifier reads it.
pub trait LogReader: Nodes {
    /// How many events it holds.
    fn size(&self) -> Result<u64, AuditError>;
    /// Events `[from, from + limit)` (fewer at the end), in order.
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, AuditError>;
    /// The signed notes of the checkpoints it kept, oldest first.
    fn checkpoints(&self) -> Result<Vec<String>, AuditError>;
    /// The lowest level whose subtree hashes it stores (the lower ones it
    /// recomputes from the events, so a verifier has none to compare).
    fn stored_from_level(&self) -> u8 {
        0
    }
    /// Stored nodes of one level from index `from`, consecutive, at most
    /// `limit` (fewer at the end or at a gap): a verifier reads them in
    /// pages rather than one by one.
    fn nodes_at(&self, level: u8, from: u64, limit: usize) -> Result<Vec<Hash>, AuditError> {
        let mut out = Vec::new();
        for index in from..from + limit as u64 {
            match self.node(level, index) {
                Ok(h) => out.push(h),
                Err(AuditError::MissingNode { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Stored nodes read level by level, a page at a time, in the order a
/// verifier recomputes them (each level's indices in increasing order).
struct NodePages<'a, L: LogReader> {
    log: &'a L,
    /// Per level: the index of the first buffered node, and the buffer.
    levels: Vec<(u64, std::collections::VecDeque<Hash>)>,
}

impl<L: LogReader> NodePages<'_, L> {
    fn next(&mut self, level: u8, index: u64) -> Result<Option<Hash>, AuditError> {
        const PAGE: usize = 4096;
        let l = usize::from(level);
        if self.levels.len() <= l {
            self.levels.resize_with(l + 1, || (0, std::collections::VecDeque::new()));
        }
        let (first, buf) = &mut self.levels[l];
        if *first != index || buf.is_empty() {
            *buf = self.log.nodes_at(level, index, PAGE)?.into();
            *first = index;
        }
        let h = buf.pop_front();
        *first += 1;
        Ok(h)
    }
}

/// What a full verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub size: u64,
    pub root: String,
    /// Checkpoints checked: the log's own and those held outside.
    pub checkpoints: usize,
    /// The largest checkpointed size.
    pub checkpointed: u64,
    /// Events after the last checkpoint: not yet anchored.
    pub unanchored: u64,
}

/// Where and how a log fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("event {seq}: {what}")]
    Event { seq: u64, what: String },
    #[error("checkpoint at size {size}: {what}")]
    Checkpoint { size: u64, what: String },
    #[error("the log holds {size} events, fewer than a checkpoint at {checkpoint} (truncated or rolled back)")]
    Truncated { size: u64, checkpoint: u64 },
    #[error("two checkpoints at size {size} name different roots (split view)")]
    SplitView { size: u64 },
    #[error("{0}")]
    Unreadable(AuditError),
}

/// Recomputes the whole log from its events: every stored node, every
/// checkpoint the log kept and every checkpoint held `outside` it (an
/// auditor's or partner's copies, the S3 Object Lock copies) must agree
/// with the events, and every checkpoint must be signed by `key`.
///
/// This catches an edited, deleted, inserted or reordered event below the
/// newest checkpoint, a log truncated below it, a tree recomputed without
/// the key, and, given a checkpoint held outside, a history rewritten and
/// re-signed with the key or rolled back to an older copy.
pub fn verify_log(log: &impl LogReader, key: &VerifierKey, outside: &[String]) -> Result<VerifyReport, Finding> {
    let size = log.size().map_err(Finding::Unreadable)?;
    // Every checkpoint, by size; two that disagree are a split view.
    let mut wanted: std::collections::BTreeMap<u64, Hash> = std::collections::BTreeMap::new();
    let notes = log.checkpoints().map_err(Finding::Unreadable)?;
    let count = notes.len() + outside.len();
    for note in notes.iter().chain(outside) {
        let c = Checkpoint::open(note, key).map_err(|e| Finding::Checkpoint { size: 0, what: e.to_string() })?;
        if let Some(root) = wanted.insert(c.size, c.root)
            && root != c.root
        {
            return Err(Finding::SplitView { size: c.size });
        }
    }
    let checkpointed = wanted.keys().next_back().copied().unwrap_or(0);
    if checkpointed > size {
        return Err(Finding::Truncated { size, checkpoint: checkpointed });
    }
    if let Some(root) = wanted.get(&0)
        && *root != empty_root()
    {
        return Err(Finding::Checkpoint { size: 0, what: "not the empty tree's root".into() });
    }
    let mut range = CompactRange::default();
    let mut stored = NodePages { log, levels: Vec::new() };
    let lowest = log.stored_from_level();
    const PAGE: usize = 4096;
    while range.size() < size {
        let page = log.events(range.size(), PAGE).map_err(Finding::Unreadable)?;
        if page.is_empty() {
            return Err(Finding::Event { seq: range.size(), what: "missing".into() });
        }
        for event in page {
            let seq = range.size();
            for (level, index, hash) in range.push(leaf_hash(&event)) {
                if level >= lowest && stored.next(level, index).map_err(Finding::Unreadable)? != Some(hash) {
                    return Err(Finding::Event { seq, what: format!("stored node ({level}, {index}) differs") });
                }
            }
            if let Some(root) = wanted.get(&range.size())
                && *root != range.root()
            {
                return Err(Finding::Checkpoint {
                    size: range.size(),
                    what: "its root is not the events' root: an event at or below it was changed".into(),
                });
            }
        }
    }
    Ok(VerifyReport {
        size,
        root: B64.encode(range.root()),
        checkpoints: count,
        checkpointed,
        unanchored: size - checkpointed,
    })
}

/// A log in memory: the reference the stores are tested against, and the
/// subject of the tamper suite.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    pub events: Vec<Vec<u8>>,
    pub nodes: std::collections::HashMap<(u8, u64), Hash>,
    pub checkpoints: Vec<String>,
    range: CompactRange,
}

impl MemLog {
    pub fn append(&mut self, event: &[u8]) -> u64 {
        let seq = self.events.len() as u64;
        self.events.push(event.to_vec());
        for (level, index, hash) in self.range.push(leaf_hash(event)) {
            self.nodes.insert((level, index), hash);
        }
        seq
    }

    pub fn root(&self) -> Hash {
        self.range.root()
    }

    pub fn checkpoint(&mut self, signer: &LogSigner) -> Checkpoint {
        let c = signer.sign(self.range.size(), &self.range.root());
        self.checkpoints.push(c.note.clone());
        c
    }

    /// Rebuilds nodes and the right edge from the events (what an attacker
    /// with write access does after changing events).
    pub fn recompute(&mut self) {
        let events = std::mem::take(&mut self.events);
        self.nodes.clear();
        self.range = CompactRange::default();
        for e in &events {
            self.append(e);
        }
    }
}

impl Nodes for MemLog {
    fn node(&self, level: u8, index: u64) -> Result<Hash, AuditError> {
        self.nodes.get(&(level, index)).copied().ok_or(AuditError::MissingNode { level, index })
    }
}

impl LogReader for MemLog {
    fn size(&self) -> Result<u64, AuditError> {
        Ok(self.events.len() as u64)
    }
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, AuditError> {
        Ok(self.events.iter().skip(from as usize).take(limit).cloned().collect())
    }
    fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        Ok(self.checkpoints.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain recursive definition (RFC 9162 §2.1.1), as an oracle.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn log_of(n: usize) -> MemLog {
        let mut log = MemLog::default();
        for i in 0..n {
            log.append(format!("event {i}").as_bytes());
        }
        log
    }

    #[test]
    fn roots_match_the_rfc_6962_test_vectors() {
        // The leaves and roots of the RFC 6962 reference tests (the
        // certificate-transparency and transparency-dev test data).
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut log = MemLog::default();
        for (leaf, want) in leaves.iter().zip(roots) {
            log.append(leaf);
            assert_eq!(hex::encode(log.root()), want, "size {}", log.events.len());
            assert_eq!(hex::encode(root(&log, log.events.len() as u64).unwrap()), want);
        }
    }

    #[test]
    fn roots_and_proofs_agree_with_the_definition_and_with_ct_merkle() {
        use ct_merkle::mem_backed_tree::MemoryBackedTree;
        let log = log_of(70);
        let mut other = MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
        for size in 1..=70u64 {
            other.push(log.events[size as usize - 1].clone());
            let r = root(&log, size).unwrap();
            assert_eq!(r, mth(&log.events[..size as usize]), "size {size}");
            assert_eq!(r.as_slice(), other.root().as_bytes().as_slice(), "size {size}");
            for index in 0..size {
                let proof = inclusion_proof(&log, size, index).unwrap();
                assert_eq!(proof.concat(), other.prove_inclusion(index as usize).as_bytes(), "{index} of {size}");
                verify_inclusion(&log.events[index as usize], index, size, &r, &proof).unwrap();
            }
            for old in 1..size {
                let proof = consistency_proof(&log, old, size).unwrap();
                let theirs = other.prove_consistency((size - old) as usize);
                assert_eq!(proof.concat(), theirs.as_bytes(), "{old} → {size}");
                verify_consistency(old, &root(&log, old).unwrap(), size, &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn wrong_leaves_indices_roots_and_malformed_proofs_are_rejected() {
        let log = log_of(37);
        let r = root(&log, 37).unwrap();
        let proof = inclusion_proof(&log, 37, 5).unwrap();
        assert!(verify_inclusion(b"event 6", 5, 37, &r, &proof).is_err(), "another leaf");
        assert!(verify_inclusion(b"event 5", 6, 37, &r, &proof).is_err(), "another index");
        // (A root does not bind a size by itself: a proof for 37 leaves
        // checks against the same root claimed for 36. The signed
        // checkpoint binds them.)
        assert!(verify_inclusion(b"event 5", 5, 70, &r, &proof).is_err(), "a size with another shape");
        assert!(verify_inclusion(b"event 5", 5, 37, &root(&log, 36).unwrap(), &proof).is_err(), "another root");
        assert!(verify_inclusion(b"event 5", 5, 37, &r, &proof[1..]).is_err(), "too short");
        let mut long = proof.clone();
        long.push([0; 32]);
        assert!(verify_inclusion(b"event 5", 5, 37, &r, &long).is_err(), "too long");
        assert!(verify_inclusion(b"event 5", 37, 37, &r, &proof).is_err(), "beyond the tree");
        for i in 0..proof.len() {
            let mut bent = proof.clone();
            bent[i][7] ^= 1;
            assert!(verify_inclusion(b"event 5", 5, 37, &r, &bent).is_err());
        }
        let c = consistency_proof(&log, 13, 37).unwrap();
        let r13 = root(&log, 13).unwrap();
        verify_consistency(13, &r13, 37, &r, &c).unwrap();
        // The second size must be the one the proof was made for (the
        // Haskell `hash-tree` bug: a verifier that did not consume it all).
        assert!(verify_consistency(13, &r13, 36, &root(&log, 36).unwrap(), &c).is_err());
        assert!(verify_consistency(12, &root(&log, 12).unwrap(), 37, &r, &c).is_err());
        assert!(verify_consistency(13, &r13, 37, &r, &c[..c.len() - 1]).is_err());
        let mut long = c.clone();
        long.push(r);
        assert!(verify_consistency(13, &r13, 37, &r, &long).is_err());
        assert!(verify_consistency(37, &r, 13, &r13, &c).is_err(), "a smaller tree does not extend a larger one");
        assert!(verify_consistency(37, &r, 37, &r, &[]).is_ok());
        assert!(verify_consistency(37, &r, 37, &r13, &[]).is_err());
        assert!(verify_consistency(0, &empty_root(), 37, &r, &[]).is_ok());
        assert!(consistency_proof(&log, 0, 37).is_err() && consistency_proof(&log, 38, 37).is_err());
        assert!(inclusion_proof(&log, 37, 37).is_err());
    }

    /// Regression: a size near `u64::MAX` overflowed inside `ct-merkle`
    /// (a panic in debug builds, wrapped arithmetic in release).
    #[test]
    fn sizes_beyond_any_log_are_refused_not_a_panic() {
        let log = log_of(5);
        let r = root(&log, 5).unwrap();
        let proof = inclusion_proof(&log, 5, 2).unwrap();
        for size in [u64::MAX, u64::MAX - 1, MAX_TREE_SIZE + 1, 1 << 63] {
            assert!(verify_inclusion(b"event 2", 2, size, &r, &proof).is_err());
            assert!(verify_consistency(3, &r, size, &r, &proof).is_err());
        }
    }

    #[test]
    fn an_event_is_stable_json_without_absent_fields() {
        let actor = AuditActor {
            principal: "ops".into(),
            kind: "user".into(),
            role: "admin".into(),
            credential: None,
            auth: "host".into(),
        };
        let mut e = AuditEvent::new("admin", "keys.rotate", "U", actor);
        e.tenant = Some("acme".into());
        e.entity.push(AuditEntity { kind: "key".into(), id: "acme/v2".into() });
        let leaf = e.to_leaf();
        let text = String::from_utf8(leaf.clone()).unwrap();
        assert!(text.starts_with(&format!("{{\"id\":\"{}\",\"recorded\":\"", e.id)), "{text}");
        assert!(text.contains("\"entity\":[{\"type\":\"key\",\"id\":\"acme/v2\"}]"), "{text}");
        assert!(!text.contains("purpose") && !text.contains("null"), "{text}");
        let back: AuditEvent = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_leaf(), leaf, "the bytes round-trip");
        assert!(e.recorded.ends_with('Z') && e.recorded.len() == "2026-12-06T15:00:00.000Z".len(), "{}", e.recorded);
    }

    /// Events record their time with humantime and queries normalise theirs
    /// with `instant` (the time crate, which takes any year): the two forms
    /// must be the same for times to compare as strings.
    #[test]
    fn an_events_time_is_in_the_form_queries_compare_with() {
        let actor = AuditActor {
            principal: "ops".into(),
            kind: "user".into(),
            role: "operator".into(),
            credential: None,
            auth: "api_key".into(),
        };
        let e = AuditEvent::new("rest", "GET /v1/transactions", "R", actor);
        assert_eq!(instant(&e.recorded).as_deref(), Some(e.recorded.as_str()));
    }

    #[test]
    fn the_right_edge_reloads_from_stored_nodes() {
        for n in [0usize, 1, 2, 3, 7, 8, 9, 100, 255, 256, 257] {
            let log = log_of(n);
            let loaded = CompactRange::load(&log, n as u64).unwrap();
            assert_eq!(loaded, log.range, "size {n}");
            assert_eq!(loaded.root(), root(&log, n as u64).unwrap());
        }
    }

    fn signer(name: &str) -> LogSigner {
        LogSigner::from_seed(name, &LogSigner::generate_seed().unwrap()).unwrap()
    }

    #[test]
    fn checkpoints_are_signed_notes_that_verify_only_with_their_key() {
        let s = signer("example.org/audit/test");
        let key = s.verifier();
        assert_eq!(VerifierKey::parse(&key.to_string()).unwrap(), key);
        let log = log_of(10);
        let c = s.sign(10, &log.root());
        let lines: Vec<&str> = c.note.lines().collect();
        assert_eq!(lines[0], "example.org/audit/test");
        assert_eq!(lines[1], "10");
        assert_eq!(lines[2], B64.encode(log.root()));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} example.org/audit/test "));
        assert_eq!(Checkpoint::open(&c.note, &key).unwrap(), c);
        assert_eq!(Checkpoint::open(&c.note, &signer("example.org/audit/test").verifier()), Err(AuditError::Signature));
        let forged = c.note.replacen("\n10\n", "\n11\n", 1);
        assert_eq!(Checkpoint::open(&forged, &key), Err(AuditError::Signature));
        let cosigned = format!("{}\u{2014} witness.example AAAAAAAA\n", c.note);
        assert!(Checkpoint::open(&cosigned, &key).is_ok(), "another signer's line is ignored");
        assert!(Checkpoint::open("garbage", &key).is_err());
        assert!(Checkpoint::open(&c.note.replacen("\n10\n", "\n010\n", 1), &key).is_err());
        assert!(VerifierKey::parse("name+00000000+AAAA").is_err());
        assert!(LogSigner::from_seed("bad name", &[0; 32]).is_err());
    }

    /// A small deterministic generator for the tamper suite.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Attack {
        Edit,
        Delete,
        Insert,
        Swap,
        TruncateBelowCheckpoint,
        RecomputeWithoutKey,
        RewriteAndResign,
        RollBack,
        SplitView,
    }

    /// A log of 20-120 events checkpointed every 16 and at a random
    /// point; the first checkpoint is also held outside (an auditor's copy).
    fn scenario(rng: &mut Rng, s: &LogSigner) -> (MemLog, Vec<String>) {
        let mut log = MemLog::default();
        let n = 20 + rng.below(100);
        let extra = rng.below(n);
        let mut outside = Vec::new();
        for i in 0..n {
            log.append(format!("{{\"seq\":{i},\"actor\":\"op-{}\"}}", rng.below(1000)).as_bytes());
            if (i + 1) % 16 == 0 || i == extra {
                let c = log.checkpoint(s);
                if outside.is_empty() {
                    outside.push(c.note);
                }
            }
        }
        (log, outside)
    }

    /// Applies an attack; returns false when the scenario gives it no room
    /// (never, with the sizes above).
    fn attack(a: Attack, log: &mut MemLog, rng: &mut Rng, s: &LogSigner, outside: &[String]) {
        let key = s.verifier();
        let last = log.checkpoints.iter().map(|n| Checkpoint::open(n, &key).unwrap().size).max().unwrap();
        let below = |rng: &mut Rng| rng.below(last) as usize;
        match a {
            Attack::Edit => {
                let i = below(rng);
                let e = &mut log.events[i];
                let at = rng.below(e.len() as u64) as usize;
                e[at] ^= 1 << rng.below(8);
            }
            Attack::Delete => {
                log.events.remove(below(rng));
            }
            Attack::Insert => {
                log.events.insert(below(rng), b"{\"forged\":true}".to_vec());
            }
            Attack::Swap => {
                let i = below(rng);
                let mut j = below(rng);
                while log.events[j] == log.events[i] {
                    j = (j + 1) % last as usize;
                }
                log.events.swap(i, j);
            }
            Attack::TruncateBelowCheckpoint => {
                log.events.truncate(below(rng));
                log.recompute();
            }
            Attack::RecomputeWithoutKey => {
                let i = below(rng);
                log.events[i] = b"{\"rewritten\":true}".to_vec();
                log.recompute();
            }
            Attack::RewriteAndResign => {
                // With the key: every event from the first checkpoint's
                // size down rewritten, the tree recomputed and every kept
                // checkpoint re-signed. Only a copy held outside catches it.
                let first = Checkpoint::open(&outside[0], &key).unwrap().size as usize;
                let i = rng.below(first as u64) as usize;
                log.events[i] = b"{\"rewritten\":true}".to_vec();
                let sizes: Vec<u64> = log.checkpoints.iter().map(|n| Checkpoint::open(n, &key).unwrap().size).collect();
                log.recompute();
                log.checkpoints = sizes.iter().map(|&size| s.sign(size, &root(&*log, size).unwrap()).note).collect();
            }
            Attack::RollBack => {
                // An older copy of the whole log, from before the outside
                // checkpoint, checkpoints and all.
                let first = Checkpoint::open(&outside[0], &key).unwrap().size;
                let keep = rng.below(first) as usize;
                log.events.truncate(keep);
                log.recompute();
                log.checkpoints.clear();
                if keep > 0 {
                    log.checkpoint(s);
                }
            }
            Attack::SplitView => {
                // With the key: a second checkpoint at a checkpointed size
                // naming another root (a forked view shown to someone else).
                let size = Checkpoint::open(&log.checkpoints[0], &key).unwrap().size;
                let mut fork = MemLog::default();
                for e in log.events.iter().take(size as usize - 1) {
                    fork.append(e);
                }
                fork.append(b"{\"fork\":true}");
                log.checkpoints.push(s.sign(size, &fork.root()).note);
            }
        }
    }

    #[test]
    fn every_tampering_is_detected_and_untouched_logs_verify() {
        let s = signer("example.org/audit/tamper");
        let key = s.verifier();
        let attacks = [
            Attack::Edit,
            Attack::Delete,
            Attack::Insert,
            Attack::Swap,
            Attack::TruncateBelowCheckpoint,
            Attack::RecomputeWithoutKey,
            Attack::RewriteAndResign,
            Attack::RollBack,
            Attack::SplitView,
        ];
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        for run in 0..1000 {
            let (log, outside) = scenario(&mut rng, &s);
            let report =
                verify_log(&log, &key, &outside).unwrap_or_else(|e| panic!("run {run}: an untouched log fails: {e}"));
            assert_eq!(report.size, log.events.len() as u64);
            assert_eq!(report.unanchored, report.size - report.checkpointed);
            for a in attacks {
                let mut bad = log.clone();
                attack(a, &mut bad, &mut rng, &s, &outside);
                assert!(verify_log(&bad, &key, &outside).is_err(), "run {run}: {a:?} not detected");
            }
        }
    }
}

/// Fuzz entry point for the proof verifiers and the checkpoint parsers
/// (`core/fuzz`, target `audit_proofs`). `data` picks a small real log, an
/// index and sizes, and bends the real proofs (bits flipped, hashes cut or
/// added); it is also read raw as sizes, an index, a leaf, proof hashes, a
/// signed note and a verifier key. Asserts that nothing panics and that a
/// proof is accepted only when it is the real one.
#[doc(hidden)]
pub fn fuzz_proofs(data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (k, v) in b.iter_mut().enumerate() {
            *v = byte(i + k);
        }
        u64::from_le_bytes(b)
    };
    let rest = data.get(16..).unwrap_or_default();
    let raw: Vec<Hash> = rest.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();

    // Raw: any sizes, index, root and proof.
    let any_root: Hash = raw.first().copied().unwrap_or([0; 32]);
    let _ = verify_inclusion(rest, word(0), word(8), &any_root, &raw);
    let _ = verify_consistency(word(0), &any_root, word(8), &any_root, &raw);
    let text = String::from_utf8_lossy(rest);
    let _ = VerifierKey::parse(&text);
    if let Ok(signer) = LogSigner::from_seed("fuzz.example/audit", &[7; 32]) {
        let _ = Checkpoint::open(&text, &signer.verifier());
        let note = signer.sign(u64::from(byte(0)), &any_root).note;
        // A real note with bytes changed is refused or reads the same.
        let mut bent = note.clone().into_bytes();
        if !bent.is_empty() {
            let at = usize::from(byte(1)) % bent.len();
            bent[at] ^= byte(2) | 1;
        }
        if let Ok(c) = Checkpoint::open(&String::from_utf8_lossy(&bent), &signer.verifier()) {
            let real = Checkpoint::open(&note, &signer.verifier()).ok();
            assert_eq!(real.map(|r| (r.size, r.root)), Some((c.size, c.root)), "a bent note read as another");
        }
    }

    // Real proofs of a small log, bent.
    let mut log = MemLog::default();
    let n = u64::from(byte(0) % 70) + 1;
    for i in 0..n {
        log.append(format!("event {i}").as_bytes());
    }
    let index = u64::from(byte(1)) % n;
    let old = u64::from(byte(2)) % n + 1;
    let bend = |proof: &[Hash]| -> Vec<Hash> {
        let mut p = proof.to_vec();
        match byte(3) % 4 {
            0 if !p.is_empty() => {
                let at = usize::from(byte(4)) % p.len();
                p[at][usize::from(byte(5)) % 32] ^= byte(6) | 1;
            }
            1 => {
                p.truncate(usize::from(byte(4)) % (p.len() + 1));
            }
            2 => p.extend(raw.iter().take(usize::from(byte(4) % 4) + 1)),
            _ => {}
        }
        p
    };
    let (Ok(proof), Ok(n_root)) = (inclusion_proof(&log, n, index), root(&log, n)) else {
        panic!("a real log has proofs");
    };
    let bent = bend(&proof);
    let leaf = format!("event {index}");
    let ok = verify_inclusion(leaf.as_bytes(), index, n, &n_root, &bent).is_ok();
    assert_eq!(ok, bent == proof, "inclusion: accepted only the real proof");
    if old < n {
        let (Ok(proof), Ok(old_root)) = (consistency_proof(&log, old, n), root(&log, old)) else {
            panic!("a real log has proofs");
        };
        let bent = bend(&proof);
        let ok = verify_consistency(old, &old_root, n, &n_root, &bent).is_ok();
        assert_eq!(ok, bent == proof, "consistency: accepted only the real proof");
    }
}

/// The verifiers under random input: proofs of any length and content,
/// sizes and indices anywhere in `u64`, notes and keys of arbitrary text.
/// Never a panic; a proof that is not the real one is never accepted.
#[cfg(test)]
mod fuzzed {
    use super::*;
    use proptest::prelude::*;

    fn log_of(n: u64) -> MemLog {
        let mut log = MemLog::default();
        for i in 0..n {
            log.append(format!("event {i}").as_bytes());
        }
        log
    }

    fn hashes() -> impl Strategy<Value = Vec<Hash>> {
        proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 0..80)
    }

    fn sizes() -> impl Strategy<Value = u64> {
        prop_oneof![0..300u64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1), Just(1u64 << 63)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The fuzz target's harness, on random input.
        #[test]
        fn the_fuzz_harness_holds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_proofs(&data);
        }


        #[test]
        fn inclusion_never_panics_and_accepts_only_the_real_proof(
            n in 1..200u64, pick in any::<u64>(), size in sizes(), index in sizes(), junk in hashes(), flip in any::<(usize, u8)>()
        ) {
            let log = log_of(n);
            let i = pick % n;
            let root_n = root(&log, n).unwrap();
            let real = inclusion_proof(&log, n, i).unwrap();
            let leaf = format!("event {i}");
            prop_assert!(verify_inclusion(leaf.as_bytes(), i, n, &root_n, &real).is_ok());
            // Arbitrary proofs, sizes and indices: an answer, never a panic,
            // and no acceptance unless it is the real proof.
            if verify_inclusion(leaf.as_bytes(), index, size, &root_n, &junk).is_ok() {
                prop_assert!(junk == real, "accepted a proof that is not the real one");
            }
            let _ = verify_inclusion(leaf.as_bytes(), i, n, &root_n, &junk);
            // One bit changed anywhere in the real proof: refused.
            if !real.is_empty() {
                let mut bent = real.clone();
                let (at, bit) = (flip.0 % real.len(), 1u8 << (flip.1 % 8));
                bent[at][at % 32] ^= bit;
                prop_assert!(verify_inclusion(leaf.as_bytes(), i, n, &root_n, &bent).is_err());
            }
            // Over-long: refused.
            let mut long = real.clone();
            long.extend(junk.iter().take(1));
            if long.len() > real.len() {
                prop_assert!(verify_inclusion(leaf.as_bytes(), i, n, &root_n, &long).is_err());
            }
        }

        #[test]
        fn consistency_never_panics_and_accepts_only_the_real_proof(
            new in 1..200u64, pick in any::<u64>(), a in sizes(), b in sizes(), junk in hashes()
        ) {
            let log = log_of(new);
            let old = 1 + pick % new;
            let (r_old, r_new) = (root(&log, old).unwrap(), root(&log, new).unwrap());
            let real = consistency_proof(&log, old, new).unwrap();
            prop_assert!(verify_consistency(old, &r_old, new, &r_new, &real).is_ok());
            if verify_consistency(a, &r_old, b, &r_new, &junk).is_ok() {
                let trivial = junk.is_empty() && a == b && r_old == r_new;
                prop_assert!(junk == real || trivial, "accepted a proof that is not the real one");
            }
            let mut long = real.clone();
            long.push(r_new);
            prop_assert!(verify_consistency(old, &r_old, new, &r_new, &long).is_err());
        }

        #[test]
        fn notes_and_keys_of_any_text_are_refused_or_read_never_a_panic(text in ".{0,400}", key in ".{0,120}") {
            let signer = LogSigner::from_seed("test.example/audit", &[3; 32]).unwrap();
            let _ = Checkpoint::open(&text, &signer.verifier());
            let _ = VerifierKey::parse(&key);
            let _ = signer_from_text(&text);
            // A real note with random text spliced in never opens as
            // another checkpoint (extra signature lines of other keys may
            // be ignored; the signed body may not change).
            let c = signer.sign(10, &[5; 32]);
            let at = text.len() % c.note.len();
            if c.note.is_char_boundary(at) {
                let spliced = format!("{}{}{}", &c.note[..at], text, &c.note[at..]);
                if let Ok(o) = Checkpoint::open(&spliced, &signer.verifier()) {
                    prop_assert_eq!((o.origin, o.size, o.root), (c.origin.clone(), c.size, c.root));
                }
            }
        }
    }
}
