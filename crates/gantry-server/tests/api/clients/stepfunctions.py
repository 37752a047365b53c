"""Drives a Gantry server's Step Functions API with boto3.

Usage: stepfunctions.py ENDPOINT flow; credentials come from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY. A small HTTP server in this process receives the task
tokens of `http:invoke.waitForTaskToken` tasks. Every check is an assert; the
script prints what it saw and exits non-zero on the first failure.
"""
import http.server
import json
import os
import sys
import threading
import time

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = sys.argv[1]
SCENARIO = sys.argv[2]
ROLE = "arn:aws:iam::000000000000:role/sfn"

TOKENS = {}


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        TOKENS[self.path] = body["token"]
        answer = b'{"received": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d" % server.server_address[1]


def client():
    return boto3.client(
        "stepfunctions",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        # StartSyncExecution's endpoint has the host prefix "sync-", which does not
        # resolve for 127.0.0.1: leave it off, as users of a local endpoint must.
        config=botocore.config.Config(retries={"max_attempts": 1}, inject_host_prefix=False),
    )


def error_code(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an error from %s" % call)


def wait_token(path):
    for _ in range(600):
        if path in TOKENS:
            return TOKENS[path]
        time.sleep(0.05)
    raise AssertionError("no token at %s" % path)


def wait_done(sfn, arn):
    for _ in range(600):
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.05)
    raise AssertionError("%s still running" % arn)


def flow():
    sfn = client()
    url = receiver()
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"items.$": "$.items", "who.$": "$.who"}, "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Each"},
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.doubled",
                "ItemProcessor": {"StartAt": "Double", "States": {"Double": {
                    "Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, $)"}, "End": True}}},
                "Next": "Approve",
            },
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke.waitForTaskToken",
                "Parameters": {"ApiEndpoint": url + "/approve", "Method": "POST",
                               "RequestBody": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": 60,
                "ResultPath": "$.approval",
                "End": True,
            },
        },
    }
    created = sfn.create_state_machine(name="approve", definition=json.dumps(definition), roleArn=ROLE)
    machine = created["stateMachineArn"]
    assert machine == "arn:aws:states:us-east-1:000000000000:stateMachine:approve", machine
    described = sfn.describe_state_machine(stateMachineArn=machine)
    assert described["type"] == "STANDARD" and described["status"] == "ACTIVE", described
    assert json.loads(described["definition"]) == definition
    names = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
    assert names == ["approve"], names

    started = sfn.start_execution(stateMachineArn=machine, name="first",
                                  input=json.dumps({"items": [1, 2, 3], "who": "ops"}))
    arn = started["executionArn"]
    token = wait_token("/approve")
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output=json.dumps({"by": "alice"}))
    assert error_code(sfn.send_task_success, taskToken=token, output="{}") == "TaskTimedOut"
    done = wait_done(sfn, arn)
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output == {"items": [1, 2, 3], "who": "ops", "doubled": [{"v": 2}, {"v": 4}, {"v": 6}],
                      "approval": {"by": "alice"}}, output
    assert done["stopDate"] >= done["startDate"]

    events = sfn.get_execution_history(executionArn=arn)["events"]
    types = [e["type"] for e in events]
    for t in ["ExecutionStarted", "PassStateEntered", "WaitStateEntered", "WaitStateExited",
              "MapStateStarted", "MapIterationStarted", "TaskScheduled", "TaskSucceeded",
              "ExecutionSucceeded"]:
        assert t in types, (t, types)
    started_event = events[0]
    assert started_event["executionStartedEventDetails"]["roleArn"] == ROLE
    scheduled = next(e for e in events if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert scheduled["resourceType"] == "http" and scheduled["resource"] == "invoke.waitForTaskToken", scheduled
    assert scheduled["heartbeatInSeconds"] == 60, scheduled
    assert token not in scheduled["parameters"], scheduled
    succeeded = next(e for e in events if e["type"] == "TaskSucceeded")["taskSucceededEventDetails"]
    assert json.loads(succeeded["output"]) == {"by": "alice"}, succeeded
    pages = list(sfn.get_paginator("get_execution_history").paginate(
        executionArn=arn, PaginationConfig={"PageSize": 5}))
    assert sum(len(p["events"]) for p in pages) == len(events) and len(pages) > 1

    # A failure callback fails the execution with its error.
    second = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"items": [], "who": "x"}))["executionArn"]
    del TOKENS["/approve"]
    token = wait_token("/approve")
    sfn.send_task_failure(taskToken=token, error="Rejected", cause="not today")
    failed = wait_done(sfn, second)
    assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "Rejected", "not today"), failed
    listed = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert {e["status"] for e in listed} == {"SUCCEEDED", "FAILED"}, listed
    assert [e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine, statusFilter="FAILED")["executions"]] == [second]

    # Stop, errors.
    waiting = sfn.create_state_machine(name="waiting", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}))["stateMachineArn"]
    x = sfn.start_execution(stateMachineArn=waiting)["executionArn"]
    sfn.stop_execution(executionArn=x, error="Manual", cause="test")
    stopped = sfn.describe_execution(executionArn=x)
    assert (stopped["status"], stopped["error"]) == ("ABORTED", "Manual"), stopped
    history = [e["type"] for e in sfn.get_execution_history(executionArn=x)["events"]]
    assert history[-1] == "ExecutionAborted", history

    missing = machine + "-nope"
    assert error_code(sfn.describe_state_machine, stateMachineArn=missing) == "StateMachineDoesNotExist"
    assert error_code(sfn.describe_execution, executionArn=arn + "-nope") == "ExecutionDoesNotExist"
    assert error_code(sfn.describe_execution, executionArn="arn:aws:states:us-east-1:000000000000:bogus") == "InvalidArn"
    assert error_code(sfn.create_state_machine, name="bad", roleArn=ROLE,
                      definition='{"StartAt": "A", "States": {}}') == "InvalidDefinition"
    assert error_code(sfn.send_task_success, taskToken="task-1-" + "0" * 64, output="{}") == "TaskDoesNotExist"
    assert error_code(sfn.start_sync_execution, stateMachineArn=machine) == "StateMachineTypeNotSupported"

    v = sfn.validate_state_machine_definition(definition='{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}')
    assert v["result"] == "FAIL" and v["diagnostics"][0]["location"] == "/States/A/Next", v
    t = sfn.test_state(definition=json.dumps({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "Next": "N"}),
                       roleArn=ROLE, input='{"a": 1}')
    assert t["status"] == "SUCCEEDED" and json.loads(t["output"]) == {"a": 1, "r": {"x": 1}} and t["nextState"] == "N", t

    express = sfn.create_state_machine(name="quick", type="EXPRESS", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": True}}}))["stateMachineArn"]
    r = sfn.start_sync_execution(stateMachineArn=express, input='{"a": 2, "b": 3}')
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"sum": 5}, r

    sfn.update_state_machine(stateMachineArn=waiting, definition=json.dumps(
        {"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}))
    sfn.delete_state_machine(stateMachineArn=waiting)
    assert error_code(sfn.describe_state_machine, stateMachineArn=waiting) == "StateMachineDoesNotExist"
    print("flow: ok")


if SCENARIO == "flow":
    flow()
else:
    raise SystemExit("unknown scenario " + SCENARIO)
