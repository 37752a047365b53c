//! `GET /pipelines` and `GET /pipelines/{name}`: CodePipeline's
//! ListPipelines, GetPipeline and GetPipelineState service functions.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use gantry_store::Store;
use serde_json::json;

use super::{RestError, RestPath, ok, query_param};
use crate::codepipeline::{executions, pipelines};
use crate::router::AppState;

/// `?maxResults=N`, checked here so the error names the parameter.
pub(super) fn max_results(uri: &Uri) -> Result<Option<u32>, RestError> {
    match query_param(uri, "maxResults") {
        None => Ok(None),
        Some(text) => text.parse::<u32>().map(Some).map_err(|_| {
            RestError::invalid_input(format!(
                "Query parameter 'maxResults' must be a positive integer, not '{text}'"
            ))
        }),
    }
}

/// The pipelines, by name: `{"pipelines": [...], "nextToken"?}`.
pub(super) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    uri: Uri,
) -> Result<Response, RestError> {
    let input = pipelines::ListInput {
        next_token: query_param(&uri, "nextToken"),
        max_results: max_results(&uri)?.map(i64::from),
    };
    Ok(ok(&pipelines::list(&state, input).await?))
}

/// A pipeline's declaration, metadata and the current state of each of
/// its stages and actions.
pub(super) async fn show<S: Store>(
    State(state): State<AppState<S>>,
    RestPath(name): RestPath<String>,
) -> Result<Response, RestError> {
    let declared = pipelines::get(
        &state,
        pipelines::GetInput {
            name: Some(name.clone()),
            version: None,
        },
    )
    .await?;
    let current =
        executions::pipeline_state(&state, executions::StateInput { name: Some(name) }).await?;
    Ok(ok(&json!({
        "pipeline": declared["pipeline"],
        "metadata": declared["metadata"],
        "version": current["pipelineVersion"],
        "stages": current["stageStates"],
    })))
}
