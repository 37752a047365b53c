//! The plan: a pipeline declaration reduced to what executions need, with
//! no source spans, so it can be stored with every execution.
//!
//! An execution runs the plan of the pipeline version it started with; an
//! update of the pipeline changes later executions only.

use std::collections::BTreeMap;

use gantry_spec::pipeline::{
    ActionDeclaration, ConditionResult, EnvironmentVariableType, ExecutionMode,
    PipelineDeclaration, StageDeclaration, StageRetryMode,
};
use serde::{Deserialize, Serialize};

/// How executions of one pipeline share its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// One execution per stage; an execution waiting to enter a stage is
    /// replaced by a newer one that arrives at the same place.
    Superseded,
    /// One execution per stage; waiting executions enter in the order they
    /// started.
    Queued,
    /// Executions do not wait for each other.
    Parallel,
}

/// Which actions a stage retry runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryMode {
    /// Only the actions that failed (or were abandoned).
    FailedActions,
    /// Every action of the stage.
    AllActions,
}

/// What a stage does when it fails (its `onFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailurePolicy {
    /// The execution fails (the default).
    Fail,
    /// The stage is retried once, automatically, then fails.
    Retry(RetryMode),
}

/// A pipeline-level variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariablePlan {
    /// Its name, referenced as `#{variables.NAME}`.
    pub name: String,
    /// The value when a start does not give one.
    pub default_value: Option<String>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// The stage name.
    pub name: String,
    /// Its actions, in declaration order.
    pub actions: Vec<ActionPlan>,
    /// What a failure does.
    pub on_failure: FailurePolicy,
}

/// An action's environment variable (CodePipeline's list form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVarPlan {
    /// The name.
    pub name: String,
    /// The value, with `#{...}` references resolved when the action starts.
    pub value: String,
    /// `PLAINTEXT`, `PARAMETER_STORE` or `SECRETS_MANAGER`.
    pub kind: String,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPlan {
    /// The action name, unique in its stage.
    pub name: String,
    /// `Source`, `Build`, `Test`, `Approval`, ...
    pub category: String,
    /// `AWS`, `ThirdParty` or `Custom`.
    pub owner: String,
    /// `Git`, `CodeBuild`, `Manual`, ...
    pub provider: String,
    /// The action type version.
    pub version: String,
    /// Actions with equal run orders run in parallel; a higher one waits.
    pub run_order: u32,
    /// The configuration, references unresolved.
    pub configuration: BTreeMap<String, String>,
    /// Input artifact names.
    pub input_artifacts: Vec<String>,
    /// Output artifact names.
    pub output_artifacts: Vec<String>,
    /// The namespace its output variables are published under.
    pub namespace: Option<String>,
    /// `outputVariables` (for actions that declare which to keep).
    pub output_variables: Vec<String>,
    /// `timeoutInMinutes`.
    pub timeout_in_minutes: Option<u32>,
    /// `environmentVariables`.
    pub environment_variables: Vec<EnvVarPlan>,
    /// `commands` (the Commands action).
    pub commands: Vec<String>,
}

/// A pipeline version, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The pipeline name.
    pub pipeline: String,
    /// The pipeline version this plan was made from.
    pub version: u32,
    /// The execution mode.
    pub mode: Mode,
    /// Pipeline-level variables.
    pub variables: Vec<VariablePlan>,
    /// The stages, in order.
    pub stages: Vec<StagePlan>,
}

impl Plan {
    /// The plan of a (validated) declaration at `version`.
    pub fn from_declaration(decl: &PipelineDeclaration, version: u32) -> Plan {
        Plan {
            pipeline: decl.name.value.clone(),
            version,
            mode: match decl.execution_mode() {
                ExecutionMode::Superseded => Mode::Superseded,
                ExecutionMode::Queued => Mode::Queued,
                ExecutionMode::Parallel => Mode::Parallel,
            },
            variables: decl
                .variables
                .iter()
                .flatten()
                .map(|v| VariablePlan {
                    name: v.name.value.clone(),
                    default_value: v.default_value.as_ref().map(|d| d.value.clone()),
                })
                .collect(),
            stages: decl.stages.iter().map(stage_plan).collect(),
        }
    }

    /// The index of the stage called `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

fn stage_plan(stage: &StageDeclaration) -> StagePlan {
    let on_failure = match stage.on_failure.as_ref() {
        Some(f) if f.result.map(|r| r.value) == Some(ConditionResult::Retry) => {
            let mode = f
                .retry_configuration
                .as_ref()
                .and_then(|r| r.retry_mode)
                .map(|m| m.value);
            FailurePolicy::Retry(match mode {
                Some(StageRetryMode::AllActions) => RetryMode::AllActions,
                _ => RetryMode::FailedActions,
            })
        }
        _ => FailurePolicy::Fail,
    };
    StagePlan {
        name: stage.name.value.clone(),
        actions: stage.actions.iter().map(action_plan).collect(),
        on_failure,
    }
}

fn action_plan(action: &ActionDeclaration) -> ActionPlan {
    let t = &action.action_type_id;
    ActionPlan {
        name: action.name.value.clone(),
        category: t.category.value.as_str().to_owned(),
        owner: t.owner.value.as_str().to_owned(),
        provider: t.provider.value.clone(),
        version: t.version.value.clone(),
        run_order: action.run_order(),
        configuration: action
            .configuration
            .iter()
            .flat_map(|c| c.entries.iter())
            .map(|e| (e.key.value.clone(), e.value.value.clone()))
            .collect(),
        input_artifacts: action
            .inputs()
            .iter()
            .map(|a| a.name.value.clone())
            .collect(),
        output_artifacts: action
            .outputs()
            .iter()
            .map(|a| a.name.value.clone())
            .collect(),
        namespace: action.namespace.as_ref().map(|n| n.value.clone()),
        output_variables: action
            .output_variables
            .iter()
            .flatten()
            .map(|v| v.value.clone())
            .collect(),
        timeout_in_minutes: action.timeout_in_minutes.map(|t| t.value),
        environment_variables: action
            .environment_variables
            .iter()
            .flatten()
            .map(|v| EnvVarPlan {
                name: v.name.value.clone(),
                value: v.value.value.clone(),
                kind: match v.variable_type.map(|k| k.value) {
                    Some(EnvironmentVariableType::SecretsManager) => "SECRETS_MANAGER",
                    Some(EnvironmentVariableType::Plaintext) | None => "PLAINTEXT",
                }
                .to_owned(),
            })
            .collect(),
        commands: action
            .commands
            .iter()
            .flatten()
            .map(|c| c.value.clone())
            .collect(),
    }
}
