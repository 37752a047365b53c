//! NUnit XML: version 2 (`NUNITXML`, root `<test-results>`) and version 3
//! (`NUNIT3XML`, root `<test-run>`). Both nest `<test-suite>` elements down
//! to `<test-case>`; the suite of a case is its nearest `TestFixture`.

use crate::ReportError;
use crate::model::{TestCase, TestReport, TestStatus, seconds_to_ns};
use crate::xml::Element;

/// Which NUnit generation.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Version {
    V2,
    V3,
}

pub(crate) fn parse(root: &Element, version: Version) -> Result<TestReport, ReportError> {
    let (format, root_name, expected) = match version {
        Version::V2 => ("NUNITXML", "test-results", "<test-results>"),
        Version::V3 => ("NUNIT3XML", "test-run", "<test-run>"),
    };
    // A bare <test-suite> root is accepted for both (some tools write one).
    if root.name != root_name && root.name != "test-suite" {
        return Err(ReportError::WrongFormat {
            format,
            expected,
            found: format!("<{}>", root.name),
        });
    }
    let mut cases = Vec::new();
    walk(root, version, Suite::default(), &mut cases);
    Ok(TestReport { cases })
}

#[derive(Clone, Copy, Default)]
struct Suite<'a> {
    fixture: Option<&'a str>,
    innermost: Option<&'a str>,
}

fn walk<'a>(el: &'a Element, version: Version, suite: Suite<'a>, cases: &mut Vec<TestCase>) {
    let suite = if el.name == "test-suite" {
        let name = el.attr("name");
        Suite {
            fixture: if el.attr("type") == Some("TestFixture") {
                name
            } else {
                suite.fixture
            },
            innermost: name.or(suite.innermost),
        }
    } else {
        suite
    };
    for child in &el.children {
        if child.name == "test-case" {
            cases.push(case(child, version, suite));
        } else {
            walk(child, version, suite, cases);
        }
    }
}

fn case(el: &Element, version: Version, suite: Suite<'_>) -> TestCase {
    let name = el.attr("name").unwrap_or("").to_string();
    let (status, prefix, duration) = match version {
        Version::V2 => (
            status_v2(el),
            el.attr("classname")
                .map(str::to_string)
                .unwrap_or_else(|| class_of(&name)),
            el.attr("time"),
        ),
        Version::V3 => (
            status_v3(el),
            el.attr("classname")
                .map(str::to_string)
                .unwrap_or_else(|| class_of(el.attr("fullname").unwrap_or(""))),
            el.attr("duration"),
        ),
    };
    let message = ["failure", "reason"].iter().find_map(|kind| {
        el.child(kind)
            .and_then(|c| c.child("message"))
            .and_then(Element::text_opt)
    });
    TestCase {
        name,
        suite: suite.fixture.or(suite.innermost).unwrap_or("").to_string(),
        prefix,
        status,
        duration_ns: seconds_to_ns(duration),
        message,
    }
}

/// `Namespace.Class` of `Namespace.Class.Method(args.with.dots)`.
fn class_of(full: &str) -> String {
    let head = full.split('(').next().unwrap_or(full);
    head.rsplit_once('.')
        .map(|(c, _)| c.to_string())
        .unwrap_or_default()
}

fn status_v2(el: &Element) -> TestStatus {
    match el.attr("result") {
        Some("Success") => TestStatus::Succeeded,
        Some("Failure") => TestStatus::Failed,
        Some("Error") | Some("Cancelled") => TestStatus::Error,
        Some("Ignored") | Some("Skipped") | Some("NotRunnable") => TestStatus::Skipped,
        Some("Inconclusive") => TestStatus::Unknown,
        Some(_) => TestStatus::Unknown,
        None => match (el.attr("executed"), el.attr("success")) {
            (Some("False"), _) => TestStatus::Skipped,
            (_, Some("True")) => TestStatus::Succeeded,
            (_, Some("False")) => TestStatus::Failed,
            _ => TestStatus::Unknown,
        },
    }
}

fn status_v3(el: &Element) -> TestStatus {
    match (el.attr("result"), el.attr("label")) {
        (Some("Passed"), _) => TestStatus::Succeeded,
        (Some("Failed"), Some("Error" | "Cancelled" | "Invalid")) => TestStatus::Error,
        (Some("Failed"), _) => TestStatus::Failed,
        (Some("Skipped"), _) => TestStatus::Skipped,
        _ => TestStatus::Unknown, // Inconclusive, Warning, anything new
    }
}
