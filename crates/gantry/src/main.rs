//! The `gantry` command line: local commands that need no server
//! (`build`, `validate`, `events test-pattern`, `states run`, `bench`) and
//! the client commands that talk to one (`pipeline`, `approve`, `reject`,
//! `logs`, `run show`; see docs/cli-client.md).

mod cmd;
mod output;

/// mimalloc: the interpreter and the server allocate many small JSON maps
/// per step, and glibc's allocator spent a fifth of an in-memory workflow's
/// time in malloc and free: 466k transitions/s with it, 712k with mimalloc
/// (docs/benchmarks.md). Built without transparent huge pages, so the idle
/// server stays near 20 MB (with them: 40 MB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Gantry: build, test and deliver — CodeBuild, CodeDeploy, CodePipeline,
/// Step Functions and EventBridge formats, in one binary.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a buildspec.yml against a source directory, as CodeBuild would.
    Build(cmd::build::BuildArgs),
    /// Check buildspec files and print every problem as FILE:LINE:COL: message.
    Validate(cmd::validate::ValidateArgs),
    /// Measure Gantry against baselines measured in the same run.
    Bench(cmd::bench::BenchArgs),
    /// EventBridge event patterns: test them against events.
    Events(cmd::events::EventsArgs),
    /// Amazon States Language state machines: run them locally.
    States(cmd::states::StatesArgs),
    /// Start the control plane (API, web UI, scheduler, local agent).
    Server(cmd::server::ServerArgs),
    /// Pipelines: run one here with no server, or list, show, start and stop
    /// them on a server.
    Pipeline(cmd::pipeline::PipelineArgs),
    /// Approve the manual approval waiting in an execution.
    Approve(cmd::approve::ApprovalArgs),
    /// Reject the manual approval waiting in an execution.
    Reject(cmd::approve::ApprovalArgs),
    /// Print a build's log; -f follows it live until the build ends.
    Logs(cmd::logs::LogsArgs),
    /// Pipeline executions (runs) on a server.
    Run(cmd::run_show::RunArgs),
    /// Run a remote build agent that takes jobs from a server.
    Agent(cmd::agent::AgentArgs),
    /// Agent tokens on a server: create, list, revoke.
    AgentToken(cmd::agent_token::AgentTokenArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell (bash, zsh, fish, elvish, powershell).
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // --help and --version are not errors; bad usage exits 2.
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::States(args) => cmd::states::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Pipeline(args) => cmd::pipeline::run(args),
        Command::Approve(args) => cmd::approve::run(args, cmd::approve::Answer::Approve),
        Command::Reject(args) => cmd::approve::run(args, cmd::approve::Answer::Reject),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Run(args) => cmd::run_show::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::AgentToken(args) => cmd::agent_token::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "gantry", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
