//! Blobs: content compressed with zstd, named by the SHA-256 of the content,
//! written once. The only module that knows how blobs are laid out.

use std::io::{self, Read, Seek, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Digest, Error, Result};

/// Where blobs live in the object store.
pub(crate) const BLOB_PREFIX: &str = "blobs/sha256";

/// zstd level 3: zstd's default, fast enough to keep up with a disk.
const ZSTD_LEVEL: i32 = 3;

/// Part size for multipart uploads of large blobs (S3's minimum is 5 MiB).
const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;

/// The key of the blob with this digest: `blobs/sha256/<2 hex>/<64 hex>`.
/// The two-digit fan-out keeps local directories small.
pub(crate) fn blob_key(digest: &Digest) -> ObjPath {
    let hex = digest.to_hex();
    ObjPath::from(format!("{BLOB_PREFIX}/{}/{hex}", &hex[..2]))
}

/// Compressed content ready to upload, in memory or spooled to an unnamed
/// temporary file when large.
pub(crate) enum Compressed {
    Memory(Vec<u8>),
    Spooled(std::fs::File),
}

/// Why [`compress`] failed.
pub(crate) enum CompressError {
    Io(io::Error),
    /// The reader did not give exactly the expected number of bytes.
    SizeMismatch {
        read: u64,
    },
}

/// Reads exactly `expected` bytes from `reader`, hashing and compressing them
/// in one pass. Content longer than `in_memory_limit` is spooled to disk.
///
/// The expected size is pledged to zstd, so it is written in the frame
/// header (which is how [`frame_content_size`] can tell a blob's logical
/// size without decompressing it). A reader that gives more or fewer bytes —
/// a file being written while it is stored, a zip entry whose header lies —
/// is an error, not a blob with the wrong size.
pub(crate) fn compress(
    reader: &mut dyn Read,
    expected: u64,
    in_memory_limit: u64,
) -> std::result::Result<(Digest, Compressed), CompressError> {
    if expected <= in_memory_limit {
        let (digest, out) = compress_into(reader, expected, Vec::new())?;
        Ok((digest, Compressed::Memory(out)))
    } else {
        let file = tempfile::tempfile().map_err(CompressError::Io)?;
        let (digest, mut file) = compress_into(reader, expected, file)?;
        file.rewind().map_err(CompressError::Io)?;
        Ok((digest, Compressed::Spooled(file)))
    }
}

fn compress_into<W: Write>(
    reader: &mut dyn Read,
    expected: u64,
    sink: W,
) -> std::result::Result<(Digest, W), CompressError> {
    let mut encoder =
        zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(CompressError::Io)?;
    encoder.include_checksum(true).map_err(CompressError::Io)?;
    encoder
        .include_contentsize(true)
        .map_err(CompressError::Io)?;
    encoder
        .set_pledged_src_size(Some(expected))
        .map_err(CompressError::Io)?;
    let mut hasher = Sha256::new();
    let mut read: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CompressError::Io(e)),
        };
        read += n as u64;
        if read > expected {
            return Err(CompressError::SizeMismatch { read });
        }
        hasher.update(&buf[..n]);
        encoder.write_all(&buf[..n]).map_err(CompressError::Io)?;
    }
    if read != expected {
        return Err(CompressError::SizeMismatch { read });
    }
    let sink = encoder.finish().map_err(CompressError::Io)?;
    Ok((Digest::from_hasher(hasher), sink))
}

/// SHA-256 and length of everything `reader` gives.
pub(crate) fn hash(mut reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let read = io::copy(&mut reader, &mut hasher)?;
    Ok((Digest::from_hasher(hasher), read))
}

/// Stores a compressed blob unless one with this digest is already stored.
/// Returns whether it wrote anything.
///
/// Two writers racing on the same digest both succeed: small blobs are put
/// with put-if-absent (`PutMode::Create`), so the loser sees `AlreadyExists`;
/// large blobs go up as a multipart upload, which completes atomically, and
/// since the content is named by its digest, the second completion replaces
/// the object with identical bytes.
pub(crate) async fn put_blob(
    store: &dyn ObjectStore,
    digest: &Digest,
    data: Compressed,
) -> Result<bool> {
    let key = blob_key(digest);
    if key_exists(store, &key).await? {
        return Ok(false);
    }
    match data {
        Compressed::Memory(bytes) => {
            let payload = PutPayload::from(bytes);
            match store
                .put_opts(&key, payload.clone(), PutOptions::from(PutMode::Create))
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                // A store without conditional puts: overwriting a
                // content-addressed object with the same bytes is harmless.
                Err(
                    object_store::Error::NotImplemented { .. }
                    | object_store::Error::NotSupported { .. },
                ) => {
                    store
                        .put(&key, payload)
                        .await
                        .map_err(|e| Error::store(&key, e))?;
                    Ok(true)
                }
                Err(e) => Err(Error::store(&key, e)),
            }
        }
        Compressed::Spooled(file) => {
            let upload = store
                .put_multipart(&key)
                .await
                .map_err(|e| Error::store(&key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
            match send_spooled(file, &mut writer, &key).await {
                Ok(()) => {
                    writer.finish().await.map_err(|e| Error::store(&key, e))?;
                    Ok(true)
                }
                Err(err) => {
                    // Best effort: an unfinished upload is invisible anyway,
                    // aborting only frees its parts sooner.
                    let _ = writer.abort().await;
                    Err(err)
                }
            }
        }
    }
}

async fn send_spooled(
    file: std::fs::File,
    writer: &mut WriteMultipart,
    key: &ObjPath,
) -> Result<()> {
    let mut file = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("<spooled blob>", e))?;
        if n == 0 {
            return Ok(());
        }
        writer
            .wait_for_capacity(4)
            .await
            .map_err(|e| Error::store(key, e))?;
        writer.write(&buf[..n]);
    }
}

/// Whether the blob with this digest is stored.
pub(crate) async fn exists(store: &dyn ObjectStore, digest: &Digest) -> Result<bool> {
    key_exists(store, &blob_key(digest)).await
}

async fn key_exists(store: &dyn ObjectStore, key: &ObjPath) -> Result<bool> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store(key, e)),
    }
}

/// A fetched (still compressed) blob, in memory or spooled to disk.
pub(crate) enum Fetched {
    Memory(Bytes),
    Spooled(std::fs::File),
}

impl Fetched {
    pub(crate) fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            Fetched::Memory(bytes) => Box::new(io::Cursor::new(bytes)),
            Fetched::Spooled(file) => Box::new(io::BufReader::new(file)),
        }
    }
}

/// Fetches a blob's compressed bytes; `Ok(None)` when no such blob is stored.
pub(crate) async fn fetch_blob(
    store: &dyn ObjectStore,
    digest: &Digest,
    in_memory_limit: u64,
) -> Result<Option<Fetched>> {
    let key = blob_key(digest);
    let result = match store.get(&key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(&key, e)),
    };
    if result.meta.size <= in_memory_limit {
        let bytes = result.bytes().await.map_err(|e| Error::store(&key, e))?;
        return Ok(Some(Fetched::Memory(bytes)));
    }
    let spool = tempfile::tempfile().map_err(|e| Error::io("<temporary file>", e))?;
    let mut spool = tokio::fs::File::from_std(spool);
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::store(&key, e))?;
        spool
            .write_all(&chunk)
            .await
            .map_err(|e| Error::io("<temporary file>", e))?;
    }
    spool
        .flush()
        .await
        .map_err(|e| Error::io("<temporary file>", e))?;
    let mut spool = spool.into_std().await;
    spool
        .rewind()
        .map_err(|e| Error::io("<temporary file>", e))?;
    Ok(Some(Fetched::Spooled(spool)))
}

/// What decoded content must be.
pub(crate) struct Expect {
    pub(crate) digest: Digest,
    /// The exact size when known (files), or only a ceiling (manifests).
    pub(crate) size: ExpectSize,
}

pub(crate) enum ExpectSize {
    Exactly(u64),
    AtMost(u64),
}

/// Decompresses `compressed` into `sink`, checking size and digest.
/// The error is the reason the content is corrupt (the caller names the entry).
///
/// The decompressed stream is cut one byte past the expected size, so a
/// forged blob cannot expand without bound before the check fails.
pub(crate) fn decode_verified<W: Write + ?Sized>(
    compressed: Box<dyn Read + Send>,
    expect: &Expect,
    sink: &mut W,
) -> std::result::Result<u64, String> {
    let decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| format!("cannot start zstd: {e}"))?;
    let ceiling = match expect.size {
        ExpectSize::Exactly(n) | ExpectSize::AtMost(n) => n,
    };
    let mut limited = decoder.take(ceiling.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("not a valid zstd stream: {e}")),
        };
        written += n as u64;
        if written > ceiling {
            return Err(format!(
                "content is longer than the expected {ceiling} bytes"
            ));
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])
            .map_err(|e| format!("writing the content failed: {e}"))?;
    }
    if let ExpectSize::Exactly(n) = expect.size
        && written != n
    {
        return Err(format!("content is {written} bytes, expected {n}"));
    }
    let actual = Digest::from_hasher(hasher);
    if actual != expect.digest {
        return Err(format!(
            "content has SHA-256 {actual}, expected {}",
            expect.digest
        ));
    }
    Ok(written)
}

/// The uncompressed size written in a blob's zstd frame header, if any.
pub(crate) fn frame_content_size(head: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(head).ok().flatten()
}

/// How many leading bytes of a blob [`frame_content_size`] needs at most
/// (zstd's maximum frame header size).
pub(crate) const FRAME_HEADER_MAX: u64 = 18;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(content: &[u8], limit: u64) -> Vec<u8> {
        let (digest, compressed) = match compress(&mut &content[..], content.len() as u64, limit) {
            Ok(v) => v,
            Err(_) => panic!("compress failed"),
        };
        assert_eq!(digest, Digest::of(content));
        let reader: Box<dyn Read + Send> = match compressed {
            Compressed::Memory(v) => {
                assert_eq!(frame_content_size(&v), Some(content.len() as u64));
                Box::new(io::Cursor::new(v))
            }
            Compressed::Spooled(f) => Box::new(f),
        };
        let mut out = Vec::new();
        let expect = Expect {
            digest,
            size: ExpectSize::Exactly(content.len() as u64),
        };
        decode_verified(reader, &expect, &mut out).unwrap();
        out
    }

    #[test]
    fn compress_then_decode_gives_the_content_back_in_memory_and_spooled() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&content, u64::MAX), content);
        assert_eq!(round_trip(&content, 10), content);
        assert_eq!(round_trip(b"", 10), b"");
    }

    #[test]
    fn compress_refuses_a_reader_of_the_wrong_length() {
        for expected in [3, 5] {
            match compress(&mut &b"abcd"[..], expected, u64::MAX) {
                Err(CompressError::SizeMismatch { read }) => {
                    assert!(read == 4 || read == expected + 1)
                }
                _ => panic!("expected a size mismatch for {expected}"),
            }
        }
    }

    #[test]
    fn decode_refuses_wrong_digest_wrong_size_and_garbage() {
        let (digest, compressed) = match compress(&mut &b"hello"[..], 5, u64::MAX) {
            Ok((d, Compressed::Memory(v))) => (d, v),
            _ => panic!("compress failed"),
        };
        let run = |bytes: Vec<u8>, expect: Expect| {
            decode_verified(Box::new(io::Cursor::new(bytes)), &expect, &mut Vec::new()).unwrap_err()
        };
        let wrong_digest = run(
            compressed.clone(),
            Expect {
                digest: Digest::of(b"other"),
                size: ExpectSize::Exactly(5),
            },
        );
        assert!(wrong_digest.contains("SHA-256"), "{wrong_digest}");
        let too_long = run(
            compressed.clone(),
            Expect {
                digest,
                size: ExpectSize::Exactly(4),
            },
        );
        assert!(too_long.contains("longer than"), "{too_long}");
        let too_short = run(
            compressed,
            Expect {
                digest,
                size: ExpectSize::Exactly(6),
            },
        );
        assert!(too_short.contains("5 bytes, expected 6"), "{too_short}");
        let garbage = run(
            b"not zstd at all".to_vec(),
            Expect {
                digest,
                size: ExpectSize::Exactly(5),
            },
        );
        assert!(garbage.contains("zstd"), "{garbage}");
    }

    #[test]
    fn blob_keys_fan_out_by_the_first_two_hex_digits() {
        let d = Digest::of(b"");
        assert_eq!(
            blob_key(&d).to_string(),
            "blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
