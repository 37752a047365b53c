//! Whole-file tests: the accepted shapes, the two spellings, empty and
//! non-mapping files, ordering of diagnostics, printing.

use super::*;

/// A valid pipeline; extra actions for the Build stage (or top-level keys)
/// appended by [`with`] start on line 17.
pub(crate) const BASE: &str = "\
name: app
roleArn: arn:aws:iam::123456789012:role/gantry
stages:
  - name: Source
    actions:
      - name: Checkout
        namespace: Src
        actionTypeId: {category: Source, owner: AWS, provider: Git, version: 1}
        configuration: {RepositoryUrl: 'https://example.com/a.git'}
        outputArtifacts: [{name: Code}]
  - name: Build
    actions:
      - name: Compile
        actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: 1}
        configuration: {ProjectName: app}
        inputArtifacts: [{name: Code}]
";

/// [`BASE`] with `extra` appended.
pub(crate) fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// Parses text (either spelling) that must be valid.
#[track_caller]
pub(crate) fn ok(source: &str) -> PipelineDeclaration {
    match parse(source) {
        Ok(p) => p,
        Err(diags) => panic!(
            "expected a valid pipeline, got:\n{}",
            diags.iter().map(|d| format!("  {d}\n")).collect::<String>()
        ),
    }
}

/// Parses text that must be invalid; returns its diagnostics.
#[track_caller]
pub(crate) fn errs(source: &str) -> Vec<Diagnostic> {
    match parse(source) {
        Ok(p) => panic!("expected diagnostics, got {p:#?}"),
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

/// Asserts that no diagnostic contains `needle`.
#[track_caller]
pub(crate) fn lacks(source: &str, needle: &str) {
    if let Err(diags) = parse(source) {
        assert!(
            diags.iter().all(|d| !d.message.contains(needle)),
            "unexpected {needle:?} in:\n{}",
            diags.iter().map(|d| format!("  {d}\n")).collect::<String>()
        );
    }
}

/// [`BASE`] as JSON on one line per member, for JSON-specific tests.
pub(crate) fn json(extra_build_action: &str) -> String {
    format!(
        r#"{{
"name": "app",
"roleArn": "arn:aws:iam::123456789012:role/gantry",
"stages": [
{{"name": "Source", "actions": [
{{"name": "Checkout", "namespace": "Src",
"actionTypeId": {{"category": "Source", "owner": "AWS", "provider": "Git", "version": "1"}},
"configuration": {{"RepositoryUrl": "https://example.com/a.git"}},
"outputArtifacts": [{{"name": "Code"}}]}}]}},
{{"name": "Build", "actions": [
{{"name": "Compile",
"actionTypeId": {{"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}},
"configuration": {{"ProjectName": "app"}},
"inputArtifacts": [{{"name": "Code"}}]}}{extra_build_action}]}}
]
}}
"#
    )
}

#[test]
fn base_files_are_valid() {
    let p = ok(BASE);
    assert_eq!(p.name.value, "app");
    assert_eq!((p.name.span.line, p.name.span.col), (1, 7));
    assert_eq!(p.stages.len(), 2);
    let compile = &p.stages[1].actions[0];
    assert_eq!(compile.run_order(), 1);
    assert_eq!(compile.inputs()[0].name.value, "Code");
    assert_eq!(
        compile.config("ProjectName").map(|v| v.value.as_str()),
        Some("app")
    );
    let j = ok(&json(""));
    assert_eq!(to_json(&j), to_json(&p));
}

#[test]
fn three_shapes_are_accepted() {
    let bare = ok(BASE);
    let indented: String = BASE.lines().map(|l| format!("  {l}\n")).collect();
    let wrapped = ok(&format!("pipeline:\n{indented}"));
    assert_eq!(to_json(&bare), to_json(&wrapped));
    let get_pipeline = format!(
        "{{\"pipeline\": {}, \"metadata\": {{\"pipelineArn\": \"arn:aws:codepipeline:us-east-1:123456789012:app\", \"created\": 1700000000.25}}}}",
        json("")
    );
    let doc = parse_document(&get_pipeline, Format::Json).expect("valid");
    assert_eq!(to_json(&doc.pipeline), to_json(&bare));
    let metadata = doc.metadata.expect("metadata");
    assert_eq!(
        metadata.created.clone().map(|c| c.value),
        Some(Timestamp::EpochSeconds("1700000000.25".into()))
    );
    assert!(to_json(&metadata).contains("\"created\": 1700000000.25"));
}

#[test]
fn paths_name_the_wrapper() {
    let indented: String = BASE
        .replace(
            "version: 1}\n        configuration: {ProjectName",
            "version: 1}\n        runOrder: 0\n        configuration: {ProjectName",
        )
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    has(
        &format!("pipeline:\n{indented}"),
        16,
        21,
        "`pipeline.stages[1].actions[0].runOrder` must be a whole number from 1 to 999, found `0`",
    );
}

#[test]
fn empty_and_non_mapping_files() {
    for source in ["", "   \n", "# only a comment\n"] {
        has(source, 1, 1, "the pipeline file is empty");
    }
    has(
        "- a\n- b\n",
        1,
        1,
        "a pipeline file must be a mapping with `name` and `stages`",
    );
    let d = parse_json("[1, 2]").unwrap_err();
    assert!(d[0].message.contains("must be an object"), "{d:?}");
    has("{}", 1, 1, "missing required key `name`");
}

#[test]
fn missing_required_members_are_each_reported() {
    let d = errs("pipelineType: V2\n");
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    for key in ["name", "roleArn", "stages"] {
        assert!(
            messages
                .iter()
                .any(|m| m.contains(&format!("missing required key `{key}`"))),
            "{messages:?}"
        );
    }
}

#[test]
fn format_guess() {
    assert_eq!(Format::guess("  \n{\"a\": 1}"), Format::Json);
    assert_eq!(Format::guess("\u{feff}{}"), Format::Json);
    assert_eq!(Format::guess("name: x\n"), Format::Yaml);
    assert_eq!(Format::guess("# {\n"), Format::Yaml);
}

#[test]
fn json_is_typed_yaml_keeps_text() {
    // YAML: plain scalars are text where the API wants strings.
    let p = ok(&BASE.replace(
        "{ProjectName: app}",
        "{ProjectName: 2024, BatchEnabled: false}",
    ));
    let c = &p.stages[1].actions[0];
    assert_eq!(c.config("ProjectName").unwrap().value, "2024");
    assert_eq!(c.config("BatchEnabled").unwrap().value, "false");
    // JSON: a number where a string is wanted is an error.
    let source = json("").replace("\"ProjectName\": \"app\"", "\"ProjectName\": 2024");
    has(
        &source,
        13,
        34,
        "`stages[1].actions[0].configuration.ProjectName` must be a string, found the number 2024",
    );
    // YAML accepts a quoted runOrder; JSON does not.
    let p = ok(&with(
        "      - name: Later\n        runOrder: \"2\"\n        actionTypeId: {category: Test, owner: AWS, provider: CodeBuild, version: 1}\n        configuration: {ProjectName: t}\n        inputArtifacts: [{name: Code}]\n",
    ));
    assert_eq!(p.stages[1].actions[1].run_order(), 2);
}

#[test]
fn diagnostics_are_sorted_and_capped() {
    let mut many = String::from(BASE);
    for i in 0..150 {
        many.push_str(&format!("bad{i}: 1\n"));
    }
    let d = errs(&many);
    assert_eq!(d.len(), MAX_DIAGNOSTICS + 1);
    assert!(d.last().unwrap().message.contains("and 50 more problems"));
    assert!(
        d.windows(2)
            .all(|w| (w[0].span.line, w[0].span.col) <= (w[1].span.line, w[1].span.col))
    );
}

#[test]
fn to_json_prints_like_the_aws_cli() {
    let printed = to_json(&ok(BASE));
    assert!(
        printed.starts_with("{\n    \"name\": \"app\",\n    \"roleArn\""),
        "{printed}"
    );
    // Absent members stay absent: BASE has no runOrder, no outputArtifacts on Compile.
    assert!(!printed.contains("runOrder"));
    assert_eq!(printed.matches("outputArtifacts").count(), 1);
}

#[test]
fn tags_are_read_and_checked() {
    let source = format!(
        "{{\"pipeline\": {}, \"tags\": [{{\"key\": \"team\", \"value\": \"\"}}, {{\"key\": \"team\", \"value\": \"x\"}}]}}",
        json("")
    );
    let d = parse_json(&source).unwrap_err();
    assert!(d[0].message.contains("duplicate tag key `team`"), "{d:?}");
}

#[test]
fn one_document_per_file() {
    has(
        &format!("{BASE}---\nname: b\n"),
        17,
        1,
        "a second YAML document (`---`); a file holds one document",
    );
}

#[test]
fn hostile_input_ends_in_a_diagnostic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(errs(&deep)[0].message.contains("nesting too deep"));
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        laughs.push_str(&format!(
            "b{i}: &b{i} [{}]\n",
            vec![
                if i == 0 {
                    "*a".to_string()
                } else {
                    format!("*b{}", i - 1)
                };
                10
            ]
            .join(", ")
        ));
    }
    assert!(errs(&laughs)[0].message.contains("document too large"));
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    assert!(
        parse_json(&big).unwrap_err()[0]
            .message
            .contains("the limit is")
    );
}
