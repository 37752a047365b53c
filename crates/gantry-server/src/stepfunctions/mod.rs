//! Step Functions's API (2016-11-23, AWS JSON 1.0), with the member names and
//! exceptions of botocore's model, over a durable execution engine.
//!
//! - `machines`: Create/Update/Describe/Delete/ListStateMachines,
//!   ValidateStateMachineDefinition and TestState.
//! - `executions`: Start/StartSync/Stop/Describe/ListExecutions,
//!   GetExecutionHistory and the task callbacks (SendTaskSuccess/Failure/Heartbeat).
//! - `engine`: hosts `gantry-states` executions: journals every transition before
//!   acting on it, runs timers and task resources, resumes after a restart.
//! - `resources`: the Task resources Gantry provides (HTTP, CodeBuild, callbacks).
//! - `history`: the journal's history events in AWS's `HistoryEvent` shape.
//!
//! User-visible behaviour and decisions: `docs/states-server.md`.

mod engine;
pub(crate) mod executions;
mod history;
mod machines;
mod resources;

use gantry_aws::{AwsError, ErrorCode, VerifiedCaller};
use gantry_store::Store;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) use engine::{Engine, load_or_create_token_key};
pub(crate) use resources::HTTP_TIMEOUT as HTTP_TASK_TIMEOUT;

/// Runs one operation.
pub(crate) async fn dispatch<S: Store>(
    state: &AppState<S>,
    caller: &VerifiedCaller,
    operation: &str,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let actor = caller.access_key_id.as_str();
    match operation {
        "CreateStateMachine" => machines::create(state, actor, input(body)?).await,
        "UpdateStateMachine" => machines::update(state, actor, input(body)?).await,
        "DescribeStateMachine" => machines::describe(state, input(body)?).await,
        "DeleteStateMachine" => machines::delete(state, actor, input(body)?).await,
        "ListStateMachines" => machines::list(state, input(body)?).await,
        "ValidateStateMachineDefinition" => machines::validate(input(body)?),
        "TestState" => machines::test_state(input(body)?),
        "StartExecution" => executions::start(state, actor, input(body)?).await,
        "StartSyncExecution" => executions::start_sync(state, input(body)?).await,
        "StopExecution" => executions::stop(state, actor, input(body)?).await,
        "DescribeExecution" => executions::describe(state, input(body)?).await,
        "ListExecutions" => executions::list(state, input(body)?).await,
        "GetExecutionHistory" => executions::history(state, input(body)?).await,
        "SendTaskSuccess" => executions::send_task_success(state, actor, input(body)?).await,
        "SendTaskFailure" => executions::send_task_failure(state, actor, input(body)?).await,
        "SendTaskHeartbeat" => executions::send_task_heartbeat(state, actor, input(body)?).await,
        other => Err(AwsError::new(
            ErrorCode::UnknownOperationException,
            format!("Step Functions operation '{other}' is not supported by this server."),
        )
        .into()),
    }
}

fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    Ok(gantry_aws::parse_body(body)?)
}

/// One of Step Functions's modelled exceptions (all answered with status 400).
pub(crate) fn sfn_error(code: &'static str, message: impl Into<String>) -> ApiError {
    AwsError::service(code, 400, message).into()
}

/// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
pub(crate) fn machine_arn(config: &crate::Config, name: &str) -> String {
    format!(
        "arn:aws:states:{}:{}:stateMachine:{name}",
        config.region, config.account_id
    )
}

/// `arn:aws:states:<region>:<account>:execution:<machine>:<name>`.
pub(crate) fn execution_arn(config: &crate::Config, machine: &str, name: &str) -> String {
    format!(
        "arn:aws:states:{}:{}:execution:{machine}:{name}",
        config.region, config.account_id
    )
}

/// The name in a state machine ARN; `InvalidArn` when it is not one.
fn machine_name_of(arn: &str) -> Result<&str, ApiError> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "states", _, _, "stateMachine", name] if !name.is_empty() => Ok(name),
        _ => Err(sfn_error(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        )),
    }
}

/// Checks an execution ARN's shape; `InvalidArn` when it is not one.
fn check_execution_arn(arn: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        [
            "arn",
            _,
            "states",
            _,
            _,
            "execution" | "express",
            machine,
            name,
            ..,
        ] if !machine.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(sfn_error(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        )),
    }
}

/// Step Functions names: 1-80 characters, no whitespace, no wildcard, bracket,
/// quote or control characters (AWS's documented rule for state machine and
/// execution names).
fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>'
                    | '{'
                    | '}'
                    | '['
                    | ']'
                    | '?'
                    | '*'
                    | '"'
                    | '#'
                    | '%'
                    | '\\'
                    | '^'
                    | '|'
                    | '~'
                    | '`'
                    | '$'
                    | '&'
                    | ','
                    | ';'
                    | ':'
                    | '/'
            )
    };
    let len = name.chars().count();
    if len == 0 || len > 80 || name.chars().any(bad) {
        return Err(sfn_error(
            "InvalidName",
            format!(
                "Invalid Name: '{name}' ({what} names are 1-80 characters without whitespace, brackets, wildcards or special characters)"
            ),
        ));
    }
    Ok(())
}

/// A JSON-protocol timestamp from epoch milliseconds.
fn ts(ms: i64) -> serde_json::Value {
    crate::codebuild::timestamp_ms(ms)
}

/// One page of `items` from `next_token` (an offset this server handed out);
/// `max_results` 0 or absent means 100 (Step Functions's default and maximum is 1000).
fn page<T: Clone>(
    items: &[T],
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match max_results {
        None | Some(0) => 100,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
            ))
            .into());
        }
    };
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= items.len())
            .ok_or_else(|| sfn_error("InvalidToken", format!("Invalid Token: '{t}'")))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}
