//! Group commit for the SQLite store: commits are written with
//! `synchronous = NORMAL` (to the WAL, no fsync of their own), and one
//! thread makes them durable with an `fdatasync` of the WAL file that
//! covers every commit written before it began.
//!
//! Why: with `synchronous = FULL` every commit waited for its own fsync
//! while holding the store's one write connection, so commits were
//! serialised behind each other's flushes. Here the flush happens outside
//! the write connection, and one flush covers all the commits that
//! arrived while the previous one ran.
//!
//! What still holds (docs/server.md, "Durability"):
//! - [`WalSync::durable`] returns only after a flush that *began after it
//!   was called* has completed: everything committed before the call is on
//!   disk. The server calls it before every HTTP response, so what a client
//!   was answered (a 200, or state it read) survives a power cut, as with
//!   `FULL`.
//! - A request that wrote nothing skips the wait when nothing can be
//!   pending ([`WalSync::clean`] with the writer idle: the
//!   store's `durable`), so a read on a quiet server costs no flush.
//! - A failed flush fails every later `durable` too, until a restart:
//!   after one, Linux may report a later flush of the file as a success
//!   although the pages it could not write are gone.
//! - A commit is flushed soon even when no response waits for it: every
//!   batch and every return of the write connection marks the WAL dirty
//!   and wakes the thread, which flushes within [`DIRTY_LINGER`] (at once
//!   when a caller of `durable` comes meanwhile). The linger lets the
//!   commits nobody
//!   waits for (a build's end, its job queued, its log moved) share the
//!   flush of those that are waited for, rather than each costing an
//!   `fdatasync` of its own: half of a short remote build's flushes.
//! - A kill of the process loses nothing either way: written WAL frames are
//!   in the operating system's cache. Checkpoints still sync the WAL before
//!   copying it and the database after (`NORMAL` keeps that), and SQLite
//!   still syncs the WAL header when it restarts the WAL.
//!
//! The one thing weaker than `FULL`: between a commit and the next flush
//! (one `fdatasync`, about 0.1 ms here) a change is visible to the server's
//! own tasks before it is durable; a power cut in that window loses it,
//! and the state after restart is the database as of an earlier moment,
//! never a torn one (the WAL is replayed up to its last whole commit).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::StoreError;

/// How long a commit nobody waits for may wait for its flush, so that
/// it shares one with the commits that follow.
const DIRTY_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// The flush thread's bookkeeping.
#[derive(Debug, Default)]
struct Rounds {
    /// The highest round a caller of `durable` waits for.
    wanted: u64,
    /// The last round begun.
    started: u64,
    /// A commit may have been written since the last round began.
    dirty: bool,
    /// When `dirty` was last set (from clear).
    dirty_since: Option<std::time::Instant>,
    /// Every handle is gone: finish what is wanted, then end.
    stopping: bool,
}

/// The outcome of the last finished round.
#[derive(Debug, Clone, Default)]
struct Finished {
    round: u64,
    error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    wal: PathBuf,
    /// [`DIRTY_LINGER`], but for tests.
    linger: std::time::Duration,
    rounds: Mutex<Rounds>,
    wake: Condvar,
    finished: watch::Sender<Finished>,
}

impl Shared {
    fn rounds(&self) -> MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The flush thread of one database; it ends when the last clone of the
/// store that owns it is dropped.
#[derive(Debug)]
pub(crate) struct WalSync {
    shared: Arc<Shared>,
}

impl WalSync {
    /// Starts the flush thread for the database file `database`.
    pub(crate) fn start(database: &Path) -> Result<WalSync, StoreError> {
        WalSync::start_lingering(database, DIRTY_LINGER)
    }

    fn start_lingering(
        database: &Path,
        linger: std::time::Duration,
    ) -> Result<WalSync, StoreError> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let shared = Arc::new(Shared {
            wal: PathBuf::from(wal),
            linger,
            rounds: Mutex::new(Rounds::default()),
            wake: Condvar::new(),
            finished: watch::Sender::new(Finished::default()),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("gantry-wal-sync".into())
            .spawn(move || flush_loop(&thread))
            .map_err(|e| StoreError::Other(format!("starting the WAL flush thread: {e}").into()))?;
        Ok(WalSync { shared })
    }

    /// A commit may have been written: flush soon, whether or not anyone
    /// waits.
    pub(crate) fn mark_dirty(&self) {
        let mut rounds = self.shared.rounds();
        if !rounds.dirty {
            rounds.dirty = true;
            rounds.dirty_since = Some(std::time::Instant::now());
            self.shared.wake.notify_one();
        }
    }

    /// Whether every commit marked so far is on disk: a round began after
    /// the last mark, has finished, and no round ever failed. Then
    /// [`durable`](Self::durable) has nothing to wait for, provided no
    /// commit can have been written without its mark yet (the caller
    /// checks that the writer is idle).
    pub(crate) fn clean(&self) -> bool {
        let rounds = self.shared.rounds();
        let finished = self.shared.finished.borrow();
        !rounds.dirty
            && finished.round == rounds.started
            && rounds.wanted <= finished.round
            && finished.error.is_none()
    }

    /// Returns once everything committed before this call is on disk.
    pub(crate) async fn durable(&self) -> Result<(), StoreError> {
        let mut finished = self.shared.finished.subscribe();
        let target = {
            let mut rounds = self.shared.rounds();
            // A round already running may have begun before the caller's
            // last commit was written: only the next one is sure to cover it.
            let target = rounds.started + 1;
            if rounds.wanted < target {
                rounds.wanted = target;
                self.shared.wake.notify_one();
            }
            target
        };
        let done = finished
            .wait_for(|f| f.round >= target)
            .await
            .map_err(|_| StoreError::Other("the WAL flush thread has stopped".into()))?;
        match &done.error {
            Some(e) => Err(StoreError::Other(
                format!("flushing {} to disk: {e}", self.shared.wal.display()).into(),
            )),
            None => Ok(()),
        }
    }
}

impl Drop for WalSync {
    fn drop(&mut self) {
        self.shared.rounds().stopping = true;
        self.shared.wake.notify_one();
    }
}

fn flush_loop(shared: &Shared) {
    loop {
        let round = {
            let mut rounds = shared.rounds();
            loop {
                if rounds.wanted > rounds.started || rounds.stopping {
                    break;
                }
                if !rounds.dirty {
                    rounds = shared.wake.wait(rounds).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                // Only commits nobody waits for: flush once the oldest has
                // lingered, or as soon as somebody waits.
                let lingered = rounds.dirty_since.map_or(shared.linger, |t| t.elapsed());
                let Some(left) = shared.linger.checked_sub(lingered).filter(|d| !d.is_zero())
                else {
                    break;
                };
                rounds = shared
                    .wake
                    .wait_timeout(rounds, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if rounds.stopping && rounds.wanted <= rounds.started && !rounds.dirty {
                return;
            }
            rounds.dirty = false;
            rounds.dirty_since = None;
            rounds.started += 1;
            rounds.started
        };
        let error = match flush(&shared.wal) {
            Ok(()) => None,
            Err(e) => {
                // Reported to every caller waiting on this round too; logged
                // so that a flush nobody waited for is not silent.
                tracing::error!(wal = %shared.wal.display(), error = %e,
                    "flushing the WAL to disk failed; no answer is durable until restart");
                Some(e.to_string())
            }
        };
        // A failed flush stays failed: after one, Linux may report a later
        // flush of the same file as a success although the pages it could
        // not write are gone. So, as PostgreSQL stops on a failed fsync,
        // every later answer is a 500 until a restart replays the WAL from
        // disk.
        let error = error.or_else(|| shared.finished.borrow().error.clone());
        shared.finished.send_replace(Finished { round, error });
    }
}

/// `fdatasync` of the WAL. Opened each time: SQLite deletes the file when
/// its last connection closes (after checkpointing everything into the
/// database, and syncing it) and makes a new one on the next write, so a
/// descriptor kept open could name a deleted file. A missing WAL holds no
/// commit that is not already in the synced database.
fn flush(wal: &Path) -> std::io::Result<()> {
    match std::fs::File::open(wal) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn durable_waits_for_a_round_that_began_after_the_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").expect("wal");
        let sync = WalSync::start(&db).expect("start");
        sync.durable().await.expect("first");
        let before = sync.shared.finished.borrow().round;
        sync.durable().await.expect("second");
        assert!(sync.shared.finished.borrow().round > before);
    }

    #[tokio::test]
    async fn a_missing_wal_is_nothing_to_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = WalSync::start(&dir.path().join("none.db")).expect("start");
        sync.durable().await.expect("durable");
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported_to_its_waiters() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A WAL path whose parent is a file: opening it fails with
        // something other than NotFound.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").expect("file");
        let sync = WalSync::start(&blocker.join("x.db")).expect("start");
        let err = sync.durable().await.expect_err("must fail");
        assert!(err.to_string().contains("flushing"), "{err}");
        // And stays failed.
        let again = sync.durable().await.expect_err("still failed");
        assert!(again.to_string().contains("flushing"), "{again}");
    }

    #[tokio::test]
    async fn clean_only_once_every_mark_is_flushed_and_never_after_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").expect("wal");
        let sync = WalSync::start(&dir.path().join("x.db")).expect("start");
        assert!(sync.clean(), "nothing marked yet");
        // Marked, not yet flushed: held so the thread cannot start a round.
        {
            let mut rounds = sync.shared.rounds();
            rounds.dirty = true;
            assert!(!rounds.stopping);
        }
        assert!(!sync.clean());
        sync.durable().await.expect("flushed");
        assert!(sync.clean());

        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").expect("file");
        let failing = WalSync::start(&blocker.join("y.db")).expect("start");
        failing.mark_dirty();
        assert!(failing.durable().await.is_err());
        assert!(!failing.clean(), "a failed flush is never clean");
    }

    #[tokio::test]
    async fn dirty_marks_are_flushed_without_a_waiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = WalSync::start(&dir.path().join("x.db")).expect("start");
        let mut finished = sync.shared.finished.subscribe();
        sync.mark_dirty();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            finished.wait_for(|f| f.round >= 1),
        )
        .await
        .expect("a round within 10 s")
        .expect("thread alive");
    }

    #[tokio::test]
    async fn commits_nobody_waits_for_share_the_flush_of_one_that_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").expect("wal");
        let linger = std::time::Duration::from_secs(600);
        let sync = WalSync::start_lingering(&dir.path().join("x.db"), linger).expect("start");
        // Background commits: marked, lingering for company (a thread
        // flushing at once would have run a round by now).
        sync.mark_dirty();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sync.mark_dirty();
        assert_eq!(sync.shared.finished.borrow().round, 0);
        // A caller waits: one round covers it and them.
        sync.durable().await.expect("durable");
        assert_eq!(sync.shared.finished.borrow().round, 1);
        assert!(sync.clean());
    }

    #[tokio::test]
    async fn a_request_that_wrote_nothing_waits_for_no_flush_unless_the_writer_is_busy() {
        use crate::{BuildStore, MasterKey, ServerStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::from_bytes(&[7u8; 32]).expect("key");
        let store = crate::SqliteStore::open(&dir.path().join("g.db"), key)
            .await
            .expect("open");
        store
            .record_audit("tester", "test.write", "target", "detail")
            .await
            .expect("write");
        store.durable().await.expect("the write is flushed");
        let round = || store.wal.shared.finished.borrow().round;
        let flushed = round();
        // Nothing written since: no round is run for it.
        store.durable().await.expect("durable");
        store.audit_log(10).await.expect("a read");
        store.durable().await.expect("durable");
        assert_eq!(round(), flushed, "no flush for requests that wrote nothing");
        // While the writer is held a commit may be written and not yet
        // marked: a round that begins after the call is waited for.
        let held = store.writer.acquire().await.expect("writer");
        store.durable().await.expect("durable");
        assert!(round() > flushed, "a flush while the writer is busy");
        drop(held);
    }

    #[tokio::test]
    async fn a_stores_commit_is_flushed_without_anyone_waiting_and_durable_covers_it() {
        use crate::{BuildStore, MasterKey};
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::from_bytes(&[7u8; 32]).expect("key");
        let store = crate::SqliteStore::open(&dir.path().join("g.db"), key)
            .await
            .expect("open");
        // Opening wrote (migrations): flushed first, so that the round
        // awaited below is one that began after the write's mark (with the
        // linger, the opening's round may otherwise begin while the write
        // is under way and not cover it).
        crate::ServerStore::durable(&store)
            .await
            .expect("open flushed");
        let mut finished = store.wal.shared.finished.subscribe();
        let before = finished.borrow().round;
        store
            .record_audit("tester", "test.write", "target", "detail")
            .await
            .expect("write");
        // The write connection's return marked the WAL dirty: a round
        // runs with nobody waiting.
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            finished.wait_for(|f| f.round > before),
        )
        .await
        .expect("a flush within 10 s")
        .expect("thread alive");
        // That round began after the commit was marked: it covers it, and
        // `durable` has nothing more to wait for.
        let flushed = store.wal.shared.finished.borrow().round;
        crate::ServerStore::durable(&store).await.expect("durable");
        assert!(store.wal.clean());
        assert_eq!(store.wal.shared.finished.borrow().round, flushed);
    }
}
