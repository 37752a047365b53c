//! Report groups: the files a `reports` entry names, read into CodeBuild's
//! report summaries (the parsing itself is `gantry-reports`).

use std::path::Path;

use gantry_spec::Span;
use gantry_spec::buildspec::{Artifacts, ReportGroup};

use crate::artifacts;
use crate::model::{CoverageSummary, ReportResult, TestSummary};

/// Reads the files of one report group under `source_dir`. Problems (no
/// file matched, a file that does not parse) are recorded in the result;
/// they never fail the build, as in CodeBuild.
pub fn collect(source_dir: &Path, group: &ReportGroup, project: &str) -> ReportResult {
    let format = group.file_format.value;
    let name = if group.name.value.starts_with("arn:") {
        group.name.value.clone()
    } else {
        format!("{project}-{}", group.name.value)
    };
    let mut result = ReportResult {
        name,
        report_type: if format.is_coverage() {
            "CODE_COVERAGE"
        } else {
            "TEST"
        },
        file_format: format.as_str(),
        status: "INCOMPLETE",
        files: Vec::new(),
        test_summary: None,
        code_coverage_summary: None,
        errors: Vec::new(),
    };
    // A report group selects its files exactly as an artifact does.
    let selection = Artifacts {
        span: Span::default(),
        files: group.files.clone(),
        name: None,
        discard_paths: false,
        base_directory: group.base_directory.clone(),
        exclude_paths: Vec::new(),
        enable_symlinks: false,
        s3_prefix: None,
        secondary: Vec::new(),
    };
    let files = match artifacts::select(source_dir, &selection) {
        Ok(files) => files,
        Err(e) => {
            result.errors.push(e.to_string());
            return result;
        }
    };
    if files.is_empty() {
        result.errors.push("no report files found".into());
        return result;
    }
    let mut tests = gantry_reports::TestReport::default();
    let mut coverage = Vec::new();
    for file in &files {
        let shown = file
            .source
            .strip_prefix(source_dir)
            .unwrap_or(&file.source)
            .display()
            .to_string();
        let parsed = if format.is_coverage() {
            gantry_reports::parse_coverage_file(format, &file.source).map(|c| coverage.push(c))
        } else {
            gantry_reports::parse_report_file(format, &file.source).map(|t| tests.extend(t))
        };
        match parsed {
            Ok(()) => result.files.push(shown),
            Err(e) => result.errors.push(e.to_string()),
        }
    }
    if result.files.is_empty() {
        return result;
    }
    if format.is_coverage() {
        let sum = |f: fn(&gantry_reports::CoverageReport) -> Option<u64>| {
            coverage
                .iter()
                .map(f)
                .try_fold(0u64, |acc, v| v.map(|v| acc.saturating_add(v)))
        };
        let lines = (
            coverage.iter().map(|c| c.lines_covered).sum::<u64>(),
            coverage.iter().map(|c| c.lines_missed).sum::<u64>(),
        );
        let branches = sum(|c| c.branches_covered).zip(sum(|c| c.branches_missed));
        let total = gantry_reports::CoverageReport::from_totals(lines, branches, Vec::new());
        result.code_coverage_summary = Some(CoverageSummary {
            line_coverage_percentage: total.line_coverage_percent,
            lines_covered: total.lines_covered,
            lines_missed: total.lines_missed,
            branch_coverage_percentage: total.branch_coverage_percent,
            branches_covered: total.branches_covered,
            branches_missed: total.branches_missed,
        });
        result.status = "SUCCEEDED";
    } else {
        let summary = tests.summary();
        let failing = ["FAILED", "ERROR"]
            .iter()
            .any(|s| summary.status_counts.get(*s).copied().unwrap_or(0) > 0);
        result.status = if failing { "FAILED" } else { "SUCCEEDED" };
        result.test_summary = Some(TestSummary {
            total: summary.total,
            status_counts: summary.status_counts,
            duration_in_nano_seconds: summary.duration_ns,
        });
    }
    result
}
