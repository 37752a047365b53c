//! The store's read-only SQLite connections, taken in turns, in place of
//! an sqlx pool. (The one write connection has a thread of its own:
//! [`super::writer`].)
//!
//! Why not sqlx's pool: it checks every connection handed back with a
//! ping, and for SQLite a ping is a round trip to the connection's worker
//! thread (a wake-up each way), in a task spawned for the purpose. Every
//! statement run on a pool paid that on top of its own round trips.
//! Taking a free connection here costs no thread switch at all.
//!
//! What the pool did that this keeps: waiters are served in order (a fair
//! semaphore), the moment a connection is back.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections taken in turns; cheap to clone (clones share them).
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The connections nobody holds.
    free: Arc<Mutex<Vec<SqliteConnection>>>,
    /// One permit a connection: a holder of a permit finds one free.
    permits: Arc<Semaphore>,
    /// How many there are (to take them all back when closing).
    count: u32,
}

/// A connection while one caller has it; handed back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    conn: Option<SqliteConnection>,
    free: Arc<Mutex<Vec<SqliteConnection>>>,
    /// Dropped after the connection is back in `free`.
    _permit: OwnedSemaphorePermit,
}

fn closed() -> sqlx::Error {
    sqlx::Error::PoolClosed
}

impl Connections {
    pub(crate) fn new(conns: Vec<SqliteConnection>) -> Connections {
        let count = u32::try_from(conns.len()).unwrap_or(u32::MAX);
        Connections {
            permits: Arc::new(Semaphore::new(conns.len())),
            free: Arc::new(Mutex::new(conns)),
            count,
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
        Ok(Held {
            conn: Some(conn),
            free: self.free.clone(),
            _permit: permit,
        })
    }

    /// Waits for every connection to be handed back and closes them; later
    /// uses fail.
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
        if let Some(conn) = self.conn.take() {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// An `Executor` for a set of connections that lends one out
/// (`acquire`): a statement run straight on it (`.fetch_all(&store.readers)`,
/// `.execute(&store.writer)`) borrows a connection for the statement, as
/// it did from sqlx's pool. Rows are collected before the connection is
/// handed back: nothing here streams. A macro, not a blanket impl: sqlx's
/// trait on a reference to a type parameter is not ours to implement.
macro_rules! executor_by_borrowing {
    ($set:ty) => {
        impl<'c> ::sqlx::Executor<'c> for &'c $set {
            type Database = ::sqlx::Sqlite;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> ::futures_util::stream::BoxStream<
                'e,
                Result<
                    ::sqlx::Either<::sqlx::sqlite::SqliteQueryResult, ::sqlx::sqlite::SqliteRow>,
                    ::sqlx::Error,
                >,
            >
            where
                'c: 'e,
                E: 'q + ::sqlx::Execute<'q, ::sqlx::Sqlite>,
            {
                use ::futures_util::stream::{StreamExt as _, TryStreamExt as _};
                ::futures_util::stream::once(async move {
                    let mut held = self.acquire().await?;
                    ::sqlx::Executor::fetch_many(&mut *held, query)
                        .try_collect::<Vec<_>>()
                        .await
                })
                .map_ok(|items| ::futures_util::stream::iter(items.into_iter().map(Ok)))
                .try_flatten()
                .boxed()
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> ::futures_util::future::BoxFuture<
                'e,
                Result<Option<::sqlx::sqlite::SqliteRow>, ::sqlx::Error>,
            >
            where
                'c: 'e,
                E: 'q + ::sqlx::Execute<'q, ::sqlx::Sqlite>,
            {
                Box::pin(async move {
                    let mut held = self.acquire().await?;
                    ::sqlx::Executor::fetch_optional(&mut *held, query).await
                })
            }

            fn prepare_with<'e, 'q: 'e>(
                self,
                sql: &'q str,
                parameters: &'e [::sqlx::sqlite::SqliteTypeInfo],
            ) -> ::futures_util::future::BoxFuture<
                'e,
                Result<::sqlx::sqlite::SqliteStatement<'q>, ::sqlx::Error>,
            >
            where
                'c: 'e,
            {
                Box::pin(async move {
                    let mut held = self.acquire().await?;
                    ::sqlx::Executor::prepare_with(&mut *held, sql, parameters).await
                })
            }

            fn describe<'e, 'q: 'e>(
                self,
                sql: &'q str,
            ) -> ::futures_util::future::BoxFuture<
                'e,
                Result<::sqlx::Describe<::sqlx::Sqlite>, ::sqlx::Error>,
            >
            where
                'c: 'e,
            {
                Box::pin(async move {
                    let mut held = self.acquire().await?;
                    ::sqlx::Executor::describe(&mut *held, sql).await
                })
            }
        }
    };
}
pub(crate) use executor_by_borrowing;

executor_by_borrowing!(Connections);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    #[tokio::test]
    async fn callers_take_the_connections_in_turns_and_closed_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("r.db"))
            .create_if_missing(true);
        let conn = SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        let readers = Connections::new(vec![conn]);
        let held = readers.acquire().await.expect("first");
        let waiting = tokio::spawn({
            let readers = readers.clone();
            async move { readers.acquire().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        drop(held);
        waiting.await.expect("join").expect("then gets it");
        readers.close().await;
        assert!(matches!(
            readers.acquire().await,
            Err(sqlx::Error::PoolClosed)
        ));
    }
}
