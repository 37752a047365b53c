//! Two servers sharing one PostgreSQL database and one S3 artifact store
//! (moto's), each with its own data directory: a custom-action job's
//! objects and a standalone build's artifacts live in the store, so either
//! server serves what the other wrote (docs/postgres.md).
//!
//! The two-server tests need `GANTRY_TEST_POSTGRES_URL` and
//! `GANTRY_TEST_PYTHON` (moto); without them they print a note and pass.
//! The single-server one runs everywhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gantry_artifacts::{ArtifactRef, ArtifactStore, S3Settings, StoreLocation};
use gantry_aws::{Credentials, RequestParts, SigningParams};
use gantry_server::LeaderElection;
use serde_json::{Value, json};

use crate::codepipeline::ok;
use crate::custom_actions::{key, pipeline, poll_job, report_zip, tester_type};
use crate::harness::*;
use crate::pipeline_runs::{create_projects, repo_with, start, wait_status};
use crate::s3_artifacts::moto;
use crate::s3_logs::s3_store;

/// Servers that see each other alive: neither takes the other's work over
/// (a server without leader election would, at start).
fn elected(c: &mut gantry_server::Config) {
    c.leader_election = Some(LeaderElection {
        ttl: Duration::from_secs(10),
        renew_every: Duration::from_secs(1),
    });
}

/// Moto with the bucket, the database, and two running servers on
/// different data directories (the second given the first's master key);
/// `None` when PostgreSQL or moto is not available.
struct Pair {
    python: PathBuf,
    moto: moto::Moto,
    db: Db,
    a: TestServer,
    b: TestServer,
    data_a: PathBuf,
    data_b: PathBuf,
}

impl Pair {
    async fn start(test: &str, dir: &Path) -> Option<Pair> {
        Pair::start_with(test, dir, |_| {}).await
    }

    /// [`Pair::start`], with `configure` applied to both servers' settings.
    async fn start_with(
        test: &str,
        dir: &Path,
        configure: fn(&mut gantry_server::Config),
    ) -> Option<Pair> {
        let python = moto::python()?;
        let db = Db::postgres(test).await?;
        let moto = moto::Moto::start(&python);
        moto.boto3(&python, "s3.create_bucket(Bucket='gantry-ci')");
        let (data_a, data_b) = (dir.join("a"), dir.join("b"));
        let start = |data: PathBuf| {
            let (db, endpoint) = (db.clone(), moto.endpoint.clone());
            async move {
                TestServer::start_with(&data, move |c| {
                    db.apply(c);
                    s3_store(c, &endpoint);
                    elected(c);
                    configure(c);
                })
                .await
            }
        };
        let a = start(data_a.clone()).await;
        std::fs::create_dir_all(&data_b).expect("mkdir");
        std::fs::copy(data_a.join("secret.key"), data_b.join("secret.key")).expect("key");
        let b = start(data_b.clone()).await;
        Some(Pair {
            python,
            moto,
            db,
            a,
            b,
            data_a,
            data_b,
        })
    }

    fn keys(&self) -> Vec<String> {
        self.moto.keys(&self.python, "gantry-ci")
    }

    /// The shared store, opened as a third party would.
    fn store(&self) -> ArtifactStore {
        let settings = S3Settings {
            endpoint: Some(self.moto.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(moto::ACCESS_KEY_ID.into()),
            secret_access_key: Some(moto::SECRET_ACCESS_KEY.into()),
            session_token: None,
        };
        let location = StoreLocation::parse("s3://gantry-ci/shared").expect("url");
        ArtifactStore::open(&location, &settings).expect("store")
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
        self.db.finish().await;
    }
}

/// One request to the artifact endpoint signed with a job's credentials
/// (as boto3 signs it); `target` is the path under the bucket with its
/// query; returns (status, body).
async fn s3(
    server: &TestServer,
    creds: &Value,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let host = server.addr.to_string();
    let path = format!("/gantry-artifacts/{target}");
    let hash = gantry_aws::sha256_hex(body);
    let token = creds["sessionToken"].as_str().unwrap_or("").to_owned();
    let mut unsigned = RequestParts::new(method, &path)
        .header("Host", &host)
        .header("x-amz-content-sha256", &hash)
        .header("x-amz-security-token", &token)
        .body(body);
    for (n, v) in extra {
        unsigned = unsigned.header(n, v);
    }
    let c = Credentials::new(
        creds["accessKeyId"].as_str().unwrap_or(""),
        creds["secretAccessKey"].as_str().unwrap_or(""),
    );
    let params = SigningParams {
        credentials: &c,
        region: "us-east-1",
        service: "s3",
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
    let mut headers = vec![
        ("x-amz-content-sha256".to_owned(), hash),
        ("x-amz-security-token".to_owned(), token),
    ];
    for (n, v) in extra {
        headers.push(((*n).to_owned(), (*v).to_owned()));
    }
    for (n, v) in signed.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    server
        .raw(method, &path, &headers, body)
        .await
        .expect("request")
}

/// The text of `<tag>` in an XML answer.
fn xml_value(body: &[u8], tag: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{tag}>");
    let start = text.find(&open).map(|i| i + open.len());
    let end = text.find(&format!("</{tag}>"));
    match (start, end) {
        (Some(s), Some(e)) if s <= e => text[s..e].to_owned(),
        _ => panic!("no <{tag}> in {text}"),
    }
}

/// The job object's name in the store, under the servers' prefix.
fn job_object(key: &str) -> String {
    format!(
        "shared/job-objects/{}",
        gantry_aws::sha256_hex(key.as_bytes())
    )
}

const VERIFY: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q 'checked across servers' report.txt\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_worker_reads_and_writes_through_either_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pair) = Pair::start(
        "a_job_worker_reads_and_writes_through_either_server",
        dir.path(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&pair.a, &pair.b);
    let url = repo_with(dir.path(), &[("version.txt", "4.5.6")], "the commit");
    ok(a, "CreateCustomActionType", &tester_type()).await;
    create_projects(a, "shared", &[("verify", VERIFY)]).await;
    let mut declaration = pipeline("shared", &url, json!({}));
    declaration["stages"]
        .as_array_mut()
        .expect("stages")
        .push(json!({"name": "Verify", "actions": [{
            "name": "Verify",
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "configuration": {"ProjectName": "shared-verify"},
            "inputArtifacts": [{"name": "Report"}]
        }]}));
    ok(a, "CreatePipeline", &json!({ "pipeline": declaration })).await;
    let execution = start(a, "shared").await;

    // The worker polls and acknowledges through B.
    let job = poll_job(b).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    ok(
        b,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": job["nonce"]}),
    )
    .await;
    let creds = &job["data"]["artifactCredentials"];
    let input = key(&job["data"]["inputArtifacts"], 0);
    let output = key(&job["data"]["outputArtifacts"], 0);

    // The input zip is written through A, into the store...
    let (status, zip_a) = s3(a, creds, "GET", &input, &[], b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&zip_a));
    assert!(
        pair.keys().contains(&job_object(&input)),
        "{:?}",
        pair.keys()
    );
    // ...and read through B, whole and by ranges, the same bytes.
    let (status, zip_b) = s3(b, creds, "GET", &input, &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(zip_a, zip_b);
    let mut ranged = Vec::new();
    for (i, start) in (0..zip_a.len()).step_by(100).enumerate() {
        let end = (start + 99).min(zip_a.len() - 1);
        let server = if i % 2 == 0 { b } else { a };
        let range = format!("bytes={start}-{end}");
        let (status, part) = s3(server, creds, "GET", &input, &[("Range", &range)], b"").await;
        assert_eq!(status, 206, "{range}");
        ranged.extend_from_slice(&part);
    }
    assert_eq!(ranged, zip_a);
    assert_eq!(entry(&zip_b, "version.txt"), "4.5.6");

    // The output: a multipart upload started through B, its parts sent
    // to both servers, completed through B.
    let report = report_zip("checked across servers\n");
    let (first, second) = report.split_at(report.len() / 2);
    let (status, created) = s3(b, creds, "POST", &format!("{output}?uploads"), &[], b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&created));
    let upload = xml_value(&created, "UploadId");
    for (n, (server, bytes)) in [(a, first), (b, second)].into_iter().enumerate() {
        let target = format!("{output}?partNumber={}&uploadId={upload}", n + 1);
        let (status, body) = s3(server, creds, "PUT", &target, &[], bytes).await;
        assert_eq!(
            status,
            200,
            "part {}: {}",
            n + 1,
            String::from_utf8_lossy(&body)
        );
    }
    let complete = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>";
    let (status, body) = s3(
        b,
        creds,
        "POST",
        &format!("{output}?uploadId={upload}"),
        &[],
        complete,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        !pair
            .keys()
            .iter()
            .any(|k| k.contains("job-objects-uploads/")),
        "the parts are gone once completed: {:?}",
        pair.keys()
    );

    // The result through A: A reads the upload B stored, and the next
    // stage builds from it.
    ok(
        a,
        "PutJobSuccessResult",
        &json!({"jobId": job_id, "executionDetails": {"summary": "done"}}),
    )
    .await;
    let e = wait_status(a, "shared", &execution, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e:#}");
    let keys = pair.keys();
    assert!(
        !keys.iter().any(|k| k.contains("job-objects")),
        "the job's objects are removed from the store: {keys:?}"
    );
    for data in [&pair.data_a, &pair.data_b] {
        assert!(!data.join("job-objects").exists());
        assert!(
            !data.join("artifact-store").exists(),
            "nothing on local disk"
        );
    }
    pair.stop().await;
}

const ARTIFACTS: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p out docs && echo built > out/result.txt && echo manual > docs/index.txt\nartifacts:\n  files: [out/result.txt]\n  secondary-artifacts:\n    manual:\n      files: [docs/index.txt]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_run_by_one_server_has_its_artifacts_served_by_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pair) = Pair::start(
        "a_build_run_by_one_server_has_its_artifacts_served_by_the_other",
        dir.path(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&pair.a, &pair.b);
    let mut project = inline_project("stored", ARTIFACTS);
    project["artifacts"] = json!({ "type": "S3", "location": "bucket" });
    a.call("CreateProject", &project).await;
    let started = a
        .call("StartBuild", &json!({ "projectName": "stored" }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    // A runs it (its embedded agent); B reports it.
    a.wait_build(&id).await;
    let build = b.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let primary: ArtifactRef = build["artifacts"]["location"]
        .as_str()
        .expect("location")
        .parse()
        .expect("the location is an artifact reference");
    assert_eq!(
        build["secondaryArtifacts"][0]["artifactIdentifier"],
        "manual"
    );
    let manual: ArtifactRef = build["secondaryArtifacts"][0]["location"]
        .as_str()
        .expect("location")
        .parse()
        .expect("a reference");

    // B serves both as zips, from the store.
    let path = format!("/builds/{id}/artifacts");
    let (status, zip) = get(b, &path).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&zip));
    assert_eq!(entry(&zip, "out/result.txt"), "built\n");
    let (status, zip) = get(b, &format!("{path}?artifact=manual")).await;
    assert_eq!(status, 200);
    assert_eq!(
        try_entry(&zip, "out/result.txt"),
        None,
        "the secondary artifact only"
    );
    assert_eq!(entry(&zip, "docs/index.txt"), "manual\n");
    let (status, _) = get(b, &format!("{path}?artifact=nope")).await;
    assert_eq!(status, 404);

    // The references name trees of the shared store, whoever opens it.
    let store = pair.store();
    let out = dir.path().join("primary");
    store.materialize(&primary, &out).await.expect("stored");
    assert_eq!(
        std::fs::read_to_string(out.join("out/result.txt")).expect("read"),
        "built\n"
    );
    assert!(store.contains(&manual).await.expect("contains"));
    let uuid = id.split_once(':').expect("id").1;
    assert!(
        !pair.data_a.join("artifacts").join(uuid).exists(),
        "no copy stays in the data directory of the server that ran it"
    );
    pair.stop().await;
}

/// A GET of the REST API as the admin: (status, body).
async fn get(server: &TestServer, path: &str) -> (u16, Vec<u8>) {
    server
        .rest_raw(Some(SECRET), "gantry", "GET", path, None, &[])
        .await
}

/// The zip's `name` entry as text.
fn entry(zip: &[u8], name: &str) -> String {
    try_entry(zip, name).unwrap_or_else(|| panic!("no {name} in the zip"))
}

/// The zip's `name` entry as text, `None` when the zip has no such entry.
fn try_entry(zip: &[u8], name: &str) -> Option<String> {
    let mut reader = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    let mut file = reader.by_name(name).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).expect("read");
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builds_artifacts_go_to_the_local_artifact_store_and_download_as_zips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start(&data).await;
    let mut project = inline_project("local", ARTIFACTS);
    project["artifacts"] = json!({ "type": "S3", "location": "bucket" });
    server.call("CreateProject", &project).await;
    let none = inline_project("none", GOOD_BUILDSPEC);
    server.call("CreateProject", &none).await;
    let mut ids = Vec::new();
    for name in ["local", "none"] {
        let started = server
            .call("StartBuild", &json!({ "projectName": name }))
            .await;
        ids.push(started["build"]["id"].as_str().expect("id").to_owned());
    }
    let build = server.wait_build(&ids[0]).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let primary: ArtifactRef = build["artifacts"]["location"]
        .as_str()
        .expect("location")
        .parse()
        .expect("the location is an artifact reference");
    let store = ArtifactStore::local(data.join("artifact-store")).expect("store");
    assert!(store.contains(&primary).await.expect("contains"));
    let uuid = ids[0].split_once(':').expect("id").1;
    assert!(!data.join("artifacts").join(uuid).exists(), "no copy stays");
    let (status, zip) = get(&server, &format!("/builds/{}/artifacts", ids[0])).await;
    assert_eq!(status, 200);
    assert_eq!(entry(&zip, "out/result.txt"), "built\n");
    let (status, zip) = get(
        &server,
        &format!("/builds/{}/artifacts?artifact=manual", ids[0]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(entry(&zip, "docs/index.txt"), "manual\n");
    // A build without artifacts, and one that does not exist, have none.
    let build = server.wait_build(&ids[1]).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let (status, body) = get(&server, &format!("/builds/{}/artifacts", ids[1])).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = get(&server, "/builds/none:0000/artifacts").await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// The zip an agent uploads for a build whose primary artifact is the
/// directory `primary` (as the agent makes it: a tree of the artifact
/// directories, zipped by the artifact store).
async fn artifacts_zip(dir: &Path) -> Vec<u8> {
    let tree = dir.join("artifacts-tree");
    std::fs::create_dir_all(tree.join("primary/out")).expect("mkdir");
    std::fs::write(tree.join("primary/out/result.txt"), "built remotely\n").expect("write");
    let objects = ArtifactStore::local(dir.join("agent-objects")).expect("store");
    let reference = objects.put_dir(&tree).await.expect("put");
    let file = objects
        .write_zip(&reference, tempfile::tempfile().expect("tmp"))
        .await
        .expect("zip");
    let mut file = file;
    let mut bytes = Vec::new();
    std::io::Seek::rewind(&mut file).expect("rewind");
    std::io::Read::read_to_end(&mut file, &mut bytes).expect("read");
    bytes
}

/// Two servers with no agent of their own behind one name, as behind a
/// load balancer: an agent's requests for one build land on either. The
/// source tree the queuing server packed is fetched through the other; the
/// artifacts upload is begun on one and finished on the other; the result
/// goes to the first, which holds none of the upload's pieces. The build
/// ends with its artifacts stored, and the upload leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_agent_may_send_each_request_to_either_server() {
    use gantry_agent::Client;
    use gantry_agent::protocol::{JobResult, LogChunk, LogItem, Payload};

    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pair) = Pair::start_with(
        "a_remote_agent_may_send_each_request_to_either_server",
        dir.path(),
        |c| c.local_agent = false,
    )
    .await
    else {
        return;
    };
    let (a, b) = (&pair.a, &pair.b);
    let url = repo_with(dir.path(), &[("version.txt", "7.8.9")], "the commit");
    let mut project = inline_project("remote", GOOD_BUILDSPEC);
    project["source"] = json!({ "type": "GITHUB", "location": url, "buildspec": GOOD_BUILDSPEC });
    project["artifacts"] = json!({ "type": "S3", "location": "bucket" });
    a.call("CreateProject", &project).await;
    let (token, _) = crate::agents::token(a).await;
    let to_a = Client::new(&a.url(), &token).expect("client");
    let to_b = Client::new(&b.url(), &token).expect("client");
    let agent = to_b
        .register(&crate::agents::registration(&[]))
        .await
        .expect("register through B");
    let started = a
        .call("StartBuild", &json!({ "projectName": "remote" }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();

    // Offered by A, which queued it; acknowledged through B.
    let offer = to_a
        .poll(&agent.agent_id)
        .await
        .expect("poll")
        .expect("an offer");
    let lease = to_b.ack(&agent.agent_id, &offer).await.expect("ack");
    match &lease.payload {
        Payload::Build(build) => assert!(build.source.is_some(), "the build ships its source"),
        other => panic!("a build payload, not {other:?}"),
    }
    // The tree A packed, fetched through B.
    let source = to_b
        .source(&lease.job_id, lease.epoch)
        .await
        .expect("the source through the other server");
    assert_eq!(entry(&source, "version.txt"), "7.8.9");

    to_b.logs(
        &lease.job_id,
        &LogChunk {
            epoch: lease.epoch,
            seq: 1,
            items: vec![LogItem::Line("ran on the agent".into())],
        },
    )
    .await
    .expect("a log chunk through B");

    // The upload: begun on A, resumed on B from the offset B reports.
    let zip = artifacts_zip(dir.path()).await;
    let sha = gantry_aws::sha256_hex(&zip);
    let total = zip.len() as u64;
    let first = to_a
        .upload(&sha, 0, total, zip[..100].to_vec())
        .await
        .expect("the first piece through A");
    assert!(!first.complete);
    assert_eq!(
        to_b.upload_state(&sha).await.expect("head").offset,
        100,
        "B sees what A received"
    );
    let done = to_b
        .upload(&sha, 100, total, zip[100..].to_vec())
        .await
        .expect("the rest through B");
    assert!(done.complete, "{done:?}");
    assert_eq!(to_a.upload_state(&sha).await.expect("head").offset, total);

    // The result through A, which received only the first piece.
    let result = JobResult {
        epoch: lease.epoch,
        last_seq: 1,
        build: Some(json!({
            "buildStatus": "SUCCEEDED",
            "phases": [],
            "artifacts": { "location": "primary" }
        })),
        error: None,
        error_phase: None,
        artifacts_sha256: Some(sha.clone()),
        command: None,
        log: None,
    };
    to_a.result(&lease.job_id, &result)
        .await
        .expect("the result through A");

    let build = b.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    let reference: ArtifactRef = build["artifacts"]["location"]
        .as_str()
        .expect("location")
        .parse()
        .expect("a reference");
    let out = dir.path().join("materialized");
    pair.store()
        .materialize(&reference, &out)
        .await
        .expect("stored");
    assert_eq!(
        std::fs::read_to_string(out.join("out/result.txt")).expect("read"),
        "built remotely\n"
    );
    let (status, log) = get(a, &format!("/builds/{id}/logs")).await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&log).contains("ran on the agent"),
        "{}",
        String::from_utf8_lossy(&log)
    );
    let keys = pair.keys();
    assert!(
        !keys.iter().any(|k| k.contains("agent-uploads/")),
        "the upload is removed once its result is taken: {keys:?}"
    );
    for data in [&pair.data_a, &pair.data_b] {
        assert!(
            !data.join("agents").exists(),
            "no source tree or upload on a server's disk"
        );
    }
    pair.stop().await;
}
