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
    SqliteQueryResult, SqliteRow, SqliteStatement, SqliteTransactionManager, SqliteTypeInfo,
};
use sqlx::{
    Connection, Describe, Either, Execute, Executor, Sqlite, SqliteConnection, TransactionManager,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::durability::WalSync;

/// Connections taken in turns; cheap to clone (clones share them).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The connections nobody holds.
    free: Arc<Mutex<Vec<SqliteConnection>>>,
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
    free: Arc<Mutex<Vec<SqliteConnection>>>,
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
            free: Arc::new(Mutex::new(conns)),
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
        let conn = conn.ok_or_else(closed)?;
        // Held from here, so every way out hands the connection back.
        let mut held = Held {
            conn: Some(conn),
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
        for conn in conns {
            let _ = conn.close().await;
        }
        drop(all);
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
                .push(conn);
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
        let mut other = open(&path, Duration::from_secs(2)).await;
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut other)
            .await
            .expect("the write lock is free");
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
        let mut other = open(&path, Duration::from_secs(10)).await;
        sqlx::query("INSERT INTO t VALUES (8)")
            .execute(&mut other)
            .await
            .expect("the write lock is free once the statement ends");
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
