//! A recursive-descent parser for the intrinsic call syntax:
//! `States.Name(arg, ...)` where an argument is a quoted string (`'...'` with `\'`, `\{`,
//! `\}`, `\\` escapes), a number, `true`/`false`/`null`, a path (`$.a`, `$$.b`, `$var`), or
//! a nested call (at most 10 deep).

use serde_json::Value;

/// A parsed intrinsic expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal argument.
    Literal(Value),
    /// A path argument, evaluated against the state's input, context or variables.
    Path(String),
    /// A function call, e.g. `States.Format`.
    Call {
        /// The full name, e.g. `States.Format`.
        name: String,
        /// The arguments, in order.
        args: Vec<Expr>,
    },
}

const MAX_DEPTH: usize = 10;

/// Parses one intrinsic call (the whole string must be consumed).
pub fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    p.ws();
    let e = p.call(1)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected '{}' at offset {}", &src[p.i..], p.i));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn call(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!("intrinsic calls nest more than {MAX_DEPTH} deep"));
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        let name = &self.src[start..self.i];
        if !name.starts_with("States.") || name.len() == "States.".len() {
            return Err(format!(
                "expected a function name like States.Format at offset {start}"
            ));
        }
        self.ws();
        if self.peek() != Some(b'(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.peek() == Some(b')') {
            self.i += 1;
            return Ok(Expr::Call {
                name: name.to_string(),
                args,
            });
        }
        loop {
            self.ws();
            args.push(self.arg(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(Expr::Call {
                        name: name.to_string(),
                        args,
                    });
                }
                _ => return Err(format!("expected ',' or ')' in the arguments of {name}")),
            }
        }
    }

    fn arg(&mut self, depth: usize) -> Result<Expr, String> {
        match self.peek() {
            Some(b'\'') => self.string(),
            Some(b'$') => self.path(),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(b'S') => self.call(depth + 1),
            Some(_) => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.src[self.i..].starts_with(word) {
                        let after = self.s.get(self.i + word.len()).copied();
                        if !matches!(after, Some(c) if c.is_ascii_alphanumeric()) {
                            self.i += word.len();
                            return Ok(Expr::Literal(v));
                        }
                    }
                }
                Err(format!("unexpected argument at offset {}", self.i))
            }
            None => Err("unexpected end of input".into()),
        }
    }

    fn string(&mut self) -> Result<Expr, String> {
        self.i += 1;
        let mut out = String::new();
        let start = self.i;
        let mut chunk = start;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => {
                    out.push_str(&self.src[chunk..self.i]);
                    let next = self
                        .s
                        .get(self.i + 1)
                        .copied()
                        .ok_or("a lone trailing backslash in a string")?;
                    match next {
                        b'\'' | b'{' | b'}' | b'\\' => {
                            // Keep `\{`/`\}` escaped so States.Format can tell a literal brace from `{}`.
                            if next == b'{' || next == b'}' {
                                out.push('\\');
                            }
                            out.push(next as char);
                        }
                        _ => {
                            // Other escapes are kept literally (AWS passes them through).
                            out.push('\\');
                            let ch = self.src[self.i + 1..].chars().next().ok_or("bad escape")?;
                            out.push(ch);
                            self.i += ch.len_utf8() - 1;
                        }
                    }
                    self.i += 2;
                    chunk = self.i;
                }
                b'\'' => {
                    out.push_str(&self.src[chunk..self.i]);
                    self.i += 1;
                    return Ok(Expr::Literal(Value::String(out)));
                }
                _ => self.i += 1,
            }
        }
        Err("unterminated string literal".into())
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == b'.' || c == b'e' || c == b'E' || c == b'+' || c == b'-' {
                self.i += 1;
            } else {
                break;
            }
        }
        let text = &self.src[start..self.i];
        let v: Value = serde_json::from_str(text).map_err(|_| format!("bad number '{text}'"))?;
        if !v.is_number() {
            return Err(format!("bad number '{text}'"));
        }
        Ok(Expr::Literal(v))
    }

    fn path(&mut self) -> Result<Expr, String> {
        let start = self.i;
        let mut depth = 0usize;
        let mut quote: Option<u8> = None;
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(c),
                (None, b'[' | b'(') => depth += 1,
                (None, b']' | b')') if depth > 0 => depth -= 1,
                (None, b',' | b')') => break,
                (None, c) if c.is_ascii_whitespace() && depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        let p = &self.src[start..self.i];
        if !crate::path::is_valid_path(p) {
            return Err(format!("invalid path argument '{p}'"));
        }
        Ok(Expr::Path(p.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_escapes() {
        let e =
            parse(r"States.Format('a\'b\\c {} \{\}', States.Array(1, -2.5, true, null), $.x[0])")
                .unwrap();
        let Expr::Call { name, args } = e else {
            panic!()
        };
        assert_eq!(name, "States.Format");
        assert_eq!(args[0], Expr::Literal(json!(r"a'b\c {} \{\}")));
        assert!(matches!(&args[1], Expr::Call { args, .. } if args.len() == 4));
        assert_eq!(args[2], Expr::Path("$.x[0]".into()));
    }

    #[test]
    fn errors() {
        assert!(parse("States.Array(").is_err());
        assert!(parse("States.Array('a)").is_err());
        assert!(parse("States.Array(1) x").is_err());
        assert!(parse("Foo(1)").is_err());
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(parse(&deep).is_err());
        let ok = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
        assert!(parse(&ok).is_ok());
    }
}
