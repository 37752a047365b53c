//! The store's methods for CodePipeline's declaration side: pipelines and
//! their versions, disabled stage transitions, and webhooks.
//!
//! The store keeps a pipeline's declaration as the JSON text `get-pipeline`
//! prints and does not interpret it: the server validates it (through
//! `gantry-spec`) before it gets here and reads it back through the same
//! parser. Executions come in a later migration.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;

/// A pipeline to create, or the new version of one to update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPipeline {
    /// The unique name.
    pub name: String,
    /// The declaration as `get-pipeline` prints it, its `version` member
    /// already set to the version this row becomes (1 on create).
    pub declaration: String,
    /// `V1` or `V2`, as in effect for this declaration.
    pub pipeline_type: String,
    /// `QUEUED`, `SUPERSEDED` or `PARALLEL`, as in effect.
    pub execution_mode: String,
    /// The stages' names: an update forgets the disabled transitions of
    /// stages that are no longer there.
    pub stage_names: Vec<String>,
    /// CreatePipeline's tags, a JSON list of `{key, value}`. An update
    /// keeps the tags the pipeline has.
    pub tags: serde_json::Value,
}

/// One version of a stored pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRecord {
    /// The unique name.
    pub name: String,
    /// This record's version.
    pub version: u32,
    /// The pipeline's current version (equal to `version` unless an older
    /// one was asked for).
    pub latest_version: u32,
    /// The declaration as `get-pipeline` prints it.
    pub declaration: String,
    /// `V1` or `V2`.
    pub pipeline_type: String,
    /// `QUEUED`, `SUPERSEDED` or `PARALLEL`.
    pub execution_mode: String,
    /// The tags, a JSON list of `{key, value}`.
    pub tags: serde_json::Value,
    /// When the pipeline was created, epoch milliseconds.
    pub created_ms: i64,
    /// When this version was written, epoch milliseconds.
    pub updated_ms: i64,
}

/// A pipeline as ListPipelines shows it: its current version's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSummaryRecord {
    /// The unique name.
    pub name: String,
    /// The current version.
    pub version: u32,
    /// `V1` or `V2`.
    pub pipeline_type: String,
    /// `QUEUED`, `SUPERSEDED` or `PARALLEL`.
    pub execution_mode: String,
    /// When the pipeline was created, epoch milliseconds.
    pub created_ms: i64,
    /// When its current version was written, epoch milliseconds.
    pub updated_ms: i64,
}

/// Which side of a stage a transition is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionType {
    /// Into the stage: executions wait in front of it.
    Inbound,
    /// Out of the stage: executions wait after it.
    Outbound,
}

impl TransitionType {
    /// The API's spelling, `Inbound` or `Outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionType::Inbound => "Inbound",
            TransitionType::Outbound => "Outbound",
        }
    }

    /// Reads the API's spelling.
    pub fn parse(text: &str) -> Option<TransitionType> {
        match text {
            "Inbound" => Some(TransitionType::Inbound),
            "Outbound" => Some(TransitionType::Outbound),
            _ => None,
        }
    }
}

/// A disabled stage transition. A transition without one is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledTransition {
    /// The pipeline's name.
    pub pipeline: String,
    /// The stage's name.
    pub stage: String,
    /// Into or out of the stage.
    pub transition_type: TransitionType,
    /// Why, as DisableStageTransition was told.
    pub reason: String,
    /// Who disabled it (an access key id).
    pub disabled_by: String,
    /// When, epoch milliseconds.
    pub disabled_ms: i64,
}

/// A webhook to create or to replace (PutWebhook does both).
#[derive(Clone, PartialEq)]
pub struct NewWebhook {
    /// The unique name.
    pub name: String,
    /// The pipeline it starts (`definition.targetPipeline`).
    pub pipeline: String,
    /// The `WebhookDefinition`, without the secret token.
    pub definition: serde_json::Value,
    /// GITHUB_HMAC's secret token, in clear; encrypted before it is written.
    pub secret: Option<String>,
    /// The opaque id for the webhook's URL, used only when the webhook is
    /// new: putting an existing webhook again keeps its URL.
    pub url_id: String,
    /// The tags, a JSON list of `{key, value}`.
    pub tags: serde_json::Value,
}

impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhook")
            .field("name", &self.name)
            .field("pipeline", &self.pipeline)
            .field("definition", &self.definition)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("url_id", &self.url_id)
            .field("tags", &self.tags)
            .finish()
    }
}

/// A stored webhook, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// The unique name.
    pub name: String,
    /// The pipeline it starts.
    pub pipeline: String,
    /// The `WebhookDefinition`, without the secret token.
    pub definition: serde_json::Value,
    /// Whether a secret token is stored.
    pub has_secret: bool,
    /// The opaque last part of its URL.
    pub url_id: String,
    /// The tags, a JSON list of `{key, value}`.
    pub tags: serde_json::Value,
    /// Whether RegisterWebhookWithThirdParty was called (and not undone).
    pub registered: bool,
    /// When a delivery last started the pipeline, epoch milliseconds.
    pub last_triggered_ms: Option<i64>,
    /// When it was created, epoch milliseconds.
    pub created_ms: i64,
    /// When it was last put, epoch milliseconds.
    pub updated_ms: i64,
}

/// A webhook with its secret decrypted, for checking a delivery's signature.
#[derive(Clone, PartialEq)]
pub struct WebhookWithSecret {
    /// The webhook.
    pub webhook: WebhookRecord,
    /// GITHUB_HMAC's secret token, in clear.
    pub secret: Option<String>,
}

impl fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookWithSecret")
            .field("webhook", &self.webhook)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// CodePipeline's pipeline declarations, stage transitions and webhooks.
///
/// Methods that change something take the `actor` and write the audit log in
/// the same transaction, as [`BuildStore`](crate::BuildStore) does.
#[async_trait]
pub trait PipelineStore: Send + Sync + 'static {
    // Pipelines.

    /// Creates a pipeline at version 1. `Conflict` when the name is taken.
    async fn create_pipeline(
        &self,
        pipeline: &NewPipeline,
        actor: &str,
    ) -> Result<PipelineRecord, StoreError>;

    /// Writes the next version of a pipeline, `expected_version + 1`, when
    /// its current version is still `expected_version`; older versions are
    /// kept. `NotFound` when the pipeline does not exist, `Conflict` when
    /// another update got there first (read again and retry).
    async fn update_pipeline(
        &self,
        pipeline: &NewPipeline,
        expected_version: u32,
        actor: &str,
    ) -> Result<PipelineRecord, StoreError>;

    /// A pipeline's current version, or the version asked for.
    /// `NotFound` when either does not exist.
    async fn get_pipeline(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<PipelineRecord, StoreError>;

    /// Deletes a pipeline, every version of it and its disabled
    /// transitions. `NotFound` when it does not exist.
    async fn delete_pipeline(&self, name: &str, actor: &str) -> Result<(), StoreError>;

    /// Every pipeline's current version, by name.
    async fn list_pipelines(&self) -> Result<Vec<PipelineSummaryRecord>, StoreError>;

    // Stage transitions.

    /// Disables a transition, or changes the reason of a disabled one.
    /// `NotFound` when the pipeline does not exist; whether the stage does
    /// is the caller's to check.
    async fn disable_transition(
        &self,
        transition: &DisabledTransition,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Enables a transition; enabling an enabled one changes nothing but
    /// is still audited. `NotFound` when the pipeline does not exist.
    async fn enable_transition(
        &self,
        pipeline: &str,
        stage: &str,
        transition_type: TransitionType,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// A pipeline's disabled transitions, by stage name then type.
    async fn disabled_transitions(
        &self,
        pipeline: &str,
    ) -> Result<Vec<DisabledTransition>, StoreError>;

    // Webhooks.

    /// Creates a webhook, or replaces the definition, secret, pipeline and
    /// tags of the one with this name (keeping its URL, registration and
    /// last trigger).
    async fn put_webhook(
        &self,
        webhook: &NewWebhook,
        actor: &str,
    ) -> Result<WebhookRecord, StoreError>;

    /// One webhook by name, without its secret.
    async fn get_webhook(&self, name: &str) -> Result<WebhookRecord, StoreError>;

    /// A webhook's decrypted secret token (`None` when it has none).
    async fn webhook_secret(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// The webhook a delivery URL names, with its secret decrypted.
    async fn webhook_by_url_id(&self, url_id: &str) -> Result<WebhookWithSecret, StoreError>;

    /// Every webhook, by name.
    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError>;

    /// Deletes a webhook; `false` (and nothing audited) when there was none.
    async fn delete_webhook(&self, name: &str, actor: &str) -> Result<bool, StoreError>;

    /// Records that a delivery started the webhook's pipeline at `at_ms`.
    async fn record_webhook_trigger(
        &self,
        name: &str,
        at_ms: i64,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Records RegisterWebhookWithThirdParty (`true`) or its undoing.
    async fn set_webhook_registered(
        &self,
        name: &str,
        registered: bool,
        actor: &str,
    ) -> Result<(), StoreError>;

    // The server's own small documents (the poller's heads).

    /// The document stored under `name`, if any.
    async fn server_state(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Stores (replacing) the document under `name`.
    async fn put_server_state(
        &self,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError>;

    /// The document under `name`; when there is none, `value` is stored and
    /// returned. Of servers racing to store one, every one gets the same
    /// document back (the first stored), which is what a value they must
    /// share (a key) needs.
    async fn server_state_or_insert(
        &self,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, StoreError>;
}
