//! The interpreter proper: threads (the top level, Parallel branches, Map iterations),
//! state entry, waits, retries and catches.

use super::io::{self, Scope};
use super::journal::{Action, Event, ExecutionInfo, HistoryEvent, Outcome};
use crate::definition::{Dynamic, Kind, QueryLanguage, State, StateMachine, WaitFor};
use crate::error::{Failure, errors};
use crate::intrinsics::{self, Entropy};
use crate::path::{self, Context, Roots};
use crate::retry;
use crate::timestamp;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// AWS fails an execution whose history grows past 25,000 events; this also bounds loops.
const MAX_HISTORY_EVENTS: usize = 25_000;

const EXECUTION_TIMEOUT_TIMER: &str = "execution-timeout";

/// One running execution, derived from its journal.
#[derive(Debug, Clone)]
pub struct Execution {
    definition: Arc<StateMachine>,
    journal: Vec<Event>,
    root: Option<Thread>,
    outcome: Option<Outcome>,
    core: Core,
}

#[derive(Debug, Clone, Default)]
struct Core {
    rng: u64,
    seq: u64,
    now: i64,
    /// Shared with the context objects that may be built from them.
    info: Arc<ExecutionInfo>,
    input: Arc<Value>,
    start_time: i64,
    waiting: BTreeMap<String, Vec<usize>>,
    actions: Vec<Action>,
    history: Vec<HistoryEvent>,
    /// The host's secret for task tokens (see [`Execution::with_task_token_key`]).
    token_key: Option<[u8; 32]>,
    /// The most history events before the execution fails (`None`: no limit).
    history_limit: Option<usize>,
}

impl Entropy for Core {
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Core {
    /// JSONata's time and random seed, read from the core's state without drawing
    /// from it (so JSONata never shifts the IDs and tokens drawn later) and identical
    /// on replay. The history length and the thread's path (branch, iteration) make
    /// the seed differ between states and between Map iterations.
    fn ambient(&self, path: &[usize]) -> crate::jsonata::Ambient {
        let mut seed = self.rng
            ^ self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (self.history.len() as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        for &p in path {
            seed = (seed ^ p as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        crate::jsonata::Ambient {
            now_millis: self.now,
            seed,
        }
    }

    fn id(&mut self, kind: &str) -> String {
        self.seq += 1;
        let r = self.next_u64();
        format!("{kind}-{}-{r:016x}", self.seq)
    }
    /// A task token: `core.id("task")` unless the host gave a key, in which case the
    /// token also carries a keyed SHA-256 of its sequence number and random draw, so
    /// that nobody without the key can derive a token from the journal (which holds
    /// the seed) or from another token.
    fn task_token(&mut self) -> String {
        let Some(key) = self.token_key else {
            return self.id("task");
        };
        use sha2::{Digest, Sha256};
        self.seq += 1;
        let r = self.next_u64();
        let mut h = Sha256::new();
        h.update(key);
        h.update(self.seq.to_le_bytes());
        h.update(r.to_le_bytes());
        let mac: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("task-{}-{mac}", self.seq)
    }
    fn record(&mut self, kind: impl Into<String>, details: Value) {
        let id = self.history.len() as u64 + 1;
        self.history.push(HistoryEvent {
            id,
            timestamp: self.now,
            kind: kind.into(),
            details,
        });
    }
    fn start_timer(&mut self, path: &[usize], at: i64) -> String {
        let id = self.id("timer");
        self.waiting.insert(id.clone(), path.to_vec());
        self.actions.push(Action::StartTimer { id: id.clone(), at });
        id
    }
}

#[derive(Debug, Clone)]
struct Thread {
    machine: Arc<StateMachine>,
    vars: Map<String, Value>,
    current: Option<Running>,
    result: Option<Result<Value, Failure>>,
}

#[derive(Debug, Clone)]
struct Running {
    state: String,
    input: Value,
    entered_at: i64,
    retry_counts: Vec<u64>,
    retries: u64,
    wait: Wait,
}

#[derive(Debug, Clone)]
enum Wait {
    None,
    Task {
        token: String,
        timeout: Option<String>,
        heartbeat: Option<(String, u64)>,
    },
    Timer(String),
    Retry(String),
    Children {
        children: Vec<Thread>,
        map: Option<MapRun>,
    },
}

#[derive(Debug, Clone)]
struct MapRun {
    pending: Vec<Value>,
    started: usize,
    max: usize,
    failures: u64,
}

enum Step {
    Goto(String, Value),
    End(Value),
    Fail(Failure),
    Blocked,
}

fn state_type(k: &Kind) -> &'static str {
    match k {
        Kind::Task { .. } => "Task",
        Kind::Pass { .. } => "Pass",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map(_) => "Map",
    }
}

/// The context object `$$` of the running state, built only when a path
/// reads it: what it needs is captured cheaply (shared, not copied).
fn context<'a>(
    core: &Core,
    r: &Running,
    token: Option<&str>,
    item: Option<(usize, &Value)>,
) -> Context<'a> {
    let info = core.info.clone();
    let input = core.input.clone();
    let start_time = core.start_time;
    let (entered_at, state, retries) = (r.entered_at, r.state.clone(), r.retries);
    let token = token.map(str::to_owned);
    let item = item.map(|(i, v)| (i, v.clone()));
    Context::lazy(move || {
        let mut c = json!({
            "Execution": {
                "Id": info.execution_id,
                "Input": *input,
                "Name": info.execution_name,
                "RoleArn": info.role_arn,
                "StartTime": timestamp::format_millis(start_time),
                "RedriveCount": 0,
            },
            "State": {"EnteredTime": timestamp::format_millis(entered_at), "Name": state, "RetryCount": retries},
            "StateMachine": {"Id": info.state_machine_id, "Name": info.state_machine_name},
        });
        if let Some(t) = &token {
            c["Task"] = json!({"Token": t});
        }
        if let Some((i, v)) = &item {
            c["Map"] = json!({"Item": {"Index": i, "Value": v}});
        }
        c
    })
}

impl Execution {
    /// A not-yet-started execution of a parsed definition; feed it [`Event::Started`].
    pub fn new(definition: Arc<StateMachine>) -> Self {
        Execution {
            definition,
            journal: Vec::new(),
            root: None,
            outcome: None,
            core: Core {
                history_limit: Some(MAX_HISTORY_EVENTS),
                ..Core::default()
            },
        }
    }

    /// Lifts the 25,000-event history limit, as for Express workflows
    /// (AWS keeps no history for those, so it sets no such limit). Standard
    /// executions keep it: it is also what stops a runaway loop.
    pub fn without_history_limit(mut self) -> Self {
        self.core.history_limit = None;
        self
    }

    /// Makes task tokens unguessable: each token then includes a keyed hash under
    /// `key`, a secret the host keeps outside the journal. Set it before the first
    /// event, and again (the same key) before replaying a journal.
    pub fn with_task_token_key(mut self, key: [u8; 32]) -> Self {
        self.core.token_key = Some(key);
        self
    }

    /// Rebuilds an execution from its journal; returns it with the actions the last
    /// event produced (earlier actions are assumed already carried out).
    pub fn replay(definition: Arc<StateMachine>, journal: &[Event]) -> (Self, Vec<Action>) {
        let mut e = Execution::new(definition);
        let mut last = Vec::new();
        for ev in journal {
            last = e.step(ev.clone());
        }
        (e, last)
    }

    /// The journal so far (every event applied, in order).
    pub fn journal(&self) -> &[Event] {
        &self.journal
    }

    /// The AWS-style history derived from the journal.
    pub fn history(&self) -> &[HistoryEvent] {
        &self.core.history
    }

    /// How the execution ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Task tokens and timer ids the execution is waiting on.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.core.waiting.keys().map(String::as_str)
    }

    /// Applies one event and returns the actions to perform. Events for unknown tokens or
    /// timers (late, duplicate, cancelled) and events after completion are recorded but change nothing.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        self.journal.push(event.clone());
        if self.outcome.is_some() {
            return Vec::new();
        }
        self.core.now = self.core.now.max(event.at());
        match event {
            Event::Started {
                input,
                info,
                seed,
                at,
            } => {
                if self.root.is_some() {
                    return Vec::new();
                }
                self.core.rng = seed;
                self.core.info = Arc::new(info);
                self.core.input = Arc::new(input.clone());
                self.core.start_time = at;
                self.core
                    .record("ExecutionStarted", json!({"input": input}));
                if let Some(t) = self.definition.timeout_seconds {
                    self.core
                        .waiting
                        .insert(EXECUTION_TIMEOUT_TIMER.into(), Vec::new());
                    self.core.actions.push(Action::StartTimer {
                        id: EXECUTION_TIMEOUT_TIMER.into(),
                        at: at + t as i64 * 1000,
                    });
                }
                let mut root = Thread {
                    machine: self.definition.clone(),
                    vars: Map::new(),
                    current: None,
                    result: None,
                };
                let start = root.machine.start_at.clone();
                drive(&mut root, &[], Step::Goto(start, input), &mut self.core);
                self.root = Some(root);
            }
            Event::Stopped { error, cause, .. } => {
                let f = Failure::new(error.unwrap_or_default(), cause.unwrap_or_default());
                self.finish(Outcome::Aborted(f));
            }
            Event::TimerFired { ref id, .. } if id == EXECUTION_TIMEOUT_TIMER => {
                if self.core.waiting.remove(id).is_some() {
                    self.finish(Outcome::TimedOut(Failure::new(
                        errors::TIMEOUT,
                        "The execution ran longer than its TimeoutSeconds",
                    )));
                }
            }
            other => {
                let key = match &other {
                    Event::TaskSucceeded { token, .. }
                    | Event::TaskFailed { token, .. }
                    | Event::TaskHeartbeat { token, .. } => token.clone(),
                    Event::TimerFired { id, .. } => id.clone(),
                    _ => String::new(),
                };
                if let (Some(p), Some(root)) =
                    (self.core.waiting.get(&key).cloned(), self.root.as_mut())
                {
                    deliver(root, &p, 0, &key, &other, &mut self.core);
                }
            }
        }
        if self.outcome.is_none()
            && let Some(res) = self.root.as_ref().and_then(|r| r.result.clone())
        {
            match res {
                Ok(output) => {
                    self.core
                        .record("ExecutionSucceeded", json!({"output": output}));
                    self.finish(Outcome::Succeeded { output });
                }
                Err(f) => {
                    self.core.record(
                        "ExecutionFailed",
                        json!({"error": f.error, "cause": f.cause}),
                    );
                    self.finish(Outcome::Failed(f));
                }
            }
        }
        std::mem::take(&mut self.core.actions)
    }

    fn finish(&mut self, outcome: Outcome) {
        match &outcome {
            Outcome::TimedOut(f) => self.core.record(
                "ExecutionTimedOut",
                json!({"error": f.error, "cause": f.cause}),
            ),
            Outcome::Aborted(f) => self.core.record(
                "ExecutionAborted",
                json!({"error": f.error, "cause": f.cause}),
            ),
            _ => {}
        }
        if let Some(root) = self.root.as_mut() {
            cancel(root, &mut self.core);
        }
        for id in std::mem::take(&mut self.core.waiting).into_keys() {
            self.core.actions.push(Action::CancelTimer { id });
        }
        self.core.actions.push(Action::Complete(outcome.clone()));
        self.outcome = Some(outcome);
    }
}

/// Cancels everything a thread (and its children) waits on.
fn cancel(t: &mut Thread, core: &mut Core) {
    let Some(r) = t.current.as_mut() else { return };
    match std::mem::replace(&mut r.wait, Wait::None) {
        Wait::Task {
            token,
            timeout,
            heartbeat,
        } => {
            core.waiting.remove(&token);
            core.actions.push(Action::CancelTask { token });
            for id in timeout.into_iter().chain(heartbeat.map(|h| h.0)) {
                core.waiting.remove(&id);
                core.actions.push(Action::CancelTimer { id });
            }
        }
        Wait::Timer(id) | Wait::Retry(id) => {
            core.waiting.remove(&id);
            core.actions.push(Action::CancelTimer { id });
        }
        Wait::Children { mut children, .. } => {
            for c in &mut children {
                cancel(c, core);
            }
        }
        Wait::None => {}
    }
}

fn drive(t: &mut Thread, path: &[usize], mut step: Step, core: &mut Core) {
    loop {
        step = match step {
            Step::Goto(name, input) => enter(t, path, name, input, core),
            Step::End(output) => {
                t.current = None;
                t.result = Some(Ok(output));
                return;
            }
            Step::Fail(f) => {
                t.current = None;
                t.result = Some(Err(f));
                return;
            }
            Step::Blocked => return,
        }
    }
}

fn enter(t: &mut Thread, path: &[usize], name: String, input: Value, core: &mut Core) -> Step {
    let machine = t.machine.clone();
    let Some(st) = machine.states.get(&name) else {
        return Step::Fail(Failure::runtime(format!("state \"{name}\" does not exist")));
    };
    if core
        .history_limit
        .is_some_and(|limit| core.history.len() >= limit)
    {
        return Step::Fail(Failure::runtime(format!(
            "The execution exceeded the limit of {MAX_HISTORY_EVENTS} history events"
        )));
    }
    core.record(
        format!("{}StateEntered", state_type(&st.kind)),
        json!({"name": name, "input": input}),
    );
    t.current = Some(Running {
        state: name,
        input,
        entered_at: core.now,
        retry_counts: vec![0; st.retry.len()],
        retries: 0,
        wait: Wait::None,
    });
    run(t, path, st, core)
}

fn transition(t: &mut Thread, st: &State, output: Value, core: &mut Core) -> Step {
    core.record(
        format!("{}StateExited", state_type(&st.kind)),
        json!({"name": st.name, "output": output}),
    );
    t.current = None;
    match &st.next {
        Some(n) => Step::Goto(n.clone(), output),
        None => Step::End(output),
    }
}

fn apply_assign(t: &mut Thread, new: Option<Map<String, Value>>) {
    if let Some(m) = new {
        t.vars.extend(m);
    }
}

/// Runs (or re-runs, after a retry delay) the current state.
fn run(t: &mut Thread, path: &[usize], st: &State, core: &mut Core) -> Step {
    match run_inner(t, path, st, core) {
        Ok(step) => step,
        Err(f) => handle_failure(t, path, st, f, core),
    }
}

fn run_inner(t: &mut Thread, path: &[usize], st: &State, core: &mut Core) -> Result<Step, Failure> {
    let Some(r) = t.current.as_ref() else {
        return Ok(Step::Blocked);
    };
    let ctx = context(core, r, None, None);
    let raw = r.input.clone();
    let vars = t.vars.clone();
    let scope = Scope {
        input: &raw,
        context: &ctx,
        vars: &vars,
        ambient: core.ambient(path),
    };
    let effective = io::effective_input(st, &scope)?;
    match &st.kind {
        Kind::Pass { result } => {
            let res = match result {
                Some(r) if st.query_language == QueryLanguage::JsonPath => r.clone(),
                _ => io::parameters(st, &scope, &effective, st.parameters.as_ref(), core)?,
            };
            let (result, out_res) = if st.query_language == QueryLanguage::Jsonata {
                (None, result.clone())
            } else {
                (Some(res), None)
            };
            let assigned = io::assign(
                st.query_language,
                st.assign.as_ref(),
                &scope,
                out_res.as_ref(),
                None,
                core,
            )?;
            let out = io::output(st, &scope, result, None)?;
            apply_assign(t, assigned);
            Ok(transition(t, st, out, core))
        }
        Kind::Succeed => {
            let out = if st.query_language == QueryLanguage::Jsonata {
                io::output(st, &scope, None, None)?
            } else {
                io::filter_output(st, &scope, effective)?
            };
            core.record(
                "SucceedStateExited",
                json!({"name": st.name, "output": out}),
            );
            t.current = None;
            Ok(Step::End(out))
        }
        Kind::Fail { error, cause } => {
            let eval = |d: &Option<Dynamic<String>>, field: &str| -> Result<String, Failure> {
                Ok(match d {
                    None => String::new(),
                    Some(Dynamic::Static(s)) => s.clone(),
                    Some(Dynamic::Path(p)) => {
                        let v = if intrinsics::is_intrinsic(p) {
                            intrinsics::evaluate(
                                p,
                                Roots {
                                    input: &raw,
                                    context: &ctx,
                                    variables: &vars,
                                },
                                &mut Fixed(0),
                            )?
                        } else {
                            path::read(
                                p,
                                Roots {
                                    input: &raw,
                                    context: &ctx,
                                    variables: &vars,
                                },
                            )
                            .map_err(|e| Failure::runtime(e.to_string()))?
                        };
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    }
                    Some(Dynamic::Expr(e)) => {
                        let v = scope.jsonata_expr(field, e)?;
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    }
                })
            };
            let f = Failure::new(eval(error, "Error")?, eval(cause, "Cause")?);
            t.current = None;
            Ok(Step::Fail(f))
        }
        Kind::Choice { choices, default } => {
            let roots = Roots {
                input: &effective,
                context: &ctx,
                variables: &vars,
            };
            let jsonata = |e: &str| scope.jsonata_expr("Condition", e);
            for c in choices {
                if c.rule.evaluate(roots, &jsonata)? {
                    let assigned = io::assign(
                        st.query_language,
                        c.assign.as_ref().or(st.assign.as_ref()),
                        &scope,
                        None,
                        None,
                        core,
                    )?;
                    let out = if st.query_language == QueryLanguage::Jsonata {
                        io::output(st, &scope, None, c.output.as_ref())?
                    } else {
                        io::filter_output(st, &scope, effective.clone())?
                    };
                    apply_assign(t, assigned);
                    core.record("ChoiceStateExited", json!({"name": st.name, "output": out}));
                    t.current = None;
                    return Ok(Step::Goto(c.next.clone(), out));
                }
            }
            match default {
                Some(d) => {
                    let assigned = io::assign(
                        st.query_language,
                        st.assign.as_ref(),
                        &scope,
                        None,
                        None,
                        core,
                    )?;
                    let out = if st.query_language == QueryLanguage::Jsonata {
                        io::output(st, &scope, None, None)?
                    } else {
                        io::filter_output(st, &scope, effective)?
                    };
                    apply_assign(t, assigned);
                    core.record("ChoiceStateExited", json!({"name": st.name, "output": out}));
                    t.current = None;
                    Ok(Step::Goto(d.clone(), out))
                }
                None => Err(Failure::new(
                    errors::NO_CHOICE_MATCHED,
                    format!("No Matches! (state '{}')", st.name),
                )),
            }
        }
        Kind::Wait(w) => {
            let roots = Roots {
                input: &effective,
                context: &ctx,
                variables: &vars,
            };
            let at = match w {
                WaitFor::Seconds(d) => {
                    core.now + dyn_u64(d, roots, &scope, "SecondsPath")? as i64 * 1000
                }
                WaitFor::Timestamp(d) => {
                    let s = match d {
                        Dynamic::Static(s) => s.clone(),
                        Dynamic::Path(p) => path::read(p, roots)
                            .map_err(|e| Failure::runtime(e.to_string()))?
                            .as_str()
                            .map(String::from)
                            .ok_or_else(|| {
                                Failure::runtime(format!(
                                    "TimestampPath '{p}' must point at a string"
                                ))
                            })?,
                        Dynamic::Expr(e) => scope
                            .jsonata_expr("Timestamp", e)?
                            .as_str()
                            .map(String::from)
                            .ok_or_else(|| {
                                Failure::new(
                                    errors::QUERY_EVALUATION_ERROR,
                                    "Timestamp must be a string",
                                )
                            })?,
                    };
                    timestamp::parse_millis(&s).ok_or_else(|| {
                        Failure::runtime(format!("'{s}' is not a valid timestamp"))
                    })?
                }
            };
            let id = core.start_timer(path, at);
            if let Some(r) = t.current.as_mut() {
                r.wait = Wait::Timer(id);
            }
            Ok(Step::Blocked)
        }
        Kind::Task {
            resource,
            timeout,
            heartbeat,
            credentials,
        } => {
            let token = core.task_token();
            let tctx = context(core, r, Some(&token), None);
            let tscope = Scope {
                input: &raw,
                context: &tctx,
                vars: &vars,
                ambient: core.ambient(path),
            };
            let params = io::parameters(st, &tscope, &effective, st.parameters.as_ref(), core)?;
            let roots = Roots {
                input: &effective,
                context: &tctx,
                variables: &vars,
            };
            let timeout = timeout
                .as_ref()
                .map(|d| dyn_u64(d, roots, &tscope, "TimeoutSecondsPath"))
                .transpose()?;
            let heartbeat = heartbeat
                .as_ref()
                .map(|d| dyn_u64(d, roots, &tscope, "HeartbeatSecondsPath"))
                .transpose()?;
            let credentials = match credentials {
                Some(c) if st.query_language == QueryLanguage::JsonPath => {
                    Some(crate::payload::evaluate(c, roots, core)?)
                }
                Some(c) => Some(tscope.jsonata("Credentials", c, None, None)?),
                None => None,
            };
            core.waiting.insert(token.clone(), path.to_vec());
            core.record(
                "TaskScheduled",
                json!({"resource": resource, "parameters": params,
                       "timeout_seconds": timeout, "heartbeat_seconds": heartbeat}),
            );
            core.actions.push(Action::ScheduleTask {
                token: token.clone(),
                state: st.name.clone(),
                resource: resource.clone(),
                input: params,
                timeout_seconds: timeout,
                heartbeat_seconds: heartbeat,
                credentials,
            });
            let now = core.now;
            let timeout_timer = timeout.map(|s| core.start_timer(path, now + s as i64 * 1000));
            let hb = heartbeat.map(|s| (core.start_timer(path, now + s as i64 * 1000), s));
            if let Some(r) = t.current.as_mut() {
                r.wait = Wait::Task {
                    token,
                    timeout: timeout_timer,
                    heartbeat: hb,
                };
            }
            Ok(Step::Blocked)
        }
        Kind::Parallel { branches } => {
            let input = io::parameters(st, &scope, &effective, st.parameters.as_ref(), core)?;
            core.record("ParallelStateStarted", json!({"name": st.name}));
            let mut children = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                let mut child = Thread {
                    machine: b.clone(),
                    vars: vars.clone(),
                    current: None,
                    result: None,
                };
                let mut p = path.to_vec();
                p.push(i);
                drive(
                    &mut child,
                    &p,
                    Step::Goto(b.start_at.clone(), input.clone()),
                    core,
                );
                children.push(child);
            }
            if let Some(r) = t.current.as_mut() {
                r.wait = Wait::Children {
                    children,
                    map: None,
                };
            }
            Ok(check_children(t, path, st, core))
        }
        Kind::Map(m) => {
            let items = match (st.query_language, &m.items) {
                (QueryLanguage::Jsonata, Some(it)) => scope.jsonata("Items", it, None, None)?,
                (QueryLanguage::Jsonata, None) => effective.clone(),
                _ => path::read(
                    &m.items_path,
                    Roots {
                        input: &effective,
                        context: &ctx,
                        variables: &vars,
                    },
                )
                .map_err(|e| Failure::runtime(format!("ItemsPath: {e}")))?,
            };
            let Value::Array(items) = items else {
                return Err(Failure::runtime(format!(
                    "Item selection in state '{}' did not produce an array",
                    st.name
                )));
            };
            let max = match &m.max_concurrency {
                Dynamic::Static(n) => *n,
                d => dyn_u64(
                    d,
                    Roots {
                        input: &effective,
                        context: &ctx,
                        variables: &vars,
                    },
                    &scope,
                    "MaxConcurrencyPath",
                )?,
            } as usize;
            let mut selected = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ictx = context(core, r, None, Some((i, item)));
                let v = match &m.item_selector {
                    None => item.clone(),
                    Some(sel) => match st.query_language {
                        QueryLanguage::JsonPath => crate::payload::evaluate(
                            sel,
                            Roots {
                                input: &effective,
                                context: &ictx,
                                variables: &vars,
                            },
                            core,
                        )?,
                        QueryLanguage::Jsonata => Scope {
                            input: &raw,
                            context: &ictx,
                            vars: &vars,
                            ambient: core.ambient(path),
                        }
                        .jsonata("ItemSelector", sel, None, None)?,
                    },
                };
                selected.push(v);
            }
            core.record("MapStateStarted", json!({"length": selected.len()}));
            if let Some(r) = t.current.as_mut() {
                r.wait = Wait::Children {
                    children: Vec::new(),
                    map: Some(MapRun {
                        pending: selected,
                        started: 0,
                        max,
                        failures: 0,
                    }),
                };
            }
            Ok(check_children(t, path, st, core))
        }
    }
}

struct Fixed(u64);
impl Entropy for Fixed {
    fn next_u64(&mut self) -> u64 {
        self.0
    }
}

fn dyn_u64(
    d: &Dynamic<u64>,
    roots: Roots<'_>,
    scope: &Scope<'_>,
    field: &str,
) -> Result<u64, Failure> {
    let v = match d {
        Dynamic::Static(n) => return Ok(*n),
        Dynamic::Path(p) => {
            path::read(p, roots).map_err(|e| Failure::runtime(format!("{field}: {e}")))?
        }
        Dynamic::Expr(e) => scope.jsonata_expr(field.trim_end_matches("Path"), e)?,
    };
    v.as_u64().ok_or_else(|| {
        Failure::runtime(format!(
            "{field} must point at a non-negative integer, got {v}"
        ))
    })
}

/// Starts Map iterations as concurrency allows, and finishes the state when every child is done.
fn check_children(t: &mut Thread, path: &[usize], st: &State, core: &mut Core) -> Step {
    let Some(r) = t.current.as_mut() else {
        return Step::Blocked;
    };
    let Wait::Children { children, map } = &mut r.wait else {
        return Step::Blocked;
    };
    let vars = t.vars.clone();
    if let (Some(m), Kind::Map(spec)) = (map.as_mut(), &st.kind) {
        loop {
            let running = children.iter().filter(|c| c.result.is_none()).count();
            if m.started >= m.pending.len() || (m.max > 0 && running >= m.max) {
                break;
            }
            let i = m.started;
            m.started += 1;
            let mut child = Thread {
                machine: spec.processor.clone(),
                vars: vars.clone(),
                current: None,
                result: None,
            };
            let mut p = path.to_vec();
            p.push(i);
            core.record("MapIterationStarted", json!({"index": i}));
            let input = std::mem::take(&mut m.pending[i]);
            drive(
                &mut child,
                &p,
                Step::Goto(spec.processor.start_at.clone(), input),
                core,
            );
            children.push(child);
            // Failures are checked below; keep starting only while nothing has failed.
            if matches!(
                children.last().and_then(|c| c.result.as_ref()),
                Some(Err(_))
            ) {
                break;
            }
        }
    }
    // A failed child fails the state (Map: unless tolerated).
    let total = map
        .as_ref()
        .map(|m| m.pending.len())
        .unwrap_or(children.len());
    let failed: Vec<&Failure> = children
        .iter()
        .filter_map(|c| c.result.as_ref().and_then(|r| r.as_ref().err()))
        .collect();
    if let Some(first) = failed.first() {
        let first = (*first).clone();
        let tolerated = match &st.kind {
            Kind::Map(spec) => {
                let n = failed.len() as u64;
                let by_count = spec.tolerated_failure_count.is_some_and(|c| n <= c);
                let by_pct = spec
                    .tolerated_failure_percentage
                    .is_some_and(|p| total > 0 && (n as f64) * 100.0 / (total as f64) <= p);
                by_count || by_pct
            }
            _ => false,
        };
        if let Some(m) = map.as_mut() {
            m.failures = failed.len() as u64;
        }
        if !tolerated {
            let spec_tol = matches!(&st.kind, Kind::Map(s) if s.tolerated_failure_count.is_some() || s.tolerated_failure_percentage.is_some());
            for c in children.iter_mut() {
                cancel(c, core);
            }
            r.wait = Wait::None;
            let f = if spec_tol {
                Failure::new(
                    errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                    format!(
                        "The specified tolerated failure threshold was exceeded: {}",
                        first.cause
                    ),
                )
            } else {
                first
            };
            core.record(
                format!("{}StateFailed", state_type(&st.kind)),
                json!({"error": f.error, "cause": f.cause}),
            );
            return handle_failure(t, path, st, f, core);
        }
    }
    let all_started = map.as_ref().is_none_or(|m| m.started >= m.pending.len());
    if !all_started || children.iter().any(|c| c.result.is_none()) {
        return Step::Blocked;
    }
    let results: Vec<Value> = children
        .iter()
        .map(|c| match &c.result {
            Some(Ok(v)) => v.clone(),
            Some(Err(f)) => f.to_output(),
            None => Value::Null,
        })
        .collect();
    r.wait = Wait::None;
    core.record(
        format!("{}StateSucceeded", state_type(&st.kind)),
        json!({"name": st.name}),
    );
    finish_work(t, path, st, Value::Array(results), core)
}

/// A Task/Parallel/Map produced its raw result: ResultSelector, Assign, ResultPath, OutputPath.
fn finish_work(
    t: &mut Thread,
    path: &[usize],
    st: &State,
    raw_result: Value,
    core: &mut Core,
) -> Step {
    let res = (|| {
        let r = t
            .current
            .as_ref()
            .ok_or_else(|| Failure::runtime("no current state"))?;
        let ctx = context(core, r, None, None);
        let vars = t.vars.clone();
        let scope = Scope {
            input: &r.input,
            context: &ctx,
            vars: &vars,
            ambient: core.ambient(path),
        };
        let selected = io::select_result(st, &scope, raw_result, core)?;
        let assigned = io::assign(
            st.query_language,
            st.assign.as_ref(),
            &scope,
            Some(&selected),
            None,
            core,
        )?;
        let out = io::output(st, &scope, Some(selected), None)?;
        Ok::<_, Failure>((assigned, out))
    })();
    match res {
        Ok((assigned, out)) => {
            apply_assign(t, assigned);
            transition(t, st, out, core)
        }
        Err(f) => handle_failure(t, path, st, f, core),
    }
}

/// Retry if a retrier allows, else catch, else fail the thread.
fn handle_failure(t: &mut Thread, path: &[usize], st: &State, f: Failure, core: &mut Core) -> Step {
    let Some(r) = t.current.as_mut() else {
        return Step::Fail(f);
    };
    r.wait = Wait::None;
    if let Some(i) = st
        .retry
        .iter()
        .position(|ret| retry::error_matches(&ret.error_equals, &f.error))
    {
        let ret = &st.retry[i];
        if r.retry_counts[i] < ret.max_attempts {
            r.retry_counts[i] += 1;
            r.retries += 1;
            let rand = core.next_u64();
            let delay = ret.jittered_delay_millis(r.retry_counts[i], rand);
            let at = core
                .now
                .saturating_add(delay.min(i64::MAX as u64 / 4) as i64);
            let id = core.start_timer(path, at);
            if let Some(r) = t.current.as_mut() {
                r.wait = Wait::Retry(id);
            }
            return Step::Blocked;
        }
    }
    if let Some(c) = st
        .catch
        .iter()
        .find(|c| retry::error_matches(&c.error_equals, &f.error))
    {
        let err_out = f.to_output();
        let res = (|| {
            let ctx = context(core, r, None, None);
            let vars = t.vars.clone();
            let scope = Scope {
                input: &r.input,
                context: &ctx,
                vars: &vars,
                ambient: core.ambient(path),
            };
            let assigned = io::assign(
                st.query_language,
                c.assign.as_ref(),
                &scope,
                None,
                Some(&err_out),
                core,
            )?;
            let out = match st.query_language {
                QueryLanguage::Jsonata => match &c.output {
                    Some(o) => scope.jsonata("Output", o, None, Some(&err_out))?,
                    None => err_out.clone(),
                },
                QueryLanguage::JsonPath => match &c.result_path {
                    None => r.input.clone(),
                    Some(rp) => {
                        let mut doc = r.input.clone();
                        rp.set(&mut doc, err_out.clone())
                            .map_err(|e| Failure::new(errors::RESULT_PATH_MATCH_FAILURE, e))?;
                        doc
                    }
                },
            };
            Ok::<_, Failure>((assigned, out))
        })();
        return match res {
            Ok((assigned, out)) => {
                apply_assign(t, assigned);
                core.record(
                    format!("{}StateExited", state_type(&st.kind)),
                    json!({"name": st.name, "output": out, "caught": f.error}),
                );
                t.current = None;
                Step::Goto(c.next.clone(), out)
            }
            Err(e) => {
                t.current = None;
                Step::Fail(e)
            }
        };
    }
    t.current = None;
    Step::Fail(f)
}

/// Routes an event down the thread tree to the thread waiting on `key`.
fn deliver(t: &mut Thread, path: &[usize], depth: usize, key: &str, ev: &Event, core: &mut Core) {
    let machine = t.machine.clone();
    let Some(st) = t
        .current
        .as_ref()
        .and_then(|r| machine.states.get(&r.state))
    else {
        return;
    };
    let here = &path[..depth];
    if depth < path.len() {
        let idx = path[depth];
        let Some(Wait::Children { children, .. }) = t.current.as_mut().map(|r| &mut r.wait) else {
            return;
        };
        let Some(child) = children.get_mut(idx) else {
            return;
        };
        deliver(child, path, depth + 1, key, ev, core);
        if child.result.is_some() {
            let step = check_children(t, here, st, core);
            drive(t, here, step, core);
        }
        return;
    }
    let Some(r) = t.current.as_mut() else { return };
    let step = match (&mut r.wait, ev) {
        (
            Wait::Task {
                token,
                timeout,
                heartbeat,
            },
            _,
        ) => {
            let token = token.clone();
            let is_token = key == token;
            let outcome = match ev {
                Event::TaskSucceeded { output, .. } if is_token => Some(Ok(output.clone())),
                Event::TaskFailed { error, cause, .. } if is_token => {
                    Some(Err(Failure::new(error.clone(), cause.clone())))
                }
                Event::TaskHeartbeat { .. } if is_token => {
                    if let Some((id, secs)) = heartbeat.take() {
                        core.waiting.remove(&id);
                        core.actions.push(Action::CancelTimer { id });
                        let now = core.now;
                        *heartbeat = Some((core.start_timer(here, now + secs as i64 * 1000), secs));
                    }
                    None
                }
                Event::TimerFired { id, .. } if Some(id) == timeout.as_ref() => {
                    Some(Err(Failure::new(errors::TIMEOUT, "Task timed out")))
                }
                Event::TimerFired { id, .. } if Some(id) == heartbeat.as_ref().map(|h| &h.0) => {
                    Some(Err(Failure::new(
                        errors::HEARTBEAT_TIMEOUT,
                        "Task missed its heartbeat",
                    )))
                }
                _ => None,
            };
            let Some(outcome) = outcome else { return };
            let timers: Vec<String> = timeout
                .take()
                .into_iter()
                .chain(heartbeat.take().map(|h| h.0))
                .collect();
            core.waiting.remove(&token);
            for id in timers {
                if core.waiting.remove(&id).is_some() && id != key {
                    core.actions.push(Action::CancelTimer { id });
                }
            }
            r.wait = Wait::None;
            let resource = match &st.kind {
                Kind::Task { resource, .. } => resource.as_str(),
                _ => "",
            };
            match outcome {
                Ok(v) => {
                    core.record("TaskSucceeded", json!({"resource": resource, "output": v}));
                    finish_work(t, here, st, v, core)
                }
                Err(f) => {
                    if f.error == errors::TIMEOUT || f.error == errors::HEARTBEAT_TIMEOUT {
                        core.actions.push(Action::CancelTask { token });
                        core.record(
                            "TaskTimedOut",
                            json!({"resource": resource, "error": f.error, "cause": f.cause}),
                        );
                    } else {
                        core.record(
                            "TaskFailed",
                            json!({"resource": resource, "error": f.error, "cause": f.cause}),
                        );
                    }
                    handle_failure(t, here, st, f, core)
                }
            }
        }
        (Wait::Timer(id), Event::TimerFired { .. }) if id == key => {
            core.waiting.remove(key);
            r.wait = Wait::None;
            let res = (|| {
                let r = t
                    .current
                    .as_ref()
                    .ok_or_else(|| Failure::runtime("no current state"))?;
                let ctx = context(core, r, None, None);
                let vars = t.vars.clone();
                let scope = Scope {
                    input: &r.input,
                    context: &ctx,
                    vars: &vars,
                    ambient: core.ambient(path),
                };
                let assigned = io::assign(
                    st.query_language,
                    st.assign.as_ref(),
                    &scope,
                    None,
                    None,
                    core,
                )?;
                let out = if st.query_language == QueryLanguage::Jsonata {
                    io::output(st, &scope, None, None)?
                } else {
                    io::filter_output(st, &scope, io::effective_input(st, &scope)?)?
                };
                Ok::<_, Failure>((assigned, out))
            })();
            match res {
                Ok((a, out)) => {
                    apply_assign(t, a);
                    transition(t, st, out, core)
                }
                Err(f) => Step::Fail(f),
            }
        }
        (Wait::Retry(id), Event::TimerFired { .. }) if id == key => {
            core.waiting.remove(key);
            r.wait = Wait::None;
            run(t, here, st, core)
        }
        _ => return,
    };
    drive(t, here, step, core);
}
