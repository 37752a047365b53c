//! `GET /builds/{id}`: CodeBuild's BatchGetBuilds for one build.

use axum::extract::State;
use axum::response::Response;
use gantry_store::Store;
use serde_json::{Value, json};

use super::{RestError, RestPath, ok};
use crate::codebuild::builds;
use crate::router::AppState;

/// A build as BatchGetBuilds renders it, or NotFound.
pub(super) async fn find<S: Store>(state: &AppState<S>, id: &str) -> Result<Value, RestError> {
    let out = builds::batch_get(
        state,
        builds::Ids {
            ids: vec![id.to_owned()],
        },
    )
    .await?;
    match out["builds"].get(0) {
        Some(build) => Ok(build.clone()),
        None => Err(RestError::not_found(format!("Build {id} was not found"))),
    }
}

/// `{"build": {...}}`.
pub(super) async fn show<S: Store>(
    State(state): State<AppState<S>>,
    RestPath(id): RestPath<String>,
) -> Result<Response, RestError> {
    Ok(ok(&json!({ "build": find(&state, &id).await? })))
}
