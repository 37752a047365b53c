//! Ready-made webhook endpoints per git host: `POST /webhooks/github`,
//! `/webhooks/gitlab`, `/webhooks/gitea` and `/webhooks/forgejo`.
//!
//! One webhook on a repository serves every pipeline: the event goes to
//! each pipeline with a Git source on that repository, and each source
//! action decides by the pipeline's own `triggers` (branch, tag and file
//! path filters) or, without them, CodePipeline's default change detection
//! (a push to its `BranchName`). Requests are signed with the server's
//! webhook secret (`GANTRY_WEBHOOK_SECRET`) in the host's own scheme and
//! checked in constant time; a bad signature gets 401 and starts nothing.
//! A start is answered only once its execution is stored.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gantry_pipeline::Trigger;
use gantry_store::Store;
use gantry_triggers::{GitEvent, Headers, Provider, event, filter};
use serde_json::{Value, json};

use crate::codepipeline;
use crate::error::json_reply;
use crate::router::AppState;

fn provider_named(name: &str) -> Option<Provider> {
    match name {
        "github" => Some(Provider::GitHub),
        "gitlab" => Some(Provider::GitLab),
        "gitea" => Some(Provider::Gitea),
        "forgejo" => Some(Provider::Forgejo),
        _ => None,
    }
}

/// `POST /webhooks/{host}`.
pub(crate) async fn deliver<S: Store>(
    State(state): State<AppState<S>>,
    Path(host): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = provider_named(&host) else {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({ "message": format!("no webhook endpoint for {host:?}: use github, gitlab, gitea or forgejo") }),
        );
    };
    let Some(secret) = state.config.webhook_secret.as_deref() else {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({ "message": "repository webhooks are not configured on this server (set GANTRY_WEBHOOK_SECRET)" }),
        );
    };
    let headers = Headers::new(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    // Authentication first: nothing else is looked at for a forged request.
    if let Err(e) = provider.verify(&headers, &body, secret) {
        tracing::warn!(%host, reason = %e, "refused a repository webhook");
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({ "message": e.to_string() }),
        );
    }
    let Some(kind) = provider.event_kind(&headers) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({ "message": format!("header `{}` is missing: it names the event", provider.event_header()) }),
        );
    };
    let git_event = match event::parse(provider, kind, &body) {
        Ok(e) => e,
        Err(e) => return json_reply(StatusCode::BAD_REQUEST, json!({ "message": e.to_string() })),
    };
    if let GitEvent::Other(what) = &git_event {
        return json_reply(
            StatusCode::OK,
            json!({ "started": [], "ignored": format!("{what} events start nothing") }),
        );
    }
    match route(&state, &host, git_event).await {
        Ok(answer) => json_reply(StatusCode::OK, answer),
        Err(message) => {
            tracing::error!(%host, error = %message, "a repository webhook could not be processed");
            json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "the delivery could not be processed; see the server log" }),
            )
        }
    }
}

/// The commit an event asks to build.
fn revision(event: &GitEvent) -> Option<String> {
    match event {
        GitEvent::Push(push) if !push.deleted => Some(push.after.clone()),
        GitEvent::PullRequest(pr) => Some(pr.head_commit.clone()),
        _ => None,
    }
}

/// Starts every pipeline whose source actions the event selects; one
/// execution per pipeline, at the event's commit for each selected action.
async fn route<S: Store>(
    state: &AppState<S>,
    host: &str,
    mut git_event: GitEvent,
) -> Result<Value, String> {
    let store = state.store.as_ref();
    let Some(commit) = revision(&git_event) else {
        return Ok(json!({ "started": [], "ignored": "a deleted branch or tag starts nothing" }));
    };
    let mut changed_files_known = false;
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    for summary in store.list_pipelines().await.map_err(|e| e.to_string())? {
        let Some((declaration, _)) = codepipeline::get_pipeline(store, &summary.name)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let on_this_repository: Vec<String> = declaration
            .actions()
            .filter(|(_, a)| a.action_type_id.provider.value == "Git")
            .filter_map(|(_, a)| a.config("RepositoryUrl").map(|u| u.value.clone()))
            .filter(|url| git_event.repository().is_some_and(|r| r.matches_url(url)))
            .collect();
        let Some(url) = on_this_repository.first() else {
            continue;
        };
        // Path filters need the changed files; a payload's list can be cut
        // short, so `git diff` gives them (once per delivery).
        if !changed_files_known && filter::needs_changed_files(&declaration, &git_event) {
            changed_files_known = true;
            crate::webhooks::fill_changed_files(state, url, &mut git_event).await;
        }
        let mut revisions = BTreeMap::new();
        for decision in filter::decide(&declaration, &git_event) {
            if decision.start {
                revisions.insert(decision.source_action.clone(), commit.clone());
            } else {
                skipped.push(json!({
                    "pipeline": summary.name, "sourceAction": decision.source_action,
                    "reason": decision.reason,
                }));
            }
        }
        if revisions.is_empty() {
            continue;
        }
        let actions: Vec<String> = revisions.keys().cloned().collect();
        let trigger = Trigger {
            trigger_type: "Webhook".into(),
            trigger_detail: format!("{host} webhook"),
        };
        let actor = format!("webhook/{host}");
        match codepipeline::executions::start_execution(
            state,
            &summary.name,
            trigger,
            Vec::new(),
            revisions,
            &actor,
        )
        .await
        {
            Ok(id) => started.push(json!({
                "pipeline": summary.name, "pipelineExecutionId": id, "sourceActions": actions,
            })),
            Err(e) => skipped.push(json!({
                "pipeline": summary.name, "reason": e.error.message,
            })),
        }
    }
    Ok(json!({ "started": started, "skipped": skipped }))
}
