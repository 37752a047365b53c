//! The one error type every handler returns, answered in AWS's JSON shape.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_aws::{AwsError, JsonResponse, Service};
use gantry_store::StoreError;

/// An error answered to a client: AWS's `{"__type", "message"}` with the
/// code's status. Internal details are logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    /// What the client sees.
    pub error: AwsError,
}

impl ApiError {
    /// CodeBuild's `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        AwsError::service("ResourceNotFoundException", 400, message).into()
    }

    /// CodeBuild's `InvalidInputException`.
    pub fn invalid_input(message: impl Into<String>) -> ApiError {
        AwsError::service("InvalidInputException", 400, message).into()
    }

    /// CodeBuild's `ResourceAlreadyExistsException`.
    pub fn already_exists(message: impl Into<String>) -> ApiError {
        AwsError::service("ResourceAlreadyExistsException", 400, message).into()
    }

    /// `InternalFailure`, with `detail` logged and a generic message sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "internal failure");
        AwsError::internal("The server failed to process the request; see the server log.").into()
    }
}

impl From<AwsError> for ApiError {
    fn from(error: AwsError) -> ApiError {
        ApiError { error }
    }
}

/// A store error that the handler did not map itself is internal.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// Turns a [`JsonResponse`] from `gantry-aws` into an axum response.
pub(crate) fn into_response(r: JsonResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, r.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in r.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = gantry_aws::new_request_id();
        into_response(JsonResponse::error(
            Service::CodeBuild,
            &self.error,
            &request_id,
        ))
    }
}

/// A plain JSON answer with `status`: the webhook and chat endpoints, which
/// answer their callers in their own shape rather than AWS's.
pub(crate) fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
