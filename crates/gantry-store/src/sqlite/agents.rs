//! The SQLite implementation of [`AgentStore`]: agent tokens, agents and
//! the job queue. Each state change is one conditional `UPDATE` whose
//! `WHERE` names the state it expects, so a lost race changes nothing.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit, db_error, parse_json};
use crate::agents::job_status::{FAILED, LEASED, QUEUED};
use crate::{
    AgentJobRecord, AgentRecord, AgentStore, AgentTokenRecord, ExpiredLease, NewAgentJob,
    StoreError, now_ms,
};

/// How often a token's `last_used_ms` is written at most (every agent
/// request authenticates; a write per request would be waste).
const LAST_USED_GRANULARITY_MS: i64 = 10_000;

const JOB_COLUMNS: &str = "id, kind, labels_json, payload_json, status, offer_nonce, lease_id, \
     lease_epoch, agent_id, lease_expires_ms, attempts, max_attempts, cancel_requested, error";

fn token_row(r: &SqliteRow) -> Result<AgentTokenRecord, StoreError> {
    Ok(AgentTokenRecord {
        id: r.try_get("id").map_err(db_error)?,
        name: r.try_get("name").map_err(db_error)?,
        created_ms: r.try_get("created_ms").map_err(db_error)?,
        last_used_ms: r.try_get("last_used_ms").map_err(db_error)?,
        revoked_ms: r.try_get("revoked_ms").map_err(db_error)?,
    })
}

fn labels(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(StoreError::other)
}

fn labels_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".into())
}

fn job_row(r: &SqliteRow) -> Result<AgentJobRecord, StoreError> {
    let attempts: i64 = r.try_get("attempts").map_err(db_error)?;
    let max_attempts: i64 = r.try_get("max_attempts").map_err(db_error)?;
    let cancel: i64 = r.try_get("cancel_requested").map_err(db_error)?;
    Ok(AgentJobRecord {
        id: r.try_get("id").map_err(db_error)?,
        kind: r.try_get("kind").map_err(db_error)?,
        labels: labels(&r.try_get::<String, _>("labels_json").map_err(db_error)?)?,
        payload: parse_json(&r.try_get::<String, _>("payload_json").map_err(db_error)?)?,
        status: r.try_get("status").map_err(db_error)?,
        offer_nonce: r.try_get("offer_nonce").map_err(db_error)?,
        lease_id: r.try_get("lease_id").map_err(db_error)?,
        lease_epoch: r.try_get("lease_epoch").map_err(db_error)?,
        agent_id: r.try_get("agent_id").map_err(db_error)?,
        lease_expires_ms: r.try_get("lease_expires_ms").map_err(db_error)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(1),
        cancel_requested: cancel != 0,
        error: r.try_get("error").map_err(db_error)?,
    })
}

/// Why a fenced change was refused, in words for the agent.
fn fenced(job: &AgentJobRecord, epoch: i64) -> StoreError {
    StoreError::Conflict(if job.status != LEASED {
        format!(
            "job {} is {} now; the lease of epoch {epoch} is over",
            job.id, job.status
        )
    } else {
        format!(
            "job {} is leased under epoch {} now; epoch {epoch} is stale",
            job.id, job.lease_epoch
        )
    })
}

impl SqliteStore {
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_agent_token(&self, id: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
            sqlx::query("UPDATE agent_tokens SET last_used_ms = ? WHERE id = ?")
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
        .execute(&self.pool)
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

    async fn enqueue_job(&self, job: &NewAgentJob) -> Result<AgentJobRecord, StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO jobs (id, kind, labels_json, payload_json, status, max_attempts,
                               created_ms, update_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&job.id)
        .bind(&job.kind)
        .bind(labels_json(&job.labels))
        .bind(job.payload.to_string())
        .bind(QUEUED)
        .bind(i64::from(job.max_attempts.max(1)))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        AgentStore::get_agent_job(self, &job.id).await
    }

    async fn get_agent_job(&self, id: &str) -> Result<AgentJobRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        job_row(&row)
    }

    async fn offerable_jobs(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<AgentJobRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status = ? AND offer_expires_ms <= ?
             ORDER BY created_ms, id LIMIT ?"
        ))
        .bind(QUEUED)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(job_row).collect()
    }

    async fn offer_job(
        &self,
        id: &str,
        nonce: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET offer_nonce = ?, offer_expires_ms = ?, update_ms = ?
             WHERE id = ? AND status = ? AND offer_expires_ms <= ?",
        )
        .bind(nonce)
        .bind(until_ms)
        .bind(now_ms)
        .bind(id)
        .bind(QUEUED)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn ack_job(
        &self,
        id: &str,
        nonce: &str,
        agent_id: &str,
        lease_id: &str,
        lease_expires_ms: i64,
    ) -> Result<AgentJobRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, lease_id = ?, lease_epoch = lease_epoch + 1,
                    agent_id = ?, lease_expires_ms = ?, attempts = attempts + 1,
                    offer_nonce = NULL, offer_expires_ms = 0, update_ms = ?
             WHERE id = ? AND status = ? AND offer_nonce = ?",
        )
        .bind(LEASED)
        .bind(lease_id)
        .bind(agent_id)
        .bind(lease_expires_ms)
        .bind(now_ms())
        .bind(id)
        .bind(QUEUED)
        .bind(nonce)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let job = AgentStore::get_agent_job(self, id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "the offer of job {id} is no longer open (the job is {}, or another \
                 acknowledgement won)",
                job.status
            )));
        }
        Ok(job)
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
        .execute(&self.pool)
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
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, update_ms = ?
             WHERE id = ? AND status = ? AND lease_epoch = ?",
        )
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(LEASED)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(self.job_or_fenced(id, epoch).await);
        }
        AgentStore::get_agent_job(self, id).await
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, update_ms = ? WHERE id = ? AND status = ?",
        )
        .bind(now)
        .bind(id)
        .bind(LEASED)
        .execute(&self.pool)
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn abandon_open_jobs(&self, error: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, update_ms = ? WHERE status IN (?, ?)",
        )
        .bind(FAILED)
        .bind(error)
        .bind(now_ms())
        .bind(QUEUED)
        .bind(LEASED)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<ExpiredLease>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status = ? AND lease_expires_ms <= ?"
        ))
        .bind(LEASED)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut expired = Vec::new();
        for row in &rows {
            let job = job_row(row)?;
            let out_of_attempts = job.attempts >= job.max_attempts || job.cancel_requested;
            let (status, error) = if out_of_attempts {
                let why = if job.cancel_requested {
                    "the job was stopped and its agent stopped answering".to_owned()
                } else {
                    format!(
                        "the lease ran out on attempt {} of {}",
                        job.attempts, job.max_attempts
                    )
                };
                (FAILED, Some(why))
            } else {
                (QUEUED, None)
            };
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
            .execute(&self.pool)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::job_status::SUCCEEDED;
    use crate::{MasterKey, labels_match, parse_labels};

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::load_or_create(&dir.path().join("k")).expect("key");
        let store = SqliteStore::open(&dir.path().join("db"), key)
            .await
            .expect("store");
        (dir, store)
    }

    fn job(id: &str, max_attempts: u32) -> NewAgentJob {
        NewAgentJob {
            id: id.into(),
            kind: "codebuild".into(),
            labels: vec!["linux".into()],
            payload: serde_json::json!({"build": id}),
            max_attempts,
        }
    }

    #[tokio::test]
    async fn of_two_claimants_exactly_one_wins_the_offer_and_the_ack() {
        let (_dir, store) = store().await;
        store.enqueue_job(&job("j1", 3)).await.expect("enqueue");
        let now = now_ms();
        let (a, b) = tokio::join!(
            store.offer_job("j1", "nonce-a", now, now + 5000),
            store.offer_job("j1", "nonce-b", now, now + 5000),
        );
        assert_eq!(
            [a.expect("a"), b.expect("b")]
                .iter()
                .filter(|w| **w)
                .count(),
            1
        );
        assert!(
            store
                .offerable_jobs(now, 10)
                .await
                .expect("list")
                .is_empty()
        );
        let nonce = store
            .get_agent_job("j1")
            .await
            .expect("job")
            .offer_nonce
            .expect("offered");
        let (x, y) = tokio::join!(
            store.ack_job("j1", &nonce, "agent-1", "lease-1", now + 30_000),
            store.ack_job("j1", &nonce, "agent-2", "lease-2", now + 30_000),
        );
        let wins = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{x:?} {y:?}");
        assert!(
            [&x, &y]
                .iter()
                .any(|r| matches!(r, Err(StoreError::Conflict(_))))
        );
        let leased = store.get_agent_job("j1").await.expect("job");
        assert_eq!(leased.status, LEASED);
        assert_eq!(leased.lease_epoch, 1);
        assert_eq!(leased.attempts, 1);
        // A wrong nonce never acknowledges.
        store.enqueue_job(&job("j2", 3)).await.expect("enqueue");
        assert!(
            store
                .offer_job("j2", "right", now, now + 5000)
                .await
                .expect("offer")
        );
        assert!(matches!(
            store.ack_job("j2", "wrong", "agent-1", "l", now + 1).await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn a_stale_epoch_is_fenced_off_renewals_and_results() {
        let (_dir, store) = store().await;
        store.enqueue_job(&job("j", 3)).await.expect("enqueue");
        let now = now_ms();
        assert!(
            store
                .offer_job("j", "n1", now, now + 5000)
                .await
                .expect("offer")
        );
        let first = store
            .ack_job("j", "n1", "a1", "l1", now - 1)
            .await
            .expect("ack");
        // The lease ran out: back to the queue, attempt 1 used.
        let expired = store.expire_leases(now).await.expect("expire");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].job.status, QUEUED);
        assert_eq!(expired[0].agent_id.as_deref(), Some("a1"));
        assert!(
            store
                .offer_job("j", "n2", now, now + 5000)
                .await
                .expect("offer")
        );
        let second = store
            .ack_job("j", "n2", "a2", "l2", now + 60_000)
            .await
            .expect("ack");
        assert_eq!(second.lease_epoch, first.lease_epoch + 1);
        for result in [
            store
                .renew_lease("j", first.lease_epoch, now + 90_000)
                .await,
            store.check_lease("j", first.lease_epoch).await,
            store
                .finish_agent_job("j", first.lease_epoch, SUCCEEDED, None)
                .await,
        ] {
            match result {
                Err(StoreError::Conflict(m)) => assert!(m.contains("stale"), "{m}"),
                other => panic!("expected a fencing conflict, got {other:?}"),
            }
        }
        store
            .renew_lease("j", second.lease_epoch, now + 90_000)
            .await
            .expect("the current lease renews");
        let done = store
            .finish_agent_job("j", second.lease_epoch, SUCCEEDED, None)
            .await
            .expect("finish");
        assert_eq!(done.status, SUCCEEDED);
        assert!(matches!(
            store.renew_lease("j", second.lease_epoch, now).await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn expiry_requeues_until_max_attempts_then_fails() {
        let (_dir, store) = store().await;
        store.enqueue_job(&job("j", 2)).await.expect("enqueue");
        let now = now_ms();
        for attempt in 1..=2 {
            let nonce = format!("n{attempt}");
            assert!(
                store
                    .offer_job("j", &nonce, now, now + 1)
                    .await
                    .expect("offer")
            );
            store
                .ack_job("j", &nonce, "a", "l", now - 1)
                .await
                .expect("ack");
            // A live lease is not touched.
            store
                .enqueue_job(&job(&format!("live{attempt}"), 1))
                .await
                .expect("enqueue");
            let expired = store.expire_leases(now).await.expect("expire");
            assert_eq!(expired.len(), 1);
            let want = if attempt == 1 { QUEUED } else { FAILED };
            assert_eq!(expired[0].job.status, want, "attempt {attempt}");
        }
        let failed = store.get_agent_job("j").await.expect("job");
        assert!(failed.error.expect("why").contains("attempt 2 of 2"));
        assert!(store.expire_leases(now).await.expect("expire").is_empty());
    }

    #[tokio::test]
    async fn tokens_are_found_by_hash_until_revoked_and_audited() {
        let (_dir, store) = store().await;
        store
            .create_agent_token("atok-1", "ci", "abc", "admin")
            .await
            .expect("create");
        assert_eq!(
            store
                .use_agent_token("abc")
                .await
                .expect("use")
                .map(|t| t.id),
            Some("atok-1".into())
        );
        assert!(store.use_agent_token("abd").await.expect("use").is_none());
        let listed = store.list_agent_tokens().await.expect("list");
        assert!(listed[0].last_used_ms.is_some());
        store
            .revoke_agent_token("atok-1", "admin")
            .await
            .expect("revoke");
        assert!(store.use_agent_token("abc").await.expect("use").is_none());
        assert!(matches!(
            store.revoke_agent_token("atok-1", "admin").await,
            Err(StoreError::NotFound)
        ));
        let audit = crate::BuildStore::audit_log(&store, 10)
            .await
            .expect("audit");
        let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
        assert!(actions.contains(&"agent_token.create"), "{actions:?}");
        assert!(actions.contains(&"agent_token.revoke"), "{actions:?}");
    }

    #[tokio::test]
    async fn cancelling_fails_a_queued_job_and_flags_a_leased_one() {
        let (_dir, store) = store().await;
        store.enqueue_job(&job("q", 1)).await.expect("enqueue");
        assert_eq!(store.cancel_job("q").await.expect("cancel").status, FAILED);
        store.enqueue_job(&job("l", 1)).await.expect("enqueue");
        let now = now_ms();
        assert!(
            store
                .offer_job("l", "n", now, now + 1000)
                .await
                .expect("offer")
        );
        store
            .ack_job("l", "n", "a", "x", now + 60_000)
            .await
            .expect("ack");
        let leased = store.cancel_job("l").await.expect("cancel");
        assert_eq!(leased.status, LEASED);
        assert!(leased.cancel_requested);
        // A restart abandons what is still open, and nothing else.
        store.enqueue_job(&job("q2", 1)).await.expect("enqueue");
        assert_eq!(
            store.abandon_open_jobs("restart").await.expect("abandon"),
            2
        );
        assert_eq!(
            store.get_agent_job("q").await.expect("q").error.as_deref(),
            Some("cancelled")
        );
        assert_eq!(store.get_agent_job("q2").await.expect("q2").status, FAILED);
    }

    #[test]
    fn labels_parse_and_match_as_supersets() {
        assert_eq!(parse_labels(" linux,docker, ,linux"), ["docker", "linux"]);
        let have = parse_labels("linux,docker,gpu");
        assert!(labels_match(&have, &parse_labels("docker,linux")));
        assert!(labels_match(&have, &[]));
        assert!(!labels_match(
            &parse_labels("linux"),
            &parse_labels("linux,docker")
        ));
    }
}
