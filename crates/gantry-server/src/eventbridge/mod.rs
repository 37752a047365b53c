//! EventBridge's API, with the member names of botocore's model.

use gantry_aws::{AwsError, ErrorCode, VerifiedCaller};
use gantry_store::Store;

use crate::error::ApiError;
use crate::router::AppState;

/// Runs one operation.
pub(crate) async fn dispatch<S: Store>(
    _state: &AppState<S>,
    _caller: &VerifiedCaller,
    operation: &str,
    _body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    Err(AwsError::new(
        ErrorCode::UnknownOperationException,
        format!("EventBridge operation '{operation}' is not supported by this server."),
    )
    .into())
}
