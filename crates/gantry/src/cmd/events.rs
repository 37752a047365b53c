//! `gantry events test-pattern`: EventBridge's TestEventPattern, locally.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use gantry_events::Pattern;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print `true` when the event matches the pattern, `false` when not.
    TestPattern(TestPatternArgs),
}

#[derive(Debug, Args)]
struct TestPatternArgs {
    /// The event pattern: JSON text, or @FILE.
    #[arg(long, required_unless_present = "cases", conflicts_with = "cases")]
    pattern: Option<String>,
    /// The event: JSON text, or @FILE.
    #[arg(long, required_unless_present = "cases", conflicts_with = "cases")]
    event: Option<String>,
    /// A file of JSON lines `{"pattern": ..., "event": ...}`: one answer per
    /// line (`true`, `false` or `error: REASON`).
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
}

pub fn run(args: EventsArgs) -> ExitCode {
    match args.command {
        EventsCommand::TestPattern(args) => test_pattern(args),
    }
}

/// Reads `JSON` or `@FILE`.
fn argument(what: &str, text: &str) -> Result<String, String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--{what} @{path}: {e}")),
        None => Ok(text.to_string()),
    }
}

fn test_pattern(args: TestPatternArgs) -> ExitCode {
    if let Some(cases) = &args.cases {
        return test_cases(cases);
    }
    let (Some(pattern), Some(event)) = (&args.pattern, &args.event) else {
        eprintln!("gantry events test-pattern: give --pattern and --event, or --cases");
        return ExitCode::from(2);
    };
    let checked = (|| {
        let pattern = argument("pattern", pattern)?;
        let event = argument("event", event)?;
        let pattern = Pattern::parse(&pattern).map_err(|e| e.to_string())?;
        let event: Value =
            serde_json::from_str(&event).map_err(|e| format!("--event is not valid JSON: {e}"))?;
        Ok::<bool, String>(pattern.matches(&event))
    })();
    match checked {
        Ok(matched) => {
            println!("{matched}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{reason}");
            ExitCode::from(2)
        }
    }
}

fn test_cases(path: &PathBuf) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("--cases {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("--cases {}:{}: {e}", path.display(), number + 1);
                return ExitCode::from(2);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let answer = (|| {
            let case: Value = serde_json::from_str(&line)
                .map_err(|e| format!("line {}: not JSON: {e}", number + 1))?;
            let pattern = case
                .get("pattern")
                .ok_or_else(|| format!("line {}: no `pattern`", number + 1))?;
            let event = case
                .get("event")
                .ok_or_else(|| format!("line {}: no `event`", number + 1))?;
            // A pattern given as a string holds the JSON text, as the AWS API takes it.
            let pattern = match pattern {
                Value::String(text) => Pattern::parse(text),
                other => Pattern::from_value(other),
            }
            .map_err(|e| e.to_string())?;
            let event = match event {
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|e| format!("`event` is not valid JSON: {e}"))?,
                other => other.clone(),
            };
            Ok::<bool, String>(pattern.matches(&event))
        })();
        match answer {
            Ok(matched) => println!("{matched}"),
            Err(reason) => println!("error: {reason}"),
        }
    }
    ExitCode::SUCCESS
}
