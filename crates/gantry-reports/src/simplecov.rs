//! SimpleCov's native JSON (`SIMPLECOV`): `.resultset.json`, one entry per
//! command name (`"RSpec"`, `"Minitest"`, ...) each holding `coverage`:
//! file → `{"lines": [hits|null, ...], "branches": {...}}` (or, before
//! SimpleCov 0.18, file → the lines array itself). Entries are merged.
//! `null` lines are not coverable. The `coverage.json` of SimpleCov's JSON
//! formatter (one object with `coverage` at the top) is accepted too.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ReportError;
use crate::cucumber::json_kind;
use crate::model::{CoverageReport, FileCoverage};

#[derive(Default)]
struct FileHits {
    /// Per line: `None` not coverable, `Some(hits)`.
    lines: Vec<Option<u64>>,
    /// Per branch (condition key + branch key): hits.
    branches: BTreeMap<(String, String), u64>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<CoverageReport, ReportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: Value = serde_json::from_slice(bytes).map_err(ReportError::json)?;
    let wrong = |found: String| ReportError::WrongFormat {
        format: "SIMPLECOV",
        expected: "an object of command names, each with \"coverage\"",
        found,
    };
    let Value::Object(root) = &value else {
        return Err(wrong(json_kind(&value).to_string()));
    };
    let entries: Vec<&Map<String, Value>> = if root.get("coverage").is_some_and(Value::is_object) {
        vec![root]
    } else {
        root.values().filter_map(Value::as_object).collect()
    };
    let mut files: BTreeMap<&str, FileHits> = BTreeMap::new();
    let mut found_any = false;
    for entry in entries {
        let Some(coverage) = entry.get("coverage").and_then(Value::as_object) else {
            continue;
        };
        found_any = true;
        for (path, data) in coverage {
            let hits = files.entry(path.as_str()).or_default();
            let (lines, branches) = match data {
                Value::Array(lines) => (Some(lines), None),
                Value::Object(o) => (
                    o.get("lines").and_then(Value::as_array),
                    o.get("branches").and_then(Value::as_object),
                ),
                _ => (None, None),
            };
            for (i, line) in lines.into_iter().flatten().enumerate() {
                if hits.lines.len() <= i {
                    hits.lines.resize(i + 1, None);
                }
                if let Some(n) = line.as_u64() {
                    let slot = hits.lines[i].get_or_insert(0);
                    *slot = slot.saturating_add(n);
                }
            }
            for (condition, branches) in branches.into_iter().flatten() {
                for (branch, n) in branches.as_object().into_iter().flatten() {
                    let slot = hits
                        .branches
                        .entry((condition.clone(), branch.clone()))
                        .or_default();
                    *slot = slot.saturating_add(n.as_u64().unwrap_or(0));
                }
            }
        }
    }
    if !found_any {
        return Err(wrong("no entry with a \"coverage\" object".to_string()));
    }
    let files = files
        .into_iter()
        .map(|(path, hits)| {
            let covered = hits
                .lines
                .iter()
                .filter(|l| matches!(l, Some(n) if *n > 0))
                .count();
            let relevant = hits.lines.iter().filter(|l| l.is_some()).count();
            let bc = hits.branches.values().filter(|n| **n > 0).count() as u64;
            let bt = hits.branches.len() as u64;
            FileCoverage {
                path: path.to_string(),
                lines_covered: covered as u64,
                lines_missed: (relevant - covered) as u64,
                branches_covered: (bt > 0).then_some(bc),
                branches_missed: (bt > 0).then_some(bt - bc),
            }
        })
        .collect();
    Ok(CoverageReport::from_files(files))
}
