//! Choice rules: the comparison operators, their `...Path` forms, `And`/`Or`/`Not`, and
//! JSONata `Condition`s.

use crate::error::Failure;
use crate::path::{self, PathError, Roots};
use crate::timestamp;
use serde_json::Value;
use std::cmp::Ordering;

/// A comparison operator (without the `Path` suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl Op {
    /// Every operator with its ASL name.
    pub const ALL: [(&'static str, Op); 23] = [
        ("StringEquals", Op::StringEquals),
        ("StringLessThan", Op::StringLessThan),
        ("StringGreaterThan", Op::StringGreaterThan),
        ("StringLessThanEquals", Op::StringLessThanEquals),
        ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
        ("StringMatches", Op::StringMatches),
        ("NumericEquals", Op::NumericEquals),
        ("NumericLessThan", Op::NumericLessThan),
        ("NumericGreaterThan", Op::NumericGreaterThan),
        ("NumericLessThanEquals", Op::NumericLessThanEquals),
        ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
        ("BooleanEquals", Op::BooleanEquals),
        ("TimestampEquals", Op::TimestampEquals),
        ("TimestampLessThan", Op::TimestampLessThan),
        ("TimestampGreaterThan", Op::TimestampGreaterThan),
        ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
        ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
        ("IsNull", Op::IsNull),
        ("IsPresent", Op::IsPresent),
        ("IsNumeric", Op::IsNumeric),
        ("IsString", Op::IsString),
        ("IsBoolean", Op::IsBoolean),
        ("IsTimestamp", Op::IsTimestamp),
    ];

    /// Looks an operator field name up: `("NumericEqualsPath")` gives `(NumericEquals, true)`.
    pub fn from_field(field: &str) -> Option<(Op, bool)> {
        let (base, is_path) = match field.strip_suffix("Path") {
            Some(b) => (b, true),
            None => (field, false),
        };
        let op = Self::ALL.iter().find(|(n, _)| *n == base)?.1;
        if is_path && (op == Op::StringMatches || op.is_type_test()) {
            return None;
        }
        Some((op, is_path))
    }

    /// `IsNull`, `IsPresent`, ...: the operand is a boolean.
    pub fn is_type_test(self) -> bool {
        matches!(
            self,
            Op::IsNull
                | Op::IsPresent
                | Op::IsNumeric
                | Op::IsString
                | Op::IsBoolean
                | Op::IsTimestamp
        )
    }

    /// Whether `v` is an acceptable literal operand for this operator.
    pub fn accepts_literal(self, v: &Value) -> bool {
        use Op::*;
        match self {
            StringEquals
            | StringLessThan
            | StringGreaterThan
            | StringLessThanEquals
            | StringGreaterThanEquals
            | StringMatches => v.is_string(),
            TimestampEquals
            | TimestampLessThan
            | TimestampGreaterThan
            | TimestampLessThanEquals
            | TimestampGreaterThanEquals => v.is_string(),
            NumericEquals
            | NumericLessThan
            | NumericGreaterThan
            | NumericLessThanEquals
            | NumericGreaterThanEquals => v.is_number(),
            _ => v.is_boolean(),
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal value.
    Literal(Value),
    /// A path (the `...Path` operator form).
    Path(String),
}

/// A boolean expression over the state's input.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// All must hold.
    And(Vec<Rule>),
    /// Any must hold.
    Or(Vec<Rule>),
    /// Negation.
    Not(Box<Rule>),
    /// `Variable` compared by `op` with `operand`.
    Compare {
        /// The path of the value tested.
        variable: String,
        /// The operator.
        op: Op,
        /// The other side.
        operand: Operand,
    },
    /// A JSONata `Condition` (`{% ... %}`).
    Condition(String),
}

impl Rule {
    /// Evaluates the rule. A missing `Variable` (outside `IsPresent`) is a `States.Runtime` failure.
    pub fn evaluate(
        &self,
        roots: Roots<'_>,
        jsonata: &dyn Fn(&str) -> Result<Value, Failure>,
    ) -> Result<bool, Failure> {
        match self {
            Rule::And(rs) => {
                for r in rs {
                    if !r.evaluate(roots, jsonata)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rs) => {
                for r in rs {
                    if r.evaluate(roots, jsonata)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.evaluate(roots, jsonata)?),
            Rule::Condition(expr) => match jsonata(expr)? {
                Value::Bool(b) => Ok(b),
                other => Err(Failure::new(
                    crate::error::errors::QUERY_EVALUATION_ERROR,
                    format!("the Condition '{expr}' returned {other}, not a boolean"),
                )),
            },
            Rule::Compare {
                variable,
                op,
                operand,
            } => {
                let value = match path::read(variable, roots) {
                    Ok(v) => Some(v),
                    Err(PathError::NotFound(_)) => None,
                    Err(e) => return Err(Failure::runtime(e.to_string())),
                };
                if *op == Op::IsPresent {
                    return Ok(value.is_some() == (operand == &Operand::Literal(Value::Bool(true))));
                }
                let value = value.ok_or_else(|| Failure::runtime(format!("Invalid path '{variable}': The choice state's condition path references an invalid value.")))?;
                let rhs = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => path::read(p, roots).map_err(|_| Failure::runtime(format!("Invalid path '{p}': The choice state's condition path references an invalid value.")))?,
                };
                Ok(compare(*op, &value, &rhs))
            }
        }
    }
}

/// Java `String.compareTo`: by UTF-16 code units.
fn java_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn ord_holds(op: Op, o: Ordering) -> bool {
    use Op::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => o == Ordering::Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => o == Ordering::Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => o == Ordering::Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => {
            o != Ordering::Greater
        }
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => {
            o != Ordering::Less
        }
        _ => false,
    }
}

/// Applies `op` to a present value; type mismatches are simply `false`.
pub fn compare(op: Op, v: &Value, rhs: &Value) -> bool {
    use Op::*;
    match op {
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals => match (v, rhs) {
            (Value::String(a), Value::String(b)) => ord_holds(op, java_cmp(a, b)),
            _ => false,
        },
        StringMatches => match (v, rhs) {
            (Value::String(a), Value::String(p)) => string_matches(a, p),
            _ => false,
        },
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => match (v, rhs) {
            (Value::Number(a), Value::Number(b)) => {
                let o = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    _ => match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => match x.partial_cmp(&y) {
                            Some(o) => o,
                            None => return false,
                        },
                        _ => return false,
                    },
                };
                ord_holds(op, o)
            }
            _ => false,
        },
        BooleanEquals => matches!((v, rhs), (Value::Bool(a), Value::Bool(b)) if a == b),
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => match (
            v.as_str().and_then(timestamp::parse_nanos),
            rhs.as_str().and_then(timestamp::parse_nanos),
        ) {
            (Some(a), Some(b)) => ord_holds(op, a.cmp(&b)),
            _ => false,
        },
        IsNull | IsNumeric | IsString | IsBoolean | IsTimestamp | IsPresent => {
            let actual = match op {
                IsNull => v.is_null(),
                IsNumeric => v.is_number(),
                IsString => v.is_string(),
                IsBoolean => v.is_boolean(),
                IsTimestamp => v.as_str().and_then(timestamp::parse_nanos).is_some(),
                _ => true,
            };
            rhs.as_bool() == Some(actual)
        }
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` is a literal `*`, `\\` a literal `\`.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    // Tokens: Some(c) a literal char, None a wildcard.
    let mut toks: Vec<Option<char>> = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Some(it.next().unwrap_or('\\'))),
            '*' => toks.push(None),
            c => toks.push(Some(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Classic greedy wildcard matching with backtracking to the last star.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(j) {
            Some(Some(c)) if *c == s[i] => {
                i += 1;
                j += 1;
            }
            Some(None) => {
                star = Some((j, i));
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[j..].iter().all(|t| t.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("", "*"));
        assert!(string_matches("abcabc", "*abc"));
        assert!(!string_matches("abc", "abcd"));
    }

    #[test]
    fn type_strict() {
        assert!(!compare(Op::NumericEquals, &json!("1"), &json!(1)));
        assert!(compare(Op::NumericEquals, &json!(1.0), &json!(1)));
        assert!(compare(
            Op::TimestampLessThan,
            &json!("2020-01-01T00:00:00Z"),
            &json!("2020-01-01T00:00:01Z")
        ));
    }
}
