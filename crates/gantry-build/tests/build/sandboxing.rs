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
