//! `gantry states ...`: Amazon States Language state machines, locally.
//!
//! `gantry states run` executes a definition in memory. Task states are answered from a
//! mock configuration in Step Functions Local's `MockConfigFile` format; Wait states and
//! retry delays run on a virtual clock, so nothing sleeps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use gantry_states::mock::{MockConfig, MockedTasks, TestCase, run_mocked};
use gantry_states::{ExecutionInfo, FixedClock, Outcome, SeededRandom, parse_definition};
use serde_json::{Value, json};

/// The largest definition, input or mock configuration read (AWS limits definitions to
/// 1 MiB and inputs to 256 KiB; this only stops a runaway file before it is read).
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Where the virtual clock starts (`2024-01-01T00:00:00Z`): runs are reproducible.
const START_MILLIS: i64 = 1_704_067_200_000;

/// The seed for `States.UUID`, `States.MathRandom` and retry jitter: runs are reproducible.
const SEED: u64 = 42;

#[derive(Debug, Args)]
pub struct StatesArgs {
    #[command(subcommand)]
    command: StatesCommand,
}

#[derive(Debug, Subcommand)]
enum StatesCommand {
    /// Run a state machine definition locally, with mocked task results.
    ///
    /// Prints the output and exits 0 when the execution SUCCEEDED; prints the error and
    /// cause on stderr and exits 1 when it FAILED, TIMED_OUT or ABORTED; exits 2 when the
    /// definition, the mock configuration or the options are invalid.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The definition (Amazon States Language JSON).
    definition: PathBuf,
    /// The execution input: JSON text, or @FILE. Default: {}.
    #[arg(long, value_name = "JSON|@FILE")]
    input: Option<String>,
    /// A mock configuration (Step Functions Local's MockConfigFile format) answering
    /// the Task states.
    #[arg(long, value_name = "FILE")]
    mock_config: Option<PathBuf>,
    /// The state machine in the mock configuration; may be left out when it has one.
    #[arg(long, value_name = "NAME", requires = "mock_config")]
    state_machine: Option<String>,
    /// The test case of that state machine; may be left out when it has one.
    #[arg(long, value_name = "NAME", requires = "mock_config")]
    test_case: Option<String>,
    /// Print {"status", "output"} or {"status", "error", "cause"} as one JSON line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatesArgs) -> ExitCode {
    match args.command {
        StatesCommand::Run(args) => run_definition(args),
    }
}

fn run_definition(args: RunArgs) -> ExitCode {
    let prepared = match prepare(&args) {
        Ok(prepared) => prepared,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(2);
        }
    };
    let Prepared {
        machine,
        input,
        case,
    } = prepared;
    let info = execution_info(&args.definition, case.as_ref());
    let mut tasks = MockedTasks::new(case);
    let run = run_mocked(
        Arc::new(machine),
        input,
        info,
        &FixedClock(START_MILLIS),
        &mut SeededRandom(SEED),
        &mut tasks,
    );
    let status = run.outcome.status();
    match run.outcome {
        Outcome::Succeeded { output } => {
            if args.json {
                println!("{}", json!({"status": status, "output": output}));
            } else {
                println!("{}", pretty(&output));
            }
            ExitCode::SUCCESS
        }
        Outcome::Failed(failure) | Outcome::TimedOut(failure) | Outcome::Aborted(failure) => {
            if args.json {
                println!(
                    "{}",
                    json!({"status": status, "error": failure.error, "cause": failure.cause})
                );
            } else {
                eprintln!("execution {status}");
                eprintln!("error: {}", failure.error);
                eprintln!("cause: {}", failure.cause);
            }
            ExitCode::from(1)
        }
    }
}

/// Everything checked before the execution starts.
struct Prepared {
    machine: gantry_states::StateMachine,
    input: Value,
    case: Option<TestCase>,
}

/// Reads and checks the definition, the input and the mock configuration, collecting
/// every problem (each prefixed by its file).
fn prepare(args: &RunArgs) -> Result<Prepared, Vec<String>> {
    let mut problems = Vec::new();
    let definition_name = args.definition.display().to_string();
    let machine = match read_json(&args.definition) {
        Err(problem) => {
            problems.push(problem);
            None
        }
        Ok(definition) => match parse_definition(&definition) {
            Ok(machine) => Some(machine),
            Err(errors) => {
                problems.extend(errors.0.iter().map(|e| format!("{definition_name}: {e}")));
                None
            }
        },
    };
    let input = match &args.input {
        None => Some(json!({})),
        Some(text) => match text.strip_prefix('@') {
            Some(path) => read_json(Path::new(path))
                .map_err(|problem| problems.push(format!("--input @{problem}")))
                .ok(),
            None => serde_json::from_str(text)
                .map_err(|e| problems.push(format!("--input: not valid JSON: {e}")))
                .ok(),
        },
    };
    let case = match &args.mock_config {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let config = match read_json(path) {
                Err(problem) => {
                    problems.push(problem);
                    None
                }
                Ok(value) => MockConfig::parse(&value)
                    .map_err(|errors| {
                        problems.extend(errors.0.iter().map(|e| format!("{name}: {e}")));
                    })
                    .ok(),
            };
            let case = config.and_then(|config| {
                config
                    .test_case(args.state_machine.as_deref(), args.test_case.as_deref())
                    .map_err(|e| problems.push(format!("{name}: {e}")))
                    .ok()
            });
            if let (Some(case), Some(machine)) = (&case, &machine)
                && let Err(errors) = case.check_against(machine)
            {
                problems.extend(errors.0.iter().map(|e| format!("{name}: {e}")));
            }
            case
        }
    };
    match (machine, input) {
        (Some(machine), Some(input)) if problems.is_empty() => Ok(Prepared {
            machine,
            input,
            case,
        }),
        _ => Err(problems),
    }
}

/// Reads a JSON file; a problem reads `FILE: ...` or `FILE:LINE:COL: ...`.
fn read_json(path: &Path) -> Result<Value, String> {
    let name = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{name}: cannot read: {e}"))?
        .len();
    if size > MAX_FILE {
        return Err(format!(
            "{name}: the file is {size} bytes; the limit is {MAX_FILE}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{name}:{}:{}: not valid JSON: {e}", e.line(), e.column()))
}

/// Names for the context object: the state machine is the mock configuration's name for
/// it (or the definition's file name), the execution the test case's name.
fn execution_info(definition: &Path, case: Option<&TestCase>) -> ExecutionInfo {
    let machine = match case {
        Some(case) => case.state_machine.clone(),
        None => {
            let file = definition
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = file.strip_suffix(".json").unwrap_or(&file);
            let stem = stem.strip_suffix(".asl").unwrap_or(stem);
            if stem.is_empty() {
                "local".to_string()
            } else {
                stem.to_string()
            }
        }
    };
    let execution = case.map_or("local-run", |case| case.name.as_str());
    ExecutionInfo {
        execution_id: format!("arn:aws:states:local:000000000000:execution:{machine}:{execution}"),
        execution_name: execution.to_string(),
        state_machine_id: format!("arn:aws:states:local:000000000000:stateMachine:{machine}"),
        state_machine_name: machine,
        role_arn: None,
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
