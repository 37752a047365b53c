//! Running the `git` program: never through a shell, with a fixed
//! environment, a timeout that kills the whole process group, and stderr
//! captured (secrets scrubbed) into the error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, Result};

/// How much of git's stderr an error keeps (the end, where the reason is).
const STDERR_KEEP: usize = 2000;

/// Protocols git may use; `ext::` (runs a command) and anything else is off.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// The git program and the settings every invocation shares.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    pub(crate) program: PathBuf,
    pub(crate) timeout: Duration,
    /// Every git process started, for tests and metrics.
    pub(crate) started: Arc<AtomicU64>,
}

/// One invocation: arguments and extra environment.
pub(crate) struct Invocation {
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    /// Strings to scrub from stderr and from the command shown in errors.
    secrets: Vec<String>,
    /// The URL to show redacted in place of the real one.
    url: Option<(String, String)>,
}

impl Invocation {
    pub(crate) fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Invocation {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            secrets: Vec::new(),
            url: None,
        }
    }

    pub(crate) fn env(mut self, key: &'static str, value: impl Into<OsString>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// Appends an argument.
    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends the repository URL as an argument: shown redacted in errors,
    /// its password scrubbed from stderr.
    pub(crate) fn arg_url(mut self, url: &str) -> Self {
        if let Some(secret) = crate::input::url_secret(url) {
            self.secrets.push(secret.to_owned());
        }
        self.args.push(url.into());
        self.url = Some((url.to_owned(), crate::input::redact_url(url)));
        self
    }

    fn describe(&self) -> String {
        let mut shown: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        if let Some((url, redacted)) = &self.url {
            for arg in &mut shown {
                if arg == url {
                    arg.clone_from(redacted);
                }
            }
        }
        self.scrub(&shown.join(" "))
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// What a finished git process gave.
pub(crate) struct Finished {
    pub(crate) success: bool,
    pub(crate) stdout: Vec<u8>,
    /// stderr, scrubbed and cut to its end.
    pub(crate) stderr: String,
    status: String,
    command: String,
}

impl Finished {
    /// The failure as an error.
    pub(crate) fn into_error(self) -> Error {
        Error::GitFailed {
            command: self.command,
            status: self.status,
            stderr: self.stderr,
        }
    }
}

impl Git {
    /// Runs git and fails unless it exits 0; gives stdout.
    pub(crate) async fn run(&self, invocation: Invocation) -> Result<Vec<u8>> {
        let finished = self.run_status(invocation).await?;
        if finished.success {
            Ok(finished.stdout)
        } else {
            Err(finished.into_error())
        }
    }

    /// Runs git and gives how it finished, whatever its exit status.
    pub(crate) async fn run_status(&self, invocation: Invocation) -> Result<Finished> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&invocation.args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
            // Messages in English: a few are matched (e.g. a missing remote ref).
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout also kills the helpers
            // git starts (ssh, git-remote-https, upload-pack).
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &invocation.env {
            command.env(key, value);
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: self.program.clone(),
            source,
        })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(result) => result.map_err(|e| Error::io(&self.program, e))?,
            Err(_elapsed) => {
                // Dropping the wait killed git itself (kill_on_drop); its
                // helpers are in the same group.
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: killpg only sends a signal. The group id is our
                    // child's pid, still reserved because the child is not
                    // yet reaped.
                    unsafe {
                        libc::killpg(pid, libc::SIGKILL);
                    }
                }
                return Err(Error::Timeout {
                    command: invocation.describe(),
                    timeout: self.timeout,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = invocation.scrub(stderr.trim());
        let stderr = match stderr.char_indices().rev().nth(STDERR_KEEP) {
            Some((cut, _)) => format!("...{}", &stderr[cut..]),
            None => stderr,
        };
        Ok(Finished {
            success: output.status.success(),
            stdout: output.stdout,
            stderr,
            status: output.status.to_string(),
            command: invocation.describe(),
        })
    }
}
