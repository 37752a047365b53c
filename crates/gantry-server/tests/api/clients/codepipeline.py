"""Drives a Gantry server's CodePipeline API (declaration side) with boto3
and the AWS CLI.

Usage: codepipeline.py ENDPOINT SCENARIO; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every check is an assert; the
script exits non-zero on the first failure. Scenarios: flow.
"""
import copy
import json
import os
import subprocess
import sys
import tempfile

import boto3
import botocore.config

ENDPOINT = sys.argv[1]
SCENARIO = sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "pipeline.json")


def client():
    return boto3.client(
        "codepipeline",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def aws(*args):
    """Runs the AWS CLI; returns (returncode, stdout, stderr)."""
    cli = os.environ.get("GANTRY_TEST_AWS_CLI")
    cmd = [cli] if cli else [sys.executable, "-m", "awscli"]
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(
        cmd + ["codepipeline", "--endpoint-url", ENDPOINT, "--output", "json"] + list(args),
        capture_output=True, text=True, env=env, timeout=120,
    )
    return p.returncode, p.stdout, p.stderr


def aws_ok(*args):
    code, out, err = aws(*args)
    assert code == 0, f"aws {' '.join(args)} failed ({code}): {err}"
    return json.loads(out) if out.strip() else {}


def raises(exception, call):
    """Asserts `call` raises the modelled `exception`; returns its message."""
    try:
        call()
    except exception as e:
        return e.response["Error"]["Message"]
    raise AssertionError(f"expected {exception.__name__}")


def versioned(pipeline, version):
    p = copy.deepcopy(pipeline)
    p["version"] = version
    return p


def write_json(directory, name, value):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(value, f)
    return path


def flow():
    cp = client()
    fixture = json.load(open(FIXTURE))
    declared = fixture["pipeline"]
    tmp = tempfile.mkdtemp()

    # create-pipeline --cli-input-json file://..., then get-pipeline prints
    # exactly what went in, plus the version and metadata.
    created = aws_ok("create-pipeline", "--cli-input-json", "file://" + FIXTURE)
    assert created["pipeline"] == versioned(declared, 1), created
    assert created["tags"] == fixture["tags"], created
    got = aws_ok("get-pipeline", "--name", "shop-web")
    assert got["pipeline"] == versioned(declared, 1), json.dumps(got, indent=2)
    assert got["metadata"]["pipelineArn"] == "arn:aws:codepipeline:us-east-1:000000000000:shop-web"
    created_at = got["metadata"]["created"]  # epoch seconds (CLI v1) or ISO text (v2)
    assert isinstance(created_at, (int, float)) or created_at.startswith("20"), got["metadata"]
    print("cli create/get: ok")

    # create-pipeline --pipeline file://... (a bare declaration) with --tags.
    api = copy.deepcopy(declared)
    api["name"] = "shop-api"
    code, _, err = aws("create-pipeline", "--pipeline", "file://" + write_json(tmp, "api.json", api),
                       "--tags", "key=team,value=api")
    assert code == 0, err
    code, _, err = aws("create-pipeline", "--pipeline", "file://" + write_json(tmp, "api.json", api))
    assert code != 0 and "PipelineNameInUseException" in err, err
    print("cli --pipeline file://: ok")

    # boto3: the same, with the exceptions its users catch.
    raises(cp.exceptions.PipelineNameInUseException, lambda: cp.create_pipeline(**fixture))
    got = cp.get_pipeline(name="shop-web")
    assert got["pipeline"] == versioned(declared, 1), got["pipeline"]
    assert got["metadata"]["created"].year >= 2024

    changed = copy.deepcopy(declared)
    changed["stages"][2]["actions"][1]["configuration"]["ProjectName"] = "shop-deploy-v2"
    updated = cp.update_pipeline(pipeline=changed)["pipeline"]
    assert updated["version"] == 2, updated
    cli_update = aws_ok("update-pipeline", "--pipeline",
                        "file://" + write_json(tmp, "changed.json", versioned(changed, 2)))
    assert cli_update["pipeline"]["version"] == 3, cli_update
    assert cp.get_pipeline(name="shop-web")["pipeline"] == versioned(changed, 3)
    assert cp.get_pipeline(name="shop-web", version=1)["pipeline"] == versioned(declared, 1)
    msg = raises(cp.exceptions.PipelineVersionNotFoundException,
                 lambda: cp.get_pipeline(name="shop-web", version=9))
    assert "9" in msg, msg
    raises(cp.exceptions.PipelineNotFoundException, lambda: cp.get_pipeline(name="nope"))
    print("boto3 get/update/versions: ok")

    # Invalid declarations.
    def invalid(edit):
        p = copy.deepcopy(declared)
        p["name"] = "broken"
        edit(p)
        return lambda: cp.create_pipeline(pipeline=p)

    def one_stage(p):
        p["stages"] = p["stages"][:1]
        del p["triggers"]

    msg = raises(cp.exceptions.InvalidStructureException, invalid(one_stage))
    assert "at least 2 stages" in msg, msg

    def unknown_input(p):
        p["stages"][1]["actions"][0]["inputArtifacts"] = [{"name": "Nothing"}]

    msg = raises(cp.exceptions.InvalidStructureException, invalid(unknown_input))
    assert "`Nothing`" in msg and "Compile" in msg, msg

    def build_in_source_stage(p):
        p["stages"][0]["actions"][0]["actionTypeId"]["category"] = "Build"

    raises(cp.exceptions.InvalidStageDeclarationException, invalid(build_in_source_stage))

    def no_project(p):
        p["stages"][1]["actions"][1]["configuration"] = {"Nonsense": "x"}

    msg = raises(cp.exceptions.InvalidActionDeclarationException, invalid(no_project))
    assert "ProjectName" in msg or "Nonsense" in msg, msg

    def run_order(p):
        p["stages"][1]["actions"][0]["runOrder"] = 1000

    msg = raises(cp.exceptions.ValidationException, invalid(run_order))
    assert "pipeline.stages[1].actions[0].runOrder" in msg, msg
    code, _, err = aws("create-pipeline", "--pipeline", "file://" + write_json(
        tmp, "bad.json", {**declared, "name": "broken", "stages": declared["stages"][:1], "triggers": []}))
    assert code != 0 and "InvalidStructureException" in err, err
    raises(cp.exceptions.PipelineNotFoundException, lambda: cp.get_pipeline(name="broken"))
    print("invalid declarations: ok")

    # ListPipelines, paged by the SDK's paginator.
    names = [p["name"] for page in cp.get_paginator("list_pipelines").paginate(
        PaginationConfig={"PageSize": 1}) for p in page["pipelines"]]
    assert names == ["shop-api", "shop-web"], names
    summary = cp.list_pipelines()["pipelines"][1]
    assert summary["version"] == 3 and summary["pipelineType"] == "V2", summary
    assert summary["executionMode"] == "QUEUED", summary
    listed = aws_ok("list-pipelines")
    assert [p["name"] for p in listed["pipelines"]] == ["shop-api", "shop-web"], listed
    print("list: ok")

    # Transitions.
    cp.disable_stage_transition(pipelineName="shop-web", stageName="Release",
                                transitionType="Inbound", reason="Release freeze")
    aws_ok("disable-stage-transition", "--pipeline-name", "shop-web", "--stage-name", "Build",
           "--transition-type", "Outbound", "--reason", "Hold (testing)")
    raises(cp.exceptions.StageNotFoundException,
           lambda: cp.enable_stage_transition(pipelineName="shop-web", stageName="Nope",
                                              transitionType="Inbound"))
    raises(cp.exceptions.PipelineNotFoundException,
           lambda: cp.enable_stage_transition(pipelineName="nope", stageName="Build",
                                              transitionType="Inbound"))
    raises(cp.exceptions.ValidationException,
           lambda: cp.disable_stage_transition(pipelineName="shop-web", stageName="Build",
                                               transitionType="Inbound", reason="no_underscores"))
    cp.enable_stage_transition(pipelineName="shop-web", stageName="Release", transitionType="Inbound")
    aws_ok("enable-stage-transition", "--pipeline-name", "shop-web", "--stage-name", "Build",
           "--transition-type", "Outbound")
    print("transitions: ok")

    # Webhooks.
    definition = {
        "name": "shop-push",
        "targetPipeline": "shop-web",
        "targetAction": "Checkout",
        "filters": [{"jsonPath": "$.ref", "matchEquals": "refs/heads/{BranchName}"}],
        "authentication": "GITHUB_HMAC",
        "authenticationConfiguration": {"SecretToken": "a-long-random-secret"},
    }
    put = cp.put_webhook(webhook=definition, tags=[{"key": "team", "value": "web"}])["webhook"]
    assert put["url"].startswith(ENDPOINT + "/webhooks/codepipeline/"), put
    assert put["arn"] == "arn:aws:codepipeline:us-east-1:000000000000:webhook:shop-push", put
    assert put["definition"]["authenticationConfiguration"]["SecretToken"] == "****", put
    assert "a-long-random-secret" not in json.dumps(put, default=str)
    again = cp.put_webhook(webhook=cp.list_webhooks()["webhooks"][0]["definition"])["webhook"]
    assert again["url"] == put["url"], (again, put)
    ip_hook = dict(definition, name="office", authentication="IP",
                   authenticationConfiguration={"AllowedIPRange": "192.0.2.0/24"})
    cli_put = aws_ok("put-webhook", "--cli-input-json",
                     "file://" + write_json(tmp, "hook.json", {"webhook": ip_hook}))
    assert cli_put["webhook"]["definition"]["authentication"] == "IP", cli_put
    raises(cp.exceptions.InvalidWebhookAuthenticationParametersException,
           lambda: cp.put_webhook(webhook=dict(definition, name="x", authenticationConfiguration={})))
    raises(cp.exceptions.InvalidWebhookFilterPatternException,
           lambda: cp.put_webhook(webhook=dict(definition, name="x",
                                               filters=[{"jsonPath": "ref"}])))
    raises(cp.exceptions.PipelineNotFoundException,
           lambda: cp.put_webhook(webhook=dict(definition, name="x", targetPipeline="nope")))
    names = [w["definition"]["name"] for page in cp.get_paginator("list_webhooks").paginate(
        PaginationConfig={"PageSize": 1}) for w in page["webhooks"]]
    assert names == ["office", "shop-push"], names
    cli_list = aws_ok("list-webhooks")
    assert len(cli_list["webhooks"]) == 2, cli_list
    cp.register_webhook_with_third_party(webhookName="shop-push")
    cp.deregister_webhook_with_third_party(webhookName="shop-push")
    raises(cp.exceptions.WebhookNotFoundException,
           lambda: cp.register_webhook_with_third_party(webhookName="nope"))
    cp.delete_webhook(name="shop-push")
    cp.delete_webhook(name="shop-push")  # already gone: still fine
    aws_ok("delete-webhook", "--name", "office")
    assert cp.list_webhooks()["webhooks"] == []
    print("webhooks: ok")

    cp.delete_pipeline(name="shop-api")
    aws_ok("delete-pipeline", "--name", "shop-web")
    assert cp.list_pipelines()["pipelines"] == []
    print("flow: ok")


if __name__ == "__main__":
    {"flow": flow}[SCENARIO]()
