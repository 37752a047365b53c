//! Webhook deliveries: `POST /webhooks/codepipeline/<id>`, the URL
//! PutWebhook hands out.
//!
//! One endpoint serves every git host. With `GITHUB_HMAC` the webhook's
//! secret token checks GitHub's `X-Hub-Signature-256` (or the legacy
//! SHA-1 header), GitLab's `X-Gitlab-Token`, or Gitea's and Forgejo's
//! signature, whichever host the request's headers name; `IP` checks the
//! caller's address; `UNAUTHENTICATED` checks nothing. A request that fails
//! authentication gets 401 and starts nothing. Then the webhook's `filters`
//! (JSONPath + `matchEquals`) must hold, and when the pipeline declares
//! `triggers`, its branch, tag and file-path filters too (the changed files
//! come from `git diff` when the payload's list is incomplete). A start is
//! answered 200 only once the execution is stored: an answered delivery is
//! never lost.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gantry_pipeline::Trigger;
use gantry_spec::pipeline::ActionOwner;
use gantry_store::Store;
use gantry_triggers::codepipeline::{WebhookAuthenticationType, WebhookDefinition};
use gantry_triggers::{GitEvent, Headers, Provider, event, filter};
use serde_json::json;

use crate::codepipeline;
use crate::error::json_reply;
use crate::router::AppState;
use crate::timing;

/// Replaces a push's file list, which a host may cut short, with `git
/// diff` of its commits; left as it is when the repository cannot be read.
pub(crate) async fn fill_changed_files<S: Store>(
    state: &AppState<S>,
    url: &str,
    git_event: &mut GitEvent,
) {
    let GitEvent::Push(push) = &*git_event else {
        return;
    };
    let (before, after) = (push.before.clone(), push.after.clone());
    let git = &state.pipelines.providers.git;
    if git.fetch_commit(url, &after).await.is_ok()
        && let Ok(files) = git.changed_files(url, &before, &after).await
    {
        git_event.set_changed_files(files);
    }
}

/// Starts fetching a delivery's commit into the mirror while the start is
/// stored and the source action spawned: the action's own fetch of it
/// then waits for this one (fetches of a URL are serialised) and finds the
/// commit there. Only the mirror changes, which is read-only for
/// everything else and safe to fill early; a failure here is the action's
/// to report when its own fetch fails too.
fn prefetch<S: Store>(state: &AppState<S>, url: &str, commit: &str) {
    let git = state.pipelines.providers.git.clone();
    let (url, commit) = (url.to_owned(), commit.to_owned());
    tokio::spawn(async move {
        let _ = git.fetch_commit(&url, &commit).await;
    });
}

pub(crate) async fn deliver<S: Store>(
    State(state): State<AppState<S>>,
    Path(url_id): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &url_id, remote, &headers, &body).await {
        Ok(response) => response,
        Err(message) => {
            tracing::error!(webhook = %url_id, error = %message, "webhook delivery failed");
            json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "the delivery could not be processed; see the server log" }),
            )
        }
    }
}

async fn handle<S: Store>(
    state: &AppState<S>,
    url_id: &str,
    remote: SocketAddr,
    header_map: &HeaderMap,
    body: &[u8],
) -> Result<Response, String> {
    let received = Instant::now();
    let store = state.store.as_ref();
    let Some(found) = codepipeline::webhook_for_url(store, url_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(json_reply(
            StatusCode::NOT_FOUND,
            json!({ "message": "no such webhook" }),
        ));
    };
    let mut definition: WebhookDefinition =
        serde_json::from_value(found.webhook.definition.clone())
            .map_err(|e| format!("stored webhook {} is unreadable: {e}", found.webhook.name))?;
    definition.authentication_configuration.secret_token = found.secret.clone();
    let headers = Headers::new(
        header_map
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes().to_vec())),
    );

    // Authentication first: nothing else is looked at for a forged request.
    let provider = Provider::detect(&headers);
    let authentic = match (definition.authentication, provider, &found.secret) {
        (
            WebhookAuthenticationType::GithubHmac,
            Some(p @ (Provider::GitLab | Provider::Gitea | Provider::Forgejo)),
            Some(secret),
        ) => p.verify(&headers, body, secret).map_err(|e| e.to_string()),
        _ => definition
            .authenticate(&headers, body, remote.ip())
            .map_err(|e| e.to_string()),
    };
    if let Err(reason) = authentic {
        tracing::warn!(webhook = %found.webhook.name, remote = %remote, %reason, "refused a webhook delivery");
        return Ok(json_reply(
            StatusCode::UNAUTHORIZED,
            json!({ "message": reason }),
        ));
    }

    let pipeline_name = definition.target_pipeline.clone();
    let Some((declaration, _)) = codepipeline::get_pipeline(store, &pipeline_name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(json_reply(
            StatusCode::NOT_FOUND,
            json!({ "message": format!("the webhook's pipeline {pipeline_name} does not exist") }),
        ));
    };
    let Some((_, action)) = declaration
        .actions()
        .find(|(_, a)| a.name.value == definition.target_action)
    else {
        return Ok(json_reply(
            StatusCode::NOT_FOUND,
            json!({ "message": format!("pipeline {pipeline_name} has no action {}", definition.target_action) }),
        ));
    };
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Ok(json_reply(
                StatusCode::BAD_REQUEST,
                json!({ "message": format!("the body is not JSON: {e}") }),
            ));
        }
    };
    let (matched, reason) =
        definition.filters_match(&payload, |key| action.config(key).map(|v| v.value.clone()));
    if !matched {
        return Ok(json_reply(
            StatusCode::OK,
            json!({ "started": false, "reason": reason }),
        ));
    }

    // The commit to build, and the pipeline's own trigger filters.
    let mut revision = None;
    if let Some(p) = provider {
        let kind = p.event_kind(&headers).unwrap_or("push").to_owned();
        match event::parse(p, &kind, body) {
            Ok(mut git_event) => {
                revision = match &git_event {
                    GitEvent::Push(push) if !push.deleted => Some(push.after.clone()),
                    GitEvent::PullRequest(pr) => Some(pr.head_commit.clone()),
                    _ => None,
                };
                if declaration.triggers.is_some() {
                    if filter::needs_changed_files(&declaration, &git_event)
                        && let Some(url) = action.config("RepositoryUrl")
                    {
                        fill_changed_files(state, &url.value, &mut git_event).await;
                    }
                    let decision = filter::decide(&declaration, &git_event)
                        .into_iter()
                        .find(|d| d.source_action == definition.target_action);
                    if let Some(d) = decision
                        && !d.start
                    {
                        return Ok(json_reply(
                            StatusCode::OK,
                            json!({ "started": false, "reason": d.reason }),
                        ));
                    }
                }
            }
            Err(e) => {
                return Ok(json_reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "message": format!("the payload is not a {} event: {e}", p.name()) }),
                ));
            }
        }
    }
    let is_git = action.action_type_id.owner.value == ActionOwner::Aws
        && action.action_type_id.provider.value == "Git";
    if is_git && let (Some(commit), Some(url)) = (&revision, action.config("RepositoryUrl")) {
        prefetch(state, &url.value, commit);
    }
    let revisions = revision
        .into_iter()
        .map(|r| (definition.target_action.clone(), r))
        .collect();
    let trigger = Trigger {
        trigger_type: "Webhook".into(),
        trigger_detail: found.webhook.name.clone(),
    };
    let actor = format!("webhook/{}", found.webhook.name);
    let checks = received.elapsed();
    let checked = Instant::now();
    let id = match codepipeline::executions::start_execution(
        state,
        &pipeline_name,
        trigger,
        Vec::new(),
        revisions,
        &actor,
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            return Ok(json_reply(
                StatusCode::CONFLICT,
                json!({ "message": e.error.message }),
            ));
        }
    };
    timing::took(&id, "webhook.checks", checks);
    timing::step(&id, "webhook.start", checked);
    let recorded = Instant::now();
    if let Err(e) = store
        .record_webhook_trigger(&found.webhook.name, gantry_store::now_ms(), &actor)
        .await
    {
        tracing::warn!(webhook = %found.webhook.name, error = %e, "recording the webhook's trigger time failed");
    }
    timing::step(&id, "webhook.record", recorded);
    Ok(json_reply(
        StatusCode::OK,
        json!({ "started": true, "pipelineExecutionId": id }),
    ))
}
