//! Generated pipeline input: random mutations of the pipeline corpus and
//! random JSON/YAML-ish text. Parsing must always return; its diagnostics
//! must be well-formed; and whatever parses must print and parse again to
//! the same JSON.

use std::fs;
use std::path::Path;

use gantry_spec::pipeline::{self, Format};
use proptest::prelude::*;

/// Pieces of JSON, YAML and pipeline vocabulary, so random edits reach deep
/// into the converter and the rules instead of failing at the first byte.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    ": ",
    "\"",
    "'",
    "\\",
    "\\\"",
    "\\u00e9",
    "\\ud83d",
    "\\ude80",
    "\\ud83d\\ude80",
    "\\n",
    " ",
    "\n",
    "\t",
    "  ",
    "- ",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1000",
    "1.5e3",
    "\"name\": ",
    "\"stages\": ",
    "\"actions\": ",
    "\"runOrder\": ",
    "\"inputArtifacts\": ",
    "\"outputArtifacts\": ",
    "\"namespace\": ",
    "\"configuration\": ",
    "name: ",
    "stages:",
    "actions:",
    "runOrder: ",
    "namespace: ",
    "pipeline:",
    "#{",
    "#{a.b}",
    "#{variables.X}",
    "#{codepipeline.PipelineExecutionId}",
    "Source",
    "Build",
    "Custom",
    "AWS",
    "Git",
    "CodeBuild",
    "Manual",
    "StepFunctions",
    "EnvironmentVariables",
    "[{\\\"name\\\":",
    "PrimarySource",
    "triggers",
    "**",
    "[0-9",
    "{a,",
    "&a ",
    "*a",
    "<<: ",
    "---\n",
    "# c",
    "é",
    "😀",
    "\u{0}",
    "\u{feff}",
    "\r\n",
];

fn tokens() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..200).prop_map(|t| t.concat())
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/pipelines");
    let mut out = Vec::new();
    for kind in ["valid", "invalid"] {
        let mut paths: Vec<_> = fs::read_dir(root.join(kind))
            .expect("corpus directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| !p.to_string_lossy().ends_with(".expect"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(fs::read_to_string(p).expect("corpus file"));
        }
    }
    out
}

/// One edit, on characters so the text stays valid UTF-8.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..20usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Edit::Insert { at, token }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().max(1);
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    match *edit {
        Edit::Delete { at, len } => {
            let at = at % n;
            chars
                .iter()
                .enumerate()
                .filter(|(i, _)| *i < at || *i >= at + len)
                .map(|(_, c)| c)
                .collect()
        }
        Edit::Insert { at, token } => {
            let at = at % (chars.len() + 1);
            let mut out: String = chars[..at].iter().collect();
            out.push_str(token);
            out.extend(&chars[at..]);
            out
        }
        Edit::DuplicateLine { line } if !lines.is_empty() => {
            let i = line % lines.len();
            lines.insert(i, lines[i]);
            lines.concat()
        }
        Edit::SwapLines { a, b } if !lines.is_empty() => {
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
            lines.concat()
        }
        Edit::Truncate { at } => chars[..at % n.min(chars.len() + 1)].iter().collect(),
        _ => text.to_string(),
    }
}

/// The contract every result keeps, in both spellings.
fn check(source: &str) -> Result<(), TestCaseError> {
    for format in [Format::Json, Format::Yaml] {
        match pipeline::parse_document(source, format) {
            Err(diags) => {
                prop_assert!(!diags.is_empty(), "an error without diagnostics");
                let mut last = (0, 0);
                for d in &diags {
                    prop_assert!(d.span.line >= 1 && d.span.col >= 1, "{d:?}");
                    prop_assert!(
                        d.span.offset + d.span.len <= source.len(),
                        "{d:?} past the end"
                    );
                    prop_assert!(
                        source.is_char_boundary(d.span.offset),
                        "{d:?} inside a character"
                    );
                    prop_assert!(
                        source.is_char_boundary(d.span.offset + d.span.len),
                        "{d:?} ends inside a character"
                    );
                    prop_assert!((d.span.line, d.span.col) >= last, "not sorted: {diags:?}");
                    prop_assert!(!d.message.is_empty());
                    last = (d.span.line, d.span.col);
                }
            }
            Ok(document) => {
                let printed = pipeline::to_json(&document);
                let again = pipeline::parse_document(&printed, Format::Json);
                prop_assert!(again.is_ok(), "printed JSON rejected: {again:?}\n{printed}");
                let reprinted = pipeline::to_json(&again.expect("checked"));
                prop_assert_eq!(printed, reprinted);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn random_token_text_never_panics(source in tokens()) {
        check(&source)?;
    }

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        check(&source)?;
    }

    #[test]
    fn mutated_pipeline_files_never_panic(index in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
        let corpus = corpus();
        let mut text = corpus[index % corpus.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        check(&text)?;
    }
}
