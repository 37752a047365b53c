//! The typed buildspec: every key of CodeBuild's buildspec (FORMATS-AWS.md §1),
//! each value carrying the place in the file it came from.
//!
//! These types are the contract between the parser (this crate) and the build
//! runner (`gantry-build`). They hold what the file *says*, already checked
//! (types, enum values, reserved names); they do not resolve anything that
//! needs the outside world (users, files, the environment).

use crate::span::{Span, Spanned};

/// A whole buildspec file.
#[derive(Debug, Clone, PartialEq)]
pub struct Buildspec {
    /// `version`: 0.1 runs every command in its own shell, 0.2 shares one per phase.
    pub version: Spanned<Version>,
    /// Top-level `run-as`: the Linux user every command runs as.
    pub run_as: Option<Spanned<String>>,
    /// `env`.
    pub env: Env,
    /// `proxy`.
    pub proxy: Option<Proxy>,
    /// `batch`.
    pub batch: Option<Batch>,
    /// `phases`.
    pub phases: Phases,
    /// `reports`, in file order.
    pub reports: Vec<ReportGroup>,
    /// `artifacts`.
    pub artifacts: Option<Artifacts>,
    /// `cache`.
    pub cache: Option<Cache>,
}

/// The buildspec `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `0.1`: a new shell for every command.
    V0_1,
    /// `0.2`: one shell session per phase.
    V0_2,
}

/// `env.shell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `bash`.
    Bash,
    /// `/bin/sh` (also accepted: `sh`).
    Sh,
}

/// A `NAME: value` pair from a map, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// The key.
    pub name: Spanned<String>,
    /// The value, as text (YAML numbers and booleans are kept as written).
    pub value: Spanned<String>,
}

/// The `env` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Env {
    /// `env.shell`.
    pub shell: Option<Spanned<Shell>>,
    /// `env.variables`: plain values, never `$`-expanded.
    pub variables: Vec<NamedValue>,
    /// `env.parameter-store`: local name to parameter name.
    pub parameter_store: Vec<NamedValue>,
    /// `env.secrets-manager`: local name to a secret reference.
    pub secrets_manager: Vec<SecretVariable>,
    /// `env.exported-variables`.
    pub exported_variables: Vec<Spanned<String>>,
    /// `env.git-credential-helper`.
    pub git_credential_helper: Option<Spanned<bool>>,
}

/// One `env.secrets-manager` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretVariable {
    /// The environment variable to set.
    pub name: Spanned<String>,
    /// The parsed reference.
    pub reference: Spanned<SecretRef>,
}

/// `secret-id[:json-key[:version-stage[:version-id]]]`.
///
/// A `secret-id` that is an ARN contains colons itself; the parser keeps the
/// ARN whole (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// A key inside a JSON secret; `None` injects the whole secret string.
    pub json_key: Option<String>,
    /// `AWSCURRENT` when neither this nor `version_id` is given.
    pub version_stage: Option<String>,
    /// A version id; mutually exclusive with `version_stage`.
    pub version_id: Option<String>,
}

/// The `proxy` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proxy {
    /// `proxy.upload-artifacts`.
    pub upload_artifacts: bool,
    /// `proxy.logs`.
    pub logs: bool,
}

/// The four phases; each is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases {
    /// `phases.install`.
    pub install: Option<Phase>,
    /// `phases.pre_build`.
    pub pre_build: Option<Phase>,
    /// `phases.build`.
    pub build: Option<Phase>,
    /// `phases.post_build`.
    pub post_build: Option<Phase>,
}

/// One phase block.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Where the phase's key is in the file.
    pub span: Span,
    /// Phase-level `run-as`, overriding the top-level one.
    pub run_as: Option<Spanned<String>>,
    /// `on-failure`; `None` means the default transition graph.
    pub on_failure: Option<Spanned<OnFailure>>,
    /// `runtime-versions` (install only).
    pub runtime_versions: Vec<NamedValue>,
    /// `commands`, run in order; the first failure skips the rest.
    pub commands: Vec<Spanned<String>>,
    /// `finally`, run after `commands` whatever happened.
    pub finally: Vec<Spanned<String>>,
}

/// A phase's `on-failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    /// `ABORT`: the build stops.
    Abort,
    /// `CONTINUE`: the next phase runs; the build still ends FAILED.
    Continue,
    /// `RETRY`, `RETRY-<count>`, `RETRY-<regex>`, `RETRY-<count>-<regex>`.
    Retry {
        /// Retries after the first attempt (0..=100; 3 when not given).
        count: u32,
        /// Retry only when the error message matches this regex (`.*` when not given).
        pattern: Option<String>,
    },
}

/// One `reports` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportGroup {
    /// The report group's name or ARN (the map key).
    pub name: Spanned<String>,
    /// `files`: globs relative to the source root or `base-directory`.
    pub files: Vec<Spanned<String>>,
    /// `base-directory`.
    pub base_directory: Option<Spanned<String>>,
    /// `discard-paths`.
    pub discard_paths: bool,
    /// `file-format` (case-insensitive in the file; JUNITXML by default).
    pub file_format: Spanned<ReportFormat>,
}

/// Report file formats CodeBuild reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// `CUCUMBERJSON`
    CucumberJson,
    /// `JUNITXML`
    JunitXml,
    /// `NUNITXML`
    NunitXml,
    /// `NUNIT3XML`
    Nunit3Xml,
    /// `TESTNGXML`
    TestngXml,
    /// `VISUALSTUDIOTRX`
    VisualStudioTrx,
    /// `CLOVERXML` (coverage)
    CloverXml,
    /// `COBERTURAXML` (coverage)
    CoberturaXml,
    /// `JACOCOXML` (coverage)
    JacocoXml,
    /// `SIMPLECOV` (coverage)
    SimpleCov,
}

impl ReportFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [ReportFormat; 10] = [
        ReportFormat::CucumberJson,
        ReportFormat::JunitXml,
        ReportFormat::NunitXml,
        ReportFormat::Nunit3Xml,
        ReportFormat::TestngXml,
        ReportFormat::VisualStudioTrx,
        ReportFormat::CloverXml,
        ReportFormat::CoberturaXml,
        ReportFormat::JacocoXml,
        ReportFormat::SimpleCov,
    ];

    /// The name as CodeBuild's API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::CucumberJson => "CUCUMBERJSON",
            ReportFormat::JunitXml => "JUNITXML",
            ReportFormat::NunitXml => "NUNITXML",
            ReportFormat::Nunit3Xml => "NUNIT3XML",
            ReportFormat::TestngXml => "TESTNGXML",
            ReportFormat::VisualStudioTrx => "VISUALSTUDIOTRX",
            ReportFormat::CloverXml => "CLOVERXML",
            ReportFormat::CoberturaXml => "COBERTURAXML",
            ReportFormat::JacocoXml => "JACOCOXML",
            ReportFormat::SimpleCov => "SIMPLECOV",
        }
    }

    /// Parses a `file-format` value, ignoring case.
    pub fn parse(text: &str) -> Option<ReportFormat> {
        ReportFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text))
    }

    /// True for the code-coverage formats (their summary is line coverage, not test counts).
    pub fn is_coverage(self) -> bool {
        matches!(
            self,
            ReportFormat::CloverXml
                | ReportFormat::CoberturaXml
                | ReportFormat::JacocoXml
                | ReportFormat::SimpleCov
        )
    }
}

/// The `artifacts` block, and each entry of `secondary-artifacts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    /// Where the block is in the file.
    pub span: Span,
    /// `files` (required).
    pub files: Vec<Spanned<String>>,
    /// `name`, evaluated by the shell at the end of the build.
    pub name: Option<Spanned<String>>,
    /// `discard-paths`.
    pub discard_paths: bool,
    /// `base-directory` (may be a glob matching several top-level directories).
    pub base_directory: Option<Spanned<String>>,
    /// `exclude-paths`, relative to `base-directory`.
    pub exclude_paths: Vec<Spanned<String>>,
    /// `enable-symlinks`.
    pub enable_symlinks: bool,
    /// `s3-prefix`.
    pub s3_prefix: Option<Spanned<String>>,
    /// `secondary-artifacts`, keyed by `artifactIdentifier`, in file order.
    /// Always empty inside a secondary artifact.
    pub secondary: Vec<SecondaryArtifact>,
}

/// One `secondary-artifacts` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryArtifact {
    /// The `artifactIdentifier` (the map key).
    pub identifier: Spanned<String>,
    /// Its block.
    pub artifacts: Artifacts,
}

/// The `cache` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    /// `paths` (required).
    pub paths: Vec<Spanned<String>>,
    /// `key` (may contain shell expressions).
    pub key: Option<Spanned<String>>,
    /// `fallback-keys` (at most 5).
    pub fallback_keys: Vec<Spanned<String>>,
    /// `action`: restore, save, or both when absent.
    pub action: Option<Spanned<CacheAction>>,
}

/// `cache.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAction {
    /// `restore`
    Restore,
    /// `save`
    Save,
}

/// The `batch` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `batch.fast-fail`: stop running tasks once one fails.
    pub fast_fail: bool,
    /// Which kind of batch, and its tasks.
    pub kind: BatchKind,
}

/// The four batch kinds; a buildspec has exactly one.
// One value per buildspec: the size difference between variants costs
// nothing, and boxing would change the API the runner codes against.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BatchKind {
    /// `build-list`: every task in parallel.
    List(Vec<BatchTask>),
    /// `build-graph`: tasks start when everything they `depend-on` completed.
    Graph(Vec<BatchTask>),
    /// `build-matrix`: one task per combination of the dynamic values.
    Matrix(BuildMatrix),
    /// `build-fanout`: N identical tasks.
    Fanout(BuildFanout),
}

/// One task of a `build-list` or `build-graph`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTask {
    /// Where the task is in the file.
    pub span: Span,
    /// `identifier` (required; unique; letters, digits and `_`).
    pub identifier: Spanned<String>,
    /// `buildspec`: path of another buildspec, relative to the source root.
    pub buildspec: Option<Spanned<String>>,
    /// `debug-session`.
    pub debug_session: bool,
    /// `env`.
    pub env: BatchEnv,
    /// `ignore-failure`.
    pub ignore_failure: bool,
    /// `depend-on` (graph only).
    pub depend_on: Vec<Spanned<String>>,
}

/// A batch task's `env` override.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchEnv {
    /// `compute-type`.
    pub compute_type: Option<Spanned<String>>,
    /// `image`: the image the task runs in (the docker executor uses it).
    pub image: Option<Spanned<String>>,
    /// `privileged-mode`.
    pub privileged_mode: bool,
    /// `type`.
    pub env_type: Option<Spanned<String>>,
    /// `variables`, added over the buildspec's own.
    pub variables: Vec<NamedValue>,
}

/// `build-matrix`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildMatrix {
    /// `static.ignore-failure`.
    pub ignore_failure: bool,
    /// `static.env` (`privileged-mode`, `type`, and the rest of [`BatchEnv`]).
    pub static_env: BatchEnv,
    /// `dynamic.buildspec`.
    pub buildspecs: Vec<Spanned<String>>,
    /// `dynamic.env.compute-type`.
    pub compute_types: Vec<Spanned<String>>,
    /// `dynamic.env.image`.
    pub images: Vec<Spanned<String>>,
    /// `dynamic.env.variables`: each name with its list of values.
    pub variables: Vec<MatrixVariable>,
}

/// One `dynamic.env.variables` entry of a build matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixVariable {
    /// The variable's name.
    pub name: Spanned<String>,
    /// Its values; one build runs per value (crossed with the other axes).
    pub values: Vec<Spanned<String>>,
}

/// `build-fanout`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildFanout {
    /// `parallelism` (> 0).
    pub parallelism: Spanned<u32>,
    /// `ignore-failure`.
    pub ignore_failure: bool,
}
