//! Objects written and read in sealed chunks (`clearway_core::chunked`)
//! on the embedded blob store: whole and in order across chunk
//! boundaries, and a chunk swapped, moved or missing is noticed.
#![allow(clippy::unwrap_used)]

use clearway_core::chunked::{ChunkReader, ChunkSealing, ChunkWriter, chunk_key, fresh_prefix, read_all};
use clearway_core::crypto::Key;
use clearway_core::ports::BlobStore;
use clearway_local::Local;
use std::io::Read;
use std::sync::Arc;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

async fn write(
    blobs: Arc<dyn BlobStore>,
    sealing: &ChunkSealing,
    body: &[u8],
    chunk: usize,
    piece: usize,
) -> clearway_core::chunked::Chunked {
    let prefix = fresh_prefix("payer-files/TEST").unwrap();
    let mut w = ChunkWriter::new(blobs, sealing.clone(), prefix, 1 << 20).with_chunk_bytes(chunk);
    for part in body.chunks(piece.max(1)) {
        w.write(part).await.unwrap();
    }
    if body.is_empty() {
        w.write(&[]).await.unwrap();
    }
    w.finish().await.unwrap()
}

/// Reads with a reader on a blocking thread, `buf` bytes at a time.
async fn read(
    blobs: Arc<dyn BlobStore>,
    sealing: &ChunkSealing,
    c: &clearway_core::chunked::Chunked,
    buf: usize,
) -> Result<Vec<u8>, String> {
    let mut r = ChunkReader::new(blobs, sealing.clone(), c.prefix.clone(), c.chunks);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut b = vec![0u8; buf];
        loop {
            match r.read(&mut b) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&b[..n]),
                Err(e) => return Err(format!("{e}; store error kept: {}", r.take_error().is_some())),
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_come_back_whole_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::open(dir.path()).unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(local.blobs.clone());
    let sealing = ChunkSealing::Key(Key::generate().unwrap());
    for (size, chunk, piece, buf) in [
        (0, 10, 1, 7),
        (1, 10, 1, 7),
        (10, 10, 3, 4),
        (11, 10, 10, 1),
        (1000, 64, 7, 100),
        (100_000, 4096, 65_536, 8192),
    ] {
        let body = data(size);
        let c = write(blobs.clone(), &sealing, &body, chunk, piece).await;
        assert_eq!(c.size_bytes, size as u64);
        assert_eq!(c.chunks as usize, size.div_ceil(chunk).max(1), "size {size}, chunk {chunk}");
        assert_eq!(c.sha256, clearway_core::crypto::sha256_hex(&body));
        assert_eq!(read(blobs.clone(), &sealing, &c, buf).await.unwrap(), body, "size {size}");
        assert_eq!(read_all(blobs.as_ref(), &sealing, &c.prefix, c.chunks, 1 << 20).await.unwrap(), body);
        // From any byte on, the chunks before it not fetched.
        for offset in [0, 1, chunk as u64 - 1, chunk as u64, chunk as u64 + 1, size as u64 / 2, size as u64] {
            let offset = offset.min(size as u64);
            let mut r = ChunkReader::new(blobs.clone(), sealing.clone(), c.prefix.clone(), c.chunks)
                .starting_at(offset, c.chunk_bytes);
            let got = tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v)
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(got, body[offset as usize..], "size {size}, from byte {offset}");
        }
        // As a stream (an HTTP body), from any chunk on.
        for from in [0, 1] {
            let parts: Vec<Vec<u8>> = futures::StreamExt::collect::<Vec<_>>(clearway_core::chunked::stream(
                blobs.clone(),
                sealing.clone(),
                c.prefix.clone(),
                from,
                c.chunks,
            ))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
            assert_eq!(parts.len(), c.chunks.saturating_sub(from) as usize);
            assert_eq!(parts.concat(), body[(from as usize * chunk).min(size)..], "from chunk {from}");
        }
        // A chunk is sealed with its own key: no plaintext in the store.
        if size >= 64 {
            let stored = blobs.get(&chunk_key(&c.prefix, 0).unwrap(), 1 << 20).await.unwrap();
            assert!(!stored.windows(16).any(|w| w == &body[..16]), "sealed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_swapped_or_missing_is_noticed_and_a_bound_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::open(dir.path()).unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(local.blobs.clone());
    let sealing = ChunkSealing::Key(Key::generate().unwrap());
    let body = data(300);
    let c = write(blobs.clone(), &sealing, &body, 100, 50).await;
    assert_eq!(c.chunks, 3);

    // Chunk 1's bytes put in chunk 2's place: it does not open there.
    let (k1, k2) = (chunk_key(&c.prefix, 1).unwrap(), chunk_key(&c.prefix, 2).unwrap());
    let one = blobs.get(&k1, 1 << 20).await.unwrap();
    blobs.replace(&k2, one).await.unwrap();
    let err = read(blobs.clone(), &sealing, &c, 64).await.unwrap_err();
    assert!(err.contains("store error kept: true"), "{err}");
    assert!(read_all(blobs.as_ref(), &sealing, &c.prefix, c.chunks, 1 << 20).await.is_err());

    // A chunk gone: an error, not a shorter object.
    blobs.delete(&k2).await.unwrap();
    assert!(read(blobs.clone(), &sealing, &c, 64).await.is_err());

    // Another object's chunk under this prefix does not open either.
    let other = write(blobs.clone(), &sealing, &data(300), 100, 300).await;
    let theirs = blobs.get(&chunk_key(&other.prefix, 2).unwrap(), 1 << 20).await.unwrap();
    blobs.put(&k2, theirs).await.unwrap();
    assert!(read(blobs.clone(), &sealing, &c, 64).await.is_err());

    // The writer refuses to grow past its bound, and what it wrote can be
    // discarded.
    let prefix = fresh_prefix("payer-files/TEST").unwrap();
    let mut w = ChunkWriter::new(blobs.clone(), sealing.clone(), prefix.clone(), 250).with_chunk_bytes(100);
    w.write(&data(200)).await.unwrap();
    let e = w.write(&data(51)).await.unwrap_err();
    assert_eq!(e.kind(), clearway_core::ErrorKind::InvalidInput);
    assert!(blobs.exists(&chunk_key(&prefix, 1).unwrap()).await.unwrap());
    w.discard().await;
    assert!(blobs.list(prefix.as_str(), None, 10).await.unwrap().is_empty(), "nothing left");
}
