//! Targets that start something inside Gantry: pipelines and state machines.
//!
//! The CodePipeline and Step Functions parts of the server implement
//! [`TargetInvoker`] and install it with `EventBus::set_invoker`; until
//! they do, such targets fail delivery with a clear reason and end as dead
//! letters. The server installs [`ServerInvoker`], which starts both.

use async_trait::async_trait;
use gantry_aws::VerifiedCaller;
use gantry_store::Store;

use crate::router::AppState;

/// Why starting a pipeline or an execution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvokeError {
    /// What went wrong, recorded in the delivery's last error or dead letter.
    pub message: String,
    /// Whether trying again later may succeed (e.g. throttling), as opposed
    /// to a missing pipeline or a refused input.
    pub retryable: bool,
}

/// Starts what a pipeline or state-machine target names.
#[async_trait]
pub trait TargetInvoker: Send + Sync + 'static {
    /// StartPipelineExecution of `name` for an event; returns the execution id.
    async fn start_pipeline(&self, name: &str, input: &str) -> Result<String, InvokeError>;
    /// StartExecution of the state machine with `input`; returns the execution ARN.
    /// Starts an execution named `name`: a delivery names it after itself,
    /// so a redelivery (after a server died between starting it and
    /// recording the delivery) finds it started instead of starting it again.
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        input: &str,
        name: &str,
    ) -> Result<String, InvokeError>;
}

/// The invoker until pipelines and state machines are wired in.
pub(crate) struct Unwired;

#[async_trait]
impl TargetInvoker for Unwired {
    async fn start_pipeline(&self, name: &str, _input: &str) -> Result<String, InvokeError> {
        Err(InvokeError {
            message: format!(
                "pipeline targets are not available in this server yet (pipeline {name})"
            ),
            retryable: false,
        })
    }

    async fn start_execution(
        &self,
        state_machine_arn: &str,
        _input: &str,
        _name: &str,
    ) -> Result<String, InvokeError> {
        Err(InvokeError {
            message: format!(
                "state machine targets are not available in this server yet ({state_machine_arn})"
            ),
            retryable: false,
        })
    }
}

/// The invoker the server installs: pipelines through the pipeline host
/// (trigger type `CloudWatchEvent`) and state machines through the Step
/// Functions part (StartExecution), both audited as `system`.
pub(crate) struct ServerInvoker<S: Store> {
    pub state: AppState<S>,
}

#[async_trait]
impl<S: Store> TargetInvoker for ServerInvoker<S> {
    async fn start_pipeline(&self, name: &str, _input: &str) -> Result<String, InvokeError> {
        // CodePipeline ignores a rule target's input for pipelines too.
        let name = name.rsplit(':').next().unwrap_or(name);
        let trigger = gantry_pipeline::Trigger {
            trigger_type: "CloudWatchEvent".into(),
            trigger_detail: "events".into(),
        };
        crate::codepipeline::executions::start_execution(
            &self.state,
            name,
            trigger,
            Vec::new(),
            std::collections::BTreeMap::new(),
            "system",
        )
        .await
        .map_err(|e| {
            let code = e.error.code.as_str().to_owned();
            InvokeError {
                retryable: e.error.code.status() >= 500,
                message: format!("StartPipelineExecution failed: {code}: {}", e.error.message),
            }
        })
    }

    async fn start_execution(
        &self,
        state_machine_arn: &str,
        input: &str,
        name: &str,
    ) -> Result<String, InvokeError> {
        let caller = VerifiedCaller {
            access_key_id: "system".into(),
            region: self.state.config.region.clone(),
            service: "states".into(),
            signed_at: std::time::SystemTime::now(),
            presigned: false,
            payload_signed: true,
        };
        let body = serde_json::json!({
            "stateMachineArn": state_machine_arn,
            "input": input,
            "name": name,
        });
        let body = body.to_string();
        match crate::stepfunctions::dispatch(
            &self.state,
            &caller,
            "StartExecution",
            body.as_bytes(),
        )
        .await
        {
            Ok(out) => Ok(out
                .get("executionArn")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()),
            Err(e) => {
                let code = e.error.code.as_str().to_owned();
                // The name is the delivery's own: an execution by that name
                // was started by an earlier attempt of this delivery.
                if code == "ExecutionAlreadyExists" {
                    return Ok(String::new());
                }
                Err(InvokeError {
                    retryable: e.error.code.status() >= 500 || code.contains("Throttl"),
                    message: format!("StartExecution failed: {code}: {}", e.error.message),
                })
            }
        }
    }
}
