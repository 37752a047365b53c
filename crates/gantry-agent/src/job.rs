//! One leased job on the agent: fetch the source, run the buildspec (or,
//! for a `command` job, its shell commands: see [`crate::command`]), ship
//! its log in numbered chunks, upload its artifacts by hash, send the
//! result — all under the lease, renewed by a heartbeat task that also
//! carries a stop request back, and that stops the build if the lease is
//! lost (a fenced agent must not go on as if it still owned the job).

use std::collections::VecDeque;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gantry_artifacts::ArtifactStore;
use gantry_build::executor::ExecutorKind;
use gantry_build::{BuildEvent, BuildOptions, Observer, StopHandle, StopReason};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::Backoff;
use crate::client::{Client, ClientError};
use crate::protocol::{BuildPayload, JobResult, Lease, LogChunk, LogItem, Offer, Payload};

/// What every job of an agent shares.
pub(crate) struct Context {
    pub client: Client,
    pub work_dir: PathBuf,
    pub lease_ms: u64,
    /// The server takes the last log chunk inside the result.
    pub result_log: bool,
    /// This agent's id, for the next offer asked for with a result.
    pub agent_id: String,
    /// The server answers a result with the next offer, when asked.
    pub next_offer: bool,
    /// The server answers a result with the next job leased, when asked.
    pub next_lease: bool,
    /// The agent drains: a result asks for no next job.
    pub draining: AtomicBool,
}

/// The most items in one log chunk.
const CHUNK_ITEMS: usize = 500;
/// How long the first log items are held before they are sent: a job
/// that ends meanwhile sends its whole log inside its result (one request
/// and one database commit less per chunk), and a longer one shows its
/// first lines this much later.
const FIRST_FLUSH: Duration = Duration::from_millis(200);
/// Upload piece size.
const UPLOAD_PIECE: usize = 1024 * 1024;

struct ChannelObserver(mpsc::UnboundedSender<LogItem>);

impl Observer for ChannelObserver {
    fn on_event(&self, _task: Option<&str>, event: &BuildEvent) {
        let _ = self.0.send(LogItem::from_event(event));
    }
}

/// The work directory of job slot `slot`, emptied of whatever the slot's
/// previous job left. Reusing one directory per slot (rather than a fresh
/// temporary tree per job) saves creating and deleting its inodes on every
/// job, which dominated the cost of short builds; a slot runs one job at a
/// time, so nothing else writes there meanwhile. The job's `src` directory
/// is kept too (emptied, its mode reset) when it is still a directory this
/// process owns: one inode fewer per job.
pub(crate) fn prepare_slot(work_dir: &Path, slot: usize) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = work_dir.join(format!("slot-{slot}"));
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                // Not followed: a symlink the last job left is removed
                // itself, never what it points at.
                let kind = entry.file_type()?;
                if kind.is_dir() && entry.file_name() == "src" && entry.metadata()?.uid() == me {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                    empty_dir(&path)?;
                } else if kind.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(&dir)?,
        Err(e) => return Err(e),
    }
    Ok(dir)
}

/// Removes everything inside `dir` (links themselves, not their targets).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The next job, as a result's answer brought it.
pub(crate) enum Next {
    /// Offered: the slot acknowledges it to take it.
    Offer(Offer),
    /// Leased already: the slot's to run (boxed: a lease carries its
    /// payload, several times an offer's size).
    Lease(Box<Lease>),
}

/// Runs one job to its end (or until its lease is lost), in the work
/// directory of slot `slot`. Returns the next job offered or leased to
/// this agent with the result's answer, if any: the slot's to take.
pub(crate) async fn run(cx: &Context, slot: usize, lease: Lease) -> Option<Next> {
    let job_id = lease.job_id.clone();
    let epoch = lease.epoch;
    tracing::info!(job = %job_id, work = %lease.payload.describe(), epoch, "job leased");
    let lost = Arc::new(AtomicBool::new(false));
    let (stop, signal) = StopHandle::new();
    let stop = Arc::new(stop);
    let heartbeat = tokio::spawn(heartbeats(
        cx.client.clone(),
        job_id.clone(),
        epoch,
        Duration::from_millis((lease.expires_in_ms / 3).max(10)),
        Duration::from_millis((cx.lease_ms / 3).max(10)),
        stop.clone(),
        lost.clone(),
    ));
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    let shipper = tokio::spawn(ship_logs(
        cx.client.clone(),
        job_id.clone(),
        epoch,
        log_rx,
        lost.clone(),
        cx.result_log,
    ));
    let work = match prepare_slot(&cx.work_dir, slot) {
        Ok(w) => w,
        Err(e) => {
            drop(log_tx);
            let (last_seq, tail) = shipper.await.unwrap_or((0, None));
            let mut result = failure(epoch, last_seq, "PROVISIONING", format!("work dir: {e}"));
            result.log = tail;
            let next = send_result(cx, &job_id, &result, &lost).await;
            heartbeat.abort();
            return next;
        }
    };
    let result = match &lease.payload {
        Payload::Build(build) => {
            let outcome = execute(cx, &lease, build, &work, signal, log_tx).await;
            let (last_seq, tail) = shipper.await.unwrap_or((0, None));
            match outcome {
                Ok((build, artifacts)) => {
                    let artifacts_sha256 = match artifacts {
                        Some(path) => upload(cx, &path, &lost).await,
                        None => None,
                    };
                    JobResult {
                        epoch,
                        last_seq,
                        build: Some(build),
                        error: None,
                        error_phase: None,
                        artifacts_sha256,
                        command: None,
                        log: tail,
                    }
                }
                Err((phase, message)) => JobResult {
                    log: tail,
                    ..failure(epoch, last_seq, phase, message)
                },
            }
        }
        Payload::Command(command) => {
            let outcome = crate::command::run(command, &work, signal, log_tx).await;
            let (last_seq, tail) = shipper.await.unwrap_or((0, None));
            match outcome {
                Ok(outcome) => JobResult {
                    epoch,
                    last_seq,
                    build: None,
                    error: None,
                    error_phase: None,
                    artifacts_sha256: None,
                    command: Some(outcome),
                    log: tail,
                },
                Err(message) => JobResult {
                    log: tail,
                    ..failure(epoch, last_seq, "PROVISIONING", message)
                },
            }
        }
    };
    let next = send_result(cx, &job_id, &result, &lost).await;
    heartbeat.abort();
    // Emptied now so a finished job's tree does not sit on disk until the
    // slot's next job (which empties it again, should this fail) — unless
    // that job came leased with the answer: it starts at once, by emptying
    // the slot, and doing it twice cost a directory walk per job.
    if !matches!(next, Some(Next::Lease(_)))
        && let Err(e) = prepare_slot(&cx.work_dir, slot)
    {
        tracing::warn!(job = %job_id, error = %e, "emptying the work directory failed");
    }
    tracing::info!(job = %job_id, "job done");
    next
}

fn failure(epoch: i64, last_seq: u64, phase: &str, message: String) -> JobResult {
    JobResult {
        epoch,
        last_seq,
        build: None,
        error: Some(message),
        error_phase: Some(phase.into()),
        artifacts_sha256: None,
        command: None,
        log: None,
    }
}

/// Fetches the source and runs the build; the result JSON and the
/// artifacts zip, or the phase and message of what went wrong.
async fn execute(
    cx: &Context,
    lease: &Lease,
    p: &BuildPayload,
    work: &Path,
    signal: gantry_build::StopSignal,
    log: mpsc::UnboundedSender<LogItem>,
) -> Result<(serde_json::Value, Option<PathBuf>), (&'static str, String)> {
    let src = work.join("src");
    // Made only when there is a tree to unpack or pack: a build without
    // source or artifacts creates no object store at all.
    let objects = || {
        ArtifactStore::local(work.join("objects"))
            .map_err(|e| ("PROVISIONING", format!("local artifact store: {e}")))
    };
    if p.source.is_some() {
        let objects = objects()?;
        let bytes = fetch_source(&cx.client, &lease.job_id, lease.epoch).await?;
        let mut file =
            tempfile::tempfile().map_err(|e| ("DOWNLOAD_SOURCE", format!("temp file: {e}")))?;
        file.write_all(&bytes)
            .and_then(|()| file.rewind())
            .map_err(|e| ("DOWNLOAD_SOURCE", format!("writing the source zip: {e}")))?;
        let reference = objects
            .put_zip(file)
            .await
            .map_err(|e| ("DOWNLOAD_SOURCE", format!("reading the source zip: {e}")))?;
        objects
            .materialize(&reference, &src)
            .await
            .map_err(|e| ("DOWNLOAD_SOURCE", format!("unpacking the source: {e}")))?;
    } else {
        std::fs::create_dir_all(&src).map_err(|e| {
            (
                "DOWNLOAD_SOURCE",
                format!("creating {}: {e}", src.display()),
            )
        })?;
    }
    let spec = gantry_spec::buildspec::parse(&p.buildspec).map_err(|diags| {
        let m: Vec<String> = diags.iter().map(|d| d.render("buildspec")).collect();
        (
            "DOWNLOAD_SOURCE",
            format!("Invalid buildspec: {}", m.join("; ")),
        )
    })?;
    let (executor, image) = match p.image.as_str() {
        "gantry:host" => (ExecutorKind::Host, None),
        "gantry:sandbox" => (ExecutorKind::Sandbox, None),
        other => (ExecutorKind::Docker, Some(other.to_owned())),
    };
    let mut options = BuildOptions::new(&src, executor);
    options.image = image;
    options.env = p.env.clone();
    options.timeout = Duration::from_secs(p.timeout_minutes * 60);
    options.project_name = p.project.clone();
    options.build_id = Some(p.build_id.clone());
    options.build_arn = p.build_arn.clone();
    options.build_number = p.build_number;
    options.initiator = p.initiator.clone();
    let artifacts_dir = work.join("artifacts");
    if p.wants_artifacts {
        options.artifacts_dir = Some(artifacts_dir.clone());
    }
    let observer: Arc<dyn Observer> = Arc::new(ChannelObserver(log.clone()));
    let result = gantry_build::run_build(&spec, &options, observer, signal)
        .await
        .map_err(|e| {
            let _ = log.send(LogItem::Line(format!("[Container] {e}")));
            ("PROVISIONING", e.to_string())
        })?;
    drop(log);
    let mut value = serde_json::to_value(&result)
        .map_err(|e| ("FINALIZING", format!("encoding the result: {e}")))?;
    relative_locations(&mut value, &artifacts_dir);
    let zip = if p.wants_artifacts && artifacts_dir.is_dir() {
        let objects = objects()?;
        let reference = objects
            .put_dir(&artifacts_dir)
            .await
            .map_err(|e| ("UPLOAD_ARTIFACTS", format!("packing artifacts: {e}")))?;
        let path = work.join("artifacts.zip");
        let file = std::fs::File::create(&path)
            .map_err(|e| ("UPLOAD_ARTIFACTS", format!("{}: {e}", path.display())))?;
        objects
            .write_zip(&reference, file)
            .await
            .map_err(|e| ("UPLOAD_ARTIFACTS", format!("zipping artifacts: {e}")))?;
        Some(path)
    } else {
        None
    };
    Ok((value, zip))
}

/// Artifact locations become relative to the artifacts directory: this
/// machine's paths mean nothing on the server, which puts the tree
/// in a directory of its own.
fn relative_locations(result: &mut serde_json::Value, artifacts_dir: &Path) {
    let rewrite = |entry: &mut serde_json::Value| {
        let Some(location) = entry.get("location").and_then(|l| l.as_str()) else {
            return;
        };
        let relative = Path::new(location)
            .strip_prefix(artifacts_dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        entry["location"] = serde_json::Value::String(relative);
    };
    if let Some(primary) = result.get_mut("artifacts") {
        rewrite(primary);
    }
    if let Some(list) = result
        .get_mut("secondaryArtifacts")
        .and_then(|s| s.as_array_mut())
    {
        list.iter_mut().for_each(rewrite);
    }
}

async fn fetch_source(
    client: &Client,
    job_id: &str,
    epoch: i64,
) -> Result<Vec<u8>, (&'static str, String)> {
    let mut backoff = Backoff::new();
    for _ in 0..8 {
        match client.source(job_id, epoch).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.is_transient() => tokio::time::sleep(backoff.next()).await,
            Err(e) => return Err(("DOWNLOAD_SOURCE", e.to_string())),
        }
    }
    Err(("DOWNLOAD_SOURCE", "the source could not be fetched".into()))
}

/// Renews the lease every `every`; a stop request stops the build, a lost
/// lease (409, 401) stops it and marks it lost.
async fn heartbeats(
    client: Client,
    job_id: String,
    epoch: i64,
    first: Duration,
    every: Duration,
    stop: Arc<StopHandle>,
    lost: Arc<AtomicBool>,
) {
    // The first renewal a third of the way into the term the lease named
    // (the lease timeout, or a shorter first term for a lease that came
    // with a poll's answer), not at once: renewing at once cost every job
    // a request and a database write, and most trivial jobs end before.
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match client.heartbeat(&job_id, epoch).await {
            Ok(reply) if reply.stop => stop.stop(StopReason::Requested),
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(job = %job_id, error = %e, "heartbeat failed; retrying")
            }
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "the lease is lost; stopping the build");
                lost.store(true, Ordering::SeqCst);
                stop.stop(StopReason::Requested);
                return;
            }
        }
    }
}

/// Holds the first items for up to [`FIRST_FLUSH`]: all of them, in one
/// chunk numbered 1, when the log ended meanwhile (`true`), else those that
/// came by then (`false`, to be sent as usual).
async fn first_items(rx: &mut mpsc::UnboundedReceiver<LogItem>) -> (Vec<LogItem>, bool) {
    let mut items = Vec::new();
    match rx.recv().await {
        Some(first) => items.push(first),
        None => return (items, true),
    }
    let deadline = tokio::time::Instant::now() + FIRST_FLUSH;
    while items.len() < CHUNK_ITEMS {
        tokio::select! {
            item = rx.recv() => match item {
                Some(i) => items.push(i),
                None => return (items, true),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    (items, false)
}

/// Sends log items in numbered chunks, in order, keeping every chunk until
/// the server acknowledges it (resent after a failure, with backoff).
/// Returns the last chunk number, and — when `in_result` and the log ended
/// within [`FIRST_FLUSH`] — the one chunk not sent, to go with the result.
async fn ship_logs(
    client: Client,
    job_id: String,
    epoch: i64,
    mut rx: mpsc::UnboundedReceiver<LogItem>,
    lost: Arc<AtomicBool>,
    in_result: bool,
) -> (u64, Option<LogChunk>) {
    let mut pending: VecDeque<LogChunk> = VecDeque::new();
    let mut seq = 0u64;
    let mut open = true;
    if in_result {
        let (items, ended) = first_items(&mut rx).await;
        if items.is_empty() {
            return (0, None);
        }
        let chunk = LogChunk {
            epoch,
            seq: 1,
            items,
        };
        if ended {
            return (1, Some(chunk));
        }
        seq = 1;
        pending.push_back(chunk);
    }
    let mut backoff = Backoff::new();
    loop {
        if open && pending.is_empty() {
            // Wait for at least one item, then take what else is ready.
            match rx.recv().await {
                Some(first) => {
                    let mut items = vec![first];
                    while items.len() < CHUNK_ITEMS {
                        match rx.try_recv() {
                            Ok(i) => items.push(i),
                            Err(_) => break,
                        }
                    }
                    seq += 1;
                    pending.push_back(LogChunk { epoch, seq, items });
                }
                None => open = false,
            }
        } else if open {
            let mut items = Vec::new();
            while items.len() < CHUNK_ITEMS {
                match rx.try_recv() {
                    Ok(i) => items.push(i),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if !items.is_empty() {
                seq += 1;
                pending.push_back(LogChunk { epoch, seq, items });
            }
        }
        let Some(chunk) = pending.front() else {
            if open {
                continue;
            }
            return (seq, None);
        };
        if lost.load(Ordering::SeqCst) {
            return (seq, None);
        }
        match client.logs(&job_id, chunk).await {
            Ok(ack) => {
                backoff.reset();
                while pending.front().is_some_and(|c| c.seq <= ack.acked) {
                    pending.pop_front();
                }
            }
            Err(e) if e.is_transient() => {
                let wait = backoff.next();
                tracing::warn!(job = %job_id, error = %e, buffered = pending.len(),
                    "sending logs failed; keeping them and retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "the server refused the log; the lease is lost");
                lost.store(true, Ordering::SeqCst);
                return (seq, None);
            }
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, total))
}

/// Uploads `path` by its hash, resuming from what the server holds.
async fn upload(cx: &Context, path: &Path, lost: &AtomicBool) -> Option<String> {
    let (sha, total) = match sha256_file(path) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "hashing the artifacts failed");
            return None;
        }
    };
    let mut backoff = Backoff::new();
    let mut offset = None;
    for _ in 0..50 {
        if lost.load(Ordering::SeqCst) {
            return None;
        }
        let at = match offset {
            Some(o) => o,
            None => match cx.client.upload_state(&sha).await {
                Ok(s) => s.offset,
                Err(e) => {
                    tracing::warn!(error = %e, "asking for the upload's offset failed");
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            },
        };
        let piece = match read_piece(path, at) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading the artifacts zip failed");
                return None;
            }
        };
        match cx.client.upload(&sha, at, total, piece).await {
            Ok(state) if state.complete => return Some(sha),
            Ok(state) => {
                backoff.reset();
                offset = Some(state.offset);
            }
            Err(e) => {
                tracing::warn!(error = %e, "uploading artifacts failed; resuming");
                offset = None;
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
    None
}

fn read_piece(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(UPLOAD_PIECE);
    file.take(UPLOAD_PIECE as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Sends the result until the server takes or refuses it; the answer may
/// carry the next job offered or leased to this agent (asked for unless
/// draining).
async fn send_result(
    cx: &Context,
    job_id: &str,
    result: &JobResult,
    lost: &AtomicBool,
) -> Option<Next> {
    let mut backoff = Backoff::new();
    loop {
        if lost.load(Ordering::SeqCst) {
            tracing::warn!(job = %job_id, "the lease was lost; the result is not sent");
            return None;
        }
        let draining = cx.draining.load(Ordering::SeqCst);
        let sent = if cx.next_lease && !draining {
            cx.client
                .result_then_lease(job_id, result, &cx.agent_id)
                .await
                .map(|lease| lease.map(|l| Next::Lease(Box::new(l))))
        } else if cx.next_offer && !draining {
            cx.client
                .result_then_offer(job_id, result, &cx.agent_id)
                .await
                .map(|offer| offer.map(Next::Offer))
        } else {
            cx.client.result(job_id, result).await.map(|()| None)
        };
        match sent {
            Ok(next) => return next,
            Err(ClientError::Transient(e)) => {
                tracing::warn!(job = %job_id, error = %e, "sending the result failed; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "the server refused the result");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_that_ends_quickly_is_held_whole_and_a_longer_one_is_sent() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..3 {
            tx.send(LogItem::Line(format!("l{i}"))).expect("send");
        }
        drop(tx);
        let (items, ended) = first_items(&mut rx).await;
        assert!(ended, "the log ended: it goes with the result");
        assert_eq!(items.len(), 3);
        // Still open after the hold: what came so far is sent as usual.
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(LogItem::Line("first".into())).expect("send");
        let (items, ended) = first_items(&mut rx).await;
        assert!(!ended);
        assert_eq!(items.len(), 1);
        drop(tx);
        // An empty log: nothing to send at all.
        let (tx, mut rx) = mpsc::unbounded_channel::<LogItem>();
        drop(tx);
        assert_eq!(first_items(&mut rx).await, (Vec::new(), true));
    }

    #[test]
    fn a_slot_is_made_then_emptied_without_following_links_out_of_it() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("keep"), "k").expect("write");
        let slot = prepare_slot(root.path(), 2).expect("slot");
        assert_eq!(slot, root.path().join("slot-2"));
        assert!(slot.is_dir());
        std::fs::create_dir_all(slot.join("src/deep/er")).expect("mkdir");
        std::fs::write(slot.join("src/deep/er/f"), "x").expect("write");
        std::fs::write(slot.join("artifacts.zip"), "z").expect("write");
        std::os::unix::fs::symlink(outside.path(), slot.join("link")).expect("symlink");
        std::os::unix::fs::symlink(outside.path(), slot.join("src/link")).expect("symlink");
        std::fs::set_permissions(slot.join("src"), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let again = prepare_slot(root.path(), 2).expect("slot");
        assert_eq!(again, slot);
        // Only the emptied `src` is left, with a fresh directory's mode.
        let left: Vec<_> = std::fs::read_dir(&slot)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["src"]);
        assert_eq!(
            std::fs::read_dir(slot.join("src")).expect("read").count(),
            0
        );
        let mode = std::fs::metadata(slot.join("src"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(
            outside.path().join("keep").exists(),
            "what a link pointed at is left alone"
        );
        // A `src` the last job replaced by a link is removed, not followed.
        std::fs::remove_dir(slot.join("src")).expect("rmdir");
        std::os::unix::fs::symlink(outside.path(), slot.join("src")).expect("symlink");
        prepare_slot(root.path(), 2).expect("slot");
        assert_eq!(std::fs::read_dir(&slot).expect("read").count(), 0);
        assert!(outside.path().join("keep").exists());
        // Another slot is another directory.
        assert_ne!(prepare_slot(root.path(), 3).expect("slot"), slot);
    }
}
