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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use gantry_artifacts::{ArtifactRef, ArtifactStore};
use gantry_git::GitCache;
use gantry_pipeline::{ActionError, ActionJob, Input};
use gantry_store::{ApprovalRecord, BuildRecord, StoreError, now_ms};
use serde_json::Value;

use super::PipelineHost;
use crate::codebuild::builds::{PreparedBuild, StartInput, prepare_build, submit_build};
use crate::files;
use crate::router::AppState;
use crate::timing;
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
    /// Builds stored with their action's start that the action has not
    /// handed to the runner yet: when the action is abandoned meanwhile,
    /// nobody else would end them.
    unsubmitted: StdMutex<HashSet<String>>,
    /// Attempt id → the state-machine execution it started, for abandon.
    executions: StdMutex<BTreeMap<String, String>>,
    /// (repository, commit) → its tree in the artifact store: a commit's
    /// tree never changes and stored artifacts are never removed, so a
    /// second run of a commit skips the checkout and the hashing.
    trees: StdMutex<HashMap<(String, String), ArtifactRef>>,
    /// Trees just checked out and stored, waiting for the build that reads
    /// them first (it moves the directory instead of materializing).
    checkouts: super::checkouts::Checkouts,
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
            unsubmitted: StdMutex::new(HashSet::new()),
            executions: StdMutex::new(BTreeMap::new()),
            trees: StdMutex::new(HashMap::new()),
            checkouts: Default::default(),
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
/// approval's answer comes through PutApprovalResult). `precreated` is a
/// build action's first build, stored with the action's start.
pub(super) fn run<'a, S: Store>(
    host: &'a Arc<PipelineHost>,
    state: &'a AppState<S>,
    job: &'a ActionJob,
    precreated: Option<Precreated>,
) -> Boxed<'a, Option<Input>> {
    Box::pin(run_inner(host, state, job, precreated))
}

async fn run_inner<S: Store>(
    host: &Arc<PipelineHost>,
    state: &AppState<S>,
    job: &ActionJob,
    precreated: Option<Precreated>,
) -> Option<Input> {
    match (
        job.category.as_str(),
        job.owner.as_str(),
        job.provider.as_str(),
    ) {
        ("Source", "AWS", "Git") => git_source(&host.providers, job).await,
        ("Build" | "Test", "AWS", "CodeBuild") => {
            codebuild(&host.providers, state, job, precreated).await
        }
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
        let unsubmitted = state
            .pipelines
            .providers
            .unsubmitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&build);
        if unsubmitted {
            // Stored with the action's start, never handed to the runner:
            // ended here, as the runner never saw it.
            let state = state.clone();
            tokio::spawn(async move {
                if let Ok(Some(record)) = state
                    .store
                    .get_builds(std::slice::from_ref(&build))
                    .await
                    .map(|mut found| found.pop())
                {
                    end_in_queue(
                        &state,
                        &record,
                        "STOPPED",
                        (
                            "BUILD_STOPPED",
                            "The build was stopped while it was queued.",
                        ),
                    )
                    .await;
                }
            });
        } else {
            state.runner.stop(&build);
        }
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
    let fetching = Instant::now();
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
    timing::step(&job.execution_id, "source.fetch", fetching);
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
            let checking_out = Instant::now();
            if let Err(e) = cx.git.checkout(url, &commit.id, &tree).await {
                return failed(job, "JobFailed", format!("checking out {}: {e}", commit.id));
            }
            timing::step(&job.execution_id, "source.checkout", checking_out);
            let storing = Instant::now();
            let r = match put_dir(&cx.artifacts, &tree).await {
                Ok(r) => r,
                Err(e) => return failed(job, "JobFailed", format!("storing the source: {e}")),
            };
            timing::step(&job.execution_id, "source.store", storing);
            {
                let mut trees = cx.trees.lock().unwrap_or_else(|e| e.into_inner());
                if trees.len() >= REMEMBERED_TREES {
                    trees.clear();
                }
                trees.insert(key, r);
            }
            cx.checkouts.offer(r, scratch, &tree);
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

/// A build action's first build, stored with the engine step that starts
/// the action (see [`plan_first_build`]): the action then only fills the
/// inputs and hands the build to the runner.
pub(crate) struct Precreated {
    plan: PlannedBuild,
    record: BuildRecord,
}

impl Precreated {
    /// The build `record`, stored for the attempt `attempt` as `plan`
    /// planned it; from now on abandoning the attempt ends it.
    pub(super) fn new(
        cx: &ProviderContext,
        attempt: &str,
        plan: PlannedBuild,
        record: BuildRecord,
    ) -> Precreated {
        cx.builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(attempt.to_owned(), record.id.clone());
        cx.unsubmitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id.clone());
        Precreated { plan, record }
    }
}

/// A pipeline build decided but not started: where its inputs go, and
/// the build StartBuild would record.
pub(crate) struct PlannedBuild {
    /// Holds the inputs (`inputs/<name>`); removed once the build ended.
    scratch: PathBuf,
    /// Each input: its name, stored reference, and directory.
    inputs: Vec<(String, ArtifactRef, PathBuf)>,
    /// The primary input's directory (an empty one without inputs).
    source_dir: PathBuf,
    build: PreparedBuild,
    initiator: String,
}

impl PlannedBuild {
    /// The build row to create, and who creates it.
    pub(super) fn new_build(&self) -> (gantry_store::NewBuild, String) {
        (self.build.new.clone(), self.initiator.clone())
    }

    /// Removes the scratch directory of a plan that is not carried out.
    pub(super) fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Plans the first build of a build action whose start the engine is
/// about to store, so that the build's row goes into the same transaction
/// (one commit instead of two between a source's end and the build's
/// start). `None` when the action is not a CodeBuild one or the build
/// cannot be planned: the action then starts its build itself and reports
/// why it could not.
pub(super) async fn plan_first_build<S: Store>(
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<PlannedBuild> {
    let is_codebuild = matches!(job.category.as_str(), "Build" | "Test")
        && job.owner == "AWS"
        && job.provider == "CodeBuild";
    let project = job
        .configuration
        .get("ProjectName")
        .filter(|_| is_codebuild)?;
    let uuid = build_uuid(&format!("{}/0", job.action_execution_id));
    plan_pipeline_build(&state.pipelines.providers, state, job, project, &uuid)
        .await
        .ok()
}

/// Runs an attempt's build: the n-th build of an attempt has an id derived
/// from (attempt, n). A build the server interrupted is started again as
/// the next n; a build that ended by itself gives the result, even when it
/// ended before a restart. `precreated` is the first build when it was
/// stored with the action's start.
async fn codebuild<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
    mut precreated: Option<Precreated>,
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
        let record = match precreated.take() {
            Some(pre) if pre.record.id == build_id => {
                match run_planned(cx, state, job, pre.plan, pre.record, ended).await {
                    Ok(r) => r,
                    Err(input) => return input,
                }
            }
            other => {
                if let Some(pre) = other {
                    pre.plan.discard();
                }
                let looking = Instant::now();
                let existing = match state
                    .store
                    .get_builds(std::slice::from_ref(&build_id))
                    .await
                {
                    Ok(mut found) => found.pop(),
                    Err(e) => {
                        return failed(job, "JobFailed", format!("reading build {build_id}: {e}"));
                    }
                };
                timing::step(&job.execution_id, "build.lookup", looking);
                match existing {
                    Some(record) if record.status != "IN_PROGRESS" => record,
                    Some(_) => {
                        // The build may run on another server (its owner,
                        // when this server took the pipeline over but
                        // another took the build): its end is then seen in
                        // the store.
                        match until_ended(state, &build_id, ended).await {
                            Ok(r) => r,
                            Err(e) => return failed(job, "JobFailed", e),
                        }
                    }
                    None => match start_pipeline_build(cx, state, job, project, &uuid, ended).await
                    {
                        Ok(r) => r,
                        Err(input) => return input,
                    },
                }
            }
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

/// Plans, records and runs a build; its end, or the action's failure.
async fn start_pipeline_build<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
    project: &str,
    uuid: &str,
    ended: tokio::sync::oneshot::Receiver<()>,
) -> Result<BuildRecord, Option<Input>> {
    let plan = plan_pipeline_build(cx, state, job, project, uuid).await?;
    // The inputs first: an action whose inputs cannot be read records no
    // build.
    if let Err(input) = fill_inputs(cx, job, &plan).await {
        plan.discard();
        return Err(input);
    }
    let creating = Instant::now();
    let created = state
        .store
        .create_build(&plan.build.new, &plan.initiator)
        .await;
    timing::step(&job.execution_id, "build.create", creating);
    let record = match created {
        Ok(r) => r,
        Err(e) => {
            plan.discard();
            let message = match e {
                gantry_store::StoreError::NotFound => format!(
                    "Project cannot be found: {}",
                    crate::codebuild::arn(&state.config, "project", project)
                ),
                e => e.to_string(),
            };
            return Err(failed(
                job,
                "JobFailed",
                format!("starting a build of {project}: {message}"),
            ));
        }
    };
    until_done(state, plan, record, ended)
        .await
        .map_err(|e| failed(job, "JobFailed", e))
}

/// Fills the inputs of a build already recorded and runs it; its end, or
/// the action's failure (the build then ends FAILED too).
async fn run_planned<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
    plan: PlannedBuild,
    record: BuildRecord,
    ended: tokio::sync::oneshot::Receiver<()>,
) -> Result<BuildRecord, Option<Input>> {
    let filled = fill_inputs(cx, job, &plan).await;
    // Taken back before anything else: an abandon from now on stops the
    // build in the runner instead.
    let ours = cx
        .unsubmitted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&record.id);
    if !ours {
        // Abandoned while the inputs were filled; `abandon` ended it.
        plan.discard();
        return Err(failed(job, "JobFailed", "the action was abandoned"));
    }
    if let Err(input) = filled {
        plan.discard();
        let reason = match &input {
            Some(Input::ActionFailed { error, .. }) => error.message.clone(),
            _ => "the input artifacts could not be read".to_owned(),
        };
        end_in_queue(state, &record, "FAILED", ("CLIENT_ERROR", &reason)).await;
        return Err(input);
    }
    until_done(state, plan, record, ended)
        .await
        .map_err(|e| failed(job, "JobFailed", e))
}

/// Records the end of a stored build that never ran: `status` while
/// QUEUED, with `context` (code, message).
async fn end_in_queue<S: Store>(
    state: &AppState<S>,
    record: &BuildRecord,
    status: &str,
    context: (&str, &str),
) {
    use crate::worker::phase_json;
    let (start, now) = (record.start_ms, now_ms());
    let mut build = record.build.clone();
    build["phases"] = serde_json::json!([
        phase_json("SUBMITTED", Some("SUCCEEDED"), start, Some(start), &[]),
        phase_json("QUEUED", Some(status), start, Some(now), &[context]),
        phase_json("COMPLETED", None, now, None, &[]),
    ]);
    let update = gantry_store::BuildUpdate {
        status: status.into(),
        current_phase: "COMPLETED".into(),
        build,
        end_ms: Some(now),
    };
    if let Err(e) = state
        .store
        .update_build(&record.id, &update, "system")
        .await
    {
        tracing::error!(build = %record.id, error = %e, "recording the end of a build failed");
    }
}

/// Hands a recorded build whose inputs are in place to the runner and
/// waits for its end.
async fn until_done<S: Store>(
    state: &AppState<S>,
    plan: PlannedBuild,
    record: BuildRecord,
    ended: tokio::sync::oneshot::Receiver<()>,
) -> Result<BuildRecord, String> {
    let id = record.id.clone();
    let scratch = plan.scratch.clone();
    submit_build(state, plan.build, record, Some(plan.source_dir));
    let _ = ended.await;
    let _ = std::fs::remove_dir_all(&scratch);
    read_build(state, &id).await
}

/// Decides a pipeline build: its scratch directory and where each input
/// goes, its environment (secondary inputs' `CODEBUILD_SRC_DIR_<name>`,
/// the action's `EnvironmentVariables`, the engine's variables), and the
/// build StartBuild would record. Nothing is read from the artifact store
/// yet; the error is the action's failure.
async fn plan_pipeline_build<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
    project: &str,
    uuid: &str,
) -> Result<PlannedBuild, Option<Input>> {
    let mut inputs = Vec::new();
    for (name, reference) in &job.input_artifacts {
        let r = reference.parse::<ArtifactRef>().map_err(|_| {
            failed(
                job,
                "JobFailed",
                format!("input artifact {name}: bad reference {reference}"),
            )
        })?;
        inputs.push((name.clone(), r));
    }
    let scratch = scratch_dir(cx, job).map_err(|e| failed(job, "JobFailed", e))?;
    let primary = job
        .configuration
        .get("PrimarySource")
        .cloned()
        .or_else(|| job.input_artifacts.keys().next().cloned());
    let mut env: Vec<Value> = Vec::new();
    let mut source_dir = None;
    let inputs: Vec<(String, ArtifactRef, PathBuf)> = inputs
        .into_iter()
        .map(|(name, r)| {
            let dir = scratch.path().join("inputs").join(&name);
            if Some(&name) == primary.as_ref() {
                source_dir = Some(dir.clone());
            } else {
                env.push(serde_json::json!({
                    "name": format!("CODEBUILD_SRC_DIR_{name}"),
                    "value": dir.to_string_lossy(),
                    "type": "PLAINTEXT",
                }));
            }
            (name, r, dir)
        })
        .collect();
    let source_dir = match source_dir {
        Some(d) => d,
        None => {
            let d = scratch.path().join("empty");
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
    let build = prepare_build(state, &initiator, input, Some(uuid.to_owned()))
        .await
        .map_err(|e| {
            failed(
                job,
                "JobFailed",
                format!("starting a build of {project}: {}", e.error.message),
            )
        })?;
    // The scratch directory outlives this function: the build moves the
    // primary source out of it and reads secondary ones from it.
    Ok(PlannedBuild {
        scratch: scratch.keep(),
        inputs,
        source_dir,
        build,
        initiator,
    })
}

/// Puts a planned build's inputs in place: the tree a source action just
/// checked out when it waits, else the stored artifact materialized.
async fn fill_inputs(
    cx: &ProviderContext,
    job: &ActionJob,
    plan: &PlannedBuild,
) -> Result<(), Option<Input>> {
    for (name, r, dir) in &plan.inputs {
        let materializing = Instant::now();
        if hand_over(cx, r, dir) {
            timing::step(&job.execution_id, "build.handover", materializing);
        } else {
            materialize(&cx.artifacts, r, dir)
                .await
                .map_err(|e| failed(job, "JobFailed", format!("input artifact {name}: {e}")))?;
            timing::step(&job.execution_id, "build.materialize", materializing);
        }
    }
    Ok(())
}

/// Moves the tree a source action just checked out and stored as `r` to
/// `dir`, when one waits (see `checkouts.rs`); false when the stored
/// artifact must be materialized instead.
fn hand_over(cx: &ProviderContext, r: &ArtifactRef, dir: &Path) -> bool {
    let Some(taken) = cx.checkouts.take(r) else {
        return false;
    };
    let moved = dir
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::rename(&taken.tree, dir));
    match moved {
        Ok(()) => true,
        Err(e) => {
            // The stored artifact is as good, only slower.
            tracing::warn!(artifact = %r, dir = %dir.display(), error = %e, "moving a checked-out tree into place failed; materializing it");
            false
        }
    }
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
