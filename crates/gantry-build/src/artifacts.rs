//! CodeBuild artifact file selection: which files of the build tree an
//! `artifacts` block (or one `secondary-artifacts` entry) uploads, and the
//! path each one gets inside the artifact.
//!
//! [`select`] applies CodeBuild's rules (FORMATS-AWS.md §1.9, and
//! `docs/artifacts-and-reports.md` for the decisions the docs leave open):
//!
//! | `files` entry | selects |
//! |---|---|
//! | `**/*` | every file, recursively |
//! | `dir/*` | the files directly inside `dir` |
//! | `dir/**/*` | every file under `dir`, recursively |
//! | `dir/file.txt` | that one file |
//! | `dir` (no wildcard, names a directory) | every file under `dir`, like `dir/**/*` |
//!
//! `*` matches within one path component, `**` crosses directories, a leading
//! `./` is ignored, and only files are ever selected (a glob that matches a
//! directory selects nothing by itself). `base-directory` may be a glob; each
//! directory it matches is searched, and is not part of the artifact paths.
//! `exclude-paths` are globs relative to the base directory; excluding a
//! directory excludes everything under it. `discard-paths: yes` keeps only
//! file names, and two files landing on the same name is an error.
//!
//! Nothing ever leaves `root`: absolute patterns and `..` are refused, walks
//! never enter symlinked directories, and a symlinked file is copied as its
//! target's content only when that target is inside `root` (with
//! `enable-symlinks: yes` the link itself is kept instead).
//!
//! # Example
//!
//! ```
//! use gantry_build::artifacts::{copy_to, select};
//! use gantry_spec::buildspec::Artifacts;
//! use gantry_spec::{Span, Spanned};
//!
//! let src = tempfile::tempdir()?;
//! std::fs::create_dir_all(src.path().join("target/classes"))?;
//! std::fs::write(src.path().join("target/app.jar"), "jar")?;
//! std::fs::write(src.path().join("target/classes/A.class"), "class")?;
//!
//! let spec = Artifacts {
//!     span: Span::default(),
//!     files: vec![Spanned::new("*.jar".to_string(), Span::default())],
//!     name: None,
//!     discard_paths: false,
//!     base_directory: Some(Spanned::new("target".to_string(), Span::default())),
//!     exclude_paths: vec![],
//!     enable_symlinks: false,
//!     s3_prefix: None,
//!     secondary: vec![],
//! };
//! let files = select(src.path(), &spec)?;
//! assert_eq!(files.len(), 1);
//! assert_eq!(files[0].dest, std::path::Path::new("app.jar"));
//!
//! let out = tempfile::tempdir()?;
//! copy_to(&files, out.path())?;
//! assert_eq!(std::fs::read_to_string(out.path().join("app.jar"))?, "jar");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use gantry_spec::buildspec::Artifacts;
use gantry_spec::{Span, Spanned};
use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// One file chosen for an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedFile {
    /// Where the content is on disk (absolute). For a symlinked file this is
    /// the link's resolved target; for a kept symlink, the link itself.
    pub source: PathBuf,
    /// Its relative path inside the artifact.
    pub dest: PathBuf,
    /// With `enable-symlinks: yes`, the link text to recreate instead of
    /// copying content; `None` for ordinary files.
    pub symlink: Option<PathBuf>,
}

/// Why an artifact's files could not be selected or copied.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// An absolute pattern or one with `..` would reach outside the root.
    #[error(
        "line {}:{}: `{pattern}` points outside the source directory (absolute paths and `..` are not allowed)",
        .span.line, .span.col
    )]
    OutsideRoot {
        /// The pattern as written.
        pattern: String,
        /// Where it is in the buildspec.
        span: Span,
    },
    /// A pattern that is not a valid glob.
    #[error("line {}:{}: `{pattern}` is not a valid glob: {message}", .span.line, .span.col)]
    InvalidGlob {
        /// The pattern as written.
        pattern: String,
        /// Where it is in the buildspec.
        span: Span,
        /// What the glob parser said.
        message: String,
    },
    /// `base-directory` names or matches no directory.
    #[error("line {}:{}: base-directory `{pattern}` matches no directory", .span.line, .span.col)]
    NoBaseDirectory {
        /// The pattern as written.
        pattern: String,
        /// Where it is in the buildspec.
        span: Span,
    },
    /// No file matched any pattern (CodeBuild: "no matching artifact paths found").
    #[error("no matching artifact paths found under {}", .root.display())]
    NoMatchingFiles {
        /// The directory that was searched.
        root: PathBuf,
    },
    /// Two different files would be stored at the same path.
    #[error(
        "{} and {} would both be stored as `{}` in the artifact",
        .first.display(), .second.display(), .dest.display()
    )]
    Collision {
        /// The path inside the artifact.
        dest: PathBuf,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A selected symlink points outside the source directory.
    #[error("symlink {} points outside the source directory (to {})", .link.display(), .target.display())]
    SymlinkOutsideRoot {
        /// The link.
        link: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A selected symlink points to nothing (without `enable-symlinks`).
    #[error("symlink {} points to a file that does not exist", .link.display())]
    BrokenSymlink {
        /// The link.
        link: PathBuf,
    },
    /// Reading the tree failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Selects the files `spec` uploads from the build tree at `root`, sorted by
/// [`SelectedFile::dest`], without duplicates.
pub fn select(root: &Path, spec: &Artifacts) -> Result<Vec<SelectedFile>, ArtifactError> {
    let root = fs::canonicalize(root).map_err(io_err(root))?;
    let files = spec
        .files
        .iter()
        .map(Pattern::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let excludes = exclude_set(&spec.exclude_paths)?;
    let ctx = Ctx {
        root: &root,
        excludes: &excludes,
        discard_paths: spec.discard_paths,
        enable_symlinks: spec.enable_symlinks,
    };

    let mut chosen: BTreeMap<PathBuf, SelectedFile> = BTreeMap::new();
    for base in base_directories(&root, spec.base_directory.as_ref())? {
        for pattern in &files {
            for (rel, path) in pattern.candidates(&root, &base)? {
                if let Some(file) = ctx.admit(&rel, &path)? {
                    insert(&mut chosen, file)?;
                }
            }
        }
    }
    if chosen.is_empty() {
        return Err(ArtifactError::NoMatchingFiles { root });
    }
    Ok(chosen.into_values().collect())
}

/// Copies `files` under `dir`, creating directories as needed; kept symlinks
/// are recreated as symlinks. Refuses a `dest` that is absolute or has `..`.
pub fn copy_to(files: &[SelectedFile], dir: &Path) -> io::Result<()> {
    for file in files {
        if file.dest.as_os_str().is_empty()
            || !file
                .dest
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "artifact path {} is not a plain relative path",
                    file.dest.display()
                ),
            ));
        }
        let to = dir.join(&file.dest);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        // Never write through something already there (it could be a link).
        if fs::symlink_metadata(&to).is_ok() {
            fs::remove_file(&to)?;
        }
        match &file.symlink {
            Some(target) => make_symlink(target, &to)?,
            None => {
                fs::copy(&file.source, &to).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", file.source.display()))
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "enable-symlinks needs a Unix host",
    ))
}

fn insert(
    chosen: &mut BTreeMap<PathBuf, SelectedFile>,
    file: SelectedFile,
) -> Result<(), ArtifactError> {
    match chosen.get(&file.dest) {
        None => {
            chosen.insert(file.dest.clone(), file);
            Ok(())
        }
        // The same file reached through two patterns is one file.
        Some(old) if old.source == file.source && old.symlink == file.symlink => Ok(()),
        Some(old) => Err(ArtifactError::Collision {
            dest: file.dest.clone(),
            first: old.source.clone(),
            second: file.source,
        }),
    }
}

/// The settings that decide what happens to each candidate path.
struct Ctx<'a> {
    root: &'a Path,
    excludes: &'a GlobSet,
    discard_paths: bool,
    enable_symlinks: bool,
}

impl Ctx<'_> {
    /// Turns a candidate (`rel` to its base directory, `path` on disk) into a
    /// selected file, or `None` when it is excluded or not a file.
    fn admit(&self, rel: &str, path: &Path) -> Result<Option<SelectedFile>, ArtifactError> {
        if self.is_excluded(rel) {
            return Ok(None);
        }
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        let dest = if self.discard_paths {
            PathBuf::from(rel.rsplit('/').next().unwrap_or(rel))
        } else {
            PathBuf::from(rel)
        };
        let file_type = meta.file_type();
        if file_type.is_file() {
            return Ok(Some(SelectedFile {
                source: path.to_path_buf(),
                dest,
                symlink: None,
            }));
        }
        if !file_type.is_symlink() {
            return Ok(None); // directories, sockets, fifos, devices
        }
        let target = fs::read_link(path).map_err(io_err(path))?;
        if self.enable_symlinks {
            // The link is stored as a link: check where it points, lexically
            // (it may dangle), but read nothing through it.
            let parent = path.parent().unwrap_or(self.root);
            let resolved = lexical_join(parent, &target);
            if !resolved.starts_with(self.root) {
                return Err(ArtifactError::SymlinkOutsideRoot {
                    link: path.to_path_buf(),
                    target,
                });
            }
            return Ok(Some(SelectedFile {
                source: path.to_path_buf(),
                dest,
                symlink: Some(target),
            }));
        }
        let real = match fs::canonicalize(path) {
            Ok(real) => real,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArtifactError::BrokenSymlink {
                    link: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let meta = fs::metadata(&real).map_err(io_err(&real))?;
        if meta.is_dir() {
            return Ok(None); // a symlinked directory is never followed
        }
        if !real.starts_with(self.root) {
            return Err(ArtifactError::SymlinkOutsideRoot {
                link: path.to_path_buf(),
                target: real,
            });
        }
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some(SelectedFile {
            source: real,
            dest,
            symlink: None,
        }))
    }

    /// Excluding a path also excludes everything under it.
    fn is_excluded(&self, rel: &str) -> bool {
        if self.excludes.is_empty() {
            return false;
        }
        let mut end = rel.len();
        loop {
            if self.excludes.is_match(&rel[..end]) {
                return true;
            }
            match rel[..end].rfind('/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }
}

/// `parent.join(target)` with `.` and `..` resolved by text, not by disk.
fn lexical_join(parent: &Path, target: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in parent.join(target).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A `files`, `base-directory` or `exclude-paths` entry, normalized.
struct Pattern {
    /// Components, without `.` and empty ones; empty means the base itself.
    comps: Vec<String>,
    /// `None` when the pattern has no wildcard (a plain path).
    glob: Option<GlobMatcher>,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn normalize(raw: &Spanned<String>) -> Result<Vec<String>, ArtifactError> {
    let text = raw.value.as_str();
    let outside = || ArtifactError::OutsideRoot {
        pattern: text.to_string(),
        span: raw.span,
    };
    if text.starts_with('/') || text.starts_with('\\') || text.get(1..2) == Some(":") {
        return Err(outside());
    }
    let mut comps = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(outside()),
            c => comps.push(c.to_string()),
        }
    }
    Ok(comps)
}

fn compile(raw: &Spanned<String>, text: &str) -> Result<GlobMatcher, ArtifactError> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ArtifactError::InvalidGlob {
            pattern: raw.value.clone(),
            span: raw.span,
            message: e.kind().to_string(),
        })
}

fn exclude_set(excludes: &[Spanned<String>]) -> Result<GlobSet, ArtifactError> {
    let mut set = GlobSetBuilder::new();
    for raw in excludes {
        let comps = normalize(raw)?;
        if comps.is_empty() {
            continue;
        }
        let text = comps.join("/");
        let glob = GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .map_err(|e| ArtifactError::InvalidGlob {
                pattern: raw.value.clone(),
                span: raw.span,
                message: e.kind().to_string(),
            })?;
        set.add(glob);
    }
    set.build().map_err(|e| ArtifactError::InvalidGlob {
        pattern: excludes
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        span: excludes.first().map(|p| p.span).unwrap_or_default(),
        message: e.to_string(),
    })
}

impl Pattern {
    fn parse(raw: &Spanned<String>) -> Result<Pattern, ArtifactError> {
        let comps = normalize(raw)?;
        let glob = if comps.iter().any(|c| has_wildcard(c)) {
            Some(compile(raw, &comps.join("/"))?)
        } else {
            None
        };
        Ok(Pattern { comps, glob })
    }

    /// How many leading components have no wildcard.
    fn literal_prefix(&self) -> usize {
        self.comps
            .iter()
            .position(|c| has_wildcard(c))
            .unwrap_or(self.comps.len())
    }

    /// How deep below the literal prefix a match can be (`None`: any depth).
    fn max_depth(&self) -> Option<usize> {
        if self.comps.iter().any(|c| c.contains("**")) {
            None
        } else {
            Some(self.comps.len() - self.literal_prefix())
        }
    }

    /// The paths under `base` this pattern names, as `(relative, on disk)`:
    /// files and symlinks only (directories are descended into, not returned).
    fn candidates(
        &self,
        root: &Path,
        base: &Path,
    ) -> Result<Vec<(String, PathBuf)>, ArtifactError> {
        let prefix = self.literal_prefix();
        let mut out = Vec::new();
        match &self.glob {
            None => {
                // A plain path: the file it names, or every file under the
                // directory it names.
                let Some((last, parent)) = self.comps.split_last() else {
                    walk_files(base, "", None, &mut |rel, p| out.push((rel, p)))?;
                    return Ok(out);
                };
                let Some(dir) = real_dir_inside(root, base, parent)? else {
                    return Ok(out);
                };
                let path = dir.join(last);
                let rel = self.comps.join("/");
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        walk_files(&path, &rel, None, &mut |rel, p| out.push((rel, p)))?;
                    }
                    Ok(_) => out.push((rel, path)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
            Some(glob) => {
                let Some(start) = real_dir_inside(root, base, &self.comps[..prefix])? else {
                    return Ok(out);
                };
                let rel_start = self.comps[..prefix].join("/");
                walk_files(&start, &rel_start, self.max_depth(), &mut |rel, p| {
                    if glob.is_match(&rel) {
                        out.push((rel, p));
                    }
                })?;
            }
        }
        Ok(out)
    }
}

/// `base/comps...` if it is a directory inside `root` (following symlinks
/// named literally as long as they stay inside), else `None`.
fn real_dir_inside(
    root: &Path,
    base: &Path,
    comps: &[String],
) -> Result<Option<PathBuf>, ArtifactError> {
    let mut path = base.to_path_buf();
    path.extend(comps);
    let real = match fs::canonicalize(&path) {
        Ok(real) => real,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    if !real.starts_with(root) || !real.is_dir() {
        return Ok(None);
    }
    Ok(Some(real))
}

/// Calls `found(rel, path)` for every non-directory under `dir` (never
/// entering symlinked directories), `rel` being `rel_dir/...`.
fn walk_files(
    dir: &Path,
    rel_dir: &str,
    max_depth: Option<usize>,
    found: &mut dyn FnMut(String, PathBuf),
) -> Result<(), ArtifactError> {
    let mut walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    if let Some(depth) = max_depth {
        walker = walker.max_depth(depth);
    }
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            ArtifactError::Io {
                path,
                source: e.into(),
            }
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(sub) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let Some(sub) = sub.to_str() else {
            continue; // non-UTF-8 names cannot be matched by a YAML pattern
        };
        let rel = if rel_dir.is_empty() {
            sub.to_string()
        } else {
            format!("{rel_dir}/{sub}")
        };
        found(rel, entry.into_path());
    }
    Ok(())
}

/// The directories `files` is evaluated in: the root, or every directory
/// `base-directory` names or matches, sorted.
fn base_directories(
    root: &Path,
    base: Option<&Spanned<String>>,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let Some(raw) = base else {
        return Ok(vec![root.to_path_buf()]);
    };
    let pattern = Pattern::parse(raw)?;
    let none = || ArtifactError::NoBaseDirectory {
        pattern: raw.value.clone(),
        span: raw.span,
    };
    let Some(glob) = &pattern.glob else {
        return match real_dir_inside(root, root, &pattern.comps)? {
            Some(dir) => Ok(vec![dir]),
            None => Err(none()),
        };
    };
    let prefix = pattern.literal_prefix();
    let Some(start) = real_dir_inside(root, root, &pattern.comps[..prefix])? else {
        return Err(none());
    };
    let rel_start = pattern.comps[..prefix].join("/");
    let mut walker = walkdir::WalkDir::new(&start)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    if let Some(depth) = pattern.max_depth() {
        walker = walker.max_depth(depth);
    }
    let mut dirs = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| ArtifactError::Io {
            path: e.path().unwrap_or(&start).to_path_buf(),
            source: e.into(),
        })?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let Some(sub) = entry
            .path()
            .strip_prefix(&start)
            .ok()
            .and_then(Path::to_str)
        else {
            continue;
        };
        let rel = if rel_start.is_empty() {
            sub.to_string()
        } else {
            format!("{rel_start}/{sub}")
        };
        if glob.is_match(&rel) {
            dirs.push(entry.into_path());
        }
    }
    if dirs.is_empty() {
        return Err(none());
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests;
