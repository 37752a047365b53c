use super::*;
use crate::buildspec::tests::{has, ok, with};

#[test]
fn artifacts_every_key() {
    let s = ok(&with(
        "artifacts:\n  files:\n    - '**/*'\n  name: build-$(date +%Y)\n  discard-paths: yes\n  base-directory: 'dist*'\n  exclude-paths:\n    - '**/*.map'\n  enable-symlinks: yes\n  s3-prefix: releases\n  secondary-artifacts:\n    web:\n      files: [index.html]\n      base-directory: web\n    api:\n      files: [api.zip]\n      discard-paths: true\n",
    ));
    let a = s.artifacts.unwrap();
    assert_eq!((a.span.line, a.span.col), (6, 1));
    assert_eq!(a.files[0].value, "**/*");
    assert_eq!(a.name.unwrap().value, "build-$(date +%Y)");
    assert!(a.discard_paths && a.enable_symlinks);
    assert_eq!(a.base_directory.unwrap().value, "dist*");
    assert_eq!(a.exclude_paths[0].value, "**/*.map");
    assert_eq!(a.s3_prefix.unwrap().value, "releases");
    assert_eq!(a.secondary.len(), 2);
    assert_eq!(a.secondary[0].identifier.value, "web");
    assert!(a.secondary[1].artifacts.discard_paths);
    assert_eq!(a.secondary[1].artifacts.span.line, 20);
}

#[test]
fn artifacts_files_required() {
    has(
        &with("artifacts:\n  name: x\n"),
        6,
        1,
        "missing required key `files` in `artifacts`",
    );
    has(
        &with("artifacts:\n  files: [a]\n  secondary-artifacts:\n    web:\n      name: w\n"),
        9,
        5,
        "missing required key `files` in `artifacts.secondary-artifacts.web`",
    );
    has(
        &with(
            "artifacts:\n  files: [a]\n  secondary-artifacts:\n    web:\n      files: [b]\n      secondary-artifacts: {}\n",
        ),
        11,
        7,
        "unknown key `secondary-artifacts`",
    );
}

#[test]
fn exclude_paths_may_be_one_path() {
    let s = ok(&with(
        "artifacts:\n  files: [a]\n  exclude-paths: tmp/**/*\n",
    ));
    assert_eq!(s.artifacts.unwrap().exclude_paths[0].value, "tmp/**/*");
}

#[test]
fn reports_default_and_case_insensitive_format() {
    let s = ok(&with(
        "reports:\n  unit:\n    files: ['**/*.xml']\n    base-directory: target/surefire-reports\n  coverage:\n    files: [coverage.xml]\n    file-format: CoberturaXml\n    discard-paths: yes\n",
    ));
    assert_eq!(s.reports[0].file_format.value, ReportFormat::JunitXml);
    assert_eq!(s.reports[1].file_format.value, ReportFormat::CoberturaXml);
    assert!(s.reports[1].discard_paths);
    assert_eq!(
        s.reports[0].base_directory.as_ref().unwrap().value,
        "target/surefire-reports"
    );
}

#[test]
fn report_errors() {
    has(
        &with("reports:\n  unit:\n    file-format: JUNITXML\n"),
        7,
        3,
        "missing required key `files` in `reports.unit`",
    );
    has(
        &with("reports:\n  unit:\n    files: [a]\n    file-format: XUNIT\n"),
        9,
        18,
        "`reports.unit.file-format` must be one of CUCUMBERJSON",
    );
}

#[test]
fn at_most_five_report_groups() {
    let groups: String = (1..=6)
        .map(|i| format!("  g{i}:\n    files: [a]\n"))
        .collect();
    has(
        &with(&format!("reports:\n{groups}")),
        17,
        3,
        "at most 5 report groups",
    );
    let groups: String = (1..=5)
        .map(|i| format!("  g{i}:\n    files: [a]\n"))
        .collect();
    assert_eq!(ok(&with(&format!("reports:\n{groups}"))).reports.len(), 5);
}

#[test]
fn cache_every_key() {
    let s = ok(&with(
        "cache:\n  key: npm-$(codebuild-hash-files package-lock.json)\n  fallback-keys:\n    - npm-\n  action: restore\n  paths:\n    - node_modules/**/*\n",
    ));
    let c = s.cache.unwrap();
    assert_eq!(c.paths[0].value, "node_modules/**/*");
    assert_eq!(
        c.key.unwrap().value,
        "npm-$(codebuild-hash-files package-lock.json)"
    );
    assert_eq!(c.fallback_keys.len(), 1);
    assert_eq!(c.action.unwrap().value, CacheAction::Restore);
}

#[test]
fn cache_errors() {
    has(
        &with("cache:\n  key: k\n"),
        6,
        1,
        "missing required key `paths` in `cache`",
    );
    has(
        &with("cache:\n  paths: [a]\n  action: both\n"),
        8,
        11,
        "`cache.action` must be restore or save, found `both`",
    );
    has(
        &with("cache:\n  paths: [a]\n  fallback-keys: [a, b, c, d, e, f]\n"),
        8,
        34,
        "at most 5 keys",
    );
}
