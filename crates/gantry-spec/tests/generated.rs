//! Generated input: random YAML-ish text and random mutations of the corpus.
//! `parse` must always return, and its diagnostics must be well-formed.

use std::fs;
use std::path::Path;

use gantry_spec::buildspec::parse;
use proptest::prelude::*;

/// Pieces of YAML and buildspec vocabulary, so random text often gets deep
/// into the converter instead of failing at the first byte.
const TOKENS: &[&str] = &[
    "version",
    "0.1",
    "0.2",
    ": ",
    ":",
    " ",
    "  ",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "'",
    "\"",
    "# c",
    "phases",
    "install",
    "pre_build",
    "build",
    "post_build",
    "commands",
    "finally",
    "on-failure",
    "RETRY-",
    "RETRY-3-",
    "(",
    ")",
    "ABORT",
    "runtime-versions",
    "env",
    "variables",
    "secrets-manager",
    "arn:aws:",
    "exported-variables",
    "AWS_X",
    "CODEBUILD_X",
    "batch",
    "build-graph",
    "identifier",
    "depend-on",
    "build-matrix",
    "build-fanout",
    "parallelism",
    "reports",
    "file-format",
    "artifacts",
    "files",
    "secondary-artifacts",
    "cache",
    "paths",
    "fallback-keys",
    "yes",
    "no",
    "~",
    "null",
    "!!str ",
    "!Ref ",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "? ",
    "\t",
    "é",
    "😀",
    "\\",
    "%YAML 1.2\n",
    "\r\n",
    "\u{0}",
    "\u{feff}",
];

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..200).prop_map(|t| t.concat())
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for kind in ["valid", "invalid"] {
        let mut paths: Vec<_> = fs::read_dir(root.join(kind))
            .expect("corpus directory")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        for p in paths {
            out.push(fs::read_to_string(p).expect("corpus file"));
        }
    }
    out
}

/// One edit, applied to characters so the text stays valid UTF-8.
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

/// The contract every result must keep, valid or not.
fn check(source: &str) -> Result<(), TestCaseError> {
    if let Err(diags) = parse(source) {
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
            prop_assert!((d.span.line, d.span.col) >= last, "not sorted: {diags:?}");
            prop_assert!(!d.message.is_empty());
            last = (d.span.line, d.span.col);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_yamlish_text_never_panics(source in yamlish()) {
        check(&source)?;
    }

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        check(&source)?;
    }

    #[test]
    fn mutated_corpus_files_never_panic(index in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
        let corpus = corpus();
        let mut text = corpus[index % corpus.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        check(&text)?;
    }
}
