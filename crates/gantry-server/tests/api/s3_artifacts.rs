//! A pipeline whose artifacts live in an S3-compatible store nobody here
//! wrote (moto's S3 server, from PyPI), reached with the standard AWS
//! settings as AWS S3 or MinIO would be.
//!
//! Needs `GANTRY_TEST_PYTHON` naming a python3 with `moto[server]` and
//! boto3; without it the test prints SKIPPED and passes, unless
//! `GANTRY_REQUIRE_AWS_CLIENTS=1`.

use serde_json::json;

use crate::codepipeline::ok;
use crate::harness::*;
use crate::pipeline_runs::{
    BUILD, DEPLOY, TEST, create_projects, declaration, repo_with, start, wait_status,
};

#[path = "../../../gantry-artifacts/tests/support/moto.rs"]
pub(crate) mod moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_artifacts_are_kept_in_an_s3_bucket() {
    let Some(python) = moto::python() else { return };
    let moto = moto::Moto::start(&python);
    moto.boto3(&python, "s3.create_bucket(Bucket='gantry-ci')");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "4.5.6")], "release");
    let data = dir.path().join("data");
    let endpoint = moto.endpoint.clone();
    let server = TestServer::start_with(&data, move |config| {
        config.artifact_store =
            Some(gantry_server::StoreLocation::parse("s3://gantry-ci/pipelines").expect("url"));
        config.s3 = gantry_server::S3Settings {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some(moto::ACCESS_KEY_ID.into()),
            secret_access_key: Some(moto::SECRET_ACCESS_KEY.into()),
            session_token: None,
        };
    })
    .await;
    create_projects(
        &server,
        "s3app",
        &[("build", BUILD), ("test", TEST), ("deploy", DEPLOY)],
    )
    .await;
    // Source → Build and Test → Deploy (no approval): the deploy reads the
    // build's artifact back from the bucket.
    let mut pipeline = declaration("s3app", &url, "");
    pipeline["stages"]
        .as_array_mut()
        .expect("stages")
        .retain(|s| s["name"] != "Approve");
    ok(&server, "CreatePipeline", &json!({ "pipeline": pipeline })).await;

    let id = start(&server, "s3app").await;
    let e = wait_status(&server, "s3app", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e:#}");

    // The source tree and the build's output are blobs under the prefix;
    // nothing went to the local artifact directory.
    let keys = moto.keys(&python, "gantry-ci");
    // version.txt, the source manifest, app.txt and the build's manifest.
    assert!(keys.len() >= 4, "{keys:?}");
    // Beside them, the finished logs of the three builds, in one to three
    // packs (builds that end together share one).
    assert!(
        keys.iter().all(|k| k.starts_with("pipelines/blobs/sha256/")
            || (k.starts_with("pipelines/logs/packs/") && k.ends_with(".log"))),
        "{keys:?}"
    );
    let packs = keys.iter().filter(|k| k.contains("/logs/packs/")).count();
    assert!((1..=3).contains(&packs), "{keys:?}");
    assert!(!data.join("artifact-store").exists());
    server.stop().await;
}
