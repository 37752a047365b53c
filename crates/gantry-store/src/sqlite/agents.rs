//! The SQLite implementation of [`AgentStore`]: agent tokens, agents and
//! the job queue. Each state change is one conditional `UPDATE` whose
//! `WHERE` names the state it expects, so a lost race changes nothing.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::raw::{BatchRow, Columns};
use super::writer::{Batch, Step};
use super::{SqliteStore, audit, db_error, parse_json};
use crate::agents::job_status::{FAILED, LEASED, QUEUED};
use crate::agents::{
    AgentJobRecord, JobState, LAST_USED_GRANULARITY_MS, NewAgentJob, OfferableJob, after_expiry,
    fenced, labels, labels_json,
};
use crate::{AgentRecord, AgentStore, AgentTokenRecord, ExpiredLease, StoreError, now_ms};

const JOB_COLUMNS: &str = "id, kind, labels_json, payload_json, status, lease_id, \
     lease_epoch, agent_id, lease_expires_ms, attempts, max_attempts, cancel_requested, error, result_json";

fn token_row(r: &SqliteRow) -> Result<AgentTokenRecord, StoreError> {
    Ok(AgentTokenRecord {
        id: r.try_get("id").map_err(db_error)?,
        name: r.try_get("name").map_err(db_error)?,
        created_ms: r.try_get("created_ms").map_err(db_error)?,
        last_used_ms: r.try_get("last_used_ms").map_err(db_error)?,
        revoked_ms: r.try_get("revoked_ms").map_err(db_error)?,
    })
}

/// The first row the one statement of a batch returned, if any.
fn one_row(steps: Vec<Step>) -> Option<BatchRow> {
    steps
        .into_iter()
        .next()
        .and_then(|step| step.rows.into_iter().next())
}

fn job_row(r: &impl Columns) -> Result<AgentJobRecord, StoreError> {
    let attempts: i64 = r.column("attempts").map_err(db_error)?;
    let max_attempts: i64 = r.column("max_attempts").map_err(db_error)?;
    let cancel: i64 = r.column("cancel_requested").map_err(db_error)?;
    Ok(AgentJobRecord {
        id: r.column("id").map_err(db_error)?,
        kind: r.column("kind").map_err(db_error)?,
        labels: labels(&r.column::<String>("labels_json").map_err(db_error)?)?,
        payload: parse_json(&r.column::<String>("payload_json").map_err(db_error)?)?,
        status: r.column("status").map_err(db_error)?,
        lease_id: r.column("lease_id").map_err(db_error)?,
        lease_epoch: r.column("lease_epoch").map_err(db_error)?,
        agent_id: r.column("agent_id").map_err(db_error)?,
        lease_expires_ms: r.column("lease_expires_ms").map_err(db_error)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        cancel_requested: cancel != 0,
        error: r.column("error").map_err(db_error)?,
        result: r
            .column::<Option<String>>("result_json")
            .map_err(db_error)?
            .map(|text| parse_json(&text))
            .transpose()?,
    })
}

impl SqliteStore {
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
        // The ended row comes back from the UPDATE itself (no second read).
        let mut batch = Batch::new();
        batch
            .push(&format!(
                "UPDATE jobs SET status = ?, error = ?, result_json = COALESCE(?, result_json),
                        update_ms = ?
                 WHERE id = ? AND status = ? AND lease_epoch = ?
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(status.to_owned())
            .bind(error.map(str::to_owned))
            .bind(result)
            .bind(now_ms())
            .bind(id.to_owned())
            .bind(LEASED)
            .bind(epoch);
        let row = one_row(self.writer.run(batch).await.map_err(db_error)?);
        match row {
            Some(row) => job_row(&row),
            None => Err(self.job_or_fenced(id, epoch).await),
        }
    }

    async fn job_or_fenced(&self, id: &str, epoch: i64) -> StoreError {
        match AgentStore::get_agent_job(self, id).await {
            Ok(job) => fenced(&job, epoch),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn create_agent_token(
        &self,
        id: &str,
        name: &str,
        token_sha256: &str,
        actor: &str,
    ) -> Result<AgentTokenRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO agent_tokens (id, name, token_sha256, created_ms) VALUES (?, ?, ?, ?)",
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
        let rows = sqlx::query(
            "SELECT id, name, created_ms, last_used_ms, revoked_ms FROM agent_tokens
             ORDER BY created_ms, id",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_agent_token(&self, id: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE agent_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
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
        let row = sqlx::query(
            "SELECT id, name, created_ms, last_used_ms, revoked_ms FROM agent_tokens
             WHERE token_sha256 = ? AND revoked_ms IS NULL",
        )
        .bind(token_sha256)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let record = token_row(&row)?;
        let now = now_ms();
        if record
            .last_used_ms
            .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
        {
            sqlx::query("UPDATE agent_tokens SET last_used_ms = ? WHERE id = ?")
                .bind(now)
                .bind(&record.id)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
        }
        Ok(Some(record))
    }

    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (id, token_id, labels_json, capacity, executor, hostname, version,
                                 registered_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&agent.id)
        .bind(&agent.token_id)
        .bind(labels_json(&agent.labels))
        .bind(i64::from(agent.capacity))
        .bind(&agent.executor)
        .bind(&agent.hostname)
        .bind(&agent.version)
        .bind(agent.registered_ms)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_agent(&self, id: &str) -> Result<AgentRecord, StoreError> {
        let r = sqlx::query(
            "SELECT id, token_id, labels_json, capacity, executor, hostname, version,
                    registered_ms
             FROM agents WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.readers)
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
        let now = now_ms();
        // One batch, one transaction: the lines (if any), then the job,
        // whose row comes back from the INSERT itself (no second read). A
        // job id already taken fails the INSERT and rolls the lines back.
        let mut batch = Batch::new();
        super::builds::push_log_lines(&mut batch, log_id, lines, false);
        batch
            .push(&format!(
                "INSERT INTO jobs (id, kind, labels_json, payload_json, status, max_attempts, \
                                   created_ms, update_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(job.id.clone())
            .bind(job.kind.clone())
            .bind(labels_json(&job.labels))
            .bind(job.payload.to_string())
            .bind(QUEUED)
            .bind(i64::from(job.max_attempts.max(1)))
            .bind(now)
            .bind(now);
        let steps = self.writer.run(batch).await.map_err(db_error)?;
        let row = steps
            .last()
            .and_then(|step| step.rows.first())
            .ok_or_else(|| {
                StoreError::Other(format!("queueing job {}: no row came back", job.id).into())
            })?;
        job_row(row)
    }

    async fn get_agent_job(&self, id: &str) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
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
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id, status, attempts, agent_id, error FROM jobs WHERE id IN (",
            );
            let mut list = query.separated(", ");
            for id in group {
                list.push_bind(id.as_str());
            }
            query.push(")");
            let rows = query
                .build()
                .fetch_all(&self.readers)
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
            "SELECT id, kind, labels_json, attempts FROM jobs WHERE status = ?
             ORDER BY created_ms, id LIMIT ?",
        )
        .bind(QUEUED)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
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
        // One statement, run as a batch by the writer's thread (the
        // hottest write of a remote build after its start): the winning
        // acknowledgement gets the leased row back from the UPDATE itself.
        let mut batch = Batch::new();
        batch
            .push(&format!(
                "UPDATE jobs SET status = ?, lease_id = ?, lease_epoch = lease_epoch + 1,
                        agent_id = ?, lease_expires_ms = ?, attempts = attempts + 1,
                        offer_nonce = NULL, offer_expires_ms = 0, log_acked = 0, result_json = NULL,
                        update_ms = ?
                 WHERE id = ? AND status = ? AND attempts = ?
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(LEASED)
            .bind(lease_id.to_owned())
            .bind(agent_id.to_owned())
            .bind(lease_expires_ms)
            .bind(now_ms())
            .bind(id.to_owned())
            .bind(QUEUED)
            .bind(i64::from(attempts));
        let row = one_row(self.writer.run(batch).await.map_err(db_error)?);
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
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = ?, update_ms = ?
             WHERE id = ? AND status = ? AND lease_epoch = ?",
        )
        .bind(lease_expires_ms)
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(self.job_or_fenced(id, epoch).await);
        }
        AgentStore::get_agent_job(self, id).await
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
        let now = now_ms();
        sqlx::query(
            "UPDATE jobs SET status = ?, error = 'cancelled', update_ms = ?
             WHERE id = ? AND status = ?",
        )
        .bind(FAILED)
        .bind(now)
        .bind(id)
        .bind(QUEUED)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, update_ms = ? WHERE id = ? AND status = ?",
        )
        .bind(now)
        .bind(id)
        .bind(LEASED)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        AgentStore::get_agent_job(self, id).await
    }

    async fn abandon_job(&self, id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, update_ms = ?
             WHERE id = ? AND status IN (?, ?)",
        )
        .bind(FAILED)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(QUEUED)
        .bind(LEASED)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<ExpiredLease>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status = ? AND lease_expires_ms <= ?"
        ))
        .bind(LEASED)
        .bind(now_ms)
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        let mut expired = Vec::new();
        for row in &rows {
            let job = job_row(row)?;
            let (status, error) = after_expiry(&job);
            // Conditional on the epoch read: a renewal that raced us wins.
            let done = sqlx::query(
                "UPDATE jobs SET status = ?, error = ?, offer_nonce = NULL,
                        offer_expires_ms = 0, update_ms = ?
                 WHERE id = ? AND status = ? AND lease_epoch = ? AND lease_expires_ms <= ?",
            )
            .bind(status)
            .bind(error)
            .bind(now_ms)
            .bind(&job.id)
            .bind(LEASED)
            .bind(job.lease_epoch)
            .bind(now_ms)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
            if done.rows_affected() == 1 {
                let agent_id = job.agent_id.clone();
                expired.push(ExpiredLease {
                    job: AgentStore::get_agent_job(self, &job.id).await?,
                    agent_id,
                });
            }
        }
        Ok(expired)
    }
}
