//! boto3 and the AWS CLI against the real server.
//!
//! Needs a python3 with `boto3` and `awscli`, named by `GANTRY_TEST_PYTHON`
//! (the AWS CLI runs as `python3 -m awscli`, or as `GANTRY_TEST_AWS_CLI`
//! when that names an `aws` executable). Without it the tests print why and
//! pass, unless `GANTRY_REQUIRE_AWS_CLIENTS=1`, when they fail instead.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

fn python() -> Option<PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() == Ok("1") {
                panic!(
                    "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set: point it at a python3 with boto3 and awscli installed"
                );
            }
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with boto3 and awscli to run the boto3/AWS CLI server tests"
            );
            None
        }
    }
}

/// Runs the client script in a blocking thread (the server runs on this
/// test's runtime); returns stdout, panicking with everything on failure.
async fn run_script(python: PathBuf, server: &TestServer, args: Vec<String>) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/clients/codebuild.py");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&url)
            .args(&args)
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client script failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_aws_cli_drive_codebuild() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let out = run_script(python, &server, vec!["flow".into()]).await;
    assert!(out.contains("flow: ok"), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_sees_state_survive_a_restart() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let out = run_script(python.clone(), &server, vec!["seed".into()]).await;
    let mut ids: Value = serde_json::from_str(out.trim()).expect("seed prints ids");
    server.stop().await;
    ids["interrupted"] = plant_interrupted_build(dir.path(), "keep").await.into();
    let server = TestServer::start(dir.path()).await;
    let out = run_script(
        python,
        &server,
        vec!["check-restart".into(), ids.to_string()],
    )
    .await;
    assert!(out.contains("check-restart: ok"), "{out}");
    server.stop().await;
}
