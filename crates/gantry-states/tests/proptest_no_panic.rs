//! Random definitions and inputs never make the parser or the interpreter panic.

use gantry_states::{TaskError, run_local};
use proptest::prelude::*;
use serde_json::{Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        prop_oneof![
            Just("$".to_string()),
            Just("$.a".to_string()),
            Just("$..a".to_string()),
            Just("States.Array($.a, 1)".to_string()),
            Just("A".to_string()),
            Just("B".to_string()),
            "[a-zA-Z$.\\[\\]0-9']{0,8}"
        ]
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("a".to_string()),
                    Just("x.$".to_string()),
                    Just("Next".to_string()),
                    Just("End".to_string())
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn state() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        Just("Pass"),
        Just("Task"),
        Just("Choice"),
        Just("Wait"),
        Just("Succeed"),
        Just("Fail"),
        Just("Map"),
        Just("Parallel")
    ];
    (ty, prop_oneof![Just("A"), Just("B")], any::<bool>(), json_value(), prop_oneof![Just(json!("$.a")), Just(json!("$")), Just(Value::Null), Just(json!("$.b.c"))]).prop_map(|(ty, next, end, params, path)| {
        let mut s = json!({"Type": ty, "ResultPath": path, "InputPath": "$"});
        if end { s["End"] = json!(true) } else { s["Next"] = json!(next) }
        match ty {
            "Task" => {
                s["Resource"] = json!("r");
                s["Parameters"] = params;
                s["Retry"] = json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]);
            }
            "Pass" => s["Parameters"] = params,
            "Choice" => {
                s = json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": next}, {"Not": {"Variable": "$.b", "IsPresent": true}, "Next": "A"}], "Default": "B"});
            }
            "Wait" => s["Seconds"] = json!(1),
            "Map" => s["ItemProcessor"] = json!({"StartAt": "X", "States": {"X": {"Type": "Pass", "End": true}}}),
            "Parallel" => s["Branches"] = json!([{"StartAt": "X", "States": {"X": {"Type": "Task", "Resource": "r", "End": true}}}]),
            _ => {}
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn never_panics(a in state(), b in state(), input in json_value(), fail_tasks in any::<bool>()) {
        let def = json!({"StartAt": "A", "States": {"A": a, "B": b}});
        let mut calls = 0;
        let _ = run_local(&def, input, |_, i| {
            calls += 1;
            // Bound loops through Task states.
            if fail_tasks || calls > 50 { Err(TaskError::new("E", "x")) } else { Ok(i.clone()) }
        });
    }

    #[test]
    fn arbitrary_json_definitions_never_panic(def in json_value(), input in json_value()) {
        let _ = run_local(&def, input, |_, i| Ok(i.clone()));
    }

    #[test]
    fn intrinsic_parser_never_panics(s in "States\\.[A-Za-z]{0,12}\\([ -~]{0,30}") {
        let _ = gantry_states::intrinsics::parse(&s);
    }
}
