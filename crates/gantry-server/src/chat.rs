//! Approvals by chat: the message an approval posts, and
//! `POST /chat/slack/actions`, where its buttons' callbacks arrive.
//!
//! A Manual approval whose `NotificationArn` is an `http(s)://` URL (Gantry's
//! extension; a Slack-compatible incoming webhook) gets a Block Kit message
//! through the event outbox, so it is retried and survives a restart. When
//! the server has a chat signing secret (`GANTRY_CHAT_SIGNING_SECRET`, the
//! Slack app's signing secret) the message has Approve and Reject buttons.
//! Their callback must carry a valid `X-Slack-Signature` over a timestamp
//! at most 5 minutes old (checked in constant time), must not repeat a
//! callback already seen, and then answers the approval through the same
//! PutApprovalResult path as the API, with the chat user as the actor. A
//! forged, stale or replayed callback gets 401 and changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gantry_pipeline::ActionJob;
use gantry_store::{ApprovalRecord, Store};
use gantry_triggers::Headers;
use gantry_triggers::chat::{ApprovalRef, ApprovalRequest, approval_message, parse_callback};
use gantry_triggers::signature::{SLACK_MAX_SKEW_SECONDS, SLACK_SIGNATURE, verify_slack};
use serde_json::json;

use crate::error::json_reply;
use crate::router::AppState;

/// The callback route.
pub(crate) const ACTIONS_PATH: &str = "/chat/slack/actions";

/// Signatures of callbacks already accepted, kept as long as their
/// timestamps could still pass the freshness check.
#[derive(Default)]
pub(crate) struct SeenCallbacks {
    seen: Mutex<HashMap<String, i64>>,
}

impl SeenCallbacks {
    /// Records `signature` at `now`; false when it was already recorded.
    fn first_time(&self, signature: &str, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // A signature older than twice the window can no longer pass the
        // timestamp check, so it need not be remembered.
        seen.retain(|_, at| now - *at <= 2 * SLACK_MAX_SKEW_SECONDS);
        seen.insert(signature.to_owned(), now).is_none()
    }
}

fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// Posts the approval's message when its `NotificationArn` is a URL.
/// Called once, when the approval is recorded.
pub(crate) async fn announce_approval<S: Store>(
    state: &AppState<S>,
    job: &ActionJob,
    record: &ApprovalRecord,
) {
    let Some(url) = job
        .configuration
        .get("NotificationArn")
        .filter(|u| is_url(u))
    else {
        return;
    };
    let approval = ApprovalRef {
        pipeline: record.pipeline.clone(),
        stage: record.stage.clone(),
        action: record.action.clone(),
        token: record.token.clone(),
    };
    let review = state.config.public_url.as_ref().map(|base| {
        format!(
            "{}/pipelines/{}",
            base.trim_end_matches('/'),
            record.pipeline
        )
    });
    let expires = gantry_events::rfc3339_from_ms(record.expires_ms);
    let message = approval_message(&ApprovalRequest {
        approval: Some(&approval),
        execution_id: &record.execution_id,
        custom_data: job.configuration.get("CustomData").map(String::as_str),
        external_link: job
            .configuration
            .get("ExternalEntityLink")
            .map(String::as_str),
        review_link: review.as_deref(),
        expires: &expires,
        buttons: state.config.chat_signing_secret.is_some(),
    });
    if let Err(e) = state
        .events
        .send_message("gantry-approval-message", url, &message)
        .await
    {
        tracing::error!(pipeline = %record.pipeline, error = %e, "queueing an approval's chat message failed");
    }
}

/// `POST /chat/slack/actions`.
pub(crate) async fn actions<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = state.config.chat_signing_secret.as_deref() else {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"message": "chat approvals are not configured on this server (set GANTRY_CHAT_SIGNING_SECRET)"}),
        );
    };
    let lookup = Headers::new(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let now = gantry_store::now_ms() / 1000;
    if let Err(e) = verify_slack(&lookup, &body, secret, now) {
        return json_reply(StatusCode::UNAUTHORIZED, json!({"message": e.to_string()}));
    }
    let signature = lookup.text(SLACK_SIGNATURE).unwrap_or_default();
    if !state.chat.first_time(signature, now) {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"message": "this callback was already received; a replay changes nothing"}),
        );
    }
    let answer = match parse_callback(&body) {
        Ok(a) => a,
        Err(message) => return json_reply(StatusCode::BAD_REQUEST, json!({"message": message})),
    };
    let status = if answer.approve {
        "Approved"
    } else {
        "Rejected"
    };
    let input = json!({
        "pipelineName": answer.approval.pipeline,
        "stageName": answer.approval.stage,
        "actionName": answer.approval.action,
        "token": answer.approval.token,
        "result": {"status": status, "summary": format!("{status} in chat by {}", answer.user)},
    });
    let input = match serde_json::from_value(input) {
        Ok(i) => i,
        Err(e) => return json_reply(StatusCode::BAD_REQUEST, json!({"message": e.to_string()})),
    };
    let actor = format!("chat:{}", answer.user);
    let a = &answer.approval;
    let (code, text) =
        match crate::codepipeline::executions::put_approval_result(&state, &actor, input).await {
            Ok(_) => (
                StatusCode::OK,
                format!(
                    "{status} by {}: pipeline {}, {}/{}",
                    answer.user, a.pipeline, a.stage, a.action
                ),
            ),
            Err(e) => (
                StatusCode::CONFLICT,
                format!(
                    "Could not answer {}/{} of pipeline {}: {}",
                    a.stage, a.action, a.pipeline, e.error.message
                ),
            ),
        };
    if let Some(url) = answer.response_url.as_deref().filter(|u| is_url(u)) {
        let update = json!({"replace_original": code == StatusCode::OK, "text": text});
        if let Err(e) = state
            .events
            .send_message("gantry-approval-answer", url, &update)
            .await
        {
            tracing::warn!(error = %e, "queueing the chat's answer failed");
        }
    }
    json_reply(code, json!({"text": text}))
}
