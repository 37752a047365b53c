//! The custom action provider: an action of an `owner: Custom` type queues
//! a job for a job worker (PollForJobs) and stays in progress until a
//! worker's final result (codepipeline/jobs.rs applies it) or the custom
//! action timeout (24 hours) fails it.
//!
//! Running an attempt again after a restart is safe: the job is created
//! only when the attempt has none, and the timeout counts from the first
//! job's creation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_pipeline::{ActionError, ActionJob, Input};
use gantry_store::{NewJob, Store, StoreError, now_ms};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::providers::{ProviderContext, failed};
use crate::router::AppState;

/// The bucket every artifact object of a job lives in, served path-style
/// by the server's own S3 endpoint (artifact_s3.rs).
pub(crate) const BUCKET: &str = "gantry-artifacts";

/// The object key of an artifact of an attempt: unique per attempt and
/// artifact (an action's input and output names never coincide).
pub(crate) fn object_key(pipeline: &str, artifact: &str, action_execution_id: &str) -> String {
    format!("{pipeline}/{artifact}/{action_execution_id}.zip")
}

/// An S3 `ArtifactLocation` of the bucket.
fn location(key: &str) -> Value {
    json!({"type": "S3", "s3Location": {"bucketName": BUCKET, "objectKey": key}})
}

/// A new job id or nonce.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The first job of an attempt: its `JobData` (without credentials) and
/// the objects it may read (input key → artifact reference) and write
/// (output name → key).
fn first_job(job: &ActionJob, config: &crate::Config, query_value: Option<String>) -> NewJob {
    let mut inputs = serde_json::Map::new();
    let mut input_list = Vec::new();
    for (name, reference) in &job.input_artifacts {
        let key = object_key(&job.pipeline, name, &job.action_execution_id);
        inputs.insert(key.clone(), json!(reference));
        input_list.push(json!({"name": name, "location": location(&key)}));
    }
    let mut outputs = serde_json::Map::new();
    let mut output_list = Vec::new();
    for name in &job.output_artifacts {
        let key = object_key(&job.pipeline, name, &job.action_execution_id);
        outputs.insert(name.clone(), json!(key));
        output_list.push(json!({"name": name, "location": location(&key)}));
    }
    let data = json!({
        "actionTypeId": {
            "category": job.category, "owner": job.owner,
            "provider": job.provider, "version": job.version,
        },
        "actionConfiguration": {"configuration": job.configuration},
        "pipelineContext": {
            "pipelineName": job.pipeline,
            "stage": {"name": job.stage},
            "action": {"name": job.action, "actionExecutionId": job.action_execution_id},
            "pipelineArn": format!(
                "arn:aws:codepipeline:{}:{}:{}",
                config.region, config.account_id, job.pipeline
            ),
            "pipelineExecutionId": job.execution_id,
        },
        "inputArtifacts": input_list,
        "outputArtifacts": output_list,
    });
    NewJob {
        id: new_id(),
        nonce: new_id(),
        category: job.category.clone(),
        provider: job.provider.clone(),
        version: job.version.clone(),
        query_value,
        pipeline: job.pipeline.clone(),
        execution_id: job.execution_id.clone(),
        stage: job.stage.clone(),
        action: job.action.clone(),
        action_execution_id: job.action_execution_id.clone(),
        data,
        objects: json!({"inputs": inputs, "outputs": outputs}),
    }
}

/// Queues the attempt's first job (unless a run before a restart did),
/// then waits for a worker's final result or the timeout.
pub(super) async fn run<S: Store>(
    cx: &ProviderContext,
    state: &AppState<S>,
    job: &ActionJob,
) -> Option<Input> {
    let store = state.store.as_ref();
    // Registered before the store is read, so a result that lands between
    // the read and the wait still wakes this task.
    let done = cx.custom_waiter(&job.action_execution_id);
    let existing = match store.jobs_for_attempt(&job.action_execution_id).await {
        Ok(jobs) => jobs,
        Err(e) => return failed(job, "JobFailed", format!("reading the action's jobs: {e}")),
    };
    let started_ms = match existing.first() {
        Some(first) => first.created_ms,
        None => {
            let t = match crate::codepipeline::action_types::live_type(
                store,
                &job.category,
                &job.provider,
                &job.version,
            )
            .await
            {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return failed(
                        job,
                        "ConfigurationError",
                        format!(
                            "the custom action type {}/Custom/{} version {} does not exist or was deleted",
                            job.category, job.provider, job.version
                        ),
                    );
                }
                Err(e) => {
                    return failed(
                        job,
                        "JobFailed",
                        format!("reading the action type: {}", e.error.message),
                    );
                }
            };
            let query_value = t
                .queryable()
                .and_then(|name| job.configuration.get(name).cloned());
            let new = first_job(job, &state.config, query_value);
            if let Err(e) = store.create_job(&new).await {
                return failed(job, "JobFailed", format!("queueing the job: {e}"));
            }
            now_ms()
        }
    };
    let timeout = state.config.custom_action_timeout;
    let deadline = started_ms.saturating_add(timeout.as_millis() as i64);
    let wait = Duration::from_millis((deadline - now_ms()).max(0) as u64);
    let finished = tokio::select! {
        () = done.notified() => true,
        () = tokio::time::sleep(wait) => false,
    };
    cx.forget_custom_waiter(&job.action_execution_id);
    if finished {
        return None;
    }
    // Time is up: the jobs still open time out, and the action fails.
    // When none is open a worker's final result got there first.
    match store
        .close_open_jobs(&job.action_execution_id, "TimedOut")
        .await
    {
        Ok(0) => None,
        Ok(_) => {
            if let Ok(jobs) = store.jobs_for_attempt(&job.action_execution_id).await
                && let Some(last) = jobs.last()
            {
                crate::artifact_s3::remove_objects(
                    &state.pipelines.providers.artifacts,
                    &last.job.objects,
                )
                .await;
            }
            Some(Input::ActionFailed {
                execution_id: job.execution_id.clone(),
                action_execution_id: job.action_execution_id.clone(),
                error: ActionError {
                    code: "TimedOut".into(),
                    message: format!(
                        "The custom action did not finish within {} (the custom action timeout)",
                        describe(timeout)
                    ),
                },
                external_execution_id: None,
            })
        }
        Err(e) => failed(
            job,
            "JobFailed",
            format!("timing out the action's jobs: {e}"),
        ),
    }
}

fn describe(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} hours", s / 3600)
    } else {
        format!("{s} seconds")
    }
}

/// An abandoned attempt's open jobs fail (a worker's late result is then
/// refused as InvalidJobStateException).
pub(super) fn abandon<S: Store>(state: &AppState<S>, action_execution_id: &str) {
    state
        .pipelines
        .providers
        .forget_custom_waiter(action_execution_id);
    let state = state.clone();
    let id = action_execution_id.to_owned();
    tokio::spawn(async move {
        match state.store.close_open_jobs(&id, "Failed").await {
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::error!(attempt = %id, error = %e, "failing an abandoned action's jobs failed")
            }
        }
    });
}

/// Waiters of custom actions by attempt: a final result wakes the task
/// that waits out the timeout.
#[derive(Default)]
pub(crate) struct CustomWaiters(std::sync::Mutex<BTreeMap<String, Arc<Notify>>>);

impl CustomWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProviderContext {
    /// The notification a final result of the attempt sends.
    pub(crate) fn custom_waiter(&self, action_execution_id: &str) -> Arc<Notify> {
        self.custom
            .lock()
            .entry(action_execution_id.to_owned())
            .or_default()
            .clone()
    }

    fn forget_custom_waiter(&self, action_execution_id: &str) {
        self.custom.lock().remove(action_execution_id);
    }

    /// Wakes the task waiting on the attempt: its result was applied.
    pub(crate) fn custom_finished(&self, action_execution_id: &str) {
        if let Some(n) = self.custom.lock().get(action_execution_id) {
            // notify_one stores a permit, so a waiter that is not yet
            // waiting still wakes.
            n.notify_one();
        }
    }
}
