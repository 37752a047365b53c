//! The artifact store in an S3-compatible server nobody here wrote: moto's
//! S3 (from PyPI), reached through object_store's S3 client exactly as AWS S3
//! or MinIO would be.
//!
//! Needs a python3 with `moto[server]` and boto3, named by
//! `GANTRY_TEST_PYTHON`; without it the test prints SKIPPED and passes,
//! unless `GANTRY_REQUIRE_AWS_CLIENTS=1`, when it fails instead.

mod support;

use std::path::Path;

use gantry_artifacts::{ArtifactStore, S3Settings, StoreLocation};
use support::moto::{self, Moto};

fn settings(moto: &Moto) -> S3Settings {
    S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(moto::ACCESS_KEY_ID.into()),
        secret_access_key: Some(moto::SECRET_ACCESS_KEY.into()),
        session_token: None,
    }
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(dir.join("README"), b"hello").unwrap();
    // Larger than the in-memory limit set below: a multipart upload.
    std::fs::write(dir.join("big.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_round_trip_through_an_s3_bucket_under_their_prefix() {
    let Some(python) = moto::python() else { return };
    let moto = Moto::start(&python);
    moto.boto3(&python, "s3.create_bucket(Bucket='gantry-test')");

    let location = StoreLocation::parse("s3://gantry-test/ci/artifacts").unwrap();
    let store = ArtifactStore::open(&location, &settings(&moto)).unwrap();
    let store = store.with_limits(gantry_artifacts::Limits {
        in_memory_bytes: 1024 * 1024,
        ..Default::default()
    });

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let artifact = store.put_dir(&src).await.expect("put_dir to S3");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blobs, 4, "three files and the manifest");
    assert_eq!(store.put_dir(&src).await.unwrap(), artifact);
    assert_eq!(store.stats().await.unwrap(), stats, "stored once");

    let out = tmp.path().join("out");
    store.materialize(&artifact, &out).await.expect("read back");
    assert_eq!(std::fs::read(out.join("README")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap().len(),
        3 * 1024 * 1024
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(src.join("bin/app"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        std::fs::metadata(out.join("bin/app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        mode & 0o111
    );

    // Every object is under the prefix, as another S3 client sees the bucket.
    let keys = moto.keys(&python, "gantry-test");
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("ci/artifacts/blobs/sha256/")),
        "{keys:?}"
    );

    // Another prefix of the same bucket is another store.
    let other = ArtifactStore::open(
        &StoreLocation::parse("s3://gantry-test/other").unwrap(),
        &settings(&moto),
    )
    .unwrap();
    assert_eq!(other.stats().await.unwrap().blobs, 0);
    let missing = other.materialize(&artifact, &tmp.path().join("none")).await;
    assert!(
        matches!(missing, Err(gantry_artifacts::Error::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_naming_the_store() {
    let Some(python) = moto::python() else { return };
    let moto = Moto::start(&python);
    let store = ArtifactStore::open(
        &StoreLocation::parse("s3://no-such-bucket/x").unwrap(),
        &settings(&moto),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let err = store.put_dir(tmp.path()).await.expect_err("no bucket");
    let message = err.to_string();
    assert!(message.contains("object store"), "{message}");
}
