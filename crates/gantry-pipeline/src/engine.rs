//! The runtime of one pipeline: its executions, the stages they hold and
//! the queues in front of the stages.
//!
//! [`PipelineRuntime::apply`] takes one [`Input`] and returns the
//! [`Effect`]s the host must carry out (start or abandon an action) and the
//! state changes it should publish. It does no I/O and reads no clock: the
//! host passes `now`. The host persists every execution named by
//! [`PipelineRuntime::take_dirty`] and the [`RuntimeMeta`] in one
//! transaction before it acts on the effects, so a crash between the two
//! re-runs at most an action that had not finished
//! ([`PipelineRuntime::in_progress_actions`] lists them after a restart).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::plan::{EnvVarPlan, Mode, Plan, RetryMode};
use crate::state::*;
use crate::vars::{self, Scope};

/// Something that happened to a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start a new execution of `plan`.
    Start {
        /// Its id (the host makes it unique).
        execution_id: String,
        /// The pipeline version to run.
        plan: Plan,
        /// What started it.
        trigger: Trigger,
        /// Pipeline-level variable values given at start.
        variables: Vec<(String, String)>,
        /// Source action name → the revision to fetch (e.g. a webhook's commit).
        source_revisions: BTreeMap<String, String>,
    },
    /// An action attempt finished well.
    ActionSucceeded {
        /// The execution.
        execution_id: String,
        /// The attempt, as the [`ActionJob`] named it.
        action_execution_id: String,
        /// Output artifact name → reference in the artifact store.
        outputs: BTreeMap<String, String>,
        /// Output variables.
        variables: BTreeMap<String, String>,
        /// A one-line summary.
        summary: Option<String>,
        /// The id of what ran it (a build id, ...).
        external_execution_id: Option<String>,
    },
    /// An action attempt finished badly.
    ActionFailed {
        /// The execution.
        execution_id: String,
        /// The attempt.
        action_execution_id: String,
        /// Why.
        error: ActionError,
        /// The id of what ran it.
        external_execution_id: Option<String>,
    },
    /// Stop an execution: let in-progress actions finish, or abandon them.
    Stop {
        /// The execution.
        execution_id: String,
        /// Abandon in-progress actions instead of waiting for them.
        abandon: bool,
        /// Why, as the user gave it.
        reason: Option<String>,
    },
    /// Run a failed or stopped stage of an ended execution again.
    RetryStage {
        /// The execution.
        execution_id: String,
        /// The stage.
        stage: String,
        /// Which actions run again.
        mode: RetryMode,
    },
    /// Enable or disable the inbound transition of a stage.
    SetTransition {
        /// The stage.
        stage: String,
        /// Whether executions may enter it.
        enabled: bool,
    },
}

/// An action attempt for the host to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionJob {
    /// The pipeline.
    pub pipeline: String,
    /// The pipeline version the execution runs.
    pub pipeline_version: u32,
    /// The execution.
    pub execution_id: String,
    /// The stage name.
    pub stage: String,
    /// The action name.
    pub action: String,
    /// This attempt's id; the result must name it.
    pub action_execution_id: String,
    /// 1 on the first run of the action in this execution.
    pub attempt: u32,
    /// `Source`, `Build`, ...
    pub category: String,
    /// `AWS`, `ThirdParty`, `Custom`.
    pub owner: String,
    /// `Git`, `CodeBuild`, `Manual`, ...
    pub provider: String,
    /// The action type version.
    pub version: String,
    /// The configuration, references resolved.
    pub configuration: BTreeMap<String, String>,
    /// The environment variables, references resolved.
    pub environment_variables: Vec<EnvVarPlan>,
    /// Input artifact name → reference.
    pub input_artifacts: BTreeMap<String, String>,
    /// The output artifacts it must produce.
    pub output_artifacts: Vec<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// `timeoutInMinutes`.
    pub timeout_in_minutes: Option<u32>,
    /// `commands`.
    pub commands: Vec<String>,
    /// For a source action: the revision the start asked for.
    pub source_revision: Option<String>,
}

/// What the host must do, or may publish, after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run this action attempt and report its result.
    StartAction(Box<ActionJob>),
    /// Give up this attempt (kill what runs it); its result is ignored.
    AbandonAction {
        /// The execution.
        execution_id: String,
        /// The attempt.
        action_execution_id: String,
    },
    /// An execution's status changed.
    ExecutionChanged {
        /// The execution.
        execution_id: String,
        /// The new status.
        status: ExecutionStatus,
    },
    /// A stage's status changed in an execution.
    StageChanged {
        /// The execution.
        execution_id: String,
        /// The stage.
        stage: String,
        /// The new status.
        status: StageStatus,
    },
    /// An action's status changed in an execution.
    ActionChanged {
        /// The execution.
        execution_id: String,
        /// The stage.
        stage: String,
        /// The action.
        action: String,
        /// The new status.
        status: ActionStatus,
    },
}

/// Why an input was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No such execution in this runtime.
    #[error("pipeline execution {0} was not found")]
    ExecutionNotFound(String),
    /// The id is taken.
    #[error("a pipeline execution with id {0} already exists")]
    DuplicateExecution(String),
    /// Start variables that the pipeline does not declare, or a declared
    /// variable with no default that the start does not give.
    #[error("{0}")]
    InvalidVariables(String),
    /// The execution is not running.
    #[error("{0}")]
    NotStoppable(String),
    /// A stop of the same kind was already asked.
    #[error("a stop of pipeline execution {0} is already in progress")]
    DuplicateStop(String),
    /// The stage cannot be retried now.
    #[error("{0}")]
    StageNotRetryable(String),
    /// A newer execution has entered the stage since.
    #[error("{0}")]
    NotLatest(String),
    /// The plan has no such stage.
    #[error("stage {0} was not found in the pipeline")]
    StageNotFound(String),
    /// A result for an attempt that is not in progress (a duplicate, or one
    /// abandoned): ignored.
    #[error("no action execution {0} is in progress")]
    StaleResult(String),
}

/// The part of a runtime's state that is not in its executions: kept in
/// one row per pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuntimeMeta {
    /// The last execution sequence number handed out.
    pub last_seq: u64,
    /// Stage name → the execution that entered it last.
    pub last_entered: BTreeMap<String, String>,
    /// Stage names whose inbound transition is disabled.
    pub disabled: BTreeSet<String>,
}

/// One pipeline's executions and stage bookkeeping.
#[derive(Debug, Clone)]
pub struct PipelineRuntime {
    pipeline: String,
    meta: RuntimeMeta,
    executions: BTreeMap<String, Execution>,
    /// Stage name → the execution inside it (not kept in PARALLEL mode).
    occupants: BTreeMap<String, String>,
    /// Stage name → executions waiting to enter, oldest first.
    waiting: BTreeMap<String, VecDeque<String>>,
    effects: Vec<Effect>,
    dirty: BTreeSet<String>,
    meta_dirty: bool,
    now: i64,
}

impl PipelineRuntime {
    /// A runtime for a pipeline with no execution yet.
    pub fn new(pipeline: impl Into<String>) -> PipelineRuntime {
        PipelineRuntime::restore(pipeline, RuntimeMeta::default(), Vec::new())
    }

    /// A runtime rebuilt from what the host stored: its meta row and the
    /// executions that had not ended. Which executions hold and wait for
    /// which stage follows from their positions.
    pub fn restore(
        pipeline: impl Into<String>,
        meta: RuntimeMeta,
        executions: Vec<Execution>,
    ) -> PipelineRuntime {
        let mut rt = PipelineRuntime {
            pipeline: pipeline.into(),
            meta,
            executions: BTreeMap::new(),
            occupants: BTreeMap::new(),
            waiting: BTreeMap::new(),
            effects: Vec::new(),
            dirty: BTreeSet::new(),
            meta_dirty: false,
            now: 0,
        };
        let mut active: Vec<Execution> = executions
            .into_iter()
            .filter(|e| !e.status.is_terminal())
            .collect();
        active.sort_by_key(|e| e.seq);
        for e in active {
            let locks = e.plan.mode != Mode::Parallel;
            match e.position {
                Position::InStage(i) if locks => {
                    rt.occupants
                        .insert(e.plan.stages[i].name.clone(), e.id.clone());
                }
                Position::Waiting(i) => {
                    rt.waiting
                        .entry(e.plan.stages[i].name.clone())
                        .or_default()
                        .push_back(e.id.clone());
                }
                _ => {}
            }
            rt.meta.last_seq = rt.meta.last_seq.max(e.seq);
            rt.executions.insert(e.id.clone(), e);
        }
        rt
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The meta row to store.
    pub fn meta(&self) -> &RuntimeMeta {
        &self.meta
    }

    /// An execution this runtime holds.
    pub fn execution(&self, id: &str) -> Option<&Execution> {
        self.executions.get(id)
    }

    /// Every execution this runtime holds, by id.
    pub fn executions(&self) -> impl Iterator<Item = &Execution> {
        self.executions.values()
    }

    /// Puts back an ended execution (from the store) so that one of its
    /// stages can be retried.
    pub fn insert_ended(&mut self, execution: Execution) {
        if execution.status.is_terminal() && !self.executions.contains_key(&execution.id) {
            self.executions.insert(execution.id.clone(), execution);
        }
    }

    /// Drops ended executions (after the host stored them); returns their ids.
    pub fn evict_ended(&mut self) -> Vec<String> {
        let ended: Vec<String> = self
            .executions
            .values()
            .filter(|e| e.status.is_terminal() && !self.dirty.contains(&e.id))
            .map(|e| e.id.clone())
            .collect();
        for id in &ended {
            self.executions.remove(id);
        }
        ended
    }

    /// The executions changed since the last call, and whether the meta row
    /// changed: what the host must store before acting on effects.
    pub fn take_dirty(&mut self) -> (Vec<&Execution>, Option<&RuntimeMeta>) {
        let ids = std::mem::take(&mut self.dirty);
        let meta = std::mem::take(&mut self.meta_dirty).then_some(&self.meta);
        let execs = ids
            .iter()
            .filter_map(|id| self.executions.get(id))
            .collect();
        (execs, meta)
    }

    /// The action attempts in progress, as jobs: after a restart the host
    /// runs (or re-attaches to) each of them once more.
    pub fn in_progress_actions(&self) -> Vec<ActionJob> {
        let mut jobs = Vec::new();
        for e in self.executions.values() {
            for (s, stage) in e.stages.iter().enumerate() {
                for (a, run) in stage.actions.iter().enumerate() {
                    if run.status == Some(ActionStatus::InProgress) {
                        jobs.push(job_for(e, s, a));
                    }
                }
            }
        }
        jobs
    }

    /// Applies one input at time `now` (epoch ms). On error nothing changed.
    pub fn apply(&mut self, input: Input, now: i64) -> Result<Vec<Effect>, EngineError> {
        self.now = now;
        self.effects.clear();
        match input {
            Input::Start {
                execution_id,
                plan,
                trigger,
                variables,
                source_revisions,
            } => self.start(execution_id, plan, trigger, variables, source_revisions)?,
            Input::ActionSucceeded {
                execution_id,
                action_execution_id,
                outputs,
                variables,
                summary,
                external_execution_id,
            } => {
                let (s, a) = self.running_action(&execution_id, &action_execution_id)?;
                self.action_succeeded(
                    &execution_id,
                    s,
                    a,
                    outputs,
                    variables,
                    summary,
                    external_execution_id,
                );
                self.drive_stage(&execution_id, s);
            }
            Input::ActionFailed {
                execution_id,
                action_execution_id,
                error,
                external_execution_id,
            } => {
                let (s, a) = self.running_action(&execution_id, &action_execution_id)?;
                let run = &mut self.exec_mut(&execution_id).stages[s].actions[a];
                if external_execution_id.is_some() {
                    run.external_execution_id = external_execution_id;
                }
                run.summary = Some(error.message.clone());
                run.error = Some(error);
                self.set_action(&execution_id, s, a, ActionStatus::Failed);
                self.drive_stage(&execution_id, s);
            }
            Input::Stop {
                execution_id,
                abandon,
                reason,
            } => self.stop(&execution_id, abandon, reason)?,
            Input::RetryStage {
                execution_id,
                stage,
                mode,
            } => self.retry(&execution_id, &stage, mode)?,
            Input::SetTransition { stage, enabled } => {
                let changed = if enabled {
                    self.meta.disabled.remove(&stage)
                } else {
                    self.meta.disabled.insert(stage)
                };
                self.meta_dirty |= changed;
            }
        }
        self.admit_waiting();
        Ok(std::mem::take(&mut self.effects))
    }

    fn exec_mut(&mut self, id: &str) -> &mut Execution {
        self.dirty.insert(id.to_owned());
        self.executions
            .get_mut(id)
            .expect("callers check that the execution exists")
    }

    fn running_action(&self, id: &str, attempt: &str) -> Result<(usize, usize), EngineError> {
        let e = self
            .executions
            .get(id)
            .ok_or_else(|| EngineError::StaleResult(attempt.to_owned()))?;
        let (s, a) = e
            .find_action(attempt)
            .ok_or_else(|| EngineError::StaleResult(attempt.to_owned()))?;
        if e.stages[s].actions[a].status != Some(ActionStatus::InProgress) {
            return Err(EngineError::StaleResult(attempt.to_owned()));
        }
        Ok((s, a))
    }

    fn start(
        &mut self,
        id: String,
        plan: Plan,
        trigger: Trigger,
        given: Vec<(String, String)>,
        source_revisions: BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if self.executions.contains_key(&id) {
            return Err(EngineError::DuplicateExecution(id));
        }
        let variables = start_variables(&plan, given)?;
        self.meta.last_seq += 1;
        self.meta_dirty = true;
        let stages = plan
            .stages
            .iter()
            .map(|s| StageRun {
                actions: vec![ActionRun::default(); s.actions.len()],
                ..StageRun::default()
            })
            .collect();
        let execution = Execution {
            id: id.clone(),
            seq: self.meta.last_seq,
            plan,
            status: ExecutionStatus::InProgress,
            status_summary: None,
            trigger,
            variables,
            source_revisions,
            started_ms: self.now,
            updated_ms: self.now,
            position: Position::Waiting(0),
            stages,
            artifacts: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            stopping: false,
        };
        self.executions.insert(id.clone(), execution);
        self.dirty.insert(id.clone());
        self.effects.push(Effect::ExecutionChanged {
            execution_id: id.clone(),
            status: ExecutionStatus::InProgress,
        });
        self.wait_for_stage(&id, 0);
        Ok(())
    }

    /// Puts an execution in the queue in front of stage `i`. In SUPERSEDED
    /// mode the queue holds one execution: the older of the two is
    /// superseded.
    fn wait_for_stage(&mut self, id: &str, i: usize) {
        let (stage, mode, seq) = {
            let e = self.exec_mut(id);
            e.position = Position::Waiting(i);
            (e.plan.stages[i].name.clone(), e.plan.mode, e.seq)
        };
        let queue = self.waiting.entry(stage.clone()).or_default();
        if mode == Mode::Superseded {
            let mut loser = None;
            if let Some(other) = queue.front().cloned() {
                let other_seq = self.executions.get(&other).map(|e| e.seq).unwrap_or(0);
                if other_seq < seq {
                    queue.pop_front();
                    queue.push_back(id.to_owned());
                    loser = Some(other);
                } else {
                    loser = Some(id.to_owned());
                }
            } else {
                queue.push_back(id.to_owned());
            }
            if let Some(loser) = loser {
                let newer = if loser == id {
                    queue.front().cloned().unwrap_or_default()
                } else {
                    id.to_owned()
                };
                self.end_execution(
                    &loser,
                    ExecutionStatus::Superseded,
                    Some(format!(
                        "superseded by execution {newer} while waiting to enter stage {stage}"
                    )),
                );
            }
        } else {
            // Oldest first: a retried or restored execution may be older
            // than those already waiting.
            let pos = queue
                .iter()
                .position(|w| self.executions.get(w).map(|e| e.seq).unwrap_or(0) > seq)
                .unwrap_or(queue.len());
            queue.insert(pos, id.to_owned());
        }
    }

    /// Lets waiting executions into stages that are free and open, until
    /// nothing moves.
    fn admit_waiting(&mut self) {
        loop {
            let mut admitted = None;
            for (stage, queue) in &self.waiting {
                let Some(head) = queue.front() else { continue };
                let Some(e) = self.executions.get(head) else {
                    continue;
                };
                let Position::Waiting(i) = e.position else {
                    continue;
                };
                if i > 0 && self.meta.disabled.contains(stage) {
                    continue;
                }
                if e.plan.mode != Mode::Parallel && self.occupants.contains_key(stage) {
                    continue;
                }
                admitted = Some((stage.clone(), head.clone(), i));
                break;
            }
            let Some((stage, id, i)) = admitted else {
                return;
            };
            if let Some(q) = self.waiting.get_mut(&stage) {
                q.pop_front();
                if q.is_empty() {
                    self.waiting.remove(&stage);
                }
            }
            self.enter_stage(&id, i);
        }
    }

    fn enter_stage(&mut self, id: &str, i: usize) {
        let now = self.now;
        let (stage, mode) = {
            let e = self.exec_mut(id);
            e.position = Position::InStage(i);
            e.updated_ms = now;
            let run = &mut e.stages[i];
            run.attempt += 1;
            run.status = Some(StageStatus::InProgress);
            run.updated_ms = Some(now);
            (e.plan.stages[i].name.clone(), e.plan.mode)
        };
        if mode != Mode::Parallel {
            self.occupants.insert(stage.clone(), id.to_owned());
        }
        self.meta.last_entered.insert(stage.clone(), id.to_owned());
        self.meta_dirty = true;
        self.effects.push(Effect::StageChanged {
            execution_id: id.to_owned(),
            stage,
            status: StageStatus::InProgress,
        });
        self.drive_stage(id, i);
    }

    /// Moves a stage on: starts the next run order when the current one is
    /// done, and ends the stage when nothing is left or something failed.
    fn drive_stage(&mut self, id: &str, i: usize) {
        loop {
            let e = &self.executions[id];
            if e.position != Position::InStage(i) {
                return;
            }
            let runs = &e.stages[i].actions;
            if runs
                .iter()
                .any(|r| r.status == Some(ActionStatus::InProgress))
            {
                return;
            }
            if e.stopping {
                self.end_stage(id, i, StageStatus::Stopped);
                return;
            }
            let failed = runs.iter().any(|r| {
                matches!(
                    r.status,
                    Some(ActionStatus::Failed | ActionStatus::Abandoned)
                )
            });
            if failed {
                let stage = &e.plan.stages[i];
                let auto = match stage.on_failure {
                    crate::plan::FailurePolicy::Retry(mode) if !e.stages[i].auto_retried => {
                        Some(mode)
                    }
                    _ => None,
                };
                match auto {
                    Some(mode) => {
                        let e = self.exec_mut(id);
                        e.stages[i].auto_retried = true;
                        e.stages[i].attempt += 1;
                        reset_actions(&mut e.stages[i], mode);
                        continue;
                    }
                    None => {
                        self.end_stage(id, i, StageStatus::Failed);
                        return;
                    }
                }
            }
            let plan = &e.plan.stages[i];
            let next_order = runs
                .iter()
                .zip(&plan.actions)
                .filter(|(r, _)| r.status.is_none())
                .map(|(_, a)| a.run_order)
                .min();
            let Some(order) = next_order else {
                self.end_stage(id, i, StageStatus::Succeeded);
                return;
            };
            let batch: Vec<usize> = runs
                .iter()
                .zip(&plan.actions)
                .enumerate()
                .filter(|(_, (r, a))| r.status.is_none() && a.run_order == order)
                .map(|(n, _)| n)
                .collect();
            for a in batch {
                self.start_action(id, i, a);
            }
        }
    }

    fn start_action(&mut self, id: &str, s: usize, a: usize) {
        let now = self.now;
        let resolved = resolve_action(&self.executions[id], s, a);
        let e = self.exec_mut(id);
        let run = &mut e.stages[s].actions[a];
        run.attempt += 1;
        run.action_execution_id = Some(format!("{id}-{s}-{a}-{}", run.attempt));
        run.started_ms = Some(now);
        run.outputs.clear();
        run.output_variables.clear();
        run.summary = None;
        run.error = None;
        run.external_execution_id = None;
        match resolved {
            Ok((configuration, environment, inputs)) => {
                run.resolved_configuration = configuration;
                run.resolved_environment = environment;
                run.inputs = inputs;
                self.set_action(id, s, a, ActionStatus::InProgress);
                let job = job_for(&self.executions[id], s, a);
                self.effects.push(Effect::StartAction(Box::new(job)));
            }
            Err(message) => {
                run.summary = Some(message.clone());
                run.error = Some(ActionError {
                    code: "ConfigurationError".into(),
                    message,
                });
                self.set_action(id, s, a, ActionStatus::Failed);
            }
        }
    }

    fn set_action(&mut self, id: &str, s: usize, a: usize, status: ActionStatus) {
        let now = self.now;
        let e = self.exec_mut(id);
        let run = &mut e.stages[s].actions[a];
        run.status = Some(status);
        run.updated_ms = Some(now);
        let (stage, action) = (
            e.plan.stages[s].name.clone(),
            e.plan.stages[s].actions[a].name.clone(),
        );
        self.effects.push(Effect::ActionChanged {
            execution_id: id.to_owned(),
            stage,
            action,
            status,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn action_succeeded(
        &mut self,
        id: &str,
        s: usize,
        a: usize,
        outputs: BTreeMap<String, String>,
        variables: BTreeMap<String, String>,
        summary: Option<String>,
        external: Option<String>,
    ) {
        let e = self.exec_mut(id);
        let plan = &e.plan.stages[s].actions[a];
        let missing: Vec<&String> = plan
            .output_artifacts
            .iter()
            .filter(|name| !outputs.contains_key(*name))
            .collect();
        let run = &mut e.stages[s].actions[a];
        if external.is_some() {
            run.external_execution_id = external;
        }
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
            let message = format!(
                "the action did not produce its output artifact(s) {}",
                names.join(", ")
            );
            run.summary = Some(message.clone());
            run.error = Some(ActionError {
                code: "JobFailed".into(),
                message,
            });
            self.set_action(id, s, a, ActionStatus::Failed);
            return;
        }
        // Only declared outputs are kept: an action cannot overwrite an
        // artifact it does not own.
        let declared: BTreeMap<String, String> = outputs
            .into_iter()
            .filter(|(name, _)| plan.output_artifacts.contains(name))
            .collect();
        let namespace = plan.namespace.clone();
        run.summary = summary;
        run.outputs = declared.clone();
        run.output_variables = variables.clone();
        e.artifacts.extend(declared);
        if let Some(ns) = namespace {
            e.namespaces.insert(ns, variables);
        }
        self.set_action(id, s, a, ActionStatus::Succeeded);
    }

    /// A stage ends; the execution moves on, fails or stops.
    fn end_stage(&mut self, id: &str, i: usize, status: StageStatus) {
        let now = self.now;
        let (stage, last) = {
            let e = self.exec_mut(id);
            e.stages[i].status = Some(status);
            e.stages[i].updated_ms = Some(now);
            (e.plan.stages[i].name.clone(), i + 1 == e.plan.stages.len())
        };
        self.release(&stage, id);
        self.effects.push(Effect::StageChanged {
            execution_id: id.to_owned(),
            stage: stage.clone(),
            status,
        });
        match status {
            StageStatus::Succeeded if !last => self.wait_for_stage(id, i + 1),
            StageStatus::Succeeded => self.end_execution(id, ExecutionStatus::Succeeded, None),
            StageStatus::Failed => {
                let summary = self.failure_summary(id, i);
                self.end_execution(id, ExecutionStatus::Failed, Some(summary));
            }
            _ => {
                let summary = self.executions[id].status_summary.clone();
                self.end_execution(id, ExecutionStatus::Stopped, summary);
            }
        }
    }

    fn failure_summary(&self, id: &str, i: usize) -> String {
        let e = &self.executions[id];
        let stage = &e.plan.stages[i];
        let failed: Vec<String> = e.stages[i]
            .actions
            .iter()
            .zip(&stage.actions)
            .filter(|(r, _)| r.status == Some(ActionStatus::Failed))
            .map(|(r, a)| match &r.error {
                Some(err) => format!("{}: {}", a.name, err.message),
                None => a.name.clone(),
            })
            .collect();
        format!("stage {} failed: {}", stage.name, failed.join("; "))
    }

    fn release(&mut self, stage: &str, id: &str) {
        if self.occupants.get(stage).map(String::as_str) == Some(id) {
            self.occupants.remove(stage);
        }
    }

    fn end_execution(&mut self, id: &str, status: ExecutionStatus, summary: Option<String>) {
        let now = self.now;
        let e = self.exec_mut(id);
        if let Position::Waiting(i) = e.position {
            let stage = e.plan.stages[i].name.clone();
            if let Some(q) = self.waiting.get_mut(&stage) {
                q.retain(|w| w != id);
                if q.is_empty() {
                    self.waiting.remove(&stage);
                }
            }
        }
        let e = self.exec_mut(id);
        if let Position::InStage(i) = e.position {
            let stage = e.plan.stages[i].name.clone();
            self.release(&stage, id);
        }
        let e = self.exec_mut(id);
        // A failed or stopped execution stays at its stage so a retry knows
        // where it was; others are done.
        e.position = match (status, e.position) {
            (ExecutionStatus::Failed | ExecutionStatus::Stopped, Position::InStage(i)) => {
                Position::InStage(i)
            }
            _ => Position::Done,
        };
        e.status = status;
        e.stopping = false;
        e.status_summary = summary;
        e.updated_ms = now;
        self.effects.push(Effect::ExecutionChanged {
            execution_id: id.to_owned(),
            status,
        });
    }

    fn stop(&mut self, id: &str, abandon: bool, reason: Option<String>) -> Result<(), EngineError> {
        let e = self
            .executions
            .get(id)
            .ok_or_else(|| EngineError::ExecutionNotFound(id.to_owned()))?;
        match e.status {
            ExecutionStatus::InProgress => {}
            ExecutionStatus::Stopping if abandon => {}
            ExecutionStatus::Stopping => return Err(EngineError::DuplicateStop(id.to_owned())),
            other => {
                return Err(EngineError::NotStoppable(format!(
                    "pipeline execution {id} is {} and cannot be stopped",
                    other.as_str()
                )));
            }
        }
        let summary = reason.or_else(|| Some("stopped by request".to_owned()));
        match e.position {
            Position::InStage(i) if abandon => {
                let running: Vec<(usize, String)> = e.stages[i]
                    .actions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.status == Some(ActionStatus::InProgress))
                    .filter_map(|(a, r)| r.action_execution_id.clone().map(|x| (a, x)))
                    .collect();
                for (a, attempt) in running {
                    self.set_action(id, i, a, ActionStatus::Abandoned);
                    self.effects.push(Effect::AbandonAction {
                        execution_id: id.to_owned(),
                        action_execution_id: attempt,
                    });
                }
                self.exec_mut(id).status_summary = summary;
                self.exec_mut(id).stopping = true;
                self.end_stage(id, i, StageStatus::Stopped);
            }
            Position::InStage(i) => {
                let now = self.now;
                let stage = {
                    let e = self.exec_mut(id);
                    e.stopping = true;
                    e.status = ExecutionStatus::Stopping;
                    e.status_summary = summary;
                    e.updated_ms = now;
                    e.stages[i].status = Some(StageStatus::Stopping);
                    e.plan.stages[i].name.clone()
                };
                self.effects.push(Effect::ExecutionChanged {
                    execution_id: id.to_owned(),
                    status: ExecutionStatus::Stopping,
                });
                self.effects.push(Effect::StageChanged {
                    execution_id: id.to_owned(),
                    stage,
                    status: StageStatus::Stopping,
                });
                self.drive_stage(id, i);
            }
            _ => self.end_execution(id, ExecutionStatus::Stopped, summary),
        }
        Ok(())
    }

    fn retry(&mut self, id: &str, stage: &str, mode: RetryMode) -> Result<(), EngineError> {
        let e = self
            .executions
            .get(id)
            .ok_or_else(|| EngineError::ExecutionNotFound(id.to_owned()))?;
        let i = e
            .plan
            .stage_index(stage)
            .ok_or_else(|| EngineError::StageNotFound(stage.to_owned()))?;
        if !matches!(e.status, ExecutionStatus::Failed | ExecutionStatus::Stopped) {
            return Err(EngineError::StageNotRetryable(format!(
                "pipeline execution {id} is {}; only a failed or stopped execution can be retried",
                e.status.as_str()
            )));
        }
        if e.position != Position::InStage(i)
            || !matches!(
                e.stages[i].status,
                Some(StageStatus::Failed | StageStatus::Stopped)
            )
        {
            return Err(EngineError::StageNotRetryable(format!(
                "stage {stage} did not fail or stop in pipeline execution {id}"
            )));
        }
        if e.plan.mode != Mode::Parallel {
            if let Some(other) = self.occupants.get(stage) {
                return Err(EngineError::StageNotRetryable(format!(
                    "stage {stage} is running pipeline execution {other}"
                )));
            }
            if self.meta.last_entered.get(stage).map(String::as_str) != Some(id) {
                return Err(EngineError::NotLatest(format!(
                    "pipeline execution {id} is not the latest execution of stage {stage}"
                )));
            }
        }
        let now = self.now;
        let e = self.exec_mut(id);
        reset_actions(&mut e.stages[i], mode);
        e.status = ExecutionStatus::InProgress;
        e.status_summary = None;
        e.stopping = false;
        e.updated_ms = now;
        self.effects.push(Effect::ExecutionChanged {
            execution_id: id.to_owned(),
            status: ExecutionStatus::InProgress,
        });
        self.enter_stage(id, i);
        Ok(())
    }
}

/// Marks the actions a retry runs again as not started.
fn reset_actions(stage: &mut StageRun, mode: RetryMode) {
    for run in &mut stage.actions {
        let again = match mode {
            RetryMode::AllActions => true,
            RetryMode::FailedActions => !matches!(run.status, Some(ActionStatus::Succeeded)),
        };
        if again {
            run.status = None;
        }
    }
}

/// The pipeline variables of a new execution: defaults, then the values
/// given at start.
fn start_variables(
    plan: &Plan,
    given: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut values = BTreeMap::new();
    for v in &plan.variables {
        if let Some(d) = &v.default_value {
            values.insert(v.name.clone(), d.clone());
        }
    }
    for (name, value) in given {
        if !plan.variables.iter().any(|v| v.name == name) {
            return Err(EngineError::InvalidVariables(format!(
                "the pipeline {} declares no variable {name}",
                plan.pipeline
            )));
        }
        values.insert(name, value);
    }
    if let Some(v) = plan
        .variables
        .iter()
        .find(|v| !values.contains_key(&v.name))
    {
        return Err(EngineError::InvalidVariables(format!(
            "the variable {} has no default value and was not given",
            v.name
        )));
    }
    Ok(values)
}

type Resolved = (
    BTreeMap<String, String>,
    Vec<EnvVarPlan>,
    BTreeMap<String, String>,
);

/// The configuration, environment and inputs of an action about to start.
fn resolve_action(e: &Execution, s: usize, a: usize) -> Result<Resolved, String> {
    let action = &e.plan.stages[s].actions[a];
    let mut scope: Scope = e.namespaces.clone();
    scope.insert("variables".into(), e.variables.clone());
    scope.insert(
        "codepipeline".into(),
        BTreeMap::from([
            ("PipelineExecutionId".to_owned(), e.id.clone()),
            ("PipelineName".to_owned(), e.plan.pipeline.clone()),
        ]),
    );
    let mut configuration = BTreeMap::new();
    for (k, v) in &action.configuration {
        let value = vars::resolve(v, &scope).map_err(|m| format!("configuration {k}: {m}"))?;
        configuration.insert(k.clone(), value);
    }
    let mut environment = Vec::new();
    for var in &action.environment_variables {
        let value = vars::resolve(&var.value, &scope)
            .map_err(|m| format!("environment variable {}: {m}", var.name))?;
        environment.push(EnvVarPlan {
            value,
            ..var.clone()
        });
    }
    let mut inputs = BTreeMap::new();
    for name in &action.input_artifacts {
        let reference = e
            .artifacts
            .get(name)
            .ok_or_else(|| format!("the input artifact {name} has not been produced"))?;
        inputs.insert(name.clone(), reference.clone());
    }
    Ok((configuration, environment, inputs))
}

fn job_for(e: &Execution, s: usize, a: usize) -> ActionJob {
    let stage = &e.plan.stages[s];
    let plan = &stage.actions[a];
    let run = &e.stages[s].actions[a];
    ActionJob {
        pipeline: e.plan.pipeline.clone(),
        pipeline_version: e.plan.version,
        execution_id: e.id.clone(),
        stage: stage.name.clone(),
        action: plan.name.clone(),
        action_execution_id: run.action_execution_id.clone().unwrap_or_default(),
        attempt: run.attempt,
        category: plan.category.clone(),
        owner: plan.owner.clone(),
        provider: plan.provider.clone(),
        version: plan.version.clone(),
        configuration: run.resolved_configuration.clone(),
        environment_variables: run.resolved_environment.clone(),
        input_artifacts: run.inputs.clone(),
        output_artifacts: plan.output_artifacts.clone(),
        namespace: plan.namespace.clone(),
        timeout_in_minutes: plan.timeout_in_minutes,
        commands: plan.commands.clone(),
        source_revision: if plan.category == "Source" {
            e.source_revisions.get(&plan.name).cloned()
        } else {
            None
        },
    }
}
