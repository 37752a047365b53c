//! What a caller decides about one build, and how it stops one.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::executor::{ExecutorKind, ShellKind};

/// Everything about a build that is not in the buildspec.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The primary source directory (`CODEBUILD_SRC_DIR`).
    pub source_dir: PathBuf,
    /// Where commands run.
    pub executor: ExecutorKind,
    /// The image, for the docker executor (`CODEBUILD_BUILD_IMAGE`).
    pub image: Option<String>,
    /// Whether the build may use the network (`--network none` clears it).
    pub network: bool,
    /// Whether the docker executor pulls an image that is not present
    /// (`--pull missing`, the default) or fails at once (`--pull never`).
    pub pull: bool,
    /// `--env NAME=VALUE`: the StartBuild overrides, highest precedence.
    pub env: Vec<(String, String)>,
    /// `--secret-env NAME=VALUE`: like `env`, and every value is masked in
    /// the log. Also supplies `parameter-store` and `secrets-manager` values.
    pub secret_env: Vec<(String, String)>,
    /// Where to write artifact files (`None`: select them, write nothing).
    pub artifacts_dir: Option<PathBuf>,
    /// The build timeout.
    pub timeout: Duration,
    /// The project name (in `CODEBUILD_BUILD_ID` and the report group names).
    pub project_name: String,
    /// `CODEBUILD_BUILD_ID`, when whoever started the build already named
    /// it (the server's `project:uuid`, so the build sees the id the API
    /// reports); `None`: `<project>:<a new uuid>`.
    pub build_id: Option<String>,
    /// `CODEBUILD_BUILD_ARN`, likewise (the server's region and account);
    /// `None`: `arn:aws:codebuild:local:000000000000:build/<the id>`.
    pub build_arn: Option<String>,
    /// `CODEBUILD_BUILD_NUMBER`.
    pub build_number: u64,
    /// `CODEBUILD_INITIATOR`.
    pub initiator: String,
    /// The shell when the buildspec names none.
    pub default_shell: ShellKind,
    /// `CODEBUILD_BATCH_BUILD_IDENTIFIER`, for a batch task.
    pub batch_identifier: Option<String>,
    /// How many batch tasks run at once.
    pub max_parallel: usize,
}

impl BuildOptions {
    /// Options for a build of `source_dir` on `executor`, with CodeBuild's defaults.
    pub fn new(source_dir: impl Into<PathBuf>, executor: ExecutorKind) -> BuildOptions {
        BuildOptions {
            source_dir: source_dir.into(),
            executor,
            image: None,
            network: true,
            pull: true,
            env: Vec::new(),
            secret_env: Vec::new(),
            artifacts_dir: None,
            timeout: Duration::from_secs(60 * 60),
            project_name: "local".into(),
            build_id: None,
            build_arn: None,
            build_number: 1,
            initiator: "gantry-cli".into(),
            default_shell: ShellKind::Sh,
            batch_identifier: None,
            max_parallel: 4,
        }
    }
}

/// Why a build was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A person asked (Ctrl-C, the API).
    Requested,
}

/// Stops builds: every [`StopSignal`] made from it sees the stop.
#[derive(Debug, Clone)]
pub struct StopHandle(watch::Sender<Option<StopReason>>);

/// Lets a build notice that it was stopped.
#[derive(Debug, Clone)]
pub struct StopSignal(Option<watch::Receiver<Option<StopReason>>>);

impl StopHandle {
    /// A handle and the signal its builds watch.
    pub fn new() -> (StopHandle, StopSignal) {
        let (tx, rx) = watch::channel(None);
        (StopHandle(tx), StopSignal(Some(rx)))
    }

    /// Stops every build watching this handle.
    pub fn stop(&self, reason: StopReason) {
        self.0.send_replace(Some(reason));
    }

    /// A new signal watching this handle (for a batch's tasks).
    pub fn signal(&self) -> StopSignal {
        StopSignal(Some(self.0.subscribe()))
    }
}

impl StopSignal {
    /// A signal that never fires.
    pub fn never() -> StopSignal {
        StopSignal(None)
    }

    /// Whether a stop was requested already.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| rx.borrow().is_some())
    }

    /// Resolves when a stop is requested (never, for [`StopSignal::never`]
    /// or once every handle is gone without stopping).
    pub async fn stopped(&mut self) -> StopReason {
        if let Some(rx) = self.0.as_mut() {
            loop {
                if let Some(reason) = *rx.borrow_and_update() {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        std::future::pending().await
    }
}
