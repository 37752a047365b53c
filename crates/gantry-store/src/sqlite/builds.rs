//! Builds, their numbers and their log lines.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::connections::Connections;
use super::raw::Columns;
use super::writer::{Batch, Writer};
use super::{audit, db_error, parse_json};
use crate::now_ms;
use crate::{
    BuildRecord, BuildUpdate, LogArchive, LogLine, LogMove, LogSeek, NewBuild, SortOrder,
    StoreError,
};

const COLUMNS: &str =
    "id, project, number, status, current_phase, build_json, overrides_json, start_ms, end_ms";

fn record(row: &impl Columns) -> Result<BuildRecord, StoreError> {
    let build: String = row.column("build_json").map_err(db_error)?;
    let overrides: String = row.column("overrides_json").map_err(db_error)?;
    let number: i64 = row.column("number").map_err(db_error)?;
    Ok(BuildRecord {
        id: row.column("id").map_err(db_error)?,
        project: row.column("project").map_err(db_error)?,
        number: number as u64,
        status: row.column("status").map_err(db_error)?,
        current_phase: row.column("current_phase").map_err(db_error)?,
        build: parse_json(&build)?,
        overrides: parse_json(&overrides)?,
        start_ms: row.column("start_ms").map_err(db_error)?,
        end_ms: row.column("end_ms").map_err(db_error)?,
    })
}

pub(crate) async fn create(
    pool: &Writer,
    build: &NewBuild,
    owner: Option<&str>,
    actor: &str,
) -> Result<BuildRecord, StoreError> {
    // One batch (one round trip, see `Batch`): the counter's UPDATE first,
    // as in `create_in`; the INSERT and the audit entry read the number it
    // gave, and find no project row (so insert nothing) when there is none.
    let mut batch = Batch::new();
    batch
        .push("UPDATE projects SET build_counter = build_counter + 1 WHERE name = ?")
        .bind(build.project.clone());
    batch
        .push(&format!(
            "INSERT INTO builds ({COLUMNS}, owner) \
             SELECT ?, name, build_counter, ?, ?, ?, ?, ?, NULL, ? FROM projects WHERE name = ? \
             RETURNING {COLUMNS}"
        ))
        .bind(build.id.clone())
        .bind(build.status.clone())
        .bind(build.current_phase.clone())
        .bind(build.build.to_string())
        .bind(build.overrides.to_string())
        .bind(build.start_ms)
        .bind(owner.map(str::to_owned))
        .bind(build.project.clone());
    batch
        .push(
            "INSERT INTO audit_log (at_ms, actor, action, target, detail) \
             SELECT ?, ?, 'build.start', ?, 'number ' || build_counter FROM projects WHERE name = ?",
        )
        .bind(now_ms())
        .bind(actor.to_owned())
        .bind(build.id.clone())
        .bind(build.project.clone());
    let steps = pool.run(batch).await.map_err(db_error)?;
    let row = steps
        .get(1)
        .and_then(|step| step.rows.first())
        .ok_or(StoreError::NotFound)?;
    record(row)
}

/// [`create`] inside the caller's transaction (an engine step's, which
/// creates a build action's first build with the step).
pub(crate) async fn create_in(
    tx: &mut sqlx::SqliteConnection,
    build: &NewBuild,
    owner: Option<&str>,
    actor: &str,
) -> Result<BuildRecord, StoreError> {
    // The counter's UPDATE is the transaction's first statement: it takes
    // SQLite's write lock, so concurrent creates are serialised and each
    // sees the previous one's number.
    let number: i64 = sqlx::query_scalar(
        "UPDATE projects SET build_counter = build_counter + 1 WHERE name = ?
         RETURNING build_counter",
    )
    .bind(&build.project)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?
    .ok_or(StoreError::NotFound)?;
    // The server that creates the build waits for it, so it is the owner
    // from the start (gantry-store's servers.rs).
    let sql = format!(
        "INSERT INTO builds ({COLUMNS}, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) \
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&build.id)
        .bind(&build.project)
        .bind(number)
        .bind(&build.status)
        .bind(&build.current_phase)
        .bind(build.build.to_string())
        .bind(build.overrides.to_string())
        .bind(build.start_ms)
        .bind(owner)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let created = record(&row)?;
    audit::record(
        tx,
        actor,
        "build.start",
        &build.id,
        &format!("number {number}"),
    )
    .await?;
    Ok(created)
}

/// Fenced on the owner: with `me` set, a build another server took over (while
/// `me` was paused or cut off from the database) is not changed by `me`
/// (`Conflict`), so a late write cannot end it twice or undo its new owner's.
pub(crate) async fn update(
    pool: &Writer,
    id: &str,
    update: &BuildUpdate,
    me: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    let mut batch = Batch::new();
    push_update(&mut batch, id, update, me, actor, false);
    let steps = pool.run(batch).await.map_err(db_error)?;
    if steps.first().is_some_and(|step| step.changes > 0) {
        return Ok(());
    }
    // Nothing changed: say why (read after the fact, as nothing was written).
    let owner: Option<Option<String>> = sqlx::query_scalar("SELECT owner FROM builds WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    Err(match owner {
        None => StoreError::NotFound,
        Some(owner) => StoreError::Conflict(format!(
            "build {id} is owned by server {}, not by this one: it was taken over",
            owner.as_deref().unwrap_or("(none)")
        )),
    })
}

/// Pushes a build's end (its `UPDATE`, fenced by its owner `me` when
/// given, and the audit entry, written only when the `UPDATE` changed the
/// row: `changes()` is the count of the statement before). With
/// `after_change`, the `UPDATE` too applies only when the statement pushed
/// before it changed a row (an agent job's end). Returns the index of the
/// `UPDATE`'s step.
pub(crate) fn push_update(
    batch: &mut Batch,
    id: &str,
    update: &BuildUpdate,
    me: Option<&str>,
    actor: &str,
    after_change: bool,
) -> usize {
    let step = batch.len();
    let gate = if after_change {
        " AND changes() > 0"
    } else {
        ""
    };
    batch
        .push(&format!(
            "UPDATE builds SET status = ?, current_phase = ?, build_json = ?, end_ms = ? \
             WHERE id = ? AND (? IS NULL OR owner IS NULL OR owner = ?){gate}"
        ))
        .bind(update.status.clone())
        .bind(update.current_phase.clone())
        .bind(update.build.to_string())
        .bind(update.end_ms)
        .bind(id.to_owned())
        .bind(me.map(str::to_owned))
        .bind(me.map(str::to_owned));
    batch
        .push(
            "INSERT INTO audit_log (at_ms, actor, action, target, detail) \
             SELECT ?, ?, 'build.update', ?, ? WHERE changes() > 0",
        )
        .bind(now_ms())
        .bind(actor.to_owned())
        .bind(id.to_owned())
        .bind(format!("{} {}", update.status, update.current_phase));
    step
}

/// The builds among `ids`, in their order: one query (the ids go as one
/// JSON array, so the statement's text, and its cached plan, is the same
/// for any number of them).
pub(crate) async fn get_many(
    pool: &Connections,
    ids: &[String],
) -> Result<Vec<BuildRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM builds WHERE id IN (SELECT value FROM json_each(?))");
    let ids_json = serde_json::to_string(ids).map_err(StoreError::other)?;
    let rows = sqlx::query(&sql)
        .bind(ids_json)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let found = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::model::in_order_of(ids, found, |b| &b.id))
}

pub(crate) async fn list_for_project(
    pool: &Connections,
    project: &str,
    order: SortOrder,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT id FROM builds WHERE project = ? ORDER BY number {}",
        order.sql()
    );
    sqlx::query_scalar(&sql)
        .bind(project)
        .fetch_all(pool)
        .await
        .map_err(db_error)
}

pub(crate) async fn with_status(
    pool: &Connections,
    status: &str,
) -> Result<Vec<BuildRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM builds WHERE status = ? ORDER BY start_ms, id");
    let rows = sqlx::query(&sql)
        .bind(status)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(record).collect()
}

pub(crate) async fn append_log(
    pool: &Writer,
    build_id: &str,
    lines: &[String],
) -> Result<u64, StoreError> {
    let mut batch = Batch::new();
    push_log_lines(&mut batch, build_id, lines, false);
    batch
        .push("SELECT COALESCE(MAX(seq), 0) FROM build_log_lines WHERE build_id = ?")
        .bind(build_id.to_owned());
    let steps = pool.run(batch).await.map_err(db_error)?;
    let last: i64 = steps
        .last()
        .and_then(|step| step.rows.first())
        .map(|row| row.get_at(0))
        .transpose()
        .map_err(db_error)?
        .unwrap_or(0);
    Ok(u64::try_from(last).unwrap_or(0))
}

/// Appends `lines` to `build_id`'s log in `batch`, numbered after its
/// highest line, in one statement whose text does not depend on how many
/// lines there are (they go as one JSON array, read back by `json_each`),
/// so SQLite prepares it once per connection rather than once per chunk
/// size. With `if_changed`, nothing is appended unless the statement pushed
/// just before changed a row (`changes()`).
pub(crate) fn push_log_lines(
    batch: &mut Batch,
    build_id: &str,
    lines: &[String],
    if_changed: bool,
) {
    if lines.is_empty() {
        return;
    }
    let storable: Vec<_> = lines
        .iter()
        .map(|l| crate::model::storable_line(l))
        .collect();
    // Serialising strings cannot fail; should it, an empty array appends
    // nothing rather than a wrong log.
    let array = serde_json::to_string(&storable).unwrap_or_else(|_| "[]".into());
    batch
        .push(if if_changed {
            APPEND_LINES_IF_CHANGED
        } else {
            APPEND_LINES
        })
        .bind(build_id.to_owned())
        .bind(build_id.to_owned())
        .bind(array);
}

/// `json_each` numbers an array's items from 0 (`key`), in order.
const APPEND_LINES: &str = "INSERT INTO build_log_lines (build_id, seq, line) \
     SELECT ?, (SELECT COALESCE(MAX(seq), 0) FROM build_log_lines WHERE build_id = ?) + key + 1, value \
     FROM json_each(?)";
const APPEND_LINES_IF_CHANGED: &str = "INSERT INTO build_log_lines (build_id, seq, line) \
     SELECT ?, (SELECT COALESCE(MAX(seq), 0) FROM build_log_lines WHERE build_id = ?) + key + 1, value \
     FROM json_each(?) WHERE changes() > 0";

pub(crate) async fn log_lines(
    pool: &Connections,
    build_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<LogLine>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, line FROM build_log_lines WHERE build_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(build_id)
    .bind(after as i64)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(log_line).collect()
}

/// The line ends are summed in SQL (a window over the build's lines), so
/// seeking sends two integers back, not the log.
pub(crate) async fn log_seek(
    pool: &Connections,
    build_id: &str,
    offset: u64,
) -> Result<LogSeek, StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) AS seq, COALESCE(MAX(line_end), 0) AS line_end FROM (
             SELECT seq, SUM(LENGTH(CAST(line AS BLOB)) + 1) OVER (ORDER BY seq) AS line_end
             FROM build_log_lines WHERE build_id = ?
         ) WHERE line_end <= ?",
    )
    .bind(build_id)
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    let seq: i64 = row.try_get("seq").map_err(db_error)?;
    let end: i64 = row.try_get("line_end").map_err(db_error)?;
    Ok(LogSeek {
        after_seq: seq as u64,
        line_start: end as u64,
    })
}

pub(crate) async fn archive_logs(pool: &Writer, moves: &[LogMove]) -> Result<(), StoreError> {
    let last = crate::model::last_move_per_build(moves);
    if last.is_empty() {
        return Ok(());
    }
    // Two statements whatever the number of builds (a few hundred bound
    // values at most), sent as one batch: one round trip to the database.
    let rows = vec!["(?, ?, ?, ?, ?, ?)"; last.len()].join(", ");
    let mut batch = Batch::new();
    batch.push(&format!(
        "INSERT INTO build_log_archives (build_id, object_key, object_offset, size_bytes, line_count, archived_ms) \
         VALUES {rows} \
         ON CONFLICT (build_id) DO UPDATE SET object_key = excluded.object_key, object_offset = excluded.object_offset, \
         size_bytes = excluded.size_bytes, line_count = excluded.line_count, \
         archived_ms = excluded.archived_ms"
    ));
    for m in &last {
        batch
            .bind(m.archive.build_id.clone())
            .bind(m.archive.object_key.clone())
            .bind(i64::try_from(m.archive.offset).unwrap_or(i64::MAX))
            .bind(i64::try_from(m.archive.size_bytes).unwrap_or(i64::MAX))
            .bind(i64::try_from(m.archive.line_count).unwrap_or(i64::MAX))
            .bind(m.archive.archived_ms);
    }
    let which = vec!["(build_id = ? AND seq <= ?)"; last.len()].join(" OR ");
    batch.push(&format!("DELETE FROM build_log_lines WHERE {which}"));
    for m in &last {
        batch
            .bind(m.archive.build_id.clone())
            .bind(i64::try_from(m.through_seq).unwrap_or(i64::MAX));
    }
    pool.run(batch).await.map_err(db_error)?;
    Ok(())
}

/// A `build_log_lines` row's `seq` and `line`.
fn log_line(row: &SqliteRow) -> Result<LogLine, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(db_error)?;
    Ok(LogLine {
        seq: u64::try_from(seq).unwrap_or(0),
        text: row.try_get("line").map_err(db_error)?,
    })
}

/// A `build_log_archives` row (with its `build_id`).
fn archive_record(row: &SqliteRow) -> Result<LogArchive, StoreError> {
    let offset: i64 = row.try_get("object_offset").map_err(db_error)?;
    let size: i64 = row.try_get("size_bytes").map_err(db_error)?;
    let lines: i64 = row.try_get("line_count").map_err(db_error)?;
    Ok(LogArchive {
        build_id: row.try_get("build_id").map_err(db_error)?,
        object_key: row.try_get("object_key").map_err(db_error)?,
        offset: u64::try_from(offset).unwrap_or(0),
        size_bytes: u64::try_from(size).unwrap_or(0),
        line_count: u64::try_from(lines).unwrap_or(0),
        archived_ms: row.try_get("archived_ms").map_err(db_error)?,
    })
}

pub(crate) async fn log_archive(
    pool: &Connections,
    build_id: &str,
) -> Result<Option<LogArchive>, StoreError> {
    let mut found = log_archives(pool, std::slice::from_ref(&build_id.to_owned())).await?;
    Ok(found.pop())
}

pub(crate) async fn log_archives(
    pool: &Connections,
    build_ids: &[String],
) -> Result<Vec<LogArchive>, StoreError> {
    let rows = sqlx::query(
        "SELECT build_id, object_key, object_offset, size_bytes, line_count, archived_ms
         FROM build_log_archives WHERE build_id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(build_ids).map_err(StoreError::other)?)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(archive_record).collect()
}

pub(crate) async fn first_log_lines(
    pool: &Connections,
    build_ids: &[String],
    limit: u32,
) -> Result<Vec<(String, LogLine)>, StoreError> {
    let rows = sqlx::query(
        "SELECT build_id, seq, line FROM build_log_lines WHERE build_id IN (SELECT value FROM json_each(?))
         ORDER BY build_id, seq LIMIT ?",
    )
    .bind(serde_json::to_string(build_ids).map_err(StoreError::other)?)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| Ok((r.try_get("build_id").map_err(db_error)?, log_line(r)?)))
        .collect()
}

pub(crate) async fn with_unarchived_logs(
    pool: &Writer,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        // Driven from the lines, which after the moves hold only running
        // builds' logs, not from every build ever run.
        "SELECT b.id FROM builds b
         WHERE b.id IN (SELECT DISTINCT build_id FROM build_log_lines)
           AND b.status <> 'IN_PROGRESS'
         ORDER BY b.start_ms, b.id LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)
}
