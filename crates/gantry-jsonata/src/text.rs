//! Turning values into text the way JSONata (JavaScript) does: numbers print like
//! JavaScript's `Number.prototype.toString` after rounding to 15 significant digits.

use crate::error::{Error, Result};
use crate::value::Val;

/// JavaScript's `Number.prototype.toString` for a finite number.
pub fn js_number(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    // Whole numbers print exactly while they are exact; above 2^53 JavaScript prints
    // the shortest digits followed by zeros, which the general path below does.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        return format!("{}", n as i64);
    }
    // `{:e}` gives the shortest round-trip digits, like JavaScript.
    let s = format!("{:e}", n);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let k = digits.len() as i32;
    let point = exp + 1;
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let sign = if e >= 0 { "+" } else { "-" };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// A number as `$string` prints it (15 significant digits).
pub fn num_string(n: f64) -> String {
    let r: f64 = format!("{:.14e}", n).parse().unwrap_or(n);
    js_number(r)
}

/// `$string`: strings unchanged, functions empty, everything else as JSON.
pub fn to_string(v: &Val) -> Result<String> {
    match v {
        Val::Str(s) => Ok(s.to_string()),
        Val::Func(_) => Ok(String::new()),
        Val::Num(n) if !n.is_finite() => Err(Error::new(
            "D3001",
            "Attempting to invoke string function on Infinity or NaN",
        )),
        v => Ok(stringify(v, false)),
    }
}

/// `JSON.stringify` with JSONata's number normalisation; `pretty` indents by 2.
pub fn stringify(v: &Val, pretty: bool) -> String {
    let mut out = String::new();
    write(v, pretty, 0, &mut out);
    out
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn indent(pretty: bool, level: usize, out: &mut String) {
    if pretty {
        out.push('\n');
        out.push_str(&"  ".repeat(level));
    }
}

fn write(v: &Val, pretty: bool, level: usize, out: &mut String) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) if n.is_finite() => out.push_str(&num_string(*n)),
        Val::Num(_) => out.push_str("null"),
        Val::Str(s) => quote(s, out),
        Val::Func(_) => out.push_str("\"\""),
        Val::Arr(a, _) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(pretty, level + 1, out);
                write(x, pretty, level + 1, out);
            }
            indent(pretty, level, out);
            out.push(']');
        }
        Val::Obj(o) => {
            if o.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(pretty, level + 1, out);
                quote(k, out);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                write(x, pretty, level + 1, out);
            }
            indent(pretty, level, out);
            out.push('}');
        }
    }
}
