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
