//! CreateProject, UpdateProject, BatchGetProjects, DeleteProject, ListProjects,
//! and what a project's JSON means to the build runner.

use gantry_build::executor::ExecutorKind;
use gantry_store::{NewProject, ProjectRecord, ProjectSort, SortOrder, Store, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{arn, page, sort_order, strip_arn, timestamp_ms};
use crate::error::ApiError;
use crate::router::AppState;

/// Source types whose `location` is a git URL the server clones per build.
const GIT_SOURCES: [&str; 6] = [
    "CODECOMMIT",
    "GITHUB",
    "GITHUB_ENTERPRISE",
    "GITLAB",
    "GITLAB_SELF_MANAGED",
    "BITBUCKET",
];

/// Where a build's files come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceKind {
    /// `NO_SOURCE`: an empty directory; the buildspec must be inline.
    None,
    /// A git repository (`file://`, an absolute path, or any URL `git`
    /// clones), cloned per build.
    Git {
        /// The repository.
        url: String,
    },
    /// `CODEPIPELINE`: the source is a pipeline action's input artifact,
    /// put in place by the pipeline host; StartBuild alone refuses it.
    Pipeline,
}

/// A project's source as the runner needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProjectSource {
    pub kind: SourceKind,
    /// `source.buildspec`: inline YAML or a path inside the source.
    pub buildspec: Option<String>,
}

impl ProjectSource {
    pub(crate) fn from_json(source: &Value) -> Result<ProjectSource, String> {
        let kind = source.get("type").and_then(Value::as_str).unwrap_or("");
        let location = source
            .get("location")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let buildspec = source
            .get("buildspec")
            .and_then(Value::as_str)
            .filter(|b| !b.trim().is_empty())
            .map(str::to_owned);
        let kind = match kind {
            "NO_SOURCE" => {
                if buildspec.is_none() {
                    return Err("a NO_SOURCE project needs an inline source.buildspec".into());
                }
                SourceKind::None
            }
            "CODEPIPELINE" => SourceKind::Pipeline,
            k if GIT_SOURCES.contains(&k) => SourceKind::Git {
                url: location
                    .ok_or_else(|| format!("a {k} source needs source.location (a git URL)"))?
                    .to_owned(),
            },
            "" => return Err("source.type is required".into()),
            other => {
                return Err(format!(
                    "source type {other} is not supported by this server; use NO_SOURCE, CODEPIPELINE or a git source ({})",
                    GIT_SOURCES.join(", ")
                ));
            }
        };
        Ok(ProjectSource { kind, buildspec })
    }
}

/// Whether a `buildspec` value is the YAML itself rather than a file path.
pub(crate) fn is_inline_buildspec(text: &str) -> bool {
    text.contains('\n') || text.trim_start().starts_with("version")
}

/// The executor `environment.image` chooses: `gantry:host`, `gantry:sandbox`,
/// or a Docker image.
pub(crate) fn executor_for(image: &str) -> (ExecutorKind, Option<String>) {
    match image {
        "gantry:host" => (ExecutorKind::Host, None),
        "gantry:sandbox" => (ExecutorKind::Sandbox, None),
        other => (ExecutorKind::Docker, Some(other.to_owned())),
    }
}

/// Checks a buildspec text parses, for InvalidInputException.
pub(crate) fn check_buildspec(text: &str, what: &str) -> Result<(), ApiError> {
    gantry_spec::buildspec::parse(text)
        .map(|_| ())
        .map_err(|diags| {
            let rendered: Vec<String> = diags.iter().map(|d| d.render(what)).collect();
            ApiError::invalid_input(format!("Invalid buildspec: {}", rendered.join("; ")))
        })
}

/// Checks plain environment variables (`[{name, value, type}]`).
pub(crate) fn check_env_vars(vars: Option<&Value>, member: &str) -> Result<(), ApiError> {
    let Some(vars) = vars else { return Ok(()) };
    let list = vars
        .as_array()
        .ok_or_else(|| ApiError::invalid_input(format!("{member} must be a list")))?;
    for v in list {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() || v.get("value").and_then(Value::as_str).is_none() {
            return Err(ApiError::invalid_input(format!(
                "every item of {member} needs a name and a string value"
            )));
        }
        if name.starts_with("CODEBUILD_") {
            return Err(ApiError::invalid_input(format!(
                "{member}: names starting with CODEBUILD_ are reserved ({name})"
            )));
        }
        match v.get("type").and_then(Value::as_str).unwrap_or("PLAINTEXT") {
            "PLAINTEXT" => {}
            other => {
                return Err(ApiError::invalid_input(format!(
                    "{member}: variable {name} has type {other}; this server supports only PLAINTEXT so far"
                )));
            }
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=150).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Checks a whole project JSON (after an update's merge too).
fn validate(project: &Map<String, Value>) -> Result<(), ApiError> {
    let name = project.get("name").and_then(Value::as_str).unwrap_or("");
    if !valid_name(name) {
        return Err(ApiError::invalid_input(format!(
            "Invalid project name '{name}': 2 to 150 letters, digits, '-' or '_', starting with a letter or digit"
        )));
    }
    let source = project
        .get("source")
        .ok_or_else(|| ApiError::invalid_input("source is required"))?;
    let parsed = ProjectSource::from_json(source).map_err(ApiError::invalid_input)?;
    if let Some(spec) = parsed.buildspec.as_deref() {
        if is_inline_buildspec(spec) {
            check_buildspec(spec, "source.buildspec")?;
        } else if parsed.kind == SourceKind::None {
            return Err(ApiError::invalid_input(
                "a NO_SOURCE project needs an inline buildspec, not a file name",
            ));
        }
    }
    let environment = project
        .get("environment")
        .ok_or_else(|| ApiError::invalid_input("environment is required"))?;
    let image = environment
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("");
    if image.trim().is_empty() {
        return Err(ApiError::invalid_input(
            "environment.image is required: gantry:host, gantry:sandbox or a Docker image",
        ));
    }
    check_env_vars(
        environment.get("environmentVariables"),
        "environment.environmentVariables",
    )?;
    if let Some(t) = project.get("timeoutInMinutes") {
        match t.as_u64() {
            Some(5..=2160) => {}
            _ => {
                return Err(ApiError::invalid_input(
                    "timeoutInMinutes must be between 5 and 2160",
                ));
            }
        }
    }
    Ok(())
}

/// The project as the API returns it: the stored JSON plus arn and times.
pub(crate) fn render_project(config: &crate::Config, record: &ProjectRecord) -> Value {
    let mut project = record.project.clone();
    if let Some(obj) = project.as_object_mut() {
        obj.insert("name".into(), json!(record.name));
        obj.insert("arn".into(), json!(arn(config, "project", &record.name)));
        obj.insert("created".into(), timestamp_ms(record.created_ms));
        obj.insert("lastModified".into(), timestamp_ms(record.modified_ms));
        obj.entry("timeoutInMinutes").or_insert(json!(60));
        obj.entry("queuedTimeoutInMinutes").or_insert(json!(480));
    }
    project
}

/// Stored members: the input without what the server computes.
fn stored_members(mut input: Map<String, Value>) -> Map<String, Value> {
    for computed in ["arn", "created", "lastModified"] {
        input.remove(computed);
    }
    input.retain(|_, v| !v.is_null());
    input
}

pub(crate) async fn create<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: Map<String, Value>,
) -> Result<Value, ApiError> {
    let project = stored_members(input);
    validate(&project)?;
    let name = project
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let new = NewProject {
        name: name.clone(),
        project: Value::Object(project),
    };
    match state.store.create_project(&new, actor).await {
        Ok(record) => Ok(json!({ "project": render_project(&state.config, &record) })),
        Err(StoreError::Conflict(_)) => Err(ApiError::already_exists(format!(
            "Project already exists: arn:aws:codebuild:{}:{}:project/{name}",
            state.config.region, state.config.account_id
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn update<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: Map<String, Value>,
) -> Result<Value, ApiError> {
    let name = input
        .get("name")
        .and_then(Value::as_str)
        .map(|n| strip_arn(n, "project").to_owned())
        .ok_or_else(|| ApiError::invalid_input("name is required"))?;
    let current = match state.store.get_project(&name).await {
        Ok(p) => p,
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "Project cannot be found: {name}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // UpdateProject replaces the members it is given and keeps the others.
    let mut merged = current.project.as_object().cloned().unwrap_or_default();
    for (k, v) in stored_members(input) {
        merged.insert(k, v);
    }
    merged.insert("name".into(), json!(name));
    validate(&merged)?;
    let new = NewProject {
        name: name.clone(),
        project: Value::Object(merged),
    };
    match state.store.update_project(&new, actor).await {
        Ok(record) => Ok(json!({ "project": render_project(&state.config, &record) })),
        Err(StoreError::NotFound) => Err(ApiError::not_found(format!(
            "Project cannot be found: {name}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct Names {
    #[serde(default)]
    names: Vec<String>,
}

pub(crate) async fn batch_get<S: Store>(
    state: &AppState<S>,
    input: Names,
) -> Result<Value, ApiError> {
    if input.names.is_empty() || input.names.len() > 100 {
        return Err(ApiError::invalid_input(
            "names must hold between 1 and 100 project names",
        ));
    }
    let names: Vec<String> = input
        .names
        .iter()
        .map(|n| strip_arn(n, "project").to_owned())
        .collect();
    let found = state.store.get_projects(&names).await?;
    let projects: Vec<Value> = found
        .iter()
        .map(|p| render_project(&state.config, p))
        .collect();
    let not_found: Vec<&String> = input
        .names
        .iter()
        .zip(&names)
        .filter(|(_, n)| !found.iter().any(|p| &p.name == *n))
        .map(|(original, _)| original)
        .collect();
    Ok(json!({ "projects": projects, "projectsNotFound": not_found }))
}

#[derive(Deserialize)]
pub(crate) struct Name {
    #[serde(default)]
    name: String,
}

pub(crate) async fn delete<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: Name,
) -> Result<Value, ApiError> {
    let name = strip_arn(&input.name, "project");
    if name.is_empty() {
        return Err(ApiError::invalid_input("name is required"));
    }
    match state.store.delete_project(name, actor).await {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(ApiError::not_found(format!(
            "Project cannot be found: {name}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListInput {
    sort_by: Option<String>,
    sort_order: Option<String>,
    next_token: Option<String>,
}

pub(crate) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
) -> Result<Value, ApiError> {
    let sort = match input.sort_by.as_deref() {
        None | Some("NAME") => ProjectSort::Name,
        Some("CREATED_TIME") => ProjectSort::CreatedTime,
        Some("LAST_MODIFIED_TIME") => ProjectSort::LastModifiedTime,
        Some(other) => {
            return Err(ApiError::invalid_input(format!(
                "sortBy must be NAME, CREATED_TIME or LAST_MODIFIED_TIME, not '{other}'"
            )));
        }
    };
    let order = sort_order(input.sort_order.as_deref(), SortOrder::Ascending)?;
    let names = state.store.list_projects(sort, order).await?;
    let (projects, next) = page(names, input.next_token.as_deref())?;
    let mut out = json!({ "projects": projects });
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_codebuild_pattern() {
        assert!(valid_name("web-app_1"));
        assert!(!valid_name("x"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("we b"));
    }

    #[test]
    fn sources_are_read() {
        let s = ProjectSource::from_json(
            &json!({"type": "NO_SOURCE", "buildspec": "version: 0.2\nphases: {}"}),
        );
        assert!(matches!(
            s,
            Ok(ProjectSource {
                kind: SourceKind::None,
                ..
            })
        ));
        assert!(ProjectSource::from_json(&json!({"type": "NO_SOURCE"})).is_err());
        assert!(ProjectSource::from_json(&json!({"type": "S3", "location": "b/k"})).is_err());
        let git = ProjectSource::from_json(&json!({"type": "GITHUB", "location": "file:///r"}));
        assert_eq!(
            git.map(|s| s.kind),
            Ok(SourceKind::Git {
                url: "file:///r".into()
            })
        );
        assert!(is_inline_buildspec("version: 0.2\nphases: {}"));
        assert!(!is_inline_buildspec("ci/buildspec.yml"));
    }
}
