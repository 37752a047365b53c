//! The PostgreSQL implementation of [`Store`](crate::Store): a connection
//! pool, migrations from `migrations/postgres/`.
//!
//! Several servers may share one database, so nothing here relies on a single
//! writer (as the SQLite store does): numbering takes row locks (the project's
//! build counter, the pipeline's version, the execution's row) or an advisory
//! transaction lock (a build's log lines), and conditional writes are single
//! statements that PostgreSQL re-checks under the row lock. The same queries
//! as SQLite's otherwise, with `$n` placeholders; JSON stays `TEXT` so
//! documents come back byte for byte as written.

mod agents;
mod audit;
mod builds;
mod custom_actions;
mod events;
mod executions;
mod keys;
mod leader;
mod pipelines;
mod projects;
mod servers;
mod workflows;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::{
    AuditEntry, BuildRecord, BuildStore, BuildUpdate, LogArchive, LogLine, LogMove, LogSeek,
    MasterKey, NewAccessKey, NewBuild, NewProject, ProjectRecord, ProjectSort, SortOrder,
    StoreError,
};

pub(crate) use crate::sqlite::{db_error, parse_json};

use crate::ServerStore as _;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a pooled connection may sit idle before it is checked (pinged)
/// as it is taken. sqlx checks each connection as it goes back to the pool,
/// so only a database that went away within this long of that check can
/// fail a statement; a busy server reuses its connections within
/// milliseconds and sends no checks.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_millis(100);

/// The shared store: a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    key: MasterKey,
    /// The server this store works for ([`crate::ServerStore::set_server_id`]),
    /// stamped as the owner of the builds and executions it creates.
    pub(crate) server: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    /// Whether other servers may share the database, as its server's last
    /// heartbeat found (true until then): only then is a job queued told
    /// to them (`AgentStore::queue_feed`). A `NOTIFY` serialises the
    /// commits of every transaction that sends one, fsync included, so a
    /// server alone sends none.
    pub(crate) others: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`)
    /// and brings its schema up to date. `key` encrypts and decrypts stored
    /// secrets; every server sharing the database needs the same key file.
    ///
    /// Servers starting together are safe: the migrator holds an advisory
    /// lock while it runs.
    pub async fn connect(url: &str, key: MasterKey) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad PostgreSQL URL: {e}").into()))?;
        // Eight for statements, and one the queue's listener holds
        // (`AgentStore::queue_feed`).
        let pool = PgPoolOptions::new()
            .max_connections(9)
            .acquire_timeout(Duration::from_secs(30))
            // sqlx pings a connection (a round trip) both when it goes
            // back to the pool and, by default, again when it is taken:
            // with the server busy, two round trips besides every
            // statement, a fifth of the server's CPU and a share of every
            // backend's (`gantry bench agents`, 2026-12-02). The ping on
            // the way back stays (sqlx always sends it); the one on the way
            // out only for a connection idle long enough that the database
            // may have gone away meanwhile (a restart): it is replaced
            // then, instead of failing the next statement.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Other(format!("connecting to PostgreSQL: {e}").into()))?;
        MIGRATOR.run(&pool).await.map_err(StoreError::other)?;
        Ok(PgStore {
            pool,
            key,
            server: Default::default(),
            others: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    /// Checks that `url` is a PostgreSQL URL sqlx can connect with, without
    /// connecting. The error does not repeat the URL (it may hold a password).
    pub fn check_url(url: &str) -> Result<(), String> {
        PgConnectOptions::from_str(url)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Closes every connection; pending writes are already committed.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl BuildStore for PgStore {
    async fn create_access_key(&self, key: &NewAccessKey, actor: &str) -> Result<(), StoreError> {
        keys::create(&self.pool, &self.key, key, actor).await
    }

    async fn access_key_secret(&self, access_key_id: &str) -> Result<String, StoreError> {
        keys::secret(&self.pool, &self.key, access_key_id).await
    }

    async fn count_access_keys(&self) -> Result<u64, StoreError> {
        keys::count(&self.pool).await
    }

    async fn create_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError> {
        projects::create(&self.pool, project, actor).await
    }

    async fn update_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError> {
        projects::update(&self.pool, project, actor).await
    }

    async fn get_project(&self, name: &str) -> Result<ProjectRecord, StoreError> {
        projects::get(&self.pool, name).await
    }

    async fn get_projects(&self, names: &[String]) -> Result<Vec<ProjectRecord>, StoreError> {
        projects::get_many(&self.pool, names).await
    }

    async fn delete_project(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        projects::delete(&self.pool, name, actor).await
    }

    async fn list_projects(
        &self,
        sort: ProjectSort,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError> {
        projects::list(&self.pool, sort, order).await
    }

    async fn create_build(&self, build: &NewBuild, actor: &str) -> Result<BuildRecord, StoreError> {
        builds::create(&self.pool, build, self.server_id().as_deref(), actor).await
    }

    async fn update_build(
        &self,
        id: &str,
        update: &BuildUpdate,
        actor: &str,
    ) -> Result<(), StoreError> {
        let me = self.server_id();
        builds::update(&self.pool, id, update, me.as_deref(), actor).await
    }

    async fn get_builds(&self, ids: &[String]) -> Result<Vec<BuildRecord>, StoreError> {
        builds::get_many(&self.pool, ids).await
    }

    async fn list_builds_for_project(
        &self,
        project: &str,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError> {
        builds::list_for_project(&self.pool, project, order).await
    }

    async fn builds_with_status(&self, status: &str) -> Result<Vec<BuildRecord>, StoreError> {
        builds::with_status(&self.pool, status).await
    }

    async fn append_log_lines(&self, build_id: &str, lines: &[String]) -> Result<u64, StoreError> {
        builds::append_log(&self.pool, build_id, lines).await
    }

    async fn log_lines(
        &self,
        build_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        builds::log_lines(&self.pool, build_id, after, limit).await
    }

    async fn log_seek(&self, build_id: &str, offset: u64) -> Result<LogSeek, StoreError> {
        builds::log_seek(&self.pool, build_id, offset).await
    }

    async fn archive_logs(&self, moves: &[LogMove]) -> Result<(), StoreError> {
        builds::archive_logs(&self.pool, moves).await
    }

    async fn log_archive(&self, build_id: &str) -> Result<Option<LogArchive>, StoreError> {
        builds::log_archive(&self.pool, build_id).await
    }

    async fn log_archives(&self, build_ids: &[String]) -> Result<Vec<LogArchive>, StoreError> {
        builds::log_archives(&self.pool, build_ids).await
    }

    async fn first_log_lines(
        &self,
        build_ids: &[String],
        limit: u32,
    ) -> Result<Vec<(String, LogLine)>, StoreError> {
        builds::first_log_lines(&self.pool, build_ids, limit).await
    }

    async fn builds_with_unarchived_logs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        builds::with_unarchived_logs(&self.pool, limit).await
    }

    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        audit::record(&mut conn, actor, action, target, detail).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        audit::newest(&self.pool, limit).await
    }
}
