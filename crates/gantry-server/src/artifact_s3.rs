//! The artifact endpoint custom-action job workers reach with their own S3
//! client: a minimal S3 (GetObject, HeadObject, PutObject), path-style
//! under `/gantry-artifacts/<key>`, SigV4-checked with a job's short-lived
//! `artifactCredentials`.
//!
//! Credentials are issued per job and allow exactly that job's objects:
//! GET and HEAD of its input zips, PUT of its output zips. Anything else is
//! 403 in S3's XML error shape. Input zips are written on first read from
//! the artifact store (CodePipeline's format: a zip of the artifact's
//! files); an uploaded output zip becomes the action's output artifact
//! when the job succeeds. See docs/custom-actions.md.
//!
//! The objects themselves (input zips, uploads, multipart parts) are named
//! objects of the server's artifact store, not files of its data
//! directory: with a shared store (`--artifact-store s3://...`) a worker
//! may reach any server sharing the database and the store, and an upload
//! through one is read by another.

mod multipart;

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::TryStreamExt;
use gantry_artifacts::{ArtifactRef, ArtifactStore};
use gantry_aws::{RequestParts, SecretKey, Verifier, VerifyOptions};
use gantry_store::{JobCredentials, JobRecord, Store, StoreError, now_ms};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::pipeline_host::BUCKET;
use crate::router::AppState;

/// The largest object a worker may PUT.
pub(crate) const MAX_OBJECT_BYTES: usize = 1 << 30;

/// Signatures for the `s3` signing name, with session tokens and
/// botocore's unsigned streaming uploads (their body is checked against
/// its trailer checksum instead).
static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new(VerifyOptions {
        services: vec!["s3".into()],
        allow_unsigned_payload: true,
        accept_session_token: true,
        allow_streaming_unsigned_trailer: true,
        ..VerifyOptions::default()
    })
});

fn random(n: usize) -> Result<Vec<u8>, ApiError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(ApiError::internal)?;
    Ok(buf)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fresh `artifactCredentials` for a job: stored with the secret
/// encrypted and the session token hashed.
pub(crate) async fn issue_credentials<S: Store>(
    state: &AppState<S>,
    job_id: &str,
) -> Result<Value, ApiError> {
    const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = random(16)?
        .iter()
        .map(|b| BASE32[usize::from(b % 32)] as char)
        .collect();
    let access_key_id = format!("ASIA{id}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = b64.encode(random(30)?);
    let token = b64.encode(random(48)?);
    let ttl = state.config.artifact_credentials_ttl.as_millis() as i64;
    let credentials = JobCredentials {
        access_key_id: access_key_id.clone(),
        job_id: job_id.to_owned(),
        secret: secret.clone(),
        session_token_sha256: sha256_hex(token.as_bytes()),
        expires_ms: now_ms().saturating_add(ttl),
    };
    state.store.put_job_credentials(&credentials).await?;
    Ok(json!({
        "accessKeyId": access_key_id,
        "secretAccessKey": secret,
        "sessionToken": token,
    }))
}

/// Where job objects live in the artifact store.
const OBJECTS_PREFIX: &str = "job-objects";

/// The artifact store's name of an object: the key's hash, so any key
/// (whatever its characters) is one valid name under the prefix.
fn object_name(key: &str) -> String {
    format!("{OBJECTS_PREFIX}/{}", sha256_hex(key.as_bytes()))
}

/// The artifact store, where the objects live (the pipelines' one).
fn job_store<S: Store>(state: &AppState<S>) -> &ArtifactStore {
    &state.pipelines.providers.artifacts
}

/// The job's uploaded output zips, stored as artifacts: name → reference.
/// An output the worker did not upload is left out (the engine then fails
/// the action, naming it); an upload that is not a usable zip is the error.
pub(crate) async fn collect_outputs<S: Store>(
    state: &AppState<S>,
    job: &JobRecord,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let Some(outputs) = job.job.objects["outputs"].as_object() else {
        return Ok(out);
    };
    for (name, key) in outputs {
        let Some(key) = key.as_str() else { continue };
        // A zip is read from its end, so the upload is copied to a local
        // temporary file first (streamed, never whole in memory).
        let file = match download(state, &object_name(key)).await {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => return Err(format!("reading output artifact {name}: {e}")),
        };
        let reference = job_store(state)
            .put_zip(file)
            .await
            .map_err(|e| format!("output artifact {name} (s3://{BUCKET}/{key}): {e}"))?;
        out.insert(name.clone(), reference.to_string());
    }
    Ok(out)
}

/// The named object `name` in an unnamed temporary file of the data
/// directory, positioned at its start; `None` when there is no such object.
async fn download<S: Store>(
    state: &AppState<S>,
    name: &str,
) -> Result<Option<std::fs::File>, String> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let Some((_, mut chunks)) = job_store(state)
        .get_named_stream(name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let dir = &state.config.data_dir;
    let file = tempfile::tempfile_in(dir)
        .map_err(|e| format!("creating a temporary file in {}: {e}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(file);
    while let Some(chunk) = chunks.try_next().await.map_err(|e| e.to_string())? {
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing a temporary file: {e}"))?;
    }
    file.rewind()
        .await
        .map_err(|e| format!("rewinding a temporary file: {e}"))?;
    Ok(Some(file.into_std().await))
}

/// Deletes the objects of an attempt's jobs once the action has its final
/// result: its input zips (rebuilt if read again) and its uploads (stored
/// as artifacts by then). Best effort: an object left behind wastes space
/// only.
pub(crate) async fn remove_objects(store: &ArtifactStore, objects: &Value) {
    let inputs = objects["inputs"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys());
    let outputs = objects["outputs"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_str);
    for key in inputs.map(String::as_str).chain(outputs) {
        if let Err(e) = store.delete_named(&object_name(key)).await {
            tracing::warn!(key, error = %e, "removing a job object failed");
        }
    }
}

/// An S3 error: XML body (none for HEAD), S3's code.
fn s3_error(method: &Method, status: StatusCode, code: &str, message: &str, key: &str) -> Response {
    if method == Method::HEAD {
        return status.into_response();
    }
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>/{BUCKET}/{}</Resource><RequestId>{}</RequestId></Error>",
        escape(message),
        escape(key),
        gantry_aws::new_request_id()
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn denied(method: &Method, key: &str, message: &str) -> Response {
    s3_error(method, StatusCode::FORBIDDEN, "AccessDenied", message, key)
}

/// `%XX` decoding of a path segment (S3 keys are sent encoded).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The session token a request carries, from the header or the
/// presigned query.
fn session_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers.get("x-amz-security-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("X-Amz-Security-Token=")?;
        percent_decode(value)
    })
}

/// A query parameter's decoded value (`Some("")` for a bare name).
fn query_value(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| percent_decode(v)).flatten()
    })
}

/// GET, HEAD and PUT of `/gantry-artifacts/<key>`, and the multipart
/// upload calls (POST, PUT and DELETE with `uploads`/`uploadId`).
pub(crate) async fn serve<S: Store>(
    State(state): State<AppState<S>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let prefix = format!("/{BUCKET}/");
    let Some(key) = uri
        .path()
        .strip_prefix(&prefix)
        .and_then(percent_decode)
        .filter(|k| !k.is_empty())
    else {
        return s3_error(
            &method,
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The object key is missing or badly encoded",
            "",
        );
    };
    // Who signed it: job credentials only.
    let Some(claimed) = crate::auth::claimed_access_key(&headers, uri.query().unwrap_or("")) else {
        return denied(
            &method,
            &key,
            "The request is not signed with job artifact credentials",
        );
    };
    let credentials = match state.store.job_credentials(&claimed).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => {
            return s3_error(
                &method,
                StatusCode::FORBIDDEN,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
                &key,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading job credentials failed");
            return s3_error(
                &method,
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
                &key,
            );
        }
    };
    if credentials.expires_ms <= now_ms() {
        return s3_error(
            &method,
            StatusCode::FORBIDDEN,
            "ExpiredToken",
            "The provided token has expired.",
            &key,
        );
    }
    let token_ok = session_token(&headers, &uri).is_some_and(|t| {
        bool::from(
            sha256_hex(t.as_bytes())
                .as_bytes()
                .ct_eq(credentials.session_token_sha256.as_bytes()),
        )
    });
    if !token_ok {
        return s3_error(
            &method,
            StatusCode::FORBIDDEN,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.",
            &key,
        );
    }
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = RequestParts::new(method.as_str(), target).body(&body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    let secret = SecretKey::new(credentials.secret.clone());
    if let Err(e) = VERIFIER.verify(&request, SystemTime::now(), |_| Some(secret)) {
        return s3_error(
            &method,
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            &e.to_string(),
            &key,
        );
    }
    // What these credentials may touch: the job's own objects.
    let job = match state.store.get_job(&credentials.job_id).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(job = %credentials.job_id, error = %e, "reading the job of credentials failed");
            return denied(&method, &key, "The job of these credentials is gone");
        }
    };
    let objects = &job.job.objects;
    match method {
        Method::GET | Method::HEAD => {
            let Some(reference) = objects["inputs"][key.as_str()].as_str() else {
                return denied(&method, &key, "These credentials may not read this object");
            };
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            get_input(&state, &method, &key, reference, range).await
        }
        Method::PUT | Method::POST | Method::DELETE => {
            let allowed = objects["outputs"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v.as_str() == Some(key.as_str())));
            if !allowed {
                return denied(&method, &key, "These credentials may not write this object");
            }
            let store = job_store(&state);
            let upload = query_value(&uri, "uploadId");
            match (&method, upload) {
                (&Method::PUT, None) => put_output(store, &method, &key, &headers, &body).await,
                (&Method::PUT, Some(id)) => {
                    let part = query_value(&uri, "partNumber").unwrap_or_default();
                    multipart::upload_part(store, &method, &key, &id, &part, &headers, &body).await
                }
                (&Method::POST, None) if query_value(&uri, "uploads").is_some() => {
                    multipart::create(store, &method, &key).await
                }
                (&Method::POST, Some(id)) => {
                    multipart::complete(store, &method, &key, &id, &body).await
                }
                (&Method::DELETE, Some(id)) => multipart::abort(store, &method, &key, &id).await,
                _ => s3_error(
                    &method,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    &key,
                ),
            }
        }
        _ => s3_error(
            &method,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            &key,
        ),
    }
}

fn etag(data: &[u8]) -> String {
    format!("\"{}\"", &sha256_hex(data)[..32])
}

async fn get_input<S: Store>(
    state: &AppState<S>,
    method: &Method,
    key: &str,
    reference: &str,
    range: Option<&str>,
) -> Response {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(key, error = %e, "{what} failed");
        s3_error(
            method,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The artifact could not be read",
            key,
        )
    };
    let store = job_store(state);
    let name = object_name(key);
    let len = match store.named_size(&name).await {
        Ok(Some(len)) => len,
        Ok(None) => match write_input_zip(state, &name, reference).await {
            Ok(len) => len,
            Err(e) => return internal("writing an input zip", &e),
        },
        Err(e) => return internal("reading an input zip", &e),
    };
    // The zip of one artifact is always the same bytes (write_zip is
    // deterministic), whichever server wrote it: its tag follows from the
    // reference, with no need to read the object.
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_owned()),
        (header::ETAG, etag(reference.as_bytes())),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
    ];
    if *method == Method::HEAD {
        let mut response = (StatusCode::OK, headers).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, len.into());
        return response;
    }
    let Ok(size) = usize::try_from(len) else {
        return internal("reading an input zip", &"the object is too large");
    };
    // Ranged GETs: s3transfer downloads large objects in parts.
    match range.map(|r| byte_range(r, size)) {
        None | Some(Ok(None)) => match store.get_named_stream(&name).await {
            Ok(Some((len, chunks))) => {
                let mut response =
                    (StatusCode::OK, headers, Body::from_stream(chunks)).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, len.into());
                response
            }
            Ok(None) => internal("reading an input zip", &"the object is gone"),
            Err(e) => internal("reading an input zip", &e),
        },
        Some(Ok(Some((start, end)))) => {
            let part = match store
                .get_named_range(&name, start as u64..end as u64 + 1)
                .await
            {
                Ok(part) => part,
                Err(e) => return internal("reading an input zip", &e),
            };
            let content_range = format!("bytes {start}-{end}/{len}");
            (
                StatusCode::PARTIAL_CONTENT,
                headers,
                [(header::CONTENT_RANGE, content_range)],
                part,
            )
                .into_response()
        }
        Some(Err(())) => s3_error(
            method,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            "The requested range is not satisfiable",
            key,
        ),
    }
}

/// One HTTP byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) of an object
/// of `len` bytes, as inclusive offsets. `Ok(None)` for a header S3 would
/// ignore (another unit, several ranges); `Err` for one it cannot satisfy.
fn byte_range(spec: &str, len: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => {
            let n: usize = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (false, _) => {
            let start: usize = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse::<usize>()
                    .map_err(|_| ())?
                    .min(len.saturating_sub(1))
            };
            (start, end)
        }
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Zips the artifact into the named object `name` (through a temporary
/// file, then one atomic write, so a reader never sees half a zip);
/// returns its size. Two servers writing it at once write the same bytes.
async fn write_input_zip<S: Store>(
    state: &AppState<S>,
    name: &str,
    reference: &str,
) -> Result<u64, String> {
    let r: ArtifactRef = reference
        .parse()
        .map_err(|_| format!("bad artifact reference {reference}"))?;
    let dir = &state.config.data_dir;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("creating a temporary file in {}: {e}", dir.display()))?;
    let file = tmp.reopen().map_err(|e| e.to_string())?;
    let store = job_store(state);
    store.write_zip(&r, file).await.map_err(|e| e.to_string())?;
    store
        .put_named_file(name, tmp.path())
        .await
        .map_err(|e| e.to_string())
}

async fn put_output(
    store: &ArtifactStore,
    method: &Method,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let data = match decode_body(method, key, headers, body) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let tag = etag(&data);
    if let Err(e) = store.put_named(&object_name(key), data).await {
        tracing::error!(key, error = %e, "storing an uploaded object failed");
        return s3_error(
            method,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The object could not be stored",
            key,
        );
    }
    (StatusCode::OK, [(header::ETAG, tag)]).into_response()
}

/// The bytes an upload carries: `aws-chunked` decoded, its length and
/// checksums (trailer or header) verified. The error is S3's answer.
fn decode_body(
    method: &Method,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, Box<Response>> {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let chunked = header_str("x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"))
        || header_str("content-encoding").is_some_and(|v| v.contains("aws-chunked"));
    let (data, trailers) = if chunked {
        match decode_aws_chunked(body) {
            Ok(d) => d,
            Err(m) => {
                return Err(Box::new(s3_error(
                    method,
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    &m,
                    key,
                )));
            }
        }
    } else {
        (body.to_vec(), BTreeMap::new())
    };
    if let Some(n) = header_str("x-amz-decoded-content-length")
        && n.parse::<usize>().ok() != Some(data.len())
    {
        return Err(Box::new(s3_error(
            method,
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "The decoded body length does not match x-amz-decoded-content-length",
            key,
        )));
    }
    // Checksums: the trailer's, else a header's.
    let mut checks: Vec<(String, String)> = trailers.into_iter().collect();
    for (name, value) in headers {
        // `-algorithm` and `-type` name the checksum; they are not one.
        if name.as_str().starts_with("x-amz-checksum-")
            && !matches!(
                name.as_str(),
                "x-amz-checksum-algorithm" | "x-amz-checksum-type"
            )
            && let Ok(v) = value.to_str()
        {
            checks.push((name.as_str().to_owned(), v.to_owned()));
        }
    }
    for (name, expected) in &checks {
        let b64 = base64::engine::general_purpose::STANDARD;
        let actual = match name.as_str() {
            "x-amz-checksum-crc32" => b64.encode(crc32fast::hash(&data).to_be_bytes()),
            "x-amz-checksum-sha256" => b64.encode(Sha256::digest(&data)),
            other => {
                return Err(Box::new(s3_error(
                    method,
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    &format!(
                        "The checksum {other} is not supported by this endpoint; use CRC32 or SHA256"
                    ),
                    key,
                )));
            }
        };
        if actual != *expected {
            return Err(Box::new(s3_error(
                method,
                StatusCode::BAD_REQUEST,
                "BadDigest",
                &format!("The {name} you specified did not match the calculated checksum."),
                key,
            )));
        }
    }
    Ok(data)
}

/// Decodes an `aws-chunked` body: `<hex size>[;ext]\r\n<bytes>\r\n`…,
/// a zero-size chunk, then trailer lines `name:value\r\n` and `\r\n`.
/// Returns the data and the trailers (names lowercased).
pub(crate) fn decode_aws_chunked(
    body: &[u8],
) -> Result<(Vec<u8>, BTreeMap<String, String>), String> {
    let mut data = Vec::new();
    let mut rest = body;
    let line = |rest: &mut &[u8]| -> Result<String, String> {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk line is not terminated by CRLF")?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| "a chunk line is not UTF-8")?
            .to_owned();
        *rest = &rest[end + 2..];
        Ok(text)
    };
    loop {
        let header = line(&mut rest)?;
        let size_hex = header.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size '{size_hex}'"))?;
        if size == 0 {
            break;
        }
        let end = size
            .checked_add(2)
            .ok_or_else(|| format!("bad chunk size '{size_hex}'"))?;
        if rest.len() < end || &rest[size..end] != b"\r\n" {
            return Err("a chunk is shorter than its size".into());
        }
        data.extend_from_slice(&rest[..size]);
        rest = &rest[end..];
    }
    let mut trailers = BTreeMap::new();
    while !rest.is_empty() {
        let l = line(&mut rest)?;
        if l.is_empty() {
            break;
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| format!("bad trailer line '{l}'"))?;
        trailers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    Ok((data, trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_decode_with_their_trailer() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let (data, trailers) = decode_aws_chunked(body).expect("decodes");
        assert_eq!(data, b"hello world");
        assert_eq!(trailers["x-amz-checksum-crc32"], "DUoRhQ==");
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(b64.encode(crc32fast::hash(&data).to_be_bytes()), "DUoRhQ==");
        assert!(decode_aws_chunked(b"5\r\nhel").is_err());
        assert!(decode_aws_chunked(b"zz\r\n").is_err());
        assert!(decode_aws_chunked(b"ffffffffffffffff\r\nx").is_err());
        assert!(decode_aws_chunked(b"5\r\nhelloXX0\r\n\r\n").is_err());
        assert!(decode_aws_chunked(b"5;chunk-signature=ab\r\nhello\r\n0\r\n\r\n").is_ok());
    }

    #[test]
    fn keys_are_one_name_under_the_prefix() {
        let name = object_name("../../etc/passwd");
        let hash = name.strip_prefix("job-objects/").expect("prefix");
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    }

    #[test]
    fn byte_ranges_follow_http() {
        assert_eq!(byte_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(byte_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Err(()));
        assert_eq!(byte_range("bytes=9-1", 100), Err(()));
        assert_eq!(byte_range("bytes=x-1", 100), Err(()));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(byte_range("items=0-1", 100), Ok(None));
        assert_eq!(byte_range("bytes=-5", 0), Err(()));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b/c").as_deref(), Some("a@b/c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
