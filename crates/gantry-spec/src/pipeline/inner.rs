//! Places inside a scalar: a variable reference in a configuration value,
//! or an error inside the JSON that CodeBuild's `EnvironmentVariables` embeds
//! in a string, is reported at its own column, not at the value's start.
//!
//! A scalar's text is the *decoded* value; the source holds its spelling
//! (quotes, `\"` escapes, `\u00e9`). [`Inner`] maps one to the other for
//! scalars written on one line; for anything else (folded or block scalars)
//! every place falls back to the start of the value.

use crate::span::Span;

/// Decoded byte offsets of a scalar mapped to places in the source.
#[derive(Debug)]
pub(crate) struct Inner {
    fallback: Span,
    /// (decoded byte offset, source span of that character), ascending;
    /// the last entry is the end of the text.
    points: Vec<(usize, Span)>,
}

impl Inner {
    /// The map for the scalar written at `span`, whose decoded text is `text`.
    pub fn new(source: &str, span: Span, text: &str) -> Inner {
        let fallback = span;
        let points = source
            .get(span.offset..)
            .and_then(|raw| decode(raw, text, span))
            .unwrap_or_default();
        Inner { fallback, points }
    }

    /// The source place of the decoded byte `offset`.
    pub fn at(&self, offset: usize) -> Span {
        if self.points.is_empty() {
            return self.fallback;
        }
        let i = self.points.partition_point(|(o, _)| *o <= offset);
        self.points[i.saturating_sub(1)].1
    }

    /// The source span of decoded bytes `start..end`.
    pub fn range(&self, start: usize, end: usize) -> Span {
        let from = self.at(start);
        if self.points.is_empty() {
            return from;
        }
        let to = self.at(end);
        Span {
            len: to.offset.saturating_sub(from.offset),
            ..from
        }
    }
}

/// Walks the spelling at the start of `raw` alongside `text`; `None` when the
/// spelling is not one this understands or does not decode to `text`.
fn decode(raw: &str, text: &str, start: Span) -> Option<Vec<(usize, Span)>> {
    let mut points = Vec::with_capacity(text.len() + 1);
    let mut decoded = String::with_capacity(text.len());
    let mut chars = raw.char_indices().peekable();
    let quote = match raw.chars().next()? {
        q @ ('"' | '\'') => {
            chars.next();
            Some(q)
        }
        _ => None,
    };
    let mut col = start.col + u32::from(quote.is_some());
    let place = |byte: usize, col: u32, len: usize| Span {
        line: start.line,
        col,
        offset: start.offset + byte,
        len,
    };
    loop {
        if decoded.len() >= text.len() && quote.is_none() {
            break;
        }
        let (at, c) = chars.next()?;
        if c == '\n' || c == '\r' {
            // Folding across lines: not worth mapping.
            return None;
        }
        let (value, width) = match (quote, c) {
            (Some('"'), '"') => break,
            (Some('\''), '\'') => {
                if chars.peek().map(|(_, c)| *c) != Some('\'') {
                    break;
                }
                chars.next();
                ('\'', 2)
            }
            (Some('"'), '\\') => escape(&mut chars)?,
            _ => (c, 1),
        };
        let next = chars.peek().map(|(i, _)| *i).unwrap_or(raw.len());
        points.push((decoded.len(), place(at, col, next - at)));
        decoded.push(value);
        col += width;
        if decoded.len() > text.len() {
            return None;
        }
    }
    if decoded != text {
        return None;
    }
    let end_at = chars.peek().map(|(i, _)| *i).unwrap_or(raw.len());
    points.push((decoded.len(), place(end_at, col, 0)));
    Some(points)
}

/// One escape after `\`: the character and how many source characters it took.
fn escape(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<(char, u32)> {
    let (_, c) = chars.next()?;
    fn hex(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v * 16 + chars.next()?.1.to_digit(16)?;
        }
        Some(v)
    }
    let simple = |ch: char| Some((ch, 2));
    match c {
        '"' => simple('"'),
        '\\' => simple('\\'),
        '/' => simple('/'),
        'b' => simple('\u{8}'),
        'f' => simple('\u{c}'),
        'n' => simple('\n'),
        'r' => simple('\r'),
        't' | '\t' => simple('\t'),
        '0' => simple('\0'),
        'a' => simple('\u{7}'),
        'v' => simple('\u{b}'),
        'e' => simple('\u{1b}'),
        ' ' => simple(' '),
        'N' => simple('\u{85}'),
        '_' => simple('\u{a0}'),
        'L' => simple('\u{2028}'),
        'P' => simple('\u{2029}'),
        'x' => Some((char::from_u32(hex(chars, 2)?)?, 4)),
        'U' => Some((char::from_u32(hex(chars, 8)?)?, 10)),
        'u' => {
            let high = hex(chars, 4)?;
            if (0xD800..0xDC00).contains(&high) {
                // JSON's surrogate pair: `\uD83D\uDE00`.
                if chars.next()?.1 != '\\' || chars.next()?.1 != 'u' {
                    return None;
                }
                let low = hex(chars, 4)?;
                let c =
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low.checked_sub(0xDC00)?))?;
                Some((c, 12))
            } else {
                Some((char::from_u32(high)?, 6))
            }
        }
        _ => None,
    }
}
