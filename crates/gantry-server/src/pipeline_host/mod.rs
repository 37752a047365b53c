//! The host of the pipeline engine: one [`PipelineRuntime`] per pipeline,
//! loaded from the store on first use, each step persisted before it is
//! acted on, and the actions it asks for run as tasks.
//!
//! Every input goes through [`PipelineHost::apply`]: lock the pipeline's
//! runtime, apply, write what changed in one transaction, then start or
//! abandon actions. When the write fails the in-memory runtime is dropped
//! (it is ahead of the database) and reloaded on the next use, so the
//! database stays the only truth. [`PipelineHost::resume`] loads the
//! pipelines whose executions this server took over (its own previous
//! life's at start, a dead server's later) and runs their in-progress
//! actions again, each provider making that safe (see `providers.rs`).

mod checkouts;
mod custom;
mod providers;
mod step_functions;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};

use gantry_pipeline::{
    ActionJob, Effect, EngineError, Execution, Input, PipelineRuntime, RuntimeMeta,
};
use gantry_store::{
    ActionExecutionRecord, ExecutionChanges, PipelineExecutionRecord, Store, StoreError, TakenOver,
    TransitionType, now_ms,
};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

use crate::router::AppState;

pub(crate) use custom::{BUCKET, new_id};
pub(crate) use providers::{ProviderContext, approval_input};

/// Why an input could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    /// The engine refused it; nothing changed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed; nothing changed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored execution could not be read back.
    #[error("stored execution {0} is unreadable: {1}")]
    Corrupt(String, String),
}

type Runtime = Arc<Mutex<PipelineRuntime>>;

/// Runtimes by pipeline, and the action tasks running.
pub(crate) struct PipelineHost {
    runtimes: Mutex<HashMap<String, Runtime>>,
    tasks: StdMutex<HashMap<String, AbortHandle>>,
    pub(crate) providers: ProviderContext,
}

fn locked<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PipelineHost {
    pub fn new(providers: ProviderContext) -> PipelineHost {
        PipelineHost {
            runtimes: Mutex::new(HashMap::new()),
            tasks: StdMutex::new(HashMap::new()),
            providers,
        }
    }

    /// The runtime of `pipeline`, loaded from the store when not in memory.
    async fn runtime<S: Store>(&self, store: &S, pipeline: &str) -> Result<Runtime, HostError> {
        let mut map = self.runtimes.lock().await;
        if let Some(rt) = map.get(pipeline) {
            return Ok(rt.clone());
        }
        let (meta, records) = store.load_runtime(pipeline).await?;
        let mut meta: RuntimeMeta = match meta {
            Some(m) => serde_json::from_value(m)
                .map_err(|e| HostError::Corrupt(format!("runtime of {pipeline}"), e.to_string()))?,
            None => RuntimeMeta::default(),
        };
        // Disabled transitions are the store's (the API writes them there);
        // an outbound transition of a stage holds executions at the next one.
        meta.disabled = disabled_stages(store, pipeline).await?;
        let mut executions = Vec::with_capacity(records.len());
        for r in records {
            executions.push(decode(&r)?);
        }
        let rt = Arc::new(Mutex::new(PipelineRuntime::restore(
            pipeline, meta, executions,
        )));
        map.insert(pipeline.to_owned(), rt.clone());
        Ok(rt)
    }

    /// Applies one input to a pipeline's runtime, stores what changed,
    /// then carries out the effects. `what` names the change in the audit
    /// log (empty for the engine's own progress).
    pub fn apply<'a, S: Store>(
        self: &'a Arc<Self>,
        state: &'a AppState<S>,
        pipeline: &'a str,
        input: Input,
        actor: &'a str,
        what: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Effect>, HostError>> + Send + 'a>> {
        // Boxed with an explicit `Send`: action tasks call `apply` from
        // inside futures that `apply` itself spawns, and the compiler cannot
        // prove such recursive futures `Send` on its own.
        Box::pin(async move {
            let step = match &input {
                Input::Start { .. } => "engine.save_start",
                Input::ActionSucceeded { .. } | Input::ActionFailed { .. } => "engine.save_result",
                _ => "engine.save_other",
            };
            let rt = self.runtime(state.store.as_ref(), pipeline).await?;
            let mut guard = rt.lock().await;
            let effects = guard.apply(input, now_ms())?;
            let mut changes = changes(&mut guard);
            // A build action's first build is stored with the step that
            // starts the action: one commit, not two, before it runs.
            let mut plans = Vec::new();
            for effect in &effects {
                if let Effect::StartAction(job) = effect
                    && let Some(plan) = providers::plan_first_build(state, job).await
                {
                    changes.builds.push(plan.new_build());
                    plans.push((job.action_execution_id.clone(), plan));
                }
            }
            let saving = std::time::Instant::now();
            let mut saved = state
                .store
                .save_execution_changes(&changes, actor, what)
                .await;
            if saved.is_err() && !plans.is_empty() {
                // The step must not fail for a build its action can start
                // (or explain) itself: stored without it, the action
                // starts it the usual way.
                changes.builds.clear();
                for (_, plan) in plans.drain(..) {
                    plan.discard();
                }
                saved = state
                    .store
                    .save_execution_changes(&changes, actor, what)
                    .await;
            }
            let created = match saved {
                Ok(created) => created,
                Err(e) => {
                    drop(guard);
                    self.runtimes.lock().await.remove(pipeline);
                    return Err(e.into());
                }
            };
            let mut precreated: HashMap<String, providers::Precreated> = plans
                .into_iter()
                .zip(created)
                .map(|((attempt, plan), record)| {
                    let build = providers::Precreated::new(&self.providers, &attempt, plan, record);
                    (attempt, build)
                })
                .collect();
            let saved = saving.elapsed();
            for e in &changes.executions {
                crate::timing::took(&e.id, step, saved);
            }
            let events = state_change_events(&guard, &effects, &state.config);
            guard.evict_ended();
            drop(guard);
            self.perform(state, &effects, &mut precreated);
            if !events.is_empty() {
                // Published off the engine's path, in order: an event is
                // output, and a slow bus must not slow the pipeline.
                let bus = state.events.clone();
                tokio::spawn(async move {
                    for (detail_type, resources, detail) in events {
                        bus.publish("gantry.codepipeline", detail_type, resources, detail)
                            .await;
                    }
                });
            }
            Ok(effects)
        })
    }

    /// A read of the runtime: the active execution `id`, when it is one.
    pub async fn active_execution<S: Store>(
        &self,
        store: &S,
        pipeline: &str,
        id: &str,
    ) -> Result<Option<Execution>, HostError> {
        let rt = self.runtime(store, pipeline).await?;
        let guard = rt.lock().await;
        Ok(guard.execution(id).cloned())
    }

    /// The runtime's meta row (who entered which stage last).
    pub async fn meta<S: Store>(
        &self,
        store: &S,
        pipeline: &str,
    ) -> Result<RuntimeMeta, HostError> {
        let rt = self.runtime(store, pipeline).await?;
        let guard = rt.lock().await;
        Ok(guard.meta().clone())
    }

    /// Brings an ended execution back into the runtime for a stage retry.
    pub async fn reload_ended<S: Store>(
        &self,
        store: &S,
        pipeline: &str,
        id: &str,
    ) -> Result<(), HostError> {
        let record = store.get_pipeline_execution(pipeline, id).await?;
        let execution = decode(&record)?;
        let rt = self.runtime(store, pipeline).await?;
        rt.lock().await.insert_ended(execution);
        Ok(())
    }

    /// Re-reads a pipeline's disabled transitions from the store and lets
    /// waiting executions in where they now may.
    pub async fn refresh_transitions<S: Store>(
        self: &Arc<Self>,
        state: &AppState<S>,
        pipeline: &str,
    ) -> Result<(), HostError> {
        let disabled = disabled_stages(state.store.as_ref(), pipeline).await?;
        let rt = self.runtime(state.store.as_ref(), pipeline).await?;
        rt.lock().await.set_disabled(disabled);
        self.apply(state, pipeline, Input::Wake, "system", "")
            .await?;
        Ok(())
    }

    /// Resumes the pipeline executions this server took over (at its start,
    /// from its previous life, or later from a server whose heartbeat went
    /// stale; see `recovery.rs`): each of their pipelines is loaded afresh
    /// from the store, their in-progress actions run again, and waiting
    /// executions that can enter a stage do. Executions another live server
    /// owns are not touched: their actions run there. Returns how many
    /// actions were started again.
    pub async fn resume<S: Store>(
        self: &Arc<Self>,
        state: &AppState<S>,
        taken: &[TakenOver],
    ) -> Result<usize, HostError> {
        let mut pipelines: Vec<&str> = taken.iter().map(|t| t.group.as_str()).collect();
        pipelines.sort_unstable();
        pipelines.dedup();
        let mut resumed = 0;
        for pipeline in pipelines {
            // A runtime cached here may be behind what the dead owner wrote.
            self.runtimes.lock().await.remove(pipeline);
            let rt = self.runtime(state.store.as_ref(), pipeline).await?;
            let jobs = rt.lock().await.in_progress_actions();
            for job in jobs {
                let ours = taken
                    .iter()
                    .any(|t| t.group == pipeline && t.id == job.execution_id);
                if ours {
                    resumed += 1;
                    self.spawn_action(state, job, None);
                }
            }
            self.apply(state, pipeline, Input::Wake, "system", "")
                .await?;
        }
        Ok(resumed)
    }

    /// Stops every action task without recording a result: on shutdown,
    /// so that what the server interrupts is resumed, not failed.
    pub fn abort_actions(&self) {
        for (_, task) in locked(&self.tasks).drain() {
            task.abort();
        }
    }

    fn perform<S: Store>(
        self: &Arc<Self>,
        state: &AppState<S>,
        effects: &[Effect],
        precreated: &mut HashMap<String, providers::Precreated>,
    ) {
        for effect in effects {
            match effect {
                Effect::StartAction(job) => {
                    let build = precreated.remove(&job.action_execution_id);
                    self.spawn_action(state, (**job).clone(), build);
                }
                Effect::AbandonAction {
                    action_execution_id,
                    ..
                } => {
                    if let Some(task) = locked(&self.tasks).remove(action_execution_id) {
                        task.abort();
                    }
                    providers::abandon(state, action_execution_id);
                }
                _ => {}
            }
        }
    }

    fn spawn_action<S: Store>(
        self: &Arc<Self>,
        state: &AppState<S>,
        job: ActionJob,
        precreated: Option<providers::Precreated>,
    ) {
        let host = self.clone();
        let state = state.clone();
        let id = job.action_execution_id.clone();
        let task = tokio::spawn(async move {
            let pipeline = job.pipeline.clone();
            let attempt = job.action_execution_id.clone();
            let outcome = providers::run(&host, &state, &job, precreated).await;
            if let Some(input) = outcome {
                match host.apply(&state, &pipeline, input, "system", "").await {
                    Ok(_) | Err(HostError::Engine(EngineError::StaleResult(_))) => {}
                    Err(e) => {
                        tracing::error!(pipeline = %pipeline, action = %attempt, error = %e, "recording an action's result failed");
                    }
                }
            }
            locked(&host.tasks).remove(&attempt);
        });
        let mut tasks = locked(&self.tasks);
        tasks.retain(|_, t| !t.is_finished());
        tasks.insert(id, task.abort_handle());
    }
}

/// The EventBridge events of one step's state changes, with the detail
/// types and members CodePipeline's events have.
fn state_change_events(
    rt: &PipelineRuntime,
    effects: &[Effect],
    config: &crate::Config,
) -> Vec<(&'static str, Vec<String>, serde_json::Value)> {
    use gantry_pipeline::{ActionStatus, ExecutionStatus, StageStatus};
    let arn = format!(
        "arn:aws:codepipeline:{}:{}:{}",
        config.region,
        config.account_id,
        rt.pipeline()
    );
    let version = |id: &str| rt.execution(id).map(|e| e.plan.version).unwrap_or(0);
    let mut out = Vec::new();
    for effect in effects {
        let (detail_type, detail) = match effect {
            Effect::ExecutionChanged {
                execution_id,
                status,
            } => {
                let state = match status {
                    ExecutionStatus::InProgress => "STARTED",
                    ExecutionStatus::Stopping => "STOPPING",
                    ExecutionStatus::Stopped => "STOPPED",
                    ExecutionStatus::Succeeded => "SUCCEEDED",
                    ExecutionStatus::Superseded => "SUPERSEDED",
                    ExecutionStatus::Failed => "FAILED",
                    ExecutionStatus::Cancelled => "CANCELED",
                };
                (
                    "CodePipeline Pipeline Execution State Change",
                    serde_json::json!({
                        "pipeline": rt.pipeline(), "execution-id": execution_id,
                        "state": state, "version": version(execution_id),
                    }),
                )
            }
            Effect::StageChanged {
                execution_id,
                stage,
                status,
            } => {
                let state = match status {
                    StageStatus::InProgress => "STARTED",
                    StageStatus::Stopping => "STOPPING",
                    StageStatus::Stopped => "STOPPED",
                    StageStatus::Succeeded => "SUCCEEDED",
                    StageStatus::Failed => "FAILED",
                    StageStatus::Cancelled => "CANCELED",
                };
                (
                    "CodePipeline Stage Execution State Change",
                    serde_json::json!({
                        "pipeline": rt.pipeline(), "execution-id": execution_id,
                        "stage": stage, "state": state, "version": version(execution_id),
                    }),
                )
            }
            Effect::ActionChanged {
                execution_id,
                stage,
                action,
                status,
            } => {
                let state = match status {
                    ActionStatus::InProgress => "STARTED",
                    ActionStatus::Succeeded => "SUCCEEDED",
                    ActionStatus::Failed => "FAILED",
                    ActionStatus::Abandoned => "ABANDONED",
                };
                let kind = rt.execution(execution_id).and_then(|e| {
                    let s = e.plan.stages.iter().find(|s| &s.name == stage)?;
                    s.actions.iter().find(|a| &a.name == action)
                });
                (
                    "CodePipeline Action Execution State Change",
                    serde_json::json!({
                        "pipeline": rt.pipeline(), "execution-id": execution_id,
                        "stage": stage, "action": action, "state": state,
                        "region": config.region, "version": version(execution_id),
                        "type": kind.map(|a| serde_json::json!({
                            "owner": a.owner, "category": a.category,
                            "provider": a.provider, "version": a.version,
                        })),
                    }),
                )
            }
            _ => continue,
        };
        out.push((detail_type, vec![arn.clone()], detail));
    }
    out
}

/// The stage names whose executions must wait at the entrance: inbound
/// transitions disabled, and stages after a disabled outbound transition.
async fn disabled_stages<S: Store>(
    store: &S,
    pipeline: &str,
) -> Result<std::collections::BTreeSet<String>, HostError> {
    let disabled = store.disabled_transitions(pipeline).await?;
    let declaration = crate::codepipeline::get_pipeline(store, pipeline).await?;
    let mut stages = std::collections::BTreeSet::new();
    for t in disabled {
        match t.transition_type {
            TransitionType::Inbound => {
                stages.insert(t.stage);
            }
            TransitionType::Outbound => {
                if let Some((decl, _)) = &declaration {
                    let names: Vec<&str> =
                        decl.stages.iter().map(|s| s.name.value.as_str()).collect();
                    if let Some(i) = names.iter().position(|n| *n == t.stage)
                        && let Some(next) = names.get(i + 1)
                    {
                        stages.insert((*next).to_owned());
                    }
                }
            }
        }
    }
    Ok(stages)
}

fn decode(record: &PipelineExecutionRecord) -> Result<Execution, HostError> {
    serde_json::from_value(record.body.clone())
        .map_err(|e| HostError::Corrupt(record.id.clone(), e.to_string()))
}

/// What the runtime changed, as store rows.
fn changes(rt: &mut PipelineRuntime) -> ExecutionChanges {
    let pipeline = rt.pipeline().to_owned();
    let (executions, meta) = rt.take_dirty();
    let mut out = ExecutionChanges {
        pipeline: pipeline.clone(),
        meta: meta.map(|m| serde_json::to_value(m).unwrap_or_default()),
        ..ExecutionChanges::default()
    };
    for e in executions {
        out.executions.push(PipelineExecutionRecord {
            id: e.id.clone(),
            pipeline: pipeline.clone(),
            seq: e.seq,
            status: e.status.as_str().to_owned(),
            active: !e.status.is_terminal(),
            start_ms: e.started_ms,
            update_ms: e.updated_ms,
            body: serde_json::to_value(e).unwrap_or_default(),
        });
        for (s, stage) in e.stages.iter().enumerate() {
            for (a, run) in stage.actions.iter().enumerate() {
                let (Some(id), Some(status)) = (&run.action_execution_id, run.status) else {
                    continue;
                };
                let plan = &e.plan.stages[s].actions[a];
                out.actions.push(ActionExecutionRecord {
                    id: id.clone(),
                    pipeline: pipeline.clone(),
                    execution_id: e.id.clone(),
                    stage: e.plan.stages[s].name.clone(),
                    action: plan.name.clone(),
                    attempt: run.attempt,
                    status: status.as_str().to_owned(),
                    start_ms: run.started_ms.unwrap_or(e.started_ms),
                    update_ms: run.updated_ms.unwrap_or(e.updated_ms),
                    body: serde_json::json!({
                        "pipelineVersion": e.plan.version,
                        "action": plan,
                        "run": run,
                    }),
                });
            }
        }
    }
    out
}
