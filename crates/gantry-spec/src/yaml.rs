//! A small YAML tree whose every node knows where it was written, loaded under
//! budgets so that hostile input ends in a diagnostic, never a hang or a crash.
//!
//! The format converters (`buildspec`, ...) walk this tree by hand instead of
//! deserializing with serde: that way one pass can report *every* problem in a
//! file, each with its own position, rather than stopping at the first.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// How much input a single file may cost us.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest accepted source, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of lists and mappings.
    pub max_depth: usize,
    /// Most nodes in the tree, counting every node an alias copies.
    pub max_nodes: usize,
}

/// The budgets every Gantry format is loaded under (documented in docs/buildspec.md).
pub(crate) const LIMITS: Limits = Limits {
    max_bytes: 4 * 1024 * 1024,
    max_depth: 64,
    max_nodes: 100_000,
};

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts (for a scalar, its whole text).
    pub span: Span,
    /// What it is.
    pub kind: Kind,
}

/// The three shapes of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar, kept as written (no number or boolean resolution yet).
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, duplicates kept (the converters report them).
    Map(Vec<(Node, Node)>),
}

/// A scalar's text, and whether it was written plain (unquoted, untagged).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    /// The text after YAML unescaping and folding.
    pub text: String,
    /// True when unquoted: only plain scalars can be YAML nulls or booleans.
    pub plain: bool,
}

impl Node {
    /// True for an empty value, `~` or `null`, written plain.
    pub fn is_null(&self) -> bool {
        match &self.kind {
            Kind::Scalar(s) => {
                s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// The scalar, if this is one.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// "a list", "a mapping", "nothing", or "`text`", for "found ..." messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            _ if self.is_null() => "nothing".to_string(),
            Kind::Scalar(s) => format!("`{}`", shorten(&s.text)),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }
}

/// Cuts long user text so one bad value cannot flood a diagnostic.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Loads one YAML document. `Ok(None)` is an empty file (only comments, or nothing).
pub(crate) fn load(source: &str, limits: Limits) -> Result<Option<Node>, Diagnostic> {
    let positions = Positions::new(source);
    if source.len() > limits.max_bytes {
        return Err(Diagnostic::new(
            positions.start(),
            format!(
                "file is {} bytes; the limit is {} bytes",
                source.len(),
                limits.max_bytes
            ),
        ));
    }
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(source) {
        let (event, span) = match event {
            Ok(pair) => pair,
            Err(e) => {
                let message = if e.info().contains("recursion limit") {
                    // The scanner's own flow-nesting guard fired before ours.
                    too_deep(limits)
                } else {
                    format!("invalid YAML: {}", e.info())
                };
                return Err(Diagnostic::new(positions.point(*e.marker()), message));
            }
        };
        let span = positions.span(span.start, span.end);
        builder.event(event, span)?;
    }
    Ok(builder.root)
}

fn too_deep(limits: Limits) -> String {
    format!(
        "nesting too deep: more than {} levels of lists and mappings",
        limits.max_depth
    )
}

/// A collection being read.
struct Frame {
    span: Span,
    anchor: usize,
    /// `Builder::nodes` when the collection opened, to size it for aliases.
    nodes_before: usize,
    open: Open,
}

enum Open {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    /// Finished anchored nodes with their size in nodes (what an alias costs).
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::new(
                        span,
                        "a second YAML document (`---`); a file holds one document",
                    ));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                self.check_tag(tag.as_deref(), span)?;
                // `!!str 0.2` is a string just as `"0.2"` is.
                let forced_str = tag.is_some_and(|t| t.suffix == "str");
                let node = Node {
                    span,
                    kind: Kind::Scalar(Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain && !forced_str,
                    }),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.finish(node)
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(Diagnostic::new(
                        span,
                        "alias to an anchor that is not complete yet (an anchor cannot contain itself)",
                    ));
                };
                let (node, size) = (node.clone(), *size);
                // An alias costs as much as what it copies: this is what stops
                // "billion laughs" documents, where each level doubles the last.
                self.count(size, span)?;
                self.finish(Node { span, ..node })
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), span)?;
                self.open(span, anchor, Open::Seq(Vec::new()))
            }
            Event::MappingStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), span)?;
                self.open(span, anchor, Open::Map(Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(span),
        }
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::new(
                span,
                format!(
                    "document too large: more than {} YAML nodes (aliases count as copies)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn check_tag(&self, tag: Option<&Tag>, span: Span) -> Result<(), Diagnostic> {
        match tag {
            Some(tag) if !tag.is_yaml_core_schema() => Err(Diagnostic::new(
                span,
                format!("unsupported YAML tag `{tag}`; only the standard `!!` tags are understood"),
            )),
            _ => Ok(()),
        }
    }

    fn open(&mut self, span: Span, anchor: usize, open: Open) -> Result<(), Diagnostic> {
        self.count(1, span)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(Diagnostic::new(span, too_deep(self.limits)));
        }
        self.stack.push(Frame {
            span,
            anchor,
            nodes_before: self.nodes - 1,
            open,
        });
        Ok(())
    }

    fn close(&mut self, end: Span) -> Result<(), Diagnostic> {
        let Some(frame) = self.stack.pop() else {
            return Err(Diagnostic::new(
                end,
                "invalid YAML: unbalanced end of a collection",
            ));
        };
        let kind = match frame.open {
            Open::Seq(items) => Kind::Seq(items),
            Open::Map(entries, pending) => {
                if let Some(key) = pending {
                    // The parser always pairs keys with values; be defensive anyway.
                    return Err(Diagnostic::new(
                        key.span,
                        "invalid YAML: a key without a value",
                    ));
                }
                Kind::Map(merge_keys(entries))
            }
        };
        let node = Node {
            span: frame.span,
            kind,
        };
        if frame.anchor != 0 {
            let size = self.nodes - frame.nodes_before;
            self.anchors.insert(frame.anchor, (node.clone(), size));
        }
        self.finish(node)
    }

    /// Hands a complete node to the collection it belongs to, or makes it the root.
    fn finish(&mut self, node: Node) -> Result<(), Diagnostic> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame {
                open: Open::Seq(items),
                ..
            }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame {
                open: Open::Map(entries, pending),
                ..
            }) => {
                match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                }
                Ok(())
            }
        }
    }
}

/// Applies YAML 1.1 merge keys (`<<: *defaults`), which CodeBuild's YAML
/// library honours and real buildspecs use to share blocks. Keys written in
/// the mapping itself win over merged ones; earlier merges win over later.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |key: &Node| key.scalar().is_some_and(|s| s.plain && s.text == "<<");
    if !entries
        .iter()
        .any(|(k, v)| is_merge(k) && merge_sources(v).is_some())
    {
        return entries;
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged = Vec::new();
    for (key, value) in entries {
        match merge_sources(&value) {
            Some(sources) if is_merge(&key) => {
                for source in sources {
                    if let Kind::Map(pairs) = &source.kind {
                        merged.extend(pairs.iter().cloned());
                    }
                }
            }
            _ => own.push((key, value)),
        }
    }
    let mut present: std::collections::HashSet<String> = own
        .iter()
        .filter_map(|(k, _)| k.scalar().map(|s| s.text.clone()))
        .collect();
    for (key, value) in merged {
        match key.scalar() {
            Some(s) if !present.insert(s.text.clone()) => {}
            _ => own.push((key, value)),
        }
    }
    own
}

/// The mappings a `<<` value merges: one mapping, or a list of mappings.
fn merge_sources(value: &Node) -> Option<Vec<&Node>> {
    match &value.kind {
        Kind::Map(_) => Some(vec![value]),
        Kind::Seq(items) if items.iter().all(|i| matches!(i.kind, Kind::Map(_))) => {
            Some(items.iter().collect())
        }
        _ => None,
    }
}

/// Turns the parser's character positions into [`Span`]s with byte offsets.
struct Positions<'a> {
    source: &'a str,
    /// Byte offset of every `STRIDE`-th character; empty when the source is
    /// ASCII, where character and byte offsets agree.
    checkpoints: Vec<usize>,
}

const STRIDE: usize = 64;

impl<'a> Positions<'a> {
    fn new(source: &'a str) -> Self {
        let checkpoints = if source.is_ascii() {
            Vec::new()
        } else {
            source
                .char_indices()
                .step_by(STRIDE)
                .map(|(byte, _)| byte)
                .collect()
        };
        Positions {
            source,
            checkpoints,
        }
    }

    fn start(&self) -> Span {
        Span {
            line: 1,
            col: 1,
            offset: 0,
            len: 0,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.checkpoints.is_empty() {
            return char_index.min(self.source.len());
        }
        let Some(&base) = self.checkpoints.get(char_index / STRIDE) else {
            return self.source.len();
        };
        let rest = self.source.get(base..).unwrap_or("");
        match rest.char_indices().nth(char_index % STRIDE) {
            Some((b, _)) => base + b,
            None => self.source.len(),
        }
    }

    fn point(&self, mark: Marker) -> Span {
        self.span(mark, mark)
    }

    fn span(&self, start: Marker, end: Marker) -> Span {
        let offset = self.byte(start.index());
        let end = self.byte(end.index()).max(offset);
        Span {
            line: u32::try_from(start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(start.col().saturating_add(1)).unwrap_or(u32::MAX),
            offset,
            len: end - offset,
        }
    }
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
