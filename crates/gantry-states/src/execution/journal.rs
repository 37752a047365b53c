//! The journal's vocabulary: the input events an execution is built from, the actions it
//! asks its host to perform, and the AWS-style history it derives.

use crate::error::Failure;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Names and ARNs the context object (`$$.Execution`, `$$.StateMachine`) reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecutionInfo {
    /// `$$.Execution.Id` (an ARN on AWS).
    pub execution_id: String,
    /// `$$.Execution.Name`.
    pub execution_name: String,
    /// `$$.StateMachine.Id`.
    pub state_machine_id: String,
    /// `$$.StateMachine.Name`.
    pub state_machine_name: String,
    /// `$$.Execution.RoleArn`.
    pub role_arn: Option<String>,
}

/// An input to an execution. The journal is the ordered list of these; replaying it
/// rebuilds the execution exactly. Every event carries its time (epoch milliseconds), so
/// the core never reads a clock; `Started` carries the random seed, so it never draws
/// entropy of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// The execution starts.
    Started {
        /// The execution input.
        input: Value,
        /// Names for the context object.
        info: ExecutionInfo,
        /// Seed for UUIDs, `States.MathRandom` and retry jitter.
        seed: u64,
        /// When.
        at: i64,
    },
    /// A scheduled task returned a result.
    TaskSucceeded {
        /// The task token from [`Action::ScheduleTask`].
        token: String,
        /// The raw result.
        output: Value,
        /// When.
        at: i64,
    },
    /// A scheduled task failed.
    TaskFailed {
        /// The task token.
        token: String,
        /// The error name.
        error: String,
        /// The cause.
        cause: String,
        /// When.
        at: i64,
    },
    /// A task sent a heartbeat.
    TaskHeartbeat {
        /// The task token.
        token: String,
        /// When.
        at: i64,
    },
    /// A timer from [`Action::StartTimer`] fired.
    TimerFired {
        /// The timer id.
        id: String,
        /// When.
        at: i64,
    },
    /// The execution was stopped from outside (`StopExecution`).
    Stopped {
        /// Optional error.
        error: Option<String>,
        /// Optional cause.
        cause: Option<String>,
        /// When.
        at: i64,
    },
}

impl Event {
    /// The time the event happened.
    pub fn at(&self) -> i64 {
        match self {
            Event::Started { at, .. }
            | Event::TaskSucceeded { at, .. }
            | Event::TaskFailed { at, .. }
            | Event::TaskHeartbeat { at, .. }
            | Event::TimerFired { at, .. }
            | Event::Stopped { at, .. } => *at,
        }
    }
}

/// A side effect the host must perform; plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    /// Run a task; answer with `TaskSucceeded`/`TaskFailed` carrying `token`.
    ScheduleTask {
        /// Identifies this attempt (also `$$.Task.Token`).
        token: String,
        /// The Task state's name.
        state: String,
        /// `Resource`.
        resource: String,
        /// The effective parameters.
        input: Value,
        /// `TimeoutSeconds` (the core also starts a timer for it).
        timeout_seconds: Option<u64>,
        /// `HeartbeatSeconds`.
        heartbeat_seconds: Option<u64>,
        /// Evaluated `Credentials`, if any.
        credentials: Option<Value>,
    },
    /// Best-effort cancellation of a task that is no longer wanted.
    CancelTask {
        /// The task token.
        token: String,
    },
    /// Fire `TimerFired{id}` at `at` (epoch milliseconds).
    StartTimer {
        /// The timer id.
        id: String,
        /// When to fire.
        at: i64,
    },
    /// The timer is no longer needed.
    CancelTimer {
        /// The timer id.
        id: String,
    },
    /// The execution finished.
    Complete(Outcome),
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum Outcome {
    /// `SUCCEEDED` with an output.
    #[serde(rename = "SUCCEEDED")]
    Succeeded {
        /// The output.
        output: Value,
    },
    /// `FAILED`.
    #[serde(rename = "FAILED")]
    Failed(Failure),
    /// `TIMED_OUT` (the execution's `TimeoutSeconds`).
    #[serde(rename = "TIMED_OUT")]
    TimedOut(Failure),
    /// `ABORTED` (stopped).
    #[serde(rename = "ABORTED")]
    Aborted(Failure),
}

impl Outcome {
    /// The AWS status name.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "SUCCEEDED",
            Outcome::Failed(_) => "FAILED",
            Outcome::TimedOut(_) => "TIMED_OUT",
            Outcome::Aborted(_) => "ABORTED",
        }
    }
}

/// One entry of the derived, AWS-shaped execution history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// 1-based id.
    pub id: u64,
    /// Epoch milliseconds.
    pub timestamp: i64,
    /// AWS event type, e.g. `TaskStateEntered`, `TaskScheduled`, `ExecutionSucceeded`.
    pub kind: String,
    /// Details (state name, input/output, error/cause, ...).
    pub details: Value,
}
