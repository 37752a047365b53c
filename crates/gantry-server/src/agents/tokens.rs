//! Agent tokens: made by an admin over the signed REST API, shown once,
//! stored as their SHA-256 (a token is 32 random bytes, so a plain hash is
//! enough — there is nothing to brute-force), and looked up by that hash
//! when an agent presents one as `Authorization: Bearer <token>`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gantry_store::{AgentTokenRecord, Store, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::codebuild::timestamp_ms;
use crate::rest::{Caller, RestError, RestPath, json_response, ok};
use crate::router::AppState;

/// Every token starts with this, so a leaked one is easy to grep for.
pub(crate) const TOKEN_PREFIX: &str = "gat_";

fn random_hex(bytes: usize) -> Result<String, RestError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| RestError::internal(format!("no randomness for a token: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The stored form of a token.
pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn describe(t: &AgentTokenRecord) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "created": timestamp_ms(t.created_ms),
        "revoked": t.revoked_ms.is_some(),
    });
    if let Some(ms) = t.last_used_ms {
        v["lastUsed"] = timestamp_ms(ms);
    }
    v
}

/// `POST /api/v1/agent-tokens` `{"name": "..."}` → 201 with the token,
/// the only time it is ever shown.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Bytes,
) -> Result<Response, RestError> {
    let request: gantry_agent::protocol::CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| RestError::invalid_input(format!("Bad JSON body: {e}")))?
    };
    let name = request.name.unwrap_or_default();
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(RestError::invalid_input(
            "name must be at most 200 characters, without control characters",
        ));
    }
    let id = format!("atok-{}", random_hex(8)?);
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    let record = state
        .store
        .create_agent_token(&id, &name, &hash(&token), &caller.0)
        .await
        .map_err(RestError::internal)?;
    let mut out = describe(&record);
    out["token"] = json!(token);
    Ok(json_response(StatusCode::CREATED, &out))
}

/// `GET /api/v1/agent-tokens`: every token, never the token itself.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Response, RestError> {
    let tokens = state
        .store
        .list_agent_tokens()
        .await
        .map_err(RestError::internal)?;
    let list: Vec<Value> = tokens.iter().map(describe).collect();
    Ok(ok(&json!({ "agentTokens": list })))
}

/// `DELETE /api/v1/agent-tokens/{id}`: revokes; its agents are refused
/// from their next request on.
pub(crate) async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(caller): axum::Extension<Caller>,
    RestPath(id): RestPath<String>,
) -> Result<Response, RestError> {
    match state.store.revoke_agent_token(&id, &caller.0).await {
        Ok(()) => {
            // At once here; other servers believe their cache for at most
            // TOKEN_CACHE_TTL more.
            state.runner.hub.forget_token(&id);
            Ok(ok(&json!({ "id": id, "revoked": true })))
        }
        Err(StoreError::NotFound) => Err(RestError::not_found(format!(
            "Agent token {id} does not exist or is already revoked"
        ))),
        Err(e) => Err(RestError::internal(e)),
    }
}

/// The live token a request's `Authorization: Bearer` header carries.
pub(crate) async fn bearer<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
) -> Result<AgentTokenRecord, (StatusCode, String)> {
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_owned());
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <agent token>"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <agent token>`"))?;
    // Looked up by hash: the comparison the database makes is on a digest
    // the caller cannot steer byte by byte. A token found live is believed
    // for TOKEN_CACHE_TTL (every agent request carries it; asking the store
    // each time was a read, and a write for `last_used`, per request).
    let digest = hash(token);
    let hub = &state.runner.hub;
    if let Some(t) = hub.cached_token(&digest) {
        return Ok(t);
    }
    match state.store.use_agent_token(&digest).await {
        Ok(Some(t)) => {
            hub.cache_token(&digest, t.clone());
            Ok(t)
        }
        Ok(None) => Err(unauthorized("the agent token is unknown or revoked")),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("checking the agent token: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_to_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = random_hex(32).expect("random");
        assert_eq!(t.len(), 64);
        assert_ne!(t, random_hex(32).expect("random"));
    }
}
