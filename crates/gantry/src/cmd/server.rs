//! `gantry server`: the control plane.
//!
//! Opens (or creates) the data directory, makes the first admin access key
//! on a new database, and serves the AWS-compatible API until SIGTERM or
//! SIGINT, when it stops running builds (recorded STOPPED) and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the database, its key file, build workspaces and artifacts live.
    #[arg(long, default_value = "gantry-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// How many builds the embedded agent runs at once; more wait QUEUED.
    #[arg(long, default_value = "2", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    max_builds: u64,
    /// The URL clients reach the server at (e.g. https://ci.example.com),
    /// used in the webhook URLs PutWebhook hands out; by default
    /// `http://` and the Host header of the request.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Seconds between polls of Git sources with PollForSourceChanges: true.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    poll_interval: u64,
    /// The database: `sqlite://PATH` or a file path (default
    /// `<data-dir>/gantry.db`), or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`,
    /// which several servers may share (docs/postgres.md).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Run no builds in this process: builds wait QUEUED for a remote
    /// agent (`gantry agent`).
    #[arg(long)]
    no_local_agent: bool,
    /// Where pipeline artifacts are kept: a directory, or
    /// `s3://BUCKET/PREFIX` in AWS S3 or any S3-compatible store (endpoint,
    /// region and credentials from AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
    /// Default `<data-dir>/artifact-store`.
    #[arg(long, value_name = "URL", env = "GANTRY_ARTIFACT_STORE")]
    artifact_store: Option<String>,
    /// How long a remote agent's lease lasts without a heartbeat; its job
    /// then goes back to the queue (or fails after 3 attempts).
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_timeout: u64,
}

pub fn run(args: ServerArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

fn admin_key_from_env() -> Result<Option<(String, String)>, String> {
    let id = std::env::var("GANTRY_ADMIN_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("GANTRY_ADMIN_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some((id, secret))),
        (None, None) => Ok(None),
        _ => Err(
            "set both GANTRY_ADMIN_ACCESS_KEY_ID and GANTRY_ADMIN_SECRET_ACCESS_KEY, or neither"
                .into(),
        ),
    }
}

async fn serve(args: ServerArgs) -> ExitCode {
    let mut config = gantry_server::Config::new(&args.data_dir);
    config.max_concurrent_builds = args.max_builds as usize;
    config.public_url = args.public_url.clone();
    config.poll_interval = std::time::Duration::from_secs(args.poll_interval);
    config.local_agent = !args.no_local_agent;
    config.lease_timeout = std::time::Duration::from_secs(args.lease_timeout);
    if let Some(url) = &args.database {
        match gantry_server::Database::parse(url) {
            Ok(db) => config.database = Some(db),
            Err(e) => {
                eprintln!("gantry server: --database: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(url) = &args.artifact_store {
        match gantry_server::StoreLocation::parse(url) {
            Ok(location) => config.artifact_store = Some(location),
            Err(e) => {
                eprintln!("gantry server: --artifact-store: {e}");
                return ExitCode::from(2);
            }
        }
    }
    config.s3 = gantry_server::S3Settings::from_env();
    config.chat_signing_secret = std::env::var("GANTRY_CHAT_SIGNING_SECRET")
        .ok()
        .filter(|v| !v.is_empty());
    config.webhook_secret = std::env::var("GANTRY_WEBHOOK_SECRET")
        .ok()
        .filter(|v| !v.is_empty());
    config.extra_ca_certs = std::env::var_os("GANTRY_EXTRA_CA_CERTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    config.admin_key = match admin_key_from_env() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("gantry server: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match gantry_server::AnyServer::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gantry server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gantry server: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let url = format!("http://{addr}");
    println!(
        "Gantry server listening on {url} (data in {})",
        args.data_dir.display()
    );
    if args.no_local_agent {
        println!("  no local agent: builds wait QUEUED for a remote agent");
    }
    for id in server.recovered_builds() {
        println!("  build {id} was running when the server stopped: marked FAILED");
    }
    match server.admin_key() {
        Some(key) if key.generated => {
            println!();
            println!("Created the first admin access key (shown only this once; keep it):");
            println!("  export AWS_ACCESS_KEY_ID={}", key.access_key_id);
            println!("  export AWS_SECRET_ACCESS_KEY={}", key.secret);
        }
        Some(key) => println!(
            "Created the first admin access key {} from GANTRY_ADMIN_ACCESS_KEY_ID.",
            key.access_key_id
        ),
        None => {}
    }
    println!();
    println!("Point the AWS CLI or boto3 at it:");
    println!("  aws codebuild list-projects --endpoint-url {url} --region us-east-1");
    println!("  boto3.client(\"codebuild\", endpoint_url=\"{url}\", region_name=\"us-east-1\")");
    match server.serve(listener, shutdown_signal()).await {
        Ok(()) => {
            println!("gantry server: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gantry server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("gantry server: shutting down (running builds are stopped)");
}
