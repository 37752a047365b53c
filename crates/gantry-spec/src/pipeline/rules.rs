//! Rules that relate members to each other, as CreatePipeline applies them:
//! stage structure, unique names, artifact flow, namespaces and variable
//! references, V2-only members. Per-provider configuration is in `providers`,
//! trigger filters in `triggers`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::inner::Inner;
use super::model::*;
use super::read::{Reader, join};
use crate::span::Span;
use crate::yaml::shorten;

/// Runs every cross-member rule on a converted declaration.
pub(crate) fn check(r: &mut Reader, p: &PipelineDeclaration, prefix: &str, source: &str) {
    let cx = Context::new(p, prefix);
    stage_structure(r, &cx);
    unique_names(r, &cx);
    artifacts(r, &cx);
    namespaces(r, &cx);
    references(r, &cx, source);
    pipeline_members(r, &cx);
    super::providers::check(r, &cx, source);
    super::triggers::check(r, &cx);
}

/// The declaration with each action's place, for "runs before" questions.
pub(crate) struct Context<'p> {
    pub p: &'p PipelineDeclaration,
    pub prefix: &'p str,
    /// Every action: (stage index, action index, action).
    pub actions: Vec<(usize, usize, &'p ActionDeclaration)>,
}

impl<'p> Context<'p> {
    fn new(p: &'p PipelineDeclaration, prefix: &'p str) -> Self {
        let actions = p
            .stages
            .iter()
            .enumerate()
            .flat_map(|(s, stage)| {
                stage
                    .actions
                    .iter()
                    .enumerate()
                    .map(move |(a, x)| (s, a, x))
            })
            .collect();
        Context { p, prefix, actions }
    }

    /// `stages[S]` with the prefix.
    pub fn stage_path(&self, s: usize) -> String {
        join(self.prefix, &format!("stages[{s}]"))
    }

    /// `stages[S].actions[A]` with the prefix.
    pub fn action_path(&self, s: usize, a: usize) -> String {
        format!("{}.actions[{a}]", self.stage_path(s))
    }

    /// "action `A` (stage `S`)".
    pub fn name(&self, s: usize, action: &ActionDeclaration) -> String {
        format!(
            "action `{}` (stage `{}`)",
            action.name.value, self.p.stages[s].name.value
        )
    }
}

/// True when the action at `(s1, a)` finishes before the one at `(s2, b)`
/// starts: an earlier stage, or the same stage at a lower `runOrder`.
pub(crate) fn runs_before(
    s1: usize,
    a: &ActionDeclaration,
    s2: usize,
    b: &ActionDeclaration,
) -> bool {
    s1 < s2 || (s1 == s2 && a.run_order() < b.run_order())
}

/// The first stage holds only Source actions (at least one); no other stage holds any.
fn stage_structure(r: &mut Reader, cx: &Context<'_>) {
    for &(s, a, action) in &cx.actions {
        let category = action.action_type_id.category;
        let is_source = category.value == ActionCategory::Source;
        if s == 0 && !is_source {
            r.error(
                category.span,
                format!(
                    "the first stage may hold only Source actions; {} at `{}` is a {} action",
                    cx.name(s, action),
                    cx.action_path(s, a),
                    category.value.as_str()
                ),
            );
        } else if s > 0 && is_source {
            r.error(
                category.span,
                format!(
                    "Source actions are allowed only in the first stage; {} at `{}` is one",
                    cx.name(s, action),
                    cx.action_path(s, a)
                ),
            );
        }
    }
}

/// Stage names in the pipeline, action names in a stage, output artifact
/// names across the pipeline, pipeline variable names.
fn unique_names(r: &mut Reader, cx: &Context<'_>) {
    let mut stages: HashMap<&str, Span> = HashMap::new();
    for (s, stage) in cx.p.stages.iter().enumerate() {
        if let Some(first) = stages.insert(&stage.name.value, stage.name.span) {
            stages.insert(&stage.name.value, first);
            r.error(
                stage.name.span,
                format!(
                    "duplicate stage name `{}` at `{}.name`; stage names must be unique (first used on line {})",
                    stage.name.value,
                    cx.stage_path(s),
                    first.line
                ),
            );
        }
        let mut actions: HashMap<&str, Span> = HashMap::new();
        for (a, action) in stage.actions.iter().enumerate() {
            if let Some(first) = actions.insert(&action.name.value, action.name.span) {
                actions.insert(&action.name.value, first);
                r.error(
                    action.name.span,
                    format!(
                        "duplicate action name `{}` in stage `{}` at `{}.name`; action names must be unique within a stage (first used on line {})",
                        action.name.value,
                        stage.name.value,
                        cx.action_path(s, a),
                        first.line
                    ),
                );
            }
        }
    }
    let mut outputs: HashMap<&str, (Span, String)> = HashMap::new();
    for &(s, _, action) in &cx.actions {
        for out in action.outputs() {
            if let Some((first, by)) = outputs.get(out.name.value.as_str()) {
                r.error(
                    out.name.span,
                    format!(
                        "output artifact `{}` of {} is already produced by {by} (line {}); output artifact names must be unique in the pipeline",
                        out.name.value,
                        cx.name(s, action),
                        first.line
                    ),
                );
            } else {
                outputs.insert(&out.name.value, (out.name.span, cx.name(s, action)));
            }
        }
    }
    let mut variables: HashMap<&str, Span> = HashMap::new();
    for (i, v) in cx.p.variables.iter().flatten().enumerate() {
        if let Some(first) = variables.get(v.name.value.as_str()) {
            r.error(
                v.name.span,
                format!(
                    "duplicate pipeline variable `{}` at `{}`; first declared on line {}",
                    v.name.value,
                    join(cx.prefix, &format!("variables[{i}].name")),
                    first.line
                ),
            );
        } else {
            variables.insert(&v.name.value, v.name.span);
        }
    }
}

/// Every input artifact names an output of an action that runs before.
fn artifacts(r: &mut Reader, cx: &Context<'_>) {
    if r.incomplete {
        // A dropped action may have produced it; do not guess.
        return;
    }
    for &(s, a, action) in &cx.actions {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for (i, input) in action.inputs().iter().enumerate() {
            let name = input.name.value.as_str();
            if let Some(first) = seen.insert(name, input.name.span) {
                r.error(
                    input.name.span,
                    format!(
                        "input artifact `{name}` is listed twice in `{}.inputArtifacts` (first on line {})",
                        cx.action_path(s, a),
                        first.line
                    ),
                );
                continue;
            }
            let producer = cx
                .actions
                .iter()
                .find(|(_, _, p)| p.outputs().iter().any(|o| o.name.value == name));
            match producer {
                Some(&(ps, _, p)) if runs_before(ps, p, s, action) => {}
                Some(&(ps, _, p)) => r.error(
                    input.name.span,
                    format!(
                        "input artifact `{name}` of {} is produced by {}, which does not run before it \
                         (an input must come from an earlier stage or a lower runOrder); at `{}.inputArtifacts[{i}]`",
                        cx.name(s, action),
                        cx.name(ps, p),
                        cx.action_path(s, a)
                    ),
                ),
                None => {
                    let earlier: Vec<String> = cx
                        .actions
                        .iter()
                        .filter(|(ps, _, p)| runs_before(*ps, p, s, action))
                        .flat_map(|(_, _, p)| p.outputs().iter().map(|o| format!("`{}`", o.name.value)))
                        .collect();
                    let known = if earlier.is_empty() {
                        "no earlier action produces any".to_string()
                    } else {
                        format!("earlier outputs: {}", earlier.join(", "))
                    };
                    r.error(
                        input.name.span,
                        format!(
                            "input artifact `{name}` of {} is not produced by an earlier action; {known}",
                            cx.name(s, action)
                        ),
                    );
                }
            }
        }
    }
}

/// Namespaces reserved for CodePipeline's own variables.
const RESERVED_NAMESPACES: &[&str] = &["codepipeline", "variables"];

/// Namespaces are unique, not reserved, and not also an artifact name.
fn namespaces(r: &mut Reader, cx: &Context<'_>) {
    let mut seen: HashMap<&str, (Span, String)> = HashMap::new();
    let artifacts: HashMap<&str, String> = cx
        .actions
        .iter()
        .flat_map(|&(s, _, a)| {
            a.outputs()
                .iter()
                .map(move |o| (o.name.value.as_str(), (s, a)))
        })
        .map(|(n, (s, a))| (n, cx.name(s, a)))
        .collect();
    for &(s, a, action) in &cx.actions {
        let Some(ns) = &action.namespace else {
            continue;
        };
        let path = format!("{}.namespace", cx.action_path(s, a));
        if RESERVED_NAMESPACES.contains(&ns.value.as_str()) {
            r.error(
                ns.span,
                format!(
                    "namespace `{}` at `{path}` is reserved for CodePipeline's own variables",
                    ns.value
                ),
            );
        } else if let Some((first, by)) = seen.get(ns.value.as_str()) {
            r.error(
                ns.span,
                format!(
                    "namespace `{}` at `{path}` is already used by {by} (line {}); namespaces must be unique in the pipeline",
                    ns.value, first.line
                ),
            );
        } else if let Some(by) = artifacts.get(ns.value.as_str()) {
            r.error(
                ns.span,
                format!(
                    "namespace `{}` at `{path}` is also the name of an output artifact of {by}; a namespace must not clash with an artifact name",
                    ns.value
                ),
            );
        }
        seen.entry(&ns.value)
            .or_insert((ns.span, cx.name(s, action)));
    }
}

/// `#{...}` in a configuration value.
static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#\{([^}]*)\}").expect("a valid pattern"));

/// The variables CodePipeline itself provides under `codepipeline`.
const CODEPIPELINE_VARIABLES: &[&str] = &["PipelineExecutionId"];

/// Every `#{Namespace.Variable}` in an action's configuration names a
/// namespace of an action that runs before it, `codepipeline`, or a declared
/// pipeline variable under `variables`.
fn references(r: &mut Reader, cx: &Context<'_>, source: &str) {
    let declared: Vec<&str> =
        cx.p.variables
            .iter()
            .flatten()
            .map(|v| v.name.value.as_str())
            .collect();
    for &(s, a, action) in &cx.actions {
        let Some(config) = &action.configuration else {
            continue;
        };
        for entry in &config.entries {
            let value = &entry.value;
            if !value.value.contains("#{") {
                continue;
            }
            let mut inner: Option<Inner> = None;
            for m in REFERENCE.captures_iter(&value.value) {
                let (Some(all), Some(body)) = (m.get(0), m.get(1)) else {
                    continue;
                };
                let place = inner
                    .get_or_insert_with(|| Inner::new(source, value.span, &value.value))
                    .range(all.start(), all.end());
                let path = format!("{}.configuration.{}", cx.action_path(s, a), entry.key.value);
                if let Some(message) =
                    reference(cx, &declared, r.incomplete, s, action, body.as_str())
                {
                    r.error(place, format!("{message} (in `{path}`)"));
                }
            }
        }
    }
}

/// What is wrong with the reference `#{body}` in `action`, if anything.
fn reference(
    cx: &Context<'_>,
    declared: &[&str],
    incomplete: bool,
    s: usize,
    action: &ActionDeclaration,
    body: &str,
) -> Option<String> {
    let shown = shorten(body);
    let Some((ns, key)) = body.split_once('.') else {
        return Some(format!(
            "variable reference `#{{{shown}}}` must be `#{{Namespace.Variable}}`"
        ));
    };
    if ns.is_empty() || key.is_empty() {
        return Some(format!(
            "variable reference `#{{{shown}}}` must be `#{{Namespace.Variable}}`"
        ));
    }
    if ns == "codepipeline" {
        if CODEPIPELINE_VARIABLES.contains(&key) {
            return None;
        }
        return Some(format!(
            "`#{{{shown}}}`: the `codepipeline` namespace provides only `PipelineExecutionId`"
        ));
    }
    if ns == "variables" {
        if declared.contains(&key) {
            return None;
        }
        let known = if declared.is_empty() {
            "the pipeline declares no variables".to_string()
        } else {
            format!(
                "declared: {}",
                declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Some(format!(
            "`#{{{shown}}}` names pipeline variable `{key}`, which is not declared in `variables`; {known}"
        ));
    }
    let owner = cx
        .actions
        .iter()
        .find(|(_, _, p)| p.namespace.as_ref().is_some_and(|n| n.value == ns));
    match owner {
        Some(&(ps, _, p)) if runs_before(ps, p, s, action) => {
            let id = &p.action_type_id;
            if id.owner.value == ActionOwner::Aws && id.provider.value == "Git" {
                let keys = super::providers::GIT_VARIABLES;
                if !keys.contains(&key) {
                    return Some(format!(
                        "`#{{{shown}}}`: {} (AWS/Git) produces only {}",
                        cx.name(ps, p),
                        keys.iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            None
        }
        Some(&(ps, _, p)) => Some(format!(
            "`#{{{shown}}}` refers to namespace `{ns}` of {}, which does not run before {} \
             (variables come only from an earlier stage or a lower runOrder)",
            cx.name(ps, p),
            cx.name(s, action)
        )),
        None if incomplete => None,
        None => {
            let known: Vec<String> = cx
                .actions
                .iter()
                .filter(|(ps, _, p)| runs_before(*ps, p, s, action))
                .filter_map(|(_, _, p)| p.namespace.as_ref().map(|n| format!("`{}`", n.value)))
                .collect();
            let known = if known.is_empty() {
                "no earlier action declares a namespace".to_string()
            } else {
                format!("namespaces of earlier actions: {}", known.join(", "))
            };
            Some(format!(
                "`#{{{shown}}}` names namespace `{ns}`, which no action declares; {known}"
            ))
        }
    }
}

/// Top-level combinations: artifact stores, V2-only members, PARALLEL limits.
fn pipeline_members(r: &mut Reader, cx: &Context<'_>) {
    let p = cx.p;
    let at = |k: &str| join(cx.prefix, k);
    if let (Some(_), Some(stores)) = (&p.artifact_store, &p.artifact_stores) {
        let span = stores.first().map(|s| s.region.span).unwrap_or(p.span);
        r.error(
            span,
            format!(
                "`{}` and `{}` cannot both be given; use `artifactStores` when actions run in several Regions",
                at("artifactStore"),
                at("artifactStores")
            ),
        );
    }
    if let Some(stores) = &p.artifact_stores {
        for &(s, a, action) in &cx.actions {
            if let Some(region) = &action.region
                && !stores.iter().any(|st| st.region.value == region.value)
            {
                let known: Vec<String> = stores
                    .iter()
                    .map(|st| format!("`{}`", st.region.value))
                    .collect();
                r.error(
                    region.span,
                    format!(
                        "`{}.region` is `{}`, which has no entry in `{}` (has {})",
                        cx.action_path(s, a),
                        region.value,
                        at("artifactStores"),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
    if let Some(t) = p.pipeline_type.filter(|t| t.value == PipelineType::V1) {
        let mut v2 = |span: Span, what: String| {
            r.error(
                span,
                format!(
                    "{what} requires `pipelineType: V2`, but `{}` is V1 (line {})",
                    at("pipelineType"),
                    t.span.line
                ),
            );
        };
        if let Some(first) = p.variables.as_ref().and_then(|v| v.first()) {
            v2(first.name.span, format!("`{}`", at("variables")));
        }
        if let Some(first) = p.triggers.as_ref().and_then(|v| v.first()) {
            v2(first.span, format!("`{}`", at("triggers")));
        }
        if let Some(mode) = p
            .execution_mode
            .filter(|m| m.value != ExecutionMode::Superseded)
        {
            v2(
                mode.span,
                format!("`{}: {}`", at("executionMode"), mode_name(mode.value)),
            );
        }
        for (s, stage) in p.stages.iter().enumerate() {
            if let Some(f) = &stage.on_failure {
                v2(f.span, format!("`{}.onFailure`", cx.stage_path(s)));
            }
            if stage.on_success.is_some() || stage.before_entry.is_some() {
                let which = if stage.on_success.is_some() {
                    "onSuccess"
                } else {
                    "beforeEntry"
                };
                v2(stage.span, format!("`{}.{which}`", cx.stage_path(s)));
            }
        }
    }
    if p.execution_mode() == ExecutionMode::Parallel {
        for (s, stage) in p.stages.iter().enumerate() {
            let rollback = stage
                .on_failure
                .as_ref()
                .and_then(|f| f.result)
                .filter(|r| r.value == ConditionResult::Rollback);
            if let Some(result) = rollback {
                r.error(
                    result.span,
                    format!(
                        "`{}.onFailure.result: ROLLBACK` is not available with `executionMode: PARALLEL`",
                        cx.stage_path(s)
                    ),
                );
            }
        }
    }
}

fn mode_name(mode: ExecutionMode) -> &'static str {
    match mode {
        ExecutionMode::Queued => "QUEUED",
        ExecutionMode::Superseded => "SUPERSEDED",
        ExecutionMode::Parallel => "PARALLEL",
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
