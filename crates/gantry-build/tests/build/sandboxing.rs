//! What each executor isolates.

use gantry_build::PhaseStatus;
use gantry_build::executor::ExecutorKind;

use crate::harness::Harness;

on_every_executor!(
    the_source_is_at_the_same_path_and_writable,
    async |h: Harness| {
        let src = std::fs::canonicalize(h.path()).unwrap();
        let run = h
            .run("version: 0.2\nphases:\n  build:\n    commands: ['pwd', 'echo made > made.txt']\n")
            .await;
        assert!(
            run.output().contains(&src.display().to_string()),
            "{}",
            run.log()
        );
        assert_eq!(
            std::fs::read_to_string(h.path().join("made.txt")).unwrap(),
            "made\n"
        );
    }
);

#[tokio::test]
async fn sandbox_host_is_read_only_and_tmp_is_private() {
    crate::harness::run_on(ExecutorKind::Sandbox, async |h: Harness| {
        let probe = format!("gantry-sandbox-probe-{}", std::process::id());
        let run = h
            .run(&format!(
                "version: 0.2\nphases:\n  build:\n    commands:\n      - if touch /usr/gantry-probe 2>/dev/null; then echo usr-writable; else echo usr-read-only; fi\n      - echo private > /tmp/{probe} && cat /tmp/{probe}\n"
            ))
            .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        assert!(run.output().contains(&"usr-read-only".to_string()), "{}", run.log());
        assert!(run.output().contains(&"private".to_string()));
        assert!(!std::path::Path::new("/tmp").join(&probe).exists(), "the sandbox's /tmp leaked to the host");
    })
    .await;
}

on_every_executor!(network_none_leaves_only_loopback, async |h: Harness| {
    if h.kind == ExecutorKind::Host {
        return; // The host executor does not isolate the network.
    }
    let mut options = h.options();
    options.network = false;
    let run = h.run_with("version: 0.2\nphases:\n  build:\n    commands: ['tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d \" \" | tr \"\\n\" \" \"; echo']\n", options).await;
    let interfaces: Vec<String> = run
        .output()
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(interfaces, vec!["lo".to_string()], "{}", run.log());
});

#[tokio::test]
async fn docker_runs_in_the_image() {
    crate::harness::run_on(ExecutorKind::Docker, async |h: Harness| {
        let run = h.run("version: 0.2\nphases:\n  build:\n    commands: ['readlink /bin/sh', 'grep -c builder /etc/passwd']\n").await;
        assert_eq!(run.output(), vec!["busybox".to_string(), "1".to_string()], "{}", run.log());
    })
    .await;
}

#[tokio::test]
async fn docker_with_a_missing_image_is_a_fault_not_a_hang() {
    crate::harness::run_on(ExecutorKind::Docker, async |h: Harness| {
        let mut options = h.options();
        options.image = Some("gantry-test/no-such-image:404".into());
        let run = h
            .run_with(
                "version: 0.2\nphases:\n  build:\n    commands: [echo hi]\n",
                options,
            )
            .await;
        assert_eq!(run.status(), PhaseStatus::Fault, "{}", run.log());
        assert!(
            run.log().contains("no-such-image") && run.log().contains("not present locally"),
            "{}",
            run.log()
        );
    })
    .await;
}

/// Puts a fake `bwrap` first on PATH: it fails its first `failures` starts
/// printing `message`, then hands over to the real bubblewrap. Returns the
/// file that counts the starts.
fn fake_bwrap(h: &Harness, failures: u32, message: &str) -> std::path::PathBuf {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("bwrap"))
        .find(|p| p.exists())
        .expect("bwrap on PATH");
    let dir = h.source.path().join(".fake-bin");
    std::fs::create_dir_all(&dir).expect("fake bin dir");
    let count = dir.join("starts");
    // The message goes in a file of its own: it may hold quotes (`Can't`).
    let said = dir.join("message");
    std::fs::write(&said, format!("{message}\n")).expect("message file");
    let script = format!(
        "#!/bin/sh\necho x >> '{count}'\nif [ \"$(wc -l < '{count}')\" -le {failures} ]; then cat '{said}' >&2; exit 1; fi\nexec '{real}' \"$@\"\n",
        count = count.display(),
        said = said.display(),
        real = real.display(),
    );
    let fake = dir.join("bwrap");
    std::fs::write(&fake, script).expect("fake bwrap");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    // SAFETY: nextest runs each test in its own process, and nothing else
    // in this test reads the environment concurrently while it is set.
    unsafe { std::env::set_var("PATH", path) };
    count
}

fn starts(count: &std::path::Path) -> usize {
    std::fs::read_to_string(count)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

const MOUNT_RACE: &str = "bwrap: Can't bind mount /oldroot/ on /newroot/: Unable to apply mount flags: remount \"/newroot/var/lib/docker/fuse-overlayfs/0123/merged\": Invalid argument";

#[tokio::test]
async fn sandbox_start_that_loses_a_mount_race_is_tried_again() {
    crate::harness::run_on(ExecutorKind::Sandbox, async |h: Harness| {
        let count = fake_bwrap(&h, 2, MOUNT_RACE);
        let run = h
            .run("version: 0.2\nphases:\n  build:\n    commands:\n      - echo inside\n")
            .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        assert_eq!(starts(&count), 3, "two lost races, then a start");
        assert!(
            run.output().contains(&"inside".to_string()),
            "{}",
            run.log()
        );
        assert!(
            !run.log().contains("Can't bind mount"),
            "bubblewrap's retried complaint leaked into the log: {}",
            run.log()
        );
    })
    .await;
}

#[tokio::test]
async fn sandbox_that_cannot_start_fails_once_with_bubblewraps_reason() {
    crate::harness::run_on(ExecutorKind::Sandbox, async |h: Harness| {
        let count = fake_bwrap(&h, 100, "bwrap: No permissions to create new namespace");
        let run = h
            .run("version: 0.2\nphases:\n  build:\n    commands:\n      - echo inside\n")
            .await;
        assert_ne!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        assert_eq!(
            starts(&count),
            1,
            "a failure that is not a mount race is not retried"
        );
        let everything = format!("{}{:?}", run.log(), run.result);
        assert!(
            everything.contains("No permissions to create new namespace"),
            "the reason is lost: {everything}"
        );
        assert!(!run.output().contains(&"inside".to_string()));
    })
    .await;
}
