//! [`ExecutionStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit, builds, db_error, parse_json};
use crate::ServerStore as _;
use crate::{
    ActionExecutionRecord, ApprovalRecord, BuildRecord, ExecutionChanges, ExecutionStore,
    PipelineExecutionRecord, StoreError, now_ms,
};

fn execution(row: &SqliteRow) -> Result<PipelineExecutionRecord, StoreError> {
    Ok(PipelineExecutionRecord {
        id: row.get("id"),
        pipeline: row.get("pipeline"),
        seq: row.get::<i64, _>("seq") as u64,
        status: row.get("status"),
        active: row.get::<i64, _>("active") != 0,
        start_ms: row.get("start_ms"),
        update_ms: row.get("update_ms"),
        body: parse_json(row.get("body_json"))?,
    })
}

fn action(row: &SqliteRow) -> Result<ActionExecutionRecord, StoreError> {
    Ok(ActionExecutionRecord {
        id: row.get("id"),
        pipeline: row.get("pipeline"),
        execution_id: row.get("execution_id"),
        stage: row.get("stage"),
        action: row.get("action"),
        attempt: row.get::<i64, _>("attempt") as u32,
        status: row.get("status"),
        start_ms: row.get("start_ms"),
        update_ms: row.get("update_ms"),
        body: parse_json(row.get("body_json"))?,
    })
}

fn approval(row: &SqliteRow) -> ApprovalRecord {
    ApprovalRecord {
        token: row.get("token"),
        pipeline: row.get("pipeline"),
        execution_id: row.get("execution_id"),
        stage: row.get("stage"),
        action: row.get("action"),
        action_execution_id: row.get("action_execution_id"),
        expires_ms: row.get("expires_ms"),
        result: row.get("result"),
    }
}

const EXECUTION_COLUMNS: &str = "id, pipeline, seq, status, active, start_ms, update_ms, body_json";
const ACTION_COLUMNS: &str =
    "id, pipeline, execution_id, stage, action, attempt, status, start_ms, update_ms, body_json";

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn save_execution_changes(
        &self,
        changes: &ExecutionChanges,
        actor: &str,
        what: &str,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        if let Some(meta) = &changes.meta {
            sqlx::query(
                "INSERT INTO pipeline_runtimes (pipeline, meta_json) VALUES (?, ?)
                 ON CONFLICT (pipeline) DO UPDATE SET meta_json = excluded.meta_json",
            )
            .bind(&changes.pipeline)
            .bind(meta.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        for e in &changes.executions {
            sqlx::query(
                "INSERT INTO pipeline_executions (id, pipeline, seq, status, active, start_ms, update_ms, body_json, owner)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, active = excluded.active,
                   update_ms = excluded.update_ms, body_json = excluded.body_json",
            )
            .bind(&e.id)
            .bind(&e.pipeline)
            .bind(e.seq as i64)
            .bind(&e.status)
            .bind(i64::from(e.active))
            .bind(e.start_ms)
            .bind(e.update_ms)
            .bind(e.body.to_string())
            // The server that starts an execution owns it; an update keeps
            // the owner (a takeover changes it, gantry-store's servers.rs).
            .bind(self.server_id())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        for a in &changes.actions {
            sqlx::query(
                "INSERT INTO action_executions (id, pipeline, execution_id, stage, action, attempt, status, start_ms, update_ms, body_json)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                   update_ms = excluded.update_ms, body_json = excluded.body_json",
            )
            .bind(&a.id)
            .bind(&a.pipeline)
            .bind(&a.execution_id)
            .bind(&a.stage)
            .bind(&a.action)
            .bind(i64::from(a.attempt))
            .bind(&a.status)
            .bind(a.start_ms)
            .bind(a.update_ms)
            .bind(a.body.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        if !what.is_empty() {
            audit::record(&mut tx, actor, what, &changes.pipeline, "").await?;
        }
        let owner = self.server_id();
        let mut created = Vec::with_capacity(changes.builds.len());
        for (build, build_actor) in &changes.builds {
            created.push(builds::create_in(&mut tx, build, owner.as_deref(), build_actor).await?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn load_runtime(
        &self,
        pipeline: &str,
    ) -> Result<(Option<serde_json::Value>, Vec<PipelineExecutionRecord>), StoreError> {
        let meta = sqlx::query("SELECT meta_json FROM pipeline_runtimes WHERE pipeline = ?")
            .bind(pipeline)
            .fetch_optional(&self.writer)
            .await
            .map_err(db_error)?
            .map(|r| parse_json(r.get("meta_json")))
            .transpose()?;
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE pipeline = ? AND active = 1 ORDER BY seq"
        ))
        .bind(pipeline)
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        let executions = rows.iter().map(execution).collect::<Result<_, _>>()?;
        Ok((meta, executions))
    }

    async fn pipelines_with_active_executions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT pipeline FROM pipeline_executions WHERE active = 1 ORDER BY pipeline",
        )
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get("pipeline")).collect())
    }

    async fn get_pipeline_execution(
        &self,
        pipeline: &str,
        id: &str,
    ) -> Result<PipelineExecutionRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE pipeline = ? AND id = ?"
        ))
        .bind(pipeline)
        .bind(id)
        .fetch_one(&self.writer)
        .await
        .map_err(db_error)?;
        execution(&row)
    }

    async fn list_pipeline_executions(
        &self,
        pipeline: &str,
        limit: u32,
    ) -> Result<Vec<PipelineExecutionRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM pipeline_executions WHERE pipeline = ? ORDER BY seq DESC LIMIT ?"
        ))
        .bind(pipeline)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        rows.iter().map(execution).collect()
    }

    async fn list_action_executions(
        &self,
        pipeline: &str,
        execution_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ActionExecutionRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM action_executions
             WHERE pipeline = ? AND (? IS NULL OR execution_id = ?)
             ORDER BY start_ms DESC, id DESC LIMIT ?"
        ))
        .bind(pipeline)
        .bind(execution_id)
        .bind(execution_id)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        rows.iter().map(action).collect()
    }

    async fn put_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approvals (token, pipeline, execution_id, stage, action, action_execution_id, expires_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (action_execution_id) DO NOTHING",
        )
        .bind(&a.token)
        .bind(&a.pipeline)
        .bind(&a.execution_id)
        .bind(&a.stage)
        .bind(&a.action)
        .bind(&a.action_execution_id)
        .bind(a.expires_ms)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn approval_for_attempt(
        &self,
        action_execution_id: &str,
    ) -> Result<ApprovalRecord, StoreError> {
        let row = sqlx::query(
            "SELECT token, pipeline, execution_id, stage, action, action_execution_id, expires_ms, result
             FROM approvals WHERE action_execution_id = ?",
        )
        .bind(action_execution_id)
        .fetch_one(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(approval(&row))
    }

    async fn answer_approval(
        &self,
        token: &str,
        result: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE approvals SET result = ?, answered_by = ?, answered_ms = ?
             WHERE token = ? AND result IS NULL",
        )
        .bind(result)
        .bind(actor)
        .bind(now_ms())
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "the approval was already answered".into(),
            ));
        }
        audit::record(&mut tx, actor, "approval.answer", token, result).await?;
        tx.commit().await.map_err(db_error)
    }
}
