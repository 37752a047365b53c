//! moto's S3 server (from PyPI) for tests: an S3-compatible store nobody
//! here wrote. Shared by gantry-artifacts' and gantry-server's tests.
//!
//! Needs a python3 with `moto[server]` and boto3, named by
//! `GANTRY_TEST_PYTHON`; without it [`python`] prints SKIPPED and returns
//! `None`, unless `GANTRY_REQUIRE_AWS_CLIENTS=1`, when it fails instead.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the tests sign with (moto accepts any).
pub const ACCESS_KEY_ID: &str = "AKIDTEST";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "test-secret";

/// `GANTRY_TEST_PYTHON`, or `None` (test skipped) with the reason printed.
pub fn python() -> Option<PathBuf> {
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
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts the server; returns once it listens.
    pub fn start(python: &Path) -> Moto {
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

    /// Runs a boto3 snippet, with `s3` a client of this server; its stdout.
    pub fn boto3(&self, python: &Path, code: &str) -> String {
        let script = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='{ACCESS_KEY_ID}', aws_secret_access_key='{SECRET_ACCESS_KEY}')\n{code}",
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

    /// The keys of every object in `bucket`, one per line.
    pub fn keys(&self, python: &Path, bucket: &str) -> Vec<String> {
        self.boto3(
            python,
            &format!("print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket='{bucket}').get('Contents', [])))"),
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
