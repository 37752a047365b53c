//! The EventBridge pattern cases in `shared/conformance/eventbridge/`, written
//! and checked against AWS by LocalStack's authors, run as one test.
//!
//! File names say what is expected: no suffix, the pattern matches the event;
//! `_NEG`, it does not; `_EXC`, the pattern is invalid. Each case is also run
//! through a one-rule [`RuleSet`] so the index is held to the same answers.

use std::path::PathBuf;

use gantry_events::{Pattern, RuleSet};
use serde_json::Value;

/// Cases that cannot pass, by file name, with the reason. Empty: all pass.
const SKIPPED: &[(&str, &str)] = &[];

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/eventbridge"
    ))
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Expect {
    Match,
    NoMatch,
    Invalid,
}

fn expectation(stem: &str) -> Expect {
    if stem.ends_with("_EXC") {
        Expect::Invalid
    } else if stem.ends_with("_NEG") {
        Expect::NoMatch
    } else {
        Expect::Match
    }
}

/// What our engine says: Invalid, or Match/NoMatch (both ways must agree).
fn run(pattern: &Value, event: &Value) -> Result<Expect, String> {
    let compiled = match Pattern::from_value(pattern) {
        Ok(p) => p,
        Err(_) => return Ok(Expect::Invalid),
    };
    let single = compiled.matches(event);
    let mut rules = RuleSet::builder();
    rules.add((), &compiled);
    let indexed = !rules.build().matches(event).is_empty();
    if single != indexed {
        return Err(format!("pattern says {single}, index says {indexed}"));
    }
    Ok(if single {
        Expect::Match
    } else {
        Expect::NoMatch
    })
}

#[test]
fn eventbridge_conformance() {
    let dir = dir();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json5"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 150,
        "expected the 155 .json5 cases, found {}",
        entries.len()
    );

    let mut passed = 0;
    let mut skipped = 0;
    let mut failures = Vec::new();
    for path in &entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if SKIPPED.iter().any(|(name, _)| *name == stem) {
            skipped += 1;
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let case: Value =
            json5::from_str(&text).unwrap_or_else(|e| panic!("{stem}: not JSON5: {e}"));
        let want = expectation(&stem);
        match run(&case["EventPattern"], &case["Event"]) {
            Ok(got) if got == want => passed += 1,
            Ok(got) => failures.push(format!("{stem}: expected {want:?}, got {got:?}")),
            Err(e) => failures.push(format!("{stem}: {e}")),
        }
    }

    // The pair kept apart because the pattern repeats a key: the last
    // occurrence wins (anything-but "us-east"), so the event matches.
    let pattern_text = std::fs::read_to_string(dir.join("complex_multi_key_event_pattern.json"))
        .expect("multi-key pattern");
    let event_text =
        std::fs::read_to_string(dir.join("complex_multi_key_event.json")).expect("multi-key event");
    let event: Value = serde_json::from_str(&event_text).expect("event JSON");
    let pattern = Pattern::parse(&pattern_text).expect("multi-key pattern compiles");
    if pattern.matches(&event) {
        passed += 1;
    } else {
        failures.push("complex_multi_key_event: expected Match (last key wins)".into());
    }

    let total = entries.len() + 1;
    println!(
        "eventbridge conformance: {passed} passed, {} failed, {skipped} skipped of {total}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}
