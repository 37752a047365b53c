//! The action providers Gantry runs, and what each accepts: category,
//! version, configuration keys and values, artifact counts. One table entry
//! per provider; adding a provider touches this file only.

use std::sync::LazyLock;

use regex::Regex;

use super::inner::Inner;
use super::json;
use super::model::*;
use super::read::{Reader, Text, one_of};
use super::rules::Context;
use crate::buildspec::read::{did_you_mean, unknown_key_message};
use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node, shorten};

/// The (category, provider) pairs Gantry supports for owner `AWS`, version `1`.
pub const SUPPORTED_PROVIDERS: &[(&str, &str)] = &[
    ("Source", "Git"),
    ("Build", "CodeBuild"),
    ("Test", "CodeBuild"),
    ("Approval", "Manual"),
    ("Invoke", "StepFunctions"),
];

/// The output variables of an `AWS/Git` source action.
pub(crate) const GIT_VARIABLES: &[&str] =
    &["CommitId", "BranchName", "AuthorDate", "CommitMessage"];

/// What one provider accepts.
struct Provider {
    name: &'static str,
    categories: &'static [ActionCategory],
    keys: &'static [&'static str],
    required: &'static [&'static str],
    inputs: (usize, usize),
    outputs: (usize, usize),
    values: fn(&mut Reader, &Action<'_>),
}

const PROVIDERS: &[Provider] = &[
    Provider {
        name: "Git",
        categories: &[ActionCategory::Source],
        keys: &["RepositoryUrl", "BranchName", "PollForSourceChanges"],
        required: &["RepositoryUrl"],
        inputs: (0, 0),
        outputs: (1, 1),
        values: git,
    },
    Provider {
        name: "CodeBuild",
        categories: &[ActionCategory::Build, ActionCategory::Test],
        keys: &[
            "ProjectName",
            "PrimarySource",
            "EnvironmentVariables",
            "BatchEnabled",
            "CombineArtifacts",
        ],
        required: &["ProjectName"],
        inputs: (1, 5),
        outputs: (0, 5),
        values: codebuild,
    },
    Provider {
        name: "Manual",
        categories: &[ActionCategory::Approval],
        keys: &["CustomData", "ExternalEntityLink", "NotificationArn"],
        required: &[],
        inputs: (0, 0),
        outputs: (0, 0),
        values: manual,
    },
    Provider {
        name: "StepFunctions",
        categories: &[ActionCategory::Invoke],
        keys: &[
            "StateMachineArn",
            "Input",
            "InputType",
            "ExecutionNamePrefix",
        ],
        required: &["StateMachineArn"],
        inputs: (0, 1),
        outputs: (0, 1),
        values: step_functions,
    },
];

/// Artifact counts a custom action may declare (FORMATS-AWS.md §3.5).
const CUSTOM_ARTIFACTS: (usize, usize) = (0, 5);

/// One action being checked, with what its messages need.
struct Action<'a> {
    decl: &'a ActionDeclaration,
    /// `stages[S].actions[A]`.
    path: String,
    /// "action `A` (stage `S`)".
    name: String,
    source: &'a str,
}

impl Action<'_> {
    fn config(&self, key: &str) -> Option<&Spanned<String>> {
        self.decl.config(key)
    }
    fn key_path(&self, key: &str) -> String {
        format!("{}.configuration.{key}", self.path)
    }
}

/// Checks every action against its provider.
pub(crate) fn check(r: &mut Reader, cx: &Context<'_>, source: &str) {
    for &(s, a, decl) in &cx.actions {
        let action = Action {
            decl,
            path: cx.action_path(s, a),
            name: cx.name(s, decl),
            source,
        };
        let id = &decl.action_type_id;
        if let Some(t) = decl.timeout_in_minutes
            && !(id.owner.value == ActionOwner::Aws && id.provider.value == "Manual")
        {
            r.error(
                t.span,
                format!(
                    "`{}.timeoutInMinutes` applies only to manual approval actions (AWS/Manual)",
                    action.path
                ),
            );
        }
        match id.owner.value {
            ActionOwner::Custom => {
                counts(r, &action, CUSTOM_ARTIFACTS, CUSTOM_ARTIFACTS);
            }
            ActionOwner::ThirdParty => r.error(
                id.owner.span,
                format!(
                    "`{}.actionTypeId.owner: ThirdParty` is not supported; {}",
                    action.path,
                    supported()
                ),
            ),
            ActionOwner::Aws => aws(r, &action),
        }
    }
}

/// "Gantry supports ...", for unknown providers.
fn supported() -> String {
    let list: Vec<String> = SUPPORTED_PROVIDERS
        .iter()
        .map(|(c, p)| format!("{c}/AWS/{p}"))
        .collect();
    format!(
        "Gantry supports {} (version 1), and any provider with owner `Custom` (run by a job worker)",
        list.join(", ")
    )
}

fn aws(r: &mut Reader, action: &Action<'_>) {
    let id = &action.decl.action_type_id;
    let Some(provider) = PROVIDERS.iter().find(|p| p.name == id.provider.value) else {
        let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
        let mut message = format!(
            "provider `{}` at `{}.actionTypeId.provider` is not supported for owner `AWS`; {}",
            shorten(&id.provider.value),
            action.path,
            supported()
        );
        let guess = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&id.provider.value))
            .copied()
            .or_else(|| did_you_mean(&id.provider.value, &names));
        if let Some(guess) = guess {
            message.push_str(&format!("; did you mean `{guess}`?"));
        }
        r.error(id.provider.span, message);
        return;
    };
    if !provider.categories.contains(&id.category.value) {
        let names: Vec<&str> = provider.categories.iter().map(|c| c.as_str()).collect();
        r.error(
            id.category.span,
            format!(
                "provider `AWS/{}` runs in category {}, but `{}.actionTypeId.category` is `{}`",
                provider.name,
                one_of(&names),
                action.path,
                id.category.value.as_str()
            ),
        );
    }
    if id.version.value != "1" {
        r.error(
            id.version.span,
            format!(
                "`{}.actionTypeId.version` must be `1` for `AWS/{}`, found `{}`",
                action.path,
                provider.name,
                shorten(&id.version.value)
            ),
        );
    }
    if let Some(config) = &action.decl.configuration {
        for entry in &config.entries {
            if !provider.keys.contains(&entry.key.value.as_str()) {
                let message = unknown_key_message(
                    &entry.key.value,
                    &format!("{}.configuration", action.path),
                    provider.keys,
                );
                r.error(
                    entry.key.span,
                    format!("{message} (for `AWS/{}`)", provider.name),
                );
            }
        }
    }
    let config_span = action.decl.configuration.as_ref().map(|c| c.span);
    for key in provider.required {
        let unusable = r
            .unusable
            .iter()
            .any(|(span, k)| Some(*span) == config_span && k == key);
        if action.config(key).is_none() && !unusable {
            let span = action
                .decl
                .configuration
                .as_ref()
                .map(|c| c.span)
                .unwrap_or(action.decl.action_type_id.provider.span);
            r.error(
                span,
                format!(
                    "`AWS/{}` requires `configuration.{key}`; missing in {}",
                    provider.name, action.name
                ),
            );
        }
    }
    counts(r, action, provider.inputs, provider.outputs);
    (provider.values)(r, action);
}

/// Input and output artifact counts.
fn counts(r: &mut Reader, action: &Action<'_>, inputs: (usize, usize), outputs: (usize, usize)) {
    if r.misspelt.contains(&action.decl.span) {
        return;
    }
    let id = &action.decl.action_type_id;
    let kind = format!(
        "{}/{}/{}",
        id.category.value.as_str(),
        id.owner.value.as_str(),
        id.provider.value
    );
    let mut count = |n: usize, (min, max): (usize, usize), member: &str, at: Span| {
        if n >= min && n <= max {
            return;
        }
        let range = match (min, max) {
            (0, 0) => "none".to_string(),
            (a, b) if a == b => format!("exactly {a}"),
            (0, b) => format!("at most {b}"),
            (a, b) => format!("{a} to {b}"),
        };
        r.error(
            at,
            format!(
                "{} ({kind}) takes {range} `{member}`, found {n}",
                action.name
            ),
        );
    };
    let at_list = |first: Option<Span>| first.unwrap_or(id.provider.span);
    count(
        action.decl.inputs().len(),
        inputs,
        "inputArtifacts",
        at_list(action.decl.inputs().first().map(|i| i.name.span)),
    );
    count(
        action.decl.outputs().len(),
        outputs,
        "outputArtifacts",
        at_list(action.decl.outputs().first().map(|o| o.name.span)),
    );
}

/// `true` or `false`, as CodePipeline writes booleans in configuration.
fn boolean(r: &mut Reader, action: &Action<'_>, key: &str) {
    if let Some(v) = action.config(key)
        && v.value != "true"
        && v.value != "false"
    {
        r.error(
            v.span,
            format!(
                "`{}` must be `true` or `false`, found `{}`",
                action.key_path(key),
                shorten(&v.value)
            ),
        );
    }
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+|/\S*)$")
        .expect("a valid pattern")
});

fn git(r: &mut Reader, action: &Action<'_>) {
    if let Some(url) = action.config("RepositoryUrl")
        && !URL.is_match(&url.value)
    {
        r.error(
            url.span,
            format!(
                "`{}` must be a git URL (`https://...`, `ssh://...`, `file:///...`, `user@host:path` or an absolute path), found `{}`",
                action.key_path("RepositoryUrl"),
                shorten(&url.value)
            ),
        );
    }
    if let Some(branch) = action.config("BranchName")
        && let Some(why) = bad_ref_name(&branch.value)
    {
        r.error(
            branch.span,
            format!(
                "`{}` is not a valid git branch name ({why}), found `{}`",
                action.key_path("BranchName"),
                shorten(&branch.value)
            ),
        );
    }
    boolean(r, action, "PollForSourceChanges");
}

/// Why `name` is not a valid branch name (git check-ref-format's rules),
/// unless it holds a variable reference, which is resolved at run time.
fn bad_ref_name(name: &str) -> Option<&'static str> {
    if name.contains("#{") {
        return None;
    }
    if name.starts_with('-') {
        return Some("it starts with `-`");
    }
    if name.contains("..") {
        return Some("it contains `..`");
    }
    if name.contains("@{") {
        return Some("it contains `@{`");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Some("it contains a space, a control character or one of ~ ^ : ? * [ \\");
    }
    if name.ends_with('/') || name.ends_with('.') || name.ends_with(".lock") || name.contains("//")
    {
        return Some("it ends with `/`, `.` or `.lock`, or contains `//`");
    }
    None
}

fn codebuild(r: &mut Reader, action: &Action<'_>) {
    boolean(r, action, "BatchEnabled");
    boolean(r, action, "CombineArtifacts");
    let inputs = action.decl.inputs();
    match action.config("PrimarySource") {
        Some(primary) if !inputs.iter().any(|i| i.name.value == primary.value) => {
            let names: Vec<String> = inputs
                .iter()
                .map(|i| format!("`{}`", i.name.value))
                .collect();
            r.error(
                primary.span,
                format!(
                    "`{}` must name one of the action's input artifacts ({}), found `{}`",
                    action.key_path("PrimarySource"),
                    if names.is_empty() {
                        "it has none".to_string()
                    } else {
                        names.join(", ")
                    },
                    shorten(&primary.value)
                ),
            );
        }
        Some(_) => {}
        None if inputs.len() > 1 => {
            r.error(
                inputs[1].name.span,
                format!(
                    "{} has {} input artifacts, so `configuration.PrimarySource` must say which one holds the buildspec",
                    action.name,
                    inputs.len()
                ),
            );
        }
        None => {}
    }
    if let Some(value) = action.config("EnvironmentVariables") {
        environment_variables(r, action, value);
    }
}

/// CodeBuild's `EnvironmentVariables`: a JSON array, inside a string, of
/// `{name, value, type}`. Problems are reported at their place inside the
/// string when the string is written on one line.
fn environment_variables(r: &mut Reader, action: &Action<'_>, value: &Spanned<String>) {
    let path = action.key_path("EnvironmentVariables");
    let inner = Inner::new(action.source, value.span, &value.value);
    let mut nested = Reader::new(true);
    let root = match json::load(&value.value) {
        Ok(Some(root)) => root,
        Ok(None) => {
            r.error(
                value.span,
                format!(
                    "`{path}` must be a JSON array of {{name, value, type}}, found an empty string"
                ),
            );
            return;
        }
        Err(d) => {
            r.error(
                inner.at(d.span.offset),
                format!(
                    "`{path}` must be a JSON array of {{name, value, type}}: {}",
                    d.message
                ),
            );
            return;
        }
    };
    env_list(&mut nested, &root, &path);
    for Diagnostic { span, message } in nested.cx.diags {
        r.error(inner.range(span.offset, span.offset + span.len), message);
    }
}

fn env_list(r: &mut Reader, root: &Node, path: &str) {
    let Kind::Seq(items) = &root.kind else {
        r.expected(root, path, "a JSON array of {name, value, type}");
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(b) = r.block(item, item.span, &path, &["name", "value", "type"]) else {
            continue;
        };
        if let Some(name) = b
            .require(&mut r.cx, "name")
            .and_then(|f| r.string(f.value, &format!("{path}.name"), super::read::ENV_NAME))
            && name.value.starts_with("CODEBUILD_")
        {
            r.error(
                name.span,
                format!(
                    "`{path}.name`: names starting with `CODEBUILD_` are reserved for CodeBuild, found `{}`",
                    shorten(&name.value)
                ),
            );
        }
        if let Some(f) = b.require(&mut r.cx, "value") {
            r.raw_string(f.value, &format!("{path}.value"));
        }
        if let Some(f) = b.get("type") {
            r.choice(
                f.value,
                &format!("{path}.type"),
                &[
                    ("PLAINTEXT", ()),
                    ("PARAMETER_STORE", ()),
                    ("SECRETS_MANAGER", ()),
                ],
            );
        }
    }
}

static SNS_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-[\w]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")
        .expect("a valid pattern")
});

fn manual(r: &mut Reader, action: &Action<'_>) {
    if let Some(data) = action.config("CustomData") {
        r.check(data, &action.key_path("CustomData"), Text::len(1, 500));
    }
    if let Some(link) = action.config("ExternalEntityLink")
        && !(link.value.starts_with("https://") || link.value.starts_with("http://"))
    {
        r.error(
            link.span,
            format!(
                "`{}` must be an http(s) URL, found `{}`",
                action.key_path("ExternalEntityLink"),
                shorten(&link.value)
            ),
        );
    }
    // An http(s) URL is Gantry's extension: a Slack-compatible incoming
    // webhook that receives the approval's message.
    if let Some(arn) = action.config("NotificationArn")
        && !SNS_ARN.is_match(&arn.value)
        && !(arn.value.starts_with("https://") || arn.value.starts_with("http://"))
    {
        r.error(
            arn.span,
            format!(
                "`{}` must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC) or a chat webhook's http(s) URL, found `{}`",
                action.key_path("NotificationArn"),
                shorten(&arn.value)
            ),
        );
    }
}

static STATE_MACHINE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-[\w]+)*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[^\s:]+$")
        .expect("a valid pattern")
});

fn step_functions(r: &mut Reader, action: &Action<'_>) {
    if let Some(arn) = action.config("StateMachineArn")
        && !arn.value.contains("#{")
        && !STATE_MACHINE_ARN.is_match(&arn.value)
    {
        r.error(
            arn.span,
            format!(
                "`{}` must be a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME), found `{}`",
                action.key_path("StateMachineArn"),
                shorten(&arn.value)
            ),
        );
    }
    let file_path = match action.config("InputType") {
        None => false,
        Some(t) if t.value == "Literal" => false,
        Some(t) if t.value == "FilePath" => true,
        Some(t) => {
            r.error(
                t.span,
                format!(
                    "`{}` must be `Literal` or `FilePath`, found `{}`",
                    action.key_path("InputType"),
                    shorten(&t.value)
                ),
            );
            return;
        }
    };
    match action.config("Input") {
        Some(input) if !file_path => {
            // A literal input is the execution's JSON input.
            if !input.value.contains("#{")
                && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&input.value)
            {
                let inner = Inner::new(action.source, input.span, &input.value);
                let d = json::syntax_error(&input.value, &e);
                r.error(
                    inner.at(d.span.offset),
                    format!(
                        "`{}` with `InputType: Literal` must be JSON: {}",
                        action.key_path("Input"),
                        d.message.trim_start_matches("invalid JSON: ")
                    ),
                );
            }
        }
        None if file_path => r.error(
            action.config("InputType").map(|t| t.span).unwrap_or(action.decl.span),
            format!(
                "{} has `InputType: FilePath`, so `configuration.Input` must name a file in its input artifact",
                action.name
            ),
        ),
        Some(_) if action.decl.inputs().is_empty() => r.error(
            action.config("InputType").map(|t| t.span).unwrap_or(action.decl.span),
            format!(
                "{} has `InputType: FilePath`, so it needs an input artifact holding that file",
                action.name
            ),
        ),
        _ => {}
    }
    if let Some(prefix) = action.config("ExecutionNamePrefix") {
        r.check(
            prefix,
            &action.key_path("ExecutionNamePrefix"),
            Text::len(1, 65),
        );
        if prefix
            .value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
        {
            r.error(
                prefix.span,
                format!(
                    "`{}` may not contain spaces or any of < > {{ }} [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : /, found `{}`",
                    action.key_path("ExecutionNamePrefix"),
                    shorten(&prefix.value)
                ),
            );
        }
    }
}

#[cfg(test)]
#[path = "providers_tests.rs"]
mod tests;
