//! `GET /builds/{id}`: CodeBuild's BatchGetBuilds for one build;
//! `GET /builds/{id}/artifacts`: its artifacts as a zip.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use gantry_artifacts::ArtifactRef;
use gantry_store::Store;
use serde_json::{Value, json};

use super::{RestError, RestPath, ok, query_param};
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

/// `GET /builds/{id}/artifacts[?artifact=IDENTIFIER]`: the build's primary
/// artifact (or the secondary artifact with that identifier) as a zip,
/// read from the artifact store, so any server sharing the store serves
/// it, whichever server ran the build.
pub(super) async fn artifacts<S: Store>(
    State(state): State<AppState<S>>,
    RestPath(id): RestPath<String>,
    uri: Uri,
) -> Result<Response, RestError> {
    let build = find(&state, &id).await?;
    let wanted = query_param(&uri, "artifact");
    let entry = match &wanted {
        None => Some(&build["artifacts"]),
        Some(name) => build["secondaryArtifacts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["artifactIdentifier"].as_str() == Some(name.as_str())),
    };
    let what = wanted.as_deref().map_or_else(
        || "a primary artifact".to_owned(),
        |n| format!("an artifact {n:?}"),
    );
    let reference: ArtifactRef = entry
        .and_then(|a| a["location"].as_str())
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| RestError::not_found(format!("Build {id} has no stored {what}")))?;
    // The zip is written to an unnamed temporary file (a zip's directory
    // comes last), then streamed from it.
    let dir = &state.config.data_dir;
    let file = tempfile::tempfile_in(dir).map_err(|e| {
        RestError::internal(format!(
            "creating a temporary file in {}: {e}",
            dir.display()
        ))
    })?;
    let mut file = state
        .pipelines
        .providers
        .artifacts
        .write_zip(&reference, file)
        .await
        .map_err(|e| RestError::internal(format!("reading artifact {reference}: {e}")))?;
    let len = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
        .and_then(|_| file.metadata())
        .map_err(|e| RestError::internal(format!("reading the zip: {e}")))?
        .len();
    let chunks =
        futures_util::stream::try_unfold(tokio::fs::File::from_std(file), |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            buf.truncate(n);
            Ok(Some((axum::body::Bytes::from(buf), f)))
        });
    let name = wanted.unwrap_or_else(|| "artifacts".to_owned());
    let disposition = format!(
        "attachment; filename=\"{}.zip\"",
        name.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        )
    );
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, len.into());
    Ok(response)
}
