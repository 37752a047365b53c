//! JSONPath for ASL: reference paths (read and write), full queries, and `$$` / `$var` roots.
//!
//! Reference paths (`$.a.b[0]`, `$['a b']`) name a single node; they are parsed here
//! because `ResultPath` needs to *write* through them, which no JSONPath crate does.
//! Anything richer (`$..x`, `[*]`, filters, slices) goes to `serde_json_path` (RFC 9535),
//! and its node list comes back as a JSON array, as AWS's (Jayway) evaluator does for
//! indefinite paths.

use serde_json::{Map, Value};

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `.name` or `['name']`.
    Key(String),
    /// `[3]`.
    Index(usize),
}

/// A parsed reference path: `$` followed by keys and indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePath {
    /// The steps after `$`.
    pub segments: Vec<Segment>,
}

/// Why a path could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is not valid syntax (or not allowed where it is used).
    #[error("invalid path '{0}'")]
    Invalid(String),
    /// The path is valid but selects nothing in this input.
    #[error("the JSONPath '{0}' could not be found in the input")]
    NotFound(String),
}

impl ReferencePath {
    /// Parses a reference path; `None` if it is not one (it may still be a query path).
    pub fn parse(path: &str) -> Option<ReferencePath> {
        let rest = path.strip_prefix('$')?;
        let b = rest.as_bytes();
        let mut i = 0;
        let mut segments = Vec::new();
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    let name = &rest[start..j];
                    if name.is_empty()
                        || name == "*"
                        || name.contains(['(', ')', '?', '@', '\'', '"', ']'])
                    {
                        return None;
                    }
                    segments.push(Segment::Key(name.to_string()));
                    i = j;
                }
                b'[' => {
                    let close = rest[i..].find(']')? + i;
                    let inner = rest[i + 1..close].trim();
                    if let Some(q) = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    {
                        if q.contains(['\'', '"']) {
                            return None;
                        }
                        segments.push(Segment::Key(q.to_string()));
                    } else if !inner.is_empty() && inner.bytes().all(|c| c.is_ascii_digit()) {
                        segments.push(Segment::Index(inner.parse().ok()?));
                    } else {
                        return None;
                    }
                    i = close + 1;
                }
                _ => return None,
            }
        }
        Some(ReferencePath { segments })
    }

    /// The node this path names in `value`, if any.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut cur = value;
        for s in &self.segments {
            cur = match (s, cur) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Writes `new` at this path inside `target`, creating missing objects on the way
    /// (ASL `ResultPath` semantics). Fails when a step meets a non-container.
    pub fn set(&self, target: &mut Value, new: Value) -> Result<(), String> {
        let mut cur = target;
        for (n, s) in self.segments.iter().enumerate() {
            let last = n + 1 == self.segments.len();
            let kind = type_name(cur);
            cur = match (s, cur) {
                (Segment::Key(k), Value::Object(m)) => {
                    if last {
                        m.insert(k.clone(), new);
                        return Ok(());
                    }
                    m.entry(k.clone())
                        .or_insert_with(|| Value::Object(Map::new()))
                }
                (Segment::Index(i), Value::Array(a)) => {
                    let len = a.len();
                    let slot = a.get_mut(*i).ok_or_else(|| {
                        format!("index {i} is out of bounds for an array of {len} items")
                    })?;
                    if last {
                        *slot = new;
                        return Ok(());
                    }
                    slot
                }
                (s, _) => return Err(format!("cannot apply step {s:?} to {kind}")),
            };
        }
        *cur = new;
        Ok(())
    }
}

/// The name ASL messages use for a JSON value's type.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The context object `$$`, built the first time something reads it: most
/// states never do, and building it copies the execution's input.
pub struct Context<'a> {
    value: std::cell::OnceCell<Value>,
    build: Option<Box<dyn Fn() -> Value + 'a>>,
}

impl<'a> Context<'a> {
    /// A context built by `build` when first read.
    pub fn lazy(build: impl Fn() -> Value + 'a) -> Context<'a> {
        Context {
            value: std::cell::OnceCell::new(),
            build: Some(Box::new(build)),
        }
    }

    /// A context that is already built.
    pub fn ready(value: Value) -> Context<'a> {
        Context {
            value: std::cell::OnceCell::from(value),
            build: None,
        }
    }

    /// The context object.
    pub fn get(&self) -> &Value {
        self.value.get_or_init(|| match &self.build {
            Some(build) => build(),
            None => Value::Null,
        })
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value.get() {
            Some(v) => write!(f, "Context({v})"),
            None => f.write_str("Context(<not built>)"),
        }
    }
}

/// The documents a path can be evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Roots<'a> {
    /// `$`.
    pub input: &'a Value,
    /// `$$`.
    pub context: &'a Context<'a>,
    /// `$name` variables (from `Assign`).
    pub variables: &'a Map<String, Value>,
}

/// Whether `path` is syntactically a path ASL accepts (`$...`, `$$...`, `$var...`).
pub fn is_valid_path(path: &str) -> bool {
    let (_, rest) = split_root(path);
    match rest {
        Some(rest) => {
            ReferencePath::parse(&rest).is_some() || serde_json_path::JsonPath::parse(&rest).is_ok()
        }
        None => false,
    }
}

/// Whether `path` is a reference path (optionally rooted at `$$` or a variable).
pub fn is_reference_path(path: &str) -> bool {
    matches!(split_root(path).1, Some(rest) if ReferencePath::parse(&rest).is_some())
}

enum Root {
    Input,
    Context,
    Variable(String),
}

// Splits `$$.a` into (Context, "$.a"), `$x.a` into (Variable x, "$.a"), `$.a` into (Input, "$.a").
fn split_root(path: &str) -> (Root, Option<String>) {
    if let Some(rest) = path.strip_prefix("$$") {
        return (Root::Context, Some(format!("${rest}")));
    }
    let Some(rest) = path.strip_prefix('$') else {
        return (Root::Input, None);
    };
    let name_len = rest.find(['.', '[']).unwrap_or(rest.len());
    if name_len == 0 {
        return (Root::Input, Some(path.to_string()));
    }
    let name = &rest[..name_len];
    if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        (
            Root::Variable(name.to_string()),
            Some(format!("${}", &rest[name_len..])),
        )
    } else {
        (Root::Input, None)
    }
}

/// Evaluates an ASL path. Reference paths give the node; query paths give an array of matches.
pub fn read(path: &str, roots: Roots<'_>) -> Result<Value, PathError> {
    let (root, rest) = split_root(path);
    let rest = rest.ok_or_else(|| PathError::Invalid(path.to_string()))?;
    let doc = match root {
        Root::Input => roots.input,
        Root::Context => roots.context.get(),
        Root::Variable(name) => match roots.variables.get(&name) {
            Some(v) => v,
            None => return Err(PathError::NotFound(path.to_string())),
        },
    };
    if let Some(rp) = ReferencePath::parse(&rest) {
        return rp
            .get(doc)
            .cloned()
            .ok_or_else(|| PathError::NotFound(path.to_string()));
    }
    let q = serde_json_path::JsonPath::parse(&rest)
        .map_err(|_| PathError::Invalid(path.to_string()))?;
    let nodes: Vec<Value> = q.query(doc).all().into_iter().cloned().collect();
    Ok(Value::Array(nodes))
}

/// Evaluates a path on `input` only (no context, no variables).
pub fn read_input(path: &str, input: &Value) -> Result<Value, PathError> {
    let empty = Map::new();
    let context = Context::ready(Value::Null);
    read(
        path,
        Roots {
            input,
            context: &context,
            variables: &empty,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_paths() {
        let v = json!({"a": {"b": [1, {"c": 2}]}, "x y": 3});
        assert_eq!(read_input("$.a.b[1].c", &v), Ok(json!(2)));
        assert_eq!(read_input("$['x y']", &v), Ok(json!(3)));
        assert_eq!(read_input("$", &v), Ok(v.clone()));
        assert!(matches!(
            read_input("$.nope", &v),
            Err(PathError::NotFound(_))
        ));
    }

    #[test]
    fn query_paths() {
        let v = json!({"a": [{"x": 1}, {"x": 2}], "b": {"x": 3}});
        assert_eq!(read_input("$.a[*].x", &v), Ok(json!([1, 2])));
        assert_eq!(read_input("$.a[?(@.x > 1)].x", &v), Ok(json!([2])));
        let Ok(Value::Array(all)) = read_input("$..x", &v) else {
            panic!()
        };
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn writes_create_objects() {
        let mut v = json!({"a": 1});
        ReferencePath::parse("$.b.c")
            .unwrap()
            .set(&mut v, json!(2))
            .unwrap();
        assert_eq!(v, json!({"a": 1, "b": {"c": 2}}));
        assert!(
            ReferencePath::parse("$.a.c")
                .unwrap()
                .set(&mut v, json!(2))
                .is_err()
        );
        ReferencePath::parse("$")
            .unwrap()
            .set(&mut v, json!(7))
            .unwrap();
        assert_eq!(v, json!(7));
    }

    #[test]
    fn roots() {
        let ctx = json!({"Execution": {"Name": "e"}});
        let mut vars = Map::new();
        vars.insert("x".into(), json!({"y": 5}));
        let ctx = Context::ready(ctx);
        let roots = Roots {
            input: &Value::Null,
            context: &ctx,
            variables: &vars,
        };
        assert_eq!(read("$$.Execution.Name", roots), Ok(json!("e")));
        assert_eq!(read("$x.y", roots), Ok(json!(5)));
    }
}
