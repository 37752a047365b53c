//! `gantry server` as a process: the first admin key printed once, a
//! SIGKILL in the middle of a build, a restart that marks the build FAILED,
//! and SIGTERM for a clean exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::{Value, json};

struct Running {
    child: Child,
    addr: String,
    lines: Vec<String>,
}

/// Starts `gantry server` on port 0 and reads stdout up to the line with
/// the AWS CLI hint (everything printed at start).
fn start(data_dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("GANTRY_ADMIN_ACCESS_KEY_ID")
        .env_remove("GANTRY_ADMIN_SECRET_ACCESS_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gantry server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("server did not print its start-up text: {lines:#?}"));
        let done = line.contains("boto3.client(");
        lines.push(line);
        if done {
            break;
        }
    }
    let addr = lines
        .iter()
        .find_map(|l| l.split("listening on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("listening line")
        .to_owned();
    Running { child, addr, lines }
}

fn call(addr: &str, key: &(String, String), operation: &str, input: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(input).expect("json");
    let target = format!("CodeBuild_20161006.{operation}");
    let unsigned = RequestParts::new("POST", "/")
        .header("Host", addr)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", &target)
        .body(&body);
    let creds = Credentials::new(key.0.clone(), key.1.clone());
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service: "codebuild",
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in signed.pairs() {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(&body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "unexpected chunked response"
    );
    let value = serde_json::from_slice(&response[split + 4..]).expect("JSON body");
    (status, value)
}

fn build_of(addr: &str, key: &(String, String), id: &str) -> Value {
    let (status, out) = call(addr, key, "BatchGetBuilds", &json!({ "ids": [id] }));
    assert_eq!(status, 200, "{out}");
    out["builds"][0].clone()
}

#[test]
fn server_prints_a_key_survives_sigkill_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut first = start(&data);
    let export = |name: &str| {
        first
            .lines
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("export {name}="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {name} in {:#?}", first.lines))
    };
    let key = (export("AWS_ACCESS_KEY_ID"), export("AWS_SECRET_ACCESS_KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("secret.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let addr = first.addr.clone();
    let project = json!({
        "name": "slow",
        "source": {"type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 20\n"},
        "artifacts": {"type": "NO_ARTIFACTS"},
        "environment": {"type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL"},
        "serviceRole": "gantry"
    });
    let (status, out) = call(&addr, &key, "CreateProject", &project);
    assert_eq!(status, 200, "{out}");
    let (status, out) = call(&addr, &key, "StartBuild", &json!({"projectName": "slow"}));
    assert_eq!(status, 200, "{out}");
    let id = out["build"]["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while build_of(&addr, &key, &id)["currentPhase"] != "BUILD" {
        assert!(Instant::now() < deadline, "the build never reached BUILD");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no chance to record anything.
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");

    let mut second = start(&data);
    assert!(
        second
            .lines
            .iter()
            .any(|l| l.contains(&id) && l.contains("FAILED")),
        "{:#?}",
        second.lines
    );
    assert!(
        !second
            .lines
            .iter()
            .any(|l| l.contains("AWS_SECRET_ACCESS_KEY")),
        "the key is printed only on the first start"
    );
    let build = build_of(&second.addr, &key, &id);
    assert_eq!(build["buildStatus"], "FAILED", "{build}");
    let phase = build["phases"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["phaseType"] == "BUILD"))
        .expect("BUILD phase")
        .clone();
    assert_eq!(phase["contexts"][0]["statusCode"], "SERVER_RESTARTED");
    let (status, out) = call(&second.addr, &key, "ListProjects", &json!({}));
    assert_eq!((status, out["projects"].clone()), (200, json!(["slow"])));

    // SIGTERM: a clean exit.
    let pid = second.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
