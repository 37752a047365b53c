/*!
Gantry's remote build agent: it connects out to a Gantry server (no inbound
port), registers its labels and capacity, long-polls for jobs, and runs each
acknowledged job's buildspec with `gantry-build` under a lease it renews by
heartbeat. Logs go back in numbered chunks, kept and resent in order while
the server is unreachable; artifacts are uploaded by content hash and
resumed after a dropped connection; the result is fenced by the lease's
epoch. A drain (SIGTERM in `gantry agent`) takes no new job and returns once
the running ones have finished.

# Example

```no_run
# async fn demo() -> Result<(), gantry_agent::AgentError> {
use gantry_agent::{AgentConfig, run};

let config = AgentConfig::new("http://ci.example.com:8080", "gat_...", "/var/lib/gantry-agent");
// Runs until Ctrl-C, then finishes its running jobs and returns.
run(config, async {
    let _ = tokio::signal::ctrl_c().await;
})
.await?;
# Ok(()) }
```

The protocol is described in docs/agents.md; [`protocol`] holds its messages
and [`Client`] sends them.
*/
#![deny(missing_docs)]

pub mod client;
mod command;
mod job;
pub mod protocol;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub use client::{Client, ClientError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::protocol::Register;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL.
    pub server: String,
    /// The agent token.
    pub token: String,
    /// The agent's labels.
    pub labels: Vec<String>,
    /// How many jobs at once.
    pub concurrency: u32,
    /// `host`, `sandbox` or `docker`.
    pub executor: String,
    /// Where jobs' sources and artifacts are unpacked.
    pub work_dir: PathBuf,
    /// The host name it reports.
    pub hostname: String,
    /// Once registered, and whenever it has been without a job for half a
    /// second after running some, drop this process's mapped pages of its
    /// own executable's code (see [`release_code_pages`]). For the `gantry
    /// agent` process; off by default (a library caller's code is its own).
    pub release_code_after_start: bool,
}

impl AgentConfig {
    /// One job at a time, host executor, no labels.
    pub fn new(server: &str, token: &str, work_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            server: server.to_owned(),
            token: token.to_owned(),
            labels: Vec::new(),
            concurrency: 1,
            executor: "host".into(),
            work_dir: work_dir.into(),
            hostname: std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            release_code_after_start: false,
        }
    }
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The token was refused: nothing to retry.
    #[error("{0}")]
    Unauthorized(String),
    /// The server refused registration.
    #[error("registering: {0}")]
    Register(String),
    /// The work directory could not be made.
    #[error("work directory {0}: {1}")]
    WorkDir(String, std::io::Error),
}

/// Backoff between failed attempts: 100 ms doubling to 10 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(Duration::from_millis(100))
    }
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        d
    }
    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

/// A job slot's number, given back to the free list when dropped (also
/// when its job's task panics), so two running jobs never share a slot's
/// work directory.
struct Slot(usize, Arc<std::sync::Mutex<Vec<usize>>>);

impl Slot {
    fn take(free: &Arc<std::sync::Mutex<Vec<usize>>>) -> Slot {
        let mut list = free.lock().unwrap_or_else(|e| e.into_inner());
        // The semaphore's permit is held, so the list is never empty; were
        // it ever, a number no other job holds is still made.
        let n = list
            .pop()
            .unwrap_or_else(|| SPARE_SLOTS.fetch_add(1, Ordering::Relaxed));
        Slot(n, free.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.0);
    }
}

/// How long an agent is without a job before it releases its code pages
/// again (see [`AgentConfig::release_code_after_start`]).
const IDLE_RELEASE: Duration = Duration::from_millis(500);

/// Slot numbers beyond any concurrency, for [`Slot::take`]'s fallback.
static SPARE_SLOTS: AtomicUsize = AtomicUsize::new(1 << 20);

/// Drops this process's page-table entries for its executable's code
/// (`r-xp` mappings of `/proc/self/exe`) with `madvise(MADV_DONTNEED)`;
/// returns how many bytes of mappings were covered.
///
/// Why: the `gantry` binary is one large executable, and start-up (argument
/// parsing of every subcommand, TLS and runtime set-up) faults in megabytes
/// of code an idle agent never runs again; they count in its RSS for good.
/// Dropped, the code the agent does run faults back in from the page cache
/// on its next use (a minor fault; nothing is read from disk while the file
/// stays cached). Only code is touched: it is mapped read-only and private
/// and never written, so dropping its entries loses nothing; data,
/// relocated read-only data (RELRO) and the heap are left alone. The pages
/// stay in the page cache, shared with every other process of the binary,
/// so this lowers the process's RSS and PSS, not the memory the machine
/// holds for the file.
pub fn release_code_pages() -> std::io::Result<u64> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut released = 0u64;
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        if perms != "r-xp" || path != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        if end <= start {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process's own,
        // read-only, private, file-backed code; MADV_DONTNEED on it only
        // drops page-table entries, which refault from the same file.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        released += (end - start) as u64;
    }
    Ok(released)
}

/// Runs the agent until `drain` completes; then takes no more jobs,
/// waits for the running ones to end, and returns `Ok`.
pub async fn run(config: AgentConfig, drain: impl Future<Output = ()>) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|e| AgentError::WorkDir(config.work_dir.display().to_string(), e))?;
    let client = Client::new(&config.server, &config.token)
        .map_err(|e| AgentError::Register(e.to_string()))?;
    tokio::pin!(drain);
    let registration = Register {
        labels: config.labels.clone(),
        capacity: config.concurrency.max(1),
        executor: config.executor.clone(),
        hostname: config.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        // Commands run on this machine itself, so only a host-executor
        // agent takes them (a sandbox or docker agent promises isolation).
        kinds: if config.executor == "host" {
            vec![protocol::COMMAND_KIND.into()]
        } else {
            Vec::new()
        },
    };
    let mut backoff = Backoff::new();
    let registered = loop {
        tokio::select! {
            _ = &mut drain => return Ok(()),
            r = client.register(&registration) => match r {
                Ok(r) => break r,
                Err(ClientError::Unauthorized(m)) => return Err(AgentError::Unauthorized(m)),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "registering failed; retrying");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => return Err(AgentError::Register(e.to_string())),
            }
        }
    };
    tracing::info!(agent = %registered.agent_id, labels = ?registered.labels, "registered");
    if config.release_code_after_start {
        match release_code_pages() {
            Ok(bytes) => tracing::debug!(bytes, "start-up code pages released"),
            Err(e) => tracing::debug!(error = %e, "start-up code pages not released"),
        }
    }
    let context = Arc::new(job::Context {
        client: client.clone(),
        work_dir: config.work_dir.clone(),
        lease_ms: registered.lease_timeout_ms,
        result_log: registered.result_log,
        agent_id: registered.agent_id.clone(),
        next_offer: registered.next_offer,
        next_lease: registered.next_lease,
        draining: AtomicBool::new(false),
    });
    let capacity = config.concurrency.max(1) as usize;
    let slots = Arc::new(Semaphore::new(capacity));
    let mut ran_jobs = false;
    // Which slot numbers (and so work directories) are free: a job takes
    // one with its permit and gives it back when it ends.
    let free: Arc<std::sync::Mutex<Vec<usize>>> = Arc::new(std::sync::Mutex::new(
        (0..config.concurrency.max(1) as usize).rev().collect(),
    ));
    let mut jobs = JoinSet::new();
    let mut outcome = Ok(());
    backoff.reset();
    'taking: loop {
        while jobs.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut drain => break 'taking,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'taking },
        };
        // Idle (no job running besides this poll's free slot) after jobs
        // ran: the code they ran need not stay mapped either. Only after
        // IDLE_RELEASE without a job, so a busy agent never pays the faults
        // of bringing it back.
        let idle = slots.available_permits() + 1 >= capacity;
        let release = tokio::time::sleep(IDLE_RELEASE);
        tokio::pin!(release);
        let mut armed = config.release_code_after_start && ran_jobs && idle;
        // A server that leases with the poll saves the acknowledgement's
        // round trip: the job starts as the poll's answer arrives.
        let poll = async {
            if registered.poll_lease {
                let lease = client.poll_lease(&registered.agent_id).await?;
                Ok(lease.map(|l| job::Next::Lease(Box::new(l))))
            } else {
                Ok(client
                    .poll(&registered.agent_id)
                    .await?
                    .map(job::Next::Offer))
            }
        };
        tokio::pin!(poll);
        let offer = loop {
            tokio::select! {
                _ = &mut drain => break 'taking,
                o = &mut poll => break o,
                _ = &mut release, if armed => {
                    armed = false;
                    ran_jobs = false;
                    if let Err(e) = release_code_pages() {
                        tracing::debug!(error = %e, "idle code pages not released");
                    }
                }
            }
        };
        match offer {
            Ok(None) => backoff.reset(),
            Ok(Some(taken)) => {
                backoff.reset();
                let (job_id, leased) = match taken {
                    job::Next::Lease(lease) => (lease.job_id.clone(), Ok(*lease)),
                    job::Next::Offer(offer) => (
                        offer.job_id.clone(),
                        client.ack(&registered.agent_id, &offer).await,
                    ),
                };
                match leased {
                    Ok(lease) => {
                        ran_jobs = true;
                        let context = context.clone();
                        let slot = Slot::take(&free);
                        jobs.spawn(async move {
                            let mut lease = lease;
                            // A result's answer may bring the next job:
                            // this slot takes it without a poll.
                            while let Some(next) = job::run(&context, slot.0, lease).await {
                                lease = match next {
                                    // Ours already, draining or not: left
                                    // alone it would wait out its lease.
                                    job::Next::Lease(taken) => *taken,
                                    job::Next::Offer(_)
                                        if context.draining.load(Ordering::SeqCst) =>
                                    {
                                        break;
                                    }
                                    job::Next::Offer(offer) => {
                                        match context.client.ack(&context.agent_id, &offer).await {
                                            Ok(taken) => taken,
                                            // Taken by another agent, lapsed,
                                            // or the token revoked (the next
                                            // poll says so).
                                            Err(e) => {
                                                tracing::debug!(job = %offer.job_id, error = %e, "ack refused");
                                                break;
                                            }
                                        }
                                    }
                                };
                            }
                            // The slot is free again before the permit is.
                            drop(slot);
                            drop(permit);
                        });
                    }
                    Err(ClientError::Unauthorized(m)) => {
                        outcome = Err(AgentError::Unauthorized(m));
                        break 'taking;
                    }
                    // Another agent won the job, or the offer lapsed.
                    Err(e) => tracing::debug!(job = %job_id, error = %e, "ack refused"),
                }
            }
            Err(ClientError::Unauthorized(m)) => {
                outcome = Err(AgentError::Unauthorized(m));
                break 'taking;
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(error = %e, "polling failed; retrying in {wait:?}");
                tokio::select! {
                    _ = &mut drain => break 'taking,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    context.draining.store(true, Ordering::SeqCst);
    tracing::info!(running = jobs.len(), "draining: finishing running jobs");
    while jobs.join_next().await.is_some() {}
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_code_pages_covers_the_executables_code_and_it_still_runs() {
        let released = super::release_code_pages().expect("madvise");
        assert!(released > 0, "the test binary has code mapped");
        // Code keeps running after its pages were dropped: they refault.
        let v: Vec<u64> = (0..1000).map(|i| i * 2).collect();
        assert_eq!(v.iter().sum::<u64>(), 999_000);
        assert!(super::release_code_pages().is_ok(), "and again");
    }
}
