//! [`RuleSet`]: many patterns matched at once through an index over field paths and values.
//!
//! Every condition of every branch of every pattern gets an id. For each
//! field path the index keeps hash tables from exact values (and folded
//! values, prefixes, suffixes) to condition ids, plus a short list of the
//! operators that cannot be hashed (`numeric`, `cidr`, `wildcard`,
//! `anything-but`). Matching an event walks its leaves once, looks each up
//! in its path's tables and collects `(condition, leaf)` hits; only branches
//! that got a hit (or that need none, such as `exists: false` alone) are then
//! decided. Rules whose paths the event does not have are never touched.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use crate::eval;
use crate::flatten::{FlatEvent, Scalar};
use crate::matcher::{Matcher, fold};
use crate::parse::Branch;
use crate::pattern::Pattern;

/// The index's tables are keyed by pattern values and probed with event
/// values; a multiply-rotate hash (rustc's "Fx") is several times cheaper
/// than SipHash on these short keys. The keys come from the rules' authors,
/// not from events, so the flooding SipHash defends against does not apply.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds a [`RuleSet`] from `(key, pattern)` pairs.
#[derive(Debug, Clone)]
pub struct RuleSetBuilder<K> {
    set: RuleSet<K>,
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
    /// Condition id → branch index.
    cond_branch: Vec<u32>,
    /// Condition id → whether it needs a hit (it has no `exists: false`).
    cond_required: Vec<bool>,
    paths: Map<Box<str>, PathIndex>,
    /// Branches that can hold without any hit; decided for every event.
    floating: Vec<u32>,
}

#[derive(Debug, Clone)]
struct IndexedBranch {
    rule: u32,
    first_cond: u32,
    /// How many of its conditions need a hit; fewer distinct hits and the
    /// branch is skipped without being decided.
    required: u32,
    /// Every condition is required (no `exists: false`).
    simple: bool,
    branch: Branch,
}

#[derive(Debug, Clone, Default)]
struct PathIndex {
    strings: Map<Box<str>, Vec<u32>>,
    numbers: Map<u64, Vec<u32>>,
    trues: Vec<u32>,
    falses: Vec<u32>,
    nulls: Vec<u32>,
    folded: Map<Box<str>, Vec<u32>>,
    prefix: Affixes,
    suffix: Affixes,
    prefix_folded: Affixes,
    suffix_folded: Affixes,
    /// Operators that are tried one by one.
    scan: Vec<(Matcher, u32)>,
    /// `exists: true`: any leaf at the path.
    any: Vec<u32>,
}

/// Prefixes (or suffixes) by text, with the lengths that occur, so a value
/// is looked up once per distinct length rather than once per character.
#[derive(Debug, Clone, Default)]
struct Affixes {
    by_text: Map<Box<str>, Vec<u32>>,
    lengths: Vec<usize>,
}

impl Affixes {
    fn insert(&mut self, text: &str, cond: u32) {
        self.by_text.entry(text.into()).or_default().push(cond);
        if let Err(at) = self.lengths.binary_search(&text.len()) {
            self.lengths.insert(at, text.len());
        }
    }

    fn collect(&self, value: &str, suffix: bool, out: &mut impl FnMut(&[u32])) {
        for &len in &self.lengths {
            if len > value.len() {
                break;
            }
            let at = if suffix { value.len() - len } else { len };
            if !value.is_char_boundary(at) {
                continue;
            }
            let part = if suffix { &value[at..] } else { &value[..at] };
            if let Some(conds) = self.by_text.get(part) {
                out(conds);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}

fn number_key(n: f64) -> u64 {
    // -0.0 == 0.0 must hash alike.
    if n == 0.0 { 0 } else { n.to_bits() }
}

impl PathIndex {
    fn insert(&mut self, matcher: &Matcher, cond: u32) {
        match matcher {
            Matcher::Str(s) => self.strings.entry(s.clone()).or_default().push(cond),
            Matcher::Num(n) => self.numbers.entry(number_key(*n)).or_default().push(cond),
            Matcher::Bool(true) => self.trues.push(cond),
            Matcher::Bool(false) => self.falses.push(cond),
            Matcher::Null => self.nulls.push(cond),
            Matcher::EqualsIgnoreCase(s) => self.folded.entry(s.clone()).or_default().push(cond),
            Matcher::Prefix(s) => self.prefix.insert(s, cond),
            Matcher::Suffix(s) => self.suffix.insert(s, cond),
            Matcher::PrefixIgnoreCase(s) => self.prefix_folded.insert(s, cond),
            Matcher::SuffixIgnoreCase(s) => self.suffix_folded.insert(s, cond),
            other => self.scan.push((other.clone(), cond)),
        }
    }

    fn collect(&self, value: &Scalar<'_>, out: &mut impl FnMut(&[u32])) {
        match value {
            Scalar::Str(s) => {
                if let Some(conds) = self.strings.get(*s) {
                    out(conds);
                }
                self.prefix.collect(s, false, out);
                self.suffix.collect(s, true, out);
                if !(self.folded.is_empty()
                    && self.prefix_folded.is_empty()
                    && self.suffix_folded.is_empty())
                {
                    let folded = fold(s);
                    if let Some(conds) = self.folded.get(folded.as_str()) {
                        out(conds);
                    }
                    self.prefix_folded.collect(&folded, false, out);
                    self.suffix_folded.collect(&folded, true, out);
                }
            }
            Scalar::Num(n) => {
                if let Some(conds) = self.numbers.get(&number_key(*n)) {
                    out(conds);
                }
            }
            Scalar::Bool(true) => out(&self.trues),
            Scalar::Bool(false) => out(&self.falses),
            Scalar::Null => out(&self.nulls),
        }
        for (matcher, cond) in &self.scan {
            if matcher.matches(value) {
                out(std::slice::from_ref(cond));
            }
        }
        out(&self.any);
    }
}

impl<K> Default for RuleSetBuilder<K> {
    fn default() -> Self {
        RuleSetBuilder {
            set: RuleSet {
                keys: Vec::new(),
                branches: Vec::new(),
                cond_branch: Vec::new(),
                cond_required: Vec::new(),
                paths: Map::default(),
                floating: Vec::new(),
            },
        }
    }
}

impl<K> RuleSetBuilder<K> {
    /// Adds a pattern under `key`. The same key may be added more than once;
    /// it is then reported once per matching addition.
    pub fn add(&mut self, key: K, pattern: &Pattern) -> &mut Self {
        let set = &mut self.set;
        let rule = set.keys.len() as u32;
        set.keys.push(key);
        for branch in pattern.branches() {
            let branch_id = set.branches.len() as u32;
            let first_cond = set.cond_branch.len() as u32;
            let mut required = 0;
            for (i, condition) in branch.conditions.iter().enumerate() {
                let cond = first_cond + i as u32;
                set.cond_branch.push(branch_id);
                set.cond_required.push(!condition.exists_false);
                let index = set.paths.entry(condition.path.clone()).or_default();
                if condition.exists_true {
                    index.any.push(cond);
                } else {
                    for matcher in &condition.matchers {
                        index.insert(matcher, cond);
                    }
                }
                required += u32::from(!condition.exists_false);
            }
            if required == 0 {
                set.floating.push(branch_id);
            }
            set.branches.push(IndexedBranch {
                rule,
                first_cond,
                required,
                simple: required as usize == branch.conditions.len(),
                branch: branch.clone(),
            });
        }
        self
    }

    /// Freezes the set.
    pub fn build(self) -> RuleSet<K> {
        self.set
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

    /// The keys of the patterns the event matches, in the order they were added.
    pub fn matches(&self, event: &Value) -> Vec<&K> {
        self.matches_flat(&FlatEvent::new(event))
    }

    /// [`matches`](Self::matches) for an already flattened event.
    ///
    /// One pass over the leaves counts, per branch, the distinct conditions
    /// that got a hit; a branch whose count reaches its number of required
    /// conditions is complete. A complete branch with no `exists: false` and
    /// no hit inside an array matches outright; the others are decided from
    /// their hits (absence checks, array-element consistency).
    pub fn matches_flat(&self, event: &FlatEvent<'_>) -> Vec<&K> {
        let mut scratch = Scratch {
            seen: vec![false; self.cond_branch.len()],
            counts: vec![0; self.branches.len()],
            in_array: vec![false; self.branches.len()],
            complete: Vec::new(),
            hits: Vec::new(),
        };
        self.collect_hits(event, &mut scratch);
        let mut hit_leaves: Option<(Vec<u32>, Vec<u32>)> = None;
        let sorted = |hits: &mut Vec<u64>| -> (Vec<u32>, Vec<u32>) {
            hits.sort_unstable();
            hits.dedup();
            hits.iter().map(|&h| ((h >> 32) as u32, h as u32)).unzip()
        };
        let mut rules: Vec<u32> = Vec::new();
        for &branch_id in &scratch.complete {
            let ib = &self.branches[branch_id as usize];
            if ib.simple && !scratch.in_array[branch_id as usize] {
                rules.push(ib.rule);
                continue;
            }
            let (conds, leaves) = hit_leaves.get_or_insert_with(|| sorted(&mut scratch.hits));
            if self.decide(ib, event, conds, leaves) {
                rules.push(ib.rule);
            }
        }
        for &branch_id in &self.floating {
            let ib = &self.branches[branch_id as usize];
            let (conds, leaves) = hit_leaves.get_or_insert_with(|| sorted(&mut scratch.hits));
            if self.decide(ib, event, conds, leaves) {
                rules.push(ib.rule);
            }
        }
        rules.sort_unstable();
        rules.dedup();
        rules.iter().map(|&r| &self.keys[r as usize]).collect()
    }

    /// Looks every leaf up in its path's index, recording `(condition << 32) | leaf`
    /// hits and completing branches.
    fn collect_hits(&self, event: &FlatEvent<'_>, scratch: &mut Scratch) {
        let leaves = event.leaves();
        let mut start = 0;
        while start < leaves.len() {
            let path = event.path(&leaves[start]);
            let end = start + leaves[start..].partition_point(|l| event.path(l) == path);
            if let Some(index) = self.paths.get(path) {
                for (i, leaf) in leaves[start..end].iter().enumerate() {
                    let leaf_id = (start + i) as u64;
                    let in_array = !event.trail(leaf).is_empty();
                    index.collect(&leaf.value, &mut |conds: &[u32]| {
                        for &cond in conds {
                            scratch.hits.push((u64::from(cond) << 32) | leaf_id);
                            let c = cond as usize;
                            let branch = self.cond_branch[c] as usize;
                            scratch.in_array[branch] |= in_array;
                            if !scratch.seen[c] {
                                scratch.seen[c] = true;
                                if self.cond_required[c] {
                                    scratch.counts[branch] += 1;
                                    if scratch.counts[branch] == self.branches[branch].required {
                                        scratch.complete.push(branch as u32);
                                    }
                                }
                            }
                        }
                    });
                }
            }
            start = end;
        }
    }

    /// Decides a branch from the sorted hits (`conds[i]` got leaf `leaves[i]`).
    fn decide(
        &self,
        ib: &IndexedBranch,
        event: &FlatEvent<'_>,
        conds: &[u32],
        leaves: &[u32],
    ) -> bool {
        let first = ib.first_cond;
        eval::satisfied(&ib.branch, event, |i| {
            let cond = first + i as u32;
            let lo = conds.partition_point(|&c| c < cond);
            let hi = conds.partition_point(|&c| c <= cond);
            &leaves[lo..hi]
        })
    }
}

/// Per-event working memory of [`RuleSet::matches_flat`].
struct Scratch {
    /// Condition id → got a hit.
    seen: Vec<bool>,
    /// Branch id → distinct required conditions hit.
    counts: Vec<u32>,
    /// Branch id → some hit was inside an array.
    in_array: Vec<bool>,
    /// Branches whose required conditions all got a hit.
    complete: Vec<u32>,
    hits: Vec<u64>,
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
        let hits: Vec<usize> = rules
            .matches(&json!({"s": "abc", "n": 2}))
            .into_iter()
            .copied()
            .collect();
        assert_eq!(hits, [0, 1, 2, 3, 4, 7, 8, 9]);
    }

    #[test]
    fn or_branches_report_the_rule_once() {
        let rules = set(&[json!({"$or": [{"a": [1]}, {"b": [2]}]})]);
        assert_eq!(rules.matches(&json!({"a": 1, "b": 2})).len(), 1);
    }
}
