//! boto3 and the AWS CLI against the CodePipeline declaration API
//! (clients/codepipeline.py). Needs `GANTRY_TEST_PYTHON`, as the CodeBuild
//! client tests do; skipped without it unless `GANTRY_REQUIRE_AWS_CLIENTS=1`.

use std::path::PathBuf;
use std::process::Command;

use gantry_store::BuildStore;

use crate::harness::*;

fn python() -> Option<PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() == Ok("1") {
                panic!("GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set");
            }
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with boto3 and awscli to run the CodePipeline client tests"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_aws_cli_drive_codepipeline() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/clients/codepipeline.py");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&url)
            .arg("flow")
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
        out.status.success() && stdout.contains("flow: ok"),
        "client script failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Every change the clients made is in the audit log.
    let store = open_store(&server.data_dir).await;
    let actions: Vec<String> = store
        .audit_log(200)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    store.close().await;
    for expected in [
        "pipeline.create",
        "pipeline.update",
        "pipeline.delete",
        "transition.disable",
        "transition.enable",
        "webhook.put",
        "webhook.register",
        "webhook.deregister",
        "webhook.delete",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    server.stop().await;
}
