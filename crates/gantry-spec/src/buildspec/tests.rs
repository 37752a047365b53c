//! Whole-file tests: top-level keys, `version`, `proxy`, ordering of diagnostics.

use super::*;

/// Parses text that must be valid.
pub(crate) fn ok(source: &str) -> Buildspec {
    match parse(source) {
        Ok(spec) => spec,
        Err(diags) => panic!("expected a valid buildspec, got {diags:#?}"),
    }
}

/// Parses text that must be invalid; returns its diagnostics.
pub(crate) fn errs(source: &str) -> Vec<Diagnostic> {
    match parse(source) {
        Ok(spec) => panic!("expected diagnostics, got {spec:#?}"),
        Err(diags) => diags,
    }
}

/// Asserts that some diagnostic sits at `line:col` and contains `needle`.
#[track_caller]
pub(crate) fn has(source: &str, line: u32, col: u32, needle: &str) {
    let diags = errs(source);
    assert!(
        diags
            .iter()
            .any(|d| d.span.line == line && d.span.col == col && d.message.contains(needle)),
        "no diagnostic at {line}:{col} containing {needle:?}; got:\n{}",
        diags.iter().map(|d| format!("  {d}\n")).collect::<String>()
    );
}

/// A minimal valid file with `extra` appended at the top level.
pub(crate) fn with(extra: &str) -> String {
    format!("version: 0.2\nphases:\n  build:\n    commands:\n      - make\n{extra}")
}

#[test]
fn minimal_file_parses() {
    let spec = ok("version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n");
    assert_eq!(spec.version.value, Version::V0_2);
    assert_eq!(spec.version.span.line, 1);
    assert_eq!(spec.version.span.col, 10);
    let build = spec.phases.build.unwrap();
    assert_eq!(build.span.line, 3);
    assert_eq!(build.span.col, 3);
    assert_eq!(build.commands[0].value, "echo hi");
    assert_eq!(
        (build.commands[0].span.line, build.commands[0].span.col),
        (5, 9)
    );
    assert_eq!(
        build.commands[0].span.offset,
        "version: 0.2\nphases:\n  build:\n    commands:\n      - ".len()
    );
    assert_eq!(build.commands[0].span.len, "echo hi".len());
}

#[test]
fn version_accepts_number_and_string_forms() {
    for v in ["0.2", "\"0.2\"", "'0.2'"] {
        let spec = ok(&format!("version: {v}\nphases: {{}}\n"));
        assert_eq!(spec.version.value, Version::V0_2, "{v}");
    }
    assert_eq!(
        ok("version: 0.1\nphases: {}\n").version.value,
        Version::V0_1
    );
}

#[test]
fn version_other_values_are_errors() {
    has(
        "version: 0.3\nphases: {}\n",
        1,
        10,
        "`version` must be 0.1 or 0.2, found `0.3`",
    );
    has("version: [0.2]\nphases: {}\n", 1, 10, "found a list");
    has("version:\nphases: {}\n", 1, 8, "found nothing");
}

#[test]
fn missing_version_is_an_error() {
    has("phases: {}\n", 1, 1, "missing required key `version`");
}

#[test]
fn missing_phases_is_an_error() {
    has("version: 0.2\n", 1, 1, "missing required key `phases`");
}

#[test]
fn empty_file_is_an_error() {
    has("", 1, 1, "empty");
    has("# only a comment\n", 1, 1, "empty");
}

#[test]
fn top_level_must_be_a_mapping() {
    has("- a\n- b\n", 1, 1, "must be a mapping");
}

#[test]
fn unknown_top_level_key_suggests() {
    has(
        &with("artifact:\n  files: [a]\n"),
        6,
        1,
        "unknown key `artifact` at the top level; expected one of `version`, `run-as`",
    );
    has(
        &with("artifact:\n  files: [a]\n"),
        6,
        1,
        "did you mean `artifacts`?",
    );
}

#[test]
fn unknown_key_without_close_match_has_no_suggestion() {
    let diags = errs(&with("zzzzzz: 1\n"));
    assert!(!diags[0].message.contains("did you mean"), "{}", diags[0]);
}

#[test]
fn duplicate_keys_are_errors() {
    has(
        "version: 0.2\nphases: {}\nversion: 0.2\n",
        3,
        1,
        "duplicate key `version` at the top level; first given on line 1",
    );
    has(
        "version: 0.2\nphases:\n  build:\n    commands: [a]\n  build:\n    commands: [b]\n",
        5,
        3,
        "duplicate key `build` in `phases`",
    );
}

#[test]
fn top_level_run_as() {
    let spec = ok(&with("run-as: builder\n"));
    assert_eq!(spec.run_as.unwrap().value, "builder");
    has(
        &with("run-as: 'two words'\n"),
        6,
        9,
        "`run-as` must be a Linux user name",
    );
    has(
        &with("run-as: ''\n"),
        6,
        9,
        "`run-as` must be a Linux user name",
    );
}

#[test]
fn proxy_booleans_in_all_spellings() {
    let spec = ok(&with("proxy:\n  upload-artifacts: yes\n  logs: off\n"));
    assert_eq!(
        spec.proxy,
        Some(Proxy {
            upload_artifacts: true,
            logs: false
        })
    );
    let spec = ok(&with("proxy:\n  upload-artifacts: TRUE\n  logs: On\n"));
    assert_eq!(
        spec.proxy,
        Some(Proxy {
            upload_artifacts: true,
            logs: true
        })
    );
    has(
        &with("proxy:\n  logs: maybe\n"),
        7,
        9,
        "`proxy.logs` must be yes or no",
    );
}

#[test]
fn diagnostics_are_sorted_by_position_and_all_collected() {
    let src = "version: 0.2\nphases:\n  build:\n    comands: [a]\nartifacts:\n  name: x\ncache:\n  key: k\n";
    let diags = errs(src);
    let places: Vec<(u32, u32)> = diags.iter().map(|d| (d.span.line, d.span.col)).collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted);
    // build lacks commands, has a typo; artifacts lacks files; cache lacks paths.
    assert_eq!(diags.len(), 4, "{diags:#?}");
}

#[test]
fn version_0_1_environment_variables() {
    let spec = ok("version: 0.1\nenvironment_variables:\n  plaintext:\n    A: b\nphases: {}\n");
    assert_eq!(spec.env.variables[0].name.value, "A");
    has(
        "version: 0.2\nenvironment_variables:\n  plaintext:\n    A: b\nphases: {}\n",
        2,
        1,
        "use `env` with `variables`",
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let diags = errs("version: 0.2\nphases:\n  build:\n    commands: [a\n");
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.starts_with("invalid YAML"), "{}", diags[0]);
    assert!(diags[0].span.line >= 4, "{}", diags[0]);
}

#[test]
fn second_document_is_an_error() {
    has(
        "version: 0.2\nphases: {}\n---\nversion: 0.2\n",
        3,
        1,
        "second YAML document",
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let src = "version: 0.2\nphases:\n  pre_build: &common\n    commands:\n      - echo same\n  build: *common\n  post_build:\n    <<: *common\n    finally: [echo done]\n";
    let spec = ok(src);
    assert_eq!(spec.phases.build.unwrap().commands[0].value, "echo same");
    let post = spec.phases.post_build.unwrap();
    assert_eq!(post.commands[0].value, "echo same");
    assert_eq!(post.finally[0].value, "echo done");
}

#[test]
fn unknown_tags_are_errors_and_str_tag_is_a_string() {
    has(
        &with("cache:\n  paths: !Ref foo\n"),
        7,
        10,
        "unsupported YAML tag",
    );
    let spec = ok("version: !!str 0.2\nphases: {}\n");
    assert_eq!(spec.version.value, Version::V0_2);
}

#[test]
fn positions_count_characters_not_bytes() {
    let src = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"é\" ; bad: [\n";
    let _ = parse(src);
    let src = "version: 0.2\nenv:\n  variables:\n    NAMÉ: x\n    CODEBUILD_X: é\nphases: {}\n";
    let diags = errs(src);
    assert_eq!((diags[0].span.line, diags[0].span.col), (5, 5));
    assert_eq!(&src[diags[0].span.offset..][..11], "CODEBUILD_X");
}
