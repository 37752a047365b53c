//! A pipeline whose artifacts live in an S3-compatible store nobody here
//! wrote (moto's S3 server, from PyPI), reached with the standard AWS
//! settings as AWS S3 or MinIO would be.
//!
//! Needs `GANTRY_TEST_PYTHON` naming a python3 with `moto[server]` and
//! boto3; without it the test prints SKIPPED and passes, unless
//! `GANTRY_REQUIRE_AWS_CLIENTS=1`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::codepipeline::ok;
use crate::harness::*;
use crate::pipeline_runs::{
    BUILD, DEPLOY, TEST, create_projects, declaration, repo_with, start, wait_status,
};

fn python() -> Option<PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() != Ok("1"),
                "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set"
            );
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with moto[server] to run the S3 artifact store test"
            );
            None
        }
    }
}

/// moto's S3 server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(python: &Path) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto.server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto.server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto.server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Runs a boto3 snippet (with `s3` a client of this server); its stdout.
    fn boto3(&self, python: &Path, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='AKIDTEST', aws_secret_access_key='test-secret')\n{code}",
            self.endpoint
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_artifacts_are_kept_in_an_s3_bucket() {
    let Some(python) = python() else { return };
    let moto = Moto::start(&python);
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
            access_key_id: Some("AKIDTEST".into()),
            secret_access_key: Some("test-secret".into()),
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
    let keys = moto.boto3(
        &python,
        "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket='gantry-ci').get('Contents', [])))",
    );
    let keys: Vec<&str> = keys.lines().collect();
    // version.txt, the source manifest, app.txt and the build's manifest.
    assert!(keys.len() >= 4, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("pipelines/blobs/sha256/")),
        "{keys:?}"
    );
    assert!(!data.join("artifact-store").exists());
    server.stop().await;
}
