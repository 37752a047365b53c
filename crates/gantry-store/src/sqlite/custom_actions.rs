//! [`CustomActionStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit, db_error, parse_json};
use crate::custom_actions::{JobRecord, NewJob};
use crate::{
    CustomActionStore, CustomActionTypeRecord, JobCredentials, JobOutcome, StoreError, now_ms,
};

const JOB_COLUMNS: &str = "id, nonce, category, provider, version, query_value, status, pipeline, \
     execution_id, stage, action, action_execution_id, data_json, objects_json, result_json, \
     created_ms, dispatched_ms, update_ms";

/// The states a worker may still answer.
const OPEN: &str = "('Queued', 'Dispatched', 'InProgress')";

fn action_type(row: &SqliteRow) -> Result<CustomActionTypeRecord, StoreError> {
    Ok(CustomActionTypeRecord {
        category: row.get("category"),
        provider: row.get("provider"),
        version: row.get("version"),
        definition: parse_json(row.get("definition_json"))?,
        deleted: row.get::<i64, _>("deleted") != 0,
        created_ms: row.get("created_ms"),
    })
}

fn job(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let result: Option<String> = row.get("result_json");
    Ok(JobRecord {
        job: NewJob {
            id: row.get("id"),
            nonce: row.get("nonce"),
            category: row.get("category"),
            provider: row.get("provider"),
            version: row.get("version"),
            query_value: row.get("query_value"),
            pipeline: row.get("pipeline"),
            execution_id: row.get("execution_id"),
            stage: row.get("stage"),
            action: row.get("action"),
            action_execution_id: row.get("action_execution_id"),
            data: parse_json(row.get("data_json"))?,
            objects: parse_json(row.get("objects_json"))?,
        },
        status: row.get("status"),
        result: result.as_deref().map(parse_json).transpose()?,
        created_ms: row.get("created_ms"),
        dispatched_ms: row.get("dispatched_ms"),
        update_ms: row.get("update_ms"),
    })
}

async fn insert_job(conn: &mut sqlx::SqliteConnection, j: &NewJob) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO pipeline_jobs (id, nonce, category, provider, version, query_value, status,
             pipeline, execution_id, stage, action, action_execution_id, data_json, objects_json,
             created_ms, update_ms)
         VALUES (?, ?, ?, ?, ?, ?, 'Queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(now)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn job_by_id(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
) -> Result<Option<JobRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM pipeline_jobs WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(job).transpose()
}

#[async_trait]
impl CustomActionStore for SqliteStore {
    async fn create_custom_action_type(
        &self,
        r: &CustomActionTypeRecord,
        max_live: u32,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO custom_action_types (category, provider, version, definition_json, deleted, created_ms)
             VALUES (?, ?, ?, ?, 0, ?)",
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
        let rows = sqlx::query(
            "SELECT category, provider, version, definition_json, deleted, created_ms
             FROM custom_action_types ORDER BY category, provider, version",
        )
        .fetch_all(&self.writer)
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
        let row = sqlx::query(
            "SELECT category, provider, version, definition_json, deleted, created_ms
             FROM custom_action_types WHERE category = ? AND provider = ? AND version = ?",
        )
        .bind(category)
        .bind(provider)
        .bind(version)
        .fetch_one(&self.writer)
        .await
        .map_err(db_error)?;
        action_type(&row)
    }

    async fn delete_custom_action_type(
        &self,
        category: &str,
        provider: &str,
        version: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE custom_action_types SET deleted = 1
             WHERE category = ? AND provider = ? AND version = ? AND deleted = 0",
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
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        insert_job(&mut conn, j).await
    }

    async fn get_job(&self, id: &str) -> Result<JobRecord, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        job_by_id(&mut conn, id).await?.ok_or(StoreError::NotFound)
    }

    async fn jobs_for_attempt(
        &self,
        action_execution_id: &str,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM pipeline_jobs WHERE action_execution_id = ?
             ORDER BY created_ms, id"
        ))
        .bind(action_execution_id)
        .fetch_all(&self.writer)
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
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let now = now_ms();
        let mut out = Vec::new();
        for nonce in nonces {
            // One job per statement: the conditional UPDATE is the claim, so
            // two pollers never take the same row.
            let id: Option<String> = sqlx::query_scalar(
                "UPDATE pipeline_jobs SET status = 'Dispatched', nonce = ?, dispatched_ms = ?, update_ms = ?
                 WHERE id = (
                     SELECT id FROM pipeline_jobs
                     WHERE category = ? AND provider = ? AND version = ?
                       AND (? IS NULL OR query_value = ?)
                       AND (status = 'Queued' OR (status = 'Dispatched' AND dispatched_ms < ?))
                     ORDER BY created_ms, id LIMIT 1)
                 RETURNING id",
            )
            .bind(nonce)
            .bind(now)
            .bind(now)
            .bind(category)
            .bind(provider)
            .bind(version)
            .bind(query_value)
            .bind(query_value)
            .bind(redispatch_before_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some(id) = id else { break };
            if let Some(j) = job_by_id(&mut tx, &id).await? {
                out.push(j);
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn acknowledge_job(&self, id: &str, nonce: &str) -> Result<JobRecord, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE pipeline_jobs SET status = 'InProgress', update_ms = ?
             WHERE id = ? AND nonce = ? AND status = 'Dispatched'",
        )
        .bind(now_ms())
        .bind(id)
        .bind(nonce)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let found = job_by_id(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "job {id} is {} and the nonce does not claim it",
                found.status
            )));
        }
        tx.commit().await.map_err(db_error)?;
        Ok(found)
    }

    async fn finish_job(
        &self,
        id: &str,
        outcome: &JobOutcome,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE pipeline_jobs SET status = ?, result_json = ?, update_ms = ?
             WHERE id = ? AND status IN ('Dispatched', 'InProgress')",
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
            "UPDATE pipeline_jobs SET status = ?, update_ms = ?
             WHERE action_execution_id = ? AND status IN {OPEN}"
        ))
        .bind(status)
        .bind(now_ms())
        .bind(action_execution_id)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn put_job_credentials(&self, c: &JobCredentials) -> Result<(), StoreError> {
        let (nonce, cipher) = self.key.seal(&c.access_key_id, c.secret.as_bytes());
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM job_credentials WHERE expires_ms < ?")
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO job_credentials (access_key_id, job_id, secret_nonce, secret_cipher,
                 session_token_sha256, expires_ms)
             VALUES (?, ?, ?, ?, ?, ?)",
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
             FROM job_credentials WHERE access_key_id = ?",
        )
        .bind(access_key_id)
        .fetch_one(&self.writer)
        .await
        .map_err(db_error)?;
        let nonce: Vec<u8> = row.try_get("secret_nonce").map_err(db_error)?;
        let cipher: Vec<u8> = row.try_get("secret_cipher").map_err(db_error)?;
        let plain = self
            .key
            .open(access_key_id, &nonce, &cipher)
            .map_err(StoreError::other)?;
        Ok(JobCredentials {
            access_key_id: row.get("access_key_id"),
            job_id: row.get("job_id"),
            secret: String::from_utf8(plain).map_err(StoreError::other)?,
            session_token_sha256: row.get("session_token_sha256"),
            expires_ms: row.get("expires_ms"),
        })
    }
}
