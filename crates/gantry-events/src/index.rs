//! [`RuleSet`]: many patterns matched at once through an index over field paths and values.
//!
//! Compiling a set:
//! - every field path any rule mentions gets a small id and a place in a
//!   [`PathTree`], so an event is walked once, only where rules look;
//! - every operand a condition uses becomes a *key*, a small id, that the
//!   path's [`PathIndex`] finds for an event value by lookup (exact values,
//!   `equals-ignore-case`, `prefix`, `suffix`, `cidr`, `wildcard`,
//!   `numeric`), and "some value is present at this path" is a key too;
//! - every branch (one `$or` combination) is *anchored* on the key that
//!   fewest other conditions share, and grouped under it by up to two
//!   *guard* keys of its other conditions: only an event that produces the
//!   anchor and the guards makes the branch a candidate.
//!
//! Matching an event looks each of its leaves up once, marking the keys it
//! produces; then the groups of those keys whose guards are marked give the
//! candidates, and only they are decided: keyed conditions by their keys'
//! marks, the others (`anything-but`, `exists: false`, and ranges left out
//! of the index) by testing the values at their path. Per-event memory
//! lives in a reusable scratch whose marks are generation-stamped, so
//! nothing is cleared or allocated per rule. An event thus costs its leaves'
//! lookups plus its candidates, not the number of rules.

use std::cell::RefCell;

use serde_json::Value;

use crate::eval;
use crate::flatten::{ArrayPos, FlatEvent, Scalar};
use crate::hash::Map;
use crate::parse::{Branch, Condition};
use crate::path_index::{KeyCounter, PathIndex};
use crate::path_tree::{LeafSink, PathTree};
use crate::pattern::Pattern;

/// End of a per-path leaf chain.
const NONE: u32 = u32::MAX;

/// Builds a [`RuleSet`] from `(key, pattern)` pairs.
#[derive(Debug, Clone)]
pub struct RuleSetBuilder<K> {
    keys: Vec<K>,
    branches: Vec<(u32, Branch)>,
}

/// A fixed set of patterns, each with a caller's key, matched together.
///
/// ```
/// use gantry_events::{Pattern, RuleSet};
/// use serde_json::json;
///
/// let mut rules = RuleSet::builder();
/// rules.add("builds", &Pattern::parse(r#"{"source": ["gantry.codebuild"]}"#)?);
/// rules.add("failures", &Pattern::parse(r#"{"detail": {"state": ["FAILED"]}}"#)?);
/// let rules = rules.build();
///
/// let event = json!({"source": "gantry.codebuild", "detail": {"state": "FAILED"}});
/// assert_eq!(rules.matches(&event), [&"builds", &"failures"]);
/// # Ok::<(), gantry_events::PatternError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RuleSet<K> {
    keys: Vec<K>,
    branches: Vec<IndexedBranch>,
    conds: Vec<CompiledCond>,
    /// The keys of keyed conditions, `CompiledCond::keys` ranges into it.
    cond_keys: Vec<u32>,
    tree: PathTree,
    /// Path text → id, for events that arrive already flattened.
    path_ids: Map<Box<str>, u32>,
    paths: Vec<PathIndex>,
    /// Key id → its groups: `groups[group_start[k]..group_start[k + 1]]`.
    group_start: Vec<u32>,
    groups: Vec<Group>,
    /// Branch ids, each group's a range of it.
    anchored: Vec<u32>,
    /// Branches with nothing to anchor on (only `exists: false`, or no
    /// condition at all); decided for every event.
    floating: Vec<u32>,
    key_count: KeyCounter,
}

#[derive(Debug, Clone)]
struct IndexedBranch {
    rule: u32,
    /// Range into `RuleSet::conds`, in the order of `branch.conditions`.
    conds: (u32, u32),
    /// Some condition is decided by testing leaves, not by its keys.
    tested: bool,
    branch: Branch,
}

/// How many keys besides its anchor a branch is grouped by.
const GUARDS: usize = 2;

/// Branches anchored on one key that also need the same other keys (up to
/// [`GUARDS`], [`NONE`] for fewer): one check of those keys admits or skips
/// them all.
#[derive(Debug, Clone, Copy)]
struct Group {
    guards: [u32; GUARDS],
    branches: (u32, u32),
}

#[derive(Debug, Clone)]
struct CompiledCond {
    path: u32,
    /// Some leaf produced one of these keys (range into `cond_keys`); empty
    /// for a condition decided by testing leaves.
    keys: (u32, u32),
}

impl<K> Default for RuleSetBuilder<K> {
    fn default() -> Self {
        RuleSetBuilder {
            keys: Vec::new(),
            branches: Vec::new(),
        }
    }
}

impl<K> RuleSetBuilder<K> {
    /// Adds a pattern under `key`. The same key may be added more than once;
    /// it is then reported once per matching addition.
    pub fn add(&mut self, key: K, pattern: &Pattern) -> &mut Self {
        let rule = self.keys.len() as u32;
        self.keys.push(key);
        for branch in pattern.branches() {
            self.branches.push((rule, branch.clone()));
        }
        self
    }

    /// Compiles the index.
    pub fn build(self) -> RuleSet<K> {
        let mut set = RuleSet {
            keys: self.keys,
            branches: Vec::with_capacity(self.branches.len()),
            conds: Vec::new(),
            cond_keys: Vec::new(),
            tree: PathTree::default(),
            path_ids: Map::default(),
            paths: Vec::new(),
            group_start: Vec::new(),
            groups: Vec::new(),
            anchored: Vec::new(),
            floating: Vec::new(),
            key_count: KeyCounter::default(),
        };
        for (rule, branch) in self.branches {
            set.compile_branch(rule, branch);
        }
        set.anchor();
        for index in &mut set.paths {
            index.finish();
        }
        set
    }
}

impl<K> RuleSet<K> {
    /// Starts an empty set.
    pub fn builder() -> RuleSetBuilder<K> {
        RuleSetBuilder::default()
    }

    /// How many patterns were added.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no pattern was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn path_id(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.path_ids.get(path) {
            return id;
        }
        let id = self.paths.len() as u32;
        let present = self.key_count.next();
        self.paths.push(PathIndex::new(present));
        self.path_ids.insert(path.into(), id);
        self.tree.insert(path, id);
        id
    }

    fn compile_branch(&mut self, rule: u32, branch: Branch) {
        let first = self.conds.len() as u32;
        for condition in &branch.conditions {
            let path = self.path_id(&condition.path);
            let index = &mut self.paths[path as usize];
            index.conditions += 1;
            let keys_start = self.cond_keys.len() as u32;
            if condition.exists_false {
                // Decided by testing: absence is not a key.
            } else if condition.exists_true {
                self.cond_keys.push(index.present);
            } else {
                let keys: Option<Vec<u32>> = condition
                    .matchers
                    .iter()
                    .map(|m| index.key(m, &mut self.key_count))
                    .collect();
                self.cond_keys.extend(keys.unwrap_or_default());
            }
            self.conds.push(CompiledCond {
                path,
                keys: (keys_start, self.cond_keys.len() as u32),
            });
        }
        self.branches.push(IndexedBranch {
            rule,
            conds: (first, self.conds.len() as u32),
            tested: true,
            branch,
        });
    }

    /// Anchors each branch on its least shared key and, within that key,
    /// groups it by up to [`GUARDS`] next least shared keys of its other
    /// conditions: a branch becomes a candidate only when the event produced
    /// them all.
    ///
    /// Numeric ranges are *broad* keys: a value falls into many of them, so
    /// producing them all for every event costs more than testing the few
    /// candidates that need them. Only ranges some branch is anchored or
    /// guarded by stay in the index; conditions on the others are tested.
    fn anchor(&mut self) {
        let key_count = self.key_count.0 as usize;
        let mut uses = vec![0u32; key_count];
        for &key in &self.cond_keys {
            uses[key as usize] += 1;
        }
        let mut broad = vec![false; key_count];
        // A path's `present` key fires for every leaf there, so anchoring on
        // it costs as much as all the path's conditions; a range somewhat more.
        for index in &self.paths {
            let p = index.present as usize;
            uses[p] = uses[p].max(index.conditions);
            for key in index.broad_keys() {
                let k = key as usize;
                broad[k] = true;
                uses[k] = uses[k].max(index.conditions.saturating_mul(2));
            }
        }
        let cost =
            |keys: &[u32]| -> u64 { keys.iter().map(|&k| u64::from(uses[k as usize])).sum() };
        // (anchor key, guard keys, branch)
        let mut anchors: Vec<(u32, [u32; GUARDS], u32)> = Vec::new();
        for (id, ib) in self.branches.iter().enumerate() {
            let mut handles: Vec<(u64, &[u32])> = Vec::new();
            for (cond, condition) in self.conds[ib.conds.0 as usize..ib.conds.1 as usize]
                .iter()
                .zip(&ib.branch.conditions)
            {
                if condition.exists_false {
                    continue;
                }
                let keys = if cond.keys.0 == cond.keys.1 {
                    std::slice::from_ref(&self.paths[cond.path as usize].present)
                } else {
                    &self.cond_keys[cond.keys.0 as usize..cond.keys.1 as usize]
                };
                handles.push((cost(keys), keys));
            }
            handles.sort_by_key(|&(c, _)| c);
            let Some(&(_, first)) = handles.first() else {
                self.floating.push(id as u32);
                continue;
            };
            // Guards are single keys of other conditions, the least shared
            // first, and not ranges unless nothing else is left.
            let fits = |keys: &[u32]| keys.len() == 1 && !first.contains(&keys[0]);
            let mut guards = [NONE; GUARDS];
            let mut taken = 0;
            for (_, keys) in &handles[1..] {
                if taken < GUARDS
                    && fits(keys)
                    && !broad[keys[0] as usize]
                    && !guards.contains(&keys[0])
                {
                    guards[taken] = keys[0];
                    taken += 1;
                }
            }
            if taken == 0
                && let Some((_, keys)) = handles[1..].iter().find(|(_, keys)| fits(keys))
            {
                guards[0] = keys[0];
            }
            guards.sort_unstable();
            anchors.extend(first.iter().map(|&k| (k, guards, id as u32)));
        }
        let mut needed = vec![false; key_count];
        for (key, guards, _) in &anchors {
            for &k in std::iter::once(key).chain(guards) {
                if k != NONE {
                    needed[k as usize] = true;
                }
            }
        }
        for index in &mut self.paths {
            index.keep_broad(|key| needed[key as usize]);
        }
        for cond in &mut self.conds {
            let keys = &self.cond_keys[cond.keys.0 as usize..cond.keys.1 as usize];
            if keys
                .iter()
                .any(|&k| broad[k as usize] && !needed[k as usize])
            {
                cond.keys.1 = cond.keys.0;
            }
        }
        for ib in &mut self.branches {
            ib.tested = self.conds[ib.conds.0 as usize..ib.conds.1 as usize]
                .iter()
                .any(|c| c.keys.0 == c.keys.1);
        }
        anchors.sort_unstable();
        anchors.dedup();
        self.group_start = vec![0; self.key_count.0 as usize + 1];
        let mut at = 0;
        while at < anchors.len() {
            let (key, guards, _) = anchors[at];
            let len = anchors[at..]
                .iter()
                .take_while(|&&(k, g, _)| k == key && g == guards)
                .count();
            self.groups.push(Group {
                guards,
                branches: (at as u32, (at + len) as u32),
            });
            self.group_start[key as usize + 1] += 1;
            at += len;
        }
        for k in 0..self.key_count.0 as usize {
            self.group_start[k + 1] += self.group_start[k];
        }
        self.anchored = anchors.into_iter().map(|(_, _, b)| b).collect();
    }

    /// The keys of the patterns the event matches, in the order they were added.
    pub fn matches(&self, event: &Value) -> Vec<&K> {
        with_scratch(|scratch| {
            let mut run = Run::start(self, scratch);
            self.tree.walk(event, &mut run);
            run.finish()
        })
    }

    /// [`matches`](Self::matches) for an already flattened event.
    pub fn matches_flat(&self, event: &FlatEvent<'_>) -> Vec<&K> {
        with_scratch(|scratch| {
            let mut run = Run::start(self, scratch);
            for leaf in event.leaves() {
                if let Some(&path) = self.path_ids.get(event.path(leaf)) {
                    run.leaf(path, leaf.value, event.trail(leaf));
                }
            }
            run.finish()
        })
    }

    fn groups_of(&self, key: u32) -> &[Group] {
        let k = key as usize;
        match (self.group_start.get(k), self.group_start.get(k + 1)) {
            (Some(&lo), Some(&hi)) => &self.groups[lo as usize..hi as usize],
            _ => &[],
        }
    }
}

/// Per-event working memory, kept between events (per thread) so that
/// matching allocates nothing per rule. A mark is "set" when it holds the
/// current generation, so starting an event is one increment.
#[derive(Default)]
struct Scratch {
    generation: u32,
    /// Key id → generation it was produced in.
    key_seen: Vec<u32>,
    /// Branch id → generation it became a candidate in.
    candidate_seen: Vec<u32>,
    /// Path id → generation some leaf sat there in.
    path_seen: Vec<u32>,
    /// Path id → generation some leaf there sat inside an array.
    path_in_array: Vec<u32>,
    /// Path id → its last leaf (valid when `path_seen` is current).
    path_last: Vec<u32>,
    /// Keys the current event produced, each once.
    produced: Vec<u32>,
    candidates: Vec<u32>,
    rules: Vec<u32>,
    trails: Vec<ArrayPos>,
    folded: String,
    /// Leaves of the current event; emptied between events (the values
    /// borrow the event).
    leaves: Vec<StoredLeaf<'static>>,
}

#[derive(Debug, Clone, Copy)]
struct StoredLeaf<'e> {
    value: Scalar<'e>,
    /// Previous leaf at the same path, or [`NONE`].
    previous: u32,
    trail: (u32, u32),
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        // Only reentrant use could get here; it gets its own memory.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Moves a vector's allocation to another lifetime; it must be empty, so
/// no value outlives what it borrowed (the standard library reuses the
/// buffer in place).
fn recycle<'a, 'b>(mut leaves: Vec<StoredLeaf<'a>>) -> Vec<StoredLeaf<'b>> {
    leaves.clear();
    leaves.into_iter().map(|_| unreachable_leaf()).collect()
}

fn unreachable_leaf<'b>() -> StoredLeaf<'b> {
    StoredLeaf {
        value: Scalar::Null,
        previous: NONE,
        trail: (0, 0),
    }
}

/// Matching one event.
struct Run<'r, 's, 'e, K> {
    set: &'r RuleSet<K>,
    scratch: &'s mut Scratch,
    leaves: Vec<StoredLeaf<'e>>,
    now: u32,
    /// Some leaf sat inside an array.
    any_array: bool,
}

impl<'r, 's, 'e, K> Run<'r, 's, 'e, K> {
    fn start(set: &'r RuleSet<K>, scratch: &'s mut Scratch) -> Self {
        let fit = |v: &mut Vec<u32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0);
            }
        };
        fit(&mut scratch.key_seen, set.key_count.0 as usize);
        fit(&mut scratch.candidate_seen, set.branches.len());
        fit(&mut scratch.path_seen, set.paths.len());
        fit(&mut scratch.path_in_array, set.paths.len());
        fit(&mut scratch.path_last, set.paths.len());
        if scratch.generation == u32::MAX {
            for marks in [
                &mut scratch.key_seen,
                &mut scratch.candidate_seen,
                &mut scratch.path_seen,
                &mut scratch.path_in_array,
            ] {
                marks.fill(0);
            }
            scratch.generation = 0;
        }
        scratch.generation += 1;
        scratch.produced.clear();
        scratch.candidates.clear();
        scratch.rules.clear();
        scratch.trails.clear();
        let leaves = recycle(std::mem::take(&mut scratch.leaves));
        Run {
            set,
            now: scratch.generation,
            scratch,
            leaves,
            any_array: false,
        }
    }

    /// Records a key the event produced.
    fn produce(scratch: &mut Scratch, now: u32, key: u32) {
        let k = key as usize;
        if scratch.key_seen[k] != now {
            scratch.key_seen[k] = now;
            scratch.produced.push(key);
        }
    }

    /// The branches anchored on produced keys whose guard keys were produced too.
    fn gather_candidates(&mut self) {
        let (set, scratch, now) = (self.set, &mut *self.scratch, self.now);
        for &key in &scratch.produced {
            for group in set.groups_of(key) {
                if group
                    .guards
                    .iter()
                    .any(|&g| g != NONE && scratch.key_seen[g as usize] != now)
                {
                    continue;
                }
                for &branch in &set.anchored[group.branches.0 as usize..group.branches.1 as usize] {
                    let b = branch as usize;
                    if scratch.candidate_seen[b] != now {
                        scratch.candidate_seen[b] = now;
                        scratch.candidates.push(branch);
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Vec<&'r K> {
        self.gather_candidates();
        let set = self.set;
        let candidates = std::mem::take(&mut self.scratch.candidates);
        for &branch in candidates.iter().chain(&set.floating) {
            let ib = &set.branches[branch as usize];
            if self.decide(ib) {
                self.scratch.rules.push(ib.rule);
            }
        }
        self.scratch.candidates = candidates;
        let rules = &mut self.scratch.rules;
        rules.sort_unstable();
        rules.dedup();
        let found = rules.iter().map(|&r| &set.keys[r as usize]).collect();
        self.scratch.leaves = recycle(std::mem::take(&mut self.leaves));
        found
    }

    fn leaves_at(&self, path: u32) -> impl Iterator<Item = u32> + '_ {
        let p = path as usize;
        let mut at = if self.scratch.path_seen[p] == self.now {
            self.scratch.path_last[p]
        } else {
            NONE
        };
        std::iter::from_fn(move || {
            let leaf = self.leaves.get(at as usize)?;
            let this = at;
            at = leaf.previous;
            Some(this)
        })
    }

    fn accepted(&self, condition: &Condition, path: u32) -> bool {
        self.leaves_at(path)
            .any(|i| eval::accepts(condition, &self.leaves[i as usize].value))
    }

    /// Whether a candidate branch holds. Hashable conditions are checked
    /// first: each is a mark lookup, and most candidates fail one.
    fn decide(&self, ib: &IndexedBranch) -> bool {
        let scratch = &*self.scratch;
        let conds = &self.set.conds[ib.conds.0 as usize..ib.conds.1 as usize];
        for cond in conds {
            if cond.keys.0 < cond.keys.1
                && !self.set.cond_keys[cond.keys.0 as usize..cond.keys.1 as usize]
                    .iter()
                    .any(|&k| scratch.key_seen[k as usize] == self.now)
            {
                return false;
            }
        }
        if ib.tested {
            for (cond, condition) in conds.iter().zip(&ib.branch.conditions) {
                if cond.keys.0 == cond.keys.1
                    && !((condition.exists_false
                        && scratch.path_seen[cond.path as usize] != self.now)
                        || self.accepted(condition, cond.path))
                {
                    return false;
                }
            }
        }
        if !self.any_array || conds.len() < 2 {
            return true;
        }
        let arrays = conds.iter().any(|cond| {
            let p = cond.path as usize;
            scratch.path_seen[p] == self.now && scratch.path_in_array[p] == self.now
        });
        if !arrays {
            return true;
        }
        // Some accepted leaf sits in an array: one leaf per condition must
        // be chosen from compatible array elements.
        let chosen: Vec<Vec<u32>> = conds
            .iter()
            .zip(&ib.branch.conditions)
            .map(|(cond, condition)| {
                self.leaves_at(cond.path)
                    .filter(|&i| eval::accepts(condition, &self.leaves[i as usize].value))
                    .collect()
            })
            .collect();
        let lists: Vec<&[u32]> = chosen.iter().map(Vec::as_slice).collect();
        let trails = &scratch.trails;
        eval::consistent_by(
            |i| {
                self.leaves
                    .get(i as usize)
                    .and_then(|l| trails.get(l.trail.0 as usize..l.trail.1 as usize))
                    .unwrap_or(&[])
            },
            &lists,
        )
    }
}

impl<'e, K> LeafSink<'e> for Run<'_, '_, 'e, K> {
    fn leaf(&mut self, path: u32, value: Scalar<'e>, trail: &[ArrayPos]) {
        let (set, scratch, now) = (self.set, &mut *self.scratch, self.now);
        let p = path as usize;
        let previous = if scratch.path_seen[p] == now {
            scratch.path_last[p]
        } else {
            NONE
        };
        scratch.path_seen[p] = now;
        scratch.path_last[p] = self.leaves.len() as u32;
        let trail_start = scratch.trails.len() as u32;
        if !trail.is_empty() {
            self.any_array = true;
            scratch.path_in_array[p] = now;
            scratch.trails.extend_from_slice(trail);
        }
        self.leaves.push(StoredLeaf {
            value,
            previous,
            trail: (trail_start, scratch.trails.len() as u32),
        });
        let index = &set.paths[p];
        Self::produce(scratch, now, index.present);
        let mut folded = std::mem::take(&mut scratch.folded);
        index.lookup(&value, &mut folded, &mut |key| {
            Self::produce(scratch, now, key)
        });
        scratch.folded = folded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(patterns: &[Value]) -> RuleSet<usize> {
        let mut b = RuleSet::builder();
        for (i, p) in patterns.iter().enumerate() {
            b.add(i, &Pattern::from_value(p).expect("valid"));
        }
        b.build()
    }

    fn hits(rules: &RuleSet<usize>, event: &Value) -> Vec<usize> {
        let walked: Vec<usize> = rules.matches(event).into_iter().copied().collect();
        let flat: Vec<usize> = rules
            .matches_flat(&FlatEvent::new(event))
            .into_iter()
            .copied()
            .collect();
        assert_eq!(walked, flat, "walked and flattened events disagree");
        walked
    }

    #[test]
    fn operators_through_the_index() {
        let rules = set(&[
            json!({"s": ["abc"]}),
            json!({"s": [{"prefix": "ab"}]}),
            json!({"s": [{"suffix": "bc"}]}),
            json!({"s": [{"equals-ignore-case": "ABC"}]}),
            json!({"s": [{"prefix": {"equals-ignore-case": "AB"}}]}),
            json!({"s": [{"anything-but": "abc"}]}),
            json!({"s": [{"exists": false}]}),
            json!({"t": [{"exists": false}]}),
            json!({"n": [{"numeric": [">", 1]}]}),
            json!({}),
        ]);
        assert_eq!(
            hits(&rules, &json!({"s": "abc", "n": 2})),
            [0, 1, 2, 3, 4, 7, 8, 9]
        );
    }

    #[test]
    fn or_branches_report_the_rule_once() {
        let rules = set(&[json!({"$or": [{"a": [1]}, {"b": [2]}]})]);
        assert_eq!(hits(&rules, &json!({"a": 1, "b": 2})).len(), 1);
    }

    #[test]
    fn a_branch_is_anchored_on_its_rarest_key() {
        // Every rule wants source "s"; each wants its own id. Anchoring on
        // the id means an event with source "s" makes one candidate, not 50.
        let patterns: Vec<Value> = (0..50)
            .map(|i| json!({"source": ["s"], "id": [format!("id-{i}")]}))
            .collect();
        let rules = set(&patterns);
        let source = rules.paths[rules.path_ids["source"] as usize].strings["s"];
        assert!(rules.groups_of(source).is_empty());
        let event = json!({"source": "s", "id": "id-7"});
        assert_eq!(hits(&rules, &event), [7]);
        with_scratch(|scratch| {
            let mut run = Run::start(&rules, scratch);
            rules.tree.walk(&event, &mut run);
            run.gather_candidates();
            assert_eq!(run.scratch.candidates.len(), 1);
        });
    }

    #[test]
    fn array_elements_are_not_mixed_through_the_index() {
        let rules = set(&[json!({"p": {"first": ["Anna"], "last": ["Smith"]}})]);
        assert_eq!(
            hits(&rules, &json!({"p": [{"first": "Anna", "last": "Smith"}]})),
            [0]
        );
        let mixed =
            json!({"p": [{"first": "Anna", "last": "Jones"}, {"first": "Bob", "last": "Smith"}]});
        assert!(hits(&rules, &mixed).is_empty());
    }

    #[test]
    fn marks_do_not_leak_between_events_or_sets() {
        let a = set(&[json!({"x": ["1"]}), json!({"x": [{"exists": false}]})]);
        let b = set(&[json!({"y": [{"numeric": [">", 0]}]})]);
        assert_eq!(hits(&a, &json!({"x": "1"})), [0]);
        assert_eq!(hits(&b, &json!({"y": 1})), [0]);
        assert_eq!(hits(&a, &json!({"z": "1"})), [1]);
        assert!(hits(&b, &json!({"y": 0})).is_empty());
    }

    #[test]
    fn generation_wrap_clears_marks() {
        let rules = set(&[json!({"x": ["1"]})]);
        assert_eq!(hits(&rules, &json!({"x": "1"})), [0]);
        SCRATCH.with(|cell| cell.borrow_mut().generation = u32::MAX - 1);
        assert_eq!(hits(&rules, &json!({"x": "1"})), [0]);
        assert!(hits(&rules, &json!({"x": "2"})).is_empty());
        assert!(hits(&rules, &json!({"y": "1"})).is_empty());
    }
}
