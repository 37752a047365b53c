//! Targets that start something inside Gantry: pipelines and state machines.
//!
//! The CodePipeline and Step Functions parts of the server implement
//! [`TargetInvoker`] and install it with `EventBus::set_invoker`; until
//! they do, such targets fail delivery with a clear reason and end as dead
//! letters.

use async_trait::async_trait;

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
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        input: &str,
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
    ) -> Result<String, InvokeError> {
        Err(InvokeError {
            message: format!(
                "state machine targets are not available in this server yet ({state_machine_arn})"
            ),
            retryable: false,
        })
    }
}
