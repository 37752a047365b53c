//! [`GitCache`]: one bare mirror per repository URL, fetched with `git`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::command::{Git, Invocation};
use crate::commit::{COMMIT_FORMAT, Commit, DATE_FORMAT, parse_commit};
use crate::input::{check_branch, check_commit_id, check_url, is_zero_id, redact_url};
use crate::objects;
use crate::{Error, Result};

/// What [`GitCache::checkout_with`] writes besides the commit's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// Also write a standalone `.git` with the commit's history.
    pub git_dir: bool,
    /// With `git_dir`, the branch `HEAD` is on; `None` leaves `HEAD` detached.
    pub branch: Option<String>,
}

/// Default time one git command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A branch of a repository: (URL, branch).
type BranchKey = (String, String);

/// Fetches into one mirror between two `git maintenance run --auto`s. git
/// would run it after every fetch (a process each time); it only acts when
/// loose objects or packs pile up, so every sixteenth fetch is as good.
const FETCHES_PER_MAINTENANCE: u64 = 16;

/// The ref a commit fetched by id is stored under (the last one only).
/// git negotiates a fetch from the mirror's refs: without it, a mirror
/// filled by webhooks' commit ids alone kept its branch heads where they
/// were, and every fetch was sent all history since then again (144
/// objects after 48 pushes instead of 3, growing with every push).
pub(crate) const LAST_FETCHED_REF: &str = "refs/gantry/last-fetched";

/// Commits read once are kept (they never change); past this many the
/// memo starts over.
const MAX_REMEMBERED_COMMITS: usize = 4096;

/// A directory of bare mirrors, one per repository URL, and the git
/// commands that fill and read them.
///
/// Mirrors are named by a hash of the URL (`mirrors/<32 hex>.git`), so a URL
/// with a token in it never appears as a path. Fetches of one URL are
/// serialised by an async lock; different URLs fetch in parallel. Reading
/// (commits, checkouts, diffs) needs no lock: git updates refs atomically
/// after the objects they point to are written.
///
/// Cheap to clone: clones share the locks and the command counter.
#[derive(Debug, Clone)]
pub struct GitCache {
    dir: PathBuf,
    git: Git,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Commits known to be in a mirror (a fetch never removes one), so a
    /// second look costs no `git` process.
    known: Arc<Mutex<HashSet<(PathBuf, String)>>>,
    /// The last fetch of each (URL, branch): when it started, and the head
    /// it found. A fetch asked for before that start is answered with it.
    fetched: Arc<Mutex<HashMap<BranchKey, (Instant, Commit)>>>,
    /// Commits already read, by id (a commit object never changes).
    commits: Arc<Mutex<HashMap<String, Commit>>>,
    /// Fetches per mirror, for [`FETCHES_PER_MAINTENANCE`].
    fetch_counts: Arc<Mutex<HashMap<PathBuf, u64>>>,
    /// Whether a commit of a repository on this machine is read where it
    /// is instead of being fetched (see [`local_repository`]).
    read_in_place: bool,
}

/// Where a commit's objects are for the git commands that read it: the
/// mirror, plus the object directory of a repository on this machine when
/// the commit was found there rather than in the mirror.
#[derive(Debug, Clone)]
struct Objects {
    mirror: PathBuf,
    /// The local repository's git directory (its `objects` is borrowed).
    borrowed: Option<PathBuf>,
}

impl Objects {
    fn in_mirror(mirror: PathBuf) -> Self {
        Objects {
            mirror,
            borrowed: None,
        }
    }

    /// `git --git-dir=<mirror> <rest>`, seeing the borrowed objects too.
    fn command<'a>(&self, rest: impl IntoIterator<Item = &'a str>) -> Invocation {
        self.lend(Invocation::new(git_dir_args(&self.mirror, rest)))
    }

    /// `invocation` with the borrowed objects added as alternates for this
    /// one process (`GIT_ALTERNATE_OBJECT_DIRECTORIES`): the mirror itself
    /// is left as it is.
    fn lend(&self, invocation: Invocation) -> Invocation {
        match &self.borrowed {
            Some(git_dir) => {
                invocation.env("GIT_ALTERNATE_OBJECT_DIRECTORIES", git_dir.join("objects"))
            }
            None => invocation,
        }
    }

    /// Where both of two commits of one repository can be read.
    fn with(self, other: Objects) -> Objects {
        Objects {
            borrowed: self.borrowed.or(other.borrowed),
            ..self
        }
    }
}

impl GitCache {
    /// A cache under `dir` (created when first used), running `git` from
    /// `PATH` with [`DEFAULT_TIMEOUT`] per command.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        GitCache {
            dir: dir.into(),
            git: Git {
                program: PathBuf::from("git"),
                timeout: DEFAULT_TIMEOUT,
                started: Arc::new(AtomicU64::new(0)),
            },
            locks: Arc::default(),
            known: Arc::default(),
            fetched: Arc::default(),
            commits: Arc::default(),
            fetch_counts: Arc::default(),
            read_in_place: true,
        }
    }

    /// The same cache fetching commits of repositories on this machine as
    /// it would a remote's (by default it reads them in place; see
    /// docs/git-source.md). For tests of the fetch itself.
    pub fn fetching_local_repositories(mut self) -> Self {
        self.read_in_place = false;
        self
    }

    /// The same cache with another per-command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.git.timeout = timeout;
        self
    }

    /// The same cache running another git program.
    pub fn with_git_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.git.program = program.into();
        self
    }

    /// How many git processes this cache (and its clones) has started.
    pub fn commands_run(&self) -> u64 {
        self.git.started.load(Ordering::Relaxed)
    }

    /// Where the mirror of `url` lives (whether or not it exists yet).
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let digest = Sha256::digest(url.as_bytes());
        self.dir
            .join("mirrors")
            .join(format!("{}.git", hex::encode(&digest[..16])))
    }

    fn lock_for(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(url.to_owned()).or_default().clone()
    }

    /// Creates the bare mirror if missing: made under a temporary name and
    /// renamed, so a crash never leaves a half-made mirror. Call under the lock.
    async fn ensure_mirror(&self, url: &str) -> Result<PathBuf> {
        let mirror = self.mirror_path(url);
        if tokio::fs::try_exists(mirror.join("HEAD"))
            .await
            .map_err(|e| Error::io(&mirror, e))?
        {
            return Ok(mirror);
        }
        // A new mirror (or one removed by hand) holds none of the commits
        // known before.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(m, _)| m != &mirror);
        let parent = self.dir.join("mirrors");
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| Error::io(&parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".init-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        self.git
            .run(Invocation::new([
                "init".as_ref(),
                "--bare".as_ref(),
                "--quiet".as_ref(),
                "--".as_ref(),
                staging.path().as_os_str(),
            ]))
            .await?;
        let staging = staging.keep();
        if let Err(e) = tokio::fs::rename(&staging, &mirror).await {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(Error::io(&mirror, e));
        }
        Ok(mirror)
    }

    /// Fetches `branch` of `url` into the mirror and reads its head commit.
    ///
    /// Concurrent fetches of one branch are coalesced: a call that waited
    /// for the mirror while another fetch of the branch ran is answered by
    /// the first fetch that *started* after the call was made, so it sees
    /// the remote at least as new as when it asked, and a burst of starts
    /// costs two fetches, not one each.
    pub async fn fetch(&self, url: &str, branch: &str) -> Result<Commit> {
        check_url(url)?;
        check_branch(branch)?;
        let asked = Instant::now();
        let key = (url.to_owned(), branch.to_owned());
        let lock = self.lock_for(url);
        let _guard = lock.lock().await;
        if let Some((started, commit)) = self
            .fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            && *started >= asked
        {
            return Ok(commit.clone());
        }
        let started = Instant::now();
        let commit = self.fetch_locked(url, branch).await?;
        self.fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, (started, commit.clone()));
        Ok(commit)
    }

    /// [`fetch`](Self::fetch)'s work, under the URL's lock.
    async fn fetch_locked(&self, url: &str, branch: &str) -> Result<Commit> {
        let mirror = {
            let mirror = self.ensure_mirror(url).await?;
            // A repository on this machine: its branch and the commit are
            // read where they are (see `ensure_commit`), no fetch.
            if self.read_in_place
                && let Some(git_dir) = local_repository(url)
                && let Some(id) = objects::read_branch(&git_dir, branch)
                && objects::has_object(&git_dir, &id) == Some(true)
            {
                let objects = Objects {
                    mirror,
                    borrowed: Some(git_dir),
                };
                return Ok(self.read_commit(&objects, &id).await?.with_branch(branch));
            }
            let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
            let finished = self
                .git
                .run_status(fetch_invocation(&mirror, url).arg(refspec))
                .await?;
            if !finished.success {
                if finished.stderr.contains("couldn't find remote ref") {
                    return Err(Error::BranchNotFound {
                        url: redact_url(url),
                        branch: branch.to_owned(),
                    });
                }
                return Err(finished.into_error());
            }
            self.maintain_now_and_then(&mirror);
            mirror
        };
        let id = match objects::read_branch(&mirror, branch) {
            Some(id) => id,
            None => {
                self.resolve(&mirror, &format!("refs/heads/{branch}"))
                    .await?
            }
        };
        let mirror = Objects::in_mirror(mirror);
        let commit = self.read_commit(&mirror, &id).await?.with_branch(branch);
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((mirror.mirror, id));
        Ok(commit)
    }

    /// Makes sure `commit_id` of `url` is in the mirror (fetching it if
    /// needed) and reads it. The commit's `branch` is unknown (`None`).
    ///
    /// The commit is asked for by id first (servers allow this for commits
    /// reachable from a ref); when that fails every branch is fetched.
    pub async fn fetch_commit(&self, url: &str, commit_id: &str) -> Result<Commit> {
        check_url(url)?;
        let id = check_commit_id(commit_id)?;
        let objects = self.ensure_commit(url, &id).await?;
        self.read_commit(&objects, &id).await
    }

    /// Makes sure the commit can be read: it is in the mirror, or in the
    /// local repository `url` names (read in place), or it is fetched.
    async fn ensure_commit(&self, url: &str, id: &str) -> Result<Objects> {
        let lock = self.lock_for(url);
        let _guard = lock.lock().await;
        let mirror = self.ensure_mirror(url).await?;
        if self.has_commit(&mirror, id).await? {
            return Ok(Objects::in_mirror(mirror));
        }
        // A repository on this machine is read where it is, as `git clone`
        // of a local path borrows its objects instead of fetching them: a
        // fetch is six processes (`fetch`, `sh`, `upload-pack`,
        // `pack-objects`, `unpack-objects`, `rev-list`), most of the time
        // between a webhook and its build's first command.
        if self.read_in_place
            && let Some(git_dir) = local_repository(url)
            && objects::has_object(&git_dir, id) == Some(true)
        {
            return Ok(Objects {
                mirror,
                borrowed: Some(git_dir),
            });
        }
        let by_id = self
            .git
            .run_status(fetch_invocation(&mirror, url).arg(format!("+{id}:{LAST_FETCHED_REF}")))
            .await?;
        if by_id.success {
            self.maintain_now_and_then(&mirror);
            // `git fetch <id>` succeeds only with the commit in hand.
            self.known
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert((mirror.clone(), id.to_owned()));
            return Ok(Objects::in_mirror(mirror));
        }
        // The server may refuse fetches by id: every branch, then look.
        self.git
            .run(fetch_invocation(&mirror, url).arg("+refs/heads/*:refs/heads/*"))
            .await?;
        if self.has_commit(&mirror, id).await? {
            Ok(Objects::in_mirror(mirror))
        } else {
            Err(Error::CommitNotFound {
                url: redact_url(url),
                commit: id.to_owned(),
            })
        }
    }

    async fn has_commit(&self, mirror: &Path, id: &str) -> Result<bool> {
        let key = (mirror.to_owned(), id.to_owned());
        if self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&key)
        {
            return Ok(true);
        }
        match objects::has_object(mirror, id) {
            Some(true) => {
                self.known
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(key);
                return Ok(true);
            }
            // Not loose, not in any pack: git would say the same.
            Some(false) => return Ok(false),
            None => {}
        }
        let finished = self
            .git
            .run_status(Invocation::new(git_dir_args(
                mirror,
                ["cat-file", "-e", &format!("{id}^{{commit}}")],
            )))
            .await?;
        if finished.success {
            self.known
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(key);
        }
        Ok(finished.success)
    }

    async fn resolve(&self, mirror: &Path, rev: &str) -> Result<String> {
        let out = self
            .git
            .run(Invocation::new(git_dir_args(
                mirror,
                [
                    "rev-parse",
                    "--verify",
                    "--end-of-options",
                    &format!("{rev}^{{commit}}"),
                ],
            )))
            .await?;
        let id = String::from_utf8_lossy(&out).trim().to_owned();
        check_commit_id(&id).map_err(|_| Error::UnexpectedOutput {
            command: "rev-parse".into(),
            detail: format!("not a commit id: {id:?}"),
        })
    }

    async fn read_commit(&self, objects: &Objects, id: &str) -> Result<Commit> {
        if let Some(commit) = self
            .commits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
        {
            return Ok(commit.clone());
        }
        let git_dir = objects.borrowed.as_ref().unwrap_or(&objects.mirror);
        let commit = match objects::read_loose_commit(git_dir, id) {
            Some(commit) => commit,
            None => self.show_commit(objects, id).await?,
        };
        let mut commits = self
            .commits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if commits.len() >= MAX_REMEMBERED_COMMITS {
            commits.clear();
        }
        commits.insert(id.to_owned(), commit.clone());
        Ok(commit)
    }

    /// Starts `git maintenance run --auto` in the background after every
    /// [`FETCHES_PER_MAINTENANCE`]th fetch into `mirror` (fetches run with
    /// git's own automatic maintenance off). git lets it run beside
    /// fetches and reads; a failure only means it runs again later.
    fn maintain_now_and_then(&self, mirror: &Path) {
        let due = {
            let mut counts = self
                .fetch_counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = counts.entry(mirror.to_owned()).or_insert(0);
            *n += 1;
            n.is_multiple_of(FETCHES_PER_MAINTENANCE)
        };
        if !due {
            return;
        }
        let git = self.git.clone();
        let invocation = Invocation::new(git_dir_args(
            mirror,
            ["maintenance", "run", "--auto", "--quiet"],
        ));
        tokio::spawn(async move {
            let _ = git.run_status(invocation).await;
        });
    }

    /// Reads a commit with `git show -s`.
    async fn show_commit(&self, objects: &Objects, id: &str) -> Result<Commit> {
        let out = self
            .git
            .run(
                objects
                    .command([
                        "show",
                        "-s",
                        "--no-show-signature",
                        DATE_FORMAT,
                        COMMIT_FORMAT,
                        id,
                    ])
                    .env("TZ", "UTC"),
            )
            .await?;
        parse_commit(&out).ok_or_else(|| Error::UnexpectedOutput {
            command: "show".into(),
            detail: "commit fields missing".into(),
        })
    }

    /// Writes the tree of `commit_id` into `dest` (which must not exist or
    /// be an empty directory), fetching the commit first if needed.
    ///
    /// Only the tree is written: no `.git` directory, nothing of the mirror.
    /// A throw-away index file keeps concurrent checkouts from one mirror
    /// apart. Symlinks stay symlinks; submodules are left empty; the
    /// repository's `.gitattributes` apply as in a normal checkout, the
    /// host's `core.autocrlf` does not.
    pub async fn checkout(&self, url: &str, commit_id: &str, dest: impl AsRef<Path>) -> Result<()> {
        self.checkout_with(url, commit_id, dest, &CheckoutOptions::default())
            .await
    }

    /// [`checkout`](Self::checkout), and with [`CheckoutOptions::git_dir`]
    /// also a standalone `.git` holding the commit's history, `HEAD` at the
    /// commit (on `branch` when given, else detached), a clean index, and
    /// no remote (the URL may carry credentials). Builds can then run
    /// `git log` or `git describe` as in a full clone.
    ///
    /// The objects are borrowed from the mirror through `alternates`,
    /// copied with `git repack -a -d`, and the `alternates` file removed
    /// (what `git clone --dissociate` does), so the `.git` does not depend
    /// on the mirror and never exposes it.
    pub async fn checkout_with(
        &self,
        url: &str,
        commit_id: &str,
        dest: impl AsRef<Path>,
        options: &CheckoutOptions,
    ) -> Result<()> {
        check_url(url)?;
        let id = check_commit_id(commit_id)?;
        if let Some(branch) = &options.branch {
            check_branch(branch)?;
        }
        let dest = dest.as_ref();
        let objects = self.ensure_commit(url, &id).await?;
        prepare_destination(dest).await?;
        let scratch = tempfile::Builder::new()
            .prefix("gantry-checkout-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let index = scratch.path().join("index");
        // One process: read the tree into the throw-away index and write
        // its files (`-u`), with the same attribute handling as a checkout.
        let mut args = git_dir_args(
            &objects.mirror,
            ["-c", "core.autocrlf=false", "-c", "core.symlinks=true"],
        );
        args.push("--work-tree".into());
        args.push(dest.as_os_str().to_owned());
        args.extend([
            "read-tree".into(),
            "--reset".into(),
            "-u".into(),
            id.as_str().into(),
        ]);
        self.git
            .run(objects.lend(Invocation::new(args).env("GIT_INDEX_FILE", &index)))
            .await?;
        if options.git_dir {
            self.write_git_dir(&objects, &id, dest, options.branch.as_deref())
                .await?;
        }
        Ok(())
    }

    async fn write_git_dir(
        &self,
        objects: &Objects,
        id: &str,
        dest: &Path,
        branch: Option<&str>,
    ) -> Result<()> {
        let git_dir = dest.join(".git");
        self.git
            .run(Invocation::new([
                "init".as_ref(),
                "--quiet".as_ref(),
                "--".as_ref(),
                dest.as_os_str(),
            ]))
            .await?;
        let alternates = git_dir.join("objects/info/alternates");
        let mut lines = Vec::new();
        for source in std::iter::once(&objects.mirror).chain(&objects.borrowed) {
            let source_objects =
                std::path::absolute(source.join("objects")).map_err(|e| Error::io(source, e))?;
            lines.extend(source_objects.into_os_string().into_encoded_bytes());
            lines.push(b'\n');
        }
        tokio::fs::write(&alternates, lines)
            .await
            .map_err(|e| Error::io(&alternates, e))?;
        match branch {
            Some(branch) => {
                let full = format!("refs/heads/{branch}");
                self.git
                    .run(Invocation::new(git_dir_args(
                        &git_dir,
                        ["update-ref", &full, id],
                    )))
                    .await?;
                self.git
                    .run(Invocation::new(git_dir_args(
                        &git_dir,
                        ["symbolic-ref", "HEAD", &full],
                    )))
                    .await?;
            }
            None => {
                self.git
                    .run(Invocation::new(git_dir_args(
                        &git_dir,
                        ["update-ref", "--no-deref", "HEAD", id],
                    )))
                    .await?;
            }
        }
        // Copy every object HEAD reaches out of the mirror, then cut the link.
        self.git
            .run(Invocation::new(git_dir_args(
                &git_dir,
                ["repack", "-a", "-d", "-q"],
            )))
            .await?;
        tokio::fs::remove_file(&alternates)
            .await
            .map_err(|e| Error::io(&alternates, e))?;
        // An index that matches the files, so `git status` is clean.
        let mut args = git_dir_args(&git_dir, ["-c", "core.autocrlf=false"]);
        args.push("--work-tree".into());
        args.push(dest.as_os_str().to_owned());
        args.extend(["reset".into(), "--quiet".into()]);
        self.git.run(Invocation::new(args)).await?;
        Ok(())
    }

    /// The paths that differ between `from` and `to`, for path filters
    /// when a webhook's list of changed files is missing or cut short.
    ///
    /// Renames count as a deletion and an addition, so both paths are
    /// listed. When `from` is all zeros (a new branch), every file of
    /// `to`'s tree is listed: nothing of the branch was built before.
    pub async fn changed_files(&self, url: &str, from: &str, to: &str) -> Result<Vec<String>> {
        check_url(url)?;
        let to = check_commit_id(to)?;
        let objects = self.ensure_commit(url, &to).await?;
        let out = if is_zero_id(from) {
            self.git
                .run(objects.command(["ls-tree", "-r", "-z", "--name-only", "--full-tree", &to]))
                .await?
        } else {
            let from = check_commit_id(from)?;
            let objects = objects.with(self.ensure_commit(url, &from).await?);
            self.git
                .run(objects.command([
                    "diff",
                    "--name-only",
                    "-z",
                    "--no-renames",
                    "--no-ext-diff",
                    "--no-textconv",
                    &from,
                    &to,
                    "--",
                ]))
                .await?
        };
        Ok(out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    /// The remote's refs and the commits they point to (`git ls-remote`),
    /// e.g. `refs/heads/main` → sha. Needs no mirror.
    pub async fn ls_remote(&self, url: &str) -> Result<BTreeMap<String, String>> {
        check_url(url)?;
        let out = self
            .git
            .run(Invocation::new(["ls-remote", "--"]).arg_url(url))
            .await?;
        let text = String::from_utf8_lossy(&out);
        let mut refs = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (sha, name) = line
                .split_once('\t')
                .ok_or_else(|| Error::UnexpectedOutput {
                    command: "ls-remote".into(),
                    detail: format!("line without a tab: {line:?}"),
                })?;
            refs.insert(name.to_owned(), sha.to_owned());
        }
        Ok(refs)
    }
}

/// `git --git-dir=<mirror> fetch ... -- <url>`: the refspec or commit id
/// to fetch is added by the caller.
fn fetch_invocation(mirror: &Path, url: &str) -> Invocation {
    Invocation::new(git_dir_args(
        mirror,
        [
            // git's automatic maintenance after each fetch is one more
            // process per fetch; `maintain_now_and_then` runs it instead.
            // The forced-update check is a history walk nobody reads.
            "-c",
            "maintenance.auto=false",
            "-c",
            "gc.auto=0",
            "-c",
            "fetch.showForcedUpdates=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
        ],
    ))
    .arg_url(url)
}

/// The git directory of the repository `url` names when it is on this
/// machine (`file:///path` or `/path`, bare or with a `.git` directory),
/// for reading its commits in place.
///
/// `None` for anything else, and for a path git would read differently or
/// that `GIT_ALTERNATE_OBJECT_DIRECTORIES` cannot carry as it is: `%`
/// escapes (git decodes them in `file://` URLs), `:` (the variable's
/// separator), a leading `"` (its quoting), `.git` files (worktrees,
/// submodules). Those are fetched, as before.
fn local_repository(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    if !path.starts_with('/') || path.contains(['%', ':', '"', '\n']) {
        return None;
    }
    let path = Path::new(path);
    [path.to_owned(), path.join(".git")]
        .into_iter()
        .find(|git_dir| git_dir.join("objects").is_dir() && git_dir.join("HEAD").is_file())
}

/// `--git-dir=<mirror>` followed by `rest`.
fn git_dir_args<'a>(
    mirror: &Path,
    rest: impl IntoIterator<Item = &'a str>,
) -> Vec<std::ffi::OsString> {
    let mut git_dir = std::ffi::OsString::from("--git-dir=");
    git_dir.push(mirror.as_os_str());
    let mut args = vec![git_dir];
    args.extend(rest.into_iter().map(std::ffi::OsString::from));
    args
}

/// Makes sure `dest` is an empty directory, creating it if missing.
async fn prepare_destination(dest: &Path) -> Result<()> {
    match tokio::fs::symlink_metadata(dest).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tokio::fs::create_dir_all(dest)
            .await
            .map_err(|e| Error::io(dest, e)),
        Err(e) => Err(Error::io(dest, e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = tokio::fs::read_dir(dest)
                .await
                .map_err(|e| Error::io(dest, e))?;
            if entries
                .next_entry()
                .await
                .map_err(|e| Error::io(dest, e))?
                .is_some()
            {
                Err(Error::DestinationNotEmpty {
                    path: dest.to_owned(),
                })
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(Error::DestinationNotEmpty {
            path: dest.to_owned(),
        }),
    }
}
