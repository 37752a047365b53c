//! JUnit XML (`JUNITXML`): `<testsuites>` or a single `<testsuite>` at the
//! root, suites may nest, each `<testcase>` may hold `<failure>`, `<error>`
//! or `<skipped>`.

use crate::ReportError;
use crate::model::{TestCase, TestReport, TestStatus, seconds_to_ns};
use crate::xml::Element;

pub(crate) fn parse(root: &Element) -> Result<TestReport, ReportError> {
    let mut cases = Vec::new();
    match root.name.as_str() {
        "testsuites" => walk(root, "", &mut cases),
        "testsuite" => walk(root, root.attr("name").unwrap_or(""), &mut cases),
        other => {
            return Err(ReportError::WrongFormat {
                format: "JUNITXML",
                expected: "<testsuites> or <testsuite>",
                found: format!("<{other}>"),
            });
        }
    }
    Ok(TestReport { cases })
}

fn walk(el: &Element, suite: &str, cases: &mut Vec<TestCase>) {
    for child in &el.children {
        match child.name.as_str() {
            "testsuite" => walk(child, child.attr("name").unwrap_or(suite), cases),
            "testcase" => cases.push(case(child, suite)),
            _ => {}
        }
    }
}

fn case(el: &Element, suite: &str) -> TestCase {
    // The first outcome child decides; <skipped> only when nothing failed.
    let outcome = el
        .children
        .iter()
        .find(|c| matches!(c.name.as_str(), "failure" | "error"))
        .or_else(|| el.child("skipped"));
    let (status, message) = match outcome {
        None => (TestStatus::Succeeded, None),
        Some(o) => {
            let status = match o.name.as_str() {
                "failure" => TestStatus::Failed,
                "error" => TestStatus::Error,
                _ => TestStatus::Skipped,
            };
            let message = o
                .attr("message")
                .map(str::to_string)
                .filter(|m| !m.trim().is_empty())
                .or_else(|| o.text_opt());
            (status, message)
        }
    };
    TestCase {
        name: el.attr("name").unwrap_or("").to_string(),
        suite: suite.to_string(),
        prefix: el.attr("classname").unwrap_or("").to_string(),
        status,
        duration_ns: seconds_to_ns(el.attr("time")),
        message,
    }
}
