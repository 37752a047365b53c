//! `gantry validate FILE...`: checks files without running anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The files to check (buildspec files).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the problems as a JSON array of {file, line, column, message}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ValidateArgs) -> ExitCode {
    let mut problems = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        match crate::output::load_buildspec(file) {
            Ok(_) => {
                if !args.json {
                    println!("{name}: ok");
                }
            }
            Err(found) => problems.extend(found),
        }
    }
    if args.json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| serde_json::json!({"file": p.file, "line": p.line, "column": p.column, "message": p.message}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for problem in &problems {
            println!("{problem}");
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
