//! Which format a file is, so `gantry validate FILE` can pick the parser:
//! by the file's name first, then by its top-level keys.
//!
//! ```
//! use std::path::Path;
//! use gantry_spec::{FileKind, detect};
//!
//! assert_eq!(detect(Path::new("ci/buildspec-release.yml"), ""), FileKind::Buildspec);
//! assert_eq!(detect(Path::new("gantry.yml"), ""), FileKind::Pipeline);
//! assert_eq!(detect(Path::new("prod.pipeline.json"), ""), FileKind::Pipeline);
//! // Any other name: the content decides.
//! assert_eq!(detect(Path::new("x.yml"), "version: 0.2\nphases: {}\n"), FileKind::Buildspec);
//! assert_eq!(detect(Path::new("out.json"), r#"{"pipeline": {"stages": []}}"#), FileKind::Pipeline);
//! assert_eq!(detect(Path::new("notes.yml"), "title: hi\n"), FileKind::Unknown);
//! ```

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use crate::yaml::{self, Kind};

/// The formats `gantry validate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A CodeBuild buildspec: parse with [`crate::buildspec::parse`].
    Buildspec,
    /// A pipeline declaration, JSON or YAML: parse with [`crate::pipeline::parse`].
    Pipeline,
    /// Neither, as far as the name and the top-level keys tell.
    Unknown,
}

/// The kind of the file at `path` holding `source`.
///
/// Names: `buildspec*.yml`/`.yaml` are buildspecs; `gantry.yml`,
/// `*.gantry.yml`, `pipeline.json`, `*.pipeline.json` (and their `.yaml`/
/// `.yml` twins) are pipelines. Any other name is decided by the content:
/// top-level `phases` means a buildspec, `pipeline` or `stages` a pipeline.
pub fn detect(path: &Path, source: &str) -> FileKind {
    by_name(path).unwrap_or_else(|| by_content(source))
}

fn by_name(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    if yaml && name.starts_with("buildspec") {
        return Some(FileKind::Buildspec);
    }
    let stem = name
        .strip_suffix(".yml")
        .or_else(|| name.strip_suffix(".yaml"))
        .or_else(|| name.strip_suffix(".json"))?;
    let pipeline = |base: &str| stem == base || stem.ends_with(&format!(".{base}"));
    if pipeline("pipeline") || (yaml && pipeline("gantry")) {
        return Some(FileKind::Pipeline);
    }
    None
}

fn by_content(source: &str) -> FileKind {
    let keys = top_level_keys(source);
    let has = |k: &str| keys.iter().any(|key| key == k);
    if has("phases") {
        FileKind::Buildspec
    } else if has("pipeline") || has("stages") {
        FileKind::Pipeline
    } else {
        FileKind::Unknown
    }
}

/// A key at the start of a line (YAML) or any quoted key (JSON), for files
/// too broken to load: detection must still work on them, since that is
/// when `gantry validate` has the most to say.
static LOOSE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)^["']?([A-Za-z_][A-Za-z0-9_-]*)["']?[ \t]*:|"(pipeline|stages|phases)"[ \t]*:"#,
    )
    .expect("a valid pattern")
});

fn top_level_keys(source: &str) -> Vec<String> {
    match yaml::load(source, yaml::LIMITS) {
        Ok(Some(root)) => match root.kind {
            Kind::Map(entries) => entries
                .into_iter()
                .filter_map(|(k, _)| k.scalar().map(|s| s.text.clone()))
                .collect(),
            _ => Vec::new(),
        },
        Ok(None) => Vec::new(),
        Err(_) => LOOSE_KEY
            .captures_iter(source)
            .filter_map(|c| c.get(1).or_else(|| c.get(2)))
            .map(|m| m.as_str().to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &str, source: &str) -> FileKind {
        detect(Path::new(path), source)
    }

    #[test]
    fn names_decide_first() {
        for path in [
            "buildspec.yml",
            "BuildSpec.yaml",
            "ci/buildspec-prod.yml",
            "buildspec_test.yaml",
        ] {
            assert_eq!(kind(path, "stages: []"), FileKind::Buildspec, "{path}");
        }
        for path in [
            "gantry.yml",
            "gantry.yaml",
            "deploy/web.gantry.yml",
            "pipeline.json",
            "prod.pipeline.json",
            "prod.pipeline.yaml",
            "PIPELINE.YML",
        ] {
            assert_eq!(
                kind(path, "version: 0.2\nphases: {}\n"),
                FileKind::Pipeline,
                "{path}"
            );
        }
        // Not a name rule: `gantry.json`, `mybuildspec.yml`, `buildspec.json`.
        for path in [
            "gantry.json",
            "mybuildspec.yml",
            "buildspec.json",
            "pipelines.json",
        ] {
            assert_eq!(kind(path, ""), FileKind::Unknown, "{path}");
        }
    }

    #[test]
    fn content_decides_otherwise() {
        assert_eq!(
            kind("a.yml", "version: 0.2\nphases:\n  build: {}\n"),
            FileKind::Buildspec
        );
        assert_eq!(kind("a.yml", "name: x\nstages: []\n"), FileKind::Pipeline);
        assert_eq!(kind("a.yml", "pipeline:\n  name: x\n"), FileKind::Pipeline);
        assert_eq!(
            kind("a.json", r#"{"pipeline": {}, "metadata": {}}"#),
            FileKind::Pipeline
        );
        assert_eq!(
            kind("a.json", r#"{"name": "x", "stages": []}"#),
            FileKind::Pipeline
        );
        assert_eq!(
            kind("a.json", r#"{"StartAt": "x", "States": {}}"#),
            FileKind::Unknown
        );
        assert_eq!(kind("a.yml", ""), FileKind::Unknown);
        assert_eq!(kind("a.yml", "- a\n- b\n"), FileKind::Unknown);
        // Nested keys do not count.
        assert_eq!(kind("a.yml", "outer:\n  phases: {}\n"), FileKind::Unknown);
    }

    #[test]
    fn broken_files_are_still_recognised() {
        assert_eq!(
            kind(
                "a.yml",
                "version: 0.2\nphases:\n  build:\n\tcommands: [x]\n"
            ),
            FileKind::Buildspec
        );
        assert_eq!(kind("a.yml", "name: x\nstages: [\n"), FileKind::Pipeline);
        assert_eq!(
            kind("a.json", "{\"pipeline\": {\"name\": \"x\",}}"),
            FileKind::Pipeline
        );
    }
}
