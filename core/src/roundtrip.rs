//! Records of the payer round trip that intake and workers share: the
//! files payers send back and the operator's attention list.

use crate::BlobKey;
use crate::error::{ErrorKind, PortError, PortResult};
use crate::partners::Partners;
use crate::ports::{Condition, Key, Ports, Table, WriteOp};
use crate::records::encode_json;
use crate::records::timestamp;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

fn put(key: Key, value: Bytes, condition: Condition) -> WriteOp {
    WriteOp::Put { key, value, expires_at: None, condition, owner: None }
}

/// A file a payer sent (`files/<payer>`, sort key its SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayerFile {
    pub payer: String,
    pub sha256: String,
    /// The name it had at the payer (a name the payer chose: no PHI).
    pub name: String,
    pub size_bytes: u64,
    pub blob: String,
    /// `stored`, `applied`, `attention` (something in it matched nothing).
    pub state: String,
    pub received_at: String,
    /// What it held: `ta1`, `999`, `277ca`, `835`, …
    #[serde(default)]
    pub answers: Vec<String>,
    /// When a process took it to apply (Unix ms): another process leaves
    /// it alone for 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applying_since_ms: Option<i64>,
}

pub fn file_key(payer: &str, sha: &str) -> Key {
    Key::new(Table::Batches, format!("files/{payer}"), sha)
}
pub fn unapplied_key(payer: &str, sha: &str) -> Key {
    Key::new(Table::Batches, "unapplied", format!("{payer}/{sha}"))
}
pub fn seen_key(payer: &str, name: &str, size: u64) -> Key {
    Key::new(Table::Batches, format!("seen/{payer}"), format!("{name}|{size}"))
}

/// A payer file over the size bound, by name (a file still growing is
/// reported once, whatever its size at each poll): left where it is and
/// reported once.
pub fn oversize_key(payer: &str, name: &str) -> Key {
    Key::new(Table::Batches, format!("oversize/{payer}"), name)
}

/// Something an operator must look at (`attention`): a payer answer that
/// matches nothing, a file that does not parse, a batch that failed our
/// validator. Reasons carry ids and codes, never claim data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attention {
    pub payer: String,
    pub file: Option<String>,
    pub batch: Option<String>,
    pub reason: String,
    pub at: String,
}

pub fn attention_key(sk: &str) -> Key {
    Key::new(Table::Batches, "attention", sk)
}

/// The latest file a payer sent (`payer-last`, sort key the payer), for
/// the console's payer health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAnswer {
    pub received_at: String,
    /// Its SHA-256.
    pub file: String,
}

pub fn last_answer_key(payer: &str) -> Key {
    Key::new(Table::Batches, "payer-last", payer)
}

/// The latest file `payer` sent, if any.
pub async fn last_answer(ports: &Ports, payer: &str) -> PortResult<Option<LastAnswer>> {
    match ports.state.get(&last_answer_key(payer)).await? {
        Some(item) => Ok(Some(crate::records::decode_json(&item.value)?)),
        None => Ok(None),
    }
}

/// Stores a payer file (sealed with the batch key) and records it for the
/// applier; the same content twice is stored once. Returns its SHA-256.
/// Durable when it returns: only then may the payer's copy be removed.
pub async fn store_payer_file(
    ports: &Ports,
    partners: &Partners,
    payer: &str,
    name: &str,
    bytes: &[u8],
) -> PortResult<String> {
    let sha = crate::crypto::sha256_hex(bytes);
    let blob = BlobKey::parse(&format!("payer-files/{payer}/{sha}"))
        .ok_or_else(|| PortError::new(ErrorKind::InvalidInput, "payer file blob key"))?;
    let sealed = partners.batch_key().seal(bytes, sha.as_bytes())?;
    match ports.blobs.put(&blob, Bytes::from(sealed)).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let safe_name: String =
        name.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(200).collect();
    let record = PayerFile {
        payer: payer.to_string(),
        sha256: sha.clone(),
        name: safe_name,
        size_bytes: bytes.len() as u64,
        blob: blob.to_string(),
        state: "stored".into(),
        received_at: timestamp(time::OffsetDateTime::now_utc()),
        answers: vec![],
        applying_since_ms: None,
    };
    let seen = put(seen_key(payer, name, bytes.len() as u64), Bytes::from_static(b"{}"), Condition::None);
    let last = LastAnswer { received_at: record.received_at.clone(), file: sha.clone() };
    match ports
        .state
        .write(vec![
            put(file_key(payer, &sha), encode_json(&record)?, Condition::NotExists),
            put(unapplied_key(payer, &sha), Bytes::from_static(b"{}"), Condition::None),
            put(last_answer_key(payer), encode_json(&last)?, Condition::None),
            seen.clone(),
        ])
        .await
    {
        Ok(()) => {}
        // The same file again: already stored (and applied or queued).
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
            ports.state.write(vec![seen]).await?;
        }
        Err(e) => return Err(e),
    }
    Ok(sha)
}
