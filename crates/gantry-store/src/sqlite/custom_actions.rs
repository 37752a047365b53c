//! [`CustomActionStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit, db_error, parse_json};
use crate::{
    CustomActionStore, CustomActionTypeRecord, JobCredentials, JobOutcome, JobRecord, NewJob,
    StoreError, now_ms,
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
        let row = sqlx::query(
            "SELECT category, provider, version, definition_json, deleted, created_ms
             FROM custom_action_types WHERE category = ? AND provider = ? AND version = ?",
        )
        .bind(category)
        .bind(provider)
        .bind(version)
        .fetch_one(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
            "SELECT {JOB_COLUMNS} FROM pipeline_jobs WHERE action_execution_id = ?
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn put_job_credentials(&self, c: &JobCredentials) -> Result<(), StoreError> {
        let (nonce, cipher) = self.key.seal(&c.access_key_id, c.secret.as_bytes());
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
        .fetch_one(&self.pool)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    async fn store(dir: &std::path::Path) -> SqliteStore {
        let key = MasterKey::load_or_create(&dir.join("secret.key")).expect("key");
        SqliteStore::open(&dir.join("gantry.db"), key)
            .await
            .expect("store")
    }

    fn new_job(id: &str, query: Option<&str>) -> NewJob {
        NewJob {
            id: id.into(),
            nonce: "n0".into(),
            category: "Build".into(),
            provider: "Mine".into(),
            version: "1".into(),
            query_value: query.map(str::to_owned),
            pipeline: "app".into(),
            execution_id: "e".into(),
            stage: "Build".into(),
            action: "Make".into(),
            action_execution_id: format!("attempt-{id}"),
            data: serde_json::json!({"actionConfiguration": {}}),
            objects: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn a_job_is_dispatched_once_and_acknowledged_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        s.create_job(&new_job("j1", None)).await.expect("create");
        let far_past = 0;
        let got = s
            .dispatch_jobs(
                "Build",
                "Mine",
                "1",
                None,
                &["n1".into(), "n2".into()],
                far_past,
            )
            .await
            .expect("dispatch");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].status.as_str(), got[0].job.nonce.as_str()),
            ("Dispatched", "n1")
        );
        // A second poll finds nothing: the job is taken.
        let again = s
            .dispatch_jobs("Build", "Mine", "1", None, &["n3".into()], far_past)
            .await
            .expect("dispatch");
        assert!(again.is_empty());
        // A dispatched job nobody acknowledged goes to the next poller with a
        // new nonce; the first worker's nonce no longer claims it.
        let later = now_ms() + 1;
        let taken = s
            .dispatch_jobs("Build", "Mine", "1", None, &["n4".into()], later)
            .await
            .expect("redispatch");
        assert_eq!(taken[0].job.nonce, "n4");
        assert!(matches!(
            s.acknowledge_job("j1", "n1").await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.acknowledge_job("j1", "n4").await.expect("ack").status,
            "InProgress"
        );
        assert_eq!(s.get_job("j1").await.expect("get").status, "InProgress");
        assert!(matches!(
            s.acknowledge_job("j1", "n4").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.acknowledge_job("nope", "n4").await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn the_query_value_selects_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        s.create_job(&new_job("a", Some("blue")))
            .await
            .expect("create");
        s.create_job(&new_job("b", Some("green")))
            .await
            .expect("create");
        let got = s
            .dispatch_jobs(
                "Build",
                "Mine",
                "1",
                Some("green"),
                &["n".into(), "m".into()],
                0,
            )
            .await
            .expect("dispatch");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job.id, "b");
    }

    #[tokio::test]
    async fn finishing_is_once_and_queues_the_continuation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        s.create_job(&new_job("j", None)).await.expect("create");
        let outcome = JobOutcome {
            status: "Succeeded".into(),
            result: serde_json::json!({}),
            next: Some(new_job("k", None)),
        };
        // A queued job cannot be answered.
        assert!(matches!(
            s.finish_job("j", &outcome, "w").await,
            Err(StoreError::Conflict(_))
        ));
        s.dispatch_jobs("Build", "Mine", "1", None, &["n".into()], 0)
            .await
            .expect("dispatch");
        s.finish_job("j", &outcome, "w").await.expect("finish");
        assert!(matches!(
            s.finish_job("j", &outcome, "w").await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.get_job("k").await.expect("next").status, "Queued");
        assert_eq!(
            s.close_open_jobs("attempt-k", "TimedOut")
                .await
                .expect("close"),
            1
        );
        assert_eq!(s.get_job("k").await.expect("k").status, "TimedOut");
    }

    #[tokio::test]
    async fn types_are_never_created_twice_and_deleted_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        let t = CustomActionTypeRecord {
            category: "Build".into(),
            provider: "Mine".into(),
            version: "1".into(),
            definition: serde_json::json!({}),
            deleted: false,
            created_ms: 1,
        };
        s.create_custom_action_type(&t, 50, "a")
            .await
            .expect("create");
        s.delete_custom_action_type("Build", "Mine", "1", "a")
            .await
            .expect("delete");
        assert!(matches!(
            s.delete_custom_action_type("Build", "Mine", "1", "a").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.create_custom_action_type(&t, 50, "a").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(
            s.get_custom_action_type("Build", "Mine", "1")
                .await
                .expect("get")
                .deleted
        );
        let t2 = CustomActionTypeRecord {
            version: "2".into(),
            ..t
        };
        assert!(matches!(
            s.create_custom_action_type(&t2, 0, "a").await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn credentials_keep_the_secret_encrypted_and_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path()).await;
        let c = JobCredentials {
            access_key_id: "ASIAX".into(),
            job_id: "j".into(),
            secret: "s3cr3t-value".into(),
            session_token_sha256: "ab".into(),
            expires_ms: now_ms() + 60_000,
        };
        s.put_job_credentials(&c).await.expect("put");
        assert_eq!(s.job_credentials("ASIAX").await.expect("get"), c);
        let raw: Vec<u8> = sqlx::query_scalar("SELECT secret_cipher FROM job_credentials")
            .fetch_one(&s.pool)
            .await
            .expect("row");
        assert!(!raw.windows(6).any(|w| w == b"s3cr3t"));
    }
}
