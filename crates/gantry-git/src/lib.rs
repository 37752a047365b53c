/*!
The Git source action's fetching and polling for Gantry, done with the `git`
command.

A [`GitCache`] keeps one bare mirror per repository URL. [`GitCache::fetch`]
brings a branch up to date and reads its head [`Commit`];
[`GitCache::fetch_commit`] gets the exact commit a webhook names;
[`GitCache::checkout`] writes a commit's tree into a directory (no `.git`,
unless [`GitCache::checkout_with`] asks for a standalone one);
[`GitCache::changed_files`] lists what a push changed, for path filters;
[`GitCache::ls_remote`] lists a remote's refs. A [`Poller`] watches branches
for new commits with one `git ls-remote` per distinct URL per tick, its
bookkeeping ([`PollState`]) kept apart from the I/O. [`Commit::output_variables`]
gives the source action's output variables under CodePipeline's names.

git runs without a shell, with `GIT_TERMINAL_PROMPT=0`, only the `file`,
`git`, `http`, `https` and `ssh` protocols, `--` before user values, a
timeout per command that kills git's whole process group, and its stderr in
the error with any URL password scrubbed. Decisions and formats are in
`docs/git-source.md`.

# Example

```
use gantry_git::{GitCache, Poller, Watch};
use std::process::Command;

# #[tokio::main(flavor = "current_thread")]
# async fn main() -> Result<(), gantry_git::Error> {
let tmp = tempfile::tempdir().unwrap();
let repo = tmp.path().join("repo");
let git = |args: &[&str]| {
    let ok = Command::new("git").arg("-C").arg(&repo).args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada").env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada").env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", "2024-05-01T12:34:56Z")
        .status().unwrap().success();
    assert!(ok);
};
std::fs::create_dir(&repo).unwrap();
git(&["init", "-q", "-b", "main"]);
std::fs::write(repo.join("README"), "hello").unwrap();
git(&["add", "README"]);
git(&["commit", "-q", "-m", "First"]);

let url = repo.to_str().unwrap();
let cache = GitCache::new(tmp.path().join("cache"));
let commit = cache.fetch(url, "main").await?;
let vars = commit.output_variables();
assert_eq!(vars["BranchName"], "main");
assert_eq!(vars["AuthorDate"], "2024-05-01T12:34:56Z");
assert_eq!(vars["CommitMessage"], "First");

cache.checkout(url, &commit.id, tmp.path().join("src")).await?;
assert_eq!(std::fs::read_to_string(tmp.path().join("src/README")).unwrap(), "hello");

// Polling: the first tick records, later ticks report moved heads.
let mut poller = Poller::new(cache.clone());
let watches = [Watch::new(url, "main")];
assert!(poller.tick(&watches).await.changes.is_empty());
git(&["commit", "-q", "--allow-empty", "-m", "Second"]);
let report = poller.tick(&watches).await;
assert_eq!(report.changes.len(), 1);
assert_eq!(report.changes[0].previous.as_deref(), Some(commit.id.as_str()));
# Ok(())
# }
```
*/
#![deny(missing_docs)]

mod cache;
mod command;
mod commit;
mod error;
mod input;
mod objects;
mod poll;

pub use cache::{CheckoutOptions, DEFAULT_TIMEOUT, GitCache};
pub use commit::{Commit, MAX_COMMIT_MESSAGE_VARIABLE};
pub use error::{Error, Result};
pub use input::{is_zero_id, redact_url};
pub use poll::{HeadChange, PollReport, PollState, Poller, RefLister, Watch};
