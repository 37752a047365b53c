//! Events flattened into `(dotted path, scalar)` leaves, the form every matcher reads.
//!
//! `{"detail": {"state": "x"}}` and `{"detail.state": "x"}` both flatten to the
//! leaf `detail.state = "x"`: EventBridge joins keys with dots and does not
//! tell the two apart. Objects and empty arrays produce no leaf; each element
//! of an array produces its own leaves, tagged with the array and index it
//! came from, so that fields of *different* elements are never combined into
//! one match.

use serde_json::Value;

/// Events nested deeper than this are refused by [`FlatEvent::new`]'s
/// caller-visible result: deeper parts are ignored rather than recursed into,
/// so that a hostile event cannot exhaust the stack.
pub(crate) const MAX_EVENT_DEPTH: usize = 256;

/// A scalar event value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
    Null,
}

/// One array element a leaf sits inside: (array instance, index).
pub(crate) type ArrayPos = (u32, u32);

#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) path: Box<str>,
    pub(crate) value: Scalar,
    /// Outermost array first. Empty when the leaf is in no array.
    pub(crate) trail: Box<[ArrayPos]>,
}

/// An event taken apart once into leaves, ready to be matched against any
/// number of patterns.
///
/// Build one with [`FlatEvent::new`] when the same event goes through several
/// [`Pattern`](crate::Pattern)s; [`RuleSet`](crate::RuleSet) and
/// [`Pattern::matches`](crate::Pattern::matches) build it themselves.
#[derive(Debug, Clone, Default)]
pub struct FlatEvent {
    /// Sorted by path (stable, so document order is kept within one path).
    leaves: Vec<Leaf>,
    any_arrays: bool,
}

impl FlatEvent {
    /// Flattens a JSON event. Any JSON value is accepted; a non-object has no
    /// named fields, so only patterns without positive conditions match it.
    pub fn new(event: &Value) -> FlatEvent {
        let mut out = FlatEvent::default();
        let mut walker = Walker {
            path: String::new(),
            trail: Vec::new(),
            next_array: 0,
            out: &mut out,
        };
        if let Value::Object(map) = event {
            for (key, value) in map {
                walker.visit(key, value, 0);
            }
        }
        out.leaves.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    pub(crate) fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    pub(crate) fn has_arrays(&self) -> bool {
        self.any_arrays
    }

    /// Index range of the leaves at `path`.
    pub(crate) fn range(&self, path: &str) -> std::ops::Range<usize> {
        let start = self.leaves.partition_point(|l| &*l.path < path);
        let end = start + self.leaves[start..].partition_point(|l| &*l.path == path);
        start..end
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        !self.range(path).is_empty()
    }
}

struct Walker<'a> {
    path: String,
    trail: Vec<ArrayPos>,
    next_array: u32,
    out: &'a mut FlatEvent,
}

impl Walker<'_> {
    fn visit(&mut self, key: &str, value: &Value, depth: usize) {
        let saved = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        self.value(value, depth);
        self.path.truncate(saved);
    }

    fn value(&mut self, value: &Value, depth: usize) {
        if depth >= MAX_EVENT_DEPTH {
            return;
        }
        let scalar = match value {
            Value::Object(map) => {
                for (key, value) in map {
                    self.visit(key, value, depth + 1);
                }
                return;
            }
            Value::Array(items) => {
                let id = self.next_array;
                self.next_array = self.next_array.wrapping_add(1);
                self.out.any_arrays = true;
                for (index, item) in items.iter().enumerate() {
                    self.trail.push((id, index as u32));
                    self.value(item, depth + 1);
                    self.trail.pop();
                }
                return;
            }
            Value::String(s) => Scalar::Str(s.as_str().into()),
            Value::Number(n) => match n.as_f64() {
                Some(f) => Scalar::Num(f),
                // Arbitrary-precision numbers only; keep them as text so
                // they still match nothing numeric rather than panic.
                None => Scalar::Str(n.to_string().into()),
            },
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Null => Scalar::Null,
        };
        self.out.leaves.push(Leaf {
            path: self.path.as_str().into(),
            value: scalar,
            trail: self.trail.as_slice().into(),
        });
    }
}

/// Whether two leaves can belong to one match: wherever both sit inside the
/// same array, they sit in the same element of it.
pub(crate) fn compatible(a: &[ArrayPos], b: &[ArrayPos]) -> bool {
    for (array_a, index_a) in a {
        for (array_b, index_b) in b {
            if array_a == array_b && index_a != index_b {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_keys_and_nesting_flatten_alike() {
        let a = FlatEvent::new(&json!({"a": {"b": 1}}));
        let b = FlatEvent::new(&json!({"a.b": 1}));
        assert_eq!(a.leaves()[0].path, b.leaves()[0].path);
    }

    #[test]
    fn arrays_tag_their_elements() {
        let e = FlatEvent::new(&json!({"x": [{"a": 1, "b": 2}, {"a": 3}]}));
        let r = e.range("x.a");
        assert_eq!(r.len(), 2);
        let first = &e.leaves()[r.start];
        let b = &e.leaves()[e.range("x.b").start];
        assert!(compatible(&first.trail, &b.trail));
        assert!(!compatible(&e.leaves()[r.start + 1].trail, &b.trail));
    }

    #[test]
    fn empty_arrays_and_objects_leave_nothing() {
        let e = FlatEvent::new(&json!({"x": [], "y": {}}));
        assert!(e.leaves().is_empty());
    }
}
