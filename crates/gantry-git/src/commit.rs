//! A commit as the source action reports it, and its output variables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest `CommitMessage` output variable, in bytes; longer messages are
/// cut at a character boundary (the full message stays in [`Commit::message`]).
pub const MAX_COMMIT_MESSAGE_VARIABLE: usize = 4096;

/// A commit read from a mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The full commit id (40 hex digits, or 64 in a SHA-256 repository).
    pub id: String,
    /// The branch it was fetched as, if it was fetched by branch.
    pub branch: Option<String>,
    /// Author date in UTC, ISO 8601 as CodePipeline shows it: `2024-05-01T12:34:56Z`.
    pub author_date: String,
    /// Author name.
    pub author_name: String,
    /// Author e-mail.
    pub author_email: String,
    /// Committer date in UTC, same format as `author_date`.
    pub committer_date: String,
    /// The full commit message, without its trailing newline.
    pub message: String,
}

impl Commit {
    /// The same commit, recorded as the head of `branch` (a webhook names
    /// the branch and the sha; [`crate::GitCache::fetch_commit`] only the sha).
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }

    /// The Git source action's output variables, with CodePipeline's names:
    /// `CommitId`, `BranchName` (empty when unknown), `AuthorDate`,
    /// `CommitterDate` and `CommitMessage` (at most
    /// [`MAX_COMMIT_MESSAGE_VARIABLE`] bytes), plus Gantry's `AuthorName`.
    pub fn output_variables(&self) -> BTreeMap<String, String> {
        let mut message = self.message.as_str();
        if message.len() > MAX_COMMIT_MESSAGE_VARIABLE {
            let mut cut = MAX_COMMIT_MESSAGE_VARIABLE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message = &message[..cut];
        }
        [
            ("CommitId", self.id.as_str()),
            ("BranchName", self.branch.as_deref().unwrap_or("")),
            ("AuthorDate", self.author_date.as_str()),
            ("CommitterDate", self.committer_date.as_str()),
            ("CommitMessage", message),
            ("AuthorName", self.author_name.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// The `--format` that [`parse_commit`] reads: fields separated by NUL,
/// the message last (it may contain anything but NUL).
pub(crate) const COMMIT_FORMAT: &str = "--format=%H%x00%an%x00%ae%x00%ad%x00%cd%x00%B";

/// The `--date` that makes `%ad`/`%cd` CodePipeline's UTC form (with `TZ=UTC`).
pub(crate) const DATE_FORMAT: &str = "--date=format-local:%Y-%m-%dT%H:%M:%SZ";

/// Reads `git show -s` output in [`COMMIT_FORMAT`].
pub(crate) fn parse_commit(output: &[u8]) -> Option<Commit> {
    let text = String::from_utf8_lossy(output);
    let mut fields = text.splitn(6, '\0');
    let id = fields.next()?.trim().to_owned();
    let author_name = fields.next()?.to_owned();
    let author_email = fields.next()?.to_owned();
    let author_date = fields.next()?.to_owned();
    let committer_date = fields.next()?.to_owned();
    let message = fields.next()?.trim_end_matches('\n').to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Commit {
        id,
        branch: None,
        author_date,
        author_name,
        author_email,
        committer_date,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(message: &str) -> Commit {
        Commit {
            id: "a".repeat(40),
            branch: Some("main".into()),
            author_date: "2024-05-01T12:34:56Z".into(),
            author_name: "Ada".into(),
            author_email: "ada@example.com".into(),
            committer_date: "2024-05-02T00:00:00Z".into(),
            message: message.into(),
        }
    }

    #[test]
    fn output_variables_use_codepipeline_names() {
        let vars = commit("Fix it\n\nBody").output_variables();
        assert_eq!(vars["CommitId"], "a".repeat(40));
        assert_eq!(vars["BranchName"], "main");
        assert_eq!(vars["AuthorDate"], "2024-05-01T12:34:56Z");
        assert_eq!(vars["CommitterDate"], "2024-05-02T00:00:00Z");
        assert_eq!(vars["CommitMessage"], "Fix it\n\nBody");
        assert_eq!(vars["AuthorName"], "Ada");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_COMMIT_MESSAGE_VARIABLE); // 2 bytes each
        let vars = commit(&long).output_variables();
        assert!(vars["CommitMessage"].len() <= MAX_COMMIT_MESSAGE_VARIABLE);
        assert!(vars["CommitMessage"].len() >= MAX_COMMIT_MESSAGE_VARIABLE - 1);
        let mut unknown_branch = commit("m");
        unknown_branch.branch = None;
        assert_eq!(unknown_branch.output_variables()["BranchName"], "");
    }

    #[test]
    fn parse_reads_the_fields_and_refuses_garbage() {
        let id = "b".repeat(40);
        let raw = format!(
            "{id}\0Ada L\0ada@x\02024-01-01T00:00:00Z\02024-01-02T00:00:00Z\0Subject\n\nBody\n\n"
        );
        let c = parse_commit(raw.as_bytes()).unwrap();
        assert_eq!(c.id, id);
        assert_eq!(c.author_name, "Ada L");
        assert_eq!(c.message, "Subject\n\nBody");
        assert!(parse_commit(b"only\0three\0fields").is_none());
        assert!(parse_commit(b"zz\0a\0b\0c\0d\0e").is_none());
    }
}
