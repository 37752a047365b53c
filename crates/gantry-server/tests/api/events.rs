//! EventBridge in the real server: the API over SigV4, delivery to a local
//! HTTP receiver (transformed input, retries, dead letters), API
//! destinations, schedules on an injected clock, restarts, CodeBuild's
//! own events reaching a rule, and two servers on one PostgreSQL database
//! electing the one that runs schedules and deliveries.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gantry_aws::{Credentials, RequestParts, SigningParams};
use gantry_server::{Clock, Config, ServerError};
use gantry_store::EventStore;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::harness::{AKID, SECRET, inline_project, open_store};

/// A clock the test moves by hand. Starts at 2024-05-01T12:00:00Z.
#[derive(Debug)]
pub struct TestClock(AtomicI64);

impl TestClock {
    fn new() -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(1_714_564_800_000)))
    }
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A server with a test clock and fast polling.
struct EventsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    http: reqwest::Client,
}

impl EventsServer {
    async fn start(data_dir: &Path, clock: Arc<TestClock>) -> EventsServer {
        EventsServer::start_with(data_dir, clock, |_| {}).await
    }

    /// Like [`EventsServer::start`], with the configuration adjusted first.
    async fn start_with(
        data_dir: &Path,
        clock: Arc<TestClock>,
        adjust: impl FnOnce(&mut Config),
    ) -> EventsServer {
        let mut config = Config::new(data_dir);
        config.admin_key = Some((AKID.into(), SECRET.into()));
        config.events.clock = clock;
        config.events.poll_interval = Duration::from_millis(20);
        config.events.retry_base = Duration::from_secs(1);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gantry_server::launch_with_tcp_listener(
            config,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        let server = EventsServer {
            addr,
            shutdown: Some(tx),
            task,
            http: reqwest::Client::new(),
        };
        for _ in 0..400 {
            if let Ok(r) = server
                .http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server on {addr} did not start");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the server's task, as good as a crash for its singleton
    /// work: nothing is stopped cleanly, no lease is given up.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("stops")
            .expect("task")
            .expect("no error");
    }

    /// A signed call; `target` is e.g. `AWSEvents.PutRule`.
    async fn call_raw(&self, target: &str, input: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(input).expect("json");
        let host = self.addr.to_string();
        let creds = Credentials::new(AKID, SECRET);
        let (service, content_type) = if target.starts_with("AWSEvents") {
            ("events", "application/x-amz-json-1.1")
        } else if target.starts_with("AWSStepFunctions") {
            ("states", "application/x-amz-json-1.0")
        } else {
            ("codebuild", "application/x-amz-json-1.1")
        };
        let unsigned = RequestParts::new("POST", "/")
            .header("Host", &host)
            .header("Content-Type", content_type)
            .header("X-Amz-Target", target)
            .body(&body);
        let params = SigningParams {
            credentials: &creds,
            region: "us-east-1",
            service,
            time: SystemTime::now(),
        };
        let signed = gantry_aws::sign(&unsigned, &params).expect("sign");
        let mut request = self
            .http
            .post(self.url())
            .header("Content-Type", content_type)
            .header("X-Amz-Target", target)
            .body(body);
        for (n, v) in signed.pairs() {
            if !n.eq_ignore_ascii_case("host") {
                request = request.header(n, v);
            }
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, value)
    }

    async fn events(&self, op: &str, input: Value) -> Value {
        let (status, out) = self.call_raw(&format!("AWSEvents.{op}"), &input).await;
        assert_eq!(status, 200, "{op} {input}: {out}");
        out
    }

    async fn events_err(&self, op: &str, input: Value) -> (String, String) {
        let (status, out) = self.call_raw(&format!("AWSEvents.{op}"), &input).await;
        assert_eq!(status, 400, "{op} {input}: {out}");
        (
            out["__type"].as_str().unwrap_or_default().to_owned(),
            out["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    async fn states(&self, op: &str, input: Value) -> Value {
        let (status, out) = self
            .call_raw(&format!("AWSStepFunctions.{op}"), &input)
            .await;
        assert_eq!(status, 200, "{op} {input}: {out}");
        out
    }

    async fn codebuild(&self, op: &str, input: Value) -> Value {
        let (status, out) = self
            .call_raw(&format!("CodeBuild_20161006.{op}"), &input)
            .await;
        assert_eq!(status, 200, "{op} {input}: {out}");
        out
    }
}

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    uri: String,
    headers: HeaderMap,
    pub body: String,
}

/// A local HTTP endpoint that records requests and answers with the
/// statuses queued for it (200 when the queue is empty).
#[derive(Default)]
pub(crate) struct Receiver {
    seen: Mutex<Vec<Received>>,
    statuses: Mutex<VecDeque<u16>>,
    always: Mutex<Option<u16>>,
    /// How long each answer waits (a slow target keeps a delivery in flight).
    delay: Mutex<Duration>,
}

impl Receiver {
    pub(crate) async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, format!("http://{addr}"))
    }

    pub(crate) fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    fn queue(&self, statuses: &[u16]) {
        self.statuses.lock().expect("lock").extend(statuses);
    }

    fn always(&self, status: Option<u16>) {
        *self.always.lock().expect("lock") = status;
    }

    fn delay(&self, delay: Duration) {
        *self.delay.lock().expect("lock") = delay;
    }
}

async fn record(
    State(r): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.seen.lock().expect("lock").push(Received {
        uri: uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let delay = *r.delay.lock().expect("lock");
    tokio::time::sleep(delay).await;
    let status = match *r.always.lock().expect("lock") {
        Some(s) => s,
        None => r.statuses.lock().expect("lock").pop_front().unwrap_or(200),
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// Polls `check` (advancing the clock by `step_ms` each time) for up to 30 s.
async fn eventually<F: FnMut() -> bool>(clock: &TestClock, step_ms: i64, what: &str, mut check: F) {
    for _ in 0..1500 {
        if check() {
            return;
        }
        clock.advance(step_ms);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn entry(source: &str, detail: Value) -> Value {
    json!({ "Source": source, "DetailType": "Order Placed", "Detail": detail.to_string() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_targets_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = EventsServer::start(dir.path(), TestClock::new()).await;

    let out = server
        .events(
            "PutRule",
            json!({"Name": "orders", "EventPattern": r#"{"source": ["shop"]}"#, "Description": "d"}),
        )
        .await;
    assert_eq!(
        out["RuleArn"],
        "arn:aws:events:us-east-1:000000000000:rule/orders"
    );
    server
        .events("PutRule", json!({"Name": "orders-nightly", "ScheduleExpression": "cron(0 2 * * ? *)", "State": "DISABLED"}))
        .await;
    server
        .events(
            "PutRule",
            json!({"Name": "other", "EventPattern": r#"{"source": ["x"]}"#}),
        )
        .await;

    let rule = server
        .events("DescribeRule", json!({"Name": "orders"}))
        .await;
    assert_eq!(rule["State"], "ENABLED");
    assert_eq!(rule["EventBusName"], "default");
    assert_eq!(rule["Description"], "d");
    assert_eq!(rule["EventPattern"], r#"{"source": ["shop"]}"#);

    // Prefix and paging.
    let page1 = server
        .events("ListRules", json!({"NamePrefix": "orders", "Limit": 1}))
        .await;
    assert_eq!(page1["Rules"].as_array().map(Vec::len), Some(1));
    assert_eq!(page1["Rules"][0]["Name"], "orders");
    let token = page1["NextToken"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let page2 = server
        .events(
            "ListRules",
            json!({"NamePrefix": "orders", "Limit": 1, "NextToken": token}),
        )
        .await;
    assert_eq!(page2["Rules"][0]["Name"], "orders-nightly");
    assert_eq!(page2["Rules"][0]["ScheduleExpression"], "cron(0 2 * * ? *)");
    assert!(page2.get("NextToken").is_none());

    server
        .events("DisableRule", json!({"Name": "orders"}))
        .await;
    let rule = server
        .events("DescribeRule", json!({"Name": "orders"}))
        .await;
    assert_eq!(rule["State"], "DISABLED");
    server.events("EnableRule", json!({"Name": "orders"})).await;

    // Per-target failures; the good target is stored.
    let out = server
        .events(
            "PutTargets",
            json!({"Rule": "orders", "Targets": [
                {"Id": "hook", "Arn": "http://127.0.0.1:9/hook", "InputPath": "$.detail"},
                {"Id": "queue", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"},
            ]}),
        )
        .await;
    assert_eq!(out["FailedEntryCount"], 1);
    assert_eq!(out["FailedEntries"][0]["TargetId"], "queue");
    assert_eq!(out["FailedEntries"][0]["ErrorCode"], "ValidationException");
    let targets = server
        .events("ListTargetsByRule", json!({"Rule": "orders"}))
        .await;
    assert_eq!(
        targets["Targets"],
        json!([{"Id": "hook", "Arn": "http://127.0.0.1:9/hook", "InputPath": "$.detail"}])
    );

    // A rule with targets cannot be deleted.
    let (code, message) = server
        .events_err("DeleteRule", json!({"Name": "orders"}))
        .await;
    assert_eq!(code, "ValidationException");
    assert!(message.contains("has targets"), "{message}");
    let out = server
        .events(
            "RemoveTargets",
            json!({"Rule": "orders", "Ids": ["hook", "ghost"]}),
        )
        .await;
    assert_eq!(out["FailedEntryCount"], 1);
    assert_eq!(out["FailedEntries"][0]["TargetId"], "ghost");
    server.events("DeleteRule", json!({"Name": "orders"})).await;
    let (code, _) = server
        .events_err("DescribeRule", json!({"Name": "orders"}))
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = server
        .events_err(
            "PutTargets",
            json!({"Rule": "orders", "Targets": [{"Id": "a", "Arn": "http://x.invalid"}]}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");

    // Refusals.
    let (code, message) = server
        .events_err(
            "PutRule",
            json!({"Name": "bad", "EventPattern": r#"{"source": "shop"}"#}),
        )
        .await;
    assert_eq!(code, "InvalidEventPatternException");
    assert!(
        message.starts_with("Event pattern is not valid."),
        "{message}"
    );
    let (code, message) = server
        .events_err(
            "PutRule",
            json!({"Name": "bad", "ScheduleExpression": "rate(1 minutes)"}),
        )
        .await;
    assert_eq!(code, "ValidationException");
    assert!(
        message.starts_with("Parameter ScheduleExpression is not valid."),
        "{message}"
    );
    let (code, _) = server
        .events_err("PutRule", json!({"Name": "bad name"}))
        .await;
    assert_eq!(code, "ValidationException");
    let (code, _) = server
        .events_err(
            "PutRule",
            json!({"Name": "b", "EventPattern": r#"{"a": [1]}"#, "EventBusName": "nope"}),
        )
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = server.events_err("PutRule", json!({"Name": 3})).await;
    assert_eq!(code, "SerializationException");

    // TestEventPattern.
    let event = json!({"id": "1", "account": "000000000000", "source": "shop", "time": "2024-05-01T12:00:00Z",
                       "region": "us-east-1", "detail-type": "x", "resources": [], "detail": {"n": 5}})
        .to_string();
    let out = server
        .events("TestEventPattern", json!({"EventPattern": r#"{"detail": {"n": [{"numeric": [">", 3]}]}}"#, "Event": event}))
        .await;
    assert_eq!(out["Result"], true);
    let (code, _) = server
        .events_err(
            "TestEventPattern",
            json!({"EventPattern": r#"{"detail": {"n": [{"numeric": [">"]}]}}"#, "Event": event}),
        )
        .await;
    assert_eq!(code, "InvalidEventPatternException");

    // PutEvents: per-entry errors, FailedEntryCount.
    let out = server
        .events(
            "PutEvents",
            json!({"Entries": [
                entry("shop", json!({"a": 1})),
                {"Source": "shop", "DetailType": "x"},
                {"Source": "shop", "DetailType": "x", "Detail": "[1]"},
                entry("aws.ec2", json!({})),
            ]}),
        )
        .await;
    assert_eq!(out["FailedEntryCount"], 3, "{out}");
    assert!(out["Entries"][0]["EventId"].is_string());
    assert_eq!(out["Entries"][1]["ErrorCode"], "InvalidArgument");
    assert_eq!(out["Entries"][2]["ErrorCode"], "MalformedDetail");
    assert_eq!(out["Entries"][3]["ErrorCode"], "NotAuthorizedForSource");
    let (code, _) = server.events_err("PutEvents", json!({"Entries": []})).await;
    assert_eq!(code, "ValidationException");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_transforms_retries_and_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (flaky, flaky_url) = Receiver::start().await;
    let (broken, broken_url) = Receiver::start().await;
    let (refusing, refusing_url) = Receiver::start().await;
    flaky.queue(&[500, 503]);
    broken.always(Some(500));
    refusing.always(Some(400));

    server
        .events("PutRule", json!({"Name": "orders", "EventPattern": r#"{"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}"#}))
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "orders", "Targets": [
                {"Id": "chat", "Arn": format!("{flaky_url}/hook"),
                 "HttpParameters": {"HeaderParameters": {"x-team": "ops"}, "QueryStringParameters": {"q": "1"}},
                 "InputTransformer": {
                    "InputPathsMap": {"id": "$.detail.id", "total": "$.detail.total"},
                    "InputTemplate": "{\"text\": \"Order <id> totals <total> (<aws.events.rule-name>)\"}"}},
                {"Id": "broken", "Arn": broken_url, "RetryPolicy": {"MaximumRetryAttempts": 2}},
                {"Id": "refusing", "Arn": refusing_url},
            ]}),
        )
        .await;

    let out = server
        .events(
            "PutEvents",
            json!({"Entries": [entry("shop", json!({"id": "A-1", "total": 250})), entry("shop", json!({"id": "A-2", "total": 5}))]}),
        )
        .await;
    assert_eq!(out["FailedEntryCount"], 0);
    let event_id = out["Entries"][0]["EventId"]
        .as_str()
        .expect("id")
        .to_owned();

    // Two failures, then success: three requests, the last accepted.
    eventually(&clock, 5_000, "the flaky receiver's third request", || {
        flaky.seen().len() >= 3
    })
    .await;
    let seen = flaky.seen();
    for r in &seen {
        assert_eq!(r.body, r#"{"text": "Order A-1 totals 250 (orders)"}"#);
        assert_eq!(r.uri, "/hook?q=1");
        assert_eq!(
            r.headers.get("x-team").map(|v| v.as_bytes()),
            Some(b"ops".as_slice())
        );
        assert_eq!(
            r.headers.get("content-type").map(|v| v.as_bytes()),
            Some(b"application/json".as_slice())
        );
    }

    // The store agrees: dead letters for the two others, with reasons.
    let store = open_store(dir.path()).await;
    // Both dead letters written, and the chat delivery marked (the receiver
    // answers before the worker records the outcome).
    let mut letters = Vec::new();
    for _ in 0..1500 {
        letters = store.dead_letters(10).await.expect("dead letters");
        let recent = store.recent_deliveries(10).await.expect("deliveries");
        let chat_done = recent
            .iter()
            .any(|d| d.target.id == "chat" && d.status == "DELIVERED");
        if letters.len() >= 2 && chat_done {
            break;
        }
        clock.advance(5_000);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 2, "{letters:?}");
    let broken_letter = letters
        .iter()
        .find(|l| l.target_id == "broken")
        .expect("broken");
    assert_eq!(broken_letter.attempts, 3, "one attempt and two retries");
    assert_eq!(broken_letter.event_id, event_id);
    assert!(
        broken_letter.reason.contains("500"),
        "{}",
        broken_letter.reason
    );
    assert_eq!(broken.seen().len(), 3);
    let refused = letters
        .iter()
        .find(|l| l.target_id == "refusing")
        .expect("refusing");
    assert_eq!(refused.attempts, 1, "a 400 is not retried");
    assert_eq!(refusing.seen().len(), 1);
    // The event that did not match went nowhere.
    assert!(flaky.seen().iter().all(|r| !r.body.contains("A-2")));
    let delivered = store.recent_deliveries(10).await.expect("deliveries");
    let chat = delivered
        .iter()
        .find(|d| d.target.id == "chat")
        .expect("chat");
    assert_eq!(chat.status, "DELIVERED");
    assert_eq!(chat.attempts, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_destinations_authenticate_and_keep_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (receiver, url) = Receiver::start().await;

    let conn = server
        .events(
            "CreateConnection",
            json!({"Name": "chat", "AuthorizationType": "API_KEY", "AuthParameters": {
                "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "s3cr3t-key"},
                "InvocationHttpParameters": {"HeaderParameters": [
                    {"Key": "x-plain", "Value": "visible", "IsValueSecret": false},
                    {"Key": "x-hidden", "Value": "hidden-value", "IsValueSecret": true}]}}}),
        )
        .await;
    assert_eq!(conn["ConnectionState"], "AUTHORIZED");
    let conn_arn = conn["ConnectionArn"].as_str().expect("arn").to_owned();
    let basic = server
        .events(
            "CreateConnection",
            json!({"Name": "basic", "AuthorizationType": "BASIC", "AuthParameters": {
                "BasicAuthParameters": {"Username": "bot", "Password": "pa55"}}}),
        )
        .await;
    let (code, _) = server
        .events_err("CreateConnection", json!({"Name": "chat", "AuthorizationType": "BASIC", "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": "p"}}}))
        .await;
    assert_eq!(code, "ResourceAlreadyExistsException");

    let described = server
        .events("DescribeConnection", json!({"Name": "chat"}))
        .await;
    let text = described.to_string();
    assert!(
        !text.contains("s3cr3t-key") && !text.contains("hidden-value"),
        "{text}"
    );
    assert_eq!(
        described["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyName"],
        "x-api-key"
    );
    assert!(text.contains("visible"));
    // Encrypted at rest: the database file does not hold the secret.
    let db = std::fs::read(dir.path().join("gantry.db")).expect("db");
    let wal = std::fs::read(dir.path().join("gantry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(10).any(|w| w == b"s3cr3t-key"),
            "secret stored in clear"
        );
    }

    let dest = server
        .events(
            "CreateApiDestination",
            json!({"Name": "notify", "ConnectionArn": conn_arn, "InvocationEndpoint": format!("{url}/items/*"), "HttpMethod": "PUT"}),
        )
        .await;
    let dest_arn = dest["ApiDestinationArn"].as_str().expect("arn").to_owned();
    let basic_dest = server
        .events(
            "CreateApiDestination",
            json!({"Name": "basic-dest", "ConnectionArn": basic["ConnectionArn"], "InvocationEndpoint": format!("{url}/basic"), "HttpMethod": "POST"}),
        )
        .await;
    let described = server
        .events("DescribeApiDestination", json!({"Name": "notify"}))
        .await;
    assert_eq!(described["HttpMethod"], "PUT");
    assert_eq!(described["ConnectionArn"], conn_arn);
    let (code, _) = server
        .events_err("DeleteConnection", json!({"Name": "chat"}))
        .await;
    assert_eq!(code, "ConcurrentModificationException");

    server
        .events(
            "PutRule",
            json!({"Name": "r", "EventPattern": r#"{"source": ["shop"]}"#}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "r", "Targets": [
                {"Id": "d", "Arn": dest_arn, "HttpParameters": {"PathParameterValues": ["42"]}, "InputPath": "$.detail"},
                {"Id": "b", "Arn": basic_dest["ApiDestinationArn"], "Input": "{\"fixed\": true}"},
            ]}),
        )
        .await;
    server
        .events(
            "PutEvents",
            json!({"Entries": [entry("shop", json!({"n": 1}))]}),
        )
        .await;
    eventually(&clock, 1_000, "two API destination calls", || {
        receiver.seen().len() >= 2
    })
    .await;
    let seen = receiver.seen();
    let put = seen.iter().find(|r| r.uri == "/items/42").expect("the PUT");
    assert_eq!(put.body, r#"{"n":1}"#);
    assert_eq!(
        put.headers.get("x-api-key").map(|v| v.as_bytes()),
        Some(b"s3cr3t-key".as_slice())
    );
    assert_eq!(
        put.headers.get("x-hidden").map(|v| v.as_bytes()),
        Some(b"hidden-value".as_slice())
    );
    let post = seen.iter().find(|r| r.uri == "/basic").expect("the POST");
    assert_eq!(post.body, r#"{"fixed": true}"#);
    // base64("bot:pa55")
    assert_eq!(
        post.headers.get("authorization").map(|v| v.as_bytes()),
        Some(b"Basic Ym90OnBhNTU=".as_slice())
    );

    server
        .events("DeleteApiDestination", json!({"Name": "notify"}))
        .await;
    let (code, _) = server
        .events_err("DescribeApiDestination", json!({"Name": "notify"}))
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    server
        .events("DeleteConnection", json!({"Name": "chat"}))
        .await;
    let (code, _) = server
        .events_err("DescribeConnection", json!({"Name": "chat"}))
        .await;
    assert_eq!(code, "ResourceNotFoundException");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_on_the_injected_clock_and_catch_up_once_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (receiver, url) = Receiver::start().await;
    server
        .events(
            "PutRule",
            json!({"Name": "tick", "ScheduleExpression": "rate(1 minute)"}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "tick", "Targets": [{"Id": "r", "Arn": url}]}),
        )
        .await;
    // Nothing before a minute has passed.
    clock.advance(59_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 0);
    clock.advance(1_000);
    eventually(&clock, 0, "the first fire", || !receiver.seen().is_empty()).await;
    let first: Value = serde_json::from_str(&receiver.seen()[0].body).expect("json");
    assert_eq!(first["detail-type"], "Scheduled Event");
    assert_eq!(first["source"], "aws.events");
    assert_eq!(first["time"], "2024-05-01T12:01:00Z");
    assert_eq!(
        first["resources"][0],
        "arn:aws:events:us-east-1:000000000000:rule/tick"
    );
    // Time stands still: no second fire.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 1);
    server.stop().await;

    // Ten minutes pass while the server is down: one catch-up fire, for 12:11.
    clock.advance(10 * 60_000);
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    eventually(&clock, 0, "the catch-up fire", || {
        receiver.seen().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "missed fires collapse into one");
    let catch_up: Value = serde_json::from_str(&seen[1].body).expect("json");
    assert_eq!(catch_up["time"], "2024-05-01T12:11:00Z");
    // And the schedule goes on from there.
    clock.advance(60_000);
    eventually(&clock, 0, "the next fire", || receiver.seen().len() >= 3).await;
    let next: Value = serde_json::from_str(&receiver.seen()[2].body).expect("json");
    assert_eq!(next["time"], "2024-05-01T12:12:00Z");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_are_delivered_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (receiver, url) = Receiver::start().await;
    receiver.always(Some(503));
    server
        .events(
            "PutRule",
            json!({"Name": "r", "EventPattern": r#"{"source": ["shop"]}"#}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "r", "Targets": [{"Id": "t", "Arn": url}]}),
        )
        .await;
    let out = server
        .events(
            "PutEvents",
            json!({"Entries": [entry("shop", json!({"k": "v"}))]}),
        )
        .await;
    let id = out["Entries"][0]["EventId"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually(&clock, 0, "a first failed attempt", || {
        !receiver.seen().is_empty()
    })
    .await;
    server.stop().await;

    let store = open_store(dir.path()).await;
    let pending = store.recent_deliveries(10).await.expect("deliveries");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, "PENDING");
    assert_eq!(pending[0].event_id, id);
    store.close().await;

    receiver.always(None);
    let before = receiver.seen().len();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    eventually(&clock, 2_000, "delivery after the restart", || {
        receiver.seen().len() > before
    })
    .await;
    let last: Value =
        serde_json::from_str(&receiver.seen().last().expect("one").body).expect("json");
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["detail"]["k"], "v");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_emits_state_and_phase_events_that_rules_deliver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (states, states_url) = Receiver::start().await;
    let (phases, phases_url) = Receiver::start().await;
    server
        .events(
            "PutRule",
            json!({"Name": "build-done", "EventPattern": r#"{"source": ["gantry.codebuild"], "detail-type": ["CodeBuild Build State Change"], "detail": {"build-status": ["SUCCEEDED", "FAILED"]}}"#}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "build-done", "Targets": [{"Id": "chat", "Arn": states_url,
                "InputTransformer": {"InputPathsMap": {"p": "$.detail.project-name", "s": "$.detail.build-status"},
                                     "InputTemplate": "{\"text\": \"Build of <p>: <s>\"}"}}]}),
        )
        .await;
    server
        .events(
            "PutRule",
            json!({"Name": "phases", "EventPattern": r#"{"source": ["gantry.codebuild"], "detail-type": ["CodeBuild Build Phase Change"]}"#}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "phases", "Targets": [{"Id": "all", "Arn": phases_url}]}),
        )
        .await;

    let buildspec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n";
    server
        .codebuild("CreateProject", inline_project("web", buildspec))
        .await;
    let started = server
        .codebuild("StartBuild", json!({"projectName": "web"}))
        .await;
    let build_id = started["build"]["id"].as_str().expect("id").to_owned();
    eventually(&clock, 0, "the SUCCEEDED state change", || {
        !states.seen().is_empty()
    })
    .await;
    assert_eq!(
        states.seen()[0].body,
        r#"{"text": "Build of web: SUCCEEDED"}"#
    );
    eventually(&clock, 0, "phase changes", || {
        phases
            .seen()
            .iter()
            .any(|r| r.body.contains("\"completed-phase\":\"BUILD\""))
    })
    .await;
    let build_phase: Value = phases
        .seen()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).expect("json"))
        .find(|e| e["detail"]["completed-phase"] == "BUILD")
        .expect("BUILD phase");
    assert_eq!(build_phase["source"], "gantry.codebuild");
    assert_eq!(build_phase["detail"]["completed-phase-status"], "SUCCEEDED");
    assert_eq!(build_phase["detail"]["project-name"], "web");
    let build_arn = format!("arn:aws:codebuild:us-east-1:000000000000:build/{build_id}");
    assert_eq!(build_phase["detail"]["build-id"], build_arn.as_str());
    assert_eq!(build_phase["resources"][0], build_arn.as_str());
    assert_eq!(build_phase["account"], "000000000000");
    assert_eq!(build_phase["region"], "us-east-1");
    server.stop().await;
}

/// boto3 drives the EventBridge API (see clients/events.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_eventbridge() {
    let python = match std::env::var_os("GANTRY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            assert!(
                std::env::var("GANTRY_REQUIRE_AWS_CLIENTS").as_deref() != Ok("1"),
                "GANTRY_REQUIRE_AWS_CLIENTS=1 but GANTRY_TEST_PYTHON is not set"
            );
            eprintln!("SKIPPED: set GANTRY_TEST_PYTHON to a python3 with boto3");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let (receiver, url) = Receiver::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/clients/events.py");
    let endpoint = server.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&endpoint)
            .arg(&url)
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "events.py failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("events: ok"), "{stdout}");
    // The event boto3 put reached the receiver.
    eventually(&clock, 0, "boto3's event", || {
        receiver
            .seen()
            .iter()
            .any(|r| r.body.contains("from-boto3"))
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_targets_start_executions_and_pipeline_targets_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let server = EventsServer::start(dir.path(), clock.clone()).await;
    let definition = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let machine = server
        .states(
            "CreateStateMachine",
            json!({"name": "on-order", "definition": definition.to_string(),
                   "roleArn": "arn:aws:iam::000000000000:role/sfn"}),
        )
        .await["stateMachineArn"]
        .as_str()
        .expect("arn")
        .to_owned();
    server
        .events(
            "PutRule",
            json!({"Name": "r", "EventPattern": r#"{"source": ["shop"]}"#}),
        )
        .await;
    server
        .events(
            "PutTargets",
            json!({"Rule": "r", "Targets": [
                {"Id": "sm", "Arn": machine, "InputPath": "$.detail"},
                {"Id": "pipe", "Arn": "arn:aws:codepipeline:us-east-1:000000000000:deploy"},
            ]}),
        )
        .await;
    server
        .events(
            "PutEvents",
            json!({"Entries": [entry("shop", json!({"order": 7}))]}),
        )
        .await;
    let mut executions = Value::Null;
    for _ in 0..1500 {
        executions = server
            .states("ListExecutions", json!({"stateMachineArn": machine}))
            .await;
        if executions["executions"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arn = executions["executions"][0]["executionArn"]
        .as_str()
        .unwrap_or_else(|| panic!("no execution: {executions}"))
        .to_owned();
    let described = server
        .states("DescribeExecution", json!({"executionArn": arn}))
        .await;
    assert_eq!(described["input"], r#"{"order":7}"#);

    let store = open_store(dir.path()).await;
    let mut letters = Vec::new();
    for _ in 0..1500 {
        letters = store.dead_letters(10).await.expect("letters");
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].target_id, "pipe");
    // No pipeline `deploy` exists: its start is refused, not retried.
    assert!(
        letters[0].reason.contains("PipelineNotFoundException"),
        "{}",
        letters[0].reason
    );
    server.stop().await;
}

/// Two servers on one PostgreSQL database: both serve the API; the elected
/// one (the first up) fires schedules and delivers, once; when it dies, the
/// other takes over once the lease runs out; when that one stops cleanly, a
/// restarted first server takes over at its next renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_fire_a_schedule_once_and_the_survivor_takes_over() {
    use gantry_store::LeaderStore;
    let Some(crate::harness::Db::Postgres(db)) = crate::harness::Db::postgres(
        "two_servers_on_postgres_fire_a_schedule_once_and_the_survivor_takes_over",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let clock = TestClock::new();
    let url = db.url.clone();
    let shared = move |config: &mut Config| {
        config.database = Some(gantry_server::Database::Postgres(url.clone()));
        config.leader_election = Some(gantry_server::LeaderElection {
            ttl: Duration::from_secs(3),
            renew_every: Duration::from_millis(500),
        });
    };
    let a = EventsServer::start_with(&a_dir, clock.clone(), shared.clone()).await;
    // The servers share the key file, as servers sharing a database must.
    std::fs::create_dir_all(&b_dir).expect("mkdir");
    std::fs::copy(a_dir.join("secret.key"), b_dir.join("secret.key")).expect("copy key");
    let key = gantry_store::MasterKey::load_or_create(&a_dir.join("secret.key")).expect("key");
    let store = gantry_store::PgStore::connect(&db.url, key)
        .await
        .expect("store");
    // A leads before B starts.
    for _ in 0..1500 {
        let now = gantry_store::now_ms();
        if store
            .lease("singletons")
            .await
            .expect("lease")
            .is_some_and(|l| l.expires_ms > now)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = EventsServer::start_with(&b_dir, clock.clone(), shared.clone()).await;

    // Rules put through B, which does not lead, are seen by A's scheduler.
    let (receiver, target) = Receiver::start().await;
    // A slow target: a second delivery worker (were B's running) would
    // take the same pending delivery while the first is in flight.
    receiver.delay(Duration::from_millis(400));
    b.events(
        "PutRule",
        json!({"Name": "tick", "ScheduleExpression": "rate(1 minute)"}),
    )
    .await;
    b.events(
        "PutTargets",
        json!({"Rule": "tick", "Targets": [{"Id": "r", "Arn": target}]}),
    )
    .await;
    let listed = a.events("ListRules", json!({})).await;
    assert_eq!(listed["Rules"][0]["Name"], "tick", "both serve the API");

    clock.advance(60_000);
    eventually(&clock, 0, "the first fire", || !receiver.seen().is_empty()).await;
    // Both servers run, yet the fire is delivered once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.seen().len(), 1, "one delivery with two servers up");
    let first: Value = serde_json::from_str(&receiver.seen()[0].body).expect("json");
    assert_eq!(first["time"], "2024-05-01T12:01:00Z");

    // The leader dies; once its lease runs out B takes it over and fires
    // the next one.
    a.kill().await;
    clock.advance(60_000);
    eventually(&clock, 0, "the survivor's fire", || {
        receiver.seen().len() >= 2
    })
    .await;
    let next: Value = serde_json::from_str(&receiver.seen()[1].body).expect("json");
    assert_eq!(next["time"], "2024-05-01T12:02:00Z");
    let lease = store
        .lease("singletons")
        .await
        .expect("lease")
        .expect("held");
    assert_eq!(lease.term, 2, "the lease changed hands once");

    // A comes back and waits; B stops cleanly, giving the lease up, and A
    // takes over.
    let a = EventsServer::start_with(&a_dir, clock.clone(), shared).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.seen().len(),
        2,
        "nothing fires twice while both run"
    );
    b.stop().await;
    clock.advance(60_000);
    eventually(&clock, 0, "the restarted server's fire", || {
        receiver.seen().len() >= 3
    })
    .await;
    let last: Value = serde_json::from_str(&receiver.seen()[2].body).expect("json");
    assert_eq!(last["time"], "2024-05-01T12:03:00Z");
    let lease = store
        .lease("singletons")
        .await
        .expect("lease")
        .expect("held");
    assert_eq!(lease.term, 3);
    a.stop().await;
    store.close().await;
    db.drop_database().await.expect("drop test database");
}
