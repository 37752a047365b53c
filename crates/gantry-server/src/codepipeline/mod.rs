//! CodePipeline's API (2015-07-09), declaration side: pipelines, stage
//! transitions and webhooks, with the member names and exceptions of
//! botocore's model. Executions are the pipeline engine's.
//!
//! Declarations are validated by `gantry-spec` (the same checks as
//! `gantry validate`), stored as the JSON `get-pipeline` prints, and read
//! back through the same parser. See docs/pipelines-api.md.

pub(crate) mod action_types;
pub(crate) mod executions;
mod jobs;
pub(crate) mod pipelines;
mod transitions;
mod webhooks;

use axum::http::HeaderMap;
use gantry_aws::{AwsError, ErrorCode, VerifiedCaller};
use gantry_spec::pipeline::PipelineDeclaration;
use gantry_store::{Store, StoreError, TransitionType, WebhookWithSecret};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::router::AppState;

/// Runs one operation. `headers` give the Host a webhook URL is built on
/// when no public URL is configured.
pub(crate) async fn dispatch<S: Store>(
    state: &AppState<S>,
    caller: &VerifiedCaller,
    operation: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Result<serde_json::Value, ApiError> {
    let actor = caller.access_key_id.as_str();
    match operation {
        "CreatePipeline" => pipelines::create(state, actor, body).await,
        "GetPipeline" => pipelines::get(state, input(body)?).await,
        "UpdatePipeline" => pipelines::update(state, actor, body).await,
        "DeletePipeline" => pipelines::delete(state, actor, input(body)?).await,
        "ListPipelines" => pipelines::list(state, input(body)?).await,
        "EnableStageTransition" => {
            let out = transitions::enable(state, actor, input(body)?).await?;
            refresh_transitions(state, body).await;
            Ok(out)
        }
        "DisableStageTransition" => {
            let out = transitions::disable(state, actor, input(body)?).await?;
            refresh_transitions(state, body).await;
            Ok(out)
        }
        "StartPipelineExecution" => executions::start(state, actor, input(body)?).await,
        "StopPipelineExecution" => executions::stop(state, actor, input(body)?).await,
        "GetPipelineExecution" => executions::get(state, input(body)?).await,
        "ListPipelineExecutions" => executions::list(state, input(body)?).await,
        "GetPipelineState" => executions::pipeline_state(state, input(body)?).await,
        "ListActionExecutions" => executions::list_actions(state, input(body)?).await,
        "PutApprovalResult" => executions::put_approval_result(state, actor, input(body)?).await,
        "RetryStageExecution" => executions::retry_stage(state, actor, input(body)?).await,
        "PutWebhook" => webhooks::put(state, actor, input(body)?, headers).await,
        "ListWebhooks" => webhooks::list(state, input(body)?, headers).await,
        "DeleteWebhook" => webhooks::delete(state, actor, input(body)?).await,
        "RegisterWebhookWithThirdParty" => {
            webhooks::register(state, actor, input(body)?, true).await
        }
        "DeregisterWebhookWithThirdParty" => {
            webhooks::register(state, actor, input(body)?, false).await
        }
        "CreateCustomActionType" => action_types::create(state, actor, input(body)?).await,
        "ListActionTypes" => action_types::list(state, input(body)?).await,
        "DeleteCustomActionType" => action_types::delete(state, actor, input(body)?).await,
        "PollForJobs" => jobs::poll(state, input(body)?).await,
        "AcknowledgeJob" => jobs::acknowledge(state, input(body)?).await,
        "GetJobDetails" => jobs::details(state, input(body)?).await,
        "PutJobSuccessResult" => jobs::put_success(state, actor, input(body)?).await,
        "PutJobFailureResult" => jobs::put_failure(state, actor, input(body)?).await,
        other => Err(AwsError::new(
            ErrorCode::UnknownOperationException,
            format!("CodePipeline operation '{other}' is not supported by this server."),
        )
        .into()),
    }
}

/// Tells the pipeline's runtime that its transitions changed (executions
/// waiting at a re-enabled one enter now).
async fn refresh_transitions<S: Store>(state: &AppState<S>, body: &[u8]) {
    let name = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["pipelineName"].as_str().map(str::to_owned));
    if let Some(name) = name
        && let Err(e) = state.pipelines.refresh_transitions(state, &name).await
    {
        tracing::error!(pipeline = %name, error = %e, "applying a transition change failed");
    }
}

fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    Ok(gantry_aws::parse_body(body)?)
}

/// A CodePipeline modelled exception (all are HTTP 400).
fn exception(code: &'static str, message: impl Into<String>) -> ApiError {
    AwsError::service(code, 400, message).into()
}

fn validation(message: impl Into<String>) -> ApiError {
    AwsError::validation(message).into()
}

fn pipeline_not_found(name: &str) -> ApiError {
    exception(
        "PipelineNotFoundException",
        format!("Account does not have a pipeline with name '{name}'"),
    )
}

/// A required member, or AWS's "must not be null" ValidationException.
fn required<T>(value: Option<T>, member: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Checks a name member against `[A-Za-z0-9.@\-_]+`, 1–100 characters
/// (pipeline, stage, action and webhook names share the pattern).
fn check_name(value: &str, member: &str) -> Result<(), ApiError> {
    let len = value.chars().count();
    if !(1..=100).contains(&len) {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length between 1 and 100"
        )));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9.@\\-_]+"
        )));
    }
    Ok(())
}

/// `arn:aws:codepipeline:<region>:<account>:<resource>`.
fn arn(config: &crate::Config, resource: &str) -> String {
    format!(
        "arn:aws:codepipeline:{}:{}:{resource}",
        config.region, config.account_id
    )
}

/// Keyset paging over names sorted ascending: a token is the hex of the
/// last name handed out, so pages stay right when names come and go.
fn page<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    next_token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let after = match next_token {
        None => None,
        Some(token) => Some(decode_token(token).ok_or_else(|| {
            exception(
                "InvalidNextTokenException",
                "The next token was not returned by a previous call of this operation.",
            )
        })?),
    };
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.as_deref().is_none_or(|a| name(i) > a))
        .collect();
    let next = if rest.len() > max {
        rest.truncate(max);
        rest.last().map(|i| encode_token(name(i)))
    } else {
        None
    };
    Ok((rest, next))
}

fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if token.is_empty() || !token.len().is_multiple_of(2) || token.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A JSON-protocol timestamp from epoch milliseconds.
fn timestamp_ms(ms: i64) -> serde_json::Value {
    crate::codebuild::timestamp_ms(ms)
}

// What the pipeline engine reads. Not called by the API handlers
// themselves; the engine (gantry-pipeline, wired into this server next)
// starts executions from these.

/// A pipeline's current declaration and version; `None` when there is no
/// such pipeline. A stored declaration that no longer parses is an error
/// (it was valid when written, so the parser or the row changed).
#[allow(dead_code)]
pub(crate) async fn get_pipeline<S: Store>(
    store: &S,
    name: &str,
) -> Result<Option<(PipelineDeclaration, u32)>, StoreError> {
    match store.get_pipeline(name, None).await {
        Ok(record) => {
            let declaration = pipelines::parse_stored(&record.declaration)?;
            Ok(Some((declaration, record.version)))
        }
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an execution may enter `stage`: its inbound transition is
/// enabled, and so is the outbound transition of the stage before it.
/// `false` for a pipeline or stage that does not exist.
#[allow(dead_code)]
pub(crate) async fn transition_enabled<S: Store>(
    store: &S,
    pipeline: &str,
    stage: &str,
) -> Result<bool, StoreError> {
    let Some((declaration, _)) = get_pipeline(store, pipeline).await? else {
        return Ok(false);
    };
    let Some(index) = declaration
        .stages
        .iter()
        .position(|s| s.name.value == stage)
    else {
        return Ok(false);
    };
    let previous = index
        .checked_sub(1)
        .map(|i| declaration.stages[i].name.value.as_str());
    let disabled = store.disabled_transitions(pipeline).await?;
    Ok(!disabled.iter().any(|t| {
        (t.stage == stage && t.transition_type == TransitionType::Inbound)
            || (Some(t.stage.as_str()) == previous && t.transition_type == TransitionType::Outbound)
    }))
}

/// The webhook a delivery to `/webhooks/codepipeline/<url_id>` is for,
/// with its secret token decrypted for the signature check; `None` when
/// no webhook has that URL.
#[allow(dead_code)]
pub(crate) async fn webhook_for_url<S: Store>(
    store: &S,
    url_id: &str,
) -> Result<Option<WebhookWithSecret>, StoreError> {
    match store.webhook_by_url_id(url_id).await {
        Ok(w) => Ok(Some(w)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_junk() {
        for name in ["a", "web.app-1@x_y", "ü"] {
            assert_eq!(decode_token(&encode_token(name)).as_deref(), Some(name));
        }
        for junk in ["", "abc", "zz", "ff"] {
            assert_eq!(decode_token(junk), None, "{junk}");
        }
    }

    #[test]
    fn paging_is_by_name_after_the_token() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (first, next) = page(names.clone(), |s| s, None, 2).expect("page 1");
        assert_eq!(first, ["a", "b"]);
        let (second, next) = page(names.clone(), |s| s, next.as_deref(), 2).expect("page 2");
        assert_eq!(second, ["c", "d"]);
        let (third, next) = page(names.clone(), |s| s, next.as_deref(), 2).expect("page 3");
        assert_eq!((third, next), (vec!["e".to_string()], None));
        assert!(page(names, |s| s, Some("nothex"), 2).is_err());
    }

    use gantry_store::{DisabledTransition, MasterKey, NewWebhook, PipelineStore, SqliteStore};

    async fn store_with_pipeline(dir: &std::path::Path) -> SqliteStore {
        let key = MasterKey::load_or_create(&dir.join("secret.key")).expect("key");
        let store = SqliteStore::open(&dir.join("gantry.db"), key)
            .await
            .expect("store");
        let stages: Vec<serde_json::Value> = ["Source", "Build", "Deploy"]
            .iter()
            .map(|&s| {
                let action = if s == "Source" {
                    serde_json::json!({"name": "Src",
                        "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"},
                        "configuration": {"RepositoryUrl": "file:///srv/app.git"},
                        "outputArtifacts": [{"name": "S"}]})
                } else {
                    serde_json::json!({"name": format!("{s}It"),
                        "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
                        "configuration": {"ProjectName": "p"},
                        "inputArtifacts": [{"name": "S"}]})
                };
                serde_json::json!({"name": s, "actions": [action]})
            })
            .collect();
        let text = serde_json::json!({
            "name": "app",
            "roleArn": "arn:aws:iam::123456789012:role/gantry",
            "stages": stages,
        })
        .to_string();
        let parsed = gantry_spec::pipeline::parse_json(&text).expect("valid");
        let new = pipelines::tests_support::row(parsed);
        store.create_pipeline(&new, "AK").await.expect("create");
        store
    }

    fn disabled(stage: &str, transition_type: TransitionType) -> DisabledTransition {
        DisabledTransition {
            pipeline: "app".into(),
            stage: stage.into(),
            transition_type,
            reason: "hold".into(),
            disabled_by: "AK".into(),
            disabled_ms: 1,
        }
    }

    #[tokio::test]
    async fn the_engine_reads_declarations_transitions_and_webhooks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_pipeline(dir.path()).await;
        let (declaration, version) = get_pipeline(&store, "app")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!((declaration.stages.len(), version), (3, 1));
        assert!(get_pipeline(&store, "nope").await.expect("read").is_none());

        for stage in ["Source", "Build", "Deploy"] {
            assert!(
                transition_enabled(&store, "app", stage)
                    .await
                    .expect("read")
            );
        }
        assert!(
            !transition_enabled(&store, "app", "Nope")
                .await
                .expect("read")
        );
        assert!(
            !transition_enabled(&store, "nope", "Build")
                .await
                .expect("read")
        );
        // Inbound of Build closes Build only.
        store
            .disable_transition(&disabled("Build", TransitionType::Inbound), "AK")
            .await
            .expect("disable");
        assert!(
            !transition_enabled(&store, "app", "Build")
                .await
                .expect("read")
        );
        assert!(
            transition_enabled(&store, "app", "Deploy")
                .await
                .expect("read")
        );
        // Outbound of Build closes the way into Deploy.
        store
            .enable_transition("app", "Build", TransitionType::Inbound, "AK")
            .await
            .expect("enable");
        store
            .disable_transition(&disabled("Build", TransitionType::Outbound), "AK")
            .await
            .expect("disable");
        assert!(
            transition_enabled(&store, "app", "Build")
                .await
                .expect("read")
        );
        assert!(
            !transition_enabled(&store, "app", "Deploy")
                .await
                .expect("read")
        );

        store
            .put_webhook(
                &NewWebhook {
                    name: "gh".into(),
                    pipeline: "app".into(),
                    definition: serde_json::json!({"name": "gh"}),
                    secret: Some("tok".into()),
                    url_id: "abc".into(),
                    tags: serde_json::json!([]),
                },
                "AK",
            )
            .await
            .expect("put");
        let found = webhook_for_url(&store, "abc")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(found.secret.as_deref(), Some("tok"));
        assert!(
            webhook_for_url(&store, "zzz")
                .await
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn names_follow_the_model_pattern() {
        assert!(check_name("web.app-1@x_y", "name").is_ok());
        assert!(check_name("", "name").is_err());
        assert!(check_name("a b", "name").is_err());
        assert!(check_name(&"a".repeat(101), "name").is_err());
    }
}
