//! Starting and stopping the server in-process, and a minimal signed client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use gantry_server::{Config, ServerError};
use serde_json::Value;
use tokio::sync::oneshot;

pub const AKID: &str = "GANTRYTESTKEY";
pub const SECRET: &str = "gantry/test+Secret/Key=0123456789abcdef";

/// An AWS JSON API as the tests address it.
#[derive(Clone, Copy)]
pub struct Api {
    /// The `X-Amz-Target` prefix.
    pub target: &'static str,
    /// The SigV4 signing name.
    pub signing_name: &'static str,
    /// The JSON protocol's content type.
    pub content_type: &'static str,
}

#[allow(dead_code)]
pub const CODEBUILD: Api = Api {
    target: "CodeBuild_20161006",
    signing_name: "codebuild",
    content_type: "application/x-amz-json-1.1",
};
#[allow(dead_code)]
pub const CODEPIPELINE: Api = Api {
    target: "CodePipeline_20150709",
    signing_name: "codepipeline",
    content_type: "application/x-amz-json-1.1",
};
#[allow(dead_code)]
pub const STEP_FUNCTIONS: Api = Api {
    target: "AWSStepFunctions",
    signing_name: "states",
    content_type: "application/x-amz-json-1.0",
};
#[allow(dead_code)]
pub const EVENTS: Api = Api {
    target: "AWSEvents",
    signing_name: "events",
    content_type: "application/x-amz-json-1.1",
};

/// Which store a test server runs on. Tests that run on both are written
/// once as `async fn name_on(db: Db)` with two `#[tokio::test]` wrappers
/// (see [`on_both_stores!`](crate::on_both_stores)).
#[derive(Clone)]
pub enum Db {
    /// The data directory's SQLite file.
    Sqlite,
    /// A fresh database on the `GANTRY_TEST_POSTGRES_URL` server.
    Postgres(gantry_store::testing::TestDatabase),
}

impl Db {
    /// A fresh PostgreSQL database, or `None` (the test skips, with a note)
    /// when no server is configured; panics with `GANTRY_REQUIRE_POSTGRES=1`.
    pub async fn postgres(test: &str) -> Option<Db> {
        let url = gantry_store::testing::postgres_url(test)?;
        let db = gantry_store::testing::TestDatabase::create(&url)
            .await
            .expect("create a test database");
        Some(Db::Postgres(db))
    }

    /// Points `config` at this store.
    pub fn apply(&self, config: &mut Config) {
        if let Db::Postgres(db) = self {
            config.database = Some(gantry_server::Database::Postgres(db.url.clone()));
        }
    }

    /// Opens the store of a stopped server's data directory.
    #[allow(dead_code)]
    pub async fn open_build_store(&self, data_dir: &Path) -> Box<dyn gantry_store::BuildStore> {
        match self {
            Db::Sqlite => Box::new(open_store(data_dir).await),
            Db::Postgres(db) => {
                let key = gantry_store::MasterKey::load_or_create(&data_dir.join("secret.key"))
                    .expect("key");
                Box::new(
                    gantry_store::PgStore::connect(&db.url, key)
                        .await
                        .expect("store"),
                )
            }
        }
    }

    /// Drops a PostgreSQL test database (when the test passed).
    pub async fn finish(self) {
        if let Db::Postgres(db) = self {
            db.drop_database().await.expect("drop test database");
        }
    }
}

/// `on_both_stores!(name)`: tests `name` (SQLite) and `name_on_postgres`
/// (skipped without `GANTRY_TEST_POSTGRES_URL`), both running
/// `name_on(db: Db)`.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident, $on:ident, $pg:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $on($crate::harness::Db::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            let Some(db) = $crate::harness::Db::postgres(stringify!($pg)).await else {
                return;
            };
            $on(db.clone()).await;
            db.finish().await;
        }
    };
}

/// A server running in this process on a data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    #[allow(dead_code)]
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    /// Starts a server on `data_dir` with the test admin key.
    pub async fn start(data_dir: &Path) -> TestServer {
        TestServer::start_with(data_dir, |_| {}).await
    }

    /// Starts a server on `data_dir` and the store `db` names.
    #[allow(dead_code)]
    pub async fn start_on(db: &Db, data_dir: &Path) -> TestServer {
        TestServer::start_with(data_dir, |c| db.apply(c)).await
    }

    /// Like [`TestServer::start`], with the configuration adjusted first.
    pub async fn start_with(data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        TestServer::start_at(addr, data_dir, adjust).await
    }

    /// Like [`TestServer::start_with`], listening on `addr` (a restarted
    /// server where its agents look for it).
    pub async fn start_at(
        addr: SocketAddr,
        data_dir: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config::new(data_dir);
        config.admin_key = Some((AKID.into(), SECRET.into()));
        config.max_concurrent_builds = 4;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gantry_server::launch_with_tcp_listener(
            config,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        let server = TestServer {
            addr,
            data_dir: data_dir.to_path_buf(),
            shutdown: Some(tx),
            task,
        };
        // Ready when it answers its health check.
        for _ in 0..200 {
            if let Ok((200, _)) = server.raw("GET", "/healthz", &[], b"").await {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server on {addr} did not become ready");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; waits for the server to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("server stops within 60 s")
            .expect("server task");
        result.expect("server ended without error");
    }

    /// One HTTP/1.1 request; returns (status, body).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let addr = self.addr;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.write_all(&bytes)?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response)?;
            let text_end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or_else(|| std::io::Error::other("no header end"))?;
            let head = String::from_utf8_lossy(&response[..text_end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("no status"))?;
            let mut body = response[text_end + 4..].to_vec();
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                body = dechunk(&body);
            }
            Ok((status, body))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// An operation of `api` signed with the test key id and `secret`;
    /// returns (status, JSON).
    pub async fn aws(
        &self,
        api: Api,
        secret: &str,
        operation: &str,
        input: &Value,
    ) -> (u16, Value) {
        let body = serde_json::to_vec(input).expect("json");
        let host = self.addr.to_string();
        let target = format!("{}.{operation}", api.target);
        let unsigned = RequestParts::new("POST", "/")
            .header("Host", &host)
            .header("Content-Type", api.content_type)
            .header("X-Amz-Target", &target)
            .body(&body);
        let creds = Credentials::new(AKID, secret);
        let params = SigningParams {
            credentials: &creds,
            region: "us-east-1",
            service: api.signing_name,
            time: SystemTime::now(),
        };
        let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
        let mut headers = vec![
            ("Content-Type".to_owned(), api.content_type.to_owned()),
            ("X-Amz-Target".to_owned(), target),
        ];
        for (n, v) in signed.pairs() {
            headers.push((n.to_owned(), v.to_owned()));
        }
        let (status, body) = self
            .raw("POST", "/", &headers, &body)
            .await
            .expect("request");
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "{operation}: not JSON ({status}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, value)
    }

    /// A REST request to `/api/v1` + `path`, signed (service `gantry`) with
    /// the test key id and `secret` unless `secret` is `None`; `extra`
    /// headers are sent unsigned. Returns (status, raw body).
    pub async fn rest_raw(
        &self,
        secret: Option<&str>,
        service: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> (u16, Vec<u8>) {
        let target = format!("/api/v1{path}");
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let host = self.addr.to_string();
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        if let Some(secret) = secret {
            let mut unsigned = RequestParts::new(method, &target)
                .header("Host", &host)
                .body(&bytes);
            if body.is_some() {
                unsigned = unsigned.header("Content-Type", "application/json");
            }
            let creds = Credentials::new(AKID, secret);
            let params = SigningParams {
                credentials: &creds,
                region: "us-east-1",
                service,
                time: SystemTime::now(),
            };
            let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
            for (n, v) in signed.pairs() {
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        self.raw(method, &target, &headers, &bytes)
            .await
            .expect("request")
    }

    /// A signed REST request with the right key; returns (status, JSON).
    pub async fn rest(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, bytes) = self
            .rest_raw(Some(SECRET), "gantry", method, path, body, &[])
            .await;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: not JSON ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// A signed REST request that must answer `status`; returns the JSON.
    pub async fn rest_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let (got, value) = self.rest(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        value
    }

    /// A CodeBuild operation signed with `secret`; returns (status, JSON).
    pub async fn call_as(&self, secret: &str, operation: &str, input: &Value) -> (u16, Value) {
        self.aws(CODEBUILD, secret, operation, input).await
    }

    /// A CodeBuild operation with the right key, which must succeed.
    pub async fn call(&self, operation: &str, input: &Value) -> Value {
        let (status, out) = self.call_as(SECRET, operation, input).await;
        assert_eq!(status, 200, "{operation} {input}: {out}");
        out
    }

    /// The build's whole log, through the REST API.
    #[allow(dead_code)]
    pub async fn log_text(&self, id: &str) -> String {
        let (status, bytes) = self
            .rest_raw(
                Some(SECRET),
                "gantry",
                "GET",
                &format!("/builds/{id}/logs"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Polls BatchGetBuilds until the build is no longer IN_PROGRESS.
    pub async fn wait_build(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let out = self
                .call("BatchGetBuilds", &serde_json::json!({ "ids": [id] }))
                .await;
            let build = out["builds"][0].clone();
            if build["buildStatus"] != "IN_PROGRESS" {
                return build;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("build {id} did not finish in 120 s");
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..end]);
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return out;
        };
        if size == 0 || body.len() < end + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 4 + size).min(body.len())..];
    }
}

/// A project with an inline buildspec on the host executor.
pub fn inline_project(name: &str, buildspec: &str) -> Value {
    serde_json::json!({
        "name": name,
        "source": { "type": "NO_SOURCE", "buildspec": buildspec },
        "artifacts": { "type": "NO_ARTIFACTS" },
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": "gantry:host",
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": [{ "name": "FROM_PROJECT", "value": "p", "type": "PLAINTEXT" }]
        },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    })
}

pub const GOOD_BUILDSPEC: &str = "version: 0.2\nenv:\n  exported-variables:\n    - GREETING\nphases:\n  build:\n    commands:\n      - echo \"hello $WHO from $FROM_PROJECT\"\n      - export GREETING=\"hi-$WHO\"\n";
pub const FAILING_BUILDSPEC: &str =
    "version: 0.2\nphases:\n  build:\n    commands:\n      - echo about to fail\n      - exit 3\n";
pub const SLOW_BUILDSPEC: &str =
    "version: 0.2\nphases:\n  build:\n    commands:\n      - echo sleeping\n      - sleep 300\n";

/// Opens the store of a stopped server's data directory.
pub async fn open_store(data_dir: &Path) -> gantry_store::SqliteStore {
    let key = gantry_store::MasterKey::load_or_create(&data_dir.join("secret.key")).expect("key");
    gantry_store::SqliteStore::open(&data_dir.join("gantry.db"), key)
        .await
        .expect("store")
}

/// Leaves an IN_PROGRESS build in the store, as a crash mid-build would.
pub async fn plant_interrupted_build(data_dir: &Path, project: &str) -> String {
    use gantry_store::BuildStore;
    let store = open_store(data_dir).await;
    let id = format!("{project}:00000000-0000-4000-8000-000000000001");
    let now = gantry_store::now_ms();
    store
        .create_build(
            &gantry_store::NewBuild {
                id: id.clone(),
                project: project.into(),
                status: "IN_PROGRESS".into(),
                current_phase: "BUILD".into(),
                build: serde_json::json!({"phases": [
                    {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": now / 1000, "endTime": now / 1000},
                    {"phaseType": "BUILD", "startTime": now / 1000}
                ]}),
                overrides: serde_json::json!({}),
                start_ms: now,
            },
            "test",
        )
        .await
        .expect("plant build");
    store.close().await;
    id
}
