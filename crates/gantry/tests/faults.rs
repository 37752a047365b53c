//! Fault tests across hosts: `gantry server`s, agents and PostgreSQL as
//! Docker containers on a private network (see `support/cluster.rs`),
//! killed, restarted and cut off while they work.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use serde_json::json;

const KEY: (&str, &str) = ("GANTRYFAULTKEY", "fault/test+secret/0123456789abcdef");

fn admin_env() -> [(&'static str, &'static str); 2] {
    [
        ("GANTRY_ADMIN_ACCESS_KEY_ID", KEY.0),
        ("GANTRY_ADMIN_SECRET_ACCESS_KEY", KEY.1),
    ]
}

/// The smallest cross-host check: a server in a container serves the host,
/// dies by SIGKILL, and comes back on its own data.
#[test]
fn a_server_container_killed_and_restarted_keeps_its_data() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("smoke");
    let server = net.gantry(
        "server",
        &admin_env(),
        &[
            "server",
            "--listen",
            "0.0.0.0:8080",
            "--data-dir",
            "/data/gantry",
        ],
    );
    let addr = format!("{}:8080", server.ip());
    server.wait_until(Duration::from_secs(30), "the server answers", || {
        support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some()
    });
    let project = json!({
        "name": "survivor",
        "source": { "type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n" },
        "artifacts": { "type": "NO_ARTIFACTS" },
        "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    });
    let (status, created) =
        support::call(&addr, KEY, support::CODEBUILD, "CreateProject", &project)
            .expect("reachable");
    assert_eq!(status, 200, "{created}");

    server.kill();
    server.start();
    let addr = format!("{}:8080", server.ip());
    server.wait_until(
        Duration::from_secs(30),
        "the restarted server answers",
        || support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some(),
    );
    let (_, listed) = support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({}))
        .expect("reachable");
    assert_eq!(listed["projects"], json!(["survivor"]), "{listed}");
}

/// PostgreSQL in its own container comes up from the host's binaries and
/// keeps its data across a kill: the ground the PostgreSQL fault scenarios
/// stand on.
#[test]
fn a_postgres_container_serves_the_network_and_survives_a_kill() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("pg");
    let pg = net.postgres("db");
    let pg_isready = "/usr/lib/postgresql/15/bin/pg_isready";
    pg.kill();
    pg.start();
    pg.wait_until(Duration::from_secs(60), "PostgreSQL is back", || {
        pg.exec(&[pg_isready, "-h", "127.0.0.1", "-U", "gantry", "-q"])
            .status
            .success()
    });
    assert!(
        pg.logs().contains("database system was interrupted")
            || pg.logs().contains("ready to accept connections"),
        "{}",
        pg.logs()
    );
}

/// A server with no local agent and a short lease, in a container of
/// `net`; returns it with the address the host reaches it at.
fn lease_server(net: &cluster::Network, extra: &[&str]) -> (cluster::Container, String) {
    let mut args = vec![
        "server",
        "--listen",
        "0.0.0.0:8080",
        "--data-dir",
        "/data/gantry",
        "--no-local-agent",
        "--lease-timeout",
        "3",
    ];
    args.extend_from_slice(extra);
    let server = net.gantry("server", &admin_env(), &args);
    let addr = format!("{}:8080", server.ip());
    server.wait_until(Duration::from_secs(30), "the server answers", || {
        support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some()
    });
    (server, addr)
}

/// An agent token, made with `gantry agent-token create --json` from the host.
fn agent_token(addr: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["agent-token", "create", "--name", "fault", "--json"])
        .env("GANTRY_SERVER", format!("http://{addr}"))
        .env("GANTRY_ACCESS_KEY_ID", KEY.0)
        .env("GANTRY_SECRET_ACCESS_KEY", KEY.1)
        .output()
        .expect("gantry agent-token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    created["token"].as_str().expect("token").to_owned()
}

/// `gantry agent` in a container of `net`, on the host executor.
fn agent(net: &cluster::Network, name: &str, token: &str) -> cluster::Container {
    net.gantry(
        name,
        &[("GANTRY_AGENT_TOKEN", token)],
        &[
            "agent",
            "--server",
            "http://server:8080",
            "--executor",
            "host",
            "--work-dir",
            "/data/agent",
        ],
    )
}

/// A project whose build says `start`, sleeps `seconds`, and says `done`.
fn slow_project(addr: &str, name: &str, seconds: u32) {
    let buildspec = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo attempt-start\n      - sleep {seconds}\n      - echo attempt-done\n"
    );
    let project = json!({
        "name": name,
        "source": { "type": "NO_SOURCE", "buildspec": buildspec },
        "artifacts": { "type": "NO_ARTIFACTS" },
        "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    });
    let (status, out) =
        support::call(addr, KEY, support::CODEBUILD, "CreateProject", &project).expect("reachable");
    assert_eq!(status, 200, "{out}");
}

fn start_build(addr: &str, project: &str) -> String {
    let (status, out) = support::call(
        addr,
        KEY,
        support::CODEBUILD,
        "StartBuild",
        &json!({ "projectName": project }),
    )
    .expect("reachable");
    assert_eq!(status, 200, "{out}");
    out["build"]["id"].as_str().expect("id").to_owned()
}

fn build(addr: &str, id: &str) -> serde_json::Value {
    let (_, out) = support::call(
        addr,
        KEY,
        support::CODEBUILD,
        "BatchGetBuilds",
        &json!({ "ids": [id] }),
    )
    .expect("reachable");
    out["builds"][0].clone()
}

/// The build's whole log, read with `gantry logs` from the host.
fn log_of(addr: &str, id: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["logs", id])
        .env("GANTRY_SERVER", format!("http://{addr}"))
        .env("GANTRY_ACCESS_KEY_ID", KEY.0)
        .env("GANTRY_SECRET_ACCESS_KEY", KEY.1)
        .output()
        .expect("gantry logs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_final(server: &cluster::Container, addr: &str, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    server.wait_until(Duration::from_secs(120), "the build ends", || {
        last = build(addr, id);
        last["buildStatus"] != "IN_PROGRESS"
    });
    last
}

fn count(text: &str, word: &str) -> usize {
    text.lines().filter(|l| l.trim_end() == word).count()
}

/// An agent killed in the middle of a job: the job's lease runs out, the
/// job goes to the other agent, and the build succeeds once — the killed
/// attempt's start is in the log, its end never is.
#[test]
fn a_job_whose_agent_is_killed_runs_again_on_another_agent_once() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("agentkill");
    let (server, addr) = lease_server(&net, &[]);
    let token = agent_token(&addr);
    slow_project(&addr, "slow", 4);
    let first = agent(&net, "agent-1", &token);
    let id = start_build(&addr, "slow");
    server.wait_until(
        Duration::from_secs(60),
        "the first agent runs the build",
        || count(&log_of(&addr, &id), "attempt-start") == 1,
    );
    // Killed before the second agent starts: starting a container can
    // take longer than the build's sleep on a loaded machine, and the first
    // agent then finished the job before it was killed.
    first.kill();
    let second = agent(&net, "agent-2", &token);

    let done = wait_final(&server, &addr, &id);
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done:#}");
    let log = log_of(&addr, &id);
    assert_eq!(count(&log, "attempt-start"), 2, "{log}");
    assert_eq!(count(&log, "attempt-done"), 1, "completed once: {log}");
    assert!(done.to_string().contains("AGENT_LEASE_EXPIRED"), "{done:#}");
    drop(second);
}

/// An agent cut off the network for longer than its lease: the job goes
/// to another agent; when the first comes back its late logs and result
/// are refused, and what it logged before the cut is kept.
#[test]
fn an_agent_cut_off_past_its_lease_is_refused_when_it_returns() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("agentcut");
    let (server, addr) = lease_server(&net, &[]);
    let token = agent_token(&addr);
    slow_project(&addr, "cut", 6);
    let first = agent(&net, "agent-1", &token);
    let id = start_build(&addr, "cut");
    server.wait_until(
        Duration::from_secs(60),
        "the first agent runs the build",
        || count(&log_of(&addr, &id), "attempt-start") == 1,
    );
    first.disconnect();
    // Past the 3 s lease and the reaper's check: the job is queued again.
    server.wait_until(Duration::from_secs(30), "the lease runs out", || {
        server.logs().contains("an agent's lease ran out")
    });
    let _second = agent(&net, "agent-2", &token);
    let done = wait_final(&server, &addr, &id);
    // The first agent returns (its build finished while it was cut off)
    // and delivers nothing: the lease is no longer its.
    first.connect();
    first.wait_until(
        Duration::from_secs(30),
        "the first agent hears it lost the lease",
        || {
            let logs = first.logs();
            logs.contains("the lease is lost") || logs.contains("the lease was lost")
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done:#}");
    let after = build(&addr, &id);
    assert_eq!(after["buildStatus"], "SUCCEEDED");
    assert_eq!(
        after["phases"], done["phases"],
        "the late result changed nothing"
    );
    let log = log_of(&addr, &id);
    assert_eq!(
        count(&log, "attempt-start"),
        2,
        "the cut-off attempt's lines are kept: {log}"
    );
    assert_eq!(
        count(&log, "attempt-done"),
        1,
        "its late lines are refused: {log}"
    );
}

fn ok(
    addr: &str,
    service: support::Service,
    operation: &str,
    input: &serde_json::Value,
) -> serde_json::Value {
    let (status, out) = support::call(addr, KEY, service, operation, input)
        .unwrap_or_else(|| panic!("{operation}: {addr} unreachable"));
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

/// A server on the network's PostgreSQL `db`, its data directory (the key
/// files the servers of one database share) bind-mounted from `shared`.
fn pg_server(
    net: &cluster::Network,
    name: &str,
    shared: &std::path::Path,
) -> (cluster::Container, String) {
    pg_server_with(net, name, shared, &[], &[])
}

/// Like [`pg_server`], with more `docker run` options and server flags.
fn pg_server_with(
    net: &cluster::Network,
    name: &str,
    shared: &std::path::Path,
    options: &[&str],
    flags: &[&str],
) -> (cluster::Container, String) {
    let mount = format!("{}:/data/gantry", shared.display());
    let url = cluster::postgres_url("db");
    let mut docker_options = vec!["-v", mount.as_str()];
    docker_options.extend_from_slice(options);
    let mut args = vec![
        "server",
        "--listen",
        "0.0.0.0:8080",
        "--data-dir",
        "/data/gantry",
        "--database",
        &url,
    ];
    args.extend_from_slice(flags);
    let server = net.gantry_with(name, &admin_env(), &docker_options, &args);
    let addr = format!("{}:8080", server.ip());
    server.wait_until(Duration::from_secs(60), "the server answers", || {
        support::call(&addr, KEY, support::CODEBUILD, "ListProjects", &json!({})).is_some()
    });
    (server, addr)
}

/// Two servers on one PostgreSQL; the leader (which delivers events) is
/// killed. Every event either server accepted is still delivered — by the
/// survivor, once the dead leader's lease runs out — and delivered once.
#[test]
fn when_the_leading_server_dies_the_other_delivers_every_accepted_event_once() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("twoservers");
    let _db = net.postgres("db");
    let shared = tempfile::tempdir().expect("tempdir");
    let (leader, leader_addr) = pg_server(&net, "server-a", shared.path());
    // The first server holds the lease before the second starts.
    std::thread::sleep(Duration::from_secs(1));
    let (_other, addr) = pg_server(&net, "server-b", shared.path());

    let definition = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let machine = ok(
        &addr,
        support::STEP_FUNCTIONS,
        "CreateStateMachine",
        &json!({"name": "on-event", "definition": definition.to_string(),
                "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )["stateMachineArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    ok(
        &addr,
        support::EVENTS,
        "PutRule",
        &json!({"Name": "r", "EventPattern": r#"{"source": ["fault.test"]}"#}),
    );
    ok(
        &addr,
        support::EVENTS,
        "PutTargets",
        &json!({"Rule": "r", "Targets": [{"Id": "sm", "Arn": machine, "InputPath": "$.detail"}]}),
    );
    // A rule put through one server is in force on the other within about
    // a second (each re-reads the rules every second on a shared database).
    std::thread::sleep(Duration::from_secs(2));
    let put = |server: &str, n: u32| {
        let entry = json!({"Source": "fault.test", "DetailType": "t", "Detail": json!({"n": n}).to_string()});
        let out = ok(
            server,
            support::EVENTS,
            "PutEvents",
            &json!({"Entries": [entry]}),
        );
        assert_eq!(out["FailedEntryCount"], 0, "{out}");
    };
    for n in 0..5 {
        put(if n % 2 == 0 { &addr } else { &leader_addr }, n);
    }
    leader.kill();
    for n in 5..10 {
        put(&addr, n);
    }

    let mut inputs: Vec<String> = Vec::new();
    leader.wait_until(
        Duration::from_secs(90),
        "every event is delivered by the survivor",
        || {
            let listed = ok(
                &addr,
                support::STEP_FUNCTIONS,
                "ListExecutions",
                &json!({"stateMachineArn": machine}),
            );
            let arns: Vec<String> = listed["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["executionArn"].as_str().map(str::to_owned))
                .collect();
            if arns.len() < 10 {
                return false;
            }
            inputs = arns
                .iter()
                .map(|arn| {
                    ok(
                        &addr,
                        support::STEP_FUNCTIONS,
                        "DescribeExecution",
                        &json!({"executionArn": arn}),
                    )["input"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            true
        },
    );
    // Give a duplicate delivery time to show up before counting.
    std::thread::sleep(Duration::from_secs(5));
    let listed = ok(
        &addr,
        support::STEP_FUNCTIONS,
        "ListExecutions",
        &json!({"stateMachineArn": machine}),
    );
    assert_eq!(
        listed["executions"].as_array().map(Vec::len),
        Some(10),
        "delivered once each: {listed}"
    );
    inputs.sort();
    let mut expected: Vec<String> = (0..10).map(|n| json!({"n": n}).to_string()).collect();
    expected.sort();
    assert_eq!(inputs, expected);
}

/// Two servers on one PostgreSQL behind one name (`cluster`, which the
/// network's DNS answers with both); an agent reaches them through it. The
/// server that queued a build is killed while the agent runs it: the agent
/// goes on against the survivor, which takes the dead server's build over
/// (its heartbeat went stale), and the build finishes SUCCEEDED, run once,
/// with its whole log.
#[test]
fn when_the_server_that_queued_a_remote_build_dies_the_other_finishes_it() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("ownerdies");
    let _db = net.postgres("db");
    let shared = tempfile::tempdir().expect("tempdir");
    let alias = ["--network-alias", "cluster"];
    let flags = ["--no-local-agent"];
    let (queuer, queuer_addr) = pg_server_with(&net, "server-a", shared.path(), &alias, &flags);
    let (survivor, addr) = pg_server_with(&net, "server-b", shared.path(), &alias, &flags);
    let token = agent_token(&addr);
    slow_project(&addr, "outlives", 8);
    let _agent = net.gantry(
        "agent-1",
        &[("GANTRY_AGENT_TOKEN", token.as_str())],
        &[
            "agent",
            "--server",
            "http://cluster:8080",
            "--executor",
            "host",
            "--work-dir",
            "/data/agent",
        ],
    );
    let id = start_build(&queuer_addr, "outlives");
    survivor.wait_until(Duration::from_secs(60), "the agent runs the build", || {
        count(&log_of(&addr, &id), "attempt-start") == 1
    });
    queuer.kill();

    let done = wait_final(&survivor, &addr, &id);
    assert_eq!(done["buildStatus"], "SUCCEEDED", "{done:#}");
    let log = log_of(&addr, &id);
    assert_eq!(count(&log, "attempt-start"), 1, "run once: {log}");
    assert_eq!(count(&log, "attempt-done"), 1, "{log}");
    assert!(
        !done.to_string().contains("SERVER_RESTARTED"),
        "not failed as interrupted: {done:#}"
    );
}

/// PostgreSQL killed and restarted while builds are being started: a
/// request during the outage is refused (and so never accepted), and every
/// build the server did accept runs to its end once — none is lost or left
/// running.
#[test]
fn builds_accepted_around_a_postgres_restart_all_run_to_their_end_once() {
    if !cluster::available() {
        return;
    }
    let net = cluster::Network::create("pgrestart");
    let db = net.postgres("db");
    let shared = tempfile::tempdir().expect("tempdir");
    let (server, addr) = pg_server(&net, "server", shared.path());
    slow_project(&addr, "steady", 1);

    let mut accepted = Vec::new();
    let mut refused = 0;
    let begin = std::time::Instant::now();
    let mut restarted = false;
    while begin.elapsed() < Duration::from_secs(20) {
        if !restarted && begin.elapsed() > Duration::from_secs(4) {
            db.kill();
            std::thread::sleep(Duration::from_secs(2));
            db.start();
            restarted = true;
        }
        match support::call(
            &addr,
            KEY,
            support::CODEBUILD,
            "StartBuild",
            &json!({ "projectName": "steady" }),
        ) {
            Some((200, out)) => accepted.push(out["build"]["id"].as_str().expect("id").to_owned()),
            _ => refused += 1,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(restarted);
    assert!(accepted.len() > 20, "accepted {} builds", accepted.len());
    for id in &accepted {
        let done = wait_final(&server, &addr, id);
        assert_ne!(done["buildStatus"], "IN_PROGRESS", "{done:#}");
        let log = log_of(&addr, id);
        assert!(count(&log, "attempt-done") <= 1, "{id} ran twice: {log}");
        if done["buildStatus"] == "SUCCEEDED" {
            assert_eq!(count(&log, "attempt-done"), 1, "{id}: {log}");
        }
    }
    let succeeded = accepted
        .iter()
        .filter(|id| build(&addr, id)["buildStatus"] == "SUCCEEDED")
        .count();
    eprintln!(
        "accepted {}, refused {refused}, succeeded {succeeded}",
        accepted.len()
    );
}
