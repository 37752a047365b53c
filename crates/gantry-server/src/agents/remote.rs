//! A build run by a remote agent, seen from the build's task: the source is
//! prepared and packed here, the build queued as a job, and the task then
//! waits — for the lease, the agent's log chunks (fed to the same writer
//! the local agent uses), a stop, a lost lease, or the result.

use std::sync::Arc;
use std::time::Duration;

use gantry_agent::protocol::{BuildPayload, JobResult};
use gantry_build::StopSignal;
use gantry_store::{
    AgentJobRecord, BuildRecord, BuildUpdate, NewAgentJob, Store, job_status, now_ms,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::checks::JobCheck;
use super::{Ending, LiveJob, MAX_ATTEMPTS};
use crate::worker::{
    BuildEnd, BuildJob, BuildRunner, BuildspecRef, Msg, ended_early, ended_early_for,
    finished_value, phase_json,
};
use crate::{files, source};

/// Whether `job` goes to the queue: always without the local agent, and
/// when its project asks for labels (the local agent has none).
pub(crate) fn wanted(local_agent: bool, job: &BuildJob) -> bool {
    !local_agent || !job.agent_labels.is_empty()
}

/// The job's required labels: the project's, plus the executor its image needs.
fn job_labels(job: &BuildJob) -> Vec<String> {
    let (kind, _) = crate::codebuild::executor_for(&job.image);
    let mut labels = job.agent_labels.clone();
    labels.push(format!("executor:{}", kind.as_str()));
    labels.sort();
    labels.dedup();
    labels
}

/// Detaches the job from the hub however the build's task ends.
struct Attached<'a>(&'a super::AgentHub, String);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0.detach(&self.1);
    }
}

pub(crate) async fn execute<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    signal: StopSignal,
    tx: &mpsc::UnboundedSender<Msg>,
    submitted: Value,
    reattached: bool,
) -> Option<BuildEnd> {
    let job_id = format!("job-{}", job.uuid);
    if reattached {
        return wait(runner, job, signal, tx, submitted, job_id, Queued::Before).await;
    }
    let update = prepare_and_queue(runner, job, tx, submitted.clone(), &job_id).await;
    match update {
        Err(ended) => Some(ended.into()),
        Ok(()) => wait(runner, job, signal, tx, submitted, job_id, Queued::Now).await,
    }
}

/// Packs the source where agents fetch it and queues the job; `Err` is
/// the build's end when that fails.
async fn prepare_and_queue<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    tx: &mpsc::UnboundedSender<Msg>,
    submitted: Value,
    job_id: &str,
) -> Result<(), BuildUpdate> {
    let start = job.record.start_ms;
    let log = |line: String| {
        let _ = tx.send(Msg::Line(line));
    };
    let queued_so_far = |contexts: &[(String, String)], end: i64| {
        let ctx: Vec<(&str, &str)> = contexts
            .iter()
            .map(|(c, m)| (c.as_str(), m.as_str()))
            .collect();
        vec![
            submitted.clone(),
            phase_json("QUEUED", Some("SUCCEEDED"), start, Some(end), &ctx),
        ]
    };

    // A build without a source (NO_SOURCE, inline buildspec) ships none:
    // the agent starts from an empty directory, and nothing is made, packed
    // or stored here for it.
    let no_source =
        matches!(job.source, crate::codebuild::SourceKind::None) && job.prepared_source.is_none();
    let prepared = if no_source {
        match &job.buildspec {
            BuildspecRef::Inline(text) => Ok((text.clone(), None)),
            BuildspecRef::File(path) => Err((
                "YAML_FILE_ERROR",
                format!("the buildspec file {path} cannot be in a build without a source"),
            )),
        }
    } else {
        pack_source(runner, job, &log).await
    };
    let fail_source = |code: &str, message: &str| {
        log(format!("[Container] {message}"));
        ended_early(
            job,
            queued_so_far(&[], now_ms()),
            "FAILED",
            "DOWNLOAD_SOURCE",
            now_ms(),
            (code, message),
        )
    };
    let (buildspec, source_ref) = match prepared {
        Ok(p) => p,
        Err((code, message)) => return Err(fail_source(code, &message)),
    };
    if let Err(diags) = gantry_spec::buildspec::parse(&buildspec) {
        let message: Vec<String> = diags.iter().map(|d| d.render("buildspec")).collect();
        return Err(fail_source(
            "YAML_FILE_ERROR",
            &format!("Invalid buildspec: {}", message.join("; ")),
        ));
    }

    let payload = BuildPayload {
        build_id: job.record.id.clone(),
        build_arn: Some(crate::codebuild::arn(
            &runner.config,
            "build",
            &job.record.id,
        )),
        project: job.record.project.clone(),
        build_number: job.record.number,
        initiator: job.initiator.clone(),
        buildspec,
        env: job.env.clone(),
        image: job.image.clone(),
        timeout_minutes: job.timeout_minutes,
        wants_artifacts: job.wants_artifacts,
        source: source_ref,
    };
    let labels = job_labels(job);
    let new = NewAgentJob {
        id: job_id.to_owned(),
        kind: "codebuild".into(),
        labels: labels.clone(),
        payload: serde_json::to_value(&payload).unwrap_or(Value::Null),
        max_attempts: MAX_ATTEMPTS,
    };
    // The lines the build's writer holds (the source's preparation) and
    // the server's word on the wait go in the job's own commit, in order:
    // under a queue the wait passed a second (the writer's longest), and
    // that line cost a commit of its own per build.
    let (taker, taken) = tokio::sync::oneshot::channel();
    let mut lines = match tx.send(Msg::Take(taker)) {
        Ok(()) => taken.await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let writers = lines.len();
    lines.push(format!(
        "[Container] Waiting for an agent with labels {}",
        labels.join(",")
    ));
    if let Err(e) = enqueue(runner, &new, &job.record.id, &lines).await {
        // The writer's lines go back to it, ahead of the error.
        lines.truncate(writers);
        let _ = tx.send(Msg::Restore(lines));
        let message = format!("queueing the build for an agent: {e}");
        log(format!("[Container] {message}"));
        return Err(ended_early(
            job,
            vec![submitted.clone()],
            "FAILED",
            "QUEUED",
            start,
            ("CLIENT_ERROR", &message),
        ));
    }
    runner.log_grew();
    Ok(())
}

/// Queues the job, trying again (with backoff) while the store refuses it,
/// for up to [`STORE_RETRY_FOR`](crate::worker::STORE_RETRY_FOR) and while
/// the server runs: before, a build accepted just as the database
/// restarted failed for it. A try that committed but whose answer was lost
/// shows on the next as a conflict on the job's id: the job is queued.
/// `lines` go to the build's log in the same transaction.
async fn enqueue<S: Store>(
    runner: &BuildRunner<S>,
    new: &NewAgentJob,
    build_id: &str,
    lines: &[String],
) -> Result<(), gantry_store::StoreError> {
    use crate::worker::{STORE_RETRY_FOR, retry_store};
    let what = format!("queueing job {}", new.id);
    let store = runner.store.as_ref();
    retry_store(
        &mut runner.closed(),
        Some(STORE_RETRY_FOR),
        &what,
        |tries| async move {
            match store.enqueue_job_with_log(new, build_id, lines).await {
                Ok(_) => Ok(()),
                // An earlier try committed though its answer was lost.
                Err(gantry_store::StoreError::Conflict(_)) if tries > 0 => Ok(()),
                Err(e) => Err(e),
            }
        },
    )
    .await
}

/// Where the build's artifacts are unpacked on this server, on their way to
/// the artifact store (as the local agent's are written; see
/// `build_artifacts`).
pub(crate) fn artifacts_dir(data_dir: &std::path::Path, build_id: &str) -> std::path::PathBuf {
    let uuid = build_id.split_once(':').map_or(build_id, |(_, u)| u);
    data_dir.join(files::ARTIFACTS).join(uuid)
}

/// Whether a build's job was queued just now, by this server, or before
/// (by this server before a restart, or by another).
#[derive(Clone, Copy)]
enum Queued {
    Now,
    Before,
}

/// What a waiting build's end is made of besides its agent's result,
/// shared by the build's task (which adds to it as the job is leased and
/// queued again) and the handler that takes the result: when the build
/// waits on the server that takes the result, that handler writes the
/// build's end in the transaction that ends the job and tells the task it
/// did ([`Ending::Recorded`]), one commit per build fewer.
pub(crate) struct Finisher {
    record: BuildRecord,
    submitted: Value,
    so_far: std::sync::Mutex<SoFar>,
}

/// What the build's task has seen of its job so far.
#[derive(Default)]
struct SoFar {
    /// The QUEUED phase's contexts: the leases lost.
    contexts: Vec<(String, String)>,
    /// When the latest attempt's lease began (`None`: not leased yet).
    leased_at: Option<i64>,
}

impl Finisher {
    fn new(record: &BuildRecord, submitted: Value) -> Finisher {
        Finisher {
            record: record.clone(),
            submitted,
            so_far: std::sync::Mutex::new(SoFar::default()),
        }
    }

    fn so_far(&self) -> std::sync::MutexGuard<'_, SoFar> {
        // Nothing is left half-changed under the lock: a poisoned one is
        // as good as any.
        self.so_far
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An attempt's lease began at `at_ms`; `only_if_unknown` keeps a time
    /// already known (the store, read later, knows less than the hub).
    pub(crate) fn leased(&self, at_ms: i64, only_if_unknown: bool) {
        let mut so_far = self.so_far();
        if !only_if_unknown || so_far.leased_at.is_none() {
            so_far.leased_at = Some(at_ms);
        }
    }

    fn lease_lost(&self, context: (String, String)) {
        self.so_far().contexts.push(context);
    }

    /// The phases up to the end of QUEUED (at the lease's start, or now),
    /// and that end.
    fn queued_so_far(&self) -> (Vec<Value>, i64) {
        let so_far = self.so_far();
        let end = so_far.leased_at.unwrap_or_else(now_ms);
        let contexts: Vec<(&str, &str)> = so_far
            .contexts
            .iter()
            .map(|(c, m)| (c.as_str(), m.as_str()))
            .collect();
        let start = self.record.start_ms;
        let phases = vec![
            self.submitted.clone(),
            phase_json("QUEUED", Some("SUCCEEDED"), start, Some(end), &contexts),
        ];
        (phases, end)
    }

    /// The build's end from its agent's result.
    pub(crate) fn end_from(&self, result: &JobResult) -> BuildUpdate {
        let (before, end) = self.queued_so_far();
        let mut update = from_result(&self.record, before, end, result);
        // The server that took the result stored the artifacts and made
        // their locations references; any other location is a path on an
        // agent's disk.
        crate::build_artifacts::keep_references(&mut update.build);
        update
    }

    /// The build's end when its job failed for good.
    fn failed(&self, why: &str, stopping: bool, log: &dyn Fn(String)) -> BuildUpdate {
        let status = if stopping { "STOPPED" } else { "FAILED" };
        let message = format!("The build's agent job failed: {why}");
        log(format!("[Container] {message}"));
        let (before, end) = self.queued_so_far();
        ended_early_for(
            &self.record,
            before,
            status,
            "PROVISIONING",
            end,
            ("CLIENT_ERROR", &message),
        )
    }
}

/// Waits for the job's end and makes the build's from it. The job's end
/// comes from this server's hub when its agent talks to this server, and
/// from the `jobs` row otherwise (checked a few times per lease timeout):
/// any server may take the agent's result, and any server's reaper may
/// fail the job. `None` when the server shuts down: the job stays open, the
/// build IN_PROGRESS, and the server that takes the build over next
/// (another one, or this one's next start) waits for it again.
async fn wait<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    mut signal: StopSignal,
    tx: &mpsc::UnboundedSender<Msg>,
    submitted: Value,
    job_id: String,
    queued: Queued,
) -> Option<BuildEnd> {
    let start = job.record.start_ms;
    let log = |line: String| {
        let _ = tx.send(Msg::Line(line));
    };
    let hub = &runner.hub;
    let finisher = Arc::new(Finisher::new(&job.record, submitted.clone()));
    let (ends_tx, mut ends) = mpsc::unbounded_channel();
    hub.attach(
        &job_id,
        Arc::new(LiveJob {
            log: tx.clone(),
            ends: ends_tx,
            serial: tokio::sync::Mutex::new(()),
            finisher: Some(finisher.clone()),
        }),
    );
    let _attached = Attached(hub, job_id.clone());
    match queued {
        // Wakes one waiting poll whose agent has the labels.
        Queued::Now => hub.job_ready_for(&gantry_store::OfferableJob {
            id: job_id.clone(),
            kind: "codebuild".into(),
            labels: job_labels(job),
            attempts: 0,
        }),
        // Its state is not known here (queued again, leased, ended): the
        // polls look in the store.
        Queued::Before => hub.job_ready(),
    }

    let mut attempts_seen = 0;
    let mut stopping = false;
    let mut closed = runner.closed();
    let every = (hub.lease_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let waiting_since = tokio::time::Instant::now();
    let mut check = tokio::time::interval(every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // The server shuts down: the agent goes on with the build, and
            // whoever owns the build next finishes it.
            _ = until_true(&mut closed) => return None,
            _ = signal.stopped(), if !stopping => {
                stopping = true;
                match runner.store.cancel_job(&job_id).await {
                    Ok(j) if j.status == job_status::LEASED => {
                        log("[Container] Stop requested; telling the agent".into());
                    }
                    _ => {
                        return Some(ended_early(job, vec![submitted.clone()], "STOPPED", "QUEUED", start,
                            ("BUILD_STOPPED", "The build was stopped while it was queued.")).into());
                    }
                }
            }
            ending = ends.recv() => match ending {
                // Logged, and its time noted, by the hub as it was told.
                Some(Ending::Leased { attempt }) => attempts_seen = attempts_seen.max(attempt),
                Some(Ending::Requeued { agent, attempt, max }) => {
                    let message = format!(
                        "Attempt {attempt} of {max} on agent {agent} lost its lease; the build is queued again"
                    );
                    log(format!("[Container] {message}"));
                    finisher.lease_lost(("AGENT_LEASE_EXPIRED".into(), message));
                }
                Some(Ending::Failed(why)) => {
                    return Some(finisher.failed(&why, stopping, &log).into());
                }
                Some(Ending::Result(result)) => return Some(finisher.end_from(&result).into()),
                Some(Ending::Recorded(update)) => {
                    return Some(BuildEnd { update: *update, recorded: true });
                }
                None => {
                    let (before, _) = finisher.queued_so_far();
                    return Some(ended_early(job, before, "FAILED", "PROVISIONING", now_ms(),
                        ("CLIENT_ERROR", "the agent hub went away")).into());
                }
            },
            _ = check.tick() => {
                if lost_to_another_server(runner, &job.record.id, waiting_since).await {
                    tracing::warn!(build = %job.record.id,
                        "another server took this build over; no longer waiting for it here");
                    return None;
                }
                let row = match hub.checks.job(runner.store.as_ref(), || hub.waiting_jobs(), &job_id).await {
                    JobCheck::Row(row) => row,
                    JobCheck::Gone => return Some(finisher.failed("its job is gone", stopping, &log).into()),
                    JobCheck::Unknown => continue,
                };
                if row.status != job_status::QUEUED && row.attempts > attempts_seen && row.agent_id.is_some() {
                    // Acknowledged through another server (or before this
                    // server took the build over).
                    attempts_seen = row.attempts;
                    finisher.leased(now_ms(), true);
                    let id = row.agent_id.clone().unwrap_or_default();
                    let agent = match hub.agent(runner.store.as_ref(), &id).await {
                        Ok(a) => format!("{} ({})", a.id, a.hostname),
                        Err(_) => id,
                    };
                    let _ = tx.send(Msg::Aside(format!(
                        "[Container] Agent {agent} took the build (attempt {})",
                        row.attempts
                    )));
                }
                if row.status != job_status::SUCCEEDED && row.status != job_status::FAILED {
                    continue;
                }
                let kept = runner.store.job_result(&job_id).await.ok().flatten();
                let why = match kept.map(serde_json::from_value::<JobResult>) {
                    Some(Ok(result)) => return Some(finisher.end_from(&result).into()),
                    Some(Err(e)) => format!("its agent's result is unreadable: {e}"),
                    None => row.error.unwrap_or_else(|| "the job ended without a result".into()),
                };
                return Some(finisher.failed(&why, stopping, &log).into());
            }
        }
    }
}

/// How often a server checks it still owns a build it waits for (a remote
/// agent's) or runs (its embedded agent's).
pub(crate) const OWNER_CHECK: Duration = super::checks::EVERY;

/// Whether another server now owns the build (it took it over while this one
/// was paused past its heartbeat's time to live, or cut off from the
/// database): this server then stops waiting for it, and the new owner
/// finishes it (the store would refuse this server's update anyway). `since`
/// is when this server began waiting for (or running) it. Read from the
/// server's shared snapshot ([`super::checks`]), at most [`OWNER_CHECK`]
/// old; a store error counts as still owned.
pub(crate) async fn lost_to_another_server<S: Store>(
    runner: &BuildRunner<S>,
    build: &str,
    since: tokio::time::Instant,
) -> bool {
    let hub = &runner.hub;
    hub.checks
        .lost(runner.store.as_ref(), || hub.waiting_jobs(), build, since)
        .await
}

/// The job's source, prepared in a scratch directory and packed where
/// agents fetch it: the buildspec's text and the packed tree's reference.
/// An error is its error code and message.
async fn pack_source<S: Store>(
    runner: &BuildRunner<S>,
    job: &BuildJob,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(String, Option<String>), (&'static str, String)> {
    let work_root = runner.config.data_dir.join(files::WORK);
    let work = std::fs::create_dir_all(&work_root)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix(&job.uuid)
                .tempdir_in(&work_root)
        })
        .map_err(|e| {
            (
                "CLIENT_ERROR",
                format!("creating the build's work directory: {e}"),
            )
        })?;
    let src = work.path().join("src");
    match &job.prepared_source {
        Some(dir) => std::fs::rename(dir, &src).map_err(|e| {
            format!(
                "moving the pipeline's input artifact {} into place: {e}",
                dir.display()
            )
        }),
        None => source::prepare(&job.source, job.source_version.as_deref(), &src, log).await,
    }
    .map_err(|m| ("CLIENT_ERROR", m))?;
    let buildspec = match &job.buildspec {
        BuildspecRef::Inline(text) => text.clone(),
        BuildspecRef::File(path) => {
            crate::worker::read_in(&src, path).map_err(|m| ("YAML_FILE_ERROR", m))?
        }
    };
    let source_ref = if src.is_dir() {
        // In the artifact store, shared by every server given the same
        // one: the agent may fetch the tree from any of them.
        let r = runner
            .objects
            .put_dir(&src)
            .await
            .map_err(|e| ("CLIENT_ERROR", format!("packing the source: {e}")))?;
        Some(r.to_string())
    } else {
        None
    };
    Ok((buildspec, source_ref))
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(flag: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *flag.borrow_and_update();
        if now || flag.changed().await.is_err() {
            return;
        }
    }
}

/// The build's final state from an agent's result.
fn from_result(
    record: &BuildRecord,
    before: Vec<Value>,
    leased_at: i64,
    r: &JobResult,
) -> BuildUpdate {
    match &r.build {
        Some(value) => finished_value(record, before, value),
        None => {
            let phase = r
                .error_phase
                .as_deref()
                .filter(|p| ["DOWNLOAD_SOURCE", "PROVISIONING", "UPLOAD_ARTIFACTS"].contains(p))
                .unwrap_or("PROVISIONING");
            let message = r
                .error
                .clone()
                .unwrap_or_else(|| "the agent could not run the build".into());
            ended_early_for(
                record,
                before,
                "FAILED",
                phase,
                leased_at,
                ("CLIENT_ERROR", &message),
            )
        }
    }
}

/// The build a `codebuild` job runs (its payload's `build_id`).
pub(crate) fn build_of(job: &AgentJobRecord) -> Option<String> {
    job.payload
        .get("build_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The job's entry in this server's hub: the waiting build's when it waits
/// here, else a relay that writes the agent's log to the build in the
/// store (the build's owner, elsewhere, finishes it from the `jobs` row).
/// `Err` when the build has ended.
pub(crate) async fn live_or_relay<S: Store>(
    runner: &BuildRunner<S>,
    job: &AgentJobRecord,
) -> Result<Arc<LiveJob>, String> {
    if let Some(live) = runner.hub.live(&job.id) {
        return Ok(live);
    }
    let build_id = build_of(job).ok_or_else(|| format!("job {} names no build", job.id))?;
    let record = runner
        .store
        .get_builds(std::slice::from_ref(&build_id))
        .await
        .map_err(|e| format!("reading build {build_id}: {e}"))?
        .into_iter()
        .next()
        .filter(|b| b.status == "IN_PROGRESS")
        .ok_or_else(|| format!("job {}'s build no longer waits for it", job.id))?;
    let (ends, _) = mpsc::unbounded_channel();
    let relay = Arc::new(LiveJob {
        log: runner.log_writer(record),
        ends,
        serial: tokio::sync::Mutex::new(()),
        finisher: None,
    });
    Ok(runner.hub.attach_relay(&job.id, relay))
}

/// A build taken over from a dead server, to wait for its agent's job
/// again ([`BuildRunner::reattach`]): only the record matters, as the job
/// (source, buildspec, environment) is already queued or leased.
pub(crate) fn reattached_job(record: BuildRecord) -> BuildJob {
    let uuid = record
        .id
        .split_once(':')
        .map_or(record.id.as_str(), |(_, u)| u)
        .to_owned();
    let initiator = record
        .build
        .get("initiator")
        .and_then(Value::as_str)
        .unwrap_or("system")
        .to_owned();
    BuildJob {
        uuid,
        buildspec: BuildspecRef::Inline(String::new()),
        source: crate::codebuild::SourceKind::None,
        source_version: None,
        env: Vec::new(),
        image: String::new(),
        timeout_minutes: 0,
        initiator,
        wants_artifacts: false,
        prepared_source: None,
        agent_labels: Vec::new(),
        record,
    }
}
