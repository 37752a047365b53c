//! StartBuild, BatchGetBuilds, ListBuildsForProject, StopBuild.

use gantry_store::{BuildRecord, NewBuild, SortOrder, Store, StoreError, now_ms};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::projects::{
    ProjectSource, SourceKind, check_buildspec, check_env_vars, is_inline_buildspec,
};
use super::{arn, page, sort_order, strip_arn, timestamp_ms};
use crate::error::ApiError;
use crate::router::AppState;
use crate::worker::{BuildJob, BuildspecRef, phase_json};

/// A build as the API returns it: the stored JSON with the columns the
/// store keeps authoritative laid over it.
pub(crate) fn render_build(config: &crate::Config, record: &BuildRecord) -> Value {
    let mut build = record.build.clone();
    if let Some(obj) = build.as_object_mut() {
        obj.insert("id".into(), json!(record.id));
        obj.insert("arn".into(), json!(arn(config, "build", &record.id)));
        obj.insert("buildNumber".into(), json!(record.number));
        obj.insert("projectName".into(), json!(record.project));
        obj.insert("buildStatus".into(), json!(record.status));
        obj.insert("currentPhase".into(), json!(record.current_phase));
        obj.insert("startTime".into(), timestamp_ms(record.start_ms));
        match record.end_ms {
            Some(end) => obj.insert("endTime".into(), timestamp_ms(end)),
            None => obj.remove("endTime"),
        };
        obj.insert(
            "buildComplete".into(),
            json!(record.status != "IN_PROGRESS"),
        );
    }
    build
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartInput {
    #[serde(default)]
    pub project_name: String,
    pub source_version: Option<String>,
    pub environment_variables_override: Option<Value>,
    pub buildspec_override: Option<String>,
    pub timeout_in_minutes_override: Option<u64>,
    pub image_override: Option<String>,
}

fn merged_env(project_env: Option<&Value>, overrides: Option<&Value>) -> Vec<Value> {
    let mut vars: Vec<Value> = project_env
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for o in overrides.and_then(Value::as_array).into_iter().flatten() {
        let name = o.get("name");
        vars.retain(|v| v.get("name") != name);
        vars.push(o.clone());
    }
    vars
}

pub(crate) async fn start<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StartInput,
) -> Result<Value, ApiError> {
    let record = start_build(state, actor, input).await?;
    Ok(json!({ "build": render_build(&state.config, &record) }))
}

/// A build checked and decided but not stored yet: the row to create, and
/// what the runner needs once it exists.
pub(crate) struct PreparedBuild {
    /// The row to create.
    pub new: NewBuild,
    uuid: String,
    buildspec: BuildspecRef,
    source: SourceKind,
    source_version: Option<String>,
    env: Vec<(String, String)>,
    image: String,
    timeout_minutes: u64,
    initiator: String,
    wants_artifacts: bool,
    agent_labels: Vec<String>,
}

/// Records a build and hands it to the runner. (A pipeline action's build
/// is prepared, stored and submitted by the pipeline host, see
/// `pipeline_host/providers.rs`.)
pub(crate) async fn start_build<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StartInput,
) -> Result<BuildRecord, ApiError> {
    let prepared = prepare_build(state, actor, input, None).await?;
    // The row is committed before the answer: a 200 means the build exists.
    let record = match state.store.create_build(&prepared.new, actor).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "Project cannot be found: {}",
                arn(&state.config, "project", &prepared.new.project)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    submit_build(state, prepared, record.clone(), None);
    Ok(record)
}

/// Checks a StartBuild request against its project and decides the build,
/// without storing it. `pipeline_uuid` when a pipeline action starts it:
/// derived from the action's attempt, so that a restart finds the build
/// instead of starting another.
pub(crate) async fn prepare_build<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: StartInput,
    pipeline_uuid: Option<String>,
) -> Result<PreparedBuild, ApiError> {
    let name = strip_arn(&input.project_name, "project").to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid_input("projectName is required"));
    }
    let project = match state.store.get_project(&name).await {
        Ok(p) => p.project,
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "Project cannot be found: {}",
                arn(&state.config, "project", &name)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut source_json = project.get("source").cloned().unwrap_or(json!({}));
    let overridden = input
        .buildspec_override
        .as_deref()
        .filter(|s| !s.is_empty());
    if let Some(spec) = overridden {
        source_json["buildspec"] = json!(spec);
    }
    let source = ProjectSource::from_json(&source_json).map_err(ApiError::invalid_input)?;
    if source.kind == SourceKind::Pipeline && pipeline_uuid.is_none() {
        return Err(ApiError::invalid_input(
            "the builds of a project whose source type is CODEPIPELINE are started by its pipeline",
        ));
    }
    let buildspec = match source.buildspec.as_deref() {
        Some(text) if is_inline_buildspec(text) => {
            // The project's own was checked when the project was created
            // or updated: parsing it again cost every StartBuild a YAML
            // parse. An override is new, and checked here.
            if overridden.is_some() {
                check_buildspec(text, "buildspec")?;
            }
            BuildspecRef::Inline(text.to_owned())
        }
        Some(_) if source.kind == SourceKind::None => {
            return Err(ApiError::invalid_input(
                "a NO_SOURCE build needs an inline buildspec",
            ));
        }
        Some(path) => BuildspecRef::File(path.to_owned()),
        None => BuildspecRef::File("buildspec.yml".into()),
    };
    check_env_vars(
        input.environment_variables_override.as_ref(),
        "environmentVariablesOverride",
    )?;
    let timeout = match input
        .timeout_in_minutes_override
        .or_else(|| project.get("timeoutInMinutes").and_then(Value::as_u64))
    {
        None => 60,
        Some(t @ 5..=2160) => t,
        Some(_) => {
            return Err(ApiError::invalid_input(
                "timeoutInMinutesOverride must be between 5 and 2160",
            ));
        }
    };
    let mut environment = project.get("environment").cloned().unwrap_or(json!({}));
    if let Some(image) = input.image_override.as_deref().filter(|i| !i.is_empty()) {
        environment["image"] = json!(image);
    }
    let env = merged_env(
        environment.get("environmentVariables"),
        input.environment_variables_override.as_ref(),
    );
    environment["environmentVariables"] = json!(env);
    let source_version = input
        .source_version
        .clone()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            project
                .get("sourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });

    let wants_artifacts = pipeline_uuid.is_some()
        || project
            .pointer("/artifacts/type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "NO_ARTIFACTS");
    let uuid = pipeline_uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id = format!("{name}:{uuid}");
    let now = now_ms();
    let mut build = Map::new();
    build.insert("source".into(), source_json);
    if let Some(v) = &source_version {
        build.insert("sourceVersion".into(), json!(v));
    }
    build.insert("environment".into(), environment.clone());
    for member in ["serviceRole", "queuedTimeoutInMinutes", "artifacts"] {
        if let Some(v) = project.get(member) {
            build.insert(member.into(), v.clone());
        }
    }
    build.insert("timeoutInMinutes".into(), json!(timeout));
    build.insert("initiator".into(), json!(actor));
    build.insert(
        "logs".into(),
        json!({ "groupName": format!("/aws/codebuild/{name}"), "streamName": uuid }),
    );
    build.insert(
        "phases".into(),
        json!([
            phase_json("SUBMITTED", Some("SUCCEEDED"), now, Some(now), &[]),
            phase_json("QUEUED", None, now, None, &[]),
        ]),
    );
    build.insert("exportedEnvironmentVariables".into(), json!([]));
    let new = NewBuild {
        id: id.clone(),
        project: name.clone(),
        status: "IN_PROGRESS".into(),
        current_phase: "QUEUED".into(),
        build: Value::Object(build),
        overrides: json!({
            "sourceVersion": input.source_version,
            "environmentVariablesOverride": input.environment_variables_override,
            "buildspecOverride": input.buildspec_override,
            "timeoutInMinutesOverride": input.timeout_in_minutes_override,
            "imageOverride": input.image_override,
        }),
        start_ms: now,
    };
    let image = environment
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("gantry:host")
        .to_owned();
    let env_pairs = env
        .iter()
        .filter_map(|v| {
            Some((
                v.get("name")?.as_str()?.to_owned(),
                v.get("value")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    Ok(PreparedBuild {
        new,
        uuid,
        buildspec,
        source: source.kind,
        source_version,
        env: env_pairs,
        image,
        timeout_minutes: timeout,
        initiator: actor.to_owned(),
        wants_artifacts,
        agent_labels: agent_labels(&project),
    })
}

/// Hands a prepared build, now stored as `record`, to the runner;
/// `source_dir` holds a pipeline action's primary input, moved into place.
pub(crate) fn submit_build<S: Store>(
    state: &AppState<S>,
    prepared: PreparedBuild,
    record: BuildRecord,
    source_dir: Option<std::path::PathBuf>,
) {
    state.runner.submit(BuildJob {
        record,
        uuid: prepared.uuid,
        buildspec: prepared.buildspec,
        source: prepared.source,
        source_version: prepared.source_version,
        env: prepared.env,
        image: prepared.image,
        timeout_minutes: prepared.timeout_minutes,
        initiator: prepared.initiator,
        wants_artifacts: prepared.wants_artifacts,
        prepared_source: source_dir,
        agent_labels: prepared.agent_labels,
    });
}

/// The labels the project's `gantry:agent-labels` tag names (`linux,docker`).
fn agent_labels(project: &Value) -> Vec<String> {
    project
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| t.get("key").and_then(Value::as_str) == Some(crate::agents::LABELS_TAG))
        .and_then(|t| t.get("value").and_then(Value::as_str))
        .map(gantry_store::parse_labels)
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub(crate) struct Ids {
    #[serde(default)]
    pub(crate) ids: Vec<String>,
}

pub(crate) async fn batch_get<S: Store>(
    state: &AppState<S>,
    input: Ids,
) -> Result<Value, ApiError> {
    if input.ids.is_empty() || input.ids.len() > 100 {
        return Err(ApiError::invalid_input(
            "ids must hold between 1 and 100 build ids",
        ));
    }
    let ids: Vec<String> = input
        .ids
        .iter()
        .map(|i| strip_arn(i, "build").to_owned())
        .collect();
    let found = state.store.get_builds(&ids).await?;
    let builds: Vec<Value> = found
        .iter()
        .map(|b| render_build(&state.config, b))
        .collect();
    let not_found: Vec<&String> = input
        .ids
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !found.iter().any(|b| &b.id == *id))
        .map(|(original, _)| original)
        .collect();
    Ok(json!({ "builds": builds, "buildsNotFound": not_found }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    #[serde(default)]
    project_name: String,
    sort_order: Option<String>,
    next_token: Option<String>,
}

pub(crate) async fn list_for_project<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let name = strip_arn(&input.project_name, "project");
    match state.store.get_project(name).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "Project cannot be found: {}",
                arn(&state.config, "project", name)
            )));
        }
        Err(e) => return Err(e.into()),
    }
    // Newest first unless asked otherwise, as CodeBuild lists.
    let order = sort_order(input.sort_order.as_deref(), SortOrder::Descending)?;
    let ids = state.store.list_builds_for_project(name, order).await?;
    let (ids, next) = page(ids, input.next_token.as_deref())?;
    let mut out = json!({ "ids": ids });
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(crate) struct Id {
    #[serde(default)]
    id: String,
}

pub(crate) async fn stop<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: Id,
) -> Result<Value, ApiError> {
    let id = strip_arn(&input.id, "build").to_owned();
    let found = state.store.get_builds(std::slice::from_ref(&id)).await?;
    let Some(record) = found.into_iter().next() else {
        return Err(ApiError::not_found(format!("Build cannot be found: {id}")));
    };
    if record.status == "IN_PROGRESS" {
        // The runner records STOPPED when the build has ended; the answer
        // shows the build as it is now, as CodeBuild's does.
        state
            .store
            .record_audit(actor, "build.stop", &id, "requested")
            .await?;
        let stopping = state.runner.stop(&id);
        tracing::info!(build = %id, %actor, stopping, "StopBuild");
    }
    Ok(json!({ "build": render_build(&state.config, &record) }))
}
