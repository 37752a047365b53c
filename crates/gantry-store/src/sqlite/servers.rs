//! [`ServerStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;

use super::writer::{Batch, Step};
use super::{SqliteStore, db_error, parse_json};
use crate::agents::job_status::LEASED;
use crate::{
    ChunkAndEnd, ChunkStored, JobEnd, OwnedWork, ServerRecord, ServerStore, StoreError, TakenOver,
    now_ms,
};

#[async_trait]
impl ServerStore for SqliteStore {
    fn set_server_id(&self, id: &str) {
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = Some(id.to_owned());
    }

    fn server_id(&self) -> Option<String> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn durable(&self) -> Result<(), StoreError> {
        // A request that wrote nothing, on a store with nothing pending,
        // waits for no flush: every commit so far was marked (nothing sent
        // to the writer is still to be done, and a job marks before it
        // stops counting) and every mark is flushed. Checked in that order.
        if self.writer.is_idle() && self.wal.clean() {
            return Ok(());
        }
        self.wal.durable().await
    }

    async fn register_server(
        &self,
        id: &str,
        hostname: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO servers (id, hostname, started_ms, heartbeat_ms) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(id)
        .bind(hostname)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn beat_server(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE servers SET heartbeat_ms = ? WHERE id = ?")
            .bind(now_ms)
            .bind(id)
            .execute(&self.writer)
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
        sqlx::query("DELETE FROM servers WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn remove_other_servers(&self, id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM servers WHERE id <> ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn servers(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hostname, started_ms, heartbeat_ms FROM servers ORDER BY started_ms, id",
        )
        .fetch_all(&self.writer)
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
             WHERE {unfinished} AND (owner IS NULL OR (owner <> ?1
               AND owner NOT IN (SELECT id FROM servers WHERE heartbeat_ms >= ?2)))"
        ))
        .bind(me)
        .bind(stale_before_ms)
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        let mut taken = Vec::new();
        for row in candidates {
            let id: String = row.try_get("id").map_err(db_error)?;
            let previous: Option<String> = row.try_get("owner").map_err(db_error)?;
            // The compare-and-swap on the previous owner: a server that
            // took the row meanwhile changed it, and this one misses.
            let done = sqlx::query(&format!(
                "UPDATE {table} SET owner = ? WHERE {key} = ? AND {unfinished} AND owner IS ?"
            ))
            .bind(me)
            .bind(&id)
            .bind(&previous)
            .execute(&self.writer)
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
            "SELECT {key} FROM {table} WHERE {unfinished} AND owner = ?"
        ))
        .bind(me)
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)
    }

    async fn owner_of(&self, work: OwnedWork, id: &str) -> Result<Option<String>, StoreError> {
        let (table, key, _, _) = work.sql();
        let row = sqlx::query(&format!("SELECT owner FROM {table} WHERE {key} = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        row.try_get("owner").map_err(db_error)
    }

    async fn job_log_acked(&self, id: &str, epoch: i64) -> Result<u64, StoreError> {
        let acked: Option<i64> =
            sqlx::query_scalar("SELECT log_acked FROM jobs WHERE id = ? AND lease_epoch = ?")
                .bind(id)
                .bind(epoch)
                .fetch_optional(&self.readers)
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
        let mut batch = chunk_batch(log_id, lines, job_id, epoch, seq)?;
        push_log_acked(&mut batch, job_id, epoch);
        let steps = self.writer.run(batch).await.map_err(db_error)?;
        chunk_stored(&steps)
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
        let mut batch = chunk_batch(log_id, lines, job_id, epoch, seq)?;
        // The end is gated in SQL by the lease and the cursor as the
        // chunk just left it: no read between the two.
        let job_step = batch.len();
        batch
            .push(
                "UPDATE jobs SET status = ?, error = ?, result_json = ?, update_ms = ? \
                 WHERE id = ? AND status = ? AND lease_epoch = ? AND log_acked >= ?",
            )
            .bind(end.status.to_owned())
            .bind(end.error.map(str::to_owned))
            .bind(end.result.to_string())
            .bind(now_ms())
            .bind(job_id.to_owned())
            .bind(LEASED)
            .bind(epoch)
            .bind(last_seq);
        // The build's end only when the job's ended (`changes()` is the
        // count of the statement before), fenced by its owner as
        // `update_build` is.
        let build_step = end.build.map(|update| {
            let me = self.server_id();
            super::builds::push_update(&mut batch, log_id, update, me.as_deref(), "system", true)
        });
        push_log_acked(&mut batch, job_id, epoch);
        let steps = self.writer.run(batch).await.map_err(db_error)?;
        let changed = |i: Option<usize>| {
            i.and_then(|i| steps.get(i))
                .is_some_and(|step| step.changes == 1)
        };
        Ok(ChunkAndEnd {
            chunk: chunk_stored(&steps)?,
            ended: changed(Some(job_step)),
            build_ended: changed(build_step),
        })
    }

    async fn record_job_result(
        &self,
        id: &str,
        epoch: i64,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET result_json = ?, update_ms = ?
             WHERE id = ? AND status = ? AND lease_epoch = ?",
        )
        .bind(result.to_string())
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .execute(&self.writer)
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
            sqlx::query_scalar("SELECT result_json FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.readers)
                .await
                .map_err(db_error)?;
        let text = text.ok_or(StoreError::NotFound)?;
        text.as_deref().map(parse_json).transpose()
    }
}

/// A batch storing chunk `seq` of lease `epoch` (one round trip, see
/// `Batch`): the cursor first, since it is the write that decides (the
/// lines follow only when it moved) and it takes the write lock before
/// anything is read.
fn chunk_batch(
    log_id: &str,
    lines: &[String],
    job_id: &str,
    epoch: i64,
    seq: u64,
) -> Result<Batch, StoreError> {
    let seq = i64::try_from(seq).map_err(StoreError::other)?;
    let mut batch = Batch::new();
    batch
        .push(
            "UPDATE jobs SET log_acked = ?, update_ms = ? \
             WHERE id = ? AND lease_epoch = ? AND log_acked = ? - 1 AND status = ?",
        )
        .bind(seq)
        .bind(now_ms())
        .bind(job_id.to_owned())
        .bind(epoch)
        .bind(seq)
        .bind(LEASED);
    super::builds::push_log_lines(&mut batch, log_id, lines, true);
    Ok(batch)
}

/// The cursor's read, last in a chunk's batch.
fn push_log_acked(batch: &mut Batch, job_id: &str, epoch: i64) {
    batch
        .push("SELECT log_acked FROM jobs WHERE id = ? AND lease_epoch = ?")
        .bind(job_id.to_owned())
        .bind(epoch);
}

/// What a chunk's batch did: its first step moved the cursor, its last
/// read it.
fn chunk_stored(steps: &[Step]) -> Result<ChunkStored, StoreError> {
    let advanced = steps.first().is_some_and(|step| step.changes == 1);
    let acked: Option<i64> = steps
        .last()
        .and_then(|step| step.rows.first())
        .map(|row| row.get_at(0))
        .transpose()
        .map_err(db_error)?;
    Ok(ChunkStored {
        acked: u64::try_from(acked.unwrap_or(0)).unwrap_or(0),
        stored: advanced,
    })
}
