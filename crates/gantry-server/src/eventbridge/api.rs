//! PutEvents, the rule operations, the target operations and TestEventPattern.

use gantry_aws::AwsError;
use gantry_events::{Pattern, PutEventsEntry, Schedule};
use gantry_store::{NewRule, RuleRecord, Store, StoreError, TargetRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::bus::rule_arn;
use super::delivery::{TargetKind, compile_transformer};
use super::{bus_name, check_name, not_found, validation};
use crate::error::ApiError;
use crate::router::AppState;

/// PutEvents takes at most this many entries.
const MAX_ENTRIES: usize = 10;
/// A rule has at most this many targets.
const MAX_TARGETS: usize = 5;
/// ListRules / ListTargetsByRule page size when no Limit is given.
const DEFAULT_PAGE: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutEventsInput {
    entries: Vec<PutEventsEntry>,
}

pub(crate) async fn put_events<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: PutEventsInput,
) -> Result<Value, ApiError> {
    if input.entries.is_empty() || input.entries.len() > MAX_ENTRIES {
        return Err(validation(format!(
            "1 validation error detected: Value at 'entries' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_ENTRIES}, not {}",
            input.entries.len()
        )));
    }
    let results = state.events.put_events(input.entries, actor, false).await?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let entries: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(id) => json!({ "EventId": id }),
            Err((code, message)) => json!({ "ErrorCode": code, "ErrorMessage": message }),
        })
        .collect();
    Ok(json!({ "FailedEntryCount": failed, "Entries": entries }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutRuleInput {
    name: String,
    schedule_expression: Option<String>,
    event_pattern: Option<String>,
    state: Option<String>,
    description: Option<String>,
    role_arn: Option<String>,
    event_bus_name: Option<String>,
}

fn invalid_pattern(message: impl Into<String>) -> ApiError {
    AwsError::service("InvalidEventPatternException", 400, message).into()
}

fn rule_not_found(name: &str, bus: &str) -> ApiError {
    not_found(format!("Rule {name} does not exist on EventBus {bus}."))
}

fn bus_not_found(bus: &str) -> ApiError {
    not_found(format!("Event bus {bus} does not exist."))
}

pub(crate) async fn put_rule<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: PutRuleInput,
) -> Result<Value, ApiError> {
    check_name("name", &input.name, 64)?;
    let bus = bus_name(input.event_bus_name.as_deref());
    let schedule = input.schedule_expression.filter(|s| !s.is_empty());
    let pattern = input.event_pattern.filter(|s| !s.is_empty());
    if schedule.is_none() && pattern.is_none() {
        return Err(validation(
            "Parameter(s) EventPattern or ScheduleExpression must be specified.",
        ));
    }
    if let Some(text) = &pattern {
        Pattern::parse(text).map_err(|e| invalid_pattern(e.to_string()))?;
    }
    if let Some(text) = &schedule {
        Schedule::parse(text).map_err(|e| validation(e.to_string()))?;
        if bus != "default" {
            return Err(validation(
                "ScheduleExpression is supported only on the default event bus.",
            ));
        }
    }
    let rule_state = input.state.unwrap_or_else(|| "ENABLED".into());
    if !matches!(rule_state.as_str(), "ENABLED" | "DISABLED") {
        return Err(validation(format!(
            "1 validation error detected: Value '{rule_state}' at 'state' failed to satisfy \
             constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
        )));
    }
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 512)
    {
        return Err(validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: \
             Member must have length less than or equal to 512",
        ));
    }
    let new = NewRule {
        bus: bus.clone(),
        name: input.name.clone(),
        state: rule_state,
        event_pattern: pattern,
        schedule,
        description: input.description,
        role_arn: input.role_arn,
        now_ms: state.events.now_ms(),
    };
    match state.store.put_rule(&new, actor).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(bus_not_found(&bus)),
        Err(e) => return Err(e.into()),
    }
    state.events.reload().await?;
    Ok(json!({ "RuleArn": rule_arn(&state.config, &bus, &input.name) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RuleRef {
    name: String,
    event_bus_name: Option<String>,
}

fn rule_json<S: Store>(state: &AppState<S>, r: &RuleRecord) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("Name".into(), json!(r.name));
    out.insert(
        "Arn".into(),
        json!(rule_arn(&state.config, &r.bus, &r.name)),
    );
    if let Some(p) = &r.event_pattern {
        out.insert("EventPattern".into(), json!(p));
    }
    if let Some(s) = &r.schedule {
        out.insert("ScheduleExpression".into(), json!(s));
    }
    out.insert("State".into(), json!(r.state));
    if let Some(d) = &r.description {
        out.insert("Description".into(), json!(d));
    }
    if let Some(role) = &r.role_arn {
        out.insert("RoleArn".into(), json!(role));
    }
    out.insert("EventBusName".into(), json!(r.bus));
    out
}

async fn get_rule<S: Store>(
    state: &AppState<S>,
    bus: &str,
    name: &str,
) -> Result<RuleRecord, ApiError> {
    match state.store.get_rule(bus, name).await {
        Ok(r) => Ok(r),
        Err(StoreError::NotFound) => Err(rule_not_found(name, bus)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn describe_rule<S: Store>(
    state: &AppState<S>,
    input: RuleRef,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    let r = get_rule(state, &bus, &input.name).await?;
    let mut out = rule_json(state, &r);
    out.insert("CreatedBy".into(), json!(state.config.account_id));
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteRuleInput {
    name: String,
    event_bus_name: Option<String>,
}

/// Deleting a rule that does not exist succeeds, as in EventBridge;
/// deleting one that still has targets is refused.
pub(crate) async fn delete_rule<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: DeleteRuleInput,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    match state.store.delete_rule(&bus, &input.name, actor).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(validation("Rule can't be deleted since it has targets."));
        }
        Err(e) => return Err(e.into()),
    }
    state.events.reload().await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListRulesInput {
    name_prefix: Option<String>,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// One page from an offset token this server handed out.
fn page<T: Clone>(
    items: &[T],
    next_token: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(n) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: \
                 Member must have value between 1 and 100"
            )));
        }
    };
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= items.len())
            .ok_or_else(|| validation("The NextToken is not valid."))?,
    };
    let end = (start + size).min(items.len());
    Ok((
        items[start..end].to_vec(),
        (end < items.len()).then(|| end.to_string()),
    ))
}

pub(crate) async fn list_rules<S: Store>(
    state: &AppState<S>,
    input: ListRulesInput,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    if !state.store.bus_exists(&bus).await? {
        return Err(bus_not_found(&bus));
    }
    let prefix = input.name_prefix.unwrap_or_default();
    let rules = state.store.list_rules(&bus, &prefix).await?;
    let (rules, next) = page(&rules, input.next_token.as_deref(), input.limit)?;
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| Value::Object(rule_json(state, r)))
        .collect();
    let mut out = json!({ "Rules": rules });
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    Ok(out)
}

pub(crate) async fn set_state<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: RuleRef,
    new_state: &str,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    match state
        .store
        .set_rule_state(&bus, &input.name, new_state, actor)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(rule_not_found(&input.name, &bus)),
        Err(e) => return Err(e.into()),
    }
    state.events.reload().await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    targets: Vec<Value>,
}

/// Whether `v` is a whole number from `lo` to `hi`.
fn whole_in(v: &Value, lo: u64, hi: u64) -> bool {
    v.as_u64().is_some_and(|n| (lo..=hi).contains(&n))
}

/// Checks one target; `Err` is the reason it is refused.
fn check_target(t: &Value) -> Result<TargetRecord, (String, String)> {
    let fail = |m: String| ("ValidationException".to_owned(), m);
    let id = t.get("Id").and_then(Value::as_str).unwrap_or_default();
    let arn = t.get("Arn").and_then(Value::as_str).unwrap_or_default();
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !id_ok {
        return Err(fail(format!(
            "Target Id '{id}' must match [\\.\\-_A-Za-z0-9]+ and be 1 to 64 characters"
        )));
    }
    if arn.is_empty() || arn.len() > 1600 {
        return Err(fail(format!(
            "Target {id}: Arn is required (1 to 1600 characters)"
        )));
    }
    TargetKind::parse(arn).map_err(|e| fail(format!("Target {id}: {e}")))?;
    let given: Vec<&str> = ["Input", "InputPath", "InputTransformer"]
        .into_iter()
        .filter(|m| t.get(*m).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() > 1 {
        return Err(fail(format!(
            "Target {id}: only one of Input, InputPath and InputTransformer may be given, not {}",
            given.join(" and ")
        )));
    }
    if let Some(input) = t.get("Input") {
        let text = input
            .as_str()
            .ok_or_else(|| fail(format!("Target {id}: Input must be a string of JSON")))?;
        serde_json::from_str::<Value>(text)
            .map_err(|e| fail(format!("Target {id}: Input is not valid JSON: {e}")))?;
    }
    if let Some(path) = t.get("InputPath") {
        let path = path.as_str().unwrap_or_default();
        gantry_events::InputTransformer::new([("v", path)], "<v>")
            .map_err(|e| fail(format!("Target {id}: InputPath is not valid: {e}")))?;
    }
    if let Some(tr) = t.get("InputTransformer") {
        compile_transformer(tr).map_err(|e| fail(format!("Target {id}: {e}")))?;
    }
    if let Some(policy) = t.get("RetryPolicy") {
        let retries = policy.get("MaximumRetryAttempts");
        if retries.is_some_and(|v| !whole_in(v, 0, 185)) {
            return Err(fail(format!(
                "Target {id}: RetryPolicy.MaximumRetryAttempts must be an integer from 0 to 185"
            )));
        }
        let age = policy.get("MaximumEventAgeInSeconds");
        if age.is_some_and(|v| !whole_in(v, 60, 86_400)) {
            return Err(fail(format!(
                "Target {id}: RetryPolicy.MaximumEventAgeInSeconds must be an integer from 60 to 86400"
            )));
        }
    }
    Ok(TargetRecord {
        id: id.to_owned(),
        arn: arn.to_owned(),
        target: t.clone(),
    })
}

pub(crate) async fn put_targets<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: PutTargetsInput,
) -> Result<Value, ApiError> {
    check_name("rule", &input.rule, 64)?;
    let bus = bus_name(input.event_bus_name.as_deref());
    if input.targets.is_empty() || input.targets.len() > 10 {
        return Err(validation(
            "1 validation error detected: Value at 'targets' failed to satisfy constraint: \
             Member must have length between 1 and 10",
        ));
    }
    let existing = match state.store.list_targets(&bus, &input.rule).await {
        Ok(t) => t,
        Err(e) => return Err(e.into()),
    };
    get_rule(state, &bus, &input.rule).await?;
    let mut good = Vec::new();
    let mut failed = Vec::new();
    for t in &input.targets {
        match check_target(t) {
            Ok(record) => good.push(record),
            Err((code, message)) => failed.push(json!({
                "TargetId": t.get("Id").and_then(Value::as_str).unwrap_or_default(),
                "ErrorCode": code,
                "ErrorMessage": message,
            })),
        }
    }
    let mut ids: Vec<&str> = existing.iter().map(|t| t.id.as_str()).collect();
    ids.extend(good.iter().map(|t| t.id.as_str()));
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_TARGETS {
        return Err(AwsError::service(
            "LimitExceededException",
            400,
            format!("The requested resource exceeds the maximum number allowed: a rule can have at most {MAX_TARGETS} targets."),
        )
        .into());
    }
    if !good.is_empty() {
        match state
            .store
            .put_targets(&bus, &input.rule, &good, actor)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(rule_not_found(&input.rule, &bus)),
            Err(e) => return Err(e.into()),
        }
        state.events.reload().await?;
    }
    Ok(json!({ "FailedEntryCount": failed.len(), "FailedEntries": failed }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RemoveTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    ids: Vec<String>,
}

pub(crate) async fn remove_targets<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: RemoveTargetsInput,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    if input.ids.is_empty() || input.ids.len() > 100 {
        return Err(validation(
            "1 validation error detected: Value at 'ids' failed to satisfy constraint: \
             Member must have length between 1 and 100",
        ));
    }
    get_rule(state, &bus, &input.rule).await?;
    let removed = state
        .store
        .remove_targets(&bus, &input.rule, &input.ids, actor)
        .await?;
    let failed: Vec<Value> = input
        .ids
        .iter()
        .filter(|id| !removed.contains(id))
        .map(|id| {
            json!({
                "TargetId": id,
                "ErrorCode": "ResourceNotFoundException",
                "ErrorMessage": format!("Target {id} does not exist on rule {}.", input.rule),
            })
        })
        .collect();
    state.events.reload().await?;
    Ok(json!({ "FailedEntryCount": failed.len(), "FailedEntries": failed }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list_targets<S: Store>(
    state: &AppState<S>,
    input: ListTargetsInput,
) -> Result<Value, ApiError> {
    let bus = bus_name(input.event_bus_name.as_deref());
    get_rule(state, &bus, &input.rule).await?;
    let targets = state.store.list_targets(&bus, &input.rule).await?;
    let (targets, next) = page(&targets, input.next_token.as_deref(), input.limit)?;
    let targets: Vec<Value> = targets.into_iter().map(|t| t.target).collect();
    let mut out = json!({ "Targets": targets });
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TestEventPatternInput {
    event_pattern: String,
    event: String,
}

/// The envelope fields TestEventPattern requires of its event.
const REQUIRED_EVENT_FIELDS: [&str; 6] =
    ["id", "account", "source", "time", "region", "detail-type"];

pub(crate) fn test_event_pattern(input: TestEventPatternInput) -> Result<Value, ApiError> {
    let pattern =
        Pattern::parse(&input.event_pattern).map_err(|e| invalid_pattern(e.to_string()))?;
    let event: Value = serde_json::from_str(&input.event)
        .map_err(|e| validation(format!("Parameter Event is not valid: {e}")))?;
    let Some(object) = event.as_object() else {
        return Err(validation(
            "Parameter Event is not valid: not a JSON object",
        ));
    };
    if let Some(missing) = REQUIRED_EVENT_FIELDS
        .iter()
        .find(|f| !object.contains_key(**f))
    {
        return Err(validation(format!(
            "Parameter Event is not valid: the event must have the field \"{missing}\""
        )));
    }
    Ok(json!({ "Result": pattern.matches(&event) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked() {
        let ok = json!({"Id": "t1", "Arn": "https://example.invalid/hook", "Input": "{\"a\":1}"});
        assert!(check_target(&ok).is_ok());
        for (bad, why) in [
            (
                json!({"Id": "t 1", "Arn": "https://x.invalid"}),
                "Target Id",
            ),
            (json!({"Id": "t1"}), "Arn is required"),
            (
                json!({"Id": "t1", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"}),
                "not supported",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "Input": "{", }),
                "Input is not valid JSON",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "Input": "1", "InputPath": "$.detail"}),
                "only one of",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "InputPath": "detail"}),
                "InputPath",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "RetryPolicy": {"MaximumRetryAttempts": 200}}),
                "MaximumRetryAttempts",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "RetryPolicy": {"MaximumEventAgeInSeconds": 10}}),
                "MaximumEventAgeInSeconds",
            ),
            (
                json!({"Id": "t1", "Arn": "https://x.invalid", "InputTransformer": {"InputPathsMap": {"a": "$.x"}}}),
                "InputTemplate is required",
            ),
        ] {
            let (code, message) = check_target(&bad).expect_err(&bad.to_string());
            assert_eq!(code, "ValidationException");
            assert!(message.contains(why), "{bad}: {message}");
        }
    }

    #[test]
    fn test_event_pattern_checks_the_event() {
        let event = json!({"id": "1", "account": "000000000000", "source": "a", "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "detail-type": "x", "detail": {}}).to_string();
        let out = test_event_pattern(TestEventPatternInput {
            event_pattern: r#"{"source": ["a"]}"#.into(),
            event: event.clone(),
        })
        .expect("valid");
        assert_eq!(out["Result"], true);
        let err = test_event_pattern(TestEventPatternInput {
            event_pattern: r#"{"source": "a"}"#.into(),
            event,
        })
        .expect_err("bad pattern");
        assert_eq!(err.error.code.as_str(), "InvalidEventPatternException");
        let err = test_event_pattern(TestEventPatternInput {
            event_pattern: r#"{"source": ["a"]}"#.into(),
            event: r#"{"source": "a"}"#.into(),
        })
        .expect_err("bad event");
        assert!(
            err.error.message.contains("\"id\""),
            "{}",
            err.error.message
        );
    }
}
