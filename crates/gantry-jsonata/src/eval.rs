//! The evaluator: JSONata's sequence semantics over [`Val`], with a depth limit and a
//! step budget so that untrusted expressions end with an error instead of hanging or
//! overflowing the stack.

use crate::ast::{BinOp, Node, Path, Stage, Step};
use crate::error::{Error, Result};
use crate::value::{CONS, Env, Func, KEEP, OUTER, Obj, SEQ, Val};
use crate::{Host, Limits};
use std::rc::{Rc, Weak};

pub type R = Result<Option<Val>>;

pub struct Evaluator<'h> {
    pub host: &'h mut dyn Host,
    pub limits: Limits,
    /// The caller's variables, converted when first read (they may be large and most
    /// expressions read few of them).
    pub globals: Option<&'h serde_json::Map<String, serde_json::Value>>,
    depth: usize,
    steps: u64,
    /// Every scope created, so that closure cycles (a function bound in the scope it
    /// captures) can be broken when evaluation ends.
    envs: Vec<Weak<Env>>,
    /// When to drop the dead entries of `envs` (a dead `Weak` still holds its
    /// allocation, and long loops create many scopes).
    prune_at: usize,
    pub now: Option<i64>,
    /// The top scope (for `$eval`).
    pub top: Option<Rc<Env>>,
    /// Address of a local when evaluation began: the stack guard measures from it.
    stack_base: usize,
    /// Whether paths record where each item came from (the expression uses `%`).
    pub track_parents: bool,
    /// Where the current context item came from, for `%`.
    ancestry: Chain,
}

/// An item and the item it was reached from (for the parent operator `%`).
pub struct Anc {
    item: Val,
    parent: Chain,
}

type Chain = Option<Rc<Anc>>;

fn link(item: &Val, parent: &Chain) -> Chain {
    Some(Rc::new(Anc {
        item: item.clone(),
        parent: parent.clone(),
    }))
}

/// One input item's result in a tracked path step.
enum StepOut {
    /// A value reached from the item with this chain.
    Raw(Val, Chain),
    /// Items whose chains are already known.
    Flat(Vec<(Val, Chain)>),
}

/// The address of a local variable: where the stack is now.
#[inline(never)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

impl Drop for Evaluator<'_> {
    fn drop(&mut self) {
        for e in &self.envs {
            if let Some(e) = e.upgrade() {
                e.vars.borrow_mut().clear();
            }
        }
    }
}

/// Unwraps a sequence as JSONata does after every evaluation: empty → undefined,
/// singleton → its item (unless kept).
pub fn collapse(v: Option<Val>) -> Option<Val> {
    match v {
        Some(Val::Arr(a, f)) if f & SEQ != 0 => {
            if a.is_empty() {
                None
            } else if a.len() == 1 && f & KEEP == 0 {
                Some(a[0].clone())
            } else {
                Some(Val::Arr(a, f))
            }
        }
        other => other,
    }
}

/// JSONata's boolean cast.
pub fn truthy(v: &Option<Val>) -> bool {
    match v {
        None => false,
        Some(v) => truthy_val(v),
    }
}

fn truthy_val(v: &Val) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Num(n) => *n != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Arr(a, _) => match a.len() {
            0 => false,
            1 => truthy_val(&a[0]),
            _ => a.iter().any(truthy_val),
        },
        Val::Obj(o) => !o.is_empty(),
        Val::Func(_) => false,
    }
}

/// Deep equality that counts the values it compares (charged to the step budget).
pub fn deep_equal_counted(a: &Val, b: &Val, n: &mut u64) -> bool {
    *n += 1;
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => {
            *n += x.len().min(y.len()) as u64 / 16;
            x == y
        }
        (Val::Arr(x, _), Val::Arr(y, _)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| deep_equal_counted(p, q, n))
        }
        (Val::Obj(x), Val::Obj(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal_counted(v, w, n)))
        }
        _ => false,
    }
}

/// `$append` semantics: undefined is neutral, non-arrays become singletons.
pub fn append(a: Option<Val>, b: Option<Val>) -> Option<Val> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => {
            let mut out = match a {
                Val::Arr(a, _) => a.as_ref().clone(),
                v => vec![v],
            };
            match b {
                Val::Arr(b, _) => out.extend(b.iter().cloned()),
                v => out.push(v),
            }
            Some(Val::arr(out))
        }
    }
}

/// `$append` over many values at once: undefined members are skipped, one member is
/// returned as it is, arrays are spliced in.
pub fn append_all(members: Vec<Option<Val>>) -> Option<Val> {
    let mut defined: Vec<Val> = members.into_iter().flatten().collect();
    if defined.len() <= 1 {
        return defined.pop();
    }
    let mut out = Vec::new();
    for v in defined {
        match v {
            Val::Arr(a, _) => out.extend(a.iter().cloned()),
            v => out.push(v),
        }
    }
    Some(Val::arr(out))
}

fn lookup(input: &Val, key: &str) -> Option<Val> {
    match input {
        Val::Arr(a, _) => {
            let mut out = Vec::new();
            for item in a.iter() {
                match lookup(item, key) {
                    Some(Val::Arr(x, _)) => out.extend(x.iter().cloned()),
                    Some(v) => out.push(v),
                    None => {}
                }
            }
            Some(Val::seq(out))
        }
        Val::Obj(o) => o.get(key).cloned(),
        _ => None,
    }
}

fn flatten_into(v: &Val, out: &mut Vec<Val>) {
    match v {
        Val::Arr(a, _) => a.iter().for_each(|x| flatten_into(x, out)),
        v => out.push(v.clone()),
    }
}

fn descendants(v: &Val, out: &mut Vec<Val>) {
    match v {
        Val::Arr(a, _) => a.iter().for_each(|x| descendants(x, out)),
        Val::Obj(o) => {
            out.push(v.clone());
            o.iter().for_each(|(_, x)| descendants(x, out));
        }
        v => out.push(v.clone()),
    }
}

fn wildcard(input: &Option<Val>) -> Option<Val> {
    let mut out = Vec::new();
    let target = match input {
        Some(Val::Arr(a, f)) if f & OUTER != 0 => a.first().cloned(),
        other => other.clone(),
    };
    match &target {
        Some(Val::Obj(o)) => {
            for (_, v) in o.iter() {
                match v {
                    Val::Arr(..) => flatten_into(v, &mut out),
                    v => out.push(v.clone()),
                }
            }
        }
        Some(Val::Arr(a, _)) => a.iter().for_each(|v| flatten_into(v, &mut out)),
        _ => {}
    }
    Some(Val::seq(out))
}

type Edit = (*const Obj, Vec<(Rc<str>, Val)>, Vec<String>);

/// Copies `v` with the edits applied to the objects they name (children first, so an
/// edited object's own edits see its edited children).
fn rebuild(v: &Val, edits: &[Edit], visited: &mut u64) -> Val {
    *visited += 1;
    match v {
        Val::Arr(a, f) => Val::Arr(
            Rc::new(a.iter().map(|x| rebuild(x, edits, visited)).collect()),
            *f,
        ),
        Val::Obj(o) => {
            let mut out = Obj::new();
            for (k, x) in o.iter() {
                out.insert(k.clone(), rebuild(x, edits, visited));
            }
            let me = Rc::as_ptr(o);
            for (ptr, set, del) in edits {
                if *ptr == me {
                    for (k, x) in set {
                        out.insert(k.clone(), x.clone());
                    }
                    for k in del {
                        out.remove(k);
                    }
                }
            }
            Val::Obj(Rc::new(out))
        }
        v => v.clone(),
    }
}

/// The outcome of a lambda body: a value, or a tail call still to make.
enum Tail {
    Done(Option<Val>),
    Call(Rc<Func>, Vec<Option<Val>>),
}

/// An item of a path with the variables bound on the way to it.
#[derive(Clone)]
struct Tuple {
    at: Val,
    binds: Vec<(String, Val)>,
}

impl Tuple {
    fn bind(&mut self, name: &str, v: Val) {
        match self.binds.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = v,
            None => self.binds.push((name.to_string(), v)),
        }
    }
    fn get(&self, name: &str) -> Option<Val> {
        self.binds
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Whether a predicate result keeps the item at `index` of `len`: numbers (or arrays
/// of numbers) select positions, counting from the end when negative; anything else
/// is cast to a boolean.
fn predicate_keeps(r: &Option<Val>, index: usize, len: f64) -> bool {
    let nums: Option<Vec<f64>> = match r {
        Some(Val::Num(n)) => Some(vec![*n]),
        Some(Val::Arr(a, _)) if !a.is_empty() && a.iter().all(|x| matches!(x, Val::Num(_))) => {
            Some(a.iter().filter_map(Val::as_num).collect())
        }
        _ => None,
    };
    match nums {
        Some(ns) => ns.into_iter().any(|n| {
            let mut k = n.floor();
            if k < 0.0 {
                k += len;
            }
            k == index as f64
        }),
        None => truthy(r),
    }
}

fn group_key(v: Option<Val>, pos: usize) -> Result<Option<Rc<str>>> {
    match v {
        None => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(v) => Err(Error::at(
            "T1003",
            pos,
            format!(
                "Key in object structure must evaluate to a string; got: {}",
                crate::text::stringify(&v, false)
            ),
        )),
    }
}

fn duplicate_key(key: &str, pos: usize) -> Error {
    Error::at(
        "D1009",
        pos,
        format!("Multiple key definitions evaluate to same key: \"{key}\""),
    )
}

fn items_of(v: &Option<Val>) -> Vec<Val> {
    match v {
        None => vec![],
        Some(Val::Arr(a, _)) => a.as_ref().clone(),
        Some(v) => vec![v.clone()],
    }
}

impl<'h> Evaluator<'h> {
    pub fn new(host: &'h mut dyn Host, limits: Limits) -> Self {
        Evaluator {
            host,
            limits,
            globals: None,
            depth: 0,
            steps: 0,
            envs: Vec::new(),
            prune_at: 1024,
            now: None,
            top: None,
            stack_base: stack_position(),
            track_parents: false,
            ancestry: None,
        }
    }

    pub fn new_env(&mut self, parent: Option<&Rc<Env>>) -> Rc<Env> {
        let e = match parent {
            Some(p) => Env::child(p),
            None => Rc::new(Env::default()),
        };
        if self.envs.len() >= self.prune_at {
            self.envs.retain(|w| w.strong_count() > 0);
            self.prune_at = (self.envs.len() * 2).max(1024);
        }
        self.envs.push(Rc::downgrade(&e));
        e
    }

    /// Counts work against the budget (also used by functions that loop).
    pub fn tick(&mut self, n: u64) -> Result<()> {
        self.steps += n;
        if self.steps > self.limits.max_steps {
            return Err(Error::new(
                "U1002",
                format!(
                    "The expression exceeded the evaluation budget of {} steps",
                    self.limits.max_steps
                ),
            ));
        }
        Ok(())
    }

    /// Refuses values nested more deeply than the limit (deep values would make
    /// serialisation and dropping recurse too far). Visiting counts against the budget.
    pub fn check_nesting(&mut self, v: &Val) -> Result<()> {
        let mut stack: Vec<(&Val, usize)> = vec![(v, 1)];
        let mut visited = 0u64;
        while let Some((v, d)) = stack.pop() {
            visited += 1;
            if d > self.limits.max_nesting {
                return Err(Error::new(
                    "U1003",
                    format!(
                        "A value nests more than {} levels deep",
                        self.limits.max_nesting
                    ),
                ));
            }
            match v {
                Val::Arr(a, _) => stack.extend(
                    a.iter()
                        .filter(|x| matches!(x, Val::Arr(..) | Val::Obj(_)))
                        .map(|x| (x, d + 1)),
                ),
                Val::Obj(o) => stack.extend(
                    o.iter()
                        .map(|(_, x)| x)
                        .filter(|x| matches!(x, Val::Arr(..) | Val::Obj(_)))
                        .map(|x| (x, d + 1)),
                ),
                _ => {}
            }
        }
        self.tick(visited / 8)
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        // Both a frame count and the stack actually used: frame sizes differ between
        // optimised and unoptimised builds, and the caller's stack may be small.
        if self.depth > self.limits.max_depth
            || stack_position().abs_diff(self.stack_base) > self.limits.max_stack_bytes
        {
            self.depth -= 1;
            return Err(Error::new(
                "U1001",
                "Stack overflow error: check for non-terminating recursive function. Consider rewriting as tail-recursive.",
            ));
        }
        Ok(())
    }

    pub fn eval(&mut self, node: &Node, input: &Option<Val>, env: &Rc<Env>) -> R {
        self.enter()?;
        let r = self.tick(1).and_then(|_| self.eval_inner(node, input, env));
        self.depth -= 1;
        Ok(collapse(r?))
    }

    // Each arm with locals lives in its own function: in unoptimised builds a frame
    // holds every arm's locals, and this function recurses through `eval`.
    fn eval_inner(&mut self, node: &Node, input: &Option<Val>, env: &Rc<Env>) -> R {
        match node {
            Node::Num(n) => Ok(Some(Val::Num(*n))),
            Node::Str(s) => Ok(Some(Val::Str(s.clone()))),
            Node::Bool(b) => Ok(Some(Val::Bool(*b))),
            Node::Null => Ok(Some(Val::Null)),
            Node::Regex(r) => Ok(Some(Val::Func(Rc::new(Func::Regex(r.clone()))))),
            Node::Name(n) => Ok(input.as_ref().and_then(|i| lookup(i, n))),
            Node::Var(name, pos) => self.variable(name, *pos, input, env),
            Node::Wildcard => Ok(wildcard(input)),
            Node::Descendant => Ok(input.as_ref().map(|v| {
                let mut out = Vec::new();
                descendants(v, &mut out);
                Val::seq(out)
            })),
            Node::Path(p) => self.path(p, input, env),
            Node::Parent(pos) => match self.ancestry.as_ref().and_then(|a| a.parent.as_ref()) {
                Some(parent) => Ok(Some(parent.item.clone())),
                None => Err(Error::at(
                    "S0217",
                    *pos,
                    "The object representing the 'parent' cannot be derived from this expression",
                )),
            },
            Node::Neg(e, pos) => self.eval_neg(e, *pos, input, env),
            Node::Binary(op, l, r, pos) => self.eval_binary(*op, l, r, *pos, input, env),
            Node::And(l, r) => self.eval_logic(true, l, r, input, env),
            Node::Or(l, r) => self.eval_logic(false, l, r, input, env),
            Node::Array(items, cons) => self.eval_array(items, *cons, input, env),
            Node::Object(pairs, pos) => self.group(input.clone(), pairs, *pos, env),
            Node::Filter(e, preds, keep) => self.eval_filter(e, preds, *keep, input, env),
            Node::Group(e, pairs, pos) => self.eval_group(e, pairs, *pos, input, env),
            Node::Sort(_, pos) => Err(Error::at(
                "S0201",
                *pos,
                "An order-by clause must follow a path step",
            )),
            Node::Cond(c, t, e) => self.eval_cond(c, t, e.as_deref(), input, env),
            Node::Elvis(l, r) => self.eval_default(true, l, r, input, env),
            Node::Coalesce(l, r) => self.eval_default(false, l, r, input, env),
            Node::Block(items) => self.eval_block(items, input, env),
            Node::Bind(name, e) => self.eval_bind(name, e, input, env),
            Node::Lambda(params, body, signature) => Ok(Some(Val::Func(Rc::new(Func::Lambda {
                params: params.as_ref().clone(),
                body: body.clone(),
                env: env.clone(),
                input: input.clone(),
                signature: signature.clone(),
            })))),
            Node::Call(f, args, pos) => self.eval_call(f, args, *pos, input, env),
            Node::Placeholder => Err(Error::new(
                "S0201",
                "A ? placeholder is only allowed as a function argument",
            )),
            Node::Apply(l, r, pos) => self.eval_apply(l, r, *pos, input, env),
            Node::Range(l, r, pos) => self.eval_range(l, r, *pos, input, env),
            Node::Transform(t) => Ok(Some(Val::Func(Rc::new(Func::Transform(
                t.clone(),
                env.clone(),
            ))))),
        }
    }

    #[inline(never)]
    fn eval_neg(&mut self, e: &Node, pos: usize, input: &Option<Val>, env: &Rc<Env>) -> R {
        match self.eval(e, input, env)? {
            None => Ok(None),
            Some(Val::Num(n)) => Ok(Some(Val::Num(-n))),
            Some(_) => Err(Error::at("D1002", pos, "Cannot negate a non-numeric value")),
        }
    }

    #[inline(never)]
    fn eval_binary(
        &mut self,
        op: BinOp,
        l: &Node,
        r: &Node,
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        // Operator chains (`a & b & c ...`) nest to the left; walk the left spine in a
        // loop rather than recursing once per operator. The order of evaluation is
        // unchanged: leftmost operand first, then each right operand in turn.
        let mut spine = vec![(op, r, pos)];
        let mut cur = l;
        while let Node::Binary(op2, l2, r2, p2) = cur {
            spine.push((*op2, r2, *p2));
            cur = l2;
        }
        let mut acc = self.eval(cur, input, env)?;
        for (op, r, pos) in spine.into_iter().rev() {
            let b = self.eval(r, input, env)?;
            // Concatenation copies both strings; `=` and `in` walk arrays and objects.
            self.tick(1 + operand_work(&acc) + operand_work(&b))?;
            let mut cost = 0;
            acc = binary(op, acc, b, &mut cost).map_err(|e| e.or_at(pos))?;
            self.tick(cost / 4)?;
        }
        Ok(acc)
    }

    #[inline(never)]
    fn eval_logic(
        &mut self,
        and: bool,
        l: &Node,
        r: &Node,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let a = truthy(&self.eval(l, input, env)?);
        // Short-circuit: the right side is not evaluated when the left decides.
        let v = if and {
            a && truthy(&self.eval(r, input, env)?)
        } else {
            a || truthy(&self.eval(r, input, env)?)
        };
        Ok(Some(Val::Bool(v)))
    }

    #[inline(never)]
    fn eval_array(&mut self, items: &[Node], cons: bool, input: &Option<Val>, env: &Rc<Env>) -> R {
        let mut out = Vec::new();
        for item in items {
            let v = self.eval(item, input, env)?;
            match (item, v) {
                (_, None) => {}
                (Node::Array(..), Some(v)) => {
                    self.check_nesting(&v)?;
                    out.push(v)
                }
                (_, Some(Val::Arr(a, _))) => out.extend(a.iter().cloned()),
                (_, Some(v)) => {
                    self.check_nesting(&v)?;
                    out.push(v)
                }
            }
        }
        // Building copies the items (flattened arrays included).
        self.tick(out.len() as u64)?;
        Ok(Some(Val::Arr(Rc::new(out), if cons { CONS } else { 0 })))
    }

    #[inline(never)]
    fn eval_filter(
        &mut self,
        e: &Node,
        preds: &[Node],
        keep: bool,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        // With `[]`, a singleton sequence must be seen before it collapses.
        let mut v = if keep {
            self.enter()?;
            let r = self.tick(1).and_then(|_| self.eval_inner(e, input, env));
            self.depth -= 1;
            r?
        } else {
            self.eval(e, input, env)?
        };
        for p in preds {
            v = self.filter(p, v, env)?;
        }
        Ok(match v {
            Some(Val::Arr(a, f)) if keep && f & SEQ != 0 => Some(Val::Arr(a, f | KEEP)),
            Some(Val::Arr(a, f)) if keep && f & CONS != 0 => {
                Some(Val::Arr(Rc::new(vec![Val::Arr(a, f)]), SEQ | KEEP))
            }
            v => v,
        })
    }

    #[inline(never)]
    fn eval_group(
        &mut self,
        e: &Node,
        pairs: &[(Node, Node)],
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let v = self.eval(e, input, env)?;
        self.group(v, pairs, pos, env)
    }

    #[inline(never)]
    fn eval_cond(
        &mut self,
        c: &Node,
        t: &Node,
        e: Option<&Node>,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let cv = self.eval(c, input, env)?;
        if truthy(&cv) {
            self.eval(t, input, env)
        } else if let Some(e) = e {
            self.eval(e, input, env)
        } else {
            Ok(None)
        }
    }

    /// `?:` (`elvis`: falls back when the left is falsy) and `??` (when undefined).
    #[inline(never)]
    fn eval_default(
        &mut self,
        elvis: bool,
        l: &Node,
        r: &Node,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let v = self.eval(l, input, env)?;
        let keep = if elvis { truthy(&v) } else { v.is_some() };
        if keep {
            Ok(v)
        } else {
            self.eval(r, input, env)
        }
    }

    #[inline(never)]
    fn eval_block(&mut self, items: &[Node], input: &Option<Val>, env: &Rc<Env>) -> R {
        let scope = self.new_env(Some(env));
        let mut last = None;
        for item in items {
            last = self.eval(item, input, &scope)?;
        }
        Ok(last)
    }

    #[inline(never)]
    fn eval_bind(&mut self, name: &str, e: &Node, input: &Option<Val>, env: &Rc<Env>) -> R {
        let v = self.eval(e, input, env)?;
        env.bind(name, v.clone());
        Ok(v)
    }

    /// The function being called: an unknown `$name` there is "not a function"
    /// (`T1006`), even when unbound variables are errors.
    fn eval_callee(&mut self, f: &Node, input: &Option<Val>, env: &Rc<Env>) -> R {
        if !matches!(f, Node::Var(..)) {
            return self.eval(f, input, env);
        }
        let strict = self.limits.strict_variables;
        self.limits.strict_variables = false;
        let r = self.eval(f, input, env);
        self.limits.strict_variables = strict;
        r
    }

    #[inline(never)]
    fn eval_call(
        &mut self,
        f: &Node,
        args: &[Node],
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let func = self.eval_callee(f, input, env)?;
        self.call(f, func, args, None, input, env, pos)
    }

    #[inline(never)]
    fn eval_apply(
        &mut self,
        l: &Node,
        r: &Node,
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let lhs = self.eval(l, input, env)?;
        // A call on the right gets the left as its first argument, unless it is
        // a partial application (then it is a function value to chain).
        if let Node::Call(f, args, cpos) = r
            && !args.iter().any(|a| matches!(a, Node::Placeholder))
        {
            let func = self.eval_callee(f, input, env)?;
            return self.call(f, func, args, Some(lhs), input, env, *cpos);
        }
        let func = self.eval(r, input, env)?;
        let Some(func @ Val::Func(_)) = func else {
            return Err(Error::at(
                "T2006",
                pos,
                "The right side of the function application operator ~> must be a function",
            ));
        };
        match lhs {
            Some(f @ Val::Func(_)) => Ok(Some(Val::Func(Rc::new(Func::Chain(f, func))))),
            lhs => self.apply(&func, vec![lhs], input, pos),
        }
    }

    #[inline(never)]
    fn eval_range(
        &mut self,
        l: &Node,
        r: &Node,
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> R {
        let a = self.eval(l, input, env)?;
        let b = self.eval(r, input, env)?;
        let int = |v: &Option<Val>, code: &'static str, side: &str| -> Result<Option<f64>> {
            match v {
                None => Ok(None),
                Some(Val::Num(n)) if n.fract() == 0.0 => Ok(Some(*n)),
                Some(_) => Err(Error::at(
                    code,
                    pos,
                    format!(
                        "The {side} side of the range operator (..) must evaluate to an integer"
                    ),
                )),
            }
        };
        let a = int(&a, "T2003", "left")?;
        let b = int(&b, "T2004", "right")?;
        Ok(match (a, b) {
            (Some(a), Some(b)) if a <= b => {
                let size = b - a + 1.0;
                if size > 10_000_000.0 {
                    return Err(Error::at(
                        "D2014",
                        pos,
                        format!(
                            "The size of the sequence allocated by the range operator (..) must not exceed 1e7. Attempted to allocate {size}."
                        ),
                    ));
                }
                self.tick(size as u64)?;
                let mut out = Vec::with_capacity(size as usize);
                let mut x = a;
                while x <= b {
                    out.push(Val::Num(x));
                    x += 1.0;
                }
                Some(Val::arr(out))
            }
            _ => None,
        })
    }

    fn variable(&mut self, name: &str, pos: usize, input: &Option<Val>, env: &Rc<Env>) -> R {
        if name.is_empty() {
            return Ok(match input {
                Some(Val::Arr(a, f)) if f & OUTER != 0 => a.first().cloned(),
                other => other.clone(),
            });
        }
        if let Some(v) = env.lookup(name) {
            return Ok(v);
        }
        if let Some(v) = self.globals.and_then(|g| g.get(name)) {
            let v = Val::from_json(v);
            if let Some(top) = &self.top {
                top.bind(name, Some(v.clone()));
            }
            return Ok(Some(v));
        }
        // Host functions come first so that a host can replace a built-in (Step
        // Functions' `$random` takes a seed) or withdraw one (it has no `$eval`).
        if self.host.has_function(name) {
            return Ok(Some(Val::Func(Rc::new(Func::Extension(name.to_string())))));
        }
        if crate::functions::exists(name) {
            return Ok(Some(Val::Func(Rc::new(Func::Builtin(
                crate::functions::canonical(name),
            )))));
        }
        if self.limits.strict_variables && name != "$" {
            return Err(Error::at(
                "T1007",
                pos,
                format!("The variable '${name}' is not defined"),
            ));
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        fnode: &Node,
        func: Option<Val>,
        args: &[Node],
        first: Option<Option<Val>>,
        input: &Option<Val>,
        env: &Rc<Env>,
        pos: usize,
    ) -> R {
        let Some(func @ Val::Func(_)) = func else {
            if let Node::Path(p) = fnode
                && let [step] = p.steps.as_slice()
                && let Node::Name(n) = &step.expr
            {
                return Err(Error::at(
                    "T1005",
                    pos,
                    format!("Attempted to invoke a non-function. Did you mean ${n}?"),
                ));
            }
            return Err(Error::at(
                "T1006",
                pos,
                "Attempted to invoke a non-function",
            ));
        };
        let mut vals: Vec<Option<Option<Val>>> = Vec::new();
        if let Some(f) = first {
            vals.push(Some(f));
        }
        let mut partial = false;
        for a in args {
            if matches!(a, Node::Placeholder) {
                partial = true;
                vals.push(None);
            } else {
                vals.push(Some(self.eval(a, input, env)?));
            }
        }
        if partial {
            if let Val::Func(f) = &func
                && matches!(f.as_ref(), Func::Extension(_))
            {
                return Err(Error::at(
                    "T1008",
                    pos,
                    "Attempted to partially apply a non-function",
                ));
            }
            return Ok(Some(Val::Func(Rc::new(Func::Partial { func, args: vals }))));
        }
        let vals = vals.into_iter().map(|v| v.flatten()).collect();
        self.apply(&func, vals, input, pos)
    }

    /// Calls a function value.
    pub fn apply(
        &mut self,
        func: &Val,
        args: Vec<Option<Val>>,
        input: &Option<Val>,
        pos: usize,
    ) -> R {
        let Val::Func(f) = func else {
            return Err(Error::at(
                "T1006",
                pos,
                "Attempted to invoke a non-function",
            ));
        };
        self.enter()?;
        // Not collapsed here: as in JSONata, a sequence from a function collapses where
        // the call is evaluated (so `$f(x)[]` can keep it), not inside `$map` & co.
        let r = self.apply_inner(f, args, input, pos);
        self.depth -= 1;
        r
    }

    #[inline(never)]
    fn apply_lambda(
        &mut self,
        f: &Rc<Func>,
        args: Vec<Option<Val>>,
        input: &Option<Val>,
        pos: usize,
    ) -> R {
        // Tail calls from a lambda's body to a lambda run in this loop instead of
        // nesting (JSONata optimises tail calls too), so tail recursion is
        // bounded by the step budget rather than the stack.
        let mut f = f.clone();
        let mut args = args;
        // A lambda's body does not know where its context came from.
        let saved = self.ancestry.take();
        let r = self.apply_lambda_loop(&mut f, &mut args, input, pos);
        self.ancestry = saved;
        r
    }

    fn apply_lambda_loop(
        &mut self,
        f: &mut Rc<Func>,
        args: &mut Vec<Option<Val>>,
        input: &Option<Val>,
        pos: usize,
    ) -> R {
        loop {
            let current = f.clone();
            let Func::Lambda {
                params,
                body,
                env,
                input: captured,
                signature,
            } = current.as_ref()
            else {
                return self.apply_inner(&current, std::mem::take(args), input, pos);
            };
            let mut given = std::mem::take(args);
            if let Some(sig) = signature {
                given = sig
                    .validate(given, input, "function")
                    .map_err(|e| e.or_at(pos))?;
            }
            let scope = self.new_env(Some(env));
            let mut supplied = given.into_iter();
            for p in params {
                scope.bind(p, supplied.next().flatten());
            }
            match self.eval_tail(body, captured, &scope)? {
                Tail::Done(v) => return Ok(v),
                Tail::Call(next, next_args) => {
                    *f = next;
                    *args = next_args;
                }
            }
        }
    }

    /// Evaluates a lambda body, stopping at a call to a lambda in tail position
    /// (through conditionals and the last expression of blocks) and returning it.
    fn eval_tail(&mut self, node: &Node, input: &Option<Val>, env: &Rc<Env>) -> Result<Tail> {
        match node {
            Node::Cond(c, t, e) => self.tail_cond(c, t, e.as_deref(), input, env),
            Node::Block(items) if !items.is_empty() => self.tail_block(items, input, env),
            Node::Call(f, args, pos) if !args.iter().any(|a| matches!(a, Node::Placeholder)) => {
                self.tail_call(f, args, *pos, input, env)
            }
            other => Ok(Tail::Done(self.eval(other, input, env)?)),
        }
    }

    #[inline(never)]
    fn tail_cond(
        &mut self,
        c: &Node,
        t: &Node,
        e: Option<&Node>,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> Result<Tail> {
        let cv = self.eval(c, input, env)?;
        if truthy(&cv) {
            self.eval_tail(t, input, env)
        } else if let Some(e) = e {
            self.eval_tail(e, input, env)
        } else {
            Ok(Tail::Done(None))
        }
    }

    #[inline(never)]
    fn tail_block(&mut self, items: &[Node], input: &Option<Val>, env: &Rc<Env>) -> Result<Tail> {
        let scope = self.new_env(Some(env));
        let Some((last, init)) = items.split_last() else {
            return Ok(Tail::Done(None));
        };
        for item in init {
            self.eval(item, input, &scope)?;
        }
        self.eval_tail(last, input, &scope)
    }

    #[inline(never)]
    fn tail_call(
        &mut self,
        f: &Node,
        args: &[Node],
        pos: usize,
        input: &Option<Val>,
        env: &Rc<Env>,
    ) -> Result<Tail> {
        let func = self.eval_callee(f, input, env)?;
        if let Some(Val::Func(func)) = &func
            && matches!(func.as_ref(), Func::Lambda { .. })
        {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(self.eval(a, input, env)?);
            }
            self.tick(1)?;
            return Ok(Tail::Call(func.clone(), vals));
        }
        Ok(Tail::Done(collapse(
            self.call(f, func, args, None, input, env, pos)?,
        )))
    }

    fn apply_inner(
        &mut self,
        f: &Rc<Func>,
        args: Vec<Option<Val>>,
        input: &Option<Val>,
        pos: usize,
    ) -> R {
        match f.as_ref() {
            Func::Lambda { .. } => self.apply_lambda(f, args, input, pos),
            Func::Builtin(name) => {
                crate::functions::call(self, name, args, input).map_err(|e| e.or_at(pos))
            }
            Func::Extension(name) => {
                // Converting to and from JSON is proportional to the sizes.
                let cost: u64 = args.iter().map(operand_work).sum();
                self.tick(cost)?;
                let json: Vec<Option<serde_json::Value>> = args
                    .iter()
                    .map(|a| a.as_ref().and_then(|v| v.to_json()))
                    .collect();
                let r = self.host.call(name, json).map_err(|e| e.or_at(pos))?;
                let r = r.map(|v| Val::from_json(&v));
                if let Some(v) = &r {
                    self.check_nesting(v)?;
                    self.tick(operand_work(&r))?;
                }
                Ok(r)
            }
            Func::Partial { func, args: bound } => {
                let mut supplied = args.into_iter();
                let full = bound
                    .iter()
                    .map(|b| match b {
                        Some(v) => v.clone(),
                        None => supplied.next().flatten(),
                    })
                    .collect();
                self.apply(func, full, input, pos)
            }
            Func::Regex(re) => match args.into_iter().next().flatten() {
                None => Ok(None),
                Some(Val::Str(s)) => Ok(crate::functions::regex_first(re, &s)),
                Some(_) => Err(Error::at(
                    "T0410",
                    pos,
                    "Argument 1 of a regular expression must be a string",
                )),
            },
            Func::Chain(a, b) => {
                let r = self.apply(a, args, input, pos)?;
                self.apply(b, vec![r], input, pos)
            }
            Func::Transform(t, env) => {
                let arg = args.into_iter().next().flatten();
                self.transform(t, arg, env)
            }
        }
    }

    fn path(&mut self, p: &Path, input: &Option<Val>, env: &Rc<Env>) -> R {
        let saved = self.ancestry.clone();
        let r = if self.track_parents && !p.steps.iter().any(|s| s.tuple) {
            self.path_tracked(p, input, env)
        } else {
            // Bindings paths do not record parents: `%` there is an error, not a guess.
            if self.track_parents {
                self.ancestry = None;
            }
            self.path_plain(p, input, env)
        };
        self.ancestry = saved;
        r
    }

    /// A path that records, for each item, the item it was reached from (`%`).
    fn path_tracked(&mut self, p: &Path, input: &Option<Val>, env: &Rc<Env>) -> R {
        let first_is_var = matches!(p.steps.first().map(|s| &s.expr), Some(Node::Var(..)));
        let outer = self.ancestry.clone();
        let mut seq: Vec<(Option<Val>, Chain)> = match input {
            Some(Val::Arr(a, _)) if !first_is_var => {
                // The items of an array context share the array's parent.
                let up = outer.as_ref().and_then(|c| c.parent.clone());
                a.iter().map(|v| (Some(v.clone()), link(v, &up))).collect()
            }
            other => vec![(other.clone(), outer.clone())],
        };
        let mut result: Vec<(Val, Chain)> = Vec::new();
        let mut flags = SEQ;
        let n = p.steps.len();
        for (i, step) in p.steps.iter().enumerate() {
            let last = i + 1 == n;
            if i == 0 && matches!(step.expr, Node::Array(_, true)) {
                self.ancestry = None;
                let ctx = Some(Val::seq(
                    seq.iter().filter_map(|(v, _)| v.clone()).collect(),
                ));
                let (vals, f) = match self.eval(&step.expr, &ctx, env)? {
                    Some(Val::Arr(a, f)) => (a.as_ref().clone(), f),
                    Some(v) => (vec![v], SEQ),
                    None => (vec![], SEQ),
                };
                result = vals.iter().map(|v| (v.clone(), link(v, &None))).collect();
                flags = f;
            } else if let Node::Sort(terms, pos) = &step.expr {
                let items = seq
                    .iter()
                    .filter_map(|(v, c)| {
                        v.clone()
                            .map(|v| (v.clone(), env.clone(), c.clone(), (v, c.clone())))
                    })
                    .collect();
                let mut sorted = self.sort(items, terms, *pos)?;
                for stage in &step.stages {
                    if let Stage::Filter(pred) = stage {
                        sorted = self.filter_tracked(pred, sorted, env)?;
                    }
                }
                result = sorted;
                flags = SEQ;
            } else {
                let mut outs = Vec::new();
                for (item, ci) in &seq {
                    self.ancestry = ci.clone();
                    let Some(r) = self.eval(&step.expr, item, env)? else {
                        continue;
                    };
                    if matches!(step.expr, Node::Parent(_)) {
                        // The parent keeps its own chain.
                        let up = ci.as_ref().and_then(|c| c.parent.clone());
                        outs.push(StepOut::Flat(vec![(r, up)]));
                    } else if !step.stages.is_empty() {
                        let mut els: Vec<(Val, Chain)> = match &r {
                            Val::Arr(a, _) => a.iter().map(|e| (e.clone(), link(e, ci))).collect(),
                            v => vec![(v.clone(), link(v, ci))],
                        };
                        for stage in &step.stages {
                            if let Stage::Filter(pred) = stage {
                                els = self.filter_tracked(pred, els, env)?;
                            }
                        }
                        outs.push(StepOut::Flat(els));
                    } else {
                        outs.push(StepOut::Raw(r, ci.clone()));
                    }
                }
                let single_array = last
                    && outs.len() == 1
                    && matches!(&outs[0], StepOut::Raw(Val::Arr(_, f), _) if f & SEQ == 0);
                result = Vec::new();
                flags = SEQ;
                for o in outs {
                    match o {
                        StepOut::Raw(Val::Arr(a, f), ci) if single_array => {
                            result.extend(a.iter().map(|e| (e.clone(), link(e, &ci))));
                            flags = f;
                        }
                        StepOut::Flat(items) => result.extend(items),
                        StepOut::Raw(Val::Arr(a, f), ci) if f & CONS == 0 => {
                            result.extend(a.iter().map(|e| (e.clone(), link(e, &ci))))
                        }
                        StepOut::Raw(v, ci) => {
                            let chain = link(&v, &ci);
                            result.push((v, chain));
                        }
                    }
                }
            }
            self.tick(result.len() as u64)?;
            if result.is_empty() {
                break;
            }
            seq = result
                .iter()
                .map(|(v, c)| (Some(v.clone()), c.clone()))
                .collect();
        }
        // Group-by sees the whole sequence, whose items have different parents.
        self.ancestry = None;
        let values: Vec<Val> = result.into_iter().map(|(v, _)| v).collect();
        self.finish_path(p, values, flags, env)
    }

    /// Predicates over items whose chains are known.
    fn filter_tracked(
        &mut self,
        pred: &Node,
        items: Vec<(Val, Chain)>,
        env: &Rc<Env>,
    ) -> Result<Vec<(Val, Chain)>> {
        if let Node::Num(n) = pred {
            let mut idx = n.floor();
            if idx < 0.0 {
                idx += items.len() as f64;
            }
            let picked = if idx >= 0.0 {
                items.into_iter().nth(idx as usize)
            } else {
                None
            };
            return Ok(match picked {
                Some((Val::Arr(a, _), c)) => {
                    let up = c.as_ref().and_then(|c| c.parent.clone());
                    a.iter().map(|e| (e.clone(), link(e, &up))).collect()
                }
                Some(x) => vec![x],
                None => vec![],
            });
        }
        let len = items.len() as f64;
        let mut kept = Vec::new();
        for (i, (v, c)) in items.into_iter().enumerate() {
            self.ancestry = c.clone();
            let r = self.eval(pred, &Some(v.clone()), env)?;
            if predicate_keeps(&r, i, len) {
                kept.push((v, c));
            }
        }
        Ok(kept)
    }

    fn path_plain(&mut self, p: &Path, input: &Option<Val>, env: &Rc<Env>) -> R {
        let first_is_var = matches!(p.steps.first().map(|s| &s.expr), Some(Node::Var(..)));
        let mut seq: Vec<Option<Val>> = match input {
            Some(Val::Arr(a, _)) if !first_is_var => a.iter().cloned().map(Some).collect(),
            other => vec![other.clone()],
        };
        let mut result: Vec<Val> = Vec::new();
        let mut flags = SEQ;
        let n = p.steps.len();
        // Once a step binds variables (`@$v`, `#$i`), the path carries tuples: each
        // item with the bindings made on the way to it.
        let mut tuples: Option<Vec<Tuple>> = None;
        for (i, step) in p.steps.iter().enumerate() {
            let last = i + 1 == n;
            if step.tuple || tuples.is_some() {
                let ts = self.tuple_step(step, &seq, tuples.take(), env)?;
                let empty = ts.is_empty();
                tuples = Some(ts);
                if empty {
                    break;
                }
                continue;
            }
            if i == 0 && matches!(step.expr, Node::Array(_, true)) {
                let ctx = Some(Val::seq(seq.iter().flatten().cloned().collect()));
                match self.eval(&step.expr, &ctx, env)? {
                    Some(Val::Arr(a, f)) => {
                        result = a.as_ref().clone();
                        flags = f;
                    }
                    Some(v) => {
                        result = vec![v];
                        flags = SEQ;
                    }
                    None => {
                        result = vec![];
                        flags = SEQ;
                    }
                }
            } else if let Node::Sort(terms, pos) = &step.expr {
                let items: Vec<(Val, Rc<Env>, Chain, Val)> = seq
                    .iter()
                    .flatten()
                    .map(|v| (v.clone(), env.clone(), None, v.clone()))
                    .collect();
                let sorted = self.sort(items, terms, *pos)?;
                let mut v = Some(Val::seq(sorted));
                for stage in &step.stages {
                    if let Stage::Filter(pred) = stage {
                        v = self.filter(pred, v, env)?;
                    }
                }
                result = items_of(&v);
                flags = SEQ;
            } else {
                let mut results = Vec::new();
                for item in &seq {
                    let mut r = self.eval(&step.expr, item, env)?;
                    for stage in &step.stages {
                        if let Stage::Filter(pred) = stage {
                            r = self.filter(pred, r, env)?;
                        }
                    }
                    if let Some(v) = r {
                        results.push(v);
                    }
                }
                if last
                    && results.len() == 1
                    && matches!(&results[0], Val::Arr(_, f) if f & SEQ == 0)
                {
                    let Some(Val::Arr(a, f)) = results.pop() else {
                        unreachable!("checked above")
                    };
                    result = a.as_ref().clone();
                    flags = f;
                } else {
                    result = Vec::new();
                    flags = SEQ;
                    for r in results {
                        match r {
                            Val::Arr(a, f) if f & CONS == 0 => result.extend(a.iter().cloned()),
                            v => result.push(v),
                        }
                    }
                }
            }
            self.tick(result.len() as u64)?;
            if result.is_empty() {
                break;
            }
            seq = result.iter().cloned().map(Some).collect();
        }
        if let Some(ts) = tuples {
            if let Some((pairs, pos)) = &p.group {
                return self.group_tuples(ts, pairs, *pos, env);
            }
            result = ts.into_iter().map(|t| t.at).collect();
            flags = SEQ;
        }
        self.finish_path(p, result, flags, env)
    }

    /// `[]` (keep singletons) and group-by on a path's result.
    fn finish_path(&mut self, p: &Path, result: Vec<Val>, flags: u8, env: &Rc<Env>) -> R {
        let mut out = Val::Arr(Rc::new(result), flags);
        if p.keep_singleton {
            if flags & CONS != 0 && flags & SEQ == 0 {
                out = Val::Arr(Rc::new(vec![out]), SEQ);
            }
            out = match out {
                Val::Arr(a, f) => Val::Arr(a, f | KEEP),
                v => v,
            };
        }
        if let Some((pairs, pos)) = &p.group {
            return self.group(Some(out), pairs, *pos, env);
        }
        Ok(Some(out))
    }

    /// Applies a transform: the objects the pattern matches in `obj` get the update
    /// merged in and the deletions removed; everything else is shared unchanged.
    fn transform(&mut self, t: &crate::ast::Transform, obj: Option<Val>, env: &Rc<Env>) -> R {
        let Some(obj) = obj else { return Ok(None) };
        let matches = self.eval(&t.pattern, &Some(obj.clone()), env)?;
        let matches = match matches {
            None => return Ok(Some(obj)),
            Some(Val::Arr(a, _)) => a.as_ref().clone(),
            Some(v) => vec![v],
        };
        // Matched objects are recognised by identity (values are shared, not copied).
        let mut edits: Vec<Edit> = Vec::new();
        for m in matches {
            let Val::Obj(o) = &m else { continue };
            let mut set = Vec::new();
            match self.eval(&t.update, &Some(m.clone()), env)? {
                None => {}
                Some(Val::Obj(u)) => set.extend(u.iter().map(|(k, v)| (k.clone(), v.clone()))),
                Some(_) => {
                    return Err(Error::at(
                        "T2011",
                        t.pos,
                        "The insert/update clause of the transform expression must evaluate to an object",
                    ));
                }
            }
            let mut del = Vec::new();
            if let Some(d) = &t.delete {
                match self.eval(d, &Some(m.clone()), env)? {
                    None => {}
                    Some(Val::Str(s)) => del.push(s.to_string()),
                    Some(Val::Arr(a, _)) if a.iter().all(|x| matches!(x, Val::Str(_))) => {
                        del.extend(a.iter().filter_map(|x| x.as_str().map(String::from)))
                    }
                    Some(_) => {
                        return Err(Error::at(
                            "T2012",
                            t.pos,
                            "The delete clause of the transform expression must evaluate to a string or array of strings",
                        ));
                    }
                }
            }
            edits.push((Rc::as_ptr(o), set, del));
        }
        if edits.is_empty() {
            return Ok(Some(obj));
        }
        let mut visited = 0u64;
        let out = rebuild(&obj, &edits, &mut visited);
        self.tick(edits.len() as u64 + visited / 4)?;
        Ok(Some(out))
    }

    /// A scope with a tuple's bindings.
    fn tuple_env(&mut self, env: &Rc<Env>, t: &Tuple) -> Rc<Env> {
        let e = self.new_env(Some(env));
        for (k, v) in &t.binds {
            e.bind(k, Some(v.clone()));
        }
        e
    }

    /// One step of a path that carries bindings (JSONata's tuple stream).
    fn tuple_step(
        &mut self,
        step: &Step,
        seq: &[Option<Val>],
        tuples: Option<Vec<Tuple>>,
        env: &Rc<Env>,
    ) -> Result<Vec<Tuple>> {
        if let Node::Sort(terms, pos) = &step.expr {
            let out = match tuples {
                Some(ts) => {
                    let mut items = Vec::with_capacity(ts.len());
                    for t in ts {
                        let e = self.tuple_env(env, &t);
                        items.push((t.at.clone(), e, None, t));
                    }
                    self.sort(items, terms, *pos)?
                }
                None => {
                    let items = seq
                        .iter()
                        .flatten()
                        .map(|v| (v.clone(), env.clone(), None, v.clone()))
                        .collect();
                    let sorted = self.sort(items, terms, *pos)?;
                    sorted
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let mut t = Tuple {
                                at: v,
                                binds: Vec::new(),
                            };
                            if let Some(ix) = &step.index {
                                t.bind(ix, Val::Num(i as f64));
                            }
                            t
                        })
                        .collect()
                }
            };
            return self.tuple_stages(&step.stages, out, env);
        }
        let tuples = tuples.unwrap_or_else(|| {
            seq.iter()
                .flatten()
                .map(|v| Tuple {
                    at: v.clone(),
                    binds: Vec::new(),
                })
                .collect()
        });
        let mut out = Vec::new();
        for t in &tuples {
            let e = self.tuple_env(env, t);
            let Some(res) = self.eval(&step.expr, &Some(t.at.clone()), &e)? else {
                continue;
            };
            let items = match res {
                Val::Arr(a, _) => a.as_ref().clone(),
                v => vec![v],
            };
            for (bb, item) in items.into_iter().enumerate() {
                let mut nt = t.clone();
                match &step.focus {
                    // `@$v`: the item is bound and the context stays where it was.
                    Some(f) => nt.bind(f, item),
                    None => nt.at = item,
                }
                if let Some(ix) = &step.index {
                    nt.bind(ix, Val::Num(bb as f64));
                }
                out.push(nt);
            }
        }
        self.tick(out.len() as u64)?;
        self.tuple_stages(&step.stages, out, env)
    }

    fn tuple_stages(
        &mut self,
        stages: &[Stage],
        mut tuples: Vec<Tuple>,
        env: &Rc<Env>,
    ) -> Result<Vec<Tuple>> {
        for stage in stages {
            match stage {
                Stage::Index(name) => {
                    for (i, t) in tuples.iter_mut().enumerate() {
                        t.bind(name, Val::Num(i as f64));
                    }
                }
                Stage::Filter(Node::Num(n)) => {
                    let mut idx = n.floor();
                    if idx < 0.0 {
                        idx += tuples.len() as f64;
                    }
                    tuples = if idx >= 0.0 && (idx as usize) < tuples.len() {
                        vec![tuples.swap_remove(idx as usize)]
                    } else {
                        Vec::new()
                    };
                }
                Stage::Filter(pred) => {
                    let len = tuples.len() as f64;
                    let mut kept = Vec::new();
                    for (i, t) in tuples.into_iter().enumerate() {
                        let e = self.tuple_env(env, &t);
                        let r = self.eval(pred, &Some(t.at.clone()), &e)?;
                        if predicate_keeps(&r, i, len) {
                            kept.push(t);
                        }
                    }
                    tuples = kept;
                }
            }
        }
        Ok(tuples)
    }

    /// Group-by over a tuple stream: keys see each tuple's bindings; values see the
    /// group's bindings merged (a variable bound in several tuples becomes an array).
    fn group_tuples(
        &mut self,
        tuples: Vec<Tuple>,
        pairs: &[(Node, Node)],
        pos: usize,
        env: &Rc<Env>,
    ) -> R {
        if tuples.is_empty() {
            return self.group(None, pairs, pos, env);
        }
        let mut groups: Vec<(Rc<str>, Vec<Tuple>, usize)> = Vec::new();
        let mut index: std::collections::HashMap<Rc<str>, usize> = Default::default();
        for t in &tuples {
            let e = self.tuple_env(env, t);
            for (pi, (k, _)) in pairs.iter().enumerate() {
                let Some(key) = group_key(self.eval(k, &Some(t.at.clone()), &e)?, pos)? else {
                    continue;
                };
                match index.get(&key) {
                    Some(&g) => {
                        if groups[g].2 != pi {
                            return Err(duplicate_key(&key, pos));
                        }
                        groups[g].1.push(t.clone());
                    }
                    None => {
                        index.insert(key.clone(), groups.len());
                        groups.push((key, vec![t.clone()], pi));
                    }
                }
            }
        }
        let mut obj = Obj::new();
        for (key, members, pi) in groups {
            let at = append_all(members.iter().map(|m| Some(m.at.clone())).collect());
            let mut names: Vec<&str> = Vec::new();
            for m in &members {
                for (k, _) in &m.binds {
                    if !names.contains(&k.as_str()) {
                        names.push(k);
                    }
                }
            }
            let mut merged = Tuple {
                at: Val::Null,
                binds: Vec::new(),
            };
            for name in names {
                let joined = append_all(members.iter().map(|m| m.get(name)).collect());
                if let Some(v) = joined {
                    merged.bind(name, v);
                }
            }
            let e = self.tuple_env(env, &merged);
            if let Some(v) = self.eval(&pairs[pi].1, &at, &e)? {
                self.check_nesting(&v)?;
                obj.insert(key, v);
            }
        }
        Ok(Some(Val::Obj(Rc::new(obj))))
    }

    fn filter(&mut self, pred: &Node, input: Option<Val>, env: &Rc<Env>) -> R {
        // The items' origins are unknown here: `%` in the predicate is an error.
        let saved = self.ancestry.take();
        let r = self.filter_plain(pred, input, env);
        self.ancestry = saved;
        r
    }

    fn filter_plain(&mut self, pred: &Node, input: Option<Val>, env: &Rc<Env>) -> R {
        let Some(input) = input else {
            return Ok(None);
        };
        if let Node::Num(n) = pred {
            // An index picks one item without copying the array.
            let single;
            let items: &[Val] = match &input {
                Val::Arr(a, _) => a.as_slice(),
                v => {
                    single = [v.clone()];
                    &single
                }
            };
            let mut idx = n.floor();
            if idx < 0.0 {
                idx += items.len() as f64;
            }
            let item = if idx >= 0.0 {
                items.get(idx as usize).cloned()
            } else {
                None
            };
            return Ok(Some(match item {
                Some(v @ Val::Arr(..)) => v,
                Some(v) => Val::seq(vec![v]),
                None => Val::seq(vec![]),
            }));
        }
        let items: Vec<Val> = match &input {
            Val::Arr(a, _) => a.as_ref().clone(),
            v => vec![v.clone()],
        };
        let mut out = Vec::new();
        let len = items.len() as f64;
        for (i, item) in items.iter().enumerate() {
            let r = self.eval(pred, &Some(item.clone()), env)?;
            let nums: Option<Vec<f64>> = match &r {
                Some(Val::Num(n)) => Some(vec![*n]),
                Some(Val::Arr(a, _))
                    if !a.is_empty() && a.iter().all(|x| matches!(x, Val::Num(_))) =>
                {
                    Some(a.iter().filter_map(Val::as_num).collect())
                }
                _ => None,
            };
            match nums {
                Some(ns) => {
                    for n in ns {
                        let mut k = n.floor();
                        if k < 0.0 {
                            k += len;
                        }
                        if k == i as f64 {
                            out.push(item.clone());
                        }
                    }
                }
                None => {
                    if truthy(&r) {
                        out.push(item.clone());
                    }
                }
            }
        }
        Ok(Some(Val::seq(out)))
    }

    fn group(
        &mut self,
        input: Option<Val>,
        pairs: &[(Node, Node)],
        pos: usize,
        env: &Rc<Env>,
    ) -> R {
        let mut items: Vec<Option<Val>> = match input {
            Some(Val::Arr(a, _)) => a.iter().cloned().map(Some).collect(),
            other => vec![other],
        };
        if items.is_empty() {
            items.push(None);
        }
        // Several items have different parents: `%` is only known for a single one.
        let saved = self.ancestry.clone();
        if items.len() > 1 {
            self.ancestry = None;
        }
        let r = self.group_items(items, pairs, pos, env);
        self.ancestry = saved;
        r
    }

    fn group_items(
        &mut self,
        items: Vec<Option<Val>>,
        pairs: &[(Node, Node)],
        pos: usize,
        env: &Rc<Env>,
    ) -> R {
        // Members are collected and joined once per group (appending one by one would
        // copy the growing array every time).
        let mut groups: Vec<(Rc<str>, Vec<Option<Val>>, usize)> = Vec::new();
        let mut index: std::collections::HashMap<Rc<str>, usize> = Default::default();
        for item in &items {
            for (pi, (k, _)) in pairs.iter().enumerate() {
                let key = match self.eval(k, item, env)? {
                    None => continue,
                    Some(Val::Str(s)) => s,
                    Some(v) => {
                        return Err(Error::at(
                            "T1003",
                            pos,
                            format!(
                                "Key in object structure must evaluate to a string; got: {}",
                                crate::text::stringify(&v, false)
                            ),
                        ));
                    }
                };
                match index.get(&key) {
                    Some(&g) => {
                        if groups[g].2 != pi {
                            return Err(Error::at(
                                "D1009",
                                pos,
                                format!("Multiple key definitions evaluate to same key: \"{key}\""),
                            ));
                        }
                        groups[g].1.push(item.clone());
                    }
                    None => {
                        index.insert(key.clone(), groups.len());
                        groups.push((key, vec![item.clone()], pi));
                    }
                }
            }
        }
        let mut obj = Obj::new();
        for (key, members, pi) in groups {
            let data = append_all(members);
            if let Some(v) = self.eval(&pairs[pi].1, &data, env)? {
                self.check_nesting(&v)?;
                obj.insert(key, v);
            }
        }
        Ok(Some(Val::Obj(Rc::new(obj))))
    }

    /// Sorts items by the order-by terms, each evaluated with the item's context and
    /// scope; returns the payloads in order (stable).
    fn sort<T>(
        &mut self,
        items: Vec<(Val, Rc<Env>, Chain, T)>,
        terms: &[(Node, bool)],
        pos: usize,
    ) -> Result<Vec<T>> {
        let mut keyed: Vec<(Vec<Option<Val>>, T)> = Vec::with_capacity(items.len());
        for (ctx, env, chain, item) in items {
            let mut keys = Vec::with_capacity(terms.len());
            let ctx = Some(ctx);
            self.ancestry = chain;
            for (t, _) in terms {
                let k = self.eval(t, &ctx, &env)?;
                match &k {
                    None | Some(Val::Num(_)) | Some(Val::Str(_)) => {}
                    Some(_) => {
                        return Err(Error::at(
                            "T2008",
                            pos,
                            "The expressions within an order-by clause must evaluate to numeric or string values",
                        ));
                    }
                }
                keys.push(k);
            }
            keyed.push((keys, item));
        }
        for ti in 0..terms.len() {
            let mut kind = None;
            for (keys, _) in &keyed {
                let t = match &keys[ti] {
                    Some(Val::Num(_)) => 1,
                    Some(Val::Str(_)) => 2,
                    _ => continue,
                };
                if *kind.get_or_insert(t) != t {
                    return Err(Error::at(
                        "T2007",
                        pos,
                        "Type mismatch within order-by clause. All values must be of the same type",
                    ));
                }
            }
        }
        self.tick(keyed.len() as u64)?;
        keyed.sort_by(|(a, _), (b, _)| {
            use std::cmp::Ordering;
            for (ti, (_, desc)) in terms.iter().enumerate() {
                let o = match (&a[ti], &b[ti]) {
                    (None, None) => Ordering::Equal,
                    (None, _) => return Ordering::Greater,
                    (_, None) => return Ordering::Less,
                    (Some(Val::Num(x)), Some(Val::Num(y))) => {
                        x.partial_cmp(y).unwrap_or(Ordering::Equal)
                    }
                    (Some(Val::Str(x)), Some(Val::Str(y))) => x.cmp(y),
                    _ => Ordering::Equal,
                };
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }
}

fn operand_work(v: &Option<Val>) -> u64 {
    match v {
        Some(Val::Str(s)) => s.len() as u64 / 16,
        Some(Val::Arr(a, _)) => a.len() as u64 / 4,
        Some(Val::Obj(o)) => o.len() as u64 / 4,
        _ => 0,
    }
}

/// Applies a binary operator; `cost` collects the comparisons made by `=` and `in`.
fn binary(op: BinOp, a: Option<Val>, b: Option<Val>, cost: &mut u64) -> R {
    use BinOp::*;
    match op {
        Add | Sub | Mul | Div | Mod => {
            let x = match &a {
                None => None,
                Some(Val::Num(n)) => Some(*n),
                Some(_) => {
                    return Err(Error::new(
                        "T2001",
                        format!(
                            "The left side of the \"{}\" operator must evaluate to a number",
                            op_str(op)
                        ),
                    ));
                }
            };
            let y = match &b {
                None => None,
                Some(Val::Num(n)) => Some(*n),
                Some(_) => {
                    return Err(Error::new(
                        "T2002",
                        format!(
                            "The right side of the \"{}\" operator must evaluate to a number",
                            op_str(op)
                        ),
                    ));
                }
            };
            let (Some(x), Some(y)) = (x, y) else {
                return Ok(None);
            };
            let r = match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                Div => x / y,
                _ => x % y,
            };
            if !r.is_finite() {
                return Err(Error::new("D1001", format!("Number out of range: {r}")));
            }
            Ok(Some(Val::Num(r)))
        }
        Eq | Ne => {
            let (Some(a), Some(b)) = (a, b) else {
                return Ok(Some(Val::Bool(false)));
            };
            let eq = deep_equal_counted(&a, &b, cost);
            Ok(Some(Val::Bool(if op == Eq { eq } else { !eq })))
        }
        Lt | Le | Gt | Ge => {
            let comparable =
                |v: &Option<Val>| matches!(v, None | Some(Val::Num(_)) | Some(Val::Str(_)));
            if !comparable(&a) || !comparable(&b) {
                return Err(Error::new(
                    "T2010",
                    format!(
                        "The expressions either side of operator \"{}\" must evaluate to numeric or string values",
                        op_str(op)
                    ),
                ));
            }
            let (Some(a), Some(b)) = (a, b) else {
                return Ok(None);
            };
            let ord = match (&a, &b) {
                (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
                (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
                _ => {
                    return Err(Error::new(
                        "T2009",
                        format!(
                            "The values {} and {} either side of operator \"{}\" must be of the same data type",
                            crate::text::stringify(&a, false),
                            crate::text::stringify(&b, false),
                            op_str(op)
                        ),
                    ));
                }
            };
            let Some(ord) = ord else {
                return Ok(Some(Val::Bool(false)));
            };
            use std::cmp::Ordering::*;
            Ok(Some(Val::Bool(match op {
                Lt => ord == Less,
                Le => ord != Greater,
                Gt => ord == Greater,
                _ => ord != Less,
            })))
        }
        Concat => {
            let s = |v: &Option<Val>| -> Result<String> {
                Ok(match v {
                    None => String::new(),
                    Some(v) => crate::text::to_string(v)?,
                })
            };
            Ok(Some(Val::string(s(&a)? + &s(&b)?)))
        }
        In => {
            let (Some(a), Some(b)) = (a, b) else {
                return Ok(Some(Val::Bool(false)));
            };
            let found = match &b {
                Val::Arr(items, _) => items.iter().any(|x| deep_equal_counted(x, &a, cost)),
                v => deep_equal_counted(v, &a, cost),
            };
            Ok(Some(Val::Bool(found)))
        }
    }
}

fn op_str(op: BinOp) -> &'static str {
    use BinOp::*;
    match op {
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Mod => "%",
        Eq => "=",
        Ne => "!=",
        Lt => "<",
        Le => "<=",
        Gt => ">",
        Ge => ">=",
        Concat => "&",
        In => "in",
    }
}
