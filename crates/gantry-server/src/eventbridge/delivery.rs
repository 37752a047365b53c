//! The delivery worker: reads due outbox rows, delivers each to its target,
//! marks it DELIVERED, or schedules a retry with exponential backoff, or
//! writes a dead letter once the target's RetryPolicy is spent.
//!
//! At-least-once: a row is marked only after its attempt ended, so a crash
//! in between delivers it again on the next start.

use std::sync::Arc;

use base64::Engine;
use gantry_events::{InputTransformer, RuleContext};
use gantry_store::{DeliveryRecord, Store, StoreError};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::bus::{EventBus, rule_arn};
use super::invoke::InvokeError;

/// AWS's RetryPolicy defaults.
const DEFAULT_MAX_RETRIES: u32 = 185;
const DEFAULT_MAX_AGE_SECONDS: i64 = 86_400;
/// How many due rows one pass takes.
const BATCH: u32 = 64;

/// What a target is, from its `Arn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// Gantry's extension: a plain URL; the input is POSTed.
    Url(String),
    /// `arn:aws:events:<region>:<account>:api-destination/<name>/<id>`.
    ApiDestination(String),
    /// `arn:aws:codepipeline:<region>:<account>:<name>`.
    Pipeline(String),
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    StateMachine(String),
}

impl TargetKind {
    /// Classifies an `Arn`; `Err` says what is supported.
    pub fn parse(arn: &str) -> Result<TargetKind, String> {
        if arn.starts_with("http://") || arn.starts_with("https://") {
            return reqwest::Url::parse(arn)
                .map(|_| TargetKind::Url(arn.to_owned()))
                .map_err(|e| format!("target URL {arn} is not valid: {e}"));
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", _, "events", _, _, rest] => match rest.strip_prefix("api-destination/") {
                Some(path) if !path.is_empty() => Ok(TargetKind::ApiDestination(
                    path.split('/').next().unwrap_or_default().to_owned(),
                )),
                _ => Err(unsupported(arn)),
            },
            ["arn", _, "codepipeline", _, _, name] if !name.is_empty() => {
                Ok(TargetKind::Pipeline((*name).to_owned()))
            }
            ["arn", _, "states", _, _, rest] if rest.starts_with("stateMachine:") => {
                Ok(TargetKind::StateMachine(arn.to_owned()))
            }
            _ => Err(unsupported(arn)),
        }
    }
}

fn unsupported(arn: &str) -> String {
    format!(
        "target {arn} is not supported: use an http:// or https:// URL, an API destination ARN, \
         a CodePipeline pipeline ARN or a Step Functions state machine ARN"
    )
}

/// Why one attempt failed.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
}

impl From<InvokeError> for Failure {
    fn from(e: InvokeError) -> Failure {
        Failure {
            message: e.message,
            retryable: e.retryable,
        }
    }
}

fn permanent(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        retryable: false,
    }
}

/// The target's input for an event: `Input`, `InputPath`,
/// `InputTransformer`, or the whole event.
pub(crate) fn render_input(
    target: &Value,
    event: &Value,
    rule_name: &str,
    rule_arn: &str,
) -> Result<String, String> {
    if let Some(input) = target.get("Input").and_then(Value::as_str) {
        return Ok(input.to_owned());
    }
    if let Some(path) = target.get("InputPath").and_then(Value::as_str) {
        // The transformer's path language, read back out of a one-slot template.
        let t = InputTransformer::new([("v", path)], r#"{"v": <v>}"#)
            .map_err(|e| format!("InputPath: {e}"))?;
        let text = t
            .render(event, &RuleContext::default())
            .map_err(|e| format!("InputPath: {e}"))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("InputPath: {e}"))?;
        return Ok(value.get("v").cloned().unwrap_or(Value::Null).to_string());
    }
    if let Some(tr) = target.get("InputTransformer") {
        let t = compile_transformer(tr)?;
        let ingestion = event
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ctx = RuleContext {
            rule_name,
            rule_arn,
            ingestion_time: ingestion,
        };
        return t
            .render(event, &ctx)
            .map_err(|e| format!("InputTransformer: {e}"));
    }
    Ok(event.to_string())
}

/// Compiles a target's `InputTransformer` member.
pub(crate) fn compile_transformer(tr: &Value) -> Result<InputTransformer, String> {
    let template = tr
        .get("InputTemplate")
        .and_then(Value::as_str)
        .ok_or("InputTransformer.InputTemplate is required and must be a string")?;
    let mut paths = Vec::new();
    if let Some(map) = tr.get("InputPathsMap") {
        let map = map
            .as_object()
            .ok_or("InputTransformer.InputPathsMap must be an object of strings")?;
        for (k, v) in map {
            let v = v.as_str().ok_or_else(|| {
                format!("InputTransformer.InputPathsMap.{k} must be a string (a JSON path)")
            })?;
            paths.push((k.clone(), v.to_owned()));
        }
    }
    InputTransformer::new(paths, template).map_err(|e| format!("InputTransformer: {e}"))
}

/// Runs until `stop` turns true.
pub(crate) async fn run<S: Store>(bus: Arc<EventBus<S>>, mut stop: watch::Receiver<bool>) {
    let poll = bus.config.events.poll_interval;
    loop {
        if *stop.borrow() {
            return;
        }
        match bus.store.due_deliveries(bus.now_ms(), BATCH).await {
            Ok(due) if !due.is_empty() => {
                let full = due.len() as u32 == BATCH;
                let mut set = JoinSet::new();
                for d in due {
                    let bus = bus.clone();
                    set.spawn(async move { attempt(&bus, d).await });
                }
                tokio::select! {
                    _ = async { while set.join_next().await.is_some() {} } => {}
                    _ = stop.changed() => return,
                }
                if full {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reading due deliveries failed"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = bus.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One attempt at one delivery, and its bookkeeping.
async fn attempt<S: Store>(bus: &EventBus<S>, d: DeliveryRecord) {
    let outcome = deliver(bus, &d).await;
    let now = bus.now_ms();
    let attempts = d.attempts + 1;
    let result: Result<(), StoreError> = match outcome {
        Ok(()) => bus.store.complete_delivery(d.id, now).await,
        Err(f) => {
            let policy = d.target.target.get("RetryPolicy");
            let max_retries = policy
                .and_then(|p| p.get("MaximumRetryAttempts"))
                .and_then(Value::as_u64)
                .map_or(DEFAULT_MAX_RETRIES, |n| n.min(u64::from(u32::MAX)) as u32);
            let max_age_ms = policy
                .and_then(|p| p.get("MaximumEventAgeInSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_MAX_AGE_SECONDS)
                .saturating_mul(1000);
            let next = now + backoff_ms(bus, attempts);
            let reason = if !f.retryable {
                Some(f.message.clone())
            } else if attempts > max_retries {
                Some(format!(
                    "{} (gave up after {attempts} attempts: MaximumRetryAttempts is {max_retries})",
                    f.message
                ))
            } else if next - d.created_ms > max_age_ms {
                Some(format!(
                    "{} (gave up: the event would be older than MaximumEventAgeInSeconds, {} s)",
                    f.message,
                    max_age_ms / 1000
                ))
            } else {
                None
            };
            tracing::warn!(delivery = d.id, rule = %d.rule, target = %d.target.id, error = %f.message, "delivery failed");
            match reason {
                Some(reason) => bus.store.dead_letter(d.id, attempts, &reason, now).await,
                None => {
                    bus.store
                        .retry_delivery(d.id, attempts, next, &f.message)
                        .await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::error!(delivery = d.id, error = %e, "recording a delivery's outcome failed");
    }
}

/// `retry_base × 2^(attempts−1)`, capped at `max_backoff`.
fn backoff_ms<S: Store>(bus: &EventBus<S>, attempts: u32) -> i64 {
    let base = bus.config.events.retry_base.as_millis() as i64;
    let cap = bus.config.events.max_backoff.as_millis() as i64;
    let factor = 1i64 << attempts.saturating_sub(1).min(30);
    base.saturating_mul(factor).min(cap).max(1)
}

async fn deliver<S: Store>(bus: &EventBus<S>, d: &DeliveryRecord) -> Result<(), Failure> {
    let arn = rule_arn(&bus.config, &d.bus, &d.rule);
    let input = render_input(&d.target.target, &d.event, &d.rule, &arn).map_err(permanent)?;
    match TargetKind::parse(&d.target.arn).map_err(permanent)? {
        TargetKind::Url(url) => {
            let request = bus
                .http
                .post(url)
                .header("content-type", "application/json");
            let request = with_http_parameters(request, &d.target.target);
            send(request.body(input)).await
        }
        TargetKind::ApiDestination(name) => {
            api_destination(bus, &name, &d.target.target, input).await
        }
        TargetKind::Pipeline(name) => bus
            .invoker()
            .start_pipeline(&name, &input)
            .await
            .map(|_| ())
            .map_err(Failure::from),
        TargetKind::StateMachine(arn) => bus
            .invoker()
            .start_execution(&arn, &input, &execution_name(d))
            .await
            .map(|_| ())
            .map_err(Failure::from),
    }
}

/// The name of the execution a delivery starts: derived from the event,
/// the rule and the target, so every attempt of one delivery names the
/// same execution and a redelivery cannot start a second one.
fn execution_name(d: &DeliveryRecord) -> String {
    let key = format!("{}\n{}\n{}\n{}", d.event_id, d.bus, d.rule, d.target.id);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
}

/// The target's `HttpParameters`: headers and query string.
fn with_http_parameters(
    mut request: reqwest::RequestBuilder,
    target: &Value,
) -> reqwest::RequestBuilder {
    let Some(params) = target.get("HttpParameters") else {
        return request;
    };
    if let Some(headers) = params.get("HeaderParameters").and_then(Value::as_object) {
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                request = request.header(k.as_str(), v);
            }
        }
    }
    if let Some(query) = params
        .get("QueryStringParameters")
        .and_then(Value::as_object)
    {
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
            .collect();
        request = request.query(&pairs);
    }
    request
}

async fn send(request: reqwest::RequestBuilder) -> Result<(), Failure> {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                // As EventBridge does for API destinations: 429 and 5xx are
                // retried, any other answer is final.
                Err(Failure {
                    message: format!("the endpoint answered {status}"),
                    retryable: status.as_u16() == 429 || status.is_server_error(),
                })
            }
        }
        Err(e) => Err(Failure {
            message: format!("the request failed: {}", without_url(&e)),
            retryable: true,
        }),
    }
}

/// A reqwest error's text without the URL, which may carry a secret query.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<endpoint>");
    }
    text
}

async fn api_destination<S: Store>(
    bus: &EventBus<S>,
    name: &str,
    target: &Value,
    input: String,
) -> Result<(), Failure> {
    let destination = match bus.store.get_api_destination(name).await {
        Ok(d) => d,
        Err(StoreError::NotFound) => {
            return Err(permanent(format!("API destination {name} does not exist")));
        }
        Err(e) => return Err(store_failure(e)),
    };
    let secret = match bus.store.connection_secret(&destination.connection).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => {
            return Err(permanent(format!(
                "connection {} does not exist",
                destination.connection
            )));
        }
        Err(e) => return Err(store_failure(e)),
    };
    let text = |key: &str| {
        destination
            .destination
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut endpoint = text("InvocationEndpoint");
    // PathParameterValues fill the endpoint's `*` in order.
    if let Some(values) = target
        .pointer("/HttpParameters/PathParameterValues")
        .and_then(Value::as_array)
    {
        for v in values.iter().filter_map(Value::as_str) {
            endpoint = endpoint.replacen('*', v, 1);
        }
    }
    let method = reqwest::Method::from_bytes(text("HttpMethod").as_bytes())
        .map_err(|_| permanent(format!("API destination {name} has an invalid HttpMethod")))?;
    let sends_body = !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD);
    let mut request = bus
        .http
        .request(method, endpoint)
        .header("content-type", "application/json");
    request = with_http_parameters(request, target);
    request = with_connection_auth(request, &secret);
    if sends_body {
        request = request.body(input);
    }
    send(request).await
}

/// The connection's authorization and its invocation parameters.
fn with_connection_auth(
    mut request: reqwest::RequestBuilder,
    secret: &Value,
) -> reqwest::RequestBuilder {
    if let Some(basic) = secret.get("BasicAuthParameters") {
        let user = basic
            .get("Username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let pass = basic
            .get("Password")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request = request.header("authorization", format!("Basic {token}"));
    }
    if let Some(key) = secret.get("ApiKeyAuthParameters") {
        let name = key
            .get("ApiKeyName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = key
            .get("ApiKeyValue")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !name.is_empty() {
            request = request.header(name, value);
        }
    }
    if let Some(params) = secret.get("InvocationHttpParameters") {
        let pairs = |member: &str| -> Vec<(String, String)> {
            params
                .get(member)
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|p| {
                            Some((
                                p.get("Key")?.as_str()?.to_owned(),
                                p.get("Value")?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        for (k, v) in pairs("HeaderParameters") {
            request = request.header(k, v);
        }
        let query = pairs("QueryStringParameters");
        if !query.is_empty() {
            request = request.query(&query);
        }
    }
    request
}

fn store_failure(e: StoreError) -> Failure {
    Failure {
        message: format!("the store failed: {e}"),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delivery(id: i64, event_id: &str, target: &str) -> DeliveryRecord {
        DeliveryRecord {
            id,
            event_id: event_id.into(),
            event: json!({}),
            bus: "default".into(),
            rule: "r".into(),
            target: gantry_store::TargetRecord {
                id: target.into(),
                arn: "arn:aws:states:us-east-1:000000000000:stateMachine:flow".into(),
                target: json!({}),
            },
            status: "PENDING".into(),
            attempts: 0,
            next_attempt_ms: 0,
            created_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn every_attempt_of_a_delivery_names_the_same_execution() {
        let first = execution_name(&delivery(1, "ev-1", "sm"));
        assert_eq!(first, execution_name(&delivery(1, "ev-1", "sm")));
        assert_ne!(first, execution_name(&delivery(2, "ev-2", "sm")));
        assert_ne!(first, execution_name(&delivery(3, "ev-1", "other")));
        // A valid Step Functions execution name: 1-80 of [A-Za-z0-9-_].
        assert!(first.len() <= 80);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn target_kinds() {
        assert_eq!(
            TargetKind::parse("https://hooks.example/x"),
            Ok(TargetKind::Url("https://hooks.example/x".into()))
        );
        assert_eq!(
            TargetKind::parse("arn:aws:events:us-east-1:000000000000:api-destination/slack/1234"),
            Ok(TargetKind::ApiDestination("slack".into()))
        );
        assert_eq!(
            TargetKind::parse("arn:aws:codepipeline:us-east-1:000000000000:deploy"),
            Ok(TargetKind::Pipeline("deploy".into()))
        );
        let sm = "arn:aws:states:us-east-1:000000000000:stateMachine:flow";
        assert_eq!(
            TargetKind::parse(sm),
            Ok(TargetKind::StateMachine(sm.into()))
        );
        assert!(TargetKind::parse("arn:aws:sqs:us-east-1:000000000000:q").is_err());
        assert!(TargetKind::parse("ftp://x").is_err());
        assert!(TargetKind::parse("http://").is_err());
    }

    #[test]
    fn inputs() {
        let event =
            json!({"source": "s", "detail": {"a": 1, "name": "x"}, "time": "2024-01-01T00:00:00Z"});
        assert_eq!(
            render_input(&json!({}), &event, "r", "arn").as_deref(),
            Ok(event.to_string().as_str())
        );
        assert_eq!(
            render_input(&json!({"Input": "{\"k\":2}"}), &event, "r", "arn").as_deref(),
            Ok("{\"k\":2}")
        );
        assert_eq!(
            render_input(&json!({"InputPath": "$.detail.a"}), &event, "r", "arn").as_deref(),
            Ok("1")
        );
        assert_eq!(
            render_input(&json!({"InputPath": "$.detail"}), &event, "r", "arn").as_deref(),
            Ok(r#"{"a":1,"name":"x"}"#)
        );
        let t = json!({"InputTransformer": {"InputPathsMap": {"n": "$.detail.name"}, "InputTemplate": "{\"text\": \"<n> by <aws.events.rule-name>\"}"}});
        assert_eq!(
            render_input(&t, &event, "r", "arn").as_deref(),
            Ok(r#"{"text": "x by r"}"#)
        );
        let bad = json!({"InputTransformer": {"InputPathsMap": {"n": 3}, "InputTemplate": "x"}});
        assert!(
            render_input(&bad, &event, "r", "arn")
                .unwrap_err()
                .contains("InputPathsMap.n")
        );
    }
}
