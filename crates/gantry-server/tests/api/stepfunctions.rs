//! Step Functions on the real server, in-process: the API end to end, callbacks,
//! error shapes, and executions that go on after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A Step Functions operation; returns (status, JSON).
pub async fn sfn(server: &TestServer, operation: &str, input: &Value) -> (u16, Value) {
    server.aws(STEP_FUNCTIONS, SECRET, operation, input).await
}

async fn ok(server: &TestServer, operation: &str, input: Value) -> Value {
    let (status, out) = sfn(server, operation, &input).await;
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

async fn err(server: &TestServer, operation: &str, input: Value) -> String {
    let (status, out) = sfn(server, operation, &input).await;
    assert_eq!(status, 400, "{operation} {input}: {out}");
    out["__type"]
        .as_str()
        .expect("__type")
        .rsplit('#')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Polls DescribeExecution until the execution is no longer RUNNING.
async fn wait_done(server: &TestServer, arn: &str) -> Value {
    for _ in 0..600 {
        let d = ok(server, "DescribeExecution", json!({"executionArn": arn})).await;
        if d["status"] != "RUNNING" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{arn} did not finish in 30 s");
}

/// A tiny HTTP server that counts requests: it answers `{"n": <request number>}`
/// and keeps every request's path and JSON body.
#[derive(Clone, Default)]
pub struct Counter {
    pub requests: Arc<Mutex<Vec<(String, Value, u64)>>>,
}

impl Counter {
    pub async fn start() -> (Counter, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let counter = Counter::default();
        let c = counter.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])
                        .unwrap_or(Value::Null);
                    let n = {
                        let mut r = c.requests.lock().expect("lock");
                        let n = r.len() as u64 + 1;
                        r.push((path.clone(), body, n));
                        n
                    };
                    let status = if path.starts_with("/fail") {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let answer = json!({"n": n, "path": path}).to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (counter, url)
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| p.starts_with(prefix))
            .count()
    }

    /// The task tokens sent to `/callback/<key>`, latest per key.
    pub fn tokens(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for (path, body, _) in self.requests.lock().expect("lock").iter() {
            if let (Some(key), Some(token)) =
                (path.strip_prefix("/callback/"), body["token"].as_str())
            {
                out.insert(key.to_owned(), token.to_owned());
            }
        }
        out
    }

    pub async fn wait_token(&self, key: &str) -> String {
        for _ in 0..600 {
            if let Some(t) = self.tokens().get(key) {
                return t.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no callback for {key} within 30 s");
    }
}

/// Map over `$.items` (an HTTP call each), a Wait of `$.wait` seconds, then a callback
/// Task that sends its token to `/callback/<$.key>`, then a Pass that shapes the output.
pub fn workflow() -> Value {
    json!({
        "StartAt": "Fan out",
        "States": {
            "Fan out": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
                "ItemSelector": {"item.$": "$$.Map.Item.Value", "key.$": "$.key", "url.$": "$.url"},
                "ItemProcessor": {"StartAt": "Call", "States": {"Call": {
                    "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {"ApiEndpoint.$": "States.Format('{}/item/{}/{}', $.url, $.key, $.item)",
                                   "Method": "POST", "RequestBody": {"item.$": "$.item"}},
                    "ResultSelector": {"n.$": "$.ResponseBody.n", "item.$": "$.ResponseBody.path"},
                    "End": true}}},
                "ResultPath": "$.calls",
                "Next": "Pause"
            },
            "Pause": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Ask"},
            "Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::http:invoke.waitForTaskToken",
                "Parameters": {"ApiEndpoint.$": "States.Format('{}/callback/{}', $.url, $.key)",
                               "Method": "POST", "RequestBody": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.answer",
                "Next": "Done"
            },
            "Done": {"Type": "Pass", "Parameters": {"key.$": "$.key", "calls.$": "$.calls", "answer.$": "$.answer"}, "End": true}
        }
    })
}

pub fn workflow_input(url: &str, key: &str, items: &[&str], wait: u64) -> String {
    json!({"url": url, "key": key, "items": items, "wait": wait}).to_string()
}

async fn create_machine(server: &TestServer, name: &str, definition: &Value, kind: &str) -> String {
    let out = ok(
        server,
        "CreateStateMachine",
        json!({
        "name": name, "definition": definition.to_string(), "type": kind,
        "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )
    .await;
    out["stateMachineArn"].as_str().expect("arn").to_owned()
}

crate::on_both_stores!(
    create_start_callback_history_and_stop,
    create_start_callback_history_and_stop_on,
    create_start_callback_history_and_stop_on_postgres
);

async fn create_start_callback_history_and_stop_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, dir.path()).await;
    let (counter, url) = Counter::start().await;
    let machine = create_machine(&server, "flow", &workflow(), "STANDARD").await;
    assert_eq!(
        machine,
        "arn:aws:states:us-east-1:000000000000:stateMachine:flow"
    );

    let described = ok(
        &server,
        "DescribeStateMachine",
        json!({"stateMachineArn": machine}),
    )
    .await;
    assert_eq!(
        (
            described["name"].as_str(),
            described["type"].as_str(),
            described["status"].as_str()
        ),
        (Some("flow"), Some("STANDARD"), Some("ACTIVE"))
    );
    let listed = ok(&server, "ListStateMachines", json!({})).await;
    assert_eq!(
        listed["stateMachines"][0]["stateMachineArn"],
        machine.as_str()
    );

    let input = workflow_input(&url, "one", &["a", "b", "c"], 1);
    let started = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": "run-1", "input": input}),
    )
    .await;
    let arn = started["executionArn"].as_str().expect("arn").to_owned();
    assert_eq!(
        arn,
        "arn:aws:states:us-east-1:000000000000:execution:flow:run-1"
    );
    // Same name, same input while running: the same execution.
    let again = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": "run-1", "input": input}),
    )
    .await;
    assert_eq!(again["executionArn"], arn.as_str());
    assert_eq!(
        err(
            &server,
            "StartExecution",
            json!({"stateMachineArn": machine, "name": "run-1", "input": "{}"})
        )
        .await,
        "ExecutionAlreadyExists"
    );

    let token = counter.wait_token("one").await;
    assert_eq!(counter.count("/item/one/"), 3);
    let running = ok(&server, "DescribeExecution", json!({"executionArn": arn})).await;
    assert_eq!(running["status"], "RUNNING");
    let listed = ok(
        &server,
        "ListExecutions",
        json!({"stateMachineArn": machine, "statusFilter": "RUNNING"}),
    )
    .await;
    assert_eq!(listed["executions"][0]["executionArn"], arn.as_str());

    // Callback errors before the right answer.
    assert_eq!(
        err(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{not json"})
        )
        .await,
        "InvalidOutput"
    );
    assert_eq!(
        err(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": "nonsense", "output": "{}"})
        )
        .await,
        "InvalidToken"
    );
    assert_eq!(
        err(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": format!("{token}x"), "output": "{}"})
        )
        .await,
        "TaskDoesNotExist"
    );
    ok(&server, "SendTaskHeartbeat", json!({"taskToken": token})).await;
    ok(
        &server,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "{\"approved\": true}"}),
    )
    .await;
    assert_eq!(
        err(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{}"})
        )
        .await,
        "TaskTimedOut"
    );

    let done = wait_done(&server, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let output: Value =
        serde_json::from_str(done["output"].as_str().expect("output")).expect("json");
    assert_eq!(output["answer"], json!({"approved": true}));
    let items: Vec<&str> = output["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["item"].as_str())
        .collect();
    assert_eq!(items, ["/item/one/a", "/item/one/b", "/item/one/c"]);

    let history = ok(&server, "GetExecutionHistory", json!({"executionArn": arn})).await;
    let events = history["events"].as_array().expect("events");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for expected in [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskSucceeded",
        "WaitStateEntered",
        "WaitStateExited",
        "ExecutionSucceeded",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"], i as u64 + 1);
    }
    let ask = events
        .iter()
        .filter(|e| e["type"] == "TaskScheduled")
        .map(|e| &e["taskScheduledEventDetails"])
        .find(|d| d["resource"] == "invoke.waitForTaskToken")
        .expect("the callback task's TaskScheduled");
    assert_eq!(ask["resourceType"], "http");
    let params = ask["parameters"].as_str().expect("parameters");
    assert!(
        !params.contains(&token) && params.contains("[task token]"),
        "the token is not stored: {params}"
    );
    let reversed = ok(
        &server,
        "GetExecutionHistory",
        json!({"executionArn": arn, "reverseOrder": true, "maxResults": 2}),
    )
    .await;
    assert_eq!(reversed["events"][0]["type"], "ExecutionSucceeded");
    assert!(reversed["nextToken"].is_string());

    // StopExecution ends a waiting execution ABORTED.
    let long = create_machine(
        &server,
        "long",
        &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": true}}}),
        "STANDARD",
    )
    .await;
    let x = ok(&server, "StartExecution", json!({"stateMachineArn": long})).await;
    let xarn = x["executionArn"].as_str().expect("arn").to_owned();
    ok(
        &server,
        "StopExecution",
        json!({"executionArn": xarn, "error": "Operator", "cause": "no longer needed"}),
    )
    .await;
    let stopped = ok(&server, "DescribeExecution", json!({"executionArn": xarn})).await;
    assert_eq!(
        (stopped["status"].as_str(), stopped["error"].as_str()),
        (Some("ABORTED"), Some("Operator"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_step_functions_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let missing = "arn:aws:states:us-east-1:000000000000:stateMachine:nope";
    assert_eq!(
        err(
            &server,
            "DescribeStateMachine",
            json!({"stateMachineArn": missing})
        )
        .await,
        "StateMachineDoesNotExist"
    );
    assert_eq!(
        err(
            &server,
            "DescribeStateMachine",
            json!({"stateMachineArn": "not-an-arn"})
        )
        .await,
        "InvalidArn"
    );
    assert_eq!(
        err(
            &server,
            "StartExecution",
            json!({"stateMachineArn": missing})
        )
        .await,
        "StateMachineDoesNotExist"
    );
    assert_eq!(
        err(
            &server,
            "DescribeExecution",
            json!({"executionArn": "arn:aws:states:us-east-1:000000000000:execution:nope:x"})
        )
        .await,
        "ExecutionDoesNotExist"
    );
    let bad = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}).to_string();
    let (status, out) = sfn(
        &server,
        "CreateStateMachine",
        &json!({"name": "bad", "definition": bad, "roleArn": "arn:aws:iam::0:role/r"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        out["__type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("InvalidDefinition"),
        "{out}"
    );
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("States.A.Next"),
        "{out}"
    );
    assert_eq!(
        err(
            &server,
            "CreateStateMachine",
            json!({"name": "has space", "definition": "{}", "roleArn": "r"})
        )
        .await,
        "InvalidName"
    );
    let good = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}).to_string();
    ok(
        &server,
        "CreateStateMachine",
        json!({"name": "m", "definition": good, "roleArn": "arn:aws:iam::0:role/r"}),
    )
    .await;
    // The same again is idempotent; a different definition under the name is not.
    ok(
        &server,
        "CreateStateMachine",
        json!({"name": "m", "definition": good, "roleArn": "arn:aws:iam::0:role/r"}),
    )
    .await;
    let other = json!({"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}).to_string();
    assert_eq!(
        err(
            &server,
            "CreateStateMachine",
            json!({"name": "m", "definition": other, "roleArn": "arn:aws:iam::0:role/r"})
        )
        .await,
        "StateMachineAlreadyExists"
    );
    let m = "arn:aws:states:us-east-1:000000000000:stateMachine:m";
    assert_eq!(
        err(
            &server,
            "StartExecution",
            json!({"stateMachineArn": m, "input": "{oops"})
        )
        .await,
        "InvalidExecutionInput"
    );
    assert_eq!(
        err(&server, "StartSyncExecution", json!({"stateMachineArn": m})).await,
        "StateMachineTypeNotSupported"
    );
    let updated = ok(
        &server,
        "UpdateStateMachine",
        json!({"stateMachineArn": m, "definition": other}),
    )
    .await;
    assert!(updated["revisionId"].is_string());
    assert_eq!(
        ok(
            &server,
            "DescribeStateMachine",
            json!({"stateMachineArn": m})
        )
        .await["definition"],
        other.as_str()
    );
    ok(&server, "DeleteStateMachine", json!({"stateMachineArn": m})).await;
    assert_eq!(
        err(
            &server,
            "DescribeStateMachine",
            json!({"stateMachineArn": m})
        )
        .await,
        "StateMachineDoesNotExist"
    );
    let v = ok(
        &server,
        "ValidateStateMachineDefinition",
        json!({"definition": bad}),
    )
    .await;
    assert_eq!(v["result"], "FAIL");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_machines_run_synchronously_with_http_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let (counter, url) = Counter::start().await;
    let def = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                 "Parameters": {"ApiEndpoint.$": "$.endpoint", "Method": "GET", "QueryParameters": {"q": "a b"}},
                 "Retry": [{"ErrorEquals": ["States.Http.StatusCode.500"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
                 "ResultSelector": {"status.$": "$.StatusCode", "path.$": "$.ResponseBody.path"}, "End": true},
        "Caught": {"Type": "Pass", "End": true}}});
    let m = create_machine(&server, "quick", &def, "EXPRESS").await;
    let out = ok(&server, "StartSyncExecution", json!({"stateMachineArn": m, "input": json!({"endpoint": format!("{url}/ok")}).to_string()})).await;
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    let output: Value =
        serde_json::from_str(out["output"].as_str().expect("output")).expect("json");
    assert_eq!(output, json!({"status": 200, "path": "/ok?q=a%20b"}));
    let out = ok(&server, "StartSyncExecution", json!({"stateMachineArn": m, "input": json!({"endpoint": format!("{url}/fail")}).to_string()})).await;
    let output: Value =
        serde_json::from_str(out["output"].as_str().expect("output")).expect("json");
    assert_eq!(
        output["error"]["Error"], "States.Http.StatusCode.500",
        "{output}"
    );
    assert_eq!(counter.count("/fail"), 2, "one retry");
    server.stop().await;
}

crate::on_both_stores!(
    a_wait_map_and_callback_execution_resumes_after_a_restart,
    a_wait_map_and_callback_execution_resumes_after_a_restart_on,
    a_wait_map_and_callback_execution_resumes_after_a_restart_on_postgres
);

async fn a_wait_map_and_callback_execution_resumes_after_a_restart_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (counter, url) = Counter::start().await;
    let server = TestServer::start_on(&db, dir.path()).await;
    let machine = create_machine(&server, "durable", &workflow(), "STANDARD").await;
    // One execution stopped while its Wait runs, one while its callback is pending.
    let in_wait = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": "in-wait",
        "input": workflow_input(&url, "w", &["1", "2"], 3)}),
    )
    .await["executionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    for _ in 0..600 {
        if counter.count("/item/w/") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_callback = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": "in-callback",
        "input": workflow_input(&url, "c", &["x"], 0)}),
    )
    .await["executionArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    let token = counter.wait_token("c").await;
    server.stop().await;

    let server = TestServer::start_on(&db, dir.path()).await;
    // A token handed out before the restart still completes its task.
    ok(
        &server,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "\"yes\""}),
    )
    .await;
    let done = wait_done(&server, &in_callback).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    // The Wait resumed and the callback went out after the restart.
    let token_w = counter.wait_token("w").await;
    ok(
        &server,
        "SendTaskSuccess",
        json!({"taskToken": token_w, "output": "\"ok\""}),
    )
    .await;
    let done = wait_done(&server, &in_wait).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let output: Value =
        serde_json::from_str(done["output"].as_str().expect("output")).expect("json");
    assert_eq!(output["answer"], "ok");
    // No journalled task ran again: each item was called once. The token of the
    // callback pending at the stop may go out once more (at-least-once delivery when
    // the stop came between sending it and recording that it was sent).
    assert_eq!(counter.count("/item/w/"), 2);
    assert_eq!(counter.count("/item/c/"), 1);
    assert!((1..=2).contains(&counter.count("/callback/c")));
    assert_eq!(counter.count("/callback/w"), 1);
    let history = ok(
        &server,
        "GetExecutionHistory",
        json!({"executionArn": in_wait}),
    )
    .await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "ExecutionStarted").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "WaitStateExited").count(),
        1,
        "{types:?}"
    );
    server.stop().await;
}

/// `GANTRY_TEST_PYTHON` (a python3 with boto3), or `None` with the reason printed;
/// a panic instead when `GANTRY_REQUIRE_AWS_CLIENTS=1`.
fn python() -> Option<std::path::PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            assert!(
                std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() != Ok("1"),
                "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set"
            );
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with boto3 to run the boto3 Step Functions test"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_step_functions() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/api/clients/stepfunctions.py");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&url)
            .arg("flow")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("flow: ok"),
        "boto3 script failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codebuild_start_build_sync_waits_for_the_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("good", GOOD_BUILDSPEC))
        .await;
    server
        .call("CreateProject", &inline_project("bad", FAILING_BUILDSPEC))
        .await;
    let def = json!({"StartAt": "Build", "States": {
        "Build": {"Type": "Task", "Resource": "arn:aws:states:::codebuild:startBuild.sync",
                  "Parameters": {"ProjectName.$": "$.project",
                                 "EnvironmentVariablesOverride": [{"Name": "WHO", "Value": "sfn", "Type": "PLAINTEXT"}]},
                  "ResultSelector": {"status.$": "$.Build.BuildStatus", "id.$": "$.Build.Id",
                                     "vars.$": "$.Build.ExportedEnvironmentVariables"},
                  "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Failed"}],
                  "End": true},
        "Failed": {"Type": "Pass", "End": true}}});
    let m = create_machine(&server, "builder", &def, "STANDARD").await;
    let good = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": m, "input": "{\"project\": \"good\"}"}),
    )
    .await;
    let bad = ok(
        &server,
        "StartExecution",
        json!({"stateMachineArn": m, "input": "{\"project\": \"bad\"}"}),
    )
    .await;
    let done = wait_done(&server, good["executionArn"].as_str().expect("arn")).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let output: Value =
        serde_json::from_str(done["output"].as_str().expect("output")).expect("json");
    assert_eq!(output["status"], "SUCCEEDED", "{output}");
    assert_eq!(
        output["vars"],
        json!([{"Name": "GREETING", "Value": "hi-sfn"}]),
        "{output}"
    );
    let id = output["id"].as_str().expect("build id");
    let build = server.wait_build(id).await;
    assert_eq!(
        build["initiator"],
        format!("states:{}", good["executionArn"].as_str().expect("arn"))
    );
    let done = wait_done(&server, bad["executionArn"].as_str().expect("arn")).await;
    let output: Value =
        serde_json::from_str(done["output"].as_str().expect("output")).expect("json");
    assert_eq!(output["error"]["Error"], "States.TaskFailed", "{output}");
    let cause: Value = serde_json::from_str(output["error"]["Cause"].as_str().expect("cause"))
        .expect("cause is the Build JSON");
    assert_eq!(cause["Build"]["BuildStatus"], "FAILED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_execution_stops_the_build_its_task_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("slow", SLOW_BUILDSPEC))
        .await;
    let def = json!({"StartAt": "Build", "States": {
        "Build": {"Type": "Task", "Resource": "arn:aws:states:::codebuild:startBuild.sync",
                  "Parameters": {"ProjectName": "slow"}, "End": true}}});
    let m = create_machine(&server, "slow-builder", &def, "STANDARD").await;
    let x = ok(&server, "StartExecution", json!({"stateMachineArn": m})).await;
    let arn = x["executionArn"].as_str().expect("arn").to_owned();
    let mut build_id = None;
    for _ in 0..600 {
        let ids = server
            .call("ListBuildsForProject", &json!({"projectName": "slow"}))
            .await;
        if let Some(id) = ids["ids"][0].as_str() {
            build_id = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let build_id = build_id.expect("the task started a build");
    // Give the task time to record the build it started before stopping.
    for _ in 0..600 {
        let b = server
            .call("BatchGetBuilds", &json!({"ids": [build_id]}))
            .await;
        if b["builds"][0]["currentPhase"] == "BUILD" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok(&server, "StopExecution", json!({"executionArn": arn})).await;
    assert_eq!(
        ok(&server, "DescribeExecution", json!({"executionArn": arn})).await["status"],
        "ABORTED"
    );
    let build = server.wait_build(&build_id).await;
    assert_eq!(build["buildStatus"], "STOPPED", "{build}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_heartbeat_times_the_task_out_and_its_token_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let (counter, url) = Counter::start().await;
    let ask = |key: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::http:invoke.waitForTaskToken",
               "Parameters": {"ApiEndpoint": format!("{url}/callback/{key}"), "Method": "POST",
                              "RequestBody": {"token.$": "$$.Task.Token"}},
               "HeartbeatSeconds": 1, "TimeoutSeconds": 30, "End": true})
    };
    let m = create_machine(
        &server,
        "beats",
        &json!({"StartAt": "Ask", "States": {"Ask": ask("hb")}}),
        "STANDARD",
    )
    .await;
    let x = ok(&server, "StartExecution", json!({"stateMachineArn": m})).await;
    let arn = x["executionArn"].as_str().expect("arn").to_owned();
    let token = counter.wait_token("hb").await;
    let done = wait_done(&server, &arn).await;
    assert_eq!(
        (done["status"].as_str(), done["error"].as_str()),
        (Some("FAILED"), Some("States.HeartbeatTimeout")),
        "{done}"
    );
    assert_eq!(
        err(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{}"})
        )
        .await,
        "TaskTimedOut"
    );
    assert_eq!(
        err(&server, "SendTaskHeartbeat", json!({"taskToken": token})).await,
        "TaskTimedOut"
    );
    let history = ok(&server, "GetExecutionHistory", json!({"executionArn": arn})).await;
    let timed_out = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "TaskTimedOut")
        .expect("TaskTimedOut event")
        .clone();
    assert_eq!(
        timed_out["taskTimedOutEventDetails"]["error"],
        "States.HeartbeatTimeout"
    );

    // In an express execution, callbacks reach the in-memory execution.
    let quick = create_machine(
        &server,
        "quick-ask",
        &json!({"StartAt": "Ask", "States": {"Ask": ask("ex")}}),
        "EXPRESS",
    )
    .await;
    let input = json!({"stateMachineArn": quick, "input": "{}"});
    let sync = sfn(&server, "StartSyncExecution", &input);
    let send = async {
        let token = counter.wait_token("ex").await;
        ok(
            &server,
            "SendTaskSuccess",
            json!({"taskToken": token, "output": "{\"fast\": true}"}),
        )
        .await;
    };
    let (run, ()) = tokio::join!(sync, send);
    assert_eq!(run.0, 200, "{}", run.1);
    assert_eq!(run.1["status"], "SUCCEEDED", "{}", run.1);
    assert_eq!(run.1["output"], "{\"fast\":true}");
    server.stop().await;
}

/// A private CA and a `localhost` certificate it signed, made with openssl.
fn private_ca(dir: &std::path::Path) -> Option<()> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Gantry Test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ])?;
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tasks_call_https_endpoints_trusting_the_extra_ca_only_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    if private_ca(&pki).is_none() {
        assert!(
            std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").is_err(),
            "openssl is needed to make the test CA"
        );
        eprintln!("SKIP: openssl could not make a test CA");
        return;
    }
    // openssl's own TLS server: a peer no one here wrote.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut tls_server = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "leaf.pem",
            "-key",
            "leaf.key",
            "-www",
            "-quiet",
        ])
        .current_dir(&pki)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let def = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                 "Parameters": {"ApiEndpoint": format!("https://localhost:{port}/status"), "Method": "GET"},
                 "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"},
                 "End": true}}});
    for (trusting, data) in [(true, "trusting"), (false, "default")] {
        let ca = pki.join("ca.pem");
        let server = TestServer::start_with(&dir.path().join(data), |config| {
            if trusting {
                config.extra_ca_certs = Some(ca);
            }
        })
        .await;
        let m = create_machine(&server, "secure", &def, "EXPRESS").await;
        let out = ok(&server, "StartSyncExecution", json!({"stateMachineArn": m})).await;
        if trusting {
            assert_eq!(out["status"], "SUCCEEDED", "{out}");
            let output: Value =
                serde_json::from_str(out["output"].as_str().expect("output")).expect("json");
            assert_eq!(output["status"], 200, "{output}");
            assert!(
                output["body"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("s_server"),
                "{output}"
            );
        } else {
            assert_eq!(out["status"], "FAILED", "{out}");
            assert_eq!(out["error"], "States.Http.Socket", "{out}");
            let cause = out["cause"].as_str().unwrap_or_default();
            assert!(
                cause.contains("certificate") || cause.contains("UnknownIssuer"),
                "{cause}"
            );
        }
        server.stop().await;
    }
    let _ = tls_server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_executions_publish_their_status_changes_on_the_bus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let (hook, url) = Counter::start().await;
    let events = |op: &'static str, input: Value| {
        let server = &server;
        async move {
            let (status, out) = server.aws(EVENTS, SECRET, op, &input).await;
            assert_eq!(status, 200, "{op}: {out}");
        }
    };
    let pattern = json!({"source": ["gantry.states"],
                         "detail-type": ["Step Functions Execution Status Change"]});
    events(
        "PutRule",
        json!({"Name": "sfn-status", "EventPattern": pattern.to_string()}),
    )
    .await;
    events(
        "PutTargets",
        json!({"Rule": "sfn-status", "Targets": [{"Id": "hook", "Arn": format!("{url}/status")}]}),
    )
    .await;
    let def = json!({"StartAt": "Check", "States": {
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Yes"}],
                  "Default": "No"},
        "Yes": {"Type": "Pass", "Result": {"done": true}, "End": true},
        "No": {"Type": "Fail", "Error": "Release.Blocked", "Cause": "not ok"}}});
    let m = create_machine(&server, "reporter", &def, "STANDARD").await;
    let mut arns = Vec::new();
    for ok_input in [true, false] {
        let started = ok(
            &server,
            "StartExecution",
            json!({"stateMachineArn": m, "input": json!({"ok": ok_input}).to_string()}),
        )
        .await;
        let arn = started["executionArn"].as_str().expect("arn").to_owned();
        wait_done(&server, &arn).await;
        arns.push(arn);
    }
    // RUNNING and the end, for each execution.
    let mut received = Vec::new();
    for _ in 0..200 {
        received = hook
            .requests
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, body, _)| body.clone())
            .collect::<Vec<_>>();
        if received.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |arn: &str, status: &str| {
        received
            .iter()
            .find(|e| e["detail"]["executionArn"] == arn && e["detail"]["status"] == status)
            .cloned()
            .unwrap_or_else(|| panic!("no {status} event for {arn}: {received:?}"))
    };
    let running = find(&arns[0], "RUNNING");
    assert_eq!(running["source"], "gantry.states");
    assert_eq!(
        running["detail-type"],
        "Step Functions Execution Status Change"
    );
    assert_eq!(running["resources"], json!([arns[0]]));
    assert_eq!(running["detail"]["stateMachineArn"], m.as_str());
    assert_eq!(running["detail"]["input"], "{\"ok\":true}");
    assert!(running["detail"]["stopDate"].is_null(), "{running}");
    let succeeded = find(&arns[0], "SUCCEEDED");
    assert_eq!(succeeded["detail"]["output"], "{\"done\":true}");
    assert!(succeeded["detail"]["stopDate"].is_i64(), "{succeeded}");
    find(&arns[1], "RUNNING");
    let failed = find(&arns[1], "FAILED");
    assert_eq!(failed["detail"]["error"], "Release.Blocked");
    assert_eq!(failed["detail"]["cause"], "not ok");
    assert_eq!(
        received.len(),
        4,
        "one event per status change: {received:?}"
    );
    server.stop().await;
}
