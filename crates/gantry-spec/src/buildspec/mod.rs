//! CodeBuild's `buildspec.yml` (FORMATS-AWS.md §1): [`parse`] turns the text
//! into a checked [`Buildspec`], or into every problem found.

mod artifacts;
mod batch;
mod env;
mod model;
mod phases;
pub(crate) mod read;

pub use model::*;

use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use crate::yaml::{self, Node};
use read::{Cx, Fields, fields};

/// Problems returned at most; a generated or hostile file can have thousands.
const MAX_DIAGNOSTICS: usize = 100;

/// The top-level keys, in the order the docs list them.
const TOP_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];

/// The 0.1 spelling of `env.variables`: read (and checked against the
/// version), but not offered in "expected one of" lists.
const LEGACY_KEYS: &[&str] = &["environment_variables"];

/// Parses and checks a buildspec.
///
/// On failure, returns every problem found, sorted by position; nothing
/// partial is returned. Hostile input (huge files, deep nesting, alias bombs)
/// ends in a diagnostic too: see docs/buildspec.md for the budgets.
pub fn parse(source: &str) -> Result<Buildspec, Vec<Diagnostic>> {
    let root = match yaml::load(source, yaml::LIMITS) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![Diagnostic::new(
                start(),
                "the buildspec is empty; expected at least `version` and `phases`",
            )]);
        }
        Err(diagnostic) => return Err(vec![diagnostic]),
    };
    let mut cx = Cx::default();
    let spec = convert(&mut cx, &root);
    match spec {
        Some(spec) if cx.diags.is_empty() => Ok(spec),
        _ => {
            let mut diags = cx.diags;
            if diags.is_empty() {
                // Unreachable by construction (every `None` reports why);
                // kept so an error never comes back empty.
                diags.push(Diagnostic::new(start(), "the buildspec is invalid"));
            }
            // Stable: problems at one place keep the order they were found in.
            diags.sort_by_key(|d| (d.span.line, d.span.col));
            diags.dedup();
            if diags.len() > MAX_DIAGNOSTICS {
                let more = diags.len() - MAX_DIAGNOSTICS;
                diags.truncate(MAX_DIAGNOSTICS);
                let at = diags.last().map(|d| d.span).unwrap_or_default();
                diags.push(Diagnostic::new(at, format!("... and {more} more problems")));
            }
            Err(diags)
        }
    }
}

fn start() -> Span {
    Span {
        line: 1,
        col: 1,
        offset: 0,
        len: 0,
    }
}

/// Reads the whole document; `None` when something essential is missing
/// (the diagnostics say what).
fn convert(cx: &mut Cx, root: &Node) -> Option<Buildspec> {
    let top = read::fields_tolerating(cx, root, start(), "", TOP_KEYS, LEGACY_KEYS)?;
    let version = top
        .require(cx, "version")
        .and_then(|f| version(cx, f.value));
    let run_as = top
        .get("run-as")
        .and_then(|f| env::user(cx, f.value, "run-as"));
    let mut env = top.get("env").map(|f| env::env(cx, f)).unwrap_or_default();
    if let Some(legacy) = top.get("environment_variables") {
        legacy_env(cx, &top, legacy, version.map(|v| v.value), &mut env);
    }
    let proxy = top.get("proxy").and_then(|f| proxy(cx, f));
    let batch = top.get("batch").and_then(|f| batch::batch(cx, f));
    let phases = top.require(cx, "phases").map(|f| phases::phases(cx, f));
    let reports = top
        .get("reports")
        .map(|f| artifacts::reports(cx, f))
        .unwrap_or_default();
    let artifacts = top
        .get("artifacts")
        .and_then(|f| artifacts::artifacts(cx, f.key.span, f.value, "artifacts", true));
    let cache = top.get("cache").and_then(|f| artifacts::cache(cx, f));
    Some(Buildspec {
        version: version?,
        run_as,
        env,
        proxy,
        batch,
        phases: phases?,
        reports,
        artifacts,
        cache,
    })
}

/// `version`: `0.1` or `0.2`, written as a number or a string.
fn version(cx: &mut Cx, node: &Node) -> Option<Spanned<Version>> {
    let v = match node.scalar().map(|s| s.text.trim()) {
        Some("0.2") => Version::V0_2,
        Some("0.1") => Version::V0_1,
        _ => {
            cx.expected(node, "version", "0.1 or 0.2");
            return None;
        }
    };
    Some(Spanned::new(v, node.span))
}

/// Version 0.1's `environment_variables: { plaintext: {...} }`, which 0.2
/// renamed to `env.variables`; read into the same place.
fn legacy_env(
    cx: &mut Cx,
    top: &Fields<'_>,
    field: read::Field<'_>,
    version: Option<Version>,
    env: &mut Env,
) {
    if version == Some(Version::V0_2) {
        cx.error(
            field.key.span,
            "`environment_variables` is the version 0.1 spelling; in version 0.2 use `env` with `variables`",
        );
        return;
    }
    if top.get("env").is_some() {
        cx.error(
            field.key.span,
            "`environment_variables` and `env` cannot both be given",
        );
        return;
    }
    let Some(block) = fields(
        cx,
        field.value,
        field.key.span,
        "environment_variables",
        &["plaintext"],
    ) else {
        return;
    };
    if let Some(plain) = block.get("plaintext") {
        env.variables = env::variables(cx, plain.value, "environment_variables.plaintext");
    }
}

/// `proxy`: two booleans, both `no` by default.
fn proxy(cx: &mut Cx, field: read::Field<'_>) -> Option<Proxy> {
    let block = fields(
        cx,
        field.value,
        field.key.span,
        "proxy",
        &["upload-artifacts", "logs"],
    )?;
    Some(Proxy {
        upload_artifacts: read::flag(cx, &block, "upload-artifacts"),
        logs: read::flag(cx, &block, "logs"),
    })
}

#[cfg(test)]
mod tests;
