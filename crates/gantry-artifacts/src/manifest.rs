//! The manifest: the list of an artifact's entries, and the rules every
//! manifest must keep before anything is written from it.
//!
//! Manifests come from our own `put_dir`/`put_zip`, but they are read back
//! from an object store that someone else may be able to write to, so
//! [`Manifest::validate`] treats every manifest as hostile: paths must be
//! plain relative paths, parents must be directories of the manifest, and a
//! symlink must resolve inside the tree even through other symlinks.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{Digest, Error, Result};

/// The value of [`Manifest::format`] this version writes and reads.
pub const MANIFEST_FORMAT: &str = "gantry-artifact-manifest/1";

/// Longest entry path accepted, in bytes (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// How many symlinks one resolution may pass through, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;

/// The list of an artifact's entries, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The entries, sorted by path (byte order), each path once.
    pub entries: Vec<Entry>,
}

/// One entry of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path inside the artifact: relative, `/`-separated, no `.` or `..`.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry is, with what each kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file whose content is the blob named by `sha256`.
    File {
        /// Whether the file is executable (materialized as 0755, else 0644).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        executable: bool,
        /// Size of the content in bytes (uncompressed).
        size: u64,
        /// SHA-256 of the content (uncompressed).
        sha256: Digest,
    },
    /// A directory (materialized as 0755). Listed even when it has
    /// entries, so empty directories survive and parents are explicit.
    Dir,
    /// A symbolic link, relative, resolving inside the artifact.
    Symlink {
        /// The link's target, as `readlink` returns it.
        target: String,
    },
}

impl Manifest {
    /// A manifest from entries in any order; sorts them and validates the result.
    pub fn new(mut entries: Vec<Entry>) -> Result<Self> {
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            entries,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Total size of the files' content, in bytes.
    pub fn logical_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Checks every rule a manifest must keep; the first broken one is the error.
    ///
    /// - the format is [`MANIFEST_FORMAT`];
    /// - entries are sorted by path with no path twice;
    /// - each path is relative, `/`-separated, with no empty, `.` or `..`
    ///   component, no NUL, at most 4096 bytes;
    /// - each entry's parent is a directory entry of the manifest;
    /// - each symlink's target is relative and, resolved through the
    ///   manifest's own symlinks, never leaves the tree.
    pub fn validate(&self) -> Result<()> {
        if self.format != MANIFEST_FORMAT {
            return Err(Error::manifest(
                "",
                format!("format is {:?}, expected {MANIFEST_FORMAT:?}", self.format),
            ));
        }
        for pair in self.entries.windows(2) {
            match pair[0].path.as_bytes().cmp(pair[1].path.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(Error::manifest(&pair[1].path, "path appears twice"));
                }
                std::cmp::Ordering::Greater => {
                    return Err(Error::manifest(
                        &pair[1].path,
                        format!("entries are not sorted: comes after {:?}", pair[0].path),
                    ));
                }
            }
        }
        let index: HashMap<&str, &EntryKind> = self
            .entries
            .iter()
            .map(|e| (e.path.as_str(), &e.kind))
            .collect();
        for entry in &self.entries {
            check_relative_path(&entry.path)
                .map_err(|reason| Error::manifest(&entry.path, reason))?;
            if let Some((parent, _)) = entry.path.rsplit_once('/') {
                match index.get(parent) {
                    Some(EntryKind::Dir) => {}
                    Some(_) => {
                        return Err(Error::manifest(
                            &entry.path,
                            format!("parent {parent:?} is not a directory"),
                        ));
                    }
                    None => {
                        return Err(Error::manifest(
                            &entry.path,
                            format!("parent directory {parent:?} is not in the manifest"),
                        ));
                    }
                }
            }
            if let EntryKind::Symlink { target } = &entry.kind {
                check_symlink_inside(&entry.path, target, |p| match index.get(p) {
                    Some(EntryKind::Symlink { target }) => Some(target.as_str()),
                    _ => None,
                })?;
            }
        }
        Ok(())
    }

    /// The manifest as stored: compact JSON, so equal trees give equal bytes.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Serializing these plain types cannot fail; an empty Vec would only
        // ever be refused later as invalid JSON.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::manifest("", format!("not a manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Checks that `path` is a plain relative path: what may appear in a manifest.
pub(crate) fn check_relative_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("path longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    for component in path.split('/') {
        match component {
            "" => return Err("empty path component (\"//\" or a trailing \"/\")".into()),
            "." => return Err("\".\" component".into()),
            ".." => return Err("\"..\" component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Resolves the symlink `link` → `target` the way the kernel would inside
/// the tree, following the tree's other symlinks (`symlink_target_of`), and
/// fails if any step goes above the tree's root.
///
/// Checking the target's text alone is not enough: with `d -> .`,
/// `e -> d/d/../..` looks like it stays inside but resolves to the root's
/// parent, because `d/d` is the root again before the `..`s apply.
pub(crate) fn check_symlink_inside<'a>(
    link: &str,
    target: &str,
    symlink_target_of: impl Fn(&str) -> Option<&'a str>,
) -> Result<()> {
    let escapes = |reason: &str| Error::SymlinkEscapes {
        path: link.to_owned(),
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    if target.is_empty() {
        return Err(escapes("empty target"));
    }
    if target.contains('\0') {
        return Err(escapes("target contains a NUL byte"));
    }
    if target.starts_with('/') {
        return Err(escapes("absolute target"));
    }
    // Where we are: the components below the root of the directory that
    // holds the link.
    let mut at: Vec<String> = link.split('/').map(str::to_owned).collect();
    at.pop();
    let mut pending: VecDeque<String> = target.split('/').map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err(escapes("resolves above the artifact's root"));
                }
            }
            _ => {
                at.push(component);
                let here = at.join("/");
                if let Some(next) = symlink_target_of(&here) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(escapes("too many levels of symlinks"));
                    }
                    if next.starts_with('/') {
                        return Err(escapes(&format!(
                            "passes through {here:?}, an absolute symlink"
                        )));
                    }
                    at.pop();
                    for part in next.split('/').rev() {
                        pending.push_front(part.to_owned());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                executable: false,
                size: 0,
                sha256: Digest::of(b""),
            },
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Dir,
        }
    }
    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
        }
    }

    fn reason(entries: Vec<Entry>) -> String {
        Manifest::new(entries).unwrap_err().to_string()
    }

    #[test]
    fn new_sorts_and_accepts_a_plain_tree() {
        let m =
            Manifest::new(vec![file("a/x"), dir("a"), link("l", "a/x"), file("a.txt")]).unwrap();
        let paths: Vec<_> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a.txt", "a/x", "l"]);
    }

    #[test]
    fn json_shape_is_stable() {
        let m = Manifest::new(vec![
            dir("d"),
            Entry {
                path: "d/run".into(),
                kind: EntryKind::File {
                    executable: true,
                    size: 0,
                    sha256: Digest::of(b""),
                },
            },
            link("l", "d"),
        ])
        .unwrap();
        let json = String::from_utf8(m.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"format":"gantry-artifact-manifest/1","entries":[{"path":"d","kind":"dir"},{"path":"d/run","kind":"file","executable":true,"size":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},{"path":"l","kind":"symlink","target":"d"}]}"#
        );
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for (path, why) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("../x", "\"..\" component"),
            ("a/../../x", "\"..\" component"),
            ("./x", "\".\" component"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("a\0b", "NUL"),
        ] {
            let entries = vec![file(path)];
            let msg = reason(entries);
            assert!(msg.contains(why), "{path:?}: {msg}");
        }
    }

    #[test]
    fn duplicates_and_unsorted_entries_are_refused() {
        assert!(reason(vec![file("a"), file("a")]).contains("appears twice"));
        let unsorted = Manifest {
            format: MANIFEST_FORMAT.into(),
            entries: vec![file("b"), file("a")],
        };
        assert!(
            unsorted
                .validate()
                .unwrap_err()
                .to_string()
                .contains("not sorted")
        );
    }

    #[test]
    fn parents_must_be_directories_of_the_manifest() {
        assert!(
            reason(vec![file("a/b")]).contains("parent directory \"a\" is not in the manifest")
        );
        assert!(reason(vec![file("a"), file("a/b")]).contains("parent \"a\" is not a directory"));
        // A file "through" a symlink could be written anywhere the link points.
        assert!(reason(vec![link("a", "."), file("a/b")]).contains("is not a directory"));
    }

    #[test]
    fn wrong_format_is_refused() {
        let m = Manifest {
            format: "other/2".into(),
            entries: vec![],
        };
        assert!(m.validate().unwrap_err().to_string().contains("format"));
    }

    #[test]
    fn symlinks_inside_are_kept() {
        Manifest::new(vec![
            dir("a"),
            dir("a/b"),
            file("top"),
            link("a/b/up", "../../top"),
            link("a/self", "."),
            link("a/dangling", "nothing-here"),
            link("chain1", "chain2"),
            link("chain2", "a/b"),
        ])
        .unwrap();
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        for (entries, why) in [
            (vec![link("l", "/etc")], "absolute target"),
            (vec![link("l", "..")], "above the artifact's root"),
            (
                vec![dir("a"), link("a/l", "../../x")],
                "above the artifact's root",
            ),
            (vec![link("l", "")], "empty target"),
            // Text-only check would pass this: d/d/d is the root again.
            (
                vec![link("d", "."), link("e", "d/d/d/../..")],
                "above the artifact's root",
            ),
            (vec![link("a", "b"), link("b", "a")], "too many levels"),
            (vec![link("abs", "/tmp"), link("via", "abs/x")], "absolute"),
        ] {
            let msg = reason(entries.clone());
            assert!(msg.contains(why), "{entries:?}: {msg}");
        }
    }
}
