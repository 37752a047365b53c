//! The client commands against a real `gantry server` process: `pipeline
//! list|show|start|stop`, `run show`, `approve`, `reject` and `logs -f`,
//! with their exit codes and `--json` shapes, and the errors for a missing
//! server or key.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{CODEBUILD, CODEPIPELINE, Running, call, repository, start, start_on};

const KEY: (&str, &str) = ("GANTRYCLIENTCLI", "client/cli+Secret/Key=0123456789abcdef");

fn ok(server: &Running, service: support::Service, operation: &str, input: Value) -> Value {
    let (status, out) =
        call(&server.addr, KEY, service, operation, &input).expect("server reachable");
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

/// Source, a build that logs over a second, a manual approval.
fn declaration(url: &str) -> Value {
    json!({
        "name": "app",
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "stages": [
            { "name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
                "configuration": { "RepositoryUrl": url, "BranchName": "main" },
                "outputArtifacts": [{ "name": "Src" }]
            }]},
            { "name": "Build", "actions": [{
                "name": "Compile",
                "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                "configuration": { "ProjectName": "compile" },
                "inputArtifacts": [{ "name": "Src" }]
            }]},
            { "name": "Approve", "actions": [{
                "name": "Release",
                "actionTypeId": { "category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1" }
            }]}
        ]
    })
}

/// `gantry ARGS` with the server and key in the environment.
fn gantry(server: &Running, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_SERVER", format!("http://{}", server.addr))
        .env("GANTRY_ACCESS_KEY_ID", KEY.0)
        .env("GANTRY_SECRET_ACCESS_KEY", KEY.1)
        .output()
        .expect("gantry runs")
}

/// `gantry ARGS --json`, which must exit 0; its stdout as JSON.
fn gantry_json(server: &Running, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = gantry(server, &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: not JSON: {}", text(&out.stdout)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `gantry run show --json` until `pick` finds something.
fn wait_run<T>(server: &Running, id: &str, what: &str, pick: impl Fn(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let run = gantry_json(server, &["run", "show", "app", id]);
        if let Some(found) = pick(&run) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn action<'a>(run: &'a Value, stage: &str) -> &'a Value {
    &run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == stage)
        .expect("stage")["actions"][0]
}

fn waiting(run: &Value) -> Option<()> {
    action(run, "Approve")["approvalToken"]
        .is_string()
        .then_some(())
}

fn start_run(server: &Running) -> String {
    let started = gantry_json(server, &["pipeline", "start", "app"]);
    started["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[test]
fn client_commands_drive_a_pipeline_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repository(dir.path());
    let server = start(&dir.path().join("data"), KEY);

    // No server, no key: usage errors, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["pipeline", "list"])
        .env_remove("GANTRY_SERVER")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("GANTRY_SERVER"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["run", "show", "app", "x", "--server"])
        .arg(format!("http://{}", server.addr))
        .env_remove("GANTRY_ACCESS_KEY_ID")
        .env_remove("GANTRY_SECRET_ACCESS_KEY")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("GANTRY_ACCESS_KEY_ID"),
        "{}",
        text(&out.stderr)
    );

    ok(
        &server,
        CODEBUILD,
        "CreateProject",
        json!({
            "name": "compile",
            "source": { "type": "CODEPIPELINE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo compiling $(cat version.txt)\n      - sleep 1\n      - echo compiled\n" },
            "artifacts": { "type": "CODEPIPELINE" },
            "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
            "serviceRole": "arn:aws:iam::000000000000:role/gantry"
        }),
    );
    ok(
        &server,
        CODEPIPELINE,
        "CreatePipeline",
        json!({ "pipeline": declaration(&url) }),
    );

    let listed = gantry_json(&server, &["pipeline", "list"]);
    assert_eq!(listed["pipelines"][0]["name"], "app", "{listed}");
    let out = gantry(&server, &["pipeline", "list"]);
    assert!(
        text(&out.stdout).starts_with("app "),
        "{}",
        text(&out.stdout)
    );
    let shown = gantry_json(&server, &["pipeline", "show", "app"]);
    assert_eq!(shown["stages"].as_array().map(Vec::len), Some(3));

    // Start; follow the build's log to its end.
    let id = start_run(&server);
    let build = wait_run(&server, &id, "the build", |run| {
        action(run, "Build")["buildId"].as_str().map(str::to_owned)
    });
    let followed = gantry(&server, &["logs", &build, "-f"]);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{}",
        text(&followed.stderr)
    );
    assert!(text(&followed.stderr).contains("build ended: SUCCEEDED"));
    let whole = gantry(&server, &["logs", &build]);
    assert_eq!(text(&followed.stdout), text(&whole.stdout));
    assert!(
        text(&whole.stdout).contains("compiling 1\n"),
        "{}",
        text(&whole.stdout)
    );
    assert!(text(&whole.stdout).contains("compiled\n"));
    let as_json = gantry_json(&server, &["logs", &build]);
    assert_eq!(as_json["text"], text(&whole.stdout));
    assert_eq!(as_json["offset"], whole.stdout.len());

    // The approval waits; approve it without naming it.
    wait_run(&server, &id, "the approval", waiting);
    let human = gantry(&server, &["run", "show", "app", &id]);
    assert!(
        text(&human.stdout).contains("waiting for approval"),
        "{}",
        text(&human.stdout)
    );
    assert!(text(&human.stdout).contains(&format!("build {build}")));
    let approved = gantry_json(&server, &["approve", "app", &id, "--summary", "fine"]);
    assert_eq!(
        (
            approved["stage"].as_str(),
            approved["action"].as_str(),
            approved["status"].as_str()
        ),
        (Some("Approve"), Some("Release"), Some("Approved"))
    );
    wait_run(&server, &id, "success", |run| {
        (run["status"] == "Succeeded").then_some(())
    });
    let again = gantry(&server, &["approve", "app", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("no approval is waiting"),
        "{}",
        text(&again.stderr)
    );

    // A second run is rejected by stage and action.
    let second = start_run(&server);
    wait_run(&server, &second, "the approval", waiting);
    let out = gantry(
        &server,
        &[
            "reject", "app", &second, "--stage", "Approve", "--action", "Release",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_run(&server, &second, "the rejection", |run| {
        (run["status"] == "Failed").then_some(())
    });

    // A third is stopped, abandoning the approval; stopping it again fails.
    let third = start_run(&server);
    wait_run(&server, &third, "the approval", waiting);
    let stopped = gantry_json(
        &server,
        &[
            "pipeline",
            "stop",
            "app",
            &third,
            "--abandon",
            "--reason",
            "not today",
        ],
    );
    assert_eq!(stopped["pipelineExecutionId"], third.as_str());
    let run = wait_run(&server, &third, "the stop", |run| {
        (run["status"] == "Stopped").then(|| run.clone())
    });
    assert_eq!(run["statusSummary"], "not today");
    let out = gantry(&server, &["pipeline", "stop", "app", &third]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Conflict"),
        "{}",
        text(&out.stderr)
    );

    // The server's error, exit 1.
    let out = gantry(&server, &["pipeline", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("NotFound"),
        "{}",
        text(&out.stderr)
    );
    let out = gantry(
        &server,
        &["pipeline", "start", "app", "--variable", "novalue"],
    );
    assert_eq!(out.status.code(), Some(2));
    server.kill();
}

#[test]
fn logs_follow_reconnects_after_the_server_restarts_without_repeating_a_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, KEY);
    let addr = server.addr.clone();
    ok(
        &server,
        CODEBUILD,
        "CreateProject",
        json!({
            "name": "long",
            "source": { "type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo first\n      - sleep 300\n" },
            "artifacts": { "type": "NO_ARTIFACTS" },
            "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
            "serviceRole": "arn:aws:iam::000000000000:role/gantry"
        }),
    );
    let build = ok(
        &server,
        CODEBUILD,
        "StartBuild",
        json!({ "projectName": "long" }),
    )["build"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["logs", &build, "-f"])
        .env("GANTRY_SERVER", format!("http://{addr}"))
        .env("GANTRY_ACCESS_KEY_ID", KEY.0)
        .env("GANTRY_SECRET_ACCESS_KEY", KEY.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gantry logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("first") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            line.clear();
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the follower printed the first line");
    // Kill the server mid-build and start it again on the same address:
    // the build is marked FAILED at start-up, and the follower, which lost
    // its connection, resumes from its offset and sees the end.
    server.kill();
    let restarted = start_on(&data, KEY, &addr);
    let status = follower.wait().expect("follower exits");
    let followed = reader.join().expect("reader");
    let mut stderr = String::new();
    if let Some(mut e) = follower.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("build ended: FAILED"), "{stderr}");
    let whole = gantry(&restarted, &["logs", &build]);
    assert_eq!(
        followed,
        text(&whole.stdout),
        "nothing repeated, nothing missing"
    );
    assert_eq!(
        followed.lines().filter(|l| *l == "first").count(),
        1,
        "{followed}"
    );
    restarted.kill();
}
