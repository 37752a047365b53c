//! UPLOAD_ARTIFACTS: the primary and secondary artifacts, and the reports.

use std::path::Path;

use gantry_spec::buildspec::Artifacts;

use super::{BuildContext, ShellState, phase};
use crate::artifacts;
use crate::model::{ArtifactResult, ReportResult};

/// What UPLOAD_ARTIFACTS produced.
pub(crate) struct Upload {
    pub primary: Option<ArtifactResult>,
    pub secondary: Vec<ArtifactResult>,
    pub reports: Vec<ReportResult>,
    /// Why the phase failed, if it did.
    pub error: Option<String>,
}

pub(crate) async fn upload(
    ctx: &BuildContext<'_>,
    state: &ShellState,
    source_dir: &Path,
) -> Upload {
    let mut upload = Upload {
        primary: None,
        secondary: Vec::new(),
        reports: Vec::new(),
        error: None,
    };
    if let Some(spec) = &ctx.spec.artifacts {
        let destination = ctx.options.artifacts_dir.clone();
        match one_artifact(ctx, state, source_dir, spec, None, destination.as_deref()).await {
            Ok(result) => upload.primary = Some(result),
            Err(message) => upload.error = Some(message),
        }
        for secondary in &spec.secondary {
            let id = &secondary.identifier.value;
            let destination = ctx.options.artifacts_dir.as_ref().map(|d| d.join(id));
            match one_artifact(
                ctx,
                state,
                source_dir,
                &secondary.artifacts,
                Some(id),
                destination.as_deref(),
            )
            .await
            {
                Ok(result) => upload.secondary.push(result),
                Err(message) => {
                    upload.error.get_or_insert(message);
                }
            }
        }
    }
    upload.reports = reports(ctx, source_dir).await;
    upload
}

async fn one_artifact(
    ctx: &BuildContext<'_>,
    state: &ShellState,
    source_dir: &Path,
    spec: &Artifacts,
    identifier: Option<&str>,
    destination: Option<&Path>,
) -> Result<ArtifactResult, String> {
    let label = identifier
        .map(|id| format!("secondary artifact {id}"))
        .unwrap_or_else(|| "artifacts".into());
    let files = artifacts::select(source_dir, spec).map_err(|e| format!("{label}: {e}"))?;
    if files.is_empty() {
        return Err(format!("{label}: no matching artifact paths found"));
    }
    let name = match &spec.name {
        Some(name) => Some(
            phase::evaluate(ctx, state, &name.value)
                .await
                .map_err(|e| format!("{label}: name: {e}"))?,
        ),
        None => None,
    };
    if let Some(dir) = destination {
        artifacts::copy_to(&files, dir)
            .map_err(|e| format!("{label}: writing to {}: {e}", dir.display()))?;
    }
    ctx.say(&format!(
        "[Container] {label}: {} file(s){}",
        files.len(),
        destination
            .map(|d| format!(" written to {}", d.display()))
            .unwrap_or_default()
    ))
    .await;
    Ok(ArtifactResult {
        artifact_identifier: identifier.map(str::to_string),
        location: destination.map(|d| d.to_string_lossy().into_owned()),
        name,
        files: files
            .iter()
            .map(|f| f.dest.to_string_lossy().into_owned())
            .collect(),
    })
}

/// Reads every report group's files.
pub(crate) async fn reports(ctx: &BuildContext<'_>, source_dir: &Path) -> Vec<ReportResult> {
    let mut results = Vec::new();
    for group in &ctx.spec.reports {
        let result = crate::reports::collect(source_dir, group, &ctx.options.project_name);
        let summary = match (&result.test_summary, &result.code_coverage_summary) {
            (Some(t), _) => format!(
                "{} test(s): {} succeeded, {} failed",
                t.total,
                t.status_counts.get("SUCCEEDED").copied().unwrap_or(0),
                t.status_counts.get("FAILED").copied().unwrap_or(0)
                    + t.status_counts.get("ERROR").copied().unwrap_or(0)
            ),
            (None, Some(c)) => format!("line coverage {:.1}%", c.line_coverage_percentage),
            (None, None) => "no report files found".to_string(),
        };
        ctx.say(&format!(
            "[Container] Report {} ({}): {summary}",
            result.name, result.file_format
        ))
        .await;
        for error in &result.errors {
            ctx.say(&format!("[Container] Report {}: {error}", result.name))
                .await;
        }
        results.push(result);
    }
    results
}
