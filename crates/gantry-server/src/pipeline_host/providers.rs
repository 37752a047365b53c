//! The action providers: what runs an action attempt the engine asks for.
//!
//! Each provider makes running an attempt again after a restart safe:
//! - Git source: fetching is read-only; the same revision is fetched when
//!   the start named one (a webhook's commit), the branch head otherwise.
//! - CodeBuild: the build's id derives from the attempt's id, so a second
//!   run finds the build instead of starting another: a finished build
//!   gives its result, one the restart interrupted fails the action with
//!   that reason (retry the stage to build again).
//! - Manual approval: the approval row is keyed by the attempt; an answer
//!   recorded before a crash is applied on the way back up.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use gantry_artifacts::{ArtifactRef, ArtifactStore};
use gantry_git::GitCache;
use gantry_pipeline::{ActionError, ActionJob, Input};
use gantry_store::{ApprovalRecord, BuildRecord, StoreError, now_ms};
use serde_json::Value;

use super::PipelineHost;
use crate::codebuild::builds::{PipelineSource, StartInput, start_build};
use crate::files;
use crate::router::AppState;
use gantry_store::Store;

/// What providers share: where artifacts and git mirrors live.
pub(crate) struct ProviderContext {
    /// The content-addressed artifact store.
    pub artifacts: ArtifactStore,
    /// Bare mirrors of source repositories.
    pub git: GitCache,
    /// Scratch space for checkouts and materialized inputs.
    pub work: PathBuf,
    /// How long a manual approval waits before it fails.
    pub approval_timeout: Duration,
    /// Attempt id → the build it started, for abandon.
    builds: StdMutex<BTreeMap<String, String>>,
    /// Attempt id → the state-machine execution it started, for abandon.
    executions: StdMutex<BTreeMap<String, String>>,
    /// (repository, commit) → its tree in the artifact store: a commit's
    /// tree never changes and stored artifacts are never removed, so a
    /// second run of a commit skips the checkout and the hashing.
    trees: StdMutex<HashMap<(String, String), ArtifactRef>>,
    /// Custom action attempts waiting for a worker's final result.
    pub(super) custom: super::custom::CustomWaiters,
}

/// How many commit trees [`ProviderContext`] remembers.
const REMEMBERED_TREES: usize = 1024;

impl ProviderContext {
    pub fn new(
        data_dir: &Path,
        artifacts: ArtifactStore,
        approval_timeout: Duration,
    ) -> Result<ProviderContext, String> {
        Ok(ProviderContext {
            artifacts,
            git: GitCache::new(data_dir.join(files::GIT_MIRRORS)),
            work: data_dir.join(files::WORK).join("actions"),
            approval_timeout,
            builds: StdMutex::new(BTreeMap::new()),
            executions: StdMutex::new(BTreeMap::new()),
            trees: StdMutex::new(HashMap::new()),
            custom: Default::default(),
        })
    }

    pub(super) fn remember_execution(&self, attempt: &str, arn: &str) {
        self.executions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(attempt.to_owned(), arn.to_owned());
    }

    pub(super) fn forget_execution(&self, attempt: &str) -> Option<String> {
        self.executions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(attempt)
    }

    /// The build an attempt runs now, if it runs one.
    pub fn current_build(&self, action_execution_id: &str) -> Option<String> {
        self.builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(action_execution_id)
            .cloned()
    }
}

pub(super) fn failed(job: &ActionJob, code: &str, message: impl Into<String>) -> Option<Input> {
    Some(Input::ActionFailed {
        execution_id: job.execution_id.clone(),
        action_execution_id: job.action_execution_id.clone(),
        error: ActionError {
            code: code.into(),
            message: message.into(),
        },
        external_execution_id: None,
    })
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The artifact store's calls, boxed as `Send` futures: their inner
/// closures defeat the compiler's `Send` inference inside spawned tasks.
pub(super) fn materialize<'a>(
    store: &'a ArtifactStore,
    r: &'a ArtifactRef,
    dest: &'a Path,
) -> Boxed<'a, Result<(), gantry_artifacts::Error>> {
    Box::pin(async move { store.materialize(r, dest).await.map(|_| ()) })
}

pub(super) fn put_dir<'a>(
    store: &'a ArtifactStore,
    dir: &'a Path,
) -> Boxed<'a, Result<ArtifactRef, gantry_artifacts::Error>> {
    Box::pin(store.put_dir(dir))
}

/// Runs one attempt; `None` when its result arrives another way (an
/// approval's answer comes through PutApprovalResult).
pub(super) fn run<'a, S: Store>(
    host: &'a Arc<PipelineHost>,
    state: &'a AppState<S>,
    job: &'a ActionJob,
) -> Boxed<'a, Option<Input>> {
    Box::pin(run_inner(host, state, job))
}

async fn run_inner<S: Store>(
    host: &Arc<PipelineHost>,
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<Input> {
    match (
        job.category.as_str(),
        job.owner.as_str(),
        job.provider.as_str(),
    ) {
        ("Source", "AWS", "Git") => git_source(&host.providers, job).await,
        ("Build" | "Test", "AWS", "CodeBuild") => codebuild(&host.providers, state, job).await,
        ("Approval", "AWS", "Manual") => approval(&host.providers, state, job).await,
        ("Invoke", "AWS", "StepFunctions") => {
            super::step_functions::invoke(&host.providers, state, job).await
        }
        (_, "Custom", _) => super::custom::run(&host.providers, state, job).await,
        (category, owner, provider) => failed(
            job,
            "ConfigurationError",
            format!(
                "the action type {category}/{owner}/{provider} is not supported by this server"
            ),
        ),
    }
}

/// Stops what runs an abandoned attempt.
pub(super) fn abandon<S: Store>(state: &AppState<S>, action_execution_id: &str) {
    super::custom::abandon(state, action_execution_id);
    let build = state
        .pipelines
        .providers
        .builds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(action_execution_id);
    if let Some(build) = build {
        state.runner.stop(&build);
    }
    if let Some(arn) = state
        .pipelines
        .providers
        .forget_execution(action_execution_id)
    {
        let state = state.clone();
        tokio::spawn(async move { super::step_functions::abandon(&state, &arn).await });
    }
}

async fn git_source(cx: &ProviderContext, job: &ActionJob) -> Option<Input> {
    let Some(url) = job.configuration.get("RepositoryUrl") else {
        return failed(job, "ConfigurationError", "RepositoryUrl is required");
    };
    let branch = job
        .configuration
        .get("BranchName")
        .map(String::as_str)
        .unwrap_or("main");
    let commit = match &job.source_revision {
        Some(revision) => cx
            .git
            .fetch_commit(url, revision)
            .await
            .map(|c| c.with_branch(branch)),
        None => cx.git.fetch(url, branch).await,
    };
    let commit = match commit {
        Ok(c) => c,
        Err(e) => return failed(job, "JobFailed", format!("fetching {branch}: {e}")),
    };
    let key = (url.clone(), commit.id.clone());
    let known = cx
        .trees
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let reference = match known {
        Some(r) => r,
        None => {
            let scratch = match scratch_dir(cx, job) {
                Ok(d) => d,
                Err(e) => return failed(job, "JobFailed", e),
            };
            let tree = scratch.path().join("tree");
            if let Err(e) = cx.git.checkout(url, &commit.id, &tree).await {
                return failed(job, "JobFailed", format!("checking out {}: {e}", commit.id));
            }
            let r = match put_dir(&cx.artifacts, &tree).await {
                Ok(r) => r,
                Err(e) => return failed(job, "JobFailed", format!("storing the source: {e}")),
            };
            let mut trees = cx.trees.lock().unwrap_or_else(|e| e.into_inner());
            if trees.len() >= REMEMBERED_TREES {
                trees.clear();
            }
            trees.insert(key, r);
            r
        }
    };
    let outputs = job
        .output_artifacts
        .iter()
        .map(|name| (name.clone(), reference.to_string()))
        .collect();
    let summary = commit.message.lines().next().unwrap_or("").to_owned();
    Some(Input::ActionSucceeded {
        execution_id: job.execution_id.clone(),
        action_execution_id: job.action_execution_id.clone(),
        outputs,
        variables: commit.output_variables(),
        summary: Some(summary),
        external_execution_id: Some(commit.id.clone()),
    })
}

pub(super) fn scratch_dir(
    cx: &ProviderContext,
    job: &ActionJob,
) -> Result<tempfile::TempDir, String> {
    std::fs::create_dir_all(&cx.work)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix(&format!("{}-", job.action_execution_id))
                .tempdir_in(&cx.work)
        })
        .map_err(|e| format!("creating a work directory under {}: {e}", cx.work.display()))
}

/// The build uuid of an attempt: the same on every run of the attempt.
fn build_uuid(action_execution_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, action_execution_id.as_bytes()).to_string()
}

/// Whether a build ended because the server stopped or died under it.
fn interrupted(record: &BuildRecord) -> bool {
    record.build["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["contexts"].as_array())
        .flatten()
        .any(|c| {
            matches!(
                c["statusCode"].as_str(),
                Some(crate::recovery::SERVER_RESTARTED | crate::worker::SERVER_SHUTDOWN)
            )
        })
}

/// Runs an attempt's build: the n-th build of an attempt has an id derived
/// from (attempt, n). A build the server interrupted is started again as
/// the next n; a build that ended by itself gives the result, even when it
/// ended before a restart.
async fn codebuild<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<Input> {
    let Some(project) = job.configuration.get("ProjectName") else {
        return failed(job, "ConfigurationError", "ProjectName is required");
    };
    for n in 0..100u32 {
        let uuid = build_uuid(&format!("{}/{n}", job.action_execution_id));
        let build_id = format!("{project}:{uuid}");
        cx.builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.action_execution_id.clone(), build_id.clone());
        let ended = state.runner.wait_for_end(&build_id);
        let existing = match state
            .store
            .get_builds(std::slice::from_ref(&build_id))
            .await
        {
            Ok(mut found) => found.pop(),
            Err(e) => return failed(job, "JobFailed", format!("reading build {build_id}: {e}")),
        };
        let record = match existing {
            Some(record) if record.status != "IN_PROGRESS" => record,
            Some(_) => {
                // The build may run on another server (its owner, when
                // this server took the pipeline over but another took the
                // build): its end is then seen in the store.
                match until_ended(state, &build_id, ended).await {
                    Ok(r) => r,
                    Err(e) => return failed(job, "JobFailed", e),
                }
            }
            None => match start_pipeline_build(cx, state, job, project, &uuid).await {
                Ok(scratch) => {
                    let _ = ended.await;
                    let _ = std::fs::remove_dir_all(&scratch);
                    match read_build(state, &build_id).await {
                        Ok(r) => r,
                        Err(e) => return failed(job, "JobFailed", e),
                    }
                }
                Err(input) => return input,
            },
        };
        if interrupted(&record) {
            continue;
        }
        cx.builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.action_execution_id);
        return build_result(job, &record);
    }
    failed(
        job,
        "JobFailed",
        "the build was interrupted by the server 100 times",
    )
}

/// Materializes the inputs and starts the build; the error is the
/// action's failure.
async fn start_pipeline_build<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
    project: &str,
    uuid: &str,
) -> Result<PathBuf, Option<Input>> {
    let scratch = scratch_dir(cx, job).map_err(|e| failed(job, "JobFailed", e))?;
    // The scratch directory outlives this function: the build moves the
    // primary source out of it and reads secondary ones from it.
    let scratch = scratch.keep();
    let primary = job
        .configuration
        .get("PrimarySource")
        .cloned()
        .or_else(|| job.input_artifacts.keys().next().cloned());
    let mut env: Vec<Value> = Vec::new();
    let mut source_dir = None;
    for (name, reference) in &job.input_artifacts {
        let dir = scratch.join("inputs").join(name);
        let r = reference.parse::<ArtifactRef>().map_err(|_| {
            failed(
                job,
                "JobFailed",
                format!("input artifact {name}: bad reference {reference}"),
            )
        })?;
        materialize(&cx.artifacts, &r, &dir)
            .await
            .map_err(|e| failed(job, "JobFailed", format!("input artifact {name}: {e}")))?;
        if Some(name) == primary.as_ref() {
            source_dir = Some(dir);
        } else {
            env.push(serde_json::json!({
                "name": format!("CODEBUILD_SRC_DIR_{name}"),
                "value": dir.to_string_lossy(),
                "type": "PLAINTEXT",
            }));
        }
    }
    let source_dir = match source_dir {
        Some(d) => d,
        None => {
            let d = scratch.join("empty");
            std::fs::create_dir_all(&d).map_err(|e| failed(job, "JobFailed", e.to_string()))?;
            d
        }
    };
    if let Some(text) = job.configuration.get("EnvironmentVariables") {
        let list: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            failed(
                job,
                "ConfigurationError",
                format!("EnvironmentVariables is not a JSON list: {e}"),
            )
        })?;
        env.extend(list);
    }
    for var in &job.environment_variables {
        env.push(serde_json::json!({"name": var.name, "value": var.value, "type": var.kind}));
    }
    let input = StartInput {
        project_name: project.to_owned(),
        environment_variables_override: (!env.is_empty()).then_some(Value::Array(env)),
        ..StartInput::default()
    };
    let initiator = format!("codepipeline/{}", job.pipeline);
    start_build(
        state,
        &initiator,
        input,
        Some(PipelineSource {
            uuid: uuid.to_owned(),
            dir: source_dir,
        }),
    )
    .await
    .map(|_| scratch)
    .map_err(|e| {
        failed(
            job,
            "JobFailed",
            format!("starting a build of {project}: {}", e.error.message),
        )
    })
}

/// The build once it has ended: told by this server's runner when it runs
/// here, else seen in the store (checked every second).
async fn until_ended<S: Store>(
    state: &AppState<S>,
    id: &str,
    mut ended: tokio::sync::oneshot::Receiver<()>,
) -> Result<BuildRecord, String> {
    let mut waiting = true;
    loop {
        tokio::select! {
            told = &mut ended, if waiting => {
                if told.is_ok() {
                    return read_build(state, id).await;
                }
                // Nobody here will tell (the runner let the build go).
                waiting = false;
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                let record = read_build(state, id).await?;
                if record.status != "IN_PROGRESS" {
                    return Ok(record);
                }
            }
        }
    }
}

async fn read_build<S: Store>(state: &AppState<S>, id: &str) -> Result<BuildRecord, String> {
    match state.store.get_builds(&[id.to_owned()]).await {
        Ok(mut found) => found.pop().ok_or_else(|| format!("build {id} disappeared")),
        Err(e) => Err(format!("reading build {id}: {e}")),
    }
}

fn build_result(job: &ActionJob, record: &BuildRecord) -> Option<Input> {
    let external = Some(record.id.clone());
    if record.status != "SUCCEEDED" {
        let reason = record.build["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["contexts"].as_array())
            .flatten()
            .filter_map(|c| c["message"].as_str())
            .next_back()
            .unwrap_or("");
        let mut message = format!("Build {} ended {}", record.id, record.status);
        if !reason.is_empty() {
            message.push_str(&format!(": {reason}"));
        }
        return Some(Input::ActionFailed {
            execution_id: job.execution_id.clone(),
            action_execution_id: job.action_execution_id.clone(),
            error: ActionError {
                code: "JobFailed".into(),
                message,
            },
            external_execution_id: external,
        });
    }
    // One output artifact takes the build's primary artifact; several take
    // the secondary artifacts whose identifiers are their names. The build
    // stored them in the artifact store (see `build_artifacts`), whichever
    // server ran it: its locations are their references.
    let mut outputs = BTreeMap::new();
    for name in &job.output_artifacts {
        let entry = if job.output_artifacts.len() == 1 {
            Some(&record.build["artifacts"])
        } else {
            record.build["secondaryArtifacts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["artifactIdentifier"].as_str() == Some(name.as_str()))
        };
        let reference = entry
            .and_then(|a| a["location"].as_str())
            .and_then(|l| l.parse::<ArtifactRef>().ok());
        // None: the engine fails the action, naming the artifact.
        if let Some(reference) = reference {
            outputs.insert(name.clone(), reference.to_string());
        }
    }
    let variables = record.build["exportedEnvironmentVariables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Some(Input::ActionSucceeded {
        execution_id: job.execution_id.clone(),
        action_execution_id: job.action_execution_id.clone(),
        outputs,
        variables,
        summary: Some(format!("Build {} succeeded", record.id)),
        external_execution_id: external,
    })
}

async fn approval<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<Input> {
    let record = match state
        .store
        .approval_for_attempt(&job.action_execution_id)
        .await
    {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            let record = ApprovalRecord {
                token: uuid::Uuid::new_v4().to_string(),
                pipeline: job.pipeline.clone(),
                execution_id: job.execution_id.clone(),
                stage: job.stage.clone(),
                action: job.action.clone(),
                action_execution_id: job.action_execution_id.clone(),
                expires_ms: now_ms() + cx.approval_timeout.as_millis() as i64,
                result: None,
            };
            if let Err(e) = state.store.put_approval(&record).await {
                return failed(job, "JobFailed", format!("recording the approval: {e}"));
            }
            crate::chat::announce_approval(state, job, &record).await;
            record
        }
        Err(e) => return failed(job, "JobFailed", format!("reading the approval: {e}")),
    };
    // Answered before a restart: the answer stands.
    if let Some(result) = record.result.as_deref() {
        return approval_outcome(job, result, None);
    }
    let wait = (record.expires_ms - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    match state
        .store
        .answer_approval(&record.token, "Expired", "system")
        .await
    {
        Ok(()) => approval_outcome(job, "Expired", None),
        // Answered meanwhile: PutApprovalResult applied it.
        Err(_) => None,
    }
}

/// The engine input for an approval's answer.
fn approval_outcome(job: &ActionJob, result: &str, summary: Option<String>) -> Option<Input> {
    Some(approval_input(
        &job.execution_id,
        &job.action_execution_id,
        result,
        summary,
    ))
}

/// The engine input for an answer to the approval of an attempt.
pub(crate) fn approval_input(
    execution_id: &str,
    action_execution_id: &str,
    result: &str,
    summary: Option<String>,
) -> Input {
    match result {
        "Approved" => Input::ActionSucceeded {
            execution_id: execution_id.into(),
            action_execution_id: action_execution_id.into(),
            outputs: BTreeMap::new(),
            variables: BTreeMap::new(),
            summary: Some(summary.unwrap_or_else(|| "Approved".into())),
            external_execution_id: None,
        },
        other => Input::ActionFailed {
            execution_id: execution_id.into(),
            action_execution_id: action_execution_id.into(),
            error: ActionError {
                code: if other == "Expired" {
                    "ApprovalExpired".into()
                } else {
                    "ApprovalRejected".into()
                },
                message: summary.unwrap_or_else(|| {
                    if other == "Expired" {
                        "The approval expired before anyone answered it".into()
                    } else {
                        "Rejected".into()
                    }
                }),
            },
            external_execution_id: None,
        },
    }
}
