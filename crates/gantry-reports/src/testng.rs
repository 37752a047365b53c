//! TestNG XML (`TESTNGXML`): `<testng-results>` → `<suite>` → `<test>` →
//! `<class>` → `<test-method>`. Configuration methods (`is-config="true"`,
//! the `@Before…`/`@After…` hooks) are not test cases and are left out.

use crate::ReportError;
use crate::model::{TestCase, TestReport, TestStatus};
use crate::xml::Element;

pub(crate) fn parse(root: &Element) -> Result<TestReport, ReportError> {
    if root.name != "testng-results" {
        return Err(ReportError::WrongFormat {
            format: "TESTNGXML",
            expected: "<testng-results>",
            found: format!("<{}>", root.name),
        });
    }
    let mut cases = Vec::new();
    for suite in root.children_named("suite") {
        let suite_name = suite.attr("name").unwrap_or("");
        for test in suite.children_named("test") {
            let test_name = test.attr("name").unwrap_or(suite_name);
            for class in test.children_named("class") {
                let class_name = class.attr("name").unwrap_or("");
                for method in class.children_named("test-method") {
                    if method.attr("is-config") == Some("true") {
                        continue;
                    }
                    cases.push(case(method, test_name, class_name));
                }
            }
        }
    }
    Ok(TestReport { cases })
}

fn case(el: &Element, suite: &str, class: &str) -> TestCase {
    let status = match el.attr("status") {
        Some("PASS") => TestStatus::Succeeded,
        Some("FAIL") => TestStatus::Failed,
        Some("SKIP") => TestStatus::Skipped,
        _ => TestStatus::Unknown,
    };
    let message = el.child("exception").and_then(|ex| {
        ex.child("message")
            .and_then(Element::text_opt)
            .or_else(|| ex.attr("class").map(str::to_string))
    });
    let duration_ms = el
        .attr("duration-ms")
        .and_then(|d| d.trim().parse::<u64>().ok())
        .unwrap_or(0);
    TestCase {
        name: el.attr("name").unwrap_or("").to_string(),
        suite: suite.to_string(),
        prefix: class.to_string(),
        status,
        duration_ns: duration_ms.saturating_mul(1_000_000),
        message,
    }
}
