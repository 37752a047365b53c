//! `gantry states ...`: Amazon States Language state machines, locally.

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct StatesArgs {
    #[command(subcommand)]
    command: StatesCommand,
}

#[derive(Debug, Subcommand)]
enum StatesCommand {
    /// Run a state machine definition locally, with mocked task results.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The definition (Amazon States Language JSON).
    definition: std::path::PathBuf,
}

pub fn run(args: StatesArgs) -> ExitCode {
    match args.command {
        StatesCommand::Run(run) => {
            eprintln!(
                "gantry states run {}: not available yet",
                run.definition.display()
            );
            ExitCode::from(2)
        }
    }
}
