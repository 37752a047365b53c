//! Server identity and ownership of in-flight work.
//!
//! Every `gantry server` process has an id (a fresh UUID per start) and a
//! row in `servers` whose heartbeat it renews every few seconds. Builds,
//! Step Functions executions and pipeline executions record the server
//! that owns them: a store told its server's id
//! ([`ServerStore::set_server_id`]) stamps it on every build and execution
//! it creates, so no caller can forget to.
//!
//! When an owner's heartbeat is stale (it died, or stopped and never came
//! back) or its row is gone, another server takes its work over with
//! [`ServerStore::take_over`]: candidates are read, then each is moved with
//! one `UPDATE ... WHERE owner = <the dead owner>`, a compare-and-swap on
//! the previous owner, so of several servers sweeping at once exactly one
//! gets each row. Times come from the caller's clock, as leases' do.

use async_trait::async_trait;

use crate::{BuildUpdate, StoreError};

/// A server's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// Its id, new at every start.
    pub id: String,
    /// The host it runs on, for people.
    pub hostname: String,
    /// When it started (epoch ms).
    pub started_ms: i64,
    /// Its last heartbeat (epoch ms).
    pub heartbeat_ms: i64,
}

/// The kinds of work that have an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedWork {
    /// `IN_PROGRESS` builds.
    Builds,
    /// `RUNNING` Step Functions executions.
    StateMachineExecutions,
    /// Active pipeline executions.
    PipelineExecutions,
}

impl OwnedWork {
    /// The table, its key, the column grouping it (returned beside the key)
    /// and the predicate of unfinished work.
    pub(crate) fn sql(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            OwnedWork::Builds => ("builds", "id", "project", "status = 'IN_PROGRESS'"),
            OwnedWork::StateMachineExecutions => {
                ("sfn_executions", "arn", "machine_arn", "status = 'RUNNING'")
            }
            OwnedWork::PipelineExecutions => {
                ("pipeline_executions", "id", "pipeline", "active <> 0")
            }
        }
    }
}

/// What [`ServerStore::store_log_chunk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStored {
    /// The last chunk stored under the lease afterwards (0 under another).
    pub acked: u64,
    /// Whether this chunk was stored now (false: resent, out of order, or
    /// of a lease that is over).
    pub stored: bool,
}

/// A job's end, stored with its last log chunk by
/// [`ServerStore::store_last_chunk_and_finish`].
#[derive(Debug, Clone, Copy)]
pub struct JobEnd<'a> {
    /// `SUCCEEDED` or `FAILED`.
    pub status: &'a str,
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
    /// What the agent reported, kept in the row.
    pub result: &'a serde_json::Value,
    /// The job ends only when every chunk up to this one is stored.
    pub last_seq: u64,
    /// The end of the build whose log this is (the chunk's `log_id`),
    /// written as `BuildStore::update_build` writes it (by "system",
    /// audited) when the job ends in the same transaction and the build is
    /// this server's: a build run by a remote agent then ends in the
    /// commit that ends its job, not in one more.
    pub build: Option<&'a BuildUpdate>,
}

/// What [`ServerStore::store_last_chunk_and_finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAndEnd {
    /// The chunk, as [`ServerStore::store_log_chunk`] reports it.
    pub chunk: ChunkStored,
    /// Whether the job ended now (false: the lease is over, or a chunk
    /// up to `last_seq` is missing).
    pub ended: bool,
    /// Whether the build's end ([`JobEnd::build`]) was written with it
    /// (false as well when the build is another server's: it was taken
    /// over, and its owner finishes it from the job's row).
    pub build_ended: bool,
}

/// A row taken over: its key (build id, execution ARN, pipeline execution
/// id), its group (project, state machine, pipeline) and the owner it was
/// taken from (`None`: it had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    /// The row's key.
    pub id: String,
    /// The project, state machine or pipeline it belongs to.
    pub group: String,
    /// Its previous owner.
    pub previous_owner: Option<String>,
}

/// The servers table and the owners of builds and executions. Servers'
/// rows are bookkeeping renewed every few seconds and are not audited.
#[async_trait]
pub trait ServerStore: Send + Sync + 'static {
    /// Names the server this store works for: builds and executions it
    /// creates from now on are owned by `id`.
    fn set_server_id(&self, id: &str);
    /// The id given to [`ServerStore::set_server_id`], if any.
    fn server_id(&self) -> Option<String>;

    /// Returns once everything committed before the call is on disk. The
    /// server calls it before answering any request. A store whose commits
    /// are durable when they return (PostgreSQL) has nothing to wait for.
    async fn durable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Adds (or refreshes) a server's row, heartbeat `now_ms`.
    async fn register_server(
        &self,
        id: &str,
        hostname: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Renews a server's heartbeat; false when its row is gone (it was
    /// declared dead), in which case it is added again.
    async fn beat_server(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Removes a server's row: it stopped, and its unfinished work may be
    /// taken over at once rather than once its heartbeat is stale.
    async fn remove_server(&self, id: &str) -> Result<(), StoreError>;
    /// Removes every server row but `id`'s: a server that knows it is the
    /// only one (SQLite) declares its previous lives dead. Returns how many.
    async fn remove_other_servers(&self, id: &str) -> Result<u64, StoreError>;
    /// Every server row.
    async fn servers(&self) -> Result<Vec<ServerRecord>, StoreError>;

    /// Takes over the unfinished `work` whose owner is not `me` and is
    /// missing, or has no row, or whose heartbeat is older than
    /// `stale_before_ms`; each row goes to exactly one caller however many
    /// race. Returns the rows this call took.
    async fn take_over(
        &self,
        work: OwnedWork,
        me: &str,
        stale_before_ms: i64,
    ) -> Result<Vec<TakenOver>, StoreError>;
    /// The keys of the unfinished `work` owned by `me`: a server compares
    /// them with what it drives to notice work taken from it while it was
    /// paused or cut off.
    async fn owned(&self, work: OwnedWork, me: &str) -> Result<Vec<String>, StoreError>;
    /// The owner of one row of `work` (`NotFound` when there is no such row).
    async fn owner_of(&self, work: OwnedWork, id: &str) -> Result<Option<String>, StoreError>;

    /// The last log chunk stored under lease `epoch` of agent job `id`
    /// (0 under another lease).
    async fn job_log_acked(&self, id: &str, epoch: i64) -> Result<u64, StoreError>;
    /// Chunk `seq` of lease `epoch` of agent job `job_id`, in one
    /// transaction: appends `lines` to the log named `log_id` (the build's,
    /// or the job's own for a command job) and records the chunk as stored,
    /// when the job is LEASED under `epoch` and the chunk before it was the
    /// last; otherwise stores nothing. Both or neither: a crash between the
    /// two used to leave the lines stored and the chunk unacknowledged, and
    /// the agent's resend stored them again.
    async fn store_log_chunk(
        &self,
        log_id: &str,
        lines: &[String],
        job_id: &str,
        epoch: i64,
        seq: u64,
    ) -> Result<ChunkStored, StoreError>;
    /// [`store_log_chunk`](Self::store_log_chunk), then the job's end
    /// (its status, error and result, as
    /// `AgentStore::finish_agent_job_with_result` writes them) when it is
    /// still LEASED under `epoch` and every chunk up to `end.last_seq` is
    /// stored, all in one transaction: a job whose last chunk came inside
    /// its result costs one commit, not two. The chunk is stored (or not)
    /// whether or not the job ends.
    async fn store_last_chunk_and_finish(
        &self,
        log_id: &str,
        lines: &[String],
        job_id: &str,
        epoch: i64,
        seq: u64,
        end: &JobEnd<'_>,
    ) -> Result<ChunkAndEnd, StoreError>;
    /// Keeps the result an agent sent under lease `epoch` (fenced: `Conflict`
    /// when the job is no longer leased under it). A new lease clears it.
    async fn record_job_result(
        &self,
        id: &str,
        epoch: i64,
        result: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// The result kept for the job's current lease, if any.
    async fn job_result(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError>;
}

/// This host's name, for the servers table.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
