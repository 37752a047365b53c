//! The build log: everything the build's processes write arrives on one FIFO,
//! is masked, cut into lines and handed to an [`Observer`] as it happens.
//!
//! One FIFO for the whole build (not a pipe per phase) because background
//! processes started in one phase (`dockerd &` in `install`) keep writing in
//! later ones, and because every executor — a container included — can open
//! a FIFO in the bind-mounted control directory.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::mask::SecretMasker;
use crate::model::{PhaseStatus, PhaseType};

/// Something that happened in a build, as the runner reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    /// One line of log (already masked), without its newline.
    Line(String),
    /// A phase began.
    PhaseStarted(PhaseType),
    /// A phase ended.
    PhaseFinished {
        /// Which phase.
        phase: PhaseType,
        /// How it ended.
        status: PhaseStatus,
        /// How long it took.
        duration: Duration,
    },
}

/// Receives a build's events as they happen. `task` names the batch task
/// (`None` for a single build).
pub trait Observer: Send + Sync {
    /// Called for every event, in order, from the runner's tasks.
    fn on_event(&self, task: Option<&str>, event: &BuildEvent);
}

/// An observer that drops everything.
#[derive(Debug, Default)]
pub struct NullObserver;

impl Observer for NullObserver {
    fn on_event(&self, _task: Option<&str>, _event: &BuildEvent) {}
}

/// How long a partial line may wait for its newline before it is shown anyway.
pub const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(40);

/// Longest line kept whole; longer output is cut into lines of this size so
/// a process that never writes a newline cannot grow memory without bound.
const MAX_LINE: usize = 64 * 1024;

enum Control {
    /// Read everything already written, emit it, then answer.
    Drain(oneshot::Sender<()>),
}

/// Reads the log FIFO in a task of its own.
pub(crate) struct LogPump {
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

/// Splits masked bytes into lines and emits them.
struct LineSplitter {
    pending: Vec<u8>,
    task: Option<Arc<str>>,
    observer: Arc<dyn Observer>,
}

impl LineSplitter {
    fn feed(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            if let Some(line) = piece.strip_suffix(b"\n") {
                self.pending.extend_from_slice(line);
                self.emit();
            } else {
                self.pending.extend_from_slice(piece);
                while self.pending.len() >= MAX_LINE {
                    let rest = self.pending.split_off(MAX_LINE);
                    self.emit();
                    self.pending = rest;
                }
            }
        }
    }

    fn emit(&mut self) {
        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        self.pending.clear();
        self.observer
            .on_event(self.task.as_deref(), &BuildEvent::Line(line));
    }

    fn flush_partial(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl LogPump {
    /// Opens `fifo` (created by the caller) and starts pumping it.
    pub fn start(
        fifo: &Path,
        masker: Arc<SecretMasker>,
        task: Option<Arc<str>>,
        observer: Arc<dyn Observer>,
    ) -> std::io::Result<LogPump> {
        // Read-write, so the FIFO never reports end-of-file between phases
        // when no writer has it open.
        let receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(fifo)?;
        let (control, mut requests) = mpsc::channel::<Control>(4);
        let task = tokio::spawn(async move {
            let mut stream = masker.stream();
            let mut lines = LineSplitter {
                pending: Vec::new(),
                task,
                observer,
            };
            let mut buf = vec![0u8; 64 * 1024];
            let mut masked = Vec::with_capacity(64 * 1024);
            let mut stalled = false;
            loop {
                tokio::select! {
                    biased;
                    request = requests.recv() => {
                        // Everything written before the request is in the pipe
                        // already: read until it would block, then answer.
                        loop {
                            match receiver.try_read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => { masked.clear(); stream.push(&buf[..n], &mut masked); lines.feed(&masked); }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                                Err(_) => break,
                            }
                        }
                        masked.clear();
                        stream.flush_partial(&mut masked);
                        lines.feed(&masked);
                        lines.flush_partial();
                        match request {
                            Some(Control::Drain(ack)) => { let _ = ack.send(()); }
                            None => {
                                masked.clear();
                                stream.finish(&mut masked);
                                lines.feed(&masked);
                                lines.flush_partial();
                                return;
                            }
                        }
                    }
                    ready = receiver.readable() => {
                        if ready.is_err() { return; }
                        match receiver.try_read(&mut buf) {
                            Ok(n) if n > 0 => {
                                masked.clear();
                                stream.push(&buf[..n], &mut masked);
                                lines.feed(&masked);
                                stalled = false;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => return,
                        }
                    }
                    _ = tokio::time::sleep(PARTIAL_LINE_DELAY), if !stalled => {
                        // Output paused mid-line: show what we have.
                        masked.clear();
                        stream.flush_partial(&mut masked);
                        lines.feed(&masked);
                        lines.flush_partial();
                        stalled = true;
                    }
                }
            }
        });
        Ok(LogPump { control, task })
    }

    /// Waits until everything written to the FIFO so far has been emitted.
    pub async fn drain(&self) {
        let (ack, done) = oneshot::channel();
        if self.control.send(Control::Drain(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Emits what is left and stops.
    pub async fn stop(self) {
        drop(self.control);
        let _ = self.task.await;
    }
}
