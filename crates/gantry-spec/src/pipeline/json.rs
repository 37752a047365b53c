//! JSON through the YAML loader: JSON is (nearly) YAML 1.2, so one spanned
//! tree and one set of budgets serve both spellings.
//!
//! "Nearly" is handled here. YAML accepts things JSON does not (trailing
//! commas, comments, single quotes, unquoted keys), so the text is first
//! checked by `serde_json`, which also gives JSON's own error messages. And
//! YAML cannot spell a character outside the Basic Multilingual Plane as a
//! UTF-16 surrogate pair (`"\ud83d\ude00"`), which JSON encoders write: those
//! pairs are rewritten to YAML's `\U0001F600` before loading, and every span
//! is moved back to where it was in the text the user wrote. Tabs between
//! tokens, which the YAML scanner refuses in places, become spaces.

use crate::diagnostic::Diagnostic;
use crate::span::Span;
use crate::yaml::{self, Kind, Node};

/// Loads a JSON document into the YAML node tree. `Ok(None)`: only whitespace.
pub(crate) fn load(source: &str) -> Result<Option<Node>, Diagnostic> {
    if source.trim().is_empty() {
        return Ok(None);
    }
    if source.len() > yaml::LIMITS.max_bytes {
        // The YAML loader reports the size; do not hand serde 4 MiB+ first.
        return yaml::load(source, yaml::LIMITS);
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(source) {
        return Err(syntax_error(source, &e));
    }
    // Valid JSON has raw tabs only between tokens, where a space means the
    // same; saphyr refuses some of them (`"a":<TAB>1`). Same length, so
    // every position stays put.
    let spaced;
    let source = if source.contains('\t') {
        spaced = source.replace('\t', " ");
        spaced.as_str()
    } else {
        source
    };
    let (text, rewrites) = rewrite_surrogates(source);
    let shift = Shift { rewrites };
    match yaml::load(&text, yaml::LIMITS) {
        Ok(Some(mut root)) => {
            shift.node(&mut root);
            Ok(Some(root))
        }
        Ok(None) => Ok(None),
        Err(mut d) => {
            d.span = shift.span(d.span);
            Err(d)
        }
    }
}

/// A `serde_json` syntax error as a diagnostic at its place.
pub(crate) fn syntax_error(source: &str, e: &serde_json::Error) -> Diagnostic {
    let message = e.to_string();
    // serde_json appends " at line L column C"; we show the place our way.
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    };
    let message = match message.as_str() {
        "recursion limit exceeded" => "nesting too deep: more than 128 levels".to_string(),
        _ => message,
    };
    let at = point(source, e.line(), e.column());
    if let Some(comma) = trailing_comma(source, at.offset) {
        return Diagnostic::new(
            comma,
            "invalid JSON: a trailing comma (JSON allows no comma before `}` or `]`)",
        );
    }
    Diagnostic::new(at, format!("invalid JSON: {message}"))
}

/// When the error sits on a `}` or `]` right after a comma, where that comma is.
fn trailing_comma(source: &str, offset: usize) -> Option<Span> {
    let close = source.get(offset..)?.chars().next()?;
    if close != '}' && close != ']' {
        return None;
    }
    let before = source.get(..offset)?.trim_end();
    if !before.ends_with(',') {
        return None;
    }
    let comma = before.len() - 1;
    let line = source[..comma].matches('\n').count() + 1;
    let line_start = source[..comma].rfind('\n').map(|i| i + 1).unwrap_or(0);
    Some(point(source, line, comma - line_start + 1))
}

/// The span of a 1-based line and 1-based *byte* column (serde_json counts bytes).
pub(crate) fn point(source: &str, line: usize, byte_col: usize) -> Span {
    let line = line.max(1);
    let mut offset = 0;
    for (i, text) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let mut within = byte_col.saturating_sub(1).min(text.len());
            while !text.is_char_boundary(within) {
                within -= 1;
            }
            let col = text[..within].chars().count() + 1;
            return Span {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: u32::try_from(col).unwrap_or(u32::MAX),
                offset: offset + within,
                len: 0,
            };
        }
        offset += text.len();
    }
    // Past the end (an error at EOF after a final newline).
    let last_line = source.split_inclusive('\n').count().max(1);
    let tail = source.rsplit('\n').next().unwrap_or("");
    if source.ends_with('\n') {
        Span {
            line: u32::try_from(last_line + 1).unwrap_or(u32::MAX),
            col: 1,
            offset: source.len(),
            len: 0,
        }
    } else {
        Span {
            line: u32::try_from(last_line).unwrap_or(u32::MAX),
            col: u32::try_from(tail.chars().count() + 1).unwrap_or(u32::MAX),
            offset: source.len(),
            len: 0,
        }
    }
}

/// One surrogate pair rewritten: 12 bytes `\uD83D\uDE00` became 10 bytes `\U0001F600`.
#[derive(Debug, Clone, Copy)]
struct Rewrite {
    /// Offset just past the rewritten escape, in the rewritten text.
    end: usize,
    /// The line it is on.
    line: u32,
}

const SHRINK: usize = 2;

/// Rewrites every escaped surrogate pair inside strings. The input is valid
/// JSON, so strings and escapes are well formed.
fn rewrite_surrogates(source: &str) -> (std::borrow::Cow<'_, str>, Vec<Rewrite>) {
    if !source.contains("\\u") && !source.contains("\\U") {
        return (source.into(), Vec::new());
    }
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut rewrites = Vec::new();
    let mut line = 1u32;
    let mut in_string = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if let Some(c) = surrogate_pair(bytes, i) {
                    out.push_str(&source[copied..i]);
                    out.push_str(&format!("\\U{:08X}", u32::from(c)));
                    i += 12;
                    copied = i;
                    rewrites.push(Rewrite {
                        end: out.len(),
                        line,
                    });
                    continue;
                }
                // Skip the escaped character (it may be a quote).
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if rewrites.is_empty() {
        return (source.into(), rewrites);
    }
    out.push_str(&source[copied..]);
    (out.into(), rewrites)
}

/// The character of `\uHHHH\uLLLL` at `at`, when that is a surrogate pair.
fn surrogate_pair(bytes: &[u8], at: usize) -> Option<char> {
    let hex = |from: usize| -> Option<u32> {
        let digits = bytes.get(from..from + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    if bytes.get(at..at + 2)? != b"\\u" || bytes.get(at + 6..at + 8)? != b"\\u" {
        return None;
    }
    let (high, low) = (hex(at + 2)?, hex(at + 8)?);
    if !(0xD800..0xDC00).contains(&high) || !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
}

/// Moves spans from the rewritten text back to the original.
struct Shift {
    rewrites: Vec<Rewrite>,
}

impl Shift {
    fn node(&self, node: &mut Node) {
        if self.rewrites.is_empty() {
            return;
        }
        node.span = self.span(node.span);
        match &mut node.kind {
            Kind::Scalar(_) => {}
            Kind::Seq(items) => items.iter_mut().for_each(|n| self.node(n)),
            Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                self.node(k);
                self.node(v);
            }),
        }
    }

    fn span(&self, span: Span) -> Span {
        let before = |offset: usize| self.rewrites.partition_point(|r| r.end <= offset);
        let start = before(span.offset);
        let end = before(span.offset + span.len);
        let same_line = self.rewrites[..start]
            .iter()
            .rev()
            .take_while(|r| r.line == span.line)
            .count();
        Span {
            line: span.line,
            col: span
                .col
                .saturating_add(u32::try_from(same_line * SHRINK).unwrap_or(u32::MAX)),
            offset: span.offset + start * SHRINK,
            len: span.len + (end - start) * SHRINK,
        }
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
