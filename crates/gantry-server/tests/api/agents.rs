//! Remote agents against the in-process server: builds run on a
//! `gantry-agent` (host executor) and look like local builds; the long
//! poll, the double acknowledgement, lease expiry and fencing, token
//! revocation, label matching and StopBuild, driven by the real agent or
//! by hand through its protocol client.

use std::time::Duration;

use gantry_agent::protocol::{JobResult, LogChunk, LogItem, Register};
use gantry_agent::{AgentConfig, Client, ClientError};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::harness::{
    Db, EVENTS, GOOD_BUILDSPEC, SECRET, SLOW_BUILDSPEC, TestServer, inline_project,
};

pub async fn token(server: &TestServer) -> (String, String) {
    let out = server
        .rest_ok("POST", "/agent-tokens", Some(&json!({"name": "t"})), 201)
        .await;
    (
        out["token"].as_str().expect("token").to_owned(),
        out["id"].as_str().expect("id").to_owned(),
    )
}

/// A real agent in a task; send on the returned sender to drain it.
pub fn spawn_agent(
    server: &TestServer,
    token: &str,
    labels: &[&str],
    hostname: &str,
    work: &std::path::Path,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), gantry_agent::AgentError>>,
) {
    let mut config = AgentConfig::new(&server.url(), token, work);
    config.labels = labels.iter().map(|l| l.to_string()).collect();
    config.hostname = hostname.into();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(gantry_agent::run(config, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

pub(crate) fn registration(labels: &[&str]) -> Register {
    Register {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        capacity: 1,
        executor: "host".into(),
        hostname: "manual".into(),
        version: "test".into(),
        kinds: Vec::new(),
    }
}

async fn start(server: &TestServer, project: Value) -> String {
    let name = project["name"].as_str().expect("name").to_owned();
    server.call("CreateProject", &project).await;
    let out = server
        .call(
            "StartBuild",
            &json!({ "projectName": name, "environmentVariablesOverride":
                [{ "name": "WHO", "value": "agent", "type": "PLAINTEXT" }] }),
        )
        .await;
    out["build"]["id"].as_str().expect("id").to_owned()
}

pub async fn stop_agent(
    drain: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), gantry_agent::AgentError>>,
) {
    let _ = drain.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the agent drains")
        .expect("agent task")
        .expect("the agent ends without error");
}

crate::on_both_stores!(
    without_the_local_agent_a_build_runs_on_a_remote_agent_like_a_local_one,
    without_the_local_agent_a_build_runs_on_a_remote_agent_like_a_local_one_on,
    without_the_local_agent_a_build_runs_on_a_remote_agent_like_a_local_one_on_postgres
);

async fn without_the_local_agent_a_build_runs_on_a_remote_agent_like_a_local_one_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        db.apply(c);
        c.local_agent = false;
    })
    .await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "box-1", &dir.path().join("work"));
    let spec = format!(
        "{GOOD_BUILDSPEC}      - mkdir -p out && echo built > out/result.txt\n      - echo \"id=$CODEBUILD_BUILD_ID arn=$CODEBUILD_BUILD_ARN\"\nartifacts:\n  files:\n    - out/result.txt\n"
    );
    let mut project = inline_project("remote", &spec);
    project["artifacts"] = json!({ "type": "S3", "location": "bucket" });
    let id = start(&server, project).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let phases: Vec<&str> = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phaseType"].as_str())
        .collect();
    for phase in ["SUBMITTED", "QUEUED", "PROVISIONING", "BUILD", "COMPLETED"] {
        assert!(phases.contains(&phase), "{phase} in {phases:?}");
    }
    assert_eq!(
        build["exportedEnvironmentVariables"],
        json!([{ "name": "GREETING", "value": "hi-agent" }])
    );
    let log = server.log_text(&id).await;
    assert!(log.contains("hello agent from p"), "{log}");
    assert!(log.contains("box-1"), "the log names the agent: {log}");
    assert!(
        log.contains(&format!(
            "id={id} arn={}",
            build["arn"].as_str().expect("arn")
        )),
        "the build sees the id and ARN the API reports: {log}"
    );
    // The artifacts went to the artifact store, as a local build's do: the
    // location is their reference there, and nothing stays on the disk.
    let location = build["artifacts"]["location"].as_str().expect("location");
    let reference: gantry_artifacts::ArtifactRef = location.parse().expect("a reference");
    let objects = gantry_artifacts::ArtifactStore::local(dir.path().join("data/artifact-store"))
        .expect("store");
    let out = dir.path().join("materialized");
    objects.materialize(&reference, &out).await.expect("stored");
    assert_eq!(
        std::fs::read_to_string(out.join("out/result.txt")).expect("the artifact"),
        "built\n"
    );
    let uuid = id.split_once(':').expect("id").1;
    assert!(
        !dir.path().join("data/artifacts").join(uuid).exists(),
        "no copy stays in the data directory"
    );
    stop_agent(drain, agent).await;
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_long_poll_is_answered_when_a_job_is_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let poller = {
        let client = client.clone();
        let id = agent.agent_id.clone();
        tokio::spawn(async move { client.poll(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poller.is_finished(),
        "the poll is held while nothing is queued"
    );
    let id = start(&server, inline_project("waited", GOOD_BUILDSPEC)).await;
    // Well within the 25 s hold: the queueing woke the poll.
    let offer = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("answered before the hold ran out")
        .expect("task")
        .expect("poll")
        .expect("an offer");
    assert_eq!(offer.kind, "codebuild");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    assert_eq!(lease.payload.describe(), id);
    assert_eq!(lease.epoch, 1);
    server.call("StopBuild", &json!({ "id": id })).await;
    // StopBuild answers before the build's task has flagged the job.
    let mut told = false;
    for _ in 0..200 {
        let beat = client
            .heartbeat(&lease.job_id, lease.epoch)
            .await
            .expect("beat");
        if beat.stop {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(told, "StopBuild reaches the agent in the heartbeat reply");
    server.stop().await;
}

#[tokio::test]
async fn a_build_without_source_ships_none_and_a_reused_work_dir_shows_nothing_of_the_last_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(&data, |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    // By hand: the lease of a NO_SOURCE build carries no source, and the
    // server made no tree for it.
    let client = Client::new(&server.url(), &token).expect("client");
    let manual = client.register(&registration(&[])).await.expect("register");
    start(&server, inline_project("bare", GOOD_BUILDSPEC)).await;
    let offer = client
        .poll(&manual.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&manual.agent_id, &offer).await.expect("ack");
    match &lease.payload {
        gantry_agent::protocol::Payload::Build(b) => {
            assert!(b.source.is_none(), "{:?}", b.source)
        }
        other => panic!("a build payload, not {other:?}"),
    }
    let work = data.join("work");
    let made = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    assert_eq!(made, 0, "no work tree made on the server");
    // A real agent with one slot runs two builds in the same directory:
    // the second sees nothing the first left, in its source directory or
    // beside it, and no object store was made for builds without source.
    // The second is queued while the first runs (its `sleep`), so it comes
    // leased with the first's result and starts at once in the same slot.
    let agent_work = dir.path().join("agent");
    let (drain, agent) = spawn_agent(&server, &token, &[], "box-1", &agent_work);
    let litter = "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 1\n      - echo x > left-behind\n      - mkdir -p ../beside && echo y > ../beside/file\n      - ln -s ../beside ../link\n";
    let first = start(&server, inline_project("litter", litter)).await;
    let clean = "version: 0.2\nphases:\n  build:\n    commands:\n      - test ! -e left-behind\n      - test -z \"$(ls -A)\"\n      - test \"$(ls -A ..)\" = src\n";
    let second = start(&server, inline_project("clean", clean)).await;
    let build = server.wait_build(&first).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let build = server.wait_build(&second).await;
    assert_eq!(
        build["buildStatus"],
        "SUCCEEDED",
        "{build}\n{}",
        server.log_text(&second).await
    );
    stop_agent(drain, agent).await;
    let slots: Vec<String> = std::fs::read_dir(&agent_work)
        .expect("agent work dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(slots, vec!["slot-0".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn a_short_builds_log_may_come_inside_its_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    assert!(agent.result_log, "this server takes the log in the result");
    let id = start(&server, inline_project("tail", GOOD_BUILDSPEC)).await;
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    let tail = |epoch| LogChunk {
        epoch,
        seq: 1,
        items: vec![
            LogItem::Line("only in the result".into()),
            LogItem::Line("and this".into()),
        ],
    };
    let mut result = JobResult {
        epoch: lease.epoch,
        last_seq: 1,
        build: Some(json!({ "buildStatus": "SUCCEEDED", "phases": [] })),
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: None,
        log: Some(tail(lease.epoch + 1)),
    };
    let refused = client.result(&lease.job_id, &result).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(400, _))),
        "a chunk of another lease is refused: {refused:?}"
    );
    result.log = Some(tail(lease.epoch));
    client
        .result(&lease.job_id, &result)
        .await
        .expect("the result with its log is taken");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = server.log_text(&id).await;
    assert!(
        log.contains("only in the result\nand this"),
        "the chunk in the result is stored, in order: {log}"
    );
    server.stop().await;
}

crate::on_both_stores!(
    a_remote_builds_end_is_recorded_before_its_result_is_answered,
    a_remote_builds_end_is_recorded_before_its_result_is_answered_on,
    a_remote_builds_end_is_recorded_before_its_result_is_answered_on_postgres
);

/// A build waiting on the server that takes its agent's result (with the
/// last log chunk inside) ends in the transaction that ends its job: once
/// the result is answered the build has ended, its log is whole, "took the
/// build" first, and a resent result changes nothing.
async fn a_remote_builds_end_is_recorded_before_its_result_is_answered_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        db.apply(c);
        c.local_agent = false;
    })
    .await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let id = start(&server, inline_project("one-commit", GOOD_BUILDSPEC)).await;
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    let result = JobResult {
        epoch: lease.epoch,
        last_seq: 1,
        build: Some(json!({
            "buildStatus": "FAILED",
            "currentPhase": "COMPLETED",
            "phases": [{ "phaseType": "BUILD", "phaseStatus": "FAILED" }],
        })),
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: None,
        log: Some(LogChunk {
            epoch: lease.epoch,
            seq: 1,
            items: vec![LogItem::Line("the whole log".into())],
        }),
    };
    client
        .result(&lease.job_id, &result)
        .await
        .expect("the result is taken");
    // No waiting: the answer came after the commit that ended the build.
    let out = server
        .call("BatchGetBuilds", &json!({ "ids": [id.clone()] }))
        .await;
    let build = &out["builds"][0];
    assert_eq!(build["buildStatus"], "FAILED", "{build}");
    let phases: Vec<&str> = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phaseType"].as_str())
        .collect();
    assert_eq!(phases, ["SUBMITTED", "QUEUED", "BUILD"], "{build}");
    let log = server.log_text(&id).await;
    let took = log.find("took the build (attempt 1)");
    let whole = log.find("the whole log");
    assert!(
        took.is_some() && whole.is_some() && took < whole,
        "the server's line, then the agent's: {log}"
    );
    // Resent (as after a lost answer): the build stays as it ended.
    let again = client.result(&lease.job_id, &result).await;
    assert!(
        matches!(again, Err(ClientError::Conflict(_))),
        "a result for an ended job is refused: {again:?}"
    );
    let later = server.wait_build(&id).await;
    assert_eq!(later["phases"], build["phases"], "{later}");
    server.stop().await;
}

/// A job's result as an agent sends it for a build that succeeded, its
/// one log line (naming the job) inside.
fn succeeded(lease: &gantry_agent::protocol::Lease) -> JobResult {
    JobResult {
        epoch: lease.epoch,
        last_seq: 1,
        build: Some(json!({ "buildStatus": "SUCCEEDED", "phases": [] })),
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: None,
        log: Some(LogChunk {
            epoch: lease.epoch,
            seq: 1,
            items: vec![LogItem::Line(format!("ran {}", lease.job_id))],
        }),
    }
}

/// What the two tests of the next job with a result start from.
struct NextJobSetup {
    server: TestServer,
    client: Client,
    /// The client's agent, holding `lease` of the first build's job.
    agent: gantry_agent::protocol::Registered,
    /// An agent of another token.
    stranger: gantry_agent::protocol::Registered,
    first: String,
    /// Queued behind the first.
    second: String,
    lease: gantry_agent::protocol::Lease,
}

/// A server without its local agent, an agent of one token holding the
/// lease of `project`'s first build, a second build queued behind it, and
/// another token's agent.
async fn next_job_setup(dir: &tempfile::TempDir, project: &str) -> NextJobSetup {
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let (other_token, _) = self::token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let other = Client::new(&server.url(), &other_token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let stranger = other.register(&registration(&[])).await.expect("register");
    let first = start(&server, inline_project(project, GOOD_BUILDSPEC)).await;
    let second = server
        .call("StartBuild", &json!({ "projectName": project }))
        .await;
    let second = second["build"]["id"].as_str().expect("id").to_owned();
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    NextJobSetup {
        server,
        client,
        agent,
        stranger,
        first,
        second,
        lease,
    }
}

/// A result sent with `?next=<agent id>&lease=1` is answered with the next
/// job already leased to that agent, acknowledged for it: its epoch is
/// the lease's (heartbeats and the result are taken under it), the log
/// says which agent took the build, and the job is not offered again. Not
/// to another token's agent, and nothing when nothing is queued.
#[tokio::test]
async fn a_result_may_bring_the_agents_next_job_leased() {
    let dir = tempfile::tempdir().expect("tempdir");
    let NextJobSetup {
        server,
        client,
        agent,
        stranger,
        first,
        second,
        lease,
    } = next_job_setup(&dir, "leased").await;
    assert!(
        agent.next_lease,
        "this server leases the next job with a result"
    );
    let next = client
        .result_then_lease(&lease.job_id, &succeeded(&lease), &agent.agent_id)
        .await
        .expect("the result is taken")
        .expect("and the next job leased with it");
    assert_ne!(next.job_id, lease.job_id);
    client
        .heartbeat(&next.job_id, next.epoch)
        .await
        .expect("the lease is live under its epoch");
    let stale = client.heartbeat(&next.job_id, next.epoch + 1).await;
    assert!(
        matches!(stale, Err(ClientError::Conflict(_))),
        "another epoch is fenced: {stale:?}"
    );
    // A third build is queued; the agent named is another token's: the
    // result is taken, and nothing is leased to it.
    let third = server
        .call("StartBuild", &json!({ "projectName": "leased" }))
        .await;
    let third = third["build"]["id"].as_str().expect("id").to_owned();
    let none = client
        .result_then_lease(&next.job_id, &succeeded(&next), &stranger.agent_id)
        .await
        .expect("the result is taken");
    assert!(none.is_none(), "leased to another token's agent: {none:?}");
    for id in [&first, &second] {
        let build = server.wait_build(id).await;
        assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
        let log = server.log_text(id).await;
        assert!(
            log.contains(&format!("Agent {}", agent.agent_id)) && log.contains("took the build"),
            "the log names the agent that took it: {log}"
        );
    }
    // The next poll gets the third job, not the second again.
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("the third job is offered");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    let last = client
        .result_then_lease(&lease.job_id, &succeeded(&lease), &agent.agent_id)
        .await
        .expect("the result is taken");
    assert!(last.is_none(), "nothing is queued: {last:?}");
    let build = server.wait_build(&third).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    server.stop().await;
}

/// A poll sent with `?lease=1` is held until a job is queued and answered
/// with it leased to the agent, acknowledged for it: its epoch is the
/// lease's (heartbeats are taken under it, another epoch is fenced), the
/// log says which agent took the build, and the job is not offered again.
/// Another token cannot poll for the agent.
#[tokio::test]
async fn a_poll_may_bring_the_job_leased() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let (other_token, _) = self::token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let other = Client::new(&server.url(), &other_token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    assert!(agent.poll_lease, "this server leases jobs with a poll");
    let refused = other.poll_lease(&agent.agent_id).await;
    assert!(
        refused.is_err(),
        "another token's poll for the agent is refused: {refused:?}"
    );
    // The poll is held before anything is queued: the job that is queued
    // wakes it.
    let held = {
        let (client, agent_id) = (client.clone(), agent.agent_id.clone());
        tokio::spawn(async move { client.poll_lease(&agent_id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "nothing is queued: the poll is held");
    let id = start(&server, inline_project("polled", GOOD_BUILDSPEC)).await;
    let lease = held
        .await
        .expect("poll task")
        .expect("the poll is answered")
        .expect("with the job leased");
    client
        .heartbeat(&lease.job_id, lease.epoch)
        .await
        .expect("the lease is live under its epoch");
    let stale = client.heartbeat(&lease.job_id, lease.epoch + 1).await;
    assert!(
        matches!(stale, Err(ClientError::Conflict(_))),
        "another epoch is fenced: {stale:?}"
    );
    let next = client
        .result_then_lease(&lease.job_id, &succeeded(&lease), &agent.agent_id)
        .await
        .expect("the result is taken");
    assert!(next.is_none(), "the job is not offered again: {next:?}");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = server.log_text(&id).await;
    assert!(
        log.contains(&format!("Agent {}", agent.agent_id)) && log.contains("took the build"),
        "the log names the agent that took it: {log}"
    );
    server.stop().await;
}

/// A job leased with a poll's answer has a short first term (an offer's
/// life, not the lease timeout): never renewed — the poll was held for an
/// agent that is gone — it is back in the queue long before the lease
/// timeout, and that lease is fenced off. A renewal gives the full lease
/// timeout, and the renewed lease outlives the first term.
#[tokio::test]
async fn a_lease_from_a_poll_has_a_short_first_term_that_a_renewal_extends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.local_agent = false;
        c.lease_timeout = Duration::from_secs(120);
    })
    .await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let id = start(&server, inline_project("short", GOOD_BUILDSPEC)).await;
    let lost = client
        .poll_lease(&agent.agent_id)
        .await
        .expect("poll")
        .expect("leased");
    assert!(
        lost.expires_in_ms < agent.lease_timeout_ms,
        "a first term shorter than the lease timeout: {} ms",
        lost.expires_in_ms
    );
    // Nobody renews it: the job comes back to a poll, long before the
    // two minutes of the lease timeout.
    let back = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(lease) = client.poll_lease(&agent.agent_id).await.expect("poll") {
                return lease;
            }
        }
    })
    .await
    .expect("the job is back in the queue within a minute");
    assert_eq!(back.job_id, lost.job_id);
    assert!(back.epoch > lost.epoch, "a new lease: {back:?}");
    let stale = client.heartbeat(&lost.job_id, lost.epoch).await;
    assert!(
        matches!(stale, Err(ClientError::Conflict(_))),
        "the lapsed lease is fenced off: {stale:?}"
    );
    let renewed = client
        .heartbeat(&back.job_id, back.epoch)
        .await
        .expect("renewed");
    assert_eq!(renewed.expires_in_ms, agent.lease_timeout_ms);
    tokio::time::sleep(Duration::from_millis(back.expires_in_ms + 2000)).await;
    client
        .heartbeat(&back.job_id, back.epoch)
        .await
        .expect("the renewed lease outlived its first term");
    client
        .result(&back.job_id, &succeeded(&back))
        .await
        .expect("the result is taken");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    server.stop().await;
}

/// A poll whose agent went away — its connection closed, as when the
/// agent drains or dies while it waits — stops waiting with it: the job
/// queued next is leased to a poll that is still there, on its first
/// lease, not to the gone one.
#[tokio::test]
async fn a_poll_whose_connection_closed_is_not_leased_a_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let gone = client.register(&registration(&[])).await.expect("register");
    let live = client.register(&registration(&[])).await.expect("register");
    let held = {
        let (client, agent_id) = (client.clone(), gone.agent_id.clone());
        tokio::spawn(async move { client.poll_lease(&agent_id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.abort();
    assert!(held.await.is_err(), "the poll was cut off, not answered");
    // The gone poll waited longer than any other: it would be woken first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = {
        let (client, agent_id) = (client.clone(), live.agent_id.clone());
        tokio::spawn(async move { client.poll_lease(&agent_id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = start(&server, inline_project("gone", GOOD_BUILDSPEC)).await;
    let lease = waiting
        .await
        .expect("poll task")
        .expect("poll")
        .expect("leased to the poll still there");
    assert_eq!(lease.epoch, 1, "the job's first lease: {lease:?}");
    client
        .result(&lease.job_id, &succeeded(&lease))
        .await
        .expect("the result is taken");
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = server.log_text(&id).await;
    assert!(
        log.contains(&format!("Agent {}", live.agent_id)) && !log.contains(&gone.agent_id),
        "only the live agent took the build: {log}"
    );
    server.stop().await;
}

/// A real agent renews a lease that came with its poll within the lease's
/// short first term: a build that outlasts the term runs once, on its
/// first attempt, with no lease running out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_renews_a_lease_from_its_poll_before_the_first_term_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "renewer", &dir.path().join("work"));
    // The agent's poll is held (or about to be) when the build is queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 7\n";
    let id = start(&server, inline_project("outlasts", spec)).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let queued = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["phaseType"] == "QUEUED")
        .expect("QUEUED")
        .clone();
    assert!(
        queued["contexts"]
            .as_array()
            .is_none_or(|c| c.iter().all(|c| c["statusCode"] != "AGENT_LEASE_EXPIRED")),
        "no lease ran out: {queued}"
    );
    let log = server.log_text(&id).await;
    assert!(
        log.contains("took the build (attempt 1)") && !log.contains("(attempt 2)"),
        "one attempt: {log}"
    );
    stop_agent(drain, agent).await;
    server.stop().await;
}

/// A result sent with `?next=<agent id>` is answered with the next job
/// offered to that agent (the poll its freed slot would make, saved), only
/// when one is ready, and only to the token's own agent.
#[tokio::test]
async fn a_result_may_bring_the_agents_next_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let NextJobSetup {
        server,
        client,
        agent,
        stranger,
        first,
        second,
        lease,
    } = next_job_setup(&dir, "next").await;
    assert!(
        agent.next_offer,
        "this server offers the next job with a result"
    );
    let next = client
        .result_then_offer(&lease.job_id, &succeeded(&lease), &agent.agent_id)
        .await
        .expect("the result is taken")
        .expect("and the next job offered with it");
    assert_ne!(next.job_id, lease.job_id);
    let second_lease = client.ack(&agent.agent_id, &next).await.expect("ack");
    // A third build is ready, but the agent named is another token's: the
    // result is taken, and no job is offered to it.
    let third = server
        .call("StartBuild", &json!({ "projectName": "next" }))
        .await;
    let third = third["build"]["id"].as_str().expect("id").to_owned();
    let none = client
        .result_then_offer(
            &second_lease.job_id,
            &succeeded(&second_lease),
            &stranger.agent_id,
        )
        .await
        .expect("the result is taken");
    assert!(none.is_none(), "offered to another token's agent: {none:?}");
    for id in [&first, &second] {
        let build = server.wait_build(id).await;
        assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    }
    // The third job is still there for a poll; once it is done, nothing is
    // left to offer with its result.
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("the third job is offered");
    let lease = client.ack(&agent.agent_id, &offer).await.expect("ack");
    let last = client
        .result_then_offer(&lease.job_id, &succeeded(&lease), &agent.agent_id)
        .await
        .expect("the result is taken");
    assert!(last.is_none(), "nothing is queued: {last:?}");
    let build = server.wait_build(&third).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    server.stop().await;
}

/// A remote build's phases reach EventBridge rules however its log came
/// (a short build's comes inside its result, whose phases are then not
/// written as progress: the build's end, written next, has them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_builds_phase_and_state_events_reach_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (seen, url) = super::events::Receiver::start().await;
    let pattern = r#"{"source": ["gantry.codebuild"], "detail-type": ["CodeBuild Build Phase Change", "CodeBuild Build State Change"]}"#;
    let (status, out) = server
        .aws(
            EVENTS,
            SECRET,
            "PutRule",
            &json!({ "Name": "builds", "EventPattern": pattern }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = server
        .aws(
            EVENTS,
            SECRET,
            "PutTargets",
            &json!({ "Rule": "builds", "Targets": [{ "Id": "all", "Arn": url }] }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "evented", &dir.path().join("work"));
    let id = start(&server, inline_project("evented", GOOD_BUILDSPEC)).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let phase_types: Vec<&str> = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phaseType"].as_str())
        .collect();
    assert!(phase_types.contains(&"BUILD"), "{phase_types:?}");

    let events = |seen: &super::events::Receiver| -> Vec<Value> {
        seen.seen()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).expect("json"))
            .filter(|e| {
                e["detail"]["build-id"]
                    .as_str()
                    .is_some_and(|b| b.ends_with(&id))
            })
            .collect()
    };
    let mut got = Vec::new();
    for _ in 0..300 {
        got = events(&seen);
        let build_phase = got
            .iter()
            .any(|e| e["detail"]["completed-phase"] == "BUILD");
        let done = got
            .iter()
            .any(|e| e["detail"]["build-status"] == "SUCCEEDED");
        if build_phase && done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let build_phase = got
        .iter()
        .find(|e| e["detail"]["completed-phase"] == "BUILD")
        .unwrap_or_else(|| panic!("no BUILD phase change: {got:#?}"));
    assert_eq!(build_phase["detail"]["completed-phase-status"], "SUCCEEDED");
    assert!(
        got.iter()
            .any(|e| e["detail"]["build-status"] == "SUCCEEDED"),
        "no SUCCEEDED state change: {got:#?}"
    );
    stop_agent(drain, agent).await;
    server.stop().await;
}

/// An agent is offered a job it fits from behind many queued jobs it does
/// not fit (an offer looks at the oldest few jobs first, then wider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_offered_a_job_it_fits_from_behind_many_it_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.local_agent = false;
        c.max_concurrent_builds = 64;
    })
    .await;
    let (token, _) = token(&server).await;
    let mut gpu = inline_project("gpu-only", GOOD_BUILDSPEC);
    gpu["tags"] = json!([{ "key": "gantry:agent-labels", "value": "gpu" }]);
    let first = start(&server, gpu).await;
    let mut unfit = vec![first];
    for _ in 1..24 {
        let out = server
            .call("StartBuild", &json!({ "projectName": "gpu-only" }))
            .await;
        unfit.push(out["build"]["id"].as_str().expect("id").to_owned());
    }
    // Every one of them queued before the job that fits.
    for id in &unfit {
        let mut queued = false;
        for _ in 0..400 {
            if server.log_text(id).await.contains("Waiting for an agent") {
                queued = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(queued, "build {id} was not queued");
    }
    let fits = start(&server, inline_project("anywhere", GOOD_BUILDSPEC)).await;

    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let offer = client
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("an offer");
    let uuid = fits.split_once(':').expect("project:uuid").1;
    assert_eq!(offer.job_id, format!("job-{uuid}"), "offered {offer:?}");
    server.stop().await;
}

/// Offers are not stored, so the queue a poll reads still holds the jobs
/// offered to other polls: more offers out than a poll's widest look must
/// not hide the jobs behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_behind_more_offers_than_one_look_are_still_offered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    const OUT: usize = 110;
    start(&server, inline_project("many", GOOD_BUILDSPEC)).await;
    for _ in 0..OUT {
        server
            .call("StartBuild", &json!({ "projectName": "many" }))
            .await;
    }
    let mut offered = std::collections::HashSet::new();
    for _ in 0..=OUT {
        let agent = client.register(&registration(&[])).await.expect("register");
        // A poll with a job for it answers at once; one that found none
        // would hold for its whole long poll.
        let offer = tokio::time::timeout(Duration::from_secs(10), client.poll(&agent.agent_id))
            .await
            .expect("answered at once")
            .expect("poll")
            .expect("an offer");
        assert!(
            offered.insert(offer.job_id.clone()),
            "offered twice: {offer:?}"
        );
    }
    assert_eq!(offered.len(), OUT + 1);
    server.stop().await;
}

crate::on_both_stores!(
    of_two_acknowledgements_of_one_offer_only_one_wins,
    of_two_acknowledgements_of_one_offer_only_one_wins_on,
    of_two_acknowledgements_of_one_offer_only_one_wins_on_postgres
);

async fn of_two_acknowledgements_of_one_offer_only_one_wins_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        db.apply(c);
        c.local_agent = false;
    })
    .await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let a = client.register(&registration(&[])).await.expect("register");
    let b = client.register(&registration(&[])).await.expect("register");
    start(&server, inline_project("raced", GOOD_BUILDSPEC)).await;
    let offer = client
        .poll(&a.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let (x, y) = tokio::join!(
        client.ack(&a.agent_id, &offer),
        client.ack(&b.agent_id, &offer)
    );
    let wins = [x.is_ok(), y.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(wins, 1, "{x:?} {y:?}");
    let loser = if x.is_ok() { y } else { x };
    assert!(matches!(loser, Err(ClientError::Conflict(_))), "{loser:?}");
    server.stop().await;
}

/// Offers are signed with a key kept in the database, not stored: an
/// offer one server made is acknowledged on another sharing the database
/// (an agent behind a load balancer), though the two share no file but
/// `secret.key`; and an offer is its agent's alone.
#[tokio::test]
async fn an_offer_made_on_one_server_is_acknowledged_on_another_by_its_agent_only() {
    let Some(db) = Db::postgres("offer_across_servers").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let configure = |db: &Db| {
        let db = db.clone();
        move |c: &mut gantry_server::Config| {
            db.apply(c);
            c.local_agent = false;
        }
    };
    let a = TestServer::start_with(&data_a, configure(&db)).await;
    std::fs::create_dir_all(&data_b).expect("mkdir");
    std::fs::copy(data_a.join("secret.key"), data_b.join("secret.key")).expect("key");
    let b = TestServer::start_with(&data_b, configure(&db)).await;
    let (token, _) = token(&a).await;
    let on_a = Client::new(&a.url(), &token).expect("client");
    let on_b = Client::new(&b.url(), &token).expect("client");
    let x = on_a.register(&registration(&[])).await.expect("register");
    let y = on_a.register(&registration(&[])).await.expect("register");

    start(&a, inline_project("across", GOOD_BUILDSPEC)).await;
    let offer = on_a.poll(&x.agent_id).await.expect("poll").expect("offer");
    // Another agent cannot take what was offered to this one, on either
    // server; the job stays queued for it.
    for client in [&on_a, &on_b] {
        let refused = client.ack(&y.agent_id, &offer).await;
        assert!(
            matches!(refused, Err(ClientError::Conflict(_))),
            "{refused:?}"
        );
    }
    let lease = on_b
        .ack(&x.agent_id, &offer)
        .await
        .expect("acknowledged on b");
    assert_eq!(lease.job_id, offer.job_id);
    assert_eq!(lease.epoch, 1);
    // Once taken, the same offer takes nothing more.
    let again = on_a.ack(&x.agent_id, &offer).await;
    assert!(matches!(again, Err(ClientError::Conflict(_))), "{again:?}");
    b.stop().await;
    a.stop().await;
    db.finish().await;
}

crate::on_both_stores!(
    an_expired_lease_goes_to_a_second_agent_and_the_first_is_fenced_off,
    an_expired_lease_goes_to_a_second_agent_and_the_first_is_fenced_off_on,
    an_expired_lease_goes_to_a_second_agent_and_the_first_is_fenced_off_on_postgres
);

async fn an_expired_lease_goes_to_a_second_agent_and_the_first_is_fenced_off_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        db.apply(c);
        c.local_agent = false;
        c.lease_timeout = Duration::from_millis(2000);
    })
    .await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let first = client.register(&registration(&[])).await.expect("register");
    let id = start(&server, inline_project("lost", GOOD_BUILDSPEC)).await;
    let offer = client
        .poll(&first.agent_id)
        .await
        .expect("poll")
        .expect("offer");
    let lease = client.ack(&first.agent_id, &offer).await.expect("ack");
    // Chunks are stored once and in order: a resend is ignored, a gap waits.
    let chunk = |seq, text: &str| LogChunk {
        epoch: lease.epoch,
        seq,
        items: vec![LogItem::Line(text.into())],
    };
    let job = &lease.job_id;
    assert_eq!(
        client
            .logs(job, &chunk(1, "first-1"))
            .await
            .expect("1")
            .acked,
        1
    );
    assert_eq!(
        client
            .logs(job, &chunk(1, "first-1"))
            .await
            .expect("1 again")
            .acked,
        1
    );
    assert_eq!(
        client
            .logs(job, &chunk(3, "first-3"))
            .await
            .expect("gap")
            .acked,
        1
    );
    assert_eq!(
        client
            .logs(job, &chunk(2, "first-2"))
            .await
            .expect("2")
            .acked,
        2
    );
    // The chunk refused for its gap is sent again once the gap is filled.
    assert_eq!(
        client
            .logs(job, &chunk(3, "first-3"))
            .await
            .expect("3")
            .acked,
        3
    );
    // The first agent stops heartbeating; the lease runs out and a real
    // agent takes the job again.
    let (drain, agent) = spawn_agent(&server, &token, &[], "box-2", &dir.path().join("work"));
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let queued = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["phaseType"] == "QUEUED")
        .expect("QUEUED")
        .clone();
    assert_eq!(
        queued["contexts"][0]["statusCode"], "AGENT_LEASE_EXPIRED",
        "{queued}"
    );
    // Everything from the old lease is refused now.
    let late = JobResult {
        epoch: lease.epoch,
        last_seq: 3,
        build: Some(json!({ "buildStatus": "FAILED" })),
        error: None,
        error_phase: None,
        artifacts_sha256: None,
        command: None,
        log: None,
    };
    // (The lease began on this server, which remembers it: the refusal
    // comes from the store's fenced writes, with or without a last chunk.)
    let late_with_log = JobResult {
        last_seq: 4,
        log: Some(chunk(4, "late")),
        ..late.clone()
    };
    for refused in [
        client.heartbeat(job, lease.epoch).await.map(|_| ()),
        client.logs(job, &chunk(4, "late")).await.map(|_| ()),
        client.result(job, &late).await,
        client.result(job, &late_with_log).await,
    ] {
        assert!(
            matches!(refused, Err(ClientError::Conflict(_))),
            "{refused:?}"
        );
    }
    let log = server.log_text(&id).await;
    let order: Vec<usize> = ["first-1", "first-2", "first-3", "box-2", "hello agent"]
        .iter()
        .map(|needle| {
            log.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {log}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");
    assert_eq!(
        log.matches("first-1").count(),
        1,
        "no duplicate chunk: {log}"
    );
    assert_eq!(
        log.matches("first-3").count(),
        1,
        "no duplicate chunk: {log}"
    );
    assert!(!log.contains("late"), "{log}");
    assert_eq!(server.wait_build(&id).await["buildStatus"], "SUCCEEDED");
    stop_agent(drain, agent).await;
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_never_listed_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, id) = token(&server).await;
    assert!(token.starts_with("gat_"));
    let client = Client::new(&server.url(), &token).expect("client");
    let agent = client.register(&registration(&[])).await.expect("register");
    let listed = server.rest_ok("GET", "/agent-tokens", None, 200).await;
    assert!(!listed.to_string().contains(&token), "{listed}");
    assert_eq!(listed["agentTokens"][0]["id"], json!(id));
    assert!(listed["agentTokens"][0]["lastUsed"].is_number(), "{listed}");
    server
        .rest_ok("DELETE", &format!("/agent-tokens/{id}"), None, 200)
        .await;
    let refused = client.poll(&agent.agent_id).await;
    assert!(
        matches!(refused, Err(ClientError::Unauthorized(_))),
        "{refused:?}"
    );
    let wrong = Client::new(&server.url(), "gat_nonsense").expect("client");
    assert!(matches!(
        wrong.register(&registration(&[])).await,
        Err(ClientError::Unauthorized(_))
    ));
    let again = server
        .rest_ok("DELETE", &format!("/agent-tokens/{id}"), None, 404)
        .await;
    assert_eq!(again["error"]["code"], "NotFound");
    // The agent process itself gives up with an error, not a retry loop.
    let (_drain, task) = spawn_agent(&server, &token, &[], "x", &dir.path().join("w"));
    let ended = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("ends")
        .expect("task");
    assert!(matches!(
        ended,
        Err(gantry_agent::AgentError::Unauthorized(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_project_asking_for_labels_goes_to_an_agent_that_has_them_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The local agent is on, but it has no labels.
    let server = TestServer::start(&dir.path().join("data")).await;
    let (token, _) = token(&server).await;
    let (d1, plain) = spawn_agent(
        &server,
        &token,
        &["linux"],
        "plain-box",
        &dir.path().join("w1"),
    );
    let (d2, gpu) = spawn_agent(
        &server,
        &token,
        &["linux", "gpu"],
        "gpu-box",
        &dir.path().join("w2"),
    );
    let mut project = inline_project("labelled", GOOD_BUILDSPEC);
    project["tags"] = json!([{ "key": "gantry:agent-labels", "value": "gpu, linux" }]);
    let id = start(&server, project).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = server.log_text(&id).await;
    assert!(log.contains("gpu-box"), "{log}");
    assert!(!log.contains("plain-box"), "{log}");
    // A project without labels still runs locally.
    let local = start(&server, inline_project("unlabelled", GOOD_BUILDSPEC)).await;
    server.wait_build(&local).await;
    assert!(!server.log_text(&local).await.contains("took the build"));
    stop_agent(d1, plain).await;
    stop_agent(d2, gpu).await;
    server.stop().await;
}

#[tokio::test]
async fn stop_build_stops_the_build_on_its_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.local_agent = false;
        c.lease_timeout = Duration::from_millis(900);
    })
    .await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "box", &dir.path().join("work"));
    let id = start(&server, inline_project("slow", SLOW_BUILDSPEC)).await;
    // Wait until it runs (the agent logged its first command).
    for _ in 0..300 {
        if server.log_text(&id).await.contains("sleeping") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.call("StopBuild", &json!({ "id": id })).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "STOPPED", "{build}");
    stop_agent(drain, agent).await;
    server.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn uploads_resume_from_the_servers_offset_and_are_kept_only_when_whole_and_hashing_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let client = Client::new(&server.url(), &token).expect("client");
    let bytes = b"artifact bytes, sent in two pieces".to_vec();
    let total = bytes.len() as u64;
    let sha = sha256_hex(&bytes);
    assert_eq!(client.upload_state(&sha).await.expect("head").offset, 0);
    let first = client
        .upload(&sha, 0, total, bytes[..10].to_vec())
        .await
        .expect("first piece");
    assert_eq!((first.offset, first.complete), (10, false));
    // After a dropped connection the agent asks where to go on from.
    assert_eq!(client.upload_state(&sha).await.expect("head").offset, 10);
    let restart = client.upload(&sha, 0, total, bytes.clone()).await;
    assert!(
        matches!(restart, Err(ClientError::Conflict(ref m)) if m.contains("offset 10")),
        "{restart:?}"
    );
    let done = client
        .upload(&sha, 10, total, bytes[10..].to_vec())
        .await
        .expect("rest");
    assert!(done.complete);
    assert_eq!(client.upload_state(&sha).await.expect("head").offset, total);
    // Bytes that do not hash to the name are dropped.
    let wrong = client.upload(&sha256_hex(b"x"), 0, 1, b"y".to_vec()).await;
    assert!(
        matches!(wrong, Err(ClientError::Refused(400, ref m)) if m.contains("hash")),
        "{wrong:?}"
    );
    assert_eq!(
        client
            .upload_state(&sha256_hex(b"x"))
            .await
            .expect("head")
            .offset,
        0
    );
    let not_a_hash = client.upload("../../etc", 0, 1, b"y".to_vec()).await;
    assert!(
        matches!(not_a_hash, Err(ClientError::Refused(..))),
        "{not_a_hash:?}"
    );
    // Without a token nothing is accepted.
    let anonymous = Client::new(&server.url(), "").expect("client");
    assert!(matches!(
        anonymous.upload_state(&sha).await,
        Err(ClientError::Unauthorized(_))
    ));
    server.stop().await;
}

/// A TCP proxy to the server that can be cut (every connection dropped,
/// new ones refused) and restored, like a network outage.
struct Proxy {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = std::sync::Arc::new(tokio::sync::watch::Sender::new(false));
        let flag = down.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *flag.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut cut = flag.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        Proxy { addr, down }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

#[tokio::test]
async fn logs_written_while_the_server_is_unreachable_arrive_in_order_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let proxy = Proxy::start(server.addr).await;
    let mut config = AgentConfig::new(
        &format!("http://{}", proxy.addr),
        &token,
        dir.path().join("work"),
    );
    config.hostname = "behind-proxy".into();
    let (drain, rx) = oneshot::channel::<()>();
    let agent = tokio::spawn(gantry_agent::run(config, async move {
        let _ = rx.await;
    }));
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo before-cut\n      - sleep 1\n      - echo during-cut-1\n      - echo during-cut-2\n      - sleep 2\n      - echo after-cut\n";
    let id = start(&server, inline_project("outage", spec)).await;
    for _ in 0..600 {
        if server.log_text(&id).await.contains("before-cut") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = server.log_text(&id).await;
    assert!(
        !during.contains("during-cut-1"),
        "the outage held the lines back: {during}"
    );
    proxy.set_down(false);
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let log = server.log_text(&id).await;
    let positions: Vec<usize> = ["before-cut", "during-cut-1", "during-cut-2", "after-cut"]
        .iter()
        .map(|l| {
            assert_eq!(log.matches(&format!("\n{l}")).count(), 1, "{l} once: {log}");
            log.find(&format!("\n{l}")).expect("present")
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{log}");
    stop_agent(drain, agent).await;
    server.stop().await;
}

/// A pipeline whose CodeBuild actions run on a remote agent: the input
/// artifact reaches the agent as the build's source, the build's output
/// artifact and exported variable come back as a local build's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_codebuild_actions_run_on_a_remote_agent() {
    use super::codepipeline::ok;
    use super::pipeline_runs::{create_projects, declaration, repo_with, start as start_run};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "7.1")], "seven");
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    let (token, _) = token(&server).await;
    let (drain, agent) = spawn_agent(&server, &token, &[], "pipe-box", &dir.path().join("w"));
    // Source → Build (exports VERSION, outputs App) → Ship (checks App).
    let mut decl = declaration("remote", &url, "");
    let stages = decl["stages"].as_array_mut().expect("stages");
    stages.remove(2); // no approval
    stages[1]["actions"]
        .as_array_mut()
        .expect("actions")
        .truncate(1); // the Build action only
    let build = "version: 0.2\nenv:\n  exported-variables: [VERSION]\nphases:\n  build:\n    commands:\n      - export VERSION=$(cat version.txt)\n      - echo \"app $VERSION\" > app.txt\nartifacts:\n  files: [app.txt]\n";
    let deploy = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q \"app $EXPECTED\" app.txt\n      - echo \"deploying $EXPECTED\"\n";
    create_projects(&server, "remote", &[("build", build), ("deploy", deploy)]).await;
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let id = start_run(&server, "remote").await;
    let mut status = Value::Null;
    for _ in 0..1200 {
        let e = ok(
            &server,
            "GetPipelineExecution",
            &json!({ "pipelineName": "remote", "pipelineExecutionId": id }),
        )
        .await;
        status = e["pipelineExecution"]["status"].clone();
        if status != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "Succeeded");
    for project in ["remote-build", "remote-deploy"] {
        let listed = server
            .call("ListBuildsForProject", &json!({ "projectName": project }))
            .await;
        let build_id = listed["ids"][0].as_str().expect("a build").to_owned();
        let log = server.log_text(&build_id).await;
        assert!(
            log.contains("pipe-box"),
            "{project} ran on the agent: {log}"
        );
    }
    stop_agent(drain, agent).await;
    server.stop().await;
}

#[tokio::test]
async fn a_build_on_the_embedded_agent_sees_the_id_and_arn_the_api_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"id=$CODEBUILD_BUILD_ID arn=$CODEBUILD_BUILD_ARN\"\n";
    let id = start(&server, inline_project("local-ids", spec)).await;
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let arn = build["arn"].as_str().expect("arn");
    assert!(arn.ends_with(&format!(":build/{id}")), "{arn}");
    let log = server.log_text(&id).await;
    assert!(log.contains(&format!("id={id} arn={arn}")), "{log}");
}
