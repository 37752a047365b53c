//! [`Pattern`]: one event pattern, validated and compiled once.

use std::str::FromStr;

use serde_json::Value;

use crate::error::{PatternError, PatternReason};
use crate::eval;
use crate::flatten::FlatEvent;
use crate::parse::{self, Branch};

/// The longest pattern text [`Pattern::parse`] accepts, PutRule's limit.
pub const MAX_PATTERN_LEN: usize = 4096;

/// A compiled EventBridge event pattern.
///
/// Compiling validates the pattern (with EventBridge's reasons) and expands
/// `$or` into branches of conditions on dotted field paths; matching never
/// looks at the pattern's JSON again. To match one event against many
/// patterns, put them in a [`RuleSet`](crate::RuleSet).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    branches: Vec<Branch>,
}

impl Pattern {
    /// Parses and compiles pattern text (JSON, at most [`MAX_PATTERN_LEN`] characters).
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let chars = text.chars().count();
        if chars > MAX_PATTERN_LEN {
            return Err(PatternError::one(
                "$",
                PatternReason::TooLong {
                    max: MAX_PATTERN_LEN,
                },
            ));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| PatternError::one("$", PatternReason::NotJson(e.to_string())))?;
        Pattern::from_value(&value)
    }

    /// Compiles an already-parsed pattern (no length limit applies).
    pub fn from_value(pattern: &Value) -> Result<Pattern, PatternError> {
        parse::parse(pattern).map(|branches| Pattern { branches })
    }

    /// Whether the event matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.matches_flat(&FlatEvent::new(event))
    }

    /// Whether an already flattened event matches.
    pub fn matches_flat(&self, event: &FlatEvent<'_>) -> bool {
        let leaves = event.leaves();
        let mut candidates: Vec<Vec<u32>> = Vec::new();
        self.branches.iter().any(|branch| {
            candidates.clear();
            for condition in &branch.conditions {
                let range = event.range(&condition.path);
                let accepted = range
                    .filter(|&i| eval::accepts(condition, &leaves[i].value))
                    .map(|i| i as u32)
                    .collect();
                candidates.push(accepted);
            }
            eval::satisfied(branch, event, |i| {
                candidates.get(i).map(Vec::as_slice).unwrap_or(&[])
            })
        })
    }

    pub(crate) fn branches(&self) -> &[Branch] {
        &self.branches
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Pattern, PatternError> {
        Pattern::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: Value, event: Value) -> bool {
        Pattern::from_value(&pattern)
            .expect("valid pattern")
            .matches(&event)
    }

    #[test]
    fn array_elements_are_not_mixed() {
        let p = json!({"people": {"first": ["Anna"], "last": ["Smith"]}});
        let ok = json!({"people": [{"first": "Anna", "last": "Smith"}]});
        let mixed = json!({"people": [{"first": "Anna", "last": "Jones"}, {"first": "Bob", "last": "Smith"}]});
        assert!(m(p.clone(), ok));
        assert!(!m(p, mixed));
    }

    #[test]
    fn exists_false_on_intermediate_object() {
        assert!(m(json!({"a": [{"exists": false}]}), json!({"a": {"b": 1}})));
        assert!(!m(json!({"a": [{"exists": true}]}), json!({"a": {"b": 1}})));
        assert!(m(json!({"a": [{"exists": true}]}), json!({"a": null})));
    }

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(m(json!({}), json!({"a": 1})));
        assert!(m(json!({"detail": {}}), json!({})));
    }

    #[test]
    fn numbers_match_by_value() {
        assert!(m(json!({"n": [300]}), json!({"n": 300.0})));
        assert!(m(json!({"n": [300]}), json!({"n": 3.0e2})));
        assert!(!m(json!({"n": [300]}), json!({"n": "300"})));
    }

    #[test]
    fn too_long() {
        let text = format!("{{\"a\": [\"{}\"]}}", "x".repeat(MAX_PATTERN_LEN));
        assert!(Pattern::parse(&text).is_err());
    }
}
