//! The field paths a [`RuleSet`](crate::RuleSet) mentions, as a tree of key
//! segments, so an event is walked once and only where some rule looks.
//!
//! A dotted path is its keys joined with dots, so `{"a": {"b": 1}}` and
//! `{"a.b": 1}` both reach `a.b` (as in [`FlatEvent`](crate::FlatEvent)).
//! Splitting every key on dots makes that exact: the tree's edges are the
//! dot-separated segments, and an event key with dots follows several edges.
//! Subtrees of the event that no path goes through are never visited, and no
//! path string is ever built for an event.

use serde_json::{Map as JsonMap, Value};

use crate::flatten::{ArrayPos, MAX_EVENT_DEPTH, Scalar};
use crate::hash::Map;

/// Children of a node: a short list is scanned (most objects in a pattern
/// have a handful of keys), a long one hashed.
const SCAN_LIMIT: usize = 12;

/// No path ends at this node.
pub(crate) const NO_PATH: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub(crate) struct PathTree {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Node {
    children: Vec<(Box<str>, u32)>,
    /// Bit `min(len, 63)` set for each child segment's length: most event
    /// keys are refused by one test.
    lengths: u64,
    /// Built once the node has more than [`SCAN_LIMIT`] children.
    by_key: Option<Map<Box<str>, u32>>,
    /// The path id ending here, or [`NO_PATH`].
    path: u32,
}

impl Node {
    fn new() -> Node {
        Node {
            children: Vec::new(),
            lengths: 0,
            by_key: None,
            path: NO_PATH,
        }
    }

    #[inline]
    fn child(&self, segment: &str) -> Option<u32> {
        if let Some(map) = &self.by_key {
            return map.get(segment).copied();
        }
        // Length and first byte first: most misses end there, without a memcmp.
        let first = segment.as_bytes().first();
        self.children
            .iter()
            .find(|(key, _)| {
                key.len() == segment.len() && key.as_bytes().first() == first && **key == *segment
            })
            .map(|&(_, node)| node)
    }
}

#[inline]
fn length_bit(segment: &str) -> u64 {
    1 << segment.len().min(63)
}

/// Whether `key` could start with a child segment followed by a dot: cheaper
/// than looking for dots, as a node has few distinct child lengths.
#[inline]
fn may_be_dotted_child(lengths: u64, key: &str) -> bool {
    let bytes = key.as_bytes();
    if bytes.len() >= 63 {
        return bytes.contains(&b'.');
    }
    let mut shorter = lengths & ((1u64 << bytes.len()) - 1);
    while shorter != 0 {
        let len = shorter.trailing_zeros() as usize;
        if bytes.get(len) == Some(&b'.') {
            return true;
        }
        shorter &= shorter - 1;
    }
    false
}

/// What the walk reports: a scalar at a mentioned path, with its array trail.
pub(crate) trait LeafSink<'e> {
    fn leaf(&mut self, path: u32, value: Scalar<'e>, trail: &[ArrayPos]);
}

impl PathTree {
    /// Adds `path` (dotted) with id `id`.
    pub(crate) fn insert(&mut self, path: &str, id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::new());
        }
        let mut node = 0usize;
        for segment in path.split('.') {
            node = match self.nodes[node].child(segment) {
                Some(next) => next as usize,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::new());
                    let parent = &mut self.nodes[node];
                    parent.children.push((segment.into(), next as u32));
                    parent.lengths |= length_bit(segment);
                    if let Some(map) = &mut parent.by_key {
                        map.insert(segment.into(), next as u32);
                    } else if parent.children.len() > SCAN_LIMIT {
                        parent.by_key = Some(parent.children.iter().cloned().collect());
                    }
                    next
                }
            };
        }
        self.nodes[node].path = id;
    }

    /// Follows an event key (which may hold dots) from `node`.
    #[inline]
    fn descend(&self, node: u32, key: &str) -> Option<u32> {
        let start = self.nodes.get(node as usize)?;
        // Segments hold no dots, so a key that is a child is one without dots.
        if start.lengths & length_bit(key) != 0
            && let Some(child) = start.child(key)
        {
            return Some(child);
        }
        if !may_be_dotted_child(start.lengths, key) {
            return None;
        }
        let mut at = node;
        for segment in key.split('.') {
            at = self.nodes.get(at as usize)?.child(segment)?;
        }
        Some(at)
    }

    /// Walks `event`, reporting every scalar that sits at a path of the tree.
    /// Depths count as in [`FlatEvent::new`](crate::FlatEvent::new), so both
    /// ignore exactly the same over-deep parts.
    pub(crate) fn walk<'e>(&self, event: &'e Value, sink: &mut impl LeafSink<'e>) {
        let Value::Object(map) = event else {
            return;
        };
        if self.nodes.is_empty() {
            return;
        }
        let mut walk = Walk {
            tree: self,
            trail: Vec::new(),
            next_array: 0,
            sink,
        };
        walk.object(0, map, 0);
    }
}

struct Walk<'t, 's, S> {
    tree: &'t PathTree,
    trail: Vec<ArrayPos>,
    next_array: u32,
    sink: &'s mut S,
}

impl<'e, S: LeafSink<'e>> Walk<'_, '_, S> {
    fn object(&mut self, node: u32, map: &'e JsonMap<String, Value>, depth: usize) {
        if self
            .tree
            .nodes
            .get(node as usize)
            .is_none_or(|n| n.children.is_empty())
        {
            return;
        }
        for (key, value) in map {
            if let Some(child) = self.tree.descend(node, key) {
                self.value(child, value, depth);
            }
        }
    }

    fn value(&mut self, node: u32, value: &'e Value, depth: usize) {
        if depth >= MAX_EVENT_DEPTH {
            return;
        }
        let scalar = match value {
            Value::Object(map) => return self.object(node, map, depth + 1),
            Value::Array(items) => {
                let id = self.next_array;
                self.next_array = self.next_array.wrapping_add(1);
                for (index, item) in items.iter().enumerate() {
                    self.trail.push((id, index as u32));
                    self.value(node, item, depth + 1);
                    self.trail.pop();
                }
                return;
            }
            Value::String(s) => Scalar::Str(s),
            Value::Number(n) => Scalar::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Null => Scalar::Null,
        };
        let path = self
            .tree
            .nodes
            .get(node as usize)
            .map_or(NO_PATH, |n| n.path);
        if path != NO_PATH {
            self.sink.leaf(path, scalar, &self.trail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct Collect(Vec<(u32, String, usize)>);

    impl<'e> LeafSink<'e> for Collect {
        fn leaf(&mut self, path: u32, value: Scalar<'e>, trail: &[ArrayPos]) {
            self.0.push((path, format!("{value:?}"), trail.len()));
        }
    }

    fn tree(paths: &[&str]) -> PathTree {
        let mut t = PathTree::default();
        for (i, p) in paths.iter().enumerate() {
            t.insert(p, i as u32);
        }
        t
    }

    #[test]
    fn dotted_keys_reach_the_same_path_as_nesting() {
        let t = tree(&["a.b", "c"]);
        let mut sink = Collect::default();
        t.walk(&json!({"a": {"b": 1}, "a.b": 2, "x": {"b": 3}}), &mut sink);
        let paths: Vec<u32> = sink.0.iter().map(|l| l.0).collect();
        assert_eq!(paths, [0, 0]);
    }

    #[test]
    fn objects_are_not_leaves_and_arrays_give_trails() {
        let t = tree(&["a", "a.b"]);
        let mut sink = Collect::default();
        t.walk(&json!({"a": [{"b": 1}, 2]}), &mut sink);
        assert_eq!(
            sink.0,
            [
                (1, "Num(1.0)".to_string(), 1),
                (0, "Num(2.0)".to_string(), 1)
            ]
        );
    }

    #[test]
    fn dotted_keys_at_any_depth() {
        let t = tree(&["a.b.c", "long-name.x"]);
        let mut sink = Collect::default();
        let event = json!({"a.b": {"c": 1}, "a": {"b.c": 2}, "a.b.c": 3, "x.a": 4,
                           "long-name.x": 5, "long-name": {"x": 6}});
        t.walk(&event, &mut sink);
        let mut paths: Vec<u32> = sink.0.iter().map(|l| l.0).collect();
        paths.sort_unstable();
        assert_eq!(paths, [0, 0, 0, 1, 1]);
    }

    #[test]
    fn many_children_are_hashed() {
        let names: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let t = tree(&refs);
        let mut sink = Collect::default();
        t.walk(&json!({"k39": true, "k0": null, "nope": 1}), &mut sink);
        let mut paths: Vec<u32> = sink.0.iter().map(|l| l.0).collect();
        paths.sort_unstable();
        assert_eq!(paths, [0, 39]);
    }
}
