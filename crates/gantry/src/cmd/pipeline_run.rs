//! `gantry pipeline run FILE`: runs a whole pipeline here, with no server.
//!
//! The run goes through the server's own pipeline engine, providers and
//! build runner in this process (`gantry_server::local::LocalRun`) over a
//! temporary data directory (or `--data-dir`). CodeBuild projects come from
//! `--project NAME=FILE.json` or are made up: CODEPIPELINE source (the
//! primary input artifact's `buildspec.yml`) on the `--executor` image.
//! Approvals are answered by `--auto-approve`, at the terminal, or by one
//! line of piped stdin. See docs/pipeline-local.md.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use gantry_server::local::{LocalRun, Progress, Watch};
use gantry_spec::pipeline::{ActionOwner, PipelineDeclaration};
use serde_json::{Value, json};

use crate::output::Problem;

/// How often the run's state is read.
const POLL: Duration = Duration::from_millis(100);
/// The largest pipeline or project file read.
const MAX_FILE: u64 = 8 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct PipelineRunArgs {
    /// The pipeline: a gantry.yml or CodePipeline JSON.
    file: PathBuf,
    /// Approve every manual approval without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Print one JSON summary on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Where builds of made-up projects run: on this machine, in a sandbox,
    /// or in a Docker container (`--image`).
    #[arg(long, value_enum, default_value = "host")]
    executor: Executor,
    /// The image of made-up projects for `--executor docker`.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// A CodeBuild project for a `ProjectName`: a CreateProject input, as
    /// `aws codebuild create-project --cli-input-json` takes it.
    #[arg(long = "project", value_name = "NAME=FILE.json")]
    projects: Vec<String>,
    /// A pipeline variable for this execution.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Keep the run's database, artifacts and git mirrors here (default: a
    /// temporary directory removed at the end).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// The executors a made-up project can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Executor {
    /// Run commands on this machine.
    Host,
    /// Run commands in a sandbox.
    Sandbox,
    /// Run commands in a Docker container.
    Docker,
}

/// What the run does, checked before anything starts.
struct Plan {
    declaration: Value,
    pipeline: PipelineDeclaration,
    projects: Vec<Value>,
    variables: Vec<(String, String)>,
}

/// Usage or file problems: printed, exit 2.
struct Usage(Vec<String>);

impl From<String> for Usage {
    fn from(message: String) -> Usage {
        Usage(vec![message])
    }
}

pub fn run(args: PipelineRunArgs) -> ExitCode {
    let plan = match prepare(&args) {
        Ok(plan) => plan,
        Err(Usage(problems)) => {
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry pipeline run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(execute(&args, plan));
    // A prompt thread may still wait on stdin; it must not hold the exit.
    runtime.shutdown_background();
    code
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{}: the file is {} bytes; at most {MAX_FILE} are read",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn prepare(args: &PipelineRunArgs) -> Result<Plan, Usage> {
    let text = read_limited(&args.file)?;
    let pipeline = gantry_spec::pipeline::parse(&text).map_err(|diags| {
        let file = args.file.display().to_string();
        Usage(
            diags
                .into_iter()
                .map(|d| {
                    Problem {
                        file: file.clone(),
                        line: d.span.line,
                        column: d.span.col,
                        message: d.message,
                    }
                    .to_string()
                })
                .collect(),
        )
    })?;
    if args.executor == Executor::Docker && args.image.is_none() {
        return Err(Usage::from(
            "gantry pipeline run: --executor docker needs --image IMAGE".to_owned(),
        ));
    }
    let names = project_names(&pipeline);
    let mut given = std::collections::BTreeMap::new();
    for spec in &args.projects {
        let (name, file) = spec.split_once('=').ok_or_else(|| {
            format!("gantry pipeline run: --project {spec}: expected NAME=FILE.json")
        })?;
        if !names.contains(name) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(Usage::from(format!(
                "gantry pipeline run: --project {name}: no CodeBuild action of the pipeline names project `{name}`; it names: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        given.insert(name.to_owned(), project_file(name, Path::new(file))?);
    }
    let image = match args.executor {
        Executor::Host => "gantry:host".to_owned(),
        Executor::Sandbox => "gantry:sandbox".to_owned(),
        Executor::Docker => args.image.clone().unwrap_or_default(),
    };
    let projects = names
        .iter()
        .map(|name| {
            given
                .remove(name)
                .unwrap_or_else(|| default_project(name, &image))
        })
        .collect();
    let mut variables = Vec::new();
    for spec in &args.variables {
        let (name, value) = spec.split_once('=').ok_or_else(|| {
            format!("gantry pipeline run: --variable {spec}: expected NAME=VALUE")
        })?;
        variables.push((name.to_owned(), value.to_owned()));
    }
    let declaration = serde_json::from_str(&gantry_spec::pipeline::to_json(&pipeline))
        .map_err(|e| format!("gantry pipeline run: printing the declaration: {e}"))?;
    Ok(Plan {
        declaration,
        pipeline,
        projects,
        variables,
    })
}

/// The projects the pipeline's CodeBuild actions name, each once.
fn project_names(pipeline: &PipelineDeclaration) -> BTreeSet<String> {
    pipeline
        .stages
        .iter()
        .flat_map(|s| &s.actions)
        .filter(|a| {
            a.action_type_id.owner.value == ActionOwner::Aws
                && a.action_type_id.provider.value == "CodeBuild"
        })
        .filter_map(|a| a.configuration.as_ref()?.get("ProjectName"))
        .map(|n| n.value.clone())
        .collect()
}

/// A `--project` file: a JSON object (CreateProject's input) whose `name`,
/// when given, is the one on the command line.
fn project_file(name: &str, path: &Path) -> Result<Value, Usage> {
    let text = read_limited(path)?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not valid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(Usage::from(format!(
            "{}: expected a JSON object (CreateProject's input)",
            path.display()
        )));
    };
    match object.get("name") {
        None => {
            object.insert("name".into(), json!(name));
        }
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(Usage::from(format!(
                "{}: `name` is {other}, but --project gives it for `{name}`",
                path.display()
            )));
        }
    }
    Ok(value)
}

/// A project for a `ProjectName` no `--project` gives: the pipeline's
/// primary input artifact is the source and its `buildspec.yml` the
/// buildspec, as CodeBuild does for CODEPIPELINE projects.
fn default_project(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "source": { "type": "CODEPIPELINE" },
        "artifacts": { "type": "CODEPIPELINE" },
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": image,
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        "serviceRole": "arn:aws:iam::000000000000:role/gantry-local",
    })
}

/// The exit code of an ended execution.
fn exit_for(status: &str) -> ExitCode {
    if status == "Succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn execute(args: &PipelineRunArgs, plan: Plan) -> ExitCode {
    let (data_dir, _temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => match tempfile::Builder::new().prefix("gantry-run-").tempdir() {
            Ok(t) => (t.path().to_owned(), Some(t)),
            Err(e) => {
                eprintln!("gantry pipeline run: cannot create a temporary data directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut config = gantry_server::Config::new(&data_dir);
    // Parallel actions run in parallel, as on a server with room for them.
    config.max_concurrent_builds = 4;
    let run = match LocalRun::open(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gantry pipeline run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = drive(args, &plan, &run).await;
    run.shutdown().await;
    code
}

async fn drive(args: &PipelineRunArgs, plan: &Plan, run: &LocalRun) -> ExitCode {
    for project in &plan.projects {
        if let Err(e) = run.put_project(project).await {
            let name = project["name"].as_str().unwrap_or_default();
            eprintln!("gantry pipeline run: project {name}: {e}");
            return ExitCode::from(2);
        }
    }
    let name = plan.pipeline.name.value.clone();
    match run.stop_leftovers(&name).await {
        Ok(0) => {}
        Ok(n) => eprintln!("Stopped {n} execution(s) of {name} left running by an earlier run"),
        Err(e) => {
            eprintln!("gantry pipeline run: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = run.put_pipeline(&plan.declaration).await {
        eprintln!("gantry pipeline run: {}: {e}", args.file.display());
        return ExitCode::from(2);
    }
    let mut watch = match run.start(&name, &plan.variables).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("gantry pipeline run: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "Running pipeline {name} (execution {})",
        watch.execution_id()
    );
    let interrupted = tokio::select! {
        result = follow(args, plan, run, &mut watch) => match result {
            Ok(()) => false,
            Err(e) => {
                eprintln!("gantry pipeline run: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        eprintln!("Interrupted: stopping the execution and its builds");
        if let Err(e) = run.stop(&watch, "Interrupted at the terminal").await {
            eprintln!("gantry pipeline run: stopping: {e}");
        }
        // Report what the stop ended; a second Ctrl-C leaves at once.
        let drained = tokio::select! {
            r = follow_quietly(run, &mut watch) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        if let Err(e) = drained {
            eprintln!("gantry pipeline run: {e}");
        }
        // Exit only once the stopped builds have recorded their end; a
        // second Ctrl-C does not wait.
        tokio::select! {
            settled = run.settle_builds(&watch) => match settled {
                Ok(builds) => {
                    for (stage, action, id, status) in builds {
                        eprintln!("    {stage}/{action}: build {id} {status}");
                    }
                }
                Err(e) => eprintln!("gantry pipeline run: {e}"),
            },
            _ = tokio::signal::ctrl_c() => {}
        }
        return ExitCode::from(130);
    }
    match run.summary(&watch).await {
        Ok(summary) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                print_summary(&summary);
            }
            exit_for(summary["status"].as_str().unwrap_or_default())
        }
        Err(e) => {
            eprintln!("gantry pipeline run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints progress and answers approvals until the execution ends.
async fn follow(
    args: &PipelineRunArgs,
    plan: &Plan,
    run: &LocalRun,
    watch: &mut Watch,
) -> Result<(), gantry_server::local::LocalError> {
    loop {
        let (events, ended) = run.poll(watch).await?;
        for event in events {
            if let Progress::Approval {
                stage,
                action,
                token,
            } = &event
            {
                print_progress(&event);
                let (approve, summary) = answer(args, plan, stage, action).await;
                eprintln!(
                    "    {stage}/{action}: {}",
                    if approve { "approved" } else { "rejected" }
                );
                run.answer_approval(watch, stage, action, token, approve, &summary)
                    .await?;
            } else {
                print_progress(&event);
            }
        }
        if let Some(status) = ended {
            eprintln!("Execution {} {status}", watch.execution_id());
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Follows a stopping execution to its end, printing what happens.
async fn follow_quietly(
    run: &LocalRun,
    watch: &mut Watch,
) -> Result<(), gantry_server::local::LocalError> {
    loop {
        let (events, ended) = run.poll(watch).await?;
        for event in events
            .iter()
            .filter(|e| !matches!(e, Progress::Approval { .. }))
        {
            print_progress(event);
        }
        if let Some(status) = ended {
            eprintln!("Execution {} {status}", watch.execution_id());
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_progress(event: &Progress) {
    match event {
        Progress::Stage { stage, status } => {
            eprintln!("==> stage {stage} {}", describe(status));
        }
        Progress::Action {
            stage,
            action,
            status,
            summary,
            error,
        } => {
            let mut line = format!("--> {stage}/{action} {}", describe(status));
            if let Some(e) = error {
                line.push_str(&format!(": {e}"));
            } else if let Some(s) = summary.as_deref().filter(|s| !s.is_empty()) {
                line.push_str(&format!(" ({s})"));
            }
            eprintln!("{line}");
        }
        Progress::Log { action, line, .. } => eprintln!("[{action}] {line}"),
        Progress::Approval { stage, action, .. } => {
            eprintln!("--> {stage}/{action} waiting for approval");
        }
    }
}

/// An API status as a word in a sentence.
fn describe(status: &str) -> &str {
    match status {
        "InProgress" => "started",
        "Succeeded" => "succeeded",
        "Failed" => "FAILED",
        "Stopped" => "stopped",
        "Stopping" => "stopping",
        "Abandoned" => "abandoned",
        "Cancelled" => "cancelled",
        other => other,
    }
}

/// The approval's answer: `--auto-approve`; else a prompt at a terminal;
/// else one line of stdin. `y` or `yes` (any case) approves; anything
/// else, end of input included, rejects.
async fn answer(args: &PipelineRunArgs, plan: &Plan, stage: &str, action: &str) -> (bool, String) {
    if args.auto_approve {
        return (
            true,
            "Approved by gantry pipeline run --auto-approve".into(),
        );
    }
    let custom = plan
        .pipeline
        .stages
        .iter()
        .find(|s| s.name.value == stage)
        .and_then(|s| s.actions.iter().find(|a| a.name.value == action))
        .and_then(|a| a.configuration.as_ref()?.get("CustomData"))
        .map(|v| v.value.clone());
    if let Some(text) = &custom {
        eprintln!("    {text}");
    }
    let terminal = std::io::stdin().is_terminal();
    if terminal {
        eprint!("Approve {stage}/{action}? [y/N] ");
        let _ = std::io::stderr().flush();
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread: a blocked stdin read must not keep the runtime alive.
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    let line = rx.await.ok().and_then(Result::ok).unwrap_or_default();
    let approve = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    let how = if terminal {
        "at the terminal"
    } else {
        "on stdin"
    };
    let summary = if approve {
        format!("Approved {how} (gantry pipeline run)")
    } else {
        format!("Rejected {how} (gantry pipeline run)")
    };
    (approve, summary)
}

fn print_summary(summary: &Value) {
    println!(
        "Pipeline {} execution {}: {}",
        summary["pipeline"].as_str().unwrap_or_default(),
        summary["executionId"].as_str().unwrap_or_default(),
        summary["status"].as_str().unwrap_or_default()
    );
    for stage in summary["stages"].as_array().into_iter().flatten() {
        println!(
            "  {} {}",
            stage["name"].as_str().unwrap_or_default(),
            stage["status"].as_str().unwrap_or_default()
        );
        for action in stage["actions"].as_array().into_iter().flatten() {
            let mut line = format!(
                "    {} {}",
                action["name"].as_str().unwrap_or_default(),
                action["status"].as_str().unwrap_or_default()
            );
            if let Some(e) = action["error"].as_str() {
                line.push_str(&format!(": {e}"));
            }
            println!("{line}");
        }
    }
}
