//! Compatibility with AWS clients nobody here wrote: boto3/botocore and the
//! AWS CLI sign requests to a loopback listener that uses this crate, and the
//! test checks both what the listener saw and what the clients made of its
//! answers (including its error responses).
//!
//! Needs a Python with `boto3` and `awscli` installed, named by
//! `GANTRY_TEST_PYTHON`. Without it the tests print why and pass, unless
//! `GANTRY_REQUIRE_AWS_CLIENTS=1`, when they fail instead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use gantry_aws::{
    AuthError, AwsError, JsonResponse, RequestParts, SecretKey, Service, Verifier, VerifyOptions,
};
use serde_json::{Value, json};

const AKID: &str = "AKIDGANTRYTEST";
const SECRET: &str = "gantry/test+Secret/Key=0123456789abcdef";

fn python() -> Option<PathBuf> {
    match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() == Ok("1") {
                panic!(
                    "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set: point it at a python3 with boto3 and awscli installed"
                );
            }
            eprintln!(
                "SKIPPED: set GANTRY_TEST_PYTHON to a python3 with boto3 and awscli to run the AWS client compatibility tests"
            );
            None
        }
    }
}

/// One request as the listener received it.
#[derive(Debug, Clone)]
struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    received: SystemTime,
}

impl Captured {
    fn parts(&self) -> RequestParts<'_> {
        let mut r = RequestParts::new(&self.method, &self.target).body(&self.body);
        for (n, v) in &self.headers {
            r = r.header(n, v);
        }
        r
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn lookup(id: &str) -> Option<SecretKey> {
    (id == AKID).then(|| SecretKey::new(SECRET))
}

/// Reads one HTTP/1.1 request; `None` at end of stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Captured> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let method = words.next()?.to_owned();
    let target = words.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut raw = Vec::new();
        reader.read_until(b'\n', &mut raw).ok()?;
        let raw = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            break;
        }
        let colon = raw.iter().position(|&b| b == b':')?;
        let name = String::from_utf8_lossy(&raw[..colon]).into_owned();
        headers.push((name, raw[colon + 1..].to_vec()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| String::from_utf8_lossy(v).trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Captured {
        method,
        target,
        headers,
        body,
        received: SystemTime::now(),
    })
}

/// What the listener answers: the verifier first, then a canned reply.
fn respond(req: &Captured) -> JsonResponse {
    let request_id = gantry_aws::new_request_id();
    let offered = [Service::CodePipeline, Service::CodeBuild];
    let target_header = req.header("x-amz-target");
    let target = gantry_aws::parse_target(target_header.as_deref(), &offered);
    let service = target
        .as_ref()
        .map(|t| t.service)
        .unwrap_or(Service::CodePipeline);
    let verifier = Verifier::new(VerifyOptions::json_protocol());
    let answer = (|| -> Result<Value, AwsError> {
        let caller = verifier.verify(&req.parts(), SystemTime::now(), lookup)?;
        let target = target?;
        target.service.check_caller(&caller)?;
        match target.operation {
            "ListPipelines" => Ok(json!({"pipelines": []})),
            "ListProjects" => Ok(json!({"projects": []})),
            "GetPipeline" => {
                let input: HashMap<String, Value> = gantry_aws::parse_body(&req.body)?;
                let name = input.get("name").and_then(Value::as_str).unwrap_or("");
                Err(AwsError::service(
                    "PipelineNotFoundException",
                    400,
                    format!("Account does not have a pipeline with name '{name}'."),
                ))
            }
            op => Err(AwsError::new(
                gantry_aws::ErrorCode::UnknownOperationException,
                format!("Unknown operation {op}"),
            )),
        }
    })();
    match answer {
        Ok(v) => JsonResponse::success(service, &v, &request_id),
        Err(e) => JsonResponse::error(service, &e, &request_id),
    }
}

fn serve(stream: TcpStream, log: Arc<Mutex<Vec<Captured>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let resp = respond(&req);
        log.lock().unwrap_or_else(|p| p.into_inner()).push(req);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (n, v) in &resp.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        if writer.write_all(out.as_bytes()).is_err() || writer.write_all(&resp.body).is_err() {
            return;
        }
    }
}

/// Starts the listener; returns its endpoint and the request log.
fn listener() -> (String, Arc<Mutex<Vec<Captured>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let endpoint = format!("http://{}", l.local_addr().expect("local addr"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&log);
    thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let log = Arc::clone(&shared);
            thread::spawn(move || serve(stream, log));
        }
    });
    (endpoint, log)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto_calls.py")
}

fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/gantry-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/gantry-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
}

fn captured_for(log: &Arc<Mutex<Vec<Captured>>>, op: &str) -> Vec<Captured> {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|c| c.header("x-amz-target").is_some_and(|t| t.ends_with(op)))
        .cloned()
        .collect()
}

#[test]
fn boto3_requests_verify_and_errors_reach_boto3_as_aws_errors() {
    let Some(py) = python() else { return };
    let (endpoint, log) = listener();
    let out = clean_env(&mut Command::new(&py))
        .arg(script())
        .args([&endpoint, AKID, SECRET])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto_calls.py failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let by_label = |label: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["label"] == label)
            .unwrap_or_else(|| panic!("no result for {label} in\n{stdout}"))
    };
    assert!(lines.iter().any(|l| l["kind"] == "done"), "{stdout}");
    let protocol = lines
        .iter()
        .find(|l| l["kind"] == "protocol")
        .expect("protocol line");
    assert_eq!(
        protocol["codepipeline"], "json",
        "botocore must speak JSON to CodePipeline"
    );

    // Successful calls.
    assert_eq!(
        by_label("codepipeline.list_pipelines")["result"],
        json!({"pipelines": []})
    );
    assert_eq!(
        by_label("codebuild.list_projects")["result"],
        json!({"projects": []})
    );

    // Our error responses become boto3's modelled exceptions and codes.
    let not_found = by_label("codepipeline.get_pipeline");
    assert_eq!(not_found["code"], "PipelineNotFoundException");
    assert_eq!(not_found["modeled"], "PipelineNotFoundException");
    assert_eq!(not_found["status"], 400);
    assert!(
        not_found["message"]
            .as_str()
            .unwrap_or("")
            .contains("no such pipeline/ü")
    );
    assert_eq!(not_found["request_id"].as_str().map(str::len), Some(36));
    let wrong = by_label("wrong_secret");
    assert_eq!(wrong["code"], "InvalidSignatureException");
    assert_eq!(wrong["status"], 400);
    assert_eq!(
        by_label("unknown_key")["code"],
        "UnrecognizedClientException"
    );

    // The presigned URL, sent by hand, verified live.
    let presigned = lines
        .iter()
        .find(|l| l["kind"] == "presigned_response")
        .expect("presigned");
    assert_eq!(presigned["status"], 200);
    assert_eq!(presigned["body"], r#"{"pipelines":[]}"#);

    // The captured boto3 request: right key yes, wrong key no, replay no,
    // tampering no.
    let list = captured_for(&log, "ListPipelines");
    let good = list
        .iter()
        .find(|c| c.header("authorization").is_some_and(|a| a.contains(AKID)))
        .expect("a header-signed ListPipelines");
    let v = Verifier::new(VerifyOptions::json_protocol());
    let at = good.received;
    let caller = v
        .verify(&good.parts(), at, lookup)
        .expect("boto3 request verifies");
    assert_eq!(
        (
            caller.region.as_str(),
            caller.service.as_str(),
            caller.payload_signed
        ),
        ("us-east-1", "codepipeline", true)
    );
    assert_eq!(
        v.verify(&good.parts(), at, |_| Some(SecretKey::new("wrong"))),
        Err(AuthError::SignatureMismatch)
    );
    let replay = v.verify(&good.parts(), at + Duration::from_secs(20 * 60), lookup);
    assert!(
        matches!(replay, Err(AuthError::Expired { .. })),
        "{replay:?}"
    );

    let mut body = good.clone();
    body.body = br#"{"nextToken":"x"}"#.to_vec();
    assert_eq!(
        v.verify(&body.parts(), at, lookup),
        Err(AuthError::SignatureMismatch)
    );
    let mut header = good.clone();
    for (n, val) in &mut header.headers {
        if n.eq_ignore_ascii_case("x-amz-target") {
            *val = b"CodePipeline_20150709.DeletePipeline".to_vec();
        }
    }
    assert_eq!(
        v.verify(&header.parts(), at, lookup),
        Err(AuthError::SignatureMismatch)
    );
    let mut query = good.clone();
    query.target.push_str("?maxResults=1");
    assert_eq!(
        v.verify(&query.parts(), at, lookup),
        Err(AuthError::SignatureMismatch)
    );

    // The presigned request as captured: a query-string signature.
    let presigned_req = list
        .iter()
        .find(|c| c.target.contains("X-Amz-Signature="))
        .expect("captured presigned request");
    let caller = v
        .verify(&presigned_req.parts(), presigned_req.received, lookup)
        .expect("presigned verifies");
    assert!(caller.presigned);
    let expired = v.verify(
        &presigned_req.parts(),
        presigned_req.received + Duration::from_secs(301),
        lookup,
    );
    assert!(
        matches!(expired, Err(AuthError::Expired { .. })),
        "{expired:?}"
    );

    // botocore's signer on random requests (paths with dot segments, escapes
    // and UTF-8, unsorted queries, folded header whitespace, S3 too).
    let oracle: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "oracle").collect();
    assert!(oracle.len() >= 50, "{}", oracle.len());
    let any = Verifier::new(VerifyOptions::default());
    for case in oracle {
        let method = case["method"].as_str().unwrap_or("");
        let query = case["query"].as_str().unwrap_or("");
        let target = if query.is_empty() {
            case["path"].as_str().unwrap_or("").to_owned()
        } else {
            format!("{}?{query}", case["path"].as_str().unwrap_or(""))
        };
        let body = hex::decode(case["body"].as_str().unwrap_or("")).expect("hex body");
        let headers: Vec<(String, String)> = case["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").to_owned(),
                            h[1].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut req = RequestParts::new(method, &target).body(&body);
        for (n, val) in &headers {
            req = req.header(n, val);
        }
        let result = any.verify(&req, SystemTime::now(), lookup);
        assert!(
            result.is_ok(),
            "botocore-signed request refused: {result:?}\n{case}\nour canonical request:\n{}",
            gantry_aws::debug::canonical_request(&req).unwrap_or_default()
        );
    }
}

fn aws_cli(py: &PathBuf, endpoint: &str, secret: &str, args: &[&str]) -> std::process::Output {
    clean_env(&mut Command::new(py))
        .args([
            "-m",
            "awscli",
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .expect("run the AWS CLI")
}

#[test]
fn aws_cli_requests_verify() {
    let Some(py) = python() else { return };
    let (endpoint, log) = listener();

    let out = aws_cli(&py, &endpoint, SECRET, &["codepipeline", "list-pipelines"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aws codepipeline list-pipelines failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_str(&stdout).expect("CLI prints JSON");
    assert_eq!(parsed, json!({"pipelines": []}));

    let out = aws_cli(&py, &endpoint, SECRET, &["codebuild", "list-projects"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = aws_cli(
        &py,
        &endpoint,
        "not-the-secret",
        &["codepipeline", "list-pipelines"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");

    let list = captured_for(&log, "ListPipelines");
    let first = list.first().expect("captured CLI request");
    let v = Verifier::new(VerifyOptions::json_protocol());
    assert!(v.verify(&first.parts(), first.received, lookup).is_ok());
    assert_eq!(
        v.verify(&first.parts(), first.received, |_| Some(SecretKey::new(
            "x"
        ))),
        Err(AuthError::SignatureMismatch)
    );
    let ua = first.header("user-agent").unwrap_or_default();
    assert!(ua.contains("aws-cli/"), "{ua}");
}
