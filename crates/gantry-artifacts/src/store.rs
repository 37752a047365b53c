//! [`ArtifactStore`]: storing a directory, reading an artifact back into one,
//! manifests and statistics.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::blob::{self, CompressError, Expect, ExpectSize};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::walk::{self, Walked, WalkedKind};
use crate::{ArtifactRef, Digest, Error, Result};

/// How many files are compressed, uploaded or written at once.
const FILE_CONCURRENCY: usize = 8;

/// Sizes the store keeps to. The defaults suit a server; tests lower them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most entries `put_zip` accepts in one archive (default 100 000).
    pub zip_max_entries: u64,
    /// Most bytes `put_zip` decompresses from one archive, counted as the
    /// bytes actually decompressed, not as the archive's headers claim
    /// (default 10 GiB).
    pub zip_max_uncompressed_bytes: u64,
    /// Largest manifest read back, uncompressed (default 256 MiB).
    pub max_manifest_bytes: u64,
    /// Content up to this size is compressed and transferred in memory;
    /// larger content goes through unnamed temporary files, and up to the
    /// object store as a multipart upload (default 8 MiB).
    pub in_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            zip_max_entries: 100_000,
            zip_max_uncompressed_bytes: 10 * 1024 * 1024 * 1024,
            max_manifest_bytes: 256 * 1024 * 1024,
            in_memory_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What the store holds, as [`ArtifactStore::stats`] counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Stored blobs (file contents and manifests), each counted once however
    /// many artifacts share it.
    pub blobs: u64,
    /// Bytes the blobs take in the object store (compressed).
    pub stored_bytes: u64,
    /// Bytes the blobs hold uncompressed, read from their zstd frame headers.
    pub logical_bytes: u64,
}

/// A content-addressed, compressed, deduplicated store of directory trees
/// over any [`ObjectStore`].
///
/// Cheap to clone: clones share the object store.
#[derive(Clone)]
pub struct ArtifactStore {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) limits: Limits,
}

impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("objects", &self.objects.to_string())
            .field("limits", &self.limits)
            .finish()
    }
}

impl ArtifactStore {
    /// A store over any object store (local disk, S3, memory...).
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        ArtifactStore {
            objects,
            limits: Limits::default(),
        }
    }

    /// A store on local disk under `dir`, which is created if missing.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            Error::Store {
                key: dir.display().to_string(),
                source: e,
            }
        })?;
        Ok(Self::new(Arc::new(fs)))
    }

    /// The same store with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The object store underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Stores the tree under `dir` and returns its reference.
    ///
    /// Files, directories (empty ones too), executable bits and symlinks are
    /// kept. A symlink must be relative and resolve inside the tree; a
    /// socket, FIFO or device is refused. Blobs already stored (from this
    /// artifact or any other) are not written again.
    pub async fn put_dir(&self, dir: impl AsRef<Path>) -> Result<ArtifactRef> {
        let root = dir.as_ref().to_path_buf();
        let walked = tokio::task::spawn_blocking(move || walk::walk(&root)).await??;
        // Refuse escaping symlinks before uploading anything.
        walk::check_symlinks(&walked)?;
        let entries: Vec<Entry> = stream::iter(walked)
            .map(|w| self.store_walked(w))
            .buffer_unordered(FILE_CONCURRENCY)
            .try_collect()
            .await?;
        let manifest = Manifest::new(entries)?;
        self.put_manifest(&manifest).await
    }

    async fn store_walked(&self, walked: Walked) -> Result<Entry> {
        let kind = match walked.kind {
            WalkedKind::Dir => EntryKind::Dir,
            WalkedKind::Symlink { target } => EntryKind::Symlink { target },
            WalkedKind::File { size, executable } => EntryKind::File {
                executable,
                size,
                sha256: self.store_file(walked.local, size).await?,
            },
        };
        Ok(Entry {
            path: walked.path,
            kind,
        })
    }

    /// Stores one local file's content; gives its digest.
    ///
    /// A large file is hashed first and compressed only if its blob is not
    /// stored yet: re-storing unchanged build outputs then costs a read and
    /// a hash, not a compression. Small files are hashed and compressed in
    /// one pass (a second read would cost more than it saves).
    async fn store_file(&self, path: PathBuf, size: u64) -> Result<Digest> {
        let limit = self.limits.in_memory_bytes;
        let known = if size > limit {
            let hash_path = path.clone();
            let digest = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&hash_path).map_err(|e| Error::io(&hash_path, e))?;
                let (digest, read) = blob::hash(file).map_err(|e| Error::io(&hash_path, e))?;
                if read != size {
                    return Err(Error::FileChanged {
                        path: hash_path,
                        reason: format!("{size} bytes when listed, {read} when hashed"),
                    });
                }
                Ok(digest)
            })
            .await??;
            if blob::exists(self.objects.as_ref(), &digest).await? {
                return Ok(digest);
            }
            Some(digest)
        } else {
            None
        };
        let compress_path = path.clone();
        let (digest, data) = tokio::task::spawn_blocking(move || {
            let path = compress_path;
            let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            blob::compress(&mut file, size, limit).map_err(|e| match e {
                CompressError::Io(e) => Error::io(&path, e),
                CompressError::SizeMismatch { read } => Error::FileChanged {
                    path: path.clone(),
                    reason: format!("{size} bytes when listed, {read} when read"),
                },
            })
        })
        .await??;
        if let Some(hashed) = known
            && hashed != digest
        {
            return Err(Error::FileChanged {
                path,
                reason: "content differs between hashing and compressing".into(),
            });
        }
        blob::put_blob(self.objects.as_ref(), &digest, data).await?;
        Ok(digest)
    }

    /// Stores a manifest as a blob; its digest is the artifact's reference.
    pub(crate) async fn put_manifest(&self, manifest: &Manifest) -> Result<ArtifactRef> {
        let json = manifest.to_json();
        let size = json.len() as u64;
        let (digest, data) =
            blob::compress(&mut &json[..], size, u64::MAX).map_err(|e| match e {
                CompressError::Io(e) => Error::io("<manifest>", e),
                CompressError::SizeMismatch { read } => Error::Task(format!(
                    "manifest of {size} bytes read back as {read} bytes"
                )),
            })?;
        blob::put_blob(self.objects.as_ref(), &digest, data).await?;
        Ok(ArtifactRef::from_digest(digest))
    }

    /// Whether an artifact with this reference is stored.
    pub async fn contains(&self, artifact: &ArtifactRef) -> Result<bool> {
        let key = blob::blob_key(&artifact.digest());
        match self.objects.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::store(&key, e)),
        }
    }

    /// The artifact's manifest, verified against the reference and validated.
    pub async fn manifest(&self, artifact: &ArtifactRef) -> Result<Manifest> {
        let digest = artifact.digest();
        let fetched = blob::fetch_blob(self.objects.as_ref(), &digest, self.limits.in_memory_bytes)
            .await?
            .ok_or(Error::NotFound(*artifact))?;
        let expect = Expect {
            digest,
            size: ExpectSize::AtMost(self.limits.max_manifest_bytes),
        };
        let json = tokio::task::spawn_blocking(move || {
            let mut json = Vec::new();
            blob::decode_verified(fetched.into_reader(), &expect, &mut json).map(|_| json)
        })
        .await?
        .map_err(|reason| Error::Corrupt {
            path: "manifest".into(),
            key: blob::blob_key(&digest).to_string(),
            reason,
        })?;
        Manifest::from_json(&json)
    }

    /// Writes the artifact into `dest`, which must not exist or be an empty
    /// directory, and returns its manifest.
    ///
    /// Every file is written to a temporary name beside its final one and
    /// renamed into place only once its size and SHA-256 match the manifest,
    /// so no file ever shows partly written or with the wrong content.
    /// Directories are made 0755, files 0755 or 0644 by their executable bit
    /// (whatever the umask). Symlinks are made last. On any error what was
    /// written is removed again (and `dest` too, if this call created it).
    pub async fn materialize(
        &self,
        artifact: &ArtifactRef,
        dest: impl AsRef<Path>,
    ) -> Result<Manifest> {
        let manifest = self.manifest(artifact).await?;
        let dest = dest.as_ref().to_path_buf();
        let created = prepare_destination(&dest).await?;
        match self.write_tree(&manifest, &dest).await {
            Ok(()) => Ok(manifest),
            Err(err) => {
                // Best effort: the original error is the one worth reporting.
                let _ = clean_destination(&dest, created).await;
                Err(err)
            }
        }
    }

    async fn write_tree(&self, manifest: &Manifest, dest: &Path) -> Result<()> {
        // Parents sort before their children, so one pass in order works.
        for entry in &manifest.entries {
            if matches!(entry.kind, EntryKind::Dir) {
                let path = dest.join(&entry.path);
                tokio::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .await
                    .map_err(|e| Error::io(&path, e))?;
                set_mode(&path, 0o755).await?;
            }
        }
        // Owned items: a closure over borrowed entries makes this future
        // impossible to prove `Send` inside callers' spawned tasks.
        let files: Vec<(String, bool, u64, _)> = manifest
            .entries
            .iter()
            .filter_map(|entry| match &entry.kind {
                EntryKind::File {
                    executable,
                    size,
                    sha256,
                } => Some((entry.path.clone(), *executable, *size, *sha256)),
                _ => None,
            })
            .collect();
        // Every write is let finish, even after one fails: a write dropped
        // half-way still runs on tokio's blocking pool, and could create a
        // file while the caller removes the partial tree. After a failure
        // the writes not yet started are skipped.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let results: Vec<Result<()>> = stream::iter(files)
            .map(|(path, executable, size, sha256)| async move {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
                let written = self.write_file(dest, &path, executable, size, sha256).await;
                if written.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                written
            })
            .buffer_unordered(FILE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        // Symlinks last: no file above was written through one.
        for entry in &manifest.entries {
            if let EntryKind::Symlink { target } = &entry.kind {
                let path = dest.join(&entry.path);
                tokio::fs::symlink(target, &path)
                    .await
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    async fn write_file(
        &self,
        dest: &Path,
        rel: &str,
        executable: bool,
        size: u64,
        digest: Digest,
    ) -> Result<()> {
        let key = blob::blob_key(&digest).to_string();
        let fetched = blob::fetch_blob(self.objects.as_ref(), &digest, self.limits.in_memory_bytes)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: rel.to_owned(),
                key: key.clone(),
                reason: "blob is missing from the store".into(),
            })?;
        let final_path = dest.join(rel);
        let rel = rel.to_owned();
        tokio::task::spawn_blocking(move || {
            let parent = final_path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".gantry-tmp-")
                .tempfile_in(parent)
                .map_err(|e| Error::io(parent, e))?;
            let expect = Expect {
                digest,
                size: ExpectSize::Exactly(size),
            };
            blob::decode_verified(fetched.into_reader(), &expect, tmp.as_file_mut()).map_err(
                |reason| Error::Corrupt {
                    path: rel.clone(),
                    key: key.clone(),
                    reason,
                },
            )?;
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(
                tmp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .map_err(|e| Error::io(tmp.path(), e))?;
            tmp.persist_noclobber(&final_path)
                .map_err(|e| Error::io(&final_path, e.error))?;
            Ok(())
        })
        .await?
    }

    /// Counts the stored blobs and their stored and logical bytes.
    pub async fn stats(&self) -> Result<StoreStats> {
        let prefix = ObjPath::from(blob::BLOB_PREFIX);
        let metas: Vec<_> = self
            .objects
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(&prefix, e))?;
        let logical: Vec<u64> = stream::iter(metas.iter())
            .map(|meta| async move {
                let end = meta.size.min(blob::FRAME_HEADER_MAX);
                let head = self
                    .objects
                    .get_range(&meta.location, 0..end)
                    .await
                    .map_err(|e| Error::store(&meta.location, e))?;
                Ok::<_, Error>(blob::frame_content_size(&head).unwrap_or(0))
            })
            .buffer_unordered(FILE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(StoreStats {
            blobs: metas.len() as u64,
            stored_bytes: metas.iter().map(|m| m.size).sum(),
            logical_bytes: logical.iter().sum(),
        })
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| Error::io(path, e))
}

/// Makes sure `dest` is an empty directory; returns whether it was created.
async fn prepare_destination(dest: &PathBuf) -> Result<bool> {
    match tokio::fs::symlink_metadata(dest).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(dest)
                .await
                .map_err(|e| Error::io(dest, e))?;
            Ok(true)
        }
        Err(e) => Err(Error::io(dest, e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = tokio::fs::read_dir(dest)
                .await
                .map_err(|e| Error::io(dest, e))?;
            if entries
                .next_entry()
                .await
                .map_err(|e| Error::io(dest, e))?
                .is_some()
            {
                return Err(Error::DestinationNotEmpty { path: dest.clone() });
            }
            Ok(false)
        }
        Ok(_) => Err(Error::DestinationNotEmpty { path: dest.clone() }),
    }
}

async fn clean_destination(dest: &Path, created: bool) -> std::io::Result<()> {
    if created {
        return tokio::fs::remove_dir_all(dest).await;
    }
    let mut entries = tokio::fs::read_dir(dest).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await?.is_dir() {
            tokio::fs::remove_dir_all(entry.path()).await?;
        } else {
            tokio::fs::remove_file(entry.path()).await?;
        }
    }
    Ok(())
}
