//! Function signatures (`function($a, $b)<sn?:s>{...}`): argument types are checked,
//! a single value is made an array where an array is expected, and `-` takes the
//! context value for a missing argument.

use crate::error::{Error, Result};
use crate::value::Val;

/// One parameter: the type symbols it accepts and its modifier.
#[derive(Debug, Clone)]
struct Param {
    /// Accepted symbols: `b n s l a o f`.
    types: String,
    /// `a<t>`: the type every item must have.
    items: Option<String>,
    /// `?` optional, `+` one or more, `-` the context when missing.
    modifier: Option<char>,
}

#[derive(Debug, Clone)]
pub struct Signature {
    params: Vec<Param>,
}

fn symbol(v: &Option<Val>) -> char {
    match v {
        None => 'm',
        Some(Val::Null) => 'l',
        Some(Val::Bool(_)) => 'b',
        Some(Val::Num(_)) => 'n',
        Some(Val::Str(_)) => 's',
        Some(Val::Arr(..)) => 'a',
        Some(Val::Obj(_)) => 'o',
        Some(Val::Func(_)) => 'f',
    }
}

fn expand(c: char) -> Option<&'static str> {
    Some(match c {
        'b' => "b",
        'n' => "n",
        's' => "s",
        'l' => "l",
        'a' => "a",
        'o' => "o",
        'f' => "f",
        'j' => "bnslao",
        'x' => "bnslaof",
        'u' => "bnsl",
        _ => return None,
    })
}

/// Skips a `<...>` subtype starting at `i` (which is `<`); returns its inside and the
/// index after it.
fn subtype(chars: &[char], i: usize, pos: usize) -> Result<(String, usize)> {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((chars[i + 1..j].iter().collect(), j + 1));
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(Error::at(
        "S0401",
        pos,
        "Type parameter is not terminated by '>'",
    ))
}

impl Signature {
    /// Parses the text between the outer `<` and `>`; `pos` locates errors.
    pub fn parse(text: &str, pos: usize) -> Result<Signature> {
        let chars: Vec<char> = text.chars().collect();
        let mut params: Vec<Param> = Vec::new();
        let mut i = 0;
        let bad = |m: String| Error::at("S0402", pos, m);
        while i < chars.len() {
            let c = chars[i];
            match c {
                // The return type is not checked.
                ':' => break,
                '?' | '+' | '-' => {
                    let Some(last) = params.last_mut() else {
                        return Err(bad(format!("Signature modifier '{c}' has no parameter")));
                    };
                    last.modifier = Some(c);
                    i += 1;
                }
                '(' => {
                    let Some(end) = chars[i..].iter().position(|&x| x == ')') else {
                        return Err(bad("Choice group is not terminated by ')'".into()));
                    };
                    let mut types = String::new();
                    let mut k = i + 1;
                    while k < i + end {
                        let t = chars[k];
                        if t == '<' {
                            // A subtype inside a choice (`(a<n>s)`) is accepted unchecked.
                            let (_, next) = subtype(&chars, k, pos)?;
                            k = next;
                            continue;
                        }
                        types.push_str(
                            expand(t)
                                .ok_or_else(|| bad(format!("Unknown type '{t}' in signature")))?,
                        );
                        k += 1;
                    }
                    params.push(Param {
                        types,
                        items: None,
                        modifier: None,
                    });
                    i += end + 1;
                }
                '<' => {
                    let (inner, next) = subtype(&chars, i, pos)?;
                    match params.last_mut() {
                        Some(p) if p.types == "a" => {
                            let mut t = String::new();
                            for ch in inner.chars() {
                                if let Some(e) = expand(ch) {
                                    t.push_str(e);
                                }
                            }
                            p.items = Some(t);
                        }
                        // A function's own signature is not checked.
                        Some(p) if p.types == "f" => {}
                        _ => return Err(bad("A type parameter must follow 'a' or 'f'".into())),
                    }
                    i = next;
                }
                c if c.is_whitespace() => i += 1,
                c => {
                    let types =
                        expand(c).ok_or_else(|| bad(format!("Unknown type '{c}' in signature")))?;
                    params.push(Param {
                        types: types.to_string(),
                        items: None,
                        modifier: None,
                    });
                    i += 1;
                }
            }
        }
        Ok(Signature { params })
    }

    /// Checks and adapts arguments; `context` fills a missing `-` argument.
    pub fn validate(
        &self,
        args: Vec<Option<Val>>,
        context: &Option<Val>,
        name: &str,
    ) -> Result<Vec<Option<Val>>> {
        let syms: Vec<char> = args.iter().map(symbol).collect();
        let plan = self.plan(0, &syms, 0, symbol(context)).ok_or_else(|| {
            // Name the first argument that no parameter accepts.
            let bad = syms
                .iter()
                .zip(self.params.iter())
                .position(|(s, p)| *s != 'm' && !accepts(p, *s))
                .unwrap_or(syms.len().min(self.params.len()));
            Error::new(
                "T0410",
                format!(
                    "Argument {} of function \"{name}\" does not match function signature",
                    bad + 1
                ),
            )
        })?;
        let mut out = Vec::new();
        for (pi, slot) in plan {
            let p = &self.params[pi];
            let v = match slot {
                Slot::Arg(ai) => args[ai].clone(),
                Slot::Context => context.clone(),
                Slot::Missing => None,
            };
            let v = match v {
                // A single value where an array is expected becomes a one-item array.
                Some(v) if p.types == "a" && !matches!(v, Val::Arr(..)) => Some(Val::arr(vec![v])),
                v => v,
            };
            if let (Some(t), Some(Val::Arr(items, _))) = (&p.items, &v)
                && items.iter().any(|x| !t.contains(symbol(&Some(x.clone()))))
            {
                return Err(Error::new(
                    "T0412",
                    format!(
                        "Argument {} of function \"{name}\" must be an array of the type in its signature",
                        out.len() + 1
                    ),
                ));
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Assigns arguments to parameters (with backtracking over `?`, `+` and `-`).
    fn plan(&self, pi: usize, syms: &[char], ai: usize, ctx: char) -> Option<Vec<(usize, Slot)>> {
        let Some(p) = self.params.get(pi) else {
            return (ai == syms.len()).then(Vec::new);
        };
        let here = syms.get(ai).is_some_and(|&s| s == 'm' || accepts(p, s));
        let with = |slot: Slot, next_ai: usize| -> Option<Vec<(usize, Slot)>> {
            let mut rest = self.plan(pi + 1, syms, next_ai, ctx)?;
            rest.insert(0, (pi, slot));
            Some(rest)
        };
        match p.modifier {
            Some('+') => {
                let mut n = 0;
                while syms.get(ai + n).is_some_and(|&s| s == 'm' || accepts(p, s)) {
                    n += 1;
                }
                for k in (1..=n).rev() {
                    if let Some(mut rest) = self.plan(pi + 1, syms, ai + k, ctx) {
                        let mut head: Vec<(usize, Slot)> =
                            (0..k).map(|j| (pi, Slot::Arg(ai + j))).collect();
                        head.append(&mut rest);
                        return Some(head);
                    }
                }
                None
            }
            Some('?') => {
                if here && let Some(r) = with(Slot::Arg(ai), ai + 1) {
                    return Some(r);
                }
                with(Slot::Missing, ai)
            }
            Some('-') => {
                if here && let Some(r) = with(Slot::Arg(ai), ai + 1) {
                    return Some(r);
                }
                if accepts(p, ctx) || ctx == 'm' {
                    return with(Slot::Context, ai);
                }
                None
            }
            _ => {
                if here {
                    with(Slot::Arg(ai), ai + 1)
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Arg(usize),
    Context,
    Missing,
}

fn accepts(p: &Param, s: char) -> bool {
    // A single value is accepted where an array is expected (it becomes one).
    p.types.contains(s) || p.types == "a"
}
