//! A deliberately small JSONata subset for `{% ... %}` expressions: variable paths
//! (`$states.input.a.b[0]`, `$x.y`), literals, and calls to a few functions
//! (`$partition`, `$range`, `$parse`, `$string`, `$count`, `$uppercase`, `$lowercase`).
//! Anything else fails with `States.QueryEvaluationError`; see docs/states.md.

use crate::error::{Failure, errors};
use serde_json::{Map, Value};

fn qerr(expr: &str, msg: impl std::fmt::Display) -> Failure {
    Failure::new(
        errors::QUERY_EVALUATION_ERROR,
        format!("The JSONata expression '{expr}' threw an error during evaluation. {msg}"),
    )
}

/// Evaluates a template: strings of the form `{% expr %}` are evaluated, objects and arrays recursively.
pub fn evaluate_template(t: &Value, vars: &Map<String, Value>) -> Result<Value, Failure> {
    match t {
        Value::String(s) => match s
            .trim()
            .strip_prefix("{%")
            .and_then(|x| x.strip_suffix("%}"))
        {
            Some(e) => evaluate(e.trim(), vars),
            None => Ok(t.clone()),
        },
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), evaluate_template(v, vars)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .map(|v| evaluate_template(v, vars))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Evaluates one expression with the given variables (`states` is `$states`).
pub fn evaluate(expr: &str, vars: &Map<String, Value>) -> Result<Value, Failure> {
    let mut p = P {
        s: expr.as_bytes(),
        src: expr,
        i: 0,
        vars,
    };
    let v = p.expr()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(qerr(
            expr,
            format!(
                "unsupported syntax at offset {} (Gantry implements a JSONata subset)",
                p.i
            ),
        ));
    }
    Ok(v.unwrap_or(Value::Null))
}

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    vars: &'a Map<String, Value>,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn err(&self, msg: impl std::fmt::Display) -> Failure {
        qerr(self.src, msg)
    }
    fn ident(&mut self) -> String {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        self.src[start..self.i].to_string()
    }

    // Returns None for "undefined".
    fn expr(&mut self) -> Result<Option<Value>, Failure> {
        self.ws();
        match self.s.get(self.i).copied() {
            Some(b'$') => {
                self.i += 1;
                let name = self.ident();
                self.ws();
                if self.s.get(self.i) == Some(&b'(') {
                    self.i += 1;
                    let mut args = Vec::new();
                    loop {
                        self.ws();
                        if self.s.get(self.i) == Some(&b')') {
                            self.i += 1;
                            break;
                        }
                        args.push(self.expr()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b')') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or ')'")),
                        }
                    }
                    return self.call(&name, args).map(Some);
                }
                let mut cur = self.vars.get(&name).cloned();
                if cur.is_none() && name != "states" {
                    return Err(Failure::new(
                        errors::QUERY_EVALUATION_ERROR,
                        format!("The variable '${name}' is not defined"),
                    ));
                }
                loop {
                    match self.s.get(self.i) {
                        Some(b'.') => {
                            self.i += 1;
                            let key = self.ident();
                            cur = match cur {
                                Some(Value::Object(m)) => m.get(&key).cloned(),
                                Some(Value::Array(a)) => {
                                    let v: Vec<Value> =
                                        a.iter().filter_map(|x| x.get(&key).cloned()).collect();
                                    if v.is_empty() {
                                        None
                                    } else {
                                        Some(Value::Array(v))
                                    }
                                }
                                _ => None,
                            };
                        }
                        Some(b'[') => {
                            self.i += 1;
                            let idx = self.expr()?;
                            self.ws();
                            if self.s.get(self.i) != Some(&b']') {
                                return Err(self.err("expected ']'"));
                            }
                            self.i += 1;
                            let n = idx
                                .and_then(|v| v.as_i64())
                                .ok_or_else(|| self.err("only numeric indices are supported"))?;
                            cur = match cur {
                                Some(Value::Array(a)) => {
                                    let k = if n < 0 { a.len() as i64 + n } else { n };
                                    usize::try_from(k).ok().and_then(|k| a.get(k).cloned())
                                }
                                Some(v) if n == 0 || n == -1 => Some(v),
                                _ => None,
                            };
                        }
                        _ => break,
                    }
                }
                Ok(cur)
            }
            Some(b'"') | Some(b'\'') => {
                let q = self.s[self.i];
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                self.i += 1;
                let raw = self
                    .src
                    .get(start + 1..self.i - 1)
                    .ok_or_else(|| self.err("unterminated string"))?;
                Ok(Some(Value::String(
                    raw.replace("\\\"", "\"").replace("\\'", "'"),
                )))
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                serde_json::from_str(&self.src[start..self.i])
                    .map(Some)
                    .map_err(|_| self.err("bad number"))
            }
            _ => {
                let word = self.ident();
                match word.as_str() {
                    "true" => Ok(Some(Value::Bool(true))),
                    "false" => Ok(Some(Value::Bool(false))),
                    "null" => Ok(Some(Value::Null)),
                    _ => Err(self.err(format!(
                        "unsupported syntax at offset {} (Gantry implements a JSONata subset)",
                        self.i
                    ))),
                }
            }
        }
    }

    fn call(&self, name: &str, args: Vec<Option<Value>>) -> Result<Value, Failure> {
        let arg = |i: usize| args.get(i).cloned().flatten().unwrap_or(Value::Null);
        let int = |i: usize| {
            arg(i)
                .as_f64()
                .map(|f| f as i64)
                .ok_or_else(|| self.err(format!("argument {} of ${name} must be a number", i + 1)))
        };
        match name {
            "partition" => {
                let Value::Array(a) = arg(0) else {
                    return Err(self.err("$partition expects an array"));
                };
                let n = int(1)?;
                if n <= 0 {
                    return Err(self.err("$partition size must be positive"));
                }
                Ok(Value::Array(
                    a.chunks(n as usize)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                ))
            }
            "range" => {
                let (s, e, st) = (int(0)?, int(1)?, int(2)?);
                if st == 0 {
                    return Err(self.err("$range step cannot be 0"));
                }
                let mut out = Vec::new();
                let mut x = s;
                while (st > 0 && x <= e) || (st < 0 && x >= e) {
                    out.push(Value::from(x));
                    if out.len() > 1000 {
                        return Err(self.err("$range result has more than 1000 items"));
                    }
                    x += st;
                }
                // JSONata sequences of one item collapse to the item.
                Ok(if out.len() == 1 {
                    out.remove(0)
                } else {
                    Value::Array(out)
                })
            }
            "parse" => {
                let s = arg(0);
                let s = s
                    .as_str()
                    .ok_or_else(|| self.err("$parse expects a string"))?;
                serde_json::from_str(s)
                    .map(crate::intrinsics::normalize_zero)
                    .map_err(|e| self.err(format!("$parse: {e}")))
            }
            "string" => Ok(Value::String(match arg(0) {
                Value::String(s) => s,
                v => v.to_string(),
            })),
            "count" => Ok(Value::from(match arg(0) {
                Value::Array(a) => a.len(),
                Value::Null => 0,
                _ => 1,
            })),
            "uppercase" => Ok(Value::String(
                arg(0).as_str().unwrap_or_default().to_uppercase(),
            )),
            "lowercase" => Ok(Value::String(
                arg(0).as_str().unwrap_or_default().to_lowercase(),
            )),
            _ => Err(self.err("T1006: Attempted to invoke a non-function")),
        }
    }
}
