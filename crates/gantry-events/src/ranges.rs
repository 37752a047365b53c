//! `numeric` ranges on one path, found for a value by one binary search.
//!
//! The distinct ends of all ranges cut the number line into slots: below the
//! first end, each end itself, and each open interval between two ends (and
//! above the last). Every range covers a contiguous run of slots, and a
//! value falls into exactly one slot, so the ranges containing it are that
//! slot's list. Lists are precomputed unless they would grow past
//! [`MAX_ENTRIES`] (many wide, overlapping ranges); then every range is
//! tried in turn, as a value's ranges would be without the index.

use crate::matcher::{Bound, Range};

/// Slot list entries one path may hold before falling back to trying each range.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
pub(crate) struct RangeIndex {
    /// Distinct ranges and their keys.
    ranges: Vec<(Range, u32)>,
    /// Distinct range ends, ascending.
    ends: Vec<f64>,
    /// Slot `s` holds `keys[slot_start[s]..slot_start[s + 1]]`.
    slot_start: Vec<u32>,
    keys: Vec<u32>,
    /// Too many entries: try every range.
    scan: bool,
}

fn same(a: &Range, b: &Range) -> bool {
    let bits = |b: Option<Bound>| b.map(|b| (b.value.to_bits(), b.inclusive));
    bits(a.lower) == bits(b.lower) && bits(a.upper) == bits(b.upper)
}

impl RangeIndex {
    /// The key of `range`, a new one from `next_key` if it is new here.
    pub(crate) fn key(&mut self, range: &Range, next_key: impl FnOnce() -> u32) -> u32 {
        if let Some(&(_, key)) = self.ranges.iter().find(|(r, _)| same(r, range)) {
            return key;
        }
        let key = next_key();
        self.ranges.push((*range, key));
        key
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().map(|&(_, key)| key)
    }

    /// Keeps only the ranges whose keys pass `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.ranges.retain(|&(_, key)| keep(key));
    }

    /// Lays out the slots once every range is known.
    pub(crate) fn finish(&mut self) {
        let mut ends: Vec<f64> = self
            .ranges
            .iter()
            .flat_map(|(r, _)| [r.lower, r.upper])
            .flatten()
            .map(|b| b.value)
            .filter(|v| !v.is_nan())
            .collect();
        ends.sort_by(f64::total_cmp);
        ends.dedup_by(|a, b| a == b);
        self.ends = ends;
        let slots = 2 * self.ends.len() + 1;
        let spans: Vec<(usize, usize, u32)> = self
            .ranges
            .iter()
            .filter_map(|&(r, key)| self.span(&r).map(|(lo, hi)| (lo, hi, key)))
            .collect();
        let entries: usize = spans.iter().map(|&(lo, hi, _)| hi + 1 - lo).sum();
        self.scan = entries > MAX_ENTRIES;
        if self.scan {
            return;
        }
        let mut per_slot = vec![0u32; slots + 1];
        for &(lo, hi, _) in &spans {
            for slot in lo..=hi {
                per_slot[slot + 1] += 1;
            }
        }
        for s in 0..slots {
            per_slot[s + 1] += per_slot[s];
        }
        let mut fill = per_slot.clone();
        self.keys = vec![0; entries];
        for &(lo, hi, key) in &spans {
            for next in &mut fill[lo..=hi] {
                self.keys[*next as usize] = key;
                *next += 1;
            }
        }
        self.slot_start = per_slot;
    }

    /// The slot of a bound's value itself (the value is one of `ends`).
    fn end_slot(&self, value: f64) -> usize {
        2 * self.ends.partition_point(|&e| e < value) + 1
    }

    /// First and last slot `range` covers, or `None` if it covers none.
    fn span(&self, range: &Range) -> Option<(usize, usize)> {
        let lo = match range.lower {
            None => 0,
            Some(b) if b.inclusive => self.end_slot(b.value),
            Some(b) => self.end_slot(b.value) + 1,
        };
        let hi = match range.upper {
            None => 2 * self.ends.len(),
            Some(b) if b.inclusive => self.end_slot(b.value),
            Some(b) => self.end_slot(b.value) - 1,
        };
        (lo <= hi).then_some((lo, hi))
    }

    /// Reports the key of every range containing `x`.
    pub(crate) fn lookup(&self, x: f64, out: &mut impl FnMut(u32)) {
        if self.ranges.is_empty() || x.is_nan() {
            return;
        }
        if self.scan {
            for (range, key) in &self.ranges {
                if range.contains(x) {
                    out(*key);
                }
            }
            return;
        }
        let i = self.ends.partition_point(|&e| e < x);
        let slot = if self.ends.get(i) == Some(&x) {
            2 * i + 1
        } else {
            2 * i
        };
        if let (Some(&lo), Some(&hi)) = (self.slot_start.get(slot), self.slot_start.get(slot + 1)) {
            self.keys[lo as usize..hi as usize]
                .iter()
                .for_each(|&k| out(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(value: f64, inclusive: bool) -> Option<Bound> {
        Some(Bound { value, inclusive })
    }

    fn found(index: &RangeIndex, x: f64) -> Vec<u32> {
        let mut keys = Vec::new();
        index.lookup(x, &mut |k| keys.push(k));
        keys.sort_unstable();
        keys
    }

    #[test]
    fn slots_agree_with_the_ranges() {
        let ranges = [
            Range {
                lower: bound(0.0, false),
                upper: bound(5.0, true),
            },
            Range {
                lower: bound(5.0, true),
                upper: None,
            },
            Range {
                lower: None,
                upper: bound(0.0, true),
            },
            Range {
                lower: bound(2.0, true),
                upper: bound(2.0, true),
            },
            Range {
                lower: bound(3.0, false),
                upper: bound(3.0, false),
            },
        ];
        let mut index = RangeIndex::default();
        let mut next = 0;
        for r in &ranges {
            index.key(r, || {
                next += 1;
                next - 1
            });
        }
        index.finish();
        assert!(!index.scan);
        for x in [-1.0, -0.0, 0.0, 0.5, 2.0, 2.5, 3.0, 5.0, 5.5, 1e300] {
            let expected: Vec<u32> = (0..ranges.len() as u32)
                .filter(|&k| ranges[k as usize].contains(x))
                .collect();
            assert_eq!(found(&index, x), expected, "x = {x}");
        }
        assert!(found(&index, f64::NAN).is_empty());
    }

    #[test]
    fn too_many_entries_fall_back_to_trying_each_range() {
        let mut index = RangeIndex::default();
        // 2,000 ranges all open above: each covers most of 4,001 slots.
        for i in 0..2_000u32 {
            let r = Range {
                lower: bound(f64::from(i), true),
                upper: None,
            };
            index.key(&r, || i);
        }
        index.finish();
        assert!(index.scan);
        assert_eq!(found(&index, 2.5), [0, 1, 2]);
    }
}
