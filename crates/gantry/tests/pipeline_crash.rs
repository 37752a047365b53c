//! `gantry server` killed with SIGKILL while pipeline executions run, then
//! started again: every execution ends Succeeded; a source action that had
//! finished is not run again; a build the kill interrupted is built again;
//! an approval answered 200 before the kill stays answered.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{CODEBUILD, CODEPIPELINE, Running, call, repository, start};

const KEY: (&str, &str) = ("GANTRYPIPECRASH", "pipe/crash+Secret/Key=0123456789abcdef");

fn ok(server: &Running, service: support::Service, operation: &str, input: Value) -> Value {
    let (status, out) =
        call(&server.addr, KEY, service, operation, &input).expect("server reachable");
    assert_eq!(status, 200, "{operation} {input}: {out}");
    out
}

fn pipeline(name: &str, url: &str, with_approval: bool) -> Value {
    let mut stages = vec![
        json!({ "name": "Source", "actions": [{
            "name": "Checkout",
            "actionTypeId": { "category": "Source", "owner": "AWS", "provider": "Git", "version": "1" },
            "configuration": { "RepositoryUrl": url, "BranchName": "main" },
            "outputArtifacts": [{ "name": "Src" }]
        }]}),
        json!({ "name": "Build", "actions": [{
            "name": "Slow",
            "actionTypeId": { "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1" },
            "configuration": { "ProjectName": "slow" },
            "inputArtifacts": [{ "name": "Src" }]
        }]}),
    ];
    if with_approval {
        stages.insert(1, json!({ "name": "Approve", "actions": [{
            "name": "Gate",
            "actionTypeId": { "category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1" }
        }]}));
    }
    json!({
        "name": name,
        "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": { "type": "S3", "location": "gantry" },
        "executionMode": "PARALLEL",
        "pipelineType": "V2",
        "stages": stages,
    })
}

fn actions(server: &Running, pipeline: &str) -> Vec<Value> {
    ok(
        server,
        CODEPIPELINE,
        "ListActionExecutions",
        json!({ "pipelineName": pipeline }),
    )["actionExecutionDetails"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sigkill_mid_run_then_every_execution_finishes_without_rerunning_finished_actions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = repository(dir.path());
    let data = dir.path().join("data");
    let server = start(&data, KEY);
    ok(
        &server,
        CODEBUILD,
        "CreateProject",
        json!({
            "name": "slow",
            "source": { "type": "CODEPIPELINE", "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 5\n      - test -f version.txt\n" },
            "artifacts": { "type": "CODEPIPELINE" },
            "environment": { "type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL" },
            "serviceRole": "arn:aws:iam::000000000000:role/gantry"
        }),
    );
    ok(
        &server,
        CODEPIPELINE,
        "CreatePipeline",
        json!({ "pipeline": pipeline("building", &url, false) }),
    );
    ok(
        &server,
        CODEPIPELINE,
        "CreatePipeline",
        json!({ "pipeline": pipeline("gated", &url, true) }),
    );

    // Three executions building, one waiting for its approval.
    let mut building = Vec::new();
    for _ in 0..3 {
        let out = ok(
            &server,
            CODEPIPELINE,
            "StartPipelineExecution",
            json!({ "name": "building" }),
        );
        building.push(out["pipelineExecutionId"].as_str().expect("id").to_owned());
    }
    let gated = ok(
        &server,
        CODEPIPELINE,
        "StartPipelineExecution",
        json!({ "name": "gated" }),
    )["pipelineExecutionId"]
        .as_str()
        .expect("id")
        .to_owned();
    // An action is InProgress before its build exists (its input is
    // materialized first): wait for the three build records themselves.
    wait_until("the builds to run", || {
        let ids = ok(
            &server,
            CODEBUILD,
            "ListBuildsForProject",
            json!({ "projectName": "slow" }),
        )["ids"]
            .clone();
        let count = ids.as_array().map_or(0, Vec::len);
        count == 3
            && ok(&server, CODEBUILD, "BatchGetBuilds", json!({ "ids": ids }))["builds"]
                .as_array()
                .is_some_and(|b| b.iter().all(|b| b["buildStatus"] == "IN_PROGRESS"))
    });
    let mut token = String::new();
    wait_until("the approval", || {
        let state = ok(
            &server,
            CODEPIPELINE,
            "GetPipelineState",
            json!({ "name": "gated" }),
        );
        match state["stageStates"][1]["actionStates"][0]["latestExecution"]["token"].as_str() {
            Some(t) => {
                token = t.to_owned();
                true
            }
            None => false,
        }
    });
    ok(
        &server,
        CODEPIPELINE,
        "PutApprovalResult",
        json!({
            "pipelineName": "gated", "stageName": "Approve", "actionName": "Gate",
            "result": { "summary": "go", "status": "Approved" }, "token": token,
        }),
    );
    server.kill();

    let server = start(&data, KEY);
    for (pipeline, id) in building
        .iter()
        .map(|id| ("building", id))
        .chain([("gated", &gated)])
    {
        wait_until("the execution to end", || {
            let e = ok(
                &server,
                CODEPIPELINE,
                "GetPipelineExecution",
                json!({ "pipelineName": pipeline, "pipelineExecutionId": id }),
            );
            match e["pipelineExecution"]["status"].as_str() {
                Some("InProgress") | Some("Stopping") => false,
                Some("Succeeded") => true,
                other => panic!("execution {id} of {pipeline} ended {other:?}: {e}"),
            }
        });
    }
    for pipeline in ["building", "gated"] {
        let all = actions(&server, pipeline);
        for id in building.iter().chain([&gated]) {
            let checkouts = all
                .iter()
                .filter(|a| {
                    a["pipelineExecutionId"] == id.as_str() && a["actionName"] == "Checkout"
                })
                .count();
            if all.iter().any(|a| a["pipelineExecutionId"] == id.as_str()) {
                assert_eq!(checkouts, 1, "the finished source action of {id} ran once");
            }
        }
    }
    // The gate stays answered: exactly one approval attempt, Succeeded.
    let gates: Vec<Value> = actions(&server, "gated")
        .into_iter()
        .filter(|a| a["actionName"] == "Gate")
        .collect();
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0]["status"], "Succeeded");
    // The interrupted builds were built again: each execution's action
    // names a build that succeeded, and the killed ones are FAILED.
    let builds = ok(
        &server,
        CODEBUILD,
        "ListBuildsForProject",
        json!({ "projectName": "slow" }),
    );
    let ids: Vec<String> = builds["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    let got = ok(&server, CODEBUILD, "BatchGetBuilds", json!({ "ids": ids }));
    let statuses: Vec<&str> = got["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .map(|b| b["buildStatus"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "SUCCEEDED").count(),
        4,
        "{statuses:?}"
    );
    // The three running builds were interrupted (the gated execution's may
    // have been too, when it started before the kill): each FAILED build
    // says the restart interrupted it, and nothing else failed.
    let failed: Vec<&Value> = got["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["buildStatus"] == "FAILED")
        .collect();
    assert!((3..=4).contains(&failed.len()), "{statuses:?}");
    for build in failed {
        let interrupted = build["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["contexts"].as_array())
            .flatten()
            .any(|c| c["statusCode"] == "SERVER_RESTARTED");
        assert!(interrupted, "a build failed for another reason: {build}");
    }
    server.kill();
}
