//! `gantry approve|reject PIPELINE EXECUTION_ID`: answer a manual
//! approval. `--stage`/`--action` may be left out when exactly one
//! approval waits in the execution.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::client::{Client, Failure, ServerArgs, block_on, print_json, segment};

#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// The pipeline's name.
    pipeline: String,
    /// The execution's id.
    execution_id: String,
    /// The approval's stage (needed when several approvals wait).
    #[arg(long)]
    stage: Option<String>,
    /// The approval action (needed when several approvals wait).
    #[arg(long)]
    action: Option<String>,
    /// A comment recorded with the answer.
    #[arg(long)]
    summary: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Approved or Rejected.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Approve,
    Reject,
}

impl Answer {
    fn status(self) -> &'static str {
        match self {
            Answer::Approve => "Approved",
            Answer::Reject => "Rejected",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Answer::Approve => "approve",
            Answer::Reject => "reject",
        }
    }
}

pub fn run(args: ApprovalArgs, answer: Answer) -> ExitCode {
    block_on(answer.command(), answer_approval(args, answer))
}

/// The (stage, action) of every approval waiting in a run.
fn waiting(run: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stage in run["stages"].as_array().into_iter().flatten() {
        for action in stage["actions"].as_array().into_iter().flatten() {
            if action["approvalToken"].is_string()
                && let (Some(s), Some(a)) = (stage["name"].as_str(), action["name"].as_str())
            {
                out.push((s.to_owned(), a.to_owned()));
            }
        }
    }
    out
}

/// The stage and action to answer: as given, or the one waiting.
async fn target(client: &Client, args: &ApprovalArgs) -> Result<(String, String), Failure> {
    if let (Some(s), Some(a)) = (&args.stage, &args.action) {
        return Ok((s.clone(), a.clone()));
    }
    let run = client
        .get(&format!(
            "/pipelines/{}/executions/{}",
            segment(&args.pipeline),
            segment(&args.execution_id)
        ))
        .await?;
    let candidates: Vec<(String, String)> = waiting(&run)
        .into_iter()
        .filter(|(s, a)| {
            args.stage.as_ref().is_none_or(|x| x == s)
                && args.action.as_ref().is_none_or(|x| x == a)
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Request(format!(
            "no approval is waiting in execution {} of {}",
            args.execution_id, args.pipeline
        ))),
        several => Err(Failure::Usage(format!(
            "several approvals are waiting ({}); give --stage and --action",
            several
                .iter()
                .map(|(s, a)| format!("{s}/{a}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn answer_approval(args: ApprovalArgs, answer: Answer) -> Result<(), Failure> {
    let client = Client::from_env(&args.server)?;
    let (stage, action) = target(&client, &args).await?;
    let mut body = json!({ "status": answer.status() });
    if let Some(summary) = &args.summary {
        body["summary"] = json!(summary);
    }
    let out = client
        .post(
            &format!(
                "/pipelines/{}/executions/{}/approvals/{}/{}",
                segment(&args.pipeline),
                segment(&args.execution_id),
                segment(&stage),
                segment(&action)
            ),
            &body,
        )
        .await?;
    if args.server.json {
        let mut out = out;
        out["stage"] = json!(stage);
        out["action"] = json!(action);
        out["status"] = json!(answer.status());
        print_json(&out);
    } else {
        println!(
            "{} {stage}/{action} of {}",
            answer.status().to_lowercase(),
            args.execution_id
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_approvals_are_those_with_a_token() {
        let run = json!({ "stages": [
            { "name": "A", "actions": [{ "name": "x", "approvalToken": "t" }, { "name": "y" }] },
            { "name": "B", "actions": [{ "name": "z", "approvalToken": null }] }
        ]});
        assert_eq!(waiting(&run), [("A".to_owned(), "x".to_owned())]);
    }
}
