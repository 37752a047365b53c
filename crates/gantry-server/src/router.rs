//! Every route, and the state handlers share.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_aws::{JsonResponse, Service, Verifier, VerifyOptions};
use gantry_store::Store;

use crate::config::Config;
use crate::error::{ApiError, into_response};
use crate::eventbridge::EventBus;
use crate::pipeline_host::{PipelineHost, ProviderContext};
use crate::worker::BuildRunner;
use crate::{auth, codebuild, codepipeline, eventbridge, rest, stepfunctions};

/// The services the AWS JSON endpoint offers.
const OFFERED: [Service; 4] = [
    Service::CodeBuild,
    Service::CodePipeline,
    Service::StepFunctions,
    Service::Events,
];

/// What every handler can reach, generic over the store.
pub(crate) struct AppState<S: Store> {
    pub store: Arc<S>,
    pub config: Arc<Config>,
    pub runner: Arc<BuildRunner<S>>,
    pub verifier: Arc<Verifier>,
    /// Access keys' secrets, remembered for signature checks.
    pub keys: Arc<crate::auth::SecretCache>,
    pub pipelines: Arc<PipelineHost>,
    pub events: Arc<EventBus<S>>,
    pub engine: Arc<stepfunctions::Engine<S>>,
    /// Becomes `true` when the server starts shutting down, so long-lived
    /// responses (live log streams) end and let graceful shutdown finish.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Chat callbacks already accepted (replays are refused).
    pub chat: Arc<crate::chat::SeenCallbacks>,
}

impl<S: Store> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            config: self.config.clone(),
            runner: self.runner.clone(),
            verifier: self.verifier.clone(),
            keys: self.keys.clone(),
            pipelines: self.pipelines.clone(),
            events: self.events.clone(),
            engine: self.engine.clone(),
            closing: self.closing.clone(),
            chat: self.chat.clone(),
        }
    }
}

/// The artifact store `config` names: `<data_dir>/artifact-store` unless
/// `artifact_store` says otherwise.
fn open_artifact_store(config: &Config) -> Result<gantry_artifacts::ArtifactStore, String> {
    let location = config.artifact_store.clone().unwrap_or_else(|| {
        gantry_artifacts::StoreLocation::Local(config.data_dir.join(crate::files::ARTIFACT_STORE))
    });
    gantry_artifacts::ArtifactStore::open(&location, &config.s3)
        .map_err(|e| format!("opening the artifact store {location}: {e}"))
}

impl<S: Store> AppState<S> {
    /// The state, with a Step Functions engine whose task tokens are keyed
    /// by `token_key`; fails when the data directory's artifact store
    /// cannot be opened.
    pub fn new(store: Arc<S>, config: Config, token_key: [u8; 32]) -> Result<AppState<S>, String> {
        let config = Arc::new(config);
        let events = Arc::new(EventBus::new(
            store.clone(),
            config.clone(),
            crate::outbound::client(&config, config.events.http_timeout)?,
        ));
        let hub = Arc::new(crate::agents::AgentHub::new(config.lease_timeout));
        let artifacts = open_artifact_store(&config)?;
        let runner = Arc::new(BuildRunner::new(
            store.clone(),
            config.clone(),
            events.clone(),
            hub,
            artifacts.clone(),
        ));
        let providers =
            ProviderContext::new(&config.data_dir, artifacts.clone(), config.approval_timeout)?;
        let engine = Arc::new(stepfunctions::Engine::new(
            store.clone(),
            config.clone(),
            token_key,
            crate::outbound::client(&config, stepfunctions::HTTP_TASK_TIMEOUT)?,
        ));
        let state = AppState {
            store,
            config,
            runner,
            verifier: Arc::new(Verifier::new(VerifyOptions::json_protocol())),
            keys: Arc::default(),
            pipelines: Arc::new(PipelineHost::new(providers)),
            events,
            engine,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            chat: Arc::default(),
        };
        state.engine.attach(state.clone());
        spawn_log_sweeper(state.store.clone(), artifacts);
        state
            .events
            .set_invoker(Arc::new(crate::eventbridge::ServerInvoker {
                state: state.clone(),
            }));
        Ok(state)
    }
}

/// Moves finished logs left in the database to the artifact store: now
/// (what a crash or another server's recovery left) and every
/// [`SWEEP_EVERY`](crate::build_logs::SWEEP_EVERY). Outside a Tokio runtime
/// (no server running) there is nothing to do.
fn spawn_log_sweeper<S: Store>(store: Arc<S>, artifacts: gantry_artifacts::ArtifactStore) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // Holds only a weak reference, so the task ends with the server.
    let store = Arc::downgrade(&store);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(crate::build_logs::SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            let moved = crate::build_logs::sweep(store.as_ref(), &artifacts).await;
            if moved > 0 {
                tracing::info!(
                    builds = moved,
                    "moved finished build logs to the artifact store"
                );
            }
        }
    });
}

pub(crate) fn router<S: Store>(state: AppState<S>) -> Router {
    Router::new()
        .route("/", post(aws_json::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(crate::chat::ACTIONS_PATH, post(crate::chat::actions::<S>))
        .route(
            "/webhooks/codepipeline/{url_id}",
            post(crate::webhooks::deliver::<S>),
        )
        .route("/webhooks/{host}", post(crate::repo_webhooks::deliver::<S>))
        .route(
            &format!("/{}/{{*key}}", crate::pipeline_host::BUCKET),
            get(crate::artifact_s3::serve::<S>)
                .put(crate::artifact_s3::serve::<S>)
                .post(crate::artifact_s3::serve::<S>)
                .delete(crate::artifact_s3::serve::<S>)
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::artifact_s3::MAX_OBJECT_BYTES,
                )),
        )
        .merge(rest::router(state.clone()))
        .merge(crate::agents::protocol::router::<S>())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            answer_once_durable::<S>,
        ))
        .with_state(state)
}

/// Holds every answer until what the request changed, and whatever it
/// read, is on disk: the SQLite store commits without waiting for its own
/// flush and makes commits durable in groups (gantry-store
/// `sqlite/durability.rs`), so a 200 still means "survives a power cut".
/// A failed flush turns the answer into a 500: the change may not be
/// durable.
async fn answer_once_durable<S: Store>(
    State(state): State<AppState<S>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    match state.store.durable().await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, "a change could not be made durable; answering 500");
            let body = serde_json::json!({
                "__type": "InternalFailure",
                "message": format!("the change may not be stored durably: {e}"),
            });
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// The AWS JSON 1.1 endpoint: authenticate, then dispatch on `X-Amz-Target`.
async fn aws_json<S: Store>(
    State(state): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = gantry_aws::new_request_id();
    match handle(&state, &uri, &headers, &body).await {
        Ok((service, output)) => {
            into_response(JsonResponse::success(service, &output, &request_id))
        }
        Err(e) => e.into_response(),
    }
}

async fn handle<S: Store>(
    state: &AppState<S>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Service, serde_json::Value), ApiError> {
    let caller = auth::authenticate(
        state.store.as_ref(),
        &state.keys,
        &state.verifier,
        "POST",
        uri,
        headers,
        body,
    )
    .await?;
    let target_header = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let target = gantry_aws::parse_target(target_header, &OFFERED)?;
    target.service.check_caller(&caller)?;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    gantry_aws::check_content_type(content_type, target.service)?;
    let op = target.operation;
    let output = match target.service {
        Service::CodePipeline => codepipeline::dispatch(state, &caller, op, body, headers).await,
        Service::StepFunctions => stepfunctions::dispatch(state, &caller, op, body).await,
        Service::Events => eventbridge::dispatch(state, &caller, op, body).await,
        _ => codebuild::dispatch(state, &caller, op, body).await,
    }?;
    Ok((target.service, output))
}
