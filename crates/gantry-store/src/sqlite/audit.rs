//! The audit log: one row per change, written in the change's transaction.

use sqlx::{Row, SqliteConnection};

use super::connections::Connections;
use super::db_error;
use crate::{AuditEntry, StoreError, now_ms};

/// Records that `actor` did `action` on `target`.
pub(crate) async fn record(
    conn: &mut SqliteConnection,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(now_ms())
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn newest(pool: &Connections, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at_ms: r.try_get("at_ms").map_err(db_error)?,
                actor: r.try_get("actor").map_err(db_error)?,
                action: r.try_get("action").map_err(db_error)?,
                target: r.try_get("target").map_err(db_error)?,
                detail: r.try_get("detail").map_err(db_error)?,
            })
        })
        .collect()
}
