//! `gantry states run` as a user drives it: definitions, inputs and mock configurations
//! on disk, the real binary, its output and exit codes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A run that does not finish in this long is stuck (e.g. really sleeping in a Wait).
/// A watchdog, not a measurement: nothing asserts how long a run took.
const WATCHDOG: Duration = Duration::from_secs(120);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `gantry ARGS` in `dir`, killing it if it outlives the watchdog.
fn gantry(dir: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gantry starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gantry {args:?} did not finish within {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A temporary directory holding `files`.
fn workspace(files: &[(&str, Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content.to_string()).expect("write");
    }
    dir
}

fn run_in(dir: &tempfile::TempDir, args: &[&str]) -> Run {
    let mut all = vec!["states", "run"];
    all.extend_from_slice(args);
    gantry(dir.path(), &all)
}

/// A single-test-case mock configuration for state machine `M`.
fn mocks(case: Value, responses: Value) -> Value {
    json!({
        "StateMachines": {"M": {"TestCases": {"Case": case}}},
        "MockedResponses": responses
    })
}

const MOCKED: &[&str] = &["--mock-config", "mocks.json", "--test-case", "Case"];

fn with_mocks<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend_from_slice(MOCKED);
    all
}

#[test]
fn happy_path_with_input_prints_the_output_and_exits_0() {
    let definition = json!({"StartAt": "Greet", "States": {
        "Greet": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"name.$": "$.name"},
            "ResultSelector": {"greeting.$": "$.Payload"},
            "ResultPath": "$.result", "Next": "Shape"},
        "Shape": {"Type": "Pass",
            "Parameters": {"msg.$": "States.Format('{} ({})', $.result.greeting, $$.StateMachine.Name)"},
            "End": true}
    }});
    let dir = workspace(&[
        ("sm.asl.json", definition),
        ("input.json", json!({"name": "Ada"})),
        (
            "mocks.json",
            mocks(
                json!({"Greet": "Hello"}),
                json!({"Hello": {"0": {"Return": {"Payload": "hello Ada"}}}}),
            ),
        ),
    ]);
    for input in [r#"{"name": "Ada"}"#, "@input.json"] {
        let run = run_in(&dir, &with_mocks(&["sm.asl.json", "--input", input]));
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.json(), json!({"msg": "hello Ada (M)"}));
        assert_eq!(run.stderr, "");
    }
}

#[test]
fn a_choice_takes_the_branch_the_input_selects() {
    let definition = json!({"StartAt": "Size?", "States": {
        "Size?": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
            {"And": [{"Variable": "$.n", "IsNumeric": true}, {"Variable": "$.n", "NumericLessThanEquals": 10}], "Next": "Small"}
        ], "Default": "Unknown"},
        "Big": {"Type": "Pass", "Result": "big", "End": true},
        "Small": {"Type": "Pass", "Result": "small", "End": true},
        "Unknown": {"Type": "Fail", "Error": "NotANumber", "Cause": "n must be a number"}
    }});
    let dir = workspace(&[("sm.json", definition)]);
    let answer = |input: &str| run_in(&dir, &["sm.json", "--input", input]);
    assert_eq!(answer(r#"{"n": 11}"#).json(), json!("big"));
    assert_eq!(answer(r#"{"n": 10}"#).json(), json!("small"));
    let other = answer(r#"{"n": "ten"}"#);
    assert_eq!(other.code, Some(1));
    assert_eq!(
        other.stderr,
        "execution FAILED\nerror: NotANumber\ncause: n must be a number\n"
    );
}

#[test]
fn retry_then_success_follows_the_invocation_numbers() {
    let definition = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 5,
                       "BackoffRate": 2, "MaxAttempts": 3}],
            "ResultSelector": {"body.$": "$.Payload", "attempt.$": "$$.State.RetryCount"},
            "End": true}
    }});
    let responses = json!({"Flaky": {
        "0": {"Throw": {"Error": "Lambda.TooManyRequestsException", "Cause": "slow down"}},
        "1-2": {"Throw": {"Error": "Lambda.TooManyRequestsException", "Cause": "still busy"}},
        "3": {"Return": {"Payload": "done"}}
    }});
    let dir = workspace(&[
        ("sm.json", definition.clone()),
        (
            "mocks.json",
            mocks(json!({"Call": "Flaky"}), responses.clone()),
        ),
    ]);
    let run = run_in(&dir, &with_mocks(&["sm.json"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.json(), json!({"body": "done", "attempt": 3}));

    // With two retries the third invocation's error is final.
    let mut fewer = definition;
    fewer["States"]["Call"]["Retry"][0]["MaxAttempts"] = json!(2);
    let dir = workspace(&[
        ("sm.json", fewer),
        ("mocks.json", mocks(json!({"Call": "Flaky"}), responses)),
    ]);
    let run = run_in(&dir, &with_mocks(&["sm.json", "--json"]));
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.json(),
        json!({"status": "FAILED", "error": "Lambda.TooManyRequestsException", "cause": "still busy"})
    );
}

#[test]
fn a_catch_handles_a_mocked_throw() {
    let definition = json!({"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Catch": [
                {"ErrorEquals": ["Payment.Declined"], "ResultPath": "$.failure", "Next": "Declined"},
                {"ErrorEquals": ["States.ALL"], "Next": "Broken"}
            ],
            "End": true},
        "Declined": {"Type": "Pass", "End": true},
        "Broken": {"Type": "Fail", "Error": "Unexpected"}
    }});
    let dir = workspace(&[
        ("sm.json", definition),
        (
            "mocks.json",
            mocks(
                json!({"Charge": "Declined"}),
                json!({"Declined": {"0": {"Throw": {"Error": "Payment.Declined", "Cause": "card expired"}}}}),
            ),
        ),
    ]);
    let run = run_in(
        &dir,
        &with_mocks(&["sm.json", "--input", r#"{"order": 7}"#]),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.json(),
        json!({"order": 7, "failure": {"Error": "Payment.Declined", "Cause": "card expired"}})
    );
}

#[test]
fn a_map_takes_one_invocation_per_item_and_parallel_branches_are_mocked_by_name() {
    let definition = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemsPath": "$.files", "MaxConcurrency": 1,
            "ItemSelector": {"file.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
            "ItemProcessor": {"StartAt": "Scan", "States": {
                "Scan": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "ResultPath": "$.verdict", "End": true}}},
            "ResultPath": "$.scanned", "Next": "Both"},
        "Both": {"Type": "Parallel", "ResultPath": "$.published", "End": true, "Branches": [
            {"StartAt": "Left", "States": {"Left": {"Type": "Task", "Resource": "l", "End": true}}},
            {"StartAt": "Right", "States": {"Right": {"Type": "Task", "Resource": "r", "End": true}}}
        ]}
    }});
    let dir = workspace(&[
        ("sm.json", definition),
        (
            "mocks.json",
            mocks(
                json!({"Scan": "Verdicts", "Left": "Left", "Right": "Right"}),
                json!({
                    "Verdicts": {"0": {"Return": "clean"}, "1": {"Return": "infected"}, "2": {"Return": "clean"}},
                    "Left": {"0": {"Return": "to-s3"}},
                    "Right": {"0": {"Return": "to-cdn"}}
                }),
            ),
        ),
    ]);
    let run = run_in(
        &dir,
        &with_mocks(&["sm.json", "--input", r#"{"files": ["a", "b", "c"]}"#]),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.json(),
        json!({
            "files": ["a", "b", "c"],
            "scanned": [
                {"file": "a", "index": 0, "verdict": "clean"},
                {"file": "b", "index": 1, "verdict": "infected"},
                {"file": "c", "index": 2, "verdict": "clean"}
            ],
            "published": ["to-s3", "to-cdn"]
        })
    );
}

#[test]
fn waits_do_not_sleep() {
    // Two hours of waiting finish on the virtual clock; the watchdog in `gantry` would
    // kill a run that really slept.
    let definition = json!({"StartAt": "Hour", "States": {
        "Hour": {"Type": "Wait", "Seconds": 3600, "Next": "Until"},
        "Until": {"Type": "Wait", "Timestamp": "2024-01-01T02:00:00Z", "Next": "When"},
        "When": {"Type": "Pass", "Parameters": {"entered.$": "$$.State.EnteredTime"}, "End": true}
    }});
    let dir = workspace(&[("sm.json", definition)]);
    let run = run_in(&dir, &["sm.json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let entered = run.json()["entered"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(entered.starts_with("2024-01-01T02:00:00"), "{entered}");
}

#[test]
fn json_output_shapes_and_timeouts() {
    let dir = workspace(&[
        (
            "ok.json",
            json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"a": [1, 2]}, "End": true}}}),
        ),
        (
            "fail.json",
            json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Nope", "Cause": "because"}}}),
        ),
        (
            "slow.json",
            json!({"StartAt": "W", "TimeoutSeconds": 60, "States": {
                "W": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
        ),
    ]);
    let ok = run_in(&dir, &["ok.json", "--json"]);
    assert_eq!(ok.code, Some(0));
    assert_eq!(ok.stdout.lines().count(), 1, "{}", ok.stdout);
    assert_eq!(
        ok.json(),
        json!({"status": "SUCCEEDED", "output": {"a": [1, 2]}})
    );

    let fail = run_in(&dir, &["fail.json", "--json"]);
    assert_eq!(fail.code, Some(1));
    assert_eq!(fail.stderr, "");
    assert_eq!(
        fail.json(),
        json!({"status": "FAILED", "error": "Nope", "cause": "because"})
    );

    let slow = run_in(&dir, &["slow.json", "--json"]);
    assert_eq!(slow.code, Some(1));
    assert_eq!(slow.json()["status"], "TIMED_OUT");
    assert_eq!(slow.json()["error"], "States.Timeout");
    let slow = run_in(&dir, &["slow.json"]);
    assert_eq!(slow.code, Some(1));
    assert!(
        slow.stderr
            .starts_with("execution TIMED_OUT\nerror: States.Timeout\n"),
        "{}",
        slow.stderr
    );
}

#[test]
fn an_unmocked_task_fails_naming_the_state_and_resource() {
    let definition = json!({"StartAt": "Build", "States": {
        "Build": {"Type": "Task", "Resource": "arn:aws:states:::codebuild:startBuild.sync",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Hidden"}], "Next": "Ship"},
        "Ship": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true},
        "Hidden": {"Type": "Succeed"}
    }});
    let dir = workspace(&[
        ("sm.json", definition),
        (
            "mocks.json",
            mocks(
                json!({"Build": "Built"}),
                json!({"Built": {"0": {"Return": {}}}}),
            ),
        ),
    ]);
    // No mock configuration: the first Task fails, and no Catch hides it.
    let run = run_in(&dir, &["sm.json"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("error: States.Runtime\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "Task state \"Build\" (resource arn:aws:states:::codebuild:startBuild.sync) has no mocked result"
        ),
        "{}",
        run.stderr
    );
    // A test case that leaves a Task state out.
    let run = run_in(&dir, &with_mocks(&["sm.json", "--json"]));
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.json(),
        json!({"status": "FAILED", "error": "States.Runtime",
               "cause": "Task state \"Ship\" (resource arn:aws:states:::lambda:invoke) is not mocked in test case \"Case\" of state machine \"M\""})
    );
}

#[test]
fn an_invalid_definition_exits_2_naming_the_json_location() {
    let dir = workspace(&[
        (
            "bad.json",
            json!({"StartAt": "A", "States": {
                "A": {"Type": "Pass", "Next": "Missing"},
                "B": {"Type": "Pass", "End": true}
            }}),
        ),
        (
            "ok.json",
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
        ),
    ]);
    std::fs::write(dir.path().join("broken.json"), "{\"StartAt\": \n  oops}").expect("write");
    let run = run_in(&dir, &["bad.json"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .contains("bad.json: States.A.Next: state \"Missing\" does not exist"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("bad.json: States.B: state is not reachable from StartAt"),
        "{}",
        run.stderr
    );

    let run = run_in(&dir, &["broken.json"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with("broken.json:2:3: not valid JSON"),
        "{}",
        run.stderr
    );

    let run = run_in(&dir, &["missing.json"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with("missing.json: cannot read"),
        "{}",
        run.stderr
    );

    // The input is checked too.
    let run = run_in(&dir, &["ok.json", "--input", "{nope"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with("--input: not valid JSON"),
        "{}",
        run.stderr
    );
    let run = run_in(&dir, &["ok.json", "--input", "@nowhere.json"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with("--input @nowhere.json: cannot read"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_invalid_mock_config_or_options_exit_2() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "Next": "P"},
        "P": {"Type": "Pass", "End": true}}});
    let dir = workspace(&[
        ("sm.json", definition),
        (
            "bad-mocks.json",
            mocks(
                json!({"T": "Nowhere"}),
                json!({"R": {"1-0": {"Return": 1}, "2": {"Throw": {"Cause": "no error"}}}}),
            ),
        ),
        (
            "wrong-state.json",
            mocks(
                json!({"P": "R", "Q": "R"}),
                json!({"R": {"0": {"Return": 1}}}),
            ),
        ),
        (
            "two.json",
            json!({"StateMachines": {
                "A": {"TestCases": {"X": {}, "Y": {}}},
                "B": {"TestCases": {"Z": {}}}},
                "MockedResponses": {}}),
        ),
    ]);
    let run = run_in(&dir, &["sm.json", "--mock-config", "bad-mocks.json"]);
    assert_eq!(run.code, Some(2));
    for expected in [
        "bad-mocks.json: MockedResponses.R.1-0: \"1-0\" is not an invocation number",
        "bad-mocks.json: MockedResponses.R.2.Throw: needs Error",
        "bad-mocks.json: StateMachines.M.TestCases.Case.T: no mocked response named \"Nowhere\"",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }

    let run = run_in(&dir, &["sm.json", "--mock-config", "wrong-state.json"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains(
        "wrong-state.json: StateMachines.M.TestCases.Case.P: state \"P\" is a Pass state; only Task states can be mocked"
    ), "{}", run.stderr);
    assert!(run.stderr.contains(
        "wrong-state.json: StateMachines.M.TestCases.Case.Q: the definition has no state named \"Q\""
    ), "{}", run.stderr);

    // Choosing a test case.
    let run = run_in(&dir, &["sm.json", "--mock-config", "two.json"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "two.json: StateMachines: choose a state machine with --state-machine (there are: A, B)\n"
    );
    let run = run_in(
        &dir,
        &[
            "sm.json",
            "--mock-config",
            "two.json",
            "--state-machine",
            "A",
            "--test-case",
            "W",
        ],
    );
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "two.json: StateMachines.A.TestCases: no test case named \"W\" (there are: X, Y)\n"
    );

    // Options: --state-machine/--test-case need --mock-config; unknown options.
    for args in [
        &["sm.json", "--test-case", "X"][..],
        &["sm.json", "--state-machine", "A"],
        &["sm.json", "--no-such-option"],
        &[],
    ] {
        let run = run_in(&dir, args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/states")
}

#[test]
fn the_documented_example_runs() {
    let dir = examples();
    let run = |case: &str| {
        gantry(
            &dir,
            &[
                "states",
                "run",
                "deploy.asl.json",
                "--input",
                "@input.json",
                "--mock-config",
                "mocks.json",
                "--test-case",
                case,
                "--json",
            ],
        )
    };
    let deployed = json!({
        "commit": "abc123",
        "image": "registry.example.com/app:abc123",
        "deployed": [
            {"region": "eu-west-1", "version": 42},
            {"region": "us-east-1", "version": 42}
        ]
    });
    for case in ["HappyPath", "FlakyBuild"] {
        let out = run(case);
        assert_eq!(out.code, Some(0), "{case}: {}", out.stderr);
        assert_eq!(
            out.json(),
            json!({"status": "SUCCEEDED", "output": deployed}),
            "{case}"
        );
    }
    let out = run("Unhealthy");
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.json(),
        json!({"status": "FAILED", "error": "VerifyFailed",
               "cause": "GET https://app.example.com/health returned 503"})
    );
    let out = run("BuildFails");
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.json(),
        json!({"status": "FAILED", "error": "BuildFailed", "cause": "the build did not succeed"})
    );

    // The plain form docs/states.md shows.
    let out = gantry(
        &dir,
        &[
            "states",
            "run",
            "deploy.asl.json",
            "--input",
            "@input.json",
            "--mock-config",
            "mocks.json",
            "--test-case",
            "HappyPath",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.json(), deployed);
}
