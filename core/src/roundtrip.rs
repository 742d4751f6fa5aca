//! Records of the payer round trip that intake and workers share: the
//! files payers send back and the operator's attention list.

use crate::BlobKey;
use crate::chunked::{ChunkReader, ChunkSealing, ChunkWriter, fresh_prefix};
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
    /// Where it is: the prefix of its chunks ([`crate::chunked`]), or (a
    /// file stored before chunks) one object sealed whole.
    pub blob: String,
    /// How many chunks; `None` for a file stored whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u32>,
    /// Bytes in each chunk but the last (to start a read part-way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
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

/// Largest payer file stored (a larger one is left at the payer and
/// reported).
pub const MAX_PAYER_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// A writer of a payer file's chunks (see [`crate::chunked`]), sealed with
/// the batch key, refusing to grow past [`MAX_PAYER_FILE_BYTES`]; give it
/// to [`finish_payer_file`] once the file is written.
pub fn payer_file_writer(ports: &Ports, partners: &Partners, payer: &str) -> PortResult<ChunkWriter> {
    Ok(ChunkWriter::new(
        ports.blobs.clone(),
        ChunkSealing::Key(partners.batch_key()),
        fresh_prefix(&format!("payer-files/{payer}"))?,
        MAX_PAYER_FILE_BYTES,
    ))
}

/// Stores a payer file held in memory (a POST body, bounded by the body
/// limit): see [`finish_payer_file`].
pub async fn store_payer_file(
    ports: &Ports,
    partners: &Partners,
    payer: &str,
    name: &str,
    bytes: &[u8],
) -> PortResult<String> {
    let mut writer = payer_file_writer(ports, partners, payer)?;
    if let Err(e) = writer.write(bytes).await {
        writer.discard().await;
        return Err(e);
    }
    finish_payer_file(ports, payer, name, writer).await
}

/// Records a payer file written through [`payer_file_writer`] for the
/// applier; the same content twice is recorded once (the second copy's
/// chunks are removed). Returns its SHA-256. Durable when it returns: only
/// then may the payer's copy be removed.
pub async fn finish_payer_file(ports: &Ports, payer: &str, name: &str, writer: ChunkWriter) -> PortResult<String> {
    let written = writer.finish().await?;
    let sha = written.sha256.clone();
    let safe_name: String =
        name.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(200).collect();
    let record = PayerFile {
        payer: payer.to_string(),
        sha256: sha.clone(),
        name: safe_name,
        size_bytes: written.size_bytes,
        blob: written.prefix.to_string(),
        chunks: Some(written.chunks),
        chunk_bytes: Some(written.chunk_bytes),
        state: "stored".into(),
        received_at: timestamp(time::OffsetDateTime::now_utc()),
        answers: vec![],
        applying_since_ms: None,
    };
    let seen = put(seen_key(payer, name, written.size_bytes), Bytes::from_static(b"{}"), Condition::None);
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
            crate::chunked::delete(ports.blobs.as_ref(), &written.prefix, written.chunks).await;
            ports.state.write(vec![seen]).await?;
        }
        // Not recorded: nothing will point to the chunks (the payer's copy
        // stays, to be fetched again).
        Err(e) => {
            crate::chunked::delete(ports.blobs.as_ref(), &written.prefix, written.chunks).await;
            return Err(e);
        }
    }
    Ok(sha)
}

/// A stored payer file as a [`std::io::Read`] for the parsers, on a
/// blocking thread: chunk by chunk, or (a file stored whole, before
/// chunks) opened whole.
#[derive(Debug)]
pub enum PayerFileReader {
    Chunks(Box<ChunkReader>),
    Whole(std::io::Cursor<Vec<u8>>),
}

impl PayerFileReader {
    /// Opens `file` (call from within the runtime, read on a blocking
    /// thread).
    pub async fn open(ports: &Ports, partners: &Partners, file: &PayerFile) -> PortResult<Self> {
        Self::open_at(ports, partners, file, 0).await
    }

    /// Opens `file` to read from byte `offset` on (the chunks before it
    /// are not fetched).
    pub async fn open_at(ports: &Ports, partners: &Partners, file: &PayerFile, offset: u64) -> PortResult<Self> {
        let key = BlobKey::parse(&file.blob).ok_or_else(|| PortError::new(ErrorKind::Internal, "payer file blob"))?;
        Ok(match file.chunks {
            Some(n) => PayerFileReader::Chunks(Box::new(
                ChunkReader::new(ports.blobs.clone(), ChunkSealing::Key(partners.batch_key()), key, n)
                    .starting_at(offset, file.chunk_bytes.unwrap_or(crate::chunked::CHUNK_BYTES as u64)),
            )),
            None => {
                let sealed = ports.blobs.get(&key, MAX_PAYER_FILE_BYTES * 2).await?;
                let mut whole = std::io::Cursor::new(partners.batch_key().open(&sealed, file.sha256.as_bytes())?);
                whole.set_position(offset);
                PayerFileReader::Whole(whole)
            }
        })
    }

    /// The store failure that ended a read, if one did (see
    /// [`ChunkReader::take_error`]).
    pub fn take_error(&mut self) -> Option<PortError> {
        match self {
            PayerFileReader::Chunks(r) => r.take_error(),
            PayerFileReader::Whole(_) => None,
        }
    }
}

impl std::io::Read for PayerFileReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PayerFileReader::Chunks(r) => r.read(out),
            PayerFileReader::Whole(r) => r.read(out),
        }
    }
}
