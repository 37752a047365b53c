//! Graph checks on a parsed machine: StartAt and every transition resolve inside the same
//! (sub-)machine, and every state is reachable.

use super::model::{Kind, StateMachine};
use crate::error::DefinitionError;
use std::collections::BTreeSet;

fn join(loc: &str, key: &str) -> String {
    if loc.is_empty() {
        key.to_string()
    } else {
        format!("{loc}.{key}")
    }
}

/// Checks transitions and reachability of `sm` (and, recursively, its branches and processors).
pub fn graph(sm: &StateMachine, loc: &str, errors: &mut Vec<DefinitionError>) {
    let mut err = |l: String, m: String| {
        errors.push(DefinitionError {
            location: l,
            message: m,
        })
    };
    if !sm.states.contains_key(&sm.start_at) {
        err(
            join(loc, "StartAt"),
            format!("state \"{}\" does not exist", sm.start_at),
        );
    }
    let states_loc = join(loc, "States");
    let mut nested: Vec<(String, &StateMachine)> = Vec::new();
    for (name, st) in &sm.states {
        let sloc = join(&states_loc, name);
        let mut check = |field: String, target: &str| {
            if !sm.states.contains_key(target) {
                err(field, format!("state \"{target}\" does not exist"));
            }
        };
        if let Some(n) = &st.next {
            check(join(&sloc, "Next"), n);
        }
        for (i, c) in st.catch.iter().enumerate() {
            check(format!("{sloc}.Catch[{i}].Next"), &c.next);
        }
        match &st.kind {
            Kind::Choice { choices, default } => {
                for (i, c) in choices.iter().enumerate() {
                    check(format!("{sloc}.Choices[{i}].Next"), &c.next);
                }
                if let Some(d) = default {
                    check(join(&sloc, "Default"), d);
                }
            }
            Kind::Parallel { branches } => {
                for (i, b) in branches.iter().enumerate() {
                    nested.push((format!("{sloc}.Branches[{i}]"), b));
                }
            }
            Kind::Map(m) => nested.push((join(&sloc, "ItemProcessor"), &m.processor)),
            _ => {}
        }
    }
    // Reachability from StartAt.
    let mut seen = BTreeSet::new();
    let mut stack = vec![sm.start_at.as_str()];
    while let Some(n) = stack.pop() {
        let Some(st) = sm.states.get(n) else { continue };
        if !seen.insert(n) {
            continue;
        }
        stack.extend(st.next.as_deref());
        stack.extend(st.catch.iter().map(|c| c.next.as_str()));
        if let Kind::Choice { choices, default } = &st.kind {
            stack.extend(choices.iter().map(|c| c.next.as_str()));
            stack.extend(default.as_deref());
        }
    }
    for name in sm.states.keys() {
        if !seen.contains(name.as_str()) && sm.states.contains_key(&sm.start_at) {
            err(
                join(&states_loc, name),
                "state is not reachable from StartAt".into(),
            );
        }
    }
    for (l, m) in nested {
        graph(m, &l, errors);
    }
}
