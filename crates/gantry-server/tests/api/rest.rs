//! The native REST API under /api/v1: every route, signed with the test
//! key (service `gantry`); authentication, the error shape, and the same
//! pipeline behaviour as through the AWS API (start, run detail with build
//! ids and the pending approval, approve by stage/action, stop, retry).

use std::time::Duration;

use serde_json::{Value, json};

use crate::codepipeline::ok;
use crate::harness::*;
use crate::pipeline_runs::{repo_with, setup, wait_status};

/// Every route of the OpenAPI document, with its parameters filled in.
fn documented_routes(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("ops").keys() {
            let concrete = path
                .trim_start_matches("/api/v1")
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            out.push((method.to_uppercase(), concrete));
        }
    }
    out
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    v["error"]["message"].as_str().expect("message");
    v["error"]["code"].as_str().expect("code").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_good_signature_and_the_document_is_public() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let (status, body) = server
        .raw("GET", "/api/v1/openapi.json", &[], b"")
        .await
        .expect("get");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = documented_routes(&doc);
    assert!(routes.len() >= 10, "{routes:?}");

    for (method, path) in routes.iter().filter(|(_, p)| p != "/openapi.json") {
        let body = (method == "POST").then(|| json!({}));
        // Unsigned: 401. A route the router does not serve would be 404/405.
        let (status, out) = server
            .rest_raw(None, "gantry", method, path, body.as_ref(), &[])
            .await;
        assert_eq!(
            (status, error_code(&out).as_str()),
            (401, "Unauthenticated"),
            "{method} {path}"
        );
        // The wrong secret, or a signature for another service: 403.
        let (status, out) = server
            .rest_raw(Some("wrong"), "gantry", method, path, body.as_ref(), &[])
            .await;
        assert_eq!(
            (status, error_code(&out).as_str()),
            (403, "Forbidden"),
            "{method} {path}"
        );
        let (status, out) = server
            .rest_raw(
                Some(SECRET),
                "codepipeline",
                method,
                path,
                body.as_ref(),
                &[],
            )
            .await;
        assert_eq!(
            (status, error_code(&out).as_str()),
            (403, "Forbidden"),
            "{method} {path}"
        );
    }
    // No route: 404 in the same shape.
    let (status, out) = server
        .rest_raw(None, "gantry", "GET", "/nothing/here", None, &[])
        .await;
    assert_eq!((status, error_code(&out).as_str()), (404, "NotFound"));
    server.stop().await;
}

/// Polls the run until `pick` finds something in it.
async fn wait_run<T>(
    server: &TestServer,
    pipeline: &str,
    id: &str,
    what: &str,
    pick: impl Fn(&Value) -> Option<T>,
) -> (Value, T) {
    for _ in 0..1200 {
        let run = server
            .rest_ok(
                "GET",
                &format!("/pipelines/{pipeline}/executions/{id}"),
                None,
                200,
            )
            .await;
        if let Some(found) = pick(&run) {
            return (run, found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened in {pipeline} {id}");
}

fn action<'a>(run: &'a Value, stage: &str, action: &str) -> &'a Value {
    run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == stage)
        .and_then(|s| s["actions"].as_array())
        .and_then(|a| a.iter().find(|a| a["name"] == action))
        .unwrap_or_else(|| panic!("no {stage}/{action} in {run}"))
}

fn pending_approval(run: &Value) -> Option<String> {
    action(run, "Approve", "Release")["approvalToken"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_started_shown_and_approved_through_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "4.5.6")], "initial");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "web", &url, "").await;

    let listed = server.rest_ok("GET", "/pipelines", None, 200).await;
    assert_eq!(listed["pipelines"][0]["name"], "web", "{listed}");
    let shown = server.rest_ok("GET", "/pipelines/web", None, 200).await;
    assert_eq!(shown["pipeline"]["name"], "web");
    let stage_names: Vec<&str> = shown["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stageName"].as_str().expect("name"))
        .collect();
    assert_eq!(stage_names, ["Source", "Verify", "Approve", "Deploy"]);

    let started = server
        .rest_ok("POST", "/pipelines/web/executions", None, 201)
        .await;
    let id = started["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned();
    let (run, _) = wait_run(&server, "web", &id, "the approval", pending_approval).await;
    assert_eq!(run["status"], "InProgress");
    assert_eq!(run["trigger"]["triggerType"], "StartPipelineExecution");
    let build = action(&run, "Verify", "Build");
    assert_eq!(build["status"], "Succeeded", "{run}");
    let build_id = build["buildId"].as_str().expect("build id").to_owned();
    let shown_build = server
        .rest_ok("GET", &format!("/builds/{build_id}"), None, 200)
        .await;
    assert_eq!(shown_build["build"]["buildStatus"], "SUCCEEDED");
    assert_eq!(action(&run, "Source", "Checkout")["category"], "Source");

    let executions = server
        .rest_ok("GET", "/pipelines/web/executions", None, 200)
        .await;
    assert_eq!(executions["executions"][0]["pipelineExecutionId"], id);

    // Approve without a token: the server finds it.
    let approval = format!("/pipelines/web/executions/{id}/approvals/Approve/Release");
    let answered = server
        .rest_ok(
            "POST",
            &approval,
            Some(&json!({ "status": "Approved", "summary": "ship it" })),
            200,
        )
        .await;
    assert!(answered["approvedAt"].is_number(), "{answered}");
    let e = wait_status(&server, "web", &id, &["Succeeded", "Failed"]).await;
    assert_eq!(e["status"], "Succeeded");
    // Nothing waits any more.
    let (status, err) = server
        .rest("POST", &approval, Some(&json!({ "status": "Approved" })))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("Conflict")),
        "{err}"
    );
    let run = server
        .rest_ok("GET", &format!("/pipelines/web/executions/{id}"), None, 200)
        .await;
    assert_eq!(action(&run, "Approve", "Release")["status"], "Succeeded");
    assert_eq!(
        action(&run, "Approve", "Release")["approvalToken"],
        Value::Null
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "1")], "initial");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "app", &url, "").await;

    let (status, err) = server.rest("GET", "/pipelines/nope", None).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "NotFound");
    assert_eq!(err["error"]["type"], "PipelineNotFoundException");
    let (status, err) = server
        .rest("POST", "/pipelines/nope/executions", None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    let (status, err) = server.rest("GET", "/builds/app:nope", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    let (status, err) = server.rest("GET", "/pipelines/%FF", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("InvalidInput")),
        "{err}"
    );
    let (status, err) = server.rest("GET", "/pipelines?maxResults=many", None).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("m")
            .contains("maxResults")
    );

    let bad_bodies = [
        (
            "/pipelines/app/executions",
            json!({ "variables": 1 }),
            "'variables'",
        ),
        (
            "/pipelines/app/executions",
            json!({ "variables": { "A": 2 } }),
            "'variables.A'",
        ),
        (
            "/pipelines/app/executions",
            json!({ "revision": "abc" }),
            "'revision'",
        ),
        (
            "/pipelines/app/executions",
            json!({ "sourceRevisions": { "Nope": "abc" } }),
            "Nope",
        ),
        (
            "/pipelines/app/executions/x/stop",
            json!({ "abandon": "yes" }),
            "'abandon'",
        ),
        (
            "/pipelines/app/executions/x/stages/Verify/retry",
            json!({ "mode": "SOME" }),
            "'mode'",
        ),
        (
            "/pipelines/app/executions/x/approvals/Approve/Release",
            json!({ "status": "Maybe" }),
            "'status'",
        ),
        (
            "/pipelines/app/executions/x/approvals/Approve/Release",
            json!({}),
            "'status'",
        ),
    ];
    for (path, body, named) in bad_bodies {
        let (status, err) = server.rest("POST", path, Some(&body)).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("InvalidInput")),
            "{path} {body}: {err}"
        );
        let message = err["error"]["message"].as_str().expect("message");
        assert!(message.contains(named), "{path} {body}: {message}");
    }
    // Not JSON at all.
    let (status, out) = server
        .rest_raw(
            Some(SECRET),
            "gantry",
            "POST",
            "/pipelines/app/executions",
            Some(&json!("x")),
            &[],
        )
        .await;
    assert_eq!((status, error_code(&out).as_str()), (400, "InvalidInput"));
    // An unsigned start starts nothing.
    let (status, _) = server
        .rest_raw(
            None,
            "gantry",
            "POST",
            "/pipelines/app/executions",
            Some(&json!({})),
            &[],
        )
        .await;
    assert_eq!(status, 401);
    let listed = server
        .rest_ok("GET", "/pipelines/app/executions", None, 200)
        .await;
    assert_eq!(listed["executions"], json!([]), "nothing was started");
    // An unknown execution.
    let (status, err) = server
        .rest("GET", "/pipelines/app/executions/0000", None)
        .await;
    assert_eq!(
        (status, err["error"]["type"].as_str()),
        (404, Some("PipelineExecutionNotFoundException"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_stopped_and_a_failed_stage_retried_through_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repo_with(dir.path(), &[("version.txt", "7")], "initial");
    let marker = dir.path().join("marker");
    let server = TestServer::start(&dir.path().join("data")).await;
    setup(&server, "flaky", &url, marker.to_str().expect("path")).await;

    // The Test action fails until the marker exists; retry its stage.
    let id = server
        .rest_ok(
            "POST",
            "/pipelines/flaky/executions",
            Some(&json!({ "variables": {} })),
            201,
        )
        .await["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned();
    let e = wait_status(&server, "flaky", &id, &["Failed", "Succeeded"]).await;
    assert_eq!(e["status"], "Failed");
    let run = server
        .rest_ok(
            "GET",
            &format!("/pipelines/flaky/executions/{id}"),
            None,
            200,
        )
        .await;
    let test = action(&run, "Verify", "Test");
    assert_eq!(test["status"], "Failed");
    assert!(test["error"]["message"].is_string(), "{test}");
    std::fs::write(&marker, "ok").expect("marker");
    server
        .rest_ok(
            "POST",
            &format!("/pipelines/flaky/executions/{id}/stages/Verify/retry"),
            None,
            200,
        )
        .await;
    wait_run(
        &server,
        "flaky",
        &id,
        "the approval after the retry",
        pending_approval,
    )
    .await;

    // Stop and abandon it while the approval waits.
    let stop = format!("/pipelines/flaky/executions/{id}/stop");
    server
        .rest_ok(
            "POST",
            &stop,
            Some(&json!({ "abandon": true, "reason": "not today" })),
            200,
        )
        .await;
    let e = wait_status(&server, "flaky", &id, &["Stopped"]).await;
    assert_eq!(e["statusSummary"], "not today");
    let (status, err) = server.rest("POST", &stop, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("Conflict")),
        "{err}"
    );
    // The same execution through the AWS API agrees.
    let aws = ok(
        &server,
        "GetPipelineExecution",
        &json!({ "pipelineName": "flaky", "pipelineExecutionId": id }),
    )
    .await;
    assert_eq!(aws["pipelineExecution"]["status"], "Stopped");
    server.stop().await;
}
