//! Loading user files with `FILE:LINE:COL` problems, and showing a build's
//! log on a terminal or in a file.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gantry_build::{BuildEvent, Observer, PhaseType};
use gantry_spec::buildspec::Buildspec;

/// The largest buildspec read (the parser refuses larger ones too; this
/// stops a huge file before it is read into memory).
const MAX_FILE: u64 = 8 * 1024 * 1024;

/// One problem in a file, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Reads and parses a buildspec file.
pub fn load_buildspec(path: &Path) -> Result<Buildspec, Vec<Problem>> {
    let file = path.display().to_string();
    let whole = |message: String| {
        vec![Problem {
            file: file.clone(),
            line: 0,
            column: 0,
            message,
        }]
    };
    let size = std::fs::metadata(path)
        .map_err(|e| whole(format!("cannot read: {e}")))?
        .len();
    if size > MAX_FILE {
        return Err(whole(format!(
            "file is {size} bytes; buildspecs are limited to {MAX_FILE} bytes"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    gantry_spec::buildspec::parse(&text).map_err(|diagnostics| {
        diagnostics
            .into_iter()
            .map(|d| Problem {
                file: file.clone(),
                line: d.span.line,
                column: d.span.col,
                message: d.message,
            })
            .collect()
    })
}

/// Shows build events: log lines as they come, phase markers, and on a
/// terminal a progress line that stays at the bottom.
pub struct TerminalObserver {
    state: Mutex<TerminalState>,
    tty: bool,
}

struct TerminalState {
    out: std::io::Stdout,
    log: Option<std::fs::File>,
    phase: Option<(Option<String>, PhaseType, Instant)>,
    started: Instant,
    status_shown: bool,
}

impl TerminalObserver {
    pub fn new(log: Option<std::fs::File>) -> Arc<TerminalObserver> {
        let observer = Arc::new(TerminalObserver {
            tty: std::io::stdout().is_terminal(),
            state: Mutex::new(TerminalState {
                out: std::io::stdout(),
                log,
                phase: None,
                started: Instant::now(),
                status_shown: false,
            }),
        });
        if observer.tty {
            // Keep the elapsed time moving while a quiet command runs.
            let weak = Arc::downgrade(&observer);
            std::thread::spawn(move || {
                while let Some(observer) = weak.upgrade() {
                    observer.redraw();
                    drop(observer);
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        observer
    }

    fn redraw(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.draw_status();
    }
}

impl TerminalState {
    fn clear_status(&mut self) {
        if self.status_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            self.status_shown = false;
        }
    }

    fn draw_status(&mut self) {
        let Some((task, phase, since)) = &self.phase else {
            return;
        };
        let label = task.as_ref().map(|t| format!("[{t}] ")).unwrap_or_default();
        let line = format!(
            "\r\x1b[2K\x1b[7m {label}{} \x1b[0m {:.1}s in phase, {:.1}s total",
            phase.as_str(),
            since.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
        self.status_shown = true;
    }
}

impl Observer for TerminalObserver {
    fn on_event(&self, task: Option<&str>, event: &BuildEvent) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = task.map(|t| format!("[{t}] ")).unwrap_or_default();
        let text = match event {
            BuildEvent::Line(line) => format!("{prefix}{line}"),
            BuildEvent::PhaseStarted(phase) => {
                state.phase = Some((task.map(str::to_string), *phase, Instant::now()));
                format!("{prefix}==> {}", phase.as_str())
            }
            BuildEvent::PhaseFinished {
                phase,
                status,
                duration,
            } => {
                format!(
                    "{prefix}<== {} {} ({:.2}s)",
                    phase.as_str(),
                    status.as_str(),
                    duration.as_secs_f64()
                )
            }
        };
        if self.tty {
            state.clear_status();
        }
        let _ = writeln!(state.out, "{text}");
        if let Some(log) = state.log.as_mut() {
            let _ = writeln!(log, "{text}");
        }
        if self.tty {
            state.draw_status();
        } else {
            let _ = state.out.flush();
        }
    }
}

impl Drop for TerminalObserver {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        state.clear_status();
        let _ = state.out.flush();
    }
}

/// The async runtime local commands run on; on failure, says so and gives
/// the exit code to return.
pub fn runtime(command: &str) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{command}: starting the async runtime: {e}");
            std::process::ExitCode::from(1)
        })
}
