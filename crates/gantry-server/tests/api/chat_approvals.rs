//! Approvals by chat: the approval's message reaches a Slack-style incoming
//! webhook, and its buttons' signed callbacks answer the approval; forged,
//! stale and replayed callbacks change nothing.

use std::time::Duration;

use gantry_triggers::signature::sign_slack;
use serde_json::{Value, json};

use crate::codepipeline::ok;
use crate::harness::*;
use crate::pipeline_runs::{declaration, repo_with, start, wait_status};
use crate::stepfunctions::Counter;

const CHAT_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// The chat messages the fake incoming webhook received at `path`.
fn received(chat: &Counter, path: &str) -> Vec<Value> {
    chat.requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|(p, _, _)| p == path)
        .map(|(_, body, _)| body.clone())
        .collect()
}

async fn wait_for_message(chat: &Counter, path: &str, count: usize) -> Value {
    for _ in 0..200 {
        if let Some(m) = received(chat, path).get(count - 1) {
            return m.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no message {count} at {path}: {:?}",
        chat.requests.lock().expect("lock")
    );
}

/// A button press on `message`, as Slack sends it (form body with a JSON payload).
fn press(message: &Value, button: usize, response_url: &str) -> Vec<u8> {
    let element = &message["blocks"][2]["elements"][button];
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U042", "username": "ada", "name": "Ada"},
        "response_url": response_url,
        "actions": [{"action_id": element["action_id"], "value": element["value"],
                     "block_id": "gantry_approval", "type": "button"}],
    });
    format!(
        "payload={}",
        gantry_aws::uri_encode(payload.to_string().as_bytes())
    )
    .into_bytes()
}

async fn callback(server: &TestServer, body: &[u8], secret: &str, at: i64) -> (u16, Value) {
    let headers = vec![
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("X-Slack-Request-Timestamp".to_string(), at.to_string()),
        (
            "X-Slack-Signature".to_string(),
            sign_slack(secret, at, body),
        ),
    ];
    let (status, reply) = server
        .raw("POST", "/chat/slack/actions", &headers, body)
        .await
        .expect("callback");
    (
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    )
}

async fn approval_state(server: &TestServer, pipeline: &str) -> Value {
    let state = ok(server, "GetPipelineState", &json!({ "name": pipeline })).await;
    state["stageStates"][1]["actionStates"][0]["latestExecution"].clone()
}

/// Source → an approval that notifies `url`.
fn chat_pipeline(name: &str, repo: &str, url: &str) -> Value {
    let mut decl = declaration(name, repo, "");
    let stages = decl["stages"].as_array_mut().expect("stages");
    let mut approve = stages[2].clone();
    approve["actions"][0]["configuration"] = json!({
        "CustomData": "Ship #{SourceVariables.CommitId}?",
        "ExternalEntityLink": "https://example.com/changelog",
        "NotificationArn": url,
    });
    stages.truncate(1);
    stages.push(approve);
    decl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_button_answers_the_approval_and_forgeries_and_replays_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo_with(dir.path(), &[("version.txt", "1")], "first");
    let (chat, chat_url) = Counter::start().await;
    let server = TestServer::start_with(&dir.path().join("data"), |config| {
        config.chat_signing_secret = Some(CHAT_SECRET.into());
    })
    .await;
    let decl = chat_pipeline("chatty", &repo, &format!("{chat_url}/incoming"));
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let id = start(&server, "chatty").await;

    // The message names the pipeline, shows the resolved CustomData and has both buttons.
    let message = wait_for_message(&chat, "/incoming", 1).await;
    let text = message.to_string();
    assert!(
        text.contains("chatty") && text.contains("https://example.com/changelog"),
        "{text}"
    );
    assert!(
        !text.contains("#{SourceVariables.CommitId}"),
        "CustomData is resolved: {text}"
    );
    assert_eq!(
        message["blocks"][2]["elements"][0]["action_id"],
        "gantry_approve"
    );
    assert_eq!(
        message["blocks"][2]["elements"][1]["action_id"],
        "gantry_reject"
    );

    let approve = press(&message, 0, &format!("{chat_url}/respond"));
    let now = unix_now();
    // Forged: signed with another secret.
    let (status, reply) = callback(&server, &approve, "not the secret", now).await;
    assert_eq!(status, 401, "{reply}");
    // Stale: a correctly signed request from ten minutes ago.
    let (status, reply) = callback(&server, &approve, CHAT_SECRET, now - 600).await;
    assert_eq!(status, 401, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("seconds away"),
        "{reply}"
    );
    // A button whose value was tampered with breaks the signature too.
    let mut tampered = approve.clone();
    let at = tampered.len() - 5;
    tampered[at] = b'X';
    let headers_signed_for_original = sign_slack(CHAT_SECRET, now, &approve);
    let (status, _) = server
        .raw(
            "POST",
            "/chat/slack/actions",
            &[
                ("X-Slack-Request-Timestamp".to_string(), now.to_string()),
                ("X-Slack-Signature".to_string(), headers_signed_for_original),
            ],
            &tampered,
        )
        .await
        .expect("callback");
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pending = approval_state(&server, "chatty").await;
    assert_eq!(
        pending["status"], "InProgress",
        "nothing changed: {pending}"
    );

    // The real press approves, as the chat user.
    let (status, reply) = callback(&server, &approve, CHAT_SECRET, now).await;
    assert_eq!(status, 200, "{reply}");
    let e = wait_status(&server, "chatty", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e}");
    let answered = approval_state(&server, "chatty").await;
    assert_eq!(answered["summary"], "Approved in chat by ada", "{answered}");
    // The chat's message is updated through its response_url.
    let update = wait_for_message(&chat, "/respond", 1).await;
    assert_eq!(update["replace_original"], true, "{update}");
    assert!(
        update["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Approved by ada"),
        "{update}"
    );

    // Replaying the very same callback is refused.
    let (status, reply) = callback(&server, &approve, CHAT_SECRET, now).await;
    assert_eq!(status, 401, "{reply}");

    // A fresh press of Reject on the old message finds an answered approval.
    let reject = press(&message, 1, &format!("{chat_url}/respond"));
    let (status, reply) = callback(&server, &reject, CHAT_SECRET, unix_now()).await;
    assert_eq!(status, 409, "{reply}");
    let e = wait_status(&server, "chatty", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(
        e["status"], "Succeeded",
        "the rejection after approval changed nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_signing_secret_the_message_has_no_buttons_and_callbacks_are_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo_with(dir.path(), &[("version.txt", "1")], "first");
    let (chat, chat_url) = Counter::start().await;
    let server = TestServer::start(&dir.path().join("data")).await;
    let decl = chat_pipeline("quiet", &repo, &format!("{chat_url}/incoming"));
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    start(&server, "quiet").await;
    let message = wait_for_message(&chat, "/incoming", 1).await;
    let text = message.to_string();
    assert!(!text.contains("gantry_approve"), "{text}");
    assert!(
        text.contains("gantry approve"),
        "says how to answer: {text}"
    );
    let (status, _) = callback(&server, b"payload=%7B%7D", CHAT_SECRET, unix_now()).await;
    assert_eq!(status, 404);
    server.stop().await;
}
