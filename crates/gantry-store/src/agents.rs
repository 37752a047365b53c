//! The store's methods for remote agents: agent tokens (kept as SHA-256
//! hashes), registered agents, and the job queue agents lease work from.
//!
//! A job goes QUEUED → (offered to one agent for a short while) → LEASED
//! (acknowledged with the offer's nonce) → SUCCEEDED or FAILED. Every lease
//! bumps the job's `lease_epoch`, the fencing token: renewals, logs and
//! results name the epoch they belong to, and a change for an older epoch
//! is refused with [`StoreError::Conflict`]. Every transition is one
//! conditional `UPDATE`, so of two claimants exactly one wins.

use async_trait::async_trait;

use crate::StoreError;

/// Job statuses.
pub mod job_status {
    /// Waiting for an agent.
    pub const QUEUED: &str = "QUEUED";
    /// Acknowledged by an agent, which holds a lease on it.
    pub const LEASED: &str = "LEASED";
    /// Ended well.
    pub const SUCCEEDED: &str = "SUCCEEDED";
    /// Ended badly, was cancelled, or ran out of attempts.
    pub const FAILED: &str = "FAILED";
}

/// An agent token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentTokenRecord {
    /// Its id (`atok-...`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// When it was created, epoch ms.
    pub created_ms: i64,
    /// When an agent last authenticated with it, epoch ms.
    pub last_used_ms: Option<i64>,
    /// When it was revoked, epoch ms.
    pub revoked_ms: Option<i64>,
}

/// An agent, as it registered.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// Its id (`agent-...`), assigned by the server.
    pub id: String,
    /// The token it registered with.
    pub token_id: String,
    /// Its labels, sorted.
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// `host`, `sandbox` or `docker`.
    pub executor: String,
    /// Its host name.
    pub hostname: String,
    /// Its Gantry version.
    pub version: String,
    /// When it registered, epoch ms.
    pub registered_ms: i64,
}

/// A job to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAgentJob {
    /// Its id.
    pub id: String,
    /// What it is (`codebuild`, `command`).
    pub kind: String,
    /// The labels an agent must have (all of them) to take it.
    pub labels: Vec<String>,
    /// What the agent needs to run it.
    pub payload: serde_json::Value,
    /// How many leases it may have before it fails for good.
    pub max_attempts: u32,
}

/// Where a job stands, without its payload or result.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    /// The job's id.
    pub id: String,
    /// See [`job_status`].
    pub status: String,
    /// Leases taken so far.
    pub attempts: u32,
    /// The agent of the current (or last) lease.
    pub agent_id: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// News from the store's queue, of jobs queued through other servers
/// sharing the store ([`AgentStore::queue_feed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum QueueNews {
    /// A job was queued (or queued again) through another server.
    Queued {
        /// The labels it needs, unless too long to tell.
        labels: Option<Vec<String>>,
    },
    /// News may have been lost (the feed's connection dropped): look at
    /// the queue.
    Missed,
}

/// A subscription to [`QueueNews`]; it ends when the store closes.
pub type QueueFeed = tokio::sync::mpsc::Receiver<QueueNews>;

/// A queued job as a poll chooses among them.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferableJob {
    /// The job's id.
    pub id: String,
    /// `codebuild` or `command`.
    pub kind: String,
    /// The labels an agent needs to run it.
    pub labels: Vec<String>,
    /// Leases granted so far: an offer names it, and is acknowledged only
    /// while the job is still QUEUED at that count (so an offer made
    /// before a lease that ran out cannot take the job's next attempt).
    pub attempts: u32,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentJobRecord {
    /// Its id.
    pub id: String,
    /// What it is.
    pub kind: String,
    /// Required labels.
    pub labels: Vec<String>,
    /// What the agent needs.
    pub payload: serde_json::Value,
    /// One of [`job_status`].
    pub status: String,
    /// The current (or last) lease's id.
    pub lease_id: Option<String>,
    /// The fencing token: 0 before the first lease, +1 per lease.
    pub lease_epoch: i64,
    /// The agent holding (or that last held) the lease.
    pub agent_id: Option<String>,
    /// When the lease runs out, epoch ms.
    pub lease_expires_ms: i64,
    /// Leases granted so far.
    pub attempts: u32,
    /// Leases allowed.
    pub max_attempts: u32,
    /// Whether someone asked the job to stop (told to the agent).
    pub cancel_requested: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What its agent reported at its end, for jobs whose waiter reads it
    /// from the store (a `command` job's exit code and output tails).
    pub result: Option<serde_json::Value>,
}

/// A lease that ran out, and what became of its job.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredLease {
    /// The job, as it is now (QUEUED again, or FAILED).
    pub job: AgentJobRecord,
    /// The agent that held the lease.
    pub agent_id: Option<String>,
}

/// Agent tokens, agents and jobs.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Stores a token by its hash. Audited.
    async fn create_agent_token(
        &self,
        id: &str,
        name: &str,
        token_sha256: &str,
        actor: &str,
    ) -> Result<AgentTokenRecord, StoreError>;
    /// Every token, oldest first.
    async fn list_agent_tokens(&self) -> Result<Vec<AgentTokenRecord>, StoreError>;
    /// Revokes a token. `NotFound` when it does not exist or is revoked. Audited.
    async fn revoke_agent_token(&self, id: &str, actor: &str) -> Result<(), StoreError>;
    /// The live (not revoked) token with this hash, noting its use.
    async fn use_agent_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<AgentTokenRecord>, StoreError>;

    /// Records an agent.
    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    /// One agent.
    async fn get_agent(&self, id: &str) -> Result<AgentRecord, StoreError>;

    /// Queues a job.
    async fn enqueue_job(&self, job: &NewAgentJob) -> Result<AgentJobRecord, StoreError> {
        self.enqueue_job_with_log(job, &job.id, &[]).await
    }
    /// Queues a job and appends `lines` to the log named `log_id` (its
    /// build's: what the server says while the build waits for an agent)
    /// in the same transaction: one commit, not two. Neither happens
    /// when the job's id is taken.
    async fn enqueue_job_with_log(
        &self,
        job: &NewAgentJob,
        log_id: &str,
        lines: &[String],
    ) -> Result<AgentJobRecord, StoreError>;
    /// One job.
    async fn get_agent_job(&self, id: &str) -> Result<AgentJobRecord, StoreError>;
    /// The states of the jobs among `ids` that exist, in no order: what a
    /// server checks every second for all the builds it waits for, in one
    /// read rather than one per build.
    async fn job_states(&self, ids: &[String]) -> Result<Vec<JobState>, StoreError>;
    /// QUEUED jobs, oldest first, at most `limit`: only what choosing one
    /// takes (a poll reads them each time it looks, so the payloads stay
    /// in the database). Offers are not stored: the server signs them
    /// (gantry-server's `agents::offers`) and keeps its own in memory.
    async fn offerable_jobs(&self, limit: u32) -> Result<Vec<OfferableJob>, StoreError>;
    /// Acknowledges an offer of the job's attempt `attempts + 1`: the job
    /// becomes LEASED to `agent_id` with a new epoch. `Conflict` when the
    /// job is not QUEUED with `attempts` leases behind it (another
    /// acknowledgement won, or the job moved on).
    async fn ack_job(
        &self,
        id: &str,
        attempts: u32,
        agent_id: &str,
        lease_id: &str,
        lease_expires_ms: i64,
    ) -> Result<AgentJobRecord, StoreError>;
    /// Extends the lease of epoch `epoch`. `Conflict` when the job is no
    /// longer LEASED under that epoch.
    async fn renew_lease(
        &self,
        id: &str,
        epoch: i64,
        lease_expires_ms: i64,
    ) -> Result<AgentJobRecord, StoreError>;
    /// The job, if it is LEASED under `epoch`; else `Conflict`.
    async fn check_lease(&self, id: &str, epoch: i64) -> Result<AgentJobRecord, StoreError>;
    /// Ends the lease of `epoch` with a final status. `Conflict` when fenced.
    async fn finish_agent_job(
        &self,
        id: &str,
        epoch: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<AgentJobRecord, StoreError>;
    /// [`AgentStore::finish_agent_job`], keeping what the agent reported
    /// (read back as [`AgentJobRecord::result`]). `Conflict` when fenced.
    async fn finish_agent_job_with_result(
        &self,
        id: &str,
        epoch: i64,
        status: &str,
        error: Option<&str>,
        result: &serde_json::Value,
    ) -> Result<AgentJobRecord, StoreError>;
    /// Cancels a job: a QUEUED one fails now; a LEASED one is marked so
    /// its agent hears of it. Returns the job as it is now.
    async fn cancel_job(&self, id: &str) -> Result<AgentJobRecord, StoreError>;
    /// Fails a job whatever its state (its build ended without it).
    async fn abandon_job(&self, id: &str, error: &str) -> Result<(), StoreError>;
    /// Every LEASED job whose lease ran out by `now_ms` goes back to
    /// QUEUED, or FAILED when it used all its attempts.
    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<ExpiredLease>, StoreError>;
    /// News of the jobs other servers sharing this store queue, as they
    /// queue them, so this server's waiting polls need not wait for their
    /// periodic look. `None` when no other server can share the store
    /// (SQLite): every job is then queued through this one.
    async fn queue_feed(&self) -> Result<Option<QueueFeed>, StoreError> {
        Ok(None)
    }
}

/// Whether an agent with `have` labels may take a job needing `need`.
pub fn labels_match(have: &[String], need: &[String]) -> bool {
    need.iter().all(|n| have.iter().any(|h| h == n))
}

/// Labels as people write them (`linux, docker`): trimmed, non-empty,
/// deduplicated, sorted.
pub fn parse_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

// Row helpers and messages shared by the SQLite and PostgreSQL stores, so
// both say the same thing.

/// How often a token's `last_used_ms` is written at most (every agent
/// request authenticates; a write per request would be waste).
pub(crate) const LAST_USED_GRANULARITY_MS: i64 = 10_000;

/// Labels as stored (a JSON array).
pub(crate) fn labels(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(StoreError::other)
}

/// Labels to store.
pub(crate) fn labels_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".into())
}

/// Why a fenced change was refused, in words for the agent.
pub(crate) fn fenced(job: &AgentJobRecord, epoch: i64) -> StoreError {
    StoreError::Conflict(if job.status != job_status::LEASED {
        format!(
            "job {} is {} now; the lease of epoch {epoch} is over",
            job.id, job.status
        )
    } else {
        format!(
            "job {} is leased under epoch {} now; epoch {epoch} is stale",
            job.id, job.lease_epoch
        )
    })
}

/// What a job whose lease ran out becomes: QUEUED again, or FAILED (with
/// why) when it used its last attempt or was asked to stop.
pub(crate) fn after_expiry(job: &AgentJobRecord) -> (&'static str, Option<String>) {
    if job.cancel_requested {
        let why = "the job was stopped and its agent stopped answering";
        (job_status::FAILED, Some(why.to_owned()))
    } else if job.attempts >= job.max_attempts {
        let why = format!(
            "the lease ran out on attempt {} of {}",
            job.attempts, job.max_attempts
        );
        (job_status::FAILED, Some(why))
    } else {
        (job_status::QUEUED, None)
    }
}
