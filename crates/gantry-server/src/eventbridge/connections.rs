//! Connections (API_KEY and BASIC authorization) and API destinations.
//!
//! A connection's secret values (the API key value, the password, header
//! and query parameters marked `IsValueSecret`) are encrypted at rest with
//! the store's key and never returned: Describe shows the key name and the
//! user name only, as EventBridge does.

use gantry_aws::AwsError;
use gantry_store::{ApiDestinationRecord, NewConnection, Store, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{check_name, not_found, validation};
use crate::codebuild::timestamp_ms;
use crate::error::ApiError;
use crate::router::AppState;

const HTTP_METHODS: [&str; 7] = ["POST", "GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"];

fn events_arn<S: Store>(state: &AppState<S>, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:events:{}:{}:{kind}/{name}/{}",
        state.config.region,
        state.config.account_id,
        uuid::Uuid::new_v4()
    )
}

fn already_exists(message: String) -> ApiError {
    AwsError::service("ResourceAlreadyExistsException", 400, message).into()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateConnectionInput {
    name: String,
    description: Option<String>,
    authorization_type: String,
    auth_parameters: Value,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Splits `InvocationHttpParameters` into what Describe may show (secret
/// values left out) and what only delivery sees.
fn split_http_parameters(params: &Value) -> Result<(Value, Value), ApiError> {
    let mut public = Map::new();
    let mut secret = Map::new();
    for member in [
        "HeaderParameters",
        "QueryStringParameters",
        "BodyParameters",
    ] {
        let Some(list) = params.get(member) else {
            continue;
        };
        let list = list.as_array().ok_or_else(|| {
            validation(format!("InvocationHttpParameters.{member} must be a list"))
        })?;
        let mut shown = Vec::new();
        for p in list {
            if p.get("Key").and_then(Value::as_str).is_none() {
                return Err(validation(format!(
                    "every item of InvocationHttpParameters.{member} needs a Key"
                )));
            }
            let mut p2 = p.clone();
            if p.get("IsValueSecret").and_then(Value::as_bool) == Some(true)
                && let Some(o) = p2.as_object_mut()
            {
                o.remove("Value");
            }
            shown.push(p2);
        }
        public.insert(member.into(), Value::Array(shown));
        secret.insert(member.into(), Value::Array(list.clone()));
    }
    Ok((Value::Object(public), Value::Object(secret)))
}

pub(crate) async fn create_connection<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: CreateConnectionInput,
) -> Result<Value, ApiError> {
    check_name("name", &input.name, 64)?;
    let params = &input.auth_parameters;
    let mut public = Map::new();
    let mut secret = Map::new();
    match input.authorization_type.as_str() {
        "API_KEY" => {
            let (Some(key), Some(value)) = (
                text(params, "/ApiKeyAuthParameters/ApiKeyName"),
                text(params, "/ApiKeyAuthParameters/ApiKeyValue"),
            ) else {
                return Err(validation(
                    "API_KEY authorization needs AuthParameters.ApiKeyAuthParameters with ApiKeyName and ApiKeyValue",
                ));
            };
            public.insert("ApiKeyAuthParameters".into(), json!({ "ApiKeyName": key }));
            secret.insert(
                "ApiKeyAuthParameters".into(),
                json!({ "ApiKeyName": key, "ApiKeyValue": value }),
            );
        }
        "BASIC" => {
            let (Some(user), Some(password)) = (
                text(params, "/BasicAuthParameters/Username"),
                text(params, "/BasicAuthParameters/Password"),
            ) else {
                return Err(validation(
                    "BASIC authorization needs AuthParameters.BasicAuthParameters with Username and Password",
                ));
            };
            public.insert("BasicAuthParameters".into(), json!({ "Username": user }));
            secret.insert(
                "BasicAuthParameters".into(),
                json!({ "Username": user, "Password": password }),
            );
        }
        "OAUTH_CLIENT_CREDENTIALS" => {
            return Err(validation(
                "AuthorizationType OAUTH_CLIENT_CREDENTIALS is not supported by this server; use API_KEY or BASIC",
            ));
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'authorizationType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]"
            )));
        }
    }
    if let Some(http) = params.get("InvocationHttpParameters") {
        let (shown, kept) = split_http_parameters(http)?;
        public.insert("InvocationHttpParameters".into(), shown);
        secret.insert("InvocationHttpParameters".into(), kept);
    }
    let now = state.events.now_ms();
    let connection = json!({
        "ConnectionArn": events_arn(state, "connection", &input.name),
        "Name": input.name,
        "Description": input.description,
        "ConnectionState": "AUTHORIZED",
        "AuthorizationType": input.authorization_type,
        "AuthParameters": public,
        "CreationTime": now,
        "LastModifiedTime": now,
        "LastAuthorizedTime": now,
    });
    let new = NewConnection {
        name: input.name.clone(),
        connection: connection.clone(),
        secret: Value::Object(secret),
    };
    match state.store.create_connection(&new, actor).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(already_exists(format!(
                "Connection {} already exists.",
                input.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(json!({
        "ConnectionArn": connection["ConnectionArn"],
        "ConnectionState": "AUTHORIZED",
        "CreationTime": timestamp_ms(now),
        "LastModifiedTime": timestamp_ms(now),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NameInput {
    name: String,
}

async fn connection<S: Store>(state: &AppState<S>, name: &str) -> Result<Value, ApiError> {
    match state.store.get_connection(name).await {
        Ok(c) => Ok(c.connection),
        Err(StoreError::NotFound) => Err(not_found(format!(
            "Failed to describe the connection(s). Connection '{name}' does not exist."
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Epoch-millisecond members stored in the JSON, as API timestamps.
fn with_timestamps(mut v: Value, members: &[&str]) -> Value {
    for m in members {
        if let Some(ms) = v.get(*m).and_then(Value::as_i64) {
            v[*m] = timestamp_ms(ms);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, value| !value.is_null());
    }
    v
}

pub(crate) async fn describe_connection<S: Store>(
    state: &AppState<S>,
    input: NameInput,
) -> Result<Value, ApiError> {
    let c = connection(state, &input.name).await?;
    Ok(with_timestamps(
        c,
        &["CreationTime", "LastModifiedTime", "LastAuthorizedTime"],
    ))
}

pub(crate) async fn delete_connection<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: NameInput,
) -> Result<Value, ApiError> {
    let c = connection(state, &input.name).await?;
    match state.store.delete_connection(&input.name, actor).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => {
            return Err(not_found(format!(
                "Connection '{}' does not exist.",
                input.name
            )));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(AwsError::service(
                "ConcurrentModificationException",
                400,
                format!(
                    "Connection '{}' is used by an API destination; delete the API destination first.",
                    input.name
                ),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    let mut out = with_timestamps(
        json!({
            "ConnectionArn": c["ConnectionArn"],
            "CreationTime": c["CreationTime"],
            "LastModifiedTime": c["LastModifiedTime"],
            "LastAuthorizedTime": c["LastAuthorizedTime"],
        }),
        &["CreationTime", "LastModifiedTime", "LastAuthorizedTime"],
    );
    out["ConnectionState"] = json!("DELETING");
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateApiDestinationInput {
    name: String,
    description: Option<String>,
    connection_arn: String,
    invocation_endpoint: String,
    http_method: String,
    invocation_rate_limit_per_second: Option<i64>,
}

/// `arn:aws:events:<region>:<account>:connection/<name>/<id>` → name.
fn connection_name(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":connection/")?;
    rest.split('/').next().filter(|n| !n.is_empty())
}

pub(crate) async fn create_api_destination<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: CreateApiDestinationInput,
) -> Result<Value, ApiError> {
    check_name("name", &input.name, 64)?;
    let Some(conn_name) = connection_name(&input.connection_arn) else {
        return Err(validation(format!(
            "ConnectionArn {} is not a connection ARN",
            input.connection_arn
        )));
    };
    let conn = connection(state, conn_name).await?;
    if conn["ConnectionArn"] != json!(input.connection_arn) {
        return Err(not_found(format!(
            "Connection '{}' does not exist.",
            input.connection_arn
        )));
    }
    if !input.invocation_endpoint.starts_with("https://")
        && !input.invocation_endpoint.starts_with("http://")
    {
        return Err(validation(
            "InvocationEndpoint must be an https:// URL (Gantry also accepts http://)",
        ));
    }
    if !HTTP_METHODS.contains(&input.http_method.as_str()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{}' at 'httpMethod' failed to satisfy constraint: \
             Member must satisfy enum value set: [{}]",
            input.http_method,
            HTTP_METHODS.join(", ")
        )));
    }
    if input
        .invocation_rate_limit_per_second
        .is_some_and(|n| n < 1)
    {
        return Err(validation(
            "InvocationRateLimitPerSecond must be at least 1",
        ));
    }
    let now = state.events.now_ms();
    let arn = events_arn(state, "api-destination", &input.name);
    let destination = json!({
        "ApiDestinationArn": arn,
        "Name": input.name,
        "Description": input.description,
        "ApiDestinationState": "ACTIVE",
        "ConnectionArn": input.connection_arn,
        "InvocationEndpoint": input.invocation_endpoint,
        "HttpMethod": input.http_method,
        "InvocationRateLimitPerSecond": input.invocation_rate_limit_per_second.unwrap_or(300),
        "CreationTime": now,
        "LastModifiedTime": now,
    });
    let record = ApiDestinationRecord {
        name: input.name.clone(),
        connection: conn_name.to_owned(),
        destination,
        created_ms: now,
    };
    match state.store.create_api_destination(&record, actor).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(already_exists(format!(
                "An api-destination '{}' already exists.",
                input.name
            )));
        }
        Err(StoreError::NotFound) => {
            return Err(not_found(format!(
                "Connection '{conn_name}' does not exist."
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(json!({
        "ApiDestinationArn": arn,
        "ApiDestinationState": "ACTIVE",
        "CreationTime": timestamp_ms(now),
        "LastModifiedTime": timestamp_ms(now),
    }))
}

fn destination_not_found(name: &str) -> ApiError {
    not_found(format!(
        "Failed to describe the api-destination(s). An api-destination '{name}' does not exist."
    ))
}

pub(crate) async fn describe_api_destination<S: Store>(
    state: &AppState<S>,
    input: NameInput,
) -> Result<Value, ApiError> {
    match state.store.get_api_destination(&input.name).await {
        Ok(d) => Ok(with_timestamps(
            d.destination,
            &["CreationTime", "LastModifiedTime"],
        )),
        Err(StoreError::NotFound) => Err(destination_not_found(&input.name)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn delete_api_destination<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: NameInput,
) -> Result<Value, ApiError> {
    match state.store.delete_api_destination(&input.name, actor).await {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(destination_not_found(&input.name)),
        Err(e) => Err(e.into()),
    }
}
