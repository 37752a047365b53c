/*!
Gantry's durable store: everything the control plane must not lose.

The server talks to the database only through the [`Store`] trait, which is
kept as narrow as the server's needs. It has two implementations, run by the
same test suite: [`SqliteStore`], the embedded one (one SQLite file in WAL
mode, migrations from `migrations/sqlite/`), and [`PgStore`], for several
servers sharing one PostgreSQL database (migrations from
`migrations/postgres/`, with [`LeaderStore`] electing the one server that
runs schedules and timers). Access-key and other secrets are encrypted at
rest with XChaCha20-Poly1305 under a key file ([`MasterKey`]).

Every change goes into the audit log (who, what, when) in the same
transaction as the change itself, so the log never claims a change that did
not happen nor misses one that did.

# Example

```
# tokio::runtime::Runtime::new().unwrap().block_on(async {
use gantry_store::{BuildStore, MasterKey, NewProject, SqliteStore, StoreError};

let dir = tempfile::tempdir().unwrap();
let key = MasterKey::load_or_create(&dir.path().join("secret.key")).unwrap();
let store = SqliteStore::open(&dir.path().join("gantry.db"), key).await.unwrap();

let project = NewProject { name: "web".into(), project: serde_json::json!({"name": "web"}) };
store.create_project(&project, "admin").await.unwrap();
let again = store.create_project(&project, "admin").await;
assert!(matches!(again, Err(StoreError::Conflict(_))));
assert_eq!(store.get_project("web").await.unwrap().name, "web");
assert!(matches!(store.get_project("api").await, Err(StoreError::NotFound)));
# });
```
*/
#![deny(missing_docs)]

mod agents;
mod crypto;
mod custom_actions;
mod events;
mod executions;
mod leader;
mod model;
mod pipelines;
mod postgres;
mod servers;
mod sqlite;
pub mod testing;
mod workflows;

pub use agents::{
    AgentJobRecord, AgentRecord, AgentStore, AgentTokenRecord, ExpiredLease, JobState, NewAgentJob,
    OfferableJob, QueueFeed, QueueNews, job_status, labels_match, parse_labels,
};
pub use crypto::{CryptoError, MasterKey};
pub use custom_actions::{
    CustomActionStore, CustomActionTypeRecord, JobCredentials, JobOutcome, JobRecord, NewJob,
};
pub use events::{
    ApiDestinationRecord, ConnectionRecord, DeadLetterRecord, DeliveryRecord, EventStore,
    NewConnection, NewDelivery, NewRule, RuleRecord, RuleTargets, TargetRecord,
};
pub use executions::*;
pub use leader::{LeaderStore, LeaseRecord};
pub use model::*;
pub use pipelines::{
    DisabledTransition, NewPipeline, NewWebhook, PipelineRecord, PipelineStore,
    PipelineSummaryRecord, TransitionType, WebhookRecord, WebhookWithSecret,
};
pub use postgres::{PING_WHEN_IDLE_FOR, PgStore};
pub use servers::{
    ChunkAndEnd, ChunkStored, JobEnd, OwnedWork, ServerRecord, ServerStore, TakenOver, hostname,
};
pub use sqlite::SqliteStore;
pub use workflows::*;

use async_trait::async_trait;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the operation names does not exist.
    #[error("not found")]
    NotFound,
    /// The operation would break a uniqueness rule (e.g. a project name taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: the database, the disk, a corrupt row, a bad key file.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps any error as [`StoreError::Other`].
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Other(Box::new(e))
    }
}

/// The store, as the server sees it: one trait per domain, so each domain's
/// rows and methods live in files of their own (`pipelines.rs`,
/// `workflows.rs`, `events.rs` and their `sqlite/` and `postgres/` counterparts).
///
/// Any type that implements every domain's trait is a `Store`.
pub trait Store:
    BuildStore
    + PipelineStore
    + ExecutionStore
    + WorkflowStore
    + EventStore
    + LeaderStore
    + CustomActionStore
    + AgentStore
    + ServerStore
{
}

impl<T> Store for T where
    T: BuildStore
        + PipelineStore
        + ExecutionStore
        + WorkflowStore
        + EventStore
        + LeaderStore
        + CustomActionStore
        + AgentStore
        + ServerStore
{
}

/// Access keys, CodeBuild projects and builds, build logs, and the audit log.
///
/// Methods that change something take the `actor` (an access key id, or
/// `"system"` for the server's own work) and write the audit log in the
/// same transaction. Log lines are output, not changes, and are not audited.
#[async_trait]
pub trait BuildStore: Send + Sync + 'static {
    // Access keys.

    /// Stores a new access key, its secret encrypted. `Conflict` when the
    /// id exists.
    async fn create_access_key(&self, key: &NewAccessKey, actor: &str) -> Result<(), StoreError>;
    /// The decrypted secret of an access key, for SigV4 verification.
    async fn access_key_secret(&self, access_key_id: &str) -> Result<String, StoreError>;
    /// How many access keys exist (zero on a new database).
    async fn count_access_keys(&self) -> Result<u64, StoreError>;

    // Projects.

    /// Creates a project. `Conflict` when the name is taken.
    async fn create_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError>;
    /// Replaces a project's JSON. `NotFound` when it does not exist.
    async fn update_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError>;
    /// One project by name.
    async fn get_project(&self, name: &str) -> Result<ProjectRecord, StoreError>;
    /// The projects among `names` that exist, in the order of `names`.
    async fn get_projects(&self, names: &[String]) -> Result<Vec<ProjectRecord>, StoreError>;
    /// Deletes a project; its builds stay, and a project created again
    /// under the same name numbers its builds on from the last one.
    async fn delete_project(&self, name: &str, actor: &str) -> Result<(), StoreError>;
    /// Every project name, sorted as asked.
    async fn list_projects(
        &self,
        sort: ProjectSort,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError>;

    // Builds.

    /// Records a new build and assigns its number, atomically: numbers are
    /// unique and increasing per project. `NotFound` when the project does
    /// not exist, `Conflict` when the id is taken.
    async fn create_build(&self, build: &NewBuild, actor: &str) -> Result<BuildRecord, StoreError>;
    /// Changes a build's state (status, current phase, JSON, end time).
    /// `Conflict` when the store's server ([`ServerStore::set_server_id`])
    /// is not the build's owner: another server took it over.
    async fn update_build(
        &self,
        id: &str,
        update: &BuildUpdate,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// The builds among `ids` that exist, in the order of `ids`.
    async fn get_builds(&self, ids: &[String]) -> Result<Vec<BuildRecord>, StoreError>;
    /// The ids of a project's builds, by build number.
    async fn list_builds_for_project(
        &self,
        project: &str,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError>;
    /// The builds in a status, e.g. `IN_PROGRESS` on start-up.
    async fn builds_with_status(&self, status: &str) -> Result<Vec<BuildRecord>, StoreError>;

    // Build logs.

    /// Appends lines to a build's log; returns the sequence number of the
    /// last line appended (lines are numbered from 1).
    async fn append_log_lines(&self, build_id: &str, lines: &[String]) -> Result<u64, StoreError>;
    /// Up to `limit` lines after sequence number `after`.
    async fn log_lines(
        &self,
        build_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError>;
    /// Where byte `offset` of the log text falls, the text being every line
    /// followed by `\n`: the last line that ends at or before `offset`
    /// (0 when none does) and the byte offset where the line after it
    /// begins. A reader resumes by reading lines after `after_seq` and
    /// skipping `offset - line_start` bytes of the first.
    async fn log_seek(&self, build_id: &str, offset: u64) -> Result<LogSeek, StoreError>;
    /// Records that each build's log was stored as the object its
    /// `archive` names and deletes its lines numbered up to `through_seq`,
    /// every move in one transaction (many builds' moves cost one commit):
    /// call it only once the objects are safely written. A second move of a
    /// log replaces the record (a log archived again, with lines that came
    /// late, in a bigger object).
    async fn archive_logs(&self, moves: &[LogMove]) -> Result<(), StoreError>;
    /// Where the build's log was archived, if it was.
    async fn log_archive(&self, build_id: &str) -> Result<Option<LogArchive>, StoreError>;
    /// [`BuildStore::log_archive`] of each of `build_ids`, in one query: the
    /// records of those that were archived, in any order.
    async fn log_archives(&self, build_ids: &[String]) -> Result<Vec<LogArchive>, StoreError>;
    /// The first lines of the logs of `build_ids`, in one query: at most
    /// `limit` in all, ordered by build id and then by line number, each
    /// with its build's id. When `limit` lines come back, the last build's
    /// log may go on, and the logs of builds after it (by id) were not read.
    async fn first_log_lines(
        &self,
        build_ids: &[String],
        limit: u32,
    ) -> Result<Vec<(String, LogLine)>, StoreError>;
    /// Up to `limit` builds that have ended (any status but `IN_PROGRESS`)
    /// and still have log lines in the database: logs whose move to the
    /// artifact store has not finished.
    async fn builds_with_unarchived_logs(&self, limit: u32) -> Result<Vec<String>, StoreError>;

    // Audit.

    /// Records a request that changes nothing in the store by itself (e.g.
    /// StopBuild: the build's own update follows when it has stopped).
    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// The newest `limit` audit entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}
