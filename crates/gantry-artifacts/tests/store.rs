//! The artifact store end to end on local disk: round trips, dedup,
//! corruption, hostile manifests and zips.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use gantry_artifacts::{ArtifactRef, ArtifactStore, Digest, Error, Limits};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: ArtifactStore,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let store = ArtifactStore::local(root.join("objects"))
            .unwrap()
            .with_limits(limits);
        Fixture {
            _tmp: tmp,
            root,
            store,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Every object in the store, by key.
    async fn objects(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .object_store()
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

fn write(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with files, an empty dir, an executable and symlinks.
fn sample_tree(dir: &Path) {
    write(&dir.join("README.md"), b"# hello\n", 0o644);
    write(&dir.join("bin/run.sh"), b"#!/bin/sh\necho run\n", 0o755);
    write(&dir.join("src/lib/a.txt"), b"same content", 0o644);
    write(&dir.join("src/b.txt"), b"same content", 0o600);
    std::fs::create_dir_all(dir.join("empty/nested")).unwrap();
    symlink("bin/run.sh", dir.join("run")).unwrap();
    symlink("../README.md", dir.join("src/readme-link")).unwrap();
    symlink("lib", dir.join("src/lib-link")).unwrap();
    symlink("does-not-exist", dir.join("dangling")).unwrap();
}

/// What a tree holds: path → description, for comparing two trees.
fn describe(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in walkdir::WalkDir::new(dir).min_depth(1) {
        let item = item.unwrap();
        let rel = item
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let meta = std::fs::symlink_metadata(item.path()).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(item.path()).unwrap().display()
            )
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            format!(
                "file exec={exec} {:?}",
                String::from_utf8_lossy(&std::fs::read(item.path()).unwrap())
            )
        };
        out.insert(rel, what);
    }
    out
}

#[tokio::test]
async fn round_trip_keeps_files_empty_dirs_exec_bits_and_symlinks() {
    let fx = Fixture::new();
    sample_tree(&fx.path("src"));
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    let manifest = fx
        .store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap();
    assert_eq!(describe(&fx.path("src")), describe(&fx.path("out")));
    let mode = |p: &str| std::fs::metadata(fx.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("out/bin/run.sh"), 0o755);
    // Non-executable files come out 0644 whatever they were (0600 here).
    assert_eq!(mode("out/src/b.txt"), 0o644);
    assert_eq!(mode("out/empty/nested"), 0o755);
    assert!(manifest.entries.iter().any(|e| e.path == "empty/nested"));
    assert_eq!(fx.store.manifest(&artifact).await.unwrap(), manifest);
}

#[tokio::test]
async fn equal_trees_give_equal_references_and_a_second_put_writes_no_blob() {
    let fx = Fixture::new();
    sample_tree(&fx.path("a"));
    let first = fx.store.put_dir(fx.path("a")).await.unwrap();
    let objects = fx.objects().await;
    // 3 distinct contents (README, run.sh, "same content" once) + manifest.
    assert_eq!(objects.len(), 4, "{objects:#?}");
    assert!(objects.iter().all(|k| k.starts_with("blobs/sha256/")));

    assert_eq!(fx.store.put_dir(fx.path("a")).await.unwrap(), first);
    assert_eq!(fx.objects().await, objects);

    // A copy elsewhere is the same artifact.
    sample_tree(&fx.path("b"));
    assert_eq!(fx.store.put_dir(fx.path("b")).await.unwrap(), first);

    // One more file adds exactly its blob and a new manifest.
    write(&fx.path("b/new.txt"), b"new", 0o644);
    let second = fx.store.put_dir(fx.path("b")).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(fx.objects().await.len(), objects.len() + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_the_same_content_both_succeed_and_store_it_once() {
    let fx = Fixture::new();
    for i in 0..20 {
        write(
            &fx.path(&format!("src/f{i}")),
            format!("content {}", i % 5).as_bytes(),
            0o644,
        );
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = fx.store.clone();
            let dir = fx.path("src");
            tokio::spawn(async move { store.put_dir(dir).await })
        })
        .collect();
    let mut refs = Vec::new();
    for task in tasks {
        refs.push(task.await.unwrap().unwrap());
    }
    assert!(refs.windows(2).all(|w| w[0] == w[1]));
    // 5 distinct contents + 1 manifest, nothing else (no temp leftovers).
    assert_eq!(fx.objects().await.len(), 6);
    fx.store
        .materialize(&refs[0], fx.path("out"))
        .await
        .unwrap();
    assert_eq!(describe(&fx.path("src")), describe(&fx.path("out")));
}

#[tokio::test]
async fn large_files_go_through_temporary_files_and_multipart_uploads() {
    let fx = Fixture::with_limits(Limits {
        in_memory_bytes: 1024,
        ..Limits::default()
    });
    // Incompressible, so the compressed blob is also above the limit.
    let mut state = 0x2545F4914F6CDD1Du64;
    let content: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    write(&fx.path("src/big.bin"), &content, 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    fx.store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(fx.path("out/big.bin")).unwrap(), content);
    let stats = fx.store.stats().await.unwrap();
    assert!(stats.stored_bytes > 300_000);
    assert_eq!(fx.store.put_dir(fx.path("src")).await.unwrap(), artifact);
    assert_eq!(fx.store.stats().await.unwrap(), stats);
}

#[tokio::test]
async fn stats_count_blobs_stored_and_logical_bytes() {
    let fx = Fixture::new();
    assert_eq!(fx.store.stats().await.unwrap().blobs, 0);
    let zeros = vec![0u8; 100_000];
    write(&fx.path("src/zeros"), &zeros, 0o644);
    write(&fx.path("src/copy"), &zeros, 0o644);
    write(&fx.path("src/hi"), b"hi", 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    let manifest = fx.store.manifest(&artifact).await.unwrap();
    let manifest_json_len = serde_json::to_vec(&manifest).unwrap().len() as u64;
    let stats = fx.store.stats().await.unwrap();
    assert_eq!(stats.blobs, 3);
    assert_eq!(stats.logical_bytes, 100_000 + 2 + manifest_json_len);
    // Zeros compress very well.
    assert!(stats.stored_bytes < 10_000, "{stats:?}");
    assert_eq!(manifest.logical_size(), 200_002);
}

/// Flips one byte in the middle of the stored blob of `content`.
fn corrupt_blob(fx: &Fixture, content: &[u8]) {
    let hex = Digest::of(content).to_hex();
    let path = fx.path(&format!("objects/blobs/sha256/{}/{hex}", &hex[..2]));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn a_corrupted_blob_fails_materialize_naming_the_file_and_leaves_nothing() {
    let fx = Fixture::new();
    write(&fx.path("src/ok.txt"), b"fine", 0o644);
    let payload = b"this file will be damaged in the store ".repeat(50);
    write(&fx.path("src/deep/bad.txt"), &payload, 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    corrupt_blob(&fx, &payload);
    let err = fx
        .store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap_err();
    match &err {
        Error::Corrupt { path, .. } => assert_eq!(path, "deep/bad.txt"),
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.to_string().contains("deep/bad.txt"), "{err}");
    assert!(
        !fx.path("out").exists(),
        "a failed materialize must not leave a partial tree"
    );

    // Into an existing empty directory: emptied again, not removed.
    std::fs::create_dir(fx.path("out2")).unwrap();
    fx.store
        .materialize(&artifact, fx.path("out2"))
        .await
        .unwrap_err();
    assert_eq!(std::fs::read_dir(fx.path("out2")).unwrap().count(), 0);

    // The zip writer checks too.
    let err = fx
        .store
        .write_zip(&artifact, Cursor::new(Vec::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deep/bad.txt"), "{err}");
}

#[tokio::test]
async fn a_blob_replaced_by_valid_zstd_of_other_content_is_caught_by_its_digest() {
    let fx = Fixture::new();
    write(&fx.path("src/app.cfg"), b"debug = false\n", 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    // Same length, valid zstd, different bytes: only the digest can tell.
    let hex = Digest::of(b"debug = false\n").to_hex();
    let forged = zstd::stream::encode_all(&b"debug = true!\n"[..], 3).unwrap();
    std::fs::write(
        fx.path(&format!("objects/blobs/sha256/{}/{hex}", &hex[..2])),
        forged,
    )
    .unwrap();
    let err = fx
        .store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, reason, .. } if path == "app.cfg" && reason.contains("SHA-256")),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_blob_or_manifest_is_reported() {
    let fx = Fixture::new();
    write(&fx.path("src/a.txt"), b"aaa", 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    let hex = Digest::of(b"aaa").to_hex();
    fx.store
        .object_store()
        .delete(&ObjPath::from(format!("blobs/sha256/{}/{hex}", &hex[..2])))
        .await
        .unwrap();
    let err = fx
        .store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a.txt") && err.to_string().contains("missing"),
        "{err}"
    );

    let unknown: ArtifactRef = format!("sha256:{}", Digest::of(b"nothing").to_hex())
        .parse()
        .unwrap();
    assert!(matches!(fx.store.manifest(&unknown).await, Err(Error::NotFound(r)) if r == unknown));
    assert!(!fx.store.contains(&unknown).await.unwrap());
    assert!(fx.store.contains(&artifact).await.unwrap());
}

#[tokio::test]
async fn a_corrupted_manifest_is_reported_as_such() {
    let fx = Fixture::new();
    write(&fx.path("src/a.txt"), b"aaa", 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    let json = serde_json::to_vec(&fx.store.manifest(&artifact).await.unwrap()).unwrap();
    corrupt_blob(&fx, &json);
    let err = fx.store.manifest(&artifact).await.unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path == "manifest"),
        "{err}"
    );
}

#[tokio::test]
async fn materialize_refuses_a_destination_with_content() {
    let fx = Fixture::new();
    write(&fx.path("src/a"), b"a", 0o644);
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    write(&fx.path("out/existing"), b"x", 0o644);
    let err = fx
        .store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err}");
    assert_eq!(std::fs::read(fx.path("out/existing")).unwrap(), b"x");
    write(&fx.path("file"), b"x", 0o644);
    assert!(
        fx.store
            .materialize(&artifact, fx.path("file"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn put_dir_refuses_symlinks_leaving_the_tree() {
    for (link, target) in [
        ("up", "../outside"),
        ("abs", "/etc/passwd"),
        ("sub/deep", "../../x"),
    ] {
        let fx = Fixture::new();
        write(&fx.path("src/sub/file"), b"f", 0o644);
        symlink(target, fx.path("src").join(link)).unwrap();
        let err = fx.store.put_dir(fx.path("src")).await.unwrap_err();
        match &err {
            Error::SymlinkEscapes { path, .. } => assert_eq!(path, link),
            other => panic!("{link} -> {target}: expected SymlinkEscapes, got {other}"),
        }
        assert!(
            fx.objects().await.is_empty(),
            "nothing is uploaded for a refused tree"
        );
    }
    // Through another symlink: d -> . makes d/d/.. the root's parent.
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("src")).unwrap();
    symlink(".", fx.path("src/d")).unwrap();
    symlink("d/d/../..", fx.path("src/e")).unwrap();
    assert!(matches!(
        fx.store.put_dir(fx.path("src")).await,
        Err(Error::SymlinkEscapes { .. })
    ));
}

#[tokio::test]
async fn put_dir_refuses_sockets_and_fifos() {
    let fx = Fixture::new();
    write(&fx.path("src/a"), b"a", 0o644);
    let _listener = std::os::unix::net::UnixListener::bind(fx.path("src/sock")).unwrap();
    let err = fx.store.put_dir(fx.path("src")).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedFileType { kind: "socket", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sock"), "{err}");

    let fx = Fixture::new();
    write(&fx.path("src/a"), b"a", 0o644);
    let status = std::process::Command::new("mkfifo")
        .arg(fx.path("src/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let err = fx.store.put_dir(fx.path("src")).await.unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedFileType { kind: "FIFO", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn put_dir_of_a_missing_directory_names_it() {
    let fx = Fixture::new();
    let err = fx.store.put_dir(fx.path("nope")).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

/// Stores `json` as a (forged) manifest blob and returns its reference.
async fn forge_manifest(fx: &Fixture, json: &str) -> ArtifactRef {
    let digest = Digest::of(json.as_bytes());
    let compressed = zstd::stream::encode_all(json.as_bytes(), 3).unwrap();
    let hex = digest.to_hex();
    fx.store
        .object_store()
        .put(
            &ObjPath::from(format!("blobs/sha256/{}/{hex}", &hex[..2])),
            compressed.into(),
        )
        .await
        .unwrap();
    ArtifactRef::from_digest(digest)
}

#[tokio::test]
async fn forged_manifests_are_refused_before_anything_is_written() {
    let fx = Fixture::new();
    let content = Digest::of(b"x").to_hex();
    let file =
        |path: &str| format!(r#"{{"path":"{path}","kind":"file","size":1,"sha256":"{content}"}}"#);
    let cases = [
        (file("../escape"), "\\\"..\\\" component"),
        (file("/etc/passwd"), "absolute path"),
        (file("a/../../x"), "\\\"..\\\" component"),
        (
            file("a/b"),
            "parent directory \\\"a\\\" is not in the manifest",
        ),
        (
            r#"{"path":"l","kind":"symlink","target":"../../etc"}"#.to_owned(),
            "outside",
        ),
        (
            r#"{"path":"l","kind":"symlink","target":"/etc"}"#.to_owned(),
            "absolute target",
        ),
        (
            format!(
                r#"{{"path":"l","kind":"symlink","target":"."}},{}"#,
                file("l/x")
            ),
            "is not a directory",
        ),
        (format!("{},{}", file("a"), file("a")), "appears twice"),
        (
            r#"{"path":"x","kind":"device"}"#.to_owned(),
            "not a manifest",
        ),
        (
            r#"{"path":"x","kind":"file","size":1,"sha256":"XYZ"}"#.to_owned(),
            "not a manifest",
        ),
    ];
    for (entries, why) in cases {
        let json = format!(r#"{{"format":"gantry-artifact-manifest/1","entries":[{entries}]}}"#);
        let artifact = forge_manifest(&fx, &json).await;
        let err = fx
            .store
            .materialize(&artifact, fx.path("out"))
            .await
            .unwrap_err();
        let msg = format!("{err:?} / {err}");
        assert!(msg.contains(why), "{entries}: {msg}");
        assert!(!fx.path("out").exists(), "{entries}: wrote something");
    }
    let artifact = forge_manifest(&fx, "not json").await;
    assert!(fx.store.manifest(&artifact).await.is_err());
}

#[tokio::test]
async fn a_manifest_stored_under_the_wrong_name_is_corrupt() {
    let fx = Fixture::new();
    let json = r#"{"format":"gantry-artifact-manifest/1","entries":[]}"#;
    let compressed = zstd::stream::encode_all(json.as_bytes(), 3).unwrap();
    let claimed = Digest::of(b"something else");
    let hex = claimed.to_hex();
    fx.store
        .object_store()
        .put(
            &ObjPath::from(format!("blobs/sha256/{}/{hex}", &hex[..2])),
            compressed.into(),
        )
        .await
        .unwrap();
    let err = fx
        .store
        .manifest(&ArtifactRef::from_digest(claimed))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path == "manifest"),
        "{err}"
    );
}

// ---- zip ----

#[tokio::test]
async fn zip_round_trip_gives_the_same_artifact_and_stable_bytes() {
    let fx = Fixture::new();
    sample_tree(&fx.path("src"));
    let artifact = fx.store.put_dir(fx.path("src")).await.unwrap();
    let zip_bytes = fx
        .store
        .write_zip(&artifact, Cursor::new(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    let again = fx
        .store
        .write_zip(&artifact, Cursor::new(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        zip_bytes, again,
        "one artifact must always give the same zip"
    );

    // What other tools see.
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes.clone())).unwrap();
    let mut seen = BTreeMap::new();
    for i in 0..archive.len() {
        let f = archive.by_index(i).unwrap();
        seen.insert(
            f.name().unwrap().into_owned(),
            (f.is_dir(), f.is_symlink(), f.unix_mode().unwrap() & 0o777),
        );
    }
    assert_eq!(seen["bin/run.sh"], (false, false, 0o755));
    assert_eq!(seen["README.md"], (false, false, 0o644));
    assert_eq!(seen["empty/nested/"], (true, false, 0o755));
    assert!(seen["run"].1);

    let back = fx.store.put_zip(Cursor::new(zip_bytes)).await.unwrap();
    assert_eq!(back, artifact);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(content).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn put_zip_adds_implied_directories_and_reads_windows_separators() {
    let fx = Fixture::new();
    let zip = zip_of(&[("a/b/c.txt", b"c"), ("x\\y.txt", b"y"), ("./top.txt", b"t")]);
    let artifact = fx.store.put_zip(Cursor::new(zip)).await.unwrap();
    let paths: Vec<_> = fx
        .store
        .manifest(&artifact)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["a", "a/b", "a/b/c.txt", "top.txt", "x", "x/y.txt"]);
    fx.store
        .materialize(&artifact, fx.path("out"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(fx.path("out/x/y.txt")).unwrap(), b"y");
}

#[tokio::test]
async fn put_zip_refuses_zip_slip_and_clashing_names() {
    let fx = Fixture::new();
    for (entries, why) in [
        (vec![("../evil.sh", &b"x"[..])], "\"..\""),
        (vec![("ok/../../evil.sh", b"x")], "\"..\""),
        (vec![("/etc/cron.d/evil", b"x")], "absolute"),
        (vec![("C:\\Windows\\evil", b"x")], "drive letter"),
        (vec![("a", b"x"), ("a/b", b"y")], "not a directory"),
        (vec![("a/b", b"y"), ("a", b"x")], "clashes"),
    ] {
        let err = fx
            .store
            .put_zip(Cursor::new(zip_of(&entries)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{entries:?}: {err}");
    }
    // A name given twice cannot be built with the zip writer (it refuses);
    // the same clash check (`Tree::insert`) covers it.

    // An escaping symlink inside a zip.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_symlink(
        "link",
        "../../etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let err = fx
        .store
        .put_zip(Cursor::new(w.finish().unwrap().into_inner()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SymlinkEscapes { .. }), "{err}");

    let err = fx
        .store
        .put_zip(Cursor::new(b"PK not really a zip".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Zip { .. }), "{err}");
}

#[tokio::test]
async fn put_zip_enforces_entry_count_and_size_limits() {
    let fx = Fixture::with_limits(Limits {
        zip_max_entries: 3,
        zip_max_uncompressed_bytes: 1_000_000,
        ..Limits::default()
    });
    let many = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")]);
    let err = fx.store.put_zip(Cursor::new(many)).await.unwrap_err();
    assert!(
        matches!(&err, Error::ZipLimit { reason } if reason.contains("4 entries")),
        "{err}"
    );

    // A bomb: 4 MB of zeros compress to a few KB.
    let zeros = vec![0u8; 4_000_000];
    let bomb = zip_of(&[("zeros", &zeros)]);
    assert!(bomb.len() < 50_000);
    let err = fx.store.put_zip(Cursor::new(bomb)).await.unwrap_err();
    assert!(matches!(err, Error::ZipLimit { .. }), "{err}");

    // The budget is for the whole archive, not per entry.
    let half = vec![1u8; 600_000];
    let err = fx
        .store
        .put_zip(Cursor::new(zip_of(&[("one", &half), ("two", &half)])))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ZipLimit { reason } if reason.contains("\"two\"")),
        "{err}"
    );
    fx.store
        .put_zip(Cursor::new(zip_of(&[("one", &half)])))
        .await
        .unwrap();
}

// ---- generated trees ----

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, bool),
    Dir(Vec<(String, Node)>),
}

fn node() -> impl Strategy<Value = Node> {
    let file = (
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(c, x)| Node::File(c, x));
    file.prop_recursive(3, 24, 5, |inner| {
        proptest::collection::btree_map(
            "[a-z0-9._-]{1,8}".prop_filter("not . or ..", |n| n != "." && n != ".."),
            inner,
            0..5,
        )
        .prop_map(|m| Node::Dir(m.into_iter().collect()))
    })
}

fn build(dir: &Path, children: &[(String, Node)], files: &mut Vec<PathBuf>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, child) in children {
        let path = dir.join(name);
        match child {
            Node::File(content, exec) => {
                write(&path, content, if *exec { 0o755 } else { 0o644 });
                files.push(path);
            }
            Node::Dir(grand) => build(&path, grand, files),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_trees_round_trip(children in proptest::collection::vec(("[a-z]{1,6}", node()), 0..6), link_to in any::<prop::sample::Index>()) {
        let mut unique = BTreeMap::new();
        for (name, n) in children { unique.insert(name, n); }
        let children: Vec<_> = unique.into_iter().collect();
        let fx = Fixture::new();
        let src = fx.path("src");
        let mut files = Vec::new();
        build(&src, &children, &mut files);
        if !files.is_empty() {
            // A symlink at the root to one of the files.
            let target = files[link_to.index(files.len())].strip_prefix(&src).unwrap().to_path_buf();
            symlink(&target, src.join("zz-link")).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let artifact = fx.store.put_dir(&src).await.unwrap();
            fx.store.materialize(&artifact, fx.path("out")).await.unwrap();
            prop_assert_eq!(describe(&src), describe(&fx.path("out")));
            let zip = fx.store.write_zip(&artifact, Cursor::new(Vec::new())).await.unwrap().into_inner();
            prop_assert_eq!(fx.store.put_zip(Cursor::new(zip)).await.unwrap(), artifact);
            Ok(())
        })?;
    }
}

#[test]
fn store_works_over_any_object_store() {
    // The in-memory store stands in for S3: only the trait is used.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        sample_tree(&tmp.path().join("src"));
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = ArtifactStore::new(memory);
        let artifact = store.put_dir(tmp.path().join("src")).await.unwrap();
        store
            .materialize(&artifact, tmp.path().join("out"))
            .await
            .unwrap();
        assert_eq!(
            describe(&tmp.path().join("src")),
            describe(&tmp.path().join("out"))
        );
    });
}
