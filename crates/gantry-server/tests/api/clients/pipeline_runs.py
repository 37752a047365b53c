"""Runs a pipeline on a Gantry server with boto3 and the AWS CLI: projects,
a pipeline (source -> build -> approval), an execution approved through
PutApprovalResult, the execution APIs, and their modelled exceptions.

Usage: pipeline_runs.py ENDPOINT REPOSITORY_URL; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every check is an assert.
"""
import json
import os
import subprocess
import sys
import time

import boto3
import botocore.config

ENDPOINT, REPO = sys.argv[1], sys.argv[2]


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def aws(*args):
    cli = os.environ.get("GANTRY_TEST_AWS_CLI")
    cmd = [cli] if cli else [sys.executable, "-m", "awscli"]
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(
        cmd + ["codepipeline", "--endpoint-url", ENDPOINT, "--output", "json"] + list(args),
        capture_output=True, text=True, env=env, timeout=120,
    )
    return p.returncode, p.stdout, p.stderr


def wait(predicate, what, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


cb = client("codebuild")
cp = client("codepipeline")
cb.create_project(
    name="py-build",
    source={"type": "CODEPIPELINE", "buildspec": "version: 0.2\nenv:\n  exported-variables: [WORDS]\nphases:\n  build:\n    commands:\n      - export WORDS=$(wc -w < version.txt)\n      - cp version.txt out.txt\nartifacts:\n  files: [out.txt]\n"},
    artifacts={"type": "CODEPIPELINE"},
    environment={"type": "LINUX_CONTAINER", "image": "gantry:host", "computeType": "BUILD_GENERAL1_SMALL"},
    serviceRole="arn:aws:iam::000000000000:role/gantry",
)
cp.create_pipeline(pipeline={
    "name": "py",
    "roleArn": "arn:aws:iam::000000000000:role/gantry",
    "artifactStore": {"type": "S3", "location": "gantry"},
    "stages": [
        {"name": "Source", "actions": [{
            "name": "Checkout",
            "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
            "configuration": {"RepositoryUrl": REPO, "BranchName": "main"},
            "outputArtifacts": [{"name": "Src"}], "namespace": "SourceVariables"}]},
        {"name": "Build", "actions": [{
            "name": "Compile",
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "configuration": {"ProjectName": "py-build"},
            "inputArtifacts": [{"name": "Src"}], "outputArtifacts": [{"name": "Out"}],
            "namespace": "BuildVariables"}]},
        {"name": "Approve", "actions": [{
            "name": "Gate",
            "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
            "configuration": {"CustomData": "words: #{BuildVariables.WORDS}"}}]},
    ],
})

execution_id = cp.start_pipeline_execution(name="py")["pipelineExecutionId"]


def token():
    state = cp.get_pipeline_state(name="py")
    latest = state["stageStates"][2]["actionStates"][0].get("latestExecution", {})
    return latest.get("token") if latest.get("status") == "InProgress" else None


approval_token = wait(token, "the approval")
state = cp.get_pipeline_state(name="py")
assert state["stageStates"][0]["latestExecution"]["status"] == "Succeeded", state
assert state["stageStates"][1]["actionStates"][0]["latestExecution"]["externalExecutionId"].startswith("py-build:")

# The CLI reads the same state; a wrong token is InvalidApprovalTokenException.
code, out, err = aws("get-pipeline-state", "--name", "py")
assert code == 0 and json.loads(out)["pipelineName"] == "py", err
try:
    cp.put_approval_result(pipelineName="py", stageName="Approve", actionName="Gate",
                           result={"summary": "no", "status": "Approved"}, token="wrong")
    raise AssertionError("a wrong token was accepted")
except cp.exceptions.InvalidApprovalTokenException:
    pass
cp.put_approval_result(pipelineName="py", stageName="Approve", actionName="Gate",
                       result={"summary": "fine", "status": "Approved"}, token=approval_token)


def finished():
    e = cp.get_pipeline_execution(pipelineName="py", pipelineExecutionId=execution_id)["pipelineExecution"]
    return e if e["status"] in ("Succeeded", "Failed", "Stopped") else None


execution = wait(finished, "the execution to end")
assert execution["status"] == "Succeeded", execution
assert execution["artifactRevisions"][0]["revisionId"], execution

summaries = [s for page in cp.get_paginator("list_pipeline_executions").paginate(pipelineName="py")
             for s in page["pipelineExecutionSummaries"]]
assert [s["pipelineExecutionId"] for s in summaries] == [execution_id], summaries
details = cp.list_action_executions(pipelineName="py", filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
by_name = {d["actionName"]: d for d in details}
assert set(by_name) == {"Checkout", "Compile", "Gate"}, by_name.keys()
assert by_name["Compile"]["output"]["outputVariables"]["WORDS"] == "1", by_name["Compile"]
assert by_name["Gate"]["input"]["resolvedConfiguration"]["CustomData"] == "words: 1", by_name["Gate"]

# Modelled exceptions on the execution side.
try:
    cp.stop_pipeline_execution(pipelineName="py", pipelineExecutionId=execution_id)
    raise AssertionError("stopped an ended execution")
except cp.exceptions.PipelineExecutionNotStoppableException:
    pass
try:
    cp.get_pipeline_execution(pipelineName="py", pipelineExecutionId="00000000-0000-0000-0000-000000000000")
    raise AssertionError("found a missing execution")
except cp.exceptions.PipelineExecutionNotFoundException:
    pass
code, out, err = aws("retry-stage-execution", "--pipeline-name", "py", "--stage-name", "Build",
                     "--pipeline-execution-id", execution_id, "--retry-mode", "FAILED_ACTIONS")
assert code != 0 and "StageNotRetryableException" in err, (code, err)
code, out, err = aws("start-pipeline-execution", "--name", "missing")
assert code != 0 and "PipelineNotFoundException" in err, (code, err)
print("runs: ok")
