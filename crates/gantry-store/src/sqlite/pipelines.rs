//! [`PipelineStore`] on SQLite: pipelines and their versions, disabled
//! stage transitions, webhooks with their secret encrypted.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::writer::Writer;
use super::{SqliteStore, audit, db_error, parse_json};
use crate::{
    DisabledTransition, MasterKey, NewPipeline, NewWebhook, PipelineRecord, PipelineStore,
    PipelineSummaryRecord, StoreError, TransitionType, WebhookRecord, WebhookWithSecret, now_ms,
};

fn version_of(row: &SqliteRow, column: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(column).map_err(db_error)?;
    u32::try_from(v).map_err(StoreError::other)
}

/// The associated data a webhook's secret is sealed with: the ciphertext
/// only opens for the row it was written for.
fn secret_context(name: &str) -> String {
    format!("webhook:{name}")
}

const PIPELINE_SELECT: &str =
    "SELECT p.name, p.version AS latest_version, p.tags_json, p.created_ms,
            v.version, v.declaration_json, v.pipeline_type, v.execution_mode,
            v.created_ms AS updated_ms
     FROM pipelines p
     JOIN pipeline_versions v ON v.pipeline = p.name";

fn pipeline_record(row: &SqliteRow) -> Result<PipelineRecord, StoreError> {
    let tags: String = row.try_get("tags_json").map_err(db_error)?;
    Ok(PipelineRecord {
        name: row.try_get("name").map_err(db_error)?,
        version: version_of(row, "version")?,
        latest_version: version_of(row, "latest_version")?,
        declaration: row.try_get("declaration_json").map_err(db_error)?,
        pipeline_type: row.try_get("pipeline_type").map_err(db_error)?,
        execution_mode: row.try_get("execution_mode").map_err(db_error)?,
        tags: parse_json(&tags)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        updated_ms: row.try_get("updated_ms").map_err(db_error)?,
    })
}

async fn create_pipeline(
    pool: &Writer,
    pipeline: &NewPipeline,
    actor: &str,
) -> Result<PipelineRecord, StoreError> {
    let now = now_ms();
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "INSERT INTO pipelines (name, version, tags_json, created_ms, updated_ms)
         VALUES (?, 1, ?, ?, ?)",
    )
    .bind(&pipeline.name)
    .bind(pipeline.tags.to_string())
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| match db_error(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("pipeline '{}' already exists", pipeline.name))
        }
        other => other,
    })?;
    insert_version(&mut tx, pipeline, 1, now).await?;
    audit::record(
        &mut tx,
        actor,
        "pipeline.create",
        &pipeline.name,
        "version 1",
    )
    .await?;
    tx.commit().await.map_err(db_error)?;
    Ok(PipelineRecord {
        name: pipeline.name.clone(),
        version: 1,
        latest_version: 1,
        declaration: pipeline.declaration.clone(),
        pipeline_type: pipeline.pipeline_type.clone(),
        execution_mode: pipeline.execution_mode.clone(),
        tags: pipeline.tags.clone(),
        created_ms: now,
        updated_ms: now,
    })
}

async fn insert_version(
    conn: &mut sqlx::SqliteConnection,
    pipeline: &NewPipeline,
    version: u32,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO pipeline_versions
            (pipeline, version, declaration_json, pipeline_type, execution_mode, created_ms)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&pipeline.name)
    .bind(i64::from(version))
    .bind(&pipeline.declaration)
    .bind(&pipeline.pipeline_type)
    .bind(&pipeline.execution_mode)
    .bind(now)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn update_pipeline(
    pool: &Writer,
    pipeline: &NewPipeline,
    expected_version: u32,
    actor: &str,
) -> Result<PipelineRecord, StoreError> {
    let now = now_ms();
    let mut tx = pool.begin().await.map_err(db_error)?;
    // The version check and the bump are one statement, so two updates
    // from the same version cannot both win.
    let row = sqlx::query(
        "UPDATE pipelines SET version = version + 1, updated_ms = ?
         WHERE name = ? AND version = ?
         RETURNING version, tags_json, created_ms",
    )
    .bind(now)
    .bind(&pipeline.name)
    .bind(i64::from(expected_version))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM pipelines WHERE name = ?")
                .bind(&pipeline.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        return Err(match current {
            None => StoreError::NotFound,
            Some(v) => StoreError::Conflict(format!(
                "pipeline '{}' is at version {v}, not {expected_version}",
                pipeline.name
            )),
        });
    };
    let version = version_of(&row, "version")?;
    let tags: String = row.try_get("tags_json").map_err(db_error)?;
    let created_ms: i64 = row.try_get("created_ms").map_err(db_error)?;
    insert_version(&mut tx, pipeline, version, now).await?;
    // Transitions of stages the new version no longer has are forgotten,
    // so a stage added again later under the same name starts enabled.
    let disabled: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT stage FROM stage_transitions WHERE pipeline = ?")
            .bind(&pipeline.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
    for stage in disabled
        .iter()
        .filter(|s| !pipeline.stage_names.contains(s))
    {
        sqlx::query("DELETE FROM stage_transitions WHERE pipeline = ? AND stage = ?")
            .bind(&pipeline.name)
            .bind(stage)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    audit::record(
        &mut tx,
        actor,
        "pipeline.update",
        &pipeline.name,
        &format!("version {version}"),
    )
    .await?;
    tx.commit().await.map_err(db_error)?;
    Ok(PipelineRecord {
        name: pipeline.name.clone(),
        version,
        latest_version: version,
        declaration: pipeline.declaration.clone(),
        pipeline_type: pipeline.pipeline_type.clone(),
        execution_mode: pipeline.execution_mode.clone(),
        tags: parse_json(&tags)?,
        created_ms,
        updated_ms: now,
    })
}

async fn get_pipeline(
    pool: &Writer,
    name: &str,
    version: Option<u32>,
) -> Result<PipelineRecord, StoreError> {
    let sql = format!("{PIPELINE_SELECT} AND v.version = COALESCE(?, p.version) WHERE p.name = ?");
    let row = sqlx::query(&sql)
        .bind(version.map(i64::from))
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
    pipeline_record(&row)
}

async fn delete_pipeline(pool: &Writer, name: &str, actor: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    // Versions and transitions go with it (ON DELETE CASCADE).
    let done = sqlx::query("DELETE FROM pipelines WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    audit::record(&mut tx, actor, "pipeline.delete", name, "").await?;
    tx.commit().await.map_err(db_error)
}

async fn list_pipelines(pool: &Writer) -> Result<Vec<PipelineSummaryRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.name, p.version, v.pipeline_type, v.execution_mode, p.created_ms,
                v.created_ms AS updated_ms
         FROM pipelines p
         JOIN pipeline_versions v ON v.pipeline = p.name AND v.version = p.version
         ORDER BY p.name",
    )
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(PipelineSummaryRecord {
                name: row.try_get("name").map_err(db_error)?,
                version: version_of(row, "version")?,
                pipeline_type: row.try_get("pipeline_type").map_err(db_error)?,
                execution_mode: row.try_get("execution_mode").map_err(db_error)?,
                created_ms: row.try_get("created_ms").map_err(db_error)?,
                updated_ms: row.try_get("updated_ms").map_err(db_error)?,
            })
        })
        .collect()
}

async fn disable_transition(
    pool: &Writer,
    t: &DisabledTransition,
    actor: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    // Inserts only when the pipeline exists; `WHERE` before `ON CONFLICT`
    // keeps the upsert unambiguous (SQLite and PostgreSQL alike).
    let done = sqlx::query(
        "INSERT INTO stage_transitions
            (pipeline, stage, transition_type, reason, disabled_by, disabled_ms)
         SELECT name, ?, ?, ?, ?, ? FROM pipelines WHERE name = ?
         ON CONFLICT (pipeline, stage, transition_type) DO UPDATE SET
            reason = excluded.reason,
            disabled_by = excluded.disabled_by,
            disabled_ms = excluded.disabled_ms",
    )
    .bind(&t.stage)
    .bind(t.transition_type.as_str())
    .bind(&t.reason)
    .bind(&t.disabled_by)
    .bind(t.disabled_ms)
    .bind(&t.pipeline)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    audit::record(
        &mut tx,
        actor,
        "transition.disable",
        &format!("{}/{}", t.pipeline, t.stage),
        &format!("{}: {}", t.transition_type.as_str(), t.reason),
    )
    .await?;
    tx.commit().await.map_err(db_error)
}

async fn enable_transition(
    pool: &Writer,
    pipeline: &str,
    stage: &str,
    transition_type: TransitionType,
    actor: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "DELETE FROM stage_transitions WHERE pipeline = ? AND stage = ? AND transition_type = ?",
    )
    .bind(pipeline)
    .bind(stage)
    .bind(transition_type.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM pipelines WHERE name = ?")
        .bind(pipeline)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    audit::record(
        &mut tx,
        actor,
        "transition.enable",
        &format!("{pipeline}/{stage}"),
        transition_type.as_str(),
    )
    .await?;
    tx.commit().await.map_err(db_error)
}

async fn disabled_transitions(
    pool: &Writer,
    pipeline: &str,
) -> Result<Vec<DisabledTransition>, StoreError> {
    let rows = sqlx::query(
        "SELECT pipeline, stage, transition_type, reason, disabled_by, disabled_ms
         FROM stage_transitions WHERE pipeline = ? ORDER BY stage, transition_type",
    )
    .bind(pipeline)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("transition_type").map_err(db_error)?;
            Ok(DisabledTransition {
                pipeline: row.try_get("pipeline").map_err(db_error)?,
                stage: row.try_get("stage").map_err(db_error)?,
                transition_type: TransitionType::parse(&kind).ok_or_else(|| {
                    StoreError::Other(format!("unknown transition type '{kind}'").into())
                })?,
                reason: row.try_get("reason").map_err(db_error)?,
                disabled_by: row.try_get("disabled_by").map_err(db_error)?,
                disabled_ms: row.try_get("disabled_ms").map_err(db_error)?,
            })
        })
        .collect()
}

const WEBHOOK_COLUMNS: &str =
    "name, url_id, pipeline, definition_json, secret_nonce, secret_cipher,
     tags_json, registered, last_triggered_ms, created_ms, updated_ms";

/// A webhook row, and its sealed secret when it has one.
fn webhook_record(row: &SqliteRow) -> Result<(WebhookRecord, Option<Sealed>), StoreError> {
    let definition: String = row.try_get("definition_json").map_err(db_error)?;
    let tags: String = row.try_get("tags_json").map_err(db_error)?;
    let nonce: Option<Vec<u8>> = row.try_get("secret_nonce").map_err(db_error)?;
    let cipher: Option<Vec<u8>> = row.try_get("secret_cipher").map_err(db_error)?;
    let sealed = nonce
        .zip(cipher)
        .map(|(nonce, cipher)| Sealed { nonce, cipher });
    let registered: i64 = row.try_get("registered").map_err(db_error)?;
    let record = WebhookRecord {
        name: row.try_get("name").map_err(db_error)?,
        pipeline: row.try_get("pipeline").map_err(db_error)?,
        definition: parse_json(&definition)?,
        has_secret: sealed.is_some(),
        url_id: row.try_get("url_id").map_err(db_error)?,
        tags: parse_json(&tags)?,
        registered: registered != 0,
        last_triggered_ms: row.try_get("last_triggered_ms").map_err(db_error)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        updated_ms: row.try_get("updated_ms").map_err(db_error)?,
    };
    Ok((record, sealed))
}

struct Sealed {
    nonce: Vec<u8>,
    cipher: Vec<u8>,
}

fn open_secret(
    key: &MasterKey,
    name: &str,
    sealed: Option<Sealed>,
) -> Result<Option<String>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = key
        .open(&secret_context(name), &sealed.nonce, &sealed.cipher)
        .map_err(StoreError::other)?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(StoreError::other)
}

async fn put_webhook(
    pool: &Writer,
    key: &MasterKey,
    webhook: &NewWebhook,
    actor: &str,
) -> Result<WebhookRecord, StoreError> {
    let now = now_ms();
    let (nonce, cipher) = match &webhook.secret {
        Some(secret) => {
            let (n, c) = key.seal(&secret_context(&webhook.name), secret.as_bytes());
            (Some(n), Some(c))
        }
        None => (None, None),
    };
    let mut tx = pool.begin().await.map_err(db_error)?;
    let sql = format!(
        "INSERT INTO webhooks
            (name, url_id, pipeline, definition_json, secret_nonce, secret_cipher, tags_json,
             registered, last_triggered_ms, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
            pipeline = excluded.pipeline,
            definition_json = excluded.definition_json,
            secret_nonce = excluded.secret_nonce,
            secret_cipher = excluded.secret_cipher,
            tags_json = excluded.tags_json,
            updated_ms = excluded.updated_ms
         RETURNING {WEBHOOK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&webhook.name)
        .bind(&webhook.url_id)
        .bind(&webhook.pipeline)
        .bind(webhook.definition.to_string())
        .bind(nonce)
        .bind(cipher)
        .bind(webhook.tags.to_string())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let (record, _) = webhook_record(&row)?;
    // A new row took our url id; an existing one kept its own.
    let detail = if record.url_id == webhook.url_id {
        format!("created for pipeline {}", webhook.pipeline)
    } else {
        format!("replaced, pipeline {}", webhook.pipeline)
    };
    audit::record(&mut tx, actor, "webhook.put", &webhook.name, &detail).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(record)
}

async fn webhook_row(
    pool: &Writer,
    column: &str,
    value: &str,
) -> Result<(WebhookRecord, Option<Sealed>), StoreError> {
    // `column` is one of two literals below, never from a request.
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {column} = ?");
    let row = sqlx::query(&sql)
        .bind(value)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
    webhook_record(&row)
}

async fn list_webhooks(pool: &Writer) -> Result<Vec<WebhookRecord>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(db_error)?;
    rows.iter()
        .map(|r| webhook_record(r).map(|(w, _)| w))
        .collect()
}

async fn delete_webhook(pool: &Writer, name: &str, actor: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let done = sqlx::query("DELETE FROM webhooks WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    audit::record(&mut tx, actor, "webhook.delete", name, "").await?;
    tx.commit().await.map_err(db_error)?;
    Ok(true)
}

/// Runs `UPDATE webhooks SET <assignment> WHERE name = ?` with one bound
/// value, audited; `NotFound` when there is no such webhook.
async fn update_webhook_column(
    pool: &Writer,
    name: &str,
    assignment: &str,
    value: i64,
    actor: &str,
    action: &str,
    detail: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    // `assignment` is a literal from this file, never from a request.
    let sql = format!("UPDATE webhooks SET {assignment} WHERE name = ?");
    let done = sqlx::query(&sql)
        .bind(value)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    audit::record(&mut tx, actor, action, name, detail).await?;
    tx.commit().await.map_err(db_error)
}

#[async_trait]
impl PipelineStore for SqliteStore {
    async fn create_pipeline(
        &self,
        pipeline: &NewPipeline,
        actor: &str,
    ) -> Result<PipelineRecord, StoreError> {
        create_pipeline(&self.writer, pipeline, actor).await
    }

    async fn update_pipeline(
        &self,
        pipeline: &NewPipeline,
        expected_version: u32,
        actor: &str,
    ) -> Result<PipelineRecord, StoreError> {
        update_pipeline(&self.writer, pipeline, expected_version, actor).await
    }

    async fn get_pipeline(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<PipelineRecord, StoreError> {
        get_pipeline(&self.writer, name, version).await
    }

    async fn delete_pipeline(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        delete_pipeline(&self.writer, name, actor).await
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineSummaryRecord>, StoreError> {
        list_pipelines(&self.writer).await
    }

    async fn disable_transition(
        &self,
        transition: &DisabledTransition,
        actor: &str,
    ) -> Result<(), StoreError> {
        disable_transition(&self.writer, transition, actor).await
    }

    async fn enable_transition(
        &self,
        pipeline: &str,
        stage: &str,
        transition_type: TransitionType,
        actor: &str,
    ) -> Result<(), StoreError> {
        enable_transition(&self.writer, pipeline, stage, transition_type, actor).await
    }

    async fn disabled_transitions(
        &self,
        pipeline: &str,
    ) -> Result<Vec<DisabledTransition>, StoreError> {
        disabled_transitions(&self.writer, pipeline).await
    }

    async fn put_webhook(
        &self,
        webhook: &NewWebhook,
        actor: &str,
    ) -> Result<WebhookRecord, StoreError> {
        put_webhook(&self.writer, &self.key, webhook, actor).await
    }

    async fn get_webhook(&self, name: &str) -> Result<WebhookRecord, StoreError> {
        webhook_row(&self.writer, "name", name)
            .await
            .map(|(w, _)| w)
    }

    async fn webhook_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        let (_, sealed) = webhook_row(&self.writer, "name", name).await?;
        open_secret(&self.key, name, sealed)
    }

    async fn webhook_by_url_id(&self, url_id: &str) -> Result<WebhookWithSecret, StoreError> {
        let (webhook, sealed) = webhook_row(&self.writer, "url_id", url_id).await?;
        let secret = open_secret(&self.key, &webhook.name, sealed)?;
        Ok(WebhookWithSecret { webhook, secret })
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        list_webhooks(&self.writer).await
    }

    async fn delete_webhook(&self, name: &str, actor: &str) -> Result<bool, StoreError> {
        delete_webhook(&self.writer, name, actor).await
    }

    async fn record_webhook_trigger(
        &self,
        name: &str,
        at_ms: i64,
        actor: &str,
    ) -> Result<(), StoreError> {
        update_webhook_column(
            &self.writer,
            name,
            "last_triggered_ms = ?",
            at_ms,
            actor,
            "webhook.trigger",
            "",
        )
        .await
    }

    async fn set_webhook_registered(
        &self,
        name: &str,
        registered: bool,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (action, detail) = if registered {
            ("webhook.register", "registered with third party")
        } else {
            ("webhook.deregister", "deregistered from third party")
        };
        update_webhook_column(
            &self.writer,
            name,
            "registered = ?",
            i64::from(registered),
            actor,
            action,
            detail,
        )
        .await
    }

    async fn server_state(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value_json FROM server_state WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.writer)
                .await
                .map_err(db_error)?;
        row.map(|(text,)| parse_json(&text)).transpose()
    }

    async fn put_server_state(
        &self,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO server_state (name, value_json, update_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET value_json = excluded.value_json, update_ms = excluded.update_ms",
        )
        .bind(name)
        .bind(value.to_string())
        .bind(crate::now_ms())
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn server_state_or_insert(
        &self,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, StoreError> {
        sqlx::query("INSERT INTO server_state (name, value_json, update_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value.to_string())
            .bind(crate::now_ms())
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        // Read back: the stored one, whoever won (never none: rows here
        // are only replaced, and deleted by nobody).
        self.server_state(name).await?.ok_or(StoreError::NotFound)
    }
}
