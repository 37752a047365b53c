"""Drives a Gantry server's EventBridge API with boto3.

Usage: events.py ENDPOINT RECEIVER_URL; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every check is an assert; prints
"events: ok" at the end.
"""
import json
import os
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT, RECEIVER = sys.argv[1], sys.argv[2]

ev = boto3.client(
    "events",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    config=botocore.config.Config(retries={"max_attempts": 1}),
)


def error_code(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} {kwargs} succeeded")


pattern = json.dumps({"source": ["com.example"], "detail": {"kind": ["boto"]}})
arn = ev.put_rule(Name="boto-rule", EventPattern=pattern, Description="from boto3")["RuleArn"]
assert arn == "arn:aws:events:us-east-1:000000000000:rule/boto-rule", arn
for i in range(3):
    ev.put_rule(Name=f"page-{i}", ScheduleExpression="rate(5 minutes)", State="DISABLED")

rule = ev.describe_rule(Name="boto-rule")
assert rule["State"] == "ENABLED" and rule["EventPattern"] == pattern, rule
assert rule["Description"] == "from boto3"

names = []
for page in ev.get_paginator("list_rules").paginate(NamePrefix="page-", PaginationConfig={"PageSize": 2}):
    names += [r["Name"] for r in page["Rules"]]
assert names == ["page-0", "page-1", "page-2"], names

ev.disable_rule(Name="boto-rule")
assert ev.describe_rule(Name="boto-rule")["State"] == "DISABLED"
ev.enable_rule(Name="boto-rule")

out = ev.put_targets(
    Rule="boto-rule",
    Targets=[
        {"Id": "hook", "Arn": RECEIVER, "InputPath": "$.detail",
         "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600}},
        {"Id": "bad", "Arn": RECEIVER, "Input": "not json"},
    ],
)
assert out["FailedEntryCount"] == 1, out
assert out["FailedEntries"][0]["TargetId"] == "bad", out
targets = ev.list_targets_by_rule(Rule="boto-rule")["Targets"]
assert [t["Id"] for t in targets] == ["hook"], targets
assert targets[0]["RetryPolicy"]["MaximumRetryAttempts"] == 3

assert error_code(ev.delete_rule, Name="boto-rule") == "ValidationException"
assert error_code(ev.describe_rule, Name="missing") == "ResourceNotFoundException"
assert error_code(ev.put_rule, Name="x", EventPattern='{"a": "b"}') == "InvalidEventPatternException"
assert error_code(ev.put_rule, Name="x", ScheduleExpression="cron(0 0 * * * *)") == "ValidationException"
assert error_code(ev.put_targets, Rule="missing", Targets=[{"Id": "a", "Arn": RECEIVER}]) == "ResourceNotFoundException"

event = {
    "id": "1", "account": "000000000000", "source": "com.example", "time": "2024-05-01T12:00:00Z",
    "region": "us-east-1", "detail-type": "t", "resources": [], "detail": {"kind": "boto"},
}
assert ev.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"] is True
event["detail"]["kind"] = "other"
assert ev.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"] is False

out = ev.put_events(
    Entries=[
        {"Source": "com.example", "DetailType": "t", "Detail": json.dumps({"kind": "boto", "msg": "from-boto3"})},
        {"Source": "com.example", "DetailType": "t", "Detail": "not json"},
    ]
)
assert out["FailedEntryCount"] == 1, out
assert "EventId" in out["Entries"][0]
assert out["Entries"][1]["ErrorCode"] == "MalformedDetail", out

conn = ev.create_connection(
    Name="boto-conn",
    AuthorizationType="API_KEY",
    AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-key", "ApiKeyValue": "boto-secret"}},
)
assert conn["ConnectionState"] == "AUTHORIZED"
described = ev.describe_connection(Name="boto-conn")
assert "boto-secret" not in json.dumps(described, default=str), described
assert described["AuthParameters"]["ApiKeyAuthParameters"] == {"ApiKeyName": "x-key"}
dest = ev.create_api_destination(
    Name="boto-dest", ConnectionArn=conn["ConnectionArn"], InvocationEndpoint=RECEIVER + "/dest", HttpMethod="POST"
)
assert dest["ApiDestinationState"] == "ACTIVE"
assert ev.describe_api_destination(Name="boto-dest")["InvocationEndpoint"] == RECEIVER + "/dest"
assert error_code(ev.describe_connection, Name="nope") == "ResourceNotFoundException"
ev.delete_api_destination(Name="boto-dest")
assert ev.delete_connection(Name="boto-conn")["ConnectionState"] == "DELETING"

removed = ev.remove_targets(Rule="page-0", Ids=["ghost"])
assert removed["FailedEntryCount"] == 1, removed
ev.delete_rule(Name="page-0")
print("events: ok")
