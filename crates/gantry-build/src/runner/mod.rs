//! Runs one build: the phase graph, the environment, timeouts, artifacts
//! and reports. Batch builds (`batch.rs`) run several of these.
//!
//! The phase graph (FORMATS-AWS.md §1.7, and `docs/build.md` for the
//! choices made where AWS is silent):
//!
//! - INSTALL → PRE_BUILD → BUILD → POST_BUILD → UPLOAD_ARTIFACTS → FINALIZING.
//! - Without `on-failure`: an INSTALL or PRE_BUILD failure skips to
//!   FINALIZING; a BUILD failure still runs POST_BUILD (with
//!   `CODEBUILD_BUILD_SUCCEEDING=0`) and UPLOAD_ARTIFACTS; a POST_BUILD
//!   failure still runs UPLOAD_ARTIFACTS.
//! - `on-failure: ABORT` goes straight to FINALIZING; `CONTINUE` runs the next
//!   phase; `RETRY...` re-runs the phase from the state it started with, and
//!   once the retries are spent the default graph applies. Any failure makes
//!   the build FAILED.
//! - A timeout or a stop kills every process of the build at once and goes
//!   to FINALIZING.

mod env;
mod phase;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gantry_spec::buildspec::{Buildspec, OnFailure, Phase, Shell, Version};

use crate::executor::{Environment, EnvironmentConfig, ExecError, ShellKind};
use crate::log::{BuildEvent, LogPump, Observer};
use crate::mask::SecretMasker;
use crate::model::{
    BuildPhase, BuildResult, ExportedVariable, PhaseContext, PhaseStatus, PhaseType,
};
use crate::options::{BuildOptions, StopSignal};
use crate::script::LOG_FIFO;

pub(crate) use phase::ShellState;

/// Problems found before anything runs (the CLI exits 2 for these).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The options or the buildspec cannot be run as given.
    #[error("{0}")]
    Invalid(String),
    /// Setting up the build's private files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Everything a running build shares between its phases.
pub(crate) struct BuildContext<'a> {
    pub spec: &'a Buildspec,
    pub options: &'a BuildOptions,
    pub environment: &'a dyn Environment,
    pub pump: &'a LogPump,
    pub masker: Arc<SecretMasker>,
    pub observer: Arc<dyn Observer>,
    pub task: Option<Arc<str>>,
    pub control_dir: PathBuf,
    pub shell: ShellKind,
    pub deadline: Instant,
    pub stop: StopSignal,
    /// Counts phase attempts, so each gets files of its own.
    pub attempts: std::sync::atomic::AtomicUsize,
}

impl BuildContext<'_> {
    /// Writes a runner message into the log, after everything the build's
    /// processes wrote before it.
    pub async fn say(&self, text: &str) {
        self.pump.drain().await;
        let masked = self.masker.mask_all(text.as_bytes());
        for line in String::from_utf8_lossy(&masked).lines() {
            self.emit(BuildEvent::Line(line.to_string()));
        }
    }

    pub fn emit(&self, event: BuildEvent) {
        self.observer.on_event(self.task.as_deref(), &event);
    }

    pub fn log_fifo(&self) -> PathBuf {
        self.control_dir.join(LOG_FIFO)
    }
}

/// Runs a buildspec that has no `batch` section (or one task of a batch).
pub async fn run_build(
    spec: &Buildspec,
    options: &BuildOptions,
    observer: Arc<dyn Observer>,
    stop: StopSignal,
) -> Result<BuildResult, BuildError> {
    let started = Instant::now();
    let start_time = epoch_seconds();
    let secrets = env::secret_values(spec, options)?;
    let masker = Arc::new(SecretMasker::new(secrets.iter().map(|s| s.as_bytes())));
    let task: Option<Arc<str>> = options.batch_identifier.as_deref().map(Arc::from);
    let source_dir = std::fs::canonicalize(&options.source_dir).map_err(|e| BuildError::Io {
        context: format!("source directory {}", options.source_dir.display()),
        source: e,
    })?;
    let build_id = options
        .build_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", options.project_name, random_uuid()));
    // Not the build id: two runs of one build (a job an agent lost and
    // another took) may run on one host, and stopping one must not kill
    // the other's processes.
    let run_id = random_uuid();

    let mut phases = vec![
        instant_phase(PhaseType::Submitted, start_time),
        instant_phase(PhaseType::Queued, start_time),
    ];

    // PROVISIONING: the control directory, the log, the executor's environment.
    let provisioning = PhaseClock::start();
    let executor = options.executor.build();
    let control = tempfile::Builder::new()
        .prefix("gantry-build-")
        .tempdir_in(executor.control_dir_parent())
        .map_err(|e| BuildError::Io {
            context: "creating the build's control directory".into(),
            source: e,
        })?;
    let control_dir = control.path().to_path_buf();
    prepare_control_dir(&control_dir)?;
    let pump = LogPump::start(
        &control_dir.join(LOG_FIFO),
        masker.clone(),
        task.clone(),
        observer.clone(),
    )
    .map_err(|e| BuildError::Io {
        context: "opening the build's log pipe".into(),
        source: e,
    })?;
    let env_config = EnvironmentConfig {
        source_dir: source_dir.clone(),
        control_dir: control_dir.clone(),
        image: options.image.clone(),
        network: options.network,
        pull: options.pull,
        run_id: run_id.clone(),
    };
    observer.on_event(
        task.as_deref(),
        &BuildEvent::PhaseStarted(PhaseType::Provisioning),
    );
    let environment = match executor.start(&env_config).await {
        Ok(environment) => environment,
        Err(error) => {
            let message = error.to_string();
            observer.on_event(
                task.as_deref(),
                &BuildEvent::Line(format!("[Container] {message}")),
            );
            phases.push(provisioning.finish(
                PhaseType::Provisioning,
                PhaseStatus::Failed,
                Some(fault_context(&message)),
            ));
            pump.stop().await;
            return Ok(finished(
                spec,
                options,
                build_id,
                start_time,
                phases,
                PhaseStatus::Fault,
                None,
                &[],
                None,
            ));
        }
    };
    phases.push(provisioning.finish(PhaseType::Provisioning, PhaseStatus::Succeeded, None));
    observer.on_event(
        task.as_deref(),
        &phase_finished(
            PhaseType::Provisioning,
            PhaseStatus::Succeeded,
            provisioning.elapsed(),
        ),
    );
    let shell = match spec.env.shell.as_ref().map(|s| s.value) {
        Some(Shell::Bash) => ShellKind::Bash,
        Some(Shell::Sh) => ShellKind::Sh,
        None => options.default_shell,
    };
    let ctx = BuildContext {
        spec,
        options,
        environment: environment.as_ref(),
        pump: &pump,
        masker: masker.clone(),
        observer: observer.clone(),
        task: task.clone(),
        control_dir: control_dir.clone(),
        shell,
        deadline: started + options.timeout,
        stop,
        attempts: Default::default(),
    };

    // DOWNLOAD_SOURCE: the source is already on disk; learn its git revision.
    let download = PhaseClock::start();
    ctx.emit(BuildEvent::PhaseStarted(PhaseType::DownloadSource));
    let git = env::GitInfo::read(&source_dir).await;
    phases.push(download.finish(PhaseType::DownloadSource, PhaseStatus::Succeeded, None));
    ctx.emit(phase_finished(
        PhaseType::DownloadSource,
        PhaseStatus::Succeeded,
        download.elapsed(),
    ));

    let initial_env = env::compose(
        &ctx,
        &environment.base_env(),
        &source_dir,
        &build_id,
        &run_id,
        start_time,
        &git,
    );
    let mut state = ShellState {
        env: initial_env,
        cwd: source_dir.clone(),
    };

    let (outcome, ran_build) = run_phases(&ctx, &mut state, &mut phases).await;

    let mut build_status = outcome.status();
    let mut artifacts = None;
    let mut secondary = Vec::new();
    let mut reports = Vec::new();
    if outcome.uploads() {
        let clock = PhaseClock::start();
        ctx.emit(BuildEvent::PhaseStarted(PhaseType::UploadArtifacts));
        ctx.say("[Container] Entering phase UPLOAD_ARTIFACTS").await;
        let upload = upload::upload(&ctx, &state, &source_dir).await;
        reports = upload.reports;
        artifacts = upload.primary;
        secondary = upload.secondary;
        let status = if upload.error.is_some() {
            PhaseStatus::Failed
        } else {
            PhaseStatus::Succeeded
        };
        if let Some(message) = &upload.error {
            ctx.say(&format!(
                "[Container] Phase context status code: CLIENT_ERROR Message: {message}"
            ))
            .await;
            build_status = PhaseStatus::Failed;
        }
        ctx.say(&format!(
            "[Container] Phase complete: UPLOAD_ARTIFACTS State: {}",
            status.as_str()
        ))
        .await;
        let context = upload.error.map(|m| PhaseContext {
            status_code: "CLIENT_ERROR".into(),
            message: m,
        });
        let phase = clock.finish(PhaseType::UploadArtifacts, status, context);
        ctx.emit(phase_finished(
            PhaseType::UploadArtifacts,
            status,
            clock.elapsed(),
        ));
        phases.push(phase);
    } else if ran_build && !matches!(outcome, Outcome::TimedOut | Outcome::Stopped) {
        // A failed build keeps its test reports: they say why it failed.
        reports = upload::reports(&ctx, &source_dir).await;
    }

    // FINALIZING: nothing the build started outlives it.
    let finalizing = PhaseClock::start();
    ctx.emit(BuildEvent::PhaseStarted(PhaseType::Finalizing));
    environment.kill_all().await;
    environment.close().await;
    let exported = exported_variables(spec, &state);
    ctx.say(&format!(
        "[Container] Phase complete: FINALIZING State: SUCCEEDED\n[Container] Build {}",
        build_status.as_str()
    ))
    .await;
    drop(ctx);
    pump.stop().await;
    phases.push(finalizing.finish(PhaseType::Finalizing, PhaseStatus::Succeeded, None));
    observer.on_event(
        task.as_deref(),
        &phase_finished(
            PhaseType::Finalizing,
            PhaseStatus::Succeeded,
            finalizing.elapsed(),
        ),
    );
    phases.push(BuildPhase {
        phase_type: PhaseType::Completed,
        phase_status: None,
        start_time: epoch_seconds(),
        end_time: None,
        duration_in_seconds: None,
        contexts: Vec::new(),
    });
    let mut result = finished(
        spec,
        options,
        build_id,
        start_time,
        phases,
        build_status,
        git.commit,
        &exported,
        artifacts,
    );
    result.secondary_artifacts = secondary;
    result.reports = reports;
    Ok(result)
}

/// How the four command phases ended, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    /// Failed, but the default graph (or CONTINUE) still uploads artifacts.
    FailedUploading,
    /// Failed in a way that skips UPLOAD_ARTIFACTS.
    FailedSkipping,
    TimedOut,
    Stopped,
    Fault,
}

impl Outcome {
    fn status(self) -> PhaseStatus {
        match self {
            Outcome::Succeeded => PhaseStatus::Succeeded,
            Outcome::FailedUploading | Outcome::FailedSkipping => PhaseStatus::Failed,
            Outcome::TimedOut => PhaseStatus::TimedOut,
            Outcome::Stopped => PhaseStatus::Stopped,
            Outcome::Fault => PhaseStatus::Fault,
        }
    }

    fn uploads(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::FailedUploading)
    }
}

/// Runs INSTALL..POST_BUILD along the phase graph. Returns the outcome and
/// whether BUILD was reached.
async fn run_phases(
    ctx: &BuildContext<'_>,
    state: &mut ShellState,
    phases: &mut Vec<BuildPhase>,
) -> (Outcome, bool) {
    let spec = &ctx.spec.phases;
    let order: [(PhaseType, Option<&Phase>); 4] = [
        (PhaseType::Install, spec.install.as_ref()),
        (PhaseType::PreBuild, spec.pre_build.as_ref()),
        (PhaseType::Build, spec.build.as_ref()),
        (PhaseType::PostBuild, spec.post_build.as_ref()),
    ];
    let mut failed = false;
    let mut ran_build = false;
    let read_after_phases = state_read_after_phases(ctx.spec);
    for (index, (phase_type, phase)) in order.into_iter().enumerate() {
        ran_build |= phase_type == PhaseType::Build;
        let clock = PhaseClock::start();
        ctx.emit(BuildEvent::PhaseStarted(phase_type));
        let keep_state = read_after_phases || order[index + 1..].iter().any(|(_, p)| p.is_some());
        let result = match phase {
            Some(phase) => phase::run(ctx, phase_type, phase, state, !failed, keep_state).await,
            None => phase::PhaseResult {
                status: PhaseStatus::Succeeded,
                context: None,
            },
        };
        ctx.emit(phase_finished(phase_type, result.status, clock.elapsed()));
        phases.push(clock.finish(phase_type, result.status, result.context));
        match result.status {
            PhaseStatus::Succeeded | PhaseStatus::InProgress => {}
            PhaseStatus::TimedOut => return (Outcome::TimedOut, ran_build),
            PhaseStatus::Stopped => return (Outcome::Stopped, ran_build),
            PhaseStatus::Fault => return (Outcome::Fault, ran_build),
            PhaseStatus::Failed => {
                failed = true;
                match phase.and_then(|p| p.on_failure.as_ref()).map(|o| &o.value) {
                    Some(OnFailure::Abort) => return (Outcome::FailedSkipping, ran_build),
                    Some(OnFailure::Continue) => {}
                    // Retries spent, or no on-failure: the default graph.
                    Some(OnFailure::Retry { .. }) | None => {
                        if matches!(phase_type, PhaseType::Install | PhaseType::PreBuild) {
                            return (Outcome::FailedSkipping, ran_build);
                        }
                    }
                }
            }
        }
    }
    (
        if failed {
            Outcome::FailedUploading
        } else {
            Outcome::Succeeded
        },
        ran_build,
    )
}

/// Whether anything after the last phase reads the shell's final state:
/// exported variables, or an artifact `name` (evaluated in the final
/// environment).
fn state_read_after_phases(spec: &Buildspec) -> bool {
    let named = |a: &gantry_spec::buildspec::Artifacts| a.name.is_some();
    !spec.env.exported_variables.is_empty()
        || spec
            .artifacts
            .as_ref()
            .is_some_and(|a| named(a) || a.secondary.iter().any(|s| named(&s.artifacts)))
}

fn exported_variables(spec: &Buildspec, state: &ShellState) -> Vec<ExportedVariable> {
    spec.env
        .exported_variables
        .iter()
        .map(|name| ExportedVariable {
            name: name.value.clone(),
            value: state.get(&name.value).unwrap_or_default().to_string(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn finished(
    spec: &Buildspec,
    options: &BuildOptions,
    id: String,
    start_time: f64,
    phases: Vec<BuildPhase>,
    status: PhaseStatus,
    commit: Option<String>,
    exported: &[ExportedVariable],
    artifacts: Option<crate::model::ArtifactResult>,
) -> BuildResult {
    let _ = spec;
    let current_phase = phases
        .last()
        .map(|p| p.phase_type)
        .unwrap_or(PhaseType::Submitted);
    BuildResult {
        arn: build_arn(options, &id),
        id,
        build_number: options.build_number,
        project_name: options.project_name.clone(),
        start_time,
        end_time: epoch_seconds(),
        current_phase,
        build_status: status,
        build_complete: true,
        resolved_source_version: commit,
        initiator: options.initiator.clone(),
        timeout_in_minutes: options.timeout.as_secs().div_ceil(60),
        phases,
        exported_environment_variables: exported.to_vec(),
        artifacts,
        secondary_artifacts: Vec::new(),
        reports: Vec::new(),
        batch_build_identifier: options.batch_identifier.clone(),
    }
}

/// Creates the log FIFO and makes the directory reachable by `run-as` users
/// (they may traverse it, not list it; its name is random).
fn prepare_control_dir(dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |context: &str, source| BuildError::Io {
        context: context.to_string(),
        source,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| io("making the control directory reachable", e))?;
    let fifo = dir.join(LOG_FIFO);
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
        .map_err(|_| io("log pipe path", std::io::Error::other("NUL in path")))?;
    // SAFETY: `path` is a valid NUL-terminated string.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o666) } != 0 {
        return Err(io("creating the log pipe", std::io::Error::last_os_error()));
    }
    // mkfifo's mode is filtered by the umask; run-as users must write to it.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| io("opening the log pipe to run-as users", e))?;
    Ok(())
}

fn fault_context(message: &str) -> PhaseContext {
    PhaseContext {
        status_code: "CLIENT_ERROR".into(),
        message: message.to_string(),
    }
}

fn phase_finished(phase: PhaseType, status: PhaseStatus, duration: Duration) -> BuildEvent {
    BuildEvent::PhaseFinished {
        phase,
        status,
        duration,
    }
}

fn instant_phase(phase_type: PhaseType, at: f64) -> BuildPhase {
    BuildPhase {
        phase_type,
        phase_status: Some(PhaseStatus::Succeeded),
        start_time: at,
        end_time: Some(at),
        duration_in_seconds: Some(0),
        contexts: Vec::new(),
    }
}

/// Measures one phase.
pub(crate) struct PhaseClock {
    started: Instant,
    start_time: f64,
}

impl PhaseClock {
    pub fn start() -> PhaseClock {
        PhaseClock {
            started: Instant::now(),
            start_time: epoch_seconds(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(
        &self,
        phase_type: PhaseType,
        status: PhaseStatus,
        context: Option<PhaseContext>,
    ) -> BuildPhase {
        let elapsed = self.started.elapsed();
        BuildPhase {
            phase_type,
            phase_status: Some(status),
            start_time: self.start_time,
            end_time: Some(self.start_time + elapsed.as_secs_f64()),
            duration_in_seconds: Some(elapsed.as_secs()),
            contexts: context.into_iter().collect(),
        }
    }
}

pub(crate) fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The build's ARN: the caller's, or a local one.
pub(crate) fn build_arn(options: &BuildOptions, id: &str) -> String {
    options
        .build_arn
        .clone()
        .unwrap_or_else(|| format!("arn:aws:codebuild:local:000000000000:build/{id}"))
}

/// A random (version 4) UUID from the kernel's generator.
pub(crate) fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is 16 writable bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 16 {
        // getrandom cannot fail for 16 bytes once the pool is ready; fall
        // back to the clock and pid rather than abort a build over an id.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether the buildspec runs every command in its own shell.
pub(crate) fn isolates_commands(spec: &Buildspec) -> bool {
    spec.version.value == Version::V0_1
}

impl From<ExecError> for PhaseContext {
    fn from(error: ExecError) -> PhaseContext {
        let status_code = match error {
            ExecError::User { .. } => "CLIENT_ERROR",
            _ => "FAULT",
        };
        PhaseContext {
            status_code: status_code.into(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::state_read_after_phases;

    fn read_after(yaml: &str) -> bool {
        let text = format!("version: 0.2\nphases:\n  build:\n    commands:\n      - true\n{yaml}");
        state_read_after_phases(&gantry_spec::buildspec::parse(&text).expect("buildspec"))
    }

    #[test]
    fn the_final_state_is_wanted_by_exported_variables_and_artifact_names_only() {
        assert!(!read_after(""));
        assert!(!read_after("artifacts:\n  files:\n    - '**/*'\n"));
        assert!(read_after("env:\n  exported-variables:\n    - X\n"));
        assert!(read_after(
            "artifacts:\n  files:\n    - a\n  name: $(date +%F)\n"
        ));
        assert!(read_after(
            "artifacts:\n  files:\n    - a\n  secondary-artifacts:\n    two:\n      files:\n        - b\n      name: n-$X\n"
        ));
    }
}
