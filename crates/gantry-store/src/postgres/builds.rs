//! Builds, their numbers and their log lines.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{db_error, parse_json};
use crate::{
    BuildRecord, BuildUpdate, LogArchive, LogLine, LogMove, LogSeek, NewBuild, SortOrder,
    StoreError, now_ms,
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
    // One statement is its own transaction: no BEGIN and COMMIT round trips.
    let mut conn = pool.acquire().await.map_err(db_error)?;
    create_in(&mut conn, build, owner, actor).await
}

/// [`create`] inside the caller's transaction (an engine step's, which
/// creates a build action's first build with the step).
///
/// One statement, so one round trip: the number, the build and its audit
/// entry are data-modifying CTEs, which commit or fail together. The
/// counter's UPDATE locks the project's row until commit: a concurrent
/// create (from this server or another) waits for it and then increments
/// the committed value, so no two builds share a number. An unknown
/// project leaves the counter's CTE empty, so nothing is written and no
/// row comes back.
pub(crate) async fn create_in(
    conn: &mut sqlx::PgConnection,
    build: &NewBuild,
    owner: Option<&str>,
    actor: &str,
) -> Result<BuildRecord, StoreError> {
    // The server that creates the build waits for it, so it is the owner
    // from the start (gantry-store's servers.rs).
    let sql = format!(
        "WITH counter AS (
             UPDATE projects SET build_counter = build_counter + 1 WHERE name = $2
             RETURNING build_counter
         ), created AS (
             INSERT INTO builds ({COLUMNS}, owner)
             SELECT $1, $2, build_counter, $3, $4, $5, $6, $7, NULL, $8 FROM counter
             RETURNING {COLUMNS}
         ), audited AS (
             INSERT INTO audit_log (at_ms, actor, action, target, detail)
             SELECT $9, $10, 'build.start', id, 'number ' || number FROM created
         )
         SELECT {COLUMNS} FROM created"
    );
    let row = sqlx::query(&sql)
        .bind(&build.id)
        .bind(&build.project)
        .bind(&build.status)
        .bind(&build.current_phase)
        .bind(build.build.to_string())
        .bind(build.overrides.to_string())
        .bind(build.start_ms)
        .bind(owner)
        .bind(now_ms())
        .bind(actor)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NotFound)?;
    record(&row)
}

/// Fenced on the owner: with `me` set, a build another server took over (while
/// `me` was paused or cut off from the database) is not changed by `me`
/// (`Conflict`), so a late write cannot end it twice or undo its new owner's.
///
/// The change and its audit entry are one statement (one round trip, its
/// own transaction); only a refused change costs a second, to say why.
pub(crate) async fn update(
    pool: &PgPool,
    id: &str,
    update: &BuildUpdate,
    me: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    let detail = format!("{} {}", update.status, update.current_phase);
    let changed: i64 = sqlx::query_scalar(
        "WITH changed AS (
             UPDATE builds SET status = $1, current_phase = $2, build_json = $3, end_ms = $4
             WHERE id = $5 AND ($6::text IS NULL OR owner IS NULL OR owner = $6)
             RETURNING id
         ), audited AS (
             INSERT INTO audit_log (at_ms, actor, action, target, detail)
             SELECT $7, $8, 'build.update', id, $9 FROM changed
         )
         SELECT COUNT(*) FROM changed",
    )
    .bind(&update.status)
    .bind(&update.current_phase)
    .bind(update.build.to_string())
    .bind(update.end_ms)
    .bind(id)
    .bind(me)
    .bind(now_ms())
    .bind(actor)
    .bind(&detail)
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    if changed == 0 {
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner FROM builds WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
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
    Ok(())
}

/// The builds among `ids`, in their order: one query.
pub(crate) async fn get_many(
    pool: &PgPool,
    ids: &[String],
) -> Result<Vec<BuildRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM builds WHERE id = ANY($1)");
    let rows = sqlx::query(&sql)
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let found = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::model::in_order_of(ids, found, |b| &b.id))
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

/// Appends `lines` to `build_id`'s log and answers the last line's number.
///
/// One statement, so one round trip and its own transaction: the log's
/// head row (`build_log_heads`) moves on by the number of lines, and the
/// lines go in one INSERT from an array, numbered from where the head was.
/// The head's upsert locks its row and sees the newest committed head, so
/// two writers to one log (e.g. two servers) get disjoint numbers.
pub(crate) async fn append_log(
    pool: &PgPool,
    build_id: &str,
    lines: &[String],
) -> Result<u64, StoreError> {
    if lines.is_empty() {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM build_log_heads WHERE build_id = $1")
                .bind(build_id)
                .fetch_optional(pool)
                .await
                .map_err(db_error)?;
        return Ok(u64::try_from(last.unwrap_or(0)).unwrap_or(0));
    }
    let sql = format!(
        "WITH head AS (
             INSERT INTO build_log_heads AS h (build_id, last_seq)
             VALUES ($1, cardinality($2::text[]))
             {MOVE_HEAD}
         ), {INSERT_LINES}
         SELECT last_seq FROM head"
    );
    let last: i64 = sqlx::query_scalar(&sql)
        .bind(build_id)
        .bind(storable(lines))
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    Ok(u64::try_from(last).unwrap_or(0))
}

/// The end of the `head` CTE of a statement that appends log lines (`$1`
/// the log, `$2` the lines as `text[]`): an existing head moves on by the
/// number of lines. Its `RETURNING` is the new last line's number.
pub(crate) const MOVE_HEAD: &str =
    "ON CONFLICT (build_id) DO UPDATE SET last_seq = h.last_seq + excluded.last_seq
             RETURNING last_seq";

/// The CTE that inserts the lines (`$2`) after the `head` CTE moved the
/// head: numbered from the old head, in the array's order.
pub(crate) const INSERT_LINES: &str = "added AS (
             INSERT INTO build_log_lines (build_id, seq, line)
             SELECT $1, head.last_seq - cardinality($2::text[]) + l.n, l.line
             FROM head, unnest($2::text[]) WITH ORDINALITY AS l(line, n)
         )";

/// The lines as they are stored (see [`crate::model::storable_line`]).
pub(crate) fn storable(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| crate::model::storable_line(l).into_owned())
        .collect()
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
    rows.iter().map(log_line).collect()
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
        "INSERT INTO build_log_archives (build_id, object_key, object_offset, size_bytes, line_count, archived_ms) ",
    );
    records.push_values(&last, |mut row, m| {
        row.push_bind(&m.archive.build_id)
            .push_bind(&m.archive.object_key)
            .push_bind(i64::try_from(m.archive.offset).unwrap_or(i64::MAX))
            .push_bind(i64::try_from(m.archive.size_bytes).unwrap_or(i64::MAX))
            .push_bind(i64::try_from(m.archive.line_count).unwrap_or(i64::MAX))
            .push_bind(m.archive.archived_ms);
    });
    records.push(
        " ON CONFLICT (build_id) DO UPDATE SET object_key = excluded.object_key, object_offset = excluded.object_offset,
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

/// A `build_log_lines` row's `seq` and `line`.
fn log_line(row: &PgRow) -> Result<LogLine, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(db_error)?;
    Ok(LogLine {
        seq: u64::try_from(seq).unwrap_or(0),
        text: row.try_get("line").map_err(db_error)?,
    })
}

/// A `build_log_archives` row (with its `build_id`).
fn archive_record(row: &PgRow) -> Result<LogArchive, StoreError> {
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
    pool: &PgPool,
    build_id: &str,
) -> Result<Option<LogArchive>, StoreError> {
    let mut found = log_archives(pool, std::slice::from_ref(&build_id.to_owned())).await?;
    Ok(found.pop())
}

pub(crate) async fn log_archives(
    pool: &PgPool,
    build_ids: &[String],
) -> Result<Vec<LogArchive>, StoreError> {
    let rows = sqlx::query(
        "SELECT build_id, object_key, object_offset, size_bytes, line_count, archived_ms
         FROM build_log_archives WHERE build_id = ANY($1)",
    )
    .bind(build_ids)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(archive_record).collect()
}

pub(crate) async fn first_log_lines(
    pool: &PgPool,
    build_ids: &[String],
    limit: u32,
) -> Result<Vec<(String, LogLine)>, StoreError> {
    let rows = sqlx::query(
        "SELECT build_id, seq, line FROM build_log_lines WHERE build_id = ANY($1)
         ORDER BY build_id, seq LIMIT $2",
    )
    .bind(build_ids)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| Ok((r.try_get("build_id").map_err(db_error)?, log_line(r)?)))
        .collect()
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
