//! `gantry server --database URL` and `--no-local-agent` as a process:
//! the database file is where the URL says, unknown schemes and bad
//! PostgreSQL URLs are refused before anything starts, and without the local agent a build
//! waits QUEUED (and can still be stopped) while with it the build runs.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{CODEBUILD, call};

const KEY: (&str, &str) = ("GANTRYFLAGSKEY", "gantry/flags+Secret/Key=0123456789abcdef");

fn codebuild(addr: &str, operation: &str, input: &Value) -> Value {
    let (status, out) = call(addr, KEY, CODEBUILD, operation, input).expect("server reachable");
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

fn build_of(addr: &str, id: &str) -> Value {
    codebuild(addr, "BatchGetBuilds", &json!({ "ids": [id] }))["builds"][0].clone()
}

/// Creates a project whose build writes a marker and starts one build.
fn start_build(addr: &str) -> String {
    codebuild(
        addr,
        "CreateProject",
        &json!({
            "name": "quick",
            "source": {"type": "NO_SOURCE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ran\n"},
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {"type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL"},
            "serviceRole": "gantry"
        }),
    );
    let out = codebuild(addr, "StartBuild", &json!({ "projectName": "quick" }));
    out["build"]["id"].as_str().expect("build id").to_owned()
}

/// Polls until the build is no longer IN_PROGRESS; returns it.
fn wait_end(addr: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let build = build_of(addr, id);
        if build["buildStatus"] != "IN_PROGRESS" {
            return build;
        }
        assert!(Instant::now() < deadline, "build never ended: {build}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_the_local_agent_a_build_stays_queued_until_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::start_with_args(dir.path(), KEY, &["--no-local-agent"]);
    let id = start_build(&server.addr);
    // A build the local agent takes leaves QUEUED within milliseconds; give
    // it far longer than that and check it is still waiting, untouched.
    std::thread::sleep(Duration::from_millis(1500));
    let build = build_of(&server.addr, &id);
    assert_eq!(
        (build["buildStatus"].clone(), build["currentPhase"].clone()),
        (json!("IN_PROGRESS"), json!("QUEUED")),
        "{build}"
    );
    codebuild(&server.addr, "StopBuild", &json!({ "id": id }));
    let build = wait_end(&server.addr, &id);
    assert_eq!(build["buildStatus"], "STOPPED", "{build}");
    let phases: Vec<&str> = build["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["phaseType"].as_str())
        .collect();
    assert!(
        !phases.contains(&"BUILD"),
        "the build never ran: {phases:?}"
    );
    server.kill();
}

#[test]
fn with_the_local_agent_the_same_build_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::start(dir.path(), KEY);
    let id = start_build(&server.addr);
    let build = wait_end(&server.addr, &id);
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    server.kill();
}

#[test]
fn database_url_chooses_the_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = dir.path().join("elsewhere").join("ci.db");
    let url = format!("sqlite://{}", db.display());
    let server = support::start_with_args(&data, KEY, &["--database", &url]);
    codebuild(&server.addr, "ListProjects", &json!({}));
    server.kill();
    assert!(db.is_file(), "the database is at {}", db.display());
    assert!(
        !data.join("gantry.db").exists(),
        "no database in the data directory when --database names one"
    );
}

#[test]
fn bad_postgres_urls_and_unknown_database_schemes_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (url, expected) in [
        (
            "postgres://gantry:pw@db:notaport/gantry",
            "not a usable PostgreSQL URL",
        ),
        ("mysql://db/gantry", "unknown database scheme `mysql://`"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--database", url])
            .output()
            .expect("run gantry server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--database"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing is created for a refused URL"
        );
    }
}

#[test]
fn a_malformed_artifact_store_location_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (location, expected) in [
        ("gs://bucket/x", "unsupported scheme gs://"),
        ("s3://Not_A_Bucket/x", "bucket name"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--artifact-store", location])
            .output()
            .expect("run gantry server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{location}: {stderr}");
        assert!(stderr.contains("--artifact-store"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!dir.path().join("data").exists(), "nothing is created");
    }
}
