//! [`CustomActionStore`] on PostgreSQL: custom action types, their jobs and
//! the jobs' artifact credentials.
//!
//! Several servers may poll for the same jobs at once: a dispatch claims
//! rows with `FOR UPDATE SKIP LOCKED` and re-checks the claimable state in
//! the `UPDATE` itself, so a job goes to one poller with one nonce; the cap
//! on live types is checked under a transaction-scoped advisory lock, so two
//! creations cannot both slip under it.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PgStore, audit, db_error, parse_json};
use crate::custom_actions::{JobRecord, NewJob};
use crate::{
    CustomActionStore, CustomActionTypeRecord, JobCredentials, JobOutcome, StoreError, now_ms,
};

const JOB_COLUMNS: &str = "id, nonce, category, provider, version, query_value, status, pipeline, \
     execution_id, stage, action, action_execution_id, data_json, objects_json, result_json, \
     created_ms, dispatched_ms, update_ms";

const TYPE_COLUMNS: &str = "category, provider, version, definition_json, deleted, created_ms";

/// The states a worker may still answer.
const OPEN: &str = "('Queued', 'Dispatched', 'InProgress')";

/// Whether a job may be handed out: queued, or dispatched before `$n` and
/// never acknowledged. Used twice per dispatch, once to pick and once to
/// re-check under the row lock.
fn claimable(before: &str) -> String {
    format!("(status = 'Queued' OR (status = 'Dispatched' AND dispatched_ms < {before}))")
}

fn action_type(row: &PgRow) -> Result<CustomActionTypeRecord, StoreError> {
    let deleted: i64 = row.try_get("deleted").map_err(db_error)?;
    Ok(CustomActionTypeRecord {
        category: row.try_get("category").map_err(db_error)?,
        provider: row.try_get("provider").map_err(db_error)?,
        version: row.try_get("version").map_err(db_error)?,
        definition: parse_json(row.try_get("definition_json").map_err(db_error)?)?,
        deleted: deleted != 0,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
    })
}

fn job(row: &PgRow) -> Result<JobRecord, StoreError> {
    let result: Option<String> = row.try_get("result_json").map_err(db_error)?;
    Ok(JobRecord {
        job: NewJob {
            id: row.try_get("id").map_err(db_error)?,
            nonce: row.try_get("nonce").map_err(db_error)?,
            category: row.try_get("category").map_err(db_error)?,
            provider: row.try_get("provider").map_err(db_error)?,
            version: row.try_get("version").map_err(db_error)?,
            query_value: row.try_get("query_value").map_err(db_error)?,
            pipeline: row.try_get("pipeline").map_err(db_error)?,
            execution_id: row.try_get("execution_id").map_err(db_error)?,
            stage: row.try_get("stage").map_err(db_error)?,
            action: row.try_get("action").map_err(db_error)?,
            action_execution_id: row.try_get("action_execution_id").map_err(db_error)?,
            data: parse_json(row.try_get("data_json").map_err(db_error)?)?,
            objects: parse_json(row.try_get("objects_json").map_err(db_error)?)?,
        },
        status: row.try_get("status").map_err(db_error)?,
        result: result.as_deref().map(parse_json).transpose()?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        dispatched_ms: row.try_get("dispatched_ms").map_err(db_error)?,
        update_ms: row.try_get("update_ms").map_err(db_error)?,
    })
}

async fn insert_job(conn: &mut PgConnection, j: &NewJob) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO pipeline_jobs (id, nonce, category, provider, version, query_value, status,
             pipeline, execution_id, stage, action, action_execution_id, data_json, objects_json,
             created_ms, update_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 'Queued', $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(&j.id)
    .bind(&j.nonce)
    .bind(&j.category)
    .bind(&j.provider)
    .bind(&j.version)
    .bind(&j.query_value)
    .bind(&j.pipeline)
    .bind(&j.execution_id)
    .bind(&j.stage)
    .bind(&j.action)
    .bind(&j.action_execution_id)
    .bind(j.data.to_string())
    .bind(j.objects.to_string())
    .bind(now)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn job_by_id(conn: &mut PgConnection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM pipeline_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(job).transpose()
}

#[async_trait]
impl CustomActionStore for PgStore {
    async fn create_custom_action_type(
        &self,
        r: &CustomActionTypeRecord,
        max_live: u32,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Serialises creations (until commit), so the count below sees every
        // other committed type and the cap holds across servers.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('custom_action_types', 0))")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO custom_action_types (category, provider, version, definition_json, deleted, created_ms)
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(&r.category)
        .bind(&r.provider)
        .bind(&r.version)
        .bind(r.definition.to_string())
        .bind(r.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let live: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM custom_action_types WHERE deleted = 0")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        if live > i64::from(max_live) {
            return Err(StoreError::Conflict(format!(
                "at most {max_live} custom action types may exist"
            )));
        }
        let target = format!("{}/{}/{}", r.category, r.provider, r.version);
        audit::record(&mut tx, actor, "action_type.create", &target, "").await?;
        tx.commit().await.map_err(db_error)
    }

    async fn custom_action_types(&self) -> Result<Vec<CustomActionTypeRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TYPE_COLUMNS} FROM custom_action_types ORDER BY category, provider, version"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(action_type).collect()
    }

    async fn get_custom_action_type(
        &self,
        category: &str,
        provider: &str,
        version: &str,
    ) -> Result<CustomActionTypeRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TYPE_COLUMNS} FROM custom_action_types
             WHERE category = $1 AND provider = $2 AND version = $3"
        ))
        .bind(category)
        .bind(provider)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        action_type(&row)
    }

    async fn delete_custom_action_type(
        &self,
        category: &str,
        provider: &str,
        version: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE custom_action_types SET deleted = 1
             WHERE category = $1 AND provider = $2 AND version = $3 AND deleted = 0",
        )
        .bind(category)
        .bind(provider)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let target = format!("{category}/{provider}/{version}");
        audit::record(&mut tx, actor, "action_type.delete", &target, "").await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_job(&self, j: &NewJob) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        insert_job(&mut conn, j).await
    }

    async fn get_job(&self, id: &str) -> Result<JobRecord, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        job_by_id(&mut conn, id).await?.ok_or(StoreError::NotFound)
    }

    async fn jobs_for_attempt(
        &self,
        action_execution_id: &str,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM pipeline_jobs WHERE action_execution_id = $1
             ORDER BY created_ms, id"
        ))
        .bind(action_execution_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(job).collect()
    }

    async fn dispatch_jobs(
        &self,
        category: &str,
        provider: &str,
        version: &str,
        query_value: Option<&str>,
        nonces: &[String],
        redispatch_before_ms: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        if nonces.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let now = now_ms();
        let mut out = Vec::new();
        // One job per statement. The subquery skips rows another poller has
        // locked (it is claiming them), and the outer WHERE re-checks the
        // state under the row lock: a plain `id = (SELECT ...)` would let a
        // second poller that waited on the lock overwrite the first's nonce.
        let sql = format!(
            "UPDATE pipeline_jobs SET status = 'Dispatched', nonce = $1, dispatched_ms = $2,
                    update_ms = $2
             WHERE id = (
                 SELECT id FROM pipeline_jobs
                 WHERE category = $3 AND provider = $4 AND version = $5
                   AND ($6::TEXT IS NULL OR query_value = $6) AND {pick}
                 ORDER BY created_ms, id LIMIT 1
                 FOR UPDATE SKIP LOCKED)
               AND {pick}
             RETURNING {JOB_COLUMNS}",
            pick = claimable("$7"),
        );
        for nonce in nonces {
            let row = sqlx::query(&sql)
                .bind(nonce)
                .bind(now)
                .bind(category)
                .bind(provider)
                .bind(version)
                .bind(query_value)
                .bind(redispatch_before_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            let Some(row) = row else { break };
            out.push(job(&row)?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn acknowledge_job(&self, id: &str, nonce: &str) -> Result<JobRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE pipeline_jobs SET status = 'InProgress', update_ms = $1
             WHERE id = $2 AND nonce = $3 AND status = 'Dispatched'
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(now_ms())
        .bind(id)
        .bind(nonce)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        if let Some(row) = row {
            return job(&row);
        }
        let found = CustomActionStore::get_job(self, id).await?;
        Err(StoreError::Conflict(format!(
            "job {id} is {} and the nonce does not claim it",
            found.status
        )))
    }

    async fn finish_job(
        &self,
        id: &str,
        outcome: &JobOutcome,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE pipeline_jobs SET status = $1, result_json = $2, update_ms = $3
             WHERE id = $4 AND status IN ('Dispatched', 'InProgress')",
        )
        .bind(&outcome.status)
        .bind(outcome.result.to_string())
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            let found = job_by_id(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
            return Err(StoreError::Conflict(format!(
                "job {id} is {}",
                found.status
            )));
        }
        if let Some(next) = &outcome.next {
            insert_job(&mut tx, next).await?;
        }
        audit::record(&mut tx, actor, "job.result", id, &outcome.status).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn close_open_jobs(
        &self,
        action_execution_id: &str,
        status: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE pipeline_jobs SET status = $1, update_ms = $2
             WHERE action_execution_id = $3 AND status IN {OPEN}"
        ))
        .bind(status)
        .bind(now_ms())
        .bind(action_execution_id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn put_job_credentials(&self, c: &JobCredentials) -> Result<(), StoreError> {
        let (nonce, cipher) = self.key.seal(&c.access_key_id, c.secret.as_bytes());
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM job_credentials WHERE expires_ms < $1")
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO job_credentials (access_key_id, job_id, secret_nonce, secret_cipher,
                 session_token_sha256, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.access_key_id)
        .bind(&c.job_id)
        .bind(nonce)
        .bind(cipher)
        .bind(&c.session_token_sha256)
        .bind(c.expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn job_credentials(&self, access_key_id: &str) -> Result<JobCredentials, StoreError> {
        let row = sqlx::query(
            "SELECT access_key_id, job_id, secret_nonce, secret_cipher, session_token_sha256, expires_ms
             FROM job_credentials WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let nonce: Vec<u8> = row.try_get("secret_nonce").map_err(db_error)?;
        let cipher: Vec<u8> = row.try_get("secret_cipher").map_err(db_error)?;
        let plain = self
            .key
            .open(access_key_id, &nonce, &cipher)
            .map_err(StoreError::other)?;
        Ok(JobCredentials {
            access_key_id: row.try_get("access_key_id").map_err(db_error)?,
            job_id: row.try_get("job_id").map_err(db_error)?,
            secret: String::from_utf8(plain).map_err(StoreError::other)?,
            session_token_sha256: row.try_get("session_token_sha256").map_err(db_error)?,
            expires_ms: row.try_get("expires_ms").map_err(db_error)?,
        })
    }
}
