//! The REST API's one error shape:
//! `{"error": {"code": "NotFound", "message": "...", "type": "PipelineNotFoundException"}}`.
//!
//! `code` is one of a few REST codes, each with one HTTP status; `type`
//! is the exception the shared service function raised (the name the AWS
//! API answers with), for callers that need to tell cases apart.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gantry_aws::ErrorCode;
use serde_json::json;

use crate::error::ApiError;

/// The REST error codes and their statuses; the OpenAPI document lists them.
pub(crate) const CODES: [(&str, u16); 7] = [
    ("InvalidInput", 400),
    ("Unauthenticated", 401),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("Conflict", 409),
    ("Throttled", 429),
    ("Internal", 500),
];

/// An error answered by the REST API.
#[derive(Debug)]
pub(crate) struct RestError {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
    /// The underlying exception name, when a service function raised it.
    pub exception: Option<String>,
}

impl RestError {
    fn new(code: &'static str, message: impl Into<String>) -> RestError {
        let status = CODES
            .iter()
            .find(|(c, _)| *c == code)
            .and_then(|(_, s)| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        RestError {
            code,
            status,
            message: message.into(),
            exception: None,
        }
    }

    /// 400: the request names a bad field or value.
    pub(crate) fn invalid_input(message: impl Into<String>) -> RestError {
        RestError::new("InvalidInput", message)
    }

    /// 404: no such resource.
    pub(crate) fn not_found(message: impl Into<String>) -> RestError {
        RestError::new("NotFound", message)
    }

    /// 409: the resource is not in a state that allows the request.
    pub(crate) fn conflict(message: impl Into<String>) -> RestError {
        RestError::new("Conflict", message)
    }

    /// 500: the server failed (the store, the disk).
    pub(crate) fn internal(error: impl std::fmt::Display) -> RestError {
        RestError::new("Internal", error.to_string())
    }
}

/// Which REST code an exception of the shared service functions is.
fn code_for(error: &ErrorCode) -> &'static str {
    match error {
        ErrorCode::MissingAuthenticationTokenException => "Unauthenticated",
        ErrorCode::IncompleteSignatureException
        | ErrorCode::InvalidSignatureException
        | ErrorCode::UnrecognizedClientException
        | ErrorCode::AccessDeniedException => "Forbidden",
        ErrorCode::ThrottlingException => "Throttled",
        ErrorCode::InternalFailure | ErrorCode::ServiceUnavailable => "Internal",
        ErrorCode::Service { code, .. } => match code.as_ref() {
            c if c.ends_with("NotFoundException") => "NotFound",
            "ConflictException"
            | "PipelineExecutionNotStoppableException"
            | "DuplicatedStopRequestException"
            | "StageNotRetryableException"
            | "NotLatestPipelineExecutionException"
            | "ApprovalAlreadyCompletedException"
            | "InvalidApprovalTokenException"
            | "ResourceAlreadyExistsException" => "Conflict",
            _ => "InvalidInput",
        },
        _ => "InvalidInput",
    }
}

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> RestError {
        let mut out = RestError::new(code_for(&e.error.code), e.error.message);
        out.exception = Some(e.error.code.as_str().to_owned());
        out
    }
}

impl From<gantry_store::StoreError> for RestError {
    fn from(e: gantry_store::StoreError) -> RestError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(t) = self.exception {
            error["type"] = json!(t);
        }
        super::json_response(self.status, &json!({ "error": error }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_aws::AwsError;

    fn code_of(e: AwsError) -> (&'static str, u16) {
        let r = RestError::from(ApiError::from(e));
        (r.code, r.status.as_u16())
    }

    #[test]
    fn exceptions_map_to_rest_codes_and_statuses() {
        assert_eq!(
            code_of(AwsError::service("PipelineNotFoundException", 400, "x")),
            ("NotFound", 404)
        );
        assert_eq!(
            code_of(AwsError::service(
                "PipelineExecutionNotStoppableException",
                400,
                "x"
            )),
            ("Conflict", 409)
        );
        assert_eq!(code_of(AwsError::validation("x")), ("InvalidInput", 400));
        assert_eq!(
            code_of(AwsError::new(
                ErrorCode::MissingAuthenticationTokenException,
                "x"
            )),
            ("Unauthenticated", 401)
        );
        assert_eq!(
            code_of(AwsError::new(ErrorCode::InvalidSignatureException, "x")),
            ("Forbidden", 403)
        );
        assert_eq!(code_of(AwsError::internal("x")), ("Internal", 500));
    }
}
