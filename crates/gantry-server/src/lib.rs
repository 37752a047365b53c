/*!
Gantry's control plane: `gantry server`.

This first slice serves CodeBuild's API (AWS JSON 1.1 at `POST /`,
`X-Amz-Target: CodeBuild_20161006.<Operation>`), authenticated with SigV4
against access keys kept in the store, so boto3, the AWS CLI and any AWS SDK
work when pointed at the server with `--endpoint-url`. Builds run inside the
server process through `gantry-build` (the embedded local agent), at most
[`Config::max_concurrent_builds`] at once; their state, phases and log lines
are written to the store as they happen, so the database is the only truth.

[`launch_with_tcp_listener`] takes a bound listener and a shutdown future, so
tests run the real server in-process on `127.0.0.1:0`; `gantry server` uses
[`AnyServer::open`] and [`AnyServer::serve`] to print the first admin key
between the two. The store is SQLite (one server) or PostgreSQL (one or
several servers sharing the database; docs/postgres.md).

# Example

```no_run
# async fn run() -> Result<(), gantry_server::ServerError> {
let config = gantry_server::Config::new("gantry-data");
let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.expect("bind");
let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
gantry_server::launch_with_tcp_listener(config, listener, shutdown).await
# }
```

[`local::LocalRun`] drives the same state without a socket: `gantry
pipeline run` runs a whole pipeline through it (docs/pipeline-local.md).

Decisions and the list of what is supported are in `docs/server.md`.
*/
#![deny(missing_docs)]

mod agents;
mod artifact_s3;
mod auth;
mod bootstrap;
mod build_artifacts;
mod build_logs;
mod chat;
mod codebuild;
mod codepipeline;
mod config;
mod error;
mod eventbridge;
mod leader;
pub mod local;
mod outbound;
mod pipeline_host;
mod polling;
mod recovery;
mod repo_webhooks;
mod rest;
mod router;
mod source;
mod stepfunctions;
pub mod timing;
mod webhooks;
mod worker;

use std::future::Future;
use std::sync::Arc;

use gantry_store::{MasterKey, PgStore, SqliteStore, Store, StoreError};
use tokio::net::TcpListener;

pub use bootstrap::AdminKey;
pub use config::{Config, Database};
pub use error::ApiError;
pub use eventbridge::{Clock, EventsConfig, InvokeError, SystemClock, TargetInvoker};
pub use gantry_artifacts::{S3Settings, StoreLocation};
pub use leader::LeaderElection;

/// The file names inside the data directory.
pub mod files {
    /// The SQLite database.
    pub const DATABASE: &str = "gantry.db";
    /// The key that encrypts secrets at rest (mode 0600).
    pub const SECRET_KEY: &str = "secret.key";
    /// Per-build working directories (sources), removed after each build.
    pub const WORK: &str = "work";
    /// Build artifacts while a build writes them (or an agent's arrive),
    /// one directory per build, until they are moved to the artifact store.
    pub const ARTIFACTS: &str = "artifacts";
    /// The default artifact store: pipeline and build artifacts
    /// (content-addressed, compressed blobs), finished build logs,
    /// custom-action job objects, and remote agents' source trees and
    /// resumable uploads.
    pub const ARTIFACT_STORE: &str = "artifact-store";
    /// Bare mirrors of the repositories Git source actions fetch.
    pub const GIT_MIRRORS: &str = "git";
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory or a file in it could not be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory or file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The secret key file could not be used.
    #[error(transparent)]
    Key(#[from] gantry_store::CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// Serving HTTP failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// A server with its store open, its first key made and interrupted builds
/// recovered, ready to [`serve`](Server::serve).
pub struct Server<S: Store> {
    state: router::AppState<S>,
    admin_key: Option<AdminKey>,
    recovered: Vec<String>,
    ownership: Arc<recovery::Ownership>,
}

impl Server<SqliteStore> {
    /// Opens the data directory (creating it, its key file and its database
    /// when missing), creates the first admin key on a new database, and
    /// marks builds that were running when the server last stopped FAILED.
    ///
    /// The SQLite store only: [`AnyServer::open`] opens whichever store
    /// `config.database` names.
    pub async fn open(config: Config) -> Result<Server<SqliteStore>, ServerError> {
        let store = open_store(&config).await?;
        Server::with_store(config, store).await
    }
}

impl Server<PgStore> {
    /// Like [`Server::open`], on the PostgreSQL database `url` (the key file
    /// and the data directory's other files stay in `config.data_dir`).
    ///
    /// Several servers may share the database: unless `config` says
    /// otherwise, they elect the one that runs schedules, event deliveries
    /// and polling with [`LeaderElection::default`].
    pub async fn open_postgres(
        mut config: Config,
        url: &str,
    ) -> Result<Server<PgStore>, ServerError> {
        if config.leader_election.is_none() {
            config.leader_election = Some(LeaderElection::default());
        }
        let key = open_data_dir(&config)?;
        let store = PgStore::connect(url, key).await?;
        Server::with_store(config, store).await
    }
}

/// A server over whichever store `config.database` names: what `gantry
/// server` runs.
pub enum AnyServer {
    /// On a SQLite file.
    Sqlite(Server<SqliteStore>),
    /// On a PostgreSQL database.
    Postgres(Server<PgStore>),
}

impl AnyServer {
    /// Opens the store `config.database` names (the data directory's
    /// SQLite file when `None`), as [`Server::open`] does.
    pub async fn open(config: Config) -> Result<AnyServer, ServerError> {
        match config.database.clone() {
            Some(Database::Postgres(url)) => Ok(AnyServer::Postgres(
                Server::open_postgres(config, &url).await?,
            )),
            _ => Ok(AnyServer::Sqlite(Server::open(config).await?)),
        }
    }

    /// See [`Server::admin_key`].
    pub fn admin_key(&self) -> Option<&AdminKey> {
        match self {
            AnyServer::Sqlite(s) => s.admin_key(),
            AnyServer::Postgres(s) => s.admin_key(),
        }
    }

    /// See [`Server::recovered_builds`].
    pub fn recovered_builds(&self) -> &[String] {
        match self {
            AnyServer::Sqlite(s) => s.recovered_builds(),
            AnyServer::Postgres(s) => s.recovered_builds(),
        }
    }

    /// See [`Server::serve`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        match self {
            AnyServer::Sqlite(s) => s.serve(listener, shutdown).await,
            AnyServer::Postgres(s) => s.serve(listener, shutdown).await,
        }
    }
}

/// Creates the data directory when missing and loads (or makes) its key file.
fn open_data_dir(config: &Config) -> Result<MasterKey, ServerError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(MasterKey::load_or_create(&dir.join(files::SECRET_KEY))?)
}

/// The data directory's SQLite store (or `config.database`'s), with the
/// directory and its key file created when missing.
async fn open_store(config: &Config) -> Result<SqliteStore, ServerError> {
    let dir = &config.data_dir;
    let key = open_data_dir(config)?;
    let database = match &config.database {
        Some(Database::Sqlite(path)) => path.clone(),
        None => dir.join(files::DATABASE),
        Some(Database::Postgres(_)) => {
            return Err(ServerError::Config(
                "this operation needs a SQLite database, not PostgreSQL".into(),
            ));
        }
    };
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::DataDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    Ok(SqliteStore::open(&database, key).await?)
}

impl<S: Store> Server<S> {
    /// Like [`Server::open`], over any store.
    pub async fn with_store(config: Config, store: S) -> Result<Server<S>, ServerError> {
        Server::assemble(config, store, true).await
    }

    /// The server over `store`; the first admin key of a new database is
    /// made only when `first_admin_key` (a local run leaves it to the
    /// first `gantry server` start, which prints it).
    async fn assemble(
        config: Config,
        store: S,
        first_admin_key: bool,
    ) -> Result<Server<S>, ServerError> {
        if let Some(election) = &config.leader_election {
            election.check().map_err(ServerError::Config)?;
        }
        if config.max_concurrent_builds == 0 {
            return Err(ServerError::Config(
                "max_concurrent_builds must be at least 1".into(),
            ));
        }
        let store = Arc::new(store);
        let admin_key = if first_admin_key {
            bootstrap::first_admin_key(store.as_ref(), &config).await?
        } else {
            None
        };
        // This server's identity: what it creates is owned by it. Alone on
        // its database (no election), its previous lives are dead.
        let ownership = Arc::new(recovery::Ownership::new(config.leader_election.as_ref()));
        recovery::register(store.as_ref(), &ownership, config.leader_election.is_none()).await?;
        let token_key =
            stepfunctions::load_or_create_token_key(&config.data_dir).map_err(|source| {
                ServerError::DataDir {
                    path: config.data_dir.display().to_string(),
                    source,
                }
            })?;
        let state = router::AppState::new(store, config, token_key).map_err(ServerError::Config)?;
        // Work of dead servers (this one's previous life included): builds
        // on the embedded agent are failed, remote agents' builds waited for
        // again, Step Functions executions go on from their journals.
        // Another live server's work is left alone.
        let recovered = recovery::take_over_builds(&state, &ownership).await?;
        let resumed = recovery::take_over_executions(&state, &ownership).await?;
        if !resumed.is_empty() {
            tracing::info!(
                count = resumed.len(),
                "resumed running Step Functions executions"
            );
        }
        Ok(Server {
            state,
            admin_key,
            recovered,
            ownership,
        })
    }

    /// The admin key created by this start, when the database was new.
    /// `generated` tells whether it came from the environment or was made up.
    pub fn admin_key(&self) -> Option<&AdminKey> {
        self.admin_key.as_ref()
    }

    /// The builds on the embedded agent found IN_PROGRESS at start, owned by
    /// a dead server (this one's previous life), and marked FAILED.
    pub fn recovered_builds(&self) -> &[String] {
        &self.recovered
    }

    /// Serves on `listener` until `shutdown` completes, then stops running
    /// builds (they end STOPPED, recorded in the store) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let runner = self.state.runner.clone();
        let events = self.state.events.clone();
        // The scheduler, the delivery worker and the poller run on one
        // server of those sharing the database: the lease holder.
        let leadership = leader::Leadership::start(
            self.state.store.clone(),
            self.state.config.leader_election.clone(),
        );
        events.start(leadership.watch()).await?;
        let engine = self.state.engine.clone();
        let pipelines = self.state.pipelines.clone();
        let resuming = self.state.clone();
        let store = self.state.store.clone();
        let ownership = self.ownership.clone();
        let me = self.ownership.clone();
        let owning = tokio::spawn(async move {
            match recovery::take_over_pipelines(&resuming, &ownership).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(actions = n, "resumed pipeline actions"),
                Err(e) => tracing::error!(error = %e, "resuming pipeline executions failed"),
            }
            // Then the heartbeat, and the takeover of servers that die.
            recovery::keep_owning(resuming, ownership).await;
        });
        let owning = AbortOnDrop(owning);
        // Callbacks and stops other servers received for this server's
        // executions (only a database shared with other servers has any).
        let inbox = self
            .state
            .engine
            .shared()
            .then(|| AbortOnDrop(tokio::spawn(engine.clone().watch_inbox())));
        let polling_state = self.state.clone();
        let (halt, halted) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(leader::while_leader(
            leadership.watch(),
            halted,
            move || polling::run(polling_state.clone()),
        ));
        // Every server reaps: each expiry is a conditional update on the
        // job's lease epoch, so one server's reaper wins each expired lease.
        let reaper = tokio::spawn(agents::reaper(
            self.state.store.clone(),
            self.state.runner.hub.clone(),
        ));
        // Jobs other servers sharing the database queue wake polls here.
        let queue_news = tokio::spawn(agents::follow_queue(
            self.state.store.clone(),
            self.state.runner.hub.clone(),
        ));
        // Graceful shutdown waits for open connections; live log streams
        // end when they see this (clients resume from their offset).
        let closing = self.state.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        let app = router::router(self.state);
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve);
        let _ = halt.send(true);
        // No more takeovers by a server that is stopping.
        drop(owning);
        drop(inbox);
        poller.abort();
        reaper.abort();
        queue_news.abort();
        pipelines.abort_actions();
        engine.shutdown();
        runner.shutdown().await;
        events.shutdown().await;
        // Its work is now nobody's: other servers (or this one's next
        // start) take it over at once rather than once the row is stale.
        if let Err(e) = store.remove_server(&me.id).await {
            tracing::warn!(error = %e, "removing this server's row failed; its work is taken over once its heartbeat is stale");
        }
        // Last: a replica takes the lease over at its next renewal.
        leadership.stop().await;
        served
    }
}

/// Aborts a task when dropped: the server's background work ends with the
/// server's future even when that future is cancelled rather than finished.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens `config.data_dir` and serves on `listener` until `shutdown`.
///
/// A first admin key generated on a new database is logged (`tracing`,
/// warn level) once; `gantry server` prints it instead.
pub async fn launch_with_tcp_listener(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let server = AnyServer::open(config).await?;
    if let Some(key) = server.admin_key().filter(|k| k.generated) {
        tracing::warn!(access_key_id = %key.access_key_id, "generated the first admin access key");
    }
    server.serve(listener, shutdown).await
}
