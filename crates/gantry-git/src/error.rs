//! The one error type of the git layer. URLs in it are always redacted.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong fetching, reading or polling a repository.
///
/// A repository URL in an error has its user-info (`user:token@`) replaced
/// by `***`, and the same secret is scrubbed from git's captured stderr, so
/// errors can be logged and shown to users as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository URL is refused before git ever sees it.
    #[error("invalid repository URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The branch name is not one git would accept (or could be read as an option).
    #[error("invalid branch name {branch:?}: {reason}")]
    InvalidBranch {
        /// The branch name as given.
        branch: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A commit id is not 40 (SHA-1) or 64 (SHA-256) hex digits.
    #[error("invalid commit id {id:?}: expected 40 or 64 hex digits")]
    InvalidCommitId {
        /// The id as given.
        id: String,
    },

    /// The remote has no such branch.
    #[error("branch {branch:?} not found in {url}")]
    BranchNotFound {
        /// The URL, redacted.
        url: String,
        /// The branch.
        branch: String,
    },

    /// The commit could not be fetched from the remote.
    #[error("commit {commit} not found in {url}")]
    CommitNotFound {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
    },

    /// A git command exited with an error.
    #[error("`git {command}` failed ({status}): {stderr}")]
    GitFailed {
        /// The subcommand and its arguments, URL redacted.
        command: String,
        /// How it exited.
        status: String,
        /// The end of git's stderr, secrets scrubbed.
        stderr: String,
    },

    /// A git command ran past its timeout and was killed with its process group.
    #[error("`git {command}` timed out after {}s and was killed", timeout.as_secs())]
    Timeout {
        /// The subcommand and its arguments, URL redacted.
        command: String,
        /// The timeout in force.
        timeout: Duration,
    },

    /// The git program could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A local file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A checkout destination already has content.
    #[error("{}: destination exists and is not an empty directory", path.display())]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },

    /// git printed something this crate cannot read.
    #[error("unexpected output from `git {command}`: {detail}")]
    UnexpectedOutput {
        /// The subcommand.
        command: String,
        /// What was wrong with it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
