//! A build run by a remote agent, seen from the build's task: the source is
//! prepared and packed here, the build queued as a job, and the task then
//! waits — for the lease, the agent's log chunks (fed to the same writer
//! the local agent uses), a stop, a lost lease, or the result.

use std::sync::Arc;

use gantry_agent::protocol::{BuildPayload, JobResult};
use gantry_build::StopSignal;
use gantry_store::{BuildUpdate, NewAgentJob, Store, job_status, now_ms};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Cursor, Ending, LiveJob, MAX_ATTEMPTS};
use crate::worker::{
    BuildJob, BuildRunner, BuildspecRef, Msg, ended_early, finished_value, phase_json,
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
    mut signal: StopSignal,
    tx: &mpsc::UnboundedSender<Msg>,
    submitted: Value,
) -> BuildUpdate {
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
    let (buildspec, source_ref) = match prepared {
        Ok(p) => p,
        Err((code, message)) => {
            if !message.is_empty() {
                log(format!("[Container] {message}"));
            }
            return ended_early(
                job,
                queued_so_far(&[], now_ms()),
                "FAILED",
                "DOWNLOAD_SOURCE",
                now_ms(),
                (code, &message),
            );
        }
    };
    if let Err(diags) = gantry_spec::buildspec::parse(&buildspec) {
        let message: Vec<String> = diags.iter().map(|d| d.render("buildspec")).collect();
        let message = format!("Invalid buildspec: {}", message.join("; "));
        log(format!("[Container] {message}"));
        return ended_early(
            job,
            queued_so_far(&[], now_ms()),
            "FAILED",
            "DOWNLOAD_SOURCE",
            now_ms(),
            ("YAML_FILE_ERROR", &message),
        );
    }
    let hub = &runner.hub;

    let payload = BuildPayload {
        build_id: job.record.id.clone(),
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
    let job_id = format!("job-{}", job.uuid);
    let labels = job_labels(job);
    let (ends_tx, mut ends) = mpsc::unbounded_channel();
    hub.attach(
        &job_id,
        Arc::new(LiveJob {
            log: tx.clone(),
            ends: ends_tx,
            cursor: tokio::sync::Mutex::new(Cursor::default()),
            artifacts_dir: runner
                .config
                .data_dir
                .join(files::ARTIFACTS)
                .join(&job.uuid),
        }),
    );
    let _attached = Attached(hub, job_id.clone());
    let new = NewAgentJob {
        id: job_id.clone(),
        kind: "codebuild".into(),
        labels: labels.clone(),
        payload: serde_json::to_value(&payload).unwrap_or(Value::Null),
        max_attempts: MAX_ATTEMPTS,
    };
    if let Err(e) = runner.store.enqueue_job(&new).await {
        let message = format!("queueing the build for an agent: {e}");
        log(format!("[Container] {message}"));
        return ended_early(
            job,
            vec![submitted.clone()],
            "FAILED",
            "QUEUED",
            start,
            ("CLIENT_ERROR", &message),
        );
    }
    log(format!(
        "[Container] Waiting for an agent with labels {}",
        labels.join(",")
    ));
    hub.job_ready_for(&labels);

    let mut contexts: Vec<(String, String)> = Vec::new();
    let mut leased_at = None;
    let mut stopping = false;
    let mut closed = runner.closed();
    loop {
        tokio::select! {
            biased;
            // The server shuts down: the job is given up (its agent is
            // fenced off) rather than waited for.
            _ = until_true(&mut closed) => {
                let _ = runner.store.abandon_job(&job_id, "the server shut down").await;
                return ended_early(job, queued_so_far(&contexts, now_ms()), "STOPPED",
                    "PROVISIONING", now_ms(),
                    ("BUILD_STOPPED", "The build was stopped."));
            }
            _ = signal.stopped(), if !stopping => {
                stopping = true;
                match runner.store.cancel_job(&job_id).await {
                    Ok(j) if j.status == job_status::LEASED => {
                        log("[Container] Stop requested; telling the agent".into());
                    }
                    _ => {
                        return ended_early(job, vec![submitted.clone()], "STOPPED", "QUEUED", start,
                            ("BUILD_STOPPED", "The build was stopped while it was queued."));
                    }
                }
            }
            ending = ends.recv() => match ending {
                Some(Ending::Leased { agent, attempt, at_ms }) => {
                    leased_at = Some(at_ms);
                    log(format!("[Container] Agent {agent} took the build (attempt {attempt})"));
                }
                Some(Ending::Requeued { agent, attempt, max }) => {
                    let message = format!(
                        "Attempt {attempt} of {max} on agent {agent} lost its lease; the build is queued again"
                    );
                    log(format!("[Container] {message}"));
                    contexts.push(("AGENT_LEASE_EXPIRED".into(), message));
                }
                Some(Ending::Failed(why)) => {
                    let status = if stopping { "STOPPED" } else { "FAILED" };
                    let message = format!("The build's agent job failed: {why}");
                    log(format!("[Container] {message}"));
                    let end = leased_at.unwrap_or_else(now_ms);
                    return ended_early(job, queued_so_far(&contexts, end), status,
                        "PROVISIONING", end, ("CLIENT_ERROR", &message));
                }
                Some(Ending::Result(result)) => {
                    let end = leased_at.unwrap_or_else(now_ms);
                    let mut update = from_result(job, queued_so_far(&contexts, end), end, &result);
                    let dir = runner.config.data_dir.join(files::ARTIFACTS).join(&job.uuid);
                    server_locations(&mut update.build, &dir);
                    return update;
                }
                None => {
                    return ended_early(job, queued_so_far(&contexts, now_ms()), "FAILED",
                        "PROVISIONING", now_ms(), ("CLIENT_ERROR", "the agent hub went away"));
                }
            }
        }
    }
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
        let r = runner
            .hub
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

/// The agent sends artifact locations relative to the build's artifact
/// directory; they become paths under this server's (as a local build's
/// are). One that tries to leave the directory is dropped.
fn server_locations(build: &mut Value, dir: &std::path::Path) {
    let rewrite = |entry: &mut Value| {
        let Some(relative) = entry.get("location").and_then(Value::as_str) else {
            return;
        };
        let safe = std::path::Path::new(relative)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if safe {
            let path = if relative.is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(relative)
            };
            entry["location"] = Value::String(path.to_string_lossy().into_owned());
        } else if let Some(map) = entry.as_object_mut() {
            map.remove("location");
        }
    };
    if let Some(primary) = build.get_mut("artifacts") {
        rewrite(primary);
    }
    if let Some(list) = build
        .get_mut("secondaryArtifacts")
        .and_then(Value::as_array_mut)
    {
        list.iter_mut().for_each(rewrite);
    }
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
fn from_result(job: &BuildJob, before: Vec<Value>, leased_at: i64, r: &JobResult) -> BuildUpdate {
    match &r.build {
        Some(value) => finished_value(job, before, value),
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
            ended_early(
                job,
                before,
                "FAILED",
                phase,
                leased_at,
                ("CLIENT_ERROR", &message),
            )
        }
    }
}
