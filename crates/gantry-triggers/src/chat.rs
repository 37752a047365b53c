//! Chat approvals: the interactive message an approval posts, and the
//! button callback that answers it.
//!
//! Gantry speaks Slack's shapes (Block Kit messages, `block_actions`
//! interaction payloads), which Mattermost and Rocket.Chat's Slack
//! compatibility also accept. The message carries an Approve and a Reject
//! button whose `value` names the approval — pipeline, stage, action and
//! its token — so the callback needs no server-side lookup table. The
//! callback's authenticity is [`crate::signature::verify_slack`]'s job; this
//! module only reads it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The button that approves.
pub const APPROVE_ACTION: &str = "gantry_approve";
/// The button that rejects.
pub const REJECT_ACTION: &str = "gantry_reject";

/// The approval a button answers; serialized into the button's `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRef {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// The approval action.
    pub action: String,
    /// The approval's token (PutApprovalResult's `token`).
    pub token: String,
}

/// What an approval message shows.
#[derive(Debug, Clone, Default)]
pub struct ApprovalRequest<'a> {
    /// The approval.
    pub approval: Option<&'a ApprovalRef>,
    /// The pipeline execution.
    pub execution_id: &'a str,
    /// The action's `CustomData`.
    pub custom_data: Option<&'a str>,
    /// The action's `ExternalEntityLink`.
    pub external_link: Option<&'a str>,
    /// Where the pipeline can be seen (the server's URL), if known.
    pub review_link: Option<&'a str>,
    /// When the approval expires, as RFC 3339 text.
    pub expires: &'a str,
    /// Whether to add the Approve and Reject buttons (only when the server
    /// can check their callbacks).
    pub buttons: bool,
}

/// Escapes the three characters Slack's mrkdwn treats as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for an approval.
///
/// ```
/// use gantry_triggers::chat::{ApprovalRef, ApprovalRequest, approval_message};
///
/// let approval = ApprovalRef { pipeline: "app".into(), stage: "Approve".into(),
///                              action: "Release".into(), token: "t-1".into() };
/// let message = approval_message(&ApprovalRequest {
///     approval: Some(&approval), execution_id: "e-1", custom_data: Some("ship v2?"),
///     expires: "2026-12-07T10:00:00Z", buttons: true, ..Default::default()
/// });
/// assert!(message["text"].as_str().unwrap().contains("app"));
/// assert_eq!(message["blocks"][2]["elements"][0]["action_id"], "gantry_approve");
/// ```
pub fn approval_message(request: &ApprovalRequest<'_>) -> Value {
    let (pipeline, stage, action) = request
        .approval
        .map(|a| (a.pipeline.as_str(), a.stage.as_str(), a.action.as_str()))
        .unwrap_or_default();
    let text = format!("Approval needed: pipeline {pipeline}, stage {stage}, action {action}");
    let mut lines = vec![format!(
        "*Approval needed* for pipeline *{}* (stage {}, action {})",
        escape(pipeline),
        escape(stage),
        escape(action)
    )];
    if let Some(data) = request.custom_data.filter(|d| !d.is_empty()) {
        lines.push(format!(">{}", escape(data)));
    }
    if let Some(link) = request.external_link {
        lines.push(format!("Review: <{}>", escape(link)));
    }
    if let Some(link) = request.review_link {
        lines.push(format!("Pipeline: <{}>", escape(link)));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "Execution {} · expires {}", escape(request.execution_id), escape(request.expires)
        )}]}),
    ];
    match request.approval.filter(|_| request.buttons) {
        Some(approval) => {
            let value = serde_json::to_string(approval).unwrap_or_default();
            blocks.push(json!({"type": "actions", "block_id": "gantry_approval", "elements": [
                {"type": "button", "action_id": APPROVE_ACTION, "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": value},
                {"type": "button", "action_id": REJECT_ACTION, "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": value},
            ]}));
        }
        None => blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text":
            format!("Answer with `gantry approve` or `gantry reject`, or PutApprovalResult, for pipeline {} execution {}",
                escape(pipeline), escape(request.execution_id))}]})),
    }
    json!({"text": text, "blocks": blocks})
}

/// A button press read from a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAnswer {
    /// Approve (true) or reject.
    pub approve: bool,
    /// The approval it answers.
    pub approval: ApprovalRef,
    /// Who pressed it: the chat user's name, or id when it has none.
    pub user: String,
    /// Where to send the updated message, when the chat gave one.
    pub response_url: Option<String>,
}

/// Reads a Slack interaction callback: a form body whose `payload` field
/// is a `block_actions` JSON document, one of whose actions is an
/// Approve or Reject button of an approval message.
pub fn parse_callback(body: &[u8]) -> Result<ChatAnswer, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("the body has no `payload` form field (expected Slack's interaction callback)")?;
    let doc: Value =
        serde_json::from_str(&payload).map_err(|e| format!("`payload` is not JSON: {e}"))?;
    if doc["type"] != "block_actions" {
        return Err(format!(
            "`payload.type` is {}; expected \"block_actions\"",
            doc["type"]
        ));
    }
    let pressed = doc["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["action_id"] == APPROVE_ACTION || a["action_id"] == REJECT_ACTION)
        .ok_or("`payload.actions` has no Approve or Reject button of a Gantry approval")?;
    let value = pressed["value"]
        .as_str()
        .ok_or("the button has no `value`")?;
    let approval: ApprovalRef = serde_json::from_str(value)
        .map_err(|e| format!("the button's `value` does not name an approval: {e}"))?;
    let user = ["username", "name", "id"]
        .iter()
        .find_map(|k| doc["user"][k].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("unknown")
        .to_owned();
    Ok(ChatAnswer {
        approve: pressed["action_id"] == APPROVE_ACTION,
        approval,
        user,
        response_url: doc["response_url"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> ApprovalRef {
        ApprovalRef {
            pipeline: "app".into(),
            stage: "Approve".into(),
            action: "Release".into(),
            token: "tok".into(),
        }
    }

    fn callback(action_id: &str, value: &str) -> Vec<u8> {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "ada"},
            "response_url": "https://hooks.example/respond",
            "actions": [{"action_id": action_id, "value": value}],
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    #[test]
    fn the_buttons_of_a_message_answer_its_approval() {
        let a = approval();
        let message = approval_message(&ApprovalRequest {
            approval: Some(&a),
            execution_id: "e",
            expires: "x",
            buttons: true,
            ..Default::default()
        });
        for (i, approve) in [(0, true), (1, false)] {
            let button = &message["blocks"][2]["elements"][i];
            let body = callback(
                button["action_id"].as_str().expect("id"),
                button["value"].as_str().expect("value"),
            );
            let answer = parse_callback(&body).expect("parses");
            assert_eq!(answer.approve, approve);
            assert_eq!(answer.approval, a);
            assert_eq!(answer.user, "ada");
            assert_eq!(
                answer.response_url.as_deref(),
                Some("https://hooks.example/respond")
            );
        }
    }

    #[test]
    fn without_buttons_the_message_says_how_to_answer() {
        let a = approval();
        let message = approval_message(&ApprovalRequest {
            approval: Some(&a),
            execution_id: "e",
            expires: "x",
            buttons: false,
            ..Default::default()
        });
        let text = message.to_string();
        assert!(
            !text.contains(APPROVE_ACTION) && !text.contains("tok"),
            "{text}"
        );
        assert!(text.contains("gantry approve"), "{text}");
    }

    #[test]
    fn markup_in_custom_data_is_escaped() {
        let a = approval();
        let message = approval_message(&ApprovalRequest {
            approval: Some(&a),
            execution_id: "e",
            custom_data: Some("<!channel> & <https://evil|click>"),
            expires: "x",
            ..Default::default()
        });
        let text = message["blocks"][0]["text"]["text"].as_str().expect("text");
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"),
            "{text}"
        );
    }

    #[test]
    fn bad_callbacks_are_refused_with_the_reason() {
        for (body, wanted) in [
            (b"x=1".to_vec(), "no `payload`"),
            (b"payload=%7B".to_vec(), "not JSON"),
            (
                b"payload=%7B%22type%22%3A%22view_submission%22%7D".to_vec(),
                "block_actions",
            ),
            (callback("other_button", "{}"), "no Approve or Reject"),
            (
                callback(APPROVE_ACTION, "not json"),
                "does not name an approval",
            ),
        ] {
            let err = parse_callback(&body).expect_err("refused");
            assert!(err.contains(wanted), "{err} should mention {wanted}");
        }
    }
}
