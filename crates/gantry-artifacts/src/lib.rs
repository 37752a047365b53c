/*!
Gantry's artifact store: directory trees stored content-addressed, compressed
and deduplicated in any [`object_store::ObjectStore`]: a local directory, or
AWS S3 and any S3-compatible store ([`StoreLocation`], [`ArtifactStore::open`]).

Each file's content is compressed with zstd and stored once, at
`blobs/sha256/<2 hex>/<64 hex>`, named by the SHA-256 of the uncompressed
content: the same file in a thousand builds takes the space of one. An
artifact is a [`Manifest`] — sorted entries with path, kind (file, dir,
symlink), executable bit, size, digest and symlink target — stored as a blob
itself; the manifest's digest, `sha256:<hex>`, is the artifact's
[`ArtifactRef`]. Equal trees have equal references.

Reading back never trusts the store: [`ArtifactStore::materialize`] checks
every path and symlink of the manifest before writing anything, verifies the
size and digest of every file, and renames each file into place only when it
is whole. CodePipeline passes artifacts as zip files;
[`ArtifactStore::write_zip`] and [`ArtifactStore::put_zip`] convert, with
zip-slip and zip-bomb protection. The formats and decisions are described in
`docs/artifacts-store.md`.

# Example

```
use gantry_artifacts::ArtifactStore;

# #[tokio::main(flavor = "current_thread")]
# async fn main() -> Result<(), gantry_artifacts::Error> {
let tmp = tempfile::tempdir().unwrap();
let (src, objects, out) = (tmp.path().join("src"), tmp.path().join("objects"), tmp.path().join("out"));
std::fs::create_dir_all(src.join("bin")).unwrap();
std::fs::write(src.join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
std::fs::write(src.join("README"), b"hello").unwrap();

let store = ArtifactStore::local(&objects)?;
let artifact = store.put_dir(&src).await?;
assert!(artifact.to_string().starts_with("sha256:"));

// Storing the same tree again gives the same reference and writes nothing new.
let before = store.stats().await?;
assert_eq!(store.put_dir(&src).await?, artifact);
assert_eq!(store.stats().await?, before);
assert_eq!(before.blobs, 3); // two files and the manifest

let manifest = store.materialize(&artifact, &out).await?;
assert_eq!(std::fs::read(out.join("README")).unwrap(), b"hello");
let paths: Vec<_> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
assert_eq!(paths, ["README", "bin", "bin/app"]);
# Ok(())
# }
```
*/
#![deny(missing_docs)]

mod archive;
mod blob;
mod digest;
mod error;
mod location;
mod manifest;
mod named;
mod store;
mod walk;

pub use digest::{ArtifactRef, Digest};
pub use error::{Error, Result};
pub use location::{S3Settings, StoreLocation};
pub use manifest::{Entry, EntryKind, MANIFEST_FORMAT, Manifest};
pub use named::NamedStream;
pub use store::{ArtifactStore, Limits, StoreStats};
