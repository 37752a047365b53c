//! GitCache and Poller against real repositories made in temporary
//! directories with the `git` command.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gantry_git::{CheckoutOptions, Error, GitCache, Poller, Watch};

/// A bare "remote" repository and a work tree that pushes to it.
struct Upstream {
    tmp: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

fn run_git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Charles Babbage")
        .env("GIT_COMMITTER_EMAIL", "charles@example.com")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Upstream {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("remote.git");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        run_git(&bare, &["init", "-q", "--bare", "-b", "main"], &[]);
        run_git(&work, &["init", "-q", "-b", "main"], &[]);
        Upstream { tmp, bare, work }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn path_url(&self) -> String {
        self.bare.to_str().unwrap().to_owned()
    }

    fn cache(&self) -> GitCache {
        GitCache::new(self.tmp.path().join("cache"))
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes files (`None` deletes), commits on `branch` and pushes; gives the sha.
    fn commit(&self, branch: &str, files: &[(&str, Option<&str>)], message: &str) -> String {
        self.commit_dated(branch, files, message, "2024-05-01T14:34:56+02:00")
    }

    fn commit_dated(
        &self,
        branch: &str,
        files: &[(&str, Option<&str>)],
        message: &str,
        date: &str,
    ) -> String {
        self.commit_with_env(
            branch,
            files,
            message,
            &[
                ("GIT_AUTHOR_DATE", date),
                ("GIT_COMMITTER_DATE", "2024-05-02T00:00:00Z"),
            ],
        )
    }

    /// [`Upstream::commit`] with `git commit` run in the environment `env`.
    fn commit_with_env(
        &self,
        branch: &str,
        files: &[(&str, Option<&str>)],
        message: &str,
        env: &[(&str, &str)],
    ) -> String {
        let current = run_git(&self.work, &["symbolic-ref", "--short", "HEAD"], &[]);
        if current != branch {
            // Create or switch; a new branch starts from the current commit.
            let exists = Command::new("git")
                .arg("-C")
                .arg(&self.work)
                .args([
                    "rev-parse",
                    "--verify",
                    "-q",
                    &format!("refs/heads/{branch}"),
                ])
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap()
                .status
                .success();
            let flag = if exists { "" } else { "-b" };
            let mut args = vec!["checkout", "-q"];
            if !flag.is_empty() {
                args.push(flag);
            }
            args.push(branch);
            run_git(&self.work, &args, &[]);
        }
        for (path, content) in files {
            let full = self.work.join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                    std::fs::write(&full, text).unwrap();
                }
                None => std::fs::remove_file(&full).unwrap(),
            }
        }
        run_git(&self.work, &["add", "-A"], &[]);
        run_git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
            env,
        );
        run_git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                self.bare.to_str().unwrap(),
                &format!("HEAD:refs/heads/{branch}"),
            ],
            &[],
        );
        run_git(&self.work, &["rev-parse", "HEAD"], &[])
    }
}

#[tokio::test]
async fn fetch_reads_the_head_commit_with_codepipeline_dates() {
    let up = Upstream::new();
    let sha = up.commit(
        "main",
        &[("README.md", Some("hello"))],
        "Add readme\n\nWith a body.",
    );
    let commit = up.cache().fetch(&up.url(), "main").await.unwrap();
    assert_eq!(commit.id, sha);
    assert_eq!(commit.branch.as_deref(), Some("main"));
    assert_eq!(commit.author_name, "Ada Lovelace");
    assert_eq!(commit.author_email, "ada@example.com");
    // +02:00 local time, shown in UTC as CodePipeline does.
    assert_eq!(commit.author_date, "2024-05-01T12:34:56Z");
    assert_eq!(commit.committer_date, "2024-05-02T00:00:00Z");
    assert_eq!(commit.message, "Add readme\n\nWith a body.");
    let vars = commit.output_variables();
    assert_eq!(vars["CommitId"], sha);
    assert_eq!(vars["BranchName"], "main");
    assert_eq!(vars["AuthorDate"], "2024-05-01T12:34:56Z");
    assert_eq!(vars["CommitMessage"], "Add readme\n\nWith a body.");
}

#[tokio::test]
async fn fetch_picks_up_a_new_commit_over_file_urls_and_plain_paths() {
    let up = Upstream::new();
    let first = up.commit("main", &[("a.txt", Some("1"))], "one");
    let cache = up.cache();
    for url in [up.url(), up.path_url()] {
        assert_eq!(cache.fetch(&url, "main").await.unwrap().id, first);
    }
    let second = up.commit("main", &[("a.txt", Some("2"))], "two");
    for url in [up.url(), up.path_url()] {
        assert_eq!(cache.fetch(&url, "main").await.unwrap().id, second);
    }
    // A force-push backwards is followed too.
    run_git(&up.work, &["reset", "-q", "--hard", &first], &[]);
    run_git(
        &up.work,
        &[
            "push",
            "-q",
            "--force",
            up.bare.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
        &[],
    );
    assert_eq!(cache.fetch(&up.url(), "main").await.unwrap().id, first);
    // Two spellings of one repository are two mirrors; nothing else is made.
    assert_eq!(
        std::fs::read_dir(up.dir("cache/mirrors")).unwrap().count(),
        2
    );
}

#[tokio::test]
async fn checkout_writes_the_tree_of_the_commit_and_no_git_directory() {
    let up = Upstream::new();
    let old = up.commit(
        "main",
        &[("src/app.txt", Some("v1")), ("gone.txt", Some("x"))],
        "one",
    );
    std::fs::create_dir_all(up.work.join("bin")).unwrap();
    std::fs::write(up.work.join("bin/run"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        up.work.join("bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/app.txt", up.work.join("link")).unwrap();
    let new = up.commit(
        "main",
        &[("src/app.txt", Some("v2")), ("gone.txt", None)],
        "two",
    );
    let cache = up.cache();
    cache.fetch(&up.url(), "main").await.unwrap();

    let dest = up.dir("checkout-new");
    cache.checkout(&up.url(), &new, &dest).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("src/app.txt")).unwrap(),
        "v2"
    );
    assert!(!dest.join("gone.txt").exists());
    assert!(!dest.join(".git").exists());
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        Path::new("src/app.txt")
    );
    let mode = std::fs::metadata(dest.join("bin/run"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "executable bit lost: {mode:o}");

    let dest_old = up.dir("checkout-old");
    cache.checkout(&up.url(), &old, &dest_old).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dest_old.join("src/app.txt")).unwrap(),
        "v1"
    );
    assert!(dest_old.join("gone.txt").exists());
    assert!(!dest_old.join("bin").exists());

    // The mirror stays bare: no index or work tree was left in it.
    let mirror = cache.mirror_path(&up.url());
    assert!(!mirror.join("index").exists());

    // A destination with content is refused.
    let err = cache.checkout(&up.url(), &new, &dest).await.unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err}");
}

#[tokio::test]
async fn checkout_with_a_git_dir_gives_a_standalone_clean_repository() {
    let up = Upstream::new();
    up.commit("main", &[("a.txt", Some("1"))], "first");
    let second = up.commit("main", &[("a.txt", Some("2"))], "second");
    let cache = up.cache();
    let url = up.url();
    cache.fetch(&url, "main").await.unwrap();

    let dest = up.dir("full");
    let options = CheckoutOptions {
        git_dir: true,
        branch: Some("main".into()),
    };
    cache
        .checkout_with(&url, &second, &dest, &options)
        .await
        .unwrap();
    assert_eq!(run_git(&dest, &["rev-parse", "HEAD"], &[]), second);
    assert_eq!(
        run_git(&dest, &["symbolic-ref", "--short", "HEAD"], &[]),
        "main"
    );
    assert_eq!(run_git(&dest, &["status", "--porcelain"], &[]), "");
    assert_eq!(
        run_git(&dest, &["log", "--format=%s"], &[]),
        "second\nfirst"
    );
    assert_eq!(run_git(&dest, &["remote"], &[]), "");
    assert!(!dest.join(".git/objects/info/alternates").exists());

    // Standalone: the history survives the mirror's removal.
    std::fs::remove_dir_all(cache.mirror_path(&url)).unwrap();
    run_git(&dest, &["fsck", "--no-progress"], &[]);
    assert_eq!(run_git(&dest, &["show", "HEAD~1:a.txt"], &[]), "1");

    // Without a branch HEAD is detached at the commit.
    let detached = up.dir("detached");
    let options = CheckoutOptions {
        git_dir: true,
        branch: None,
    };
    cache
        .checkout_with(&url, &second, &detached, &options)
        .await
        .unwrap();
    assert_eq!(run_git(&detached, &["rev-parse", "HEAD"], &[]), second);
    let symbolic = Command::new("git")
        .arg("-C")
        .arg(&detached)
        .args(["symbolic-ref", "-q", "HEAD"])
        .status()
        .unwrap();
    assert!(!symbolic.success(), "HEAD should be detached");

    let bad = CheckoutOptions {
        git_dir: true,
        branch: Some("-x".into()),
    };
    let err = cache
        .checkout_with(&url, &second, up.dir("bad"), &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidBranch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_and_checkouts_of_one_url_do_not_collide() {
    let up = Upstream::new();
    let sha = up.commit("main", &[("f", Some("x"))], "one");
    let cache = up.cache();
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            let url = up.url();
            tokio::spawn(async move { cache.fetch(&url, "main").await })
        })
        .collect();
    for f in fetches {
        assert_eq!(f.await.unwrap().unwrap().id, sha);
    }
    // One mirror, no staging directories left behind.
    let names: Vec<_> = std::fs::read_dir(up.dir("cache/mirrors"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let checkouts: Vec<_> = (0..6)
        .map(|i| {
            let cache = cache.clone();
            let url = up.url();
            let sha = sha.clone();
            let dest = up.dir(&format!("co{i}"));
            tokio::spawn(async move { cache.checkout(&url, &sha, dest).await })
        })
        .collect();
    for c in checkouts {
        c.await.unwrap().unwrap();
    }
    for i in 0..6 {
        assert_eq!(
            std::fs::read_to_string(up.dir(&format!("co{i}/f"))).unwrap(),
            "x"
        );
    }
}

#[tokio::test]
async fn fetch_commit_gets_a_commit_the_mirror_has_never_seen() {
    let up = Upstream::new();
    let old = up.commit("main", &[("a", Some("1"))], "old one");
    up.commit("main", &[("a", Some("2"))], "new one");
    let feature = up.commit("feature/x", &[("b", Some("3"))], "on a branch");
    let cache = up.cache();
    let commit = cache.fetch_commit(&up.url(), &old).await.unwrap();
    assert_eq!(commit.id, old);
    assert_eq!(commit.message, "old one");
    assert_eq!(commit.branch, None);
    assert_eq!(
        commit.with_branch("main").output_variables()["BranchName"],
        "main"
    );
    // Upper-case ids are the same commit.
    assert_eq!(
        cache
            .fetch_commit(&up.url(), &feature.to_uppercase())
            .await
            .unwrap()
            .id,
        feature
    );

    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = cache.fetch_commit(&up.url(), missing).await.unwrap_err();
    assert!(
        matches!(&err, Error::CommitNotFound { commit, .. } if commit == missing),
        "{err}"
    );
    let err = cache.fetch_commit(&up.url(), "HEAD").await.unwrap_err();
    assert!(matches!(err, Error::InvalidCommitId { .. }), "{err}");
}

#[tokio::test]
async fn changed_files_lists_what_a_push_changed() {
    let up = Upstream::new();
    let base = up.commit(
        "main",
        &[
            ("keep.txt", Some("k")),
            ("edit.txt", Some("1")),
            ("old/name.txt", Some("same")),
            ("del.txt", Some("d")),
        ],
        "base",
    );
    run_git(&up.work, &["mv", "old/name.txt", "new-name.txt"], &[]);
    let head = up.commit(
        "main",
        &[
            ("edit.txt", Some("2")),
            ("del.txt", None),
            ("added/file.txt", Some("a")),
        ],
        "change",
    );
    let cache = up.cache();
    let mut changed = cache.changed_files(&up.url(), &base, &head).await.unwrap();
    changed.sort();
    assert_eq!(
        changed,
        [
            "added/file.txt",
            "del.txt",
            "edit.txt",
            "new-name.txt",
            "old/name.txt"
        ]
    );
    // A new branch (all-zero "before"): every file of the new head.
    let mut all = cache
        .changed_files(&up.url(), &"0".repeat(40), &head)
        .await
        .unwrap();
    all.sort();
    assert_eq!(
        all,
        ["added/file.txt", "edit.txt", "keep.txt", "new-name.txt"]
    );
}

#[tokio::test]
async fn ls_remote_lists_branches() {
    let up = Upstream::new();
    let main = up.commit("main", &[("a", Some("1"))], "one");
    let dev = up.commit("dev", &[("a", Some("2"))], "two");
    let refs = up.cache().ls_remote(&up.url()).await.unwrap();
    assert_eq!(refs["refs/heads/main"], main);
    assert_eq!(refs["refs/heads/dev"], dev);
}

#[tokio::test]
async fn the_poller_lists_each_url_once_per_tick_and_reports_moved_heads() {
    let a = Upstream::new();
    let b = Upstream::new();
    a.commit("main", &[("f", Some("1"))], "a1");
    a.commit("dev", &[("f", Some("2"))], "a-dev");
    b.commit("main", &[("f", Some("1"))], "b1");
    let cache = a.cache();
    let watches = vec![
        Watch::new(a.url(), "main"),
        Watch::new(a.url(), "dev"),
        Watch::new(a.url(), "main"), // a second pipeline on the same branch
        Watch::new(a.url(), "not-yet"),
        Watch::new(b.url(), "main"),
    ];
    let mut poller = Poller::new(cache.clone());
    let report = poller.tick(&watches).await;
    assert!(
        report.changes.is_empty(),
        "first tick only records: {:?}",
        report.changes
    );
    assert!(report.errors.is_empty());
    assert_eq!(poller.listings(), 2);
    assert_eq!(
        cache.commands_run(),
        2,
        "one git ls-remote per distinct URL"
    );

    let moved = a.commit("main", &[("f", Some("3"))], "a2");
    let report = poller.tick(&watches).await;
    assert_eq!(cache.commands_run(), 4);
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    assert_eq!(report.changes[0].watch, Watch::new(a.url(), "main"));
    assert_eq!(report.changes[0].current, moved);

    // A branch created after it was first watched fires when it appears.
    a.commit("not-yet", &[("g", Some("1"))], "new branch");
    let report = poller.tick(&watches).await;
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.changes[0].watch.branch, "not-yet");
    assert_eq!(report.changes[0].previous, None);

    assert!(poller.tick(&watches).await.changes.is_empty());
}

#[tokio::test]
async fn a_failing_remote_is_reported_and_others_still_fire() {
    let up = Upstream::new();
    up.commit("main", &[("f", Some("1"))], "one");
    let missing = format!("file://{}", up.dir("no-such-repo").display());
    let watches = vec![
        Watch::new(up.url(), "main"),
        Watch::new(missing.clone(), "main"),
    ];
    let mut poller = Poller::new(up.cache());
    let report = poller.tick(&watches).await;
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].0, missing);
    up.commit("main", &[("f", Some("2"))], "two");
    let report = poller.tick(&watches).await;
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.errors.len(), 1);
}

#[tokio::test]
async fn bad_urls_are_refused_with_clear_errors() {
    let up = Upstream::new();
    let cache = up.cache();
    // Refused before git runs.
    for url in [
        "--upload-pack=touch /tmp/gantry-pwned",
        "",
        "https://h/r\nx",
    ] {
        let err = cache.fetch(url, "main").await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url:?}: {err}");
    }
    assert_eq!(cache.commands_run(), 0);

    // No such repository: git's own reason is in the error.
    let missing = up.dir("missing.git");
    let err = cache
        .fetch(missing.to_str().unwrap(), "main")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::GitFailed { .. }), "{msg}");
    assert!(
        msg.contains("does not appear to be a git repository") || msg.contains("not found"),
        "{msg}"
    );

    // ext:: would run a command: not an allowed protocol.
    let marker = up.dir("pwned");
    let url = format!("ext::sh -c touch% {}", marker.display());
    let err = cache.ls_remote(&url).await.unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert!(!marker.exists());
}

#[tokio::test]
async fn passwords_in_urls_never_show_in_errors() {
    let up = Upstream::new();
    // Port 9 on loopback: the connection is refused at once.
    let url = "http://gantry:s3cr3t-t0ken@127.0.0.1:9/repo.git";
    let err = up.cache().fetch(url, "main").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

#[tokio::test]
async fn a_missing_branch_and_an_invalid_branch_are_told_apart() {
    let up = Upstream::new();
    up.commit("main", &[("f", Some("1"))], "one");
    let cache = up.cache();
    let err = cache.fetch(&up.url(), "nope").await.unwrap_err();
    assert!(
        matches!(&err, Error::BranchNotFound { branch, .. } if branch == "nope"),
        "{err}"
    );
    assert!(
        err.to_string().contains("branch \"nope\" not found"),
        "{err}"
    );
    let runs = cache.commands_run();
    let err = cache.fetch(&up.url(), "--force").await.unwrap_err();
    assert!(matches!(err, Error::InvalidBranch { .. }), "{err}");
    assert_eq!(cache.commands_run(), runs);
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("child.pid");
    let fake = tmp.path().join("fake-git");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = GitCache::new(tmp.path().join("cache"))
        .with_git_program(&fake)
        .with_timeout(Duration::from_millis(500));
    let err = cache
        .ls_remote("https://example.invalid/r.git")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("ls-remote"), "{err}");
    // The grandchild (like ssh or git-remote-https) was killed with the group.
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let mut gone = false;
    for _ in 0..100 {
        let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "child {pid} of the timed-out command is still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_fetches_of_one_branch_costs_two_fetches_and_never_misses_a_push() {
    let up = Upstream::new();
    let first = up.commit("main", &[("f", Some("1"))], "one");
    // As a remote repository would be: a local one is read in place.
    let cache = up.cache().fetching_local_repositories();
    // Warm: the mirror exists.
    assert_eq!(cache.fetch(&up.url(), "main").await.unwrap().id, first);
    let before = cache.commands_run();
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let url = up.url();
            tokio::spawn(async move { cache.fetch(&url, "main").await })
        })
        .collect();
    for f in burst {
        assert_eq!(f.await.unwrap().unwrap().id, first);
    }
    // One `git fetch` per round (the head is read without git). Two rounds
    // when every task asks before the first fetch ends: the first, and one
    // that started after every other call was made; a task the runtime
    // starts late can ask after the second began and need a third. Without
    // coalescing it would be 20.
    let used = cache.commands_run() - before;
    assert!(used <= 3, "20 fetches ran {used} git commands");
    // A push after a fetch is seen by the next fetch: a call is never
    // answered by a fetch that started before it was made.
    let second = up.commit("main", &[("f", Some("2"))], "two");
    assert_eq!(cache.fetch(&up.url(), "main").await.unwrap().id, second);
}

#[tokio::test]
async fn a_webhook_commit_and_a_branch_head_each_cost_one_git_process() {
    let up = Upstream::new();
    up.commit("main", &[("f", Some("1"))], "one");
    // As a remote repository would be: a local one is read in place.
    let cache = up.cache().fetching_local_repositories();
    cache.fetch(&up.url(), "main").await.unwrap();

    // A new commit named by id: no `cat-file` to learn it is missing (the
    // mirror's objects are read directly), one fetch, and the commit is
    // read from its loose object.
    let pushed = up.commit("main", &[("f", Some("2"))], "two");
    let before = cache.commands_run();
    let commit = cache.fetch_commit(&up.url(), &pushed).await.unwrap();
    assert_eq!(commit.id, pushed);
    assert_eq!(commit.message, "two");
    assert_eq!(cache.commands_run() - before, 1, "only the fetch");

    // The same commit again: already in the mirror, nothing to run.
    let before = cache.commands_run();
    cache.fetch_commit(&up.url(), &pushed).await.unwrap();
    assert_eq!(cache.commands_run(), before);

    // A branch: one fetch; the ref and the commit are read without git.
    let third = up.commit("main", &[("f", Some("3"))], "three");
    let before = cache.commands_run();
    assert_eq!(cache.fetch(&up.url(), "main").await.unwrap().id, third);
    assert_eq!(cache.commands_run() - before, 1, "only the fetch");
}

#[tokio::test]
async fn commits_read_without_git_equal_what_git_show_reads() {
    let up = Upstream::new();
    // Unusual but valid: a multi-line message with trailing blank lines,
    // non-ASCII names, a date west of UTC that is another day in UTC.
    let sha = up.commit_with_env(
        "main",
        &[("f", Some("1"))],
        "Subject \u{e9}t\u{e9}\n\nBody line\n  indented\n\n\n",
        &[
            ("GIT_AUTHOR_NAME", "Zo\u{eb} \u{2603} O'Neil"),
            ("GIT_AUTHOR_EMAIL", "zoe@example.com"),
            ("GIT_AUTHOR_DATE", "2023-12-31T23:30:00-05:00"),
            ("GIT_COMMITTER_DATE", "2024-02-29T12:00:00+14:00"),
        ],
    );
    // Both read their own mirrors, as for a remote repository.
    let loose = up.cache().fetching_local_repositories();
    let from_loose = loose.fetch(&up.url(), "main").await.unwrap();
    assert_eq!(from_loose.id, sha);

    // A second cache whose mirror holds the commit packed (and its ref in
    // packed-refs): the commit is read by `git show`.
    let packed = GitCache::new(up.dir("packed-cache")).fetching_local_repositories();
    packed.fetch(&up.url(), "main").await.unwrap();
    let mirror = packed.mirror_path(&up.url());
    run_git(&mirror, &["gc", "-q", "--prune=now"], &[]);
    let packed = GitCache::new(up.dir("packed-cache")).fetching_local_repositories();
    let before = packed.commands_run();
    let from_git = packed.fetch_commit(&up.url(), &sha).await.unwrap();
    assert!(
        packed.commands_run() > before,
        "a packed commit is read by git show"
    );
    assert_eq!(
        from_loose.clone().with_branch("x"),
        from_git.with_branch("x")
    );
    assert_eq!(from_loose.author_name, "Zo\u{eb} \u{2603} O'Neil");
    assert_eq!(from_loose.author_date, "2024-01-01T04:30:00Z");
    assert_eq!(from_loose.committer_date, "2024-02-28T22:00:00Z");
    assert_eq!(
        from_loose.message,
        "Subject \u{e9}t\u{e9}\n\nBody line\n  indented"
    );

    // And the packed branch head is found through packed-refs.
    let again = GitCache::new(up.dir("packed-cache")).fetching_local_repositories();
    assert_eq!(again.fetch(&up.url(), "main").await.unwrap().id, sha);
}

/// How many objects the last pack a `pack-objects` wrote held, from a
/// git trace2 event file.
fn objects_written_last(trace: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(trace).ok()?;
    text.lines()
        .rev()
        .filter(|l| {
            l.contains("\"category\":\"pack-objects\"") && l.contains("\"key\":\"written\"")
        })
        .find_map(|l| {
            let value = l.split("\"value\":\"").nth(1)?;
            value.split('"').next()?.parse().ok()
        })
}

#[tokio::test]
async fn a_webhook_commit_is_sent_alone_not_with_all_history_since_the_branch_head() {
    let up = Upstream::new();
    up.commit("main", &[("f", Some("0"))], "zero");
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace.json");
    let wrapper = tmp.path().join("git");
    // git with trace2 events on: its children (upload-pack, pack-objects)
    // inherit the variable and report what they sent.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nGIT_TRACE2_EVENT={} exec git \"$@\"\n",
            trace.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = GitCache::new(tmp.path().join("cache"))
        .with_git_program(&wrapper)
        .fetching_local_repositories();
    // The mirror's branch head stays at the first commit: only webhooks'
    // commit ids are fetched after it.
    cache.fetch(&up.url(), "main").await.unwrap();
    for n in 1..=10 {
        let id = up.commit("main", &[("f", Some(&n.to_string()))], "push");
        std::fs::write(&trace, "").unwrap();
        assert_eq!(cache.fetch_commit(&up.url(), &id).await.unwrap().id, id);
    }
    // The last push's commit, tree and blob; not the 30 objects since the
    // branch head.
    let written = objects_written_last(&trace).expect("a pack-objects trace");
    assert!(
        written <= 3,
        "the fetch of one new commit sent {written} objects"
    );
}

/// Whether the bare repository at `git_dir` holds object `id` itself.
fn holds_object(git_dir: &Path, id: &str) -> bool {
    Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["cat-file", "-e", id])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn a_local_repositorys_commits_are_read_in_place_not_fetched() {
    let up = Upstream::new();
    let first = up.commit("main", &[("f", Some("1")), ("keep", Some("k"))], "one");
    let cache = up.cache();
    cache.fetch(&up.url(), "main").await.unwrap();
    let mirror = cache.mirror_path(&up.url());

    // A webhook's new commit: read from the repository's own loose object,
    // no git process at all, and the mirror is left as it was.
    let pushed = up.commit("main", &[("f", Some("2"))], "two");
    let before = cache.commands_run();
    let commit = cache.fetch_commit(&up.url(), &pushed).await.unwrap();
    assert_eq!(
        (commit.id.as_str(), commit.message.as_str()),
        (pushed.as_str(), "two")
    );
    assert_eq!(commit.author_name, "Ada Lovelace");
    assert_eq!(cache.commands_run(), before, "nothing fetched");
    assert!(!holds_object(&mirror, &pushed), "the mirror is untouched");

    // A branch is read there too: its ref and its commit, no git process.
    let head = up.commit("main", &[("f", Some("2b"))], "two and a bit");
    let before = cache.commands_run();
    let commit = cache.fetch(&up.url(), "main").await.unwrap();
    assert_eq!(
        (commit.id.as_str(), commit.branch.as_deref()),
        (head.as_str(), Some("main"))
    );
    assert_eq!(cache.commands_run(), before, "nothing fetched");
    assert!(!holds_object(&mirror, &head));
    // A branch the repository lacks is still told apart.
    let err = cache.fetch(&up.url(), "nope").await.unwrap_err();
    assert!(matches!(err, Error::BranchNotFound { .. }), "{err}");

    // Its checkout is the one `read-tree`, reading the borrowed objects.
    let before = cache.commands_run();
    let dest = up.dir("checkout");
    cache.checkout(&up.url(), &pushed, &dest).await.unwrap();
    assert_eq!(cache.commands_run() - before, 1, "only the checkout");
    assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "2");
    assert_eq!(std::fs::read_to_string(dest.join("keep")).unwrap(), "k");
    assert!(!dest.join(".git").exists());

    // A path filter's diff between a commit in the mirror and one read in place.
    assert_eq!(
        cache
            .changed_files(&up.url(), &first, &pushed)
            .await
            .unwrap(),
        ["f"]
    );

    // Packed in the repository (a git host's `gc`): found through its pack
    // index, read by `git show` with the objects borrowed.
    let packed = up.commit_dated(
        "main",
        &[("g", Some("3"))],
        "three",
        "2023-12-31T23:30:00-05:00",
    );
    run_git(&up.bare, &["gc", "-q", "--prune=now"], &[]);
    assert!(
        !up.bare
            .join("objects")
            .join(&packed[..2])
            .join(&packed[2..])
            .exists()
    );
    let commit = cache.fetch_commit(&up.url(), &packed).await.unwrap();
    assert_eq!(commit.message, "three");
    assert_eq!(commit.author_date, "2024-01-01T04:30:00Z");
    assert!(!holds_object(&mirror, &packed));

    // A checkout with history owns its objects: it outlives the repository.
    let full = up.dir("full");
    cache
        .checkout_with(
            &up.url(),
            &packed,
            &full,
            &CheckoutOptions {
                git_dir: true,
                branch: Some("main".into()),
            },
        )
        .await
        .unwrap();
    std::fs::remove_dir_all(&up.bare).unwrap();
    assert!(!full.join(".git/objects/info/alternates").exists());
    assert_eq!(run_git(&full, &["rev-parse", "HEAD"], &[]), packed);
    assert_eq!(
        run_git(&full, &["log", "--format=%s"], &[]),
        "three\ntwo and a bit\ntwo\none"
    );
    assert_eq!(run_git(&full, &["status", "--porcelain"], &[]), "");
}

#[tokio::test]
async fn a_work_tree_by_plain_path_is_read_in_place_and_a_missing_commit_still_fetches() {
    let up = Upstream::new();
    up.commit("main", &[("f", Some("1"))], "one");
    // The pushing work tree itself, named by its path: its `.git` is read.
    let url = up.work.to_str().unwrap().to_owned();
    let cache = up.cache();
    let local = run_git(&up.work, &["rev-parse", "HEAD"], &[]);
    let before = cache.commands_run();
    let commit = cache.fetch_commit(&url, &local).await.unwrap();
    assert_eq!(commit.message, "one");
    // Only the mirror's `git init`.
    assert_eq!(cache.commands_run() - before, 1);

    // A commit the repository does not have is looked for the usual way
    // (fetch by id, then every branch) and reported missing.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let before = cache.commands_run();
    let err = cache.fetch_commit(&url, missing).await.unwrap_err();
    assert!(matches!(err, Error::CommitNotFound { .. }), "{err}");
    assert!(
        cache.commands_run() - before >= 2,
        "fetched by id, then branches"
    );
}
