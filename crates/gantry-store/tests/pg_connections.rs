//! The PostgreSQL store's pool: a connection the database closed while it
//! sat idle in the pool (a restart, an administrator's
//! `pg_terminate_backend`) is checked and replaced as it is taken, so the
//! next statement succeeds instead of failing on it.

use std::str::FromStr;

use futures_util::future::join_all;
use gantry_store::{BuildStore, PING_WHEN_IDLE_FOR, StoreError};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

// Only the PostgreSQL backend: this is about PostgreSQL's pool.
#[allow(unused_macros)]
mod common;
use common::{Backend, PgBackend};

/// Closes every connection to `database` but the caller's own.
async fn terminate_others(url: &str, database: &str) -> i64 {
    let mut admin = PgConnectOptions::from_str(url)
        .expect("URL")
        .connect()
        .await
        .expect("admin connection");
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
    )
    .bind(database)
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    killed
}

#[tokio::test]
async fn a_pooled_connection_closed_while_idle_is_replaced_not_failed() {
    let Some(b) = PgBackend::new(module_path!()).await else {
        return;
    };
    let store = b.open().await;
    // Several statements at once, so the pool holds several connections.
    let lookups: Vec<_> = (0..4).map(|_| store.get_project("absent")).collect();
    for found in join_all(lookups).await {
        assert!(matches!(found, Err(StoreError::NotFound)), "{found:?}");
    }
    assert!(terminate_others(&b.db.url, &b.db.name).await >= 1);
    // Idle past the check's threshold: each connection taken is checked.
    tokio::time::sleep(PING_WHEN_IDLE_FOR + std::time::Duration::from_millis(100)).await;
    for round in 0..2 {
        let lookups: Vec<_> = (0..4).map(|_| store.get_project("absent")).collect();
        for found in join_all(lookups).await {
            assert!(
                matches!(found, Err(StoreError::NotFound)),
                "round {round}: a statement failed on a closed connection: {found:?}"
            );
        }
    }
    b.close(&store).await;
    b.finish().await;
}
