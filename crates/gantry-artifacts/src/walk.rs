//! Walking a local directory into the entries `put_dir` stores.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::manifest::check_symlink_inside;
use crate::{Error, Result};

/// One thing found under the root.
pub(crate) struct Walked {
    /// Path inside the artifact (`/`-separated).
    pub(crate) path: String,
    /// Path on disk.
    pub(crate) local: PathBuf,
    pub(crate) kind: WalkedKind,
}

pub(crate) enum WalkedKind {
    File { size: u64, executable: bool },
    Dir,
    Symlink { target: String },
}

/// Lists everything under `root` without following symlinks (the root
/// itself may be a symlink to a directory).
pub(crate) fn walk(root: &Path) -> Result<Vec<Walked>> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut out = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.to_path_buf());
            let source = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
            Error::io(path, source)
        })?;
        let local = item.path().to_path_buf();
        let rel = local.strip_prefix(root).map_err(|_| Error::NonUtf8Path {
            path: local.clone(),
        })?;
        let path = rel
            .to_str()
            .ok_or_else(|| Error::NonUtf8Path {
                path: local.clone(),
            })?
            .to_owned();
        let file_type = item.file_type();
        let kind = if file_type.is_dir() {
            WalkedKind::Dir
        } else if file_type.is_file() {
            let meta = item.metadata().map_err(|e| {
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("metadata"));
                Error::io(&local, source)
            })?;
            WalkedKind::File {
                size: meta.len(),
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&local).map_err(|e| Error::io(&local, e))?;
            let target = target
                .to_str()
                .ok_or_else(|| Error::NonUtf8Path {
                    path: local.clone(),
                })?
                .to_owned();
            WalkedKind::Symlink { target }
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else if file_type.is_block_device() {
                "block device"
            } else if file_type.is_char_device() {
                "character device"
            } else {
                "special file"
            };
            return Err(Error::UnsupportedFileType { path: local, kind });
        };
        out.push(Walked { path, local, kind });
    }
    Ok(out)
}

/// Every symlink must resolve inside the tree, through the tree's own symlinks.
pub(crate) fn check_symlinks(walked: &[Walked]) -> Result<()> {
    let links: HashMap<&str, &str> = walked
        .iter()
        .filter_map(|w| match &w.kind {
            WalkedKind::Symlink { target } => Some((w.path.as_str(), target.as_str())),
            _ => None,
        })
        .collect();
    for (path, target) in &links {
        check_symlink_inside(path, target, |p| links.get(p).copied())?;
    }
    Ok(())
}
