//! CodePipeline webhooks (PutWebhook, ListWebhooks): the `WebhookDefinition`
//! exactly as botocore's `codepipeline/2015-07-09` model spells it, its
//! validation, and what a POST to the webhook's URL does.
//!
//! A request starts the target action's pipeline when it authenticates
//! (`GITHUB_HMAC`: GitHub's signature made with `SecretToken`; `IP`: the
//! caller is inside `AllowedIPRange`; `UNAUTHENTICATED`: anyone) and every
//! filter rule holds: the rule's `jsonPath` selects, from the JSON body, a
//! value equal to `matchEquals` once its `{Name}` placeholders are replaced
//! by the target action's configuration (`refs/heads/{BranchName}`), or, with
//! no `matchEquals`, selects anything at all.
//!
//! ```
//! use gantry_triggers::codepipeline::WebhookDefinition;
//!
//! let webhook: WebhookDefinition = serde_json::from_str(r#"{
//!     "name": "shop-github",
//!     "targetPipeline": "shop",
//!     "targetAction": "Source",
//!     "filters": [{"jsonPath": "$.ref", "matchEquals": "refs/heads/{Branch}"}],
//!     "authentication": "UNAUTHENTICATED",
//!     "authenticationConfiguration": {}
//! }"#)?;
//! webhook.validate()?;
//!
//! let payload = serde_json::json!({"ref": "refs/heads/main"});
//! let config = |key: &str| (key == "Branch").then(|| "main".to_string());
//! let (start, reason) = webhook.filters_match(&payload, config);
//! assert!(start, "{reason}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cidr;

use std::fmt;
use std::net::IpAddr;

use gantry_spec::pipeline::{ActionCategory, ActionDeclaration, PipelineDeclaration};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;
use thiserror::Error;

pub use cidr::{CidrError, IpRange};

use crate::event::{self, EventError};
use crate::filter::Decision;
use crate::headers::Headers;
use crate::signature::{self, SignatureError};

/// What API responses show instead of a secret token.
pub const REDACTED: &str = "****";

/// `WebhookDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDefinition {
    /// `name`: 1–100 of `[A-Za-z0-9.@\-_]`.
    pub name: String,
    /// `targetPipeline`: the pipeline to start.
    pub target_pipeline: String,
    /// `targetAction`: a source action of that pipeline.
    pub target_action: String,
    /// `filters`: at most 5 rules, all of which must hold.
    pub filters: Vec<WebhookFilterRule>,
    /// `authentication`.
    pub authentication: WebhookAuthenticationType,
    /// `authenticationConfiguration`: what `authentication` needs.
    pub authentication_configuration: WebhookAuthConfiguration,
}

/// `WebhookFilterRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookFilterRule {
    /// `jsonPath`: 1–150 characters, applied to the request body.
    pub json_path: String,
    /// `matchEquals`: 1–150 characters, `{Name}` placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_equals: Option<String>,
}

/// `WebhookAuthenticationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookAuthenticationType {
    /// `GITHUB_HMAC`: GitHub's `X-Hub-Signature-256` (or legacy
    /// `X-Hub-Signature`) made with `SecretToken`.
    #[serde(rename = "GITHUB_HMAC")]
    GithubHmac,
    /// `IP`: the caller's address must be inside `AllowedIPRange`.
    #[serde(rename = "IP")]
    Ip,
    /// `UNAUTHENTICATED`: every request is accepted.
    #[serde(rename = "UNAUTHENTICATED")]
    Unauthenticated,
}

impl WebhookAuthenticationType {
    /// The spelling on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookAuthenticationType::GithubHmac => "GITHUB_HMAC",
            WebhookAuthenticationType::Ip => "IP",
            WebhookAuthenticationType::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// `WebhookAuthConfiguration`. Its members are PascalCase on the wire, as
/// in the API model. `Debug` never shows the secret token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuthConfiguration {
    /// `AllowedIPRange`: a CIDR range, 1–100 characters.
    #[serde(
        rename = "AllowedIPRange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_ip_range: Option<String>,
    /// `SecretToken`: 1–100 characters.
    #[serde(
        rename = "SecretToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_token: Option<String>,
}

impl fmt::Debug for WebhookAuthConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookAuthConfiguration")
            .field("allowed_ip_range", &self.allowed_ip_range)
            .field(
                "secret_token",
                &self.secret_token.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// Why PutWebhook refuses a definition; [`code`](Self::code) is the AWS
/// error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookValidationError {
    /// `ValidationException`: lengths, patterns, the number of filters, in
    /// AWS's "N validation errors detected: ..." form.
    #[error("{0}")]
    Validation(String),
    /// `InvalidWebhookFilterPatternException`: a `jsonPath` that does not parse.
    #[error("{0}")]
    FilterPattern(String),
    /// `InvalidWebhookAuthenticationParametersException`: the
    /// authentication configuration does not fit the authentication type.
    #[error("{0}")]
    AuthenticationParameters(String),
    /// `PipelineNotFoundException`: the pipeline given is not `targetPipeline`.
    #[error("{0}")]
    PipelineNotFound(String),
}

impl WebhookValidationError {
    /// The AWS error code (`__type`).
    pub fn code(&self) -> &'static str {
        match self {
            WebhookValidationError::Validation(_) => "ValidationException",
            WebhookValidationError::FilterPattern(_) => "InvalidWebhookFilterPatternException",
            WebhookValidationError::AuthenticationParameters(_) => {
                "InvalidWebhookAuthenticationParametersException"
            }
            WebhookValidationError::PipelineNotFound(_) => "PipelineNotFoundException",
        }
    }
}

/// Why a request to a webhook's URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookError {
    /// `GITHUB_HMAC`: the signature is missing, malformed or wrong.
    #[error("webhook authentication failed: {0}")]
    Signature(#[from] SignatureError),
    /// `IP`: the caller is outside `AllowedIPRange`.
    #[error("webhook authentication failed: {address} is not in the allowed IP range {range}")]
    AddressNotAllowed {
        /// The caller.
        address: IpAddr,
        /// `AllowedIPRange`.
        range: String,
    },
    /// The stored definition cannot authenticate anything (it was not validated).
    #[error("the webhook's authentication configuration is unusable: {0}")]
    Misconfigured(String),
    /// The body is not JSON.
    #[error("{0}")]
    Payload(#[from] EventError),
    /// The action given is not the webhook's target action.
    #[error("the webhook targets action `{expected}`, not `{given}`")]
    WrongAction {
        /// `targetAction`.
        expected: String,
        /// The action passed in.
        given: String,
    },
}

const NAME_PATTERN: &str = r"[A-Za-z0-9.@\-_]+";

impl WebhookDefinition {
    /// Checks the definition as PutWebhook does: first the model's
    /// constraints (`ValidationException`, every violation listed), then
    /// each `jsonPath` (`InvalidWebhookFilterPatternException`), then the
    /// authentication configuration
    /// (`InvalidWebhookAuthenticationParametersException`).
    pub fn validate(&self) -> Result<(), WebhookValidationError> {
        let mut violations = Vec::new();
        name(&mut violations, "webhook.name", &self.name);
        name(
            &mut violations,
            "webhook.targetPipeline",
            &self.target_pipeline,
        );
        name(&mut violations, "webhook.targetAction", &self.target_action);
        if self.filters.len() > 5 {
            violations.push(
                "Value at 'webhook.filters' failed to satisfy constraint: \
                 Member must have length less than or equal to 5"
                    .to_string(),
            );
        }
        for (i, rule) in self.filters.iter().enumerate() {
            let at = format!("webhook.filters.{}.member", i + 1);
            length(
                &mut violations,
                &format!("{at}.jsonPath"),
                Some(&rule.json_path),
                150,
            );
            if let Some(value) = &rule.match_equals {
                length(
                    &mut violations,
                    &format!("{at}.matchEquals"),
                    Some(value),
                    150,
                );
            }
        }
        let auth = &self.authentication_configuration;
        let at = "webhook.authenticationConfiguration";
        length(
            &mut violations,
            &format!("{at}.AllowedIPRange"),
            auth.allowed_ip_range.as_deref(),
            100,
        );
        if let Some(token) = &auth.secret_token {
            // The token itself never appears in a message.
            let n = token.chars().count();
            if n == 0 {
                violations.push(format!(
                    "Value at '{at}.SecretToken' failed to satisfy constraint: \
                     Member must have length greater than or equal to 1"
                ));
            } else if n > 100 {
                violations.push(format!(
                    "Value at '{at}.SecretToken' failed to satisfy constraint: \
                     Member must have length less than or equal to 100"
                ));
            }
        }
        if !violations.is_empty() {
            let n = violations.len();
            return Err(WebhookValidationError::Validation(format!(
                "{n} validation error{} detected: {}",
                if n == 1 { "" } else { "s" },
                violations.join("; ")
            )));
        }

        for (i, rule) in self.filters.iter().enumerate() {
            if let Err(e) = compile(&rule.json_path) {
                return Err(WebhookValidationError::FilterPattern(format!(
                    "The JsonPath '{}' of filter {} is not valid: {e}",
                    rule.json_path,
                    i + 1
                )));
            }
        }

        let auth_error = |m: &str| {
            Err(WebhookValidationError::AuthenticationParameters(
                m.to_string(),
            ))
        };
        match self.authentication {
            WebhookAuthenticationType::GithubHmac if auth.secret_token.is_none() => auth_error(
                "GITHUB_HMAC authentication requires SecretToken in authenticationConfiguration",
            ),
            WebhookAuthenticationType::Ip => match &auth.allowed_ip_range {
                None => auth_error(
                    "IP authentication requires AllowedIPRange in authenticationConfiguration",
                ),
                Some(range) => match range.parse::<IpRange>() {
                    Ok(_) => Ok(()),
                    Err(e) => Err(WebhookValidationError::AuthenticationParameters(format!(
                        "AllowedIPRange must be a valid CIDR range: {e}"
                    ))),
                },
            },
            WebhookAuthenticationType::Unauthenticated
                if auth.secret_token.is_some() || auth.allowed_ip_range.is_some() =>
            {
                auth_error(
                    "UNAUTHENTICATED authentication takes no authenticationConfiguration properties",
                )
            }
            _ => Ok(()),
        }
    }

    /// The target action in `pipeline`: the pipeline must be
    /// `targetPipeline` (`PipelineNotFoundException`), and `targetAction` an
    /// action of its first stage, which holds only source actions
    /// (`ValidationException`).
    pub fn target_action_in<'p>(
        &self,
        pipeline: &'p PipelineDeclaration,
    ) -> Result<&'p ActionDeclaration, WebhookValidationError> {
        if pipeline.name.value != self.target_pipeline {
            return Err(WebhookValidationError::PipelineNotFound(format!(
                "Pipeline '{}' not found (the pipeline given is '{}')",
                self.target_pipeline, pipeline.name.value
            )));
        }
        pipeline
            .stages
            .first()
            .and_then(|stage| {
                stage.actions.iter().find(|a| {
                    a.name.value == self.target_action
                        && a.action_type_id.category.value == ActionCategory::Source
                })
            })
            .ok_or_else(|| {
                WebhookValidationError::Validation(format!(
                    "Action '{}' is not a source action in the first stage of pipeline '{}'",
                    self.target_action, self.target_pipeline
                ))
            })
    }

    /// The definition as ListWebhooks shows it: the secret token replaced by
    /// [`REDACTED`].
    pub fn redacted(&self) -> WebhookDefinition {
        let mut copy = self.clone();
        if let Some(token) = &mut copy.authentication_configuration.secret_token {
            *token = REDACTED.to_string();
        }
        copy
    }

    /// Checks that a request may use this webhook; `remote` is the caller's
    /// address (for `IP`).
    pub fn authenticate(
        &self,
        headers: &Headers,
        body: &[u8],
        remote: IpAddr,
    ) -> Result<(), WebhookError> {
        let auth = &self.authentication_configuration;
        match self.authentication {
            WebhookAuthenticationType::GithubHmac => {
                let Some(secret) = &auth.secret_token else {
                    return Err(WebhookError::Misconfigured(
                        "GITHUB_HMAC without SecretToken".to_string(),
                    ));
                };
                signature::verify_github(headers, body, secret)?;
                Ok(())
            }
            WebhookAuthenticationType::Ip => {
                let Some(text) = &auth.allowed_ip_range else {
                    return Err(WebhookError::Misconfigured(
                        "IP without AllowedIPRange".to_string(),
                    ));
                };
                let range: IpRange = text
                    .parse()
                    .map_err(|e: CidrError| WebhookError::Misconfigured(e.to_string()))?;
                if range.contains(remote) {
                    Ok(())
                } else {
                    Err(WebhookError::AddressNotAllowed {
                        address: remote,
                        range: text.clone(),
                    })
                }
            }
            WebhookAuthenticationType::Unauthenticated => Ok(()),
        }
    }

    /// Whether every filter rule holds for `payload`, and why (or why not).
    /// `configuration` gives the target action's configuration values for
    /// `{Name}` placeholders.
    pub fn filters_match(
        &self,
        payload: &Value,
        configuration: impl Fn(&str) -> Option<String>,
    ) -> (bool, String) {
        let mut passed = Vec::new();
        for (i, rule) in self.filters.iter().enumerate() {
            match rule_holds(rule, payload, &configuration) {
                Ok(why) => passed.push(why),
                Err(why) => return (false, format!("filter {} does not hold: {why}", i + 1)),
            }
        }
        if passed.is_empty() {
            (true, "the webhook has no filters".to_string())
        } else {
            (true, format!("every filter holds: {}", passed.join("; ")))
        }
    }

    /// A request to this webhook's URL, from start to end: authentication,
    /// then the JSON body, then the filters, for `action` (the target
    /// action, whose configuration fills the placeholders).
    pub fn evaluate(
        &self,
        headers: &Headers,
        body: &[u8],
        remote: IpAddr,
        action: &ActionDeclaration,
    ) -> Result<Decision, WebhookError> {
        if action.name.value != self.target_action {
            return Err(WebhookError::WrongAction {
                expected: self.target_action.clone(),
                given: action.name.value.clone(),
            });
        }
        self.authenticate(headers, body, remote)?;
        let payload = event::json(body)?;
        let (start, reason) =
            self.filters_match(&payload, |key| action.config(key).map(|v| v.value.clone()));
        Ok(Decision {
            start,
            source_action: self.target_action.clone(),
            reason,
        })
    }
}

/// A `jsonPath` in Jayway's dialect as RFC 9535 reads it: Jayway puts `$.`
/// in front of a path that does not start with `$` (and treats a leading
/// `@` as the root).
fn compile(path: &str) -> Result<JsonPath, serde_json_path::ParseError> {
    let path = path.trim();
    if path.starts_with('$') {
        JsonPath::parse(path)
    } else if let Some(rest) = path.strip_prefix('@') {
        JsonPath::parse(&format!("${rest}"))
    } else {
        JsonPath::parse(&format!("$.{path}"))
    }
}

fn rule_holds(
    rule: &WebhookFilterRule,
    payload: &Value,
    configuration: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let path = compile(&rule.json_path)
        .map_err(|e| format!("`{}` is not a valid JSONPath: {e}", rule.json_path))?;
    let nodes = path.query(payload).all();
    let Some(template) = &rule.match_equals else {
        return if nodes.is_empty() {
            Err(format!("`{}` selects nothing", rule.json_path))
        } else {
            Ok(format!("`{}` selects a value", rule.json_path))
        };
    };
    let expected = expand(template, configuration).map_err(|name| {
        format!("`{{{name}}}` in matchEquals is not a configuration key of the target action")
    })?;
    if nodes
        .iter()
        .any(|v| text(v).as_deref() == Some(expected.as_str()))
    {
        return Ok(format!("`{}` is `{expected}`", rule.json_path));
    }
    Err(match nodes.first() {
        None => format!(
            "`{}` selects nothing; expected `{expected}`",
            rule.json_path
        ),
        Some(v) => format!(
            "`{}` is {}; expected `{expected}`",
            rule.json_path,
            shorten(&v.to_string())
        ),
    })
}

/// A selected value as matchEquals compares it: strings as they are,
/// numbers and booleans as JSON writes them; `null`, objects and arrays
/// equal nothing.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Replaces `{Name}` with the configuration value of `Name`; `Err(Name)`
/// for a name the configuration lacks. A `{` without a closing `}`, and
/// `{}`, are literal text.
fn expand(
    template: &str,
    configuration: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if close > 0 && !after[..close].contains('{') => {
                let name = &after[..close];
                out.push_str(&configuration(name).ok_or_else(|| name.to_string())?);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        format!("`{text}`")
    } else {
        format!("`{}…`", text.chars().take(80).collect::<String>())
    }
}

fn name(violations: &mut Vec<String>, at: &str, value: &str) {
    length(violations, at, Some(value), 100);
    if !value.is_empty()
        && !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'))
    {
        violations.push(format!(
            "Value '{}' at '{at}' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: {NAME_PATTERN}",
            value.chars().take(200).collect::<String>()
        ));
    }
}

fn length(violations: &mut Vec<String>, at: &str, value: Option<&str>, max: usize) {
    let Some(value) = value else { return };
    let n = value.chars().count();
    let shown: String = value.chars().take(200).collect();
    if n == 0 {
        violations.push(format!(
            "Value '{shown}' at '{at}' failed to satisfy constraint: \
             Member must have length greater than or equal to 1"
        ));
    } else if n > max {
        violations.push(format!(
            "Value '{shown}' at '{at}' failed to satisfy constraint: \
             Member must have length less than or equal to {max}"
        ));
    }
}

#[cfg(test)]
mod tests;
