//! The `phases` block (FORMATS-AWS.md §1.6): the four phases, their
//! commands, and `on-failure` with its RETRY forms.

use super::model::{NamedValue, OnFailure, Phase, Phases};
use super::read::{self, Cx, Field, fields, fields_tolerating, join, user_map};
use crate::span::Spanned;
use crate::yaml::{Kind, Node, shorten};

const PHASE_NAMES: &[&str] = &["install", "pre_build", "build", "post_build"];
const PHASE_KEYS: &[&str] = &["run-as", "on-failure", "commands", "finally"];
const INSTALL_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];

/// The most retries `RETRY-<count>` allows.
const MAX_RETRIES: u32 = 100;
/// Retries for `RETRY` and `RETRY-<regex>`.
const DEFAULT_RETRIES: u32 = 3;
/// Compiled-size budget for a `RETRY-<regex>` pattern, so a hostile pattern
/// cannot make the parser build a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Reads `phases`.
pub(super) fn phases(cx: &mut Cx, field: Field<'_>) -> Phases {
    let Some(block) = fields(cx, field.value, field.key.span, "phases", PHASE_NAMES) else {
        return Phases::default();
    };
    let mut read = |name: &str| block.get(name).and_then(|f| phase(cx, name, f));
    Phases {
        install: read("install"),
        pre_build: read("pre_build"),
        build: read("build"),
        post_build: read("post_build"),
    }
}

fn phase(cx: &mut Cx, name: &str, field: Field<'_>) -> Option<Phase> {
    let path = join("phases", name);
    let install = name == "install";
    let block = if install {
        fields(cx, field.value, field.key.span, &path, INSTALL_KEYS)?
    } else {
        fields_tolerating(
            cx,
            field.value,
            field.key.span,
            &path,
            PHASE_KEYS,
            &["runtime-versions"],
        )?
    };
    let run_as = block
        .get("run-as")
        .and_then(|f| super::env::user(cx, f.value, &join(&path, "run-as")));
    let on_failure = block
        .get("on-failure")
        .and_then(|f| on_failure(cx, f.value, &join(&path, "on-failure")));
    let mut runtime_versions = Vec::new();
    if let Some(f) = block.get("runtime-versions") {
        if install {
            runtime_versions = runtimes(cx, f.value);
        } else {
            cx.error(
                f.key.span,
                format!("`runtime-versions` is only allowed in `phases.install`, not in `{path}`"),
            );
        }
    }
    // The docs make `commands` optional only for install (which may hold
    // just `runtime-versions`).
    let commands = if install {
        block.get("commands")
    } else {
        block.require(cx, "commands")
    }
    .map(|f| command_list(cx, f.value, &join(&path, "commands")))
    .unwrap_or_default();
    let finally = block
        .get("finally")
        .map(|f| command_list(cx, f.value, &join(&path, "finally")))
        .unwrap_or_default();
    Some(Phase {
        span: field.key.span,
        run_as,
        on_failure,
        runtime_versions,
        commands,
        finally,
    })
}

fn runtimes(cx: &mut Cx, node: &Node) -> Vec<NamedValue> {
    let path = "phases.install.runtime-versions";
    user_map(cx, node, path)
        .into_iter()
        .filter_map(|(name, value)| {
            // Kept as written: `python: 3.10` is "3.10", not the float 3.1.
            let value = read::text(cx, value, &join(path, &name.value), "a version")?;
            Some(NamedValue { name, value })
        })
        .collect()
}

/// A list of commands. Each item is one line of text for the shell.
pub(super) fn command_list(cx: &mut Cx, node: &Node, path: &str) -> Vec<Spanned<String>> {
    let items = match &node.kind {
        Kind::Seq(items) => items,
        _ => {
            cx.expected(node, path, "a list of commands");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match &item.kind {
            _ if item.is_null() => cx.error(
                item.span,
                format!("`{item_path}` is empty; expected a command"),
            ),
            // Numbers and booleans are kept as the text the user wrote.
            Kind::Scalar(s) => out.push(Spanned::new(s.text.clone(), item.span)),
            Kind::Map(entries) => cx.error(item.span, map_command_message(&item_path, entries)),
            Kind::Seq(_) => cx.error(
                item.span,
                format!("`{item_path}` is a list, not a command; a command is one line of text"),
            ),
        }
    }
    out
}

/// The classic buildspec mistake: `- echo a: b` is a YAML mapping. Show the
/// command as the user meant it, quoted, as CodeBuild's docs advise.
fn map_command_message(path: &str, entries: &[(Node, Node)]) -> String {
    let single = match entries {
        [(k, v)] => match (k.scalar(), v.scalar()) {
            (Some(k), Some(v)) if v.text.is_empty() => Some(format!("{}:", k.text)),
            (Some(k), Some(v)) => Some(format!("{}: {}", k.text, v.text)),
            _ => None,
        },
        _ => None,
    };
    match single {
        Some(text) => format!(
            "`{path}` is a mapping, not a command: YAML reads `{}` as `key: value` because of the `: `; quote the whole command, e.g. - '{}'",
            shorten(&text),
            shorten(&text.replace('\'', "''"))
        ),
        None => format!(
            "`{path}` is a mapping, not a command; quote commands that contain `: ` (e.g. - 'echo a: b')"
        ),
    }
}

fn on_failure(cx: &mut Cx, node: &Node, path: &str) -> Option<Spanned<OnFailure>> {
    let text = read::text(cx, node, path, "ABORT, CONTINUE or RETRY[-count][-regex]")?;
    match parse_on_failure(&text.value) {
        Ok(v) => Some(Spanned::new(v, text.span)),
        Err(why) => {
            cx.error(
                text.span,
                format!(
                    "`{path}` must be ABORT, CONTINUE or RETRY[-count][-regex], found `{}`{why}",
                    shorten(&text.value)
                ),
            );
            None
        }
    }
}

/// Parses an `on-failure` value. The error is a suffix for the message
/// ("" when the value is simply not one of the forms).
pub(crate) fn parse_on_failure(text: &str) -> Result<OnFailure, String> {
    match text {
        "ABORT" => return Ok(OnFailure::Abort),
        "CONTINUE" => return Ok(OnFailure::Continue),
        "RETRY" => {
            return Ok(OnFailure::Retry {
                count: DEFAULT_RETRIES,
                pattern: None,
            });
        }
        _ => {}
    }
    let Some(rest) = text.strip_prefix("RETRY-") else {
        let upper = text.to_ascii_uppercase();
        if upper == "ABORT" || upper == "CONTINUE" || upper.starts_with("RETRY") {
            return Err("; the keyword is upper-case".to_string());
        }
        return Err(String::new());
    };
    // `RETRY-<count>`, `RETRY-<count>-<regex>`, else the rest is a regex.
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (count, pattern) = match rest.split_at(digits) {
        (n, "") if !n.is_empty() => (Some(n), None),
        (n, tail) if !n.is_empty() && tail.starts_with('-') => (Some(n), Some(&tail[1..])),
        _ => (None, Some(rest)),
    };
    let count = match count {
        None => DEFAULT_RETRIES,
        Some(n) => match n.parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => n,
            _ => return Err(format!("; the retry count must be 0 to {MAX_RETRIES}")),
        },
    };
    let pattern = match pattern {
        None => None,
        Some("") => return Err("; the regex after `-` is empty".to_string()),
        Some(p) => {
            if let Err(e) = regex::RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                let first_line = e.to_string();
                let reason = first_line
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim()
                    .to_string();
                return Err(format!("; `{}` is not a valid regex: {reason}", shorten(p)));
            }
            Some(p.to_string())
        }
    };
    Ok(OnFailure::Retry { count, pattern })
}

#[cfg(test)]
#[path = "phases_tests.rs"]
mod tests;
