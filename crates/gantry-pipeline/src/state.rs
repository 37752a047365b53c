//! What an execution is made of, as stored and as the API reports it.
//! Status names are CodePipeline's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{EnvVarPlan, Plan};

/// `PipelineExecutionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// Running, or waiting to enter a stage.
    InProgress,
    /// A stop was asked; in-progress actions are finishing.
    Stopping,
    /// Stopped by a user.
    Stopped,
    /// Every stage succeeded.
    Succeeded,
    /// Replaced by a newer execution while waiting (SUPERSEDED mode).
    Superseded,
    /// A stage failed.
    Failed,
    /// Ended because the pipeline was deleted or changed under it.
    Cancelled,
}

impl ExecutionStatus {
    /// Whether the execution has ended (a Failed or Stopped one can still be
    /// brought back by a stage retry).
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            ExecutionStatus::InProgress | ExecutionStatus::Stopping
        )
    }

    /// The spelling in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::InProgress => "InProgress",
            ExecutionStatus::Stopping => "Stopping",
            ExecutionStatus::Stopped => "Stopped",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Superseded => "Superseded",
            ExecutionStatus::Failed => "Failed",
            ExecutionStatus::Cancelled => "Cancelled",
        }
    }
}

/// `StageExecutionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageStatus {
    /// Actions are running.
    InProgress,
    /// A stop was asked; in-progress actions are finishing.
    Stopping,
    /// Stopped.
    Stopped,
    /// Every action succeeded.
    Succeeded,
    /// An action failed.
    Failed,
    /// Never finished: its execution was cancelled.
    Cancelled,
}

impl StageStatus {
    /// The spelling in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::InProgress => "InProgress",
            StageStatus::Stopping => "Stopping",
            StageStatus::Stopped => "Stopped",
            StageStatus::Succeeded => "Succeeded",
            StageStatus::Failed => "Failed",
            StageStatus::Cancelled => "Cancelled",
        }
    }
}

/// `ActionExecutionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionStatus {
    /// Started and not yet finished.
    InProgress,
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Given up by a stop-and-abandon; a late result is ignored.
    Abandoned,
}

impl ActionStatus {
    /// The spelling in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::InProgress => "InProgress",
            ActionStatus::Succeeded => "Succeeded",
            ActionStatus::Failed => "Failed",
            ActionStatus::Abandoned => "Abandoned",
        }
    }
}

/// What started an execution (`ExecutionTrigger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Trigger {
    /// `StartPipelineExecution`, `Webhook`, `PollForSourceChanges`,
    /// `CloudWatchEvent`, `CreatePipeline`, ...
    pub trigger_type: String,
    /// Who or what: an access key, a webhook's name, a rule's ARN.
    pub trigger_detail: String,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionError {
    /// A short code, e.g. `JobFailed`, `ConfigurationError`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// One action of one stage of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ActionRun {
    /// None until it first starts.
    pub status: Option<ActionStatus>,
    /// How many times it has started (1 on the first run).
    pub attempt: u32,
    /// The id of its latest attempt (`ActionExecution.actionExecutionId`).
    pub action_execution_id: Option<String>,
    /// When the latest attempt started, epoch ms.
    pub started_ms: Option<i64>,
    /// When its status last changed, epoch ms.
    pub updated_ms: Option<i64>,
    /// The configuration the latest attempt ran with (references resolved).
    pub resolved_configuration: BTreeMap<String, String>,
    /// The environment variables it ran with (references resolved).
    pub resolved_environment: Vec<EnvVarPlan>,
    /// The input artifacts the latest attempt got: name → reference.
    pub inputs: BTreeMap<String, String>,
    /// The output artifacts it produced: name → reference.
    pub outputs: BTreeMap<String, String>,
    /// The output variables it produced.
    pub output_variables: BTreeMap<String, String>,
    /// A one-line summary of the result.
    pub summary: Option<String>,
    /// The id of what ran it outside the engine (a build id, ...).
    pub external_execution_id: Option<String>,
    /// Why it failed.
    pub error: Option<ActionError>,
}

/// One stage of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StageRun {
    /// None until the execution enters the stage.
    pub status: Option<StageStatus>,
    /// How many times the stage has been entered (retries count).
    pub attempt: u32,
    /// Whether the stage's automatic retry (onFailure RETRY) was used.
    pub auto_retried: bool,
    /// When its status last changed, epoch ms.
    pub updated_ms: Option<i64>,
    /// Its actions, in the plan's order.
    pub actions: Vec<ActionRun>,
}

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", content = "stage")]
pub enum Position {
    /// Waiting to enter the stage with this index.
    Waiting(usize),
    /// Inside the stage with this index.
    InStage(usize),
    /// Finished (see the status).
    Done,
}

/// One pipeline execution, whole: the unit the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// `pipelineExecutionId`.
    pub id: String,
    /// Start order within the pipeline, from 1 (QUEUED and SUPERSEDED
    /// compare executions by it).
    pub seq: u64,
    /// The plan of the pipeline version it runs.
    pub plan: Plan,
    /// Its status.
    pub status: ExecutionStatus,
    /// Why it is in that status, when that needs saying.
    pub status_summary: Option<String>,
    /// What started it.
    pub trigger: Trigger,
    /// Pipeline-level variables, resolved at start.
    pub variables: BTreeMap<String, String>,
    /// Source revisions asked for at start: source action name → revision.
    pub source_revisions: BTreeMap<String, String>,
    /// When it started, epoch ms.
    pub started_ms: i64,
    /// When its status last changed, epoch ms.
    pub updated_ms: i64,
    /// Where it is.
    pub position: Position,
    /// Its stages, in the plan's order.
    pub stages: Vec<StageRun>,
    /// The artifacts produced so far: name → reference.
    pub artifacts: BTreeMap<String, String>,
    /// Output variables by namespace.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Set while a stop-and-wait lets in-progress actions finish.
    pub stopping: bool,
}

impl Execution {
    /// The stage with this name and its run, when the plan has it.
    pub fn stage(&self, name: &str) -> Option<(usize, &StageRun)> {
        let i = self.plan.stage_index(name)?;
        Some((i, &self.stages[i]))
    }

    /// The action whose latest attempt has this id: (stage, action) indices.
    pub fn find_action(&self, action_execution_id: &str) -> Option<(usize, usize)> {
        self.stages.iter().enumerate().find_map(|(s, stage)| {
            stage
                .actions
                .iter()
                .position(|a| a.action_execution_id.as_deref() == Some(action_execution_id))
                .map(|a| (s, a))
        })
    }
}
