//! The `Invoke`/`AWS`/`StepFunctions` action provider: starts an execution
//! of a state machine on this server and waits for it to end.
//!
//! As in CodePipeline, the execution is named after the attempt (the
//! action execution id, after `ExecutionNamePrefix` and a hyphen when one is
//! set), so running the attempt again after a restart finds the execution
//! it started instead of starting a second one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gantry_artifacts::ArtifactRef;
use gantry_pipeline::{ActionError, ActionJob, Input};
use gantry_store::{ExecutionRecord, Store, StoreError};
use serde_json::json;

use super::providers::{ProviderContext, failed, materialize, put_dir, scratch_dir};
use crate::router::AppState;
use crate::stepfunctions::executions::{StartInput, start};

/// How often a running execution is checked.
const POLL: Duration = Duration::from_millis(200);

/// The file an output artifact holds: the execution's output JSON.
pub(crate) const OUTPUT_FILE: &str = "output.json";

/// The execution's name: the attempt's id, after the prefix when set.
fn execution_name(job: &ActionJob) -> String {
    match job.configuration.get("ExecutionNamePrefix") {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}-{}", job.action_execution_id),
        _ => job.action_execution_id.clone(),
    }
}

/// The execution's input: `Input` itself (`InputType` `Literal`, the
/// default), or the file it names in the input artifact (`FilePath`).
async fn execution_input(cx: &ProviderContext, job: &ActionJob) -> Result<String, String> {
    let kind = job
        .configuration
        .get("InputType")
        .map(String::as_str)
        .unwrap_or("Literal");
    let text = match kind {
        "Literal" => job
            .configuration
            .get("Input")
            .cloned()
            .unwrap_or_else(|| "{}".into()),
        "FilePath" => {
            let path = job
                .configuration
                .get("Input")
                .ok_or("InputType FilePath needs Input, the file's path in the input artifact")?;
            let (name, reference) = job
                .input_artifacts
                .iter()
                .next()
                .ok_or("InputType FilePath needs an input artifact")?;
            read_artifact_file(cx, job, name, reference, path).await?
        }
        other => {
            return Err(format!(
                "InputType is {other}; expected Literal or FilePath"
            ));
        }
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("the execution input is not JSON: {e}"))?;
    Ok(text)
}

async fn read_artifact_file(
    cx: &ProviderContext,
    job: &ActionJob,
    name: &str,
    reference: &str,
    path: &str,
) -> Result<String, String> {
    let r = reference
        .parse::<ArtifactRef>()
        .map_err(|_| format!("input artifact {name}: bad reference {reference}"))?;
    let scratch = scratch_dir(cx, job)?;
    let dir = scratch.path().join(name);
    materialize(&cx.artifacts, &r, &dir)
        .await
        .map_err(|e| format!("input artifact {name}: {e}"))?;
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "Input {path} must be a path inside the input artifact"
        ));
    }
    std::fs::read_to_string(dir.join(relative))
        .map_err(|e| format!("reading {path} from input artifact {name}: {e}"))
}

/// Runs the attempt: start (or find) the execution, wait for its end.
pub(super) async fn invoke<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<Input> {
    let Some(machine) = job.configuration.get("StateMachineArn") else {
        return failed(job, "ConfigurationError", "StateMachineArn is required");
    };
    let input = match execution_input(cx, job).await {
        Ok(text) => text,
        Err(message) => return failed(job, "ConfigurationError", message),
    };
    let start_input = StartInput {
        state_machine_arn: machine.clone(),
        name: Some(execution_name(job)),
        input: Some(input),
    };
    let actor = format!("codepipeline/{}", job.pipeline);
    let arn = match start(state, &actor, start_input).await {
        Ok(started) => started["executionArn"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        // Started before a restart, and already ended: its result stands.
        Err(e) if e.error.code.as_str() == "ExecutionAlreadyExists" => {
            match e.error.message.split('\'').nth(1) {
                Some(arn) => arn.to_owned(),
                None => return failed(job, "JobFailed", e.error.message),
            }
        }
        Err(e) => {
            return failed(
                job,
                "JobFailed",
                format!("starting an execution of {machine}: {}", e.error.message),
            );
        }
    };
    cx.remember_execution(&job.action_execution_id, &arn);
    let record = loop {
        match state.store.get_execution(&arn).await {
            Ok(x) if x.status != "RUNNING" => break x,
            Ok(_) => tokio::time::sleep(POLL).await,
            Err(StoreError::NotFound) => {
                return failed(job, "JobFailed", format!("execution {arn} disappeared"));
            }
            Err(e) => return failed(job, "JobFailed", format!("reading execution {arn}: {e}")),
        }
    };
    cx.forget_execution(&job.action_execution_id);
    outcome(cx, job, machine, record).await
}

async fn outcome(
    cx: &ProviderContext,
    job: &ActionJob,
    machine: &str,
    record: ExecutionRecord,
) -> Option<Input> {
    let external = Some(record.arn.clone());
    if record.status != "SUCCEEDED" {
        let mut message = format!("Execution {} ended {}", record.arn, record.status);
        for part in [&record.error, &record.cause].into_iter().flatten() {
            message.push_str(": ");
            message.push_str(part);
        }
        return Some(Input::ActionFailed {
            execution_id: job.execution_id.clone(),
            action_execution_id: job.action_execution_id.clone(),
            error: ActionError {
                code: "JobFailed".into(),
                message,
            },
            external_execution_id: external,
        });
    }
    let mut outputs = BTreeMap::new();
    if let Some(name) = job.output_artifacts.first() {
        let stored = async {
            let scratch = scratch_dir(cx, job)?;
            let dir = scratch.path().join("output");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let output = record.output.as_deref().unwrap_or("null");
            std::fs::write(dir.join(OUTPUT_FILE), output).map_err(|e| e.to_string())?;
            put_dir(&cx.artifacts, &dir)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match stored {
            Ok(r) => {
                outputs.insert(name.clone(), r.to_string());
            }
            Err(e) => {
                return failed(
                    job,
                    "JobFailed",
                    format!("storing output artifact {name}: {e}"),
                );
            }
        }
    }
    let variables = BTreeMap::from([
        ("StateMachineArn".to_owned(), machine.to_owned()),
        ("ExecutionArn".to_owned(), record.arn.clone()),
    ]);
    Some(Input::ActionSucceeded {
        execution_id: job.execution_id.clone(),
        action_execution_id: job.action_execution_id.clone(),
        outputs,
        variables,
        summary: Some(format!("Execution {} succeeded", record.arn)),
        external_execution_id: external,
    })
}

/// Stops the execution an abandoned attempt started.
pub(super) async fn abandon<S: Store>(state: &AppState<S>, arn: &str) {
    let input = json!({
        "executionArn": arn,
        "error": "Gantry.Abandoned",
        "cause": "the pipeline execution was stopped and abandoned",
    });
    if let Ok(input) = serde_json::from_value(input)
        && let Err(e) = crate::stepfunctions::executions::stop(state, "codepipeline", input).await
    {
        tracing::warn!(execution = %arn, error = %e.error.message, "could not stop an abandoned action's execution");
    }
}
