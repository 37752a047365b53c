//! The store's methods for Step Functions state machines, their executions and journals.
//!
//! An execution is stored as its **journal** (the interpreter's input events, in
//! order), the **history** those events produced (what `GetExecutionHistory`
//! returns), its pending **timers** and its **task tokens** (by hash only). The
//! server appends one journal entry with everything it caused in one transaction
//! ([`WorkflowStore::append_journal`]) before it acts on it, so a restart replays
//! exactly the transitions that happened.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

/// A state machine to create.
#[derive(Debug, Clone)]
pub struct NewStateMachine {
    /// Its name (unique).
    pub name: String,
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    pub arn: String,
    /// The Amazon States Language text, as given.
    pub definition: String,
    /// `roleArn`.
    pub role_arn: String,
    /// `STANDARD` or `EXPRESS`.
    pub machine_type: String,
    /// A fresh revision id.
    pub revision_id: String,
    /// Creation time.
    pub created_ms: i64,
}

/// A change to a state machine; `None` keeps the current value.
#[derive(Debug, Clone)]
pub struct StateMachineUpdate {
    /// The new definition.
    pub definition: Option<String>,
    /// The new role.
    pub role_arn: Option<String>,
    /// The new revision id.
    pub revision_id: String,
    /// Update time.
    pub updated_ms: i64,
}

/// A stored state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineRecord {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The definition text.
    pub definition: String,
    /// `roleArn`.
    pub role_arn: String,
    /// `STANDARD` or `EXPRESS`.
    pub machine_type: String,
    /// 1 on creation, +1 per update.
    pub revision: u64,
    /// `revisionId`.
    pub revision_id: String,
    /// `ACTIVE`.
    pub status: String,
    /// Created.
    pub created_ms: i64,
    /// Last updated.
    pub updated_ms: i64,
}

/// An execution to create, with the state machine revision it runs.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// `arn:aws:states:<region>:<account>:execution:<machine>:<name>`.
    pub arn: String,
    /// Its name (unique per state machine).
    pub name: String,
    /// The state machine's ARN.
    pub machine_arn: String,
    /// The definition it runs.
    pub definition: String,
    /// The state machine's revision it runs.
    pub revision: u64,
    /// The role.
    pub role_arn: String,
    /// The input JSON text.
    pub input: String,
    /// Start time.
    pub start_ms: i64,
}

/// A stored execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// The state machine's ARN.
    pub machine_arn: String,
    /// The definition it runs.
    pub definition: String,
    /// The revision it runs.
    pub revision: u64,
    /// The role.
    pub role_arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// Input JSON text.
    pub input: String,
    /// Output JSON text (SUCCEEDED).
    pub output: Option<String>,
    /// Error (FAILED, TIMED_OUT, ABORTED).
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
    /// Started.
    pub start_ms: i64,
    /// Stopped.
    pub stop_ms: Option<i64>,
}

/// How an execution ended, written with the journal entry that ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionCompletion {
    /// The final status.
    pub status: String,
    /// Output JSON text.
    pub output: Option<String>,
    /// Error.
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
    /// When.
    pub stop_ms: i64,
}

/// One AWS-shaped history event.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// 1-based, per execution.
    pub id: u64,
    /// When.
    pub at_ms: i64,
    /// `ExecutionStarted`, `TaskScheduled`, ...
    pub event_type: String,
    /// The event before it.
    pub previous_id: Option<u64>,
    /// The interpreter's details (the server renders them as `*EventDetails`).
    pub details: Value,
}

/// A task token issued by one journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskToken {
    /// SHA-256 of the token, hex. The token itself is never stored.
    pub token_hash: String,
    /// The Task state's name.
    pub state_name: String,
    /// 0 for the first attempt of the state's current entry, +1 per retry.
    pub attempt: u64,
}

/// A stored task token.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTokenRecord {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The execution it belongs to.
    pub execution_arn: String,
    /// The Task state's name.
    pub state_name: String,
    /// The attempt.
    pub attempt: u64,
    /// `PENDING` or `CLOSED`.
    pub status: String,
    /// What the task started (e.g. a build id), once known.
    pub handle: Option<String>,
}

/// One journal entry and everything it caused, written in one transaction.
#[derive(Debug, Clone)]
pub struct JournalAppend {
    /// The execution.
    pub execution_arn: String,
    /// This entry's sequence number (1-based). A second append with the same number
    /// fails with `Conflict`, so a transition is never recorded twice.
    pub seq: u64,
    /// When.
    pub at_ms: i64,
    /// The event, as the server serialises it.
    pub event: Value,
    /// The history events it produced (ids continue the execution's).
    pub history: Vec<HistoryRecord>,
    /// Timers started: (id, fire time).
    pub timers_started: Vec<(String, i64)>,
    /// Timers fired or cancelled.
    pub timers_removed: Vec<String>,
    /// Task tokens issued.
    pub tokens_opened: Vec<NewTaskToken>,
    /// Task tokens (hashes) whose task is over.
    pub tokens_closed: Vec<String>,
    /// Set when the entry ends the execution.
    pub completion: Option<ExecutionCompletion>,
    /// Who caused it (an access key id, or `system`).
    pub actor: String,
    /// When set, an audit row `(actor, action, execution)` is written too.
    pub audit_action: Option<String>,
    /// The inbox entry this entry applies, if it came from the inbox: it is
    /// marked `APPLIED` in the same transaction, so it is applied once.
    pub inbox_id: Option<i64>,
}

/// One stored journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// Sequence number.
    pub seq: u64,
    /// When.
    pub at_ms: i64,
    /// The event.
    pub event: Value,
}

/// An event for an execution, received by a server that does not hold the
/// execution: recorded for its owner to apply (see
/// [`WorkflowStore::post_to_inbox`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewInboxEntry {
    /// The execution.
    pub execution_arn: String,
    /// SendTaskSuccess/Failure's token hash: one such entry per token.
    /// `None` (heartbeats, stops) may repeat.
    pub dedup: Option<String>,
    /// The event as the journal stores it (a token by its hash only).
    pub event: Value,
    /// Who sent it.
    pub actor: String,
    /// The audit action to write when it is applied.
    pub audit_action: Option<String>,
    /// When it was received.
    pub created_ms: i64,
}

/// A recorded event not applied yet.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// Its id, to settle it.
    pub id: i64,
    /// The execution.
    pub execution_arn: String,
    /// The event as the journal stores it.
    pub event: Value,
    /// Who sent it.
    pub actor: String,
    /// The audit action to write when it is applied.
    pub audit_action: Option<String>,
}

/// What became of an inbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Not applied yet, and its execution is still running.
    Pending,
    /// Applied: its journal entry is written.
    Applied,
    /// Not applied: the task or the execution had ended when the owner got
    /// to it (or the execution ended with the entry still pending).
    Refused,
}

/// What the inbox calls an entry's outcome in its `outcome` column.
pub(crate) const INBOX_APPLIED: &str = "APPLIED";
/// The column's value for a refused entry.
pub(crate) const INBOX_REFUSED: &str = "REFUSED";

/// Step Functions state machines, their executions and journals.
///
/// **Owners and the inbox.** A store told its server's id
/// ([`ServerStore::set_server_id`](crate::ServerStore::set_server_id))
/// appends journal entries only to executions that server owns: an entry
/// for an execution another server took over is refused with `Conflict`,
/// so a server that was paused (or cut off from the database) past its
/// heartbeat's time to live cannot advance, end or duplicate a step of
/// work that is no longer its own. Events that reach a server not holding
/// the execution go to the execution's **inbox**, which its owner reads
/// ([`WorkflowStore::inbox_for_owner`]) and applies.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Creates a state machine (revision 1, `ACTIVE`). `Conflict` when the name is taken.
    async fn create_state_machine(
        &self,
        machine: &NewStateMachine,
        actor: &str,
    ) -> Result<StateMachineRecord, StoreError>;
    /// Changes a state machine's definition and/or role. `NotFound` when it does not exist.
    async fn update_state_machine(
        &self,
        arn: &str,
        update: &StateMachineUpdate,
        actor: &str,
    ) -> Result<StateMachineRecord, StoreError>;
    /// One state machine.
    async fn get_state_machine(&self, arn: &str) -> Result<StateMachineRecord, StoreError>;
    /// Deletes a state machine (its executions stay). Deleting one that does not exist
    /// succeeds, as AWS's DeleteStateMachine does.
    async fn delete_state_machine(&self, arn: &str, actor: &str) -> Result<(), StoreError>;
    /// Every state machine, by name.
    async fn list_state_machines(&self) -> Result<Vec<StateMachineRecord>, StoreError>;

    /// Creates an execution with its first journal entry (`Started`). `Conflict` when
    /// the ARN is taken.
    async fn create_execution(
        &self,
        execution: &NewExecution,
        first: &JournalAppend,
        actor: &str,
    ) -> Result<(), StoreError>;
    /// Appends one journal entry with its history, timers, tokens and completion.
    /// `Conflict` when `seq` is already taken, `NotFound` when the execution does not
    /// exist or has already ended.
    async fn append_journal(&self, entry: &JournalAppend) -> Result<(), StoreError>;
    /// Appends several entries (of any executions) in one transaction, each as
    /// [`append_journal`](WorkflowStore::append_journal) would: one result per entry,
    /// and a refused entry changes nothing while the others are written.
    async fn append_journals(
        &self,
        entries: &[JournalAppend],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
    /// One execution.
    async fn get_execution(&self, arn: &str) -> Result<ExecutionRecord, StoreError>;
    /// Executions, newest first, of one state machine and/or in one status.
    async fn list_executions(
        &self,
        machine_arn: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// An execution's journal, in order.
    async fn journal(&self, execution_arn: &str) -> Result<Vec<JournalEntry>, StoreError>;
    /// An execution's history, in order.
    async fn history(&self, execution_arn: &str) -> Result<Vec<HistoryRecord>, StoreError>;
    /// An execution's pending timers: (id, fire time).
    async fn timers(&self, execution_arn: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// A task token by its hash.
    async fn task_token(&self, token_hash: &str) -> Result<TaskTokenRecord, StoreError>;
    /// Records what a task started (e.g. a build id). `NotFound` for an unknown hash.
    async fn set_task_handle(&self, token_hash: &str, handle: &str) -> Result<(), StoreError>;

    /// Records an event for a RUNNING execution's owner; returns the entry's id.
    /// `NotFound` when the execution is not running, `Conflict` when an entry
    /// with the same `dedup` was recorded before (the callback was sent twice).
    async fn post_to_inbox(&self, entry: &NewInboxEntry) -> Result<i64, StoreError>;
    /// The entries not applied yet of the RUNNING executions `owner` owns,
    /// oldest first.
    async fn inbox_for_owner(&self, owner: &str) -> Result<Vec<InboxEntry>, StoreError>;
    /// Marks an entry refused, unless it was settled already or its
    /// execution is no longer this store's server's (its new owner decides).
    async fn refuse_inbox_entry(&self, id: i64, at_ms: i64) -> Result<(), StoreError>;
    /// What became of an entry (`NotFound` once pruned).
    async fn inbox_outcome(&self, id: i64) -> Result<InboxOutcome, StoreError>;
    /// Deletes the entries settled before `before_ms`, and those left pending
    /// by executions that ended and were received before it.
    async fn prune_inbox(&self, before_ms: i64) -> Result<u64, StoreError>;
}
