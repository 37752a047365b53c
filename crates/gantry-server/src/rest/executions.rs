//! Executions (runs) of a pipeline: list, start, show, stop, retry a
//! stage, answer an approval. Each calls the CodePipeline service
//! function of the same operation; only the spelling differs.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use gantry_pipeline::{ActionStatus, Execution};
use gantry_store::{Store, StoreError};
use serde_json::{Value, json};

use super::body::JsonBody;
use super::pipelines::max_results;
use super::{Caller, RestError, RestPath, json_response, ok, query_param};
use crate::codebuild::timestamp_ms;
use crate::codepipeline::executions;
use crate::router::AppState;

/// `{"executions": [...], "nextToken"?}`, newest first.
pub(super) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    RestPath(name): RestPath<String>,
    uri: Uri,
) -> Result<Response, RestError> {
    let input = executions::ListInput {
        pipeline_name: Some(name),
        max_results: max_results(&uri)?,
        next_token: query_param(&uri, "nextToken"),
    };
    let out = executions::list(&state, input).await?;
    let mut answer = json!({ "executions": out["pipelineExecutionSummaries"] });
    if let Some(next) = out.get("nextToken") {
        answer["nextToken"] = next.clone();
    }
    Ok(ok(&answer))
}

/// Starts a run: `{"sourceRevisions": {"<source action>": "<commit>"},
/// "variables": {"<name>": "<value>"}}`, both optional; 201 with the id.
pub(super) async fn start<S: Store>(
    State(state): State<AppState<S>>,
    Extension(Caller(actor)): Extension<Caller>,
    RestPath(name): RestPath<String>,
    body: Bytes,
) -> Result<Response, RestError> {
    let body = JsonBody::parse(&body, &["sourceRevisions", "variables"])?;
    let input = executions::StartInput {
        name: Some(name),
        variables: body
            .string_map("variables")?
            .into_iter()
            .map(|(k, v)| executions::NameValue {
                name: Some(k),
                value: Some(v),
            })
            .collect(),
        source_revisions: body
            .string_map("sourceRevisions")?
            .into_iter()
            .map(|(action, commit)| executions::SourceRevisionOverride {
                action_name: Some(action),
                revision_type: Some("COMMIT_ID".into()),
                revision_value: Some(commit),
            })
            .collect(),
        client_request_token: None,
    };
    let out = executions::start(&state, &actor, input).await?;
    Ok(json_response(StatusCode::CREATED, &out))
}

/// One run: its summary (as GetPipelineExecution has it) and every stage
/// and action with status, build id, error and pending approval.
pub(super) async fn show<S: Store>(
    State(state): State<AppState<S>>,
    RestPath((name, id)): RestPath<(String, String)>,
) -> Result<Response, RestError> {
    executions::pipeline_exists(&state, &name).await?;
    let e = executions::load_execution(&state, &name, &id).await?;
    let mut run = executions::execution_json(&e);
    run["startTime"] = timestamp_ms(e.started_ms);
    run["lastUpdateTime"] = timestamp_ms(e.updated_ms);
    run["stages"] = json!(stages_json(state.store.as_ref(), &e).await?);
    Ok(ok(&run))
}

async fn stages_json<S: Store>(store: &S, e: &Execution) -> Result<Vec<Value>, RestError> {
    let mut stages = Vec::new();
    for (plan, run) in e.plan.stages.iter().zip(&e.stages) {
        let mut actions = Vec::new();
        for (plan_action, action) in plan.actions.iter().zip(&run.actions) {
            let mut a = json!({
                "name": plan_action.name,
                "category": plan_action.category,
                "provider": plan_action.provider,
                "runOrder": plan_action.run_order,
                "status": action.status.map(|s| s.as_str()),
                "attempt": action.attempt,
            });
            if let Some(aeid) = &action.action_execution_id {
                a["actionExecutionId"] = json!(aeid);
            }
            if let Some(x) = &action.external_execution_id {
                a["externalExecutionId"] = json!(x);
                if plan_action.provider == "CodeBuild" {
                    a["buildId"] = json!(x);
                }
            }
            if let Some(s) = &action.summary {
                a["summary"] = json!(s);
            }
            if let Some(err) = &action.error {
                a["error"] = json!({ "code": err.code, "message": err.message });
            }
            if let Some(ms) = action.updated_ms {
                a["lastUpdateTime"] = timestamp_ms(ms);
            }
            if let Some(token) = pending_approval(store, plan_action, action).await? {
                a["approvalToken"] = json!(token);
            }
            actions.push(a);
        }
        stages.push(json!({
            "name": plan.name,
            "status": run.status.map(|s| s.as_str()),
            "attempt": run.attempt,
            "actions": actions,
        }));
    }
    Ok(stages)
}

/// The token of an approval action that waits for its answer.
async fn pending_approval<S: Store>(
    store: &S,
    plan: &gantry_pipeline::ActionPlan,
    action: &gantry_pipeline::ActionRun,
) -> Result<Option<String>, RestError> {
    let Some(aeid) = &action.action_execution_id else {
        return Ok(None);
    };
    if plan.category != "Approval" || action.status != Some(ActionStatus::InProgress) {
        return Ok(None);
    }
    match store.approval_for_attempt(aeid).await {
        Ok(a) if a.result.is_none() => Ok(Some(a.token)),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Stops a run: `{"abandon": bool, "reason": "..."}`, both optional.
pub(super) async fn stop<S: Store>(
    State(state): State<AppState<S>>,
    Extension(Caller(actor)): Extension<Caller>,
    RestPath((name, id)): RestPath<(String, String)>,
    body: Bytes,
) -> Result<Response, RestError> {
    let body = JsonBody::parse(&body, &["abandon", "reason"])?;
    let input = executions::StopInput {
        pipeline_name: Some(name),
        pipeline_execution_id: Some(id),
        abandon: body.boolean("abandon")?.unwrap_or(false),
        reason: body.string("reason")?,
    };
    Ok(ok(&executions::stop(&state, &actor, input).await?))
}

/// Retries a stage of a run: `{"mode": "FAILED_ACTIONS" | "ALL_ACTIONS"}`
/// (default FAILED_ACTIONS).
pub(super) async fn retry<S: Store>(
    State(state): State<AppState<S>>,
    Extension(Caller(actor)): Extension<Caller>,
    RestPath((name, id, stage)): RestPath<(String, String, String)>,
    body: Bytes,
) -> Result<Response, RestError> {
    let body = JsonBody::parse(&body, &["mode"])?;
    let mode = body
        .string("mode")?
        .unwrap_or_else(|| "FAILED_ACTIONS".into());
    if mode != "FAILED_ACTIONS" && mode != "ALL_ACTIONS" {
        return Err(RestError::invalid_input(format!(
            "Field 'mode' must be FAILED_ACTIONS or ALL_ACTIONS, not '{mode}'"
        )));
    }
    let input = executions::RetryInput {
        pipeline_name: Some(name),
        stage_name: Some(stage),
        pipeline_execution_id: Some(id),
        retry_mode: Some(mode),
    };
    Ok(ok(&executions::retry_stage(&state, &actor, input).await?))
}

/// Answers the approval waiting at `{stage}/{action}` of a run:
/// `{"status": "Approved" | "Rejected", "summary": "..."}`. The caller
/// names the run, not the token: the token is looked up here and handed
/// to PutApprovalResult's service function with the answer.
pub(super) async fn approve<S: Store>(
    State(state): State<AppState<S>>,
    Extension(Caller(actor)): Extension<Caller>,
    RestPath((name, id, stage, action)): RestPath<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, RestError> {
    let body = JsonBody::parse(&body, &["status", "summary"])?;
    let status = body.string("status")?.ok_or_else(|| {
        RestError::invalid_input("Field 'status' is required: Approved or Rejected")
    })?;
    if status != "Approved" && status != "Rejected" {
        return Err(RestError::invalid_input(format!(
            "Field 'status' must be Approved or Rejected, not '{status}'"
        )));
    }
    let summary = body.string("summary")?;
    executions::pipeline_exists(&state, &name).await?;
    let e = executions::load_execution(&state, &name, &id).await?;
    let Some((i, run)) = e.stage(&stage) else {
        return Err(RestError::not_found(format!(
            "Pipeline {name} has no stage {stage} in execution {id}"
        )));
    };
    let Some(a) = e.plan.stages[i]
        .actions
        .iter()
        .position(|x| x.name == action)
    else {
        return Err(RestError::not_found(format!(
            "Stage {stage} of execution {id} has no action {action}"
        )));
    };
    let token = pending_approval(
        state.store.as_ref(),
        &e.plan.stages[i].actions[a],
        &run.actions[a],
    )
    .await?
    .ok_or_else(|| {
        RestError::conflict(format!(
            "No approval is waiting at {stage}/{action} in execution {id}"
        ))
    })?;
    let input = executions::ApprovalInput {
        pipeline_name: Some(name),
        stage_name: Some(stage),
        action_name: Some(action),
        result: Some(executions::ApprovalResult {
            summary,
            status: Some(status),
        }),
        token: Some(token),
    };
    Ok(ok(
        &executions::put_approval_result(&state, &actor, input).await?
    ))
}
