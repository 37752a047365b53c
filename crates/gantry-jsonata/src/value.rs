//! Values during evaluation: JSON plus functions, with JSONata's array flags
//! (sequence, keep-singleton, constructed array, outer wrapper). `None` is `undefined`.

use crate::ast::Node;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Array flags: a sequence (path result; a singleton unwraps).
pub const SEQ: u8 = 1;
/// A sequence that keeps singletons (`[]` in a path).
pub const KEEP: u8 = 2;
/// An array built by an array constructor inside a path (not flattened).
pub const CONS: u8 = 4;
/// The top-level input array wrapped so that it is treated as one item.
pub const OUTER: u8 = 8;

/// A JSONata value.
#[derive(Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Num(f64),
    Str(Rc<str>),
    Arr(Rc<Vec<Val>>, u8),
    Obj(Rc<Obj>),
    Func(Rc<Func>),
}

/// An object that keeps insertion order (as JSONata does) with an index for lookups.
#[derive(Clone, Default)]
pub struct Obj {
    entries: Vec<(Rc<str>, Val)>,
    index: HashMap<Rc<str>, usize>,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }
    pub fn remove(&mut self, k: &str) {
        if let Some(i) = self.index.remove(k) {
            self.entries.remove(i);
            for slot in self.index.values_mut() {
                if *slot > i {
                    *slot -= 1;
                }
            }
        }
    }
    pub fn get(&self, k: &str) -> Option<&Val> {
        self.index.get(k).map(|&i| &self.entries[i].1)
    }
    pub fn insert(&mut self, k: Rc<str>, v: Val) {
        match self.index.get(&k) {
            Some(&i) => self.entries[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.entries.len());
                self.entries.push((k, v));
            }
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Rc<str>, &Val)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn keys(&self) -> impl Iterator<Item = &Rc<str>> {
        self.entries.iter().map(|(k, _)| k)
    }
}

/// A callable value.
pub enum Func {
    Lambda {
        params: Vec<String>,
        body: Rc<Node>,
        env: Rc<Env>,
        input: Option<Val>,
        signature: Option<Rc<crate::signature::Signature>>,
    },
    Builtin(&'static str),
    /// A host-provided function (e.g. Step Functions' `$hash`).
    Extension(String),
    /// Partial application: `None` marks a `?` placeholder.
    Partial {
        func: Val,
        args: Vec<Option<Option<Val>>>,
    },
    Regex(Rc<regex::Regex>),
    /// `f ~> g`: apply `f` then `g`.
    Chain(Val, Val),
    /// A transform expression (`|pattern|update, delete|`) and its scope.
    Transform(Rc<crate::ast::Transform>, Rc<Env>),
}

impl Func {
    /// How many arguments higher-order functions pass to this function.
    pub fn arity(&self) -> usize {
        match self {
            Func::Lambda { params, .. } => params.len(),
            Func::Builtin(name) => crate::functions::arity(name),
            Func::Extension(_) => 1,
            Func::Partial { args, .. } => args.iter().filter(|a| a.is_none()).count(),
            Func::Regex(_) => 1,
            Func::Chain(f, _) => match f {
                Val::Func(f) => f.arity(),
                _ => 1,
            },
            Func::Transform(..) => 1,
        }
    }
}

/// A variable scope. Values are `Option<Val>` because a parameter may be bound to undefined.
#[derive(Default)]
pub struct Env {
    pub vars: RefCell<HashMap<String, Option<Val>>>,
    pub parent: Option<Rc<Env>>,
}

impl Env {
    pub fn child(parent: &Rc<Env>) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
        })
    }
    /// `Some(binding)` when the name is bound somewhere up the chain.
    pub fn lookup(&self, name: &str) -> Option<Option<Val>> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        self.parent.as_ref().and_then(|p| p.lookup(name))
    }
    pub fn bind(&self, name: &str, v: Option<Val>) {
        self.vars.borrow_mut().insert(name.to_string(), v);
    }
}

impl Val {
    pub fn str(s: &str) -> Val {
        Val::Str(Rc::from(s))
    }
    pub fn string(s: String) -> Val {
        Val::Str(Rc::from(s))
    }
    pub fn arr(v: Vec<Val>) -> Val {
        Val::Arr(Rc::new(v), 0)
    }
    pub fn seq(v: Vec<Val>) -> Val {
        Val::Arr(Rc::new(v), SEQ)
    }
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
    /// JSONata's type name (`$type`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Arr(..) => "array",
            Val::Obj(_) => "object",
            Val::Func(_) => "function",
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Val {
        use serde_json::Value as J;
        match v {
            J::Null => Val::Null,
            J::Bool(b) => Val::Bool(*b),
            J::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
            J::String(s) => Val::str(s),
            J::Array(a) => Val::arr(a.iter().map(Val::from_json).collect()),
            J::Object(m) => {
                let mut o = Obj::new();
                for (k, v) in m {
                    o.insert(Rc::from(k.as_str()), Val::from_json(v));
                }
                Val::Obj(Rc::new(o))
            }
        }
    }

    /// Converts to JSON as `JSON.stringify` would: functions vanish from objects and
    /// become `null` in arrays; numbers that are whole become integers.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match self {
            Val::Null => J::Null,
            Val::Bool(b) => J::Bool(*b),
            Val::Num(n) => num_to_json(*n),
            Val::Str(s) => J::String(s.to_string()),
            Val::Arr(a, _) => J::Array(a.iter().map(|v| v.to_json().unwrap_or(J::Null)).collect()),
            Val::Obj(o) => {
                let mut m = serde_json::Map::new();
                for (k, v) in o.iter() {
                    if let Some(j) = v.to_json() {
                        m.insert(k.to_string(), j);
                    }
                }
                J::Object(m)
            }
            Val::Func(_) => return None,
        })
    }
}

/// A JSON number from a double: whole numbers in the exact range become integers,
/// `-0` becomes `0`, non-finite numbers (never produced: arithmetic checks them) `null`.
pub fn num_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}
