//! The server's settings.

use std::fmt;
use std::path::PathBuf;

/// How the server runs. Build with [`Config::new`] and adjust the fields.
#[derive(Clone)]
pub struct Config {
    /// Where the database, the key file, build workspaces and artifacts live.
    pub data_dir: PathBuf,
    /// How many builds run at once; more wait in QUEUED.
    pub max_concurrent_builds: usize,
    /// The region written into ARNs (any region is accepted in signatures).
    pub region: String,
    /// The account id written into ARNs.
    pub account_id: String,
    /// The first admin key (access key id, secret) for a new database;
    /// `None` generates one. `gantry server` fills it from
    /// `GANTRY_ADMIN_ACCESS_KEY_ID` and `GANTRY_ADMIN_SECRET_ACCESS_KEY`.
    pub admin_key: Option<(String, String)>,
    /// The event bus: its clock, retry backoff and polling.
    pub events: crate::EventsConfig,
    /// The URL clients reach this server at (e.g. `https://ci.example.com`),
    /// for the URLs the server hands out (CodePipeline webhook URLs). `None`
    /// uses `http://` and the Host header of the request that asked.
    pub public_url: Option<String>,
    /// How long a manual approval waits for an answer before it fails
    /// (CodePipeline's is 7 days).
    pub approval_timeout: std::time::Duration,
    /// How long a custom action may run, across its jobs, before it fails
    /// (CodePipeline's is 24 hours).
    pub custom_action_timeout: std::time::Duration,
    /// How long the artifact credentials handed to a job worker work.
    pub artifact_credentials_ttl: std::time::Duration,
    /// How often Git sources with `PollForSourceChanges: true` are polled.
    pub poll_interval: std::time::Duration,
    /// The chat app's signing secret (Slack's "Signing Secret"): with it,
    /// approval messages get Approve and Reject buttons whose callbacks
    /// are checked with it. `gantry server` reads `GANTRY_CHAT_SIGNING_SECRET`.
    pub chat_signing_secret: Option<String>,
    /// A PEM bundle of CA certificates trusted, besides the built-in
    /// roots, by outbound HTTPS calls (event targets, chat messages, HTTP
    /// tasks). `gantry server` reads `GANTRY_EXTRA_CA_CERTS`.
    pub extra_ca_certs: Option<PathBuf>,
    /// The database; `None` is `<data_dir>/gantry.db`.
    pub database: Option<Database>,
    /// Whether the server runs builds itself (the embedded local agent).
    /// When false, builds stay QUEUED until an agent takes them.
    pub local_agent: bool,
    /// The secret of the ready-made repository webhooks
    /// (`/webhooks/github`, `/gitlab`, `/gitea`, `/forgejo`); without it
    /// they answer 404. `gantry server` reads `GANTRY_WEBHOOK_SECRET`.
    pub webhook_secret: Option<String>,
    /// Leader election among servers sharing the database: only the
    /// elected one runs schedules, event deliveries and Git polling.
    /// `None` (the default on SQLite): this server is the only one and runs
    /// them all. [`Server::open_postgres`](crate::Server::open_postgres)
    /// fills in [`LeaderElection::default`](crate::LeaderElection) when unset.
    pub leader_election: Option<crate::LeaderElection>,
    /// Where pipeline artifacts are kept: `None` is
    /// `<data_dir>/artifact-store`; `s3://bucket/prefix` is any
    /// S3-compatible store, reached with [`Config::s3`].
    pub artifact_store: Option<gantry_artifacts::StoreLocation>,
    /// How to reach an S3 artifact store (endpoint, region, credentials);
    /// `gantry server` reads the standard AWS variables.
    pub s3: gantry_artifacts::S3Settings,
    /// How long a remote agent's lease lasts without a heartbeat; an
    /// expired lease's job goes back to the queue (`--lease-timeout`).
    pub lease_timeout: std::time::Duration,
}

/// Where the store lives, as `--database URL` names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (any parameter libpq's URLs take, e.g. `?sslmode=require`). Several
    /// servers may share it.
    Postgres(String),
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&redact_password(url))
                .finish(),
        }
    }
}

/// The URL with its password (if any) replaced, for logs and errors.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last `@` before the path.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl Database {
    /// Reads `sqlite://PATH`, `sqlite:PATH`, a plain path, or a
    /// `postgres://` / `postgresql://` URL (checked here, connected to at
    /// start); any other scheme is refused.
    pub fn parse(url: &str) -> Result<Database, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("the database URL is empty; expected sqlite://PATH, a file path or postgres://USER@HOST/DB".into());
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            // sqlite:///abs/path keeps its leading slash; sqlite://rel/path is relative.
            if path.is_empty() {
                return Err(format!(
                    "{url}: the SQLite URL names no file; expected sqlite://PATH"
                ));
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" => {
                    gantry_store::PgStore::check_url(url).map_err(|e| {
                        format!("{}: not a usable PostgreSQL URL: {e}", redact_password(url))
                    })?;
                    Ok(Database::Postgres(url.to_owned()))
                }
                other => Err(format!(
                    "unknown database scheme `{other}://`; expected sqlite://PATH, a file path or postgres://USER@HOST/DB"
                )),
            };
        }
        Ok(Database::Sqlite(PathBuf::from(url)))
    }
}

impl Config {
    /// Defaults: 2 concurrent builds, region `us-east-1`, account
    /// `000000000000`, a generated admin key.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            max_concurrent_builds: 2,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            admin_key: None,
            events: crate::EventsConfig::default(),
            public_url: None,
            approval_timeout: std::time::Duration::from_secs(7 * 24 * 3600),
            custom_action_timeout: std::time::Duration::from_secs(24 * 3600),
            artifact_credentials_ttl: std::time::Duration::from_secs(3600),
            poll_interval: std::time::Duration::from_secs(60),
            chat_signing_secret: None,
            extra_ca_certs: None,
            database: None,
            local_agent: true,
            webhook_secret: None,
            leader_election: None,
            artifact_store: None,
            s3: gantry_artifacts::S3Settings::default(),
            lease_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("max_concurrent_builds", &self.max_concurrent_builds)
            .field("region", &self.region)
            .field("account_id", &self.account_id)
            .field("public_url", &self.public_url)
            .field("approval_timeout", &self.approval_timeout)
            .field("custom_action_timeout", &self.custom_action_timeout)
            .field("artifact_credentials_ttl", &self.artifact_credentials_ttl)
            .field("poll_interval", &self.poll_interval)
            .field("database", &self.database)
            .field("local_agent", &self.local_agent)
            .field("leader_election", &self.leader_election)
            .field("artifact_store", &self.artifact_store)
            .field("s3", &self.s3)
            .field(
                "admin_key",
                &self.admin_key.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .field("events", &self.events)
            .field("extra_ca_certs", &self.extra_ca_certs)
            .field("lease_timeout", &self.lease_timeout)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "chat_signing_secret",
                &self.chat_signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_and_plain_paths_name_a_file() {
        for (url, path) in [
            ("sqlite:///var/lib/gantry/g.db", "/var/lib/gantry/g.db"),
            ("sqlite://data/g.db", "data/g.db"),
            ("sqlite:g.db", "g.db"),
            ("/srv/g.db", "/srv/g.db"),
            ("g.db", "g.db"),
        ] {
            assert_eq!(
                Database::parse(url),
                Ok(Database::Sqlite(PathBuf::from(path))),
                "{url}"
            );
        }
    }

    #[test]
    fn postgres_urls_are_kept_and_their_password_never_shown() {
        for url in [
            "postgres://u@db/gantry",
            "postgresql://db:5433/gantry?sslmode=disable",
        ] {
            assert_eq!(
                Database::parse(url),
                Ok(Database::Postgres(url.into())),
                "{url}"
            );
        }
        let with_password = Database::parse("postgres://u:hunter2@db/gantry").expect("parse");
        let shown = format!("{with_password:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("u:<redacted>@db/gantry"), "{shown}");
        let config = Config {
            database: Some(with_password),
            ..Config::new("/tmp")
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        let bad = Database::parse("postgres://u:hunter2@db:notaport/gantry").unwrap_err();
        assert!(bad.contains("not a usable PostgreSQL URL"), "{bad}");
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_reason() {
        let other = Database::parse("mysql://db/gantry").unwrap_err();
        assert!(
            other.contains("unknown database scheme `mysql://`"),
            "{other}"
        );
        assert!(Database::parse("").is_err());
        assert!(Database::parse("sqlite://").is_err());
    }
}
