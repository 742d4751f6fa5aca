//! Objects too large to hold in memory, kept in the blob store as a run of
//! sealed chunks: `<prefix>/000000`, `<prefix>/000001`, … of
//! [`CHUNK_BYTES`] each (the last shorter), written as they are produced
//! and read back one at a time. A payer file of any size is stored and read
//! this way, and so is what is forwarded from it (an 835 re-enveloped for a
//! submitter), so that memory is a chunk or two whatever the size.
//!
//! Each chunk is sealed with associated data naming its own key, so a chunk
//! cannot be moved, swapped or replayed into another object unnoticed; the
//! record that points to the object keeps the count of chunks (sealed in
//! the state store), so a missing tail is noticed too. A prefix is fresh
//! for every object written ([`fresh_prefix`]): keys are never reused, and
//! an interrupted write leaves only chunks no record points to.

use crate::crypto::Key;
use crate::error::{ErrorKind, PortError, PortResult};
use crate::ids::{BlobKey, PartnerId};
use crate::keys::KeyRing;
use crate::ports::BlobStore;
use aws_lc_rs::digest;
use bytes::Bytes;
use std::sync::Arc;

/// Plaintext bytes per chunk.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Largest sealed chunk read back (a chunk and its envelope).
const MAX_SEALED_CHUNK_BYTES: u64 = CHUNK_BYTES as u64 + 64 * 1024;

/// How the chunks of an object are sealed.
#[derive(Clone)]
pub enum ChunkSealing {
    /// Under one key, with the chunk's key as associated data (payer
    /// files, under the batch key: they hold claims of many partners).
    Key(Key),
    /// Under a partner's keys, as every object under `acks/<partner>/`
    /// (so key re-wrap, the census and a shred treat each chunk as one of
    /// the partner's objects).
    Partner(KeyRing, PartnerId),
}

impl std::fmt::Debug for ChunkSealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkSealing::Key(_) => f.write_str("ChunkSealing::Key(<redacted>)"),
            ChunkSealing::Partner(_, p) => write!(f, "ChunkSealing::Partner({p})"),
        }
    }
}

impl ChunkSealing {
    async fn seal(&self, key: &BlobKey, plain: &[u8]) -> PortResult<Vec<u8>> {
        match self {
            ChunkSealing::Key(k) => k.seal(plain, key.as_str().as_bytes()),
            ChunkSealing::Partner(ring, p) => ring.seal(p, plain, partner_aad(key, p)?.as_bytes()).await,
        }
    }

    async fn open(&self, key: &BlobKey, sealed: &[u8]) -> PortResult<Vec<u8>> {
        match self {
            ChunkSealing::Key(k) => k.open(sealed, key.as_str().as_bytes()),
            ChunkSealing::Partner(ring, p) => ring.open(p, sealed, partner_aad(key, p)?.as_bytes()).await,
        }
    }
}

fn partner_aad(key: &BlobKey, partner: &PartnerId) -> PortResult<String> {
    crate::keys::object_aad(key, partner)
        .ok_or_else(|| PortError::new(ErrorKind::Internal, "a partner's chunk outside the partner's prefixes"))
}

/// The key of chunk `n` of the object at `prefix`.
pub fn chunk_key(prefix: &BlobKey, n: u32) -> PortResult<BlobKey> {
    BlobKey::parse(&format!("{prefix}/{n:06}")).ok_or_else(|| PortError::new(ErrorKind::Internal, "chunk key"))
}

/// A prefix no object has used: `<base>/<32 hex digits>`.
pub fn fresh_prefix(base: &str) -> PortResult<BlobKey> {
    let mut nonce = [0u8; 16];
    crate::crypto::random_bytes(&mut nonce)?;
    BlobKey::parse(&format!("{base}/{}", hex::encode(nonce)))
        .ok_or_else(|| PortError::new(ErrorKind::InvalidInput, "chunked object key"))
}

/// An object once written: where, how many chunks, its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    pub prefix: BlobKey,
    pub chunks: u32,
    /// Plaintext bytes in each chunk but the last.
    pub chunk_bytes: u64,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Writes an object chunk by chunk as its bytes come: at most one chunk
/// is held. Durable once [`ChunkWriter::finish`] returns.
pub struct ChunkWriter {
    blobs: Arc<dyn BlobStore>,
    sealing: ChunkSealing,
    prefix: BlobKey,
    buf: Vec<u8>,
    chunks: u32,
    size_bytes: u64,
    max_bytes: u64,
    chunk_bytes: usize,
    digest: digest::Context,
}

impl std::fmt::Debug for ChunkWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkWriter").field("prefix", &self.prefix).field("size_bytes", &self.size_bytes).finish()
    }
}

impl ChunkWriter {
    /// A writer of a new object at `prefix` (from [`fresh_prefix`]) that
    /// refuses to grow past `max_bytes` (`InvalidInput`).
    pub fn new(blobs: Arc<dyn BlobStore>, sealing: ChunkSealing, prefix: BlobKey, max_bytes: u64) -> Self {
        ChunkWriter {
            blobs,
            sealing,
            prefix,
            buf: Vec::new(),
            chunks: 0,
            size_bytes: 0,
            max_bytes,
            chunk_bytes: CHUNK_BYTES,
            digest: digest::Context::new(&digest::SHA256),
        }
    }

    /// Smaller chunks than [`CHUNK_BYTES`] (1 to [`CHUNK_BYTES`]): for
    /// tests of the chunk boundaries.
    pub fn with_chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n.clamp(1, CHUNK_BYTES);
        self
    }

    /// Appends `data`; full chunks are sealed and stored as they fill.
    pub async fn write(&mut self, mut data: &[u8]) -> PortResult<()> {
        if self.size_bytes.saturating_add(data.len() as u64) > self.max_bytes {
            return Err(PortError::new(ErrorKind::InvalidInput, "object over its size bound"));
        }
        self.size_bytes += data.len() as u64;
        self.digest.update(data);
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.chunk_bytes);
            }
            let take = (self.chunk_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_bytes {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> PortResult<()> {
        let key = chunk_key(&self.prefix, self.chunks)?;
        let sealed = self.sealing.seal(&key, &self.buf).await?;
        match self.blobs.put(&key, Bytes::from(sealed)).await {
            Ok(()) => {}
            // A put retried by the backend after it landed.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.chunks += 1;
        self.buf.clear();
        Ok(())
    }

    /// Stores what is left (an empty object is one empty chunk) and says
    /// what was written; on a failure, what was written is removed.
    pub async fn finish(mut self) -> PortResult<Chunked> {
        if (!self.buf.is_empty() || self.chunks == 0)
            && let Err(e) = self.flush().await
        {
            self.discard().await;
            return Err(e);
        }
        Ok(Chunked {
            prefix: self.prefix,
            chunks: self.chunks,
            chunk_bytes: self.chunk_bytes as u64,
            size_bytes: self.size_bytes,
            sha256: hex::encode(self.digest.finish().as_ref()),
        })
    }

    /// Removes the chunks written so far (an object given up on).
    pub async fn discard(self) {
        delete(self.blobs.as_ref(), &self.prefix, self.chunks + 1).await;
    }
}

/// Removes an object's chunks (best effort: a chunk left behind is one no
/// record points to).
pub async fn delete(blobs: &dyn BlobStore, prefix: &BlobKey, chunks: u32) {
    for n in 0..chunks {
        if let Ok(key) = chunk_key(prefix, n)
            && let Err(e) = blobs.delete(&key).await
        {
            tracing::warn!(error = %e, "could not remove a chunk of an object given up on");
        }
    }
}

/// Reads an object whole (for objects read whole anyway, up to
/// `max_bytes`).
pub async fn read_all(
    blobs: &dyn BlobStore,
    sealing: &ChunkSealing,
    prefix: &BlobKey,
    chunks: u32,
    max_bytes: u64,
) -> PortResult<Vec<u8>> {
    let mut out = Vec::new();
    for n in 0..chunks {
        let plain = read_chunk(blobs, sealing, prefix, n).await?;
        if out.len() as u64 + plain.len() as u64 > max_bytes {
            return Err(PortError::new(ErrorKind::InvalidInput, "object over the bound it is read with"));
        }
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

/// Chunk `n` of the object at `prefix`, opened (for a reader that sends
/// an object on as it reads it: an HTTP body).
pub async fn read_chunk(
    blobs: &dyn BlobStore,
    sealing: &ChunkSealing,
    prefix: &BlobKey,
    n: u32,
) -> PortResult<Vec<u8>> {
    let key = chunk_key(prefix, n)?;
    let sealed = blobs.get(&key, MAX_SEALED_CHUNK_BYTES).await?;
    sealing.open(&key, &sealed).await
}

/// Chunks `from..chunks` of the object at `prefix`, opened one at a time
/// as the stream is polled (an HTTP body sent on as it is read).
pub fn stream(
    blobs: Arc<dyn BlobStore>,
    sealing: ChunkSealing,
    prefix: BlobKey,
    from: u32,
    chunks: u32,
) -> impl futures::Stream<Item = PortResult<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(from, move |n| {
        let (blobs, sealing, prefix) = (blobs.clone(), sealing.clone(), prefix.clone());
        async move {
            if n >= chunks {
                return None;
            }
            Some((read_chunk(blobs.as_ref(), &sealing, &prefix, n).await, n + 1))
        }
    })
}

/// Reads an object as a [`std::io::Read`], one chunk in memory at a time,
/// for the parsers (which are synchronous): use it on a blocking thread
/// (`tokio::task::spawn_blocking`), never on a runtime thread. A chunk
/// that cannot be fetched or opened ends the read with an error, kept in
/// [`ChunkReader::take_error`] so that the caller can tell a store failure
/// (try again later) from a file that does not parse.
pub struct ChunkReader {
    runtime: tokio::runtime::Handle,
    blobs: Arc<dyn BlobStore>,
    sealing: ChunkSealing,
    prefix: BlobKey,
    chunks: u32,
    next: u32,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of the first chunk read to pass over ([`ChunkReader::starting_at`]).
    skip: usize,
    error: Option<PortError>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader").field("prefix", &self.prefix).field("next", &self.next).finish()
    }
}

impl ChunkReader {
    /// A reader of the object at `prefix`; call it from within a Tokio
    /// runtime (it keeps a handle to it).
    pub fn new(blobs: Arc<dyn BlobStore>, sealing: ChunkSealing, prefix: BlobKey, chunks: u32) -> Self {
        ChunkReader {
            runtime: tokio::runtime::Handle::current(),
            blobs,
            sealing,
            prefix,
            chunks,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            skip: 0,
            error: None,
        }
    }

    /// Starts the read at byte `offset` of the object, whose chunks hold
    /// `chunk_bytes` each (but the last): the chunks before it are not
    /// fetched.
    pub fn starting_at(mut self, offset: u64, chunk_bytes: u64) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        self.next = u32::try_from(offset / chunk_bytes).unwrap_or(u32::MAX).min(self.chunks);
        self.skip = (offset % chunk_bytes) as usize;
        self.buf.clear();
        self.pos = 0;
        self
    }

    /// The store failure that ended the read, if one did.
    pub fn take_error(&mut self) -> Option<PortError> {
        self.error.take()
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next >= self.chunks {
                return Ok(0);
            }
            let chunk = self.runtime.block_on(read_chunk(self.blobs.as_ref(), &self.sealing, &self.prefix, self.next));
            match chunk {
                Ok(plain) => {
                    self.pos = std::mem::take(&mut self.skip).min(plain.len());
                    self.buf = plain;
                    self.next += 1;
                }
                Err(e) => {
                    let io = std::io::Error::other(e.to_string());
                    self.error = Some(e);
                    return Err(io);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
