//! EventBridge: the bus (rules, targets, deliveries, schedules) and its API
//! (`X-Amz-Target: AWSEvents.<Operation>`, JSON 1.1), with the member names
//! and exceptions of botocore's `events` model. `docs/events-server.md`
//! describes the behaviour and the decisions.

mod api;
mod bus;
pub(crate) mod codebuild_events;
mod connections;
mod delivery;
mod invoke;
mod scheduler;

use gantry_aws::{AwsError, ErrorCode, VerifiedCaller};
use gantry_store::Store;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) use bus::EventBus;
pub use bus::{Clock, EventsConfig, SystemClock};
pub(crate) use invoke::ServerInvoker;
pub use invoke::{InvokeError, TargetInvoker};

/// Runs one operation.
pub(crate) async fn dispatch<S: Store>(
    state: &AppState<S>,
    caller: &VerifiedCaller,
    operation: &str,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let actor = caller.access_key_id.as_str();
    match operation {
        "PutEvents" => api::put_events(state, actor, input(body)?).await,
        "PutRule" => api::put_rule(state, actor, input(body)?).await,
        "DescribeRule" => api::describe_rule(state, input(body)?).await,
        "DeleteRule" => api::delete_rule(state, actor, input(body)?).await,
        "ListRules" => api::list_rules(state, input(body)?).await,
        "EnableRule" => api::set_state(state, actor, input(body)?, "ENABLED").await,
        "DisableRule" => api::set_state(state, actor, input(body)?, "DISABLED").await,
        "PutTargets" => api::put_targets(state, actor, input(body)?).await,
        "RemoveTargets" => api::remove_targets(state, actor, input(body)?).await,
        "ListTargetsByRule" => api::list_targets(state, input(body)?).await,
        "TestEventPattern" => api::test_event_pattern(input(body)?),
        "CreateConnection" => connections::create_connection(state, actor, input(body)?).await,
        "DescribeConnection" => connections::describe_connection(state, input(body)?).await,
        "DeleteConnection" => connections::delete_connection(state, actor, input(body)?).await,
        "CreateApiDestination" => {
            connections::create_api_destination(state, actor, input(body)?).await
        }
        "DescribeApiDestination" => {
            connections::describe_api_destination(state, input(body)?).await
        }
        "DeleteApiDestination" => {
            connections::delete_api_destination(state, actor, input(body)?).await
        }
        other => Err(AwsError::new(
            ErrorCode::UnknownOperationException,
            format!("EventBridge operation '{other}' is not supported by this server."),
        )
        .into()),
    }
}

fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    Ok(gantry_aws::parse_body(body)?)
}

/// `EventBusName`: a name or an ARN (`...:event-bus/NAME`); absent is `default`.
pub(crate) fn bus_name(value: Option<&str>) -> String {
    match value.filter(|v| !v.is_empty()) {
        None => "default".to_owned(),
        Some(v) => match v.rsplit_once(":event-bus/") {
            Some((_, name)) if v.starts_with("arn:") => name.to_owned(),
            _ => v.to_owned(),
        },
    }
}

/// EventBridge's `ValidationException`.
fn validation(message: impl Into<String>) -> ApiError {
    AwsError::service("ValidationException", 400, message).into()
}

/// EventBridge's `ResourceNotFoundException`.
fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::not_found(message)
}

/// Names of rules, targets, connections and API destinations:
/// `[\.\-_A-Za-z0-9]+`, 1 to `max` characters.
fn check_name(member: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and {max}"
        )))
    }
}
