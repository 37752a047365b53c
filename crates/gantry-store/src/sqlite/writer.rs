//! The store's one SQLite write connection, owned by a thread of its own
//! that runs what it is sent in order, back to back.
//!
//! Why a thread: SQLite lets one connection write at a time, so every
//! write queues for this one. When callers took the connection in turns
//! (a fair semaphore), a hold lasted from the caller's wake-up to its
//! hand-back: with 50 agents' requests on the runtime, the result of a
//! 0.26 ms batch reached its caller, and the connection reached the next
//! caller, only after each task's turn came round, and a hold took
//! 0.6–0.9 ms: the connection was held 86 % of the time and a StartBuild
//! queued ~20 ms for it (docs/benchmarks.md, "Session of 2026-12-03,
//! 10:08–13:08 UTC"). Here a [`Batch`] is carried out by the writer's own
//! thread, which goes on to the next one the moment it is done; the
//! caller's wake-up happens outside the hold. (On two cores with 50 agents
//! the machine is saturated either way, and the threads' waits are waits
//! for a CPU: the next session of docs/benchmarks.md.) The thread runs
//! batches on SQLite itself, with sqlx's worker parked ([`super::raw`]):
//! through sqlx each statement's result was a wake-up of this thread.
//!
//! Writes that need Rust code between their statements (an interactive
//! transaction, [`Writer::begin`], or a statement run on the writer as an
//! `Executor`) still borrow the connection: the thread lends it
//! ([`Held`]) and waits for it back, so those are served in their turn,
//! as before. The hot paths use batches.
//!
//! What the thread keeps:
//! - callers are served in the order they asked;
//! - a transaction dropped without a commit (an error, a cancelled
//!   request) is rolled back at once: the rollback is queued on sqlx's
//!   worker ahead of anything later, as sqlx's own `Transaction` does, so
//!   it does not hold SQLite's write lock against another process's
//!   connection until the next use; and a transaction of sqlx's still
//!   open when a lent connection comes back is rolled back before the
//!   next job;
//! - a batch runs to its end whatever its caller does: a caller that goes
//!   away does not cut it off between `BEGIN` and `COMMIT`;
//! - every batch and every hand-back tells the WAL flush thread a commit
//!   may have been written ([`super::durability`]) before its caller hears
//!   of it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use std::ptr::NonNull;

use sqlx::sqlite::{SqliteArgumentValue, SqliteTransactionManager};
use sqlx::{Connection, Executor, Sqlite, SqliteConnection, TransactionManager};
use tokio::sync::{mpsc, oneshot};

use super::durability::WalSync;
pub(crate) use super::raw::Step;
use super::raw::{self, Statements};
use crate::StoreError;

/// The write connection's thread, as its callers see it; cheap to clone
/// (clones share it). The thread ends, closing the connection, when the
/// last clone is dropped or [`Writer::close`] is called.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs sent and not yet done: a batch not yet run, a connection not
    /// yet handed back. Lowered only after the job's WAL mark.
    busy: Arc<AtomicUsize>,
}

/// What the thread is asked to do.
enum Job {
    Batch(Batch, oneshot::Sender<Result<Vec<Step>, sqlx::Error>>),
    Lend(oneshot::Sender<Result<Held, sqlx::Error>>),
    Close(oneshot::Sender<()>),
}

/// The write connection while one caller has it; handed back to the
/// writer's thread when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    conn: Option<SqliteConnection>,
    back: Option<oneshot::Sender<SqliteConnection>>,
    wal: Weak<WalSync>,
    /// The writer's count of jobs not done, this one among them.
    busy: Arc<AtomicUsize>,
}

/// A transaction on the borrowed connection: rolled back unless committed.
#[derive(Debug)]
pub(crate) struct WriteTx {
    held: Held,
    open: bool,
}

fn closed() -> sqlx::Error {
    sqlx::Error::PoolClosed
}

impl Writer {
    /// Starts the thread that owns `conn`. `wal`: the flush thread to tell
    /// of every write (a weak reference, so the writer does not keep it
    /// alive after the last store is dropped).
    pub(crate) fn start(conn: SqliteConnection, wal: Weak<WalSync>) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let busy = Arc::new(AtomicUsize::new(0));
        // Its own single-threaded runtime: the thread's wake-ups (sqlx's
        // worker answering, a job arriving) do not queue behind the
        // server's tasks.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("starting the SQLite writer: {e}").into()))?;
        let thread_busy = busy.clone();
        std::thread::Builder::new()
            .name("gantry-sqlite-writer".into())
            .spawn(move || runtime.block_on(drive(conn, queue, thread_busy, wal)))
            .map_err(|e| StoreError::Other(format!("starting the SQLite writer: {e}").into()))?;
        Ok(Writer { jobs, busy })
    }

    fn send(&self, job: Job) -> Result<(), sqlx::Error> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|_| {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            closed()
        })
    }

    /// Borrows the connection, in turn with every other job.
    pub(crate) async fn acquire(&self) -> Result<Held, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Lend(reply))?;
        // Should this future be dropped first, the thread's send fails and
        // the `Held` it gets back hands the connection back at once.
        answer.await.map_err(|_| closed())?
    }

    /// Whether nothing sent to the writer is still to be done. A job's
    /// commit is marked in the WAL flush thread before it stops counting.
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Begins a transaction (`BEGIN`, deferred, as sqlx's `begin` does) on
    /// the borrowed connection.
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        // Open before `BEGIN` is sent: should this future be dropped while
        // SQLite runs it, the drop still queues the rollback after it.
        let mut tx = WriteTx {
            held: self.acquire().await?,
            open: true,
        };
        SqliteTransactionManager::begin(&mut tx.held, None).await?;
        Ok(tx)
    }

    /// Runs `batch` in one transaction on the writer's thread; on an error
    /// nothing of it stays. See [`Batch`].
    pub(crate) async fn run(&self, batch: Batch) -> Result<Vec<Step>, sqlx::Error> {
        if let Some(e) = batch.bind_error {
            return Err(sqlx::Error::Encode(e.into()));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Job::Batch(batch, reply))?;
        answer.await.map_err(|_| closed())?
    }

    /// Waits for every job sent before it and closes the connection (the
    /// last connection to the file to close checkpoints the WAL and
    /// removes it); later uses fail.
    pub(crate) async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Job::Close(reply)).is_ok() {
            let _ = answer.await;
        }
    }
}

/// The writer's thread: one job at a time, in the order sent.
async fn drive(
    mut conn: SqliteConnection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    busy: Arc<AtomicUsize>,
    wal: Weak<WalSync>,
) {
    let mark = || {
        if let Some(wal) = wal.upgrade() {
            wal.mark_dirty();
        }
    };
    // A batch's `BEGIN` that a failed `ROLLBACK` may have left open
    // (sqlx does not count it): ended before anything else runs.
    let mut stranded = false;
    let mut statements = Statements::default();
    // A job taken from the queue while batches ran, still to do.
    let mut next: Option<Job> = None;
    let closing = loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => break None, // every `Writer` is gone
            },
        };
        match job {
            Job::Batch(batch, reply) => {
                // The handle is taken from sqlx once and kept while
                // batches follow one another (taking it is a round trip
                // to sqlx's worker); a job of another kind gives it back.
                let taken = match settle(&mut conn, &mut stranded).await {
                    Ok(()) => conn.lock_handle().await,
                    Err(e) => Err(e),
                };
                let mut handle = match taken {
                    Ok(handle) => handle,
                    Err(e) => {
                        busy.fetch_sub(1, Ordering::SeqCst);
                        let _ = reply.send(Err(e));
                        continue;
                    }
                };
                let mut group = vec![(batch, reply)];
                let mut gone = false;
                while !group.is_empty() {
                    // The batches already queued behind it join it, up to
                    // a bound: one commit for them all (see `run_group`).
                    while group.len() < GROUP_AT_MOST && next.is_none() {
                        match queue.try_recv() {
                            Ok(Job::Batch(job, reply)) => group.push((job, reply)),
                            Ok(other) => next = Some(other),
                            Err(_) => break,
                        }
                    }
                    let (batches, replies): (Vec<Batch>, Vec<_>) = group.drain(..).unzip();
                    let db = handle.as_raw_handle();
                    let outcomes = run_group(db, &mut statements, &batches, &mut stranded);
                    mark();
                    busy.fetch_sub(replies.len(), Ordering::SeqCst);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                    if next.is_some() {
                        break;
                    }
                    match queue.recv().await {
                        Some(Job::Batch(job, reply)) => group.push((job, reply)),
                        Some(other) => next = Some(other),
                        None => gone = true,
                    }
                }
                drop(handle);
                if gone {
                    break None;
                }
            }
            Job::Lend(reply) => {
                if let Err(e) = settle(&mut conn, &mut stranded).await {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = reply.send(Err(e));
                    continue;
                }
                let (back, returned) = oneshot::channel();
                let held = Held {
                    conn: Some(conn),
                    back: Some(back),
                    wal: wal.clone(),
                    busy: busy.clone(),
                };
                // Refused when the borrower has gone: the `Held` then
                // comes back with the error and its drop returns the
                // connection, as a borrower's drop does.
                drop(reply.send(Ok(held)));
                match returned.await {
                    Ok(back) => conn = back,
                    Err(_) => {
                        // Only a `Held` forgotten without its drop: the
                        // connection is gone, and so is the writer.
                        tracing::error!("the SQLite write connection was not handed back");
                        // Its statements cannot be finalized without it.
                        statements.abandon();
                        return;
                    }
                }
                // The borrower's transaction, should one still be open
                // (its `WriteTx`'s drop queued the rollback already).
                if SqliteTransactionManager::get_transaction_depth(&conn) > 0 {
                    let _ = SqliteTransactionManager::rollback(&mut conn).await;
                }
            }
            Job::Close(reply) => break Some(reply),
        }
    };
    // Jobs still queued are dropped with the queue: their callers hear
    // the writer is closed.
    queue.close();
    // The statements are finalized before the connection closes, with the
    // handle held (sqlx's worker parked); never with it unheld.
    match conn.lock_handle().await {
        Ok(mut handle) => statements.clear(handle.as_raw_handle()),
        Err(_) => statements.abandon(),
    }
    let _ = conn.close().await;
    if let Some(reply) = closing {
        busy.fetch_sub(1, Ordering::SeqCst);
        let _ = reply.send(());
    }
}

/// Ends a transaction left open by an earlier job before the next runs.
async fn settle(conn: &mut SqliteConnection, stranded: &mut bool) -> Result<(), sqlx::Error> {
    if SqliteTransactionManager::get_transaction_depth(conn) > 0 {
        SqliteTransactionManager::rollback(conn).await?;
    }
    if *stranded {
        rollback_raw(conn).await?;
        *stranded = false;
    }
    Ok(())
}

/// Statements run in one transaction (`BEGIN IMMEDIATE; …; COMMIT`) by
/// the writer's thread, straight on SQLite's handle ([`super::raw`]), as
/// one job ([`Writer::run`]).
///
/// Why: sqlx runs every statement, and `BEGIN` and `COMMIT` too, as a
/// round trip of its own to the connection's worker thread (a wake-up each
/// way), and a transaction run from a caller's task also waits for that
/// task's turn between its statements, all while the store's one write
/// connection is held (`gantry bench agents`, docs/benchmarks.md). A batch
/// is one job, whatever its length, and no wait for a caller.
///
/// What it asks of the caller: a statement cannot depend on what Rust code
/// decides after an earlier one, so such a dependency is said in SQL
/// (`changes()`, a subquery). Each statement's changed-row count and
/// returned rows come back ([`Step`]). Arguments bind in order across the
/// statements, as sqlx binds a query's.
///
/// The transaction's safety: sqlx does not see the batch's `BEGIN` (its
/// transaction depth stays 0), so the writer's thread sees it to its end
/// and rolls back when a statement fails; should that rollback fail, the
/// transaction is rolled back before the next job.
pub(crate) struct Batch {
    sql: String,
    args: Vec<SqliteArgumentValue<'static>>,
    statements: usize,
    bind_error: Option<String>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            sql: String::new(),
            args: Vec::new(),
            statements: 0,
            bind_error: None,
        }
    }

    /// Appends one statement (without its `;`); its `?`s take the values
    /// bound next, in order.
    pub(crate) fn push(&mut self, statement: &str) -> &mut Batch {
        self.sql.push_str(statement);
        self.sql.push_str(";\n");
        self.statements += 1;
        self
    }

    /// How many statements it holds: the index in [`Writer::run`]'s
    /// answer of the statement pushed next.
    pub(crate) fn len(&self) -> usize {
        self.statements
    }

    /// Binds the next `?`.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Batch
    where
        T: sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite> + 'static,
    {
        // As sqlx's own arguments take a value: its encoding, or NULL.
        let before = self.args.len();
        match value.encode(&mut self.args) {
            Ok(sqlx::encode::IsNull::Yes) => self.args.push(SqliteArgumentValue::Null),
            Ok(sqlx::encode::IsNull::No) => {}
            Err(e) => {
                self.args.truncate(before);
                if self.bind_error.is_none() {
                    self.bind_error = Some(e.to_string());
                }
            }
        }
        self
    }
}

/// Rolls back a transaction sqlx does not know of; none being open is fine.
async fn rollback_raw(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    match Executor::execute(conn, "ROLLBACK").await {
        Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The most batches one commit takes ([`run_group`]): enough to share a
/// commit among what a busy server queues meanwhile, few enough that the
/// first caller's answer does not wait long for the last's statements.
const GROUP_AT_MOST: usize = 32;

/// Runs `batches` (queued one behind the other) in one transaction, with
/// one `COMMIT` for them all; each batch's outcome, in order.
///
/// Why: every commit writes each page it changed to the WAL in full, and a
/// remote build's batches change the same few pages (the tables' and
/// indexes' newest leaves) one after the other; batches committed
/// together write those pages once. Callers see no difference: each
/// batch is still all or nothing, and answered only once committed.
///
/// Should anything fail (a batch's statement, `BEGIN`, the `COMMIT`),
/// nothing of the group stays and each batch is run again on its own, as
/// it would have been without the group: only a failing batch fails, and
/// it leaves nothing. (Savepoints around each batch would let the others
/// commit at once, but SQLite copies every page a savepoint changes to a
/// statement journal, which cost more than the shared commit saved; a
/// failing batch is rare on the paths that queue many.)
fn run_group(
    db: NonNull<libsqlite3_sys::sqlite3>,
    statements: &mut Statements,
    batches: &[Batch],
    stranded: &mut bool,
) -> Vec<Result<Vec<Step>, sqlx::Error>> {
    if let [batch] = batches {
        return vec![run_batch(db, statements, batch, stranded)];
    }
    match run_together(db, statements, batches) {
        Some(outcomes) => outcomes,
        None => {
            if !raw::in_autocommit(db) {
                *stranded = statements.execute(db, "ROLLBACK").is_err();
            }
            batches
                .iter()
                .map(|batch| run_batch(db, statements, batch, stranded))
                .collect()
        }
    }
}

/// [`run_group`]'s one transaction; `None` when it could not be carried
/// out whole (the caller rolls back what is left and runs each alone).
fn run_together(
    db: NonNull<libsqlite3_sys::sqlite3>,
    statements: &mut Statements,
    batches: &[Batch],
) -> Option<Vec<Result<Vec<Step>, sqlx::Error>>> {
    if !raw::in_autocommit(db) {
        return None; // a transaction no one ended: `run_batch` ends it
    }
    statements.execute(db, "BEGIN IMMEDIATE").ok()?;
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        // Any failure ends the group: it is rolled back and each batch
        // runs alone, so that only the failing one fails.
        let steps = statements.run(db, &batch.sql, &batch.args).ok()?;
        outcomes.push(Ok(counted(batch, steps).ok()?));
        // A transaction that ended under it (SQLite ends it itself after
        // some errors; a batch may hold its own `ROLLBACK`): the batches
        // after it must not run outside one.
        if raw::in_autocommit(db) {
            return None;
        }
    }
    statements.execute(db, "COMMIT").ok()?;
    Some(outcomes)
}

/// `steps`, when there is one for each of `batch`'s statements.
fn counted(batch: &Batch, steps: Vec<Step>) -> Result<Vec<Step>, sqlx::Error> {
    if steps.len() != batch.statements {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {} statements ran {}",
            batch.statements,
            steps.len()
        )));
    }
    Ok(steps)
}

/// Runs one batch on the held handle in a transaction of its own, ended
/// either way (or `stranded` set, for the next job to end it).
fn run_batch(
    db: NonNull<libsqlite3_sys::sqlite3>,
    statements: &mut Statements,
    batch: &Batch,
    stranded: &mut bool,
) -> Result<Vec<Step>, sqlx::Error> {
    // A transaction no one ended (a failed rollback's): ended first.
    if !raw::in_autocommit(db) {
        statements.execute(db, "ROLLBACK")?;
    }
    *stranded = false;
    statements.execute(db, "BEGIN IMMEDIATE")?;
    let outcome = statements
        .run(db, &batch.sql, &batch.args)
        .and_then(|steps| counted(batch, steps))
        .and_then(|steps| statements.execute(db, "COMMIT").map(|()| steps));
    if outcome.is_err() && !raw::in_autocommit(db) {
        *stranded = statements.execute(db, "ROLLBACK").is_err();
    }
    outcome
}

impl Deref for Held {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        // Taken out only by `drop`.
        self.conn.as_ref().expect("a held connection is there")
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("a held connection is there")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Before the connection goes back: whoever reads what was
        // committed, or sees the writer idle, finds the WAL marked.
        if let Some(wal) = self.wal.upgrade() {
            wal.mark_dirty();
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            // Refused only when the writer's thread has ended.
            let _ = back.send(conn);
        }
    }
}

impl WriteTx {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        SqliteTransactionManager::commit(&mut self.held).await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.held
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.held
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Queued now, run by sqlx's worker before anything sent later
            // (a drop cannot wait for SQLite); a no-op when no transaction
            // began.
            SqliteTransactionManager::start_rollback(&mut self.held);
        }
    }
}

// Statements run straight on the writer (`.execute(&store.writer)`)
// borrow the connection for the statement.
super::connections::executor_by_borrowing!(Writer);

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    use super::*;

    async fn open(path: &std::path::Path, busy: Duration) -> SqliteConnection {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .expect("options")
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(busy);
        SqliteConnection::connect_with(&options)
            .await
            .expect("connect")
    }

    /// One write connection to `path`, with an empty table `t (x)`.
    async fn writer_with_table(path: &std::path::Path) -> Writer {
        let writer =
            Writer::start(open(path, Duration::from_secs(5)).await, Weak::new()).expect("writer");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&writer)
            .await
            .expect("create");
        writer
    }

    /// [`writer_with_table`], its `x` unique: a repeated `x` fails.
    async fn writer_with_unique_x(path: &std::path::Path) -> Writer {
        let writer = writer_with_table(path).await;
        sqlx::query("CREATE UNIQUE INDEX t_x ON t (x)")
            .execute(&writer)
            .await
            .expect("index");
        writer
    }

    /// Another connection to the file (another process, say) writes
    /// `x` within `within`: nothing holds SQLite's write lock.
    async fn another_connection_writes(path: &std::path::Path, x: i64, within: Duration) {
        let mut other = open(path, within).await;
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(x)
            .execute(&mut other)
            .await
            .expect("the write lock is free");
    }

    async fn count(writer: &Writer) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(writer)
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_at_once_and_a_committed_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;

        let mut tx = writer.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        drop(tx);
        // Another connection to the file (another server process, say)
        // gets the write lock within a short wait: the dropped transaction
        // no longer holds it, though the writer has not been used since.
        another_connection_writes(&path, 2, Duration::from_secs(2)).await;
        assert_eq!(count(&writer).await, 1, "only the other connection's row");

        let mut tx = writer.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(count(&writer).await, 2);
    }

    /// A statement SQLite takes a while over: a recursive count.
    const SLOW_INSERT: &str = "INSERT INTO t WITH RECURSIVE n(i) AS \
        (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT max(i) FROM n";

    #[tokio::test]
    async fn a_transaction_dropped_mid_statement_leaves_nothing_and_the_next_caller_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        // A request cancelled while its transaction's statement runs (the
        // client went away): the future is dropped mid-flight.
        let cancelled = tokio::time::timeout(Duration::from_millis(5), async {
            let mut tx = writer.begin().await.expect("begin");
            sqlx::query(SLOW_INSERT)
                .execute(&mut *tx)
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        })
        .await;
        assert!(cancelled.is_err(), "the statement outlived the timeout");
        // The next caller's transaction runs after the abandoned one is
        // rolled back, and commits on its own.
        let mut tx = writer.begin().await.expect("begin after the drop");
        sqlx::query("INSERT INTO t VALUES (7)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(&writer)
            .await
            .expect("read");
        assert_eq!(rows, vec![7], "nothing of the abandoned transaction");
        // And a statement dropped outside any transaction leaves no
        // transaction behind.
        let _ = tokio::time::timeout(
            Duration::from_millis(5),
            sqlx::query(SLOW_INSERT).execute(&writer),
        )
        .await;
        another_connection_writes(&path, 8, Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn a_batch_runs_in_order_with_its_arguments_and_gives_each_statement_its_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = writer_with_table(&dir.path().join("w.db")).await;
        let mut batch = Batch::new();
        batch
            .push("INSERT INTO t VALUES (?), (?), (?)")
            .bind(1_i64)
            .bind(2_i64)
            .bind(3_i64);
        batch
            .push("UPDATE t SET x = x * ? WHERE x >= ?")
            .bind(10_i64)
            .bind(2_i64);
        // Sees what the statements before it did, and only runs when the
        // one just before changed a row.
        batch
            .push("INSERT INTO t SELECT ? WHERE changes() > 0")
            .bind(7_i64);
        batch
            .push("INSERT INTO t SELECT ? WHERE changes() = 5")
            .bind(99_i64);
        batch.push("SELECT x FROM t ORDER BY x");
        let steps = writer.run(batch).await.expect("batch");
        let changes: Vec<u64> = steps.iter().map(|s| s.changes).collect();
        assert_eq!(changes[..4], [3, 2, 1, 0]);
        let rows: Vec<i64> = steps[4]
            .rows
            .iter()
            .map(|r| r.get_at(0).expect("an integer"))
            .collect();
        assert_eq!(rows, [1, 7, 20, 30]);
        assert_eq!(count(&writer).await, 4);
    }

    #[tokio::test]
    async fn a_failing_batch_leaves_nothing_and_no_transaction_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_unique_x(&path).await;
        let mut batch = Batch::new();
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        batch.push("INSERT INTO t VALUES (?)").bind(2_i64);
        let err = writer
            .run(batch)
            .await
            .expect_err("the second insert fails");
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // Reported as sqlx reports it, so the store answers a conflict.
        match &err {
            sqlx::Error::Database(e) => {
                assert!(e.is_unique_violation(), "{err}");
                assert_eq!(
                    e.code().as_deref(),
                    Some("2067"),
                    "SQLITE_CONSTRAINT_UNIQUE"
                );
            }
            other => panic!("not a database error: {other:?}"),
        }
        assert_eq!(count(&writer).await, 0, "the first insert is undone too");
        // The write lock is free at once, for another connection as well.
        another_connection_writes(&path, 5, Duration::from_secs(2)).await;
        // And the writer goes on outside any transaction.
        let mut batch = Batch::new();
        batch.push("INSERT INTO t VALUES (?)").bind(6_i64);
        writer.run(batch).await.expect("next batch");
        assert_eq!(count(&writer).await, 2);
    }

    #[tokio::test]
    async fn a_batch_whose_caller_goes_away_still_ends_its_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        let mut batch = Batch::new();
        batch.push(SLOW_INSERT);
        batch.push("INSERT INTO t VALUES (?)").bind(9_i64);
        let cancelled = tokio::time::timeout(Duration::from_millis(5), writer.run(batch)).await;
        assert!(cancelled.is_err(), "the batch outlived the timeout");
        // The batch ends on its own (committed whole): the next taker
        // waits for it and finds both rows, and no transaction is left.
        assert_eq!(count(&writer).await, 2);
        another_connection_writes(&path, 5, Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_batch_whose_callers_runtime_ends_midway_still_commits_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        // The caller's runtime shuts down while SQLite runs the batch's
        // first statement (a server stopping): the batch is the writer
        // thread's, not the caller's, and runs to its COMMIT.
        let cut = writer.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut batch = Batch::new();
                batch.push(SLOW_INSERT);
                batch.push("INSERT INTO t VALUES (?)").bind(9_i64);
                let run = tokio::time::timeout(Duration::from_millis(20), cut.run(batch)).await;
                assert!(run.is_err(), "the batch outlived the timeout");
            });
            drop(runtime);
        })
        .join()
        .expect("the cut-off caller's thread");
        let mut batch = Batch::new();
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        writer.run(batch).await.expect("next batch");
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&writer)
            .await
            .expect("read");
        assert_eq!(rows, [1, 9, 3_000_000], "the whole batch, then the next");
        another_connection_writes(&path, 5, Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn the_writer_is_idle_only_once_every_job_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = writer_with_table(&dir.path().join("w.db")).await;
        assert!(writer.is_idle());
        let held = writer.acquire().await.expect("borrow");
        assert!(!writer.is_idle(), "a borrowed connection");
        // A batch queued behind the borrower counts too.
        let queued = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut batch = Batch::new();
                batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
                writer.run(batch).await.map(|_| ())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        queued.await.expect("join").expect("the queued batch");
        assert!(writer.is_idle(), "all done");
        // A borrower that went away before it was served leaves nothing
        // behind either.
        let held = writer.acquire().await.expect("borrow");
        let gave_up = tokio::time::timeout(Duration::from_millis(20), writer.acquire()).await;
        assert!(gave_up.is_err(), "the second borrower waits, then gives up");
        drop(held);
        writer
            .run(Batch::new())
            .await
            .expect("an empty batch after");
        assert!(writer.is_idle());
    }

    #[tokio::test]
    async fn callers_take_the_connection_in_turns_and_a_closed_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Writer::start(
            open(&dir.path().join("w.db"), Duration::from_secs(5)).await,
            Weak::new(),
        )
        .expect("writer");
        let held = writer.acquire().await.expect("first");
        let waiting = tokio::spawn({
            let writer = writer.clone();
            async move { writer.acquire().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        drop(held);
        waiting.await.expect("join").expect("then gets it");
        writer.close().await;
        assert!(matches!(
            writer.acquire().await,
            Err(sqlx::Error::PoolClosed)
        ));
    }

    #[tokio::test]
    async fn a_batch_binds_every_kind_of_value_and_reads_it_back_as_sqlx_does() {
        use super::raw::Columns;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer =
            Writer::start(open(&path, Duration::from_secs(5)).await, Weak::new()).expect("writer");
        sqlx::query("CREATE TABLE v (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT, f INTEGER)")
            .execute(&writer)
            .await
            .expect("create");
        let mut batch = Batch::new();
        batch
            .push("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)")
            .bind(-7_i64)
            .bind(2.5_f64)
            .bind("naïve; 'quoted'".to_owned())
            .bind(vec![0_u8, 255, 10])
            .bind(None::<String>)
            .bind(true);
        // `?1` is the batch's first argument, wherever it stands (as sqlx
        // numbers them across a query's statements).
        batch.push("SELECT i, r, s, b, n, f FROM v WHERE i = ?1");
        let steps = writer.run(batch).await.expect("batch");
        let row = &steps[1].rows[0];
        let from_sqlx = sqlx::query("SELECT i, r, s, b, n, f FROM v")
            .fetch_one(&writer)
            .await
            .expect("read through sqlx");
        fn values(
            row: &impl Columns,
        ) -> (i64, f64, String, Vec<u8>, Option<String>, bool, Option<i64>) {
            (
                row.column("i").expect("i"),
                row.column("r").expect("r"),
                row.column("s").expect("s"),
                row.column("b").expect("b"),
                row.column("n").expect("n"),
                row.column("f").expect("f"),
                row.column("i").expect("i as an option"),
            )
        }
        let expected = (
            -7,
            2.5,
            "naïve; 'quoted'".to_owned(),
            vec![0, 255, 10],
            None,
            true,
            Some(-7),
        );
        assert_eq!(values(row), expected);
        assert_eq!(values(&from_sqlx), expected, "the same as sqlx reads it");
        // What sqlx refuses, a batch's row refuses too.
        assert!(row.column::<i64>("n").is_err(), "NULL is not an integer");
        assert!(row.column::<i64>("s").is_err(), "text is not an integer");
        assert!(from_sqlx.column::<i64>("s").is_err());
        assert!(matches!(
            row.column::<i64>("missing"),
            Err(sqlx::Error::ColumnNotFound(_))
        ));
        assert!(matches!(
            row.get_at::<i64>(6),
            Err(sqlx::Error::ColumnIndexOutOfBounds { index: 6, len: 6 })
        ));
    }

    #[tokio::test]
    async fn kept_statements_run_again_with_new_arguments_between_lent_uses_and_close_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        let batch = |x: i64| {
            let mut batch = Batch::new();
            batch.push("INSERT INTO t (x) VALUES (?)").bind(x);
            batch.push("SELECT SUM(x) FROM t");
            batch
        };
        let sum = |steps: Vec<Step>| -> i64 { steps[1].rows[0].get_at(0).expect("a sum") };
        assert_eq!(sum(writer.run(batch(1)).await.expect("first")), 1);
        assert_eq!(sum(writer.run(batch(2)).await.expect("same text")), 3);
        // The connection lent between batches (sqlx runs on it), then the
        // same text again: its kept statements see what was done meanwhile.
        let mut tx = writer.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (10)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(sum(writer.run(batch(4)).await.expect("after a lend")), 17);
        // A schema change meanwhile: SQLite prepares the kept statements
        // again by itself.
        sqlx::query("ALTER TABLE t ADD COLUMN y TEXT")
            .execute(&writer)
            .await
            .expect("alter");
        assert_eq!(
            sum(writer
                .run(batch(8))
                .await
                .expect("after the schema changed")),
            25
        );
        // A failing statement of a kept text leaves it usable.
        let mut bad = Batch::new();
        bad.push("INSERT INTO t (x) VALUES (?)").bind(16_i64);
        bad.push("SELECT SUM(x) FROM t");
        bad.push("INSERT INTO nowhere VALUES (1)");
        assert!(writer.run(bad).await.is_err());
        assert_eq!(
            sum(writer.run(batch(32)).await.expect("after a failure")),
            57
        );
        // Closing finalizes the kept statements first: SQLite then closes
        // the file for real, checkpointing and removing its WAL (an
        // unfinalized statement would keep the connection open).
        writer.close().await;
        assert!(
            !dir.path().join("w.db-wal").exists(),
            "the WAL was removed: the connection closed"
        );
        let mut again = open(&path, Duration::from_secs(1)).await;
        let total: i64 = sqlx::query_scalar("SELECT SUM(x) FROM t")
            .fetch_one(&mut again)
            .await
            .expect("reopen");
        assert_eq!(total, 57);
    }

    /// Bytes of the WAL file beside the database at `path`.
    fn wal_len(path: &std::path::Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    /// `n` batches sent while the connection is lent out, so that all of
    /// them are queued when it comes back; their outcomes.
    async fn queued_together(
        writer: &Writer,
        batches: Vec<Batch>,
    ) -> Vec<Result<Vec<Step>, sqlx::Error>> {
        let held = writer.acquire().await.expect("lend");
        let sent: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.run(batch).await })
            })
            .collect();
        // Every batch is in the queue before the connection goes back.
        while writer.busy.load(Ordering::SeqCst) < sent.len() + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(held);
        let mut outcomes = Vec::new();
        for task in sent {
            outcomes.push(task.await.expect("batch task"));
        }
        outcomes
    }

    fn insert(x: i64) -> Batch {
        let mut batch = Batch::new();
        batch.push("INSERT INTO t (x) VALUES (?)").bind(x);
        batch.push("SELECT COUNT(*) FROM t WHERE x = ?").bind(x);
        batch
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_queued_together_share_a_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_unique_x(&path).await;
        let before = wal_len(&path);
        let outcomes = queued_together(&writer, (1..=10).map(insert).collect()).await;
        let frames = (wal_len(&path) - before) / (4096 + 24);
        for (i, outcome) in outcomes.iter().enumerate() {
            let steps = outcome.as_ref().expect("each commits");
            let seen: i64 = steps[1].rows[0].get_at(0).expect("count");
            assert_eq!(seen, 1, "batch {i} sees its own row");
        }
        assert_eq!(count(&writer).await, 10);
        // One commit for the ten: the table's and the index's pages were
        // written to the WAL once, not once per batch (ten commits write
        // at least ten frames; 18 here).
        assert!(frames < 10, "{frames} WAL frames for ten queued batches");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_queued_with_others_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_unique_x(&path).await;
        let mut batches: Vec<Batch> = (1..=6).map(insert).collect();
        // The fourth fails half way (its second insert repeats the
        // first's x).
        batches[3].push("INSERT INTO t (x) VALUES (?)").bind(1_i64);
        let outcomes = queued_together(&writer, batches).await;
        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 3 {
                let err = outcome.as_ref().expect_err("the fourth fails");
                assert!(err.to_string().contains("UNIQUE"), "{err}");
            } else {
                let steps = outcome.as_ref().expect("the others commit");
                let seen: i64 = steps[1].rows[0].get_at(0).expect("count");
                assert_eq!(seen, 1, "batch {i} sees its own row");
            }
        }
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&writer)
            .await
            .expect("read");
        assert_eq!(
            rows,
            [1, 2, 3, 5, 6],
            "nothing of the fourth, the rest once"
        );
        // The writer goes on outside any transaction.
        another_connection_writes(&path, 100, Duration::from_secs(2)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_cannot_commit_as_one_runs_each_batch_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        // The second batch ends the group's transaction itself (as SQLite
        // does after a full disk or an I/O error): the group cannot go on,
        // and every batch is run again on its own.
        let mut ends_it = insert(2);
        ends_it.push("ROLLBACK");
        let outcomes = queued_together(&writer, vec![insert(1), ends_it, insert(3)]).await;
        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        assert!(outcomes[1].is_err(), "its own COMMIT finds no transaction");
        assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&writer)
            .await
            .expect("read");
        assert_eq!(rows, [1, 3]);
        another_connection_writes(&path, 100, Duration::from_secs(2)).await;
    }
}
