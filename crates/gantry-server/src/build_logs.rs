//! Finished build logs in the artifact store.
//!
//! While a build runs its log is rows in the database (`build_log_lines`),
//! appended in batches and read by line number. When it ends, the
//! [`Archiver`] writes the whole text (every line followed by `\n`, the same
//! text the REST API serves) to the artifact store, packed with the logs of
//! the other builds that ended meanwhile into one object
//! (`logs/packs/<ms>-<uuid>.log`; a log of 4 MiB or more gets an object of
//! its own, `logs/builds/<build-id>.log`), then records where each log is
//! (object, offset, length) and deletes the rows in one transaction. The
//! order matters: a crash after the object is written leaves the rows
//! (readers use them; the log is written again later), never neither. A
//! log rewritten later (late lines) leaves its old bytes unreferenced in
//! the earlier pack; nothing deletes finished logs yet. [`sweep`]
//! finishes moves that a crash, a failed write or a build ended by another
//! path (start-up recovery) left undone; every server runs it at start and
//! then every [`SWEEP_EVERY`].
//!
//! Because the object lives in the artifact store (a local directory by
//! default, any S3-compatible store with `--artifact-store s3://...`), every
//! server sharing the database and the store can read every finished log.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_artifacts::ArtifactStore;
use gantry_store::{LogArchive, LogLine, LogMove, Store, StoreError, now_ms};
use tokio::sync::{mpsc, oneshot};

/// How often each server looks for logs left in the database.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Lines read from the database at a time while archiving.
const READ_BATCH: u32 = 5000;

/// Builds archived per sweep query.
const SWEEP_BATCH: u32 = 100;

/// The object key of a build's finished log.
pub(crate) fn object_key(build_id: &str) -> String {
    format!("logs/builds/{build_id}.log")
}

fn store_error(e: gantry_artifacts::Error) -> StoreError {
    StoreError::other(e)
}

/// What the batch's two reads found of one build's log: its earlier
/// archive, its first lines, and whether those are all of them.
struct FirstRead {
    previous: Option<LogArchive>,
    lines: Vec<LogLine>,
    whole: bool,
}

/// Reads, for every build of `ids`, its earlier archive and its first
/// lines: two queries for the batch, where a build at a time was two
/// queries per build. A build whose lines the batch's read cut short (or
/// did not reach) reads the rest on its own in [`gather`].
async fn first_reads<S: Store + ?Sized>(
    store: &S,
    ids: &[String],
) -> Result<HashMap<String, FirstRead>, StoreError> {
    let mut reads: HashMap<String, FirstRead> = ids
        .iter()
        .map(|id| {
            let read = FirstRead {
                previous: None,
                lines: Vec::new(),
                whole: true,
            };
            (id.clone(), read)
        })
        .collect();
    for archive in store.log_archives(ids).await? {
        if let Some(read) = reads.get_mut(&archive.build_id) {
            read.previous = Some(archive);
        }
    }
    let lines = store.first_log_lines(ids, READ_BATCH).await?;
    let cut_at = match lines.last() {
        Some((last, _)) if lines.len() >= READ_BATCH as usize => Some(last.clone()),
        _ => None,
    };
    for (id, line) in lines {
        if let Some(read) = reads.get_mut(&id) {
            read.lines.push(line);
        }
    }
    // Lines come grouped by build (in the database's collation, which
    // need not be Rust's order): the last build read may go on, and a
    // build with no line read may not have been reached.
    if let Some(cut) = cut_at {
        for (id, read) in reads.iter_mut() {
            if *id == cut || read.lines.is_empty() {
                read.whole = false;
            }
        }
    }
    Ok(reads)
}

/// A finished build's whole log, gathered for its move: the text its
/// earlier archive held (if any) followed by the lines in the database.
struct Gathered {
    build_id: String,
    text: Vec<u8>,
    line_count: u64,
    /// The last line number read from the database: the rows up to it go
    /// once the move is recorded.
    through_seq: u64,
}

/// Reads a finished build's log: its earlier archive's text and every line
/// in the database after it (`first` is what the batch read of it,
/// [`first_reads`]). `None` when no line is in the database.
///
/// Lines that arrive after a build was archived (a late upload) are
/// appended to the earlier text, so the next object holds the whole log
/// again and line numbers carry on.
async fn gather<S: Store + ?Sized>(
    store: &S,
    objects: &ArtifactStore,
    build_id: &str,
    first: FirstRead,
) -> Result<Option<Gathered>, StoreError> {
    let (mut text, mut count) = match &first.previous {
        Some(a) => (
            read_range(objects, a, 0..a.size_bytes).await?.to_vec(),
            a.line_count,
        ),
        None => (Vec::new(), 0),
    };
    let mut last_seq = 0;
    let mut lines = first.lines;
    let mut whole = first.whole;
    loop {
        if let Some(last) = lines.last() {
            last_seq = last.seq;
            for line in &lines {
                text.extend_from_slice(line.text.as_bytes());
                text.push(b'\n');
            }
            count += lines.len() as u64;
        }
        // A short batch is the last: asking again would read nothing (the
        // build has ended, so no line is added meanwhile).
        if whole {
            break;
        }
        lines = store.log_lines(build_id, last_seq, READ_BATCH).await?;
        whole = lines.len() < READ_BATCH as usize;
    }
    if last_seq == 0 {
        return Ok(None);
    }
    Ok(Some(Gathered {
        build_id: build_id.to_owned(),
        text,
        line_count: count,
        through_seq: last_seq,
    }))
}

/// A log at least this long gets an object of its own
/// (`logs/builds/<build-id>.log`); shorter ones are packed.
const OWN_OBJECT_BYTES: usize = 4 * 1024 * 1024;

/// A pack is closed once it holds this many bytes.
const PACK_BYTES: usize = 8 * 1024 * 1024;

/// The key of a new pack: unique, so two servers packing at once (or one
/// packing a log again after late lines) never overwrite a pack another
/// record points into.
fn pack_key(archived_ms: i64) -> String {
    format!(
        "logs/packs/{archived_ms}-{}.log",
        uuid::Uuid::new_v4().simple()
    )
}

/// Writes gathered logs to the artifact store and returns the moves to
/// record. Short logs go one after another into packs, one object for
/// many builds: a busy server ends hundreds of builds a second, and an
/// object per build was the largest avoidable cost of a short build on
/// the server (creating a file in the local store, a request to S3).
/// A log whose object could not be written is left out (its lines stay in
/// the database for the next sweep); the others move.
async fn write_objects(objects: &ArtifactStore, logs: Vec<Gathered>) -> Vec<LogMove> {
    let archived_ms = now_ms();
    let mut objects_to_write: Vec<(String, Vec<u8>, Vec<LogMove>)> = Vec::new();
    let mut pack: Option<(String, Vec<u8>, Vec<LogMove>)> = None;
    for log in logs {
        let size_bytes = log.text.len() as u64;
        let moved = |key: &str, offset: u64| LogMove {
            archive: LogArchive {
                build_id: log.build_id.clone(),
                object_key: key.to_owned(),
                offset,
                size_bytes,
                line_count: log.line_count,
                archived_ms,
            },
            through_seq: log.through_seq,
        };
        if log.text.len() >= OWN_OBJECT_BYTES {
            let key = object_key(&log.build_id);
            let m = moved(&key, 0);
            objects_to_write.push((key, log.text, vec![m]));
            continue;
        }
        let (key, text, moves) =
            pack.get_or_insert_with(|| (pack_key(archived_ms), Vec::new(), Vec::new()));
        moves.push(moved(key, text.len() as u64));
        text.extend_from_slice(&log.text);
        if text.len() >= PACK_BYTES {
            objects_to_write.extend(pack.take());
        }
    }
    objects_to_write.extend(pack);
    let written = futures_util::future::join_all(objects_to_write.into_iter().map(
        |(key, text, moves)| async move {
            let outcome = objects.put_named(&key, text).await;
            (key, outcome, moves)
        },
    ))
    .await;
    let mut moves = Vec::new();
    for (key, outcome, those) in written {
        match outcome {
            Ok(()) => moves.extend(those),
            Err(e) => {
                let builds: Vec<&str> = those.iter().map(|m| m.archive.build_id.as_str()).collect();
                tracing::warn!(object = %key, builds = ?builds, error = %e, "writing finished build logs failed; the next sweep retries");
            }
        }
    }
    moves
}

/// Moves the logs of the finished builds `ids` to the artifact store: the
/// objects are written first, then every move is recorded (and the rows
/// deleted) in one transaction. Returns how many logs moved. A log that
/// could not be read or written stays in the database for the next sweep;
/// the others move.
///
/// Safe to repeat and to run on two servers at once: each writes objects
/// of its own, the last record of a build wins, and rows are deleted only
/// up to the last line each one read.
pub(crate) async fn archive_all<S: Store + ?Sized>(
    store: &S,
    objects: &ArtifactStore,
    ids: &[String],
) -> Result<usize, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut reads = first_reads(store, &ids).await?;
    let gathered = futures_util::future::join_all(ids.iter().map(|id| {
        let first = reads.remove(id).unwrap_or(FirstRead {
            previous: None,
            lines: Vec::new(),
            whole: false,
        });
        gather(store, objects, id, first)
    }))
    .await;
    let mut logs = Vec::with_capacity(ids.len());
    for (id, outcome) in ids.iter().zip(gathered) {
        match outcome {
            Ok(Some(log)) => logs.push(log),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(build = %id, error = %e, "reading a build's log to archive it failed; the next sweep retries")
            }
        }
    }
    let moves = write_objects(objects, logs).await;
    store.archive_logs(&moves).await?;
    Ok(moves.len())
}

/// Archives every ended build whose log is still in the database; returns
/// how many were archived.
pub(crate) async fn sweep<S: Store + ?Sized>(store: &S, objects: &ArtifactStore) -> usize {
    let mut done = 0;
    loop {
        let ids = match store.builds_with_unarchived_logs(SWEEP_BATCH).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "looking for build logs to archive failed");
                return done;
            }
        };
        let moved = match archive_all(store, objects, &ids).await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!(error = %e, builds = ids.len(), "recording moved build logs failed; the next sweep retries");
                0
            }
        };
        done += moved;
        // A short batch was the last; a batch that moved nothing would come
        // back the same.
        if ids.len() < SWEEP_BATCH as usize || moved == 0 {
            return done;
        }
    }
}

/// Moves finished builds' logs as builds end, in batches: the builds that
/// end while one batch is being moved make the next, and each batch is
/// one transaction. Under load that is one commit for many builds where
/// each build's move used to be a commit of its own (a tenth of the write
/// connection's time in `gantry bench agents`); a build ending alone is
/// moved [`ARCHIVE_LINGER`] after it ends.
///
/// What is queued here and not yet moved when the server stops stays in
/// the database, where readers find it; the sweep at the next start moves
/// it.
pub(crate) struct Archiver {
    queue: mpsc::UnboundedSender<Archive>,
}

enum Archive {
    /// A build has ended: move its log.
    Ended(String),
    /// Move what came before, answer, and stop.
    Finish(oneshot::Sender<()>),
}

/// Builds' logs moved per transaction, at most.
const ARCHIVE_BATCH: usize = 100;

/// How long the first build of a batch waits for others to end: under
/// load a batch then holds several builds (one commit, and one flush, for
/// all of them) where each build used to be a batch of its own. Readers
/// find the lines in the database meanwhile.
const ARCHIVE_LINGER: Duration = Duration::from_millis(20);

impl Archiver {
    /// Starts the mover on the current runtime. Outside one (no server
    /// runs) nothing is moved here; the sweep at a server's start moves it.
    pub(crate) fn start<S: Store>(store: Arc<S>, objects: ArtifactStore) -> Archiver {
        let (queue, mut requests) = mpsc::unbounded_channel::<Archive>();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Archiver { queue };
        };
        runtime.spawn(async move {
            let mut finished = None;
            while finished.is_none() {
                let Some(first) = requests.recv().await else {
                    return;
                };
                let mut ids = Vec::new();
                let mut next = Some(first);
                let until = tokio::time::Instant::now() + ARCHIVE_LINGER;
                while let Some(request) = next.take() {
                    match request {
                        Archive::Ended(id) => ids.push(id),
                        Archive::Finish(done) => {
                            finished = Some(done);
                            break;
                        }
                    }
                    if ids.len() < ARCHIVE_BATCH {
                        next = tokio::time::timeout_at(until, requests.recv())
                            .await
                            .ok()
                            .flatten();
                    }
                }
                if ids.is_empty() {
                    continue;
                }
                if let Err(e) = archive_all(store.as_ref(), &objects, &ids).await {
                    // The lines stay in the database, where readers find
                    // them; the sweep moves them later.
                    tracing::warn!(error = %e, builds = ids.len(), "moving finished build logs to the artifact store failed");
                }
            }
            if let Some(done) = finished {
                let _ = done.send(());
            }
        });
        Archiver { queue }
    }

    /// Queues the log of a build that has ended.
    pub(crate) fn ended(&self, build_id: &str) {
        let _ = self.queue.send(Archive::Ended(build_id.to_owned()));
    }

    /// Moves the logs queued so far, waiting at most `grace`; later ones
    /// are left to the sweep.
    pub(crate) async fn finish(&self, grace: Duration) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Archive::Finish(done)).is_ok() {
            let _ = tokio::time::timeout(grace, finished).await;
        }
    }
}

/// Bytes `range` of an archived log.
pub(crate) async fn read_range(
    objects: &ArtifactStore,
    archive: &LogArchive,
    range: Range<u64>,
) -> Result<Bytes, StoreError> {
    let end = range.end.min(archive.size_bytes);
    let start = range.start.min(end);
    objects
        .get_named_range(
            &archive.object_key,
            archive.offset + start..archive.offset + end,
        )
        .await
        .map_err(store_error)
}

/// The archived log's text from byte `start`, at most about `max` bytes,
/// ending on a character boundary; `start` must be on one.
pub(crate) async fn read_text(
    objects: &ArtifactStore,
    archive: &LogArchive,
    start: u64,
    max: u64,
) -> Result<String, StoreError> {
    // At least one whole character (UTF-8 takes up to 4 bytes), so a read
    // always moves on.
    let max = max.max(4);
    let bytes = read_range(objects, archive, start..start.saturating_add(max)).await?;
    let valid = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        // A character cut by the range's end is read by the next call.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        Err(e) => {
            return Err(StoreError::Other(
                format!(
                    "the archived log {} is not UTF-8 at byte {}: {e}",
                    archive.object_key,
                    start + e.valid_up_to() as u64
                )
                .into(),
            ));
        }
    };
    let text = std::str::from_utf8(bytes.get(..valid).unwrap_or_default())
        .map_err(|e| StoreError::Other(e.to_string().into()))?;
    Ok(text.to_owned())
}

/// The archived log's lines after line `after` (numbered from 1, as in the
/// database).
pub(crate) async fn lines_after(
    objects: &ArtifactStore,
    archive: &LogArchive,
    after: u64,
) -> Result<Vec<String>, StoreError> {
    if after >= archive.line_count {
        return Ok(Vec::new());
    }
    let bytes = read_range(objects, archive, 0..archive.size_bytes).await?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .split_terminator('\n')
        .skip(usize::try_from(after).unwrap_or(usize::MAX))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{BuildStore, BuildUpdate, NewBuild, NewProject};
    use serde_json::json;

    async fn ended_build(dir: &std::path::Path) -> gantry_store::SqliteStore {
        let key = gantry_store::MasterKey::load_or_create(&dir.join("k")).expect("key");
        let store = gantry_store::SqliteStore::open(&dir.join("db"), key)
            .await
            .expect("store");
        let project = NewProject {
            name: "web".into(),
            project: json!({"name": "web"}),
        };
        store
            .create_project(&project, "test")
            .await
            .expect("project");
        let build = NewBuild {
            id: "web:1".into(),
            project: "web".into(),
            status: "IN_PROGRESS".into(),
            current_phase: "BUILD".into(),
            build: json!({}),
            overrides: json!({}),
            start_ms: 1,
        };
        store.create_build(&build, "test").await.expect("build");
        let end = BuildUpdate {
            status: "FAILED".into(),
            current_phase: "COMPLETED".into(),
            build: json!({}),
            end_ms: Some(2),
        };
        store
            .update_build("web:1", &end, "system")
            .await
            .expect("end");
        store
    }

    /// One build's move, as the sweep makes it; where its log is after it.
    async fn archive(
        store: &gantry_store::SqliteStore,
        objects: &ArtifactStore,
        id: &str,
    ) -> Result<Option<LogArchive>, StoreError> {
        archive_all(store, objects, &[id.to_owned()]).await?;
        store.log_archive(id).await
    }

    /// Builds that end while the mover is busy go in its next batch; by
    /// `finish` every log queued before it has moved, lines gone from the
    /// database and the object holding them.
    #[tokio::test]
    async fn the_archiver_moves_every_queued_log_before_it_finishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(ended_build(dir.path()).await);
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        let mut ids = vec!["web:1".to_owned()];
        for n in 2..=40 {
            let id = format!("web:{n}");
            create_ended(&store, &id).await;
            ids.push(id);
        }
        for id in &ids {
            store
                .append_log_lines(id, &[format!("log of {id}")])
                .await
                .expect("append");
        }
        let archiver = Archiver::start(store.clone(), objects.clone());
        for id in &ids {
            archiver.ended(id);
        }
        archiver.finish(Duration::from_secs(30)).await;
        for id in &ids {
            let moved = store.log_archive(id).await.expect("q").expect("moved");
            assert_eq!(
                read_range(&objects, &moved, 0..moved.size_bytes)
                    .await
                    .expect("get"),
                format!("log of {id}\n").as_bytes()
            );
            assert!(store.log_lines(id, 0, 10).await.expect("q").is_empty());
        }
        // Finished: a later end is left to the sweep, not lost with an error.
        archiver.ended("web:1");
        archiver.finish(Duration::from_secs(1)).await;
    }

    /// Creates ended builds `ids` of project `web` (which [`ended_build`]
    /// made), each with the log lines given.
    async fn ended_builds(store: &gantry_store::SqliteStore, logs: &[(&str, Vec<String>)]) {
        for (id, lines) in logs {
            create_ended(store, id).await;
            store.append_log_lines(id, lines).await.expect("append");
        }
    }

    /// Creates the ended build `id` of project `web`, with no log.
    async fn create_ended(store: &gantry_store::SqliteStore, id: &str) {
        let build = NewBuild {
            id: id.to_owned(),
            project: "web".into(),
            status: "SUCCEEDED".into(),
            current_phase: "COMPLETED".into(),
            build: json!({}),
            overrides: json!({}),
            start_ms: 1,
        };
        store.create_build(&build, "test").await.expect("build");
    }

    /// Short logs that move together share one object, each at its own
    /// offset; a log of [`OWN_OBJECT_BYTES`] or more gets an object of its
    /// own. Every reader gets each log's bytes and no other's.
    #[tokio::test]
    async fn logs_moved_together_share_a_pack_and_a_long_one_has_its_own_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ended_build(dir.path()).await;
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        let long_line = "x".repeat(1023);
        let long: Vec<String> = (0..OWN_OBJECT_BYTES / 1024)
            .map(|_| long_line.clone())
            .collect();
        ended_builds(
            &store,
            &[
                ("web:2", vec!["two a".into(), "two b".into()]),
                ("web:3", long.clone()),
                ("web:4", vec!["four é".into()]),
            ],
        )
        .await;
        let ids: Vec<String> = ["web:2", "web:3", "web:4"].map(String::from).to_vec();
        assert_eq!(
            archive_all(&store, &objects, &ids).await.expect("archive"),
            3
        );

        let two = store.log_archive("web:2").await.expect("q").expect("moved");
        let four = store.log_archive("web:4").await.expect("q").expect("moved");
        let three = store.log_archive("web:3").await.expect("q").expect("moved");
        assert_eq!(two.object_key, four.object_key, "short logs share a pack");
        assert!(two.object_key.starts_with("logs/packs/"), "{two:?}");
        assert_eq!((two.offset, two.size_bytes), (0, 12));
        assert_eq!((four.offset, four.size_bytes), (12, 8));
        assert_eq!(three.object_key, object_key("web:3"));
        assert_eq!(three.offset, 0);
        assert_eq!(
            objects.list_named("logs/").await.expect("list").len(),
            2,
            "one pack and one object of its own"
        );

        assert_eq!(
            lines_after(&objects, &two, 0).await.expect("two"),
            ["two a", "two b"]
        );
        assert_eq!(
            lines_after(&objects, &four, 0).await.expect("four"),
            ["four é"]
        );
        assert_eq!(lines_after(&objects, &three, 0).await.expect("three"), long);
        assert_eq!(
            read_text(&objects, &four, 0, 100).await.expect("text"),
            "four é\n"
        );
        assert_eq!(
            read_text(&objects, &two, 6, 100).await.expect("tail"),
            "two b\n"
        );
        assert_eq!(
            read_range(&objects, &two, 0..1000).await.expect("range"),
            "two a\ntwo b\n".as_bytes(),
            "a read past a log's end stops at it, not in the next log"
        );
    }

    /// A pack that cannot be written moves none of its logs: their lines
    /// stay in the database, and a later sweep moves them.
    #[tokio::test]
    async fn logs_whose_pack_cannot_be_written_stay_in_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ended_build(dir.path()).await;
        let objects_dir = dir.path().join("objects");
        let objects = ArtifactStore::local(&objects_dir).expect("objects");
        ended_builds(&store, &[("web:2", vec!["two".into()])]).await;
        store
            .append_log_lines("web:1", &["one".into()])
            .await
            .expect("append");
        // A file where the packs' directory goes: every pack write fails.
        std::fs::create_dir_all(objects_dir.join("logs")).expect("mkdir");
        std::fs::write(objects_dir.join("logs").join("packs"), b"in the way").expect("block");

        let ids: Vec<String> = ["web:1", "web:2"].map(String::from).to_vec();
        assert_eq!(
            archive_all(&store, &objects, &ids).await.expect("archive"),
            0
        );
        for id in &ids {
            assert_eq!(store.log_archive(id).await.expect("q"), None);
            assert_eq!(store.log_lines(id, 0, 10).await.expect("q").len(), 1);
        }

        std::fs::remove_file(objects_dir.join("logs").join("packs")).expect("unblock");
        assert_eq!(sweep(&store, &objects).await, 2);
        let one = store.log_archive("web:1").await.expect("q").expect("moved");
        assert_eq!(lines_after(&objects, &one, 0).await.expect("one"), ["one"]);
        assert!(store.log_lines("web:1", 0, 10).await.expect("q").is_empty());
    }

    /// A batch's first read of lines stops at [`READ_BATCH`] lines in all:
    /// the build it cut short, and those it did not reach, read the rest
    /// on their own, so every object holds its whole log.
    #[tokio::test]
    async fn logs_longer_than_the_batchs_read_are_moved_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ended_build(dir.path()).await;
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        let sizes = [("web:1", 3000), ("web:2", 2), ("web:3", 4500), ("web:4", 0)];
        for (id, _) in &sizes[1..] {
            create_ended(&store, id).await;
        }
        for (id, n) in sizes {
            let lines: Vec<String> = (1..=n).map(|i| format!("{id} line {i}")).collect();
            store.append_log_lines(id, &lines).await.expect("append");
        }
        let ids: Vec<String> = sizes.iter().rev().map(|(id, _)| (*id).to_owned()).collect();
        assert_eq!(
            archive_all(&store, &objects, &ids).await.expect("archive"),
            3
        );
        for (id, n) in sizes {
            let Some(moved) = store.log_archive(id).await.expect("q") else {
                assert_eq!(n, 0, "{id} was not moved");
                continue;
            };
            assert_eq!(moved.line_count, n, "{id}");
            let text = lines_after(&objects, &moved, 0).await.expect("object");
            let expected: Vec<String> = (1..=n).map(|i| format!("{id} line {i}")).collect();
            assert_eq!(text, expected, "{id}");
            assert!(store.log_lines(id, 0, 10).await.expect("q").is_empty());
        }
    }

    /// Lines that arrive after the move (a late upload) are appended to the
    /// object by the next move, never replace it; line numbers carry on.
    #[tokio::test]
    async fn late_lines_are_appended_to_the_object_and_numbered_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ended_build(dir.path()).await;
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        assert_eq!(
            archive(&store, &objects, "web:1").await.expect("empty"),
            None
        );

        store
            .append_log_lines("web:1", &["one".into(), "two".into()])
            .await
            .expect("append");
        let first = archive(&store, &objects, "web:1")
            .await
            .expect("archive")
            .expect("moved");
        assert_eq!((first.size_bytes, first.line_count), (8, 2));
        // Nothing new: the same record, nothing written.
        assert_eq!(
            archive(&store, &objects, "web:1").await.expect("again"),
            Some(first.clone())
        );

        store
            .append_log_lines("web:1", &["three".into()])
            .await
            .expect("late");
        assert_eq!(sweep(&store, &objects).await, 1);
        let second = store.log_archive("web:1").await.expect("q").expect("moved");
        assert_eq!((second.size_bytes, second.line_count), (14, 3));
        assert_eq!(
            read_range(&objects, &second, 0..second.size_bytes)
                .await
                .expect("get"),
            "one\ntwo\nthree\n".as_bytes()
        );
        // Written anew, not over the pack the first move's record (which a
        // reader may still hold) points into.
        assert_ne!(second.object_key, first.object_key);
        assert_eq!(
            read_range(&objects, &first, 0..first.size_bytes)
                .await
                .expect("first"),
            "one\ntwo\n".as_bytes()
        );
        assert!(store.log_lines("web:1", 0, 10).await.expect("q").is_empty());

        assert_eq!(
            lines_after(&objects, &second, 0).await.expect("all"),
            ["one", "two", "three"]
        );
        assert_eq!(
            lines_after(&objects, &second, 2).await.expect("rest"),
            ["three"]
        );
        assert!(
            lines_after(&objects, &second, 3)
                .await
                .expect("none")
                .is_empty()
        );
    }

    /// The object holds what a reader of the lines would get; a text cut
    /// by the range's end inside a character ends before it.
    #[tokio::test]
    async fn ranged_text_stops_at_a_character_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ended_build(dir.path()).await;
        let objects = ArtifactStore::local(dir.path().join("objects")).expect("objects");
        store
            .append_log_lines("web:1", &["abcé".into()])
            .await
            .expect("append");
        let a = archive(&store, &objects, "web:1")
            .await
            .expect("a")
            .expect("moved");
        assert_eq!(a.size_bytes, 6);
        assert_eq!(read_text(&objects, &a, 0, 4).await.expect("cut"), "abc");
        assert_eq!(read_text(&objects, &a, 3, 1).await.expect("é"), "é\n");
        assert_eq!(
            read_text(&objects, &a, 0, 100).await.expect("all"),
            "abcé\n"
        );
        assert_eq!(read_text(&objects, &a, 6, 100).await.expect("end"), "");
    }
}
