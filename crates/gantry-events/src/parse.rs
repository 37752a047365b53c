//! Pattern parsing: a JSON pattern checked and turned into disjunctive normal form.
//!
//! The result is a list of [`Branch`]es (one per combination of `$or`
//! alternatives), each a list of [`Condition`]s on dotted field paths. Nested
//! objects only lengthen paths, so `{"a": {"b": [1]}}` and `{"a.b": [1]}` give
//! the same condition, as in EventBridge. Every problem is collected, not just
//! the first.

use serde_json::{Map, Value};

use crate::error::{PatternError, PatternIssue, PatternReason};
use crate::matcher::{AnythingBut, Bound, Matcher, Range, fold};
use crate::{cidr::Cidr, wildcard::Wildcard};

/// `$or` alternatives may multiply to at most this many branches.
pub(crate) const MAX_COMBINATIONS: u64 = 1000;
/// Objects nested deeper than this are refused.
pub(crate) const MAX_DEPTH: usize = 64;

const OPERATORS: &[&str] = &[
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
    "wildcard",
];

/// What one field path must satisfy: a leaf array of the pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) path: Box<str>,
    /// Any of these matching a leaf at `path` satisfies the condition.
    pub(crate) matchers: Vec<Matcher>,
    /// `{"exists": true}`: any leaf at `path` satisfies it.
    pub(crate) exists_true: bool,
    /// `{"exists": false}`: no leaf at `path` satisfies it.
    pub(crate) exists_false: bool,
}

/// Conditions that must all hold (one combination of `$or` alternatives).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Branch {
    pub(crate) conditions: Vec<Condition>,
}

/// A pattern object before `$or` expansion.
#[derive(Debug, Default)]
struct Node {
    conditions: Vec<Condition>,
    ors: Vec<Vec<Node>>,
}

pub(crate) fn parse(pattern: &Value) -> Result<Vec<Branch>, PatternError> {
    let Value::Object(map) = pattern else {
        return Err(PatternError::one("$", PatternReason::NotAnObject));
    };
    let mut parser = Parser { issues: Vec::new() };
    let mut root = Node::default();
    parser.object(map, "", 0, &mut root);
    if parser.issues.is_empty() {
        let count = combinations(&root);
        if count > MAX_COMBINATIONS {
            parser.issues.push(PatternIssue {
                path: "$".into(),
                reason: PatternReason::TooManyCombinations(count),
            });
        }
    }
    if !parser.issues.is_empty() {
        return Err(PatternError::new(parser.issues));
    }
    let mut branches = Vec::new();
    expand(&root, Branch::default(), &mut branches);
    for branch in &mut branches {
        branch.conditions.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(branches)
}

fn combinations(node: &Node) -> u64 {
    node.ors.iter().fold(1u64, |acc, alternatives| {
        let sum = alternatives
            .iter()
            .fold(0u64, |s, alt| s.saturating_add(combinations(alt)));
        acc.saturating_mul(sum)
    })
}

fn expand(node: &Node, mut base: Branch, out: &mut Vec<Branch>) {
    base.conditions.extend(node.conditions.iter().cloned());
    expand_ors(&node.ors, base, out);
}

fn expand_ors(ors: &[Vec<Node>], base: Branch, out: &mut Vec<Branch>) {
    let Some((first, rest)) = ors.split_first() else {
        out.push(base);
        return;
    };
    for alternative in first {
        let mut partial = Vec::new();
        expand(alternative, base.clone(), &mut partial);
        for branch in partial {
            expand_ors(rest, branch, out);
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `$or` is an operator only when it holds objects that are sub-patterns;
/// otherwise it is an ordinary field name, as in EventBridge.
fn is_or(key: &str, value: &Value) -> bool {
    let Value::Array(items) = value else {
        return false;
    };
    key == "$or"
        && !items.is_empty()
        && items.iter().all(|item| match item {
            Value::Object(obj) => !obj.keys().any(|k| OPERATORS.contains(&k.as_str())),
            _ => false,
        })
}

struct Parser {
    issues: Vec<PatternIssue>,
}

impl Parser {
    fn fail(&mut self, path: &str, reason: PatternReason) {
        let path = if path.is_empty() { "$" } else { path };
        self.issues.push(PatternIssue {
            path: path.to_string(),
            reason,
        });
    }

    fn object(&mut self, map: &Map<String, Value>, prefix: &str, depth: usize, node: &mut Node) {
        if depth > MAX_DEPTH {
            self.fail(prefix, PatternReason::TooDeep(MAX_DEPTH));
            return;
        }
        for (key, value) in map {
            if is_or(key, value) {
                self.or(value, prefix, depth, node);
                continue;
            }
            let path = join(prefix, key);
            match value {
                Value::Object(inner) => self.object(inner, &path, depth + 1, node),
                Value::Array(items) => {
                    if let Some(condition) = self.leaf(items, &path) {
                        node.conditions.push(condition);
                    }
                }
                _ => self.fail(&path, PatternReason::NotObjectOrArray(key.clone())),
            }
        }
    }

    fn or(&mut self, value: &Value, prefix: &str, depth: usize, node: &mut Node) {
        let Value::Array(items) = value else { return };
        let path = join(prefix, "$or");
        if items.len() < 2 {
            self.fail(&path, PatternReason::OrTooFew);
            return;
        }
        let mut alternatives = Vec::with_capacity(items.len());
        for item in items {
            if let Value::Object(map) = item {
                let mut alt = Node::default();
                self.object(map, prefix, depth + 1, &mut alt);
                alternatives.push(alt);
            }
        }
        node.ors.push(alternatives);
    }

    fn leaf(&mut self, items: &[Value], path: &str) -> Option<Condition> {
        if items.is_empty() {
            self.fail(path, PatternReason::EmptyArray);
            return None;
        }
        let before = self.issues.len();
        let mut condition = Condition {
            path: path.into(),
            matchers: Vec::new(),
            exists_true: false,
            exists_false: false,
        };
        for item in items {
            match item {
                Value::String(s) => condition.matchers.push(Matcher::Str(s.as_str().into())),
                Value::Number(n) => match n.as_f64() {
                    Some(f) => condition.matchers.push(Matcher::Num(f)),
                    None => self.fail(path, PatternReason::BadMatchValue),
                },
                Value::Bool(b) => condition.matchers.push(Matcher::Bool(*b)),
                Value::Null => condition.matchers.push(Matcher::Null),
                Value::Array(_) => self.fail(path, PatternReason::BadMatchValue),
                Value::Object(expr) => self.expression(expr, path, &mut condition),
            }
        }
        (self.issues.len() == before).then_some(condition)
    }

    fn expression(&mut self, expr: &Map<String, Value>, path: &str, condition: &mut Condition) {
        let mut entries = expr.iter();
        let (Some((op, operand)), None) = (entries.next(), entries.next()) else {
            self.fail(path, PatternReason::OneKeyOnly);
            return;
        };
        let result = match op.as_str() {
            "exists" => match operand {
                Value::Bool(true) => {
                    condition.exists_true = true;
                    return;
                }
                Value::Bool(false) => {
                    condition.exists_false = true;
                    return;
                }
                _ => Err(PatternReason::ExistsNotBool),
            },
            "prefix" => affix(
                operand,
                "prefix",
                Matcher::Prefix,
                Matcher::PrefixIgnoreCase,
            ),
            "suffix" => affix(
                operand,
                "suffix",
                Matcher::Suffix,
                Matcher::SuffixIgnoreCase,
            ),
            "equals-ignore-case" => match operand {
                Value::String(s) => Ok(Matcher::EqualsIgnoreCase(fold(s).into())),
                _ => Err(PatternReason::MustBeString("equals-ignore-case")),
            },
            "anything-but" => anything_but(operand).map(Matcher::AnythingBut),
            "numeric" => numeric(operand).map(Matcher::Numeric),
            "cidr" => match operand {
                Value::String(s) => Cidr::parse(s).map(Matcher::Cidr),
                _ => Err(PatternReason::MustBeString("cidr")),
            },
            "wildcard" => match operand {
                Value::String(s) => Wildcard::parse(s).map(Matcher::Wildcard),
                _ => Err(PatternReason::MustBeString("wildcard")),
            },
            other => Err(PatternReason::UnknownOperator(other.to_string())),
        };
        match result {
            Ok(matcher) => condition.matchers.push(matcher),
            Err(reason) => self.fail(path, reason),
        }
    }
}

fn affix(
    operand: &Value,
    name: &'static str,
    exact: fn(Box<str>) -> Matcher,
    ignore_case: fn(Box<str>) -> Matcher,
) -> Result<Matcher, PatternReason> {
    match operand {
        Value::String(s) => Ok(exact(s.as_str().into())),
        Value::Object(map) => {
            let mut entries = map.iter();
            match (entries.next(), entries.next()) {
                (Some((k, Value::String(s))), None) if k == "equals-ignore-case" => {
                    Ok(ignore_case(fold(s).into()))
                }
                (Some((k, _)), None) if k == "equals-ignore-case" => {
                    Err(PatternReason::MustBeString("equals-ignore-case"))
                }
                (Some((k, _)), None) => Err(PatternReason::UnsupportedNested(name, k.clone())),
                _ => Err(PatternReason::OneKeyOnly),
            }
        }
        _ => Err(PatternReason::MustBeString(name)),
    }
}

fn anything_but(operand: &Value) -> Result<AnythingBut, PatternReason> {
    match operand {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.as_str().into()].into())),
        Value::Number(n) => n
            .as_f64()
            .map(|f| AnythingBut::Numbers(vec![f].into()))
            .ok_or(PatternReason::AnythingButValue),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PatternReason::EmptyArray);
            }
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => strings.push(s.as_str().into()),
                    Value::Number(n) => {
                        numbers.push(n.as_f64().ok_or(PatternReason::AnythingButList)?)
                    }
                    _ => return Err(PatternReason::AnythingButList),
                }
            }
            match (strings.is_empty(), numbers.is_empty()) {
                (false, true) => Ok(AnythingBut::Strings(strings.into())),
                (true, false) => Ok(AnythingBut::Numbers(numbers.into())),
                _ => Err(PatternReason::AnythingButMixed),
            }
        }
        Value::Object(map) => {
            let mut entries = map.iter();
            let (Some((op, inner)), None) = (entries.next(), entries.next()) else {
                return Err(PatternReason::OneKeyOnly);
            };
            match op.as_str() {
                "prefix" => nonempty_strings(inner, "prefix").map(AnythingBut::Prefixes),
                "suffix" => nonempty_strings(inner, "suffix").map(AnythingBut::Suffixes),
                "equals-ignore-case" => strings(inner, "equals-ignore-case").map(|list| {
                    AnythingBut::IgnoreCase(list.iter().map(|s| fold(s).into()).collect())
                }),
                "wildcard" => {
                    let list = strings(inner, "wildcard")
                        .map_err(|_| PatternReason::MustBeString("wildcard"))?;
                    let parsed: Result<Vec<_>, _> =
                        list.iter().map(|s| Wildcard::parse(s)).collect();
                    parsed.map(|w| AnythingBut::Wildcards(w.into()))
                }
                other => Err(PatternReason::AnythingButOperator(other.to_string())),
            }
        }
        Value::Null | Value::Bool(_) => Err(PatternReason::AnythingButValue),
    }
}

/// A string or a non-empty list of strings.
fn strings(value: &Value, op: &'static str) -> Result<Box<[Box<str>]>, PatternReason> {
    match value {
        Value::String(s) => Ok(vec![s.as_str().into()].into()),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.as_str().into()),
                _ => Err(PatternReason::AnythingButInnerType(op)),
            })
            .collect(),
        Value::Array(_) => Err(PatternReason::EmptyArray),
        _ => Err(PatternReason::AnythingButInnerType(op)),
    }
}

fn nonempty_strings(value: &Value, op: &'static str) -> Result<Box<[Box<str>]>, PatternReason> {
    if value.is_object() {
        return Err(PatternReason::AnythingButValue);
    }
    let list = strings(value, op)?;
    if list.iter().any(|s| s.is_empty()) {
        return Err(PatternReason::EmptyPrefixSuffix);
    }
    Ok(list)
}

fn numeric(operand: &Value) -> Result<Range, PatternReason> {
    let Value::Array(items) = operand else {
        return Err(PatternReason::NumericNotArray);
    };
    let Some(first) = items.first() else {
        return Err(PatternReason::NumericMember("]".into()));
    };
    let Value::String(op) = first else {
        return Err(PatternReason::NumericMember(first.to_string()));
    };
    let value = |i: usize, op: &str| -> Result<f64, PatternReason> {
        let name = if op == "=" { "equals" } else { op };
        items
            .get(i)
            .and_then(Value::as_f64)
            .ok_or_else(|| PatternReason::NumericValue(name.to_string()))
    };
    let bound = |v: f64, inclusive: bool| {
        Some(Bound {
            value: v,
            inclusive,
        })
    };
    let mut range = match op.as_str() {
        "=" => {
            let v = value(1, op)?;
            Range {
                lower: bound(v, true),
                upper: bound(v, true),
            }
        }
        "<" => Range {
            lower: None,
            upper: bound(value(1, op)?, false),
        },
        "<=" => Range {
            lower: None,
            upper: bound(value(1, op)?, true),
        },
        ">" => Range {
            lower: bound(value(1, op)?, false),
            upper: None,
        },
        ">=" => Range {
            lower: bound(value(1, op)?, true),
            upper: None,
        },
        other => return Err(PatternReason::NumericOperator(other.to_string())),
    };
    if items.len() == 2 {
        return Ok(range);
    }
    if range.upper.is_some() {
        return Err(PatternReason::NumericTooMany);
    }
    let second = &items[2];
    let Value::String(op2) = second else {
        return Err(PatternReason::NumericMember(second.to_string()));
    };
    let inclusive = match op2.as_str() {
        "<" => false,
        "<=" => true,
        other => return Err(PatternReason::NumericRangeOperator(other.to_string())),
    };
    let top = value(3, op2)?;
    if let Some(lower) = range.lower
        && top <= lower.value
    {
        return Err(PatternReason::NumericBottomTop);
    }
    if items.len() > 4 {
        return Err(PatternReason::NumericRangeTooMany);
    }
    range.upper = bound(top, inclusive);
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(v: Value) -> PatternReason {
        parse(&v).expect_err("should be invalid").issues()[0]
            .reason
            .clone()
    }

    #[test]
    fn or_expands_to_branches() {
        let b = parse(&json!({"a": ["x"], "$or": [{"b": [1]}, {"c": [2]}, {"$or": [{"d": [3]}, {"e": [4]}]}]}))
            .expect("valid");
        assert_eq!(b.len(), 4);
        assert!(
            b.iter()
                .all(|br| br.conditions.iter().any(|c| &*c.path == "a"))
        );
    }

    #[test]
    fn or_with_operators_is_a_field() {
        let b = parse(&json!({"$or": [{"prefix": "a"}, {"suffix": "b"}]})).expect("valid");
        assert_eq!(b.len(), 1);
        assert_eq!(&*b[0].conditions[0].path, "$or");
    }

    #[test]
    fn combination_limit() {
        let alts: Vec<Value> = (0..11).map(|i| json!({ format!("f{i}"): [i] })).collect();
        let p = json!({"a": {"$or": alts.clone()}, "b": {"$or": alts.clone()}, "c": {"$or": alts}});
        assert_eq!(reason(p), PatternReason::TooManyCombinations(1331));
    }

    #[test]
    fn numeric_forms() {
        assert!(parse(&json!({"n": [{"numeric": [">", 0, "<=", 5]}]})).is_ok());
        assert!(parse(&json!({"n": [{"numeric": ["=", 3.018e2]}]})).is_ok());
        assert_eq!(
            reason(json!({"n": [{"numeric": [">", 0, ">", 0]}]})),
            PatternReason::NumericRangeOperator(">".into())
        );
        assert_eq!(
            reason(json!({"n": [{"numeric": [">", 5, "<", 5]}]})),
            PatternReason::NumericBottomTop
        );
        assert_eq!(
            reason(json!({"n": [{"numeric": ["=", 5, "<", 6]}]})),
            PatternReason::NumericTooMany
        );
        assert_eq!(
            reason(json!({"n": [{"numeric": [">", 0, "<"]}]})),
            PatternReason::NumericValue("<".into())
        );
        assert_eq!(
            reason(json!({"n": [{"numeric": 10}]})),
            PatternReason::NumericNotArray
        );
    }

    #[test]
    fn every_issue_is_reported_with_its_path() {
        let err =
            parse(&json!({"a": [], "b": {"c": "x"}, "d": [{"nope": 1}]})).expect_err("invalid");
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["a", "b.c", "d"]);
    }
}
