//! A boto3 job worker, written as one is for AWS, against the custom action
//! API and the artifact S3 endpoint (clients/custom_actions.py). Needs
//! `GANTRY_TEST_PYTHON`, as the other client tests do.

use std::path::PathBuf;
use std::process::Command;

use crate::codepipeline_clients::python;
use crate::harness::*;
use crate::pipeline_runs::repo_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boto3_worker_runs_a_custom_action_unchanged() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "7.8.9")], "release");
    let server = TestServer::start(&dir.path().join("data")).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/clients/custom_actions.py");
    let endpoint = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&endpoint)
            .arg(&url)
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
        out.status.success() && stdout.contains("worker: ok"),
        "worker script failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    server.stop().await;
}
