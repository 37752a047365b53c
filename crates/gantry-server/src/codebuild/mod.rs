//! CodeBuild's API (2016-10-06), with the member names of botocore's model.
//!
//! Each operation takes the parsed JSON input and returns the JSON output;
//! errors are CodeBuild's modelled exceptions (`InvalidInputException`,
//! `ResourceNotFoundException`, `ResourceAlreadyExistsException`).

mod builds;
mod projects;

use gantry_aws::{AwsError, ErrorCode, VerifiedCaller};
use gantry_store::{SortOrder, Store};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) use builds::{StartInput as StartBuildInput, render_build, start as start_build};
pub(crate) use projects::{SourceKind, executor_for};

/// Runs one operation.
pub(crate) async fn dispatch<S: Store>(
    state: &AppState<S>,
    caller: &VerifiedCaller,
    operation: &str,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let actor = caller.access_key_id.as_str();
    match operation {
        "CreateProject" => projects::create(state, actor, input(body)?).await,
        "UpdateProject" => projects::update(state, actor, input(body)?).await,
        "BatchGetProjects" => projects::batch_get(state, input(body)?).await,
        "DeleteProject" => projects::delete(state, actor, input(body)?).await,
        "ListProjects" => projects::list(state, input(body)?).await,
        "StartBuild" => builds::start(state, actor, input(body)?).await,
        "BatchGetBuilds" => builds::batch_get(state, input(body)?).await,
        "ListBuildsForProject" => builds::list_for_project(state, input(body)?).await,
        "StopBuild" => builds::stop(state, actor, input(body)?).await,
        other => Err(AwsError::new(
            ErrorCode::UnknownOperationException,
            format!("CodeBuild operation '{other}' is not supported by this server."),
        )
        .into()),
    }
}

fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    Ok(gantry_aws::parse_body(body)?)
}

/// `arn:aws:codebuild:<region>:<account>:<kind>/<name>`.
pub(crate) fn arn(config: &crate::Config, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:codebuild:{}:{}:{kind}/{name}",
        config.region, config.account_id
    )
}

/// A JSON-protocol timestamp from epoch milliseconds.
pub(crate) fn timestamp_ms(ms: i64) -> serde_json::Value {
    let t = if ms >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    gantry_aws::timestamp(t)
}

/// `sortOrder`: `ASCENDING` or `DESCENDING`, `default` when absent.
fn sort_order(value: Option<&str>, default: SortOrder) -> Result<SortOrder, ApiError> {
    match value {
        None => Ok(default),
        Some("ASCENDING") => Ok(SortOrder::Ascending),
        Some("DESCENDING") => Ok(SortOrder::Descending),
        Some(other) => Err(ApiError::invalid_input(format!(
            "sortOrder must be ASCENDING or DESCENDING, not '{other}'"
        ))),
    }
}

/// The page size of List operations (CodeBuild's is 100).
const PAGE: usize = 100;

/// One page of `items` from `next_token` (an offset this server handed out).
fn page(
    items: Vec<String>,
    next_token: Option<&str>,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= items.len())
            .ok_or_else(|| ApiError::invalid_input("Invalid nextToken"))?,
    };
    let end = (start + PAGE).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// A name or an ARN (`arn:...:project/NAME`, `arn:...:build/ID`) reduced to
/// the name or id.
fn strip_arn<'a>(value: &'a str, kind: &str) -> &'a str {
    match value.split_once(&format!(":{kind}/")) {
        Some((_, rest)) if value.starts_with("arn:") => rest,
        _ => value,
    }
}
