//! [`WorkflowStore`] on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, audit, db_error, parse_json};
use crate::ServerStore as _;
use crate::workflows::{INBOX_APPLIED, INBOX_REFUSED};
use crate::{
    ExecutionRecord, HistoryRecord, InboxEntry, InboxOutcome, JournalAppend, JournalEntry,
    NewExecution, NewInboxEntry, NewStateMachine, StateMachineRecord, StateMachineUpdate,
    StoreError, TaskTokenRecord, WorkflowStore,
};

const MACHINE_COLUMNS: &str = "arn, name, definition, role_arn, machine_type, revision, revision_id, status, created_ms, updated_ms";
const EXECUTION_COLUMNS: &str = "arn, name, machine_arn, definition, revision, role_arn, status, input, output, error, cause, start_ms, stop_ms";

fn machine(row: &SqliteRow) -> Result<StateMachineRecord, StoreError> {
    let revision: i64 = row.try_get("revision").map_err(db_error)?;
    Ok(StateMachineRecord {
        arn: row.try_get("arn").map_err(db_error)?,
        name: row.try_get("name").map_err(db_error)?,
        definition: row.try_get("definition").map_err(db_error)?,
        role_arn: row.try_get("role_arn").map_err(db_error)?,
        machine_type: row.try_get("machine_type").map_err(db_error)?,
        revision: revision as u64,
        revision_id: row.try_get("revision_id").map_err(db_error)?,
        status: row.try_get("status").map_err(db_error)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        updated_ms: row.try_get("updated_ms").map_err(db_error)?,
    })
}

fn execution(row: &SqliteRow) -> Result<ExecutionRecord, StoreError> {
    let revision: i64 = row.try_get("revision").map_err(db_error)?;
    Ok(ExecutionRecord {
        arn: row.try_get("arn").map_err(db_error)?,
        name: row.try_get("name").map_err(db_error)?,
        machine_arn: row.try_get("machine_arn").map_err(db_error)?,
        definition: row.try_get("definition").map_err(db_error)?,
        revision: revision as u64,
        role_arn: row.try_get("role_arn").map_err(db_error)?,
        status: row.try_get("status").map_err(db_error)?,
        input: row.try_get("input").map_err(db_error)?,
        output: row.try_get("output").map_err(db_error)?,
        error: row.try_get("error").map_err(db_error)?,
        cause: row.try_get("cause").map_err(db_error)?,
        start_ms: row.try_get("start_ms").map_err(db_error)?,
        stop_ms: row.try_get("stop_ms").map_err(db_error)?,
    })
}

/// A no-op write: refuses an entry for an execution that does not exist or has ended
/// (`NotFound`), or that another server than `me` owns (`Conflict`: it was taken
/// over while `me` was paused or cut off, and `me`'s late entry must not advance
/// it). As the entry's first statement it also locks the execution's row until
/// commit, so appends to one execution are serialised across connections and
/// servers, and a takeover waits for an append in progress.
async fn check_running(
    conn: &mut SqliteConnection,
    e: &JournalAppend,
    me: Option<&str>,
) -> Result<(), StoreError> {
    let running = sqlx::query(
        "UPDATE sfn_executions SET status = status WHERE arn = ? AND status = 'RUNNING' AND (? IS NULL OR owner = ?)",
    )
    .bind(&e.execution_arn)
    .bind(me)
    .bind(me)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if running.rows_affected() == 1 {
        return Ok(());
    }
    // Refused: tell an ended execution from one taken over, for the caller.
    let row = sqlx::query("SELECT status, owner FROM sfn_executions WHERE arn = ?")
        .bind(&e.execution_arn)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    let Some(row) = row else {
        return Err(StoreError::NotFound);
    };
    let status: String = row.try_get("status").map_err(db_error)?;
    if status != "RUNNING" {
        return Err(StoreError::NotFound);
    }
    let owner: Option<String> = row.try_get("owner").map_err(db_error)?;
    Err(StoreError::Conflict(format!(
        "execution {} is owned by server {}, not by this one ({}): it was taken over",
        e.execution_arn,
        owner.as_deref().unwrap_or("(none)"),
        me.unwrap_or("(none)")
    )))
}

/// One entry of a batch, inside a savepoint: a refused entry (the inner result)
/// leaves the batch's other entries; a failing savepoint fails the batch.
async fn write_in_savepoint(
    conn: &mut SqliteConnection,
    entry: &JournalAppend,
    me: Option<&str>,
) -> Result<Result<(), StoreError>, StoreError> {
    sqlx::query("SAVEPOINT journal_entry")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let written = match check_running(conn, entry, me).await {
        Ok(()) => write_entry(conn, entry).await,
        Err(e) => Err(e),
    };
    if written.is_err() {
        sqlx::query("ROLLBACK TO SAVEPOINT journal_entry")
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    sqlx::query("RELEASE SAVEPOINT journal_entry")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(written)
}

/// Writes a journal entry and its effects; the caller owns the transaction.
async fn write_entry(conn: &mut SqliteConnection, e: &JournalAppend) -> Result<(), StoreError> {
    // The journal row first: it takes the write lock, and its primary key refuses a
    // sequence number written before (a transition recorded twice).
    sqlx::query(
        "INSERT INTO sfn_journal (execution_arn, seq, at_ms, event_json) VALUES (?, ?, ?, ?)",
    )
    .bind(&e.execution_arn)
    .bind(e.seq as i64)
    .bind(e.at_ms)
    .bind(e.event.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    for h in &e.history {
        sqlx::query(
            "INSERT INTO sfn_history (execution_arn, id, at_ms, event_type, previous_id, details_json)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.execution_arn)
        .bind(h.id as i64)
        .bind(h.at_ms)
        .bind(&h.event_type)
        .bind(h.previous_id.map(|p| p as i64))
        .bind(h.details.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for id in &e.timers_removed {
        sqlx::query("DELETE FROM sfn_timers WHERE execution_arn = ? AND timer_id = ?")
            .bind(&e.execution_arn)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    for (id, at) in &e.timers_started {
        sqlx::query(
            "INSERT INTO sfn_timers (execution_arn, timer_id, fire_ms) VALUES (?, ?, ?)
             ON CONFLICT (execution_arn, timer_id) DO UPDATE SET fire_ms = excluded.fire_ms",
        )
        .bind(&e.execution_arn)
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for t in &e.tokens_opened {
        sqlx::query(
            "INSERT INTO sfn_task_tokens (token_hash, execution_arn, state_name, attempt, status, handle, created_ms)
             VALUES (?, ?, ?, ?, 'PENDING', NULL, ?)",
        )
        .bind(&t.token_hash)
        .bind(&e.execution_arn)
        .bind(&t.state_name)
        .bind(t.attempt as i64)
        .bind(e.at_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    for hash in &e.tokens_closed {
        sqlx::query("UPDATE sfn_task_tokens SET status = 'CLOSED' WHERE token_hash = ?")
            .bind(hash)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    if let Some(c) = &e.completion {
        sqlx::query(
            "UPDATE sfn_executions SET status = ?, output = ?, error = ?, cause = ?, stop_ms = ? WHERE arn = ?",
        )
        .bind(&c.status)
        .bind(&c.output)
        .bind(&c.error)
        .bind(&c.cause)
        .bind(c.stop_ms)
        .bind(&e.execution_arn)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM sfn_timers WHERE execution_arn = ?")
            .bind(&e.execution_arn)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "UPDATE sfn_task_tokens SET status = 'CLOSED' WHERE execution_arn = ? AND status = 'PENDING'",
        )
        .bind(&e.execution_arn)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    if let Some(id) = e.inbox_id {
        // Applied with the entry it caused: never twice, even across a crash.
        sqlx::query(
            "UPDATE sfn_inbox SET outcome = ?, done_ms = ? WHERE id = ? AND outcome IS NULL",
        )
        .bind(INBOX_APPLIED)
        .bind(e.at_ms)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    if let Some(action) = &e.audit_action {
        let detail = e
            .completion
            .as_ref()
            .map(|c| c.status.clone())
            .unwrap_or_default();
        audit::record(conn, &e.actor, action, &e.execution_arn, &detail).await?;
    }
    Ok(())
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn create_state_machine(
        &self,
        m: &NewStateMachine,
        actor: &str,
    ) -> Result<StateMachineRecord, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let sql = format!(
            "INSERT INTO sfn_state_machines ({MACHINE_COLUMNS}) VALUES (?, ?, ?, ?, ?, 1, ?, 'ACTIVE', ?, ?)
             RETURNING {MACHINE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&m.arn)
            .bind(&m.name)
            .bind(&m.definition)
            .bind(&m.role_arn)
            .bind(&m.machine_type)
            .bind(&m.revision_id)
            .bind(m.created_ms)
            .bind(m.created_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let created = machine(&row)?;
        audit::record(
            &mut tx,
            actor,
            "statemachine.create",
            &m.arn,
            &m.machine_type,
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_state_machine(
        &self,
        arn: &str,
        u: &StateMachineUpdate,
        actor: &str,
    ) -> Result<StateMachineRecord, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let sql = format!(
            "UPDATE sfn_state_machines SET definition = COALESCE(?, definition),
                 role_arn = COALESCE(?, role_arn), revision = revision + 1, revision_id = ?, updated_ms = ?
             WHERE arn = ? RETURNING {MACHINE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&u.definition)
            .bind(&u.role_arn)
            .bind(&u.revision_id)
            .bind(u.updated_ms)
            .bind(arn)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        let updated = machine(&row)?;
        let detail = format!("revision {}", updated.revision);
        audit::record(&mut tx, actor, "statemachine.update", arn, &detail).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated)
    }

    async fn get_state_machine(&self, arn: &str) -> Result<StateMachineRecord, StoreError> {
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM sfn_state_machines WHERE arn = ?");
        let row = sqlx::query(&sql)
            .bind(arn)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        machine(&row)
    }

    async fn delete_state_machine(&self, arn: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query("DELETE FROM sfn_state_machines WHERE arn = ?")
            .bind(arn)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() > 0 {
            audit::record(&mut tx, actor, "statemachine.delete", arn, "").await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn list_state_machines(&self) -> Result<Vec<StateMachineRecord>, StoreError> {
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM sfn_state_machines ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.readers)
            .await
            .map_err(db_error)?;
        rows.iter().map(machine).collect()
    }

    async fn create_execution(
        &self,
        x: &NewExecution,
        first: &JournalAppend,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let sql = format!(
            "INSERT INTO sfn_executions ({EXECUTION_COLUMNS})
             VALUES (?, ?, ?, ?, ?, ?, 'RUNNING', ?, NULL, NULL, NULL, ?, NULL)"
        );
        sqlx::query(&sql)
            .bind(&x.arn)
            .bind(&x.name)
            .bind(&x.machine_arn)
            .bind(&x.definition)
            .bind(x.revision as i64)
            .bind(&x.role_arn)
            .bind(&x.input)
            .bind(x.start_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // The server that starts the execution drives it.
        sqlx::query("UPDATE sfn_executions SET owner = ? WHERE arn = ?")
            .bind(self.server_id())
            .bind(&x.arn)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit::record(&mut tx, actor, "execution.start", &x.arn, "").await?;
        write_entry(&mut tx, first).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn append_journal(&self, entry: &JournalAppend) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        check_running(&mut tx, entry, self.server_id().as_deref()).await?;
        write_entry(&mut tx, entry).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn append_journals(
        &self,
        entries: &[JournalAppend],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut results = Vec::with_capacity(entries.len());
        let me = self.server_id();
        for entry in entries {
            results.push(write_in_savepoint(&mut tx, entry, me.as_deref()).await?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(results)
    }

    async fn get_execution(&self, arn: &str) -> Result<ExecutionRecord, StoreError> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE arn = ?");
        let row = sqlx::query(&sql)
            .bind(arn)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        execution(&row)
    }

    async fn list_executions(
        &self,
        machine_arn: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM sfn_executions
             WHERE (? IS NULL OR machine_arn = ?) AND (? IS NULL OR status = ?)
             ORDER BY start_ms DESC, arn DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(machine_arn)
            .bind(machine_arn)
            .bind(status)
            .bind(status)
            .fetch_all(&self.readers)
            .await
            .map_err(db_error)?;
        rows.iter().map(execution).collect()
    }

    async fn journal(&self, execution_arn: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, event_json FROM sfn_journal WHERE execution_arn = ? ORDER BY seq",
        )
        .bind(execution_arn)
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq").map_err(db_error)?;
                let event: String = r.try_get("event_json").map_err(db_error)?;
                Ok(JournalEntry {
                    seq: seq as u64,
                    at_ms: r.try_get("at_ms").map_err(db_error)?,
                    event: parse_json(&event)?,
                })
            })
            .collect()
    }

    async fn history(&self, execution_arn: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, event_type, previous_id, details_json FROM sfn_history
             WHERE execution_arn = ? ORDER BY id",
        )
        .bind(execution_arn)
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id").map_err(db_error)?;
                let previous: Option<i64> = r.try_get("previous_id").map_err(db_error)?;
                let details: String = r.try_get("details_json").map_err(db_error)?;
                Ok(HistoryRecord {
                    id: id as u64,
                    at_ms: r.try_get("at_ms").map_err(db_error)?,
                    event_type: r.try_get("event_type").map_err(db_error)?,
                    previous_id: previous.map(|p| p as u64),
                    details: parse_json(&details)?,
                })
            })
            .collect()
    }

    async fn timers(&self, execution_arn: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT timer_id, fire_ms FROM sfn_timers WHERE execution_arn = ? ORDER BY fire_ms, timer_id",
        )
        .bind(execution_arn)
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("timer_id").map_err(db_error)?,
                    r.try_get("fire_ms").map_err(db_error)?,
                ))
            })
            .collect()
    }

    async fn task_token(&self, token_hash: &str) -> Result<TaskTokenRecord, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, execution_arn, state_name, attempt, status, handle
             FROM sfn_task_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.readers)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let attempt: i64 = row.try_get("attempt").map_err(db_error)?;
        Ok(TaskTokenRecord {
            token_hash: row.try_get("token_hash").map_err(db_error)?,
            execution_arn: row.try_get("execution_arn").map_err(db_error)?,
            state_name: row.try_get("state_name").map_err(db_error)?,
            attempt: attempt as u64,
            status: row.try_get("status").map_err(db_error)?,
            handle: row.try_get("handle").map_err(db_error)?,
        })
    }

    async fn set_task_handle(&self, token_hash: &str, handle: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE sfn_task_tokens SET handle = ? WHERE token_hash = ?")
            .bind(handle)
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn post_to_inbox(&self, entry: &NewInboxEntry) -> Result<i64, StoreError> {
        // Recorded only while the execution runs: a callback for an ended one
        // is refused at once rather than left for nobody.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sfn_inbox (execution_arn, dedup, event_json, actor, audit_action, created_ms) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM sfn_executions WHERE arn = ? AND status = 'RUNNING') RETURNING id",
        )
        .bind(&entry.execution_arn)
        .bind(&entry.dedup)
        .bind(entry.event.to_string())
        .bind(&entry.actor)
        .bind(&entry.audit_action)
        .bind(entry.created_ms)
        .bind(&entry.execution_arn)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        id.ok_or(StoreError::NotFound)
    }

    async fn inbox_for_owner(&self, owner: &str) -> Result<Vec<InboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.execution_arn, i.event_json, i.actor, i.audit_action FROM sfn_inbox i JOIN sfn_executions x ON x.arn = i.execution_arn WHERE i.outcome IS NULL AND x.status = 'RUNNING' AND x.owner = ? ORDER BY i.id",
        )
        .bind(owner)
        .fetch_all(&self.writer)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event_json").map_err(db_error)?;
                Ok(InboxEntry {
                    id: r.try_get("id").map_err(db_error)?,
                    execution_arn: r.try_get("execution_arn").map_err(db_error)?,
                    event: parse_json(&event)?,
                    actor: r.try_get("actor").map_err(db_error)?,
                    audit_action: r.try_get("audit_action").map_err(db_error)?,
                })
            })
            .collect()
    }

    async fn refuse_inbox_entry(&self, id: i64, at_ms: i64) -> Result<(), StoreError> {
        // Fenced as journal appends are: a server whose execution was taken
        // over does not settle what the new owner may still apply.
        let me = self.server_id();
        sqlx::query(
            "UPDATE sfn_inbox SET outcome = ?, done_ms = ? WHERE id = ? AND outcome IS NULL AND (? IS NULL OR execution_arn IN (SELECT arn FROM sfn_executions WHERE owner = ?))",
        )
        .bind(INBOX_REFUSED)
        .bind(at_ms)
        .bind(id)
        .bind(me.as_deref())
        .bind(me.as_deref())
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn inbox_outcome(&self, id: i64) -> Result<InboxOutcome, StoreError> {
        let row = sqlx::query(
            "SELECT i.outcome, x.status FROM sfn_inbox i LEFT JOIN sfn_executions x ON x.arn = i.execution_arn WHERE i.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
        let outcome: Option<String> = row.try_get("outcome").map_err(db_error)?;
        let status: Option<String> = row.try_get("status").map_err(db_error)?;
        // An entry applied is marked in the transaction that ended the
        // execution, so one still unmarked once the execution ended was not.
        Ok(match outcome.as_deref() {
            Some(INBOX_APPLIED) => InboxOutcome::Applied,
            Some(_) => InboxOutcome::Refused,
            None if status.as_deref() == Some("RUNNING") => InboxOutcome::Pending,
            None => InboxOutcome::Refused,
        })
    }

    async fn prune_inbox(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sfn_inbox WHERE (outcome IS NOT NULL AND done_ms < ?) OR (outcome IS NULL AND created_ms < ? AND NOT EXISTS (SELECT 1 FROM sfn_executions x WHERE x.arn = sfn_inbox.execution_arn AND x.status = 'RUNNING'))",
        )
        .bind(before_ms)
        .bind(before_ms)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
