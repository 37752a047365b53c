//! Remote agents: the server's half of the agent protocol (`/agent/v1`),
//! agent tokens (`/api/v1/agent-tokens`), and the in-process hub that ties
//! a queued job to the build waiting for it. `command` jobs (Step Functions'
//! `gantry:agent:runCommand`) need no waiter in memory: their log lines and
//! end go to the store, where their task reads them, across a restart too.
//!
//! The job queue itself is durable (`AgentStore`); what lives only in
//! memory is what a restart would lose anyway — the waiting long polls and
//! the channel from a job's agent to its build's log writer. A job is
//! offered to one poller at a time, acknowledged with the offer's nonce
//! into a lease whose epoch fences every later message, and returned to the
//! queue by the [`reaper`] when its lease runs out. See docs/agents.md.

pub(crate) mod protocol;
pub(crate) mod remote;
pub(crate) mod tokens;
mod uploads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gantry_artifacts::ArtifactStore;
use gantry_store::{AgentRecord, Store, job_status, now_ms};
use tokio::sync::{mpsc, watch};

use crate::worker::Msg;

/// The project tag naming the labels a build's agent must have.
pub(crate) const LABELS_TAG: &str = "gantry:agent-labels";

/// How long an offer waits for its acknowledgement before another poller
/// may get the job.
pub(crate) const OFFER_TTL: Duration = Duration::from_secs(5);

/// How many leases a build's job gets before it fails.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// What happened to a job, told to the build waiting for it.
#[derive(Debug)]
pub(crate) enum Ending {
    /// An agent acknowledged it (a new attempt).
    Leased {
        agent: String,
        attempt: u32,
        at_ms: i64,
    },
    /// Its lease ran out and it is queued again.
    Requeued {
        agent: String,
        attempt: u32,
        max: u32,
    },
    /// It failed for good (out of attempts, or stopped with a dead agent).
    Failed(String),
    /// Its agent sent the result (already fenced and recorded in `jobs`).
    Result(Box<gantry_agent::protocol::JobResult>),
}

/// A job whose build waits in this process.
pub(crate) struct LiveJob {
    /// The build's log writer (the same one the local agent feeds).
    pub log: mpsc::UnboundedSender<Msg>,
    /// To the build's task.
    pub ends: mpsc::UnboundedSender<Ending>,
    /// Serialises a job's log chunks on this server (the position itself
    /// is the `jobs` row's, shared by every server).
    pub serial: tokio::sync::Mutex<()>,
    /// True when the build does not wait here: its agent talks to this
    /// server while another one owns the build, and this entry only writes
    /// the log ([`remote::live_or_relay`]).
    pub relay: bool,
}

/// The in-process side of the queue.
pub(crate) struct AgentHub {
    /// Bumped when a job becomes offerable; long polls wait on it.
    queued: watch::Sender<u64>,
    live: Mutex<HashMap<String, Arc<LiveJob>>>,
    /// Serialises each `command` job's log chunks on this server (their
    /// position is the `jobs` row's, as for builds; nothing waits for such
    /// a job in memory: its lines go to the store, its end is read from it).
    command_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped when a `command` job ends, so the task waiting for it reads
    /// it at once rather than at its next look.
    command_ends: watch::Sender<u64>,
    /// Agents by id (which token they belong to), read on every request.
    agents: Mutex<HashMap<String, AgentRecord>>,
    /// Source trees handed to agents, content-addressed.
    pub objects: ArtifactStore,
    /// Resumable uploads, named by their sha256.
    pub uploads: PathBuf,
    pub lease_timeout: Duration,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentHub {
    pub fn new(data_dir: &std::path::Path, lease_timeout: Duration) -> Result<AgentHub, String> {
        let root = data_dir.join(crate::files::AGENTS);
        let objects = ArtifactStore::local(root.join("objects"))
            .map_err(|e| format!("opening {}: {e}", root.join("objects").display()))?;
        Ok(AgentHub {
            queued: watch::Sender::new(0),
            live: Mutex::new(HashMap::new()),
            command_locks: Mutex::new(HashMap::new()),
            command_ends: watch::Sender::new(0),
            agents: Mutex::new(HashMap::new()),
            objects,
            uploads: root.join("uploads"),
            lease_timeout,
        })
    }

    /// Wakes every long poll: a job can be offered.
    pub fn job_ready(&self) {
        self.queued.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever [`AgentHub::job_ready`] is called.
    pub fn queue_changes(&self) -> watch::Receiver<u64> {
        self.queued.subscribe()
    }

    pub fn attach(&self, job_id: &str, live: Arc<LiveJob>) {
        locked(&self.live).insert(job_id.to_owned(), live);
    }

    pub fn detach(&self, job_id: &str) {
        locked(&self.live).remove(job_id);
    }

    /// Drops the job's relay, if it has one here (its result is in).
    pub fn drop_relay(&self, job_id: &str) {
        let mut live = locked(&self.live);
        if live.get(job_id).is_some_and(|l| l.relay) {
            live.remove(job_id);
        }
    }

    /// Adds `relay` unless the job already has an entry; returns the entry.
    pub fn attach_relay(&self, job_id: &str, relay: Arc<LiveJob>) -> Arc<LiveJob> {
        locked(&self.live)
            .entry(job_id.to_owned())
            .or_insert(relay)
            .clone()
    }

    pub fn live(&self, job_id: &str) -> Option<Arc<LiveJob>> {
        locked(&self.live).get(job_id).cloned()
    }

    /// Tells the job's build, if it waits here.
    pub fn tell(&self, job_id: &str, ending: Ending) {
        if let Some(live) = self.live(job_id) {
            let _ = live.ends.send(ending);
        }
    }

    /// The lock that serialises a `command` job's log chunks here.
    pub fn command_lock(&self, job_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        locked(&self.command_locks)
            .entry(job_id.to_owned())
            .or_default()
            .clone()
    }

    /// A `command` job ended (or its waiter gave up on it): its lock goes,
    /// and waiters look at the store.
    pub fn command_ended(&self, job_id: &str) {
        locked(&self.command_locks).remove(job_id);
        self.command_ends.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a `command` job ends.
    pub fn command_end_changes(&self) -> watch::Receiver<u64> {
        self.command_ends.subscribe()
    }

    pub fn remember_agent(&self, agent: AgentRecord) {
        locked(&self.agents).insert(agent.id.clone(), agent);
    }

    /// The agent, from memory or the store.
    pub async fn agent<S: Store>(
        &self,
        store: &S,
        id: &str,
    ) -> Result<AgentRecord, gantry_store::StoreError> {
        if let Some(a) = locked(&self.agents).get(id).cloned() {
            return Ok(a);
        }
        let agent = store.get_agent(id).await?;
        self.remember_agent(agent.clone());
        Ok(agent)
    }

    pub fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease_timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Returns expired leases to the queue (or fails their jobs) for as long
/// as the server runs, checking a few times per lease timeout so a job
/// is back within the timeout plus a fraction of it.
pub(crate) async fn reaper<S: Store>(store: Arc<S>, hub: Arc<AgentHub>) {
    let tick = (hub.lease_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let expired = match store.expire_leases(now_ms()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "expiring agent leases failed");
                continue;
            }
        };
        let mut requeued = false;
        for lease in expired {
            let agent = lease.agent_id.unwrap_or_default();
            tracing::warn!(job = %lease.job.id, agent = %agent, status = %lease.job.status,
                "an agent's lease ran out");
            let ending = if lease.job.status == job_status::QUEUED {
                requeued = true;
                Ending::Requeued {
                    agent,
                    attempt: lease.job.attempts,
                    max: lease.job.max_attempts,
                }
            } else {
                Ending::Failed(
                    lease
                        .job
                        .error
                        .unwrap_or_else(|| "the lease ran out".into()),
                )
            };
            if lease.job.kind == gantry_agent::protocol::COMMAND_KIND
                && lease.job.status != job_status::QUEUED
            {
                hub.command_ended(&lease.job.id);
            }
            let over = matches!(ending, Ending::Failed(_));
            hub.tell(&lease.job.id, ending);
            if over {
                // No result will come: a relay for its log is done.
                hub.drop_relay(&lease.job.id);
            }
        }
        if requeued {
            hub.job_ready();
        }
    }
}
