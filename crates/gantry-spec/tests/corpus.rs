//! The corpus: realistic buildspecs that must parse (`corpus/valid`), and
//! broken ones that must not (`corpus/invalid`). Each invalid file says on
//! its first line where its first diagnostic is and part of what it says:
//!
//! ```text
//! # expect: 4:7 unknown key
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use gantry_spec::buildspec::parse;

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "too few corpus files in {}",
        dir.display()
    );
    files
}

#[test]
fn valid_files_parse() {
    let mut failures = Vec::new();
    for path in files("valid") {
        let source = fs::read_to_string(&path).expect("readable corpus file");
        if let Err(diags) = parse(&source) {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            for d in diags {
                failures.push(d.render(&name));
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
fn invalid_files_fail_where_they_say() {
    let mut failures = Vec::new();
    for path in files("invalid") {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let source = fs::read_to_string(&path).expect("readable corpus file");
        let Some((line, col, needle)) = expectation(&source) else {
            failures.push(format!("{name}: line 1 must be `# expect: LINE:COL text`"));
            continue;
        };
        match parse(&source) {
            Ok(_) => failures.push(format!("{name}: parsed, but should not")),
            Err(diags) => {
                let first = &diags[0];
                if (first.span.line, first.span.col) != (line, col)
                    || !first.message.contains(needle)
                {
                    failures.push(format!(
                        "{name}: expected {line}:{col} {needle:?}\n    got {}",
                        first.render(&name)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads `# expect: LINE:COL text` from the first line.
fn expectation(source: &str) -> Option<(u32, u32, &str)> {
    let rest = source.lines().next()?.strip_prefix("# expect: ")?;
    let (place, needle) = rest.split_once(' ')?;
    let (line, col) = place.split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?, needle.trim()))
}
