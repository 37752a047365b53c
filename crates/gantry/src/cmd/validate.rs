//! `gantry validate FILE...`: checks files without running anything —
//! buildspecs, pipeline declarations, state machines (Amazon States
//! Language) and event patterns.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::output::Problem;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// What the files are; by default each file's name and content decide.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Print the problems as a JSON array of {file, line, column, message}.
    #[arg(long)]
    json: bool,
}

/// The kinds of file `validate` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A CodeBuild buildspec.yml.
    Buildspec,
    /// A pipeline: CodePipeline's JSON declaration or gantry.yml.
    Pipeline,
    /// An Amazon States Language definition.
    StateMachine,
    /// An EventBridge event pattern.
    EventPattern,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Buildspec => "buildspec",
            Kind::Pipeline => "pipeline",
            Kind::StateMachine => "state machine",
            Kind::EventPattern => "event pattern",
        }
    }
}

/// Decides a file's kind from its name, then its content.
fn detect(path: &Path, text: &str) -> Kind {
    match gantry_spec::detect(path, text) {
        gantry_spec::FileKind::Buildspec => return Kind::Buildspec,
        gantry_spec::FileKind::Pipeline => return Kind::Pipeline,
        gantry_spec::FileKind::Unknown => {}
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".asl.json") {
        return Kind::StateMachine;
    }
    if name.contains("pattern") {
        return Kind::EventPattern;
    }
    if name.ends_with(".json")
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
    {
        if map.contains_key("States") || map.contains_key("StartAt") {
            return Kind::StateMachine;
        }
        return Kind::EventPattern;
    }
    Kind::Buildspec
}

pub fn run(args: ValidateArgs) -> ExitCode {
    let mut problems = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let found = match std::fs::read_to_string(file) {
            Err(e) => vec![Problem {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }],
            Ok(text) => {
                let kind = args.kind.unwrap_or_else(|| detect(file, &text));
                let found = check(kind, file, &text);
                if found.is_empty() && !args.json {
                    println!("{name}: ok ({})", kind.name());
                }
                found
            }
        };
        problems.extend(found);
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

fn check(kind: Kind, path: &Path, text: &str) -> Vec<Problem> {
    let file = path.display().to_string();
    let whole = |message: String| Problem {
        file: file.clone(),
        line: 0,
        column: 0,
        message,
    };
    match kind {
        Kind::Buildspec => crate::output::load_buildspec(path)
            .err()
            .unwrap_or_default(),
        Kind::Pipeline => match gantry_spec::pipeline::parse(text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .into_iter()
                .map(|d| Problem {
                    file: file.clone(),
                    line: d.span.line,
                    column: d.span.col,
                    message: d.message,
                })
                .collect(),
        },
        Kind::StateMachine => match serde_json::from_str::<serde_json::Value>(text) {
            Err(e) => vec![Problem {
                file: file.clone(),
                line: e.line() as u32,
                column: e.column() as u32,
                message: format!("not valid JSON: {e}"),
            }],
            Ok(json) => match gantry_states::parse_definition(&json) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.0.iter().map(|e| whole(e.to_string())).collect(),
            },
        },
        Kind::EventPattern => match gantry_events::Pattern::parse(text) {
            Ok(_) => Vec::new(),
            Err(error) => vec![whole(error.to_string())],
        },
    }
}
