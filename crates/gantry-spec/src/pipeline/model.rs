//! The typed pipeline: exactly the shapes of CodePipeline's API model
//! (botocore `codepipeline/2015-07-09`, `PipelineDeclaration` and below), each
//! value carrying the place in the file it came from.
//!
//! Member names follow the API's JSON spelling (camelCase in serde, snake_case
//! in Rust). A member that may be absent is an `Option`, so that a declaration
//! serializes back to exactly what was read: `get-pipeline` prints
//! `"inputArtifacts": []` where a hand-written file may leave it out, and both
//! survive a round trip unchanged.

use serde::{Serialize, Serializer};

use crate::span::{Span, Spanned};

/// Serializes as the bare value: spans are for diagnostics, not for output.
impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

/// A pipeline file as `aws codepipeline get-pipeline` prints it (the
/// declaration and, when the file came from AWS, its read-only metadata), or
/// as `create-pipeline --cli-input-json` takes it (the declaration and tags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineDocument {
    /// `pipeline`: the declaration.
    pub pipeline: PipelineDeclaration,
    /// `metadata`: ARN and timestamps, never edited and not validated beyond their shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PipelineMetadata>,
    /// `tags`: CreatePipeline's input (`create-pipeline --cli-input-json`) may carry them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

/// `Tag`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// `key`: 1–128 characters.
    pub key: Spanned<String>,
    /// `value`: 0–256 characters.
    pub value: Spanned<String>,
}

/// `PipelineMetadata`: what AWS adds to a declaration. Kept so that a
/// `get-pipeline` file round-trips; Gantry does not act on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineMetadata {
    /// `pipelineArn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_arn: Option<Spanned<String>>,
    /// `created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Spanned<Timestamp>>,
    /// `updated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<Spanned<Timestamp>>,
    /// `pollingDisabledAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_disabled_at: Option<Spanned<Timestamp>>,
}

/// A metadata timestamp as written: the AWS CLI prints ISO 8601 text, the
/// raw API (and boto3 dumped with a number encoder) epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timestamp {
    /// Text, e.g. `2024-05-02T10:11:12.345000+00:00`; not interpreted.
    Text(String),
    /// Seconds since the epoch, as the number was written (e.g. `1714644672.345`).
    EpochSeconds(String),
}

/// `PipelineDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDeclaration {
    /// Where the declaration's mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `name`: 1–100 of `[A-Za-z0-9.@-_]`.
    pub name: Spanned<String>,
    /// `roleArn`: an IAM role ARN (Gantry keeps it; it assumes no role).
    pub role_arn: Spanned<String>,
    /// `artifactStore`: one store for the pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_store: Option<ArtifactStore>,
    /// `artifactStores`: one store per Region, in file order.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "regional_stores"
    )]
    pub artifact_stores: Option<Vec<RegionalArtifactStore>>,
    /// `stages`, in order.
    pub stages: Vec<StageDeclaration>,
    /// `version`: starts at 1, bumped by every update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Spanned<u32>>,
    /// `executionMode`; SUPERSEDED when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_mode: Option<Spanned<ExecutionMode>>,
    /// `pipelineType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<Spanned<PipelineType>>,
    /// `variables`: pipeline-level variables (V2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<PipelineVariableDeclaration>>,
    /// `triggers` (V2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Vec<PipelineTriggerDeclaration>>,
}

impl PipelineDeclaration {
    /// The execution mode in effect: SUPERSEDED when none is given.
    pub fn execution_mode(&self) -> ExecutionMode {
        self.execution_mode
            .map(|m| m.value)
            .unwrap_or(ExecutionMode::Superseded)
    }

    /// Every action with the index of its stage, in declaration order.
    pub fn actions(&self) -> impl Iterator<Item = (usize, &ActionDeclaration)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.actions.iter().map(move |a| (i, a)))
    }
}

/// `executionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExecutionMode {
    /// `QUEUED`: one execution after another, first in first out.
    #[serde(rename = "QUEUED")]
    Queued,
    /// `SUPERSEDED`: a newer execution may overtake an older one between stages.
    #[serde(rename = "SUPERSEDED")]
    Superseded,
    /// `PARALLEL`: executions run independently.
    #[serde(rename = "PARALLEL")]
    Parallel,
}

/// `pipelineType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PipelineType {
    /// `V1`.
    V1,
    /// `V2`: variables, triggers, QUEUED and PARALLEL.
    V2,
}

/// `ArtifactStore`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStore {
    /// Where the store's mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `type`: always `S3`.
    #[serde(rename = "type")]
    pub store_type: Spanned<ArtifactStoreType>,
    /// `location`: a bucket name, 3–63 of `[a-zA-Z0-9-.]`.
    pub location: Spanned<String>,
    /// `encryptionKey`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<EncryptionKey>,
}

/// One entry of `artifactStores`: a Region and its store.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionalArtifactStore {
    /// The Region (the map key), 4–30 characters.
    pub region: Spanned<String>,
    /// The store.
    pub store: ArtifactStore,
}

fn regional_stores<S: Serializer>(
    stores: &Option<Vec<RegionalArtifactStore>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let stores = stores.as_deref().unwrap_or_default();
    serializer.collect_map(stores.iter().map(|s| (&s.region.value, &s.store)))
}

/// `ArtifactStoreType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ArtifactStoreType {
    /// `S3`.
    S3,
}

/// `EncryptionKey`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncryptionKey {
    /// `id`: a KMS key id, ARN or alias, 1–400 characters.
    pub id: Spanned<String>,
    /// `type`: always `KMS`.
    #[serde(rename = "type")]
    pub key_type: Spanned<EncryptionKeyType>,
}

/// `EncryptionKeyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EncryptionKeyType {
    /// `KMS`.
    #[serde(rename = "KMS")]
    Kms,
}

/// `StageDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDeclaration {
    /// Where the stage's mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `name`: unique within the pipeline.
    pub name: Spanned<String>,
    /// `blockers`: reserved by AWS; kept, never acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blockers: Option<Vec<BlockerDeclaration>>,
    /// `actions`, in file order (run order comes from `runOrder`).
    pub actions: Vec<ActionDeclaration>,
    /// `onFailure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailureConditions>,
    /// `onSuccess`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<SuccessConditions>,
    /// `beforeEntry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_entry: Option<BeforeEntryConditions>,
}

/// `BlockerDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockerDeclaration {
    /// `name`, 1–100 characters.
    pub name: Spanned<String>,
    /// `type`: always `Schedule`.
    #[serde(rename = "type")]
    pub blocker_type: Spanned<BlockerType>,
}

/// `BlockerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BlockerType {
    /// `Schedule`.
    Schedule,
}

/// `ActionDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDeclaration {
    /// Where the action's mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `name`: unique within its stage.
    pub name: Spanned<String>,
    /// `actionTypeId`.
    pub action_type_id: ActionTypeId,
    /// `runOrder`: 1–999; 1 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_order: Option<Spanned<u32>>,
    /// `configuration`: provider settings, string to string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Configuration>,
    /// `commands` (Compute actions): 1–50 commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<Spanned<String>>>,
    /// `outputArtifacts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_artifacts: Option<Vec<OutputArtifact>>,
    /// `inputArtifacts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_artifacts: Option<Vec<InputArtifact>>,
    /// `outputVariables` (Compute actions): 1–15 names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_variables: Option<Vec<Spanned<String>>>,
    /// `roleArn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<Spanned<String>>,
    /// `region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Spanned<String>>,
    /// `namespace`: where this action's output variables are published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Spanned<String>>,
    /// `timeoutInMinutes`: 5–86400 (manual approvals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<Spanned<u32>>,
    /// `environmentVariables`: 1–10 variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

impl ActionDeclaration {
    /// `runOrder`, or its default 1.
    pub fn run_order(&self) -> u32 {
        self.run_order.map(|r| r.value).unwrap_or(1)
    }

    /// The input artifacts (none when the member is absent).
    pub fn inputs(&self) -> &[InputArtifact] {
        self.input_artifacts.as_deref().unwrap_or_default()
    }

    /// The output artifacts (none when the member is absent).
    pub fn outputs(&self) -> &[OutputArtifact] {
        self.output_artifacts.as_deref().unwrap_or_default()
    }

    /// A configuration value by key.
    pub fn config(&self, key: &str) -> Option<&Spanned<String>> {
        self.configuration.as_ref().and_then(|c| c.get(key))
    }
}

/// `ActionTypeId`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionTypeId {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `category`.
    pub category: Spanned<ActionCategory>,
    /// `owner`.
    pub owner: Spanned<ActionOwner>,
    /// `provider`: 1–35 of `[0-9A-Za-z_-]`.
    pub provider: Spanned<String>,
    /// `version`: 1–9 of `[0-9A-Za-z_-]`.
    pub version: Spanned<String>,
}

/// `ActionCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ActionCategory {
    /// `Source`.
    Source,
    /// `Build`.
    Build,
    /// `Deploy`.
    Deploy,
    /// `Test`.
    Test,
    /// `Invoke`.
    Invoke,
    /// `Approval`.
    Approval,
    /// `Compute`.
    Compute,
}

impl ActionCategory {
    /// The spelling in files.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionCategory::Source => "Source",
            ActionCategory::Build => "Build",
            ActionCategory::Deploy => "Deploy",
            ActionCategory::Test => "Test",
            ActionCategory::Invoke => "Invoke",
            ActionCategory::Approval => "Approval",
            ActionCategory::Compute => "Compute",
        }
    }
}

/// `ActionOwner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ActionOwner {
    /// `AWS`: a built-in provider.
    #[serde(rename = "AWS")]
    Aws,
    /// `ThirdParty`.
    ThirdParty,
    /// `Custom`: run by a job worker that polls for it.
    Custom,
}

impl ActionOwner {
    /// The spelling in files.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOwner::Aws => "AWS",
            ActionOwner::ThirdParty => "ThirdParty",
            ActionOwner::Custom => "Custom",
        }
    }
}

/// `configuration`: keys and values in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Configuration {
    /// Where the mapping starts.
    pub span: Span,
    /// The entries, in file order, keys unique.
    pub entries: Vec<ConfigurationEntry>,
}

impl Configuration {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Spanned<String>> {
        self.entries
            .iter()
            .find(|e| e.key.value == key)
            .map(|e| &e.value)
    }
}

impl Serialize for Configuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries.iter().map(|e| (&e.key.value, &e.value.value)))
    }
}

/// One `configuration` key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationEntry {
    /// The key, 1–50 characters.
    pub key: Spanned<String>,
    /// The value, as text (in YAML, numbers and booleans are kept as written).
    pub value: Spanned<String>,
}

/// `InputArtifact`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputArtifact {
    /// `name`: an output artifact of an earlier action.
    pub name: Spanned<String>,
}

/// `OutputArtifact`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputArtifact {
    /// `name`: 1–100 of `[a-zA-Z0-9_-]`, unique in the pipeline.
    pub name: Spanned<String>,
    /// `files` (Compute actions): 1–10 paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<Spanned<String>>>,
}

/// `EnvironmentVariable` (the action-level member, not CodeBuild's configuration).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentVariable {
    /// `name`: 1–128 of `[A-Za-z0-9_]`.
    pub name: Spanned<String>,
    /// `value`: 1–2000 characters.
    pub value: Spanned<String>,
    /// `type`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub variable_type: Option<Spanned<EnvironmentVariableType>>,
}

/// `EnvironmentVariableType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EnvironmentVariableType {
    /// `PLAINTEXT`.
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// `SECRETS_MANAGER`.
    #[serde(rename = "SECRETS_MANAGER")]
    SecretsManager,
}

/// `FailureConditions` (a stage's `onFailure`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureConditions {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Spanned<ConditionResult>>,
    /// `retryConfiguration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_configuration: Option<RetryConfiguration>,
    /// `conditions`: exactly one when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// `SuccessConditions` (a stage's `onSuccess`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuccessConditions {
    /// `conditions`: exactly one.
    pub conditions: Vec<Condition>,
}

/// `BeforeEntryConditions` (a stage's `beforeEntry`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeforeEntryConditions {
    /// `conditions`: exactly one.
    pub conditions: Vec<Condition>,
}

/// `Result`: what happens when a condition is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConditionResult {
    /// `ROLLBACK`: redeploy the last successful execution's stage.
    #[serde(rename = "ROLLBACK")]
    Rollback,
    /// `FAIL`.
    #[serde(rename = "FAIL")]
    Fail,
    /// `RETRY`.
    #[serde(rename = "RETRY")]
    Retry,
    /// `SKIP`.
    #[serde(rename = "SKIP")]
    Skip,
}

/// `RetryConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfiguration {
    /// `retryMode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_mode: Option<Spanned<StageRetryMode>>,
}

/// `StageRetryMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StageRetryMode {
    /// `FAILED_ACTIONS`.
    #[serde(rename = "FAILED_ACTIONS")]
    FailedActions,
    /// `ALL_ACTIONS`.
    #[serde(rename = "ALL_ACTIONS")]
    AllActions,
}

/// `Condition`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// `result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Spanned<ConditionResult>>,
    /// `rules`: 1–5 rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleDeclaration>>,
}

/// `RuleDeclaration`. Rules are read and shape-checked; which rule providers
/// Gantry runs is the engine's business.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleDeclaration {
    /// `name`.
    pub name: Spanned<String>,
    /// `ruleTypeId`.
    pub rule_type_id: RuleTypeId,
    /// `configuration`: at most 200 entries, values up to 10000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Configuration>,
    /// `commands`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<Spanned<String>>>,
    /// `inputArtifacts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_artifacts: Option<Vec<InputArtifact>>,
    /// `roleArn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<Spanned<String>>,
    /// `region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Spanned<String>>,
    /// `timeoutInMinutes`: 5–86400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<Spanned<u32>>,
}

/// `RuleTypeId`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleTypeId {
    /// `category`: always `Rule`.
    pub category: Spanned<RuleCategory>,
    /// `owner`: `AWS` when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Spanned<RuleOwner>>,
    /// `provider`: 1–35 of `[0-9A-Za-z_-]`.
    pub provider: Spanned<String>,
    /// `version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Spanned<String>>,
}

/// `RuleCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleCategory {
    /// `Rule`.
    Rule,
}

/// `RuleOwner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleOwner {
    /// `AWS`.
    #[serde(rename = "AWS")]
    Aws,
}

/// `PipelineVariableDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineVariableDeclaration {
    /// `name`: 1–128 of `[A-Za-z0-9@-_]`; referenced as `#{variables.NAME}`.
    pub name: Spanned<String>,
    /// `defaultValue`: 1–1000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Spanned<String>>,
    /// `description`: 0–200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Spanned<String>>,
}

/// `PipelineTriggerDeclaration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTriggerDeclaration {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `providerType`: always `CodeStarSourceConnection`.
    pub provider_type: Spanned<TriggerProviderType>,
    /// `gitConfiguration`.
    pub git_configuration: GitConfiguration,
}

/// `PipelineTriggerProviderType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TriggerProviderType {
    /// `CodeStarSourceConnection`: a git push or pull-request event.
    CodeStarSourceConnection,
}

/// `GitConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitConfiguration {
    /// `sourceActionName`: the source action this trigger starts from.
    pub source_action_name: Spanned<String>,
    /// `push`: 1–3 filters; a push matching any of them starts the pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Vec<GitPushFilter>>,
    /// `pullRequest`: 1–3 filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Vec<GitPullRequestFilter>>,
}

/// `GitPushFilter`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPushFilter {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `tags`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<GitFilterCriteria>,
    /// `branches`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches: Option<GitFilterCriteria>,
    /// `filePaths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_paths: Option<GitFilterCriteria>,
}

/// `GitPullRequestFilter`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitPullRequestFilter {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `events`: 1–3 of OPEN, UPDATED, CLOSED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Spanned<PullRequestEvent>>>,
    /// `branches`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches: Option<GitFilterCriteria>,
    /// `filePaths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_paths: Option<GitFilterCriteria>,
}

/// `GitBranchFilterCriteria`, `GitFilePathFilterCriteria` and
/// `GitTagFilterCriteria`: the three have the same shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GitFilterCriteria {
    /// Where the mapping starts.
    #[serde(skip)]
    pub span: Span,
    /// `includes`: 1–8 glob patterns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub includes: Option<Vec<Spanned<String>>>,
    /// `excludes`: 1–8 glob patterns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<Spanned<String>>>,
}

/// `GitPullRequestEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PullRequestEvent {
    /// `OPEN`.
    #[serde(rename = "OPEN")]
    Open,
    /// `UPDATED`.
    #[serde(rename = "UPDATED")]
    Updated,
    /// `CLOSED`.
    #[serde(rename = "CLOSED")]
    Closed,
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Timestamp::Text(text) => serializer.serialize_str(text),
            Timestamp::EpochSeconds(text) => match text.parse::<serde_json::Number>() {
                Ok(number) => number.serialize(serializer),
                Err(_) => serializer.serialize_str(text),
            },
        }
    }
}
