//! `arn:aws:states:::gantry:agent:runCommand`: shell commands on a remote
//! agent, as a `command` job in the agent queue.
//!
//! The job's id comes from the task token's hash and is recorded as the
//! task's handle before the job is queued, so a server restart at any point
//! finds the same job (queueing it only if it never was) and follows it
//! instead of running the commands again. The job's end is read from the
//! store (the agent's report is kept there), so nothing about it lives only
//! in this process. A task that is cancelled (StopExecution, the state's
//! TimeoutSeconds, a failed Parallel branch) cancels its job; a task dropped
//! because the server shuts down leaves it be.

use std::sync::Arc;
use std::time::Duration;

use gantry_agent::protocol::{COMMAND_KIND, CommandOutcome, CommandPayload, kind_label};
use gantry_states::TaskError;
use gantry_store::{AgentJobRecord, NewAgentJob, Store, StoreError, job_status};
use serde_json::{Map, Value, json};

use super::{Engine, Task, remember_handle};

/// The time limit when neither the parameters nor the state give one.
const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;
/// The longest time limit accepted (a year).
const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;
/// How often the job is read without a wake-up. An end recorded in this
/// process (a result, the reaper failing the job) wakes the task at once;
/// this catches an end recorded by another server on the same database.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How much of each output stream a failure's cause carries (a cause is
/// for people and Catch; the whole tails are in the success output).
const CAUSE_TAIL: usize = 4096;
/// The parameters the resource knows.
const FIELDS: [&str; 6] = [
    "Command",
    "Commands",
    "Labels",
    "Env",
    "WorkingDirectory",
    "TimeoutSeconds",
];

fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::new("Gantry.InvalidParameters", message)
}

/// What a runCommand task asks for: the payload and the labels its agent
/// must have.
#[derive(Debug, PartialEq)]
pub(crate) struct CommandRequest {
    pub payload: CommandPayload,
    pub labels: Vec<String>,
}

fn plain_text(field: &str, text: &str) -> Result<(), TaskError> {
    if text.contains('\0') {
        return Err(invalid(format!("{field} must not contain a NUL character")));
    }
    Ok(())
}

/// Checks the task's parameters; every refusal names the field.
pub(crate) fn command_request(
    params: &Value,
    state_timeout: Option<u64>,
    execution_arn: &str,
) -> Result<CommandRequest, TaskError> {
    let Some(params) = params.as_object() else {
        return Err(invalid(
            "runCommand's Parameters (or Arguments) must be an object with Command or Commands",
        ));
    };
    if let Some(unknown) = params.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "{unknown} is not a runCommand parameter (known: {})",
            FIELDS.join(", ")
        )));
    }
    let commands = match (params.get("Command"), params.get("Commands")) {
        (Some(_), Some(_)) => {
            return Err(invalid("give either Command or Commands, not both"));
        }
        (None, None) => {
            return Err(invalid(
                "Command (a string) or Commands (a list of strings) is required",
            ));
        }
        (Some(Value::String(c)), None) => {
            if c.trim().is_empty() {
                return Err(invalid("Command is empty"));
            }
            plain_text("Command", c)?;
            vec![c.clone()]
        }
        (Some(_), None) => return Err(invalid("Command must be a string")),
        (None, Some(Value::Array(items))) => {
            if items.is_empty() {
                return Err(invalid("Commands is an empty list"));
            }
            let mut commands = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("Commands[{i}]");
                let Some(c) = item.as_str() else {
                    return Err(invalid(format!("{field} must be a string")));
                };
                if c.trim().is_empty() {
                    return Err(invalid(format!("{field} is empty")));
                }
                plain_text(&field, c)?;
                commands.push(c.to_owned());
            }
            commands
        }
        (None, Some(_)) => return Err(invalid("Commands must be a list of strings")),
    };
    let mut labels = Vec::new();
    match params.get("Labels") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > 64 {
                return Err(invalid("Labels: at most 64"));
            }
            for (i, item) in items.iter().enumerate() {
                let field = format!("Labels[{i}]");
                let Some(label) = item.as_str() else {
                    return Err(invalid(format!("{field} must be a string")));
                };
                let label = label.trim();
                if label.is_empty() || label.len() > 100 || label.contains(',') {
                    return Err(invalid(format!(
                        "{field} must be 1 to 100 characters without a comma, not {item}"
                    )));
                }
                labels.push(label.to_owned());
            }
        }
        Some(_) => return Err(invalid("Labels must be a list of strings")),
    }
    labels.push(kind_label(COMMAND_KIND));
    labels.sort();
    labels.dedup();
    let mut env = Vec::new();
    match params.get("Env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let field = format!("Env.{name}");
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(invalid(format!(
                        "{field}: a variable name must be non-empty, without = or NUL"
                    )));
                }
                let Some(value) = value.as_str() else {
                    return Err(invalid(format!("{field} must be a string")));
                };
                plain_text(&field, value)?;
                env.push((name.clone(), value.to_owned()));
            }
        }
        Some(_) => return Err(invalid("Env must be an object of string values")),
    }
    let working_directory = match params.get("WorkingDirectory") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if !d.is_empty() => {
            plain_text("WorkingDirectory", d)?;
            Some(d.clone())
        }
        Some(_) => return Err(invalid("WorkingDirectory must be a non-empty string")),
    };
    let timeout_seconds = match params.get("TimeoutSeconds") {
        None | Some(Value::Null) => state_timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        Some(v) => match v.as_u64() {
            Some(t) if (1..=MAX_TIMEOUT_SECONDS).contains(&t) => t,
            _ => {
                return Err(invalid(format!(
                    "TimeoutSeconds must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}, not {v}"
                )));
            }
        },
    };
    Ok(CommandRequest {
        payload: CommandPayload {
            commands,
            env,
            working_directory,
            timeout_seconds,
            execution_arn: execution_arn.to_owned(),
        },
        labels,
    })
}

/// The prefix of command jobs' ids (task handles are told apart by it).
const JOB_PREFIX: &str = "job-cmd-";

/// The job a task's attempt runs: named after its token, so the same
/// attempt always means the same job.
fn job_id(task: &Task) -> String {
    let hash = task.token_hash.get(..32).unwrap_or(&task.token_hash);
    format!("{JOB_PREFIX}{hash}")
}

/// Whether a task's handle names a command job.
pub(crate) fn is_command_job(handle: &str) -> bool {
    handle.starts_with(JOB_PREFIX)
}

/// Cancels the job when the task is dropped before its end, unless the
/// engine is shutting down (then the job goes on, and the task follows it
/// again after the restart).
struct CancelOnDrop<S: Store> {
    store: Arc<S>,
    job_id: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
    armed: bool,
}

impl<S: Store> Drop for CancelOnDrop<S> {
    fn drop(&mut self) {
        if !self.armed || *self.shutdown.borrow() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let id = self.job_id.clone();
        runtime.spawn(async move {
            match store.cancel_job(&id).await {
                Ok(job) => {
                    tracing::info!(job = %id, status = %job.status, "cancelled the command job of a cancelled task")
                }
                Err(StoreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cancelling a command job failed")
                }
            }
        });
    }
}

/// `gantry:agent:runCommand[.sync]`: queues the commands for an agent with
/// the labels (or follows the job an earlier run of this task queued) and
/// waits for their end. Success gives `{"ExitCode", "Stdout", "Stderr"}`;
/// a non-zero exit fails the task with `Gantry.CommandFailed`, the time
/// limit with `States.Timeout`, an agent that could not run them with
/// `Gantry.AgentError`, a job whose agents kept losing their lease with
/// `Gantry.AgentLost`.
pub(crate) async fn run_agent_command<S: Store>(
    engine: &Engine<S>,
    task: &Task,
) -> Result<Value, TaskError> {
    let Some(app) = engine.app() else {
        return Err(TaskError::new(
            "States.Runtime",
            "the server is shutting down",
        ));
    };
    let request = command_request(&task.input, task.timeout_seconds, &task.execution_arn)?;
    let id = match &task.handle {
        Some(id) => id.clone(),
        None => {
            let id = job_id(task);
            // Recorded first: a restart before the job is queued finds the
            // handle and queues it then, never a second job.
            remember_handle(engine, task, &id).await;
            id
        }
    };
    let store = engine.store().clone();
    let hub = app.runner.hub.clone();
    let mut ends = hub.command_end_changes();
    let mut guard = CancelOnDrop {
        store: store.clone(),
        job_id: id.clone(),
        shutdown: engine.shutdown_flag(),
        armed: true,
    };
    match store.get_agent_job(&id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            let payload = serde_json::to_value(&request.payload)
                .map_err(|e| TaskError::new("States.Runtime", format!("encoding the job: {e}")))?;
            let new = NewAgentJob {
                id: id.clone(),
                kind: COMMAND_KIND.into(),
                labels: request.labels.clone(),
                payload,
                max_attempts: crate::agents::MAX_ATTEMPTS,
            };
            store.enqueue_job(&new).await.map_err(|e| {
                TaskError::new(
                    "States.Runtime",
                    format!("queueing the command for an agent: {e}"),
                )
            })?;
            tracing::info!(job = %id, execution = %task.execution_arn, labels = ?request.labels,
                "queued a command for an agent");
            hub.job_ready();
        }
        Err(e) => {
            return Err(TaskError::new(
                "States.Runtime",
                format!("reading command job {id}: {e}"),
            ));
        }
    }
    let job = loop {
        ends.borrow_and_update();
        let job = store.get_agent_job(&id).await.map_err(|e| {
            TaskError::new("States.Runtime", format!("reading command job {id}: {e}"))
        })?;
        if job.status == job_status::SUCCEEDED || job.status == job_status::FAILED {
            break job;
        }
        tokio::select! {
            _ = ends.changed() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    };
    guard.armed = false;
    outcome(&request.payload, &job)
}

/// The last `max` bytes of `text`, from a whole character.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The task's result from the ended job.
fn outcome(payload: &CommandPayload, job: &AgentJobRecord) -> Result<Value, TaskError> {
    let report = job.result.clone().unwrap_or(Value::Null);
    if let Ok(o) = serde_json::from_value::<CommandOutcome>(report.clone()) {
        if o.succeeded() {
            return Ok(json!({"ExitCode": o.exit_code, "Stdout": o.stdout, "Stderr": o.stderr}));
        }
        let command = payload
            .commands
            .get(o.command_index.saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        let mut cause = Map::new();
        cause.insert("ExitCode".into(), json!(o.exit_code));
        cause.insert("Command".into(), json!(command));
        cause.insert("CommandIndex".into(), json!(o.command_index));
        cause.insert("Stdout".into(), json!(tail(&o.stdout, CAUSE_TAIL)));
        cause.insert("Stderr".into(), json!(tail(&o.stderr, CAUSE_TAIL)));
        let (error, message) = if o.timed_out {
            (
                "States.Timeout",
                format!(
                    "command {} of {} ran past TimeoutSeconds ({} s) and was killed",
                    o.command_index, o.command_count, payload.timeout_seconds
                ),
            )
        } else if o.stopped {
            (
                "Gantry.CommandStopped",
                format!(
                    "command {} of {} was stopped",
                    o.command_index, o.command_count
                ),
            )
        } else {
            (
                "Gantry.CommandFailed",
                format!(
                    "command {} of {} exited with code {}",
                    o.command_index, o.command_count, o.exit_code
                ),
            )
        };
        cause.insert("Message".into(), json!(message));
        return Err(TaskError::new(error, Value::Object(cause).to_string()));
    }
    if let Some(why) = report.get("agent_error").and_then(Value::as_str) {
        return Err(TaskError::new(
            "Gantry.AgentError",
            format!("the agent could not run the commands: {why}"),
        ));
    }
    let why = job.error.as_deref().unwrap_or("the job failed");
    if job.cancel_requested || why == "cancelled" {
        return Err(TaskError::new(
            "Gantry.CommandStopped",
            format!("command job {} was stopped: {why}", job.id),
        ));
    }
    Err(TaskError::new(
        "Gantry.AgentLost",
        format!("command job {} failed without a result: {why}", job.id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(params: Value) -> String {
        let e = command_request(&params, None, "arn").expect_err("refused");
        assert_eq!(e.error, "Gantry.InvalidParameters", "{e:?}");
        e.cause
    }

    #[test]
    fn parameters_are_checked_and_each_refusal_names_its_field() {
        let ok = command_request(
            &json!({"Commands": ["echo a", "echo b"], "Labels": ["linux", " gpu "],
                    "Env": {"A": "1"}, "WorkingDirectory": "sub", "TimeoutSeconds": 30}),
            Some(99),
            "arn:x",
        )
        .expect("valid");
        assert_eq!(ok.payload.commands, ["echo a", "echo b"]);
        assert_eq!(ok.labels, ["gpu", "kind:command", "linux"]);
        assert_eq!(ok.payload.env, [("A".to_owned(), "1".to_owned())]);
        assert_eq!(ok.payload.working_directory.as_deref(), Some("sub"));
        assert_eq!(ok.payload.timeout_seconds, 30);
        assert_eq!(ok.payload.execution_arn, "arn:x");
        // The time limit defaults to the state's, then to an hour.
        let one = command_request(&json!({"Command": "true"}), Some(99), "a").expect("valid");
        assert_eq!(one.payload.timeout_seconds, 99);
        assert_eq!(one.labels, ["kind:command"]);
        let one = command_request(&json!({"Command": "true"}), None, "a").expect("valid");
        assert_eq!(one.payload.timeout_seconds, 3600);

        assert!(refused(json!("echo")).contains("object"));
        assert!(refused(json!({})).contains("Command"));
        assert!(refused(json!({"Command": "a", "Commands": ["b"]})).contains("not both"));
        assert!(refused(json!({"Command": 3})).contains("Command must be a string"));
        assert!(refused(json!({"Command": "  "})).contains("Command is empty"));
        assert!(refused(json!({"Commands": []})).contains("Commands is an empty list"));
        assert!(refused(json!({"Commands": ["a", 1]})).contains("Commands[1]"));
        assert!(refused(json!({"Commands": "a"})).contains("Commands must be a list"));
        assert!(refused(json!({"Command": "a", "Labels": "linux"})).contains("Labels"));
        assert!(refused(json!({"Command": "a", "Labels": ["a,b"]})).contains("Labels[0]"));
        assert!(refused(json!({"Command": "a", "Env": {"X": 1}})).contains("Env.X"));
        assert!(refused(json!({"Command": "a", "Env": {"X=Y": "1"}})).contains("Env.X=Y"));
        assert!(refused(json!({"Command": "a", "Env": ["X"]})).contains("Env must be"));
        assert!(
            refused(json!({"Command": "a", "WorkingDirectory": 1})).contains("WorkingDirectory")
        );
        assert!(refused(json!({"Command": "a", "TimeoutSeconds": 0})).contains("TimeoutSeconds"));
        assert!(refused(json!({"Command": "a", "TimeoutSeconds": "5"})).contains("TimeoutSeconds"));
        assert!(refused(json!({"Command": "a\u{0}"})).contains("NUL"));
        assert!(refused(json!({"Comand": "a"})).contains("Comand is not a runCommand parameter"));
    }

    fn ended(result: Option<Value>, error: Option<&str>, cancel: bool) -> AgentJobRecord {
        AgentJobRecord {
            id: "job-cmd-x".into(),
            kind: COMMAND_KIND.into(),
            labels: vec![],
            payload: Value::Null,
            status: job_status::FAILED.into(),
            lease_id: None,
            lease_epoch: 1,
            agent_id: None,
            lease_expires_ms: 0,
            attempts: 3,
            max_attempts: 3,
            cancel_requested: cancel,
            error: error.map(str::to_owned),
            result,
        }
    }

    fn report(exit_code: i32, timed_out: bool) -> Value {
        json!({"exit_code": exit_code, "command_index": 2, "command_count": 2,
               "stdout": "x".repeat(10_000), "stderr": "boom", "timed_out": timed_out, "stopped": false})
    }

    #[test]
    fn ends_become_results_and_errors_catch_can_tell_apart() {
        let payload = CommandPayload {
            commands: vec!["true".into(), "false".into()],
            env: vec![],
            working_directory: None,
            timeout_seconds: 7,
            execution_arn: "a".into(),
        };
        let ok = outcome(&payload, &ended(Some(report(0, false)), None, false)).expect("ok");
        assert_eq!(ok["ExitCode"], 0);
        assert_eq!(ok["Stdout"].as_str().map(str::len), Some(10_000));
        let failed =
            outcome(&payload, &ended(Some(report(1, false)), None, false)).expect_err("failed");
        assert_eq!(failed.error, "Gantry.CommandFailed");
        let cause: Value = serde_json::from_str(&failed.cause).expect("json cause");
        assert_eq!(cause["ExitCode"], 1);
        assert_eq!(cause["Command"], "false");
        assert_eq!(cause["Stderr"], "boom");
        assert_eq!(cause["Stdout"].as_str().map(str::len), Some(CAUSE_TAIL));
        let timeout =
            outcome(&payload, &ended(Some(report(137, true)), None, false)).expect_err("timeout");
        assert_eq!(timeout.error, "States.Timeout");
        assert!(timeout.cause.contains("7 s"), "{}", timeout.cause);
        let agent = outcome(
            &payload,
            &ended(
                Some(json!({"agent_error": "no dir"})),
                Some("no dir"),
                false,
            ),
        )
        .expect_err("agent");
        assert_eq!(agent.error, "Gantry.AgentError");
        assert!(agent.cause.contains("no dir"));
        let lost = outcome(
            &payload,
            &ended(None, Some("the lease ran out on attempt 3 of 3"), false),
        )
        .expect_err("lost");
        assert_eq!(lost.error, "Gantry.AgentLost");
        assert!(lost.cause.contains("attempt 3 of 3"));
        let stopped = outcome(&payload, &ended(None, Some("cancelled"), false)).expect_err("stop");
        assert_eq!(stopped.error, "Gantry.CommandStopped");
    }
}
