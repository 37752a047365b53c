//! `gantry agent`: a remote build agent (crate gantry-agent). It connects
//! out to the server, takes jobs whose labels it has, and drains on
//! SIGTERM or Ctrl-C: no new job, the running ones finish, exit 0.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's URL, e.g. http://ci.example.com:8080.
    #[arg(long, env = "GANTRY_SERVER", value_name = "URL")]
    server: String,
    /// The agent token (`gantry agent-token create`).
    #[arg(long, env = "GANTRY_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Labels jobs may ask for, comma-separated (e.g. linux,docker).
    #[arg(long, default_value = "")]
    labels: String,
    /// How many jobs run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// How builds run: host, sandbox or docker.
    #[arg(long, default_value = "host", value_parser = ["host", "sandbox", "docker"])]
    executor: String,
    /// Where jobs' sources and artifacts are unpacked.
    #[arg(long, value_name = "DIR", default_value = "gantry-agent-work")]
    work_dir: PathBuf,
}

pub fn run(args: AgentArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // A small runtime: an idle agent is one long poll.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gantry agent: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = gantry_agent::AgentConfig::new(&args.server, &args.token, args.work_dir);
    config.labels = gantry_agent_labels(&args.labels);
    config.concurrency = args.concurrency;
    config.executor = args.executor;
    // This process is only the agent from here on: the code start-up ran
    // (argument parsing for every subcommand, set-up) need not stay mapped.
    config.release_code_after_start = true;
    let drain = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("gantry agent: draining: no new jobs; finishing the running ones");
    };
    match runtime.block_on(gantry_agent::run(config, drain)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gantry agent: {e}");
            ExitCode::from(1)
        }
    }
}

fn gantry_agent_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    labels.sort();
    labels.dedup();
    labels
}
