//! `gantry run show PIPELINE EXECUTION_ID`: one execution with its stages
//! and actions (status, build ids, errors, waiting approvals).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{Client, Failure, ServerArgs, block_on, print_json, segment, status_text};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Show an execution's stages and actions.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The pipeline's name.
    pipeline: String,
    /// The execution's id.
    execution_id: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: RunArgs) -> ExitCode {
    match args.command {
        RunCommand::Show(a) => block_on("run show", show(a)),
    }
}

async fn show(args: ShowArgs) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let run = client
        .get(&format!(
            "/pipelines/{}/executions/{}",
            segment(&args.pipeline),
            segment(&args.execution_id)
        ))
        .await?;
    if args.server.json {
        print_json(&run);
    } else {
        print!("{}", human(&run));
    }
    Ok(())
}

/// The run as text: a header line, then one line per stage and action.
fn human(run: &Value) -> String {
    let mut out = format!(
        "{} {} {} (pipeline version {})\n",
        status_text(&run["pipelineName"]),
        status_text(&run["pipelineExecutionId"]),
        status_text(&run["status"]),
        run["pipelineVersion"]
    );
    if let Some(summary) = run["statusSummary"].as_str() {
        out.push_str(&format!("  {summary}\n"));
    }
    for stage in run["stages"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<24} {}\n",
            status_text(&stage["name"]),
            status_text(&stage["status"])
        ));
        for action in stage["actions"].as_array().into_iter().flatten() {
            let mut line = format!(
                "    {:<22} {:<12}",
                status_text(&action["name"]),
                status_text(&action["status"])
            );
            if let Some(build) = action["buildId"].as_str() {
                line.push_str(&format!(" build {build}"));
            } else if let Some(x) = action["externalExecutionId"].as_str() {
                line.push_str(&format!(" {x}"));
            }
            if action["approvalToken"].is_string() {
                line.push_str(" waiting for approval");
            }
            if let Some(message) = action["error"]["message"].as_str() {
                line.push_str(&format!(" error: {message}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_reads_as_one_line_per_stage_and_action() {
        let run = json!({
            "pipelineName": "web", "pipelineExecutionId": "e1", "status": "InProgress", "pipelineVersion": 2,
            "stages": [
                { "name": "Build", "status": "Failed", "actions": [
                    { "name": "Compile", "status": "Failed", "buildId": "p:1", "error": { "message": "exit 3" } }
                ]},
                { "name": "Approve", "status": "InProgress", "actions": [
                    { "name": "Release", "status": "InProgress", "approvalToken": "t" }
                ]},
                { "name": "Deploy", "status": null, "actions": [{ "name": "Ship", "status": null }] }
            ]
        });
        let text = human(&run);
        assert!(
            text.starts_with("web e1 InProgress (pipeline version 2)\n"),
            "{text}"
        );
        assert!(
            text.contains("Compile                Failed       build p:1 error: exit 3\n"),
            "{text}"
        );
        assert!(text.contains("waiting for approval"), "{text}");
        assert!(text.contains("  Deploy                   -\n"), "{text}");
    }
}
