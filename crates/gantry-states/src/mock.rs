//! Mocked task results for local runs, in the shape of AWS Step Functions Local's
//! mock configuration file (`MockConfigFile.json`).
//!
//! A mock configuration names, per state machine and test case, which mocked response
//! each Task state gets; a mocked response maps invocation numbers (`"0"`, `"1"`, ranges
//! `"1-2"`) to `{"Return": ...}` or `{"Throw": {"Error": ..., "Cause": ...}}`:
//!
//! ```
//! use gantry_states::mock::{MockConfig, MockedTasks, run_mocked};
//! use gantry_states::{ExecutionInfo, FixedClock, Outcome, SeededRandom, parse_definition};
//! use serde_json::json;
//! use std::sync::Arc;
//!
//! let definition = json!({"StartAt": "Call", "States": {"Call": {
//!     "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
//!     "Retry": [{"ErrorEquals": ["Flaky"]}], "End": true}}});
//! let config = MockConfig::parse(&json!({
//!     "StateMachines": {"Demo": {"TestCases": {"RetryPath": {"Call": "FlakyThenOk"}}}},
//!     "MockedResponses": {"FlakyThenOk": {
//!         "0": {"Throw": {"Error": "Flaky", "Cause": "try again"}},
//!         "1": {"Return": {"ok": true}}}}
//! }))
//! .unwrap();
//! let sm = Arc::new(parse_definition(&definition).unwrap());
//! let case = config.test_case(Some("Demo"), Some("RetryPath")).unwrap();
//! case.check_against(&sm).unwrap();
//! let mut tasks = MockedTasks::new(Some(case));
//! let info = ExecutionInfo::default();
//! let run = run_mocked(sm, json!({}), info, &FixedClock(0), &mut SeededRandom(1), &mut tasks);
//! assert_eq!(run.outcome, Outcome::Succeeded { output: json!({"ok": true}) });
//! assert_eq!(tasks.invocations("Call"), 2);
//! ```
//!
//! Each call of a state takes that state's next invocation number, counted over the whole
//! execution: retries, loops back into the state and Map iterations all advance it. A
//! Task state the test case does not mock, or an invocation number no key covers, fails
//! the execution with `States.Runtime` (which no Retry or Catch handles) and a cause
//! naming the state: Step Functions Local would call the real service there, and a local
//! run has none to call.

use crate::definition::{Kind, StateMachine};
use crate::driver::{Clock, Random, RunResult, TaskError};
use crate::error::{Failure, errors};
use crate::execution::{Action, Event, Execution, ExecutionInfo, Outcome};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// One problem in a mock configuration, located by a JSON path such as
/// `MockedResponses.LambdaRetry.1-2.Throw.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfigError {
    /// Where the problem is (empty for the top level).
    pub location: String,
    /// What is wrong there.
    pub message: String,
}

impl MockConfigError {
    fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        MockConfigError {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for MockConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Every problem found in a mock configuration (or in choosing a test case from it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MockConfigErrors(pub Vec<MockConfigError>);

impl fmt::Display for MockConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<MockConfigError> for MockConfigErrors {
    fn from(e: MockConfigError) -> Self {
        MockConfigErrors(vec![e])
    }
}

/// What one mocked invocation does.
#[derive(Debug, Clone, PartialEq)]
pub enum MockOutcome {
    /// `{"Return": value}`: the task's raw result (before `ResultSelector`/`ResultPath`).
    Return(Value),
    /// `{"Throw": {"Error", "Cause"}}`: the task fails with this error.
    Throw {
        /// `Error`.
        error: String,
        /// `Cause` (empty when not given).
        cause: String,
    },
}

/// A mocked response: outcomes by invocation number.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MockedResponse {
    /// `(first, last, outcome)`, sorted by `first`, never overlapping.
    entries: Vec<(u64, u64, MockOutcome)>,
}

impl MockedResponse {
    /// The outcome for invocation `n` (counted from 0), if a key covers it.
    pub fn outcome(&self, n: u64) -> Option<&MockOutcome> {
        let i = self.entries.partition_point(|(first, _, _)| *first <= n);
        let (_, last, outcome) = self.entries.get(i.checked_sub(1)?)?;
        (n <= *last).then_some(outcome)
    }

    /// The keys, as written (`0, 1-2, 3`), for messages.
    fn keys(&self) -> String {
        let keys: Vec<String> = self
            .entries
            .iter()
            .map(|(a, b, _)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        keys.join(", ")
    }
}

/// A parsed and validated mock configuration file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MockConfig {
    /// State machine → test case → Task state → mocked response name.
    state_machines: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// `MockedResponses`, by name.
    responses: BTreeMap<String, MockedResponse>,
}

/// One test case chosen from a [`MockConfig`]: the mocked response of each Task state.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The state machine's name in the configuration.
    pub state_machine: String,
    /// The test case's name.
    pub name: String,
    /// Task state name → (mocked response name, the response).
    states: BTreeMap<String, (String, MockedResponse)>,
}

impl MockConfig {
    /// Parses and validates a mock configuration, reporting every problem with its JSON
    /// location.
    pub fn parse(value: &Value) -> Result<MockConfig, MockConfigErrors> {
        let mut problems = Vec::new();
        let mut config = MockConfig::default();
        let Some(top) = value.as_object() else {
            return Err(MockConfigError::new(
                "",
                format!(
                    "a mock configuration must be an object with StateMachines and MockedResponses, not {}",
                    type_name(value)
                ),
            )
            .into());
        };
        for key in top.keys() {
            if key != "StateMachines" && key != "MockedResponses" {
                let hint = if key == "MockedResponse" {
                    " (did you mean MockedResponses?)"
                } else {
                    ""
                };
                problems.push(MockConfigError::new(
                    key.as_str(),
                    format!(
                        "unknown field; a mock configuration has StateMachines and MockedResponses{hint}"
                    ),
                ));
            }
        }
        if let Some(responses) = object_field(top, "MockedResponses", "", &mut problems) {
            for (name, response) in responses {
                let location = format!("MockedResponses.{name}");
                if let Some(parsed) = parse_response(response, &location, &mut problems) {
                    config.responses.insert(name.clone(), parsed);
                }
            }
        }
        if let Some(machines) = object_field(top, "StateMachines", "", &mut problems) {
            for (machine, body) in machines {
                let location = format!("StateMachines.{machine}");
                let Some(body) = body.as_object() else {
                    problems.push(MockConfigError::new(
                        location,
                        format!("must be an object with TestCases, not {}", type_name(body)),
                    ));
                    continue;
                };
                for key in body.keys().filter(|k| *k != "TestCases") {
                    problems.push(MockConfigError::new(
                        format!("{location}.{key}"),
                        "unknown field; a state machine has only TestCases",
                    ));
                }
                let mut cases = BTreeMap::new();
                if let Some(tests) = object_field(body, "TestCases", &location, &mut problems) {
                    for (case, states) in tests {
                        let location = format!("{location}.TestCases.{case}");
                        let Some(states) = states.as_object() else {
                            problems.push(MockConfigError::new(
                                location,
                                format!(
                                    "a test case maps Task state names to mocked response names; found {}",
                                    type_name(states)
                                ),
                            ));
                            continue;
                        };
                        let mut mocked = BTreeMap::new();
                        for (state, response) in states {
                            let location = format!("{location}.{state}");
                            match response.as_str() {
                                None => problems.push(MockConfigError::new(
                                    location,
                                    format!(
                                        "must be the name of a mocked response, not {}",
                                        type_name(response)
                                    ),
                                )),
                                Some(name) if !responses_has(top, name) => {
                                    problems.push(MockConfigError::new(
                                        location,
                                        format!(
                                            "no mocked response named \"{name}\" in MockedResponses"
                                        ),
                                    ))
                                }
                                Some(name) => {
                                    mocked.insert(state.clone(), name.to_string());
                                }
                            }
                        }
                        cases.insert(case.clone(), mocked);
                    }
                }
                config.state_machines.insert(machine.clone(), cases);
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(MockConfigErrors(problems))
        }
    }

    /// The state machine names, sorted.
    pub fn state_machines(&self) -> impl Iterator<Item = &str> {
        self.state_machines.keys().map(String::as_str)
    }

    /// Chooses a test case. Either name may be left out when the file has exactly one
    /// candidate.
    pub fn test_case(
        &self,
        state_machine: Option<&str>,
        test_case: Option<&str>,
    ) -> Result<TestCase, MockConfigError> {
        let machine = pick(
            "StateMachines",
            "state machine",
            "--state-machine",
            self.state_machines.keys(),
            state_machine,
        )?;
        let cases = &self.state_machines[machine];
        let case = pick(
            &format!("StateMachines.{machine}.TestCases"),
            "test case",
            "--test-case",
            cases.keys(),
            test_case,
        )?;
        let states = cases[case]
            .iter()
            .map(|(state, response)| {
                // `parse` checked that every response name resolves.
                let mocked = self.responses.get(response).cloned().unwrap_or_default();
                (state.clone(), (response.clone(), mocked))
            })
            .collect();
        Ok(TestCase {
            state_machine: machine.to_string(),
            name: case.to_string(),
            states,
        })
    }
}

impl TestCase {
    /// The mocked response name and response for a Task state, if the test case mocks it.
    pub fn mock(&self, state: &str) -> Option<(&str, &MockedResponse)> {
        self.states.get(state).map(|(n, r)| (n.as_str(), r))
    }

    /// Checks that every state the test case mocks is a Task state of `sm` (at any depth:
    /// states inside Parallel branches and Map processors count).
    pub fn check_against(&self, sm: &StateMachine) -> Result<(), MockConfigErrors> {
        let mut kinds = BTreeMap::new();
        collect_kinds(sm, &mut kinds);
        let problems: Vec<MockConfigError> = self
            .states
            .keys()
            .filter_map(|state| {
                let location = format!(
                    "StateMachines.{}.TestCases.{}.{state}",
                    self.state_machine, self.name
                );
                match kinds.get(state.as_str()) {
                    Some(kinds) if kinds.contains("Task") => None,
                    Some(kinds) => {
                        let kinds: Vec<&str> = kinds.iter().copied().collect();
                        Some(MockConfigError::new(
                            location,
                            format!(
                                "state \"{state}\" is a {} state; only Task states can be mocked",
                                kinds.join("/")
                            ),
                        ))
                    }
                    None => Some(MockConfigError::new(
                        location,
                        format!("the definition has no state named \"{state}\""),
                    )),
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MockConfigErrors(problems))
        }
    }
}

/// Answers Task states from a test case, counting each state's invocations.
#[derive(Debug, Clone, Default)]
pub struct MockedTasks {
    case: Option<TestCase>,
    calls: BTreeMap<String, u64>,
}

impl MockedTasks {
    /// Answers from `case`; with `None`, every Task state fails (nothing is mocked).
    pub fn new(case: Option<TestCase>) -> Self {
        MockedTasks {
            case,
            calls: BTreeMap::new(),
        }
    }

    /// How many times the Task state named `state` has been invoked so far.
    pub fn invocations(&self, state: &str) -> u64 {
        self.calls.get(state).copied().unwrap_or(0)
    }

    /// The result of invoking the Task state `state` (whose `Resource` is `resource`)
    /// once more. A state or invocation without a mock fails with `States.Runtime`.
    pub fn answer(&mut self, state: &str, resource: &str) -> Result<Value, TaskError> {
        let count = self.calls.entry(state.to_string()).or_insert(0);
        let n = *count;
        *count += 1;
        let unmocked = |why: String| Err(TaskError::new(errors::RUNTIME, why));
        let Some(case) = &self.case else {
            return unmocked(format!(
                "Task state \"{state}\" (resource {resource}) has no mocked result: a local run \
                 calls no services, so give --mock-config with a test case that mocks \"{state}\""
            ));
        };
        let Some((response_name, response)) = case.mock(state) else {
            return unmocked(format!(
                "Task state \"{state}\" (resource {resource}) is not mocked in test case \"{}\" \
                 of state machine \"{}\"",
                case.name, case.state_machine
            ));
        };
        match response.outcome(n) {
            Some(MockOutcome::Return(value)) => Ok(value.clone()),
            Some(MockOutcome::Throw { error, cause }) => {
                Err(TaskError::new(error.clone(), cause.clone()))
            }
            None => unmocked(format!(
                "Task state \"{state}\" (resource {resource}) was invoked for the {} time \
                 (invocation {n}), but mocked response \"{response_name}\" has entries only for \
                 invocations {}",
                ordinal(n + 1),
                response.keys()
            )),
        }
    }
}

/// Runs `sm` on `input` in memory with Task states answered by `tasks`. Timers fire on a
/// virtual clock that starts at `clock`'s time, so Wait states and retry delays do not
/// sleep.
pub fn run_mocked(
    sm: Arc<StateMachine>,
    input: Value,
    info: ExecutionInfo,
    clock: &dyn Clock,
    random: &mut dyn Random,
    tasks: &mut MockedTasks,
) -> RunResult {
    let mut exec = Execution::new(sm);
    let start = clock.now_millis();
    let mut queue: VecDeque<Action> = exec
        .step(Event::Started {
            input,
            info,
            seed: random.next_u64(),
            at: start,
        })
        .into();
    let mut now = start;
    // Keyed by (time, sequence) so timers due at the same moment fire in start order.
    let mut timers: BTreeMap<(i64, u64), String> = BTreeMap::new();
    let mut timer_seq = 0u64;
    let finish = |exec: Execution, outcome: Outcome| RunResult {
        outcome,
        journal: exec.journal().to_vec(),
        execution: exec,
    };
    loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::ScheduleTask {
                    token,
                    state,
                    resource,
                    ..
                } => {
                    let event = match tasks.answer(&state, &resource) {
                        Ok(output) => Event::TaskSucceeded {
                            token,
                            output,
                            at: now,
                        },
                        Err(e) => Event::TaskFailed {
                            token,
                            error: e.error,
                            cause: e.cause,
                            at: now,
                        },
                    };
                    queue.extend(exec.step(event));
                }
                Action::StartTimer { id, at } => {
                    timer_seq += 1;
                    timers.insert((at, timer_seq), id);
                }
                Action::CancelTimer { id } => timers.retain(|_, v| *v != id),
                Action::CancelTask { .. } => {}
                Action::Complete(outcome) => return finish(exec, outcome),
            }
        }
        let Some(((at, _), id)) = timers.pop_first() else {
            let stuck = Failure::runtime("the execution is stuck with nothing pending");
            return finish(exec, Outcome::Failed(stuck));
        };
        now = now.max(at);
        queue.extend(exec.step(Event::TimerFired { id, at: now }));
    }
}

fn parse_response(
    value: &Value,
    location: &str,
    problems: &mut Vec<MockConfigError>,
) -> Option<MockedResponse> {
    let Some(entries) = value.as_object() else {
        problems.push(MockConfigError::new(
            location,
            format!(
                "a mocked response maps invocation numbers (\"0\", \"1-2\") to Return or Throw; found {}",
                type_name(value)
            ),
        ));
        return None;
    };
    if entries.is_empty() {
        problems.push(MockConfigError::new(
            location,
            "a mocked response needs at least one invocation (\"0\": {\"Return\": ...})",
        ));
        return None;
    }
    let before = problems.len();
    let mut parsed = Vec::new();
    for (key, entry) in entries {
        let location = format!("{location}.{key}");
        let range = parse_key(key);
        if range.is_none() {
            problems.push(MockConfigError::new(
                location.as_str(),
                format!(
                    "\"{key}\" is not an invocation number: use \"N\" or an inclusive range \"N-M\" \
                     (N <= M, counted from 0)"
                ),
            ));
        }
        let outcome = parse_outcome(entry, &location, problems);
        if let (Some((first, last)), Some(outcome)) = (range, outcome) {
            parsed.push((first, last, outcome, location));
        }
    }
    parsed.sort_by_key(|(first, last, _, _)| (*first, *last));
    for pair in parsed.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.0 <= a.1 {
            problems.push(MockConfigError::new(
                b.3.as_str(),
                format!(
                    "invocation {} is already covered by {}",
                    b.0,
                    a.3.rsplit('.').next().unwrap_or_default()
                ),
            ));
        }
    }
    (problems.len() == before).then(|| MockedResponse {
        entries: parsed.into_iter().map(|(a, b, o, _)| (a, b, o)).collect(),
    })
}

/// `"3"` → (3, 3); `"1-2"` → (1, 2). Digits only: no signs, spaces or empty parts.
fn parse_key(key: &str) -> Option<(u64, u64)> {
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse::<u64>().ok()
        }
    };
    match key.split_once('-') {
        None => number(key).map(|n| (n, n)),
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            (a <= b).then_some((a, b))
        }
    }
}

fn parse_outcome(
    value: &Value,
    location: &str,
    problems: &mut Vec<MockConfigError>,
) -> Option<MockOutcome> {
    let Some(entry) = value.as_object() else {
        problems.push(MockConfigError::new(
            location,
            format!(
                "must be {{\"Return\": ...}} or {{\"Throw\": {{\"Error\": ..., \"Cause\": ...}}}}, not {}",
                type_name(value)
            ),
        ));
        return None;
    };
    let mut ok = true;
    for key in entry.keys().filter(|k| *k != "Return" && *k != "Throw") {
        problems.push(MockConfigError::new(
            format!("{location}.{key}"),
            "unknown field; an invocation has Return or Throw",
        ));
        ok = false;
    }
    let outcome = match (entry.get("Return"), entry.get("Throw")) {
        (Some(_), Some(_)) => {
            problems.push(MockConfigError::new(
                location,
                "has both Return and Throw; give one",
            ));
            return None;
        }
        (None, None) => {
            problems.push(MockConfigError::new(location, "needs Return or Throw"));
            return None;
        }
        (Some(value), None) => MockOutcome::Return(value.clone()),
        (None, Some(throw)) => parse_throw(throw, &format!("{location}.Throw"), problems)?,
    };
    ok.then_some(outcome)
}

fn parse_throw(
    value: &Value,
    location: &str,
    problems: &mut Vec<MockConfigError>,
) -> Option<MockOutcome> {
    let Some(throw) = value.as_object() else {
        problems.push(MockConfigError::new(
            location,
            format!(
                "must be {{\"Error\": ..., \"Cause\": ...}}, not {}",
                type_name(value)
            ),
        ));
        return None;
    };
    let before = problems.len();
    for key in throw.keys().filter(|k| *k != "Error" && *k != "Cause") {
        problems.push(MockConfigError::new(
            format!("{location}.{key}"),
            "unknown field; Throw has Error and Cause",
        ));
    }
    let error = match throw.get("Error") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.push(MockConfigError::new(
                format!("{location}.Error"),
                "must not be empty",
            ));
            None
        }
        Some(other) => {
            problems.push(MockConfigError::new(
                format!("{location}.Error"),
                format!("must be a string, not {}", type_name(other)),
            ));
            None
        }
        None => {
            problems.push(MockConfigError::new(
                location,
                "needs Error (the error name Retry and Catch match)",
            ));
            None
        }
    };
    let cause = match throw.get("Cause") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            problems.push(MockConfigError::new(
                format!("{location}.Cause"),
                format!("must be a string, not {}", type_name(other)),
            ));
            String::new()
        }
    };
    let error = error?;
    (problems.len() == before).then_some(MockOutcome::Throw { error, cause })
}

/// `top[field]` as an object; a missing field is an empty object, another type a problem.
fn object_field<'a>(
    top: &'a Map<String, Value>,
    field: &str,
    location: &str,
    problems: &mut Vec<MockConfigError>,
) -> Option<&'a Map<String, Value>> {
    let location = if location.is_empty() {
        field.to_string()
    } else {
        format!("{location}.{field}")
    };
    match top.get(field) {
        None => {
            problems.push(MockConfigError::new(location, "missing (an object)"));
            None
        }
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            problems.push(MockConfigError::new(
                location,
                format!("must be an object, not {}", type_name(other)),
            ));
            None
        }
    }
}

fn responses_has(top: &Map<String, Value>, name: &str) -> bool {
    top.get("MockedResponses")
        .and_then(Value::as_object)
        .is_some_and(|r| r.contains_key(name))
}

fn pick<'a>(
    location: &str,
    what: &str,
    option: &str,
    names: impl Iterator<Item = &'a String> + Clone,
    wanted: Option<&str>,
) -> Result<&'a str, MockConfigError> {
    let list = || {
        let names: Vec<&str> = names.clone().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    match wanted {
        Some(wanted) => names
            .clone()
            .find(|n| n.as_str() == wanted)
            .map(String::as_str)
            .ok_or_else(|| {
                MockConfigError::new(
                    location,
                    format!("no {what} named \"{wanted}\" (there are: {})", list()),
                )
            }),
        None => {
            let mut all = names.clone();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(only.as_str()),
                _ => Err(MockConfigError::new(
                    location,
                    format!("choose a {what} with {option} (there are: {})", list()),
                )),
            }
        }
    }
}

/// State name → the kinds of the states with that name (names may repeat across
/// branches and processors).
fn collect_kinds<'a>(sm: &'a StateMachine, out: &mut BTreeMap<&'a str, BTreeSet<&'static str>>) {
    for (name, state) in &sm.states {
        let kind = match &state.kind {
            Kind::Task { .. } => "Task",
            Kind::Pass { .. } => "Pass",
            Kind::Choice { .. } => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel { branches } => {
                for branch in branches {
                    collect_kinds(branch, out);
                }
                "Parallel"
            }
            Kind::Map(spec) => {
                collect_kinds(&spec.processor, out);
                "Map"
            }
        };
        out.entry(name.as_str()).or_default().insert(kind);
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse_definition;
    use crate::driver::{FixedClock, SeededRandom};
    use serde_json::json;

    fn info() -> ExecutionInfo {
        ExecutionInfo {
            execution_id: "arn:aws:states:local:000000000000:execution:t:run".into(),
            execution_name: "run".into(),
            state_machine_id: "arn:aws:states:local:000000000000:stateMachine:t".into(),
            state_machine_name: "t".into(),
            role_arn: None,
        }
    }

    fn config(case: Value, responses: Value) -> MockConfig {
        MockConfig::parse(&json!({
            "StateMachines": {"M": {"TestCases": {"C": case}}},
            "MockedResponses": responses,
        }))
        .unwrap()
    }

    fn run(definition: Value, input: Value, config: &MockConfig) -> (Outcome, MockedTasks) {
        let sm = Arc::new(parse_definition(&definition).unwrap());
        let case = config.test_case(None, None).unwrap();
        case.check_against(&sm).unwrap();
        let mut tasks = MockedTasks::new(Some(case));
        let run = run_mocked(
            sm,
            input,
            info(),
            &FixedClock(0),
            &mut SeededRandom(7),
            &mut tasks,
        );
        (run.outcome, tasks)
    }

    fn messages(errors: MockConfigErrors) -> Vec<String> {
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_aws_documented_example() {
        let config = MockConfig::parse(&json!({
          "StateMachines": {"LambdaSQSIntegration": {"TestCases": {
            "HappyPath": {"LambdaState": "MockedLambdaSuccess", "SQSState": "MockedSQSSuccess"},
            "RetryPath": {"LambdaState": "MockedLambdaRetry", "SQSState": "MockedSQSSuccess"},
            "HybridPath": {"LambdaState": "MockedLambdaSuccess"}}}},
          "MockedResponses": {
            "MockedLambdaSuccess": {"0": {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello from Lambda!"}}}},
            "LambdaMockedResourceNotReady": {"0": {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": "Lambda resource is not ready."}}},
            "MockedSQSSuccess": {"0": {"Return": {"MD5OfMessageBody": "3bcb", "MessageId": "3bcb"}}},
            "MockedLambdaRetry": {
              "0": {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": "Lambda resource is not ready."}},
              "1-2": {"Throw": {"Error": "Lambda.TimeoutException", "Cause": "Lambda timed out."}},
              "3": {"Return": {"StatusCode": 200}}}}
        }))
        .unwrap();
        assert_eq!(
            config.state_machines().collect::<Vec<_>>(),
            ["LambdaSQSIntegration"]
        );
        let case = config.test_case(None, Some("RetryPath")).unwrap();
        let (name, response) = case.mock("LambdaState").unwrap();
        assert_eq!(name, "MockedLambdaRetry");
        let throw = |e: &str, c: &str| MockOutcome::Throw {
            error: e.into(),
            cause: c.into(),
        };
        assert_eq!(
            response.outcome(0),
            Some(&throw(
                "Lambda.ResourceNotReadyException",
                "Lambda resource is not ready."
            ))
        );
        for n in [1, 2] {
            assert_eq!(
                response.outcome(n),
                Some(&throw("Lambda.TimeoutException", "Lambda timed out."))
            );
        }
        assert_eq!(
            response.outcome(3),
            Some(&MockOutcome::Return(json!({"StatusCode": 200})))
        );
        assert_eq!(response.outcome(4), None);
        assert!(case.mock("Nope").is_none());
    }

    #[test]
    fn reports_every_problem_with_its_location() {
        let errors = MockConfig::parse(&json!({
            "StateMachines": {
                "M": {"TestCases": {
                    "C": {"A": "Missing", "B": 3, "D": "Ok"},
                    "E": []
                }, "Extra": 1},
                "N": []
            },
            "MockedResponses": {
                "Ok": {"0": {"Return": 1}},
                "Empty": {},
                "BadKeys": {"x": {"Return": 1}, "2-1": {"Return": 1}, "-1": {"Return": 1}, "1-": {"Return": 1}},
                "Overlap": {"0-2": {"Return": 1}, "2": {"Return": 2}},
                "BadEntries": {
                    "0": {"Return": 1, "Throw": {"Error": "E"}},
                    "1": {},
                    "2": {"Return": 1, "Extra": true},
                    "3": {"Throw": {"Cause": "c"}},
                    "4": {"Throw": {"Error": 5, "Cause": false, "Why": "?"}},
                    "5": "Return",
                    "6": {"Throw": "E"}
                }
            },
            "MockedResponse": {}
        }))
        .unwrap_err();
        let expected = [
            "MockedResponse: unknown field; a mock configuration has StateMachines and MockedResponses (did you mean MockedResponses?)",
            "MockedResponses.BadEntries.0: has both Return and Throw; give one",
            "MockedResponses.BadEntries.1: needs Return or Throw",
            "MockedResponses.BadEntries.2.Extra: unknown field; an invocation has Return or Throw",
            "MockedResponses.BadEntries.3.Throw: needs Error (the error name Retry and Catch match)",
            "MockedResponses.BadEntries.4.Throw.Why: unknown field; Throw has Error and Cause",
            "MockedResponses.BadEntries.4.Throw.Error: must be a string, not a number",
            "MockedResponses.BadEntries.4.Throw.Cause: must be a string, not a boolean",
            "MockedResponses.BadEntries.5: must be {\"Return\": ...} or {\"Throw\": {\"Error\": ..., \"Cause\": ...}}, not a string",
            "MockedResponses.BadEntries.6.Throw: must be {\"Error\": ..., \"Cause\": ...}, not a string",
            "MockedResponses.BadKeys.-1: \"-1\" is not an invocation number: use \"N\" or an inclusive range \"N-M\" (N <= M, counted from 0)",
            "MockedResponses.BadKeys.1-: \"1-\" is not an invocation number: use \"N\" or an inclusive range \"N-M\" (N <= M, counted from 0)",
            "MockedResponses.BadKeys.2-1: \"2-1\" is not an invocation number: use \"N\" or an inclusive range \"N-M\" (N <= M, counted from 0)",
            "MockedResponses.BadKeys.x: \"x\" is not an invocation number: use \"N\" or an inclusive range \"N-M\" (N <= M, counted from 0)",
            "MockedResponses.Empty: a mocked response needs at least one invocation (\"0\": {\"Return\": ...})",
            "MockedResponses.Overlap.2: invocation 2 is already covered by 0-2",
            "StateMachines.M.Extra: unknown field; a state machine has only TestCases",
            "StateMachines.M.TestCases.C.A: no mocked response named \"Missing\" in MockedResponses",
            "StateMachines.M.TestCases.C.B: must be the name of a mocked response, not a number",
            "StateMachines.M.TestCases.E: a test case maps Task state names to mocked response names; found an array",
            "StateMachines.N: must be an object with TestCases, not an array",
        ];
        // Sorted: the order of keys within an object is the parser's business.
        let mut got = messages(errors);
        got.sort();
        let mut expected = expected.map(String::from).to_vec();
        expected.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn top_level_shape() {
        let err = MockConfig::parse(&json!([])).unwrap_err();
        assert_eq!(
            messages(err),
            [
                "a mock configuration must be an object with StateMachines and MockedResponses, not an array"
            ]
        );
        let err = MockConfig::parse(&json!({"StateMachines": 1})).unwrap_err();
        assert_eq!(
            messages(err),
            [
                "MockedResponses: missing (an object)",
                "StateMachines: must be an object, not a number"
            ]
        );
        let err = MockConfig::parse(&json!({"StateMachines": {"M": {}}, "MockedResponses": {}}))
            .unwrap_err();
        assert_eq!(
            messages(err),
            ["StateMachines.M.TestCases: missing (an object)"]
        );
    }

    #[test]
    fn choosing_a_test_case() {
        let config = MockConfig::parse(&json!({
            "StateMachines": {
                "A": {"TestCases": {"One": {}}},
                "B": {"TestCases": {"X": {}, "Y": {}}}
            },
            "MockedResponses": {}
        }))
        .unwrap();
        let err = |sm, case| config.test_case(sm, case).unwrap_err().to_string();
        assert_eq!(
            err(None, None),
            "StateMachines: choose a state machine with --state-machine (there are: A, B)"
        );
        assert_eq!(
            err(Some("Z"), None),
            "StateMachines: no state machine named \"Z\" (there are: A, B)"
        );
        assert_eq!(
            err(Some("B"), None),
            "StateMachines.B.TestCases: choose a test case with --test-case (there are: X, Y)"
        );
        assert_eq!(
            err(Some("B"), Some("Z")),
            "StateMachines.B.TestCases: no test case named \"Z\" (there are: X, Y)"
        );
        let case = config.test_case(Some("A"), None).unwrap();
        assert_eq!(
            (case.state_machine.as_str(), case.name.as_str()),
            ("A", "One")
        );
        let case = config.test_case(Some("B"), Some("Y")).unwrap();
        assert_eq!(case.name, "Y");
    }

    #[test]
    fn mocked_states_must_be_task_states_of_the_definition() {
        let config = config(
            json!({"Work": "R", "Inner": "R", "Start": "R", "Typo": "R"}),
            json!({"R": {"0": {"Return": 1}}}),
        );
        let sm = parse_definition(&json!({"StartAt": "Start", "States": {
            "Start": {"Type": "Pass", "Next": "Each"},
            "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
                "Inner": {"Type": "Task", "Resource": "r", "End": true}}}, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "r", "End": true}
        }}))
        .unwrap();
        let case = config.test_case(None, None).unwrap();
        assert_eq!(
            messages(case.check_against(&sm).unwrap_err()),
            [
                "StateMachines.M.TestCases.C.Start: state \"Start\" is a Pass state; only Task states can be mocked",
                "StateMachines.M.TestCases.C.Typo: the definition has no state named \"Typo\"",
            ]
        );
    }

    #[test]
    fn invocation_numbers_count_retries() {
        let config = config(
            json!({"Call": "Flaky"}),
            json!({"Flaky": {
                "0": {"Throw": {"Error": "Busy", "Cause": "first"}},
                "1-2": {"Throw": {"Error": "Busy", "Cause": "again"}},
                "3": {"Return": {"n": 3}}
            }}),
        );
        let definition = json!({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 60, "MaxAttempts": 3}],
            "End": true}}});
        let (outcome, tasks) = run(definition.clone(), json!({}), &config);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!({"n": 3})
            }
        );
        assert_eq!(tasks.invocations("Call"), 4);

        // One retry too few: the third failure is final and keeps the mocked error.
        let mut fewer = definition;
        fewer["States"]["Call"]["Retry"][0]["MaxAttempts"] = json!(2);
        let (outcome, _) = run(fewer, json!({}), &config);
        assert_eq!(outcome, Outcome::Failed(Failure::new("Busy", "again")));
    }

    #[test]
    fn map_iterations_and_loops_take_the_next_invocation() {
        let config = config(
            json!({"Roll": "Rolls", "Poll": "Polls"}),
            json!({
                "Rolls": {"0": {"Return": "a"}, "1": {"Return": "b"}, "2": {"Throw": {"Error": "Down"}}},
                "Polls": {"0-1": {"Return": {"done": false}}, "2": {"Return": {"done": true}}}
            }),
        );
        let definition = json!({"StartAt": "Each", "States": {
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
                "ItemProcessor": {"StartAt": "Roll", "States": {
                    "Roll": {"Type": "Task", "Resource": "deploy",
                        "Catch": [{"ErrorEquals": ["Down"], "Next": "Skipped"}],
                        "End": true},
                    "Skipped": {"Type": "Pass", "Result": "skipped", "End": true}}},
                "ResultPath": "$.rolled", "Next": "Poll"},
            "Poll": {"Type": "Task", "Resource": "status", "ResultPath": "$.status", "Next": "Done?"},
            "Done?": {"Type": "Choice",
                "Choices": [{"Variable": "$.status.done", "BooleanEquals": true, "Next": "End"}],
                "Default": "Poll"},
            "End": {"Type": "Pass", "InputPath": "$.rolled", "End": true}
        }});
        let (outcome, tasks) = run(definition, json!({"items": [1, 2, 3]}), &config);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!(["a", "b", "skipped"])
            }
        );
        assert_eq!(tasks.invocations("Roll"), 3);
        assert_eq!(tasks.invocations("Poll"), 3);
    }

    #[test]
    fn parallel_branches_are_mocked_by_state_name() {
        let config = config(
            json!({"Left": "L", "Right": "R"}),
            json!({"L": {"0": {"Return": "l"}}, "R": {"0": {"Return": "r"}}}),
        );
        let definition = json!({"StartAt": "Both", "States": {"Both": {"Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Task", "Resource": "x", "End": true}}},
                {"StartAt": "Right", "States": {"Right": {"Type": "Task", "Resource": "y", "End": true}}}
            ], "End": true}}});
        let (outcome, _) = run(definition, json!({}), &config);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!(["l", "r"])
            }
        );
    }

    #[test]
    fn unmocked_tasks_fail_with_runtime_errors_that_name_the_state() {
        let config = config(json!({"A": "Once"}), json!({"Once": {"0": {"Return": 1}}}));
        // States.Runtime is never caught, so a Catch-all cannot hide a missing mock.
        let catch_all = json!([{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]);
        let definition = json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "res:a", "Next": "Again", "Catch": catch_all},
            "Again": {"Type": "Task", "Resource": "res:a2", "Next": "B"},
            "B": {"Type": "Task", "Resource": "res:b", "End": true, "Catch": catch_all},
            "Caught": {"Type": "Succeed"}
        }});
        let (outcome, _) = run(definition, json!({}), &config);
        let Outcome::Failed(failure) = outcome else {
            panic!("expected a failure, got {outcome:?}")
        };
        assert_eq!(failure.error, "States.Runtime");
        assert_eq!(
            failure.cause,
            "Task state \"Again\" (resource res:a2) is not mocked in test case \"C\" of state machine \"M\""
        );

        // A second invocation with no key covering it.
        let config2 = self::config(
            json!({"A": "Once", "Again": "Once"}),
            json!({"Once": {"0": {"Return": 1}}}),
        );
        let looping = json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "res:a", "Next": "Again"},
            "Again": {"Type": "Task", "Resource": "res:a2", "Next": "Loop"},
            "Loop": {"Type": "Choice",
                "Choices": [{"Variable": "$", "IsPresent": false, "Next": "Done"}],
                "Default": "A"},
            "Done": {"Type": "Succeed"}
        }});
        let (outcome, _) = run(looping, json!({}), &config2);
        assert_eq!(
            outcome,
            Outcome::Failed(Failure::runtime(
                "Task state \"A\" (resource res:a) was invoked for the 2nd time (invocation 1), \
                 but mocked response \"Once\" has entries only for invocations 0"
            ))
        );

        // No mock configuration at all.
        let mut tasks = MockedTasks::new(None);
        let err = tasks.answer("Build", "arn:aws:states:::codebuild:startBuild.sync");
        assert_eq!(
            err,
            Err(TaskError::new(
                "States.Runtime",
                "Task state \"Build\" (resource arn:aws:states:::codebuild:startBuild.sync) has no \
                 mocked result: a local run calls no services, so give --mock-config with a test \
                 case that mocks \"Build\""
            ))
        );
    }

    #[test]
    fn waits_run_on_the_virtual_clock() {
        let config = config(json!({}), json!({}));
        let definition = json!({"StartAt": "Nap", "TimeoutSeconds": 7200, "States": {
            "Nap": {"Type": "Wait", "Seconds": 3600, "Next": "Nap2"},
            "Nap2": {"Type": "Wait", "Seconds": 3600, "End": true}}});
        let (outcome, _) = run(definition, json!({"x": 1}), &config);
        assert_eq!(outcome.status(), "TIMED_OUT");
    }

    #[test]
    fn keys_and_ordinals() {
        assert_eq!(parse_key("0"), Some((0, 0)));
        assert_eq!(parse_key("12-12"), Some((12, 12)));
        assert_eq!(parse_key("1-2"), Some((1, 2)));
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "1-2-3",
            "a",
            "1.0",
            "99999999999999999999",
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
