//! CreateStateMachine, UpdateStateMachine, DescribeStateMachine, DeleteStateMachine,
//! ListStateMachines, ValidateStateMachineDefinition, TestState.

use gantry_aws::AwsError;
use gantry_states::{Outcome, TaskError};
use gantry_store::{NewStateMachine, StateMachineUpdate, Store, StoreError, now_ms};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{check_name, machine_arn, machine_name_of, page, sfn_error, ts};
use crate::error::ApiError;
use crate::router::AppState;

/// Parses and validates a definition as CreateStateMachine does: `InvalidDefinition`
/// naming every problem with its JSON location.
pub(crate) fn parse_definition(text: &str) -> Result<Value, ApiError> {
    let json: Value = serde_json::from_str(text).map_err(|e| {
        sfn_error(
            "InvalidDefinition",
            format!("Invalid State Machine Definition: 'definition is not valid JSON: {e}'"),
        )
    })?;
    gantry_states::parse_definition(&json).map_err(|errors| {
        let list: Vec<String> = errors
            .0
            .iter()
            .map(|e| format!("SCHEMA_VALIDATION_FAILED: {e}"))
            .collect();
        sfn_error(
            "InvalidDefinition",
            format!("Invalid State Machine Definition: '{}'", list.join(", ")),
        )
    })?;
    Ok(json)
}

fn machine_type(value: Option<&str>) -> Result<&'static str, ApiError> {
    match value {
        None | Some("STANDARD") => Ok("STANDARD"),
        Some("EXPRESS") => Ok("EXPRESS"),
        Some(other) => Err(AwsError::validation(format!(
            "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
        ))
        .into()),
    }
}

fn required<'a>(value: &'a str, member: &str) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
        .into());
    }
    Ok(value)
}

pub(crate) fn not_found(arn: &str) -> ApiError {
    sfn_error(
        "StateMachineDoesNotExist",
        format!("State Machine Does Not Exist: '{arn}'"),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    definition: String,
    #[serde(default)]
    role_arn: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(crate) async fn create<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: CreateInput,
) -> Result<Value, ApiError> {
    check_name(required(&input.name, "name")?, "state machine")?;
    required(&input.definition, "definition")?;
    required(&input.role_arn, "roleArn")?;
    let kind = machine_type(input.kind.as_deref())?;
    parse_definition(&input.definition)?;
    let arn = machine_arn(&state.config, &input.name);
    let new = NewStateMachine {
        name: input.name.clone(),
        arn: arn.clone(),
        definition: input.definition.clone(),
        role_arn: input.role_arn.clone(),
        machine_type: kind.into(),
        revision_id: uuid::Uuid::new_v4().to_string(),
        created_ms: now_ms(),
    };
    let record = match state.store.create_state_machine(&new, actor).await {
        Ok(r) => r,
        Err(StoreError::Conflict(_)) => {
            // Creating the same machine again is idempotent, as on AWS.
            let existing = state.store.get_state_machine(&arn).await?;
            if existing.definition == input.definition
                && existing.role_arn == input.role_arn
                && existing.machine_type == kind
            {
                existing
            } else {
                return Err(sfn_error(
                    "StateMachineAlreadyExists",
                    format!("State Machine Already Exists: '{arn}'"),
                ));
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(json!({"stateMachineArn": record.arn, "creationDate": ts(record.created_ms)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateInput {
    #[serde(default)]
    state_machine_arn: String,
    definition: Option<String>,
    role_arn: Option<String>,
}

pub(crate) async fn update<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: UpdateInput,
) -> Result<Value, ApiError> {
    let arn = required(&input.state_machine_arn, "stateMachineArn")?;
    machine_name_of(arn)?;
    if input.definition.is_none() && input.role_arn.is_none() {
        return Err(sfn_error(
            "MissingRequiredParameter",
            "Either the definition or the roleArn must be specified",
        ));
    }
    if let Some(d) = &input.definition {
        parse_definition(d)?;
    }
    let update = StateMachineUpdate {
        definition: input.definition,
        role_arn: input.role_arn,
        revision_id: uuid::Uuid::new_v4().to_string(),
        updated_ms: now_ms(),
    };
    match state.store.update_state_machine(arn, &update, actor).await {
        Ok(r) => Ok(json!({"updateDate": ts(r.updated_ms), "revisionId": r.revision_id})),
        Err(StoreError::NotFound) => Err(not_found(arn)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArnInput {
    #[serde(default)]
    state_machine_arn: String,
}

pub(crate) async fn describe<S: Store>(
    state: &AppState<S>,
    input: ArnInput,
) -> Result<Value, ApiError> {
    let arn = required(&input.state_machine_arn, "stateMachineArn")?;
    machine_name_of(arn)?;
    let m = match state.store.get_state_machine(arn).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(not_found(arn)),
        Err(e) => return Err(e.into()),
    };
    Ok(json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": m.status,
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": m.machine_type,
        "creationDate": ts(m.created_ms),
        "revisionId": m.revision_id,
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
        "tracingConfiguration": {"enabled": false},
    }))
}

pub(crate) async fn delete<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: ArnInput,
) -> Result<Value, ApiError> {
    let arn = required(&input.state_machine_arn, "stateMachineArn")?;
    machine_name_of(arn)?;
    state.store.delete_state_machine(arn, actor).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let all = state.store.list_state_machines().await?;
    let (items, next) = page(&all, input.max_results, input.next_token.as_deref())?;
    let machines: Vec<Value> = items
        .iter()
        .map(|m| {
            json!({"stateMachineArn": m.arn, "name": m.name, "type": m.machine_type,
                   "creationDate": ts(m.created_ms)})
        })
        .collect();
    let mut out = json!({"stateMachines": machines});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidateInput {
    #[serde(default)]
    definition: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    max_results: Option<i64>,
}

/// Every problem as an ERROR diagnostic with its JSON location; `OK` when there is none.
pub(crate) fn validate(input: ValidateInput) -> Result<Value, ApiError> {
    required(&input.definition, "definition")?;
    machine_type(input.kind.as_deref())?;
    let max = match input.max_results {
        None | Some(0) => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"
            ))
            .into());
        }
    };
    let diagnostics: Vec<Value> = match serde_json::from_str::<Value>(&input.definition) {
        Err(e) => vec![
            json!({"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION",
                              "message": format!("definition is not valid JSON: {e}")}),
        ],
        Ok(json) => match gantry_states::parse_definition(&json) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .iter()
                .map(|e| {
                    let mut d = json!({"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED",
                                       "message": e.message});
                    if !e.location.is_empty() {
                        d["location"] = json!(format!("/{}", e.location.replace('.', "/")));
                    }
                    d
                })
                .collect(),
        },
    };
    let truncated = diagnostics.len() > max;
    let shown: Vec<Value> = diagnostics.into_iter().take(max).collect();
    Ok(json!({
        "result": if shown.is_empty() { "OK" } else { "FAIL" },
        "diagnostics": shown,
        "truncated": truncated,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TestStateInput {
    #[serde(default)]
    definition: String,
    input: Option<String>,
    state_name: Option<String>,
    mock: Option<Value>,
}

/// The targets a state can go to next (Next, Default, Choices[].Next, Catch[].Next).
fn next_targets(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push(s.to_owned());
        }
    };
    add(state.get("Next"));
    add(state.get("Default"));
    for list in ["Choices", "Catch"] {
        for c in state
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(c.get("Next"));
        }
    }
    out
}

/// Runs one state on an input, as AWS's TestState does. Task states call nothing:
/// their result comes from `mock.result` (JSON text) or `mock.errorOutput`
/// (`{"error", "cause"}`); without a mock the Task fails with `States.Runtime`.
pub(crate) fn test_state(input: TestStateInput) -> Result<Value, ApiError> {
    required(&input.definition, "definition")?;
    let def: Value = serde_json::from_str(&input.definition).map_err(|e| {
        sfn_error(
            "InvalidDefinition",
            format!("Invalid State Definition: 'definition is not valid JSON: {e}'"),
        )
    })?;
    let (name, state) = match (
        def.get("States").and_then(Value::as_object),
        &input.state_name,
    ) {
        (Some(states), Some(n)) => match states.get(n) {
            Some(s) => (n.clone(), s.clone()),
            None => {
                return Err(sfn_error(
                    "InvalidDefinition",
                    format!(
                        "Invalid State Definition: 'the definition has no state named \"{n}\"'"
                    ),
                ));
            }
        },
        (Some(_), None) => {
            return Err(AwsError::validation(
                "stateName is required when the definition is a whole state machine",
            )
            .into());
        }
        (None, _) => (
            input
                .state_name
                .clone()
                .unwrap_or_else(|| "TestState".into()),
            def,
        ),
    };
    if !state.is_object() {
        return Err(sfn_error(
            "InvalidDefinition",
            "Invalid State Definition: 'a state must be a JSON object'",
        ));
    }
    let state_input: Value = match input.input.as_deref() {
        None | Some("") => json!({}),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            sfn_error(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        })?,
    };
    // A machine of the one state, each place it can go next standing in as a Succeed
    // state: which one is entered is `nextState`.
    let mut states = Map::new();
    for t in next_targets(&state) {
        if t != name {
            states.insert(t, json!({"Type": "Succeed"}));
        }
    }
    states.insert(name.clone(), state.clone());
    let machine = json!({"StartAt": name, "States": states});
    let mock = input.mock.clone();
    let mut calls = 0u32;
    let run = gantry_states::run_local(&machine, state_input, |_, _| {
        calls += 1;
        match &mock {
            Some(m) if m.get("result").is_some() => {
                let text = m["result"].as_str().unwrap_or_default();
                serde_json::from_str(text).map_err(|e| {
                    TaskError::new("States.Runtime", format!("mock.result is not JSON: {e}"))
                })
            }
            Some(m) if m.get("errorOutput").is_some() => Err(TaskError::new(
                m["errorOutput"]["error"].as_str().unwrap_or_default(),
                m["errorOutput"]["cause"].as_str().unwrap_or_default(),
            )),
            _ => Err(TaskError::new(
                "States.Runtime",
                "TestState on this server calls no resource: give mock.result or mock.errorOutput",
            )),
        }
    })
    .map_err(|errors| {
        sfn_error(
            "InvalidDefinition",
            format!("Invalid State Definition: '{errors}'"),
        )
    })?;
    let history = run.execution.history();
    let next = history
        .iter()
        .find(|h| h.kind == "SucceedStateEntered")
        .and_then(|h| h.details["name"].as_str())
        .map(str::to_owned);
    let caught = history
        .iter()
        .any(|h| h.kind.ends_with("StateExited") && h.details.get("caught").is_some());
    let mut out = json!({});
    match run.outcome {
        Outcome::Succeeded { output } => {
            out["status"] = json!(if caught { "CAUGHT_ERROR" } else { "SUCCEEDED" });
            out["output"] = json!(output.to_string());
            if let Some(n) = next {
                out["nextState"] = json!(n);
            }
        }
        Outcome::Failed(f) | Outcome::TimedOut(f) | Outcome::Aborted(f) => {
            out["status"] = json!(if calls > 1 { "RETRIABLE" } else { "FAILED" });
            out["error"] = json!(f.error);
            out["cause"] = json!(f.cause);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(def: Value, input: &str, mock: Option<Value>) -> Value {
        test_state(TestStateInput {
            definition: def.to_string(),
            input: Some(input.into()),
            state_name: None,
            mock,
        })
        .expect("test state")
    }

    #[test]
    fn test_state_runs_one_state_and_names_the_next() {
        let out = test(
            json!({"Type": "Pass", "Parameters": {"x.$": "$.a"}, "Next": "After"}),
            r#"{"a": 3}"#,
            None,
        );
        assert_eq!(out["status"], "SUCCEEDED");
        assert_eq!(out["nextState"], "After");
        assert_eq!(out["output"], r#"{"x":3}"#);
    }

    #[test]
    fn test_state_mocks_tasks_and_reports_catches_and_retries() {
        let task = json!({"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Catch": [{"ErrorEquals": ["Boom"], "Next": "Handle"}], "End": true});
        let ok = test(task.clone(), "{}", Some(json!({"result": "{\"r\": 1}"})));
        assert_eq!(
            (ok["status"].as_str(), ok["output"].as_str()),
            (Some("SUCCEEDED"), Some(r#"{"r":1}"#))
        );
        let caught = test(
            task,
            "{}",
            Some(json!({"errorOutput": {"error": "Boom", "cause": "c"}})),
        );
        assert_eq!(caught["status"], "CAUGHT_ERROR");
        assert_eq!(caught["nextState"], "Handle");
        let retried = test(
            json!({"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": ["E"]}], "End": true}),
            "{}",
            Some(json!({"errorOutput": {"error": "E", "cause": "c"}})),
        );
        assert_eq!(retried["status"], "RETRIABLE");
        let bad = test_state(TestStateInput {
            definition: "{".into(),
            input: None,
            state_name: None,
            mock: None,
        });
        assert_eq!(
            bad.err()
                .map(|e| e.error.code.as_str().to_owned())
                .as_deref(),
            Some("InvalidDefinition")
        );
    }

    #[test]
    fn validate_lists_every_problem_with_its_location() {
        let out = validate(ValidateInput {
            definition: json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "C": {"Type": "Pass", "End": true}}}).to_string(),
            kind: None,
            max_results: None,
        })
        .expect("validate");
        assert_eq!(out["result"], "FAIL");
        let locations: Vec<&str> = out["diagnostics"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|d| d["location"].as_str())
            .collect();
        assert!(locations.contains(&"/States/A/Next"), "{out}");
        assert!(locations.contains(&"/States/C"), "{out}");
        let ok = validate(ValidateInput {
            definition: json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}).to_string(),
            kind: Some("EXPRESS".into()),
            max_results: None,
        })
        .expect("validate");
        assert_eq!(ok["result"], "OK");
    }
}
