//! SigV4 authentication of API requests against the stored access keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

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
/// from the store (or `keys`, which remembers it for a while); the
/// signature check itself (constant-time) is `gantry-aws`'s.
pub(crate) async fn authenticate<S: Store>(
    store: &S,
    keys: &SecretCache,
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
        Some(id) => match keys.get(&id) {
            Some(secret) => Some(secret),
            None => match store.access_key_secret(&id).await {
                Ok(secret) => {
                    let secret = SecretKey::new(secret);
                    keys.put(&id, secret.clone());
                    Some(secret)
                }
                // Not remembered: a key created meanwhile (through another
                // server) is found by the next request.
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(ApiError::internal(e)),
            },
        },
        None => None,
    };
    verifier
        .verify(&request, SystemTime::now(), |_| secret)
        .map_err(|e: AuthError| ApiError::from(AwsError::from(e)))
}

/// How long a secret read from the store is believed. Access keys are
/// never changed or deleted once created, so this bounds only how long a
/// secret stays in this process's memory after its last use.
const SECRET_TTL: Duration = Duration::from_secs(60);

/// The most secrets remembered; past it, expired ones are dropped first and
/// then, if still full, all of them (a flood of distinct key ids — which
/// must each exist to be remembered — costs lookups, not memory).
const SECRET_CACHE_MAX: usize = 1024;

/// Access keys' decrypted secrets, by access key id, as last read from the
/// store. Every signed request needs its key's secret: reading it from the
/// database each time cost a statement (and, on SQLite, a hop to a reader
/// thread) per API call.
#[derive(Default)]
pub(crate) struct SecretCache {
    secrets: Mutex<HashMap<String, (Instant, SecretKey)>>,
}

impl SecretCache {
    fn get(&self, access_key_id: &str) -> Option<SecretKey> {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets
            .get(access_key_id)
            .filter(|(at, _)| at.elapsed() < SECRET_TTL)
            .map(|(_, secret)| secret.clone())
    }

    fn put(&self, access_key_id: &str, secret: SecretKey) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if secrets.len() >= SECRET_CACHE_MAX {
            secrets.retain(|_, (at, _)| at.elapsed() < SECRET_TTL);
            if secrets.len() >= SECRET_CACHE_MAX {
                secrets.clear();
            }
        }
        secrets.insert(access_key_id.to_owned(), (Instant::now(), secret));
    }
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
    fn a_remembered_secret_is_the_one_stored_and_the_cache_stays_bounded() {
        let cache = SecretCache::default();
        assert!(cache.get("AKID").is_none());
        cache.put("AKID", SecretKey::new("s3cret"));
        let got = cache.get("AKID").expect("remembered");
        assert_eq!(got.expose(), b"s3cret");
        assert!(cache.get("OTHER").is_none());
        for i in 0..SECRET_CACHE_MAX + 10 {
            cache.put(&format!("K{i}"), SecretKey::new("x"));
            let len = cache.secrets.lock().expect("lock").len();
            assert!(len <= SECRET_CACHE_MAX, "{len} secrets kept");
        }
        // The newest is always kept.
        let last = format!("K{}", SECRET_CACHE_MAX + 9);
        assert!(cache.get(&last).is_some());
    }

    #[test]
    fn an_expired_secret_is_not_believed() {
        let cache = SecretCache::default();
        cache.put("AKID", SecretKey::new("old"));
        let long_ago = Instant::now().checked_sub(SECRET_TTL + Duration::from_secs(1));
        let Some(long_ago) = long_ago else {
            return; // a clock this close to its start cannot go back that far
        };
        for (at, _) in cache.secrets.lock().expect("lock").values_mut() {
            *at = long_ago;
        }
        assert!(cache.get("AKID").is_none());
    }

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
