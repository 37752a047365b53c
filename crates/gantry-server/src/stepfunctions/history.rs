//! The interpreter's history events in AWS's `HistoryEvent` shape: the event type
//! as is, and the details under the `*EventDetails` member botocore's model gives
//! that type, with data (inputs, outputs, parameters) as JSON text.

use gantry_store::HistoryRecord;
use serde_json::{Value, json};

use super::ts;

/// `arn:aws:states:::codebuild:startBuild.sync` → (`codebuild`, `startBuild.sync`);
/// another ARN → (its service, the ARN); anything else → (`gantry`, the resource).
pub(crate) fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::")
        && let Some((kind, action)) = rest.split_once(':')
    {
        return (kind.to_owned(), action.to_owned());
    }
    let parts: Vec<&str> = resource.split(':').collect();
    match parts.as_slice() {
        ["arn", _, service, ..] if !service.is_empty() => {
            ((*service).to_owned(), resource.to_owned())
        }
        _ => ("gantry".to_owned(), resource.to_owned()),
    }
}

fn text(v: &Value) -> Value {
    json!(v.to_string())
}

fn data_details() -> Value {
    json!({"truncated": false})
}

fn error_cause(d: &Value) -> Value {
    let mut out = json!({});
    for member in ["error", "cause"] {
        if let Some(s) = d.get(member).and_then(Value::as_str) {
            out[member] = json!(s);
        }
    }
    out
}

fn task_details(d: &Value) -> Value {
    let (kind, resource) = resource_parts(d["resource"].as_str().unwrap_or_default());
    json!({"resourceType": kind, "resource": resource})
}

/// One history event as GetExecutionHistory returns it. `region` fills
/// `taskScheduledEventDetails.region`; `role_arn` `executionStartedEventDetails.roleArn`.
pub(crate) fn render(h: &HistoryRecord, region: &str, role_arn: &str) -> Value {
    let d = &h.details;
    let kind = h.event_type.as_str();
    let mut out = json!({"timestamp": ts(h.at_ms), "type": kind, "id": h.id});
    if let Some(p) = h.previous_id {
        out["previousEventId"] = json!(p);
    }
    let (member, details) = match kind {
        "ExecutionStarted" => (
            "executionStartedEventDetails",
            json!({"input": text(&d["input"]), "inputDetails": data_details(), "roleArn": role_arn}),
        ),
        "ExecutionSucceeded" => (
            "executionSucceededEventDetails",
            json!({"output": text(&d["output"]), "outputDetails": data_details()}),
        ),
        "ExecutionFailed" => ("executionFailedEventDetails", error_cause(d)),
        "ExecutionAborted" => ("executionAbortedEventDetails", error_cause(d)),
        "ExecutionTimedOut" => ("executionTimedOutEventDetails", error_cause(d)),
        "TaskScheduled" => {
            let mut t = task_details(d);
            t["region"] = json!(region);
            t["parameters"] = text(&d["parameters"]);
            if let Some(n) = d.get("timeout_seconds").and_then(Value::as_u64) {
                t["timeoutInSeconds"] = json!(n);
            }
            if let Some(n) = d.get("heartbeat_seconds").and_then(Value::as_u64) {
                t["heartbeatInSeconds"] = json!(n);
            }
            ("taskScheduledEventDetails", t)
        }
        "TaskSucceeded" => {
            let mut t = task_details(d);
            t["output"] = text(&d["output"]);
            t["outputDetails"] = data_details();
            ("taskSucceededEventDetails", t)
        }
        "TaskFailed" | "TaskTimedOut" => {
            let mut t = task_details(d);
            if let Some(e) = error_cause(d).as_object() {
                for (k, v) in e {
                    t[k] = v.clone();
                }
            }
            let member = if kind == "TaskFailed" {
                "taskFailedEventDetails"
            } else {
                "taskTimedOutEventDetails"
            };
            (member, t)
        }
        "MapStateStarted" => (
            "mapStateStartedEventDetails",
            json!({"length": d["length"].as_u64().unwrap_or(0)}),
        ),
        "MapIterationStarted" => (
            "mapIterationStartedEventDetails",
            json!({"index": d["index"].as_u64().unwrap_or(0)}),
        ),
        k if k.ends_with("StateEntered") => (
            "stateEnteredEventDetails",
            json!({"name": d["name"], "input": text(&d["input"]), "inputDetails": data_details()}),
        ),
        k if k.ends_with("StateExited") => (
            "stateExitedEventDetails",
            json!({"name": d["name"], "output": text(&d["output"]), "outputDetails": data_details()}),
        ),
        _ => return out,
    };
    out[member] = details;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, details: Value) -> HistoryRecord {
        HistoryRecord {
            id: 2,
            at_ms: 1_500,
            event_type: kind.into(),
            previous_id: Some(1),
            details,
        }
    }

    #[test]
    fn events_carry_the_details_member_botocore_names() {
        let e = render(
            &rec(
                "TaskScheduled",
                json!({"resource": "arn:aws:states:::codebuild:startBuild.sync",
                "parameters": {"ProjectName": "app"}, "timeout_seconds": 30, "heartbeat_seconds": null}),
            ),
            "eu-west-1",
            "role",
        );
        assert_eq!(e["type"], "TaskScheduled");
        assert_eq!(e["previousEventId"], 1);
        assert_eq!(e["timestamp"], json!(1.5));
        let t = &e["taskScheduledEventDetails"];
        assert_eq!(t["resourceType"], "codebuild");
        assert_eq!(t["resource"], "startBuild.sync");
        assert_eq!(t["region"], "eu-west-1");
        assert_eq!(t["parameters"], r#"{"ProjectName":"app"}"#);
        assert_eq!(t["timeoutInSeconds"], 30);
        assert!(t.get("heartbeatInSeconds").is_none());

        let e = render(
            &rec("WaitStateEntered", json!({"name": "W", "input": {"a": 1}})),
            "r",
            "x",
        );
        assert_eq!(e["stateEnteredEventDetails"]["name"], "W");
        assert_eq!(e["stateEnteredEventDetails"]["input"], r#"{"a":1}"#);
        let e = render(
            &rec(
                "TaskFailed",
                json!({"resource": "arn:aws:lambda:r:1:function:f", "error": "E", "cause": "c"}),
            ),
            "r",
            "x",
        );
        assert_eq!(e["taskFailedEventDetails"]["resourceType"], "lambda");
        assert_eq!(e["taskFailedEventDetails"]["error"], "E");
        let e = render(
            &rec("ExecutionStarted", json!({"input": {}})),
            "r",
            "role-arn",
        );
        assert_eq!(e["executionStartedEventDetails"]["roleArn"], "role-arn");
        let e = render(&rec("MapStateSucceeded", json!({"name": "M"})), "r", "x");
        assert_eq!(
            e.as_object().map(|o| o.len()),
            Some(4),
            "no details member: {e}"
        );
    }
}
