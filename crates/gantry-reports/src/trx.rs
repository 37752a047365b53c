//! Visual Studio TRX (`VISUALSTUDIOTRX`): `<TestRun>` with `<Results>` of
//! `<UnitTestResult>` and `<TestDefinitions>` giving each test's class.
//! Data-driven tests are counted once, by their top-level result.

use std::collections::HashMap;

use crate::ReportError;
use crate::model::{TestCase, TestReport, TestStatus};
use crate::xml::Element;

pub(crate) fn parse(root: &Element) -> Result<TestReport, ReportError> {
    if root.name != "TestRun" {
        return Err(ReportError::WrongFormat {
            format: "VISUALSTUDIOTRX",
            expected: "<TestRun>",
            found: format!("<{}>", root.name),
        });
    }
    let mut classes: HashMap<&str, &str> = HashMap::new();
    for defs in root.children_named("TestDefinitions") {
        for test in defs.children_named("UnitTest") {
            if let (Some(id), Some(class)) = (
                test.attr("id"),
                test.child("TestMethod").and_then(|m| m.attr("className")),
            ) {
                classes.insert(id, class);
            }
        }
    }
    let mut cases = Vec::new();
    for results in root.children_named("Results") {
        for result in results.children_named("UnitTestResult") {
            let class = result
                .attr("testId")
                .and_then(|id| classes.get(id))
                .map(|c| c.split(',').next().unwrap_or(c).trim())
                .unwrap_or("");
            cases.push(case(result, class));
        }
    }
    Ok(TestReport { cases })
}

fn case(el: &Element, class: &str) -> TestCase {
    let status = match el.attr("outcome") {
        Some("Passed" | "PassedButRunAborted" | "Completed") => TestStatus::Succeeded,
        Some("Failed" | "Timeout") => TestStatus::Failed,
        Some("Error" | "Aborted" | "Disconnected") => TestStatus::Error,
        Some("NotExecuted" | "NotRunnable") => TestStatus::Skipped,
        _ => TestStatus::Unknown, // Inconclusive, Warning, InProgress, Pending
    };
    let message = el
        .child("Output")
        .and_then(|o| o.child("ErrorInfo"))
        .and_then(|e| e.child("Message"))
        .and_then(Element::text_opt);
    TestCase {
        name: el.attr("testName").unwrap_or("").to_string(),
        suite: class.to_string(),
        prefix: class.to_string(),
        status,
        duration_ns: el.attr("duration").map_or(0, timespan_ns),
        message,
    }
}

/// A .NET `TimeSpan` (`[d.]hh:mm:ss[.fffffff]`) in nanoseconds; 0 if malformed.
pub(crate) fn timespan_ns(text: &str) -> u64 {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return 0;
    };
    let (days, hours) = match h.split_once('.') {
        Some((d, h)) => (d.parse::<u64>().ok(), h.parse::<u64>().ok()),
        None => (Some(0), h.parse::<u64>().ok()),
    };
    let (Some(days), Some(hours), Ok(mins), Ok(secs)) =
        (days, hours, m.parse::<u64>(), s.parse::<f64>())
    else {
        return 0;
    };
    if !secs.is_finite() || secs < 0.0 {
        return 0;
    }
    let whole = days
        .saturating_mul(86_400)
        .saturating_add(hours.saturating_mul(3_600))
        .saturating_add(mins.saturating_mul(60));
    whole
        .saturating_mul(1_000_000_000)
        .saturating_add((secs * 1e9).round().min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::timespan_ns;

    #[test]
    fn timespans() {
        assert_eq!(timespan_ns("00:00:00.0123456"), 12_345_600);
        assert_eq!(timespan_ns("01:02:03"), 3_723_000_000_000);
        assert_eq!(timespan_ns("1.00:00:01.5"), 86_401_500_000_000);
        assert_eq!(timespan_ns("garbage"), 0);
        assert_eq!(timespan_ns("::"), 0);
    }
}
