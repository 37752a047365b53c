//! Trigger rules: each trigger starts from a source action of this pipeline
//! (one trigger per source action), and its branch, tag and file-path
//! filters are valid globs. Counts and lengths are checked while reading.

use std::collections::HashMap;

use globset::GlobBuilder;

use super::model::*;
use super::read::{Reader, join};
use super::rules::Context;
use crate::span::{Span, Spanned};
use crate::yaml::shorten;

pub(crate) fn check(r: &mut Reader, cx: &Context<'_>) {
    let Some(triggers) = &cx.p.triggers else {
        return;
    };
    let sources: Vec<&str> = cx
        .actions
        .iter()
        .filter(|(_, _, a)| a.action_type_id.category.value == ActionCategory::Source)
        .map(|(_, _, a)| a.name.value.as_str())
        .collect();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for (t, trigger) in triggers.iter().enumerate() {
        let path = join(cx.prefix, &format!("triggers[{t}].gitConfiguration"));
        let git = &trigger.git_configuration;
        let name = &git.source_action_name;
        if !r.incomplete && !sources.contains(&name.value.as_str()) {
            let known: Vec<String> = sources.iter().map(|s| format!("`{s}`")).collect();
            r.error(
                name.span,
                format!(
                    "`{path}.sourceActionName` is `{}`, which is not a source action of this pipeline; source actions: {}",
                    shorten(&name.value),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
        }
        if let Some(first) = seen.get(name.value.as_str()) {
            r.error(
                name.span,
                format!(
                    "a second trigger for source action `{}` at `{path}.sourceActionName`; each source action takes one trigger (first on line {})",
                    shorten(&name.value),
                    first.line
                ),
            );
        } else {
            seen.insert(&name.value, name.span);
        }
        for (i, push) in git.push.iter().flatten().enumerate() {
            let path = format!("{path}.push[{i}]");
            if push.tags.is_none() && push.branches.is_none() && push.file_paths.is_none() {
                r.error(
                    push.span,
                    format!("`{path}` must give `tags`, `branches` or `filePaths`"),
                );
            }
            criteria(r, push.tags.as_ref(), &path, "tags");
            criteria(r, push.branches.as_ref(), &path, "branches");
            criteria(r, push.file_paths.as_ref(), &path, "filePaths");
        }
        for (i, pr) in git.pull_request.iter().flatten().enumerate() {
            let path = format!("{path}.pullRequest[{i}]");
            if pr.events.is_none() && pr.branches.is_none() && pr.file_paths.is_none() {
                r.error(
                    pr.span,
                    format!("`{path}` must give `events`, `branches` or `filePaths`"),
                );
            }
            let mut events: HashMap<String, Span> = HashMap::new();
            for e in pr.events.iter().flatten() {
                let key = format!("{:?}", e.value);
                if events.insert(key, e.span).is_some() {
                    r.error(e.span, format!("`{path}.events` lists an event twice"));
                }
            }
            criteria(r, pr.branches.as_ref(), &path, "branches");
            criteria(r, pr.file_paths.as_ref(), &path, "filePaths");
        }
    }
}

fn criteria(r: &mut Reader, c: Option<&GitFilterCriteria>, path: &str, name: &str) {
    let Some(c) = c else { return };
    let path = format!("{path}.{name}");
    if c.includes.is_none() && c.excludes.is_none() {
        r.error(
            c.span,
            format!("`{path}` must give `includes`, `excludes` or both"),
        );
    }
    for (list, member) in [(&c.includes, "includes"), (&c.excludes, "excludes")] {
        for (i, pattern) in list.iter().flatten().enumerate() {
            glob(r, pattern, &format!("{path}.{member}[{i}]"));
        }
    }
}

/// A filter pattern must compile as a glob (`*`, `**`, `?`, `[...]`, `{a,b}`).
fn glob(r: &mut Reader, pattern: &Spanned<String>, path: &str) {
    if let Err(e) = GlobBuilder::new(&pattern.value)
        .literal_separator(true)
        .build()
    {
        r.error(
            pattern.span,
            format!(
                "`{path}` is not a valid glob: {}, found `{}`",
                e.kind(),
                shorten(&pattern.value)
            ),
        );
    }
}

#[cfg(test)]
#[path = "triggers_tests.rs"]
mod tests;
