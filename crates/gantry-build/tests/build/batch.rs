//! Batch builds: list, graph, matrix, fanout, fast-fail, ignore-failure.

use std::sync::Arc;

use gantry_build::{BatchResult, PhaseStatus, StopSignal};

use crate::harness::{Collector, Harness};

async fn run_batch(h: &Harness, yaml: &str) -> (BatchResult, String) {
    let spec = gantry_spec::buildspec::parse(yaml).unwrap_or_else(|d| panic!("{d:?}"));
    let collector = Arc::new(Collector::default());
    let result =
        gantry_build::run_batch(&spec, &h.options(), collector.clone(), StopSignal::never())
            .await
            .expect("batch runs");
    let log = collector
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, task, e)| match e {
            gantry_build::BuildEvent::Line(l) => {
                Some(format!("[{}] {l}", task.as_deref().unwrap_or("-")))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    (result, log)
}

fn status_of(result: &BatchResult, id: &str) -> Option<PhaseStatus> {
    result
        .build_groups
        .iter()
        .find(|g| g.identifier == id)?
        .current_build_summary
        .as_ref()
        .map(|s| s.build_status)
}

on_every_executor!(
    build_list_runs_every_task_with_its_identifier_and_variables,
    async |h: Harness| {
        let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-list:\n    - identifier: linux\n      env:\n        variables:\n          TARGET: x86\n    - identifier: arm\n      env:\n        variables:\n          TARGET: arm64\nphases:\n  build:\n    commands: ['echo \"$CODEBUILD_BATCH_BUILD_IDENTIFIER builds $TARGET\"']\n",
    )
    .await;
        assert_eq!(result.build_batch_status, PhaseStatus::Succeeded, "{log}");
        assert!(
            log.contains("[linux] linux builds x86") && log.contains("[arm] arm builds arm64"),
            "{log}"
        );
    }
);

on_every_executor!(
    build_graph_waits_for_dependencies_and_skips_after_failures,
    async |h: Harness| {
        let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-graph:\n    - identifier: first\n    - identifier: second\n      depend-on: [first]\n    - identifier: broken\n      env:\n        variables:\n          FAIL: 'yes'\n    - identifier: after_broken\n      depend-on: [broken]\nphases:\n  build:\n    commands: ['test \"$FAIL\" != yes']\n",
    )
    .await;
        let build = |id: &str| {
            result
                .builds
                .iter()
                .find(|b| b.batch_build_identifier.as_deref() == Some(id))
                .unwrap()
        };
        assert!(
            build("second").start_time >= build("first").end_time,
            "second started before first ended\n{log}"
        );
        assert_eq!(status_of(&result, "broken"), Some(PhaseStatus::Failed));
        assert_eq!(
            status_of(&result, "after_broken"),
            None,
            "a dependent of a failed task must not run\n{log}"
        );
        assert_eq!(result.build_batch_status, PhaseStatus::Failed);
    }
);

on_every_executor!(build_matrix_runs_the_cross_product, async |h: Harness| {
    let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-matrix:\n    dynamic:\n      env:\n        variables:\n          OS: [linux, mac]\n          ARCH: [x86, arm]\nphases:\n  build:\n    commands: ['echo \"cell $OS-$ARCH\"']\n",
    )
    .await;
    assert_eq!(result.build_groups.len(), 4, "{log}");
    for cell in ["linux-x86", "linux-arm", "mac-x86", "mac-arm"] {
        assert!(
            log.contains(&format!("cell {cell}")),
            "{cell} missing\n{log}"
        );
    }
    assert_eq!(result.build_batch_status, PhaseStatus::Succeeded);
});

on_every_executor!(ignore_failure_keeps_the_batch_green, async |h: Harness| {
    let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-list:\n    - identifier: flaky\n      ignore-failure: true\n      env:\n        variables:\n          FAIL: 'yes'\n    - identifier: solid\nphases:\n  build:\n    commands: ['test \"$FAIL\" != yes']\n",
    )
    .await;
    assert_eq!(status_of(&result, "flaky"), Some(PhaseStatus::Failed));
    assert_eq!(result.build_batch_status, PhaseStatus::Succeeded, "{log}");
});

on_every_executor!(fast_fail_stops_the_running_tasks, async |h: Harness| {
    let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  fast-fail: true\n  build-list:\n    - identifier: fails\n      env:\n        variables:\n          FAIL: 'yes'\n    - identifier: slow\nphases:\n  build:\n    commands: ['if [ \"$FAIL\" = yes ]; then exit 1; fi; sleep 60']\n",
    )
    .await;
    assert_eq!(
        status_of(&result, "fails"),
        Some(PhaseStatus::Failed),
        "{log}"
    );
    assert_eq!(
        status_of(&result, "slow"),
        Some(PhaseStatus::Stopped),
        "{log}"
    );
    assert_eq!(result.build_batch_status, PhaseStatus::Failed);
});

on_every_executor!(fanout_runs_n_builds, async |h: Harness| {
    let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-fanout:\n    parallelism: 3\nphases:\n  build:\n    commands: ['echo \"shard $CODEBUILD_BATCH_BUILD_IDENTIFIER\"']\n",
    )
    .await;
    assert_eq!(result.builds.len(), 3, "{log}");
    assert_eq!(result.build_batch_status, PhaseStatus::Succeeded, "{log}");
});

on_every_executor!(build_list_tasks_run_at_the_same_time, async |h: Harness| {
    let (result, log) = run_batch(
        &h,
        "version: 0.2\nbatch:\n  build-list:\n    - identifier: one\n    - identifier: two\nphases:\n  build:\n    commands: ['sleep 2']\n",
    )
    .await;
    assert_eq!(result.build_batch_status, PhaseStatus::Succeeded, "{log}");
    let (a, b) = (&result.builds[0], &result.builds[1]);
    // Each started before the other ended: they overlapped.
    assert!(
        a.start_time < b.end_time && b.start_time < a.end_time,
        "tasks ran one after the other\n{log}"
    );
});
