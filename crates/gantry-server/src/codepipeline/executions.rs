//! The execution side of CodePipeline's API: StartPipelineExecution,
//! StopPipelineExecution, GetPipelineExecution, ListPipelineExecutions,
//! GetPipelineState, ListActionExecutions, PutApprovalResult and
//! RetryStageExecution, over the pipeline host (`pipeline_host`).

use gantry_pipeline::{
    ActionStatus, EngineError, Execution, ExecutionStatus, Input, Plan, RetryMode, Trigger,
};
use gantry_store::{Store, StoreError, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{exception, pipeline_not_found, required, validation};
use crate::codebuild::timestamp_ms;
use crate::error::ApiError;
use crate::pipeline_host::HostError;
use crate::router::AppState;

fn host_error(e: HostError, pipeline: &str, execution: &str) -> ApiError {
    match e {
        HostError::Engine(e) => match e {
            EngineError::ExecutionNotFound(_) | EngineError::StaleResult(_) => exception(
                "PipelineExecutionNotFoundException",
                format!("Pipeline execution {execution} was not found in pipeline {pipeline}"),
            ),
            EngineError::DuplicateExecution(m) => exception("ConflictException", m),
            EngineError::InvalidVariables(m) => validation(m),
            EngineError::NotStoppable(m) => exception("PipelineExecutionNotStoppableException", m),
            e @ EngineError::DuplicateStop(_) => {
                exception("DuplicatedStopRequestException", e.to_string())
            }
            EngineError::StageNotRetryable(m) => exception("StageNotRetryableException", m),
            EngineError::NotLatest(m) => exception("NotLatestPipelineExecutionException", m),
            e @ EngineError::StageNotFound(_) => exception("StageNotFoundException", e.to_string()),
        },
        HostError::Store(e) => e.into(),
        HostError::Corrupt(..) => ApiError::internal(e),
    }
}

/// PipelineNotFoundException unless the pipeline exists; reads the row
/// without parsing the declaration (for operations that only check).
pub(crate) async fn pipeline_exists<S: Store>(
    state: &AppState<S>,
    name: &str,
) -> Result<(), ApiError> {
    match state.store.get_pipeline(name, None).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound) => Err(pipeline_not_found(name)),
        Err(e) => Err(e.into()),
    }
}

/// A pipeline's current plan, or PipelineNotFoundException.
async fn current_plan<S: Store>(state: &AppState<S>, name: &str) -> Result<Plan, ApiError> {
    match super::get_pipeline(state.store.as_ref(), name).await? {
        Some((decl, version)) => Ok(Plan::from_declaration(&decl, version)),
        None => Err(pipeline_not_found(name)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NameValue {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceRevisionOverride {
    pub(crate) action_name: Option<String>,
    pub(crate) revision_type: Option<String>,
    pub(crate) revision_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartInput {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) variables: Vec<NameValue>,
    #[serde(default)]
    pub(crate) source_revisions: Vec<SourceRevisionOverride>,
    /// Makes the start idempotent: a second start with the same token
    /// returns the first one's execution instead of starting another.
    #[serde(default)]
    pub(crate) client_request_token: Option<String>,
}

/// The execution id a `clientRequestToken` stands for: derived from the
/// pipeline and the token, so a retried request names the same execution
/// however long after, and across restarts, with no table of tokens.
fn requested_execution_id(pipeline: &str, token: &str) -> Result<String, ApiError> {
    let valid = (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(validation(format!(
            "clientRequestToken must be 1 to 128 letters, digits or hyphens, not {token:?}"
        )));
    }
    let key = format!("codepipeline-start\0{pipeline}\0{token}");
    Ok(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string())
}

/// Starts an execution of a pipeline's current version; the id is returned
/// once the execution is stored.
pub(crate) async fn start_execution<S: Store>(
    state: &AppState<S>,
    pipeline: &str,
    trigger: Trigger,
    variables: Vec<(String, String)>,
    source_revisions: std::collections::BTreeMap<String, String>,
    actor: &str,
) -> Result<String, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    start_with_id(
        state,
        pipeline,
        id,
        trigger,
        variables,
        source_revisions,
        actor,
    )
    .await
}

/// [`start_execution`] under an id the caller chose.
async fn start_with_id<S: Store>(
    state: &AppState<S>,
    pipeline: &str,
    id: String,
    trigger: Trigger,
    variables: Vec<(String, String)>,
    source_revisions: std::collections::BTreeMap<String, String>,
    actor: &str,
) -> Result<String, ApiError> {
    let plan = current_plan(state, pipeline).await?;
    for name in source_revisions.keys() {
        let is_source = plan.stages.first().is_some_and(|s| {
            s.actions
                .iter()
                .any(|a| &a.name == name && a.category == "Source")
        });
        if !is_source {
            return Err(validation(format!(
                "sourceRevisions names {name}, which is not a source action of pipeline {pipeline}"
            )));
        }
    }
    let input = Input::Start {
        execution_id: id.clone(),
        plan,
        trigger,
        variables,
        source_revisions,
    };
    state
        .pipelines
        .apply(state, pipeline, input, actor, "pipeline.start")
        .await
        .map_err(|e| host_error(e, pipeline, &id))?;
    Ok(id)
}

pub(crate) async fn start<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StartInput,
) -> Result<Value, ApiError> {
    let name = required(input.name, "name")?;
    let mut variables = Vec::new();
    for v in input.variables {
        variables.push((
            required(v.name, "variables.member.name")?,
            v.value.unwrap_or_default(),
        ));
    }
    let mut revisions = std::collections::BTreeMap::new();
    for r in input.source_revisions {
        let action = required(r.action_name, "sourceRevisions.member.actionName")?;
        let kind = required(r.revision_type, "sourceRevisions.member.revisionType")?;
        if kind != "COMMIT_ID" {
            return Err(validation(format!(
                "revisionType {kind} is not supported for Git source actions; use COMMIT_ID"
            )));
        }
        revisions.insert(
            action,
            required(r.revision_value, "sourceRevisions.member.revisionValue")?,
        );
    }
    let trigger = Trigger {
        trigger_type: "StartPipelineExecution".into(),
        trigger_detail: actor.into(),
    };
    let id = match input.client_request_token.as_deref() {
        None => start_execution(state, &name, trigger, variables, revisions, actor).await?,
        Some(token) => {
            let id = requested_execution_id(&name, token)?;
            match state.store.get_pipeline_execution(&name, &id).await {
                // Started before (maybe long ended): the same answer again.
                Ok(_) => id,
                Err(StoreError::NotFound) => {
                    let run = start_with_id(
                        state,
                        &name,
                        id.clone(),
                        trigger,
                        variables,
                        revisions,
                        actor,
                    )
                    .await;
                    match run {
                        Ok(id) => id,
                        // The same token, at the same moment: one start wins.
                        Err(e) if e.error.code.as_str() == "ConflictException" => id,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(json!({ "pipelineExecutionId": id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StopInput {
    pub(crate) pipeline_name: Option<String>,
    pub(crate) pipeline_execution_id: Option<String>,
    #[serde(default)]
    pub(crate) abandon: bool,
    pub(crate) reason: Option<String>,
}

pub(crate) async fn stop<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StopInput,
) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    let id = required(input.pipeline_execution_id, "pipelineExecutionId")?;
    pipeline_exists(state, &pipeline).await?;
    if state
        .pipelines
        .active_execution(state.store.as_ref(), &pipeline, &id)
        .await
        .map_err(|e| host_error(e, &pipeline, &id))?
        .is_none()
    {
        // Ended (or unknown): AWS says which.
        return match state.store.get_pipeline_execution(&pipeline, &id).await {
            Ok(r) => Err(exception(
                "PipelineExecutionNotStoppableException",
                format!(
                    "Pipeline execution {id} is {} and cannot be stopped",
                    r.status
                ),
            )),
            Err(StoreError::NotFound) => Err(host_error(
                HostError::Engine(EngineError::ExecutionNotFound(id.clone())),
                &pipeline,
                &id,
            )),
            Err(e) => Err(e.into()),
        };
    }
    let input = Input::Stop {
        execution_id: id.clone(),
        abandon: input.abandon,
        reason: input.reason,
    };
    state
        .pipelines
        .apply(state, &pipeline, input, actor, "pipeline.stop")
        .await
        .map_err(|e| host_error(e, &pipeline, &id))?;
    Ok(json!({ "pipelineExecutionId": id }))
}

/// An execution, from the runtime when it runs (fresher), else the store.
pub(crate) async fn load_execution<S: Store>(
    state: &AppState<S>,
    pipeline: &str,
    id: &str,
) -> Result<Execution, ApiError> {
    if let Some(e) = state
        .pipelines
        .active_execution(state.store.as_ref(), pipeline, id)
        .await
        .map_err(|e| host_error(e, pipeline, id))?
    {
        return Ok(e);
    }
    let record = match state.store.get_pipeline_execution(pipeline, id).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            return Err(host_error(
                HostError::Engine(EngineError::ExecutionNotFound(id.into())),
                pipeline,
                id,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    serde_json::from_value(record.body).map_err(ApiError::internal)
}

fn mode_name(e: &Execution) -> &'static str {
    match e.plan.mode {
        gantry_pipeline::Mode::Superseded => "SUPERSEDED",
        gantry_pipeline::Mode::Queued => "QUEUED",
        gantry_pipeline::Mode::Parallel => "PARALLEL",
    }
}

/// The source actions' revisions: (action name, commit, first line).
fn source_revisions(e: &Execution) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let (Some(stage), Some(run)) = (e.plan.stages.first(), e.stages.first()) {
        for (plan, action) in stage.actions.iter().zip(&run.actions) {
            if plan.category == "Source"
                && let Some(commit) = &action.external_execution_id
            {
                out.push((
                    plan.name.clone(),
                    commit.clone(),
                    action.summary.clone().unwrap_or_default(),
                ));
            }
        }
    }
    out
}

fn trigger_json(e: &Execution) -> Value {
    json!({
        "triggerType": if e.trigger.trigger_type.is_empty() { "StartPipelineExecution" } else { e.trigger.trigger_type.as_str() },
        "triggerDetail": e.trigger.trigger_detail,
    })
}

pub(crate) fn execution_json(e: &Execution) -> Value {
    let mut out = json!({
        "pipelineName": e.plan.pipeline,
        "pipelineVersion": e.plan.version,
        "pipelineExecutionId": e.id,
        "status": e.status.as_str(),
        "artifactRevisions": source_revisions(e).iter().map(|(name, id, summary)| json!({
            "name": e.plan.stages[0].actions.iter().find(|a| &a.name == name).and_then(|a| a.output_artifacts.first()).cloned().unwrap_or_default(),
            "revisionId": id,
            "revisionSummary": summary,
        })).collect::<Vec<_>>(),
        "variables": e.variables.iter().map(|(k, v)| json!({"name": k, "resolvedValue": v})).collect::<Vec<_>>(),
        "trigger": trigger_json(e),
        "executionMode": mode_name(e),
        "executionType": "STANDARD",
    });
    if let Some(s) = &e.status_summary {
        out["statusSummary"] = json!(s);
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetInput {
    pub(crate) pipeline_name: Option<String>,
    pub(crate) pipeline_execution_id: Option<String>,
}

pub(crate) async fn get<S: Store>(state: &AppState<S>, input: GetInput) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    let id = required(input.pipeline_execution_id, "pipelineExecutionId")?;
    pipeline_exists(state, &pipeline).await?;
    let e = load_execution(state, &pipeline, &id).await?;
    Ok(json!({ "pipelineExecution": execution_json(&e) }))
}

/// A page of a List operation: `nextToken` is the offset this server
/// handed out, `maxResults` at most 100.
struct Page {
    skip: usize,
    max: usize,
}

impl Page {
    fn of(max_results: Option<u32>, next_token: Option<&str>) -> Result<Page, ApiError> {
        let max = max_results.unwrap_or(100).clamp(1, 100) as usize;
        let skip = match next_token.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| {
                exception("InvalidNextTokenException", "The next token is not valid")
            })?,
        };
        Ok(Page { skip, max })
    }

    /// The answer: the items under `member`, and `nextToken` when `more`.
    fn answer(&self, member: &str, items: Vec<Value>, more: bool) -> Value {
        let mut out = json!({ member: items });
        if more {
            out["nextToken"] = json!((self.skip + self.max).to_string());
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    pub(crate) pipeline_name: Option<String>,
    pub(crate) max_results: Option<u32>,
    pub(crate) next_token: Option<String>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    pipeline_exists(state, &pipeline).await?;
    let Page { skip, max } = Page::of(input.max_results, input.next_token.as_deref())?;
    let records = state
        .store
        .list_pipeline_executions(&pipeline, (skip + max + 1) as u32)
        .await?;
    let more = records.len() > skip + max;
    let mut summaries = Vec::new();
    for record in records.into_iter().skip(skip).take(max) {
        // The runtime's copy is fresher for running executions.
        let e: Execution = match load_execution(state, &pipeline, &record.id).await {
            Ok(e) => e,
            Err(_) => continue,
        };
        let mut s = json!({
            "pipelineExecutionId": e.id,
            "status": e.status.as_str(),
            "startTime": timestamp_ms(e.started_ms),
            "lastUpdateTime": timestamp_ms(e.updated_ms),
            "sourceRevisions": source_revisions(&e).iter().map(|(name, id, summary)| json!({
                "actionName": name, "revisionId": id, "revisionSummary": summary,
            })).collect::<Vec<_>>(),
            "trigger": trigger_json(&e),
            "executionMode": mode_name(&e),
            "executionType": "STANDARD",
        });
        if let Some(summary) = &e.status_summary {
            s["statusSummary"] = json!(summary);
            if e.status == ExecutionStatus::Stopped {
                s["stopTrigger"] = json!({ "reason": summary });
            }
        }
        summaries.push(s);
    }
    Ok(Page { skip, max }.answer("pipelineExecutionSummaries", summaries, more))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateInput {
    pub(crate) name: Option<String>,
}

pub(crate) async fn pipeline_state<S: Store>(
    state: &AppState<S>,
    input: StateInput,
) -> Result<Value, ApiError> {
    let name = required(input.name, "name")?;
    let record = match state.store.get_pipeline(&name, None).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(pipeline_not_found(&name)),
        Err(e) => return Err(e.into()),
    };
    let declaration = super::pipelines::parse_stored(&record.declaration)?;
    let plan = Plan::from_declaration(&declaration, record.version);
    let meta = state
        .pipelines
        .meta(state.store.as_ref(), &name)
        .await
        .map_err(|e| host_error(e, &name, ""))?;
    let disabled = state.store.disabled_transitions(&name).await?;
    let mut stages = Vec::new();
    for stage in &plan.stages {
        let latest = match meta.last_entered.get(&stage.name) {
            Some(id) => load_execution(state, &name, id).await.ok(),
            None => None,
        };
        let transition = disabled.iter().find(|t| {
            t.stage == stage.name && t.transition_type == gantry_store::TransitionType::Inbound
        });
        let mut s = json!({
            "stageName": stage.name,
            "inboundTransitionState": match transition {
                Some(t) => json!({
                    "enabled": false,
                    "lastChangedBy": t.disabled_by,
                    "lastChangedAt": timestamp_ms(t.disabled_ms),
                    "disabledReason": t.reason,
                }),
                None => json!({ "enabled": true }),
            },
        });
        let mut actions = Vec::new();
        if let Some(e) = &latest
            && let Some((i, run)) = e.stage(&stage.name)
        {
            s["latestExecution"] = json!({
                "pipelineExecutionId": e.id,
                "status": run.status.map(|x| x.as_str()).unwrap_or("InProgress"),
            });
            for (plan_action, action) in e.plan.stages[i].actions.iter().zip(&run.actions) {
                let mut a = json!({ "actionName": plan_action.name });
                if let (Some(status), Some(aeid)) = (action.status, &action.action_execution_id) {
                    let mut latest = json!({
                        "actionExecutionId": aeid,
                        "status": status.as_str(),
                        "lastStatusChange": timestamp_ms(action.updated_ms.unwrap_or(e.updated_ms)),
                    });
                    if let Some(summary) = &action.summary {
                        latest["summary"] = json!(summary);
                    }
                    if let Some(x) = &action.external_execution_id {
                        latest["externalExecutionId"] = json!(x);
                    }
                    if let Some(err) = &action.error {
                        latest["errorDetails"] =
                            json!({ "code": err.code, "message": err.message });
                    }
                    if plan_action.category == "Approval"
                        && status == ActionStatus::InProgress
                        && let Ok(approval) = state.store.approval_for_attempt(aeid).await
                    {
                        latest["token"] = json!(approval.token);
                    }
                    a["latestExecution"] = latest;
                }
                if plan_action.category == "Source"
                    && let Some(commit) = &action.external_execution_id
                {
                    a["currentRevision"] = json!({ "revisionId": commit });
                }
                actions.push(a);
            }
        } else {
            for plan_action in &stage.actions {
                actions.push(json!({ "actionName": plan_action.name }));
            }
        }
        s["actionStates"] = json!(actions);
        stages.push(s);
    }
    Ok(json!({
        "pipelineName": name,
        "pipelineVersion": record.latest_version,
        "stageStates": stages,
        "created": timestamp_ms(record.created_ms),
        "updated": timestamp_ms(record.updated_ms),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionFilter {
    pipeline_execution_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListActionsInput {
    pipeline_name: Option<String>,
    filter: Option<ActionFilter>,
    max_results: Option<u32>,
    next_token: Option<String>,
}

pub(crate) async fn list_actions<S: Store>(
    state: &AppState<S>,
    input: ListActionsInput,
) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    pipeline_exists(state, &pipeline).await?;
    let execution = input.filter.and_then(|f| f.pipeline_execution_id);
    let Page { skip, max } = Page::of(input.max_results, input.next_token.as_deref())?;
    let records = state
        .store
        .list_action_executions(&pipeline, execution.as_deref(), (skip + max + 1) as u32)
        .await?;
    let more = records.len() > skip + max;
    // Secret properties of custom actions are shown masked, as GetPipeline shows them.
    let type_key = |plan: &Value| {
        format!(
            "{}/{}/{}",
            plan["category"], plan["provider"], plan["version"]
        )
    };
    let mut secrets = std::collections::BTreeMap::new();
    for r in records.iter().skip(skip).take(max) {
        let plan = &r.body["action"];
        if plan["owner"] == "Custom" && !secrets.contains_key(&type_key(plan)) {
            let found = super::action_types::type_secrets(state.store.as_ref(), plan).await?;
            secrets.insert(type_key(plan), found);
        }
    }
    let details: Vec<Value> = records
        .iter()
        .skip(skip)
        .take(max)
        .map(|r| {
            let plan = &r.body["action"];
            let run = &r.body["run"];
            let mut d = json!({
                "pipelineExecutionId": r.execution_id,
                "actionExecutionId": r.id,
                "pipelineVersion": r.body["pipelineVersion"],
                "stageName": r.stage,
                "actionName": r.action,
                "startTime": timestamp_ms(r.start_ms),
                "lastUpdateTime": timestamp_ms(r.update_ms),
                "status": r.status,
                "input": {
                    "actionTypeId": {
                        "category": plan["category"], "owner": plan["owner"],
                        "provider": plan["provider"], "version": plan["version"],
                    },
                    "configuration": plan["configuration"],
                    "resolvedConfiguration": run["resolved_configuration"],
                    "inputArtifacts": run["inputs"].as_object().map(|m| m.keys().map(|k| json!({"name": k})).collect::<Vec<_>>()).unwrap_or_default(),
                },
                "output": {
                    "outputArtifacts": run["outputs"].as_object().map(|m| m.keys().map(|k| json!({"name": k})).collect::<Vec<_>>()).unwrap_or_default(),
                    "outputVariables": run["output_variables"],
                },
            });
            if let Some(names) = secrets.get(&type_key(plan)) {
                super::action_types::mask_map(&mut d["input"]["configuration"], names);
                super::action_types::mask_map(&mut d["input"]["resolvedConfiguration"], names);
            }
            if let Some(ns) = plan["namespace"].as_str() {
                d["input"]["namespace"] = json!(ns);
            }
            let mut result = json!({});
            if let Some(x) = run["external_execution_id"].as_str() {
                result["externalExecutionId"] = json!(x);
            }
            if let Some(s) = run["summary"].as_str() {
                result["externalExecutionSummary"] = json!(s);
            }
            if run["error"].is_object() {
                result["errorDetails"] = run["error"].clone();
            }
            d["output"]["executionResult"] = result;
            d
        })
        .collect();
    Ok(Page { skip, max }.answer("actionExecutionDetails", details, more))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalResult {
    pub(crate) summary: Option<String>,
    pub(crate) status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalInput {
    pub(crate) pipeline_name: Option<String>,
    pub(crate) stage_name: Option<String>,
    pub(crate) action_name: Option<String>,
    pub(crate) result: Option<ApprovalResult>,
    pub(crate) token: Option<String>,
}

/// Answers a manual approval; the answer is stored before the engine
/// hears it, so a crash in between loses nothing (the provider applies a
/// stored answer when the server comes back).
pub(crate) async fn put_approval_result<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: ApprovalInput,
) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    let stage = required(input.stage_name, "stageName")?;
    let action = required(input.action_name, "actionName")?;
    let result = required(input.result, "result")?;
    let token = required(input.token, "token")?;
    let status = required(result.status, "result.status")?;
    if status != "Approved" && status != "Rejected" {
        return Err(validation(format!(
            "result.status must be Approved or Rejected, not {status}"
        )));
    }
    let plan = current_plan(state, &pipeline).await?;
    let Some(stage_plan) = plan.stages.iter().find(|s| s.name == stage) else {
        return Err(exception(
            "StageNotFoundException",
            format!("Stage {stage} was not found"),
        ));
    };
    if !stage_plan.actions.iter().any(|a| a.name == action) {
        return Err(exception(
            "ActionNotFoundException",
            format!("Action {action} was not found in stage {stage}"),
        ));
    }
    let meta = state
        .pipelines
        .meta(state.store.as_ref(), &pipeline)
        .await
        .map_err(|e| host_error(e, &pipeline, ""))?;
    let invalid = || {
        exception(
            "InvalidApprovalTokenException",
            format!("The token for the approval of {stage}/{action} is not valid"),
        )
    };
    let Some(execution_id) = meta.last_entered.get(&stage) else {
        return Err(invalid());
    };
    let e = load_execution(state, &pipeline, execution_id).await?;
    let Some((i, run)) = e.stage(&stage) else {
        return Err(invalid());
    };
    let Some(a) = e.plan.stages[i]
        .actions
        .iter()
        .position(|x| x.name == action)
    else {
        return Err(invalid());
    };
    let attempt = &run.actions[a];
    let Some(aeid) = attempt.action_execution_id.clone() else {
        return Err(invalid());
    };
    let approval = match state.store.approval_for_attempt(&aeid).await {
        Ok(x) => x,
        Err(StoreError::NotFound) => return Err(invalid()),
        Err(e) => return Err(e.into()),
    };
    if !bool::from(approval.token.as_bytes().ct_eq(token.as_bytes())) {
        return Err(invalid());
    }
    if approval.result.is_some() || attempt.status != Some(ActionStatus::InProgress) {
        return Err(exception(
            "ApprovalAlreadyCompletedException",
            format!("The approval of {stage}/{action} was already answered"),
        ));
    }
    match state
        .store
        .answer_approval(&approval.token, &status, actor)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(exception(
                "ApprovalAlreadyCompletedException",
                format!("The approval of {stage}/{action} was already answered"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let now = now_ms();
    let input = crate::pipeline_host::approval_input(&e.id, &aeid, &status, result.summary);
    match state
        .pipelines
        .apply(state, &pipeline, input, actor, "approval.result")
        .await
    {
        Ok(_) | Err(HostError::Engine(EngineError::StaleResult(_))) => {}
        Err(e) => return Err(host_error(e, &pipeline, &aeid)),
    }
    Ok(json!({ "approvedAt": timestamp_ms(now) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RetryInput {
    pub(crate) pipeline_name: Option<String>,
    pub(crate) stage_name: Option<String>,
    pub(crate) pipeline_execution_id: Option<String>,
    pub(crate) retry_mode: Option<String>,
}

pub(crate) async fn retry_stage<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: RetryInput,
) -> Result<Value, ApiError> {
    let pipeline = required(input.pipeline_name, "pipelineName")?;
    let stage = required(input.stage_name, "stageName")?;
    let id = required(input.pipeline_execution_id, "pipelineExecutionId")?;
    let mode = match required(input.retry_mode, "retryMode")?.as_str() {
        "FAILED_ACTIONS" => RetryMode::FailedActions,
        "ALL_ACTIONS" => RetryMode::AllActions,
        other => {
            return Err(validation(format!(
                "retryMode must be FAILED_ACTIONS or ALL_ACTIONS, not {other}"
            )));
        }
    };
    pipeline_exists(state, &pipeline).await?;
    let active = state
        .pipelines
        .active_execution(state.store.as_ref(), &pipeline, &id)
        .await
        .map_err(|e| host_error(e, &pipeline, &id))?;
    if active.is_none() {
        state
            .pipelines
            .reload_ended(state.store.as_ref(), &pipeline, &id)
            .await
            .map_err(|e| match e {
                HostError::Store(StoreError::NotFound) => host_error(
                    HostError::Engine(EngineError::ExecutionNotFound(id.clone())),
                    &pipeline,
                    &id,
                ),
                e => host_error(e, &pipeline, &id),
            })?;
    }
    let input = Input::RetryStage {
        execution_id: id.clone(),
        stage,
        mode,
    };
    state
        .pipelines
        .apply(state, &pipeline, input, actor, "pipeline.retry-stage")
        .await
        .map_err(|e| host_error(e, &pipeline, &id))?;
    Ok(json!({ "pipelineExecutionId": id }))
}
