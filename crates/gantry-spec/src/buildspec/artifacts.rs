//! What a build leaves behind: `artifacts` (§1.9), `reports` (§1.8) and
//! `cache` (§1.10).

use super::model::{Artifacts, Cache, CacheAction, ReportFormat, ReportGroup, SecondaryArtifact};
use super::read::{self, Cx, Field, fields, join, user_map};
use crate::span::{Span, Spanned};
use crate::yaml::{Kind, Node, shorten};

const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
const REPORT_KEYS: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const CACHE_KEYS: &[&str] = &["paths", "key", "fallback-keys", "action"];

/// CodeBuild's limit on report groups per project.
const MAX_REPORT_GROUPS: usize = 5;
/// CodeBuild's limit on `cache.fallback-keys`.
const MAX_FALLBACK_KEYS: usize = 5;

/// Reads an `artifacts` block (`primary`), or one `secondary-artifacts` entry.
pub(super) fn artifacts(
    cx: &mut Cx,
    at: Span,
    node: &Node,
    path: &str,
    primary: bool,
) -> Option<Artifacts> {
    let keys = if primary {
        ARTIFACT_KEYS
    } else {
        // A secondary artifact cannot nest more secondary artifacts.
        &ARTIFACT_KEYS[..ARTIFACT_KEYS.len() - 1]
    };
    let block = fields(cx, node, at, path, keys)?;
    // `files` is required even when only secondary artifacts are wanted.
    let files = block
        .require(cx, "files")
        .map(|f| globs(cx, f.value, &join(path, "files")));
    let secondary = match block.get("secondary-artifacts") {
        Some(f) => secondaries(cx, f.value, &join(path, "secondary-artifacts")),
        None => Vec::new(),
    };
    Some(Artifacts {
        span: at,
        files: files?,
        name: read::opt_text(cx, &block, "name", "an artifact name"),
        discard_paths: read::flag(cx, &block, "discard-paths"),
        base_directory: read::opt_text(cx, &block, "base-directory", "a directory"),
        exclude_paths: block
            .get("exclude-paths")
            .map(|f| globs(cx, f.value, &join(path, "exclude-paths")))
            .unwrap_or_default(),
        enable_symlinks: read::flag(cx, &block, "enable-symlinks"),
        s3_prefix: read::opt_text(cx, &block, "s3-prefix", "a prefix"),
        secondary,
    })
}

fn secondaries(cx: &mut Cx, node: &Node, path: &str) -> Vec<SecondaryArtifact> {
    user_map(cx, node, path)
        .into_iter()
        .filter_map(|(identifier, value)| {
            let item_path = join(path, &identifier.value);
            let artifacts = artifacts(cx, identifier.span, value, &item_path, false)?;
            Some(SecondaryArtifact {
                identifier,
                artifacts,
            })
        })
        .collect()
}

/// A list of paths or globs. A single path written without a list is
/// accepted too: the docs show `exclude-paths: excluded paths` that way.
fn globs(cx: &mut Cx, node: &Node, path: &str) -> Vec<Spanned<String>> {
    match &node.kind {
        Kind::Scalar(s) if !node.is_null() => vec![Spanned::new(s.text.clone(), node.span)],
        _ => read::list(cx, node, path, "path"),
    }
}

/// Reads `reports`.
pub(super) fn reports(cx: &mut Cx, field: Field<'_>) -> Vec<ReportGroup> {
    let mut out = Vec::new();
    for (i, (name, value)) in user_map(cx, field.value, "reports").into_iter().enumerate() {
        if i == MAX_REPORT_GROUPS {
            cx.error(
                name.span,
                format!("`reports`: at most {MAX_REPORT_GROUPS} report groups are allowed; `{}` is the 6th", shorten(&name.value)),
            );
        }
        let path = join("reports", &name.value);
        let Some(block) = fields(cx, value, name.span, &path, REPORT_KEYS) else {
            continue;
        };
        let files = block
            .require(cx, "files")
            .map(|f| globs(cx, f.value, &join(&path, "files")));
        let file_format = match block.get("file-format") {
            None => Some(Spanned::new(ReportFormat::JunitXml, name.span)),
            Some(f) => report_format(cx, f.value, &join(&path, "file-format")),
        };
        let group = ReportGroup {
            base_directory: read::opt_text(cx, &block, "base-directory", "a directory"),
            discard_paths: read::flag(cx, &block, "discard-paths"),
            name,
            files: files.unwrap_or_default(),
            file_format: match file_format {
                Some(f) => f,
                None => continue,
            },
        };
        out.push(group);
    }
    out
}

fn report_format(cx: &mut Cx, node: &Node, path: &str) -> Option<Spanned<ReportFormat>> {
    let all = ReportFormat::ALL.map(ReportFormat::as_str).join(", ");
    let text = read::text(cx, node, path, &format!("one of {all}"))?;
    match ReportFormat::parse(text.value.trim()) {
        Some(format) => Some(Spanned::new(format, text.span)),
        None => {
            cx.error(
                text.span,
                format!(
                    "`{path}` must be one of {all} (any case), found `{}`",
                    shorten(&text.value)
                ),
            );
            None
        }
    }
}

/// Reads `cache`.
pub(super) fn cache(cx: &mut Cx, field: Field<'_>) -> Option<Cache> {
    let block = fields(cx, field.value, field.key.span, "cache", CACHE_KEYS)?;
    let paths = block
        .require(cx, "paths")
        .map(|f| globs(cx, f.value, "cache.paths"));
    let fallback_keys = read::opt_list(cx, &block, "fallback-keys", "cache key");
    if let Some(extra) = fallback_keys.get(MAX_FALLBACK_KEYS) {
        cx.error(
            extra.span,
            format!("`cache.fallback-keys`: at most {MAX_FALLBACK_KEYS} keys are allowed"),
        );
    }
    let action = block.get("action").and_then(|f| {
        let text = read::text(cx, f.value, "cache.action", "restore or save")?;
        let action = match text.value.as_str() {
            "restore" => CacheAction::Restore,
            "save" => CacheAction::Save,
            _ => {
                cx.expected(f.value, "cache.action", "restore or save");
                return None;
            }
        };
        Some(Spanned::new(action, text.span))
    });
    Some(Cache {
        paths: paths?,
        key: read::opt_text(cx, &block, "key", "a cache key"),
        fallback_keys,
        action,
    })
}

#[cfg(test)]
#[path = "artifacts_tests.rs"]
mod tests;
