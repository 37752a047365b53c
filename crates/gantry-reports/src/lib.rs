/*!
Gantry's report readers: the test and code-coverage files a CodeBuild
`reports` group points at (FORMATS-AWS.md §1.8), parsed into one model.

[`parse_report`] reads the six test formats into a [`TestReport`] of
[`TestCase`]s with CodeBuild's statuses; [`parse_coverage`] reads the four
coverage formats into a [`CoverageReport`] of line (and, where measured,
branch) figures. The `*_file` variants read from disk and name the file in
their errors.

Report files are produced by the build, so they are treated as hostile: XML
is read without DTDs or entity expansion and with a nesting limit, JSON with
serde_json's recursion limit, and malformed input is an error, never a panic.

# Example

```
use gantry_reports::{parse_report, TestStatus};
use gantry_spec::buildspec::ReportFormat;

let xml = br#"<testsuite name="math" tests="2">
  <testcase classname="calc.Add" name="adds" time="0.25"/>
  <testcase classname="calc.Div" name="by_zero" time="0.5">
    <failure message="expected error">boom</failure>
  </testcase>
</testsuite>"#;
let report = parse_report(ReportFormat::JunitXml, xml)?;
assert_eq!(report.cases[1].status, TestStatus::Failed);
let summary = report.summary();
assert_eq!(summary.total, 2);
assert_eq!(summary.status_counts["FAILED"], 1);
assert_eq!(summary.status_counts["ERROR"], 0);
assert_eq!(summary.duration_ns, 750_000_000);
# Ok::<(), gantry_reports::ReportError>(())
```
*/
#![deny(missing_docs)]

mod coverage;
mod cucumber;
mod error;
mod junit;
mod model;
mod nunit;
mod simplecov;
mod testng;
mod trx;
mod xml;

use std::path::Path;

use gantry_spec::buildspec::ReportFormat;

pub use error::ReportError;
pub use model::{CoverageReport, FileCoverage, TestCase, TestReport, TestStatus, TestSummary};

/// Reads a test report (`JUNITXML`, `NUNITXML`, `NUNIT3XML`, `TESTNGXML`,
/// `VISUALSTUDIOTRX`, `CUCUMBERJSON`). A coverage format is an error.
pub fn parse_report(format: ReportFormat, bytes: &[u8]) -> Result<TestReport, ReportError> {
    match format {
        ReportFormat::CucumberJson => cucumber::parse(bytes),
        ReportFormat::JunitXml => junit::parse(&xml::parse(bytes)?),
        ReportFormat::NunitXml => nunit::parse(&xml::parse(bytes)?, nunit::Version::V2),
        ReportFormat::Nunit3Xml => nunit::parse(&xml::parse(bytes)?, nunit::Version::V3),
        ReportFormat::TestngXml => testng::parse(&xml::parse(bytes)?),
        ReportFormat::VisualStudioTrx => trx::parse(&xml::parse(bytes)?),
        ReportFormat::CloverXml
        | ReportFormat::CoberturaXml
        | ReportFormat::JacocoXml
        | ReportFormat::SimpleCov => Err(ReportError::NotTestFormat(format.as_str())),
    }
}

/// Reads a coverage report (`CLOVERXML`, `COBERTURAXML`, `JACOCOXML`,
/// `SIMPLECOV`). A test format is an error.
pub fn parse_coverage(format: ReportFormat, bytes: &[u8]) -> Result<CoverageReport, ReportError> {
    match format {
        ReportFormat::CloverXml => coverage::clover(&xml::parse(bytes)?),
        ReportFormat::CoberturaXml => coverage::cobertura(&xml::parse(bytes)?),
        ReportFormat::JacocoXml => coverage::jacoco(&xml::parse(bytes)?),
        ReportFormat::SimpleCov => simplecov::parse(bytes),
        ReportFormat::CucumberJson
        | ReportFormat::JunitXml
        | ReportFormat::NunitXml
        | ReportFormat::Nunit3Xml
        | ReportFormat::TestngXml
        | ReportFormat::VisualStudioTrx => Err(ReportError::NotCoverageFormat(format.as_str())),
    }
}

/// [`parse_report`] on the file at `path`; errors name the file.
pub fn parse_report_file(format: ReportFormat, path: &Path) -> Result<TestReport, ReportError> {
    std::fs::read(path)
        .map_err(ReportError::from)
        .and_then(|bytes| parse_report(format, &bytes))
        .map_err(|e| e.in_file(path))
}

/// [`parse_coverage`] on the file at `path`; errors name the file.
pub fn parse_coverage_file(
    format: ReportFormat,
    path: &Path,
) -> Result<CoverageReport, ReportError> {
    std::fs::read(path)
        .map_err(ReportError::from)
        .and_then(|bytes| parse_coverage(format, &bytes))
        .map_err(|e| e.in_file(path))
}

/// The examples of `docs/artifacts-and-reports.md` that use this crate run
/// as doctests (the others are marked `ignore` there).
#[cfg(doctest)]
#[doc = include_str!("../../../docs/artifacts-and-reports.md")]
pub struct ArtifactsAndReportsDoc;
