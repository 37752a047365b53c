//! Events flattened into `(dotted path, scalar)` leaves, the form every matcher reads.
//!
//! `{"detail": {"state": "x"}}` and `{"detail.state": "x"}` both flatten to the
//! leaf `detail.state = "x"`: EventBridge joins keys with dots and does not
//! tell the two apart. Objects and empty arrays produce no leaf; each element
//! of an array produces its own leaves, tagged with the array and index it
//! came from, so that fields of *different* elements are never combined into
//! one match.

use serde_json::Value;

/// Event parts nested deeper than this are ignored rather than recursed into.
pub(crate) const MAX_EVENT_DEPTH: usize = 256;

/// A scalar event value, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'e> {
    Str(&'e str),
    Num(f64),
    Bool(bool),
    Null,
}

/// One array element a leaf sits inside: (array instance, index).
pub(crate) type ArrayPos = (u32, u32);

/// A leaf: its path and trail are ranges into the [`FlatEvent`]'s arenas, so
/// flattening costs a handful of allocations whatever the event's size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leaf<'e> {
    path: (u32, u32),
    trail: (u32, u32),
    pub(crate) value: Scalar<'e>,
}

/// An event taken apart once into leaves, ready to be matched against any
/// number of patterns. It borrows the event's strings.
///
/// Build one with [`FlatEvent::new`] when the same event goes through several
/// [`Pattern`](crate::Pattern)s; [`RuleSet::matches`](crate::RuleSet::matches)
/// and [`Pattern::matches`](crate::Pattern::matches) build it themselves.
#[derive(Debug, Clone, Default)]
pub struct FlatEvent<'e> {
    /// Every leaf's dotted path, one after the other.
    paths: String,
    /// Every leaf's array trail, one after the other.
    trails: Vec<ArrayPos>,
    /// Sorted by path (stable, so document order is kept within one path).
    leaves: Vec<Leaf<'e>>,
    any_arrays: bool,
}

impl<'e> FlatEvent<'e> {
    /// Flattens a JSON event. Any JSON value is accepted; a non-object has no
    /// named fields, so only patterns without positive conditions match it.
    /// Parts nested deeper than 256 levels are ignored, so that a hostile
    /// event cannot exhaust the stack.
    pub fn new(event: &'e Value) -> FlatEvent<'e> {
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
        let paths = &out.paths;
        out.leaves
            .sort_by(|a, b| slice(paths, a.path).cmp(slice(paths, b.path)));
        out
    }

    pub(crate) fn leaves(&self) -> &[Leaf<'e>] {
        &self.leaves
    }

    pub(crate) fn path(&self, leaf: &Leaf<'_>) -> &str {
        slice(&self.paths, leaf.path)
    }

    pub(crate) fn trail(&self, leaf: &Leaf<'_>) -> &[ArrayPos] {
        self.trails
            .get(leaf.trail.0 as usize..leaf.trail.1 as usize)
            .unwrap_or(&[])
    }

    pub(crate) fn has_arrays(&self) -> bool {
        self.any_arrays
    }

    /// Index range of the leaves at `path`.
    pub(crate) fn range(&self, path: &str) -> std::ops::Range<usize> {
        let start = self.leaves.partition_point(|l| self.path(l) < path);
        let end = start + self.leaves[start..].partition_point(|l| self.path(l) == path);
        start..end
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        !self.range(path).is_empty()
    }
}

fn slice(arena: &str, (start, end): (u32, u32)) -> &str {
    arena.get(start as usize..end as usize).unwrap_or("")
}

struct Walker<'a, 'e> {
    path: String,
    trail: Vec<ArrayPos>,
    next_array: u32,
    out: &'a mut FlatEvent<'e>,
}

impl<'e> Walker<'_, 'e> {
    fn visit(&mut self, key: &str, value: &'e Value, depth: usize) {
        let saved = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        self.value(value, depth);
        self.path.truncate(saved);
    }

    fn value(&mut self, value: &'e Value, depth: usize) {
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
            Value::String(s) => Scalar::Str(s),
            // Only with arbitrary precision can this fail; NaN then matches
            // nothing numeric.
            Value::Number(n) => Scalar::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Null => Scalar::Null,
        };
        let out = &mut *self.out;
        let path_start = out.paths.len() as u32;
        out.paths.push_str(&self.path);
        let trail_start = out.trails.len() as u32;
        out.trails.extend_from_slice(&self.trail);
        out.leaves.push(Leaf {
            path: (path_start, out.paths.len() as u32),
            trail: (trail_start, out.trails.len() as u32),
            value: scalar,
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
        let (va, vb) = (json!({"a": {"b": 1}}), json!({"a.b": 1}));
        let (a, b) = (FlatEvent::new(&va), FlatEvent::new(&vb));
        assert_eq!(a.path(&a.leaves()[0]), b.path(&b.leaves()[0]));
    }

    #[test]
    fn arrays_tag_their_elements() {
        let v = json!({"x": [{"a": 1, "b": 2}, {"a": 3}]});
        let e = FlatEvent::new(&v);
        let r = e.range("x.a");
        assert_eq!(r.len(), 2);
        let first = e.trail(&e.leaves()[r.start]);
        let b = e.trail(&e.leaves()[e.range("x.b").start]);
        assert!(compatible(first, b));
        assert!(!compatible(e.trail(&e.leaves()[r.start + 1]), b));
    }

    #[test]
    fn empty_arrays_and_objects_leave_nothing() {
        let v = json!({"x": [], "y": {}});
        let e = FlatEvent::new(&v);
        assert!(e.leaves().is_empty());
    }
}
