//! [`AgentStore`] on PostgreSQL: agent tokens, agents and the job queue.
//!
//! Every state change is one conditional `UPDATE ... RETURNING` whose
//! `WHERE` names the state it expects. Under READ COMMITTED a second writer
//! to the same row waits for the first to commit and then re-checks the
//! `WHERE` against the row as the first left it, so of two servers offering,
//! acknowledging or expiring the same job exactly one changes it, and the
//! row it returns is the one it wrote (no read-after-write window).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};

use super::{PgStore, audit, db_error, parse_json};
use crate::agents::job_status::{FAILED, LEASED, QUEUED};
use crate::agents::{
    AgentJobRecord, JobState, LAST_USED_GRANULARITY_MS, NewAgentJob, OfferableJob, after_expiry,
    fenced, labels, labels_json,
};
use crate::{
    AgentRecord, AgentStore, AgentTokenRecord, ExpiredLease, QueueFeed, QueueNews, StoreError,
    now_ms,
};

const JOB_COLUMNS: &str = "id, kind, labels_json, payload_json, status, lease_id, \
     lease_epoch, agent_id, lease_expires_ms, attempts, max_attempts, cancel_requested, error, result_json";

/// The channel a job queued is told on ([`AgentStore::queue_feed`]).
const QUEUE_CHANNEL: &str = "gantry_job_queued";

/// Labels longer than this (as JSON) are not told: a notification's
/// payload must stay under 8000 bytes, and a server told of a job without
/// its labels looks at the queue anyway.
const MAX_TOLD_LABELS: usize = 4000;

/// The SQL that tells the job `j` (a row of `jobs`) was queued, on the
/// channel in placeholder `channel`, by the server in placeholder `server`
/// (so that server ignores its own news).
fn notify_queued(channel: &str, server: &str) -> String {
    format!(
        "pg_notify({channel}, json_build_object('server', {server}::text, 'labels', \
         CASE WHEN length(j.labels_json) <= {MAX_TOLD_LABELS} THEN j.labels_json END)::text)"
    )
}

impl PgStore {
    /// Whether a job queued is told to other servers ([`PgStore::others`]).
    fn tells_others(&self) -> bool {
        self.others.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A notification on [`QUEUE_CHANNEL`] as this server reads it: `None` when
/// it is its own (or unreadable: then it is news, without labels).
fn news_of(payload: &str, me: Option<&str>) -> Option<QueueNews> {
    let Ok(told) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Some(QueueNews::Queued { labels: None });
    };
    let from = told.get("server").and_then(|s| s.as_str());
    if from.is_some() && from == me {
        return None;
    }
    let labels = told
        .get("labels")
        .and_then(|l| l.as_str())
        .and_then(|l| labels(l).ok());
    Some(QueueNews::Queued { labels })
}

const TOKEN_COLUMNS: &str = "id, name, created_ms, last_used_ms, revoked_ms";

fn token_row(r: &PgRow) -> Result<AgentTokenRecord, StoreError> {
    Ok(AgentTokenRecord {
        id: r.try_get("id").map_err(db_error)?,
        name: r.try_get("name").map_err(db_error)?,
        created_ms: r.try_get("created_ms").map_err(db_error)?,
        last_used_ms: r.try_get("last_used_ms").map_err(db_error)?,
        revoked_ms: r.try_get("revoked_ms").map_err(db_error)?,
    })
}

fn job_row(r: &PgRow) -> Result<AgentJobRecord, StoreError> {
    let attempts: i64 = r.try_get("attempts").map_err(db_error)?;
    let max_attempts: i64 = r.try_get("max_attempts").map_err(db_error)?;
    let cancel: i64 = r.try_get("cancel_requested").map_err(db_error)?;
    Ok(AgentJobRecord {
        id: r.try_get("id").map_err(db_error)?,
        kind: r.try_get("kind").map_err(db_error)?,
        labels: labels(&r.try_get::<String, _>("labels_json").map_err(db_error)?)?,
        payload: parse_json(&r.try_get::<String, _>("payload_json").map_err(db_error)?)?,
        status: r.try_get("status").map_err(db_error)?,
        lease_id: r.try_get("lease_id").map_err(db_error)?,
        lease_epoch: r.try_get("lease_epoch").map_err(db_error)?,
        agent_id: r.try_get("agent_id").map_err(db_error)?,
        lease_expires_ms: r.try_get("lease_expires_ms").map_err(db_error)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        cancel_requested: cancel != 0,
        error: r.try_get("error").map_err(db_error)?,
        result: r
            .try_get::<Option<String>, _>("result_json")
            .map_err(db_error)?
            .map(|text| parse_json(&text))
            .transpose()?,
    })
}

impl PgStore {
    /// Ends the lease of `epoch` with a final status (and the agent's
    /// report, when given; without one, a report already recorded by
    /// `record_job_result` stays).
    async fn finish_job(
        &self,
        id: &str,
        epoch: i64,
        status: &str,
        error: Option<&str>,
        result: Option<String>,
    ) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = $1, error = $2, result_json = COALESCE($3, result_json), update_ms = $4
             WHERE id = $5 AND status = $6 AND lease_epoch = $7
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(status)
        .bind(error)
        .bind(result)
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        match row {
            Some(row) => job_row(&row),
            None => Err(self.job_or_fenced(id, epoch).await),
        }
    }

    /// The refusal for a fenced change: why, from the job as it is now.
    async fn job_or_fenced(&self, id: &str, epoch: i64) -> StoreError {
        match AgentStore::get_agent_job(self, id).await {
            Ok(job) => fenced(&job, epoch),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl AgentStore for PgStore {
    async fn create_agent_token(
        &self,
        id: &str,
        name: &str,
        token_sha256: &str,
        actor: &str,
    ) -> Result<AgentTokenRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO agent_tokens (id, name, token_sha256, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(token_sha256)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        audit::record(&mut tx, actor, "agent_token.create", id, name).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(AgentTokenRecord {
            id: id.into(),
            name: name.into(),
            created_ms: now,
            last_used_ms: None,
            revoked_ms: None,
        })
    }

    async fn list_agent_tokens(&self) -> Result<Vec<AgentTokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM agent_tokens ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_agent_token(&self, id: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE agent_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit::record(&mut tx, actor, "agent_token.revoke", id, "").await?;
        tx.commit().await.map_err(db_error)
    }

    async fn use_agent_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<AgentTokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM agent_tokens
             WHERE token_sha256 = $1 AND revoked_ms IS NULL"
        ))
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let record = token_row(&row)?;
        let now = now_ms();
        if record
            .last_used_ms
            .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
        {
            // Only ever moves forward, whichever server writes last.
            sqlx::query(
                "UPDATE agent_tokens SET last_used_ms = $1
                 WHERE id = $2 AND (last_used_ms IS NULL OR last_used_ms < $1)",
            )
            .bind(now)
            .bind(&record.id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        }
        Ok(Some(record))
    }

    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (id, token_id, labels_json, capacity, executor, hostname, version,
                                 registered_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&agent.id)
        .bind(&agent.token_id)
        .bind(labels_json(&agent.labels))
        .bind(i64::from(agent.capacity))
        .bind(&agent.executor)
        .bind(&agent.hostname)
        .bind(&agent.version)
        .bind(agent.registered_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_agent(&self, id: &str) -> Result<AgentRecord, StoreError> {
        let r = sqlx::query(
            "SELECT id, token_id, labels_json, capacity, executor, hostname, version,
                    registered_ms
             FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let capacity: i64 = r.try_get("capacity").map_err(db_error)?;
        Ok(AgentRecord {
            id: r.try_get("id").map_err(db_error)?,
            token_id: r.try_get("token_id").map_err(db_error)?,
            labels: labels(&r.try_get::<String, _>("labels_json").map_err(db_error)?)?,
            capacity: u32::try_from(capacity).unwrap_or(1),
            executor: r.try_get("executor").map_err(db_error)?,
            hostname: r.try_get("hostname").map_err(db_error)?,
            version: r.try_get("version").map_err(db_error)?,
            registered_ms: r.try_get("registered_ms").map_err(db_error)?,
        })
    }

    async fn enqueue_job_with_log(
        &self,
        job: &NewAgentJob,
        log_id: &str,
        lines: &[String],
    ) -> Result<AgentJobRecord, StoreError> {
        use super::builds::{INSERT_LINES, MOVE_HEAD, storable};
        let now = now_ms();
        // Told to the other servers' polls, if any, in the same statement
        // (sent at its commit): see `queue_feed`.
        let tells = self.tells_others();
        let tell = if tells {
            format!(", {}", notify_queued("$10", "$11"))
        } else {
            String::new()
        };
        // The lines (`$1` the log, `$2` the lines, as `INSERT_LINES` wants
        // them) only when there are any; a failed INSERT of the job (its
        // id taken) fails the whole statement, lines included.
        let sql = format!(
            "WITH head AS (
                 INSERT INTO build_log_heads AS h (build_id, last_seq)
                 SELECT $1, cardinality($2::text[]) WHERE cardinality($2::text[]) > 0
                 {MOVE_HEAD}
             ), {INSERT_LINES}, j AS (
                 INSERT INTO jobs (id, kind, labels_json, payload_json, status, max_attempts,
                                   created_ms, update_ms)
                 VALUES ($3, $4, $5, $6, $7, $8, $9, $9)
                 RETURNING {JOB_COLUMNS})
             SELECT j.*{tell} FROM j"
        );
        let mut query = sqlx::query(&sql)
            .bind(log_id)
            .bind(storable(lines))
            .bind(&job.id)
            .bind(&job.kind)
            .bind(labels_json(&job.labels))
            .bind(job.payload.to_string())
            .bind(QUEUED)
            .bind(i64::from(job.max_attempts.max(1)))
            .bind(now);
        if tells {
            query = query
                .bind(QUEUE_CHANNEL)
                .bind(crate::ServerStore::server_id(self));
        }
        let row = query.fetch_one(&self.pool).await.map_err(db_error)?;
        job_row(&row)
    }

    async fn get_agent_job(&self, id: &str) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        job_row(&row)
    }

    async fn job_states(&self, ids: &[String]) -> Result<Vec<JobState>, StoreError> {
        let mut states = Vec::with_capacity(ids.len());
        // A few hundred ids per statement, well within either database's
        // limit on bound values.
        for group in ids.chunks(500) {
            let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "SELECT id, status, attempts, agent_id, error FROM jobs WHERE id IN (",
            );
            let mut list = query.separated(", ");
            for id in group {
                list.push_bind(id.as_str());
            }
            query.push(")");
            let rows = query
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            for r in &rows {
                let attempts: i64 = r.try_get("attempts").map_err(db_error)?;
                states.push(JobState {
                    id: r.try_get("id").map_err(db_error)?,
                    status: r.try_get("status").map_err(db_error)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    agent_id: r.try_get("agent_id").map_err(db_error)?,
                    error: r.try_get("error").map_err(db_error)?,
                });
            }
        }
        Ok(states)
    }

    async fn offerable_jobs(&self, limit: u32) -> Result<Vec<OfferableJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, labels_json, attempts FROM jobs WHERE status = $1
             ORDER BY created_ms, id LIMIT $2",
        )
        .bind(QUEUED)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(OfferableJob {
                    id: r.try_get("id").map_err(db_error)?,
                    kind: r.try_get("kind").map_err(db_error)?,
                    labels: labels(&r.try_get::<String, _>("labels_json").map_err(db_error)?)?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts").map_err(db_error)?)
                        .unwrap_or(0),
                })
            })
            .collect()
    }

    async fn ack_job(
        &self,
        id: &str,
        attempts: u32,
        agent_id: &str,
        lease_id: &str,
        lease_expires_ms: i64,
    ) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = $1, lease_id = $2, lease_epoch = lease_epoch + 1,
                    agent_id = $3, lease_expires_ms = $4, attempts = attempts + 1,
                    offer_nonce = NULL, offer_expires_ms = 0, log_acked = 0, result_json = NULL,
                    update_ms = $5
             WHERE id = $6 AND status = $7 AND attempts = $8
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(LEASED)
        .bind(lease_id)
        .bind(agent_id)
        .bind(lease_expires_ms)
        .bind(now_ms())
        .bind(id)
        .bind(QUEUED)
        .bind(i64::from(attempts))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        match row {
            Some(row) => job_row(&row),
            None => {
                let job = AgentStore::get_agent_job(self, id).await?;
                Err(StoreError::Conflict(format!(
                    "the offer of job {id} is no longer open (the job is {}, or another \
                     acknowledgement won)",
                    job.status
                )))
            }
        }
    }

    async fn renew_lease(
        &self,
        id: &str,
        epoch: i64,
        lease_expires_ms: i64,
    ) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET lease_expires_ms = $1, update_ms = $2
             WHERE id = $3 AND status = $4 AND lease_epoch = $5
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(lease_expires_ms)
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        match row {
            Some(row) => job_row(&row),
            None => Err(self.job_or_fenced(id, epoch).await),
        }
    }

    async fn check_lease(&self, id: &str, epoch: i64) -> Result<AgentJobRecord, StoreError> {
        let job = AgentStore::get_agent_job(self, id).await?;
        if job.status != LEASED || job.lease_epoch != epoch {
            return Err(fenced(&job, epoch));
        }
        Ok(job)
    }

    async fn finish_agent_job(
        &self,
        id: &str,
        epoch: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<AgentJobRecord, StoreError> {
        self.finish_job(id, epoch, status, error, None).await
    }

    async fn finish_agent_job_with_result(
        &self,
        id: &str,
        epoch: i64,
        status: &str,
        error: Option<&str>,
        result: &serde_json::Value,
    ) -> Result<AgentJobRecord, StoreError> {
        self.finish_job(id, epoch, status, error, Some(result.to_string()))
            .await
    }

    async fn cancel_job(&self, id: &str) -> Result<AgentJobRecord, StoreError> {
        // One statement for both cases, so a job acknowledged meanwhile is
        // flagged rather than missed between a QUEUED and a LEASED update.
        let row = sqlx::query(&format!(
            "UPDATE jobs SET
                status = CASE WHEN status = $1 THEN $2 ELSE status END,
                error = CASE WHEN status = $1 THEN 'cancelled' ELSE error END,
                cancel_requested = CASE WHEN status = $3 THEN 1 ELSE cancel_requested END,
                update_ms = $4
             WHERE id = $5 AND status IN ($1, $3)
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(QUEUED)
        .bind(FAILED)
        .bind(LEASED)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        match row {
            Some(row) => job_row(&row),
            None => AgentStore::get_agent_job(self, id).await,
        }
    }

    async fn abandon_job(&self, id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, update_ms = $3
             WHERE id = $4 AND status IN ($5, $6)",
        )
        .bind(FAILED)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(QUEUED)
        .bind(LEASED)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn queue_feed(&self) -> Result<Option<QueueFeed>, StoreError> {
        // A connection of its own, held for as long as the store is open
        // (the pool was sized with one more for it).
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(db_error)?;
        listener.listen(QUEUE_CHANNEL).await.map_err(db_error)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let server = self.server.clone();
        tokio::spawn(async move {
            loop {
                let news = match listener.try_recv().await {
                    Ok(Some(told)) => {
                        let me = server.read().unwrap_or_else(|e| e.into_inner()).clone();
                        match news_of(told.payload(), me.as_deref()) {
                            Some(news) => news,
                            None => continue,
                        }
                    }
                    // The connection dropped; the next call connects again.
                    // What was told meanwhile is lost.
                    Ok(None) => QueueNews::Missed,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for jobs queued by other servers; trying again in a second");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        QueueNews::Missed
                    }
                };
                if tx.send(news).await.is_err() {
                    // Nobody reads the news any more.
                    return;
                }
            }
        });
        Ok(Some(rx))
    }

    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<ExpiredLease>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 AND lease_expires_ms <= $2"
        ))
        .bind(LEASED)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut expired = Vec::new();
        for row in &rows {
            let job = job_row(row)?;
            let (status, error) = after_expiry(&job);
            // Conditional on the epoch read: a renewal, or another server's
            // reaper, that got there first wins and this changes nothing.
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = $1, error = $2, offer_nonce = NULL,
                        offer_expires_ms = 0, update_ms = $3
                 WHERE id = $4 AND status = $5 AND lease_epoch = $6 AND lease_expires_ms <= $3
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(status)
            .bind(error)
            .bind(now_ms)
            .bind(&job.id)
            .bind(LEASED)
            .bind(job.lease_epoch)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            if let Some(row) = row {
                let requeued = job_row(&row)?;
                if requeued.status == QUEUED && self.tells_others() {
                    // Rare (a lease ran out): a statement of its own.
                    let notify = format!(
                        "SELECT {} FROM jobs j WHERE j.id = $1",
                        notify_queued("$2", "$3")
                    );
                    // The job is queued either way: news lost only delays
                    // it to the other servers' next look.
                    if let Err(e) = sqlx::query(&notify)
                        .bind(&requeued.id)
                        .bind(QUEUE_CHANNEL)
                        .bind(crate::ServerStore::server_id(self))
                        .execute(&self.pool)
                        .await
                    {
                        tracing::warn!(job = %requeued.id, error = %e, "telling other servers of a job queued again failed");
                    }
                }
                expired.push(ExpiredLease {
                    job: requeued,
                    agent_id: job.agent_id,
                });
            }
        }
        Ok(expired)
    }
}
