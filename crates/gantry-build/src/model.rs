//! A build's result, in the shape of CodeBuild's `Build` object (botocore
//! `codebuild/2016-10-06`: `Build`, `BuildPhase`, `BuildArtifacts`,
//! `ExportedEnvironmentVariable`), so tools that read CodeBuild's JSON read ours.

use std::collections::BTreeMap;

use serde::Serialize;

/// CodeBuild's `BuildPhaseType`, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseType {
    /// The build was accepted.
    Submitted,
    /// Waiting for capacity.
    Queued,
    /// Starting the executor's environment.
    Provisioning,
    /// Making the source available.
    DownloadSource,
    /// `phases.install`.
    Install,
    /// `phases.pre_build`.
    PreBuild,
    /// `phases.build`.
    Build,
    /// `phases.post_build`.
    PostBuild,
    /// Collecting artifacts and reports.
    UploadArtifacts,
    /// Tearing the environment down.
    Finalizing,
    /// The end (no status of its own).
    Completed,
}

impl PhaseType {
    /// The name as CodeBuild spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseType::Submitted => "SUBMITTED",
            PhaseType::Queued => "QUEUED",
            PhaseType::Provisioning => "PROVISIONING",
            PhaseType::DownloadSource => "DOWNLOAD_SOURCE",
            PhaseType::Install => "INSTALL",
            PhaseType::PreBuild => "PRE_BUILD",
            PhaseType::Build => "BUILD",
            PhaseType::PostBuild => "POST_BUILD",
            PhaseType::UploadArtifacts => "UPLOAD_ARTIFACTS",
            PhaseType::Finalizing => "FINALIZING",
            PhaseType::Completed => "COMPLETED",
        }
    }
}

/// CodeBuild's `StatusType`, for phases and builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseStatus {
    /// It worked.
    Succeeded,
    /// A command failed.
    Failed,
    /// Gantry itself failed (executor unavailable, I/O error).
    Fault,
    /// The build timeout ran out.
    TimedOut,
    /// Still running.
    InProgress,
    /// Stopped by a person (Ctrl-C) or by a batch's fast-fail.
    Stopped,
}

impl PhaseStatus {
    /// The name as CodeBuild spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Succeeded => "SUCCEEDED",
            PhaseStatus::Failed => "FAILED",
            PhaseStatus::Fault => "FAULT",
            PhaseStatus::TimedOut => "TIMED_OUT",
            PhaseStatus::InProgress => "IN_PROGRESS",
            PhaseStatus::Stopped => "STOPPED",
        }
    }
}

/// Why a phase ended as it did (`PhaseContext`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseContext {
    /// E.g. `COMMAND_EXECUTION_ERROR`, `CLIENT_ERROR`.
    pub status_code: String,
    /// E.g. `Error while executing command: make. Reason: exit status 2`.
    pub message: String,
}

/// One phase of a finished build (`BuildPhase`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildPhase {
    /// Which phase.
    pub phase_type: PhaseType,
    /// How it ended (absent for COMPLETED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_status: Option<PhaseStatus>,
    /// Epoch seconds.
    pub start_time: f64,
    /// Epoch seconds (absent for COMPLETED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    /// Whole seconds, as CodeBuild reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_in_seconds: Option<u64>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<PhaseContext>,
}

/// An exported variable's final value (`ExportedEnvironmentVariable`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedVariable {
    /// The name.
    pub name: String,
    /// The value after the last phase that ran.
    pub value: String,
}

/// An artifact's outcome (`BuildArtifacts`, plus the files written).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactResult {
    /// `secondary-artifacts` key; absent for the primary artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_identifier: Option<String>,
    /// The directory the files were written to, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `name` after shell evaluation (Gantry addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Relative paths of the files selected (Gantry addition).
    pub files: Vec<String>,
}

/// A report group's outcome (Gantry's summary of CodeBuild's `Report`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The report group name (the `reports` key).
    pub name: String,
    /// `TEST` or `CODE_COVERAGE`.
    #[serde(rename = "type")]
    pub report_type: &'static str,
    /// `file-format`, as CodeBuild spells it.
    pub file_format: &'static str,
    /// `SUCCEEDED` when every test passed, `FAILED` when some did not,
    /// `INCOMPLETE` when a file could not be read.
    pub status: &'static str,
    /// The files read, relative to the source directory.
    pub files: Vec<String>,
    /// For test reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_summary: Option<TestSummary>,
    /// For coverage reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_coverage_summary: Option<CoverageSummary>,
    /// Files that could not be parsed, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// `TestReportSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestSummary {
    /// Number of test cases.
    pub total: u64,
    /// Counts keyed SUCCEEDED, FAILED, SKIPPED, ERROR, UNKNOWN (all present).
    pub status_counts: BTreeMap<String, u64>,
    /// Sum of the cases' durations.
    pub duration_in_nano_seconds: u64,
}

/// `CodeCoverageReportSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageSummary {
    /// Percentage of lines covered.
    pub line_coverage_percentage: f64,
    /// Lines covered.
    pub lines_covered: u64,
    /// Lines missed.
    pub lines_missed: u64,
    /// Percentage of branches covered, when the format has branches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_coverage_percentage: Option<f64>,
    /// Branches covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches_covered: Option<u64>,
    /// Branches missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branches_missed: Option<u64>,
}

/// A finished build, serialised as CodeBuild's `Build`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildResult {
    /// `project:uuid`.
    pub id: String,
    /// `arn:aws:codebuild:...:build/project:uuid`.
    pub arn: String,
    /// The build number.
    pub build_number: u64,
    /// The project name.
    pub project_name: String,
    /// Epoch seconds.
    pub start_time: f64,
    /// Epoch seconds.
    pub end_time: f64,
    /// The last phase reached.
    pub current_phase: PhaseType,
    /// The build's status.
    pub build_status: PhaseStatus,
    /// Always true: this is a finished build.
    pub build_complete: bool,
    /// The commit when the source is a git checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_source_version: Option<String>,
    /// Who started it.
    pub initiator: String,
    /// The timeout that applied.
    pub timeout_in_minutes: u64,
    /// Every phase that ran, in order.
    pub phases: Vec<BuildPhase>,
    /// `exported-variables` with their final values.
    pub exported_environment_variables: Vec<ExportedVariable>,
    /// The primary artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactResult>,
    /// The secondary artifacts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secondary_artifacts: Vec<ArtifactResult>,
    /// The report groups.
    pub reports: Vec<ReportResult>,
    /// `CODEBUILD_BATCH_BUILD_IDENTIFIER` for a batch task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_build_identifier: Option<String>,
}

impl BuildResult {
    /// The phase of this type, if it ran.
    pub fn phase(&self, phase: PhaseType) -> Option<&BuildPhase> {
        self.phases.iter().find(|p| p.phase_type == phase)
    }
}
