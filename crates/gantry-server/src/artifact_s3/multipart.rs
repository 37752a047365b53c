//! S3 multipart uploads of output objects (CreateMultipartUpload,
//! UploadPart, CompleteMultipartUpload, AbortMultipartUpload): what
//! s3transfer's `upload_file` uses above its multipart threshold.
//!
//! An upload is named objects of the artifact store under
//! `job-objects-uploads/<uploadId>/`: `key`, the object key it is for, and
//! its parts `part-<n>`. So every server sharing the store knows every
//! upload, and a worker may send its parts to any of them. Completing it
//! streams the parts named in the request, in order, into the object.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gantry_artifacts::ArtifactStore;

use super::{decode_body, etag, object_name, s3_error};
use crate::pipeline_host::BUCKET;

/// Parts per upload (S3's limit).
const MAX_PARTS: u32 = 10_000;

/// Where uploads live in the artifact store.
const UPLOADS_PREFIX: &str = "job-objects-uploads";

fn upload_prefix(id: &str) -> String {
    format!("{UPLOADS_PREFIX}/{id}")
}

fn part_name(prefix: &str, n: u32) -> String {
    format!("{prefix}/part-{n}")
}

/// The upload's prefix when `id` is one a server handed out for `key`; the
/// error is S3's `NoSuchUpload` (or `InternalError` when the store fails).
async fn upload_dir(
    store: &ArtifactStore,
    method: &Method,
    key: &str,
    id: &str,
) -> Result<String, Box<Response>> {
    let no_such = || {
        s3_error(
            method,
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist.",
            key,
        )
    };
    // A UUID's shape only: the id becomes part of an object name.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Box::new(no_such()));
    }
    let prefix = upload_prefix(id);
    let name = format!("{prefix}/key");
    match store.named_size(&name).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Box::new(no_such())),
        Err(e) => return Err(Box::new(internal(method, key, "reading an upload", &e))),
    }
    match store.get_named(&name).await {
        Ok(k) if k == key.as_bytes() => Ok(prefix),
        Ok(_) => Err(Box::new(no_such())),
        Err(e) => Err(Box::new(internal(method, key, "reading an upload", &e))),
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn internal(method: &Method, key: &str, what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(key, error = %e, "{what} failed");
    s3_error(
        method,
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "We encountered an internal error. Please try again.",
        key,
    )
}

/// `POST /<bucket>/<key>?uploads`.
pub(super) async fn create(store: &ArtifactStore, method: &Method, key: &str) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{}/key", upload_prefix(&id));
    if let Err(e) = store.put_named(&name, key.as_bytes().to_vec()).await {
        return internal(method, key, "starting a multipart upload", &e);
    }
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>{BUCKET}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
            escape(key)
        ),
    )
}

/// `PUT /<bucket>/<key>?partNumber=N&uploadId=ID`.
pub(super) async fn upload_part(
    store: &ArtifactStore,
    method: &Method,
    key: &str,
    id: &str,
    part: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let prefix = match upload_dir(store, method, key, id).await {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let Some(n) = part
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PARTS).contains(n))
    else {
        return s3_error(
            method,
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            &format!("Part number must be an integer between 1 and {MAX_PARTS}, inclusive"),
            key,
        );
    };
    let data = match decode_body(method, key, headers, body) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let tag = etag(&data);
    if let Err(e) = store.put_named(&part_name(&prefix, n), data).await {
        return internal(method, key, "storing an upload part", &e);
    }
    (StatusCode::OK, [(header::ETAG, tag)]).into_response()
}

/// The part numbers a CompleteMultipartUpload body lists, in order.
fn listed_parts(body: &str) -> Option<Vec<u32>> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<PartNumber>") {
        let after = &rest[start + "<PartNumber>".len()..];
        let end = after.find("</PartNumber>")?;
        parts.push(after[..end].trim().parse().ok()?);
        rest = &after[end..];
    }
    Some(parts)
}

/// `POST /<bucket>/<key>?uploadId=ID`: the listed parts, in ascending
/// order, become the object.
pub(super) async fn complete(
    store: &ArtifactStore,
    method: &Method,
    key: &str,
    id: &str,
    body: &[u8],
) -> Response {
    let prefix = match upload_dir(store, method, key, id).await {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let bad =
        |code: &str, message: &str| s3_error(method, StatusCode::BAD_REQUEST, code, message, key);
    let Some(parts) = std::str::from_utf8(body).ok().and_then(listed_parts) else {
        return bad(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
        );
    };
    if parts.is_empty() {
        return bad("MalformedXML", "You must specify at least one part.");
    }
    if parts.windows(2).any(|w| w[0] >= w[1]) {
        return bad(
            "InvalidPartOrder",
            "The list of parts was not in ascending order.",
        );
    }
    let mut names = Vec::with_capacity(parts.len());
    for n in &parts {
        let name = part_name(&prefix, *n);
        match store.named_size(&name).await {
            Ok(Some(_)) => names.push(name),
            Ok(None) => return bad("InvalidPart", &format!("Part {n} was not uploaded.")),
            Err(e) => return internal(method, key, "reading an upload part", &e),
        }
    }
    // Streamed part after part: the object is never whole in memory.
    if let Err(e) = store.concat_named(&object_name(key), &names).await {
        return internal(method, key, "completing a multipart upload", &e);
    }
    if let Err(e) = store.delete_named_prefix(&prefix).await {
        tracing::warn!(key, error = %e, "removing a completed upload's parts failed");
    }
    // Like S3's, a multipart object's tag is not a digest of its bytes
    // (that would mean reading them again): it names the upload and its
    // part count.
    let tag = format!(
        "\"{}-{}\"",
        &super::sha256_hex(id.as_bytes())[..32],
        parts.len()
    );
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/{BUCKET}/{k}</Location><Bucket>{BUCKET}</Bucket><Key>{k}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            escape(&tag),
            k = escape(key)
        ),
    )
}

/// `DELETE /<bucket>/<key>?uploadId=ID`.
pub(super) async fn abort(store: &ArtifactStore, method: &Method, key: &str, id: &str) -> Response {
    let prefix = match upload_dir(store, method, key, id).await {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if let Err(e) = store.delete_named_prefix(&prefix).await {
        return internal(method, key, "aborting a multipart upload", &e);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_parts_are_read_in_order() {
        let body = "<CompleteMultipartUpload><Part><ETag>\"a\"</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber> 2 </PartNumber></Part></CompleteMultipartUpload>";
        assert_eq!(listed_parts(body), Some(vec![1, 2]));
        assert_eq!(listed_parts("<PartNumber>x</PartNumber>"), None);
        assert_eq!(listed_parts("<PartNumber>1"), None);
        assert_eq!(listed_parts("<a/>"), Some(vec![]));
    }

    #[tokio::test]
    async fn upload_ids_must_be_ours_and_for_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::local(dir.path()).expect("store");
        let put = Method::PUT;
        assert!(upload_dir(&store, &put, "k", "../../etc").await.is_err());
        let created = create(&store, &Method::POST, "k").await;
        assert_eq!(created.status(), StatusCode::OK);
        let id = std::fs::read_dir(dir.path().join(UPLOADS_PREFIX))
            .expect("uploads")
            .next()
            .expect("one")
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(upload_dir(&store, &put, "k", &id).await.is_ok());
        assert!(upload_dir(&store, &put, "other", &id).await.is_err());
        let unknown = "0".repeat(32);
        assert!(upload_dir(&store, &put, "k", &unknown).await.is_err());
    }
}
