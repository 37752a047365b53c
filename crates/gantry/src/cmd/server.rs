//! `gantry server`: the control plane.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the database and artifacts live.
    #[arg(long, default_value = "gantry-data")]
    data_dir: std::path::PathBuf,
}

pub fn run(args: ServerArgs) -> ExitCode {
    eprintln!(
        "gantry server --data-dir {}: not available yet",
        args.data_dir.display()
    );
    ExitCode::from(2)
}
