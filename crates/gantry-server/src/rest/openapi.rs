//! The OpenAPI 3.1 description of the REST API, served at
//! `/api/v1/openapi.json`. Written by hand with `serde_json`; a test
//! checks that it describes exactly the routes of [`super::endpoints`].

use std::sync::OnceLock;

use axum::response::Response;
use serde_json::{Value, json};

use super::error::CODES;
use super::{OPENAPI_PATH, PREFIX, SIGNING_NAME};

/// The document, built once.
pub(crate) fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

pub(super) fn response() -> Response {
    super::ok(document())
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true,
            "description": description, "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false,
            "description": description, "schema": { "type": kind } })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// The error responses an operation can give, by REST code.
fn errors(codes: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for code in ["Unauthenticated", "Forbidden", "Internal"]
        .iter()
        .chain(codes)
    {
        if let Some((_, status)) = CODES.iter().find(|(c, _)| c == code) {
            out.insert(
                status.to_string(),
                json!({ "description": format!("{code}: see the Error schema"),
                        "content": json_content(schema("Error")) }),
            );
        }
    }
    Value::Object(out)
}

struct Op {
    summary: &'static str,
    params: Vec<Value>,
    body: Option<&'static str>,
    success: (u16, &'static str, Value),
    errors: &'static [&'static str],
}

impl Op {
    fn json(self, id: &str) -> Value {
        let mut responses = errors(self.errors);
        let (status, description, content) = self.success;
        responses[status.to_string()] = json!({ "description": description, "content": content });
        let mut op = json!({
            "operationId": id,
            "summary": self.summary,
            "parameters": self.params,
            "responses": responses,
            "security": [{ "sigv4": [] }],
        });
        if let Some(name) = self.body {
            op["requestBody"] = json!({ "required": false, "content": json_content(schema(name)) });
        }
        op
    }
}

fn name() -> Value {
    path_param("name", "The pipeline's name.")
}

fn execution_id() -> Value {
    path_param("id", "The execution (run) id.")
}

fn paging() -> Vec<Value> {
    vec![
        query_param("maxResults", "At most this many items.", "integer"),
        query_param("nextToken", "The nextToken of the previous page.", "string"),
    ]
}

fn build() -> Value {
    let mut paths = serde_json::Map::new();
    let mut add = |path: &str, method: &str, id: &str, op: Op| {
        let entry = paths
            .entry(format!("{PREFIX}{path}"))
            .or_insert_with(|| json!({}));
        entry[method] = op.json(id);
    };
    add(
        "/pipelines",
        "get",
        "listPipelines",
        Op {
            summary: "List pipelines by name (ListPipelines).",
            params: paging(),
            body: None,
            success: (
                200,
                "A page of pipelines.",
                json_content(schema("PipelineList")),
            ),
            errors: &["InvalidInput"],
        },
    );
    add(
        "/pipelines/{name}",
        "get",
        "showPipeline",
        Op {
            summary: "A pipeline's declaration and the current state of its stages (GetPipeline + GetPipelineState).",
            params: vec![name()],
            body: None,
            success: (200, "The pipeline.", json_content(schema("Pipeline"))),
            errors: &["NotFound"],
        },
    );
    add(
        "/pipelines/{name}/executions",
        "get",
        "listExecutions",
        Op {
            summary: "A pipeline's executions, newest first (ListPipelineExecutions).",
            params: [vec![name()], paging()].concat(),
            body: None,
            success: (
                200,
                "A page of executions.",
                json_content(schema("ExecutionList")),
            ),
            errors: &["InvalidInput", "NotFound"],
        },
    );
    add(
        "/pipelines/{name}/executions",
        "post",
        "startExecution",
        Op {
            summary: "Start an execution of the pipeline's current version (StartPipelineExecution).",
            params: vec![name()],
            body: Some("StartRequest"),
            success: (201, "Started.", json_content(schema("ExecutionId"))),
            errors: &["InvalidInput", "NotFound", "Conflict"],
        },
    );
    add(
        "/pipelines/{name}/executions/{id}",
        "get",
        "showExecution",
        Op {
            summary: "One execution with its stages and actions: status, build ids, errors, pending approval tokens.",
            params: vec![name(), execution_id()],
            body: None,
            success: (200, "The run.", json_content(schema("Run"))),
            errors: &["NotFound"],
        },
    );
    add(
        "/pipelines/{name}/executions/{id}/stop",
        "post",
        "stopExecution",
        Op {
            summary: "Stop an execution, letting running actions finish or abandoning them (StopPipelineExecution).",
            params: vec![name(), execution_id()],
            body: Some("StopRequest"),
            success: (200, "Stopping.", json_content(schema("ExecutionId"))),
            errors: &["InvalidInput", "NotFound", "Conflict"],
        },
    );
    add(
        "/pipelines/{name}/executions/{id}/stages/{stage}/retry",
        "post",
        "retryStage",
        Op {
            summary: "Retry a failed stage of an execution (RetryStageExecution).",
            params: vec![
                name(),
                execution_id(),
                path_param("stage", "The stage's name."),
            ],
            body: Some("RetryRequest"),
            success: (200, "Retrying.", json_content(schema("ExecutionId"))),
            errors: &["InvalidInput", "NotFound", "Conflict"],
        },
    );
    add(
        "/pipelines/{name}/executions/{id}/approvals/{stage}/{action}",
        "post",
        "answerApproval",
        Op {
            summary: "Approve or reject the manual approval waiting at stage/action of an execution; the token is looked up by the server (PutApprovalResult).",
            params: vec![
                name(),
                execution_id(),
                path_param("stage", "The approval's stage."),
                path_param("action", "The approval action's name."),
            ],
            body: Some("ApprovalRequest"),
            success: (
                200,
                "Answered.",
                json_content(json!({
                    "type": "object", "properties": { "approvedAt": { "type": "number", "description": "Epoch seconds." } }
                })),
            ),
            errors: &["InvalidInput", "NotFound", "Conflict"],
        },
    );
    add(
        "/builds/{id}",
        "get",
        "showBuild",
        Op {
            summary: "A build as CodeBuild's BatchGetBuilds returns it.",
            params: vec![path_param("id", "The build id (project:uuid).")],
            body: None,
            success: (
                200,
                "The build.",
                json_content(json!({
                    "type": "object", "required": ["build"],
                    "properties": { "build": { "type": "object", "description": "CodeBuild's Build shape." } }
                })),
            ),
            errors: &["NotFound"],
        },
    );
    add(
        "/builds/{id}/logs",
        "get",
        "buildLogs",
        Op {
            summary: "The build's log after a byte offset: as text, or live as Server-Sent Events with Accept: text/event-stream.",
            params: vec![
                path_param("id", "The build id."),
                query_param(
                    "offset",
                    "Start after this many bytes of the log text (lines each followed by \\n).",
                    "integer",
                ),
                json!({ "name": "Last-Event-ID", "in": "header", "required": false,
                    "description": "The id of the last event received; takes precedence over offset.",
                    "schema": { "type": "string" } }),
            ],
            body: None,
            success: (
                200,
                "The log. SSE: `event: log` with `id:` the byte offset after the event and `data:` the new text as a JSON string; then `event: end` with data {\"status\", \"offset\"} once the build is complete. Text: the header X-Gantry-Log-Offset is the offset after the text.",
                json!({
                    "text/plain": { "schema": { "type": "string" } },
                    "text/event-stream": { "schema": { "type": "string" } }
                }),
            ),
            errors: &["InvalidInput", "NotFound"],
        },
    );
    add(
        "/builds/{id}/artifacts",
        "get",
        "buildArtifacts",
        Op {
            summary: "The build's primary artifact, or with ?artifact= the secondary artifact with that identifier, as a zip (from the artifact store; any server sharing it serves it).",
            params: vec![
                path_param("id", "The build id."),
                query_param(
                    "artifact",
                    "A secondary artifact's identifier; without it, the primary artifact.",
                    "string",
                ),
            ],
            body: None,
            success: (
                200,
                "The artifact's files as a zip.",
                json!({ "application/zip": { "schema": { "type": "string", "format": "binary" } } }),
            ),
            errors: &["NotFound"],
        },
    );
    let token = json!({
        "type": "object", "required": ["id", "name", "created", "revoked"],
        "properties": {
            "id": { "type": "string" }, "name": { "type": "string" },
            "created": { "type": "number" }, "lastUsed": { "type": "number" },
            "revoked": { "type": "boolean" }
        }
    });
    add(
        "/agent-tokens",
        "get",
        "listAgentTokens",
        Op {
            summary: "Every agent token: id, name, created, last used, revoked. Never the token.",
            params: vec![],
            body: None,
            success: (
                200,
                "The tokens.",
                json_content(json!({
                    "type": "object", "required": ["agentTokens"],
                    "properties": { "agentTokens": { "type": "array", "items": token.clone() } }
                })),
            ),
            errors: &[],
        },
    );
    add(
        "/agent-tokens",
        "post",
        "createAgentToken",
        Op {
            summary: "Creates an agent token (body {\"name\": ...}); the answer is the only time the token is shown. See docs/agents.md.",
            params: vec![],
            body: None,
            success: (
                201,
                "The token's description and `token`.",
                json_content(json!({ "type": "object", "required": ["id", "token"],
                    "properties": { "id": { "type": "string" }, "token": { "type": "string" } } })),
            ),
            errors: &["InvalidInput"],
        },
    );
    add(
        "/agent-tokens/{id}",
        "delete",
        "revokeAgentToken",
        Op {
            summary: "Revokes an agent token: its agents are refused (401) from their next request, and their leases lapse.",
            params: vec![path_param("id", "The token's id (atok-...).")],
            body: None,
            success: (200, "Revoked.", json_content(json!({ "type": "object" }))),
            errors: &["NotFound"],
        },
    );
    paths.insert(
        format!("{PREFIX}{OPENAPI_PATH}"),
        json!({ "get": {
            "operationId": "openapi",
            "summary": "This document. Needs no signature.",
            "security": [],
            "responses": { "200": { "description": "OpenAPI 3.1.", "content": json_content(json!({ "type": "object" })) } }
        }}),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gantry REST API",
            "version": "1",
            "description": format!("Gantry's native API over the same service functions as its AWS-compatible API. Every operation but this document is signed with AWS Signature Version 4 using a Gantry access key, credential scope service '{SIGNING_NAME}' (any region). See docs/rest-api.md."),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": format!("AWS4-HMAC-SHA256 with a Gantry access key; credential scope <date>/<region>/{SIGNING_NAME}/aws4_request; host must be signed.")
                }
            },
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let codes: Vec<&str> = CODES.iter().map(|(c, _)| *c).collect();
    let string = json!({ "type": "string" });
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let mut schemas = serde_json::Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object", "required": ["error"],
            "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": codes,
                              "description": "InvalidInput 400, Unauthenticated 401, Forbidden 403, NotFound 404, Conflict 409, Throttled 429, Internal 500." },
                    "message": string,
                    "type": { "type": "string", "description": "The underlying exception, as the AWS API names it (e.g. PipelineNotFoundException)." }
                }
            }}
        }),
    );
    schemas.insert(
        "PipelineList".into(),
        json!({
            "type": "object", "required": ["pipelines"],
            "properties": {
                "pipelines": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "name": string, "version": { "type": "integer" }, "pipelineType": string,
                                    "executionMode": string, "created": { "type": "number" }, "updated": { "type": "number" } }
                }},
                "nextToken": string
            }
        }),
    );
    schemas.insert(
        "Pipeline".into(),
        json!({
            "type": "object", "required": ["pipeline", "metadata", "stages"],
            "properties": {
                "pipeline": { "type": "object", "description": "The declaration, as GetPipeline returns it." },
                "metadata": { "type": "object" },
                "version": { "type": "integer" },
                "stages": { "type": "array", "items": { "type": "object" }, "description": "GetPipelineState's stageStates." }
            }
        }),
    );
    schemas.insert(
        "ExecutionList".into(),
        json!({
            "type": "object", "required": ["executions"],
            "properties": {
                "executions": { "type": "array", "items": { "type": "object", "description": "ListPipelineExecutions' summaries." } },
                "nextToken": string
            }
        }),
    );
    schemas.insert(
        "StartRequest".into(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "sourceRevisions": { "description": "Source action name to commit id.", "allOf": [string_map] },
                "variables": { "description": "Pipeline variable name to value.", "allOf": [string_map] }
            }
        }),
    );
    schemas.insert(
        "ExecutionId".into(),
        json!({
            "type": "object", "required": ["pipelineExecutionId"],
            "properties": { "pipelineExecutionId": string }
        }),
    );
    schemas.insert(
        "Run".into(),
        json!({
            "type": "object", "required": ["pipelineExecutionId", "status", "stages"],
            "properties": {
                "pipelineName": string, "pipelineVersion": { "type": "integer" },
                "pipelineExecutionId": string, "status": string, "statusSummary": string,
                "startTime": { "type": "number" }, "lastUpdateTime": { "type": "number" },
                "stages": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": string, "status": { "type": ["string", "null"] }, "attempt": { "type": "integer" },
                        "actions": { "type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "name": string, "category": string, "provider": string,
                                "runOrder": { "type": "integer" },
                                "status": { "type": ["string", "null"] }, "attempt": { "type": "integer" },
                                "actionExecutionId": string, "externalExecutionId": string,
                                "buildId": { "type": "string", "description": "For CodeBuild actions." },
                                "summary": string,
                                "error": { "type": "object", "properties": { "code": string, "message": string } },
                                "approvalToken": { "type": "string", "description": "Present while a manual approval waits." },
                                "lastUpdateTime": { "type": "number" }
                            }
                        }}
                    }
                }}
            }
        }),
    );
    schemas.insert(
        "StopRequest".into(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": { "abandon": { "type": "boolean", "default": false }, "reason": string }
        }),
    );
    schemas.insert(
        "RetryRequest".into(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": { "mode": { "type": "string", "enum": ["FAILED_ACTIONS", "ALL_ACTIONS"], "default": "FAILED_ACTIONS" } }
        }),
    );
    schemas.insert(
        "ApprovalRequest".into(),
        json!({
            "type": "object", "additionalProperties": false, "required": ["status"],
            "properties": { "status": { "type": "string", "enum": ["Approved", "Rejected"] }, "summary": string }
        }),
    );
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The document and the router's table name the same routes.
    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> =
            super::super::endpoints::<gantry_store::SqliteStore>()
                .iter()
                .map(|e| (format!("{PREFIX}{}", e.path), e.verb.as_str().to_owned()))
                .chain([(format!("{PREFIX}{OPENAPI_PATH}"), "get".to_owned())])
                .collect();
        let described: BTreeSet<(String, String)> = document()["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .map(|m| (path.clone(), m.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(served, described);
    }

    /// Every `$ref` resolves and every path parameter is declared.
    #[test]
    fn references_and_path_parameters_are_complete() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().expect("name");
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in ops.as_object().expect("ops") {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(templated, declared, "{method} {path}");
            }
        }
    }
}
