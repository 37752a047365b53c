//! `{% ... %}` expressions in JSONata states, evaluated by `gantry-jsonata` (JSONata
//! 2.0) with `$states` and the Assign variables bound, plus the functions Step
//! Functions adds (`$partition`, `$range`, `$hash`, `$random(seed)`, `$uuid`, `$parse`).
//! `$eval` is not available, as in AWS (use `$parse`). Errors become
//! `States.QueryEvaluationError`.

use crate::error::{Failure, errors};
use crate::intrinsics::{self, Entropy};
use gantry_jsonata::{Expression, Host, Limits};
use serde_json::{Map, Value};

/// What JSONata's clock and randomness come from: the execution's virtual time and a
/// seed drawn from its state, so that a replay evaluates to the same values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ambient {
    /// Milliseconds since the epoch for `$now()` / `$millis()`.
    pub now_millis: i64,
    /// Seeds `$random()`, `$shuffle` and `$uuid()`.
    pub seed: u64,
}

/// AWS's message shape: `The JSONata expression '<expr>' specified for the field
/// 'Output/FunctionResult' threw an error during evaluation. T1006: ...`.
fn qerr(field: &str, expr: &str, msg: impl std::fmt::Display) -> Failure {
    Failure::new(
        errors::QUERY_EVALUATION_ERROR,
        format!(
            "The JSONata expression '{expr}' specified for the field '{field}' threw an error during evaluation. {msg}"
        ),
    )
}

/// The functions Step Functions adds to JSONata, and `$eval`, which it withdraws (the
/// host's functions take precedence over the built-in ones).
const EXTRA: &[&str] = &[
    "partition",
    "range",
    "hash",
    "random",
    "uuid",
    "parse",
    "eval",
];

struct StatesHost {
    now: i64,
    rng: u64,
}

impl Entropy for StatesHost {
    fn next_u64(&mut self) -> u64 {
        gantry_jsonata::splitmix(&mut self.rng)
    }
}

fn int_arg(name: &str, args: &[Option<Value>], i: usize) -> gantry_jsonata::Result<i64> {
    args.get(i)
        .and_then(|a| a.as_ref())
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .map(|f| f as i64)
        .ok_or_else(|| {
            gantry_jsonata::Error::new(
                "T0410",
                format!("Argument {} of function \"{name}\" must be a number", i + 1),
            )
        })
}

impl Host for StatesHost {
    fn now_millis(&mut self) -> i64 {
        self.now
    }
    fn random(&mut self) -> f64 {
        gantry_jsonata::unit_f64(self.next_u64())
    }
    fn has_function(&self, name: &str) -> bool {
        EXTRA.contains(&name)
    }
    fn call(
        &mut self,
        name: &str,
        args: Vec<Option<Value>>,
    ) -> gantry_jsonata::Result<Option<Value>> {
        use gantry_jsonata::Error;
        let from_failure = |f: Failure| Error::new("D3137", f.cause.clone());
        match name {
            "partition" => {
                let Some(Value::Array(a)) = args.first().cloned().flatten() else {
                    return Err(Error::new(
                        "T0410",
                        "Argument 1 of function \"partition\" must be an array",
                    ));
                };
                let n = int_arg(name, &args, 1)?;
                if n <= 0 {
                    return Err(Error::new(
                        "D3137",
                        "The $partition chunk size must be positive",
                    ));
                }
                Ok(Some(Value::Array(
                    a.chunks(n as usize)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                )))
            }
            "range" => {
                let (s, e, st) = (
                    int_arg(name, &args, 0)?,
                    int_arg(name, &args, 1)?,
                    int_arg(name, &args, 2)?,
                );
                if st == 0 {
                    return Err(Error::new("D3137", "The $range step cannot be 0"));
                }
                let mut out = Vec::new();
                let mut x = s;
                while (st > 0 && x <= e) || (st < 0 && x >= e) {
                    out.push(Value::from(x));
                    if out.len() > 1000 {
                        return Err(Error::new(
                            "D3137",
                            "The $range result has more than 1000 items",
                        ));
                    }
                    x = match x.checked_add(st) {
                        Some(x) => x,
                        None => break,
                    };
                }
                // JSONata sequences of one item collapse to the item.
                Ok(Some(if out.len() == 1 {
                    out.remove(0)
                } else {
                    Value::Array(out)
                }))
            }
            "parse" => {
                let Some(Value::String(s)) = args.first().cloned().flatten() else {
                    return Err(Error::new(
                        "T0410",
                        "Argument 1 of function \"parse\" must be a string",
                    ));
                };
                serde_json::from_str(&s)
                    .map(|v| Some(intrinsics::normalize_zero(v)))
                    .map_err(|e| Error::new("D3137", format!("$parse: {e}")))
            }
            "hash" => {
                let data = args.first().cloned().flatten().unwrap_or(Value::Null);
                let alg = args.get(1).cloned().flatten().unwrap_or(Value::Null);
                intrinsics::call_function("States.Hash", vec![data, alg], self)
                    .map(Some)
                    .map_err(from_failure)
            }
            "uuid" => intrinsics::call_function("States.UUID", vec![], self)
                .map(Some)
                .map_err(from_failure),
            "random" => {
                // AWS's `$random` takes an optional seed: the same seed, the same number.
                let bits = match args.first().cloned().flatten() {
                    None => self.next_u64(),
                    Some(seed) => {
                        let mut state = match seed.as_f64() {
                            Some(f) => f.to_bits(),
                            None => {
                                return Err(Error::new(
                                    "T0410",
                                    "Argument 1 of function \"random\" must be a number",
                                ));
                            }
                        };
                        gantry_jsonata::splitmix(&mut state)
                    }
                };
                Ok(Some(
                    serde_json::Number::from_f64(gantry_jsonata::unit_f64(bits))
                        .map(Value::Number)
                        .unwrap_or(Value::from(0)),
                ))
            }
            // Step Functions does not offer `$eval`.
            _ => Err(Error::new("T1006", "Attempted to invoke a non-function")),
        }
    }
}

/// How deeply a JSONata result may nest: values are written to the journal as JSON and
/// must parse again (serde_json refuses more than 128 levels), inside event envelopes.
const MAX_RESULT_DEPTH: usize = 100;

fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

fn check_depth(field: &str, v: Value) -> Result<Value, Failure> {
    if depth(&v) > MAX_RESULT_DEPTH {
        return Err(Failure::new(
            errors::QUERY_EVALUATION_ERROR,
            format!(
                "The value of the field '{field}' nests more than {MAX_RESULT_DEPTH} levels deep"
            ),
        ));
    }
    Ok(v)
}

/// Evaluates a template: strings of the form `{% expr %}` are evaluated, objects and
/// arrays recursively. `field` is the template's field (`Output`); nested values are
/// named `Output/key/0` in errors.
pub fn evaluate_template(
    field: &str,
    t: &Value,
    vars: &Map<String, Value>,
    amb: Ambient,
) -> Result<Value, Failure> {
    check_depth(field, template(field, t, vars, amb)?)
}

fn template(
    field: &str,
    t: &Value,
    vars: &Map<String, Value>,
    amb: Ambient,
) -> Result<Value, Failure> {
    match t {
        Value::String(s) => match s
            .trim()
            .strip_prefix("{%")
            .and_then(|x| x.strip_suffix("%}"))
        {
            Some(e) => expression(field, e.trim(), vars, amb),
            None => Ok(t.clone()),
        },
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), template(&format!("{field}/{k}"), v, vars, amb)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| template(&format!("{field}/{i}"), v, vars, amb))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Evaluates one expression with the given variables (`states` is `$states`).
/// There is no context value: AWS does not allow `$`, `$$` or bare field names at
/// the top level, so they evaluate to nothing. Undefined results become `null`.
pub fn evaluate(
    field: &str,
    expr: &str,
    vars: &Map<String, Value>,
    amb: Ambient,
) -> Result<Value, Failure> {
    check_depth(field, expression(field, expr, vars, amb)?)
}

fn expression(
    field: &str,
    expr: &str,
    vars: &Map<String, Value>,
    amb: Ambient,
) -> Result<Value, Failure> {
    let parsed = Expression::parse(expr).map_err(|e| match e.position {
        Some(p) => qerr(field, expr, format!("{e} (at offset {p})")),
        None => qerr(field, expr, e),
    })?;
    // Each expression gets its own random stream, derived from the state's seed and
    // the expression text, so that two fields of one state do not draw the same numbers.
    let mut seed = amb.seed;
    for b in expr.bytes() {
        seed = (seed ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    let mut host = StatesHost {
        now: amb.now_millis,
        rng: seed,
    };
    let limits = Limits {
        // Reading a variable that was never assigned is an error in Step Functions.
        strict_variables: true,
        max_nesting: MAX_RESULT_DEPTH,
        ..Limits::default()
    };
    let v = parsed
        .evaluate(None, vars, &mut host, limits)
        .map_err(|e| qerr(field, expr, e))?;
    Ok(v.unwrap_or(Value::Null))
}
