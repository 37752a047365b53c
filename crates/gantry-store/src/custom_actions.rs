//! CodePipeline custom action types, the jobs their actions create for job
//! workers, and the short-lived artifact credentials of those jobs.
//!
//! The store keeps the rows and makes the state changes atomic (one worker
//! wins a job, one result finishes it); the server decides what the JSON
//! holds.

use async_trait::async_trait;

use crate::StoreError;

/// A custom action type as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomActionTypeRecord {
    /// `Source`, `Build`, ...
    pub category: String,
    /// The provider name.
    pub provider: String,
    /// The version.
    pub version: String,
    /// The type as `ListActionTypes` prints it (settings, properties,
    /// artifact counts).
    pub definition: serde_json::Value,
    /// Whether DeleteCustomActionType marked it deleted.
    pub deleted: bool,
    /// When it was created.
    pub created_ms: i64,
}

/// A job of a custom action attempt, to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The job id (a UUID).
    pub id: String,
    /// Its first nonce.
    pub nonce: String,
    /// The action type's category.
    pub category: String,
    /// The action type's provider.
    pub provider: String,
    /// The action type's version.
    pub version: String,
    /// The value of the type's queryable property in the action, if any.
    pub query_value: Option<String>,
    /// The pipeline.
    pub pipeline: String,
    /// The execution.
    pub execution_id: String,
    /// The stage.
    pub stage: String,
    /// The action.
    pub action: String,
    /// The action attempt the job belongs to.
    pub action_execution_id: String,
    /// The job's `JobData`, without credentials (secrets included: only the
    /// worker API reads it).
    pub data: serde_json::Value,
    /// Which artifact objects the job may read and write.
    pub objects: serde_json::Value,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// What was written.
    pub job: NewJob,
    /// `Queued`, `Dispatched`, `InProgress`, `Succeeded`, `Failed`, `TimedOut`.
    pub status: String,
    /// The result a worker sent, once finished.
    pub result: Option<serde_json::Value>,
    /// When it was queued.
    pub created_ms: i64,
    /// When it was last handed to a worker.
    pub dispatched_ms: Option<i64>,
    /// When it last changed.
    pub update_ms: i64,
}

/// Artifact credentials handed to a worker for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The job they are for.
    pub job_id: String,
    /// The secret access key (encrypted at rest).
    pub secret: String,
    /// The SHA-256 (hex) of the session token; the token itself is not kept.
    pub session_token_sha256: String,
    /// When they stop working.
    pub expires_ms: i64,
}

/// How a job ended, for [`CustomActionStore::finish_job`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// `Succeeded` or `Failed`.
    pub status: String,
    /// The worker's result as the server records it.
    pub result: serde_json::Value,
    /// The job a continuation token queues, written in the same transaction.
    pub next: Option<NewJob>,
}

/// Custom action types, jobs and job credentials.
#[async_trait]
pub trait CustomActionStore: Send + Sync + 'static {
    /// Stores a new type. `Conflict` when the category/provider/version
    /// exists, deleted or not; `Conflict` too when `max_live` types that
    /// are not deleted exist already (the message says which).
    async fn create_custom_action_type(
        &self,
        record: &CustomActionTypeRecord,
        max_live: u32,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Every type, deleted ones included, by category, provider, version.
    async fn custom_action_types(&self) -> Result<Vec<CustomActionTypeRecord>, StoreError>;
    /// One type, deleted or not.
    async fn get_custom_action_type(
        &self,
        category: &str,
        provider: &str,
        version: &str,
    ) -> Result<CustomActionTypeRecord, StoreError>;
    /// Marks a type deleted. `NotFound` when there is no such live type.
    async fn delete_custom_action_type(
        &self,
        category: &str,
        provider: &str,
        version: &str,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Queues a job. `Conflict` when the id is taken.
    async fn create_job(&self, job: &NewJob) -> Result<(), StoreError>;
    /// One job.
    async fn get_job(&self, id: &str) -> Result<JobRecord, StoreError>;
    /// The jobs of an action attempt, oldest first.
    async fn jobs_for_attempt(
        &self,
        action_execution_id: &str,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// Hands up to `nonces.len()` jobs of a type to a worker, oldest first:
    /// queued ones, and dispatched ones not acknowledged since
    /// `redispatch_before_ms` (their worker is taken to be gone). Each gets
    /// the next nonce of `nonces` and becomes `Dispatched`, atomically, so
    /// two polls never get the same job with the same nonce. `query_value`
    /// selects jobs whose queryable property has that value.
    async fn dispatch_jobs(
        &self,
        category: &str,
        provider: &str,
        version: &str,
        query_value: Option<&str>,
        nonces: &[String],
        redispatch_before_ms: i64,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// `Dispatched` → `InProgress` when `nonce` is the job's nonce; returns
    /// the job. `NotFound` for no such job; `Conflict` when the nonce is
    /// not (or no longer) the job's, or the job is not `Dispatched`.
    async fn acknowledge_job(&self, id: &str, nonce: &str) -> Result<JobRecord, StoreError>;
    /// Ends a `Dispatched` or `InProgress` job and queues `outcome.next`,
    /// in one transaction. `NotFound` for no such job; `Conflict` when it
    /// is in another state.
    async fn finish_job(
        &self,
        id: &str,
        outcome: &JobOutcome,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Sets every open job (`Queued`, `Dispatched`, `InProgress`) of an
    /// attempt to `status` (`TimedOut` or `Failed`); returns how many.
    async fn close_open_jobs(
        &self,
        action_execution_id: &str,
        status: &str,
    ) -> Result<u64, StoreError>;

    /// Stores credentials (the secret encrypted) and forgets expired ones.
    async fn put_job_credentials(&self, credentials: &JobCredentials) -> Result<(), StoreError>;
    /// Credentials by access key id, the secret decrypted.
    async fn job_credentials(&self, access_key_id: &str) -> Result<JobCredentials, StoreError>;
}
