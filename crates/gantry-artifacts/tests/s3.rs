//! The artifact store in an S3-compatible server nobody here wrote: moto's
//! S3 (from PyPI), reached through object_store's S3 client exactly as AWS S3
//! or MinIO would be.
//!
//! Needs a python3 with `moto[server]` and boto3, named by
//! `GANTRY_TEST_PYTHON`; without it the test prints SKIPPED and passes,
//! unless `GANTRY_REQUIRE_AWS_CLIENTS=1`, when it fails instead.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_artifacts::{ArtifactStore, S3Settings, StoreLocation};

fn python() -> Option<PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() != Ok("1"),
                "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set: point it at a python3 with moto[server] and boto3"
            );
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with moto[server] to run the S3 tests"
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
            .expect("start moto.server (is moto[server] installed in GANTRY_TEST_PYTHON?)");
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

    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("AKIDTEST".into()),
            secret_access_key: Some("test-secret".into()),
            session_token: None,
        }
    }

    /// Runs a boto3 snippet against this server; returns its stdout.
    fn boto3(&self, python: &Path, code: &str) -> String {
        let script = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='AKIDTEST', aws_secret_access_key='test-secret')\n{code}",
            self.endpoint
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 failed: {}",
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

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(dir.join("README"), b"hello").unwrap();
    // Larger than the in-memory limit set below: a multipart upload.
    std::fs::write(dir.join("big.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_round_trip_through_an_s3_bucket_under_their_prefix() {
    let Some(python) = python() else { return };
    let moto = Moto::start(&python);
    moto.boto3(&python, "s3.create_bucket(Bucket='gantry-test')");

    let location = StoreLocation::parse("s3://gantry-test/ci/artifacts").unwrap();
    let store = ArtifactStore::open(&location, &moto.settings()).unwrap();
    let store = store.with_limits(gantry_artifacts::Limits {
        in_memory_bytes: 1024 * 1024,
        ..Default::default()
    });

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let artifact = store.put_dir(&src).await.expect("put_dir to S3");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blobs, 4, "three files and the manifest");
    assert_eq!(store.put_dir(&src).await.unwrap(), artifact);
    assert_eq!(store.stats().await.unwrap(), stats, "stored once");

    let out = tmp.path().join("out");
    store.materialize(&artifact, &out).await.expect("read back");
    assert_eq!(std::fs::read(out.join("README")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap().len(),
        3 * 1024 * 1024
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(src.join("bin/app"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        std::fs::metadata(out.join("bin/app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        mode & 0o111
    );

    // Every object is under the prefix, as another S3 client sees the bucket.
    let keys = moto.boto3(
        &python,
        "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket='gantry-test').get('Contents', [])))",
    );
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("ci/artifacts/blobs/sha256/")),
        "{keys:?}"
    );

    // Another prefix of the same bucket is another store.
    let other = ArtifactStore::open(
        &StoreLocation::parse("s3://gantry-test/other").unwrap(),
        &moto.settings(),
    )
    .unwrap();
    assert_eq!(other.stats().await.unwrap().blobs, 0);
    let missing = other.materialize(&artifact, &tmp.path().join("none")).await;
    assert!(
        matches!(missing, Err(gantry_artifacts::Error::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_naming_the_store() {
    let Some(python) = python() else { return };
    let moto = Moto::start(&python);
    let store = ArtifactStore::open(
        &StoreLocation::parse("s3://no-such-bucket/x").unwrap(),
        &moto.settings(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let err = store.put_dir(tmp.path()).await.expect_err("no bucket");
    let message = err.to_string();
    assert!(message.contains("object store"), "{message}");
}
