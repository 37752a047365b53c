//! One phase: its attempts (for `RETRY`), its shell script, and what the
//! script left behind (statuses, environment, working directory).

use std::path::PathBuf;

use gantry_spec::buildspec::{OnFailure, Phase};

use super::env::Vars;
use super::{BuildContext, isolates_commands};
use crate::executor::ShellInvocation;
use crate::model::{PhaseContext, PhaseStatus, PhaseType};
use crate::script::{self, ListKind, PhaseFiles, ScriptPlan};

/// What carries from one phase to the next: the exported environment and
/// the working directory.
#[derive(Debug, Clone)]
pub(crate) struct ShellState {
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl ShellState {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        let mut vars = Vars(std::mem::take(&mut self.env));
        vars.set(name, value.to_string());
        self.env = vars.0;
    }
}

/// How a phase ended.
pub(crate) struct PhaseResult {
    pub status: PhaseStatus,
    pub context: Option<PhaseContext>,
}

/// How one run of a script ended.
enum Attempt {
    Succeeded,
    /// A command failed: the message CodeBuild would give.
    Failed(String),
    TimedOut,
    Stopped,
    Fault(PhaseContext),
}

/// Runs `phase`, retrying as its `on-failure` allows. `succeeding` is the
/// value of `CODEBUILD_BUILD_SUCCEEDING` for it. `keep_state`: something
/// after this phase reads the environment and directory it leaves (a later
/// phase, exported variables, an artifact's `name`); when nothing does,
/// its shell skips dumping them (a `cat` process fewer per build).
pub(crate) async fn run(
    ctx: &BuildContext<'_>,
    phase_type: PhaseType,
    phase: &Phase,
    state: &mut ShellState,
    succeeding: bool,
    keep_state: bool,
) -> PhaseResult {
    let name = phase_type.as_str();
    ctx.say(&format!("[Container] Entering phase {name}")).await;
    let (retries, pattern) = match phase.on_failure.as_ref().map(|o| &o.value) {
        Some(OnFailure::Retry { count, pattern }) => {
            // The parser compiled the pattern already; a failure here means
            // a model built by hand, so retry on any error as `RETRY` does.
            let regex = pattern.as_deref().and_then(|p| regex::Regex::new(p).ok());
            (*count, regex)
        }
        _ => (0, None),
    };
    let user = phase
        .run_as
        .as_ref()
        .or(ctx.spec.run_as.as_ref())
        .map(|u| u.value.clone());
    let commands: Vec<String> = phase.commands.iter().map(|c| c.value.clone()).collect();
    let finally: Vec<String> = phase.finally.iter().map(|c| c.value.clone()).collect();
    let start = state.clone();
    for attempt in 0..=retries {
        let mut attempt_state = start.clone();
        attempt_state.set(
            "CODEBUILD_BUILD_SUCCEEDING",
            if succeeding { "1" } else { "0" },
        );
        let outcome = run_lists(
            ctx,
            &commands,
            &finally,
            &mut attempt_state,
            user.as_deref(),
            keep_state,
        )
        .await;
        *state = attempt_state;
        let result = match outcome {
            Attempt::Succeeded => PhaseResult {
                status: PhaseStatus::Succeeded,
                context: None,
            },
            Attempt::Failed(message) => {
                if attempt < retries && pattern.as_ref().is_none_or(|re| re.is_match(&message)) {
                    ctx.say(&format!(
                        "[Container] Phase {name} failed ({message}); retrying ({} of {retries})",
                        attempt + 1
                    ))
                    .await;
                    continue;
                }
                ctx.say(&format!("[Container] Phase context status code: COMMAND_EXECUTION_ERROR Message: {message}"))
                    .await;
                PhaseResult {
                    status: PhaseStatus::Failed,
                    context: Some(PhaseContext {
                        status_code: "COMMAND_EXECUTION_ERROR".into(),
                        message,
                    }),
                }
            }
            Attempt::TimedOut => PhaseResult {
                status: PhaseStatus::TimedOut,
                context: Some(PhaseContext {
                    status_code: "BUILD_TIMED_OUT".into(),
                    message: format!(
                        "Build has timed out. Build timeout: {} minutes",
                        ctx.options.timeout.as_secs_f64() / 60.0
                    ),
                }),
            },
            Attempt::Stopped => PhaseResult {
                status: PhaseStatus::Stopped,
                context: Some(PhaseContext {
                    status_code: "BUILD_STOPPED".into(),
                    message: "Build was stopped".into(),
                }),
            },
            Attempt::Fault(context) => {
                ctx.say(&format!(
                    "[Container] {}: {}",
                    context.status_code, context.message
                ))
                .await;
                let status = if context.status_code == "CLIENT_ERROR" {
                    PhaseStatus::Failed
                } else {
                    PhaseStatus::Fault
                };
                PhaseResult {
                    status,
                    context: Some(context),
                }
            }
        };
        if let Some(context) = result
            .context
            .as_ref()
            .filter(|_| result.status != PhaseStatus::Failed)
        {
            ctx.say(&format!("[Container] {}", context.message)).await;
        }
        ctx.say(&format!(
            "[Container] Phase complete: {name} State: {}",
            result.status.as_str()
        ))
        .await;
        return result;
    }
    unreachable!("the last attempt always returns")
}

/// Runs `commands` then `finally` as one phase attempt.
async fn run_lists(
    ctx: &BuildContext<'_>,
    commands: &[String],
    finally: &[String],
    state: &mut ShellState,
    user: Option<&str>,
    keep_state: bool,
) -> Attempt {
    // A shell that dies inside `commands` leaves `finally` to a second
    // script started from the state it dumped.
    let dump = keep_state || !finally.is_empty();
    let first = match run_script(ctx, commands, finally, state, user, true, dump).await {
        Ok(run) => run,
        Err(attempt) => return attempt,
    };
    let mut failure = first.failure(ListKind::Commands, commands);
    let shell_died_in_commands = failure.as_ref().is_some_and(|f| f.died);
    let finally_run = if shell_died_in_commands && !finally.is_empty() {
        // `exit` or `set -e` ended the shell inside `commands`: `finally`
        // still runs, in a new shell from the state the old one left.
        match run_script(ctx, &[], finally, state, user, true, keep_state).await {
            Ok(run) => run,
            Err(attempt) => return attempt,
        }
    } else {
        first
    };
    if let Some(f) = &failure {
        ctx.say(&format!(
            "[Container] Command did not exit successfully {} exit status {}",
            f.command, f.code
        ))
        .await;
    }
    let finally_failure = finally_run.failure(ListKind::Finally, finally);
    if let Some(f) = &finally_failure {
        ctx.say(&format!(
            "[Container] Command did not exit successfully {} exit status {}",
            f.command, f.code
        ))
        .await;
    }
    failure = failure.or(finally_failure);
    match failure {
        None => Attempt::Succeeded,
        Some(f) => Attempt::Failed(format!(
            "Error while executing command: {}. Reason: exit status {}",
            f.command, f.code
        )),
    }
}

/// What one script run recorded.
struct ScriptRun {
    statuses: Vec<script::CommandStatus>,
    exit_code: i32,
}

struct Failure {
    command: String,
    code: i32,
    /// The shell ended inside the command instead of recording its status.
    died: bool,
}

impl ScriptRun {
    /// The first failing command of `kind`, if any; a command with no
    /// status means the shell ended while running it.
    fn failure(&self, kind: ListKind, list: &[String]) -> Option<Failure> {
        let statuses: Vec<_> = self.statuses.iter().filter(|s| s.kind == kind).collect();
        if let Some(failed) = statuses.iter().find(|s| s.code != 0) {
            return Some(Failure {
                command: list.get(failed.index).cloned().unwrap_or_default(),
                code: failed.code,
                died: false,
            });
        }
        let ran = statuses.len();
        (ran < list.len()).then(|| Failure {
            command: list[ran].clone(),
            code: if self.exit_code == 0 {
                1
            } else {
                self.exit_code
            },
            died: true,
        })
    }
}

/// Writes and runs one script; updates `state` from what it left.
async fn run_script(
    ctx: &BuildContext<'_>,
    commands: &[String],
    finally: &[String],
    state: &mut ShellState,
    user: Option<&str>,
    announce: bool,
    dump: bool,
) -> Result<ScriptRun, Attempt> {
    let id = format!(
        "p{}",
        ctx.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let files = PhaseFiles::new(&ctx.control_dir, &id);
    let isolate = isolates_commands(ctx.spec);
    let plan = ScriptPlan {
        files: &files,
        log_fifo: &ctx.log_fifo(),
        cwd: &state.cwd,
        fallback_cwd: &ctx.options.source_dir,
        commands,
        finally,
        isolate_commands: isolate,
        announce,
        dump,
    };
    let (env_text, skipped) = script::render_env(&state.env);
    if !skipped.is_empty() {
        ctx.say(&format!(
            "[Container] Skipping variables a shell cannot export: {}",
            skipped.join(", ")
        ))
        .await;
    }
    let owner = ctx
        .environment
        .resolve_owner(user)
        .await
        .map_err(|e| Attempt::Fault(e.into()))?;
    write_files(&files, &script::render(&plan, &env_text), owner).map_err(|e| {
        Attempt::Fault(PhaseContext {
            status_code: "FAULT".into(),
            message: e.to_string(),
        })
    })?;
    let invocation = ShellInvocation {
        shell: ctx.shell,
        script: files.script.clone(),
        user: user.map(str::to_string),
    };
    let mut stop = ctx.stop.clone();
    let exit = tokio::select! {
        exit = ctx.environment.run(&invocation) => exit,
        _ = tokio::time::sleep_until(ctx.deadline.into()) => {
            ctx.environment.kill_all().await;
            return Err(Attempt::TimedOut);
        }
        _ = stop.stopped() => {
            ctx.environment.kill_all().await;
            return Err(Attempt::Stopped);
        }
    };
    let exit_code = exit.map_err(|e| Attempt::Fault(e.into()))?;
    let record = script::parse_record(&std::fs::read(&files.record).unwrap_or_default());
    if !isolate {
        if !record.environ.is_empty() {
            state.env = record.environ;
        }
        if let Some(cwd) = record.cwd {
            state.cwd = PathBuf::from(cwd);
        }
    }
    for file in files.all() {
        let _ = std::fs::remove_file(file);
    }
    Ok(ScriptRun {
        statuses: record.statuses,
        exit_code,
    })
}

/// Writes a script and its empty record: private to the user who runs it
/// (the script's exports may hold secrets).
fn write_files(files: &PhaseFiles, script: &str, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let contents: [(&std::path::Path, &[u8]); 2] =
        [(&files.script, script.as_bytes()), (&files.record, b"")];
    for (path, bytes) in contents {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(bytes)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Evaluates `expression` with the shell (as CodeBuild does for an
/// artifact `name`), in the build's final environment.
pub(crate) async fn evaluate(
    ctx: &BuildContext<'_>,
    state: &ShellState,
    expression: &str,
) -> Result<String, String> {
    let out = ctx.control_dir.join(format!(
        "eval{}.out",
        ctx.attempts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let escaped = expression.replace('\\', "\\\\").replace('"', "\\\"");
    let command = format!(
        "printf '%s' \"{escaped}\" >{}",
        script::quote(&out.to_string_lossy())
    );
    let mut scratch = state.clone();
    let run = run_script(
        ctx,
        std::slice::from_ref(&command),
        &[],
        &mut scratch,
        None,
        false,
        false,
    )
    .await
    .map_err(|_| format!("evaluating `{expression}` failed"))?;
    let value = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    match run.failure(ListKind::Commands, std::slice::from_ref(&command)) {
        None => Ok(value),
        Some(f) => Err(format!(
            "evaluating `{expression}` failed with exit status {}",
            f.code
        )),
    }
}
