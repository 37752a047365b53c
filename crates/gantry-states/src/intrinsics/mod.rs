//! Intrinsic functions (`States.Format(...)`, ...) used in `.$` values in JSONPath mode.

mod functions;
mod parse;

pub(crate) use functions::call as call_function;
pub use functions::normalize_zero;
pub use parse::{Expr, parse};

use crate::error::Failure;
use crate::path::{self, Roots};
use serde_json::Value;

/// Where the randomness of `States.UUID` and `States.MathRandom` comes from.
pub trait Entropy {
    /// A uniformly random `u64`.
    fn next_u64(&mut self) -> u64;
}

/// Whether a `.$` value is an intrinsic call rather than a path.
pub fn is_intrinsic(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

/// Parses and evaluates an intrinsic call against the given documents.
pub fn evaluate(src: &str, roots: Roots<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
    let expr = parse(src).map_err(|e| Failure::intrinsic(format!("cannot parse '{src}': {e}")))?;
    eval(&expr, roots, rng)
}

/// Evaluates an already parsed expression.
pub fn eval(expr: &Expr, roots: Roots<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
    match expr {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Path(p) => path::read(p, roots).map_err(|e| Failure::runtime(format!("The JSONPath {p} specified in an intrinsic function argument could not be found: {e}"))),
        Expr::Call { name, args } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, roots, rng)?);
            }
            functions::call(name, vals, rng)
        }
    }
}
