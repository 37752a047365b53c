"""Drives a Gantry server's CodeBuild API with boto3 and the AWS CLI.

Usage: codebuild.py ENDPOINT SCENARIO [ARG...]; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every check is an assert; the
script prints what it saw and exits non-zero on the first failure.
Scenarios: flow, seed, check-restart BUILD_IDS_JSON.
"""
import json
import os
import subprocess
import sys
import time

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = sys.argv[1]
SCENARIO = sys.argv[2]
ARGS = sys.argv[3:]

GOOD = """version: 0.2
env:
  exported-variables:
    - GREETING
phases:
  build:
    commands:
      - echo "hello $WHO from $FROM_PROJECT"
      - export GREETING="hi-$WHO"
"""
FAILING = "version: 0.2\nphases:\n  build:\n    commands:\n      - exit 4\n"
SLOW = "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 300\n"


def client(secret=None):
    return boto3.client(
        "codebuild",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def project(name, buildspec):
    return dict(
        name=name,
        source={"type": "NO_SOURCE", "buildspec": buildspec},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "gantry:host",
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": [{"name": "FROM_PROJECT", "value": "p", "type": "PLAINTEXT"}],
        },
        serviceRole="arn:aws:iam::000000000000:role/gantry",
    )


def wait(cb, build_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        build = cb.batch_get_builds(ids=[build_id])["builds"][0]
        if build["buildStatus"] != "IN_PROGRESS":
            return build
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not finish")


def phase(build, name):
    return next(p for p in build["phases"] if p["phaseType"] == name)


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e
    raise AssertionError("expected a ClientError")


def aws_cli(*args):
    cli = os.environ.get("GANTRY_TEST_AWS_CLI")
    cmd = [cli] if cli else [sys.executable, "-m", "awscli"]
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        cmd + ["codebuild", "--endpoint-url", ENDPOINT, "--output", "json"] + list(args),
        capture_output=True, text=True, env=env, timeout=120,
    )


def flow():
    cb = client()
    created = cb.create_project(**project("web", GOOD))["project"]
    assert created["arn"].endswith(":project/web"), created
    assert created["created"].year >= 2024, created  # botocore parsed a timestamp
    code, _ = error_code(lambda: cb.create_project(**project("web", GOOD)))
    assert code == "ResourceAlreadyExistsException", code
    try:
        cb.create_project(**project("web", GOOD))
        raise AssertionError("no exception")
    except cb.exceptions.ResourceAlreadyExistsException:
        pass
    assert cb.list_projects()["projects"] == ["web"]
    got = cb.batch_get_projects(names=["web", "nope"])
    assert got["projectsNotFound"] == ["nope"], got
    assert got["projects"][0]["environment"]["image"] == "gantry:host"

    started = cb.start_build(
        projectName="web",
        environmentVariablesOverride=[{"name": "WHO", "value": "boto", "type": "PLAINTEXT"}],
    )["build"]
    assert started["buildNumber"] == 1, started
    build = wait(cb, started["id"])
    assert build["buildStatus"] == "SUCCEEDED", build
    assert build["buildComplete"] is True
    assert phase(build, "BUILD")["phaseStatus"] == "SUCCEEDED", build["phases"]
    names = [p["phaseType"] for p in build["phases"]]
    assert names[:2] == ["SUBMITTED", "QUEUED"] and "COMPLETED" in names, names
    assert build["exportedEnvironmentVariables"] == [{"name": "GREETING", "value": "hi-boto"}], build
    assert build["logs"]["groupName"] == "/aws/codebuild/web", build["logs"]
    assert cb.list_builds_for_project(projectName="web")["ids"] == [started["id"]]

    failing = cb.start_build(projectName="web", buildspecOverride=FAILING)["build"]
    failed = wait(cb, failing["id"])
    assert failed["buildStatus"] == "FAILED", failed
    assert phase(failed, "BUILD")["phaseStatus"] == "FAILED"

    slow = cb.start_build(projectName="web", buildspecOverride=SLOW, timeoutInMinutesOverride=5)["build"]
    for _ in range(300):
        if cb.batch_get_builds(ids=[slow["id"]])["builds"][0]["currentPhase"] == "BUILD":
            break
        time.sleep(0.05)
    assert cb.stop_build(id=slow["id"])["build"]["id"] == slow["id"]
    stopped = wait(cb, slow["id"])
    assert stopped["buildStatus"] == "STOPPED", stopped
    assert stopped["timeoutInMinutes"] == 5, stopped

    code, _ = error_code(lambda: cb.start_build(projectName="nope"))
    assert code == "ResourceNotFoundException", code
    try:
        cb.start_build(projectName="nope")
        raise AssertionError("no exception")
    except cb.exceptions.ResourceNotFoundException:
        pass

    bad = client(secret="not-the-secret")
    code, err = error_code(lambda: bad.create_project(**project("sneaky", GOOD)))
    assert code == "InvalidSignatureException", code
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert cb.list_projects()["projects"] == ["web"], "a refused request changed something"

    # The AWS CLI.
    out = aws_cli("list-projects")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["projects"] == ["web"], out.stdout
    out = aws_cli("batch-get-builds", "--ids", started["id"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["builds"][0]["buildStatus"] == "SUCCEEDED", out.stdout
    out = aws_cli(
        "start-build", "--project-name", "web",
        "--environment-variables-override", "name=WHO,value=cli,type=PLAINTEXT",
    )
    assert out.returncode == 0, out.stderr
    cli_build = wait(cb, json.loads(out.stdout)["build"]["id"])
    assert cli_build["exportedEnvironmentVariables"][0]["value"] == "hi-cli", cli_build
    out = aws_cli("start-build", "--project-name", "nope")
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr, out.stderr
    cb.delete_project(name="web")
    assert cb.list_projects()["projects"] == []
    print("flow: ok")


def seed():
    cb = client()
    cb.create_project(**project("keep", GOOD))
    done = cb.start_build(projectName="keep")["build"]["id"]
    wait(cb, done)
    slow = cb.start_build(projectName="keep", buildspecOverride=SLOW)["build"]["id"]
    print(json.dumps({"done": done, "slow": slow}))


def check_restart():
    ids = json.loads(ARGS[0])
    cb = client()
    assert cb.list_projects()["projects"] == ["keep"]
    got = cb.batch_get_builds(ids=[ids["done"], ids["slow"], ids["interrupted"]])
    builds = {b["id"]: b for b in got["builds"]}
    assert builds[ids["done"]]["buildStatus"] == "SUCCEEDED"
    assert builds[ids["slow"]]["buildStatus"] == "STOPPED", builds[ids["slow"]]
    interrupted = builds[ids["interrupted"]]
    assert interrupted["buildStatus"] == "FAILED", interrupted
    ctx = phase(interrupted, "BUILD")["contexts"][0]
    assert ctx["statusCode"] == "SERVER_RESTARTED", ctx
    assert "restart" in ctx["message"] or "started again" in ctx["message"], ctx
    print("check-restart: ok")


{"flow": flow, "seed": seed, "check-restart": check_restart}[SCENARIO]()
