//! `gantry server` killed with SIGKILL while 100 Step Functions executions run
//! (a Map of HTTP calls, a Wait, a callback Task each), then started again: every
//! execution ends SUCCEEDED with the output an uninterrupted run gives, and no HTTP
//! call whose success was journalled was made again.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Running, STEP_FUNCTIONS};

mod support;

const AKID: &str = "GANTRYCRASHTEST";
const SECRET: &str = "crash/test+Secret/Key=0123456789abcdef";
const EXECUTIONS: usize = 100;
const ITEMS: [&str; 3] = ["a", "b", "c"];

fn start(data_dir: &Path) -> Running {
    support::start(data_dir, (AKID, SECRET))
}

/// A Step Functions call; `None` when the server is not reachable.
fn call(addr: &str, operation: &str, input: &Value) -> Option<(u16, Value)> {
    support::call(addr, (AKID, SECRET), STEP_FUNCTIONS, operation, input)
}

fn ok(addr: &str, operation: &str, input: Value) -> Value {
    let (status, out) = call(addr, operation, &input).expect("server reachable");
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

/// Every request: (path, JSON body, request number).
type Requests = Arc<Mutex<Vec<(String, Value, u64)>>>;

/// A counting HTTP server: answers `{"n": <request number>, "path": ...}`.
fn counting_server() -> (Requests, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests: Requests = Arc::default();
    let r = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let r = r.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
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
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])
                    .unwrap_or(Value::Null);
                let n = {
                    let mut all = r.lock().expect("lock");
                    let n = all.len() as u64 + 1;
                    all.push((path.clone(), body, n));
                    n
                };
                let answer = json!({"n": n, "path": path}).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    (requests, url)
}

fn definition() -> Value {
    json!({
        "StartAt": "Fan out",
        "States": {
            "Fan out": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                "ItemSelector": {"item.$": "$$.Map.Item.Value", "key.$": "$.key", "url.$": "$.url"},
                "ItemProcessor": {"StartAt": "Call", "States": {"Call": {
                    "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                    "Parameters": {"ApiEndpoint.$": "States.Format('{}/item/{}/{}', $.url, $.key, $.item)",
                                   "Method": "POST", "RequestBody": {"item.$": "$.item"}},
                    "ResultSelector": {"n.$": "$.ResponseBody.n", "path.$": "$.ResponseBody.path"},
                    "End": true}}},
                "ResultPath": "$.calls",
                "Next": "Pause"
            },
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Ask"},
            "Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::http:invoke.waitForTaskToken",
                "Parameters": {"ApiEndpoint.$": "States.Format('{}/callback/{}', $.url, $.key)",
                               "Method": "POST", "RequestBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 120,
                "ResultPath": "$.answer",
                "Next": "Done"
            },
            "Done": {"Type": "Pass", "Parameters": {"key.$": "$.key", "calls.$": "$.calls", "answer.$": "$.answer"}, "End": true}
        }
    })
}

#[test]
fn sigkill_during_many_executions_then_every_one_finishes_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (requests, url) = counting_server();
    let mut server = start(&data);
    let machine = ok(
        &server.addr,
        "CreateStateMachine",
        json!({
        "name": "crash", "definition": definition().to_string(),
        "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )["stateMachineArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    let start_wave = |addr: &str, range: std::ops::Range<usize>| -> Vec<(String, String)> {
        range
            .map(|i| {
                let key = format!("x{i}");
                let input = json!({"url": url, "key": key, "items": ITEMS}).to_string();
                let out = ok(
                    addr,
                    "StartExecution",
                    json!({"stateMachineArn": machine, "name": key, "input": input}),
                );
                (key, out["executionArn"].as_str().expect("arn").to_owned())
            })
            .collect()
    };
    let mut arns = start_wave(&server.addr, 0..EXECUTIONS / 2);

    // Answer callbacks as their tokens arrive. Once a tenth are answered, start the
    // second half and SIGKILL the server while those run their Maps (the first half
    // being in Waits, waiting for callbacks or done), start it again, and go on until
    // every execution has ended.
    let mut answered: HashSet<(String, String)> = HashSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "executions did not finish in 120 s"
        );
        let tokens: Vec<(String, String)> = requests
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(path, body, _)| {
                Some((
                    path.strip_prefix("/callback/")?.to_owned(),
                    body["token"].as_str()?.to_owned(),
                ))
            })
            .collect();
        for (key, token) in tokens {
            if answered.contains(&(key.clone(), token.clone())) {
                continue;
            }
            let output = json!({"by": key}).to_string();
            match call(
                &server.addr,
                "SendTaskSuccess",
                &json!({"taskToken": token, "output": output}),
            ) {
                Some((200, _)) => {
                    answered.insert((key, token));
                }
                Some((_, e))
                    if e["__type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("TaskTimedOut")) =>
                {
                    // The same token sent again after the restart, already answered.
                    answered.insert((key, token));
                }
                _ => {}
            }
        }
        if !killed && answered.len() >= EXECUTIONS / 10 {
            arns.extend(start_wave(&server.addr, EXECUTIONS / 2..EXECUTIONS));
            let made = requests.lock().expect("lock").len();
            eprintln!(
                "SIGKILL with {} callbacks answered and {made} HTTP requests made",
                answered.len()
            );
            server.child.kill().expect("SIGKILL");
            server.child.wait().expect("wait");
            killed = true;
            server = start(&data);
        }
        let running = ok(
            &server.addr,
            "ListExecutions",
            json!({"stateMachineArn": machine, "statusFilter": "RUNNING"}),
        );
        if killed && running["executions"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let requests = requests.lock().expect("lock").clone();
    let mut last_call: HashMap<String, u64> = HashMap::new();
    for (path, _, n) in &requests {
        let e = last_call.entry(path.clone()).or_insert(0);
        *e = (*e).max(*n);
    }
    let mut repeated = 0;
    for (key, arn) in &arns {
        let d = ok(
            &server.addr,
            "DescribeExecution",
            json!({"executionArn": arn}),
        );
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
        let output: Value =
            serde_json::from_str(d["output"].as_str().expect("output")).expect("json");
        // The output of an uninterrupted run, but for the request numbers.
        assert_eq!(output["key"], key.as_str());
        assert_eq!(output["answer"], json!({"by": key}));
        let calls = output["calls"].as_array().expect("calls");
        let paths: Vec<String> = calls
            .iter()
            .filter_map(|c| c["path"].as_str().map(str::to_owned))
            .collect();
        let expected: Vec<String> = ITEMS.iter().map(|i| format!("/item/{key}/{i}")).collect();
        assert_eq!(paths, expected);
        // A journalled success is never followed by another call of the same task:
        // the result the execution kept is the last call made.
        for c in calls {
            let path = c["path"].as_str().expect("path");
            assert_eq!(
                c["n"].as_u64(),
                last_call.get(path).copied(),
                "{path} was called after its success was journalled"
            );
            let made = requests.iter().filter(|(p, _, _)| p == path).count();
            assert!(made <= 2, "{path} called {made} times");
            repeated += made - 1;
        }
        let history = ok(
            &server.addr,
            "GetExecutionHistory",
            json!({"executionArn": arn, "maxResults": 1000}),
        );
        let types: Vec<&str> = history["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(
            types.iter().filter(|t| **t == "ExecutionStarted").count(),
            1
        );
        assert_eq!(
            types.iter().filter(|t| **t == "TaskSucceeded").count(),
            ITEMS.len() + 1,
            "{types:?}"
        );
        assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    }
    eprintln!(
        "{EXECUTIONS} executions, {} HTTP requests, {repeated} item calls repeated after the SIGKILL (in flight, not journalled)",
        requests.len()
    );
    server.child.kill().expect("kill");
    server.child.wait().expect("wait");
}
