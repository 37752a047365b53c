//! The one error type of the artifact store, with the path or object that failed.

use std::path::PathBuf;

use crate::ArtifactRef;

/// Everything that can go wrong storing, reading or converting an artifact.
///
/// Every variant names what it was working on (a local path, an entry of the
/// artifact, an object key), so a message in a pipeline's log says which file
/// was the problem without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a local file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The local path being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The object store refused or failed a request.
    #[error("object store, {key}: {source}")]
    Store {
        /// The object key involved.
        key: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },

    /// An artifact store location (`--artifact-store`) that cannot be used.
    #[error("artifact store location {input:?}: {reason}")]
    InvalidLocation {
        /// What was given.
        input: String,
        /// What was expected instead.
        reason: String,
    },

    /// No artifact with this reference is stored.
    #[error("artifact {0} not found in the store")]
    NotFound(ArtifactRef),

    /// A string that should be an artifact reference is not one.
    #[error(
        "invalid artifact reference {input:?}: expected \"sha256:\" and 64 lowercase hex digits"
    )]
    InvalidRef {
        /// What was given.
        input: String,
    },

    /// `put_dir` met something that is not a file, a directory or a symlink.
    #[error("{}: refusing to store a {kind}; an artifact holds only files, directories and symlinks", path.display())]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
        /// What it is: "socket", "FIFO", "block device", "character device".
        kind: &'static str,
    },

    /// A file name is not UTF-8; manifests and zip entries name files in UTF-8.
    #[error("{}: file name is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },

    /// A local file changed while it was being stored.
    #[error("{}: file changed while it was being stored ({reason})", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// What differed.
        reason: String,
    },

    /// A symlink in the tree points outside it (or is absolute), which an
    /// artifact cannot carry: it would mean something else wherever it is
    /// materialized.
    #[error("symlink {path:?} -> {target:?} points outside the artifact: {reason}")]
    SymlinkEscapes {
        /// The symlink's path inside the artifact.
        path: String,
        /// Its target, as stored.
        target: String,
        /// Why it escapes.
        reason: String,
    },

    /// A manifest (stored or forged) breaks one of the manifest's rules.
    #[error("invalid manifest: {path:?}: {reason}")]
    InvalidManifest {
        /// The entry that breaks the rule ("" for the manifest as a whole).
        path: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A stored blob does not hold what the manifest says it holds.
    #[error("artifact entry {path:?} is corrupt (blob {key}): {reason}")]
    Corrupt {
        /// The entry of the artifact whose content is bad ("manifest" for the
        /// manifest itself).
        path: String,
        /// The object key of the blob.
        key: String,
        /// What did not match.
        reason: String,
    },

    /// `materialize` was asked to write into a directory that already has
    /// content; existing files (and symlinks) could redirect or mix with the
    /// artifact's.
    #[error("{}: destination exists and is not an empty directory", path.display())]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },

    /// A zip archive could not be read or written.
    #[error("zip archive: {reason}")]
    Zip {
        /// What went wrong.
        reason: String,
    },

    /// A zip entry's name would land outside the artifact (zip-slip) or is
    /// otherwise unusable.
    #[error("zip entry {name:?}: {reason}")]
    UnsafeZipEntry {
        /// The entry's name as stored in the archive.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A zip archive exceeds the configured limits (a zip bomb, or just too big).
    #[error("zip archive exceeds the limit: {reason}")]
    ZipLimit {
        /// Which limit, and the configured value.
        reason: String,
    },

    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(key: &object_store::path::Path, source: object_store::Error) -> Self {
        Error::Store {
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn manifest(path: &str, reason: impl Into<String>) -> Self {
        Error::InvalidManifest {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Error::Task(err.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
