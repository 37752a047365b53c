//! `gantry bench`: benchmarks that print figures and ratios against a
//! baseline measured in the same run.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure (`build`).
    #[arg(default_value = "build")]
    what: String,
}

pub fn run(args: BenchArgs) -> ExitCode {
    eprintln!("gantry bench {}: not written yet", args.what);
    ExitCode::from(2)
}
