//! Deciding one branch from the leaves each of its conditions accepted.
//!
//! Shared by the single-pattern matcher and the [`RuleSet`](crate::RuleSet)
//! index: they differ only in how they find the candidate leaves.

use crate::flatten::{ArrayPos, FlatEvent, compatible};
use crate::parse::{Branch, Condition};

/// Steps the array-consistency search may take before giving up (and
/// answering "no match"). Only hostile events with huge arrays hit it.
const SEARCH_BUDGET: usize = 100_000;

/// Whether a condition accepts this leaf.
pub(crate) fn accepts(condition: &Condition, value: &crate::flatten::Scalar<'_>) -> bool {
    condition.exists_true || condition.matchers.iter().any(|m| m.matches(value))
}

/// Whether `branch` holds for `event`, given for each condition the indices
/// of the event leaves it accepts (`candidates(i)` for condition `i`).
pub(crate) fn satisfied<'c>(
    branch: &Branch,
    event: &FlatEvent<'_>,
    candidates: impl Fn(usize) -> &'c [u32],
) -> bool {
    let mut chosen: Vec<&[u32]> = Vec::new();
    for (i, condition) in branch.conditions.iter().enumerate() {
        let leaves = candidates(i);
        if !leaves.is_empty() {
            chosen.push(leaves);
        } else if !condition.exists_false || event.contains(&condition.path) {
            return false;
        }
    }
    if chosen.len() < 2 || !event.has_arrays() {
        return true;
    }
    consistent(event, &mut chosen)
}

/// Whether one leaf can be picked per condition so that no two picks come
/// from different elements of the same array.
fn consistent(event: &FlatEvent<'_>, chosen: &mut [&[u32]]) -> bool {
    let leaves = event.leaves();
    consistent_by(
        |i| leaves.get(i as usize).map_or(&[][..], |l| event.trail(l)),
        chosen,
    )
}

/// [`consistent`] over any leaves: `trail(i)` is leaf `i`'s array trail.
pub(crate) fn consistent_by<'t>(trail: impl Fn(u32) -> &'t [ArrayPos], chosen: &[&[u32]]) -> bool {
    // Conditions with a candidate outside every array constrain nothing.
    let mut constrained: Vec<&[u32]> = chosen
        .iter()
        .copied()
        .filter(|ids| !ids.is_empty() && ids.iter().all(|&i| !trail(i).is_empty()))
        .collect();
    if constrained.len() < 2 {
        return true;
    }
    constrained.sort_by_key(|ids| ids.len());
    let mut picks: Vec<u32> = Vec::with_capacity(constrained.len());
    let mut budget = SEARCH_BUDGET;
    search(&trail, &constrained, &mut picks, &mut budget)
}

fn search<'t>(
    trail: &impl Fn(u32) -> &'t [ArrayPos],
    conds: &[&[u32]],
    picks: &mut Vec<u32>,
    budget: &mut usize,
) -> bool {
    let Some(options) = conds.get(picks.len()) else {
        return true;
    };
    for &candidate in options.iter() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let mine = trail(candidate);
        if picks.iter().all(|&p| compatible(mine, trail(p))) {
            picks.push(candidate);
            if search(trail, conds, picks, budget) {
                return true;
            }
            picks.pop();
        }
    }
    false
}
