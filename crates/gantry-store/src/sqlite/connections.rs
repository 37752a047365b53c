//! The store's SQLite connections, taken in turns, in place of sqlx pools:
//! one write connection, and a few read-only ones.
//!
//! Why not sqlx's pool: it checks every connection handed back with a
//! ping, and for SQLite a ping is a round trip to the connection's worker
//! thread (a wake-up each way), in a task spawned for the purpose. Every
//! statement run on a pool, and every transaction, paid that on top of its
//! own round trips: about a third of the thread switches of a remote build
//! (`gantry bench agents`). Taking a free connection here costs no thread
//! switch at all.
//!
//! What the pool did that this keeps:
//! - waiters are served in order (a fair semaphore), the moment a
//!   connection is back;
//! - a transaction dropped without a commit (an error, a cancelled
//!   request) is rolled back at once: the rollback is queued on the
//!   connection's worker ahead of anything later, as sqlx's own
//!   `Transaction` does, so it does not hold SQLite's write lock against
//!   another process's connection until the next use;
//! - every hand-back of the write connection tells the WAL flush thread a
//!   commit may have been written ([`super::durability`]).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::sqlite::{
    SqliteArguments, SqliteQueryResult, SqliteRow, SqliteStatement, SqliteTransactionManager,
    SqliteTypeInfo,
};
use sqlx::{
    Arguments as _, Connection, Describe, Either, Execute, Executor, Sqlite, SqliteConnection,
    TransactionManager,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::durability::WalSync;

/// Connections taken in turns; cheap to clone (clones share them).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The connections nobody holds, each with whether a batch on it was
    /// abandoned midway (its transaction may still be open: [`Batch`]).
    free: Arc<Mutex<Vec<(SqliteConnection, bool)>>>,
    /// One permit a connection: a holder of a permit finds one free.
    permits: Arc<Semaphore>,
    /// How many there are (to take them all back when closing).
    count: u32,
    /// Told of every hand-back (the write connection's); empty for readers.
    wal: Weak<WalSync>,
}

/// A connection while one caller has it; handed back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    conn: Option<SqliteConnection>,
    /// A batch was sent and has not been seen to its end: whoever takes
    /// the connection next rolls back first.
    stranded: bool,
    free: Arc<Mutex<Vec<(SqliteConnection, bool)>>>,
    wal: Weak<WalSync>,
    /// Dropped after the connection is back in `free`.
    _permit: OwnedSemaphorePermit,
}

/// A transaction on a held connection: rolled back unless committed.
#[derive(Debug)]
pub(crate) struct WriteTx {
    held: Held,
    open: bool,
}

fn closed() -> sqlx::Error {
    sqlx::Error::PoolClosed
}

impl Connections {
    /// `wal`: the flush thread to tell of every hand-back (`Weak::new()`
    /// for read-only connections).
    pub(crate) fn new(conns: Vec<SqliteConnection>, wal: Weak<WalSync>) -> Connections {
        let count = u32::try_from(conns.len()).unwrap_or(u32::MAX);
        Connections {
            permits: Arc::new(Semaphore::new(conns.len())),
            free: Arc::new(Mutex::new(conns.into_iter().map(|c| (c, false)).collect())),
            count,
            wal,
        }
    }

    /// Waits for a connection (fairly: first come, first served).
    pub(crate) async fn acquire(&self) -> Result<Held, sqlx::Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let conn = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        // A permit with no free connection: the set was closed meanwhile.
        let (conn, stranded) = conn.ok_or_else(closed)?;
        // Held from here, so every way out hands the connection back.
        let mut held = Held {
            conn: Some(conn),
            stranded,
            free: self.free.clone(),
            wal: self.wal.clone(),
            _permit: permit,
        };
        // A transaction still open here was abandoned in a way `WriteTx`'s
        // drop did not see (none is expected): end it before anyone builds
        // on it.
        if SqliteTransactionManager::get_transaction_depth(&held) > 0 {
            SqliteTransactionManager::rollback(&mut held).await?;
        }
        if held.stranded {
            // A batch's own `BEGIN` that sqlx does not count: see `Batch`.
            rollback_raw(&mut held).await?;
            held.stranded = false;
        }
        Ok(held)
    }

    /// Whether nobody holds any of the connections. A hand-back is
    /// complete (its WAL mark made, [`Held`]'s drop) before its permit
    /// shows here.
    pub(crate) fn is_idle(&self) -> bool {
        self.permits.available_permits() == self.count as usize
    }

    /// Begins a transaction (`BEGIN`, deferred, as sqlx's `begin` does).
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

    /// Waits for every connection to be handed back and closes them (the
    /// last one to close checkpoints the WAL and removes it); later uses
    /// fail.
    pub(crate) async fn close(&self) {
        let Ok(all) = self.permits.acquire_many(self.count).await else {
            return; // closed already
        };
        self.permits.close();
        let conns = std::mem::take(&mut *self.free.lock().unwrap_or_else(|e| e.into_inner()));
        for (conn, _) in conns {
            let _ = conn.close().await;
        }
        drop(all);
    }
}

/// Statements sent to SQLite as one string and run in one transaction
/// (`BEGIN IMMEDIATE; …; COMMIT`) in a single round trip to the write
/// connection's worker thread ([`Connections::run`]).
///
/// Why: sqlx runs every statement, and `BEGIN` and `COMMIT` too, as a
/// round trip of its own to the connection's thread (a wake-up each way),
/// so a transaction of three statements was five, and the store's one write
/// connection was held meanwhile (`gantry bench agents`, docs/benchmarks.md).
/// A batch is one, whatever its length.
///
/// What it asks of the caller: a statement cannot depend on what Rust code
/// decides after an earlier one, so such a dependency is said in SQL
/// (`changes()`, a subquery). Each statement's changed-row count and
/// returned rows come back ([`Step`]).
///
/// The transaction's safety: sqlx does not see the batch's `BEGIN` (its
/// transaction depth stays 0), so the batch runs in a task of its own that
/// sees it to its end — a caller that goes away does not cut it off between
/// `BEGIN` and `COMMIT` — and rolls back when a statement fails. Should the
/// task itself be stopped midway (the runtime shutting down), the connection
/// goes back marked, and whoever takes it next rolls back first.
///
/// It relies on sqlx's SQLite driver running every statement of a query
/// string, with the arguments bound in order across them (sqlx 0.8;
/// upstream calls that deprecated, launchbadge/sqlx#3108): the tests below
/// fail should an upgrade take it away.
pub(crate) struct Batch {
    sql: String,
    args: SqliteArguments<'static>,
    statements: usize,
    bind_error: Option<String>,
}

/// What one statement of a [`Batch`] did.
pub(crate) struct Step {
    /// Rows it inserted, changed or deleted.
    pub(crate) changes: u64,
    /// Rows it returned (a `SELECT`, or `RETURNING`).
    pub(crate) rows: Vec<SqliteRow>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            sql: String::new(),
            args: SqliteArguments::default(),
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

    /// How many statements it holds: the index in [`Connections::run`]'s
    /// answer of the statement pushed next.
    pub(crate) fn len(&self) -> usize {
        self.statements
    }

    /// Binds the next `?`.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Batch
    where
        T: sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite> + 'static,
    {
        if let Err(e) = self.args.add(value)
            && self.bind_error.is_none()
        {
            self.bind_error = Some(e.to_string());
        }
        self
    }
}

/// Rolls back a transaction sqlx does not know of; none being open is fine.
/// (Boxed for the reason given at [`run_steps`].)
fn rollback_raw(conn: &mut SqliteConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match Executor::execute(conn, "ROLLBACK").await {
            Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    })
}

impl Connections {
    /// Runs `batch` in one transaction, in one round trip; on an error
    /// nothing of it stays. See [`Batch`].
    pub(crate) async fn run(&self, batch: Batch) -> Result<Vec<Step>, sqlx::Error> {
        if let Some(e) = batch.bind_error {
            return Err(sqlx::Error::Encode(e.into()));
        }
        let mut held = self.acquire().await?;
        let task = tokio::spawn(async move {
            let sql = format!("BEGIN IMMEDIATE;\n{}COMMIT;", batch.sql);
            held.mark_stranded(true);
            let outcome = run_steps(&mut held, sql, batch.args).await;
            let ended = match &outcome {
                Ok(_) => Ok(()),
                Err(_) => rollback_raw(&mut held).await,
            };
            // Marked until the transaction is seen to be over either way.
            held.mark_stranded(ended.is_err());
            let mut steps = outcome?;
            // The `BEGIN` and the `COMMIT` are not the caller's.
            if steps.len() != batch.statements + 2 {
                return Err(sqlx::Error::Protocol(format!(
                    "a batch of {} statements gave {} results",
                    batch.statements,
                    steps.len().saturating_sub(2)
                )));
            }
            steps.pop();
            steps.remove(0);
            Ok(steps)
        });
        task.await
            .map_err(|e| sqlx::Error::Protocol(format!("a store batch's task failed: {e}")))?
    }
}

/// Boxed with its lifetime spelled out: as a plain `async fn` the
/// compiler cannot show the spawned task `Send` for every lifetime of the
/// connection's `Executor`.
fn run_steps<'c>(
    conn: &'c mut SqliteConnection,
    sql: String,
    args: SqliteArguments<'static>,
) -> BoxFuture<'c, Result<Vec<Step>, sqlx::Error>> {
    Box::pin(async move {
        let query = sqlx::query_with(&sql, args);
        let mut results = Executor::fetch_many(&mut *conn, query);
        let mut steps = Vec::new();
        let mut rows = Vec::new();
        while let Some(item) = results.try_next().await? {
            match item {
                Either::Right(row) => rows.push(row),
                Either::Left(done) => steps.push(Step {
                    changes: done.rows_affected(),
                    rows: std::mem::take(&mut rows),
                }),
            }
        }
        Ok(steps)
    })
}

impl Held {
    /// Whether a batch sent on the connection has yet to be seen to its
    /// end (read when the connection is handed back).
    fn mark_stranded(&mut self, stranded: bool) {
        self.stranded = stranded;
    }
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
        // Before the permit goes: whoever takes the connection next, and
        // whoever reads what was committed, finds the WAL marked.
        if let Some(wal) = self.wal.upgrade() {
            wal.mark_dirty();
        }
        if let Some(conn) = self.conn.take() {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((conn, self.stranded));
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
            // Queued now, run by the worker before anything sent later (a
            // drop cannot wait for SQLite); a no-op when no transaction
            // began.
            SqliteTransactionManager::start_rollback(&mut self.held);
        }
    }
}

/// Statements run straight on the connections (`.execute(&store.writer)`)
/// take one for the statement, as they did on the pool. Rows are collected
/// before the connection is handed back: nothing here streams.
impl<'c> Executor<'c> for &'c Connections {
    type Database = Sqlite;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<SqliteQueryResult, SqliteRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        futures_util::stream::once(async move {
            let mut held = self.acquire().await?;
            held.fetch_many(query).try_collect::<Vec<_>>().await
        })
        .map_ok(|items| futures_util::stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<SqliteRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            held.fetch_optional(query).await
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [SqliteTypeInfo],
    ) -> BoxFuture<'e, Result<SqliteStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            held.prepare_with(sql, parameters).await
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Sqlite>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            held.describe(sql).await
        })
    }
}

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
    async fn writer_with_table(path: &std::path::Path) -> Connections {
        let writer = Connections::new(vec![open(path, Duration::from_secs(5)).await], Weak::new());
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&writer)
            .await
            .expect("create");
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

    async fn count(writer: &Connections) -> i64 {
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
        let rows: Vec<i64> = steps[4].rows.iter().map(|r| sqlx::Row::get(r, 0)).collect();
        assert_eq!(rows, [1, 7, 20, 30]);
        assert_eq!(count(&writer).await, 4);
    }

    #[tokio::test]
    async fn a_failing_batch_leaves_nothing_and_no_transaction_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        sqlx::query("CREATE UNIQUE INDEX t_x ON t (x)")
            .execute(&writer)
            .await
            .expect("index");
        let mut batch = Batch::new();
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        batch.push("INSERT INTO t VALUES (?)").bind(2_i64);
        let err = writer
            .run(batch)
            .await
            .err()
            .expect("the second insert fails");
        assert!(err.to_string().contains("UNIQUE"), "{err}");
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
    async fn a_batch_cut_off_midway_is_rolled_back_by_whoever_takes_the_connection_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = writer_with_table(&path).await;
        // The batch's own task dies with its runtime while SQLite runs the
        // first statement: its COMMIT never comes, and sqlx does not know a
        // transaction is open.
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
        .expect("the cut-off batch's thread");
        // The next taker rolls it back before anything of its own.
        let mut batch = Batch::new();
        batch.push("INSERT INTO t VALUES (?)").bind(1_i64);
        writer.run(batch).await.expect("next batch");
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(&writer)
            .await
            .expect("read");
        assert_eq!(rows, [1], "nothing of the cut-off batch");
        another_connection_writes(&path, 5, Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn callers_take_the_connection_in_turns_and_a_closed_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = Connections::new(
            vec![open(&dir.path().join("w.db"), Duration::from_secs(5)).await],
            Weak::new(),
        );
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
}
