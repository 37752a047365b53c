//! Cucumber JSON (`CUCUMBERJSON`): an array of features, each with
//! `elements` (scenarios and backgrounds) made of steps with a result.
//!
//! A scenario is one test case; a `background` element's steps count
//! towards the scenario that follows it. Durations are nanoseconds, as
//! cucumber-jvm, cucumber-ruby and cucumber-js write them.

use serde::Deserialize;

use crate::ReportError;
use crate::model::{TestCase, TestReport, TestStatus};

#[derive(Deserialize)]
struct Feature {
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    elements: Option<Vec<Scenario>>,
}

#[derive(Deserialize)]
struct Scenario {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    steps: Option<Vec<Step>>,
    #[serde(default)]
    before: Option<Vec<Step>>,
    #[serde(default)]
    after: Option<Vec<Step>>,
}

/// A step or a hook: only the result matters.
#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    result: Option<StepResult>,
}

#[derive(Deserialize)]
struct StepResult {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    error_message: Option<String>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<TestReport, ReportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(ReportError::json)?;
    if !value.is_array() {
        return Err(ReportError::WrongFormat {
            format: "CUCUMBERJSON",
            expected: "a JSON array of features",
            found: json_kind(&value).to_string(),
        });
    }
    // Read again, typed, so shape errors keep their line and column.
    let features: Vec<Feature> = serde_json::from_slice(bytes).map_err(ReportError::json)?;
    let mut cases = Vec::new();
    for feature in features {
        let suite = feature.name.unwrap_or_default();
        let prefix = feature.uri.unwrap_or_default();
        let mut background: Vec<Step> = Vec::new();
        for element in feature.elements.unwrap_or_default() {
            let steps = element.steps.unwrap_or_default();
            if element.kind.as_deref() == Some("background") {
                background = steps;
                continue;
            }
            let all = background
                .iter()
                .chain(element.before.iter().flatten())
                .chain(&steps)
                .chain(element.after.iter().flatten());
            let (status, duration_ns, message) = outcome(all);
            background.clear();
            cases.push(TestCase {
                name: element.name.unwrap_or_default(),
                suite: suite.clone(),
                prefix: prefix.clone(),
                status,
                duration_ns,
                message,
            });
        }
    }
    Ok(TestReport { cases })
}

/// Failed beats ambiguous beats not-run; a scenario passes when every step did.
fn outcome<'a>(steps: impl Iterator<Item = &'a Step>) -> (TestStatus, u64, Option<String>) {
    let (mut failed, mut ambiguous, mut not_run, mut unknown) = (false, false, false, false);
    let mut duration = 0u64;
    let mut message = None;
    for result in steps.filter_map(|s| s.result.as_ref()) {
        if let Some(d) = result.duration.filter(|d| d.is_finite() && *d > 0.0) {
            duration = duration.saturating_add(d.min(u64::MAX as f64) as u64);
        }
        match result.status.as_deref() {
            Some("passed") => {}
            Some("failed") => failed = true,
            Some("ambiguous") => ambiguous = true,
            Some("skipped" | "pending" | "undefined") => not_run = true,
            _ => unknown = true,
        }
        if message.is_none() && matches!(result.status.as_deref(), Some("failed" | "ambiguous")) {
            message = result.error_message.clone();
        }
    }
    let status = if failed {
        TestStatus::Failed
    } else if ambiguous {
        TestStatus::Error
    } else if unknown {
        TestStatus::Unknown
    } else if not_run {
        TestStatus::Skipped
    } else {
        TestStatus::Succeeded
    };
    (status, duration, message)
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
