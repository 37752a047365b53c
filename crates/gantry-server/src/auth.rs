//! SigV4 authentication of API requests against the stored access keys.

use std::time::SystemTime;

use axum::http::{HeaderMap, Uri};
use gantry_aws::{AuthError, AwsError, RequestParts, SecretKey, VerifiedCaller, Verifier};
use gantry_store::{Store, StoreError};

use crate::error::ApiError;

/// Verifies the request's signature; the caller is who signed it. The
/// method and the raw path and query are signed as they came, so the same
/// check serves the AWS JSON endpoint (`POST /`) and the REST API.
///
/// `gantry-aws` asks for the secret through a synchronous lookup, so the
/// access key id is read from the request first and its secret fetched
/// from the store; the signature check itself (constant-time) is
/// `gantry-aws`'s.
pub(crate) async fn authenticate<S: Store>(
    store: &S,
    verifier: &Verifier,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<VerifiedCaller, ApiError> {
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = RequestParts::new(method, target).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    let secret = match claimed_access_key(headers, uri.query().unwrap_or("")) {
        Some(id) => match store.access_key_secret(&id).await {
            Ok(secret) => Some(SecretKey::new(secret)),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(ApiError::internal(e)),
        },
        None => None,
    };
    verifier
        .verify(&request, SystemTime::now(), |_| secret)
        .map_err(|e: AuthError| ApiError::from(AwsError::from(e)))
}

/// The access key id a request claims, from `Authorization: ...
/// Credential=<id>/...` or the presigned `X-Amz-Credential=<id>%2F...`.
/// Only a hint for the lookup: `gantry-aws` parses and checks it properly.
pub(crate) fn claimed_access_key(headers: &HeaderMap, query: &str) -> Option<String> {
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let rest = auth.split_once("Credential=")?.1;
        return rest.split_once('/').map(|(id, _)| id.trim().to_owned());
    }
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("X-Amz-Credential=")?;
        let end = value
            .find("%2F")
            .or_else(|| value.find("%2f"))
            .or_else(|| value.find('/'))?;
        Some(value[..end].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claimed_key_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/codebuild/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .expect("header"),
        );
        assert_eq!(claimed_access_key(&headers, "").as_deref(), Some("AKID"));
        let empty = HeaderMap::new();
        assert_eq!(
            claimed_access_key(&empty, "X-Amz-Credential=AK2%2F2024").as_deref(),
            Some("AK2")
        );
        assert_eq!(claimed_access_key(&empty, "a=b"), None);
    }
}
