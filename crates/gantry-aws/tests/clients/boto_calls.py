"""Drives a gantry-aws test listener with boto3/botocore, clients Gantry did not write.

Usage: boto_calls.py ENDPOINT ACCESS_KEY_ID SECRET

Prints one JSON object per line; the Rust test (tests/aws_clients.rs) reads
them. Nothing here decides pass or fail except crashes: the assertions are
on the Rust side, next to the verifier they test.
"""

import json
import random
import sys
import urllib.parse
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, akid, secret = sys.argv[1:4]
REGION = "us-east-1"
# No retries: a refused request must surface once, as the error it is.
CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"})


def emit(kind, **fields):
    print(json.dumps({"kind": kind, **fields}), flush=True)


def client(service, key=akid, sec=secret):
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=sec,
        config=CONFIG,
    )


def call(label, fn):
    try:
        result = fn()
        result.pop("ResponseMetadata", None)
        emit("call", label=label, ok=True, result=result)
    except ClientError as e:
        emit(
            "call",
            label=label,
            ok=False,
            code=e.response["Error"]["Code"],
            message=e.response["Error"]["Message"],
            status=e.response["ResponseMetadata"].get("HTTPStatusCode"),
            request_id=e.response["ResponseMetadata"].get("RequestId"),
            modeled=type(e).__name__,
        )


cp = client("codepipeline")
cb = client("codebuild")
emit("protocol", codepipeline=cp.meta.service_model.resolved_protocol,
     codebuild=cb.meta.service_model.resolved_protocol)

call("codepipeline.list_pipelines", lambda: cp.list_pipelines())
call("codebuild.list_projects", lambda: cb.list_projects())
call("codepipeline.get_pipeline", lambda: cp.get_pipeline(name="no such pipeline/ü"))
call("wrong_secret", lambda: client("codepipeline", sec=secret + "x").list_pipelines())
call("unknown_key", lambda: client("codepipeline", key="AKIDUNKNOWN").list_pipelines())

# A presigned URL, then the request it describes, sent by hand.
url = cp.generate_presigned_url("list_pipelines", Params={}, ExpiresIn=300)
emit("presigned", url=url)
req = urllib.request.Request(
    url,
    method="POST",
    headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "CodePipeline_20150709.ListPipelines",
    },
)
with urllib.request.urlopen(req, timeout=10) as resp:
    emit("presigned_response", status=resp.status, body=resp.read().decode())

# botocore's signer as an oracle on random requests.
rng = random.Random(20150830)
creds = botocore.credentials.Credentials(akid, secret)
SEGMENT_CHARS = "abcXYZ019-._~!$'()*,;=:@ "


def segment(service):
    kind = rng.random()
    if kind < 0.1:
        return rng.choice([".", "..", ""])
    raw = "".join(rng.choice(SEGMENT_CHARS) for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.3:
        raw += "é"
    # botocore's S3 client encodes keys strictly; other services' paths may
    # keep RFC 3986 sub-delimiters literal on the wire.
    safe = "-._~" if service == "s3" else "-._~!$'()*,;=:@"
    return urllib.parse.quote(raw, safe=safe)


for i in range(60):
    service = rng.choice(["codebuild", "codepipeline", "s3"])
    path = "/" + "/".join(segment(service) for _ in range(rng.randint(0, 4)))
    if rng.random() < 0.3:
        path += "/"
    params = [
        (
            "".join(rng.choice("abAB19-_.~ +&=%/é") for _ in range(rng.randint(1, 5))),
            "".join(rng.choice("abAB19-_.~ +&=%/é") for _ in range(rng.randint(0, 5))),
        )
        for _ in range(rng.randint(0, 4))
    ]
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="-_.~")
    url = f"http://127.0.0.1:1{path}" + (f"?{query}" if query else "")
    headers = {"X-Test-Header": "  a   b\tc  ", "Content-Type": "application/x-amz-json-1.1"}
    if rng.random() < 0.5:
        headers["X-Amz-Target"] = "CodeBuild_20161006.ListProjects"
    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    method = rng.choice(["GET", "POST", "PUT", "DELETE"])
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers, data=body)
    if service == "s3":
        botocore.auth.S3SigV4Auth(creds, service, REGION).add_auth(request)
    else:
        botocore.auth.SigV4Auth(creds, service, REGION).add_auth(request)
    prepared = request.prepare()
    split = urllib.parse.urlsplit(prepared.url)
    emit(
        "oracle",
        service=service,
        method=prepared.method,
        path=split.path,
        query=split.query,
        headers=[[k, v] for k, v in prepared.headers.items()] + [["Host", split.netloc]],
        body=(prepared.body or b"").hex(),
    )

emit("done")
