//! [`ServerStore`] on PostgreSQL: the takeover's compare-and-swap is one
//! `UPDATE` that PostgreSQL re-checks under the row's lock.

use async_trait::async_trait;
use sqlx::Row;

use super::{PgStore, db_error, parse_json};
use crate::agents::job_status::LEASED;
use crate::{
    ChunkAndEnd, ChunkStored, JobEnd, OwnedWork, ServerRecord, ServerStore, StoreError, TakenOver,
    now_ms,
};

#[async_trait]
impl ServerStore for PgStore {
    fn set_server_id(&self, id: &str) {
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = Some(id.to_owned());
    }

    fn server_id(&self) -> Option<String> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn register_server(
        &self,
        id: &str,
        hostname: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO servers (id, hostname, started_ms, heartbeat_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(id)
        .bind(hostname)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn beat_server(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE servers SET heartbeat_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        let host = crate::servers::hostname();
        self.register_server(id, &host, now_ms).await?;
        Ok(false)
    }

    async fn remove_server(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn remove_other_servers(&self, id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM servers WHERE id <> $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn servers(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hostname, started_ms, heartbeat_ms FROM servers ORDER BY started_ms, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(ServerRecord {
                    id: r.try_get("id").map_err(db_error)?,
                    hostname: r.try_get("hostname").map_err(db_error)?,
                    started_ms: r.try_get("started_ms").map_err(db_error)?,
                    heartbeat_ms: r.try_get("heartbeat_ms").map_err(db_error)?,
                })
            })
            .collect()
    }

    async fn take_over(
        &self,
        work: OwnedWork,
        me: &str,
        stale_before_ms: i64,
    ) -> Result<Vec<TakenOver>, StoreError> {
        let (table, key, group, unfinished) = work.sql();
        let candidates = sqlx::query(&format!(
            "SELECT {key} AS id, {group} AS grp, owner FROM {table}
             WHERE {unfinished} AND (owner IS NULL OR (owner <> $1
               AND owner NOT IN (SELECT id FROM servers WHERE heartbeat_ms >= $2)))"
        ))
        .bind(me)
        .bind(stale_before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut taken = Vec::new();
        for row in candidates {
            let id: String = row.try_get("id").map_err(db_error)?;
            let previous: Option<String> = row.try_get("owner").map_err(db_error)?;
            // The compare-and-swap on the previous owner: a server that
            // took the row meanwhile changed it, and this one misses.
            let done = sqlx::query(&format!(
                "UPDATE {table} SET owner = $1 WHERE {key} = $2 AND {unfinished}
                 AND owner IS NOT DISTINCT FROM $3"
            ))
            .bind(me)
            .bind(&id)
            .bind(&previous)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            if done.rows_affected() == 1 {
                taken.push(TakenOver {
                    id,
                    group: row.try_get("grp").map_err(db_error)?,
                    previous_owner: previous,
                });
            }
        }
        Ok(taken)
    }

    async fn owned(&self, work: OwnedWork, me: &str) -> Result<Vec<String>, StoreError> {
        let (table, key, _, unfinished) = work.sql();
        sqlx::query_scalar(&format!(
            "SELECT {key} FROM {table} WHERE {unfinished} AND owner = $1"
        ))
        .bind(me)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn owner_of(&self, work: OwnedWork, id: &str) -> Result<Option<String>, StoreError> {
        let (table, key, _, _) = work.sql();
        let row = sqlx::query(&format!("SELECT owner FROM {table} WHERE {key} = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        row.try_get("owner").map_err(db_error)
    }

    async fn job_log_acked(&self, id: &str, epoch: i64) -> Result<u64, StoreError> {
        let acked: Option<i64> =
            sqlx::query_scalar("SELECT log_acked FROM jobs WHERE id = $1 AND lease_epoch = $2")
                .bind(id)
                .bind(epoch)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(u64::try_from(acked.unwrap_or(0)).unwrap_or(0))
    }

    async fn store_log_chunk(
        &self,
        log_id: &str,
        lines: &[String],
        job_id: &str,
        epoch: i64,
        seq: u64,
    ) -> Result<ChunkStored, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let chunk = store_chunk_in(&mut tx, log_id, lines, job_id, epoch, seq).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(chunk)
    }

    async fn store_last_chunk_and_finish(
        &self,
        log_id: &str,
        lines: &[String],
        job_id: &str,
        epoch: i64,
        seq: u64,
        end: &JobEnd<'_>,
    ) -> Result<ChunkAndEnd, StoreError> {
        let last_seq = i64::try_from(end.last_seq).map_err(StoreError::other)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let chunk = store_chunk_in(&mut tx, log_id, lines, job_id, epoch, seq).await?;
        // Gated by the lease and by the cursor as the chunk just left it
        // (the row is locked by this transaction since the cursor's update).
        let ended = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, result_json = $3, update_ms = $4
             WHERE id = $5 AND status = $6 AND lease_epoch = $7 AND log_acked >= $8",
        )
        .bind(end.status)
        .bind(end.error)
        .bind(end.result.to_string())
        .bind(now_ms())
        .bind(job_id)
        .bind(LEASED)
        .bind(epoch)
        .bind(last_seq)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(db_error)?;
        Ok(ChunkAndEnd { chunk, ended })
    }

    async fn record_job_result(
        &self,
        id: &str,
        epoch: i64,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET result_json = $1, update_ms = $2
             WHERE id = $3 AND status = $4 AND lease_epoch = $5",
        )
        .bind(result.to_string())
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "job {id} is no longer leased under epoch {epoch}"
            )));
        }
        Ok(())
    }

    async fn job_result(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT result_json FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let text = text.ok_or(StoreError::NotFound)?;
        text.as_deref().map(parse_json).transpose()
    }
}

/// Chunk `seq` of lease `epoch` in `tx` (see `ServerStore::store_log_chunk`).
async fn store_chunk_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    log_id: &str,
    lines: &[String],
    job_id: &str,
    epoch: i64,
    seq: u64,
) -> Result<ChunkStored, StoreError> {
    let seq = i64::try_from(seq).map_err(StoreError::other)?;
    // The cursor first: it is the write that decides, and it locks the
    // job's row until commit, so two servers storing the same chunk
    // cannot both append its lines. When it moved, it is the answer too.
    let moved: Option<i64> = sqlx::query_scalar(
        "UPDATE jobs SET log_acked = $1, update_ms = $2
         WHERE id = $3 AND lease_epoch = $4 AND log_acked = $1 - 1 AND status = $5
         RETURNING log_acked",
    )
    .bind(seq)
    .bind(now_ms())
    .bind(job_id)
    .bind(epoch)
    .bind(LEASED)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let advanced = moved.is_some();
    let acked = match moved {
        Some(acked) => {
            if !lines.is_empty() {
                super::builds::append_log_in(tx, log_id, lines).await?;
            }
            Some(acked)
        }
        None => sqlx::query_scalar("SELECT log_acked FROM jobs WHERE id = $1 AND lease_epoch = $2")
            .bind(job_id)
            .bind(epoch)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?,
    };
    Ok(ChunkStored {
        acked: u64::try_from(acked.unwrap_or(0)).unwrap_or(0),
        stored: advanced,
    })
}
