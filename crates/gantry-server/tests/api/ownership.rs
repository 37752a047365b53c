//! Servers own their in-flight work (docs/postgres.md, "Ownership"): a
//! remote agent's build survives its server's restart and may report to
//! any server; a server starting leaves another live server's work alone;
//! a stopped server's execution is resumed by exactly one other server; a
//! server whose heartbeat goes stale loses its work to a live one.
//! The agents here are driven by hand through the protocol client, so the
//! test decides which server each message goes to.

use std::time::Duration;

use gantry_agent::Client;
use gantry_agent::protocol::{JobResult, LogChunk, LogItem, Register};
use gantry_server::LeaderElection;
use gantry_store::{AgentStore, BuildStore, OwnedWork, PgStore, ServerStore};
use serde_json::{Value, json};

use super::harness::{Db, GOOD_BUILDSPEC, TestServer, inline_project};
use super::stepfunctions::{Counter, sfn};

/// `on_postgres!(test, body)`: several servers share a PostgreSQL database
/// only; the test skips (with a note) without `GANTRY_TEST_POSTGRES_URL`.
macro_rules! on_postgres {
    ($name:ident, $on:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(db) = Db::postgres(stringify!($name)).await else {
                return;
            };
            $on(db.clone()).await;
            db.finish().await;
        }
    };
}

/// Short heartbeats, so a stopped server is stale within a second.
fn quick(c: &mut gantry_server::Config) {
    c.leader_election = Some(LeaderElection {
        ttl: Duration::from_millis(1000),
        renew_every: Duration::from_millis(250),
    });
}

async fn start_remote(db: &Db, data: &std::path::Path) -> TestServer {
    TestServer::start_with(data, |c| {
        db.apply(c);
        if matches!(db, Db::Postgres(_)) {
            quick(c);
        }
        c.local_agent = false;
    })
    .await
}

async fn token(server: &TestServer) -> String {
    let out = server
        .rest_ok("POST", "/agent-tokens", Some(&json!({"name": "t"})), 201)
        .await;
    out["token"].as_str().expect("token").to_owned()
}

fn registration() -> Register {
    Register {
        labels: vec![],
        capacity: 1,
        executor: "host".into(),
        hostname: "by-hand".into(),
        version: "test".into(),
        kinds: Vec::new(),
    }
}

async fn start_build(server: &TestServer, name: &str) -> String {
    server
        .call("CreateProject", &inline_project(name, GOOD_BUILDSPEC))
        .await;
    let out = server
        .call("StartBuild", &json!({ "projectName": name }))
        .await;
    out["build"]["id"].as_str().expect("id").to_owned()
}

async fn build_state(server: &TestServer, id: &str) -> Value {
    let out = server.call("BatchGetBuilds", &json!({ "ids": [id] })).await;
    out["builds"][0].clone()
}

fn chunk(epoch: i64, seq: u64, line: &str) -> LogChunk {
    LogChunk {
        epoch,
        seq,
        items: vec![LogItem::Line(line.into())],
    }
}

fn succeeded(epoch: i64, last_seq: u64) -> JobResult {
    JobResult {
        epoch,
        last_seq,
        build: Some(json!({
            "buildStatus": "SUCCEEDED",
            "currentPhase": "COMPLETED",
            "phases": [
                {"phaseType": "BUILD", "phaseStatus": "SUCCEEDED"},
                {"phaseType": "COMPLETED"}
            ],
            "exportedEnvironmentVariables": [{"name": "GREETING", "value": "from-the-agent"}]
        })),
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: None,
        log: None,
    }
}

/// Who owns `key` of `work` in the shared store.
async fn owner_of(store: &PgStore, work: OwnedWork, key: &str) -> Option<String> {
    store.owner_of(work, key).await.expect("owner")
}

/// Removes server `from`'s row again and again (it puts it back at each
/// heartbeat, as a paused server does when it wakes) until another
/// server's sweep finds it gone and takes `key` over; the owner then.
async fn take_over_from(store: &PgStore, work: OwnedWork, key: &str, from: &str) -> Option<String> {
    let mut now = Some(from.to_owned());
    for _ in 0..500 {
        store.remove_server(from).await.expect("remove");
        tokio::time::sleep(Duration::from_millis(10)).await;
        now = owner_of(store, work, key).await;
        if now.as_deref() != Some(from) {
            break;
        }
    }
    now
}

async fn pg_store(db: &Db, data: &std::path::Path) -> PgStore {
    let Db::Postgres(db) = db else {
        panic!("a PostgreSQL test");
    };
    let key = gantry_store::MasterKey::load_or_create(&data.join("secret.key")).expect("key");
    PgStore::connect(&db.url, key).await.expect("store")
}

crate::on_both_stores!(
    a_remote_agents_build_survives_a_restart_of_its_server_and_finishes_with_the_agents_result,
    a_remote_agents_build_survives_a_restart_of_its_server_and_finishes_with_the_agents_result_on,
    a_remote_agents_build_survives_a_restart_of_its_server_and_finishes_with_the_agents_result_on_postgres
);

async fn a_remote_agents_build_survives_a_restart_of_its_server_and_finishes_with_the_agents_result_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start_remote(&db, &data).await;
    let token = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration()).await.expect("register");
    let id = start_build(&server, "survivor").await;
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    let job = &lease.job_id;
    let acked = client
        .logs(job, &chunk(lease.epoch, 1, "before-the-restart"))
        .await
        .expect("chunk 1");
    assert_eq!(acked.acked, 1);
    server.stop().await;

    // The agent goes on; the server comes back (a new process, a new id).
    let server = start_remote(&db, &data).await;
    assert_eq!(
        build_state(&server, &id).await["buildStatus"],
        "IN_PROGRESS"
    );
    let client = Client::new(&server.url(), &token).expect("client");
    let acked = client
        .logs(job, &chunk(lease.epoch, 2, "after-the-restart"))
        .await
        .expect("chunk 2");
    assert_eq!(acked.acked, 2, "the log position outlived the restart");
    client
        .result(job, &succeeded(lease.epoch, 2))
        .await
        .expect("result");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    assert_eq!(
        build["exportedEnvironmentVariables"],
        json!([{"name": "GREETING", "value": "from-the-agent"}])
    );
    let log = server.log_text(&id).await;
    assert!(log.contains("before-the-restart"), "{log}");
    assert!(log.contains("after-the-restart"), "{log}");
    server.stop().await;
}

on_postgres!(two_servers_the_one_that_did_not_queue_the_build_takes_the_agents_result_and_the_build_finishes_on_postgres, two_servers_the_one_that_did_not_queue_the_build_takes_the_agents_result_and_the_build_finishes_on);

async fn two_servers_the_one_that_did_not_queue_the_build_takes_the_agents_result_and_the_build_finishes_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let token = token(&a).await;
    let id = start_build(&a, "elsewhere").await;
    let owner = owner_of(&store, OwnedWork::Builds, &id)
        .await
        .expect("the build has an owner");
    // The agent talks to B only.
    let client = Client::new(&b.url(), &token).expect("client");
    let agent = client.register(&registration()).await.expect("register");
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    for (seq, line) in [(1, "line-one"), (2, "line-two")] {
        let acked = client
            .logs(&lease.job_id, &chunk(lease.epoch, seq, line))
            .await
            .expect("chunk");
        assert_eq!(acked.acked, seq);
    }
    client
        .result(&lease.job_id, &succeeded(lease.epoch, 2))
        .await
        .expect("result");
    let build = a.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = a.log_text(&id).await;
    assert!(
        log.contains("line-one") && log.contains("line-two"),
        "{log}"
    );
    assert_eq!(
        owner_of(&store, OwnedWork::Builds, &id).await,
        Some(owner),
        "A stayed the owner: it was alive"
    );
    b.stop().await;
    a.stop().await;
}

/// A machine that waits `seconds`, then calls `{url}/item/{key}/once`.
fn wait_then_call(seconds: u64) -> String {
    json!({
        "StartAt": "Pause",
        "States": {
            "Pause": {"Type": "Wait", "Seconds": seconds, "Next": "Call"},
            "Call": {
                "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint.$": "States.Format('{}/item/{}/once', $.url, $.key)",
                               "Method": "POST", "RequestBody": {"k.$": "$.key"}},
                "End": true
            }
        }
    })
    .to_string()
}

async fn start_execution(server: &TestServer, url: &str, key: &str, seconds: u64) -> String {
    let (status, machine) = sfn(
        server,
        "CreateStateMachine",
        &json!({"name": format!("m-{key}"), "definition": wait_then_call(seconds),
                "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )
    .await;
    assert_eq!(status, 200, "{machine}");
    let (status, out) = sfn(
        server,
        "StartExecution",
        &json!({"stateMachineArn": machine["stateMachineArn"], "name": key,
                "input": json!({"url": url, "key": key}).to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out["executionArn"].as_str().expect("arn").to_owned()
}

async fn wait_execution(server: &TestServer, arn: &str) -> Value {
    for _ in 0..600 {
        let (_, d) = sfn(server, "DescribeExecution", &json!({"executionArn": arn})).await;
        if d["status"] != "RUNNING" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{arn} did not finish in 30 s");
}

async fn count_events(server: &TestServer, arn: &str, kind: &str) -> usize {
    let (_, history) = sfn(server, "GetExecutionHistory", &json!({"executionArn": arn})).await;
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

on_postgres!(
    a_server_start_leaves_another_live_servers_build_and_execution_alone_on_postgres,
    a_server_start_leaves_another_live_servers_build_and_execution_alone_on
);

async fn a_server_start_leaves_another_live_servers_build_and_execution_alone_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let id = start_build(&a, "untouched").await;
    let arn = start_execution(&a, &url, "live", 2).await;
    let a_id = owner_of(&store, OwnedWork::Builds, &id)
        .await
        .expect("owned");
    // B starts, and sweeps for dead servers' work several times over.
    let b = start_remote(&db, &data).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let build = build_state(&b, &id).await;
    assert_eq!(build["buildStatus"], "IN_PROGRESS", "{build}");
    let job = store
        .get_agent_job(&format!("job-{}", id.split_once(':').expect("id").1))
        .await
        .expect("job");
    assert_eq!(job.status, "QUEUED", "the job was not abandoned: {job:?}");
    for (work, key) in [
        (OwnedWork::Builds, id.as_str()),
        (OwnedWork::StateMachineExecutions, arn.as_str()),
    ] {
        assert_eq!(
            owner_of(&store, work, key).await.as_deref(),
            Some(a_id.as_str())
        );
    }
    // A drives its execution to the end, once.
    let done = wait_execution(&b, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(counter.count("/item/live/"), 1);
    assert_eq!(count_events(&b, &arn, "WaitStateExited").await, 1);
    b.stop().await;
    a.stop().await;
}

on_postgres!(
    a_stopped_servers_running_execution_is_resumed_by_one_other_server_exactly_once_on_postgres,
    a_stopped_servers_running_execution_is_resumed_by_one_other_server_exactly_once_on
);

async fn a_stopped_servers_running_execution_is_resumed_by_one_other_server_exactly_once_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let c = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let arn = start_execution(&a, &url, "orphan", 2).await;
    let a_id = owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
        .await
        .expect("owned");
    // A stops while the execution waits (its row goes with it).
    a.stop().await;
    let done = wait_execution(&b, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(counter.count("/item/orphan/"), 1, "the task ran once");
    assert_eq!(count_events(&c, &arn, "WaitStateExited").await, 1);
    assert_eq!(count_events(&c, &arn, "ExecutionSucceeded").await, 1);
    let owner = owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
        .await
        .expect("owned");
    assert_ne!(owner, a_id, "taken over");
    let live: Vec<String> = store
        .servers()
        .await
        .expect("servers")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(live.contains(&owner), "{owner} in {live:?}");
    c.stop().await;
    b.stop().await;
}

on_postgres!(
    a_build_of_a_server_whose_heartbeat_goes_stale_is_taken_over_on_postgres,
    a_build_of_a_server_whose_heartbeat_goes_stale_is_taken_over_on
);

/// A server (`ghost`, never started: only its row and its build exist) whose
/// heartbeat stops: while it is fresh its build is left alone; once stale,
/// the live server takes the build over and, as it ran on the ghost's
/// embedded agent, fails it as interrupted.
async fn a_build_of_a_server_whose_heartbeat_goes_stale_is_taken_over_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let live = start_remote(&db, &data).await;
    live.call("CreateProject", &inline_project("ghostly", GOOD_BUILDSPEC))
        .await;
    let ghost = pg_store(&db, &data).await;
    ghost.set_server_id("ghost");
    // Its last heartbeat is fresh for a few seconds (ttl 1 s, plus 3 s).
    ghost
        .register_server("ghost", "nowhere", gantry_store::now_ms() + 3_000)
        .await
        .expect("register");
    let id = "ghostly:00000000-0000-0000-0000-000000000001".to_string();
    ghost
        .create_build(
            &gantry_store::NewBuild {
                id: id.clone(),
                project: "ghostly".into(),
                status: "IN_PROGRESS".into(),
                current_phase: "BUILD".into(),
                build: json!({"phases": [{"phaseType": "BUILD", "startTime": 1}]}),
                overrides: json!({}),
                start_ms: 1,
            },
            "system",
        )
        .await
        .expect("build");
    assert_eq!(
        build_state(&live, &id).await["buildStatus"],
        "IN_PROGRESS",
        "left alone while its owner's heartbeat is fresh"
    );
    let build = live.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "FAILED", "{build}");
    let contexts = build.to_string();
    assert!(contexts.contains("SERVER_RESTARTED"), "{build}");
    assert_ne!(
        owner_of(&ghost, OwnedWork::Builds, &id).await.as_deref(),
        Some("ghost")
    );
    live.stop().await;
}

on_postgres!(
    a_stopped_servers_pipeline_and_its_remote_build_are_finished_by_the_other_server_on_postgres,
    a_stopped_servers_pipeline_and_its_remote_build_are_finished_by_the_other_server_on
);

/// Two servers on one database; A runs a pipeline whose Build action is
/// queued for a remote agent when A stops. B takes over both the pipeline
/// execution (its action resumes, following the build) and the build (it
/// waits for the job again); an agent reaching only B runs the build, and
/// the pipeline goes on to succeed on B.
async fn a_stopped_servers_pipeline_and_its_remote_build_are_finished_by_the_other_server_on(
    db: Db,
) {
    use super::codepipeline::ok;
    use super::pipeline_runs::{create_projects, declaration, repo_with, start as start_run};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let url = repo_with(dir.path(), &[("version.txt", "7.1")], "seven");
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let token = token(&a).await;
    let mut decl = declaration("handed", &url, "");
    let stages = decl["stages"].as_array_mut().expect("stages");
    stages.remove(2); // no approval
    stages[1]["actions"]
        .as_array_mut()
        .expect("actions")
        .truncate(1);
    let build = "version: 0.2\nenv:\n  exported-variables: [VERSION]\nphases:\n  build:\n    commands:\n      - export VERSION=$(cat version.txt)\n      - echo \"app $VERSION\" > app.txt\nartifacts:\n  files: [app.txt]\n";
    let deploy = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q \"app $EXPECTED\" app.txt\n      - echo \"deploying $EXPECTED\"\n";
    create_projects(&a, "handed", &[("build", build), ("deploy", deploy)]).await;
    ok(&a, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let id = start_run(&a, "handed").await;
    // The Build action's build is queued (no agent yet) when A stops.
    for _ in 0..600 {
        let listed = a
            .call(
                "ListBuildsForProject",
                &json!({ "projectName": "handed-build" }),
            )
            .await;
        if listed["ids"].as_array().is_some_and(|ids| !ids.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;

    let mut config = gantry_agent::AgentConfig::new(&b.url(), &token, dir.path().join("w"));
    config.hostname = "only-b".into();
    let (drain, rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(gantry_agent::run(config, async move {
        let _ = rx.await;
    }));
    let mut status = Value::Null;
    for _ in 0..1200 {
        let e = ok(
            &b,
            "GetPipelineExecution",
            &json!({ "pipelineName": "handed", "pipelineExecutionId": id }),
        )
        .await;
        status = e["pipelineExecution"]["status"].clone();
        if status != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "Succeeded");
    for project in ["handed-build", "handed-deploy"] {
        let listed = b
            .call("ListBuildsForProject", &json!({ "projectName": project }))
            .await;
        let ids = listed["ids"].as_array().expect("ids");
        assert_eq!(ids.len(), 1, "{project} built once: {listed}");
        let build_id = ids[0].as_str().expect("id");
        let build = build_state(&b, build_id).await;
        assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
        let log = b.log_text(build_id).await;
        assert!(log.contains("only-b"), "{project} ran on the agent: {log}");
    }
    let _ = drain.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), agent).await;
    b.stop().await;
}

/// A machine whose one task sends its token to `{url}/callback/{key}` and
/// waits for SendTaskSuccess/Failure; its output is the callback's.
fn callback_machine() -> String {
    json!({
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::http:invoke.waitForTaskToken",
                "Parameters": {"ApiEndpoint.$": "States.Format('{}/callback/{}', $.url, $.key)",
                               "Method": "POST", "RequestBody": {"token.$": "$$.Task.Token"}},
                "End": true
            }
        }
    })
    .to_string()
}

async fn start_callback(server: &TestServer, url: &str, key: &str) -> String {
    let (status, machine) = sfn(
        server,
        "CreateStateMachine",
        &json!({"name": format!("cb-{key}"), "definition": callback_machine(),
                "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )
    .await;
    assert_eq!(status, 200, "{machine}");
    let (status, out) = sfn(
        server,
        "StartExecution",
        &json!({"stateMachineArn": machine["stateMachineArn"], "name": key,
                "input": json!({"url": url, "key": key}).to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out["executionArn"].as_str().expect("arn").to_owned()
}

async fn succeed(server: &TestServer, token: &str, via: &str) -> (u16, Value) {
    sfn(
        server,
        "SendTaskSuccess",
        &json!({"taskToken": token, "output": json!({"via": via}).to_string()}),
    )
    .await
}

fn error_type(out: &Value) -> &str {
    out["__type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('#')
        .next()
        .unwrap_or_default()
}

on_postgres!(
    a_callback_sent_to_a_server_that_does_not_hold_the_execution_reaches_its_owner_once_on_postgres,
    a_callback_sent_to_a_server_that_does_not_hold_the_execution_reaches_its_owner_once_on
);

/// Executions started on A, callbacks sent to B: B relays them to A through
/// the store. The first completes the task (B answers once A applied it); the
/// same callback again, through either server, is TaskTimedOut. The same
/// callback sent to both servers at once is applied once: one caller gets
/// `{}`, the other TaskTimedOut. A heartbeat through B reaches A too.
async fn a_callback_sent_to_a_server_that_does_not_hold_the_execution_reaches_its_owner_once_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;

    let arn = start_callback(&a, &url, "relayed").await;
    let token = counter.wait_token("relayed").await;
    let a_id = owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
        .await
        .expect("owned");
    let (status, out) = sfn(&b, "SendTaskHeartbeat", &json!({"taskToken": token})).await;
    assert_eq!(status, 200, "a heartbeat through B: {out}");
    let (status, out) = succeed(&b, &token, "b").await;
    assert_eq!(status, 200, "{out}");
    // B answered once A applied it: the execution is over already.
    let (_, d) = sfn(&b, "DescribeExecution", &json!({"executionArn": arn})).await;
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["output"], json!({"via": "b"}).to_string());
    for server in [&a, &b] {
        let (status, out) = succeed(server, &token, "late").await;
        assert_eq!(status, 400, "{out}");
        assert_eq!(error_type(&out), "TaskTimedOut", "{out}");
    }
    assert_eq!(count_events(&a, &arn, "TaskSucceeded").await, 1);
    assert_eq!(count_events(&a, &arn, "ExecutionSucceeded").await, 1);
    assert_eq!(
        owner_of(&store, OwnedWork::StateMachineExecutions, &arn).await,
        Some(a_id),
        "A drove its execution throughout"
    );

    // The same callback to both servers at once.
    let arn = start_callback(&a, &url, "twice").await;
    let token = counter.wait_token("twice").await;
    let (to_a, to_b) = tokio::join!(succeed(&a, &token, "a"), succeed(&b, &token, "b"));
    let answers = [&to_a, &to_b];
    let accepted: Vec<&str> = answers
        .iter()
        .zip(["a", "b"])
        .filter(|((status, _), _)| *status == 200)
        .map(|(_, via)| via)
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one accepted: {to_a:?} {to_b:?}");
    for (status, out) in answers {
        if *status != 200 {
            assert_eq!(error_type(out), "TaskTimedOut", "{out}");
        }
    }
    let done = wait_execution(&b, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        done["output"],
        json!({"via": accepted[0]}).to_string(),
        "the accepted callback is the one applied"
    );
    assert_eq!(count_events(&b, &arn, "TaskSucceeded").await, 1);
    b.stop().await;
    a.stop().await;
}

on_postgres!(
    stop_execution_through_another_server_aborts_the_owners_execution_on_postgres,
    stop_execution_through_another_server_aborts_the_owners_execution_on
);

/// StopExecution sent to B for an execution A drives: A applies it (B waits
/// for it), so it is ABORTED with B's error and cause when B answers; the
/// task's token is then refused; a second stop changes nothing.
async fn stop_execution_through_another_server_aborts_the_owners_execution_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let arn = start_callback(&a, &url, "stopped").await;
    let token = counter.wait_token("stopped").await;
    let (status, out) = sfn(
        &b,
        "StopExecution",
        &json!({"executionArn": arn, "error": "Halt", "cause": "through b"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert!(out["stopDate"].is_number(), "{out}");
    let (_, d) = sfn(&b, "DescribeExecution", &json!({"executionArn": arn})).await;
    assert_eq!(d["status"], "ABORTED", "{d}");
    assert_eq!(d["error"], "Halt");
    assert_eq!(d["cause"], "through b");
    assert_eq!(d["stopDate"], out["stopDate"], "the date the stop returned");
    let (status, out) = succeed(&a, &token, "late").await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(error_type(&out), "TaskTimedOut");
    let (status, again) = sfn(&b, "StopExecution", &json!({"executionArn": arn})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["stopDate"], d["stopDate"]);
    assert_eq!(count_events(&a, &arn, "ExecutionAborted").await, 1);
    b.stop().await;
    a.stop().await;
}

on_postgres!(
    a_callback_recorded_while_the_owner_is_dead_is_applied_by_the_server_that_takes_over_on_postgres,
    a_callback_recorded_while_the_owner_is_dead_is_applied_by_the_server_that_takes_over_on
);

/// A dies while its execution waits for a callback (simulated: A stops, and
/// its row is put back with a heartbeat fresh for a few more seconds, as a
/// killed server's row stays until stale). B receives the callback while A
/// still counts as alive: B records it and answers (A does not apply it).
/// Once A's heartbeat is stale, B takes the execution over and applies the
/// recorded callback.
async fn a_callback_recorded_while_the_owner_is_dead_is_applied_by_the_server_that_takes_over_on(
    db: Db,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let arn = start_callback(&a, &url, "orphaned").await;
    let token = counter.wait_token("orphaned").await;
    let a_id = owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
        .await
        .expect("owned");
    a.stop().await;
    // The row of a server that died: fresh for 8 s more (plus the 1 s ttl).
    store
        .register_server(&a_id, "dead", gantry_store::now_ms() + 8_000)
        .await
        .expect("row");
    let b = start_remote(&db, &data).await;
    let (status, out) = succeed(&b, &token, "while-dead").await;
    assert_eq!(status, 200, "recorded: {out}");
    assert_eq!(
        owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
            .await
            .as_deref(),
        Some(a_id.as_str()),
        "recorded while A still owned it"
    );
    let (_, d) = sfn(&b, "DescribeExecution", &json!({"executionArn": arn})).await;
    assert_eq!(d["status"], "RUNNING", "nobody applied it yet: {d}");
    // Sent twice: the second is refused (one callback per token is recorded).
    let (status, out) = succeed(&b, &token, "again").await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(error_type(&out), "TaskTimedOut");

    let done = wait_execution(&b, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], json!({"via": "while-dead"}).to_string());
    assert_eq!(count_events(&b, &arn, "TaskSucceeded").await, 1);
    assert_ne!(
        owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
            .await
            .as_deref(),
        Some(a_id.as_str()),
        "taken over"
    );
    assert_eq!(counter.count("/callback/orphaned"), 1, "not sent again");
    b.stop().await;
}

on_postgres!(
    a_paused_server_stops_driving_an_execution_another_server_took_over_on_postgres,
    a_paused_server_stops_driving_an_execution_another_server_took_over_on
);

/// A server whose row disappears while it runs (as when it pauses past its
/// heartbeat's time to live, or is cut off from the database) loses its
/// execution, waiting in a Wait state, to B. A, still running, notices and
/// stops driving it: when the Wait ends only B journals it and makes the
/// call, once.
async fn a_paused_server_stops_driving_an_execution_another_server_took_over_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (counter, url) = Counter::start().await;
    let a = start_remote(&db, &data).await;
    let b = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let arn = start_execution(&a, &url, "paused", 4).await;
    let a_id = owner_of(&store, OwnedWork::StateMachineExecutions, &arn)
        .await
        .expect("owned");
    let b_id = take_over_from(&store, OwnedWork::StateMachineExecutions, &arn, &a_id)
        .await
        .expect("owned");
    assert_ne!(b_id, a_id, "B took the execution over");
    let done = wait_execution(&a, &arn).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(counter.count("/item/paused/"), 1, "the call was made once");
    assert_eq!(count_events(&a, &arn, "WaitStateExited").await, 1);
    assert_eq!(count_events(&a, &arn, "ExecutionSucceeded").await, 1);
    assert_eq!(
        owner_of(&store, OwnedWork::StateMachineExecutions, &arn).await,
        Some(b_id)
    );
    b.stop().await;
    a.stop().await;
}

on_postgres!(
    a_paused_servers_embedded_build_is_killed_once_another_server_took_it_over_on_postgres,
    a_paused_servers_embedded_build_is_killed_once_another_server_took_it_over_on
);

/// A runs a build on its embedded agent (a long `sleep`) when its row goes,
/// as when it pauses past its heartbeat's time to live. B takes the build
/// over and fails it as interrupted; A, still running, notices it lost the
/// build and kills its processes, and its late end changes nothing.
async fn a_paused_servers_embedded_build_is_killed_once_another_server_took_it_over_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let pid_file = dir.path().join("sleep.pid");
    let a = TestServer::start_with(&data, |c| {
        db.apply(c);
        quick(c);
    })
    .await;
    let b = start_remote(&db, &data).await;
    let store = pg_store(&db, &data).await;
    let buildspec = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 120 & echo $! > {}; wait\n",
        pid_file.display()
    );
    a.call("CreateProject", &inline_project("sleepy", &buildspec))
        .await;
    let out = a
        .call("StartBuild", &json!({ "projectName": "sleepy" }))
        .await;
    let id = out["build"]["id"].as_str().expect("id").to_owned();
    let mut pid = None;
    for _ in 0..500 {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = pid.expect("the build's sleep started");
    let running = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(running(pid));
    let a_id = owner_of(&store, OwnedWork::Builds, &id)
        .await
        .expect("owned");
    let owner = take_over_from(&store, OwnedWork::Builds, &id, &a_id).await;
    assert_ne!(
        owner.as_deref(),
        Some(a_id.as_str()),
        "B took the build over"
    );
    let build = b.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "FAILED", "{build}");
    assert!(build.to_string().contains("SERVER_RESTARTED"), "{build}");
    // A kills the process within its next owner checks (one a second).
    let mut gone = false;
    for _ in 0..200 {
        if !running(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the paused server's build process {pid} still runs");
    // Its late end (STOPPED) was refused: the build stays as B recorded it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = build_state(&b, &id).await;
    assert_eq!(after["buildStatus"], "FAILED", "{after}");
    b.stop().await;
    a.stop().await;
}
