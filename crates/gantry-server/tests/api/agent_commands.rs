//! Step Functions' `arn:aws:states:::gantry:agent:runCommand` against the
//! in-process server and real agents (host executor): output, labels,
//! failures caught by Catch, refused parameters, StopExecution, a server
//! restart in the middle of a command, and the command job's protocol
//! (log lines kept in the store) driven by hand.

use std::path::Path;
use std::time::Duration;

use gantry_agent::Client;
use gantry_agent::protocol::{CommandOutcome, JobResult, LogChunk, LogItem, Payload, Register};
use gantry_store::BuildStore;
use serde_json::{Value, json};

use super::agents::{spawn_agent, stop_agent, token};
use super::harness::{Db, SECRET, STEP_FUNCTIONS, TestServer, open_store};

async fn sfn(server: &TestServer, operation: &str, input: Value) -> Value {
    let (status, out) = server.aws(STEP_FUNCTIONS, SECRET, operation, &input).await;
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

async fn machine(server: &TestServer, name: &str, definition: Value) -> String {
    let out = sfn(
        server,
        "CreateStateMachine",
        json!({"name": name, "definition": definition.to_string(), "type": "STANDARD",
               "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )
    .await;
    out["stateMachineArn"].as_str().expect("arn").to_owned()
}

async fn start(server: &TestServer, machine: &str, input: Value) -> String {
    let out = sfn(
        server,
        "StartExecution",
        json!({"stateMachineArn": machine, "input": input.to_string()}),
    )
    .await;
    out["executionArn"].as_str().expect("arn").to_owned()
}

async fn status(server: &TestServer, arn: &str) -> Value {
    sfn(server, "DescribeExecution", json!({"executionArn": arn})).await
}

/// Polls until the execution is no longer RUNNING.
async fn wait_done(server: &TestServer, arn: &str) -> Value {
    for _ in 0..1200 {
        let d = status(server, arn).await;
        if d["status"] != "RUNNING" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{arn} did not finish in 60 s");
}

fn output(done: &Value) -> Value {
    serde_json::from_str(done["output"].as_str().expect("output")).expect("output is JSON")
}

async fn wait_for_file(path: &Path) {
    for _ in 0..1200 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} did not appear in 60 s", path.display());
}

fn one_task(parameters: Value) -> Value {
    json!({"StartAt": "Run", "States": {
        "Run": {"Type": "Task", "Resource": "arn:aws:states:::gantry:agent:runCommand",
                "Parameters": parameters, "End": true}}})
}

crate::on_both_stores!(
    a_task_runs_its_command_on_an_agent_with_its_labels_once_one_registers,
    a_task_runs_its_command_on_an_agent_with_its_labels_once_one_registers_on,
    a_task_runs_its_command_on_an_agent_with_its_labels_once_one_registers_on_postgres
);

async fn a_task_runs_its_command_on_an_agent_with_its_labels_once_one_registers_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_on(&db, &dir.path().join("data")).await;
    let (token, _) = token(&server).await;
    let plain_work = dir.path().join("plain");
    let (drain_plain, plain) = spawn_agent(&server, &token, &["linux"], "plain", &plain_work);
    let m = machine(
        &server,
        "echo",
        one_task(
            json!({"Command": "pwd; echo hi $WHO; echo warn >&2; exit 0",
                        "Labels": ["linux", "gpu"], "Env": {"WHO.$": "$.who"}}),
        ),
    )
    .await;
    let arn = start(&server, &m, json!({"who": "sfn"})).await;
    // Nobody has both labels: the command waits in the queue (the plain
    // agent polls all along and is never offered it).
    for _ in 0..40 {
        assert_eq!(status(&server, &arn).await["status"], "RUNNING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !std::fs::read_dir(&plain_work)
            .expect("work dir")
            .any(|e| e.is_ok()),
        "the plain agent ran nothing"
    );
    let gpu_work = dir.path().join("gpu");
    let (drain_gpu, gpu) = spawn_agent(&server, &token, &["gpu", "linux"], "gpu", &gpu_work);
    let done = wait_done(&server, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let out = output(&done);
    assert_eq!(out["ExitCode"], 0, "{out}");
    let stdout = out["Stdout"].as_str().expect("Stdout");
    let mut lines = stdout.lines();
    let pwd = lines.next().expect("pwd");
    assert!(
        Path::new(pwd).starts_with(&gpu_work),
        "ran in the gpu agent's work dir: {pwd}"
    );
    assert_eq!(lines.next(), Some("hi sfn"), "{stdout}");
    assert_eq!(out["Stderr"], "warn\n");
    stop_agent(drain_plain, plain).await;
    stop_agent(drain_gpu, gpu).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_is_caught_and_bad_parameters_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "box", &dir.path().join("work"));
    let caught = machine(
        &server,
        "caught",
        json!({"StartAt": "Run", "States": {
            "Run": {"Type": "Task", "Resource": "arn:aws:states:::gantry:agent:runCommand.sync",
                    "Parameters": {"Commands": ["echo before", "echo bad >&2; exit 7", "echo never"]},
                    "Catch": [{"ErrorEquals": ["Gantry.CommandFailed"], "ResultPath": "$.error",
                               "Next": "Handled"}],
                    "End": true},
            "Handled": {"Type": "Pass", "End": true}}}),
    )
    .await;
    let done = wait_done(&server, &start(&server, &caught, json!({})).await).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let error = &output(&done)["error"];
    assert_eq!(error["Error"], "Gantry.CommandFailed", "{error}");
    let cause: Value =
        serde_json::from_str(error["Cause"].as_str().expect("cause")).expect("cause is JSON");
    assert_eq!(cause["ExitCode"], 7, "{cause}");
    assert_eq!(cause["CommandIndex"], 2, "{cause}");
    assert_eq!(cause["Command"], "echo bad >&2; exit 7");
    assert_eq!(cause["Stdout"], "before\n", "the third command never ran");
    assert_eq!(cause["Stderr"], "bad\n");

    // Parameters are checked before anything is queued; the error names the field.
    let bad = machine(
        &server,
        "bad",
        one_task(json!({"Commands": "echo not a list"})),
    )
    .await;
    let done = wait_done(&server, &start(&server, &bad, json!({})).await).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"], "Gantry.InvalidParameters", "{done}");
    assert!(
        done["cause"]
            .as_str()
            .expect("cause")
            .contains("Commands must be a list"),
        "{done}"
    );
    // What the agent cannot even start fails with Gantry.AgentError.
    let nowhere = machine(
        &server,
        "nowhere",
        one_task(json!({"Command": "true", "WorkingDirectory": "/nonexistent/gantry-test"})),
    )
    .await;
    let done = wait_done(&server, &start(&server, &nowhere, json!({})).await).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"], "Gantry.AgentError", "{done}");
    assert!(
        done["cause"]
            .as_str()
            .expect("cause")
            .contains("/nonexistent/gantry-test"),
        "{done}"
    );
    // JSONata's Arguments work as Parameters do.
    let jsonata = machine(
        &server,
        "jsonata",
        json!({"QueryLanguage": "JSONata", "StartAt": "Run", "States": {
            "Run": {"Type": "Task", "Resource": "arn:aws:states:::gantry:agent:runCommand",
                    "Arguments": {"Command": "echo $W",
                                  "Env": {"W": "{% $states.input.word %}"}},
                    "End": true}}}),
    )
    .await;
    let done = wait_done(
        &server,
        &start(&server, &jsonata, json!({"word": "jsonata"})).await,
    )
    .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(output(&done)["Stdout"], "jsonata\n");
    // A time limit that runs out fails the task with States.Timeout.
    let slow = machine(
        &server,
        "slow",
        one_task(json!({"Command": "echo started; sleep 600", "TimeoutSeconds": 1})),
    )
    .await;
    let done = wait_done(&server, &start(&server, &slow, json!({})).await).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"], "States.Timeout", "{done}");
    let cause: Value = serde_json::from_str(done["cause"].as_str().expect("cause")).expect("JSON");
    assert_eq!(cause["Stdout"], "started\n", "{cause}");
    stop_agent(drain, agent).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_execution_or_timing_out_its_state_kills_its_command_on_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        // Heartbeats (which carry the stop) go at a third of this.
        c.lease_timeout = Duration::from_millis(900);
    })
    .await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "box", &dir.path().join("work"));
    let pid_file = dir.path().join("pid");
    let m = machine(
        &server,
        "forever",
        one_task(json!({"Command": format!("echo $$ > {}.tmp && mv {0}.tmp {0}; sleep 600", pid_file.display())})),
    )
    .await;
    let arn = start(&server, &m, json!({})).await;
    wait_for_file(&pid_file).await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid");
    let pid = pid.trim();
    sfn(&server, "StopExecution", json!({"executionArn": arn})).await;
    assert_eq!(status(&server, &arn).await["status"], "ABORTED");
    // The agent hears of it at its next heartbeat and kills the command.
    let mut gone = false;
    for _ in 0..1200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => gone = true,
            Ok(stat) if stat.contains(") Z ") => gone = true,
            Ok(_) => {}
        }
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the command {pid} still runs after StopExecution");

    // The state's TimeoutSeconds (shorter than the command's own limit)
    // times the task out and cancels its job the same way.
    let pid_file = dir.path().join("pid2");
    let m = machine(
        &server,
        "state-timeout",
        json!({"StartAt": "Run", "States": {
            "Run": {"Type": "Task", "Resource": "arn:aws:states:::gantry:agent:runCommand",
                    "TimeoutSeconds": 1,
                    "Parameters": {"Command": format!("echo $$ > {}.tmp && mv {0}.tmp {0}; sleep 600", pid_file.display()),
                                   "TimeoutSeconds": 600},
                    "End": true}}}),
    )
    .await;
    let arn = start(&server, &m, json!({})).await;
    wait_for_file(&pid_file).await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid");
    let pid = pid.trim();
    let done = wait_done(&server, &arn).await;
    assert_eq!(done["error"], "States.Timeout", "{done}");
    let mut gone = false;
    for _ in 0..1200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => gone = true,
            Ok(stat) if stat.contains(") Z ") => gone = true,
            Ok(_) => {}
        }
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the command {pid} still runs after its state timed out"
    );
    stop_agent(drain, agent).await;
    server.stop().await;
}

crate::on_both_stores!(
    a_restarted_server_follows_the_running_command_instead_of_running_it_again,
    a_restarted_server_follows_the_running_command_instead_of_running_it_again_on,
    a_restarted_server_follows_the_running_command_instead_of_running_it_again_on_postgres
);

async fn a_restarted_server_follows_the_running_command_instead_of_running_it_again_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_on(&db, &data).await;
    let addr = server.addr;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "box", &dir.path().join("work"));
    let (runs, started, go) = (
        dir.path().join("runs"),
        dir.path().join("started"),
        dir.path().join("go"),
    );
    let command = format!(
        "echo run >> {runs}; echo before; touch {started}; \
         while [ ! -f {go} ]; do sleep 0.05; done; echo after",
        runs = runs.display(),
        started = started.display(),
        go = go.display()
    );
    let m = machine(&server, "restart", one_task(json!({"Command": command}))).await;
    let arn = start(&server, &m, json!({})).await;
    wait_for_file(&started).await;
    server.stop().await;

    // The same address, so the agent (retrying all along) finds it again.
    let server = TestServer::start_at(addr, &data, |c| db.apply(c)).await;
    std::fs::write(&go, "").expect("go");
    let done = wait_done(&server, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let out = output(&done);
    assert_eq!(out["Stdout"], "before\nafter\n", "{out}");
    assert_eq!(
        std::fs::read_to_string(&runs).expect("runs"),
        "run\n",
        "the command ran once"
    );
    stop_agent(drain, agent).await;
    server.stop().await;
}

/// The protocol of a command job by hand: an agent that says it runs
/// `command` jobs is offered one, its log chunks are stored under the
/// job's id (once, in order), and its result ends the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_jobs_log_lines_are_stored_and_its_result_ends_the_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start(&data).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let registered = client
        .register(&Register {
            labels: vec!["manual".into()],
            capacity: 1,
            executor: "host".into(),
            hostname: "manual".into(),
            version: "test".into(),
            kinds: vec!["command".into(), "from-the-future".into()],
        })
        .await
        .expect("register");
    assert!(
        registered.labels.contains(&"kind:command".to_owned()),
        "{:?}",
        registered.labels
    );
    // An agent that predates command jobs (no kinds) has the same labels.
    let old = client
        .register(&Register {
            labels: vec!["manual".into()],
            capacity: 1,
            executor: "host".into(),
            hostname: "old".into(),
            version: "old".into(),
            kinds: Vec::new(),
        })
        .await
        .expect("register");
    assert!(!old.labels.contains(&"kind:command".to_owned()));
    let m = machine(
        &server,
        "manual",
        one_task(
            json!({"Commands": ["echo a", "echo b"], "Labels": ["manual"],
                        "WorkingDirectory": "/tmp", "TimeoutSeconds": 42}),
        ),
    )
    .await;
    let arn = start(&server, &m, json!({})).await;
    // It is not offered the job (its poll is held, answered by nothing).
    match tokio::time::timeout(Duration::from_millis(500), client.poll(&old.agent_id)).await {
        Err(_) | Ok(Ok(None)) => {}
        Ok(other) => panic!("an agent without the command kind got {other:?}"),
    }
    let offer = client
        .poll(&registered.agent_id)
        .await
        .expect("poll")
        .expect("an offer");
    assert_eq!(offer.kind, "command");
    let lease = client.ack(&registered.agent_id, &offer).await.expect("ack");
    let Payload::Command(payload) = &lease.payload else {
        panic!("a command payload: {:?}", lease.payload);
    };
    assert_eq!(payload.commands, ["echo a", "echo b"]);
    assert_eq!(payload.working_directory.as_deref(), Some("/tmp"));
    assert_eq!(payload.timeout_seconds, 42);
    assert_eq!(payload.execution_arn, arn);
    let chunk = |seq: u64, lines: &[&str]| LogChunk {
        epoch: lease.epoch,
        seq,
        items: lines.iter().map(|l| LogItem::Line(l.to_string())).collect(),
    };
    assert_eq!(
        client
            .logs(&lease.job_id, &chunk(1, &["a"]))
            .await
            .expect("1")
            .acked,
        1
    );
    // A chunk sent again is not stored again.
    assert_eq!(
        client
            .logs(&lease.job_id, &chunk(1, &["a"]))
            .await
            .expect("1")
            .acked,
        1
    );
    assert_eq!(
        client
            .logs(&lease.job_id, &chunk(2, &["b"]))
            .await
            .expect("2")
            .acked,
        2
    );
    // The result waits for every chunk it names.
    let mut result = JobResult {
        epoch: lease.epoch,
        last_seq: 3,
        build: None,
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: Some(CommandOutcome {
            exit_code: 0,
            command_index: 2,
            command_count: 2,
            stdout: "a\nb\n".into(),
            stderr: String::new(),
            timed_out: false,
            stopped: false,
        }),
        log: None,
    };
    assert!(client.result(&lease.job_id, &result).await.is_err());
    result.last_seq = 2;
    client.result(&lease.job_id, &result).await.expect("result");
    let done = wait_done(&server, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        output(&done),
        json!({"ExitCode": 0, "Stdout": "a\nb\n", "Stderr": ""})
    );
    let store = open_store(&data).await;
    let lines: Vec<String> = store
        .log_lines(&lease.job_id, 0, 100)
        .await
        .expect("log lines")
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(lines, ["a", "b"]);
    server.stop().await;
}

/// An agent that takes the command and stops answering loses its lease;
/// the job goes back to the queue, and after its last attempt the task
/// fails with Gantry.AgentLost (which a Retry can name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_agents_keep_vanishing_fails_with_agent_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.lease_timeout = Duration::from_millis(300);
    })
    .await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client
        .register(&Register {
            labels: Vec::new(),
            capacity: 1,
            executor: "host".into(),
            hostname: "vanishing".into(),
            version: "test".into(),
            kinds: vec!["command".into()],
        })
        .await
        .expect("register");
    let m = machine(&server, "lost", one_task(json!({"Command": "true"}))).await;
    let arn = start(&server, &m, json!({})).await;
    // Three leases (the job's attempts), none renewed: each runs out and
    // the job is offered again, until the last.
    for attempt in 1..=3 {
        let offer = client
            .poll(&agent.agent_id)
            .await
            .expect("poll")
            .unwrap_or_else(|| panic!("attempt {attempt} is offered"));
        let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
        assert_eq!(lease.epoch, attempt);
    }
    let done = wait_done(&server, &arn).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"], "Gantry.AgentLost", "{done}");
    assert!(
        done["cause"]
            .as_str()
            .expect("cause")
            .contains("attempt 3 of 3"),
        "{done}"
    );
    server.stop().await;
}
