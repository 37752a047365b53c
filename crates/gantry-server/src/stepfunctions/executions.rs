//! StartExecution, StartSyncExecution, StopExecution, DescribeExecution,
//! ListExecutions, GetExecutionHistory, SendTaskSuccess, SendTaskFailure,
//! SendTaskHeartbeat.

use std::sync::Arc;
use std::time::Duration;

use gantry_aws::AwsError;
use gantry_states::{Event, ExecutionInfo, Outcome};
use gantry_store::{ExecutionRecord, NewExecution, StateMachineRecord, Store, StoreError, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::{DeliverError, Relayed, StartError};
use super::machines::not_found;
use super::{
    check_execution_arn, check_name, execution_arn, history as render, machine_name_of, page,
    sfn_error, ts,
};
use crate::error::ApiError;
use crate::router::AppState;

/// StartSyncExecution's limit (AWS's Express executions run at most 5 minutes).
const SYNC_LIMIT: Duration = Duration::from_secs(300);

fn required<'a>(value: &'a str, member: &str) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
        .into());
    }
    Ok(value)
}

fn execution_not_found(arn: &str) -> ApiError {
    sfn_error(
        "ExecutionDoesNotExist",
        format!("Execution Does Not Exist: '{arn}'"),
    )
}

fn parse_input(text: Option<&str>) -> Result<Value, ApiError> {
    match text {
        None | Some("") => Ok(json!({})),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            sfn_error(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        }),
    }
}

async fn machine<S: Store>(state: &AppState<S>, arn: &str) -> Result<StateMachineRecord, ApiError> {
    machine_name_of(arn)?;
    match state.store.get_state_machine(arn).await {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound) => Err(not_found(arn)),
        Err(e) => Err(e.into()),
    }
}

fn parsed(m: &StateMachineRecord) -> Result<gantry_states::StateMachine, ApiError> {
    let json: Value = serde_json::from_str(&m.definition).map_err(ApiError::internal)?;
    gantry_states::parse_definition(&json).map_err(ApiError::internal)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartInput {
    #[serde(default)]
    pub state_machine_arn: String,
    pub name: Option<String>,
    pub input: Option<String>,
}

pub(crate) async fn start<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StartInput,
) -> Result<Value, ApiError> {
    let m = machine(
        state,
        required(&input.state_machine_arn, "stateMachineArn")?,
    )
    .await?;
    let name = match input.name.as_deref() {
        Some(n) => {
            check_name(n, "execution")?;
            n.to_owned()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let text = input
        .input
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "{}".into());
    let value = parse_input(Some(&text))?;
    let arn = execution_arn(&state.config, &m.name, &name);
    let new = NewExecution {
        arn: arn.clone(),
        name: name.clone(),
        machine_arn: m.arn.clone(),
        definition: m.definition.clone(),
        revision: m.revision,
        role_arn: m.role_arn.clone(),
        input: text.clone(),
        start_ms: now_ms(),
    };
    let info = ExecutionInfo {
        execution_id: arn.clone(),
        execution_name: name,
        state_machine_id: m.arn.clone(),
        state_machine_name: m.name.clone(),
        role_arn: Some(m.role_arn.clone()),
    };
    let start_ms = new.start_ms;
    match state
        .engine
        .start(new, Arc::new(parsed(&m)?), info, value, actor)
        .await
    {
        Ok(()) => Ok(json!({"executionArn": arn, "startDate": ts(start_ms)})),
        Err(StartError::Exists) => {
            // Same name and input while it runs: idempotent, as on AWS.
            let existing = state.store.get_execution(&arn).await?;
            if existing.status == "RUNNING" && existing.input == text {
                Ok(json!({"executionArn": arn, "startDate": ts(existing.start_ms)}))
            } else {
                Err(sfn_error(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{arn}'"),
                ))
            }
        }
        Err(StartError::Store(e)) => Err(e.into()),
    }
}

pub(crate) async fn start_sync<S: Store>(
    state: &AppState<S>,
    input: StartInput,
) -> Result<Value, ApiError> {
    let m = machine(
        state,
        required(&input.state_machine_arn, "stateMachineArn")?,
    )
    .await?;
    if m.machine_type != "EXPRESS" {
        return Err(sfn_error(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine: StartSyncExecution needs an EXPRESS state machine",
        ));
    }
    let name = match input.name.as_deref() {
        Some(n) => {
            check_name(n, "execution")?;
            n.to_owned()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let text = input
        .input
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "{}".into());
    let value = parse_input(Some(&text))?;
    let arn = format!(
        "arn:aws:states:{}:{}:express:{}:{name}:{}",
        state.config.region,
        state.config.account_id,
        m.name,
        uuid::Uuid::new_v4()
    );
    let info = ExecutionInfo {
        execution_id: arn.clone(),
        execution_name: name.clone(),
        state_machine_id: m.arn.clone(),
        state_machine_name: m.name.clone(),
        role_arn: Some(m.role_arn.clone()),
    };
    let start_ms = now_ms();
    let outcome = state
        .engine
        .run_sync(arn.clone(), Arc::new(parsed(&m)?), info, value, SYNC_LIMIT)
        .await;
    let mut out = json!({
        "executionArn": arn, "stateMachineArn": m.arn, "name": name,
        "startDate": ts(start_ms), "stopDate": ts(now_ms()),
        "input": text, "inputDetails": {"included": true},
        "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": (now_ms() - start_ms).max(0)},
    });
    match outcome {
        Outcome::Succeeded { output } => {
            out["status"] = json!("SUCCEEDED");
            out["output"] = json!(output.to_string());
            out["outputDetails"] = json!({"included": true});
        }
        Outcome::Failed(f) | Outcome::Aborted(f) => {
            out["status"] = json!("FAILED");
            out["error"] = json!(f.error);
            out["cause"] = json!(f.cause);
        }
        Outcome::TimedOut(f) => {
            out["status"] = json!("TIMED_OUT");
            out["error"] = json!(f.error);
            out["cause"] = json!(f.cause);
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StopInput {
    #[serde(default)]
    execution_arn: String,
    error: Option<String>,
    cause: Option<String>,
}

async fn execution<S: Store>(state: &AppState<S>, arn: &str) -> Result<ExecutionRecord, ApiError> {
    check_execution_arn(arn)?;
    match state.store.get_execution(arn).await {
        Ok(x) => Ok(x),
        Err(StoreError::NotFound) => Err(execution_not_found(arn)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn stop<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StopInput,
) -> Result<Value, ApiError> {
    let arn = required(&input.execution_arn, "executionArn")?;
    let before = execution(state, arn).await?;
    if before.status == "RUNNING" {
        let event = Event::Stopped {
            error: input.error,
            cause: input.cause,
            at: now_ms(),
        };
        let audit = Some("execution.stop");
        match state
            .engine
            .deliver(arn, event.clone(), actor, audit, None)
            .await
        {
            Ok(()) | Err(DeliverError::NotWaiting) => {}
            // Driven by another server sharing the database: its owner applies
            // the stop (this waits a little for it; if the owner is dead, the
            // server taking its work over applies it).
            Err(DeliverError::NotRunning) if relayable(state, arn) => {
                state.engine.relay(arn, &event, actor, audit).await?;
            }
            Err(DeliverError::NotRunning) => {}
            Err(DeliverError::Store(e)) => return Err(e.into()),
        }
    }
    let after = execution(state, arn).await?;
    Ok(json!({"stopDate": ts(after.stop_ms.unwrap_or_else(now_ms))}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeInput {
    #[serde(default)]
    execution_arn: String,
}

pub(crate) async fn describe<S: Store>(
    state: &AppState<S>,
    input: DescribeInput,
) -> Result<Value, ApiError> {
    let x = execution(state, required(&input.execution_arn, "executionArn")?).await?;
    let mut out = json!({
        "executionArn": x.arn, "stateMachineArn": x.machine_arn, "name": x.name,
        "status": x.status, "startDate": ts(x.start_ms),
        "input": x.input, "inputDetails": {"included": true},
        "redriveCount": 0, "redriveStatus": "NOT_REDRIVABLE",
    });
    if let Some(stop) = x.stop_ms {
        out["stopDate"] = ts(stop);
    }
    if let Some(o) = &x.output {
        out["output"] = json!(o);
        out["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &x.error {
        out["error"] = json!(e);
    }
    if let Some(c) = &x.cause {
        out["cause"] = json!(c);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    state_machine_arn: Option<String>,
    status_filter: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let Some(arn) = input.state_machine_arn.as_deref().filter(|a| !a.is_empty()) else {
        return Err(AwsError::validation("Must provide a StateMachine ARN or MapRun ARN").into());
    };
    machine(state, arn).await?;
    let status = match input.status_filter.as_deref() {
        None => None,
        Some(
            s @ ("RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED" | "PENDING_REDRIVE"),
        ) => Some(s),
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
            ))
            .into());
        }
    };
    let all = state.store.list_executions(Some(arn), status).await?;
    let (items, next) = page(&all, input.max_results, input.next_token.as_deref())?;
    let executions: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut e = json!({"executionArn": x.arn, "stateMachineArn": x.machine_arn,
                "name": x.name, "status": x.status, "startDate": ts(x.start_ms), "redriveCount": 0});
            if let Some(stop) = x.stop_ms {
                e["stopDate"] = ts(stop);
            }
            e
        })
        .collect();
    let mut out = json!({"executions": executions});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryInput {
    #[serde(default)]
    execution_arn: String,
    max_results: Option<i64>,
    #[serde(default)]
    reverse_order: bool,
    next_token: Option<String>,
    include_execution_data: Option<bool>,
}

pub(crate) async fn history<S: Store>(
    state: &AppState<S>,
    input: HistoryInput,
) -> Result<Value, ApiError> {
    let x = execution(state, required(&input.execution_arn, "executionArn")?).await?;
    let mut events = state.store.history(&x.arn).await?;
    if input.reverse_order {
        events.reverse();
    }
    let (items, next) = page(&events, input.max_results, input.next_token.as_deref())?;
    let include = input.include_execution_data.unwrap_or(true);
    let rendered: Vec<Value> = items
        .iter()
        .map(|h| {
            let mut e = render::render(h, &state.config.region, &x.role_arn);
            if !include {
                strip_data(&mut e);
            }
            e
        })
        .collect();
    let mut out = json!({"events": rendered});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

/// `includeExecutionData: false`: inputs, outputs and parameters left out.
fn strip_data(e: &mut Value) {
    if let Some(obj) = e.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            if k.ends_with("EventDetails")
                && let Some(d) = v.as_object_mut()
            {
                for member in ["input", "output", "parameters"] {
                    d.remove(member);
                }
            }
        }
    }
}

fn token_checked(token: &str) -> Result<&str, ApiError> {
    let token = required(token, "taskToken")?;
    if token.len() > 2048 || !token.starts_with("task-") {
        return Err(sfn_error(
            "InvalidToken",
            format!(
                "Invalid Token: '{}'",
                token.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(token)
}

fn timed_out() -> ApiError {
    sfn_error(
        "TaskTimedOut",
        "Task Timed Out: the task is no longer waiting for this token",
    )
}

/// Delivers a callback for `token` to its execution.
async fn callback<S: Store>(
    state: &AppState<S>,
    actor: &str,
    token: &str,
    event: Event,
    audit: Option<&str>,
) -> Result<Value, ApiError> {
    let Some((arn, pending)) = state.engine.token_owner(token).await? else {
        return Err(sfn_error(
            "TaskDoesNotExist",
            "Task Does Not Exist: no task has this token",
        ));
    };
    if !pending {
        return Err(timed_out());
    }
    match state
        .engine
        .deliver(&arn, event.clone(), actor, audit, Some(token))
        .await
    {
        Ok(()) => Ok(json!({})),
        // Driven by another server sharing the database: relayed to its owner
        // through the store. Answered as AWS would once the owner applied it; if
        // the owner does not within a few seconds (it died: the server taking
        // its work over applies it), it is accepted as recorded.
        Err(DeliverError::NotRunning) if relayable(state, &arn) => {
            match state.engine.relay(&arn, &event, actor, audit).await? {
                Relayed::Applied | Relayed::Recorded => Ok(json!({})),
                Relayed::Refused => Err(timed_out()),
            }
        }
        Err(DeliverError::NotRunning | DeliverError::NotWaiting) => Err(timed_out()),
        Err(DeliverError::Store(e)) => Err(e.into()),
    }
}

/// Whether an event for `arn` that this server could not apply goes to the
/// execution's owner: the database is shared and this server does not hold it.
fn relayable<S: Store>(state: &AppState<S>, arn: &str) -> bool {
    state.engine.shared() && !state.engine.is_live(arn)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SuccessInput {
    #[serde(default)]
    task_token: String,
    output: Option<String>,
}

pub(crate) async fn send_task_success<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: SuccessInput,
) -> Result<Value, ApiError> {
    let token = token_checked(&input.task_token)?;
    let text = required(input.output.as_deref().unwrap_or_default(), "output")?;
    let output: Value = serde_json::from_str(text)
        .map_err(|e| sfn_error("InvalidOutput", format!("Invalid Output: '{e}'")))?;
    let event = Event::TaskSucceeded {
        token: token.to_owned(),
        output,
        at: now_ms(),
    };
    callback(state, actor, token, event, Some("task.success")).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureInput {
    #[serde(default)]
    task_token: String,
    error: Option<String>,
    cause: Option<String>,
}

pub(crate) async fn send_task_failure<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: FailureInput,
) -> Result<Value, ApiError> {
    let token = token_checked(&input.task_token)?;
    let event = Event::TaskFailed {
        token: token.to_owned(),
        error: input.error.unwrap_or_default(),
        cause: input.cause.unwrap_or_default(),
        at: now_ms(),
    };
    callback(state, actor, token, event, Some("task.failure")).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartbeatInput {
    #[serde(default)]
    task_token: String,
}

pub(crate) async fn send_task_heartbeat<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: HeartbeatInput,
) -> Result<Value, ApiError> {
    let token = token_checked(&input.task_token)?;
    let event = Event::TaskHeartbeat {
        token: token.to_owned(),
        at: now_ms(),
    };
    callback(state, actor, token, event, None).await
}
