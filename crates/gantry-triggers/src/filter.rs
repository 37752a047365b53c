//! Which source actions of a pipeline an event starts, by CodePipeline V2's
//! trigger rules (docs/triggers.md):
//!
//! - A source action with a trigger (`triggers[].gitConfiguration` naming
//!   it) starts when its filters say so. Several `push` (or `pullRequest`)
//!   filters are alternatives: one that holds is enough. Within a filter,
//!   every criterion given must hold.
//! - A push filter with `tags` matches tag pushes by tag name alone. Without
//!   `tags` it matches branch pushes: `branches` by branch name, `filePaths`
//!   when at least one changed file is included and not excluded.
//! - A pull-request filter matches `events` (OPEN, UPDATED, CLOSED; all
//!   three when absent), `branches` against the destination branch, and
//!   `filePaths` like a push.
//! - Each criterion: some `includes` glob matches (or there is none), and
//!   no `excludes` glob does; an exclude wins. Globs are globset's with `*`
//!   inside one path segment and `**` across segments.
//! - A source action without a trigger starts on any push to the branch its
//!   `BranchName` names (the repository's default branch when it names none).
//! - Nothing starts for a deleted ref, or for an event about another
//!   repository than the action's `RepositoryUrl` (or `FullRepositoryId`).

use gantry_spec::pipeline::{
    ActionCategory, ActionDeclaration, GitConfiguration, GitFilterCriteria, GitPullRequestFilter,
    GitPushFilter, PipelineDeclaration, PullRequestEvent,
};
use globset::{GlobBuilder, GlobMatcher};

use crate::event::{ChangedFiles, GitEvent, GitRef, PullRequest, Push};

/// Whether one source action starts an execution, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Start an execution from this source action.
    pub start: bool,
    /// The source action's name.
    pub source_action: String,
    /// Why, in words for logs and the UI (which filter matched, or why none did).
    pub reason: String,
}

/// One decision per source action of `pipeline`, in declaration order.
pub fn decide(pipeline: &PipelineDeclaration, event: &GitEvent) -> Vec<Decision> {
    evaluate(pipeline, event)
        .into_iter()
        .map(|(decision, _)| decision)
        .collect()
}

/// Whether some decision for `event` turns on a `filePaths` criterion that
/// the payload's incomplete file list cannot settle. The caller then lists
/// the changed files itself (`git diff --name-only`), hands them to
/// [`GitEvent::set_changed_files`] and calls [`decide`] again; until then
/// such a decision does not start.
pub fn needs_changed_files(pipeline: &PipelineDeclaration, event: &GitEvent) -> bool {
    evaluate(pipeline, event)
        .into_iter()
        .any(|(_, outcome)| outcome == Outcome::Unknown)
}

/// The decision of one trigger, without the repository check.
pub fn evaluate_trigger(git: &GitConfiguration, event: &GitEvent) -> Decision {
    let (outcome, reason) = trigger(git, event);
    decision(&git.source_action_name.value, outcome, reason)
}

/// The decision for a source action without a trigger (CodePipeline's
/// default change detection), without the repository check.
pub fn default_change_detection(action: &ActionDeclaration, event: &GitEvent) -> Decision {
    let (outcome, reason) = default_detection(action, event);
    decision(&action.name.value, outcome, reason)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Start,
    Skip,
    /// Would depend on files the payload did not list.
    Unknown,
}

fn decision(source_action: &str, outcome: Outcome, reason: String) -> Decision {
    Decision {
        start: outcome == Outcome::Start,
        source_action: source_action.to_string(),
        reason,
    }
}

fn evaluate(pipeline: &PipelineDeclaration, event: &GitEvent) -> Vec<(Decision, Outcome)> {
    pipeline
        .actions()
        .filter(|(_, a)| a.action_type_id.category.value == ActionCategory::Source)
        .map(|(_, action)| {
            let name = &action.name.value;
            let trigger = pipeline
                .triggers
                .iter()
                .flatten()
                .find(|t| t.git_configuration.source_action_name.value == *name);
            let (outcome, reason) = if let Some(reason) = other_repository(action, event) {
                (Outcome::Skip, reason)
            } else if let Some(trigger) = trigger {
                self::trigger(&trigger.git_configuration, event)
            } else {
                default_detection(action, event)
            };
            (decision(name, outcome, reason), outcome)
        })
        .collect()
}

/// Why the event is about another repository than the action reads, if it is.
fn other_repository(action: &ActionDeclaration, event: &GitEvent) -> Option<String> {
    let repo = event.repository()?;
    if let Some(url) = action.config("RepositoryUrl") {
        if !repo.matches_url(&url.value) {
            return Some(format!(
                "the event is for repository `{}`, but the source action reads `{}`",
                repo.full_name, url.value
            ));
        }
    } else if let Some(id) = action.config("FullRepositoryId")
        && !id.value.eq_ignore_ascii_case(&repo.full_name)
    {
        return Some(format!(
            "the event is for repository `{}`, but the source action reads `{}`",
            repo.full_name, id.value
        ));
    }
    None
}

fn trigger(git: &GitConfiguration, event: &GitEvent) -> (Outcome, String) {
    match event {
        GitEvent::Push(push) => {
            if push.deleted {
                return (
                    Outcome::Skip,
                    format!("the push deletes `{}`", push.git_ref.full()),
                );
            }
            let Some(filters) = git.push.as_deref().filter(|f| !f.is_empty()) else {
                return (
                    Outcome::Skip,
                    "the trigger has no `push` filters".to_string(),
                );
            };
            any_filter("push", filters, |f| push_filter(f, push))
        }
        GitEvent::PullRequest(pr) => {
            let Some(filters) = git.pull_request.as_deref().filter(|f| !f.is_empty()) else {
                return (
                    Outcome::Skip,
                    "the trigger has no `pullRequest` filters".to_string(),
                );
            };
            any_filter("pullRequest", filters, |f| pull_request_filter(f, pr))
        }
        GitEvent::Other(kind) => (Outcome::Skip, format!("a `{kind}` event starts nothing")),
    }
}

fn default_detection(action: &ActionDeclaration, event: &GitEvent) -> (Outcome, String) {
    if action
        .config("DetectChanges")
        .is_some_and(|v| v.value.eq_ignore_ascii_case("false"))
    {
        return (
            Outcome::Skip,
            "the source action has `DetectChanges: false` and no trigger".to_string(),
        );
    }
    let push = match event {
        GitEvent::Push(push) => push,
        GitEvent::PullRequest(_) => {
            return (
                Outcome::Skip,
                "pull requests start a pipeline only through a trigger with `pullRequest` filters"
                    .to_string(),
            );
        }
        GitEvent::Other(kind) => {
            return (Outcome::Skip, format!("a `{kind}` event starts nothing"));
        }
    };
    if push.deleted {
        return (
            Outcome::Skip,
            format!("the push deletes `{}`", push.git_ref.full()),
        );
    }
    let Some(pushed) = push.git_ref.branch() else {
        return (
            Outcome::Skip,
            format!(
                "`{}` is not a branch; without a trigger only pushes to the source action's branch start it",
                push.git_ref.full()
            ),
        );
    };
    let (wanted, whose) = match action.config("BranchName") {
        Some(branch) => (branch.value.as_str(), "the source action's `BranchName`"),
        None => match &push.repository.default_branch {
            Some(branch) => (branch.as_str(), "the repository's default branch"),
            None => {
                return (
                    Outcome::Skip,
                    "the source action names no `BranchName` and the payload no default branch"
                        .to_string(),
                );
            }
        },
    };
    if pushed == wanted {
        (
            Outcome::Start,
            format!("push to branch `{pushed}`, {whose} (no trigger)"),
        )
    } else {
        (
            Outcome::Skip,
            format!("push to branch `{pushed}`, not `{wanted}`, {whose} (no trigger)"),
        )
    }
}

/// What one filter or criterion says, and why.
enum Verdict {
    Pass(String),
    Fail(String),
    Unknown(String),
}

/// Filters are alternatives: the first that passes starts the action.
fn any_filter<F>(member: &str, filters: &[F], check: impl Fn(&F) -> Verdict) -> (Outcome, String) {
    let mut failures = Vec::new();
    let mut unknown = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        match check(filter) {
            Verdict::Pass(why) => {
                return (Outcome::Start, format!("`{member}[{i}]` matches: {why}"));
            }
            Verdict::Fail(why) => failures.push(format!("`{member}[{i}]`: {why}")),
            Verdict::Unknown(why) => unknown.push(format!("`{member}[{i}]`: {why}")),
        }
    }
    if !unknown.is_empty() {
        return (
            Outcome::Unknown,
            format!(
                "undecided until the changed files are listed: {}",
                unknown.join("; ")
            ),
        );
    }
    (
        Outcome::Skip,
        format!("no `{member}` filter matches: {}", failures.join("; ")),
    )
}

/// Every criterion must hold: the first failure decides; otherwise an
/// unknown criterion makes the whole unknown.
fn all_of(verdicts: Vec<Verdict>) -> Verdict {
    let mut passed = Vec::new();
    let mut unknown = None;
    for verdict in verdicts {
        match verdict {
            Verdict::Fail(why) => return Verdict::Fail(why),
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            Verdict::Pass(why) => passed.push(why),
        }
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => Verdict::Pass(passed.join(", ")),
    }
}

fn push_filter(filter: &GitPushFilter, push: &Push) -> Verdict {
    if let Some(tags) = &filter.tags {
        // A tag filter stands alone (CodePipeline's valid combinations are
        // tags, branches, branches + filePaths).
        return match &push.git_ref {
            GitRef::Tag(tag) => named(tags, "tag", tag),
            other => Verdict::Fail(format!("`{}` is not a tag", other.full())),
        };
    }
    let GitRef::Branch(branch) = &push.git_ref else {
        return Verdict::Fail(format!("`{}` is not a branch", push.git_ref.full()));
    };
    let mut verdicts = Vec::new();
    if let Some(branches) = &filter.branches {
        verdicts.push(named(branches, "branch", branch));
    } else {
        verdicts.push(Verdict::Pass(format!("branch `{branch}` (any branch)")));
    }
    if let Some(paths) = &filter.file_paths {
        verdicts.push(files(paths, &push.changed_files));
    }
    all_of(verdicts)
}

fn pull_request_filter(filter: &GitPullRequestFilter, pr: &PullRequest) -> Verdict {
    let mut verdicts = Vec::new();
    let event = event_name(pr.event);
    match &filter.events {
        Some(events) if !events.iter().any(|e| e.value == pr.event) => {
            let listed: Vec<String> = events
                .iter()
                .map(|e| format!("`{}`", event_name(e.value)))
                .collect();
            verdicts.push(Verdict::Fail(format!(
                "event `{event}` is not among {}",
                listed.join(", ")
            )));
        }
        Some(_) => verdicts.push(Verdict::Pass(format!("event `{event}`"))),
        None => verdicts.push(Verdict::Pass(format!("event `{event}` (any event)"))),
    }
    if let Some(branches) = &filter.branches {
        verdicts.push(named(
            branches,
            "destination branch",
            &pr.destination_branch,
        ));
    }
    if let Some(paths) = &filter.file_paths {
        verdicts.push(files(paths, &pr.changed_files));
    }
    all_of(verdicts)
}

fn event_name(event: PullRequestEvent) -> &'static str {
    match event {
        PullRequestEvent::Open => "OPEN",
        PullRequestEvent::Updated => "UPDATED",
        PullRequestEvent::Closed => "CLOSED",
    }
}

/// A criterion's globs, compiled.
struct Criterion<'c> {
    includes: Vec<(&'c str, GlobMatcher)>,
    excludes: Vec<(&'c str, GlobMatcher)>,
}

impl<'c> Criterion<'c> {
    fn compile(c: &'c GitFilterCriteria) -> Result<Criterion<'c>, String> {
        let compile = |list: &'c Option<Vec<gantry_spec::Spanned<String>>>| {
            list.iter()
                .flatten()
                .map(|p| glob(&p.value).map(|m| (p.value.as_str(), m)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Criterion {
            includes: compile(&c.includes)?,
            excludes: compile(&c.excludes)?,
        })
    }

    fn excluded_by(&self, value: &str) -> Option<&'c str> {
        first(&self.excludes, value)
    }

    /// `Ok(Some(pattern))` when an include matches, `Ok(None)` when there
    /// are no includes (everything is included), `Err(())` when none matches.
    fn included_by(&self, value: &str) -> Result<Option<&'c str>, ()> {
        if self.includes.is_empty() {
            return Ok(None);
        }
        first(&self.includes, value).map(Some).ok_or(())
    }

    fn include_list(&self) -> String {
        let quoted: Vec<String> = self
            .includes
            .iter()
            .map(|(p, _)| format!("`{p}`"))
            .collect();
        quoted.join(", ")
    }
}

/// A glob as the pipeline model validates it: `*` stays inside one path
/// segment, `**` crosses them.
fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.kind()))
}

fn first<'c>(globs: &[(&'c str, GlobMatcher)], value: &str) -> Option<&'c str> {
    globs
        .iter()
        .find(|(_, m)| m.is_match(value))
        .map(|(p, _)| *p)
}

/// A branch or tag name against a criterion.
fn named(criterion: &GitFilterCriteria, what: &str, value: &str) -> Verdict {
    let c = match Criterion::compile(criterion) {
        Ok(c) => c,
        Err(why) => return Verdict::Fail(why),
    };
    if let Some(pattern) = c.excluded_by(value) {
        return Verdict::Fail(format!("{what} `{value}` is excluded by `{pattern}`"));
    }
    match c.included_by(value) {
        Ok(None) => Verdict::Pass(format!("{what} `{value}` is not excluded")),
        Ok(Some(pattern)) => Verdict::Pass(format!("{what} `{value}` matches `{pattern}`")),
        Err(()) => Verdict::Fail(format!(
            "{what} `{value}` matches none of {}",
            c.include_list()
        )),
    }
}

/// `filePaths`: holds when at least one changed file is included and not
/// excluded.
fn files(criterion: &GitFilterCriteria, changed: &ChangedFiles) -> Verdict {
    let c = match Criterion::compile(criterion) {
        Ok(c) => c,
        Err(why) => return Verdict::Fail(why),
    };
    let mut excluded = 0;
    for path in &changed.paths {
        if c.excluded_by(path).is_some() {
            excluded += 1;
            continue;
        }
        match c.included_by(path) {
            Ok(None) => return Verdict::Pass(format!("file `{path}` is not excluded")),
            Ok(Some(pattern)) => {
                return Verdict::Pass(format!("file `{path}` matches `{pattern}`"));
            }
            Err(()) => {}
        }
    }
    if !changed.complete {
        return Verdict::Unknown(
            "no listed file matches `filePaths`, and the payload does not list every changed file"
                .to_string(),
        );
    }
    let n = changed.paths.len();
    Verdict::Fail(match (n, excluded) {
        (0, _) => "no file changed".to_string(),
        (n, e) if e == n => format!("all {n} changed files are excluded"),
        (n, 0) if !c.includes.is_empty() => {
            format!("none of {n} changed files matches {}", c.include_list())
        }
        (n, e) => format!(
            "none of {n} changed files is included and not excluded ({e} excluded; includes {})",
            c.include_list()
        ),
    })
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
