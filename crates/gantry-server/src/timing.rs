//! Debug timing of the steps between a trigger and a build's first command.
//!
//! Each step on that path (the webhook's checks, storing the start, the
//! source's fetch, checkout and storing, the build's input and creation)
//! reports how long it took as a `DEBUG` event of target
//! [`TARGET`], with the execution it belongs to. Nothing is collected
//! unless a subscriber enables that target: `gantry bench pipeline
//! --steps` does, and prints the median of each step.

use std::time::{Duration, Instant};

/// The target of the timing events.
pub const TARGET: &str = "gantry_server::timing";

/// Reports that `step` of `execution` took the time since `started`.
pub(crate) fn step(execution: &str, step: &'static str, started: Instant) {
    took(execution, step, started.elapsed());
}

/// Reports that `step` of `execution` took `duration`.
pub(crate) fn took(execution: &str, step: &'static str, duration: Duration) {
    tracing::debug!(
        target: "gantry_server::timing",
        execution,
        step,
        micros = duration.as_micros() as u64,
    );
}
