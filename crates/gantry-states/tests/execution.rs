//! Scenario tests for the execution core: data flow, Parallel/Map, Retry/Catch, waits,
//! timeouts, replay, and validation messages.

use gantry_states::{
    Action, Event, Execution, ExecutionInfo, Outcome, TaskError, parse_definition, run_local,
};
use serde_json::{Value, json};
use std::sync::Arc;

fn ok(def: Value, input: Value, h: impl FnMut(&str, &Value) -> Result<Value, TaskError>) -> Value {
    match run_local(&def, input, h).expect("valid").outcome {
        Outcome::Succeeded { output } => output,
        other => panic!("expected success, got {other:?}"),
    }
}

#[test]
fn io_chain() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "r",
        "InputPath": "$.in",
        "Parameters": {"x.$": "$.a", "lit": 1, "ctx.$": "$$.State.Name", "tok.$": "$$.Task.Token"},
        "ResultSelector": {"y.$": "$.out"},
        "ResultPath": "$.res",
        "OutputPath": "$.res",
        "End": true}}});
    let out = ok(def, json!({"in": {"a": 5}}), |_, input| {
        assert_eq!(input["x"], 5);
        assert_eq!(input["ctx"], "T");
        assert!(input["tok"].is_string());
        Ok(json!({"out": 9}))
    });
    assert_eq!(out, json!({"y": 9}));
}

#[test]
fn result_path_null_and_catch() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "ResultPath": null,
              "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.err", "Next": "C"}], "Next": "P"},
        "P": {"Type": "Pass", "End": true},
        "C": {"Type": "Pass", "End": true}}});
    let out = ok(def.clone(), json!({"k": 1}), |_, _| Ok(json!("ignored")));
    assert_eq!(out, json!({"k": 1}));
    let out = ok(def, json!({"k": 1}), |_, _| {
        Err(TaskError::new("Boom", "bad"))
    });
    assert_eq!(
        out,
        json!({"k": 1, "err": {"Error": "Boom", "Cause": "bad"}})
    );
}

#[test]
fn retry_counts_and_runtime_is_not_caught() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r",
              "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 1, "BackoffRate": 2}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true},
        "C": {"Type": "Pass", "Result": "caught", "End": true}}});
    let mut calls = 0;
    let out = ok(def.clone(), json!({}), |_, _| {
        calls += 1;
        Err(TaskError::new("E", ""))
    });
    assert_eq!(calls, 3);
    assert_eq!(out, json!("caught"));
    let run = run_local(&def, json!({}), |_, _| {
        Err(TaskError::new("States.Runtime", "x"))
    })
    .unwrap();
    assert!(matches!(run.outcome, Outcome::Failed(ref f) if f.error == "States.Runtime"));
}

#[test]
fn parallel_and_map() {
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "double", "End": true}}}
        ], "ResultPath": "$.par", "Next": "M"},
        "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
              "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
              "ItemProcessor": {"StartAt": "D", "States": {"D": {"Type": "Task", "Resource": "double", "End": true}}},
              "ResultPath": "$.map", "End": true}}});
    let out = ok(def, json!({"items": [1, 2, 3], "v": 10}), |_, input| {
        Ok(json!(input["v"].as_i64().unwrap_or(0) * 2))
    });
    assert_eq!(out["par"], json!([1, 20]));
    assert_eq!(out["map"], json!([2, 4, 6]));
}

#[test]
fn map_failure_fails_the_state() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "ItemBad", "Cause": "c"}}}, "End": true}}});
    let run = run_local(&def, json!([1, 2]), |_, _| Ok(json!(null))).unwrap();
    assert!(matches!(run.outcome, Outcome::Failed(ref f) if f.error == "ItemBad"));
}

#[test]
fn wait_and_no_choice_matched() {
    let def = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 30, "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericGreaterThan": 1, "Next": "W"}]}}});
    let run = run_local(&def, json!({"x": 0}), |_, _| Ok(json!(null))).unwrap();
    assert!(matches!(run.outcome, Outcome::Failed(ref f) if f.error == "States.NoChoiceMatched"));
    let kinds: Vec<&str> = run
        .execution
        .history()
        .iter()
        .map(|h| h.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "WaitStateEntered",
            "WaitStateExited",
            "ChoiceStateEntered",
            "ExecutionFailed"
        ]
    );
}

#[test]
fn task_timeout_and_heartbeat() {
    let def = parse_definition(&json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "TimeoutSeconds": 10, "HeartbeatSeconds": 3, "End": true}}})).unwrap();
    let mut e = Execution::new(Arc::new(def));
    let acts = e.step(Event::Started {
        input: json!({}),
        info: ExecutionInfo::default(),
        seed: 1,
        at: 0,
    });
    let token = acts
        .iter()
        .find_map(|a| {
            if let Action::ScheduleTask { token, .. } = a {
                Some(token.clone())
            } else {
                None
            }
        })
        .unwrap();
    let hb = acts
        .iter()
        .find_map(|a| {
            if let Action::StartTimer { id, at: 3000 } = a {
                Some(id.clone())
            } else {
                None
            }
        })
        .unwrap();
    let acts = e.step(Event::TaskHeartbeat {
        token: token.clone(),
        at: 2000,
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::StartTimer { at: 5000, .. }))
    );
    assert!(
        e.step(Event::TimerFired { id: hb, at: 3000 }).is_empty(),
        "the old heartbeat timer was replaced"
    );
    let timeout = e
        .pending()
        .find(|p| p.starts_with("timer") && !e.history().is_empty())
        .map(String::from);
    let _ = timeout;
    let hb2 = e
        .pending()
        .filter(|p| p.starts_with("timer"))
        .map(String::from)
        .collect::<Vec<_>>();
    let mut last = Vec::new();
    for id in hb2 {
        last = e.step(Event::TimerFired { id, at: 5000 });
        if !last.is_empty() {
            break;
        }
    }
    assert!(last.iter().any(|a| matches!(a, Action::Complete(Outcome::Failed(f)) if f.error == "States.HeartbeatTimeout" || f.error == "States.Timeout")));
}

#[test]
fn replay_rebuilds_the_same_execution() {
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"id.$": "States.UUID()", "r.$": "States.MathRandom(0, 1000)"}, "Next": "T"},
        "T": {"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL"}], "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 5, "End": true}}});
    let mut n = 0;
    let run = run_local(&def, json!({}), |_, i| {
        n += 1;
        if n < 3 {
            Err(TaskError::new("E", ""))
        } else {
            Ok(i.clone())
        }
    })
    .unwrap();
    let sm = Arc::new(parse_definition(&def).unwrap());
    let (replayed, _) = Execution::replay(sm, &run.journal);
    assert_eq!(replayed.outcome(), Some(&run.outcome));
    assert_eq!(replayed.history(), run.execution.history());
}

#[test]
fn execution_timeout() {
    let def = json!({"StartAt": "W", "TimeoutSeconds": 5, "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let run = run_local(&def, json!({}), |_, _| Ok(json!(null))).unwrap();
    assert_eq!(run.outcome.status(), "TIMED_OUT");
}

#[test]
fn assign_variables() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"x": 1, "y.$": "$.v"}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"x.$": "$x", "y.$": "$y"}, "End": true}}});
    assert_eq!(
        ok(def, json!({"v": "hi"}), |_, _| Ok(json!(null))),
        json!({"x": 1, "y": "hi"})
    );
}

fn errors_of(def: Value) -> Vec<String> {
    parse_definition(&def)
        .err()
        .map(|e| e.0.iter().map(|d| d.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn validation_messages() {
    let e = errors_of(
        json!({"StartAt": "Build", "States": {"Build": {"Type": "Task", "Resource": "r", "Next": "Deploy"}}}),
    );
    assert_eq!(e, [r#"States.Build.Next: state "Deploy" does not exist"#]);
    let e = errors_of(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Pass", "End": true}}}),
    );
    assert_eq!(e, ["States.B: state is not reachable from StartAt"]);
    let e = errors_of(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Resource": "x", "End": true}}}),
    );
    assert_eq!(
        e,
        ["States.A.Resource: field is not allowed in a Pass state"]
    );
    let e = errors_of(
        json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"And": [{"Variable": "$.a", "IsNull": true, "Next": "A"}], "Next": "A"}]}}}),
    );
    assert_eq!(
        e,
        ["States.A.Choices[0].And[0].Next: nested choice rules cannot have Next"]
    );
    let e = errors_of(
        json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}}}),
    );
    assert_eq!(
        e,
        ["States.A.Retry[0].ErrorEquals: a retrier with States.ALL must be the last one"]
    );
    let e = errors_of(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Outside"}}}]}, "Outside": {"Type": "Pass", "End": true}}}),
    );
    assert!(
        e.contains(
            &r#"States.P.Branches[0].States.X.Next: state "Outside" does not exist"#.to_string()
        ),
        "{e:?}"
    );
    let e = errors_of(
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}}}),
    );
    assert!(!e.is_empty());
    let e = errors_of(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "ResultPath": "$..x", "End": true}}}),
    );
    assert_eq!(
        e,
        ["States.A.ResultPath: '$..x' is not a valid reference path"]
    );
}

fn started(seed: u64) -> Event {
    Event::Started {
        input: json!({}),
        info: ExecutionInfo::default(),
        seed,
        at: 0,
    }
}

fn scheduled_token(actions: &[Action]) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::ScheduleTask { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("a task is scheduled")
}

#[test]
fn task_tokens_depend_on_the_host_key_and_replay_with_it() {
    let def = Arc::new(
        parse_definition(&json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "r", "End": true}}}))
        .expect("valid"),
    );
    let plain = scheduled_token(&Execution::new(def.clone()).step(started(7)));
    let mut keyed_exec = Execution::new(def.clone()).with_task_token_key([1; 32]);
    let keyed = scheduled_token(&keyed_exec.step(started(7)));
    let other = scheduled_token(
        &Execution::new(def.clone())
            .with_task_token_key([2; 32])
            .step(started(7)),
    );
    assert_ne!(plain, keyed);
    assert_ne!(keyed, other, "another key gives another token");
    assert!(keyed.len() > 64, "{keyed}");
    // Replaying the journal with the same key reproduces the token, so a callback
    // sent before a restart still matches after it.
    let mut again = Execution::new(def).with_task_token_key([1; 32]);
    let token = scheduled_token(&again.step(started(7)));
    assert_eq!(token, keyed);
    again.step(Event::TaskSucceeded {
        token,
        output: json!(1),
        at: 1,
    });
    assert!(matches!(again.outcome(), Some(Outcome::Succeeded { .. })));
}

#[test]
fn task_history_names_the_resource_and_fail_states_enter_once() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}], "End": true},
        "F": {"Type": "Fail", "Error": "E", "Cause": "c"}}});
    let run = run_local(&def, json!({}), |_, _| Err(TaskError::new("Boom", "x"))).expect("valid");
    let h = run.execution.history();
    let failed = h
        .iter()
        .find(|e| e.kind == "TaskFailed")
        .expect("TaskFailed");
    assert_eq!(failed.details["resource"], "arn:aws:states:::http:invoke");
    assert_eq!(
        h.iter().filter(|e| e.kind == "FailStateEntered").count(),
        1,
        "{h:#?}"
    );
}

#[test]
fn standard_executions_stop_at_25000_history_events_and_express_ones_do_not() {
    // 7,000 turns of a two-state loop: about 28,000 history events.
    let def = json!({"StartAt": "Step", "States": {
        "Step": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "More?"},
        "More?": {"Type": "Choice", "Choices": [{"Variable": "$.i", "NumericLessThan": 7000, "Next": "Step"}],
                  "Default": "Done"},
        "Done": {"Type": "Succeed"}}});
    let machine = Arc::new(parse_definition(&def).expect("valid"));
    let run = |exec: Execution| {
        gantry_states::run_execution(
            exec,
            json!({"i": 0}),
            &gantry_states::FixedClock(0),
            &mut gantry_states::SeededRandom(1),
            |_, _| Ok(json!(null)),
        )
    };
    let standard = run(Execution::new(machine.clone()));
    match &standard.outcome {
        Outcome::Failed(f) => {
            assert_eq!(f.error, "States.Runtime");
            assert!(f.cause.contains("25000 history events"), "{}", f.cause);
        }
        other => panic!("expected the history limit, got {other:?}"),
    }
    assert!(
        standard.execution.history().len() < 25_100,
        "stopped at the limit"
    );
    let express = run(Execution::new(machine).without_history_limit());
    assert_eq!(
        express.outcome,
        Outcome::Succeeded {
            output: json!({"i": 7000})
        }
    );
    assert!(express.execution.history().len() > 25_000);
}
