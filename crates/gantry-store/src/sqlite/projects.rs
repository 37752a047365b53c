//! CodeBuild projects: the JSON, its times and the build counter.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::connections::Connections;
use super::writer::Writer;
use super::{audit, db_error, parse_json};
use crate::{NewProject, ProjectRecord, ProjectSort, SortOrder, StoreError, now_ms};

fn record(row: &SqliteRow) -> Result<ProjectRecord, StoreError> {
    let json: String = row.try_get("project_json").map_err(db_error)?;
    Ok(ProjectRecord {
        name: row.try_get("name").map_err(db_error)?,
        project: parse_json(&json)?,
        created_ms: row.try_get("created_ms").map_err(db_error)?,
        modified_ms: row.try_get("modified_ms").map_err(db_error)?,
    })
}

pub(crate) async fn create(
    pool: &Writer,
    project: &NewProject,
    actor: &str,
) -> Result<ProjectRecord, StoreError> {
    let now = now_ms();
    let mut tx = pool.begin().await.map_err(db_error)?;
    // A project deleted and created again numbers its builds on from the
    // old ones, so `project:number` never names two builds.
    let row = sqlx::query(
        "INSERT INTO projects (name, project_json, created_ms, modified_ms, build_counter)
         VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(number), 0) FROM builds WHERE project = ?))
         RETURNING name, project_json, created_ms, modified_ms",
    )
    .bind(&project.name)
    .bind(project.project.to_string())
    .bind(now)
    .bind(now)
    .bind(&project.name)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match db_error(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("project '{}' already exists", project.name))
        }
        other => other,
    })?;
    let created = record(&row)?;
    audit::record(&mut tx, actor, "project.create", &project.name, "").await?;
    tx.commit().await.map_err(db_error)?;
    Ok(created)
}

pub(crate) async fn update(
    pool: &Writer,
    project: &NewProject,
    actor: &str,
) -> Result<ProjectRecord, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let row = sqlx::query(
        "UPDATE projects SET project_json = ?, modified_ms = ? WHERE name = ?
         RETURNING name, project_json, created_ms, modified_ms",
    )
    .bind(project.project.to_string())
    .bind(now_ms())
    .bind(&project.name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?
    .ok_or(StoreError::NotFound)?;
    let updated = record(&row)?;
    audit::record(&mut tx, actor, "project.update", &project.name, "").await?;
    tx.commit().await.map_err(db_error)?;
    Ok(updated)
}

pub(crate) async fn get(pool: &Connections, name: &str) -> Result<ProjectRecord, StoreError> {
    let row = sqlx::query(
        "SELECT name, project_json, created_ms, modified_ms FROM projects WHERE name = ?",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db_error)?
    .ok_or(StoreError::NotFound)?;
    record(&row)
}

/// The projects among `names`, in their order: one query (see
/// `builds::get_many`).
pub(crate) async fn get_many(
    pool: &Connections,
    names: &[String],
) -> Result<Vec<ProjectRecord>, StoreError> {
    let names_json = serde_json::to_string(names).map_err(StoreError::other)?;
    let rows = sqlx::query(
        "SELECT name, project_json, created_ms, modified_ms FROM projects
         WHERE name IN (SELECT value FROM json_each(?))",
    )
    .bind(names_json)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let found = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::model::in_order_of(names, found, |p| &p.name))
}

pub(crate) async fn delete(pool: &Writer, name: &str, actor: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let done = sqlx::query("DELETE FROM projects WHERE name = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    audit::record(&mut tx, actor, "project.delete", name, "").await?;
    tx.commit().await.map_err(db_error)
}

pub(crate) async fn list(
    pool: &Connections,
    sort: ProjectSort,
    order: SortOrder,
) -> Result<Vec<String>, StoreError> {
    let column = match sort {
        ProjectSort::Name => "name",
        ProjectSort::CreatedTime => "created_ms",
        ProjectSort::LastModifiedTime => "modified_ms",
    };
    // Both pieces come from the enums above, never from the request.
    let sql = format!(
        "SELECT name FROM projects ORDER BY {column} {}, name {}",
        order.sql(),
        order.sql()
    );
    sqlx::query_scalar(&sql)
        .fetch_all(pool)
        .await
        .map_err(db_error)
}
