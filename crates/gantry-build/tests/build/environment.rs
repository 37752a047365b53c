//! Variables: `env`, precedence, `exported-variables`, CODEBUILD_*, shells, run-as.

use gantry_build::PhaseStatus;
use gantry_build::executor::ExecutorKind;

use crate::harness::Harness;

on_every_executor!(variables_are_not_expanded, async |h: Harness| {
    let run = h
        .run("version: 0.2\nenv:\n  variables:\n    LITERAL: \"$HOME/x and $(echo no)\"\nphases:\n  build:\n    commands:\n      - 'printf \"%s\\n\" \"$LITERAL\"'\n")
        .await;
    assert!(
        run.output().contains(&"$HOME/x and $(echo no)".to_string()),
        "{}",
        run.log()
    );
});

on_every_executor!(
    command_line_env_overrides_the_buildspec,
    async |h: Harness| {
        let mut options = h.options();
        options.env = vec![("STAGE".into(), "from-cli".into())];
        let run = h
        .run_with("version: 0.2\nenv:\n  variables:\n    STAGE: from-buildspec\n    OTHER: kept\nphases:\n  build:\n    commands: ['echo \"$STAGE $OTHER\"']\n", options)
        .await;
        assert!(
            run.output().contains(&"from-cli kept".to_string()),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(
    exported_variables_take_their_final_values,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nenv:\n  exported-variables: [VERSION, UNSET_ONE]\nphases:\n  build:\n    commands: ['export VERSION=1.0']\n  post_build:\n    commands: ['export VERSION=1.1']\n")
        .await;
        assert_eq!(run.exported("VERSION").as_deref(), Some("1.1"));
        assert_eq!(run.exported("UNSET_ONE").as_deref(), Some(""));
    }
);

on_every_executor!(codebuild_variables_are_set, async |h: Harness| {
    let mut options = h.options();
    options.build_number = 42;
    options.project_name = "proj".into();
    let run = h
        .run_with(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"src=$CODEBUILD_SRC_DIR\"\n      - echo \"id=$CODEBUILD_BUILD_ID\"\n      - echo \"number=$CODEBUILD_BUILD_NUMBER\"\n      - echo \"start=$CODEBUILD_START_TIME\"\n      - echo \"arn=$CODEBUILD_BUILD_ARN\"\n      - echo \"image=$CODEBUILD_BUILD_IMAGE\"\n",
            options,
        )
        .await;
    let out = run.output();
    let src = std::fs::canonicalize(h.path()).unwrap();
    assert!(
        out.contains(&format!("src={}", src.display())),
        "{}",
        run.log()
    );
    assert!(
        out.contains(&format!("id={}", run.result.id)),
        "{}",
        run.log()
    );
    assert!(run.result.id.starts_with("proj:"));
    assert!(out.contains(&"number=42".to_string()));
    assert!(out.contains(&format!("arn={}", run.result.arn)));
    let start: u64 = out
        .iter()
        .find_map(|l| l.strip_prefix("start="))
        .unwrap()
        .parse()
        .expect("epoch ms");
    assert!(
        start >= (run.result.start_time * 1000.0) as u64 - 1000
            && start <= (run.result.end_time * 1000.0) as u64
    );
    let image = if h.kind == ExecutorKind::Docker {
        crate::harness::TEST_IMAGE.to_string()
    } else {
        format!("gantry:{}", h.kind.as_str())
    };
    assert!(out.contains(&format!("image={image}")), "{}", run.log());
});

on_every_executor!(
    a_build_named_by_its_caller_sees_that_id,
    async |h: Harness| {
        // The server names its builds (`project:uuid`): the build must see the
        // id the API reports, not one of the runner's own.
        let mut options = h.options();
        options.project_name = "proj".into();
        options.build_id = Some("proj:8d0c3a4e-4a3b-4f61-9d0e-2b7f5c1e9a77".into());
        let run = h
        .run_with(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"id=$CODEBUILD_BUILD_ID\"\n      - echo \"arn=$CODEBUILD_BUILD_ARN\"\n",
            options,
        )
        .await;
        let out = run.output();
        assert_eq!(run.result.id, "proj:8d0c3a4e-4a3b-4f61-9d0e-2b7f5c1e9a77");
        assert!(
            out.contains(&format!("id={}", run.result.id)),
            "{}",
            run.log()
        );
        assert!(
            out.contains(&format!(
                "arn=arn:aws:codebuild:local:000000000000:build/{}",
                run.result.id
            )),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(
    resolved_source_version_is_the_git_commit,
    async |h: Harness| {
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(h.path())
                .args(args)
                .status()
                .expect("git runs");
            assert!(status.success());
        };
        h.write("README", "x");
        git(&["init", "-q"]);
        git(&[
            "-c",
            "user.email=t@e.st",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ]);
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(h.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        let commit = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let run = h.run("version: 0.2\nphases:\n  build:\n    commands: ['echo \"rev=$CODEBUILD_RESOLVED_SOURCE_VERSION\"']\n").await;
        assert!(
            run.output().contains(&format!("rev={commit}")),
            "{}",
            run.log()
        );
        assert_eq!(
            run.result.resolved_source_version.as_deref(),
            Some(commit.as_str())
        );
    }
);

on_every_executor!(
    no_resolved_source_version_outside_git,
    async |h: Harness| {
        let run = h.run("version: 0.2\nphases:\n  build:\n    commands: ['echo \"rev=${CODEBUILD_RESOLVED_SOURCE_VERSION-unset}\"']\n").await;
        assert!(
            run.output().contains(&"rev=unset".to_string()),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(shell_bash_runs_bash, async |h: Harness| {
    if h.kind == ExecutorKind::Docker {
        return; // The busybox test image has no bash.
    }
    let run = h.run("version: 0.2\nenv:\n  shell: bash\nphases:\n  build:\n    commands: ['echo \"bash=${BASH_VERSION:+yes}\"']\n").await;
    assert!(
        run.output().contains(&"bash=yes".to_string()),
        "{}",
        run.log()
    );
});

on_every_executor!(run_as_switches_user, async |h: Harness| {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: run-as needs root");
        return;
    }
    let run = h
        .run("version: 0.2\nrun-as: nobody\nphases:\n  install:\n    commands: ['echo \"top=$(id -un)\"']\n  build:\n    run-as: root\n    commands: ['echo \"phase=$(id -un)\"']\n")
        .await;
    assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
    let out = run.output();
    assert!(
        out.contains(&"top=nobody".to_string()) && out.contains(&"phase=root".to_string()),
        "{}",
        run.log()
    );
});

on_every_executor!(
    run_as_an_unknown_user_fails_the_phase,
    async |h: Harness| {
        let run = h.run("version: 0.2\nphases:\n  build:\n    run-as: no-such-user-here\n    commands: ['echo hi']\n").await;
        assert_eq!(run.status(), PhaseStatus::Failed, "{}", run.log());
        assert!(run.log().contains("no-such-user-here"), "{}", run.log());
    }
);
