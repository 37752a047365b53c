//! GitHub's `push` and `pull_request` payloads.

use serde_json::Value;

use super::node::Node;
use super::{
    ChangedFiles, EventError, GitEvent, GitRef, PullRequest, PullRequestEvent, Push, Repository,
    commits, is_zero_commit, other,
};

/// GitHub lists at most this many commits in a push payload.
pub(crate) const MAX_COMMITS: usize = 2048;

pub(super) fn parse(kind: &str, value: &Value) -> Result<GitEvent, EventError> {
    match kind {
        "push" => push(&Node::root(value)?).map(GitEvent::Push),
        "pull_request" => pull_request(&Node::root(value)?),
        _ => Ok(GitEvent::Other(kind.to_string())),
    }
}

/// GitHub's repository object (Gitea and Forgejo use the same members).
pub(super) fn repository(root: &Node<'_>) -> Result<Repository, EventError> {
    let repo = root.field("repository", "an object")?;
    Ok(Repository {
        full_name: repo.string("full_name")?,
        clone_url: repo.string("clone_url")?,
        ssh_url: repo.opt_string("ssh_url")?,
        html_url: repo.opt_string("html_url")?,
        default_branch: repo.opt_string("default_branch")?,
    })
}

/// A push in GitHub's shape; `max_commits` is where the sender truncates
/// the list when it does not give a total.
pub(super) fn push_with(
    root: &Node<'_>,
    total_field: Option<&str>,
    max_commits: Option<usize>,
) -> Result<Push, EventError> {
    let git_ref = GitRef::parse(root.field("ref", "a string")?.str()?);
    let before = root.string("before")?;
    let after = root.string("after")?;
    let created = root.opt_bool("created")?.unwrap_or(is_zero_commit(&before));
    let deleted = root.opt_bool("deleted")?.unwrap_or(is_zero_commit(&after));
    let forced = root.opt_bool("forced")?.unwrap_or(false);
    let (commits, files, lists_complete) = commits(root)?;
    let total = match total_field {
        Some(field) => root.opt_u64(field)?,
        None => None,
    };
    let truncated = match (total, max_commits) {
        (Some(total), _) => total > commits.len() as u64,
        (None, Some(max)) => commits.len() >= max,
        (None, None) => false,
    };
    let mut changed_files = ChangedFiles::complete(files);
    // A deleted ref changes no file anyone can build.
    if !deleted {
        changed_files.complete = lists_complete && !truncated && !forced;
    } else {
        changed_files.paths.clear();
    }
    Ok(Push {
        repository: repository(root)?,
        git_ref,
        before,
        after,
        created,
        deleted,
        forced,
        commits,
        changed_files,
    })
}

fn push(root: &Node<'_>) -> Result<Push, EventError> {
    push_with(root, None, Some(MAX_COMMITS))
}

/// A pull request in GitHub's shape; `action` already mapped by the caller.
pub(super) fn pull_request_with(
    root: &Node<'_>,
    action: String,
    event: PullRequestEvent,
) -> Result<GitEvent, EventError> {
    let pr = root.field("pull_request", "an object")?;
    let number = match root.opt_u64("number")? {
        Some(n) => n,
        None => pr.u64("number")?,
    };
    let head = pr.field("head", "an object with `ref` and `sha`")?;
    let base = pr.field("base", "an object with `ref`")?;
    let repository = repository(root)?;
    let source_clone_url = match head.opt("repo")? {
        Some(repo) => repo
            .opt_string("clone_url")?
            .filter(|url| *url != repository.clone_url),
        None => None,
    };
    Ok(GitEvent::PullRequest(PullRequest {
        number,
        event,
        action,
        title: pr.string("title")?,
        source_branch: head.string("ref")?,
        destination_branch: base.string("ref")?,
        head_commit: head.string("sha")?,
        base_commit: base.opt_string("sha")?,
        merged: pr.opt_bool("merged")?.unwrap_or(false),
        source_clone_url,
        repository,
        changed_files: ChangedFiles::unknown(),
    }))
}

fn pull_request(root: &Node<'_>) -> Result<GitEvent, EventError> {
    let action = root.string("action")?;
    let event = match action.as_str() {
        "opened" | "reopened" => PullRequestEvent::Open,
        "synchronize" => PullRequestEvent::Updated,
        "closed" => PullRequestEvent::Closed,
        _ => return Ok(other("pull_request", &action)),
    };
    pull_request_with(root, action, event)
}
