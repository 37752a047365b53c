//! One field path's lookup tables: from an event value at that path to the
//! *keys* it produces, one key per distinct operand the rules use there.
//!
//! Exact values, numbers, booleans, `null` and `equals-ignore-case` are one
//! hash lookup; `prefix` and `suffix` one lookup per distinct operand length;
//! `cidr` one lookup per distinct (family, mask length); `numeric` one binary
//! search ([`RangeIndex`]); `wildcard` a lookup of its literal start, then a
//! test of the few wildcards that share it. Only `anything-but` and
//! `exists: false` are left to be tested per rule.

use std::net::IpAddr;

use crate::cidr::{Cidr, ip_bits};
use crate::flatten::Scalar;
use crate::hash::Map;
use crate::matcher::{Matcher, fold};
use crate::ranges::RangeIndex;
use crate::wildcard::Wildcard;

/// Hands out key ids.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyCounter(pub(crate) u32);

impl KeyCounter {
    pub(crate) fn next(&mut self) -> u32 {
        let key = self.0;
        self.0 += 1;
        key
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PathIndex {
    /// Any leaf at the path (`exists: true`, and the anchor of conditions
    /// decided by testing).
    pub(crate) present: u32,
    /// How many conditions sit on this path: what anchoring on a key every
    /// value there produces costs.
    pub(crate) conditions: u32,
    pub(crate) strings: Map<Box<str>, u32>,
    numbers: Map<u64, u32>,
    true_key: Option<u32>,
    false_key: Option<u32>,
    null_key: Option<u32>,
    folded: Map<Box<str>, u32>,
    prefix: Affixes<u32>,
    suffix: Affixes<u32>,
    prefix_folded: Affixes<u32>,
    suffix_folded: Affixes<u32>,
    /// Per (IPv6?, mask): network → key.
    cidrs: Vec<((bool, u128), Map<u128, u32>)>,
    /// Wildcards by their literal start.
    wildcards: Affixes<Vec<(Wildcard, u32)>>,
    ranges: RangeIndex,
}

/// Entries by their text (a prefix or suffix), with the lengths that occur,
/// so a value is looked up once per distinct length rather than per character.
#[derive(Debug, Clone)]
struct Affixes<T> {
    by_text: Map<Box<str>, T>,
    lengths: Vec<usize>,
}

impl<T> Default for Affixes<T> {
    fn default() -> Self {
        Affixes {
            by_text: Map::default(),
            lengths: Vec::new(),
        }
    }
}

impl<T> Affixes<T> {
    fn entry(&mut self, text: &str, new: impl FnOnce() -> T) -> &mut T {
        if let Err(at) = self.lengths.binary_search(&text.len()) {
            self.lengths.insert(at, text.len());
        }
        self.by_text.entry(text.into()).or_insert_with(new)
    }

    fn collect<'a>(&'a self, value: &str, suffix: bool, mut out: impl FnMut(&'a T)) {
        for &len in &self.lengths {
            if len > value.len() {
                break;
            }
            let part = if suffix {
                value.get(value.len() - len..)
            } else {
                value.get(..len)
            };
            if let Some(found) = part.and_then(|part| self.by_text.get(part)) {
                out(found);
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
    pub(crate) fn new(present: u32) -> PathIndex {
        PathIndex {
            present,
            conditions: 0,
            strings: Map::default(),
            numbers: Map::default(),
            true_key: None,
            false_key: None,
            null_key: None,
            folded: Map::default(),
            prefix: Affixes::default(),
            suffix: Affixes::default(),
            prefix_folded: Affixes::default(),
            suffix_folded: Affixes::default(),
            cidrs: Vec::new(),
            wildcards: Affixes::default(),
            ranges: RangeIndex::default(),
        }
    }

    /// The key deciding `matcher` by lookup, or `None` if it must be tested
    /// against each value (`anything-but`).
    pub(crate) fn key(&mut self, matcher: &Matcher, keys: &mut KeyCounter) -> Option<u32> {
        let mut new = || keys.next();
        let key = match matcher {
            Matcher::Str(s) => *self.strings.entry(s.clone()).or_insert_with(new),
            Matcher::Num(n) => *self.numbers.entry(number_key(*n)).or_insert_with(new),
            Matcher::Bool(true) => *self.true_key.get_or_insert_with(new),
            Matcher::Bool(false) => *self.false_key.get_or_insert_with(new),
            Matcher::Null => *self.null_key.get_or_insert_with(new),
            Matcher::EqualsIgnoreCase(s) => *self.folded.entry(s.clone()).or_insert_with(new),
            Matcher::Prefix(s) => *self.prefix.entry(s, new),
            Matcher::Suffix(s) => *self.suffix.entry(s, new),
            Matcher::PrefixIgnoreCase(s) => *self.prefix_folded.entry(s, new),
            Matcher::SuffixIgnoreCase(s) => *self.suffix_folded.entry(s, new),
            Matcher::Cidr(net) => self.cidr_key(net, new),
            Matcher::Wildcard(w) => {
                let same_start = self.wildcards.entry(w.literal_prefix(), Vec::new);
                match same_start.iter().find(|(other, _)| other == w) {
                    Some(&(_, key)) => key,
                    None => {
                        let key = new();
                        same_start.push((w.clone(), key));
                        key
                    }
                }
            }
            Matcher::Numeric(range) => self.ranges.key(range, new),
            Matcher::AnythingBut(_) => return None,
        };
        Some(key)
    }

    fn cidr_key(&mut self, net: &Cidr, new: impl FnOnce() -> u32) -> u32 {
        let (v6, network, mask) = net.parts();
        let at = match self
            .cidrs
            .iter()
            .position(|(shape, _)| *shape == (v6, mask))
        {
            Some(at) => at,
            None => {
                self.cidrs.push(((v6, mask), Map::default()));
                self.cidrs.len() - 1
            }
        };
        *self.cidrs[at].1.entry(network).or_insert_with(new)
    }

    /// Keys produced by values that vary widely (numeric ranges): anchoring
    /// on one costs about as much as anchoring on `present`.
    pub(crate) fn broad_keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.keys()
    }

    /// Drops the broad keys nothing anchors on; their conditions are tested.
    pub(crate) fn keep_broad(&mut self, needed: impl Fn(u32) -> bool) {
        self.ranges.retain(needed);
    }

    /// Precomputes what needs every operand known.
    pub(crate) fn finish(&mut self) {
        self.ranges.finish();
    }

    /// Whether some key needs the value lower-cased.
    fn folds(&self) -> bool {
        !(self.folded.is_empty() && self.prefix_folded.is_empty() && self.suffix_folded.is_empty())
    }

    /// Reports every key `value` produces here (besides `present`).
    /// `folded` is a reusable buffer.
    pub(crate) fn lookup(
        &self,
        value: &Scalar<'_>,
        folded: &mut String,
        out: &mut impl FnMut(u32),
    ) {
        match value {
            Scalar::Str(s) => {
                if let Some(&key) = self.strings.get(*s) {
                    out(key);
                }
                self.prefix.collect(s, false, |&k| out(k));
                self.suffix.collect(s, true, |&k| out(k));
                if self.folds() {
                    let lower = fold_into(s, folded);
                    if let Some(&key) = self.folded.get(lower) {
                        out(key);
                    }
                    self.prefix_folded.collect(lower, false, |&k| out(k));
                    self.suffix_folded.collect(lower, true, |&k| out(k));
                }
                if !self.cidrs.is_empty()
                    && let Ok(ip) = s.parse::<IpAddr>()
                {
                    let (v6, bits) = ip_bits(ip);
                    for ((family, mask), networks) in &self.cidrs {
                        if *family == v6
                            && let Some(&key) = networks.get(&(bits & mask))
                        {
                            out(key);
                        }
                    }
                }
                if !self.wildcards.is_empty() {
                    self.wildcards.collect(s, false, |same_start| {
                        for (w, key) in same_start {
                            if w.matches(s) {
                                out(*key);
                            }
                        }
                    });
                }
            }
            Scalar::Num(n) => {
                if let Some(&key) = self.numbers.get(&number_key(*n)) {
                    out(key);
                }
                self.ranges.lookup(*n, out);
            }
            Scalar::Bool(true) => self.true_key.into_iter().for_each(&mut *out),
            Scalar::Bool(false) => self.false_key.into_iter().for_each(&mut *out),
            Scalar::Null => self.null_key.into_iter().for_each(&mut *out),
        }
    }
}

/// [`fold`], through a reused buffer when it changes anything; ASCII, the
/// common case, without allocating.
fn fold_into<'a>(s: &'a str, buffer: &'a mut String) -> &'a str {
    if s.is_ascii() {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return s;
        }
        buffer.clear();
        buffer.push_str(s);
        buffer.make_ascii_lowercase();
    } else {
        *buffer = fold(s);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_agrees_with_fold() {
        let mut buffer = String::new();
        for s in ["abc", "ABC", "aBc-1", "ÀÉÎ", "straße", "İx", ""] {
            assert_eq!(fold_into(s, &mut buffer), fold(s), "{s}");
        }
    }
}
