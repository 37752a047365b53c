//! The store's methods for pipeline executions: each execution whole (the
//! engine's JSON), one row per action attempt for ListActionExecutions, the
//! pipeline runtime's meta row, and manual approvals.
//!
//! The store does not interpret the engine's JSON; the server writes
//! everything one engine step changed in one call, which is one
//! transaction, before it acts on that step.

use async_trait::async_trait;

use crate::{BuildRecord, NewBuild, StoreError};

/// An execution as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineExecutionRecord {
    /// `pipelineExecutionId`.
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// Start order within the pipeline.
    pub seq: u64,
    /// `InProgress`, `Succeeded`, ...
    pub status: String,
    /// Whether the execution still runs (InProgress or Stopping).
    pub active: bool,
    /// When it started, epoch ms.
    pub start_ms: i64,
    /// When its status last changed, epoch ms.
    pub update_ms: i64,
    /// The engine's execution, as JSON.
    pub body: serde_json::Value,
}

/// One attempt of one action, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionExecutionRecord {
    /// `actionExecutionId`.
    pub id: String,
    /// The pipeline.
    pub pipeline: String,
    /// The execution.
    pub execution_id: String,
    /// The stage name.
    pub stage: String,
    /// The action name.
    pub action: String,
    /// The attempt number within the execution.
    pub attempt: u32,
    /// `InProgress`, `Succeeded`, `Failed`, `Abandoned`.
    pub status: String,
    /// When it started, epoch ms.
    pub start_ms: i64,
    /// When it last changed, epoch ms.
    pub update_ms: i64,
    /// The attempt's details, as the server shows them.
    pub body: serde_json::Value,
}

/// A manual approval waiting for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    /// The token PutApprovalResult must give (stored as given: it is not a
    /// credential, only a guard against answering a stale approval).
    pub token: String,
    /// The pipeline.
    pub pipeline: String,
    /// The execution.
    pub execution_id: String,
    /// The stage.
    pub stage: String,
    /// The action.
    pub action: String,
    /// The attempt it belongs to.
    pub action_execution_id: String,
    /// When it expires, epoch ms.
    pub expires_ms: i64,
    /// `Approved` or `Rejected` once answered.
    pub result: Option<String>,
}

/// Everything one engine step changed, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionChanges {
    /// The pipeline.
    pub pipeline: String,
    /// The runtime's meta row, when it changed.
    pub meta: Option<serde_json::Value>,
    /// The executions that changed.
    pub executions: Vec<PipelineExecutionRecord>,
    /// The action attempts that changed.
    pub actions: Vec<ActionExecutionRecord>,
    /// Builds created with this step, each with the actor recorded for
    /// it: a build action's first build, stored with the step that starts
    /// the action so the two cost one commit. Owned by this server, like
    /// [`BuildStore::create_build`](crate::BuildStore::create_build)'s.
    pub builds: Vec<(NewBuild, String)>,
}

/// Pipeline executions, action attempts, runtime meta rows and approvals.
#[async_trait]
pub trait ExecutionStore: Send + Sync + 'static {
    /// Writes one engine step's changes (upserts) and an audit row naming
    /// `what` when it is not empty, in one transaction. Gives the builds
    /// created ([`ExecutionChanges::builds`]), in order.
    async fn save_execution_changes(
        &self,
        changes: &ExecutionChanges,
        actor: &str,
        what: &str,
    ) -> Result<Vec<BuildRecord>, StoreError>;
    /// A pipeline's meta row and its active executions.
    async fn load_runtime(
        &self,
        pipeline: &str,
    ) -> Result<(Option<serde_json::Value>, Vec<PipelineExecutionRecord>), StoreError>;
    /// The pipelines that have active executions (to resume on start).
    async fn pipelines_with_active_executions(&self) -> Result<Vec<String>, StoreError>;
    /// One execution.
    async fn get_pipeline_execution(
        &self,
        pipeline: &str,
        id: &str,
    ) -> Result<PipelineExecutionRecord, StoreError>;
    /// A pipeline's executions, newest first.
    async fn list_pipeline_executions(
        &self,
        pipeline: &str,
        limit: u32,
    ) -> Result<Vec<PipelineExecutionRecord>, StoreError>;
    /// A pipeline's action attempts, newest first, optionally of one execution.
    async fn list_action_executions(
        &self,
        pipeline: &str,
        execution_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ActionExecutionRecord>, StoreError>;
    /// Records an approval waiting for an answer (idempotent on the token).
    async fn put_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;
    /// The unanswered approval of an action attempt.
    async fn approval_for_attempt(
        &self,
        action_execution_id: &str,
    ) -> Result<ApprovalRecord, StoreError>;
    /// Marks an approval answered; `Conflict` when it already was.
    async fn answer_approval(
        &self,
        token: &str,
        result: &str,
        actor: &str,
    ) -> Result<(), StoreError>;
}
