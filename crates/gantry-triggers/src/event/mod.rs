//! Webhook payloads: the push and pull-request (merge-request) events of
//! GitHub, GitLab, Gitea and Forgejo read into one [`GitEvent`].
//!
//! Only the fields Gantry acts on are read; anything else in the payload is
//! ignored. A required field that is absent, or any field of the wrong type,
//! is an [`EventError`] naming its path. Events that are neither a push nor
//! one of the pull-request events CodePipeline triggers on (ping, issues,
//! a label added to a pull request, ...) are [`GitEvent::Other`], not errors.
//!
//! ```
//! use gantry_triggers::event::{self, GitEvent, GitRef};
//! use gantry_triggers::Provider;
//!
//! let body = br#"{
//!   "ref": "refs/heads/main",
//!   "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
//!   "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
//!   "commits": [{
//!     "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
//!     "message": "Update README.md",
//!     "timestamp": "2019-05-15T15:20:30-05:00",
//!     "author": {"name": "Codertocat", "email": "codertocat@example.com"},
//!     "added": [], "removed": [], "modified": ["README.md"]
//!   }],
//!   "repository": {
//!     "full_name": "Codertocat/Hello-World",
//!     "clone_url": "https://github.com/Codertocat/Hello-World.git"
//!   }
//! }"#;
//! let GitEvent::Push(push) = event::parse(Provider::GitHub, "push", body)? else {
//!     panic!("a push");
//! };
//! assert_eq!(push.git_ref, GitRef::Branch("main".into()));
//! assert_eq!(push.changed_files.paths, ["README.md"]);
//! assert!(push.changed_files.complete);
//! # Ok::<(), gantry_triggers::event::EventError>(())
//! ```

mod gitea;
mod github;
mod gitlab;
mod node;

pub use gantry_spec::pipeline::PullRequestEvent;
use serde_json::Value;
use thiserror::Error;

use crate::headers::Headers;
use crate::signature::Provider;
use node::Node;

/// What a webhook request reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitEvent {
    /// Commits pushed to (or a ref created or deleted at) a branch or tag.
    Push(Push),
    /// A pull request (GitLab: merge request) opened, updated or closed.
    PullRequest(PullRequest),
    /// Anything else: `ping`, `issues`, a pull request labelled, ... The
    /// text says which (`ping`, `pull_request (labeled)`).
    Other(String),
}

impl GitEvent {
    /// The repository the event happened in (for a pull request, the
    /// destination repository); `None` for [`GitEvent::Other`].
    pub fn repository(&self) -> Option<&Repository> {
        match self {
            GitEvent::Push(p) => Some(&p.repository),
            GitEvent::PullRequest(p) => Some(&p.repository),
            GitEvent::Other(_) => None,
        }
    }

    /// The files the event changed, as far as the payload tells.
    pub fn changed_files(&self) -> Option<&ChangedFiles> {
        match self {
            GitEvent::Push(p) => Some(&p.changed_files),
            GitEvent::PullRequest(p) => Some(&p.changed_files),
            GitEvent::Other(_) => None,
        }
    }

    /// Replaces the changed files with a complete list the caller computed
    /// (`git diff --name-only before after`), for payloads whose own list is
    /// incomplete. Does nothing for [`GitEvent::Other`].
    pub fn set_changed_files<I, S>(&mut self, paths: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let files = ChangedFiles::complete(paths);
        match self {
            GitEvent::Push(p) => p.changed_files = files,
            GitEvent::PullRequest(p) => p.changed_files = files,
            GitEvent::Other(_) => {}
        }
    }
}

/// A repository as the payload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `owner/name` (GitLab: `path_with_namespace`, groups included).
    pub full_name: String,
    /// The HTTP(S) clone URL.
    pub clone_url: String,
    /// The SSH clone URL, when given.
    pub ssh_url: Option<String>,
    /// The web page of the repository, when given.
    pub html_url: Option<String>,
    /// The repository's default branch, when given.
    pub default_branch: Option<String>,
}

impl Repository {
    /// Every URL the payload gives for the repository.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.clone_url.as_str())
            .chain(self.ssh_url.as_deref())
            .chain(self.html_url.as_deref())
    }
}

/// What a pushed ref names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// `refs/heads/<name>`: the branch name.
    Branch(String),
    /// `refs/tags/<name>`: the tag name.
    Tag(String),
    /// Any other ref, in full (`refs/notes/commits`).
    Other(String),
}

impl GitRef {
    /// Reads a full ref name.
    pub fn parse(full: &str) -> GitRef {
        if let Some(branch) = full.strip_prefix("refs/heads/") {
            GitRef::Branch(branch.to_string())
        } else if let Some(tag) = full.strip_prefix("refs/tags/") {
            GitRef::Tag(tag.to_string())
        } else {
            GitRef::Other(full.to_string())
        }
    }

    /// The branch name, for a branch.
    pub fn branch(&self) -> Option<&str> {
        match self {
            GitRef::Branch(b) => Some(b),
            _ => None,
        }
    }

    /// The tag name, for a tag.
    pub fn tag(&self) -> Option<&str> {
        match self {
            GitRef::Tag(t) => Some(t),
            _ => None,
        }
    }

    /// The full ref name again (`refs/heads/main`).
    pub fn full(&self) -> String {
        match self {
            GitRef::Branch(b) => format!("refs/heads/{b}"),
            GitRef::Tag(t) => format!("refs/tags/{t}"),
            GitRef::Other(o) => o.clone(),
        }
    }
}

/// A push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Where it was pushed.
    pub repository: Repository,
    /// The ref pushed to.
    pub git_ref: GitRef,
    /// The commit the ref pointed at before (all zeros when it was created).
    pub before: String,
    /// The commit the ref points at now (all zeros when it was deleted).
    pub after: String,
    /// The push created the ref.
    pub created: bool,
    /// The push deleted the ref.
    pub deleted: bool,
    /// The push rewrote history (GitHub's `forced`; other hosts do not say).
    pub forced: bool,
    /// The pushed commits the payload lists, oldest first.
    pub commits: Vec<Commit>,
    /// Files added, modified or removed by the listed commits.
    pub changed_files: ChangedFiles,
}

/// A commit as a push payload lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The commit id (SHA).
    pub id: String,
    /// The full message.
    pub message: String,
    /// When it was authored, as the payload writes it (ISO 8601).
    pub timestamp: Option<String>,
    /// Who wrote it.
    pub author: Person,
}

/// A commit author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The name.
    pub name: String,
    /// The e-mail address, when given.
    pub email: Option<String>,
}

/// The paths an event changed, and whether the payload listed all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFiles {
    /// Paths relative to the repository root, sorted, each once.
    pub paths: Vec<String>,
    /// `false` when the payload could not list every changed file: it
    /// truncated the commit list, left out a commit's file lists, rewrote
    /// history, or (pull requests) lists no files at all. A caller that
    /// needs the list then runs `git diff` and calls
    /// [`GitEvent::set_changed_files`].
    pub complete: bool,
}

impl ChangedFiles {
    /// A complete list.
    pub fn complete<I, S>(paths: I) -> ChangedFiles
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        paths.sort();
        paths.dedup();
        ChangedFiles {
            paths,
            complete: true,
        }
    }

    /// Nothing known.
    pub fn unknown() -> ChangedFiles {
        ChangedFiles {
            paths: Vec::new(),
            complete: false,
        }
    }
}

/// A pull request (GitLab: merge request) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The destination repository.
    pub repository: Repository,
    /// The number (GitLab: the project-scoped `iid`).
    pub number: u64,
    /// What happened, in CodePipeline's terms.
    pub event: PullRequestEvent,
    /// What happened, in the provider's words (`synchronize`, `reopen`, ...).
    pub action: String,
    /// The title.
    pub title: String,
    /// The branch the changes come from.
    pub source_branch: String,
    /// The branch they are proposed for.
    pub destination_branch: String,
    /// The newest commit of the source branch: what a pipeline builds.
    pub head_commit: String,
    /// The destination branch's commit the request was compared against, when given.
    pub base_commit: Option<String>,
    /// Closed by merging.
    pub merged: bool,
    /// The clone URL of the source repository when it differs (a fork).
    pub source_clone_url: Option<String>,
    /// Pull-request payloads list no files: always empty and incomplete
    /// until the caller sets them.
    pub changed_files: ChangedFiles,
}

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    /// The body is not JSON.
    #[error("the payload is not valid JSON: {message} (line {line}, column {column})")]
    Json {
        /// serde_json's description.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A form-encoded body (`payload=...`) that cannot be decoded.
    #[error("the form-encoded payload is malformed: {0}")]
    Form(&'static str),
    /// A required field is absent or `null`.
    #[error("`{path}` is missing; expected {expected}")]
    Missing {
        /// The field's path (`pull_request.head.sha`).
        path: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A field holds the wrong type of value.
    #[error("`{path}` is {found}; expected {expected}")]
    Type {
        /// The field's path.
        path: String,
        /// What it should hold.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// No header says which git host sent the request.
    #[error(
        "no event header: expected one of `X-GitHub-Event`, `X-Gitlab-Event`, `X-Gitea-Event`, `X-Forgejo-Event`"
    )]
    UnknownProvider,
    /// The provider's event header is absent or not text.
    #[error("header `{0}` is missing or not text")]
    NoEventKind(&'static str),
}

/// Reads a request: the provider and event from the headers, then the body.
pub fn parse_request(headers: &Headers, body: &[u8]) -> Result<GitEvent, EventError> {
    let provider = Provider::detect(headers).ok_or(EventError::UnknownProvider)?;
    let kind = provider
        .event_kind(headers)
        .ok_or(EventError::NoEventKind(provider.event_header()))?;
    parse(provider, kind, body)
}

/// Reads the body of a `provider` webhook whose event header said `kind`
/// (`push`, `pull_request`, `Push Hook`, `Merge Request Hook`, ...).
///
/// The body is JSON, or a form-encoded `payload=<JSON>` (GitHub's and
/// Gitea's `application/x-www-form-urlencoded` content type).
pub fn parse(provider: Provider, kind: &str, body: &[u8]) -> Result<GitEvent, EventError> {
    let value = json(body)?;
    match provider {
        Provider::GitHub => github::parse(kind, &value),
        Provider::GitLab => gitlab::parse(kind, &value),
        Provider::Gitea | Provider::Forgejo => gitea::parse(kind, &value),
    }
}

/// The body as JSON: plain, or the `payload` field of a form-encoded body.
pub(crate) fn json(body: &[u8]) -> Result<Value, EventError> {
    let decoded;
    let text = match body.strip_prefix(b"payload=") {
        Some(form) => {
            decoded = form_value(form)?;
            decoded.as_slice()
        }
        None => body,
    };
    serde_json::from_slice(text).map_err(|e| EventError::Json {
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    })
}

/// Decodes the value of a form's single `payload` field (`+` is a space,
/// `%XX` a byte).
fn form_value(form: &[u8]) -> Result<Vec<u8>, EventError> {
    let mut out = Vec::with_capacity(form.len());
    let mut i = 0;
    while i < form.len() {
        match form[i] {
            b'&' => return Err(EventError::Form("expected only the `payload` field")),
            b'+' => out.push(b' '),
            b'%' => {
                let hex = form.get(i + 1..i + 3).ok_or(EventError::Form(
                    "`%` must be followed by two hexadecimal digits",
                ))?;
                let mut byte = [0u8; 1];
                hex::decode_to_slice(hex, &mut byte).map_err(|_| {
                    EventError::Form("`%` must be followed by two hexadecimal digits")
                })?;
                out.push(byte[0]);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// A commit id of only zeros: git's "no commit" (the ref did not exist
/// before, or does not exist after).
pub(crate) fn is_zero_commit(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// Commits with their added/modified/removed lists, from a push payload
/// whose commits all share GitHub's shape (GitHub, GitLab, Gitea).
///
/// Returns the commits, the union of their files, and whether every commit
/// carried all three lists.
pub(crate) fn commits(push: &Node<'_>) -> Result<(Vec<Commit>, Vec<String>, bool), EventError> {
    let mut commits = Vec::new();
    let mut files = Vec::new();
    let mut lists_complete = true;
    for node in push.opt_array("commits")?.unwrap_or_default() {
        let author = node.field("author", "an object with `name`")?;
        commits.push(Commit {
            id: node.string("id")?,
            message: node.string("message")?,
            timestamp: node.opt_string("timestamp")?,
            author: Person {
                name: author.string("name")?,
                email: author.opt_string("email")?,
            },
        });
        for list in ["added", "modified", "removed"] {
            match node.opt_array(list)? {
                Some(paths) => {
                    for path in paths {
                        files.push(path.str()?.to_string());
                    }
                }
                None => lists_complete = false,
            }
        }
    }
    Ok((commits, files, lists_complete))
}

/// The name of a pull-request action that CodePipeline does not trigger on.
pub(crate) fn other(kind: &str, action: &str) -> GitEvent {
    GitEvent::Other(format!("{kind} ({action})"))
}

#[cfg(test)]
mod tests;
