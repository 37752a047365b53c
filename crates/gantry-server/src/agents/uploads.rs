//! Resumable uploads named by their content hash: `HEAD` says how many
//! bytes the servers hold (header `upload-offset`), `PUT ?offset=N&total=T`
//! adds the next bytes, and the upload is kept only once its bytes hash to
//! its name. A dropped connection resumes from the offset, not from 0.
//!
//! The pieces live in the artifact store, not on this server's disk, so
//! with a shared store (`--artifact-store s3://...`) an agent behind a load
//! balancer may send each piece, and then its result, to any server:
//!
//! - `agent-uploads/<sha256>.parts/<offset, 20 digits>`: one object a
//!   piece, named by where it starts (so a piece sent twice, to two
//!   servers, is one object);
//! - `agent-uploads/<sha256>.zip`: the whole upload, once its last piece
//!   came and the pieces hashed to the name; then the pieces go.
//!
//! The whole upload is removed when the result naming it has been taken.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use gantry_agent::protocol::{UPLOAD_OFFSET, UploadState};
use gantry_artifacts::ArtifactStore;
use gantry_store::Store;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::protocol::AgentError;
use super::tokens;
use crate::router::AppState;

/// Where uploads live in the artifact store.
const PREFIX: &str = "agent-uploads";

/// The name, checked: 64 lowercase hex digits (it becomes part of a key).
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

fn whole_key(sha256: &str) -> String {
    format!("{PREFIX}/{sha256}.zip")
}

fn parts_prefix(sha256: &str) -> String {
    format!("{PREFIX}/{sha256}.parts")
}

/// Zero-padded, so the store's key order is the pieces' order.
fn part_key(sha256: &str, offset: u64) -> String {
    format!("{}/{offset:020}", parts_prefix(sha256))
}

fn internal(e: impl std::fmt::Display) -> AgentError {
    AgentError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The pieces that follow one another from offset 0, in order, and where
/// they end. A piece that does not start where the run so far ends (left
/// by a client that changed its piece size mid-way) is passed over; the
/// run stops at the first gap. The hash check at the end catches anything
/// else.
fn contiguous(sha256: &str, listed: Vec<(String, u64)>) -> (Vec<String>, u64) {
    let prefix = format!("{}/", parts_prefix(sha256));
    let mut run = Vec::new();
    let mut end = 0u64;
    for (key, size) in listed {
        let Some(start) = key
            .strip_prefix(&prefix)
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if start > end {
            break;
        }
        if start == end && size > 0 {
            end += size;
            run.push(key);
        }
    }
    (run, end)
}

/// What the store holds of upload `sha256`, and the pieces that make it.
async fn state_of(
    objects: &ArtifactStore,
    sha256: &str,
) -> Result<(UploadState, Vec<String>), AgentError> {
    if let Some(size) = objects
        .named_size(&whole_key(sha256))
        .await
        .map_err(internal)?
    {
        let done = UploadState {
            offset: size,
            complete: true,
        };
        return Ok((done, Vec::new()));
    }
    let listed = objects
        .list_named(&parts_prefix(sha256))
        .await
        .map_err(internal)?;
    let (pieces, offset) = contiguous(sha256, listed);
    let partial = UploadState {
        offset,
        complete: false,
    };
    Ok((partial, pieces))
}

fn answer(state: &UploadState) -> Response {
    let mut response = super::protocol::json_status(StatusCode::OK, state);
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.offset.to_string()) {
        response.headers_mut().insert(UPLOAD_OFFSET, v);
    }
    response
}

pub(super) async fn head<S: Store>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    tokens::bearer(&state, &headers).await?;
    let sha256 = checked(&sha256)?;
    let (now, _) = state_of(&state.runner.objects, sha256).await?;
    Ok(answer(&now))
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
    let objects = &state.runner.objects;
    let (now, _) = state_of(objects, sha256).await?;
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
    if body.is_empty() && end < total {
        return Err(AgentError(
            StatusCode::BAD_REQUEST,
            format!("an empty piece at offset {offset} of {total} bytes adds nothing"),
        ));
    }
    if !body.is_empty() {
        objects
            .put_named(&part_key(sha256, offset), body)
            .await
            .map_err(internal)?;
    }
    if end < total {
        return Ok(answer(&UploadState {
            offset: end,
            complete: false,
        }));
    }
    // The last piece: read the run of pieces back (another server may hold
    // none of them in memory), hashing as they are joined into the whole.
    // Should the join fail (the store, or a piece another server's join of
    // the same upload just removed), the pieces stay and the agent asks
    // again.
    let (held, pieces) = state_of(objects, sha256).await?;
    if held.complete {
        // Another server joined it meanwhile (the same piece sent twice).
        return Ok(answer(&held));
    }
    let mismatch = join_verified(objects, sha256, &pieces).await?;
    // Joined, or not worth keeping: the pieces go.
    if let Err(e) = objects.delete_named_prefix(&parts_prefix(sha256)).await {
        tracing::warn!(upload = %sha256, error = %e, "removing an upload's pieces failed");
    }
    match mismatch {
        Some(actual) => {
            let _ = objects.delete_named(&whole_key(sha256)).await;
            Err(AgentError(
                StatusCode::BAD_REQUEST,
                format!("the uploaded bytes hash to {actual}, not {sha256}; upload again from 0"),
            ))
        }
        None => Ok(answer(&UploadState {
            offset: end,
            complete: true,
        })),
    }
}

/// Joins `pieces` into the whole upload, hashing the bytes on the way;
/// `Some(actual hash)` when they do not hash to `sha256` (the whole object
/// is then the caller's to remove).
async fn join_verified(
    objects: &ArtifactStore,
    sha256: &str,
    pieces: &[String],
) -> Result<Option<String>, AgentError> {
    let (_, digest) = objects
        .concat_named_digest(&whole_key(sha256), pieces)
        .await
        .map_err(internal)?;
    let actual = digest.to_hex();
    Ok((actual != sha256).then_some(actual))
}

/// Unpacks the verified zip upload `sha256` into `dest` (replacing it),
/// from the artifact store, whichever server received its pieces. The
/// bytes are hashed again on the way: the store is trusted to keep them,
/// not to name them.
pub(super) async fn unpack_into(
    objects: &ArtifactStore,
    sha256: &str,
    dest: &std::path::Path,
) -> Result<(), String> {
    let sha256 = checked(sha256).map_err(|e| e.1)?;
    let Some((_, mut chunks)) = objects
        .get_named_stream(&whole_key(sha256))
        .await
        .map_err(|e| format!("reading the artifacts upload {sha256}: {e}"))?
    else {
        return Err(format!("the artifacts upload {sha256} is not complete"));
    };
    let spool = tempfile::tempfile().map_err(|e| format!("a temporary file: {e}"))?;
    let mut file = tokio::fs::File::from_std(spool);
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("reading the artifacts upload {sha256}: {e}"))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("spooling the artifacts upload: {e}"))?;
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != sha256 {
        return Err(format!(
            "the stored artifacts upload hashes to {actual}, not {sha256}"
        ));
    }
    let mut file = file.into_std().await;
    std::io::Seek::rewind(&mut file).map_err(|e| format!("rewinding the upload: {e}"))?;
    // Unzipped through a throwaway local store beside `dest`: the shared
    // store gets only the artifacts' trees, which the caller puts there.
    let parent = dest.parent().unwrap_or(std::path::Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let scratch = tempfile::tempdir_in(parent)
        .map_err(|e| format!("a scratch directory in {}: {e}", parent.display()))?;
    let unzipper = ArtifactStore::local(scratch.path())
        .map_err(|e| format!("a scratch store in {}: {e}", scratch.path().display()))?;
    let reference = unzipper
        .put_zip(file)
        .await
        .map_err(|e| format!("reading the artifacts zip: {e}"))?;
    match tokio::fs::remove_dir_all(dest).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("clearing {}: {e}", dest.display())),
    }
    unzipper
        .materialize(&reference, dest)
        .await
        .map_err(|e| format!("unpacking the artifacts: {e}"))?;
    Ok(())
}

/// Removes the whole upload `sha256` once the result naming it is taken.
pub(super) async fn forget(objects: &ArtifactStore, sha256: &str) {
    if checked(sha256).is_err() {
        return;
    }
    if let Err(e) = objects.delete_named(&whole_key(sha256)).await {
        tracing::warn!(upload = %sha256, error = %e, "removing a taken upload failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn piece(start: u64, size: u64) -> (String, u64) {
        (part_key(SHA, start), size)
    }

    #[test]
    fn the_offset_is_where_the_run_of_pieces_from_zero_ends() {
        assert_eq!(contiguous(SHA, vec![]), (vec![], 0));
        let (run, end) = contiguous(SHA, vec![piece(0, 10), piece(10, 5)]);
        assert_eq!((run.len(), end), (2, 15));
        // A gap ends the run: what lies beyond it is not counted.
        let (run, end) = contiguous(SHA, vec![piece(0, 10), piece(20, 5)]);
        assert_eq!((run, end), (vec![part_key(SHA, 0)], 10));
        // A piece inside the run (another piece size) is passed over.
        let (run, end) = contiguous(SHA, vec![piece(0, 10), piece(4, 10), piece(10, 1)]);
        assert_eq!((run, end), (vec![part_key(SHA, 0), part_key(SHA, 10)], 11));
        // Nothing from 0: nothing held.
        assert_eq!(contiguous(SHA, vec![piece(5, 5)]).1, 0);
    }

    #[test]
    fn pieces_are_named_so_that_key_order_is_offset_order() {
        assert!(part_key(SHA, 9) < part_key(SHA, 10));
        assert!(part_key(SHA, 10_000_000) < part_key(SHA, 100_000_000));
    }
}
