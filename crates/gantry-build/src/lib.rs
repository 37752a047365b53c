/*!
Gantry's build runner: takes a parsed buildspec and runs it exactly as
CodeBuild does — one shell session per phase, `on-failure`, `finally`,
POST_BUILD after a failed BUILD, exported variables, timeouts, artifacts,
reports and batch builds — on the host, in a bubblewrap sandbox or in a
Docker container, with every secret masked in the live log.

Design notes for the runner are in `src/runner/DESIGN.md`; the rules users
see are in `docs/build.md`.
*/
#![deny(missing_docs)]

pub mod artifacts;
mod batch;
pub mod executor;
mod log;
pub mod mask;
mod model;
mod options;
pub mod reports;
mod runner;
mod script;

pub use batch::{BatchPhase, BatchResult, BuildGroup, BuildSummary, run_batch};
pub use log::{BuildEvent, NullObserver, Observer};
pub use model::*;
pub use options::{BuildOptions, StopHandle, StopReason, StopSignal};
pub use runner::{BuildError, run_build};
