//! A pipeline run in this process, without serving HTTP: what
//! `gantry pipeline run gantry.yml` drives.
//!
//! Nothing here is a second engine. [`LocalRun`] opens a data directory as
//! [`Server::open`](crate::Server::open) does and calls the very operations
//! the AWS JSON endpoint dispatches to (CreateProject, CreatePipeline,
//! StartPipelineExecution, GetPipelineState, PutApprovalResult,
//! StopPipelineExecution...), as a local caller that skips only SigV4. So
//! the run goes through the pipeline host, its providers (Git source,
//! CodeBuild, manual approval) and the build runner exactly as on a server,
//! and the data directory afterwards reads like a server's.
//!
//! Progress is followed by polling the same reads a client makes, plus the
//! build logs straight from the store; see [`LocalRun::poll`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use axum::http::HeaderMap;
use gantry_aws::VerifiedCaller;
use gantry_store::{BuildStore, ExecutionStore, SqliteStore};
use serde_json::{Value, json};

use crate::router::AppState;
use crate::{Config, Server, ServerError, codebuild, codepipeline};

/// The actor local calls are recorded as in the audit log.
const LOCAL_ACTOR: &str = "local";
/// Log lines read per build per poll.
const LOG_BATCH: u32 = 1000;

/// Why a local run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The data directory or the store could not be opened.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// An operation was refused, with the API's error code and message
    /// (e.g. CreateProject's `InvalidInputException` for a bad project).
    #[error("{operation}: {code}: {message}")]
    Api {
        /// The operation, e.g. `CreateProject`.
        operation: String,
        /// The error code (`__type`).
        code: String,
        /// What was wrong.
        message: String,
    },
    /// A build or its log could not be read.
    #[error("reading build {build}: {message}")]
    Log {
        /// The build id.
        build: String,
        /// The store's error.
        message: String,
    },
}

/// Something that happened in the execution being followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A stage's status changed (`InProgress`, `Succeeded`, `Failed`, ...).
    Stage {
        /// The stage.
        stage: String,
        /// Its new status.
        status: String,
    },
    /// An action's status changed.
    Action {
        /// The stage.
        stage: String,
        /// The action.
        action: String,
        /// Its new status (`InProgress`, `Succeeded`, `Failed`, `Abandoned`).
        status: String,
        /// The provider's summary, when it gave one.
        summary: Option<String>,
        /// The error message of a failed action.
        error: Option<String>,
    },
    /// A line of the build an action runs, in order.
    Log {
        /// The stage.
        stage: String,
        /// The action.
        action: String,
        /// The line, without its newline.
        line: String,
    },
    /// A manual approval waits for an answer; answer it with
    /// [`LocalRun::answer_approval`] and this token.
    Approval {
        /// The stage.
        stage: String,
        /// The action.
        action: String,
        /// The approval's token.
        token: String,
    },
}

/// What the caller follows: one execution, and what was already reported.
#[derive(Debug)]
pub struct Watch {
    pipeline: String,
    execution_id: String,
    stages: HashMap<String, String>,
    /// (stage, action) → (attempt id, status) last reported.
    actions: HashMap<(String, String), (String, String)>,
    /// Build id → the last log line's sequence number reported.
    logs: HashMap<String, u64>,
    asked: HashSet<String>,
    /// Every build the run started: id → (stage, action).
    builds: BTreeMap<String, (String, String)>,
}

impl Watch {
    /// The execution's id.
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }
}

/// A pipeline engine, build runner and store of a data directory, driven
/// in-process. Call [`LocalRun::shutdown`] at the end so builds that still
/// run are stopped and recorded.
pub struct LocalRun {
    state: AppState<SqliteStore>,
    caller: VerifiedCaller,
}

impl LocalRun {
    /// Opens (or creates) `config.data_dir` as the server would, without
    /// listening anywhere, resuming nothing and delivering no events to
    /// targets (the local run is one execution, not a server). No admin key
    /// is made: the first `gantry server` on the directory makes and
    /// prints it.
    pub async fn open(config: Config) -> Result<LocalRun, LocalError> {
        let store = crate::open_store(&config).await?;
        let server = Server::assemble(config, store, false).await?;
        let caller = VerifiedCaller {
            access_key_id: LOCAL_ACTOR.into(),
            region: server.state.config.region.clone(),
            service: String::new(),
            signed_at: SystemTime::now(),
            presigned: false,
            payload_signed: true,
        };
        Ok(LocalRun {
            state: server.state,
            caller,
        })
    }

    async fn codebuild(&self, operation: &str, input: &Value) -> Result<Value, LocalError> {
        let body = serde_json::to_vec(input).unwrap_or_default();
        codebuild::dispatch(&self.state, &self.caller, operation, &body)
            .await
            .map_err(|e| api_error(operation, e))
    }

    async fn codepipeline(&self, operation: &str, input: &Value) -> Result<Value, LocalError> {
        let body = serde_json::to_vec(input).unwrap_or_default();
        codepipeline::dispatch(
            &self.state,
            &self.caller,
            operation,
            &body,
            &HeaderMap::new(),
        )
        .await
        .map_err(|e| api_error(operation, e))
    }

    /// Creates a CodeBuild project from a CreateProject input, or updates
    /// the project of that name when the data directory already has one.
    pub async fn put_project(&self, input: &Value) -> Result<(), LocalError> {
        match self.codebuild("CreateProject", input).await {
            Err(LocalError::Api { code, .. }) if code == "ResourceAlreadyExistsException" => {
                self.codebuild("UpdateProject", input).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Creates the pipeline from a declaration (CodePipeline JSON), or
    /// updates the one of that name the data directory already has.
    pub async fn put_pipeline(&self, declaration: &Value) -> Result<(), LocalError> {
        let input = json!({ "pipeline": declaration });
        match self.codepipeline("CreatePipeline", &input).await {
            Err(LocalError::Api { code, .. }) if code == "PipelineNameInUseException" => self
                .codepipeline("UpdatePipeline", &input)
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        }
    }

    /// Stops (abandoning their actions) the executions of `pipeline` that
    /// an earlier run in this data directory left running when it was
    /// killed: nothing runs their actions any more, and in QUEUED mode they
    /// would hold the new execution back. Returns how many were stopped.
    pub async fn stop_leftovers(&self, pipeline: &str) -> Result<usize, LocalError> {
        let listed = match self
            .codepipeline(
                "ListPipelineExecutions",
                &json!({ "pipelineName": pipeline, "maxResults": 100 }),
            )
            .await
        {
            Ok(listed) => listed,
            Err(LocalError::Api { code, .. }) if code == "PipelineNotFoundException" => {
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        let mut stopped = 0;
        for e in listed["pipelineExecutionSummaries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !matches!(e["status"].as_str(), Some("InProgress" | "Stopping")) {
                continue;
            }
            let Some(id) = e["pipelineExecutionId"].as_str() else {
                continue;
            };
            let input = json!({
                "pipelineName": pipeline,
                "pipelineExecutionId": id,
                "abandon": true,
                "reason": "Left running by an interrupted local run",
            });
            match self.codepipeline("StopPipelineExecution", &input).await {
                Ok(_) => stopped += 1,
                Err(LocalError::Api { code, .. })
                    if code == "PipelineExecutionNotStoppableException" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stopped)
    }

    /// Starts an execution with pipeline-level `variables`; returns what
    /// [`LocalRun::poll`] follows.
    pub async fn start(
        &self,
        pipeline: &str,
        variables: &[(String, String)],
    ) -> Result<Watch, LocalError> {
        let variables: Vec<Value> = variables
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        let mut input = json!({ "name": pipeline });
        if !variables.is_empty() {
            input["variables"] = json!(variables);
        }
        let out = self.codepipeline("StartPipelineExecution", &input).await?;
        let execution_id = out["pipelineExecutionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Watch {
            pipeline: pipeline.into(),
            execution_id,
            stages: HashMap::new(),
            actions: HashMap::new(),
            logs: HashMap::new(),
            asked: HashSet::new(),
            builds: BTreeMap::new(),
        })
    }

    /// What happened since the last poll, in order, and the execution's
    /// final status once it has ended (every event of the run reported by
    /// then, build logs included). Each approval is reported once.
    pub async fn poll(
        &self,
        watch: &mut Watch,
    ) -> Result<(Vec<Progress>, Option<String>), LocalError> {
        // The status first: when it is final, the state read after it is
        // the final state too, so nothing is left unreported.
        let execution = self
            .codepipeline(
                "GetPipelineExecution",
                &json!({ "pipelineName": watch.pipeline, "pipelineExecutionId": watch.execution_id }),
            )
            .await?;
        let status = execution["pipelineExecution"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let state = self
            .codepipeline("GetPipelineState", &json!({ "name": watch.pipeline }))
            .await?;
        let mut out = Vec::new();
        for stage in state["stageStates"].as_array().into_iter().flatten() {
            let name = stage["stageName"].as_str().unwrap_or_default();
            let latest = &stage["latestExecution"];
            if latest["pipelineExecutionId"] != watch.execution_id.as_str() {
                continue;
            }
            // The stage's start before its actions' events, its end after.
            report_stage(watch, name, "InProgress", &mut out);
            for action in stage["actionStates"].as_array().into_iter().flatten() {
                self.poll_action(watch, name, action, &mut out).await?;
            }
            let stage_status = latest["status"].as_str().unwrap_or_default();
            report_stage(watch, name, stage_status, &mut out);
        }
        let ended = !matches!(status.as_str(), "InProgress" | "Stopping" | "");
        Ok((out, ended.then_some(status)))
    }

    async fn poll_action(
        &self,
        watch: &mut Watch,
        stage: &str,
        action: &Value,
        out: &mut Vec<Progress>,
    ) -> Result<(), LocalError> {
        let name = action["actionName"].as_str().unwrap_or_default();
        let latest = &action["latestExecution"];
        let Some(attempt) = latest["actionExecutionId"].as_str() else {
            return Ok(());
        };
        // GetPipelineState shows the latest attempt of any execution (an
        // earlier run in a reused data directory); only this one's count.
        // Some(provider) when the attempt is this execution's.
        let provider = self.execution(watch).await.and_then(|e| {
            let (i, run) = e.stage(stage)?;
            let j = run
                .actions
                .iter()
                .position(|a| a.action_execution_id.as_deref() == Some(attempt))?;
            Some(e.plan.stages[i].actions.get(j)?.provider.clone())
        });
        let Some(provider) = provider else {
            return Ok(());
        };
        let status = latest["status"].as_str().unwrap_or_default();
        let key = (stage.to_owned(), name.to_owned());
        let seen = watch.actions.get(&key).cloned();
        let new_attempt = seen.as_ref().is_none_or(|(a, _)| a != attempt);
        if new_attempt {
            // The attempt started (reported even when it already ended,
            // so that every action shows its start).
            out.push(Progress::Action {
                stage: stage.into(),
                action: name.into(),
                status: "InProgress".into(),
                summary: None,
                error: None,
            });
            watch
                .actions
                .insert(key.clone(), (attempt.into(), "InProgress".into()));
        }
        // A running build: the providers know its id; an ended one names it.
        let build = if provider == "CodeBuild" {
            self.state
                .pipelines
                .providers
                .current_build(attempt)
                .or_else(|| latest["externalExecutionId"].as_str().map(str::to_owned))
        } else {
            None
        };
        if let Some(build) = build {
            watch
                .builds
                .entry(build.clone())
                .or_insert_with(|| (stage.to_owned(), name.to_owned()));
            self.read_log(watch, stage, name, &build, out).await?;
        }
        if status == "InProgress"
            && let Some(token) = latest["token"].as_str()
            && watch.asked.insert(attempt.to_owned())
        {
            out.push(Progress::Approval {
                stage: stage.into(),
                action: name.into(),
                token: token.into(),
            });
        }
        if status != "InProgress"
            && watch
                .actions
                .get(&key)
                .is_none_or(|(_, reported)| reported != status)
        {
            out.push(Progress::Action {
                stage: stage.into(),
                action: name.into(),
                status: status.into(),
                summary: latest["summary"].as_str().map(str::to_owned),
                error: latest["errorDetails"]["message"]
                    .as_str()
                    .map(str::to_owned),
            });
            watch.actions.insert(key, (attempt.into(), status.into()));
        }
        Ok(())
    }

    /// The followed execution: the runtime's while it runs, else the
    /// stored one.
    async fn execution(&self, watch: &Watch) -> Option<gantry_pipeline::Execution> {
        let store = self.state.store.as_ref();
        if let Ok(Some(e)) = self
            .state
            .pipelines
            .active_execution(store, &watch.pipeline, &watch.execution_id)
            .await
        {
            return Some(e);
        }
        let record = store
            .get_pipeline_execution(&watch.pipeline, &watch.execution_id)
            .await
            .ok()?;
        serde_json::from_value(record.body).ok()
    }

    async fn read_log(
        &self,
        watch: &mut Watch,
        stage: &str,
        action: &str,
        build: &str,
        out: &mut Vec<Progress>,
    ) -> Result<(), LocalError> {
        loop {
            let after = watch.logs.get(build).copied().unwrap_or(0);
            let lines = self
                .state
                .store
                .log_lines(build, after, LOG_BATCH)
                .await
                .map_err(|e| LocalError::Log {
                    build: build.into(),
                    message: e.to_string(),
                })?;
            let Some(last) = lines.last().map(|l| l.seq) else {
                return self
                    .read_archived_log(watch, stage, action, build, out)
                    .await;
            };
            watch.logs.insert(build.to_owned(), last);
            let full = lines.len() as u32 == LOG_BATCH;
            out.extend(lines.into_iter().map(|l| Progress::Log {
                stage: stage.into(),
                action: action.into(),
                line: l.text,
            }));
            if !full {
                return Ok(());
            }
        }
    }

    /// The lines of a finished build's log that moved to the artifact
    /// store after line `watch.logs[build]` (the same numbering).
    async fn read_archived_log(
        &self,
        watch: &mut Watch,
        stage: &str,
        action: &str,
        build: &str,
        out: &mut Vec<Progress>,
    ) -> Result<(), LocalError> {
        let log_error = |e: gantry_store::StoreError| LocalError::Log {
            build: build.into(),
            message: e.to_string(),
        };
        let Some(archive) = self
            .state
            .store
            .log_archive(build)
            .await
            .map_err(log_error)?
        else {
            return Ok(());
        };
        let after = watch.logs.get(build).copied().unwrap_or(0);
        let lines = crate::build_logs::lines_after(&self.state.runner.objects, &archive, after)
            .await
            .map_err(log_error)?;
        watch
            .logs
            .insert(build.to_owned(), after.max(archive.line_count));
        out.extend(lines.into_iter().map(|line| Progress::Log {
            stage: stage.into(),
            action: action.into(),
            line,
        }));
        Ok(())
    }

    /// Answers a manual approval through PutApprovalResult.
    pub async fn answer_approval(
        &self,
        watch: &Watch,
        stage: &str,
        action: &str,
        token: &str,
        approve: bool,
        summary: &str,
    ) -> Result<(), LocalError> {
        self.codepipeline(
            "PutApprovalResult",
            &json!({
                "pipelineName": watch.pipeline,
                "stageName": stage,
                "actionName": action,
                "token": token,
                "result": {
                    "status": if approve { "Approved" } else { "Rejected" },
                    "summary": summary,
                },
            }),
        )
        .await
        .map(|_| ())
    }

    /// Stops the execution, abandoning what runs (builds are stopped).
    pub async fn stop(&self, watch: &Watch, reason: &str) -> Result<(), LocalError> {
        match self
            .codepipeline(
                "StopPipelineExecution",
                &json!({
                    "pipelineName": watch.pipeline,
                    "pipelineExecutionId": watch.execution_id,
                    "abandon": true,
                    "reason": reason,
                }),
            )
            .await
        {
            // It ended meanwhile: nothing to stop.
            Err(LocalError::Api { code, .. })
                if code == "PipelineExecutionNotStoppableException" =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Waits for every build the run started to record its end (after a
    /// stop, the abandoned builds stop); returns (stage, action, build id,
    /// status) for each, in build id order.
    pub async fn settle_builds(
        &self,
        watch: &Watch,
    ) -> Result<Vec<(String, String, String, String)>, LocalError> {
        let mut out = Vec::new();
        for (id, (stage, action)) in &watch.builds {
            // Registered before the read, so an end in between is not missed.
            let ended = self.state.runner.wait_for_end(id);
            let status = self.build_status(id).await?;
            let status = if status == "IN_PROGRESS" {
                let _ = ended.await;
                self.build_status(id).await?
            } else {
                status
            };
            out.push((stage.clone(), action.clone(), id.clone(), status));
        }
        Ok(out)
    }

    async fn build_status(&self, id: &str) -> Result<String, LocalError> {
        let found = self
            .state
            .store
            .get_builds(&[id.to_owned()])
            .await
            .map_err(|e| LocalError::Log {
                build: id.into(),
                message: e.to_string(),
            })?;
        Ok(found.first().map(|b| b.status.clone()).unwrap_or_default())
    }

    /// Every stage and action of the execution with its status, summary,
    /// error and output variables, as `gantry pipeline run --json` prints.
    pub async fn summary(&self, watch: &Watch) -> Result<Value, LocalError> {
        let execution = self
            .codepipeline(
                "GetPipelineExecution",
                &json!({ "pipelineName": watch.pipeline, "pipelineExecutionId": watch.execution_id }),
            )
            .await?;
        let state = self
            .codepipeline("GetPipelineState", &json!({ "name": watch.pipeline }))
            .await?;
        let listed = self
            .codepipeline(
                "ListActionExecutions",
                &json!({
                    "pipelineName": watch.pipeline,
                    "filter": { "pipelineExecutionId": watch.execution_id },
                }),
            )
            .await?;
        // The newest attempt's output variables, by (stage, action).
        let mut variables: BTreeMap<(String, String), (String, Value)> = BTreeMap::new();
        for d in listed["actionExecutionDetails"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = (
                d["stageName"].as_str().unwrap_or_default().to_owned(),
                d["actionName"].as_str().unwrap_or_default().to_owned(),
            );
            let attempt = d["actionExecutionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let vars = d["output"]["outputVariables"].clone();
            variables.entry(key).or_insert((attempt, vars));
        }
        let mut stages = Vec::new();
        for stage in state["stageStates"].as_array().into_iter().flatten() {
            let name = stage["stageName"].as_str().unwrap_or_default();
            let latest = &stage["latestExecution"];
            let ours = latest["pipelineExecutionId"] == watch.execution_id.as_str();
            let mut actions = Vec::new();
            for action in stage["actionStates"].as_array().into_iter().flatten() {
                let action_name = action["actionName"].as_str().unwrap_or_default();
                let key = (name.to_owned(), action_name.to_owned());
                let a = &action["latestExecution"];
                let ran = watch
                    .actions
                    .get(&key)
                    .is_some_and(|(attempt, _)| a["actionExecutionId"] == attempt.as_str());
                let mut entry = json!({ "name": action_name });
                if ours && ran {
                    entry["status"] = a["status"].clone();
                    for (from, to) in [
                        ("summary", "summary"),
                        ("externalExecutionId", "externalExecutionId"),
                    ] {
                        if !a[from].is_null() {
                            entry[to] = a[from].clone();
                        }
                    }
                    if let Some(message) = a["errorDetails"]["message"].as_str() {
                        entry["error"] = json!(message);
                    }
                    let vars = variables
                        .get(&key)
                        .map(|(_, v)| v.clone())
                        .filter(|v| v.is_object())
                        .unwrap_or_else(|| json!({}));
                    entry["outputVariables"] = vars;
                } else {
                    entry["status"] = json!("NotRun");
                }
                actions.push(entry);
            }
            stages.push(json!({
                "name": name,
                "status": if ours { latest["status"].clone() } else { json!("NotRun") },
                "actions": actions,
            }));
        }
        let e = &execution["pipelineExecution"];
        let mut out = json!({
            "pipeline": watch.pipeline,
            "executionId": watch.execution_id,
            "status": e["status"],
            "stages": stages,
        });
        if let Some(s) = e["statusSummary"].as_str() {
            out["statusSummary"] = json!(s);
        }
        Ok(out)
    }

    /// Stops action tasks and running builds (recorded STOPPED) and waits
    /// for the builds to record their end.
    pub async fn shutdown(self) {
        self.state.pipelines.abort_actions();
        self.state.engine.shutdown();
        self.state.runner.shutdown().await;
        self.state.events.shutdown().await;
    }
}

/// Reports a stage's status once: its start the first time it is seen, a
/// change after that.
fn report_stage(watch: &mut Watch, stage: &str, status: &str, out: &mut Vec<Progress>) {
    let before = watch.stages.get(stage).map(String::as_str);
    let start_again = status == "InProgress" && before.is_some();
    if before == Some(status) || start_again || status.is_empty() {
        return;
    }
    out.push(Progress::Stage {
        stage: stage.into(),
        status: status.into(),
    });
    watch.stages.insert(stage.into(), status.into());
}

fn api_error(operation: &str, e: crate::ApiError) -> LocalError {
    LocalError::Api {
        operation: operation.into(),
        code: e.error.code.as_str().to_owned(),
        message: e.error.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch {
            pipeline: "p".into(),
            execution_id: "e".into(),
            stages: HashMap::new(),
            actions: HashMap::new(),
            logs: HashMap::new(),
            asked: HashSet::new(),
            builds: BTreeMap::new(),
        }
    }

    fn statuses(out: &[Progress]) -> Vec<&str> {
        out.iter()
            .map(|p| match p {
                Progress::Stage { status, .. } => status.as_str(),
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_stage_is_reported_started_once_then_each_change() {
        let mut w = watch();
        let mut out = Vec::new();
        report_stage(&mut w, "Build", "InProgress", &mut out);
        report_stage(&mut w, "Build", "InProgress", &mut out);
        report_stage(&mut w, "Build", "Succeeded", &mut out);
        // A later poll's "start first" call does not report it again.
        report_stage(&mut w, "Build", "InProgress", &mut out);
        report_stage(&mut w, "Build", "Succeeded", &mut out);
        assert_eq!(statuses(&out), ["InProgress", "Succeeded"]);
    }

    #[test]
    fn an_unknown_status_is_not_reported() {
        let mut w = watch();
        let mut out = Vec::new();
        report_stage(&mut w, "Build", "", &mut out);
        assert!(out.is_empty());
    }
}
