//! The phase graph and command semantics (FORMATS-AWS.md §1.6, §1.7).

use gantry_build::{PhaseStatus, PhaseType};

use crate::harness::Harness;

on_every_executor!(
    cd_and_export_carry_to_the_next_command,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p sub && cd sub\n      - export GREETING=hello\n      - echo \"$GREETING from $(basename $(pwd))\"\n")
        .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        assert!(
            run.output().contains(&"hello from sub".to_string()),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(
    environment_and_directory_carry_across_phases,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  install:\n    commands:\n      - mkdir -p deep && cd deep\n      - export TOOL=v1\n  build:\n    commands:\n      - echo \"$TOOL in $(basename $(pwd))\"\n")
        .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        assert!(
            run.output().contains(&"v1 in deep".to_string()),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(
    version_0_1_runs_each_command_in_its_own_shell,
    async |h: Harness| {
        let run = h
        .run("version: 0.1\nphases:\n  build:\n    commands:\n      - mkdir -p sub && cd sub\n      - export GREETING=hello\n      - echo \"[$GREETING] $(basename $(pwd))\"\n")
        .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
        let root = h.path().file_name().unwrap().to_string_lossy().to_string();
        assert!(
            run.output().contains(&format!("[] {root}")),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(
    first_failure_skips_the_rest_and_runs_finally,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands:\n      - echo one\n      - exit_code() { return 3; }; exit_code\n      - echo never\n    finally:\n      - echo cleanup\n")
        .await;
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
        assert_eq!(run.status(), PhaseStatus::Failed);
        let out = run.output();
        assert!(
            out.contains(&"one".to_string()) && out.contains(&"cleanup".to_string()),
            "{}",
            run.log()
        );
        assert!(!out.contains(&"never".to_string()), "{}", run.log());
        let context = &run.result.phase(PhaseType::Build).unwrap().contexts[0];
        assert_eq!(context.status_code, "COMMAND_EXECUTION_ERROR");
        assert!(
            context.message.ends_with("Reason: exit status 3"),
            "{}",
            context.message
        );
    }
);

on_every_executor!(
    only_the_last_status_of_a_command_counts,
    async |h: Harness| {
        let run = h
            .run("version: 0.2\nphases:\n  build:\n    commands:\n      - false; true\n")
            .await;
        assert_eq!(run.status(), PhaseStatus::Succeeded, "{}", run.log());
    }
);

on_every_executor!(a_failing_finally_fails_the_phase, async |h: Harness| {
    let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n    finally:\n      - 'false'\n      - echo after-finally-failure\n")
        .await;
    assert_eq!(
        run.phase(PhaseType::Build),
        Some(PhaseStatus::Failed),
        "{}",
        run.log()
    );
    assert!(!run.output().contains(&"after-finally-failure".to_string()));
});

on_every_executor!(
    exit_inside_a_command_still_runs_finally,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands:\n      - export KEPT=yes\n      - exit 4\n      - echo never\n    finally:\n      - echo \"finally sees KEPT=$KEPT\"\n")
        .await;
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
        assert!(
            run.output().contains(&"finally sees KEPT=yes".to_string()),
            "{}",
            run.log()
        );
        let context = &run.result.phase(PhaseType::Build).unwrap().contexts[0];
        assert!(
            context.message.contains("exit 4") && context.message.ends_with("exit status 4"),
            "{}",
            context.message
        );
    }
);

on_every_executor!(install_failure_skips_to_finalizing, async |h: Harness| {
    let run = h
        .run("version: 0.2\nphases:\n  install:\n    commands: ['false']\n  build:\n    commands: [echo build-ran]\n  post_build:\n    commands: [echo post-ran]\nartifacts:\n  files: ['**/*']\n")
        .await;
    assert_eq!(run.status(), PhaseStatus::Failed);
    assert_eq!(
        run.phase_names(),
        [
            "SUBMITTED",
            "QUEUED",
            "PROVISIONING",
            "DOWNLOAD_SOURCE",
            "INSTALL",
            "FINALIZING",
            "COMPLETED"
        ]
    );
    assert!(run.output().is_empty(), "{}", run.log());
});

on_every_executor!(pre_build_failure_skips_to_finalizing, async |h: Harness| {
    let run = h.run("version: 0.2\nphases:\n  pre_build:\n    commands: ['false']\n  build:\n    commands: [echo build-ran]\n").await;
    assert_eq!(run.phase(PhaseType::Build), None);
    assert_eq!(run.phase(PhaseType::UploadArtifacts), None);
    assert_eq!(run.status(), PhaseStatus::Failed);
});

on_every_executor!(
    build_failure_still_runs_post_build_and_upload,
    async |h: Harness| {
        h.write("out.txt", "x");
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"build succeeding=$CODEBUILD_BUILD_SUCCEEDING\"\n      - 'false'\n  post_build:\n    commands:\n      - echo \"post succeeding=$CODEBUILD_BUILD_SUCCEEDING\"\nartifacts:\n  files: [out.txt]\n")
        .await;
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
        assert_eq!(
            run.phase(PhaseType::PostBuild),
            Some(PhaseStatus::Succeeded)
        );
        assert_eq!(
            run.phase(PhaseType::UploadArtifacts),
            Some(PhaseStatus::Succeeded)
        );
        assert_eq!(run.status(), PhaseStatus::Failed);
        let out = run.output();
        assert!(
            out.contains(&"build succeeding=1".to_string())
                && out.contains(&"post succeeding=0".to_string()),
            "{}",
            run.log()
        );
    }
);

on_every_executor!(post_build_failure_still_uploads, async |h: Harness| {
    h.write("out.txt", "x");
    let run = h.run("version: 0.2\nphases:\n  post_build:\n    commands: ['false']\nartifacts:\n  files: [out.txt]\n").await;
    assert_eq!(run.phase(PhaseType::PostBuild), Some(PhaseStatus::Failed));
    assert_eq!(
        run.phase(PhaseType::UploadArtifacts),
        Some(PhaseStatus::Succeeded)
    );
    assert_eq!(run.status(), PhaseStatus::Failed);
});

on_every_executor!(on_failure_abort_stops_the_build, async |h: Harness| {
    let run = h
        .run("version: 0.2\nphases:\n  build:\n    on-failure: ABORT\n    commands: ['false']\n  post_build:\n    commands: [echo post-ran]\n")
        .await;
    assert_eq!(run.phase(PhaseType::PostBuild), None);
    assert_eq!(run.phase(PhaseType::UploadArtifacts), None);
    assert_eq!(run.status(), PhaseStatus::Failed);
});

on_every_executor!(
    on_failure_continue_runs_the_next_phase_and_fails_the_build,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  install:\n    on-failure: CONTINUE\n    commands: ['false']\n  pre_build:\n    commands: [echo pre-ran]\n  build:\n    commands: [echo build-ran]\n")
        .await;
        assert_eq!(run.phase(PhaseType::PreBuild), Some(PhaseStatus::Succeeded));
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Succeeded));
        assert!(run.output().contains(&"build-ran".to_string()));
        assert_eq!(run.status(), PhaseStatus::Failed);
    }
);

on_every_executor!(
    retry_reruns_the_phase_until_it_succeeds,
    async |h: Harness| {
        // Fails on attempts 1 and 2, succeeds on 3: RETRY-2 allows exactly that.
        let spec = "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2\n    commands:\n      - echo x >> attempts\n      - test $(wc -l < attempts) -ge 3\n";
        let run = h.run(spec).await;
        assert_eq!(
            run.phase(PhaseType::Build),
            Some(PhaseStatus::Succeeded),
            "{}",
            run.log()
        );
        assert_eq!(
            std::fs::read_to_string(h.path().join("attempts"))
                .unwrap()
                .lines()
                .count(),
            3
        );
    }
);

on_every_executor!(retry_gives_up_after_its_count, async |h: Harness| {
    let run = h.run("version: 0.2\nphases:\n  build:\n    on-failure: RETRY-1\n    commands:\n      - echo x >> attempts\n      - 'false'\n").await;
    assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
    assert_eq!(
        std::fs::read_to_string(h.path().join("attempts"))
            .unwrap()
            .lines()
            .count(),
        2
    );
});

on_every_executor!(
    retry_with_a_regex_only_retries_matching_errors,
    async |h: Harness| {
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    on-failure: RETRY-3-exit status 7\n    commands:\n      - echo x >> attempts\n      - sh -c 'exit 2'\n")
        .await;
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
        assert_eq!(
            std::fs::read_to_string(h.path().join("attempts"))
                .unwrap()
                .lines()
                .count(),
            1,
            "no retry for exit status 2"
        );
        let run = h
        .run("version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2-exit status 7\n    commands:\n      - echo y >> tries\n      - sh -c 'exit 7'\n")
        .await;
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Failed));
        assert_eq!(
            std::fs::read_to_string(h.path().join("tries"))
                .unwrap()
                .lines()
                .count(),
            3
        );
    }
);

on_every_executor!(
    an_empty_buildspec_succeeds_with_every_phase_listed,
    async |h: Harness| {
        let run = h.run("version: 0.2\nphases: {}\n").await;
        assert_eq!(run.status(), PhaseStatus::Succeeded);
        assert_eq!(
            run.phase_names(),
            [
                "SUBMITTED",
                "QUEUED",
                "PROVISIONING",
                "DOWNLOAD_SOURCE",
                "INSTALL",
                "PRE_BUILD",
                "BUILD",
                "POST_BUILD",
                "UPLOAD_ARTIFACTS",
                "FINALIZING",
                "COMPLETED"
            ]
        );
    }
);
