//! The typed model of an Amazon States Language definition.

use crate::choice::Rule;
use crate::path::ReferencePath;
use crate::retry::{Catcher, Retrier};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `JSONPath` (the default) or `JSONata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryLanguage {
    /// Paths, `.$` keys and intrinsic functions.
    #[default]
    JsonPath,
    /// `{% ... %}` expressions (a subset; see docs/states.md).
    Jsonata,
}

/// A state machine or a closed sub-machine (a Parallel branch, a Map processor).
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    /// `StartAt`.
    pub start_at: String,
    /// `States`, by name.
    pub states: BTreeMap<String, State>,
    /// `TimeoutSeconds` (top level only).
    pub timeout_seconds: Option<u64>,
    /// `Comment`.
    pub comment: Option<String>,
    /// The machine-level query language.
    pub query_language: QueryLanguage,
}

/// A number given statically, by path, or by JSONata expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Dynamic<T> {
    /// A literal.
    Static(T),
    /// A reference path (`...Path` field).
    Path(String),
    /// A JSONata expression.
    Expr(String),
}

/// One state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Its name.
    pub name: String,
    /// Its effective query language.
    pub query_language: QueryLanguage,
    /// `Next` (or `None` with `End: true`, or for Choice/Succeed/Fail).
    pub next: Option<String>,
    /// `InputPath` (`None` = `null`: the effective input is `{}`).
    pub input_path: Option<String>,
    /// `OutputPath` (`None` = `null`: the output is `{}`).
    pub output_path: Option<String>,
    /// `Parameters` (JSONPath) or `Arguments` (JSONata).
    pub parameters: Option<Value>,
    /// `ResultSelector`.
    pub result_selector: Option<Value>,
    /// `ResultPath` (`None` = `null`: discard the result).
    pub result_path: Option<ReferencePath>,
    /// JSONata `Output`.
    pub output: Option<Value>,
    /// `Assign`.
    pub assign: Option<Value>,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
    /// What kind of state it is.
    pub kind: Kind,
}

/// The type-specific part of a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `Task`.
    Task {
        /// `Resource`.
        resource: String,
        /// `TimeoutSeconds`/`TimeoutSecondsPath`.
        timeout: Option<Dynamic<u64>>,
        /// `HeartbeatSeconds`/`HeartbeatSecondsPath`.
        heartbeat: Option<Dynamic<u64>>,
        /// `Credentials`.
        credentials: Option<Value>,
    },
    /// `Pass`.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// `Choice`.
    Choice {
        /// `Choices`.
        choices: Vec<ChoiceBranch>,
        /// `Default`.
        default: Option<String>,
    },
    /// `Wait`.
    Wait(WaitFor),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail {
        /// `Error` / `ErrorPath`.
        error: Option<Dynamic<String>>,
        /// `Cause` / `CausePath`.
        cause: Option<Dynamic<String>>,
    },
    /// `Parallel`.
    Parallel {
        /// `Branches`.
        branches: Vec<Arc<StateMachine>>,
    },
    /// `Map`.
    Map(Box<MapSpec>),
}

/// A top-level Choice rule with its target.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceBranch {
    /// The condition.
    pub rule: Rule,
    /// Where to go when it holds.
    pub next: String,
    /// Variables to assign when it is taken.
    pub assign: Option<Value>,
    /// JSONata `Output` when it is taken.
    pub output: Option<Value>,
}

/// How long a Wait state waits.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    /// `Seconds` / `SecondsPath`.
    Seconds(Dynamic<u64>),
    /// `Timestamp` / `TimestampPath`.
    Timestamp(Dynamic<String>),
}

/// The fields of a Map state.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    /// `ItemProcessor` (or the older `Iterator`).
    pub processor: Arc<StateMachine>,
    /// `ItemsPath` (default `$`).
    pub items_path: String,
    /// JSONata `Items`.
    pub items: Option<Value>,
    /// `ItemSelector` (or the older `Parameters`).
    pub item_selector: Option<Value>,
    /// `MaxConcurrency` (0 = unlimited).
    pub max_concurrency: Dynamic<u64>,
    /// `ToleratedFailureCount`.
    pub tolerated_failure_count: Option<u64>,
    /// `ToleratedFailurePercentage`.
    pub tolerated_failure_percentage: Option<f64>,
}
