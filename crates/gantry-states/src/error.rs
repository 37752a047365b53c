//! Error values: definition problems (with a JSON location) and runtime failures (`States.*`).

use std::fmt;

/// One problem found in a state machine definition, located by a JSON path
/// such as `States.Build.Next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// Where the problem is, e.g. `States.Check.Choices[0].Next` (empty for the top level).
    pub location: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Every problem found in a definition; a definition is valid only when there is none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<DefinitionError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A runtime failure with an ASL error name (`States.Runtime`, a task's own error, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{error}: {cause}")]
pub struct Failure {
    /// The error name, e.g. `States.TaskFailed`.
    pub error: String,
    /// A human-readable cause.
    pub cause: String,
}

impl Failure {
    /// A failure with the given name and cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            cause: cause.into(),
        }
    }
    /// `States.Runtime`: cannot be retried or caught.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(errors::RUNTIME, cause)
    }
    /// `States.IntrinsicFailure`.
    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new(errors::INTRINSIC_FAILURE, cause)
    }
    /// The `{"Error", "Cause"}` object a Catch passes on.
    pub fn to_output(&self) -> serde_json::Value {
        serde_json::json!({"Error": self.error, "Cause": self.cause})
    }
}

/// The predefined error names, spelled as AWS spells them.
pub mod errors {
    /// Matches every error except `States.Runtime` and `States.DataLimitExceeded`.
    pub const ALL: &str = "States.ALL";
    /// A task failed; matches every error except `States.Timeout`.
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// A task or the execution ran longer than its timeout.
    pub const TIMEOUT: &str = "States.Timeout";
    /// A task missed its heartbeat.
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    /// A run-time error in the interpreter (e.g. a path applied to a non-object); never caught.
    pub const RUNTIME: &str = "States.Runtime";
    /// Output larger than the payload limit; never caught.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// `ResultPath` could not be applied to the input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// A path in `Parameters`/`ResultSelector`/`ItemSelector` matched nothing.
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    /// An intrinsic function failed.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// No Choice rule matched and there is no Default.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// A Parallel branch failed.
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    /// The Map item reader failed.
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    /// The Map result writer failed.
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
    /// Too many Map items failed.
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    /// Missing permissions.
    pub const PERMISSIONS: &str = "States.Permissions";
    /// A JSONata expression failed.
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
}
