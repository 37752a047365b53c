//! Timeouts and stops: the status, and no process left behind.

use std::sync::Arc;
use std::time::Duration;

use gantry_build::{PhaseStatus, PhaseType, StopHandle, StopReason};

use crate::harness::{Collector, Harness};

/// A number no other test uses, to find this test's processes by command line.
fn marker() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    900_000 + (std::process::id() as u64 % 50_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Processes whose command line is `sleep <marker>`.
fn sleepers(marker: u64) -> Vec<i32> {
    let needle = format!("sleep\0{marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

async fn assert_no_sleepers(marker: u64) {
    // Killed processes may take a moment to be reaped by their parent.
    for _ in 0..100 {
        if sleepers(marker).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("processes left behind: {:?}", sleepers(marker));
}

fn leaky_commands(m: u64) -> String {
    // A background child, one that left the process group with setsid (on
    // the host; busybox has setsid too), and the foreground one.
    format!(
        "version: 0.2\nphases:\n  install:\n    commands:\n      - sleep {m} &\n  build:\n    commands:\n      - setsid sleep {m} &\n      - echo started; sleep {m}\n  post_build:\n    commands: [echo post-ran]\n"
    )
}

on_every_executor!(
    timeout_kills_everything_and_times_out,
    async |h: Harness| {
        let m = marker();
        let mut options = h.options();
        options.timeout = Duration::from_secs(2);
        let run = h.run_with(&leaky_commands(m), options).await;
        assert_eq!(run.status(), PhaseStatus::TimedOut, "{}", run.log());
        assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::TimedOut));
        assert_eq!(
            run.phase(PhaseType::PostBuild),
            None,
            "nothing runs after a timeout"
        );
        assert!(
            run.result.end_time - run.result.start_time < 30.0,
            "the build did not stop at its timeout"
        );
        assert_no_sleepers(m).await;
    }
);

on_every_executor!(stop_kills_everything_and_stops, async |h: Harness| {
    let m = marker();
    let (handle, signal) = StopHandle::new();
    let collector = Arc::new(Collector::default());
    let stopper = handle.clone();
    *collector.1.lock().unwrap() = Some(Box::new(move |line: &str| {
        if line == "started" {
            stopper.stop(StopReason::Requested);
        }
    }));
    let run = h
        .run_observed(&leaky_commands(m), h.options(), collector, signal)
        .await;
    assert_eq!(run.status(), PhaseStatus::Stopped, "{}", run.log());
    assert_eq!(run.phase(PhaseType::Build), Some(PhaseStatus::Stopped));
    assert_no_sleepers(m).await;
    drop(handle);
});

on_every_executor!(
    background_processes_live_until_the_build_ends,
    async |h: Harness| {
        let m = marker();
        let run = h
        .run(&format!(
            "version: 0.2\nphases:\n  install:\n    commands: ['sleep {m} &']\n  build:\n    commands: ['pgrep -f \"sleep {m}\" >/dev/null || ps | grep -v grep | grep -q \"sleep {m}\"']\n"
        ))
        .await;
        assert_eq!(
            run.phase(PhaseType::Build),
            Some(PhaseStatus::Succeeded),
            "the install-phase daemon was gone in build:\n{}",
            run.log()
        );
        assert_no_sleepers(m).await;
    }
);

on_every_executor!(
    stopping_one_run_of_a_build_spares_another_run_of_it,
    async |h: Harness| {
        // Two runs of one build (same CODEBUILD_BUILD_ID), as when an agent
        // lost a job's lease and another agent on the same host took it.
        // Stopping the first must not kill the second's processes, even
        // those that left its process group.
        let (m_first, m_second) = (marker(), marker());
        let second_h = Harness::new(h.kind);
        let mut options = h.options();
        options.build_id = Some("proj:one-build".into());
        // A caller's variable of the marker's name must not hide the first
        // run's strays from its stop.
        options.env = vec![("GANTRY_BUILD_RUN".into(), "not-the-run".into())];
        let mut second_options = second_h.options();
        second_options.build_id = options.build_id.clone();
        let first_stopped = second_h.path().join("first-stopped");
        let second_yaml = format!(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - setsid sleep {m_second} &\n      - echo second-started\n      - i=0; while [ ! -e first-stopped ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n      - pgrep -f \"sleep {m_second}\" >/dev/null || ps | grep -v grep | grep -q \"sleep {m_second}\"\n"
        );
        let second_started = Arc::new(tokio::sync::Notify::new());
        let second_collector = Arc::new(Collector::default());
        let notify = second_started.clone();
        *second_collector.1.lock().unwrap() = Some(Box::new(move |line: &str| {
            if line == "second-started" {
                notify.notify_one();
            }
        }));
        let second = second_h.run_observed(
            &second_yaml,
            second_options,
            second_collector,
            gantry_build::StopSignal::never(),
        );
        let first = async {
            second_started.notified().await;
            let (handle, signal) = StopHandle::new();
            let collector = Arc::new(Collector::default());
            let stopper = handle.clone();
            *collector.1.lock().unwrap() = Some(Box::new(move |line: &str| {
                if line == "started" {
                    stopper.stop(StopReason::Requested);
                }
            }));
            let run = h
                .run_observed(&leaky_commands(m_first), options, collector, signal)
                .await;
            assert_no_sleepers(m_first).await;
            std::fs::write(&first_stopped, "").expect("marker file");
            drop(handle);
            run
        };
        let (second, first) = tokio::join!(second, first);
        assert_eq!(first.status(), PhaseStatus::Stopped, "{}", first.log());
        assert_eq!(
            second.status(),
            PhaseStatus::Succeeded,
            "the second run's process was killed with the first:\n{}",
            second.log()
        );
        assert_no_sleepers(m_second).await;
    }
);
