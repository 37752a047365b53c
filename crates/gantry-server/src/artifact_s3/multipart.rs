//! S3 multipart uploads of output objects (CreateMultipartUpload,
//! UploadPart, CompleteMultipartUpload, AbortMultipartUpload): what
//! s3transfer's `upload_file` uses above its multipart threshold.
//!
//! An upload is a directory `job-objects/uploads/<uploadId>/` holding the
//! object key it is for and its parts; completing it concatenates the
//! parts named in the request into the object.

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{decode_body, etag, object_path, s3_error, store_file};
use crate::pipeline_host::BUCKET;

/// Parts per upload (S3's limit).
const MAX_PARTS: u32 = 10_000;

fn uploads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(crate::files::JOB_OBJECTS).join("uploads")
}

/// The upload's directory when `id` is one this server handed out for
/// `key`; the error is S3's `NoSuchUpload`.
fn upload_dir(
    data_dir: &Path,
    method: &Method,
    key: &str,
    id: &str,
) -> Result<PathBuf, Box<Response>> {
    let no_such = || {
        s3_error(
            method,
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist.",
            key,
        )
    };
    // A UUID's shape only: the id becomes a path component.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Box::new(no_such()));
    }
    let dir = uploads_dir(data_dir).join(id);
    match std::fs::read_to_string(dir.join("key")) {
        Ok(k) if k == key => Ok(dir),
        _ => Err(Box::new(no_such())),
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

fn internal(method: &Method, key: &str, what: &str, e: std::io::Error) -> Response {
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
pub(super) fn create(data_dir: &Path, method: &Method, key: &str) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = uploads_dir(data_dir).join(&id);
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("key"), key))
    {
        return internal(method, key, "starting a multipart upload", e);
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
pub(super) fn upload_part(
    data_dir: &Path,
    method: &Method,
    key: &str,
    id: &str,
    part: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let dir = match upload_dir(data_dir, method, key, id) {
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
    if let Err(e) = store_file(&dir.join(format!("part-{n}")), &data) {
        return internal(method, key, "storing an upload part", e);
    }
    (StatusCode::OK, [(header::ETAG, etag(&data))]).into_response()
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
pub(super) fn complete(
    data_dir: &Path,
    method: &Method,
    key: &str,
    id: &str,
    body: &[u8],
) -> Response {
    let dir = match upload_dir(data_dir, method, key, id) {
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
    let mut data = Vec::new();
    for n in &parts {
        match std::fs::read(dir.join(format!("part-{n}"))) {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(_) => {
                return bad("InvalidPart", &format!("Part {n} was not uploaded."));
            }
        }
    }
    if let Err(e) = store_file(&object_path(data_dir, key), &data) {
        return internal(method, key, "completing a multipart upload", e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/{BUCKET}/{k}</Location><Bucket>{BUCKET}</Bucket><Key>{k}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            escape(&etag(&data)),
            k = escape(key)
        ),
    )
}

/// `DELETE /<bucket>/<key>?uploadId=ID`.
pub(super) fn abort(data_dir: &Path, method: &Method, key: &str, id: &str) -> Response {
    let dir = match upload_dir(data_dir, method, key, id) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        return internal(method, key, "aborting a multipart upload", e);
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

    #[test]
    fn upload_ids_must_be_ours_and_for_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let put = Method::PUT;
        assert!(upload_dir(dir.path(), &put, "k", "../../etc").is_err());
        let created = create(dir.path(), &Method::POST, "k");
        assert_eq!(created.status(), StatusCode::OK);
        let id = std::fs::read_dir(uploads_dir(dir.path()))
            .expect("uploads")
            .next()
            .expect("one")
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(upload_dir(dir.path(), &put, "k", &id).is_ok());
        assert!(upload_dir(dir.path(), &put, "other", &id).is_err());
    }
}
