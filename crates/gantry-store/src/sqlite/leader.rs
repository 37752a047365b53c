//! [`LeaderStore`] on SQLite: one upsert per take or renewal.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, db_error};
use crate::{LeaderStore, LeaseRecord, StoreError};

fn lease(row: &SqliteRow) -> Result<LeaseRecord, StoreError> {
    let term: i64 = row.try_get("term").map_err(db_error)?;
    Ok(LeaseRecord {
        name: row.try_get("name").map_err(db_error)?,
        holder: row.try_get("holder").map_err(db_error)?,
        term: term.max(0) as u64,
        expires_ms: row.try_get("expires_ms").map_err(db_error)?,
    })
}

#[async_trait]
impl LeaderStore for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        // One statement under SQLite's write lock: of two servers racing
        // for an expired lease the second sees the first's new expiry.
        let row = sqlx::query(
            "INSERT INTO leadership (name, holder, term, expires_ms) VALUES (?, ?, 1, ?)
             ON CONFLICT (name) DO UPDATE SET
                term = CASE WHEN leadership.holder = excluded.holder
                            THEN leadership.term ELSE leadership.term + 1 END,
                holder = excluded.holder,
                expires_ms = excluded.expires_ms
             WHERE leadership.holder = excluded.holder OR leadership.expires_ms <= ?
             RETURNING name, holder, term, expires_ms",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        row.as_ref().map(lease).transpose()
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        // Expired, not deleted: the term keeps counting.
        sqlx::query("UPDATE leadership SET expires_ms = 0 WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        let row =
            sqlx::query("SELECT name, holder, term, expires_ms FROM leadership WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.writer)
                .await
                .map_err(db_error)?;
        row.as_ref().map(lease).transpose()
    }
}
