//! The SQLite implementation of [`Store`](crate::Store): one file, WAL, migrations from
//! `migrations/sqlite/`.
//!
//! SQLite allows one writer at a time; every transaction here that writes
//! starts with its write, so it takes the write lock before it reads and two
//! transactions never deadlock on a lock upgrade (they wait, up to the busy
//! timeout). Commits are made durable by a group commit
//! ([`durability`]): `synchronous = NORMAL`, and one thread flushing the
//! WAL for every commit written before it began; the server waits for that
//! flush ([`crate::ServerStore::durable`]) before it answers a request, so
//! what it answered 200 for survives a power cut too.

mod agents;
mod audit;
mod builds;
mod connections;
mod custom_actions;
mod durability;
mod events;
mod executions;
mod keys;
mod leader;
mod pipelines;
mod projects;
mod raw;
mod servers;
mod workflows;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::{
    AuditEntry, BuildRecord, BuildStore, BuildUpdate, LogArchive, LogLine, LogMove, LogSeek,
    MasterKey, NewAccessKey, NewBuild, NewProject, ProjectRecord, ProjectSort, SortOrder,
    StoreError,
};

use crate::ServerStore as _;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Read-only connections: lookups beside the writer, each its own thread.
const READERS: usize = 4;

/// The embedded store: a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection that writes (and reads inside its transactions).
    writer: writer::Writer,
    /// Read-only connections for lookups that write nothing: in WAL mode
    /// they read the last commit while the writer works, instead of
    /// queueing behind its fsync.
    readers: connections::Connections,
    key: MasterKey,
    /// The server this store works for ([`crate::ServerStore::set_server_id`]),
    /// stamped as the owner of the builds and executions it creates.
    pub(crate) server: std::sync::Arc<std::sync::RwLock<Option<String>>>,
    /// Flushes the WAL: the group commit.
    pub(crate) wal: std::sync::Arc<durability::WalSync>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and brings its
    /// schema up to date. `key` encrypts and decrypts stored secrets.
    pub async fn open(path: &Path, key: MasterKey) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::other)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable through `wal` instead (see the module comment).
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let reader_options = options.clone().read_only(true).create_if_missing(false);
        // One connection: SQLite runs one writer at a time anyway, and a
        // second connection waiting for the write lock sleeps in SQLite's
        // busy handler (1, 2, 5, 10 ... ms between tries) instead of being
        // woken when the lock frees. A thread of its own ([`writer`]) runs
        // what callers send it in order, back to back; with many agents
        // and builds at once one connection served in turn doubled
        // throughput. Lookups that write nothing use the read-only
        // `readers`.
        //
        // Every batch and every hand-back of the write connection may
        // follow a commit: the flush thread is told so, and flushes whether
        // or not anyone waits (a weak reference, so the writer does not
        // keep the thread alive after the last store is dropped).
        let wal = std::sync::Arc::new(durability::WalSync::start(path)?);
        let conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(StoreError::other)?;
        let writer = writer::Writer::start(conn, std::sync::Arc::downgrade(&wal))?;
        {
            // `run_direct`: `run` on a connection trips the compiler's
            // higher-ranked `Send` check wherever a server is spawned.
            let mut conn = writer.acquire().await.map_err(StoreError::other)?;
            MIGRATOR
                .run_direct(&mut *conn)
                .await
                .map_err(StoreError::other)?;
        }
        // Opened after the migrations: the schema and the WAL files exist.
        let mut read_only = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            read_only.push(
                sqlx::SqliteConnection::connect_with(&reader_options)
                    .await
                    .map_err(StoreError::other)?,
            );
        }
        let readers = connections::Connections::new(read_only);
        Ok(SqliteStore {
            writer,
            readers,
            key,
            server: Default::default(),
            wal,
        })
    }

    /// Closes every connection; pending writes are already committed.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// Maps a database error: no row is `NotFound`, a uniqueness violation is
/// `Conflict`, the rest `Other`.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(ref d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        other => StoreError::other(other),
    }
}

pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(StoreError::other)
}

#[async_trait]
impl BuildStore for SqliteStore {
    async fn create_access_key(&self, key: &NewAccessKey, actor: &str) -> Result<(), StoreError> {
        keys::create(&self.writer, &self.key, key, actor).await
    }

    async fn access_key_secret(&self, access_key_id: &str) -> Result<String, StoreError> {
        keys::secret(&self.readers, &self.key, access_key_id).await
    }

    async fn count_access_keys(&self) -> Result<u64, StoreError> {
        keys::count(&self.readers).await
    }

    async fn create_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError> {
        projects::create(&self.writer, project, actor).await
    }

    async fn update_project(
        &self,
        project: &NewProject,
        actor: &str,
    ) -> Result<ProjectRecord, StoreError> {
        projects::update(&self.writer, project, actor).await
    }

    async fn get_project(&self, name: &str) -> Result<ProjectRecord, StoreError> {
        projects::get(&self.readers, name).await
    }

    async fn get_projects(&self, names: &[String]) -> Result<Vec<ProjectRecord>, StoreError> {
        projects::get_many(&self.readers, names).await
    }

    async fn delete_project(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        projects::delete(&self.writer, name, actor).await
    }

    async fn list_projects(
        &self,
        sort: ProjectSort,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError> {
        projects::list(&self.readers, sort, order).await
    }

    async fn create_build(&self, build: &NewBuild, actor: &str) -> Result<BuildRecord, StoreError> {
        builds::create(&self.writer, build, self.server_id().as_deref(), actor).await
    }

    async fn update_build(
        &self,
        id: &str,
        update: &BuildUpdate,
        actor: &str,
    ) -> Result<(), StoreError> {
        let me = self.server_id();
        builds::update(&self.writer, id, update, me.as_deref(), actor).await
    }

    async fn get_builds(&self, ids: &[String]) -> Result<Vec<BuildRecord>, StoreError> {
        builds::get_many(&self.readers, ids).await
    }

    async fn list_builds_for_project(
        &self,
        project: &str,
        order: SortOrder,
    ) -> Result<Vec<String>, StoreError> {
        builds::list_for_project(&self.readers, project, order).await
    }

    async fn builds_with_status(&self, status: &str) -> Result<Vec<BuildRecord>, StoreError> {
        builds::with_status(&self.readers, status).await
    }

    async fn append_log_lines(&self, build_id: &str, lines: &[String]) -> Result<u64, StoreError> {
        builds::append_log(&self.writer, build_id, lines).await
    }

    async fn log_lines(
        &self,
        build_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LogLine>, StoreError> {
        builds::log_lines(&self.readers, build_id, after, limit).await
    }

    async fn log_seek(&self, build_id: &str, offset: u64) -> Result<LogSeek, StoreError> {
        builds::log_seek(&self.readers, build_id, offset).await
    }

    async fn archive_logs(&self, moves: &[LogMove]) -> Result<(), StoreError> {
        builds::archive_logs(&self.writer, moves).await
    }

    async fn log_archive(&self, build_id: &str) -> Result<Option<LogArchive>, StoreError> {
        builds::log_archive(&self.readers, build_id).await
    }

    async fn log_archives(&self, build_ids: &[String]) -> Result<Vec<LogArchive>, StoreError> {
        builds::log_archives(&self.readers, build_ids).await
    }

    async fn first_log_lines(
        &self,
        build_ids: &[String],
        limit: u32,
    ) -> Result<Vec<(String, LogLine)>, StoreError> {
        builds::first_log_lines(&self.readers, build_ids, limit).await
    }

    async fn builds_with_unarchived_logs(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        builds::with_unarchived_logs(&self.writer, limit).await
    }

    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        audit::record(&mut conn, actor, action, target, detail).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        audit::newest(&self.readers, limit).await
    }
}
