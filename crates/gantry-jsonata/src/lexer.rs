//! Tokens with byte offsets. `/` starts a regex where a term is expected.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Op(&'static str),
    Str(String),
    Num(f64),
    Name(String),
    Var(String),
    Regex(String, String),
    Bool(bool),
    Null,
    End,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const OPS2: [&str; 9] = ["..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??"];
const OPS1: &str = ".[]{}(),@#;:?+-*/%|=<>^&!~";

fn op1(c: char) -> Option<&'static str> {
    Some(match c {
        '.' => ".",
        '[' => "[",
        ']' => "]",
        '{' => "{",
        '}' => "}",
        '(' => "(",
        ')' => ")",
        ',' => ",",
        '@' => "@",
        '#' => "#",
        ';' => ";",
        ':' => ":",
        '?' => "?",
        '+' => "+",
        '-' => "-",
        '*' => "*",
        '/' => "/",
        '%' => "%",
        '|' => "|",
        '=' => "=",
        '<' => "<",
        '>' => ">",
        '^' => "^",
        '&' => "&",
        '!' => "!",
        '~' => "~",
        _ => return None,
    })
}

fn is_name_char(c: char) -> bool {
    !c.is_whitespace() && !OPS1.contains(c) && c != '"' && c != '\'' && c != '`' && c != '$'
}

/// Splits an expression into tokens (the last is `End`).
pub fn tokenize(src: &str) -> Result<Vec<Token>> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let pos_of = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(src.len());
    while i < chars.len() {
        let c = chars[i].1;
        let pos = chars[i].0;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && at(i + 1) == Some('*') {
            // A comment runs to `*/`.
            let mut j = i + 2;
            loop {
                match (at(j), at(j + 1)) {
                    (Some('*'), Some('/')) => break,
                    (None, _) => return Err(Error::at("S0106", pos, "Comment has no closing tag")),
                    _ => j += 1,
                }
            }
            i = j + 2;
            continue;
        }
        // A `/` where a term is expected starts a regular expression.
        let prefix = match out.last().map(|t| &t.tok) {
            None => true,
            Some(Tok::Op(o)) => !matches!(*o, ")" | "]" | "}"),
            _ => false,
        };
        if c == '/' && prefix {
            let mut j = i + 1;
            let mut pat = String::new();
            let mut in_class = false;
            loop {
                match at(j) {
                    None => {
                        return Err(Error::at(
                            "S0302",
                            pos,
                            "No terminating / in regular expression",
                        ));
                    }
                    Some('\\') => {
                        pat.push('\\');
                        if let Some(n) = at(j + 1) {
                            pat.push(n);
                        }
                        j += 2;
                    }
                    Some('[') => {
                        in_class = true;
                        pat.push('[');
                        j += 1;
                    }
                    Some(']') => {
                        in_class = false;
                        pat.push(']');
                        j += 1;
                    }
                    Some('/') if !in_class => break,
                    Some(ch) => {
                        pat.push(ch);
                        j += 1;
                    }
                }
            }
            if pat.is_empty() {
                return Err(Error::at(
                    "S0301",
                    pos,
                    "Empty regular expressions are not allowed",
                ));
            }
            j += 1;
            let mut flags = String::new();
            while let Some(f) = at(j) {
                if f.is_ascii_alphabetic() {
                    flags.push(f);
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Regex(pat, flags),
                pos,
            });
            i = j;
            continue;
        }
        if let Some(n) = at(i + 1) {
            let two: String = [c, n].iter().collect();
            if let Some(op) = OPS2.iter().find(|o| **o == two) {
                out.push(Token {
                    tok: Tok::Op(op),
                    pos,
                });
                i += 2;
                continue;
            }
        }
        if let Some(op) = op1(c) {
            out.push(Token {
                tok: Tok::Op(op),
                pos,
            });
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let mut j = i + 1;
            let mut s = String::new();
            loop {
                match at(j) {
                    None => {
                        return Err(Error::at(
                            "S0101",
                            pos,
                            "String literal must be terminated by a matching quote",
                        ));
                    }
                    Some(ch) if ch == c => break,
                    Some('\\') => {
                        let e = at(j + 1);
                        j += 2;
                        match e {
                            Some('"') => s.push('"'),
                            Some('\'') => s.push('\''),
                            Some('\\') => s.push('\\'),
                            Some('/') => s.push('/'),
                            Some('b') => s.push('\u{8}'),
                            Some('f') => s.push('\u{c}'),
                            Some('n') => s.push('\n'),
                            Some('r') => s.push('\r'),
                            Some('t') => s.push('\t'),
                            Some('u') => {
                                let hex = |k: usize| -> Option<u32> {
                                    let h: String = (k..k + 4).filter_map(at).collect();
                                    if h.len() == 4 {
                                        u32::from_str_radix(&h, 16).ok()
                                    } else {
                                        None
                                    }
                                };
                                let bad = || {
                                    Error::at(
                                        "S0104",
                                        pos_of(j),
                                        "The escape sequence \\u must be followed by 4 hex digits",
                                    )
                                };
                                let u = hex(j).ok_or_else(bad)?;
                                j += 4;
                                // A surrogate pair arrives as two escapes.
                                if (0xD800..0xDC00).contains(&u)
                                    && at(j) == Some('\\')
                                    && at(j + 1) == Some('u')
                                    && let Some(lo) = hex(j + 2)
                                    && (0xDC00..0xE000).contains(&lo)
                                {
                                    j += 6;
                                    let cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                                    s.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                                } else {
                                    s.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
                                }
                            }
                            _ => {
                                return Err(Error::at(
                                    "S0103",
                                    pos_of(j.saturating_sub(2)),
                                    "Unsupported escape sequence in string literal",
                                ));
                            }
                        }
                        continue;
                    }
                    Some(ch) => {
                        s.push(ch);
                        j += 1;
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos,
            });
            i = j + 1;
            continue;
        }
        if c == '`' {
            let mut j = i + 1;
            let mut s = String::new();
            loop {
                match at(j) {
                    None => {
                        return Err(Error::at(
                            "S0105",
                            pos,
                            "Quoted property name must be terminated with a backquote (`)",
                        ));
                    }
                    Some('`') => break,
                    Some(ch) => {
                        s.push(ch);
                        j += 1;
                    }
                }
            }
            out.push(Token {
                tok: Tok::Name(s),
                pos,
            });
            i = j + 1;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while at(j).is_some_and(|d| d.is_ascii_digit()) {
                j += 1;
            }
            if at(j) == Some('.') && at(j + 1).is_some_and(|d| d.is_ascii_digit()) {
                j += 1;
                while at(j).is_some_and(|d| d.is_ascii_digit()) {
                    j += 1;
                }
            }
            if matches!(at(j), Some('e' | 'E')) {
                let mut k = j + 1;
                if matches!(at(k), Some('+' | '-')) {
                    k += 1;
                }
                if at(k).is_some_and(|d| d.is_ascii_digit()) {
                    while at(k).is_some_and(|d| d.is_ascii_digit()) {
                        k += 1;
                    }
                    j = k;
                }
            }
            let text = &src[pos..pos_of(j)];
            let n: f64 = text
                .parse()
                .map_err(|_| Error::at("S0102", pos, format!("Number out of range: {text}")))?;
            if !n.is_finite() {
                return Err(Error::at(
                    "S0102",
                    pos,
                    format!("Number out of range: {text}"),
                ));
            }
            out.push(Token {
                tok: Tok::Num(n),
                pos,
            });
            i = j;
            continue;
        }
        if c == '$' {
            let mut j = i + 1;
            if at(j) == Some('$') {
                out.push(Token {
                    tok: Tok::Var("$".into()),
                    pos,
                });
                i = j + 1;
                continue;
            }
            let mut name = String::new();
            while let Some(ch) = at(j) {
                if is_name_char(ch) {
                    name.push(ch);
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Var(name),
                pos,
            });
            i = j;
            continue;
        }
        let mut j = i;
        let mut name = String::new();
        while let Some(ch) = at(j) {
            if is_name_char(ch) {
                name.push(ch);
                j += 1;
            } else {
                break;
            }
        }
        if name.is_empty() {
            return Err(Error::at(
                "S0204",
                pos,
                format!("Unknown operator: \"{c}\""),
            ));
        }
        let tok = match name.as_str() {
            "and" => Tok::Op("and"),
            "or" => Tok::Op("or"),
            "in" => Tok::Op("in"),
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            "null" => Tok::Null,
            _ => Tok::Name(name),
        };
        out.push(Token { tok, pos });
        i = j;
    }
    out.push(Token {
        tok: Tok::End,
        pos: src.len(),
    });
    Ok(out)
}
