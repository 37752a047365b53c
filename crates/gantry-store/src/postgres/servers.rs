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
        // With whether any other server has a row (a dead one's too, while
        // its row remains: news nobody reads costs little).
        let row = sqlx::query(
            "WITH beat AS (UPDATE servers SET heartbeat_ms = $1 WHERE id = $2 RETURNING id)
             SELECT (SELECT count(*) FROM beat) AS beat,
                    EXISTS (SELECT 1 FROM servers WHERE id <> $2) AS others",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        let others: bool = row.try_get("others").map_err(db_error)?;
        self.others
            .store(others, std::sync::atomic::Ordering::Relaxed);
        if row.try_get::<i64, _>("beat").map_err(db_error)? == 1 {
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
        let chunk = Chunk::new(log_id, lines, job_id, epoch, seq);
        let stored = store_chunk(&self.pool, &chunk, None).await?;
        Ok(stored.chunk)
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
        let me = self.server_id();
        let chunk = Chunk::new(log_id, lines, job_id, epoch, seq);
        store_chunk(&self.pool, &chunk, Some((end, me.as_deref()))).await
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

/// Chunk `seq` of lease `epoch` of job `job_id`, for the log `log_id`.
struct Chunk<'a> {
    log_id: &'a str,
    lines: &'a [String],
    job_id: &'a str,
    epoch: i64,
    seq: u64,
}

impl<'a> Chunk<'a> {
    fn new(log_id: &'a str, lines: &'a [String], job_id: &'a str, epoch: i64, seq: u64) -> Self {
        Chunk {
            log_id,
            lines,
            job_id,
            epoch,
            seq,
        }
    }
}

/// A chunk, and with `end` the job's end and maybe its build's, the build
/// fenced by its owner being the given server (see
/// `ServerStore::store_log_chunk` and `store_last_chunk_and_finish`).
///
/// One statement, so one round trip and its own transaction. The cursor's
/// UPDATE decides: it locks the job's row until commit, so of two servers
/// storing the same chunk only one moves it, and only that one's `head`
/// and `added` CTEs (which read from it) append the lines.
///
/// The end goes with the cursor's move when the chunk completes the log
/// (`$5 >= $11`), or, when the chunk was stored before (a result resent
/// after a lost answer), by `ended_anyway` once every chunk is in. The two
/// UPDATEs of the job's row are never both applied: their conditions on
/// `log_acked` exclude each other for any version of the row, and a
/// statement skips a row its own other part already changed. The build's
/// end (`built`, `$12` not null) follows from either: it reads what they
/// return, so it applies exactly when the job ended in this statement.
///
/// Without a move, the cursor is as the statement's snapshot saw it.
async fn store_chunk(
    pool: &sqlx::PgPool,
    chunk: &Chunk<'_>,
    end: Option<(&JobEnd<'_>, Option<&str>)>,
) -> Result<ChunkAndEnd, StoreError> {
    use super::builds::{INSERT_LINES, MOVE_HEAD, storable};
    let seq = i64::try_from(chunk.seq).map_err(StoreError::other)?;
    let (end, me) = match end {
        Some((end, me)) => (Some(end), me),
        None => (None, None),
    };
    // Without an end, `$11` (the last chunk) is past any cursor, so the
    // job's columns stay as they are and `ended_anyway` matches nothing.
    let last_seq = match end {
        Some(end) => i64::try_from(end.last_seq).map_err(StoreError::other)?,
        None => i64::MAX,
    };
    let build = end.and_then(|e| e.build);
    let sql = format!(
        "WITH moved AS (
             UPDATE jobs SET log_acked = $5, update_ms = $6,
                 status = CASE WHEN $5 >= $11 THEN $8 ELSE status END,
                 error = CASE WHEN $5 >= $11 THEN $9 ELSE error END,
                 result_json = CASE WHEN $5 >= $11 THEN $10 ELSE result_json END
             WHERE id = $3 AND lease_epoch = $4 AND log_acked = $5 - 1 AND status = $7
             RETURNING log_acked, status <> $7 AS ended
         ), ended_anyway AS (
             UPDATE jobs SET status = $8, error = $9, result_json = $10, update_ms = $6
             WHERE id = $3 AND lease_epoch = $4 AND log_acked <> $5 - 1 AND status = $7
               AND log_acked >= $11
             RETURNING id
         ), built AS (
             UPDATE builds SET status = $12, current_phase = $13, build_json = $14, end_ms = $15
             WHERE id = $1 AND $12::text IS NOT NULL
               AND ($16::text IS NULL OR owner IS NULL OR owner = $16)
               AND (EXISTS (SELECT 1 FROM moved WHERE ended)
                    OR EXISTS (SELECT 1 FROM ended_anyway))
             RETURNING id
         ), build_audited AS (
             INSERT INTO audit_log (at_ms, actor, action, target, detail)
             SELECT $6, 'system', 'build.update', id, $17 FROM built
         ), head AS (
             INSERT INTO build_log_heads AS h (build_id, last_seq)
             SELECT $1, cardinality($2::text[]) FROM moved WHERE cardinality($2::text[]) > 0
             {MOVE_HEAD}
         ), {INSERT_LINES}
         SELECT (SELECT log_acked FROM moved) AS moved_to,
                (SELECT log_acked FROM jobs WHERE id = $3 AND lease_epoch = $4) AS acked,
                COALESCE((SELECT ended FROM moved), false)
                    OR EXISTS (SELECT 1 FROM ended_anyway) AS ended,
                EXISTS (SELECT 1 FROM built) AS build_ended"
    );
    let row = sqlx::query(&sql)
        .bind(chunk.log_id)
        .bind(storable(chunk.lines))
        .bind(chunk.job_id)
        .bind(chunk.epoch)
        .bind(seq)
        .bind(now_ms())
        .bind(LEASED)
        .bind(end.map(|e| e.status))
        .bind(end.and_then(|e| e.error))
        .bind(end.map(|e| e.result.to_string()))
        .bind(last_seq)
        .bind(build.map(|b| b.status.as_str()))
        .bind(build.map(|b| b.current_phase.as_str()))
        .bind(build.map(|b| b.build.to_string()))
        .bind(build.and_then(|b| b.end_ms))
        .bind(me)
        .bind(build.map(|b| format!("{} {}", b.status, b.current_phase)))
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    let moved_to: Option<i64> = row.try_get("moved_to").map_err(db_error)?;
    let acked: Option<i64> = row.try_get("acked").map_err(db_error)?;
    Ok(ChunkAndEnd {
        chunk: ChunkStored {
            acked: u64::try_from(moved_to.or(acked).unwrap_or(0)).unwrap_or(0),
            stored: moved_to.is_some(),
        },
        ended: row.try_get("ended").map_err(db_error)?,
        build_ended: row.try_get("build_ended").map_err(db_error)?,
    })
}
