//! The `sandbox` executor: one bubblewrap sandbox per build, in which the
//! host is read-only and only the source directory, the control directory
//! and a private `/tmp` are writable, with its own PID namespace (and, with
//! `--network none`, no network).
//!
//! One sandbox lives for the whole build, so a background process started
//! in `install` is still there in `build`, as in CodeBuild's container. A
//! small driver script inside it runs each phase script on request: the
//! runner writes `USER SHELL SCRIPT` lines into a request FIFO and reads
//! `SCRIPT STATUS` lines back. Killing bubblewrap ends the PID namespace,
//! and with it every process of the build.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, watch};

use super::process::{self, lookup_account};
use super::{Environment, EnvironmentConfig, ExecError, Executor, ShellInvocation};
use crate::script::{LOG_FIFO, quote};

/// Runs builds inside bubblewrap.
#[derive(Debug, Default)]
pub struct SandboxExecutor;

const REQUESTS: &str = "sandbox-requests.fifo";
const RESPONSES: &str = "sandbox-responses.fifo";
const DRIVER: &str = "sandbox-driver.sh";

fn unavailable(reason: impl Into<String>) -> ExecError {
    ExecError::Unavailable {
        executor: "sandbox",
        reason: reason.into(),
    }
}

#[async_trait]
impl Executor for SandboxExecutor {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn control_dir_parent(&self) -> std::path::PathBuf {
        super::runtime_dir()
    }

    async fn start(&self, config: &EnvironmentConfig) -> Result<Box<dyn Environment>, ExecError> {
        let bwrap = process::which("bwrap").ok_or_else(|| {
            unavailable(
                "bubblewrap (`bwrap`) is not installed; on Debian: apt-get install bubblewrap",
            )
        })?;
        let shell = process::which("sh").ok_or_else(|| unavailable("no `sh` on this machine"))?;
        let control = &config.control_dir;
        for fifo in [REQUESTS, RESPONSES] {
            make_fifo(&control.join(fifo))?;
        }
        let driver = control.join(DRIVER);
        std::fs::write(&driver, driver_script(control))
            .map_err(|e| ExecError::io("writing the sandbox driver", e))?;
        // Open our ends read-write first, so neither side blocks opening.
        let requests = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(control.join(REQUESTS))
            .map_err(|e| ExecError::io("opening the sandbox request pipe", e))?;
        let responses = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(control.join(RESPONSES))
            .map_err(|e| ExecError::io("opening the sandbox response pipe", e))?;

        let mut responses = BufReader::new(responses);
        let mut attempt = 1;
        let (child, pid) = loop {
            match spawn_sandbox(&bwrap, &shell, &driver, config, &mut responses).await? {
                Started::Ready(child, pid) => break (child, pid),
                Started::Failed(message)
                    if is_transient_mount_race(&message) && attempt < START_ATTEMPTS =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
                    attempt += 1;
                }
                Started::Failed(message) => {
                    return Err(unavailable(format!(
                        "bubblewrap could not start the sandbox: {message} \
                         (the sandbox needs unprivileged user namespaces or root)"
                    )));
                }
            }
        };
        let (exited_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let (status, message) = child.wait().await;
            let code = status.map(process::exit_code).unwrap_or(-1);
            let _ = exited_tx.send(Some((code, message)));
        });
        Ok(Box::new(SandboxEnvironment {
            config: config.clone(),
            shell,
            pid,
            channel: Mutex::new(Channel {
                requests,
                responses,
            }),
            exited,
        }))
    }
}

/// How many times a sandbox start that lost a mount race is tried.
const START_ATTEMPTS: u32 = 5;

/// The line the driver writes once it runs inside the sandbox.
const READY: &str = "gantry-sandbox-ready";

enum Started {
    /// The driver is running; the child and its pid (and process group).
    Ready(Box<SandboxChild>, i32),
    /// bubblewrap exited before the driver ran; what it printed.
    Failed(String),
}

/// bubblewrap, with its own error output kept apart from the build's log.
struct SandboxChild {
    child: tokio::process::Child,
    stderr: Option<tokio::process::ChildStderr>,
}

impl SandboxChild {
    /// Waits for bubblewrap to exit; returns its status and what it
    /// printed meanwhile (its own errors only: the driver sends its stderr
    /// to the build's log).
    async fn wait(mut self) -> (std::io::Result<std::process::ExitStatus>, String) {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        }
        (self.child.wait().await, text.trim().to_string())
    }
}

/// Starts bubblewrap with the driver and waits until the driver says it
/// runs, or bubblewrap exits first.
///
/// bubblewrap's stdout is the build's log; its stderr is a pipe read here,
/// so that a start-up failure can be told apart and retried without
/// writing bubblewrap's complaint into the build's log. The driver moves
/// its own stderr to the log as its first act.
async fn spawn_sandbox(
    bwrap: &Path,
    shell: &Path,
    driver: &Path,
    config: &EnvironmentConfig,
    responses: &mut BufReader<pipe::Receiver>,
) -> Result<Started, ExecError> {
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(config.control_dir.join(LOG_FIFO))
        .map_err(|e| ExecError::io("opening the build's log pipe", e))?;
    let mut command = tokio::process::Command::new(bwrap);
    command.args(bwrap_args(config)).arg(shell).arg(driver);
    command
        .env_clear()
        .env(super::RUN_ID_VAR, &config.run_id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| ExecError::io("starting bwrap", e))?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let mut stderr = child.stderr.take();
    let mut line = String::new();
    loop {
        line.clear();
        tokio::select! {
            read = responses.read_line(&mut line) => {
                read.map_err(|e| ExecError::io("reading the sandbox's answer", e))?;
                if line.trim_end() == READY {
                    return Ok(Started::Ready(Box::new(SandboxChild { child, stderr }), pid));
                }
            }
            status = child.wait() => {
                let mut text = String::new();
                if let Some(stderr) = stderr.as_mut() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(stderr, &mut text).await;
                }
                let status = status.map(process::exit_code).unwrap_or(-1);
                let text = text.trim();
                return Ok(Started::Failed(if text.is_empty() {
                    format!("bubblewrap exited with status {status}")
                } else {
                    text.to_string()
                }));
            }
        }
    }
}

/// bubblewrap binds `/` recursively and then remounts every submount
/// read-only; a mount that appears or vanishes meanwhile (Docker creating
/// or removing a container's overlay, for one) fails that remount with
/// EINVAL or ENOENT. Starting again succeeds once the mount table settles.
fn is_transient_mount_race(message: &str) -> bool {
    message.contains("Can't bind mount")
        || message.contains("Unable to apply mount flags")
        || message.contains("Unable to remount")
}

struct Channel {
    requests: pipe::Sender,
    responses: BufReader<pipe::Receiver>,
}

struct SandboxEnvironment {
    config: EnvironmentConfig,
    shell: PathBuf,
    /// bubblewrap's pid (and process group).
    pid: i32,
    channel: Mutex<Channel>,
    /// bubblewrap's exit code and error output, once it has exited.
    exited: watch::Receiver<Option<(i32, String)>>,
}

fn make_fifo(path: &Path) -> Result<(), ExecError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| unavailable("control directory path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(ExecError::io(
            format!("creating {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn bwrap_args(config: &EnvironmentConfig) -> Vec<String> {
    let src = config.source_dir.to_string_lossy().into_owned();
    let control = config.control_dir.to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        &src,
        &src,
        "--bind",
        &control,
        &control,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--chdir",
        &src,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !config.network {
        args.push("--unshare-net".into());
    }
    args
}

/// The loop that runs inside the sandbox.
fn driver_script(control: &Path) -> String {
    let requests = quote(&control.join(REQUESTS).to_string_lossy());
    let responses = quote(&control.join(RESPONSES).to_string_lossy());
    format!(
        r#"exec 2>&1 3<{requests} 4>{responses}
printf '%s\n' {READY} >&4
while IFS=' ' read -r user shell script <&3; do
  if [ "$user" = - ]; then
    env -i "$shell" "$script" 3<&- 4>&-
  else
    env -i setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups "$shell" "$script" 3<&- 4>&-
  fi
  printf '%s %s\n' "$script" "$?" >&4
done
"#
    )
}

#[async_trait]
impl Environment for SandboxEnvironment {
    fn base_env(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }

    async fn resolve_owner(&self, user: Option<&str>) -> Result<Option<(u32, u32)>, ExecError> {
        Ok(match user {
            Some(name) => {
                let account = lookup_account(name)?;
                Some((account.uid, account.gid))
            }
            None => None,
        })
    }

    async fn run(&self, invocation: &ShellInvocation) -> Result<i32, ExecError> {
        let user = match &invocation.user {
            Some(name) => {
                let account = lookup_account(name)?;
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } != 0 && unsafe { libc::geteuid() } != account.uid {
                    return Err(ExecError::User {
                        user: name.clone(),
                        reason: "switching user needs gantry to run as root".into(),
                    });
                }
                account.uid.to_string()
            }
            None => "-".to_string(),
        };
        let shell = match invocation.shell {
            super::ShellKind::Sh => self.shell.clone(),
            super::ShellKind::Bash => {
                process::which("bash").ok_or_else(|| unavailable("`bash` is not installed"))?
            }
        };
        let script = invocation.script.to_string_lossy().into_owned();
        let mut channel = self.channel.lock().await;
        let request = format!("{user} {} {script}\n", shell.display());
        channel
            .requests
            .write_all(request.as_bytes())
            .await
            .map_err(|e| ExecError::io("sending a phase to the sandbox", e))?;
        let mut exited = self.exited.clone();
        let mut line = String::new();
        loop {
            line.clear();
            tokio::select! {
                read = channel.responses.read_line(&mut line) => {
                    read.map_err(|e| ExecError::io("reading the sandbox's answer", e))?;
                    let Some((done, code)) = line.trim_end().rsplit_once(' ') else { continue };
                    if done == script {
                        return Ok(code.parse().unwrap_or(-1));
                    }
                }
                status = exited.wait_for(|code| code.is_some()) => {
                    let (code, message) = status
                        .ok()
                        .and_then(|c| c.clone())
                        .unwrap_or((-1, String::new()));
                    return Err(unavailable(format!(
                        "bubblewrap exited with status {code}: {message}"
                    )));
                }
            }
        }
    }

    async fn kill_all(&self) {
        // SIGKILL to bubblewrap: its child, PID 1 of the sandbox, dies with
        // it (--die-with-parent), and the kernel kills the whole namespace.
        process::signal_group(self.pid, libc::SIGKILL);
        let mut exited = self.exited.clone();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            exited.wait_for(|c| c.is_some()),
        )
        .await;
        // Belt and braces: anything that still carries the build's id.
        process::kill_build(&[], &self.config.run_id, std::time::Duration::ZERO, None).await;
    }

    async fn close(&self) {
        self.kill_all().await;
    }
}

impl std::fmt::Debug for SandboxEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEnvironment")
            .field("pid", &self.pid)
            .finish()
    }
}
