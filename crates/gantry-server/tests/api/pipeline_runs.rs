//! Pipeline executions end to end, in-process: a local bare git repository,
//! a pipeline of source → parallel build and test → manual approval →
//! deploy build, driven through CodePipeline's and CodeBuild's APIs.
//! Each test checks one rule: artifacts and variables flow, approvals gate,
//! a failed stage can be retried, stop abandons, a restart resumes.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::codepipeline::{cp, ok};
use crate::harness::*;

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A bare repository `origin.git` whose `main` holds `files`; returns its URL.
pub(crate) fn repo_with(root: &Path, files: &[(&str, &str)], message: &str) -> String {
    let work = root.join("work");
    if !work.exists() {
        std::fs::create_dir_all(&work).expect("work dir");
        git(&work, &["init", "-q", "-b", "main"]);
    }
    for (name, text) in files {
        let path = work.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, text).expect("file");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", message]);
    let bare = root.join("origin.git");
    if !bare.exists() {
        git(root, &["clone", "-q", "--bare", "work", "origin.git"]);
    } else {
        git(&work, &["push", "-q", bare.to_str().expect("path"), "main"]);
    }
    format!("file://{}", bare.display())
}

/// A repository with one commit holding `version.txt`, for other test files.
pub(crate) fn test_repository(root: &Path) -> String {
    repo_with(root, &[("version.txt", "1.0.0")], "initial")
}

/// A project whose source is its pipeline's input artifact.
fn pipeline_project(name: &str, buildspec: &str) -> Value {
    json!({
        "name": name,
        "source": { "type": "CODEPIPELINE", "buildspec": buildspec },
        "artifacts": { "type": "CODEPIPELINE" },
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": "gantry:host",
            "computeType": "BUILD_GENERAL1_SMALL"
        },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry"
    })
}

/// Builds `app.txt` from the source's `version.txt` and exports VERSION.
pub(crate) const BUILD: &str = "version: 0.2\nenv:\n  exported-variables: [VERSION]\nphases:\n  build:\n    commands:\n      - export VERSION=$(cat version.txt)\n      - echo \"app $VERSION\" > app.txt\nartifacts:\n  files: [app.txt]\n";
/// Fails unless the marker file named by $MARKER exists.
pub(crate) const TEST: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - test -f version.txt\n      - test -z \"$MARKER\" || test -f \"$MARKER\"\n";
/// Checks the build's artifact and the variable passed from the build.
pub(crate) const DEPLOY: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q \"app $EXPECTED\" app.txt\n      - echo \"deploying $EXPECTED from $COMMIT\"\n";

pub(crate) fn declaration(name: &str, url: &str, marker: &str) -> Value {
    json!({
        "name": name,
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "stages": [
            { "name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
                "configuration": { "RepositoryUrl": url, "BranchName": "main" },
                "outputArtifacts": [{ "name": "Src" }],
                "namespace": "SourceVariables"
            }]},
            { "name": "Verify", "actions": [
                {
                    "name": "Build",
                    "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                    "configuration": { "ProjectName": format!("{name}-build") },
                    "inputArtifacts": [{ "name": "Src" }],
                    "outputArtifacts": [{ "name": "App" }],
                    "namespace": "BuildVariables",
                    "runOrder": 1
                },
                {
                    "name": "Test",
                    "actionTypeId": { "category": "Test", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                    "configuration": {
                        "ProjectName": format!("{name}-test"),
                        "EnvironmentVariables": json!([{ "name": "MARKER", "value": marker, "type": "PLAINTEXT" }]).to_string()
                    },
                    "inputArtifacts": [{ "name": "Src" }],
                    "runOrder": 1
                }
            ]},
            { "name": "Approve", "actions": [{
                "name": "Release",
                "actionTypeId": { "category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1" },
                "configuration": { "CustomData": "ship it?" }
            }]},
            { "name": "Deploy", "actions": [{
                "name": "Ship",
                "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                "configuration": {
                    "ProjectName": format!("{name}-deploy"),
                    "EnvironmentVariables": json!([
                        { "name": "EXPECTED", "value": "#{BuildVariables.VERSION}", "type": "PLAINTEXT" },
                        { "name": "COMMIT", "value": "#{SourceVariables.CommitId}", "type": "PLAINTEXT" }
                    ]).to_string()
                },
                "inputArtifacts": [{ "name": "App" }]
            }]}
        ]
    })
}

/// Starts `pipeline`; returns the execution id.
pub(crate) async fn start(server: &TestServer, pipeline: &str) -> String {
    let started = ok(
        server,
        "StartPipelineExecution",
        &json!({ "name": pipeline }),
    )
    .await;
    started["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Creates the `<pipeline>-<suffix>` projects, one per buildspec.
pub(crate) async fn create_projects(server: &TestServer, pipeline: &str, specs: &[(&str, &str)]) {
    for (suffix, spec) in specs {
        server
            .call(
                "CreateProject",
                &pipeline_project(&format!("{pipeline}-{suffix}"), spec),
            )
            .await;
    }
}

/// Polls until `pipeline` has an execution (started by something other
/// than the test); returns its summary.
async fn first_execution(server: &TestServer, pipeline: &str, what: &str) -> Value {
    for _ in 0..1200 {
        let listed = ok(
            server,
            "ListPipelineExecutions",
            &json!({ "pipelineName": pipeline }),
        )
        .await;
        if let Some(first) = listed["pipelineExecutionSummaries"]
            .as_array()
            .and_then(|a| a.first())
        {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {pipeline} was never started");
}

pub(crate) async fn setup(server: &TestServer, name: &str, url: &str, marker: &str) {
    create_projects(
        server,
        name,
        &[("build", BUILD), ("test", TEST), ("deploy", DEPLOY)],
    )
    .await;
    ok(
        server,
        "CreatePipeline",
        &json!({ "pipeline": declaration(name, url, marker) }),
    )
    .await;
}

async fn execution(server: &TestServer, name: &str, id: &str) -> Value {
    ok(
        server,
        "GetPipelineExecution",
        &json!({ "pipelineName": name, "pipelineExecutionId": id }),
    )
    .await["pipelineExecution"]
        .clone()
}

/// Polls until the execution's status is one of `wanted`.
pub(crate) async fn wait_status(
    server: &TestServer,
    name: &str,
    id: &str,
    wanted: &[&str],
) -> Value {
    for _ in 0..1200 {
        let e = execution(server, name, id).await;
        if wanted.iter().any(|w| e["status"] == *w) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = ok(server, "GetPipelineState", &json!({ "name": name })).await;
    panic!("execution {id} never reached {wanted:?}; state: {state:#}");
}

/// Polls GetPipelineState until the approval waits; returns its token.
async fn approval_token(server: &TestServer, name: &str) -> String {
    for _ in 0..1200 {
        let state = ok(server, "GetPipelineState", &json!({ "name": name })).await;
        let latest = &state["stageStates"][2]["actionStates"][0]["latestExecution"];
        if latest["status"] == "InProgress"
            && let Some(token) = latest["token"].as_str()
        {
            return token.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the approval never started");
}

async fn approve(server: &TestServer, name: &str, token: &str, status: &str) -> (u16, Value) {
    cp(
        server,
        "PutApprovalResult",
        &json!({
            "pipelineName": name, "stageName": "Approve", "actionName": "Release",
            "result": { "summary": "looks good", "status": status }, "token": token,
        }),
    )
    .await
}

crate::on_both_stores!(
    a_pipeline_runs_source_parallel_actions_approval_and_deploy,
    a_pipeline_runs_source_parallel_actions_approval_and_deploy_on,
    a_pipeline_runs_source_parallel_actions_approval_and_deploy_on_postgres
);

async fn a_pipeline_runs_source_parallel_actions_approval_and_deploy_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(
        dir.path(),
        &[("version.txt", "1.2.3")],
        "first commit\n\nbody",
    );
    let server = TestServer::start_on(&db, &dir.path().join("data")).await;
    setup(&server, "app", &url, "").await;

    let id = start(&server, "app").await;
    let token = approval_token(&server, "app").await;

    // Before the answer: the deploy has not run, a wrong token is refused.
    let e = execution(&server, "app", &id).await;
    assert_eq!(e["status"], "InProgress");
    let (status, err) = approve(&server, "app", "not-the-token", "Approved").await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("InvalidApprovalTokenException"))
    );
    let (status, out) = approve(&server, "app", &token, "Approved").await;
    assert_eq!(status, 200, "{out}");
    assert!(out["approvedAt"].is_number(), "{out}");
    let (status, err) = approve(&server, "app", &token, "Approved").await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ApprovalAlreadyCompletedException"))
    );

    let e = wait_status(&server, "app", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e:#}");
    assert_eq!(e["artifactRevisions"][0]["name"], "Src");
    assert_eq!(e["artifactRevisions"][0]["revisionSummary"], "first commit");
    assert_eq!(e["trigger"]["triggerType"], "StartPipelineExecution");

    // Every action ran once; Build and Test ran in the same stage attempt.
    let actions = ok(
        &server,
        "ListActionExecutions",
        &json!({ "pipelineName": "app", "filter": { "pipelineExecutionId": id } }),
    )
    .await;
    let mut names: Vec<&str> = actions["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["actionName"].as_str().expect("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["Build", "Checkout", "Release", "Ship", "Test"]);
    let ship = actions["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["actionName"] == "Ship")
        .expect("ship")
        .clone();
    let build_id = ship["output"]["executionResult"]["externalExecutionId"]
        .as_str()
        .expect("build id")
        .to_owned();
    // The deploy build saw the build's exported variable and the commit.
    let build = server.wait_build(&build_id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED");
    assert_eq!(build["initiator"], "codepipeline/app");
    let source = ok(
        &server,
        "ListActionExecutions",
        &json!({ "pipelineName": "app" }),
    )
    .await;
    let checkout = source["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["actionName"] == "Checkout")
        .expect("checkout")
        .clone();
    let commit = checkout["output"]["outputVariables"]["CommitId"]
        .as_str()
        .expect("commit")
        .to_owned();
    assert_eq!(commit.len(), 40);
    assert_eq!(
        ship["input"]["resolvedConfiguration"]["ProjectName"],
        "app-deploy"
    );

    let listed = ok(
        &server,
        "ListPipelineExecutions",
        &json!({ "pipelineName": "app" }),
    )
    .await;
    assert_eq!(
        listed["pipelineExecutionSummaries"][0]["pipelineExecutionId"],
        id.as_str()
    );
    assert_eq!(
        listed["pipelineExecutionSummaries"][0]["sourceRevisions"][0]["revisionId"],
        commit.as_str()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stage_is_retried_with_its_failed_actions_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "2.0.0")], "second");
    let marker = dir.path().join("marker");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "retry", &url, marker.to_str().expect("path")).await;

    let id = start(&server, "retry").await;
    let e = wait_status(&server, "retry", &id, &["Failed", "Succeeded"]).await;
    assert_eq!(e["status"], "Failed");
    assert!(
        e["statusSummary"]
            .as_str()
            .expect("summary")
            .contains("Test"),
        "{e}"
    );

    // The stage of another execution's making cannot be retried; this one can.
    let (status, err) = cp(
        &server,
        "RetryStageExecution",
        &json!({ "pipelineName": "retry", "stageName": "Source", "pipelineExecutionId": id, "retryMode": "FAILED_ACTIONS" }),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("StageNotRetryableException")),
        "{err}"
    );
    std::fs::write(&marker, "ok").expect("marker");
    ok(
        &server,
        "RetryStageExecution",
        &json!({ "pipelineName": "retry", "stageName": "Verify", "pipelineExecutionId": id, "retryMode": "FAILED_ACTIONS" }),
    )
    .await;
    approval_token(&server, "retry").await;
    let actions = ok(
        &server,
        "ListActionExecutions",
        &json!({ "pipelineName": "retry", "filter": { "pipelineExecutionId": id } }),
    )
    .await;
    let runs = |name: &str| {
        actions["actionExecutionDetails"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|a| a["actionName"] == name)
            .count()
    };
    assert_eq!(runs("Test"), 2, "the failed action ran again");
    assert_eq!(runs("Build"), 1, "the succeeded one did not");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_abandon_ends_an_execution_waiting_for_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "3")], "third");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "stop", &url, "").await;
    let id = start(&server, "stop").await;
    let token = approval_token(&server, "stop").await;
    ok(
        &server,
        "StopPipelineExecution",
        &json!({ "pipelineName": "stop", "pipelineExecutionId": id, "abandon": true, "reason": "not today" }),
    )
    .await;
    let e = execution(&server, "stop", &id).await;
    assert_eq!(e["status"], "Stopped");
    assert_eq!(e["statusSummary"], "not today");
    // The abandoned approval can no longer be answered.
    let (status, err) = approve(&server, "stop", &token, "Approved").await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = cp(
        &server,
        "StopPipelineExecution",
        &json!({ "pipelineName": "stop", "pipelineExecutionId": id }),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("PipelineExecutionNotStoppableException"))
    );
    server.stop().await;
}

crate::on_both_stores!(
    a_waiting_approval_and_its_answer_survive_a_restart,
    a_waiting_approval_and_its_answer_survive_a_restart_on,
    a_waiting_approval_and_its_answer_survive_a_restart_on_postgres
);

async fn a_waiting_approval_and_its_answer_survive_a_restart_on(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "4")], "fourth");
    let data = dir.path().join("data");
    let server = TestServer::start_on(&db, &data).await;
    setup(&server, "durable", &url, "").await;
    let id = start(&server, "durable").await;
    let token = approval_token(&server, "durable").await;
    server.stop().await;

    let server = TestServer::start_on(&db, &data).await;
    assert_eq!(
        approval_token(&server, "durable").await,
        token,
        "the same approval waits"
    );
    let (status, out) = approve(&server, "durable", &token, "Approved").await;
    assert_eq!(status, 200, "{out}");
    let e = wait_status(&server, "durable", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e:#}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_refuses_unknown_pipelines_and_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "5")], "fifth");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "vars", &url, "").await;
    let (status, err) = cp(
        &server,
        "StartPipelineExecution",
        &json!({ "name": "nope" }),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("PipelineNotFoundException"))
    );
    let (status, err) = cp(
        &server,
        "StartPipelineExecution",
        &json!({ "name": "vars", "variables": [{ "name": "Undeclared", "value": "x" }] }),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ValidationException")),
        "{err}"
    );
    let (status, err) = cp(
        &server,
        "GetPipelineExecution",
        &json!({ "pipelineName": "vars", "pipelineExecutionId": "00000000-0000-0000-0000-000000000000" }),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("PipelineExecutionNotFoundException"))
    );
    server.stop().await;
}

/// A GitHub push payload for `after` on `main` of the repository at `url`.
fn push_payload(url: &str, before: &str, after: &str, files: &[&str]) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "repository": { "full_name": "acme/app", "clone_url": url },
        "commits": [{
            "id": after, "message": "change", "author": { "name": "Ada" },
            "added": [], "removed": [], "modified": files,
        }],
    })
    .to_string()
    .into_bytes()
}

fn head_of(root: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root.join("work"))
        .output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Puts a GITHUB_HMAC webhook on `pipeline`'s Checkout action; returns its path.
async fn put_webhook(server: &TestServer, pipeline: &str, secret: &str) -> String {
    let out = ok(
        server,
        "PutWebhook",
        &json!({ "webhook": {
            "name": format!("{pipeline}-hook"),
            "targetPipeline": pipeline,
            "targetAction": "Checkout",
            "filters": [{ "jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}" }],
            "authentication": "GITHUB_HMAC",
            "authenticationConfiguration": { "SecretToken": secret },
        }}),
    )
    .await;
    let url = out["webhook"]["url"].as_str().expect("url").to_owned();
    url.split_once("/webhooks/")
        .map(|(_, p)| format!("/webhooks/{p}"))
        .expect("path")
}

async fn deliver(
    server: &TestServer,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .chain([("Content-Type".to_string(), "application/json".to_string())])
        .collect();
    let (status, body) = server
        .raw("POST", path, &headers, body)
        .await
        .expect("delivery");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn execution_count(server: &TestServer, pipeline: &str) -> usize {
    ok(
        server,
        "ListPipelineExecutions",
        &json!({ "pipelineName": pipeline }),
    )
    .await["pipelineExecutionSummaries"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_starts_the_pushed_commit_and_a_forged_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "6")], "sixth");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "hooked", &url, "").await;
    let path = put_webhook(&server, "hooked", "s3cret").await;
    let first = head_of(dir.path());
    repo_with(dir.path(), &[("version.txt", "7")], "seventh");
    let second = head_of(dir.path());
    let body = push_payload(&url, &first, &second, &["version.txt"]);

    // Unsigned, wrongly signed, and signed for another body: 401, nothing starts.
    let github = |sig: String| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-Hub-Signature-256", sig),
        ]
    };
    let (status, _) = deliver(
        &server,
        &path,
        &[("X-GitHub-Event", "push".to_string())],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(
        &server,
        &path,
        &github(gantry_triggers::signature::sign_sha256("wrong", &body)),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(
        &server,
        &path,
        &github(gantry_triggers::signature::sign_sha256("s3cret", b"{}")),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(execution_count(&server, "hooked").await, 0);

    // A push to another branch fails the webhook's filter: 200, nothing starts.
    let other = String::from_utf8(body.clone())
        .expect("utf8")
        .replace("refs/heads/main", "refs/heads/dev")
        .into_bytes();
    let (status, out) = deliver(
        &server,
        &path,
        &github(gantry_triggers::signature::sign_sha256("s3cret", &other)),
        &other,
    )
    .await;
    assert_eq!((status, &out["started"]), (200, &json!(false)), "{out}");

    // Signed: the execution builds exactly the pushed commit.
    let (status, out) = deliver(
        &server,
        &path,
        &github(gantry_triggers::signature::sign_sha256("s3cret", &body)),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let id = out["pipelineExecutionId"].as_str().expect("id").to_owned();
    approval_token(&server, "hooked").await;
    let e = execution(&server, "hooked", &id).await;
    assert_eq!(e["trigger"]["triggerType"], "Webhook");
    assert_eq!(e["trigger"]["triggerDetail"], "hooked-hook");
    assert_eq!(e["artifactRevisions"][0]["revisionId"], second.as_str());
    let hooks = ok(&server, "ListWebhooks", &json!({})).await;
    assert!(hooks["webhooks"][0]["lastTriggered"].is_number(), "{hooks}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_tokens_and_path_filters_decide_what_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(
        dir.path(),
        &[("version.txt", "8"), ("src/a.rs", "a"), ("docs/x.md", "x")],
        "eighth",
    );
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut decl = declaration("mono", &url, "");
    decl["pipelineType"] = json!("V2");
    decl["triggers"] = json!([{ "providerType": "CodeStarSourceConnection", "gitConfiguration": {
        "sourceActionName": "Checkout",
        "push": [{ "branches": { "includes": ["main"] }, "filePaths": { "includes": ["src/**"], "excludes": ["**/*.md"] } }]
    }}]);
    create_projects(
        &server,
        "mono",
        &[("build", BUILD), ("test", TEST), ("deploy", DEPLOY)],
    )
    .await;
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let path = put_webhook(&server, "mono", "gl-token").await;
    let gitlab = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", token.to_string()),
        ]
    };
    let base = head_of(dir.path());
    let gl_body = |after: &str, files: &[&str]| {
        json!({
            "object_kind": "push", "ref": "refs/heads/main", "before": base, "after": after,
            "project": { "path_with_namespace": "acme/mono", "git_http_url": url, "git_ssh_url": "git@example.com:acme/mono.git", "web_url": "https://example.com/acme/mono" },
            "commits": [{ "id": after, "message": "m", "timestamp": "2026-11-30T00:00:00Z",
                          "author": { "name": "Ada", "email": "a@example.com" },
                          "added": [], "modified": files, "removed": [] }],
            "total_commits_count": 1,
        })
        .to_string()
        .into_bytes()
    };
    repo_with(dir.path(), &[("docs/x.md", "changed")], "docs only");
    let docs = head_of(dir.path());
    let body = gl_body(&docs, &["docs/x.md"]);
    let (status, _) = deliver(&server, &path, &gitlab("nope"), &body).await;
    assert_eq!(status, 401);
    let (status, out) = deliver(&server, &path, &gitlab("gl-token"), &body).await;
    assert_eq!(
        (status, &out["started"]),
        (200, &json!(false)),
        "a docs-only push starts nothing: {out}"
    );
    repo_with(dir.path(), &[("src/a.rs", "changed")], "code");
    let code = head_of(dir.path());
    let body = gl_body(&code, &["src/a.rs"]);
    let (status, out) = deliver(&server, &path, &gitlab("gl-token"), &body).await;
    assert_eq!((status, &out["started"]), (200, &json!(true)), "{out}");
    assert_eq!(execution_count(&server, "mono").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_executions_from_concurrent_starts_all_run_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "9")], "ninth");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut decl = declaration("queue", &url, "");
    decl["pipelineType"] = json!("V2");
    decl["executionMode"] = json!("QUEUED");
    decl["stages"].as_array_mut().expect("stages").remove(2); // no approval
    create_projects(
        &server,
        "queue",
        &[("build", BUILD), ("test", TEST), ("deploy", DEPLOY)],
    )
    .await;
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(start(&server, "queue").await);
    }
    for id in &ids {
        let e = wait_status(&server, "queue", id, &["Succeeded", "Failed", "Superseded"]).await;
        assert_eq!(e["status"], "Succeeded", "{e:#}");
    }
    // Each entered Deploy after the one started before it: deploy actions
    // started in start order.
    let actions = ok(
        &server,
        "ListActionExecutions",
        &json!({ "pipelineName": "queue" }),
    )
    .await;
    let mut ships: Vec<(i64, String)> = actions["actionExecutionDetails"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["actionName"] == "Ship")
        .map(|a| {
            (
                (a["startTime"].as_f64().expect("time") * 1000.0) as i64,
                a["pipelineExecutionId"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    ships.sort();
    let order: Vec<String> = ships.into_iter().map(|(_, id)| id).collect();
    assert_eq!(order, ids);
    server.stop().await;
}

/// An EventBridge call, signed as the test admin.
async fn events(server: &TestServer, operation: &str, input: &Value) -> Value {
    let (status, out) = server.aws(EVENTS, SECRET, operation, input).await;
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_rule_targeting_a_pipeline_starts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "10")], "tenth");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "evented", &url, "").await;
    events(
        &server,
        "PutRule",
        &json!({ "Name": "on-release", "EventPattern": r#"{"source": ["acme.release"]}"# }),
    )
    .await;
    events(
        &server,
        "PutTargets",
        &json!({ "Rule": "on-release", "Targets": [
            { "Id": "p", "Arn": "arn:aws:codepipeline:us-east-1:000000000000:evented" }
        ]}),
    )
    .await;
    events(
        &server,
        "PutEvents",
        &json!({ "Entries": [
            { "Source": "acme.release", "DetailType": "Release", "Detail": "{}" }
        ]}),
    )
    .await;
    let first = first_execution(&server, "evented", "the rule").await;
    assert_eq!(first["trigger"]["triggerType"], "CloudWatchEvent");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_starts_each_watching_pipeline_once_per_new_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "11")], "eleventh");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.poll_interval = Duration::from_millis(200);
    })
    .await;
    for name in ["polled-a", "polled-b"] {
        let mut decl = declaration(name, &url, "");
        decl["stages"][0]["actions"][0]["configuration"]["PollForSourceChanges"] = json!("true");
        decl["stages"].as_array_mut().expect("stages").truncate(2);
        create_projects(&server, name, &[("build", BUILD), ("test", TEST)]).await;
        ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    }
    // The first rounds only record the head.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(execution_count(&server, "polled-a").await, 0);
    repo_with(dir.path(), &[("version.txt", "12")], "twelfth");
    let head = head_of(dir.path());
    for name in ["polled-a", "polled-b"] {
        let first = first_execution(&server, name, "polling").await;
        let id = first["pipelineExecutionId"]
            .as_str()
            .expect("id")
            .to_owned();
        let e = wait_status(&server, name, &id, &["Succeeded", "Failed"]).await;
        assert_eq!(e["trigger"]["triggerType"], "PollForSourceChanges");
        assert_eq!(e["artifactRevisions"][0]["revisionId"], head.as_str());
    }
    // No new head: no new execution.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(execution_count(&server, "polled-a").await, 1);
    assert_eq!(execution_count(&server, "polled-b").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_succeeds_publishes_the_event_that_starts_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "13")], "thirteenth");
    let server = TestServer::start(&dir.path().join("data")).await;
    for name in ["first", "second"] {
        let mut decl = declaration(name, &url, "");
        decl["stages"].as_array_mut().expect("stages").truncate(2);
        create_projects(&server, name, &[("build", BUILD), ("test", TEST)]).await;
        ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    }
    let pattern = json!({
        "source": ["gantry.codepipeline"],
        "detail-type": ["CodePipeline Pipeline Execution State Change"],
        "detail": { "pipeline": ["first"], "state": ["SUCCEEDED"] },
    });
    events(
        &server,
        "PutRule",
        &json!({ "Name": "chain", "EventPattern": pattern.to_string() }),
    )
    .await;
    events(
        &server,
        "PutTargets",
        &json!({ "Rule": "chain", "Targets": [
            { "Id": "next", "Arn": "arn:aws:codepipeline:us-east-1:000000000000:second" }
        ]}),
    )
    .await;
    let id = start(&server, "first").await;
    let e = wait_status(&server, "first", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded");
    let first = first_execution(
        &server,
        "second",
        "the SUCCEEDED event of the first pipeline",
    )
    .await;
    assert_eq!(first["trigger"]["triggerType"], "CloudWatchEvent");
    // Only the SUCCEEDED event matched: one start, not one per state change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(execution_count(&server, "second").await, 1);
    server.stop().await;
}

/// Without the local agent (`gantry server --no-local-agent`) a pipeline's
/// build action starts its build, which waits QUEUED; stopping the
/// execution stops the build before it ran a phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_local_agent_build_actions_wait_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = test_repository(dir.path());
    let server = TestServer::start_with(&dir.path().join("data"), |c| c.local_agent = false).await;
    setup(&server, "held", &url, "").await;
    let id = start(&server, "held").await;
    let mut build_id = None;
    for _ in 0..1200 {
        let listed = server
            .call(
                "ListBuildsForProject",
                &json!({ "projectName": "held-build" }),
            )
            .await;
        if let Some(first) = listed["ids"][0].as_str() {
            build_id = Some(first.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let build_id = build_id.expect("the build action started a build");
    let build = server
        .call("BatchGetBuilds", &json!({ "ids": [build_id] }))
        .await["builds"][0]
        .clone();
    assert_eq!(
        (build["buildStatus"].clone(), build["currentPhase"].clone()),
        (json!("IN_PROGRESS"), json!("QUEUED")),
        "{build}"
    );
    let e = execution(&server, "held", &id).await;
    assert_eq!(e["status"], "InProgress");
    ok(
        &server,
        "StopPipelineExecution",
        &json!({ "pipelineName": "held", "pipelineExecutionId": id, "abandon": true }),
    )
    .await;
    let build = server.wait_build(&build_id).await;
    assert_eq!(build["buildStatus"], "STOPPED", "{build}");
    assert!(
        !build["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .any(|p| p["phaseType"] == "BUILD"),
        "the build never ran: {build}"
    );
    server.stop().await;
}

async fn sfn(server: &TestServer, operation: &str, input: &Value) -> Value {
    let (status, out) = server.aws(STEP_FUNCTIONS, SECRET, operation, input).await;
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

async fn sfn_done(server: &TestServer, arn: &str) -> Value {
    for _ in 0..1200 {
        let d = sfn(server, "DescribeExecution", &json!({ "executionArn": arn })).await;
        if d["status"] != "RUNNING" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("state-machine execution {arn} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_starts_pipelines_and_waits_for_them_with_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "21")], "twenty-first");
    let server = TestServer::start(&dir.path().join("data")).await;
    for (name, build) in [
        ("green", BUILD),
        (
            "red",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - exit 3\n",
        ),
    ] {
        let mut decl = declaration(name, &url, "");
        decl["stages"].as_array_mut().expect("stages").truncate(2);
        create_projects(&server, name, &[("build", build), ("test", TEST)]).await;
        ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    }
    let definition = json!({"StartAt": "Fire", "States": {
        "Fire": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:codepipeline:startPipelineExecution",
                 "Parameters": {"Name.$": "$.pipeline"}, "ResultPath": "$.fired", "Next": "Wait"},
        "Wait": {"Type": "Task", "Resource": "arn:aws:states:::codepipeline:startPipelineExecution.sync",
                 "Parameters": {"Name.$": "$.pipeline", "Variables": []},
                 "ResultSelector": {"status.$": "$.PipelineExecution.Status",
                                    "id.$": "$.PipelineExecution.PipelineExecutionId"},
                 "ResultPath": "$.waited",
                 "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Failed"}],
                 "End": true},
        "Failed": {"Type": "Pass", "End": true}}});
    let machine = create_machine(&server, "releaser", definition).await;
    let mut outputs = Vec::new();
    for pipeline in ["green", "red"] {
        let started = sfn(
            &server,
            "StartExecution",
            &json!({"stateMachineArn": machine, "input": json!({"pipeline": pipeline}).to_string()}),
        )
        .await;
        let done = sfn_done(&server, started["executionArn"].as_str().expect("arn")).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        let output: Value =
            serde_json::from_str(done["output"].as_str().expect("output")).expect("json");
        outputs.push((pipeline, output, started["executionArn"].clone()));
    }
    for (pipeline, output, arn) in &outputs {
        // The request-response start returned an execution that exists and names its starter.
        let fired = output["fired"]["PipelineExecutionId"]
            .as_str()
            .expect("fired id");
        let e = execution(&server, pipeline, fired).await;
        assert_eq!(e["trigger"]["triggerType"], "StartPipelineExecution", "{e}");
        assert_eq!(
            e["trigger"]["triggerDetail"],
            format!("states:{}", arn.as_str().expect("arn"))
        );
    }
    let (_, green, _) = &outputs[0];
    assert_eq!(green["waited"]["status"], "Succeeded", "{green}");
    let waited = green["waited"]["id"].as_str().expect("waited id");
    assert_eq!(
        execution(&server, "green", waited).await["status"],
        "Succeeded"
    );
    let (_, red, _) = &outputs[1];
    assert_eq!(red["error"]["Error"], "States.TaskFailed", "{red}");
    let cause: Value = serde_json::from_str(red["error"]["Cause"].as_str().expect("cause"))
        .expect("cause is JSON");
    assert_eq!(cause["PipelineExecution"]["Status"], "Failed", "{cause}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_start_of_an_unknown_pipeline_fails_with_codepipelines_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let definition = json!({"StartAt": "Fire", "States": {
        "Fire": {"Type": "Task", "Resource": "arn:aws:states:::codepipeline:startPipelineExecution",
                 "Parameters": {"Name": "nowhere"}, "End": true}}});
    let machine = create_machine(&server, "lost", definition).await;
    let started = sfn(
        &server,
        "StartExecution",
        &json!({"stateMachineArn": machine}),
    )
    .await;
    let done = sfn_done(&server, started["executionArn"].as_str().expect("arn")).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(
        done["error"], "CodePipeline.PipelineNotFoundException",
        "{done}"
    );
    server.stop().await;
}

/// Source → a StepFunctions invoke reading its input from the source →
/// a build over the execution's output.
fn invoke_declaration(name: &str, url: &str, machine: &str) -> Value {
    json!({
        "name": name,
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "stages": [
            { "name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
                "configuration": { "RepositoryUrl": url, "BranchName": "main" },
                "outputArtifacts": [{ "name": "Src" }]
            }]},
            { "name": "Workflow", "actions": [{
                "name": "Greet",
                "actionTypeId": { "category": "Invoke", "owner": "AWS", "provider": "StepFunctions", "version": "1" },
                "configuration": {
                    "StateMachineArn": machine,
                    "InputType": "FilePath",
                    "Input": "sfn/input.json",
                    "ExecutionNamePrefix": "release"
                },
                "inputArtifacts": [{ "name": "Src" }],
                "outputArtifacts": [{ "name": "Greeting" }],
                "namespace": "Sfn"
            }]},
            { "name": "Check", "actions": [{
                "name": "Read",
                "actionTypeId": { "category": "Test", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                "configuration": {
                    "ProjectName": format!("{name}-check"),
                    "EnvironmentVariables": json!([
                        { "name": "EXECUTION", "value": "#{Sfn.ExecutionArn}", "type": "PLAINTEXT" }
                    ]).to_string()
                },
                "inputArtifacts": [{ "name": "Greeting" }]
            }]}
        ]
    })
}

async fn create_machine(server: &TestServer, name: &str, definition: Value) -> String {
    sfn(
        server,
        "CreateStateMachine",
        &json!({"name": name, "definition": definition.to_string(),
                "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
    )
    .await["stateMachineArn"]
        .as_str()
        .expect("arn")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoke_action_runs_a_state_machine_and_passes_on_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(
        dir.path(),
        &[("sfn/input.json", "{\"who\": \"world\"}")],
        "with a workflow input",
    );
    let server = TestServer::start(&dir.path().join("data")).await;
    let greeter = create_machine(
        &server,
        "greeter",
        json!({"StartAt": "Greet", "States": {"Greet": {"Type": "Pass",
            "Parameters": {"greeting.$": "States.Format('hello {}', $.who)"}, "End": true}}}),
    )
    .await;
    let broken = create_machine(
        &server,
        "broken",
        json!({"StartAt": "Boom", "States": {"Boom": {"Type": "Fail",
            "Error": "Release.Blocked", "Cause": "a freeze is on"}}}),
    )
    .await;
    let check = "version: 0.2\nphases:\n  build:\n    commands:\n      - grep -q 'hello world' output.json\n      - case \"$EXECUTION\" in *:execution:greeter:release-*) ;; *) echo \"bad ARN $EXECUTION\"; exit 1;; esac\n";
    for (name, machine) in [("invoking", &greeter), ("blocked", &broken)] {
        create_projects(&server, name, &[("check", check)]).await;
        ok(
            &server,
            "CreatePipeline",
            &json!({ "pipeline": invoke_declaration(name, &url, machine) }),
        )
        .await;
    }
    let id = start(&server, "invoking").await;
    let e = wait_status(&server, "invoking", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e}");
    let actions = ok(
        &server,
        "ListActionExecutions",
        &json!({ "pipelineName": "invoking", "filter": { "pipelineExecutionId": id } }),
    )
    .await;
    let greet = actions["actionExecutionDetails"]
        .as_array()
        .expect("details")
        .iter()
        .find(|a| a["actionName"] == "Greet")
        .expect("the invoke action")
        .clone();
    let arn = greet["output"]["outputVariables"]["ExecutionArn"]
        .as_str()
        .expect("ExecutionArn variable");
    let described = sfn(
        &server,
        "DescribeExecution",
        &json!({ "executionArn": arn }),
    )
    .await;
    assert_eq!(described["status"], "SUCCEEDED");
    assert_eq!(
        described["name"],
        format!(
            "release-{}",
            greet["actionExecutionId"].as_str().expect("id")
        )
    );
    assert_eq!(
        greet["output"]["outputVariables"]["StateMachineArn"],
        greeter.as_str()
    );

    let id = start(&server, "blocked").await;
    let e = wait_status(&server, "blocked", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Failed", "{e}");
    let state = ok(&server, "GetPipelineState", &json!({ "name": "blocked" })).await;
    let greet = &state["stageStates"][1]["actionStates"][0]["latestExecution"];
    assert_eq!(greet["status"], "Failed", "{state}");
    let message = greet["errorDetails"]["message"].as_str().expect("message");
    assert!(
        message.contains("Release.Blocked") && message.contains("a freeze is on"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_token_makes_a_start_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "5")], "fifth");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut decl = declaration("tokened", &url, "");
    decl["stages"].as_array_mut().expect("stages").truncate(2);
    create_projects(&server, "tokened", &[("build", BUILD), ("test", TEST)]).await;
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let start_with = |token: &'static str| {
        let server = &server;
        async move {
            server
                .aws(
                    CODEPIPELINE,
                    SECRET,
                    "StartPipelineExecution",
                    &json!({ "name": "tokened", "clientRequestToken": token }),
                )
                .await
        }
    };
    let (status, first) = start_with("release-42").await;
    assert_eq!(status, 200, "{first}");
    let id = first["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned();
    // The same token again, while it runs and after it ended: the same execution.
    let (_, again) = start_with("release-42").await;
    assert_eq!(again["pipelineExecutionId"], id.as_str());
    let e = wait_status(&server, "tokened", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e}");
    let (_, after) = start_with("release-42").await;
    assert_eq!(after["pipelineExecutionId"], id.as_str());
    assert_eq!(execution_count(&server, "tokened").await, 1);
    // Another token is another start.
    let (_, other) = start_with("release-43").await;
    assert_ne!(other["pipelineExecutionId"], id.as_str());
    assert_eq!(execution_count(&server, "tokened").await, 2);
    // A malformed token is refused and starts nothing.
    let (status, bad) = start_with("not a token!").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["__type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("ValidationException"),
        "{bad}"
    );
    assert_eq!(execution_count(&server, "tokened").await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_heads_survive_a_restart_so_a_push_made_while_down_starts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "31")], "thirty-first");
    let data = dir.path().join("data");
    let polling = |c: &mut gantry_server::Config| c.poll_interval = Duration::from_millis(200);
    let server = TestServer::start_with(&data, polling).await;
    let mut decl = declaration("watched", &url, "");
    decl["stages"][0]["actions"][0]["configuration"]["PollForSourceChanges"] = json!("true");
    decl["stages"].as_array_mut().expect("stages").truncate(2);
    create_projects(&server, "watched", &[("build", BUILD), ("test", TEST)]).await;
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    // The first rounds record the head (and start nothing).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(execution_count(&server, "watched").await, 0);
    server.stop().await;

    // A push while the server is down is built when it comes back.
    repo_with(dir.path(), &[("version.txt", "32")], "thirty-second");
    let head = head_of(dir.path());
    let server = TestServer::start_with(&data, polling).await;
    let first = first_execution(&server, "watched", "polling after a restart").await;
    let id = first["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned();
    let e = wait_status(&server, "watched", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["trigger"]["triggerType"], "PollForSourceChanges");
    assert_eq!(e["artifactRevisions"][0]["revisionId"], head.as_str());
    server.stop().await;

    // A restart with no push starts nothing.
    let server = TestServer::start_with(&data, polling).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(execution_count(&server, "watched").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_mode_under_concurrent_pushes_builds_the_first_and_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "40")], "fortieth");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut decl = declaration("newest", &url, "");
    decl["stages"].as_array_mut().expect("stages").truncate(2); // Source, Verify
    // A build long enough that every later push arrives while it runs.
    let slow = "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 2\n      - cat version.txt\n";
    create_projects(&server, "newest", &[("build", slow), ("test", TEST)]).await;
    decl["stages"][1]["actions"][0]["outputArtifacts"] = json!([]);
    ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    let path = put_webhook(&server, "newest", "s3cret").await;
    // Three pushes, delivered back to back as a git host would.
    let mut ids = Vec::new();
    let mut commits = Vec::new();
    let mut before = head_of(dir.path());
    for n in 41..44 {
        repo_with(
            dir.path(),
            &[("version.txt", &n.to_string())],
            &format!("push {n}"),
        );
        let after = head_of(dir.path());
        let body = push_payload(&url, &before, &after, &["version.txt"]);
        let headers = vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                gantry_triggers::signature::sign_sha256("s3cret", &body),
            ),
        ];
        let (status, out) = deliver(&server, &path, &headers, &body).await;
        assert_eq!(status, 200, "{out}");
        ids.push(out["pipelineExecutionId"].as_str().expect("id").to_owned());
        commits.push(after.clone());
        before = after;
    }
    let mut ends = Vec::new();
    for id in &ids {
        let e = wait_status(
            &server,
            "newest",
            id,
            &["Succeeded", "Failed", "Superseded", "Stopped"],
        )
        .await;
        ends.push(e);
    }
    // The first ran; the middle one was overtaken while it waited; the newest ran.
    assert_eq!(ends[0]["status"], "Succeeded", "{:#}", ends[0]);
    assert_eq!(ends[1]["status"], "Superseded", "{:#}", ends[1]);
    assert_eq!(ends[2]["status"], "Succeeded", "{:#}", ends[2]);
    assert_eq!(
        ends[2]["artifactRevisions"][0]["revisionId"],
        commits[2].as_str()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_repository_webhook_starts_every_pipeline_its_push_selects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo_a, repo_b) = (dir.path().join("a"), dir.path().join("b"));
    let url_a = repo_with(
        &repo_a,
        &[("version.txt", "50"), ("app/x.rs", "x")],
        "fiftieth",
    );
    let url_b = repo_with(&repo_b, &[("version.txt", "1")], "other");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.webhook_secret = Some("repo-secret".into());
    })
    .await;
    let mut pipelines = vec![
        ("a-default", declaration("a-default", &url_a, "")),
        ("a-app-only", declaration("a-app-only", &url_a, "")),
        ("b-other", declaration("b-other", &url_b, "")),
    ];
    pipelines[1].1["pipelineType"] = json!("V2");
    pipelines[1].1["triggers"] = json!([{ "providerType": "CodeStarSourceConnection", "gitConfiguration": {
        "sourceActionName": "Checkout", "push": [{ "filePaths": { "includes": ["app/**"] } }]
    }}]);
    for (name, decl) in &mut pipelines {
        decl["stages"].as_array_mut().expect("stages").truncate(2);
        create_projects(&server, name, &[("build", BUILD), ("test", TEST)]).await;
        ok(&server, "CreatePipeline", &json!({ "pipeline": decl })).await;
    }
    let github = |body: &[u8], secret: &str| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                gantry_triggers::signature::sign_sha256(secret, body),
            ),
        ]
    };

    // A docs-only push to repository A: the default pipeline starts, the
    // app-only one is filtered out, B's pipeline is not even considered.
    let base = head_of(&repo_a);
    repo_with(&repo_a, &[("README.md", "docs")], "docs");
    let docs = head_of(&repo_a);
    let body = push_payload(&url_a, &base, &docs, &["README.md"]);
    for (secret, headers) in [
        ("wrong", github(&body, "wrong")),
        ("none", vec![("X-GitHub-Event", "push".to_string())]),
    ] {
        let (status, out) = deliver(&server, "/webhooks/github", &headers, &body).await;
        assert_eq!(status, 401, "{secret}: {out}");
    }
    for name in ["a-default", "a-app-only", "b-other"] {
        assert_eq!(
            execution_count(&server, name).await,
            0,
            "a refused delivery starts nothing"
        );
    }
    let (status, out) = deliver(
        &server,
        "/webhooks/github",
        &github(&body, "repo-secret"),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let started: Vec<&str> = out["started"]
        .as_array()
        .expect("started")
        .iter()
        .filter_map(|s| s["pipeline"].as_str())
        .collect();
    assert_eq!(started, vec!["a-default"], "{out}");
    let skipped = out["skipped"].to_string();
    assert!(
        skipped.contains("a-app-only") && !skipped.contains("b-other"),
        "{out}"
    );
    let id = out["started"][0]["pipelineExecutionId"]
        .as_str()
        .expect("id");
    let e = wait_status(&server, "a-default", id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded", "{e}");
    assert_eq!(e["artifactRevisions"][0]["revisionId"], docs.as_str());

    // A push touching app/, through GitLab's endpoint and token: both of A's pipelines.
    repo_with(&repo_a, &[("app/x.rs", "y")], "app change");
    let code = head_of(&repo_a);
    let gl = json!({
        "object_kind": "push", "ref": "refs/heads/main", "before": docs, "after": code,
        "project": { "path_with_namespace": "acme/a", "git_http_url": url_a,
                     "git_ssh_url": "git@example.com:acme/a.git", "web_url": "https://example.com/acme/a" },
        "commits": [{ "id": code, "message": "m", "timestamp": "2026-11-30T00:00:00Z",
                      "author": { "name": "Ada", "email": "a@example.com" },
                      "added": [], "modified": ["app/x.rs"], "removed": [] }],
        "total_commits_count": 1,
    })
    .to_string()
    .into_bytes();
    let token = |t: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", t.to_string()),
        ]
    };
    let (status, _) = deliver(&server, "/webhooks/gitlab", &token("nope"), &gl).await;
    assert_eq!(status, 401);
    let (status, out) = deliver(&server, "/webhooks/gitlab", &token("repo-secret"), &gl).await;
    assert_eq!(status, 200, "{out}");
    let mut started: Vec<&str> = out["started"]
        .as_array()
        .expect("started")
        .iter()
        .filter_map(|s| s["pipeline"].as_str())
        .collect();
    started.sort();
    assert_eq!(started, vec!["a-app-only", "a-default"], "{out}");
    assert_eq!(execution_count(&server, "b-other").await, 0);

    // A ping starts nothing; an unknown host has no endpoint.
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let headers = vec![
        ("X-GitHub-Event", "ping".to_string()),
        (
            "X-Hub-Signature-256",
            gantry_triggers::signature::sign_sha256("repo-secret", ping),
        ),
    ];
    let (status, out) = deliver(&server, "/webhooks/github", &headers, ping).await;
    assert_eq!((status, out["started"].clone()), (200, json!([])), "{out}");
    let (status, _) = deliver(&server, "/webhooks/bitbucket", &headers, ping).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_webhooks_are_off_without_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let body = br#"{"zen": "x"}"#;
    let headers = vec![("X-GitHub-Event", "ping".to_string())];
    let (status, out) = deliver(&server, "/webhooks/github", &headers, body).await;
    assert_eq!(status, 404, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("GANTRY_WEBHOOK_SECRET"),
        "{out}"
    );
    server.stop().await;
}

/// Lists the source as the build sees it (every path: directories with a
/// `/`, symlinks with their target, files with their executable bit and
/// content) into `$LISTING/<build number>`, then dirties the source, then
/// fails unless `$MARKER` exists.
const LIST: &str = r#"version: 0.2
phases:
  build:
    commands:
      - |
        find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
          if [ -L "$p" ]; then echo "$p -> $(readlink "$p")";
          elif [ -d "$p" ]; then echo "$p/";
          elif [ -x "$p" ]; then echo "$p x $(cat "$p")";
          else echo "$p - $(cat "$p")"; fi
        done > "$LISTING/$CODEBUILD_BUILD_NUMBER"
      - echo dirt > a.txt && echo dirt > dirt.txt
      - test -f "$MARKER"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_sees_exactly_the_commits_tree_and_a_retry_the_stored_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).expect("work");
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "one").expect("a");
    std::fs::write(work.join("sub/b.txt"), "two").expect("b");
    std::fs::write(work.join("run.sh"), "echo run").expect("run");
    std::os::unix::fs::symlink("sub/b.txt", work.join("link")).expect("link");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let url = repo_with(dir.path(), &[], "first");
    let (listing, marker) = (dir.path().join("listing"), dir.path().join("marker"));
    std::fs::create_dir_all(&listing).expect("listing dir");
    let server = TestServer::start(&dir.path().join("data")).await;
    create_projects(&server, "tree", &[("list", LIST)]).await;
    let env = json!([
        { "name": "LISTING", "value": listing.to_str().expect("path"), "type": "PLAINTEXT" },
        { "name": "MARKER", "value": marker.to_str().expect("path"), "type": "PLAINTEXT" },
    ]);
    let declaration = json!({
        "name": "tree",
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "stages": [
            { "name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
                "configuration": { "RepositoryUrl": url, "BranchName": "main" },
                "outputArtifacts": [{ "name": "Src" }]
            }]},
            { "name": "Build", "actions": [{
                "name": "List",
                "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
                "configuration": { "ProjectName": "tree-list", "EnvironmentVariables": env.to_string() },
                "inputArtifacts": [{ "name": "Src" }]
            }]}
        ]
    });
    ok(
        &server,
        "CreatePipeline",
        &json!({ "pipeline": declaration }),
    )
    .await;
    let listed = |n: u32| std::fs::read_to_string(listing.join(n.to_string())).expect("listing");
    let first_tree =
        "./a.txt - one\n./link -> sub/b.txt\n./run.sh x echo run\n./sub/\n./sub/b.txt - two\n";

    // The first build gets the tree the source action checked out: exactly
    // the commit's files. It dirties them and fails.
    let id = start(&server, "tree").await;
    let e = wait_status(&server, "tree", &id, &["Failed", "Succeeded"]).await;
    assert_eq!(e["status"], "Failed", "{e}");
    assert_eq!(listed(1), first_tree);

    // A retry of the stage gets the stored artifact, not the dirtied tree.
    std::fs::write(&marker, "ok").expect("marker");
    ok(
        &server,
        "RetryStageExecution",
        &json!({ "pipelineName": "tree", "stageName": "Build", "pipelineExecutionId": id, "retryMode": "FAILED_ACTIONS" }),
    )
    .await;
    wait_status(&server, "tree", &id, &["Succeeded"]).await;
    assert_eq!(listed(2), first_tree);

    // The next commit's build sees that commit's tree, nothing of the last.
    std::fs::remove_file(work.join("sub/b.txt")).expect("rm");
    std::fs::remove_file(work.join("link")).expect("rm link");
    repo_with(
        dir.path(),
        &[("a.txt", "three"), ("c.txt", "four")],
        "second",
    );
    let id = start(&server, "tree").await;
    wait_status(&server, "tree", &id, &["Succeeded"]).await;
    assert_eq!(
        listed(3),
        "./a.txt - three\n./c.txt - four\n./run.sh x echo run\n"
    );
    server.stop().await;
}
