//! `gantry pipeline list|show|start|stop`: pipelines on a server, through
//! the REST API; and `gantry pipeline run`, a whole pipeline run here with
//! no server (`pipeline_run`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::{Client, Failure, ServerArgs, block_on, print_json, segment, status_text};

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum PipelineCommand {
    /// Run a whole pipeline (gantry.yml or CodePipeline JSON) here, with no
    /// server; approvals at the terminal or with --auto-approve.
    Run(super::pipeline_run::PipelineRunArgs),
    /// List the server's pipelines.
    List(ListArgs),
    /// Show a pipeline's stages and the state of each action.
    Show(ShowArgs),
    /// Start an execution of a pipeline; prints its id.
    Start(StartArgs),
    /// Stop an execution.
    Stop(StopArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The pipeline's name.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The pipeline's name.
    name: String,
    /// A commit for a source action: ACTION=COMMIT, or COMMIT when the
    /// pipeline has one source action. Repeatable.
    #[arg(long = "revision", value_name = "[ACTION=]COMMIT")]
    revisions: Vec<String>,
    /// A pipeline variable: NAME=VALUE. Repeatable.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// The pipeline's name.
    name: String,
    /// The execution's id.
    execution_id: String,
    /// Abandon running actions instead of letting them finish.
    #[arg(long)]
    abandon: bool,
    /// Why it was stopped (shown as the execution's status summary).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: PipelineArgs) -> ExitCode {
    match args.command {
        PipelineCommand::Run(a) => super::pipeline_run::run(a),
        PipelineCommand::List(a) => block_on("pipeline list", list(a)),
        PipelineCommand::Show(a) => block_on("pipeline show", show(a)),
        PipelineCommand::Start(a) => block_on("pipeline start", start(a)),
        PipelineCommand::Stop(a) => block_on("pipeline stop", stop(a)),
    }
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let mut pipelines = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(token) => format!("/pipelines?nextToken={}", segment(token)),
            None => "/pipelines".to_owned(),
        };
        let page = client.get(&path).await?;
        pipelines.extend(page["pipelines"].as_array().cloned().unwrap_or_default());
        match page["nextToken"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    if args.server.json {
        print_json(&json!({ "pipelines": pipelines }));
        return Ok(());
    }
    if pipelines.is_empty() {
        println!("no pipelines");
    }
    for p in &pipelines {
        println!(
            "{:<32} v{:<4} {}",
            status_text(&p["name"]),
            p["version"],
            status_text(&p["executionMode"])
        );
    }
    Ok(())
}

async fn show(args: ShowArgs) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let shown = client
        .get(&format!("/pipelines/{}", segment(&args.name)))
        .await?;
    if args.server.json {
        print_json(&shown);
        return Ok(());
    }
    println!("pipeline {} (version {})", args.name, shown["version"]);
    for stage in shown["stages"].as_array().into_iter().flatten() {
        let latest = &stage["latestExecution"];
        println!(
            "  {:<24} {:<12} {}",
            status_text(&stage["stageName"]),
            status_text(&latest["status"]),
            latest["pipelineExecutionId"].as_str().unwrap_or("")
        );
        for action in stage["actionStates"].as_array().into_iter().flatten() {
            let latest = &action["latestExecution"];
            let mut line = format!(
                "    {:<22} {}",
                status_text(&action["actionName"]),
                status_text(&latest["status"])
            );
            if latest["token"].is_string() {
                line.push_str("  (waiting for approval)");
            }
            if let Some(message) = latest["errorDetails"]["message"].as_str() {
                line.push_str(&format!("  error: {message}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// Splits `NAME=VALUE`.
fn pair<'a>(text: &'a str, flag: &str) -> Result<(&'a str, &'a str), Failure> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| Failure::Usage(format!("{flag} '{text}': expected NAME=VALUE")))
}

/// The pipeline's only source action, for `--revision COMMIT`.
async fn only_source_action(client: &Client, pipeline: &str) -> Result<String, Failure> {
    let shown = client
        .get(&format!("/pipelines/{}", segment(pipeline)))
        .await?;
    let sources: Vec<&str> = shown["pipeline"]["stages"][0]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["actionTypeId"]["category"] == "Source")
        .filter_map(|a| a["name"].as_str())
        .collect();
    match sources.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(Failure::Usage(format!(
            "pipeline {pipeline} has {} source actions ({}); give --revision ACTION=COMMIT",
            sources.len(),
            sources.join(", ")
        ))),
    }
}

async fn start(args: StartArgs) -> Result<(), Failure> {
    let mut variables = Map::new();
    for v in &args.variables {
        let (k, value) = pair(v, "--variable")?;
        variables.insert(k.to_owned(), json!(value));
    }
    let client = Client::from_env(&args.server)?;
    let mut revisions = Map::new();
    for r in &args.revisions {
        let (action, commit) = match r.split_once('=') {
            Some(_) => {
                let (a, c) = pair(r, "--revision")?;
                (a.to_owned(), c.to_owned())
            }
            None => (only_source_action(&client, &args.name).await?, r.clone()),
        };
        revisions.insert(action, json!(commit));
    }
    let mut body = json!({});
    if !variables.is_empty() {
        body["variables"] = Value::Object(variables);
    }
    if !revisions.is_empty() {
        body["sourceRevisions"] = Value::Object(revisions);
    }
    let started = client
        .post(
            &format!("/pipelines/{}/executions", segment(&args.name)),
            &body,
        )
        .await?;
    if args.server.json {
        print_json(&started);
    } else {
        println!("{}", status_text(&started["pipelineExecutionId"]));
    }
    Ok(())
}

async fn stop(args: StopArgs) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let mut body = json!({ "abandon": args.abandon });
    if let Some(reason) = &args.reason {
        body["reason"] = json!(reason);
    }
    let stopped = client
        .post(
            &format!(
                "/pipelines/{}/executions/{}/stop",
                segment(&args.name),
                segment(&args.execution_id)
            ),
            &body,
        )
        .await?;
    if args.server.json {
        print_json(&stopped);
    } else {
        println!(
            "{} {}",
            if args.abandon {
                "abandoning"
            } else {
                "stopping"
            },
            args.execution_id
        );
    }
    Ok(())
}
