//! Step Functions state machines in JSONata mode, using real JSONata features:
//! `$map`, lambdas, `~>`, group-by, predicates, conditionals, AWS's extra functions.

use gantry_states::{Execution, Outcome, TaskError, parse_definition, run_local};
use serde_json::{Value, json};
use std::sync::Arc;

fn run(
    def: Value,
    input: Value,
    h: impl FnMut(&str, &Value) -> Result<Value, TaskError>,
) -> Outcome {
    run_local(&def, input, h).expect("valid definition").outcome
}

fn ok(def: Value, input: Value, h: impl FnMut(&str, &Value) -> Result<Value, TaskError>) -> Value {
    match run(def, input, h) {
        Outcome::Succeeded { output } => output,
        other => panic!("expected success, got {other:?}"),
    }
}

fn services() -> Value {
    json!({"services": [
        {"name": "api", "team": "core", "replicas": 3, "enabled": true},
        {"name": "web", "team": "front", "replicas": 2, "enabled": true},
        {"name": "batch", "team": "core", "replicas": 1, "enabled": false}
    ]})
}

#[test]
fn deploy_pipeline_with_assign_map_choice_and_group_by() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass",
            "Assign": {
                "names": "{% $states.input.services[enabled].name %}",
                "byTeam": "{% $states.input.services{team: $count(name)} %}",
                "total": "{% $sum($states.input.services[enabled].replicas) %}"
            },
            "Output": "{% $states.input.services[enabled] ~> $map(function($s) { {'name': $s.name, 'replicas': $s.replicas} }) %}",
            "Next": "Deploy"},
        "Deploy": {"Type": "Map",
            "Items": "{% $states.input %}",
            "ItemProcessor": {"StartAt": "One", "States": {"One": {
                "Type": "Task", "Resource": "deploy",
                "Arguments": {
                    "svc": "{% $uppercase($states.input.name) %}",
                    "pods": "{% $states.input.replicas * 2 %}",
                    "tag": "{% 'v' & $formatNumber($states.input.replicas, '000') %}",
                    "peers": "{% $filter($names, function($n) { $n != $states.input.name }) %}"
                },
                "Output": "{% $states.result.ok ? $states.input.name & '@' & $states.result.at : $error('deploy failed') %}",
                "End": true}}},
            "Assign": {"deployed": "{% $states.result %}"},
            "Next": "Check"},
        "Check": {"Type": "Choice",
            "Choices": [{"Condition": "{% $count($deployed) = $count($names) and $total > 3 %}", "Next": "Done"}],
            "Default": "Failed"},
        "Done": {"Type": "Pass",
            "Output": {
                "deployed": "{% $sort($deployed, function($a, $b) { $a > $b }) %}",
                "teams": "{% $byTeam %}",
                "summary": "{% $join($names ~> $map($uppercase), ', ') %}"
            },
            "End": true},
        "Failed": {"Type": "Fail", "Error": "NotAll"}
    }});
    let mut seen = Vec::new();
    let out = ok(def, services(), |res, input| {
        assert_eq!(res, "deploy");
        seen.push(input.clone());
        Ok(json!({"ok": true, "at": input["pods"]}))
    });
    assert_eq!(
        out,
        json!({"deployed": ["api@6", "web@4"], "teams": {"core": 2, "front": 1}, "summary": "API, WEB"})
    );
    assert_eq!(
        seen[0],
        json!({"svc": "API", "pods": 6, "tag": "v003", "peers": "web"})
    );
}

#[test]
fn jsonata_errors_are_query_evaluation_errors_and_can_be_caught() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r",
              "Arguments": {"n": "{% $number($states.input.n) %}"},
              "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Caught",
                         "Output": "{% $states.errorOutput %}"}],
              "End": true},
        "Caught": {"Type": "Pass", "End": true}}});
    let out = ok(
        def.clone(),
        json!({"n": "12"}),
        |_, input| Ok(input.clone()),
    );
    assert_eq!(out, json!({"n": 12}));
    let out = ok(def, json!({"n": "twelve"}), |_, _| panic!("not called"));
    assert_eq!(out["Error"], "States.QueryEvaluationError");
    let cause = out["Cause"].as_str().expect("a cause");
    assert!(
        cause.contains("The JSONata expression '$number($states.input.n)' specified for the field 'Arguments/n' threw an error during evaluation. D3030: Unable to cast value to a number"),
        "{cause}"
    );
}

fn fails_with(expr: &str, needle: &str) {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": format!("{{% {expr} %}}"), "End": true}}});
    match run(def, json!({}), |_, _| unreachable!()) {
        Outcome::Failed(gantry_states::Failure { error, cause }) => {
            assert_eq!(error, "States.QueryEvaluationError", "{expr}");
            assert!(cause.contains(needle), "{expr}: {cause}");
        }
        other => panic!("{expr}: expected failure, got {other:?}"),
    }
}

#[test]
fn errors_name_the_problem() {
    fails_with("$nope", "The variable '$nope' is not defined");
    fails_with(
        "$randomSeeded(1)",
        "The JSONata expression '$randomSeeded(1)' specified for the field 'Output' threw an error during evaluation. T1006: Attempted to invoke a non-function",
    );
    fails_with("$eval('1')", "T1006: Attempted to invoke a non-function");
    fails_with(
        "$randomSeeded(1)",
        "T1006: Attempted to invoke a non-function",
    );
    // A syntax error never gets this far: the definition is refused
    // (definitions_with_jsonata_that_does_not_parse_are_refused_with_its_location).
    fails_with("($f := function($n) { 1 + $f($n + 1) }; $f(0))", "U1001");
    fails_with("($f := function($n) { $f($n + 1) }; $f(0))", "U1002");
    fails_with("$error('stop here')", "D3137: stop here");
    fails_with("$partition([1], 0)", "chunk size must be positive");
    fails_with("$hash('x', 'SHA-3')", "D3137");
    // Results must stay shallow enough to be written to the journal and read back.
    fails_with(
        "$reduce([1..200], function($a, $v) { [[$a]] }, [])",
        "U1003: A value nests more than 100 levels deep",
    );
    fails_with(
        "$reduce([1..200], function($a, $v) { $zip($a) }, [1])",
        "U1003",
    );
}

#[test]
fn step_functions_extra_functions() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": {
            "parts": "{% $partition([1, 2, 3, 4, 5], 2) %}",
            "range": "{% $range(0, 10, 5) %}",
            "one": "{% $range(1, 9, 9) %}",
            "parsed": "{% $parse('{\"a\": [1, -0]}') %}",
            "sha": "{% $hash('hello', 'SHA-256') %}",
            "md5": "{% $hash('hello', 'MD5') %}",
            "seeded": "{% $random(7) = $random(7) %}",
            "seededDiffers": "{% $random(7) != $random(8) %}",
            "unseeded": "{% $random() >= 0 and $random() < 1 %}",
            "uuid": "{% $uuid() %}",
            "now": "{% $now() %}",
            "millis": "{% $millis() = $toMillis($now()) %}"
        }, "End": true}}});
    let out = ok(def, json!({}), |_, _| unreachable!());
    assert_eq!(out["parts"], json!([[1, 2], [3, 4], [5]]));
    assert_eq!(out["range"], json!([0, 5, 10]));
    assert_eq!(out["one"], json!(1));
    assert_eq!(out["parsed"], json!({"a": [1, 0]}));
    assert_eq!(
        out["sha"],
        json!("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    );
    assert_eq!(out["md5"], json!("5d41402abc4b2a76b9719d911017c592"));
    assert_eq!(out["seeded"], json!(true));
    assert_eq!(out["seededDiffers"], json!(true));
    assert_eq!(out["unseeded"], json!(true));
    let uuid = out["uuid"].as_str().expect("uuid string");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4");
    // run_local's fixed clock: 2024-01-01T00:00:00Z.
    assert_eq!(out["now"], json!("2024-01-01T00:00:00.000Z"));
    assert_eq!(out["millis"], json!(true));
}

#[test]
fn random_values_are_the_same_on_every_run_of_the_same_journal() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": {"r": "{% $random() %}", "u": "{% $uuid() %}",
                                          "s": "{% $shuffle([1..10]) %}"}, "End": true}}});
    let a = ok(def.clone(), json!({}), |_, _| unreachable!());
    let b = ok(def, json!({}), |_, _| unreachable!());
    assert_eq!(a, b);
}

#[test]
fn replaying_the_journal_rebuilds_jsonata_random_and_time_values() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass",
              "Assign": {"id": "{% $uuid() %}", "r": "{% $random() %}"},
              "Next": "T"},
        "T": {"Type": "Task", "Resource": "r",
              "Arguments": {"id": "{% $id %}", "at": "{% $now() %}", "pick": "{% $shuffle([1..5]) %}"},
              "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 5, "Next": "D"},
        "D": {"Type": "Pass", "Output": "{% {'id': $id, 'r': $r, 'task': $states.input, 'later': $millis()} %}", "End": true}}});
    let run = run_local(&def, json!({}), |_, input| Ok(input.clone())).expect("valid");
    let Outcome::Succeeded { output } = &run.outcome else {
        panic!("expected success, got {:?}", run.outcome);
    };
    // The Wait moved the virtual clock by 5 s.
    assert_eq!(output["later"], json!(1_704_067_205_000i64));
    assert_eq!(output["task"]["at"], json!("2024-01-01T00:00:00.000Z"));
    assert_eq!(output["id"], output["task"]["id"]);
    let sm = Arc::new(parse_definition(&def).expect("valid"));
    let (replayed, _) = Execution::replay(sm, &run.journal);
    assert_eq!(replayed.outcome(), Some(&run.outcome));
    assert_eq!(replayed.history(), run.execution.history());
}

#[test]
fn uuids_differ_between_states_and_map_iterations() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"a": "{% $uuid() %}"}, "Next": "B"},
        "B": {"Type": "Pass", "Assign": {"b": "{% $uuid() %}"}, "Next": "M"},
        "M": {"Type": "Map", "Items": "{% [1, 2, 3] %}",
              "ItemProcessor": {"StartAt": "I", "States": {
                  "I": {"Type": "Pass", "Output": "{% $uuid() %}", "End": true}}},
              "Output": "{% $append([$a, $b], $states.result) %}",
              "End": true}}});
    let out = ok(def, json!({}), |_, _| unreachable!());
    let ids: Vec<&str> = out
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), 5, "{out}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{out}");
}

#[test]
fn assign_swaps_with_state_entry_values_and_conditions_use_jsonata() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"x": 1, "y": 2, "log": []}, "Next": "Swap"},
        "Swap": {"Type": "Pass",
                 "Assign": {"x": "{% $y %}", "y": "{% $x %}", "log": "{% $append($log, $x & '<->' & $y) %}"},
                 "Next": "Loop"},
        "Loop": {"Type": "Choice",
                 "Choices": [{"Condition": "{% $count($log) < 3 %}", "Next": "Swap",
                              "Assign": {"rounds": "{% $count($log) %}"}}],
                 "Default": "End"},
        "End": {"Type": "Pass",
                "Output": "{% {'x': $x, 'y': $y, 'log': $log, 'rounds': $rounds} %}", "End": true}}});
    let out = ok(def, json!({}), |_, _| unreachable!());
    assert_eq!(
        out,
        json!({"x": 2, "y": 1, "log": ["1<->2", "2<->1", "1<->2"], "rounds": 2})
    );
}

#[test]
fn wait_seconds_and_fail_fields_take_expressions() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": "{% $max($states.input.delays) %}", "Next": "F"},
        "F": {"Type": "Fail",
              "Error": "{% 'Err.' & $states.input.kind %}",
              "Cause": "{% $string($count($states.input.delays)) & ' delays' %}"}}});
    match run(
        def,
        json!({"delays": [1, 5, 2], "kind": "Timeout"}),
        |_, _| unreachable!(),
    ) {
        Outcome::Failed(gantry_states::Failure { error, cause }) => {
            assert_eq!(error, "Err.Timeout");
            assert_eq!(cause, "3 delays");
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn errors_name_the_nested_field() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": {"ok": 1, "list": [0, {"FunctionResult": "{% $randomSeeded(1) %}"}]}, "End": true}}});
    match run(def, json!({}), |_, _| unreachable!()) {
        Outcome::Failed(gantry_states::Failure { error, cause }) => {
            assert_eq!(error, "States.QueryEvaluationError");
            assert_eq!(
                cause,
                "The JSONata expression '$randomSeeded(1)' specified for the field 'Output/list/1/FunctionResult' threw an error during evaluation. T1006: Attempted to invoke a non-function"
            );
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn map_item_selector_sees_the_item_and_its_index() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {
        "M": {"Type": "Map",
              "Items": "{% $states.input.words[$length($) > 1] %}",
              "ItemSelector": {
                  "word": "{% $uppercase($states.context.Map.Item.Value) %}",
                  "n": "{% $states.context.Map.Item.Index + 1 %}"
              },
              "ItemProcessor": {"StartAt": "P", "States": {
                  "P": {"Type": "Pass", "Output": "{% $states.input.n & '. ' & $states.input.word %}", "End": true}}},
              "Output": "{% $join($states.result, '; ') %}",
              "End": true}}});
    let out = ok(
        def,
        json!({"words": ["ab", "c", "de"]}),
        |_, _| unreachable!(),
    );
    assert_eq!(out, json!("1. AB; 2. DE"));
}

#[test]
fn map_item_selector_can_be_one_expression() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {
        "M": {"Type": "Map",
              "Items": "{% [3, 4] %}",
              "ItemSelector": "{% {'v': $states.context.Map.Item.Value * 10, 'outer': $states.input.k} %}",
              "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
              "End": true}}});
    let out = ok(def, json!({"k": "x"}), |_, _| unreachable!());
    assert_eq!(
        out,
        json!([{"v": 30, "outer": "x"}, {"v": 40, "outer": "x"}])
    );
}

#[test]
fn definitions_with_jsonata_that_does_not_parse_are_refused_with_its_location() {
    let def = json!({
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass",
                "Output": {"ok": "{% $states.input.a %}", "list": ["x", "{% $sum([1, 2 %}"]},
                "Next": "M"
            },
            "M": {
                "Type": "Map",
                "Items": "{% [1, 2, 3] %}",
                "ItemProcessor": {
                    "StartAt": "Inner",
                    "States": {"Inner": {"Type": "Pass", "Output": "{% $states.input + %}", "End": true}}
                },
                "End": true
            }
        }
    });
    let errors = parse_definition(&def).expect_err("two bad expressions");
    let text = errors.to_string();
    assert!(text.contains("States.P.Output.list[1]"), "{text}");
    assert!(text.contains("invalid JSONata expression"), "{text}");
    assert!(text.contains("Inner.Output"), "{text}");
    // Each once: the Map's nested machine is checked with its own states.
    assert_eq!(
        text.matches("invalid JSONata expression").count(),
        2,
        "{text}"
    );
    // The same machine with the expressions fixed is accepted.
    let mut fixed = def.clone();
    fixed["States"]["P"]["Output"]["list"][1] = json!("{% $sum([1, 2]) %}");
    fixed["States"]["M"]["ItemProcessor"]["States"]["Inner"]["Output"] =
        json!("{% $states.input + 1 %}");
    parse_definition(&fixed).expect("valid once fixed");
}
