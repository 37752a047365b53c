//! EnableStageTransition and DisableStageTransition.

use gantry_store::{DisabledTransition, Store, StoreError, TransitionType, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pipelines::parse_stored;
use super::{check_name, exception, pipeline_not_found, required, validation};
use crate::error::ApiError;
use crate::router::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TransitionInput {
    pipeline_name: Option<String>,
    stage_name: Option<String>,
    transition_type: Option<String>,
    reason: Option<String>,
}

/// The checked members: pipeline, stage, type. The pipeline must exist
/// and have the stage in its current version.
async fn target<S: Store>(
    state: &AppState<S>,
    input: &TransitionInput,
) -> Result<(String, String, TransitionType), ApiError> {
    let pipeline = required(input.pipeline_name.clone(), "pipelineName")?;
    check_name(&pipeline, "pipelineName")?;
    let stage = required(input.stage_name.clone(), "stageName")?;
    check_name(&stage, "stageName")?;
    let kind = required(input.transition_type.as_deref(), "transitionType")?;
    let kind = TransitionType::parse(kind).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value '{kind}' at 'transitionType' failed to satisfy constraint: Member must satisfy enum value set: [Inbound, Outbound]"
        ))
    })?;
    let record = match state.store.get_pipeline(&pipeline, None).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(pipeline_not_found(&pipeline)),
        Err(e) => return Err(e.into()),
    };
    let declaration = parse_stored(&record.declaration)?;
    if !declaration.stages.iter().any(|s| s.name.value == stage) {
        let known: Vec<&str> = declaration
            .stages
            .iter()
            .map(|s| s.name.value.as_str())
            .collect();
        return Err(exception(
            "StageNotFoundException",
            format!(
                "Pipeline '{pipeline}' has no stage '{stage}'; its stages are {}",
                known.join(", ")
            ),
        ));
    }
    Ok((pipeline, stage, kind))
}

/// `reason`: 1–300 of `[a-zA-Z0-9!@ \(\)\.\*\?\-]`.
fn check_reason(reason: &str) -> Result<(), ApiError> {
    let len = reason.chars().count();
    if !(1..=300).contains(&len) {
        return Err(validation(format!(
            "1 validation error detected: Value '{reason}' at 'reason' failed to satisfy constraint: Member must have length between 1 and 300"
        )));
    }
    if !reason
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!@ ().*?-".contains(c))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{reason}' at 'reason' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9!@ \\(\\)\\.\\*\\?\\-]+"
        )));
    }
    Ok(())
}

pub(super) async fn disable<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: TransitionInput,
) -> Result<Value, ApiError> {
    let reason = required(input.reason.clone(), "reason")?;
    check_reason(&reason)?;
    let (pipeline, stage, transition_type) = target(state, &input).await?;
    let row = DisabledTransition {
        pipeline: pipeline.clone(),
        stage,
        transition_type,
        reason,
        disabled_by: actor.to_owned(),
        disabled_ms: now_ms(),
    };
    match state.store.disable_transition(&row, actor).await {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(pipeline_not_found(&pipeline)),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn enable<S: Store>(
    state: &AppState<S>,
    actor: &str,
    input: TransitionInput,
) -> Result<Value, ApiError> {
    let (pipeline, stage, transition_type) = target(state, &input).await?;
    match state
        .store
        .enable_transition(&pipeline, &stage, transition_type, actor)
        .await
    {
        Ok(()) => Ok(json!({})),
        Err(StoreError::NotFound) => Err(pipeline_not_found(&pipeline)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_the_model_pattern() {
        assert!(check_reason("Freeze (release 1.2) - ask @ops?").is_ok());
        assert!(check_reason("").is_err());
        assert!(check_reason("no_underscores").is_err());
        assert!(check_reason(&"x".repeat(301)).is_err());
    }
}
