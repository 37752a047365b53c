//! Named objects: whole files kept beside the content-addressed blobs, under
//! keys their users choose (the server's finished build logs,
//! `logs/builds/<build-id>.log`). They are neither compressed nor
//! deduplicated, so a byte range of one is one ranged GET.

use std::ops::Range;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::{ArtifactStore, Error, Result};

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
}
