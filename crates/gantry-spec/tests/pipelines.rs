//! The pipeline corpus: realistic declarations that must parse
//! (`corpus/pipelines/valid`), and broken ones that must not
//! (`corpus/pipelines/invalid`). Each invalid file says where its first
//! diagnostic is and part of what it says: a YAML file on its first line,
//!
//! ```text
//! # expect: 4:7 unknown key
//! ```
//!
//! a JSON file (which has no comments) in a sidecar `NAME.json.expect`.
//! Valid JSON files also round-trip: parsed, printed and parsed again, they
//! give the same model and the same JSON.

use std::fs;
use std::path::{Path, PathBuf};

use gantry_spec::pipeline::{self, Format, PipelineDocument};

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/pipelines")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string()
}

fn format(path: &Path) -> Format {
    if path.extension().is_some_and(|e| e == "json") {
        Format::Json
    } else {
        Format::Yaml
    }
}

fn parse(
    path: &Path,
) -> (
    String,
    Result<PipelineDocument, Vec<gantry_spec::Diagnostic>>,
) {
    let source = fs::read_to_string(path).expect("readable corpus file");
    let parsed = pipeline::parse_document(&source, format(path));
    (source, parsed)
}

#[test]
fn valid_files_parse() {
    let files = files("valid");
    assert!(files.len() >= 6, "too few valid pipeline files");
    let mut failures = Vec::new();
    for path in files {
        if let (_, Err(diags)) = parse(&path) {
            for d in diags {
                failures.push(d.render(&name(&path)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "valid files were rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn valid_files_round_trip() {
    for path in files("valid") {
        let (source, parsed) = parse(&path);
        let document = parsed.unwrap_or_else(|d| panic!("{}: {d:?}", name(&path)));
        let printed = pipeline::to_json(&document);
        let again = pipeline::parse_json(&printed)
            .unwrap_or_else(|d| panic!("{}: printed JSON rejected: {d:?}\n{printed}", name(&path)));
        let reprinted =
            pipeline::to_json(&pipeline::parse_document(&printed, Format::Json).unwrap());
        assert_eq!(printed, reprinted, "{}: unstable round trip", name(&path));
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&document.pipeline).unwrap(),
            "{}",
            name(&path)
        );
        if format(&path) == Format::Json {
            // Same content as the input, whatever its layout.
            let input: serde_json::Value = serde_json::from_str(&source).unwrap();
            let output: serde_json::Value = serde_json::from_str(&printed).unwrap();
            assert_eq!(input, output, "{}: content changed", name(&path));
        }
    }
}

#[test]
fn get_pipeline_output_round_trips_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/pipelines/valid/release.get-pipeline.json");
    let (source, parsed) = parse(&path);
    let printed = pipeline::to_json(&parsed.expect("valid"));
    assert_eq!(printed.trim_end(), source.trim_end());
}

#[test]
fn the_yaml_spelling_is_the_same_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/pipelines/valid");
    let (_, json) = parse(&dir.join("release.get-pipeline.json"));
    let (_, yaml) = parse(&dir.join("release.gantry.yml"));
    let (json, yaml) = (json.expect("valid"), yaml.expect("valid"));
    assert_eq!(pipeline::to_json(&json), pipeline::to_json(&yaml));
}

#[test]
fn invalid_files_fail_where_they_say() {
    let files = files("invalid");
    assert!(files.len() >= 20, "too few invalid pipeline files");
    let mut failures = Vec::new();
    for path in files {
        let name = name(&path);
        let (source, parsed) = parse(&path);
        let expect = if format(&path) == Format::Json {
            let sidecar = path.with_extension("json.expect");
            fs::read_to_string(&sidecar).unwrap_or_default()
        } else {
            source
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# "))
                .unwrap_or("")
                .to_string()
        };
        let Some((line, col, needle)) = expectation(&expect) else {
            failures.push(format!(
                "{name}: needs `expect: LINE:COL text` (line 1 for YAML, NAME.json.expect for JSON)"
            ));
            continue;
        };
        match parsed {
            Ok(_) => failures.push(format!("{name}: parsed, but should not")),
            Err(diags) => {
                let first = &diags[0];
                if (first.span.line, first.span.col) != (line, col)
                    || !first.message.contains(needle)
                {
                    failures.push(format!(
                        "{name}: expected {line}:{col} {needle:?}\n    got {}",
                        diags
                            .iter()
                            .map(|d| d.render(&name))
                            .collect::<Vec<_>>()
                            .join("\n        ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads `expect: LINE:COL text`.
fn expectation(text: &str) -> Option<(u32, u32, &str)> {
    let rest = text.lines().next()?.strip_prefix("expect: ")?;
    let (place, needle) = rest.split_once(' ')?;
    let (line, col) = place.split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?, needle.trim()))
}

/// The `json` and `yaml` examples in docs/pipelines.md parse, so the page stays true.
#[test]
fn documented_examples_parse() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/pipelines.md"))
            .expect("docs/pipelines.md");
    let mut blocks = 0;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let format = match line.trim() {
            "```json" => Format::Json,
            "```yaml" => Format::Yaml,
            _ => continue,
        };
        let mut text = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        blocks += 1;
        if let Err(diags) = pipeline::parse_document(&text, format) {
            panic!(
                "a documented example is rejected:\n{}\n{text}",
                diags
                    .iter()
                    .map(|d| d.render("docs"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(blocks >= 2, "no examples found");
}
