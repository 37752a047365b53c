//! GitLab's `Push Hook`, `Tag Push Hook` and `Merge Request Hook` payloads
//! (and the same events delivered as a `System Hook`).

use serde_json::Value;

use super::node::Node;
use super::{
    ChangedFiles, EventError, GitEvent, GitRef, PullRequest, PullRequestEvent, Push, Repository,
    commits, is_zero_commit, other,
};

pub(super) fn parse(kind: &str, value: &Value) -> Result<GitEvent, EventError> {
    match kind {
        "Push Hook" | "Tag Push Hook" => push(&Node::root(value)?).map(GitEvent::Push),
        "Merge Request Hook" => merge_request(&Node::root(value)?),
        // A system hook says what it carries in `object_kind`.
        "System Hook" => {
            let root = Node::root(value)?;
            match root.opt_string("object_kind")?.as_deref() {
                Some("push" | "tag_push") => push(&root).map(GitEvent::Push),
                Some("merge_request") => merge_request(&root),
                Some(object_kind) => Ok(other(kind, object_kind)),
                None => Ok(GitEvent::Other(kind.to_string())),
            }
        }
        _ => Ok(GitEvent::Other(kind.to_string())),
    }
}

fn project(root: &Node<'_>) -> Result<Repository, EventError> {
    let project = root.field("project", "an object")?;
    Ok(Repository {
        full_name: project.string("path_with_namespace")?,
        clone_url: project.string("git_http_url")?,
        ssh_url: project.opt_string("git_ssh_url")?,
        html_url: project.opt_string("web_url")?,
        default_branch: project.opt_string("default_branch")?,
    })
}

fn push(root: &Node<'_>) -> Result<Push, EventError> {
    let git_ref = GitRef::parse(root.field("ref", "a string")?.str()?);
    let before = root.string("before")?;
    let after = root.string("after")?;
    let created = is_zero_commit(&before);
    let deleted = is_zero_commit(&after);
    let (commits, files, lists_complete) = commits(root)?;
    // GitLab lists at most 20 commits and gives the real count.
    let truncated = match root.opt_u64("total_commits_count")? {
        Some(total) => total > commits.len() as u64,
        None => false,
    };
    let mut changed_files = ChangedFiles::complete(files);
    if deleted {
        changed_files.paths.clear();
    } else {
        changed_files.complete = lists_complete && !truncated;
    }
    Ok(Push {
        repository: project(root)?,
        git_ref,
        before,
        after,
        created,
        deleted,
        forced: false,
        commits,
        changed_files,
    })
}

fn merge_request(root: &Node<'_>) -> Result<GitEvent, EventError> {
    let attrs = root.field("object_attributes", "an object")?;
    let Some(action) = attrs.opt_string("action")? else {
        return Ok(GitEvent::Other("Merge Request Hook".to_string()));
    };
    let event = match action.as_str() {
        "open" | "reopen" => PullRequestEvent::Open,
        // `update` also fires for a new title or label; only a new
        // revision (GitLab then sends `oldrev`) is CodePipeline's UPDATED.
        "update" if attrs.opt("oldrev")?.is_some() => PullRequestEvent::Updated,
        "close" | "merge" => PullRequestEvent::Closed,
        _ => return Ok(other("Merge Request Hook", &action)),
    };
    let repository = project(root)?;
    let source_clone_url = match attrs.opt("source")? {
        Some(source) => source
            .opt_string("git_http_url")?
            .filter(|url| *url != repository.clone_url),
        None => None,
    };
    let merged = action == "merge" || attrs.opt_string("state")?.as_deref() == Some("merged");
    Ok(GitEvent::PullRequest(PullRequest {
        number: attrs.u64("iid")?,
        event,
        title: attrs.string("title")?,
        source_branch: attrs.string("source_branch")?,
        destination_branch: attrs.string("target_branch")?,
        head_commit: attrs
            .field("last_commit", "an object with `id`")?
            .string("id")?,
        base_commit: None,
        merged,
        source_clone_url,
        repository,
        action,
        changed_files: ChangedFiles::unknown(),
    }))
}
