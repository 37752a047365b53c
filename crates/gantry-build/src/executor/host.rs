//! The `host` executor: phase scripts run as plain processes on this machine,
//! each in a process group of its own.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::process::{self, Account};
use super::{Environment, EnvironmentConfig, ExecError, Executor, ShellInvocation};
use crate::script::LOG_FIFO;

/// Runs builds directly on the host.
#[derive(Debug, Default)]
pub struct HostExecutor;

#[async_trait]
impl Executor for HostExecutor {
    fn name(&self) -> &'static str {
        "host"
    }

    fn control_dir_parent(&self) -> std::path::PathBuf {
        super::runtime_dir()
    }

    async fn start(&self, config: &EnvironmentConfig) -> Result<Box<dyn Environment>, ExecError> {
        Ok(Box::new(HostEnvironment {
            config: config.clone(),
            groups: Mutex::new(Vec::new()),
            started: process::PidMark::now(),
        }))
    }
}

struct HostEnvironment {
    config: EnvironmentConfig,
    /// Process groups of the phase shells started so far.
    groups: Mutex<Vec<i32>>,
    /// The PID counter before the first shell: the sweep for strays reads
    /// only processes created since.
    started: Option<process::PidMark>,
}

/// How long processes get between SIGTERM and SIGKILL when a build is stopped.
const KILL_GRACE: Duration = Duration::from_millis(500);

#[async_trait]
impl Environment for HostEnvironment {
    fn base_env(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }

    async fn resolve_owner(&self, user: Option<&str>) -> Result<Option<(u32, u32)>, ExecError> {
        Ok(match user {
            Some(name) => {
                let account = process::lookup_account(name)?;
                Some((account.uid, account.gid))
            }
            None => None,
        })
    }

    async fn run(&self, invocation: &ShellInvocation) -> Result<i32, ExecError> {
        let account = invocation
            .user
            .as_deref()
            .map(process::lookup_account)
            .transpose()?;
        let mut command = shell_command(invocation, &self.config, account.as_ref())?;
        command.process_group(0);
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(|e| ExecError::io(format!("starting {}", invocation.shell.program()), e))?;
        if let Some(pid) = child.id() {
            self.groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(pid as i32);
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ExecError::io("waiting for the phase shell", e))?;
        Ok(process::exit_code(status))
    }

    async fn kill_all(&self) {
        let groups = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        process::kill_build(&groups, &self.config.run_id, KILL_GRACE, self.started).await;
    }

    async fn close(&self) {}
}

/// The command that runs a phase script directly on this machine (used by
/// the host executor, and by the sandbox executor's driver script as a model).
pub(super) fn shell_command(
    invocation: &ShellInvocation,
    config: &EnvironmentConfig,
    account: Option<&Account>,
) -> Result<std::process::Command, ExecError> {
    let shell =
        process::which(invocation.shell.program()).ok_or_else(|| ExecError::Unavailable {
            executor: "host",
            reason: format!(
                "`{}` is not installed on this machine",
                invocation.shell.program()
            ),
        })?;
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(config.control_dir.join(LOG_FIFO))
        .map_err(|e| ExecError::io("opening the build's log pipe", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| ExecError::io("opening the build's log pipe", e))?;
    let mut command = std::process::Command::new(shell);
    command
        .arg(&invocation.script)
        .env_clear()
        .current_dir(&config.source_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    if let Some(account) = account {
        process::run_as(&mut command, account)?;
    }
    Ok(command)
}
