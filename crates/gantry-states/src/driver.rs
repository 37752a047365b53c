//! A small in-memory driver: runs an execution to completion with tasks answered by a
//! closure and timers fired on a virtual clock (no sleeping).

use crate::definition::{StateMachine, parse_definition};
use crate::error::ValidationErrors;
use crate::execution::{Action, Event, Execution, ExecutionInfo, Outcome};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The current time, in epoch milliseconds.
pub trait Clock {
    /// Now.
    fn now_millis(&self) -> i64;
}

/// A source of random seeds.
pub trait Random {
    /// A random `u64`.
    fn next_u64(&mut self) -> u64;
}

/// A clock that always says the same time (the virtual clock then moves with timers).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.0
    }
}

/// A deterministic seed source.
#[derive(Debug, Clone, Copy)]
pub struct SeededRandom(pub u64);

impl Random for SeededRandom {
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
}

/// A task's failure, as a task handler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The error name (e.g. `Lambda.Unknown`, `MyError`).
    pub error: String,
    /// The cause.
    pub cause: String,
}

impl TaskError {
    /// A task error.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskError {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// A finished local run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The journal it was derived from (replayable).
    pub journal: Vec<Event>,
    /// The finished execution (history, ...).
    pub execution: Execution,
}

/// Runs `definition` on `input` in memory, answering each task with `task_handler(resource, input)`.
///
/// Timers (Wait states, retry delays, timeouts) fire on a virtual clock that starts at
/// `2024-01-01T00:00:00Z`, so runs are fast and reproducible.
pub fn run_local(
    definition: &Value,
    input: Value,
    task_handler: impl FnMut(&str, &Value) -> Result<Value, TaskError>,
) -> Result<RunResult, ValidationErrors> {
    let sm = parse_definition(definition)?;
    Ok(run_machine(
        Arc::new(sm),
        input,
        &FixedClock(1_704_067_200_000),
        &mut SeededRandom(42),
        task_handler,
    ))
}

/// Runs an already parsed machine with the given clock and randomness.
pub fn run_machine(
    sm: Arc<StateMachine>,
    input: Value,
    clock: &dyn Clock,
    random: &mut dyn Random,
    task_handler: impl FnMut(&str, &Value) -> Result<Value, TaskError>,
) -> RunResult {
    run_execution(Execution::new(sm), input, clock, random, task_handler)
}

/// Runs a new execution (e.g. one made [`Execution::without_history_limit`])
/// with the given clock and randomness.
pub fn run_execution(
    mut exec: Execution,
    input: Value,
    clock: &dyn Clock,
    random: &mut dyn Random,
    mut task_handler: impl FnMut(&str, &Value) -> Result<Value, TaskError>,
) -> RunResult {
    let start = clock.now_millis();
    let info = ExecutionInfo {
        execution_id: "arn:aws:states:local:000000000000:execution:local:local-run".into(),
        execution_name: "local-run".into(),
        state_machine_id: "arn:aws:states:local:000000000000:stateMachine:local".into(),
        state_machine_name: "local".into(),
        role_arn: None,
    };
    let mut queue: VecDeque<Action> = exec
        .step(Event::Started {
            input,
            info,
            seed: random.next_u64(),
            at: start,
        })
        .into();
    let mut now = start;
    let mut timers: BTreeMap<(i64, u64), String> = BTreeMap::new();
    let mut timer_seq = 0u64;
    loop {
        while let Some(a) = queue.pop_front() {
            match a {
                Action::ScheduleTask {
                    token,
                    resource,
                    input,
                    ..
                } => {
                    let ev = match task_handler(&resource, &input) {
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
                    queue.extend(exec.step(ev));
                }
                Action::StartTimer { id, at } => {
                    timer_seq += 1;
                    timers.insert((at, timer_seq), id);
                }
                Action::CancelTimer { id } => timers.retain(|_, v| *v != id),
                Action::CancelTask { .. } => {}
                Action::Complete(outcome) => {
                    let journal = exec.journal().to_vec();
                    return RunResult {
                        outcome,
                        journal,
                        execution: exec,
                    };
                }
            }
        }
        let Some(((at, _), id)) = timers.pop_first() else {
            // Nothing left to wait for: cannot happen for a well-formed run.
            let outcome = Outcome::Failed(crate::error::Failure::runtime(
                "the execution is stuck with nothing pending",
            ));
            let journal = exec.journal().to_vec();
            return RunResult {
                outcome,
                journal,
                execution: exec,
            };
        };
        now = now.max(at);
        queue.extend(exec.step(Event::TimerFired { id, at: now }));
    }
}
