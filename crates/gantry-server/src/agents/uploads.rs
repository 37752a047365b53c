//! Resumable uploads named by their content hash: `HEAD` says how many
//! bytes the server holds (header `upload-offset`), `PUT ?offset=N&total=T`
//! appends the next bytes, and the upload is kept only once its bytes hash
//! to its name. A dropped connection resumes from the offset, not from 0.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use gantry_agent::protocol::{UPLOAD_OFFSET, UploadState};
use gantry_store::Store;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::protocol::AgentError;
use super::{AgentHub, tokens};
use crate::router::AppState;

/// The name, checked: 64 lowercase hex digits (it becomes a file name).
fn checked(sha256: &str) -> Result<&str, AgentError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(sha256)
    } else {
        Err(AgentError(
            StatusCode::BAD_REQUEST,
            format!("`{sha256}` is not a sha256 (64 lowercase hex digits)"),
        ))
    }
}

fn paths(hub: &AgentHub, sha256: &str) -> (PathBuf, PathBuf) {
    (
        hub.uploads.join(sha256),
        hub.uploads.join(format!("{sha256}.part")),
    )
}

async fn len(path: &FsPath) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.len())
}

async fn state_of(hub: &AgentHub, sha256: &str) -> UploadState {
    let (done, part) = paths(hub, sha256);
    match len(&done).await {
        Some(n) => UploadState {
            offset: n,
            complete: true,
        },
        None => UploadState {
            offset: len(&part).await.unwrap_or(0),
            complete: false,
        },
    }
}

fn answer(state: &UploadState) -> Response {
    let mut response = super::protocol::json_status(StatusCode::OK, state);
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.offset.to_string()) {
        response.headers_mut().insert(UPLOAD_OFFSET, v);
    }
    response
}

fn internal(e: impl std::fmt::Display) -> AgentError {
    AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(super) async fn head<S: Store>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    tokens::bearer(&state, &headers).await?;
    let sha256 = checked(&sha256)?;
    Ok(answer(&state_of(&state.runner.hub, sha256).await))
}

pub(super) async fn put<S: Store>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AgentError> {
    tokens::bearer(&state, &headers).await?;
    let sha256 = checked(&sha256)?;
    let number = |name: &str| -> Result<u64, AgentError> {
        crate::rest::query_param(&uri, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                AgentError(
                    StatusCode::BAD_REQUEST,
                    format!("the {name} query parameter (an integer) is required"),
                )
            })
    };
    let (offset, total) = (number("offset")?, number("total")?);
    let hub = &state.runner.hub;
    tokio::fs::create_dir_all(&hub.uploads)
        .await
        .map_err(internal)?;
    let now = state_of(hub, sha256).await;
    if now.complete {
        return Ok(answer(&now));
    }
    if offset != now.offset {
        return Err(AgentError(
            StatusCode::CONFLICT,
            format!(
                "the upload holds {} bytes; send from offset {}",
                now.offset, now.offset
            ),
        ));
    }
    let end = offset + body.len() as u64;
    if end > total {
        return Err(AgentError(
            StatusCode::BAD_REQUEST,
            format!("{end} bytes would pass the declared total of {total}"),
        ));
    }
    let (done, part) = paths(hub, sha256);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .await
        .map_err(internal)?;
    file.write_all(&body).await.map_err(internal)?;
    file.flush().await.map_err(internal)?;
    drop(file);
    if end < total {
        return Ok(answer(&UploadState {
            offset: end,
            complete: false,
        }));
    }
    let bytes = tokio::fs::read(&part).await.map_err(internal)?;
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(AgentError(
            StatusCode::BAD_REQUEST,
            format!("the uploaded bytes hash to {actual}, not {sha256}; upload again from 0"),
        ));
    }
    tokio::fs::rename(&part, &done).await.map_err(internal)?;
    Ok(answer(&UploadState {
        offset: end,
        complete: true,
    }))
}

/// Unpacks the verified zip upload `sha256` into `dest` (replacing it).
pub(super) async fn unpack_into(hub: &AgentHub, sha256: &str, dest: &FsPath) -> Result<(), String> {
    let sha256 = checked(sha256).map_err(|e| e.1)?;
    let (done, _) = paths(hub, sha256);
    let file = std::fs::File::open(&done)
        .map_err(|e| format!("the artifacts upload {sha256} is not complete: {e}"))?;
    let reference = hub
        .objects
        .put_zip(file)
        .await
        .map_err(|e| format!("reading the artifacts zip: {e}"))?;
    match tokio::fs::remove_dir_all(dest).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("clearing {}: {e}", dest.display())),
    }
    hub.objects
        .materialize(&reference, dest)
        .await
        .map_err(|e| format!("unpacking the artifacts: {e}"))?;
    let _ = tokio::fs::remove_file(&done).await;
    Ok(())
}
