"""A CodePipeline job worker written with boto3 the way one is written for
AWS, run against a Gantry server: it creates its custom action type and a
pipeline Source(Git) -> Work (the custom action) -> Verify (CodeBuild,
reading the worker's output artifact and variables), then polls,
acknowledges, downloads the input zip and uploads an output zip with an S3
client built from the job's artifactCredentials, answers first with a
continuation token, then with success and output variables. A second run
answers PutJobFailureResult and the action fails.

Usage: custom_actions.py ENDPOINT REPOSITORY_URL; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every check is an assert; the
script exits non-zero on the first failure and prints "worker: ok" at the
end.
"""
import io
import os
import sys
import time
import zipfile

import boto3
import boto3.s3.transfer
import botocore.config

ENDPOINT = sys.argv[1]
REPOSITORY = sys.argv[2]
TYPE_ID = {"category": "Build", "owner": "Custom", "provider": "PyWorker", "version": "1"}
CONFIG = botocore.config.Config(retries={"max_attempts": 1})


def client(service, **credentials):
    if not credentials:
        credentials = {
            "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        config=CONFIG, **credentials)


cp = client("codepipeline")


def poll():
    """Polls the way a worker does (CodePipeline answers at once; a worker
    sleeps between empty polls)."""
    for _ in range(600):
        jobs = cp.poll_for_jobs(actionTypeId=TYPE_ID, maxBatchSize=1,
                                queryParam={"Target": "prod"})["jobs"]
        if jobs:
            return jobs[0]
        time.sleep(0.1)
    raise AssertionError("no job arrived")


def acknowledge(job):
    status = cp.acknowledge_job(jobId=job["id"], nonce=job["nonce"])["status"]
    assert status == "InProgress", status
    return job["data"]


def s3_for(data):
    creds = data["artifactCredentials"]
    return client("s3", aws_access_key_id=creds["accessKeyId"],
                  aws_secret_access_key=creds["secretAccessKey"],
                  aws_session_token=creds["sessionToken"])


def wait(execution_id, wanted):
    for _ in range(1200):
        status = cp.get_pipeline_execution(
            pipelineName="worked", pipelineExecutionId=execution_id)["pipelineExecution"]["status"]
        if status in wanted:
            return status
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} never reached {wanted}")


def setup():
    cp.create_custom_action_type(
        category="Build", provider="PyWorker", version="1",
        settings={"entityUrlTemplate": "https://ci.example.com/{Config:Target}",
                  "executionUrlTemplate": "https://ci.example.com/run/{ExternalExecutionId}"},
        configurationProperties=[
            {"name": "Target", "required": True, "key": True, "secret": False,
             "queryable": True, "type": "String", "description": "where to run"},
            {"name": "ApiKey", "required": True, "key": False, "secret": True},
        ],
        inputArtifactDetails={"minimumCount": 1, "maximumCount": 1},
        outputArtifactDetails={"minimumCount": 1, "maximumCount": 1},
    )
    listed = cp.list_action_types(actionOwnerFilter="Custom")["actionTypes"]
    assert [t["id"]["provider"] for t in listed] == ["PyWorker"], listed
    buildspec = ("version: 0.2\nphases:\n  build:\n    commands:\n"
                 "      - test \"$VERDICT\" = pass\n"
                 "      - grep -q 'checked 1 file' report.txt\n"
                 "      - grep -q padding report.txt\n")
    client("codebuild").create_project(
        name="verify", source={"type": "CODEPIPELINE", "buildspec": buildspec},
        artifacts={"type": "CODEPIPELINE"},
        environment={"type": "LINUX_CONTAINER", "image": "gantry:host",
                     "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole="arn:aws:iam::000000000000:role/gantry")
    cp.create_pipeline(pipeline={
        "name": "worked", "roleArn": "arn:aws:iam::000000000000:role/gantry",
        "artifactStore": {"type": "S3", "location": "gantry"},
        "stages": [
            {"name": "Source", "actions": [{
                "name": "Checkout",
                "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
                "configuration": {"RepositoryUrl": REPOSITORY, "BranchName": "main"},
                "outputArtifacts": [{"name": "Src"}]}]},
            {"name": "Work", "actions": [{
                "name": "Worker", "actionTypeId": TYPE_ID,
                "configuration": {"Target": "prod", "ApiKey": "k3y-value"},
                "inputArtifacts": [{"name": "Src"}], "outputArtifacts": [{"name": "Report"}],
                "namespace": "WorkerVars"}]},
            {"name": "Verify", "actions": [{
                "name": "Check",
                "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
                "configuration": {"ProjectName": "verify", "EnvironmentVariables":
                                  '[{"name": "VERDICT", "value": "#{WorkerVars.Verdict}", "type": "PLAINTEXT"}]'},
                "inputArtifacts": [{"name": "Report"}]}]},
        ]})
    got = cp.get_pipeline(name="worked")["pipeline"]
    assert got["stages"][1]["actions"][0]["configuration"]["ApiKey"] == "****", got


def succeeding_run():
    execution_id = cp.start_pipeline_execution(name="worked")["pipelineExecutionId"]
    job = poll()
    # A wrong nonce is refused.
    try:
        cp.acknowledge_job(jobId=job["id"], nonce="not-the-nonce")
        raise AssertionError("a wrong nonce was accepted")
    except cp.exceptions.InvalidNonceException:
        pass
    data = acknowledge(job)
    assert data["actionConfiguration"]["configuration"] == {"Target": "prod", "ApiKey": "k3y-value"}
    assert data["pipelineContext"]["pipelineExecutionId"] == execution_id
    assert "continuationToken" not in data
    s3 = s3_for(data)
    source = data["inputArtifacts"][0]["location"]["s3Location"]
    body = s3.get_object(Bucket=source["bucketName"], Key=source["objectKey"])["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.read("version.txt") == b"7.8.9", z.namelist()
    head = s3.head_object(Bucket=source["bucketName"], Key=source["objectKey"])
    assert head["ContentLength"] == len(body), head
    # s3transfer's ranged download (as for a large artifact) gives the same bytes.
    parts = io.BytesIO()
    s3.download_fileobj(source["bucketName"], source["objectKey"], parts,
                        Config=boto3.s3.transfer.TransferConfig(
                            multipart_threshold=1, multipart_chunksize=64, max_concurrency=2))
    assert parts.getvalue() == body
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("report.txt", "checked 1 file\n")
    target = data["outputArtifacts"][0]["location"]["s3Location"]
    s3.put_object(Bucket=target["bucketName"], Key=target["objectKey"], Body=out.getvalue())
    # Reading another object with these credentials is refused.
    try:
        s3.get_object(Bucket=target["bucketName"], Key="worked/Elsewhere/x.zip")
        raise AssertionError("another object was readable")
    except s3.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", e.response
    # Long-running work: come back later.
    cp.put_job_success_result(jobId=job["id"], continuationToken="phase-2",
                              executionDetails={"summary": "uploaded", "percentComplete": 50})
    try:
        cp.put_job_success_result(jobId=job["id"])
        raise AssertionError("a finished job took a second result")
    except cp.exceptions.InvalidJobStateException:
        pass
    job = poll()
    data = acknowledge(job)
    assert data["continuationToken"] == "phase-2", data
    details = cp.get_job_details(jobId=job["id"])["jobDetails"]
    assert details["data"]["continuationToken"] == "phase-2"
    assert details["data"]["artifactCredentials"]["accessKeyId"]
    # The output again, the way upload_file sends a large one: multipart.
    s3 = s3_for(data)
    target = data["outputArtifacts"][0]["location"]["s3Location"]
    started = s3.create_multipart_upload(Bucket=target["bucketName"], Key=target["objectKey"])
    s3.abort_multipart_upload(Bucket=target["bucketName"], Key=target["objectKey"],
                              UploadId=started["UploadId"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("report.txt", "checked 1 file\n" + "padding\n" * 1000)
    out.seek(0)
    s3.upload_fileobj(out, target["bucketName"], target["objectKey"],
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=1))
    cp.put_job_success_result(
        jobId=job["id"],
        executionDetails={"summary": "all checks passed", "externalExecutionId": "run-1",
                          "percentComplete": 100},
        outputVariables={"Verdict": "pass"})
    assert wait(execution_id, {"Succeeded", "Failed"}) == "Succeeded"
    details = cp.list_action_executions(
        pipelineName="worked", filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
    worker = next(d for d in details if d["actionName"] == "Worker")
    assert worker["output"]["executionResult"]["externalExecutionSummary"] == "all checks passed", worker
    assert worker["output"]["executionResult"]["externalExecutionId"] == "run-1", worker
    assert worker["output"]["outputVariables"] == {"Verdict": "pass"}, worker
    assert worker["input"]["configuration"]["ApiKey"] == "****", worker
    check = next(d for d in details if d["actionName"] == "Check")
    assert check["status"] == "Succeeded", check


def failing_run():
    execution_id = cp.start_pipeline_execution(name="worked")["pipelineExecutionId"]
    job = poll()
    acknowledge(job)
    cp.put_job_failure_result(jobId=job["id"], failureDetails={
        "type": "JobFailed", "message": "broken on purpose", "externalExecutionId": "run-2"})
    assert wait(execution_id, {"Succeeded", "Failed"}) == "Failed"
    details = cp.list_action_executions(
        pipelineName="worked", filter={"pipelineExecutionId": execution_id})["actionExecutionDetails"]
    worker = next(d for d in details if d["actionName"] == "Worker")
    assert worker["status"] == "Failed", worker
    assert "broken on purpose" in str(worker["output"]["executionResult"]), worker


setup()
succeeding_run()
failing_run()
print("worker: ok")
