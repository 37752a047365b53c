//! Custom action types and the job-worker API, in-process: types are
//! validated and listed, pipelines are checked against them, secrets are
//! masked, and a worker written with the Rust client polls, acknowledges,
//! reads and writes its artifacts through the S3 endpoint with the job's
//! credentials, and answers. Each test checks one rule.

use std::time::{Duration, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::{Value, json};

use crate::codepipeline::{cp, ok};
use crate::harness::*;
use crate::pipeline_runs::{repo_with, start, wait_status};

const TYPE_ID: &str =
    r#"{"category": "Build", "owner": "Custom", "provider": "Tester", "version": "1"}"#;

pub(crate) fn type_id() -> Value {
    serde_json::from_str(TYPE_ID).expect("json")
}

pub(crate) fn tester_type() -> Value {
    json!({
        "category": "Build", "provider": "Tester", "version": "1",
        "settings": {"entityUrlTemplate": "https://ci.example.com/{Config:Target}"},
        "configurationProperties": [
            {"name": "Target", "required": true, "key": true, "secret": false, "queryable": true, "type": "String"},
            {"name": "Token", "required": true, "key": false, "secret": true},
            {"name": "Level", "required": false, "key": false, "secret": false, "type": "Number"}
        ],
        "inputArtifactDetails": {"minimumCount": 1, "maximumCount": 1},
        "outputArtifactDetails": {"minimumCount": 0, "maximumCount": 1}
    })
}

pub(crate) fn pipeline(name: &str, url: &str, custom: Value) -> Value {
    let mut action = json!({
        "name": "Check",
        "actionTypeId": type_id(),
        "configuration": {"Target": "blue", "Token": "s3cret-token"},
        "inputArtifacts": [{"name": "Src"}],
        "outputArtifacts": [{"name": "Report"}],
        "namespace": "CheckVars"
    });
    if let (Some(a), Some(c)) = (action.as_object_mut(), custom.as_object()) {
        for (k, v) in c {
            a.insert(k.clone(), v.clone());
        }
    }
    json!({
        "name": name,
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": {"type": "S3", "location": "gantry"},
        "stages": [
            {"name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
                "configuration": {"RepositoryUrl": url, "BranchName": "main"},
                "outputArtifacts": [{"name": "Src"}]
            }]},
            {"name": "Build", "actions": [action]}
        ]
    })
}

async fn fails(server: &TestServer, op: &str, input: &Value, code: &str) -> String {
    let (status, out) = cp(server, op, input).await;
    assert_eq!(status, 400, "{op}: {out}");
    assert_eq!(out["__type"], code, "{op}: {out}");
    out["message"].as_str().unwrap_or("").to_owned()
}

/// Polls until a job of the tester type (Target blue) is handed out.
pub(crate) async fn poll_job(server: &TestServer) -> Value {
    for _ in 0..1200 {
        let out = ok(
            server,
            "PollForJobs",
            &json!({"actionTypeId": type_id(), "maxBatchSize": 5, "queryParam": {"Target": "blue"}}),
        )
        .await;
        if let Some(job) = out["jobs"].as_array().and_then(|j| j.first()) {
            return job.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no job was queued");
}

/// One S3 request signed with a job's artifact credentials.
async fn s3(
    server: &TestServer,
    creds: &Value,
    method: &str,
    key: &str,
    body: &[u8],
    secret_override: Option<&str>,
    token_override: Option<&str>,
) -> (u16, String) {
    let host = server.addr.to_string();
    let path = format!("/gantry-artifacts/{key}");
    let hash = gantry_aws::sha256_hex(body);
    let token = token_override
        .or(creds["sessionToken"].as_str())
        .unwrap_or("")
        .to_owned();
    let unsigned = RequestParts::new(method, &path)
        .header("Host", &host)
        .header("x-amz-content-sha256", &hash)
        .header("x-amz-security-token", &token)
        .body(body);
    let c = Credentials::new(
        creds["accessKeyId"].as_str().unwrap_or(""),
        secret_override
            .or(creds["secretAccessKey"].as_str())
            .unwrap_or(""),
    );
    let params = SigningParams {
        credentials: &c,
        region: "us-east-1",
        service: "s3",
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
    let mut headers = vec![
        ("x-amz-content-sha256".to_owned(), hash.clone()),
        ("x-amz-security-token".to_owned(), token),
    ];
    for (n, v) in signed.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    let (status, out) = server
        .raw(method, &path, &headers, body)
        .await
        .expect("request");
    (status, String::from_utf8_lossy(&out).into_owned())
}

pub(crate) fn key(artifacts: &Value, i: usize) -> String {
    artifacts[i]["location"]["s3Location"]["objectKey"]
        .as_str()
        .expect("key")
        .to_owned()
}

/// A zip holding `report.txt`.
pub(crate) fn report_zip(text: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    zip.start_file("report.txt", zip::write::SimpleFileOptions::default())
        .expect("entry");
    std::io::Write::write_all(&mut zip, text.as_bytes()).expect("write");
    zip.finish().expect("finish");
    buf.into_inner()
}

async fn setup(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut gantry_server::Config),
) -> (TestServer, String) {
    let url = repo_with(dir, &[("version.txt", "4.5.6")], "the commit");
    let server = TestServer::start_with(&dir.join("data"), adjust).await;
    ok(&server, "CreateCustomActionType", &tester_type()).await;
    (server, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_types_are_validated_listed_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    // The same type twice, bad flags, bad counts, bad templates.
    fails(
        &server,
        "CreateCustomActionType",
        &tester_type(),
        "ValidationException",
    )
    .await;
    let mut t = tester_type();
    t["version"] = json!("2");
    t["configurationProperties"][0]["secret"] = json!(true);
    let m = fails(&server, "CreateCustomActionType", &t, "ValidationException").await;
    assert!(m.contains("queryable"), "{m}");
    let mut t = tester_type();
    t["version"] = json!("2");
    t["configurationProperties"][2]["queryable"] = json!(true);
    t["configurationProperties"][2]["required"] = json!(true);
    let m = fails(&server, "CreateCustomActionType", &t, "ValidationException").await;
    assert!(m.contains("at most one"), "{m}");
    let mut t = tester_type();
    t["version"] = json!("2");
    t["outputArtifactDetails"]["maximumCount"] = json!(6);
    let m = fails(&server, "CreateCustomActionType", &t, "ValidationException").await;
    assert!(m.contains("outputArtifactDetails.maximumCount"), "{m}");
    let mut t = tester_type();
    t["version"] = json!("2");
    t["settings"]["entityUrlTemplate"] = json!("https://x/{Config:Token}");
    let m = fails(&server, "CreateCustomActionType", &t, "ValidationException").await;
    assert!(m.contains("Config:Token"), "{m}");
    let mut t = tester_type();
    t["version"] = json!("2");
    t["configurationProperties"][1]
        .as_object_mut()
        .expect("obj")
        .remove("secret");
    let m = fails(&server, "CreateCustomActionType", &t, "ValidationException").await;
    assert!(m.contains("configurationProperties.2.secret"), "{m}");

    // Listed with the built-in types, filtered by owner.
    let all = ok(&server, "ListActionTypes", &json!({})).await;
    let ids: Vec<String> = all["actionTypes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| {
            format!(
                "{}/{}",
                t["id"]["owner"].as_str().unwrap_or(""),
                t["id"]["provider"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        ids.contains(&"AWS/CodeBuild".to_owned()) && ids.contains(&"Custom/Tester".to_owned()),
        "{ids:?}"
    );
    let custom = ok(
        &server,
        "ListActionTypes",
        &json!({"actionOwnerFilter": "Custom"}),
    )
    .await;
    assert_eq!(custom["actionTypes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        custom["actionTypes"][0]["actionConfigurationProperties"][1]["secret"],
        true
    );
    fails(
        &server,
        "ListActionTypes",
        &json!({"actionOwnerFilter": "Nobody"}),
        "ValidationException",
    )
    .await;

    // Pipelines are checked against the type.
    let missing = pipeline("p1", &url, json!({"configuration": {"Target": "blue"}}));
    let m = fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": missing}),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(m.contains("Token"), "{m}");
    let extra = pipeline(
        "p1",
        &url,
        json!({"configuration": {"Target": "blue", "Token": "t", "Other": "x"}}),
    );
    let m = fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": extra}),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(m.contains("Other"), "{m}");
    let number = pipeline(
        "p1",
        &url,
        json!({"configuration": {"Target": "blue", "Token": "t", "Level": "high"}}),
    );
    let m = fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": number}),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(m.contains("Number"), "{m}");
    let long_query = pipeline(
        "p1",
        &url,
        json!({"configuration": {"Target": "a".repeat(21), "Token": "t"}}),
    );
    fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": long_query}),
        "InvalidActionDeclarationException",
    )
    .await;
    let no_input = pipeline("p1", &url, json!({"inputArtifacts": []}));
    let m = fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": no_input}),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(m.contains("1 to 1 input artifacts"), "{m}");
    let good = pipeline("p1", &url, json!({}));
    ok(&server, "CreatePipeline", &json!({"pipeline": good})).await;

    // A deleted type is not listed, polled, or usable by new pipelines.
    let del = json!({"category": "Build", "provider": "Tester", "version": "1"});
    ok(&server, "DeleteCustomActionType", &del).await;
    fails(
        &server,
        "DeleteCustomActionType",
        &del,
        "ActionTypeNotFoundException",
    )
    .await;
    let custom = ok(
        &server,
        "ListActionTypes",
        &json!({"actionOwnerFilter": "Custom"}),
    )
    .await;
    assert_eq!(custom["actionTypes"].as_array().map(Vec::len), Some(0));
    fails(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id(), "queryParam": {"Target": "blue"}}),
        "ActionTypeNotFoundException",
    )
    .await;
    let again = pipeline("p2", &url, json!({}));
    let m = fails(
        &server,
        "CreatePipeline",
        &json!({"pipeline": again}),
        "InvalidActionDeclarationException",
    )
    .await;
    assert!(m.contains("does not exist"), "{m}");
    // Nor can it be created again.
    fails(
        &server,
        "CreateCustomActionType",
        &tester_type(),
        "ValidationException",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_properties_are_masked_everywhere_but_the_worker_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    let created = ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    let config = |p: &Value| p["pipeline"]["stages"][1]["actions"][0]["configuration"].clone();
    assert_eq!(config(&created), json!({"Target": "blue", "Token": "****"}));
    let got = ok(&server, "GetPipeline", &json!({"name": "app"})).await;
    assert_eq!(config(&got), json!({"Target": "blue", "Token": "****"}));
    // An update sending the mask keeps the secret.
    let mut p = got["pipeline"].clone();
    p["stages"][1]["actions"][0]["configuration"]["Level"] = json!("3");
    let updated = ok(&server, "UpdatePipeline", &json!({"pipeline": p})).await;
    assert_eq!(config(&updated)["Token"], "****");
    start(&server, "app").await;
    let job = poll_job(&server).await;
    assert_eq!(
        job["data"]["actionConfiguration"]["configuration"],
        json!({"Target": "blue", "Token": "s3cret-token", "Level": "3"})
    );
    let details = ok(&server, "GetJobDetails", &json!({"jobId": job["id"]})).await;
    assert_eq!(
        details["jobDetails"]["data"]["actionConfiguration"]["configuration"]["Token"],
        "s3cret-token"
    );
    // ListActionExecutions masks it too.
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app"}),
    )
    .await;
    let text = listed.to_string();
    assert!(!text.contains("s3cret-token"), "{text}");
    assert!(text.contains("****"), "{text}");
    // A new secret value replaces the old one.
    let mut p = updated["pipeline"].clone();
    p["stages"][1]["actions"][0]["configuration"]["Token"] = json!("fresh");
    ok(&server, "UpdatePipeline", &json!({"pipeline": p})).await;
    let record = open_store(&server.data_dir).await;
    let stored = gantry_store::PipelineStore::get_pipeline(&record, "app", None)
        .await
        .expect("stored");
    record.close().await;
    assert!(stored.declaration.contains("fresh"));
    server.stop().await;
}

crate::on_both_stores!(
    a_worker_polls_acknowledges_continues_and_succeeds,
    a_worker_polls_acknowledges_continues_and_succeeds_on,
    a_worker_polls_acknowledges_continues_and_succeeds_on_postgres
);

async fn a_worker_polls_acknowledges_continues_and_succeeds_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |c| db.apply(c)).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    // Nothing queued: the poll answers at once, empty.
    let empty = ok(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id(), "queryParam": {"Target": "blue"}}),
    )
    .await;
    assert_eq!(empty["jobs"], json!([]));
    // The queryable property must be given, and only it.
    fails(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id()}),
        "ValidationException",
    )
    .await;
    fails(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id(), "queryParam": {"Level": "1"}}),
        "ValidationException",
    )
    .await;
    let id = start(&server, "app").await;
    let job = poll_job(&server).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    let data = &job["data"];
    assert_eq!(data["pipelineContext"]["pipelineName"], "app");
    assert_eq!(data["pipelineContext"]["pipelineExecutionId"], id.as_str());
    assert_eq!(data["actionTypeId"], type_id());
    assert_eq!(job["accountId"], "000000000000");
    // Another query value sees nothing.
    let other = ok(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id(), "queryParam": {"Target": "green"}}),
    )
    .await;
    assert_eq!(other["jobs"], json!([]));

    // Two workers acknowledge at once: exactly one wins.
    let ack = json!({"jobId": job_id, "nonce": job["nonce"]});
    let (a, b) = tokio::join!(
        cp(&server, "AcknowledgeJob", &ack),
        cp(&server, "AcknowledgeJob", &ack)
    );
    let mut results = [a, b];
    results.sort_by_key(|r| r.0);
    assert_eq!(results[0].0, 200, "{results:?}");
    assert_eq!(results[0].1["status"], "InProgress");
    assert_eq!(
        results[1].1["__type"], "InvalidNonceException",
        "{results:?}"
    );
    fails(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": "wrong"}),
        "InvalidNonceException",
    )
    .await;
    fails(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": "00000000-0000-0000-0000-000000000000", "nonce": "n"}),
        "JobNotFoundException",
    )
    .await;

    // The input is a zip of the source's files.
    let creds = &data["artifactCredentials"];
    let input_key = key(&data["inputArtifacts"], 0);
    let (status, _) = s3(&server, creds, "HEAD", &input_key, b"", None, None).await;
    assert_eq!(status, 200);
    let host = server.addr.to_string();
    let _ = host;
    let (status, body) = s3_bytes(&server, creds, &input_key).await;
    assert_eq!(status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).expect("a zip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("version.txt").expect("file"), &mut text)
        .expect("read");
    assert_eq!(text, "4.5.6");
    // The output is uploaded.
    let output_key = key(&data["outputArtifacts"], 0);
    let (status, out) = s3(
        &server,
        creds,
        "PUT",
        &output_key,
        &report_zip("all good"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{out}");

    // outputVariables may not come with a continuation token.
    fails(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id, "continuationToken": "step-2", "outputVariables": {"A": "b"}}),
        "ValidationException",
    )
    .await;
    ok(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id, "continuationToken": "step-2",
        "executionDetails": {"summary": "half way", "percentComplete": 50}}),
    )
    .await;
    // The finished job takes no second result.
    fails(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id}),
        "InvalidJobStateException",
    )
    .await;
    fails(
        &server,
        "PutJobFailureResult",
        &json!({"jobId": job_id, "failureDetails": {"type": "JobFailed", "message": "late"}}),
        "InvalidJobStateException",
    )
    .await;

    // A new job of the same action carries the token.
    let next = poll_job(&server).await;
    assert_ne!(next["id"], job["id"]);
    assert_eq!(next["data"]["continuationToken"], "step-2");
    assert_eq!(
        next["data"]["pipelineContext"]["action"]["actionExecutionId"],
        data["pipelineContext"]["action"]["actionExecutionId"]
    );
    let next_id = next["id"].as_str().expect("id");
    ok(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": next_id, "nonce": next["nonce"]}),
    )
    .await;
    fails(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": next_id, "outputVariables": {"bad key": "x"}}),
        "ValidationException",
    )
    .await;
    ok(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": next_id,
        "executionDetails": {"summary": "checked 3 files", "externalExecutionId": "run-42"},
        "outputVariables": {"Verdict": "pass"}}),
    )
    .await;
    wait_status(&server, "app", &id, &["Succeeded"]).await;
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app"}),
    )
    .await;
    let check = listed["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["actionName"] == "Check")
        .expect("the custom action")
        .clone();
    assert_eq!(check["status"], "Succeeded");
    assert_eq!(
        check["output"]["executionResult"]["externalExecutionId"],
        "run-42"
    );
    assert_eq!(
        check["output"]["executionResult"]["externalExecutionSummary"],
        "checked 3 files"
    );
    assert_eq!(
        check["output"]["outputVariables"],
        json!({"Verdict": "pass"})
    );
    assert_eq!(
        check["output"]["outputArtifacts"],
        json!([{"name": "Report"}])
    );
    // The job's objects (in the artifact store) are gone once the action
    // has its result.
    let left: Vec<_> = std::fs::read_dir(server.data_dir.join("artifact-store/job-objects"))
        .expect("objects dir")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    server.stop().await;
}

async fn s3_bytes(server: &TestServer, creds: &Value, key: &str) -> (u16, Vec<u8>) {
    let host = server.addr.to_string();
    let path = format!("/gantry-artifacts/{key}");
    let hash = gantry_aws::sha256_hex(b"");
    let token = creds["sessionToken"].as_str().unwrap_or("").to_owned();
    let unsigned = RequestParts::new("GET", &path)
        .header("Host", &host)
        .header("x-amz-content-sha256", &hash)
        .header("x-amz-security-token", &token);
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
    for (n, v) in signed.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    server
        .raw("GET", &path, &headers, b"")
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_credentials_reach_only_their_own_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    start(&server, "app").await;
    let job = poll_job(&server).await;
    let data = &job["data"];
    let creds = &data["artifactCredentials"];
    let input_key = key(&data["inputArtifacts"], 0);
    let output_key = key(&data["outputArtifacts"], 0);
    let forbidden = |r: (u16, String), code: &str| {
        assert_eq!(r.0, 403, "{}", r.1);
        assert!(r.1.contains(&format!("<Code>{code}</Code>")), "{}", r.1);
    };
    // Inputs are read-only, outputs write-only, nothing else at all.
    forbidden(
        s3(&server, creds, "PUT", &input_key, b"x", None, None).await,
        "AccessDenied",
    );
    forbidden(
        s3(&server, creds, "GET", &output_key, b"", None, None).await,
        "AccessDenied",
    );
    forbidden(
        s3(&server, creds, "GET", "app/Other/x.zip", b"", None, None).await,
        "AccessDenied",
    );
    // Multipart uploads count as writes.
    forbidden(
        s3(
            &server,
            creds,
            "POST",
            &format!("{input_key}?uploads"),
            b"",
            None,
            None,
        )
        .await,
        "AccessDenied",
    );
    // A wrong secret, a wrong token, an unknown key id.
    forbidden(
        s3(
            &server,
            creds,
            "GET",
            &input_key,
            b"",
            Some("not-the-secret"),
            None,
        )
        .await,
        "SignatureDoesNotMatch",
    );
    forbidden(
        s3(&server, creds, "GET", &input_key, b"", None, Some("forged")).await,
        "InvalidToken",
    );
    let mut unknown = creds.clone();
    unknown["accessKeyId"] = json!("ASIANOTISSUED0000000");
    forbidden(
        s3(&server, &unknown, "GET", &input_key, b"", None, None).await,
        "InvalidAccessKeyId",
    );
    // Unsigned requests are refused.
    let (status, _) = server
        .raw("GET", &format!("/gantry-artifacts/{input_key}"), &[], b"")
        .await
        .expect("request");
    assert_eq!(status, 403);
    assert_eq!(
        s3(&server, creds, "GET", &input_key, b"", None, None)
            .await
            .0,
        200
    );
    server.stop().await;

    // Credentials of a server whose credentials live no time are expired.
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |c| c.artifact_credentials_ttl = Duration::ZERO).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    start(&server, "app").await;
    let job = poll_job(&server).await;
    let data = &job["data"];
    let r = s3(
        &server,
        &data["artifactCredentials"],
        "GET",
        &key(&data["inputArtifacts"], 0),
        b"",
        None,
        None,
    )
    .await;
    assert_eq!(r.0, 403, "{}", r.1);
    assert!(r.1.contains("<Code>ExpiredToken</Code>"), "{}", r.1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_result_fails_the_action_with_its_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    let id = start(&server, "app").await;
    let job = poll_job(&server).await;
    let job_id = job["id"].as_str().expect("id");
    ok(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": job["nonce"]}),
    )
    .await;
    let m = fails(
        &server,
        "PutJobFailureResult",
        &json!({"jobId": job_id, "failureDetails": {"type": "Oops", "message": "x"}}),
        "ValidationException",
    )
    .await;
    assert!(m.contains("failureDetails.type"), "{m}");
    fails(
        &server,
        "PutJobFailureResult",
        &json!({"jobId": job_id, "failureDetails": {"type": "JobFailed", "message": ""}}),
        "ValidationException",
    )
    .await;
    fails(
        &server,
        "PutJobFailureResult",
        &json!({"jobId": "not-a-job", "failureDetails": {"type": "JobFailed", "message": "x"}}),
        "ValidationException",
    )
    .await;
    ok(&server, "PutJobFailureResult", &json!({"jobId": job_id,
        "failureDetails": {"type": "ConfigurationError", "message": "the target is unreachable", "externalExecutionId": "run-7"}})).await;
    wait_status(&server, "app", &id, &["Failed"]).await;
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app"}),
    )
    .await;
    let check = listed["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["actionName"] == "Check")
        .expect("the custom action")
        .clone();
    assert_eq!(check["status"], "Failed");
    let text = check["output"]["executionResult"].to_string();
    assert!(
        text.contains("the target is unreachable") && text.contains("ConfigurationError"),
        "{text}"
    );
    fails(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id}),
        "InvalidJobStateException",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_custom_action_times_out_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |c| {
        c.custom_action_timeout = Duration::from_millis(300)
    })
    .await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    let id = start(&server, "app").await;
    let job = poll_job(&server).await;
    let job_id = job["id"].as_str().expect("id");
    ok(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": job["nonce"]}),
    )
    .await;
    wait_status(&server, "app", &id, &["Failed"]).await;
    // The worker's late answer is refused.
    fails(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id}),
        "InvalidJobStateException",
    )
    .await;
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app"}),
    )
    .await;
    assert!(listed.to_string().contains("TimedOut"), "{listed}");
    server.stop().await;
}

/// A PUT signed with the job's credentials carrying `extra` headers (signed
/// too) and `x-amz-content-sha256: <payload_hash>`.
async fn s3_put_with(
    server: &TestServer,
    creds: &Value,
    key: &str,
    body: &[u8],
    payload_hash: &str,
    extra: &[(&str, String)],
) -> (u16, String) {
    let host = server.addr.to_string();
    let path = format!("/gantry-artifacts/{key}");
    let token = creds["sessionToken"].as_str().unwrap_or("").to_owned();
    let mut unsigned = RequestParts::new("PUT", &path)
        .header("Host", &host)
        .header("x-amz-content-sha256", payload_hash)
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
        ("x-amz-content-sha256".to_owned(), payload_hash.to_owned()),
        ("x-amz-security-token".to_owned(), token),
    ];
    for (n, v) in extra {
        headers.push(((*n).to_owned(), v.clone()));
    }
    for (n, v) in signed.pairs() {
        headers.push((n.to_owned(), v.to_owned()));
    }
    let (status, out) = server
        .raw("PUT", &path, &headers, body)
        .await
        .expect("request");
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// `data` as botocore ≥ 1.36 sends a PutObject body: aws-chunked, with a
/// CRC32 trailer (base64 of the big-endian checksum).
fn aws_chunked(data: &[u8], crc: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in data.chunks(100) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
    body
}

fn crc32_b64(data: &[u8]) -> String {
    // CRC-32 (IEEE), bitwise: the test does not trust the server's crate.
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode((!crc).to_be_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_are_decoded_and_their_checksums_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    let id = start(&server, "app").await;
    let job = poll_job(&server).await;
    let data = &job["data"];
    let creds = &data["artifactCredentials"];
    let output_key = key(&data["outputArtifacts"], 0);
    let zip = report_zip(&"chunked upload\n".repeat(40));
    let streaming = gantry_aws::STREAMING_UNSIGNED_PAYLOAD_TRAILER;
    let headers = |body_len: usize| {
        vec![
            ("Content-Encoding", "aws-chunked".to_owned()),
            ("x-amz-trailer", "x-amz-checksum-crc32".to_owned()),
            ("x-amz-decoded-content-length", zip.len().to_string()),
            ("x-amz-sdk-checksum-algorithm", "CRC32".to_owned()),
            ("content-length-hint", body_len.to_string()),
        ]
    };
    // A wrong trailer checksum is refused and stores nothing.
    let bad = aws_chunked(&zip, "AAAAAA==");
    let (status, out) = s3_put_with(
        &server,
        creds,
        &output_key,
        &bad,
        streaming,
        &headers(bad.len()),
    )
    .await;
    assert_eq!(status, 400, "{out}");
    assert!(out.contains("<Code>BadDigest</Code>"), "{out}");
    // So is a wrong checksum header on a plain body.
    let (status, out) = s3_put_with(
        &server,
        creds,
        &output_key,
        &zip,
        &gantry_aws::sha256_hex(&zip),
        &[("x-amz-checksum-crc32", "AAAAAA==".to_owned())],
    )
    .await;
    assert_eq!(status, 400, "{out}");
    // The right one is stored, decoded, and becomes the output artifact.
    let good = aws_chunked(&zip, &crc32_b64(&zip));
    let (status, out) = s3_put_with(
        &server,
        creds,
        &output_key,
        &good,
        streaming,
        &headers(good.len()),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let job_id = job["id"].as_str().expect("id");
    ok(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": job["nonce"]}),
    )
    .await;
    ok(&server, "PutJobSuccessResult", &json!({"jobId": job_id})).await;
    wait_status(&server, "app", &id, &["Succeeded"]).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_must_be_uploaded_zips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |_| {}).await;
    ok(
        &server,
        "CreatePipeline",
        &json!({"pipeline": pipeline("app", &url, json!({}))}),
    )
    .await;
    // Nothing uploaded: the action fails, naming the artifact.
    let first = start(&server, "app").await;
    let job = poll_job(&server).await;
    ok(&server, "PutJobSuccessResult", &json!({"jobId": job["id"]})).await;
    wait_status(&server, "app", &first, &["Failed"]).await;
    // Not a zip: the action fails, naming the artifact.
    let second = start(&server, "app").await;
    let job = poll_job(&server).await;
    let data = &job["data"];
    let (status, _) = s3(
        &server,
        &data["artifactCredentials"],
        "PUT",
        &key(&data["outputArtifacts"], 0),
        b"not a zip",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    ok(&server, "PutJobSuccessResult", &json!({"jobId": job["id"]})).await;
    wait_status(&server, "app", &second, &["Failed"]).await;
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app", "filter": {"pipelineExecutionId": second}}),
    )
    .await;
    let text = listed.to_string();
    assert!(text.contains("output artifact Report"), "{text}");
    let listed = ok(
        &server,
        "ListActionExecutions",
        &json!({"pipelineName": "app", "filter": {"pipelineExecutionId": first}}),
    )
    .await;
    let text = listed.to_string();
    assert!(text.contains("Report"), "{text}");
    server.stop().await;
}

crate::on_both_stores!(
    a_job_outlives_a_server_restart,
    a_job_outlives_a_server_restart_on,
    a_job_outlives_a_server_restart_on_postgres
);

async fn a_job_outlives_a_server_restart_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, url) = setup(dir.path(), |c| db.apply(c)).await;
    let declaration = pipeline("app", &url, json!({"outputArtifacts": []}));
    ok(&server, "CreatePipeline", &json!({"pipeline": declaration})).await;
    let id = start(&server, "app").await;
    let job = poll_job(&server).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    ok(
        &server,
        "AcknowledgeJob",
        &json!({"jobId": job_id, "nonce": job["nonce"]}),
    )
    .await;
    server.stop().await;

    let server = TestServer::start_on(&db, &dir.path().join("data")).await;
    // The resumed action does not queue a second job.
    let polled = ok(
        &server,
        "PollForJobs",
        &json!({"actionTypeId": type_id(), "queryParam": {"Target": "blue"}}),
    )
    .await;
    assert_eq!(polled["jobs"], json!([]));
    // Its inputs are still readable with fresh credentials.
    let details = ok(&server, "GetJobDetails", &json!({"jobId": job_id})).await;
    let data = &details["jobDetails"]["data"];
    let (status, _) = s3(
        &server,
        &data["artifactCredentials"],
        "GET",
        &key(&data["inputArtifacts"], 0),
        b"",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    ok(
        &server,
        "PutJobSuccessResult",
        &json!({"jobId": job_id, "outputVariables": {"Done": "yes"}}),
    )
    .await;
    wait_status(&server, "app", &id, &["Succeeded"]).await;
    server.stop().await;
}
