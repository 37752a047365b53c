//! The embedded local agent: runs builds inside the server process through
//! `gantry-build`, at most `max_concurrent_builds` at once.
//!
//! Each build is one task: wait for a slot (QUEUED), fetch the source, read
//! the buildspec, run it. Its events go through a channel to a writer task
//! that appends log lines to the store in batches and records each phase as
//! it starts and ends, so the database always shows where a build is. The
//! final state is written after the writer has caught up, so a finished
//! build's log is complete.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gantry_build::{
    BuildEvent, BuildOptions, BuildResult, Observer, StopHandle, StopReason, StopSignal,
};
use gantry_store::{BuildRecord, BuildUpdate, Store, StoreError, now_ms};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::codebuild::{SourceKind, timestamp_ms};
use crate::config::Config;
use crate::eventbridge::EventBus;
use crate::{files, source};

/// How long shutdown waits for stopped builds to record their end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Where the buildspec comes from.
#[derive(Debug, Clone)]
pub(crate) enum BuildspecRef {
    /// The YAML itself (project or `buildspecOverride`).
    Inline(String),
    /// A path inside the source.
    File(String),
}

/// Everything a build needs, decided by StartBuild.
#[derive(Debug)]
pub(crate) struct BuildJob {
    pub record: BuildRecord,
    pub uuid: String,
    pub buildspec: BuildspecRef,
    pub source: SourceKind,
    pub source_version: Option<String>,
    pub env: Vec<(String, String)>,
    pub image: String,
    pub timeout_minutes: u64,
    pub initiator: String,
    pub wants_artifacts: bool,
    /// A directory already holding the source (a pipeline action's input
    /// artifact), moved into place instead of fetching.
    pub prepared_source: Option<std::path::PathBuf>,
    /// The labels the project's `gantry:agent-labels` tag asks for; a build
    /// with any runs on a remote agent that has them all.
    pub agent_labels: Vec<String>,
}

/// One entry of a Build's `phases`.
pub(crate) fn phase_json(
    phase: &str,
    status: Option<&str>,
    start_ms: i64,
    end_ms: Option<i64>,
    contexts: &[(&str, &str)],
) -> Value {
    let mut p = json!({ "phaseType": phase, "startTime": timestamp_ms(start_ms) });
    if let Some(s) = status {
        p["phaseStatus"] = json!(s);
    }
    if let Some(end) = end_ms {
        p["endTime"] = timestamp_ms(end);
        p["durationInSeconds"] = json!((end - start_ms).max(0) / 1000);
    }
    if !contexts.is_empty() {
        p["contexts"] = contexts
            .iter()
            .map(|(code, message)| json!({ "statusCode": code, "message": message }))
            .collect();
    }
    p
}

/// Runs builds; one per [`BuildRunner::submit`].
pub(crate) struct BuildRunner<S: Store> {
    pub(crate) store: Arc<S>,
    pub(crate) config: Arc<Config>,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<String, StopHandle>>,
    tasks: Mutex<JoinSet<()>>,
    /// Who waits for which build to end (the pipeline host's actions).
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Set by [`BuildRunner::shutdown`]: builds stopped from now on were
    /// interrupted by the server, not by a user.
    shutting_down: std::sync::atomic::AtomicBool,
    /// The same, for tasks that wait on it (remote builds).
    closed: watch::Sender<bool>,
    events: Arc<EventBus<S>>,
    /// Bumped after any build's lines are stored or its end recorded, so
    /// live log readers wake instead of polling (see `rest::logs`).
    log_written: Arc<watch::Sender<u64>>,
    /// Remote agents' jobs and long polls.
    pub hub: Arc<crate::agents::AgentHub>,
    /// The artifact store, where finished logs go (see `build_logs`).
    pub(crate) objects: gantry_artifacts::ArtifactStore,
    /// Moves ended builds' logs there, in batches.
    archiver: crate::build_logs::Archiver,
}

/// The phase context of a build the server's shutdown stopped.
pub(crate) const SERVER_SHUTDOWN: &str = "SERVER_SHUTDOWN";

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Store> BuildRunner<S> {
    pub fn new(
        store: Arc<S>,
        config: Arc<Config>,
        events: Arc<EventBus<S>>,
        hub: Arc<crate::agents::AgentHub>,
        objects: gantry_artifacts::ArtifactStore,
    ) -> BuildRunner<S> {
        BuildRunner {
            hub,
            archiver: crate::build_logs::Archiver::start(store.clone(), objects.clone()),
            objects,
            slots: Arc::new(Semaphore::new(config.max_concurrent_builds.max(1))),
            store,
            config,
            running: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            waiters: Mutex::new(HashMap::new()),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            closed: watch::Sender::new(false),
            events,
            log_written: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Becomes true when [`BuildRunner::shutdown`] begins.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Changes when any build's log grows or a build's end is recorded.
    pub fn log_changes(&self) -> watch::Receiver<u64> {
        self.log_written.subscribe()
    }

    /// Tells live log readers that a build's log grew, for lines stored
    /// without the build's writer (an agent's log chunk).
    pub(crate) fn log_grew(&self) {
        self.log_written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts a build's task. The build is already in the store.
    pub fn submit(self: &Arc<Self>, job: BuildJob) {
        self.spawn(job, false);
    }

    /// Waits again for a remote agent's build whose job is already queued
    /// or leased: this server took the build over from a server that died
    /// (or from its own previous life), so it finishes the build when the
    /// job ends.
    pub fn reattach(self: &Arc<Self>, job: BuildJob) {
        self.spawn(job, true);
    }

    fn spawn(self: &Arc<Self>, job: BuildJob, reattached: bool) {
        let (handle, signal) = StopHandle::new();
        locked(&self.running).insert(job.record.id.clone(), handle);
        let mut tasks = locked(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(run_job(self.clone(), job, signal, reattached));
    }

    /// A log writer for a build this server does not wait for: a remote
    /// agent sends its log here while another server owns the build.
    pub fn log_writer(&self, record: BuildRecord) -> mpsc::UnboundedSender<Msg> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(progress_writer(
            self.store.clone(),
            record,
            rx,
            self.events.clone(),
            self.log_written.clone(),
            self.closed(),
        ));
        tx
    }

    /// Resolves when the build `id` has recorded its end. Register before
    /// reading the build's state: a build that already ended, or that does
    /// not run here, never resolves it.
    pub fn wait_for_end(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        locked(&self.waiters)
            .entry(id.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// Whether the server is shutting down (a stopped build's end then
    /// says so: [`mark_shutdown`]).
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks a build to stop; false when it is not running here.
    pub fn stop(&self, id: &str) -> bool {
        match locked(&self.running).get(id) {
            Some(handle) => {
                handle.stop(StopReason::Requested);
                true
            }
            None => false,
        }
    }

    /// Stops every build and waits (a bounded time) for each to record its
    /// end. A build that does not finish in time stays IN_PROGRESS and is
    /// marked FAILED by the next start.
    pub async fn shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.closed.send_replace(true);
        for handle in locked(&self.running).values() {
            handle.stop(StopReason::Requested);
        }
        let mut tasks = std::mem::take(&mut *locked(&self.tasks));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("builds did not stop in time; they are marked FAILED on the next start");
        }
        // The ended builds' logs still queued; what does not move in time
        // stays in the database for the next start's sweep.
        self.archiver.finish(SHUTDOWN_GRACE).await;
    }
}

async fn run_job<S: Store>(
    runner: Arc<BuildRunner<S>>,
    job: BuildJob,
    signal: StopSignal,
    reattached: bool,
) {
    let id = job.record.id.clone();
    let events = &runner.events;
    if !reattached {
        events
            .build_state_change(&job.record, "IN_PROGRESS", &job.record.build)
            .await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(progress_writer(
        runner.store.clone(),
        job.record.clone(),
        rx,
        events.clone(),
        runner.log_written.clone(),
        runner.closed(),
    ));
    let Some(BuildEnd {
        mut update,
        recorded,
    }) = execute(&runner, &job, signal, &tx, reattached).await
    else {
        // The build goes on without this server (a remote agent runs it;
        // the server is shutting down): its next owner finishes it.
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.await;
        }
        drop(tx);
        writer.abort();
        locked(&runner.running).remove(&id);
        return;
    };
    // (An end recorded already was written while the server still ran.)
    if !recorded && update.status == "STOPPED" && runner.shutting_down() {
        mark_shutdown(&mut update.build);
    }
    let (ack, done) = oneshot::channel();
    if tx.send(Msg::Flush(ack)).is_ok() {
        let _ = done.await;
    }
    drop(tx);
    writer.abort();
    if recorded || record_end(&runner, &id, &update).await {
        runner.archiver.ended(&id);
    }
    runner.log_written.send_modify(|n| *n = n.wrapping_add(1));
    events
        .build_state_change(&job.record, &update.status, &update.build)
        .await;
    locked(&runner.running).remove(&id);
    for waiter in locked(&runner.waiters).remove(&id).unwrap_or_default() {
        let _ = waiter.send(());
    }
}

/// The first wait before a write the store refused is tried again, and the
/// longest (a build's end, its log lines, its job for an agent).
const STORE_RETRY_FIRST: Duration = Duration::from_millis(50);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);

/// How long a build's log lines, or its job for an agent, are tried again
/// while the store refuses them before giving up: longer than a database
/// restart, short enough that a write the store can never take (a bug)
/// holds its build up only so long.
pub(crate) const STORE_RETRY_FOR: Duration = Duration::from_secs(120);

/// Runs `write` (given the number of tries before it) until it succeeds,
/// trying again with backoff while the store refuses it (a database
/// restarting, a dropped connection): for up to `limit` (`None`: for as
/// long as the server runs). A conflict or a missing row is final (trying
/// again cannot change it), and so is the server shutting down (`closed`
/// true, or its sender gone). The last error is returned.
pub(crate) async fn retry_store<T, Fut>(
    closed: &mut watch::Receiver<bool>,
    limit: Option<Duration>,
    what: &str,
    mut write: impl FnMut(u32) -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut wait = STORE_RETRY_FIRST;
    let mut tries = 0;
    loop {
        let e = match write(tries).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let final_error = matches!(e, StoreError::Conflict(_) | StoreError::NotFound);
        let too_long = limit.is_some_and(|limit| started.elapsed() >= limit);
        if final_error || too_long || *closed.borrow() {
            return Err(e);
        }
        tracing::warn!(error = %e, retry_in = ?wait, "{what} failed; trying again");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = closed.changed() => if changed.is_err() {
                return Err(e);
            }
        }
        tries += 1;
        wait = (wait * 2).min(STORE_RETRY_MAX);
    }
}

/// Records the build's end; `false` when it was not recorded. A refusing
/// store is tried again for as long as the server runs: an end not
/// recorded would leave the build IN_PROGRESS until a server next starts.
/// The update sets the same values each time, so a try that committed but
/// whose answer was lost is harmless to repeat. A conflict (another server
/// took the build over) or a missing build is final; so is the server
/// shutting down (the build's next owner ends it).
async fn record_end<S: Store>(runner: &BuildRunner<S>, id: &str, update: &BuildUpdate) -> bool {
    let what = format!("recording the end of build {id}");
    let store = runner.store.as_ref();
    let written = retry_store(&mut runner.closed(), None, &what, |_| {
        store.update_build(id, update, "system")
    })
    .await;
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(build = %id, error = %e, "recording the end of a build failed");
            false
        }
    }
}

/// Adds the SERVER_SHUTDOWN context to the last phase before COMPLETED.
fn mark_shutdown(build: &mut Value) {
    let Some(phases) = build.get_mut("phases").and_then(Value::as_array_mut) else {
        return;
    };
    let Some(last) = phases
        .iter_mut()
        .rev()
        .find(|p| p.get("phaseType").and_then(Value::as_str) != Some("COMPLETED"))
    else {
        return;
    };
    let context = json!({
        "statusCode": SERVER_SHUTDOWN,
        "message": "The server shut down while the build ran.",
    });
    match last.get_mut("contexts").and_then(Value::as_array_mut) {
        Some(list) => list.push(context),
        None => last["contexts"] = json!([context]),
    }
}

pub(crate) enum Msg {
    Line(String),
    /// A line nobody needs to read at once (a remote build's "Agent ...
    /// took the build"): it waits up to [`ASIDE_LINGER`] for something to
    /// be written with — most often the agent's first log chunk or its
    /// result, which takes it ([`Msg::Take`]) — instead of costing a
    /// commit of its own.
    Aside(String),
    Event(BuildEvent),
    /// A phase event from the build's last message (an agent's result):
    /// told to EventBridge like any other, but not written as progress —
    /// the build's end, written next, carries every phase.
    FinalEvent(BuildEvent),
    Flush(oneshot::Sender<()>),
    /// Like a flush, but the lines waiting to be written are handed to the
    /// sender, who writes them first in a transaction of its own (an
    /// agent's log chunk: the server's line "Agent ... took the build" and
    /// the chunk's in one commit, not two; a job queued for an agent: the
    /// source's lines and "Waiting for an agent" with the job). When
    /// the writer also has progress to record, it writes everything itself
    /// as a flush does and hands over nothing.
    Take(oneshot::Sender<Vec<String>>),
    /// Lines handed out by `Take` whose write failed: they are written
    /// before any line that came since.
    Restore(Vec<String>),
}

struct ChannelObserver(mpsc::UnboundedSender<Msg>);

impl Observer for ChannelObserver {
    fn on_event(&self, _task: Option<&str>, event: &BuildEvent) {
        let msg = match event {
            BuildEvent::Line(line) => Msg::Line(line.clone()),
            other => Msg::Event(other.clone()),
        };
        let _ = self.0.send(msg);
    }
}

/// A FAILED (or STOPPED) end without a runner result: the phases so far,
/// then `phase` with its context, then COMPLETED.
pub(crate) fn ended_early(
    job: &BuildJob,
    phases: Vec<Value>,
    status: &str,
    phase: &str,
    phase_start: i64,
    context: (&str, &str),
) -> BuildUpdate {
    ended_early_for(&job.record, phases, status, phase, phase_start, context)
}

/// [`ended_early`], given the build's record only.
pub(crate) fn ended_early_for(
    record: &BuildRecord,
    mut phases: Vec<Value>,
    status: &str,
    phase: &str,
    phase_start: i64,
    context: (&str, &str),
) -> BuildUpdate {
    let now = now_ms();
    phases.push(phase_json(
        phase,
        Some(status),
        phase_start,
        Some(now),
        &[context],
    ));
    phases.push(phase_json("COMPLETED", None, now, None, &[]));
    let mut build = record.build.clone();
    build["phases"] = json!(phases);
    BuildUpdate {
        status: status.into(),
        current_phase: "COMPLETED".into(),
        build,
        end_ms: Some(now),
    }
}

async fn execute<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    signal: StopSignal,
    tx: &mpsc::UnboundedSender<Msg>,
    reattached: bool,
) -> Option<BuildEnd> {
    let start = job.record.start_ms;
    let submitted = phase_json("SUBMITTED", Some("SUCCEEDED"), start, Some(start), &[]);
    if reattached || crate::agents::remote::wanted(runner.config.local_agent, job) {
        return crate::agents::remote::execute(runner, job, signal, tx, submitted, reattached)
            .await;
    }
    Some(
        execute_locally(runner, job, signal, tx, submitted)
            .await
            .into(),
    )
}

/// How a build's task ended: the build's final state, and whether it is in
/// the store already.
pub(crate) struct BuildEnd {
    pub update: BuildUpdate,
    /// True when the server that took the agent's result wrote the end in
    /// the transaction that ended the agent's job; the task still flushes
    /// the log and tells whoever waits.
    pub recorded: bool,
}

impl From<BuildUpdate> for BuildEnd {
    fn from(update: BuildUpdate) -> BuildEnd {
        BuildEnd {
            update,
            recorded: false,
        }
    }
}

/// A build on the embedded agent, in this process.
async fn execute_locally<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    mut signal: StopSignal,
    tx: &mpsc::UnboundedSender<Msg>,
    submitted: Value,
) -> BuildUpdate {
    let start = job.record.start_ms;
    let permit = tokio::select! {
        biased;
        _ = signal.stopped() => None,
        permit = runner.slots.clone().acquire_owned() => permit.ok(),
    };
    let Some(_permit) = permit else {
        return ended_early(
            job,
            vec![submitted],
            "STOPPED",
            "QUEUED",
            start,
            (
                "BUILD_STOPPED",
                "The build was stopped while it was queued.",
            ),
        );
    };
    let queued_end = now_ms();
    let before = vec![
        submitted,
        phase_json("QUEUED", Some("SUCCEEDED"), start, Some(queued_end), &[]),
    ];

    let work_root = runner.config.data_dir.join(files::WORK);
    let work = match std::fs::create_dir_all(&work_root).and_then(|()| {
        tempfile::Builder::new()
            .prefix(&job.uuid)
            .tempdir_in(&work_root)
    }) {
        Ok(w) => w,
        Err(e) => {
            let message = format!("creating the build's work directory: {e}");
            return ended_early(
                job,
                before,
                "FAILED",
                "PROVISIONING",
                queued_end,
                ("CLIENT_ERROR", &message),
            );
        }
    };
    let src = work.path().join("src");
    let log_tx = tx.clone();
    let log = move |line: String| {
        let _ = log_tx.send(Msg::Line(line));
    };
    let prepared = match &job.prepared_source {
        Some(dir) => std::fs::rename(dir, &src).map_err(|e| {
            format!(
                "moving the pipeline's input artifact {} into place: {e}",
                dir.display()
            )
        }),
        None => source::prepare(&job.source, job.source_version.as_deref(), &src, &log).await,
    };
    if let Err(message) = prepared {
        log(format!("[Container] {message}"));
        return ended_early(
            job,
            before,
            "FAILED",
            "DOWNLOAD_SOURCE",
            queued_end,
            ("CLIENT_ERROR", &message),
        );
    }
    let text = match &job.buildspec {
        BuildspecRef::Inline(text) => text.clone(),
        BuildspecRef::File(path) => match read_in(&src, path) {
            Ok(text) => text,
            Err(message) => {
                log(format!("[Container] {message}"));
                return ended_early(
                    job,
                    before,
                    "FAILED",
                    "DOWNLOAD_SOURCE",
                    queued_end,
                    ("YAML_FILE_ERROR", &message),
                );
            }
        },
    };
    let spec = match gantry_spec::buildspec::parse(&text) {
        Ok(spec) => spec,
        Err(diags) => {
            let message: Vec<String> = diags.iter().map(|d| d.render("buildspec")).collect();
            let message = format!("Invalid buildspec: {}", message.join("; "));
            log(format!("[Container] {message}"));
            return ended_early(
                job,
                before,
                "FAILED",
                "DOWNLOAD_SOURCE",
                queued_end,
                ("YAML_FILE_ERROR", &message),
            );
        }
    };
    if signal.is_stopped() {
        return ended_early(
            job,
            before,
            "STOPPED",
            "DOWNLOAD_SOURCE",
            queued_end,
            ("BUILD_STOPPED", "The build was stopped."),
        );
    }

    let (executor, image) = crate::codebuild::executor_for(&job.image);
    let mut options = BuildOptions::new(&src, executor);
    options.image = image;
    options.env = job.env.clone();
    options.timeout = Duration::from_secs(job.timeout_minutes * 60);
    options.project_name = job.record.project.clone();
    options.build_id = Some(job.record.id.clone());
    options.build_arn = Some(crate::codebuild::arn(
        &runner.config,
        "build",
        &job.record.id,
    ));
    options.build_number = job.record.number;
    options.initiator = job.initiator.clone();
    if job.wants_artifacts {
        options.artifacts_dir = Some(
            runner
                .config
                .data_dir
                .join(files::ARTIFACTS)
                .join(&job.uuid),
        );
    }
    let observer: Arc<dyn Observer> = Arc::new(ChannelObserver(tx.clone()));
    let build = gantry_build::run_build(&spec, &options, observer, signal);
    tokio::pin!(build);
    // A server paused past its heartbeat's time to live (or cut off from
    // the database) loses its builds to another server, which fails those
    // of this embedded agent as interrupted: their processes must not go on
    // running here. (The store refuses this server's late update anyway.)
    let running_since = tokio::time::Instant::now();
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut build => break outcome,
            () = tokio::time::sleep(crate::agents::remote::OWNER_CHECK), if !stopping => {
                if crate::agents::remote::lost_to_another_server(runner, &job.record.id, running_since).await {
                    tracing::warn!(build = %job.record.id,
                        "another server took this build over; stopping its processes here");
                    runner.stop(&job.record.id);
                    stopping = true;
                }
            }
        }
    };
    match outcome {
        Ok(result) => {
            let mut update = finished(job, before, &result);
            // Into the artifact store, where any server finds them.
            if let Some(dir) = &options.artifacts_dir {
                crate::build_artifacts::keep_or_fail(&runner.objects, &mut update, dir).await;
            }
            update
        }
        Err(e) => {
            let message = e.to_string();
            log(format!("[Container] {message}"));
            ended_early(
                job,
                before,
                "FAILED",
                "PROVISIONING",
                queued_end,
                ("CLIENT_ERROR", &message),
            )
        }
    }
}

/// Reads a buildspec file inside the source; no absolute paths or `..`.
pub(crate) fn read_in(src: &Path, path: &str) -> Result<String, String> {
    let rel = Path::new(path);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "the buildspec path {path} must stay inside the source"
        ));
    }
    std::fs::read_to_string(src.join(rel))
        .map_err(|e| format!("YAML_FILE_ERROR: cannot read the buildspec {path}: {e}"))
}

/// The final state from the runner's result: our SUBMITTED and QUEUED,
/// then the runner's phases from PROVISIONING on.
fn finished(job: &BuildJob, before: Vec<Value>, result: &BuildResult) -> BuildUpdate {
    let value = serde_json::to_value(result).unwrap_or_else(|_| json!({}));
    finished_value(&job.record, before, &value)
}

/// [`finished`] from the result's JSON (a remote agent sends it so); a
/// status or phase that is not CodeBuild's counts as FAILED / COMPLETED.
pub(crate) fn finished_value(
    record: &BuildRecord,
    before: Vec<Value>,
    value: &Value,
) -> BuildUpdate {
    let status = value
        .get("buildStatus")
        .and_then(Value::as_str)
        .filter(|s| ["SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "STOPPED"].contains(s))
        .unwrap_or("FAILED");
    let current_phase = value
        .get("currentPhase")
        .and_then(Value::as_str)
        .filter(|p| gantry_agent::protocol::phase_type(p).is_ok())
        .unwrap_or("COMPLETED");
    let mut build = record.build.clone();
    let mut phases = before;
    if let Some(list) = value.get("phases").and_then(Value::as_array) {
        phases.extend(
            list.iter()
                .filter(|p| {
                    !matches!(
                        p.get("phaseType").and_then(Value::as_str),
                        Some("SUBMITTED" | "QUEUED")
                    )
                })
                .cloned(),
        );
    }
    build["phases"] = json!(phases);
    for member in [
        "exportedEnvironmentVariables",
        "resolvedSourceVersion",
        "artifacts",
        "secondaryArtifacts",
    ] {
        if let Some(v) = value.get(member) {
            build[member] = v.clone();
        }
    }
    BuildUpdate {
        status: status.into(),
        current_phase: current_phase.into(),
        build,
        end_ms: Some(now_ms()),
    }
}

/// Most messages one write of the progress writer takes in.
const MAX_BATCH: usize = 1000;

/// How long the progress writer waits for more after the first message of
/// a batch, unless someone waits for the write (a flush): lines that come
/// milliseconds apart share a commit. Live logs show lines this much later
/// at most (lines aside, [`ASIDE_LINGER`]).
const LINGER: Duration = Duration::from_millis(20);

/// How long a [`Msg::Aside`] line may wait for company: a remote build's
/// agent nearly always sends its log within this, and a longer build shows
/// it this late at most.
const ASIDE_LINGER: Duration = Duration::from_secs(1);

/// Writes log lines and phase changes as they come, what arrived together
/// in one write each.
async fn progress_writer<S: Store>(
    store: Arc<S>,
    record: BuildRecord,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    events: Arc<EventBus<S>>,
    written: Arc<watch::Sender<u64>>,
    mut closed: watch::Receiver<bool>,
) {
    let mut build = record.build.clone();
    let mut lines: Vec<String> = Vec::new();
    // Whatever has arrived is written together: its lines in one commit,
    // the phases it moved through in one more. A build's log and phases
    // come one at a time while it runs, so this changes nothing for a long
    // build; a short one (or an agent's chunk with a whole build in it)
    // costs two commits instead of two per phase.
    while let Some(first) = rx.recv().await {
        let mut flushing = matches!(first, Msg::Flush(_) | Msg::Take(_));
        let aside = matches!(first, Msg::Aside(_));
        let mut until = tokio::time::Instant::now() + if aside { ASIDE_LINGER } else { LINGER };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && !flushing {
            let more = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            match more {
                Some(msg) => {
                    flushing = matches!(msg, Msg::Flush(_) | Msg::Take(_));
                    if !matches!(msg, Msg::Aside(_)) {
                        // Anything else is shown as promptly as ever.
                        until = until.min(tokio::time::Instant::now() + LINGER);
                    }
                    batch.push(msg);
                }
                None => break,
            }
        }
        let mut current = None;
        let mut ended = Vec::new();
        let mut acks = Vec::new();
        let mut takers = Vec::new();
        for msg in batch {
            let (event, progress) = match msg {
                Msg::Line(line) | Msg::Aside(line) => {
                    lines.push(line);
                    continue;
                }
                Msg::Flush(ack) => {
                    acks.push(ack);
                    continue;
                }
                Msg::Take(taker) => {
                    takers.push(taker);
                    continue;
                }
                Msg::Restore(back) => {
                    lines.splice(0..0, back);
                    continue;
                }
                Msg::Event(event) => (event, true),
                Msg::FinalEvent(event) => (event, false),
            };
            if let Some(phase) = apply(&mut build, &event) {
                if progress {
                    current = Some(phase);
                }
                // The build as it was is kept for the phase's event only
                // when anyone listens for events.
                if let BuildEvent::PhaseFinished { phase, .. } = &event
                    && events.listens_on("default")
                    && let Some(entry) = ended_phase(&build, phase.as_str())
                {
                    ended.push((entry, build.clone()));
                }
            }
        }
        // A taker ends the batch, so the lines are all that came before it.
        // With progress to record they are written here, and the taker is
        // answered (with nothing) only once they are, like a flush.
        if current.is_none() {
            for taker in std::mem::take(&mut takers) {
                if let Err(back) = taker.send(std::mem::take(&mut lines)) {
                    // Nobody to write them: they are written here after all.
                    lines.splice(0..0, back);
                }
            }
        }
        flush(
            store.as_ref(),
            &record.id,
            &mut lines,
            &written,
            &mut closed,
        )
        .await;
        if let Some(current) = current {
            let update = BuildUpdate {
                status: "IN_PROGRESS".into(),
                current_phase: current,
                build: build.clone(),
                end_ms: None,
            };
            if let Err(e) = store.update_build(&record.id, &update, "system").await {
                tracing::error!(build = %record.id, error = %e, "recording a phase failed");
            }
        }
        // Told in order, each with the build as it was when its phase ended.
        for (entry, then) in ended {
            events.build_phase_change(&record, &then, &entry).await;
        }
        for ack in acks {
            let _ = ack.send(());
        }
        for taker in takers {
            let _ = taker.send(Vec::new());
        }
    }
    flush(
        store.as_ref(),
        &record.id,
        &mut lines,
        &written,
        &mut closed,
    )
    .await;
}

/// Appends the lines, trying again (with backoff) while the store refuses
/// them, for up to [`STORE_RETRY_FOR`] and while the server runs: before,
/// one failed write (a PostgreSQL restart) lost the batch. The build's end
/// waits for this (it flushes first), so its log is whole when it ends.
async fn flush<S: Store>(
    store: &S,
    id: &str,
    lines: &mut Vec<String>,
    written: &watch::Sender<u64>,
    closed: &mut watch::Receiver<bool>,
) {
    if lines.is_empty() {
        return;
    }
    let what = format!("appending log lines of build {id}");
    let batch: &[String] = lines;
    let appended = retry_store(closed, Some(STORE_RETRY_FOR), &what, |_| {
        store.append_log_lines(id, batch)
    })
    .await;
    if let Err(e) = appended {
        tracing::error!(build = %id, error = %e, lines = lines.len(),
            "appending log lines failed; they are dropped");
    }
    lines.clear();
    written.send_modify(|n| *n = n.wrapping_add(1));
}

/// The newest `phases` entry of `name`, once it has ended.
fn ended_phase(build: &Value, name: &str) -> Option<Value> {
    let phases = build.get("phases")?.as_array()?;
    phases
        .iter()
        .rev()
        .find(|p| p.get("phaseType").and_then(Value::as_str) == Some(name))
        .filter(|p| p.get("endTime").is_some())
        .cloned()
}

/// Applies a phase event to the live JSON; returns the new current phase.
fn apply(build: &mut Value, event: &BuildEvent) -> Option<String> {
    let now = now_ms();
    let phases = build.get_mut("phases")?.as_array_mut()?;
    // QUEUED ends when the first runner phase begins.
    for p in phases.iter_mut() {
        if p.get("phaseType").and_then(Value::as_str) == Some("QUEUED")
            && p.get("endTime").is_none()
        {
            p["phaseStatus"] = json!("SUCCEEDED");
            p["endTime"] = timestamp_ms(now);
        }
    }
    match event {
        BuildEvent::PhaseStarted(phase) => {
            phases.push(phase_json(phase.as_str(), None, now, None, &[]));
            Some(phase.as_str().to_owned())
        }
        BuildEvent::PhaseFinished {
            phase,
            status,
            duration,
        } => {
            let name = phase.as_str();
            let open = phases.iter_mut().rev().find(|p| {
                p.get("phaseType").and_then(Value::as_str) == Some(name)
                    && p.get("endTime").is_none()
            });
            let entry = match open {
                Some(p) => p,
                None => {
                    let started = now - duration.as_millis() as i64;
                    phases.push(phase_json(name, None, started, None, &[]));
                    phases.last_mut()?
                }
            };
            entry["phaseStatus"] = json!(status.as_str());
            entry["endTime"] = timestamp_ms(now);
            entry["durationInSeconds"] = json!(duration.as_secs());
            Some(name.to_owned())
        }
        BuildEvent::Line(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::BuildStore;

    /// Live log readers wait on the counter; a write that did not bump it
    /// would leave them asleep until their fallback poll.
    #[tokio::test]
    async fn storing_lines_wakes_log_readers_and_nothing_else_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = gantry_store::MasterKey::load_or_create(&dir.path().join("k")).expect("key");
        let store = gantry_store::SqliteStore::open(&dir.path().join("db"), key)
            .await
            .expect("store");
        let written = watch::Sender::new(0u64);
        let mut reader = written.subscribe();
        let open = watch::Sender::new(false);
        let mut closed = open.subscribe();
        let mut none = Vec::new();
        flush(&store, "p:1", &mut none, &written, &mut closed).await;
        assert!(!reader.has_changed().expect("open"), "nothing was written");
        let mut lines = vec!["one".to_owned(), "two".to_owned()];
        flush(&store, "p:1", &mut lines, &written, &mut closed).await;
        assert!(reader.has_changed().expect("open"));
        assert!(lines.is_empty());
        reader.borrow_and_update();
        let stored = store.log_lines("p:1", 0, 10).await.expect("lines");
        assert_eq!(stored.len(), 2, "the lines are stored before the wake");
    }

    /// `Take` hands over the lines that came before it and writes none of
    /// them; lines given back with `Restore` are written before the ones
    /// that came since; with progress to record, the writer writes
    /// everything itself and hands over nothing.
    #[tokio::test]
    async fn taken_lines_are_handed_over_once_and_restored_ones_keep_their_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = gantry_store::MasterKey::load_or_create(&dir.path().join("k")).expect("key");
        let store = Arc::new(
            gantry_store::SqliteStore::open(&dir.path().join("db"), key)
                .await
                .expect("store"),
        );
        let record = BuildRecord {
            id: "p:1".into(),
            project: "p".into(),
            number: 1,
            status: "IN_PROGRESS".into(),
            current_phase: "QUEUED".into(),
            build: json!({ "phases": [] }),
            overrides: json!({}),
            start_ms: 1,
            end_ms: None,
        };
        let config = Arc::new(Config::new(dir.path()));
        let events = Arc::new(EventBus::new(store.clone(), config, reqwest::Client::new()));
        let open = watch::Sender::new(false);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(progress_writer(
            store.clone(),
            record,
            rx,
            events,
            Arc::new(watch::Sender::new(0)),
            open.subscribe(),
        ));
        let take = || async {
            let (taker, taken) = oneshot::channel();
            tx.send(Msg::Take(taker)).expect("writer");
            taken.await.expect("an answer")
        };
        let stored = || async {
            store
                .log_lines("p:1", 0, 100)
                .await
                .expect("lines")
                .into_iter()
                .map(|l| l.text)
                .collect::<Vec<_>>()
        };

        tx.send(Msg::Line("waiting".into())).expect("writer");
        tx.send(Msg::Line("took".into())).expect("writer");
        assert_eq!(take().await, ["waiting", "took"]);
        assert!(stored().await.is_empty(), "taken lines are not written");

        // The taker's write failed: back they go, ahead of a later line.
        tx.send(Msg::Line("later".into())).expect("writer");
        tx.send(Msg::Restore(vec!["waiting".into(), "took".into()]))
            .expect("writer");
        let (ack, flushed) = oneshot::channel();
        tx.send(Msg::Flush(ack)).expect("writer");
        flushed.await.expect("flushed");
        assert_eq!(stored().await, ["waiting", "took", "later"]);

        // Progress to record: the writer writes the lines itself.
        tx.send(Msg::Line("entering".into())).expect("writer");
        tx.send(Msg::Event(BuildEvent::PhaseStarted(
            gantry_build::PhaseType::Build,
        )))
        .expect("writer");
        assert!(take().await.is_empty());
        assert_eq!(stored().await, ["waiting", "took", "later", "entering"]);

        // Lines aside wait for company well past the usual linger, and go
        // with the next taker; a line that is not aside ends the wait.
        tx.send(Msg::Aside("queued".into())).expect("writer");
        tokio::time::sleep(LINGER * 5).await;
        assert_eq!(stored().await.len(), 4, "not written alone yet");
        assert_eq!(take().await, ["queued"]);
        tx.send(Msg::Aside("queued again".into())).expect("writer");
        tx.send(Msg::Line("shown soon".into())).expect("writer");
        tokio::time::sleep(LINGER * 10).await;
        assert_eq!(stored().await[4..], ["queued again", "shown soon"]);
        // Alone, one is written once its wait is over.
        tx.send(Msg::Aside("nobody came".into())).expect("writer");
        tokio::time::sleep(ASIDE_LINGER + LINGER * 10).await;
        assert_eq!(stored().await[6..], ["nobody came"]);
        drop(tx);
        writer.await.expect("the writer ends");
    }
}
