//! JSONata's function library.

use crate::error::{Error, Result};
use crate::eval::{Evaluator, R, append, collapse, deep_equal_counted, truthy};
use crate::text;
use crate::value::{Func, Obj, Val};
use std::rc::Rc;

/// (name, arity for higher-order calls, context-insertion threshold): when a call has
/// fewer arguments than the threshold, the context value becomes the first argument
/// (JSONata's `-` in signatures).
const TABLE: &[(&str, usize, usize)] = &[
    ("string", 1, 1),
    ("length", 1, 1),
    ("substring", 3, 2),
    ("substringBefore", 2, 2),
    ("substringAfter", 2, 2),
    ("uppercase", 1, 1),
    ("lowercase", 1, 1),
    ("trim", 1, 1),
    ("pad", 3, 2),
    ("contains", 2, 2),
    ("split", 3, 2),
    ("join", 2, 0),
    ("match", 3, 2),
    ("replace", 4, 3),
    ("eval", 2, 0),
    ("base64encode", 1, 1),
    ("base64decode", 1, 1),
    ("encodeUrlComponent", 1, 1),
    ("encodeUrl", 1, 1),
    ("decodeUrlComponent", 1, 1),
    ("decodeUrl", 1, 1),
    ("formatNumber", 3, 2),
    ("formatBase", 2, 1),
    ("formatInteger", 2, 2),
    ("parseInteger", 2, 2),
    ("number", 1, 1),
    ("abs", 1, 1),
    ("floor", 1, 1),
    ("ceil", 1, 1),
    ("round", 2, 1),
    ("power", 2, 2),
    ("sqrt", 1, 1),
    ("random", 0, 0),
    ("sum", 1, 0),
    ("max", 1, 0),
    ("min", 1, 0),
    ("average", 1, 0),
    ("boolean", 1, 1),
    ("not", 1, 1),
    ("exists", 1, 0),
    ("count", 1, 0),
    ("append", 2, 0),
    ("sort", 2, 0),
    ("reverse", 1, 0),
    ("shuffle", 1, 0),
    ("distinct", 1, 0),
    ("zip", 2, 0),
    ("keys", 1, 1),
    ("lookup", 2, 2),
    ("spread", 1, 1),
    ("merge", 1, 0),
    ("each", 2, 0),
    ("sift", 2, 0),
    ("type", 1, 0),
    ("error", 1, 0),
    ("assert", 2, 0),
    ("map", 2, 0),
    ("filter", 2, 0),
    ("single", 2, 0),
    ("reduce", 3, 0),
    ("now", 2, 0),
    ("millis", 0, 0),
    ("fromMillis", 3, 1),
    ("toMillis", 2, 1),
];

fn entry(name: &str) -> Option<&'static (&'static str, usize, usize)> {
    TABLE.iter().find(|(n, _, _)| *n == name)
}

/// Whether `$name` is a built-in function.
pub fn exists(name: &str) -> bool {
    entry(name).is_some()
}

/// The static name of a built-in function.
pub fn canonical(name: &str) -> &'static str {
    entry(name).map(|e| e.0).unwrap_or("")
}

/// Arguments passed by higher-order functions.
pub fn arity(name: &str) -> usize {
    entry(name).map(|e| e.1).unwrap_or(1)
}

fn sig(name: &str, i: usize) -> Error {
    Error::new(
        "T0410",
        format!(
            "Argument {} of function \"{name}\" does not match function signature",
            i + 1
        ),
    )
}

struct Args<'a> {
    name: &'a str,
    v: Vec<Option<Val>>,
}

impl Args<'_> {
    fn get(&self, i: usize) -> Option<&Val> {
        self.v.get(i).and_then(|x| x.as_ref())
    }
    fn take(&mut self, i: usize) -> Option<Val> {
        self.v.get_mut(i).and_then(|x| x.take())
    }
    fn str(&self, i: usize) -> Result<Option<Rc<str>>> {
        match self.get(i) {
            None => Ok(None),
            Some(Val::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(sig(self.name, i)),
        }
    }
    fn num(&self, i: usize) -> Result<Option<f64>> {
        match self.get(i) {
            None => Ok(None),
            Some(Val::Num(n)) => Ok(Some(*n)),
            Some(_) => Err(sig(self.name, i)),
        }
    }
    fn func(&self, i: usize) -> Result<Val> {
        match self.get(i) {
            Some(f @ Val::Func(_)) => Ok(f.clone()),
            _ => Err(sig(self.name, i)),
        }
    }
    fn obj(&self, i: usize) -> Result<Option<Rc<Obj>>> {
        match self.get(i) {
            None => Ok(None),
            Some(Val::Obj(o)) => Ok(Some(o.clone())),
            Some(_) => Err(sig(self.name, i)),
        }
    }
    /// An array argument: a single value is a one-item array (JSONata's `a` coercion).
    fn arr(&self, i: usize) -> Option<Vec<Val>> {
        match self.get(i) {
            None => None,
            Some(Val::Arr(a, _)) => Some(a.as_ref().clone()),
            Some(v) => Some(vec![v.clone()]),
        }
    }
    fn nums(&self, i: usize) -> Result<Option<Vec<f64>>> {
        let Some(a) = self.arr(i) else {
            return Ok(None);
        };
        a.iter()
            .map(|v| {
                v.as_num().ok_or_else(|| {
                    Error::new(
                        "T0412",
                        format!(
                            "Argument {} of function \"{}\" must be an array of numbers",
                            i + 1,
                            self.name
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn num(n: f64) -> R {
    if !n.is_finite() {
        return Err(Error::new("D1001", format!("Number out of range: {n}")));
    }
    Ok(Some(Val::Num(n)))
}

fn s(x: String) -> R {
    Ok(Some(Val::string(x)))
}

/// JavaScript's `Math.round` then JSONata's round-half-to-even correction.
pub fn round_half_even(x: f64, precision: i32) -> f64 {
    // Shift the decimal point in text so that multiplying by a power of ten does not
    // introduce binary rounding errors (as JSONata does).
    let shift = |v: f64, by: i32| -> f64 {
        let t = format!("{:e}", v);
        let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}", e + by).parse().unwrap_or(v)
    };
    let v = if precision != 0 {
        shift(x, precision)
    } else {
        x
    };
    let mut r = (v + 0.5).floor();
    if (r - v).abs() == 0.5 && r.rem_euclid(2.0) == 1.0 {
        r -= 1.0;
    }
    let r = if precision != 0 {
        shift(r, -precision)
    } else {
        r
    };
    if r == 0.0 { 0.0 } else { r }
}

/// `$match`-style match object for the first match (calling a regex as a function).
pub fn regex_first(re: &regex::Regex, s: &str) -> Option<Val> {
    re.captures(s).map(|c| match_obj(s, &c))
}

fn match_obj(s: &str, c: &regex::Captures<'_>) -> Val {
    let m = c.get(0).map(|m| (m.as_str(), m.start())).unwrap_or(("", 0));
    let mut o = Obj::new();
    o.insert(Rc::from("match"), Val::str(m.0));
    o.insert(Rc::from("index"), Val::Num(s[..m.1].chars().count() as f64));
    let groups = (1..c.len())
        .map(|i| Val::str(c.get(i).map(|g| g.as_str()).unwrap_or("")))
        .collect();
    o.insert(Rc::from("groups"), Val::arr(groups));
    Val::Obj(Rc::new(o))
}

fn regex_of(v: &Val) -> Option<Rc<regex::Regex>> {
    match v {
        Val::Func(f) => match f.as_ref() {
            Func::Regex(r) => Some(r.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Matches of a regex, refusing patterns that match the empty string (they would loop).
fn matches<'s>(name: &str, re: &regex::Regex, s: &'s str) -> Result<Vec<regex::Captures<'s>>> {
    let mut out = Vec::new();
    for c in re.captures_iter(s) {
        if c.get(0).is_some_and(|m| m.as_str().is_empty()) {
            return Err(Error::new(
                "D1004",
                format!("Regular expression matches zero length string (in ${name})"),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn substring(s: &str, start: f64, len: Option<f64>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as i64;
    // Saturating: the numbers come from the expression and may be huge.
    let mut start = start.trunc() as i64;
    if n.saturating_add(start) < 0 {
        start = 0;
    }
    let from = if start < 0 { n + start } else { start }.clamp(0, n);
    let to = match len {
        None => n,
        Some(l) if l <= 0.0 => return String::new(),
        Some(l) => {
            let l = l.trunc() as i64;
            let end = if start >= 0 {
                start.saturating_add(l)
            } else {
                (n + start).saturating_add(l)
            };
            end.clamp(0, n)
        }
    };
    if to <= from {
        return String::new();
    }
    chars[from as usize..to as usize].iter().collect()
}

fn is_array_of_strings(v: &[Val]) -> bool {
    v.iter().all(|x| matches!(x, Val::Str(_)))
}

/// Calls built-in `name`.
pub fn call(
    ev: &mut Evaluator<'_>,
    name: &'static str,
    mut args: Vec<Option<Val>>,
    input: &Option<Val>,
) -> R {
    if let Some((_, _, ctx)) = entry(name)
        && args.len() < *ctx
    {
        let ctx_val = match input {
            Some(Val::Arr(a, f)) if f & crate::value::OUTER != 0 => a.first().cloned(),
            other => other.clone(),
        };
        args.insert(0, ctx_val);
    }
    // Built-ins work in time proportional to their arguments' and results' size;
    // charging for it keeps a loop over an O(n) function within the step budget.
    ev.tick(args.iter().map(|a| work(a.as_ref())).sum())?;
    let r = builtin(ev, name, args, input)?;
    ev.tick(work(r.as_ref()))?;
    Ok(r)
}

fn builtin(
    ev: &mut Evaluator<'_>,
    name: &'static str,
    args: Vec<Option<Val>>,
    input: &Option<Val>,
) -> R {
    let mut a = Args { name, v: args };
    match name {
        // --- strings
        "string" => {
            let pretty = match a.get(1) {
                None => false,
                Some(Val::Bool(b)) => *b,
                Some(_) => return Err(sig(name, 1)),
            };
            match a.get(0) {
                None => Ok(None),
                Some(Val::Str(s)) => Ok(Some(Val::Str(s.clone()))),
                Some(v) if pretty && !matches!(v, Val::Num(_) | Val::Func(_)) => {
                    s(text::stringify(v, true))
                }
                Some(v) => s(text::to_string(v)?),
            }
        }
        "length" => Ok(a.str(0)?.map(|x| Val::Num(x.chars().count() as f64))),
        "substring" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let start = a.num(1)?.ok_or_else(|| sig(name, 1))?;
            s(substring(&x, start, a.num(2)?))
        }
        "substringBefore" | "substringAfter" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let Some(chars) = a.str(1)? else {
                return Ok(Some(Val::Str(x)));
            };
            Ok(Some(match x.find(&*chars) {
                None => Val::Str(x),
                Some(i) if name == "substringBefore" => Val::str(&x[..i]),
                Some(i) => Val::str(&x[i + chars.len()..]),
            }))
        }
        "uppercase" => Ok(a.str(0)?.map(|x| Val::string(x.to_uppercase()))),
        "lowercase" => Ok(a.str(0)?.map(|x| Val::string(x.to_lowercase()))),
        "trim" => Ok(a.str(0)?.map(|x| {
            let mut out = String::new();
            let mut space = false;
            for c in x.chars() {
                if matches!(c, ' ' | '\t' | '\n' | '\r') {
                    space = true;
                } else {
                    if space && !out.is_empty() {
                        out.push(' ');
                    }
                    space = false;
                    out.push(c);
                }
            }
            Val::string(out)
        })),
        "pad" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let width = a.num(1)?.ok_or_else(|| sig(name, 1))?.trunc();
            let pad = a.str(2)?.unwrap_or_else(|| Rc::from(" "));
            let len = x.chars().count() as f64;
            let need = width.abs() - len;
            if need <= 0.0 || pad.is_empty() {
                return Ok(Some(Val::Str(x)));
            }
            ev.tick(need as u64)?;
            let padding: String = pad.chars().cycle().take(need as usize).collect();
            s(if width > 0.0 {
                format!("{x}{padding}")
            } else {
                format!("{padding}{x}")
            })
        }
        "contains" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            match a.get(1) {
                Some(Val::Str(p)) => Ok(Some(Val::Bool(x.contains(&**p)))),
                Some(v) => match regex_of(v) {
                    Some(re) => Ok(Some(Val::Bool(re.is_match(&x)))),
                    None => Err(sig(name, 1)),
                },
                None => Err(sig(name, 1)),
            }
        }
        "split" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let limit = a.num(2)?;
            if let Some(l) = limit
                && l < 0.0
            {
                return Err(Error::new(
                    "D3020",
                    "Third argument of split function must evaluate to a positive number",
                ));
            }
            let mut parts: Vec<Val> = match a.get(1) {
                Some(Val::Str(sep)) if sep.is_empty() => {
                    x.chars().map(|c| Val::string(c.to_string())).collect()
                }
                Some(Val::Str(sep)) => x.split(&**sep).map(Val::str).collect(),
                Some(v) => match regex_of(v) {
                    Some(re) => {
                        let ms = matches(name, &re, &x)?;
                        let mut out = Vec::new();
                        let mut last = 0;
                        for c in ms {
                            if let Some(m) = c.get(0) {
                                out.push(Val::str(&x[last..m.start()]));
                                last = m.end();
                            }
                        }
                        out.push(Val::str(&x[last..]));
                        out
                    }
                    None => return Err(sig(name, 1)),
                },
                None => return Err(sig(name, 1)),
            };
            if let Some(l) = limit {
                parts.truncate(l.floor() as usize);
            }
            Ok(Some(Val::arr(parts)))
        }
        "join" => {
            let Some(items) = a.arr(0) else {
                return Ok(None);
            };
            if !is_array_of_strings(&items) {
                return Err(Error::new(
                    "T0412",
                    "Argument 1 of function \"join\" must be an array of strings",
                ));
            }
            let sep = a.str(1)?.unwrap_or_else(|| Rc::from(""));
            let parts: Vec<&str> = items.iter().filter_map(Val::as_str).collect();
            s(parts.join(&sep))
        }
        "match" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let re = a.get(1).and_then(regex_of).ok_or_else(|| sig(name, 1))?;
            let limit = a.num(2)?;
            let mut out: Vec<Val> = matches(name, &re, &x)?
                .iter()
                .map(|c| match_obj(&x, c))
                .collect();
            if let Some(l) = limit {
                out.truncate(l.max(0.0) as usize);
            }
            Ok(Some(Val::seq(out)))
        }
        "replace" => replace(ev, &mut a, input),
        "eval" => {
            let Some(src) = a.str(0)? else {
                return Ok(None);
            };
            let (expr, uses_parent) = crate::parser::parse(&src).map_err(|e| {
                Error::new(
                    "D3120",
                    format!("Syntax error in expression passed to function eval: {e}"),
                )
            })?;
            let ctx = if a.v.len() > 1 {
                a.take(1)
            } else {
                input.clone()
            };
            let env = match &ev.top {
                Some(t) => t.clone(),
                None => ev.new_env(None),
            };
            let track = ev.track_parents;
            ev.track_parents |= uses_parent;
            let r = ev.eval(&expr, &ctx, &env);
            ev.track_parents = track;
            r
        }
        "base64encode" => Ok(a.str(0)?.map(|x| Val::string(base64_encode(x.as_bytes())))),
        "base64decode" => match a.str(0)? {
            None => Ok(None),
            Some(x) => {
                let bytes = base64_decode(&x)
                    .ok_or_else(|| Error::new("D3140", "Malformed base64 string"))?;
                s(String::from_utf8_lossy(&bytes).into_owned())
            }
        },
        "encodeUrlComponent" => Ok(a
            .str(0)?
            .map(|x| Val::string(percent_encode(&x, "-_.!~*'()")))),
        "encodeUrl" => Ok(a
            .str(0)?
            .map(|x| Val::string(percent_encode(&x, "-_.!~*'();/?:@&=+$,#")))),
        "decodeUrlComponent" => match a.str(0)? {
            None => Ok(None),
            Some(x) => s(percent_decode(&x, "")?),
        },
        "decodeUrl" => match a.str(0)? {
            None => Ok(None),
            Some(x) => s(percent_decode(&x, ";/?:@&=+$,#")?),
        },
        "formatNumber" => {
            let Some(n) = a.num(0)? else { return Ok(None) };
            let pic = a.str(1)?.ok_or_else(|| sig(name, 1))?;
            let opts = a.obj(2)?;
            s(crate::format::format_number(n, &pic, opts.as_deref())?)
        }
        "formatBase" => {
            let Some(n) = a.num(0)? else { return Ok(None) };
            let radix = a.num(1)?.unwrap_or(10.0).trunc();
            if !(2.0..=36.0).contains(&radix) {
                return Err(Error::new(
                    "D3100",
                    format!(
                        "The radix of the formatBase function must be between 2 and 36. It was given {radix}"
                    ),
                ));
            }
            s(crate::format::format_base(
                round_half_even(n, 0),
                radix as u32,
            ))
        }
        "formatInteger" => {
            let Some(n) = a.num(0)? else { return Ok(None) };
            let pic = a.str(1)?.ok_or_else(|| sig(name, 1))?;
            s(crate::format::format_integer(n, &pic)?)
        }
        "parseInteger" => {
            let Some(x) = a.str(0)? else { return Ok(None) };
            let pic = a.str(1)?.ok_or_else(|| sig(name, 1))?;
            num(crate::format::parse_integer(&x, &pic)?)
        }
        // --- numbers
        "number" => match a.get(0) {
            None => Ok(None),
            Some(Val::Num(n)) => Ok(Some(Val::Num(*n))),
            Some(Val::Bool(b)) => Ok(Some(Val::Num(if *b { 1.0 } else { 0.0 }))),
            Some(Val::Str(x)) => match to_number(x) {
                Some(n) => num(n),
                None => Err(Error::new(
                    "D3030",
                    format!("Unable to cast value to a number: \"{x}\""),
                )),
            },
            Some(v) => Err(Error::new(
                "D3030",
                format!(
                    "Unable to cast value to a number: {}",
                    text::stringify(v, false)
                ),
            )),
        },
        "abs" => Ok(a.num(0)?.map(|n| Val::Num(n.abs()))),
        "floor" => Ok(a.num(0)?.map(|n| Val::Num(n.floor() + 0.0))),
        "ceil" => Ok(a.num(0)?.map(|n| Val::Num(n.ceil() + 0.0))),
        "round" => {
            let Some(n) = a.num(0)? else { return Ok(None) };
            let p = a.num(1)?.unwrap_or(0.0).trunc() as i32;
            num(round_half_even(n, p))
        }
        "power" => {
            let Some(b) = a.num(0)? else { return Ok(None) };
            let e = a.num(1)?.ok_or_else(|| sig(name, 1))?;
            let r = b.powf(e);
            if !r.is_finite() {
                return Err(Error::new(
                    "D3061",
                    format!(
                        "The power function has resulted in a value that cannot be represented as a JSON number: base={b}, exponent={e}"
                    ),
                ));
            }
            num(r)
        }
        "sqrt" => {
            let Some(n) = a.num(0)? else { return Ok(None) };
            if n < 0.0 {
                return Err(Error::new(
                    "D3060",
                    format!("The sqrt function cannot be applied to a negative number: {n}"),
                ));
            }
            num(n.sqrt())
        }
        "random" => num(ev.host.random()),
        "sum" => Ok(a.nums(0)?.map(|v| Val::Num(v.iter().sum()))),
        "max" | "min" => Ok(a.nums(0)?.and_then(|v| {
            let it = v.into_iter();
            if name == "max" {
                it.reduce(f64::max)
            } else {
                it.reduce(f64::min)
            }
            .map(Val::Num)
        })),
        "average" => Ok(a.nums(0)?.and_then(|v| {
            if v.is_empty() {
                None
            } else {
                Some(Val::Num(v.iter().sum::<f64>() / v.len() as f64))
            }
        })),
        // --- booleans
        "boolean" => Ok(a.get(0).map(|v| Val::Bool(truthy(&Some(v.clone()))))),
        "not" => Ok(a.get(0).map(|v| Val::Bool(!truthy(&Some(v.clone()))))),
        "exists" => Ok(Some(Val::Bool(a.get(0).is_some()))),
        // --- arrays
        "count" => Ok(Some(Val::Num(match a.get(0) {
            None => 0.0,
            Some(Val::Arr(x, _)) => x.len() as f64,
            Some(_) => 1.0,
        }))),
        "append" => {
            let x = a.take(0);
            let y = a.take(1);
            let r = append(x, y);
            if let Some(Val::Arr(items, _)) = &r {
                // Appending copies: repeated appends in a loop are quadratic.
                ev.tick(items.len() as u64)?;
            }
            Ok(r)
        }
        "sort" => sort(ev, &a, input),
        "reverse" => Ok(a.arr(0).map(|mut v| {
            v.reverse();
            Val::arr(v)
        })),
        "shuffle" => {
            let Some(mut v) = a.arr(0) else {
                return Ok(None);
            };
            for i in (1..v.len()).rev() {
                let j = (ev.host.random() * (i + 1) as f64) as usize;
                v.swap(i, j.min(i));
            }
            Ok(Some(Val::arr(v)))
        }
        "distinct" => match a.get(0) {
            None => Ok(None),
            Some(Val::Arr(items, _)) => {
                let mut out: Vec<Val> = Vec::new();
                ev.tick(items.len() as u64)?;
                for x in items.iter() {
                    // Quadratic: every comparison counts.
                    let mut cost = 0;
                    if !out.iter().any(|y| deep_equal_counted(x, y, &mut cost)) {
                        out.push(x.clone());
                    }
                    ev.tick(cost)?;
                }
                Ok(Some(Val::seq(out)))
            }
            Some(v) => Ok(Some(v.clone())),
        },
        "zip" => {
            let lists: Vec<Vec<Val>> = (0..a.v.len())
                .map(|i| a.arr(i).unwrap_or_default())
                .collect();
            let n = lists.iter().map(Vec::len).min().unwrap_or(0);
            let out = Val::arr(
                (0..n)
                    .map(|i| Val::arr(lists.iter().map(|l| l[i].clone()).collect()))
                    .collect(),
            );
            // Zipping nests one level deeper each time.
            ev.check_nesting(&out)?;
            Ok(Some(out))
        }
        // --- objects
        "keys" => match a.get(0) {
            None => Ok(None),
            Some(Val::Obj(o)) => Ok(Some(Val::seq(
                o.keys().map(|k| Val::Str(k.clone())).collect(),
            ))),
            Some(Val::Arr(items, _)) => {
                let mut seen = Obj::new();
                for x in items.iter() {
                    if let Val::Obj(o) = x {
                        for k in o.keys() {
                            seen.insert(k.clone(), Val::Null);
                        }
                    }
                }
                Ok(Some(Val::seq(
                    seen.keys().map(|k| Val::Str(k.clone())).collect(),
                )))
            }
            Some(_) => Ok(None),
        },
        "lookup" => {
            let key = a.str(1)?.ok_or_else(|| sig(name, 1))?;
            Ok(a.get(0).and_then(|v| lookup_key(v, &key)))
        }
        "spread" => match a.get(0) {
            None => Ok(None),
            Some(v) => Ok(Some(spread(v))),
        },
        "merge" => {
            let Some(items) = a.arr(0) else {
                return Ok(None);
            };
            let mut out = Obj::new();
            for x in items {
                match x {
                    Val::Obj(o) => {
                        for (k, v) in o.iter() {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        return Err(Error::new(
                            "T0412",
                            "Argument 1 of function \"merge\" must be an array of objects",
                        ));
                    }
                }
            }
            Ok(Some(Val::Obj(Rc::new(out))))
        }
        "each" => {
            let Some(o) = a.obj(0)? else { return Ok(None) };
            let f = a.func(1)?;
            let mut out = Vec::new();
            for (k, v) in o.iter() {
                let args = hof_args(
                    &f,
                    vec![
                        Some(v.clone()),
                        Some(Val::Str(k.clone())),
                        Some(Val::Obj(o.clone())),
                    ],
                );
                if let Some(r) = ev.apply(&f, args, input, 0)? {
                    out.push(r);
                }
            }
            Ok(Some(Val::seq(out)))
        }
        "sift" => {
            let Some(o) = a.obj(0)? else { return Ok(None) };
            let f = a.func(1)?;
            let mut out = Obj::new();
            for (k, v) in o.iter() {
                let args = hof_args(
                    &f,
                    vec![
                        Some(v.clone()),
                        Some(Val::Str(k.clone())),
                        Some(Val::Obj(o.clone())),
                    ],
                );
                if truthy(&ev.apply(&f, args, input, 0)?) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Val::Obj(Rc::new(out)))
            })
        }
        "type" => Ok(a.get(0).map(|v| Val::str(v.type_name()))),
        "error" => {
            let msg = a.str(0)?;
            Err(Error::new(
                "D3137",
                msg.map(|m| m.to_string())
                    .unwrap_or_else(|| "$error() function evaluated".into()),
            ))
        }
        "assert" => {
            let ok = match a.get(0) {
                Some(Val::Bool(b)) => *b,
                _ => return Err(sig(name, 0)),
            };
            if ok {
                Ok(None)
            } else {
                let msg = a.str(1)?;
                Err(Error::new(
                    "D3141",
                    msg.map(|m| m.to_string())
                        .unwrap_or_else(|| "$assert() statement failed".into()),
                ))
            }
        }
        // --- higher-order
        "map" | "filter" | "single" => {
            let Some(items) = a.arr(0) else {
                return Ok(None);
            };
            let f = a.func(1)?;
            let whole = Val::arr(items.clone());
            let mut out = Vec::new();
            for (i, x) in items.iter().enumerate() {
                let args = hof_args(
                    &f,
                    vec![
                        Some(x.clone()),
                        Some(Val::Num(i as f64)),
                        Some(whole.clone()),
                    ],
                );
                let r = ev.apply(&f, args, input, 0)?;
                match name {
                    "map" => {
                        if let Some(r) = r {
                            out.push(r);
                        }
                    }
                    _ => {
                        if truthy(&r) {
                            out.push(x.clone());
                        }
                    }
                }
            }
            if name == "single" {
                return match out.len() {
                    1 => Ok(out.pop()),
                    0 => Err(Error::new(
                        "D3139",
                        "The $single() function expected exactly 1 matching result.  Instead it matched 0.",
                    )),
                    _ => Err(Error::new(
                        "D3138",
                        "The $single() function expected exactly 1 matching result.  Instead it matched more.",
                    )),
                };
            }
            Ok(Some(Val::seq(out)))
        }
        "reduce" => {
            let Some(items) = a.arr(0) else {
                return Ok(None);
            };
            let f = a.func(1)?;
            if let Val::Func(func) = &f
                && func.arity() < 2
            {
                return Err(Error::new(
                    "D3050",
                    "The second argument of reduce function must be a function with at least two arguments",
                ));
            }
            let whole = Val::arr(items.clone());
            let mut it = items.into_iter().enumerate();
            let mut acc = match a.take(2) {
                Some(init) => Some(init),
                None => it.next().map(|(_, v)| v),
            };
            for (i, x) in it {
                let args = hof_args(
                    &f,
                    vec![acc, Some(x), Some(Val::Num(i as f64)), Some(whole.clone())],
                );
                acc = ev.apply(&f, args, input, 0)?;
            }
            Ok(acc)
        }
        // --- dates
        "now" | "millis" | "fromMillis" | "toMillis" => crate::datetime::call(ev, name, &a.v),
        _ => Err(Error::new("T1006", "Attempted to invoke a non-function")),
    }
}

/// A rough measure of the work a built-in does on a value (its top-level size).
fn work(v: Option<&Val>) -> u64 {
    match v {
        Some(Val::Str(s)) => s.len() as u64 / 16,
        Some(Val::Arr(a, _)) => a.len() as u64 / 4,
        Some(Val::Obj(o)) => o.len() as u64 / 4,
        _ => 0,
    }
}

/// Trims the argument list to what the function accepts.
fn hof_args(f: &Val, mut args: Vec<Option<Val>>) -> Vec<Option<Val>> {
    if let Val::Func(func) = f {
        let n = func.arity().max(1);
        args.truncate(n);
    }
    args
}

fn lookup_key(v: &Val, key: &str) -> Option<Val> {
    match v {
        Val::Obj(o) => o.get(key).cloned(),
        Val::Arr(items, _) => {
            let mut out = Vec::new();
            for x in items.iter() {
                match lookup_key(x, key) {
                    Some(Val::Arr(a, _)) => out.extend(a.iter().cloned()),
                    Some(v) => out.push(v),
                    None => {}
                }
            }
            collapse(Some(Val::seq(out)))
        }
        _ => None,
    }
}

fn spread(v: &Val) -> Val {
    match v {
        Val::Obj(o) => Val::seq(
            o.iter()
                .map(|(k, v)| {
                    let mut one = Obj::new();
                    one.insert(k.clone(), v.clone());
                    Val::Obj(Rc::new(one))
                })
                .collect(),
        ),
        Val::Arr(items, _) => {
            let mut out = Vec::new();
            for x in items.iter() {
                match spread(x) {
                    Val::Arr(a, _) => out.extend(a.iter().cloned()),
                    v => out.push(v),
                }
            }
            Val::seq(out)
        }
        v => v.clone(),
    }
}

fn to_number(x: &str) -> Option<f64> {
    let t = x;
    let b = t.as_bytes();
    let dec = {
        let mut i = 0;
        if b.first() == Some(&b'-') {
            i += 1;
        }
        let d0 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let mut ok = i > d0;
        if ok && i < b.len() && b[i] == b'.' {
            i += 1;
            let f0 = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            ok = i > f0;
        }
        if ok && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                i += 1;
            }
            let e0 = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            ok = i > e0;
        }
        ok && i == b.len()
    };
    if dec {
        return t.parse::<f64>().ok().filter(|n| n.is_finite());
    }
    let radix = |p: &str, r: u32| -> Option<f64> {
        let rest = t
            .strip_prefix(p)
            .or_else(|| t.strip_prefix(&p.to_uppercase()))?;
        u64::from_str_radix(rest, r).ok().map(|n| n as f64)
    };
    radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
}

fn sort(ev: &mut Evaluator<'_>, a: &Args<'_>, input: &Option<Val>) -> R {
    let Some(items) = a.arr(0) else {
        return Ok(None);
    };
    if items.len() <= 1 {
        return Ok(Some(Val::arr(items)));
    }
    ev.tick(items.len() as u64)?;
    match a.get(1) {
        None => {
            if items.iter().all(|x| matches!(x, Val::Num(_))) {
                let mut v = items;
                v.sort_by(|x, y| {
                    x.as_num()
                        .partial_cmp(&y.as_num())
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                Ok(Some(Val::arr(v)))
            } else if is_array_of_strings(&items) {
                let mut v = items;
                v.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
                Ok(Some(Val::arr(v)))
            } else {
                Err(Error::new(
                    "D3070",
                    "The single argument form of the sort function can only be applied to an array of strings or an array of numbers.  Use the second argument to specify a comparison function",
                ))
            }
        }
        Some(f @ Val::Func(_)) => {
            // A merge sort: the comparator may fail, so the standard sort cannot be used.
            let f = f.clone();
            let mut v = items;
            merge_sort(ev, &f, &mut v, input)?;
            Ok(Some(Val::arr(v)))
        }
        Some(_) => Err(sig("sort", 1)),
    }
}

fn merge_sort(
    ev: &mut Evaluator<'_>,
    f: &Val,
    v: &mut Vec<Val>,
    input: &Option<Val>,
) -> Result<()> {
    if v.len() <= 1 {
        return Ok(());
    }
    let right = v.split_off(v.len() / 2);
    let mut left = std::mem::take(v);
    let mut right = right;
    merge_sort(ev, f, &mut left, input)?;
    merge_sort(ev, f, &mut right, input)?;
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        // The comparator says whether the left item belongs after the right one.
        let swap = ev.apply(
            f,
            vec![Some(left[i].clone()), Some(right[j].clone())],
            input,
            0,
        )?;
        if truthy(&swap) {
            v.push(right[j].clone());
            j += 1;
        } else {
            v.push(left[i].clone());
            i += 1;
        }
    }
    v.extend(left[i..].iter().cloned());
    v.extend(right[j..].iter().cloned());
    Ok(())
}

fn replace(ev: &mut Evaluator<'_>, a: &mut Args<'_>, input: &Option<Val>) -> R {
    let name = "replace";
    let Some(x) = a.str(0)? else { return Ok(None) };
    let limit = match a.num(3)? {
        Some(l) if l < 0.0 => {
            return Err(Error::new(
                "D3011",
                "Fourth argument of replace function must evaluate to a positive number",
            ));
        }
        Some(l) => l.floor() as usize,
        None => usize::MAX,
    };
    let replacement = a.get(2).cloned().ok_or_else(|| sig(name, 2))?;
    if !matches!(replacement, Val::Str(_) | Val::Func(_)) {
        return Err(sig(name, 2));
    }
    // (start, end, captures as strings) for each match, capped by the limit.
    let mut found: Vec<(usize, usize, Vec<Option<String>>)> = Vec::new();
    match a.get(1) {
        Some(Val::Str(p)) => {
            if p.is_empty() {
                return Err(Error::new(
                    "D3010",
                    "Second argument of replace function cannot be an empty string",
                ));
            }
            for (i, m) in x.match_indices(&**p) {
                if found.len() >= limit {
                    break;
                }
                found.push((i, i + m.len(), vec![Some(m.to_string())]));
            }
        }
        Some(v) => {
            let re = regex_of(v).ok_or_else(|| sig(name, 1))?;
            for c in matches(name, &re, &x)? {
                if found.len() >= limit {
                    break;
                }
                let Some(m) = c.get(0) else { continue };
                let groups = (0..c.len())
                    .map(|i| c.get(i).map(|g| g.as_str().to_string()))
                    .collect();
                found.push((m.start(), m.end(), groups));
            }
        }
        None => return Err(sig(name, 1)),
    }
    let mut out = String::new();
    let mut last = 0;
    for (start, end, groups) in found {
        out.push_str(&x[last..start]);
        match &replacement {
            Val::Str(r) => out.push_str(&substitute(r, &groups)),
            f => {
                let mut o = Obj::new();
                o.insert(
                    Rc::from("match"),
                    Val::str(groups[0].as_deref().unwrap_or("")),
                );
                o.insert(
                    Rc::from("index"),
                    Val::Num(x[..start].chars().count() as f64),
                );
                o.insert(
                    Rc::from("groups"),
                    Val::arr(
                        groups[1..]
                            .iter()
                            .map(|g| Val::str(g.as_deref().unwrap_or("")))
                            .collect(),
                    ),
                );
                match ev.apply(f, vec![Some(Val::Obj(Rc::new(o)))], input, 0)? {
                    Some(Val::Str(r)) => out.push_str(&r),
                    _ => {
                        return Err(Error::new(
                            "D3012",
                            "Attempted to replace a matched string with a non-string value",
                        ));
                    }
                }
            }
        }
        last = end;
    }
    out.push_str(&x[last..]);
    s(out)
}

/// `$0`, `$1`... in a replacement string; `$$` is a literal `$`. A multi-digit group
/// number that does not exist is read as fewer digits followed by literal digits.
fn substitute(r: &str, groups: &[Option<String>]) -> String {
    let chars: Vec<char> = r.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            if chars.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 {
                let mut k = j;
                while k > i + 1 {
                    let n: usize = chars[i + 1..k]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .unwrap_or(usize::MAX);
                    if n < groups.len() {
                        out.push_str(groups[n].as_deref().unwrap_or(""));
                        out.extend(&chars[k..j]);
                        break;
                    }
                    k -= 1;
                }
                if k == i + 1 {
                    // No such group: the reference is replaced by nothing.
                    out.extend(&chars[i + 2..j]);
                }
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.chars() {
        if c == '=' || c.is_whitespace() {
            continue;
        }
        let v = B64.iter().position(|&b| b as char == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}

fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || keep.contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn percent_decode(s: &str, reserved: &str) -> Result<String> {
    let bad = || {
        Error::new(
            "D3140",
            format!(
                "Malformed URL passed to ${}: {s}",
                if reserved.is_empty() {
                    "decodeUrlComponent"
                } else {
                    "decodeUrl"
                }
            ),
        )
    };
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
            if v < 0x80 && reserved.contains(v as char) {
                out.extend_from_slice(&b[i..i + 3]);
            } else {
                out.push(v);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}
