//! Build logs over the REST API: as text from an offset, and live over
//! Server-Sent Events that resume from `Last-Event-ID` with no gap and no
//! duplicate, ending once the build is complete. Also driven by curl, a
//! client no one here wrote.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use gantry_aws::{Credentials, RequestParts, SigningParams};
use serde_json::{Value, json};

use crate::harness::*;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// Parses an event stream (as the SSE spec reads it; `:` lines are comments).
pub(crate) fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = SseEvent {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        let mut has_data = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.into(),
                "id" => event.id = Some(value.into()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
        if has_data {
            out.push(event);
        }
    }
    out
}

/// The text of the `log` events, and the `end` event's data.
pub(crate) fn log_and_end(events: &[SseEvent]) -> (String, Option<Value>) {
    let mut text = String::new();
    let mut end = None;
    for e in events {
        match e.event.as_str() {
            "log" => {
                assert!(end.is_none(), "a log event after the end");
                let chunk: String = serde_json::from_str(&e.data).expect("data is a JSON string");
                text.push_str(&chunk);
                let id: usize = e.id.as_deref().expect("id").parse().expect("offset");
                assert!(id > 0, "{e:?}");
            }
            "end" => end = Some(serde_json::from_str(&e.data).expect("end data")),
            other => panic!("unexpected event {other}: {e:?}"),
        }
    }
    (text, end)
}

const MANY_LINES: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - for i in $(seq 1 2500); do echo \"line $i é\"; done\n";

async fn finished_build(server: &TestServer, project: &str, buildspec: &str) -> String {
    server
        .call("CreateProject", &inline_project(project, buildspec))
        .await;
    let started = server
        .call("StartBuild", &json!({ "projectName": project }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    let build = server.wait_build(&id).await;
    assert_eq!(build["buildStatus"], "SUCCEEDED", "{build}");
    id
}

pub(crate) async fn sse(server: &TestServer, path: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut headers = vec![("Accept", "text/event-stream")];
    headers.extend_from_slice(extra);
    let (status, body) = server
        .rest_raw(Some(SECRET), "gantry", "GET", path, None, &headers)
        .await;
    (status, String::from_utf8(body).expect("utf-8"))
}

/// Opens a signed SSE request on a plain socket; the reader is after the
/// request was sent.
fn open_stream(addr: std::net::SocketAddr, path: &str) -> BufReader<TcpStream> {
    let target = format!("/api/v1{path}");
    let host = addr.to_string();
    let unsigned = RequestParts::new("GET", &target).header("Host", &host);
    let creds = Credentials::new(AKID, SECRET);
    let params = SigningParams {
        credentials: &creds,
        region: "us-east-1",
        service: "gantry",
        time: SystemTime::now(),
    };
    let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    let mut request =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
    for (n, v) in signed.pairs() {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    BufReader::new(stream)
}

/// Opens an SSE stream and returns the first `log` event only, dropping
/// the connection after it (a client that went away mid-log).
fn first_event_then_drop(server: &TestServer, path: &str) -> SseEvent {
    // Chunked framing aside, every SSE line arrives whole on its own line.
    let mut reader = open_stream(server.addr, path);
    let mut block = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read");
        assert!(!line.is_empty(), "the stream ended before an event");
        if line.starts_with("event:") || line.starts_with("id:") || line.starts_with("data:") {
            block.push_str(&line);
        }
        if block.contains("data:") && block.contains("id:") && block.contains("event:") {
            let events = parse_sse(&block);
            return events.into_iter().next().expect("an event");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_resumes_from_any_offset_with_nothing_missing_or_repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let id = finished_build(&server, "many", MANY_LINES).await;
    let logs = format!("/builds/{id}/logs");

    let (status, full) = server
        .rest_raw(Some(SECRET), "gantry", "GET", &logs, None, &[])
        .await;
    assert_eq!(status, 200);
    let full = String::from_utf8(full).expect("utf-8");
    assert!(
        full.contains("line 1 é\n") && full.contains("line 2500 é\n"),
        "{full}"
    );

    // The whole stream: the same text, then the end.
    let (status, body) = sse(&server, &logs, &[]).await;
    assert_eq!(status, 200);
    let events = parse_sse(&body);
    assert!(events.len() >= 3, "2500 lines come in more than one event");
    let (text, end) = log_and_end(&events);
    assert_eq!(text, full);
    let end = end.expect("an end event");
    assert_eq!(end["status"], "SUCCEEDED");
    assert_eq!(end["offset"], full.len());
    assert_eq!(
        events.last().and_then(|e| e.id.clone()),
        Some(full.len().to_string())
    );

    // A client that read the first event and went away resumes after it.
    let first = tokio::task::block_in_place(|| first_event_then_drop(&server, &logs));
    let first_text: String = serde_json::from_str(&first.data).expect("json");
    let resume_at = first.id.clone().expect("id");
    assert_eq!(resume_at, first_text.len().to_string());
    let (_, body) = sse(&server, &logs, &[("Last-Event-ID", &resume_at)]).await;
    let (rest, end) = log_and_end(&parse_sse(&body));
    assert_eq!(format!("{first_text}{rest}"), full, "no gap, no duplicate");
    assert!(end.is_some());

    // Any byte offset on a character boundary, mid-line included.
    let mid = full.find("line 1234 ").expect("line") + 3;
    for offset in [0, 1, mid, full.len() - 1, full.len()] {
        let (_, body) = sse(&server, &format!("{logs}?offset={offset}"), &[]).await;
        let (rest, _) = log_and_end(&parse_sse(&body));
        assert_eq!(rest, full[offset..], "SSE from {offset}");
        let (status, text) = server
            .rest_raw(
                Some(SECRET),
                "gantry",
                "GET",
                &format!("{logs}?offset={offset}"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8(text).expect("utf-8"),
            full[offset..],
            "text from {offset}"
        );
    }
    // Last-Event-ID wins over ?offset (a reconnecting EventSource keeps its URL).
    let (_, body) = sse(
        &server,
        &format!("{logs}?offset=0"),
        &[("Last-Event-ID", &mid.to_string())],
    )
    .await;
    assert_eq!(log_and_end(&parse_sse(&body)).0, full[mid..]);

    // Offsets no reader was given are refused, naming the parameter.
    let inside_e = full.find('é').expect("é") + 1;
    for (query, header, named) in [
        (format!("?offset={}", full.len() + 1), None, "past the end"),
        (format!("?offset={inside_e}"), None, "UTF-8"),
        ("?offset=-1".to_owned(), None, "offset"),
        (String::new(), Some("soon"), "Last-Event-ID"),
    ] {
        let extra: Vec<(&str, &str)> = header.map(|h| ("Last-Event-ID", h)).into_iter().collect();
        let (status, body) = sse(&server, &format!("{logs}{query}"), &extra).await;
        assert_eq!(status, 400, "{query} {header:?}: {body}");
        let err: Value = serde_json::from_str(&body).expect("json");
        assert!(
            err["error"]["message"].as_str().expect("m").contains(named),
            "{err}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_follows_a_running_build_and_ends_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo before\n      - sleep 2\n      - echo after\n      - exit 4\n";
    server
        .call("CreateProject", &inline_project("live", spec))
        .await;
    let started = server
        .call("StartBuild", &json!({ "projectName": "live" }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    let logs = format!("/builds/{id}/logs");
    // Opened while the build runs; returns only when the stream ends.
    let (status, body) = sse(&server, &logs, &[]).await;
    assert_eq!(status, 200);
    let (text, end) = log_and_end(&parse_sse(&body));
    let end = end.expect("the stream ends with the build");
    assert_eq!(end["status"], "FAILED");
    let (_, full) = server
        .rest_raw(Some(SECRET), "gantry", "GET", &logs, None, &[])
        .await;
    assert_eq!(text, String::from_utf8(full).expect("utf-8"));
    let before = text.find("before").expect("before");
    let after = text.find("after").expect("after");
    assert!(before < after, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_signs_rest_requests_and_follows_a_log() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed for this test");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let id = finished_build(&server, "curled", GOOD_BUILDSPEC).await;
    let curl = |args: Vec<String>| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:gantry", "--user"])
            .arg(format!("{AKID}:{SECRET}"))
            .args(args)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let url = server.url();
    let listed: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        curl(vec![format!("{url}/api/v1/pipelines")])
    }))
    .expect("json");
    assert_eq!(listed, json!({ "pipelines": [] }));
    let build: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        curl(vec![format!("{url}/api/v1/builds/{id}")])
    }))
    .expect("json");
    assert_eq!(build["build"]["id"], id.as_str());
    let stream = tokio::task::block_in_place(|| {
        curl(vec![
            "-N".into(),
            "-H".into(),
            "Accept: text/event-stream".into(),
            format!("{url}/api/v1/builds/{id}/logs"),
        ])
    });
    let (text, end) = log_and_end(&parse_sse(&stream));
    assert!(text.contains("hello"), "{text}");
    assert_eq!(end.expect("end")["status"], "SUCCEEDED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_ends_live_streams_so_the_server_can_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    server
        .call("CreateProject", &inline_project("slow", SLOW_BUILDSPEC))
        .await;
    let started = server
        .call("StartBuild", &json!({ "projectName": "slow" }))
        .await;
    let id = started["build"]["id"].as_str().expect("id").to_owned();
    let logs = format!("/builds/{id}/logs");
    // A follower that has received the first event and keeps listening.
    let addr = server.addr;
    let (got_first, first) = std::sync::mpsc::channel();
    let follower = std::thread::spawn(move || {
        let mut reader = open_stream(addr, &logs);
        let mut all = String::new();
        let mut line = String::new();
        let mut told = false;
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            all.push_str(&line);
            if !told && line.starts_with("data:") {
                let _ = got_first.send(());
                told = true;
            }
            line.clear();
        }
        all
    });
    first
        .recv_timeout(Duration::from_secs(60))
        .expect("the build logs before it sleeps");
    // `stop` panics unless the server returns within 60 s, which it
    // cannot while a stream of the sleeping build stays open.
    server.stop().await;
    let streamed = follower.join().expect("follower");
    assert!(streamed.contains("event: log"), "{streamed}");
    assert!(!streamed.contains("event: end"), "{streamed}");
}
