//! PutWebhook, ListWebhooks, DeleteWebhook, RegisterWebhookWithThirdParty
//! and DeregisterWebhookWithThirdParty.
//!
//! Deliveries arrive at `<base URL>/webhooks/codepipeline/<url id>`; the
//! URL id is a random UUID per webhook, kept when the webhook is put again
//! and new when it is deleted and made again, as CodePipeline documents.

use std::net::IpAddr;

use axum::http::HeaderMap;
use gantry_store::{NewWebhook, Store, StoreError, WebhookRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::pipelines::parse_stored;
use super::{arn, check_name, exception, page, pipeline_not_found, required, validation};
use crate::error::ApiError;
use crate::router::AppState;

/// What ListWebhooks and PutWebhook show instead of a secret token. Putting
/// a webhook again with this value keeps the stored token, so a definition
/// read from ListWebhooks can be put back unchanged.
pub(super) const REDACTED: &str = "****";
/// The path deliveries are posted to, before the URL id.
pub(crate) const DELIVERY_PATH: &str = "/webhooks/codepipeline/";
const MAX_FILTERS: usize = 5;
const MAX_TAGS: usize = 50;

/// `WebhookDefinition`, member for member.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct WebhookDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<Vec<FilterRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication_configuration: Option<AuthConfiguration>,
}

/// `WebhookFilterRule`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    json_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    match_equals: Option<String>,
}

/// `WebhookAuthConfiguration` (its members are PascalCase in the model).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AuthConfiguration {
    #[serde(rename = "AllowedIPRange", skip_serializing_if = "Option::is_none")]
    allowed_ip_range: Option<String>,
    #[serde(rename = "SecretToken", skip_serializing_if = "Option::is_none")]
    secret_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
pub(super) struct PutInput {
    webhook: Option<WebhookDefinition>,
    tags: Option<Vec<Tag>>,
}

fn auth_error(message: impl Into<String>) -> ApiError {
    exception("InvalidWebhookAuthenticationParametersException", message)
}

fn filter_error(message: impl Into<String>) -> ApiError {
    exception("InvalidWebhookFilterPatternException", message)
}

/// A CIDR range: an IPv4 or IPv6 address, `/`, a prefix length that fits.
fn valid_cidr(text: &str) -> bool {
    let Some((addr, bits)) = text.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

fn check_length(value: &str, member: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if (1..=max).contains(&len) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length between 1 and {max}"
        )))
    }
}

/// The checks that need nothing but the definition. Returns the secret
/// token as given (possibly [`REDACTED`]).
fn check_definition(d: &WebhookDefinition) -> Result<Option<String>, ApiError> {
    let name = required(d.name.as_deref(), "webhook.name")?;
    check_name(name, "webhook.name")?;
    check_name(
        required(d.target_pipeline.as_deref(), "webhook.targetPipeline")?,
        "webhook.targetPipeline",
    )?;
    check_name(
        required(d.target_action.as_deref(), "webhook.targetAction")?,
        "webhook.targetAction",
    )?;
    let filters = required(d.filters.as_ref(), "webhook.filters")?;
    if filters.len() > MAX_FILTERS {
        return Err(validation(format!(
            "1 validation error detected: Value at 'webhook.filters' failed to satisfy constraint: Member must have length less than or equal to {MAX_FILTERS}, found {}",
            filters.len()
        )));
    }
    for (i, f) in filters.iter().enumerate() {
        let member = format!("webhook.filters.{}.jsonPath", i + 1);
        let path = required(f.json_path.as_deref(), &member)?;
        check_length(path, &member, 150)?;
        if !path.starts_with('$') {
            return Err(filter_error(format!(
                "The jsonPath of filter {} must be a JSONPath expression starting with '$', found '{path}'",
                i + 1
            )));
        }
        if let Some(m) = &f.match_equals {
            check_length(m, &format!("webhook.filters.{}.matchEquals", i + 1), 150)?;
        }
    }
    let authentication = required(d.authentication.as_deref(), "webhook.authentication")?;
    let config = required(
        d.authentication_configuration.as_ref(),
        "webhook.authenticationConfiguration",
    )?;
    for (value, member) in [
        (&config.secret_token, "SecretToken"),
        (&config.allowed_ip_range, "AllowedIPRange"),
    ] {
        if let Some(v) = value {
            check_length(
                v,
                &format!("webhook.authenticationConfiguration.{member}"),
                100,
            )?;
        }
    }
    match authentication {
        "GITHUB_HMAC" => {
            if config.allowed_ip_range.is_some() {
                return Err(auth_error(
                    "GITHUB_HMAC takes only SecretToken; remove AllowedIPRange",
                ));
            }
            let secret = config.secret_token.clone().ok_or_else(|| {
                auth_error("GITHUB_HMAC needs authenticationConfiguration.SecretToken")
            })?;
            Ok(Some(secret))
        }
        "IP" => {
            if config.secret_token.is_some() {
                return Err(auth_error(
                    "IP takes only AllowedIPRange; remove SecretToken",
                ));
            }
            let range = config.allowed_ip_range.as_deref().ok_or_else(|| {
                auth_error("IP needs authenticationConfiguration.AllowedIPRange (a CIDR range)")
            })?;
            if !valid_cidr(range) {
                return Err(auth_error(format!(
                    "AllowedIPRange must be a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, found '{range}'"
                )));
            }
            Ok(None)
        }
        "UNAUTHENTICATED" => {
            if config.secret_token.is_some() || config.allowed_ip_range.is_some() {
                return Err(auth_error(
                    "UNAUTHENTICATED takes no authenticationConfiguration properties",
                ));
            }
            Ok(None)
        }
        other => Err(validation(format!(
            "1 validation error detected: Value '{other}' at 'webhook.authentication' failed to satisfy constraint: Member must satisfy enum value set: [GITHUB_HMAC, IP, UNAUTHENTICATED]"
        ))),
    }
}

/// Where deliveries go: the configured public URL, else `http://` and the
/// request's Host header (the address the caller reached this server at).
fn base_url(config: &crate::Config, headers: &HeaderMap) -> String {
    if let Some(url) = config.public_url.as_deref() {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A stored webhook as `ListWebhookItem`.
fn list_item(config: &crate::Config, base: &str, w: &WebhookRecord) -> Value {
    let mut definition = w.definition.clone();
    if w.has_secret {
        definition["authenticationConfiguration"]["SecretToken"] = json!(REDACTED);
    }
    let mut item = json!({
        "definition": definition,
        "url": format!("{base}{DELIVERY_PATH}{}", w.url_id),
        "arn": arn(config, &format!("webhook:{}", w.name)),
    });
    if let Some(at) = w.last_triggered_ms {
        item["lastTriggered"] = super::timestamp_ms(at);
    }
    if w.tags.as_array().is_some_and(|t| !t.is_empty()) {
        item["tags"] = w.tags.clone();
    }
    item
}

pub(super) async fn put<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: PutInput,
    headers: &HeaderMap,
) -> Result<Value, ApiError> {
    let mut definition = required(input.webhook, "webhook")?;
    let given_secret = check_definition(&definition)?;
    let tags = input.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(exception(
            "TooManyTagsException",
            format!(
                "A webhook can have at most {MAX_TAGS} tags, found {}",
                tags.len()
            ),
        ));
    }
    for tag in &tags {
        if !(1..=128).contains(&tag.key.chars().count()) || tag.value.chars().count() > 256 {
            return Err(exception(
                "InvalidTagsException",
                format!(
                    "Tag keys must have 1 to 128 characters and values at most 256, found key '{}'",
                    tag.key
                ),
            ));
        }
    }
    // Checked above: all three are present.
    let name = definition.name.clone().unwrap_or_default();
    let pipeline = definition.target_pipeline.clone().unwrap_or_default();
    let action = definition.target_action.clone().unwrap_or_default();

    let record = match state.store.get_pipeline(&pipeline, None).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(pipeline_not_found(&pipeline)),
        Err(e) => return Err(e.into()),
    };
    let declaration = parse_stored(&record.declaration)?;
    let sources: Vec<&str> = declaration
        .stages
        .first()
        .map(|s| s.actions.iter().map(|a| a.name.value.as_str()).collect())
        .unwrap_or_default();
    if !sources.contains(&action.as_str()) {
        return Err(validation(format!(
            "targetAction '{action}' is not an action of the first stage of pipeline '{pipeline}'; its source actions are {}",
            sources.join(", ")
        )));
    }

    let secret = match given_secret {
        Some(s) if s == REDACTED => match state.store.webhook_secret(&name).await {
            Ok(Some(kept)) => Some(kept),
            Ok(None) | Err(StoreError::NotFound) => {
                return Err(auth_error(format!(
                    "SecretToken '{REDACTED}' keeps the stored token, but webhook '{name}' has none; give the token"
                )));
            }
            Err(e) => return Err(e.into()),
        },
        other => other,
    };
    // The secret lives only in the encrypted column.
    if let Some(config) = definition.authentication_configuration.as_mut() {
        config.secret_token = None;
    }
    let new = NewWebhook {
        name,
        pipeline,
        definition: serde_json::to_value(&definition).map_err(ApiError::internal)?,
        secret,
        url_id: uuid::Uuid::new_v4().simple().to_string(),
        tags: serde_json::to_value(&tags).map_err(ApiError::internal)?,
    };
    let stored = state.store.put_webhook(&new, actor).await?;
    let base = base_url(&state.config, headers);
    Ok(json!({ "webhook": list_item(&state.config, &base, &stored) }))
}

#[derive(Deserialize)]
pub(super) struct ListInput {
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
}

pub(super) async fn list<S: Store>(
    state: &AppState<S>,
    input: ListInput,
    headers: &HeaderMap,
) -> Result<Value, ApiError> {
    let max = match input.max_results {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'MaxResults' failed to satisfy constraint: Member must have value between 1 and 100"
            )));
        }
    };
    let all = state.store.list_webhooks().await?;
    let (webhooks, next) = page(all, |w| w.name.as_str(), input.next_token.as_deref(), max)?;
    let base = base_url(&state.config, headers);
    let items: Vec<Value> = webhooks
        .iter()
        .map(|w| list_item(&state.config, &base, w))
        .collect();
    let mut out = json!({ "webhooks": items });
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(super) struct DeleteInput {
    name: Option<String>,
}

/// Deleting a webhook that is already gone succeeds (documented).
pub(super) async fn delete<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: DeleteInput,
) -> Result<Value, ApiError> {
    let name = required(input.name, "name")?;
    check_name(&name, "name")?;
    state.store.delete_webhook(&name, actor).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterInput {
    webhook_name: Option<String>,
}

/// Gantry cannot configure the Git host itself, so registering records
/// the request and does nothing more; the webhook's URL must be set up on
/// the host by hand (docs/pipelines-api.md).
pub(super) async fn register<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: RegisterInput,
    registered: bool,
) -> Result<Value, ApiError> {
    let name = required(input.webhook_name, "webhookName")?;
    check_name(&name, "webhookName")?;
    match state
        .store
        .set_webhook_registered(&name, registered, actor)
        .await
    {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(exception(
            "WebhookNotFoundException",
            format!("No webhook named '{name}'"),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(auth: &str, config: Value) -> WebhookDefinition {
        serde_json::from_value(json!({
            "name": "gh",
            "targetPipeline": "app",
            "targetAction": "Source",
            "filters": [{"jsonPath": "$.ref", "matchEquals": "refs/heads/{Branch}"}],
            "authentication": auth,
            "authenticationConfiguration": config,
        }))
        .expect("shape")
    }

    fn code(r: Result<Option<String>, ApiError>) -> String {
        r.err()
            .map(|e| e.error.code.as_str().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn authentication_takes_exactly_its_own_parameters() {
        assert_eq!(
            check_definition(&definition("GITHUB_HMAC", json!({"SecretToken": "s"}))).ok(),
            Some(Some("s".to_string()))
        );
        assert_eq!(
            code(check_definition(&definition("GITHUB_HMAC", json!({})))),
            "InvalidWebhookAuthenticationParametersException"
        );
        assert_eq!(
            code(check_definition(&definition(
                "GITHUB_HMAC",
                json!({"SecretToken": "s", "AllowedIPRange": "10.0.0.0/8"})
            ))),
            "InvalidWebhookAuthenticationParametersException"
        );
        assert!(
            check_definition(&definition("IP", json!({"AllowedIPRange": "10.0.0.0/8"}))).is_ok()
        );
        assert_eq!(
            code(check_definition(&definition(
                "IP",
                json!({"AllowedIPRange": "10.0.0.0/33"})
            ))),
            "InvalidWebhookAuthenticationParametersException"
        );
        assert!(check_definition(&definition("UNAUTHENTICATED", json!({}))).is_ok());
        assert_eq!(
            code(check_definition(&definition(
                "UNAUTHENTICATED",
                json!({"SecretToken": "s"})
            ))),
            "InvalidWebhookAuthenticationParametersException"
        );
        assert_eq!(
            code(check_definition(&definition("BASIC", json!({})))),
            "ValidationException"
        );
    }

    #[test]
    fn filters_are_json_paths_and_at_most_five() {
        let mut d = definition("UNAUTHENTICATED", json!({}));
        d.filters = Some(vec![FilterRule {
            json_path: Some("ref".into()),
            match_equals: None,
        }]);
        assert_eq!(
            code(check_definition(&d)),
            "InvalidWebhookFilterPatternException"
        );
        d.filters = Some(vec![
            FilterRule {
                json_path: Some("$.ref".into()),
                match_equals: None,
            };
            6
        ]);
        assert_eq!(code(check_definition(&d)), "ValidationException");
    }

    #[test]
    fn cidr_ranges() {
        for ok in ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32", "::/0"] {
            assert!(valid_cidr(ok), "{ok}");
        }
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "::/129",
            "10.0.0.0/+8",
        ] {
            assert!(!valid_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn the_base_url_prefers_the_configured_one() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "gantry.local:8080".parse().expect("header"));
        let mut config = crate::Config::new("/tmp/x");
        assert_eq!(base_url(&config, &headers), "http://gantry.local:8080");
        config.public_url = Some("https://ci.example.com/".into());
        assert_eq!(base_url(&config, &headers), "https://ci.example.com");
    }
}
