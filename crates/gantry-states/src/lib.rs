/*!
An Amazon States Language (Step Functions) interpreter with no I/O of its own.

`gantry-states` parses and validates state machine definitions (every problem is
reported with its JSON location, e.g. `States.Build.Next: state "Deploy" does not exist`),
and runs them as a deterministic core: an [`Execution`] is derived from an append-only
journal of [`Event`]s, and [`Execution::step`] returns the side effects to perform as
plain [`Action`]s (schedule a task, start a timer, complete). Time and randomness arrive
inside events, so replaying a journal rebuilds the same execution. [`run_local`] drives an
execution in memory with a closure answering tasks and a virtual clock for timers.

Supported: every state type, the JSONPath I/O chain with `.$` keys and the context
object, every Choice operator, Retry/Catch, timeouts and heartbeats, the `States.*`
errors, every intrinsic function, `Assign` variables, and JSONata 2.0 (`gantry-jsonata`).
See `docs/states.md` for the details and the differences from AWS.

# Example

```
use gantry_states::{run_local, Outcome, TaskError};
use serde_json::json;

let definition = json!({
    "StartAt": "Build",
    "States": {
        "Build": {
            "Type": "Task",
            "Resource": "arn:aws:states:::codebuild:startBuild.sync",
            "Parameters": {"ProjectName": "app", "Commit.$": "$.commit"},
            "ResultSelector": {"status.$": "$.Build.BuildStatus"},
            "ResultPath": "$.build",
            "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}],
            "Next": "Ok?"
        },
        "Ok?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.build.status", "StringEquals": "SUCCEEDED", "Next": "Done"}],
            "Default": "Failed"
        },
        "Done": {"Type": "Pass", "Parameters": {"msg.$": "States.Format('built {}', $.commit)"}, "End": true},
        "Failed": {"Type": "Fail", "Error": "BuildFailed"}
    }
});
let mut calls = 0;
let run = run_local(&definition, json!({"commit": "abc123"}), |_resource, input| {
    calls += 1;
    assert_eq!(input["Commit"], "abc123");
    if calls == 1 {
        Err(TaskError::new("Flaky", "first attempt fails"))
    } else {
        Ok(json!({"Build": {"BuildStatus": "SUCCEEDED"}}))
    }
})
.unwrap();
assert_eq!(run.outcome, Outcome::Succeeded { output: json!({"msg": "built abc123"}) });

// Definitions are validated before they run.
let bad = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}});
let err = run_local(&bad, json!({}), |_, _| Ok(json!(null))).unwrap_err();
assert_eq!(err.to_string(), r#"States.A.Next: state "B" does not exist"#);
```
*/
#![deny(missing_docs)]

mod choice;
mod definition;
mod driver;
mod error;
mod execution;
pub mod intrinsics;
mod jsonata;
pub mod mock;
pub mod path;
mod payload;
mod retry;
pub mod timestamp;

pub use choice::{Op, Operand, Rule};
pub use definition::{
    ChoiceBranch, Dynamic, Kind, MapSpec, QueryLanguage, State, StateMachine, WaitFor,
    parse_definition,
};
pub use driver::{
    Clock, FixedClock, Random, RunResult, SeededRandom, TaskError, run_execution, run_local,
    run_machine,
};
pub use error::{DefinitionError, Failure, ValidationErrors, errors};
pub use execution::{Action, Event, Execution, ExecutionInfo, HistoryEvent, Outcome};
pub use retry::{Catcher, Retrier};
