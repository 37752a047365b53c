//! The `env` block (FORMATS-AWS.md §1.3) and the name rules environment
//! variables share with `batch`.

use super::model::{Env, NamedValue, SecretRef, SecretVariable, Shell};
use super::read::{self, Cx, Field, fields, join, user_map};
use crate::span::Spanned;
use crate::yaml::Node;

const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
];

/// Reads `env`.
pub(super) fn env(cx: &mut Cx, field: Field<'_>) -> Env {
    let Some(block) = fields(cx, field.value, field.key.span, "env", ENV_KEYS) else {
        return Env::default();
    };
    let shell = block.get("shell").and_then(|f| shell(cx, f.value));
    let variables = block
        .get("variables")
        .map(|f| variables(cx, f.value, "env.variables"))
        .unwrap_or_default();
    let parameter_store = block
        .get("parameter-store")
        .map(|f| {
            named(
                cx,
                f.value,
                "env.parameter-store",
                "a parameter name",
                false,
            )
        })
        .unwrap_or_default();
    let secrets_manager = block
        .get("secrets-manager")
        .map(|f| secrets(cx, f.value))
        .unwrap_or_default();
    let exported_variables = block
        .get("exported-variables")
        .map(|f| exported(cx, f.value))
        .unwrap_or_default();
    let git_credential_helper = block
        .get("git-credential-helper")
        .and_then(|f| read::boolean(cx, f.value, "env.git-credential-helper"));
    Env {
        shell,
        variables,
        parameter_store,
        secrets_manager,
        exported_variables,
        git_credential_helper,
    }
}

fn shell(cx: &mut Cx, node: &Node) -> Option<Spanned<Shell>> {
    let text = read::text(cx, node, "env.shell", "bash or /bin/sh")?;
    let shell = match text.value.as_str() {
        "bash" | "/bin/bash" => Shell::Bash,
        "/bin/sh" | "sh" => Shell::Sh,
        other
            if other.eq_ignore_ascii_case("powershell.exe")
                || other.eq_ignore_ascii_case("cmd.exe") =>
        {
            cx.error(
                node.span,
                format!(
                    "`env.shell`: `{other}` is a Windows shell; Windows shells are not supported on Linux executors (use bash or /bin/sh)"
                ),
            );
            return None;
        }
        _ => {
            cx.expected(node, "env.shell", "bash or /bin/sh");
            return None;
        }
    };
    Some(Spanned::new(shell, text.span))
}

/// A map of environment variables with plain values (`env.variables`, and
/// the `variables` of batch tasks).
pub(super) fn variables(cx: &mut Cx, node: &Node, path: &str) -> Vec<NamedValue> {
    named(cx, node, path, "a value", true)
}

/// Reads `NAME: value` pairs whose names become environment variables.
fn named(cx: &mut Cx, node: &Node, path: &str, what: &str, empty_ok: bool) -> Vec<NamedValue> {
    let mut out = Vec::new();
    for (name, value) in user_map(cx, node, path) {
        let item_path = join(path, &name.value);
        let ok = check_variable_name(cx, &name, path);
        let value = if empty_ok {
            read::text_or_empty(cx, value, &item_path, what)
        } else {
            read::text(cx, value, &item_path, what)
        };
        if let (true, Some(value)) = (ok, value) {
            out.push(NamedValue { name, value });
        }
    }
    out
}

/// Names the build sets are off limits, and a name must be usable by a shell.
fn check_variable_name(cx: &mut Cx, name: &Spanned<String>, path: &str) -> bool {
    if name.value.starts_with("CODEBUILD_") {
        cx.error(
            name.span,
            format!(
                "`{}`: names starting with CODEBUILD_ are reserved",
                join(path, &name.value)
            ),
        );
        return false;
    }
    if !is_variable_name(&name.value) {
        cx.error(
            name.span,
            format!(
                "`{}`: not a valid environment variable name (empty, or contains `=`, a space or NUL)",
                join(path, &crate::yaml::shorten(&name.value))
            ),
        );
        return false;
    }
    true
}

/// What an environment can hold. Deliberately looser than a shell name
/// (`my-var` is settable even if `$my-var` cannot read it): Gantry must not
/// reject buildspecs CodeBuild runs.
pub(super) fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '=' || c == '\0' || c.is_whitespace())
}

fn secrets(cx: &mut Cx, node: &Node) -> Vec<SecretVariable> {
    let path = "env.secrets-manager";
    let mut out = Vec::new();
    for (name, value) in user_map(cx, node, path) {
        let item_path = join(path, &name.value);
        let ok = check_variable_name(cx, &name, path);
        let Some(text) = read::text(cx, value, &item_path, "a secret reference") else {
            continue;
        };
        match parse_secret_ref(&text.value) {
            Ok(reference) if ok => out.push(SecretVariable {
                name,
                reference: Spanned::new(reference, text.span),
            }),
            Ok(_) => {}
            Err(why) => cx.error(text.span, format!("`{item_path}`: {why}")),
        }
    }
    out
}

/// Parses `secret-id[:json-key[:version-stage[:version-id]]]`, where
/// `secret-id` may be an ARN (`arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`)
/// whose own colons belong to the id.
pub(crate) fn parse_secret_ref(text: &str) -> Result<SecretRef, String> {
    let parts: Vec<&str> = text.split(':').collect();
    // An ARN is exactly seven colon-separated parts; secret names cannot
    // contain a colon, so whatever follows is the optional segments.
    let (secret_id, rest) = if text.starts_with("arn:") {
        if parts.len() < 7 || parts.get(5) != Some(&"secret") {
            return Err(format!(
                "`{}` is not a Secrets Manager ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)",
                crate::yaml::shorten(text)
            ));
        }
        (parts[..7].join(":"), &parts[7..])
    } else {
        match parts.split_first() {
            Some((id, rest)) => ((*id).to_string(), rest),
            None => (String::new(), &parts[..0]),
        }
    };
    if secret_id.trim().is_empty() {
        return Err("the secret id (before the first `:`) is empty".to_string());
    }
    if rest.len() > 3 {
        return Err(format!(
            "too many `:` segments in `{}`; expected secret-id[:json-key[:version-stage[:version-id]]]",
            crate::yaml::shorten(text)
        ));
    }
    let segment = |i: usize| {
        rest.get(i)
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_string())
    };
    let reference = SecretRef {
        secret_id,
        json_key: segment(0),
        version_stage: segment(1),
        version_id: segment(2),
    };
    if reference.version_stage.is_some() && reference.version_id.is_some() {
        return Err(
            "version-stage and version-id are mutually exclusive; leave one empty (`id:key::version-id`)"
                .to_string(),
        );
    }
    Ok(reference)
}

fn exported(cx: &mut Cx, node: &Node) -> Vec<Spanned<String>> {
    let path = "env.exported-variables";
    let mut out: Vec<Spanned<String>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in read::list(cx, node, path, "variable name") {
        if name.value.starts_with("AWS_") {
            cx.error(
                name.span,
                format!(
                    "`{path}`: `{}` cannot be exported (names starting with AWS_ are reserved)",
                    name.value
                ),
            );
        } else if !is_variable_name(&name.value) {
            cx.error(
                name.span,
                format!(
                    "`{path}`: `{}` is not a valid environment variable name",
                    crate::yaml::shorten(&name.value)
                ),
            );
        } else if !seen.insert(name.value.clone()) {
            cx.error(
                name.span,
                format!("`{path}`: `{}` is listed twice", name.value),
            );
        } else {
            out.push(name);
        }
    }
    out
}

/// A `run-as` user: a Linux user name (or numeric id), nothing the shell could split.
pub(super) fn user(cx: &mut Cx, node: &Node, path: &str) -> Option<Spanned<String>> {
    let user = read::text(cx, node, path, "a Linux user name")?;
    let valid = !user.value.is_empty()
        && user.value.len() <= 256
        && !user.value.starts_with('-')
        && user
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
    if !valid {
        cx.error(
            user.span,
            format!(
                "`{path}` must be a Linux user name, found `{}`",
                crate::yaml::shorten(&user.value)
            ),
        );
        return None;
    }
    Some(user)
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
