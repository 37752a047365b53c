//! A `command` job on the agent: shell commands for a Step Functions task
//! (`arn:aws:states:::gantry:agent:runCommand`), run on this machine with
//! `sh -c`, one after the other, stopping at the first that exits non-zero.
//!
//! Each command runs in a process group of its own, so a timeout or a stop
//! kills everything it started, and so does its end: what a command leaves
//! running in its group is killed when it exits (a job leaves nothing
//! behind, and output pipes held open by a background process cannot keep
//! the job waiting). Output is streamed line by line as log items and the
//! last [`COMMAND_OUTPUT_TAIL`] bytes of each stream are kept for the result.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gantry_build::StopSignal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::protocol::{COMMAND_OUTPUT_TAIL, CommandOutcome, CommandPayload, LogItem};

/// The longest log line sent; a longer run without a newline is split.
const MAX_LINE: usize = 16 * 1024;

/// The last `cap` bytes of a stream.
struct Tail {
    bytes: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn new(cap: usize) -> Tail {
        Tail {
            bytes: Vec::new(),
            cap,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        // Trimmed in batches, so a chatty command does not move the buffer
        // on every read.
        if self.bytes.len() > 2 * self.cap {
            let cut = self.bytes.len() - self.cap;
            self.bytes.drain(..cut);
        }
    }

    /// The kept bytes as text: the last `cap` bytes, starting at a whole
    /// UTF-8 character, with invalid sequences replaced.
    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(self.cap);
        let mut kept = &self.bytes[start..];
        if start > 0 {
            // Skip continuation bytes of a character cut in half.
            while let Some((&b, rest)) = kept.split_first() {
                if b & 0b1100_0000 != 0b1000_0000 {
                    break;
                }
                kept = rest;
            }
        }
        String::from_utf8_lossy(kept).into_owned()
    }
}

/// Splits a stream into log lines.
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, data: &[u8], log: &mpsc::UnboundedSender<LogItem>) {
        for &b in data {
            if b == b'\n' {
                self.flush(log);
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    self.flush(log);
                }
            }
        }
    }

    fn flush(&mut self, log: &mpsc::UnboundedSender<LogItem>) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        let _ = log.send(LogItem::Line(line));
        self.partial.clear();
    }
}

/// Reads a stream to its end into the log and its tail.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    log: &mpsc::UnboundedSender<LogItem>,
    tail: &mut Tail,
) {
    let mut lines = Lines {
        partial: Vec::new(),
    };
    let mut buf = vec![0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.push(&buf[..n]);
                lines.feed(&buf[..n], log);
            }
        }
    }
    if !lines.partial.is_empty() {
        lines.flush(log);
    }
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok())
        && pgid > 1
    {
        // SAFETY: kill has no memory-safety preconditions; a group that is
        // already gone only makes it fail with ESRCH.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Where the commands run: the job's fresh directory, a directory under
/// it, or an absolute path on this machine (which must exist).
fn working_directory(p: &CommandPayload, work: &Path) -> Result<PathBuf, String> {
    let dir = match p.working_directory.as_deref() {
        None | Some("") => return Ok(work.to_path_buf()),
        Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(d) => {
            let dir = work.join(d);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating the working directory {}: {e}", dir.display()))?;
            dir
        }
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "the working directory {} is not a directory on this agent",
            dir.display()
        ))
    }
}

/// How one command ended.
enum Ended {
    Exited(i32),
    TimedOut,
    Stopped,
}

/// Runs the payload's commands; the outcome, or why they could not start.
pub(crate) async fn run(
    p: &CommandPayload,
    work: &Path,
    mut signal: StopSignal,
    log: mpsc::UnboundedSender<LogItem>,
) -> Result<CommandOutcome, String> {
    let dir = working_directory(p, work)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(p.timeout_seconds);
    let mut stdout_tail = Tail::new(COMMAND_OUTPUT_TAIL);
    let mut stderr_tail = Tail::new(COMMAND_OUTPUT_TAIL);
    let count = p.commands.len();
    let mut outcome = CommandOutcome {
        exit_code: 0,
        command_index: 0,
        command_count: count,
        stdout: String::new(),
        stderr: String::new(),
        timed_out: false,
        stopped: false,
    };
    for (i, text) in p.commands.iter().enumerate() {
        outcome.command_index = i + 1;
        let _ = log.send(LogItem::Line(format!(
            "[Command {}/{count}] Running: {text}",
            i + 1
        )));
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(text)
            .current_dir(&dir)
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting sh -c for command {}: {e}", i + 1))?;
        let pgid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let ended = {
            let pumps = async {
                tokio::join!(
                    async {
                        if let Some(s) = stdout {
                            pump(s, &log, &mut stdout_tail).await;
                        }
                    },
                    async {
                        if let Some(s) = stderr {
                            pump(s, &log, &mut stderr_tail).await;
                        }
                    }
                )
            };
            let exited = async {
                let status = child.wait().await;
                // What the command left in its group goes with it (and
                // closes the pipes it may hold).
                kill_group(pgid);
                status
            };
            let both = async { tokio::join!(exited, pumps).0 };
            tokio::select! {
                status = both => match status {
                    Ok(s) => Ended::Exited(exit_code(s)),
                    Err(e) => return Err(format!("waiting for command {}: {e}", i + 1)),
                },
                _ = tokio::time::sleep_until(deadline) => Ended::TimedOut,
                _ = signal.stopped() => Ended::Stopped,
            }
        };
        match ended {
            Ended::Exited(code) => {
                outcome.exit_code = code;
                let _ = log.send(LogItem::Line(format!(
                    "[Command {}/{count}] Exited with code {code}",
                    i + 1
                )));
                if code != 0 {
                    break;
                }
            }
            Ended::TimedOut | Ended::Stopped => {
                kill_group(pgid);
                let _ = child.wait().await;
                let timed_out = matches!(ended, Ended::TimedOut);
                let why = if timed_out {
                    format!("the time limit of {} s ran out", p.timeout_seconds)
                } else {
                    "the job was stopped".to_owned()
                };
                let _ = log.send(LogItem::Line(format!(
                    "[Command {}/{count}] Killed: {why}",
                    i + 1
                )));
                outcome.exit_code = 128 + libc::SIGKILL;
                outcome.timed_out = timed_out;
                outcome.stopped = !timed_out;
                break;
            }
        }
    }
    outcome.stdout = stdout_tail.text();
    outcome.stderr = stderr_tail.text();
    Ok(outcome)
}

/// A shell-style exit code: 128+N for a process killed by signal N.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_build::{StopHandle, StopReason};

    fn payload(commands: &[&str]) -> CommandPayload {
        CommandPayload {
            commands: commands.iter().map(|c| c.to_string()).collect(),
            env: vec![("WHO".into(), "agent".into())],
            working_directory: None,
            timeout_seconds: 60,
            execution_arn: "arn:x".into(),
        }
    }

    async fn run_collecting(
        p: &CommandPayload,
        signal: StopSignal,
    ) -> (Result<CommandOutcome, String>, Vec<String>) {
        let work = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let outcome = run(p, work.path(), signal, tx).await;
        let mut lines = Vec::new();
        while let Ok(LogItem::Line(l)) = rx.try_recv() {
            lines.push(l);
        }
        (outcome, lines)
    }

    #[tokio::test]
    async fn commands_run_in_order_with_env_and_stop_at_the_first_failure() {
        let p = payload(&[
            "echo one $WHO; echo warn >&2",
            "pwd > where; exit 3",
            "echo never",
        ]);
        let (outcome, lines) = run_collecting(&p, StopSignal::never()).await;
        let outcome = outcome.expect("ran");
        assert_eq!(outcome.exit_code, 3);
        assert_eq!(outcome.command_index, 2);
        assert_eq!(outcome.command_count, 3);
        assert_eq!(outcome.stdout, "one agent\n");
        assert_eq!(outcome.stderr, "warn\n");
        assert!(!outcome.succeeded());
        assert!(lines.contains(&"one agent".to_owned()), "{lines:?}");
        assert!(lines.contains(&"warn".to_owned()), "{lines:?}");
        assert!(!lines.iter().any(|l| l == "never"), "{lines:?}");
        let ok = run_collecting(&payload(&["true", "echo fine"]), StopSignal::never())
            .await
            .0
            .expect("ran");
        assert!(ok.succeeded(), "{ok:?}");
        assert_eq!((ok.command_index, ok.stdout.as_str()), (2, "fine\n"));
    }

    #[tokio::test]
    async fn the_time_limit_kills_the_command_and_what_it_started() {
        let mut p = payload(&["sleep 600 & echo $!; wait"]);
        p.timeout_seconds = 1;
        let (outcome, _) = run_collecting(&p, StopSignal::never()).await;
        let outcome = outcome.expect("ran");
        assert!(outcome.timed_out, "{outcome:?}");
        assert!(!outcome.succeeded());
        // The background sleep went with it (gone, or a zombie not yet reaped).
        let pid = outcome.stdout.trim();
        assert!(!pid.is_empty(), "{outcome:?}");
        for _ in 0..500 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return,
                Ok(stat) if stat.contains(") Z ") => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("the background process {pid} outlived the timeout");
    }

    #[tokio::test]
    async fn a_stop_kills_the_command() {
        let (handle, signal) = StopHandle::new();
        handle.stop(StopReason::Requested);
        let (outcome, lines) = run_collecting(&payload(&["sleep 600"]), signal).await;
        let outcome = outcome.expect("ran");
        assert!(outcome.stopped, "{outcome:?}");
        assert!(lines.iter().any(|l| l.contains("Killed")), "{lines:?}");
    }

    #[tokio::test]
    async fn a_background_process_holding_the_pipes_does_not_hold_the_job() {
        let (outcome, _) =
            run_collecting(&payload(&["sleep 600 & echo done"]), StopSignal::never()).await;
        let outcome = outcome.expect("ran");
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(outcome.stdout, "done\n");
    }

    #[tokio::test]
    async fn a_missing_absolute_working_directory_is_refused_and_a_relative_one_made() {
        let mut p = payload(&["true"]);
        p.working_directory = Some("/nonexistent/gantry-agent-test".into());
        let e = run_collecting(&p, StopSignal::never())
            .await
            .0
            .expect_err("refused");
        assert!(e.contains("/nonexistent/gantry-agent-test"), "{e}");
        p.working_directory = Some("sub/dir".into());
        p.commands = vec!["pwd".into()];
        let out = run_collecting(&p, StopSignal::never())
            .await
            .0
            .expect("ran");
        assert!(out.stdout.trim_end().ends_with("sub/dir"), "{out:?}");
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_from_a_whole_character() {
        let mut t = Tail::new(4);
        t.push(b"abcdef");
        assert_eq!(t.text(), "cdef");
        let mut t = Tail::new(4);
        t.push("xé€".as_bytes()); // x(1) é(2) €(3): the last 4 bytes cut é
        assert_eq!(t.text(), "€");
        let mut t = Tail::new(4);
        for _ in 0..100 {
            t.push(b"0123456789");
        }
        assert_eq!(t.text(), "6789");
        assert!(t.bytes.len() <= 2 * 4 + 10);
    }
}
