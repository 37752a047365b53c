//! The Task resources Gantry provides.
//!
//! - `arn:aws:states:::http:invoke`: an HTTP or HTTPS call (see [`crate::outbound`]
//!   for the trust roots).
//! - `arn:aws:states:::codebuild:startBuild` and `.sync`: a build of a CodeBuild
//!   project through the server's own StartBuild; `.sync` completes when it ends.
//! - `<any>.waitForTaskToken`: the base resource is called (HTTP, CodeBuild; any
//!   other base is called by nobody) and the task completes by SendTaskSuccess /
//!   SendTaskFailure with `$$.Task.Token`.
//! - `arn:aws:states:::codepipeline:startPipelineExecution` (and its `aws-sdk:`
//!   spelling), with `.sync`: an execution through the server's own
//!   StartPipelineExecution; `.sync` completes when the execution ends.
//! - `arn:aws:states:::gantry:agent:runCommand` (and `.sync`, the same):
//!   shell commands on a remote agent with the labels asked for, queued as a
//!   `command` job; the task ends when they do (see [`run_agent_command`]).
//!
//! Parameters and results use the AWS SDK integrations' PascalCase member names.

use std::time::Duration;

use gantry_states::TaskError;
use gantry_store::{Store, StoreError};
use serde_json::{Map, Value, json};

use super::engine::Engine;

mod command;
pub(crate) use command::{is_command_job, run_agent_command};

/// The HTTP client tasks use.
pub(crate) type HttpClient = reqwest::Client;

/// How long an HTTP task may take (AWS's HTTP Task limit is 60 seconds).
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest HTTP response body read (Step Functions's payload limit is 256 KiB).
const HTTP_MAX_BODY: usize = 256 * 1024;
/// The handle of a callback task whose token went out (nothing else to follow).
pub(crate) const DELIVERED: &str = "delivered";
/// How often a `.sync` build or pipeline execution is checked.
const BUILD_POLL: Duration = Duration::from_millis(250);

/// A task to run.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub execution_arn: String,
    pub token: String,
    pub token_hash: String,
    pub resource: String,
    pub input: Value,
    /// The Task state's `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// What an earlier run of this task started (a build id), after a restart.
    pub handle: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    RequestResponse,
    Sync,
    Callback,
}

fn split_mode(resource: &str) -> (&str, Mode) {
    if let Some(base) = resource.strip_suffix(".waitForTaskToken") {
        (base, Mode::Callback)
    } else if let Some(base) = resource
        .strip_suffix(".sync:2")
        .or_else(|| resource.strip_suffix(".sync"))
    {
        (base, Mode::Sync)
    } else {
        (resource, Mode::RequestResponse)
    }
}

/// Runs a task. `None`: it completes by a callback.
pub(crate) async fn run<S: Store>(
    engine: &Engine<S>,
    task: &Task,
) -> Option<Result<Value, TaskError>> {
    let (base, mode) = split_mode(&task.resource);
    if mode == Mode::Callback && task.handle.is_some() {
        // The token went out before a restart; the task now waits for its callback only.
        return None;
    }
    let result = match base {
        "arn:aws:states:::http:invoke" if mode != Mode::Sync => {
            http_invoke(&engine.http, &task.input).await
        }
        "arn:aws:states:::codebuild:startBuild" => start_build(engine, task, mode).await,
        "arn:aws:states:::codepipeline:startPipelineExecution"
        | "arn:aws:states:::aws-sdk:codepipeline:startPipelineExecution" => {
            start_pipeline(engine, task, mode).await
        }
        "arn:aws:states:::gantry:agent:runCommand" => run_agent_command(engine, task).await,
        _ if mode == Mode::Callback => return None,
        other => Err(TaskError::new(
            "Gantry.UnsupportedResource",
            format!(
                "'{other}' is not a Task resource this server provides (http:invoke, codebuild:startBuild[.sync], codepipeline:startPipelineExecution[.sync], gantry:agent:runCommand[.sync], or any resource with .waitForTaskToken)"
            ),
        )),
    };
    match (mode, result) {
        (Mode::Callback, Ok(_)) => {
            if base == "arn:aws:states:::http:invoke" {
                // Recorded so that a restart does not send the token again.
                remember_handle(engine, task, DELIVERED).await;
            }
            None
        }
        (_, result) => Some(result),
    }
}

/// `codepipeline:startPipelineExecution` with StartPipelineExecution's
/// parameters (`Name`, `Variables`, `SourceRevisions`); the result is
/// `{"PipelineExecutionId": ...}` as the AWS SDK integration returns.
/// `.sync` (Gantry's extension: AWS offers no `.sync` for pipelines) waits
/// for the execution to end: Succeeded gives `{"PipelineExecution": ...}`
/// as GetPipelineExecution returns it; Failed, Stopped or Superseded fail
/// the task with `States.TaskFailed` and that execution as the cause.
async fn start_pipeline<S: Store>(
    engine: &Engine<S>,
    task: &Task,
    mode: Mode,
) -> Result<Value, TaskError> {
    let Some(app) = engine.app() else {
        return Err(TaskError::new(
            "States.Runtime",
            "the server is shutting down",
        ));
    };
    let name = task
        .input
        .get("Name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TaskError::new(
                "CodePipeline.ValidationException",
                "startPipelineExecution needs the parameter Name (the pipeline's name)",
            )
        })?
        .to_owned();
    let execution_id = match &task.handle {
        // Started before a restart: follow that execution rather than start another.
        Some(id) => id.clone(),
        None => {
            let input = serde_json::from_value::<crate::codepipeline::executions::StartInput>(
                camel_keys(&task.input),
            )
            .map_err(|e| {
                TaskError::new(
                    "CodePipeline.ValidationException",
                    format!("StartPipelineExecution parameters: {e}"),
                )
            })?;
            let actor = format!("states:{}", task.execution_arn);
            let started = crate::codepipeline::executions::start(&app, &actor, input)
                .await
                .map_err(|e| {
                    TaskError::new(
                        format!("CodePipeline.{}", e.error.code.as_str()),
                        e.error.message,
                    )
                })?;
            let id = started["pipelineExecutionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            remember_handle(engine, task, &id).await;
            if mode != Mode::Sync {
                return Ok(json!({"PipelineExecutionId": id}));
            }
            id
        }
    };
    if mode != Mode::Sync {
        return Ok(json!({"PipelineExecutionId": execution_id}));
    }
    loop {
        let input = serde_json::from_value::<crate::codepipeline::executions::GetInput>(json!({
            "pipelineName": name,
            "pipelineExecutionId": execution_id,
        }))
        .map_err(|e| TaskError::new("States.Runtime", e.to_string()))?;
        let got = crate::codepipeline::executions::get(&app, input)
            .await
            .map_err(|e| {
                TaskError::new(
                    format!("CodePipeline.{}", e.error.code.as_str()),
                    e.error.message,
                )
            })?;
        let execution = &got["pipelineExecution"];
        match execution["status"].as_str().unwrap_or_default() {
            "InProgress" | "Stopping" => tokio::time::sleep(BUILD_POLL).await,
            "Succeeded" => return Ok(json!({"PipelineExecution": pascal_keys(execution)})),
            _ => {
                return Err(TaskError::new(
                    "States.TaskFailed",
                    json!({"PipelineExecution": pascal_keys(execution)}).to_string(),
                ));
            }
        }
    }
}

/// Records what a task started (a build id, a pipeline execution id, or
/// that its token went out), so that after a restart the task follows it
/// instead of starting it again. A task whose token is gone (the execution
/// ended meanwhile) has nothing to record.
async fn remember_handle<S: Store>(engine: &Engine<S>, task: &Task, handle: &str) {
    match engine
        .store()
        .set_task_handle(&task.token_hash, handle)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => {
            tracing::warn!(execution = %task.execution_arn, %handle, error = %e, "could not record what a task started")
        }
    }
}

/// An error and its sources, so a TLS failure says why ("invalid peer
/// certificate: UnknownIssuer") rather than only "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn http_error(error: &str, cause: impl Into<String>) -> TaskError {
    TaskError::new(error, cause)
}

fn query_string(params: &Map<String, Value>) -> String {
    let mut pairs = Vec::new();
    for (k, v) in params {
        let values: Vec<String> = match v {
            Value::Array(items) => items.iter().map(value_text).collect(),
            other => vec![value_text(other)],
        };
        for value in values {
            pairs.push(format!(
                "{}={}",
                gantry_aws::uri_encode(k.as_bytes()),
                gantry_aws::uri_encode(value.as_bytes())
            ));
        }
    }
    pairs.join("&")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `arn:aws:states:::http:invoke`: `ApiEndpoint`, `Method`, optional `Headers`,
/// `QueryParameters`, `RequestBody`. The result is `{StatusCode, StatusText, Headers,
/// ResponseBody}` (the body parsed when it is JSON); a status outside 2xx fails the
/// task with `States.Http.StatusCode.<code>`, a connection problem with `States.Http.Socket`.
pub(crate) async fn http_invoke(client: &HttpClient, params: &Value) -> Result<Value, TaskError> {
    let runtime = |m: String| TaskError::new("States.Runtime", m);
    let endpoint = params
        .get("ApiEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime("http:invoke needs Parameters.ApiEndpoint (a URL string)".into()))?;
    let method = params
        .get("Method")
        .and_then(Value::as_str)
        .ok_or_else(|| runtime("http:invoke needs Parameters.Method (GET, POST, PUT, DELETE, PATCH, OPTIONS or HEAD)".into()))?;
    if !matches!(
        method,
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD"
    ) {
        return Err(runtime(format!(
            "Parameters.Method: '{method}' is not one of GET, POST, PUT, DELETE, PATCH, OPTIONS, HEAD"
        )));
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(runtime(format!(
            "Parameters.ApiEndpoint: '{endpoint}' is not an http:// or https:// URL"
        )));
    }
    let mut url = endpoint.to_owned();
    if let Some(q) = params.get("QueryParameters") {
        let Some(q) = q.as_object() else {
            return Err(runtime(
                "Parameters.QueryParameters must be an object".into(),
            ));
        };
        if !q.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query_string(q));
        }
    }
    let verb = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| runtime(format!("Parameters.Method: {e}")))?;
    let mut builder = client.request(verb, &url);
    let mut has_content_type = false;
    if let Some(h) = params.get("Headers") {
        let Some(h) = h.as_object() else {
            return Err(runtime("Parameters.Headers must be an object".into()));
        };
        for (k, v) in h {
            has_content_type |= k.eq_ignore_ascii_case("content-type");
            builder = builder.header(k.as_str(), value_text(v));
        }
    }
    let body = match params.get("RequestBody") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            if !has_content_type {
                builder = builder.header("content-type", "application/json");
            }
            other.to_string()
        }
    };
    let request = builder
        .body(body)
        .build()
        .map_err(|e| runtime(format!("http:invoke request: {e}")))?;
    let call = async {
        let mut response = client.execute(request).await.map_err(|e| {
            http_error(
                "States.Http.Socket",
                format!("{method} {endpoint}: {}", error_chain(&e)),
            )
        })?;
        let status = response.status();
        let mut headers = Map::new();
        for (k, v) in response.headers() {
            headers.insert(k.as_str().to_owned(), json!(v.to_str().unwrap_or_default()));
        }
        let is_json = headers
            .get("content-type")
            .and_then(Value::as_str)
            .is_some_and(|c| c.contains("json"));
        let mut collected = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            http_error(
                "States.Http.Socket",
                format!(
                    "{method} {endpoint}: reading the response: {}",
                    error_chain(&e)
                ),
            )
        })? {
            if collected.len() + chunk.len() > HTTP_MAX_BODY {
                return Err(http_error(
                    "States.Http.Socket",
                    format!(
                        "{method} {endpoint}: the response is larger than {HTTP_MAX_BODY} bytes"
                    ),
                ));
            }
            collected.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&collected).into_owned();
        let body = if is_json {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        Ok::<_, TaskError>((status, headers, body))
    };
    let (status, headers, body) =
        tokio::time::timeout(HTTP_TIMEOUT, call)
            .await
            .map_err(|_| {
                http_error(
                    "States.Http.Socket",
                    format!("{method} {endpoint}: no answer within 60 s"),
                )
            })??;
    let result = json!({
        "StatusCode": status.as_u16(),
        "StatusText": status.canonical_reason().unwrap_or(""),
        "Headers": headers,
        "ResponseBody": body,
    });
    if status.is_success() {
        Ok(result)
    } else {
        Err(http_error(
            &format!("States.Http.StatusCode.{}", status.as_u16()),
            result.to_string(),
        ))
    }
}

/// `projectName` from `ProjectName`, recursively through objects and arrays.
pub(crate) fn camel_keys(v: &Value) -> Value {
    convert_keys(v, |k| {
        let mut c = k.chars();
        c.next()
            .map(|f| f.to_lowercase().chain(c).collect())
            .unwrap_or_default()
    })
}

/// `BuildStatus` from `buildStatus`, recursively.
pub(crate) fn pascal_keys(v: &Value) -> Value {
    convert_keys(v, |k| {
        let mut c = k.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    })
}

fn convert_keys(v: &Value, f: fn(&str) -> String) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (f(k), convert_keys(v, f))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| convert_keys(i, f)).collect()),
        other => other.clone(),
    }
}

/// `codebuild:startBuild[.sync|.waitForTaskToken]` with StartBuild's parameters.
async fn start_build<S: Store>(
    engine: &Engine<S>,
    task: &Task,
    mode: Mode,
) -> Result<Value, TaskError> {
    let Some(app) = engine.app() else {
        return Err(TaskError::new(
            "States.Runtime",
            "the server is shutting down",
        ));
    };
    let build_id = match &task.handle {
        // Started before a restart: follow that build rather than start another.
        Some(id) => id.clone(),
        None => {
            let input = serde_json::from_value::<crate::codebuild::StartBuildInput>(camel_keys(
                &task.input,
            ))
            .map_err(|e| {
                TaskError::new(
                    "CodeBuild.InvalidInputException",
                    format!("StartBuild parameters: {e}"),
                )
            })?;
            let actor = format!("states:{}", task.execution_arn);
            let started = crate::codebuild::start_build(&app, &actor, input)
                .await
                .map_err(|e| {
                    TaskError::new(
                        format!("CodeBuild.{}", e.error.code.as_str()),
                        e.error.message,
                    )
                })?;
            let id = started["build"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            remember_handle(engine, task, &id).await;
            if mode != Mode::Sync {
                return Ok(json!({"Build": pascal_keys(&started["build"])}));
            }
            id
        }
    };
    loop {
        let builds = engine
            .store()
            .get_builds(std::slice::from_ref(&build_id))
            .await
            .map_err(|e| {
                TaskError::new("States.Runtime", format!("reading build {build_id}: {e}"))
            })?;
        let Some(build) = builds.into_iter().next() else {
            return Err(TaskError::new(
                "States.TaskFailed",
                format!("build {build_id} does not exist"),
            ));
        };
        if mode != Mode::Sync || build.status != "IN_PROGRESS" {
            let rendered = pascal_keys(&crate::codebuild::render_build(engine.config(), &build));
            return if mode != Mode::Sync || build.status == "SUCCEEDED" {
                Ok(json!({"Build": rendered}))
            } else {
                Err(TaskError::new(
                    "States.TaskFailed",
                    json!({"Build": rendered}).to_string(),
                ))
            };
        }
        tokio::time::sleep(BUILD_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_come_from_the_suffix() {
        assert_eq!(
            split_mode("arn:aws:states:::codebuild:startBuild.sync"),
            ("arn:aws:states:::codebuild:startBuild", Mode::Sync)
        );
        assert_eq!(
            split_mode("arn:aws:states:::http:invoke.waitForTaskToken"),
            ("arn:aws:states:::http:invoke", Mode::Callback)
        );
        assert_eq!(
            split_mode("arn:aws:states:::http:invoke"),
            ("arn:aws:states:::http:invoke", Mode::RequestResponse)
        );
    }

    #[test]
    fn keys_convert_both_ways() {
        let v = json!({"ProjectName": "a", "EnvironmentVariablesOverride": [{"Name": "X", "Value": "Y"}]});
        let c = camel_keys(&v);
        assert_eq!(
            c,
            json!({"projectName": "a", "environmentVariablesOverride": [{"name": "X", "value": "Y"}]})
        );
        assert_eq!(pascal_keys(&c), v);
    }

    #[tokio::test]
    async fn http_invoke_refuses_bad_parameters_clearly() {
        let client = reqwest::Client::new();
        let e = http_invoke(&client, &json!({"Method": "GET"}))
            .await
            .expect_err("no endpoint");
        assert!(e.cause.contains("ApiEndpoint"), "{e:?}");
        let e = http_invoke(
            &client,
            &json!({"ApiEndpoint": "http://x", "Method": "FETCH"}),
        )
        .await
        .expect_err("bad method");
        assert!(e.cause.contains("FETCH"), "{e:?}");
        let e = http_invoke(&client, &json!({"ApiEndpoint": "ftp://x", "Method": "GET"}))
            .await
            .expect_err("not http");
        assert_eq!(e.error, "States.Runtime");
        assert!(e.cause.contains("http:// or https://"), "{e:?}");
        let e = http_invoke(
            &client,
            &json!({"ApiEndpoint": "http://127.0.0.1:1/", "Method": "GET"}),
        )
        .await
        .expect_err("refused");
        assert_eq!(e.error, "States.Http.Socket");
    }
}
