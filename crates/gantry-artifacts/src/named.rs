//! Named objects: whole files kept beside the content-addressed blobs, under
//! keys their users choose (the server's finished build logs,
//! `logs/packs/...`; custom-action job objects,
//! `job-objects/...`). They are neither compressed nor deduplicated, so a
//! byte range of one is one ranged GET.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ArtifactStore, Digest, Error, Result};

/// Keys under this prefix belong to the content-addressed store.
const RESERVED: &str = "blobs/";

fn key_path(key: &str) -> Result<ObjPath> {
    let invalid = |reason: String| Error::InvalidLocation {
        input: key.to_owned(),
        reason,
    };
    if key.starts_with(RESERVED) {
        return Err(invalid(
            "keys under blobs/ belong to the artifact blobs".into(),
        ));
    }
    ObjPath::parse(key).map_err(|e| invalid(e.to_string()))
}

impl ArtifactStore {
    /// Stores `bytes` at `key` (a `/`-separated path, not under `blobs/`),
    /// replacing any object there. The write is atomic: readers see the old
    /// object or the whole new one.
    pub async fn put_named(&self, key: &str, bytes: impl Into<Bytes>) -> Result<()> {
        let path = key_path(key)?;
        self.objects
            .put(&path, PutPayload::from_bytes(bytes.into()))
            .await
            .map(|_| ())
            .map_err(|source| Error::Store {
                key: key.to_owned(),
                source,
            })
    }

    /// The whole object at `key`.
    pub async fn get_named(&self, key: &str) -> Result<Bytes> {
        let path = key_path(key)?;
        let store_error = |source| Error::Store {
            key: key.to_owned(),
            source,
        };
        self.objects
            .get(&path)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)
    }

    /// Bytes `range` of the object at `key` (fewer when the object is
    /// shorter).
    pub async fn get_named_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = key_path(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.objects
            .get_range(&path, range)
            .await
            .map_err(|source| Error::Store {
                key: key.to_owned(),
                source,
            })
    }

    /// Deletes the object at `key`; deleting a missing object succeeds.
    pub async fn delete_named(&self, key: &str) -> Result<()> {
        let path = key_path(key)?;
        match self.objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store {
                key: key.to_owned(),
                source,
            }),
        }
    }
}

/// Chunks of a streamed named object.
pub type NamedStream = BoxStream<'static, Result<Bytes>>;

/// Part size of streamed uploads (S3's minimum part is 5 MiB); an object
/// up to this size is one plain PUT.
const STREAM_CHUNK: usize = 8 * 1024 * 1024;

impl ArtifactStore {
    /// The size of the object at `key`; `None` when there is none.
    pub async fn named_size(&self, key: &str) -> Result<Option<u64>> {
        let path = key_path(key)?;
        match self.objects.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Store {
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// The object at `key` as a stream of chunks, with its size, so a large
    /// object is never held whole; `None` when there is none.
    pub async fn get_named_stream(&self, key: &str) -> Result<Option<(u64, NamedStream)>> {
        let path = key_path(key)?;
        let got = match self.objects.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(Error::Store {
                    key: key.to_owned(),
                    source,
                });
            }
        };
        let size = got.meta.size;
        let owned = key.to_owned();
        let stream = got
            .into_stream()
            .map_err(move |source| Error::Store {
                key: owned.clone(),
                source,
            })
            .boxed();
        Ok(Some((size, stream)))
    }

    /// Stores what `chunks` yields at `key`, replacing any object there;
    /// returns its size. Up to 8 MiB goes as one PUT, more as a multipart
    /// upload sent while the chunks arrive, so the whole object is never in
    /// memory. Readers see the old object or the whole new one; if `chunks`
    /// fails, the upload is abandoned and the old object stays.
    pub async fn put_named_stream<St>(&self, key: &str, chunks: St) -> Result<u64>
    where
        St: Stream<Item = Result<Bytes>> + Send,
    {
        let path = key_path(key)?;
        let store_error = |source| Error::Store {
            key: key.to_owned(),
            source,
        };
        let mut writer = BufWriter::with_capacity(self.objects.clone(), path, STREAM_CHUNK);
        let mut chunks = std::pin::pin!(chunks);
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let sent = match chunk {
                Ok(bytes) => {
                    size += bytes.len() as u64;
                    writer.put(bytes).await.map_err(store_error)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                // Best effort: an unfinished upload is invisible anyway.
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        writer.shutdown().await.map_err(|e| Error::Store {
            key: key.to_owned(),
            source: object_store::Error::Generic {
                store: "named object",
                source: Box::new(e),
            },
        })?;
        Ok(size)
    }

    /// Stores the local file at `path` at `key`, streamed as
    /// [`put_named_stream`](Self::put_named_stream) does; returns its size.
    pub async fn put_named_file(&self, key: &str, path: &Path) -> Result<u64> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        let owned = path.to_path_buf();
        let chunks: NamedStream = futures_util::stream::try_unfold(file, move |mut file| {
            let owned = owned.clone();
            async move {
                let mut buf = vec![0u8; 1 << 20];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => return Err(Error::io(&owned, e)),
                };
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Bytes::from(buf), file)))
            }
        })
        .boxed();
        self.put_named_stream(key, chunks).await
    }

    /// Stores at `key` the objects `parts` one after the other, streamed
    /// as [`put_named_stream`](Self::put_named_stream) does (the parts stay);
    /// returns the size. A missing part is a [`Error::Store`] whose source
    /// is `NotFound`, and leaves `key` as it was.
    pub async fn concat_named(&self, key: &str, parts: &[String]) -> Result<u64> {
        self.put_named_stream(key, self.parts_stream(parts)).await
    }

    /// [`concat_named`](Self::concat_named), also returning the SHA-256 of
    /// the bytes it wrote, hashed on the way rather than read back.
    pub async fn concat_named_digest(&self, key: &str, parts: &[String]) -> Result<(u64, Digest)> {
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let feed = hasher.clone();
        let chunks: NamedStream = self
            .parts_stream(parts)
            .inspect_ok(move |bytes| {
                feed.lock().unwrap_or_else(|e| e.into_inner()).update(bytes);
            })
            .boxed();
        let size = self.put_named_stream(key, chunks).await?;
        let hasher = std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner()));
        Ok((size, Digest::from_hasher(hasher)))
    }

    /// The objects `parts`, one after the other, as one stream.
    fn parts_stream(&self, parts: &[String]) -> NamedStream {
        let store = self.clone();
        // Boxed here, where its types are concrete: callers' futures then
        // hold a plain `Send` stream (an unboxed one trips the compiler's
        // higher-ranked `Send` check in axum handlers).
        futures_util::stream::iter(parts.to_vec())
            .then(move |part| {
                let store = store.clone();
                async move {
                    match store.get_named_stream(&part).await? {
                        Some((_, chunks)) => Ok(chunks),
                        None => Err(Error::Store {
                            key: part.clone(),
                            source: object_store::Error::NotFound {
                                path: part,
                                source: "the part is missing".into(),
                            },
                        }),
                    }
                }
            })
            .try_flatten()
            .boxed()
    }

    /// The objects whose keys start with `prefix` followed by `/`, as
    /// (key, size), sorted by key; none is an empty list.
    pub async fn list_named(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = key_path(prefix)?;
        let listed: Vec<_> =
            self.objects
                .list(Some(&path))
                .try_collect()
                .await
                .map_err(|source| Error::Store {
                    key: prefix.to_owned(),
                    source,
                })?;
        let mut named: Vec<(String, u64)> = listed
            .into_iter()
            .map(|meta| (meta.location.to_string(), meta.size))
            .collect();
        named.sort();
        Ok(named)
    }

    /// Deletes every object whose key starts with `prefix` followed by
    /// `/`; deleting nothing succeeds.
    pub async fn delete_named_prefix(&self, prefix: &str) -> Result<()> {
        let path = key_path(prefix)?;
        let store_error = |source| Error::Store {
            key: prefix.to_owned(),
            source,
        };
        let listed: Vec<_> = self
            .objects
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(store_error)?;
        for meta in listed {
            match self.objects.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(store_error(source)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_objects_round_trip_with_ranges() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path()).expect("store");
        store
            .put_named("logs/builds/web:1.log", b"one\ntwo\n".to_vec())
            .await
            .expect("put");
        let all = store.get_named("logs/builds/web:1.log").await.expect("get");
        assert_eq!(&all[..], b"one\ntwo\n");
        let part = store
            .get_named_range("logs/builds/web:1.log", 4..8)
            .await
            .expect("range");
        assert_eq!(&part[..], b"two\n");
        assert!(
            store
                .get_named_range("logs/builds/web:1.log", 3..3)
                .await
                .expect("empty")
                .is_empty()
        );
        store
            .delete_named("logs/builds/web:1.log")
            .await
            .expect("delete");
        store
            .delete_named("logs/builds/web:1.log")
            .await
            .expect("again");
        assert!(store.get_named("logs/builds/web:1.log").await.is_err());
    }

    #[tokio::test]
    async fn objects_under_a_prefix_are_listed_in_key_order_with_their_sizes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path()).expect("store");
        assert!(store.list_named("up/a").await.expect("list").is_empty());
        for (key, bytes) in [("up/a/2", &b"xy"[..]), ("up/a/1", b"x"), ("up/ab", b"z")] {
            store.put_named(key, bytes.to_vec()).await.expect("put");
        }
        assert_eq!(
            store.list_named("up/a").await.expect("list"),
            vec![("up/a/1".to_owned(), 1), ("up/a/2".to_owned(), 2)],
            "only keys under the prefix as a folder, not `up/ab`"
        );
    }

    #[tokio::test]
    async fn blob_keys_and_bad_paths_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path()).expect("store");
        assert!(
            store
                .put_named("blobs/sha256/aa/x", b"x".to_vec())
                .await
                .is_err()
        );
        assert!(store.put_named("logs//x", b"x".to_vec()).await.is_err());
        assert!(store.put_named("../x", b"x".to_vec()).await.is_err());
    }

    #[tokio::test]
    async fn streamed_objects_round_trip_small_and_multipart() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path().join("objects")).expect("store");
        assert_eq!(store.named_size("job-objects/x").await.expect("size"), None);
        assert!(
            store
                .get_named_stream("job-objects/x")
                .await
                .expect("get")
                .is_none()
        );
        // Over one part: sent as a multipart upload, read back whole.
        let big: Vec<u8> = (0..STREAM_CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let file = tmp.path().join("big");
        std::fs::write(&file, &big).expect("write");
        let size = store
            .put_named_file("job-objects/big", &file)
            .await
            .expect("put");
        assert_eq!(size, big.len() as u64);
        assert_eq!(
            store.named_size("job-objects/big").await.expect("size"),
            Some(big.len() as u64)
        );
        let (len, stream) = store
            .get_named_stream("job-objects/big")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(len, big.len() as u64);
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("chunks");
        assert_eq!(chunks.concat(), big);
        // A failing source leaves the old object as it was.
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"new")),
            Err(Error::InvalidLocation {
                input: "x".into(),
                reason: "the source broke".into(),
            }),
        ]);
        assert!(
            store
                .put_named_stream("job-objects/big", failing)
                .await
                .is_err()
        );
        assert_eq!(
            store.named_size("job-objects/big").await.expect("size"),
            Some(big.len() as u64)
        );
    }

    #[tokio::test]
    async fn parts_concatenate_in_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path()).expect("store");
        store
            .put_named("up/p1", b"one ".to_vec())
            .await
            .expect("put");
        store
            .put_named("up/p2", b"two".to_vec())
            .await
            .expect("put");
        let parts = ["up/p1".to_owned(), "up/p2".to_owned()];
        assert_eq!(store.concat_named("obj", &parts).await.expect("concat"), 7);
        assert_eq!(&store.get_named("obj").await.expect("get")[..], b"one two");
        let missing = ["up/p1".to_owned(), "up/p3".to_owned()];
        let err = store
            .concat_named("obj", &missing)
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("up/p3"), "{err}");
        assert_eq!(&store.get_named("obj").await.expect("get")[..], b"one two");
    }

    #[tokio::test]
    async fn a_prefix_is_deleted_and_only_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = ArtifactStore::local(tmp.path()).expect("store");
        for key in ["up/1/key", "up/1/part-1", "up/12/key", "up/2/key"] {
            store.put_named(key, b"x".to_vec()).await.expect("put");
        }
        store.delete_named_prefix("up/1").await.expect("delete");
        store.delete_named_prefix("up/1").await.expect("again");
        assert_eq!(store.named_size("up/1/key").await.expect("size"), None);
        assert_eq!(store.named_size("up/1/part-1").await.expect("size"), None);
        assert_eq!(store.named_size("up/12/key").await.expect("size"), Some(1));
        assert_eq!(store.named_size("up/2/key").await.expect("size"), Some(1));
    }
}
