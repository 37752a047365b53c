//! The report model: test cases with CodeBuild's statuses, and line/branch
//! coverage, whatever format they were read from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A test case's outcome, as CodeBuild reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestStatus {
    /// Passed.
    Succeeded,
    /// An assertion failed.
    Failed,
    /// Not run (ignored, skipped, pending).
    Skipped,
    /// The test could not run properly (unexpected exception, setup error).
    Error,
    /// The report says something this reader cannot classify.
    Unknown,
}

impl TestStatus {
    /// Every status, in CodeBuild's order.
    pub const ALL: [TestStatus; 5] = [
        TestStatus::Succeeded,
        TestStatus::Failed,
        TestStatus::Skipped,
        TestStatus::Error,
        TestStatus::Unknown,
    ];

    /// The name as CodeBuild's API spells it (`SUCCEEDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Succeeded => "SUCCEEDED",
            TestStatus::Failed => "FAILED",
            TestStatus::Skipped => "SKIPPED",
            TestStatus::Error => "ERROR",
            TestStatus::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for TestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// The test's name (method, scenario, ...).
    pub name: String,
    /// The suite it belongs to (JUnit `testsuite`, NUnit fixture, TestNG
    /// `test`, TRX class, Cucumber feature); empty when the format has none.
    pub suite: String,
    /// CodeBuild's `prefix`: usually the class name (Cucumber: feature URI).
    pub prefix: String,
    /// Outcome.
    pub status: TestStatus,
    /// Duration in nanoseconds (0 when the report does not say).
    pub duration_ns: u64,
    /// The failure, error or skip message, when there is one.
    pub message: Option<String>,
}

/// The test cases read from one report file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    /// Every case.
    pub cases: Vec<TestCase>,
}

/// Totals for a test report, as CodeBuild's `TestReportSummary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    /// Number of cases.
    pub total: u64,
    /// Cases per status name; all five names are always present.
    pub status_counts: BTreeMap<String, u64>,
    /// Sum of the case durations, in nanoseconds.
    pub duration_ns: u64,
}

impl TestReport {
    /// Counts cases per status and adds up durations.
    ///
    /// ```
    /// use gantry_reports::{TestReport, TestStatus};
    /// let summary = TestReport::default().summary();
    /// assert_eq!(summary.total, 0);
    /// assert_eq!(summary.status_counts.len(), TestStatus::ALL.len());
    /// ```
    pub fn summary(&self) -> TestSummary {
        let mut status_counts: BTreeMap<String, u64> = TestStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut duration_ns = 0u64;
        for case in &self.cases {
            *status_counts
                .entry(case.status.as_str().to_string())
                .or_default() += 1;
            duration_ns = duration_ns.saturating_add(case.duration_ns);
        }
        TestSummary {
            total: self.cases.len() as u64,
            status_counts,
            duration_ns,
        }
    }

    /// Merges another file's cases into this report (a report group reads
    /// several files into one report).
    pub fn extend(&mut self, other: TestReport) {
        self.cases.extend(other.cases);
    }
}

/// Coverage of one source file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCoverage {
    /// The path as the report gives it.
    pub path: String,
    /// Lines executed at least once.
    pub lines_covered: u64,
    /// Coverable lines never executed.
    pub lines_missed: u64,
    /// Branches taken, when the report measures branches.
    pub branches_covered: Option<u64>,
    /// Branches never taken, when the report measures branches.
    pub branches_missed: Option<u64>,
}

impl FileCoverage {
    /// Line coverage, 0–100 (0 when there is no coverable line).
    pub fn line_coverage_percent(&self) -> f64 {
        percent(self.lines_covered, self.lines_missed)
    }
}

/// A coverage report, as CodeBuild's `CodeCoverageReportSummary` plus the files.
///
/// Branch figures are `None` when the report measures no branch at all
/// (PHPUnit's Clover output, for example, always says `conditionals="0"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageReport {
    /// Line coverage, 0–100.
    pub line_coverage_percent: f64,
    /// Lines executed at least once.
    pub lines_covered: u64,
    /// Coverable lines never executed.
    pub lines_missed: u64,
    /// Branch coverage, 0–100, when branches are measured.
    pub branch_coverage_percent: Option<f64>,
    /// Branches taken.
    pub branches_covered: Option<u64>,
    /// Branches never taken.
    pub branches_missed: Option<u64>,
    /// Per-file figures, sorted by path.
    pub files: Vec<FileCoverage>,
}

impl CoverageReport {
    /// Builds a report from totals; `branches` is `(covered, missed)`, and a
    /// zero total counts as "not measured".
    pub fn from_totals(
        lines: (u64, u64),
        branches: Option<(u64, u64)>,
        mut files: Vec<FileCoverage>,
    ) -> CoverageReport {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let branches = branches.filter(|(c, m)| c + m > 0);
        CoverageReport {
            line_coverage_percent: percent(lines.0, lines.1),
            lines_covered: lines.0,
            lines_missed: lines.1,
            branch_coverage_percent: branches.map(|(c, m)| percent(c, m)),
            branches_covered: branches.map(|b| b.0),
            branches_missed: branches.map(|b| b.1),
            files,
        }
    }

    /// Builds a report whose totals are the sums of `files`.
    pub fn from_files(files: Vec<FileCoverage>) -> CoverageReport {
        let lines = files.iter().fold((0u64, 0u64), |(c, m), f| {
            (
                c.saturating_add(f.lines_covered),
                m.saturating_add(f.lines_missed),
            )
        });
        let branches = files.iter().fold(None, |acc: Option<(u64, u64)>, f| {
            match (f.branches_covered, f.branches_missed) {
                (Some(c), Some(m)) => {
                    let (ac, am) = acc.unwrap_or((0, 0));
                    Some((ac.saturating_add(c), am.saturating_add(m)))
                }
                _ => acc,
            }
        });
        CoverageReport::from_totals(lines, branches, files)
    }
}

fn percent(covered: u64, missed: u64) -> f64 {
    let total = covered as f64 + missed as f64;
    if total == 0.0 {
        0.0
    } else {
        covered as f64 * 100.0 / total
    }
}

/// Seconds (as a report writes them, `"1.5"`, `"1,234.5"`) to nanoseconds.
pub(crate) fn seconds_to_ns(text: Option<&str>) -> u64 {
    let Some(text) = text else { return 0 };
    let cleaned: String = text.trim().chars().filter(|c| *c != ',').collect();
    match cleaned.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => (s * 1e9).round().min(u64::MAX as f64) as u64,
        _ => 0,
    }
}
