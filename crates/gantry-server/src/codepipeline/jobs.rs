//! The job-worker API of custom actions: PollForJobs, AcknowledgeJob,
//! GetJobDetails, PutJobSuccessResult, PutJobFailureResult.
//!
//! A job is `Queued` when its action starts, `Dispatched` when a poll hands
//! it out (with a fresh nonce), `InProgress` once its worker acknowledged
//! it, then `Succeeded`, `Failed` or `TimedOut`. A final result is applied
//! to the pipeline engine; a success with a continuation token finishes
//! the job and queues the next job of the same action instead.

use std::collections::BTreeMap;

use gantry_pipeline::{ActionError, EngineError, Input};
use gantry_store::{JobOutcome, JobRecord, NewJob, Store, StoreError, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use super::action_types::{action_type_not_found, live_type};
use super::{exception, required, validation};
use crate::error::ApiError;
use crate::pipeline_host::HostError;
use crate::router::AppState;

/// A dispatched job nobody acknowledged within this long goes to the next
/// poller (CodePipeline's deadline is not documented; see
/// docs/custom-actions.md).
const ACK_DEADLINE_MS: i64 = 5 * 60 * 1000;
/// The most jobs one poll hands out.
const MAX_BATCH: i64 = 100;
/// The most characters all output variables of a result may hold.
const MAX_OUTPUT_VARIABLES_CHARS: usize = 122_880;
/// `FailureType`.
const FAILURE_TYPES: [&str; 6] = [
    "JobFailed",
    "ConfigurationError",
    "PermissionError",
    "RevisionOutOfSync",
    "RevisionUnavailable",
    "SystemUnavailable",
];

/// `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
fn is_job_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// `[A-Za-z0-9@\-_]+`.
fn is_variable_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '-' | '_'))
}

fn check_job_id(id: &str) -> Result<(), ApiError> {
    if is_job_id(id) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{id}' at 'jobId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}"
        )))
    }
}

fn check_len(value: &str, member: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length between {min} and {max}"
        )))
    }
}

fn job_not_found(id: &str) -> ApiError {
    exception("JobNotFoundException", format!("Job {id} was not found"))
}

async fn load_job<S: Store>(state: &AppState<S>, id: &str) -> Result<JobRecord, ApiError> {
    check_job_id(id)?;
    match state.store.get_job(id).await {
        Ok(j) => Ok(j),
        Err(StoreError::NotFound) => Err(job_not_found(id)),
        Err(e) => Err(e.into()),
    }
}

/// The job's `JobData` with fresh artifact credentials and its
/// continuation token.
async fn job_data<S: Store>(state: &AppState<S>, job: &JobRecord) -> Result<Value, ApiError> {
    let mut data = job.job.data.clone();
    data["artifactCredentials"] = crate::artifact_s3::issue_credentials(state, &job.job.id).await?;
    Ok(data)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypeId {
    category: Option<String>,
    owner: Option<String>,
    provider: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PollInput {
    action_type_id: Option<TypeId>,
    max_batch_size: Option<i64>,
    query_param: Option<BTreeMap<String, String>>,
}

pub(crate) async fn poll<S: Store>(
    state: &AppState<S>,
    input: PollInput,
) -> Result<Value, ApiError> {
    let id = required(input.action_type_id, "actionTypeId")?;
    let category = required(id.category, "actionTypeId.category")?;
    let owner = required(id.owner, "actionTypeId.owner")?;
    let provider = required(id.provider, "actionTypeId.provider")?;
    let version = required(id.version, "actionTypeId.version")?;
    if owner != "Custom" {
        return Err(validation(format!(
            "PollForJobs works only for action types with owner Custom, not {owner}"
        )));
    }
    let batch = input.max_batch_size.unwrap_or(1);
    if batch < 1 {
        return Err(validation(format!(
            "1 validation error detected: Value '{batch}' at 'maxBatchSize' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )));
    }
    let Some(t) = live_type(state.store.as_ref(), &category, &provider, &version).await? else {
        return Err(action_type_not_found(&category, &provider, &version));
    };
    let query = input.query_param.unwrap_or_default();
    let query_value = match (t.queryable(), query.len()) {
        (None, 0) => None,
        (None, _) => {
            return Err(validation(format!(
                "queryParam: the action type {category}/Custom/{provider} has no queryable property"
            )));
        }
        (Some(name), _) => {
            let value = query.get(name).filter(|_| query.len() == 1).ok_or_else(|| {
                validation(format!(
                    "queryParam must give exactly the queryable property {name} of the action type"
                ))
            })?;
            check_len(value, &format!("queryParam.{name}"), 1, 50)?;
            Some(value.clone())
        }
    };
    let nonces: Vec<String> = (0..batch.min(MAX_BATCH))
        .map(|_| crate::pipeline_host::new_id())
        .collect();
    let jobs = state
        .store
        .dispatch_jobs(
            &category,
            &provider,
            &version,
            query_value.as_deref(),
            &nonces,
            now_ms() - ACK_DEADLINE_MS,
        )
        .await?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in &jobs {
        out.push(json!({
            "id": job.job.id,
            "nonce": job.job.nonce,
            "accountId": state.config.account_id,
            "data": job_data(state, job).await?,
        }));
    }
    Ok(json!({ "jobs": out }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AckInput {
    job_id: Option<String>,
    nonce: Option<String>,
}

pub(crate) async fn acknowledge<S: Store>(
    state: &AppState<S>,
    input: AckInput,
) -> Result<Value, ApiError> {
    let id = required(input.job_id, "jobId")?;
    check_job_id(&id)?;
    let nonce = required(input.nonce, "nonce")?;
    check_len(&nonce, "nonce", 1, 50)?;
    match state.store.acknowledge_job(&id, &nonce).await {
        Ok(job) => Ok(json!({ "status": job.status })),
        Err(StoreError::NotFound) => Err(job_not_found(&id)),
        Err(StoreError::Conflict(_)) => Err(exception(
            "InvalidNonceException",
            format!(
                "The nonce does not claim job {id}: another worker acknowledged it, or it was handed out again"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobIdInput {
    job_id: Option<String>,
}

pub(crate) async fn details<S: Store>(
    state: &AppState<S>,
    input: JobIdInput,
) -> Result<Value, ApiError> {
    let id = required(input.job_id, "jobId")?;
    let job = load_job(state, &id).await?;
    Ok(json!({
        "jobDetails": {
            "id": job.job.id,
            "accountId": state.config.account_id,
            "data": job_data(state, &job).await?,
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CurrentRevision {
    revision: Option<String>,
    change_identifier: Option<String>,
    created: Option<Value>,
    revision_summary: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecutionDetails {
    summary: Option<String>,
    external_execution_id: Option<String>,
    percent_complete: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SuccessInput {
    job_id: Option<String>,
    current_revision: Option<CurrentRevision>,
    continuation_token: Option<String>,
    execution_details: Option<ExecutionDetails>,
    output_variables: Option<BTreeMap<String, String>>,
}

fn check_execution_details(d: &ExecutionDetails) -> Result<(), ApiError> {
    if let Some(s) = &d.summary {
        check_len(s, "executionDetails.summary", 1, 2048)?;
    }
    if let Some(x) = &d.external_execution_id {
        check_len(x, "executionDetails.externalExecutionId", 1, 1500)?;
    }
    if let Some(p) = d.percent_complete
        && !(0..=100).contains(&p)
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{p}' at 'executionDetails.percentComplete' failed to satisfy constraint: Member must be between 0 and 100"
        )));
    }
    Ok(())
}

pub(crate) async fn put_success<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: SuccessInput,
) -> Result<Value, ApiError> {
    let id = required(input.job_id, "jobId")?;
    check_job_id(&id)?;
    let mut revision = Value::Null;
    if let Some(r) = &input.current_revision {
        let rev = required(r.revision.as_deref(), "currentRevision.revision")?;
        check_len(rev, "currentRevision.revision", 1, 1500)?;
        let change = required(
            r.change_identifier.as_deref(),
            "currentRevision.changeIdentifier",
        )?;
        check_len(change, "currentRevision.changeIdentifier", 1, 100)?;
        if let Some(s) = &r.revision_summary {
            check_len(s, "currentRevision.revisionSummary", 1, 2048)?;
        }
        revision = json!({"revision": rev, "changeIdentifier": change,
            "created": r.created, "revisionSummary": r.revision_summary});
    }
    if let Some(d) = &input.execution_details {
        check_execution_details(d)?;
    }
    if let Some(t) = &input.continuation_token {
        check_len(t, "continuationToken", 1, 2048)?;
    }
    let variables = input.output_variables.unwrap_or_default();
    if input.continuation_token.is_some() && !variables.is_empty() {
        return Err(validation(
            "outputVariables can be given only with the final result: a result with a continuationToken cannot carry them",
        ));
    }
    let mut size = 0;
    for (k, v) in &variables {
        if !is_variable_key(k) {
            return Err(validation(format!(
                "1 validation error detected: Value '{k}' at 'outputVariables' failed to satisfy constraint: Map keys must satisfy regular expression pattern: [A-Za-z0-9@\\-_]+"
            )));
        }
        size += k.chars().count() + v.chars().count();
    }
    if size > MAX_OUTPUT_VARIABLES_CHARS {
        return Err(exception(
            "OutputVariablesSizeExceededException",
            format!(
                "The output variables hold {size} characters; at most {MAX_OUTPUT_VARIABLES_CHARS} are allowed"
            ),
        ));
    }
    let job = load_job(state, &id).await?;
    let summary = input
        .execution_details
        .as_ref()
        .and_then(|d| d.summary.clone());
    let external = input
        .execution_details
        .as_ref()
        .and_then(|d| d.external_execution_id.clone());
    let result = json!({
        "currentRevision": revision,
        "summary": summary,
        "externalExecutionId": external,
        "percentComplete": input.execution_details.as_ref().and_then(|d| d.percent_complete),
        "continuationToken": input.continuation_token,
        "outputVariables": variables,
    });
    if let Some(token) = input.continuation_token {
        // The job is done; the action goes on with a new job carrying the token.
        let mut data = job.job.data.clone();
        data["continuationToken"] = json!(token);
        let next = NewJob {
            id: crate::pipeline_host::new_id(),
            nonce: crate::pipeline_host::new_id(),
            data,
            ..job.job.clone()
        };
        let outcome = JobOutcome {
            status: "Succeeded".into(),
            result,
            next: Some(next),
        };
        finish(state, &job, &outcome, actor).await?;
        return Ok(json!({}));
    }
    // Outputs the worker uploaded become the action's artifacts; one it
    // did not upload fails the action (the engine names it).
    let (engine_input, status) = match crate::artifact_s3::collect_outputs(state, &job).await {
        Ok(outputs) => (
            Input::ActionSucceeded {
                execution_id: job.job.execution_id.clone(),
                action_execution_id: job.job.action_execution_id.clone(),
                outputs,
                variables,
                summary,
                external_execution_id: external,
            },
            "Succeeded",
        ),
        Err(message) => (
            Input::ActionFailed {
                execution_id: job.job.execution_id.clone(),
                action_execution_id: job.job.action_execution_id.clone(),
                error: ActionError {
                    code: "JobFailed".into(),
                    message,
                },
                external_execution_id: external,
            },
            "Failed",
        ),
    };
    let outcome = JobOutcome {
        status: status.into(),
        result,
        next: None,
    };
    finish(state, &job, &outcome, actor).await?;
    apply(state, &job, engine_input, actor).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureDetails {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    external_execution_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureInput {
    job_id: Option<String>,
    failure_details: Option<FailureDetails>,
}

pub(crate) async fn put_failure<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: FailureInput,
) -> Result<Value, ApiError> {
    let id = required(input.job_id, "jobId")?;
    check_job_id(&id)?;
    let details = required(input.failure_details, "failureDetails")?;
    let kind = required(details.kind, "failureDetails.type")?;
    if !FAILURE_TYPES.contains(&kind.as_str()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{kind}' at 'failureDetails.type' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            FAILURE_TYPES.join(", ")
        )));
    }
    let message = required(details.message, "failureDetails.message")?;
    check_len(&message, "failureDetails.message", 1, 5000)?;
    if let Some(x) = &details.external_execution_id {
        check_len(x, "failureDetails.externalExecutionId", 1, 1500)?;
    }
    let job = load_job(state, &id).await?;
    let outcome = JobOutcome {
        status: "Failed".into(),
        result: json!({"type": kind, "message": message, "externalExecutionId": details.external_execution_id}),
        next: None,
    };
    finish(state, &job, &outcome, actor).await?;
    let input = Input::ActionFailed {
        execution_id: job.job.execution_id.clone(),
        action_execution_id: job.job.action_execution_id.clone(),
        error: ActionError {
            code: kind,
            message,
        },
        external_execution_id: details.external_execution_id,
    };
    apply(state, &job, input, actor).await?;
    Ok(json!({}))
}

async fn finish<S: Store>(
    state: &AppState<S>,
    job: &JobRecord,
    outcome: &JobOutcome,
    actor: &str,
) -> Result<(), ApiError> {
    match state.store.finish_job(&job.job.id, outcome, actor).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(job_not_found(&job.job.id)),
        Err(StoreError::Conflict(m)) => Err(exception(
            "InvalidJobStateException",
            format!("A result cannot be accepted: {m}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Applies a final result to the engine and wakes the attempt's timeout.
async fn apply<S: Store>(
    state: &AppState<S>,
    job: &JobRecord,
    input: Input,
    actor: &str,
) -> Result<(), ApiError> {
    let result = state
        .pipelines
        .apply(state, &job.job.pipeline, input, actor, "job.result")
        .await;
    crate::artifact_s3::remove_objects(&state.pipelines.providers.artifacts, &job.job.objects)
        .await;
    state
        .pipelines
        .providers
        .custom_finished(&job.job.action_execution_id);
    match result {
        Ok(_) | Err(HostError::Engine(EngineError::StaleResult(_))) => Ok(()),
        Err(e) => Err(ApiError::internal(e)),
    }
}
