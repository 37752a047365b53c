//! The rows the store hands out and takes in.

use std::fmt;

/// A new SigV4 access key.
#[derive(Clone)]
pub struct NewAccessKey {
    /// The access key id, e.g. `GANTRYADMIN7Q2...`.
    pub access_key_id: String,
    /// The secret access key, in clear; encrypted before it is written.
    pub secret: String,
    /// Whether the key belongs to an administrator.
    pub is_admin: bool,
}

impl fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("is_admin", &self.is_admin)
            .finish()
    }
}

/// A project to create or to replace.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProject {
    /// The unique name.
    pub name: String,
    /// The project as JSON (CodeBuild's `Project` shape, as the server keeps it).
    pub project: serde_json::Value,
}

/// A stored project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    /// The unique name.
    pub name: String,
    /// The project as JSON.
    pub project: serde_json::Value,
    /// When it was created, epoch milliseconds.
    pub created_ms: i64,
    /// When it last changed, epoch milliseconds.
    pub modified_ms: i64,
}

/// How to sort project names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectSort {
    /// By name.
    Name,
    /// By creation time.
    CreatedTime,
    /// By last modification time.
    LastModifiedTime,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

impl SortOrder {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            SortOrder::Ascending => "ASC",
            SortOrder::Descending => "DESC",
        }
    }
}

/// A build to record. Its number is assigned by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBuild {
    /// The build id, `project:uuid`.
    pub id: String,
    /// The project's name.
    pub project: String,
    /// The status to start in, e.g. `IN_PROGRESS`.
    pub status: String,
    /// The phase to start in, e.g. `SUBMITTED`.
    pub current_phase: String,
    /// The build as JSON (CodeBuild's `Build` shape, as the server keeps it).
    pub build: serde_json::Value,
    /// The StartBuild overrides the build was requested with.
    pub overrides: serde_json::Value,
    /// When it was requested, epoch milliseconds.
    pub start_ms: i64,
}

/// A stored build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRecord {
    /// The build id, `project:uuid`.
    pub id: String,
    /// The project's name.
    pub project: String,
    /// The build number, unique within the project.
    pub number: u64,
    /// `IN_PROGRESS`, `SUCCEEDED`, `FAILED`, ...
    pub status: String,
    /// The phase it is in, or was in when it ended.
    pub current_phase: String,
    /// The build as JSON.
    pub build: serde_json::Value,
    /// The StartBuild overrides.
    pub overrides: serde_json::Value,
    /// When it was requested, epoch milliseconds.
    pub start_ms: i64,
    /// When it ended, epoch milliseconds.
    pub end_ms: Option<i64>,
}

/// A change of a build's state.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildUpdate {
    /// The new status.
    pub status: String,
    /// The new current phase.
    pub current_phase: String,
    /// The new JSON.
    pub build: serde_json::Value,
    /// When it ended, once it has.
    pub end_ms: Option<i64>,
}

/// One line of a build's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its sequence number, from 1.
    pub seq: u64,
    /// The text, without the newline.
    pub text: String,
}

/// Where a byte offset falls in a build's log; see `BuildStore::log_seek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSeek {
    /// The last line that ends at or before the offset (0: none).
    pub after_seq: u64,
    /// The byte offset where line `after_seq + 1` begins.
    pub line_start: u64,
}

/// Where a finished build's log is kept: bytes `offset .. offset +
/// size_bytes` of an object in the artifact store, the log text (every
/// line followed by `\n`). The object may hold other builds' logs around
/// it (the logs of builds that ended together are packed into one object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogArchive {
    /// The build.
    pub build_id: String,
    /// The object's key in the artifact store.
    pub object_key: String,
    /// Where the log text begins in the object, in bytes.
    pub offset: u64,
    /// The length of the log text in bytes.
    pub size_bytes: u64,
    /// How many lines the text holds.
    pub line_count: u64,
    /// When it was written, epoch milliseconds.
    pub archived_ms: i64,
}

/// A finished log's move out of the database, as
/// [`crate::BuildStore::archive_logs`] records it: the object now holding
/// the log, and the last line it holds (the lines up to it go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMove {
    /// Where the log is now.
    pub archive: LogArchive,
    /// The last line number the object holds.
    pub through_seq: u64,
}

/// Each build's last move among `moves` (the order among builds is not
/// kept): both stores upsert them in one statement, where a row may not be
/// written twice.
pub(crate) fn last_move_per_build(moves: &[LogMove]) -> Vec<&LogMove> {
    let mut last: Vec<&LogMove> = Vec::with_capacity(moves.len());
    for m in moves.iter().rev() {
        if !last
            .iter()
            .any(|l| l.archive.build_id == m.archive.build_id)
        {
            last.push(m);
        }
    }
    last
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// Who: an access key id, or `system`.
    pub actor: String,
    /// What, e.g. `project.create`.
    pub action: String,
    /// On what, e.g. the project's name.
    pub target: String,
    /// Anything more, e.g. the build's new status.
    pub detail: String,
}

/// `found` (rows read by their keys in one query, in any order) in the
/// order of `keys`: a key asked for twice gets its row twice, a key not
/// found gets nothing, as a lookup per key would answer.
pub(crate) fn in_order_of<T: Clone>(
    keys: &[String],
    found: Vec<T>,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut by_key: std::collections::HashMap<String, T> = found
        .into_iter()
        .map(|row| (key(&row).to_owned(), row))
        .collect();
    let mut ordered: Vec<T> = Vec::with_capacity(keys.len());
    for k in keys {
        match by_key.remove(k.as_str()) {
            Some(row) => ordered.push(row),
            // Asked for before (and found then), or not found at all.
            None => {
                if let Some(row) = ordered.iter().find(|r| key(r) == k.as_str()) {
                    ordered.push(row.clone());
                }
            }
        }
    }
    ordered
}

/// A log line as both stores keep it: a NUL character becomes U+FFFD.
/// PostgreSQL's text cannot hold NUL, and refused the whole batch of lines
/// a build that printed one was in; SQLite does the same so that a log
/// reads the same on either store.
pub(crate) fn storable_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.contains('\0') {
        std::borrow::Cow::Owned(line.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
