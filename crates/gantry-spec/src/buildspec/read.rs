//! Reading helpers shared by the section converters: typed views of YAML
//! nodes that record a diagnostic and carry on, so one pass finds every problem.

use std::collections::HashMap;

use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node};

/// The converter's state: the diagnostics found so far.
#[derive(Debug, Default)]
pub(crate) struct Cx {
    pub diags: Vec<Diagnostic>,
}

impl Cx {
    /// Records a problem.
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, message));
    }

    /// "`path` must be EXPECTED, found FOUND" at the node.
    pub fn expected(&mut self, node: &Node, path: &str, expected: &str) {
        self.error(
            node.span,
            format!("`{path}` must be {expected}, found {}", node.describe()),
        );
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// "in `path`", or "at the top level".
pub(crate) fn location(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{path}`")
    }
}

/// One key of a fixed-shape block and its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'n> {
    /// The key as written.
    pub key: &'n Node,
    /// The value.
    pub value: &'n Node,
}

/// A fixed-shape block (a mapping whose keys the format defines), checked
/// for unknown and duplicate keys.
#[derive(Debug)]
pub(crate) struct Fields<'n> {
    /// Where the block was introduced (its key), for "missing key" errors.
    pub at: Span,
    /// The block's path, e.g. `phases.build`.
    pub path: String,
    known: Vec<(&'n str, Field<'n>)>,
}

impl<'n> Fields<'n> {
    /// The value of `name`, when present.
    pub fn get(&self, name: &str) -> Option<Field<'n>> {
        self.known
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, field)| *field)
    }

    /// Like [`Fields::get`], but a missing key is an error.
    pub fn require(&self, cx: &mut Cx, name: &str) -> Option<Field<'n>> {
        let field = self.get(name);
        if field.is_none() {
            let what = if self.path.is_empty() {
                format!("missing required key `{name}`")
            } else {
                format!("missing required key `{name}` in `{}`", self.path)
            };
            cx.error(self.at, what);
        }
        field
    }

    /// The keys present, in file order.
    pub fn names(&self) -> impl Iterator<Item = (&'n str, Field<'n>)> + '_ {
        self.known.iter().copied()
    }
}

/// Reads `node` as a block with the keys `allowed`. A null value reads as an
/// empty block (so `artifacts:` alone then reports its missing `files`).
/// Returns `None`, after reporting, when `node` is not a mapping.
pub(crate) fn fields<'n>(
    cx: &mut Cx,
    node: &'n Node,
    at: Span,
    path: &str,
    allowed: &[&str],
) -> Option<Fields<'n>> {
    fields_tolerating(cx, node, at, path, allowed, &[])
}

/// Like [`fields`], but also keeps the keys in `tolerated` without listing
/// them as expected: the caller reports them with a better message (e.g.
/// `runtime-versions` outside `install`).
pub(crate) fn fields_tolerating<'n>(
    cx: &mut Cx,
    node: &'n Node,
    at: Span,
    path: &str,
    allowed: &[&str],
    tolerated: &[&str],
) -> Option<Fields<'n>> {
    let mut fields = Fields {
        at,
        path: path.to_string(),
        known: Vec::new(),
    };
    if node.is_null() {
        return Some(fields);
    }
    let Kind::Map(entries) = &node.kind else {
        let what = if path.is_empty() {
            "a buildspec must be a mapping of keys (`version`, `phases`, ...)".to_string()
        } else {
            format!("`{path}` must be a mapping, found {}", node.describe())
        };
        cx.error(node.span, what);
        return None;
    };
    for (key, value) in entries {
        let Some(name) = key_text(cx, key, path) else {
            continue;
        };
        if let Some((_, first)) = fields.known.iter().find(|(k, _)| *k == name) {
            duplicate(cx, key, name, path, first.key.span);
            continue;
        }
        if !allowed.contains(&name) && !tolerated.contains(&name) {
            cx.error(key.span, unknown_key_message(name, path, allowed));
            continue;
        }
        fields.known.push((name, Field { key, value }));
    }
    Some(fields)
}

/// A user-keyed mapping (variables, report groups, ...): each key with its
/// value, in file order, duplicates reported and dropped. A null node is empty.
pub(crate) fn user_map<'n>(
    cx: &mut Cx,
    node: &'n Node,
    path: &str,
) -> Vec<(Spanned<String>, &'n Node)> {
    let mut out: Vec<(Spanned<String>, &'n Node)> = Vec::new();
    // Maps can be large (hostile or generated files): look duplicates up in
    // a hash map, not by scanning.
    let mut seen: HashMap<&'n str, Span> = HashMap::new();
    if node.is_null() {
        return out;
    }
    let Kind::Map(entries) = &node.kind else {
        cx.expected(node, path, "a mapping");
        return out;
    };
    for (key, value) in entries {
        let Some(name) = key_text(cx, key, path) else {
            continue;
        };
        if let Some(first) = seen.get(name) {
            duplicate(cx, key, name, path, *first);
            continue;
        }
        seen.insert(name, key.span);
        out.push((Spanned::new(name.to_string(), key.span), value));
    }
    out
}

fn key_text<'n>(cx: &mut Cx, key: &'n Node, path: &str) -> Option<&'n str> {
    match key.scalar() {
        Some(s) if !key.is_null() => Some(s.text.as_str()),
        _ => {
            cx.error(
                key.span,
                format!(
                    "keys must be plain text {}, found {}",
                    location(path),
                    key.describe()
                ),
            );
            None
        }
    }
}

fn duplicate(cx: &mut Cx, key: &Node, name: &str, path: &str, first: Span) {
    cx.error(
        key.span,
        format!(
            "duplicate key `{name}` {}; first given on line {}",
            location(path),
            first.line
        ),
    );
}

/// "unknown key `x` in `p`; expected one of ...; did you mean `y`?"
pub(crate) fn unknown_key_message(name: &str, path: &str, allowed: &[&str]) -> String {
    let list = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!(
        "unknown key `{}` {}; expected one of {list}",
        crate::yaml::shorten(name),
        location(path)
    );
    if let Some(guess) = did_you_mean(name, allowed) {
        message.push_str(&format!("; did you mean `{guess}`?"));
    }
    message
}

/// The closest candidate, when it is close enough to be a typo (compared
/// without case, so camelCase keys match their misspellings too).
pub(crate) fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Long inputs cannot be typos of short keys; skip the quadratic distance.
    if name.len() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 2 && *d * 3 <= c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A non-empty scalar, as text.
pub(crate) fn text(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    expected: &str,
) -> Option<Spanned<String>> {
    match node.scalar() {
        Some(s) if !node.is_null() => Some(Spanned::new(s.text.clone(), node.span)),
        _ => {
            cx.expected(node, path, expected);
            None
        }
    }
}

/// A scalar where an empty value means the empty string (YAML `KEY:` with
/// nothing after it, which CodeBuild reads as "").
pub(crate) fn text_or_empty(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    expected: &str,
) -> Option<Spanned<String>> {
    if node.is_null() {
        return Some(Spanned::new(String::new(), node.span));
    }
    text(cx, node, path, expected)
}

/// The YAML 1.1 boolean spellings CodeBuild's parser accepts (`yes`, `On`, `FALSE`, ...).
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// A boolean in any YAML 1.1 spelling. Quoted spellings are accepted too:
/// CodeBuild's documentation itself writes `"yes"` in places.
pub(crate) fn boolean(cx: &mut Cx, node: &Node, path: &str) -> Option<Spanned<bool>> {
    match node.scalar().and_then(|s| parse_bool(&s.text)) {
        Some(b) => Some(Spanned::new(b, node.span)),
        None => {
            cx.expected(node, path, "yes or no (or true/false)");
            None
        }
    }
}

/// An optional boolean field, `false` when absent or invalid.
pub(crate) fn flag(cx: &mut Cx, fields: &Fields<'_>, name: &str) -> bool {
    fields
        .get(name)
        .and_then(|f| boolean(cx, f.value, &join(&fields.path, name)))
        .is_some_and(|b| b.value)
}

/// An optional non-empty text field.
pub(crate) fn opt_text(
    cx: &mut Cx,
    fields: &Fields<'_>,
    name: &str,
    expected: &str,
) -> Option<Spanned<String>> {
    let field = fields.get(name)?;
    text(cx, field.value, &join(&fields.path, name), expected)
}

/// A list of non-empty scalars. An empty value is an empty list.
pub(crate) fn list(cx: &mut Cx, node: &Node, path: &str, item: &str) -> Vec<Spanned<String>> {
    if node.is_null() {
        return Vec::new();
    }
    let Kind::Seq(items) = &node.kind else {
        cx.expected(node, path, &format!("a list of {item}s"));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| text(cx, n, &format!("{path}[{i}]"), item))
        .collect()
}

/// An optional list field, empty when absent.
pub(crate) fn opt_list(
    cx: &mut Cx,
    fields: &Fields<'_>,
    name: &str,
    item: &str,
) -> Vec<Spanned<String>> {
    match fields.get(name) {
        Some(f) => list(cx, f.value, &join(&fields.path, name), item),
        None => Vec::new(),
    }
}
