//! JSONata 2.0 for Gantry: a lexer, a Pratt parser and an evaluator over
//! [`serde_json::Value`] with JSONata's sequence semantics and function library.
//!
//! No I/O: the time and randomness that `$now`, `$millis`, `$random` and `$shuffle`
//! need come from the caller's [`Host`], which can also add functions (Step Functions'
//! `$hash`, `$uuid`...). Untrusted expressions are bounded by [`Limits`]: nesting,
//! recursion depth and an evaluation step budget end in an error, never a panic or a
//! stack overflow.
//!
//! The parent operator `%` is supported within paths (not across `@`/`#` bindings).
//!
//! ```
//! use gantry_jsonata::{Expression, FixedHost, Limits};
//! use serde_json::{json, Map};
//!
//! let input = json!({"orders": [
//!     {"customer": "ann", "total": 5},
//!     {"customer": "bob", "total": 7},
//!     {"customer": "ann", "total": 3}
//! ]});
//! let expr = Expression::parse("orders{customer: $sum(total)}").unwrap();
//! let mut host = FixedHost::new(0, 42);
//! let out = expr.evaluate(Some(&input), &Map::new(), &mut host, Limits::default());
//! assert_eq!(out, Ok(Some(json!({"ann": 8, "bob": 7}))));
//!
//! // Errors carry JSONata's code and the offset.
//! let err = Expression::parse("orders[0").unwrap_err();
//! assert_eq!((err.code, err.position), ("S0203", Some(8)));
//! ```

mod ast;
mod datetime;
mod error;
mod eval;
mod format;
mod functions;
mod lexer;
mod parser;
mod signature;
mod text;
mod value;

pub use error::{Error, Result};

use serde_json::{Map, Value};
use std::rc::Rc;

/// What evaluation needs from its caller.
pub trait Host {
    /// Milliseconds since the Unix epoch for `$now()` and `$millis()` (read once per evaluation).
    fn now_millis(&mut self) -> i64;
    /// A uniformly random number in `[0, 1)`.
    fn random(&mut self) -> f64;
    /// Whether the host provides `$name`. Checked before the built-in functions, so a
    /// host can replace or withdraw one.
    fn has_function(&self, _name: &str) -> bool {
        false
    }
    /// Calls a host function; `None` arguments are undefined.
    fn call(&mut self, name: &str, _args: Vec<Option<Value>>) -> Result<Option<Value>> {
        Err(Error::new(
            "T1006",
            format!("Attempted to invoke a non-function: ${name}"),
        ))
    }
}

/// A host with a fixed time and a deterministic random sequence (tests, tools).
#[derive(Debug, Clone)]
pub struct FixedHost {
    /// What `$millis()` returns.
    pub now: i64,
    /// The random state (SplitMix64).
    pub seed: u64,
}

impl FixedHost {
    /// A host at `now` whose randomness starts from `seed`.
    pub fn new(now: i64, seed: u64) -> FixedHost {
        FixedHost { now, seed }
    }
}

/// SplitMix64: a small, good-enough generator for `$random` and `$shuffle`.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A double in `[0, 1)` from 53 random bits.
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Host for FixedHost {
    fn now_millis(&mut self) -> i64 {
        self.now
    }
    fn random(&mut self) -> f64 {
        unit_f64(splitmix(&mut self.seed))
    }
}

/// Bounds on one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nested evaluation frames (expression nesting plus function calls).
    pub max_depth: usize,
    /// Evaluation steps (nodes evaluated, items produced) before `U1002`.
    pub max_steps: u64,
    /// How deeply constructed arrays and objects may nest.
    pub max_nesting: usize,
    /// Stack bytes evaluation may use below where it started (a guard that holds
    /// whatever the frame sizes of the build).
    pub max_stack_bytes: usize,
    /// Whether an unbound `$name` is an error (`T1007`) rather than undefined.
    /// Step Functions wants this: reading an unassigned variable is an error.
    pub strict_variables: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 2000,
            max_steps: 2_000_000,
            max_nesting: 500,
            max_stack_bytes: 1 << 20,
            strict_variables: false,
        }
    }
}

/// A parsed expression.
pub struct Expression {
    ast: ast::Node,
    uses_parent: bool,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expression")
    }
}

impl Expression {
    /// Parses `src`; errors carry JSONata's `S0xxx` codes and the offset.
    pub fn parse(src: &str) -> Result<Expression> {
        let (ast, uses_parent) = parser::parse(src)?;
        Ok(Expression { ast, uses_parent })
    }

    /// Evaluates against `input` (`None`: no input) with variables bound as `$name`.
    /// `Ok(None)` is JSONata's undefined.
    pub fn evaluate(
        &self,
        input: Option<&Value>,
        bindings: &Map<String, Value>,
        host: &mut dyn Host,
        limits: Limits,
    ) -> Result<Option<Value>> {
        let mut ev = eval::Evaluator::new(host, limits);
        ev.track_parents = self.uses_parent;
        ev.globals = Some(bindings);
        let env = ev.new_env(None);
        let raw = input.map(value::Val::from_json);
        env.bind("$", raw.clone());
        // The top-level input array is wrapped so that paths treat it as one item.
        let input = match raw {
            Some(a @ value::Val::Arr(..)) => {
                Some(value::Val::Arr(Rc::new(vec![a]), value::SEQ | value::OUTER))
            }
            other => other,
        };
        ev.top = Some(env.clone());
        let r = ev.eval(&self.ast, &input, &env)?;
        Ok(r.and_then(|v| v.to_json()))
    }
}

/// Parses and evaluates in one go with default limits.
pub fn evaluate(
    src: &str,
    input: Option<&Value>,
    bindings: &Map<String, Value>,
    host: &mut dyn Host,
) -> Result<Option<Value>> {
    Expression::parse(src)?.evaluate(input, bindings, host, Limits::default())
}
