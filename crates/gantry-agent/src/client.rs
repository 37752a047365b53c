//! The agent protocol over HTTP: one method per message, each returning
//! the server's answer or a [`ClientError`] that says whether trying again
//! can help (network, 5xx) or not (refused, fenced, bad token).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{
    Ack, ErrorBody, Heartbeat, HeartbeatReply, JobResult, Lease, LogAck, LogChunk, Offer, PREFIX,
    Register, Registered, ResultAccepted, UploadState,
};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or failed (5xx): try again later.
    #[error("the server is unreachable or failing: {0}")]
    Transient(String),
    /// 401: the token is unknown or revoked.
    #[error("the agent token was refused: {0}")]
    Unauthorized(String),
    /// 409: the offer or lease is no longer ours (fencing), or the
    /// request came out of order.
    #[error("refused: {0}")]
    Conflict(String),
    /// Any other refusal (400, 403, 404).
    #[error("the server refused the request ({0}): {1}")]
    Refused(u16, String),
}

impl ClientError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Transient(_))
    }
}

/// A connection to one server with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The longest any request but a poll may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// A client for `server` (e.g. `http://ci:8080`) with `token`.
    pub fn new(server: &str, token: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Refused(0, format!("building the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.base)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or(text);
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized(message),
            StatusCode::CONFLICT => ClientError::Conflict(message),
            s if s.is_server_error() => ClientError::Transient(format!("{s}: {message}")),
            s => ClientError::Refused(s.as_u16(), message),
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Option<T>, ClientError> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transient(e.to_string()))?;
        let response = Self::check(response).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let value = response
            .json()
            .await
            .map_err(|e| ClientError::Transient(format!("reading the answer: {e}")))?;
        Ok(Some(value))
    }

    async fn post_one<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.post(path, body, REQUEST_TIMEOUT)
            .await?
            .ok_or_else(|| ClientError::Transient(format!("{path}: empty answer")))
    }

    /// Registers; the answer carries the agent id.
    pub async fn register(&self, r: &Register) -> Result<Registered, ClientError> {
        self.post_one("/register", r).await
    }

    /// Waits (up to the server's hold) for a job; `None` when none came.
    pub async fn poll(&self, agent_id: &str) -> Result<Option<Offer>, ClientError> {
        self.held_poll(&format!("/agents/{agent_id}/poll")).await
    }

    /// Waits (up to the server's hold) for a job leased to the agent, the
    /// acknowledgement made by the server (only to a server that said
    /// [`Registered::poll_lease`]); `None` when none came.
    pub async fn poll_lease(&self, agent_id: &str) -> Result<Option<Lease>, ClientError> {
        self.held_poll(&format!("/agents/{agent_id}/poll?lease=1"))
            .await
    }

    /// A poll request, given longer than the server holds it.
    async fn held_poll<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        let hold = crate::protocol::POLL_HOLD + Duration::from_secs(10);
        self.post(path, &serde_json::json!({}), hold).await
    }

    /// Acknowledges an offer into a lease.
    pub async fn ack(&self, agent_id: &str, offer: &Offer) -> Result<Lease, ClientError> {
        let body = Ack {
            agent_id: agent_id.to_owned(),
            nonce: offer.nonce.clone(),
        };
        self.post_one(&format!("/jobs/{}/ack", offer.job_id), &body)
            .await
    }

    /// Renews a lease.
    pub async fn heartbeat(&self, job_id: &str, epoch: i64) -> Result<HeartbeatReply, ClientError> {
        self.post_one(&format!("/jobs/{job_id}/heartbeat"), &Heartbeat { epoch })
            .await
    }

    /// Sends a log chunk; the answer is the highest chunk stored.
    pub async fn logs(&self, job_id: &str, chunk: &LogChunk) -> Result<LogAck, ClientError> {
        self.post_one(&format!("/jobs/{job_id}/logs"), chunk).await
    }

    /// Sends the result.
    pub async fn result(&self, job_id: &str, result: &JobResult) -> Result<(), ClientError> {
        let _: ResultAccepted = self
            .post_one(&format!("/jobs/{job_id}/result"), result)
            .await?;
        Ok(())
    }

    /// Sends the result and asks, in the same request, for the next job
    /// offered to `agent_id` (only to a server that said
    /// [`Registered::next_offer`]); `None` when none is ready.
    pub async fn result_then_offer(
        &self,
        job_id: &str,
        result: &JobResult,
        agent_id: &str,
    ) -> Result<Option<Offer>, ClientError> {
        let accepted: ResultAccepted = self
            .post_one(&format!("/jobs/{job_id}/result?next={agent_id}"), result)
            .await?;
        Ok(accepted.offer)
    }

    /// Sends the result and asks, in the same request, for the next job
    /// leased to `agent_id` (only to a server that said
    /// [`Registered::next_lease`]); `None` when none is ready (or it was
    /// taken by another agent's acknowledgement meanwhile).
    pub async fn result_then_lease(
        &self,
        job_id: &str,
        result: &JobResult,
        agent_id: &str,
    ) -> Result<Option<Lease>, ClientError> {
        let accepted: ResultAccepted = self
            .post_one(
                &format!("/jobs/{job_id}/result?next={agent_id}&lease=1"),
                result,
            )
            .await?;
        Ok(accepted.lease)
    }

    /// The job's source tree as zip bytes.
    pub async fn source(&self, job_id: &str, epoch: i64) -> Result<Vec<u8>, ClientError> {
        let response = self
            .http
            .get(self.url(&format!("/jobs/{job_id}/source?epoch={epoch}")))
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT * 5)
            .send()
            .await
            .map_err(|e| ClientError::Transient(e.to_string()))?;
        let response = Self::check(response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transient(format!("reading the source: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// How much of upload `sha256` the server holds.
    pub async fn upload_state(&self, sha256: &str) -> Result<UploadState, ClientError> {
        let response = self
            .http
            .head(self.url(&format!("/uploads/{sha256}")))
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| ClientError::Transient(e.to_string()))?;
        let response = Self::check(response).await?;
        let offset = response
            .headers()
            .get(crate::protocol::UPLOAD_OFFSET)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // HEAD has no body: a complete upload is one the server says so of
        // on the next PUT; report what the header tells.
        Ok(UploadState {
            offset,
            complete: false,
        })
    }

    /// Appends `bytes` at `offset` of upload `sha256` (of `total` bytes).
    pub async fn upload(
        &self,
        sha256: &str,
        offset: u64,
        total: u64,
        bytes: Vec<u8>,
    ) -> Result<UploadState, ClientError> {
        let response = self
            .http
            .put(self.url(&format!("/uploads/{sha256}?offset={offset}&total={total}")))
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ClientError::Transient(e.to_string()))?;
        let response = Self::check(response).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Transient(format!("reading the answer: {e}")))
    }
}
