//! Builds, their numbers and their log lines.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{audit, db_error, parse_json};
use crate::{
    BuildRecord, BuildUpdate, LogArchive, LogLine, LogMove, LogSeek, NewBuild, SortOrder,
    StoreError,
};

const COLUMNS: &str =
    "id, project, number, status, current_phase, build_json, overrides_json, start_ms, end_ms";

fn record(row: &PgRow) -> Result<BuildRecord, StoreError> {
    let build: String = row.try_get("build_json").map_err(db_error)?;
    let overrides: String = row.try_get("overrides_json").map_err(db_error)?;
    let number: i64 = row.try_get("number").map_err(db_error)?;
    Ok(BuildRecord {
        id: row.try_get("id").map_err(db_error)?,
        project: row.try_get("project").map_err(db_error)?,
        number: number as u64,
        status: row.try_get("status").map_err(db_error)?,
        current_phase: row.try_get("current_phase").map_err(db_error)?,
        build: parse_json(&build)?,
        overrides: parse_json(&overrides)?,
        start_ms: row.try_get("start_ms").map_err(db_error)?,
        end_ms: row.try_get("end_ms").map_err(db_error)?,
    })
}

pub(crate) async fn create(
    pool: &PgPool,
    build: &NewBuild,
    owner: Option<&str>,
    actor: &str,
) -> Result<BuildRecord, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let created = create_in(&mut tx, build, owner, actor).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(created)
}

/// [`create`] inside the caller's transaction (an engine step's, which
/// creates a build action's first build with the step).
pub(crate) async fn create_in(
    tx: &mut sqlx::PgConnection,
    build: &NewBuild,
    owner: Option<&str>,
    actor: &str,
) -> Result<BuildRecord, StoreError> {
    // The counter's UPDATE locks the project's row until commit: a
    // concurrent create (from this server or another) waits for it and then
    // increments the committed value, so no two builds share a number.
    let number: i64 = sqlx::query_scalar(
        "UPDATE projects SET build_counter = build_counter + 1 WHERE name = $1
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
        "INSERT INTO builds ({COLUMNS}, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) \
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
    pool: &PgPool,
    id: &str,
    update: &BuildUpdate,
    me: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let done = sqlx::query(
        "UPDATE builds SET status = $1, current_phase = $2, build_json = $3, end_ms = $4
         WHERE id = $5 AND ($6 IS NULL OR owner IS NULL OR owner = $7)",
    )
    .bind(&update.status)
    .bind(&update.current_phase)
    .bind(update.build.to_string())
    .bind(update.end_ms)
    .bind(id)
    .bind(me)
    .bind(me)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if done.rows_affected() == 0 {
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner FROM builds WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        return Err(match owner {
            None => StoreError::NotFound,
            Some(owner) => StoreError::Conflict(format!(
                "build {id} is owned by server {}, not by this one: it was taken over",
                owner.as_deref().unwrap_or("(none)")
            )),
        });
    }
    let detail = format!("{} {}", update.status, update.current_phase);
    audit::record(&mut tx, actor, "build.update", id, &detail).await?;
    tx.commit().await.map_err(db_error)
}

pub(crate) async fn get(pool: &PgPool, id: &str) -> Result<BuildRecord, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM builds WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
    record(&row)
}

pub(crate) async fn list_for_project(
    pool: &PgPool,
    project: &str,
    order: SortOrder,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT id FROM builds WHERE project = $1 ORDER BY number {}",
        order.sql()
    );
    sqlx::query_scalar(&sql)
        .bind(project)
        .fetch_all(pool)
        .await
        .map_err(db_error)
}

pub(crate) async fn with_status(
    pool: &PgPool,
    status: &str,
) -> Result<Vec<BuildRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM builds WHERE status = $1 ORDER BY start_ms, id");
    let rows = sqlx::query(&sql)
        .bind(status)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(record).collect()
}

pub(crate) async fn append_log(
    pool: &PgPool,
    build_id: &str,
    lines: &[String],
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let last = append_log_in(&mut tx, build_id, lines).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(last)
}

/// [`append_log`] inside the caller's transaction: the lock, then every
/// line in one INSERT (the lines go as one array, numbered by `unnest ...
/// WITH ORDINALITY` after the highest written): two round trips to the
/// database whatever the number of lines.
pub(crate) async fn append_log_in(
    conn: &mut sqlx::PgConnection,
    build_id: &str,
    lines: &[String],
) -> Result<u64, StoreError> {
    // Lines are numbered from the highest written, which two writers to one
    // build (e.g. two servers) could both read: a transaction-scoped
    // advisory lock on the build id serialises them until commit. (Taken
    // in a statement of its own: the INSERT's snapshot, under READ
    // COMMITTED, is then taken after the lock, and sees the lines of the
    // writer that held it.)
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(build_id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    if lines.is_empty() {
        let last: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM build_log_lines WHERE build_id = $1",
        )
        .bind(build_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        return Ok(u64::try_from(last).unwrap_or(0));
    }
    let storable: Vec<String> = lines
        .iter()
        .map(|l| crate::model::storable_line(l).into_owned())
        .collect();
    let last: Option<i64> = sqlx::query_scalar(
        "WITH added AS (
             INSERT INTO build_log_lines (build_id, seq, line)
             SELECT $1, (SELECT COALESCE(MAX(seq), 0) FROM build_log_lines WHERE build_id = $1) + l.n, l.line
             FROM unnest($2::text[]) WITH ORDINALITY AS l(line, n)
             RETURNING seq
         )
         SELECT MAX(seq) FROM added",
    )
    .bind(build_id)
    .bind(&storable)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(u64::try_from(last.unwrap_or(0)).unwrap_or(0))
}

pub(crate) async fn log_lines(
    pool: &PgPool,
    build_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<LogLine>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, line FROM build_log_lines WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(build_id)
    .bind(after as i64)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.try_get("seq").map_err(db_error)?;
            Ok(LogLine {
                seq: seq as u64,
                text: r.try_get("line").map_err(db_error)?,
            })
        })
        .collect()
}

/// The line ends are summed in SQL (a window over the build's lines), so
/// seeking sends two integers back, not the log.
pub(crate) async fn log_seek(
    pool: &PgPool,
    build_id: &str,
    offset: u64,
) -> Result<LogSeek, StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) AS seq, COALESCE(MAX(line_end), 0) AS line_end FROM (
             SELECT seq, SUM(octet_length(line) + 1) OVER (ORDER BY seq) AS line_end
             FROM build_log_lines WHERE build_id = $1
         ) AS ends WHERE line_end <= $2",
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

pub(crate) async fn archive_logs(pool: &PgPool, moves: &[LogMove]) -> Result<(), StoreError> {
    let last = crate::model::last_move_per_build(moves);
    if last.is_empty() {
        return Ok(());
    }
    // Two statements whatever the number of builds (a few hundred bound
    // values at most): every statement is a round trip to the database.
    let mut records = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "INSERT INTO build_log_archives (build_id, object_key, size_bytes, line_count, archived_ms) ",
    );
    records.push_values(&last, |mut row, m| {
        row.push_bind(&m.archive.build_id)
            .push_bind(&m.archive.object_key)
            .push_bind(i64::try_from(m.archive.size_bytes).unwrap_or(i64::MAX))
            .push_bind(i64::try_from(m.archive.line_count).unwrap_or(i64::MAX))
            .push_bind(m.archive.archived_ms);
    });
    records.push(
        " ON CONFLICT (build_id) DO UPDATE SET object_key = excluded.object_key,
             size_bytes = excluded.size_bytes, line_count = excluded.line_count,
             archived_ms = excluded.archived_ms",
    );
    let mut lines = sqlx::QueryBuilder::<sqlx::Postgres>::new("DELETE FROM build_log_lines WHERE ");
    for (i, m) in last.iter().enumerate() {
        if i > 0 {
            lines.push(" OR ");
        }
        lines
            .push("(build_id = ")
            .push_bind(&m.archive.build_id)
            .push(" AND seq <= ")
            .push_bind(i64::try_from(m.through_seq).unwrap_or(i64::MAX))
            .push(")");
    }
    let mut tx = pool.begin().await.map_err(db_error)?;
    records.build().execute(&mut *tx).await.map_err(db_error)?;
    lines.build().execute(&mut *tx).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

pub(crate) async fn log_archive(
    pool: &PgPool,
    build_id: &str,
) -> Result<Option<LogArchive>, StoreError> {
    let row = sqlx::query(
        "SELECT object_key, size_bytes, line_count, archived_ms
         FROM build_log_archives WHERE build_id = $1",
    )
    .bind(build_id)
    .fetch_optional(pool)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let size: i64 = row.try_get("size_bytes").map_err(db_error)?;
    let lines: i64 = row.try_get("line_count").map_err(db_error)?;
    Ok(Some(LogArchive {
        build_id: build_id.to_owned(),
        object_key: row.try_get("object_key").map_err(db_error)?,
        size_bytes: u64::try_from(size).unwrap_or(0),
        line_count: u64::try_from(lines).unwrap_or(0),
        archived_ms: row.try_get("archived_ms").map_err(db_error)?,
    }))
}

pub(crate) async fn with_unarchived_logs(
    pool: &PgPool,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        // Driven from the lines, which after the moves hold only running
        // builds' logs, not from every build ever run.
        "SELECT b.id FROM builds b
         WHERE b.id IN (SELECT DISTINCT build_id FROM build_log_lines)
           AND b.status <> 'IN_PROGRESS'
         ORDER BY b.start_ms, b.id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)
}
