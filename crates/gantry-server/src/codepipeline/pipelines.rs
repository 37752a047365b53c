//! CreatePipeline, GetPipeline, UpdatePipeline, DeletePipeline, ListPipelines.

use gantry_spec::Diagnostic;
use gantry_spec::Spanned;
use gantry_spec::pipeline::{
    self, ExecutionMode, Format, PipelineDeclaration, PipelineDocument, PipelineType,
};
use gantry_store::{NewPipeline, PipelineRecord, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    arn, check_name, exception, page, pipeline_not_found, required, timestamp_ms, validation,
};
use crate::error::ApiError;
use crate::router::AppState;

/// Tags per resource (CodePipeline's quota).
const MAX_TAGS: usize = 50;
/// Diagnostics quoted in one error message; the rest are counted.
const QUOTED_PROBLEMS: usize = 5;
/// How often UpdatePipeline re-reads and retries when a concurrent update
/// took the version it read.
const UPDATE_ATTEMPTS: usize = 5;

/// Reads a declaration the store holds (it was valid when written).
pub(super) fn parse_stored(text: &str) -> Result<PipelineDeclaration, StoreError> {
    pipeline::parse_json(text).map_err(|diags| {
        let first = diags.first().map(|d| d.to_string()).unwrap_or_default();
        StoreError::Other(format!("a stored pipeline declaration does not parse: {first}").into())
    })
}

/// Parses a CreatePipeline or UpdatePipeline body through gantry-spec.
fn parse_input(body: &[u8]) -> Result<PipelineDocument, ApiError> {
    // JSON syntax and the body's shape first, as every operation does.
    let object: serde_json::Map<String, Value> = super::input(body)?;
    required(object.get("pipeline"), "pipeline")?;
    let text =
        std::str::from_utf8(body).map_err(|_| validation("The request body is not UTF-8"))?;
    pipeline::parse_document(text, Format::Json).map_err(|diags| declaration_error(&diags))
}

/// The exception AWS raises for a declaration problem, chosen by what the
/// first problem is about (docs/pipelines-api.md lists the mapping):
/// a provider's configuration or artifacts → InvalidActionDeclarationException;
/// what a stage may hold → InvalidStageDeclarationException; how stages,
/// artifacts, namespaces and variables fit together → InvalidStructureException;
/// a member's type, length, pattern or enum → ValidationException.
fn exception_for(message: &str) -> &'static str {
    // Provider messages first: they may quote an unknown configuration key.
    const PROVIDER: &[&str] = &[
        "`AWS/",
        "provider `",
        "actionTypeId.owner: ThirdParty",
        ") takes ",
        "applies only to manual approval",
    ];
    // The member shape: unknown, missing or repeated keys (their messages
    // list member names, which the markers below would also match).
    const SHAPE: &[&str] = &["unknown key", "missing required key", "duplicate key"];
    const ACTION: &[&str] = &[".configuration"];
    const STAGE: &[&str] = &[
        "the first stage may hold only Source",
        "Source actions are allowed only in the first stage",
        "duplicate action name",
        "onFailure.result: ROLLBACK",
        ".actions` must have",
    ];
    const STRUCTURE: &[&str] = &[
        "at least 2 stages",
        "duplicate stage name",
        "input artifact",
        "output artifact",
        "namespace",
        "#{",
        "requires `pipelineType: V2`",
        "cannot both be given",
        "pipeline variable",
        "sourceActionName",
    ];
    let has = |markers: &[&str]| markers.iter().any(|m| message.contains(m));
    if has(PROVIDER) {
        "InvalidActionDeclarationException"
    } else if has(SHAPE) {
        "ValidationException"
    } else if has(ACTION) {
        "InvalidActionDeclarationException"
    } else if has(STAGE) {
        "InvalidStageDeclarationException"
    } else if has(STRUCTURE) {
        "InvalidStructureException"
    } else {
        "ValidationException"
    }
}

/// One error for every problem found: the first decides the exception, and
/// the message quotes the first few (line and column are left out: they
/// point into the request body, which the caller never saw as such).
fn declaration_error(diags: &[Diagnostic]) -> ApiError {
    let Some(first) = diags.first() else {
        return validation("The pipeline declaration is invalid");
    };
    let quoted: Vec<&str> = diags
        .iter()
        .take(QUOTED_PROBLEMS)
        .map(|d| d.message.as_str())
        .collect();
    let mut message = quoted.join("; ");
    if diags.len() > QUOTED_PROBLEMS {
        message.push_str(&format!(
            "; and {} more problems",
            diags.len() - QUOTED_PROBLEMS
        ));
    }
    match exception_for(&first.message) {
        "ValidationException" => validation(message),
        code => exception(code, message),
    }
}

/// The pipeline type in effect: as written, else V2 when a V2-only member
/// is used (AWS does the same), else V1.
fn pipeline_type(p: &PipelineDeclaration) -> &'static str {
    match p.pipeline_type.map(|t| t.value) {
        Some(PipelineType::V1) => "V1",
        Some(PipelineType::V2) => "V2",
        None => {
            let v2 = p.variables.is_some()
                || p.triggers.is_some()
                || p.execution_mode() != ExecutionMode::Superseded
                || p.stages.iter().any(|s| {
                    s.on_failure.is_some() || s.on_success.is_some() || s.before_entry.is_some()
                });
            if v2 { "V2" } else { "V1" }
        }
    }
}

fn execution_mode(p: &PipelineDeclaration) -> &'static str {
    match p.execution_mode() {
        ExecutionMode::Queued => "QUEUED",
        ExecutionMode::Superseded => "SUPERSEDED",
        ExecutionMode::Parallel => "PARALLEL",
    }
}

/// The row for `declaration` at `version`: the declaration printed as
/// `get-pipeline` prints it, with `version` set (whatever the caller sent).
fn new_pipeline(mut declaration: PipelineDeclaration, version: u32, tags: Value) -> NewPipeline {
    declaration.version = Some(Spanned::new(version, Default::default()));
    NewPipeline {
        name: declaration.name.value.clone(),
        declaration: pipeline::to_json(&declaration),
        pipeline_type: pipeline_type(&declaration).into(),
        execution_mode: execution_mode(&declaration).into(),
        stage_names: declaration
            .stages
            .iter()
            .map(|s| s.name.value.clone())
            .collect(),
        tags,
    }
}

/// The stored declaration as a JSON value for a response, the values of
/// custom actions' secret properties masked.
async fn declaration_json<S: Store>(store: &S, record: &PipelineRecord) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_str(&record.declaration).map_err(ApiError::internal)?;
    super::action_types::mask_declaration(store, &mut value).await?;
    Ok(value)
}

pub(super) async fn create<S: Store>(
    state: &AppState<S>,
    actor: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let document = parse_input(body)?;
    let tags = match &document.tags {
        Some(tags) if tags.len() > MAX_TAGS => {
            return Err(exception(
                "TooManyTagsException",
                format!(
                    "A pipeline can have at most {MAX_TAGS} tags, found {}",
                    tags.len()
                ),
            ));
        }
        Some(tags) => serde_json::to_value(tags).map_err(ApiError::internal)?,
        None => json!([]),
    };
    let name = document.pipeline.name.value.clone();
    super::action_types::check_declaration(state.store.as_ref(), &document.pipeline).await?;
    let new = new_pipeline(document.pipeline, 1, tags);
    match state.store.create_pipeline(&new, actor).await {
        Ok(record) => {
            let mut out =
                json!({ "pipeline": declaration_json(state.store.as_ref(), &record).await? });
            if record.tags.as_array().is_some_and(|t| !t.is_empty()) {
                out["tags"] = record.tags;
            }
            Ok(out)
        }
        Err(StoreError::Conflict(_)) => Err(exception(
            "PipelineNameInUseException",
            format!("Pipeline with name '{name}' already exists"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn update<S: Store>(
    state: &AppState<S>,
    actor: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let document = parse_input(body)?;
    let name = document.pipeline.name.value.clone();
    for _ in 0..UPDATE_ATTEMPTS {
        let current = match state.store.get_pipeline(&name, None).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return Err(pipeline_not_found(&name)),
            Err(e) => return Err(e.into()),
        };
        // Secret properties sent masked keep their current values.
        let mut declaration = document.pipeline.clone();
        let stored = parse_stored(&current.declaration)?;
        super::action_types::restore_secrets(state.store.as_ref(), &mut declaration, &stored)
            .await?;
        super::action_types::check_declaration(state.store.as_ref(), &declaration).await?;
        // The version in the request is ignored: an update always makes
        // the next one.
        let new = new_pipeline(declaration, current.version + 1, current.tags.clone());
        match state
            .store
            .update_pipeline(&new, current.version, actor)
            .await
        {
            Ok(record) => {
                let pipeline = declaration_json(state.store.as_ref(), &record).await?;
                return Ok(json!({ "pipeline": pipeline }));
            }
            Err(StoreError::NotFound) => return Err(pipeline_not_found(&name)),
            // Another update took this version: read again.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(exception(
        "ConcurrentModificationException",
        format!("Pipeline '{name}' is being updated by other requests; try again"),
    ))
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<i64>,
}

pub(crate) async fn get<S: Store>(state: &AppState<S>, input: GetInput) -> Result<Value, ApiError> {
    let name = required(input.name, "name")?;
    check_name(&name, "name")?;
    let version = match input.version {
        None => None,
        Some(v) => Some(u32::try_from(v).ok().filter(|&v| v >= 1).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value '{v}' at 'version' failed to satisfy constraint: Member must have value greater than or equal to 1"
            ))
        })?),
    };
    let record = match state.store.get_pipeline(&name, version).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            // Which is missing: the pipeline, or that version of it?
            return match (version, state.store.get_pipeline(&name, None).await) {
                (Some(v), Ok(current)) => Err(exception(
                    "PipelineVersionNotFoundException",
                    format!(
                        "Pipeline '{name}' has no version {v}; its latest is {}",
                        current.version
                    ),
                )),
                (_, Err(StoreError::NotFound) | Ok(_)) => Err(pipeline_not_found(&name)),
                (_, Err(e)) => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    Ok(json!({
        "pipeline": declaration_json(state.store.as_ref(), &record).await?,
        "metadata": {
            "pipelineArn": arn(&state.config, &record.name),
            "created": timestamp_ms(record.created_ms),
            "updated": timestamp_ms(record.updated_ms),
        },
    }))
}

#[derive(Deserialize)]
pub(super) struct DeleteInput {
    name: Option<String>,
}

/// Deleting a pipeline that does not exist succeeds: the operation's model
/// has no not-found error, and DeleteWebhook is documented to behave so.
pub(super) async fn delete<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: DeleteInput,
) -> Result<Value, ApiError> {
    let name = required(input.name, "name")?;
    check_name(&name, "name")?;
    match state.store.delete_pipeline(&name, actor).await {
        Ok(()) | Err(StoreError::NotFound) => Ok(json!({})),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    pub(crate) next_token: Option<String>,
    pub(crate) max_results: Option<i64>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let max = match input.max_results {
        None => 100,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000"
            )));
        }
    };
    let all = state.store.list_pipelines().await?;
    let (pipelines, next) = page(all, |p| p.name.as_str(), input.next_token.as_deref(), max)?;
    let summaries: Vec<Value> = pipelines
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "version": p.version,
                "pipelineType": p.pipeline_type,
                "executionMode": p.execution_mode,
                "created": timestamp_ms(p.created_ms),
                "updated": timestamp_ms(p.updated_ms),
            })
        })
        .collect();
    let mut out = json!({ "pipelines": summaries });
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// The row CreatePipeline would write for `declaration`.
    pub(in crate::codepipeline) fn row(declaration: PipelineDeclaration) -> NewPipeline {
        new_pipeline(declaration, 1, json!([]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(text: &str) -> String {
        let diags = pipeline::parse_json(text).expect_err("invalid");
        exception_for(&diags[0].message).to_owned()
    }

    fn with_stages(stages: Value) -> String {
        json!({"pipeline": {
            "name": "app",
            "roleArn": "arn:aws:iam::123456789012:role/gantry",
            "stages": stages,
        }})
        .to_string()
    }

    fn source(name: &str, out: &str) -> Value {
        json!({"name": name,
               "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
               "configuration": {"RepositoryUrl": "file:///srv/app.git"},
               "outputArtifacts": [{"name": out}]})
    }

    fn build(name: &str, input: &str) -> Value {
        json!({"name": name,
               "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
               "configuration": {"ProjectName": "p"},
               "inputArtifacts": [{"name": input}]})
    }

    #[test]
    fn problems_map_to_the_exception_aws_uses() {
        let ok_source = json!({"name": "Source", "actions": [source("Src", "S")]});
        // Structure: one stage only; an input nobody produces.
        assert_eq!(
            first_error(&with_stages(json!([ok_source]))),
            "InvalidStructureException"
        );
        assert_eq!(
            first_error(&with_stages(
                json!([ok_source, {"name": "Build", "actions": [build("B", "Nope")]}])
            )),
            "InvalidStructureException"
        );
        // Stage: a build action in the first stage.
        assert_eq!(
            first_error(&with_stages(json!([
                {"name": "Source", "actions": [build("B", "S")]},
                {"name": "Build", "actions": [build("C", "S")]}
            ]))),
            "InvalidStageDeclarationException"
        );
        // Action: a CodeBuild action without ProjectName.
        let mut no_project = build("B", "S");
        no_project["configuration"] = json!({});
        assert_eq!(
            first_error(&with_stages(
                json!([ok_source, {"name": "Build", "actions": [no_project]}])
            )),
            "InvalidActionDeclarationException"
        );
        // Validation: a runOrder out of range, a bad pipeline name.
        let mut late = build("B", "S");
        late["runOrder"] = json!(1000);
        assert_eq!(
            first_error(&with_stages(
                json!([ok_source, {"name": "Build", "actions": [late]}])
            )),
            "ValidationException"
        );
        // Stage: a stage without actions.
        assert_eq!(
            first_error(&with_stages(
                json!([ok_source, {"name": "Build", "actions": []}])
            )),
            "InvalidStageDeclarationException"
        );
        let mut typo = build("B", "S");
        typo["inputArtifact"] = json!([]);
        assert_eq!(
            first_error(&with_stages(
                json!([ok_source, {"name": "Build", "actions": [typo]}])
            )),
            "ValidationException"
        );
        let bad_name =
            with_stages(json!([ok_source, {"name": "Build", "actions": [build("B", "S")]}]))
                .replace("\"app\"", "\"a b\"");
        assert_eq!(first_error(&bad_name), "ValidationException");
    }

    #[test]
    fn v2_members_make_a_pipeline_v2_unless_it_says_otherwise() {
        let base = json!({
            "name": "app",
            "roleArn": "arn:aws:iam::123456789012:role/gantry",
            "stages": [
                {"name": "Source", "actions": [source("Src", "S")]},
                {"name": "Build", "actions": [build("B", "S")]}
            ]
        });
        let p = pipeline::parse_json(&base.to_string()).expect("valid");
        assert_eq!(
            (pipeline_type(&p), execution_mode(&p)),
            ("V1", "SUPERSEDED")
        );
        let mut queued = base.clone();
        queued["executionMode"] = json!("QUEUED");
        let p = pipeline::parse_json(&queued.to_string()).expect("valid");
        assert_eq!((pipeline_type(&p), execution_mode(&p)), ("V2", "QUEUED"));
        let mut explicit = base;
        explicit["pipelineType"] = json!("V2");
        let p = pipeline::parse_json(&explicit.to_string()).expect("valid");
        assert_eq!(pipeline_type(&p), "V2");
    }

    #[test]
    fn the_stored_declaration_carries_the_version_given() {
        let text = with_stages(json!([
            {"name": "Source", "actions": [source("Src", "S")]},
            {"name": "Build", "actions": [build("B", "S")]}
        ]))
        .replace("\"stages\"", "\"version\": 9, \"stages\"");
        let p = pipeline::parse_json(&text).expect("valid");
        let row = new_pipeline(p, 3, json!([]));
        let stored: Value = serde_json::from_str(&row.declaration).expect("json");
        assert_eq!(stored["version"], 3);
        assert_eq!(row.stage_names, ["Source", "Build"]);
        assert_eq!(
            parse_stored(&row.declaration)
                .expect("reads back")
                .name
                .value,
            "app"
        );
    }
}
