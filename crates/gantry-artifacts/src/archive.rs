//! Zip archives in and out: CodePipeline passes artifacts between actions as
//! zip files of the artifact's files, so this is how artifacts meet AWS tools.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::io::{Read, Seek, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::blob::{self, CompressError, Compressed, Expect, ExpectSize};
use crate::manifest::{Entry, EntryKind, Manifest, check_relative_path};
use crate::{ArtifactRef, ArtifactStore, Digest, Error, Result};

/// Longest symlink target read from a zip entry (Linux's `PATH_MAX`).
const MAX_SYMLINK_TARGET: u64 = 4096;

impl ArtifactStore {
    /// Writes the artifact as a zip archive into `writer` and gives the
    /// writer back.
    ///
    /// Directories are entries of their own (so empty ones survive), files
    /// are deflated with their mode (0755 or 0644) in the Unix attributes,
    /// symlinks are Unix symlink entries (as CodeBuild's `enable-symlinks`
    /// writes them). Every timestamp is 1980-01-01 00:00, zip's epoch, so
    /// one artifact always gives the same bytes. Content is verified
    /// against the manifest as it is written.
    pub async fn write_zip<W>(&self, artifact: &ArtifactRef, writer: W) -> Result<W>
    where
        W: Write + Seek + Send + 'static,
    {
        let manifest = self.manifest(artifact).await?;
        let mut zip = ZipWriter::new(writer);
        let base = SimpleFileOptions::default().last_modified_time(DateTime::default());
        for entry in manifest.entries {
            let path = entry.path;
            match entry.kind {
                EntryKind::Dir => {
                    zip.add_directory(path.as_str(), base.unix_permissions(0o755))
                        .map_err(|e| zip_error(&path, e))?;
                }
                EntryKind::Symlink { target } => {
                    zip.add_symlink(path.as_str(), target, base.unix_permissions(0o777))
                        .map_err(|e| zip_error(&path, e))?;
                }
                EntryKind::File {
                    executable,
                    size,
                    sha256,
                } => {
                    let key = blob::blob_key(&sha256).to_string();
                    let fetched = blob::fetch_blob(
                        self.objects.as_ref(),
                        &sha256,
                        self.limits.in_memory_bytes,
                    )
                    .await?
                    .ok_or_else(|| Error::Corrupt {
                        path: path.clone(),
                        key: key.clone(),
                        reason: "blob is missing from the store".into(),
                    })?;
                    let options = base
                        .compression_method(CompressionMethod::Deflated)
                        .unix_permissions(if executable { 0o755 } else { 0o644 })
                        .large_file(size >= u64::from(u32::MAX));
                    // The zip writer is blocking I/O: lend it to a blocking
                    // thread for each file and take it back.
                    zip = tokio::task::spawn_blocking(move || {
                        zip.start_file(path.as_str(), options)
                            .map_err(|e| zip_error(&path, e))?;
                        let expect = Expect {
                            digest: sha256,
                            size: ExpectSize::Exactly(size),
                        };
                        blob::decode_verified(fetched.into_reader(), &expect, &mut zip)
                            .map_err(|reason| Error::Corrupt { path, key, reason })?;
                        Ok::<_, Error>(zip)
                    })
                    .await??;
                }
            }
        }
        tokio::task::spawn_blocking(move || zip.finish().map_err(|e| zip_error("", e))).await?
    }

    /// Stores the files of a zip archive as an artifact.
    ///
    /// Entry names use `/` (a `\` is read as `/`, as Windows tools write
    /// it); `.` components and empty ones are dropped; an absolute name, a
    /// drive letter or a `..` component is refused (zip-slip), as is an
    /// encrypted entry, a name given twice, or a symlink that would resolve
    /// outside the tree. Parent directories an archive leaves implicit are
    /// added. The archive may hold at most [`Limits::zip_max_entries`]
    /// entries and decompress to at most
    /// [`Limits::zip_max_uncompressed_bytes`], counted as bytes actually
    /// decompressed.
    ///
    /// [`Limits::zip_max_entries`]: crate::Limits::zip_max_entries
    /// [`Limits::zip_max_uncompressed_bytes`]: crate::Limits::zip_max_uncompressed_bytes
    pub async fn put_zip<R>(&self, reader: R) -> Result<ArtifactRef>
    where
        R: Read + Seek + Send + 'static,
    {
        let limits = self.limits.clone();
        let mut archive = tokio::task::spawn_blocking(move || ZipArchive::new(reader))
            .await?
            .map_err(|e| Error::Zip {
                reason: format!("not a readable zip archive: {e}"),
            })?;
        if archive.len() as u64 > limits.zip_max_entries {
            return Err(Error::ZipLimit {
                reason: format!(
                    "{} entries, at most {} allowed",
                    archive.len(),
                    limits.zip_max_entries
                ),
            });
        }
        let mut budget = limits.zip_max_uncompressed_bytes;
        let mut tree = Tree::default();
        for index in 0..archive.len() {
            let in_memory = limits.in_memory_bytes;
            let (back, item) = tokio::task::spawn_blocking(move || {
                let item = read_entry(&mut archive, index, budget, in_memory);
                (archive, item)
            })
            .await?;
            archive = back;
            match item? {
                None => {}
                Some((name, path, ZipItem::Dir)) => tree.insert(name, path, EntryKind::Dir)?,
                Some((name, path, ZipItem::Symlink(target))) => {
                    tree.insert(name, path, EntryKind::Symlink { target })?;
                }
                Some((
                    name,
                    path,
                    ZipItem::File {
                        executable,
                        size,
                        digest,
                        data,
                    },
                )) => {
                    budget -= size;
                    blob::put_blob(self.objects.as_ref(), &digest, data).await?;
                    tree.insert(
                        name,
                        path,
                        EntryKind::File {
                            executable,
                            size,
                            sha256: digest,
                        },
                    )?;
                }
            }
        }
        let manifest = tree.into_manifest()?;
        self.put_manifest(&manifest).await
    }
}

fn zip_error(path: &str, err: zip::result::ZipError) -> Error {
    Error::Zip {
        reason: if path.is_empty() {
            err.to_string()
        } else {
            format!("{path:?}: {err}")
        },
    }
}

enum ZipItem {
    Dir,
    Symlink(String),
    File {
        executable: bool,
        size: u64,
        digest: Digest,
        data: Compressed,
    },
}

/// Reads entry `index`: its name as in the archive, its path in the
/// artifact, and what it is. `None` for an entry naming the root (`./`).
fn read_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    budget: u64,
    in_memory: u64,
) -> Result<Option<(String, String, ZipItem)>> {
    let mut file = archive.by_index(index).map_err(|e| Error::Zip {
        reason: format!("entry #{index}: {e}"),
    })?;
    let name = file
        .name()
        .map_err(|e| Error::Zip {
            reason: format!("entry #{index}: unreadable name: {e}"),
        })?
        .into_owned();
    let unsafe_entry = |reason: String| Error::UnsafeZipEntry {
        name: name.clone(),
        reason,
    };
    if file.encrypted() {
        return Err(unsafe_entry("encrypted entries are not supported".into()));
    }
    let Some(path) = entry_path(&name).map_err(unsafe_entry)? else {
        return Ok(None);
    };
    if file.is_dir() {
        return Ok(Some((name, path, ZipItem::Dir)));
    }
    if file.is_symlink() {
        let mut target = String::new();
        (&mut file)
            .take(MAX_SYMLINK_TARGET + 1)
            .read_to_string(&mut target)
            .map_err(|e| unsafe_entry(format!("unreadable symlink target: {e}")))?;
        if target.len() as u64 > MAX_SYMLINK_TARGET {
            return Err(unsafe_entry(format!(
                "symlink target longer than {MAX_SYMLINK_TARGET} bytes"
            )));
        }
        return Ok(Some((name, path, ZipItem::Symlink(target))));
    }
    let size = file.size();
    if size > budget {
        return Err(Error::ZipLimit {
            reason: format!(
                "entry {name:?} ({size} bytes) is more than the {budget} bytes left of the uncompressed-size limit"
            ),
        });
    }
    let executable = file.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
    let (digest, data) = blob::compress(&mut file, size, in_memory).map_err(|e| match e {
        CompressError::Io(e) => Error::Zip {
            reason: format!("entry {name:?}: {e}"),
        },
        CompressError::SizeMismatch { read } => Error::Zip {
            reason: format!("entry {name:?}: header says {size} bytes, content has {read}"),
        },
    })?;
    Ok(Some((
        name,
        path,
        ZipItem::File {
            executable,
            size,
            digest,
            data,
        },
    )))
}

/// An entry name as a path inside the artifact; `Ok(None)` for the root.
fn entry_path(name: &str) -> std::result::Result<Option<String>, String> {
    let name = name.replace('\\', "/");
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("absolute Windows path (drive letter)".into());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("\"..\" component (would land outside the artifact)".into()),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let path = parts.join("/");
    check_relative_path(&path)?;
    Ok(Some(path))
}

/// The entries of an archive as they are read, with the name each came from.
#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, (EntryKind, String)>,
}

impl Tree {
    fn insert(&mut self, name: String, path: String, kind: EntryKind) -> Result<()> {
        // Parents an archive leaves implicit become directories.
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            let parent = &path[..end];
            match self.entries.get(parent) {
                Some((EntryKind::Dir, _)) => {}
                Some((_, other)) => {
                    return Err(Error::UnsafeZipEntry {
                        name,
                        reason: format!(
                            "its parent {parent:?} is not a directory (entry {other:?})"
                        ),
                    });
                }
                None => {
                    self.entries
                        .insert(parent.to_owned(), (EntryKind::Dir, name.clone()));
                }
            }
            end += 1;
        }
        match self.entries.entry(path) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert((kind, name));
                Ok(())
            }
            btree_map::Entry::Occupied(slot) => match (&slot.get().0, &kind) {
                (EntryKind::Dir, EntryKind::Dir) => Ok(()),
                _ => Err(Error::UnsafeZipEntry {
                    name,
                    reason: format!("its path clashes with entry {:?}", slot.get().1),
                }),
            },
        }
    }

    fn into_manifest(self) -> Result<Manifest> {
        let entries = self
            .entries
            .into_iter()
            .map(|(path, (kind, _))| Entry { path, kind })
            .collect();
        Manifest::new(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::entry_path;

    #[test]
    fn entry_names_become_plain_paths() {
        assert_eq!(entry_path("a/b.txt").unwrap().as_deref(), Some("a/b.txt"));
        assert_eq!(entry_path("./a//b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(entry_path("a\\b").unwrap().as_deref(), Some("a/b"));
        assert_eq!(entry_path("./").unwrap(), None);
    }

    #[test]
    fn zip_slip_names_are_refused() {
        for (name, why) in [
            ("../evil", "\"..\""),
            ("a/../../evil", "\"..\""),
            ("..\\evil", "\"..\""),
            ("/etc/passwd", "absolute"),
            ("\\evil", "absolute"),
            ("C:/Windows/evil", "drive letter"),
            ("c:evil", "drive letter"),
            ("a\0b", "NUL"),
        ] {
            let err = entry_path(name).unwrap_err();
            assert!(err.contains(why), "{name:?}: {err}");
        }
    }
}
