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
            poll_interval: std::time::Duration::from_secs(60),
            chat_signing_secret: None,
            extra_ca_certs: None,
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
            .field("poll_interval", &self.poll_interval)
            .field(
                "admin_key",
                &self.admin_key.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .field("events", &self.events)
            .field("extra_ca_certs", &self.extra_ca_certs)
            .field(
                "chat_signing_secret",
                &self.chat_signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
