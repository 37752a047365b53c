//! Prints figures for storing a directory: throughput, compression, and what
//! a second put of the same tree costs (dedup).
//!
//! ```sh
//! cargo run --release -p gantry-artifacts --example store_figures -- DIR
//! ```

use std::time::Instant;

use gantry_artifacts::ArtifactStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: store_figures DIR")?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::local(tmp.path().join("objects"))?;

    let started = Instant::now();
    let artifact = store.put_dir(&dir).await?;
    let first = started.elapsed();
    let manifest = store.manifest(&artifact).await?;
    let stats = store.stats().await?;

    let started = Instant::now();
    let again = store.put_dir(&dir).await?;
    let second = started.elapsed();
    assert_eq!(again, artifact);
    let after = store.stats().await?;

    let started = Instant::now();
    store.materialize(&artifact, tmp.path().join("out")).await?;
    let materialize = started.elapsed();

    let started = Instant::now();
    let zip = store
        .write_zip(&artifact, std::io::Cursor::new(Vec::new()))
        .await?
        .into_inner();
    let write_zip = started.elapsed();

    let logical = manifest.logical_size();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rate = |bytes: u64, secs: f64| mib(bytes) / secs.max(1e-9);
    println!("artifact           {artifact}");
    println!("entries            {}", manifest.entries.len());
    println!("file bytes         {logical} ({:.1} MiB)", mib(logical));
    println!("blobs              {}", stats.blobs);
    println!(
        "stored bytes       {} (ratio {:.2})",
        stats.stored_bytes,
        logical as f64 / stats.stored_bytes.max(1) as f64
    );
    println!(
        "first put          {:.3}s ({:.1} MiB/s)",
        first.as_secs_f64(),
        rate(logical, first.as_secs_f64())
    );
    println!(
        "second put         {:.3}s, new blobs {}",
        second.as_secs_f64(),
        after.blobs - stats.blobs
    );
    println!(
        "materialize        {:.3}s ({:.1} MiB/s)",
        materialize.as_secs_f64(),
        rate(logical, materialize.as_secs_f64())
    );
    println!(
        "write_zip          {:.3}s, {} bytes",
        write_zip.as_secs_f64(),
        zip.len()
    );
    Ok(())
}
