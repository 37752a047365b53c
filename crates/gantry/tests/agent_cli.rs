//! `gantry server --no-local-agent` and `gantry agent` as real processes:
//! a token from `gantry agent-token create --json`, a build run on the
//! agent, and SIGTERM during a job — the job finishes, the agent exits 0,
//! and the build queued behind it is not taken.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{CODEBUILD, call};

const KEY: (&str, &str) = ("GANTRYAGENTKEY", "gantry/agent+Secret/Key=0123456789abcdef");

fn codebuild(addr: &str, operation: &str, input: &Value) -> Value {
    let (status, out) = call(addr, KEY, CODEBUILD, operation, input).expect("server reachable");
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

fn build_of(addr: &str, id: &str) -> Value {
    codebuild(addr, "BatchGetBuilds", &json!({ "ids": [id] }))["builds"][0].clone()
}

fn wait_for(addr: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let build = build_of(addr, id);
        if done(&build) {
            return build;
        }
        assert!(Instant::now() < deadline, "{what}: {build}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gantry(addr: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gantry"));
    c.env("GANTRY_SERVER", format!("http://{addr}"))
        .env("GANTRY_ACCESS_KEY_ID", KEY.0)
        .env("GANTRY_SECRET_ACCESS_KEY", KEY.1);
    c
}

#[test]
fn sigterm_lets_the_running_job_finish_takes_no_more_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::start_with_args(&dir.path().join("data"), KEY, &["--no-local-agent"]);
    let out = gantry(&server.addr)
        .args(["agent-token", "create", "--name", "proc", "--json"])
        .output()
        .expect("agent-token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(
        created["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("atok-"))
    );

    let listed = gantry(&server.addr)
        .args(["agent-token", "list", "--json"])
        .output()
        .expect("agent-token list");
    assert!(listed.status.success());
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&token));

    codebuild(
        &server.addr,
        "CreateProject",
        &json!({
            "name": "drained",
            "source": {"type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo started\n      - sleep 2\n      - echo finished\n"},
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {"type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL"},
            "serviceRole": "gantry"
        }),
    );
    let mut agent = gantry(&server.addr)
        .args(["agent", "--concurrency", "1", "--work-dir"])
        .arg(dir.path().join("work"))
        .env("GANTRY_AGENT_TOKEN", &token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gantry agent");
    let first = codebuild(
        &server.addr,
        "StartBuild",
        &json!({ "projectName": "drained" }),
    )["build"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_for(&server.addr, &first, "the agent runs the build", |b| {
        b["currentPhase"] == "BUILD"
    });
    let second = codebuild(
        &server.addr,
        "StartBuild",
        &json!({ "projectName": "drained" }),
    )["build"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = agent.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "a drained agent exits 0");
    let build = wait_for(&server.addr, &first, "the first build ends", |b| {
        b["buildStatus"] != "IN_PROGRESS"
    });
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let waiting = build_of(&server.addr, &second);
    assert_eq!(
        (
            waiting["buildStatus"].clone(),
            waiting["currentPhase"].clone()
        ),
        (json!("IN_PROGRESS"), json!("QUEUED")),
        "the draining agent took no new job: {waiting}"
    );
    let id = created["id"].as_str().expect("id");
    let revoked = gantry(&server.addr)
        .args(["agent-token", "revoke", id])
        .output()
        .expect("agent-token revoke");
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let listed = gantry(&server.addr)
        .args(["agent-token", "list", "--json"])
        .output()
        .expect("agent-token list");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["agentTokens"][0]["revoked"], true, "{listed}");
    // An agent with the revoked token is refused and exits 1.
    let refused = gantry(&server.addr)
        .args(["agent", "--work-dir"])
        .arg(dir.path().join("work2"))
        .env("GANTRY_AGENT_TOKEN", &token)
        .output()
        .expect("gantry agent");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let again = gantry(&server.addr)
        .args(["agent-token", "revoke", id])
        .output()
        .expect("agent-token revoke");
    assert_eq!(again.status.code(), Some(1), "revoking twice is refused");
    server.kill();
}
