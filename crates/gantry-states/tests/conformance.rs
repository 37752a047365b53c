//! Runs the shared Step Functions conformance cases (LocalStack snapshots recorded against
//! AWS) through the interpreter.

use gantry_states::{Outcome, run_local};
use serde_json::Value;

fn dir() -> String {
    format!(
        "{}/../../../shared/conformance/stepfunctions/",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Cases whose expected values depend on placeholder tokens (`"date"`, `<ArnPart_0idx>`)
/// that the snapshots substituted for real timestamps and ARNs.
const PLACEHOLDER_CHOICE: [&str; 8] = [
    "test_timestamp_equals/469",
    "test_timestamp_equals_path/472",
    "test_timestamp_greater_than/477",
    "test_timestamp_greater_than_equals/479",
    "test_timestamp_greater_than_equals/481",
    "test_timestamp_less_than/484",
    "test_timestamp_less_than_equals/487",
    "test_timestamp_less_than_equals/488",
];
const PLACEHOLDER_INTRINSIC: [&str; 3] = [
    "test_generic::test_context_json_path/exec_hist_resp_0",
    "test_generic::test_nested_calls_1/exec_hist_resp_0",
    "test_generic::test_nested_calls_2/exec_hist_resp_0",
];

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}{name}", dir()))
        .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn run(case: &Value) -> Result<Outcome, String> {
    run_local(&case["definition"], case["input"].clone(), |r, _| {
        Err(gantry_states::TaskError::new("NoTasks", r))
    })
    .map(|r| r.outcome)
    .map_err(|e| e.to_string())
}

#[test]
fn choice_cases() {
    let (mut pass, mut skip, mut fails) = (0, 0, Vec::new());
    for case in load("choice_cases.jsonl") {
        let id = case["id"].as_str().unwrap_or_default();
        if PLACEHOLDER_CHOICE.contains(&id) {
            skip += 1;
            continue;
        }
        match run(&case) {
            Ok(Outcome::Succeeded { output }) if output == case["expected_output"] => pass += 1,
            other => fails.push(format!(
                "{id}: got {other:?}, expected {}",
                case["expected_output"]
            )),
        }
    }
    println!(
        "choice conformance: {pass} passed, {} failed, {skip} skipped (placeholder tokens)",
        fails.len()
    );
    assert!(
        fails.is_empty(),
        "{} mismatches:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// The snapshots store non-object outputs as their JSON text.
fn same_output(actual: &Value, expected: &Value) -> bool {
    if actual == expected {
        return true;
    }
    match expected {
        Value::String(s) => serde_json::from_str::<Value>(s).is_ok_and(|v| &v == actual),
        _ => false,
    }
}

#[test]
fn intrinsic_cases() {
    let (mut pass, mut skip, mut fails) = (0, 0, Vec::new());
    for case in load("intrinsic_cases.jsonl") {
        let id = case["id"].as_str().unwrap_or_default();
        if PLACEHOLDER_INTRINSIC.contains(&id) {
            skip += 1;
            continue;
        }
        let exp = &case["expected"];
        let ok = match (run(&case), exp["status"].as_str()) {
            (Ok(Outcome::Succeeded { output }), Some("SUCCEEDED")) => {
                same_output(&output, &exp["output"])
            }
            (Ok(Outcome::Failed(f)), Some("FAILED")) => {
                Some(f.error.as_str()) == exp["error"].as_str()
            }
            _ => false,
        };
        if ok {
            pass += 1;
        } else {
            fails.push(format!("{id}: got {:?}, expected {exp}", run(&case)));
        }
    }
    println!(
        "intrinsic conformance: {pass} passed, {} failed, {skip} skipped (placeholder tokens)",
        fails.len()
    );
    assert!(
        fails.is_empty(),
        "{} mismatches:\n{}",
        fails.len(),
        fails.join("\n")
    );
}
