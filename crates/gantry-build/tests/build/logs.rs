//! The live log: masking, streaming, phase markers.

use std::sync::Arc;

use gantry_build::{BuildEvent, PhaseType, StopSignal};

use crate::harness::{Collector, Harness};

on_every_executor!(
    secrets_are_masked_even_when_split_across_writes,
    async |h: Harness| {
        let mut options = h.options();
        options.secret_env = vec![("TOKEN".into(), "s3cr3t-t0ken-value".into())];
        let run = h
        .run_with(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"whole $TOKEN\"\n      - printf 's3cr3t-'; sleep 0.2; printf 't0ken-value end\\n'\n      - echo s3cr3t-t0ken-value >&2\n",
            options,
        )
        .await;
        let log = run.log();
        assert!(!log.contains("s3cr3t-t0ken-value"), "{log}");
        // The command text holds the two halves; the output must not.
        assert!(
            run.output()
                .iter()
                .all(|l| !l.contains("t0ken-value") && !l.contains("s3cr3t-")),
            "{log}"
        );
        assert!(run.output().contains(&"whole ***".to_string()), "{log}");
        assert!(
            run.output().iter().filter(|l| l.contains("***")).count() >= 3,
            "{log}"
        );
    }
);

on_every_executor!(parameter_store_values_are_masked, async |h: Harness| {
    let mut options = h.options();
    options.secret_env = vec![("DB_PASSWORD".into(), "hunter2-long".into())];
    let run = h
        .run_with("version: 0.2\nenv:\n  parameter-store:\n    DB_PASSWORD: /prod/db/password\nphases:\n  build:\n    commands: ['echo \"pw=$DB_PASSWORD\"']\n", options)
        .await;
    assert!(
        run.output().contains(&"pw=***".to_string()),
        "{}",
        run.log()
    );
});

on_every_executor!(
    lines_arrive_while_the_command_still_runs,
    async |h: Harness| {
        // The command prints, then waits for a file the observer creates when
        // it sees the line: the build only finishes if the line came live.
        let flag = h.path().join("seen");
        let collector = Arc::new(Collector::default());
        let flag_for_hook = flag.clone();
        *collector.1.lock().unwrap() = Some(Box::new(move |line: &str| {
            if line == "ready" || line == "partial" {
                let _ = std::fs::write(&flag_for_hook, line);
            }
        }));
        let spec = format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ready; i=0; while [ ! -f {0} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -f {0}\n      - rm {0}; printf partial; i=0; while [ ! -f {0} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -f {0} && echo ' done'\n",
            flag.display()
        );
        let run = h
            .run_observed(&spec, h.options(), collector, StopSignal::never())
            .await;
        assert_eq!(
            run.status(),
            gantry_build::PhaseStatus::Succeeded,
            "a line did not arrive live:\n{}",
            run.log()
        );
    }
);

on_every_executor!(phases_are_marked_in_order, async |h: Harness| {
    let run = h
        .run("version: 0.2\nphases:\n  build:\n    commands: [echo in-build]\n")
        .await;
    let mut order = Vec::new();
    for (_, _, event) in &run.events {
        match event {
            BuildEvent::PhaseStarted(p) => order.push(format!("start {}", p.as_str())),
            BuildEvent::PhaseFinished { phase, .. } => {
                order.push(format!("end {}", phase.as_str()))
            }
            BuildEvent::Line(l) if l == "in-build" => order.push("line".into()),
            _ => {}
        }
    }
    let build_start = order.iter().position(|e| e == "start BUILD").unwrap();
    let line = order.iter().position(|e| e == "line").unwrap();
    let build_end = order.iter().position(|e| e == "end BUILD").unwrap();
    assert!(build_start < line && line < build_end, "{order:?}");
    assert!(run.lines().contains(&format!(
        "[Container] Entering phase {}",
        PhaseType::Build.as_str()
    )));
});
