//! Gitea's and Forgejo's `push` and `pull_request` payloads: GitHub's shape,
//! with `total_commits` and Gitea's own action names.

use serde_json::Value;

use super::github::{pull_request_with, push_with};
use super::node::Node;
use super::{EventError, GitEvent, PullRequestEvent, other};

pub(super) fn parse(kind: &str, value: &Value) -> Result<GitEvent, EventError> {
    match kind {
        // Gitea lists a limited number of commits and says how many there were.
        "push" => push_with(&Node::root(value)?, Some("total_commits"), None).map(GitEvent::Push),
        "pull_request" => pull_request(&Node::root(value)?),
        _ => Ok(GitEvent::Other(kind.to_string())),
    }
}

fn pull_request(root: &Node<'_>) -> Result<GitEvent, EventError> {
    let action = root.string("action")?;
    let event = match action.as_str() {
        "opened" | "reopened" => PullRequestEvent::Open,
        // Gitea writes `synchronized`; accept GitHub's spelling as well.
        "synchronized" | "synchronize" => PullRequestEvent::Updated,
        "closed" => PullRequestEvent::Closed,
        _ => return Ok(other("pull_request", &action)),
    };
    pull_request_with(root, action, event)
}
