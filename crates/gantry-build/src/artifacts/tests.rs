//! One test per selection rule, plus properties over random trees.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn sp(s: &str) -> Spanned<String> {
    Spanned::new(
        s.to_string(),
        Span {
            line: 7,
            col: 9,
            offset: 0,
            len: s.len(),
        },
    )
}

fn spec(files: &[&str]) -> Artifacts {
    Artifacts {
        span: Span::default(),
        files: files.iter().map(|f| sp(f)).collect(),
        name: None,
        discard_paths: false,
        base_directory: None,
        exclude_paths: vec![],
        enable_symlinks: false,
        s3_prefix: None,
        secondary: vec![],
    }
}

/// A temp tree with the given files (content = their path).
fn tree(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in files {
        let p = dir.path().join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, f).expect("write");
    }
    dir
}

fn dests(root: &Path, spec: &Artifacts) -> Vec<String> {
    select(root, spec)
        .expect("select")
        .into_iter()
        .map(|f| f.dest.to_string_lossy().into_owned())
        .collect()
}

const SAMPLE: &[&str] = &[
    "README.md",
    ".env",
    "src/main.rs",
    "src/lib/util.rs",
    "target/app.jar",
    "target/app.txt",
    "target/classes/A.class",
    "target/classes/deep/B.class",
];

#[test]
fn star_star_slash_star_selects_every_file() {
    let t = tree(SAMPLE);
    let mut want: Vec<String> = SAMPLE.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(dests(t.path(), &spec(&["**/*"])), want);
}

#[test]
fn dir_star_selects_direct_files_only() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["target/*"])),
        ["target/app.jar", "target/app.txt"]
    );
}

#[test]
fn dir_star_star_star_selects_everything_under_dir() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["target/**/*"])),
        [
            "target/app.jar",
            "target/app.txt",
            "target/classes/A.class",
            "target/classes/deep/B.class"
        ]
    );
}

#[test]
fn plain_path_selects_one_file() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["target/app.jar"])),
        ["target/app.jar"]
    );
}

#[test]
fn star_stays_within_one_component() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["target/*.jar"])),
        ["target/app.jar"]
    );
    assert_eq!(dests(t.path(), &spec(&["*.md"])), ["README.md"]);
    assert!(matches!(
        select(t.path(), &spec(&["*.class"])),
        Err(ArtifactError::NoMatchingFiles { .. })
    ));
}

#[test]
fn star_star_crosses_directories() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["**/*.class"])),
        ["target/classes/A.class", "target/classes/deep/B.class"]
    );
    // `**` also matches zero directories.
    assert_eq!(
        dests(t.path(), &spec(&["target/**/A.class"])),
        ["target/classes/A.class"]
    );
}

#[test]
fn leading_dot_slash_is_ignored() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["./target/app.jar", "./src/*"])),
        ["src/main.rs", "target/app.jar"]
    );
}

#[test]
fn only_files_are_selected() {
    let t = tree(SAMPLE);
    // `*` matches the directories `src` and `target` too, but selects only
    // the top-level files.
    assert_eq!(dests(t.path(), &spec(&["*"])), [".env", "README.md"]);
}

#[test]
fn plain_directory_selects_its_whole_subtree() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(t.path(), &spec(&["target/classes"])),
        ["target/classes/A.class", "target/classes/deep/B.class"]
    );
    assert_eq!(dests(t.path(), &spec(&["."])).len(), SAMPLE.len());
}

#[test]
fn base_directory_is_not_part_of_dest() {
    let t = tree(SAMPLE);
    let mut s = spec(&["**/*"]);
    s.base_directory = Some(sp("target/classes"));
    assert_eq!(dests(t.path(), &s), ["A.class", "deep/B.class"]);
}

#[test]
fn base_directory_glob_matches_several_directories() {
    let t = tree(&["my-build1/a.txt", "my-build2/b.txt", "other/c.txt"]);
    let mut s = spec(&["*.txt"]);
    s.base_directory = Some(sp("my-build*"));
    assert_eq!(dests(t.path(), &s), ["a.txt", "b.txt"]);
}

#[test]
fn base_directory_glob_can_be_nested() {
    let t = tree(&["svc/a/dist/x.js", "svc/b/dist/y.js", "svc/b/src/z.js"]);
    let mut s = spec(&["**/*"]);
    s.base_directory = Some(sp("svc/*/dist"));
    assert_eq!(dests(t.path(), &s), ["x.js", "y.js"]);
}

#[test]
fn missing_base_directory_is_an_error() {
    let t = tree(SAMPLE);
    let mut s = spec(&["**/*"]);
    s.base_directory = Some(sp("dist"));
    let err = select(t.path(), &s).expect_err("no dist");
    assert!(
        matches!(err, ArtifactError::NoBaseDirectory { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("line 7:9"), "{err}");
    s.base_directory = Some(sp("dist-*"));
    assert!(matches!(
        select(t.path(), &s),
        Err(ArtifactError::NoBaseDirectory { .. })
    ));
}

#[test]
fn exclude_paths_are_relative_to_base_and_cover_subtrees() {
    let t = tree(SAMPLE);
    let mut s = spec(&["**/*"]);
    s.base_directory = Some(sp("target"));
    s.exclude_paths = vec![sp("*.txt"), sp("classes/deep")];
    assert_eq!(dests(t.path(), &s), ["app.jar", "classes/A.class"]);
}

#[test]
fn discard_paths_flattens_to_file_names() {
    let t = tree(SAMPLE);
    let mut s = spec(&["target/classes/**/*"]);
    s.discard_paths = true;
    assert_eq!(dests(t.path(), &s), ["A.class", "B.class"]);
}

#[test]
fn discard_paths_collision_names_both_files() {
    let t = tree(&["a/x.txt", "b/x.txt"]);
    let mut s = spec(&["**/*"]);
    s.discard_paths = true;
    let err = select(t.path(), &s).expect_err("collision");
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::Collision { .. }));
    assert!(
        text.contains("a/x.txt") && text.contains("b/x.txt"),
        "{text}"
    );
}

#[test]
fn the_same_file_through_two_patterns_is_listed_once() {
    let t = tree(SAMPLE);
    assert_eq!(
        dests(
            t.path(),
            &spec(&["target/*.jar", "target/app.jar", "**/*.jar"])
        ),
        ["target/app.jar"]
    );
}

#[test]
fn patterns_escaping_the_root_are_refused() {
    let t = tree(SAMPLE);
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "target/../../x",
        "**/../*",
    ] {
        let err = select(t.path(), &spec(&[bad])).expect_err(bad);
        assert!(
            matches!(err, ArtifactError::OutsideRoot { .. }),
            "{bad}: {err}"
        );
    }
    let mut s = spec(&["**/*"]);
    s.base_directory = Some(sp("../"));
    assert!(matches!(
        select(t.path(), &s),
        Err(ArtifactError::OutsideRoot { .. })
    ));
    s.base_directory = None;
    s.exclude_paths = vec![sp("../x")];
    assert!(matches!(
        select(t.path(), &s),
        Err(ArtifactError::OutsideRoot { .. })
    ));
}

#[test]
fn invalid_glob_is_reported_with_its_line() {
    let t = tree(SAMPLE);
    let err = select(t.path(), &spec(&["src/[a"])).expect_err("bad glob");
    assert!(matches!(err, ArtifactError::InvalidGlob { .. }), "{err}");
    assert!(err.to_string().starts_with("line 7:9"), "{err}");
}

#[test]
fn no_match_is_an_error() {
    let t = tree(SAMPLE);
    assert!(matches!(
        select(t.path(), &spec(&["nothing/here"])),
        Err(ArtifactError::NoMatchingFiles { .. })
    ));
}

#[cfg(unix)]
mod symlinks {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinked_directories_are_not_followed() {
        let outside = tree(&["secret.txt"]);
        let t = tree(&["a.txt", "real/b.txt"]);
        symlink(outside.path(), t.path().join("escape")).expect("link");
        symlink(t.path().join("real"), t.path().join("inner")).expect("link");
        assert_eq!(dests(t.path(), &spec(&["**/*"])), ["a.txt", "real/b.txt"]);
        assert!(matches!(
            select(t.path(), &spec(&["escape/*"])),
            Err(ArtifactError::NoMatchingFiles { .. })
        ));
    }

    #[test]
    fn symlinked_file_is_included_as_its_target() {
        let t = tree(&["real.txt"]);
        symlink("real.txt", t.path().join("link.txt")).expect("link");
        let files = select(t.path(), &spec(&["link.txt"])).expect("select");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].dest, Path::new("link.txt"));
        assert!(files[0].source.ends_with("real.txt"));
        assert_eq!(files[0].symlink, None);
        let out = tempfile::tempdir().expect("tmp");
        copy_to(&files, out.path()).expect("copy");
        let meta = fs::symlink_metadata(out.path().join("link.txt")).expect("meta");
        assert!(meta.is_file());
        assert_eq!(
            fs::read_to_string(out.path().join("link.txt")).expect("read"),
            "real.txt"
        );
    }

    #[test]
    fn symlink_out_of_the_root_is_refused() {
        let outside = tree(&["passwd"]);
        let t = tree(&["a.txt"]);
        symlink(outside.path().join("passwd"), t.path().join("passwd")).expect("link");
        let err = select(t.path(), &spec(&["**/*"])).expect_err("escape");
        assert!(
            matches!(err, ArtifactError::SymlinkOutsideRoot { .. }),
            "{err}"
        );
        let mut s = spec(&["**/*"]);
        s.enable_symlinks = true;
        assert!(matches!(
            select(t.path(), &s),
            Err(ArtifactError::SymlinkOutsideRoot { .. })
        ));
    }

    #[test]
    fn broken_symlink_is_an_error_unless_kept_as_a_link() {
        let t = tree(&["a.txt"]);
        symlink("missing.txt", t.path().join("dangling")).expect("link");
        assert!(matches!(
            select(t.path(), &spec(&["**/*"])),
            Err(ArtifactError::BrokenSymlink { .. })
        ));
        let mut s = spec(&["**/*"]);
        s.enable_symlinks = true;
        assert_eq!(dests(t.path(), &s), ["a.txt", "dangling"]);
    }

    #[test]
    fn enable_symlinks_keeps_links_as_links() {
        let t = tree(&["lib/libx.so.1"]);
        symlink("libx.so.1", t.path().join("lib/libx.so")).expect("link");
        let mut s = spec(&["lib/*"]);
        s.enable_symlinks = true;
        let files = select(t.path(), &s).expect("select");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].dest, Path::new("lib/libx.so"));
        assert_eq!(files[0].symlink.as_deref(), Some(Path::new("libx.so.1")));
        let out = tempfile::tempdir().expect("tmp");
        copy_to(&files, out.path()).expect("copy");
        let link = out.path().join("lib/libx.so");
        assert!(fs::symlink_metadata(&link).expect("meta").is_symlink());
        assert_eq!(
            fs::read_link(&link).expect("readlink"),
            Path::new("libx.so.1")
        );
    }

    #[test]
    fn literal_base_directory_may_be_an_inner_symlink() {
        let t = tree(&["build/out/app.bin"]);
        symlink("build/out", t.path().join("dist")).expect("link");
        let mut s = spec(&["*"]);
        s.base_directory = Some(sp("dist"));
        assert_eq!(dests(t.path(), &s), ["app.bin"]);
    }
}

#[test]
fn copy_to_creates_directories_and_refuses_bad_dests() {
    let t = tree(SAMPLE);
    let files = select(t.path(), &spec(&["**/*"])).expect("select");
    let out = tempfile::tempdir().expect("tmp");
    copy_to(&files, out.path()).expect("copy");
    for f in SAMPLE {
        assert_eq!(fs::read_to_string(out.path().join(f)).expect("read"), *f);
    }
    let bad = SelectedFile {
        source: t.path().join("README.md"),
        dest: PathBuf::from("../escape"),
        symlink: None,
    };
    let err = copy_to(&[bad], out.path()).expect_err("bad dest");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

// ---- properties over random trees ----

/// Random file paths: 0..3 directories from `a b c`, then a file name that
/// is never a directory name, so paths never conflict.
fn file_paths() -> impl Strategy<Value = BTreeSet<String>> {
    let path = (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..4),
        prop::sample::select(vec!["x.txt", "y.log", "z", ".h"]),
    )
        .prop_map(|(dirs, file)| {
            let mut p = dirs.join("/");
            if !p.is_empty() {
                p.push('/');
            }
            p + file
        });
    prop::collection::btree_set(path, 1..20)
}

/// An exclude pattern and an independent statement of what it removes.
type ExcludeCase = (&'static str, fn(&str) -> bool);

fn exclude_case() -> impl Strategy<Value = ExcludeCase> {
    let cases: Vec<ExcludeCase> = vec![
        ("**/*.log", |p| p.ends_with(".log")),
        ("a/**/*", |p| p.starts_with("a/")),
        ("a", |p| p.starts_with("a/")),
        ("*/z", |p| p.split('/').count() == 2 && p.ends_with("/z")),
        ("x.txt", |p| p == "x.txt"),
        ("b/*", |p| p.starts_with("b/")),
        ("**/c/**/*", |p| {
            p.split('/').any(|c| c == "c") && !p.ends_with("/c")
        }),
    ];
    prop::sample::select(cases)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_star_star_selects_exactly_all_files(paths in file_paths()) {
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let t = tree(&refs);
        let got: BTreeSet<String> = dests(t.path(), &spec(&["**/*"])).into_iter().collect();
        prop_assert_eq!(got, paths);
    }

    #[test]
    fn prop_excluded_files_never_appear(
        paths in file_paths(),
        (pattern, excluded) in exclude_case(),
    ) {
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let t = tree(&refs);
        let mut s = spec(&["**/*"]);
        s.exclude_paths = vec![sp(pattern)];
        let want: BTreeSet<String> = paths.iter().filter(|p| !excluded(p)).cloned().collect();
        match select(t.path(), &s) {
            Ok(files) => {
                let got: BTreeSet<String> = files
                    .iter()
                    .map(|f| f.dest.to_string_lossy().into_owned())
                    .collect();
                prop_assert_eq!(got, want);
            }
            Err(ArtifactError::NoMatchingFiles { .. }) => prop_assert!(want.is_empty()),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    #[test]
    fn prop_discard_paths_gives_basenames(paths in file_paths()) {
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let t = tree(&refs);
        let mut s = spec(&["**/*"]);
        s.discard_paths = true;
        let names: Vec<&str> = paths.iter().map(|p| p.rsplit('/').next().unwrap_or(p)).collect();
        let distinct: BTreeSet<&str> = names.iter().copied().collect();
        match select(t.path(), &s) {
            Ok(files) => {
                prop_assert_eq!(distinct.len(), names.len());
                for f in &files {
                    prop_assert_eq!(f.dest.components().count(), 1);
                    prop_assert_eq!(f.dest.file_name(), f.source.file_name());
                }
                let got: BTreeSet<String> = files
                    .iter()
                    .map(|f| f.dest.to_string_lossy().into_owned())
                    .collect();
                prop_assert_eq!(got, distinct.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
            }
            Err(ArtifactError::Collision { .. }) => prop_assert!(distinct.len() < names.len()),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
